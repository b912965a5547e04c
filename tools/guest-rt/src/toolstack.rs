//! The hypercalls a toolstack in dom0 makes on other domains (libxc's job): `domctl` and
//! `sysctl` (`public/domctl.h`, `public/sysctl.h`), memory reservations and page-table pins
//! on behalf of a domain being built, and `XEN_DOMCTL_setvcpucontext`.
//!
//! Commands whose payload holds a guest handle get a wrapper of their own that supplies the
//! buffer; [`domctl`] and [`sysctl`] accept only commands without one.

use dom0_interface::domctl::{self as dc, XenDomctl, XenDomctlVcpucontext};
use dom0_interface::sysctl::{self as sc, XenSysctl, XenSysctlPhysinfo};

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, DOMCTL, MEMORY_OP, SYSCTL};
use crate::mm::{MmuextOp, XENMEM_DECREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP};

/// Bytes of a 64-bit `vcpu_guest_context`.
pub const VCPU_GUEST_CONTEXT_SIZE: usize = 5168;

/// Whether domctl `cmd`'s payload carries no guest handle (so Xen touches only the
/// `xen_domctl` itself).
pub const fn domctl_without_handles(cmd: u32) -> bool {
    matches!(
        cmd,
        dc::XEN_DOMCTL_CREATEDOMAIN
            | dc::XEN_DOMCTL_DESTROYDOMAIN
            | dc::XEN_DOMCTL_PAUSEDOMAIN
            | dc::XEN_DOMCTL_UNPAUSEDOMAIN
            | dc::XEN_DOMCTL_GETDOMAININFO
            | dc::XEN_DOMCTL_MAX_MEM
            | dc::XEN_DOMCTL_MAX_VCPUS
            | dc::XEN_DOMCTL_GETVCPUINFO
            | dc::XEN_DOMCTL_SETDOMAINHANDLE
            | dc::XEN_DOMCTL_SETTIMEOFFSET
            | dc::XEN_DOMCTL_HYPERCALL_INIT
            | dc::XEN_DOMCTL_SET_ADDRESS_SIZE
            | dc::XEN_DOMCTL_GET_ADDRESS_SIZE
    )
}

/// Whether sysctl `cmd`'s payload carries no guest handle.
pub const fn sysctl_without_handles(cmd: u32) -> bool {
    matches!(cmd, sc::XEN_SYSCTL_PHYSINFO | sc::XEN_SYSCTL_SCHED_ID)
}

/// `HYPERVISOR_domctl(d)` for a command without guest handles (else `-EINVAL` without a
/// call); Xen updates `d` in place (e.g. createdomain's new domain id, getdomaininfo).
pub fn domctl(d: &mut XenDomctl) -> XenResult {
    if !domctl_without_handles(d.cmd) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the command's payload holds no pointer, so Xen reads and writes only `*d`.
    unsafe { hypercall::call(DOMCTL, [d as *mut XenDomctl as u64, 0, 0, 0, 0]) }
}

/// `HYPERVISOR_sysctl(s)` for a command without guest handles (else `-EINVAL`).
pub fn sysctl(s: &mut XenSysctl) -> XenResult {
    if !sysctl_without_handles(s.cmd) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: as for `domctl`: Xen reads and writes only `*s`.
    unsafe { hypercall::call(SYSCTL, [s as *mut XenSysctl as u64, 0, 0, 0, 0]) }
}

/// `XEN_SYSCTL_physinfo`.
pub fn physinfo() -> Result<XenSysctlPhysinfo, Errno> {
    let mut s = XenSysctl::new(sc::XEN_SYSCTL_PHYSINFO);
    sysctl(&mut s)?;
    s.payload().map_err(|_| Errno::EINVAL)
}

/// `XEN_DOMCTL_setvcpucontext` of `vcpu` in `domid` from a 64-bit `vcpu_guest_context`.
pub fn setvcpucontext(domid: u16, vcpu: u32, ctx: &[u8; VCPU_GUEST_CONTEXT_SIZE]) -> XenResult {
    let mut d = XenDomctl::new(dc::XEN_DOMCTL_SETVCPUCONTEXT, domid);
    d.set_payload(&XenDomctlVcpucontext {
        vcpu,
        ctxt: ctx.as_ptr() as u64,
    })
    .map_err(|_| Errno::EINVAL)?;
    // SAFETY: Xen reads `*d` and the 5168-byte context `ctx` points to; the context
    // configures another domain's vCPU, which cannot affect this one.
    unsafe { hypercall::call(DOMCTL, [&mut d as *mut XenDomctl as u64, 0, 0, 0, 0]) }
}

/// `struct xen_memory_reservation`.
#[repr(C)]
struct Reservation {
    extent_start: u64,
    nr_extents: u64,
    extent_order: u32,
    mem_flags: u32,
    domid: u16,
}

fn reservation_for(cmd: u64, domid: u16, extents: &mut [u64]) -> XenResult {
    let r = Reservation {
        extent_start: extents.as_mut_ptr() as u64,
        nr_extents: extents.len() as u64,
        extent_order: 0,
        mem_flags: 0,
        domid,
    };
    // SAFETY: Xen reads `r` and reads/writes `extents` (an exclusive slice of that many
    // entries). The frames belong to `domid`, not to this domain, so no mapping of ours
    // changes.
    unsafe { hypercall::call(MEMORY_OP, [cmd, &r as *const Reservation as u64, 0, 0, 0]) }
}

/// `XENMEM_populate_physmap` of 4 KiB pages for another domain: `extents` holds the pfns
/// in and (a PV domain) the machine frames out; returns how many were populated.
pub fn populate_physmap(domid: u16, extents: &mut [u64]) -> XenResult {
    if domid == crate::mm::DOMID_SELF {
        return Err(Errno::EINVAL);
    }
    reservation_for(XENMEM_POPULATE_PHYSMAP, domid, extents)
}

/// `XENMEM_decrease_reservation` of another domain's frames (a PV domain names them by
/// machine frame); returns how many were released.
pub fn decrease_reservation(domid: u16, frames: &[u64]) -> XenResult {
    if domid == crate::mm::DOMID_SELF {
        return Err(Errno::EINVAL);
    }
    let mut v = [0u64; 64];
    let mut done = 0i64;
    for chunk in frames.chunks(v.len()) {
        v[..chunk.len()].copy_from_slice(chunk);
        let n = reservation_for(XENMEM_DECREASE_RESERVATION, domid, &mut v[..chunk.len()])?;
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

    #[test]
    fn handle_commands_are_refused_without_a_call() {
        let mut d = XenDomctl::new(dc::XEN_DOMCTL_SETVCPUCONTEXT, 1);
        assert_eq!(domctl(&mut d), Err(Errno::EINVAL));
        let mut s = XenSysctl::new(sc::XEN_SYSCTL_READCONSOLE);
        assert_eq!(sysctl(&mut s), Err(Errno::EINVAL));
        // Allowed commands reach the (absent on the host) hypervisor.
        let mut d = XenDomctl::new(dc::XEN_DOMCTL_GETDOMAININFO, 0);
        assert_eq!(domctl(&mut d), Err(Errno::ENOSYS));
        assert_eq!(pin_for(1, 5, 0), Err(Errno::EINVAL));
        assert_eq!(populate_physmap(0x7FF0, &mut [0]), Err(Errno::EINVAL));
    }
}
