//! `dom0-lockstep-spare`: DualVisor on four CPUs (coordinator, leader, follower, spare). The
//! administrator makes the follower core fail for good (`xl lockstep fail follower`, fault
//! injection of a permanent fault): the pair escalates with the follower as the suspect,
//! retires it, and the spare CPU takes over from a bit-identical copy of the leader's
//! replica. Protection is back: a demo domU is built and runs, 20 injected effects faults
//! are all detected and recovered by the new pair, the status shows CPU2 retired and CPU3
//! following. DualVisor only: Xen 4.17 has no lockstep (`dom0-shell-xen` checks that its
//! answer is -ENOSYS).
//!
//! `dom0-lockstep-promote` (`-smp 4`) and `dom0-lockstep-promote-nospare` (`-smp 3`): the
//! administrator makes the LEADER fail for good (`xl lockstep fail leader`): the pair
//! escalates with the leader as the suspect, the leader steps down and parks, the follower
//! CPU2 is promoted to leader from its own replica and dom0 keeps running its commands on it;
//! with a spare, CPU3 follows it (protected again: injected faults are recovered) and, when
//! the promoted leader fails as well, CPU3 is promoted in turn and runs unprotected; without
//! a spare the promoted CPU runs unprotected and says so.

use std::time::Duration;

use crate::console_scenarios::SWITCH;
use crate::dom0::{injection_row, real_initrd, steps_script, typed, Says};
use crate::pattern::Pattern;
use crate::scenario::{Paths, Planned};

pub(crate) fn line(s: &str) -> Says {
    Says::Line(Pattern::line(s))
}

pub(crate) fn role(cpu: u32, what: &str) -> Says {
    line(&format!("cpu{cpu:<20}: {what}"))
}

/// `xl lockstep inject -w effects N`: all `n` recovered, `total` injected since boot.
pub(crate) fn inject_effects(n: u32, total: u32) -> (Vec<u8>, Vec<Says>) {
    (
        typed(&format!("xl lockstep inject -w effects {n}")),
        vec![
            line(&format!("lockstep: injecting {n} effects faults")),
            line(&format!(
                "lockstep: {total} effects faults injected so far: 0 masked, {total} recovered, \
                 0 escalated, 0 silent, 0 crashed"
            )),
        ],
    )
}

/// `xl lockstep fail follower`: pair 0's follower CPU2 fails for good, then `then` says what
/// became of its pair.
pub(crate) fn fail_follower(then: Says) -> (Vec<u8>, Vec<Says>) {
    (
        typed("xl lockstep fail follower"),
        vec![
            Says::Line(Pattern::contains(
                "(XEN) lockstep: fault injection: follower CPU2 fails for good",
            )),
            then,
        ],
    )
}

/// The hypervisor's debug key `l` (console switched to Xen and back): the roles now, as the
/// status shows them, next to those decided at boot.
pub(crate) fn roles_key(now: &str) -> Vec<(Vec<u8>, Vec<Says>)> {
    vec![
        (
            SWITCH.to_vec(),
            vec![Says::Line(Pattern::contains("*** Serial input to Xen"))],
        ),
        (
            b"l".to_vec(),
            vec![
                Says::Line(Pattern::contains("'l' pressed -> dumping lockstep state")),
                Says::Line(Pattern::contains("(at boot)")),
                Says::Line(Pattern::contains(format!("(XEN) roles now: {now}"))),
            ],
        ),
        (
            SWITCH.to_vec(),
            vec![Says::Line(Pattern::contains("*** Serial input to DOM0"))],
        ),
        (typed(""), vec![]),
    ]
}

/// The session: status before, the failure and the take-over, a domU, injections, status.
pub(crate) fn spare_steps() -> Vec<(Vec<u8>, Vec<Says>)> {
    vec![
        (
            typed("xl lockstep status"),
            vec![role(2, "follower"), role(3, "spare")],
        ),
        fail_follower(Says::Line(Pattern::contains_all([
                    "(XEN) lockstep: spare CPU3 replaced follower CPU2 (out of service); replicas bit-identical",
                    "protected (spare core replaced the follower)",
                ]))),
        (
            typed("xl create /etc/xen/demo1.cfg"),
            vec![line("Parsing config from /etc/xen/demo1.cfg")],
        ),
        inject_effects(20, 20),
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
                role(3, "follower"),
                line("escalated              : 1"),
                line(&injection_row("effects", [20, 0, 20, 0, 0, 0])),
            ],
        ),
        (typed("xl destroy demo1"), vec![]),
        (
            typed("xl list"),
            vec![Says::Line(Pattern::starts_with(
                "Domain-0                                     0 ",
            ))],
        ),
    ]
    .into_iter()
    .chain(roles_key(
        "CPU0 coordinator, CPU1 leader, CPU2 retired, CPU3 follower",
    ))
    .collect()
}

