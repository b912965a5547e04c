//! `memory_op` (12): reservations (current, maximum, increase, decrease, populate_physmap),
//! maximum_ram_page, the pseudo-physical and machine memory maps and the M2P's location
//! (machphys_mapping, machphys_mfn_list), as xen/common/memory.c and x86's
//! `arch_memory_op`/`subarch_memory_op` answer a 64-bit PV guest.
//!
//! New frames come from the input ([`crate::hv::value_kind::ALLOC_FRAME`] `+ order`: the first
//! of 2^order contiguous, aligned, zeroed frames, or [`crate::mm::NO_FRAME`]); the committed
//! [`MmEffect::FramesAllocated`] confirms them.

use super::mmu::xsm_target;
use crate::effect::{DomId, Effect, MmEffect};
use crate::hv::{value_kind, Ctx, HvError, HvResult, HvState};
use crate::mm::env::{CtxEnv, MmEnv};
use crate::mm::frame::{get_page, put_page, put_page_and_type, set_m2p};
use crate::mm::pt::addr_ok;
use crate::mm::{
    PageInfo, INVALID_M2P, MACH2PHYS_NR_ENTRIES, NO_FRAME, RO_MPT_VIRT_END, RO_MPT_VIRT_START,
};
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::memory::*;
use dom0_interface::xen::DOMID_SELF;

/// `MEMOP_EXTENT_SHIFT`: the start extent of a continued call is `cmd >> 6`.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// `MEMOP_CMD_MASK`.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;
/// Extents handled per transaction before the call continues itself.
const EXTENTS_PER_CALL: u64 = 256;

fn errno(e: XenErrno) -> HvError {
    HvError::Errno(e)
}

/// `rcu_lock_domain_by_any_id`: DOMID_SELF or an existing domain.
fn domain_by_any_id(st: &HvState, caller: DomId, id: DomId) -> Option<DomId> {
    let id = if id == DOMID_SELF { caller } else { id };
    st.domains.contains_key(&id).then_some(id)
}

