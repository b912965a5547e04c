//! PV memory-management helpers for test guests: the start-of-day p2m and the read-only M2P
//! table, a read-only walk of the bootstrap page tables, a scratch virtual page (in the
//! start-of-day padding, where no Rust object lives) that can be remapped to any frame, and
//! safe wrappers for the MMU operations whose effects stay confined to what they name.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{
    self, HYPERVISOR_VIRT_START, MEMORY_OP, MMUEXT_OP, MMU_UPDATE, UPDATE_VA_MAPPING,
};
use crate::mm::{mmu_update, MmuUpdate, MmuextOp, DOMID_SELF, UVMF_INVLPG};
use crate::start_info::StartInfo;
use core::sync::atomic::{AtomicU64, Ordering};

/// PTE bits used by the helpers.
pub use crate::mm::pte;

/// Virtual address of the read-only M2P table (`MACH2PHYS_VIRT_START`).
pub const M2P_VIRT_START: u64 = HYPERVISOR_VIRT_START;
pub use crate::mm::{MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE};

/// The page-table entry mapping `mfn` with `flags`, or 0 (not present) without `PRESENT`.
fn entry(mfn: u64, flags: u64) -> u64 {
    if flags & pte::PRESENT != 0 {
        (mfn << 12) | flags
    } else {
        0
    }
}

/// The frame backing pfn `pfn`, from the start-of-day p2m list.
pub fn pfn_to_mfn(si: &StartInfo, pfn: u64) -> Option<u64> {
    crate::smp::virt_to_mfn(
        si,
        crate::smp::virt_base().checked_add(pfn.checked_mul(4096)?)?,
    )
}

/// The M2P entry of `mfn`, read from the read-only table Xen maps in every PV guest.
pub fn m2p(mfn: u64) -> u64 {
    let addr = M2P_VIRT_START + (mfn & ((1 << 40) - 1)) * 8;
    // SAFETY: Xen maps the M2P table read-only at MACH2PHYS_VIRT_START for every frame up to
    // max_page; callers pass frames of their own domain (below max_page), and the read is an
    // atomic load of an aligned u64.
    unsafe { (*(addr as *const AtomicU64)).load(Ordering::SeqCst) }
}

/// Reads entry `index` of the page table in frame `mfn` through the bootstrap region's
/// read-only mapping of it; `None` if the frame is not one of the domain's start-of-day pages.
pub fn read_table_entry(si: &StartInfo, mfn: u64, index: u64) -> Option<u64> {
    if index >= 512 {
        return None;
    }
    let pfn = m2p(mfn);
    if pfn >= si.nr_pages || pfn_to_mfn(si, pfn) != Some(mfn) {
        return None;
    }
    let va = crate::smp::virt_base() + pfn * 4096 + index * 8;
    if va < si.pt_base || va >= si.pt_base + si.nr_pt_frames * 4096 {
        return None;
    }
    // SAFETY: `va` lies in the bootstrap page tables, which Xen maps read-only (readable) at
    // `pt_base..pt_base + nr_pt_frames * 4K`; the read is an aligned atomic load.
    Some(unsafe { (*(va as *const AtomicU64)).load(Ordering::SeqCst) })
}

/// The machine frame of the root L4 (the first bootstrap page-table frame).
pub fn root_mfn(si: &StartInfo) -> Option<u64> {
    crate::smp::virt_to_mfn(si, si.pt_base)
}

/// The machine address of the L1 entry mapping `va` in the bootstrap tables.
pub fn l1e_maddr(si: &StartInfo, va: u64) -> Option<u64> {
    let mut table = root_mfn(si)?;
    for shift in [39u32, 30, 21] {
        let e = read_table_entry(si, table, (va >> shift) & 511)?;
        if e & pte::PRESENT == 0 || e & (1 << 7) != 0 {
            return None;
        }
        table = (e & 0x000f_ffff_ffff_f000) >> 12;
    }
    Some((table << 12) + ((va >> 12) & 511) * 8)
}

