//! A small model hypervisor used by the tests, the benchmark and the injection campaign: a
//! table of domains, a global counter cell and an event log, a handful of hypercall-like
//! operations that read time, random numbers and guest memory through the input log, and
//! emit register / guest-memory / event effects. It shows how a real state plugs in.

use crate::containers::{JMap, JVec};
use crate::inject::Prng;
use crate::input::{Env, Input, InputError};
use crate::journal::JCell;
use crate::machine::{Machine, TxCtx};
use crate::role::Clock;
use core::sync::atomic::{AtomicU64, Ordering};

/// Value kinds the model asks the environment for.
pub mod kind {
    /// Current time.
    pub const TIME: u32 = 1;
    /// A random number.
    pub const RANDOM: u32 = 2;
}

/// Operation codes (request word 0).
pub mod ops {
    /// Create domain `arg0` with `arg1` pages.
    pub const CREATE: u64 = 0;
    /// Destroy domain `arg0`.
    pub const DESTROY: u64 = 1;
    /// Give domain `arg0` `arg1` more pages (stamps the time).
    pub const GROW: u64 = 2;
    /// Raise event port `arg1` of domain `arg0`.
    pub const EVENT: u64 = 3;
    /// Read 8 bytes of guest memory at `arg0` into the domain's scratch and RAX.
    pub const PEEK: u64 = 4;
    /// Sum the pages of all domains into RAX.
    pub const SUM: u64 = 5;
    /// Mix a random number into the global seed.
    pub const RANDOM: u64 = 6;
    /// Fail fatally when `arg0 == 0xdead` (a hypervisor-internal error).
    pub const FATAL: u64 = 7;
}

/// Xen errno values used by the model.
pub mod errno {
    /// No such domain.
    pub const ESRCH: i64 = -3;
    /// Bad address.
    pub const EFAULT: i64 = -14;
    /// Already exists.
    pub const EEXIST: i64 = -17;
    /// Unknown operation.
    pub const ENOSYS: i64 = -38;
}

/// A model domain.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Domain {
    /// Domain id.
    pub id: u32,
    /// Pages owned.
    pub pages: u64,
    /// Pending event bitmap.
    pub pending: u64,
    /// Time of the last change.
    pub stamp: u64,
    /// Last guest word read.
    pub scratch: u64,
}
crate::impl_value!(Domain {
    id,
    pages,
    pending,
    stamp,
    scratch
});

/// The model's replica state.
#[derive(Clone, Debug)]
pub struct ModelState {
    /// Domains by id.
    pub domains: JMap<u32, Domain>,
    /// (transactions, random seed).
    pub globals: JCell<(u64, u64)>,
    /// Raised events as `domain << 32 | port`.
    pub events: JVec<u64>,
}
crate::impl_replica_state!(ModelState {
    domains,
    globals,
    events
});

impl ModelState {
    /// An empty state.
    pub fn new() -> Self {
        Self {
            domains: JMap::new(1),
            globals: JCell::new(2, (0, 0)),
            events: JVec::new(3),
        }
    }
}

impl Default for ModelState {
    fn default() -> Self {
        Self::new()
    }
}

/// A model effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Set the guest's RAX.
    SetRax(u64),
    /// Write a guest word.
    GuestWrite(u64, u64),
    /// Deliver an event.
    Event(u32, u32),
}

impl crate::Value for Effect {
    fn digest(&self, h: &mut crate::Hasher) {
        match *self {
            Effect::SetRax(v) => {
                h.write_u8(0);
                h.write_u64(v);
            }
            Effect::GuestWrite(a, v) => {
                h.write_u8(1);
                h.write_u64(a);
                h.write_u64(v);
            }
            Effect::Event(d, p) => {
                h.write_u8(2);
                h.write_u32(d);
                h.write_u32(p);
            }
        }
    }
    fn bit_len(&self) -> u64 {
        match self {
            Effect::SetRax(_) => 64,
            Effect::GuestWrite(..) => 128,
            Effect::Event(..) => 64,
        }
    }
    fn flip_bit(&mut self, bit: u64) {
        match self {
            Effect::SetRax(v) => v.flip_bit(bit),
            Effect::GuestWrite(a, v) => {
                let mut t = (*a, *v);
                t.flip_bit(bit);
                (*a, *v) = t;
            }
            Effect::Event(d, p) => {
                let mut t = (*d, *p);
                t.flip_bit(bit);
                (*d, *p) = t;
            }
        }
    }
}

/// A hypervisor-internal failure of the model (or an input breakdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelError(pub u32);
crate::impl_value!(ModelError { 0 });

