//! DualVisor's lockstep control sysctl (`XEN_SYSCTL_DUALVISOR_LOCKSTEP`, "DVLS") from a
//! privileged guest: status, on, off, inject. On a real Xen the command does not exist and
//! every call answers `-ENOSYS`.
//!
//! The numbers and structures are `dom0_interface::lockstep_ctl`'s, re-exported here; the
//! request travels in `dom0_interface::sysctl::XenSysctl`.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, BadPtr, SYSCTL};
use dom0_interface::sysctl::XenSysctl;

pub use dom0_interface::lockstep_ctl::{
    latency_below_ns, latency_quantile_ns, LockstepKind, LockstepKindCounts, LockstepRequest,
    LockstepStatus, XenSysctlLockstep, LOCKSTEP_CMD_INJECT, LOCKSTEP_CMD_OFF, LOCKSTEP_CMD_ON,
    LOCKSTEP_CMD_STATUS, LOCKSTEP_CORE_FOLLOWER, LOCKSTEP_CORE_LEADER, LOCKSTEP_CTL_VERSION,
    LOCKSTEP_LATENCY_BOUNDS_NS, LOCKSTEP_LATENCY_BUCKETS, LOCKSTEP_MODE_OFF, LOCKSTEP_MODE_ON,
    LOCKSTEP_MODE_UNPROTECTED, LOCKSTEP_ROLE_COORDINATOR, LOCKSTEP_ROLE_FOLLOWER,
    LOCKSTEP_ROLE_LEADER, LOCKSTEP_ROLE_RETIRED, LOCKSTEP_ROLE_SPARE,
    XEN_SYSCTL_DUALVISOR_LOCKSTEP,
};
pub use dom0_interface::sysctl::XEN_SYSCTL_INTERFACE_VERSION;

fn sysctl(req: &XenSysctlLockstep) -> Result<(i64, XenSysctlLockstep), Errno> {
    let mut s = XenSysctl::new(XEN_SYSCTL_DUALVISOR_LOCKSTEP);
    // The request (32 bytes) fits the 128-byte union; the pinned sizes say so.
    s.set_payload(req).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `s` is an exclusive, 8-aligned `struct xen_sysctl` that the hypervisor reads and
    // may write back; the callers make sure a status buffer in `req` is either valid for the
    // size given or an address the hypervisor can never write.
    let r = unsafe { hypercall::call(SYSCTL, [&mut s as *mut XenSysctl as u64, 0, 0, 0, 0]) }?;
    let back = s.payload().map_err(|_| Errno::EINVAL)?;
    Ok((r, back))
}

/// Issues `req` as it is (for the error cases). A status request must name a [`BadPtr`]
/// buffer (`Err(EINVAL)` without a hypercall otherwise); use [`status`] to read the status.
pub fn raw(req: &XenSysctlLockstep) -> XenResult {
    if req.cmd == LOCKSTEP_CMD_STATUS && BadPtr::new(req.status).is_none() {
        return Err(Errno::EINVAL);
    }
    sysctl(req).map(|(r, _)| r)
}

/// The engine's status, and the byte count the hypervisor reported writing.
pub fn status() -> Result<(LockstepStatus, u32), Errno> {
    let mut st = LockstepStatus::default();
    let req = LockstepRequest::Status {
        buffer: &mut st as *mut LockstepStatus as u64,
        size: core::mem::size_of::<LockstepStatus>() as u32,
    };
    let (_, back) = sysctl(&req.encode())?;
    Ok((st, back.status_size))
}

/// `xl lockstep on`.
pub fn on() -> XenResult {
    raw(&LockstepRequest::On.encode())
}

/// `xl lockstep off`.
pub fn off() -> XenResult {
    raw(&LockstepRequest::Off.encode())
}

/// `xl lockstep inject KIND COUNT`.
pub fn inject(kind: LockstepKind, count: u32) -> XenResult {
    inject_into(kind, count, 0)
}

/// `xl lockstep inject KIND COUNT pair=PAIR`.
pub fn inject_into(kind: LockstepKind, count: u32, pair: u32) -> XenResult {
    raw(&LockstepRequest::Inject { kind, count, pair }.encode())
}

/// `xl lockstep fail leader|follower pair=PAIR` (`core`: `LOCKSTEP_CORE_*`).
pub fn fail(core: u32, pair: u32) -> XenResult {
    raw(&LockstepRequest::Fail { core, pair }.encode())
}
