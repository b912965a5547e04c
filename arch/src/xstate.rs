//! XSAVE-managed CPU state beyond x87/SSE (AVX's YMM upper halves and whatever else the host
//! has) for PV guests, as Xen gives it: every CPU runs with CR4.OSXSAVE, so a PV kernel's
//! `xgetbv` runs natively and its `xsetbv` is emulated (xen-core); each vCPU runs with its
//! own XCR0. The trap entry saves only the FXSAVE image (the hypervisor's SSE code never
//! touches the upper halves); the rest is switched when a vCPU that ever enabled it leaves
//! or enters a CPU, with all host components enabled for the XSAVE/XRSTOR, so nothing of
//! one vCPU reaches another.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// XCR0 x87 | SSE: what every vCPU starts with, and the hypervisor's own.
pub const XCR0_FP_SSE: u64 = 3;
/// `X86_CR4_OSXSAVE`.
const CR4_OSXSAVE: u64 = 1 << 18;
/// Bytes of an [`XArea`]: room for every component of the hosts DualVisor runs on (an
/// EPYC under QEMU needs 832; a host needing more runs its guests without XSAVE).
pub const AREA_BYTES: usize = 4096;

/// XSAVE is set up (the CPUs have it and the area fits).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The XCR0 bits the host supports (CPUID 0xd.0 EDX:EAX).
static HOST_MASK: AtomicU64 = AtomicU64::new(XCR0_FP_SSE);

/// A vCPU's extended state in XSAVE's standard form (the legacy region is not used: the
/// FXSAVE image keeps x87/SSE).
#[repr(C, align(64))]
pub struct XArea(pub [u8; AREA_BYTES]);

impl XArea {
    /// The state of a vCPU that never used the extended components: the header says every
    /// component is in its initial state; MXCSR (which XRSTOR of the AVX component loads
    /// too) at its reset value.
    pub fn new() -> alloc::boxed::Box<XArea> {
        let mut a = alloc::boxed::Box::new(XArea([0; AREA_BYTES]));
        a.0[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
        a
    }
}

/// XCR0 bits beyond x87/SSE: a vCPU whose accumulated XCR0 has none needs no switching.
pub fn extended(xcr0: u64) -> bool {
    xcr0 & !XCR0_FP_SSE != 0
}

/// Whether guests get XSAVE (CR4.OSXSAVE on every CPU).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The XCR0 bits the host supports (x87 | SSE where XSAVE is off).
pub fn host_mask() -> u64 {
    HOST_MASK.load(Ordering::Relaxed)
}

/// Turns on CR4.OSXSAVE with XCR0 = x87 | SSE on this CPU, where the CPU has XSAVE and its
/// largest XSAVE area fits an [`XArea`]. Call once per CPU at bring-up.
pub fn init_cpu() {
    let (_, _, ecx1, _) = crate::cpu::cpuid(1, 0);
    if ecx1 & (1 << 26) == 0 {
        return;
    }
    let (eax, _, size, edx) = crate::cpu::cpuid(0xd, 0);
    if size as usize > AREA_BYTES {
        return;
    }
    // SAFETY: the CPU has XSAVE (CPUID.1:ECX.XSAVE): CR4.OSXSAVE only enables XGETBV/XSETBV
    // and the XSAVE family; every other bit is kept.
    unsafe { crate::cpu::write_cr4(crate::cpu::read_cr4() | CR4_OSXSAVE) };
    write_xcr0(XCR0_FP_SSE);
    let mask = u64::from(edx) << 32 | u64::from(eax);
    HOST_MASK.store(mask, Ordering::Relaxed);
    if !ENABLED.swap(true, Ordering::Relaxed) {
        // Xen's boot line, with the largest area and the host's XCR0 bits.
        crate::xprintln!("xstate: size: {:#x} and states: {:#x}", size, mask);
    }
}

fn write_xcr0(v: u64) {
    // SAFETY: CR4.OSXSAVE is on (callers check `enabled`, `init_cpu` set it); `v` is x87 |
    // SSE or a value xen-core validated against the host mask as Xen's `valid_xcr0`, so
    // `xsetbv` does not fault; XCR0 does not change what the hypervisor's SSE code may do.
    unsafe {
        core::arch::asm!(
            "xsetbv",
            in("ecx") 0u32,
            in("eax") v as u32,
            in("edx") (v >> 32) as u32,
            options(nomem, nostack)
        )
    };
    crate::percpu::this().xcr0.store(v, Ordering::Relaxed);
}

/// Loads `xcr0` (a vCPU's) unless this CPU holds it already.
pub fn set_xcr0(xcr0: u64) {
    if enabled() && crate::percpu::this().xcr0.load(Ordering::Relaxed) != xcr0 {
        write_xcr0(xcr0);
    }
}

/// Runs `f` with every host component enabled in XCR0, then puts back the XCR0 this CPU had.
fn with_all_enabled(f: impl FnOnce(u64)) {
    let held = crate::percpu::this().xcr0.load(Ordering::Relaxed);
    let all = host_mask();
    if held != all {
        write_xcr0(all);
    }
    f(all & !XCR0_FP_SSE);
    if held != all {
        write_xcr0(held);
    }
}

/// Saves the extended state this CPU holds (the vCPU leaving it) into `area`.
pub fn save(area: &mut XArea) {
    if !enabled() {
        return;
    }
    with_all_enabled(|rfbm| {
        // SAFETY: `area` is 64-byte aligned and as large as the host's largest XSAVE area
        // (`init_cpu` checked); XSAVE writes only the components in RFBM (and their header).
        unsafe {
            core::arch::asm!(
                "xsave64 [{}]",
                in(reg) area.0.as_mut_ptr(),
                in("eax") rfbm as u32,
                in("edx") (rfbm >> 32) as u32,
                options(nostack)
            )
        }
    });
}

/// Loads the extended state of `area` (the vCPU entering this CPU).
pub fn restore(area: &XArea) {
    if !enabled() {
        return;
    }
    with_all_enabled(|rfbm| {
        // SAFETY: `area` is aligned and holds either `XArea::new`'s initial state (header all
        // zero: every component initialised) or what `save` wrote under the same host mask,
        // so XRSTOR finds a valid header and a valid MXCSR.
        unsafe {
            core::arch::asm!(
                "xrstor64 [{}]",
                in(reg) area.0.as_ptr(),
                in("eax") rfbm as u32,
                in("edx") (rfbm >> 32) as u32,
                options(nostack)
            )
        }
    });
}

/// Puts every extended component of this CPU in its initial state (the vCPU entering it
/// never used them; the one that left did).
pub fn restore_initial() {
    static INITIAL: spin::Once<alloc::boxed::Box<XArea>> = spin::Once::new();
    restore(INITIAL.call_once(XArea::new));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bits_beyond_x87_and_sse_need_switching() {
        assert!(!extended(XCR0_FP_SSE));
        assert!(!extended(1));
        assert!(extended(7));
        assert!(extended(1 << 9 | 3));
    }

    #[test]
    fn a_fresh_area_is_initial_state_with_reset_mxcsr() {
        let a = XArea::new();
        assert_eq!(core::mem::align_of::<XArea>(), 64);
        assert_eq!(&a.0[24..28], &0x1F80u32.to_le_bytes());
        // The XSAVE header (XSTATE_BV, XCOMP_BV, reserved) is all zero.
        assert!(a.0[512..576].iter().all(|&b| b == 0));
    }
}
