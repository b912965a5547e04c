//! `sched_op` (`public/sched.h`): yield, block, poll, shutdown.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, SCHED_OP};

/// `SCHEDOP_yield`.
pub const SCHEDOP_YIELD: u64 = 0;
/// `SCHEDOP_block`.
pub const SCHEDOP_BLOCK: u64 = 1;
/// `SCHEDOP_shutdown`: `struct sched_shutdown`.
pub const SCHEDOP_SHUTDOWN: u64 = 2;
/// `SCHEDOP_poll`: `struct sched_poll`.
pub const SCHEDOP_POLL: u64 = 3;
/// `SCHEDOP_remote_shutdown`: `struct sched_remote_shutdown`.
pub const SCHEDOP_REMOTE_SHUTDOWN: u64 = 4;
/// `SCHEDOP_shutdown_code`: `struct sched_shutdown`.
pub const SCHEDOP_SHUTDOWN_CODE: u64 = 5;
/// `SCHEDOP_watchdog`.
pub const SCHEDOP_WATCHDOG: u64 = 6;

/// `SHUTDOWN_poweroff`.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_reboot`.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// `SHUTDOWN_suspend`.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash`.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `SHUTDOWN_watchdog`.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// `SHUTDOWN_soft_reset`.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;

/// `struct sched_poll`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SchedPoll {
    /// Guest handle to an array of `evtchn_port_t`.
    pub ports: u64,
    /// Number of ports.
    pub nr_ports: u32,
    /// Absolute system-time timeout in ns (0: none).
    pub timeout: u64,
}
const _: () = assert!(core::mem::size_of::<SchedPoll>() == 24);

/// `SCHEDOP_yield`.
pub fn yield_now() -> XenResult {
    hypercall::call_with_bad_ptr(SCHED_OP, SCHEDOP_YIELD, hypercall::BadPtr::NULL)
}

/// `SCHEDOP_block`: sleeps until an event is pending (clears the vCPU's upcall mask).
pub fn block() -> XenResult {
    hypercall::call_with_bad_ptr(SCHED_OP, SCHEDOP_BLOCK, hypercall::BadPtr::NULL)
}

/// `SCHEDOP_poll` on `ports` with absolute `timeout` ns (0: wait for ever).
pub fn poll(ports: &[u32], timeout: u64) -> XenResult {
    let arg = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: u32::try_from(ports.len()).map_err(|_| Errno::EINVAL)?,
        timeout,
    };
    // SAFETY: Xen reads `struct sched_poll` at `&arg` and `nr_ports` ports from `ports`.
    unsafe {
        hypercall::call(
            SCHED_OP,
            [SCHEDOP_POLL, &arg as *const SchedPoll as u64, 0, 0, 0],
        )
    }
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
    unsafe {
        hypercall::call(
            SCHED_OP,
            [SCHEDOP_POLL, &arg as *const SchedPoll as u64, 0, 0, 0],
        )
    }
}

/// `SCHEDOP_shutdown` with `reason`. Returns only if Xen refused or the reason does not stop
/// the domain (e.g. a cancelled suspend).
pub fn shutdown(reason: u32) -> XenResult {
    let arg = reason;
    // SAFETY: Xen reads the 4-byte `struct sched_shutdown` at `&arg`.
    unsafe {
        hypercall::call(
            SCHED_OP,
            [SCHEDOP_SHUTDOWN, &arg as *const u32 as u64, 0, 0, 0],
        )
    }
}

/// `SCHEDOP_shutdown_code`: records `reason` for a later shutdown without stopping.
pub fn shutdown_code(reason: u32) -> XenResult {
    let arg = reason;
    // SAFETY: Xen reads the 4-byte `struct sched_shutdown` at `&arg`.
    unsafe {
        hypercall::call(
            SCHED_OP,
            [SCHEDOP_SHUTDOWN_CODE, &arg as *const u32 as u64, 0, 0, 0],
        )
    }
}

/// `SCHEDOP_remote_shutdown` of domain `domid` with `reason`.
pub fn remote_shutdown(domid: u16, reason: u32) -> XenResult {
    #[repr(C)]
    struct Remote {
        domain_id: u16,
        reason: u32,
    }
    let arg = Remote {
        domain_id: domid,
        reason,
    };
    // SAFETY: Xen reads the 8-byte `struct sched_remote_shutdown` at `&arg`.
    unsafe {
        hypercall::call(
            SCHED_OP,
            [
                SCHEDOP_REMOTE_SHUTDOWN,
                &arg as *const Remote as u64,
                0,
                0,
                0,
            ],
        )
    }
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
