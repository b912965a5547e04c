//! Runs planned scenarios at most `jobs` at a time, printing each result as it arrives, and
//! adds the self-test scenarios once `selftest-list` has named them.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread;

use crate::execute::execute;
use crate::report::{Report, Tally};
use crate::scenario::{selected, Paths, Planned};
use crate::selftests::{parse_selftest_list, selftests_from, SELFTEST_LIST};

/// Whether a run with `filter` should run `selftest-list` to discover `selftest-<name>`.
pub fn wants_discovery(filter: Option<&str>) -> bool {
    match filter {
        None => true,
        Some(f) => SELFTEST_LIST.contains(f) || f.starts_with("selftest-"),
    }
}

/// The static plan for `filter`: selected scenarios, plus `selftest-list` when discovery
/// is wanted.
pub fn plan(all: Vec<Planned>, filter: Option<&str>) -> Vec<Planned> {
    let discover = wants_discovery(filter);
    all.into_iter()
        .filter(|s| selected(s.name(), filter) || (discover && s.name() == SELFTEST_LIST))
        .collect()
}

/// Runs `planned` with at most `jobs` concurrent QEMUs, calling `report` on each result in
/// completion order; returns the tally.
pub fn run_all(
    planned: Vec<Planned>,
    p: &Paths,
    jobs: usize,
    filter: Option<&str>,
    mut report: impl FnMut(&Report),
) -> Tally {
    let jobs = jobs.max(1);
    let mut queue: VecDeque<Planned> = planned.into();
    let mut tally = Tally::default();
    let (tx, rx) = mpsc::channel::<(Report, Option<Vec<u8>>)>();
    let mut running = 0usize;
    loop {
        while running < jobs {
            let Some(next) = queue.pop_front() else { break };
            let tx = tx.clone();
            let paths = p.clone();
            running += 1;
            thread::spawn(move || {
                let r = execute(&next, &paths);
                let log = (next.name() == SELFTEST_LIST)
                    .then(|| std::fs::read(paths.log_of(SELFTEST_LIST)).unwrap_or_default());
                // The receiver outlives every worker; a send error cannot happen.
                let _ = tx.send((r, log));
            });
        }
        if running == 0 {
            break;
        }
        let Ok((r, list_log)) = rx.recv() else { break };
        running -= 1;
        tally.add(&r.outcome);
        report(&r);
        if let Some(log) = list_log {
            match parse_selftest_list(&log) {
                Ok(names) => queue.extend(
                    selftests_from(p, &names)
                        .into_iter()
                        .filter(|s| selected(s.name(), filter)),
                ),
                Err(e) => {
                    let skip = Report {
                        name: "selftest-<name>".into(),
                        outcome: crate::report::Outcome::Skip {
                            reason: format!("cannot discover self-tests: {e}"),
                        },
                    };
                    tally.add(&skip.outcome);
                    report(&skip);
                }
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;

    #[test]
    fn discovery_follows_the_filter() {
        assert!(wants_discovery(None));
        assert!(wants_discovery(Some("selftest")));
        assert!(wants_discovery(Some("list")));
        assert!(wants_discovery(Some("selftest-heap")));
        assert!(!wants_discovery(Some("boot")));
    }

    #[test]
    fn plan_keeps_selftest_list_for_selftest_filters() {
        let p = Paths::new("/repo");
        let all = crate::catalogue::static_scenarios(&p);
        let names = |f| -> Vec<String> {
            plan(all.clone(), f)
                .iter()
                .map(|s| s.name().to_string())
                .collect()
        };
        assert_eq!(
            names(Some("boot-smp")),
            vec!["boot-smp1", "boot-smp2", "boot-smp4"]
        );
        assert_eq!(names(Some("selftest-heap")), vec!["selftest-list"]);
        assert_eq!(
            names(Some("selftest-")),
            vec!["selftest-list", "selftest-unknown"]
        );
    }

    #[test]
    fn runs_skips_and_missing_image_failures_and_counts_them() {
        let dir = std::env::temp_dir().join(format!("qemu-tests-sched-{}", std::process::id()));
        let p = Paths::new(&dir);
        let planned = vec![
            Planned::Skip {
                name: "a".into(),
                reason: "r".into(),
            },
            crate::catalogue::static_scenarios(&p)
                .into_iter()
                .find(|s| s.name() == "boot-smp1")
                .expect("exists"),
        ];
        let mut seen = Vec::new();
        let t = run_all(planned, &p, 2, None, |r| seen.push(r.clone()));
        assert_eq!(t.summary(), "0 passed, 1 failed, 1 skipped");
        assert_eq!(seen.len(), 2);
        assert!(seen
            .iter()
            .any(|r| r.name == "boot-smp1" && matches!(r.outcome, Outcome::Fail { .. })));
    }
}
