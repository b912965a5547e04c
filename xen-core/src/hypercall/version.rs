//! `xen_version`: version, build and feature queries, answered as Xen 4.17 does.

use crate::hv::{Ctx, HvResult, HvState};
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::version::*;
use dom0_interface::xen::VMASST_TYPE_PAE_EXTENDED_CR3;

/// The Xen version DualVisor implements (XENVER_version = major << 16 | minor).
pub const XEN_MAJOR: u32 = 4;
/// Minor version.
pub const XEN_MINOR: u32 = 17;
/// XENVER_extraversion.
pub const EXTRAVERSION: &str = ".0-dualvisor";
/// XENVER_changeset.
pub const CHANGESET: &str = concat!("dualvisor-", env!("CARGO_PKG_VERSION"));
/// XENVER_capabilities of a host that runs 64-bit PV guests (Xen ends the list with a space).
pub const CAPABILITIES: &str = "xen-3.0-x86_64 ";
/// What unprivileged callers read instead of privileged strings (Xen's `xen_deny()`).
pub const DENIED: &str = "<denied>";
/// Start of the hypervisor's range in a 64-bit PV guest (XENVER_platform_parameters).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;

/// A NUL-padded fixed-size C string.
fn c_string(s: &str, len: usize) -> Vec<u8> {
    let mut v = alloc::vec![0u8; len];
    let n = s.len().min(len - 1);
    v[..n].copy_from_slice(&s.as_bytes()[..n]);
    v
}

/// Feature submap 0 for a 64-bit PV domain (Xen 4.17's common/kernel.c).
pub fn pv_features(privileged: bool, vm_assist: u64) -> u32 {
    let mut f = (1 << XENFEAT_MEMORY_OP_VNODE_SUPPORTED)
        | (1 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD)
        | (1 << XENFEAT_HIGHMEM_ASSIST)
        | (1 << XENFEAT_GNTTAB_MAP_AVAIL_BITS)
        | (1 << XENFEAT_DIRECT_MAPPED);
    if vm_assist & (1 << VMASST_TYPE_PAE_EXTENDED_CR3) != 0 {
        f |= 1 << XENFEAT_PAE_PGDIR_ABOVE_4GB;
    }
    if privileged {
        f |= 1 << XENFEAT_DOM0;
    }
    f
}

/// `xen_version(cmd, arg)`.
pub fn xen_version(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, arg, ..] = ctx.req.args;
    // The two fields some sub-ops need, looked up by those only (the common XENVER_version
    // needs neither), not a copy of the whole domain (a lockstep-off XENVER_version spent
    // ~3% of its instructions cloning it).
    let dom = ctx.dom();
    let domain = |state: &HvState| {
        state
            .domains
            .get(&dom)
            .map_or((false, 0), |d| (d.flags.privileged, d.vm_assist))
    };
    let privileged = |state: &HvState| domain(state).0;
    match cmd as u32 {
        XENVER_VERSION => Ok(i64::from((XEN_MAJOR << 16) | XEN_MINOR)),
        XENVER_EXTRAVERSION => put(ctx, arg, &c_string(EXTRAVERSION, XEN_EXTRAVERSION_LEN)),
        XENVER_COMPILE_INFO => {
            let mut info = XenCompileInfo {
                compiler: [0; 64],
                compile_by: [0; 16],
                compile_domain: [0; 32],
                compile_date: [0; 32],
            };
            info.compiler.copy_from_slice(&c_string("rustc", 64));
            info.compile_by.copy_from_slice(&c_string("dualvisor", 16));
            put(ctx, arg, &info.to_vec())
        }
        XENVER_CAPABILITIES => put(ctx, arg, &c_string(CAPABILITIES, XEN_CAPABILITIES_INFO_LEN)),
        XENVER_CHANGESET => put(ctx, arg, &c_string(CHANGESET, XEN_CHANGESET_INFO_LEN)),
        XENVER_PLATFORM_PARAMETERS => put(ctx, arg, &HYPERVISOR_VIRT_START.to_le_bytes()),
        XENVER_GET_FEATURES => {
            let mut raw = [0u8; XenFeatureInfo::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let mut fi = XenFeatureInfo::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            fi.submap = match fi.submap_idx {
                0 => {
                    let (privileged, vm_assist) = domain(state);
                    pv_features(privileged, vm_assist)
                }
                _ => return Err(XenErrno::EINVAL.into()),
            };
            put(ctx, arg, &fi.to_vec())
        }
        XENVER_PAGESIZE => Ok(4096),
        XENVER_GUEST_HANDLE => put(ctx, arg, &[0u8; XEN_DOMAIN_HANDLE_LEN]),
        XENVER_COMMANDLINE => {
            let line = if privileged(state) {
                let raw = state.config.get().cmdline.clone();
                c_string(
                    core::str::from_utf8(&raw).unwrap_or(""),
                    XEN_COMMANDLINE_LEN,
                )
            } else {
                c_string(DENIED, XEN_COMMANDLINE_LEN)
            };
            put(ctx, arg, &line)
        }
        XENVER_BUILD_ID if !privileged(state) => Err(XenErrno::EPERM.into()),
        // The image is linked without a build id, as Xen answers then.
        XENVER_BUILD_ID => Err(XenErrno::ENODATA.into()),
        _ => super::unknown_subop(state, ctx, "xen_version", cmd),
    }
}

