//! FIFO event delivery at commit (Xen 4.17's `evtchn_fifo_set_pending`, `evtchn_fifo_unmask`,
//! `evtchn_fifo_clear_pending`): the pure logic over the [`EventWords`] trait (32-bit atomic
//! operations on guest words by machine address). The bare-metal side implements the trait
//! on real memory and applies the `FifoSet` / `FifoUnmask` / `FifoClear` / `FifoReset`
//! effects with these functions after commit, on the leader only; [`WordImage`] implements
//! it over a byte image for tests.
//!
//! The queue tails and each port's last queue are kept in [`FifoQueues`], owned by the
//! applying side (see [`super::fifo`] for why they are not replica state). Effects are
//! applied one at a time under the runtime lock, which stands in for Xen's queue locks.

use super::fifo::{FifoDomain, HEAD_OFFSET};
use crate::effect::DomId;
use alloc::collections::BTreeMap;
use dom0_interface::event_channel::{
    EVTCHN_FIFO_BUSY, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_PENDING,
};

/// 32-bit guest words the delivery reads and changes, each operation atomic. A word that is
/// not accessible reads as 0 and ignores changes.
pub trait EventWords {
    /// The word at `maddr`.
    fn load(&self, maddr: u64) -> u32;
    /// Compare-and-exchange: stores `new` if the word is `old`; returns the word seen.
    fn cmpxchg(&mut self, maddr: u64, old: u32, new: u32) -> u32;
    /// Sets `bit`; returns its old value.
    fn test_and_set(&mut self, maddr: u64, bit: u32) -> bool;
    /// Clears `bit`.
    fn clear(&mut self, maddr: u64, bit: u32);
    /// Stores `v`.
    fn store(&mut self, maddr: u64, v: u32);
    /// Sets `vcpu`'s `evtchn_upcall_pending`; returns its old value (`true` for a vCPU
    /// without a vcpu_info).
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool;
}

/// Queue key: (domain, vCPU, priority).
type QueueKey = (DomId, u32, u8);

/// The hypervisor-private queue state of every FIFO domain: each queue's tail (`q->tail`,
/// absent: 0) and each port's last queue (`evtchn->fifo_lastq`, absent: vCPU 0 priority 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FifoQueues {
    tails: BTreeMap<QueueKey, u32>,
    lastq: BTreeMap<(DomId, u32), (u32, u8)>,
}

impl FifoQueues {
    /// Empty.
    pub const fn new() -> Self {
        FifoQueues {
            tails: BTreeMap::new(),
            lastq: BTreeMap::new(),
        }
    }

    /// Forgets `dom`'s queues (a fresh FIFO set-up, a reset to 2-level, a destroyed domain).
    pub fn reset(&mut self, dom: DomId) {
        self.tails.retain(|k, _| k.0 != dom);
        self.lastq.retain(|k, _| k.0 != dom);
    }

    /// The tail of a queue.
    pub fn tail(&self, dom: DomId, vcpu: u32, priority: u8) -> u32 {
        self.tails.get(&(dom, vcpu, priority)).copied().unwrap_or(0)
    }

    fn set_tail(&mut self, q: QueueKey, port: u32) {
        if port == 0 {
            self.tails.remove(&q);
        } else {
            self.tails.insert(q, port);
        }
    }
}

/// What one FIFO delivery did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FifoDelivery {
    /// PENDING went from clear to set (wake pollers).
    pub newly_pending: bool,
    /// The upcall flag went from clear to set: kick the vCPU.
    pub kick: bool,
}

fn bit(b: u32) -> u32 {
    1 << b
}

/// `try_set_link`: 0 if the word is not LINKED, 1 if the LINK field was replaced, `None` if
/// the word changed under us (`w` holds the new value).
fn try_set_link(words: &mut dyn EventWords, at: u64, w: &mut u32, link: u32) -> Option<bool> {
    if *w & bit(EVTCHN_FIFO_LINKED) == 0 {
        return Some(false);
    }
    let old = *w;
    let new = (old & !(bit(EVTCHN_FIFO_BUSY) | EVTCHN_FIFO_LINK_MASK)) | link;
    *w = words.cmpxchg(at, old, new);
    (*w == old).then_some(true)
}

/// `evtchn_fifo_set_link`: links the word at `at` to `link` iff it is still LINKED, marking
/// it BUSY after a first failed try so the guest cannot unmask it meanwhile (the guest may
/// then change it at most four more times). Whether the link was set.
fn set_link(words: &mut dyn EventWords, at: u64, link: u32) -> bool {
    let mut w = words.load(at);
    if let Some(r) = try_set_link(words, at, &mut w, link) {
        return r;
    }
    words.test_and_set(at, EVTCHN_FIFO_BUSY);
    w = words.load(at);
    for _ in 0..4 {
        if let Some(r) = try_set_link(words, at, &mut w, link) {
            if !r {
                words.clear(at, EVTCHN_FIFO_BUSY);
            }
            return r;
        }
    }
    words.clear(at, EVTCHN_FIFO_BUSY);
    true
}

