//! What the frame machine needs from its surroundings: the journal, machine memory (page-table
//! contents, read through the input log with this transaction's own writes overlaid) and a
//! place for effects and freed frames.

use crate::effect::{Effect, MmEffect};
use crate::hv::{Ctx, HvError};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use lockstep::Journal;

/// Entries in a page table.
pub const ENTRIES: usize = 512;

/// The surroundings of a frame operation.
pub trait MmEnv {
    /// The journal every replica write goes through.
    fn journal(&mut self) -> &mut Journal;
    /// Reads the 64-bit word at machine address `maddr` (8-byte aligned).
    fn read_word(&mut self, maddr: u64) -> Result<u64, HvError>;
    /// Reads the 512 entries of frame `mfn`.
    fn read_table(&mut self, mfn: u64) -> Result<[u64; ENTRIES], HvError>;
    /// Writes the 64-bit word at `maddr` (a validated entry).
    fn write_word(&mut self, maddr: u64, value: u64);
    /// Emits an effect.
    fn emit(&mut self, e: Effect);
    /// Frame `mfn` lost its last reference: it goes back to the allocator.
    fn freed(&mut self, mfn: u64);
}

/// [`MmEnv`] over a handler's [`Ctx`]: reads go through the input log, writes become
/// `WriteMachine` effects and are remembered so later reads in the same transaction see them.
pub struct CtxEnv<'c, 'a, 'i, 't> {
    /// The handler's context.
    pub ctx: &'c mut Ctx<'a, 'i, 't>,
    overlay: BTreeMap<u64, u64>,
    freed: Vec<u64>,
}

impl<'c, 'a, 'i, 't> CtxEnv<'c, 'a, 'i, 't> {
    /// Wraps `ctx`.
    pub fn new(ctx: &'c mut Ctx<'a, 'i, 't>) -> Self {
        CtxEnv {
            ctx,
            overlay: BTreeMap::new(),
            freed: Vec::new(),
        }
    }

    /// Emits the frames freed so far as one `FreeFrames` effect.
    pub fn finish(&mut self) {
        if !self.freed.is_empty() {
            let mfns = core::mem::take(&mut self.freed);
            self.ctx.emit(Effect::Mm(MmEffect::FreeFrames(mfns)));
        }
    }
}

impl Drop for CtxEnv<'_, '_, '_, '_> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl MmEnv for CtxEnv<'_, '_, '_, '_> {
    fn journal(&mut self) -> &mut Journal {
        self.ctx.journal()
    }

    fn read_word(&mut self, maddr: u64) -> Result<u64, HvError> {
        if let Some(v) = self.overlay.get(&maddr) {
            return Ok(*v);
        }
        let mut b = [0u8; 8];
        self.ctx.read_machine(maddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn read_table(&mut self, mfn: u64) -> Result<[u64; ENTRIES], HvError> {
        let base = mfn << 12;
        let mut bytes = alloc::vec![0u8; ENTRIES * 8];
        self.ctx.read_machine(base, &mut bytes)?;
        let mut t = [0u64; ENTRIES];
        for (i, e) in t.iter_mut().enumerate() {
            let a = base + i as u64 * 8;
            *e = match self.overlay.get(&a) {
                Some(v) => *v,
                None => {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
                    u64::from_le_bytes(w)
                }
            };
        }
        Ok(t)
    }

    fn write_word(&mut self, maddr: u64, value: u64) {
        self.overlay.insert(maddr, value);
        self.ctx.emit(Effect::WriteMachine { maddr, value });
    }

    fn emit(&mut self, e: Effect) {
        self.ctx.emit(e);
    }

    fn freed(&mut self, mfn: u64) {
        self.freed.push(mfn);
    }
}
