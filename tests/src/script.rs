//! Interactive serial scripts: a list of steps an administrator would perform at the
//! console — wait until the output shows something, type something — run against the live
//! serial output of a scenario.
//!
//! The engine is a pure state machine: feed it serial bytes and the clock, it answers what
//! to send next, or that a step failed. Each wait only looks at output that arrived after
//! the previous wait matched, so steps happen in order. A wait also matches the unfinished
//! last line, so prompts without a newline (`dom0# `) can be waited for.
//!
//! A script can also remember a value: [`Script::capture`] waits for a line starting with a
//! fixed prefix and keeps the rest of it under a name; a later [`Script::wait_for_captured`]
//! waits for a line that is that prefix followed by exactly the remembered value.

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
    /// Wait (at most `timeout`) for a line of new output starting with `prefix`; remember
    /// the rest of that line (trimmed) as `name`.
    Capture {
        /// Name the value is kept under.
        name: String,
        /// Fixed text the line starts with.
        prefix: String,
        /// How long to wait.
        timeout: Duration,
    },
    /// Wait (at most `timeout`) for a line of new output that is `prefix` followed by the
    /// value captured as `name` (trimmed), and nothing else.
    WaitForCaptured {
        /// Name of an earlier [`ScriptStep::Capture`].
        name: String,
        /// Fixed text the line starts with.
        prefix: String,
        /// How long to wait.
        timeout: Duration,
    },
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
    /// Values captured so far: (name, value).
    captured: Vec<(String, String)>,
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

    /// Adds a capture: wait for a line starting with `prefix`, keep its rest as `name`.
    pub fn capture(mut self, name: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.steps.push(ScriptStep::Capture {
            name: name.into(),
            prefix: prefix.into(),
            timeout: STEP_TIMEOUT,
        });
        self
    }

    /// Adds a wait for the line `prefix` + the value captured earlier as `name`.
    pub fn wait_for_captured(mut self, name: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.steps.push(ScriptStep::WaitForCaptured {
            name: name.into(),
            prefix: prefix.into(),
            timeout: STEP_TIMEOUT,
        });
        self
    }

    /// The value captured as `name`, if that capture has happened.
    pub fn captured(&self, name: &str) -> Option<&str> {
        self.captured
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
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
        self.find_line(|l| pattern.matches(l).then_some(()))
            .map(|(end, ())| end)
    }

    /// Finds the first line after `consumed` that `f` accepts: the offset after it and
    /// what `f` returned.
    fn find_line<T>(&self, f: impl Fn(&str) -> Option<T>) -> Option<(usize, T)> {
        let mut start = self.consumed;
        let out = &self.output;
        while start < out.len() {
            let (end, next) = match out[start..].iter().position(|&b| b == b'\n') {
                Some(nl) => (start + nl, start + nl + 1),
                None => (out.len(), out.len()),
            };
            let text = String::from_utf8_lossy(&out[start..end]);
            if let Some(t) = f(text.trim_end_matches('\r')) {
                return Some((next, t));
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
                ScriptStep::Capture {
                    ref name,
                    ref prefix,
                    timeout,
                } => {
                    let found = self.find_line(|l| {
                        l.strip_prefix(prefix.as_str())
                            .map(|rest| rest.trim().to_string())
                    });
                    match found {
                        Some((end, value)) => {
                            self.captured.push((name.clone(), value));
                            self.consumed = end;
                            self.next += 1;
                            self.step_started = None;
                        }
                        None if now.saturating_sub(started) >= timeout => {
                            return self.timed_out(&step, timeout, "");
                        }
                        None => return ScriptAction::Wait,
                    }
                }
                ScriptStep::WaitForCaptured {
                    ref name,
                    ref prefix,
                    timeout,
                } => {
                    let Some(value) = self.captured(name).map(str::to_string) else {
                        return ScriptAction::Failed(format!(
                            "{}: nothing was captured as '{name}'",
                            describe(self.next, &step)
                        ));
                    };
                    let found = self.find_line(|l| {
                        l.strip_prefix(prefix.as_str())
                            .filter(|rest| rest.trim() == value)
                            .map(|_| ())
                    });
                    match found {
                        Some((end, ())) => {
                            self.consumed = end;
                            self.next += 1;
                            self.step_started = None;
                        }
                        None if now.saturating_sub(started) >= timeout => {
                            // Name the last differing value seen, if any, for the report.
                            let seen = self
                                .find_last_with_prefix(prefix)
                                .map(|v| format!(" (last seen: {prefix}{v})"))
                                .unwrap_or_default();
                            return self.timed_out(&step, timeout, &seen);
                        }
                        None => return ScriptAction::Wait,
                    }
                }
            }
        }
    }

    /// The rest (trimmed) of the last line after `consumed` starting with `prefix`.
    fn find_last_with_prefix(&self, prefix: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.output[self.consumed..]);
        text.lines()
            .rev()
            .find_map(|l| l.trim_end_matches('\r').strip_prefix(prefix))
            .map(|r| r.trim().to_string())
    }

    fn timed_out(&self, step: &ScriptStep, timeout: Duration, extra: &str) -> ScriptAction {
        ScriptAction::Failed(format!(
            "{}: not seen within {}s{extra}",
            describe(self.next, step),
            timeout.as_secs()
        ))
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
        ScriptStep::Capture { name, prefix, .. } => format!(
            "script step {}: capture '{name}' from a line starting {prefix:?}",
            index + 1
        ),
        ScriptStep::WaitForCaptured { name, prefix, .. } => format!(
            "script step {}: wait for {prefix:?} followed by the captured '{name}'",
            index + 1
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
    fn a_captured_value_must_reappear_later() {
        let mut sc = Script::new()
            .capture("free", "free_memory : ")
            .send("again\r")
            .wait_for_captured("free", "free_memory : ");
        sc.feed(b"total_memory : 500\nfree_memory :  123 \r\n");
        assert_eq!(sc.poll(s(0)), ScriptAction::Send(b"again\r".to_vec()));
        assert_eq!(sc.captured("free"), Some("123"));
        // A different value, or the value with more after it, does not match.
        sc.feed(b"free_memory : 122\nfree_memory : 1234\n");
        assert_eq!(sc.poll(s(1)), ScriptAction::Wait);
        sc.feed(b"free_memory : 123\n");
        assert_eq!(sc.poll(s(2)), ScriptAction::Done);
    }

    #[test]
    fn a_captured_value_that_never_returns_fails_naming_the_last_one() {
        let mut sc = Script::new()
            .capture("free", "free: ")
            .wait_for_captured("free", "free: ");
        sc.feed(b"free: 7\n");
        assert_eq!(sc.poll(s(0)), ScriptAction::Wait);
        sc.feed(b"free: 6\n");
        match sc.poll(s(61)) {
            ScriptAction::Failed(r) => {
                assert!(r.starts_with("script step 2: wait for"), "{r}");
                assert!(r.ends_with("(last seen: free: 6)"), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn waiting_for_a_value_never_captured_fails_at_once() {
        let mut sc = Script::new().wait_for_captured("x", "x = ");
        sc.feed(b"x = \n");
        match sc.poll(s(0)) {
            ScriptAction::Failed(r) => assert!(r.contains("nothing was captured as 'x'"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_script_is_done_at_once() {
        let mut sc = Script::new();
        assert!(sc.is_empty());
        assert_eq!(sc.poll(s(0)), ScriptAction::Done);
    }
}
