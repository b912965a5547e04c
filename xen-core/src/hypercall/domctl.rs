//! `HYPERVISOR_domctl` (Xen 4.17 `do_domctl`): copy in the `xen_domctl`, check the interface
//! version (-EACCES), find the target domain (-ESRCH), the dummy XSM policy (privileged
//! caller, else -EPERM), the sub-op, and the copyback of the whole struct as an effect.
//!
//! Sub-ops: createdomain (Xen's domid rover, the domain paused once, vCPUs created later by
//! max_vcpus), destroydomain, pause/unpausedomain (the controller pause count),
//! getdomaininfo (first domain at or above the id, as 4.17), max_mem, max_vcpus,
//! setvcpucontext, getvcpucontext ([`context`]) and getvcpuinfo. Anything else answers -ENOSYS, as Xen 4.17 does (checked
//! against it by the `domctl` test guest).

mod context;
#[cfg(test)]
mod context_tests;
mod info;
mod lifecycle;
#[cfg(test)]
mod tests;

pub use info::domain_info;
pub use lifecycle::{destroy, domain_shut_down};

use crate::effect::DomId;
use crate::hv::{Ctx, HvError, HvResult, HvState};
use dom0_interface::arch_x86::VcpuGuestContext;
use dom0_interface::domctl::*;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::DOMID_FIRST_RESERVED;

/// What a sub-op did: the value for RAX and whether the struct is copied back.
pub(crate) struct Done {
    /// Return value.
    pub ret: i64,
    /// Copy the (updated) `xen_domctl` back to the caller.
    pub copyback: bool,
}

impl Done {
    fn ok() -> Result<Done, HvError> {
        Ok(Done {
            ret: 0,
            copyback: false,
        })
    }
    fn copyback() -> Result<Done, HvError> {
        Ok(Done {
            ret: 0,
            copyback: true,
        })
    }
}

/// `do_domctl(u_domctl)`.
pub fn domctl(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let arg = ctx.req.args[0];
    let mut b = [0u8; XenDomctl::SIZE];
    ctx.copy_from_guest(arg, &mut b)?;
    let mut op = XenDomctl::read_from(&b).map_err(|_| XenErrno::EFAULT)?;
    if !op.version_matches() {
        return Err(XenErrno::EACCES.into());
    }
    // Xen looks the target up before asking XSM: a missing domain is -ESRCH for anyone
    // (createdomain names none; getdomaininfo searches onwards itself).
    let needs_domain = !matches!(
        op.cmd,
        XEN_DOMCTL_CREATEDOMAIN
            | XEN_DOMCTL_TEST_ASSIGN_DEVICE
            | XEN_DOMCTL_GDBSX_GUESTMEMIO
            | XEN_DOMCTL_GETDOMAININFO
    );
    if needs_domain && !state.domains.contains_key(&op.domain) {
        return Err(XenErrno::ESRCH.into());
    }
    // getdomaininfo's onward search also runs before XSM: with no domain at or above the
    // id, anyone gets -ESRCH (checked on Xen 4.17 by the `domrun` guest's domU).
    if op.cmd == XEN_DOMCTL_GETDOMAININFO
        && op.domain < DOMID_FIRST_RESERVED
        && first_domain_from(state, op.domain).is_none()
    {
        return Err(XenErrno::ESRCH.into());
    }
    if !super::is_privileged(state, ctx.dom()) {
        return Err(XenErrno::EPERM.into());
    }
    let done = match op.cmd {
        XEN_DOMCTL_CREATEDOMAIN => lifecycle::createdomain(state, ctx, &mut op)?,
        XEN_DOMCTL_DESTROYDOMAIN => lifecycle::destroydomain(state, ctx, op.domain)?,
        XEN_DOMCTL_PAUSEDOMAIN => lifecycle::pause(state, ctx, op.domain)?,
        XEN_DOMCTL_UNPAUSEDOMAIN => lifecycle::unpause(state, ctx, op.domain)?,
        XEN_DOMCTL_GETDOMAININFO => getdomaininfo(state, ctx, &mut op)?,
        XEN_DOMCTL_MAX_MEM => max_mem(state, ctx, &op)?,
        XEN_DOMCTL_MAX_VCPUS => lifecycle::max_vcpus(state, ctx, &op)?,
        XEN_DOMCTL_SETVCPUCONTEXT => setvcpucontext(state, ctx, &op)?,
        XEN_DOMCTL_GETVCPUCONTEXT => context::getvcpucontext(state, ctx, &op)?,
        XEN_DOMCTL_GETVCPUINFO => getvcpuinfo(state, ctx, &mut op)?,
        cmd => {
            super::warn_once(
                state,
                ctx,
                (1 << 62) | u64::from(cmd),
                &alloc::format!("domctl: unsupported sub-op {cmd}, returning -ENOSYS"),
            );
            return Err(XenErrno::ENOSYS.into());
        }
    };
    if done.copyback {
        ctx.copy_to_guest(arg, &op.to_vec())?;
    }
    Ok(done.ret)
}

