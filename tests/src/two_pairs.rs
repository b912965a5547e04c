//! Two lockstep pairs (`-smp 5`: coordinator CPU0, pair 0 CPU1/CPU2, pair 1 CPU3/CPU4) under
//! a test guest with two dom0 vCPUs: vCPU0 runs on pair 0's leader, vCPU1 on pair 1's, and
//! the guest's events, timers and `VCPUOP_up` cross between the two leader CPUs. The guest
//! must pass exactly as on Xen 4.17 (its oracle run is `xen-oracle-<guest>`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dom0::{add_steps, injection_row, real_initrd, steps_script, typed, Says};
use crate::dom0_spare::{fail_follower, inject_effects, line, role, roles_key};
use crate::oracle::{dualvisor_guest, guest_run_lines};
use crate::pattern::Pattern;
use crate::qemu::{Boot, Module};
use crate::scenario::{Paths, Planned};
use crate::script::Script;

/// The guests run on two pairs, whether each starts vCPU 1 (which then runs on pair 1's
/// leader), and lines it must print there: `timer` and `segs` start, stop and restart
/// it running their own code; `evtchn2` binds and sends events to vCPU 1 without starting
/// it, and `fifo` does the same on the FIFO ABI (its queue tails live outside the replicas,
/// shared by both leaders); `lockstep` injects faults (every kind) and reads both pairs in
/// the status; `lockpairs` injects faults into pair 1 and makes its follower fail
/// (`pair=1`) while vCPU 1 makes hypercalls on pair 1's leader; `lockleader` makes pair 1's
/// leader fail (vCPU 1 moves to CPU1, CPU4 becomes a spare and then replaces pair 0's
/// failed follower); `domu` builds, runs and
/// destroys a domU; `dompause` pauses, unpauses and destroys a busy 2-vCPU domU whose
/// vCPUs run on both leaders (dom0's vCPU 1 stays down: the domU's vCPU 0 goes to the idle
/// CPU3, vCPU 1 to CPU1). Every other test guest passed on `-smp 5` too when this was
/// written.
pub const TWO_PAIR_GUESTS: &[(&str, bool, &[&str])] = &[
    ("timer", true, &[]),
    ("segs", true, &[]),
    ("evtchn2", false, &[]),
    ("fifo", false, &[]),
    ("lockstep", false, &[]),
    ("lockpairs", true, &[]),
    (
        "lockleader",
        true,
        &[
            "(XEN) lockstep: leader CPU3 (pair 1) escalated as the suspect in pair 1: it leaves service and parks; leader CPU1 takes its vCPUs over, the leaders left run them; follower CPU4 stands by as a spare",
            "(XEN) lockstep: leader CPU3 out of service (suspect): parked for good",
            "(XEN) sched: d0v1 moves from CPU3 to CPU1",
            "(XEN) lockstep: leader CPU1 took over from leader CPU3 (out of service)",
            "(XEN) lockstep: spare CPU4 replaced follower CPU2 (out of service) in pair 0; replicas bit-identical",
        ],
    ),
    ("domu", false, &[]),
    (
        "dompause",
        false,
        &[
            "INFO: the domU's vCPU 0 runs on CPU3, vCPU 1 on CPU1",
            // Pausing and destroying it took its vCPU 0 off CPU3 synchronously, and no
            // frame stayed kept for a CPU that did not answer.
            "(XEN) descheduling: ",
            "late, 0 frames kept",
        ],
    ),
];

/// The two-pair roles line.
pub const TWO_PAIRS_LINE: &str =
    "(XEN) lockstep: pair 0 leader CPU1 follower CPU2, pair 1 leader CPU3 follower CPU4, coordinator CPU0";

/// `dualvisor-<guest>-smp5` for the [`TWO_PAIR_GUESTS`] among `guests`.
pub fn two_pair_guests(p: &Paths, guests: &[PathBuf]) -> Vec<Planned> {
    guests
        .iter()
        .filter_map(|g| {
            let stem = stem(g)?;
            let &(_, starts_vcpu1, says) = TWO_PAIR_GUESTS.iter().find(|(n, ..)| *n == stem)?;
            let mut s = dualvisor_guest(p, g);
            s.name = format!("{}-smp5", s.name);
            s.qemu = s.qemu.smp(5);
            let mut head = vec![
                Pattern::contains(TWO_PAIRS_LINE),
                Pattern::contains("(XEN) dom0: vCPU1 runs on CPU3 (leader of pair 1)"),
            ];
            if starts_vcpu1 {
                head.push(Pattern::contains(
                    "(XEN) lockstep: CPU3 (leader of pair 1) enters d0v1",
                ));
            }
            s.expect.expect = guest_run_lines(head, says, 5);
            Some(Planned::Run(Box::new(s)))
        })
        .collect()
}

