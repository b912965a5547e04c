//! The PV runtime: builds dom0, runs its vCPU in ring 3, and turns every guest exit into a
//! lockstep transaction over `xen-core`'s state machine, applying the committed effects.

use crate::lockstep_hw::Backend;
use alloc::vec::Vec;
use arch::guest::{FxArea, GuestBases, GuestExit};
use arch::trap::TrapFrame;
use arch::xprintln;
use dom0_interface::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};
use lockstep::config::TxResult;
use lockstep::input::Env;
use spin::Mutex;
use xen_core::builder::{build_pv, BuildMemory, BuildRequest, BuiltDomain};
use xen_core::effect::{DomId, Effect};
use xen_core::hv::{create_domain, value_kind, HvState};
use xen_core::pv_layout::DomainKind;
use xen_core::request::{ExitKind, GuestRegs, Request};

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

/// What the hardware side keeps per vCPU (outside the replica).
struct VcpuRt {
    dom: DomId,
    id: u32,
    frame: TrapFrame,
    fx: FxArea,
    bases: GuestBases,
}

struct Runtime {
    engine: Backend,
    vcpus: Vec<VcpuRt>,
    /// Index in `vcpus` of the vCPU running on the boot CPU.
    current: usize,
    noreboot: bool,
}

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// The leader's environment: guest memory through the running vCPU's page tables, time.
struct PvEnv {
    cr3: u64,
}

impl Env for PvEnv {
    fn value(&mut self, kind: u32) -> u64 {
        match kind {
            value_kind::SYSTEM_TIME => system_time_ns(),
            _ => 0,
        }
    }
    fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        arch::guestmem::read(self.cr3, addr, buf)
    }
    fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> bool {
        arch::guestmem::read_machine(maddr, buf)
    }
    fn probe_write(&mut self, addr: u64, len: usize) -> bool {
        arch::guestmem::probe_write(self.cr3, addr, len)
    }
}

/// Nanoseconds since boot, from the TSC.
pub fn system_time_ns() -> u64 {
    let khz = arch::lapic::tsc_khz();
    (u128::from(arch::cpu::rdtsc()) * 1_000_000 / u128::from(khz)) as u64
}

fn regs_of(f: &TrapFrame) -> GuestRegs {
    GuestRegs {
        rax: f.rax,
        rbx: f.rbx,
        rcx: f.rcx,
        rdx: f.rdx,
        rsi: f.rsi,
        rdi: f.rdi,
        rbp: f.rbp,
        r8: f.r8,
        r9: f.r9,
        r10: f.r10,
        r11: f.r11,
        r12: f.r12,
        r13: f.r13,
        r14: f.r14,
        r15: f.r15,
        rip: f.rip,
        cs: f.cs,
        rflags: f.rflags,
        rsp: f.rsp,
        ss: f.ss,
    }
}

