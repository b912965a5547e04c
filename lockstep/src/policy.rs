//! Retry and escalation policy, and the pair's health.
//!
//! A failed comparison (mismatch, divergence, missed deadline) rolls both replicas back and
//! re-executes; after `max_retries` failed retries of the same transaction the pair is
//! escalated. The suspect is the core that missed every deadline when that is the evidence;
//! otherwise the embedding engine identifies it (per-object checksums, third execution).
//! A suspect is taken out of service: a spare replaces it if one is offered, else the system
//! continues unprotected and says so through [`Health`]. Nothing is ever committed that the
//! two executions did not agree on.

use crate::coordinator::Verdict;
use crate::machine::ExecStatus;
use crate::mailbox::Decision;
use crate::role::Role;

/// Protection state of a lockstep pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Both cores in service, every transaction executed twice.
    Protected,
    /// A spare core replaced `retired`; still protected.
    SpareInUse {
        /// The core taken out of service.
        retired: Role,
    },
    /// Escalated with no spare: transactions run once, without redundancy.
    Unprotected {
        /// The core taken out of service, if identified.
        suspect: Option<Role>,
    },
    /// Lockstep switched off by configuration (`lockstep=off`, `xl lockstep off`).
    Off,
}

impl Health {
    /// True when transactions are executed twice.
    pub fn is_protected(self) -> bool {
        matches!(self, Health::Protected | Health::SpareInUse { .. })
    }

    /// The health after escalating with `suspect`, given how many spares are left.
    pub fn after_escalation(suspect: Option<Role>, spares_left: u32) -> Health {
        match suspect {
            Some(r) if spares_left > 0 => Health::SpareInUse { retired: r },
            _ => Health::Unprotected { suspect },
        }
    }
}

impl core::fmt::Display for Health {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Health::Protected => f.write_str("protected"),
            Health::SpareInUse { retired } => {
                write!(f, "protected (spare core replaced the {retired})")
            }
            Health::Unprotected { suspect: Some(r) } => write!(
                f,
                "UNPROTECTED: lockstep escalated, {r} core taken out of service, no spare; running WITHOUT redundancy"
            ),
            Health::Unprotected { suspect: None } => f.write_str(
                "UNPROTECTED: lockstep escalated, faulty core not identified, no spare; running WITHOUT redundancy",
            ),
            Health::Off => f.write_str("off (lockstep disabled)"),
        }
    }
}

/// Per-transaction retry accounting: turns verdicts into decisions.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    max_retries: u32,
    failures: u32,
    timeouts: [u32; 2],
    detected_at: Option<u64>,
    last_latency: Option<u64>,
}

impl RetryPolicy {
    /// A policy allowing `max_retries` re-executions before escalating.
    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            failures: 0,
            timeouts: [0; 2],
            detected_at: None,
            last_latency: None,
        }
    }

    /// Failed attempts of the current transaction so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Cycles from the first detection to the commit that followed, for the last recovery.
    pub fn take_latency(&mut self) -> Option<u64> {
        self.last_latency.take()
    }

    /// Forgets the current transaction (after escalation or abort).
    pub fn reset(&mut self) {
        self.failures = 0;
        self.timeouts = [0; 2];
        self.detected_at = None;
    }

    /// Decides what to do with one attempt's verdict at time `now`.
    pub fn on_verdict(&mut self, v: &Verdict, now: u64) -> Decision {
        match v {
            Verdict::Agree => {
                if let Some(t) = self.detected_at {
                    self.last_latency = Some(now.saturating_sub(t));
                }
                self.reset();
                Decision::Commit
            }
            Verdict::Broken {
                role: Role::Leader,
                status: ExecStatus::Overflow,
            } => {
                self.reset();
                Decision::Abort
            }
            _ => {
                if self.detected_at.is_none() {
                    self.detected_at = Some(now);
                }
                self.failures += 1;
                match v {
                    Verdict::Timeout(Some(r)) => self.timeouts[(r.code() & 1) as usize] += 1,
                    Verdict::Timeout(None) => {
                        self.timeouts[0] += 1;
                        self.timeouts[1] += 1;
                    }
                    _ => {}
                }
                if self.failures <= self.max_retries {
                    return Decision::Retry;
                }
                let suspect = match self.timeouts {
                    [l, f] if l == self.failures && f < l => Some(Role::Leader),
                    [l, f] if f == self.failures && l < f => Some(Role::Follower),
                    _ => None,
                };
                self.reset();
                Decision::Escalate(suspect)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_then_escalates_with_timeout_suspect() {
        let mut p = RetryPolicy::new(2);
        let t = Verdict::Timeout(Some(Role::Follower));
        assert_eq!(p.on_verdict(&t, 10), Decision::Retry);
        assert_eq!(p.on_verdict(&t, 20), Decision::Retry);
        assert_eq!(
            p.on_verdict(&t, 30),
            Decision::Escalate(Some(Role::Follower))
        );
        assert_eq!(p.failures(), 0);
        let m = Verdict::Mismatch {
            writes: true,
            effects: false,
        };
        assert_eq!(p.on_verdict(&m, 40), Decision::Retry);
        assert_eq!(p.on_verdict(&t, 50), Decision::Retry);
        assert_eq!(
            p.on_verdict(&m, 60),
            Decision::Escalate(None),
            "mixed evidence"
        );
    }

    #[test]
    fn recovery_latency_and_abort() {
        let mut p = RetryPolicy::new(3);
        let m = Verdict::Mismatch {
            writes: false,
            effects: true,
        };
        assert_eq!(p.on_verdict(&m, 100), Decision::Retry);
        assert_eq!(p.on_verdict(&Verdict::Agree, 250), Decision::Commit);
        assert_eq!(p.take_latency(), Some(150));
        assert_eq!(p.take_latency(), None);
        let o = Verdict::Broken {
            role: Role::Leader,
            status: ExecStatus::Overflow,
        };
        assert_eq!(p.on_verdict(&o, 1), Decision::Abort);
    }

    #[test]
    fn health_transitions_and_loud_status() {
        assert_eq!(
            Health::after_escalation(Some(Role::Follower), 1),
            Health::SpareInUse {
                retired: Role::Follower
            }
        );
        let h = Health::after_escalation(Some(Role::Leader), 0);
        assert!(!h.is_protected());
        assert!(h.to_string().contains("UNPROTECTED"));
        assert!(Health::after_escalation(None, 5)
            .to_string()
            .contains("not identified"));
    }
}