/// Xen 4.17's getdomaininfo: the first domain whose id is at least `op.domain` (ids in the
/// reserved range are -EINVAL, none left -ESRCH); `op.domain` becomes its id.
fn getdomaininfo(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    op: &mut XenDomctl,
) -> Result<Done, HvError> {
    let found = if state.domains.contains_key(&op.domain) {
        Some(op.domain)
    } else {
        if op.domain >= DOMID_FIRST_RESERVED {
            return Err(XenErrno::EINVAL.into());
        }
        first_domain_from(state, op.domain)
    };
    let d = found.ok_or(XenErrno::ESRCH)?;
    let info = domain_info(state, ctx, d)?;
    op.set_payload(&info).map_err(|_| XenErrno::EINVAL)?;
    op.domain = d;
    Done::copyback()
}

/// The lowest domain id `>= from`.
pub fn first_domain_from(state: &HvState, from: DomId) -> Option<DomId> {
    state
        .domains
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| *k >= from && *k < DOMID_FIRST_RESERVED)
        .min()
}

/// `XEN_DOMCTL_max_mem`: `max_pages = max_memkb / 4`, capped at 2^32 - 1; a limit below
/// `tot_pages` is accepted (the domain ratchets down: no allocation succeeds meanwhile).
fn max_mem(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    op: &XenDomctl,
) -> Result<Done, HvError> {
    let m: XenDomctlMaxMem = op.payload().map_err(|_| XenErrno::EINVAL)?;
    let pages = (m.max_memkb >> 2).min(u64::from(u32::MAX));
    state
        .domains
        .update(ctx.journal(), &op.domain, |d| d.max_pages = pages);
    Done::ok()
}

/// `XEN_DOMCTL_setvcpucontext`: not on the caller's own domain, a created vCPU below
/// `max_vcpus` (-EINVAL); a null context resets the vCPU (drops its page-table roots and
/// descriptor tables and takes it offline); otherwise the 64-bit PV context is copied in
/// (-EFAULT) and applied as `arch_set_info_guest` ([`super::vcpu::apply_context`]).
fn setvcpucontext(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    op: &XenDomctl,
) -> Result<Done, HvError> {
    let c: XenDomctlVcpucontext = op.payload().map_err(|_| XenErrno::EINVAL)?;
    let d = op.domain;
    let max = state.domains.get(&d).map_or(0, |x| x.max_vcpus);
    if d == ctx.dom() || c.vcpu >= max || !state.vcpus.contains_key(&(d, c.vcpu)) {
        return Err(XenErrno::EINVAL.into());
    }
    let key = (d, c.vcpu);
    if c.ctxt == 0 {
        lifecycle::reset_vcpu(state, ctx, key)?;
        return Done::ok();
    }
    let mut b = alloc::vec![0u8; VcpuGuestContext::SIZE];
    ctx.copy_from_guest(c.ctxt, &mut b)?;
    // Boxed: the context is 5 KiB and the hypercall stack also holds the page-table walk.
    let vc = alloc::boxed::Box::new(VcpuGuestContext::read_from(&b).map_err(|_| XenErrno::EFAULT)?);
    // An initialised vCPU is not reset: Xen loads its registers and the like only if the
    // context keeps its page tables, GDT and LDT (-EOPNOTSUPP otherwise).
    super::vcpu::apply_context(state, ctx, key, &vc)?;
    Done::ok()
}

/// `XEN_DOMCTL_getvcpuinfo`: -EINVAL beyond `max_vcpus`, -ESRCH for a vCPU not created yet.
fn getvcpuinfo(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    op: &mut XenDomctl,
) -> Result<Done, HvError> {
    let mut v: XenDomctlGetvcpuinfo = op.payload().map_err(|_| XenErrno::EINVAL)?;
    let d = op.domain;
    let max = state.domains.get(&d).map_or(0, |x| x.max_vcpus);
    if v.vcpu >= max {
        return Err(XenErrno::EINVAL.into());
    }
    let key = (d, v.vcpu);
    let Some(vc) = state.vcpus.get(&key).cloned() else {
        return Err(XenErrno::ESRCH.into());
    };
    let now = info::now(state, ctx)?;
    let s = crate::sched::vcpu_sched(state, key);
    v.online = u8::from(vc.online);
    v.blocked = u8::from(vc.blocked);
    v.running = u8::from(info::is_running(state, key));
    v.cpu_time = s.runstate.at(now).time[0];
    v.cpu = if s.pcpu == crate::sched::UNPLACED {
        0
    } else {
        s.pcpu
    };
    op.set_payload(&v).map_err(|_| XenErrno::EINVAL)?;
    Done::copyback()
}
