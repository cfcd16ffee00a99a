//! Sending: datagrams copied into a preallocated batch, then `sendmmsg` until it is empty.

use std::fmt;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr;
use std::time::Duration;

use crate::addr;
use crate::errors::{is_no_room, is_socket_unusable, SendErrorKind, SendErrors};
use crate::pktinfo::{SourceControl, SOURCE_CONTROL_LEN};
use crate::poll::poll;

/// Why a datagram was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The batch is full: flush it first.
    Full,
    /// Longer than the batch's buffers.
    TooLong,
    /// Not reachable from a socket of the batch's family (an IPv6 destination on an IPv4
    /// socket).
    Unreachable,
}

impl PushError {
    /// The kind of send error a datagram refused this way counts as.
    pub fn kind(self) -> SendErrorKind {
        match self {
            PushError::Full => SendErrorKind::WouldBlock,
            PushError::TooLong => SendErrorKind::TooLarge,
            PushError::Unreachable => SendErrorKind::Unreachable,
        }
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full => "send batch full",
            PushError::TooLong => "datagram longer than the send batch's buffers",
            PushError::Unreachable => "destination unreachable from this socket's family",
        })
    }
}

impl std::error::Error for PushError {}

/// How a flush meets a full socket buffer: it waits for room up to `waits` times, at most
/// `each` every time, and then drops what is left rather than stall its caller longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    pub waits: u32,
    pub each: Duration,
}

impl Patience {
    /// Drops what does not fit at once.
    pub const NONE: Patience = Patience {
        waits: 0,
        each: Duration::ZERO,
    };
}

/// What a flush did with the batch.
#[derive(Debug, Default)]
#[must_use]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Their payload bytes.
    pub bytes: usize,
    /// Datagrams given up on, by why: refused by the kernel (its errno's kind), still no
    /// room after the patience ran out ([`SendErrorKind::WouldBlock`]), or not tried once the
    /// socket failed (the kind of that failure).
    pub dropped: SendErrors,
    /// Set when the socket itself failed ([`crate::is_socket_unusable`]), which ended the
    /// flush.
    pub socket_error: Option<io::Error>,
}

/// Everything one datagram's header points at.
#[repr(C)]
struct SendSlot<const MAX_LEN: usize> {
    name: libc::sockaddr_storage,
    control: SourceControl,
    /// Where the kernel is told the buffer is, and the length queued in it.
    iov: libc::iovec,
    buf: [u8; MAX_LEN],
}

/// Buffers of `MAX_LEN` bytes, destination addresses and `IP_PKTINFO` source messages for
/// up to `capacity` datagrams, each behind its own `mmsghdr`.
pub struct SendBatch<const MAX_LEN: usize> {
    hdrs: Box<[libc::mmsghdr]>,
    /// As many as `hdrs`: slot `i` is header `i`'s.
    slots: Box<[SendSlot<MAX_LEN>]>,
    v6_socket: bool,
    /// Datagrams `0..queued` wait for the flush; never more than the capacity.
    queued: usize,
}

// SAFETY: the raw pointers in the headers and slots aim only into the boxed slots owned by
// the same batch, whose heap memory moves along with it.
unsafe impl<const MAX_LEN: usize> Send for SendBatch<MAX_LEN> {}

impl<const MAX_LEN: usize> SendBatch<MAX_LEN> {
    /// A batch of `capacity` datagrams of up to `MAX_LEN` bytes each, for a socket of the
    /// family `v6_socket` says (destinations are written in the form it accepts, see
    /// [`addr::encode`]).
    pub fn new(capacity: usize, v6_socket: bool) -> Self {
        assert!(capacity > 0 && MAX_LEN > 0, "an empty send batch");
        // SAFETY: mmsghdr and iovec are plain C structs for which all zeroes is valid (null
        // pointers, zero lengths); every pointer is set below before any use.
        let mut slots: Box<[SendSlot<MAX_LEN>]> = (0..capacity)
            .map(|_| SendSlot {
                name: addr::zeroed_storage(),
                control: SourceControl::new(),
                iov: unsafe { mem::zeroed() },
                buf: [0; MAX_LEN],
            })
            .collect();
        let mut hdrs: Box<[libc::mmsghdr]> =
            (0..capacity).map(|_| unsafe { mem::zeroed() }).collect();
        // The pointers aim into the boxed slots' heap memory, which never moves. Lengths are
        // set per datagram, by `queue`.
        for (msg, slot) in hdrs.iter_mut().zip(slots.iter_mut()) {
            slot.iov.iov_base = slot.buf.as_mut_ptr().cast();
            let hdr = &mut msg.msg_hdr;
            hdr.msg_name = ptr::addr_of_mut!(slot.name).cast();
            hdr.msg_iov = &mut slot.iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = ptr::addr_of_mut!(slot.control).cast();
        }
        SendBatch {
            hdrs,
            slots,
            v6_socket,
            queued: 0,
        }
    }