/// The dom0 session on two pairs: every pair in `xl lockstep status` and debug key `l`, a
/// domU (paused and unpaused 3 times), 100 injected effects faults all recovered, `xl lockstep off` and
/// `on` (every follower re-synchronised);
/// then pair 0's follower fails for good: pair 0 escalates and its transactions run through
/// pair 1 from then on, still protected (20 more faults recovered).
pub(crate) fn two_pairs_steps() -> Vec<(Vec<u8>, Vec<Says>)> {
    let mut v = vec![
        (
            typed("xl lockstep status"),
            vec![
                line("lockstep               : on"),
                role(0, "coordinator"),
                role(1, "leader"),
                role(2, "follower"),
                role(3, "leader"),
                role(4, "follower"),
            ],
        ),
        (
            typed("xl create /etc/xen/demo1.cfg"),
            vec![line("Parsing config from /etc/xen/demo1.cfg")],
        ),
        // Where its vCPU runs (the log shows the CPU; the least loaded leader's).
        (
            typed("xl vcpu-list demo1"),
            vec![Says::Line(Pattern::starts_with("demo1 "))],
        ),
    ];
    // Paused and unpaused from dom0 while it runs, perhaps on the other leader: `xl pause`
    // returns once its vCPU is off its CPU.
    for _ in 0..3 {
        v.extend([
            (typed("xl pause demo1"), vec![]),
            (
                typed("xl list demo1"),
                vec![Says::Line(Pattern::contains_all(["demo1 ", "p---"]))],
            ),
            (typed("xl unpause demo1"), vec![]),
        ]);
    }
    v.extend([
        inject_effects(100, 100),
        (
            typed("xl lockstep status"),
            vec![
                line("escalated              : 0"),
                line(&injection_row("effects", [100, 0, 100, 0, 0, 0])),
            ],
        ),
    ]);
    v.extend(roles_key(
        "CPU0 coordinator, CPU1 leader, CPU2 follower, CPU3 leader, CPU4 follower",
    ));
    v.extend([
        // Runtime off and on: every pair's follower restarts the follower replica from a
        // copy of the leader replica, bit-identical.
        (
            typed("xl lockstep off"),
            vec![Says::Line(Pattern::contains(
                "(XEN) lockstep: off (runtime): transactions run once",
            ))],
        ),
        (
            typed("xl lockstep status"),
            vec![line("lockstep               : off (unprotected)")],
        ),
        (
            typed("xl lockstep on"),
            vec![Says::Line(Pattern::contains(
                "(XEN) lockstep: on (runtime): every pair's follower re-synchronised from the leader's replica at a transaction boundary, replicas bit-identical",
            ))],
        ),
        (
            typed("xl lockstep status"),
            vec![line("lockstep               : on")],
        ),
        fail_follower(Says::Line(Pattern::contains(
                    "(XEN) lockstep: pair 0 escalated (suspect follower): follower CPU2 out of service; \
                     its transactions run through pair 1 from now on (follower CPU4), still protected",
                ))),
        // The counts are since boot: the 100 above and these 20.
            inject_effects(20, 120),
        (
            typed("xl list"),
            vec![Says::Line(Pattern::contains_all([
                "demo1 ",
                "    1    32     1     ",
            ]))],
        ),
        (
            typed("xl lockstep status"),
            vec![
                line("lockstep               : on"),
                role(2, "retired"),
                role(3, "leader"),
                role(4, "follower"),
                line(&injection_row("effects", [120, 0, 120, 0, 0, 0])),
            ],
        ),
        (typed("xl destroy demo1"), vec![]),
    ]);
    v
}

/// `dom0-lockstep-two-pairs`: [`two_pairs_steps`] on `-smp 5`.
pub fn dom0_two_pairs(p: &Paths) -> Planned {
    let mut s = real_initrd(
        p,
        "dom0-lockstep-two-pairs-smp5",
        &p.image,
        5,
        steps_script(two_pairs_steps()),
        Duration::from_secs(600),
    );
    s.needs.push((p.image.clone(), "make image"));
    Planned::Run(Box::new(s))
}

