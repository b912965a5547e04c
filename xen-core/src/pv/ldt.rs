//! The LDT of a 64-bit PV vCPU as Xen 4.17 pages it in (`pv/descriptor-tables.c`,
//! `pv/mm.c`, `handle_ldt_mapping_fault`): MMUEXT_SET_LDT and a context only record the
//! LDT's base and size; a page of it is mapped when the guest first uses a selector in it
//! (the CPU faults on the vCPU's LDT window), from the guest kernel's page tables at that
//! moment, if it maps a frame of the guest that can take the segment-descriptor type.
//! Otherwise the guest gets the fault: a #PF at its own LDT address, or #GP(selector) where
//! that address would not be canonical. Mapped pages stay until the LDT is replaced or the
//! vCPU reset. (Host tests: `mm::desc_tests`.)
//!
//! Contract with the bare-metal side: a #PF on the LDT window arrives as an exception exit
//! with [`PF_LDT_WINDOW`] in the error code and the offset into the LDT in place of CR2; a
//! vCPU about to be resumed with a code or stack selector in a page of its LDT that is not
//! mapped (the `iret` would fault in the hypervisor) gets the same exit with
//! [`PF_LDT_RESUME`] as well, which maps the page if it can and never injects anything.
//! The embedder maps [`crate::pv::PvVcpu::ldt_frames`] into the window when it resumes the
//! vCPU.

use crate::domain::VcpuKey;
use crate::hv::{Ctx, HvError, HvState};
use crate::mm::env::{CtxEnv, MmEnv};
use crate::mm::frame::{get_page_and_type, put_page_and_type};
use crate::mm::pt::{entry_mfn, walk_to_l1e, P};
use crate::mm::PageType;
use crate::pv::bounce::inject_hw;
use crate::pv::state;

/// Error-code flag of a #PF exit on the vCPU's LDT window (CR2 holds the LDT offset).
pub const PF_LDT_WINDOW: u64 = 1 << 32;
/// With [`PF_LDT_WINDOW`]: not a fault of the guest, the selectors of a vCPU being resumed.
pub const PF_LDT_RESUME: u64 = 1 << 33;
/// `X86_XEC_TI`: the selector error code names the LDT.
const XEC_TI: u64 = 4;

/// `pv_destroy_ldt` of vCPU `key`: drops the references its mapped LDT pages hold.
pub fn destroy(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    key: VcpuKey,
) -> Result<(), HvError> {
    let old = state::get(st, key).ldt_frames;
    for &mfn in old.iter().filter(|&&f| f != 0) {
        put_page_and_type(st, env, mfn)?;
    }
    let j = env.journal();
    state::update(st, j, key, |p| p.ldt_frames = [0; state::LDT_PAGES]);
    Ok(())
}

/// `pv_map_ldt_shadow_page` for vCPU `key` at byte `offset` of its LDT: whether the page is
/// now mapped (its frame held with a segment-descriptor type reference).
pub fn map_shadow_page(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    key: VcpuKey,
    offset: u64,
) -> Result<bool, HvError> {
    let Some(v) = st.vcpus.get(&key) else {
        return Ok(false);
    };
    let (base, ents, cr3) = (v.ldt_base, v.ldt_ents, v.cr3);
    let page = (offset >> 12) as usize;
    if offset >> 3 >= u64::from(ents) || page >= state::LDT_PAGES {
        return Ok(false);
    }
    let linear = base.wrapping_add(offset);
    let Some((_, l1e)) = walk_to_l1e(env, cr3, linear)? else {
        return Ok(false);
    };
    let e = env.read_word(l1e)?;
    if e & P == 0 {
        return Ok(false);
    }
    let mfn = entry_mfn(e);
    match get_page_and_type(st, env, mfn, key.0, PageType::SegDesc) {
        Ok(()) => {}
        Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
        Err(_) => return Ok(false),
    }
    let old = state::get(st, key).ldt_frames[page];
    if old != 0 {
        put_page_and_type(st, env, old)?;
    }
    let j = env.journal();
    state::update(st, j, key, |p| p.ldt_frames[page] = mfn);
    Ok(true)
}

/// `handle_ldt_mapping_fault` for the calling vCPU (an exit carrying [`PF_LDT_WINDOW`]):
/// maps the page and lets the guest retry; if it cannot, the guest gets #PF at its LDT
/// address with the hardware error code, or #GP(offset | TI) if that address would not be
/// canonical. A [`PF_LDT_RESUME`] exit only maps.
pub fn fault(st: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<(), HvError> {
    let key = state::key(ctx);
    let offset = ctx.req.cr2;
    let ec = ctx.req.error_code;
    let mapped = {
        let mut env = CtxEnv::new(ctx);
        map_shadow_page(st, &mut env, key, offset)?
    };
    if mapped || ec & PF_LDT_RESUME != 0 {
        return Ok(());
    }
    let base = st.vcpus.get(&key).map_or(0, |v| v.ldt_base);
    let linear = base.wrapping_add(offset);
    let regs = ctx.req.regs;
    if !state::is_canonical(linear) {
        inject_hw(st, ctx, &regs, 13, (offset & !3) | XEC_TI)?;
    } else {
        // The bounce reports CR2 from the request: the guest's own LDT address.
        let req = crate::request::Request {
            cr2: linear,
            ..*ctx.req
        };
        inject_hw(st, &mut ctx.with_req(&req), &regs, 14, ec & 0xffff_ffff)?;
    }
    Ok(())
}
