//! `create_bounce_frame`: how Xen enters a PV guest kernel handler — exception, software
//! interrupt, SYSCALL or event callback — by pushing a frame on the guest kernel stack
//! (switching from the user to the kernel stack and page tables first) and jumping to the
//! handler with the flat kernel selectors.
//!
//! Frame, lowest address first: RCX, R11, [error code | DS, ES, FS, GS], RIP, CS (with the
//! saved upcall mask in bits 32-39), RFLAGS (IF = !saved mask, IOPL virtual), RSP, SS.

use crate::effect::Effect;
use crate::hv::{value_kind, Ctx, HvError, HvState};
use crate::pv::effect::PvEffect;
use crate::pv::state;
use crate::request::GuestRegs;
use alloc::vec::Vec;
use dom0_interface::arch_x86::{
    FLAT_KERNEL_CS, FLAT_KERNEL_SS, HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START,
};
use dom0_interface::xen::VMASST_TYPE_ARCHITECTURAL_IOPL;

/// `X86_EFLAGS_IF`.
pub const EFLAGS_IF: u64 = 1 << 9;
/// Flags a bounce clears on handler entry: TF, NT, RF, VM, AC.
pub const EFLAGS_CLEARED_ON_BOUNCE: u64 = (1 << 8) | (1 << 14) | (1 << 16) | (1 << 17) | (1 << 18);
/// `X86_EFLAGS_DF`, cleared on SYSCALL entry.
pub const EFLAGS_DF: u64 = 1 << 10;
/// Vectors for which the CPU pushes an error code (`X86_EXC_HAVE_EC`).
pub const VECTORS_WITH_ERROR_CODE: u32 = (1 << 8)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 14)
    | (1 << 17)
    | (1 << 21)
    | (1 << 29)
    | (1 << 30);

/// What sits between R11 and RIP in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    /// Nothing (events, SYSCALL, vectors without an error code).
    None,
    /// An exception's error code (32 bits, zero-extended).
    ErrorCode(u32),
    /// The failsafe callback's data selectors DS, ES, FS, GS.
    Segments([u16; 4]),
}

/// Xen's `struct trap_bounce`: where to enter and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapBounce {
    /// Handler entry point (0: none registered, which crashes the domain).
    pub eip: u64,
    /// `TBF_INTERRUPT`: mask events on entry.
    pub mask_events: bool,
    /// Error code or failsafe selectors.
    pub extra: Extra,
    /// Clear RFLAGS.DF on entry (SYSCALL).
    pub clear_df: bool,
}

/// The guest's event state from its `vcpu_info`: (upcall pending, upcall mask), read by the
/// leader through [`value_kind::UPCALL_STATE`].
pub fn upcall_state(ctx: &mut Ctx<'_, '_, '_>) -> Result<(bool, u8), HvError> {
    let v = ctx.value(value_kind::UPCALL_STATE)?;
    Ok((v & 0xff != 0, ((v >> 8) & 0xff) as u8))
}

/// Crashes the calling domain (`domain_crash`): logs `why` and records SHUTDOWN_crash.
pub fn crash(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, why: &str) -> Result<(), HvError> {
    let dom = ctx.dom();
    let msg = alloc::format!("d{}v{} {}: crashing the domain", dom, ctx.req.vcpu, why);
    ctx.emit(Effect::Log(msg.into_bytes()));
    let j = ctx.journal();
    state.domains.update(j, &dom, |d| {
        if d.shutdown.is_none() {
            d.shutdown = Some(dom0_interface::sched::SHUTDOWN_CRASH);
        }
    });
    ctx.emit(Effect::DomainCrash { dom });
    crate::hypercall::domctl::domain_shut_down(state, ctx, dom)
}

/// Whether a bounce-frame stack top is refused (Xen's check: strictly inside the hypervisor
/// range, or within 64 bytes above it).
pub fn bad_stack(top: u64) -> bool {
    top > HYPERVISOR_VIRT_START && top < HYPERVISOR_VIRT_END + 8 * 8
}

/// Switches the calling vCPU between guest kernel and user mode (`toggle_guest_mode`):
/// updates the replica and emits [`Effect::GuestMode`] with the page-table base to load.
pub fn set_guest_mode(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, kernel: bool) {
    let k = state::key(ctx);
    let j = ctx.journal();
    let cr3 = state
        .vcpus
        .update(j, &k, |v| {
            v.kernel_mode = kernel;
            if kernel {
                v.cr3
            } else {
                v.user_cr3
            }
        })
        .unwrap_or(0);
    ctx.emit(Effect::Pv(PvEffect::GuestMode { kernel, cr3 }));
}

/// Builds the bounce frame for the calling vCPU interrupted with `regs` and enters `tb`:
/// emits the stack write, the mode switch, the upcall-mask update and the new registers, or
/// crashes the domain as Xen does (no handler, bad stack, unwritable stack).
pub fn create_bounce_frame(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    regs: &GuestRegs,
    tb: TrapBounce,
) -> Result<GuestRegs, HvError> {
    bounce(state, ctx, regs, tb, true)
}

/// The failsafe callback's frame (`load_segments` after a selector failed to load): as
/// [`create_bounce_frame`], except that Xen 4.17 enters `tb.eip` even when it is 0 (no
/// failsafe callback registered: the guest kernel then runs at address 0).
pub fn create_failsafe_frame(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    regs: &GuestRegs,
    tb: TrapBounce,
) -> Result<GuestRegs, HvError> {
    bounce(state, ctx, regs, tb, false)
}

