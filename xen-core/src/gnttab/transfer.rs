//! `GNTTABOP_transfer` (`gnttab_transfer` for a PV caller): the caller gives up one of its
//! frames (`steal_page`: only the allocation reference may be left on it) and the target
//! domain receives it through an entry it marked `GTF_accept_transfer` for the caller, which
//! then reads `GTF_transfer_committed | GTF_transfer_completed` and the new frame. A frame
//! stolen for a transfer that then fails is freed, as Xen frees it.

use super::{entry_loc, read_entry, Gntst, GrantTable};
use crate::effect::DomId;
use crate::hv::{HvError, HvState};
use crate::mm::env::MmEnv;
use crate::mm::frame::set_m2p;
use crate::mm::INVALID_M2P;
use dom0_interface::grant_table as gt;

/// Frames a v1 entry's 32-bit frame field can name (`max_bitsize` 32 + PAGE_SHIFT).
const V1_FRAME_LIMIT: u64 = 1 << 32;

/// Takes `mfn` away from `d`: true if only its allocation reference was left.
fn steal(st: &mut HvState, env: &mut dyn MmEnv, d: DomId, mfn: u64) -> Result<(), Gntst> {
    let Some(p) = st.frames.get(&mfn).cloned() else {
        return Err(gt::GNTST_BAD_PAGE);
    };
    if p.owner != d || p.special {
        return Err(gt::GNTST_BAD_PAGE);
    }
    if !p.allocated || p.count != 1 || p.type_count != 0 || p.pinned {
        return Err(gt::GNTST_GENERAL_ERROR);
    }
    st.frames.update(env.journal(), &mfn, |q| {
        q.ty = crate::mm::PageType::None;
        q.validated = false;
    });
    st.domains.update(env.journal(), &d, |x| {
        x.tot_pages = x.tot_pages.saturating_sub(1)
    });
    if p.m2p != INVALID_M2P {
        st.p2m.remove(env.journal(), &(d, p.m2p));
    }
    set_m2p(st, env, mfn, INVALID_M2P);
    Ok(())
}

/// Frees a stolen frame (`free_domheap_page`).
fn free_stolen(st: &mut HvState, env: &mut dyn MmEnv, mfn: u64) {
    st.frames.remove(env.journal(), &mfn);
    env.freed(mfn);
}

/// One transfer by `d`.
pub fn transfer_one(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    d: DomId,
    op: &gt::GnttabTransfer,
) -> Result<Gntst, HvError> {
    let mfn = op.mfn;
    if let Err(s) = steal(st, env, d, mfn) {
        return Ok(s);
    }
    let e = op.domid;
    if !st.domains.contains_key(&e) {
        free_stolen(st, env, mfn);
        return Ok(gt::GNTST_BAD_DOMAIN);
    }
    let t = st.gnttab.get(&e).cloned().unwrap_or_else(GrantTable::new);
    if t.version == 1 && mfn >= V1_FRAME_LIMIT {
        free_stolen(st, env, mfn);
        return Ok(gt::GNTST_ADDRESS_TOO_BIG);
    }
    let Some(dom_e) = st.domains.get(&e).cloned() else {
        free_stolen(st, env, mfn);
        return Ok(gt::GNTST_BAD_DOMAIN);
    };
    if dom_e.tot_pages >= dom_e.max_pages {
        free_stolen(st, env, mfn);
        return Ok(gt::GNTST_GENERAL_ERROR);
    }
    // gnttab_prepare_for_transfer.
    let loc = if op.r#ref < t.nr_entries() {
        entry_loc(&t, op.r#ref)
    } else {
        None
    };
    let entry = match loc {
        Some(_) => read_entry(st, env, e, op.r#ref)?,
        None => Default::default(),
    };
    let Some(loc) = loc.filter(|_| entry.flags == gt::GTF_ACCEPT_TRANSFER && entry.domid == d)
    else {
        free_stolen(st, env, mfn);
        return Ok(gt::GNTST_GENERAL_ERROR);
    };
    st.frames.update(env.journal(), &mfn, |q| q.owner = e);
    st.domains.update(env.journal(), &e, |x| x.tot_pages += 1);
    let gfn = entry.frame;
    set_m2p(st, env, mfn, gfn);
    st.p2m.insert(env.journal(), (e, gfn), mfn);
    let flags = gt::GTF_ACCEPT_TRANSFER | gt::GTF_TRANSFER_COMMITTED | gt::GTF_TRANSFER_COMPLETED;
    let hdr = u64::from(flags) | (u64::from(entry.domid) << 16);
    if loc.version == 2 {
        env.write_word(loc.hdr + 8, mfn);
        env.write_word(loc.hdr, hdr);
    } else {
        env.write_word(loc.hdr, hdr | (mfn << 32));
    }
    Ok(gt::GNTST_OKAY)
}
