//! `vcpu_op(cmd, vcpuid, arg)` as Xen 4.17 answers a 64-bit PV guest: vCPU bring-up
//! (initialise, up, down, is_up), runstate info and area, periodic and single-shot timers,
//! vcpu_info relocation, the secondary time area, get_physid. Only the caller's own domain's
//! vCPUs are reachable (a bad id is -ENOENT).

use super::guest_arg::read;
use super::sched::shutdown_domain;
use crate::domain::VcpuKey;
use crate::effect::Effect;
use crate::hv::{Ctx, HvError, HvResult, HvState};
use crate::request::GuestRegs;
use crate::sched::{self, with_sched, SchedEffect};
use alloc::vec::Vec;
use dom0_interface::arch_x86::{
    VcpuGuestContext, FIRST_RESERVED_GDT_ENTRY, VGCF_FAILSAFE_DISABLES_EVENTS, VGCF_I387_VALID,
    VGCF_IN_KERNEL, VGCF_ONLINE, VGCF_SYSCALL_DISABLES_EVENTS, XEN_LEGACY_MAX_VCPUS,
};
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::sched::SHUTDOWN_POWEROFF;
use dom0_interface::vcpu::*;

/// `vcpu_op(cmd, vcpuid, arg)`.
pub fn vcpu_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, vcpuid, arg, ..] = ctx.req.args;
    let dom = ctx.dom();
    let id = u32::try_from(vcpuid).map_err(|_| XenErrno::ENOENT)?;
    let key = (dom, id);
    if !state.vcpus.contains_key(&key) {
        return Err(XenErrno::ENOENT.into());
    }
    let is_caller = id == ctx.req.vcpu;
    match cmd as u32 {
        VCPUOP_INITIALISE => initialise(state, ctx, key, arg),
        VCPUOP_UP => {
            if !sched::vcpu_sched(state, key).initialised {
                return Err(XenErrno::EINVAL.into());
            }
            let up = state.vcpus.get(&key).is_some_and(|v| v.online);
            if !up {
                with_sched(state, ctx, |s| sched::online_and_wake(s, key))?;
            }
            Ok(0)
        }
        VCPUOP_DOWN => {
            let others_up = state
                .vcpus
                .iter()
                .any(|(k, v)| k.0 == dom && k.1 != id && v.online);
            if !others_up {
                shutdown_domain(state, ctx, SHUTDOWN_POWEROFF)?;
                return Ok(0);
            }
            if state.vcpus.get(&key).is_some_and(|v| v.online) {
                with_sched(state, ctx, |s| sched::offline(s, key))?;
            }
            Ok(0)
        }
        VCPUOP_IS_UP => Ok(i64::from(state.vcpus.get(&key).is_some_and(|v| v.online))),
        VCPUOP_GET_RUNSTATE_INFO => {
            let r = with_sched(state, ctx, |s| s.vcpu(key).runstate.at(s.now))?;
            ctx.copy_to_guest(arg, &r.to_abi().to_vec())?;
            Ok(0)
        }
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
            let area: VcpuRegisterRunstateMemoryArea = read(ctx, arg)?;
            // `guest_handle_okay`: Xen's `__addr_ok` of the start only. An area that starts
            // below the canonical hole and runs into it is accepted, its copies failing.
            if !crate::mm::pt::addr_ok(area.addr) {
                return Err(XenErrno::EFAULT.into());
            }
            let r = with_sched(state, ctx, |s| {
                let mut v = s.vcpu(key);
                v.runstate_area = area.addr;
                s.put(key, v.clone());
                v.runstate.at(s.now)
            })?;
            // Xen ignores a failure of this first copy.
            if area.addr != 0 && ctx.probe_write(area.addr, VcpuRunstateInfo::SIZE)? {
                ctx.emit(Effect::WriteGuest {
                    addr: area.addr,
                    data: r.to_abi().to_vec(),
                });
            }
            Ok(0)
        }
        VCPUOP_SET_PERIODIC_TIMER => {
            let p: VcpuSetPeriodicTimer = read(ctx, arg)?;
            if p.period_ns < sched::MIN_PERIOD_NS || p.period_ns > sched::STIME_DELTA_MAX {
                return Err(XenErrno::EINVAL.into());
            }
            with_sched(state, ctx, |s| sched::set_periodic(s, key, p.period_ns))?;
            Ok(0)
        }
        VCPUOP_STOP_PERIODIC_TIMER => {
            with_sched(state, ctx, |s| sched::set_periodic(s, key, 0))?;
            Ok(0)
        }
        VCPUOP_SET_SINGLESHOT_TIMER => {
            if !is_caller {
                return Err(XenErrno::EINVAL.into());
            }
            // Xen 4.17 ignores VCPU_SSHOTTMR_future: a past deadline fires at once.
            let t: VcpuSetSingleshotTimer = read(ctx, arg)?;
            with_sched(state, ctx, |s| {
                sched::set_singleshot(s, key, Some(t.timeout_abs_ns))
            })?;
            Ok(0)
        }
        VCPUOP_STOP_SINGLESHOT_TIMER => {
            if !is_caller {
                return Err(XenErrno::EINVAL.into());
            }
            with_sched(state, ctx, |s| sched::set_singleshot(s, key, None))?;
            Ok(0)
        }
        VCPUOP_REGISTER_VCPU_INFO => info::register(state, ctx, key, is_caller, arg),
        VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA => time_area::register(state, ctx, key, arg),
        // Xen answers -EINVAL unless dom0's vCPUs are pinned (dom0_vcpus_pin), which
        // DualVisor does not offer.
        VCPUOP_GET_PHYSID => Err(XenErrno::EINVAL.into()),
        _ => super::unknown_subop(state, ctx, "vcpu_op", cmd),
    }
}

