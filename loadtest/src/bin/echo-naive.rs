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

const PING: u8 = 0x03;
const PONG: u8 = 0x04;
const REQUEST_LEN: usize = 29;
const REPLY_LEN: usize = 21;

mod common;

fn main() {
    let socket = common::start("echo-naive");

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