/// `memory_op(cmd, arg)`.
pub fn memory_op(st: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, arg, ..] = ctx.req.args;
    let op = (cmd & MEMOP_CMD_MASK) as u32;
    let start_extent = (cmd & 0xffff_ffff) >> MEMOP_EXTENT_SHIFT;
    match op {
        XENMEM_INCREASE_RESERVATION | XENMEM_DECREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
            reservation(st, ctx, op, start_extent, arg)
        }
        XENMEM_EXCHANGE if start_extent == 0 => exchange(st, ctx, arg),
        _ if start_extent != 0 && op <= XENMEM_MAXIMUM_RESERVATION => Err(errno(XenErrno::EINVAL)),
        XENMEM_MAXIMUM_RAM_PAGE => Ok(st.mm_config.get().max_page as i64),
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => {
            let mut b = [0u8; 2];
            ctx.copy_from_guest(arg, &mut b)?;
            let d = domain_by_any_id(st, ctx.dom(), u16::from_le_bytes(b))
                .ok_or(errno(XenErrno::ESRCH))?;
            xsm_target(st, ctx.dom(), d)?;
            let dom = st.domains.get(&d).ok_or(errno(XenErrno::ESRCH))?;
            Ok(if op == XENMEM_CURRENT_RESERVATION {
                dom.tot_pages as i64
            } else {
                dom.max_pages as i64
            })
        }
        _ if start_extent != 0 => super::unknown_subop(st, ctx, "memory_op", cmd),
        XENMEM_ADD_TO_PHYSMAP | XENMEM_REMOVE_FROM_PHYSMAP | XENMEM_ADD_TO_PHYSMAP_BATCH => {
            // Only translated (HVM/PVH) guests have a physmap Xen maintains.
            let size = match op {
                XENMEM_ADD_TO_PHYSMAP => XenAddToPhysmap::SIZE,
                XENMEM_REMOVE_FROM_PHYSMAP => XenRemoveFromPhysmap::SIZE,
                _ => ADD_TO_PHYSMAP_BATCH_SIZE,
            };
            let d = target_domain(st, ctx, arg, size, 0)?;
            xsm_target(st, ctx.dom(), d)?;
            Err(errno(XenErrno::EACCES))
        }
        XENMEM_MAXIMUM_GPFN => {
            let mut b = [0u8; 2];
            ctx.copy_from_guest(arg, &mut b)?;
            let d = domain_by_any_id(st, ctx.dom(), u16::from_le_bytes(b))
                .ok_or(errno(XenErrno::ESRCH))?;
            xsm_target(st, ctx.dom(), d)?;
            // PV: `(shared_info.arch.max_pfn ?: 1) - 1`, the guest's own figure.
            let max_pfn = match st.mm_domains.get(&d).and_then(|m| m.shared_info) {
                Some(si) => {
                    let mut w = [0u8; 8];
                    ctx.read_machine((si << 12) + SHARED_INFO_MAX_PFN, &mut w)?;
                    u64::from_le_bytes(w)
                }
                None => 0,
            };
            Ok((max_pfn.max(1) - 1) as i64)
        }
        XENMEM_SET_MEMORY_MAP => set_memory_map(st, ctx, arg),
        XENMEM_SET_POD_TARGET | XENMEM_GET_POD_TARGET => {
            // Populate-on-demand is for HVM guests.
            target_domain(st, ctx, arg, POD_TARGET_SIZE, POD_TARGET_DOMID)?;
            Err(errno(XenErrno::EINVAL))
        }
        XENMEM_GET_SHARING_FREED_PAGES | XENMEM_GET_SHARING_SHARED_PAGES => Ok(0),
        XENMEM_GET_VNUMAINFO => {
            let d = target_domain(st, ctx, arg, VNUMA_TOPOLOGY_SIZE, 0)?;
            xsm_target(st, ctx.dom(), d)?;
            Err(errno(XenErrno::EOPNOTSUPP))
        }
        XENMEM_MACHPHYS_COMPAT_MFN_LIST => {
            let mut b = [0u8; XenMachphysMfnList::SIZE];
            ctx.copy_from_guest(arg, &mut b)?;
            Err(errno(XenErrno::EOPNOTSUPP))
        }
        XENMEM_MEMORY_MAP => memory_map(st, ctx, arg),
        XENMEM_MACHINE_MEMORY_MAP => machine_memory_map(st, ctx, arg),
        XENMEM_MACHPHYS_MAPPING => {
            let max_mfn = if super::is_privileged(st, ctx.dom()) {
                st.mm_config.get().max_page.saturating_sub(1)
            } else {
                MACH2PHYS_NR_ENTRIES - 1
            };
            let m = XenMachphysMapping {
                v_start: RO_MPT_VIRT_START,
                v_end: RO_MPT_VIRT_END,
                max_mfn,
            };
            ctx.copy_to_guest(arg, &m.to_vec())?;
            Ok(0)
        }
        XENMEM_MACHPHYS_MFN_LIST => {
            let mut b = [0u8; XenMachphysMfnList::SIZE];
            ctx.copy_from_guest(arg, &mut b)?;
            let mut l = XenMachphysMfnList::read_from(&b).map_err(|_| errno(XenErrno::EFAULT))?;
            let frames = st.mm_config.get().m2p_frames.clone();
            let mut i = 0u32;
            for mfn in frames.iter().take(l.max_extents as usize) {
                ctx.copy_to_guest(
                    l.extent_start.wrapping_add(u64::from(i) * 8),
                    &mfn.to_le_bytes(),
                )?;
                i += 1;
            }
            l.nr_extents = i;
            ctx.copy_to_guest(arg, &l.to_vec())?;
            Ok(0)
        }
        _ => super::unknown_subop(st, ctx, "memory_op", cmd),
    }
}

/// `sizeof(struct xen_add_to_physmap_batch)`.
const ADD_TO_PHYSMAP_BATCH_SIZE: usize = 32;
/// `sizeof(struct xen_pod_target)` and the offset of its `domid`.
const POD_TARGET_SIZE: usize = 40;
const POD_TARGET_DOMID: usize = 32;
/// `sizeof(struct xen_vnuma_topology_info)`.
const VNUMA_TOPOLOGY_SIZE: usize = 40;
/// Offset of `arch.max_pfn` in `struct shared_info`.
const SHARED_INFO_MAX_PFN: u64 = 3088;
/// `E820MAX`: entries `XENMEM_set_memory_map` accepts.
const E820MAX: u32 = 1024;

