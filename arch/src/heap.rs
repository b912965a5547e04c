//! The hypervisor heap: a boot arena carved from the image's BSS, plus arenas carved from
//! physical frames. Each CPU allocates from its *current* arena (lockstep replicas live in
//! arenas of their own, so a bit flip in one cannot reach the other); a block is always freed
//! to the arena it came from, found by its address.
//!
//! Small blocks (up to 2 KiB, alignment up to 16) come from per-arena free lists, one per
//! multiple of 16 bytes, filled from the arena's first-fit linked-list heap on a miss and never given
//! back to it: the linked-list heap's allocate and free walk its whole free list, and with a
//! replica's tens of thousands of small objects that list grew long enough to make one
//! hypercall cost ~30k cycles in the allocator alone under TCG.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use linked_list_allocator::Heap;
use spin::Mutex;

/// Size of the boot arena carved out of the image's BSS.
pub const BOOT_HEAP_SIZE: usize = 32 << 20;
/// Most arenas (the boot arena included).
pub const MAX_ARENAS: usize = 8;
/// The boot arena's index.
pub const BOOT_ARENA: usize = 0;

#[repr(C, align(4096))]
struct BootHeap([u8; BOOT_HEAP_SIZE]);

static mut BOOT_HEAP: BootHeap = BootHeap([0; BOOT_HEAP_SIZE]);

/// Largest block served from the free lists.
const SMALL_MAX: usize = 2048;
/// Granule and alignment of every small block: one free list per multiple of 16 bytes, so a
/// block wastes at most 15 bytes.
const CLASS_ALIGN: usize = 16;
/// Number of free lists.
const NCLASSES: usize = SMALL_MAX / CLASS_ALIGN;
/// Most bytes an arena keeps in its free lists; beyond, freed blocks go back to the heap (a
/// bulk free — a replica copy dropped — must not strand megabytes in small blocks).
const CACHE_MAX: usize = 256 << 10;

/// The free list serving `layout`, if it is small.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > CLASS_ALIGN || layout.size() > SMALL_MAX {
        return None;
    }
    Some(layout.size().max(1).div_ceil(CLASS_ALIGN) - 1)
}

/// Bytes of a block of class `c`.
const fn class_size(c: usize) -> usize {
    (c + 1) * CLASS_ALIGN
}

/// One arena's allocator: the linked-list heap and the free lists in front of it.
struct Pool {
    heap: Heap,
    /// Head of each class's free list (0: empty); a free block's first word links the next.
    free: [usize; NCLASSES],
    /// Bytes sitting in the free lists (allocated from `heap`, free for callers).
    cached: usize,
}

impl Pool {
    const fn empty() -> Self {
        Pool {
            heap: Heap::empty(),
            free: [0; NCLASSES],
            cached: 0,
        }
    }

    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let Some(c) = class_of(layout) else {
            return self.heap_alloc(layout);
        };
        let head = self.free[c];
        if head != 0 {
            // SAFETY: `head` is a free block of this class that `dealloc` linked in: at least
            // 16 bytes, 16-aligned, owned by nobody else; its first word holds the next link.
            self.free[c] = unsafe { (head as *const usize).read() };
            self.cached -= class_size(c);
            return head as *mut u8;
        }
        // A class size is a non-zero multiple of its alignment: the layout is valid.
        let Ok(l) = Layout::from_size_align(class_size(c), CLASS_ALIGN) else {
            return core::ptr::null_mut();
        };
        self.heap_alloc(l)
    }

    /// From the linked-list heap; on failure the free lists are given back and it retries.
    fn heap_alloc(&mut self, layout: Layout) -> *mut u8 {
        if let Ok(p) = self.heap.allocate_first_fit(layout) {
            return p.as_ptr();
        }
        if self.cached == 0 {
            return core::ptr::null_mut();
        }
        self.flush();
        self.heap
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    /// Returns every cached block to the heap.
    fn flush(&mut self) {
        for c in 0..NCLASSES {
            let Ok(l) = Layout::from_size_align(class_size(c), CLASS_ALIGN) else {
                continue;
            };
            while self.free[c] != 0 {
                let head = self.free[c];
                // SAFETY: `head` is a free block of class `c` linked in by `dealloc`; its
                // first word is the next link, and it came from `heap` with layout `l`.
                unsafe {
                    self.free[c] = (head as *const usize).read();
                    self.heap
                        .deallocate(core::ptr::NonNull::new_unchecked(head as *mut u8), l);
                }
            }
        }
        self.cached = 0;
    }

    /// The layout a block of `layout` was taken from the heap with.
    fn heap_layout(layout: Layout) -> Layout {
        class_of(layout)
            .and_then(|c| Layout::from_size_align(class_size(c), CLASS_ALIGN).ok())
            .unwrap_or(layout)
    }

    /// # Safety
    /// `ptr` was returned by [`Pool::alloc`] of this pool with `layout` and is not used again.
    unsafe fn dealloc(&mut self, ptr: core::ptr::NonNull<u8>, layout: Layout) {
        match class_of(layout).filter(|&c| self.cached + class_size(c) <= CACHE_MAX) {
            Some(c) => {
                // SAFETY: the block is this class's size (≥ 16 bytes, 16-aligned) and is the
                // caller's no more (function contract): its first word becomes the link.
                unsafe { (ptr.as_ptr() as *mut usize).write(self.free[c]) };
                self.free[c] = ptr.as_ptr() as usize;
                self.cached += class_size(c);
            }
            // SAFETY: the block came from `heap` with this layout, or (a small block when the
            // free lists are full) with its class's layout, which `deallocate` rounds the
            // same way: a multiple of 16 bytes, 16-aligned (function contract).
            None => unsafe { self.heap.deallocate(ptr, Self::heap_layout(layout)) },
        }
    }
}

