//! Building dom0 at boot: the builder on real frames, the replica's records of the new domain
//! (frame table, scheduler, time), and the hand-over to the lockstep leader's CPU.

use super::{Runtime, VcpuRt, RUNTIME};
use crate::lockstep_hw::Backend;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use arch::percpu::MAX_CPUS;
use arch::trap::TrapFrame;
use arch::xprintln;
use xen_core::builder::{build_pv, BuildError, BuildMemory, BuildRequest, BuiltDomain};
use xen_core::hv::{create_domain, HvConfig, HvState};
use xen_core::pv_layout::DomainKind;
use xen_core::sched::Sched;
use xen_core::time::TimeBase;

/// Frames for the builder, from the hypervisor's frame allocator.
struct ArchMemory;

impl BuildMemory for ArchMemory {
    fn alloc_frames(&mut self, n: u64) -> Option<Vec<u64>> {
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match arch::memory::alloc_frame() {
                Some(p) => v.push(p >> 12),
                None => {
                    self.free_frames(&v);
                    return None;
                }
            }
        }
        Some(v)
    }
    fn free_frames(&mut self, mfns: &[u64]) {
        for &m in mfns {
            let _ = arch::memory::free_frame(m << 12);
        }
    }
    fn write(&mut self, mfn: u64, offset: usize, data: &[u8]) {
        arch::guestmem::write_frame(mfn, offset, data);
    }
    fn zero(&mut self, mfn: u64) {
        arch::guestmem::zero_frame(mfn);
    }
    fn hypervisor_l4_entries(&self) -> [u64; 16] {
        arch::guestmem::hypervisor_l4_entries()
    }
}

/// Boot-time parameters of dom0.
pub struct Dom0Params<'a> {
    /// Kernel ELF bytes (module 1).
    pub kernel: &'a [u8],
    /// Initrd bytes (module 2), if any.
    pub initrd: Option<&'a [u8]>,
    /// dom0's command line (module 1's).
    pub cmdline: &'a str,
    /// Memory in pages.
    pub nr_pages: u64,
    /// vCPUs.
    pub nr_vcpus: u32,
    /// The hypervisor command line (XENVER_commandline).
    pub hv_cmdline: &'a str,
    /// `noreboot` given.
    pub noreboot: bool,
    /// The host's memory map (XENMEM_machine_memory_map).
    pub e820: Vec<dom0_interface::memory::E820Entry>,
    /// One past the highest RAM frame.
    pub max_page: u64,
}

fn log_layout(d: &BuiltDomain) {
    let l = &d.layout;
    xprintln!("*** LOADING DOMAIN 0 ***");
    xprintln!(
        "Dom0 kernel: 64-bit{}, lsb, paddr {:#x} -> {:#x}",
        if d.info.pae_mode.is_empty() {
            ""
        } else {
            ", PAE"
        },
        d.info.virt_kstart - d.info.virt_base,
        d.info.virt_kend - d.info.virt_base
    );
    xprintln!(
        "PHYSICAL MEMORY ARRANGEMENT: {} pages allocated",
        d.p2m.len()
    );
    xprintln!("VIRTUAL MEMORY ARRANGEMENT:");
    xprintln!(
        " Loaded kernel: {:016x}->{:016x}",
        d.info.virt_kstart,
        d.info.virt_kend
    );
    xprintln!(
        " Start info:    {:016x}->{:016x}",
        l.start_info.vstart,
        l.start_info.vend
    );
    xprintln!(
        " Page tables:   {:016x}->{:016x}",
        l.page_tables.vstart,
        l.page_tables.vend
    );
    xprintln!(
        " Boot stack:    {:016x}->{:016x}",
        l.stack.vstart,
        l.stack.vend
    );
    xprintln!(" TOTAL:         {:016x}->{:016x}", l.v_start, l.v_end);
    xprintln!(" ENTRY ADDRESS: {:016x}", d.entry);
    xprintln!("Dom0 has maximum {} VCPUs", l.nr_vcpus);
}

