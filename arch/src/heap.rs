//! The hypervisor heap: a locked first-fit allocator over a region carved at boot, plus
//! separately allocated arenas (lockstep replicas live in arenas of their own).

use linked_list_allocator::LockedHeap;

/// The global allocator (`alloc`, hashbrown).
#[cfg_attr(not(test), global_allocator)]
static HEAP: LockedHeap = LockedHeap::empty();

/// Size of the boot heap carved out of the image's BSS.
pub const BOOT_HEAP_SIZE: usize = 16 << 20;

#[repr(C, align(4096))]
struct BootHeap([u8; BOOT_HEAP_SIZE]);

static mut BOOT_HEAP: BootHeap = BootHeap([0; BOOT_HEAP_SIZE]);

/// Initialises the global heap over the boot heap region. Call once, on the boot CPU.
pub fn init() {
    static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, core::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let start = core::ptr::addr_of_mut!(BOOT_HEAP) as *mut u8;
    // SAFETY: BOOT_HEAP is used for nothing else, is BOOT_HEAP_SIZE bytes long, and `DONE`
    // guarantees it is handed to the allocator exactly once.
    unsafe { HEAP.lock().init(start, BOOT_HEAP_SIZE) }
}

/// Bytes (used, free) in the global heap.
pub fn usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.used(), h.free())
}
