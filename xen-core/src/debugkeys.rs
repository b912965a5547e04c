//! The hypervisor's debug keys (Xen's keyhandler): what a key typed on the serial console
//! prints while input is switched to the hypervisor. Every key is a read-only view of a
//! replica (and of the lockstep engine's counters); the hypervisor prints the text, each
//! line prefixed `(XEN) `.

use crate::hv::HvState;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use dom0_interface::lockstep_ctl::LOCKSTEP_ROLE_NAMES;
use lockstep::policy::Health;
use lockstep::stats::Stats;
use lockstep::topology::Topology;

/// One installed key.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// The key.
    pub key: u8,
    /// What it does (Xen's handler description).
    pub desc: &'static str,
}

/// The installed keys, in the order `h` lists them.
pub const KEYS: &[Key] = &[
    Key {
        key: b'h',
        desc: "show this message",
    },
    Key {
        key: b'l',
        desc: "dump lockstep state (pair roles, health, statistics)",
    },
    Key {
        key: b'q',
        desc: "dump domain (and guest debug) info",
    },
    Key {
        key: b'r',
        desc: "dump run queues",
    },
];

/// The lockstep engine's side of the `l` key.
pub struct LockstepView<'a> {
    /// Roles decided at boot (None before lockstep is set up).
    pub topology: Option<&'a Topology>,
    /// Each CPU's roles now (`LOCKSTEP_ROLE_*` bits, indexed by CPU, as `xl lockstep status`
    /// reports them): a spare that replaced a follower, a promoted leader, retired cores.
    pub roles: &'a [u8],
    /// Protection state now.
    pub health: Health,
    /// Counters.
    pub stats: &'a Stats,
}

/// The text key `key` prints (lines without the `(XEN) ` prefix, each ending in `\n`), or
/// None for a key without a handler (Xen ignores those). `now` is the system time in ns.
pub fn run(key: u8, state: &HvState, lockstep: &LockstepView<'_>, now: u64) -> Option<String> {
    match key {
        b'h' => Some(help(key)),
        b'l' => Some(lockstep_state(key, lockstep)),
        b'q' => Some(domains(key, state, now)),
        b'r' => Some(run_queues(key, state)),
        _ => None,
    }
}

fn printable(k: u8) -> char {
    if k.is_ascii_graphic() {
        k as char
    } else {
        ' '
    }
}

/// `h`: the installed keys, as Xen's `show_handlers`.
pub fn help(key: u8) -> String {
    let mut s = format!(
        "'{}' pressed -> showing installed handlers\n",
        printable(key)
    );
    for k in KEYS {
        let _ = writeln!(
            s,
            " key '{}' (ascii '{:02x}') => {}",
            printable(k.key),
            k.key,
            k.desc
        );
    }
    s
}

fn runstate_name(state: i32) -> &'static str {
    match state {
        0 => "running",
        1 => "runnable",
        2 => "blocked",
        3 => "offline",
        _ => "unknown",
    }
}

/// `q`: every domain and its vCPUs.
pub fn domains(key: u8, state: &HvState, now: u64) -> String {
    let mut s = format!(
        "'{}' pressed -> dumping domain info (now = {})\n",
        printable(key),
        now
    );
    for (id, d) in state.domains.iter() {
        let _ = writeln!(s, "General information for domain {id}:");
        let _ = writeln!(
            s,
            "    privileged={} paused={} dying={} shutdown={} max_vcpus={}",
            u8::from(d.flags.privileged),
            u8::from(d.flags.paused),
            u8::from(d.flags.dying),
            d.shutdown.map_or(String::from("no"), |r| format!("{r}")),
            d.max_vcpus
        );
        let _ = writeln!(s, "    tot_pages={} max_pages={}", d.tot_pages, d.max_pages);
        let _ = writeln!(s, "VCPU information and callbacks for d{id}:");
        for ((_, v), vcpu) in state.vcpus.iter().filter(|(k, _)| k.0 == *id) {
            let sched = crate::sched::vcpu_sched(state, (*id, *v));
            let cpu = if sched.pcpu == crate::sched::UNPLACED {
                String::from("-")
            } else {
                format!("{}", sched.pcpu)
            };
            let _ = writeln!(
                s,
                "  VCPU{v}: CPU{cpu} online={} {} {} cr3={:#x}",
                u8::from(vcpu.online),
                runstate_name(sched.runstate.state),
                if vcpu.kernel_mode { "kernel" } else { "user" },
                vcpu.cr3
            );
        }
    }
    s
}

/// `r`: each leader CPU's run queue.
pub fn run_queues(key: u8, state: &HvState) -> String {
    let mut s = format!("'{}' pressed -> dumping run queues\n", printable(key));
    for (cpu, q) in state.runqs.iter() {
        let current = q
            .current
            .map_or(String::from("idle"), |(d, v)| format!("d{d}v{v}"));
        let _ = writeln!(
            s,
            "CPU[{cpu:02}] current={current}, runq: {}",
            q.queue.len()
        );
        for (i, (d, v)) in q.queue.iter().enumerate() {
            let _ = writeln!(s, "  {i}: d{d}v{v}");
        }
    }
    if state.runqs.iter().next().is_none() {
        s.push_str("no run queues\n");
    }
    s
}

