//! The input log: everything nondeterministic a handler consumes (the request words — exit
//! reason and guest registers —, time, random numbers, remote state, guest memory reads),
//! recorded by the leader and replayed identically to the follower.
//!
//! Log format, one u64 word at a time: `[request_len, request words..., records...]`, a
//! record being `[VALUE_TAG | kind, value]`, `[READ_TAG | ok << 32 | len, addr, data words]`
//! `[PROBE_TAG | ok << 32 | len, addr]` (a write-permission probe) or
//! `[MACHINE_TAG | ok << 32 | len, maddr, data words]` (a read of machine memory).
//! A replaying handler that asks for something other than what the leader recorded (another
//! kind, address or length) poisons its execution: the engine treats it as a disagreement.

use alloc::vec::Vec;
use core::any::Any;

const VALUE_TAG: u64 = 0x56 << 56;
const READ_TAG: u64 = 0x52 << 56;
const PROBE_TAG: u64 = 0x50 << 56;
const MACHINE_TAG: u64 = 0x4d << 56;
const TAG_MASK: u64 = 0xff << 56;

/// The embedder's source of nondeterminism, used by the leader (and in single mode).
pub trait Env {
    /// A nondeterministic value of kind `kind` (time, random, remote state...).
    fn value(&mut self, kind: u32) -> u64;
    /// Copies guest memory at `addr` into `buf`; `false` if the address is bad (EFAULT).
    fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool;
    /// Copies machine (host-physical) memory at `maddr` into `buf` — page tables, shared
    /// pages — for handlers that validate guest structures by machine address; `false` if
    /// the range is not RAM the embedder lets handlers read. The default has no machine
    /// memory.
    fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> bool {
        let _ = (maddr, buf);
        false
    }
    /// Whether `len` bytes at `addr` may be written by the guest-memory writes a handler
    /// emits (copy_to_guest's check). The default, for environments without write
    /// protection, is "writable where readable".
    fn probe_write(&mut self, addr: u64, len: usize) -> bool {
        let mut scratch = [0u8; 64];
        let mut done = 0usize;
        while done < len {
            let n = (len - done).min(scratch.len());
            if !self.read_guest(addr.wrapping_add(done as u64), &mut scratch[..n]) {
                return false;
            }
            done += n;
        }
        true
    }
}

/// Why an input request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputError {
    /// The guest address was bad (the guest gets -EFAULT; not an engine failure).
    Fault,
    /// Replay asked for something the leader did not record: the executions diverged.
    Diverged,
    /// The input log is full.
    Overflow,
    /// The recorded words did not arrive in time, or the round was superseded.
    Unavailable,
}

/// Where recorded words go.
pub trait WordSink {
    /// Appends one word; `false` when full.
    fn push_word(&mut self, w: u64) -> bool;

    /// Appends `ws` in order; `false` when full (the words that fitted are appended). A
    /// transport may publish them together.
    fn push_words(&mut self, ws: &[u64]) -> bool {
        ws.iter().all(|&w| self.push_word(w))
    }
}

/// Where replayed words come from.
pub trait WordSource {
    /// The next word; `None` if it does not arrive (deadline, superseded round, end).
    fn next_word(&mut self) -> Option<u64>;
}

/// A bounded in-memory input log (the single-core and local-mode transport).
#[derive(Clone, Debug)]
pub struct InputLog {
    words: Vec<u64>,
    capacity: usize,
}

impl InputLog {
    /// An empty log holding at most `capacity` words.
    pub fn new(capacity: usize) -> Self {
        Self {
            words: Vec::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    /// Empties the log.
    pub fn clear(&mut self) {
        self.words.clear();
    }

    /// The recorded words.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// A replay cursor at the start of the log.
    pub fn reader(&self) -> LogReader<'_> {
        LogReader {
            words: &self.words,
            pos: 0,
        }
    }

    /// Flips one bit of one recorded word (fault injection: corruption in flight).
    pub fn flip_bit(&mut self, bit: u64) {
        if self.words.is_empty() {
            return;
        }
        let i = (bit / 64) as usize % self.words.len();
        self.words[i] ^= 1 << (bit % 64);
    }
}

impl WordSink for InputLog {
    fn push_word(&mut self, w: u64) -> bool {
        if self.words.len() >= self.capacity {
            return false;
        }
        self.words.push(w);
        true
    }
}

/// Replay cursor over an [`InputLog`].
#[derive(Clone, Debug)]
pub struct LogReader<'a> {
    words: &'a [u64],
    pos: usize,
}

