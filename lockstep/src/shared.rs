//! Several pairs over one logical state: every pair's leader executes on one shared leader
//! replica and every pair's follower on one shared follower replica, each pair with its own
//! [`Pair`](crate::mailbox::Pair) mailbox.
//!
//! Consistency. The leaders' transactions are serialised by the embedder's lock (the one
//! logical lock of DESIGN.md: taken by a leader before its transaction and held across both
//! executions and the commit), so the leader replica sees one order. Each round takes its
//! number from one [`Sequence`] shared by all leaders, so round numbers, which are also the
//! epochs of the replicas' undo records, are unique and increasing across the pairs (and
//! monotonic per mailbox, with gaps). A follower holds the [`SharedReplica`] from the moment
//! it starts a round until it has applied that round's decision. A round of another pair
//! opens only after the leader of the previous transaction obtained its commit, which needed
//! the previous follower's post, which it made holding the replica: so the next follower
//! finds the replica taken and waits until the previous follower is completely done. The
//! follower replica therefore executes the transactions in the leaders' commit order.

use core::sync::atomic::{AtomicU64, Ordering};
use spin::{Mutex, MutexGuard};

/// The global transaction numbering of the leaders of several pairs over one replica.
#[derive(Debug, Default)]
pub struct Sequence(AtomicU64);

impl Sequence {
    /// A sequence whose next number is `after + 1`.
    pub const fn new(after: u64) -> Self {
        Sequence(AtomicU64::new(after))
    }

    /// The next round number (taken under the embedder's transaction lock).
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The last number handed out.
    pub fn last(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The follower replica shared by the followers of every pair (`None` until the first
/// follower placed it, see [`SharedReplica::put`]).
#[derive(Debug, Default)]
pub struct SharedReplica<S>(Mutex<Option<S>>);

impl<S> SharedReplica<S> {
    /// An empty slot.
    pub const fn new() -> Self {
        SharedReplica(Mutex::new(None))
    }

    /// Places (or replaces) the replica.
    pub fn put(&self, s: S) {
        *self.0.lock() = Some(s);
    }

    /// Takes the replica out (e.g. to retire it); `None` if absent.
    pub fn take(&self) -> Option<S> {
        self.0.lock().take()
    }

    /// The replica, held until the guard drops; `None` if a follower holds it now or it was
    /// not placed yet (the caller waits and tries again).
    pub fn try_hold(&self) -> Option<MutexGuard<'_, Option<S>>> {
        self.0.try_lock().filter(|g| g.is_some())
    }

    /// Runs `f` on the replica if it is placed and free.
    pub fn with<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        let g = self.0.try_lock()?;
        g.as_ref().map(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_is_unique_and_increasing() {
        let s = Sequence::new(7);
        assert_eq!((s.next(), s.next(), s.last()), (8, 9, 9));
    }

    #[test]
    fn shared_replica_is_held_by_one_at_a_time() {
        let r = SharedReplica::<u32>::new();
        assert!(r.try_hold().is_none(), "not placed yet");
        r.put(5);
        let g = r.try_hold().expect("free");
        assert_eq!(*g, Some(5));
        assert!(r.try_hold().is_none(), "held");
        assert_eq!(r.with(|v| *v), None);
        drop(g);
        assert_eq!(r.with(|v| *v), Some(5));
        assert_eq!(r.take(), Some(5));
    }
}
