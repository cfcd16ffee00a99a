//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19): the kernel picks a
//! free receive buffer itself for each datagram of the multishot `recvmsg`, so receiving
//! needs no submission per datagram. We hand a buffer back by writing its id at the ring's
//! tail once the datagram has been handed to the caller.

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

use super::mem::RawMem;

/// `struct io_uring_buf`. The `resv` field of entry 0 doubles as the ring's tail.
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

pub(super) struct BufRing {
    entries: RawMem,
    bufs: RawMem,
    /// Number of buffers and of ring entries; a power of two.
    count: u16,
    /// Bytes per buffer.
    stride: usize,
    /// Our copy of the tail; published to the kernel by `publish`.
    tail: u16,
    bgid: u16,
}

impl BufRing {
    pub(super) fn new(count: u16, stride: usize, bgid: u16) -> Self {
        assert!(count.is_power_of_two() && count <= 1 << 15);
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        BufRing {
            // The kernel wants the ring page-aligned.
            entries: RawMem::new(count as usize * std::mem::size_of::<BufEntry>(), page),
            bufs: RawMem::new(count as usize * stride, 64),
            count,
            stride,
            tail: 0,
            bgid,
        }
    }

    /// Registers the ring with `ring` and hands it every buffer.
    pub(super) fn register(&mut self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the entries block is page-aligned, holds `count` entries and lives until
        // the owner unregisters it or proves the ring idle (see UringIo's Drop).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.ptr() as u64,
                self.count,
                self.bgid,
                0,
            )?;
        }
        for bid in 0..self.count {
            self.recycle(bid);
        }
        self.publish();
        Ok(())
    }

    pub(super) fn unregister(&self, ring: &IoUring) -> io::Result<()> {
        ring.submitter().unregister_buf_ring(self.bgid)
    }

    /// The first `len` bytes of buffer `bid`.
    ///
    /// # Safety
    /// The kernel must have handed `bid` to us in a completion, and it must not have been
    /// recycled since; no other slice of the same buffer may be alive.
    pub(super) unsafe fn buffer(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(bid < self.count && len <= self.stride);
        // SAFETY: within the block (checked above); the kernel no longer touches a buffer
        // it completed, until we recycle it.
        std::slice::from_raw_parts_mut(self.bufs.ptr().add(bid as usize * self.stride), len)
    }

    /// Queues buffer `bid` for reuse by the kernel; visible to it after `publish`.
    pub(super) fn recycle(&mut self, bid: u16) {
        debug_assert!(bid < self.count);
        let index = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `index` < count, so the entry lies within the block. The kernel reads
        // entries only between its head and the published tail, which this one is not
        // (the kernel has consumed it). Field-wise raw writes keep entry 0's `resv` (the
        // tail) untouched.
        unsafe {
            let entry = self.entries.ptr().cast::<BufEntry>().add(index);
            ptr::addr_of_mut!((*entry).addr)
                .write(self.bufs.ptr().add(bid as usize * self.stride) as u64);
            ptr::addr_of_mut!((*entry).len).write(self.stride as u32);
            ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes recycled buffers visible to the kernel.
    pub(super) fn publish(&self) {
        // SAFETY: entry 0's `resv` is the ring tail, an aligned u16 inside the block that
        // only we write; the release store orders the entry writes before it.
        unsafe {
            let tail = ptr::addr_of_mut!((*self.entries.ptr().cast::<BufEntry>()).resv);
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }
}
