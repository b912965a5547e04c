//! The domain build as a plan a toolstack executes step by step (as libxl/libxenguest do
//! for `xl create`), with rollback: when a step fails, every completed step is undone in
//! reverse order, so a failed `xl create` leaves no half-built domain and no leaked frame.
//!
//! [`BuildMachine`] is a pure state machine: it says what to do next ([`Action`]) and is
//! told how it went. [`run`] drives it against any [`Hypervisor`]. A step must be atomic:
//! if it fails it leaves nothing behind (e.g. a populate that fails half way frees what it
//! got); the machine undoes completed steps only. Undo keeps going after an undo error
//! (destroying the domain reclaims what a failed release left) and reports every error.

use crate::xlcfg::DomainConfig;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use dom0_interface::domctl::{
    XenDomctlCreatedomain, XenDomctlMaxMem, XenDomctlMaxVcpus, XEN_DOMCTL_GRANT_VERSION_MASK,
};
use dom0_interface::xen::DomId;

/// Page size the plan counts memory in.
pub const PAGE_SIZE: u64 = 4096;
/// libxl's default `event_channels` (highest event channel port of a guest).
pub const EVENT_CHANNELS_DEFAULT: u32 = 1023;
/// libxl 4.17's x86 extra memory over the target (`LIBXL_MAXMEM_CONSTANT`, KiB), added
/// to the `max_mem` limit.
pub const MAXMEM_SLACK_KIB: u64 = 1024;

/// One step of building a PV domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// `XEN_DOMCTL_createdomain` (paused, with the config's UUID and vCPU limit).
    CreateDomain,
    /// `XEN_DOMCTL_max_vcpus`.
    MaxVcpus,
    /// `XEN_DOMCTL_max_mem`.
    MaxMem,
    /// `XENMEM_populate_physmap` for the domain's memory.
    PopulateMemory,
    /// Parse the kernel ELF and copy its segments into the domain (foreign mappings).
    LoadKernel,
    /// Copy the ramdisk into the domain.
    LoadRamdisk,
    /// Write the p2m list, start_info, bootstrap page tables and hypercall page.
    StartInfo,
    /// Allocate the console event channel (the ring is a page of the domain's memory).
    ConsoleRing,
    /// `XEN_DOMCTL_setvcpucontext` for vCPU 0.
    VcpuContext,
    /// `XEN_DOMCTL_unpausedomain` (not done for `xl create -p`).
    Unpause,
}

impl Step {
    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Step::CreateDomain => "create domain",
            Step::MaxVcpus => "set max vcpus",
            Step::MaxMem => "set max memory",
            Step::PopulateMemory => "populate memory",
            Step::LoadKernel => "load kernel",
            Step::LoadRamdisk => "load ramdisk",
            Step::StartInfo => "write start info",
            Step::ConsoleRing => "set up console ring",
            Step::VcpuContext => "set vcpu context",
            Step::Unpause => "unpause",
        }
    }
}

/// What a completed step left behind, which rollback must give back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A domain was created (undo: destroy it).
    Domain(DomId),
    /// Limits were set on the domain (undone by destroying it).
    Limits,
    /// Frames were allocated to the domain (undo: release them).
    Frames(Vec<u64>),
    /// Bytes were written into the domain's memory (freed with its frames).
    Written,
    /// An event channel was allocated (undo: close it).
    EventChannel(u32),
    /// The domain was unpaused (undo: pause it again).
    Unpaused,
}

impl Record {
    /// Whether undoing this record needs a call of its own.
    pub const fn needs_undo(&self) -> bool {
        !matches!(self, Record::Limits | Record::Written)
    }
}

/// Everything the steps need, taken from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildPlan {
    /// Domain name.
    pub name: String,
    /// UUID for createdomain (zero if the config has none and the caller made none).
    pub uuid: [u8; 16],
    /// vCPUs online at start.
    pub vcpus: u32,
    /// vCPU limit.
    pub max_vcpus: u32,
    /// Memory limit, KiB.
    pub max_mem_kib: u64,
    /// Pages to populate at start.
    pub memory_pages: u64,
    /// Kernel path.
    pub kernel: String,
    /// Ramdisk path, if any.
    pub ramdisk: Option<String>,
    /// Command line.
    pub cmdline: String,
    /// Leave the domain paused (`xl create -p`).
    pub start_paused: bool,
}

