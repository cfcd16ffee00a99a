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

use std::os::fd::AsRawFd;

const PING: u8 = 0x03;
const PONG: u8 = 0x04;
const REQUEST_LEN: usize = 29;
const REPLY_LEN: usize = 21;
const BATCH: usize = 64;

mod common;

fn main() {
    let socket = common::start("echo-mmsg");

    let fd = socket.as_raw_fd();
    // SAFETY (whole block): plain C structs, zero is a valid value for each; every pointer
    // stored in the headers points into these arrays, which outlive the calls.
    unsafe {
        let mut bufs = [[0u8; 2048]; BATCH];
        let mut iov: [libc::iovec; BATCH] = std::mem::zeroed();
        let mut addrs: [libc::sockaddr_storage; BATCH] = std::mem::zeroed();
        let mut rx: [libc::mmsghdr; BATCH] = std::mem::zeroed();
        let mut replies = [[0u8; REPLY_LEN]; BATCH];
        let mut reply_iov: [libc::iovec; BATCH] = std::mem::zeroed();
        let mut tx: [libc::mmsghdr; BATCH] = std::mem::zeroed();
        for i in 0..BATCH {
            iov[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: bufs[i].len(),
            };
        }
        loop {
            for i in 0..BATCH {
                let h = &mut rx[i].msg_hdr;
                h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &mut iov[i];
                h.msg_iovlen = 1;
            }
            // Blocks for the first datagram, then takes whatever else is already queued.
            let got = libc::recvmmsg(
                fd,
                rx.as_mut_ptr(),
                BATCH as _,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            );
            if got <= 0 {
                continue;
            }
            let mut n = 0;
            for i in 0..got as usize {
                let len = rx[i].msg_len as usize;
                if len != REQUEST_LEN || bufs[i][0] != PING {
                    continue; // not a PING: ignored
                }
                replies[n][0] = PONG;
                replies[n][1..]
                    .copy_from_slice(&bufs[i][REQUEST_LEN - (REPLY_LEN - 1)..REQUEST_LEN]);
                reply_iov[n] = libc::iovec {
                    iov_base: replies[n].as_mut_ptr().cast(),
                    iov_len: REPLY_LEN,
                };
                let h = &mut tx[n].msg_hdr;
                h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = rx[i].msg_hdr.msg_namelen;
                h.msg_iov = &mut reply_iov[n];
                h.msg_iovlen = 1;
                n += 1;
            }
            // sendmmsg may send fewer than asked; a failure drops the rest (lost replies, as in UDP).
            let mut sent = 0;
            while sent < n {
                let r = libc::sendmmsg(fd, tx.as_mut_ptr().add(sent), (n - sent) as _, 0);
                if r <= 0 {
                    break;
                }
                sent += r as usize;
            }
        }
    }
}
