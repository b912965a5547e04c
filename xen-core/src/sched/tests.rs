//! Scheduler, timer and time tests: a harness that runs real transactions (hypercalls from any
//! vCPU, timer interrupts) with a settable TSC and machine memory, plus properties of the
//! scheduler core over random operation sequences.

use super::*;
use crate::domain::Vcpu;
use crate::hv::{create_domain, Xen};
use crate::request::{ExitKind, GuestRegs, Request};
use crate::time::TimeBase;
use alloc::collections::BTreeMap;
use dom0_interface::sched::{SCHEDOP_BLOCK, SCHEDOP_YIELD};
use dom0_interface::vcpu::*;
use dom0_interface::xen::{HYPERVISOR_SCHED_OP, HYPERVISOR_SET_TIMER_OP, HYPERVISOR_VCPU_OP};
use lockstep::effects::Effects;
use lockstep::input::{Env, Input};
use lockstep::machine::execute;

/// 1 GHz TSC: 1 tick = 1 ns, which keeps the arithmetic in tests obvious.
pub(crate) const HZ: u64 = 1_000_000_000;
pub(crate) const SHARED_INFO: u64 = 0x10_0000;

#[derive(Default)]
pub(crate) struct World {
    pub tsc: u64,
    pub guest: BTreeMap<u64, u8>,
    pub machine: BTreeMap<u64, u8>,
}

impl Env for World {
    fn value(&mut self, kind: u32) -> u64 {
        match kind {
            value_kind::TSC => self.tsc,
            value_kind::SYSTEM_TIME => self.tsc,
            _ => 0,
        }
    }
    fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        for (i, b) in buf.iter_mut().enumerate() {
            match self.guest.get(&addr.wrapping_add(i as u64)) {
                Some(v) => *b = *v,
                None => return false,
            }
        }
        true
    }
    fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> bool {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.machine.get(&(maddr + i as u64)).copied().unwrap_or(0);
        }
        true
    }
}

/// Root page tables (mfns) the tests' vCPU contexts use.
pub(crate) const ROOTS: [u64; 2] = [0x1234, 0x99];

pub(crate) struct Rig {
    pub state: HvState,
    pub journal: Journal,
    pub world: World,
    epoch: u64,
}

impl Rig {
    /// dom0 with `vcpus` vCPUs on `pcpus` leader CPUs, time base configured, vCPU 0 running.
    pub fn new(vcpus: u32, pcpus: u32) -> Rig {
        let mut state = HvState::new();
        let mut journal = Journal::new();
        journal.begin(1);
        create_domain(&mut state, &mut journal, 0, true, vcpus, 1024).expect("create");
        {
            let mut s = Sched::at_tsc(&mut state, &mut journal, 0);
            configure_time(
                &mut s,
                TimeBase::new(HZ, 0, 1_700_000_000, 0).expect("base"),
            );
            for p in 0..pcpus {
                add_pcpu(&mut s, p);
            }
            set_shared_info(&mut s, 0, SHARED_INFO);
            wake(&mut s, (0, 0));
        }
        // The page-table roots the tests' VCPUOP_initialise contexts name: validated,
        // pinned L4s of dom0, as a built domain's root is.
        for mfn in ROOTS {
            let root = crate::mm::PageInfo {
                owner: 0,
                count: 2,
                allocated: true,
                ty: crate::mm::PageType::L4,
                type_count: 1,
                validated: true,
                pinned: true,
                ..Default::default()
            };
            state.frames.insert(&mut journal, mfn, root);
        }
        lockstep::replica::forget(&mut state);
        Rig {
            state,
            journal,
            world: World::default(),
            epoch: 1,
        }
    }

