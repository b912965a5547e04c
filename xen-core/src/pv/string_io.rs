//! `ins`/`outs` (string port I/O) for a PV guest, as Xen 4.17 emulates them after the #GP:
//! x86_emulate's `ins`/`outs` cases with emul-priv-op.c's `rep_ins`/`rep_outs` hooks.
//!
//! - The port must be allowed by the virtual IOPL (`guest_io_okay`; no I/O bitmap is
//!   registered here, PHYSDEVOP_set_iobitmap is not implemented), else the original #GP is
//!   bounced. The check comes before the REP count is looked at.
//! - REP with a zero count (in the address size) skips the instruction.
//! - Each element: the port is read (a machine input: the leader's `in`, logged), then the
//!   memory address is checked (not canonical or in Xen's range: #GP(0)), then the memory
//!   access is done (guest-memory input / buffered write effect); an inaccessible byte raises
//!   #PF at that byte (error code W for `ins`, 0 for `outs`; the user bit is set on bounce).
//! - At most [`MAX_REPS`] elements per exit (Xen stops at `hypercall_preempt_check`): RCX,
//!   RSI/RDI move on and the instruction restarts from the same RIP.
//! - A fault after some elements of a REP keeps their progress in RCX/RSI/RDI (RIP stays on
//!   the instruction); without REP the registers are left as they were.

use crate::effect::Effect;
use crate::hv::{Ctx, HvError, HvState};
use crate::pv::decode::{DataSeg, StringIo};
use crate::pv::emulate::{io_okay, Outcome};
use crate::pv::ioports;
use crate::pv::state;
use crate::request::GuestRegs;

/// Elements moved per exit before the instruction is restarted.
pub const MAX_REPS: u64 = 64;

/// `PFEC_write_access`.
const PFEC_WRITE: u64 = 2;
/// #GP.
const GP: u8 = 13;
/// #PF.
const PF: u8 = 14;
/// `X86_EFLAGS_DF`.
const EFLAGS_DF: u64 = 1 << 10;

/// Which way the data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// `ins`: port to memory at RDI.
    In,
    /// `outs`: memory at RSI to port.
    Out,
}

/// Why an element stopped the instruction.
enum Stop {
    /// #GP(0): the address is not one a guest may use.
    Gp,
    /// #PF with this error code at this address.
    Pf(u64, u64),
}

/// The base of `seg` for the calling vCPU.
fn seg_base(state: &HvState, ctx: &Ctx<'_, '_, '_>, seg: DataSeg) -> u64 {
    let v = state
        .vcpus
        .get(&state::key(ctx))
        .cloned()
        .unwrap_or_default();
    match seg {
        DataSeg::Flat => 0,
        DataSeg::Fs => v.fs_base,
        DataSeg::Gs if v.kernel_mode => v.gs_base_kernel,
        DataSeg::Gs => v.gs_base_user,
    }
}

/// The index register the instruction walks (RDI for `ins`, RSI for `outs`).
fn index(regs: &GuestRegs, dir: Dir) -> u64 {
    match dir {
        Dir::In => regs.rdi,
        Dir::Out => regs.rsi,
    }
}

fn set_index(regs: &mut GuestRegs, dir: Dir, v: u64) {
    match dir {
        Dir::In => regs.rdi = v,
        Dir::Out => regs.rsi = v,
    }
}

