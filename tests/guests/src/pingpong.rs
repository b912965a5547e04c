//! The cross-vCPU cache-line ping-pong of the `bench` guest: one cache-line-aligned atomic
//! bounced between two vCPUs. The initiator (vCPU 0) writes an odd value, the responder
//! (vCPU 1) spins until it sees it and writes the next even value, the initiator spins for
//! that: one round trip, the least a cross-CPU handshake costs (a lockstep leader waits for at
//! least one such round trip to its follower in every transaction).
//!
//! Waits spin on plain loads (`Acquire`), without `pause`: under QEMU TCG `pause` takes
//! QEMU's global lock, which would time QEMU instead of the cache line. A wait that has spun
//! its budget calls `relax` (the guest yields its vCPU) before spinning again, so two vCPUs
//! that share one physical CPU still make progress; every such call is counted, and a
//! round trip that needed one did not measure a cross-CPU round trip.

use core::sync::atomic::{AtomicU64, Ordering};

/// The value the initiator writes to stop the responder (odd, beyond any round trip's).
pub const STOP: u64 = u64::MAX;

/// One atomic on a cache line of its own.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct CacheLine(pub AtomicU64);

impl CacheLine {
    /// A line holding `v`.
    pub const fn new(v: u64) -> Self {
        CacheLine(AtomicU64::new(v))
    }
}

/// The responder has not started.
const IDLE: u64 = 0;
/// The responder serves round trips.
const READY: u64 = 1;
/// The responder saw [`STOP`] and left.
const STOPPED: u64 = 2;

/// The shared state of one ping-pong: the bounced value and the responder's bookkeeping, each
/// on its own cache line (so only the bounced line moves during a round trip).
#[derive(Debug, Default)]
pub struct PingPong {
    ball: CacheLine,
    state: CacheLine,
    out_of_order: CacheLine,
    responder_relaxes: CacheLine,
}

/// A wait that gave up: its partner did not answer within the allowed number of relaxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoAnswer {
    /// The value the initiator wrote.
    pub sent: u64,
    /// The value it last saw.
    pub seen: u64,
}

/// Spins on `line` until `done(value)`, calling `relax` after every `spin` polls that did not
/// see it; gives up after `max_relax` calls (`None` waits for ever). Returns the value seen and
/// the number of `relax` calls, or the last value seen when it gave up.
fn wait(
    line: &AtomicU64,
    done: impl Fn(u64) -> bool,
    spin: u32,
    relax: &mut impl FnMut(),
    max_relax: Option<u32>,
) -> Result<(u64, u32), u64> {
    let mut relaxes = 0u32;
    loop {
        for _ in 0..spin.max(1) {
            let v = line.load(Ordering::Acquire);
            if done(v) {
                return Ok((v, relaxes));
            }
        }
        if max_relax.is_some_and(|m| relaxes >= m) {
            return Err(line.load(Ordering::Acquire));
        }
        relax();
        relaxes += 1;
    }
}

impl PingPong {
    /// A ping-pong nobody serves yet.
    pub const fn new() -> Self {
        PingPong {
            ball: CacheLine::new(0),
            state: CacheLine::new(IDLE),
            out_of_order: CacheLine::new(0),
            responder_relaxes: CacheLine::new(0),
        }
    }

    /// The responder's loop (vCPU 1): announces itself, then answers every odd value `v` with
    /// `v + 1` until it sees [`STOP`]. A value other than the next one expected is counted
    /// (see [`PingPong::out_of_order`]) and answered all the same.
    pub fn serve(&self, spin: u32, mut relax: impl FnMut()) {
        self.state.0.store(READY, Ordering::Release);
        let mut last = 0u64;
        loop {
            // Without a relax limit the wait only ends with a value.
            let (v, relaxes) = match wait(
                &self.ball.0,
                |v| v != last && v % 2 == 1,
                spin,
                &mut relax,
                None,
            ) {
                Ok(seen) => seen,
                Err(v) => (v, 0),
            };
            if relaxes > 0 {
                self.responder_relaxes
                    .0
                    .fetch_add(u64::from(relaxes), Ordering::Relaxed);
            }
            if v == STOP {
                self.state.0.store(STOPPED, Ordering::Release);
                return;
            }
            if v != last + 1 {
                self.out_of_order.0.fetch_add(1, Ordering::Relaxed);
            }
            last = v + 1;
            self.ball.0.store(last, Ordering::Release);
        }
    }

    /// Whether the responder has started serving.
    pub fn ready(&self) -> bool {
        self.state.0.load(Ordering::Acquire) == READY
    }

