//! `grant_table_op(cmd, uop, count)` (20), as Xen 4.17's `do_grant_table_op`: the sub-op
//! checks (`count` as a signed int, continuation bits only for cache_flush), the batched
//! sub-ops (map, unmap, unmap_and_replace, copy, swap) with their per-op status and their
//! continuation after [`GNTTAB_OPS_PER_CALL`] operations, and the single-op table calls.

use super::guest_arg::Raw;
use crate::effect::{Effect, MmEffect};
use crate::gnttab::{copy, map, table, Gntst};
use crate::hv::{Ctx, HvError, HvResult, HvState};
use crate::hypercall::mmu::current_cr3;
use crate::mm::env::{CtxEnv, MmEnv};
use crate::mm::pt::addr_ok;
use dom0_interface::errno::XenErrno;
use dom0_interface::grant_table as gt;
use dom0_interface::guest_abi::GuestAbi;

/// Batched operations one transaction handles before the call continues itself (Xen
/// continues when preemption is pending; a fixed count keeps both executions identical).
pub const GNTTAB_OPS_PER_CALL: u32 = 32;
/// `GNTTABOP_CMD_MASK`: the sub-op; the bits above carry cache_flush's continuation.
const CMD_MASK: u32 = (1 << 12) - 1;

/// `guest_handle_okay(uop, count)` for elements of `size` bytes.
fn handle_okay(uop: u64, count: u32, size: usize) -> bool {
    let bytes = u64::from(count) * size as u64;
    count == 0 || (addr_ok(uop) && uop.checked_add(bytes - 1).is_some_and(addr_ok))
}

/// What one batched element did.
enum Step {
    /// Write these bytes at this offset of the element (the result), then go on.
    Write(usize, Raw),
    /// Nothing to write back; go on.
    Next,
}

/// Runs `one` over the `count` elements at `uop`, continuing after the batch size.
fn batch(
    st: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    size: usize,
    mut one: impl FnMut(&mut HvState, &mut CtxEnv<'_, '_, '_, '_>, &[u8], u64) -> Result<Step, HvError>,
) -> HvResult {
    let [cmd, uop, count, a3, a4] = ctx.req.args;
    let count = count as u32;
    if !handle_okay(uop, count, size) {
        return Err(XenErrno::EFAULT.into());
    }
    let cr3 = current_cr3(st, ctx);
    let mut done = 0u32;
    let mut rc: HvResult = Ok(0);
    {
        let mut env = CtxEnv::new(ctx);
        while done < count {
            if done == GNTTAB_OPS_PER_CALL {
                break;
            }
            let at = uop + u64::from(done) * size as u64;
            let mut raw = Raw::zeroed(size);
            match env.ctx.copy_from_guest(at, &mut raw[..]) {
                Ok(()) => {}
                Err(e) => {
                    rc = Err(e);
                    break;
                }
            }
            if let Step::Write(off, bytes) = one(st, &mut env, &raw[..], cr3)? {
                if let Err(e) = env.ctx.copy_to_guest(at + off as u64, &bytes) {
                    rc = Err(e);
                    done += 1;
                    break;
                }
            }
            done += 1;
        }
        env.finish();
    }
    if let Err(HvError::Abort(a)) = rc {
        return Err(HvError::Abort(a));
    }
    if rc.is_ok() && done < count {
        ctx.emit(Effect::Continue([
            cmd & u64::from(CMD_MASK),
            uop + u64::from(done) * size as u64,
            u64::from(count - done),
            a3,
            a4,
        ]));
    }
    rc
}

fn decode<T: GuestAbi>(raw: &[u8]) -> Result<T, HvError> {
    T::read_from(raw).map_err(|_| XenErrno::EFAULT.into())
}

fn status_bytes(s: Gntst) -> Raw {
    Raw::from(&s.to_le_bytes()[..])
}

fn flush_caller(ctx: &mut Ctx<'_, '_, '_>) {
    let dom = ctx.dom();
    ctx.emit(Effect::Mm(MmEffect::FlushTlb {
        dom,
        vcpus: None,
        va: None,
    }));
}

