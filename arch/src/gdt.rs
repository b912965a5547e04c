//! Per-CPU GDT and TSS, laid out as Xen's: the first 14 pages are the guest's (PV `set_gdt`
//! frames), page 14 holds the hypervisor's descriptors at the selectors PV guests know
//! (`FLAT_RING3_CS64` = 0xe033 ...). Every exception and interrupt runs on an IST stack (the
//! precompiled `core` uses a red zone, so nothing may be pushed onto an interrupted stack).

use crate::percpu::MAX_CPUS;
use alloc::alloc::{alloc_zeroed, Layout};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Hypervisor 64-bit code selector (`__HYPERVISOR_CS`).
pub const HYPERVISOR_CS: u16 = 0xe008;
/// Hypervisor data/stack selector (`__HYPERVISOR_DS`).
pub const HYPERVISOR_DS: u16 = 0xe010;
/// Ring-3 compatibility-mode code (`FLAT_RING3_CS32`).
pub const RING3_CS32: u16 = 0xe023;
/// Ring-3 data (`FLAT_RING3_DS32`/`SS64`).
pub const RING3_DS: u16 = 0xe02b;
/// Ring-3 64-bit code (`FLAT_RING3_CS64`): PV kernels and their user space run here.
pub const RING3_CS64: u16 = 0xe033;
/// TSS selector (a 16-byte system descriptor), as Xen's `TSS_SELECTOR`.
pub const TSS_SEL: u16 = 0xe040;
/// First GDT entry the hypervisor reserves (the guest owns entries below it).
pub const FIRST_RESERVED_ENTRY: usize = 14 * 512;
/// GDT pages that belong to the guest (`FIRST_RESERVED_GDT_PAGE`).
pub const GUEST_PAGES: usize = 14;
/// Pages of the largest LDT (8192 entries).
pub const LDT_PAGES: usize = 16;
/// The LDT's system descriptor in the hypervisor's GDT page (Xen's `LDT_SELECTOR`).
pub const LDT_SEL: u16 = 0xe050;
/// GDT size in bytes: 14 guest pages and one hypervisor page.
pub const GDT_BYTES: usize = 15 * 4096;

/// IST slot (1-based) for CPU exceptions other than NMI, #DF and #MC.
pub const IST_EXCEPTION: u8 = 1;
/// IST slot for double faults.
pub const IST_DOUBLE_FAULT: u8 = 2;
/// IST slot for NMIs.
pub const IST_NMI: u8 = 3;
/// IST slot for machine checks.
pub const IST_MCE: u8 = 4;
/// IST slot for external interrupts and IPIs.
pub const IST_IRQ: u8 = 5;
/// Bytes in each IST stack.
pub const IST_STACK_SIZE: usize = 128 * 1024;

/// The 64-bit TSS.
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub struct Tss {
    reserved0: u32,
    /// Stack pointers loaded on a privilege change to ring 0–2.
    pub rsp: [u64; 3],
    reserved1: u64,
    /// Interrupt stack table, IST1–IST7.
    pub ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    /// Offset of the I/O permission bitmap (past the limit: no bitmap).
    pub iomap_base: u16,
}
const _: () = assert!(core::mem::size_of::<Tss>() == 104);

static GDT_BASE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Whether CPU i runs on its GDT window (see [`load_guest_gdt`]).
static ON_WINDOW: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The guest frames CPU i's window maps now (0: none), GDT pages then LDT pages.
static WINDOW_FRAMES: [[AtomicU64; WINDOW_SLOTS]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; WINDOW_SLOTS] }; MAX_CPUS];
/// The LDT entries CPU i has loaded (0: none).
static LDT_ENTS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
const WINDOW_SLOTS: usize = GUEST_PAGES + LDT_PAGES;
/// Address of CPU i's TSS (0 before [`load`]).
static TSS_ADDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static IRQ_STACK_TOP: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Whether the running code is on this CPU's interrupt stack (IST slot [`IST_IRQ`]): an
/// interrupt taken now would reload that stack's top and overwrite the running frames, so
/// code there must keep interrupts off. Everything else (the main stack, the SYSCALL stack,
/// the exception stack) may take an interrupt, which runs on the interrupt stack.
pub fn on_irq_stack() -> bool {
    let probe = 0u8;
    let sp = core::ptr::addr_of!(probe) as u64;
    let top = IRQ_STACK_TOP
        .get(crate::percpu::cpu_index())
        .map_or(0, |t| t.load(Ordering::Relaxed));
    top != 0 && sp < top && sp >= top - IST_STACK_SIZE as u64
}

