//! `rdmsr`/`wrmsr` from a 64-bit PV kernel (ring 3): each traps to the hypervisor, which
//! emulates the access or bounces #GP; the bounced #GP is caught here (the trap table must be
//! installed) and reported as `Err(error code)`.

use crate::traps;

/// #GP.
const GP: u8 = 13;

/// Runs `f` (a 2-byte instruction that may raise #GP) with #GP expected; the error code if it
/// trapped.
fn catching_gp(f: impl FnOnce()) -> Result<(), u64> {
    let before = traps::taken(GP);
    traps::expect(GP, 2);
    f();
    if traps::taken(GP) != before {
        Err(traps::last_trap().error_code)
    } else {
        traps::unexpect(GP);
        Ok(())
    }
}

/// `rdmsr(msr)`: the value, or the #GP error code.
pub fn rdmsr(msr: u32) -> Result<u64, u64> {
    let (mut lo, mut hi) = (0u32, 0u32);
    catching_gp(|| {
        // SAFETY: in ring 3 `rdmsr` always traps to the hypervisor, which emulates it (EAX,
        // EDX) or bounces #GP, handled by the trap table and skipped (2 bytes); the handler
        // runs Rust code, so the C ABI clobbers are declared.
        unsafe {
            core::arch::asm!(
                "rdmsr",
                in("ecx") msr,
                inout("eax") lo,
                inout("edx") hi,
                clobber_abi("C"),
            )
        };
    })?;
    Ok((u64::from(hi) << 32) | u64::from(lo))
}

/// `wrmsr(msr, value)`: Ok if the hypervisor took it, or the #GP error code.
///
/// Which MSRs are safe to write is the caller's affair in general; this wrapper only writes
/// the ones a PV kernel owns (its FS/GS bases, which this runtime does not use, and EFER,
/// which the hypervisor never lets a PV guest change) and MSRs the hypervisor refuses.
pub fn wrmsr(msr: u32, value: u64) -> Result<(), u64> {
    catching_gp(|| {
        // SAFETY: in ring 3 `wrmsr` always traps: the hypervisor emulates it on the guest's
        // own state (segment bases guest-rt does not rely on, EFER kept as it is) or bounces
        // #GP, handled by the trap table and skipped.
        unsafe {
            core::arch::asm!(
                "wrmsr",
                in("ecx") msr,
                in("eax") value as u32,
                in("edx") (value >> 32) as u32,
                clobber_abi("C"),
            )
        };
    })
}