/// `grant_table_op(cmd, uop, count)`.
pub fn grant_table_op(st: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, uop, count, ..] = ctx.req.args;
    let count = count as u32;
    if (count as i32) < 0 {
        return Err(XenErrno::EINVAL.into());
    }
    let cmd = cmd as u32;
    let sub = cmd & CMD_MASK;
    if sub != gt::GNTTABOP_CACHE_FLUSH && cmd & !CMD_MASK != 0 {
        return Err(XenErrno::EINVAL.into());
    }
    let ld = ctx.dom();
    match sub {
        gt::GNTTABOP_MAP_GRANT_REF => {
            batch(st, ctx, gt::GnttabMapGrantRef::SIZE, |st, env, raw, cr3| {
                let mut op: gt::GnttabMapGrantRef = decode(raw)?;
                let r = map::map_one(st, env, ld, cr3, &op)?;
                op.status = r.status;
                if r.status == gt::GNTST_OKAY {
                    op.handle = r.handle;
                    op.dev_bus_addr = r.dev_bus_addr;
                }
                if op.flags & gt::GNTMAP_HOST_MAP != 0 && op.flags & gt::GNTMAP_CONTAINS_PTE == 0 {
                    env.emit(Effect::Mm(MmEffect::FlushTlb {
                        dom: ld,
                        vcpus: None,
                        va: Some(op.host_addr),
                    }));
                }
                let mut back = Raw::zeroed(gt::GnttabMapGrantRef::SIZE);
                op.write_to(&mut back)
                    .map_err(|_| HvError::Errno(XenErrno::EFAULT))?;
                Ok(Step::Write(0, back))
            })
        }
        gt::GNTTABOP_UNMAP_GRANT_REF => {
            let r = batch(
                st,
                ctx,
                gt::GnttabUnmapGrantRef::SIZE,
                |st, env, raw, cr3| {
                    let op: gt::GnttabUnmapGrantRef = decode(raw)?;
                    let req = map::UnmapReq {
                        host_addr: op.host_addr,
                        dev_bus_addr: op.dev_bus_addr,
                        handle: op.handle,
                        new_addr: 0,
                    };
                    let s = map::unmap_one(st, env, ld, cr3, &req)?;
                    Ok(Step::Write(20, status_bytes(s)))
                },
            );
            flush_caller(ctx);
            r
        }
        gt::GNTTABOP_UNMAP_AND_REPLACE => {
            let r = batch(
                st,
                ctx,
                gt::GnttabUnmapAndReplace::SIZE,
                |st, env, raw, cr3| {
                    let op: gt::GnttabUnmapAndReplace = decode(raw)?;
                    let req = map::UnmapReq {
                        host_addr: op.host_addr,
                        dev_bus_addr: 0,
                        handle: op.handle,
                        new_addr: op.new_addr,
                    };
                    let s = map::unmap_one(st, env, ld, cr3, &req)?;
                    Ok(Step::Write(20, status_bytes(s)))
                },
            );
            flush_caller(ctx);
            r
        }
        gt::GNTTABOP_COPY => batch(st, ctx, gt::GnttabCopy::SIZE, |st, env, raw, _| {
            let op: gt::GnttabCopy = decode(raw)?;
            let s = copy::copy_one(st, env, ld, &op)?;
            Ok(Step::Write(36, status_bytes(s)))
        }),
        gt::GNTTABOP_SWAP_GRANT_REF => {
            batch(st, ctx, gt::GnttabSwapGrantRef::SIZE, |st, env, raw, _| {
                let op: gt::GnttabSwapGrantRef = decode(raw)?;
                let s = crate::gnttab::swap::swap(st, env, ld, op.ref_a, op.ref_b)?;
                Ok(Step::Write(8, status_bytes(s)))
            })
        }
        gt::GNTTABOP_TRANSFER => batch(st, ctx, gt::GnttabTransfer::SIZE, |st, env, raw, _| {
            let op: gt::GnttabTransfer = decode(raw)?;
            let s = crate::gnttab::transfer::transfer_one(st, env, ld, &op)?;
            Ok(Step::Write(16, status_bytes(s)))
        }),
        gt::GNTTABOP_CACHE_FLUSH => {
            let cur_ref = cmd >> 12;
            batch(st, ctx, gt::GnttabCacheFlush::SIZE, |st, env, raw, _| {
                let op: gt::GnttabCacheFlush = decode(raw)?;
                crate::gnttab::cache::cache_flush_one(st, env, ld, &op, cur_ref)?;
                Ok(Step::Next)
            })
        }
        gt::GNTTABOP_SETUP_TABLE => {
            let mut env = CtxEnv::new(ctx);
            table::setup_table(st, &mut env, uop, count)
        }
        gt::GNTTABOP_QUERY_SIZE => {
            let mut env = CtxEnv::new(ctx);
            table::query_size(st, &mut env, uop, count)
        }
        gt::GNTTABOP_SET_VERSION => {
            let mut env = CtxEnv::new(ctx);
            table::set_version(st, &mut env, uop)
        }
        gt::GNTTABOP_GET_VERSION => {
            let mut env = CtxEnv::new(ctx);
            table::get_version(st, &mut env, uop)
        }
        gt::GNTTABOP_GET_STATUS_FRAMES => {
            let mut env = CtxEnv::new(ctx);
            table::get_status_frames(st, &mut env, uop, count)
        }
        _ => crate::hypercall::unknown_subop(st, ctx, "grant_table_op", u64::from(sub)),
    }
}