struct Arena {
    heap: Mutex<Pool>,
    start: AtomicUsize,
    end: AtomicUsize,
}

struct Arenas {
    arenas: [Arena; MAX_ARENAS],
    count: AtomicUsize,
}

#[cfg_attr(not(test), global_allocator)]
static HEAP: Arenas = Arenas {
    arenas: [const {
        Arena {
            heap: Mutex::new(Pool::empty()),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
        }
    }; MAX_ARENAS],
    count: AtomicUsize::new(0),
};

impl Arenas {
    fn owner(&self, ptr: *mut u8) -> Option<&Arena> {
        let p = ptr as usize;
        self.arenas[..self.count.load(Ordering::Acquire)]
            .iter()
            .find(|a| p >= a.start.load(Ordering::Relaxed) && p < a.end.load(Ordering::Relaxed))
    }
}

// SAFETY: every arena is a linked-list heap over memory used for nothing else; `alloc` hands
// out blocks of the running CPU's arena and `dealloc` returns a block to the arena whose range
// contains it, so no block is ever freed to a heap that did not hand it out.
unsafe impl GlobalAlloc for Arenas {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let i = current_arena().min(self.count.load(Ordering::Acquire).saturating_sub(1));
        crate::cpu::without_interrupts(|| self.arenas[i].heap.lock().alloc(layout))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(arena) = self.owner(ptr) else {
            return;
        };
        if let Some(nn) = core::ptr::NonNull::new(ptr) {
            // SAFETY: `ptr` was handed out by this arena's pool with `layout` (GlobalAlloc's
            // contract plus the address-range lookup above).
            crate::cpu::without_interrupts(|| unsafe { arena.heap.lock().dealloc(nn, layout) });
        }
    }
}

/// Initialises the boot arena. Call once, on the boot CPU.
pub fn init() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let start = core::ptr::addr_of_mut!(BOOT_HEAP) as *mut u8;
    let a = &HEAP.arenas[BOOT_ARENA];
    // SAFETY: BOOT_HEAP is used for nothing else, is BOOT_HEAP_SIZE bytes long, and `DONE`
    // guarantees it is handed to the allocator exactly once.
    unsafe { a.heap.lock().heap.init(start, BOOT_HEAP_SIZE) };
    a.start.store(start as usize, Ordering::Relaxed);
    a.end
        .store(start as usize + BOOT_HEAP_SIZE, Ordering::Relaxed);
    HEAP.count.store(1, Ordering::Release);
}

/// Adds an arena of `bytes` (a multiple of 4 KiB) from contiguous frames; returns its index.
pub fn add_arena(bytes: usize) -> Option<usize> {
    let frames = (bytes / 4096) as u64;
    let paddr = crate::memory::alloc_contiguous(frames, 512)?;
    let i = HEAP.count.load(Ordering::Acquire);
    if i >= MAX_ARENAS {
        for f in 0..frames {
            let _ = crate::memory::free_frame(paddr + f * 4096);
        }
        return None;
    }
    let start = crate::layout::phys_to_virt(paddr) as usize;
    let a = &HEAP.arenas[i];
    // SAFETY: the frames were just allocated for this arena alone and are mapped by the direct
    // map; the arena is published (count) only after its heap is initialised.
    unsafe { a.heap.lock().heap.init(start as *mut u8, bytes) };
    a.start.store(start, Ordering::Relaxed);
    a.end.store(start + bytes, Ordering::Relaxed);
    HEAP.count.store(i + 1, Ordering::Release);
    Some(i)
}

