//! The undo journal: the per-execution transaction context every replica write goes through,
//! and the `Journaled` interface of the containers that keep their own undo records.
//!
//! Each container keeps an undo log stamped with the epoch of the execution that wrote it.
//! Commit is O(1): the engine moves to a new epoch and stale logs are dropped lazily by the
//! next write. Rollback visits every container of the replica and undoes the records of the
//! current epoch in reverse order, restoring the replica bit for bit. Every write also feeds
//! the running write digest (container tag, operation, position, object checksum) that the
//! two executions compare.

use crate::digest::Hasher;
use core::any::Any;

/// Operation codes fed into the write digest.
pub mod op {
    /// A cell or vector element was overwritten.
    pub const SET: u8 = 1;
    /// A map entry was inserted (or replaced).
    pub const INSERT: u8 = 2;
    /// A map entry was removed.
    pub const REMOVE: u8 = 3;
    /// A vector element was pushed.
    pub const PUSH: u8 = 4;
    /// A vector element was popped.
    pub const POP: u8 = 5;
    /// An object about to be overwritten failed its checksum (latent corruption found).
    pub const CORRUPT: u8 = 6;
}

/// The write side of one execution: its epoch and its running write digest.
#[derive(Clone, Debug)]
pub struct Journal {
    epoch: u64,
    writes: Hasher,
    count: u64,
    corrupt: u64,
}

impl Default for Journal {
    fn default() -> Self {
        Self::new()
    }
}

impl Journal {
    /// A journal at epoch 1 (the engine owns the real ones; this is for tests and tools).
    pub fn new() -> Self {
        Self {
            epoch: 1,
            writes: Hasher::new(),
            count: 0,
            corrupt: 0,
        }
    }

    /// Starts a new execution at `epoch`: clears the write digest.
    pub fn begin(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.writes = Hasher::new();
        self.count = 0;
        self.corrupt = 0;
    }

    /// The epoch that stamps the undo records of this execution.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Feeds one write into the write digest (called by the containers).
    pub fn record(&mut self, tag: u32, op: u8, position: u64, check: u32) {
        self.writes.write_u32(tag);
        self.writes.write_u8(op);
        self.writes.write_u64(position);
        self.writes.write_u32(check);
        self.count += 1;
    }

    /// Checks, before an object is overwritten, that its data still matches its stored
    /// checksum; a mismatch (a flipped bit that the write would launder) is fed into the
    /// write digest so the two executions disagree and the replica gets scrubbed.
    pub fn check_old(&mut self, tag: u32, position: u64, stored: u32, actual: u32) {
        if stored != actual {
            self.record(tag, op::CORRUPT, position, actual);
            self.corrupt += 1;
        }
    }

    /// Corrupted objects met by this execution's writes.
    pub fn corrupt_count(&self) -> u64 {
        self.corrupt
    }

    /// Digest of all writes of this execution so far.
    pub fn write_digest(&self) -> u32 {
        self.writes.finish()
    }

    /// Number of writes of this execution so far.
    pub fn write_count(&self) -> u64 {
        self.count
    }
}

/// What a replica container offers the engine: rollback, full digest, per-object checksum
/// verification and repair, fault injection and memory accounting.
pub trait Journaled: Any {
    /// The container's tag (distinct per container of a replica; fed into digests).
    fn tag(&self) -> u32;
    /// Undoes every write of `epoch`, newest first, and drops those undo records.
    fn rollback(&mut self, epoch: u64);
    /// Drops all undo records (used after a commit to return memory eagerly).
    fn forget(&mut self);
    /// Number of objects (elements / entries).
    fn object_count(&self) -> usize;
    /// Feeds the whole content, with checksums recomputed from the data, into `h`.
    fn digest_full(&self, h: &mut Hasher);
    /// Number of objects whose stored checksum no longer matches their data.
    fn verify(&self) -> usize;
    /// Replaces every object that fails verification here with the same object of `other`
    /// (a container of the same type and tag that verifies). Returns how many were repaired.
    fn repair_from(&mut self, other: &dyn Journaled) -> usize;
    /// Corrects single-bit errors in objects that fail verification, from their stored
    /// checksums alone (no other replica needed). Returns how many were corrected.
    fn self_repair(&mut self) -> usize;
    /// One step of an incremental [`self_repair`](Journaled::self_repair): checks (and
    /// corrects like it) up to `budget` objects, continuing after the last object the
    /// previous step checked (the container keeps that cursor; it is not replica data and
    /// is not digested). `wrapped` reports that the step reached the last object, so the
    /// next step starts over at the first.
    fn self_repair_step(&mut self, budget: usize) -> ScrubStep;
    /// Number of injectable bits (data of all objects).
    fn bit_len(&self) -> u64;
    /// Flips one bit of one object's data without touching its stored checksum.
    fn flip_bit(&mut self, bit: u64);
    /// Approximate bytes held, data plus undo records.
    fn memory_bytes(&self) -> usize;
    /// For `repair_from`: downcasting support.
    fn as_any(&self) -> &dyn Any;
}

/// What one [`Journaled::self_repair_step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubStep {
    /// Objects checked.
    pub checked: usize,
    /// Objects found corrupted and corrected.
    pub repaired: usize,
    /// The step reached the container's last object (the next starts at the first).
    pub wrapped: bool,
}