/// The model machine.
#[derive(Debug)]
pub struct Model;

fn rax(v: i64) -> Effect {
    Effect::SetRax(v as u64)
}

fn input_err(e: InputError) -> ModelError {
    ModelError(0x100 + e as u32)
}

/// A model request held typed (its three words), for [`crate::Engine::run_local_typed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelRequest(pub [u64; 3]);

impl crate::TypedRequest for ModelRequest {
    fn encode(&self, out: &mut alloc::vec::Vec<u64>) {
        out.extend_from_slice(&self.0);
    }
}

impl Machine for Model {
    type State = ModelState;
    type Effect = Effect;
    type Error = ModelError;

    fn step(
        s: &mut ModelState,
        input: &mut Input<'_>,
        tx: &mut TxCtx<'_, Effect>,
    ) -> Result<(), ModelError> {
        let typed = input.typed::<ModelRequest>().map(|t| t.0);
        let r = typed.as_ref().map_or(input.request(), |t| &t[..]);
        let (op, a0, a1) = (
            r.first().copied().unwrap_or(u64::MAX),
            r.get(1).copied().unwrap_or(0),
            r.get(2).copied().unwrap_or(0),
        );
        let id = a0 as u32;
        s.globals.update(tx.journal, |g| g.0 += 1);
        match op {
            ops::CREATE => {
                if s.domains.contains_key(&id) {
                    tx.emit(rax(errno::EEXIST));
                } else {
                    let stamp = input.value(kind::TIME).map_err(input_err)?;
                    let d = Domain {
                        id,
                        pages: a1 % 4096,
                        stamp,
                        ..Domain::default()
                    };
                    s.domains.insert(tx.journal, id, d);
                    tx.emit(rax(0));
                }
            }
            ops::DESTROY => match s.domains.remove(tx.journal, &id) {
                Some(d) => tx.emit(Effect::SetRax(d.pages)),
                None => tx.emit(rax(errno::ESRCH)),
            },
            ops::GROW => {
                let now = input.value(kind::TIME).map_err(input_err)?;
                let grown = s.domains.update(tx.journal, &id, |d| {
                    d.pages = d.pages.wrapping_add(a1 % 1024);
                    d.stamp = now;
                    d.pages
                });
                tx.emit(grown.map_or(rax(errno::ESRCH), Effect::SetRax));
            }
            ops::EVENT => {
                let port = (a1 % 64) as u32;
                if s.domains
                    .update(tx.journal, &id, |d| d.pending |= 1 << port)
                    .is_some()
                {
                    s.events.push(tx.journal, (id as u64) << 32 | port as u64);
                    if s.events.len() > 16 {
                        s.events.pop(tx.journal);
                    }
                    tx.emit(Effect::Event(id, port));
                    tx.emit(rax(0));
                } else {
                    tx.emit(rax(errno::ESRCH));
                }
            }
            ops::PEEK => {
                let mut b = [0u8; 8];
                match input.read_guest(a0, &mut b) {
                    Ok(()) => {
                        let v = u64::from_le_bytes(b);
                        let dom = (a1 % 8) as u32;
                        s.domains.update(tx.journal, &dom, |d| d.scratch = v);
                        tx.emit(Effect::GuestWrite(a0 ^ 8, v.rotate_left(7)));
                        tx.emit(Effect::SetRax(v));
                    }
                    Err(InputError::Fault) => tx.emit(rax(errno::EFAULT)),
                    Err(e) => return Err(input_err(e)),
                }
            }
            ops::SUM => {
                let total = s
                    .domains
                    .iter()
                    .map(|(_, d)| d.pages)
                    .fold(0u64, u64::wrapping_add);
                tx.emit(Effect::SetRax(total));
            }
            ops::RANDOM => {
                let x = input.value(kind::RANDOM).map_err(input_err)?;
                s.globals
                    .update(tx.journal, |g| g.1 = g.1.rotate_left(13) ^ x);
                tx.emit(Effect::SetRax(x & 0xffff));
            }
            ops::FATAL if a0 == 0xdead => return Err(ModelError(1)),
            ops::FATAL => tx.emit(rax(0)),
            _ => tx.emit(rax(errno::ENOSYS)),
        }
        Ok(())
    }
}

/// A deterministic environment: values from a PRNG seeded per transaction, guest memory a
/// pure function of the address below 1 MiB, faulting above.
#[derive(Clone, Debug)]
pub struct ModelEnv {
    prng: Prng,
    time: u64,
}

