//! DualVisor's lockstep control extension (not part of Xen): a `HYPERVISOR_sysctl`
//! sub-op carried in the ordinary `xen_sysctl` container, used by `xl lockstep`.
//!
//! Numbering. The sub-op is [`XEN_SYSCTL_DUALVISOR_LOCKSTEP`] = `0x4456_4C53` (ASCII
//! "DVLS"). Xen allocates sysctl commands densely upwards from 1 (Xen 4.17's highest is
//! `XEN_SYSCTL_get_cpu_policy` = 29) and the largest control-op numbers it has ever used are
//! domctl's gdbsx range, 1000-1003; a value above 2^30 is therefore not one Xen will reach.
//! The consequence on a real Xen is harmless: it answers the unknown command with -ENOSYS
//! (and -EACCES for a wrong `interface_version`, which callers set to 4.17's as usual).
//!
//! Layout. The request ([`XenSysctlLockstep`], 32 bytes) fits the 128-byte sysctl union.
//! The status ([`LockstepStatus`], 600 bytes) does not, so `status` passes a guest handle
//! to a caller buffer, the way `getdomaininfolist` does. Both carry [`LOCKSTEP_CTL_VERSION`].

use crate::errno::XenErrno;
use crate::guest_abi;

/// The sysctl command number of the lockstep control extension ("DVLS").
pub const XEN_SYSCTL_DUALVISOR_LOCKSTEP: u32 = 0x4456_4C53;
/// Version of the request and status layouts below (2: the status ends with the recovery
/// latency histogram).
pub const LOCKSTEP_CTL_VERSION: u32 = 2;

/// Buckets of [`LockstepStatus::recovery_latency_hist`].
pub const LOCKSTEP_LATENCY_BUCKETS: usize = 16;
/// Upper bounds (exclusive, ns) of the recovery-latency buckets, a 1-2-5 series from 1 µs to
/// 50 ms: bucket `i` counts the recoveries that took less than `LOCKSTEP_LATENCY_BOUNDS_NS[i]`
/// and at least the bound before it; the last bucket those of 50 ms or more.
pub const LOCKSTEP_LATENCY_BOUNDS_NS: [u64; LOCKSTEP_LATENCY_BUCKETS - 1] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
    5_000_000, 10_000_000, 20_000_000, 50_000_000,
];

/// Sub-command: copy a [`LockstepStatus`] to the caller's buffer.
pub const LOCKSTEP_CMD_STATUS: u32 = 0;
/// Sub-command: turn lockstep on.
pub const LOCKSTEP_CMD_ON: u32 = 1;
/// Sub-command: turn lockstep off (handlers then run once, unprotected).
pub const LOCKSTEP_CMD_OFF: u32 = 2;
/// Sub-command: inject `count` faults of `kind`.
pub const LOCKSTEP_CMD_INJECT: u32 = 3;
/// Sub-command, fault injection of a permanent hardware fault: the core serving role `kind`
/// ([`LOCKSTEP_CORE_LEADER`] or [`LOCKSTEP_CORE_FOLLOWER`]) stops responding for good, from
/// the next transaction on; `count` must be 0. The pair escalates with that core as the
/// suspect and takes it out of service: a spare CPU replaces a follower; a failed leader
/// steps down, its follower is promoted to leader and a spare, if any, follows it.
pub const LOCKSTEP_CMD_FAIL: u32 = 4;
/// [`LOCKSTEP_CMD_FAIL`]: the leader core.
pub const LOCKSTEP_CORE_LEADER: u32 = 0;
/// [`LOCKSTEP_CMD_FAIL`]: the follower core.
pub const LOCKSTEP_CORE_FOLLOWER: u32 = 1;

/// [`LockstepStatus::enabled`]: lockstep off (every transaction runs once, by choice).
pub const LOCKSTEP_MODE_OFF: u32 = 0;
/// [`LockstepStatus::enabled`]: on and protected (every transaction runs twice).
pub const LOCKSTEP_MODE_ON: u32 = 1;
/// [`LockstepStatus::enabled`]: on, but escalated without a spare: running unprotected.
pub const LOCKSTEP_MODE_UNPROTECTED: u32 = 2;

