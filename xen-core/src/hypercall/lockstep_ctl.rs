//! DualVisor's lockstep control sysctl sub-op (`XEN_SYSCTL_DUALVISOR_LOCKSTEP`, "DVLS",
//! outside Xen's numbering; see `dom0_interface::lockstep_ctl`): status, on, off and
//! inject KIND COUNT and fail CORE, for a privileged caller.
//!
//! Lockstep's own numbers are not replica state: the engine's statistics, the pair's health
//! and the CPU roles live outside both replicas and change with every transaction. The
//! status is therefore *input*: the handler asks for it word by word through
//! [`value_kind::lockstep_status`] (the leader answers from its engine and records the
//! words, the follower replays them), so both executions copy the same bytes to the
//! caller. `on`, `off` and `inject` change the engine, which must not happen inside a
//! transaction: they are [`Effect::Lockstep`]s, applied by the embedder after commit, i.e.
//! at a transaction boundary.
//!
//! `hypercall::sysctl` (Xen's `do_sysctl` checks) routes the sub-op to [`lockstep_op`].

use crate::effect::Effect;
use crate::hv::{value_kind, Ctx, HvResult, HvState};
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::lockstep_ctl::{
    LockstepRequest, LockstepStatus, XenSysctlLockstep, LOCKSTEP_CMD_FAIL, LOCKSTEP_CMD_INJECT,
    LOCKSTEP_CMD_OFF, LOCKSTEP_CMD_ON, LOCKSTEP_MODE_ON,
};
use dom0_interface::sysctl::XenSysctl;

/// Words of a [`LockstepStatus`] (its size is a multiple of 8).
pub const STATUS_WORDS: usize = core::mem::size_of::<LockstepStatus>() / 8;
const _: () = assert!(core::mem::size_of::<LockstepStatus>().is_multiple_of(8));

/// An engine control action, applied after commit (`cmd` is `LOCKSTEP_CMD_ON`, `_OFF`,
/// `_INJECT` or `_FAIL`; `kind` and `count` are the validated injection — for `_FAIL`,
/// `kind` is the core — zero otherwise; `pair` an existing pair for `_INJECT` and `_FAIL`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockstepOp {
    /// `LOCKSTEP_CMD_ON`, `LOCKSTEP_CMD_OFF`, `LOCKSTEP_CMD_INJECT` or `LOCKSTEP_CMD_FAIL`.
    pub cmd: u32,
    /// Inject: a `LockstepKind` number; fail: `LOCKSTEP_CORE_LEADER` or `LOCKSTEP_CORE_FOLLOWER`.
    pub kind: u32,
    /// Inject: how many transactions get one fault each.
    pub count: u32,
    /// Inject, fail: the lockstep pair (`XenSysctlLockstep::pair`, checked against the
    /// status's `nr_pairs`); 0 otherwise.
    pub pair: u32,
}
lockstep::impl_value!(LockstepOp {
    cmd,
    kind,
    count,
    pair
});

/// The lockstep sub-op of a decoded, version-checked `xen_sysctl` at guest address `addr`
/// (the caller is privileged). Status copies the status to the caller's buffer and writes
/// the bytes written back into the request (`status_size`), as Xen copies a sysctl back.
pub fn lockstep_op(
    _state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    mut op: XenSysctl,
    addr: u64,
) -> HvResult {
    let mut req: XenSysctlLockstep = op.payload().map_err(|_| XenErrno::EINVAL)?;
    match LockstepRequest::decode(&req)? {
        LockstepRequest::Status { buffer, .. } => {
            let mut bytes = alloc::vec::Vec::with_capacity(STATUS_WORDS * 8);
            for i in 0..STATUS_WORDS {
                let w = ctx.value(value_kind::lockstep_status(i as u32))?;
                bytes.extend_from_slice(&w.to_le_bytes());
            }
            ctx.copy_to_guest(buffer, &bytes)?;
            req.status_size = bytes.len() as u32;
            op.set_payload(&req).map_err(|_| XenErrno::EINVAL)?;
            ctx.copy_to_guest(addr, &op.to_vec())?;
            Ok(0)
        }
        LockstepRequest::On => control(ctx, LOCKSTEP_CMD_ON, 0, 0, 0),
        LockstepRequest::Off => control(ctx, LOCKSTEP_CMD_OFF, 0, 0, 0),
        LockstepRequest::Inject { kind, count, pair } => {
            check_pair(ctx, pair)?;
            control(ctx, LOCKSTEP_CMD_INJECT, kind as u32, count, pair)
        }
        LockstepRequest::Fail { core, pair } => {
            check_pair(ctx, pair)?;
            // Either core of a protected pair may fail: a failed follower is replaced by a
            // spare, a failed leader steps down and its follower is promoted. Only a
            // protected pair has a second core to turn to (the mode is the status's second
            // word-half, an input like the rest of the status).
            let mode = ctx.value(value_kind::lockstep_status(0))? >> 32;
            if mode != u64::from(LOCKSTEP_MODE_ON) {
                return Err(XenErrno::ENODEV.into());
            }
            control(ctx, LOCKSTEP_CMD_FAIL, core, 0, pair)
        }
    }
}

