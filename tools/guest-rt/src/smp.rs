//! Secondary vCPUs and per-vCPU areas: pseudo-physical to machine frame translation through the
//! start-of-day p2m list, `VCPUOP_initialise` with a 64-bit PV `vcpu_guest_context` that starts
//! a Rust function on its own stack, and the guest memory Xen keeps up to date for a vCPU
//! (`VCPUOP_register_vcpu_info`, `VCPUOP_register_runstate_memory_area`).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::cpu::{FLAT_RING3_CS64, FLAT_RING3_SS64};
use crate::errno::{Errno, XenResult};
use crate::hypercall;
use crate::shared_info::VcpuTime;
use crate::start_info::StartInfo;
use crate::traps;
use crate::vcpu::{
    op_at, RunstateInfo, VCPUOP_INITIALISE, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
    VCPUOP_REGISTER_VCPU_INFO,
};
use dom0_interface::vcpu::{VcpuRegisterRunstateMemoryArea, VcpuRegisterVcpuInfo};

pub use crate::toolstack::VCPU_GUEST_CONTEXT_SIZE;
pub use dom0_interface::arch_x86::VGCF_IN_KERNEL;
/// Highest vCPU id [`start_secondary`] has a stack for.
pub const MAX_SECONDARY: u32 = 3;
/// Stack size of each secondary vCPU.
pub const SECONDARY_STACK_SIZE: usize = 16 * 1024;

/// Byte offsets inside `struct vcpu_guest_context` (x86-64, `public/arch-x86/xen.h`): the
/// FPU image at 0, flags, `user_regs` and its fields, the virtual IDT, LDT and GDT, kernel
/// stack, control and debug registers, callbacks, VM assists and segment bases.
pub mod ctx_off {
    pub const FLAGS: usize = 512;
    pub const USER_REGS: usize = 520;
    pub const R13: usize = USER_REGS + 16;
    pub const R12: usize = USER_REGS + 24;
    pub const RBP: usize = USER_REGS + 32;
    pub const RBX: usize = USER_REGS + 40;
    pub const R11: usize = USER_REGS + 48;
    pub const RAX: usize = USER_REGS + 80;
    pub const RCX: usize = USER_REGS + 88;
    pub const RDX: usize = USER_REGS + 96;
    pub const RSI: usize = USER_REGS + 104;
    pub const RDI: usize = USER_REGS + 112;
    pub const RIP: usize = USER_REGS + 128;
    pub const CS: usize = USER_REGS + 136;
    pub const RFLAGS: usize = USER_REGS + 144;
    pub const RSP: usize = USER_REGS + 152;
    pub const SS: usize = USER_REGS + 160;
    pub const TRAP_CTXT: usize = 720;
    pub const LDT_BASE: usize = 4816;
    pub const LDT_ENTS: usize = 4824;
    pub const GDT_FRAMES: usize = 4832;
    pub const GDT_ENTS: usize = 4960;
    pub const KERNEL_SS: usize = 4968;
    pub const KERNEL_SP: usize = 4976;
    pub const CTRLREG: usize = 4984;
    pub const DEBUGREG: usize = 5048;
    pub const EVENT_CB: usize = 5112;
    pub const FAILSAFE_CB: usize = 5120;
    pub const SYSCALL_CB: usize = 5128;
    pub const VM_ASSIST: usize = 5136;
    pub const FS_BASE: usize = 5144;
    pub const GS_BASE_KERNEL: usize = 5152;
    pub const GS_BASE_USER: usize = 5160;
}

extern "C" {
    /// `VIRT_BASE`, defined by the guest's linker script.
    static __guest_rt_virt_base: u8;
}

/// The image's `VIRT_BASE` (where pseudo-physical address 0 is mapped).
pub fn virt_base() -> u64 {
    // Only the address of the linker-defined symbol is taken, never its contents.
    core::ptr::addr_of!(__guest_rt_virt_base) as u64
}

/// The machine frame backing image address `va`, from the start-of-day p2m list
/// (`start_info.mfn_list`); `None` for addresses outside the domain's pages.
pub fn virt_to_mfn(si: &StartInfo, va: u64) -> Option<u64> {
    let pfn = va.checked_sub(virt_base())? >> 12;
    if pfn >= si.nr_pages || si.mfn_list == 0 {
        return None;
    }
    let entry = si.mfn_list.checked_add(pfn * 8)?;
    // SAFETY: `mfn_list` is the p2m array Xen mapped read-write for us at start of day; it has
    // `nr_pages` 8-byte entries and `pfn < nr_pages` was checked above. Read through an atomic
    // so the access is well-defined even though nothing else writes it.
    let mfn = unsafe { (*(entry as *const AtomicU64)).load(Ordering::SeqCst) };
    Some(mfn)
}

