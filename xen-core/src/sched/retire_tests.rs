//! Retiring a leader CPU: through real `ExitKind::RetireCpu` transactions on the scheduler
//! test rig, the vCPUs placed there move, keep their state and timers, and nothing is placed
//! there again; refused requests change nothing.

use super::tests::{virqs, Rig, HZ};
use super::*;
use crate::hv::Abort;
use crate::request::{ExitKind, GuestRegs, Request};
use dom0_interface::sched::SCHEDOP_BLOCK;
use dom0_interface::vcpu::{
    RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING, VCPUOP_DOWN, VCPUOP_INITIALISE,
    VCPUOP_UP,
};
use dom0_interface::xen::{HYPERVISOR_SCHED_OP, HYPERVISOR_SET_TIMER_OP};

fn retire_req(pcpu: u32) -> Request {
    Request::exit(
        ExitKind::RetireCpu,
        DOMID_IDLE,
        pcpu,
        GuestRegs::default(),
        0,
        0,
        0,
    )
}

fn logs(out: &[Effect]) -> Vec<alloc::string::String> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Log(l) => Some(alloc::string::String::from_utf8_lossy(l).into_owned()),
            _ => None,
        })
        .collect()
}

/// dom0 with four vCPUs on leader CPUs 0, 1 and 2, all up: vCPU 0 on CPU0, 1 on CPU1, 2 on
/// CPU2, 3 queued on CPU0 (the least loaded, lowest id).
fn four_on_three() -> Rig {
    let mut r = Rig::new(4, 3);
    r.map(0x8000, &{
        let mut c = [0u8; 5168];
        c[4984 + 24..4984 + 32].copy_from_slice(&(0x99u64 << 12).to_le_bytes());
        c[512] = 1 << 2; // VGCF_in_kernel
        c
    });
    for v in 1..4 {
        assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, v, 0x8000), 0);
        assert_eq!(r.vcpu_op(0, VCPUOP_UP, v, 0), 0);
    }
    let pcpus: Vec<u32> = (0..4).map(|v| vcpu_sched(&r.state, (0, v)).pcpu).collect();
    assert_eq!(pcpus, [0, 1, 2, 0]);
    r
}

#[test]
fn a_retired_cpus_vcpus_move_and_keep_running() {
    let mut r = four_on_three();
    r.world.tsc = HZ / 100;
    // vCPU 1 sleeps until 100 ms: CPU1 idles. Then CPU0, which runs vCPU 0 and queues
    // vCPU 3, is retired.
    let (ret, _) = r.call(1, HYPERVISOR_SET_TIMER_OP, [HZ / 10, 0, 0, 0, 0]);
    assert_eq!(ret, 0);
    let (ret, _) = r.call(
        1,
        HYPERVISOR_SCHED_OP,
        [u64::from(SCHEDOP_BLOCK), 0, 0, 0, 0],
    );
    assert_eq!(ret, 0);
    assert_eq!(r.current(1), None, "CPU1 idles");
    let out = r.run(retire_req(0));
    assert!(!r.state.runqs.contains_key(&0), "CPU0's queue is gone");
    assert!(out.contains(&Effect::Sched(SchedEffect::RunVcpu {
        pcpu: 0,
        vcpu: None
    })));
    assert!(out.contains(&Effect::Sched(SchedEffect::ArmTimer {
        pcpu: 0,
        deadline: None
    })));
    // vCPU 0 went to the idle CPU1 and runs there; vCPU 3 to CPU1 or CPU2, queued.
    assert_eq!(vcpu_sched(&r.state, (0, 0)).pcpu, 1);
    assert_eq!(r.current(1), Some((0, 0)));
    assert_eq!(
        vcpu_sched(&r.state, (0, 0)).runstate.state,
        RUNSTATE_RUNNING
    );
    let v3 = vcpu_sched(&r.state, (0, 3));
    assert_ne!(v3.pcpu, 0);
    assert_eq!(v3.runstate.state, RUNSTATE_RUNNABLE);
    assert!(r
        .state
        .runqs
        .get(&v3.pcpu)
        .is_some_and(|q| q.queue.contains(&(0, 3))));
    let l = logs(&out);
    assert!(
        l.contains(&"sched: d0v0 moves from CPU0 to CPU1".into()),
        "{l:?}"
    );
    assert!(l.contains(&"sched: CPU0 retired: it runs no vCPU any more".into()));
    // The blocked vCPU 1 stayed on CPU1 with its timer: it fires there.
    assert_eq!(
        vcpu_sched(&r.state, (0, 1)).runstate.state,
        RUNSTATE_BLOCKED
    );
    r.world.tsc = HZ / 10;
    let out = r.interrupt(1);
    // (The running vCPUs' default periodic timers fire too.)
    assert!(virqs(&out).contains(&(0, 1)), "{:?}", virqs(&out));
    assert!(!r.vcpu(1).blocked);
    assert!(r.state.runqs.iter().all(|(_, q)| q.current.is_some()));
}