/// Linear address of CPU `index`'s GDT (0 before `load`).
pub fn gdt_base(index: usize) -> u64 {
    GDT_BASE.get(index).map_or(0, |g| g.load(Ordering::Relaxed))
}

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Maps the running CPU's GDT pages 0..14 to `frames` (machine frame numbers of the guest
/// GDT set with `set_gdt`, already validated and typed by the caller; pages past the list
/// show a read-only zero page), as Xen maps a vCPU's GDT frames. On first use the CPU moves
/// from its heap GDT to its window in the hypervisor's shared slots: the same descriptors,
/// with page 14 mapping the hypervisor's page of the heap GDT.
pub fn load_guest_gdt(frames: &[u64]) {
    crate::guest_context::invalidate();
    let cpu = crate::percpu::cpu_index();
    let heap = gdt_base(cpu);
    let window = crate::paging::GDT_WINDOW_BASE + cpu as u64 * crate::paging::GDT_WINDOW_STRIDE;
    if !ON_WINDOW[cpu].load(Ordering::Relaxed) {
        let Some(hv_page) = crate::layout::virt_to_phys(heap + (GUEST_PAGES as u64) * 4096) else {
            return;
        };
        for page in 0..GUEST_PAGES {
            if !crate::paging::set_gdt_window_page(cpu, page, None) {
                return;
            }
        }
        crate::paging::set_gdt_window_page(cpu, GUEST_PAGES, Some(hv_page));
        for page in 0..=GUEST_PAGES {
            crate::cpu::invlpg(window + page as u64 * 4096);
        }
        let ptr = Pointer {
            limit: (GDT_BYTES - 1) as u16,
            base: window,
        };
        // SAFETY: the window maps the same hypervisor page (selectors 0xe000 and up, the
        // TSS) at the same offset; the guest pages hold no descriptor the hypervisor uses.
        // Loaded segment registers and TR keep their cached descriptors.
        unsafe { asm!("lgdt [{}]", in(reg) &ptr, options(nostack, preserves_flags)) };
        for f in WINDOW_FRAMES[cpu].iter() {
            f.store(0, Ordering::Relaxed);
        }
        ON_WINDOW[cpu].store(true, Ordering::Relaxed);
    }
    map_window(cpu, window, 0, frames, GUEST_PAGES);
}

/// Maps `count` pages of this CPU's window from `first` (window page `first`, slot
/// `first` of [`WINDOW_FRAMES`] for the GDT, `GUEST_PAGES..` for the LDT) to `frames`.
fn map_window(cpu: usize, window: u64, first: usize, frames: &[u64], count: usize) {
    let slot_base = if first == 0 { 0 } else { GUEST_PAGES };
    for i in 0..count {
        let slot = &WINDOW_FRAMES[cpu][slot_base + i];
        let want = frames.get(i).copied().unwrap_or(0);
        if slot.load(Ordering::Relaxed) == want {
            continue;
        }
        let paddr = (want != 0).then_some(want << 12);
        let page = first + i;
        if crate::paging::set_gdt_window_page(cpu, page, paddr) {
            crate::cpu::invlpg(window + page as u64 * 4096);
            slot.store(want, Ordering::Relaxed);
        }
    }
}

