//! `physdev_op` (33): what a PV kernel without passed-through devices uses — set_iopl,
//! set_iobitmap, irq_status_query, eoi — answered as Xen 4.17 answers it.

use crate::hv::{Ctx, HvResult, HvState};
use crate::pv::state;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::physdev::*;

/// `IOBMP_BYTES`: a full I/O bitmap (65536 ports).
pub const IOBMP_BYTES: u64 = 8192;

/// PIRQs of dom0 (`d0 has maximum 232 PIRQs` on the oracle: q35, 2 CPUs).
pub const DOM0_NR_PIRQS: u32 = 232;
/// PIRQs of another domain: the 24 GSIs plus Xen's default 32 extra.
pub const DOMU_NR_PIRQS: u32 = 24 + 32;

/// The number of PIRQs `dom` may use.
pub fn nr_pirqs(state: &HvState, dom: crate::effect::DomId) -> u32 {
    if crate::hypercall::is_privileged(state, dom) {
        DOM0_NR_PIRQS
    } else {
        DOMU_NR_PIRQS
    }
}

/// `physdev_op(cmd, arg)`.
pub fn physdev_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, arg, ..] = ctx.req.args;
    match cmd as u32 {
        PHYSDEVOP_SET_IOPL => {
            let mut raw = [0u8; PhysdevSetIopl::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let s = PhysdevSetIopl::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            if s.iopl > 3 {
                return Err(XenErrno::EINVAL.into());
            }
            let k = state::key(ctx);
            let j = ctx.journal();
            state::update(state, j, k, |p| p.iopl = u64::from(s.iopl) << 12);
            Ok(0)
        }
        PHYSDEVOP_SET_IOBITMAP => {
            let mut raw = [0u8; PhysdevSetIobitmap::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let s = PhysdevSetIobitmap::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            // guest_handle_okay(bitmap, IOBMP_BYTES): `__addr_ok` of the start (below 2^47 or
            // above the hypervisor's range); the bitmap itself is read at each access.
            let handle_ok = state::addr_ok(s.bitmap) && state::is_canonical(s.bitmap);
            if !handle_ok || s.nr_ports > 65536 {
                return Err(XenErrno::EINVAL.into());
            }
            let k = state::key(ctx);
            let j = ctx.journal();
            state::update(state, j, k, |p| {
                p.iobmp = s.bitmap;
                p.iobmp_limit = s.nr_ports;
            });
            Ok(0)
        }
        PHYSDEVOP_IRQ_STATUS_QUERY => {
            let mut raw = [0u8; PhysdevIrqStatusQuery::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let mut q = PhysdevIrqStatusQuery::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            if q.irq >= nr_pirqs(state, ctx.dom()) {
                return Err(XenErrno::EINVAL.into());
            }
            // No PIRQ is shared; every one needs an EOI (no EOI map registered).
            q.flags = XENIRQSTAT_NEEDS_EOI;
            ctx.copy_to_guest(arg, &q.to_vec())?;
            Ok(0)
        }
        PHYSDEVOP_EOI => {
            let mut raw = [0u8; PhysdevEoi::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let e = PhysdevEoi::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            if e.irq >= nr_pirqs(state, ctx.dom()) {
                return Err(XenErrno::EINVAL.into());
            }
            // No PIRQ is bound to a device: nothing to acknowledge.
            Ok(0)
        }
        _ => super::unknown_subop(state, ctx, "physdev_op", cmd),
    }
}
