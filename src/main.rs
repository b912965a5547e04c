//! DualVisor: the composition root. Wires `arch`, `xen-core` and `lockstep` together.
#![no_std]
#![no_main]

use arch::entry::BootHandoff;
use arch::xprintln;
use core::sync::atomic::Ordering;

fn timer_tick(_v: u8, _f: &mut arch::trap::TrapFrame) {
    arch::percpu::this().timer_ticks.fetch_add(1, Ordering::Relaxed);
    arch::lapic::eoi();
}

fn idle(index: usize) -> ! {
    let mut reported = false;
    loop {
        if !reported && arch::percpu::this().timer_ticks.load(Ordering::Relaxed) >= 3 {
            xprintln!("CPU{}: timer ticking", index);
            reported = true;
        }
        arch::cpu::enable_and_halt();
    }
}

/// Called by `arch` on the bootstrap CPU once it runs Rust in the high half.
#[no_mangle]
fn dualvisor_main(handoff: BootHandoff) -> ! {
    arch::heap::init();
    arch::idt::init();
    arch::smp::setup_cpu(0, (arch::cpu::cpuid(1, 0).1 >> 24) as u32);
    xprintln!("DualVisor {} starting", env!("CARGO_PKG_VERSION"));
    xprintln!("magic {:#x} info {:#x}", handoff.magic, handoff.info_paddr);
    arch::platform::mask_legacy_pic();
    arch::lapic::init_bsp(None);
    arch::trap::register_irq(arch::lapic::TIMER_VECTOR, timer_tick);
    arch::lapic::init_cpu();
    arch::percpu::mark_online();
    let n = arch::smp::boot_aps(&[0, 1, 2, 3], idle);
    xprintln!("Brought up {} CPUs", n);
    idle(0)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    arch::trap::begin_fatal();
    xprintln!("Panic on CPU {}: {}", arch::percpu::cpu_index(), info);
    arch::trap::finish_fatal()
}
