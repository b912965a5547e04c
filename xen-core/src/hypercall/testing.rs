//! Test harness: runs hypercalls through the real state machine with a fake guest memory.

use crate::effect::{DomId, Effect};
use crate::hv::{create_domain, HvState, Xen};
use crate::request::Request;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use lockstep::effects::Effects;
use lockstep::input::{Env, Input};
use lockstep::machine::execute;
use lockstep::Journal;

/// Fake guest memory: a set of readable/writable byte ranges.
#[derive(Default)]
pub struct FakeMem {
    /// Byte contents by address.
    pub bytes: BTreeMap<u64, u8>,
    /// Read-only addresses.
    pub readonly: BTreeMap<u64, ()>,
    /// Machine memory: frames handlers may read (contents default to zero).
    pub machine_frames: alloc::collections::BTreeSet<u64>,
    /// Machine memory words by 8-aligned machine address.
    pub machine: BTreeMap<u64, u64>,
    /// Queued answers for `value(kind)` (absent or exhausted: 0).
    pub values: BTreeMap<u32, alloc::collections::VecDeque<u64>>,
}

impl FakeMem {
    /// Makes `[addr, addr+data.len())` readable and writable with `data`.
    pub fn map(&mut self, addr: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.bytes.insert(addr + i as u64, *b);
        }
    }
}

impl FakeMem {
    /// Makes machine frame `mfn` readable (zero-filled unless written).
    pub fn add_frame(&mut self, mfn: u64) {
        self.machine_frames.insert(mfn);
    }

    /// The machine word at `maddr` (8-aligned).
    pub fn word(&self, maddr: u64) -> u64 {
        self.machine.get(&maddr).copied().unwrap_or(0)
    }
}

impl Env for FakeMem {
    fn value(&mut self, kind: u32) -> u64 {
        self.values
            .get_mut(&kind)
            .and_then(|q| q.pop_front())
            .unwrap_or(0)
    }
    fn read_machine(&mut self, maddr: u64, buf: &mut [u8]) -> bool {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = maddr.wrapping_add(i as u64);
            if !self.machine_frames.contains(&(a >> 12)) {
                return false;
            }
            let w = self.word(a & !7);
            *b = (w >> ((a & 7) * 8)) as u8;
        }
        true
    }
    fn read_guest(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        for (i, b) in buf.iter_mut().enumerate() {
            match self.bytes.get(&(addr.wrapping_add(i as u64))) {
                Some(v) => *b = *v,
                None => return false,
            }
        }
        true
    }
    fn probe_write(&mut self, addr: u64, len: usize) -> bool {
        (0..len as u64).all(|i| {
            let a = addr.wrapping_add(i);
            self.bytes.contains_key(&a) && !self.readonly.contains_key(&a)
        })
    }
}

/// `Outcome::ret` of a call that continued itself instead of returning.
pub const CONTINUED: i64 = i64::MIN;

/// What one hypercall did.
pub struct Outcome {
    /// RAX after the call.
    pub ret: i64,
    /// All effects.
    pub effects: Vec<Effect>,
    /// Log lines emitted.
    pub logs: Vec<String>,
}

/// A state with one domain, a fake memory and a journal.
pub struct Harness {
    /// The replica.
    pub state: HvState,
    /// Guest memory.
    pub mem: FakeMem,
    journal: Journal,
    epoch: u64,
    /// Caller domain.
    pub dom: DomId,
}

impl Harness {
    /// dom0 (privileged) with one vCPU.
    pub fn dom0() -> Self {
        Self::with_domain(0, true)
    }

    /// An unprivileged domain `id`.
    pub fn domu(id: DomId) -> Self {
        Self::with_domain(id, false)
    }

    fn with_domain(id: DomId, privileged: bool) -> Self {
        let mut state = HvState::new();
        let mut journal = Journal::new();
        journal.begin(1);
        create_domain(&mut state, &mut journal, id, privileged, 2, 1024).expect("create");
        lockstep::replica::forget(&mut state);
        Harness {
            state,
            mem: FakeMem::default(),
            journal,
            epoch: 1,
            dom: id,
        }
    }

    /// Runs hypercall `nr` with `args` from vCPU 0.
    pub fn hypercall(&mut self, nr: u64, args: [u64; 5]) -> Outcome {
        self.epoch += 1;
        let regs = crate::request::GuestRegs {
            cs: 0xe033,
            ss: 0xe02b,
            ..crate::request::GuestRegs::for_hypercall(nr, args)
        };
        self.run(Request::hypercall(self.dom, 0, regs))
    }

    /// Runs any request (hypercall or other exit) through the state machine, as words (as
    /// a paired execution logs it).
    pub fn run(&mut self, req: Request) -> Outcome {
        self.run_as(req, false)
    }

    /// [`Harness::run`], the request handed over as words or `typed` (as a single
    /// execution does: no words made, see `lockstep::TypedRequest`).
    pub fn run_as(&mut self, req: Request, typed: bool) -> Outcome {
        self.epoch += 1;
        let words = req.to_words();
        let mut effects = Effects::new();
        let mut input = if typed {
            Input::direct_typed(&req, &mut self.mem)
        } else {
            Input::direct(&words, &mut self.mem)
        };
        let report = execute::<Xen>(
            &mut self.state,
            &mut self.journal,
            self.epoch,
            &mut effects,
            &mut input,
        );
        assert!(
            report.error.is_none(),
            "transaction aborted: {:?}",
            report.error
        );
        let effects: Vec<Effect> = effects.as_slice().to_vec();
        let ret = effects
            .iter()
            .find_map(|e| {
                if let Effect::Return(v) = e {
                    Some(*v)
                } else {
                    None
                }
            })
            .unwrap_or(CONTINUED);
        for e in &effects {
            if let Effect::WriteGuest { addr, data } = e {
                self.mem.map(*addr, data);
            }
            if let Effect::WriteMachine { maddr, value } = e {
                self.mem.machine.insert(*maddr & !7, *value);
            }
        }
        let logs = effects
            .iter()
            .filter_map(|e| {
                if let Effect::Log(l) = e {
                    Some(String::from_utf8_lossy(l).into_owned())
                } else {
                    None
                }
            })
            .collect();
        Outcome { ret, effects, logs }
    }
}