/// The first byte of `len` at `addr` that `ok` refuses (`addr` itself if none does, which
/// cannot happen for a range refused as a whole).
fn first_bad(
    ctx: &mut Ctx<'_, '_, '_>,
    addr: u64,
    len: u8,
    mut ok: impl FnMut(&mut Ctx<'_, '_, '_>, u64) -> Result<bool, HvError>,
) -> Result<u64, HvError> {
    for i in 0..u64::from(len) {
        if !ok(ctx, addr.wrapping_add(i))? {
            return Ok(addr.wrapping_add(i));
        }
    }
    Ok(addr)
}

/// One element of `ins`: reads the port, stores to `addr`.
fn ins_one(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    port: u16,
    size: u8,
    addr: u64,
) -> Result<Option<Stop>, HvError> {
    let v = ioports::guest_io_read(state, ctx, port, size)?;
    if !state::addr_ok(addr) || !state::is_canonical(addr) {
        return Ok(Some(Stop::Gp));
    }
    let bytes = v.to_le_bytes();
    let data = &bytes[..usize::from(size)];
    if ctx.probe_write(addr, data.len())? {
        ctx.emit(Effect::WriteGuest {
            addr,
            data: data.to_vec(),
        });
        return Ok(None);
    }
    // The bytes before the first unwritable one are stored, as __copy_to_guest_pv does.
    let bad = first_bad(ctx, addr, size, |c, a| c.probe_write(a, 1))?;
    let done = bad.wrapping_sub(addr) as usize;
    if done > 0 {
        ctx.emit(Effect::WriteGuest {
            addr,
            data: data[..done].to_vec(),
        });
    }
    Ok(Some(Stop::Pf(PFEC_WRITE, bad)))
}

/// One element of `outs`: loads from `addr`, writes the port.
fn outs_one(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    port: u16,
    size: u8,
    addr: u64,
) -> Result<Option<Stop>, HvError> {
    if !state::addr_ok(addr) || !state::is_canonical(addr) {
        return Ok(Some(Stop::Gp));
    }
    let mut b = [0u8; 4];
    match ctx.copy_from_guest(addr, &mut b[..usize::from(size)]) {
        Ok(()) => {}
        Err(HvError::Errno(_)) => {
            let bad = first_bad(ctx, addr, size, |c, a| {
                let mut one = [0u8; 1];
                match c.copy_from_guest(a, &mut one) {
                    Ok(()) => Ok(true),
                    Err(HvError::Errno(_)) => Ok(false),
                    Err(e) => Err(e),
                }
            })?;
            return Ok(Some(Stop::Pf(0, bad)));
        }
        Err(e) => return Err(e),
    }
    ioports::guest_io_write(state, ctx, port, size, u32::from_le_bytes(b))?;
    Ok(None)
}

/// Emulates `ins` (`dir` In) or `outs` (`dir` Out) with operands `op`. `regs` are the
/// registers at the fault; `next_rip` is the RIP after the instruction.
pub fn emulate(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    regs: &GuestRegs,
    next_rip: u64,
    dir: Dir,
    op: StringIo,
) -> Result<Outcome, HvError> {
    let port = regs.rdx as u16;
    if !io_okay(state, ctx, port, op.size)? {
        return Ok(Outcome::Fault);
    }
    let mask: u64 = if op.addr32 { 0xffff_ffff } else { u64::MAX };
    let mut out = GuestRegs {
        rflags: regs.rflags & !(1 << 16),
        ..*regs
    };
    let wanted = if op.rep { regs.rcx & mask } else { 1 };
    if wanted == 0 {
        // get_rep_prefix: skipped, with RCX and the index zero-extended for a 32-bit address.
        if op.addr32 {
            out.rcx = 0;
            set_index(&mut out, dir, index(regs, dir) & mask);
        }
        out.rip = next_rip;
        return Ok(Outcome::Done(out));
    }
    let size = u64::from(op.size);
    let down = regs.rflags & EFLAGS_DF != 0;
    let mut off = index(regs, dir) & mask;
    // truncate_ea_and_reps: the index wraps at most once, at the last element.
    let to_wrap = (if down { off } else { mask - off } / size).saturating_add(1);
    let goal = wanted.min(to_wrap).min(MAX_REPS);
    let base = seg_base(state, ctx, op.seg);
    let mut done = 0u64;
    let mut stop = None;
    while done < goal {
        let addr = base.wrapping_add(off);
        let r = match dir {
            Dir::In => ins_one(state, ctx, port, op.size, addr)?,
            Dir::Out => outs_one(state, ctx, port, op.size, addr)?,
        };
        if r.is_some() {
            stop = r;
            break;
        }
        done += 1;
        off = if down {
            off.wrapping_sub(size)
        } else {
            off.wrapping_add(size)
        } & mask;
    }
    if op.rep {
        let left = (regs.rcx & mask) - done;
        out.rcx = if op.addr32 { left } else { regs.rcx - done };
        let idx = index(regs, dir);
        let moved = done.wrapping_mul(size);
        let new = if down {
            idx.wrapping_sub(moved)
        } else {
            idx.wrapping_add(moved)
        };
        set_index(&mut out, dir, if op.addr32 { new & mask } else { new });
        out.rip = if left == 0 && stop.is_none() {
            next_rip
        } else {
            regs.rip
        };
    } else if stop.is_none() {
        let idx = index(regs, dir);
        let new = if down {
            idx.wrapping_sub(size)
        } else {
            idx.wrapping_add(size)
        };
        set_index(&mut out, dir, if op.addr32 { new & mask } else { new });
        out.rip = next_rip;
    } else {
        out = *regs;
    }
    Ok(match stop {
        None => Outcome::Done(out),
        Some(Stop::Gp) => Outcome::Exception {
            regs: out,
            vector: GP,
            error_code: 0,
            cr2: 0,
        },
        Some(Stop::Pf(ec, cr2)) => Outcome::Exception {
            regs: out,
            vector: PF,
            error_code: ec,
            cr2,
        },
    })
}

#[cfg(test)]
mod tests {
    use crate::effect::Effect;
    use crate::hv::value_kind;
    use crate::hypercall::testing::Harness;
    use crate::pv::effect::PvEffect;
    use crate::request::{ExitKind, GuestRegs, Request};
    use alloc::vec::Vec;

    const RIP: u64 = 0xffff_ffff_8000_5000;
    const HANDLER: u64 = 0xffff_ffff_8000_1000;
    const STACK: u64 = 0xffff_ffff_8002_0000;
    const BUF: u64 = 0x40_0000;

    /// Dom0 with a #GP and #PF handler, a kernel stack, and virtual IOPL `iopl`.
    fn setup(iopl: u32) -> Harness {
        let mut h = Harness::dom0();
        let mut table = Vec::new();
        for v in [13u8, 14, 0] {
            table.push(v);
            table.push(0);
            table.extend_from_slice(&0xe030u16.to_le_bytes());
            table.extend_from_slice(&[0; 4]);
            table.extend_from_slice(&(if v == 0 { 0 } else { HANDLER }).to_le_bytes());
        }
        h.mem.map(0x1000, &table);
        assert_eq!(h.hypercall(0, [0x1000, 0, 0, 0, 0]).ret, 0);
        h.mem.map(STACK - 0x200, &[0u8; 0x200]);
        h.mem.map(0x300, &iopl.to_le_bytes());
        assert_eq!(h.hypercall(33, [6, 0x300, 0, 0, 0]).ret, 0);
        h
    }

    fn regs(rcx: u64, rsi: u64, rdi: u64, port: u16) -> GuestRegs {
        GuestRegs {
            rip: RIP,
            cs: 0xe033,
            rflags: 0x246,
            rsp: STACK,
            ss: 0xe02b,
            rcx,
            rsi,
            rdi,
            rdx: u64::from(port),
            ..Default::default()
        }
    }

    fn queue_ports(h: &mut Harness, port: u16, size: u8, vals: &[u64]) {
        let q = h
            .mem
            .values
            .entry(value_kind::port_in(port, size))
            .or_default();
        q.extend(vals.iter().copied());
    }

    /// Runs the #GP exit for `code` with `r`: its effects and the registers it set.
    fn gp(h: &mut Harness, code: &[u8], r: GuestRegs) -> (Vec<Effect>, GuestRegs) {
        h.mem.map(RIP, code);
        let e = h
            .run(Request::exit(ExitKind::Exception, h.dom, 0, r, 13, 0, 0))
            .effects;
        let set = e
            .iter()
            .rev()
            .find_map(|e| match e {
                Effect::SetRegs(r) => Some(*r),
                _ => None,
            })
            .expect("registers set");
        (e, set)
    }

    fn writes(e: &[Effect]) -> Vec<(u64, Vec<u8>)> {
        e.iter()
            .filter_map(|e| match e {
                Effect::WriteGuest { addr, data } if *addr >= BUF && *addr < BUF + 0x1000 => {
                    Some((*addr, data.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn port_outs(e: &[Effect]) -> Vec<(u16, u8, u32)> {
        e.iter()
            .filter_map(|e| match e {
                Effect::Pv(PvEffect::PortOut { port, size, value }) => Some((*port, *size, *value)),
                _ => None,
            })
            .collect()
    }

    /// The bounce frame's RCX, error code and RIP (the frame sits below the kernel stack).
    fn frame(h: &Harness, sp: u64) -> (u64, u64, u64) {
        let w = |i: u64| {
            let mut b = [0u8; 8];
            for (j, x) in b.iter_mut().enumerate() {
                *x = h
                    .mem
                    .bytes
                    .get(&(sp + 8 * i + j as u64))
                    .copied()
                    .unwrap_or(0);
            }
            u64::from_le_bytes(b)
        };
        (w(0), w(2), w(3))
    }

    #[test]
    fn rep_insb_fills_memory_from_the_port() {
        let mut h = setup(1);
        h.mem.map(BUF, &[0u8; 16]);
        queue_ports(&mut h, 0xcfc, 1, &[0x86, 0x80, 0xc0]);
        let (e, r) = gp(&mut h, &[0xf3, 0x6c], regs(3, 0, BUF, 0xcfc));
        assert_eq!(
            writes(&e),
            [
                (BUF, vec![0x86]),
                (BUF + 1, vec![0x80]),
                (BUF + 2, vec![0xc0])
            ]
        );
        assert_eq!((r.rcx, r.rdi, r.rip), (0, BUF + 3, RIP + 2));
        // Not repeated: one element, RCX untouched.
        queue_ports(&mut h, 0xcfc, 4, &[0x29c0_8086]);
        let (e, r) = gp(&mut h, &[0x6d], regs(7, 0, BUF + 8, 0xcfc));
        assert_eq!(
            writes(&e),
            [(BUF + 8, 0x29c0_8086u32.to_le_bytes().to_vec())]
        );
        assert_eq!((r.rcx, r.rdi, r.rip), (7, BUF + 12, RIP + 1));
    }

    #[test]
    fn rep_outsw_backwards_and_with_fs() {
        let mut h = setup(1);
        h.mem.map(BUF, &[1, 0, 2, 0, 3, 0]);
        let mut r0 = regs(3, BUF + 4, 0, 0x80);
        r0.rflags |= super::EFLAGS_DF;
        let (e, r) = gp(&mut h, &[0x66, 0xf3, 0x6f], r0);
        assert_eq!(port_outs(&e), [(0x80, 2, 3), (0x80, 2, 2), (0x80, 2, 1)]);
        assert_eq!((r.rcx, r.rsi, r.rip), (0, BUF - 2, RIP + 3));
        // fs: outsb reads at FS base + RSI.
        let j = &mut lockstep::Journal::new();
        j.begin(99);
        h.state.vcpus.update(j, &(0, 0), |v| v.fs_base = BUF);
        lockstep::replica::forget(&mut h.state);
        let (e, r) = gp(&mut h, &[0x64, 0x6e], regs(0, 2, 0, 0x80));
        assert_eq!(port_outs(&e), [(0x80, 1, 2)]);
        assert_eq!((r.rsi, r.rip), (3, RIP + 2));
    }

    #[test]
    fn without_iopl_the_gp_is_bounced_untouched() {
        let mut h = setup(0);
        h.mem.map(BUF, &[0u8; 4]);
        let (e, r) = gp(&mut h, &[0xf3, 0x6e], regs(4, BUF, 0, 0x80));
        assert!(port_outs(&e).is_empty());
        assert_eq!((r.rip, r.rcx), (HANDLER, 4));
        let (_, ec, rip) = frame(&h, r.rsp);
        assert_eq!((ec, rip), (0, RIP));
    }

    #[test]
    fn zero_count_skips_and_32bit_addressing_zero_extends() {
        let mut h = setup(1);
        let (e, r) = gp(
            &mut h,
            &[0x67, 0xf3, 0x6c],
            regs(0xffff_ffff_0000_0000, 0, 0x1234_0040_0000, 0x80),
        );
        assert!(writes(&e).is_empty());
        assert_eq!((r.rcx, r.rdi, r.rip), (0, 0x40_0000, RIP + 3));
        // A 32-bit index wraps at 4 GiB: the elements up to the wrap, then a restart.
        h.mem.map(0xffff_fffe, &[0u8; 2]);
        h.mem.map(0, &[0u8; 2]);
        queue_ports(&mut h, 0x80, 1, &[5, 6, 7]);
        let (e, r) = gp(&mut h, &[0x67, 0xf3, 0x6c], regs(3, 0, 0xffff_fffe, 0x80));
        assert_eq!(e.iter().filter(|e| matches!(e, Effect::WriteGuest { addr, .. } if *addr >= 0xffff_fffe && *addr < 0x1_0000_0000)).count(), 2);
        assert_eq!((r.rcx, r.rdi, r.rip), (1, 0, RIP));
    }

    #[test]
    fn long_counts_restart_the_instruction() {
        let mut h = setup(1);
        h.mem.map(BUF, &[0u8; 0x200]);
        let (e, r) = gp(&mut h, &[0xf3, 0x6e], regs(100, BUF, 0, 0x80));
        assert_eq!(port_outs(&e).len() as u64, super::MAX_REPS);
        assert_eq!(
            (r.rcx, r.rsi, r.rip),
            (100 - super::MAX_REPS, BUF + super::MAX_REPS, RIP)
        );
        let (e, r) = gp(&mut h, &[0xf3, 0x6e], r);
        assert_eq!(port_outs(&e).len() as u64, 100 - super::MAX_REPS);
        assert_eq!((r.rcx, r.rsi, r.rip), (0, BUF + 100, RIP + 2));
    }

    #[test]
    fn faults_keep_rep_progress_and_name_the_first_bad_byte() {
        let mut h = setup(1);
        // Six bytes mapped: the first dword lands, the second gets two bytes, then #PF(W).
        h.mem.map(BUF, &[0u8; 6]);
        queue_ports(&mut h, 0x80, 4, &[0x1111_1111, 0x2222_2222]);
        let (e, r) = gp(&mut h, &[0xf3, 0x6d], regs(2, 0, BUF, 0x80));
        assert_eq!(writes(&e), [(BUF, vec![0x11; 4]), (BUF + 4, vec![0x22; 2])]);
        assert_eq!((r.rip, r.rdi), (HANDLER, BUF + 4));
        let (rcx, ec, rip) = frame(&h, r.rsp);
        assert_eq!((rcx, ec, rip), (1, 2, RIP));
        assert_eq!(crate::pv::state::get(&h.state, (0, 0)).cr2, BUF + 6);
        // Without REP nothing moves; outs faults with error code 0.
        let (e, r) = gp(&mut h, &[0x6f], regs(9, BUF + 4, 0, 0x80));
        assert!(port_outs(&e).is_empty());
        assert_eq!((r.rip, r.rsi), (HANDLER, BUF + 4));
        let (rcx, ec, _) = frame(&h, r.rsp);
        assert_eq!((rcx, ec), (9, 0));
        assert_eq!(crate::pv::state::get(&h.state, (0, 0)).cr2, BUF + 6);
        // Index 0 with 64-bit addressing: the null page faults (no endless restart).
        let (_, r) = gp(&mut h, &[0xf3, 0x6c], regs(3, 0, 0, 0x80));
        assert_eq!((r.rip, r.rdi), (HANDLER, 0));
        assert_eq!(frame(&h, r.rsp).0, 3);
        assert_eq!(crate::pv::state::get(&h.state, (0, 0)).cr2, 0);
        // A non-canonical address is #GP(0).
        let (e, r) = gp(&mut h, &[0x6e], regs(0, 0x8000_0000_0000_0000, 0, 0x80));
        assert!(port_outs(&e).is_empty());
        assert_eq!(r.rip, HANDLER);
        assert_eq!(frame(&h, r.rsp).1, 0);
    }

    #[test]
    fn unprivileged_domains_read_ones_and_write_nothing() {
        let mut h = setup(1);
        let j = &mut lockstep::Journal::new();
        j.begin(99);
        h.state
            .domains
            .update(j, &0, |d| d.flags.privileged = false);
        lockstep::replica::forget(&mut h.state);
        h.mem.map(BUF, &[0u8; 4]);
        let (e, _) = gp(&mut h, &[0x66, 0x6d], regs(0, 0, BUF, 0x80));
        assert_eq!(writes(&e), [(BUF, vec![0xff, 0xff])]);
        let (e, r) = gp(&mut h, &[0x6e], regs(0, BUF, 0, 0x80));
        assert!(port_outs(&e).is_empty());
        assert_eq!(r.rip, RIP + 1);
    }
}