fn set_regs(f: &mut TrapFrame, r: &GuestRegs) {
    f.rax = r.rax;
    f.rbx = r.rbx;
    f.rcx = r.rcx;
    f.rdx = r.rdx;
    f.rsi = r.rsi;
    f.rdi = r.rdi;
    f.rbp = r.rbp;
    f.r8 = r.r8;
    f.r9 = r.r9;
    f.r10 = r.r10;
    f.r11 = r.r11;
    f.r12 = r.r12;
    f.r13 = r.r13;
    f.r14 = r.r14;
    f.r15 = r.r15;
    f.rip = r.rip;
    f.cs = r.cs;
    f.rflags = r.rflags;
    f.rsp = r.rsp;
    f.ss = r.ss;
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

/// Builds dom0 and enters it on this CPU; returns only if dom0 cannot be built.
pub fn start_dom0(
    p: &Dom0Params<'_>,
) -> Result<core::convert::Infallible, xen_core::builder::BuildError> {
    let req = BuildRequest {
        kernel: p.kernel,
        initrd: p.initrd,
        cmdline: p.cmdline,
        nr_pages: p.nr_pages,
        nr_vcpus: p.nr_vcpus,
        kind: DomainKind::Dom0,
    };
    let built = build_pv(&req, &mut ArchMemory)?;
    log_layout(&built);

    let mut state = HvState::new();
    let mut j = lockstep::Journal::new();
    j.begin(1);
    if let Err(e) = create_domain(&mut state, &mut j, 0, true, p.nr_vcpus, p.nr_pages) {
        xprintln!("dom0: cannot create the domain record: {}", e);
    }
    let cr3 = built.l4_mfn << 12;
    for v in 0..p.nr_vcpus {
        state.vcpus.update(&mut j, &(0, v), |vc| vc.cr3 = cr3);
    }
    state
        .domains
        .update(&mut j, &0, |d| d.vm_assist = built.vm_assist);
    state.config.set(
        &mut j,
        xen_core::hv::HvConfig {
            cmdline: p.hv_cmdline.as_bytes().to_vec(),
        },
    );
    lockstep::replica::forget(&mut state);
    let engine = Backend::new(state);
    let mut frame = TrapFrame::ZERO;
    frame.rip = built.entry;
    frame.rsp = built.stack;
    frame.rsi = built.start_info_va;
    frame.cs = u64::from(arch::gdt::RING3_CS64);
    frame.ss = u64::from(arch::gdt::RING3_DS);
    frame.rflags = 1 << 9;
    let vcpu = VcpuRt {
        dom: 0,
        id: 0,
        frame,
        fx: FxArea::default(),
        bases: GuestBases {
            cr3,
            fs_base: 0,
            gs_base: 0,
        },
    };
    arch::guest::set_exit_hook(guest_exit);
    *RUNTIME.lock() = Some(Runtime {
        engine,
        vcpus: alloc::vec![vcpu],
        current: 0,
        noreboot: p.noreboot,
    });
    let cpu = crate::lockstep_hw::topology().map_or(0, |t| t.guest_cpu());
    if cpu == arch::percpu::cpu_index() {
        enter_current()
    }
    xprintln!("dom0: vCPU0 runs on CPU{} (the lockstep leader)", cpu);
    arch::smp::assign(cpu, enter_current);
    crate::boot::idle(arch::percpu::cpu_index())
}

/// Enters the current vCPU on this CPU.
fn enter_current() -> ! {
    let (f, fx, bases) = {
        let g = RUNTIME.lock();
        let Some(rt) = g.as_ref() else {
            crate::boot::idle(arch::percpu::cpu_index())
        };
        let v = &rt.vcpus[rt.current];
        (v.frame, v.fx, v.bases)
    };
    enter(&f, &fx, bases)
}

fn enter(frame: &TrapFrame, fx: &FxArea, bases: GuestBases) -> ! {
    match arch::guest::enter_guest(frame, fx, bases) {
        Ok(never) => match never {},
        Err(e) => {
            xprintln!("cannot enter the guest: {:?}", e);
            arch::cpu::halt_forever()
        }
    }
}

/// What the effects of a transaction asked the exit path to do next.
#[derive(Default)]
struct After {
    shutdown: Option<(DomId, u32)>,
    crashed: Option<DomId>,
}

fn apply(effects: &[Effect], frame: &mut TrapFrame, cr3: u64, after: &mut After) {
    for e in effects {
        match e {
            Effect::Return(v) => frame.rax = *v as u64,
            Effect::WriteGuest { addr, data } => {
                if !arch::guestmem::write(cr3, *addr, data) {
                    xprintln!(
                        "d?: committed guest write at {:#x} failed (mapping changed)",
                        addr
                    );
                }
            }
            Effect::WriteMachine { maddr, value } => {
                arch::guestmem::write_machine_u64(*maddr, *value);
            }
            Effect::ConsoleWrite { dom, data } => {
                if *dom == 0 {
                    arch::console::write_raw(data);
                } else {
                    arch::console::write_raw(alloc::format!("(d{}) ", dom).as_bytes());
                    arch::console::write_raw(data);
                }
            }
            Effect::Log(line) => xprintln!(
                "{}",
                core::str::from_utf8(line).unwrap_or("<log line not UTF-8>")
            ),
            Effect::Continue(args) => {
                frame.rip = frame.rip.wrapping_sub(2);
                frame.rdi = args[0];
                frame.rsi = args[1];
                frame.rdx = args[2];
                frame.r10 = args[3];
                frame.r8 = args[4];
            }
            Effect::SetRegs(r) => set_regs(frame, r),
            Effect::Yield | Effect::Block => {}
            Effect::DomainShutdown { dom, reason } => after.shutdown = Some((*dom, *reason)),
            Effect::DomainCrash { dom } => after.crashed = Some(*dom),
        }
    }
}

fn hardware_domain_down(dom: DomId, reason: u32, noreboot: bool) -> ! {
    // Xen's hwdom_shutdown/maybe_reboot wording, one line each.
    let reboot_suffix = if noreboot {
        "'noreboot' set - not rebooting."
    } else {
        "rebooting machine in 5 seconds."
    };
    match reason {
        SHUTDOWN_POWEROFF => {
            xprintln!("Hardware Dom{} halted: halting machine", dom);
            halt_machine()
        }
        SHUTDOWN_REBOOT => {
            xprintln!("Hardware Dom{} shutdown: rebooting machine", dom);
            arch::platform::reset()
        }
        SHUTDOWN_CRASH => xprintln!("Hardware Dom{} crashed: {}", dom, reboot_suffix),
        _ => xprintln!(
            "Hardware Dom{} shutdown (unknown reason {}): {}",
            dom,
            reason,
            reboot_suffix
        ),
    }
    if noreboot {
        halt_machine()
    }
    arch::lapic::udelay(5_000_000);
    arch::platform::reset()
}

fn halt_machine() -> ! {
    arch::trap::begin_fatal();
    arch::cpu::halt_forever()
}

/// The exit hook: every guest exit on this CPU.
fn guest_exit(exit: GuestExit, frame: &mut TrapFrame, fx: &mut FxArea) {
    let mut guard = RUNTIME.lock();
    let Some(rt) = guard.as_mut() else {
        return;
    };
    let idx = rt.current;
    let (dom, vcpu_id, cr3) = {
        let v = &rt.vcpus[idx];
        (v.dom, v.id, v.bases.cr3)
    };
    let kernel_mode = rt
        .engine
        .replica()
        .vcpus
        .get(&(dom, vcpu_id))
        .is_none_or(|v| v.kernel_mode);
    let regs = regs_of(frame);
    let req = match exit {
        GuestExit::Syscall if kernel_mode => Request::hypercall(dom, vcpu_id, regs),
        GuestExit::Syscall => Request::exit(ExitKind::UserSyscall, dom, vcpu_id, regs, 0, 0, 0),
        GuestExit::Exception(v) => {
            let cr2 = if v == 14 { arch::cpu::read_cr2() } else { 0 };
            Request::exit(
                ExitKind::Exception,
                dom,
                vcpu_id,
                regs,
                u64::from(v),
                frame.error_code,
                cr2,
            )
        }
        GuestExit::Interrupt(_) => return,
    };
    let words = req.to_words();
    let mut env = PvEnv { cr3 };
    let mut after = After::default();
    let out = rt.engine.run(&words, &mut env, &mut |effects: &[Effect]| {
        apply(effects, frame, cr3, &mut after)
    });
    match out.result {
        TxResult::Committed => {}
        TxResult::Failed(e) => xprintln!("d{}v{}: transaction failed: {:?}", dom, vcpu_id, e),
        TxResult::Aborted(e) => xprintln!("d{}v{}: transaction aborted: {:?}", dom, vcpu_id, e),
    }
    if let Some(s) = out.escalation {
        xprintln!(
            "lockstep: pair escalated (suspect {:?}): {}",
            s,
            rt.engine.health()
        );
    }
    rt.vcpus[idx].frame = *frame;
    rt.vcpus[idx].fx = *fx;
    let noreboot = rt.noreboot;
    drop(guard);
    if let Some(d) = after.crashed {
        xprintln!("Domain {} crashed", d);
        if d == 0 {
            hardware_domain_down(0, SHUTDOWN_CRASH, noreboot);
        }
    }
    if let Some((d, reason)) = after.shutdown {
        if d == 0 {
            hardware_domain_down(d, reason, noreboot);
        }
    }
}
