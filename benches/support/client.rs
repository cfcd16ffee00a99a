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

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;
use std::time::{Duration, Instant};

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

/// An `IP_PKTINFO` control message choosing a datagram's source address.
#[repr(C)]
struct PktInfo {
    hdr: libc::cmsghdr,
    info: libc::in_pktinfo,
}

pub struct Client {
    /// One socket per source address, all on one port; the first also sends.
    sockets: Vec<UdpSocket>,
    pollfds: Vec<libc::pollfd>,
    server: libc::sockaddr_in,
    controls: Box<[PktInfo]>,
    send_bufs: Box<[[u8; REQUEST_LEN]; BATCH]>,
    recv_bufs: Box<[[u8; RECV_LEN]; BATCH]>,
    send_iovs: [libc::iovec; BATCH],
    recv_iovs: [libc::iovec; BATCH],
    send_hdrs: [libc::mmsghdr; BATCH],
    recv_hdrs: [libc::mmsghdr; BATCH],
    in_flight: usize,
    started: Instant,
    stats: ClientStats,
}

// SAFETY: the raw pointers inside the headers only point into memory owned by the same boxed
// client, so moving the box to another thread moves their targets along with them.
unsafe impl Send for Client {}

impl Client {
    /// A client of `server` (an IPv4 loopback address) sending from `sources` addresses:
    /// 127.0.0.1 alone when `sources` is 1, else 127.1.0.1 onwards.
    pub fn new(server: SocketAddr, sources: usize) -> Box<Client> {
        assert!(
            (1..=MAX_SOURCES).contains(&sources),
            "1 to {MAX_SOURCES} sources"
        );
        let SocketAddr::V4(server) = server else {
            panic!("the client speaks IPv4 only: {server}");
        };
        assert!(server.ip().is_loopback(), "loopback servers only: {server}");
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
        // SAFETY: an all-zero cmsghdr/in_pktinfo is valid; the fields are set right after.
        let controls: Box<[PktInfo]> = ips
            .iter()
            .map(|ip| {
                let mut c: PktInfo = unsafe { mem::zeroed() };
                c.hdr.cmsg_level = libc::IPPROTO_IP;
                c.hdr.cmsg_type = libc::IP_PKTINFO;
                // SAFETY: CMSG_LEN only computes a length.
                c.hdr.cmsg_len =
                    unsafe { libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as _) } as _;
                c.info.ipi_spec_dst = libc::in_addr {
                    s_addr: u32::from(*ip).to_be(),
                };
                c
            })
            .collect();
        // SAFETY: as above; CMSG_SPACE only computes a length.
        let space = unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in_pktinfo>() as _) } as usize;
        assert_eq!(space, mem::size_of::<PktInfo>(), "cmsg layout");
        // SAFETY: all-zero sockaddr_in, iovecs and mmsghdrs are valid; pointers are set below.
        let mut client = Box::new(Client {
            sockets,
            pollfds,
            server: unsafe { mem::zeroed() },
            controls,
            send_bufs: Box::new([[0; REQUEST_LEN]; BATCH]),
            recv_bufs: Box::new([[0; RECV_LEN]; BATCH]),
            send_iovs: unsafe { mem::zeroed() },
            recv_iovs: unsafe { mem::zeroed() },
            send_hdrs: unsafe { mem::zeroed() },
            recv_hdrs: unsafe { mem::zeroed() },
            in_flight: 0,
            started: Instant::now(),
            stats: ClientStats::default(),
        });
        client.server.sin_family = libc::AF_INET as _;
        client.server.sin_port = server.port().to_be();
        client.server.sin_addr.s_addr = u32::from(*server.ip()).to_be();
        let c = &mut *client;
        for i in 0..BATCH {
            let request = &mut c.send_bufs[i];
            request[0] = PING;
            // Any id but the node's own: a recognisable pattern, one per slot.
            request[9..].fill(0xb0 | (i as u8 & 0x0f));
            c.send_iovs[i] = libc::iovec {
                iov_base: request.as_mut_ptr().cast(),
                iov_len: REQUEST_LEN,
            };
            c.recv_iovs[i] = libc::iovec {
                iov_base: c.recv_bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_LEN,
            };
            let hdr = &mut c.send_hdrs[i].msg_hdr;
            hdr.msg_iov = &mut c.send_iovs[i];
            hdr.msg_iovlen = 1;
            if sources > 1 {
                hdr.msg_name = (&mut c.server as *mut libc::sockaddr_in).cast();
                hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as _;
                // Slot i always leaves from source i mod sources: round-robin within a batch.
                hdr.msg_control = (&mut c.controls[i % sources] as *mut PktInfo).cast();
                hdr.msg_controllen = space as _;
            }
            let hdr = &mut c.recv_hdrs[i].msg_hdr;
            hdr.msg_iov = &mut c.recv_iovs[i];
            hdr.msg_iovlen = 1;
        }
        // The pointers aim into the box (or into its own heap buffers), which never moves.
        client
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

    fn send_batch(&mut self) -> usize {
        let ms = (self.started.elapsed().as_millis() as u64).to_be_bytes();
        for request in self.send_bufs.iter_mut() {
            request[1..9].copy_from_slice(&ms);
        }
        // SAFETY: the headers point at live requests, the server address and the source
        // control messages (see `new`).
        let n = unsafe {
            libc::sendmmsg(
                self.sockets[0].as_raw_fd(),
                self.send_hdrs.as_mut_ptr(),
                BATCH as _,
                0 as _,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if matches!(
                err.raw_os_error(),
                Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS)
            ) {
                return 0;
            }
            panic!("client sendmmsg: {err}");
        }
        let n = n as usize;
        self.in_flight += n;
        self.stats.sent += n as u64;
        n
    }

    /// Waits up to LOSS_TIMEOUT for replies on any source; returns how many came.
    fn receive(&mut self) -> usize {
        if self.sockets.len() == 1 {
            return match self.recv_from(0, libc::MSG_WAITFORONE) {
                Some(got) => got,
                None => self.lose_in_flight(),
            };
        }
        // SAFETY: `pollfds` is a live array of that many entries.
        let rc = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as _,
                LOSS_TIMEOUT.as_millis() as _,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            assert_eq!(err.raw_os_error(), Some(libc::EINTR), "client poll: {err}");
            return 0;
        }
        if rc == 0 {
            return self.lose_in_flight();
        }
        let mut got = 0;
        for k in 0..self.sockets.len() {
            if self.pollfds[k].revents & libc::POLLIN != 0 {
                got += self.recv_from(k, libc::MSG_DONTWAIT).unwrap_or(0);
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
    /// (EAGAIN: timeout or nothing waiting; EINTR).
    fn recv_from(&mut self, k: usize, flags: libc::c_int) -> Option<usize> {
        // SAFETY: the headers point at live reply buffers (see `new`).
        let n = unsafe {
            libc::recvmmsg(
                self.sockets[k].as_raw_fd(),
                self.recv_hdrs.as_mut_ptr(),
                BATCH as _,
                flags as _,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            assert!(
                matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)),
                "client recvmmsg: {err}"
            );
            return None;
        }
        let mut got = 0;
        for i in 0..n as usize {
            let len = (self.recv_hdrs[i].msg_len as usize).min(RECV_LEN);
            let (pongs, batched) = count_pongs(&self.recv_bufs[i][..len]);
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
