//! Interactive serial scripts: a list of steps an administrator would perform at the
//! console — wait until the output shows something, type something — run against the live
//! serial output of a scenario.
//!
//! The engine is a pure state machine: feed it serial bytes and the clock, it answers what
//! to send next, or that a step failed. Each wait only looks at output that arrived after
//! the previous wait matched, so steps happen in order. A wait also matches the unfinished
//! last line, so prompts without a newline (`dom0# `) can be waited for.

use std::time::Duration;

use crate::pattern::Pattern;

/// Default limit of one wait step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptStep {
    /// Wait (at most `timeout`) until a line of new output matches `pattern`.
    WaitFor {
        /// What to wait for.
        pattern: Pattern,
        /// How long to wait.
        timeout: Duration,
    },
    /// Send these bytes to the serial port.
    Send(Vec<u8>),
}

/// What the driver must do after [`Script::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptAction {
    /// Nothing now; poll again later.
    Wait,
    /// Write these bytes to the serial port, then poll again.
    Send(Vec<u8>),
    /// Every step is done.
    Done,
    /// A step failed (timed out): the run fails with this reason.
    Failed(String),
}

/// A script and how far it has got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    steps: Vec<ScriptStep>,
    next: usize,
    /// All output so far.
    output: Vec<u8>,
    /// Output before this offset has been matched by an earlier wait.
    consumed: usize,
    /// When the current step began (None: not yet started).
    step_started: Option<Duration>,
}

impl Script {
    /// An empty script (no interaction).
    pub fn new() -> Self {
        Script::default()
    }

    /// Adds a wait for `pattern` with the default timeout.
    pub fn wait_for(self, pattern: Pattern) -> Self {
        self.wait_for_within(pattern, STEP_TIMEOUT)
    }

    /// Adds a wait for `pattern` of at most `timeout`.
    pub fn wait_for_within(mut self, pattern: Pattern, timeout: Duration) -> Self {
        self.steps.push(ScriptStep::WaitFor { pattern, timeout });
        self
    }

    /// Adds sending `bytes`.
    pub fn send(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.steps.push(ScriptStep::Send(bytes.into()));
        self
    }

    /// Whether the script has no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The steps.
    pub fn steps(&self) -> &[ScriptStep] {
        &self.steps
    }

    /// Whether every step is done.
    pub fn is_done(&self) -> bool {
        self.next >= self.steps.len()
    }

    /// A description of the step not yet done, for failure reports.
    pub fn pending(&self) -> Option<String> {
        self.steps.get(self.next).map(|s| describe(self.next, s))
    }

    /// Feeds new serial output.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Finds `pattern` in the output after `consumed`: returns the offset after the matching
    /// line (its newline included, or the end of output for the unfinished last line).
    fn find(&self, pattern: &Pattern) -> Option<usize> {
        let mut start = self.consumed;
        let out = &self.output;
        while start < out.len() {
            let (end, next) = match out[start..].iter().position(|&b| b == b'\n') {
                Some(nl) => (start + nl, start + nl + 1),
                None => (out.len(), out.len()),
            };
            let text = String::from_utf8_lossy(&out[start..end]);
            if pattern.matches(text.trim_end_matches('\r')) {
                return Some(next);
            }
            start = next;
        }
        None
    }

    /// Advances as far as the output allows at time `now` (since the run started).
    pub fn poll(&mut self, now: Duration) -> ScriptAction {
        loop {
            let Some(step) = self.steps.get(self.next).cloned() else {
                return ScriptAction::Done;
            };
            let started = *self.step_started.get_or_insert(now);
            match step {
                ScriptStep::Send(bytes) => {
                    self.next += 1;
                    self.step_started = None;
                    return ScriptAction::Send(bytes);
                }
                ScriptStep::WaitFor { pattern, timeout } => match self.find(&pattern) {
                    Some(end) => {
                        self.consumed = end;
                        self.next += 1;
                        self.step_started = None;
                    }
                    None if now.saturating_sub(started) >= timeout => {
                        return ScriptAction::Failed(format!(
                            "{}: not seen within {}s",
                            describe(self.next, &ScriptStep::WaitFor { pattern, timeout }),
                            timeout.as_secs()
                        ));
                    }
                    None => return ScriptAction::Wait,
                },
            }
        }
    }
}

