//! The hypercalls a toolstack in dom0 makes on other domains (libxc's job): `domctl` and
//! `sysctl` (`public/domctl.h`, `public/sysctl.h`), memory reservations and page-table pins
//! on behalf of a domain being built, and `XEN_DOMCTL_setvcpucontext`.
//!
//! The argument structures are passed as raw, 8-byte aligned bytes ([`CtlBuf`]): callers
//! encode them with dom0-interface's mirrors (this crate stays free of `alloc`, so guests
//! without a heap link). Commands whose payload holds a guest handle get a wrapper of their
//! own that supplies the buffer; [`domctl`] and [`sysctl`] accept only commands without one.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, DOMCTL, MEMORY_OP, SYSCTL};
use crate::mm::{MmuextOp, XENMEM_DECREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP};

/// Bytes of a 64-bit `vcpu_guest_context`.
pub const VCPU_GUEST_CONTEXT_SIZE: usize = 5168;
/// Bytes of `struct xen_domctl`.
pub const DOMCTL_SIZE: usize = 144;
/// Bytes of `struct xen_sysctl`.
pub const SYSCTL_SIZE: usize = 136;
/// Bytes of `struct xen_domctl_getdomaininfo`.
pub const DOMAININFO_SIZE: usize = 112;
/// `XEN_DOMCTL_INTERFACE_VERSION` (= `XEN_SYSCTL_INTERFACE_VERSION`) of Xen 4.17.
pub const INTERFACE_VERSION: u32 = 0x15;
/// `XEN_DOMCTL_setvcpucontext`.
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = 12;
/// `XEN_SYSCTL_getdomaininfolist`.
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;

/// A hypercall argument structure as bytes, 8-byte aligned like the C structures.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtlBuf<const N: usize>(pub [u8; N]);

impl<const N: usize> CtlBuf<N> {
    /// All zero.
    pub const fn zeroed() -> Self {
        CtlBuf([0; N])
    }
    fn cmd(&self) -> u32 {
        u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

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
/// call); Xen updates `d` in place (e.g. createdomain's new domain id, getdomaininfo).
pub fn domctl(d: &mut CtlBuf<DOMCTL_SIZE>) -> XenResult {
    if !domctl_without_handles(d.cmd()) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the command's payload holds no pointer, so Xen reads and writes only `*d`.
    unsafe { hypercall::call(DOMCTL, [d.0.as_mut_ptr() as u64, 0, 0, 0, 0]) }
}

/// `HYPERVISOR_sysctl` for a command without guest handles (else `-EINVAL`).
pub fn sysctl(s: &mut CtlBuf<SYSCTL_SIZE>) -> XenResult {
    if !sysctl_without_handles(s.cmd()) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: as for `domctl`: Xen reads and writes only `*s`.
    unsafe { hypercall::call(SYSCTL, [s.0.as_mut_ptr() as u64, 0, 0, 0, 0]) }
}

/// `XEN_SYSCTL_getdomaininfolist` from domain `first`: fills `out` with
/// `xen_domctl_getdomaininfo` entries, returns the count.
pub fn getdomaininfolist(first: u16, out: &mut [CtlBuf<DOMAININFO_SIZE>]) -> Result<usize, Errno> {
    let mut s = CtlBuf::<SYSCTL_SIZE>::zeroed();
    s.put(0, &XEN_SYSCTL_GETDOMAININFOLIST.to_le_bytes());
    s.put(4, &INTERFACE_VERSION.to_le_bytes());
    // struct xen_sysctl_getdomaininfolist at 8: first_domain u16, max_domains u32 @4,
    // buffer handle @8, num_domains u32 @16.
    s.put(8, &first.to_le_bytes());
    let max = u32::try_from(out.len()).map_err(|_| Errno::EINVAL)?;
    s.put(12, &max.to_le_bytes());
    s.put(16, &(out.as_mut_ptr() as u64).to_le_bytes());
    // SAFETY: Xen reads `s` and writes at most `max_domains` 112-byte entries into `out`, an
    // exclusive slice of that many 112-byte buffers (112 is a multiple of the 8-byte
    // alignment, so the entries are contiguous).
    unsafe { hypercall::call(SYSCTL, [s.0.as_mut_ptr() as u64, 0, 0, 0, 0])? };
    let n = u32::from_le_bytes([s.0[24], s.0[25], s.0[26], s.0[27]]);
    Ok((n as usize).min(out.len()))
}

/// `XEN_DOMCTL_setvcpucontext` of `vcpu` in `domid` from a 64-bit `vcpu_guest_context`.
pub fn setvcpucontext(domid: u16, vcpu: u32, ctx: &[u8; VCPU_GUEST_CONTEXT_SIZE]) -> XenResult {
    let mut d = CtlBuf::<DOMCTL_SIZE>::zeroed();
    d.put(0, &XEN_DOMCTL_SETVCPUCONTEXT.to_le_bytes());
    d.put(4, &INTERFACE_VERSION.to_le_bytes());
    d.put(8, &domid.to_le_bytes());
    // struct xen_domctl_vcpucontext at 16: vcpu u32, ctxt handle @8.
    d.put(16, &vcpu.to_le_bytes());
    d.put(24, &(ctx.as_ptr() as u64).to_le_bytes());
    // SAFETY: Xen reads `d` and the 5168-byte context `ctx` points to; the context
    // configures another domain's vCPU, which cannot affect this one.
    unsafe { hypercall::call(DOMCTL, [d.0.as_mut_ptr() as u64, 0, 0, 0, 0]) }
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
    use dom0_interface::domctl as dc;
    use dom0_interface::sysctl as sc;

    #[test]
    fn sizes_and_numbers_match_dom0_interface() {
        use core::mem::size_of;
        assert_eq!(size_of::<dc::XenDomctl>(), DOMCTL_SIZE);
        assert_eq!(size_of::<sc::XenSysctl>(), SYSCTL_SIZE);
        assert_eq!(size_of::<dc::XenDomctlGetdomaininfo>(), DOMAININFO_SIZE);
        assert_eq!(dc::XEN_DOMCTL_INTERFACE_VERSION, INTERFACE_VERSION);
        assert_eq!(sc::XEN_SYSCTL_INTERFACE_VERSION, INTERFACE_VERSION);
        assert_eq!(dc::XEN_DOMCTL_SETVCPUCONTEXT, XEN_DOMCTL_SETVCPUCONTEXT);
        assert_eq!(
            sc::XEN_SYSCTL_GETDOMAININFOLIST,
            XEN_SYSCTL_GETDOMAININFOLIST
        );
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
        let mut d = CtlBuf::<DOMCTL_SIZE>::zeroed();
        d.put(0, &dc::XEN_DOMCTL_SETVCPUCONTEXT.to_le_bytes());
        assert_eq!(domctl(&mut d), Err(Errno::EINVAL));
        let mut s = CtlBuf::<SYSCTL_SIZE>::zeroed();
        s.put(0, &sc::XEN_SYSCTL_READCONSOLE.to_le_bytes());
        assert_eq!(sysctl(&mut s), Err(Errno::EINVAL));
        // Allowed commands reach the (absent on the host) hypervisor.
        d.put(0, &dc::XEN_DOMCTL_GETDOMAININFO.to_le_bytes());
        assert_eq!(domctl(&mut d), Err(Errno::ENOSYS));
        assert_eq!(pin_for(1, 5, 0), Err(Errno::EINVAL));
        assert_eq!(populate_physmap(0x7FF0, &mut [0]), Err(Errno::EINVAL));
    }
}
