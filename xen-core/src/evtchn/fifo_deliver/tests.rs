//! Host tests of FIFO delivery against Xen's queue semantics, consuming as Linux does.

use super::*;
use alloc::vec;
use alloc::vec::Vec;

const ARRAY: u64 = 0x100; // mfn of the event array page
const CB: u64 = 0x200 * 4096 + 64; // vCPU 0's control block
const CB1: u64 = 0x201 * 4096; // vCPU 1's

fn domain() -> FifoDomain {
    FifoDomain {
        array: vec![ARRAY],
        control: vec![CB, CB1],
    }
}

fn word(p: u32) -> u64 {
    ARRAY * 4096 + u64::from(p) * 4
}

fn img() -> WordImage {
    let mut m = WordImage::default();
    m.upcall.insert(0, false);
    m.upcall.insert(1, false);
    m
}

fn head(m: &WordImage, cb: u64, prio: u8) -> u32 {
    m.load(cb + HEAD_OFFSET + 4 * u64::from(prio))
}

/// Linux's consume loop for one queue: read the head, walk LINK, clear LINKED (and PENDING),
/// until the end; the READY bit is cleared when the queue is found empty.
fn consume(m: &mut WordImage, cb: u64, prio: u8) -> Vec<u32> {
    let mut out = Vec::new();
    let mut p = head(m, cb, prio);
    m.store(cb + HEAD_OFFSET + 4 * u64::from(prio), 0);
    while p != 0 {
        let w = m.load(word(p));
        let next = w & EVTCHN_FIFO_LINK_MASK;
        // clear_linked: LINKED and LINK go, as Linux's cmpxchg loop does.
        m.store(
            word(p),
            w & !(bit(EVTCHN_FIFO_LINKED) | EVTCHN_FIFO_LINK_MASK),
        );
        if w & bit(EVTCHN_FIFO_PENDING) != 0 && w & bit(EVTCHN_FIFO_MASKED) == 0 {
            m.clear(word(p), EVTCHN_FIFO_PENDING);
            out.push(p);
        }
        p = next;
    }
    m.clear(cb, u32::from(prio));
    out
}

#[test]
fn first_event_sets_head_ready_and_upcall() {
    let (mut m, mut q, fd) = (img(), FifoQueues::new(), domain());
    let d = set_pending(&mut m, &mut q, &fd, 0, 5, 0, 7);
    assert_eq!(
        d,
        FifoDelivery {
            newly_pending: true,
            kick: true
        }
    );
    assert_eq!(head(&m, CB, 7), 5);
    assert_eq!(m.load(CB), 1 << 7, "READY bit of priority 7");
    assert_eq!(
        m.load(word(5)),
        bit(EVTCHN_FIFO_PENDING) | bit(EVTCHN_FIFO_LINKED)
    );
    assert!(m.upcall[&0]);
    assert_eq!(q.tail(0, 0, 7), 5);
}

#[test]
fn later_events_link_from_the_tail_in_order() {
    let (mut m, mut q, fd) = (img(), FifoQueues::new(), domain());
    for p in [5, 9, 3] {
        set_pending(&mut m, &mut q, &fd, 0, p, 0, 7);
    }
    assert_eq!(head(&m, CB, 7), 5);
    assert_eq!(m.load(word(5)) & EVTCHN_FIFO_LINK_MASK, 9);
    assert_eq!(m.load(word(9)) & EVTCHN_FIFO_LINK_MASK, 3);
    assert_eq!(consume(&mut m, CB, 7), vec![5, 9, 3]);
    // Already pending: nothing new, no kick.
    set_pending(&mut m, &mut q, &fd, 0, 4, 0, 7);
    let again = set_pending(&mut m, &mut q, &fd, 0, 4, 0, 7);
    assert_eq!(again, FifoDelivery::default());
}

#[test]
fn a_consumed_tail_starts_a_new_queue_at_the_head() {
    let (mut m, mut q, fd) = (img(), FifoQueues::new(), domain());
    set_pending(&mut m, &mut q, &fd, 0, 5, 0, 7);
    assert_eq!(consume(&mut m, CB, 7), vec![5]);
    m.upcall.insert(0, false);
    let d = set_pending(&mut m, &mut q, &fd, 0, 6, 0, 7);
    assert!(d.kick, "tail 5 unlinked: head written, READY set again");
    assert_eq!(head(&m, CB, 7), 6);
    assert_eq!(m.load(word(5)) & EVTCHN_FIFO_LINK_MASK, 0);
}

#[test]
fn masked_events_stay_unlinked_until_unmask() {
    let (mut m, mut q, fd) = (img(), FifoQueues::new(), domain());
    m.store(word(8), bit(EVTCHN_FIFO_MASKED));
    let d = set_pending(&mut m, &mut q, &fd, 0, 8, 0, 7);
    assert_eq!(
        d,
        FifoDelivery {
            newly_pending: true,
            kick: false
        }
    );
    assert_eq!(
        m.load(word(8)),
        bit(EVTCHN_FIFO_MASKED) | bit(EVTCHN_FIFO_PENDING)
    );
    assert_eq!(head(&m, CB, 7), 0);
    let d = unmask(&mut m, &mut q, &fd, 0, 8, 0, 7);
    assert!(d.kick);
    assert_eq!(head(&m, CB, 7), 8);
    assert_eq!(consume(&mut m, CB, 7), vec![8]);
    // Unmasking a quiet port only clears MASKED.
    m.store(word(9), bit(EVTCHN_FIFO_MASKED));
    assert_eq!(
        unmask(&mut m, &mut q, &fd, 0, 9, 0, 7),
        FifoDelivery::default()
    );
    assert_eq!(m.load(word(9)), 0);
}

