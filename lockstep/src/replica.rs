//! Replica state: the trait a hypervisor state implements (a list of journaled containers)
//! and the whole-replica operations built on it: full digest, rollback, verification,
//! repair, fault injection and memory accounting.
//!
//! The engine never allocates a replica: the embedder builds both (on bare metal each from
//! its own heap arena) and hands them over; they are kept equal by construction (same
//! initial digest, same deterministic transactions).

use crate::digest::Hasher;
use crate::journal::Journaled;
use alloc::vec::Vec;

/// A hypervisor state made of journaled containers.
///
/// Implement it by listing the containers, in a fixed order, in both visitors; for a struct
/// whose fields are all containers, [`impl_replica_state!`](crate::impl_replica_state) does it.
pub trait ReplicaState: Clone + 'static {
    /// Visits every container, in a fixed order.
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a dyn Journaled));
    /// Visits every container mutably, in the same order.
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut dyn Journaled));
}

/// Implements [`ReplicaState`] for a struct whose listed fields are journaled containers:
/// `impl_replica_state!(Hv { domains, vcpus, evtchns });`.
#[macro_export]
macro_rules! impl_replica_state {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        impl $crate::ReplicaState for $ty {
            fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a dyn $crate::Journaled)) {
                $( f(&self.$field); )*
            }
            fn visit_mut(&mut self, f: &mut dyn FnMut(&mut dyn $crate::Journaled)) {
                $( f(&mut self.$field); )*
            }
        }
    };
}

/// CRC-32C over the whole replica, every object checksum recomputed from its data.
pub fn full_digest<S: ReplicaState>(s: &S) -> u32 {
    let mut h = Hasher::new();
    s.visit(&mut |c| c.digest_full(&mut h));
    h.finish()
}

/// Undoes every write of `epoch` in every container.
pub fn rollback<S: ReplicaState>(s: &mut S, epoch: u64) {
    s.visit_mut(&mut |c| c.rollback(epoch));
}

/// Drops all undo records (returns their memory).
pub fn forget<S: ReplicaState>(s: &mut S) {
    s.visit_mut(&mut |c| c.forget());
}

/// Number of objects whose stored checksum no longer matches their data.
pub fn verify<S: ReplicaState>(s: &S) -> usize {
    let mut n = 0;
    s.visit(&mut |c| n += c.verify());
    n
}

/// Replaces every object of `s` that fails verification with the same object of `good`.
/// Returns how many objects were repaired.
pub fn repair<S: ReplicaState>(s: &mut S, good: &S) -> usize {
    let mut others: Vec<&dyn Journaled> = Vec::new();
    good.visit(&mut |c| others.push(c));
    let mut i = 0;
    let mut n = 0;
    s.visit_mut(&mut |c| {
        if let Some(o) = others.get(i) {
            n += c.repair_from(*o);
        }
        i += 1;
    });
    n
}

/// Corrects single-bit errors in every object failing verification, from its stored
/// checksum alone. Returns how many objects were corrected.
pub fn self_repair<S: ReplicaState>(s: &mut S) -> usize {
    let mut n = 0;
    s.visit_mut(&mut |c| n += c.self_repair());
    n
}

/// Where an incremental scrub of a replica stands: the container it is in (each container
/// keeps its own position within itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubCursor {
    container: usize,
}

/// One step of an incremental scrub: checks, and corrects single-bit errors in, up to
/// `budget` objects after where the previous step stopped, going on from container to
/// container and starting over after the last. Returns how many objects were corrected.
///
/// A whole-replica [`self_repair`] reads every object (hundreds of thousands for a dom0
/// with its frame table and p2m: about 0.1 s under TCG); spread over transactions a few
/// objects at a time, the same sweep costs each transaction a bounded amount.
pub fn scrub_step<S: ReplicaState>(s: &mut S, at: &mut ScrubCursor, budget: usize) -> usize {
    let mut left = budget;
    let mut repaired = 0;
    let mut i = 0;
    let mut past_end = true;
    s.visit_mut(&mut |c| {
        let this = i;
        i += 1;
        if this < at.container || left == 0 {
            if this >= at.container {
                past_end = false;
            }
            return;
        }
        let step = c.self_repair_step(left);
        left -= step.checked.min(left);
        repaired += step.repaired;
        if step.wrapped {
            at.container = this + 1;
        } else {
            past_end = false;
        }
    });
    if past_end {
        at.container = 0;
    }
    repaired
}

