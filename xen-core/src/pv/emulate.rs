//! Emulation of the privileged instructions a ring-3 PV kernel executes, as Xen's
//! `pv_emulate_privileged_op` (on #GP with error code 0) and `pv_emulate_invalid_op` (the
//! forced-emulation CPUID on #UD) do. Anything not emulated is bounced as the original fault.

use crate::effect::Effect;
use crate::hv::{value_kind, Ctx, HvError, HvState};
use crate::pv::bounce::{inject_at, inject_hw};
use crate::pv::decode::{decode, Insn};
use crate::pv::effect::PvEffect;
use crate::pv::string_io::{self, Dir};
use crate::pv::{cpuid, ioports, msr, state};
use crate::request::GuestRegs;
use dom0_interface::arch_x86::XEN_EMULATE_PREFIX;
use dom0_interface::xen::VMASST_TYPE_ARCHITECTURAL_IOPL;

/// `X86_EFLAGS_RF`.
const EFLAGS_RF: u64 = 1 << 16;

/// What emulation decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Emulated: the guest continues with these registers.
    Done(GuestRegs),
    /// Not emulated: bounce the original fault.
    Fault,
    /// Emulation raises this exception instead (vector, error code).
    Raise(u8, u64),
    /// Emulation got part way and raised an exception: it is bounced with these registers
    /// (and, for #PF, this CR2).
    Exception {
        /// The registers the exception is delivered with.
        regs: GuestRegs,
        /// Vector.
        vector: u8,
        /// Error code (used where the vector has one).
        error_code: u64,
        /// Faulting address (#PF only).
        cr2: u64,
    },
}

/// Reads one instruction byte at `rip + i` (None if unreadable or an input abort).
fn fetch(ctx: &mut Ctx<'_, '_, '_>, rip: u64, i: usize) -> Result<Option<u8>, HvError> {
    let mut b = [0u8; 1];
    match ctx.copy_from_guest(rip.wrapping_add(i as u64), &mut b) {
        Ok(()) => Ok(Some(b[0])),
        Err(HvError::Abort(a)) => Err(HvError::Abort(a)),
        Err(HvError::Errno(_)) => Ok(None),
    }
}

/// Reads `n` bytes at `addr`, `None` if any is unreadable.
fn fetch_n<const N: usize>(
    ctx: &mut Ctx<'_, '_, '_>,
    addr: u64,
) -> Result<Option<[u8; N]>, HvError> {
    let mut b = [0u8; N];
    match ctx.copy_from_guest(addr, &mut b) {
        Ok(()) => Ok(Some(b)),
        Err(HvError::Abort(a)) => Err(HvError::Abort(a)),
        Err(HvError::Errno(_)) => Ok(None),
    }
}

/// General-purpose register `n` (0 = RAX ... 15 = R15; 4 is RSP).
pub fn gpr(r: &GuestRegs, n: u8) -> u64 {
    match n & 15 {
        0 => r.rax,
        1 => r.rcx,
        2 => r.rdx,
        3 => r.rbx,
        4 => r.rsp,
        5 => r.rbp,
        6 => r.rsi,
        7 => r.rdi,
        8 => r.r8,
        9 => r.r9,
        10 => r.r10,
        11 => r.r11,
        12 => r.r12,
        13 => r.r13,
        14 => r.r14,
        _ => r.r15,
    }
}

/// Sets general-purpose register `n`.
pub fn set_gpr(r: &mut GuestRegs, n: u8, v: u64) {
    let slot = match n & 15 {
        0 => &mut r.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        4 => &mut r.rsp,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        _ => &mut r.r15,
    };
    *slot = v;
}

/// `iopl_ok`: the guest's virtual IOPL allows cli/sti/in/out at its current privilege.
pub fn iopl_ok(state: &HvState, ctx: &Ctx<'_, '_, '_>) -> bool {
    let k = state::key(ctx);
    let kernel = state.vcpus.get(&k).is_some_and(|v| v.kernel_mode);
    let arch_iopl = state
        .domains
        .get(&k.0)
        .is_some_and(|d| d.vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0);
    let cpl: u64 = if kernel {
        if arch_iopl {
            0
        } else {
            1
        }
    } else {
        3
    };
    (cpl << 12) <= state::get(state, k).iopl
}

