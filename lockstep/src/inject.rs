//! Fault injection (the fault model of NiLiHype: single-bit flips in a core's registers
//! during a handler, in a replica's state, in effects, digests or mailbox words in flight,
//! and a hung core), a deterministic caller-seeded PRNG, and outcome classification.
//! Kind names are exactly those of `xl lockstep inject KIND COUNT`.

use crate::role::Role;

/// Where a fault is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A bit of one of the leader's input values/registers flips during its execution.
    LeaderReg,
    /// A bit of one of the follower's input values/registers flips during its execution.
    FollowerReg,
    /// A bit of one replica's state flips.
    ReplicaState,
    /// A bit of one core's effects buffer flips.
    Effects,
    /// A bit of one core's computed digest flips.
    Digest,
    /// A bit flips in flight through the mailbox (a posted digest or an input log word).
    Mailbox,
    /// One core stops responding for the attempt.
    Hang,
}

/// Error for an unknown kind name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownFaultKind;

impl core::fmt::Display for UnknownFaultKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown fault kind (expected leader-reg, follower-reg, replica-state, effects, digest, mailbox or hang)")
    }
}

impl FaultKind {
    /// Every kind, in display order.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::LeaderReg,
        FaultKind::FollowerReg,
        FaultKind::ReplicaState,
        FaultKind::Effects,
        FaultKind::Digest,
        FaultKind::Mailbox,
        FaultKind::Hang,
    ];

    /// The kind's name as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::LeaderReg => "leader-reg",
            FaultKind::FollowerReg => "follower-reg",
            FaultKind::ReplicaState => "replica-state",
            FaultKind::Effects => "effects",
            FaultKind::Digest => "digest",
            FaultKind::Mailbox => "mailbox",
            FaultKind::Hang => "hang",
        }
    }

    /// Parses a kind name (exact, as printed by [`FaultKind::name`]).
    pub fn parse(s: &str) -> Result<Self, UnknownFaultKind> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or(UnknownFaultKind)
    }

    /// Position in [`FaultKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for FaultKind {
    type Err = UnknownFaultKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How one injection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InjectionOutcome {
    /// Not detected, and the committed result is the correct one (or not checked live).
    Masked,
    /// Detected and recovered by rollback and re-execution (or repair).
    DetectedRecovered,
    /// Detected and escalated.
    DetectedEscalated,
    /// A wrong result was committed (needs a golden run to be seen).
    SilentCorruption,
    /// The transaction could not complete (handler failure or abort caused by the fault).
    Crash,
}

impl InjectionOutcome {
    /// Every outcome, in display order.
    pub const ALL: [InjectionOutcome; 5] = [
        InjectionOutcome::Masked,
        InjectionOutcome::DetectedRecovered,
        InjectionOutcome::DetectedEscalated,
        InjectionOutcome::SilentCorruption,
        InjectionOutcome::Crash,
    ];

    /// Printable name.
    pub fn name(self) -> &'static str {
        match self {
            InjectionOutcome::Masked => "masked",
            InjectionOutcome::DetectedRecovered => "detected+recovered",
            InjectionOutcome::DetectedEscalated => "detected+escalated",
            InjectionOutcome::SilentCorruption => "silent-corruption",
            InjectionOutcome::Crash => "crash",
        }
    }

    /// Position in [`InjectionOutcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Classifies: a crash first, then a wrong committed result (`correct == Some(false)`),
    /// then escalation, then detection, else masked.
    pub fn classify(detected: bool, escalated: bool, crashed: bool, correct: Option<bool>) -> Self {
        if crashed {
            InjectionOutcome::Crash
        } else if correct == Some(false) {
            InjectionOutcome::SilentCorruption
        } else if escalated {
            InjectionOutcome::DetectedEscalated
        } else if detected {
            InjectionOutcome::DetectedRecovered
        } else {
            InjectionOutcome::Masked
        }
    }
}

