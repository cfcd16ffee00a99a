//! Send buffers for `SendMsg` entries. The kernel reads a slot's message, address and
//! payload any time until the entry completes, so each queued datagram gets a slot of its
//! own, freed by its completion.

use std::mem;
use std::net::SocketAddr;

use setowire_udp_batch::addr;

use super::super::MAX_DATAGRAM;
use super::mem::RawMem;

#[repr(C)]
struct Slot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    buf: [u8; MAX_DATAGRAM],
}

pub(super) struct SendSlots {
    mem: RawMem,
    count: usize,
    free: Vec<u16>,
}

impl SendSlots {
    pub(super) fn new(count: u16) -> Self {
        let count = count as usize;
        let mem = RawMem::new(count * mem::size_of::<Slot>(), mem::align_of::<Slot>());
        for i in 0..count {
            // SAFETY: slot `i` lies within the zeroed block (all zeroes is a valid Slot);
            // its header is pointed at its own iovec, address and buffer, which move never.
            unsafe {
                let slot = mem.ptr().cast::<Slot>().add(i);
                (*slot).iov.iov_base = std::ptr::addr_of_mut!((*slot).buf).cast();
                (*slot).hdr.msg_name = std::ptr::addr_of_mut!((*slot).addr).cast();
                (*slot).hdr.msg_iov = std::ptr::addr_of_mut!((*slot).iov);
                (*slot).hdr.msg_iovlen = 1;
            }
        }
        SendSlots {
            mem,
            count,
            // Popped from the back: low ids first, which keeps the hot slots few.
            free: (0..count as u16).rev().collect(),
        }
    }

    pub(super) fn take(&mut self) -> Option<u16> {
        self.free.pop()
    }

    /// Fills slot `id` (just taken) and returns its header for a `SendMsg` entry, or `None`
    /// when the destination cannot be reached from this socket (the slot is then released).
    pub(super) fn fill(
        &mut self,
        id: u16,
        dst: SocketAddr,
        v6_socket: bool,
        data: &[u8],
    ) -> Option<*const libc::msghdr> {
        assert!((id as usize) < self.count && data.len() <= MAX_DATAGRAM);
        // SAFETY: slot `id` is within the block and free, so the kernel is not reading it.
        unsafe {
            let slot = self.mem.ptr().cast::<Slot>().add(id as usize);
            let Some(len) =
                addr::encode(dst, v6_socket, &mut *std::ptr::addr_of_mut!((*slot).addr))
            else {
                self.release(id);
                return None;
            };
            (*slot).hdr.msg_namelen = len;
            (*slot).iov.iov_len = data.len();
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                std::ptr::addr_of_mut!((*slot).buf).cast::<u8>(),
                data.len(),
            );
            Some(std::ptr::addr_of!((*slot).hdr))
        }
    }

    /// Gives back slot `id` after its completion.
    pub(super) fn release(&mut self, id: u16) {
        debug_assert!((id as usize) < self.count && !self.free.contains(&id));
        self.free.push(id);
    }

    pub(super) fn in_flight(&self) -> usize {
        self.count - self.free.len()
    }
}