fn describe(index: usize, step: &ScriptStep) -> String {
    match step {
        ScriptStep::WaitFor { pattern, .. } => {
            format!("script step {}: wait for {pattern}", index + 1)
        }
        ScriptStep::Send(b) => format!(
            "script step {}: send {:?}",
            index + 1,
            String::from_utf8_lossy(b)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn waits_then_sends_in_order() {
        let mut sc = Script::new()
            .wait_for(Pattern::contains("login:"))
            .send("root\r")
            .wait_for(Pattern::contains("dom0# "));
        assert_eq!(sc.poll(s(0)), ScriptAction::Wait);
        sc.feed(b"booting\r\nlog");
        assert_eq!(sc.poll(s(1)), ScriptAction::Wait);
        sc.feed(b"in: ");
        assert_eq!(sc.poll(s(2)), ScriptAction::Send(b"root\r".to_vec()));
        assert_eq!(sc.poll(s(2)), ScriptAction::Wait);
        // A prompt without a newline matches as the unfinished last line.
        sc.feed(b"root\r\ndom0# ");
        assert_eq!(sc.poll(s(3)), ScriptAction::Done);
        assert!(sc.is_done());
    }

    #[test]
    fn a_wait_only_sees_output_after_the_previous_match() {
        let mut sc = Script::new()
            .wait_for(Pattern::contains("prompt>"))
            .send("x")
            .wait_for(Pattern::contains("prompt>"));
        sc.feed(b"prompt>\n");
        assert_eq!(sc.poll(s(0)), ScriptAction::Send(b"x".to_vec()));
        // The first prompt was consumed: the second wait needs a new one.
        assert_eq!(sc.poll(s(1)), ScriptAction::Wait);
        sc.feed(b"echo x\nprompt>\n");
        assert_eq!(sc.poll(s(2)), ScriptAction::Done);
    }

    #[test]
    fn two_matches_in_one_chunk_satisfy_two_waits() {
        let mut sc = Script::new()
            .wait_for(Pattern::contains("one"))
            .wait_for(Pattern::contains("two"));
        sc.feed(b"one\ntwo\n");
        assert_eq!(sc.poll(s(0)), ScriptAction::Done);
        let mut sc = Script::new()
            .wait_for(Pattern::contains("two"))
            .wait_for(Pattern::contains("one"));
        sc.feed(b"one\ntwo\n");
        assert_eq!(sc.poll(s(0)), ScriptAction::Wait, "order matters");
    }

    #[test]
    fn a_wait_times_out_from_when_its_step_began() {
        let mut sc = Script::new()
            .wait_for_within(Pattern::contains("a"), s(5))
            .wait_for_within(Pattern::contains("never"), s(10));
        assert_eq!(sc.poll(s(4)), ScriptAction::Wait);
        sc.feed(b"a\n");
        assert_eq!(sc.poll(s(8)), ScriptAction::Wait);
        assert_eq!(sc.poll(s(17)), ScriptAction::Wait);
        match sc.poll(s(18)) {
            ScriptAction::Failed(r) => {
                assert!(r.starts_with("script step 2: wait for"), "{r}");
                assert!(
                    r.contains("never") && r.ends_with("not seen within 10s"),
                    "{r}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(sc.pending().is_some());
    }

    #[test]
    fn empty_script_is_done_at_once() {
        let mut sc = Script::new();
        assert!(sc.is_empty());
        assert_eq!(sc.poll(s(0)), ScriptAction::Done);
    }
}
