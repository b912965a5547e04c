//! Per-vCPU PV state Xen keeps in `struct pv_vcpu` beyond the common [`crate::domain::Vcpu`]:
//! virtual IDT entries, callback flags, virtual CR0.TS/CR2/CR4, debug registers, virtual IOPL.

use crate::domain::VcpuKey;
use crate::effect::DomId;
use crate::hv::{Ctx, HvState};
use dom0_interface::arch_x86::{TI_DPL_MASK, TI_IF};
use lockstep::impl_value;

/// The CR4 value Xen 4.17 shows a 64-bit PV guest (PAE | MCE | OSFXSR | OSXMMEXCPT), measured
/// on the oracle.
pub const GUEST_CR4: u64 = 0x660;
/// CR4 bits a PV guest may change (TSD, DE, FSGSBASE, OSXSAVE: `PV_CR4_GUEST_MASK`); the
/// others are Xen's.
pub const GUEST_CR4_WRITABLE: u64 = (1 << 2) | (1 << 3) | CR4_FSGSBASE | (1 << 18);
/// `X86_CR4_FSGSBASE`: a 64-bit PV kernel whose CPUID policy has FSGSBASE may set it in its
/// virtual CR4, and then runs with it in the real CR4 (`pv_make_cr4`): `rd/wr{fs,gs}base`
/// work in ring 3; without it they raise #UD.
pub const CR4_FSGSBASE: u64 = 1 << 16;
/// `pv_fixup_guest_cr4`: the CR4 a 64-bit PV guest sees after asking for `cr4` (the bits it
/// may change as asked, the others Xen's). `fsgsbase`: the guest's CPUID has FSGSBASE
/// (leaf 7 EBX bit 0); without it the bit is discarded. Xen 4.17 under this QEMU answered a
/// request for every bit with 0x5066c.
pub fn fixup_guest_cr4(cr4: u64, fsgsbase: bool) -> u64 {
    let allowed = if fsgsbase {
        GUEST_CR4_WRITABLE
    } else {
        GUEST_CR4_WRITABLE & !CR4_FSGSBASE
    };
    GUEST_CR4 | (cr4 & allowed)
}
/// `X86_CR4_OSXSAVE`: with it in its virtual CR4 a PV kernel may `xsetbv`.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// `XSTATE_FP_SSE`: the XCR0 of a vCPU that never ran `xsetbv`.
pub const XCR0_FP_SSE: u64 = 3;
/// `X86_CR4_DE`.
pub const CR4_DE: u64 = 1 << 3;
/// `X86_CR4_TSD`: a PV kernel that sets it in its virtual CR4 gets it in the real CR4 while
/// it runs (`pv_make_cr4`), so `rdtsc`/`rdtscp` trap; the emulator serves the kernel and
/// raises #GP(0) for guest user mode.
pub const CR4_TSD: u64 = 1 << 2;
/// The CR0 Xen runs with (PE MP ET NE WP AM PG); the guest reads it with its virtual TS.
pub const HOST_CR0: u64 = 0x8005_0033;
/// `X86_CR0_TS`.
pub const CR0_TS: u64 = 1 << 3;
/// `X86_DR6_DEFAULT`: DR6 after reset (reserved bits read as 1).
pub const DR6_DEFAULT: u64 = 0xffff_0ff0;
/// `X86_DR7_DEFAULT`.
pub const DR7_DEFAULT: u64 = 0x400;
/// GDT pages a guest owns (`FIRST_RESERVED_GDT_PAGE`).
pub const GDT_GUEST_PAGES: usize = 14;
/// Pages of the largest LDT (8192 entries).
pub const LDT_PAGES: usize = 16;
/// `X86_EFLAGS_IOPL`.
pub const EFLAGS_IOPL: u64 = 3 << 12;

/// One entry of a vCPU's virtual IDT (`struct trap_info` minus the vector, which is the key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapEntry {
    /// `TI_*` flags: DPL in bits 0-1, bit 2 masks events on entry.
    pub flags: u8,
    /// Code selector (RPL fixed up to 3).
    pub cs: u16,
    /// Handler address (0: none).
    pub address: u64,
}
impl_value!(TrapEntry { flags, cs, address });

