//! Per-vCPU CPU-state hypercalls of a 64-bit PV guest, as Xen 4.17 (`pv/misc-hypercalls.c`,
//! `pv/descriptor-tables.c`, `common/domain.c`): stack_switch (3), set_segment_base (25),
//! fpu_taskswitch (5), set/get_debugreg (8/9), vm_assist (21), set_gdt (2),
//! update_descriptor (10) and iret (23).

use crate::effect::Effect;
use crate::hv::{Ctx, HvResult, HvState};
use crate::pv::effect::PvEffect;
use crate::pv::{emulate, state};
use dom0_interface::arch_x86::{
    FIRST_RESERVED_GDT_ENTRY, SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER, SEGBASE_GS_USER_SEL,
};
use dom0_interface::errno::XenErrno;
use dom0_interface::xen::*;

/// VM assists a 64-bit PV domain may enable (Xen 4.17 accepts the 32-bit-only ones too,
/// measured on the oracle).
pub const VMASST_VALID_PV64: u64 = (1 << VMASST_TYPE_4GB_SEGMENTS)
    | (1 << VMASST_TYPE_4GB_SEGMENTS_NOTIFY)
    | (1 << VMASST_TYPE_WRITABLE_PAGETABLES)
    | (1 << VMASST_TYPE_PAE_EXTENDED_CR3)
    | (1 << VMASST_TYPE_ARCHITECTURAL_IOPL)
    | (1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG)
    | (1 << VMASST_TYPE_M2P_STRICT);

/// `fixup_guest_stack_selector` for a 64-bit PV guest: non-null selectors get RPL 3.
pub fn fixup_stack_selector(ss: u64) -> u64 {
    if ss & !3 != 0 {
        ss | 3
    } else {
        ss
    }
}

/// `stack_switch(ss, sp)`: the kernel stack for user→kernel bounces.
pub fn stack_switch(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [ss, sp, ..] = ctx.req.args;
    let k = state::key(ctx);
    let j = ctx.journal();
    state.vcpus.update(j, &k, |v| {
        v.kernel_ss = fixup_stack_selector(ss & 0xffff);
        v.kernel_sp = sp;
    });
    Ok(0)
}

/// `set_segment_base(which, base)`.
pub fn set_segment_base(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [which, base, ..] = ctx.req.args;
    let which = which as u32;
    let k = state::key(ctx);
    match which {
        SEGBASE_FS | SEGBASE_GS_USER | SEGBASE_GS_KERNEL => {
            if !state::is_canonical(base) {
                return Err(XenErrno::EINVAL.into());
            }
            let j = ctx.journal();
            state.vcpus.update(j, &k, |v| match which {
                SEGBASE_FS => v.fs_base = base,
                SEGBASE_GS_USER => v.gs_base_user = base,
                _ => v.gs_base_kernel = base,
            });
            ctx.emit(Effect::Pv(PvEffect::SegmentBase { which, value: base }));
            Ok(0)
        }
        SEGBASE_GS_USER_SEL => {
            // The hardware loads the selector (NUL on a bad one, never an error) and the
            // user GS base follows from the descriptor.
            let mut sel = base & 0xffff;
            if sel > 3 {
                sel |= 3;
            }
            ctx.emit(Effect::Pv(PvEffect::SegmentBase { which, value: sel }));
            Ok(0)
        }
        _ => Err(XenErrno::EINVAL.into()),
    }
}

/// `fpu_taskswitch(set)`.
pub fn fpu_taskswitch(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let set = ctx.req.args[0] as i32 != 0;
    emulate::fpu_taskswitch(state, ctx, set);
    Ok(0)
}

/// `set_debugreg(reg, value)`.
pub fn set_debugreg(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [reg, value, ..] = ctx.req.args;
    let Ok(reg) = u32::try_from(reg as i32) else {
        return Err(XenErrno::ENODEV.into());
    };
    emulate::set_debugreg(state, ctx, reg, value)?;
    Ok(0)
}

/// `get_debugreg(reg)`: the value, or -ENODEV.
pub fn get_debugreg(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let reg = ctx.req.args[0] as i32;
    let pv = state::get(state, state::key(ctx));
    match u8::try_from(reg).ok().map(|r| emulate::read_dr(&pv, r)) {
        Some(Some(v)) => Ok(v as i64),
        _ => Err(XenErrno::ENODEV.into()),
    }
}

/// `vm_assist(cmd, type)`.
pub fn vm_assist(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, kind, ..] = ctx.req.args;
    let kind = kind as u32;
    if kind >= 64 || VMASST_VALID_PV64 & (1 << kind) == 0 {
        return Err(XenErrno::EINVAL.into());
    }
    let dom = ctx.dom();
    let j = ctx.journal();
    match cmd as u32 {
        VMASST_CMD_ENABLE => {
            state.domains.update(j, &dom, |d| d.vm_assist |= 1 << kind);
            Ok(0)
        }
        VMASST_CMD_DISABLE => {
            state
                .domains
                .update(j, &dom, |d| d.vm_assist &= !(1 << kind));
            Ok(0)
        }
        _ => Err(XenErrno::ENOSYS.into()),
    }
}

/// Whether `gfn` is a frame of the caller that may become a descriptor page. The replica's
/// frame table (issue 5) is not wired into this check yet, so no frame qualifies: Xen's
/// answer for frames a guest does not own.
fn descriptor_frame_ok(_state: &HvState, _dom: crate::effect::DomId, _gfn: u64) -> bool {
    false
}

/// `set_gdt(frame_list, entries)`: validates as Xen; with no frames (entries 0) the GDT is
/// dropped ([`Effect::SetGdt`]); frames the guest does not own are refused with -EINVAL.
pub fn set_gdt(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [list, entries, ..] = ctx.req.args;
    let entries = entries as u32;
    if entries > FIRST_RESERVED_GDT_ENTRY {
        return Err(XenErrno::EINVAL.into());
    }
    let nr_pages = entries.div_ceil(512) as usize;
    let mut frames = alloc::vec::Vec::with_capacity(nr_pages);
    for i in 0..nr_pages {
        frames.push(ctx.read_u64(list.wrapping_add(8 * i as u64))?);
    }
    let dom = ctx.dom();
    if frames.iter().any(|&f| !descriptor_frame_ok(state, dom, f)) {
        return Err(XenErrno::EINVAL.into());
    }
    ctx.emit(Effect::Pv(PvEffect::SetGdt { frames, entries }));
    Ok(0)
}

/// `update_descriptor(maddr, desc)`: refused (-EINVAL) for misaligned addresses and for
/// frames the guest does not own.
pub fn update_descriptor(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [gaddr, _desc, ..] = ctx.req.args;
    if gaddr % 8 != 0 || !descriptor_frame_ok(state, ctx.dom(), gaddr >> 12) {
        return Err(XenErrno::EINVAL.into());
    }
    Ok(0)
}

/// `iret`.
pub fn iret(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    crate::pv::iret::iret(state, ctx)
}