/// `guest_io_okay`: an access of `size` bytes at `port` is allowed by the virtual IOPL or,
/// failing that, by the I/O bitmap the vCPU registered (PHYSDEVOP_set_iobitmap), read from
/// guest memory now through the kernel's tables (as Xen switches to them from user mode);
/// a byte that cannot be read counts as all ones (no access).
pub fn io_okay(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    port: u16,
    size: u8,
) -> Result<bool, HvError> {
    if iopl_ok(state, ctx) {
        return Ok(true);
    }
    let pv = state::get(state, state::key(ctx));
    if u32::from(port) + u32::from(size) > pv.iobmp_limit {
        return Ok(false);
    }
    let at = pv.iobmp.wrapping_add(u64::from(port >> 3));
    let mut mask = [0xffu8; 2];
    for (i, b) in mask.iter_mut().enumerate() {
        let mut one = [0u8; 1];
        match ctx.copy_from_guest(at.wrapping_add(i as u64), &mut one) {
            Ok(()) => *b = one[0],
            Err(HvError::Errno(_)) => break,
            Err(e) => return Err(e),
        }
    }
    let bits = u16::from_le_bytes(mask);
    let want = ((1u16 << size) - 1) << (port & 7);
    Ok(bits & want == 0)
}

/// The guest-visible value of control register `cr`, or None for registers that #GP.
pub fn read_cr(state: &HvState, ctx: &Ctx<'_, '_, '_>, cr: u8) -> Option<u64> {
    let k = state::key(ctx);
    let pv = state::get(state, k);
    let v = state.vcpus.get(&k).cloned().unwrap_or_default();
    match cr {
        0 => Some((state::HOST_CR0 & !state::CR0_TS) | if pv.cr0_ts { state::CR0_TS } else { 0 }),
        2 => Some(pv.cr2),
        3 => Some(if v.kernel_mode { v.cr3 } else { v.user_cr3 }),
        4 => Some(pv.cr4),
        _ => None,
    }
}

fn kernel_mode(state: &HvState, k: crate::domain::VcpuKey) -> bool {
    state.vcpus.get(&k).is_some_and(|v| v.kernel_mode)
}

/// Whether `insn` needs CPL 0: Xen's emulator fakes DPL 0 for the guest kernel only
/// (`read_segment` in emul-priv-op.c), so x86_emulate's `mode_ring0()` check injects #GP(0)
/// for these in guest user mode before any register is touched. `cli`/`sti`/`in`/`out`
/// depend on the virtual IOPL instead ([`iopl_ok`]), `rdtsc`/`rdtscp` on the virtual
/// CR4.TSD, `cpuid` on nothing.
fn needs_ring0(insn: Insn) -> bool {
    matches!(
        insn,
        Insn::ReadCr { .. }
            | Insn::WriteCr { .. }
            | Insn::ReadDr { .. }
            | Insn::WriteDr { .. }
            | Insn::Clts
            | Insn::Wbinvd
            | Insn::Rdmsr
            | Insn::Wrmsr
    )
}