impl TrapEntry {
    /// `TI_GET_DPL`.
    pub fn dpl(&self) -> u8 {
        self.flags & TI_DPL_MASK
    }
    /// `TI_GET_IF`: entering the handler masks events.
    pub fn masks_events(&self) -> bool {
        self.flags & TI_IF != 0
    }
}

/// PV CPU state of one vCPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvVcpu {
    /// `VGCF_failsafe_disables_events`.
    pub failsafe_disables_events: bool,
    /// `VGCF_syscall_disables_events`.
    pub syscall_disables_events: bool,
    /// 32-bit SYSCALL entry point.
    pub syscall32_callback: u64,
    /// Mask events on 32-bit SYSCALL entry.
    pub syscall32_disables_events: bool,
    /// SYSENTER entry point.
    pub sysenter_callback: u64,
    /// Mask events on SYSENTER entry.
    pub sysenter_disables_events: bool,
    /// Virtual CR0.TS (`fpu_taskswitch`).
    pub cr0_ts: bool,
    /// Virtual CR2 (last page-fault address bounced).
    pub cr2: u64,
    /// Guest-visible CR4.
    pub cr4: u64,
    /// DR0-DR3.
    pub dr: [u64; 4],
    /// DR6.
    pub dr6: u64,
    /// DR7 (I/O breakpoint enables moved to `dr7_emul`).
    pub dr7: u64,
    /// Emulated DR7 I/O breakpoint enables.
    pub dr7_emul: u64,
    /// Virtual IOPL, in EFLAGS position (bits 12-13).
    pub iopl: u64,
    /// `VGCF_*` flags of the context the vCPU was last given (Xen's `vgc_flags`), without
    /// the two `*_disables_events` bits, which the fields above hold (callback_op changes
    /// them). `VGCF_i387_valid` in it stands for Xen's `fpu_initialised`: DualVisor switches
    /// the FPU eagerly and never learns of a guest's first FPU use.
    pub vgc_flags: u64,
    /// `ctrlreg[5..8]` of the context the vCPU was last given: Xen keeps all eight control
    /// register slots of a context and reports them back, these three unused.
    pub ctrlreg_high: [u64; 3],
    /// GDT frames set with `set_gdt` (each holds a general and a segment-descriptor type
    /// reference); 0 past `gdt_ents`.
    pub gdt_frames: [u64; GDT_GUEST_PAGES],
    /// GDT entries (0: no guest GDT).
    pub gdt_ents: u32,
    /// Frames of the LDT pages (MMUEXT_SET_LDT), each holding a general and a
    /// segment-descriptor type reference; 0 for a page not mapped.
    pub ldt_frames: [u64; LDT_PAGES],
    /// `MSR_TSC_AUX` as the guest wrote it.
    pub tsc_aux: u64,
    /// I/O permission bitmap registered with PHYSDEVOP_set_iobitmap (a guest-virtual
    /// address, read through the kernel's tables at each port access; Xen's `iobmp`).
    pub iobmp: u64,
    /// Ports the bitmap covers (`iobmp_limit`; 0: none).
    pub iobmp_limit: u32,
    /// XCR0 the vCPU runs with (`arch.xcr0`; x87 | SSE until the kernel's `xsetbv`).
    pub xcr0: u64,
    /// Every XCR0 bit the vCPU ever enabled (`arch.xcr0_accum`): the extended state the
    /// hypervisor must switch with it.
    pub xcr0_accum: u64,
}
impl_value!(PvVcpu {
    failsafe_disables_events,
    syscall_disables_events,
    syscall32_callback,
    syscall32_disables_events,
    sysenter_callback,
    sysenter_disables_events,
    cr0_ts,
    cr2,
    cr4,
    dr,
    dr6,
    dr7,
    dr7_emul,
    iopl,
    vgc_flags,
    ctrlreg_high,
    gdt_frames,
    gdt_ents,
    ldt_frames,
    tsc_aux,
    iobmp,
    iobmp_limit,
    xcr0,
    xcr0_accum,
});