/// A virtual page in the start-of-day padding (at least 512 KiB follow the boot stack), free
/// to be remapped: nothing of the image lives there.
pub struct Scratch {
    va: u64,
    home: u64,
    mapped: Option<(u64, bool)>,
}

impl Scratch {
    /// The scratch page of this domain (256 KiB into the padding), mapped to its own frame.
    pub fn new(si: &StartInfo) -> Option<Scratch> {
        let stack_end = si.pt_base + (si.nr_pt_frames + 1) * 4096;
        let va = stack_end + 0x40000;
        let home = crate::smp::virt_to_mfn(si, va)?;
        Some(Scratch {
            va,
            home,
            mapped: Some((home, true)),
        })
    }

    /// Its virtual address.
    pub fn va(&self) -> u64 {
        self.va
    }

    /// The frame mapped there now, if any.
    pub fn mapped_mfn(&self) -> Option<u64> {
        self.mapped.map(|(m, _)| m)
    }

    /// The frame it maps at start of day.
    pub fn home(&self) -> u64 {
        self.home
    }

    /// `update_va_mapping(va, pte, UVMF_INVLPG)`: maps `mfn` with `flags` (0: unmaps).
    pub fn map(&mut self, mfn: u64, flags: u64) -> XenResult {
        let val = entry(mfn, flags);
        // SAFETY: the scratch page holds no Rust object; every access to it goes through this
        // type, which records what is mapped there.
        let r = unsafe { hypercall::call(UPDATE_VA_MAPPING, [self.va, val, UVMF_INVLPG, 0, 0]) };
        if r.is_ok() {
            self.mapped = (flags & pte::PRESENT != 0).then_some((mfn, flags & pte::RW != 0));
        }
        r
    }

    /// `update_va_mapping_otherdomain(va, pte, UVMF_INVLPG, domid)`: maps frame `mfn` of
    /// domain `domid` (the caller must be privileged over it) with `flags`.
    pub fn map_foreign(&mut self, domid: u16, mfn: u64, flags: u64) -> XenResult {
        let val = (mfn << 12) | (flags | pte::PRESENT);
        // SAFETY: as `map`: the scratch page holds no Rust object and this type records what
        // is mapped there; the frame is another domain's, reached only through this page.
        let r = unsafe {
            hypercall::call(
                crate::hypercall::UPDATE_VA_MAPPING_OTHERDOMAIN,
                [self.va, val, UVMF_INVLPG, u64::from(domid), 0],
            )
        };
        if r.is_ok() {
            self.mapped = Some((mfn, flags & pte::RW != 0));
        }
        r
    }

    /// The same update through `mmu_update(MMU_NORMAL_PT_UPDATE)` on the L1 entry's machine
    /// address (`maddr`, from [`l1e_maddr`]); returns the result and the done count.
    pub fn map_via_mmu_update(&mut self, maddr: u64, mfn: u64, flags: u64) -> (XenResult, u32) {
        self.map_via_mmu_update_cmd(maddr, mfn, flags, MMU_NORMAL_PT_UPDATE)
    }

    /// One `mmu_update` of `N` `MMU_NORMAL_PT_UPDATE` requests that all write the scratch
    /// page's L1 entry (at `maddr`, from [`l1e_maddr`]) with the mapping it has now (its own
    /// frame, writable): a batch that changes nothing, for timing the validation path.
    /// Returns the result and the done count.
    pub fn rewrite_batch<const N: usize>(&mut self, maddr: u64) -> (XenResult, u32) {
        let val = (self.home << 12) | pte::PRESENT | pte::RW;
        let reqs = [MmuUpdate {
            ptr: maddr | MMU_NORMAL_PT_UPDATE,
            val,
        }; N];
        // SAFETY: every request rewrites the scratch page's own L1 entry with the mapping it
        // already holds (the home frame, writable: `Scratch::new`'s state, which this call
        // requires — see `mapped`), so no mapping the program relies on changes.
        unsafe { mmu_update(&reqs, DOMID_SELF) }
    }

