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
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Datagrams per `sendmmsg`/`recvmmsg`.
const BATCH: usize = 64;
/// Larger than any Setowire datagram (1400 B) and any DHT reply.
pub const MAX_DATAGRAM: usize = 2048;
/// Bytes of datagrams waiting to be sent; more are dropped and counted.
const OUT_QUEUE_BYTES: usize = 16 << 20;
/// Virtual peer addresses start here and skip the .0 and .255 of every /24.
const FIRST_PEER_IP: u32 = u32::from_be_bytes([127, 1, 0, 0]);
const PER_SUBNET: u32 = 254;
/// Socket buffer size asked for, each way.
const SOCKET_BUFFER: i32 = 16 << 20;
/// How long one flush may wait for room in a full socket buffer before dropping the rest.
const SEND_STALL: Duration = Duration::from_millis(20);

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
    /// Datagrams not sent: queue full, or the kernel kept refusing.
    pub send_dropped: u64,
    /// Datagrams to a destination outside loopback without `--allow-remote`.
    pub refused: u64,
    /// Datagrams received for no peer of ours.
    pub strays: u64,
}

enum Sources {
    /// One wildcard socket; peer `slot` is `peer_ip(first + slot)` on its port.
    Loopback { socket: Socket, port: u16 },
    /// A socket per peer.
    PerPeer { sockets: Vec<Socket> },
}

struct Queued {
    slot: u32,
    dst: SocketAddr,
    start: usize,
    len: usize,
}

/// The UDP side of `count` virtual peers numbered `first..first + count`.
pub struct PeerNet {
    sources: Sources,
    first: u32,
    count: u32,
    allow_remote: bool,
    queue: Vec<Queued>,
    bytes: Vec<u8>,
    stats: NetStats,
}

/// An `IP_PKTINFO` control message, laid out as the kernel reads and writes it.
#[repr(C)]
#[derive(Clone, Copy)]
struct PktInfo {
    hdr: libc::cmsghdr,
    info: libc::in_pktinfo,
}

fn pktinfo_space() -> usize {
    // SAFETY: CMSG_SPACE only computes a length.
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in_pktinfo>() as _) as usize }
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: an all-zero sockaddr_in is valid; the fields that matter are set below.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    sa.sin_family = libc::AF_INET as _;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    sa
}

fn would_block(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS)
    )
}

