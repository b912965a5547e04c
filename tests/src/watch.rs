//! Marker matching over a growing serial log: which expected lines have appeared, and
//! whether a failure line has.

use crate::pattern::Pattern;

/// What a [`Watcher`] has seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchState {
    /// Some expected patterns have not appeared yet.
    Pending,
    /// Every expected pattern has appeared (and no failure pattern).
    AllSeen,
    /// A failure pattern appeared on this line.
    Failed {
        /// The failure pattern that matched.
        pattern: Pattern,
        /// The log line it matched.
        line: String,
    },
}

/// Feeds serial output in arbitrary chunks, splits it into lines and matches them.
///
/// Expected patterns may appear in any order; each is satisfied by the first line that
/// matches it. Failure patterns are checked on every line; the first hit is final.
#[derive(Debug, Clone)]
pub struct Watcher {
    expect: Vec<Pattern>,
    seen: Vec<bool>,
    fail: Vec<Pattern>,
    stop: Vec<Pattern>,
    partial: Vec<u8>,
    failed: Option<(Pattern, String)>,
    stopped: Option<String>,
    lines: usize,
}

impl Watcher {
    /// A watcher waiting for all of `expect`, failing on any of `fail`.
    pub fn new(expect: Vec<Pattern>, fail: Vec<Pattern>) -> Self {
        let seen = vec![false; expect.len()];
        Watcher {
            expect,
            seen,
            fail,
            stop: Vec::new(),
            partial: Vec::new(),
            failed: None,
            stopped: None,
            lines: 0,
        }
    }

    /// Also watches for `stop` patterns: lines after which the system produces nothing more
    /// of interest (e.g. a guest halted), so missing markers will never appear.
    pub fn with_stop(mut self, stop: Vec<Pattern>) -> Self {
        self.stop = stop;
        self
    }

    /// The first line that matched a stop pattern, if any.
    pub fn stopped_line(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Feeds more raw serial bytes; only complete lines are matched.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            self.match_line(&line[..nl]);
        }
    }

    /// Matches the final unterminated line, if any (call once the output has ended).
    pub fn finish(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.match_line(&line);
        }
    }

    fn match_line(&mut self, raw: &[u8]) {
        self.lines += 1;
        let text = String::from_utf8_lossy(raw);
        let line = text.trim_end_matches('\r');
        if self.failed.is_none() {
            if let Some(p) = self.fail.iter().find(|p| p.matches(line)) {
                self.failed = Some((p.clone(), line.to_string()));
            }
        }
        for (p, seen) in self.expect.iter().zip(self.seen.iter_mut()) {
            if !*seen && p.matches(line) {
                *seen = true;
            }
        }
        if self.stopped.is_none() && self.stop.iter().any(|p| p.matches(line)) {
            self.stopped = Some(line.to_string());
        }
    }

    /// The current verdict of the markers.
    pub fn state(&self) -> WatchState {
        if let Some((pattern, line)) = &self.failed {
            WatchState::Failed {
                pattern: pattern.clone(),
                line: line.clone(),
            }
        } else if self.seen.iter().all(|&s| s) {
            WatchState::AllSeen
        } else {
            WatchState::Pending
        }
    }

    /// The expected patterns that have not appeared yet, in declaration order.
    pub fn missing(&self) -> Vec<&Pattern> {
        self.expect
            .iter()
            .zip(&self.seen)
            .filter(|(_, &s)| !s)
            .map(|(p, _)| p)
            .collect()
    }

    /// Number of complete lines matched so far.
    pub fn lines(&self) -> usize {
        self.lines
    }
}

