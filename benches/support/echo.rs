//! The I/O floor: a server thread that answers every PING-sized request (29 B) with a
//! PONG-shaped reply (21 B: 0x04 and the request's last 20 bytes) through one of the node's
//! backends, and does nothing else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use setowire_node::io::{bind_reuseport, open_backend, BackendChoice, IoStats, Waker};

use super::client::{PONG, REPLY_LEN, REQUEST_LEN};

pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Waker,
    handle: JoinHandle<IoStats>,
}

impl Server {
    /// A server on 127.0.0.1, port chosen by the kernel. None when the backend cannot be
    /// opened here (io_uring refused).
    pub fn start(choice: BackendChoice) -> Option<Server> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // Opened on the server thread itself, as a shard does.
        let handle = thread::spawn(move || {
            let socket = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
            let (mut io, waker, _) = match open_backend(socket, choice) {
                Ok(opened) => opened,
                Err(e) => {
                    tx.send(Err(e)).unwrap();
                    return IoStats::default();
                }
            };
            tx.send(Ok((io.local_addr().unwrap(), waker))).unwrap();
            let mut replies: Vec<(SocketAddr, [u8; REPLY_LEN])> = Vec::with_capacity(256);
            while !stop_flag.load(Ordering::Relaxed) {
                io.recv_batch(Duration::from_millis(100), &mut |src, data| {
                    if data.len() == REQUEST_LEN {
                        let mut reply = [0u8; REPLY_LEN];
                        reply[0] = PONG;
                        reply[1..].copy_from_slice(&data[REQUEST_LEN - (REPLY_LEN - 1)..]);
                        replies.push((src, reply));
                    }
                })
                .unwrap();
                for (dst, reply) in replies.drain(..) {
                    io.queue_send(dst, &reply);
                }
                io.flush().unwrap();
            }
            io.stats()
        });
        let (addr, waker) = match rx.recv().unwrap() {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!("echo server: {choice} unavailable, skipped: {e}");
                handle.join().unwrap();
                return None;
            }
        };
        Some(Server {
            addr,
            stop,
            waker,
            handle,
        })
    }

    pub fn stop(self) -> IoStats {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.wake();
        self.handle.join().unwrap()
    }
}
