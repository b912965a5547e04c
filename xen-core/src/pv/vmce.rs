//! The virtual machine-check MSRs Xen 4.17 gives every vCPU (`vmce_rdmsr`/`vmce_wrmsr`):
//! two banks, no MCG_CTL, every bank control all ones and no error ever logged (DualVisor
//! injects no machine checks, so the status, address and misc registers stay zero).
//! Measured on Xen 4.17 under QEMU's EPYC (`cpuregs` guest). Linux reads them at boot and
//! panics ("MCA architectural violation") when one of them faults.

/// `MSR_IA32_MCG_CAP`.
pub const MSR_MCG_CAP: u32 = 0x179;
/// `MSR_IA32_MCG_STATUS`.
pub const MSR_MCG_STATUS: u32 = 0x17a;
/// `MSR_IA32_MCG_CTL`.
pub const MSR_MCG_CTL: u32 = 0x17b;
/// `MSR_IA32_MCx_CTL2(0)`..`(31)` (Intel's; no bank of a guest has one).
const MCX_CTL2: core::ops::RangeInclusive<u32> = 0x280..=0x29f;
/// `MSR_IA32_MC0_CTL`..`MSR_IA32_MCx_MISC(31)`: four registers per bank.
const MCX_BANKS: core::ops::RangeInclusive<u32> = 0x400..=0x47f;
/// `GUEST_MC_BANK_NUM`: the banks a guest has (MCG_CAP's count, no capability bits).
pub const GUEST_MC_BANKS: u64 = 2;

/// Whether `msr` is one of the machine-check MSRs Xen routes to the vMCE.
pub fn is_vmce_msr(msr: u32) -> bool {
    matches!(msr, MSR_MCG_CAP | MSR_MCG_STATUS | MSR_MCG_CTL)
        || MCX_CTL2.contains(&msr)
        || MCX_BANKS.contains(&msr)
}

/// The bank and register (0 CTL, 1 STATUS, 2 ADDR, 3 MISC) of a bank MSR of the guest's
/// banks, None for the others.
fn bank_reg(msr: u32) -> Option<(u64, u32)> {
    let i = msr.checked_sub(*MCX_BANKS.start())?;
    let bank = u64::from(i / 4);
    (bank < GUEST_MC_BANKS).then_some((bank, i % 4))
}

/// `vmce_rdmsr`: the value of a vMCE MSR (see [`is_vmce_msr`]).
pub fn read(msr: u32) -> u64 {
    match msr {
        MSR_MCG_CAP => GUEST_MC_BANKS,
        // MCG_CTL_P is clear: MCG_CTL reads 0; no machine check is in progress.
        MSR_MCG_STATUS | MSR_MCG_CTL => 0,
        _ => match bank_reg(msr) {
            // "stick all 1's to MCi_CTL"
            Some((_, 0)) => u64::MAX,
            // Beyond the guest's banks (and CTL2) the vMCE answers 0 rather than #GP.
            _ => 0,
        },
    }
}

/// `vmce_wrmsr`: whether the write is taken (false: #GP). MCG_CAP is read-only; bank
/// controls and MCG_CTL are ignored; status, address and misc registers and MCG_STATUS hold
/// nothing here, so only clearing them (what an OS does after reading) is taken.
pub fn write(msr: u32, value: u64) -> bool {
    match msr {
        MSR_MCG_CAP => false,
        MSR_MCG_CTL => true,
        MSR_MCG_STATUS => value == 0,
        _ => match bank_reg(msr) {
            Some((_, 0)) => true,
            Some(_) => value == 0,
            None => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_on_xen_4_17() {
        let measured = [
            (0x179, 2),
            (0x17a, 0),
            (0x17b, 0),
            (0x400, u64::MAX),
            (0x401, 0),
            (0x402, 0),
            (0x403, 0),
            (0x404, u64::MAX),
            (0x405, 0),
            (0x407, 0),
            (0x408, 0),
            (0x40b, 0),
        ];
        for (msr, v) in measured {
            assert!(is_vmce_msr(msr));
            assert_eq!(read(msr), v, "{msr:#x}");
        }
        assert!(!is_vmce_msr(0x4d0), "MCG_EXT_CTL: no LMCE, #GP");
        assert!(!is_vmce_msr(0x480));
        assert!(!is_vmce_msr(0x178));
    }

    #[test]
    fn writes() {
        assert!(!write(MSR_MCG_CAP, 2));
        assert!(write(MSR_MCG_STATUS, 0));
        assert!(write(MSR_MCG_CTL, 0));
        assert!(write(0x400, 0), "bank control: ignored");
        assert_eq!(read(0x400), u64::MAX);
        assert!(write(0x401, 0) && write(0x405, 0));
        assert!(!write(0x401, 1), "no error to log by hand");
        assert!(write(0x408, 5), "past the guest's banks: ignored");
    }
}