    pub fn run(&mut self, req: Request) -> Vec<Effect> {
        self.epoch += 1;
        let words = req.to_words();
        let mut effects = Effects::new();
        let mut input = Input::direct(&words, &mut self.world);
        let report = execute::<Xen>(
            &mut self.state,
            &mut self.journal,
            self.epoch,
            &mut effects,
            &mut input,
        );
        assert!(report.error.is_none(), "aborted: {:?}", report.error);
        let out: Vec<Effect> = effects.as_slice().to_vec();
        for e in &out {
            match e {
                Effect::WriteGuest { addr, data } => {
                    for (i, b) in data.iter().enumerate() {
                        self.world.guest.insert(addr + i as u64, *b);
                    }
                }
                Effect::WriteMachine { maddr, value } => {
                    for (i, b) in value.to_le_bytes().iter().enumerate() {
                        self.world.machine.insert(maddr + i as u64, *b);
                    }
                }
                Effect::Sched(SchedEffect::WriteMachineByte { maddr, value }) => {
                    self.world.machine.insert(*maddr, *value);
                }
                // The rig has one guest address space for every vCPU; only mapped bytes
                // are written (faults are ignored, as the bare-metal side does).
                Effect::Sched(SchedEffect::WriteVcpuGuest { addr, data, .. }) => {
                    let end = addr + data.len() as u64;
                    if (*addr..end).all(|a| self.world.guest.contains_key(&a)) {
                        for (i, b) in data.iter().enumerate() {
                            self.world.guest.insert(addr + i as u64, *b);
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Runs `req` and rolls its transaction back, as the lockstep engine does when the two
    /// executions disagree: the effects it produced (none applied).
    pub fn run_rolled_back(&mut self, req: Request) -> Vec<Effect> {
        self.epoch += 1;
        let words = req.to_words();
        let mut effects = Effects::new();
        let mut journal = Journal::new();
        let mut input = Input::direct(&words, &mut self.world);
        let report = execute::<Xen>(
            &mut self.state,
            &mut journal,
            self.epoch,
            &mut effects,
            &mut input,
        );
        assert!(report.error.is_none(), "aborted: {:?}", report.error);
        lockstep::replica::rollback(&mut self.state, self.epoch);
        effects.as_slice().to_vec()
    }

    pub fn call(&mut self, vcpu: u32, nr: u32, args: [u64; 5]) -> (i64, Vec<Effect>) {
        let regs = GuestRegs::for_hypercall(u64::from(nr), args);
        let out = self.run(Request::hypercall(0, vcpu, regs));
        let ret = out
            .iter()
            .find_map(|e| match e {
                Effect::Return(v) => Some(*v),
                _ => None,
            })
            .expect("a Return");
        (ret, out)
    }

    pub fn vcpu_op(&mut self, vcpu: u32, cmd: u32, target: u32, arg: u64) -> i64 {
        self.call(
            vcpu,
            HYPERVISOR_VCPU_OP,
            [u64::from(cmd), u64::from(target), arg, 0, 0],
        )
        .0
    }

    pub fn interrupt(&mut self, pcpu: u32) -> Vec<Effect> {
        let req = Request::exit(
            ExitKind::Interrupt,
            dom0_interface::xen::DOMID_IDLE,
            pcpu,
            GuestRegs::default(),
            0xf0,
            0,
            0,
        );
        self.run(req)
    }

    pub fn map(&mut self, addr: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.world.guest.insert(addr + i as u64, *b);
        }
    }

    pub fn vcpu(&self, id: u32) -> Vcpu {
        self.state.vcpus.get(&(0, id)).cloned().expect("vcpu")
    }

    pub fn current(&self, pcpu: u32) -> Option<(u16, u32)> {
        self.state.runqs.get(&pcpu).and_then(|q| q.current)
    }
}

pub(crate) fn virqs(out: &[Effect]) -> Vec<(u16, u32)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Sched(SchedEffect::SendVirq { dom, vcpu, virq: 0 }) => Some((*dom, *vcpu)),
            _ => None,
        })
        .collect()
}

fn armed(out: &[Effect], pcpu: u32) -> Option<Option<u64>> {
    out.iter().rev().find_map(|e| match e {
        Effect::Sched(SchedEffect::ArmTimer { pcpu: p, deadline }) if *p == pcpu => Some(*deadline),
        _ => None,
    })
}

#[test]
fn boot_vcpu_runs_and_publishes_time_and_wallclock() {
    let r = Rig::new(2, 1);
    assert_eq!(r.current(0), Some((0, 0)));
    assert_eq!(r.state.vsched.get(&(0, 0)).map(|v| v.time_version), Some(2));
    assert_eq!(r.state.dom_time.get(&0).map(|t| t.wc_version), Some(2));
}

#[test]
fn set_timer_op_arms_fires_once_and_cancels() {
    let mut r = Rig::new(1, 1);
    r.world.tsc = 1_000_000;
    let (ret, out) = r.call(0, HYPERVISOR_SET_TIMER_OP, [3_000_000, 0, 0, 0, 0]);
    assert_eq!(ret, 0);
    assert_eq!(
        armed(&out, 0),
        Some(Some(3_000_000)),
        "earliest: the single shot"
    );
    assert_eq!(r.vcpu(0).timer_deadline, Some(3_000_000));
    r.world.tsc = 2_000_000;
    assert!(
        virqs(&r.interrupt(0)).is_empty(),
        "early interrupt fires nothing"
    );
    r.world.tsc = 3_000_000;
    let out = r.interrupt(0);
    assert_eq!(virqs(&out), alloc::vec![(0, 0)]);
    assert_eq!(r.vcpu(0).timer_deadline, None);
    r.world.tsc = 4_000_000;
    assert!(virqs(&r.interrupt(0)).is_empty(), "single shot fires once");
    // Cancel.
    r.call(0, HYPERVISOR_SET_TIMER_OP, [9_000_000, 0, 0, 0, 0]);
    r.call(0, HYPERVISOR_SET_TIMER_OP, [0, 0, 0, 0, 0]);
    r.world.tsc = 10_000_000;
    assert!(!virqs(&r.interrupt(0)).contains(&(0, 0)) || r.vcpu(0).timer_deadline.is_none());
    assert_eq!(r.vcpu(0).timer_deadline, None);
}

#[test]
fn past_deadline_fires_at_once() {
    let mut r = Rig::new(1, 1);
    r.world.tsc = 50_000_000;
    let (_, out) = r.call(0, HYPERVISOR_SET_TIMER_OP, [1, 0, 0, 0, 0]);
    assert_eq!(virqs(&out), alloc::vec![(0, 0)]);
    assert_eq!(r.vcpu(0).timer_deadline, None);
}

#[test]
fn default_and_explicit_periodic_timer() {
    let mut r = Rig::new(1, 1);
    // Default 10 ms period: the boot dispatch at 0 counts as the last event.
    r.world.tsc = 9_999_999;
    assert!(virqs(&r.interrupt(0)).is_empty());
    r.world.tsc = 10_000_000;
    let out = r.interrupt(0);
    assert_eq!(virqs(&out), alloc::vec![(0, 0)]);
    assert_eq!(armed(&out, 0), Some(Some(20_000_000)));
    // Stop: nothing more.
    assert_eq!(r.vcpu_op(0, VCPUOP_STOP_PERIODIC_TIMER, 0, 0), 0);
    r.world.tsc = 40_000_000;
    let out = r.interrupt(0);
    assert!(virqs(&out).is_empty());
    assert_eq!(armed(&out, 0), Some(None));
    // Period limits.
    r.map(0x1000, &(MIN_PERIOD_NS - 1).to_le_bytes());
    assert_eq!(r.vcpu_op(0, VCPUOP_SET_PERIODIC_TIMER, 0, 0x1000), -22);
    r.map(0x1000, &(1u64 << 62).to_le_bytes());
    assert_eq!(r.vcpu_op(0, VCPUOP_SET_PERIODIC_TIMER, 0, 0x1000), -22);
    assert_eq!(r.vcpu_op(0, VCPUOP_SET_PERIODIC_TIMER, 0, 0xdead_0000), -14);
    r.map(0x1000, &MIN_PERIOD_NS.to_le_bytes());
    assert_eq!(r.vcpu_op(0, VCPUOP_SET_PERIODIC_TIMER, 0, 0x1000), 0);
    for k in 1..4u64 {
        r.world.tsc = 40_000_000 + k * MIN_PERIOD_NS;
        assert_eq!(virqs(&r.interrupt(0)), alloc::vec![(0, 0)], "tick {k}");
    }
}

#[test]
fn block_waits_for_the_timer_and_yield_rotates() {
    let mut r = Rig::new(2, 1);
    assert_eq!(r.vcpu_op(0, VCPUOP_STOP_PERIODIC_TIMER, 0, 0), 0);
    r.world.tsc = 1_000;
    r.call(0, HYPERVISOR_SET_TIMER_OP, [5_000, 0, 0, 0, 0]);
    // Events masked, nothing pending: block.
    r.world.machine.insert(SHARED_INFO + 1, 1);
    let (ret, out) = r.call(
        0,
        HYPERVISOR_SCHED_OP,
        [u64::from(SCHEDOP_BLOCK), 0, 0, 0, 0],
    );
    assert_eq!(ret, 0);
    assert_eq!(
        r.world.machine.get(&(SHARED_INFO + 1)),
        Some(&0),
        "events enabled"
    );
    assert!(r.vcpu(0).blocked);
    assert!(out.contains(&Effect::Sched(SchedEffect::RunVcpu {
        pcpu: 0,
        vcpu: None
    })));
    r.world.tsc = 5_000;
    let out = r.interrupt(0);
    assert_eq!(virqs(&out), alloc::vec![(0, 0)]);
    assert!(!r.vcpu(0).blocked);
    assert_eq!(r.current(0), Some((0, 0)));
    // Pending upcall: block returns at once.
    r.world.machine.insert(SHARED_INFO, 1);
    r.call(
        0,
        HYPERVISOR_SCHED_OP,
        [u64::from(SCHEDOP_BLOCK), 0, 0, 0, 0],
    );
    assert!(!r.vcpu(0).blocked);
    // Yield with nobody else: stays.
    r.call(
        0,
        HYPERVISOR_SCHED_OP,
        [u64::from(SCHEDOP_YIELD), 0, 0, 0, 0],
    );
    assert_eq!(r.current(0), Some((0, 0)));
}

#[test]
fn fairness_two_vcpus_on_one_cpu_alternate_by_slice() {
    let mut r = Rig::new(2, 1);
    let mut ctx = [0u8; 5168];
    ctx[4984 + 24..4984 + 32].copy_from_slice(&(0x1234u64 << 12).to_le_bytes());
    ctx[512] = 1 << 2; // VGCF_in_kernel
    r.map(0x8000, &ctx);
    assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, 1, 0x8000), 0);
    assert_eq!(r.vcpu_op(0, VCPUOP_UP, 1, 0), 0);
    let mut ran = [0u32; 2];
    for k in 1..=20u64 {
        r.world.tsc = k * SLICE_NS;
        r.interrupt(0);
        if let Some((_, v)) = r.current(0) {
            ran[v as usize] += 1;
        }
    }
    assert_eq!(ran, [10, 10], "round robin");
    let rs = |r: &Rig, v| {
        r.state
            .vsched
            .get(&(0, v))
            .map(|s| s.runstate.at(20 * SLICE_NS))
    };
    let (a, b) = (rs(&r, 0).unwrap(), rs(&r, 1).unwrap());
    assert!(a.time[0].abs_diff(b.time[0]) <= SLICE_NS, "{a:?} {b:?}");
}

