//! Memory hypercalls: `memory_op` (`public/memory.h`), `update_va_mapping` and `mmuext_op`
//! (`public/xen.h`).

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, MEMORY_OP, MMUEXT_OP, MMU_UPDATE, UPDATE_VA_MAPPING};

pub use dom0_interface::memory::{
    E820Entry, XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION,
    XENMEM_INCREASE_RESERVATION, XENMEM_MACHINE_MEMORY_MAP, XENMEM_MAXIMUM_GPFN,
    XENMEM_MAXIMUM_RAM_PAGE, XENMEM_MAXIMUM_RESERVATION, XENMEM_MEMORY_MAP,
    XENMEM_POPULATE_PHYSMAP,
};
use dom0_interface::memory::{XenMemoryMap, XenMemoryReservation};
pub use dom0_interface::xen::{
    MmuUpdate, MmuextOp, DOMID_SELF, MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE, MMUEXT_FLUSH_CACHE,
    MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI, MMUEXT_NEW_BASEPTR,
    MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE,
    MMUEXT_PIN_L4_TABLE, MMUEXT_SET_LDT, MMUEXT_TLB_FLUSH_ALL, MMUEXT_TLB_FLUSH_LOCAL,
    MMUEXT_TLB_FLUSH_MULTI, MMUEXT_UNPIN_TABLE, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE,
    UVMF_ALL, UVMF_INVLPG, UVMF_NONE, UVMF_TLB_FLUSH,
};

/// Page-table entry bits.
pub mod pte {
    /// Present.
    pub const PRESENT: u64 = 1 << 0;
    /// Writable.
    pub const RW: u64 = 1 << 1;
    /// User-accessible (Xen forces it for 64-bit PV).
    pub const USER: u64 = 1 << 2;
    /// Accessed.
    pub const ACCESSED: u64 = 1 << 5;
    /// Dirty.
    pub const DIRTY: u64 = 1 << 6;
    /// No-execute.
    pub const NX: u64 = 1 << 63;
}

/// `memory_op(cmd, &domid)` for the sub-ops whose argument is a `domid_t`
/// (`XENMEM_current_reservation`, `maximum_reservation`, `maximum_gpfn`).
pub fn domid_query(cmd: u32, domid: u16) -> XenResult {
    match cmd {
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION | XENMEM_MAXIMUM_GPFN => {}
        _ => return Err(Errno::EINVAL),
    }
    let d = domid;
    // SAFETY: for these sub-ops Xen only reads a `domid_t` from the argument.
    unsafe { hypercall::call(MEMORY_OP, [cmd.into(), &d as *const u16 as u64, 0, 0, 0]) }
}

/// `XENMEM_maximum_ram_page` (no argument).
pub fn maximum_ram_page() -> XenResult {
    memory_op_with_bad_ptr(XENMEM_MAXIMUM_RAM_PAGE, hypercall::BadPtr::NULL)
}

/// `XENMEM_memory_map` (or `XENMEM_machine_memory_map` with `machine`): fills `map`, returns
/// the number of entries written.
pub fn memory_map(machine: bool, map: &mut [E820Entry]) -> Result<usize, Errno> {
    let mut arg = XenMemoryMap {
        nr_entries: u32::try_from(map.len()).map_err(|_| Errno::EINVAL)?,
        buffer: map.as_mut_ptr() as u64,
    };
    let cmd = if machine {
        XENMEM_MACHINE_MEMORY_MAP
    } else {
        XENMEM_MEMORY_MAP
    };
    // SAFETY: Xen reads `struct xen_memory_map`, writes at most `nr_entries` entries into
    // `map` (an exclusive slice of that many entries) and writes back `nr_entries`.
    unsafe {
        hypercall::call(
            MEMORY_OP,
            [cmd.into(), &mut arg as *mut XenMemoryMap as u64, 0, 0, 0],
        )?
    };
    Ok((arg.nr_entries as usize).min(map.len()))
}

