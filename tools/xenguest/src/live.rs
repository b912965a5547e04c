//! The builder's hypercalls on the real hypervisor (through guest-rt), and the entry points
//! dom0 calls: [`create_pv`], [`map_foreign`], plus the domain queries `xl` and the tests
//! need around a build.

use dom0_interface::arch_x86::VcpuGuestContext;
use dom0_interface::domctl::{self as dc, XenDomctl, XenDomctlGetdomaininfo};
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::sysctl::{XenSysctl, XenSysctlPhysinfo, XEN_SYSCTL_PHYSINFO};
use dom0_interface::xen::DomId;
use guest_rt::foreign::Mapping;
use guest_rt::toolstack::{self, GETDOMAININFO_SIZE, VCPU_GUEST_CONTEXT_SIZE};
use guest_rt::xenctl::CtlBuf;
use guest_rt::Errno;

use crate::build::{create_with, BuildError, BuildRequest, Built, Xc};

fn errno(e: Errno) -> i32 {
    e.0 as i32
}

/// A frame of another domain mapped into dom0 (read-write); unmapped when dropped.
pub struct ForeignPage(Mapping);

impl ForeignPage {
    /// The frame's bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }
    /// The frame's bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.0.as_mut_slice()
    }
    /// The machine frame.
    pub fn mfn(&self) -> u64 {
        self.0.mfn()
    }
}

/// Maps frame `mfn` of domain `domid` into dom0 (negative Xen errno on failure).
pub fn map_foreign(domid: u16, mfn: u64) -> Result<ForeignPage, i32> {
    Mapping::new(domid, mfn).map(ForeignPage).map_err(errno)
}

/// The hypercalls of a build, made by this (privileged) guest.
pub struct Live;

impl Xc for Live {
    fn physinfo(&mut self) -> Result<XenSysctlPhysinfo, i32> {
        let mut b = CtlBuf([0; 144]);
        XenSysctl::new(XEN_SYSCTL_PHYSINFO)
            .write_to(&mut b.0)
            .map_err(|_| -22)?;
        toolstack::sysctl_no_handles(&mut b).map_err(errno)?;
        let s = XenSysctl::read_from(&b.0).map_err(|_| -22)?;
        s.payload().map_err(|_| -22)
    }
    fn domctl(&mut self, d: &mut XenDomctl) -> Result<(), i32> {
        let mut b = CtlBuf([0; 144]);
        d.write_to(&mut b.0).map_err(|_| -22)?;
        toolstack::domctl_no_handles(&mut b).map_err(errno)?;
        *d = XenDomctl::read_from(&b.0).map_err(|_| -22)?;
        Ok(())
    }
    fn populate(&mut self, domid: DomId, pfns: &mut [u64]) -> Result<usize, i32> {
        toolstack::populate_physmap(domid, pfns)
            .map(|n| n as usize)
            .map_err(errno)
    }
    fn release(&mut self, domid: DomId, mfns: &[u64]) -> Result<usize, i32> {
        toolstack::decrease_reservation(domid, mfns)
            .map(|n| n as usize)
            .map_err(errno)
    }
    fn write(&mut self, domid: DomId, mfn: u64, offset: usize, data: &[u8]) -> Result<(), i32> {
        let mut p = map_foreign(domid, mfn)?;
        let dst = p
            .as_mut_slice()
            .get_mut(offset..offset.saturating_add(data.len()))
            .ok_or(-22)?;
        dst.copy_from_slice(data);
        Ok(())
    }
    fn pin(&mut self, domid: DomId, cmd: u32, mfn: u64) -> Result<(), i32> {
        toolstack::pin_for(domid, cmd, mfn)
            .map(|_| ())
            .map_err(errno)
    }
    fn alloc_unbound(&mut self, domid: DomId, remote: DomId) -> Result<u32, i32> {
        guest_rt::evtchn::alloc_unbound(domid, remote).map_err(errno)
    }
    fn setvcpucontext(&mut self, domid: DomId, vcpu: u32, c: &VcpuGuestContext) -> Result<(), i32> {
        let mut buf = [0u8; VCPU_GUEST_CONTEXT_SIZE];
        c.write_to(&mut buf).map_err(|_| -22)?;
        toolstack::setvcpucontext(domid, vcpu, &buf)
            .map(|_| ())
            .map_err(errno)
    }
}

/// Builds (and unless `req.paused`, starts) a PV domU; on failure nothing is left behind.
pub fn create_pv(req: &BuildRequest) -> Result<Built, BuildError> {
    create_with(&mut Live, req)
}

/// `XEN_DOMCTL_getdomaininfo` of `domid`.
pub fn domain_info(domid: u16) -> Result<XenDomctlGetdomaininfo, i32> {
    let mut d = XenDomctl::new(dc::XEN_DOMCTL_GETDOMAININFO, domid);
    Live.domctl(&mut d)?;
    d.payload().map_err(|_| -22)
}

/// `XEN_DOMCTL_destroydomain` of `domid`.
pub fn destroy_domain(domid: u16) -> Result<(), i32> {
    let mut d = XenDomctl::new(dc::XEN_DOMCTL_DESTROYDOMAIN, domid);
    Live.domctl(&mut d)
}

/// The domains from id `first` on (at most `max`), as `XEN_SYSCTL_getdomaininfolist`.
pub fn domain_list(first: u16, max: usize) -> Result<alloc::vec::Vec<XenDomctlGetdomaininfo>, i32> {
    let mut buf = alloc::vec![0u8; max * GETDOMAININFO_SIZE];
    let n = toolstack::getdomaininfolist(first, &mut buf).map_err(errno)?;
    buf.chunks(GETDOMAININFO_SIZE)
        .take(n)
        .map(|b| XenDomctlGetdomaininfo::read_from(b).map_err(|_| -22))
        .collect()
}

/// `XEN_SYSCTL_physinfo`.
pub fn physinfo() -> Result<XenSysctlPhysinfo, i32> {
    Live.physinfo()
}