/// The last `n` lines of `log` (lossy UTF-8, carriage returns removed).
pub fn tail_lines(log: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT_LOG: &str = "\
(XEN) DualVisor 0.1.0 (lockstep hypervisor)\r
(XEN) Command line: console=com1 com1=115200,8n1 loglvl=all noreboot\r
(XEN) Bootloader: QEMU (multiboot1)\r
(XEN) Brought up 2 CPUs\r
(XEN) CPU0: timer ticking\r
(XEN) CPU1: timer ticking\r
(XEN) No dom0 kernel given\r
";

    fn boot_expect(n: usize) -> Vec<Pattern> {
        let mut v = vec![
            Pattern::starts_with("(XEN) DualVisor"),
            Pattern::contains(format!("(XEN) Brought up {n} CPUs")),
            Pattern::contains("(XEN) No dom0 kernel given"),
        ];
        for i in 0..n {
            v.push(Pattern::contains(format!("(XEN) CPU{i}: timer ticking")));
        }
        v
    }

    fn fails() -> Vec<Pattern> {
        vec![Pattern::contains("FATAL TRAP"), Pattern::contains("Panic")]
    }

    #[test]
    fn canned_boot_log_satisfies_markers() {
        let mut w = Watcher::new(boot_expect(2), fails());
        w.feed(BOOT_LOG.as_bytes());
        assert_eq!(w.state(), WatchState::AllSeen);
        assert!(w.missing().is_empty());
        assert_eq!(w.lines(), 7);
    }

    #[test]
    fn missing_cpu_keeps_pending() {
        let mut w = Watcher::new(boot_expect(4), fails());
        w.feed(BOOT_LOG.as_bytes());
        assert_eq!(w.state(), WatchState::Pending);
        let missing: Vec<String> = w.missing().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            missing,
            vec![
                "\"(XEN) Brought up 4 CPUs\"",
                "\"(XEN) CPU2: timer ticking\"",
                "\"(XEN) CPU3: timer ticking\"",
            ]
        );
    }

    #[test]
    fn byte_by_byte_feeding_matches_the_same() {
        let mut w = Watcher::new(boot_expect(2), fails());
        for b in BOOT_LOG.as_bytes() {
            w.feed(std::slice::from_ref(b));
        }
        assert_eq!(w.state(), WatchState::AllSeen);
    }

    #[test]
    fn partial_line_waits_for_newline_or_finish() {
        let mut w = Watcher::new(vec![Pattern::line("(XEN) No dom0 kernel given")], vec![]);
        w.feed(b"(XEN) No dom0 kernel");
        assert_eq!(w.state(), WatchState::Pending);
        w.feed(b" given");
        assert_eq!(w.state(), WatchState::Pending);
        w.finish();
        assert_eq!(w.state(), WatchState::AllSeen);
    }

    #[test]
    fn failure_pattern_wins_and_is_reported() {
        let log = "(XEN) DualVisor\n(XEN) FATAL TRAP: vector 13\n(XEN) Brought up 2 CPUs\n";
        let mut w = Watcher::new(boot_expect(2), fails());
        w.feed(log.as_bytes());
        match w.state() {
            WatchState::Failed { pattern, line } => {
                assert_eq!(pattern, Pattern::contains("FATAL TRAP"));
                assert_eq!(line, "(XEN) FATAL TRAP: vector 13");
            }
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn first_failure_is_kept() {
        let mut w = Watcher::new(vec![], fails());
        w.feed(b"Panic one\nFATAL TRAP two\n");
        assert!(matches!(w.state(), WatchState::Failed { line, .. } if line == "Panic one"));
    }

    #[test]
    fn invalid_utf8_does_not_panic() {
        let mut w = Watcher::new(vec![Pattern::contains("ok")], vec![]);
        w.feed(b"\xff\xfe garbage ok\n");
        assert_eq!(w.state(), WatchState::AllSeen);
    }

    #[test]
    fn empty_expectation_is_immediately_satisfied() {
        let w = Watcher::new(vec![], vec![]);
        assert_eq!(w.state(), WatchState::AllSeen);
    }

    #[test]
    fn stop_line_is_recorded_once() {
        let mut w = Watcher::new(vec![Pattern::contains("Test result: SUCCESS")], vec![])
            .with_stop(vec![Pattern::contains("Dom0 halted")]);
        assert_eq!(w.stopped_line(), None);
        w.feed(b"(XEN) Hardware Dom0 halted: halting machine\nDom0 halted again\n");
        assert_eq!(
            w.stopped_line(),
            Some("(XEN) Hardware Dom0 halted: halting machine")
        );
        assert_eq!(w.state(), WatchState::Pending);
    }

    #[test]
    fn tail_takes_last_lines() {
        let log = b"a\r\nb\nc\nd\n";
        assert_eq!(tail_lines(log, 2), vec!["c", "d"]);
        assert_eq!(tail_lines(log, 10), vec!["a", "b", "c", "d"]);
        assert!(tail_lines(b"", 3).is_empty());
    }
}