impl<'a> LogReader<'a> {
    /// A cursor over recorded words.
    pub fn from_words(words: &'a [u64]) -> Self {
        Self { words, pos: 0 }
    }
}

impl WordSource for LogReader<'_> {
    fn next_word(&mut self) -> Option<u64> {
        let w = *self.words.get(self.pos)?;
        self.pos += 1;
        Some(w)
    }
}

/// Records the request at the head of a log.
pub fn record_request(sink: &mut dyn WordSink, request: &[u64]) -> Result<(), InputError> {
    // The request as one batch after its length: a channel publishes it with one store
    // instead of one per word (the follower's core polls that line).
    if !sink.push_word(request.len() as u64) || !sink.push_words(request) {
        return Err(InputError::Overflow);
    }
    Ok(())
}

/// Reads the request from the head of a log into `buf` (cleared first).
pub fn replay_request(
    src: &mut dyn WordSource,
    buf: &mut Vec<u64>,
    max_len: usize,
) -> Result<(), InputError> {
    buf.clear();
    let n = src.next_word().ok_or(InputError::Unavailable)?;
    if n > max_len as u64 {
        return Err(InputError::Diverged);
    }
    for _ in 0..n {
        buf.push(src.next_word().ok_or(InputError::Unavailable)?);
    }
    Ok(())
}

/// The environment of a re-execution: answers every question the earlier attempt asked,
/// in the same order, from that attempt's log (so a retry sees the same world, as the
/// transaction's inputs were captured once); from the first question that differs on, it
/// asks the real environment.
pub struct MemoEnv<'a> {
    words: &'a [u64],
    pos: usize,
    env: &'a mut dyn Env,
    diverged: bool,
}

impl<'a> MemoEnv<'a> {
    /// A memo over `log` (a complete log, request header included) in front of `env`.
    pub fn new(log: &'a [u64], env: &'a mut dyn Env) -> Self {
        let skip = log.first().map_or(0, |&n| n as usize + 1);
        Self {
            words: log,
            pos: skip,
            env,
            diverged: false,
        }
    }

    fn word(&self, i: usize) -> Option<u64> {
        self.words.get(self.pos + i).copied()
    }

    /// Answers a read (`tag`: guest or machine) from the memo if it is the next record;
    /// `None` (and no more memo answers) once the questions differ.
    fn replay_read(&mut self, tag: u64, addr: u64, buf: &mut [u8]) -> Option<bool> {
        if !self.diverged {
            if let (Some(h), Some(a)) = (self.word(0), self.word(1)) {
                let ok = (h >> 32) & 1 == 1;
                let n = if ok { buf.len().div_ceil(8) } else { 0 };
                if h & TAG_MASK == tag
                    && h & 0xffff_ffff == buf.len() as u64
                    && a == addr
                    && self.pos + 2 + n <= self.words.len()
                {
                    for (i, chunk) in buf.chunks_mut(8).enumerate().take(n) {
                        let w = self.words[self.pos + 2 + i].to_le_bytes();
                        let len = chunk.len();
                        chunk.copy_from_slice(&w[..len]);
                    }
                    self.pos += 2 + n;
                    return Some(ok);
                }
            }
        }
        self.diverged = true;
        None
    }
}

impl Env for MemoEnv<'_> {
    fn value(&mut self, kind: u32) -> u64 {
        if !self.diverged && self.word(0) == Some(VALUE_TAG | kind as u64) {
            if let Some(v) = self.word(1) {
                self.pos += 2;
                return v;
            }
        }
        self.diverged = true;
        self.env.value(kind)
    }

    fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        if let Some(ok) = self.replay_read(READ_TAG, addr, buf) {
            return ok;
        }
        self.env.read_guest(addr, buf)
    }

    fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> bool {
        if let Some(ok) = self.replay_read(MACHINE_TAG, maddr, buf) {
            return ok;
        }
        self.env.read_machine(maddr, buf)
    }

    fn probe_write(&mut self, addr: u64, len: usize) -> bool {
        if !self.diverged {
            if let (Some(h), Some(a)) = (self.word(0), self.word(1)) {
                if h & TAG_MASK == PROBE_TAG && h & 0xffff_ffff == len as u64 && a == addr {
                    self.pos += 2;
                    return (h >> 32) & 1 == 1;
                }
            }
        }
        self.diverged = true;
        self.env.probe_write(addr, len)
    }
}

