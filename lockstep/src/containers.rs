//! Journaled collections for replica state: `JVec<T>` (a table indexed by position) and
//! `JMap<K, V>` (an ordered table keyed by `K`). Every mutation takes the execution's
//! [`Journal`], saves an undo record, keeps a per-object checksum and feeds the write digest.
//! Reads are plain borrows; there is no `&mut` access that bypasses the journal.

use crate::digest::Hasher;
use crate::journal::{op, Journal, Journaled, ScrubStep};
use crate::value::{checksum, checksum_kv, correct_single_bit, Value};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::any::Any;
use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug)]
enum VecUndo<T> {
    Set(usize, T, u32),
    Pushed,
    Popped(T, u32),
}

/// A journaled vector of objects, each with its checksum.
#[derive(Clone, Debug)]
pub struct JVec<T: Value> {
    tag: u32,
    items: Vec<T>,
    checks: Vec<u32>,
    log: Vec<VecUndo<T>>,
    log_epoch: u64,
    /// Index of the next object an incremental scrub checks.
    scrub_at: usize,
}

impl<T: Value + 'static> JVec<T> {
    /// An empty vector with tag `tag`.
    pub fn new(tag: u32) -> Self {
        Self {
            scrub_at: 0,
            tag,
            items: Vec::new(),
            checks: Vec::new(),
            log: Vec::new(),
            log_epoch: 0,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Element `i`, if any.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.items.get(i)
    }

    /// All elements in order.
    pub fn iter(&self) -> core::slice::Iter<'_, T> {
        self.items.iter()
    }

    fn log(&mut self, j: &Journal) -> &mut Vec<VecUndo<T>> {
        if self.log_epoch != j.epoch() {
            self.log.clear();
            self.log_epoch = j.epoch();
        }
        &mut self.log
    }

    /// Appends an element.
    pub fn push(&mut self, j: &mut Journal, v: T) {
        self.log(j).push(VecUndo::Pushed);
        let c = checksum(&v);
        j.record(self.tag, op::PUSH, self.items.len() as u64, c);
        self.items.push(v);
        self.checks.push(c);
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self, j: &mut Journal) -> Option<T> {
        let v = self.items.pop()?;
        let c = self.checks.pop().unwrap_or_default();
        j.check_old(self.tag, self.items.len() as u64, c, checksum(&v));
        self.log(j).push(VecUndo::Popped(v.clone(), c));
        j.record(self.tag, op::POP, self.items.len() as u64, c);
        Some(v)
    }

    /// Replaces element `i`; returns the old one, or `None` (and changes nothing) if `i` is
    /// out of range.
    pub fn set(&mut self, j: &mut Journal, i: usize, v: T) -> Option<T> {
        if i >= self.items.len() {
            return None;
        }
        let c = checksum(&v);
        let old = core::mem::replace(&mut self.items[i], v);
        let old_c = core::mem::replace(&mut self.checks[i], c);
        j.check_old(self.tag, i as u64, old_c, checksum(&old));
        self.log(j).push(VecUndo::Set(i, old.clone(), old_c));
        j.record(self.tag, op::SET, i as u64, c);
        Some(old)
    }

    /// Mutates element `i` in place; `None` if out of range.
    pub fn update<R>(
        &mut self,
        j: &mut Journal,
        i: usize,
        f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let old = self.items.get(i)?.clone();
        let old_c = self.checks[i];
        j.check_old(self.tag, i as u64, old_c, checksum(&old));
        self.log(j).push(VecUndo::Set(i, old, old_c));
        let r = f(&mut self.items[i]);
        let c = checksum(&self.items[i]);
        self.checks[i] = c;
        j.record(self.tag, op::SET, i as u64, c);
        Some(r)
    }
}

