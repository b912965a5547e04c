//! Core roles in a lockstep pair and the embedder's platform hooks (clock, idle/kick).

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// What a core does in a lockstep pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Runs the guest's vCPUs and the first execution; applies effects on commit.
    Leader = 0,
    /// Shadows the leader on its own replica.
    Follower = 1,
    /// Compares digests and decides.
    Coordinator = 2,
}

impl Role {
    /// Lower-case name, as printed by `xl lockstep status`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Coordinator => "coordinator",
        }
    }

    /// Decodes [`Role::code`]; anything else is `None`.
    pub fn from_code(c: u8) -> Option<Role> {
        match c {
            0 => Some(Role::Leader),
            1 => Some(Role::Follower),
            2 => Some(Role::Coordinator),
            _ => None,
        }
    }

    /// Numeric code (for mailbox words).
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The caller's clock (the TSC on bare metal; any monotonic counter on the host).
pub trait Clock {
    /// Current time in cycles (or any monotonic unit the deadlines are expressed in).
    fn now(&self) -> u64;
}

/// What a waiting core does once it has spun long enough, and how a poster wakes it.
pub trait Idle {
    /// Called repeatedly after the spin budget is spent: `hlt` until an IPI on bare metal,
    /// `yield` on the host. Must return eventually (e.g. a timer tick) so deadlines are seen.
    fn idle(&self);
    /// Called after a core posts something `role` may be idling for (send an IPI).
    fn kick(&self, role: Role) {
        let _ = role;
    }
    /// Called between two polls while spinning: the `pause` hint by default. An embedder
    /// whose `pause` is costly (under QEMU TCG it leaves the translated code and takes the
    /// emulator's global lock) may poll without it; the spin is bounded by
    /// [`WaitStrategy::spins`] either way.
    fn relax(&self) {
        core::hint::spin_loop();
    }
    /// Polls to spin before the first [`Idle::idle`], out of the configured `spins`, for an
    /// embedder that adapts it to how its waits end: each such wait is then timed and
    /// reported to [`Idle::waited`]. `None` (the default): all of them, and no clock reads
    /// beyond the deadline checks (the host's mailbox round trip went from 1.08x to 1.4-1.5x
    /// a raw ping-pong with two more per wait).
    fn spin_budget(&self, spins: u32) -> Option<u32> {
        let _ = spins;
        None
    }
    /// How a wait with an adapted budget ([`Idle::spin_budget`]) that did not succeed at its
    /// first poll ended (nothing by default).
    fn waited(&self, report: &WaitReport) {
        let _ = report;
    }
}

/// How one [`wait_until`] went, for an [`Idle`] that adapts its spinning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitReport {
    /// The configured spin budget ([`WaitStrategy::spins`]).
    pub configured: u32,
    /// The budget this wait used ([`Idle::spin_budget`]).
    pub budget: u32,
    /// Polls made while spinning.
    pub polls: u32,
    /// Clock units spent spinning.
    pub spin_time: u64,
    /// Clock units the whole wait took.
    pub total_time: u64,
    /// The spin budget ran out: the wait idled.
    pub idled: bool,
}

/// How long to spin before calling [`Idle::idle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitStrategy {
    /// Polls before the first idle call.
    pub spins: u32,
}

impl Default for WaitStrategy {
    fn default() -> Self {
        Self { spins: 20_000 }
    }
}

/// A spin budget that adapts to how waits end, as KVM's halt polling does: a wait that had
/// to idle but would have been caught by spinning the whole configured budget (it ended
/// within the time those polls take) doubles the budget; one that took longer halves it; a
/// wait caught while spinning keeps it. Where the waited-for core runs on a CPU of its own,
/// short waits keep the budget at its maximum; where spinning takes the CPU the other core
/// needs (more vCPU threads than host cores under QEMU), waits grow long and the budget
/// shrinks towards idling at once.
#[derive(Debug)]
pub struct SpinAdapt {
    /// The current budget in polls (`u32::MAX`: none yet, the configured one).
    budget: AtomicU32,
    /// Clock units one poll took when last measured (0: not yet).
    per_poll: AtomicU32,
}

impl SpinAdapt {
    /// Clock units per poll assumed before one is measured.
    pub const DEFAULT_PER_POLL: u32 = 50;
    /// Largest per-poll cost believed (a spinning core descheduled by its host inflates it).
    pub const MAX_PER_POLL: u32 = 1000;
    /// Smallest budget a growth step sets.
    pub const GROW_FROM: u32 = 128;

    /// A budget not adapted yet.
    pub const fn new() -> Self {
        Self {
            budget: AtomicU32::new(u32::MAX),
            per_poll: AtomicU32::new(0),
        }
    }