/// Emulates the instruction at the faulting RIP after a #GP(0) from the guest.
pub fn privileged_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<Outcome, HvError> {
    let regs = ctx.req.regs;
    // Fetched lazily: only what the decoder asks for (bytes past the instruction may be
    // unmapped).
    let mut bytes = [None::<u8>; crate::pv::decode::MAX_LEN];
    let mut fetched = 0usize;
    let mut err = None;
    let d = {
        let mut f = |i: usize| -> Option<u8> {
            if i >= bytes.len() {
                return None;
            }
            while fetched <= i {
                match fetch(ctx, regs.rip, fetched) {
                    Ok(b) => bytes[fetched] = b,
                    Err(e) => {
                        err = Some(e);
                        return None;
                    }
                }
                fetched += 1;
            }
            bytes[i]
        };
        decode(&mut f)
    };
    if let Some(e) = err {
        return Err(e);
    }
    let Some(d) = d else {
        return Ok(Outcome::Fault);
    };
    let k = state::key(ctx);
    if needs_ring0(d.insn) && !kernel_mode(state, k) {
        return Ok(Outcome::Fault);
    }
    let mut out = GuestRegs {
        rip: regs.rip.wrapping_add(u64::from(d.len)),
        rflags: regs.rflags & !EFLAGS_RF,
        ..regs
    };
    match d.insn {
        Insn::ReadCr { cr, gpr: g } => match read_cr(state, ctx, cr) {
            Some(v) => set_gpr(&mut out, g, v),
            None => return Ok(Outcome::Fault),
        },
        Insn::WriteCr { cr, gpr: g } => {
            let val = gpr(&regs, g);
            match cr {
                0 => {
                    // Only TS may change.
                    if (val ^ state::HOST_CR0) & !state::CR0_TS != 0 {
                        return Ok(Outcome::Fault);
                    }
                    fpu_taskswitch(state, ctx, val & state::CR0_TS != 0);
                }
                2 => {
                    let j = ctx.journal();
                    state::update(state, j, k, |p| p.cr2 = val);
                    ctx.emit(Effect::Pv(PvEffect::GuestCr2 {
                        dom: k.0,
                        vcpu: k.1,
                        cr2: val,
                    }));
                }
                4 => {
                    let fsgsbase = val & state::CR4_FSGSBASE != 0 && cpuid::has_fsgsbase(ctx)?;
                    let v = state::fixup_guest_cr4(val, fsgsbase);
                    let j = ctx.journal();
                    state::update(state, j, k, |p| p.cr4 = v);
                }
                _ => return Ok(Outcome::Fault),
            }
        }
        Insn::ReadDr { dr, gpr: g } => match read_dr(&state::get(state, k), dr) {
            Some(v) => set_gpr(&mut out, g, v),
            None => return Ok(Outcome::Raise(6, 0)),
        },
        Insn::WriteDr { dr, gpr: g } => {
            match set_debugreg(state, ctx, u32::from(dr), gpr(&regs, g)) {
                Ok(()) => {}
                Err(dom0_interface::errno::XenErrno::ENODEV) => return Ok(Outcome::Raise(6, 0)),
                Err(_) => return Ok(Outcome::Raise(13, 0)),
            }
        }
        Insn::Xsetbv => {
            // x86_emulate: #UD without OSXSAVE in the (virtual) CR4, then #GP(0) outside
            // ring 0; Xen's `handle_xsetbv` refuses (#GP(0)) any register but XCR0 and any
            // value `valid_xcr0` or the host's mask rejects, and PKRU for PV.
            if state::get(state, k).cr4 & state::CR4_OSXSAVE == 0 {
                return Ok(Outcome::Raise(6, 0));
            }
            if !kernel_mode(state, k) {
                return Ok(Outcome::Fault);
            }
            let value = (regs.rax & 0xffff_ffff) | (regs.rdx << 32);
            if regs.rcx as u32 != 0 || !cpuid::xcr0_allowed(value, cpuid::xfeature_mask(ctx)?) {
                return Ok(Outcome::Fault);
            }
            let j = ctx.journal();
            state::update(state, j, k, |p| {
                p.xcr0 = value;
                p.xcr0_accum |= value;
            });
        }
        Insn::Clts => fpu_taskswitch(state, ctx, false),
        Insn::Wbinvd => {}
        Insn::Rdtsc | Insn::Rdtscp => {
            // x86_emulate: outside ring 0 (guest user mode) CR4.TSD makes it #GP(0).
            let pv = state::get(state, k);
            if !kernel_mode(state, k) && pv.cr4 & state::CR4_TSD != 0 {
                return Ok(Outcome::Fault);
            }
            if d.insn == Insn::Rdtscp {
                out.rcx = pv.tsc_aux & 0xffff_ffff;
            }
            let tsc = ctx.value(value_kind::TSC)?;
            out.rax = tsc & 0xffff_ffff;
            out.rdx = tsc >> 32;
        }
        Insn::Cpuid => {
            let leaf = regs.rax as u32;
            let sub = regs.rcx as u32;
            let caller = cpuid::Caller::of(state, ctx);
            let r = cpuid::pv_cpuid(leaf, sub, &caller, &mut |l, s| {
                cpuid::host_values(ctx, l, s)
            })?;
            out.rax = u64::from(r[0]);
            out.rbx = u64::from(r[1]);
            out.rcx = u64::from(r[2]);
            out.rdx = u64::from(r[3]);
        }
        Insn::Rdmsr => match msr::read(state, ctx, regs.rcx as u32)? {
            Some(v) => {
                out.rax = v & 0xffff_ffff;
                out.rdx = v >> 32;
            }
            None => return Ok(Outcome::Fault),
        },
        Insn::Wrmsr => {
            let value = (regs.rax & 0xffff_ffff) | (regs.rdx << 32);
            if !msr::write(state, ctx, regs.rcx as u32, value)? {
                return Ok(Outcome::Fault);
            }
        }
        Insn::Cli | Insn::Sti => {
            if !iopl_ok(state, ctx) {
                return Ok(Outcome::Fault);
            }
        }
        Insn::In { port, size } => {
            let port = port.map_or(regs.rdx as u16, u16::from);
            if !io_okay(state, ctx, port, size)? {
                return Ok(Outcome::Fault);
            }
            let v = u64::from(ioports::guest_io_read(state, ctx, port, size)?);
            out.rax = match size {
                1 => (regs.rax & !0xff) | (v & 0xff),
                2 => (regs.rax & !0xffff) | (v & 0xffff),
                _ => v & 0xffff_ffff,
            };
        }
        Insn::Out { port, size } => {
            let port = port.map_or(regs.rdx as u16, u16::from);
            if !io_okay(state, ctx, port, size)? {
                return Ok(Outcome::Fault);
            }
            ioports::guest_io_write(state, ctx, port, size, regs.rax as u32)?;
        }
        Insn::Ins(op) => return string_io::emulate(state, ctx, &regs, out.rip, Dir::In, op),
        Insn::Outs(op) => return string_io::emulate(state, ctx, &regs, out.rip, Dir::Out, op),
        Insn::Hlt | Insn::Other => return Ok(Outcome::Fault),
    }
    Ok(Outcome::Done(out))
}