impl ModelEnv {
    /// An environment for transaction number `tx` of a run seeded `seed` (same arguments,
    /// same values: the golden run and the lockstep run see the same world).
    pub fn new(seed: u64, tx: u64) -> Self {
        Self {
            prng: Prng::new(seed ^ tx.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            time: tx * 1000,
        }
    }
}

impl Env for ModelEnv {
    fn value(&mut self, k: u32) -> u64 {
        match k {
            kind::TIME => {
                self.time += 1 + self.prng.below(10);
                self.time
            }
            _ => self.prng.next_u64(),
        }
    }
    fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        if addr >= 1 << 20 {
            return false;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (addr.wrapping_add(i as u64).wrapping_mul(0x9D) >> 3) as u8;
        }
        true
    }
}

/// A random model request `[op, arg0, arg1]` (ops weighted towards state changes).
pub fn random_request(p: &mut Prng) -> [u64; 3] {
    let op = p.below(8);
    let a0 = match op {
        ops::PEEK => {
            if p.below(8) == 0 {
                (1 << 20) + p.below(4096)
            } else {
                p.below(1 << 20)
            }
        }
        ops::FATAL => {
            if p.below(4) == 0 {
                0xdead
            } else {
                0
            }
        }
        _ => p.below(8),
    };
    [op, a0, p.next_u64()]
}

/// A logical clock that advances by one on every reading (deterministic tests and
/// campaigns; bare metal and host benchmarks use a real clock).
#[derive(Debug, Default)]
pub struct TickClock(AtomicU64);

impl TickClock {
    /// A clock at 0.
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }
}

impl Clock for TickClock {
    fn now(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Effects;
    use crate::journal::Journal;
    use crate::machine::{execute, execute_once};
    use crate::replica;

    #[test]
    fn handler_is_deterministic_and_rollback_exact() {
        let mut p = Prng::new(9);
        let mut a = ModelState::new();
        let mut b = ModelState::new();
        let (mut ja, mut jb) = (Journal::new(), Journal::new());
        let (mut ea, mut eb) = (Effects::new(), Effects::new());
        for tx in 0..300u64 {
            let req = random_request(&mut p);
            let before = replica::full_digest(&a);
            let (mut e1, mut e2) = (ModelEnv::new(1, tx), ModelEnv::new(1, tx));
            let ra = execute::<Model>(
                &mut a,
                &mut ja,
                tx + 2,
                &mut ea,
                &mut Input::direct(&req, &mut e1),
            );
            let rb = execute::<Model>(
                &mut b,
                &mut jb,
                tx + 2,
                &mut eb,
                &mut Input::direct(&req, &mut e2),
            );
            assert_eq!(ra.digest, rb.digest);
            assert_eq!(ea.as_slice(), eb.as_slice());
            if tx % 3 == 0 || ra.error.is_some() {
                replica::rollback(&mut a, tx + 2);
                replica::rollback(&mut b, tx + 2);
                assert_eq!(replica::full_digest(&a), before, "tx {tx} {req:?}");
            }
            assert_eq!(replica::full_digest(&a), replica::full_digest(&b));
        }
        assert!(!a.domains.is_empty());
    }

    /// A single execution (lockstep off) runs the same handler with the same state changes,
    /// effects, status and error as a digested one; only the digests are left out.
    #[test]
    fn single_execution_matches_a_digested_one() {
        let mut p = Prng::new(17);
        let mut a = ModelState::new();
        let mut b = ModelState::new();
        let (mut ja, mut jb) = (Journal::new(), Journal::new());
        let (mut ea, mut eb) = (Effects::new(), Effects::new());
        for tx in 0..300u64 {
            let req = random_request(&mut p);
            let (mut e1, mut e2) = (ModelEnv::new(1, tx), ModelEnv::new(1, tx));
            let ra = execute::<Model>(
                &mut a,
                &mut ja,
                tx + 2,
                &mut ea,
                &mut Input::direct(&req, &mut e1),
            );
            let rb = execute_once::<Model>(
                &mut b,
                &mut jb,
                tx + 2,
                &mut eb,
                &mut Input::direct(&req, &mut e2),
            );
            assert_eq!((ra.status, ra.error), (rb.status, rb.error), "tx {tx}");
            assert_eq!(ea.as_slice(), eb.as_slice(), "tx {tx}");
            assert_eq!(ja.write_count(), jb.write_count(), "tx {tx}");
            if tx % 3 == 0 || ra.error.is_some() {
                replica::rollback(&mut a, tx + 2);
                replica::rollback(&mut b, tx + 2);
            }
            assert_eq!(
                replica::full_digest(&a),
                replica::full_digest(&b),
                "tx {tx}"
            );
        }
    }
}
