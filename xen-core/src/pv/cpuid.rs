//! The CPUID view Xen 4.17 gives a 64-bit PV guest: Xen's own leaves at 0x40000000 computed
//! here, everything else from the host's values (a logged input) with Xen's PV adjustments.

use crate::hv::{value_kind, Ctx, HvError, HvState};

/// Xen version in leaf 0x40000001 (4.17, as `xen_version` reports).
const XEN_MAJOR: u32 = 4;
/// Minor version.
const XEN_MINOR: u32 = 17;

/// First of Xen's leaves.
pub const XEN_BASE: u32 = 0x4000_0000;
/// Number of Xen leaves after the base (`XEN_CPUID_MAX_NUM_LEAVES`): Xen 4.17 answers
/// 0x40000005 in leaf 0x40000000's EAX.
pub const XEN_MAX_LEAVES: u32 = 5;
/// `XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD`, set for PV guests in leaf 0x40000002 ECX.
pub const FEAT1_MMU_PT_UPDATE_PRESERVE_AD: u32 = 1 << 0;
/// The hypercall-page MSR Xen advertises.
pub const HYPERCALL_MSR: u32 = 0x4000_0000;

/// CPUID.1:ECX bits.
mod ecx1 {
    pub const XSAVE: u32 = 1 << 26;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const HYPERVISOR: u32 = 1 << 31;
}

/// CPUID.1:EDX bit 11, SYSENTER/SYSEXIT: hidden from 64-bit PV guests on AMD and Hygon, where
/// the instructions do not work in long mode (measured on Xen 4.17: QEMU's EPYC has it, the
/// PV guest does not see it).
const SEP: u32 = 1 << 11;

/// Bits `n` of a mask.
const fn bits(list: &[u32]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < list.len() {
        m |= 1 << list[i];
        i += 1;
    }
    m
}

/// The features Xen 4.17 offers a PV guest by default, per featureset word (the `A`
/// attribute in `public/arch-x86/cpufeatureset.h`; `S`/`H` features are HVM-only). Checked
/// against Xen 4.17 under QEMU's EPYC (`traps` guest): PSE, PGE, PSE36 (leaf 1), SMEP (leaf
/// 7), SVM, CR8_LEGACY (0x80000001 ECX) and PAGE1GB are hidden; MTRR is offered. Without
/// PSE, PGE and PAGE1GB Linux builds its direct map from 4 KiB pages and no global bits,
/// which is all a PV page table may hold.
mod pv_mask {
    use super::bits;
    /// Leaf 1 EDX: FPU DE TSC MSR PAE MCE CX8 APIC SEP MTRR MCA CMOV PAT CLFLUSH ACPI MMX
    /// FXSR SSE SSE2 SS HTT.
    pub const L1_EDX: u32 = bits(&[
        0, 2, 4, 5, 6, 7, 8, 9, 11, 12, 14, 15, 16, 19, 22, 23, 24, 25, 26, 27, 28,
    ]);
    /// Leaf 1 ECX: SSE3 PCLMULQDQ SSSE3 FMA CX16 SSE4.1 SSE4.2 X2APIC MOVBE POPCNT AESNI
    /// XSAVE AVX F16C RDRAND HYPERVISOR (OSXSAVE is dynamic).
    pub const L1_ECX: u32 = bits(&[0, 1, 9, 12, 13, 19, 20, 21, 22, 23, 25, 26, 28, 29, 30, 31]);
    /// 0x80000001 EDX, AMD's own bits: SYSCALL NX MMXEXT FFXSR RDTSCP LM 3DNOWEXT 3DNOW.
    pub const E1_EDX: u32 = bits(&[11, 20, 22, 25, 27, 29, 30, 31]);
    /// `CPUID_COMMON_1D_FEATURES`: the leaf 1 EDX bits AMD repeats in 0x80000001 EDX.
    pub const COMMON_1D: u32 =
        bits(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 23, 24]);
    /// 0x80000001 ECX: LAHF_LM CMP_LEGACY ABM SSE4A MISALIGNSSE 3DNOWPREFETCH XOP FMA4 TBM
    /// DBEXT.
    pub const E1_ECX: u32 = bits(&[0, 1, 5, 6, 7, 8, 11, 16, 21, 26]);
    /// Leaf 0xd subleaf 1 EAX: XSAVEOPT XSAVEC XGETBV1 (not XSAVES).
    pub const XSAVE1_EAX: u32 = bits(&[0, 1, 2]);
    /// Leaf 7 EBX: FSGSBASE BMI1 AVX2 FDP_EXCP_ONLY BMI2 ERMS RTM NO_FPU_SEL AVX512F/DQ RDSEED
    /// ADX AVX512_IFMA CLFLUSHOPT CLWB AVX512PF/ER/CD SHA AVX512BW/VL.
    pub const L7_EBX: u32 = bits(&[
        0, 3, 5, 6, 8, 9, 11, 13, 16, 17, 18, 19, 21, 23, 24, 26, 27, 28, 29, 30, 31,
    ]);
    /// Leaf 7 ECX: PREFETCHWT1 AVX512_VBMI AVX512_VBMI2 GFNI VAES VPCLMULQDQ AVX512_VNNI
    /// AVX512_BITALG AVX512_VPOPCNTDQ RDPID CLDEMOTE.
    pub const L7_ECX: u32 = bits(&[0, 1, 6, 8, 9, 10, 11, 12, 14, 22, 25]);
    /// Leaf 7 EDX: AVX512_4VNNIW AVX512_4FMAPS FSRM AVX512_VP2INTERSECT MD_CLEAR SERIALIZE
    /// TSXLDTRK AVX512_FP16.
    pub const L7_EDX: u32 = bits(&[2, 3, 4, 8, 10, 14, 16, 23]);
    /// 0x80000007 EDX: ITSC, which Xen gives dom0 (`init_dom0_cpuid_policy`).
    pub const E7_EDX_DOM0: u32 = bits(&[8]);
    /// 0x80000008 EBX: CLZERO RSTR_FP_ERR_PTRS IBPB SSB_NO BTC_NO IBPB_RET.
    pub const E8_EBX: u32 = bits(&[0, 2, 12, 26, 29, 30]);
}