fn current_arena() -> usize {
    crate::percpu::this().arena.load(Ordering::Relaxed)
}

/// Makes the running CPU allocate from `arena` until changed; returns the previous one.
pub fn set_current_arena(arena: usize) -> usize {
    crate::percpu::this().arena.swap(arena, Ordering::Relaxed)
}

/// Runs `f` with the running CPU allocating from `arena`.
pub fn with_arena<R>(arena: usize, f: impl FnOnce() -> R) -> R {
    let prev = set_current_arena(arena);
    let r = f();
    set_current_arena(prev);
    r
}

/// Bytes (used, free) of `arena`.
pub fn arena_usage(arena: usize) -> (usize, usize) {
    if arena >= HEAP.count.load(Ordering::Acquire) {
        return (0, 0);
    }
    let p = HEAP.arenas[arena].heap.lock();
    (p.heap.used() - p.cached, p.heap.free() + p.cached)
}

/// Virtual address range of `arena`.
pub fn arena_range(arena: usize) -> (usize, usize) {
    let a = &HEAP.arenas[arena.min(MAX_ARENAS - 1)];
    (
        a.start.load(Ordering::Relaxed),
        a.end.load(Ordering::Relaxed),
    )
}

/// Bytes (used, free) in the boot arena.
pub fn usage() -> (usize, usize) {
    arena_usage(BOOT_ARENA)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool over a fresh, leaked buffer of `bytes`.
    fn pool(bytes: usize) -> Pool {
        let buf: &'static mut [u8] = alloc::vec![0u8; bytes].leak();
        let mut p = Pool::empty();
        // SAFETY: the leaked buffer is used by this pool alone, for the rest of the test run.
        unsafe { p.heap.init(buf.as_mut_ptr(), bytes) };
        p
    }

    fn free(p: &mut Pool, ptr: *mut u8, l: Layout) {
        // SAFETY: every caller passes a block `p.alloc(l)` returned and uses it no more.
        unsafe { p.dealloc(core::ptr::NonNull::new(ptr).unwrap(), l) }
    }

    fn used(p: &Pool) -> usize {
        p.heap.used() - p.cached
    }

    #[test]
    fn a_freed_small_block_is_reused_and_counted_free() {
        let mut p = pool(1 << 20);
        let l = Layout::from_size_align(40, 8).unwrap();
        let a = p.alloc(l);
        assert!(!a.is_null() && (a as usize).is_multiple_of(CLASS_ALIGN));
        assert_eq!(used(&p), 48);
        free(&mut p, a, l);
        assert_eq!((used(&p), p.cached), (0, 48));
        // Same class (33..=48 bytes): the very same block, from the free list.
        let l2 = Layout::from_size_align(33, 1).unwrap();
        assert_eq!(p.alloc(l2), a);
        assert_eq!(p.cached, 0);
        free(&mut p, a, l2);
        // Another class: not that block.
        let l3 = Layout::from_size_align(64, 16).unwrap();
        assert_ne!(p.alloc(l3), a);
    }

    #[test]
    fn large_and_overaligned_blocks_bypass_the_free_lists() {
        let mut p = pool(1 << 20);
        for l in [
            Layout::from_size_align(SMALL_MAX + 1, 8).unwrap(),
            Layout::from_size_align(64, 64).unwrap(),
        ] {
            let a = p.alloc(l);
            assert!(!a.is_null() && (a as usize).is_multiple_of(l.align()));
            free(&mut p, a, l);
            assert_eq!((used(&p), p.cached), (0, 0), "{l:?}");
        }
    }

    #[test]
    fn the_free_lists_hold_at_most_cache_max_and_give_back_on_exhaustion() {
        let bytes = 2 << 20;
        let mut p = pool(bytes);
        let l = Layout::from_size_align(1000, 8).unwrap();
        let mut blocks = alloc::vec::Vec::new();
        loop {
            let a = p.alloc(l);
            if a.is_null() {
                break;
            }
            blocks.push(a);
        }
        assert!(blocks.len() * 1008 > bytes / 2, "{}", blocks.len());
        for a in blocks.drain(..) {
            free(&mut p, a, l);
        }
        assert!(p.cached <= CACHE_MAX && p.cached > CACHE_MAX - 1008);
        assert_eq!(used(&p), 0, "everything is free");
        // A block larger than anything the heap has outside the free lists: they are given
        // back and it fits.
        let big = Layout::from_size_align(bytes - (64 << 10), 8).unwrap();
        let b = p.alloc(big);
        assert!(!b.is_null());
        assert_eq!(p.cached, 0);
        free(&mut p, b, big);
        assert_eq!(used(&p), 0);
    }
}