/// -EINVAL unless `pair` is one of the hypervisor's pairs: `nr_pairs`, the upper half of
/// the status's second word (an input like the rest of the status; at least one pair).
fn check_pair(ctx: &mut Ctx<'_, '_, '_>, pair: u32) -> Result<(), crate::hv::HvError> {
    let nr_pairs = (ctx.value(value_kind::lockstep_status(1))? >> 32).max(1);
    if u64::from(pair) >= nr_pairs {
        return Err(XenErrno::EINVAL.into());
    }
    Ok(())
}

fn control(ctx: &mut Ctx<'_, '_, '_>, cmd: u32, kind: u32, count: u32, pair: u32) -> HvResult {
    ctx.emit(Effect::Lockstep(LockstepOp {
        cmd,
        kind,
        count,
        pair,
    }));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::testing::Harness;
    use dom0_interface::lockstep_ctl::XEN_SYSCTL_DUALVISOR_LOCKSTEP;
    use dom0_interface::lockstep_ctl::{LockstepKind, LOCKSTEP_CTL_VERSION};
    use dom0_interface::xen::HYPERVISOR_SYSCTL;

    const OP: u64 = 0x10_0000;
    const BUF: u64 = 0x20_0000;

    fn call(h: &mut Harness, req: &XenSysctlLockstep) -> crate::hypercall::testing::Outcome {
        let mut s = XenSysctl::new(XEN_SYSCTL_DUALVISOR_LOCKSTEP);
        s.set_payload(req).unwrap();
        h.mem.map(OP, &s.to_vec());
        h.hypercall(u64::from(HYPERVISOR_SYSCTL), [OP, 0, 0, 0, 0])
    }

    fn controls(o: &crate::hypercall::testing::Outcome) -> alloc::vec::Vec<LockstepOp> {
        o.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Lockstep(op) => Some(*op),
                _ => None,
            })
            .collect()
    }

    fn status_values(h: &mut Harness, st: &LockstepStatus) {
        let b = st.to_vec();
        for i in 0..STATUS_WORDS {
            let w = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
            h.mem
                .values
                .entry(value_kind::lockstep_status(i as u32))
                .or_default()
                .push_back(w);
        }
    }

    #[test]
    fn status_copies_the_engine_numbers_and_reports_the_size() {
        let mut h = Harness::dom0();
        let mut st = LockstepStatus {
            version: LOCKSTEP_CTL_VERSION,
            enabled: 1,
            nr_cpus: 3,
            transactions: 1234,
            commits: 1200,
            detected: 100,
            recovered: 100,
            recovery_latency_ns_total: 9_999,
            replica_bytes: 1 << 20,
            ..LockstepStatus::default()
        };
        st.kinds[LockstepKind::Effects.index()].injected = 100;
        st.kinds[LockstepKind::Effects.index()].recovered = 100;
        st.roles[..3].copy_from_slice(&[1, 2, 4]);
        st.recovery_latency_hist[3] = 100;
        status_values(&mut h, &st);
        h.mem.map(BUF, &[0xAA; 608]);
        let req = LockstepRequest::Status {
            buffer: BUF,
            size: 608,
        }
        .encode();
        let o = call(&mut h, &req);
        assert_eq!(o.ret, 0);
        assert!(controls(&o).is_empty(), "status changes nothing");
        let mut got = [0u8; 600];
        for (i, b) in got.iter_mut().enumerate() {
            *b = h.mem.bytes[&(BUF + i as u64)];
        }
        assert_eq!(LockstepStatus::read_from(&got), Ok(st));
        assert_eq!(h.mem.bytes[&(BUF + 600)], 0xAA, "nothing past the status");
        // The request was copied back with the bytes written.
        let mut back = [0u8; XenSysctl::SIZE];
        for (i, b) in back.iter_mut().enumerate() {
            *b = h.mem.bytes[&(OP + i as u64)];
        }
        let back: XenSysctlLockstep = XenSysctl::read_from(&back).unwrap().payload().unwrap();
        assert_eq!(back.status_size, 600);
    }

    #[test]
    fn on_off_inject_are_effects_applied_after_commit() {
        let mut h = Harness::dom0();
        let inject = |pair| LockstepRequest::Inject {
            kind: LockstepKind::Effects,
            count: 100,
            pair,
        };
        let cases = [
            (LockstepRequest::On, LOCKSTEP_CMD_ON, 0, 0, 0),
            (LockstepRequest::Off, LOCKSTEP_CMD_OFF, 0, 0, 0),
            (inject(0), LOCKSTEP_CMD_INJECT, 3, 100, 0),
            (inject(1), LOCKSTEP_CMD_INJECT, 3, 100, 1),
        ];
        for (req, cmd, kind, count, pair) in cases {
            // Two pairs (`-smp 5`).
            status_values(&mut h, &pairs(2));
            let o = call(&mut h, &req.encode());
            assert_eq!(o.ret, 0, "{req:?}");
            assert_eq!(
                controls(&o),
                [LockstepOp {
                    cmd,
                    kind,
                    count,
                    pair
                }]
            );
        }
    }

    /// A protected status with `nr_pairs` pairs.
    fn pairs(nr_pairs: u32) -> LockstepStatus {
        LockstepStatus {
            version: LOCKSTEP_CTL_VERSION,
            enabled: LOCKSTEP_MODE_ON,
            nr_cpus: 2 * nr_pairs + 1,
            nr_pairs,
            ..LockstepStatus::default()
        }
    }

    #[test]
    fn a_pair_the_hypervisor_does_not_have_is_einval() {
        use dom0_interface::lockstep_ctl::LOCKSTEP_CORE_FOLLOWER;
        for (nr_pairs, pair) in [(2, 2), (1, 1), (0, 1), (15, 99)] {
            for req in [
                LockstepRequest::Inject {
                    kind: LockstepKind::Effects,
                    count: 1,
                    pair,
                },
                LockstepRequest::Fail {
                    core: LOCKSTEP_CORE_FOLLOWER,
                    pair,
                },
            ] {
                let mut h = Harness::dom0();
                status_values(&mut h, &pairs(nr_pairs));
                let o = call(&mut h, &req.encode());
                assert_eq!(o.ret, XenErrno::EINVAL.as_neg(), "{nr_pairs} {req:?}");
                assert!(controls(&o).is_empty());
            }
        }
        // The last pair exists; no pair count (one engine) means pair 0 only.
        for (nr_pairs, pair) in [(2, 1), (0, 0)] {
            let mut h = Harness::dom0();
            status_values(&mut h, &pairs(nr_pairs));
            let req = LockstepRequest::Fail {
                core: LOCKSTEP_CORE_FOLLOWER,
                pair,
            };
            assert_eq!(call(&mut h, &req.encode()).ret, 0, "{nr_pairs} {pair}");
        }
    }

    #[test]
    fn failing_a_core_needs_a_protected_pair() {
        use dom0_interface::lockstep_ctl::{
            LOCKSTEP_CORE_FOLLOWER, LOCKSTEP_CORE_LEADER, LOCKSTEP_MODE_UNPROTECTED,
        };
        let follower = LockstepRequest::Fail {
            core: LOCKSTEP_CORE_FOLLOWER,
            pair: 0,
        };
        let mut h = Harness::dom0();
        let on = LockstepStatus {
            version: LOCKSTEP_CTL_VERSION,
            enabled: LOCKSTEP_MODE_ON,
            ..LockstepStatus::default()
        };
        status_values(&mut h, &on);
        let o = call(&mut h, &follower.encode());
        assert_eq!(o.ret, 0);
        assert_eq!(
            controls(&o),
            [LockstepOp {
                cmd: LOCKSTEP_CMD_FAIL,
                kind: LOCKSTEP_CORE_FOLLOWER,
                count: 0,
                pair: 0
            }]
        );
        status_values(&mut h, &on);
        let o = call(
            &mut h,
            &LockstepRequest::Fail {
                core: LOCKSTEP_CORE_LEADER,
                pair: 0,
            }
            .encode(),
        );
        assert_eq!(o.ret, 0);
        assert_eq!(
            controls(&o),
            [LockstepOp {
                cmd: LOCKSTEP_CMD_FAIL,
                kind: LOCKSTEP_CORE_LEADER,
                count: 0,
                pair: 0
            }]
        );
        // Each call above consumed exactly the status word it asked for.
        h.mem.values.clear();
        for enabled in [LOCKSTEP_MODE_UNPROTECTED, 0] {
            status_values(&mut h, &LockstepStatus { enabled, ..on });
            let o = call(&mut h, &follower.encode());
            assert_eq!(o.ret, XenErrno::ENODEV.as_neg(), "mode {enabled}");
            assert!(controls(&o).is_empty());
        }
    }

    #[test]
    fn bad_requests_get_xen_errnos_and_change_nothing() {
        let mut h = Harness::dom0();
        let inject = LockstepRequest::Inject {
            kind: LockstepKind::Hang,
            count: 1,
            pair: 0,
        }
        .encode();
        let small = LockstepRequest::Status {
            buffer: BUF,
            size: 599,
        }
        .encode();
        let cases = [
            (XenSysctlLockstep { kind: 7, ..inject }, XenErrno::EINVAL),
            (XenSysctlLockstep { count: 0, ..inject }, XenErrno::EINVAL),
            (
                XenSysctlLockstep {
                    pair: 9,
                    ..LockstepRequest::On.encode()
                },
                XenErrno::EINVAL,
            ),
            (XenSysctlLockstep { cmd: 99, ..inject }, XenErrno::ENOSYS),
            (
                XenSysctlLockstep {
                    version: 0,
                    ..inject
                },
                XenErrno::EACCES,
            ),
            (small, XenErrno::ENOBUFS),
            // An unmapped status buffer.
            (
                LockstepRequest::Status {
                    buffer: 0xdead_0000,
                    size: 600,
                }
                .encode(),
                XenErrno::EFAULT,
            ),
        ];
        for (req, err) in cases {
            let o = call(&mut h, &req);
            assert_eq!(o.ret, err.as_neg(), "{req:?}");
            assert!(controls(&o).is_empty(), "{req:?}");
        }
    }

    #[test]
    fn container_errors_and_other_commands() {
        let mut h = Harness::dom0();
        // Unmapped container.
        let o = h.hypercall(u64::from(HYPERVISOR_SYSCTL), [0xbad_0000, 0, 0, 0, 0]);
        assert_eq!(o.ret, XenErrno::EFAULT.as_neg());
        // Wrong interface version.
        let mut s = XenSysctl::new(XEN_SYSCTL_DUALVISOR_LOCKSTEP);
        s.interface_version = 0x14;
        h.mem.map(OP, &s.to_vec());
        let o = h.hypercall(u64::from(HYPERVISOR_SYSCTL), [OP, 0, 0, 0, 0]);
        assert_eq!(o.ret, XenErrno::EACCES.as_neg());
        // A command no one handles.
        h.mem.map(OP, &XenSysctl::new(0x7777).to_vec());
        let o = h.hypercall(u64::from(HYPERVISOR_SYSCTL), [OP, 0, 0, 0, 0]);
        assert_eq!(o.ret, XenErrno::ENOSYS.as_neg());
    }

    #[test]
    fn unprivileged_callers_get_eperm() {
        let mut h = Harness::domu(3);
        let o = call(&mut h, &LockstepRequest::Off.encode());
        assert_eq!(o.ret, XenErrno::EPERM.as_neg());
        assert!(controls(&o).is_empty());
    }
}
