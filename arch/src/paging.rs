//! The hypervisor's page tables.
//!
//! Boot (boot.rs) starts with temporary tables: an identity map of the low 4 GiB, the direct
//! map over the same 4 GiB and the image window. [`build_hypervisor_tables`] then builds the
//! hypervisor's own tables from allocator frames: the direct map over all RAM (2 MiB pages,
//! no-execute, the MMIO hole below 4 GiB uncached) and the image with per-section rights
//! (text read-only+executable, rodata read-only, data and BSS no-execute). They hold nothing
//! in the low half, which belongs to PV guests. The page under the boot stack stays unmapped,
//! and the other per-CPU stacks live in a guarded stack area (`stacks.rs`). APs still start on the boot tables (the
//! trampoline needs the identity map) and switch at once.

use crate::layout::{phys_to_virt, DIRECTMAP_BASE, IMAGE_VBASE};

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_W: u64 = 1 << 1;
/// User-accessible.
pub const PTE_U: u64 = 1 << 2;
/// Write-through.
pub const PTE_PWT: u64 = 1 << 3;
/// Cache disable.
pub const PTE_PCD: u64 = 1 << 4;
/// Large page (in L2/L3 entries).
pub const PTE_PS: u64 = 1 << 7;
/// Global.
pub const PTE_G: u64 = 1 << 8;
/// No-execute.
pub const PTE_NX: u64 = 1 << 63;
/// Physical-address bits of an entry.
pub const PTE_ADDR: u64 = 0x000F_FFFF_FFFF_F000;

extern "C" {
    static boot_pml4: u8;
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static boot_stack_guard: u8;
}

/// Start of the per-CPU GDT/LDT windows (in the image's L4 slot, 1 GiB below the image): CPU
/// i's window is at `GDT_WINDOW_BASE + i * GDT_WINDOW_STRIDE`, as Xen's per-vCPU mapping:
/// pages 0-13 the guest's GDT frames (or a read-only zero page), 14 the hypervisor's GDT
/// page, 15 a hole, 16-31 the guest's LDT frames (not present where none is mapped).
pub const GDT_WINDOW_BASE: u64 = IMAGE_VBASE - 0x4000_0000;
/// Pages in each CPU's window.
pub const GDT_WINDOW_PAGES: usize = 32;
/// First page of the LDT in each window.
pub const LDT_WINDOW_PAGE: usize = 16;
/// Bytes between two CPUs' windows.
pub const GDT_WINDOW_STRIDE: u64 = GDT_WINDOW_PAGES as u64 * 4096;
const GDT_WINDOW_L1S: usize =
    (crate::percpu::MAX_CPUS * GDT_WINDOW_STRIDE as usize).div_ceil(2 << 20);

/// The zero frame unused guest GDT pages show, and the L1 tables of the GDT windows.
static GDT_WINDOW: spin::Mutex<(u64, [u64; GDT_WINDOW_L1S])> =
    spin::Mutex::new((0, [0; GDT_WINDOW_L1S]));

/// Maps page `page` of CPU `cpu`'s window to `paddr` (writable: the CPU sets descriptors'
/// accessed bits); None shows the read-only zero page in the GDT part and nothing (not
/// present) in the LDT part. The caller flushes the TLB entry of the page. False before the
/// hypervisor tables exist.
pub fn set_gdt_window_page(cpu: usize, page: usize, paddr: Option<u64>) -> bool {
    let (zero, l1s) = *GDT_WINDOW.lock();
    if zero == 0 || page >= GDT_WINDOW_PAGES || cpu >= crate::percpu::MAX_CPUS {
        return false;
    }
    let n = cpu * GDT_WINDOW_PAGES + page;
    let Some(&l1) = l1s.get(n / 512) else {
        return false;
    };
    let entry = match paddr {
        Some(p) => (p & PTE_ADDR) | PTE_P | PTE_W | PTE_NX,
        None if page >= LDT_WINDOW_PAGE => 0,
        None => zero | PTE_P | PTE_NX,
    };
    table(l1)[n % 512] = entry;
    true
}