/// The dom0 session on two pairs and a spare (`-smp 6`: pairs CPU1/CPU2 and CPU3/CPU4,
/// spare CPU5): a pair that does not exist is refused with a clear message; pair 0's
/// follower fails for good, the spare joins pair 0 from a bit-identical copy of the leader
/// replica and pair 0 is protected again (10 injected faults recovered through it); the
/// status and debug key `l` show the new roles.
pub(crate) fn spare_smp6_steps() -> Vec<(Vec<u8>, Vec<Says>)> {
    let mut v = vec![
        (
            typed("xl lockstep inject effects 1 pair=2"),
            vec![line(
                "xl: lockstep: there is no pair 2: the hypervisor has 2 pairs (numbered from 0); refused with -EINVAL",
            )],
        ),
        (
            typed("xl lockstep status"),
            vec![
                line("lockstep               : on"),
                role(0, "coordinator"),
                role(1, "leader"),
                role(2, "follower"),
                role(3, "leader"),
                role(4, "follower"),
                role(5, "spare"),
            ],
        ),
        fail_follower(Says::Line(Pattern::contains_all([
                    "(XEN) lockstep: spare CPU5 replaced follower CPU2 (out of service) in pair 0; replicas bit-identical",
                    "pair 0 protected (spare core replaced the follower)",
                ]))),
        inject_effects(10, 10),
        (
            typed("xl lockstep status"),
            vec![
                line("lockstep               : on"),
                role(1, "leader"),
                role(2, "retired"),
                role(3, "leader"),
                role(4, "follower"),
                role(5, "follower"),
                line("escalated              : 1"),
            ],
        ),
    ];
    v.extend(roles_key(
        "CPU0 coordinator, CPU1 leader, CPU2 retired, CPU3 leader, CPU4 follower, CPU5 follower",
    ));
    v
}

/// After [`spare_smp6_steps`], pair 1's leader fails for good while a domU runs on it (the
/// failure takes effect at the domU's next transaction there, after `xl` returned): CPU3
/// leaves service, the domU's vCPU moves to CPU1 and CPU4 stands by as a spare; pair 0
/// still recovers faults.
fn leader_retires_smp6(sc: Script) -> Script {
    let sc = add_steps(
        sc,
        vec![
            (
                typed("xl create /etc/xen/demo1.cfg"),
                vec![line("Parsing config from /etc/xen/demo1.cfg")],
            ),
            (
                typed("xl vcpu-list demo1"),
                vec![Says::Line(Pattern::contains_all([
                    "demo1 ",
                    "    1     0    3   ",
                ]))],
            ),
            (
                typed("xl lockstep fail leader pair=1"),
                vec![Says::Line(Pattern::contains(
                    "(XEN) lockstep: fault injection: leader CPU3 fails for good",
                ))],
            ),
        ],
    )
    .wait_for(Pattern::contains(
        "(XEN) lockstep: leader CPU3 (pair 1) escalated as the suspect in pair 1: it leaves service and parks; \
         leader CPU1 takes its vCPUs over, the leaders left run them; follower CPU4 stands by as a spare",
    ))
    .wait_for(Pattern::contains("(XEN) sched: d1v0 moves from CPU3 to CPU1"))
    .wait_for(Pattern::contains(
        "(XEN) lockstep: leader CPU1 took over from leader CPU3 (out of service)",
    ));
    let mut steps = vec![
        (
            typed("xl vcpu-list demo1"),
            vec![Says::Line(Pattern::contains_all([
                "demo1 ",
                "    1     0    1   ",
            ]))],
        ),
        (
            typed("xl lockstep status"),
            vec![
                line("lockstep               : on"),
                role(1, "leader"),
                role(2, "retired"),
                role(3, "retired"),
                role(4, "spare"),
                role(5, "follower"),
                line("escalated              : 2"),
            ],
        ),
        inject_effects(5, 15),
        (typed("xl destroy demo1"), vec![]),
    ];
    steps.extend(roles_key(
        "CPU0 coordinator, CPU1 leader, CPU2 retired, CPU3 retired, CPU4 spare, CPU5 follower",
    ));
    add_steps(sc, steps)
}

/// `dom0-lockstep-spare-smp6`: [`spare_smp6_steps`], then [`leader_retires_smp6`], on
/// `-smp 6`.
pub fn dom0_spare_smp6(p: &Paths) -> Planned {
    let mut s = real_initrd(
        p,
        "dom0-lockstep-spare-smp6",
        &p.image,
        6,
        leader_retires_smp6(steps_script(spare_smp6_steps())),
        Duration::from_secs(600),
    );
    s.expect.expect.push(Pattern::contains(
        "(XEN) lockstep: spare CPU5 stands by to replace the follower of any of the 2 pairs",
    ));
    s.needs.push((p.image.clone(), "make image"));
    Planned::Run(Box::new(s))
}