enum Mode<'a> {
    Direct(&'a mut dyn Env),
    Record(&'a mut dyn Env, &'a mut dyn WordSink),
    Replay(&'a mut dyn WordSource),
}

/// A handler's view of its inputs for one execution.
pub struct Input<'a> {
    mode: Mode<'a>,
    request: &'a [u64],
    /// The request as the embedder holds it, when it handed it over typed and no words
    /// were made (a single execution: see [`crate::engine::TypedRequest`]).
    typed: Option<&'a dyn Any>,
    reads: u32,
    flip: Option<(u32, u32)>,
    poison: Option<InputError>,
}

impl<'a> Input<'a> {
    /// Single execution (lockstep off): values come straight from `env`, nothing is logged.
    pub fn direct(request: &'a [u64], env: &'a mut dyn Env) -> Self {
        Self::with_mode(request, Mode::Direct(env))
    }

    /// Leader execution: values come from `env` and are appended to `sink` (the request is
    /// expected to be recorded already, see [`record_request`]).
    pub fn record(request: &'a [u64], env: &'a mut dyn Env, sink: &'a mut dyn WordSink) -> Self {
        Self::with_mode(request, Mode::Record(env, sink))
    }

    /// Follower execution: values come from the leader's log.
    pub fn replay(request: &'a [u64], src: &'a mut dyn WordSource) -> Self {
        Self::with_mode(request, Mode::Replay(src))
    }

    fn with_mode(request: &'a [u64], mode: Mode<'a>) -> Self {
        Self {
            mode,
            request,
            typed: None,
            reads: 0,
            flip: None,
            poison: None,
        }
    }

    /// Fault injection: flip bit `bit % 64` of this core's copy of the `index`-th value it
    /// reads (a register upset during the handler). The recorded log is not affected.
    pub fn inject_flip(&mut self, index: u32, bit: u32) {
        self.flip = Some((index, bit % 64));
    }

    /// Single execution of a request the embedder holds typed: [`Input::typed`] gives it
    /// back, [`Input::request`] is empty (no words were made).
    pub fn direct_typed(request: &'a dyn Any, env: &'a mut dyn Env) -> Self {
        let mut input = Self::with_mode(&[], Mode::Direct(env));
        input.typed = Some(request);
        input
    }

    /// The request words (exit reason, guest registers...); empty for a request handed over
    /// typed ([`Input::direct_typed`]).
    pub fn request(&self) -> &[u64] {
        self.request
    }

