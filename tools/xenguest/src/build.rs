//! The build steps of [`tools::builder_plan`] for a 64-bit PV domU, over the hypercalls of
//! [`Xc`], in the order and with the arguments of Xen 4.17's libxl/libxenguest:
//! createdomain (paused), max_vcpus, max_mem, populate_physmap, the kernel, the ramdisk,
//! the p2m/start_info/page tables (L4 pinned), the console event channel, vCPU 0's
//! context, unpause. Every completed step is undone in reverse order when a later one
//! fails; destroying the domain gives back everything it held.

use alloc::vec::Vec;
use core::fmt;

use dom0_interface::arch_x86::VcpuGuestContext;
use dom0_interface::domctl::{self as dc, XenDomctl, XenDomctlGetdomaininfo};
use dom0_interface::sysctl::{XenSysctlPhysinfo, XEN_SYSCTL_PHYSCAP_GNTTAB_V2};
use dom0_interface::xen::DomId;
use tools::builder_plan::{self, BuildPlan, Record, Step};
use tools::xlcfg::DomainConfig;

use crate::image::{Image, ImageError, PageBuf, Runtime};

/// `MMUEXT_PIN_L4_TABLE`.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// `MMUEXT_UNPIN_TABLE`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// Pages populated per `populate_physmap` call.
pub const POPULATE_BATCH: usize = 512;
/// `ENOMEM`.
const ENOMEM: i32 = 12;
/// `EINVAL`.
const EINVAL: i32 = 22;

/// The hypercalls a domain build makes (errors are negative Xen errnos).
pub trait Xc {
    /// `XEN_SYSCTL_physinfo`.
    fn physinfo(&mut self) -> Result<XenSysctlPhysinfo, i32>;
    /// A domctl without guest handles (createdomain, max_vcpus, getdomaininfo, ...).
    fn domctl(&mut self, d: &mut XenDomctl) -> Result<(), i32>;
    /// `XENMEM_populate_physmap` of `pfns` (in), machine frames out; returns how many.
    fn populate(&mut self, domid: DomId, pfns: &mut [u64]) -> Result<usize, i32>;
    /// `XENMEM_decrease_reservation` of the domain's frames; returns how many.
    fn release(&mut self, domid: DomId, mfns: &[u64]) -> Result<usize, i32>;
    /// Writes `data` at byte `offset` of the domain's frame `mfn` (a foreign mapping).
    fn write(&mut self, domid: DomId, mfn: u64, offset: usize, data: &[u8]) -> Result<(), i32>;
    /// `mmuext_op` pin/unpin `cmd` of the domain's frame `mfn`.
    fn pin(&mut self, domid: DomId, cmd: u32, mfn: u64) -> Result<(), i32>;
    /// `EVTCHNOP_alloc_unbound` in `domid`'s table for `remote`.
    fn alloc_unbound(&mut self, domid: DomId, remote: DomId) -> Result<u32, i32>;
    /// `XEN_DOMCTL_setvcpucontext`.
    fn setvcpucontext(&mut self, domid: DomId, vcpu: u32, c: &VcpuGuestContext) -> Result<(), i32>;
}

/// What to build (the interface dom0's `xl create` uses).
pub struct BuildRequest<'a> {
    /// The parsed xl.cfg.
    pub config: &'a DomainConfig,
    /// The kernel ELF.
    pub kernel: &'a [u8],
    /// The ramdisk, if any.
    pub ramdisk: Option<&'a [u8]>,
    /// Leave the domain paused (`xl create -p`).
    pub paused: bool,
}

/// The built domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Built {
    /// Its id.
    pub domid: u16,
    /// Machine frame of its console ring.
    pub console_mfn: u64,
    /// The unbound port in its table (remote dom0) its console notifies.
    pub console_port: u32,
}

/// Why one step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    /// A hypercall returned this negative errno.
    Hypercall(&'static str, i32),
    /// The kernel cannot be built.
    Image(ImageError),
    /// The hypervisor answered something impossible.
    Protocol(&'static str),
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Hypercall(op, e) => write!(f, "{op} failed: error {e}"),
            StepError::Image(e) => write!(f, "{e}"),
            StepError::Protocol(what) => write!(f, "{what}"),
        }
    }
}

/// Why a build failed (everything was rolled back unless the message says otherwise).
pub type BuildError = builder_plan::BuildError<StepError>;

/// The builder's state across steps.
pub struct Builder<'a, X: Xc> {
    xc: &'a mut X,
    kernel: &'a [u8],
    ramdisk: Option<&'a [u8]>,
    image: Option<Image>,
    p2m: Vec<u64>,
    rt: Runtime,
    pinned_l4: Option<u64>,
}

fn hc(op: &'static str) -> impl Fn(i32) -> StepError {
    move |e| StepError::Hypercall(op, e)
}