    /// Whether the responder saw [`STOP`] and left its loop.
    pub fn stopped(&self) -> bool {
        self.state.0.load(Ordering::Acquire) == STOPPED
    }

    /// Values the responder saw that were not the next one it expected (0 when the protocol
    /// held).
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order.0.load(Ordering::Relaxed)
    }

    /// How often the responder's waits ran out of spin budget and relaxed.
    pub fn responder_relaxes(&self) -> u64 {
        self.responder_relaxes.0.load(Ordering::Relaxed)
    }

    /// Tells the responder to leave its loop (after the last round trip).
    pub fn stop(&self) {
        self.ball.0.store(STOP, Ordering::Release);
    }
}

/// The initiator's side (vCPU 0): the next odd value to send.
#[derive(Debug)]
pub struct Pinger<'a> {
    pp: &'a PingPong,
    next: u64,
}

impl<'a> Pinger<'a> {
    /// The initiator of `pp`, before its first round trip.
    pub fn new(pp: &'a PingPong) -> Self {
        Pinger { pp, next: 1 }
    }

    /// One round trip: writes the next odd value and spins until the responder answers it,
    /// relaxing after every `spin` polls, at most `max_relax` times. Returns how many relaxes
    /// it needed (0: a pure cross-CPU round trip).
    pub fn round_trip(
        &mut self,
        spin: u32,
        relax: &mut impl FnMut(),
        max_relax: u32,
    ) -> Result<u32, NoAnswer> {
        let sent = self.next;
        self.pp.ball.0.store(sent, Ordering::Release);
        let want = sent + 1;
        match wait(&self.pp.ball.0, |v| v == want, spin, relax, Some(max_relax)) {
            Ok((_, relaxes)) => {
                self.next = sent + 2;
                Ok(relaxes)
            }
            Err(seen) => Err(NoAnswer { sent, seen }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lines_do_not_share_a_cache_line() {
        assert_eq!(core::mem::align_of::<CacheLine>(), 64);
        assert_eq!(core::mem::size_of::<CacheLine>(), 64);
        let pp = PingPong::new();
        let a = &pp.ball as *const CacheLine as usize;
        let b = &pp.state as *const CacheLine as usize;
        assert_eq!(a % 64, 0);
        assert!(a.abs_diff(b) >= 64);
    }

    fn run(spin: u32, trips: u32) -> (Arc<PingPong>, u64) {
        let pp = Arc::new(PingPong::new());
        let server = {
            let pp = Arc::clone(&pp);
            std::thread::spawn(move || pp.serve(spin, std::thread::yield_now))
        };
        while !pp.ready() {
            std::thread::yield_now();
        }
        let mut p = Pinger::new(&pp);
        let mut relax = std::thread::yield_now;
        let mut relaxes = 0u64;
        for _ in 0..trips {
            relaxes += u64::from(p.round_trip(spin, &mut relax, u32::MAX).unwrap());
        }
        pp.stop();
        server.join().unwrap();
        (pp, relaxes)
    }

    #[test]
    fn round_trips_in_order_then_stop() {
        let (pp, _) = run(1 << 16, 5000);
        assert!(pp.stopped());
        assert_eq!(pp.out_of_order(), 0);
        assert_eq!(pp.ball.0.load(Ordering::Relaxed), STOP);
    }

    #[test]
    fn a_tiny_spin_budget_relaxes_and_still_holds() {
        // One poll per spin: nearly every wait relaxes, as two vCPUs on one CPU would.
        let (pp, relaxes) = run(1, 500);
        assert!(pp.stopped());
        assert_eq!(pp.out_of_order(), 0);
        assert!(relaxes + pp.responder_relaxes() > 0);
    }

    #[test]
    fn no_responder_gives_up() {
        let pp = PingPong::new();
        let mut p = Pinger::new(&pp);
        let mut n = 0u32;
        let mut relax = || n += 1;
        assert_eq!(
            p.round_trip(4, &mut relax, 3),
            Err(NoAnswer { sent: 1, seen: 1 })
        );
        assert_eq!(n, 3);
        assert!(!pp.ready());
    }

    #[test]
    fn an_unexpected_value_is_counted() {
        let pp = Arc::new(PingPong::new());
        let server = {
            let pp = Arc::clone(&pp);
            std::thread::spawn(move || pp.serve(64, std::thread::yield_now))
        };
        // 5 instead of 1: counted, answered with 6.
        pp.ball.0.store(5, Ordering::Release);
        while pp.ball.0.load(Ordering::Acquire) != 6 {
            std::thread::yield_now();
        }
        pp.stop();
        server.join().unwrap();
        assert_eq!(pp.out_of_order(), 1);
    }
}
