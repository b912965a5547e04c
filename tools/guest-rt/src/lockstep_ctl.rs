//! DualVisor's lockstep control sysctl (`XEN_SYSCTL_DUALVISOR_LOCKSTEP`, "DVLS") from a
//! privileged guest: status, on, off, inject. On a real Xen the command does not exist and
//! every call answers `-ENOSYS`.
//!
//! The structures are the guest's own `#[repr(C)]` copies of `dom0_interface::lockstep_ctl`
//! (the guests link no allocator, and that crate needs one); the const asserts pin the same
//! sizes and offsets, so a layout change there fails here too.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, BadPtr, SYSCTL};

/// The sysctl command number ("DVLS").
pub const XEN_SYSCTL_DUALVISOR_LOCKSTEP: u32 = 0x4456_4C53;
/// `XEN_SYSCTL_INTERFACE_VERSION` of Xen 4.17.
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;
/// Layout version of the request and the status.
pub const LOCKSTEP_CTL_VERSION: u32 = 1;
/// Sub-command: copy the status to a buffer.
pub const LOCKSTEP_CMD_STATUS: u32 = 0;
/// Sub-command: lockstep on.
pub const LOCKSTEP_CMD_ON: u32 = 1;
/// Sub-command: lockstep off.
pub const LOCKSTEP_CMD_OFF: u32 = 2;
/// Sub-command: inject faults.
pub const LOCKSTEP_CMD_INJECT: u32 = 3;
/// Status `enabled`: off.
pub const LOCKSTEP_MODE_OFF: u32 = 0;
/// Status `enabled`: on and protected.
pub const LOCKSTEP_MODE_ON: u32 = 1;
/// Status `enabled`: on but unprotected after an escalation.
pub const LOCKSTEP_MODE_UNPROTECTED: u32 = 2;
/// Role bit: leader.
pub const LOCKSTEP_ROLE_LEADER: u8 = 1 << 1;
/// Role bit: follower.
pub const LOCKSTEP_ROLE_FOLLOWER: u8 = 1 << 2;

/// Fault kinds, numbered as the sub-op takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum LockstepKind {
    /// `leader-reg`.
    LeaderReg = 0,
    /// `follower-reg`.
    FollowerReg = 1,
    /// `replica-state`.
    ReplicaState = 2,
    /// `effects`.
    Effects = 3,
    /// `digest`.
    Digest = 4,
    /// `mailbox`.
    Mailbox = 5,
    /// `hang`.
    Hang = 6,
}

impl LockstepKind {
    /// The `xl lockstep inject` name.
    pub const fn name(self) -> &'static str {
        match self {
            LockstepKind::LeaderReg => "leader-reg",
            LockstepKind::FollowerReg => "follower-reg",
            LockstepKind::ReplicaState => "replica-state",
            LockstepKind::Effects => "effects",
            LockstepKind::Digest => "digest",
            LockstepKind::Mailbox => "mailbox",
            LockstepKind::Hang => "hang",
        }
    }
}

/// The request in the sysctl union (`XenSysctlLockstep`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenSysctlLockstep {
    /// [`LOCKSTEP_CTL_VERSION`].
    pub version: u32,
    /// `LOCKSTEP_CMD_*`.
    pub cmd: u32,
    /// Inject: kind number.
    pub kind: u32,
    /// Inject: count.
    pub count: u32,
    /// Status: buffer address.
    pub status: u64,
    /// Status: IN buffer size, OUT bytes written.
    pub status_size: u32,
    /// Zero.
    pub pad: u32,
}

impl XenSysctlLockstep {
    /// A request for `cmd` (kind, count and buffer zero).
    pub const fn new(cmd: u32) -> Self {
        XenSysctlLockstep {
            version: LOCKSTEP_CTL_VERSION,
            cmd,
            kind: 0,
            count: 0,
            status: 0,
            status_size: 0,
            pad: 0,
        }
    }
}

/// Outcome counts of one kind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockstepKindCounts {
    /// Injected.
    pub injected: u64,
    /// Masked.
    pub masked: u64,
    /// Detected and recovered.
    pub recovered: u64,
    /// Detected and escalated.
    pub escalated: u64,
    /// Silent corruption.
    pub silent: u64,
    /// Crash or hang.
    pub crashed: u64,
}

