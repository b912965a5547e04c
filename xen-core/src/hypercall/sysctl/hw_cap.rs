//! physinfo `hw_cap`: the first eight words of Xen's x86 featureset
//! (`xen/include/public/arch-x86/cpufeatureset.h`), which Xen 4.17 copies from
//! `boot_cpu_data.x86_capability`. The CPUID values come in as transaction input
//! ([`value_kind::host_cpuid_raw`]), read by the leader, so both executions agree.

use crate::hv::{value_kind, Ctx, HvError};

/// A CPUID output register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// EAX.
    A = 0,
    /// EBX.
    B = 1,
    /// ECX.
    C = 2,
    /// EDX.
    D = 3,
}

/// Where featureset word `i` comes from: (leaf, subleaf, register), in
/// `cpufeatureset.h` order: `1d`, `1c`, `e1d`, `e1c`, `Da1`, `7b0`, `7c0`, `e7d`.
pub const WORDS: [(u32, u32, Reg); 8] = [
    (0x1, 0, Reg::D),
    (0x1, 0, Reg::C),
    (0x8000_0001, 0, Reg::D),
    (0x8000_0001, 0, Reg::C),
    (0xd, 1, Reg::A),
    (0x7, 0, Reg::B),
    (0x7, 0, Reg::C),
    (0x8000_0007, 0, Reg::D),
];

/// The features leaf 1 EDX and leaf 0x8000_0001 EDX share on AMD (Xen's
/// `CPUID_COMMON_1D_FEATURES`: FPU..PAT, PSE36, MMX, FXSR). Xen's featureset keeps them in
/// word `1d` only: they are cleared from `e1d` as on Intel, which never sets them there.
pub const COMMON_1D_FEATURES: u32 = 0x0183_F3FF;
/// Leaf 1 EDX bit 1, VME (virtual-8086 mode extensions).
pub const FEATURE_VME: u32 = 1 << 1;
/// Leaf 1 EDX bit 11, SEP (SYSENTER/SYSEXIT).
pub const FEATURE_SEP: u32 = 1 << 11;
/// Leaf 1 ECX bit 27, OSXSAVE (mirrors CR4.OSXSAVE, not a capability).
pub const FEATURE_OSXSAVE: u32 = 1 << 27;
/// "AuthenticAMD" in leaf 0 EBX (the first four bytes).
const AMD_EBX: u32 = u32::from_le_bytes(*b"Auth");

/// One raw CPUID register as input.
fn raw(ctx: &mut Ctx<'_, '_, '_>, leaf: u32, sub: u32, reg: Reg) -> Result<u32, HvError> {
    Ok(ctx.value(value_kind::host_cpuid_raw(leaf, sub, reg as u32))? as u32)
}

/// The eight `hw_cap` words as Xen 4.17 reports them: each word's leaf read if the CPU has
/// it (else 0), then Xen's own edits of its boot CPU's capabilities (measured on Xen 4.17
/// under QEMU `-cpu EPYC`): the leaf-1 duplicates out of `e1d`; OSXSAVE out (a mirror of
/// CR4.OSXSAVE, which Xen sets only after reading the leaf); VME out (Xen hides it); SEP out
/// on AMD (SYSENTER is invalid in long mode there).
pub fn hw_cap(ctx: &mut Ctx<'_, '_, '_>) -> Result<[u32; 8], HvError> {
    let max_basic = raw(ctx, 0, 0, Reg::A)?;
    let amd = raw(ctx, 0, 0, Reg::B)? == AMD_EBX;
    let max_ext = raw(ctx, 0x8000_0000, 0, Reg::A)?;
    let mut w = [0u32; 8];
    for (i, &(leaf, sub, reg)) in WORDS.iter().enumerate() {
        let present = if leaf & 0x8000_0000 != 0 {
            max_ext & 0x8000_0000 != 0 && leaf <= max_ext
        } else {
            leaf <= max_basic
        };
        if present {
            w[i] = raw(ctx, leaf, sub, reg)?;
        }
    }
    Ok(edit(w, amd))
}

/// Xen's edits of the raw words (see [`hw_cap`]).
pub fn edit(mut w: [u32; 8], amd: bool) -> [u32; 8] {
    w[0] &= !FEATURE_VME;
    if amd {
        w[0] &= !FEATURE_SEP;
    }
    w[1] &= !FEATURE_OSXSAVE;
    w[2] &= !COMMON_1D_FEATURES;
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_cpufeatureset_h() {
        assert_eq!(WORDS[0], (1, 0, Reg::D));
        assert_eq!(WORDS[2], (0x8000_0001, 0, Reg::D));
        assert_eq!(WORDS[4], (0xd, 1, Reg::A));
        assert_eq!(WORDS[5], (7, 0, Reg::B));
        assert_eq!(WORDS[7], (0x8000_0007, 0, Reg::D));
    }

    #[test]
    fn edits_as_xen_on_amd() {
        // QEMU 7.2 `-cpu EPYC,-monitor,-smap` under TCG (OSXSAVE as with CR4.OSXSAVE set),
        // and what Xen 4.17 reports in `xl info` there.
        let raw = [
            0x178b_fbff,
            0xfed8_3203,
            0x2dd3_fbff,
            0x77,
            5,
            0x0088_01a9,
            0,
            0,
        ];
        let w = edit(raw, true);
        assert_eq!(
            w,
            [
                0x178b_f3fd,
                0xf6d8_3203,
                0x2c50_0800,
                0x77,
                5,
                0x0088_01a9,
                0,
                0
            ]
        );
        // Intel keeps SEP.
        assert_eq!(edit(raw, false)[0], 0x178b_fbfd);
    }
}
