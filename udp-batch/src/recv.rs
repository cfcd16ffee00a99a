//! Receiving: one `recvmmsg` into a preallocated batch.

use std::io;
use std::marker::PhantomData;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr;

use crate::addr;
use crate::errors::is_nothing_waiting;
use crate::pktinfo::ControlRoom;

/// The address room each header offers the kernel.
const NAME_ROOM: libc::socklen_t = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// Whether a receive waits for its first datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvWait {
    /// Takes what is waiting now, if anything (`MSG_DONTWAIT`).
    Never,
    /// Blocks for the first datagram, up to the socket's receive timeout, then takes what
    /// else is waiting without blocking again (`MSG_WAITFORONE`).
    ForFirst,
}

/// Everything one datagram's header points at.
#[repr(C)]
struct RecvSlot<const LEN: usize> {
    name: libc::sockaddr_storage,
    control: ControlRoom,
    /// Where the kernel is told the buffer is.
    iov: libc::iovec,
    buf: [u8; LEN],
}

/// Buffers of `LEN` bytes, source addresses and control rooms for up to `capacity`
/// datagrams, each behind its own `mmsghdr`.
pub struct RecvBatch<const LEN: usize> {
    hdrs: Box<[libc::mmsghdr]>,
    /// As many as `hdrs`: slot `i` is header `i`'s.
    slots: Box<[RecvSlot<LEN>]>,
}

// SAFETY: the raw pointers in the headers and slots aim only into the boxed slots owned by
// the same batch, whose heap memory moves along with it.
unsafe impl<const LEN: usize> Send for RecvBatch<LEN> {}

impl<const LEN: usize> RecvBatch<LEN> {
    /// A batch of `capacity` datagrams of up to `LEN` bytes each; longer ones arrive cut to
    /// that length and marked [`Datagram::is_truncated`].
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0 && LEN > 0, "an empty receive batch");
        // SAFETY: mmsghdr and iovec are plain C structs for which all zeroes is valid (null
        // pointers, zero lengths); every pointer is set below before any use.
        let mut slots: Box<[RecvSlot<LEN>]> = (0..capacity)
            .map(|_| RecvSlot {
                name: addr::zeroed_storage(),
                control: ControlRoom::new(),
                iov: unsafe { mem::zeroed() },
                buf: [0; LEN],
            })
            .collect();
        let mut hdrs: Box<[libc::mmsghdr]> =
            (0..capacity).map(|_| unsafe { mem::zeroed() }).collect();
        // The pointers aim into the boxed slots' heap memory, which never moves.
        for (msg, slot) in hdrs.iter_mut().zip(slots.iter_mut()) {
            slot.iov = libc::iovec {
                iov_base: slot.buf.as_mut_ptr().cast(),
                iov_len: LEN,
            };
            let hdr = &mut msg.msg_hdr;
            hdr.msg_name = ptr::addr_of_mut!(slot.name).cast();
            hdr.msg_iov = &mut slot.iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = ptr::addr_of_mut!(slot.control).cast();
            restore_room(hdr);
        }
        RecvBatch { hdrs, slots }
    }

    /// One `recvmmsg` on `socket`: the datagrams it brought, in order. Nothing waiting (or
    /// an interrupting signal) gives an empty batch, not an error.
    pub fn recv(&mut self, socket: impl AsFd, wait: RecvWait) -> io::Result<Received<'_, LEN>> {
        let flags = match wait {
            RecvWait::Never => libc::MSG_DONTWAIT,
            RecvWait::ForFirst => libc::MSG_WAITFORONE,
        };
        // SAFETY: every header points at its own slot's iovec, buffer, address and control
        // room, of the sizes it declares (see `new`), all owned by `self`; the kernel writes
        // only within them. A header whose room a previous `Received` left shrunk (when it
        // was leaked) only makes the kernel write less.
        let rc = unsafe {
            libc::recvmmsg(
                socket.as_fd().as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                flags as _,
                ptr::null_mut(),
            )
        };
        let count = if rc >= 0 {
            rc as usize
        } else {
            let err = io::Error::last_os_error();
            if !is_nothing_waiting(&err) {
                return Err(err);
            }
            0
        };
        Ok(Received {
            hdrs: self.hdrs.as_mut_ptr(),
            slots: self.slots.as_mut_ptr(),
            next: 0,
            count,
            _batch: PhantomData,
        })
    }

    /// Buffer `index` whole, as the last receive left it: for keeping datagrams past the
    /// [`Received`] that brought them, by their [`Datagram::index`] and length.
    pub fn buffer(&self, index: usize) -> &[u8; LEN] {
        &self.slots[index].buf
    }

    /// Buffer `index` whole, to receive into by other means (a plain `recv_from`) and read
    /// with [`RecvBatch::buffer`] like a datagram of the batch.
    pub fn buffer_mut(&mut self, index: usize) -> &mut [u8; LEN] {
        &mut self.slots[index].buf
    }
}