/// Whether `a` is a canonical 48-bit address.
fn canonical(a: u64) -> bool {
    !(0x0000_8000_0000_0000..0xffff_8000_0000_0000).contains(&a)
}

/// The checks Xen's `arch_set_info_guest` makes of a 64-bit PV context before it loads
/// anything: canonical addresses (registers, stacks, segment bases, callbacks, the virtual
/// IDT, an LDT base with entries), an LDT base outside the hypervisor's range (`__addr_ok`,
/// whatever `ldt_ents`), page-aligned and at most 8192 entries. All -EINVAL.
pub fn check_context(c: &VcpuGuestContext) -> Result<(), XenErrno> {
    let addrs = [
        c.user_regs.rip,
        c.user_regs.rsp,
        c.kernel_sp,
        c.fs_base,
        c.gs_base_kernel,
        c.gs_base_user,
        c.event_callback_eip,
        c.syscall_callback_eip,
        c.failsafe_callback_eip,
    ];
    if addrs.iter().any(|a| !canonical(*a))
        || (c.ldt_ents != 0 && !canonical(c.ldt_base))
        || c.trap_ctxt.iter().any(|t| !canonical(t.address))
        || !crate::mm::pt::addr_ok(c.ldt_base)
        || c.ldt_base & 0xfff != 0
        || c.ldt_ents > 8192
    {
        return Err(XenErrno::EINVAL);
    }
    Ok(())
}

/// `X86_EFLAGS_IF`.
const EFLAGS_IF: u64 = 1 << 9;
/// `FCW_DEFAULT`: the x87 control word after FNINIT.
const FCW_DEFAULT: u16 = 0x037f;
/// `MXCSR_DEFAULT`: all SSE exceptions masked.
const MXCSR_DEFAULT: u32 = 0x1f80;
/// MXCSR bits every x86-64 CPU accepts (DAZ included); a guest's image is masked with it
/// so that restoring it can never fault in the hypervisor (Xen recovers from that fault
/// with an exception fixup, which DualVisor's restore path does not have).
const MXCSR_VALID: u32 = 0xffff;
/// Offset of MXCSR in an FXSAVE image.
const MXCSR_AT: usize = 24;