    /// Whether the scratch page maps its home frame writable (as at start of day).
    pub fn maps_home(&self) -> bool {
        self.mapped == Some((self.home, true))
    }

    /// `update_va_mapping(va, pte, uvmf)` with caller-chosen flush flags (`UVMF_*`, possibly
    /// OR-ing in a vCPU bitmap pointer): Xen changes the entry before it reads the bitmap.
    pub fn map_flush(&mut self, mfn: u64, flags: u64, uvmf: u64) -> XenResult {
        let val = entry(mfn, flags);
        // SAFETY: as for `map`: only the scratch page's mapping changes.
        let r = unsafe { hypercall::call(UPDATE_VA_MAPPING, [self.va, val, uvmf, 0, 0]) };
        if r.is_ok() || r == Err(Errno::EFAULT) {
            self.invlpg();
            self.mapped = (flags & pte::PRESENT != 0).then_some((mfn, flags & pte::RW != 0));
        }
        r
    }

    /// `mmu_update` of the scratch page's L1 entry with command `cmd` (0 normal, 2
    /// PRESERVE_AD).
    pub fn map_via_mmu_update_cmd(
        &mut self,
        maddr: u64,
        mfn: u64,
        flags: u64,
        cmd: u64,
    ) -> (XenResult, u32) {
        let val = entry(mfn, flags);
        let req = MmuUpdate {
            ptr: maddr | (cmd & 2),
            val,
        };
        // SAFETY: `maddr` is the scratch page's own L1 entry (the caller got it from
        // `l1e_maddr(si, self.va())`); the request changes only what the scratch page maps.
        let (r, done) = unsafe { mmu_update(&[req], DOMID_SELF) };
        if r.is_ok() {
            self.invlpg();
            self.mapped = (flags & pte::PRESENT != 0).then_some((mfn, flags & pte::RW != 0));
        }
        (r, done)
    }

    fn invlpg(&self) {
        let _ = crate::mm::invlpg_local(self.va);
    }

    /// Maps the start-of-day frame back, writable.
    pub fn restore(&mut self) -> XenResult {
        let home = self.home;
        self.map(home, pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY)
    }

    /// Reads word `i` (0..512) of the mapped frame; `None` if nothing is mapped.
    pub fn read(&self, i: usize) -> Option<u64> {
        self.mapped?;
        if i >= 512 {
            return None;
        }
        // SAFETY: a frame is mapped at the scratch page (recorded by `map`), the address is
        // inside it and aligned; atomics make the access well-defined.
        Some(unsafe { (*((self.va + i as u64 * 8) as *const AtomicU64)).load(Ordering::SeqCst) })
    }

    /// Writes word `i` of the mapped frame; false if nothing writable is mapped.
    pub fn write(&self, i: usize, v: u64) -> bool {
        if !matches!(self.mapped, Some((_, true))) || i >= 512 {
            return false;
        }
        // SAFETY: a frame is mapped writable at the scratch page and the address is inside it;
        // no Rust object lives there.
        unsafe { (*((self.va + i as u64 * 8) as *const AtomicU64)).store(v, Ordering::SeqCst) };
        true
    }

    /// Fills the mapped frame with `v`; false if nothing writable is mapped.
    pub fn fill(&self, v: u64) -> bool {
        (0..512).all(|i| self.write(i, v))
    }
}

/// `mmuext_op` of one operation on behalf of `domid`; returns the result and the done count.
fn mmuext1(cmd: u32, arg1: u64, arg2: u64, domid: u16) -> (XenResult, u32) {
    let op = MmuextOp { cmd, arg1, arg2 };
    let mut done = 0u32;
    // SAFETY: the operations wrapped below change only page types, pins, TLBs or the user
    // page-table base (which only guest user mode uses); Xen reads `op` and writes `done`.
    let r = unsafe {
        hypercall::call(
            MMUEXT_OP,
            [
                &op as *const MmuextOp as u64,
                1,
                &mut done as *mut u32 as u64,
                u64::from(domid),
                0,
            ],
        )
    };
    (r, done)
}