/// Physical CPUs the status reports roles for.
pub const LOCKSTEP_MAX_CPUS: usize = 32;
/// Role bit: compares digests and decides commit or rollback.
pub const LOCKSTEP_ROLE_COORDINATOR: u8 = 1 << 0;
/// Role bit: runs guest vCPUs and captures transaction inputs.
pub const LOCKSTEP_ROLE_LEADER: u8 = 1 << 1;
/// Role bit: shadows a leader against its own replica.
pub const LOCKSTEP_ROLE_FOLLOWER: u8 = 1 << 2;
/// Role bit: idle, ready to replace a core taken out of service.
pub const LOCKSTEP_ROLE_SPARE: u8 = 1 << 3;
/// Role bit: taken out of service after escalation.
pub const LOCKSTEP_ROLE_RETIRED: u8 = 1 << 4;
/// Role bits with their display names, lowest bit first.
pub const LOCKSTEP_ROLE_NAMES: [(u8, &str); 5] = [
    (LOCKSTEP_ROLE_COORDINATOR, "coordinator"),
    (LOCKSTEP_ROLE_LEADER, "leader"),
    (LOCKSTEP_ROLE_FOLLOWER, "follower"),
    (LOCKSTEP_ROLE_SPARE, "spare"),
    (LOCKSTEP_ROLE_RETIRED, "retired"),
];

/// Number of fault kinds.
pub const LOCKSTEP_NR_KINDS: usize = 7;

/// A kind of injected fault (the `kind` field of an inject request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum LockstepKind {
    /// Bit flip in a leader register during a handler.
    LeaderReg = 0,
    /// Bit flip in a follower register during a handler.
    FollowerReg = 1,
    /// Bit flip in a replica's state.
    ReplicaState = 2,
    /// Bit flip in effects in flight.
    Effects = 3,
    /// Bit flip in a digest in flight.
    Digest = 4,
    /// Corruption of a mailbox slot.
    Mailbox = 5,
    /// One core stops responding.
    Hang = 6,
}

impl LockstepKind {
    /// Every kind, in numeric order (the index into [`LockstepStatus::kinds`]).
    pub const ALL: [LockstepKind; LOCKSTEP_NR_KINDS] = [
        LockstepKind::LeaderReg,
        LockstepKind::FollowerReg,
        LockstepKind::ReplicaState,
        LockstepKind::Effects,
        LockstepKind::Digest,
        LockstepKind::Mailbox,
        LockstepKind::Hang,
    ];

    /// The command-line name, e.g. `"leader-reg"`.
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

    /// The kind with command-line name `name`.
    pub fn from_name(name: &str) -> Option<LockstepKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind numbered `value`.
    pub const fn from_u32(value: u32) -> Option<LockstepKind> {
        if (value as usize) < LOCKSTEP_NR_KINDS {
            Some(Self::ALL[value as usize])
        } else {
            None
        }
    }

    /// Index into [`LockstepStatus::kinds`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The request, stored in the `xen_sysctl` union.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenSysctlLockstep {
    /// Must be [`LOCKSTEP_CTL_VERSION`].
    pub version: u32,
    /// `LOCKSTEP_CMD_*`.
    pub cmd: u32,
    /// Inject: a [`LockstepKind`] number.
    pub kind: u32,
    /// Inject: faults to inject (at least 1).
    pub count: u32,
    /// Status: guest handle of a [`LockstepStatus`] buffer.
    pub status: u64,
    /// Status: IN buffer size in bytes; OUT bytes written.
    pub status_size: u32,
    /// Inject and fail: the lockstep pair acted on, numbered as the boot log and
    /// `xl lockstep status` number them (0 = CPU1/CPU2, 1 = CPU3/CPU4, ...; there are
    /// [`LockstepStatus::nr_pairs`]): inject arms the faults in the transactions of that
    /// pair's leader CPU, fail makes a core of the pair serving those transactions fail.
    /// 0 (pair 0) is what a caller that predates several pairs sends (this was padding).
    /// A pair the hypervisor does not have: -EINVAL (the hypervisor checks; [`decode`] can
    /// not). The other sub-commands: must be zero (-EINVAL).
    ///
    /// [`decode`]: LockstepRequest::decode
    pub pair: u32,
}
guest_abi!(XenSysctlLockstep {
    version,
    cmd,
    kind,
    count,
    status,
    status_size,
    pair
});