/// A single journaled value (e.g. a global counter or a configuration record).
#[derive(Clone, Debug)]
pub struct JCell<T: crate::Value> {
    tag: u32,
    value: T,
    check: u32,
    log: alloc::vec::Vec<(T, u32)>,
    log_epoch: u64,
}

impl<T: crate::Value + 'static> JCell<T> {
    /// A cell with tag `tag` holding `value` (construction is not journaled).
    pub fn new(tag: u32, value: T) -> Self {
        let check = crate::value::checksum(&value);
        Self {
            tag,
            value,
            check,
            log: alloc::vec::Vec::new(),
            log_epoch: 0,
        }
    }

    /// The current value.
    pub fn get(&self) -> &T {
        &self.value
    }

    fn save(&mut self, j: &mut Journal) {
        j.check_old(self.tag, 0, self.check, crate::value::checksum(&self.value));
        if self.log_epoch != j.epoch() {
            self.log.clear();
            self.log_epoch = j.epoch();
        }
        self.log.push((self.value.clone(), self.check));
    }

    /// Replaces the value, journaled.
    pub fn set(&mut self, j: &mut Journal, value: T) {
        self.save(j);
        self.value = value;
        self.check = crate::value::checksum(&self.value);
        j.record(self.tag, op::SET, 0, self.check);
    }

    /// Mutates the value in place, journaled (the old value is saved first).
    pub fn update<R>(&mut self, j: &mut Journal, f: impl FnOnce(&mut T) -> R) -> R {
        self.save(j);
        let r = f(&mut self.value);
        self.check = crate::value::checksum(&self.value);
        j.record(self.tag, op::SET, 0, self.check);
        r
    }
}

impl<T: crate::Value + 'static> Journaled for JCell<T> {
    fn tag(&self) -> u32 {
        self.tag
    }
    fn rollback(&mut self, epoch: u64) {
        if self.log_epoch == epoch {
            while let Some((v, c)) = self.log.pop() {
                self.value = v;
                self.check = c;
            }
        }
    }
    fn forget(&mut self) {
        self.log.clear();
    }
    fn object_count(&self) -> usize {
        1
    }
    fn digest_full(&self, h: &mut Hasher) {
        h.write_u32(self.tag);
        h.write_u32(crate::value::checksum(&self.value));
    }
    fn verify(&self) -> usize {
        (crate::value::checksum(&self.value) != self.check) as usize
    }
    fn repair_from(&mut self, other: &dyn Journaled) -> usize {
        match other.as_any().downcast_ref::<Self>() {
            Some(o) if self.verify() == 1 && o.verify() == 0 && o.tag == self.tag => {
                self.value = o.value.clone();
                self.check = o.check;
                1
            }
            _ => 0,
        }
    }
    fn self_repair(&mut self) -> usize {
        if self.verify() == 0 {
            return 0;
        }
        crate::value::correct_single_bit(&mut self.value, self.check, crate::value::checksum)
            as usize
    }
    fn self_repair_step(&mut self, budget: usize) -> ScrubStep {
        if budget == 0 {
            return ScrubStep::default();
        }
        ScrubStep {
            checked: 1,
            repaired: self.self_repair(),
            wrapped: true,
        }
    }
    fn bit_len(&self) -> u64 {
        self.value.bit_len()
    }
    fn flip_bit(&mut self, bit: u64) {
        self.value.flip_bit(bit);
    }
    fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>() + self.log.capacity() * core::mem::size_of::<(T, u32)>()
    }
    fn as_any(&self) -> &dyn Any {
        self
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
    fn cell_rollback_restores_and_commit_keeps() {
        let mut j = Journal::new();
        let mut c = JCell::new(1, 5u64);
        let before = full(&c);
        j.begin(2);
        c.set(&mut j, 6);
        c.update(&mut j, |v| *v += 10);
        assert_eq!(*c.get(), 16);
        assert_eq!(j.write_count(), 2);
        c.rollback(2);
        assert_eq!(*c.get(), 5);
        assert_eq!(full(&c), before);
        j.begin(3);
        c.set(&mut j, 9);
        c.rollback(2); // a stale epoch does nothing
        assert_eq!(*c.get(), 9);
        j.begin(4);
        c.rollback(4);
        assert_eq!(
            *c.get(),
            9,
            "committed epoch 3 survives rollback of epoch 4"
        );
    }

    #[test]
    fn write_digest_depends_on_value() {
        let mut j1 = Journal::new();
        let mut j2 = Journal::new();
        let mut a = JCell::new(1, 0u32);
        let mut b = JCell::new(1, 0u32);
        a.set(&mut j1, 1);
        b.set(&mut j2, 3);
        assert_ne!(j1.write_digest(), j2.write_digest());
    }

    #[test]
    fn overwriting_a_corrupted_object_is_noticed() {
        let mut j = Journal::new();
        let mut c = JCell::new(1, 0u64);
        c.flip_bit(5);
        c.set(&mut j, 7);
        assert_eq!(j.corrupt_count(), 1);
        let mut j2 = Journal::new();
        let mut clean = JCell::new(1, 0u64);
        clean.set(&mut j2, 7);
        assert_ne!(j.write_digest(), j2.write_digest());
    }

    #[test]
    fn cell_verify_and_repair() {
        let mut a = JCell::new(1, 0xffu32);
        let b = a.clone();
        a.flip_bit(3);
        assert_eq!(a.verify(), 1);
        assert_eq!(a.repair_from(&b), 1);
        assert_eq!(a.verify(), 0);
        assert_eq!(*a.get(), 0xff);
    }
}
