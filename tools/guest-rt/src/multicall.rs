//! `multicall` (`public/xen.h`): several hypercalls in one trap.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, MULTICALL, SCHED_OP, SET_TIMER_OP, XEN_VERSION};

pub use dom0_interface::xen::MulticallEntry;

/// What a guest does with a `multicall_entry` (`MulticallEntry` is `dom0_interface`'s).
pub trait MulticallEntryExt: Sized {
    /// An entry for `op` with `args`.
    fn new(op: u32, args: [u64; 6]) -> Self;

    /// The entry's result as a [`XenResult`].
    fn outcome(&self) -> XenResult;

    /// Whether the entry is one of the memory-neutral calls [`multicall_scalar`] accepts:
    /// `xen_version(XENVER_version|XENVER_pagesize, NULL)`, `sched_op(SCHEDOP_yield, NULL)`,
    /// `set_timer_op(t)`, or any hypercall number whose arguments are all zero except a
    /// leading command word (null pointers).
    fn is_scalar(&self) -> bool;
}

impl MulticallEntryExt for MulticallEntry {
    fn new(op: u32, args: [u64; 6]) -> Self {
        MulticallEntry {
            op: u64::from(op),
            result: 0,
            args,
        }
    }

    fn outcome(&self) -> XenResult {
        crate::errno::from_raw(self.result as i64)
    }

    fn is_scalar(&self) -> bool {
        let rest_zero = self.args[1..].iter().all(|&a| a == 0);
        match u32::try_from(self.op) {
            Ok(XEN_VERSION) => rest_zero && matches!(self.args[0], 0 | 7),
            Ok(SCHED_OP) => rest_zero && self.args[0] == 0,
            Ok(SET_TIMER_OP) => rest_zero,
            _ => false,
        }
    }
}

/// `multicall(entries, n)`.
///
/// # Safety
/// Every entry is a hypercall in its own right: the caller upholds
/// [`hypercall::raw5`]'s contract for each.
pub unsafe fn multicall(entries: &mut [MulticallEntry]) -> XenResult {
    // SAFETY: Xen reads and writes back `entries.len()` entries in `entries`; the caller
    // vouches for the calls inside.
    unsafe {
        hypercall::call(
            MULTICALL,
            [entries.as_mut_ptr() as u64, entries.len() as u64, 0, 0, 0],
        )
    }
}

/// `multicall` restricted to entries for which [`MulticallEntryExt::is_scalar`] holds; otherwise
/// `Err(-EINVAL)` without calling Xen.
pub fn multicall_scalar(entries: &mut [MulticallEntry]) -> XenResult {
    if !entries.iter().all(MulticallEntry::is_scalar) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: every entry is memory-neutral (checked above).
    unsafe { multicall(entries) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_memory_neutral_entries_pass() {
        let ok = MulticallEntry::new(XEN_VERSION, [0; 6]);
        assert!(ok.is_scalar());
        assert!(MulticallEntry::new(XEN_VERSION, [7, 0, 0, 0, 0, 0]).is_scalar());
        assert!(!MulticallEntry::new(XEN_VERSION, [1, 0x1000, 0, 0, 0, 0]).is_scalar());
        assert!(MulticallEntry::new(SCHED_OP, [0; 6]).is_scalar());
        assert!(!MulticallEntry::new(SCHED_OP, [2, 0, 0, 0, 0, 0]).is_scalar());
        assert!(!MulticallEntry::new(hypercall::MMUEXT_OP, [0; 6]).is_scalar());
        let mut bad = [ok, MulticallEntry::new(hypercall::MMU_UPDATE, [0; 6])];
        assert_eq!(multicall_scalar(&mut bad), Err(Errno::EINVAL));
    }

    #[test]
    fn outcome_decodes_result() {
        let mut e = MulticallEntry::new(XEN_VERSION, [0; 6]);
        e.result = (-38i64) as u64;
        assert_eq!(e.outcome(), Err(Errno::ENOSYS));
        e.result = 0x4_0011;
        assert_eq!(e.outcome(), Ok(0x4_0011));
    }
}