/// A validated lockstep request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockstepRequest {
    /// Copy the status to `buffer` (a guest handle of `size` bytes).
    Status {
        /// Guest handle.
        buffer: u64,
        /// Buffer size in bytes.
        size: u32,
    },
    /// Turn lockstep on.
    On,
    /// Turn lockstep off.
    Off,
    /// Inject `count` faults of `kind` in the transactions of pair `pair`.
    Inject {
        /// Fault kind.
        kind: LockstepKind,
        /// Number of faults.
        count: u32,
        /// The pair ([`XenSysctlLockstep::pair`]).
        pair: u32,
    },
    /// Make the core serving `core` (`LOCKSTEP_CORE_*`) of pair `pair` fail for good.
    Fail {
        /// [`LOCKSTEP_CORE_LEADER`] or [`LOCKSTEP_CORE_FOLLOWER`].
        core: u32,
        /// The pair ([`XenSysctlLockstep::pair`]).
        pair: u32,
    },
}

impl LockstepRequest {
    /// Validates a request: -EACCES for another layout version, -ENOSYS for an unknown
    /// sub-command, -EINVAL for a bad kind, a zero count (inject), a bad core or a non-zero
    /// count (fail) or a non-zero pair (status, on, off), -ENOBUFS for a status buffer
    /// smaller than [`LockstepStatus`]. Whether the pair exists is the hypervisor's check.
    pub fn decode(op: &XenSysctlLockstep) -> Result<LockstepRequest, XenErrno> {
        if op.version != LOCKSTEP_CTL_VERSION {
            return Err(XenErrno::EACCES);
        }
        let per_pair = matches!(op.cmd, LOCKSTEP_CMD_INJECT | LOCKSTEP_CMD_FAIL);
        if op.pair != 0 && !per_pair && op.cmd <= LOCKSTEP_CMD_FAIL {
            return Err(XenErrno::EINVAL);
        }
        match op.cmd {
            LOCKSTEP_CMD_STATUS => {
                if (op.status_size as usize) < core::mem::size_of::<LockstepStatus>() {
                    return Err(XenErrno::ENOBUFS);
                }
                Ok(LockstepRequest::Status {
                    buffer: op.status,
                    size: op.status_size,
                })
            }
            LOCKSTEP_CMD_ON => Ok(LockstepRequest::On),
            LOCKSTEP_CMD_OFF => Ok(LockstepRequest::Off),
            LOCKSTEP_CMD_INJECT => {
                let kind = LockstepKind::from_u32(op.kind).ok_or(XenErrno::EINVAL)?;
                if op.count == 0 {
                    return Err(XenErrno::EINVAL);
                }
                Ok(LockstepRequest::Inject {
                    kind,
                    count: op.count,
                    pair: op.pair,
                })
            }
            LOCKSTEP_CMD_FAIL => {
                if op.count != 0
                    || !matches!(op.kind, LOCKSTEP_CORE_LEADER | LOCKSTEP_CORE_FOLLOWER)
                {
                    return Err(XenErrno::EINVAL);
                }
                Ok(LockstepRequest::Fail {
                    core: op.kind,
                    pair: op.pair,
                })
            }
            _ => Err(XenErrno::ENOSYS),
        }
    }