#[test]
fn blocked_vcpus_of_a_retired_cpu_move_with_their_timers() {
    let mut r = four_on_three();
    r.world.tsc = HZ / 100;
    // vCPU 2 (alone on CPU2) sleeps until 100 ms.
    r.call(2, HYPERVISOR_SET_TIMER_OP, [HZ / 10, 0, 0, 0, 0]);
    r.call(
        2,
        HYPERVISOR_SCHED_OP,
        [u64::from(SCHEDOP_BLOCK), 0, 0, 0, 0],
    );
    assert_eq!(r.current(2), None);
    let out = r.run(retire_req(2));
    let to = vcpu_sched(&r.state, (0, 2)).pcpu;
    assert!(to == 0 || to == 1, "moved to a leader that is left: {to}");
    assert!(r.vcpu(2).blocked, "still blocked");
    // The new CPU arms its timer for the sleeper's deadline (or earlier).
    let armed = out.iter().rev().find_map(|e| match e {
        Effect::Sched(SchedEffect::ArmTimer { pcpu, deadline }) if *pcpu == to => Some(*deadline),
        _ => None,
    });
    assert!(armed.flatten().is_some_and(|d| d <= HZ / 10), "{armed:?}");
    r.world.tsc = HZ / 10;
    let out = r.interrupt(to);
    assert!(virqs(&out).contains(&(0, 2)), "{:?}", virqs(&out));
    assert!(!r.vcpu(2).blocked, "woken where it moved");
}

#[test]
fn nothing_is_placed_on_a_retired_cpu_again() {
    let mut r = four_on_three();
    r.run(retire_req(1));
    r.run(retire_req(2));
    for v in 0..4 {
        assert_eq!(vcpu_sched(&r.state, (0, v)).pcpu, 0, "vCPU {v}");
    }
    // Down and up again: placed on the one CPU left.
    assert_eq!(r.vcpu_op(0, VCPUOP_DOWN, 2, 0), 0);
    assert_eq!(r.vcpu_op(0, VCPUOP_UP, 2, 0), 0);
    assert_eq!(vcpu_sched(&r.state, (0, 2)).pcpu, 0);
    // An interrupt on a retired CPU (late, from its old timer) changes nothing.
    let out = r.interrupt(1);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn the_last_cpu_and_unknown_cpus_are_not_retired() {
    let mut r = Rig::new(2, 1);
    let digest = lockstep::replica::full_digest(&r.state);
    let out = r.run(retire_req(0));
    assert_eq!(
        logs(&out),
        ["sched: CPU0 not retired: it is the last leader CPU"]
    );
    let out = r.run(retire_req(7));
    assert_eq!(
        logs(&out),
        ["sched: CPU7 not retired: it runs no vCPUs (not a leader CPU, or retired already)"]
    );
    assert!(out
        .iter()
        .all(|e| !matches!(e, Effect::Sched(SchedEffect::RunVcpu { .. }))));
    assert_eq!(lockstep::replica::full_digest(&r.state), digest);
    assert!(r.state.runqs.contains_key(&0));
}

#[test]
fn only_the_hypervisor_retires_a_cpu() {
    let mut r = four_on_three();
    let digest = lockstep::replica::full_digest(&r.state);
    let req = Request::exit(ExitKind::RetireCpu, 0, 1, GuestRegs::default(), 0, 0, 0);
    let words = req.to_words();
    let mut effects = lockstep::effects::Effects::new();
    let mut input = lockstep::input::Input::direct(&words, &mut r.world);
    let mut j = Journal::new();
    let report = lockstep::machine::execute::<crate::hv::Xen>(
        &mut r.state,
        &mut j,
        99,
        &mut effects,
        &mut input,
    );
    assert_eq!(report.error, Some(Abort::BadRequest));
    lockstep::replica::rollback(&mut r.state, 99);
    assert_eq!(lockstep::replica::full_digest(&r.state), digest);
}

#[test]
fn a_rolled_back_retirement_leaves_the_replica_bit_identical() {
    let mut r = four_on_three();
    let digest = lockstep::replica::full_digest(&r.state);
    let out = r.run_rolled_back(retire_req(0));
    assert!(!out.is_empty());
    assert_eq!(lockstep::replica::full_digest(&r.state), digest);
    assert!(r.state.runqs.contains_key(&0));
    assert_eq!(vcpu_sched(&r.state, (0, 3)).pcpu, 0);
}

#[test]
fn random_sequences_with_retirements_keep_the_run_queues_consistent() {
    use super::tests::{assert_no_sleeper_forever, check_invariants, random_vcpu_op};
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut retirements = 0;
    for round in 0..20 {
        let mut r = four_on_three();
        let mut now = 0u64;
        let mut retired: Vec<u32> = Vec::new();
        for step in 0..300 {
            now += 1 + next(3 * SLICE_NS);
            r.world.tsc = now;
            let leaders: Vec<u32> = (0..3).filter(|p| !retired.contains(p)).collect();
            let running: Vec<u32> = leaders
                .iter()
                .filter_map(|p| r.current(*p))
                .map(|k| k.1)
                .collect();
            let actor = running
                .get(next(running.len().max(1) as u64) as usize)
                .copied();
            let op = next(10);
            let done = random_vcpu_op(&mut r, op, actor, now, &mut next);
            if done {
                // A vCPU operation.
            } else if op == 4 && step > 100 && leaders.len() > 1 && next(4) == 0 {
                let p = leaders[next(leaders.len() as u64) as usize];
                r.run(retire_req(p));
                retired.push(p);
                retirements += 1;
            } else {
                // A late tick of a retired CPU, now and then, changes nothing.
                r.interrupt(next(3) as u32);
            }
            check_invariants(&r, now);
            for p in &retired {
                assert!(!r.state.runqs.contains_key(p), "round {round}");
                assert!(
                    r.state.vsched.iter().all(|(_, v)| v.pcpu != *p),
                    "round {round}: a vCPU placed on retired CPU{p}"
                );
            }
            assert_no_sleeper_forever(&r, round);
        }
    }
    assert!(retirements >= 20, "{retirements} retirements");
}
