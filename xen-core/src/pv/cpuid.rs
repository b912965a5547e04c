//! The CPUID view Xen 4.17 gives a 64-bit PV guest: Xen's own leaves at 0x40000000 computed
//! here, everything else from the host's values (a logged input) with Xen's PV adjustments.

use crate::hv::{value_kind, Ctx, HvError};

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
    pub const MONITOR: u32 = 1 << 3;
    pub const VMX: u32 = 1 << 5;
    pub const SMX: u32 = 1 << 6;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const HYPERVISOR: u32 = 1 << 31;
}

/// `guest_cpuid` for the calling PV vCPU: `leaf`/`subleaf` → [EAX, EBX, ECX, EDX]. `host`
/// supplies the host's (already PV-levelled) values for leaves Xen does not compute itself.
pub fn pv_cpuid(
    leaf: u32,
    subleaf: u32,
    vcpu_id: u32,
    guest_cr4: u64,
    host: &mut dyn FnMut() -> Result<[u32; 4], HvError>,
) -> Result<[u32; 4], HvError> {
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
            // Time (3) and PV parameters (5) depend on the host: taken from it.
            3 | 5 => host()?,
            _ => [0; 4],
        };
        return Ok(r);
    }
    let mut r = host()?;
    if leaf == 1 {
        r[2] &= !(ecx1::MONITOR | ecx1::VMX | ecx1::SMX | ecx1::OSXSAVE);
        r[2] |= ecx1::HYPERVISOR;
        if guest_cr4 & (1 << 18) != 0 {
            r[2] |= ecx1::OSXSAVE;
        }
        // Initial APIC id: Xen gives vCPU n the id 2n.
        r[1] = (r[1] & 0x00ff_ffff) | (vcpu_id.wrapping_mul(2) << 24);
    }
    let _ = subleaf;
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

/// The host CPUID values for the leaf in the request's EAX/ECX, from the input log.
pub fn host_values(ctx: &mut Ctx<'_, '_, '_>) -> Result<[u32; 4], HvError> {
    let ab = ctx.value(value_kind::HOST_CPUID_AB)?;
    let cd = ctx.value(value_kind::HOST_CPUID_CD)?;
    Ok([ab as u32, (ab >> 32) as u32, cd as u32, (cd >> 32) as u32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_leaf1() -> Result<[u32; 4], HvError> {
        Ok([
            0x00a0_0f11,
            0x0800_0800,
            0xfed8_3223 | (1 << 5),
            0x178b_fbff,
        ])
    }

    #[test]
    fn xen_leaves_as_on_the_oracle() {
        let mut never = || -> Result<[u32; 4], HvError> { panic!("host asked") };
        let l0 = pv_cpuid(0x4000_0000, 0, 0, 0x660, &mut never).unwrap();
        assert_eq!(l0[0], 0x4000_0005);
        let sig: alloc::vec::Vec<u8> = l0[1..].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(
            pv_cpuid(0x4000_0001, 0, 0, 0x660, &mut never).unwrap()[0],
            0x4_0011
        );
        let l2 = pv_cpuid(0x4000_0002, 0, 0, 0x660, &mut never).unwrap();
        assert_eq!((l2[0], l2[1]), (1, 0x4000_0000));
        assert_eq!(
            pv_cpuid(0x4000_0004, 0, 0, 0x660, &mut never).unwrap(),
            [0; 4]
        );
    }

    #[test]
    fn leaf1_is_levelled_for_pv() {
        let mut h = host_leaf1;
        let r = pv_cpuid(1, 0, 3, 0x660, &mut h).unwrap();
        assert!(r[2] & ecx1::HYPERVISOR != 0);
        assert_eq!(r[2] & (ecx1::VMX | ecx1::MONITOR | ecx1::OSXSAVE), 0);
        assert_eq!(r[1] >> 24, 6);
        let with_xsave = pv_cpuid(1, 0, 0, 0x660 | (1 << 18), &mut h).unwrap();
        assert!(with_xsave[2] & ecx1::OSXSAVE != 0);
    }
}
