//! DualVisor: the composition root. Wires `arch`, `xen-core` and `lockstep` together.
#![no_std]
#![no_main]

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