/// `evtchn_fifo_set_pending` of `port` (priority `priority`) of `dom` on `vcpu`'s queue.
pub fn set_pending(
    words: &mut dyn EventWords,
    queues: &mut FifoQueues,
    fd: &FifoDomain,
    dom: DomId,
    port: u32,
    vcpu: u32,
    priority: u8,
) -> FifoDelivery {
    let Some(word) = fd.word_maddr(port) else {
        return FifoDelivery::default();
    };
    let Some(cb) = fd.control_maddr(vcpu) else {
        // No control block: the guest must not unmask before it has one; Xen 4.17 drops the
        // event before it sets PENDING.
        return FifoDelivery::default();
    };
    let newly_pending = !words.test_and_set(word, EVTCHN_FIFO_PENDING);
    let q = (dom, vcpu, priority);
    let old = queues.lastq.get(&(dom, port)).copied().unwrap_or((0, 0));
    let old_q = (dom, old.0, old.1);
    let mut linked = true;
    if words.load(word) & bit(EVTCHN_FIFO_MASKED) == 0
        && !words.test_and_set(word, EVTCHN_FIFO_LINKED)
    {
        // This event was the old queue's tail: that queue is empty now.
        if queues.tails.get(&old_q) == Some(&port) {
            queues.set_tail(old_q, 0);
        }
        if old_q != q {
            queues.lastq.insert((dom, port), (vcpu, priority));
        }
        linked = false;
        let tail = queues.tail(dom, vcpu, priority);
        if tail != 0 {
            if let Some(tw) = fd.word_maddr(tail) {
                linked = set_link(words, tw, port);
            }
        }
        if !linked {
            words.store(cb + HEAD_OFFSET + 4 * u64::from(priority), port);
        }
        queues.set_tail(q, port);
    }
    let kick = !linked
        && !words.test_and_set(cb, u32::from(priority))
        && !words.test_and_set_upcall_pending(vcpu);
    FifoDelivery {
        newly_pending,
        kick,
    }
}

/// `evtchn_fifo_unmask`: clears MASKED and re-raises the event on `vcpu` if it is pending.
pub fn unmask(
    words: &mut dyn EventWords,
    queues: &mut FifoQueues,
    fd: &FifoDomain,
    dom: DomId,
    port: u32,
    vcpu: u32,
    priority: u8,
) -> FifoDelivery {
    let Some(word) = fd.word_maddr(port) else {
        return FifoDelivery::default();
    };
    words.clear(word, EVTCHN_FIFO_MASKED);
    if words.load(word) & bit(EVTCHN_FIFO_PENDING) != 0 {
        set_pending(words, queues, fd, dom, port, vcpu, priority)
    } else {
        FifoDelivery::default()
    }
}

/// `evtchn_fifo_clear_pending` of the event word at `word`: clears PENDING only (the guest
/// unlinks non-pending events).
pub fn clear(words: &mut dyn EventWords, word: u64) {
    words.clear(word, EVTCHN_FIFO_PENDING);
}

/// A machine-memory image for tests: words by machine address, and the upcall flags of
/// vCPUs that have a vcpu_info.
#[derive(Clone, Debug, Default)]
pub struct WordImage {
    /// Words by machine address (absent: 0).
    pub words: BTreeMap<u64, u32>,
    /// `evtchn_upcall_pending` by vCPU (absent vCPU: no vcpu_info).
    pub upcall: BTreeMap<u32, bool>,
}

impl EventWords for WordImage {
    fn load(&self, maddr: u64) -> u32 {
        self.words.get(&maddr).copied().unwrap_or(0)
    }
    fn cmpxchg(&mut self, maddr: u64, old: u32, new: u32) -> u32 {
        let cur = self.load(maddr);
        if cur == old {
            self.words.insert(maddr, new);
        }
        cur
    }
    fn test_and_set(&mut self, maddr: u64, b: u32) -> bool {
        let cur = self.load(maddr);
        self.words.insert(maddr, cur | bit(b));
        cur & bit(b) != 0
    }
    fn clear(&mut self, maddr: u64, b: u32) {
        let cur = self.load(maddr);
        self.words.insert(maddr, cur & !bit(b));
    }
    fn store(&mut self, maddr: u64, v: u32) {
        self.words.insert(maddr, v);
    }
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
        match self.upcall.get_mut(&vcpu) {
            Some(f) => core::mem::replace(f, true),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests;