/// Reads a `size`-byte argument (-EFAULT) and resolves the `domid_t` at `domid_at`
/// (DOMID_SELF or an existing domain; -ESRCH).
fn target_domain(
    st: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    arg: u64,
    size: usize,
    domid_at: usize,
) -> Result<DomId, HvError> {
    let mut b = alloc::vec![0u8; size];
    ctx.copy_from_guest(arg, &mut b)?;
    let id = b
        .get(domid_at..domid_at + 2)
        .map_or(0, |w| u16::from_le_bytes([w[0], w[1]]));
    domain_by_any_id(st, ctx.dom(), id).ok_or(errno(XenErrno::ESRCH))
}

/// `XENMEM_set_memory_map`: the toolstack (or the domain itself) sets a domain's
/// pseudo-physical memory map.
fn set_memory_map(st: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    let mut b = [0u8; XenForeignMemoryMap::SIZE];
    ctx.copy_from_guest(arg, &mut b)?;
    let f = XenForeignMemoryMap::read_from(&b).map_err(|_| errno(XenErrno::EFAULT))?;
    if f.map.nr_entries > E820MAX {
        return Err(errno(XenErrno::EINVAL));
    }
    let d = domain_by_any_id(st, ctx.dom(), f.domid).ok_or(errno(XenErrno::ESRCH))?;
    xsm_target(st, ctx.dom(), d)?;
    let n = f.map.nr_entries as usize;
    let mut raw = alloc::vec![0u8; n * E820Entry::SIZE];
    ctx.copy_from_guest(f.map.buffer, &mut raw)?;
    let mut e820 = Vec::with_capacity(n);
    for i in 0..n {
        e820.push(E820Entry::read_element(&raw, i).map_err(|_| errno(XenErrno::EFAULT))?);
    }
    let mut dm = st.mm_domains.get(&d).cloned().unwrap_or_default();
    dm.e820 = e820;
    let j = ctx.journal();
    st.mm_domains.insert(j, d, dm);
    Ok(0)
}

/// `XENMEM_memory_map`: the domain's pseudo-physical map; -ENOSYS if it has none.
fn memory_map(st: &HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    let mut b = [0u8; XenMemoryMap::SIZE];
    ctx.copy_from_guest(arg, &mut b)?;
    let mut map = XenMemoryMap::read_from(&b).map_err(|_| errno(XenErrno::EFAULT))?;
    let e820 = st
        .mm_domains
        .get(&ctx.dom())
        .map(|m| m.e820.clone())
        .unwrap_or_default();
    if e820.is_empty() {
        return Err(errno(XenErrno::ENOSYS));
    }
    let n = (map.nr_entries as usize).min(e820.len());
    let mut out = Vec::with_capacity(n * E820Entry::SIZE);
    for e in e820.iter().take(n) {
        out.extend_from_slice(&e.to_vec());
    }
    ctx.copy_to_guest(map.buffer, &out)?;
    map.nr_entries = n as u32;
    ctx.copy_to_guest(arg, &map.to_vec())?;
    Ok(0)
}

