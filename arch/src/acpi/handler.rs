//! Physical memory access for ACPI: an [`::acpi::AcpiHandler`] and a [`PhysMem`] over one
//! linear mapping (the direct map on the machine; a buffer in tests).

use crate::multiboot::PhysMem;
use ::acpi::{AcpiHandler, PhysicalMapping};
use core::ptr::NonNull;

/// Maps physical memory `[start, end)` through `phys_to_virt`, for the `acpi` crate and for
/// this module's own bounds-checked reads.
#[derive(Clone, Copy, Debug)]
pub struct DirectMapHandler {
    phys_to_virt: fn(u64) -> u64,
    start: u64,
    end: u64,
}

impl DirectMapHandler {
    /// A handler that may read physical `[start, end)` at `phys_to_virt(p)`.
    ///
    /// # Safety
    ///
    /// For every `p` in `[start, end)`, `phys_to_virt(p)` must be a non-null virtual address,
    /// readable for as long as the handler (or any copy) is used, at which physical byte `p` is
    /// visible, with `phys_to_virt(p + 1) == phys_to_virt(p) + 1` across the range; nothing may
    /// write that memory while it is being parsed. On DualVisor: `layout::phys_to_virt` over a
    /// range the direct map covers.
    pub const unsafe fn new(phys_to_virt: fn(u64) -> u64, start: u64, end: u64) -> Self {
        DirectMapHandler {
            phys_to_virt,
            start,
            end,
        }
    }

    /// Whether `[paddr, paddr + len)` lies inside the readable range.
    pub fn covers(&self, paddr: u64, len: u64) -> bool {
        paddr >= self.start && paddr.checked_add(len).is_some_and(|e| e <= self.end)
    }
}

impl PhysMem for DirectMapHandler {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        if !self.covers(paddr, buf.len() as u64) {
            return false;
        }
        if buf.is_empty() {
            return true;
        }
        let src = (self.phys_to_virt)(paddr) as *const u8;
        // SAFETY: the range is inside [start, end), which the constructor's contract makes
        // readable and linear at phys_to_virt; `buf` is a distinct, writable Rust buffer.
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        true
    }
}

impl AcpiHandler for DirectMapHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = (self.phys_to_virt)(physical_address as u64) as *mut T;
        // Non-null for every address this module lets the crate map (all pre-validated to lie
        // in the readable range, where the constructor's contract forbids null).
        let ptr = NonNull::new(virt).unwrap_or(NonNull::dangling());
        // SAFETY: the crate only maps regions `discover` validated to be inside the readable
        // range (see `validate`), so `ptr` addresses `size` readable bytes; nothing is
        // unmapped because the mapping is permanent.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(p: u64) -> u64 {
        p
    }

    #[test]
    fn reads_are_bounds_checked() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let base = data.as_ptr() as u64;
        // SAFETY: identity over the live array `data`, which outlives the handler.
        let h = unsafe { DirectMapHandler::new(identity, base, base + 8) };
        let mut b = [0u8; 3];
        assert!(h.read(base + 5, &mut b));
        assert_eq!(b, [6, 7, 8]);
        assert!(!h.read(base + 6, &mut b));
        assert!(!h.read(base - 1, &mut b));
        assert!(!h.read(u64::MAX - 1, &mut b));
        assert!(h.covers(base, 8) && !h.covers(base, 9));
    }
}
