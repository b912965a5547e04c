//! `event_channel_op(cmd, arg)` (hypercall 32): decodes the guest's argument struct, runs
//! the operation of [`crate::evtchn::ops`] (or [`crate::evtchn::fifo`] for the FIFO ABI's
//! `init_control`, `expand_array` and `set_priority`), and copies the struct back the way
//! Xen does — the whole struct as it came in, with only the OUT fields replaced (so padding
//! and unused union bytes keep the guest's values).

use super::guest_arg::read_raw as read_arg;
use crate::evtchn::fifo;
use crate::evtchn::ops::{self, ResetProgress};
use crate::evtchn::ChanState;
use crate::hv::{Ctx, HvResult, HvState};
use core::mem::offset_of;
use dom0_interface::event_channel::*;

/// `EVTCHNOP_reset_cont`: Xen's continuation of `EVTCHNOP_reset` (a guest may issue it too).
pub const EVTCHNOP_RESET_CONT: u32 = 14;

/// Replaces the little-endian u32 at `off` in `raw`.
fn put_u32(raw: &mut [u8], off: usize, v: u32) {
    if let Some(s) = raw.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Replaces the little-endian u16 at `off` in `raw`.
fn put_u16(raw: &mut [u8], off: usize, v: u16) {
    if let Some(s) = raw.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Writes an allocated port back into the struct at `off` (Xen's `__copy_to_guest`; a
/// failure is -EFAULT and the port stays allocated, as in Xen).
fn return_port(
    ctx: &mut Ctx<'_, '_, '_>,
    arg: u64,
    raw: &mut [u8],
    off: usize,
    port: u32,
) -> HvResult {
    put_u32(raw, off, port);
    ctx.copy_to_guest(arg, raw)?;
    Ok(0)
}

/// `event_channel_op(cmd, arg)`.
pub fn event_channel_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, arg, ..] = ctx.req.args;
    // Xen's `cmd` is an `int`: the upper half of the register is ignored.
    match cmd as u32 {
        EVTCHNOP_ALLOC_UNBOUND => {
            let (mut raw, a) = read_arg::<EvtchnAllocUnbound>(ctx, arg)?;
            let port = ops::alloc_unbound(state, ctx, a.dom, a.remote_dom)?;
            return_port(
                ctx,
                arg,
                &mut raw,
                offset_of!(EvtchnAllocUnbound, port),
                port,
            )
        }
        EVTCHNOP_BIND_INTERDOMAIN => {
            let (mut raw, b) = read_arg::<EvtchnBindInterdomain>(ctx, arg)?;
            let port = ops::bind_interdomain(state, ctx, b.remote_dom, b.remote_port)?;
            let off = offset_of!(EvtchnBindInterdomain, local_port);
            return_port(ctx, arg, &mut raw, off, port)
        }
        EVTCHNOP_BIND_VIRQ => {
            let (mut raw, b) = read_arg::<EvtchnBindVirq>(ctx, arg)?;
            let port = ops::bind_virq(state, ctx, b.virq, b.vcpu)?;
            return_port(ctx, arg, &mut raw, offset_of!(EvtchnBindVirq, port), port)
        }
        EVTCHNOP_BIND_IPI => {
            let (mut raw, b) = read_arg::<EvtchnBindIpi>(ctx, arg)?;
            let port = ops::bind_ipi(state, ctx, b.vcpu)?;
            return_port(ctx, arg, &mut raw, offset_of!(EvtchnBindIpi, port), port)
        }
        EVTCHNOP_BIND_PIRQ => {
            let (mut raw, b) = read_arg::<EvtchnBindPirq>(ctx, arg)?;
            let share = b.flags & BIND_PIRQ_WILL_SHARE != 0;
            let port = crate::pirq::ops::bind(state, ctx, b.pirq, share)?;
            return_port(ctx, arg, &mut raw, offset_of!(EvtchnBindPirq, port), port)
        }
        EVTCHNOP_CLOSE => {
            let (_, c) = read_arg::<EvtchnClose>(ctx, arg)?;
            let dom = ctx.dom();
            ops::close(state, ctx, dom, c.port)?;
            Ok(0)
        }
        EVTCHNOP_SEND => {
            let (_, s) = read_arg::<EvtchnSend>(ctx, arg)?;
            ops::send(state, ctx, s.port)?;
            Ok(0)
        }
        EVTCHNOP_STATUS => status(state, ctx, arg),
        EVTCHNOP_BIND_VCPU => {
            let (_, b) = read_arg::<EvtchnBindVcpu>(ctx, arg)?;
            ops::bind_vcpu(state, ctx, b.port, b.vcpu)?;
            Ok(0)
        }
        EVTCHNOP_UNMASK => {
            let (_, u) = read_arg::<EvtchnUnmask>(ctx, arg)?;
            ops::unmask(state, ctx, u.port)?;
            Ok(0)
        }
        c @ (EVTCHNOP_RESET | EVTCHNOP_RESET_CONT) => {
            let (_, r) = read_arg::<EvtchnReset>(ctx, arg)?;
            match ops::reset(state, ctx, r.dom, c == EVTCHNOP_RESET_CONT)? {
                ResetProgress::Done => Ok(0),
                ResetProgress::Preempted => {
                    let a = ctx.req.args;
                    ctx.emit(crate::effect::Effect::Continue([
                        u64::from(EVTCHNOP_RESET_CONT),
                        arg,
                        a[2],
                        a[3],
                        a[4],
                    ]));
                    Ok(0)
                }
            }
        }
        EVTCHNOP_INIT_CONTROL => {
            let (mut raw, c) = read_arg::<EvtchnInitControl>(ctx, arg)?;
            fifo::init_control(state, ctx, c.control_gfn, c.offset, c.vcpu)?;
            // Xen fills link_bits first but copies the struct back only on success (a failed
            // copy is -EFAULT with the control block registered).
            if let Some(b) = raw.get_mut(offset_of!(EvtchnInitControl, link_bits)) {
                *b = EVTCHN_FIFO_LINK_BITS as u8;
            }
            ctx.copy_to_guest(arg, &raw)?;
            Ok(0)
        }
        EVTCHNOP_EXPAND_ARRAY => {
            let (_, e) = read_arg::<EvtchnExpandArray>(ctx, arg)?;
            fifo::expand_array(state, ctx, e.array_gfn)?;
            Ok(0)
        }
        EVTCHNOP_SET_PRIORITY => {
            let (_, p) = read_arg::<EvtchnSetPriority>(ctx, arg)?;
            fifo::set_priority(state, ctx, p.port, p.priority)?;
            Ok(0)
        }
        _ => super::unknown_subop(state, ctx, "event_channel_op", cmd),
    }
}

/// `EVTCHNOP_status`: fills `status`, `vcpu` and the union members the state uses.
fn status(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    let (mut raw, s) = read_arg::<EvtchnStatus>(ctx, arg)?;
    let st = ops::status(state, ctx.dom(), s.dom, s.port)?;
    let u = offset_of!(EvtchnStatus, u);
    let code = match st.state {
        None => EVTCHNSTAT_CLOSED,
        Some(ChanState::Unbound { remote_dom }) => {
            put_u16(&mut raw, u, remote_dom);
            EVTCHNSTAT_UNBOUND
        }
        Some(ChanState::Interdomain {
            remote_dom,
            remote_port,
        }) => {
            put_u16(&mut raw, u, remote_dom);
            put_u32(&mut raw, u + 4, remote_port);
            EVTCHNSTAT_INTERDOMAIN
        }
        Some(ChanState::Virq(virq)) => {
            put_u32(&mut raw, u, virq);
            EVTCHNSTAT_VIRQ
        }
        Some(ChanState::Ipi) => EVTCHNSTAT_IPI,
        Some(ChanState::Pirq(pirq)) => {
            put_u32(&mut raw, u, pirq);
            EVTCHNSTAT_PIRQ
        }
    };
    put_u32(&mut raw, offset_of!(EvtchnStatus, status), code);
    put_u32(&mut raw, offset_of!(EvtchnStatus, vcpu), st.vcpu);
    ctx.copy_to_guest(arg, &raw)?;
    Ok(0)
}

#[cfg(test)]
mod tests;
