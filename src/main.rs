//! DualVisor: the composition root. Wires `arch`, `xen-core` and `lockstep` together.
#![no_std]
#![no_main]

extern crate alloc;

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
    arch::console::init_logger(log::LevelFilter::Info);
    xprintln!("DualVisor {} (Xen 4.17-compatible hypervisor with dual-core lockstep)", env!("CARGO_PKG_VERSION"));
    let info = match arch::multiboot::parse(handoff.magic, u64::from(handoff.info_paddr), &arch::physmem::DirectMap) {
        Ok(info) => info,
        Err(e) => {
            xprintln!("Bad boot information from the loader: {}", e);
            arch::trap::begin_fatal();
            arch::trap::finish_fatal()
        }
    };
    let proto = match info.protocol {
        arch::multiboot::Protocol::Mb1 => "multiboot1",
        arch::multiboot::Protocol::Mb2 => "multiboot2",
    };
    xprintln!("Bootloader: {} ({})", info.loader_name, proto);
    xprintln!("Command line: {}", info.cmdline);
    for r in &info.memory_map {
        xprintln!(" {:016x} - {:016x} ({:?})", r.base, r.end(), r.kind);
    }
    for (i, m) in info.modules.iter().enumerate() {
        xprintln!("Module {}: {} bytes at {:#x}, cmdline '{}'", i, m.end - m.start, m.start, m.cmdline);
    }
    match arch::memory::init(&info) {
        Ok(m) => xprintln!(
            "Memory: {} MiB managed, {} MiB free, hypervisor page tables at {:#x}",
            m.total_frames * 4 / 1024,
            m.free_frames * 4 / 1024,
            arch::paging::hypervisor_cr3()
        ),
        Err(e) => {
            xprintln!("Memory set-up failed: {}", e);
            arch::trap::begin_fatal();
            arch::trap::finish_fatal()
        }
    }
    let selftest = info.cmdline.split(' ').find_map(|t| t.strip_prefix("selftest="));
    arch::platform::mask_legacy_pic();
    arch::lapic::init_bsp(None);
    arch::trap::register_irq(arch::lapic::TIMER_VECTOR, timer_tick);
    arch::lapic::init_cpu();
    arch::percpu::mark_online();
    let n = arch::smp::boot_aps(&[0, 1, 2, 3], idle);
    xprintln!("Brought up {} CPUs", n);
    if let Some(name) = selftest {
        if name == "fault" {
            arch::selftest::deliberate_fault();
        }
        arch::selftest::run(name, &[arch::selftest::ARCH_TESTS]);
    }
    if info.modules.is_empty() {
        xprintln!("No dom0 kernel given");
    }
    idle(0)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    arch::trap::begin_fatal();
    xprintln!("Panic on CPU {}: {}", arch::percpu::cpu_index(), info);
    arch::trap::finish_fatal()
}