/// One page of the image, shared with Xen (accessed with atomics only).
#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; 4096]>);

// SAFETY: the page is only accessed through atomics.
unsafe impl Sync for Page {}

/// The page offered to `VCPUOP_register_vcpu_info`.
static VCPU_INFO_PAGE: Page = Page(UnsafeCell::new([0; 4096]));

/// A registrable `vcpu_info` location in this image.
#[derive(Clone, Copy, Debug)]
pub struct VcpuInfoArea {
    /// Machine frame of the page.
    pub mfn: u64,
    /// Offset inside the page.
    pub offset: u32,
}

/// The page reserved for a relocated `vcpu_info`: its frame (offset 0).
pub fn vcpu_info_page(si: &StartInfo) -> Option<VcpuInfoArea> {
    let va = VCPU_INFO_PAGE.0.get() as u64;
    virt_to_mfn(si, va).map(|mfn| VcpuInfoArea { mfn, offset: 0 })
}

fn page_u32(off: usize) -> &'static AtomicU32 {
    debug_assert!(off.is_multiple_of(4) && off < 4096);
    // SAFETY: `off` is inside the static page and 4-byte aligned; the page is only accessed
    // atomically.
    unsafe { &*((VCPU_INFO_PAGE.0.get() as usize + off) as *const AtomicU32) }
}

fn page_u64(off: usize) -> &'static AtomicU64 {
    debug_assert!(off.is_multiple_of(8) && off < 4096);
    // SAFETY: as for `page_u32`; `off` is 8-byte aligned.
    unsafe { &*((VCPU_INFO_PAGE.0.get() as usize + off) as *const AtomicU64) }
}

/// A consistent snapshot of the `vcpu_time_info` inside the relocated `vcpu_info` at `offset`
/// of [`vcpu_info_page`] (retries while Xen updates it).
pub fn relocated_vcpu_time(offset: u32) -> Option<VcpuTime> {
    let o = usize::try_from(offset).ok()?.checked_add(32)?;
    if o + 32 > 4096 || !o.is_multiple_of(8) {
        return None;
    }
    VcpuTime::read(
        |off| page_u32(o + off).load(Ordering::SeqCst),
        |off| page_u64(o + off).load(Ordering::SeqCst),
        Some(1_000_000),
    )
}

/// `evtchn_upcall_mask` of the relocated `vcpu_info` at `offset`.
pub fn relocated_upcall_mask(offset: u32) -> Option<bool> {
    let o = usize::try_from(offset).ok()?;
    if o >= 4096 {
        return None;
    }
    // SAFETY: `o + 1` is inside the static page (checked above); byte access is atomic.
    let b = unsafe { &*((VCPU_INFO_PAGE.0.get() as usize + o + 1) as *const AtomicU8) };
    Some(b.load(Ordering::SeqCst) != 0)
}

/// `evtchn_pending_sel` of the relocated `vcpu_info` at `offset` (8-byte aligned offsets only).
pub fn relocated_pending_sel(offset: u32) -> Option<u64> {
    let o = usize::try_from(offset).ok()?.checked_add(8)?;
    (o + 8 <= 4096 && o.is_multiple_of(8)).then(|| page_u64(o).load(Ordering::SeqCst))
}

/// `VCPUOP_register_vcpu_info(vcpu, {mfn, offset})`.
pub fn register_vcpu_info(vcpu: u32, mfn: u64, offset: u32) -> XenResult {
    let arg = VcpuRegisterVcpuInfo {
        mfn,
        offset,
        rsvd: 0,
    };
    // SAFETY: Xen reads the 16-byte `struct vcpu_register_vcpu_info`. If it accepts, it maps
    // frame `mfn` as the vCPU's vcpu_info; callers pass only frames of [`vcpu_info_page`], which
    // this runtime reserves for that purpose and accesses atomically, or frames Xen refuses.
    unsafe {
        op_at(
            VCPUOP_REGISTER_VCPU_INFO,
            vcpu,
            &arg as *const VcpuRegisterVcpuInfo as u64,
        )
    }
}

/// The runstate areas registered with [`register_runstate_area`], one per vCPU (6 words each).
static RUNSTATE_AREAS: [[AtomicU64; 6]; 4] = [const { [const { AtomicU64::new(0) }; 6] }; 4];

