//! Domain life cycle from the toolstack: createdomain (Xen's domid rover, the config checks of
//! `sanitise_domain_config`, a shared_info frame from the allocator, paused once),
//! max_vcpus (creates the vCPUs), pause/unpause (controller pause count) and destroydomain
//! (event channels closed, every frame released, vCPUs dropped, the runtime told).

use super::Done;
use crate::domain::{Domain, Vcpu, VcpuKey};
use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{value_kind, Ctx, HvError, HvState};
use crate::mm::{PageInfo, NO_FRAME};
use alloc::vec;
use alloc::vec::Vec;
use dom0_interface::domctl::*;
use dom0_interface::errno::XenErrno;
use dom0_interface::xen::DOMID_FIRST_RESERVED;

/// The most vCPUs a PV domU may have (its vcpu_info slots in shared_info).
pub const MAX_PV_VCPUS: u32 = dom0_interface::arch_x86::XEN_LEGACY_MAX_VCPUS as u32;
/// Flags Xen 4.17 knows (`XEN_DOMCTL_CDF_*` up to vpmu).
const CDF_KNOWN: u32 = XEN_DOMCTL_CDF_HVM
    | XEN_DOMCTL_CDF_HAP
    | XEN_DOMCTL_CDF_S3_INTEGRITY
    | XEN_DOMCTL_CDF_OOS_OFF
    | XEN_DOMCTL_CDF_XS_DOMAIN
    | XEN_DOMCTL_CDF_IOMMU
    | XEN_DOMCTL_CDF_NESTED_VIRT
    | XEN_DOMCTL_CDF_VPMU;

/// `sanitise_domain_config` for what DualVisor runs (64-bit PV, no IOMMU, no vPMU): unknown
/// flags, grant options, no vCPU, HAP without HVM, HVM, IOMMU, nested virt, vPMU and
/// emulation flags are -EINVAL; too many vCPUs -EINVAL.
fn sanitise(c: &XenDomctlCreatedomain) -> Result<(), XenErrno> {
    let version = c.grant_opts & XEN_DOMCTL_GRANT_VERSION_MASK;
    if c.flags & !CDF_KNOWN != 0
        || c.grant_opts & !XEN_DOMCTL_GRANT_VERSION_MASK != 0
        || !(1..=2).contains(&version)
        || c.max_vcpus < 1
        || c.max_vcpus > MAX_PV_VCPUS
        || c.flags
            & (XEN_DOMCTL_CDF_HVM
                | XEN_DOMCTL_CDF_HAP
                | XEN_DOMCTL_CDF_IOMMU
                | XEN_DOMCTL_CDF_NESTED_VIRT
                | XEN_DOMCTL_CDF_VPMU)
            != 0
        || c.arch.emulation_flags != 0
    {
        return Err(XenErrno::EINVAL);
    }
    Ok(())
}

/// Picks the id as Xen's `do_domctl` does: a requested id below DOMID_FIRST_RESERVED must be
/// free (-EEXIST); otherwise the next free id after the last one handed out, wrapping to 1
/// (-ENOMEM when none is free). The rover moves even if creation then fails.
fn pick_domid(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    want: DomId,
) -> Result<DomId, XenErrno> {
    if want > 0 && want < DOMID_FIRST_RESERVED {
        if state.domains.contains_key(&want) {
            return Err(XenErrno::EEXIST);
        }
        return Ok(want);
    }
    let rover = *state.domid_rover.get();
    let mut dom = rover.wrapping_add(1);
    loop {
        if dom >= DOMID_FIRST_RESERVED {
            dom = 1;
        }
        if dom == rover {
            return Err(XenErrno::ENOMEM);
        }
        if !state.domains.contains_key(&dom) {
            break;
        }
        dom += 1;
    }
    state.domid_rover.set(ctx.journal(), dom);
    Ok(dom)
}

