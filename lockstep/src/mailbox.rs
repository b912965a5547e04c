//! The pair's mailbox: cache-line-aligned single-writer slots with sequence (round) numbers,
//! built from `core::sync::atomic` only (no locks, no unsafe), plus the streaming input
//! channel through which the leader's input log reaches the follower while both execute.
//!
//! Every slot has one writer. A post stores an invalid round, a Release fence, the payload,
//! then the round with Release; a reader loads the round with Acquire, the payload, an
//! Acquire fence and the round again (a seqlock), so a payload is never mixed across rounds.

use crate::digest::TxDigest;
use crate::inject::{Fault, FaultKind};
use crate::input::{WordSink, WordSource};
use crate::machine::ExecStatus;
use crate::role::{wait_until, Clock, Idle, Role, WaitStrategy};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering::*};

/// Bits of the channel's `published` word that hold the word count.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Largest input channel, in words.
pub const MAX_CHANNEL_WORDS: usize = COUNT_MASK as usize;

/// One execution's post: its digest and how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Post {
    /// Write and effects digests.
    pub digest: TxDigest,
    /// Completion status.
    pub status: ExecStatus,
}

/// A single-writer slot holding the post of one core for one round.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct PostSlot {
    round: AtomicU64,
    digest: AtomicU64,
    status: AtomicU64,
}

impl PostSlot {
    /// Posts `p` for `round` (only the slot's owner calls this).
    pub fn post(&self, round: u64, p: Post) {
        self.round.store(0, Relaxed);
        fence(Release);
        self.digest.store(p.digest.pack(), Relaxed);
        self.status.store(p.status as u64, Relaxed);
        self.round.store(round, Release);
    }

    /// The post for `round`, if it is there.
    pub fn read(&self, round: u64) -> Option<Post> {
        if self.round.load(Acquire) != round {
            return None;
        }
        let d = self.digest.load(Relaxed);
        let s = self.status.load(Relaxed);
        fence(Acquire);
        if self.round.load(Relaxed) != round {
            return None;
        }
        Some(Post {
            digest: TxDigest::unpack(d),
            status: ExecStatus::from_word(s),
        })
    }

    /// Flips one bit of the posted digest (fault injection: corruption in flight).
    pub fn flip_digest_bit(&self, bit: u32) {
        self.digest.fetch_xor(1 << (bit % 64), Relaxed);
    }
}

/// The coordinator's decision for one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Both agreed: keep the writes, apply the effects.
    Commit,
    /// Roll back and re-execute.
    Retry,
    /// Roll back; the pair is escalated (suspect core if identified).
    Escalate(Option<Role>),
    /// Roll back; the transaction cannot run in lockstep (e.g. input log overflow).
    Abort,
}

impl Decision {
    /// Encodes as a nonzero word.
    pub fn to_word(self) -> u64 {
        match self {
            Decision::Commit => 1,
            Decision::Retry => 2,
            Decision::Abort => 3,
            Decision::Escalate(s) => 4 | (s.map_or(0xff, |r| r.code()) as u64) << 8,
        }
    }

    /// Decodes; unknown words are `None`.
    pub fn from_word(w: u64) -> Option<Self> {
        match w & 0xff {
            1 => Some(Decision::Commit),
            2 => Some(Decision::Retry),
            3 => Some(Decision::Abort),
            4 => Some(Decision::Escalate(Role::from_code((w >> 8) as u8))),
            _ => None,
        }
    }
}

/// The decision slot (one decision per round: whoever coordinates the pair).
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct DecisionSlot {
    round: AtomicU64,
    decision: AtomicU64,
    committed: AtomicU64,
    claimed: AtomicU64,
}

impl DecisionSlot {
    /// Posts the decision for `round` and returns the decision that stands for it. Only the
    /// first decider of a round writes: when the leader gave up on a slow coordinator core
    /// and decided inline, the coordinator's late decision for the same round is dropped (and
    /// vice versa), so leader and follower can never act on two different decisions.
    pub fn post(&self, round: u64, d: Decision) -> Decision {
        if self.claimed.fetch_max(round, AcqRel) >= round {
            // Someone else decided this round (or a later one): theirs stands.
            loop {
                if let Some(theirs) = self.read(round) {
                    return theirs;
                }
                core::hint::spin_loop();
            }
        }
        self.write(round, d);
        d
    }