/// Pins frame `mfn` as a level-`level` page table (1..=4). Pinning only types the frame:
/// Xen refuses it while the frame is mapped writable anywhere.
pub fn pin(level: u32, mfn: u64) -> (XenResult, u32) {
    let cmd = crate::mm::MMUEXT_PIN_L1_TABLE + level.saturating_sub(1).min(3);
    mmuext1(cmd, mfn, 0, DOMID_SELF)
}

/// Unpins `mfn`.
pub fn unpin(mfn: u64) -> (XenResult, u32) {
    mmuext1(crate::mm::MMUEXT_UNPIN_TABLE, mfn, 0, DOMID_SELF)
}

/// MMUEXT_NEW_USER_BASEPTR (`mfn` 0: none): the root guest user mode runs on.
pub fn new_user_baseptr(mfn: u64) -> (XenResult, u32) {
    mmuext1(crate::mm::MMUEXT_NEW_USER_BASEPTR, mfn, 0, DOMID_SELF)
}

/// MMUEXT_SET_LDT: the calling vCPU's LDT at linear address `va` with `ents` entries (0:
/// none). Only selectors with the table-indicator bit reach it.
pub fn set_ldt(va: u64, ents: u64) -> (XenResult, u32) {
    mmuext1(crate::mm::MMUEXT_SET_LDT, va, ents, DOMID_SELF)
}

/// A flush-type operation (`MMUEXT_TLB_FLUSH_*`, `MMUEXT_INVLPG_*`, cache flushes,
/// MARK_SUPER, unknown commands) with `arg1`/`arg2`, on behalf of `domid`.
pub fn flush_op(cmd: u32, arg1: u64, arg2: u64, domid: u16) -> (XenResult, u32) {
    let allowed = matches!(cmd, 6..=12 | 18..=20) || cmd > 20;
    if !allowed {
        return (Err(Errno::EINVAL), 0);
    }
    mmuext1(cmd, arg1, arg2, domid)
}

/// `mmu_update` of the root's L4 slot `slot` — one of the hypervisor's (256..=271), which
/// Xen refuses — with `val`.
pub fn update_xen_root_slot(si: &StartInfo, slot: u64, val: u64) -> (XenResult, u32) {
    let Some(root) = root_mfn(si) else {
        return (Err(Errno::EINVAL), 0);
    };
    if !(256..272).contains(&slot) {
        return (Err(Errno::EINVAL), 0);
    }
    mmu_update1((root << 12) + slot * 8, val)
}

/// `MMU_MACHPHYS_UPDATE`: sets the M2P entry of `mfn` to `pfn`.
pub fn machphys_update(mfn: u64, pfn: u64) -> (XenResult, u32) {
    mmu_update1((mfn << 12) | MMU_MACHPHYS_UPDATE, pfn)
}

/// `mmu_update` with command bits `cmd` (4..=7, none of which Xen knows) on `mfn`.
pub fn mmu_update_unknown(mfn: u64, cmd: u64) -> (XenResult, u32) {
    mmu_update1((mfn << 12) | (cmd & 7 | 4), 0)
}

fn mmu_update1(ptr: u64, val: u64) -> (XenResult, u32) {
    // SAFETY: the wrappers above only pass requests Xen refuses (hypervisor slots, unknown
    // commands) or M2P updates, none of which changes a mapping.
    unsafe { mmu_update(&[MmuUpdate { ptr, val }], DOMID_SELF) }
}

/// `update_va_mapping` of an address inside the hypervisor's range (always refused by Xen,
/// so no mapping of the guest can change).
pub fn update_va_mapping_in_xen_range(offset: u64, val: u64) -> XenResult {
    let va = HYPERVISOR_VIRT_START + (offset & ((1 << 43) - 1) & !0xfff);
    // SAFETY: `va` is inside [HYPERVISOR_VIRT_START, HYPERVISOR_VIRT_END), which the guest
    // cannot map: no guest mapping changes whatever Xen answers.
    unsafe { hypercall::call(UPDATE_VA_MAPPING, [va, val, 0, 0, 0]) }
}