/// Checks the run-queue invariants: each runnable vCPU is running or queued exactly once on
/// its own CPU, nothing else is; runstates match; accounting adds up to `now`.
pub(crate) fn check_invariants(r: &Rig, now: u64) {
    let mut seen = BTreeMap::new();
    for (p, q) in r.state.runqs.iter() {
        for k in q.current.iter().chain(q.queue.iter()) {
            assert!(seen.insert(*k, *p).is_none(), "{k:?} placed twice");
            assert_eq!(r.state.vsched.get(k).map(|v| v.pcpu), Some(*p));
        }
    }
    for (k, v) in r.state.vcpus.iter() {
        let runnable = v.online && !v.blocked;
        assert_eq!(seen.contains_key(k), runnable, "{k:?} {v:?}");
        let s = vcpu_sched(&r.state, *k);
        let is_current = r.state.runqs.iter().any(|(_, q)| q.current == Some(*k));
        let want = if !v.online {
            RUNSTATE_OFFLINE
        } else if v.blocked {
            RUNSTATE_BLOCKED
        } else if is_current {
            RUNSTATE_RUNNING
        } else {
            RUNSTATE_RUNNABLE
        };
        if r.state.vsched.contains_key(k) {
            assert_eq!(s.runstate.state, want, "{k:?}");
            assert_eq!(s.runstate.at(now).time.iter().sum::<u64>(), now, "{k:?}");
        }
    }
    for (_, q) in r.state.runqs.iter() {
        assert!(
            q.current.is_some() || q.queue.is_empty(),
            "idle CPU with work"
        );
    }
}

