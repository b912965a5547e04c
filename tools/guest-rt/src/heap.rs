//! A small heap for guests that use `alloc` (the domain builder, dom0's tools): a bump
//! allocator over a static arena that takes back the most recent block when it is freed
//! and the whole arena once every block is free. That fits how toolstack code allocates
//! (buffers for one operation, freed before the next).
//!
//! [`heap!`] emits the arena and the `#[global_allocator]` into the binary, like
//! [`crate::entry!`], so that host tests of crates using guest-rt keep the system allocator.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Bump-allocator bookkeeping over an arena of `size` bytes at `base`.
pub struct Bump {
    /// Offset of the first free byte.
    top: AtomicUsize,
    /// Blocks handed out and not yet freed.
    live: AtomicUsize,
}

impl Bump {
    /// An empty heap.
    pub const fn new() -> Self {
        Bump {
            top: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        }
    }

    /// Offset of a new block of `size` bytes aligned to `align` (a power of two) in an arena
    /// of `arena` bytes starting at address `base`; `None` when it does not fit.
    pub fn alloc(&self, base: usize, arena: usize, size: usize, align: usize) -> Option<usize> {
        loop {
            let top = self.top.load(Ordering::SeqCst);
            let start = (base + top).checked_add(align - 1)? & !(align - 1);
            let off = start - base;
            let end = off.checked_add(size.max(1))?;
            if end > arena {
                return None;
            }
            if self
                .top
                .compare_exchange(top, end, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                self.live.fetch_add(1, Ordering::SeqCst);
                return Some(off);
            }
        }
    }

    /// Frees the block at offset `off` of `size` bytes.
    pub fn free(&self, off: usize, size: usize) {
        // The most recent block: pull the top back to it.
        let end = off + size.max(1);
        let _ = self
            .top
            .compare_exchange(end, off, Ordering::SeqCst, Ordering::SeqCst);
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Nothing is live: the whole arena is free. A block allocated concurrently moved
            // the top, so the exchange fails and the space is simply not reclaimed.
            let top = self.top.load(Ordering::SeqCst);
            if self.live.load(Ordering::SeqCst) == 0 {
                let _ = self
                    .top
                    .compare_exchange(top, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
    }

    /// Bytes in use (up to the top).
    pub fn used(&self) -> usize {
        self.top.load(Ordering::SeqCst)
    }
}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

/// Emits a `#[global_allocator]` over a static arena of `$size` bytes (use once, in the
/// binary): `guest_rt::heap!(4 << 20);`.
#[macro_export]
macro_rules! heap {
    ($size:expr) => {
        #[repr(C, align(4096))]
        struct __GuestRtArena(::core::cell::UnsafeCell<[u8; $size]>);
        // SAFETY: the arena is only handed out in disjoint blocks by the allocator below.
        unsafe impl Sync for __GuestRtArena {}
        static __GUEST_RT_ARENA: __GuestRtArena =
            __GuestRtArena(::core::cell::UnsafeCell::new([0; $size]));

        struct __GuestRtHeap($crate::heap::Bump);

        // SAFETY: `Bump` hands out disjoint, aligned blocks inside the arena and only reuses
        // the space of blocks that were freed.
        unsafe impl ::core::alloc::GlobalAlloc for __GuestRtHeap {
            unsafe fn alloc(&self, layout: ::core::alloc::Layout) -> *mut u8 {
                let base = __GUEST_RT_ARENA.0.get() as usize;
                match self.0.alloc(base, $size, layout.size(), layout.align()) {
                    Some(off) => (base + off) as *mut u8,
                    None => ::core::ptr::null_mut(),
                }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: ::core::alloc::Layout) {
                let base = __GUEST_RT_ARENA.0.get() as usize;
                self.0.free(ptr as usize - base, layout.size());
            }
        }

        #[global_allocator]
        static __GUEST_RT_HEAP: __GuestRtHeap = __GuestRtHeap($crate::heap::Bump::new());
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_disjoint_and_reclaimed() {
        let h = Bump::new();
        let base = 0x1000usize;
        let a = h.alloc(base, 100, 10, 8).unwrap();
        let b = h.alloc(base, 100, 7, 16).unwrap();
        assert_eq!(a, 0);
        assert_eq!(b, 16);
        assert!(
            h.alloc(base, 100, 80, 1).is_none(),
            "too big for what is left"
        );
        h.free(b, 7);
        assert_eq!(
            h.used(),
            16,
            "the last block comes back (its alignment gap stays)"
        );
        let c = h.alloc(base, 100, 4, 4).unwrap();
        assert_eq!(c, 16);
        h.free(a, 10);
        assert_eq!(
            h.used(),
            20,
            "a block below the top stays until all are free"
        );
        h.free(c, 4);
        assert_eq!(h.used(), 0, "nothing live: the arena is empty again");
        assert_eq!(h.alloc(base, 100, 100, 1), Some(0));
    }
}