impl<T: Value + 'static> Journaled for JVec<T> {
    fn tag(&self) -> u32 {
        self.tag
    }
    fn rollback(&mut self, epoch: u64) {
        if self.log_epoch != epoch {
            return;
        }
        while let Some(u) = self.log.pop() {
            match u {
                VecUndo::Set(i, v, c) => {
                    if i < self.items.len() {
                        self.items[i] = v;
                        self.checks[i] = c;
                    }
                }
                VecUndo::Pushed => {
                    self.items.pop();
                    self.checks.pop();
                }
                VecUndo::Popped(v, c) => {
                    self.items.push(v);
                    self.checks.push(c);
                }
            }
        }
    }
    fn forget(&mut self) {
        self.log.clear();
    }
    fn object_count(&self) -> usize {
        self.items.len()
    }
    fn digest_full(&self, h: &mut Hasher) {
        h.write_u32(self.tag);
        h.write_u64(self.items.len() as u64);
        for v in &self.items {
            h.write_u32(checksum(v));
        }
    }
    fn verify(&self) -> usize {
        self.items
            .iter()
            .zip(&self.checks)
            .filter(|(v, c)| checksum(*v) != **c)
            .count()
    }
    fn repair_from(&mut self, other: &dyn Journaled) -> usize {
        let Some(o) = other.as_any().downcast_ref::<Self>() else {
            return 0;
        };
        if o.tag != self.tag || o.items.len() != self.items.len() {
            return 0;
        }
        let mut n = 0;
        for i in 0..self.items.len() {
            if checksum(&self.items[i]) != self.checks[i] && checksum(&o.items[i]) == o.checks[i] {
                self.items[i] = o.items[i].clone();
                self.checks[i] = o.checks[i];
                n += 1;
            }
        }
        n
    }
    fn self_repair(&mut self) -> usize {
        let mut n = 0;
        for (v, c) in self.items.iter_mut().zip(&self.checks) {
            if checksum(v) != *c && correct_single_bit(v, *c, checksum) {
                n += 1;
            }
        }
        n
    }
    fn self_repair_step(&mut self, budget: usize) -> ScrubStep {
        let start = self.scrub_at.min(self.items.len());
        let end = start.saturating_add(budget).min(self.items.len());
        let mut repaired = 0;
        for (v, c) in self.items[start..end]
            .iter_mut()
            .zip(&self.checks[start..end])
        {
            if checksum(v) != *c && correct_single_bit(v, *c, checksum) {
                repaired += 1;
            }
        }
        let wrapped = end == self.items.len();
        self.scrub_at = if wrapped { 0 } else { end };
        ScrubStep {
            checked: end - start,
            repaired,
            wrapped,
        }
    }
    fn bit_len(&self) -> u64 {
        self.items.iter().map(Value::bit_len).sum()
    }
    fn flip_bit(&mut self, mut bit: u64) {
        for v in &mut self.items {
            let n = v.bit_len();
            if bit < n {
                v.flip_bit(bit);
                return;
            }
            bit -= n;
        }
    }
    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.items.capacity() * size_of::<T>()
            + self.checks.capacity() * 4
            + self.log.capacity() * size_of::<VecUndo<T>>()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A map key's bytes hashed once: its journal position ([`checksum`] of the key) and the
/// checksums of the key with any value ([`checksum_kv`]) continue from the same state.
struct KeySum(Hasher);

impl KeySum {
    fn of<K: Value>(k: &K) -> Self {
        let mut h = Hasher::new();
        k.digest(&mut h);
        KeySum(h)
    }

    /// `checksum(k)`, as the journal's position of the entry.
    fn position(&self) -> u64 {
        u64::from(self.0.finish())
    }

    /// `checksum_kv(k, v)`.
    fn with<V: Value>(&self, v: &V) -> u32 {
        let mut h = self.0;
        v.digest(&mut h);
        h.finish()
    }
}

#[derive(Clone, Debug)]
enum MapUndo<K, V> {
    Inserted(K),
    Replaced(K, V, u32),
    Removed(K, V, u32),
}

/// A journaled ordered map (deterministic iteration order, so both replicas digest alike).
///
/// Each map carries a [`Stamp`] that changes with every change of its entries (see
/// [`JMap::stamp`]); it is no part of the replica's state (digests, scrubbing and equality
/// ignore it).
#[derive(Debug)]
pub struct JMap<K: Value + Ord, V: Value> {
    tag: u32,
    /// The entries: read through `self.entries` directly, changed only through
    /// [`JMap::map_mut`] (which renews the stamp).
    entries: BTreeMap<K, (V, u32)>,
    stamp: Stamp,
    log: Vec<MapUndo<K, V>>,
    log_epoch: u64,
    /// The last key an incremental scrub checked (`None`: start at the first).
    scrub_after: Option<K>,
}

