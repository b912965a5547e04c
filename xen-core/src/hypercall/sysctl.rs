//! `HYPERVISOR_sysctl` (Xen 4.17 `do_sysctl`): copy in the `xen_sysctl` (-EFAULT), the
//! interface version (-EACCES), the dummy XSM policy (privileged caller, else -EPERM), the
//! sub-op, and the copyback as an effect. Sub-ops here: physinfo, sched_id,
//! getdomaininfolist, readconsole and DualVisor's lockstep control;
//! anything else is -ENOSYS, as Xen's `arch_do_sysctl` answers.

mod hw_cap;
#[cfg(test)]
mod tests;

use crate::hv::{value_kind, Ctx, HvError, HvResult, HvState};
use dom0_interface::domctl::XenDomctlGetdomaininfo;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::sysctl::*;
use dom0_interface::xen::DOMID_FIRST_RESERVED;

/// What DualVisor reports in physinfo `capabilities`: PV guests with grant tables v1.
pub const PHYSCAP: u32 = XEN_SYSCTL_PHYSCAP_PV | XEN_SYSCTL_PHYSCAP_GNTTAB_V1;
/// `MAX_NUMNODES - 1` of Xen's x86 build (physinfo `max_node_id`).
pub const MAX_NODE_ID: u32 = 63;

/// `do_sysctl(u_sysctl)`.
pub fn sysctl(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let arg = ctx.req.args[0];
    let mut b = [0u8; XenSysctl::SIZE];
    ctx.copy_from_guest(arg, &mut b)?;
    let mut op = XenSysctl::read_from(&b).map_err(|_| XenErrno::EFAULT)?;
    if !op.version_matches() {
        return Err(XenErrno::EACCES.into());
    }
    if !super::is_privileged(state, ctx.dom()) {
        return Err(XenErrno::EPERM.into());
    }
    match op.cmd {
        XEN_SYSCTL_PHYSINFO => {
            let p = physinfo(state, ctx)?;
            op.set_payload(&p).map_err(|_| XenErrno::EINVAL)?;
        }
        XEN_SYSCTL_SCHED_ID => {
            let id = XenSysctlSchedId {
                sched_id: crate::sched::XEN_SCHED_ID,
            };
            op.set_payload(&id).map_err(|_| XenErrno::EINVAL)?;
        }
        XEN_SYSCTL_GETDOMAININFOLIST => getdomaininfolist(state, ctx, &mut op)?,
        dom0_interface::lockstep_ctl::XEN_SYSCTL_DUALVISOR_LOCKSTEP => {
            return super::lockstep_ctl::lockstep_op(state, ctx, op, arg);
        }
        XEN_SYSCTL_READCONSOLE => {
            let mut rc: XenSysctlReadconsole = op.payload().map_err(|_| XenErrno::EFAULT)?;
            super::readconsole::readconsole(ctx, &mut rc)?;
            op.set_payload(&rc).map_err(|_| XenErrno::EINVAL)?;
        }
        cmd => {
            super::warn_once(
                state,
                ctx,
                (1 << 61) | u64::from(cmd),
                &alloc::format!("sysctl: unsupported sub-op {cmd}, returning -ENOSYS"),
            );
            return Err(XenErrno::ENOSYS.into());
        }
    }
    ctx.copy_to_guest(arg, &op.to_vec())?;
    Ok(0)
}

/// `XEN_SYSCTL_physinfo`: one node, one thread per core, every CPU a core of one socket; the
/// CPU count, frequency and page counts from the input (the host allocator's free pages at
/// this moment); `max_mfn` the last RAM frame; `hw_cap` the featureset words from the host's
/// CPUID (input).
pub fn physinfo(state: &HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<XenSysctlPhysinfo, HvError> {
    let nr_cpus = u32::try_from(ctx.value(value_kind::HOST_NR_CPUS)?)
        .unwrap_or(1)
        .max(1);
    let cpu_khz = u32::try_from(ctx.value(value_kind::HOST_CPU_KHZ)?).unwrap_or(u32::MAX);
    let total_pages = ctx.value(value_kind::HOST_TOTAL_PAGES)?;
    let free_pages = ctx.value(value_kind::HOST_FREE_PAGES)?;
    let hw_cap = hw_cap::hw_cap(ctx)?;
    Ok(XenSysctlPhysinfo {
        threads_per_core: 1,
        cores_per_socket: nr_cpus,
        nr_cpus,
        max_cpu_id: nr_cpus - 1,
        nr_nodes: 1,
        max_node_id: MAX_NODE_ID,
        cpu_khz,
        capabilities: PHYSCAP,
        total_pages,
        free_pages,
        max_mfn: state.mm_config.get().max_page.saturating_sub(1),
        hw_cap,
        ..XenSysctlPhysinfo::default()
    })
}

/// `XEN_SYSCTL_getdomaininfolist`: up to `max_domains` entries for the domains with ids from
/// `first_domain` on, in id order, written to `buffer` (-EFAULT if an entry cannot be);
/// `num_domains` says how many.
fn getdomaininfolist(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    op: &mut XenSysctl,
) -> Result<(), HvError> {
    let mut l: XenSysctlGetdomaininfolist = op.payload().map_err(|_| XenErrno::EINVAL)?;
    let mut ids: alloc::vec::Vec<u16> = state
        .domains
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| *k >= l.first_domain && *k < DOMID_FIRST_RESERVED)
        .collect();
    ids.sort_unstable();
    let mut n = 0u32;
    for d in ids {
        if n == l.max_domains {
            break;
        }
        let info = super::domctl::domain_info(state, ctx, d)?;
        let at = l
            .buffer
            .wrapping_add(u64::from(n) * XenDomctlGetdomaininfo::SIZE as u64);
        ctx.copy_to_guest(at, &info.to_vec())?;
        n += 1;
    }
    l.num_domains = n;
    op.set_payload(&l).map_err(|_| XenErrno::EINVAL)?;
    Ok(())
}
