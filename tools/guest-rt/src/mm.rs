//! Memory hypercalls: `memory_op` (`public/memory.h`), `update_va_mapping` and `mmuext_op`
//! (`public/xen.h`).

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, MEMORY_OP, MMUEXT_OP, UPDATE_VA_MAPPING};

/// `XENMEM_increase_reservation`.
pub const XENMEM_INCREASE_RESERVATION: u64 = 0;
/// `XENMEM_decrease_reservation`.
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
/// `XENMEM_maximum_ram_page`.
pub const XENMEM_MAXIMUM_RAM_PAGE: u64 = 2;
/// `XENMEM_current_reservation`.
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
/// `XENMEM_maximum_reservation`.
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
/// `XENMEM_populate_physmap`.
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
/// `XENMEM_memory_map`.
pub const XENMEM_MEMORY_MAP: u64 = 9;
/// `XENMEM_machine_memory_map`.
pub const XENMEM_MACHINE_MEMORY_MAP: u64 = 10;
/// `XENMEM_maximum_gpfn`.
pub const XENMEM_MAXIMUM_GPFN: u64 = 14;

/// `UVMF_NONE`: no flush.
pub const UVMF_NONE: u64 = 0;
/// `UVMF_TLB_FLUSH`: flush the whole TLB.
pub const UVMF_TLB_FLUSH: u64 = 1;
/// `UVMF_INVLPG`: flush the one page.
pub const UVMF_INVLPG: u64 = 2;
/// `UVMF_ALL`: flush on every vCPU (otherwise only the local one).
pub const UVMF_ALL: u64 = 4;

/// `MMUEXT_PIN_L1_TABLE`.
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// `MMUEXT_PIN_L2_TABLE`.
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
/// `MMUEXT_PIN_L3_TABLE`.
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
/// `MMUEXT_PIN_L4_TABLE`.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// `MMUEXT_UNPIN_TABLE`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// `MMUEXT_NEW_BASEPTR`.
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// `MMUEXT_TLB_FLUSH_LOCAL`.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// `MMUEXT_INVLPG_LOCAL`.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// `MMUEXT_TLB_FLUSH_MULTI`.
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
/// `MMUEXT_INVLPG_MULTI`.
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
/// `MMUEXT_TLB_FLUSH_ALL`.
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
/// `MMUEXT_INVLPG_ALL`.
pub const MMUEXT_INVLPG_ALL: u32 = 11;
/// `MMUEXT_FLUSH_CACHE`.
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
/// `MMUEXT_SET_LDT`.
pub const MMUEXT_SET_LDT: u32 = 13;
/// `MMUEXT_NEW_USER_BASEPTR`.
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
/// `MMUEXT_CLEAR_PAGE`.
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
/// `MMUEXT_COPY_PAGE`.
pub const MMUEXT_COPY_PAGE: u32 = 17;

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

/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7FF0;

/// `struct mmuext_op` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuextOp {
    /// `MMUEXT_*`.
    pub cmd: u32,
    /// `mfn` or `linear_addr`.
    pub arg1: u64,
    /// `nr_ents`, `vcpumask` or `src_mfn`.
    pub arg2: u64,
}
const _: () = assert!(core::mem::size_of::<MmuextOp>() == 24);

/// `memory_op(cmd, &domid)` for the sub-ops whose argument is a `domid_t`
/// (`XENMEM_current_reservation`, `maximum_reservation`, `maximum_gpfn`).
pub fn domid_query(cmd: u64, domid: u16) -> XenResult {
    match cmd {
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION | XENMEM_MAXIMUM_GPFN => {}
        _ => return Err(Errno::EINVAL),
    }
    let d = domid;
    // SAFETY: for these sub-ops Xen only reads a `domid_t` from the argument.
    unsafe { hypercall::call(MEMORY_OP, [cmd, &d as *const u16 as u64, 0, 0, 0]) }
}

/// `XENMEM_maximum_ram_page` (no argument).
pub fn maximum_ram_page() -> XenResult {
    hypercall::call_with_bad_ptr(MEMORY_OP, XENMEM_MAXIMUM_RAM_PAGE, hypercall::BadPtr::NULL)
}

/// One `struct e820entry` as `XENMEM_memory_map` returns it (packed, 20 bytes).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type (1 = RAM).
    pub kind: u32,
}
const _: () = assert!(core::mem::size_of::<E820Entry>() == 20);

/// `XENMEM_memory_map` (or `XENMEM_machine_memory_map` with `machine`): fills `map`, returns
/// the number of entries written.
pub fn memory_map(machine: bool, map: &mut [E820Entry]) -> Result<usize, Errno> {
    #[repr(C)]
    struct MemoryMap {
        nr_entries: u32,
        buffer: u64,
    }
    let mut arg = MemoryMap {
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
    unsafe { hypercall::call(MEMORY_OP, [cmd, &mut arg as *mut MemoryMap as u64, 0, 0, 0])? };
    Ok((arg.nr_entries as usize).min(map.len()))
}

/// `memory_op(cmd, ptr)` with an unreachable pointer or an unknown command.
pub fn memory_op_with_bad_ptr(cmd: u64, ptr: hypercall::BadPtr) -> XenResult {
    hypercall::call_with_bad_ptr(MEMORY_OP, cmd, ptr)
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