/// If `va` lies in the running CPU's LDT window, its offset there.
pub fn ldt_window_offset(va: u64) -> Option<u64> {
    let cpu = crate::percpu::cpu_index();
    let ldt = crate::paging::GDT_WINDOW_BASE
        + cpu as u64 * crate::paging::GDT_WINDOW_STRIDE
        + crate::paging::LDT_WINDOW_PAGE as u64 * 4096;
    let off = va.wrapping_sub(ldt);
    (off < (LDT_PAGES as u64) * 4096).then_some(off)
}

/// Loads the running CPU's LDT: `frames` (machine frames of the guest's LDT pages, already
/// validated and typed; 0 for a page left unmapped) mapped into its window, and an LDT
/// descriptor for `ents` entries ([`LDT_SEL`]); no LDT when `ents` is 0, as Xen's
/// `load_LDT`.
pub fn load_guest_ldt(frames: &[u64], ents: u32) {
    crate::guest_context::invalidate();
    let cpu = crate::percpu::cpu_index();
    let window = crate::paging::GDT_WINDOW_BASE + cpu as u64 * crate::paging::GDT_WINDOW_STRIDE;
    if !ON_WINDOW[cpu].load(Ordering::Relaxed) {
        load_guest_gdt(&[]);
        if !ON_WINDOW[cpu].load(Ordering::Relaxed) {
            return;
        }
    }
    let pages = (ents as usize * 8).div_ceil(4096).min(LDT_PAGES);
    let wanted: [u64; LDT_PAGES] = core::array::from_fn(|i| {
        if i < pages {
            frames.get(i).copied().unwrap_or(0)
        } else {
            0
        }
    });
    map_window(
        cpu,
        window,
        crate::paging::LDT_WINDOW_PAGE,
        &wanted,
        LDT_PAGES,
    );
    let ents = u64::from(ents.min(8192));
    if LDT_ENTS[cpu].swap(ents, Ordering::Relaxed) == ents {
        // The descriptor (this CPU's window, `ents` entries) is loaded already.
        return;
    }
    if ents == 0 {
        // SAFETY: a null selector disables the LDT; nothing of the hypervisor uses one.
        unsafe { asm!("lldt {0:x}", in(reg) 0u16, options(nostack, preserves_flags)) };
        return;
    }
    let base = window + (crate::paging::LDT_WINDOW_PAGE as u64) * 4096;
    let limit = ents * 8 - 1;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x82 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    let gdt = gdt_base(cpu) as *mut u64;
    // SAFETY: `gdt` is this CPU's heap GDT (15 pages, never freed); the LDT slot lies in its
    // hypervisor page, which only this CPU uses, and is loaded right after.
    unsafe {
        gdt.add(usize::from(LDT_SEL >> 3)).write_volatile(low);
        gdt.add(usize::from(LDT_SEL >> 3) + 1)
            .write_volatile(base >> 32);
        asm!("lldt {0:x}", in(reg) LDT_SEL, options(nostack, preserves_flags));
    }
}

/// The top of IST slot `slot` (1-based) of CPU `index`'s TSS (0 before [`load`]).
pub fn ist_top(index: usize, slot: u8) -> u64 {
    let tss = TSS_ADDR.get(index).map_or(0, |t| t.load(Ordering::Relaxed));
    if tss == 0 || !(1..=7).contains(&slot) {
        return 0;
    }
    // SAFETY: `tss` is CPU `index`'s TSS, allocated by `load` and never freed; the read is
    // unaligned-safe (the struct is packed).
    unsafe {
        core::ptr::read_unaligned(core::ptr::addr_of!(
            (*(tss as *const Tss)).ist[usize::from(slot) - 1]
        ))
    }
}

/// Moves IST slot `slot` of CPU `index` to a new top (the same stack's guarded alias, say).
/// Takes effect at the next exception or interrupt using the slot, so the caller must not be
/// running on that slot's stack.
pub fn set_ist_top(index: usize, slot: u8, top: u64) {
    let tss = TSS_ADDR.get(index).map_or(0, |t| t.load(Ordering::Relaxed));
    if tss == 0 || !(1..=7).contains(&slot) {
        return;
    }
    // SAFETY: as in `ist_top`; the CPU reads IST entries only when delivering an event
    // through the slot, which the caller guarantees is not in progress.
    unsafe {
        core::ptr::write_unaligned(
            core::ptr::addr_of_mut!((*(tss as *mut Tss)).ist[usize::from(slot) - 1]),
            top,
        )
    };
    if slot == IST_IRQ {
        IRQ_STACK_TOP[index].store(top, Ordering::Relaxed);
    }
}

