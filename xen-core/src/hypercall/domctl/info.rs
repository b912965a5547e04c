//! `getdomaininfo()`: a domain as `struct xen_domctl_getdomaininfo` reports it (used by
//! XEN_DOMCTL_getdomaininfo and XEN_SYSCTL_getdomaininfolist).

use crate::domain::VcpuKey;
use crate::effect::DomId;
use crate::hv::{value_kind, Ctx, HvError, HvState};
use dom0_interface::domctl::*;
use dom0_interface::errno::XenErrno;

/// Xen's `SHUTDOWN_CODE_INVALID`: no shutdown code recorded (all ones in the flags' top bits).
const SHUTDOWN_CODE_INVALID: u32 = !0;

/// System time now (ns), from the input.
pub(crate) fn now(state: &HvState, ctx: &mut Ctx<'_, '_, '_>) -> Result<u64, HvError> {
    if state.time.get().is_configured() {
        let tsc = ctx.value(value_kind::TSC)?;
        Ok(state.time.get().system_time(tsc))
    } else {
        ctx.value(value_kind::SYSTEM_TIME)
    }
}

/// Whether `key` is on a physical CPU now (`v->is_running`).
pub(crate) fn is_running(state: &HvState, key: VcpuKey) -> bool {
    state.runqs.iter().any(|(_, q)| q.current == Some(key))
}

/// Fills `xen_domctl_getdomaininfo` for domain `d` as Xen 4.17's `getdomaininfo()`: blocked
/// only if every online vCPU is, running if one is on a CPU (neither without an online
/// vCPU); dying, shutdown, paused (by the toolstack) and the shutdown code in bits 16-31;
/// `cpu_time` the sum of the vCPUs' running time; ssidref 0 (dummy XSM); cpupool 0.
pub fn domain_info(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    d: DomId,
) -> Result<XenDomctlGetdomaininfo, HvError> {
    let dom = state.domains.get(&d).cloned().ok_or(XenErrno::ESRCH)?;
    let now = now(state, ctx)?;
    let mut info = XenDomctlGetdomaininfo {
        domain: d,
        max_vcpu_id: XEN_INVALID_MAX_VCPU_ID,
        ..XenDomctlGetdomaininfo::default()
    };
    let mut flags = XEN_DOMINF_BLOCKED;
    let mut cpu_time = 0u64;
    for (key, v) in state.vcpus.iter().filter(|(k, _)| k.0 == d) {
        let s = crate::sched::vcpu_sched(state, *key);
        cpu_time = cpu_time.saturating_add(s.runstate.at(now).time[0]);
        info.max_vcpu_id = key.1;
        if v.online {
            if !v.blocked {
                flags &= !XEN_DOMINF_BLOCKED;
            }
            if is_running(state, *key) {
                flags |= XEN_DOMINF_RUNNING;
            }
            info.nr_online_vcpus += 1;
        }
    }
    let code = dom
        .shutdown
        .or(dom.shutdown_code)
        .unwrap_or(SHUTDOWN_CODE_INVALID);
    info.flags = if info.nr_online_vcpus > 0 { flags } else { 0 }
        | if dom.flags.dying { XEN_DOMINF_DYING } else { 0 }
        | if dom.shutdown.is_some() {
            XEN_DOMINF_SHUTDOWN
        } else {
            0
        }
        | if dom.pause_count > 0 {
            XEN_DOMINF_PAUSED
        } else {
            0
        }
        | code.wrapping_shl(XEN_DOMINF_SHUTDOWNSHIFT);
    info.cpu_time = cpu_time;
    info.tot_pages = dom.tot_pages;
    info.max_pages = dom.max_pages;
    info.shared_info_frame = state
        .mm_domains
        .get(&d)
        .and_then(|m| m.shared_info)
        .unwrap_or(0);
    info.handle = dom.handle;
    info.gpaddr_bits = u8::try_from(ctx.value(value_kind::HOST_PADDR_BITS)?).unwrap_or(0);
    Ok(info)
}
