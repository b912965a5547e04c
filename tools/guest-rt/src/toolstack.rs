//! The typed hypercalls a toolstack in dom0 makes (libxc's job), over [`crate::xenctl`]'s raw
//! `xen_domctl`/`xen_sysctl` buffers: the sysctls xl asks (physinfo, sched_id,
//! getdomaininfolist, readconsole, DualVisor's lockstep control), and what a domain builder
//! does to another domain (reservations, page-table pins, `XEN_DOMCTL_setvcpucontext`).
//!
//! Operations whose arguments carry guest handles take Rust buffers, so Xen only writes memory
//! the caller handed over for that purpose; [`domctl_no_handles`] and [`sysctl_no_handles`]
//! pass on only commands without one. Results are returned as raw little-endian structure
//! bytes; callers decode them with `dom0-interface`'s `GuestAbi` (nothing here allocates, so
//! guests without a heap can use it).

use crate::errno::{Errno, XenResult};
use crate::mm::{MmuextOp, XENMEM_DECREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP};
use crate::xenctl::{self, CtlBuf, SYSCTL_U};

pub use dom0_interface::domctl::XEN_DOMCTL_SETVCPUCONTEXT;
pub use dom0_interface::lockstep_ctl::{
    LOCKSTEP_CMD_STATUS, LOCKSTEP_CTL_VERSION, XEN_SYSCTL_DUALVISOR_LOCKSTEP,
};
pub use dom0_interface::sysctl::{
    XEN_SYSCTL_GETDOMAININFOLIST, XEN_SYSCTL_PHYSINFO, XEN_SYSCTL_READCONSOLE, XEN_SYSCTL_SCHED_ID,
};

/// Bytes of a 64-bit `vcpu_guest_context`.
pub const VCPU_GUEST_CONTEXT_SIZE: usize =
    core::mem::size_of::<dom0_interface::arch_x86::VcpuGuestContext>();
/// Size of `struct xen_domctl_getdomaininfo` in Xen 4.17 (x86-64).
pub const GETDOMAININFO_SIZE: usize =
    core::mem::size_of::<dom0_interface::domctl::XenDomctlGetdomaininfo>();
/// Size of `struct xen_sysctl_physinfo` in Xen 4.17 (x86-64).
pub const PHYSINFO_SIZE: usize = core::mem::size_of::<dom0_interface::sysctl::XenSysctlPhysinfo>();

/// Whether domctl `cmd`'s payload carries no guest handle (so Xen touches only the
/// `xen_domctl` itself): createdomain 1, destroy 2, pause 3, unpause 4, getdomaininfo 5,
/// max_mem 11, getvcpuinfo 14, max_vcpus 15, setdomainhandle 17, hypercall_init 22,
/// settimeoffset 24, set/get_address_size 35/36.
pub const fn domctl_without_handles(cmd: u32) -> bool {
    matches!(cmd, 1..=5 | 11 | 14 | 15 | 17 | 22 | 24 | 35 | 36)
}

/// Whether sysctl `cmd`'s payload carries no guest handle: physinfo 3, sched_id 4.
pub const fn sysctl_without_handles(cmd: u32) -> bool {
    matches!(cmd, 3 | 4)
}

/// `HYPERVISOR_domctl` for a command without guest handles (else `-EINVAL` without a
/// call); Xen updates `op` in place (e.g. createdomain's new domain id, getdomaininfo).
pub fn domctl_no_handles(op: &mut CtlBuf) -> XenResult {
    if !domctl_without_handles(op.u32(0)) {
        return Err(Errno::EINVAL);
    }
    xenctl::domctl(op)
}

/// `HYPERVISOR_sysctl` for a command without guest handles (else `-EINVAL` without a call).
pub fn sysctl_no_handles(op: &mut CtlBuf) -> XenResult {
    if !sysctl_without_handles(op.u32(0)) {
        return Err(Errno::EINVAL);
    }
    xenctl::sysctl(op)
}

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

/// DualVisor's lockstep sysctl: sub-command `cmd` with `kind`, `count` and `pair`
/// (`XenSysctlLockstep::pair`: inject and fail, else 0); `status` receives
/// the status structure for [`LOCKSTEP_CMD_STATUS`] (its length is passed as the buffer size,
/// which the hypervisor never exceeds) and is not named otherwise.
pub fn lockstep(cmd: u32, kind: u32, count: u32, pair: u32, status: &mut [u8]) -> XenResult {
    let mut op = CtlBuf::sysctl(XEN_SYSCTL_DUALVISOR_LOCKSTEP);
    op.set_u32(SYSCTL_U, LOCKSTEP_CTL_VERSION);
    op.set_u32(SYSCTL_U + 4, cmd);
    op.set_u32(SYSCTL_U + 8, kind);
    op.set_u32(SYSCTL_U + 12, count);
    op.set_u32(SYSCTL_U + 28, pair);
    if cmd == LOCKSTEP_CMD_STATUS {
        op.set_u64(SYSCTL_U + 16, status.as_mut_ptr() as u64);
        op.set_u32(
            SYSCTL_U + 24,
            u32::try_from(status.len()).unwrap_or(u32::MAX),
        );
    }
    xenctl::sysctl(&mut op)
}