/// `memory_op(cmd, &reservation)` for increase/decrease_reservation and populate_physmap on
/// DOMID_SELF with `extents` (in: pfns or mfns, out: mfns); returns extents done.
///
/// # Safety
/// Giving frames back (decrease_reservation) makes them inaccessible: the caller must not
/// use any frame it names afterwards; populate_physmap must name pfns the caller manages.
pub unsafe fn reservation(cmd: u32, extents: &mut [u64], order: u32) -> XenResult {
    // SAFETY: the caller vouches for the frames (of this domain).
    unsafe { crate::mm::reservation_op(cmd, DOMID_SELF, extents, order) }
}

/// `XENMEM_machphys_mapping`: (v_start, v_end, max_mfn).
pub fn machphys_mapping() -> Result<(u64, u64, u64), Errno> {
    let mut m = [0u64; 3];
    // SAFETY: Xen writes the 24-byte `xen_machphys_mapping` into `m`.
    unsafe { hypercall::call(MEMORY_OP, [12, m.as_mut_ptr() as u64, 0, 0, 0])? };
    Ok((m[0], m[1], m[2]))
}

/// `XENMEM_machphys_mfn_list` into `out`: entries written.
pub fn machphys_mfn_list(out: &mut [u64]) -> Result<u32, Errno> {
    #[repr(C)]
    struct List {
        max_extents: u32,
        extent_start: u64,
        nr_extents: u32,
    }
    let mut l = List {
        max_extents: out.len() as u32,
        extent_start: out.as_mut_ptr() as u64,
        nr_extents: 0,
    };
    // SAFETY: Xen reads `l`, writes at most `max_extents` entries into `out` and `nr_extents`.
    unsafe { hypercall::call(MEMORY_OP, [5, &mut l as *mut List as u64, 0, 0, 0])? };
    Ok(l.nr_extents)
}

/// The `k`-th spare pfn counting down from the top of the domain: a page of the domain that
/// the start-of-day tables do not map (beyond the bootstrap region and its padding) and that
/// the runtime never uses.
pub fn spare_pfn(si: &StartInfo, k: u64) -> Option<u64> {
    let pfn = si.nr_pages.checked_sub(1 + k)?;
    let stack_end = si.pt_base + (si.nr_pt_frames + 1) * 4096;
    let bootstrap_end = stack_end + (512 << 10) + (4 << 20);
    let va = crate::smp::virt_base().checked_add(pfn * 4096)?;
    (va >= bootstrap_end).then_some(pfn)
}

/// First frame [`low_frame_not_ours`] considers (64 KiB, above the BIOS data area).
const LOW_RAM_FIRST: u64 = 0x10;
/// End of conventional memory (640 KiB): frames below are RAM on every PC.
const LOW_RAM_END: u64 = 0xa0;

/// A frame of conventional memory (64-640 KiB, RAM on every PC) that the domain does not own
/// by its start-of-day p2m list (one scan of it): Xen 4.17 gives the low 1 MiB to DOMID_IO, a
/// hypervisor may keep it for itself; a guest handing it to a hypercall that needs a frame of
/// its own must be refused. `None` if the domain owns them all.
pub fn low_frame_not_ours(si: &StartInfo) -> Option<u64> {
    let mut owned = [0u64; 3];
    for pfn in 0..si.nr_pages {
        if let Some(m) = pfn_to_mfn(si, pfn).filter(|m| (LOW_RAM_FIRST..LOW_RAM_END).contains(m)) {
            let i = m - LOW_RAM_FIRST;
            owned[(i / 64) as usize] |= 1 << (i % 64);
        }
    }
    (LOW_RAM_FIRST..LOW_RAM_END).find(|m| {
        let i = m - LOW_RAM_FIRST;
        owned[(i / 64) as usize] & (1 << (i % 64)) == 0
    })
}

