//! The pass/fail decision for one QEMU run, as a pure state machine over time, serial
//! output and QEMU's exit.

use std::time::Duration;

use crate::exit::QemuExit;
use crate::pattern::Pattern;
use crate::watch::{WatchState, Watcher};

/// How long missing markers may still arrive after a stop line (output racing between CPUs).
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// How a passing run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// QEMU keeps running (the system idles or halts): once every marker has appeared and
    /// QEMU stayed up for `linger` more without a failure line, it is killed and the run passes.
    KillWhenSeen {
        /// How long to keep watching after the last marker.
        linger: Duration,
    },
    /// QEMU must exit by itself with this status, after every marker appeared.
    Exit(i32),
}

/// What a run must show, and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Lines that must all appear (any order).
    pub expect: Vec<Pattern>,
    /// Lines that fail the run as soon as they appear.
    pub fail: Vec<Pattern>,
    /// Lines that announce the system's final state (e.g. "dom0 halted"): if markers are
    /// still missing [`STOP_GRACE`] after one appeared, the run fails without waiting for the
    /// timeout.
    pub stop: Vec<Pattern>,
    /// How a passing run ends.
    pub end: End,
    /// Hard limit for the whole run.
    pub timeout: Duration,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The run met its expectation.
    Pass,
    /// The run failed, for this reason.
    Fail(String),
}

/// What the process driver must do after a [`Monitor::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep QEMU running and call `step` again later.
    Continue,
    /// Stop QEMU (if it still runs) and report this verdict.
    Stop(Verdict),
}

/// Tracks one run: feed it serial bytes and the clock; it says when to stop and why.
#[derive(Debug, Clone)]
pub struct Monitor {
    watcher: Watcher,
    end: End,
    timeout: Duration,
    all_seen_at: Option<Duration>,
    stopped_at: Option<Duration>,
}

impl Monitor {
    /// A monitor for `exp`.
    pub fn new(exp: &Expectation) -> Self {
        Monitor {
            watcher: Watcher::new(exp.expect.clone(), exp.fail.clone()).with_stop(exp.stop.clone()),
            end: exp.end,
            timeout: exp.timeout,
            all_seen_at: None,
            stopped_at: None,
        }
    }