    /// The wire form of this request.
    pub const fn encode(&self) -> XenSysctlLockstep {
        let mut op = XenSysctlLockstep {
            version: LOCKSTEP_CTL_VERSION,
            cmd: 0,
            kind: 0,
            count: 0,
            status: 0,
            status_size: 0,
            pair: 0,
        };
        match *self {
            LockstepRequest::Status { buffer, size } => {
                op.cmd = LOCKSTEP_CMD_STATUS;
                op.status = buffer;
                op.status_size = size;
            }
            LockstepRequest::On => op.cmd = LOCKSTEP_CMD_ON,
            LockstepRequest::Off => op.cmd = LOCKSTEP_CMD_OFF,
            LockstepRequest::Inject { kind, count, pair } => {
                op.cmd = LOCKSTEP_CMD_INJECT;
                op.kind = kind as u32;
                op.count = count;
                op.pair = pair;
            }
            LockstepRequest::Fail { core, pair } => {
                op.cmd = LOCKSTEP_CMD_FAIL;
                op.kind = core;
                op.pair = pair;
            }
        }
        op
    }
}

/// Outcome counts of the faults injected of one kind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockstepKindCounts {
    /// Faults injected.
    pub injected: u64,
    /// No observable effect.
    pub masked: u64,
    /// Detected, rolled back and recovered by re-execution.
    pub recovered: u64,
    /// Detected and escalated (core taken out of service or protection dropped).
    pub escalated: u64,
    /// Silent data corruption (differed from the golden run, undetected).
    pub silent: u64,
    /// Hypervisor crash or hang.
    pub crashed: u64,
}
guest_abi!(LockstepKindCounts {
    injected,
    masked,
    recovered,
    escalated,
    silent,
    crashed
});

/// The status `xl lockstep status` shows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockstepStatus {
    /// [`LOCKSTEP_CTL_VERSION`].
    pub version: u32,
    /// Non-zero while lockstep is on: `LOCKSTEP_MODE_*` (on, or on but unprotected).
    pub enabled: u32,
    /// Entries of `roles` in use (physical CPUs).
    pub nr_cpus: u32,
    /// Lockstep pairs ([`XenSysctlLockstep::pair`] names one of `0..nr_pairs`): `(n-1)/2`
    /// with `n` >= 5 CPUs, else 1 (one pair, or the one engine of a CPU without partner).
    /// Was padding (0) before several pairs.
    pub nr_pairs: u32,
    /// `LOCKSTEP_ROLE_*` bits per physical CPU.
    pub roles: [u8; LOCKSTEP_MAX_CPUS],
    /// Transactions run (hypercalls and VM exits).
    pub transactions: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Rollbacks.
    pub rollbacks: u64,
    /// Re-executions after a rollback.
    pub retries: u64,
    /// Divergences or missed deadlines detected.
    pub detected: u64,
    /// Detections recovered by re-execution.
    pub recovered: u64,
    /// Detections escalated after the retry limit.
    pub escalated: u64,
    /// Injection outcomes, indexed by [`LockstepKind::index`].
    pub kinds: [LockstepKindCounts; LOCKSTEP_NR_KINDS],
    /// Fastest recovery (detection to commit), ns; 0 if none yet.
    pub recovery_latency_ns_min: u64,
    /// Slowest recovery, ns.
    pub recovery_latency_ns_max: u64,
    /// Sum of recovery latencies, ns (mean = total / recovered).
    pub recovery_latency_ns_total: u64,
    /// Bytes held by the leader's replica (data and undo records), as last measured.
    pub replica_bytes: u64,
    /// Recoveries per latency bucket ([`LOCKSTEP_LATENCY_BOUNDS_NS`]); they add up to
    /// `recovered`.
    pub recovery_latency_hist: [u64; LOCKSTEP_LATENCY_BUCKETS],
}
guest_abi!(LockstepStatus {
    version,
    enabled,
    nr_cpus,
    nr_pairs,
    roles,
    transactions,
    commits,
    rollbacks,
    retries,
    detected,
    recovered,
    escalated,
    kinds,
    recovery_latency_ns_min,
    recovery_latency_ns_max,
    recovery_latency_ns_total,
    replica_bytes,
    recovery_latency_hist
});