/// The FPU image a context starts the vCPU with (`vcpu_setup_fpu`): its own with
/// `VGCF_i387_valid` (MXCSR masked), else the reset state (FCW and MXCSR defaults).
fn fpu_image(c: &VcpuGuestContext) -> Vec<u8> {
    let mut fx = alloc::vec![0u8; c.fpu_ctxt.len()];
    if c.flags & VGCF_I387_VALID != 0 {
        fx.copy_from_slice(&c.fpu_ctxt);
        let mut m = [0u8; 4];
        m.copy_from_slice(&fx[MXCSR_AT..MXCSR_AT + 4]);
        let mxcsr = u32::from_le_bytes(m) & MXCSR_VALID;
        fx[MXCSR_AT..MXCSR_AT + 4].copy_from_slice(&mxcsr.to_le_bytes());
    } else {
        fx[..2].copy_from_slice(&FCW_DEFAULT.to_le_bytes());
        fx[MXCSR_AT..MXCSR_AT + 4].copy_from_slice(&MXCSR_DEFAULT.to_le_bytes());
    }
    fx
}

/// Xen's `fixup_guest_{code,stack}_selector` for a 64-bit PV guest, whose kernel runs in
/// ring 3: a selector with RPL below 3 gets RPL 3.
fn guest_selector(sel: u16) -> u16 {
    sel | 3
}

/// The registers a context starts with (code and stack selectors fixed up).
fn regs_of(c: &VcpuGuestContext) -> GuestRegs {
    let u = &c.user_regs;
    GuestRegs {
        rax: u.rax,
        rbx: u.rbx,
        rcx: u.rcx,
        rdx: u.rdx,
        rsi: u.rsi,
        rdi: u.rdi,
        rbp: u.rbp,
        r8: u.r8,
        r9: u.r9,
        r10: u.r10,
        r11: u.r11,
        r12: u.r12,
        r13: u.r13,
        r14: u.r14,
        r15: u.r15,
        rip: u.rip,
        cs: u64::from(guest_selector(u.cs)),
        // Xen: "Ensure real hardware interrupts are enabled."
        rflags: u.rflags | EFLAGS_IF,
        rsp: u.rsp,
        ss: u64::from(guest_selector(u.ss)),
    }
}

fn initialise(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, key: VcpuKey, arg: u64) -> HvResult {
    // A vCPU beyond the legacy shared_info slots needs a registered vcpu_info first.
    if key.1 >= XEN_LEGACY_MAX_VCPUS as u32
        && sched::vcpu_sched(state, key).vcpu_info_maddr.is_none()
    {
        return Err(XenErrno::EINVAL.into());
    }
    let c: VcpuGuestContext = read(ctx, arg)?;
    if sched::vcpu_sched(state, key).initialised {
        return Err(XenErrno::EEXIST.into());
    }
    apply_context(state, ctx, key, &c)
}