/// The session of a leader promotion, with or without a spare CPU to follow the new leader.
pub(crate) fn promote_steps(spare: bool) -> Vec<(Vec<u8>, Vec<Says>)> {
    let mut after_fail = vec![
        Says::Line(Pattern::contains(
            "(XEN) lockstep: fault injection: leader CPU1 fails for good",
        )),
        Says::Line(Pattern::contains(
            "(XEN) lockstep: leader CPU1 escalated as the suspect: stepping down",
        )),
        Says::Line(Pattern::contains(
            "(XEN) lockstep: follower CPU2 promoted to leader from its own replica",
        )),
    ];
    after_fail.push(Says::Line(if spare {
        Pattern::contains_all([
            "(XEN) lockstep: spare CPU3 replaced follower CPU2 (promoted to leader); replicas bit-identical",
            "protected (spare core replaced the leader)",
        ])
    } else {
        Pattern::contains(
            "(XEN) lockstep: UNPROTECTED: lockstep escalated, leader core taken out of service, no spare; running WITHOUT redundancy",
        )
    }));
    // dom0's own answer, printed by the promoted leader's exit path.
    after_fail.push(line(
        "lockstep: the leader core now fails for good (fault injection)",
    ));
    let mut status = vec![role(1, "retired"), role(2, "leader")];
    if spare {
        status.push(role(3, "follower"));
    }
    status.push(line("escalated              : 1"));
    if !spare {
        status.insert(
            0,
            line("lockstep               : on, UNPROTECTED (no spare: running without redundancy)"),
        );
    }
    let mut steps = vec![
        (
            typed("xl lockstep status"),
            vec![role(1, "leader"), role(2, "follower")],
        ),
        (typed("xl lockstep fail leader"), after_fail),
        (
            typed("xl list"),
            vec![Says::Line(Pattern::starts_with(
                "Domain-0                                     0 ",
            ))],
        ),
        (typed("xl lockstep status"), status),
    ];
    steps.extend(roles_key(if spare {
        "CPU0 coordinator, CPU1 retired, CPU2 leader, CPU3 follower"
    } else {
        "CPU0 coordinator, CPU1 retired, CPU2 leader"
    }));
    if spare {
        steps.push(inject_effects(5, 5));
        // The promoted leader fails too: the spare that follows it is promoted in turn,
        // and with no spare left it runs unprotected.
        steps.push((
            typed("xl lockstep fail leader"),
            vec![
                Says::Line(Pattern::contains(
                    "(XEN) lockstep: fault injection: leader CPU2 fails for good",
                )),
                Says::Line(Pattern::contains(
                    "(XEN) lockstep: follower CPU3 promoted to leader from its own replica",
                )),
                Says::Line(Pattern::contains(
                    "(XEN) lockstep: UNPROTECTED: lockstep escalated, leader core taken out of service, no spare",
                )),
                line("lockstep: the leader core now fails for good (fault injection)"),
            ],
        ));
        steps.push((
            typed("xl lockstep status"),
            vec![
                line("lockstep               : on, UNPROTECTED (no spare: running without redundancy)"),
                role(1, "retired"),
                role(2, "retired"),
                role(3, "leader"),
                line("escalated              : 2"),
            ],
        ));
        steps.push((
            typed("xl list"),
            vec![Says::Line(Pattern::starts_with(
                "Domain-0                                     0 ",
            ))],
        ));
    }
    steps
}

/// `dom0-lockstep-promote` (`-smp 4`, a spare follows the promoted leader) and
/// `dom0-lockstep-promote-nospare` (`-smp 3`, unprotected afterwards).
pub fn dom0_lockstep_promote(p: &Paths, spare: bool) -> Planned {
    let (name, smp) = if spare {
        ("dom0-lockstep-promote", 4)
    } else {
        ("dom0-lockstep-promote-nospare", 3)
    };
    let mut s = real_initrd(
        p,
        name,
        &p.image,
        smp,
        steps_script(promote_steps(spare)),
        Duration::from_secs(600),
    );
    s.needs.push((p.image.clone(), "make image"));
    Planned::Run(Box::new(s))
}

/// `dom0-lockstep-spare` (DualVisor, `-smp 4`).
pub fn dom0_lockstep_spare(p: &Paths) -> Planned {
    let mut s = real_initrd(
        p,
        "dom0-lockstep-spare",
        &p.image,
        4,
        steps_script(spare_steps()),
        Duration::from_secs(600),
    );
    s.needs.push((p.image.clone(), "make image"));
    Planned::Run(Box::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_lines_are_the_ones_xl_prints() {
        let st = dom0_interface::lockstep_ctl::LockstepStatus {
            nr_cpus: 4,
            roles: {
                let mut r = [0; 32];
                r[2] = dom0_interface::lockstep_ctl::LOCKSTEP_ROLE_RETIRED;
                r[3] = dom0_interface::lockstep_ctl::LOCKSTEP_ROLE_FOLLOWER;
                r
            },
            ..Default::default()
        };
        let out = tools::format::lockstep_status(&st);
        for (cpu, what) in [(2, "retired"), (3, "follower")] {
            let Says::Line(p) = role(cpu, what) else {
                unreachable!()
            };
            assert!(out.lines().any(|l| p.matches(l)), "{cpu} {what}:\n{out}");
        }
    }
}
