//! UDP I/O for the sharded runtime.
//!
//! Every shard thread owns one UDP socket bound with `SO_REUSEPORT` to the node's address
//! ([`bind_reuseport`]) and drives it through a [`DatagramIo`] backend chosen at start by
//! [`open_backend`]: io_uring (a multishot `recvmsg` fed by a provided-buffer ring, sends
//! submitted in batches) or `recvmmsg`/`sendmmsg` waiting in `ppoll`. io_uring is often
//! refused (Docker's default seccomp profile, old kernels, `kernel.io_uring_disabled`), so
//! [`BackendChoice::Auto`] falls back to mmsg by itself and says why.
//!
//! Both backends see the same addresses: IPv4-mapped IPv6 sources come out as plain IPv4,
//! and plain IPv4 destinations are mapped when the socket is a dual-stack IPv6 one.

mod mmsg;
mod socket;
mod uring;
mod waker;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use setowire_udp_batch::addr;

pub use setowire_udp_batch::{SendErrorKind, SendErrors};
pub use socket::{bind_reuseport, probe_exclusive};
pub use waker::Waker;

/// The largest datagram a backend receives whole; longer ones are dropped and counted as
/// truncated. Setowire datagrams stay under 1500 bytes, so this leaves room for DHT JSON and
/// STUN without paying for 64 KiB buffers. Longer datagrams can still be *sent*.
pub const MAX_DATAGRAM: usize = 2048;

/// Which backend a [`DatagramIo`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    IoUring,
    Mmsg,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::IoUring => "io_uring",
            BackendKind::Mmsg => "mmsg",
        })
    }
}

/// Which backend to open: a config knob (`auto`, `io_uring`, `mmsg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendChoice {
    /// io_uring when the kernel lets us, mmsg otherwise.
    #[default]
    Auto,
    IoUring,
    Mmsg,
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::IoUring => "io_uring",
            BackendChoice::Mmsg => "mmsg",
        })
    }
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "io_uring" | "io-uring" | "uring" => Ok(BackendChoice::IoUring),
            "mmsg" | "recvmmsg" => Ok(BackendChoice::Mmsg),
            other => Err(format!(
                "unknown I/O backend {other:?} (expected auto, io_uring or mmsg)"
            )),
        }
    }
}

/// Counters of one backend since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_received: u64,
    pub bytes_received: u64,
    /// Datagrams not sent, by why: refused by the kernel (unreachable, denied, no buffer
    /// space after a retry, bad destination…) or by the backend (no room to queue it).
    /// Each is dropped, never retried forever.
    pub send_errors: SendErrors,
    /// Failed receive operations (not counting "nothing to read").
    pub recv_errors: u64,
    /// Received datagrams longer than [`MAX_DATAGRAM`], dropped.
    pub truncated: u64,
}

/// A shard's socket behind one of the backends.
pub trait DatagramIo {
    fn kind(&self) -> BackendKind;

    /// The address the socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Waits until at least one datagram arrived, the [`Waker`] fired, or `timeout` passed,
    /// then calls `on_datagram(src, data)` for each datagram received in this batch (at most
    /// the backend's batch size); `src` is canonical (an IPv4-mapped source comes as IPv4).
    /// Returns how many were handed over. Never blocks longer than `timeout` (give or take
    /// the kernel's timer slack); `Duration::ZERO` only polls.
    fn recv_batch(
        &mut self,
        timeout: Duration,
        on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> io::Result<usize>;

    /// Copies a datagram into the send batch; sends the batch when it is full.
    fn queue_send(&mut self, dst: SocketAddr, data: &[u8]);

    /// Sends everything queued. Datagrams the kernel refuses are counted in
    /// [`IoStats::send_errors`] by kind, not retried forever; an error is returned only when the
    /// socket itself is unusable.
    fn flush(&mut self) -> io::Result<()>;

    /// Counters so far. io_uring counts a send when its completion is collected, which
    /// happens in `recv_batch` (or when send slots run short), so sends lag a little.
    fn stats(&self) -> IoStats;
}

/// True for the errors a blocking receive with a timeout returns when nothing arrived in
/// time (or a signal interrupted it): try again, nothing is wrong.
pub fn is_wait_over(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Opens the backend for a shard's socket (as made by [`bind_reuseport`]).
///
/// `Auto` tries io_uring and falls back to mmsg when io_uring is refused for any reason
/// (EPERM under Docker's default seccomp, ENOSYS, EINVAL on an old kernel, a required
/// feature missing); the third element then says why, for the log and the metrics.
/// `IoUring` fails instead of falling back.
///
/// The io_uring backend does not use `SINGLE_ISSUER`, so a backend opened on one thread may
/// be moved to its shard thread.
pub fn open_backend(
    socket: UdpSocket,
    choice: BackendChoice,
) -> io::Result<(Box<dyn DatagramIo + Send>, Waker, Option<String>)> {
    let waker = Waker::new()?;
    match choice {
        BackendChoice::Mmsg => {
            let io = mmsg::MmsgIo::new(socket, waker.clone())?;
            Ok((Box::new(io), waker, None))
        }
        BackendChoice::IoUring => match uring::UringIo::new(socket, waker.clone()) {
            Ok(io) => Ok((Box::new(io), waker, None)),
            Err(refused) => Err(io::Error::new(refused.error.kind(), refused.reason)),
        },
        BackendChoice::Auto => match uring::UringIo::new(socket, waker.clone()) {
            Ok(io) => Ok((Box::new(io), waker, None)),
            Err(refused) => {
                let io = mmsg::MmsgIo::new(refused.socket, waker.clone())?;
                Ok((Box::new(io), waker, Some(refused.reason)))
            }
        },
    }
}

/// Sends one datagram with a plain `sendto`: for the rare datagram longer than the batch
/// buffers, so those need not be sized for 64 KiB.
fn send_direct(socket: &UdpSocket, v6: bool, dst: SocketAddr, data: &[u8], stats: &mut IoStats) {
    use std::os::fd::AsRawFd;
    let mut storage = addr::zeroed_storage();
    let Some(len) = addr::encode(dst, v6, &mut storage) else {
        stats.send_errors.add(SendErrorKind::Unreachable, 1);
        return;
    };
    // SAFETY: `data` and `storage` are live for the call and `len` fits the storage.
    let rc = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            0,
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc < 0 {
        let kind = SendErrorKind::of(&io::Error::last_os_error());
        stats.send_errors.add(kind, 1);
    } else {
        stats.datagrams_sent += 1;
        stats.bytes_sent += rc as u64;
    }
}
