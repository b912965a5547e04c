//! `set_timer_op(timeout)`: the calling vCPU's single-shot timer, as Xen 4.17's
//! `do_set_timer_op`: 0 cancels; a negative deadline, or one more than 2^50 ns (about 13 days)
//! ahead, is replaced by now + 100 ms; a deadline already passed fires at once.

use crate::hv::{Ctx, HvResult, HvState};
use crate::sched::{self, with_sched};

/// What Xen does with "huge" timeouts: fire 100 ms from now.
pub const HUGE_TIMEOUT_DELAY_NS: u64 = 100_000_000;

/// The single-shot deadline `do_set_timer_op(timeout)` sets at system time `now`
/// (`None`: cancel).
pub fn deadline_for(timeout: u64, now: u64) -> Option<u64> {
    let t = timeout as i64;
    if t == 0 {
        return None;
    }
    let offset = t.wrapping_sub(now as i64);
    if t < 0 || (offset > 0 && (offset >> 50) as u32 != 0) {
        return Some(now.saturating_add(HUGE_TIMEOUT_DELAY_NS));
    }
    Some(timeout)
}

/// `set_timer_op(timeout)`.
pub fn set_timer_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let key = (ctx.dom(), ctx.req.vcpu);
    let timeout = ctx.req.args[0];
    with_sched(state, ctx, |s| {
        let d = deadline_for(timeout, s.now);
        sched::set_singleshot(s, key, d);
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_as_xen() {
        let now = 5_000_000_000u64;
        assert_eq!(deadline_for(0, now), None);
        assert_eq!(deadline_for(now + 1_000_000, now), Some(now + 1_000_000));
        assert_eq!(
            deadline_for(now / 2, now),
            Some(now / 2),
            "past: kept, fires"
        );
        assert_eq!(deadline_for(1, now), Some(1));
        assert_eq!(
            deadline_for(now + (1 << 51), now),
            Some(now + HUGE_TIMEOUT_DELAY_NS)
        );
        assert_eq!(
            deadline_for(now + (1 << 50) - 1, now),
            Some(now + (1 << 50) - 1),
            "just under 2^50 ahead is kept"
        );
        assert_eq!(
            deadline_for(u64::MAX, now),
            Some(now + HUGE_TIMEOUT_DELAY_NS)
        );
        assert_eq!(
            deadline_for(1 << 63, now),
            Some(now + HUGE_TIMEOUT_DELAY_NS),
            "negative as s_time_t"
        );
    }
}
