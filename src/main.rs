//! DualVisor: the composition root. Wires `arch`, `xen-core` and `lockstep` together.
#![no_std]
#![no_main]

use arch::entry::BootHandoff;
use arch::xprintln;

/// Called by `arch` on the bootstrap CPU once it runs Rust in the high half.
#[no_mangle]
fn dualvisor_main(handoff: BootHandoff) -> ! {
    xprintln!("DualVisor {} starting", env!("CARGO_PKG_VERSION"));
    arch::heap::init();
    xprintln!("magic {:#x} info {:#x}", handoff.magic, handoff.info_paddr);
    arch::cpu::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    arch::console::set_panicking();
    xprintln!("Panic: {}", info);
    arch::cpu::halt_forever()
}