/// Builds and loads CPU `index`'s GDT and TSS; `ist_tops[i]` is the top of IST slot i+1.
pub fn load(index: usize, ist_tops: [u64; 7]) {
    assert!(index < MAX_CPUS);
    let gdt_layout = Layout::from_size_align(GDT_BYTES, 4096).expect("GDT layout");
    let tss_layout = Layout::new::<Tss>();
    // SAFETY: both layouts have non-zero size.
    let (gdt, tss) = unsafe {
        (
            alloc_zeroed(gdt_layout) as *mut u64,
            alloc_zeroed(tss_layout) as *mut Tss,
        )
    };
    assert!(
        !gdt.is_null() && !tss.is_null(),
        "out of memory for the GDT/TSS"
    );
    // SAFETY: `tss` is a fresh, zeroed, suitably aligned allocation owned by this CPU forever.
    unsafe {
        (*tss).ist = ist_tops;
        (*tss).iomap_base = core::mem::size_of::<Tss>() as u16;
    }
    let tss_addr = tss as u64;
    let tss_limit = (core::mem::size_of::<Tss>() - 1) as u64;
    let entries: [(u16, u64); 8] = [
        (HYPERVISOR_CS, 0x00AF_9A00_0000_FFFF),
        (HYPERVISOR_DS, 0x00CF_9200_0000_FFFF),
        (RING3_CS32, 0x00CF_FA00_0000_FFFF),
        (RING3_DS, 0x00CF_F200_0000_FFFF),
        (RING3_CS64, 0x00AF_FA00_0000_FFFF),
        (0xe038, 0x00CF_9A00_0000_FFFF),
        (
            TSS_SEL,
            (tss_limit & 0xFFFF)
                | ((tss_addr & 0xFF_FFFF) << 16)
                | (0x89 << 40)
                | (((tss_limit >> 16) & 0xF) << 48)
                | (((tss_addr >> 24) & 0xFF) << 56),
        ),
        (TSS_SEL + 8, tss_addr >> 32),
    ];
    for (sel, desc) in entries {
        // SAFETY: every selector indexes inside the fresh 15-page GDT allocation.
        unsafe { gdt.add(usize::from(sel >> 3)).write(desc) };
    }
    GDT_BASE[index].store(gdt as u64, Ordering::Relaxed);
    TSS_ADDR[index].store(tss as u64, Ordering::Relaxed);
    IRQ_STACK_TOP[index].store(ist_tops[usize::from(IST_IRQ) - 1], Ordering::Relaxed);
    let ptr = Pointer {
        limit: (GDT_BYTES - 1) as u16,
        base: gdt as u64,
    };
    // The null LDT is what `load_guest_ldt` takes as loaded (`LDT_ENTS` 0): the LDTR keeps
    // its reset value (base 0, limit 0xffff) otherwise, and a guest's LDT selectors would
    // read descriptors from its own memory at linear address 0.
    // SAFETY: the GDT above is valid and never freed; reloading CS/SS/DS with its selectors
    // keeps the flat 64-bit model; the TSS descriptor is fresh (not busy), this CPU's TSS.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:e}",
            "mov es, {ds:e}",
            "mov ss, {ds:e}",
            "ltr {tss:x}",
            "lldt {nul:x}",
            ptr = in(reg) &ptr,
            cs = in(reg) u64::from(HYPERVISOR_CS),
            ds = in(reg) u32::from(HYPERVISOR_DS),
            tss = in(reg) TSS_SEL,
            nul = in(reg) 0u16,
            tmp = out(reg) _,
        );
    }
}
