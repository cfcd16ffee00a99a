//! A closed-loop PING client for loopback benchmarks.
//!
//! It keeps at most [`IN_FLIGHT`] PINGs (`0x03 ‖ u64 ms timestamp ‖ 20-byte id`, 29 B)
//! outstanding, sends them with `sendmmsg` in batches of [`BATCH`] and collects replies with
//! `recvmmsg`, so what is measured is the server, not the client's syscalls.
//!
//! With one source (127.0.0.1) the socket is connected and waits in `recvmmsg` itself. With
//! several, the client owns one socket per source address (`127.1.0.1`, `127.1.0.2`, … all on
//! one port) and sends every batch from the first of them, giving each datagram its own source
//! address with an `IP_PKTINFO` control message, round-robin. So consecutive datagrams come
//! from different peers, as they do at a busy node: the node has no run of PINGs from one
//! address to coalesce its PONGs into a BATCH datagram (which it would do for a burst from one
//! source), SO_REUSEPORT spreads the sources over the shards, and each reply comes back to the
//! socket of the address it was sent from.
//!
//! A reply is a 21-byte PONG (`0x04 ‖ 20-byte id`); PONGs that arrive inside a BATCH frame
//! are counted one by one, and separately, so coalescing shows.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use setowire_udp_batch::{poll, Patience, RecvBatch, RecvWait, SendBatch};

pub const REQUEST_LEN: usize = 29;
pub const REPLY_LEN: usize = 21;
pub const PING: u8 = 0x03;
pub const PONG: u8 = 0x04;
const BATCH_FRAME: u8 = 0x13;
/// Datagrams per `sendmmsg`/`recvmmsg`.
pub const BATCH: usize = 32;
/// Most PINGs outstanding.
pub const IN_FLIGHT: usize = 256;
/// Most source addresses (sockets) one client uses.
pub const MAX_SOURCES: usize = 64;
/// Large enough for a BATCH datagram of PONGs (at most 1400 bytes).
const RECV_LEN: usize = 2048;
/// With no reply for this long, whatever is in flight is taken as lost.
const LOSS_TIMEOUT: Duration = Duration::from_millis(50);
/// With no reply at all for this long, the server is taken as gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(3);
/// No run lasts longer than this, whatever it is asked for.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);
/// Binding the sources retries this often when another socket holds the port on one of them.
const BIND_ATTEMPTS: usize = 16;

/// What a client has seen since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub sent: u64,
    /// PONGs received, bare or inside BATCH frames.
    pub replies: u64,
    /// PONGs that arrived inside a BATCH frame.
    pub batched: u64,
    /// Datagrams received, PONG or not.
    pub datagrams: u64,
    /// Datagrams that carried no PONG.
    pub other: u64,
    /// PINGs given up as lost (no reply within the loss timeout).
    pub lost: u64,
}

pub struct Client {
    /// One socket per source address, all on one port; the first also sends.
    sockets: Vec<UdpSocket>,
    /// The sockets' addresses, in the same order.
    sources: Vec<Ipv4Addr>,
    pollfds: Vec<libc::pollfd>,
    server: SocketAddr,
    /// The PING of each batch slot; only its timestamp changes from batch to batch.
    requests: [[u8; REQUEST_LEN]; BATCH],
    send: SendBatch<REQUEST_LEN>,
    recv: RecvBatch<RECV_LEN>,
    in_flight: usize,
    started: Instant,
    stats: ClientStats,
}

impl Client {
    /// A client of `server` (an IPv4 loopback address) sending from `sources` addresses:
    /// 127.0.0.1 alone when `sources` is 1, else 127.1.0.1 onwards.
    pub fn new(server: SocketAddr, sources: usize) -> Client {
        assert!(
            (1..=MAX_SOURCES).contains(&sources),
            "1 to {MAX_SOURCES} sources"
        );
        let SocketAddr::V4(server_v4) = server else {
            panic!("the client speaks IPv4 only: {server}");
        };
        assert!(
            server_v4.ip().is_loopback(),
            "loopback servers only: {server}"
        );
        let ips: Vec<Ipv4Addr> = if sources == 1 {
            vec![Ipv4Addr::LOCALHOST]
        } else {
            (1..=sources as u8)
                .map(|k| Ipv4Addr::new(127, 1, 0, k))
                .collect()
        };
        let sockets = bind_sources(&ips);
        if sources == 1 {
            // One source: a connected socket, blocking in recvmmsg with a timeout.
            sockets[0].connect(server).unwrap();
            sockets[0].set_read_timeout(Some(LOSS_TIMEOUT)).unwrap();
        }
        for socket in &sockets {
            if sources > 1 {
                socket.set_nonblocking(true).unwrap();
            }
            // Best effort: without privileges the kernel caps it at net.core.rmem_max.
            let _ = socket2::SockRef::from(socket).set_recv_buffer_size(4 << 20);
        }
        let pollfds = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut requests = [[0; REQUEST_LEN]; BATCH];
        for (i, request) in requests.iter_mut().enumerate() {
            request[0] = PING;
            // Any id but the node's own: a recognisable pattern, one per slot.
            request[9..].fill(0xb0 | (i as u8 & 0x0f));
        }
        Client {
            sockets,
            sources: ips,
            pollfds,
            server,
            requests,
            send: SendBatch::new(BATCH, false),
            recv: RecvBatch::new(BATCH),
            in_flight: 0,
            started: Instant::now(),
            stats: ClientStats::default(),
        }
    }

    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Gets `replies` replies; returns the time it took.
    pub fn run(&mut self, replies: u64) -> Duration {
        self.run_until(replies, RUN_LIMIT).1
    }