/// `pv_emulate_invalid_op`: on #UD, the forced-emulation prefix followed by CPUID is
/// emulated (RIP moves past both); anything else is a real #UD.
pub fn invalid_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<Outcome, HvError> {
    let regs = ctx.req.regs;
    let Some(prefix) = fetch_n::<5>(ctx, regs.rip)? else {
        return Ok(Outcome::Fault);
    };
    if prefix != XEN_EMULATE_PREFIX {
        return Ok(Outcome::Fault);
    }
    let Some(op) = fetch_n::<2>(ctx, regs.rip.wrapping_add(5))? else {
        return Ok(Outcome::Fault);
    };
    if op != [0x0f, 0xa2] {
        return Ok(Outcome::Fault);
    }
    let caller = cpuid::Caller {
        enlightened_kernel: kernel_mode(state, state::key(ctx)),
        ..cpuid::Caller::of(state, ctx)
    };
    let r = cpuid::pv_cpuid(regs.rax as u32, regs.rcx as u32, &caller, &mut |l, s| {
        cpuid::host_values(ctx, l, s)
    })?;
    Ok(Outcome::Done(GuestRegs {
        rax: u64::from(r[0]),
        rbx: u64::from(r[1]),
        rcx: u64::from(r[2]),
        rdx: u64::from(r[3]),
        rip: regs.rip.wrapping_add(7),
        rflags: regs.rflags & !EFLAGS_RF,
        ..regs
    }))
}

/// Applies an emulation outcome: new registers, or the fault bounced to the guest.
pub fn finish(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    outcome: Outcome,
    fault: (u8, u64),
) -> Result<(), HvError> {
    let regs = ctx.req.regs;
    match outcome {
        Outcome::Done(r) => ctx.emit(Effect::SetRegs(r)),
        Outcome::Fault => {
            inject_hw(state, ctx, &regs, fault.0, fault.1)?;
        }
        Outcome::Raise(v, e) => {
            inject_hw(state, ctx, &regs, v, e)?;
        }
        Outcome::Exception {
            regs,
            vector,
            error_code,
            cr2,
        } => {
            inject_at(state, ctx, &regs, vector, error_code, cr2)?;
        }
    }
    Ok(())
}

/// `do_fpu_taskswitch`: sets or clears the virtual CR0.TS (and the hardware TS with it).
pub fn fpu_taskswitch(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, set: bool) {
    let k = state::key(ctx);
    let j = ctx.journal();
    state::update(state, j, k, |p| p.cr0_ts = set);
    ctx.emit(Effect::Pv(PvEffect::FpuTs(set)));
}

