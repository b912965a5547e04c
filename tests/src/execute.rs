//! Runs one planned scenario: checks its inputs, writes its files, runs QEMU and turns the
//! run into a [`Report`].

use std::fs;

use crate::monitor::Verdict;
use crate::report::{Outcome, Report, TAIL_LINES};
use crate::run::{qemu_output_path, run};
use crate::scenario::{Paths, Planned, Scenario};
use crate::watch::tail_lines;

/// Runs `planned` (a skip is reported as is).
pub fn execute(planned: &Planned, p: &Paths) -> Report {
    match planned {
        Planned::Skip { name, reason } => Report {
            name: name.clone(),
            outcome: Outcome::Skip {
                reason: reason.clone(),
            },
        },
        Planned::Run(s) => Report {
            name: s.name.clone(),
            outcome: run_scenario(s, p),
        },
    }
}

/// QEMU's warnings about EPYC features TCG cannot emulate and its note on being stopped:
/// printed on most runs, never news.
pub fn is_qemu_noise(line: &str) -> bool {
    line.contains("TCG doesn't support requested feature") || line.contains("terminating on signal")
}

fn fail(reason: String) -> Outcome {
    Outcome::Fail {
        reason,
        details: vec![],
    }
}

fn run_scenario(s: &Scenario, p: &Paths) -> Outcome {
    for (path, target) in &s.needs {
        if !path.is_file() {
            return fail(format!("{} is missing (run `{target}`)", p.show(path)));
        }
    }
    for (path, bytes) in &s.inputs {
        let written = path
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| fs::write(path, bytes));
        if let Err(e) = written {
            return fail(format!("cannot write {}: {e}", p.show(path)));
        }
    }
    let log_path = p.log_of(&s.name);
    let out = run(&s.qemu, &s.expect, &log_path, &p.root);
    let reason = match out.verdict {
        Verdict::Pass => return Outcome::Pass,
        Verdict::Fail(r) => r,
    };
    let mut details = vec![format!("command: {}", out.command)];
    if out.qemu_output.lines().any(|l| !is_qemu_noise(l)) {
        details.push(format!(
            "QEMU said ({}):",
            p.show(&qemu_output_path(&log_path))
        ));
        details.extend(
            out.qemu_output
                .lines()
                .filter(|l| !is_qemu_noise(l))
                .take(10)
                .map(|l| format!("  {l}")),
        );
    }
    let tail = tail_lines(&out.log, TAIL_LINES);
    details.push(format!(
        "serial log {} ({:.1}s); last {} lines:",
        p.show(&log_path),
        out.elapsed.as_secs_f64(),
        tail.len()
    ));
    details.extend(tail.iter().map(|l| format!("| {l}")));
    Outcome::Fail { reason, details }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_image_fails_without_running_qemu() {
        let dir = std::env::temp_dir().join(format!("qemu-tests-exec-{}", std::process::id()));
        let p = Paths::new(&dir);
        let planned = crate::catalogue::static_scenarios(&p)
            .into_iter()
            .find(|s| s.name() == "boot-smp1")
            .expect("boot-smp1 exists");
        let r = execute(&planned, &p);
        assert_eq!(r.name, "boot-smp1");
        match r.outcome {
            Outcome::Fail { reason, .. } => {
                assert_eq!(reason, "build/dualvisor.elf is missing (run `make image`)")
            }
            other => panic!("{other:?}"),
        }
        assert!(!p.log_of("boot-smp1").exists());
    }

    #[test]
    fn cpu_model_warnings_are_noise() {
        assert!(is_qemu_noise(
            "qemu-system-x86_64: warning: TCG doesn't support requested feature: CPUID.07H:EBX.rdseed [bit 18]"
        ));
        assert!(!is_qemu_noise("qemu-system-x86_64: could not load kernel"));
    }

    #[test]
    fn skip_is_passed_through() {
        let p = Paths::new("/nonexistent");
        let r = execute(
            &Planned::Skip {
                name: "x".into(),
                reason: "why".into(),
            },
            &p,
        );
        assert_eq!(
            r.outcome,
            Outcome::Skip {
                reason: "why".into()
            }
        );
    }
}
