//! Typed toolstack calls for dom0 over [`crate::xenctl`]'s raw `xen_domctl`/`xen_sysctl`
//! buffers: the operations whose arguments carry guest handles take Rust buffers, so Xen only
//! writes memory the caller handed over for that purpose. Results are returned as the raw
//! little-endian structure bytes; dom0 decodes them with `dom0-interface` (this crate stays
//! free of `alloc`).

use crate::errno::{Errno, XenResult};
use crate::xenctl::{self, CtlBuf, SYSCTL_U};

/// `XEN_SYSCTL_readconsole`.
pub const XEN_SYSCTL_READCONSOLE: u32 = 1;
/// `XEN_SYSCTL_physinfo`.
pub const XEN_SYSCTL_PHYSINFO: u32 = 3;
/// `XEN_SYSCTL_sched_id`.
pub const XEN_SYSCTL_SCHED_ID: u32 = 4;
/// `XEN_SYSCTL_getdomaininfolist`.
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;
/// Size of `struct xen_domctl_getdomaininfo` in Xen 4.17 (x86-64).
pub const GETDOMAININFO_SIZE: usize = 112;
/// Size of `struct xen_sysctl_physinfo` in Xen 4.17 (x86-64).
pub const PHYSINFO_SIZE: usize = 112;
/// DualVisor's lockstep sysctl (`dom0-interface/src/lockstep_ctl.rs`).
pub const XEN_SYSCTL_DUALVISOR_LOCKSTEP: u32 = 0x4456_4C53;
/// Its layout version.
pub const LOCKSTEP_CTL_VERSION: u32 = 1;
/// Its `status` sub-command (the only one with a guest handle).
pub const LOCKSTEP_CMD_STATUS: u32 = 0;

/// `XEN_SYSCTL_physinfo`: the `xen_sysctl_physinfo` bytes.
pub fn physinfo() -> Result<[u8; PHYSINFO_SIZE], Errno> {
    let mut op = CtlBuf::sysctl(XEN_SYSCTL_PHYSINFO);
    xenctl::sysctl(&mut op)?;
    Ok(op.bytes::<PHYSINFO_SIZE>(SYSCTL_U))
}

/// `XEN_SYSCTL_sched_id`: the scheduler's `XEN_SCHEDULER_*` number.
pub fn sched_id() -> Result<u32, Errno> {
    let mut op = CtlBuf::sysctl(XEN_SYSCTL_SCHED_ID);
    xenctl::sysctl(&mut op)?;
    Ok(op.u32(SYSCTL_U))
}

/// `XEN_SYSCTL_getdomaininfolist` from domain `first` into `out`, an array of
/// `xen_domctl_getdomaininfo` ([`GETDOMAININFO_SIZE`] bytes each; a partial entry at the end
/// is not used). Returns the entries written.
pub fn getdomaininfolist(first: u16, out: &mut [u8]) -> Result<usize, Errno> {
    let max = out.len() / GETDOMAININFO_SIZE;
    let mut op = CtlBuf::sysctl(XEN_SYSCTL_GETDOMAININFOLIST);
    op.set_u16(SYSCTL_U, first);
    op.set_u32(SYSCTL_U + 4, u32::try_from(max).unwrap_or(u32::MAX));
    op.set_u64(SYSCTL_U + 8, out.as_mut_ptr() as u64);
    // Xen writes at most `max` entries of GETDOMAININFO_SIZE bytes to the buffer named above.
    xenctl::sysctl(&mut op)?;
    Ok((op.u32(SYSCTL_U + 16) as usize).min(max))
}

/// `XEN_SYSCTL_readconsole` into `buf`: `clear` empties the ring afterwards, `incremental`
/// starts at `index`. Returns (bytes written, the new index).
pub fn readconsole(
    buf: &mut [u8],
    clear: bool,
    incremental: bool,
    index: u32,
) -> Result<(usize, u32), Errno> {
    let mut op = CtlBuf::sysctl(XEN_SYSCTL_READCONSOLE);
    op.set_bytes(SYSCTL_U, &[u8::from(clear), u8::from(incremental)]);
    op.set_u32(SYSCTL_U + 4, index);
    op.set_u64(SYSCTL_U + 8, buf.as_mut_ptr() as u64);
    op.set_u32(SYSCTL_U + 16, u32::try_from(buf.len()).unwrap_or(u32::MAX));
    xenctl::sysctl(&mut op)?;
    Ok((
        (op.u32(SYSCTL_U + 16) as usize).min(buf.len()),
        op.u32(SYSCTL_U + 4),
    ))
}

/// DualVisor's lockstep sysctl: sub-command `cmd` with `kind` and `count`; `status` receives
/// the status structure for [`LOCKSTEP_CMD_STATUS`] (its length is passed as the buffer size,
/// which the hypervisor never exceeds) and is not named otherwise.
pub fn lockstep(cmd: u32, kind: u32, count: u32, status: &mut [u8]) -> XenResult {
    let mut op = CtlBuf::sysctl(XEN_SYSCTL_DUALVISOR_LOCKSTEP);
    op.set_u32(SYSCTL_U, LOCKSTEP_CTL_VERSION);
    op.set_u32(SYSCTL_U + 4, cmd);
    op.set_u32(SYSCTL_U + 8, kind);
    op.set_u32(SYSCTL_U + 12, count);
    if cmd == LOCKSTEP_CMD_STATUS {
        op.set_u64(SYSCTL_U + 16, status.as_mut_ptr() as u64);
        op.set_u32(
            SYSCTL_U + 24,
            u32::try_from(status.len()).unwrap_or(u32::MAX),
        );
    }
    xenctl::sysctl(&mut op)
}