/// Highest basic leaf a guest sees (`CPUID_GUEST_NR_BASIC - 1`).
const MAX_BASIC: u32 = 0xd;
/// Highest extended leaf a guest sees (`0x80000000 + CPUID_GUEST_NR_EXTD - 1`).
const MAX_EXTD: u32 = 0x8000_0021;

/// Who asks, for [`pv_cpuid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The calling vCPU's id.
    pub vcpu_id: u32,
    /// Its virtual CR4 (OSXSAVE).
    pub guest_cr4: u64,
    /// Whether its domain is dom0 (ITSC).
    pub privileged: bool,
    /// The host's `max_page` (one past the highest RAM frame).
    pub max_page: u64,
    /// Asked through the forced-emulation prefix (#UD) from guest kernel mode: the view in
    /// which Xen shows its own CR4.OSXSAVE (see [`pv_cpuid`]).
    pub enlightened_kernel: bool,
}

impl Caller {
    /// The vCPU of the request in `ctx`.
    pub fn of(state: &HvState, ctx: &Ctx<'_, '_, '_>) -> Caller {
        let k = crate::pv::state::key(ctx);
        Caller {
            vcpu_id: k.1,
            guest_cr4: crate::pv::state::get(state, k).cr4,
            privileged: crate::hypercall::is_privileged(state, k.0),
            max_page: state.mm_config.get().max_page,
            enlightened_kernel: false,
        }
    }
}

/// Leaf 0x40000005 EBX: the bits of the highest machine address (`get_upper_mfn_bound()`
/// is `max_page - 1` on a host without hot-pluggable memory).
fn machine_address_bits(max_page: u64) -> u32 {
    let bound = max_page.saturating_sub(1);
    (64 - bound.leading_zeros()) + 12
}

