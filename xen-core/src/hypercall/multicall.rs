//! `multicall` (13): runs a list of `multicall_entry` through the same dispatcher, writing
//! each result back, as Xen 4.17's `common/multicall.c`: a nested multicall is refused with
//! -EINVAL, `iret` ends the list, a fault on the list ends it with -EFAULT, and a long list
//! continues itself in batches.

use crate::effect::Effect;
use crate::hv::{Ctx, HvError, HvResult, HvState};
use crate::pv::state;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::{MulticallEntry, HYPERVISOR_IRET};

/// Entries one transaction runs before the multicall continues itself (Xen continues when
/// preemption is pending; the guest cannot tell the difference).
pub const MULTICALL_BATCH: u32 = 64;

/// `multicall(call_list, nr_calls)`.
pub fn multicall(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [list, nr, ..] = ctx.req.args;
    let nr = nr as u32;
    let k = state::key(ctx);
    if state::in_multicall(state, k) {
        return Err(XenErrno::EINVAL.into());
    }
    if !state::addr_ok(list) {
        return Err(XenErrno::EFAULT.into());
    }
    let j = ctx.journal();
    state.in_multicall.insert(j, k, true);
    let saved = ctx.req;
    let r = run(state, ctx, list, nr);
    let j = ctx.journal();
    state.in_multicall.remove(j, &k);
    match r {
        Ok(Some(done)) => {
            let mut args = saved.args;
            args[0] = list.wrapping_add(u64::from(done) * MulticallEntry::SIZE as u64);
            args[1] = u64::from(nr - done);
            ctx.emit(Effect::Continue(args));
            Ok(0)
        }
        Ok(None) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Runs the entries; `Ok(Some(i))` when it stopped after `i` entries to continue later.
fn run(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    list: u64,
    nr: u32,
) -> Result<Option<u32>, HvError> {
    for i in 0..nr {
        if i == MULTICALL_BATCH {
            return Ok(Some(i));
        }
        let at = list.wrapping_add(u64::from(i) * MulticallEntry::SIZE as u64);
        let mut raw = [0u8; MulticallEntry::SIZE];
        ctx.copy_from_guest(at, &mut raw)?;
        let e = MulticallEntry::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
        let sub = crate::request::Request {
            nr: e.op,
            args: [e.args[0], e.args[1], e.args[2], e.args[3], e.args[4]],
            ..*ctx.req
        };
        let result = match crate::hypercall::dispatch(state, &mut ctx.with_req(&sub)) {
            Ok(v) => v,
            Err(HvError::Errno(x)) => x.as_neg(),
            Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
        };
        let wrote = ctx.copy_to_guest(at.wrapping_add(8), &result.to_le_bytes());
        if e.op == u64::from(HYPERVISOR_IRET) {
            return Ok(None);
        }
        wrote?;
    }
    Ok(None)
}