/// The lengths the kernel overwrites on receipt (it reads them as room first), reset to the
/// whole room. `msg_flags` it only writes, so that needs nothing.
fn restore_room(hdr: &mut libc::msghdr) {
    hdr.msg_namelen = NAME_ROOM;
    hdr.msg_controllen = ControlRoom::LEN as _;
}

/// The datagrams of one receive. Each header's room is restored as its datagram is handed
/// out, and by `Drop` for those never reached, so the next receive finds every header whole
/// at no cost of a separate pass.
pub struct Received<'a, const LEN: usize> {
    // Raw pointers rather than slice iterators: one index walks the headers and slots
    // together, with no bounds or end checks but `next < count`.
    hdrs: *mut libc::mmsghdr,
    slots: *mut RecvSlot<LEN>,
    /// Datagrams `next..count` are still to be handed out.
    next: usize,
    count: usize,
    /// The batch stays borrowed, mutably, for as long as its datagrams are.
    _batch: PhantomData<&'a mut RecvBatch<LEN>>,
}

impl<const LEN: usize> Received<'_, LEN> {
    /// Whether the receive brought nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl<'a, const LEN: usize> Iterator for Received<'a, LEN> {
    type Item = Datagram<'a>;

    #[inline]
    fn next(&mut self) -> Option<Datagram<'a>> {
        if self.next == self.count {
            return None;
        }
        let index = self.next;
        self.next += 1;
        // SAFETY: `index < count`, and the kernel filled at most as many datagrams as the
        // batch has headers and slots, so header and slot `index` exist. Each index is
        // handed out once, so these borrows alias nothing (the slot's fields are borrowed
        // one by one, leaving its iovec alone), and the batch is borrowed mutably for 'a.
        let (msg, buf, name, control) = unsafe {
            let slot = self.slots.add(index);
            (
                &mut *self.hdrs.add(index),
                &mut *ptr::addr_of_mut!((*slot).buf),
                &*ptr::addr_of!((*slot).name),
                &*ptr::addr_of!((*slot).control),
            )
        };
        let hdr = &mut msg.msg_hdr;
        let datagram = Datagram {
            // The kernel wrote the first `msg_len` bytes, cut to the buffer.
            data: &mut buf[..(msg.msg_len as usize).min(LEN)],
            name,
            control,
            index,
            name_len: hdr.msg_namelen,
            truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
            control_len: hdr.msg_controllen as _,
        };
        restore_room(hdr);
        Some(datagram)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.next;
        (left, Some(left))
    }
}

impl<const LEN: usize> ExactSizeIterator for Received<'_, LEN> {}

impl<const LEN: usize> Drop for Received<'_, LEN> {
    fn drop(&mut self) {
        for index in self.next..self.count {
            // SAFETY: as in `next`, header `index` exists; no datagram refers to headers.
            restore_room(unsafe { &mut (*self.hdrs.add(index)).msg_hdr });
        }
    }
}

/// One datagram of a [`Received`] batch.
pub struct Datagram<'a> {
    /// The payload, at most the batch's buffer length.
    pub data: &'a mut [u8],
    name: &'a libc::sockaddr_storage,
    control: &'a ControlRoom,
    index: usize,
    name_len: libc::socklen_t,
    truncated: bool,
    control_len: usize,
}

impl Datagram<'_> {
    /// Where it came from, canonical (IPv4-mapped IPv6 as IPv4); `None` when the kernel
    /// gave no address this crate reads.
    #[inline]
    pub fn source(&self) -> Option<SocketAddr> {
        addr::decode(self.name, self.name_len)
    }

    /// Whether it was longer than the buffer and so cut short.
    #[inline]
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The local address it was sent to, when the socket has [`crate::enable_pktinfo`].
    pub fn local_ip(&self) -> Option<Ipv4Addr> {
        self.control.destination(self.control_len)
    }

    /// Its place in the batch: the buffer [`RecvBatch::buffer`] returns it from.
    pub fn index(&self) -> usize {
        self.index
    }
}
