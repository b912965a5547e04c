//! `rdmsr`/`wrmsr` by a 64-bit PV kernel, as Xen 4.17's `read_msr`/`write_msr`
//! (`pv/emul-priv-op.c`) and `guest_rdmsr`/`guest_wrmsr` (`msr.c`) answer them for the MSRs a
//! PV kernel touches: its segment bases, EFER (read; writes of the same value), the APIC base
//! Linux probes, Xen's PAT, the TSC, MISC_ENABLE (the host's, levelled), the microcode
//! revision, TSC_AUX, AMD's DE_CFG and the machine-check MSRs ([`vmce`]). Everything else is #GP(0) — or reads as 0 for a
//! guest without a #GP handler, when the host has the MSR ("faking RDMSR").

use crate::hv::{value_kind, Ctx, HvError, HvState};
use crate::pv::cpuid;
use crate::pv::state;
use crate::pv::vmce;

/// `MSR_IA32_TSC`.
pub const MSR_TSC: u32 = 0x10;
/// `MSR_APIC_BASE`.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// `MSR_AMD_PATCHLEVEL` / `MSR_IA32_UCODE_REV`.
pub const MSR_UCODE_REV: u32 = 0x8b;
/// `MSR_IA32_MISC_ENABLE`.
pub const MSR_MISC_ENABLE: u32 = 0x1a0;
/// `MSR_IA32_CR_PAT`.
pub const MSR_PAT: u32 = 0x277;
/// `MSR_EFER`.
pub const MSR_EFER: u32 = 0xc000_0080;
/// `MSR_FS_BASE`.
pub const MSR_FS_BASE: u32 = 0xc000_0100;
/// `MSR_GS_BASE`.
pub const MSR_GS_BASE: u32 = 0xc000_0101;
/// `MSR_SHADOW_GS_BASE`.
pub const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
/// `MSR_TSC_AUX`.
pub const MSR_TSC_AUX: u32 = 0xc000_0103;
/// `MSR_AMD64_DE_CFG`.
pub const MSR_AMD64_DE_CFG: u32 = 0xc001_1029;

/// `XEN_MSR_PAT`: the PAT Xen runs with, which PV guests read.
pub const XEN_MSR_PAT: u64 = 0x0000_0501_0007_0406;
/// `guest_efer` of a 64-bit PV guest: SCE | LME | LMA | NXE (measured on the oracle).
pub const GUEST_EFER: u64 = 0xd01;
/// `APIC_BASE_ENABLE | APIC_DEFAULT_PHYS_BASE`.
const APIC_BASE: u64 = 0xfee0_0800;
/// `APIC_BASE_BSP`.
const APIC_BASE_BSP: u64 = 0x100;
/// `AMD64_DE_CFG_LFENCE_SERIALISE`.
const DE_CFG_LFENCE_SERIALISE: u64 = 1 << 1;
/// What [`value_kind::host_rdmsr`] answers for an MSR the host does not have.
const NO_MSR: u64 = u64::MAX;

/// `guest_misc_enable`: the host's MISC_ENABLE without performance monitoring and MONITOR,
/// with BTS, PEBS and xTPR marked unavailable.
pub fn guest_misc_enable(host: u64) -> u64 {
    (host & !((1 << 7) | (1 << 18))) | (1 << 11) | (1 << 12) | (1 << 23)
}

/// The host's value of `msr`, if it has the MSR.
fn host(ctx: &mut Ctx<'_, '_, '_>, msr: u32) -> Result<Option<u64>, HvError> {
    let Some(kind) = value_kind::host_rdmsr(msr) else {
        return Ok(None);
    };
    let v = ctx.value(kind)?;
    Ok((v != NO_MSR).then_some(v))
}

/// Whether the host CPU is AMD or Hygon (CPUID leaf 0 vendor).
fn amd_like(ctx: &mut Ctx<'_, '_, '_>) -> Result<bool, HvError> {
    let r = cpuid::host_values(ctx, 0, 0)?;
    Ok(r[1] == 0x6874_7541 || r[1] == 0x6f67_7948)
}

/// `rdmsr`: the value, or None for #GP(0).
pub fn read(state: &HvState, ctx: &mut Ctx<'_, '_, '_>, msr: u32) -> Result<Option<u64>, HvError> {
    let k = state::key(ctx);
    let v = state.vcpus.get(&k).cloned().unwrap_or_default();
    let pv = state::get(state, k);
    let value = match msr {
        MSR_APIC_BASE => Some(APIC_BASE | if k.1 == 0 { APIC_BASE_BSP } else { 0 }),
        MSR_FS_BASE => Some(v.fs_base),
        MSR_GS_BASE => Some(if v.kernel_mode {
            v.gs_base_kernel
        } else {
            v.gs_base_user
        }),
        MSR_SHADOW_GS_BASE => Some(v.gs_base_user),
        MSR_TSC => Some(ctx.value(value_kind::TSC)?),
        MSR_EFER => Some(GUEST_EFER),
        MSR_PAT => Some(XEN_MSR_PAT),
        MSR_MISC_ENABLE => host(ctx, msr)?.map(guest_misc_enable),
        MSR_UCODE_REV => host(ctx, msr)?,
        MSR_TSC_AUX => Some(pv.tsc_aux),
        MSR_AMD64_DE_CFG if amd_like(ctx)? => Some(DE_CFG_LFENCE_SERIALISE),
        m if vmce::is_vmce_msr(m) => Some(vmce::read(m)),
        _ => None,
    };
    if value.is_some() {
        return Ok(value);
    }
    // "faking RDMSR": a guest without a #GP handler reads an MSR the host has as 0.
    let no_gp_handler = state::trap(state, k, 13).address == 0;
    if no_gp_handler && msr >> 16 != 0x4000 && host(ctx, msr)?.is_some() {
        return Ok(Some(0));
    }
    Ok(None)
}

/// `wrmsr`: Ok(true) if taken (or ignored as Xen ignores it), Ok(false) for #GP(0).
pub fn write(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    msr: u32,
    value: u64,
) -> Result<bool, HvError> {
    let k = state::key(ctx);
    match msr {
        MSR_FS_BASE | MSR_GS_BASE | MSR_SHADOW_GS_BASE => {
            if !state::is_canonical(value) {
                return Ok(false);
            }
            let j = ctx.journal();
            state.vcpus.update(j, &k, |v| match msr {
                MSR_FS_BASE => v.fs_base = value,
                MSR_GS_BASE if v.kernel_mode => v.gs_base_kernel = value,
                _ => v.gs_base_user = value,
            });
            Ok(true)
        }
        MSR_EFER => Ok(value == GUEST_EFER),
        // Writes of another value are ignored (Xen logs "Domain attempted WRMSR").
        MSR_MISC_ENABLE => Ok(host(ctx, msr)?.is_some()),
        MSR_TSC_AUX => {
            if value >> 32 != 0 {
                return Ok(false);
            }
            let j = ctx.journal();
            state::update(state, j, k, |p| p.tsc_aux = value);
            Ok(true)
        }
        m if vmce::is_vmce_msr(m) => Ok(vmce::write(m, value)),
        _ => Ok(false),
    }
}
