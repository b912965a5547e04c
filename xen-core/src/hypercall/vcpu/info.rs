//! A vCPU's relocated `vcpu_info`: `VCPUOP_register_vcpu_info` (Xen 4.17's `map_vcpu_info`)
//! and its teardown (`unmap_vcpu_info`).
//!
//! The hypervisor writes event bits and time into a registered `vcpu_info` by machine address
//! for as long as it stays registered, so the frame is checked and held as Xen holds it: it
//! must be the calling domain's, it takes a general and a writable type reference
//! ([`crate::mm::frame::map_guest_page`]), and both stay until the domain is destroyed
//! ([`release`], Xen's `domain_relinquish_resources`; Xen 4.17's `vcpu_reset` keeps the
//! mapping). While they are held the frame cannot become a page table or a descriptor page, and
//! a release of it by the guest (`XENMEM_decrease_reservation`) leaves it allocated until the
//! reference goes. The references are replica writes like any other: a rolled-back
//! transaction leaves the counts as they were.

use super::read;
use crate::domain::VcpuKey;
use crate::effect::Effect;
use crate::hv::{Ctx, HvResult, HvState};
use crate::mm::env::{CtxEnv, MmEnv};
use crate::mm::frame::{map_guest_page, unmap_guest_page};
use crate::sched;
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::vcpu::VcpuRegisterVcpuInfo;

/// Size of a `vcpu_info`.
pub const VCPU_INFO_SIZE: u64 = 64;

/// `VCPUOP_register_vcpu_info` for vCPU `key` (`is_caller`: the calling vCPU itself), in Xen
/// 4.17's order: a misplaced `vcpu_info` (crossing the page, misaligned) -ENXIO; one already
/// registered, or another vCPU still online, -EINVAL; a frame the domain does not own, or one
/// that cannot be writable (a page table, a descriptor page), -EINVAL. The new `vcpu_info`
/// starts as a copy of the old one (zeroed with events masked for a vCPU that had none), then
/// every selector bit and the upcall are marked pending so nothing is lost.
pub fn register(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    key: VcpuKey,
    is_caller: bool,
    arg: u64,
) -> HvResult {
    let info: VcpuRegisterVcpuInfo = read(ctx, arg)?;
    let offset = u64::from(info.offset);
    if offset > 4096 - VCPU_INFO_SIZE || !offset.is_multiple_of(8) {
        return Err(XenErrno::ENXIO.into());
    }
    let current = sched::vcpu_sched(state, key);
    if current.vcpu_info_maddr.is_some() {
        return Err(XenErrno::EINVAL.into());
    }
    if !is_caller && state.vcpus.get(&key).is_some_and(|v| v.online) {
        return Err(XenErrno::EINVAL.into());
    }
    // A PV domain's "gfn" is the machine frame; it must be the domain's and writable.
    let mfn = info.mfn;
    let new = mfn
        .checked_mul(4096)
        .and_then(|m| m.checked_add(offset))
        .ok_or(XenErrno::EINVAL)?;
    {
        let mut env = CtxEnv::new(ctx);
        map_guest_page(state, &mut env, mfn, key.0)?;
    }
    let mut old = [0u8; VCPU_INFO_SIZE as usize];
    match sched::vcpu_info_maddr(state, key) {
        Some(m) => ctx.read_machine(m, &mut old)?,
        None => old[1] = 1,
    }
    old[0] = 1;
    old[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let writes: Vec<Effect> = old
        .chunks(8)
        .enumerate()
        .map(|(i, w)| {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            Effect::WriteMachine {
                maddr: new + 8 * i as u64,
                value: u64::from_le_bytes(b),
            }
        })
        .collect();
    for e in writes {
        ctx.emit(e);
    }
    let j = ctx.journal();
    let mut v = current;
    v.vcpu_info_maddr = Some(new);
    state.vsched.insert(j, key, v);
    Ok(0)
}

/// `unmap_vcpu_info`: vCPU `key` goes back to its shared_info slot (none beyond the legacy
/// 32), and the references on the frame of its registered `vcpu_info`, if any, are dropped
/// (the last one frees a frame its domain released meanwhile).
pub fn release(state: &mut HvState, env: &mut dyn MmEnv, key: VcpuKey) {
    let Some(mut v) = state.vsched.get(&key).cloned() else {
        return;
    };
    let Some(maddr) = v.vcpu_info_maddr.take() else {
        return;
    };
    state.vsched.insert(env.journal(), key, v);
    unmap_guest_page(state, env, maddr >> 12);
}
