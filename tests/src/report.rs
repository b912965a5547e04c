//! Per-scenario result lines (`test NAME ... ok`) and the final tally.

use std::fmt::Write as _;

/// How many log lines a failure report shows.
pub const TAIL_LINES: usize = 40;

/// The result of one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Pass,
    /// It failed.
    Fail {
        /// Why, in one line.
        reason: String,
        /// Further context lines: command, QEMU messages, log tail.
        details: Vec<String>,
    },
    /// It could not run here.
    Skip {
        /// Why.
        reason: String,
    },
}

/// A named result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Scenario name.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
}

impl Report {
    /// The text printed for this result: one `test NAME ... ok|FAILED|skipped` line, and for
    /// a failure the reason and details, indented.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.outcome {
            Outcome::Pass => {
                let _ = writeln!(out, "test {} ... ok", self.name);
            }
            Outcome::Skip { reason } => {
                let _ = writeln!(out, "test {} ... skipped: {reason}", self.name);
            }
            Outcome::Fail { reason, details } => {
                let _ = writeln!(out, "test {} ... FAILED", self.name);
                let _ = writeln!(out, "    reason: {reason}");
                for d in details {
                    let _ = writeln!(out, "    {d}");
                }
            }
        }
        out
    }
}

/// Counts of results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Passed scenarios.
    pub passed: usize,
    /// Failed scenarios.
    pub failed: usize,
    /// Skipped scenarios.
    pub skipped: usize,
}

impl Tally {
    /// Counts `outcome`.
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail { .. } => self.failed += 1,
            Outcome::Skip { .. } => self.skipped += 1,
        }
    }

    /// The final line: `N passed, N failed`, plus `, N skipped` when any was skipped.
    pub fn summary(&self) -> String {
        let mut s = format!("{} passed, {} failed", self.passed, self.failed);
        if self.skipped > 0 {
            let _ = write!(s, ", {} skipped", self.skipped);
        }
        s
    }

    /// Whether the whole run succeeded (nothing failed).
    pub fn success(&self) -> bool {
        self.failed == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_outcome() {
        let ok = Report {
            name: "boot-smp1".into(),
            outcome: Outcome::Pass,
        };
        assert_eq!(ok.render(), "test boot-smp1 ... ok\n");
        let skip = Report {
            name: "xen-oracle".into(),
            outcome: Outcome::Skip {
                reason: "no guests".into(),
            },
        };
        assert_eq!(skip.render(), "test xen-oracle ... skipped: no guests\n");
        let fail = Report {
            name: "iso".into(),
            outcome: Outcome::Fail {
                reason: "timed out".into(),
                details: vec!["| (XEN) DualVisor".into()],
            },
        };
        assert_eq!(
            fail.render(),
            "test iso ... FAILED\n    reason: timed out\n    | (XEN) DualVisor\n"
        );
    }

    #[test]
    fn summary_mentions_skips_only_when_present() {
        let mut t = Tally::default();
        t.add(&Outcome::Pass);
        t.add(&Outcome::Pass);
        t.add(&Outcome::Fail {
            reason: String::new(),
            details: vec![],
        });
        assert_eq!(t.summary(), "2 passed, 1 failed");
        assert!(!t.success());
        t.add(&Outcome::Skip {
            reason: String::new(),
        });
        assert_eq!(t.summary(), "2 passed, 1 failed, 1 skipped");
        let mut clean = Tally::default();
        clean.add(&Outcome::Skip {
            reason: String::new(),
        });
        assert!(clean.success());
        assert_eq!(clean.summary(), "0 passed, 0 failed, 1 skipped");
    }
}
