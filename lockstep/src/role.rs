//! Core roles in a lockstep pair and the embedder's platform hooks (clock, idle/kick).

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

/// Polls `poll` until it yields a value, spinning `strategy.spins` times and then idling
/// between polls. Returns `None` once `clock` passes `deadline` (checked every 64 polls and
/// before the first idle), so a hung peer is detected instead of waited for forever.
pub fn wait_until<T, C: Clock + ?Sized, I: Idle + ?Sized>(
    strategy: WaitStrategy,
    clock: &C,
    idle: &I,
    deadline: Option<u64>,
    mut poll: impl FnMut() -> Option<T>,
) -> Option<T> {
    let mut n: u32 = 0;
    loop {
        if let Some(v) = poll() {
            return Some(v);
        }
        n = n.wrapping_add(1);
        let spinning = n < strategy.spins;
        if n.is_multiple_of(64) || !spinning {
            if let Some(d) = deadline {
                if clock.now() >= d {
                    return poll();
                }
            }
        }
        if spinning {
            idle.relax();
        } else {
            idle.idle();
        }
    }
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
        let i = SpinIdle {
            relaxed: Cell::new(0),
            idled: Cell::new(0),
        };
        let mut k = 0;
        let r = wait_until(WaitStrategy { spins: 5 }, &c, &i, None, || {
            k += 1;
            (k == 9).then_some(k)
        });
        assert_eq!(r, Some(9));
        // Polls 1-4 are followed by a relax (n < spins), polls 5-8 by an idle call.
        assert_eq!((i.relaxed.get(), i.idled.get()), (4, 4));
        // No spin budget: idle from the first failed poll.
        let i0 = SpinIdle {
            relaxed: Cell::new(0),
            idled: Cell::new(0),
        };
        let mut k = 0;
        let _ = wait_until(WaitStrategy { spins: 0 }, &c, &i0, None, || {
            k += 1;
            (k == 3).then_some(())
        });
        assert_eq!((i0.relaxed.get(), i0.idled.get()), (0, 2));
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