/// [`create_bounce_frame`]; `need_handler`: crash the domain if `tb.eip` is 0.
fn bounce(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    regs: &GuestRegs,
    tb: TrapBounce,
    need_handler: bool,
) -> Result<GuestRegs, HvError> {
    let k = state::key(ctx);
    let vcpu = state.vcpus.get(&k).cloned().unwrap_or_default();
    let mut cs = regs.cs & 0xffff;
    let top = if vcpu.kernel_mode {
        cs &= !3;
        regs.rsp
    } else {
        set_guest_mode(state, ctx, true);
        vcpu.kernel_sp
    } & !0xf;
    if bad_stack(top) {
        crash(state, ctx, "create_bounce_frame: bad guest stack")?;
        return Ok(*regs);
    }
    let (_, saved_mask) = upcall_state(ctx)?;
    let vm_assist = state.domains.get(&k.0).map_or(0, |d| d.vm_assist);
    let mut rflags = regs.rflags & !(EFLAGS_IF | state::EFLAGS_IOPL);
    if saved_mask == 0 {
        rflags |= EFLAGS_IF;
    }
    if vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0 {
        rflags |= state::get(state, k).iopl;
    }
    let mut words: Vec<u64> = alloc::vec![regs.rcx, regs.r11];
    match tb.extra {
        Extra::None => {}
        Extra::ErrorCode(e) => words.push(u64::from(e)),
        Extra::Segments(s) => words.extend(s.iter().map(|&x| u64::from(x))),
    }
    words.extend([
        regs.rip,
        cs | (u64::from(saved_mask) << 32),
        rflags,
        regs.rsp,
        regs.ss,
    ]);
    let sp = top.wrapping_sub(8 * words.len() as u64);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    if ctx.copy_to_guest(sp, &bytes).is_err() {
        crash(
            state,
            ctx,
            "create_bounce_frame: fault writing the guest stack",
        )?;
        return Ok(*regs);
    }
    if tb.eip == 0 && need_handler {
        crash(state, ctx, "create_bounce_frame: no handler registered")?;
        return Ok(*regs);
    }
    if tb.mask_events && saved_mask == 0 {
        ctx.emit(Effect::Pv(PvEffect::UpcallMask {
            dom: k.0,
            vcpu: k.1,
            masked: true,
        }));
    }
    let cleared = EFLAGS_CLEARED_ON_BOUNCE | if tb.clear_df { EFLAGS_DF } else { 0 };
    let new = GuestRegs {
        rflags: regs.rflags & !cleared,
        ss: u64::from(FLAT_KERNEL_SS),
        rsp: sp,
        cs: u64::from(FLAT_KERNEL_CS),
        rip: tb.eip,
        ..*regs
    };
    ctx.emit(Effect::SetRegs(new));
    Ok(new)
}

/// Bounces exception `vector` (with `error_code` where the vector has one) to the guest's
/// virtual IDT entry (`pv_inject_event` for a hardware exception or software interrupt).
pub fn inject(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    regs: &GuestRegs,
    vector: u8,
    error_code: Option<u32>,
) -> Result<GuestRegs, HvError> {
    let cr2 = ctx.req.cr2;
    inject_with_cr2(state, ctx, regs, vector, error_code, cr2)
}

/// As [`inject_hw`], for a fault the hypervisor raised itself while emulating: a #PF reports
/// `cr2` (not the exit's).
pub fn inject_at(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    regs: &GuestRegs,
    vector: u8,
    error_code: u64,
    cr2: u64,
) -> Result<GuestRegs, HvError> {
    let ec =
        (vector < 32 && VECTORS_WITH_ERROR_CODE & (1 << vector) != 0).then_some(error_code as u32);
    inject_with_cr2(state, ctx, regs, vector, ec, cr2)
}

fn inject_with_cr2(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    regs: &GuestRegs,
    vector: u8,
    error_code: Option<u32>,
    cr2: u64,
) -> Result<GuestRegs, HvError> {
    let k = state::key(ctx);
    let ti = state::trap(state, k, vector);
    let mut extra = match error_code {
        Some(e) => Extra::ErrorCode(e),
        None => Extra::None,
    };
    if vector == 14 {
        let user = !state.vcpus.get(&k).is_some_and(|v| v.kernel_mode);
        let j = ctx.journal();
        state::update(state, j, k, |p| p.cr2 = cr2);
        ctx.emit(Effect::Pv(PvEffect::GuestCr2 {
            dom: k.0,
            vcpu: k.1,
            cr2,
        }));
        let e = error_code.unwrap_or(0) & !4;
        extra = Extra::ErrorCode(if user { e | 4 } else { e });
    }
    if ti.address == 0 {
        let msg = alloc::format!(
            "d{}v{} unhandled trap {} (error {:#x}) at {:#x}",
            k.0,
            k.1,
            vector,
            error_code.unwrap_or(0),
            regs.rip
        );
        ctx.emit(Effect::Log(msg.into_bytes()));
    }
    create_bounce_frame(
        state,
        ctx,
        regs,
        TrapBounce {
            eip: ti.address,
            mask_events: ti.masks_events(),
            extra,
            clear_df: false,
        },
    )
}

/// Bounces a hardware exception: the error code is used only for vectors that have one.
pub fn inject_hw(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    regs: &GuestRegs,
    vector: u8,
    error_code: u64,
) -> Result<GuestRegs, HvError> {
    let ec =
        (vector < 32 && VECTORS_WITH_ERROR_CODE & (1 << vector) != 0).then_some(error_code as u32);
    inject(state, ctx, regs, vector, ec)
}
