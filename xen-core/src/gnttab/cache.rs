//! `GNTTABOP_cache_flush` (`cache_flush`) as x86 Xen 4.17 answers it: range and op checks,
//! the frame must be RAM with an owner, another domain's frame only while a grant of it is
//! pinned for the caller; clean (or clean and invalidate) writes caches back, invalidate
//! alone is not supported on x86.

use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{HvError, HvState};
use crate::mm::env::MmEnv;
use dom0_interface::errno::XenErrno;
use dom0_interface::grant_table as gt;

/// One cache flush by `ld`; `cur_ref` is the continuation argument the call carried.
pub fn cache_flush_one(
    st: &HvState,
    env: &mut dyn MmEnv,
    ld: DomId,
    op: &gt::GnttabCacheFlush,
    cur_ref: u32,
) -> Result<(), HvError> {
    let (off, len) = (u32::from(op.offset), u32::from(op.length));
    let known = gt::GNTTAB_CACHE_INVAL | gt::GNTTAB_CACHE_CLEAN;
    if off >= 4096 || len > 4096 || off + len > 4096 || op.op & !known != 0 {
        return Err(XenErrno::EINVAL.into());
    }
    if len == 0 || op.op == 0 {
        return if cur_ref == 0 {
            Ok(())
        } else {
            Err(XenErrno::EILSEQ.into())
        };
    }
    let mfn = op.a >> 12;
    if !st.mm_config.get().is_ram(mfn) && !st.frames.contains_key(&mfn) {
        return Err(XenErrno::EINVAL.into());
    }
    let Some(owner) = st.frames.get(&mfn).filter(|p| p.count > 0).map(|p| p.owner) else {
        return Err(XenErrno::EPERM.into());
    };
    if owner != ld {
        let granted = st
            .gnttab_active
            .iter()
            .any(|((d, _), a)| *d == owner && a.pin != 0 && a.domid == ld && a.mfn == mfn);
        if !granted {
            return Err(XenErrno::EINVAL.into());
        }
    }
    if op.op & gt::GNTTAB_CACHE_CLEAN == 0 {
        return Err(XenErrno::EOPNOTSUPP.into());
    }
    env.emit(Effect::Mm(MmEffect::FlushCache));
    Ok(())
}