/// Start of the guarded stack area (in the image's L4 slot, 2 GiB below the image): the
/// per-CPU stacks are mapped there page by page with an unmapped guard page below each (see
/// `stacks.rs`), so an overflow faults instead of running into the neighbouring memory.
pub const STACK_AREA_BASE: u64 = IMAGE_VBASE - 0x8000_0000;
/// Pages of the stack area reserved for each CPU.
pub const STACK_AREA_CPU_PAGES: usize = 512;
const STACK_AREA_L1S: usize = (crate::percpu::MAX_CPUS * STACK_AREA_CPU_PAGES).div_ceil(512);

/// The L1 tables of the stack area (all zero before the hypervisor tables exist).
static STACK_AREA: spin::Mutex<[u64; STACK_AREA_L1S]> = spin::Mutex::new([0; STACK_AREA_L1S]);

/// Maps page `page` of the stack area (counted from [`STACK_AREA_BASE`]) to `paddr`,
/// writable and no-execute; None unmaps it (the caller flushes the TLB entry of a page that
/// was present). False before the hypervisor tables exist or beyond the area.
pub fn set_stack_area_page(page: usize, paddr: Option<u64>) -> bool {
    let l1s = *STACK_AREA.lock();
    let Some(&l1) = l1s.get(page / 512) else {
        return false;
    };
    if l1 == 0 {
        return false;
    }
    table(l1)[page % 512] = paddr.map_or(0, |p| (p & PTE_ADDR) | PTE_P | PTE_W | PTE_G | PTE_NX);
    true
}

/// The page of the image left unmapped under the boot CPU's main stack (`boot_stack_guard`
/// in boot.rs).
pub fn boot_stack_guard_page() -> u64 {
    core::ptr::addr_of!(boot_stack_guard) as u64
}

static HV_CR3: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Physical address of the boot PML4 (the CR3 APs start with).
pub fn ap_boot_cr3() -> u64 {
    let v = core::ptr::addr_of!(boot_pml4) as u64;
    crate::layout::virt_to_phys(v).unwrap_or(v)
}

/// The hypervisor's own CR3 once built (0 before).
pub fn hypervisor_cr3() -> u64 {
    HV_CR3.load(core::sync::atomic::Ordering::Acquire)
}

fn table(paddr: u64) -> &'static mut [u64; 512] {
    // SAFETY: `paddr` is a page-table frame this module allocated (zeroed, 4 KiB aligned,
    // owned by nobody else) and lies in the boot direct map.
    unsafe { &mut *(phys_to_virt(paddr) as *mut [u64; 512]) }
}

fn new_table(alloc: &mut dyn FnMut() -> Option<u64>) -> Result<u64, &'static str> {
    let f = alloc().ok_or("out of memory for page tables")?;
    if !f.is_multiple_of(4096) || f >= crate::physmem::BOOT_DIRECTMAP_LIMIT {
        return Err("page-table frame not usable");
    }
    table(f).fill(0);
    Ok(f)
}

/// Returns the next-level table under `entry`, creating it.
fn next(entry: &mut u64, alloc: &mut dyn FnMut() -> Option<u64>) -> Result<u64, &'static str> {
    if *entry & PTE_P == 0 {
        let t = new_table(alloc)?;
        *entry = t | PTE_P | PTE_W;
    }
    Ok(*entry & PTE_ADDR)
}

fn idx(vaddr: u64, level: u32) -> usize {
    ((vaddr >> (12 + 9 * level)) & 511) as usize
}