/// One random vCPU operation of dom0's running vCPU `actor` at `now`, by `op`: 0 yield, 1 a
/// timer then block, 2 another vCPU up, 3 another down (never the last one online). False
/// for any other `op` or no actor (the caller does something else).
pub(crate) fn random_vcpu_op(
    r: &mut Rig,
    op: u64,
    actor: Option<u32>,
    now: u64,
    next: &mut impl FnMut(u64) -> u64,
) -> bool {
    let Some(a) = actor else {
        return false;
    };
    match op {
        0 => {
            r.call(
                a,
                HYPERVISOR_SCHED_OP,
                [u64::from(SCHEDOP_YIELD), 0, 0, 0, 0],
            );
        }
        1 => {
            r.call(
                a,
                HYPERVISOR_SET_TIMER_OP,
                [now + next(SLICE_NS), 0, 0, 0, 0],
            );
            r.call(
                a,
                HYPERVISOR_SCHED_OP,
                [u64::from(SCHEDOP_BLOCK), 0, 0, 0, 0],
            );
        }
        2 => {
            r.vcpu_op(a, VCPUOP_UP, next(4) as u32, 0);
        }
        3 => {
            let t = next(4) as u32;
            let others = (0..4).filter(|v| *v != t && r.vcpu(*v).online).count();
            if others > 0 {
                r.vcpu_op(a, VCPUOP_DOWN, t, 0);
            }
        }
        _ => return false,
    }
    true
}

