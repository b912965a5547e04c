//! The first Rust code: called from the boot assembly on the bootstrap CPU with the loader's
//! magic and information pointer; hands over to the hypervisor's `dualvisor_main`.

/// What the loader handed over, for the composition root.
#[derive(Clone, Copy, Debug)]
pub struct BootHandoff {
    /// EAX at entry: the multiboot magic.
    pub magic: u32,
    /// EBX at entry: physical address of the multiboot information.
    pub info_paddr: u32,
}

#[cfg(not(test))]
extern "Rust" {
    fn dualvisor_main(handoff: BootHandoff) -> !;
}

/// Entry from `entry64_high` (boot.rs), on the boot stack, high half, SSE enabled.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn arch_boot_entry(magic: u32, info_paddr: u32) -> ! {
    crate::console::init(crate::serial::UartConfig::default());
    // SAFETY: `dualvisor_main` is defined exactly once, by the hypervisor binary.
    unsafe { dualvisor_main(BootHandoff { magic, info_paddr }) }
}