    /// Polls to spin now, out of `configured`.
    pub fn budget(&self, configured: u32) -> u32 {
        self.budget.load(Relaxed).min(configured)
    }

    /// Adapts the budget to how one wait ended.
    pub fn update(&self, r: &WaitReport) {
        if r.polls > 0 && r.spin_time > 0 {
            let per = (r.spin_time / u64::from(r.polls)).clamp(1, u64::from(Self::MAX_PER_POLL));
            self.per_poll.store(per as u32, Relaxed);
        }
        if !r.idled {
            return;
        }
        let per = match self.per_poll.load(Relaxed) {
            0 => Self::DEFAULT_PER_POLL,
            p => p,
        };
        let window = u64::from(per) * u64::from(r.configured);
        let next = if r.total_time <= window {
            r.budget
                .saturating_mul(2)
                .max(Self::GROW_FROM)
                .min(r.configured)
        } else {
            r.budget / 2
        };
        self.budget.store(next, Relaxed);
    }
}

impl Default for SpinAdapt {
    fn default() -> Self {
        Self::new()
    }
}

/// Polls `poll` until it yields a value, spinning up to `strategy.spins` times (as many as
/// [`Idle::spin_budget`] allows) and then idling between polls. Returns `None` once `clock`
/// passes `deadline` (checked every 64 polls and before each idle), so a hung peer is
/// detected instead of waited for forever. A wait that did not succeed at once is reported
/// to [`Idle::waited`].
pub fn wait_until<T, C: Clock + ?Sized, I: Idle + ?Sized>(
    strategy: WaitStrategy,
    clock: &C,
    idle: &I,
    deadline: Option<u64>,
    mut poll: impl FnMut() -> Option<T>,
) -> Option<T> {
    if let Some(v) = poll() {
        return Some(v);
    }
    let adapted = idle.spin_budget(strategy.spins);
    let budget = adapted.map_or(strategy.spins, |b| b.min(strategy.spins));
    let start = if adapted.is_some() { clock.now() } else { 0 };
    let mut spun_until = None;
    let mut n: u32 = 0;
    let got = loop {
        n = n.saturating_add(1);
        let spinning = n < budget;
        if n.is_multiple_of(64) || !spinning {
            if let Some(d) = deadline {
                if clock.now() >= d {
                    break poll();
                }
            }
        }
        if spinning {
            idle.relax();
        } else {
            if adapted.is_some() && spun_until.is_none() {
                spun_until = Some(clock.now());
            }
            idle.idle();
        }
        if let Some(v) = poll() {
            break Some(v);
        }
    };
    if adapted.is_none() {
        return got;
    }
    let end = clock.now();
    idle.waited(&WaitReport {
        configured: strategy.spins,
        budget,
        polls: n.min(budget),
        spin_time: spun_until.unwrap_or(end).saturating_sub(start),
        total_time: end.saturating_sub(start),
        idled: spun_until.is_some(),
    });
    got
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    struct FakeClock(Cell<u64>);
    impl Clock for FakeClock {
        fn now(&self) -> u64 {
            let t = self.0.get() + 1;
            self.0.set(t);
            t
        }
    }
    struct CountIdle(Cell<u32>);
    impl Idle for CountIdle {
        fn idle(&self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn deadline_stops_waiting_and_idle_follows_spins() {
        let c = FakeClock(Cell::new(0));
        let i = CountIdle(Cell::new(0));
        let r: Option<()> = wait_until(WaitStrategy { spins: 10 }, &c, &i, Some(50), || None);
        assert_eq!(r, None);
        assert!(i.0.get() > 0, "idle hook used after spinning");
        let mut k = 0;
        let r = wait_until(WaitStrategy { spins: 10 }, &c, &i, None, || {
            k += 1;
            (k == 100).then_some(k)
        });
        assert_eq!(r, Some(100));
    }

    /// Counts the polls spent spinning (`relax`) and idling.
    struct SpinIdle {
        relaxed: Cell<u32>,
        idled: Cell<u32>,
    }
    impl SpinIdle {
        fn new() -> Self {
            Self {
                relaxed: Cell::new(0),
                idled: Cell::new(0),
            }
        }
    }
    impl Idle for SpinIdle {
        fn idle(&self) {
            self.idled.set(self.idled.get() + 1);
        }
        fn relax(&self) {
            self.relaxed.set(self.relaxed.get() + 1);
        }
    }

    #[test]
    fn spins_go_through_relax_then_idle() {
        let c = FakeClock(Cell::new(0));
        let i = SpinIdle::new();
        let mut k = 0;
        let r = wait_until(WaitStrategy { spins: 5 }, &c, &i, None, || {
            k += 1;
            (k == 9).then_some(k)
        });
        assert_eq!(r, Some(9));
        // Polls 1-4 are followed by a relax (n < spins), polls 5-8 by an idle call.
        assert_eq!((i.relaxed.get(), i.idled.get()), (4, 4));
        // No spin budget: idle from the first failed poll.
        let i0 = SpinIdle::new();
        let mut k = 0;
        let _ = wait_until(WaitStrategy { spins: 0 }, &c, &i0, None, || {
            k += 1;
            (k == 3).then_some(())
        });
        assert_eq!((i0.relaxed.get(), i0.idled.get()), (0, 2));
    }

    fn report(budget: u32, polls: u32, spin_time: u64, total_time: u64, idled: bool) -> WaitReport {
        WaitReport {
            configured: 1000,
            budget,
            polls,
            spin_time,
            total_time,
            idled,
        }
    }

    #[test]
    fn spin_budget_halves_on_long_waits_and_doubles_on_short_ones() {
        let a = SpinAdapt::new();
        assert_eq!(
            a.budget(1000),
            1000,
            "the configured budget until a wait is reported"
        );
        // 1000 polls took 10,000 units: 10 per poll, the whole budget spins 10,000.
        a.update(&report(1000, 1000, 10_000, 50_000, true));
        assert_eq!(
            a.budget(1000),
            500,
            "idled and took longer than a full spin"
        );
        a.update(&report(500, 500, 5_000, 40_000, true));
        assert_eq!(a.budget(1000), 250);
        // Caught while spinning: kept.
        a.update(&report(250, 100, 1_000, 1_000, false));
        assert_eq!(a.budget(1000), 250);
        // Idled, but the whole budget would have caught it (9,000 <= 1000 polls x 10).
        a.update(&report(250, 250, 2_500, 9_000, true));
        assert_eq!(a.budget(1000), 500);
        a.update(&report(500, 500, 5_000, 9_000, true));
        a.update(&report(1000, 1000, 10_000, 9_000, true));
        assert_eq!(a.budget(1000), 1000, "never above the configured budget");
        assert_eq!(a.budget(300), 300);
        // Down to idling at once, and back up from GROW_FROM.
        for _ in 0..12 {
            let b = a.budget(1000);
            a.update(&report(b, b, u64::from(b) * 10, 1_000_000, true));
        }
        assert_eq!(a.budget(1000), 0);
        a.update(&report(0, 0, 0, 500, true));
        assert_eq!(a.budget(1000), SpinAdapt::GROW_FROM);
    }

    #[test]
    fn waits_are_reported_with_their_spinning() {
        struct Rec(Cell<Option<WaitReport>>);
        impl Idle for Rec {
            fn idle(&self) {}
            fn relax(&self) {}
            fn spin_budget(&self, spins: u32) -> Option<u32> {
                Some(spins / 2)
            }
            fn waited(&self, r: &WaitReport) {
                self.0.set(Some(*r));
            }
        }
        let c = FakeClock(Cell::new(0));
        let i = Rec(Cell::new(None));
        let mut k = 0;
        let r = wait_until(WaitStrategy { spins: 10 }, &c, &i, None, || {
            k += 1;
            (k == 8).then_some(k)
        });
        assert_eq!(r, Some(8));
        let w = i.0.get().expect("reported");
        assert_eq!((w.configured, w.budget, w.polls, w.idled), (10, 5, 5, true));
        assert!(w.total_time > w.spin_time);
        // Success at the first poll: nothing to report.
        i.0.set(None);
        assert_eq!(
            wait_until(WaitStrategy { spins: 10 }, &c, &i, None, || Some(1)),
            Some(1)
        );
        assert_eq!(i.0.get(), None);
    }

    #[test]
    fn a_wait_without_adaptation_reads_no_clock() {
        let c = FakeClock(Cell::new(0));
        let i = CountIdle(Cell::new(0));
        let mut k = 0;
        let r = wait_until(WaitStrategy { spins: 100 }, &c, &i, None, || {
            k += 1;
            (k == 50).then_some(k)
        });
        assert_eq!(r, Some(50));
        assert_eq!(
            c.0.get(),
            0,
            "no deadline, no adaptation: the clock is never read"
        );
    }

    #[test]
    fn role_codes_roundtrip() {
        for r in [Role::Leader, Role::Follower, Role::Coordinator] {
            assert_eq!(Role::from_code(r.code()), Some(r));
        }
        assert_eq!(Role::from_code(9), None);
        assert_eq!(Role::Follower.to_string(), "follower");
    }
}
