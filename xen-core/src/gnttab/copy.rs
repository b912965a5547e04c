//! `GNTTABOP_copy` (`gnttab_copy_one`): source and destination each a grant reference of some
//! domain or a frame of the caller's own, checked as Xen checks them (domains, grant pin,
//! frame ownership, writable destination, page bounds); the bytes are copied after commit
//! (`MmEffect::CopyBytes`). The pins `acquire_grant_for_copy` takes last only for the copy
//! itself, so they leave the grant entries as they were.

use super::{check_pin, domain_by_any_id, Gntst, PinReq, PIN_HSTR, PIN_HSTW};
use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{HvError, HvState};
use crate::mm::env::MmEnv;
use crate::mm::PageType;
use dom0_interface::grant_table as gt;
use dom0_interface::xen::DOMID_SELF;

/// One side of a copy, claimed (`struct gnttab_copy_buf`).
struct Buf {
    mfn: u64,
    off: u16,
    len: u16,
}

/// `gnttab_copy_lock_domain`: frames only of DOMID_SELF.
fn lock_domain(st: &HvState, ld: DomId, domid: DomId, is_gref: bool) -> Result<DomId, Gntst> {
    if domid != DOMID_SELF && !is_gref {
        return Err(gt::GNTST_PERMISSION_DENIED);
    }
    domain_by_any_id(st, ld, domid).ok_or(gt::GNTST_BAD_DOMAIN)
}

/// `gnttab_copy_claim_buf`.
fn claim(
    st: &HvState,
    env: &mut dyn MmEnv,
    ld: DomId,
    d: DomId,
    ptr: &gt::GnttabCopyPtr,
    is_gref: bool,
    readonly: bool,
) -> Result<Result<Buf, Gntst>, HvError> {
    let buf = if is_gref {
        let gref = ptr.gref();
        let nr = st.gnttab.get(&d).map_or_else(
            || super::GrantTable::new().nr_entries(),
            super::GrantTable::nr_entries,
        );
        if gref >= nr {
            return Ok(Err(gt::GNTST_BAD_GNTREF));
        }
        let req = PinReq {
            rd: d,
            gref,
            ld,
            readonly,
            mapflag: false,
            add: if readonly { PIN_HSTR } else { PIN_HSTW },
        };
        match check_pin(st, env, req)? {
            Ok(p) => {
                let owned = st
                    .frames
                    .get(&p.act.mfn)
                    .is_some_and(|f| f.owner == d && f.count > 0);
                if !owned {
                    return Ok(Err(gt::GNTST_BAD_DOMAIN));
                }
                Buf {
                    mfn: p.act.mfn,
                    off: p.act.start,
                    len: p.act.length,
                }
            }
            Err(s) => return Ok(Err(s)),
        }
    } else {
        let owned = st
            .frames
            .get(&ptr.u)
            .is_some_and(|f| f.owner == d && f.count > 0);
        if !owned {
            return Ok(Err(gt::GNTST_BAD_PAGE));
        }
        Buf {
            mfn: ptr.u,
            off: 0,
            len: 4096,
        }
    };
    if !readonly {
        let writable = st
            .frames
            .get(&buf.mfn)
            .is_some_and(|p| p.type_count == 0 || p.ty == PageType::Writable);
        if !writable {
            return Ok(Err(gt::GNTST_GENERAL_ERROR));
        }
    }
    Ok(Ok(buf))
}

/// One grant copy by `ld`: the `GNTST_*` status; the copy itself is emitted as an effect.
pub fn copy_one(
    st: &HvState,
    env: &mut dyn MmEnv,
    ld: DomId,
    op: &gt::GnttabCopy,
) -> Result<Gntst, HvError> {
    let src_gref = op.flags & gt::GNTCOPY_SOURCE_GREF != 0;
    let dst_gref = op.flags & gt::GNTCOPY_DEST_GREF != 0;
    let sd = match lock_domain(st, ld, op.source.domid, src_gref) {
        Ok(d) => d,
        Err(s) => return Ok(s),
    };
    let dd = match lock_domain(st, ld, op.dest.domid, dst_gref) {
        Ok(d) => d,
        Err(s) => return Ok(s),
    };
    let src = match claim(st, env, ld, sd, &op.source, src_gref, true)? {
        Ok(b) => b,
        Err(s) => return Ok(s),
    };
    let dst = match claim(st, env, ld, dd, &op.dest, dst_gref, false)? {
        Ok(b) => b,
        Err(s) => return Ok(s),
    };
    let len = u32::from(op.len);
    let (so, dof) = (u32::from(op.source.offset), u32::from(op.dest.offset));
    if so + len > 4096 || dof + len > 4096 {
        return Ok(gt::GNTST_BAD_COPY_ARG);
    }
    let inside =
        |o: u32, b: &Buf| o >= u32::from(b.off) && o + len <= u32::from(b.off) + u32::from(b.len);
    if !inside(so, &src) || !inside(dof, &dst) {
        return Ok(gt::GNTST_GENERAL_ERROR);
    }
    if len > 0 {
        env.emit(Effect::Mm(MmEffect::CopyBytes {
            dst: (dst.mfn << 12) + u64::from(dof),
            src: (src.mfn << 12) + u64::from(so),
            len: op.len,
        }));
    }
    Ok(gt::GNTST_OKAY)
}