impl Default for PvVcpu {
    fn default() -> Self {
        PvVcpu {
            failsafe_disables_events: false,
            syscall_disables_events: false,
            syscall32_callback: 0,
            syscall32_disables_events: false,
            sysenter_callback: 0,
            sysenter_disables_events: false,
            cr0_ts: false,
            cr2: 0,
            cr4: GUEST_CR4,
            dr: [0; 4],
            dr6: DR6_DEFAULT,
            dr7: DR7_DEFAULT,
            dr7_emul: 0,
            iopl: 0,
            vgc_flags: 0,
            ctrlreg_high: [0; 3],
            gdt_frames: [0; GDT_GUEST_PAGES],
            gdt_ents: 0,
            ldt_frames: [0; LDT_PAGES],
            tsc_aux: 0,
            iobmp: 0,
            iobmp_limit: 0,
            xcr0: XCR0_FP_SSE,
            xcr0_accum: XCR0_FP_SSE,
        }
    }
}

/// The calling vCPU's key.
pub fn key(ctx: &Ctx<'_, '_, '_>) -> VcpuKey {
    (ctx.req.dom, ctx.req.vcpu)
}

/// The PV state of `k` (the reset state if it was never touched).
pub fn get(state: &HvState, k: VcpuKey) -> PvVcpu {
    state.pv_vcpus.get(&k).cloned().unwrap_or_default()
}

/// Changes the PV state of `k` through the journal.
pub fn update<R>(
    state: &mut HvState,
    j: &mut lockstep::Journal,
    k: VcpuKey,
    f: impl FnOnce(&mut PvVcpu) -> R,
) -> R {
    let mut v = get(state, k);
    let r = f(&mut v);
    if state.pv_vcpus.get(&k) != Some(&v) {
        state.pv_vcpus.insert(j, k, v);
    }
    r
}

/// The virtual IDT entry for `vector` of `k` (an all-zero entry if none).
pub fn trap(state: &HvState, k: VcpuKey, vector: u8) -> TrapEntry {
    state
        .trap_tables
        .get(&(k.0, k.1, vector))
        .copied()
        .unwrap_or_default()
}

/// Sets (or, for an all-zero entry, removes) the virtual IDT entry for `vector` of `k`.
pub fn set_trap(
    state: &mut HvState,
    j: &mut lockstep::Journal,
    k: VcpuKey,
    vector: u8,
    e: TrapEntry,
) {
    let key = (k.0, k.1, vector);
    if e == TrapEntry::default() {
        state.trap_tables.remove(j, &key);
    } else if state.trap_tables.get(&key) != Some(&e) {
        state.trap_tables.insert(j, key, e);
    }
}

/// Clears the whole virtual IDT of `k`.
pub fn clear_traps(state: &mut HvState, j: &mut lockstep::Journal, k: VcpuKey) {
    let keys: alloc::vec::Vec<(DomId, u32, u8)> = state
        .trap_tables
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| key.0 == k.0 && key.1 == k.1)
        .collect();
    for key in keys {
        state.trap_tables.remove(j, &key);
    }
}

/// Whether the vCPU is inside a multicall (Xen's `_MCSF_in_multicall`). Handlers that would
/// create a hypercall continuation must not do so while this holds.
pub fn in_multicall(state: &HvState, k: VcpuKey) -> bool {
    state.in_multicall.get(&k).copied().unwrap_or(false)
}

/// `is_canonical_address` for 48-bit virtual addresses.
pub fn is_canonical(addr: u64) -> bool {
    ((addr as i64) << 16 >> 16) as u64 == addr
}

/// Xen's `__addr_ok` for a 64-bit PV guest: below 2^48 or above the hypervisor's range.
pub fn addr_ok(addr: u64) -> bool {
    !((1 << 48)..dom0_interface::arch_x86::HYPERVISOR_VIRT_END).contains(&addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_and_addr_ok() {
        assert!(is_canonical(0x7fff_ffff_ffff));
        assert!(!is_canonical(0x8000_0000_0000));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(addr_ok(0x1000));
        assert!(!addr_ok(0xffff_8000_0000_0000));
        assert!(addr_ok(0xffff_8800_0000_0000));
        assert!(addr_ok(0x8000_0000_0000));
    }

    #[test]
    fn reset_state_matches_xen() {
        let p = PvVcpu::default();
        assert_eq!(p.cr4, 0x660);
        assert_eq!((p.dr6, p.dr7), (0xffff_0ff0, 0x400));
        let t = TrapEntry {
            flags: 3 | TI_IF,
            cs: 0xe033,
            address: 1,
        };
        assert_eq!(t.dpl(), 3);
        assert!(t.masks_events());
    }
}