    fn write(&self, round: u64, d: Decision) {
        if d == Decision::Commit {
            self.committed.store(round, Release);
        }
        self.round.store(0, Relaxed);
        fence(Release);
        self.decision.store(d.to_word(), Relaxed);
        self.round.store(round, Release);
    }

    /// The decision for `round`: `Commit` if `round` is the last committed round, the latest
    /// decision if it is for `round`, `Retry` if a later round has been decided (a later
    /// round can only be committed after the follower has seen this one's decision, so an
    /// uncommitted older round was rolled back), `None` if `round` is still open.
    pub fn read(&self, round: u64) -> Option<Decision> {
        if self.committed.load(Acquire) == round && round != 0 {
            return Some(Decision::Commit);
        }
        let r = self.round.load(Acquire);
        let w = self.decision.load(Relaxed);
        fence(Acquire);
        if self.round.load(Relaxed) != r || r < round {
            return None;
        }
        if r > round {
            return Some(Decision::Retry);
        }
        Decision::from_word(w)
    }
}

/// The streaming channel for the leader's input log (array of atomic words).
#[derive(Debug)]
pub struct InputChannel {
    words: Box<[AtomicU64]>,
    published: AtomicU64,
}

impl InputChannel {
    /// A channel of `capacity` words (clamped to [`MAX_CHANNEL_WORDS`]).
    pub fn new(capacity: usize) -> Self {
        let n = capacity.min(MAX_CHANNEL_WORDS);
        let words: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            words: words.into_boxed_slice(),
            published: AtomicU64::new(0),
        }
    }

    /// Round and word count currently published.
    pub fn published(&self) -> (u64, usize) {
        let p = self.published.load(Acquire);
        (p >> COUNT_BITS, (p & COUNT_MASK) as usize)
    }

    /// Opens `round` for writing (leader only) and returns its writer.
    pub fn begin(&self, round: u64) -> ChannelWriter<'_> {
        // Release: whatever the leader wrote before opening the round (e.g. a fault order)
        // is visible to a follower that sees the round. The fence then orders this store
        // before every word of the round (the seqlock rule `is_current` relies on).
        self.published.store(round << COUNT_BITS, Release);
        fence(Release);
        ChannelWriter {
            ch: self,
            round,
            count: 0,
        }
    }

    /// True while `round` is the published round (nothing of a later round was written).
    pub fn is_current(&self, round: u64) -> bool {
        fence(Acquire);
        self.published.load(Relaxed) >> COUNT_BITS == round
    }

    /// Flips one bit of one published word (fault injection: corruption in flight).
    pub fn flip_bit(&self, bit: u64) {
        let (_, n) = self.published();
        if n > 0 {
            self.words[(bit / 64) as usize % n].fetch_xor(1 << (bit % 64), Relaxed);
        }
    }
}

/// Leader side of the input channel for one round.
#[derive(Debug)]
pub struct ChannelWriter<'a> {
    ch: &'a InputChannel,
    round: u64,
    count: usize,
}

impl WordSink for ChannelWriter<'_> {
    fn push_word(&mut self, w: u64) -> bool {
        self.push_words(&[w])
    }

    /// Stores the words, then publishes them with one store: the reader polls the count's
    /// cache line, and a store per word moved that line between the two cores for every
    /// word of a request.
    fn push_words(&mut self, ws: &[u64]) -> bool {
        let room = self.ch.words.len().saturating_sub(self.count);
        let fit = ws.len().min(room);
        let free = self.ch.words.get(self.count..).unwrap_or(&[]);
        for (slot, &w) in free.iter().zip(&ws[..fit]) {
            slot.store(w, Relaxed);
        }
        if fit > 0 {
            self.count += fit;
            self.ch
                .published
                .store(self.round << COUNT_BITS | self.count as u64, Release);
        }
        fit == ws.len()
    }
}

