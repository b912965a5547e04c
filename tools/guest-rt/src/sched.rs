//! `sched_op` (`public/sched.h`): yield, block, poll, shutdown.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, SCHED_OP};

pub use dom0_interface::sched::{
    SchedPoll, SCHEDOP_BLOCK, SCHEDOP_POLL, SCHEDOP_REMOTE_SHUTDOWN, SCHEDOP_SHUTDOWN,
    SCHEDOP_SHUTDOWN_CODE, SCHEDOP_WATCHDOG, SCHEDOP_YIELD, SHUTDOWN_CRASH, SHUTDOWN_POWEROFF,
    SHUTDOWN_REBOOT, SHUTDOWN_SOFT_RESET, SHUTDOWN_SUSPEND, SHUTDOWN_WATCHDOG,
};
use dom0_interface::sched::{SchedRemoteShutdown, SchedShutdown};

/// `sched_op(cmd, arg)` on the argument structure `T` of `cmd`.
///
/// # Safety
/// `T` must be the structure `cmd` takes; any guest handle in it must be valid for what Xen
/// reads or writes through it (or be a [`hypercall::BadPtr`]).
unsafe fn op<T>(cmd: u32, arg: &T) -> XenResult {
    // SAFETY: Xen reads `cmd`'s structure at `arg`; the caller vouches for its handles.
    unsafe { hypercall::call(SCHED_OP, [cmd.into(), arg as *const T as u64, 0, 0, 0]) }
}

/// Waits, yielding, until `cond` holds; false after 200,000 yields without it (a vCPU that
/// never comes round).
pub fn wait_for(cond: impl Fn() -> bool) -> bool {
    for _ in 0..200_000 {
        if cond() {
            return true;
        }
        let _ = yield_now();
    }
    cond()
}

/// `SCHEDOP_yield`.
pub fn yield_now() -> XenResult {
    hypercall::call_with_bad_ptr(SCHED_OP, SCHEDOP_YIELD.into(), hypercall::BadPtr::NULL)
}

/// `SCHEDOP_block`: sleeps until an event is pending (clears the vCPU's upcall mask).
pub fn block() -> XenResult {
    hypercall::call_with_bad_ptr(SCHED_OP, SCHEDOP_BLOCK.into(), hypercall::BadPtr::NULL)
}

/// `SCHEDOP_poll` on `ports` with absolute `timeout` ns (0: wait for ever).
pub fn poll(ports: &[u32], timeout: u64) -> XenResult {
    let arg = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: u32::try_from(ports.len()).map_err(|_| Errno::EINVAL)?,
        timeout,
    };
    // SAFETY: Xen reads `struct sched_poll` at `&arg` and `nr_ports` ports from `ports`.
    unsafe { op(SCHEDOP_POLL, &arg) }
}

/// `SCHEDOP_poll` whose port array is a [`hypercall::BadPtr`] (to provoke `-EFAULT`).
pub fn poll_bad_ports(nr_ports: u32, ports: hypercall::BadPtr, timeout: u64) -> XenResult {
    let arg = SchedPoll {
        ports: ports.addr(),
        nr_ports,
        timeout,
    };
    // SAFETY: Xen reads `struct sched_poll` at `&arg`; the port array is a `BadPtr` that Xen
    // cannot access, so nothing else is read or written.
    unsafe { op(SCHEDOP_POLL, &arg) }
}

/// `SCHEDOP_shutdown` with `reason`. Returns only if Xen refused or the reason does not stop
/// the domain (e.g. a cancelled suspend).
pub fn shutdown(reason: u32) -> XenResult {
    // SAFETY: `struct sched_shutdown` holds no handle.
    unsafe { op(SCHEDOP_SHUTDOWN, &SchedShutdown { reason }) }
}

/// `SCHEDOP_shutdown_code`: records `reason` for a later shutdown without stopping.
pub fn shutdown_code(reason: u32) -> XenResult {
    // SAFETY: `struct sched_shutdown` holds no handle.
    unsafe { op(SCHEDOP_SHUTDOWN_CODE, &SchedShutdown { reason }) }
}

/// `SCHEDOP_remote_shutdown` of domain `domid` with `reason`.
pub fn remote_shutdown(domid: u16, reason: u32) -> XenResult {
    let arg = SchedRemoteShutdown {
        domain_id: domid,
        reason,
    };
    // SAFETY: `struct sched_remote_shutdown` holds no handle.
    unsafe { op(SCHEDOP_REMOTE_SHUTDOWN, &arg) }
}

/// Powers the domain off; if Xen refuses, crashes it; if even that returns, spins yielding.
pub fn poweroff() -> ! {
    stop(SHUTDOWN_POWEROFF)
}

/// Shuts down with `reason`, falling back to `SHUTDOWN_crash` and then to yielding for ever.
pub fn stop(reason: u32) -> ! {
    let _ = shutdown(reason);
    let _ = shutdown(SHUTDOWN_CRASH);
    loop {
        let _ = yield_now();
    }
}