/// The replica's initial state with dom0 in it; the scheduler's first decisions are
/// returned as effects to apply.
fn initial_state(
    p: &Dom0Params<'_>,
    built: &BuiltDomain,
    leader: u32,
    host: &xen_core::mm::MmConfig,
) -> (HvState, Vec<xen_core::effect::Effect>) {
    let mut state = HvState::new();
    let mut j = lockstep::Journal::new();
    j.begin(1);
    if let Err(e) = create_domain(&mut state, &mut j, 0, true, p.nr_vcpus, p.nr_pages) {
        xprintln!("dom0: cannot create the domain record: {}", e);
    }
    state
        .domains
        .update(&mut j, &0, |d| d.vm_assist = built.vm_assist);
    state.config.set(
        &mut j,
        HvConfig {
            cmdline: p.hv_cmdline.as_bytes().to_vec(),
            pm_timer_port: arch::platform::pm_timer_port(),
            mcfg: arch::platform::mcfg_areas(),
        },
    );
    state.pirq_config.set(&mut j, super::irq::pirq_config());
    xen_core::mm::set_host_memory(&mut state, &mut j, host.clone());
    let mem = xen_core::mm::DomainMemory {
        dom: 0,
        p2m: &built.p2m,
        shared_info_mfn: built.shared_info_mfn,
        plan: &built.plan,
        max_pages: Some(xen_core::mm::DOM0_MAX_PAGES),
    };
    if let Err(e) = xen_core::mm::register_pv_domain(&mut state, &mut j, &mem) {
        xprintln!("dom0: frame table registration failed: {:?}", e);
    }
    let khz = arch::lapic::tsc_khz();
    let wall = arch::platform::rtc_unix_time();
    let mut out = Vec::new();
    {
        let tsc = arch::cpu::rdtsc();
        let mut s = Sched::new(&mut state, &mut j, 0);
        match TimeBase::new(khz * 1000, 0, wall, 0) {
            Ok(tb) => xen_core::sched::configure_time(&mut s, tb),
            Err(e) => xprintln!("time: TSC of {} kHz cannot be scaled: {}", khz, e),
        }
        let mut s = Sched::at_tsc(s.state, s.j, tsc);
        xen_core::sched::add_pcpu(&mut s, leader);
        // Several CPUs run guests (several lockstep pairs, or lockstep off): each has a run
        // queue, and dom0's vCPU i is placed on guest CPU i % CPUs (before it is first
        // woken), as Xen places dom0's vCPU i on CPU i.
        if let Some(t) = crate::lockstep_hw::topology().filter(|t| t.guest_cpus().len() > 1) {
            for l in t.guest_cpus() {
                xen_core::sched::add_pcpu(&mut s, l as u32);
            }
            for i in 0..p.nr_vcpus {
                let mut v = s.vcpu((0, i));
                v.pcpu = t.guest_cpu_of(i as usize) as u32;
                s.put((0, i), v);
            }
        }
        xen_core::sched::set_shared_info(&mut s, 0, built.shared_info_mfn << 12);
        xen_core::sched::wake(&mut s, (0, 0));
        xen_core::sched::dispatch_idle(&mut s, leader);
        out.append(&mut s.out);
    }
    lockstep::replica::forget(&mut state);
    (state, out)
}

