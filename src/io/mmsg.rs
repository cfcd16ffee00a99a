//! The portable backend: `recvmmsg`/`sendmmsg` batches, waiting in `ppoll` on the socket and
//! the waker's eventfd. Runs wherever io_uring is refused (Docker's default seccomp, old
//! kernels) at one syscall per batch of up to [`BATCH`] datagrams.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::time::{Duration, Instant};

use super::addr;
use super::MAX_DATAGRAM;
use super::{is_fatal_socket_error, send_direct, BackendKind, DatagramIo, IoStats, Waker};

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub(crate) const BATCH: usize = 64;

/// The address room each receive header offers the kernel.
const NAME_ROOM: libc::socklen_t = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// How often a send batch meeting a full socket buffer is retried before the rest of it is
/// dropped, and how long each retry waits for room.
const SEND_RETRIES: usize = 3;
const SEND_RETRY_WAIT: Duration = Duration::from_millis(5);

/// Preallocated `mmsghdr`s, each pointing at its own buffer and address slot, so a batch
/// costs no allocation. The pointers aim into boxed slices, which never move when the
/// `Batch` itself does.
struct Batch {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    bufs: Box<[[u8; MAX_DATAGRAM]]>,
}

impl Batch {
    fn new() -> Self {
        // SAFETY: mmsghdr and iovec are plain C structs for which all zeroes is valid
        // (null pointers, zero lengths); every pointer is set below before any use.
        let mut hdrs: Box<[libc::mmsghdr]> = (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect();
        let mut iovs: Box<[libc::iovec]> = (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect();
        let mut addrs: Box<[libc::sockaddr_storage]> =
            (0..BATCH).map(|_| addr::zeroed_storage()).collect();
        let mut bufs: Box<[[u8; MAX_DATAGRAM]]> = vec![[0u8; MAX_DATAGRAM]; BATCH].into();
        for i in 0..BATCH {
            iovs[i].iov_base = bufs[i].as_mut_ptr().cast();
            iovs[i].iov_len = MAX_DATAGRAM;
            let hdr = &mut hdrs[i].msg_hdr;
            hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = NAME_ROOM;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
        }
        Batch {
            hdrs,
            iovs,
            addrs,
            bufs,
        }
    }
}

pub(crate) struct MmsgIo {
    socket: UdpSocket,
    v6: bool,
    waker: Waker,
    recv: Batch,
    send: Batch,
    /// Datagrams in `send` waiting for `flush`.
    queued: usize,
    stats: IoStats,
}

// SAFETY: the raw pointers inside the batches only point into heap memory owned by this
// same value, so moving it to another thread moves their targets along with them.
unsafe impl Send for MmsgIo {}

impl MmsgIo {
    pub(crate) fn new(socket: UdpSocket, waker: Waker) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let v6 = socket.local_addr()?.is_ipv6();
        Ok(MmsgIo {
            socket,
            v6,
            waker,
            recv: Batch::new(),
            send: Batch::new(),
            queued: 0,
            stats: IoStats::default(),
        })
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// One nonblocking `recvmmsg`. Returns how many datagrams were handed over, or `None`
    /// when nothing was waiting.
    fn try_recv(
        &mut self,
        on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> io::Result<Option<usize>> {
        let batch = &mut self.recv;
        // SAFETY: every header points at a live iovec/buffer/address slot of the sizes it
        // declares (see `Batch::new`); the kernel writes only within them.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                batch.hdrs.as_mut_ptr(),
                BATCH as _,
                0 as _,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(None),
                _ if is_fatal_socket_error(&err) => Err(err),
                // E.g. a queued ICMP error reported on the socket: count it and go on.
                _ => {
                    self.stats.recv_errors += 1;
                    Ok(None)
                }
            };
        }
        let mut delivered = 0;
        for i in 0..n as usize {
            let hdr = &mut batch.hdrs[i];
            let (flags, namelen) = (hdr.msg_hdr.msg_flags, hdr.msg_hdr.msg_namelen);
            // The kernel writes these only for the messages it returns: restoring them here
            // spares every receive a pass over all the headers.
            hdr.msg_hdr.msg_namelen = NAME_ROOM;
            hdr.msg_hdr.msg_flags = 0;
            if flags & libc::MSG_TRUNC != 0 {
                self.stats.truncated += 1;
                continue;
            }
            let Some(src) = addr::decode(&batch.addrs[i], namelen) else {
                self.stats.recv_errors += 1;
                continue;
            };
            let len = (hdr.msg_len as usize).min(MAX_DATAGRAM);
            self.stats.datagrams_received += 1;
            self.stats.bytes_received += len as u64;
            on_datagram(src, &mut batch.bufs[i][..len]);
            delivered += 1;
        }
        Ok(Some(delivered))
    }

    /// Waits in `ppoll` for the socket or the waker, at most `timeout`. Returns whether the
    /// waker fired.
    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        let mut fds = [
            libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.waker.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = timespec(timeout);
        // SAFETY: `fds` and `ts` are live for the call and sized as declared.
        let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, ptr::null()) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return if err.raw_os_error() == Some(libc::EINTR) {
                Ok(false)
            } else {
                Err(err)
            };
        }
        Ok(fds[1].revents != 0 && self.waker.drain())
    }

    /// Sends a datagram too long for the batch buffers on its own, after what was queued
    /// before it. Rare, so kept out of `queue_send`.
    #[cold]
    fn send_large(&mut self, dst: SocketAddr, data: &[u8]) {
        // Errors were counted; a dead socket shows up again on the next flush.
        let _ = self.flush();
        send_direct(&self.socket, self.v6, dst, data, &mut self.stats);
    }

    /// Waits up to `timeout` for room in the socket's send buffer.
    fn wait_writable(&self, timeout: Duration) {
        let mut fd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ts = timespec(timeout);
        // SAFETY: `fd` and `ts` are live for the call.
        unsafe { libc::ppoll(&mut fd, 1, &ts, ptr::null()) };
    }
}

