//! Per-CPU GDT and TSS. Every exception and interrupt runs on an IST stack (the precompiled
//! `core` uses a red zone, so nothing may be pushed onto an interrupted stack).

use crate::percpu::MAX_CPUS;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// Hypervisor code selector.
pub const HYPERVISOR_CS: u16 = 0x08;
/// Hypervisor data/stack selector.
pub const HYPERVISOR_DS: u16 = 0x10;
/// TSS selector (a 16-byte system descriptor).
pub const TSS_SEL: u16 = 0x28;

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
pub const IST_STACK_SIZE: usize = 16 * 1024;

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

#[repr(C, align(64))]
struct CpuTables {
    gdt: [AtomicU64; 8],
    tss: Tss,
}

static mut TABLES: [CpuTables; MAX_CPUS] = {
    const EMPTY: CpuTables = CpuTables {
        gdt: [const { AtomicU64::new(0) }; 8],
        tss: Tss { reserved0: 0, rsp: [0; 3], reserved1: 0, ist: [0; 7], reserved2: 0, reserved3: 0, iomap_base: 104 },
    };
    [EMPTY; MAX_CPUS]
};

/// Builds and loads CPU `index`'s GDT and TSS; `ist_tops[i]` is the top of IST slot i+1.
///
/// # Safety
/// Must be called once per CPU, on that CPU, with stacks that stay allocated forever.
pub unsafe fn load(index: usize, ist_tops: [u64; 7]) {
    assert!(index < MAX_CPUS);
    // SAFETY: each CPU touches only its own slot, once, before anything else reads it.
    let t = unsafe { &mut (*core::ptr::addr_of_mut!(TABLES))[index] };
    t.tss.ist = ist_tops;
    let tss_addr = core::ptr::addr_of!(t.tss) as u64;
    let tss_limit = (core::mem::size_of::<Tss>() - 1) as u64;
    let entries: [u64; 8] = [
        0,
        0x00AF_9A00_0000_FFFF, // 0x08: 64-bit code, DPL0
        0x00CF_9200_0000_FFFF, // 0x10: data, DPL0
        0,
        0,
        (tss_limit & 0xFFFF)
            | ((tss_addr & 0xFF_FFFF) << 16)
            | (0x89 << 40)
            | (((tss_limit >> 16) & 0xF) << 48)
            | (((tss_addr >> 24) & 0xFF) << 56),
        tss_addr >> 32,
        0,
    ];
    for (slot, v) in t.gdt.iter().zip(entries) {
        slot.store(v, Ordering::Relaxed);
    }
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr = Pointer { limit: (8 * 8 - 1) as u16, base: t.gdt.as_ptr() as u64 };
    // SAFETY: the GDT above is static and valid; reloading CS/SS/DS with its selectors keeps
    // the flat 64-bit model; the TSS descriptor is fresh (not busy) and points at this CPU's TSS.
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
            ptr = in(reg) &ptr,
            cs = in(reg) u64::from(HYPERVISOR_CS),
            ds = in(reg) u32::from(HYPERVISOR_DS),
            tss = in(reg) TSS_SEL,
            tmp = out(reg) _,
        );
    }
}