/// `XEN_DOMCTL_createdomain`: a paused PV domain without memory or vCPUs (max_vcpus creates
/// them), with a zeroed shared_info frame from the allocator (not counted in `tot_pages`);
/// `op.domain` becomes its id.
pub(super) fn createdomain(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    op: &mut XenDomctl,
) -> Result<Done, HvError> {
    let c: XenDomctlCreatedomain = op.payload().map_err(|_| XenErrno::EINVAL)?;
    let d = pick_domid(state, ctx, op.domain)?;
    sanitise(&c)?;
    let shinfo = ctx.value(value_kind::ALLOC_FRAME)?;
    if shinfo == NO_FRAME || state.frames.contains_key(&shinfo) {
        return Err(XenErrno::ENOMEM.into());
    }
    let j = ctx.journal();
    state.domains.insert(
        j,
        d,
        Domain {
            id: d,
            max_vcpus: c.max_vcpus,
            pause_count: 1,
            handle: c.handle,
            flags: crate::domain::DomainFlags {
                paused: true,
                ..Default::default()
            },
            ..Domain::default()
        },
    );
    state.frames.insert(j, shinfo, PageInfo::shared_with(d));
    state.mm_domains.insert(
        j,
        d,
        crate::mm::DomMm {
            shared_info: Some(shinfo),
            ..Default::default()
        },
    );
    ctx.emit(Effect::Mm(MmEffect::FramesAllocated {
        dom: d,
        mfns: vec![shinfo],
    }));
    crate::sched::with_sched(state, ctx, |s| {
        crate::sched::set_shared_info(s, d, shinfo << 12)
    })?;
    op.domain = d;
    Ok(Done {
        ret: 0,
        copyback: true,
    })
}

/// `XEN_DOMCTL_max_vcpus` (4.17): `max` must equal createdomain's (and not be the caller's
/// own domain), else -EINVAL; creates the missing vCPUs, down.
pub(super) fn max_vcpus(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    op: &XenDomctl,
) -> Result<Done, HvError> {
    let m: XenDomctlMaxVcpus = op.payload().map_err(|_| XenErrno::EINVAL)?;
    let d = op.domain;
    let max = state.domains.get(&d).map_or(0, |x| x.max_vcpus);
    if d == ctx.dom() || m.max != max {
        return Err(XenErrno::EINVAL.into());
    }
    let j = ctx.journal();
    for v in 0..max {
        if !state.vcpus.contains_key(&(d, v)) {
            state.vcpus.insert(
                j,
                (d, v),
                Vcpu {
                    dom: d,
                    id: v,
                    kernel_mode: true,
                    ..Vcpu::default()
                },
            );
        }
    }
    Done::ok()
}

/// `domain_pause_by_systemcontroller`: not oneself (-EINVAL); one more pause. Its vCPUs
/// leave their CPUs in the replica at once; a vCPU that another leader CPU runs right now
/// is off it before the caller resumes (the embedder waits for that CPU, as Xen's
/// `domain_pause` syncs with `vcpu_sleep_sync`).
pub(super) fn pause(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    d: DomId,
) -> Result<Done, HvError> {
    if d == ctx.dom() {
        return Err(XenErrno::EINVAL.into());
    }
    state.domains.update(ctx.journal(), &d, |x| {
        x.pause_count = x.pause_count.saturating_add(1);
        x.flags.paused = true;
    });
    // Take its vCPUs off their CPUs: the scheduler skips a paused domain.
    let keys = online_vcpus(state, d);
    crate::sched::with_sched(state, ctx, |s| {
        for k in keys {
            crate::sched::pause_off(s, k);
        }
    })?;
    Done::ok()
}

/// The online vCPUs of domain `d` (what pause takes off and the last unpause wakes).
fn online_vcpus(state: &HvState, d: DomId) -> Vec<VcpuKey> {
    state
        .vcpus
        .iter()
        .filter(|(k, v)| k.0 == d && v.online)
        .map(|(k, _)| *k)
        .collect()
}

/// `domain_unpause_by_systemcontroller`: -EINVAL if not paused by the toolstack; the last
/// unpause lets its online vCPUs run.
pub(super) fn unpause(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    d: DomId,
) -> Result<Done, HvError> {
    if state.domains.get(&d).is_none_or(|x| x.pause_count == 0) {
        return Err(XenErrno::EINVAL.into());
    }
    let left = state
        .domains
        .update(ctx.journal(), &d, |x| {
            x.pause_count -= 1;
            x.flags.paused = x.pause_count > 0;
            x.pause_count
        })
        .unwrap_or(0);
    if left == 0 {
        let keys = online_vcpus(state, d);
        crate::sched::with_sched(state, ctx, |s| {
            for k in keys {
                crate::sched::wake(s, k);
            }
        })?;
    }
    Done::ok()
}

