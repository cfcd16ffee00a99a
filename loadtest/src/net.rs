//! One worker's UDP endpoint for many virtual peers, with batched system calls.
//!
//! On loopback every virtual peer has its own source address (127.1.0.1, 127.1.0.2, …), all
//! served by one socket bound to the wildcard address: `IP_PKTINFO` picks each datagram's
//! source on the way out and tells which peer a datagram was for on the way in, so thousands of
//! peers cost one socket and one `sendmmsg`/`recvmmsg` per batch. Towards a remote target
//! (`--allow-remote`) the 127/8 addresses cannot be used, so each peer gets a socket of its own.
//!
//! Every datagram's destination is checked here, the one place all traffic leaves through:
//! without `allow_remote` nothing goes anywhere but loopback, whatever a target tells the
//! virtual peers (introductions name addresses too).

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use setowire_udp_batch::{enable_pktinfo, poll, Flushed, Patience, RecvBatch, RecvWait, SendBatch};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Datagrams per `sendmmsg`/`recvmmsg`.
const BATCH: usize = 64;
/// Larger than any Setowire datagram (1400 B) and any DHT reply.
pub const MAX_DATAGRAM: usize = 2048;
/// Virtual peer addresses start here and skip the .0 and .255 of every /24.
const FIRST_PEER_IP: u32 = u32::from_be_bytes([127, 1, 0, 0]);
const PER_SUBNET: u32 = 254;
/// Socket buffer size asked for, each way.
const SOCKET_BUFFER: i32 = 16 << 20;
/// How long one send may wait for room in a full socket buffer before dropping the rest:
/// about 20 ms, in waits of at most 1 ms.
const SEND_PATIENCE: Patience = Patience {
    waits: 20,
    each: Duration::from_millis(1),
};

/// The loopback address of virtual peer `index` (0-based, counted over all workers).
pub fn peer_ip(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(FIRST_PEER_IP + (index / PER_SUBNET) * 256 + 1 + index % PER_SUBNET)
}

/// The inverse of [`peer_ip`].
pub fn peer_index(ip: Ipv4Addr) -> Option<u32> {
    let offset = u32::from(ip).checked_sub(FIRST_PEER_IP)?;
    let (subnet, host) = (offset / 256, offset % 256);
    (1..=PER_SUBNET)
        .contains(&host)
        .then(|| subnet * PER_SUBNET + host - 1)
}

/// Counts of what the endpoint could not do.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetStats {
    pub sent: u64,
    pub received: u64,
    /// Datagrams not sent: unsendable (too long, no such peer), refused by the kernel, or
    /// no room in the socket buffer for too long.
    pub send_dropped: u64,
    /// Datagrams to a destination outside loopback without `--allow-remote`.
    pub refused: u64,
    /// Datagrams received for no peer of ours.
    pub strays: u64,
}

impl NetStats {
    fn count(&mut self, flushed: Flushed) {
        self.sent += flushed.sent as u64;
        self.send_dropped += flushed.dropped.total();
    }
}

enum Sources {
    /// One wildcard socket; peer `slot` is `peer_ip(first + slot)` on its port.
    Loopback { socket: UdpSocket, port: u16 },
    /// A socket per peer.
    PerPeer { sockets: Vec<UdpSocket> },
}

/// The UDP side of `count` virtual peers numbered `first..first + count`.
pub struct PeerNet {
    sources: Sources,
    first: u32,
    count: u32,
    allow_remote: bool,
    /// Datagrams on their way out. Loopback peers share one socket and so one batch, sent
    /// when full and by [`PeerNet::flush`]; a per-peer socket cannot share a `sendmmsg`, so
    /// there the batch holds one datagram, sent through its peer's socket as it is queued.
    out: SendBatch<MAX_DATAGRAM>,
    stats: NetStats,
}