impl LockstepStatus {
    /// The outcome counts of `kind`.
    pub const fn kind(&self, kind: LockstepKind) -> &LockstepKindCounts {
        &self.kinds[kind.index()]
    }
    /// Mean recovery latency in ns, if anything was recovered.
    pub const fn recovery_latency_ns_mean(&self) -> Option<u64> {
        match self.recovery_latency_ns_total.checked_div(self.recovered) {
            Some(mean) => Some(mean),
            None => None,
        }
    }
    /// How many recoveries took less than `bound_ns`, which must be one of
    /// [`LOCKSTEP_LATENCY_BOUNDS_NS`] (the count is exact there); `None` for another value.
    pub fn recoveries_below_ns(&self, bound_ns: u64) -> Option<u64> {
        latency_below_ns(&self.recovery_latency_hist, bound_ns)
    }
    /// The role bits of physical CPU `cpu`, if it is reported.
    pub fn role(&self, cpu: usize) -> Option<u8> {
        if cpu < self.nr_cpus as usize {
            self.roles.get(cpu).copied()
        } else {
            None
        }
    }
}

/// In a recovery-latency histogram (or the difference of two), how many took less than
/// `bound_ns`, one of [`LOCKSTEP_LATENCY_BOUNDS_NS`]; `None` for another value.
pub fn latency_below_ns(hist: &[u64; LOCKSTEP_LATENCY_BUCKETS], bound_ns: u64) -> Option<u64> {
    let i = LOCKSTEP_LATENCY_BOUNDS_NS
        .iter()
        .position(|&b| b == bound_ns)?;
    Some(hist[..=i].iter().sum())
}

/// The bucket of a histogram (or the difference of two) that holds the `q`-th quantile
/// (`num/den` of the recoveries, e.g. 1/2 for the median), as its bounds in ns: at least the
/// first, below the second (`None` for the open-ended last bucket). `None` when empty.
pub fn latency_quantile_ns(
    hist: &[u64; LOCKSTEP_LATENCY_BUCKETS],
    num: u64,
    den: u64,
) -> Option<(u64, Option<u64>)> {
    let total: u64 = hist.iter().sum();
    if total == 0 || den == 0 || num > den {
        return None;
    }
    // The rank of the quantile, 1-based, rounded up (the median of 4 is the 2nd).
    let rank = (u128::from(total) * u128::from(num))
        .div_ceil(u128::from(den))
        .max(1);
    let mut seen = 0u128;
    for (i, n) in hist.iter().enumerate() {
        seen += u128::from(*n);
        if seen >= rank {
            let lo = i
                .checked_sub(1)
                .map_or(0, |j| LOCKSTEP_LATENCY_BOUNDS_NS[j]);
            return Some((lo, LOCKSTEP_LATENCY_BOUNDS_NS.get(i).copied()));
        }
    }
    None
}