/// `x86emul_read_dr` for a PV vCPU: None for registers that #UD (DR4/5 with CR4.DE, > 7).
pub fn read_dr(pv: &state::PvVcpu, reg: u8) -> Option<u64> {
    match reg {
        0..=3 => pv.dr.get(usize::from(reg)).copied(),
        4 | 6 if reg == 6 || pv.cr4 & state::CR4_DE == 0 => Some(pv.dr6),
        5 | 7 if reg == 7 || pv.cr4 & state::CR4_DE == 0 => Some(pv.dr7 | pv.dr7_emul),
        _ => None,
    }
}

/// `DR_GENERAL_DETECT`.
const DR7_GD: u64 = 1 << 13;
/// DR7 bits forced to 0: 11, 12, 14, 15.
const DR7_RESERVED_ZERO: u64 = (1 << 11) | (1 << 12) | (1 << 14) | (1 << 15);
/// DR7 bits forced to 1: 10.
const DR7_RESERVED_ONE: u64 = 1 << 10;
/// `DR7_ACTIVE_MASK`: the L/G enables.
const DR7_ACTIVE_MASK: u64 = 0xff;
/// DR6 bits forced to 0: 12.
const DR6_RESERVED_ZERO: u64 = 1 << 12;

/// Xen's `set_debugreg` as a step over one vCPU's PV state: the state with debug register
/// `reg` set to `value` (validated as Xen does: -EPERM for a DR0-3 address the guest may not
/// use or DR7.GD or an I/O breakpoint without CR4.DE, -EINVAL for high bits in DR6/DR7,
/// -ENODEV for DR4/5 with CR4.DE and registers past 7), and the hardware register and value
/// to load if the vCPU runs.
pub fn debugreg_update(
    pv: &state::PvVcpu,
    reg: u32,
    value: u64,
) -> Result<(state::PvVcpu, u8, u64), dom0_interface::errno::XenErrno> {
    use dom0_interface::errno::XenErrno;
    let de = pv.cr4 & state::CR4_DE != 0;
    let mut new = pv.clone();
    let hw_value;
    match reg {
        0..=3 => {
            if !state::addr_ok(value) {
                return Err(XenErrno::EPERM);
            }
            if let Some(slot) = new.dr.get_mut(reg as usize) {
                *slot = value;
            }
            hw_value = value;
        }
        4 | 6 => {
            if reg == 4 && de {
                return Err(XenErrno::ENODEV);
            }
            if value >> 32 != 0 {
                return Err(XenErrno::EINVAL);
            }
            new.dr6 = (value | state::DR6_DEFAULT) & !DR6_RESERVED_ZERO;
            hw_value = new.dr6;
        }
        5 | 7 => {
            if reg == 5 && de {
                return Err(XenErrno::ENODEV);
            }
            if value >> 32 != 0 {
                return Err(XenErrno::EINVAL);
            }
            let mut v = (value & !DR7_RESERVED_ZERO) | DR7_RESERVED_ONE;
            if v & DR7_GD != 0 {
                return Err(XenErrno::EPERM);
            }
            if v & DR7_ACTIVE_MASK != 0 {
                let mut io_enable = 0u64;
                let mut i = 16;
                while i < 32 {
                    if (v >> i) & 3 == 2 {
                        if !de {
                            return Err(XenErrno::EPERM);
                        }
                        io_enable |= v & (3 << ((i - 16) >> 1));
                    }
                    i += 4;
                }
                new.dr7_emul = io_enable;
                v &= !io_enable;
            } else {
                new.dr7_emul = 0;
            }
            new.dr7 = v;
            hw_value = v;
        }
        _ => return Err(XenErrno::ENODEV),
    }
    let hw_reg = match reg {
        4 => 6,
        5 => 7,
        r => r as u8,
    };
    Ok((new, hw_reg, hw_value))
}

/// Xen's `set_debugreg` for the calling vCPU (also used by `mov %reg, %drN`).
pub fn set_debugreg(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    reg: u32,
    value: u64,
) -> Result<(), dom0_interface::errno::XenErrno> {
    let k = state::key(ctx);
    let (new, hw_reg, hw_value) = debugreg_update(&state::get(state, k), reg, value)?;
    let j = ctx.journal();
    state::update(state, j, k, |p| *p = new);
    ctx.emit(Effect::Pv(PvEffect::DebugReg {
        reg: hw_reg,
        value: hw_value,
    }));
    Ok(())
}
