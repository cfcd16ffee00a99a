//! Receiving: one `recvmmsg` into a preallocated batch.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr;
use std::slice;

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

/// Buffers, source addresses and control rooms for up to `capacity` datagrams, each behind
/// its own `mmsghdr`.
pub struct RecvBatch {
    hdrs: Box<[libc::mmsghdr]>,
    /// Read only by the kernel, through the headers; owned here so they live as long.
    _iovs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[ControlRoom]>,
    bufs: Box<[u8]>,
    buf_len: usize,
}

// SAFETY: the raw pointers in the headers and iovecs aim only into the boxed slices owned by
// the same batch, whose heap memory moves along with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// A batch of `capacity` datagrams of up to `buf_len` bytes each; longer ones arrive cut
    /// to that length and marked [`Datagram::is_truncated`].
    pub fn new(capacity: usize, buf_len: usize) -> Self {
        assert!(capacity > 0 && buf_len > 0, "an empty receive batch");
        // SAFETY: mmsghdr and iovec are plain C structs for which all zeroes is valid (null
        // pointers, zero lengths); every pointer is set below before any use.
        let mut hdrs: Box<[libc::mmsghdr]> =
            (0..capacity).map(|_| unsafe { mem::zeroed() }).collect();
        let mut iovs: Box<[libc::iovec]> =
            (0..capacity).map(|_| unsafe { mem::zeroed() }).collect();
        let mut names: Box<[libc::sockaddr_storage]> =
            (0..capacity).map(|_| addr::zeroed_storage()).collect();
        let mut controls: Box<[ControlRoom]> = (0..capacity).map(|_| ControlRoom::new()).collect();
        let mut bufs = vec![0u8; capacity * buf_len].into_boxed_slice();
        // The pointers aim into the boxed slices' heap memory, which never moves.
        for (i, buf) in bufs.chunks_exact_mut(buf_len).enumerate() {
            iovs[i] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf_len,
            };
            let hdr = &mut hdrs[i].msg_hdr;
            hdr.msg_name = ptr::addr_of_mut!(names[i]).cast();
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = ptr::addr_of_mut!(controls[i]).cast();
            restore_room(hdr);
        }
        RecvBatch {
            hdrs,
            _iovs: iovs,
            names,
            controls,
            bufs,
            buf_len,
        }
    }

    /// One `recvmmsg` on `socket`: the datagrams it brought, in order. Nothing waiting (or
    /// an interrupting signal) gives an empty batch, not an error.
    pub fn recv(&mut self, socket: impl AsFd, wait: RecvWait) -> io::Result<Received<'_>> {
        let flags = match wait {
            RecvWait::Never => libc::MSG_DONTWAIT,
            RecvWait::ForFirst => libc::MSG_WAITFORONE,
        };
        // SAFETY: every header points at its own iovec, buffer, address slot and control
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
            hdrs: self.hdrs[..count].iter_mut(),
            names: self.names.iter(),
            controls: self.controls.iter(),
            bufs: self.bufs.chunks_exact_mut(self.buf_len),
            index: 0,
        })
    }

    /// Buffer `index` whole, as the last receive left it: for keeping datagrams past the
    /// [`Received`] that brought them, by their [`Datagram::index`] and length.
    pub fn buffer(&self, index: usize) -> &[u8] {
        &self.bufs[index * self.buf_len..][..self.buf_len]
    }

    /// Buffer `index` whole, to receive into by other means (a plain `recv_from`) and read
    /// with [`RecvBatch::buffer`] like a datagram of the batch.
    pub fn buffer_mut(&mut self, index: usize) -> &mut [u8] {
        &mut self.bufs[index * self.buf_len..][..self.buf_len]
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
pub struct Received<'a> {
    hdrs: slice::IterMut<'a, libc::mmsghdr>,
    names: slice::Iter<'a, libc::sockaddr_storage>,
    controls: slice::Iter<'a, ControlRoom>,
    bufs: slice::ChunksExactMut<'a, u8>,
    index: usize,
}

impl Received<'_> {
    /// Whether the receive brought nothing.
    pub fn is_empty(&self) -> bool {
        self.hdrs.len() == 0
    }
}

impl<'a> Iterator for Received<'a> {
    type Item = Datagram<'a>;

    #[inline]
    fn next(&mut self) -> Option<Datagram<'a>> {
        let msg = self.hdrs.next()?;
        // The other slices are as long as the batch, so never end before the headers.
        let (name, control, buf) = (self.names.next()?, self.controls.next()?, self.bufs.next()?);
        let len = (msg.msg_len as usize).min(buf.len());
        let hdr = &mut msg.msg_hdr;
        let datagram = Datagram {
            data: &mut buf[..len],
            index: self.index,
            name,
            name_len: hdr.msg_namelen,
            truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
            control,
            control_len: hdr.msg_controllen as _,
        };
        restore_room(hdr);
        self.index += 1;
        Some(datagram)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.hdrs.size_hint()
    }
}

impl ExactSizeIterator for Received<'_> {}

impl Drop for Received<'_> {
    fn drop(&mut self) {
        for msg in &mut self.hdrs {
            restore_room(&mut msg.msg_hdr);
        }
    }
}

/// One datagram of a [`Received`] batch.
pub struct Datagram<'a> {
    /// The payload, at most the batch's buffer length.
    pub data: &'a mut [u8],
    index: usize,
    name: &'a libc::sockaddr_storage,
    name_len: libc::socklen_t,
    truncated: bool,
    control: &'a ControlRoom,
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