/// Follower side of the input channel for one round: waits for words up to a deadline.
pub struct ChannelReader<'a, C: Clock + ?Sized, I: Idle + ?Sized> {
    ch: &'a InputChannel,
    round: u64,
    pos: usize,
    avail: usize,
    deadline: u64,
    clock: &'a C,
    idle: &'a I,
    wait: WaitStrategy,
    decided: Option<&'a DecisionSlot>,
}

impl<'a, C: Clock + ?Sized, I: Idle + ?Sized> ChannelReader<'a, C, I> {
    /// Also gives up as soon as `slot` holds a decision for this round: once the coordinator
    /// has decided (e.g. the leader hung and missed its deadline), words that never came
    /// are not waited for up to this reader's own deadline — the decision's kick ends the
    /// wait, so the re-execution starts right away.
    pub fn until_decided(mut self, slot: &'a DecisionSlot) -> Self {
        self.decided = Some(slot);
        self
    }

    /// A reader of `round` giving up at `deadline` (caller's clock).
    pub fn new(
        ch: &'a InputChannel,
        round: u64,
        deadline: u64,
        clock: &'a C,
        idle: &'a I,
        wait: WaitStrategy,
    ) -> Self {
        Self {
            ch,
            round,
            pos: 0,
            avail: 0,
            deadline,
            clock,
            idle,
            wait,
            decided: None,
        }
    }
}

impl<C: Clock + ?Sized, I: Idle + ?Sized> WordSource for ChannelReader<'_, C, I> {
    fn next_word(&mut self) -> Option<u64> {
        if self.pos >= self.avail {
            let (ch, round, pos, decided) = (self.ch, self.round, self.pos, self.decided);
            let got = wait_until(
                self.wait,
                self.clock,
                self.idle,
                Some(self.deadline),
                || {
                    let (r, n) = ch.published();
                    if r != round {
                        Some(None)
                    } else if n > pos {
                        Some(Some(n))
                    } else if decided.is_some_and(|d| d.read(round).is_some()) {
                        Some(None)
                    } else {
                        None
                    }
                },
            );
            self.avail = got.flatten()?;
        }
        let w = self.ch.words.get(self.pos)?.load(Relaxed);
        self.pos += 1;
        Some(w)
    }
}

/// A lockstep pair's mailbox: input channel, the leader's and follower's post slots, the
/// decision slot and a shutdown flag. Shared by reference between the pair's cores.
#[derive(Debug)]
pub struct Pair {
    /// Leader → follower input log.
    pub input: InputChannel,
    /// The leader's posts.
    pub leader: PostSlot,
    /// The follower's posts.
    pub follower: PostSlot,
    /// The coordinator's decisions.
    pub decision: DecisionSlot,
    /// Objects the follower has corrected in its own replica by scrubbing (latent flips the
    /// leader cannot see otherwise).
    pub follower_repairs: AtomicU64,
    shutdown: AtomicBool,
    order: AtomicU64,
    order_bit: AtomicU64,
    resync: AtomicU64,
    resync_ack: AtomicU64,
    resync_digest: AtomicU32,
    follower_done: AtomicU64,
    follower_gen: AtomicU64,
    promote: AtomicU64,
    leader_decides: AtomicBool,
}

impl Pair {
    /// A mailbox whose input channel holds `input_capacity` words.
    pub fn new(input_capacity: usize) -> Self {
        Self {
            input: InputChannel::new(input_capacity),
            leader: PostSlot::default(),
            follower: PostSlot::default(),
            decision: DecisionSlot::default(),
            follower_repairs: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            order: AtomicU64::new(0),
            order_bit: AtomicU64::new(0),
            resync: AtomicU64::new(0),
            resync_ack: AtomicU64::new(0),
            resync_digest: AtomicU32::new(0),
            follower_done: AtomicU64::new(0),
            follower_gen: AtomicU64::new(0),
            promote: AtomicU64::new(0),
            leader_decides: AtomicBool::new(false),
        }
    }