impl BuildPlan {
    /// The plan for `cfg`; `uuid` is used when the config fixes none.
    pub fn from_config(cfg: &DomainConfig, uuid: [u8; 16], start_paused: bool) -> BuildPlan {
        BuildPlan {
            name: cfg.name.clone(),
            uuid: cfg.uuid.unwrap_or(uuid),
            vcpus: cfg.vcpus,
            max_vcpus: cfg.maxvcpus,
            max_mem_kib: cfg.maxmem_kib(),
            memory_pages: cfg.memory_kib() * 1024 / PAGE_SIZE,
            kernel: cfg.kernel.clone(),
            ramdisk: cfg.ramdisk.clone(),
            cmdline: cfg.cmdline.clone().unwrap_or_default(),
            start_paused,
        }
    }

    /// The `XEN_DOMCTL_createdomain` argument, as libxl 4.17 fills it for a PV guest: no
    /// `CDF` flags, the UUID, `max_vcpus`, 1023 event channels, the hypervisor's default
    /// grant and maptrack frames (-1), the grant version the host supports best
    /// (`max_grant_version`: 2 with `gnttab-v2`, 1 with only v1) and no emulated devices.
    pub fn createdomain(&self, max_grant_version: u32) -> XenDomctlCreatedomain {
        XenDomctlCreatedomain {
            handle: self.uuid,
            max_vcpus: self.max_vcpus,
            max_evtchn_port: EVENT_CHANNELS_DEFAULT,
            max_grant_frames: -1,
            max_maptrack_frames: -1,
            grant_opts: max_grant_version & XEN_DOMCTL_GRANT_VERSION_MASK,
            ..XenDomctlCreatedomain::default()
        }
    }

    /// The `XEN_DOMCTL_max_vcpus` argument.
    pub const fn max_vcpus_domctl(&self) -> XenDomctlMaxVcpus {
        XenDomctlMaxVcpus {
            max: self.max_vcpus,
        }
    }

    /// The `XEN_DOMCTL_max_mem` argument: as libxl 4.17's `libxl__build_pre`, the target
    /// memory plus [`MAXMEM_SLACK_KIB`], or `maxmem` if that is larger.
    pub const fn max_mem_domctl(&self) -> XenDomctlMaxMem {
        let target = self
            .memory_pages
            .saturating_mul(PAGE_SIZE / 1024)
            .saturating_add(MAXMEM_SLACK_KIB);
        XenDomctlMaxMem {
            max_memkb: if self.max_mem_kib > target {
                self.max_mem_kib
            } else {
                target
            },
        }
    }

    /// The steps, in order.
    pub fn steps(&self) -> Vec<Step> {
        let mut s = Vec::from([
            Step::CreateDomain,
            Step::MaxVcpus,
            Step::MaxMem,
            Step::PopulateMemory,
            Step::LoadKernel,
        ]);
        if self.ramdisk.is_some() {
            s.push(Step::LoadRamdisk);
        }
        s.extend([Step::StartInfo, Step::ConsoleRing, Step::VcpuContext]);
        if !self.start_paused {
            s.push(Step::Unpause);
        }
        s
    }
}

/// What the toolstack should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Perform this step, then call [`BuildMachine::performed`].
    Perform(Step),
    /// Undo what this step left, then call [`BuildMachine::undone`].
    Undo(Step, Record),
    /// The domain is built.
    Done(DomId),
    /// The build failed and everything was rolled back (see [`BuildMachine::failure`]).
    RolledBack,
}

/// Why a build failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError<E> {
    /// The step that failed.
    pub step: Step,
    /// Its error.
    pub error: E,
    /// Errors met while undoing (each undo was still attempted).
    pub undo_errors: Vec<(Step, E)>,
}