/// `arch_set_info_guest` for a 64-bit PV vCPU `key` (VCPUOP_initialise, and
/// XEN_DOMCTL_setvcpucontext from the toolstack), field by field as Xen 4.17:
///
/// - [`check_context`] first (-EINVAL, nothing changed);
/// - the flags, FPU image, registers (selectors' RPL raised to 3, IOPL virtualised, IF set)
///   and virtual IDT are loaded;
/// - a vCPU not initialised yet needs a user page table unless it starts in kernel mode
///   (-EINVAL); an initialised one (setvcpucontext only) must be given the page-table
///   roots, GDT and LDT it has (-EOPNOTSUPP: Xen has loaded the above by then, and so
///   does DualVisor);
/// - kernel stack, callbacks, segment bases, virtual CR0.TS, CR2 and CR4 (`pv_fixup_guest_cr4`),
///   the unused `ctrlreg[5..8]`, and the debug registers from their reset values through
///   `set_debugreg` one by one, each value it refuses silently left at reset;
/// - for a vCPU not initialised yet: vCPU 0 sets the domain's VM assists, the LDT base and
///   size are recorded (its pages are mapped on first use), the GDT is installed as
///   `set_gdt` (-EINVAL for a frame refused) and then the page-table roots are validated
///   and referenced as the domain's (their errno); either failure leaves the tables as they
///   were and the vCPU not initialised;
/// - the vCPU comes online with `VGCF_online`, and goes down without it.
pub(crate) fn apply_context(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    key: VcpuKey,
    c: &VcpuGuestContext,
) -> HvResult {
    check_context(c)?;
    let initialised = sched::vcpu_sched(state, key).initialised;
    load_regs(state, ctx, key, c);
    if !initialised {
        if c.flags & VGCF_IN_KERNEL == 0 && c.ctrlreg[1] == 0 {
            return Err(XenErrno::EINVAL.into());
        }
    } else if !same_tables(state, key, c) {
        return Err(XenErrno::EOPNOTSUPP.into());
    }
    let j = ctx.journal();
    state.vcpus.update(j, &key, |v| {
        // fixup_guest_stack_selector on the whole word.
        v.kernel_ss = c.kernel_ss | 3;
        v.kernel_sp = c.kernel_sp;
        v.event_callback = c.event_callback_eip;
        v.failsafe_callback = c.failsafe_callback_eip;
        v.syscall_callback = c.syscall_callback_eip;
        v.fs_base = c.fs_base;
        v.gs_base_kernel = c.gs_base_kernel;
        v.gs_base_user = c.gs_base_user;
    });
    let fsgsbase =
        c.ctrlreg[4] & crate::pv::state::CR4_FSGSBASE != 0 && crate::pv::cpuid::has_fsgsbase(ctx)?;
    let pv = loaded_cpu_state(&crate::pv::state::get(state, key), c, fsgsbase);
    crate::pv::state::update(state, ctx.journal(), key, |p| *p = pv);
    if !initialised {
        load_tables(state, ctx, key, c)?;
    }
    with_sched(state, ctx, |s| {
        let mut v = s.vcpu(key);
        v.initialised = true;
        s.put(key, v);
        if c.flags & VGCF_ONLINE != 0 {
            sched::online_and_wake(s, key);
        } else if s.state.vcpus.get(&key).is_some_and(|v| v.online) {
            sched::offline(s, key);
        }
    })?;
    Ok(0)
}

/// What `arch_set_info_guest` loads before it looks at the tables: the flags, the FPU image,
/// the registers and the virtual IDT.
fn load_regs(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, key: VcpuKey, c: &VcpuGuestContext) {
    let j = ctx.journal();
    state
        .vcpus
        .update(j, &key, |v| v.kernel_mode = c.flags & VGCF_IN_KERNEL != 0);
    for (vector, t) in c.trap_ctxt.iter().enumerate() {
        let e = crate::pv::TrapEntry {
            flags: t.flags,
            cs: guest_selector(t.cs),
            address: t.address,
        };
        // Xen copies the whole table; an entry with nothing in it stays absent here.
        let e = if t.address == 0 && t.flags == 0 && t.cs == 0 {
            crate::pv::TrapEntry::default()
        } else {
            e
        };
        crate::pv::state::set_trap(state, j, key, vector as u8, e);
    }
    let mut regs = regs_of(c);
    let iopl = regs.rflags & crate::pv::state::EFLAGS_IOPL;
    regs.rflags &= !crate::pv::state::EFLAGS_IOPL;
    crate::pv::state::update(state, j, key, |p| {
        p.vgc_flags = c.flags & !(VGCF_FAILSAFE_DISABLES_EVENTS | VGCF_SYSCALL_DISABLES_EVENTS);
        p.failsafe_disables_events = c.flags & VGCF_FAILSAFE_DISABLES_EVENTS != 0;
        p.syscall_disables_events = c.flags & VGCF_SYSCALL_DISABLES_EVENTS != 0;
        p.iopl = iopl;
    });
    ctx.emit(Effect::Sched(SchedEffect::SetVcpuRegs {
        dom: key.0,
        vcpu: key.1,
        regs,
    }));
    ctx.emit(Effect::Sched(SchedEffect::SetVcpuFpu {
        dom: key.0,
        vcpu: key.1,
        fx: fpu_image(c),
    }));
    let u = &c.user_regs;
    ctx.emit(Effect::Sched(SchedEffect::SetVcpuSelectors {
        dom: key.0,
        vcpu: key.1,
        segs: [u.ds, u.es, u.fs, u.gs],
    }));
}

