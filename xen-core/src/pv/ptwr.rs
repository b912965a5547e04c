//! Writable page-table emulation, as Xen 4.17's `fixup_page_fault` → `pv_ro_page_fault` →
//! `ptwr_do_page_fault` does for a PV kernel: a write fault (present, kernel mode) on a
//! read-only mapping of one of the domain's own L1 tables is emulated when the domain enabled
//! `VMASST_TYPE_writable_pagetables`, or is the hardware domain (Xen takes that path for it
//! through its read-only-MMIO check whatever the assist says). The instruction is decoded
//! (the memory-writing forms a PV kernel uses on its entries: `mov`, `xchg`, `cmpxchg`, and
//! `and`, `or`, `bts`, `btr`, with which Linux clears and sets PTE bits; 1 to 8 bytes), the
//! new entry is validated and written
//! as `mod_l1_entry` does ([`crate::mm::pt::emulate_l1_write`]), and the guest continues
//! after the instruction. Anything else — another page type, a write outside the faulting
//! page or not naturally aligned, an entry that fails validation, an instruction not
//! decoded here — leaves the #PF to be bounced to the guest, as Xen's `X86EMUL_UNHANDLEABLE`.

use crate::effect::Effect;
use crate::hv::{Ctx, HvError, HvState};
use crate::mm::env::{CtxEnv, MmEnv};
use crate::mm::pt::{self, entry_mfn, P, RW};
use crate::mm::PageType;
use crate::pv::emulate::{gpr, set_gpr};
use crate::pv::state;
use crate::request::GuestRegs;
use dom0_interface::xen::VMASST_TYPE_WRITABLE_PAGETABLES;

/// #PF error code: the page was present.
pub const PFEC_PRESENT: u64 = 1 << 0;
/// #PF error code: a write.
pub const PFEC_WRITE: u64 = 1 << 1;
/// #PF error code: a reserved bit was set.
pub const PFEC_RESERVED: u64 = 1 << 3;
/// #PF error code: an instruction fetch.
pub const PFEC_INSN_FETCH: u64 = 1 << 4;
/// `X86_EFLAGS_RF`.
const EFLAGS_RF: u64 = 1 << 16;
/// The arithmetic flags `cmp` sets: CF, PF, AF, ZF, SF, OF.
const ARITH_FLAGS: u64 = 0x8d5;
/// Longest instruction.
const MAX_LEN: usize = 15;

/// What the instruction does with its memory operand (register sources already read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `mov` of a register or an immediate (88/89 /r, C6/C7 /0): the value stored.
    Mov(u64),
    /// `xchg` with register n (87 /r).
    Xchg(u8),
    /// `cmpxchg` with register n, the accumulator compared (0F B1 /r).
    Cmpxchg(u8),
    /// `and` with this value (20/21 /r, 80/81/83 /4).
    And(u64),
    /// `or` with this value (08/09 /r, 80/81/83 /1).
    Or(u64),
    /// `bts` of this bit of the operand (0F AB /r, 0F BA /5 ib).
    Bts(u8),
    /// `btr` of this bit of the operand (0F B3 /r, 0F BA /6 ib).
    Btr(u8),
}

/// A decoded memory write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// The operation.
    pub op: Op,
    /// Operand size in bytes: 1 (mov, and, or), 2, 4 or 8.
    pub size: u8,
    /// The linear address written.
    pub ea: u64,
    /// Instruction length.
    pub len: u8,
}

/// How the operand after the ModRM byte is given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Imm {
    /// None (the register of ModRM.reg is the source).
    None,
    /// One byte, sign-extended.
    Byte,
    /// Two bytes with a 16-bit operand, four (sign-extended) otherwise.
    Full,
}

/// What an opcode is: (operation class, byte operand, immediate). ModRM.reg selects the
/// operation for the immediate groups.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Mov,
    Xchg,
    Cmpxchg,
    And,
    Or,
    /// 80/81/83: ModRM.reg 1 is `or`, 4 `and`.
    Group1,
    Bts,
    Btr,
    /// 0F BA: ModRM.reg 5 is `bts`, 6 `btr`.
    Group8,
    /// C6/C7: ModRM.reg 0 is `mov`.
    Group11,
}