/// `l`: lockstep roles, health and counters.
pub fn lockstep_state(key: u8, ls: &LockstepView<'_>) -> String {
    let mut s = format!("'{}' pressed -> dumping lockstep state\n", printable(key));
    match ls.topology {
        Some(t) => {
            let _ = writeln!(s, "lockstep: {t} (at boot)");
        }
        None => s.push_str("lockstep: not set up\n"),
    }
    let now: Vec<String> = ls
        .roles
        .iter()
        .enumerate()
        .filter(|(_, bits)| **bits != 0)
        .map(|(cpu, bits)| format!("CPU{cpu} {}", role_names(*bits)))
        .collect();
    if !now.is_empty() {
        let _ = writeln!(s, "roles now: {}", now.join(", "));
    }
    let _ = writeln!(s, "health: {}", ls.health);
    for line in format!("{}", ls.stats).lines() {
        let _ = writeln!(s, "stats: {line}");
    }
    s
}

/// The names of the role bits set in `bits`, joined with `+` (unknown bits in hex).
fn role_names(bits: u8) -> String {
    let mut names: Vec<String> = LOCKSTEP_ROLE_NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| String::from(*n))
        .collect();
    let known = LOCKSTEP_ROLE_NAMES.iter().fold(0, |a, (b, _)| a | b);
    if bits & !known != 0 {
        names.push(format!("{:#x}", bits & !known));
    }
    names.join("+")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::create_domain;
    use lockstep::Journal;

    fn state() -> HvState {
        let mut st = HvState::new();
        let mut j = Journal::new();
        j.begin(1);
        create_domain(&mut st, &mut j, 0, true, 2, 1024).expect("dom0");
        create_domain(&mut st, &mut j, 3, false, 1, 256).expect("domU");
        st
    }

    fn view(stats: &Stats) -> LockstepView<'_> {
        LockstepView {
            topology: None,
            roles: &[],
            health: Health::Protected,
            stats,
        }
    }

    #[test]
    fn help_lists_every_key_with_its_ascii_code() {
        let h = help(b'h');
        assert!(h.starts_with("'h' pressed -> showing installed handlers\n"));
        for k in KEYS {
            assert!(h.contains(&format!(
                " key '{}' (ascii '{:02x}') => {}\n",
                k.key as char, k.key, k.desc
            )));
        }
        assert_eq!(h.lines().count(), KEYS.len() + 1);
    }

    #[test]
    fn q_lists_domains_and_their_vcpus() {
        let st = state();
        let stats = Stats::default();
        let out = run(b'q', &st, &view(&stats), 1234).expect("q");
        assert!(out.starts_with("'q' pressed -> dumping domain info (now = 1234)\n"));
        assert!(out.contains("General information for domain 0:\n"));
        assert!(out.contains("General information for domain 3:\n"));
        assert!(out.contains("VCPU information and callbacks for d0:\n"));
        assert!(out.contains("    privileged=1 paused=0 dying=0 shutdown=no max_vcpus=2\n"));
        assert!(out.contains("  VCPU1: CPU- online=0"));
        assert!(out.contains("    tot_pages=256 max_pages=256\n"));
    }

    #[test]
    fn r_reports_empty_and_filled_run_queues() {
        let mut st = state();
        let stats = Stats::default();
        assert!(run(b'r', &st, &view(&stats), 0)
            .expect("r")
            .contains("no run queues\n"));
        let mut j = Journal::new();
        j.begin(2);
        st.runqs.insert(
            &mut j,
            1,
            crate::sched::RunQueue {
                current: Some((0, 0)),
                queue: alloc::vec![(0, 1), (3, 0)],
                slice_end: 0,
            },
        );
        let out = run(b'r', &st, &view(&stats), 0).expect("r");
        assert!(out.contains("CPU[01] current=d0v0, runq: 2\n  0: d0v1\n  1: d3v0\n"));
    }

    #[test]
    fn l_shows_roles_health_and_counters() {
        let st = state();
        let stats = Stats {
            transactions: 42,
            commits: 41,
            ..Stats::default()
        };
        let topo = Topology::Pair {
            leader: 1,
            follower: 2,
            coordinator: Some(0),
            spares: alloc::vec![],
            more: alloc::vec![],
        };
        use dom0_interface::lockstep_ctl::{
            LOCKSTEP_ROLE_COORDINATOR as C, LOCKSTEP_ROLE_FOLLOWER as F, LOCKSTEP_ROLE_LEADER as L,
            LOCKSTEP_ROLE_RETIRED as R,
        };
        // The follower CPU2 was retired and the spare CPU3 took its place.
        let roles = [C, L, R, F, 0, 0x40];
        let v = LockstepView {
            topology: Some(&topo),
            roles: &roles,
            health: Health::Protected,
            stats: &stats,
        };
        let out = run(b'l', &st, &v, 0).expect("l");
        assert!(out
            .contains("lockstep: pair 0 leader CPU1 follower CPU2, coordinator CPU0 (at boot)\n"));
        assert!(out.contains(
            "roles now: CPU0 coordinator, CPU1 leader, CPU2 retired, CPU3 follower, CPU5 0x40\n"
        ));
        let both = LockstepView {
            roles: &[C | L, F],
            ..v
        };
        let out = run(b'l', &st, &both, 0).expect("l");
        assert!(out.contains("roles now: CPU0 coordinator+leader, CPU1 follower\n"));
        assert!(out.contains(&format!("health: {}\n", Health::Protected)));
        assert!(out.contains("stats: transactions 42 commits 41"));
    }

    #[test]
    fn unknown_keys_print_nothing() {
        let st = state();
        let stats = Stats::default();
        for k in [b'x', 0u8, b'\r', 0x7f] {
            assert!(run(k, &st, &view(&stats), 0).is_none());
        }
    }
}