/// Whether `c` names the page-table roots, GDT and LDT initialised vCPU `key` has (what Xen
/// requires of a context for a vCPU it does not reset).
fn same_tables(state: &HvState, key: VcpuKey, c: &VcpuGuestContext) -> bool {
    let Some(v) = state.vcpus.get(&key) else {
        return false;
    };
    let pv = crate::pv::state::get(state, key);
    let user_ok = if v.user_cr3 == 0 {
        c.ctrlreg[1] == 0 && c.flags & VGCF_IN_KERNEL != 0
    } else {
        v.user_cr3 == c.ctrlreg[1]
    };
    v.cr3 == c.ctrlreg[3]
        && user_ok
        && c.gdt_frames[..pv.gdt_frames.len()] == pv.gdt_frames
        && c.gdt_ents == u64::from(pv.gdt_ents)
        && c.ldt_base == v.ldt_base
        && c.ldt_ents == u64::from(v.ldt_ents)
}

/// The PV CPU state `c` gives a vCPU whose state is `pv`: virtual CR0.TS, CR2, CR4 as
/// `pv_fixup_guest_cr4` makes it (`fsgsbase`: the guest's CPUID has FSGSBASE), `ctrlreg[5..8]`, and the debug registers reset and then
/// set one by one through `set_debugreg` (DR0-3, DR6, DR7; a value it refuses leaves the
/// register at its reset value, as Xen ignores the error).
fn loaded_cpu_state(
    pv: &crate::pv::PvVcpu,
    c: &VcpuGuestContext,
    fsgsbase: bool,
) -> crate::pv::PvVcpu {
    let mut p = pv.clone();
    p.cr0_ts = c.ctrlreg[0] & crate::pv::state::CR0_TS != 0;
    p.cr2 = c.ctrlreg[2];
    p.cr4 = crate::pv::state::fixup_guest_cr4(c.ctrlreg[4], fsgsbase);
    p.ctrlreg_high.copy_from_slice(&c.ctrlreg[5..8]);
    p.dr = [0; 4];
    p.dr6 = crate::pv::state::DR6_DEFAULT;
    p.dr7 = crate::pv::state::DR7_DEFAULT;
    p.dr7_emul = 0;
    for reg in [0u32, 1, 2, 3, 6, 7] {
        if let Ok((next, _, _)) =
            crate::pv::emulate::debugreg_update(&p, reg, c.debugreg[reg as usize])
        {
            p = next;
        }
    }
    p
}

/// The tables a vCPU gets when it is first initialised: vCPU 0 sets the domain's VM assists
/// (Xen does so before anything below can fail), the LDT is recorded, then the GDT and the
/// page-table roots are installed; a failure of either leaves no GDT and no roots behind.
fn load_tables(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    key: VcpuKey,
    c: &VcpuGuestContext,
) -> Result<(), HvError> {
    let j = ctx.journal();
    if key.1 == 0 {
        state
            .domains
            .update(j, &key.0, |d| d.vm_assist = c.vm_assist);
    }
    state.vcpus.update(j, &key, |v| {
        v.ldt_base = c.ldt_base;
        v.ldt_ents = c.ldt_ents as u32;
    });
    let entries = u32::try_from(c.gdt_ents).unwrap_or(u32::MAX);
    let pages = (c.gdt_ents.min(u64::from(FIRST_RESERVED_GDT_ENTRY)) as usize).div_ceil(512);
    super::vcpu_ctl::install_gdt(state, ctx, key, &c.gdt_frames[..pages], entries)?;
    // The page-table bases are validated and referenced as Xen's arch_set_info_guest does
    // (an L4 of this domain, typed and counted), not just copied.
    let mut env = crate::mm::CtxEnv::new(ctx);
    if let Err(e) = crate::mm::vcpu_base::install(state, &mut env, key, c.ctrlreg[3], c.ctrlreg[1])
    {
        super::vcpu_ctl::destroy_gdt(state, &mut env, key)?;
        return Err(e);
    }
    Ok(())
}

pub mod info;
#[cfg(test)]
mod tests;
pub mod time_area;
