//! An [`MmEnv`] over the harness's fake machine memory, for calling the frame machine outside
//! a hypercall.

use super::env::{MmEnv, ENTRIES};
use crate::effect::Effect;
use crate::hv::HvError;
use crate::hypercall::testing::FakeMem;
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use lockstep::input::Env;
use lockstep::Journal;

/// Reads and writes go straight to the fake memory; effects are collected.
pub struct MemEnv<'a> {
    /// The machine memory.
    pub mem: &'a mut FakeMem,
    /// The journal.
    pub j: &'a mut Journal,
    /// Effects emitted.
    pub effects: Vec<Effect>,
}

impl MmEnv for MemEnv<'_> {
    fn journal(&mut self) -> &mut Journal {
        self.j
    }
    fn read_word(&mut self, maddr: u64) -> Result<u64, HvError> {
        let mut b = [0u8; 8];
        if !self.mem.read_machine(maddr, &mut b) {
            return Err(XenErrno::EFAULT.into());
        }
        Ok(u64::from_le_bytes(b))
    }
    fn read_table(&mut self, mfn: u64) -> Result<[u64; ENTRIES], HvError> {
        let mut t = [0u64; ENTRIES];
        for (i, e) in t.iter_mut().enumerate() {
            *e = self.read_word((mfn << 12) + i as u64 * 8)?;
        }
        Ok(t)
    }
    fn write_word(&mut self, maddr: u64, value: u64) {
        self.mem.machine.insert(maddr, value);
    }
    fn emit(&mut self, e: Effect) {
        self.effects.push(e);
    }
    fn freed(&mut self, _mfn: u64) {}
}