impl core::fmt::Display for InjectionOutcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// SplitMix64: a small deterministic PRNG seeded by the caller.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((self.next_u64() as u128 * n as u128) >> 64) as u64
        }
    }
}

/// One concrete fault for one execution attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The kind.
    pub kind: FaultKind,
    /// The core (or its replica / its post) that is hit.
    pub target: Role,
    /// For register faults: which input value (in read order) is hit.
    pub value_index: u32,
    /// Which bit (reduced modulo the size of what is hit).
    pub bit: u64,
    /// For effects: hit after the digest was computed (caught by the pre-apply check).
    pub late: bool,
}

/// Plans faults: `count` one-shot injections of a kind, or a persistently failing core.
#[derive(Clone, Debug)]
pub struct Injector {
    prng: Prng,
    armed: Option<FaultKind>,
    remaining: u32,
    persistent: Option<(FaultKind, u32)>,
    max_value_index: u32,
}

impl Injector {
    /// A disarmed injector whose random choices come from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            prng: Prng::new(seed),
            armed: None,
            remaining: 0,
            persistent: None,
            max_value_index: 8,
        }
    }

    /// Injects one fault of `kind` into each of the next `count` transactions (first attempt).
    pub fn arm(&mut self, kind: FaultKind, count: u32) {
        self.armed = Some(kind);
        self.remaining = count;
    }

    /// Makes physical core `core` fail on every execution it performs (`leader-reg` /
    /// `follower-reg` mean register upsets on that core, `hang` that it never answers).
    pub fn arm_persistent(&mut self, kind: FaultKind, core: u32) {
        self.persistent = Some((kind, core));
    }

    /// The persistent fault armed, if any: its kind and the core it is on.
    pub fn persistent(&self) -> Option<(FaultKind, u32)> {
        self.persistent
    }

    /// Replaces the persistent fault (`None`: none), e.g. to put back one that
    /// [`Injector::arm_persistent`] displaced for a while.
    pub fn set_persistent(&mut self, p: Option<(FaultKind, u32)>) {
        self.persistent = p;
    }

    /// Stops all injection.
    pub fn disarm(&mut self) {
        self.armed = None;
        self.remaining = 0;
        self.persistent = None;
    }

    /// Gives one one-shot injection of `kind` back (the transaction it was meant for had
    /// nothing of that kind to hit); the next transaction gets it.
    pub fn rearm_one(&mut self, kind: FaultKind) {
        if self.armed.is_none() || self.armed == Some(kind) {
            self.armed = Some(kind);
            self.remaining = self.remaining.saturating_add(1);
        }
    }

    /// The kind armed for one-shot injection, if any remain.
    pub fn armed(&self) -> Option<FaultKind> {
        self.armed.filter(|_| self.remaining > 0)
    }

    /// One-shot injections still to do.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Register faults pick the value index in `0..n` (values a handler reads; default 8).
    pub fn set_value_window(&mut self, n: u32) {
        self.max_value_index = n.max(1);
    }

    /// The random generator (for callers that choose further details).
    pub fn prng(&mut self) -> &mut Prng {
        &mut self.prng
    }

    fn make(&mut self, kind: FaultKind, target: Option<Role>) -> Fault {
        let target = target.unwrap_or(if self.prng.below(2) == 0 {
            Role::Leader
        } else {
            Role::Follower
        });
        Fault {
            kind,
            target,
            value_index: self.prng.below(self.max_value_index as u64) as u32,
            bit: self.prng.next_u64(),
            late: self.prng.below(2) == 1,
        }
    }

    /// Whether a one-shot injection is due for the transaction starting now; consumes it.
    pub fn take_oneshot(&mut self) -> Option<Fault> {
        let kind = self.armed?;
        if self.remaining == 0 {
            self.armed = None;
            return None;
        }
        self.remaining -= 1;
        let target = match kind {
            FaultKind::LeaderReg => Some(Role::Leader),
            FaultKind::FollowerReg => Some(Role::Follower),
            _ => None,
        };
        Some(self.make(kind, target))
    }

    /// The persistent fault for an attempt where `leader_core`/`follower_core` serve.
    pub fn persistent_for(&mut self, leader_core: u32, follower_core: u32) -> Option<Fault> {
        let (kind, core) = self.persistent?;
        let role = if core == leader_core {
            Role::Leader
        } else if core == follower_core {
            Role::Follower
        } else {
            return None;
        };
        let kind = match kind {
            FaultKind::Hang => FaultKind::Hang,
            _ if role == Role::Leader => FaultKind::LeaderReg,
            _ => FaultKind::FollowerReg,
        };
        let mut f = self.make(kind, Some(role));
        f.value_index = 0;
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn a_displaced_persistent_fault_is_put_back() {
        let mut inj = Injector::new(7);
        inj.arm_persistent(FaultKind::Hang, 1);
        let saved = inj.persistent();
        assert_eq!(saved, Some((FaultKind::Hang, 1)));
        // Another core's fault for a while: core 1 is not hit meanwhile.
        inj.arm_persistent(FaultKind::Hang, 0);
        assert_eq!(
            inj.persistent_for(0, 1).map(|f| f.target),
            Some(Role::Leader)
        );
        inj.set_persistent(saved);
        assert_eq!(
            inj.persistent_for(0, 1).map(|f| f.target),
            Some(Role::Follower)
        );
        inj.set_persistent(None);
        assert!(inj.persistent_for(0, 1).is_none());
    }

    #[test]
    fn names_parse_and_print_exactly() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::parse(k.name()), Ok(k));
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!(
            FaultKind::ALL.map(|k| k.name()),
            [
                "leader-reg",
                "follower-reg",
                "replica-state",
                "effects",
                "digest",
                "mailbox",
                "hang"
            ]
        );
        assert_eq!(FaultKind::parse("Hang"), Err(UnknownFaultKind));
        assert_eq!("mailbox".parse::<FaultKind>(), Ok(FaultKind::Mailbox));
    }

    #[test]
    fn prng_is_deterministic_and_spread() {
        let mut a = Prng::new(42);
        let mut b = Prng::new(42);
        let mut hits = [0u32; 4];
        for _ in 0..4000 {
            let x = a.next_u64();
            assert_eq!(x, b.next_u64());
            hits[(x >> 62) as usize] += 1;
        }
        assert!(hits.iter().all(|&h| h > 800), "{hits:?}");
        assert_eq!(Prng::new(1).below(0), 0);
        assert!((0..100).all(|_| a.below(7) < 7));
    }

    #[test]
    fn injector_counts_and_targets() {
        let mut i = Injector::new(3);
        assert!(i.take_oneshot().is_none());
        i.arm(FaultKind::FollowerReg, 2);
        assert_eq!(i.take_oneshot().unwrap().target, Role::Follower);
        assert_eq!(i.remaining(), 1);
        assert!(i.take_oneshot().is_some());
        assert!(i.take_oneshot().is_none());
        i.arm_persistent(FaultKind::Hang, 1);
        assert_eq!(i.persistent_for(0, 1).unwrap().target, Role::Follower);
        assert!(
            i.persistent_for(0, 2).is_none(),
            "a retired core no longer matters"
        );
        i.disarm();
        assert!(i.persistent_for(0, 1).is_none());
    }

    #[test]
    fn classification_priority() {
        use InjectionOutcome::*;
        assert_eq!(
            InjectionOutcome::classify(false, false, false, Some(true)),
            Masked
        );
        assert_eq!(
            InjectionOutcome::classify(true, false, false, Some(true)),
            DetectedRecovered
        );
        assert_eq!(
            InjectionOutcome::classify(true, true, false, None),
            DetectedEscalated
        );
        assert_eq!(
            InjectionOutcome::classify(false, false, false, Some(false)),
            SilentCorruption
        );
        assert_eq!(
            InjectionOutcome::classify(true, true, true, Some(false)),
            Crash
        );
    }
}