    /// The follower has finished `round` (its decision applied, any scrub done) and waits
    /// for the next one. A follower that starts after round `r` marks `r`.
    pub fn mark_follower_done(&self, round: u64) {
        self.follower_done.store(round.saturating_add(1), Release);
    }

    /// Whether the follower has finished `round` (or a later one). The leader waits for this
    /// before opening the next round, so a follower's scrub after a commit or a retry is not
    /// counted against the next round's deadline (which then measures execution only).
    pub fn follower_done(&self, round: u64) -> bool {
        self.follower_done.load(Acquire) > round
    }

    /// Whether a follower has started serving this pair at all (it builds its replica first,
    /// which can take much longer than one transaction's deadline).
    pub fn follower_started(&self) -> bool {
        self.follower_done.load(Acquire) != 0
    }

    /// Runtime `lockstep on`: the leader asks the follower to drop its (stale) replica and
    /// restart from a copy of the leader's, serving the rounds after `after_round`.
    pub fn request_resync(&self, after_round: u64) {
        self.resync_ack.store(0, Relaxed);
        self.resync.store(after_round.wrapping_add(1), Release);
    }

    /// The pending re-synchronisation request (the round the follower restarts after).
    pub fn resync_request(&self) -> Option<u64> {
        match self.resync.load(Acquire) {
            0 => None,
            r => Some(r.wrapping_sub(1)),
        }
    }

    /// Withdraws a re-synchronisation request nobody answered.
    pub fn cancel_resync(&self, after_round: u64) {
        let _ = self
            .resync
            .compare_exchange(after_round.wrapping_add(1), 0, AcqRel, Relaxed);
    }

    /// The follower restarted after `after_round` with a replica whose full digest is
    /// `digest`: clears the request and tells the leader.
    pub fn ack_resync(&self, after_round: u64, digest: u32) {
        let tag = after_round.wrapping_add(1);
        let _ = self.resync.compare_exchange(tag, 0, AcqRel, Relaxed);
        self.resync_digest.store(digest, Relaxed);
        self.mark_follower_done(after_round);
        self.resync_ack.store(tag, Release);
    }

    /// The follower's replica digest once it acknowledged the request for `after_round`.
    pub fn resync_acked(&self, after_round: u64) -> Option<u32> {
        (self.resync_ack.load(Acquire) == after_round.wrapping_add(1))
            .then(|| self.resync_digest.load(Relaxed))
    }

    /// Takes the follower serving now out of service: a follower core created before this
    /// call returns [`crate::follower::FollowerExit::Retired`] at its next look at the pair
    /// and posts nothing more (a hung core that comes back cannot disturb its successor).
    pub fn retire_follower(&self) {
        self.follower_gen.fetch_add(1, AcqRel);
    }

    /// The follower generation ([`Pair::retire_follower`] calls so far).
    pub fn follower_generation(&self) -> u64 {
        self.follower_gen.load(Acquire)
    }

    /// Leader promotion, the handshake's last step on the old leader: it has stopped touching
    /// the pair (and everything it shares with its successor) after `round`, the escalated
    /// transaction that nothing committed. The follower serving now returns
    /// [`crate::follower::FollowerExit::Promote`] at its next look at the pair and becomes
    /// the leader (see `LeaderCore::promoted`).
    pub fn step_down_leader(&self, round: u64) {
        self.promote.store(round.wrapping_add(1), Release);
    }

    /// The round after which the leader stepped down, if it did.
    pub fn promotion_request(&self) -> Option<u64> {
        match self.promote.load(Acquire) {
            0 => None,
            r => Some(r.wrapping_sub(1)),
        }
    }

    /// The promoted core took over as leader: the request is consumed (a spare that later
    /// follows it does not see it).
    pub fn ack_promotion(&self, round: u64) {
        let _ = self
            .promote
            .compare_exchange(round.wrapping_add(1), 0, AcqRel, Relaxed);
    }

