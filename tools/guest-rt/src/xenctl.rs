//! The toolstack's hypercalls: `HYPERVISOR_domctl` and `HYPERVISOR_sysctl` on a raw
//! `struct xen_domctl` / `struct xen_sysctl` buffer ([`CtlBuf`], fields by byte offset, so a
//! guest needs no heap), and reservations (`XENMEM_populate_physmap`, ...) on another
//! domain.

use crate::hypercall::{self, DOMCTL, SYSCTL};
use crate::XenResult;
use dom0_interface::xen::DOMID_SELF;

/// `XEN_DOMCTL_INTERFACE_VERSION` (and `XEN_SYSCTL_INTERFACE_VERSION`) of Xen 4.17.
pub const INTERFACE_VERSION: u32 = dom0_interface::domctl::XEN_DOMCTL_INTERFACE_VERSION;
const _: () = assert!(INTERFACE_VERSION == dom0_interface::sysctl::XEN_SYSCTL_INTERFACE_VERSION);
/// The domctl and sysctl numbers and flags the toolstack test guests use, under Xen's names
/// without the `XEN_` prefix (from `dom0_interface`, which mirrors `domctl.h` and `sysctl.h`).
pub mod ops {
    pub use dom0_interface::domctl::{
        XEN_DOMCTL_CREATEDOMAIN as DOMCTL_CREATEDOMAIN,
        XEN_DOMCTL_DESTROYDOMAIN as DOMCTL_DESTROYDOMAIN,
        XEN_DOMCTL_GETDOMAININFO as DOMCTL_GETDOMAININFO,
        XEN_DOMCTL_GETVCPUCONTEXT as DOMCTL_GETVCPUCONTEXT,
        XEN_DOMCTL_GETVCPUINFO as DOMCTL_GETVCPUINFO, XEN_DOMCTL_MAX_MEM as DOMCTL_MAX_MEM,
        XEN_DOMCTL_MAX_VCPUS as DOMCTL_MAX_VCPUS, XEN_DOMCTL_PAUSEDOMAIN as DOMCTL_PAUSEDOMAIN,
        XEN_DOMCTL_SETVCPUCONTEXT as DOMCTL_SETVCPUCONTEXT,
        XEN_DOMCTL_UNPAUSEDOMAIN as DOMCTL_UNPAUSEDOMAIN, XEN_DOMINF_DYING as DOMINF_DYING,
        XEN_DOMINF_PAUSED as DOMINF_PAUSED, XEN_DOMINF_RUNNING as DOMINF_RUNNING,
        XEN_DOMINF_SHUTDOWN as DOMINF_SHUTDOWN,
    };
    pub use dom0_interface::sysctl::{
        XEN_SYSCTL_GETDOMAININFOLIST as SYSCTL_GETDOMAININFOLIST,
        XEN_SYSCTL_PHYSCAP_PV as PHYSCAP_PV, XEN_SYSCTL_PHYSINFO as SYSCTL_PHYSINFO,
        XEN_SYSCTL_READCONSOLE as SYSCTL_READCONSOLE, XEN_SYSCTL_SCHED_ID as SYSCTL_SCHED_ID,
    };
}

/// Offset of the `u` union in `struct xen_domctl`.
pub const DOMCTL_U: usize = 16;
/// Offset of the `u` union in `struct xen_sysctl`.
pub const SYSCTL_U: usize = 8;

/// A `struct xen_domctl` (144 bytes) or `struct xen_sysctl` (136 bytes, the rest unused),
/// 8-byte aligned, read and written by byte offset.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtlBuf(pub [u8; 144]);