/// `XENMEM_machine_memory_map` (privileged): the host's E820 with, in the holes between its
/// entries, a reserved entry for each run of frames dom0 has no I/O rights to (the
/// hypervisor's own devices, [`crate::mm::MmConfig::io_deny`]) — Xen's walk of
/// `iomem_caps`, including its buffer-size checks (the buffer needs a spare entry).
fn machine_memory_map(st: &HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    if !super::is_privileged(st, ctx.dom()) {
        return Err(errno(XenErrno::EPERM));
    }
    let mut b = [0u8; XenMemoryMap::SIZE];
    ctx.copy_from_guest(arg, &mut b)?;
    let mut map = XenMemoryMap::read_from(&b).map_err(|_| errno(XenErrno::EFAULT))?;
    let cfg = st.mm_config.get();
    let host = cfg.machine_e820.clone();
    let store = map.buffer != 0;
    let cap = u64::from(map.nr_entries);
    if store && cap < host.len() as u64 + 1 {
        return Err(errno(XenErrno::EINVAL));
    }
    if store && !addr_ok(map.buffer) {
        return Err(errno(XenErrno::EFAULT));
    }
    // Denied runs, merged and sorted (frame numbers, inclusive).
    let mut deny: Vec<(u64, u64)> = cfg.io_deny.clone();
    deny.sort_unstable();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (s0, e0) in deny {
        match runs.last_mut() {
            Some(last) if s0 <= last.1.saturating_add(1) => last.1 = last.1.max(e0),
            _ => runs.push((s0, e0)),
        }
    }
    let mut n = 0u64;
    let mut put =
        |ctx: &mut Ctx<'_, '_, '_>, e: &E820Entry, hole: bool, left: u64| -> Result<(), HvError> {
            if store {
                let full = if hole { n + 1 >= cap } else { cap <= n + left };
                if full {
                    return Err(errno(XenErrno::EINVAL));
                }
                ctx.copy_to_guest(
                    map.buffer.wrapping_add(n * E820Entry::SIZE as u64),
                    &e.to_vec(),
                )?;
            }
            n += 1;
            Ok(())
        };
    let mut next = 0u64; // first frame after what has been reported
    let holes = |from: u64, to: u64| -> Vec<E820Entry> {
        runs.iter()
            .filter(|&&(s0, e0)| s0 < to && e0 >= from)
            .map(|&(s0, e0)| {
                let (a, z) = (s0.max(from), e0.min(to - 1));
                E820Entry {
                    addr: a << 12,
                    size: (z - a + 1) << 12,
                    r#type: E820_RESERVED,
                }
            })
            .collect()
    };
    for (i, e) in host.iter().enumerate() {
        let E820Entry { addr, size, .. } = *e;
        let start = addr >> 12;
        if start > next {
            for h in holes(next, start) {
                put(ctx, &h, true, 0)?;
            }
        }
        put(ctx, e, false, (host.len() - i) as u64)?;
        next = addr.saturating_add(size).div_ceil(4096);
    }
    if next != 0 {
        for h in holes(next, u64::MAX) {
            put(ctx, &h, true, 0)?;
        }
    }
    map.nr_entries = n as u32;
    ctx.copy_to_guest(arg, &map.to_vec())?;
    Ok(0)
}

/// `max_order(d)`: hardware domain 12, others 9 (Xen's CONFIG_*_MAX_ORDER defaults).
fn max_order(st: &HvState, d: DomId) -> u32 {
    if super::is_privileged(st, d) {
        12
    } else {
        9
    }
}