/// `XEN_DOMCTL_setvcpucontext` of `vcpu` in `domid` from a 64-bit `vcpu_guest_context`.
pub fn setvcpucontext(domid: u16, vcpu: u32, ctx: &[u8; VCPU_GUEST_CONTEXT_SIZE]) -> XenResult {
    let mut op = CtlBuf::domctl(XEN_DOMCTL_SETVCPUCONTEXT, domid);
    // struct xen_domctl_vcpucontext at 16: vcpu u32, ctxt handle @8.
    op.set_u32(xenctl::DOMCTL_U, vcpu);
    op.set_u64(xenctl::DOMCTL_U + 8, ctx.as_ptr() as u64);
    // Xen reads the 5168-byte context `ctx` points to; it configures another domain's vCPU,
    // which cannot affect this one.
    xenctl::domctl(&mut op)
}

/// `XENMEM_populate_physmap` of 4 KiB pages for another domain: `extents` holds the pfns
/// in and (a PV domain) the machine frames out; returns how many were populated.
pub fn populate_physmap(domid: u16, extents: &mut [u64]) -> XenResult {
    xenctl::foreign_reservation(XENMEM_POPULATE_PHYSMAP, domid, extents, 0)
}

/// `XENMEM_decrease_reservation` of another domain's frames (a PV domain names them by
/// machine frame); returns how many were released.
pub fn decrease_reservation(domid: u16, frames: &[u64]) -> XenResult {
    let mut v = [0u64; 64];
    let mut done = 0i64;
    for chunk in frames.chunks(v.len()) {
        v[..chunk.len()].copy_from_slice(chunk);
        let n = xenctl::foreign_reservation(
            XENMEM_DECREASE_RESERVATION,
            domid,
            &mut v[..chunk.len()],
            0,
        )?;
        done += n;
        if (n as usize) < chunk.len() {
            break;
        }
    }
    Ok(done)
}

/// `mmuext_op` of one pin/unpin command on `domid`'s frame `mfn` (`MMUEXT_PIN_L1_TABLE` ..
/// `MMUEXT_PIN_L4_TABLE` or `MMUEXT_UNPIN_TABLE`).
pub fn pin_for(domid: u16, cmd: u32, mfn: u64) -> XenResult {
    if cmd > crate::mm::MMUEXT_UNPIN_TABLE || domid == crate::mm::DOMID_SELF {
        return Err(Errno::EINVAL);
    }
    let op = MmuextOp {
        cmd,
        arg1: mfn,
        arg2: 0,
    };
    // SAFETY: pinning or unpinning another domain's frame changes only its type count; no
    // mapping of this domain changes.
    unsafe { crate::mm::mmuext_op(&[op], domid) }.map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom0_interface::domctl as dc;
    use dom0_interface::sysctl as sc;

    #[test]
    fn handle_free_commands() {
        use core::mem::size_of;
        assert!(size_of::<dc::XenDomctl>() <= size_of::<CtlBuf>());
        assert!(size_of::<sc::XenSysctl>() <= size_of::<CtlBuf>());
        for cmd in [
            dc::XEN_DOMCTL_CREATEDOMAIN,
            dc::XEN_DOMCTL_DESTROYDOMAIN,
            dc::XEN_DOMCTL_PAUSEDOMAIN,
            dc::XEN_DOMCTL_UNPAUSEDOMAIN,
            dc::XEN_DOMCTL_GETDOMAININFO,
            dc::XEN_DOMCTL_MAX_MEM,
            dc::XEN_DOMCTL_MAX_VCPUS,
        ] {
            assert!(domctl_without_handles(cmd));
        }
        assert!(sysctl_without_handles(sc::XEN_SYSCTL_PHYSINFO));
        assert!(!sysctl_without_handles(sc::XEN_SYSCTL_READCONSOLE));
    }

    #[test]
    fn handle_commands_are_refused_without_a_call() {
        let mut d = CtlBuf::domctl(dc::XEN_DOMCTL_SETVCPUCONTEXT, 1);
        assert_eq!(domctl_no_handles(&mut d), Err(Errno::EINVAL));
        let mut s = CtlBuf::sysctl(sc::XEN_SYSCTL_READCONSOLE);
        assert_eq!(sysctl_no_handles(&mut s), Err(Errno::EINVAL));
        // Allowed commands reach the (absent on the host) hypervisor.
        let mut d = CtlBuf::domctl(dc::XEN_DOMCTL_GETDOMAININFO, 1);
        assert_eq!(domctl_no_handles(&mut d), Err(Errno::ENOSYS));
        assert_eq!(pin_for(1, 5, 0), Err(Errno::EINVAL));
        assert_eq!(populate_physmap(0x7FF0, &mut [0]), Err(Errno::EINVAL));
    }
}
