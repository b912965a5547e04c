//! A general-purpose heap for guest kernels that use `alloc` (the dom0 kernel, the domU builder):
//! a fixed arena in the image's `.bss`, handed out in 128-byte blocks tracked by a bitmap
//! ([`BlockMap`], portable and host-tested), behind a spin lock; any block can be freed in any
//! order. The binary declares it:
//! `#[global_allocator] static HEAP: BlockHeap<{ 16 << 20 }> = BlockHeap::new();`

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// Bytes per block.
pub const BLOCK: usize = 128;

/// Which blocks of an arena are in use: one bit per block, first fit.
pub struct BlockMap<const WORDS: usize> {
    bits: [u64; WORDS],
}

impl<const WORDS: usize> Default for BlockMap<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> BlockMap<WORDS> {
    /// Every block free.
    pub const fn new() -> Self {
        BlockMap { bits: [0; WORDS] }
    }

    /// Number of blocks tracked.
    pub const fn blocks(&self) -> usize {
        WORDS * 64
    }

    fn used(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, start: usize, n: usize, used: bool) {
        for i in start..start + n {
            if used {
                self.bits[i / 64] |= 1 << (i % 64);
            } else {
                self.bits[i / 64] &= !(1 << (i % 64));
            }
        }
    }

    /// Marks the first run of `n` free blocks starting at a multiple of `align` (blocks) as
    /// used and returns its first block; `None` if there is none (or `n` is 0).
    pub fn alloc(&mut self, n: usize, align: usize) -> Option<usize> {
        let align = align.max(1);
        if n == 0 || n > self.blocks() {
            return None;
        }
        let mut i = 0;
        while i + n <= self.blocks() {
            if i % 64 == 0 && self.bits[i / 64] == u64::MAX {
                i += 64;
                continue;
            }
            if !i.is_multiple_of(align) {
                i = i.div_ceil(align) * align;
                continue;
            }
            match (i..i + n).find(|&j| self.used(j)) {
                None => {
                    self.set(i, n, true);
                    return Some(i);
                }
                Some(busy) => i = busy + 1,
            }
        }
        None
    }

    /// Marks `n` blocks from `start` free again (out-of-range parts are ignored).
    pub fn free(&mut self, start: usize, n: usize) {
        let end = start.saturating_add(n).min(self.blocks());
        if start < end {
            self.set(start, end - start, false);
        }
    }

