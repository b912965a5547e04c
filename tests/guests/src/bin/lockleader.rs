//! `lockleader`: a leader core that fails for good while there are several lockstep pairs
//! (`-smp 5`: pair 0 = CPU1/CPU2 runs vCPU 0, pair 1 = CPU3/CPU4 runs vCPU 1):
//! - `fail leader` of pair 1: pair 1 escalates with its leader as the suspect; that CPU
//!   leaves service (retired) and vCPU 1 moves to pair 0's leader, where it keeps making
//!   hypercalls, every one answered right; pair 1's follower, not suspected, stands by as a
//!   spare; lockstep stays on, and faults injected into pair 0 are all recovered;
//! - `fail follower` of pair 0 then: the freed CPU joins pair 0 in its place, and faults are
//!   recovered again.
//!
//!
//! `rerouted` on its command line: pair 1's follower fails first (no spare at `-smp 5`:
//! pair 1's transactions then go through pair 0), then pair 1's leader: it fails in pair 0,
//! the pair its transactions go through. CPU3 leaves service all the same, vCPU 1 moves to
//! CPU1, and pair 0's follower, freed by the escalation, follows in pair 0 again: faults
//! injected into pair 0 are recovered.
//!
//! With one pair (`-smp 3`/`-smp 4`) a failing leader is replaced by its follower (the
//! `dom0-lockstep-promote` sessions); here only the refusals are checked. On Xen 4.17 the
//! sub-op does not exist (-ENOSYS): `Test result: SKIP`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;
use guest_rt::lockstep_ctl::{self as ls, LockstepKind, LockstepStatus};
use guest_rt::start_info::{StartInfo, StartInfoExt};
use guest_rt::test::{check, check_eq, info, skip};
use guest_rt::xenctl::ops::DOMCTL_GETVCPUINFO;
use guest_rt::xenctl::{domctl, CtlBuf, DOMCTL_U};
use guest_rt::{println, sched, smp, vcpu, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

use test_guests::pair_guest::{cpus_with, effects, status, vcpu1, GO1, WORK1, WRONG1};

/// The physical CPU dom0's `vcpu` is placed on (`XEN_DOMCTL_getvcpuinfo`'s `cpu`).
fn cpu_of(vcpu: u32) -> Option<usize> {
    let mut op = CtlBuf::domctl(DOMCTL_GETVCPUINFO, 0);
    op.set_u32(DOMCTL_U, vcpu);
    domctl(&mut op).ok()?;
    Some(op.u32(DOMCTL_U + 16) as usize)
}

/// Injects 3 effects faults into pair `pair` and checks that all 3 are recovered.
fn three_recovered(what: &str, pair: u32) {
    let Some(before) = status() else {
        check("status", false);
        return;
    };
    check_eq(what, ls::inject_into(LockstepKind::Effects, 3, pair), Ok(0));
    let goal = effects(&before).injected + 3;
    let done = sched::wait_for(|| status().is_some_and(|s| effects(&s).injected >= goal))
        .then(status)
        .flatten();
    let Some(done) = done else {
        check("  ... the 3 faults are injected", false);
        return;
    };
    let (k0, k1) = (effects(&before), effects(&done));
    check_eq(
        "  ... injected, recovered, escalated",
        (
            k1.injected - k0.injected,
            k1.recovered - k0.recovered,
            k1.escalated - k0.escalated,
        ),
        (3, 3, 0),
    );
}

/// Waits until the status shows one more escalation than `before`; the status then.
fn escalated_once(before: &LockstepStatus) -> Option<LockstepStatus> {
    let ok = sched::wait_for(|| status().is_some_and(|s| s.escalated > before.escalated));
    check("  ... the pair escalates", ok);
    let now = status()?;
    info(format_args!(
        "roles now {:?}, escalated {}",
        &now.roles[..now.nr_cpus.min(8) as usize],
        now.escalated
    ));
    check_eq("  ... once", now.escalated - before.escalated, 1);
    check_eq(
        "  ... lockstep still on (protected)",
        now.enabled,
        ls::LOCKSTEP_MODE_ON,
    );
    Some(now)
}

/// Makes pair 1's leader (CPU `l1`) fail for good and checks that its pair escalates once
/// and the CPU is retired; the status after that, if it could be read.
fn fail_leader_1(before: &LockstepStatus, l1: usize) -> Option<LockstepStatus> {
    check_eq(
        "fail pair 1's leader",
        ls::fail(ls::LOCKSTEP_CORE_LEADER, 1),
        Ok(0),
    );
    let Some(now) = escalated_once(before) else {
        check("status", false);
        return None;
    };
    check_eq(
        "  ... pair 1's leader CPU retired",
        now.role(l1),
        Some(ls::LOCKSTEP_ROLE_RETIRED),
    );
    Some(now)
}

/// vCPU 1 keeps making hypercalls (10 more).
fn vcpu1_runs(what: &str) {
    let w = WORK1.load(Ordering::SeqCst);
    check(
        what,
        sched::wait_for(|| WORK1.load(Ordering::SeqCst) >= w + 10),
    );
}

fn main(si: &StartInfo) {
    println!("lockleader: a leader core that fails for good, with several pairs");
    let st = match ls::status() {
        Ok((st, _)) => st,
        Err(Errno::ENOSYS) => {
            skip(format_args!(
                "the lockstep sysctl answers -ENOSYS: not DualVisor (Xen has no such sub-op)"
            ));
            return;
        }
        Err(e) => {
            check_eq("lockstep status", Err::<(), Errno>(e), Ok(()));
            return;
        }
    };
    let pairs = st.nr_pairs;
    for pair in [pairs, pairs + 1, u32::MAX] {
        check_eq(
            "fail the leader of a pair the hypervisor does not have -> -EINVAL",
            ls::fail(ls::LOCKSTEP_CORE_LEADER, pair),
            Err(Errno::EINVAL),
        );
    }
    if pairs < 2 {
        info(format_args!("one pair: two pairs need five CPUs or more"));
        return;
    }
    let rerouted = si
        .cmd_line_str()
        .is_some_and(|c| c.split_whitespace().any(|w| w == "rerouted"));
    two_pairs(si, &st, rerouted);
}

fn two_pairs(si: &StartInfo, st: &LockstepStatus, rerouted: bool) {
    let two = |bit| {
        let mut c = cpus_with(st, bit);
        (c.next(), c.next())
    };
    let ((Some(l0), Some(l1)), (Some(f0), Some(f1))) = (
        two(ls::LOCKSTEP_ROLE_LEADER),
        two(ls::LOCKSTEP_ROLE_FOLLOWER),
    ) else {
        check("status: two leaders and two followers", false);
        return;
    };

    let ctx = match smp::build_context(si, 1, vcpu1) {
        Ok(c) => c,
        Err(e) => {
            check_eq("vCPU 1's context", Err::<(), Errno>(e), Ok(()));
            return;
        }
    };
    check_eq("VCPUOP_initialise(1)", smp::initialise(1, &ctx), Ok(0));
    check_eq("VCPUOP_up(1)", vcpu::up(1), Ok(0));
    vcpu1_runs("vCPU 1 makes hypercalls");
    check_eq("vCPU 1 runs on pair 1's leader", cpu_of(1), Some(l1));
    check_eq("vCPU 0 runs on pair 0's leader", cpu_of(0), Some(l0));

    if rerouted {
        return follower_then_leader(l0, l1, f0, f1);
    }

    // Pair 1's leader fails for good.
    let Some(before) = status() else {
        check("status", false);
        return;
    };
    let Some(failed) = fail_leader_1(&before, l1) else {
        return;
    };
    check_eq(
        "  ... pair 1's follower CPU stands by as a spare",
        failed.role(f1),
        Some(ls::LOCKSTEP_ROLE_SPARE),
    );
    check_eq(
        "  ... pair 0 unchanged: leader",
        failed.role(l0),
        Some(ls::LOCKSTEP_ROLE_LEADER),
    );
    check_eq(
        "  ... pair 0 unchanged: follower",
        failed.role(f0),
        Some(ls::LOCKSTEP_ROLE_FOLLOWER),
    );
    check(
        "  ... vCPU 1 moved to pair 0's leader",
        sched::wait_for(|| cpu_of(1) == Some(l0)),
    );
    vcpu1_runs("  ... vCPU 1 keeps making hypercalls there");
    three_recovered("inject 3 effects faults into pair 0", 0);

    // Pair 0's follower fails too: the CPU freed above takes its place.
    let Some(before) = status() else {
        check("status", false);
        return;
    };
    check_eq(
        "fail pair 0's follower",
        ls::fail(ls::LOCKSTEP_CORE_FOLLOWER, 0),
        Ok(0),
    );
    let Some(now) = escalated_once(&before) else {
        check("status", false);
        return;
    };
    check_eq(
        "  ... pair 0's follower CPU retired",
        now.role(f0),
        Some(ls::LOCKSTEP_ROLE_RETIRED),
    );
    check_eq(
        "  ... pair 1's old follower CPU follows in pair 0",
        now.role(f1),
        Some(ls::LOCKSTEP_ROLE_FOLLOWER),
    );
    three_recovered("inject 3 effects faults into pair 0", 0);
    vcpu1_runs("vCPU 1 still makes hypercalls");
    GO1.store(false, Ordering::SeqCst);
    check_eq(
        "vCPU 1's answers were all right",
        WRONG1.load(Ordering::SeqCst),
        0,
    );
}

/// Pair 1's follower fails (its transactions go through pair 0 from then on), then pair 1's
/// leader, in pair 0.
fn follower_then_leader(l0: usize, l1: usize, f0: usize, f1: usize) {
    let Some(before) = status() else {
        check("status", false);
        return;
    };
    check_eq(
        "fail pair 1's follower",
        ls::fail(ls::LOCKSTEP_CORE_FOLLOWER, 1),
        Ok(0),
    );
    let Some(failed) = escalated_once(&before) else {
        check("status", false);
        return;
    };
    check_eq(
        "  ... pair 1's follower CPU retired",
        failed.role(f1),
        Some(ls::LOCKSTEP_ROLE_RETIRED),
    );
    vcpu1_runs("  ... vCPU 1 keeps making hypercalls (through pair 0)");

    let Some(now) = fail_leader_1(&failed, l1) else {
        return;
    };
    check_eq(
        "  ... pair 0's leader still leads",
        now.role(l0),
        Some(ls::LOCKSTEP_ROLE_LEADER),
    );
    check(
        "  ... vCPU 1 moved to pair 0's leader",
        sched::wait_for(|| cpu_of(1) == Some(l0)),
    );
    check(
        "  ... pair 0's follower CPU follows again",
        sched::wait_for(|| {
            status().is_some_and(|s| s.role(f0) == Some(ls::LOCKSTEP_ROLE_FOLLOWER))
        }),
    );
    vcpu1_runs("  ... vCPU 1 keeps making hypercalls there");
    three_recovered("inject 3 effects faults into pair 0", 0);
    GO1.store(false, Ordering::SeqCst);
    check_eq(
        "vCPU 1's answers were all right",
        WRONG1.load(Ordering::SeqCst),
        0,
    );
}