impl<E: fmt::Display> fmt::Display for BuildError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {}: {}", self.step.name(), self.error)?;
        if self.undo_errors.is_empty() {
            write!(f, " (rolled back)")
        } else {
            write!(f, " (rollback incomplete:")?;
            for (s, e) in &self.undo_errors {
                write!(f, " {}: {};", s.name(), e)?;
            }
            write!(f, ")")
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase<E> {
    Building,
    RollingBack(Step, E),
    Finished(DomId),
    Failed,
}

/// The build state machine.
#[derive(Clone, Debug)]
pub struct BuildMachine<E> {
    steps: Vec<Step>,
    next: usize,
    done: Vec<(Step, Record)>,
    domid: Option<DomId>,
    phase: Phase<E>,
    undo_errors: Vec<(Step, E)>,
    failure: Option<BuildError<E>>,
    /// The step handed out and whether it was an undo.
    awaiting: Option<(Step, bool)>,
}

impl<E: Clone> BuildMachine<E> {
    /// A machine for `plan`.
    pub fn new(plan: &BuildPlan) -> BuildMachine<E> {
        BuildMachine {
            steps: plan.steps(),
            next: 0,
            done: Vec::new(),
            domid: None,
            phase: Phase::Building,
            undo_errors: Vec::new(),
            failure: None,
            awaiting: None,
        }
    }

    /// The domain id, once created.
    pub const fn domid(&self) -> Option<DomId> {
        self.domid
    }

    /// The next action. Each `Perform`/`Undo` must be answered before asking again; asking
    /// again without answering repeats a `Perform` (an `Undo`'s record is handed out once).
    pub fn next_action(&mut self) -> Action {
        match &self.phase {
            Phase::Finished(d) => Action::Done(*d),
            Phase::Failed => Action::RolledBack,
            Phase::Building => match self.steps.get(self.next) {
                Some(&s) => {
                    self.awaiting = Some((s, false));
                    Action::Perform(s)
                }
                None => match self.domid {
                    Some(d) => {
                        self.phase = Phase::Finished(d);
                        Action::Done(d)
                    }
                    None => {
                        self.phase = Phase::Failed;
                        Action::RolledBack
                    }
                },
            },
            Phase::RollingBack(..) => loop {
                match self.done.pop() {
                    Some((s, r)) if r.needs_undo() => {
                        self.awaiting = Some((s, true));
                        return Action::Undo(s, r);
                    }
                    Some(_) => continue,
                    None => {
                        if let Phase::RollingBack(step, error) =
                            core::mem::replace(&mut self.phase, Phase::Failed)
                        {
                            self.failure = Some(BuildError {
                                step,
                                error,
                                undo_errors: core::mem::take(&mut self.undo_errors),
                            });
                        }
                        return Action::RolledBack;
                    }
                }
            },
        }
    }

    /// The outcome of the `Perform` last handed out. A `CreateDomain` success must carry
    /// [`Record::Domain`]; anything else is treated as a failure of the hypervisor layer
    /// and rolled back with `bad_record` as the error.
    pub fn performed(&mut self, result: Result<Record, E>, bad_record: E) {
        let Some((step, false)) = self.awaiting else {
            return;
        };
        self.awaiting = None;
        if !matches!(self.phase, Phase::Building) {
            return;
        }
        match result {
            Ok(Record::Domain(d)) if step == Step::CreateDomain => {
                self.domid = Some(d);
                self.done.push((step, Record::Domain(d)));
                self.next += 1;
            }
            Ok(_) if step == Step::CreateDomain => {
                self.phase = Phase::RollingBack(step, bad_record)
            }
            Ok(Record::Domain(_)) => self.phase = Phase::RollingBack(step, bad_record),
            Ok(r) => {
                self.done.push((step, r));
                self.next += 1;
            }
            Err(e) => self.phase = Phase::RollingBack(step, e),
        }
    }

    /// The outcome of the `Undo` last handed out.
    pub fn undone(&mut self, result: Result<(), E>) {
        let Some((step, true)) = self.awaiting else {
            return;
        };
        self.awaiting = None;
        if let Err(e) = result {
            self.undo_errors.push((step, e));
        }
    }

    /// Why the build failed, once [`Action::RolledBack`] was returned.
    pub fn failure(&self) -> Option<&BuildError<E>> {
        self.failure.as_ref()
    }
}

/// What a toolstack needs from the hypervisor to build a domain.
pub trait Hypervisor {
    /// Error of a call.
    type Error: Clone;
    /// Performs `step` of `plan` (for the domain `domid` once created). Atomic: on error
    /// nothing of the step is left.
    fn perform(
        &mut self,
        step: Step,
        plan: &BuildPlan,
        domid: Option<DomId>,
    ) -> Result<Record, Self::Error>;
    /// Undoes what `step` left (`record`) for domain `domid`.
    fn undo(&mut self, step: Step, record: Record, domid: Option<DomId>)
        -> Result<(), Self::Error>;
    /// The error to report when the hypervisor layer returns a record that does not fit
    /// the step (a bug in that layer, rolled back like any failure).
    fn bad_record(&self) -> Self::Error;
}

/// Builds `plan` on `hv`: the domain id, or the failure after a complete rollback.
pub fn run<H: Hypervisor>(plan: &BuildPlan, hv: &mut H) -> Result<DomId, BuildError<H::Error>> {
    let mut m = BuildMachine::new(plan);
    loop {
        match m.next_action() {
            Action::Perform(step) => {
                let r = hv.perform(step, plan, m.domid());
                let bad = hv.bad_record();
                m.performed(r, bad);
            }
            Action::Undo(step, record) => {
                let r = hv.undo(step, record, m.domid());
                m.undone(r);
            }
            Action::Done(d) => return Ok(d),
            Action::RolledBack => {
                return Err(m.failure().cloned().unwrap_or(BuildError {
                    step: Step::CreateDomain,
                    error: hv.bad_record(),
                    undo_errors: Vec::new(),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests;