    /// Runs for `time`; returns the replies and the exact time.
    pub fn run_for(&mut self, time: Duration) -> (u64, Duration) {
        self.run_until(u64::MAX, time.min(RUN_LIMIT))
    }

    /// Runs until `replies` replies came or `limit` passed; returns the replies and the time.
    /// Panics when nothing answers for [`SILENCE_LIMIT`].
    fn run_until(&mut self, replies: u64, limit: Duration) -> (u64, Duration) {
        let start = Instant::now();
        let mut got = 0;
        let mut last_reply = start;
        while got < replies && start.elapsed() < limit {
            self.fill();
            let n = self.receive();
            if n > 0 {
                got += n as u64;
                last_reply = Instant::now();
            } else if last_reply.elapsed() > SILENCE_LIMIT {
                panic!("no reply for {SILENCE_LIMIT:?}: has the server stopped?");
            }
        }
        let took = start.elapsed();
        // Collect the stragglers outside the measurement so the next run starts clean.
        let drain_until = Instant::now() + Duration::from_millis(200);
        while self.in_flight > 0 && Instant::now() < drain_until {
            self.receive();
        }
        (got, took)
    }

    /// Sends batches while there is room for a whole one in flight.
    fn fill(&mut self) {
        while self.in_flight + BATCH <= IN_FLIGHT {
            if self.send_batch() == 0 {
                break;
            }
        }
    }

    /// One `sendmmsg` of a batch of PINGs, all from the first socket; returns how many the
    /// kernel took (none when its buffer is full).
    fn send_batch(&mut self) -> usize {
        let ms = (self.started.elapsed().as_millis() as u64).to_be_bytes();
        for (i, request) in self.requests.iter_mut().enumerate() {
            request[1..9].copy_from_slice(&ms);
            let queued = if self.sources.len() == 1 {
                self.send.push(self.server, request)
            } else {
                // Slot i always leaves from source i mod sources: round-robin within a batch.
                let source = self.sources[i % self.sources.len()];
                self.send.push_from(source, self.server, request)
            };
            queued.expect("a batch of PINGs fits the send batch");
        }
        let flushed = self.send.flush(&self.sockets[0], Patience::NONE);
        if let Some(err) = flushed.socket_error {
            panic!("client sendmmsg: {err}");
        }
        self.in_flight += flushed.sent;
        self.stats.sent += flushed.sent as u64;
        flushed.sent
    }

    /// Waits up to LOSS_TIMEOUT for replies on any source; returns how many came.
    fn receive(&mut self) -> usize {
        if self.sockets.len() == 1 {
            return match self.recv_from(0, RecvWait::ForFirst) {
                Some(got) => got,
                None => self.lose_in_flight(),
            };
        }
        let ready = poll(&mut self.pollfds, LOSS_TIMEOUT)
            .unwrap_or_else(|err| panic!("client poll: {err}"));
        if ready == 0 {
            return self.lose_in_flight();
        }
        let mut got = 0;
        for k in 0..self.sockets.len() {
            if self.pollfds[k].revents & libc::POLLIN != 0 {
                got += self.recv_from(k, RecvWait::Never).unwrap_or(0);
            }
        }
        got
    }

    /// Nothing came back in time: dropped somewhere on the way. Starts over rather than
    /// stall; returns 0 replies.
    fn lose_in_flight(&mut self) -> usize {
        self.stats.lost += self.in_flight as u64;
        self.in_flight = 0;
        0
    }

    /// One `recvmmsg` on source `k`; returns the PONGs in it, or None when nothing came
    /// (timeout or nothing waiting, or a signal).
    fn recv_from(&mut self, k: usize, wait: RecvWait) -> Option<usize> {
        let received = self
            .recv
            .recv(&self.sockets[k], wait)
            .unwrap_or_else(|err| panic!("client recvmmsg: {err}"));
        if received.is_empty() {
            return None;
        }
        let mut got = 0;
        for datagram in received {
            let (pongs, batched) = count_pongs(datagram.data);
            got += pongs;
            self.stats.datagrams += 1;
            if pongs == 0 {
                self.stats.other += 1;
            }
            if batched {
                self.stats.batched += pongs as u64;
            }
        }
        self.stats.replies += got as u64;
        self.in_flight = self.in_flight.saturating_sub(got);
        Some(got)
    }
}

/// The PONGs in one datagram, and whether they came in a BATCH frame
/// (`0x13 ‖ count ‖ count × (u16 length ‖ frame)`).
pub fn count_pongs(datagram: &[u8]) -> (usize, bool) {
    let is_pong = |frame: &[u8]| frame.len() == REPLY_LEN && frame[0] == PONG;
    match datagram.first() {
        Some(&PONG) => (usize::from(is_pong(datagram)), false),
        Some(&BATCH_FRAME) if datagram.len() >= 2 => {
            let mut rest = &datagram[2..];
            let mut pongs = 0;
            for _ in 0..datagram[1] {
                let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                    break;
                };
                let len = u16::from_be_bytes(*len) as usize;
                let Some(frame) = tail.get(..len) else {
                    break;
                };
                pongs += usize::from(is_pong(frame));
                rest = &tail[len..];
            }
            (pongs, true)
        }
        _ => (0, false),
    }
}

/// Binds one socket per address, all on one port the kernel picks for the first.
fn bind_sources(ips: &[Ipv4Addr]) -> Vec<UdpSocket> {
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        let first = UdpSocket::bind(SocketAddrV4::new(ips[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut sockets = vec![first];
        for ip in &ips[1..] {
            match UdpSocket::bind(SocketAddrV4::new(*ip, port)) {
                Ok(socket) => sockets.push(socket),
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        if sockets.len() == ips.len() {
            return sockets;
        }
    }
    panic!(
        "cannot bind {} source addresses on one port: {last_error:?}",
        ips.len()
    );
}
