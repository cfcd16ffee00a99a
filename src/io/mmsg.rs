//! The portable backend: `recvmmsg`/`sendmmsg` batches (`setowire_udp_batch`'s), waiting in
//! `ppoll` on the socket and the waker's eventfd. Runs wherever io_uring is refused (Docker's
//! default seccomp, old kernels) at one syscall per batch of up to [`BATCH`] datagrams.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use setowire_udp_batch::{
    is_socket_unusable, poll, Flushed, Patience, PushError, RecvBatch, RecvWait, SendBatch,
};

use super::MAX_DATAGRAM;
use super::{send_direct, BackendKind, DatagramIo, IoStats, Waker};

/// Datagrams per `recvmmsg`/`sendmmsg` call.
const BATCH: usize = 64;

/// How often a send batch meeting a full socket buffer waits for room, and how long each
/// time, before the rest of it is dropped rather than stall the shard.
const SEND_PATIENCE: Patience = Patience {
    waits: 3,
    each: Duration::from_millis(5),
};

pub(crate) struct MmsgIo {
    socket: UdpSocket,
    v6: bool,
    waker: Waker,
    recv: RecvBatch<MAX_DATAGRAM>,
    send: SendBatch<MAX_DATAGRAM>,
    stats: IoStats,
}

impl MmsgIo {
    pub(crate) fn new(socket: UdpSocket, waker: Waker) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let v6 = socket.local_addr()?.is_ipv6();
        Ok(MmsgIo {
            socket,
            v6,
            waker,
            recv: RecvBatch::new(BATCH),
            send: SendBatch::new(BATCH, v6),
            stats: IoStats::default(),
        })
    }

    /// One nonblocking `recvmmsg`. Returns how many datagrams were handed over.
    fn try_recv(
        &mut self,
        on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> io::Result<usize> {
        let received = match self.recv.recv(&self.socket, RecvWait::Never) {
            Ok(received) => received,
            Err(err) if is_socket_unusable(&err) => return Err(err),
            // E.g. a queued ICMP error reported on the socket: count it and go on.
            Err(_) => {
                self.stats.recv_errors += 1;
                return Ok(0);
            }
        };
        let mut delivered = 0;
        for datagram in received {
            if datagram.is_truncated() {
                self.stats.truncated += 1;
                continue;
            }
            let Some(src) = datagram.source() else {
                self.stats.recv_errors += 1;
                continue;
            };
            self.stats.datagrams_received += 1;
            self.stats.bytes_received += datagram.data.len() as u64;
            on_datagram(src, datagram.data);
            delivered += 1;
        }
        Ok(delivered)
    }

    /// Waits in `ppoll` for the socket or the waker, at most `timeout`. Returns whether the
    /// waker fired.
    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        let mut fds = [
            libc::pollfd {
                fd: self.socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.waker.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        poll(&mut fds, timeout)?;
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
            let n = self.try_recv(on_datagram)?;
            if n > 0 {
                return Ok(n);
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
                return self.try_recv(on_datagram);
            }
        }
    }

    fn queue_send(&mut self, dst: SocketAddr, data: &[u8]) {
        match self.send.push(dst, data) {
            // Never full before the push: a full batch is sent right away.
            Ok(()) if self.send.is_full() => {
                // Errors were counted; a dead socket shows up again on the next flush.
                let _ = self.flush();
            }
            Ok(()) => {}
            Err(PushError::TooLong) => self.send_large(dst, data),
            Err(refused @ (PushError::Unreachable | PushError::Full)) => {
                self.stats.send_errors.add(refused.kind(), 1)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let Flushed {
            sent,
            bytes,
            dropped,
            socket_error,
        } = self.send.flush(&self.socket, SEND_PATIENCE);
        self.stats.datagrams_sent += sent as u64;
        self.stats.bytes_sent += bytes as u64;
        self.stats.send_errors.merge(&dropped);
        socket_error.map_or(Ok(()), Err)
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}
