//! Lockstep off on several CPUs (`lockstep=off`, `-smp 2`, `dom0_max_vcpus=2`: exactly the
//! oracle's Xen 4.17 configuration): every CPU runs guests, as Xen's do, so dom0's vCPU 1
//! runs on CPU1 next to vCPU 0 on CPU0, and the guest's events, timers, `VCPUOP_up` and
//! domUs cross between two CPUs whose transactions run once each. The guests must pass
//! exactly as on Xen 4.17 (their oracle runs are `xen-oracle-<guest>`). `dom0-lockstep-off`
//! is an administrator's session in that mode (`xl lockstep on` included), `dom0-xl-off` the
//! domain life cycle `dom0-xl-xen` runs on Xen 4.17.

use std::path::PathBuf;
use std::time::Duration;

use crate::dom0::{lifecycle, real_initrd, steps_script, typed, Says};
use crate::dom0_spare::{inject_effects, line, role};
use crate::oracle::{dualvisor_guest, guest_run_lines};
use crate::pattern::Pattern;
use crate::qemu::Boot;
use crate::scenario::{Paths, Planned, Scenario};
use crate::two_pairs::stem;

/// The roles line of lockstep off on two CPUs.
pub const OFF_LINE: &str =
    "(XEN) lockstep: off (lockstep=off): single execution, guests on CPU0-CPU1, no redundancy";

/// The guests run with lockstep off on two CPUs, and lines each must print there: `timer`
/// and `segs` start vCPU 1 (on CPU1) running their own code; `evtchn2` binds and sends
/// events to vCPU 1 without starting it; `domu` builds, runs and destroys a domU;
/// `dompause` pauses, unpauses and destroys a busy 2-vCPU domU on both CPUs; `bench`
/// bounces a cache line between its two vCPUs, which must not wait for each other's CPU.
pub const OFF_GUESTS: &[(&str, &[&str])] = &[
    ("timer", &["(XEN) lockstep: CPU1 enters d0v1"]),
    ("segs", &["(XEN) lockstep: CPU1 enters d0v1"]),
    ("evtchn2", &[]),
    ("domu", &[]),
    (
        "dompause",
        &[
            // The busy 2-vCPU domU spreads over both CPUs; pausing and destroying it takes
            // its vCPUs off the other CPU synchronously, none late.
            "INFO: the domU's vCPU 0 runs on CPU1, vCPU 1 on CPU0",
            "(XEN) descheduling: ",
            " 0 late, 0 frames kept",
        ],
    ),
    (
        "bench",
        &[
            "(XEN) lockstep: CPU1 enters d0v1",
            "PASS: vCPU 1 starts serving the ping-pong",
        ],
    ),
];

/// `dualvisor-<guest>-off` for the [`OFF_GUESTS`] among `guests`.
pub fn lockstep_off_guests(p: &Paths, guests: &[PathBuf]) -> Vec<Planned> {
    guests
        .iter()
        .filter_map(|g| {
            let stem = stem(g)?;
            let &(_, says) = OFF_GUESTS.iter().find(|(n, _)| *n == stem)?;
            let mut s = dualvisor_guest(p, g);
            s.name = format!("{}-off", s.name);
            s.qemu = s.qemu.smp(2);
            if let Boot::Kernel { append, .. } = &mut s.qemu.boot {
                append.push_str(" lockstep=off");
            }
            s.expect.expect = guest_run_lines(
                vec![
                    Pattern::contains(OFF_LINE),
                    Pattern::contains("(XEN) dom0: vCPU1 runs on CPU1"),
                ],
                says,
                2,
            );
            // Its own CPU each: vCPU 1 never waits runnable behind vCPU 0.
            s.expect.fail.push(Pattern::contains(
                "the hypervisor runs both on one physical CPU",
            ));
            Some(Planned::Run(Box::new(s)))
        })
        .collect()
}