/// Builds dom0 and runs its boot vCPU on the lockstep leader's CPU; returns only if dom0
/// cannot be built.
pub fn start_dom0(p: &Dom0Params<'_>) -> Result<core::convert::Infallible, BuildError> {
    let req = BuildRequest {
        kernel: p.kernel,
        initrd: p.initrd,
        cmdline: p.cmdline,
        nr_pages: p.nr_pages,
        nr_vcpus: p.nr_vcpus,
        kind: DomainKind::Dom0,
    };
    // The read-only M2P first: the builder copies its L4 slot into dom0's root.
    let m2p_frames = match arch::paging::build_m2p(p.max_page, &mut arch::memory::alloc_frame) {
        Ok(f) => f,
        Err(e) => {
            xprintln!("M2P: {}; guests see no machine-to-phys table", e);
            Vec::new()
        }
    };
    let built = build_pv(&req, &mut ArchMemory)?;
    log_layout(&built);
    for (pfn, &mfn) in built.p2m.iter().enumerate() {
        arch::paging::set_m2p(mfn, pfn as u64);
    }
    let leader = crate::lockstep_hw::topology().map_or(0, |t| t.guest_cpu());
    let host = xen_core::mm::MmConfig {
        max_page: p.max_page,
        machine_e820: p.e820.clone(),
        m2p_frames,
        // The hypervisor's own devices: no guest maps the IO-APIC page, the local APIC or
        // anything in the MSI address window (0xfee00000-0xfeefffff, denied as Xen does).
        io_deny: alloc::vec![(0xFEC00, 0xFEC00), (0xFEE00, 0xFEEFF)],
    };
    // Built where the leader's replica lives (not in the small boot arena: dom0's frame
    // table and p2m take ~200 bytes per page).
    let (state, first) = arch::heap::with_arena(crate::lockstep_hw::build_arena(), || {
        initial_state(p, &built, leader as u32, &host)
    });

    let mut frame = TrapFrame::ZERO;
    frame.rip = built.entry;
    frame.rsp = built.stack;
    frame.rsi = built.start_info_va;
    frame.cs = u64::from(arch::gdt::RING3_CS64);
    frame.ss = u64::from(arch::gdt::RING3_DS);
    frame.rflags = 1 << 9;
    let mut vcpus = BTreeMap::new();
    vcpus.insert(
        (0, 0),
        VcpuRt {
            frame,
            ..VcpuRt::new()
        },
    );
    let mut rt = Runtime {
        backend: Backend::new(state),
        vcpus,
        running: [None; MAX_CPUS],
        on_cpu: [None; MAX_CPUS],
        cross_cpu: crate::lockstep_pairs::several_leaders(),
        unsettled: false,
        selectors_of: [None; MAX_CPUS],
        xstate_dirty: [false; MAX_CPUS],
        svm: arch::cpu::has_svm(),
        deadline: [None; MAX_CPUS],
        return_faults: [(None, 0); MAX_CPUS],
        noreboot: p.noreboot,
        handover: None,
        committed: Vec::with_capacity(super::COMMITTED_CAPACITY),
        vi_cache: [const { super::ViCache::new() }; MAX_CPUS],
        resumed: [None; MAX_CPUS],
    };
    rt.backend.enable_promotion();
    let boot = xen_core::request::Request::exit(
        xen_core::request::ExitKind::Interrupt,
        dom0_interface::xen::DOMID_IDLE,
        leader as u32,
        Default::default(),
        0,
        0,
        0,
    );
    let mut after = super::After::default();
    super::apply::apply_all(&mut rt, &boot, 0, None, &first, &mut after);
    super::console::announce();
    super::irq::register_handlers();
    super::console::route_input(leader);
    arch::guest::set_exit_hook(super::guest_exit);
    *RUNTIME.lock() = Some(rt);
    if let Some(t) = crate::lockstep_hw::topology().filter(|t| t.guest_cpus().len() > 1) {
        for l in t.guest_cpus().into_iter().filter(|&l| l != leader) {
            // Each further guest CPU runs its own run queue (idle until a vCPU is placed
            // there).
            arch::smp::assign(l, super::enter_current);
            for v in (0..p.nr_vcpus).filter(|&v| t.guest_cpu_of(v as usize) == l) {
                match t.pair_led_by(l) {
                    Some(i) => xprintln!("dom0: vCPU{} runs on CPU{} (leader of pair {})", v, l, i),
                    None => xprintln!("dom0: vCPU{} runs on CPU{}", v, l),
                }
            }
        }
    }
    if leader == arch::percpu::cpu_index() {
        super::enter_current()
    }
    xprintln!("dom0: vCPU0 runs on CPU{} (the lockstep leader)", leader);
    arch::smp::assign(leader, super::enter_current);
    crate::boot::idle(arch::percpu::cpu_index())
}
