//! `GNTTABOP_swap_grant_ref` (`swap_grant_ref`): exchanges two unpinned entries of the
//! caller's own table, in-use bits included.

use super::{entry_loc, Gntst, GrantTable};
use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{HvError, HvState};
use crate::mm::env::MmEnv;
use dom0_interface::grant_table as gt;

/// One swap of entries `a` and `b` of `ld`'s table.
pub fn swap(
    st: &mut HvState,
    env: &mut dyn MmEnv,
    ld: DomId,
    a: u32,
    b: u32,
) -> Result<Gntst, HvError> {
    let t = st.gnttab.get(&ld).cloned().unwrap_or_else(GrantTable::new);
    let nr = t.nr_entries();
    if a >= nr || b >= nr {
        return Ok(gt::GNTST_BAD_GNTREF);
    }
    if a == b {
        return Ok(gt::GNTST_OKAY);
    }
    let pinned = |g: u32| st.gnttab_active.get(&(ld, g)).is_some_and(|x| x.pin != 0);
    if pinned(a) || pinned(b) {
        return Ok(gt::GNTST_EAGAIN);
    }
    let (Some(la), Some(lb)) = (entry_loc(&t, a), entry_loc(&t, b)) else {
        // A table without frames: both entries are invalid, nothing changes.
        return Ok(gt::GNTST_OKAY);
    };
    let words = if t.version == 2 { 2 } else { 1 };
    for k in 0..words {
        let (pa, pb) = (la.hdr + k * 8, lb.hdr + k * 8);
        let (wa, wb) = (env.read_word(pa)?, env.read_word(pb)?);
        env.write_word(pa, wb);
        env.write_word(pb, wa);
    }
    if t.version == 2 {
        let sa = (env.read_word(la.status_word)? >> la.status_shift) as u16;
        let sb = (env.read_word(lb.status_word)? >> lb.status_shift) as u16;
        for (loc, old, new) in [(la, sa, sb), (lb, sb, sa)] {
            let set = u64::from(new & !old) << loc.status_shift;
            let clear = u64::from(old & !new) << loc.status_shift;
            if set | clear != 0 {
                env.emit(Effect::Mm(MmEffect::AtomicBits {
                    maddr: loc.status_word,
                    set,
                    clear,
                }));
            }
        }
    }
    Ok(gt::GNTST_OKAY)
}