fn classify(two_byte: bool, b: u8) -> Option<(Class, bool, Imm)> {
    Some(match (two_byte, b) {
        (false, 0x88) => (Class::Mov, true, Imm::None),
        (false, 0x89) => (Class::Mov, false, Imm::None),
        (false, 0x87) => (Class::Xchg, false, Imm::None),
        (false, 0x08) => (Class::Or, true, Imm::None),
        (false, 0x09) => (Class::Or, false, Imm::None),
        (false, 0x20) => (Class::And, true, Imm::None),
        (false, 0x21) => (Class::And, false, Imm::None),
        (false, 0x80) => (Class::Group1, true, Imm::Byte),
        (false, 0x81) => (Class::Group1, false, Imm::Full),
        (false, 0x83) => (Class::Group1, false, Imm::Byte),
        (false, 0xc6) => (Class::Group11, true, Imm::Byte),
        (false, 0xc7) => (Class::Group11, false, Imm::Full),
        (true, 0xb1) => (Class::Cmpxchg, false, Imm::None),
        (true, 0xab) => (Class::Bts, false, Imm::None),
        (true, 0xb3) => (Class::Btr, false, Imm::None),
        (true, 0xba) => (Class::Group8, false, Imm::Byte),
        _ => return None,
    })
}

/// Register `n` as a byte operand: with a REX prefix or below 4 its low byte, otherwise
/// AH/CH/DH/BH.
fn byte_reg(regs: &GuestRegs, n: u8, rex: bool) -> u64 {
    if rex || n < 4 {
        gpr(regs, n) & 0xff
    } else {
        (gpr(regs, n - 4) >> 8) & 0xff
    }
}

/// Decodes the instruction at `regs.rip` whose bytes `fetch(i)` returns, if it is one of
/// the memory writes emulated here (FS/GS overrides, 32-bit addressing and REP prefixes are
/// not).
pub fn decode_write(mut fetch: impl FnMut(usize) -> Option<u8>, regs: &GuestRegs) -> Option<Write> {
    let mut i = 0usize;
    let mut next = |i: &mut usize| -> Option<u8> {
        if *i >= MAX_LEN {
            return None;
        }
        let b = fetch(*i)?;
        *i += 1;
        Some(b)
    };
    let mut opsize16 = false;
    let mut b = next(&mut i)?;
    loop {
        match b {
            0x66 => opsize16 = true,
            0xf0 | 0x26 | 0x2e | 0x36 | 0x3e => {}
            0x64 | 0x65 | 0x67 | 0xf2 | 0xf3 => return None,
            _ => break,
        }
        b = next(&mut i)?;
    }
    let mut rex = 0u8;
    if b & 0xf0 == 0x40 {
        rex = b;
        b = next(&mut i)?;
    }
    let (class, byte, imm_kind) = if b == 0x0f {
        classify(true, next(&mut i)?)?
    } else {
        classify(false, b)?
    };
    let size: u8 = if byte {
        1
    } else if rex & 8 != 0 {
        8
    } else if opsize16 {
        2
    } else {
        4
    };
    let modrm = next(&mut i)?;
    let md = modrm >> 6;
    let reg = ((rex & 4) << 1) | ((modrm >> 3) & 7);
    let rm = modrm & 7;
    if md == 3 {
        return None;
    }
    let mut base = 0u64;
    let mut rip_relative = false;
    if rm == 4 {
        let sib = next(&mut i)?;
        let index = ((rex & 2) << 2) | ((sib >> 3) & 7);
        if index != 4 {
            base = gpr(regs, index).wrapping_shl(u32::from(sib >> 6));
        }
        if sib & 7 == 5 && md == 0 {
            let d =
                i32::from_le_bytes([next(&mut i)?, next(&mut i)?, next(&mut i)?, next(&mut i)?]);
            base = base.wrapping_add(d as i64 as u64);
        } else {
            base = base.wrapping_add(gpr(regs, ((rex & 1) << 3) | (sib & 7)));
        }
    } else if rm == 5 && md == 0 {
        rip_relative = true;
    } else {
        base = gpr(regs, ((rex & 1) << 3) | rm);
    }
    let disp: i64 = match (md, rip_relative) {
        (1, _) => i64::from(next(&mut i)? as i8),
        (2, _) | (0, true) => i64::from(i32::from_le_bytes([
            next(&mut i)?,
            next(&mut i)?,
            next(&mut i)?,
            next(&mut i)?,
        ])),
        _ => 0,
    };
    let imm: u64 = match imm_kind {
        Imm::None => 0,
        Imm::Byte => i64::from(next(&mut i)? as i8) as u64,
        Imm::Full if size == 2 => {
            i64::from(i16::from_le_bytes([next(&mut i)?, next(&mut i)?])) as u64
        }
        Imm::Full => i64::from(i32::from_le_bytes([
            next(&mut i)?,
            next(&mut i)?,
            next(&mut i)?,
            next(&mut i)?,
        ])) as u64,
    };
    let m = mask(size);
    let src = if byte {
        byte_reg(regs, reg, rex != 0)
    } else {
        gpr(regs, reg) & m
    };
    let bits = u64::from(size) * 8;
    let mut ea = base.wrapping_add(disp as u64);
    let op = match (class, reg & 7) {
        (Class::Mov, _) => Op::Mov(src),
        (Class::Xchg, _) => Op::Xchg(reg),
        (Class::Cmpxchg, _) => Op::Cmpxchg(reg),
        (Class::And, _) => Op::And(src),
        (Class::Or, _) => Op::Or(src),
        (Class::Group1, 1) => Op::Or(imm & m),
        (Class::Group1, 4) => Op::And(imm & m),
        (Class::Group11, 0) => Op::Mov(imm & m),
        (Class::Bts | Class::Btr, _) => {
            // A register bit offset is signed and may address other operands.
            let shift = 64 - bits as u32;
            let off = ((gpr(regs, reg) << shift) as i64) >> shift;
            ea = ea
                .wrapping_add((off >> bits.trailing_zeros()).wrapping_mul(i64::from(size)) as u64);
            let bit = (off as u64 & (bits - 1)) as u8;
            if class == Class::Bts {
                Op::Bts(bit)
            } else {
                Op::Btr(bit)
            }
        }
        (Class::Group8, 5) => Op::Bts((imm & (bits - 1)) as u8),
        (Class::Group8, 6) => Op::Btr((imm & (bits - 1)) as u8),
        _ => return None,
    };
    if rip_relative {
        ea = ea.wrapping_add(regs.rip).wrapping_add(i as u64);
    }
    Some(Write {
        op,
        size,
        ea,
        len: i as u8,
    })
}

