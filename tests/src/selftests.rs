//! The self-test scenarios: `selftest=list` names them, each runs with `selftest=NAME` and
//! reports through a PASS/FAIL line and the isa-debug-exit status.

use crate::catalogue::{crash_markers, image_needs, kernel, BOOT_CMDLINE, TIMEOUT};
use crate::exit::{debug_exit_status, DEBUG_EXIT_FAIL, DEBUG_EXIT_PASS};
use crate::monitor::{End, Expectation};
use crate::pattern::Pattern;
use crate::scenario::{Paths, Planned, Scenario};

/// The scenario whose output names the self-tests.
pub const SELFTEST_LIST: &str = "selftest-list";
/// Self-tests that have dedicated scenarios rather than a `selftest-<name>` one.
const DEDICATED_SELFTESTS: [&str; 2] = ["list", "fault"];

fn selftest_run(
    p: &Paths,
    name: &str,
    test: &str,
    smp: u32,
    end: End,
    expect: Vec<Pattern>,
    fail: Vec<Pattern>,
) -> Scenario {
    Scenario {
        name: name.to_string(),
        qemu: kernel(p, smp, &format!("{BOOT_CMDLINE} selftest={test}")),
        expect: Expectation {
            expect,
            fail,
            stop: vec![],
            end,
            timeout: TIMEOUT,
        },
        needs: image_needs(p),
        inputs: vec![],
    }
}

fn pass_exit() -> End {
    End::Exit(debug_exit_status(DEBUG_EXIT_PASS))
}

/// `selftest=stack-overflow-<which>`: the boot CPU pushes onto its `<which>` stack (main or
/// syscall) until the guard page below it faults; the fatal-trap report must name that stack
/// (`stack` is how it does) and the machine halt (`noreboot`), not run on corrupted memory.
pub(crate) fn stack_overflow(p: &Paths, which: &str, stack: &str) -> Scenario {
    selftest_run(
        p,
        &format!("stack-overflow-{which}"),
        &format!("stack-overflow-{which}"),
        2,
        End::KillWhenSeen {
            linger: std::time::Duration::from_secs(2),
        },
        vec![
            Pattern::contains(format!("(XEN) stack overflow on CPU0 ({stack})")),
            Pattern::contains("(XEN) FATAL TRAP: vector 14 (page fault)"),
            Pattern::contains("(XEN) Manual reset required ('noreboot' specified)"),
        ],
        vec![
            Pattern::contains("panicked at"),
            Pattern::contains("(XEN) Resetting"),
        ],
    )
}

/// `selftest=list`: prints the names and exits with the PASS status.
pub(crate) fn selftest_list(p: &Paths) -> Scenario {
    selftest_run(
        p,
        SELFTEST_LIST,
        "list",
        4,
        pass_exit(),
        vec![Pattern::starts_with("(XEN) selftests:")],
        crash_markers(),
    )
}

/// An unknown self-test name must FAIL (status 35), not boot on.
pub(crate) fn selftest_unknown(p: &Paths) -> Scenario {
    let name = "no-such-selftest";
    selftest_run(
        p,
        "selftest-unknown",
        name,
        1,
        End::Exit(debug_exit_status(DEBUG_EXIT_FAIL)),
        vec![Pattern::contains(format!("(XEN) selftest {name}: FAIL"))],
        crash_markers(),
    )
}

/// One self-test, expected to print its PASS line and exit with status 33.
pub fn selftest(p: &Paths, test: &str, single_threaded: bool) -> Scenario {
    selftest_smp(p, test, 4, single_threaded)
}

/// The self-test multi-CPU tests run on other machine sizes too.
const MULTI_CPU_SELFTEST: &str = "lockstep";

/// A self-test on `smp` CPUs (named with `-smp<N>` unless it is the default 4).
pub fn selftest_smp(p: &Paths, test: &str, smp: u32, single_threaded: bool) -> Scenario {
    let mut fail = crash_markers();
    fail.push(Pattern::contains(format!("(XEN) selftest {test}: FAIL")));
    let mut expect = vec![Pattern::contains(format!("(XEN) selftest {test}: PASS"))];
    if test == MULTI_CPU_SELFTEST && smp == 5 {
        // Two pairs, their transactions in turns, over the shared replicas.
        expect.insert(
            0,
            Pattern::contains(
                "(XEN) lockstep: pair 0 leader CPU1 follower CPU2, pair 1 leader CPU3 follower CPU4, coordinator CPU0",
            ),
        );
    }
    let size = if smp == 4 {
        String::new()
    } else {
        format!("-smp{smp}")
    };
    let name = if single_threaded {
        format!("selftest-{test}{size}-tcg-single")
    } else {
        format!("selftest-{test}{size}")
    };
    let mut s = selftest_run(p, &name, test, smp, pass_exit(), expect, fail);
    if single_threaded {
        s.qemu = s.qemu.accel("tcg,thread=single");
    }
    s
}

/// An error in the `selftest=list` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// No `(XEN) selftests:` line.
    NoListLine,
    /// A name with characters other than ASCII letters, digits, `-` and `_`.
    BadName(String),
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::NoListLine => write!(f, "no '(XEN) selftests:' line in the log"),
            ListError::BadName(n) => write!(f, "self-test name {n:?} is not [A-Za-z0-9_-]+"),
        }
    }
}