impl<K: Value + Ord + 'static, V: Value + 'static> JMap<K, V> {
    /// An empty map with tag `tag`.
    pub fn new(tag: u32) -> Self {
        Self {
            scrub_after: None,
            tag,
            entries: BTreeMap::new(),
            stamp: Stamp::fresh(),
            log: Vec::new(),
            log_epoch: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value at `k`.
    pub fn get(&self, k: &K) -> Option<&V> {
        self.entries.get(k).map(|(v, _)| v)
    }

    /// True if `k` is present.
    pub fn contains_key(&self, k: &K) -> bool {
        self.entries.contains_key(k)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, (v, _))| (k, v))
    }

    /// The smallest key, if any.
    pub fn first_key(&self) -> Option<&K> {
        self.entries.keys().next()
    }

    /// The largest key, if any.
    pub fn last_key(&self) -> Option<&K> {
        self.entries.keys().next_back()
    }

    /// Which state the entries are in: equal stamps, read at two times, mean the entries did
    /// not change in between (every change renews it: journaled writes, rollbacks, repairs,
    /// injected bit flips), and no two maps (a clone neither) ever share one. Lets a caller
    /// keep something it derived from the entries until they change.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// The entries, for a change: renews the stamp.
    fn map_mut(&mut self) -> &mut BTreeMap<K, (V, u32)> {
        self.stamp = self.stamp.renewed();
        &mut self.entries
    }

    fn log(&mut self, j: &Journal) -> &mut Vec<MapUndo<K, V>> {
        if self.log_epoch != j.epoch() {
            self.log.clear();
            self.log_epoch = j.epoch();
        }
        &mut self.log
    }

    /// Inserts or replaces; returns the old value.
    pub fn insert(&mut self, j: &mut Journal, k: K, v: V) -> Option<V> {
        let key = KeySum::of(&k);
        let c = key.with(&v);
        j.record(self.tag, op::INSERT, key.position(), c);
        match self.map_mut().insert(k.clone(), (v, c)) {
            Some((old, old_c)) => {
                j.check_old(self.tag, key.position(), old_c, key.with(&old));
                self.log(j).push(MapUndo::Replaced(k, old.clone(), old_c));
                Some(old)
            }
            None => {
                self.log(j).push(MapUndo::Inserted(k));
                None
            }
        }
    }

    /// Removes `k`; returns its value.
    pub fn remove(&mut self, j: &mut Journal, k: &K) -> Option<V> {
        let (v, c) = self.map_mut().remove(k)?;
        let key = KeySum::of(k);
        j.check_old(self.tag, key.position(), c, key.with(&v));
        j.record(self.tag, op::REMOVE, key.position(), c);
        self.log(j).push(MapUndo::Removed(k.clone(), v.clone(), c));
        Some(v)
    }

    /// Mutates the value at `k` in place; `None` if absent. One lookup of `k`, whose bytes
    /// are hashed once for its position and both checksums (a frame-table update costs a
    /// page-table update two of these).
    pub fn update<R>(&mut self, j: &mut Journal, k: &K, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.update_if(j, k, |_| true, f)
    }

    /// [`JMap::update`] of the value at `k` if `ok` accepts it as it is; `None`, with nothing
    /// journaled, if `k` is absent or refused. A check and its change in one lookup (taking a
    /// reference on a page frame checks its owner and count first).
    pub fn update_if<R>(
        &mut self,
        j: &mut Journal,
        k: &K,
        ok: impl FnOnce(&V) -> bool,
        f: impl FnOnce(&mut V) -> R,
    ) -> Option<R> {
        let slot = self.entries.get_mut(k)?;
        if !ok(&slot.0) {
            return None;
        }
        let key = KeySum::of(k);
        j.check_old(self.tag, key.position(), slot.1, key.with(&slot.0));
        if self.log_epoch != j.epoch() {
            self.log.clear();
            self.log_epoch = j.epoch();
        }
        self.log
            .push(MapUndo::Replaced(k.clone(), slot.0.clone(), slot.1));
        self.stamp = self.stamp.renewed();
        let r = f(&mut slot.0);
        slot.1 = key.with(&slot.0);
        j.record(self.tag, op::SET, key.position(), slot.1);
        Some(r)
    }
}

