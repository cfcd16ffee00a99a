//! The I/O floor: PING-sized requests (29 B) answered with 21 B replies by a server thread
//! on each backend, over loopback. The client (this thread) keeps a bounded number of
//! requests in flight and uses sendmmsg/recvmmsg in batches of 32, so what is measured is
//! the server's datagrams through its backend, not the client's syscalls.
//!
//! Criterion reports each backend's throughput (elements = replies) in one run, and a
//! summary line puts the two side by side.

use std::cell::Cell;
use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use setowire_node::io::{bind_reuseport, open_backend, BackendChoice, IoStats, Waker};

const REQUEST_LEN: usize = 29;
const REPLY_LEN: usize = 21;
const BATCH: usize = 32;
const IN_FLIGHT: usize = 256;
/// With no reply for this long, whatever is in flight is taken as lost.
const LOSS_TIMEOUT: Duration = Duration::from_millis(50);
/// No measurement runs longer than this, whatever criterion asks.
const RUN_LIMIT: Duration = Duration::from_secs(30);

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Waker,
    handle: JoinHandle<IoStats>,
}

impl Server {
    /// None when the backend cannot be opened here (io_uring refused).
    fn start(choice: BackendChoice) -> Option<Server> {
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
                        reply.copy_from_slice(&data[..REPLY_LEN]);
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
                eprintln!("udp_echo: {choice} unavailable, skipped: {e}");
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

    fn stop(self) -> IoStats {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.wake();
        self.handle.join().unwrap()
    }
}

/// A closed-loop client on a connected socket, with preallocated mmsghdr arrays.
struct Client {
    socket: UdpSocket,
    send_bufs: Box<[[u8; REQUEST_LEN]; BATCH]>,
    recv_bufs: Box<[[u8; 64]; BATCH]>,
    send_iovs: [libc::iovec; BATCH],
    recv_iovs: [libc::iovec; BATCH],
    send_hdrs: [libc::mmsghdr; BATCH],
    recv_hdrs: [libc::mmsghdr; BATCH],
    in_flight: usize,
    lost: u64,
}

impl Client {
    fn new(server: SocketAddr) -> Box<Client> {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(server).unwrap();
        socket.set_read_timeout(Some(LOSS_TIMEOUT)).unwrap();
        socket2::SockRef::from(&socket)
            .set_recv_buffer_size(4 << 20)
            .unwrap();
        // SAFETY: all-zero iovecs and mmsghdrs are valid; the pointers are set below.
        let mut client = Box::new(Client {
            socket,
            send_bufs: Box::new([[0x03; REQUEST_LEN]; BATCH]),
            recv_bufs: Box::new([[0; 64]; BATCH]),
            send_iovs: unsafe { mem::zeroed() },
            recv_iovs: unsafe { mem::zeroed() },
            send_hdrs: unsafe { mem::zeroed() },
            recv_hdrs: unsafe { mem::zeroed() },
            in_flight: 0,
            lost: 0,
        });
        // The client is boxed, so these pointers into it stay valid.
        for i in 0..BATCH {
            client.send_iovs[i] = libc::iovec {
                iov_base: client.send_bufs[i].as_mut_ptr().cast(),
                iov_len: REQUEST_LEN,
            };
            client.recv_iovs[i] = libc::iovec {
                iov_base: client.recv_bufs[i].as_mut_ptr().cast(),
                iov_len: 64,
            };
            client.send_hdrs[i].msg_hdr.msg_iov = &mut client.send_iovs[i];
            client.send_hdrs[i].msg_hdr.msg_iovlen = 1;
            client.recv_hdrs[i].msg_hdr.msg_iov = &mut client.recv_iovs[i];
            client.recv_hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        client
    }

    fn send_batch(&mut self) {
        // SAFETY: the headers point at live request buffers (see `new`).
        let n = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
                self.send_hdrs.as_mut_ptr(),
                BATCH as _,
                0 as _,
            )
        };
        if n > 0 {
            self.in_flight += n as usize;
        }
    }

    /// Waits up to LOSS_TIMEOUT for replies; returns how many came.
    fn recv_batch(&mut self) -> usize {
        // SAFETY: the headers point at live reply buffers (see `new`).
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                self.recv_hdrs.as_mut_ptr(),
                BATCH as _,
                libc::MSG_WAITFORONE as _,
                ptr::null_mut(),
            )
        };
        if n > 0 {
            let n = n as usize;
            self.in_flight = self.in_flight.saturating_sub(n);
            return n;
        }
        let err = io::Error::last_os_error();
        if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
            // Dropped somewhere on the way: start over rather than stall.
            self.lost += self.in_flight as u64;
            self.in_flight = 0;
            0
        } else {
            panic!("client recvmmsg: {err}");
        }
    }

    /// Gets `replies` replies with at most IN_FLIGHT requests outstanding; returns the time.
    fn run(&mut self, replies: u64) -> Duration {
        let start = Instant::now();
        let mut got = 0;
        while got < replies && start.elapsed() < RUN_LIMIT {
            while self.in_flight + BATCH <= IN_FLIGHT {
                self.send_batch();
            }
            got += self.recv_batch() as u64;
        }
        let took = start.elapsed();
        // Collect the stragglers outside the measurement so the next run starts clean.
        let drain_until = Instant::now() + Duration::from_millis(200);
        while self.in_flight > 0 && Instant::now() < drain_until {
            self.recv_batch();
        }
        took
    }
}

fn udp_echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp_echo");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut summary = Vec::new();
    for choice in [BackendChoice::IoUring, BackendChoice::Mmsg] {
        let Some(server) = Server::start(choice) else {
            continue;
        };
        let mut client = Client::new(server.addr);
        let (replies, time) = (Cell::new(0u64), Cell::new(Duration::ZERO));
        group.bench_function(choice.to_string(), |b| {
            b.iter_custom(|iters| {
                let took = client.run(iters);
                replies.set(replies.get() + iters);
                time.set(time.get() + took);
                took
            })
        });
        let stats = server.stop();
        if replies.get() < 10_000 {
            continue;
        }
        let rate = replies.get() as f64 / time.get().as_secs_f64().max(1e-9);
        summary.push(format!(
            "{choice}: {rate:.0} replies/s (client saw {} lost; server sent {} with {} errors)",
            client.lost, stats.datagrams_sent, stats.send_errors
        ));
    }
    group.finish();
    // `cargo test --benches` runs each benchmark once: too few replies for a rate.
    if !summary.is_empty() {
        println!("udp_echo summary: {}", summary.join(" | "));
    }
}

criterion_group!(benches, udp_echo);
criterion_main!(benches);
