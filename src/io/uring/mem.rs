//! Heap memory shared with the kernel.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// A zeroed, aligned heap block that the kernel reads or writes while io_uring operations
/// are in flight. It is only ever touched through raw pointers to the part in use, never
/// through a reference spanning the whole block, so Rust's aliasing rules never claim bytes
/// the kernel is working on.
pub(super) struct RawMem {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl RawMem {
    pub(super) fn new(size: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(size.max(1), align).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        RawMem { ptr, layout }
    }

    pub(super) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for RawMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

// SAFETY: RawMem is a uniquely owned heap block, like a Box<[u8]>.
unsafe impl Send for RawMem {}