/// What `domain_shutdown` does once a domain is marked shut down (SCHEDOP_shutdown, a
/// crash): its vCPUs leave their CPUs (they stay online, as Xen pauses them) and, for any
/// domain but the hardware domain (whose shutdown stops the machine), VIRQ_DOM_EXC goes to
/// the toolstack.
pub fn domain_shut_down(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
) -> Result<(), HvError> {
    let keys: Vec<VcpuKey> = state
        .vcpus
        .iter()
        .filter(|(k, _)| k.0 == dom)
        .map(|(k, _)| *k)
        .collect();
    crate::sched::with_sched(state, ctx, |s| {
        for k in keys {
            crate::sched::pause_off(s, k);
        }
    })?;
    if dom != 0 {
        crate::evtchn::virq::send_global_virq(state, ctx, dom0_interface::xen::VIRQ_DOM_EXC)?;
    }
    Ok(())
}

/// `vcpu_reset`: drops the vCPU's page-table roots and descriptor tables and takes it
/// offline, uninitialised.
pub(super) fn reset_vcpu(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    key: VcpuKey,
) -> Result<(), HvError> {
    {
        let mut env = crate::mm::CtxEnv::new(ctx);
        crate::mm::vcpu_base::release(state, &mut env, key)?;
        crate::hypercall::vcpu_ctl::release_descriptor_tables(state, &mut env, key)?;
    }
    crate::sched::with_sched(state, ctx, |s| {
        crate::sched::offline(s, key);
        let mut v = s.vcpu(key);
        v.initialised = false;
        s.put(key, v);
    })?;
    Ok(())
}

/// `XEN_DOMCTL_destroydomain`: not oneself (-EINVAL). Closes the domain's event channels
/// (peers see them unbound/closed as in Xen), takes its vCPUs off the CPUs, releases every
/// frame it owns (page tables, shared_info and all) back to the allocator after commit, and
/// removes the domain and its per-vCPU state; the runtime drops its vCPUs
/// ([`Effect::DomainDestroyed`]). While other domains still map some of its frames (grant
/// or foreign mappings) the domain stays as Xen keeps it: dying, `tot_pages` the frames
/// held, its id not reusable; it goes with the last of them ([`crate::mm::frame`]).
/// Destroying it again then succeeds and changes nothing (Xen's `DOMDYING_dead`).
pub(super) fn destroydomain(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    d: DomId,
) -> Result<Done, HvError> {
    if d == ctx.dom() {
        return Err(XenErrno::EINVAL.into());
    }
    destroy(state, ctx, d)?;
    Done::ok()
}

/// Destroys domain `d` (see [`destroydomain`]).
pub fn destroy(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, d: DomId) -> Result<(), HvError> {
    state
        .domains
        .update(ctx.journal(), &d, |x| x.flags.dying = true);
    crate::evtchn::ops::destroy_domain(state, ctx, d);
    crate::pirq::ops::destroy_domain(state, ctx, d)?;
    let keys: Vec<VcpuKey> = state
        .vcpus
        .iter()
        .filter(|(k, _)| k.0 == d)
        .map(|(k, _)| *k)
        .collect();
    crate::sched::with_sched(state, ctx, |s| {
        for k in &keys {
            crate::sched::offline(s, *k);
        }
    })?;
    // Grant mappings it made, its grant table and its vCPUs' registered vcpu_info frames
    // (`unmap_vcpu_info`) go before its memory.
    {
        let mut env = crate::mm::env::CtxEnv::new(ctx);
        crate::gnttab::release_domain(state, &mut env, d)?;
        for k in &keys {
            crate::hypercall::vcpu::info::release(state, &mut env, *k);
        }
        env.finish();
    }
    let freed = crate::mm::destroy_domain_memory(state, ctx.journal(), d);
    let j = ctx.journal();
    for k in &keys {
        state.vcpus.remove(j, k);
        state.vsched.remove(j, k);
        state.pv_vcpus.remove(j, k);
        state.evtchn_pollers.remove(j, k);
        state.in_multicall.remove(j, k);
        for vec in 0..=255u8 {
            state.trap_tables.remove(j, &(k.0, k.1, vec));
        }
    }
    let virqs: Vec<_> = state
        .virqs
        .iter()
        .filter(|(k, _)| k.0 == d)
        .map(|(k, _)| *k)
        .collect();
    for k in virqs {
        state.virqs.remove(j, &k);
    }
    state.dom_time.remove(j, &d);
    if state.domains.get(&d).is_some_and(|x| x.tot_pages == 0) {
        state.domains.remove(j, &d);
    }
    if !freed.is_empty() {
        ctx.emit(Effect::Mm(MmEffect::FreeFrames(freed)));
    }
    ctx.emit(Effect::DomainDestroyed { dom: d });
    Ok(())
}