    /// The request as the embedder's type `T`, if it was handed over typed (then there are
    /// no words to decode).
    pub fn typed<T: Any>(&self) -> Option<&'a T> {
        self.typed.and_then(|t| t.downcast_ref::<T>())
    }

    /// Why this execution's input broke down, if it did (divergence, overflow, missing data).
    pub fn poisoned(&self) -> Option<InputError> {
        self.poison
    }

    fn fail(&mut self, e: InputError) -> InputError {
        if e != InputError::Fault && self.poison.is_none() {
            self.poison = Some(e);
        }
        e
    }

    fn next_flip(&mut self, v: u64) -> u64 {
        let i = self.reads;
        self.reads = self.reads.wrapping_add(1);
        match self.flip {
            Some((idx, bit)) if idx == i => v ^ (1 << bit),
            _ => v,
        }
    }

    /// A nondeterministic value of kind `kind` (kind < 2^32).
    pub fn value(&mut self, kind: u32) -> Result<u64, InputError> {
        if let Some(p) = self.poison {
            return Err(p);
        }
        let v = match &mut self.mode {
            Mode::Direct(env) => env.value(kind),
            Mode::Record(env, sink) => {
                let v = env.value(kind);
                if !(sink.push_word(VALUE_TAG | kind as u64) && sink.push_word(v)) {
                    return Err(self.fail(InputError::Overflow));
                }
                v
            }
            Mode::Replay(src) => {
                let hdr = src.next_word();
                let val = src.next_word();
                match (hdr, val) {
                    (Some(h), Some(v)) if h == VALUE_TAG | kind as u64 => v,
                    (Some(_), Some(_)) => return Err(self.fail(InputError::Diverged)),
                    _ => return Err(self.fail(InputError::Unavailable)),
                }
            }
        };
        Ok(self.next_flip(v))
    }

    /// Whether `len` bytes at `addr` are writable (copy_to_guest's check): `Ok(false)` if not.
    pub fn probe_write(&mut self, addr: u64, len: usize) -> Result<bool, InputError> {
        if let Some(p) = self.poison {
            return Err(p);
        }
        if len > u32::MAX as usize {
            return Err(self.fail(InputError::Overflow));
        }
        match &mut self.mode {
            Mode::Direct(env) => Ok(env.probe_write(addr, len)),
            Mode::Record(env, sink) => {
                let ok = env.probe_write(addr, len);
                let hdr = PROBE_TAG | (ok as u64) << 32 | len as u64;
                if !(sink.push_word(hdr) && sink.push_word(addr)) {
                    return Err(self.fail(InputError::Overflow));
                }
                Ok(ok)
            }
            Mode::Replay(src) => {
                let (Some(hdr), Some(a)) = (src.next_word(), src.next_word()) else {
                    return Err(self.fail(InputError::Unavailable));
                };
                if hdr & TAG_MASK != PROBE_TAG || hdr & 0xffff_ffff != len as u64 || a != addr {
                    return Err(self.fail(InputError::Diverged));
                }
                Ok((hdr >> 32) & 1 == 1)
            }
        }
    }

    /// Copies guest memory (copy_from_guest): `Err(Fault)` for a bad address.
    pub fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), InputError> {
        self.read_tagged(READ_TAG, addr, buf)
    }

    /// Copies machine memory (page tables, shared pages): `Err(Fault)` if not readable.
    pub fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> Result<(), InputError> {
        self.read_tagged(MACHINE_TAG, maddr, buf)
    }

    fn read_tagged(&mut self, tag: u64, addr: u64, buf: &mut [u8]) -> Result<(), InputError> {
        if let Some(p) = self.poison {
            return Err(p);
        }
        if buf.len() > u32::MAX as usize {
            return Err(self.fail(InputError::Overflow));
        }
        let ok = match &mut self.mode {
            Mode::Direct(env) => env_read(&mut **env, tag, addr, buf),
            Mode::Record(env, sink) => {
                let ok = env_read(&mut **env, tag, addr, buf);
                let hdr = tag | (ok as u64) << 32 | buf.len() as u64;
                let mut fine = sink.push_word(hdr) && sink.push_word(addr);
                if ok {
                    for chunk in buf.chunks(8) {
                        let mut w = [0u8; 8];
                        w[..chunk.len()].copy_from_slice(chunk);
                        fine = fine && sink.push_word(u64::from_le_bytes(w));
                    }
                }
                if !fine {
                    return Err(self.fail(InputError::Overflow));
                }
                ok
            }
            Mode::Replay(src) => {
                let (Some(hdr), Some(a)) = (src.next_word(), src.next_word()) else {
                    return Err(self.fail(InputError::Unavailable));
                };
                if hdr & TAG_MASK != tag || hdr & 0xffff_ffff != buf.len() as u64 || a != addr {
                    return Err(self.fail(InputError::Diverged));
                }
                let ok = (hdr >> 32) & 1 == 1;
                if ok {
                    for chunk in buf.chunks_mut(8) {
                        let Some(w) = src.next_word() else {
                            return Err(self.fail(InputError::Unavailable));
                        };
                        let n = chunk.len();
                        chunk.copy_from_slice(&w.to_le_bytes()[..n]);
                    }
                }
                ok
            }
        };
        if !ok {
            return Err(InputError::Fault);
        }
        if let Some(first) = buf.first_mut() {
            // A register upset on the value just read lands in its first byte(s).
            let w = self.next_flip(*first as u64);
            *first = w as u8;
        }
        Ok(())
    }
}

