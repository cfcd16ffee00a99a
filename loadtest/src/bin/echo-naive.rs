//! `echo-naive`: the simplest possible Setowire PING responder, one `recv_from` and one
//! `send_to` system call per datagram, std only.
//!
//! It is a floor, not a server: it answers every 29-byte PING (0x03 ‖ u64 ms ‖ 20-byte id)
//! with a 21-byte PONG (0x04 ‖ the request's last 20 bytes) and does nothing else, so any
//! UDP responder on this machine (setowire-node, py-setowire) is measured against it with
//! `setowire-sim ping --raw`. `echo-mmsg` is the batched floor. Same reply logic as
//! benches/support/echo.rs.
//!
//! `--listen ADDR` (default 127.0.0.1:0; loopback only). Prints `{"event":"ready","port":N}`
//! on stdout once bound; exits when stdin closes (or after an hour at most).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

const PING: u8 = 0x03;
const PONG: u8 = 0x04;
const REQUEST_LEN: usize = 29;
const REPLY_LEN: usize = 21;
/// However it is driven, the process never outlives this.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

fn main() {
    let listen = listen_addr();
    let socket = UdpSocket::bind(listen).unwrap_or_else(|e| fail(&format!("bind {listen}: {e}")));
    let port = socket.local_addr().expect("bound socket").port();
    println!("{{\"event\":\"ready\",\"port\":{port}}}");
    exit_with_stdin();

    let mut buf = [0u8; 2048];
    loop {
        let Ok((n, src)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if n != REQUEST_LEN || buf[0] != PING {
            continue; // not a PING: ignored
        }
        let mut reply = [0u8; REPLY_LEN];
        reply[0] = PONG;
        reply[1..].copy_from_slice(&buf[REQUEST_LEN - (REPLY_LEN - 1)..REQUEST_LEN]);
        let _ = socket.send_to(&reply, src); // a failed send is a lost reply, as in UDP
    }
}

/// `--listen ADDR`, refused unless it is a loopback address.
fn listen_addr() -> SocketAddr {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = match args.as_slice() {
        [] => "127.0.0.1:0",
        [flag, addr] if flag == "--listen" => addr.as_str(),
        _ => fail("usage: echo-naive [--listen ADDR]"),
    };
    let addr: SocketAddr = text
        .parse()
        .unwrap_or_else(|e| fail(&format!("--listen {text}: {e}")));
    let loopback = match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if !loopback {
        fail(&format!(
            "--listen {addr}: only loopback addresses are allowed"
        ));
    }
    addr
}

/// The process lives while its stdin is open: a thread reads it to EOF, then exits.
fn exit_with_stdin() {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(MAX_LIFETIME);
        std::process::exit(0);
    });
}

fn fail(msg: &str) -> ! {
    eprintln!("echo-naive: {msg}");
    std::process::exit(2);
}