/// increase_reservation, decrease_reservation, populate_physmap: the number of extents done
/// (Xen answers a bad argument struct with the extents done so far, not an errno).
fn reservation(
    st: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    op: u32,
    start: u64,
    arg: u64,
) -> HvResult {
    let mut b = [0u8; XenMemoryReservation::SIZE];
    match ctx.copy_from_guest(arg, &mut b) {
        Ok(()) => {}
        Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
        Err(_) => return Ok(start as i64),
    }
    let Ok(r) = XenMemoryReservation::read_from(&b) else {
        return Ok(start as i64);
    };
    let nr = r.nr_extents;
    if nr > (u64::from(u32::MAX) >> MEMOP_EXTENT_SHIFT) || start >= nr || !addr_ok(r.extent_start) {
        return Ok(start as i64);
    }
    if r.mem_flags & XENMEMF_POPULATE_ON_DEMAND != 0 && op == XENMEM_POPULATE_PHYSMAP {
        // PoD is for HVM guests: a PV caller gets nothing done.
        return Ok(start as i64);
    }
    let caller = ctx.dom();
    let Some(d) = domain_by_any_id(st, caller, r.domid) else {
        return Ok(start as i64);
    };
    if xsm_target(st, caller, d).is_err() {
        return Ok(start as i64);
    }
    let order = r.extent_order;
    if order > max_order(st, caller) {
        return Ok(start as i64);
    }
    let pages = 1u64 << order;
    let mut i = start;
    let mut allocated: Vec<u64> = Vec::new();
    let mut env = CtxEnv::new(ctx);
    while i < nr {
        if i - start >= EXTENTS_PER_CALL {
            drop(env);
            if !allocated.is_empty() {
                ctx.emit(Effect::Mm(MmEffect::FramesAllocated {
                    dom: d,
                    mfns: allocated,
                }));
            }
            let a = ctx.req.args;
            ctx.emit(Effect::Continue([
                u64::from(op) | (i << MEMOP_EXTENT_SHIFT),
                a[1],
                a[2],
                a[3],
                a[4],
            ]));
            return Ok(0);
        }
        let slot = r.extent_start.wrapping_add(i * 8);
        let ok = match op {
            XENMEM_DECREASE_RESERVATION => {
                let gmfn = match env.ctx.read_u64(slot) {
                    Ok(v) => v,
                    Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
                    Err(_) => break,
                };
                let mut all = true;
                for k in 0..pages {
                    if remove_page(st, &mut env, d, gmfn.wrapping_add(k))?.is_err() {
                        all = false;
                        break;
                    }
                }
                all
            }
            _ => {
                let gpfn = if op == XENMEM_POPULATE_PHYSMAP {
                    match env.ctx.read_u64(slot) {
                        Ok(v) => Some(v),
                        Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
                        Err(_) => break,
                    }
                } else {
                    None
                };
                let over = st
                    .domains
                    .get(&d)
                    .is_none_or(|dm| dm.tot_pages.saturating_add(pages) > dm.max_pages);
                if over {
                    break;
                }
                let first = env.ctx.value(value_kind::ALLOC_FRAME + order)?;
                if first == NO_FRAME || st.frames.contains_key(&first) {
                    break;
                }
                for k in 0..pages {
                    let m2p = gpfn.map_or(INVALID_M2P, |g| g.wrapping_add(k));
                    let j = env.ctx.journal();
                    st.frames.insert(
                        j,
                        first + k,
                        PageInfo {
                            owner: d,
                            count: 1,
                            allocated: true,
                            m2p,
                            ..PageInfo::default()
                        },
                    );
                    if let Some(g) = gpfn {
                        st.p2m.insert(j, (d, g.wrapping_add(k)), first + k);
                    }
                    allocated.push(first + k);
                    set_m2p(st, &mut env, first + k, m2p);
                }
                let j = env.ctx.journal();
                st.domains.update(j, &d, |dm| dm.tot_pages += pages);
                // increase_reservation may pass no list (then the mfns are not reported).
                if op == XENMEM_INCREASE_RESERVATION && r.extent_start == 0 {
                    true
                } else {
                    match env.ctx.copy_to_guest(slot, &first.to_le_bytes()) {
                        Ok(()) => true,
                        Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
                        Err(_) => false,
                    }
                }
            }
        };
        if !ok {
            break;
        }
        i += 1;
    }
    drop(env);
    if !allocated.is_empty() {
        ctx.emit(Effect::Mm(MmEffect::FramesAllocated {
            dom: d,
            mfns: allocated,
        }));
    }
    Ok(i as i64)
}

/// `guest_remove_page` for a PV domain: `mfn` must be `d`'s; its pin and allocation
/// references go, the M2P entry is invalidated, and it is freed once nothing maps it.
fn remove_page(
    st: &mut HvState,
    env: &mut CtxEnv<'_, '_, '_, '_>,
    d: DomId,
    mfn: u64,
) -> Result<Result<(), XenErrno>, HvError> {
    if st.frames.get(&mfn).is_some_and(|p| p.special) {
        return Ok(Err(XenErrno::EINVAL));
    }
    match get_page(st, env, mfn, d) {
        Ok(()) => {}
        Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
        Err(_) => return Ok(Err(XenErrno::EINVAL)),
    }
    let (pinned, allocated, m2p) = st
        .frames
        .get(&mfn)
        .map_or((false, false, INVALID_M2P), |p| {
            (p.pinned, p.allocated, p.m2p)
        });
    let j = env.ctx.journal();
    st.frames.update(j, &mfn, |p| {
        p.pinned = false;
        p.allocated = false;
    });
    set_m2p(st, env, mfn, INVALID_M2P);
    if m2p != INVALID_M2P && st.p2m.get(&(d, m2p)) == Some(&mfn) {
        let j = env.ctx.journal();
        st.p2m.remove(j, &(d, m2p));
    }
    if pinned {
        put_page_and_type(st, env, mfn)?;
    }
    if allocated {
        put_page(st, env, mfn);
    }
    put_page(st, env, mfn);
    Ok(Ok(()))
}