/// Objects [`scrub_step_until`] checks between two looks at whether to stop.
pub const SCRUB_CHUNK: usize = 2;

/// Scrub steps in a row a core may give up before their end; the next one runs whole, so a
/// steady load cannot stop a core's sweep.
pub const MAX_SCRUB_SKIPS: u32 = 7;

/// [`scrub_step`] of up to `budget` objects, [`SCRUB_CHUNK`] at a time, given up between two
/// chunks once `stop` says so (a core scrubbing while it waits stops when its wait is over).
/// Returns how many objects were corrected and whether the whole budget was spent (`stop`
/// never said so).
pub fn scrub_step_until<S: ReplicaState>(
    s: &mut S,
    at: &mut ScrubCursor,
    budget: usize,
    stop: impl Fn() -> bool,
) -> (usize, bool) {
    let mut left = budget;
    let mut repaired = 0;
    while left > 0 {
        if stop() {
            return (repaired, false);
        }
        let chunk = left.min(SCRUB_CHUNK);
        repaired += scrub_step(s, at, chunk);
        left -= chunk;
    }
    (repaired, true)
}

/// Number of injectable bits in the replica.
pub fn bit_len<S: ReplicaState>(s: &S) -> u64 {
    let mut n = 0;
    s.visit(&mut |c| n += c.bit_len());
    n
}

/// Flips bit `bit` (modulo the replica's bit length) of the replica's data.
pub fn flip_bit<S: ReplicaState>(s: &mut S, bit: u64) {
    let total = bit_len(s);
    if total == 0 {
        return;
    }
    let mut bit = bit % total;
    let mut done = false;
    s.visit_mut(&mut |c| {
        if done {
            return;
        }
        let n = c.bit_len();
        if bit < n {
            c.flip_bit(bit);
            done = true;
        } else {
            bit -= n;
        }
    });
}

/// Approximate bytes held by the replica (data plus undo records).
pub fn memory_bytes<S: ReplicaState>(s: &S) -> usize {
    let mut n = core::mem::size_of::<S>();
    s.visit(&mut |c| n += c.memory_bytes());
    n
}