/// The self-test names from a `selftest=list` serial log.
pub fn parse_selftest_list(log: &[u8]) -> Result<Vec<String>, ListError> {
    const TAG: &str = "(XEN) selftests:";
    let text = String::from_utf8_lossy(log);
    let line = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.contains(TAG))
        .ok_or(ListError::NoListLine)?;
    let rest = &line[line.find(TAG).map_or(0, |i| i + TAG.len())..];
    let mut names = Vec::new();
    for name in rest.split_whitespace() {
        let ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(ListError::BadName(name.to_string()));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// The `selftest-<name>` scenarios for the listed names: each under the default (MTTCG)
/// accelerator, and the first also under `-accel tcg,thread=single`.
pub fn selftests_from(p: &Paths, names: &[String]) -> Vec<Planned> {
    let runnable: Vec<&String> = names
        .iter()
        .filter(|n| !DEDICATED_SELFTESTS.contains(&n.as_str()))
        .collect();
    let mut v: Vec<Planned> = runnable
        .iter()
        .map(|n| Planned::Run(Box::new(selftest(p, n, false))))
        .collect();
    if let Some(first) = runnable.first() {
        v.push(Planned::Run(Box::new(selftest(p, first, true))));
    }
    if runnable.iter().any(|n| n.as_str() == MULTI_CPU_SELFTEST) {
        // Lockstep across real CPUs: a pair with a coordinator (3), with a spare (4), the
        // leader coordinating (2), and two pairs (5); MTTCG finds races, thread=single is
        // reproducible.
        for (smp, single) in [(3, false), (3, true), (4, true), (2, false), (5, false)] {
            v.push(Planned::Run(Box::new(selftest_smp(
                p,
                MULTI_CPU_SELFTEST,
                smp,
                single,
            ))));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::test_support::{find, watch};
    use crate::watch::WatchState;

    fn paths() -> Paths {
        Paths::new("/repo")
    }

    #[test]
    fn stack_overflow_scenarios_want_the_named_stack() {
        let s = stack_overflow(&paths(), "syscall", "SYSCALL stack");
        assert!(matches!(s.expect.end, End::KillWhenSeen { .. }));
        let report = "(XEN) stack overflow on CPU0 (SYSCALL stack)\n\
                      (XEN) FATAL TRAP: vector 14 (page fault), error code 0x0002, on CPU0\n\
                      (XEN) Manual reset required ('noreboot' specified)\n";
        assert_eq!(watch(&s, report), WatchState::AllSeen);
        let other = report.replace("SYSCALL stack", "main stack");
        assert_ne!(watch(&s, &other), WatchState::AllSeen);
    }

    #[test]
    fn selftest_list_parsing() {
        let log = b"(XEN) DualVisor\r\n(XEN) selftests: heap lockstep-digest fault list\r\n";
        assert_eq!(
            parse_selftest_list(log),
            Ok(vec![
                "heap".into(),
                "lockstep-digest".into(),
                "fault".into(),
                "list".into()
            ])
        );
        assert_eq!(parse_selftest_list(b"(XEN) selftests:\n"), Ok(vec![]));
        assert_eq!(
            parse_selftest_list(b"(XEN) DualVisor\n"),
            Err(ListError::NoListLine)
        );
        assert_eq!(
            parse_selftest_list(b"(XEN) selftests: a b/c\n"),
            Err(ListError::BadName("b/c".into()))
        );
    }

    #[test]
    fn selftests_skip_dedicated_ones_and_add_a_single_threaded_run() {
        let names: Vec<String> = ["list", "fault", "heap", "digest"]
            .map(String::from)
            .to_vec();
        let v = selftests_from(&paths(), &names);
        let got: Vec<&str> = v.iter().map(Planned::name).collect();
        assert_eq!(
            got,
            vec![
                "selftest-heap",
                "selftest-digest",
                "selftest-heap-tcg-single"
            ]
        );
        let single = find(&v, "selftest-heap-tcg-single");
        assert_eq!(single.qemu.accel.as_deref(), Some("tcg,thread=single"));
        assert_eq!(single.expect.end, End::Exit(33));
        assert!(selftests_from(&paths(), &["fault".to_string()]).is_empty());
    }

    #[test]
    fn lockstep_also_runs_on_other_machine_sizes() {
        let names: Vec<String> = ["heap", "lockstep"].map(String::from).to_vec();
        let v = selftests_from(&paths(), &names);
        let got: Vec<&str> = v.iter().map(Planned::name).collect();
        assert_eq!(
            got,
            vec![
                "selftest-heap",
                "selftest-lockstep",
                "selftest-heap-tcg-single",
                "selftest-lockstep-smp3",
                "selftest-lockstep-smp3-tcg-single",
                "selftest-lockstep-tcg-single",
                "selftest-lockstep-smp2",
                "selftest-lockstep-smp5",
            ]
        );
        let s = find(&v, "selftest-lockstep-smp3-tcg-single");
        assert_eq!(s.qemu.accel.as_deref(), Some("tcg,thread=single"));
        assert_eq!(s.qemu.smp, 3);
        let s = find(&v, "selftest-lockstep-smp5");
        assert_eq!(s.qemu.smp, 5);
        assert_eq!(
            watch(
                &s,
                "(XEN) lockstep: pair 0 leader CPU1 follower CPU2, pair 1 leader CPU3 follower CPU4, coordinator CPU0\n\
                 (XEN) selftest lockstep: PASS\n"
            ),
            WatchState::AllSeen
        );
        assert_ne!(
            watch(&s, "(XEN) selftest lockstep: PASS\n"),
            WatchState::AllSeen,
            "the two pairs must have been set up"
        );
    }

    #[test]
    fn selftest_expects_its_own_pass_line() {
        let s = selftest(&paths(), "heap", false);
        assert_eq!(
            watch(&s, "(XEN) selftest heap: PASS\n"),
            WatchState::AllSeen
        );
        assert_eq!(
            watch(&s, "(XEN) selftest digest: PASS\n"),
            WatchState::Pending
        );
        assert!(matches!(
            watch(&s, "(XEN) selftest heap: FAIL: corrupt\n"),
            WatchState::Failed { .. }
        ));
    }
}