/// Builds the hypervisor page tables mapping the direct map up to `ram_top` (at least 4 GiB)
/// and the image, and switches the running CPU to them.
pub fn build_hypervisor_tables(
    ram_top: u64,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<u64, &'static str> {
    let pml4 = new_table(alloc)?;
    let top = ram_top.max(4 << 30).next_multiple_of(2 << 20);
    // Direct map, 2 MiB pages.
    let mut p = 0u64;
    while p < top {
        let v = DIRECTMAP_BASE + p;
        let l3 = next(&mut table(pml4)[idx(v, 3)], alloc)?;
        let l2 = next(&mut table(l3)[idx(v, 2)], alloc)?;
        let uncached = if (0xC000_0000..0x1_0000_0000).contains(&p) {
            PTE_PCD | PTE_PWT
        } else {
            0
        };
        table(l2)[idx(v, 1)] = p | PTE_P | PTE_W | PTE_PS | PTE_G | PTE_NX | uncached;
        p += 2 << 20;
    }
    // The image, 4 KiB pages with per-section rights.
    let start = core::ptr::addr_of!(__image_start) as u64;
    let text_end = core::ptr::addr_of!(__text_end) as u64;
    let rodata_end = core::ptr::addr_of!(__rodata_end) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    let guard = boot_stack_guard_page();
    let mut v = start & !0xFFF;
    while v < end {
        if v == guard {
            v += 4096;
            continue;
        }
        let l3 = next(&mut table(pml4)[idx(v, 3)], alloc)?;
        let l2 = next(&mut table(l3)[idx(v, 2)], alloc)?;
        let l1 = next(&mut table(l2)[idx(v, 1)], alloc)?;
        let rights = if v < text_end {
            0
        } else if v < rodata_end {
            PTE_NX
        } else {
            PTE_W | PTE_NX
        };
        table(l1)[idx(v, 0)] = (v - IMAGE_VBASE) | PTE_P | PTE_G | rights;
        v += 4096;
    }
    // The per-CPU GDT windows: L1 tables under the image's L4 slot (which every guest L4
    // shares), all pages not present until a CPU maps its GDT there.
    let zero = new_table(alloc)?;
    let mut l1s = [0u64; GDT_WINDOW_L1S];
    for (i, l1) in l1s.iter_mut().enumerate() {
        let v = GDT_WINDOW_BASE + (i as u64) * (2 << 20);
        let l3 = next(&mut table(pml4)[idx(v, 3)], alloc)?;
        let l2 = next(&mut table(l3)[idx(v, 2)], alloc)?;
        *l1 = next(&mut table(l2)[idx(v, 1)], alloc)?;
    }
    *GDT_WINDOW.lock() = (zero, l1s);
    // The guarded stack area: L1 tables under the same L4 slot, empty until stacks are mapped.
    let mut stack_l1s = [0u64; STACK_AREA_L1S];
    for (i, l1) in stack_l1s.iter_mut().enumerate() {
        let v = STACK_AREA_BASE + (i as u64) * (2 << 20);
        let l3 = next(&mut table(pml4)[idx(v, 3)], alloc)?;
        let l2 = next(&mut table(l3)[idx(v, 2)], alloc)?;
        *l1 = next(&mut table(l2)[idx(v, 1)], alloc)?;
    }
    *STACK_AREA.lock() = stack_l1s;
    // SAFETY: the new tables map the image (code, stacks in BSS, statics) and the direct map
    // exactly as the boot tables did, so everything in use stays mapped.
    unsafe { crate::cpu::write_cr3(pml4) };
    HV_CR3.store(pml4, core::sync::atomic::Ordering::Release);
    Ok(pml4)
}

/// Switches the running CPU to the hypervisor tables: an AP fresh from the trampoline, or
/// a leader CPU going idle (off the page tables of the guest it ran, which may be released).
pub fn switch_to_hypervisor_tables() {
    let cr3 = hypervisor_cr3();
    if cr3 != 0 {
        // SAFETY: `cr3` was built by `build_hypervisor_tables` and maps all hypervisor memory.
        unsafe { crate::cpu::write_cr3(cr3) };
    }
}