impl<'a, X: Xc> Builder<'a, X> {
    /// A builder of `kernel` (and `ramdisk`) through `xc`.
    pub fn new(xc: &'a mut X, kernel: &'a [u8], ramdisk: Option<&'a [u8]>) -> Self {
        Builder {
            xc,
            kernel,
            ramdisk,
            image: None,
            p2m: Vec::new(),
            rt: Runtime::default(),
            pinned_l4: None,
        }
    }

    fn image(&self) -> Result<&Image, StepError> {
        self.image
            .as_ref()
            .ok_or(StepError::Protocol("kernel not loaded"))
    }

    fn write_pages(&mut self, domid: DomId, pages: &[(u64, PageBuf)]) -> Result<(), StepError> {
        for (pfn, page) in pages {
            let mfn = *self
                .p2m
                .get(*pfn as usize)
                .ok_or(StepError::Protocol("page outside the domain"))?;
            self.xc
                .write(domid, mfn, 0, &page[..])
                .map_err(hc("map_foreign"))?;
        }
        Ok(())
    }

    fn domctl(
        &mut self,
        cmd: u32,
        domid: DomId,
        name: &'static str,
    ) -> Result<XenDomctl, StepError> {
        let mut d = XenDomctl::new(cmd, domid);
        self.xc.domctl(&mut d).map_err(hc(name))?;
        Ok(d)
    }

    fn create(&mut self, plan: &BuildPlan) -> Result<Record, StepError> {
        let pi = self.xc.physinfo().map_err(hc("physinfo"))?;
        let gnttab = if pi.capabilities & XEN_SYSCTL_PHYSCAP_GNTTAB_V2 != 0 {
            2
        } else {
            1
        };
        let mut d = XenDomctl::new(dc::XEN_DOMCTL_CREATEDOMAIN, 0);
        d.set_payload(&plan.createdomain(gnttab))
            .map_err(|_| StepError::Protocol("createdomain payload"))?;
        self.xc.domctl(&mut d).map_err(hc("createdomain"))?;
        Ok(Record::Domain(d.domain))
    }

    fn populate(&mut self, plan: &BuildPlan, domid: DomId) -> Result<Record, StepError> {
        let n = plan.memory_pages;
        let mut mfns: Vec<u64> = Vec::new();
        let mut pfn = 0u64;
        while pfn < n {
            let k = (n - pfn).min(POPULATE_BATCH as u64);
            let mut ext: Vec<u64> = (pfn..pfn + k).collect();
            let got = self.xc.populate(domid, &mut ext);
            let done = *got.as_ref().unwrap_or(&0);
            mfns.extend_from_slice(&ext[..done.min(ext.len())]);
            if got.is_err() || done < ext.len() {
                // Atomic step: give back what this step got before failing.
                let _ = self.xc.release(domid, &mfns);
                return Err(StepError::Hypercall(
                    "populate_physmap",
                    got.err().unwrap_or(-ENOMEM),
                ));
            }
            pfn += k;
        }
        self.p2m = mfns.clone();
        Ok(Record::Frames(mfns))
    }

    fn load_kernel(&mut self, plan: &BuildPlan, domid: DomId) -> Result<Record, StepError> {
        let img = Image::prepare(
            self.kernel,
            self.ramdisk.map(|r| r.len() as u64),
            &plan.cmdline,
            plan.memory_pages,
        )
        .map_err(StepError::Image)?;
        let pages = img.kernel_pages();
        self.image = Some(img);
        self.write_pages(domid, &pages)?;
        Ok(Record::Written)
    }

    fn load_ramdisk(&mut self, domid: DomId) -> Result<Record, StepError> {
        let rd = self.ramdisk.unwrap_or(&[]);
        let pages = self.image()?.ramdisk_pages(rd);
        self.write_pages(domid, &pages)?;
        Ok(Record::Written)
    }

    fn start_info(&mut self, domid: DomId) -> Result<Record, StepError> {
        let d = self.domctl(dc::XEN_DOMCTL_GETDOMAININFO, domid, "getdomaininfo")?;
        let info: XenDomctlGetdomaininfo = d
            .payload()
            .map_err(|_| StepError::Protocol("getdomaininfo payload"))?;
        self.rt.shared_info_mfn = info.shared_info_frame;
        // Events masked on every vCPU until the kernel enables them (libxenguest).
        for v in 0..dom0_interface::arch_x86::XEN_LEGACY_MAX_VCPUS {
            self.xc
                .write(domid, info.shared_info_frame, v * 64 + 1, &[1])
                .map_err(hc("map shared_info"))?;
        }
        let pages = self.image()?.boot_pages(&self.p2m, self.rt);
        self.write_pages(domid, &pages)?;
        let l4 = self.p2m[self.image()?.l4_pfn() as usize];
        self.xc
            .pin(domid, MMUEXT_PIN_L4_TABLE, l4)
            .map_err(hc("pin L4 table"))?;
        self.pinned_l4 = Some(l4);
        Ok(Record::Written)
    }

