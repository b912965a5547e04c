//! Reading physical memory through the direct map (boot information, ACPI tables, modules).

use crate::layout::phys_to_virt;
use crate::multiboot::PhysMem;

/// Highest physical address (exclusive) the boot direct map covers.
pub const BOOT_DIRECTMAP_LIMIT: u64 = 4 << 30;

/// [`PhysMem`] over the boot direct map (the low 4 GiB).
pub struct DirectMap;

impl PhysMem for DirectMap {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let Some(end) = paddr.checked_add(buf.len() as u64) else {
            return false;
        };
        if end > BOOT_DIRECTMAP_LIMIT {
            return false;
        }
        // SAFETY: [paddr, end) lies below 4 GiB, which the boot page tables map at
        // DIRECTMAP_BASE + paddr; the bytes are only copied out, never referenced.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(paddr) as *const u8,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        true
    }
}

/// A read-only view of `len` bytes of physical memory at `paddr` (e.g. a boot module).
///
/// Returns `None` if the range is not covered by the boot direct map.
pub fn phys_slice(paddr: u64, len: u64) -> Option<&'static [u8]> {
    let end = paddr.checked_add(len)?;
    if end > BOOT_DIRECTMAP_LIMIT {
        return None;
    }
    // SAFETY: the range is mapped by the direct map (checked above); the frames are boot
    // modules reserved from the frame allocator, so nothing writes them while shared.
    Some(unsafe { core::slice::from_raw_parts(phys_to_virt(paddr) as *const u8, len as usize) })
}

/// Finds the CPUs and IOAPICs in the MADT (RSDP from the boot loader's copy if it gave one,
/// else the BIOS search).
pub fn acpi_platform(
    rsdp: Option<&crate::multiboot::RsdpCopy>,
) -> Result<crate::acpi::Platform, crate::acpi::AcpiError> {
    // SAFETY: `phys_to_virt` maps [0, 4 GiB) linearly through the direct map in both the boot
    // and the hypervisor page tables; ACPI tables are firmware memory nobody writes.
    let handler = unsafe {
        crate::acpi::DirectMapHandler::new(crate::layout::phys_to_virt, 0, BOOT_DIRECTMAP_LIMIT)
    };
    let hint = rsdp.map(|r| crate::acpi::RsdpHint::Copy(r.as_bytes()));
    crate::acpi::discover(&handler, hint)
}
