//! Per-vCPU CPU-state hypercalls of a 64-bit PV guest, as Xen 4.17 (`pv/misc-hypercalls.c`,
//! `pv/descriptor-tables.c`, `common/domain.c`): stack_switch (3), set_segment_base (25),
//! fpu_taskswitch (5), set/get_debugreg (8/9), vm_assist (21), set_gdt (2),
//! update_descriptor (10) and iret (23).

use crate::effect::Effect;
use crate::hv::HvError;
use crate::hv::{Ctx, HvResult, HvState};
use crate::mm::{
    frame, get_page, get_page_and_type, get_page_type, put_page, put_page_and_type, put_page_type,
    CtxEnv, MmEnv, PageType,
};
use crate::pv::effect::PvEffect;
use crate::pv::{desc, emulate, state};
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

/// `pv_set_gdt` for vCPU `key`: takes a segment-descriptor reference on each of the new
/// frames (frames of `key`'s domain, their descriptors checked as Xen's `check_descriptor`),
/// drops those of the old GDT and, for the calling vCPU, has the embedder map the new frames
/// into the GDT it runs with ([`PvEffect::SetGdt`]; another vCPU's GDT is loaded from the
/// replica when it next runs). -EINVAL (too many entries, a frame refused) changes nothing.
pub fn install_gdt(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    key: crate::domain::VcpuKey,
    frames: &[u64],
    entries: u32,
) -> HvResult {
    if entries > FIRST_RESERVED_GDT_ENTRY || frames.len() > state::GDT_GUEST_PAGES {
        return Err(XenErrno::EINVAL.into());
    }
    let caller = key == state::key(ctx);
    let mut env = CtxEnv::new(ctx);
    for (i, &mfn) in frames.iter().enumerate() {
        if let Err(e) = get_page_and_type(state, &mut env, mfn, key.0, PageType::SegDesc) {
            for &held in frames[..i].iter().rev() {
                put_page_and_type(state, &mut env, held)?;
            }
            return match e {
                HvError::Abort(a) => Err(HvError::Abort(a)),
                _ => Err(XenErrno::EINVAL.into()),
            };
        }
    }
    destroy_gdt(state, &mut env, key)?;
    let mut table = [0u64; state::GDT_GUEST_PAGES];
    table[..frames.len()].copy_from_slice(frames);
    let j = env.journal();
    state::update(state, j, key, |p| {
        p.gdt_frames = table;
        p.gdt_ents = entries;
    });
    if caller {
        env.emit(Effect::Pv(PvEffect::SetGdt {
            frames: frames.to_vec(),
            entries,
        }));
    }
    Ok(0)
}

/// `pv_destroy_gdt` of vCPU `key`: drops the references its GDT frames hold and forgets them.
pub fn destroy_gdt(
    state: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    key: crate::domain::VcpuKey,
) -> Result<(), HvError> {
    let pv = state::get(state, key);
    for &mfn in pv.gdt_frames.iter().filter(|&&f| f != 0) {
        put_page_and_type(state, env, mfn)?;
    }
    let j = env.journal();
    state::update(state, j, key, |p| {
        p.gdt_frames = [0; state::GDT_GUEST_PAGES];
        p.gdt_ents = 0;
    });
    Ok(())
}

/// `pv_destroy_gdt` and `pv_destroy_ldt` of vCPU `key` (vcpu_reset): drops the references
/// its GDT and LDT frames hold and forgets both tables.
pub fn release_descriptor_tables(
    state: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    key: crate::domain::VcpuKey,
) -> Result<(), HvError> {
    destroy_gdt(state, env, key)?;
    crate::pv::ldt::destroy(state, env, key)?;
    let j = env.journal();
    state.vcpus.update(j, &key, |v| {
        v.ldt_base = 0;
        v.ldt_ents = 0;
    });
    Ok(())
}

/// `set_gdt(frame_list, entries)`: -EINVAL for too many entries or a frame the guest does not
/// own, that is writably mapped or a page table, or that holds a descriptor Xen refuses.
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
    let key = state::key(ctx);
    install_gdt(state, ctx, key, &frames, entries)
}

/// `update_descriptor(maddr, desc)`: writes one checked descriptor into a frame of the
/// caller that is a GDT/LDT page or may be writable; -EINVAL otherwise (misaligned address,
/// a descriptor Xen refuses, a frame not owned, a page table).
pub fn update_descriptor(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [maddr, desc, ..] = ctx.req.args;
    let Some(desc) = desc::check_descriptor(desc).filter(|_| maddr % 8 == 0) else {
        return Err(XenErrno::EINVAL.into());
    };
    let mfn = maddr >> 12;
    let dom = ctx.dom();
    let mut env = CtxEnv::new(ctx);
    let einval = |e: HvError| match e {
        HvError::Abort(a) => HvError::Abort(a),
        _ => XenErrno::EINVAL.into(),
    };
    get_page(state, &mut env, mfn, dom).map_err(einval)?;
    let ty = match frame::frame(state, mfn).map(|p| p.ty) {
        Some(PageType::SegDesc) => PageType::SegDesc,
        _ => PageType::Writable,
    };
    if let Err(e) = get_page_type(state, &mut env, mfn, ty) {
        put_page(state, &mut env, mfn);
        return Err(einval(e));
    }
    env.write_word(maddr, desc);
    put_page_type(state, &mut env, mfn)?;
    put_page(state, &mut env, mfn);
    Ok(0)
}

/// `iret`.
pub fn iret(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    crate::pv::iret::iret(state, ctx)
}