/// Whether leaf 0's vendor (EBX) is AMD or Hygon.
fn amd_like_vendor(ebx: u32) -> bool {
    ebx == u32::from_le_bytes(*b"Auth") || ebx == u32::from_le_bytes(*b"Hygo")
}

/// `guest_cpuid` for the calling PV vCPU: `leaf`/`subleaf` → [EAX, EBX, ECX, EDX]. `host`
/// answers the host's raw CPUID for any leaf/subleaf; the result is Xen 4.17's PV policy
/// over it (`recalculate_cpuid_policy`, `recalculate_misc`, the PV parts of `guest_cpuid`).
/// OSXSAVE, as Xen 4.17's "non-architectural" PV rule: shown when the guest's own virtual CR4
/// has it, and also in the enlightened view of the guest kernel when the policy has XSAVE
/// and the host runs with CR4.OSXSAVE (a de-facto part of the PV ABI Linux relies on: it
/// then sets CR4.OSXSAVE and XCR0 with `xsetbv`, emulated in `emulate`).
pub fn pv_cpuid(
    leaf: u32,
    subleaf: u32,
    caller: &Caller,
    host: &mut dyn FnMut(u32, u32) -> Result<[u32; 4], HvError>,
) -> Result<[u32; 4], HvError> {
    let Caller {
        vcpu_id,
        guest_cr4,
        privileged,
        max_page,
        enlightened_kernel,
    } = *caller;
    if (XEN_BASE..XEN_BASE + 0x100).contains(&leaf) {
        let idx = leaf - XEN_BASE;
        let r = match idx {
            0 => [
                XEN_BASE + XEN_MAX_LEAVES,
                u32::from_le_bytes(*b"XenV"),
                u32::from_le_bytes(*b"MMXe"),
                u32::from_le_bytes(*b"nVMM"),
            ],
            1 => [(XEN_MAJOR << 16) | XEN_MINOR, 0, 0, 0],
            2 => [1, HYPERCALL_MSR, FEAT1_MMU_PT_UPDATE_PRESERVE_AD, 0],
            // Time: depends on the host, taken from it.
            3 => host(leaf, subleaf)?,
            // PV parameters: EBX is the machine address width, `flsl(get_upper_mfn_bound())
            // + PAGE_SHIFT` (Linux picks grant table v2 only above 44 bits).
            5 if subleaf == 0 => [0, machine_address_bits(max_page), 0, 0],
            _ => [0; 4],
        };
        return Ok(r);
    }
    let l0 = host(0, 0)?;
    let amd = amd_like_vendor(l0[1]);
    let max_basic = l0[0].min(MAX_BASIC);
    let max_extd = host(0x8000_0000, 0)?[0].min(MAX_EXTD);
    if leaf < 0x8000_0000 {
        if leaf > max_basic {
            return Ok([0; 4]);
        }
    } else if !(0x8000_0000..=max_extd).contains(&leaf) {
        return Ok([0; 4]);
    }
    let leaf1_edx = |l1d: u32| {
        let mut d = l1d & pv_mask::L1_EDX;
        if amd {
            d &= !SEP;
        }
        d
    };
    let mut r = host(leaf, subleaf)?;
    match leaf {
        0 => r[0] = max_basic,
        1 => {
            r[0] &= 0x0fff_0fff;
            // Initial APIC id: Xen gives vCPU n the id 2n.
            r[1] = (r[1] & 0x00ff_ffff) | (vcpu_id.wrapping_mul(2) << 24);
            let host_osxsave = r[2] & ecx1::OSXSAVE != 0;
            r[2] = (r[2] & pv_mask::L1_ECX & !ecx1::OSXSAVE) | ecx1::HYPERVISOR;
            let leaked = enlightened_kernel && host_osxsave && r[2] & ecx1::XSAVE != 0;
            if guest_cr4 & (1 << 18) != 0 || leaked {
                r[2] |= ecx1::OSXSAVE;
            }
            r[3] = leaf1_edx(r[3]);
        }
        // Cache descriptors and leaf 4 are Intel's: AMD guests get zeros.
        2..=4 if amd => r = [0; 4],
        // MONITOR, thermal/power, leaf 8, DCA, perfmon, topology, leaf 0xc: hidden.
        5 | 6 | 8..=0xc => r = [0; 4],
        7 => {
            r = if subleaf == 0 {
                [
                    0,
                    r[1] & pv_mask::L7_EBX,
                    r[2] & pv_mask::L7_ECX,
                    r[3] & pv_mask::L7_EDX,
                ]
            } else {
                [0; 4]
            };
        }
        0xd if subleaf == 1 => r = [r[0] & pv_mask::XSAVE1_EAX, 0, 0, 0],
        0x8000_0000 => {
            r[0] = max_extd;
            if amd {
                r[1..].copy_from_slice(&l0[1..]);
            }
        }
        0x8000_0001 => {
            if amd {
                r[1] &= 0xff00_ffff;
            }
            r[2] &= pv_mask::E1_ECX;
            let own = r[3] & pv_mask::E1_EDX;
            r[3] = if amd {
                own | (leaf1_edx(host(1, 0)?[3]) & pv_mask::COMMON_1D)
            } else {
                own
            };
        }
        0x8000_0007 => {
            let itsc = if privileged { pv_mask::E7_EDX_DOM0 } else { 0 };
            r = [0, 0, 0, r[3] & itsc];
        }
        0x8000_0008 => {
            r[0] &= 0xffff;
            r[1] &= pv_mask::E8_EBX;
            r[2] &= 0x0003_f0ff;
            r[3] = 0;
        }
        // SVM (hidden), 0x80000009, 0x8000000b..0x80000018, IBS, LWP, TopoExt, SEV, QoS
        // and above: nothing for a PV guest.
        0x8000_0009..=0x8000_0018 | 0x8000_001b..=0x8000_0021 => r = [0; 4],
        _ => {}
    }
    Ok(r)
}

