//! The toolstack's hypercalls (dom0 only): `domctl` and `sysctl` with Xen's structures from
//! `dom0-interface`. Operations whose arguments carry guest pointers take typed Rust buffers,
//! so Xen only ever writes memory the caller handed over for that purpose.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, DOMCTL, SYSCTL};
use dom0_interface::domctl::{
    XenDomctl, XenDomctlGetdomaininfo, XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN,
    XEN_DOMCTL_GETDOMAININFO, XEN_DOMCTL_GETVCPUINFO, XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_MAX_VCPUS,
    XEN_DOMCTL_PAUSEDOMAIN, XEN_DOMCTL_UNPAUSEDOMAIN,
};
use dom0_interface::lockstep_ctl::{
    LockstepRequest, LockstepStatus, XEN_SYSCTL_DUALVISOR_LOCKSTEP,
};
use dom0_interface::sysctl::{
    XenSysctl, XenSysctlGetdomaininfolist, XenSysctlPhysinfo, XenSysctlReadconsole,
    XEN_SYSCTL_GETDOMAININFOLIST, XEN_SYSCTL_PHYSINFO, XEN_SYSCTL_READCONSOLE, XEN_SYSCTL_SCHED_ID,
};

/// domctl commands whose arguments hold no guest pointer ([`domctl`] accepts only these).
pub const POINTER_FREE_DOMCTLS: [u32; 8] = [
    XEN_DOMCTL_CREATEDOMAIN,
    XEN_DOMCTL_DESTROYDOMAIN,
    XEN_DOMCTL_PAUSEDOMAIN,
    XEN_DOMCTL_UNPAUSEDOMAIN,
    XEN_DOMCTL_GETDOMAININFO,
    XEN_DOMCTL_MAX_MEM,
    XEN_DOMCTL_MAX_VCPUS,
    XEN_DOMCTL_GETVCPUINFO,
];

/// `HYPERVISOR_domctl(op)` for a command in [`POINTER_FREE_DOMCTLS`] (others: -EINVAL without a
/// call). Xen writes its results back into `op`.
pub fn domctl(op: &mut XenDomctl) -> XenResult {
    if !POINTER_FREE_DOMCTLS.contains(&op.cmd) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `op` is a valid, exclusive `xen_domctl`; for these commands Xen reads and writes
    // only the structure itself.
    unsafe { hypercall::call(DOMCTL, [op as *mut XenDomctl as u64, 0, 0, 0, 0]) }
}

fn sysctl(op: &mut XenSysctl) -> XenResult {
    // SAFETY: callers below build `op` so that every guest handle in it refers to a live,
    // exclusive buffer of the size the structure announces; Xen writes nothing else.
    unsafe { hypercall::call(SYSCTL, [op as *mut XenSysctl as u64, 0, 0, 0, 0]) }
}

fn encode<T: dom0_interface::guest_abi::GuestAbi>(cmd: u32, payload: &T) -> XenSysctl {
    let mut op = XenSysctl::new(cmd);
    // The payloads used here are all smaller than the union (pinned by dom0-interface).
    let _ = op.set_payload(payload);
    op
}

/// `XEN_SYSCTL_physinfo`.
pub fn physinfo() -> Result<XenSysctlPhysinfo, Errno> {
    let mut op = encode(XEN_SYSCTL_PHYSINFO, &XenSysctlPhysinfo::default());
    sysctl(&mut op)?;
    op.payload().map_err(|_| Errno::EINVAL)
}

/// `XEN_SYSCTL_sched_id`: the scheduler's `XEN_SCHEDULER_*` number.
pub fn sched_id() -> Result<u32, Errno> {
    let mut op = XenSysctl::new(XEN_SYSCTL_SCHED_ID);
    sysctl(&mut op)?;
    Ok(u32::from_le_bytes([op.u[0], op.u[1], op.u[2], op.u[3]]))
}

/// `XEN_SYSCTL_getdomaininfolist` from `first` into `out`; returns the entries written.
pub fn getdomaininfolist(first: u16, out: &mut [XenDomctlGetdomaininfo]) -> Result<usize, Errno> {
    let arg = XenSysctlGetdomaininfolist {
        first_domain: first,
        max_domains: u32::try_from(out.len()).unwrap_or(u32::MAX),
        buffer: out.as_mut_ptr() as u64,
        num_domains: 0,
    };
    let mut op = encode(XEN_SYSCTL_GETDOMAININFOLIST, &arg);
    sysctl(&mut op)?;
    let back: XenSysctlGetdomaininfolist = op.payload().map_err(|_| Errno::EINVAL)?;
    Ok((back.num_domains as usize).min(out.len()))
}

/// `XEN_SYSCTL_readconsole` into `buf`: `clear` empties the ring afterwards, `incremental`
/// starts at `index`. Returns (bytes written, the new index).
pub fn readconsole(
    buf: &mut [u8],
    clear: bool,
    incremental: bool,
    index: u32,
) -> Result<(usize, u32), Errno> {
    let arg = XenSysctlReadconsole {
        clear: u8::from(clear),
        incremental: u8::from(incremental),
        pad0: 0,
        pad1: 0,
        index,
        buffer: buf.as_mut_ptr() as u64,
        count: u32::try_from(buf.len()).unwrap_or(u32::MAX),
    };
    let mut op = encode(XEN_SYSCTL_READCONSOLE, &arg);
    sysctl(&mut op)?;
    let back: XenSysctlReadconsole = op.payload().map_err(|_| Errno::EINVAL)?;
    Ok(((back.count as usize).min(buf.len()), back.index))
}

/// DualVisor's lockstep sysctl. `Status` requests are answered into `status` (the request's own
/// buffer fields are replaced by it); other requests ignore `status`.
pub fn lockstep(req: LockstepRequest, status: &mut LockstepStatus) -> XenResult {
    let req = match req {
        LockstepRequest::Status { .. } => LockstepRequest::Status {
            buffer: status as *mut LockstepStatus as u64,
            size: core::mem::size_of::<LockstepStatus>() as u32,
        },
        other => other,
    };
    let mut op = encode(XEN_SYSCTL_DUALVISOR_LOCKSTEP, &req.encode());
    sysctl(&mut op)
}