/// `dualvisor-lockpairs-smp6`: the `lockpairs` guest on two pairs and a spare (`-smp 6`):
/// when pair 1's follower fails, the spare CPU5 joins pair 1 (the guest checks it follows).
pub fn lockpairs_smp6(p: &Paths, guests: &[PathBuf]) -> Vec<Planned> {
    let Some(g) = guests.iter().find(|g| stem(g) == Some("lockpairs")) else {
        return Vec::new();
    };
    let mut s = dualvisor_guest(p, g);
    s.name = format!("{}-smp6", s.name);
    s.qemu = s.qemu.smp(6);
    s.expect.expect = vec![
        Pattern::contains(format!("{TWO_PAIRS_LINE}, spare CPU5")),
        Pattern::contains("(XEN) lockstep: CPU3 (leader of pair 1) enters d0v1"),
        Pattern::contains(
            "(XEN) lockstep: spare CPU5 replaced follower CPU4 (out of service) in pair 1; replicas bit-identical",
        ),
        Pattern::contains("PASS:   ... the spare CPU follows in pair 1"),
        Pattern::contains("Test result: SUCCESS"),
        Pattern::contains("(XEN) Hardware Dom0 halted"),
    ];
    vec![Planned::Run(Box::new(s))]
}

/// `dualvisor-lockleader-rerouted-smp5`: the `lockleader` guest with `rerouted` on two pairs
/// (`-smp 5`): pair 1's follower fails (its transactions go through pair 0), then its
/// leader, in pair 0: CPU3 leaves service all the same (the fault goes with the CPU, not
/// with the pair it leads through), vCPU 1 moves to CPU1, and pair 0's follower, freed by
/// the escalation, follows in pair 0 again.
pub fn lockleader_rerouted(p: &Paths, guests: &[PathBuf]) -> Vec<Planned> {
    let Some(g) = guests.iter().find(|g| stem(g) == Some("lockleader")) else {
        return Vec::new();
    };
    let mut s = dualvisor_guest(p, g);
    s.name = format!("{}-rerouted-smp5", s.name);
    s.qemu = s.qemu.smp(5);
    if let Boot::Kernel { modules, .. } = &mut s.qemu.boot {
        *modules = vec![Module::new(g.clone(), "rerouted")];
    }
    s.expect.expect = vec![
        Pattern::contains(TWO_PAIRS_LINE),
        Pattern::contains("(XEN) lockstep: CPU3 (leader of pair 1) enters d0v1"),
        Pattern::contains(
            "(XEN) lockstep: pair 1 escalated (suspect follower): follower CPU4 out of service; its transactions run through pair 0",
        ),
        Pattern::contains(
            "(XEN) lockstep: leader CPU3 (pair 1) escalated as the suspect in pair 0: it leaves service and parks; \
             leader CPU1 takes its vCPUs over, the leaders left run them; follower CPU2 stands by as a spare",
        ),
        Pattern::contains(
            "(XEN) lockstep: spare CPU2 follows in pair 0 (its follower left with another pair's suspect leader); replicas bit-identical",
        ),
        Pattern::contains("(XEN) sched: d0v1 moves from CPU3 to CPU1"),
        Pattern::contains("Test result: SUCCESS"),
        Pattern::contains("(XEN) Hardware Dom0 halted"),
    ];
    vec![Planned::Run(Box::new(s))]
}

/// A guest's name: its file name without `.elf`.
pub(crate) fn stem(g: &Path) -> Option<&str> {
    g.file_stem().and_then(|s| s.to_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::test_support::{find, watch};
    use crate::watch::WatchState;

    #[test]
    fn timer_and_evtchn2_run_on_two_pairs() {
        let p = Paths::new("/repo");
        let guests: Vec<PathBuf> = ["hello", "timer", "evtchn2", "segs"]
            .iter()
            .map(|g| PathBuf::from(format!("/repo/build/guests/{g}.elf")))
            .collect();
        let v = two_pair_guests(&p, &guests);
        assert_eq!(v.len(), 3);
        let e = find(&v, "dualvisor-evtchn2-smp5");
        assert_eq!(e.expect.expect.len(), 9, "evtchn2 does not start vCPU 1");
        let s = find(&v, "dualvisor-timer-smp5");
        assert_eq!(s.qemu.smp, 5);
        let log = format!(
            "{TWO_PAIRS_LINE}\n(XEN) dom0: vCPU1 runs on CPU3 (leader of pair 1)\n\
             (XEN) lockstep: CPU3 (leader of pair 1) enters d0v1\nTest result: SUCCESS\n\
             (XEN) stack use (KiB): CPU0 main 58/256\n(XEN) stack use (KiB): CPU1 main 17/256\n\
             (XEN) stack use (KiB): CPU2 main 31/256\n(XEN) stack use (KiB): CPU3 main 7/256\n\
             (XEN) stack use (KiB): CPU4 main 9/256\n(XEN) Hardware Dom0 halted: halting machine\n"
        );
        assert_eq!(watch(&s, &log), WatchState::AllSeen);
        let one_leader = log.replace("(XEN) lockstep: CPU3 (leader of pair 1) enters d0v1\n", "");
        assert_ne!(
            watch(&s, &one_leader),
            WatchState::AllSeen,
            "vCPU1 must have run on pair 1's leader"
        );
    }
}