/// Whether the guest's CPUID has FSGSBASE (leaf 7 EBX bit 0, passed through from the host as
/// Xen's policy does for every guest type): what lets a 64-bit PV kernel set CR4.FSGSBASE.
pub fn has_fsgsbase(ctx: &mut Ctx<'_, '_, '_>) -> Result<bool, HvError> {
    let max = ctx.value(value_kind::host_cpuid_raw(0, 0, 0))?;
    if max < 7 {
        return Ok(false);
    }
    Ok(ctx.value(value_kind::host_cpuid_raw(7, 0, 1))? & 1 != 0)
}

/// XCR0 bits Xen manages (`XCNTXT_MASK`): x87, SSE, AVX, AVX-512 (opmask, ZMM, hi ZMM),
/// MPX (BNDREGS, BNDCSR), PKRU, LWP.
const XCNTXT_MASK: u64 = 0b10_1111_1111 | (1 << 62);

/// Xen's `xfeature_mask`: the XCR0 bits the host supports and Xen manages (0 when the host
/// runs without CR4.OSXSAVE: nothing may be enabled).
pub fn xfeature_mask(ctx: &mut Ctx<'_, '_, '_>) -> Result<u64, HvError> {
    if ctx.value(value_kind::host_cpuid_raw(1, 0, 2))? & u64::from(ecx1::OSXSAVE) == 0 {
        return Ok(0);
    }
    let lo = ctx.value(value_kind::host_cpuid_raw(0xd, 0, 0))? & 0xffff_ffff;
    let hi = ctx.value(value_kind::host_cpuid_raw(0xd, 0, 3))? & 0xffff_ffff;
    Ok((hi << 32 | lo) & XCNTXT_MASK)
}

