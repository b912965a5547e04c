//! The hypervisor's page tables.
//!
//! Boot (boot.rs) builds them: the direct map of the low 4 GiB at `DIRECTMAP_BASE`, the image
//! window at `IMAGE_VBASE`, and an identity map of the low 4 GiB that only AP start-up uses.

extern "C" {
    static boot_pml4: u8;
}

/// Physical address of the boot PML4 (the CR3 APs start with).
pub fn ap_boot_cr3() -> u64 {
    let v = core::ptr::addr_of!(boot_pml4) as u64;
    crate::layout::virt_to_phys(v).unwrap_or(v)
}