fn put(ctx: &mut Ctx<'_, '_, '_>, addr: u64, data: &[u8]) -> HvResult {
    ctx.copy_to_guest(addr, data)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::testing::Harness;
    use dom0_interface::xen::HYPERVISOR_XEN_VERSION as NR;

    #[test]
    fn version_is_4_17() {
        let mut h = Harness::dom0();
        assert_eq!(h.hypercall(u64::from(NR), [0, 0, 0, 0, 0]).ret, 0x40011);
    }

    #[test]
    fn strings_land_in_guest_buffers() {
        let mut h = Harness::dom0();
        h.mem.map(0x2000, &[0xAA; 1024]);
        assert_eq!(
            h.hypercall(
                u64::from(NR),
                [u64::from(XENVER_CAPABILITIES), 0x2000, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(h.mem.bytes[&0x2000], b'x');
        assert_eq!(h.mem.bytes[&(0x2000 + CAPABILITIES.len() as u64)], 0);
        assert_eq!(
            h.hypercall(
                u64::from(NR),
                [u64::from(XENVER_EXTRAVERSION), 0x2000, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(h.mem.bytes[&0x2000], b'.');
    }

    #[test]
    fn features_and_their_errors() {
        let mut h = Harness::dom0();
        h.mem.map(0x3000, &[0; 8]);
        assert_eq!(
            h.hypercall(
                u64::from(NR),
                [u64::from(XENVER_GET_FEATURES), 0x3000, 0, 0, 0]
            )
            .ret,
            0
        );
        let got = u32::from_le_bytes([
            h.mem.bytes[&0x3004],
            h.mem.bytes[&0x3005],
            h.mem.bytes[&0x3006],
            h.mem.bytes[&0x3007],
        ]);
        assert_eq!(got, pv_features(true, 0));
        assert!(got & (1 << XENFEAT_DOM0) != 0);
        h.mem.map(0x3000, &1u32.to_le_bytes());
        assert_eq!(
            h.hypercall(
                u64::from(NR),
                [u64::from(XENVER_GET_FEATURES), 0x3000, 0, 0, 0]
            )
            .ret,
            -22
        );
        assert_eq!(
            h.hypercall(u64::from(NR), [u64::from(XENVER_GET_FEATURES), 0, 0, 0, 0])
                .ret,
            -14
        );
    }

    #[test]
    fn dom0_feature_bits_match_xen_4_17() {
        // Xen 4.17 reports 0x228f0 to a dom0 whose kernel asked for pae_pgdir_above_4gb.
        assert_eq!(
            pv_features(true, 1 << VMASST_TYPE_PAE_EXTENDED_CR3),
            0x228f0
        );
    }

    #[test]
    fn bad_pointers_unknown_ops_and_privileged_queries() {
        let mut h = Harness::domu(1);
        assert_eq!(
            h.hypercall(u64::from(NR), [u64::from(XENVER_EXTRAVERSION), 0, 0, 0, 0])
                .ret,
            -14
        );
        assert_eq!(h.hypercall(u64::from(NR), [0x7fff, 0, 0, 0, 0]).ret, -38);
        assert_eq!(
            h.hypercall(u64::from(NR), [u64::from(XENVER_BUILD_ID), 0, 0, 0, 0])
                .ret,
            -1
        );
        assert_eq!(
            h.hypercall(u64::from(NR), [u64::from(XENVER_PAGESIZE), 0, 0, 0, 0])
                .ret,
            4096
        );
        h.mem.map(0x4000, &[0; 1024]);
        assert_eq!(
            h.hypercall(
                u64::from(NR),
                [u64::from(XENVER_COMMANDLINE), 0x4000, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(h.mem.bytes[&0x4000], b'<');
    }
}