/// The status (`LockstepStatus`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockstepStatus {
    /// Layout version.
    pub version: u32,
    /// `LOCKSTEP_MODE_*`.
    pub enabled: u32,
    /// CPUs in `roles`.
    pub nr_cpus: u32,
    /// Zero.
    pub pad: u32,
    /// Role bits per CPU.
    pub roles: [u8; 32],
    /// Transactions.
    pub transactions: u64,
    /// Commits.
    pub commits: u64,
    /// Rollbacks.
    pub rollbacks: u64,
    /// Retries.
    pub retries: u64,
    /// Detections.
    pub detected: u64,
    /// Recoveries.
    pub recovered: u64,
    /// Escalations.
    pub escalated: u64,
    /// Per-kind outcomes.
    pub kinds: [LockstepKindCounts; 7],
    /// Fastest recovery, ns.
    pub recovery_latency_ns_min: u64,
    /// Slowest recovery, ns.
    pub recovery_latency_ns_max: u64,
    /// Sum of recoveries, ns.
    pub recovery_latency_ns_total: u64,
    /// Leader replica bytes.
    pub replica_bytes: u64,
}

impl LockstepStatus {
    /// Counts of `kind`.
    pub fn kind(&self, kind: LockstepKind) -> &LockstepKindCounts {
        &self.kinds[kind as usize]
    }
    /// Role bits of `cpu`, if reported.
    pub fn role(&self, cpu: usize) -> Option<u8> {
        (cpu < self.nr_cpus as usize)
            .then(|| self.roles.get(cpu).copied())
            .flatten()
    }
    /// Mean recovery latency in ns.
    pub fn recovery_latency_ns_mean(&self) -> Option<u64> {
        self.recovery_latency_ns_total.checked_div(self.recovered)
    }
}

/// `struct xen_sysctl` carrying the request.
#[repr(C, align(8))]
struct Sysctl {
    cmd: u32,
    interface_version: u32,
    op: XenSysctlLockstep,
    rest: [u8; 128 - 32],
}

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<XenSysctlLockstep>() == 32);
const _: () = assert!(offset_of!(XenSysctlLockstep, status) == 16);
const _: () = assert!(size_of::<LockstepKindCounts>() == 48);
const _: () = assert!(size_of::<LockstepStatus>() == 472);
const _: () = assert!(offset_of!(LockstepStatus, transactions) == 48);
const _: () = assert!(offset_of!(LockstepStatus, kinds) == 104);
const _: () = assert!(offset_of!(LockstepStatus, recovery_latency_ns_min) == 440);
const _: () = assert!(offset_of!(LockstepStatus, replica_bytes) == 464);
const _: () = assert!(size_of::<Sysctl>() == 136);

fn sysctl(req: &XenSysctlLockstep) -> Result<(i64, XenSysctlLockstep), Errno> {
    let mut s = Sysctl {
        cmd: XEN_SYSCTL_DUALVISOR_LOCKSTEP,
        interface_version: XEN_SYSCTL_INTERFACE_VERSION,
        op: *req,
        rest: [0; 128 - 32],
    };
    // SAFETY: `s` is an exclusive, 8-aligned `struct xen_sysctl` that the hypervisor reads and
    // may write back; the callers make sure a status buffer in `req` is either valid for the
    // size given or an address the hypervisor can never write.
    let r = unsafe { hypercall::call(SYSCTL, [&mut s as *mut Sysctl as u64, 0, 0, 0, 0]) }?;
    Ok((r, s.op))
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
    let mut req = XenSysctlLockstep::new(LOCKSTEP_CMD_STATUS);
    req.status = &mut st as *mut LockstepStatus as u64;
    req.status_size = size_of::<LockstepStatus>() as u32;
    let (_, back) = sysctl(&req)?;
    Ok((st, back.status_size))
}

/// `xl lockstep on`.
pub fn on() -> XenResult {
    raw(&XenSysctlLockstep::new(LOCKSTEP_CMD_ON))
}

/// `xl lockstep off`.
pub fn off() -> XenResult {
    raw(&XenSysctlLockstep::new(LOCKSTEP_CMD_OFF))
}

/// `xl lockstep inject KIND COUNT`.
pub fn inject(kind: LockstepKind, count: u32) -> XenResult {
    raw(&XenSysctlLockstep {
        kind: kind as u32,
        count,
        ..XenSysctlLockstep::new(LOCKSTEP_CMD_INJECT)
    })
}