/// Gives the frame of spare pfn `pfn` back (decrease_reservation), then repopulates the pfn
/// (populate_physmap) and records the new frame in the p2m list. Returns the two results and
/// the new frame.
pub fn cycle_spare_pfn(si: &StartInfo, pfn: u64) -> Result<(XenResult, XenResult, u64), Errno> {
    let top = spare_pfn(si, 0).ok_or(Errno::EINVAL)?;
    let ok = pfn <= top && spare_pfn(si, top - pfn) == Some(pfn);
    let mfn = pfn_to_mfn(si, pfn).ok_or(Errno::EINVAL)?;
    if !ok {
        return Err(Errno::EINVAL);
    }
    let mut ext = [mfn];
    // SAFETY: spare pfns are never used by the runtime; the frame is not touched afterwards.
    let dec = unsafe { reservation(crate::mm::XENMEM_DECREASE_RESERVATION, &mut ext, 0) };
    let mut ext = [pfn];
    // SAFETY: the pfn is a spare one this function manages; Xen writes the new mfn into `ext`.
    let pop = unsafe { reservation(crate::mm::XENMEM_POPULATE_PHYSMAP, &mut ext, 0) };
    if pop == Ok(1) {
        let entry = si.mfn_list + pfn * 8;
        // SAFETY: `mfn_list` is the p2m array Xen mapped read-write at start of day, with
        // `nr_pages` entries; `pfn < nr_pages`.
        unsafe { (*(entry as *const AtomicU64)).store(ext[0], Ordering::SeqCst) };
    }
    Ok((dec, pop, ext[0]))
}

/// `XENMEM_exchange` of one frame `in_mfn` for a new frame to back `out_pfn`; returns the
/// result, `nr_exchanged` and the new frame (the out list as Xen left it).
///
/// # Safety
/// On success `in_mfn` is gone: the caller must not use it again.
unsafe fn exchange1(in_mfn: u64, out_pfn: u64) -> (XenResult, u64, u64) {
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Reservation {
        extent_start: u64,
        nr_extents: u64,
        extent_order: u32,
        mem_flags: u32,
        domid: u16,
    }
    #[repr(C)]
    struct Exchange {
        input: Reservation,
        output: Reservation,
        nr_exchanged: u64,
    }
    let mut ins = [in_mfn];
    let mut outs = [out_pfn];
    let res = |p: *mut u64| Reservation {
        extent_start: p as u64,
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: DOMID_SELF,
    };
    let mut x = Exchange {
        input: res(ins.as_mut_ptr()),
        output: res(outs.as_mut_ptr()),
        nr_exchanged: 0,
    };
    // SAFETY: Xen reads `x`, `ins` and `outs`, writes `outs` and `x.nr_exchanged`; the caller
    // vouches for giving `in_mfn` up.
    let r = unsafe { hypercall::call(MEMORY_OP, [11, &mut x as *mut Exchange as u64, 0, 0, 0]) };
    (r, x.nr_exchanged, outs[0])
}

/// Exchanges the frame of spare pfn `pfn` for a new one and records it in the p2m list.
pub fn exchange_spare(si: &StartInfo, pfn: u64) -> Result<(XenResult, u64, u64), Errno> {
    let top = spare_pfn(si, 0).ok_or(Errno::EINVAL)?;
    if pfn > top || spare_pfn(si, top - pfn) != Some(pfn) {
        return Err(Errno::EINVAL);
    }
    let mfn = pfn_to_mfn(si, pfn).ok_or(Errno::EINVAL)?;
    // SAFETY: spare pfns are never used by the runtime; the old frame is not touched again.
    let (r, n, new) = unsafe { exchange1(mfn, pfn) };
    if r.is_ok() && n == 1 {
        let entry = si.mfn_list + pfn * 8;
        // SAFETY: `mfn_list` is the p2m array Xen mapped read-write at start of day, with
        // `nr_pages` entries; `pfn < nr_pages`.
        unsafe { (*(entry as *const AtomicU64)).store(new, Ordering::SeqCst) };
    }
    Ok((r, n, new))
}

