//! What the two echo floors share: the command line, the ready line and their lifetime.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffers asked for each way: the node's (src/io/socket.rs), so that at saturation a
/// floor queues the PINGs it has not read yet as the node does, instead of dropping them
/// past the kernel's default of about 200 KiB.
const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// However it is driven, an echo never outlives this.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Binds the `--listen` address (loopback only), prints the ready line and arranges for the
/// process to exit when its stdin closes.
pub fn start(name: &str) -> UdpSocket {
    let listen = listen_addr(name);
    let socket = bind(listen).unwrap_or_else(|e| fail(name, &format!("bind {listen}: {e}")));
    let port = socket.local_addr().expect("bound socket").port();
    println!("{{\"event\":\"ready\",\"port\":{port}}}");
    exit_with_stdin();
    socket
}

/// A blocking UDP socket on `addr` with the node's buffer sizes (as root past
/// `net.core.rmem_max`/`wmem_max`, else clamped to them).
fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for option in [force, plain] {
            // SAFETY: a live c_int of the right size, on our own socket.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&SOCKET_BUFFER as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as _,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// `--listen ADDR`, refused unless it is a loopback address.
fn listen_addr(name: &str) -> SocketAddr {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = match args.as_slice() {
        [] => "127.0.0.1:0",
        [flag, addr] if flag == "--listen" => addr.as_str(),
        _ => fail(name, &format!("usage: {name} [--listen ADDR]")),
    };
    let addr: SocketAddr = text
        .parse()
        .unwrap_or_else(|e| fail(name, &format!("--listen {text}: {e}")));
    let loopback = match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if !loopback {
        fail(
            name,
            &format!("--listen {addr}: only loopback addresses are allowed"),
        );
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

fn fail(name: &str, msg: &str) -> ! {
    eprintln!("{name}: {msg}");
    std::process::exit(2);
}
