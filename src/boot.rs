//! The boot sequence on the bootstrap CPU: boot information, command line, console, memory,
//! CPUs, then the self-test or dom0.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use arch::entry::BootHandoff;
use arch::multiboot::{BootInfo, Protocol};
use arch::serial::UartConfig;
use arch::trap::FatalAction;
use arch::xprintln;
use core::sync::atomic::Ordering;
use xen_core::cmdline::{self, Baud, BootOptions, Parity};

fn timer_tick(_v: u8, _f: &mut arch::trap::TrapFrame) {
    arch::percpu::this()
        .timer_ticks
        .fetch_add(1, Ordering::Relaxed);
    arch::lapic::eoi();
}

fn wake(_v: u8, _f: &mut arch::trap::TrapFrame) {
    // A TLB flush another leader CPU asked for (several lockstep pairs).
    arch::tlb::service();
    arch::lapic::eoi();
}

/// Objects of its replica each core checks after every committed transaction (see the
/// lockstep configuration in `start`).
const SCRUB_STEP: usize = 8;

/// Most words of input (guest registers, values, guest and machine memory read) one
/// transaction may consume: 2 MiB, 512 page-table pages.
const INPUT_WORDS: usize = 1 << 18;

/// CPUs that reported their timer (once per boot, also when a CPU idles again after serving
/// a lockstep role).
static TICK_REPORTED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The idle loop of every CPU: report the timer once, run an assigned task (a lockstep
/// role), else halt until the next interrupt.
pub fn idle(index: usize) -> ! {
    let bit = 1u64 << (index % 64);
    loop {
        if TICK_REPORTED.load(Ordering::Relaxed) & bit == 0
            && arch::percpu::this().timer_ticks.load(Ordering::Relaxed) >= 3
        {
            xprintln!("CPU{}: timer ticking", index);
            TICK_REPORTED.fetch_or(bit, Ordering::Relaxed);
        }
        if let Some(task) = arch::smp::take_assignment() {
            task();
        }
        arch::cpu::enable_and_halt();
    }
}

fn die(what: core::fmt::Arguments) -> ! {
    xprintln!("{}", what);
    arch::trap::begin_fatal();
    arch::trap::finish_fatal()
}

fn uart_config(opts: &BootOptions) -> UartConfig {
    let c = opts.com1_or_default();
    UartConfig {
        baud: match c.baud {
            Baud::Auto => 0,
            Baud::Rate(r) => r,
        },
        data_bits: c.data_bits,
        parity: match c.parity {
            Parity::None => b'n',
            Parity::Odd => b'o',
            Parity::Even => b'e',
            Parity::Mark => b'm',
            Parity::Space => b's',
        },
        stop_bits: c.stop_bits,
    }
}

fn parse_boot_info(handoff: BootHandoff) -> BootInfo {
    match arch::multiboot::parse(
        handoff.magic,
        u64::from(handoff.info_paddr),
        &arch::physmem::DirectMap,
    ) {
        Ok(info) => info,
        Err(e) => die(format_args!("Bad boot information from the loader: {e}")),
    }
}

/// APIC ids of the CPUs to bring up, from the MADT (boot CPU included).
fn discover_cpus(info: &BootInfo) -> Vec<u32> {
    match arch::physmem::acpi_platform(info.rsdp.as_ref()) {
        Ok(platform) => {
            arch::ioapic::record_com1(&platform);
            arch::ioapic::record_ioapics(&platform);
            arch::platform::record_pm_timer(platform.pm_timer_port);
            arch::platform::record_mcfg(&platform.mcfg);
            arch::platform::record_acpi_ids(
                platform
                    .cpus
                    .iter()
                    .filter(|c| c.enabled)
                    .map(|c| (c.apic_id, c.acpi_id)),
            );
            let ids: Vec<u32> = platform
                .cpus
                .iter()
                .filter(|c| c.enabled)
                .map(|c| c.apic_id)
                .collect();
            xprintln!(
                "ACPI: {} CPU(s) in the MADT, {} IOAPIC(s), LAPIC at {:#x}",
                ids.len(),
                platform.ioapics.len(),
                platform.lapic_paddr
            );
            ids
        }
        Err(e) => {
            xprintln!("ACPI: {}; continuing with the boot CPU only", e);
            Vec::new()
        }
    }
}

/// The E820 type of a memory-map region.
fn e820_type(k: arch::multiboot::MemKind) -> u32 {
    use arch::multiboot::MemKind;
    match k {
        MemKind::Usable => 1,
        MemKind::Reserved => 2,
        MemKind::AcpiReclaimable => 3,
        MemKind::AcpiNvs => 4,
        MemKind::Bad => 5,
    }
}

/// dom0's memory: `dom0_mem=` as Xen reads it; without it, Xen's default (all but 1/16, at
/// most 128 MiB, kept back) capped at [`DOM0_DEFAULT_MAX`] — DualVisor keeps the rest for
/// domUs and for the lockstep replicas' frame tables.
fn dom0_bytes(opts: &BootOptions, free: u64) -> u64 {
    let b = opts.dom0_mem.initial_bytes(free);
    if opts.dom0_mem.amount.is_none() {
        b.min(DOM0_DEFAULT_MAX)
    } else {
        b
    }
}

/// Default dom0 memory when `dom0_mem=` gives no amount.
pub const DOM0_DEFAULT_MAX: u64 = 256 << 20;

/// The boot sequence; never returns.
pub fn start(handoff: BootHandoff) -> ! {
    arch::heap::init();
    arch::idt::init();
    arch::smp::setup_cpu(0, (arch::cpu::cpuid(1, 0).1 >> 24) as u32);
    arch::smp::record_boot_stack();
    arch::console::init_logger(log::LevelFilter::Info);

    let info = parse_boot_info(handoff);
    let cmdline_text = cmdline::strip_image_name(&info.cmdline, &info.loader_name).to_string();
    let mut warnings: Vec<String> = Vec::new();
    let opts = BootOptions::parse(&cmdline_text, &mut |w| warnings.push(w.to_string()));
    arch::console::init(uart_config(&opts));
    arch::console::init_logger(opts.log_level_filter());
    arch::trap::set_fatal_action(match (&opts.selftest, opts.noreboot) {
        (Some(t), _) if !arch::selftest::FATAL_TESTS.contains(&t.as_str()) => {
            FatalAction::DebugExit(arch::platform::DEBUG_EXIT_FAIL)
        }
        (_, true) => FatalAction::Halt,
        _ => FatalAction::Reset,
    });

    xprintln!(
        "DualVisor {}: Xen 4.17-compatible hypervisor with dual-core lockstep",
        env!("CARGO_PKG_VERSION")
    );
    let proto = match info.protocol {
        Protocol::Mb1 => "multiboot1",
        Protocol::Mb2 => "multiboot2",
    };
    xprintln!("Bootloader: {} ({})", info.loader_name, proto);
    xprintln!("Command line: {}", cmdline_text);
    for w in &warnings {
        xprintln!("Warning: {}", w);
    }
    xprintln!("Physical RAM map:");
    for r in &info.memory_map {
        xprintln!(" {:016x} - {:016x} ({:?})", r.base, r.end(), r.kind);
    }
    match arch::memory::init(&info) {
        Ok(m) => {
            arch::smp::guard_boot_cpu_stacks();
            xprintln!(
                "Memory: {} MiB managed, {} MiB free, hypervisor page tables at {:#x}",
                m.total_frames * 4 / 1024,
                m.free_frames * 4 / 1024,
                arch::paging::hypervisor_cr3()
            )
        }
        Err(e) => die(format_args!("Memory set-up failed: {e}")),
    }
    for (i, m) in info.modules.iter().enumerate() {
        let cl = cmdline::strip_image_name(&m.cmdline, &info.loader_name);
        xprintln!(
            "Module {}: {} bytes at {:#x}, cmdline '{}'",
            i,
            m.end - m.start,
            m.start,
            cl
        );
    }

    let mut cpus = discover_cpus(&info);
    if let Some(max) = opts.maxcpus {
        cpus.truncate(max.max(1) as usize);
    }
    arch::platform::mask_legacy_pic();
    arch::lapic::init_bsp(None);
    arch::trap::register_irq(arch::lapic::TIMER_VECTOR, timer_tick);
    arch::trap::register_irq(arch::lapic::WAKE_VECTOR, wake);
    arch::lapic::init_cpu();
    arch::percpu::mark_online();
    let n = arch::smp::boot_aps(&cpus, idle);
    xprintln!("Brought up {} CPUs", n);
    let lockstep_selftest = opts
        .selftest
        .as_ref()
        .is_some_and(|t| t.as_str() == "lockstep");
    let cfg = lockstep::config::Config {
        lockstep: opts.lockstep,
        max_retries: u32::from(opts.lockstep_retries),
        // Latent replica corruption is found by verifying per-object checksums. In service
        // each core checks SCRUB_STEP more objects of its replica after every committed
        // transaction, sweeping it over and over; the lockstep self-test (which must see
        // each injected flip at once) scrubs whole replicas after every transaction. A whole
        // scrub reads every object (dom0's frame table and p2m alone hold 2 x 65536): about
        // 240M cycles (0.1 s) under TCG. Done every 1024 transactions, as before, it stalled
        // the guest for that long and averaged ~240k cycles per transaction with the bench
        // guest (measured with rdtsc around it on the leader); 8 objects per transaction
        // average ~18k (the sweep's first containers hold the largest objects). The leader
        // takes its step while it waits for the round's decision, off the guest's path
        // (hcloop lockstep on, six interleaved pairs of runs: -smp 2 26k-39k -> 22k-25k,
        // -smp 3 58k-95k -> 50k-61k cycles per call). Each core's step goes a
        // `replica::SCRUB_CHUNK` (2 objects) at a time and is given up once its wait is
        // over: the leader's when the round can be decided, the follower's when the next
        // round opens; at most 7 steps in a row, so the sweep goes on under a steady load.
        // Measured (rdtsc on the leader, hcloop, three interleaved runs each): at -smp 2 the
        // leader's step took 9.0k-9.5k cycles of each transaction's 18.7k-20.3k, given up it
        // takes 3.8k-4.5k of 14.8k-17.2k; a whole step (-smp 3) went from 10.2k-11.2k to
        // 7.6k-9.0k once a map's step found its end from the same walk.
        scrub_interval: u64::from(lockstep_selftest),
        scrub_step: if lockstep_selftest { 0 } else { SCRUB_STEP },
        // Words of guest input one transaction may consume: pinning a real kernel's
        // page-table hierarchy reads every table page of it (512 words each). Linux's first
        // MMUEXT_PIN_L4_TABLE overflowed 4096 words (and the domain was halted).
        input_capacity: INPUT_WORDS,
        wait: lockstep::role::WaitStrategy {
            spins: opts.lockstep_spin,
        },
        // A coordinator core halts at once: it has nothing to do until the second post of a
        // round wakes it, and spinning it with the pair (three vCPU threads on QEMU's two
        // host cores) makes the host time-slice them (see `lockstep_hw::HwIdle`).
        coordinator_wait: lockstep::role::WaitStrategy { spins: 0 },
        // A follower that has posted halts at once too: the coordinator core its post woke
        // needs a host CPU under QEMU (hcloop -smp 3, seven interleaved pairs of runs: fewer
        // cycles per call in each, 20% on average; see `lockstep_hw::HwIdle`).
        decision_wait: lockstep::role::WaitStrategy { spins: 0 },
        latency_bounds: crate::lockstep_hw::latency_bounds(),
        ..Default::default()
    };
    // The replicas' arenas are sized for dom0 as it could be now; it is sized for what is
    // left after them, never more.
    let dom0_most = dom0_bytes(&opts, arch::memory::current_stats().free_frames * 4096) / 4096;
    if crate::lockstep_hw::setup(n, cfg, dom0_most).is_none() {
        die(format_args!(
            "Not enough memory for the hypervisor's state of a dom0 of {} MiB ({} MiB per replica): lower dom0_mem",
            dom0_most >> 8,
            crate::lockstep_hw::replica_arena_bytes(dom0_most) >> 20
        ))
    }

    if let Some(name) = &opts.selftest {
        if name.as_str() == "fault" {
            arch::selftest::deliberate_fault();
        }
        if let Some(which) = name.strip_prefix("stack-overflow-") {
            if arch::selftest::FATAL_TESTS.contains(&name.as_str()) {
                arch::selftest::deliberate_stack_overflow(which == "syscall");
            }
        }
        if name.as_str() == "lockstep" {
            crate::lockstep_selftest::start();
        }
        arch::selftest::run(
            name,
            &[arch::selftest::ARCH_TESTS, crate::lockstep_selftest::LIST],
        );
    }
    let Some(kmod) = info.modules.first() else {
        xprintln!("No dom0 kernel given");
        idle(0)
    };
    let module_bytes = |m: &arch::multiboot::Module| {
        arch::physmem::phys_slice(m.start, m.end.saturating_sub(m.start))
    };
    let Some(kernel) = module_bytes(kmod) else {
        die(format_args!(
            "dom0 kernel module lies outside mapped memory"
        ))
    };
    let initrd = info.modules.get(1).and_then(module_bytes);
    let free = arch::memory::current_stats().free_frames * 4096;
    let pcpus = arch::percpu::nr_online() as u32;
    let params = crate::pv::Dom0Params {
        kernel,
        initrd,
        cmdline: cmdline::strip_image_name(&kmod.cmdline, &info.loader_name),
        nr_pages: dom0_bytes(&opts, free) / 4096,
        nr_vcpus: opts.dom0_max_vcpus.resolve(pcpus),
        hv_cmdline: &cmdline_text,
        noreboot: opts.noreboot,
        e820: info
            .memory_map
            .iter()
            .map(|r| dom0_interface::memory::E820Entry {
                addr: r.base,
                size: r.len,
                r#type: e820_type(r.kind),
            })
            .collect(),
        max_page: info.max_usable_addr() >> 12,
    };
    match crate::pv::start_dom0(&params) {
        Ok(never) => match never {},
        Err(e) => {
            xprintln!("Could not set up DOM0 guest OS: {}", e);
            xprintln!("System halted: DualVisor cannot run without dom0");
            arch::trap::begin_fatal();
            arch::cpu::halt_forever()
        }
    }
}
