//! DualVisor: the composition root. Wires `arch`, `xen-core` and `lockstep` together; the boot
//! sequence itself is in `boot.rs`.
#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod lockstep_hw;
mod lockstep_pairs;
mod lockstep_selftest;
mod lockstep_spare;
mod pv;

use arch::entry::BootHandoff;
use arch::xprintln;

/// Called by `arch` on the bootstrap CPU once it runs Rust in the high half.
#[no_mangle]
fn dualvisor_main(handoff: BootHandoff) -> ! {
    boot::start(handoff)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    arch::trap::begin_fatal();
    xprintln!("****************************************");
    xprintln!("Panic on CPU {}:", arch::percpu::cpu_index());
    xprintln!("{}", info);
    xprintln!("****************************************");
    arch::trap::finish_fatal()
}