/// Offset of `nr_exchanged` in `struct xen_memory_exchange`.
const NR_EXCHANGED_OFFSET: u64 = (XenMemoryExchange::SIZE - 8) as u64;

/// Writes `nr_exchanged` back into the caller's `xen_memory_exchange`.
fn put_exchanged(ctx: &mut Ctx<'_, '_, '_>, arg: u64, n: u64) -> Result<(), HvError> {
    ctx.copy_to_guest(arg.wrapping_add(NR_EXCHANGED_OFFSET), &n.to_le_bytes())
}

/// `XENMEM_exchange`: trades the caller's frames (in list, mfns; none may be mapped, typed or
/// pinned) for new ones (out list: pfns in, mfns out), chunk by chunk.
fn exchange(st: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    let mut b = [0u8; XenMemoryExchange::SIZE];
    ctx.copy_from_guest(arg, &mut b)?;
    let x = XenMemoryExchange::read_from(&b).map_err(|_| errno(XenErrno::EFAULT))?;
    let (inr, outr) = (x.r#in, x.out);
    let fail_early = |ctx: &mut Ctx<'_, '_, '_>, e: XenErrno| -> HvResult {
        put_exchanged(ctx, arg, x.nr_exchanged)?;
        Err(errno(e))
    };
    let caller = ctx.dom();
    if inr.extent_order.max(outr.extent_order) > max_order(st, caller) {
        return fail_early(ctx, XenErrno::EPERM);
    }
    let fits = |r: &XenMemoryReservation| {
        r.extent_order < 64 && (u64::MAX >> r.extent_order) >= r.nr_extents
    };
    if x.nr_exchanged > inr.nr_extents
        || inr.domid != outr.domid
        || !fits(&inr)
        || !fits(&outr)
        || (inr.nr_extents << inr.extent_order) != (outr.nr_extents << outr.extent_order)
    {
        return fail_early(ctx, XenErrno::EINVAL);
    }
    if x.nr_exchanged == inr.nr_extents {
        return Ok(0);
    }
    if !addr_ok(inr.extent_start) || !addr_ok(outr.extent_start) {
        return fail_early(ctx, XenErrno::EFAULT);
    }
    let (in_chunk, out_chunk) = if inr.extent_order <= outr.extent_order {
        (outr.extent_order - inr.extent_order, 0)
    } else {
        (0, inr.extent_order - outr.extent_order)
    };
    let Some(d) = domain_by_any_id(st, caller, inr.domid) else {
        return fail_early(ctx, XenErrno::ESRCH);
    };
    if xsm_target(st, caller, d).is_err() {
        return fail_early(ctx, XenErrno::EPERM);
    }
    let first_chunk = x.nr_exchanged >> in_chunk;
    let mut i = first_chunk;
    while i < (inr.nr_extents >> in_chunk) {
        if i - first_chunk >= EXTENTS_PER_CALL {
            put_exchanged(ctx, arg, i << in_chunk)?;
            let a = ctx.req.args;
            ctx.emit(Effect::Continue([
                u64::from(XENMEM_EXCHANGE),
                arg,
                a[2],
                a[3],
                a[4],
            ]));
            return Ok(0);
        }
        if let Err(e) = exchange_chunk(st, ctx, d, &x, i, in_chunk, out_chunk)? {
            return fail_early_at(ctx, arg, i << in_chunk, e);
        }
        i += 1;
    }
    put_exchanged(ctx, arg, inr.nr_extents)?;
    Ok(0)
}