    fn console(&mut self, domid: DomId) -> Result<Record, StepError> {
        let port = self
            .xc
            .alloc_unbound(domid, 0)
            .map_err(hc("alloc_unbound"))?;
        self.rt.console_evtchn = port;
        let page = self.image()?.start_info_page(&self.p2m, self.rt);
        self.write_pages(domid, &[page])?;
        Ok(Record::EventChannel(port))
    }

    fn vcpu(&mut self, domid: DomId) -> Result<Record, StepError> {
        let l4 = self.p2m[self.image()?.l4_pfn() as usize];
        let c = self.image()?.vcpu_context(l4);
        self.xc
            .setvcpucontext(domid, 0, &c)
            .map_err(hc("setvcpucontext"))?;
        Ok(Record::Written)
    }

    /// The result once the build is done.
    pub fn built(&self, domid: DomId) -> Built {
        let console_mfn = self
            .image
            .as_ref()
            .and_then(|i| self.p2m.get(i.console_pfn() as usize))
            .copied()
            .unwrap_or(0);
        Built {
            domid,
            console_mfn,
            console_port: self.rt.console_evtchn,
        }
    }
}

impl<X: Xc> builder_plan::Hypervisor for Builder<'_, X> {
    type Error = StepError;

    fn perform(
        &mut self,
        step: Step,
        plan: &BuildPlan,
        domid: Option<DomId>,
    ) -> Result<Record, StepError> {
        let dom = || domid.ok_or(StepError::Protocol("no domain"));
        match step {
            Step::CreateDomain => self.create(plan),
            Step::MaxVcpus => {
                let mut d = XenDomctl::new(dc::XEN_DOMCTL_MAX_VCPUS, dom()?);
                d.set_payload(&plan.max_vcpus_domctl())
                    .map_err(|_| StepError::Protocol("max_vcpus payload"))?;
                self.xc.domctl(&mut d).map_err(hc("max_vcpus"))?;
                Ok(Record::Limits)
            }
            Step::MaxMem => {
                let mut d = XenDomctl::new(dc::XEN_DOMCTL_MAX_MEM, dom()?);
                d.set_payload(&plan.max_mem_domctl())
                    .map_err(|_| StepError::Protocol("max_mem payload"))?;
                self.xc.domctl(&mut d).map_err(hc("max_mem"))?;
                Ok(Record::Limits)
            }
            Step::PopulateMemory => self.populate(plan, dom()?),
            Step::LoadKernel => self.load_kernel(plan, dom()?),
            Step::LoadRamdisk => self.load_ramdisk(dom()?),
            Step::StartInfo => self.start_info(dom()?),
            Step::ConsoleRing => self.console(dom()?),
            Step::VcpuContext => self.vcpu(dom()?),
            Step::Unpause => {
                self.domctl(dc::XEN_DOMCTL_UNPAUSEDOMAIN, dom()?, "unpausedomain")?;
                Ok(Record::Unpaused)
            }
        }
    }

    fn undo(&mut self, _step: Step, record: Record, domid: Option<DomId>) -> Result<(), StepError> {
        let dom = domid.ok_or(StepError::Protocol("no domain"))?;
        match record {
            Record::Domain(d) => {
                self.domctl(dc::XEN_DOMCTL_DESTROYDOMAIN, d, "destroydomain")?;
                Ok(())
            }
            Record::Frames(mfns) => {
                if let Some(l4) = self.pinned_l4.take() {
                    self.xc
                        .pin(dom, MMUEXT_UNPIN_TABLE, l4)
                        .map_err(hc("unpin L4 table"))?;
                }
                let n = self
                    .xc
                    .release(dom, &mfns)
                    .map_err(hc("decrease_reservation"))?;
                if n != mfns.len() {
                    return Err(StepError::Hypercall("decrease_reservation", -EINVAL));
                }
                Ok(())
            }
            // No hypercall closes a port in another domain's table: destroying the domain
            // (the undo of CreateDomain, which always follows) closes it.
            Record::EventChannel(_) => Ok(()),
            Record::Unpaused => {
                self.domctl(dc::XEN_DOMCTL_PAUSEDOMAIN, dom, "pausedomain")?;
                Ok(())
            }
            Record::Limits | Record::Written => Ok(()),
        }
    }

    fn bad_record(&self) -> StepError {
        StepError::Protocol("a step returned a record that does not fit it")
    }
}

/// Builds the domain `req` describes through `xc`; on failure nothing is left.
pub fn create_with<X: Xc>(xc: &mut X, req: &BuildRequest<'_>) -> Result<Built, BuildError> {
    let mut plan = BuildPlan::from_config(req.config, [0; 16], req.paused);
    // The ramdisk step follows the bytes given, whatever the config named.
    plan.ramdisk = req
        .ramdisk
        .map(|_| plan.ramdisk.clone().unwrap_or_else(|| "ramdisk".into()));
    let mut b = Builder::new(xc, req.kernel, req.ramdisk);
    let domid = builder_plan::run(&plan, &mut b)?;
    Ok(b.built(domid))
}

#[cfg(test)]
mod tests;
