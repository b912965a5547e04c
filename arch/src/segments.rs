//! A PV guest's data segment selectors DS, ES, FS, GS on the running CPU: read when its vCPU
//! leaves the CPU and loaded when a vCPU is resumed there (Xen's `save_segments` and
//! `load_segments`). Loading a selector whose descriptor is no longer valid faults (#GP, #NP,
//! or #PF on an unmapped LDT page); the fault resumes at a fixup ([`load_fixup`]) that loads
//! the null selector instead and reports the failure, as Xen's `TRY_LOAD_SEG` does.
//!
//! Loading FS or GS also loads a base from the descriptor: callers write the guest's FS base
//! and (inactive) GS base afterwards, and the GS load puts back the per-CPU GS base the
//! hypervisor runs on.

use core::arch::asm;

/// DS, ES, FS, GS, in that order.
pub type DataSelectors = [u16; 4];

/// The data selectors loaded on this CPU now.
pub fn read_data_selectors() -> DataSelectors {
    let (ds, es, fs, gs): (u16, u16, u16, u16);
    // SAFETY: reading segment registers has no side effects.
    unsafe {
        asm!(
            "mov {0:x}, ds",
            "mov {1:x}, es",
            "mov {2:x}, fs",
            "mov {3:x}, gs",
            out(reg) ds,
            out(reg) es,
            out(reg) fs,
            out(reg) gs,
            options(nomem, nostack, preserves_flags)
        );
    }
    [ds, es, fs, gs]
}

macro_rules! load_stub {
    ($seg:literal) => {
        concat!(
            ".globl dv_load_",
            $seg,
            "\n",
            "dv_load_",
            $seg,
            ":\n",
            "xor eax, eax\n",
            ".globl dv_load_",
            $seg,
            "_insn\n",
            "dv_load_",
            $seg,
            "_insn:\n",
            "mov ",
            $seg,
            ", di\n",
            "ret\n",
            ".globl dv_load_",
            $seg,
            "_fixup\n",
            "dv_load_",
            $seg,
            "_fixup:\n",
            "xor eax, eax\n",
            "mov ",
            $seg,
            ", ax\n",
            "mov eax, 1\n",
            "ret\n",
        )
    };
}

core::arch::global_asm!(
    ".pushsection .text.dv_load_selectors,\"ax\",@progbits",
    load_stub!("ds"),
    load_stub!("es"),
    load_stub!("fs"),
    load_stub!("gs"),
    ".popsection",
);

extern "C" {
    // Each loads its segment register with selector `sel`: 0, or 1 if the load faulted and
    // the null selector was loaded instead (see `load_fixup`).
    fn dv_load_ds(sel: u16) -> u32;
    fn dv_load_es(sel: u16) -> u32;
    fn dv_load_fs(sel: u16) -> u32;
    fn dv_load_gs(sel: u16) -> u32;
    fn dv_load_ds_insn();
    fn dv_load_es_insn();
    fn dv_load_fs_insn();
    fn dv_load_gs_insn();
    fn dv_load_ds_fixup();
    fn dv_load_es_fixup();
    fn dv_load_fs_fixup();
    fn dv_load_gs_fixup();
}

/// Where a fault (#NP, #SS, #GP, #PF) at `rip` in hypervisor code resumes, if `rip` is one of
/// the selector loads of [`load_data_selectors`].
pub fn load_fixup(rip: u64) -> Option<u64> {
    let pairs: [(unsafe extern "C" fn(), unsafe extern "C" fn()); 4] = [
        (dv_load_ds_insn, dv_load_ds_fixup),
        (dv_load_es_insn, dv_load_es_fixup),
        (dv_load_fs_insn, dv_load_fs_fixup),
        (dv_load_gs_insn, dv_load_gs_fixup),
    ];
    pairs
        .iter()
        .find(|(insn, _)| *insn as *const () as u64 == rip)
        .map(|(_, fixup)| *fixup as *const () as u64)
}

const IA32_GS_BASE: u32 = 0xC000_0101;

/// Loads `segs` into DS, ES, FS, GS (FS and GS first, as Xen) with the guest's GDT and LDT
/// already in place; returns which of them failed to load (and now hold the null selector).
/// The FS base and the inactive GS base are left to the caller.
pub fn load_data_selectors(segs: DataSelectors) -> [bool; 4] {
    let [ds, es, fs, gs] = segs;
    let percpu = crate::percpu::this() as *const crate::percpu::PerCpu as u64;
    // Loading GS replaces the active GS base, which holds this CPU's per-CPU pointer, until
    // it is written back: an interrupt in between would run its handler without per-CPU
    // data (every access faults, and so does the fatal path: the CPU looped in traps and the
    // machine hung at dom0's first entry, ~1 boot in 150, when that entry ran from the idle
    // loop with interrupts on). So interrupts are off for the whole sequence, whatever the
    // caller's state. A fault at the load itself happens before GS changes, so the trap path
    // still finds its per-CPU data.
    crate::cpu::without_interrupts(|| {
        // SAFETY: each stub loads one segment register; a fault resumes at its fixup
        // (trap.rs), which loads the null selector; the hypervisor uses no DS/ES/FS in long
        // mode, and its GS base is restored before interrupts are enabled again.
        unsafe {
            let f = dv_load_fs(fs) != 0;
            let g = dv_load_gs(gs) != 0;
            crate::cpu::wrmsr(IA32_GS_BASE, percpu);
            let d = dv_load_ds(ds) != 0;
            let e = dv_load_es(es) != 0;
            [d, e, f, g]
        }
    })
}
