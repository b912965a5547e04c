//! What the guests that act on named lockstep pairs (`lockpairs`, `lockleader`) share: the
//! lockstep status and its roles, and vCPU 1's hypercall loop that shows it keeps running
//! (and getting right answers) while pairs escalate around it.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use guest_rt::lockstep_ctl::{self as ls, LockstepKind, LockstepStatus};
use guest_rt::version;

/// vCPU 1 makes hypercalls while this is set.
pub static GO1: AtomicBool = AtomicBool::new(true);
/// Hypercalls vCPU 1 made with the right answer.
pub static WORK1: AtomicU64 = AtomicU64::new(0);
/// Hypercalls vCPU 1 got a wrong answer from.
pub static WRONG1: AtomicU64 = AtomicU64::new(0);

/// vCPU 1: `xen_version` in a loop (each one a transaction of the leader it runs on),
/// counted in [`WORK1`] or [`WRONG1`] while [`GO1`] is set.
pub fn vcpu1(_vcpu: u32) -> ! {
    let want = version::version();
    loop {
        if GO1.load(Ordering::SeqCst) {
            if version::version() == want {
                WORK1.fetch_add(1, Ordering::SeqCst);
            } else {
                WRONG1.fetch_add(1, Ordering::SeqCst);
            }
        } else {
            core::hint::spin_loop();
        }
    }
}

/// The lockstep status, if the sysctl answers.
pub fn status() -> Option<LockstepStatus> {
    ls::status().ok().map(|(s, _)| s)
}

/// The CPUs with role bit `bit`, in CPU order.
pub fn cpus_with(st: &LockstepStatus, bit: u8) -> impl Iterator<Item = usize> + '_ {
    (0..st.nr_cpus as usize).filter(move |&c| st.role(c).is_some_and(|r| r & bit != 0))
}

/// The `effects` injection counters of `st`.
pub fn effects(st: &LockstepStatus) -> ls::LockstepKindCounts {
    *st.kind(LockstepKind::Effects)
}
