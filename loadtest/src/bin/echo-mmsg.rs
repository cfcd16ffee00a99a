//! `echo-mmsg`: a batched Setowire PING responder, `recvmmsg`/`sendmmsg` in batches of 64.
//!
//! It is a floor, not a server: it answers every 29-byte PING (0x03 ‖ u64 ms ‖ 20-byte id)
//! with a 21-byte PONG (0x04 ‖ the request's last 20 bytes) and does nothing else, with
//! the fewest system calls a blocking UDP responder needs, so any UDP responder on this
//! machine (setowire-node, py-setowire) is measured against it with
//! `setowire-sim ping --raw`. `echo-naive` is the one-syscall-per-datagram floor. Same reply
//! logic as benches/support/echo.rs. Linux only.
//!
//! `--listen ADDR` (default 127.0.0.1:0; loopback only). Prints `{"event":"ready","port":N}`
//! on stdout once bound; exits when stdin closes (or after an hour at most).

use setowire_udp_batch::{Patience, RecvBatch, RecvWait, SendBatch};

const PING: u8 = 0x03;
const PONG: u8 = 0x04;
const REQUEST_LEN: usize = 29;
const REPLY_LEN: usize = 21;
const BATCH: usize = 64;

mod common;

fn main() {
    let socket = common::start("echo-mmsg");
    let v6 = socket.local_addr().expect("bound socket").is_ipv6();
    let mut requests = RecvBatch::<2048>::new(BATCH);
    let mut replies = SendBatch::<REPLY_LEN>::new(BATCH, v6);
    loop {
        // Blocks for the first datagram, then takes whatever else is already queued.
        let Ok(received) = requests.recv(&socket, RecvWait::ForFirst) else {
            continue;
        };
        for request in received {
            let data = &*request.data;
            if data.len() != REQUEST_LEN || data[0] != PING {
                continue; // not a PING: ignored
            }
            let Some(src) = request.source() else {
                continue;
            };
            let mut reply = [0u8; REPLY_LEN];
            reply[0] = PONG;
            reply[1..].copy_from_slice(&data[REQUEST_LEN - (REPLY_LEN - 1)..]);
            // At most BATCH requests came, so there is room for every reply.
            let _ = replies.push(src, &reply);
        }
        // A datagram refused or without room is a lost reply, as in UDP.
        let _ = replies.flush(&socket, Patience::NONE);
    }
}