impl<K: Value + Ord + 'static, V: Value + 'static> Journaled for JMap<K, V> {
    fn tag(&self) -> u32 {
        self.tag
    }
    fn rollback(&mut self, epoch: u64) {
        if self.log_epoch != epoch {
            return;
        }
        while let Some(u) = self.log.pop() {
            match u {
                MapUndo::Inserted(k) => {
                    self.map_mut().remove(&k);
                }
                MapUndo::Replaced(k, v, c) | MapUndo::Removed(k, v, c) => {
                    self.map_mut().insert(k, (v, c));
                }
            }
        }
    }
    fn forget(&mut self) {
        self.log.clear();
    }
    fn object_count(&self) -> usize {
        self.entries.len()
    }
    fn digest_full(&self, h: &mut Hasher) {
        h.write_u32(self.tag);
        h.write_u64(self.entries.len() as u64);
        for (k, (v, _)) in &self.entries {
            h.write_u32(checksum_kv(k, v));
        }
    }
    fn verify(&self) -> usize {
        self.entries
            .iter()
            .filter(|(k, (v, c))| checksum_kv(*k, v) != *c)
            .count()
    }
    fn repair_from(&mut self, other: &dyn Journaled) -> usize {
        let Some(o) = other.as_any().downcast_ref::<Self>() else {
            return 0;
        };
        if o.tag != self.tag {
            return 0;
        }
        let mut n = 0;
        // Scrubbing reads every entry: the stamp is renewed only if one was repaired.
        for (k, slot) in self.entries.iter_mut() {
            if checksum_kv(k, &slot.0) == slot.1 {
                continue;
            }
            if let Some(good) = o.entries.get(k) {
                if checksum_kv(k, &good.0) == good.1 {
                    *slot = good.clone();
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.stamp = self.stamp.renewed();
        }
        n
    }
    fn self_repair(&mut self) -> usize {
        let mut n = 0;
        // An entry that cannot be corrected is left as it was (`correct_single_bit`).
        for (k, (v, c)) in self.entries.iter_mut() {
            if checksum_kv(k, v) != *c && correct_single_bit(v, *c, |x| checksum_kv(k, x)) {
                n += 1;
            }
        }
        if n > 0 {
            self.stamp = self.stamp.renewed();
        }
        n
    }
    fn self_repair_step(&mut self, budget: usize) -> ScrubStep {
        use core::ops::Bound::{Excluded, Unbounded};
        let mut step = ScrubStep::default();
        let mut last = None;
        let mut range = match self.scrub_after.take() {
            Some(k) => self.entries.range_mut((Excluded(k), Unbounded)),
            None => self.entries.range_mut(..),
        };
        for (k, (v, c)) in range.by_ref().take(budget) {
            if checksum_kv(k, v) != *c && correct_single_bit(v, *c, |x| checksum_kv(k, x)) {
                step.repaired += 1;
            }
            step.checked += 1;
            last = Some(k.clone());
        }
        // Whether the sweep reached the end, from the same walk (a second lookup from the
        // last key doubled the cost of a step through a large map).
        step.wrapped = step.checked < budget || range.next().is_none();
        if step.repaired > 0 {
            self.stamp = self.stamp.renewed();
        }
        if !step.wrapped {
            self.scrub_after = last;
        }
        step
    }
    fn bit_len(&self) -> u64 {
        self.entries.values().map(|(v, _)| v.bit_len()).sum()
    }
    fn flip_bit(&mut self, mut bit: u64) {
        for (v, _) in self.map_mut().values_mut() {
            let n = v.bit_len();
            if bit < n {
                v.flip_bit(bit);
                return;
            }
            bit -= n;
        }
    }
    fn memory_bytes(&self) -> usize {
        // BTreeMap nodes hold up to 11 entries; count entries plus ~30% node overhead.
        size_of::<Self>()
            + self.entries.len() * (size_of::<K>() + size_of::<(V, u32)>()) * 13 / 10
            + self.log.capacity() * size_of::<MapUndo<K, V>>()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The identity of a [`JMap`] instance and the count of changes of its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    map: u64,
    changes: u64,
}

/// Identities handed out to maps (created or cloned), on every core.
static NEXT_MAP: AtomicU64 = AtomicU64::new(1);

impl Stamp {
    /// A stamp no other map has had.
    fn fresh() -> Self {
        Stamp {
            map: NEXT_MAP.fetch_add(1, Ordering::Relaxed),
            changes: 0,
        }
    }

    /// The stamp as two words (map identity, changes), equal exactly when the stamps are.
    pub fn words(self) -> [u64; 2] {
        [self.map, self.changes]
    }

    /// The stamp after one more change.
    fn renewed(self) -> Self {
        Stamp {
            map: self.map,
            changes: self.changes.wrapping_add(1),
        }
    }
}

impl<K: Value + Ord, V: Value> Clone for JMap<K, V> {
    /// A copy of the entries with a stamp of its own.
    fn clone(&self) -> Self {
        Self {
            tag: self.tag,
            entries: self.entries.clone(),
            stamp: Stamp::fresh(),
            log: self.log.clone(),
            log_epoch: self.log_epoch,
            scrub_after: self.scrub_after.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(c: &dyn Journaled) -> u32 {
        let mut h = Hasher::new();
        c.digest_full(&mut h);
        h.finish()
    }

    #[test]
    fn vec_rollback_bit_exact() {
        let mut j = Journal::new();
        let mut v: JVec<u64> = JVec::new(3);
        for i in 0..5 {
            v.push(&mut j, i);
        }
        j.begin(2);
        let before = full(&v);
        let snapshot: Vec<u64> = v.iter().copied().collect();
        v.set(&mut j, 1, 100);
        v.update(&mut j, 2, |x| *x *= 7);
        assert_eq!(v.pop(&mut j), Some(4));
        assert_eq!(v.pop(&mut j), Some(3));
        v.push(&mut j, 42);
        assert_eq!(v.set(&mut j, 99, 1), None, "out of range is refused");
        assert!(v.update(&mut j, 99, |_| ()).is_none());
        assert_ne!(full(&v), before);
        v.rollback(2);
        assert_eq!(full(&v), before);
        assert_eq!(v.iter().copied().collect::<Vec<_>>(), snapshot);
        assert_eq!(v.verify(), 0);
    }

    #[test]
    fn map_rollback_bit_exact() {
        let mut j = Journal::new();
        let mut m: JMap<u32, (u64, bool)> = JMap::new(4);
        for i in 0..10 {
            m.insert(&mut j, i, (i as u64 * 3, i % 2 == 0));
        }
        j.begin(7);
        let before = full(&m);
        m.remove(&mut j, &3);
        m.insert(&mut j, 3, (1, true));
        m.insert(&mut j, 50, (2, false));
        m.update(&mut j, &5, |v| v.0 = 0);
        m.remove(&mut j, &50);
        m.remove(&mut j, &9);
        assert!(m.remove(&mut j, &1000).is_none());
        m.rollback(7);
        assert_eq!(full(&m), before);
        assert_eq!(m.get(&3), Some(&(9, false)));
        assert!(m.get(&50).is_none());
        assert_eq!(m.len(), 10);
        assert_eq!(m.verify(), 0);
    }

    #[test]
    fn same_operations_same_write_digest() {
        let run = |x: u64| {
            let mut j = Journal::new();
            let mut m: JMap<u8, u64> = JMap::new(1);
            m.insert(&mut j, 1, x);
            m.update(&mut j, &1, |v| *v += 1);
            j.write_digest()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(4));
    }

    #[test]
    fn update_if_changes_only_what_it_accepts() {
        let run = |accept: bool| {
            let mut j = Journal::new();
            let mut m: JMap<u8, u64> = JMap::new(1);
            m.insert(&mut j, 1, 5);
            j.begin(3);
            let (stamp, writes) = (m.stamp(), j.write_count());
            let r = m.update_if(&mut j, &1, |v| accept && *v == 5, |v| *v += 1);
            let changed = (m.stamp() != stamp, j.write_count() - writes);
            (r, m.get(&1).copied(), changed, j.write_digest(), m)
        };
        let (r, v, changed, _, _) = run(false);
        assert_eq!((r, v, changed), (None, Some(5), (false, 0)));
        let (r, v, changed, digest, mut m) = run(true);
        assert_eq!((r, v, changed), (Some(()), Some(6), (true, 1)));
        let mut j = Journal::new();
        let mut plain: JMap<u8, u64> = JMap::new(1);
        plain.insert(&mut j, 1, 5);
        j.begin(3);
        plain.update(&mut j, &1, |v| *v += 1);
        assert_eq!(digest, j.write_digest(), "journaled as update journals it");
        m.rollback(3);
        assert_eq!((m.get(&1).copied(), m.verify()), (Some(5), 0));
    }

    #[test]
    fn flip_detected_by_verify_and_full_digest_and_repaired() {
        let mut j = Journal::new();
        let mut a: JMap<u16, [u8; 4]> = JMap::new(9);
        for i in 0..4 {
            a.insert(&mut j, i, [i as u8; 4]);
        }
        let b = a.clone();
        for bit in 0..a.bit_len() {
            let mut c = a.clone();
            c.flip_bit(bit);
            assert_eq!(c.verify(), 1);
            assert_ne!(full(&c), full(&b));
            assert_eq!(c.repair_from(&b), 1);
            assert_eq!(full(&c), full(&b));
        }
        for bit in 0..a.bit_len() {
            let mut c = a.clone();
            c.flip_bit(bit);
            assert_eq!(c.self_repair(), 1);
            assert_eq!(full(&c), full(&b), "corrected from the checksum alone");
        }
        let mut v: JVec<u32> = JVec::new(2);
        v.push(&mut j, 1);
        let w = v.clone();
        let mut x = v.clone();
        x.flip_bit(17);
        assert_eq!(x.self_repair(), 1);
        assert_eq!(x.get(0), Some(&1));
        v.flip_bit(31);
        assert_eq!(v.verify(), 1);
        assert_eq!(v.repair_from(&a), 0, "wrong type is refused");
        assert_eq!(v.repair_from(&w), 1);
        assert_eq!(v.get(0), Some(&1));
    }

    #[test]
    fn map_stamp_changes_with_every_change_and_only_then() {
        let mut j = Journal::new();
        let mut m: JMap<u16, u64> = JMap::new(5);
        let mut seen = alloc::vec![m.stamp()];
        let mut changed = |m: &JMap<u16, u64>| {
            assert!(!seen.contains(&m.stamp()), "a stamp seen before");
            seen.push(m.stamp());
        };
        for i in 0..4 {
            m.insert(&mut j, i, u64::from(i));
            changed(&m);
        }
        // Reads and scrubs that find nothing to repair keep the stamp.
        let s = m.stamp();
        assert_eq!(m.get(&1), Some(&1));
        assert_eq!(m.iter().count(), 4);
        assert_eq!(m.verify(), 0);
        assert_eq!(m.self_repair(), 0);
        assert_eq!(m.self_repair_step(2).repaired, 0);
        let good = m.clone();
        assert_eq!(m.repair_from(&good), 0);
        assert_eq!(m.stamp(), s);
        // A clone has a stamp of its own (an equal one would vouch for another map's entries).
        assert_ne!(good.stamp(), m.stamp());
        assert_ne!(m.clone().stamp(), m.clone().stamp());
        j.begin(3);
        m.update(&mut j, &1, |v| *v = 10);
        changed(&m);
        m.remove(&mut j, &2);
        changed(&m);
        m.rollback(3);
        changed(&m);
        assert_eq!(m.get(&1), Some(&1));
        m.flip_bit(3);
        changed(&m);
        assert_eq!(m.self_repair(), 1);
        changed(&m);
        m.flip_bit(70);
        changed(&m);
        assert_eq!(m.repair_from(&good), 1);
        changed(&m);
        m.flip_bit(5);
        changed(&m);
        // The incremental scrub goes on after the last key it checked: two rounds of it
        // reach every entry.
        let repaired: usize = (0..2).map(|_| m.self_repair_step(4).repaired).sum();
        assert_eq!(repaired, 1);
        changed(&m);
        assert_eq!(full(&m), full(&good));
    }
}