/// `VCPUOP_register_runstate_memory_area(vcpu, &area[vcpu])` with this runtime's static area
/// for `vcpu` (0..=3): Xen keeps a `vcpu_runstate_info` there.
pub fn register_runstate_area(vcpu: u32) -> XenResult {
    let area = RUNSTATE_AREAS
        .get(vcpu as usize)
        .ok_or(Errno::EINVAL)?
        .as_ptr() as u64;
    // SAFETY: Xen reads the 8-byte `struct vcpu_register_runstate_memory_area` and from then on
    // writes a 48-byte `vcpu_runstate_info` at `area`, a static reserved for it and only read
    // with atomics here.
    unsafe { runstate_area_op(vcpu, area) }
}

/// `VCPUOP_register_runstate_memory_area(vcpu, addr)` with an address Xen cannot write: it must
/// refuse with `-EFAULT` (or accept and never write, as it may for addresses it cannot check).
pub fn register_runstate_area_at(vcpu: u32, addr: hypercall::BadPtr) -> XenResult {
    // SAFETY: Xen reads the 8-byte argument; the area address is a `BadPtr`, which Xen can never
    // write on our behalf.
    unsafe { runstate_area_op(vcpu, addr.addr()) }
}

/// The last 32 bytes below the canonical hole. guest-rt kernels never map the lower half of
/// the address space (they live at `VIRT_BASE` in the upper half), so a 48-byte area here
/// starts at a valid, unmapped address and runs on into the hole.
pub const STRADDLING_AREA: u64 = 0x0000_7fff_ffff_ffe0;

/// `VCPUOP_register_runstate_memory_area(vcpu, {STRADDLING_AREA})`: Xen checks only where an
/// area starts (`guest_handle_okay`), so it accepts this one; each copy to it fails and is
/// ignored.
pub fn register_runstate_area_straddling(vcpu: u32) -> XenResult {
    // SAFETY: Xen reads the 8-byte argument; nothing is mapped at `STRADDLING_AREA` (the lower
    // half, which guest-rt never maps) and the rest of the area is non-canonical, so no write
    // of Xen's to it lands.
    unsafe { runstate_area_op(vcpu, STRADDLING_AREA) }
}

/// `VCPUOP_register_runstate_memory_area(vcpu, {addr})`.
///
/// # Safety
/// Xen keeps writing a 48-byte `vcpu_runstate_info` at `addr` from then on: it must be memory
/// reserved for that (or an address Xen cannot write).
unsafe fn runstate_area_op(vcpu: u32, addr: u64) -> XenResult {
    let arg = VcpuRegisterRunstateMemoryArea { addr };
    // SAFETY: Xen reads the 8-byte argument; the caller vouches for `addr`.
    unsafe {
        op_at(
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            vcpu,
            &arg as *const VcpuRegisterRunstateMemoryArea as u64,
        )
    }
}

/// The runstate area of `vcpu` as Xen last wrote it (see [`register_runstate_area`]); `None`
/// for vCPUs without one. Retries while `XEN_RUNSTATE_UPDATE` is set (bounded).
pub fn runstate_area(vcpu: u32) -> Option<RunstateInfo> {
    let a = RUNSTATE_AREAS.get(vcpu as usize)?;
    let mut w = [0u64; 6];
    for _ in 0..1_000_000 {
        for (d, s) in w.iter_mut().zip(a.iter()) {
            *d = s.load(Ordering::SeqCst);
        }
        if w[1] & (1 << 63) == 0 && a[1].load(Ordering::SeqCst) == w[1] {
            break;
        }
    }
    Some(RunstateInfo {
        state: w[0] as u32 as i32,
        state_entry_time: w[1],
        time: [w[2], w[3], w[4], w[5]],
    })
}

/// Stacks of the secondary vCPUs (index 0 unused: vCPU 0 runs on the boot stack).
#[repr(C, align(16))]
struct Stacks(UnsafeCell<[[u8; SECONDARY_STACK_SIZE]; MAX_SECONDARY as usize + 1]>);

// SAFETY: each stack is used by exactly one vCPU (the one started on it); the Rust side never
// creates references into it.
unsafe impl Sync for Stacks {}

static STACKS: Stacks = Stacks(UnsafeCell::new(
    [[0; SECONDARY_STACK_SIZE]; MAX_SECONDARY as usize + 1],
));

/// Entry functions of the secondary vCPUs, by id (0: none).
static ENTRIES: [AtomicU64; MAX_SECONDARY as usize + 1] =
    [const { AtomicU64::new(0) }; MAX_SECONDARY as usize + 1];