/// `memory_op(cmd, &reservation)`: a `struct xen_memory_reservation` of `domid` over
/// `extents` (extent bases in, frames out), no flags; returns the extents done.
///
/// # Safety
/// Giving frames back makes them inaccessible and populating names pfns: the caller vouches
/// for what the frames of `domid` are used for.
pub(crate) unsafe fn reservation_op(
    cmd: u32,
    domid: u16,
    extents: &mut [u64],
    order: u32,
) -> XenResult {
    let r = XenMemoryReservation {
        extent_start: extents.as_mut_ptr() as u64,
        nr_extents: extents.len() as u64,
        extent_order: order,
        mem_flags: 0,
        domid,
    };
    // SAFETY: Xen reads `r` and reads/writes `extents` (an exclusive slice of that many
    // entries); the caller vouches for the frames.
    unsafe {
        hypercall::call(
            MEMORY_OP,
            [
                cmd.into(),
                &r as *const XenMemoryReservation as u64,
                0,
                0,
                0,
            ],
        )
    }
}

/// `memory_op(cmd, ptr)` with an unreachable pointer or an unknown command.
pub fn memory_op_with_bad_ptr(cmd: u32, ptr: hypercall::BadPtr) -> XenResult {
    hypercall::call_with_bad_ptr(MEMORY_OP, cmd.into(), ptr)
}

/// `update_va_mapping(va, pte, flags)`: replaces the PTE that maps `va`.
///
/// # Safety
/// Changing a mapping changes what memory every reference into that page sees; the caller must
/// make sure no live Rust reference depends on the old mapping of `va`.
pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> XenResult {
    // SAFETY: scalars only; the caller vouches for the mapping change.
    unsafe { hypercall::call(UPDATE_VA_MAPPING, [va, pte, flags, 0, 0]) }
}

/// `mmu_update(reqs, count, &done, foreigndom)`: returns the result and the number of
/// requests completed.
///
/// # Safety
/// Each request may rewrite a page-table entry (or an M2P entry): the caller must make sure
/// no live Rust reference depends on a mapping the requests change.
pub unsafe fn mmu_update(reqs: &[MmuUpdate], foreigndom: u16) -> (XenResult, u32) {
    let mut done = 0u32;
    // SAFETY: Xen reads `reqs.len()` requests from `reqs` and writes the completed count to
    // `done`; the caller vouches for the requests themselves.
    let r = unsafe {
        hypercall::call(
            MMU_UPDATE,
            [
                reqs.as_ptr() as u64,
                reqs.len() as u64,
                &mut done as *mut u32 as u64,
                u64::from(foreigndom),
                0,
            ],
        )
    };
    (r, done)
}

/// `mmuext_op(ops, count, &done, domid)`: returns the number of operations completed.
///
/// # Safety
/// The operations may replace page tables and pin or unpin frames; the caller must make sure
/// the result keeps every live reference valid. Pointer fields (`vcpumask`) must point to
/// readable memory.
pub unsafe fn mmuext_op(ops: &[MmuextOp], domid: u16) -> Result<u32, Errno> {
    let mut done: u32 = 0;
    // SAFETY: Xen reads `ops.len()` operations from `ops` and writes the completed count to
    // `done`; the caller vouches for the operations themselves.
    unsafe {
        hypercall::call(
            MMUEXT_OP,
            [
                ops.as_ptr() as u64,
                ops.len() as u64,
                &mut done as *mut u32 as u64,
                u64::from(domid),
                0,
            ],
        )?;
    }
    Ok(done)
}

/// `MMUEXT_TLB_FLUSH_LOCAL`.
pub fn tlb_flush_local() -> Result<u32, Errno> {
    let op = MmuextOp {
        cmd: MMUEXT_TLB_FLUSH_LOCAL,
        ..MmuextOp::default()
    };
    // SAFETY: a TLB flush does not change any mapping.
    unsafe { mmuext_op(&[op], DOMID_SELF) }
}

/// `MMUEXT_INVLPG_LOCAL` of `va`.
pub fn invlpg_local(va: u64) -> Result<u32, Errno> {
    let op = MmuextOp {
        cmd: MMUEXT_INVLPG_LOCAL,
        arg1: va,
        arg2: 0,
    };
    // SAFETY: invalidating a TLB entry does not change any mapping.
    unsafe { mmuext_op(&[op], DOMID_SELF) }
}
