//! `lockpairs`: DualVisor's lockstep control acting on one named pair (the `pair` field of
//! the lockstep sysctl, `xl lockstep inject KIND COUNT pair=P`, `xl lockstep fail CORE
//! pair=P`). A pair the hypervisor does not have is refused with -EINVAL (with one pair,
//! `-smp 3`/`-smp 4`, that is all there is to check). With two pairs (`-smp 5`: pair 0 =
//! CPU1/CPU2 runs vCPU 0, pair 1 = CPU3/CPU4 runs vCPU 1):
//! - faults injected into pair 1 wait for pair 1's transactions: vCPU 0's own hypercalls
//!   (pair 0) do not take them while vCPU 1 is down; once vCPU 1 runs, making hypercalls,
//!   all of them are injected, detected and recovered;
//! - `fail follower` of pair 1 retires pair 1's follower CPU (CPU4), not pair 0's: pair 1
//!   escalates once, lockstep stays on (pair 1's transactions go through pair 0, or a spare
//!   CPU joins pair 1 with `-smp 6`), vCPU 1 keeps running, and faults injected into pair 1
//!   afterwards are recovered again.
//!
//! On Xen 4.17 the sub-op does not exist (-ENOSYS): `Test result: SKIP`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;
use guest_rt::lockstep_ctl::{self as ls, LockstepKind, LockstepStatus};
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info, skip};
use guest_rt::{println, sched, smp, vcpu, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

use test_guests::pair_guest::{cpus_with, effects, status, vcpu1, GO1, WORK1, WRONG1};

fn main(si: &StartInfo) {
    println!("lockpairs: lockstep control of a named pair");
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
    let leaders = cpus_with(&st, ls::LOCKSTEP_ROLE_LEADER).count();
    info(format_args!(
        "{pairs} pair(s), {} CPUs, roles {:?}",
        st.nr_cpus,
        &st.roles[..st.nr_cpus.min(8) as usize]
    ));
    check_eq("status: one pair per leader CPU", pairs as usize, leaders);
    for pair in [pairs, pairs + 1, u32::MAX] {
        check_eq(
            "inject into a pair the hypervisor does not have -> -EINVAL",
            ls::inject_into(LockstepKind::Effects, 1, pair),
            Err(Errno::EINVAL),
        );
        check_eq(
            "fail a follower of a pair the hypervisor does not have -> -EINVAL",
            ls::fail(ls::LOCKSTEP_CORE_FOLLOWER, pair),
            Err(Errno::EINVAL),
        );
    }
    if pairs < 2 {
        info(format_args!("one pair: pair 1 needs five CPUs or more"));
        return;
    }
    two_pairs(si, &st);
}

/// Waits (vCPU 0 yielding: transactions of pair 0) until `n` more effects faults than in
/// `before` were injected; the status then, if they were.
fn wait_injected(before: &LockstepStatus, n: u64) -> Option<LockstepStatus> {
    let goal = effects(before).injected + n;
    let ok = sched::wait_for(|| status().is_some_and(|s| effects(&s).injected >= goal));
    ok.then(status).flatten()
}

fn two_pairs(si: &StartInfo, st: &LockstepStatus) {
    let followers: [Option<usize>; 2] = {
        let mut f = cpus_with(st, ls::LOCKSTEP_ROLE_FOLLOWER);
        [f.next(), f.next()]
    };
    let (Some(f0), Some(f1)) = (followers[0], followers[1]) else {
        check("status: two followers", false);
        return;
    };
    let spare = cpus_with(st, ls::LOCKSTEP_ROLE_SPARE).next();

    // Faults for pair 1 wait for pair 1's transactions: none run while vCPU 1 is down.
    let Some(before) = status() else {
        check("status", false);
        return;
    };
    check_eq(
        "inject 5 effects faults into pair 1",
        ls::inject_into(LockstepKind::Effects, 5, 1),
        Ok(0),
    );
    for _ in 0..40 {
        let _ = sched::yield_now();
    }
    let Some(idle) = status() else {
        check("status", false);
        return;
    };
    check_eq(
        "  ... none injected by vCPU 0's transactions (pair 0) while vCPU 1 is down",
        effects(&idle).injected,
        effects(&before).injected,
    );

    // vCPU 1 runs on pair 1's leader, making hypercalls: the faults land there.
    let ctx = match smp::build_context(si, 1, vcpu1) {
        Ok(c) => c,
        Err(e) => {
            check_eq("vCPU 1's context", Err::<(), Errno>(e), Ok(()));
            return;
        }
    };
    check_eq("VCPUOP_initialise(1)", smp::initialise(1, &ctx), Ok(0));
    check_eq("VCPUOP_up(1)", vcpu::up(1), Ok(0));
    check(
        "vCPU 1 makes hypercalls",
        sched::wait_for(|| WORK1.load(Ordering::SeqCst) >= 10),
    );
    let Some(after) = wait_injected(&before, 5) else {
        check("  ... the 5 faults are injected once vCPU 1 runs", false);
        return;
    };
    let (k0, k1) = (effects(&before), effects(&after));
    check_eq(
        "  ... injected, recovered, escalated, silent, crashed",
        (
            k1.injected - k0.injected,
            k1.recovered - k0.recovered,
            k1.escalated - k0.escalated,
            k1.silent - k0.silent,
            k1.crashed - k0.crashed,
        ),
        (5, 5, 0, 0, 0),
    );

    // Pair 1's follower fails for good: pair 1 escalates, pair 0's follower stays.
    check_eq(
        "fail pair 1's follower",
        ls::fail(ls::LOCKSTEP_CORE_FOLLOWER, 1),
        Ok(0),
    );
    let escalated = sched::wait_for(|| status().is_some_and(|s| s.escalated > after.escalated));
    check("  ... pair 1 escalates", escalated);
    let Some(failed) = status() else {
        check("status", false);
        return;
    };
    info(format_args!(
        "after the failure: mode {} roles {:?} escalated {}",
        failed.enabled,
        &failed.roles[..failed.nr_cpus.min(8) as usize],
        failed.escalated
    ));
    check_eq("  ... once", failed.escalated - after.escalated, 1);
    check_eq(
        "  ... lockstep still on (protected)",
        failed.enabled,
        ls::LOCKSTEP_MODE_ON,
    );
    check_eq(
        "  ... pair 1's follower CPU retired",
        failed.role(f1).map(|r| r & ls::LOCKSTEP_ROLE_RETIRED != 0),
        Some(true),
    );
    check_eq(
        "  ... pair 0's follower CPU still follows",
        failed.role(f0),
        Some(ls::LOCKSTEP_ROLE_FOLLOWER),
    );
    if let Some(s) = spare {
        check_eq(
            "  ... the spare CPU follows in pair 1",
            failed.role(s),
            Some(ls::LOCKSTEP_ROLE_FOLLOWER),
        );
    }
    let w = WORK1.load(Ordering::SeqCst);
    check(
        "  ... vCPU 1 keeps making hypercalls",
        sched::wait_for(|| WORK1.load(Ordering::SeqCst) >= w + 10),
    );

    // Pair 1's transactions are protected again: faults injected into it are recovered.
    check_eq(
        "inject 3 effects faults into pair 1",
        ls::inject_into(LockstepKind::Effects, 3, 1),
        Ok(0),
    );
    match wait_injected(&failed, 3) {
        Some(done) => {
            let (k0, k1) = (effects(&failed), effects(&done));
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
        None => {
            check("  ... the 3 faults are injected", false);
        }
    }
    GO1.store(false, Ordering::SeqCst);
    check_eq(
        "vCPU 1's answers were all right",
        WRONG1.load(Ordering::SeqCst),
        0,
    );
}