/// Where a secondary vCPU starts: calls its registered entry with its id.
extern "C" fn secondary_start(vcpu: u64) -> ! {
    let f = ENTRIES
        .get(vcpu as usize)
        .map_or(0, |e| e.load(Ordering::SeqCst));
    if f != 0 {
        // SAFETY: the only values stored in `ENTRIES` are `fn(u32) -> !` pointers (see
        // `build_context`), so transmuting back is the identity.
        let entry: fn(u32) -> ! =
            unsafe { core::mem::transmute::<usize, fn(u32) -> !>(f as usize) };
        entry(vcpu as u32);
    }
    crate::sched::stop(crate::sched::SHUTDOWN_CRASH)
}

/// Builds the `vcpu_guest_context` that starts `entry(vcpu)` in guest kernel mode on `vcpu`'s
/// own stack, on the current page tables, with this runtime's trap table.
pub fn build_context(
    si: &StartInfo,
    vcpu: u32,
    entry: fn(u32) -> !,
) -> Result<[u8; VCPU_GUEST_CONTEXT_SIZE], Errno> {
    if vcpu == 0 || vcpu > MAX_SECONDARY {
        return Err(Errno::EINVAL);
    }
    let l4_mfn = virt_to_mfn(si, si.pt_base).ok_or(Errno::EFAULT)?;
    let stack_base = STACKS.0.get() as u64 + u64::from(vcpu) * SECONDARY_STACK_SIZE as u64;
    let stack_top = stack_base + SECONDARY_STACK_SIZE as u64;
    ENTRIES[vcpu as usize].store(entry as usize as u64, Ordering::SeqCst);

    let mut c = [0u8; VCPU_GUEST_CONTEXT_SIZE];
    let mut put = |off: usize, bytes: &[u8]| c[off..off + bytes.len()].copy_from_slice(bytes);
    put(ctx_off::FLAGS, &VGCF_IN_KERNEL.to_le_bytes());
    put(ctx_off::RDI, &u64::from(vcpu).to_le_bytes());
    put(
        ctx_off::RIP,
        &(secondary_start as *const () as u64).to_le_bytes(),
    );
    put(ctx_off::CS, &FLAT_RING3_CS64.to_le_bytes());
    put(ctx_off::RFLAGS, &0x2u64.to_le_bytes());
    // As if `secondary_start` had been called: RSP + 8 is 16-byte aligned.
    put(ctx_off::RSP, &(stack_top - 8).to_le_bytes());
    put(ctx_off::SS, &FLAT_RING3_SS64.to_le_bytes());
    for t in traps::table().iter().filter(|t| t.address != 0) {
        let off = ctx_off::TRAP_CTXT + usize::from(t.vector) * 16;
        put(off, &[t.vector, t.flags]);
        put(off + 2, &t.cs.to_le_bytes());
        put(off + 8, &t.address.to_le_bytes());
    }
    put(
        ctx_off::KERNEL_SS,
        &u64::from(FLAT_RING3_SS64).to_le_bytes(),
    );
    put(ctx_off::KERNEL_SP, &stack_top.to_le_bytes());
    // ctrlreg[3]: xen_pfn_to_cr3(mfn) = mfn << 12 on x86-64.
    put(ctx_off::CTRLREG + 3 * 8, &(l4_mfn << 12).to_le_bytes());
    Ok(c)
}

/// `VCPUOP_initialise(vcpu, ctx)` with raw context bytes (see [`build_context`]).
pub fn initialise(vcpu: u32, ctx: &[u8; VCPU_GUEST_CONTEXT_SIZE]) -> XenResult {
    // SAFETY: Xen reads the 5168-byte context. A context from `build_context` starts `vcpu` on
    // a stack reserved for it, in code that only touches atomics and makes hypercalls.
    unsafe { op_at(VCPUOP_INITIALISE, vcpu, ctx.as_ptr() as u64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_offsets_match_the_abi() {
        assert_eq!(ctx_off::SS + 40, ctx_off::TRAP_CTXT);
        assert_eq!(ctx_off::TRAP_CTXT + 256 * 16, ctx_off::LDT_BASE);
        assert_eq!(ctx_off::GDT_FRAMES + 16 * 8, ctx_off::GDT_ENTS);
        assert_eq!(ctx_off::CTRLREG + 8 * 8, ctx_off::DEBUGREG);
        assert_eq!(ctx_off::DEBUGREG + 8 * 8, ctx_off::EVENT_CB);
        assert_eq!(ctx_off::GS_BASE_USER + 8, VCPU_GUEST_CONTEXT_SIZE);
        assert_eq!(
            ctx_off::TRAP_CTXT + 256 * 16 + 8 + 8 + 16 * 8 + 8,
            ctx_off::KERNEL_SS
        );
        assert_eq!(
            ctx_off::CTRLREG + 8 * 8 + 8 * 8 + 4 * 8 + 3 * 8,
            VCPU_GUEST_CONTEXT_SIZE
        );
    }
}