    /// Blocks in use.
    pub fn used_blocks(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// Words of the heap's block map (131072 blocks: at most 16 MiB).
pub const MAP_WORDS: usize = 2048;

/// A page-aligned arena of `SIZE` bytes.
#[repr(C, align(4096))]
struct Arena<const SIZE: usize>(UnsafeCell<[u8; SIZE]>);

/// The global allocator: an arena of `SIZE` bytes (a multiple of 4096) in `.bss`.
pub struct BlockHeap<const SIZE: usize> {
    lock: AtomicBool,
    map: UnsafeCell<BlockMap<MAP_WORDS>>,
    arena: Arena<SIZE>,
}

// SAFETY: the block map is only touched with `lock` held, and every byte of the arena belongs
// to at most one live allocation at a time (the map says which).
unsafe impl<const SIZE: usize> Sync for BlockHeap<SIZE> {}

impl<const SIZE: usize> Default for BlockHeap<SIZE> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SIZE: usize> BlockHeap<SIZE> {
    /// An empty heap. `SIZE` must be a multiple of 4096 of at most `MAP_WORDS * 64 * BLOCK`
    /// bytes (16 MiB).
    pub const fn new() -> Self {
        assert!(SIZE <= MAP_WORDS * 64 * BLOCK && SIZE.is_multiple_of(4096));
        BlockHeap {
            lock: AtomicBool::new(false),
            map: UnsafeCell::new(BlockMap::new()),
            arena: Arena(UnsafeCell::new([0; SIZE])),
        }
    }

    fn with_map<R>(&self, f: impl FnOnce(&mut BlockMap<MAP_WORDS>) -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: `lock` is held, so this is the only reference to the map until it is released.
        let r = f(unsafe { &mut *self.map.get() });
        self.lock.store(false, Ordering::Release);
        r
    }

    /// Bytes in use (rounded up to blocks).
    pub fn used(&self) -> usize {
        self.with_map(|m| m.used_blocks() * BLOCK)
    }
}

fn blocks_for(layout: Layout) -> (usize, usize) {
    (
        layout.size().max(1).div_ceil(BLOCK),
        layout.align().div_ceil(BLOCK),
    )
}

// SAFETY: `alloc` hands out disjoint, suitably aligned ranges inside the arena (the arena is
// 4096-aligned, blocks are 128-byte aligned and `align` is honoured in blocks); `dealloc` frees
// exactly the blocks `alloc` marked for the same layout.
unsafe impl<const SIZE: usize> GlobalAlloc for BlockHeap<SIZE> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > 4096 {
            return core::ptr::null_mut();
        }
        let (n, align) = blocks_for(layout);
        let limit = SIZE / BLOCK;
        let got = self.with_map(|m| {
            let start = m.alloc(n, align)?;
            if start + n > limit {
                m.free(start, n);
                return None;
            }
            Some(start)
        });
        match got {
            Some(start) => self.arena.0.get().cast::<u8>().wrapping_add(start * BLOCK),
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let base = self.arena.0.get() as usize;
        let start = (ptr as usize - base) / BLOCK;
        let (n, _) = blocks_for(layout);
        self.with_map(|m| m.free(start, n));
    }
}

/// The global allocator of a guest without a heap: every allocation fails (null, which
/// `alloc` turns into a panic). The test guests never allocate, but they link the ABI crate
/// (`dom0-interface`, whose `GuestAbi::to_vec` needs `alloc`), and a binary that links `alloc`
/// must name a global allocator. Declared with [`crate::no_heap!`].
pub struct NoHeap;

// SAFETY: `alloc` returns null, GlobalAlloc's way of reporting failure, and never hands out
// memory, so `dealloc` is never given a pointer of ours and has nothing to free.
unsafe impl GlobalAlloc for NoHeap {
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

/// Declares [`NoHeap`] as the binary's global allocator (for guests that do not allocate).
#[macro_export]
macro_rules! no_heap {
    () => {
        #[global_allocator]
        static NO_HEAP: $crate::block_heap::NoHeap = $crate::block_heap::NoHeap;
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_and_reuse() {
        let mut m = BlockMap::<2>::new();
        assert_eq!(m.alloc(3, 1), Some(0));
        assert_eq!(m.alloc(2, 1), Some(3));
        m.free(0, 3);
        assert_eq!(m.alloc(2, 1), Some(0));
        assert_eq!(m.alloc(2, 1), Some(5));
        assert_eq!(m.used_blocks(), 6);
    }

    #[test]
    fn alignment_and_exhaustion() {
        let mut m = BlockMap::<2>::new();
        assert_eq!(m.alloc(1, 1), Some(0));
        assert_eq!(m.alloc(1, 64), Some(64));
        assert_eq!(m.alloc(64, 1), None);
        assert_eq!(m.alloc(63, 1), Some(1));
        assert_eq!(m.alloc(63, 1), Some(65));
        assert_eq!(m.alloc(1, 1), None);
        assert_eq!(m.alloc(0, 1), None);
        assert_eq!(m.alloc(200, 1), None);
        m.free(0, 1000);
        assert_eq!(m.used_blocks(), 0);
        assert_eq!(m.alloc(128, 1), Some(0));
    }

    #[test]
    fn skips_full_words() {
        let mut m = BlockMap::<4>::new();
        assert_eq!(m.alloc(130, 1), Some(0));
        assert_eq!(m.alloc(10, 1), Some(130));
        m.free(130, 10);
        assert_eq!(m.alloc(70, 1), Some(130));
    }
}