fn set_int_option(socket: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    let value: libc::c_int = value;
    // SAFETY: a valid socket and a c_int option value of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as _,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn udp_socket(bind: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    // A deep buffer rides out the bursts of thousands of peers. Root may go past the
    // kernel's rmem_max/wmem_max; anyone else gets what those allow.
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int_option(&socket, libc::SOL_SOCKET, force, SOCKET_BUFFER).is_err() {
            let _ = set_int_option(&socket, libc::SOL_SOCKET, plain, SOCKET_BUFFER);
        }
    }
    socket.bind(&SockAddr::from(bind))?;
    Ok(socket.into())
}

impl PeerNet {
    /// Peers `first..first + count` talking to loopback targets from their own 127/8 address.
    pub fn loopback(first: u32, count: u32) -> io::Result<PeerNet> {
        let socket = udp_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        enable_pktinfo(&socket)?;
        let port = socket.local_addr()?.port();
        Ok(PeerNet {
            sources: Sources::Loopback { socket, port },
            first,
            count,
            allow_remote: false,
            out: SendBatch::new(BATCH, false),
            stats: NetStats::default(),
        })
    }

    /// Peers `first..first + count`, one socket each, for targets beyond loopback.
    pub fn per_peer(first: u32, count: u32, allow_remote: bool) -> io::Result<PeerNet> {
        let sockets = (0..count)
            .map(|_| udp_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(PeerNet {
            sources: Sources::PerPeer { sockets },
            first,
            count,
            allow_remote,
            out: SendBatch::new(1, false),
            stats: NetStats::default(),
        })
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// The address the target sees for peer `slot`, when it is known before any traffic.
    pub fn peer_addr(&self, slot: u32) -> Option<SocketAddr> {
        match &self.sources {
            Sources::Loopback { port, .. } => {
                Some(SocketAddr::from((peer_ip(self.first + slot), *port)))
            }
            Sources::PerPeer { sockets } => sockets.get(slot as usize)?.local_addr().ok(),
        }
    }

    /// Queues a datagram from peer `slot` to `dst`; [`PeerNet::flush`] sends it, if a full
    /// batch has not already.
    pub fn send(&mut self, slot: u32, dst: SocketAddr, data: &[u8]) {
        let local = crate::cli::is_local(dst.ip());
        if !local && !self.allow_remote {
            self.stats.refused += 1;
            return;
        }
        if slot >= self.count {
            self.stats.send_dropped += 1;
            return;
        }
        let (queued, socket) = match &self.sources {
            Sources::Loopback { socket, .. } => (
                self.out.push_from(peer_ip(self.first + slot), dst, data),
                socket,
            ),
            Sources::PerPeer { sockets } => (self.out.push(dst, data), &sockets[slot as usize]),
        };
        // Too long, or IPv6 for our IPv4 sockets.
        if queued.is_err() {
            self.stats.send_dropped += 1;
            return;
        }
        if self.out.is_full() {
            self.stats.count(self.out.flush(socket, SEND_PATIENCE));
        }
    }

    /// Sends everything queued; waits briefly when the socket buffer is full.
    pub fn flush(&mut self) {
        // Per-peer batches never wait: each was sent as it was queued.
        if let Sources::Loopback { socket, .. } = &self.sources {
            self.stats.count(self.out.flush(socket, SEND_PATIENCE));
        }
    }

    /// Waits up to `timeout` for datagrams; true when some may be there.
    pub fn wait(&self, timeout: Duration) -> bool {
        let sockets = match &self.sources {
            Sources::Loopback { socket, .. } => std::slice::from_ref(socket),
            Sources::PerPeer { sockets } => sockets.as_slice(),
        };
        let mut fds: Vec<libc::pollfd> = sockets
            .iter()
            .map(|socket| libc::pollfd {
                fd: socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        poll(&mut fds, timeout).is_ok_and(|ready| ready > 0)
    }

    /// Receives one batch of the datagrams waiting now into `inbox` (replacing what it held);
    /// returns how many arrived, strays included. Fewer than a full batch means the socket
    /// is drained.
    pub fn receive(&mut self, inbox: &mut Inbox) -> usize {
        inbox.items.clear();
        let (first, count) = (self.first, self.count);
        let got = match &self.sources {
            Sources::Loopback { socket, .. } => {
                // A failed receive is an empty one: the next turn tries again.
                let Ok(received) = inbox.batch.recv(socket, RecvWait::Never) else {
                    return 0;
                };
                let got = received.len();
                for datagram in received {
                    let slot = datagram
                        .local_ip()
                        .and_then(peer_index)
                        .and_then(|p| p.checked_sub(first))
                        .filter(|&slot| slot < count);
                    match (slot, datagram.source()) {
                        (Some(slot), Some(from)) => {
                            inbox
                                .items
                                .push((slot, from, datagram.index(), datagram.data.len()))
                        }
                        _ => self.stats.strays += 1,
                    }
                }
                got
            }
            Sources::PerPeer { sockets } => {
                let mut got = 0;
                for (slot, socket) in sockets.iter().enumerate() {
                    while got < BATCH {
                        let Ok((len, from)) = socket.recv_from(inbox.batch.buffer_mut(got)) else {
                            break;
                        };
                        inbox.items.push((slot as u32, from, got, len));
                        got += 1;
                    }
                }
                got
            }
        };
        self.stats.received += got as u64;
        got
    }
}

/// Datagrams received in one batch, for the peers they were sent to.
pub struct Inbox {
    batch: RecvBatch<MAX_DATAGRAM>,
    /// (peer slot, source, buffer index, length)
    items: Vec<(u32, SocketAddr, usize, usize)>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            batch: RecvBatch::new(BATCH),
            items: Vec::with_capacity(BATCH),
        }
    }
}

impl Inbox {
    pub fn iter(&self) -> impl Iterator<Item = (u32, SocketAddr, &[u8])> + '_ {
        self.items
            .iter()
            .map(|&(slot, from, i, len)| (slot, from, &self.batch.buffer(i)[..len]))
    }
}

/// Whether a receive filled a whole batch (more may be waiting).
pub fn batch_was_full(got: usize) -> bool {
    got >= BATCH
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn peer_addresses_are_distinct_and_invertible() {
        assert_eq!(peer_ip(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(peer_ip(253), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(peer_ip(254), Ipv4Addr::new(127, 1, 1, 1));
        for i in [0, 1, 253, 254, 255, 65_000, 199_999] {
            assert!(peer_ip(i).is_loopback());
            assert_eq!(peer_index(peer_ip(i)), Some(i));
        }
        assert_eq!(peer_index(Ipv4Addr::new(127, 1, 0, 0)), None);
        assert_eq!(peer_index(Ipv4Addr::new(127, 0, 0, 1)), None);
    }

    #[test]
    fn each_peer_sends_from_and_receives_on_its_own_address() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        echo.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let target = echo.local_addr().unwrap();
        let mut net = PeerNet::loopback(10, 3).unwrap();
        for slot in 0..3u32 {
            net.send(slot, target, &[slot as u8; 5]);
        }
        net.flush();
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            let (n, from) = echo.recv_from(&mut buf).unwrap();
            let slot = buf[0] as u32;
            assert_eq!(n, 5);
            assert_eq!(Some(from), net.peer_addr(slot));
            echo.send_to(&buf[..n], from).unwrap();
        }
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while got.len() < 3 && std::time::Instant::now() < deadline {
            net.wait(Duration::from_millis(50));
            let mut inbox = Inbox::default();
            net.receive(&mut inbox);
            got.extend(
                inbox
                    .iter()
                    .map(|(slot, from, data)| (slot, from, data[0] as u32)),
            );
        }
        got.sort();
        assert_eq!(got.len(), 3);
        for (slot, from, first_byte) in got {
            assert_eq!(from, target);
            assert_eq!(slot, first_byte);
        }
    }

    #[test]
    fn destinations_outside_loopback_are_refused() {
        let mut net = PeerNet::loopback(0, 1).unwrap();
        net.send(0, "192.0.2.1:9".parse().unwrap(), b"x");
        net.flush();
        assert_eq!(net.stats().refused, 1);
        assert_eq!(net.stats().sent, 0);
    }
}