pub(crate) fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as _,
    }
}

impl DatagramIo for MmsgIo {
    fn kind(&self) -> BackendKind {
        BackendKind::Mmsg
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn recv_batch(
        &mut self,
        timeout: Duration,
        on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> io::Result<usize> {
        // Set on the first pass that finds nothing: under load no clock is read.
        let mut deadline = None;
        // Bounded by the deadline: every pass but the last blocks in ppoll until the socket
        // or the waker is ready, or the time is up.
        loop {
            // Under load the data is already there: one syscall, no ppoll.
            if let Some(n) = self.try_recv(on_datagram)? {
                if n > 0 {
                    return Ok(n);
                }
            }
            let now = Instant::now();
            let remaining = deadline
                .get_or_insert(now + timeout)
                .saturating_duration_since(now);
            if remaining.is_zero() {
                // A pending wake is consumed even by a poll, so it cannot end a later wait.
                self.waker.drain();
                return Ok(0);
            }
            if self.wait(remaining)? {
                // Pick up whatever came with the wake, without waiting again.
                return Ok(self.try_recv(on_datagram)?.unwrap_or(0));
            }
        }
    }

    fn queue_send(&mut self, dst: SocketAddr, data: &[u8]) {
        if data.len() > MAX_DATAGRAM {
            return self.send_large(dst, data);
        }
        // Never full here: a full batch is sent right away, below.
        let i = self.queued;
        let batch = &mut self.send;
        let Some(addr_len) = addr::encode(dst, self.v6, &mut batch.addrs[i]) else {
            self.stats.send_errors += 1;
            return;
        };
        batch.bufs[i][..data.len()].copy_from_slice(data);
        batch.iovs[i].iov_len = data.len();
        batch.hdrs[i].msg_hdr.msg_namelen = addr_len;
        self.queued += 1;
        if self.queued == BATCH {
            // Errors were counted; a dead socket shows up again on the next flush.
            let _ = self.flush();
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let total = self.queued;
        self.queued = 0;
        let mut sent = 0;
        let mut retries = 0;
        // Bounded: each pass sends or drops at least one datagram, except the EAGAIN/EINTR
        // passes, of which there are at most SEND_RETRIES.
        while sent < total {
            // SAFETY: headers `sent..total` point at live buffers/addresses filled by
            // `queue_send`; the kernel only reads them (and writes `msg_len`).
            let n = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    self.send.hdrs.as_mut_ptr().add(sent),
                    (total - sent) as _,
                    0 as _,
                )
            };
            if n > 0 {
                for hdr in &self.send.hdrs[sent..sent + n as usize] {
                    self.stats.datagrams_sent += 1;
                    self.stats.bytes_sent += hdr.msg_len as u64;
                }
                sent += n as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) if retries < SEND_RETRIES => {
                    retries += 1;
                    self.wait_writable(SEND_RETRY_WAIT);
                }
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => {
                    // Still no room: drop the rest rather than stall the shard.
                    self.stats.send_errors += (total - sent) as u64;
                    return Ok(());
                }
                _ if is_fatal_socket_error(&err) => {
                    self.stats.send_errors += (total - sent) as u64;
                    return Err(err);
                }
                _ => {
                    // sendmmsg reports an error only for the first datagram of the call
                    // (unreachable, bad address, too big): skip that one.
                    self.stats.send_errors += 1;
                    sent += 1;
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}