/// Number of objects in the replica.
pub fn object_count<S: ReplicaState>(s: &S) -> usize {
    let mut n = 0;
    s.visit(&mut |c| n += c.object_count());
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::{JMap, JVec};
    use crate::journal::{JCell, Journal};

    #[derive(Clone)]
    struct St {
        a: JCell<u64>,
        b: JVec<u32>,
        c: JMap<u8, u16>,
    }
    crate::impl_replica_state!(St { a, b, c });

    fn st() -> St {
        let mut j = Journal::new();
        let mut s = St {
            a: JCell::new(1, 0),
            b: JVec::new(2),
            c: JMap::new(3),
        };
        for i in 0..8 {
            s.b.push(&mut j, i);
            s.c.insert(&mut j, i as u8, i as u16 * 2);
        }
        forget(&mut s);
        s
    }

    #[test]
    fn scrub_steps_come_back_to_the_start_after_one_sweep() {
        let mut s = st();
        let n = object_count(&s);
        let mut at = ScrubCursor::default();
        for i in 1..=n {
            scrub_step(&mut s, &mut at, 1);
            assert_eq!(at == ScrubCursor::default(), i == n, "step {i}");
        }
        // A budget larger than the replica is one whole sweep per step.
        scrub_step(&mut s, &mut at, n + 5);
        assert_eq!(at, ScrubCursor::default());
    }

    #[test]
    fn a_stopped_scrub_step_ends_between_two_chunks() {
        let n = object_count(&st());
        assert!(n > 4 * SCRUB_CHUNK);
        // Never stopped: the same objects as one plain step of the same budget.
        let (mut s, mut t) = (st(), st());
        let (mut a, mut b) = (ScrubCursor::default(), ScrubCursor::default());
        assert_eq!(scrub_step_until(&mut s, &mut a, 5, || false), (0, true));
        scrub_step(&mut t, &mut b, 5);
        assert_eq!(a, b);
        // Stopped at once: nothing checked.
        let mut c = ScrubCursor::default();
        assert_eq!(scrub_step_until(&mut s, &mut c, 5, || true), (0, false));
        assert_eq!(c, ScrubCursor::default());
        // Stopped after the first look: one chunk checked, a flip in the second one not found.
        let mut after_one = ScrubCursor::default();
        scrub_step(&mut st(), &mut after_one, SCRUB_CHUNK);
        let mut v = st();
        let before = full_digest(&v);
        // The first bit that a chunk from the start does not reach (in the second chunk).
        let beyond = (0..bit_len(&v))
            .find(|&bit| {
                let mut x = st();
                flip_bit(&mut x, bit);
                scrub_step(&mut x, &mut ScrubCursor::default(), SCRUB_CHUNK) == 0
            })
            .expect("a bit past the first chunk");
        flip_bit(&mut v, beyond);
        let looks = core::cell::Cell::new(0);
        let mut at = ScrubCursor::default();
        let stop = || {
            looks.set(looks.get() + 1);
            looks.get() > 1
        };
        assert_eq!(
            scrub_step_until(&mut v, &mut at, 4 * SCRUB_CHUNK, stop),
            (0, false)
        );
        assert_eq!(at, after_one);
        assert_ne!(full_digest(&v), before);
        // The next step, not stopped, corrects it.
        assert_eq!(
            scrub_step_until(&mut v, &mut at, SCRUB_CHUNK, || false),
            (1, true)
        );
        assert_eq!(full_digest(&v), before);
    }

    #[test]
    fn whole_replica_rollback_and_repair() {
        let mut s = st();
        let before = full_digest(&s);
        let mut j = Journal::new();
        j.begin(5);
        s.a.set(&mut j, 9);
        s.b.pop(&mut j);
        s.c.remove(&mut j, &3);
        assert_ne!(full_digest(&s), before);
        rollback(&mut s, 5);
        assert_eq!(full_digest(&s), before);
        let good = s.clone();
        for bit in (0..bit_len(&s)).step_by(7) {
            let mut t = s.clone();
            flip_bit(&mut t, bit);
            assert_ne!(full_digest(&t), before, "bit {bit}");
            assert_eq!(verify(&t), 1);
            assert_eq!(repair(&mut t, &good), 1);
            assert_eq!(full_digest(&t), before);
        }
        assert_eq!(object_count(&s), 17);
        // An incremental scrub finds and corrects each flip within one sweep.
        for budget in [1, 3, 16, 17, 100] {
            let sweep = object_count(&s).div_ceil(budget) + 1;
            for bit in (0..bit_len(&s)).step_by(5) {
                let mut t = s.clone();
                let mut at = ScrubCursor::default();
                // Start the sweep somewhere in the middle.
                scrub_step(&mut t, &mut at, budget * 2);
                flip_bit(&mut t, bit);
                let repaired: usize = (0..sweep)
                    .map(|_| scrub_step(&mut t, &mut at, budget))
                    .sum();
                assert_eq!(repaired, 1, "budget {budget} bit {bit}");
                assert_eq!(full_digest(&t), before);
            }
        }
        assert!(memory_bytes(&s) > 0);
    }
}