use core::mem::{offset_of, size_of};
const _: () = assert!(size_of::<XenSysctlLockstep>() == 32);
const _: () = assert!(offset_of!(XenSysctlLockstep, status) == 16);
const _: () = assert!(offset_of!(XenSysctlLockstep, status_size) == 24);
const _: () = assert!(size_of::<XenSysctlLockstep>() <= crate::sysctl::XEN_SYSCTL_PAYLOAD_SIZE);
const _: () = assert!(size_of::<LockstepKindCounts>() == 48);
const _: () = assert!(size_of::<LockstepStatus>() == 600);
const _: () = assert!(offset_of!(LockstepStatus, recovery_latency_hist) == 472);
const _: () = assert!(offset_of!(XenSysctlLockstep, pair) == 28);
const _: () = assert!(offset_of!(LockstepStatus, nr_pairs) == 12);
const _: () = assert!(offset_of!(LockstepStatus, roles) == 16);
const _: () = assert!(offset_of!(LockstepStatus, transactions) == 48);
const _: () = assert!(offset_of!(LockstepStatus, escalated) == 96);
const _: () = assert!(offset_of!(LockstepStatus, kinds) == 104);
const _: () = assert!(offset_of!(LockstepStatus, recovery_latency_ns_min) == 440);
const _: () = assert!(offset_of!(LockstepStatus, recovery_latency_ns_total) == 456);
const _: () = assert!(offset_of!(LockstepStatus, replica_bytes) == 464);
// Outside everything Xen 4.17 numbers (sysctl 1..=29, domctl up to 1003).
const _: () = assert!(XEN_SYSCTL_DUALVISOR_LOCKSTEP > 1 << 30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_abi::GuestAbi;
    use crate::sysctl::XenSysctl;

    #[test]
    fn number_spells_dvls() {
        assert_eq!(&XEN_SYSCTL_DUALVISOR_LOCKSTEP.to_be_bytes(), b"DVLS");
    }

    #[test]
    fn kinds_by_name_and_number() {
        for (i, k) in LockstepKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(LockstepKind::from_u32(i as u32), Some(k));
            assert_eq!(LockstepKind::from_name(k.name()), Some(k));
        }
        assert_eq!(
            LockstepKind::from_name("replica-state"),
            Some(LockstepKind::ReplicaState)
        );
        assert_eq!(LockstepKind::from_name("cosmic-ray"), None);
        assert_eq!(LockstepKind::from_u32(7), None);
    }

    #[test]
    fn inject_request_through_sysctl() {
        let req = LockstepRequest::Inject {
            kind: LockstepKind::Digest,
            count: 100,
            pair: 1,
        };
        let mut s = XenSysctl::new(XEN_SYSCTL_DUALVISOR_LOCKSTEP);
        s.set_payload(&req.encode()).unwrap();
        let b = s.to_vec();
        assert_eq!(&b[..4], &[0x53, 0x4c, 0x56, 0x44]);
        assert_eq!(
            &b[8..24],
            &[2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 100, 0, 0, 0]
        );
        // The pair is the request's last word (union offset 28).
        assert_eq!(&b[8 + 28..8 + 32], &[1, 0, 0, 0]);
        let back = XenSysctl::read_from(&b).unwrap();
        let op: XenSysctlLockstep = back.payload().unwrap();
        assert_eq!(LockstepRequest::decode(&op), Ok(req));
    }

    #[test]
    fn simple_requests_round_trip() {
        for req in [
            LockstepRequest::On,
            LockstepRequest::Off,
            LockstepRequest::Status {
                buffer: 0x1000,
                size: 600,
            },
            LockstepRequest::Fail {
                core: LOCKSTEP_CORE_LEADER,
                pair: 0,
            },
            LockstepRequest::Fail {
                core: LOCKSTEP_CORE_FOLLOWER,
                pair: 3,
            },
        ] {
            assert_eq!(LockstepRequest::decode(&req.encode()), Ok(req));
        }
    }

    #[test]
    fn bad_requests_are_rejected() {
        let good = LockstepRequest::Inject {
            kind: LockstepKind::Hang,
            count: 1,
            pair: 0,
        }
        .encode();
        let on = LockstepRequest::On.encode();
        let cases = [
            (XenSysctlLockstep { version: 1, ..good }, XenErrno::EACCES),
            (XenSysctlLockstep { version: 3, ..good }, XenErrno::EACCES),
            (XenSysctlLockstep { cmd: 5, ..good }, XenErrno::ENOSYS),
            (
                XenSysctlLockstep {
                    cmd: LOCKSTEP_CMD_FAIL,
                    kind: 2,
                    count: 0,
                    ..good
                },
                XenErrno::EINVAL,
            ),
            (
                XenSysctlLockstep {
                    cmd: LOCKSTEP_CMD_FAIL,
                    kind: LOCKSTEP_CORE_FOLLOWER,
                    count: 1,
                    ..good
                },
                XenErrno::EINVAL,
            ),
            (XenSysctlLockstep { kind: 7, ..good }, XenErrno::EINVAL),
            (XenSysctlLockstep { count: 0, ..good }, XenErrno::EINVAL),
            (XenSysctlLockstep { pair: 1, ..on }, XenErrno::EINVAL),
            (
                XenSysctlLockstep {
                    cmd: LOCKSTEP_CMD_OFF,
                    pair: 2,
                    ..on
                },
                XenErrno::EINVAL,
            ),
            (
                LockstepRequest::Status {
                    buffer: 0x1000,
                    size: 599,
                }
                .encode(),
                XenErrno::ENOBUFS,
            ),
        ];
        for (op, err) in cases {
            assert_eq!(LockstepRequest::decode(&op), Err(err), "{op:?}");
        }
    }

    #[test]
    fn status_layout_and_helpers() {
        let mut st = LockstepStatus {
            version: LOCKSTEP_CTL_VERSION,
            enabled: 1,
            nr_cpus: 4,
            transactions: 1000,
            commits: 998,
            rollbacks: 3,
            retries: 3,
            detected: 3,
            recovered: 2,
            escalated: 1,
            recovery_latency_ns_min: 900,
            recovery_latency_ns_max: 1500,
            recovery_latency_ns_total: 2400,
            ..LockstepStatus::default()
        };
        st.roles[0] = LOCKSTEP_ROLE_COORDINATOR;
        st.roles[1] = LOCKSTEP_ROLE_LEADER;
        st.roles[2] = LOCKSTEP_ROLE_FOLLOWER;
        st.roles[3] = LOCKSTEP_ROLE_SPARE;
        st.kinds[LockstepKind::Mailbox.index()] = LockstepKindCounts {
            injected: 10,
            masked: 4,
            recovered: 5,
            escalated: 1,
            silent: 0,
            crashed: 0,
        };
        st.recovery_latency_hist[2] = 1;
        st.recovery_latency_hist[15] = 1;
        let b = st.to_vec();
        assert_eq!(b.len(), 600);
        assert_eq!(&b[472 + 16..472 + 24], &1u64.to_le_bytes());
        assert_eq!(&b[16..20], &[1, 2, 4, 8]);
        assert_eq!(&b[48..56], &1000u64.to_le_bytes());
        // kinds[5].injected at 104 + 5 * 48.
        assert_eq!(&b[344..352], &10u64.to_le_bytes());
        assert_eq!(LockstepStatus::read_from(&b), Ok(st));
        assert_eq!(st.kind(LockstepKind::Mailbox).recovered, 5);
        assert_eq!(st.recovery_latency_ns_mean(), Some(1200));
        assert_eq!(st.role(3), Some(LOCKSTEP_ROLE_SPARE));
        assert_eq!(st.role(4), None);
        assert_eq!(LockstepStatus::default().recovery_latency_ns_mean(), None);
        assert_eq!(LOCKSTEP_ROLE_NAMES[1], (LOCKSTEP_ROLE_LEADER, "leader"));
        assert_eq!(st.recoveries_below_ns(5_000), Some(1));
        assert_eq!(st.recoveries_below_ns(20_000), Some(1));
        assert_eq!(st.recoveries_below_ns(20_001), None, "not a bound");
    }

    #[test]
    fn latency_quantiles_name_their_bucket() {
        let mut h = [0u64; LOCKSTEP_LATENCY_BUCKETS];
        assert_eq!(latency_quantile_ns(&h, 1, 2), None, "empty");
        // 3 below 1 us, 1 in 5-10 us, 1 of 50 ms or more.
        h[0] = 3;
        h[3] = 1;
        h[15] = 1;
        assert_eq!(latency_quantile_ns(&h, 1, 2), Some((0, Some(1_000))));
        assert_eq!(latency_quantile_ns(&h, 4, 5), Some((5_000, Some(10_000))));
        assert_eq!(latency_quantile_ns(&h, 1, 1), Some((50_000_000, None)));
        assert_eq!(
            latency_quantile_ns(&h, 0, 1),
            Some((0, Some(1_000))),
            "the minimum"
        );
        assert_eq!(latency_quantile_ns(&h, 2, 1), None, "above 1");
        assert_eq!(latency_quantile_ns(&h, 1, 0), None);
        assert_eq!(latency_below_ns(&h, 10_000), Some(4));
        assert_eq!(latency_below_ns(&h, 50_000_000), Some(4));
    }
}