fn fail_early_at(ctx: &mut Ctx<'_, '_, '_>, arg: u64, done: u64, e: XenErrno) -> HvResult {
    put_exchanged(ctx, arg, done)?;
    Err(errno(e))
}

/// One chunk of an exchange: checks and steals the input frames, takes the output frames,
/// frees the input and assigns the output. Nothing changes if a check fails.
fn exchange_chunk(
    st: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    d: DomId,
    x: &XenMemoryExchange,
    i: u64,
    in_chunk: u32,
    out_chunk: u32,
) -> Result<Result<(), XenErrno>, HvError> {
    let (inr, outr) = (x.r#in, x.out);
    let mut stolen: Vec<u64> = Vec::new();
    for j in 0..(1u64 << in_chunk) {
        let slot = inr.extent_start.wrapping_add(((i << in_chunk) + j) * 8);
        let gmfn = match ctx.read_u64(slot) {
            Ok(v) => v,
            Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
            Err(_) => return Ok(Err(XenErrno::EFAULT)),
        };
        for k in 0..(1u64 << inr.extent_order) {
            let mfn = gmfn.wrapping_add(k);
            // steal_page: only the allocation reference may be held.
            let ok = st.frames.get(&mfn).is_some_and(|p| {
                p.owner == d
                    && p.allocated
                    && !p.special
                    && p.count == 1
                    && p.type_count == 0
                    && !p.pinned
            });
            if !ok || stolen.contains(&mfn) {
                return Ok(Err(XenErrno::EINVAL));
            }
            stolen.push(mfn);
        }
    }
    let mut fresh: Vec<u64> = Vec::new();
    for _ in 0..(1u64 << out_chunk) {
        let first = ctx.value(value_kind::ALLOC_FRAME + outr.extent_order)?;
        if first == NO_FRAME
            || (0..(1u64 << outr.extent_order)).any(|k| st.frames.contains_key(&(first + k)))
        {
            // Frames taken but not confirmed by FramesAllocated go back by themselves.
            return Ok(Err(XenErrno::ENOMEM));
        }
        fresh.push(first);
    }
    let mut env = CtxEnv::new(ctx);
    for &mfn in &stolen {
        let m2p = st.frames.get(&mfn).map_or(INVALID_M2P, |p| p.m2p);
        if m2p != INVALID_M2P && st.p2m.get(&(d, m2p)) == Some(&mfn) {
            let j = env.ctx.journal();
            st.p2m.remove(j, &(d, m2p));
        }
        let j = env.ctx.journal();
        st.frames.remove(j, &mfn);
        env.freed(mfn);
    }
    let mut allocated = Vec::new();
    let mut rc = Ok(());
    for (j, &first) in fresh.iter().enumerate() {
        let slot = outr
            .extent_start
            .wrapping_add(((i << out_chunk) + j as u64) * 8);
        let gpfn = match env.ctx.read_u64(slot) {
            Ok(v) => Some(v),
            Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
            Err(_) => None,
        };
        for k in 0..(1u64 << outr.extent_order) {
            let j = env.ctx.journal();
            st.frames.insert(
                j,
                first + k,
                PageInfo {
                    owner: d,
                    count: 1,
                    allocated: true,
                    ..PageInfo::default()
                },
            );
            let pfn = gpfn.map_or(INVALID_M2P, |g| g.wrapping_add(k));
            if let Some(g) = gpfn {
                let j = env.ctx.journal();
                st.p2m.insert(j, (d, g.wrapping_add(k)), first + k);
            }
            set_m2p(st, &mut env, first + k, pfn);
            allocated.push(first + k);
        }
        match env.ctx.copy_to_guest(slot, &first.to_le_bytes()) {
            Ok(()) => {}
            Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
            Err(_) => rc = Err(XenErrno::EFAULT),
        }
    }
    drop(env);
    ctx.emit(Effect::Mm(MmEffect::FramesAllocated {
        dom: d,
        mfns: allocated,
    }));
    Ok(rc)
}