    /// Asks every core serving this pair to return.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Release);
    }

    /// Whether the other core of the pair has posted for `round` already, seen after this
    /// core's own post: of two cores that each post and then ask, at least one sees the
    /// other's post (the fence orders each core's post before its look), so when the
    /// second poster wakes the coordinator, it is woken once per round and finds both.
    pub fn other_posted(&self, mine: Role, round: u64) -> bool {
        fence(SeqCst);
        match mine {
            Role::Leader => self.follower.read(round).is_some(),
            _ => self.leader.read(round).is_some(),
        }
    }

    /// The leader decides rounds itself from now on (its coordinator core missed a
    /// deadline): the follower's post must wake the leader then.
    pub fn set_leader_decides(&self) {
        self.leader_decides.store(true, Release);
    }

    /// Whether the leader decides rounds itself ([`Pair::set_leader_decides`]).
    pub fn leader_decides(&self) -> bool {
        self.leader_decides.load(Acquire)
    }

    /// True once [`Pair::shut_down`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shutdown.load(Acquire)
    }

    /// Fault injection: orders the follower to suffer `f` in `round` (written by the leader
    /// before it opens the round; the channel's Release publication carries it).
    pub fn order_fault(&self, round: u64, f: &Fault) {
        let kind = FaultKind::ALL
            .iter()
            .position(|k| *k == f.kind)
            .unwrap_or(0) as u64
            + 1;
        self.order_bit.store(f.bit, Relaxed);
        self.order.store(
            (round & 0xffff_ffff)
                | kind << 32
                | (f.late as u64) << 40
                | (f.value_index as u64 & 0xff) << 48,
            Relaxed,
        );
    }

    /// The fault ordered for `round`, if any (read by the follower after it saw the round).
    pub fn ordered_fault(&self, round: u64) -> Option<Fault> {
        let w = self.order.load(Relaxed);
        if w & 0xffff_ffff != round & 0xffff_ffff {
            return None;
        }
        let kind = *FaultKind::ALL.get(((w >> 32) & 0xff).checked_sub(1)? as usize)?;
        Some(Fault {
            kind,
            target: Role::Follower,
            value_index: ((w >> 48) & 0xff) as u32,
            bit: self.order_bit.load(Relaxed),
            late: (w >> 40) & 1 == 1,
        })
    }

    /// The post slot written by `role` (the coordinator has none: it gets the leader's).
    pub fn slot(&self, role: Role) -> &PostSlot {
        match role {
            Role::Follower => &self.follower,
            _ => &self.leader,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Host(std::time::Instant);
    impl Clock for Host {
        fn now(&self) -> u64 {
            self.0.elapsed().as_nanos() as u64
        }
    }
    impl Idle for Host {
        fn idle(&self) {
            std::thread::yield_now();
        }
    }

    #[test]
    fn slots_are_cache_line_aligned() {
        assert_eq!(core::mem::align_of::<PostSlot>(), 64);
        assert_eq!(core::mem::align_of::<DecisionSlot>(), 64);
    }

    #[test]
    fn post_slot_round_tagging() {
        let s = PostSlot::default();
        let p = Post {
            digest: TxDigest {
                writes: 1,
                effects: 2,
            },
            status: ExecStatus::Ok,
        };
        assert_eq!(s.read(1), None);
        s.post(1, p);
        assert_eq!(s.read(1), Some(p));
        assert_eq!(s.read(2), None);
        s.flip_digest_bit(0);
        assert_ne!(s.read(1), Some(p));
    }

    #[test]
    fn decision_words_and_history() {
        for d in [
            Decision::Commit,
            Decision::Retry,
            Decision::Abort,
            Decision::Escalate(None),
            Decision::Escalate(Some(Role::Follower)),
        ] {
            assert_eq!(Decision::from_word(d.to_word()), Some(d));
        }
        assert_eq!(Decision::from_word(0), None);
        let s = DecisionSlot::default();
        assert_eq!(s.read(1), None);
        s.post(1, Decision::Retry);
        assert_eq!(s.read(1), Some(Decision::Retry));
        s.post(2, Decision::Commit);
        s.post(3, Decision::Retry);
        assert_eq!(s.read(2), Some(Decision::Commit), "a commit is remembered");
        assert_eq!(
            s.read(1),
            Some(Decision::Retry),
            "an older uncommitted round was rolled back"
        );
        assert_eq!(s.read(3), Some(Decision::Retry));
        assert_eq!(s.read(4), None);
        // Two deciders of one round (a slow coordinator core and the leader that gave up on
        // it): the first decision stands, the second is told what it is.
        assert_eq!(s.post(4, Decision::Retry), Decision::Retry);
        assert_eq!(s.post(4, Decision::Commit), Decision::Retry);
        assert_eq!(s.read(4), Some(Decision::Retry));
        assert_eq!(s.post(5, Decision::Commit), Decision::Commit);
        assert_eq!(
            s.post(4, Decision::Commit),
            Decision::Retry,
            "late for an old round"
        );
    }

    #[test]
    fn channel_streams_words_across_threads_and_detects_supersession() {
        let pair = Arc::new(Pair::new(1000));
        let p2 = pair.clone();
        let reader = std::thread::spawn(move || {
            let h = Host(std::time::Instant::now());
            loop {
                if p2.input.published().0 == 1 {
                    break;
                }
                std::thread::yield_now();
            }
            let mut r = ChannelReader::new(&p2.input, 1, u64::MAX, &h, &h, WaitStrategy::default());
            let v: Vec<u64> = (0..500).map(|_| r.next_word().unwrap()).collect();
            (v, p2.input.is_current(1))
        });
        let mut w = pair.input.begin(1);
        for i in 0..500u64 {
            assert!(w.push_word(i * 3));
        }
        let (v, current) = reader.join().unwrap();
        assert_eq!(v, (0..500u64).map(|i| i * 3).collect::<Vec<_>>());
        assert!(current);
        let _ = pair.input.begin(2);
        assert!(!pair.input.is_current(1));
        let h = Host(std::time::Instant::now());
        let mut r = ChannelReader::new(&pair.input, 1, u64::MAX, &h, &h, WaitStrategy::default());
        assert_eq!(r.next_word(), None, "a superseded round yields nothing");
        let now = h.now();
        let mut r = ChannelReader::new(
            &pair.input,
            2,
            now + 1_000_000,
            &h,
            &h,
            WaitStrategy { spins: 10 },
        );
        assert_eq!(r.next_word(), None, "deadline");
    }

    #[test]
    fn fault_orders_are_round_tagged() {
        let p = Pair::new(4);
        let f = Fault {
            kind: FaultKind::Effects,
            target: Role::Follower,
            value_index: 3,
            bit: 0x1234_5678_9abc,
            late: true,
        };
        assert!(p.ordered_fault(1).is_none());
        p.order_fault(7, &f);
        assert_eq!(p.ordered_fault(7), Some(f));
        assert!(p.ordered_fault(8).is_none());
    }

    #[test]
    fn channel_overflow_refused() {
        let ch = InputChannel::new(2);
        let mut w = ch.begin(1);
        assert!(w.push_word(1) && w.push_word(2));
        assert!(!w.push_word(3));
        // A batch that does not fit: what fits is published, the rest refused.
        let ch = InputChannel::new(3);
        let mut w = ch.begin(4);
        assert!(w.push_word(7));
        assert!(!w.push_words(&[8, 9, 10]));
        assert_eq!(ch.published(), (4, 3));
        assert!(!w.push_words(&[11]));
        assert!(w.push_words(&[]));
    }

    #[test]
    fn a_batch_is_published_at_once_and_read_in_order() {
        let ch = InputChannel::new(8);
        let mut w = ch.begin(2);
        assert!(w.push_word(3));
        assert_eq!(ch.published(), (2, 1));
        assert!(w.push_words(&[10, 11, 12]));
        assert_eq!(ch.published(), (2, 4));
        let h = Host(std::time::Instant::now());
        let mut r = ChannelReader::new(&ch, 2, u64::MAX, &h, &h, WaitStrategy::default());
        let got: Vec<u64> = (0..4).map_while(|_| r.next_word()).collect();
        assert_eq!(got, [3, 10, 11, 12]);
    }
}