/// Every blocked, online vCPU of the 4 has a timer: some CPU has a deadline to wake it.
pub(crate) fn assert_no_sleeper_forever(r: &Rig, round: u32) {
    for v in 0..4u32 {
        let x = r.vcpu(v);
        if x.blocked && x.online {
            assert!(
                x.timer_deadline.is_some(),
                "round {round}: {v} sleeps for ever"
            );
        }
    }
}

#[test]
fn random_sequences_keep_the_run_queues_consistent() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..20 {
        let mut r = Rig::new(4, 2);
        r.map(0x8000, &{
            let mut c = [0u8; 5168];
            c[4984 + 24..4984 + 32].copy_from_slice(&(0x99u64 << 12).to_le_bytes());
            c[512] = 1 << 2; // VGCF_in_kernel
            c
        });
        for v in 1..4 {
            assert_eq!(r.vcpu_op(0, VCPUOP_INITIALISE, v, 0x8000), 0);
        }
        let mut now = 0u64;
        let mut runs = [0u32; 4];
        for _ in 0..300 {
            now += 1 + next(3 * SLICE_NS);
            r.world.tsc = now;
            let running: Vec<u32> = (0..2).filter_map(|p| r.current(p)).map(|k| k.1).collect();
            let actor = running
                .get(next(running.len().max(1) as u64) as usize)
                .copied();
            if !random_vcpu_op(&mut r, next(8), actor, now, &mut next) {
                r.interrupt(next(2) as u32);
            }
            check_invariants(&r, now);
            for p in 0..2 {
                if let Some((_, v)) = r.current(p) {
                    runs[v as usize] += 1;
                }
            }
            // Blocked vCPUs all have a timer: some CPU has a deadline to wake them.
            assert_no_sleeper_forever(&r, round);
        }
        assert!(
            runs.iter().filter(|n| **n > 0).count() >= 2,
            "round {round}: {runs:?}"
        );
    }
}

#[test]
fn every_domains_vcpus_go_to_the_least_loaded_leader() {
    let mut state = HvState::new();
    let mut j = Journal::new();
    j.begin(1);
    create_domain(&mut state, &mut j, 0, true, 2, 1024).expect("dom0");
    create_domain(&mut state, &mut j, 1, false, 2, 1024).expect("domU");
    create_domain(&mut state, &mut j, 2, false, 1, 1024).expect("domU 2");
    let mut s = Sched::at_tsc(&mut state, &mut j, 0);
    configure_time(
        &mut s,
        TimeBase::new(HZ, 0, 1_700_000_000, 0).expect("base"),
    );
    for p in [3, 1] {
        add_pcpu(&mut s, p);
    }
    wake(&mut s, (0, 0));
    online_and_wake(&mut s, (0, 1));
    assert_eq!(
        (s.vcpu((0, 0)).pcpu, s.vcpu((0, 1)).pcpu),
        (1, 3),
        "dom0 spread"
    );
    // dom0's vCPU 1 blocks: CPU3 is the less loaded one, then they tie (lowest id).
    block(&mut s, (0, 1), None);
    online_and_wake(&mut s, (1, 0));
    online_and_wake(&mut s, (1, 1));
    assert_eq!(
        (s.vcpu((1, 0)).pcpu, s.vcpu((1, 1)).pcpu),
        (3, 1),
        "a 2-vCPU domU runs on both leaders"
    );
    // CPU1 runs dom0's vCPU 0 and queues the domU's vCPU 1; CPU3 runs the domU's vCPU 0.
    online_and_wake(&mut s, (2, 0));
    assert_eq!(
        s.vcpu((2, 0)).pcpu,
        3,
        "the next domU to the less loaded CPU"
    );
    // A vCPU stays where it was first placed: taken offline and woken again while the
    // other CPU is idle.
    for k in [(1, 1), (1, 0), (2, 0)] {
        offline(&mut s, k);
    }
    online_and_wake(&mut s, (1, 1));
    assert_eq!(s.vcpu((1, 1)).pcpu, 1, "placed once");
}