impl CtlBuf {
    /// A domctl `cmd` on `domain` at Xen 4.17's interface version, payload zero.
    pub fn domctl(cmd: u32, domain: u16) -> Self {
        let mut b = CtlBuf([0; 144]);
        b.set_u32(0, cmd);
        b.set_u32(4, INTERFACE_VERSION);
        b.set_u16(8, domain);
        b
    }
    /// A sysctl `cmd` at Xen 4.17's interface version, payload zero.
    pub fn sysctl(cmd: u32) -> Self {
        let mut b = CtlBuf([0; 144]);
        b.set_u32(0, cmd);
        b.set_u32(4, INTERFACE_VERSION);
        b
    }
    /// The bytes at `off..off + N` (zeros past the end).
    fn get<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut v = [0u8; N];
        if let Some(s) = self.0.get(off..off + N) {
            v.copy_from_slice(s);
        }
        v
    }
    fn set(&mut self, off: usize, v: &[u8]) {
        if let Some(s) = self.0.get_mut(off..off + v.len()) {
            s.copy_from_slice(v);
        }
    }
    /// The u8 at `off`.
    pub fn u8(&self, off: usize) -> u8 {
        self.get::<1>(off)[0]
    }
    /// The u16 at `off`.
    pub fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.get(off))
    }
    /// The u32 at `off`.
    pub fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.get(off))
    }
    /// The u64 at `off`.
    pub fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.get(off))
    }
    /// Sets the u16 at `off`.
    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.set(off, &v.to_le_bytes());
    }
    /// Sets the u32 at `off`.
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.set(off, &v.to_le_bytes());
    }
    /// Sets the u64 at `off`.
    pub fn set_u64(&mut self, off: usize, v: u64) {
        self.set(off, &v.to_le_bytes());
    }
    /// Sets bytes at `off`.
    pub fn set_bytes(&mut self, off: usize, v: &[u8]) {
        self.set(off, v);
    }
    /// `N` bytes at `off`.
    pub fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        self.get(off)
    }
}

/// `HYPERVISOR_domctl(op)`: Xen reads `op` and writes it back (copyback) when the sub-op
/// returns data. Payloads that carry guest handles name buffers the caller owns and sized
/// as the ABI says.
pub fn domctl(op: &mut CtlBuf) -> XenResult {
    // SAFETY: Xen reads and may overwrite the 144-byte `xen_domctl` at `op`, which is ours;
    // the buffers its payload names are the caller's (see above).
    unsafe { hypercall::call(DOMCTL, [op as *mut CtlBuf as u64, 0, 0, 0, 0]) }
}

/// `HYPERVISOR_sysctl(op)`, as [`domctl`].
pub fn sysctl(op: &mut CtlBuf) -> XenResult {
    // SAFETY: Xen reads and may overwrite the 136-byte `xen_sysctl` at `op`, which is ours;
    // the buffers its payload names are the caller's.
    unsafe { hypercall::call(SYSCTL, [op as *mut CtlBuf as u64, 0, 0, 0, 0]) }
}

/// `HYPERVISOR_domctl` with an unreachable argument address: the hypervisor must answer
/// -EFAULT without touching anything.
pub fn domctl_with_bad_ptr(ptr: hypercall::BadPtr) -> XenResult {
    hypercall::call_with_bad_ptr(DOMCTL, ptr.addr(), hypercall::BadPtr::NULL)
}

/// `memory_op(cmd, &reservation)` on domain `domid` (increase/decrease_reservation,
/// populate_physmap): `extents` in (pfns for populate, mfns for decrease) and out (mfns).
/// Returns the extents done. The frames are `domid`'s, never mapped by the caller, so nothing
/// of the caller's memory changes beyond `extents`. Naming the caller (DOMID_SELF or
/// domain 0, the toolstack's own id) is refused here with -EINVAL: use `pvmm::reservation`.
pub fn foreign_reservation(cmd: u32, domid: u16, extents: &mut [u64], order: u32) -> XenResult {
    if domid == DOMID_SELF || domid == 0 {
        return Err(crate::Errno::EINVAL);
    }
    // SAFETY: the frames Xen adds or removes are another domain's (see above); `extents`
    // is an exclusive slice.
    unsafe { crate::mm::reservation_op(cmd, domid, extents, order) }
}