fn env_read(env: &mut dyn Env, tag: u64, addr: u64, buf: &mut [u8]) -> bool {
    if tag == MACHINE_TAG {
        env.read_machine(addr, buf)
    } else {
        env.read_guest(addr, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestEnv {
        t: u64,
    }
    impl Env for TestEnv {
        fn value(&mut self, kind: u32) -> u64 {
            self.t += 1;
            self.t * 100 + kind as u64
        }
        fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
            if addr >= 0x1000 {
                return false;
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (addr as usize + i) as u8;
            }
            true
        }
    }

    fn handler(inp: &mut Input<'_>) -> Result<(u64, u64, [u8; 11]), InputError> {
        let a = inp.value(1)? + inp.request()[0];
        let b = inp.value(2)?;
        let mut buf = [0u8; 11];
        inp.read_guest(0x10, &mut buf)?;
        assert_eq!(
            inp.read_guest(0x5000, &mut [0u8; 3]),
            Err(InputError::Fault)
        );
        Ok((a, b, buf))
    }

    #[test]
    fn replay_returns_what_leader_recorded() {
        let mut env = TestEnv { t: 0 };
        let mut log = InputLog::new(64);
        let req = [7u64, 8];
        record_request(&mut log, &req).unwrap();
        let leader = {
            let mut inp = Input::record(&req, &mut env, &mut log);
            handler(&mut inp).unwrap()
        };
        let mut rd = log.reader();
        let mut rq = Vec::new();
        replay_request(&mut rd, &mut rq, 16).unwrap();
        assert_eq!(rq, req);
        let mut inp = Input::replay(&rq, &mut rd);
        assert_eq!(handler(&mut inp).unwrap(), leader);
        assert!(inp.poisoned().is_none());
        assert_eq!(rd.next_word(), None, "the whole log was consumed");
    }

    #[test]
    fn memo_answers_the_same_questions_then_falls_through() {
        let mut env = TestEnv { t: 0 };
        let mut log = InputLog::new(64);
        record_request(&mut log, &[1]).unwrap();
        let first = {
            let mut inp = Input::record(&[1], &mut env, &mut log);
            handler(&mut inp).unwrap()
        };
        let mut memo = MemoEnv::new(log.words(), &mut env);
        let mut log2 = InputLog::new(64);
        let again = {
            let mut inp = Input::record(&[1], &mut memo, &mut log2);
            handler(&mut inp).unwrap()
        };
        assert_eq!(first, again, "a re-execution sees the same values");
        assert_eq!(memo.value(1), 301, "past the memo: the real environment");
        let mut memo = MemoEnv::new(log.words(), &mut env);
        assert_eq!(memo.value(2), 402, "a different question diverges at once");
        assert_eq!(memo.value(1), 501);
    }

    #[test]
    fn divergent_request_poisons_replay() {
        let mut env = TestEnv { t: 0 };
        let mut log = InputLog::new(64);
        {
            let mut inp = Input::record(&[], &mut env, &mut log);
            inp.value(1).unwrap();
        }
        let mut rd = log.reader();
        let mut inp = Input::replay(&[], &mut rd);
        assert_eq!(inp.value(2), Err(InputError::Diverged));
        assert_eq!(inp.value(1), Err(InputError::Diverged), "poison sticks");
        assert_eq!(inp.poisoned(), Some(InputError::Diverged));
        let empty = InputLog::new(1);
        let mut short = empty.reader();
        let mut inp = Input::replay(&[], &mut short);
        assert_eq!(inp.value(1), Err(InputError::Unavailable));
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let mut env = TestEnv { t: 0 };
        let mut log = InputLog::new(3);
        let mut inp = Input::record(&[], &mut env, &mut log);
        inp.value(1).unwrap();
        assert_eq!(inp.value(1), Err(InputError::Overflow));
        assert_eq!(inp.poisoned(), Some(InputError::Overflow));
        let mut small = InputLog::new(1);
        assert_eq!(
            record_request(&mut small, &[1, 2]),
            Err(InputError::Overflow)
        );
    }

    #[test]
    fn injected_flip_hits_only_this_core() {
        let mut env = TestEnv { t: 0 };
        let mut log = InputLog::new(16);
        let mut inp = Input::record(&[], &mut env, &mut log);
        inp.inject_flip(1, 3);
        let a = inp.value(1).unwrap();
        let b = inp.value(1).unwrap();
        assert_eq!(a, 101);
        assert_eq!(b, 201 ^ 8);
        assert_eq!(log.words()[3], 201, "the log keeps the true value");
    }
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    /// Memory where [0, 0x1000) is readable and only [0, 0x800) writable.
    struct RoEnv;
    impl Env for RoEnv {
        fn value(&mut self, _kind: u32) -> u64 {
            0
        }
        fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
            addr.checked_add(buf.len() as u64)
                .is_some_and(|e| e <= 0x1000)
        }
        fn probe_write(&mut self, addr: u64, len: usize) -> bool {
            addr.checked_add(len as u64).is_some_and(|e| e <= 0x800)
        }
    }

    #[test]
    fn probes_are_recorded_and_replayed() {
        let mut env = RoEnv;
        let mut log = InputLog::new(64);
        let req = [1u64];
        record_request(&mut log, &req).unwrap();
        let leader = {
            let mut inp = Input::record(&req, &mut env, &mut log);
            (
                inp.probe_write(0x100, 8).unwrap(),
                inp.probe_write(0x900, 8).unwrap(),
            )
        };
        assert_eq!(leader, (true, false));
        let mut rd = log.reader();
        let mut rq = Vec::new();
        replay_request(&mut rd, &mut rq, 4).unwrap();
        let mut inp = Input::replay(&rq, &mut rd);
        assert_eq!(
            (
                inp.probe_write(0x100, 8).unwrap(),
                inp.probe_write(0x900, 8).unwrap()
            ),
            leader
        );
        assert!(inp.poisoned().is_none());
    }

    #[test]
    fn a_different_probe_on_replay_is_divergence() {
        let mut env = RoEnv;
        let mut log = InputLog::new(64);
        record_request(&mut log, &[1]).unwrap();
        Input::record(&[1], &mut env, &mut log)
            .probe_write(0x100, 8)
            .unwrap();
        let mut rd = log.reader();
        let mut rq = Vec::new();
        replay_request(&mut rd, &mut rq, 4).unwrap();
        let mut inp = Input::replay(&rq, &mut rd);
        assert_eq!(inp.probe_write(0x108, 8), Err(InputError::Diverged));
        assert_eq!(inp.poisoned(), Some(InputError::Diverged));
    }

    #[test]
    fn machine_reads_are_logged_apart_from_guest_reads() {
        struct Mach;
        impl Env for Mach {
            fn value(&mut self, _kind: u32) -> u64 {
                0
            }
            fn read_guest(&mut self, _addr: u64, _buf: &mut [u8]) -> bool {
                false
            }
            fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> bool {
                buf.iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b = (maddr as u8).wrapping_add(i as u8));
                true
            }
        }
        let mut log = InputLog::new(64);
        record_request(&mut log, &[1]).unwrap();
        let mut leader = [0u8; 12];
        Input::record(&[1], &mut Mach, &mut log)
            .read_machine(0x40, &mut leader)
            .unwrap();
        assert_eq!(leader[0], 0x40);
        let replay = |guest: bool| {
            let mut rd = log.reader();
            let mut rq = Vec::new();
            replay_request(&mut rd, &mut rq, 4).unwrap();
            let mut inp = Input::replay(&rq, &mut rd);
            let mut b = [0u8; 12];
            let r = if guest {
                inp.read_guest(0x40, &mut b)
            } else {
                inp.read_machine(0x40, &mut b)
            };
            (r, b)
        };
        assert_eq!(replay(false), (Ok(()), leader));
        assert_eq!(replay(true).0, Err(InputError::Diverged));
        assert!(!Plainless.read_machine(0, &mut [0u8; 1]));
    }

    struct Plainless;
    impl Env for Plainless {
        fn value(&mut self, _kind: u32) -> u64 {
            0
        }
        fn read_guest(&mut self, _addr: u64, _buf: &mut [u8]) -> bool {
            true
        }
    }

    #[test]
    fn default_probe_is_readability() {
        struct Plain;
        impl Env for Plain {
            fn value(&mut self, _kind: u32) -> u64 {
                0
            }
            fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
                addr + buf.len() as u64 <= 100
            }
        }
        assert!(Plain.probe_write(0, 100));
        assert!(!Plain.probe_write(0, 101));
    }
}