/// The admin's session with lockstep off on two CPUs: both CPUs are leaders in `xl lockstep
/// status`, a demo domU runs on CPU1 next to dom0 on CPU0, then `xl lockstep on` turns
/// redundancy on (both executions on the CPU of each transaction, no partner CPU) and 10
/// injected effects faults are all recovered while the domU keeps running.
pub(crate) fn off_steps() -> Vec<(Vec<u8>, Vec<Says>)> {
    vec![
        (
            typed("xl lockstep status"),
            vec![
                line("lockstep               : off (unprotected)"),
                role(0, "leader"),
                role(1, "leader"),
            ],
        ),
        (
            typed("xl create /etc/xen/demo1.cfg"),
            vec![line("Parsing config from /etc/xen/demo1.cfg")],
        ),
        (
            typed("xl vcpu-list demo1"),
            vec![Says::Line(Pattern::contains_all([
                "demo1 ",
                "    1     0    1   ",
            ]))],
        ),
        (
            typed("xl lockstep on"),
            vec![Says::Line(Pattern::contains(
                "(XEN) lockstep: on (runtime): both replicas on the CPU of each transaction",
            ))],
        ),
        inject_effects(10, 10),
        (
            typed("xl lockstep status"),
            vec![
                line("lockstep               : on"),
                line("recovered              : 10"),
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
}

/// `dom0-lockstep-off` (DualVisor, `-smp 2`, `lockstep=off`).
pub fn dom0_lockstep_off(p: &Paths) -> Planned {
    off_session(
        p,
        real_initrd(
            p,
            "dom0-lockstep-off",
            &p.image,
            2,
            steps_script(off_steps()),
            Duration::from_secs(600),
        ),
    )
}

/// A dom0 session on DualVisor `s`, booted with lockstep off.
fn off_session(p: &Paths, mut s: Scenario) -> Planned {
    if let Boot::Kernel { append, .. } = &mut s.qemu.boot {
        append.push_str(" lockstep=off");
    }
    s.expect.expect.push(Pattern::contains(OFF_LINE));
    s.needs.push((p.image.clone(), "make image"));
    Planned::Run(Box::new(s))
}

/// `dom0-xl-off`: the domain life cycle session `dom0-xl-xen` runs on Xen 4.17 (no lockstep
/// steps), on DualVisor with lockstep off on Xen's two CPUs, where dom0 and the domUs spread
/// over both.
pub fn dom0_xl_off(p: &Paths) -> Planned {
    off_session(p, lifecycle(p, "dom0-xl-off", &p.image, 2, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::test_support::{find, watch};
    use crate::watch::WatchState;

    #[test]
    fn guests_run_on_two_cpus_with_lockstep_off() {
        let p = Paths::new("/repo");
        let guests: Vec<PathBuf> = ["hello", "timer", "bench"]
            .iter()
            .map(|g| PathBuf::from(format!("/repo/build/guests/{g}.elf")))
            .collect();
        let v = lockstep_off_guests(&p, &guests);
        assert_eq!(v.len(), 2, "hello is not one of them");
        let s = find(&v, "dualvisor-timer-off");
        assert_eq!(s.qemu.smp, 2);
        let Boot::Kernel { append, .. } = &s.qemu.boot else {
            panic!("the guest boots with -kernel");
        };
        assert!(
            append.ends_with("dom0_max_vcpus=2 lockstep=off"),
            "{append}"
        );
        let log = format!(
            "{OFF_LINE}\n(XEN) dom0: vCPU1 runs on CPU1\n(XEN) lockstep: CPU1 enters d0v1\n\
             Test result: SUCCESS\n(XEN) stack use (KiB): CPU0 main 5/256\n\
             (XEN) stack use (KiB): CPU1 main 5/256\n(XEN) Hardware Dom0 halted\n"
        );
        assert_eq!(watch(&s, &log), WatchState::AllSeen);
        let on_cpu0 = log.replace("CPU1 enters d0v1", "CPU0 enters d0v1");
        assert_ne!(watch(&s, &on_cpu0), WatchState::AllSeen);
        let b = find(&v, "dualvisor-bench-off");
        let shared = format!(
            "{log}BENCH pingpong unavailable: vCPU 0 and vCPU 1 do not run at the same time: \
             the hypervisor runs both on one physical CPU (vCPU 1 waited runnable)\n"
        );
        assert!(matches!(watch(&b, &shared), WatchState::Failed { .. }));
    }
}