/// Asks the kernel to tell, for each datagram received, the address it was sent to.
fn enable_pktinfo(socket: &Socket) -> io::Result<()> {
    set_int_option(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
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

fn udp_socket(bind: SocketAddr) -> io::Result<Socket> {
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
    Ok(socket)
}

impl PeerNet {
    /// Peers `first..first + count` talking to loopback targets from their own 127/8 address.
    pub fn loopback(first: u32, count: u32) -> io::Result<PeerNet> {
        let socket = udp_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        enable_pktinfo(&socket)?;
        let port = socket
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .unwrap_or(0);
        Ok(Self::with(
            Sources::Loopback { socket, port },
            first,
            count,
            false,
        ))
    }

    /// Peers `first..first + count`, one socket each, for targets beyond loopback.
    pub fn per_peer(first: u32, count: u32, allow_remote: bool) -> io::Result<PeerNet> {
        let sockets = (0..count)
            .map(|_| udp_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self::with(
            Sources::PerPeer { sockets },
            first,
            count,
            allow_remote,
        ))
    }

    fn with(sources: Sources, first: u32, count: u32, allow_remote: bool) -> PeerNet {
        PeerNet {
            sources,
            first,
            count,
            allow_remote,
            queue: Vec::new(),
            bytes: Vec::new(),
            stats: NetStats::default(),
        }
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
            Sources::PerPeer { sockets } => {
                sockets.get(slot as usize)?.local_addr().ok()?.as_socket()
            }
        }
    }

    /// Queues a datagram from peer `slot` to `dst`; [`PeerNet::flush`] sends it.
    pub fn send(&mut self, slot: u32, dst: SocketAddr, data: &[u8]) {
        let local = crate::cli::is_local(dst.ip());
        if !local && !self.allow_remote {
            self.stats.refused += 1;
            return;
        }
        if slot >= self.count
            || data.len() > MAX_DATAGRAM
            || self.bytes.len() + data.len() > OUT_QUEUE_BYTES
            || (matches!(self.sources, Sources::Loopback { .. }) && !dst.is_ipv4())
        {
            self.stats.send_dropped += 1;
            return;
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.queue.push(Queued {
            slot,
            dst,
            start,
            len: data.len(),
        });
    }

    /// Sends everything queued, in batches; waits briefly when the socket buffer is full.
    pub fn flush(&mut self) {
        let mut done = 0;
        let mut stalled_since = None;
        while done < self.queue.len() {
            let result = match &self.sources {
                Sources::Loopback { socket, .. } => {
                    send_batch_loopback(socket, self.first, &self.queue[done..], &self.bytes)
                }
                Sources::PerPeer { sockets } => {
                    let q = &self.queue[done];
                    sockets[q.slot as usize]
                        .send_to(
                            &self.bytes[q.start..q.start + q.len],
                            &SockAddr::from(q.dst),
                        )
                        .map(|_| 1)
                }
            };
            match result {
                Ok(n) => {
                    done += n;
                    self.stats.sent += n as u64;
                    stalled_since = None;
                }
                Err(e) if would_block(&e) => {
                    let since = *stalled_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > SEND_STALL {
                        break;
                    }
                    self.wait_writable(Duration::from_millis(1));
                }
                // Anything else (an unreachable port, say) loses this one datagram.
                Err(_) => {
                    done += 1;
                    self.stats.send_dropped += 1;
                }
            }
        }
        self.stats.send_dropped += (self.queue.len() - done) as u64;
        self.queue.clear();
        self.bytes.clear();
    }

    fn fds(&self) -> Vec<i32> {
        match &self.sources {
            Sources::Loopback { socket, .. } => vec![socket.as_raw_fd()],
            Sources::PerPeer { sockets } => sockets.iter().map(|s| s.as_raw_fd()).collect(),
        }
    }

    fn wait_writable(&self, timeout: Duration) {
        poll(&self.fds(), libc::POLLOUT, timeout);
    }

    /// Waits up to `timeout` for datagrams; true when some may be there.
    pub fn wait(&self, timeout: Duration) -> bool {
        poll(&self.fds(), libc::POLLIN, timeout)
    }

    /// Receives one batch of the datagrams waiting now into `inbox` (replacing what it held);
    /// returns how many arrived, strays included. Fewer than a full batch means the socket
    /// is drained.
    pub fn receive(&mut self, inbox: &mut Inbox) -> usize {
        inbox.items.clear();
        let (first, count) = (self.first, self.count);
        let got = match &self.sources {
            Sources::Loopback { socket, .. } => {
                let mut strays = 0;
                let got = recv_batch_loopback(socket, &mut inbox.bufs, |i, local, from, len| {
                    match peer_index(local).and_then(|p| p.checked_sub(first)) {
                        Some(slot) if slot < count => inbox.items.push((slot, from, i, len)),
                        _ => strays += 1,
                    }
                });
                self.stats.strays += strays;
                got
            }
            Sources::PerPeer { sockets } => {
                let mut got = 0;
                for (slot, socket) in sockets.iter().enumerate() {
                    while got < BATCH {
                        // SAFETY: a u8 buffer viewed as MaybeUninit<u8> for recv_from, which
                        // only writes into it.
                        let buf = unsafe {
                            &mut *(inbox.bufs[got].as_mut_slice() as *mut [u8]
                                as *mut [mem::MaybeUninit<u8>])
                        };
                        let Ok((len, from)) = socket.recv_from(buf) else {
                            break;
                        };
                        if let Some(from) = from.as_socket() {
                            inbox.items.push((slot as u32, from, got, len));
                            got += 1;
                        }
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
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    /// (peer slot, source, buffer index, length)
    items: Vec<(u32, SocketAddr, usize, usize)>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            bufs: vec![[0; MAX_DATAGRAM]; BATCH],
            items: Vec::with_capacity(BATCH),
        }
    }
}

impl Inbox {
    pub fn iter(&self) -> impl Iterator<Item = (u32, SocketAddr, &[u8])> + '_ {
        self.items
            .iter()
            .map(|&(slot, from, i, len)| (slot, from, &self.bufs[i][..len]))
    }
}

/// Whether a receive filled a whole batch (more may be waiting).
pub fn batch_was_full(got: usize) -> bool {
    got >= BATCH
}

fn poll(fds: &[i32], events: libc::c_short, timeout: Duration) -> bool {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    // ppoll, not poll: a wait of less than a millisecond must wait, not spin.
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: `pollfds` is a live array of that many entries; the timespec outlives the call.
    let rc = unsafe {
        libc::ppoll(
            pollfds.as_mut_ptr(),
            pollfds.len() as _,
            &timeout,
            std::ptr::null(),
        )
    };
    rc > 0
}

/// One `sendmmsg` of up to [`BATCH`] queued datagrams, each from its peer's address.
fn send_batch_loopback(
    socket: &Socket,
    first: u32,
    queued: &[Queued],
    bytes: &[u8],
) -> io::Result<usize> {
    let n = queued.len().min(BATCH);
    let space = pktinfo_space();
    debug_assert_eq!(space, mem::size_of::<PktInfo>());
    let mut names = [sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); BATCH];
    // SAFETY: all-zero control messages, iovecs and headers are valid; they are filled below.
    let mut controls: [PktInfo; BATCH] = unsafe { mem::zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
    for (i, q) in queued[..n].iter().enumerate() {
        let SocketAddr::V4(dst) = q.dst else {
            unreachable!("checked when queued")
        };
        names[i] = sockaddr_in(dst);
        let c = &mut controls[i];
        c.hdr.cmsg_level = libc::IPPROTO_IP;
        c.hdr.cmsg_type = libc::IP_PKTINFO;
        // SAFETY: CMSG_LEN only computes a length.
        c.hdr.cmsg_len = unsafe { libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as _) } as _;
        c.info.ipi_spec_dst.s_addr = u32::from(peer_ip(first + q.slot)).to_be();
        iovs[i] = libc::iovec {
            iov_base: bytes[q.start..].as_ptr() as *mut _,
            iov_len: q.len,
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as _;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = (&mut controls[i] as *mut PktInfo).cast();
        h.msg_controllen = space as _;
    }
    // SAFETY: every header points into the arrays above and into `bytes`, all alive for the
    // call; the kernel only reads the iovec data.
    let rc = unsafe { libc::sendmmsg(socket.as_raw_fd(), hdrs.as_mut_ptr(), n as _, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// One `recvmmsg` without waiting; gives each datagram with the local address it was sent to.
fn recv_batch_loopback(
    socket: &Socket,
    bufs: &mut [[u8; MAX_DATAGRAM]],
    mut sink: impl FnMut(usize, Ipv4Addr, SocketAddr, usize),
) -> usize {
    let n = bufs.len().min(BATCH);
    // SAFETY: all-zero addresses, control buffers, iovecs and headers are valid.
    let mut names: [libc::sockaddr_in; BATCH] = unsafe { mem::zeroed() };
    let mut controls: [[u64; 8]; BATCH] = [[0; 8]; BATCH];
    let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
    for i in 0..n {
        iovs[i] = libc::iovec {
            iov_base: bufs[i].as_mut_ptr().cast(),
            iov_len: MAX_DATAGRAM,
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as _;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = controls[i].as_mut_ptr().cast();
        h.msg_controllen = mem::size_of_val(&controls[i]) as _;
    }
    // SAFETY: the headers point at the arrays above and at `bufs`, alive and writable.
    let rc = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as _,
            libc::MSG_DONTWAIT as _,
            std::ptr::null_mut(),
        )
    };
    if rc <= 0 {
        return 0;
    }
    for i in 0..rc as usize {
        let h = &hdrs[i].msg_hdr;
        let from = SocketAddr::from((
            Ipv4Addr::from(u32::from_be(names[i].sin_addr.s_addr)),
            u16::from_be(names[i].sin_port),
        ));
        let Some(local) = local_address(h) else {
            continue;
        };
        sink(i, local, from, hdrs[i].msg_len as usize);
    }
    rc as usize
}

/// The destination address of a received datagram, from its `IP_PKTINFO` message.
fn local_address(h: &libc::msghdr) -> Option<Ipv4Addr> {
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer the kernel filled, within
    // msg_controllen; the data of an IP_PKTINFO message is an in_pktinfo.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                return Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

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