    /// Feeds serial output.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.watcher.feed(bytes);
    }

    /// Decides, at `now` since QEMU started, given QEMU's exit if it has exited (in which
    /// case every byte of output must have been fed first).
    pub fn step(&mut self, now: Duration, exited: Option<QemuExit>) -> Step {
        if exited.is_some() {
            self.watcher.finish();
        }
        let state = self.watcher.state();
        if let WatchState::Failed { pattern, line } = state {
            return Step::Stop(Verdict::Fail(format!(
                "failure marker {pattern} appeared: {line}"
            )));
        }
        if let Some(exit) = exited {
            return Step::Stop(self.on_exit(exit));
        }
        if state == WatchState::Pending {
            if let Some(line) = self.watcher.stopped_line() {
                let since = *self.stopped_at.get_or_insert(now);
                if now.saturating_sub(since) >= STOP_GRACE {
                    return Step::Stop(Verdict::Fail(format!(
                        "the system reached its final state ({line}) but {}s later these had not appeared: {}",
                        STOP_GRACE.as_secs(),
                        self.missing_list()
                    )));
                }
            }
        }
        if state == WatchState::AllSeen {
            if let End::KillWhenSeen { linger } = self.end {
                let since = *self.all_seen_at.get_or_insert(now);
                if now.saturating_sub(since) >= linger {
                    return Step::Stop(Verdict::Pass);
                }
            }
        }
        if now >= self.timeout {
            let reason = match (state, self.end) {
                (WatchState::AllSeen, End::Exit(code)) => format!(
                    "timed out after {}s: every marker appeared but QEMU did not exit (expected {})",
                    self.timeout.as_secs(),
                    QemuExit::Code(code)
                ),
                _ => format!(
                    "timed out after {}s; never appeared: {}",
                    self.timeout.as_secs(),
                    self.missing_list()
                ),
            };
            return Step::Stop(Verdict::Fail(reason));
        }
        Step::Continue
    }

    fn on_exit(&self, exit: QemuExit) -> Verdict {
        let missing = self.watcher.missing();
        if !missing.is_empty() {
            return Verdict::Fail(format!(
                "QEMU ended ({exit}) before these appeared: {}",
                self.missing_list()
            ));
        }
        match self.end {
            End::Exit(code) if exit == QemuExit::Code(code) => Verdict::Pass,
            End::Exit(code) => Verdict::Fail(format!(
                "QEMU ended with {exit}, expected {}",
                QemuExit::Code(code)
            )),
            End::KillWhenSeen { .. } => Verdict::Fail(format!(
                "QEMU ended ({exit}) but the system should have kept running"
            )),
        }
    }

    fn missing_list(&self) -> String {
        let v: Vec<String> = self
            .watcher
            .missing()
            .iter()
            .map(|p| p.to_string())
            .collect();
        v.join(", ")
    }

    /// Whether every expected marker has appeared.
    pub fn all_seen(&self) -> bool {
        self.watcher.state() == WatchState::AllSeen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn kill_exp() -> Expectation {
        Expectation {
            expect: vec![
                Pattern::contains("Brought up 2 CPUs"),
                Pattern::contains("idle"),
            ],
            fail: vec![Pattern::contains("FATAL TRAP")],
            stop: vec![Pattern::contains("halted")],
            end: End::KillWhenSeen { linger: 2 * S },
            timeout: 60 * S,
        }
    }

    fn exit_exp(code: i32) -> Expectation {
        Expectation {
            expect: vec![Pattern::contains("selftest x: PASS")],
            fail: vec![Pattern::contains("selftest x: FAIL")],
            stop: vec![],
            end: End::Exit(code),
            timeout: 60 * S,
        }
    }

    #[test]
    fn kill_scenario_passes_after_linger() {
        let mut m = Monitor::new(&kill_exp());
        m.feed(b"(XEN) Brought up 2 CPUs\n");
        assert_eq!(m.step(S, None), Step::Continue);
        m.feed(b"(XEN) idle\n");
        assert!(m.all_seen());
        assert_eq!(m.step(2 * S, None), Step::Continue);
        assert_eq!(m.step(3 * S, None), Step::Continue);
        assert_eq!(m.step(4 * S, None), Step::Stop(Verdict::Pass));
    }

    #[test]
    fn failure_during_linger_fails() {
        let mut m = Monitor::new(&kill_exp());
        m.feed(b"(XEN) Brought up 2 CPUs\n(XEN) idle\n");
        assert_eq!(m.step(S, None), Step::Continue);
        m.feed(b"(XEN) FATAL TRAP: vector 14\n");
        match m.step(2 * S, None) {
            Step::Stop(Verdict::Fail(r)) => assert!(r.contains("vector 14"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exit_during_kill_scenario_fails() {
        let mut m = Monitor::new(&kill_exp());
        m.feed(b"(XEN) Brought up 2 CPUs\n(XEN) idle\n");
        match m.step(S, Some(QemuExit::Code(0))) {
            Step::Stop(Verdict::Fail(r)) => assert!(r.contains("kept running"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stop_line_before_markers_fails_fast() {
        let mut m = Monitor::new(&kill_exp());
        m.feed(b"(XEN) Brought up 2 CPUs\n(XEN) Dom0 halted\n");
        assert_eq!(m.step(S, None), Step::Continue);
        assert_eq!(m.step(S + STOP_GRACE / 2, None), Step::Continue);
        match m.step(S + STOP_GRACE, None) {
            Step::Stop(Verdict::Fail(r)) => {
                assert!(r.contains("final state ((XEN) Dom0 halted)"), "{r}");
                assert!(r.contains("\"idle\""), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn markers_arriving_within_the_grace_pass() {
        let mut m = Monitor::new(&kill_exp());
        m.feed(b"(XEN) Dom0 halted\n(XEN) Brought up 2 CPUs\n");
        assert_eq!(m.step(S, None), Step::Continue);
        m.feed(b"(XEN) idle\n");
        assert_eq!(m.step(2 * S, None), Step::Continue);
        assert_eq!(m.step(4 * S, None), Step::Stop(Verdict::Pass));
    }

    #[test]
    fn stop_line_after_markers_still_passes() {
        let mut m = Monitor::new(&kill_exp());
        m.feed(b"(XEN) Brought up 2 CPUs\n(XEN) idle\n(XEN) Dom0 halted\n");
        assert_eq!(m.step(S, None), Step::Continue);
        assert_eq!(m.step(3 * S, None), Step::Stop(Verdict::Pass));
    }

    #[test]
    fn early_exit_names_missing_markers() {
        let mut m = Monitor::new(&kill_exp());
        m.feed(b"(XEN) Brought up 2 CPUs\n");
        match m.step(S, Some(QemuExit::Code(1))) {
            Step::Stop(Verdict::Fail(r)) => {
                assert!(r.contains("\"idle\""), "{r}");
                assert!(!r.contains("Brought up"), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_names_missing_markers() {
        let mut m = Monitor::new(&kill_exp());
        m.feed(b"(XEN) idle\n");
        assert_eq!(m.step(59 * S, None), Step::Continue);
        match m.step(60 * S, None) {
            Step::Stop(Verdict::Fail(r)) => {
                assert!(r.contains("timed out after 60s"), "{r}");
                assert!(r.contains("Brought up 2 CPUs"), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exit_scenario_passes_on_right_status() {
        let mut m = Monitor::new(&exit_exp(33));
        m.feed(b"(XEN) selftest x: PASS\n");
        assert_eq!(m.step(S, None), Step::Continue);
        assert_eq!(
            m.step(2 * S, Some(QemuExit::Code(33))),
            Step::Stop(Verdict::Pass)
        );
    }

    #[test]
    fn exit_scenario_rejects_wrong_status() {
        let mut m = Monitor::new(&exit_exp(33));
        m.feed(b"(XEN) selftest x: PASS\n");
        match m.step(S, Some(QemuExit::Code(35))) {
            Step::Stop(Verdict::Fail(r)) => {
                assert!(r.contains("value 0x11"), "{r}");
                assert!(r.contains("expected exit status 33"), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unterminated_last_line_counts_at_exit() {
        let mut m = Monitor::new(&exit_exp(33));
        m.feed(b"(XEN) selftest x: PASS");
        assert_eq!(
            m.step(S, Some(QemuExit::Code(33))),
            Step::Stop(Verdict::Pass)
        );
    }

    #[test]
    fn exit_scenario_timeout_after_markers_says_so() {
        let mut m = Monitor::new(&exit_exp(33));
        m.feed(b"(XEN) selftest x: PASS\n");
        match m.step(61 * S, None) {
            Step::Stop(Verdict::Fail(r)) => assert!(r.contains("did not exit"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failure_line_beats_exit_status() {
        let mut m = Monitor::new(&exit_exp(35));
        m.feed(b"(XEN) selftest x: FAIL: boom\n");
        match m.step(S, Some(QemuExit::Code(35))) {
            Step::Stop(Verdict::Fail(r)) => assert!(r.contains("boom"), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}