/// A fresh L4 for a guest address space: empty guest half, the hypervisor's slots (256–511)
/// copied from the hypervisor tables. Returns its physical address.
pub fn new_guest_l4(alloc: &mut dyn FnMut() -> Option<u64>) -> Result<u64, &'static str> {
    let l4 = new_table(alloc)?;
    let hv = hypervisor_cr3();
    if hv == 0 {
        return Err("hypervisor page tables not built yet");
    }
    let src = *table(hv);
    table(l4)[256..].copy_from_slice(&src[256..]);
    Ok(l4)
}

/// Maps one 4 KiB guest page `vaddr` → `paddr` in the tables rooted at `l4` with `flags`
/// (`PTE_U`/`PTE_W`/`PTE_NX`), creating user-accessible intermediate tables as needed.
/// Only the guest half (below the hypervisor range) may be mapped.
pub fn map_guest_page(
    l4: u64,
    vaddr: u64,
    paddr: u64,
    flags: u64,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<(), &'static str> {
    if vaddr >= 0x0000_8000_0000_0000 || !vaddr.is_multiple_of(4096) || !paddr.is_multiple_of(4096)
    {
        return Err("bad guest mapping");
    }
    let mut t = l4;
    for level in (1..=3).rev() {
        let e = &mut table(t)[idx(vaddr, level)];
        t = next(e, alloc)?;
        *e |= PTE_U | PTE_W;
    }
    table(t)[idx(vaddr, 0)] = paddr | PTE_P | flags;
    Ok(())
}

/// The machine-to-phys table every PV guest sees read-only at 0xFFFF800000000000 (L4 slot
/// 256): physical base, bytes, and the L4 entry that maps it (0 before `build_m2p`).
static M2P: spin::Mutex<(u64, u64, u64)> = spin::Mutex::new((0, 0, 0));

/// Allocates and maps the M2P for frames below `max_page`: 2 MiB chunks, every entry
/// invalid (`!0`) until set. Returns the machine frame of each 2 MiB chunk.
pub fn build_m2p(
    max_page: u64,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<alloc::vec::Vec<u64>, &'static str> {
    let bytes = (max_page * 8).next_multiple_of(2 << 20).max(2 << 20);
    let chunks = bytes / (2 << 20);
    if chunks > 512 {
        return Err("M2P larger than one L2 table maps");
    }
    let base =
        crate::memory::alloc_contiguous(bytes / 4096, 512).ok_or("no memory for the M2P table")?;
    // SAFETY: `base..base+bytes` was just allocated for the M2P alone and is direct-mapped.
    unsafe { core::ptr::write_bytes(phys_to_virt(base) as *mut u8, 0xFF, bytes as usize) };
    let l3 = new_table(alloc)?;
    let l2 = new_table(alloc)?;
    let mut frames = alloc::vec::Vec::new();
    for c in 0..chunks {
        let p = base + c * (2 << 20);
        table(l2)[c as usize] = p | PTE_P | PTE_U | PTE_PS | PTE_NX;
        frames.push(p >> 12);
    }
    table(l3)[0] = l2 | PTE_P | PTE_U | PTE_W;
    *M2P.lock() = (base, bytes, l3 | PTE_P | PTE_U | PTE_W);
    Ok(frames)
}

/// The L4 entry mapping the read-only M2P (0 if none).
pub fn m2p_l4_entry() -> u64 {
    M2P.lock().2
}

/// Sets M2P entry `mfn` to `pfn`; false if `mfn` is beyond the table.
pub fn set_m2p(mfn: u64, pfn: u64) -> bool {
    let (base, bytes, _) = *M2P.lock();
    if base == 0 || mfn.saturating_mul(8) >= bytes {
        return false;
    }
    // SAFETY: the entry lies inside the M2P allocation (checked), written only here, through
    // the direct map; guests map it read-only.
    unsafe { core::ptr::write_volatile((phys_to_virt(base) + mfn * 8) as *mut u64, pfn) };
    true
}