#[test]
fn priorities_have_their_own_queues_and_ready_bits() {
    let (mut m, mut q, fd) = (img(), FifoQueues::new(), domain());
    set_pending(&mut m, &mut q, &fd, 0, 10, 0, 7);
    let d = set_pending(&mut m, &mut q, &fd, 0, 11, 0, 2);
    assert!(!d.kick, "upcall already pending");
    assert_eq!(m.load(CB), (1 << 7) | (1 << 2));
    assert_eq!(head(&m, CB, 2), 11);
    assert_eq!(head(&m, CB, 7), 10);
    assert_eq!(m.load(word(10)) & EVTCHN_FIFO_LINK_MASK, 0);
}

#[test]
fn queues_are_per_vcpu_and_a_moved_port_leaves_the_old_tail() {
    let (mut m, mut q, fd) = (img(), FifoQueues::new(), domain());
    set_pending(&mut m, &mut q, &fd, 0, 12, 0, 7);
    assert_eq!(consume(&mut m, CB, 7), vec![12]);
    // Port 12 now goes to vCPU 1: the old queue's tail (12) is invalidated.
    let d = set_pending(&mut m, &mut q, &fd, 0, 12, 1, 7);
    assert!(d.kick);
    assert_eq!(head(&m, CB1, 7), 12);
    assert_eq!(q.tail(0, 0, 7), 0);
    assert_eq!(q.tail(0, 1, 7), 12);
    assert!(m.upcall[&1]);
}

#[test]
fn no_control_block_drops_the_event_before_pending() {
    let (mut m, mut q) = (img(), FifoQueues::new());
    let fd = FifoDomain {
        array: vec![ARRAY],
        control: vec![CB],
    };
    let d = set_pending(&mut m, &mut q, &fd, 0, 4, 1, 7);
    assert_eq!(d, FifoDelivery::default());
    assert_eq!(m.load(word(4)), 0, "Xen 4.17: not even PENDING");
    assert!(!m.upcall[&1]);
}

#[test]
fn beyond_the_array_nothing_is_touched() {
    let (mut m, mut q, fd) = (img(), FifoQueues::new(), domain());
    assert_eq!(
        set_pending(&mut m, &mut q, &fd, 0, 1024, 0, 7),
        FifoDelivery::default()
    );
    assert!(m.words.is_empty());
}

#[test]
fn clear_only_clears_pending() {
    let (mut m, mut q, fd) = (img(), FifoQueues::new(), domain());
    set_pending(&mut m, &mut q, &fd, 0, 3, 0, 7);
    clear(&mut m, word(3));
    assert_eq!(m.load(word(3)), bit(EVTCHN_FIFO_LINKED));
}

/// A word that changes under the cmpxchg (the guest clears LINKED as it consumes) ends the
/// link attempt with the head written, as in Xen.
struct Racy {
    inner: WordImage,
    at: u64,
    fired: bool,
}

impl EventWords for Racy {
    fn load(&self, maddr: u64) -> u32 {
        self.inner.load(maddr)
    }
    fn cmpxchg(&mut self, maddr: u64, old: u32, new: u32) -> u32 {
        if maddr == self.at && !self.fired {
            self.fired = true;
            let w = self.inner.load(maddr) & !(bit(EVTCHN_FIFO_LINKED) | EVTCHN_FIFO_LINK_MASK);
            self.inner.store(maddr, w);
        }
        self.inner.cmpxchg(maddr, old, new)
    }
    fn test_and_set(&mut self, maddr: u64, b: u32) -> bool {
        self.inner.test_and_set(maddr, b)
    }
    fn clear(&mut self, maddr: u64, b: u32) {
        self.inner.clear(maddr, b)
    }
    fn store(&mut self, maddr: u64, v: u32) {
        self.inner.store(maddr, v)
    }
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
        self.inner.test_and_set_upcall_pending(vcpu)
    }
}

#[test]
fn tail_unlinked_during_the_cmpxchg_falls_back_to_the_head() {
    let fd = domain();
    let mut q = FifoQueues::new();
    let mut m = Racy {
        inner: img(),
        at: word(5),
        fired: false,
    };
    set_pending(&mut m, &mut q, &fd, 0, 5, 0, 7);
    m.inner.store(CB + HEAD_OFFSET + 28, 0); // the guest took the head
    m.inner.clear(CB, 7);
    let d = set_pending(&mut m, &mut q, &fd, 0, 6, 0, 7);
    assert!(m.fired);
    assert_eq!(head(&m.inner, CB, 7), 6);
    assert_eq!(
        m.inner.load(word(5)) & bit(EVTCHN_FIFO_BUSY),
        0,
        "BUSY dropped"
    );
    assert!(!d.kick, "upcall still flagged from the first event");
    assert_eq!(m.inner.load(CB), 1 << 7);
}