/// All ones in the low `size` bytes.
fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (u32::from(size) * 8)) - 1
    }
}

/// Writes `v` to register `n` as an operand of `size` bytes does: 4 zero-extends, 2 keeps the
/// upper bits.
fn set_sized(r: &mut GuestRegs, n: u8, size: u8, v: u64) {
    let v = match size {
        8 => v,
        4 => v & 0xffff_ffff,
        _ => (gpr(r, n) & !mask(size)) | (v & mask(size)),
    };
    set_gpr(r, n, v);
}

/// The flags `cmp a, b` leaves for operands of `size` bytes.
pub fn cmp_flags(a: u64, b: u64, size: u8) -> u64 {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let r = a.wrapping_sub(b) & m;
    let sign = 1u64 << (u32::from(size) * 8 - 1);
    let mut f = 0;
    if a < b {
        f |= 1;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= 1 << 2;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= 1 << 4;
    }
    if r == 0 {
        f |= 1 << 6;
    }
    if r & sign != 0 {
        f |= 1 << 7;
    }
    if (a ^ b) & (a ^ r) & sign != 0 {
        f |= 1 << 11;
    }
    f
}

/// Whether the fault is one Xen hands to `pv_ro_page_fault` for this domain.
fn eligible(state: &HvState, ctx: &Ctx<'_, '_, '_>) -> bool {
    let ec = ctx.req.error_code;
    let k = state::key(ctx);
    let kernel = state.vcpus.get(&k).is_some_and(|v| v.kernel_mode);
    let Some(d) = state.domains.get(&k.0) else {
        return false;
    };
    let assist = d.vm_assist & (1 << VMASST_TYPE_WRITABLE_PAGETABLES) != 0;
    kernel
        && ec & (PFEC_RESERVED | PFEC_INSN_FETCH) == 0
        && ec & PFEC_WRITE != 0
        && ec & PFEC_PRESENT != 0
        && (assist || d.flags.privileged)
}