/// Xen's `valid_xcr0` plus its PV refusal of PKRU: whether a PV kernel may load `xcr0`
/// into XCR0 on a host supporting `mask`.
pub fn xcr0_allowed(xcr0: u64, mask: u64) -> bool {
    const FP: u64 = 1;
    const SSE: u64 = 2;
    const YMM: u64 = 4;
    const BNDREGS: u64 = 1 << 3;
    const BNDCSR: u64 = 1 << 4;
    const AVX512: u64 = 0b111 << 5;
    const PKRU: u64 = 1 << 9;
    if xcr0 & !mask != 0 || xcr0 & FP == 0 || xcr0 & PKRU != 0 {
        return false;
    }
    if xcr0 & YMM != 0 && xcr0 & SSE == 0 {
        return false;
    }
    if xcr0 & AVX512 != 0 && (xcr0 & YMM == 0 || xcr0 & AVX512 != AVX512) {
        return false;
    }
    (xcr0 & BNDREGS == 0) == (xcr0 & BNDCSR == 0)
}

/// The host CPUID values for `leaf`/`subleaf`, from the input log: the leaf in the request's
/// EAX/ECX as one pair of words, any other (leaf 0, 1, 0x80000000) register by register.
pub fn host_values(
    ctx: &mut Ctx<'_, '_, '_>,
    leaf: u32,
    subleaf: u32,
) -> Result<[u32; 4], HvError> {
    let regs = &ctx.req.regs;
    if (regs.rax as u32, regs.rcx as u32) == (leaf, subleaf) {
        let ab = ctx.value(value_kind::HOST_CPUID_AB)?;
        let cd = ctx.value(value_kind::HOST_CPUID_CD)?;
        return Ok([ab as u32, (ab >> 32) as u32, cd as u32, (cd >> 32) as u32]);
    }
    let mut r = [0; 4];
    for (reg, v) in r.iter_mut().enumerate() {
        *v = ctx.value(value_kind::host_cpuid_raw(leaf, subleaf, reg as u32))? as u32;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's `-cpu EPYC,-monitor,-smap` with 3 CPUs, as the host CPUID answers it (leaf 1
    /// ECX with CR4.OSXSAVE on; 0x8000001f is past the last leaf and repeats leaf 0xd).
    const EPYC: &[(u32, u32, [u32; 4])] = &[
        (0, 0, [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65]),
        (1, 0, [0x0080_0f12, 0x0003_0800, 0xfed8_3203, 0x178b_fbfd]),
        (4, 0, [0; 4]),
        (6, 0, [4, 0, 0, 0]),
        (7, 0, [0, 0x0088_01a9, 0, 0]),
        (0xb, 0, [0, 1, 0x100, 1]),
        (0xd, 0, [7, 0x240, 0x340, 0]),
        (0xd, 1, [5, 0x340, 0, 0]),
        (
            0x8000_0000,
            0,
            [0x8000_001e, 0x6874_7541, 0x444d_4163, 0x6974_6e65],
        ),
        (0x8000_0001, 0, [0x0080_0f12, 0, 0x77, 0x2dd3_fbfd]),
        (0x8000_0007, 0, [0; 4]),
        (0x8000_0008, 0, [0x3028, 0, 0x2002, 0]),
        (0x8000_000a, 0, [1, 0x10, 0, 1]),
        (0x8000_001d, 0, [0x121, 0x01c0_003f, 0x3f, 1]),
        (0x8000_001e, 0, [1, 1, 0, 0]),
        (0x8000_001f, 0, [7, 0x240, 0x340, 0]),
    ];

    /// What Xen 4.17 answered the `traps` guest (dom0, vCPU 0) on that machine.
    const XEN_4_17: &[(u32, u32, [u32; 4])] = &[
        (0, 0, [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65]),
        (1, 0, [0x0080_0f12, 0x0003_0800, 0xfed8_3203, 0x1789_d3f5]),
        (4, 0, [0; 4]),
        (6, 0, [0; 4]),
        (7, 0, [0, 0x0088_0129, 0, 0]),
        (0xb, 0, [0; 4]),
        (0xd, 0, [7, 0x240, 0x340, 0]),
        (0xd, 1, [5, 0, 0, 0]),
        (
            0x8000_0000,
            0,
            [0x8000_001e, 0x6874_7541, 0x444d_4163, 0x6974_6e65],
        ),
        (0x8000_0001, 0, [0x0080_0f12, 0, 0x63, 0x29d1_dbf5]),
        (0x8000_0007, 0, [0; 4]),
        (0x8000_0008, 0, [0x3028, 0, 0x2002, 0]),
        (0x8000_000a, 0, [0; 4]),
        (0x8000_001d, 0, [0; 4]),
        (0x8000_001e, 0, [0; 4]),
        (0x8000_001f, 0, [0; 4]),
    ];

    /// dom0's vCPU 0 on a 2 GiB QEMU machine (RAM up to 0x7ffdf000).
    const DOM0: Caller = Caller {
        vcpu_id: 0,
        guest_cr4: 0x660,
        privileged: true,
        max_page: 0x7ffdf,
        enlightened_kernel: false,
    };

    #[test]
    fn machine_address_width_as_xen_computes_it() {
        let mut never = |_: u32, _: u32| -> Result<[u32; 4], HvError> { panic!("host asked") };
        // 2 GiB: max_page 0x7ffdf, bound 0x7ffde: 19 bits of frame number, 31 of address.
        assert_eq!(
            pv_cpuid(0x4000_0005, 0, &DOM0, &mut never).unwrap(),
            [0, 31, 0, 0]
        );
        let one_gib = Caller {
            max_page: 0x3ffe0,
            ..DOM0
        };
        assert_eq!(
            pv_cpuid(0x4000_0005, 0, &one_gib, &mut never).unwrap()[1],
            30
        );
        let big = Caller {
            max_page: 1 << 33,
            ..DOM0
        };
        assert_eq!(pv_cpuid(0x4000_0005, 0, &big, &mut never).unwrap()[1], 45);
        assert_eq!(pv_cpuid(0x4000_0005, 1, &DOM0, &mut never).unwrap(), [0; 4]);
    }

    fn epyc(leaf: u32, sub: u32) -> Result<[u32; 4], HvError> {
        Ok(EPYC
            .iter()
            .find(|e| (e.0, e.1) == (leaf, sub))
            .map_or([0; 4], |e| e.2))
    }

    #[test]
    fn xen_leaves_as_on_the_oracle() {
        let mut never = |_: u32, _: u32| -> Result<[u32; 4], HvError> { panic!("host asked") };
        let l0 = pv_cpuid(0x4000_0000, 0, &DOM0, &mut never).unwrap();
        assert_eq!(l0[0], 0x4000_0005);
        let sig: alloc::vec::Vec<u8> = l0[1..].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(
            pv_cpuid(0x4000_0001, 0, &DOM0, &mut never).unwrap()[0],
            0x4_0011
        );
        let l2 = pv_cpuid(0x4000_0002, 0, &DOM0, &mut never).unwrap();
        assert_eq!((l2[0], l2[1]), (1, 0x4000_0000));
        assert_eq!(pv_cpuid(0x4000_0004, 0, &DOM0, &mut never).unwrap(), [0; 4]);
    }

    #[test]
    fn every_measured_leaf_as_xen_4_17_answers_it() {
        for &(leaf, sub, xen) in XEN_4_17 {
            // Measured through the forced-emulation prefix from the kernel: Xen's own
            // CR4.OSXSAVE shows in leaf 1.
            let kernel = Caller {
                enlightened_kernel: true,
                ..DOM0
            };
            let got = pv_cpuid(leaf, sub, &kernel, &mut epyc).unwrap();
            assert_eq!(got, xen, "leaf {leaf:#x}.{sub}");
        }
    }

    #[test]
    fn no_superpages_or_global_pages_for_pv() {
        let l1 = pv_cpuid(1, 0, &DOM0, &mut epyc).unwrap();
        for (bit, name) in [(3, "PSE"), (13, "PGE"), (17, "PSE36"), (11, "SEP")] {
            assert_eq!(l1[3] & (1 << bit), 0, "{name}");
        }
        let e1 = pv_cpuid(0x8000_0001, 0, &DOM0, &mut epyc).unwrap();
        assert_eq!(e1[3] & (1 << 26), 0, "PAGE1GB");
        assert_ne!(e1[3] & (1 << 11), 0, "SYSCALL stays");
    }

    #[test]
    fn leaves_past_the_maximum_are_zero() {
        for leaf in [0xe, 0x14, 0x2000_0000, 0x8000_0022, 0xc000_0000] {
            assert_eq!(
                pv_cpuid(leaf, 0, &DOM0, &mut epyc).unwrap(),
                [0; 4],
                "leaf {leaf:#x}"
            );
        }
    }

    #[test]
    fn leaf1_apic_id_and_osxsave() {
        let r = pv_cpuid(1, 0, &Caller { vcpu_id: 3, ..DOM0 }, &mut epyc).unwrap();
        assert!(r[2] & ecx1::HYPERVISOR != 0);
        assert_eq!(r[2] & ecx1::OSXSAVE, 0);
        assert_eq!(r[1] >> 24, 6);
        let with_xsave = pv_cpuid(
            1,
            0,
            &Caller {
                guest_cr4: 0x660 | (1 << 18),
                ..DOM0
            },
            &mut epyc,
        )
        .unwrap();
        assert!(with_xsave[2] & ecx1::OSXSAVE != 0);
    }

    #[test]
    fn osxsave_leaks_only_to_the_enlightened_kernel_of_an_osxsave_host() {
        let kernel = Caller {
            enlightened_kernel: true,
            ..DOM0
        };
        let r = pv_cpuid(1, 0, &kernel, &mut epyc).unwrap();
        assert_ne!(r[2] & ecx1::OSXSAVE, 0);
        // A host without CR4.OSXSAVE has nothing to leak.
        let mut no_os = |leaf: u32, sub: u32| {
            let mut r = epyc(leaf, sub)?;
            if leaf == 1 {
                r[2] &= !ecx1::OSXSAVE;
            }
            Ok(r)
        };
        assert_eq!(
            pv_cpuid(1, 0, &kernel, &mut no_os).unwrap()[2] & ecx1::OSXSAVE,
            0
        );
        // Nor does a policy without XSAVE.
        let mut no_xsave = |leaf: u32, sub: u32| {
            let mut r = epyc(leaf, sub)?;
            if leaf == 1 {
                r[2] &= !ecx1::XSAVE;
            }
            Ok(r)
        };
        assert_eq!(
            pv_cpuid(1, 0, &kernel, &mut no_xsave).unwrap()[2] & ecx1::OSXSAVE,
            0
        );
    }

    #[test]
    fn xcr0_values_as_xen_4_17_takes_them() {
        // Measured on the oracle (EPYC host mask 7), xsave guest: 3, 7 and 1 taken; the
        // others #GP.
        for ok in [3, 7, 1] {
            assert!(xcr0_allowed(ok, 7), "{ok:#x}");
        }
        for bad in [2, 5, 0, 0x207, 0xe7, (1 << 63) | 7] {
            assert!(!xcr0_allowed(bad, 7), "{bad:#x}");
        }
        // AVX-512's three bits only together and with AVX; MPX's two together.
        let all = XCNTXT_MASK;
        assert!(xcr0_allowed(0xe7, all));
        assert!(!xcr0_allowed(0x67, all));
        assert!(!xcr0_allowed(0xe3, all));
        assert!(xcr0_allowed(0x1b, all));
        assert!(!xcr0_allowed(0xb, all));
        assert!(!xcr0_allowed(0x203, all));
    }

    #[test]
    fn itsc_only_for_dom0() {
        let mut itsc = |leaf: u32, sub: u32| -> Result<[u32; 4], HvError> {
            if leaf == 0x8000_0007 {
                Ok([0x1f, 2, 3, 0x100 | 0x7f])
            } else {
                epyc(leaf, sub)
            }
        };
        assert_eq!(
            pv_cpuid(0x8000_0007, 0, &DOM0, &mut itsc).unwrap(),
            [0, 0, 0, 0x100]
        );
        assert_eq!(
            pv_cpuid(
                0x8000_0007,
                0,
                &Caller {
                    privileged: false,
                    ..DOM0
                },
                &mut itsc
            )
            .unwrap(),
            [0; 4]
        );
    }
}
