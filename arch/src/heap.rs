//! The hypervisor heap: a boot arena carved from the image's BSS, plus arenas carved from
//! physical frames. Each CPU allocates from its *current* arena (lockstep replicas live in
//! arenas of their own, so a bit flip in one cannot reach the other); a block is always freed
//! to the arena it came from, found by its address.

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

struct Arena {
    heap: Mutex<Heap>,
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
            heap: Mutex::new(Heap::empty()),
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
        crate::cpu::without_interrupts(|| {
            self.arenas[i]
                .heap
                .lock()
                .allocate_first_fit(layout)
                .map_or(core::ptr::null_mut(), |p| p.as_ptr())
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(arena) = self.owner(ptr) else {
            return;
        };
        if let Some(nn) = core::ptr::NonNull::new(ptr) {
            // SAFETY: `ptr` was handed out by this arena's heap with `layout` (GlobalAlloc's
            // contract plus the address-range lookup above).
            crate::cpu::without_interrupts(|| unsafe { arena.heap.lock().deallocate(nn, layout) });
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
    unsafe { a.heap.lock().init(start, BOOT_HEAP_SIZE) };
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
    unsafe { a.heap.lock().init(start as *mut u8, bytes) };
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
    let h = HEAP.arenas[arena].heap.lock();
    (h.used(), h.free())
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