/// Reads the instruction at `rip` lazily and decodes it (None: not a write emulated here or
/// not readable).
fn fetch_and_decode(ctx: &mut Ctx<'_, '_, '_>, regs: &GuestRegs) -> Result<Option<Write>, HvError> {
    let mut err = None;
    let w = decode_write(
        |i| {
            if err.is_some() {
                return None;
            }
            let mut b = [0u8; 1];
            match ctx.copy_from_guest(regs.rip.wrapping_add(i as u64), &mut b) {
                Ok(()) => Some(b[0]),
                Err(HvError::Abort(a)) => {
                    err = Some(HvError::Abort(a));
                    None
                }
                Err(HvError::Errno(_)) => None,
            }
        },
        regs,
    );
    match err {
        Some(e) => Err(e),
        None => Ok(w),
    }
}

/// Emulates the faulting write if Xen would (see the module documentation): Ok(true) with
/// the entry written and the new registers emitted, Ok(false) to bounce the #PF.
pub fn page_fault(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<bool, HvError> {
    if !eligible(state, ctx) {
        return Ok(false);
    }
    let k = state::key(ctx);
    let dom = k.0;
    let addr = ctx.req.cr2;
    let regs = ctx.req.regs;
    let cr3 = state.vcpus.get(&k).map_or(0, |v| v.cr3);
    // The kernel mapping of the faulting address: present and read-only, onto an L1 table
    // of this domain.
    let table = {
        let mut env = CtxEnv::new(ctx);
        let Some((_, l1e)) = pt::walk_to_l1e(&mut env, cr3, addr)? else {
            return Ok(false);
        };
        let pte = env.read_word(l1e)?;
        if pte & (P | RW) != P {
            return Ok(false);
        }
        entry_mfn(pte)
    };
    let is_l1 = state
        .frames
        .get(&table)
        .is_some_and(|p| p.owner == dom && p.ty == PageType::L1 && p.type_count > 0);
    if !is_l1 {
        return Ok(false);
    }
    let Some(w) = fetch_and_decode(ctx, &regs)? else {
        return Ok(false);
    };
    let size = u64::from(w.size);
    if (w.ea ^ addr) & !0xfff != 0 || w.ea % size != 0 {
        return Ok(false);
    }
    let maddr = (table << 12) | (w.ea & 0xfff);
    let word = maddr & !7;
    let shift = (maddr & 7) * 8;
    let m = mask(w.size) << shift;
    let mut out = GuestRegs {
        rip: regs.rip.wrapping_add(u64::from(w.len)),
        rflags: regs.rflags & !EFLAGS_RF,
        ..regs
    };
    let mut env = CtxEnv::new(ctx);
    let cur = env.read_word(word)?;
    let old = (cur & m) >> shift;
    let sized = mask(w.size);
    let logic_flags = |out: &mut GuestRegs, r: u64| {
        out.rflags = (out.rflags & !ARITH_FLAGS) | (cmp_flags(r, 0, w.size) & !1);
    };
    let (new, write) = match w.op {
        Op::Mov(v) => (v & sized, true),
        Op::Xchg(r) => {
            set_sized(&mut out, r, w.size, old);
            (gpr(&regs, r) & sized, true)
        }
        Op::Cmpxchg(r) => {
            let expect = regs.rax & sized;
            out.rflags = (out.rflags & !ARITH_FLAGS) | cmp_flags(expect, old, w.size);
            if expect != old {
                set_sized(&mut out, 0, w.size, old);
            }
            (gpr(&regs, r) & sized, expect == old)
        }
        Op::And(v) => {
            logic_flags(&mut out, old & v);
            (old & v, true)
        }
        Op::Or(v) => {
            logic_flags(&mut out, old | v);
            (old | v, true)
        }
        Op::Bts(b) | Op::Btr(b) => {
            out.rflags = (out.rflags & !1) | ((old >> b) & 1);
            let bit = 1u64 << b;
            (
                if matches!(w.op, Op::Bts(_)) {
                    old | bit
                } else {
                    old & !bit
                },
                true,
            )
        }
    };
    let full = (cur & !m) | (new << shift);
    // Xen validates the new entry before the compare of a cmpxchg: an invalid one faults
    // even when the exchange would not happen.
    let valid = if write {
        pt::emulate_l1_write(state, &mut env, dom, word, full)
    } else {
        pt::check_l1_write(state, &mut env, dom, word, full)
    };
    match valid {
        Ok(()) => {}
        Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
        Err(HvError::Errno(_)) => return Ok(false),
    }
    env.finish();
    drop(env);
    ctx.emit(Effect::SetRegs(out));
    Ok(true)
}
