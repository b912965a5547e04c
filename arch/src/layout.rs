//! The hypervisor's virtual address layout, inside Xen's reserved PV range.
//!
//! Like Xen, DualVisor lives in 0xFFFF800000000000–0xFFFF880000000000 (L4 slots 256–271),
//! which every 64-bit PV guest leaves to the hypervisor.

/// Start of the direct map: physical address `p` is mapped at `DIRECTMAP_BASE + p`.
pub const DIRECTMAP_BASE: u64 = 0xFFFF_8300_0000_0000;
/// Size of the direct map window (5 TiB, L4 slots 262–271 as Xen's).
pub const DIRECTMAP_SIZE: u64 = 0x0000_0500_0000_0000;
/// Virtual base of the hypervisor image window: physical `p` of the image is at `IMAGE_VBASE + p`.
pub const IMAGE_VBASE: u64 = 0xFFFF_82D0_8000_0000;

/// The direct-map virtual address of physical address `paddr`.
pub const fn phys_to_virt(paddr: u64) -> u64 {
    DIRECTMAP_BASE + paddr
}

/// The physical address behind a direct-map virtual address, if it is one.
pub const fn virt_to_phys(vaddr: u64) -> Option<u64> {
    if vaddr >= DIRECTMAP_BASE && vaddr < DIRECTMAP_BASE + DIRECTMAP_SIZE {
        Some(vaddr - DIRECTMAP_BASE)
    } else if vaddr >= IMAGE_VBASE && vaddr < IMAGE_VBASE + 0x4000_0000 {
        Some(vaddr - IMAGE_VBASE)
    } else {
        None
    }
}

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Virtual range [start, end) of the loaded image (text, data, BSS incl. the boot heap).
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}

/// Whether `vaddr` lies inside the loaded image.
pub fn in_image(vaddr: u64) -> bool {
    let (s, e) = image_range();
    vaddr >= s && vaddr < e
}
