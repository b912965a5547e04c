//! The test framework (after XTF): named checks, a tally, and exactly one final line
//! `Test result: SUCCESS|FAILURE|SKIP|ERROR` followed by a shutdown.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::sched;

/// The outcome of a test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Success,
    /// At least one check failed.
    Failure,
    /// The test could not run here (and nothing failed).
    Skip,
    /// The test itself broke (panic, unexpected trap, no checks).
    Error,
}

impl Verdict {
    /// The word printed after `Test result: `.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Success => "SUCCESS",
            Verdict::Failure => "FAILURE",
            Verdict::Skip => "SKIP",
            Verdict::Error => "ERROR",
        }
    }
}

/// Counts of checks, failures and skips; one global instance backs the free functions.
pub struct Tally {
    checks: AtomicU32,
    failures: AtomicU32,
    skips: AtomicU32,
    errors: AtomicU32,
}

impl Tally {
    /// An empty tally.
    pub const fn new() -> Self {
        Tally {
            checks: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            skips: AtomicU32::new(0),
            errors: AtomicU32::new(0),
        }
    }

    /// Records one check.
    pub fn record(&self, ok: bool) {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if !ok {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Records a skip.
    pub fn record_skip(&self) {
        self.skips.fetch_add(1, Ordering::SeqCst);
    }

    /// Records an error.
    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::SeqCst);
    }

    /// `(checks, failures)` so far.
    pub fn counts(&self) -> (u32, u32) {
        (
            self.checks.load(Ordering::SeqCst),
            self.failures.load(Ordering::SeqCst),
        )
    }

    /// The verdict: errors win, then failures, then skips; no checks at all is an error.
    pub fn verdict(&self) -> Verdict {
        let (checks, failures) = self.counts();
        if self.errors.load(Ordering::SeqCst) > 0 {
            Verdict::Error
        } else if failures > 0 {
            Verdict::Failure
        } else if self.skips.load(Ordering::SeqCst) > 0 {
            Verdict::Skip
        } else if checks == 0 {
            Verdict::Error
        } else {
            Verdict::Success
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

static TALLY: Tally = Tally::new();
static RESULT_PRINTED: AtomicBool = AtomicBool::new(false);

/// Records a check called `name`; prints `PASS: name` or `FAIL: name`. Returns `ok`.
pub fn check(name: &str, ok: bool) -> bool {
    TALLY.record(ok);
    if ok {
        crate::println!("PASS: {}", name);
    } else {
        crate::println!("FAIL: {}", name);
    }
    ok
}

/// Checks `got == want`, printing both on failure. Returns whether they matched.
pub fn check_eq<T: PartialEq + fmt::Debug>(name: &str, got: T, want: T) -> bool {
    let ok = got == want;
    TALLY.record(ok);
    if ok {
        crate::println!("PASS: {} ({:?})", name, got);
    } else {
        crate::println!("FAIL: {}: got {:?}, want {:?}", name, got, want);
    }
    ok
}

/// Marks the test as skipped, with a reason (the final verdict is SKIP unless something fails).
pub fn skip(reason: fmt::Arguments<'_>) {
    TALLY.record_skip();
    crate::println!("SKIP: {}", reason);
}

/// Prints a note that is neither a check nor a result.
pub fn info(msg: fmt::Arguments<'_>) {
    crate::println!("INFO: {}", msg);
}

/// Prints the final line for `verdict` (at most once per run) and returns whether it printed.
fn print_result(verdict: Verdict) -> bool {
    if RESULT_PRINTED.swap(true, Ordering::SeqCst) {
        return false;
    }
    let (checks, failures) = TALLY.counts();
    crate::println!("{} checks, {} failed", checks, failures);
    crate::println!("Test result: {}", verdict.word());
    true
}

/// Ends the test: prints the verdict line and powers the domain off.
pub fn finish() -> ! {
    print_result(TALLY.verdict());
    sched::poweroff()
}

/// Ends the test with `Test result: ERROR` after printing `msg`, and crashes the domain.
pub fn error(msg: fmt::Arguments<'_>) -> ! {
    TALLY.record_error();
    crate::println!("ERROR: {}", msg);
    print_result(Verdict::Error);
    sched::stop(sched::SHUTDOWN_CRASH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_rules() {
        let t = Tally::new();
        assert_eq!(t.verdict(), Verdict::Error, "no checks is an error");
        t.record(true);
        assert_eq!(t.verdict(), Verdict::Success);
        t.record_skip();
        assert_eq!(t.verdict(), Verdict::Skip);
        t.record(false);
        assert_eq!(t.verdict(), Verdict::Failure);
        assert_eq!(t.counts(), (2, 1));
        t.record_error();
        assert_eq!(t.verdict(), Verdict::Error);
    }

    #[test]
    fn skip_alone_is_skip() {
        let t = Tally::new();
        t.record_skip();
        assert_eq!(t.verdict(), Verdict::Skip);
    }

    #[test]
    fn words() {
        assert_eq!(Verdict::Success.word(), "SUCCESS");
        assert_eq!(Verdict::Failure.word(), "FAILURE");
        assert_eq!(Verdict::Skip.word(), "SKIP");
        assert_eq!(Verdict::Error.word(), "ERROR");
    }
}