/// Offers the root page table (pinned, in use as CR3) for exchange: Xen always refuses.
pub fn exchange_root(si: &StartInfo) -> (XenResult, u64) {
    let Some(root) = root_mfn(si) else {
        return (Err(Errno::EINVAL), 0);
    };
    // SAFETY: a pinned page table in use as CR3 cannot be stolen (steal_page needs exactly
    // the allocation reference), so Xen refuses and nothing changes.
    let (r, n, _) = unsafe { exchange1(root, 0) };
    (r, n)
}

/// A batch of `MMU_MACHPHYS_UPDATE`s `(mfn, pfn)`: the result and the done count.
pub fn machphys_batch(updates: &[(u64, u64)]) -> (XenResult, u32) {
    let mut reqs = [[0u64; 2]; 8];
    let n = updates.len().min(8);
    for (r, &(mfn, pfn)) in reqs.iter_mut().zip(updates) {
        *r = [(mfn << 12) | MMU_MACHPHYS_UPDATE, pfn];
    }
    let mut done = 0u32;
    // SAFETY: M2P updates change no mapping; Xen reads `n` requests and writes `done`.
    let r = unsafe {
        hypercall::call(
            MMU_UPDATE,
            [
                reqs.as_ptr() as u64,
                n as u64,
                &mut done as *mut u32 as u64,
                u64::from(DOMID_SELF),
                0,
            ],
        )
    };
    (r, done)
}

/// A batch of flush-type mmuext operations `(cmd, arg1)` (see [`flush_op`]).
pub fn flush_batch(ops: &[(u32, u64)]) -> (XenResult, u32) {
    let mut buf = [MmuextOp::default(); 8];
    let n = ops.len().min(8);
    for (b, &(cmd, arg1)) in buf.iter_mut().zip(ops) {
        if !(matches!(cmd, 6..=11) || cmd > 20) {
            return (Err(Errno::EINVAL), 0);
        }
        *b = MmuextOp { cmd, arg1, arg2: 0 };
    }
    let mut done = 0u32;
    // SAFETY: flushes and unknown commands change no mapping; Xen reads `n` operations and
    // writes `done`.
    let r = unsafe {
        hypercall::call(
            MMUEXT_OP,
            [
                buf.as_ptr() as u64,
                n as u64,
                &mut done as *mut u32 as u64,
                u64::from(DOMID_SELF),
                0,
            ],
        )
    };
    (r, done)
}

/// A TLB flush (`MMUEXT_TLB_FLUSH_LOCAL`) whose done count goes to an address the guest cannot
/// write (`done`): Xen ignores that copy's failure.
pub fn flush_with_bad_done(done: hypercall::BadPtr) -> XenResult {
    let op = MmuextOp {
        cmd: crate::mm::MMUEXT_TLB_FLUSH_LOCAL,
        arg1: 0,
        arg2: 0,
    };
    // SAFETY: a TLB flush changes no mapping; `done` is an address no guest memory lives at.
    unsafe {
        hypercall::call(
            MMUEXT_OP,
            [
                &op as *const MmuextOp as u64,
                1,
                done.addr(),
                u64::from(DOMID_SELF),
                0,
            ],
        )
    }
}

/// `memory_op(cmd, arg)` with `arg` a zeroed 128-byte structure holding DOMID_SELF at byte
/// `domid_offset` (its guest handles are NULL): how Xen answers a sub-op's simplest form.
pub fn memory_op_zeroed(cmd: u64, domid_offset: usize) -> XenResult {
    #[repr(C, align(8))]
    struct Arg([u8; 128]);
    let mut a = Arg([0; 128]);
    if let Some(d) = a.0.get_mut(domid_offset..domid_offset + 2) {
        d.copy_from_slice(&DOMID_SELF.to_le_bytes());
    }
    // SAFETY: Xen reads and writes at most the 128-byte structure; every guest handle in it
    // is NULL, so nothing else is written.
    unsafe { hypercall::call(MEMORY_OP, [cmd, a.0.as_mut_ptr() as u64, 0, 0, 0]) }
}
