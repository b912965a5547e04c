//! A vCPU's secondary `vcpu_time_info`: `VCPUOP_register_vcpu_time_memory_area` as Xen 4.17's
//! `arch_do_vcpu_op` answers a 64-bit PV guest.
//!
//! The guest names a guest *virtual* address (Xen's `time_info_guest` handle). From then on,
//! whenever the hypervisor publishes the vCPU's `vcpu_time_info` in its vcpu_info it also
//! copies it there under the version seqlock ([`crate::sched::publish_time`], Xen's
//! `update_secondary_system_time`), as guest writes that fail silently. The address is
//! replica state in the vCPU's scheduling state, journaled like any other: a rolled-back
//! registration leaves none behind. As in Xen 4.17 nothing but the domain's destruction
//! forgets it: `vcpu_reset` and VCPUOP_initialise keep it, and only an HVM domain's soft reset
//! (which DualVisor does not offer) clears it.

use super::read;
use crate::domain::VcpuKey;
use crate::effect::Effect;
use crate::hv::{Ctx, HvResult, HvState};
use crate::sched::{update_time, with_sched};
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::vcpu::VcpuRegisterTimeMemoryArea;
use dom0_interface::xen::VcpuTimeInfo;

/// `VCPUOP_register_vcpu_time_memory_area` for vCPU `key` (whose existence the caller checked:
/// -ENOENT comes first), in Xen 4.17's order:
///
/// - the 8-byte argument is read (`copy_from_guest`: -EFAULT);
/// - the address must pass `guest_handle_okay` (Xen's `__addr_ok` of its start only: below
///   the canonical hole or above the hypervisor's range; -EFAULT); 0, the null handle,
///   unregisters;
/// - the address is stored and the vCPU's time is force-updated
///   (`force_update_vcpu_system_time`): the vcpu_info copy under a new version, then the
///   area, written through the *caller's* page tables as Xen's `__copy_to_guest` writes
///   through the current vCPU's, skipped silently where they cannot be written.
pub fn register(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    key: VcpuKey,
    arg: u64,
) -> HvResult {
    let area: VcpuRegisterTimeMemoryArea = read(ctx, arg)?;
    if !crate::mm::pt::addr_ok(area.addr) {
        return Err(XenErrno::EFAULT.into());
    }
    let info = with_sched(state, ctx, |s| {
        let mut v = s.vcpu(key);
        v.time_area = area.addr;
        s.put(key, v);
        update_time(s, key)
    })?;
    let Some(info) = info else {
        return Ok(0);
    };
    if area.addr != 0 && ctx.probe_write(area.addr, VcpuTimeInfo::SIZE)? {
        for data in crate::time::time_area_writes(&info) {
            ctx.emit(Effect::WriteGuest {
                addr: area.addr,
                data,
            });
        }
    }
    Ok(0)
}
