//! Boot-time memory set-up: the global frame allocator (never handing out the image, the
//! modules, the boot information or firmware ranges) and the switch to the hypervisor's
//! own page tables.

use crate::frame::{find_free_range, FrameAllocator};
use crate::layout::{phys_to_virt, virt_to_phys};
use crate::multiboot::BootInfo;
use core::ops::Range;
use spin::Mutex;

static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

/// The usable RAM regions of the memory map, fixed at boot: whether an address is RAM (and
/// so in the direct map) is answered from these without the allocator's lock.
static RAM: spin::Once<heapless::Vec<Range<u64>, { crate::multiboot::MAX_REGIONS }>> =
    spin::Once::new();

/// Memory figures for the boot log and `xl info`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryStats {
    /// Frames the allocator manages.
    pub total_frames: u64,
    /// Frames free now.
    pub free_frames: u64,
    /// Top of usable RAM.
    pub ram_top: u64,
}

/// Physical range of the loaded image.
pub fn image_phys_range() -> Range<u64> {
    let (s, e) = crate::layout::image_range();
    virt_to_phys(s).unwrap_or(0)..virt_to_phys(e).unwrap_or(0)
}

/// Builds the frame allocator from the boot information and switches to the hypervisor page
/// tables. Boot CPU only, once.
pub fn init(info: &BootInfo) -> Result<MemoryStats, &'static str> {
    let mut reserved: heapless::Vec<Range<u64>, 24> = heapless::Vec::new();
    let _ = reserved.push(image_phys_range());
    for r in info.boot_data_ranges() {
        let _ = reserved.push(r);
    }
    let words = FrameAllocator::bitmap_words(&info.memory_map);
    if words == 0 {
        return Err("the memory map has no usable RAM");
    }
    let bytes = (words * 8) as u64;
    let bitmap_paddr = find_free_range(&info.memory_map, &reserved, 1 << 20, bytes)
        .ok_or("no room for the frame bitmap")?;
    if bitmap_paddr + bytes > crate::physmem::BOOT_DIRECTMAP_LIMIT {
        return Err("frame bitmap would lie above 4 GiB");
    }
    let _ = reserved.push(bitmap_paddr..bitmap_paddr + bytes.next_multiple_of(4096));
    // SAFETY: free, direct-mapped RAM (checked above) now reserved from the allocator: this is
    // the only reference to it, for ever.
    let storage: &'static mut [u64] =
        unsafe { core::slice::from_raw_parts_mut(phys_to_virt(bitmap_paddr) as *mut u64, words) };
    let fa = FrameAllocator::new(&info.memory_map, &reserved, storage);
    *FRAMES.lock() = Some(fa);
    RAM.call_once(|| {
        info.memory_map
            .iter()
            .filter(|r| r.kind == crate::multiboot::MemKind::Usable)
            .map(|r| r.base..r.end())
            .collect()
    });
    let ram_top = info.max_usable_addr();
    crate::paging::build_hypervisor_tables(ram_top, &mut alloc_frame)?;
    Ok(stats(ram_top))
}

fn stats(ram_top: u64) -> MemoryStats {
    let g = FRAMES.lock();
    let (total_frames, free_frames) = g
        .as_ref()
        .map_or((0, 0), |f| (f.total_count(), f.free_count()));
    MemoryStats {
        total_frames,
        free_frames,
        ram_top,
    }
}

/// Whether `paddr..paddr + len` lies in one usable RAM region of the boot memory map (so in
/// the direct map), allocated or not: answered without the allocator's lock.
pub fn is_ram(paddr: u64, len: u64) -> bool {
    RAM.get().is_some_and(|r| within_one(r, paddr, len))
}

/// Whether `paddr..paddr + len` lies inside one of `regions`.
fn within_one(regions: &[Range<u64>], paddr: u64, len: u64) -> bool {
    let Some(end) = paddr.checked_add(len) else {
        return false;
    };
    regions.iter().any(|r| r.start <= paddr && end <= r.end)
}

/// Allocates one 4 KiB frame (lowest free first).
pub fn alloc_frame() -> Option<u64> {
    crate::cpu::without_interrupts(|| FRAMES.lock().as_mut()?.alloc())
}

/// Allocates `count` physically contiguous frames aligned to `align_frames` frames.
pub fn alloc_contiguous(count: u64, align_frames: u64) -> Option<u64> {
    crate::cpu::without_interrupts(|| {
        FRAMES
            .lock()
            .as_mut()?
            .alloc_contiguous(count, align_frames)
    })
}

/// Returns a frame to the allocator; freeing a frame twice or one never handed out is refused.
pub fn free_frame(paddr: u64) -> Result<(), crate::frame::FrameError> {
    crate::cpu::without_interrupts(|| match FRAMES.lock().as_mut() {
        Some(f) => f.free(paddr),
        None => Err(crate::frame::FrameError::NotUsable(paddr)),
    })
}

/// Current frame counts.
pub fn current_stats() -> MemoryStats {
    let top = FRAMES.lock().as_ref().map_or(0, |f| f.limit());
    stats(top)
}

/// Whether `paddr` is a frame the allocator manages (never the image, modules or firmware).
pub fn is_allocatable(paddr: u64) -> bool {
    FRAMES.lock().as_ref().is_some_and(|f| f.is_usable(paddr))
}

/// Whether `paddr`'s frame is free now.
pub fn is_free(paddr: u64) -> bool {
    FRAMES.lock().as_ref().is_some_and(|f| f.is_free(paddr))
}

/// Runs `f` with a test of whether a physical address's frame is allocated now (as
/// [`is_allocated`] answers), all under one acquisition of the allocator's lock: a
/// guest-memory access checks every table of its walk and every frame it touches, and under
/// QEMU TCG each acquisition costs ~100 cycles. `f` must not allocate or free frames (the
/// lock is held).
pub fn with_allocated<R>(f: impl FnOnce(&dyn Fn(u64) -> bool) -> R) -> R {
    let g = FRAMES.lock();
    let fa = g.as_ref();
    f(&|paddr| fa.is_some_and(|a| a.is_usable(paddr) && !a.is_free(paddr)))
}

/// Whether `paddr`'s frame is allocated now: [`is_allocatable`] and not [`is_free`], under
/// one acquisition of the allocator's lock (the exit path asks for every guest-memory access,
/// and under QEMU TCG the second acquisition cost ~100 cycles).
pub fn is_allocated(paddr: u64) -> bool {
    FRAMES
        .lock()
        .as_ref()
        .is_some_and(|f| f.is_usable(paddr) && !f.is_free(paddr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_ranges_hold_only_what_lies_inside_one_region() {
        let r = [0x1000..0x9_f000, 0x10_0000..0x4000_0000];
        assert!(within_one(&r, 0x1000, 2));
        assert!(within_one(&r, 0x9_effe, 2));
        assert!(!within_one(&r, 0x9_efff, 2), "runs past the end");
        assert!(!within_one(&r, 0xa_0000, 2), "the hole");
        assert!(!within_one(&r, 0x9_f000, 0x6_1000), "spans the hole");
        assert!(within_one(&r, 0x3fff_fffe, 2));
        assert!(!within_one(&r, 0x4000_0000, 2));
        assert!(!within_one(&r, u64::MAX, 2), "wraps");
        assert!(!within_one(&[], 0x1000, 2));
    }
}