    /// Copies a datagram to `dst` into the batch, to leave from the socket's own address.
    #[inline]
    pub fn push(&mut self, dst: SocketAddr, data: &[u8]) -> Result<(), PushError> {
        self.queue(None, dst, data)
    }

    /// Copies a datagram to `dst` into the batch, to leave from the local IPv4 address
    /// `src` (an `IP_PKTINFO` message; the socket must be IPv4 and may be bound to the
    /// wildcard address).
    pub fn push_from(
        &mut self,
        src: Ipv4Addr,
        dst: SocketAddr,
        data: &[u8],
    ) -> Result<(), PushError> {
        self.queue(Some(src), dst, data)
    }

    #[inline]
    fn queue(
        &mut self,
        src: Option<Ipv4Addr>,
        dst: SocketAddr,
        data: &[u8],
    ) -> Result<(), PushError> {
        let i = self.queued;
        if i == self.hdrs.len() {
            return Err(PushError::Full);
        }
        if data.len() > MAX_LEN {
            return Err(PushError::TooLong);
        }
        // SAFETY: `i` is below the capacity (`queued` never passes it), and there are as
        // many slots as headers.
        let (hdr, slot) = unsafe {
            (
                &mut self.hdrs.get_unchecked_mut(i).msg_hdr,
                self.slots.get_unchecked_mut(i),
            )
        };
        hdr.msg_namelen =
            addr::encode(dst, self.v6_socket, &mut slot.name).ok_or(PushError::Unreachable)?;
        hdr.msg_controllen = match src {
            Some(src) => {
                slot.control.set_source(src);
                SOURCE_CONTROL_LEN as _
            }
            None => 0,
        };
        slot.buf[..data.len()].copy_from_slice(data);
        slot.iov.iov_len = data.len();
        self.queued = i + 1;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    pub fn is_full(&self) -> bool {
        self.queued == self.hdrs.len()
    }

    /// Sends everything queued through `socket`, in order, and empties the batch whatever
    /// happened to each datagram.
    pub fn flush(&mut self, socket: impl AsFd, patience: Patience) -> Flushed {
        let fd = socket.as_fd().as_raw_fd();
        let total = mem::replace(&mut self.queued, 0);
        let mut flushed = Flushed::default();
        let mut done = 0;
        let mut waits = 0;
        // Bounded: each pass sends or drops at least one datagram, but for the waits for
        // room, of which there are at most `patience.waits`.
        while done < total {
            // SAFETY: headers `done..total` point at live buffers, addresses and control
            // messages filled by `queue`, of the lengths it set; the kernel only reads them
            // (and writes `msg_len`).
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(done),
                    (total - done) as libc::c_uint,
                    0,
                )
            };
            if rc > 0 {
                let sent = rc as usize;
                for msg in &self.hdrs[done..done + sent] {
                    flushed.bytes += msg.msg_len as usize;
                }
                flushed.sent += sent;
                done += sent;
                continue;
            }
            let err = io::Error::last_os_error();
            if is_no_room(&err) {
                if waits < patience.waits {
                    waits += 1;
                    wait_for_room(fd, patience.each);
                    continue;
                }
                let left = (total - done) as u64;
                flushed.dropped.add(SendErrorKind::WouldBlock, left);
                break;
            }
            if is_socket_unusable(&err) {
                let left = (total - done) as u64;
                flushed.dropped.add(SendErrorKind::of(&err), left);
                flushed.socket_error = Some(err);
                break;
            }
            // sendmmsg reports an error only for the first datagram of the call: skip it.
            flushed.dropped.add(SendErrorKind::of(&err), 1);
            done += 1;
        }
        flushed
    }
}

/// Waits up to `timeout` for room in the socket's send buffer; the send that follows tells
/// whether there is.
fn wait_for_room(fd: RawFd, timeout: Duration) {
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    }];
    // An error here shows up again, and is handled, in that send.
    let _ = poll(&mut fds, timeout);
}
