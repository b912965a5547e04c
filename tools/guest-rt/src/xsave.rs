//! XCR0 from a 64-bit PV kernel: `xgetbv` (unprivileged: it runs natively once the real CR4
//! has OSXSAVE, else #UD), `xsetbv` (privileged: emulated by the hypervisor, #UD without
//! OSXSAVE in the kernel's virtual CR4, #GP for a value it refuses), and the AVX register
//! state XCR0 enables. Faults are bounced to the trap table and caught here (the trap table
//! must be installed).

use crate::traps;

/// #UD.
pub const UD: u8 = 6;
/// #GP.
pub const GP: u8 = 13;
/// `X86_CR4_OSXSAVE`.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// XCR0 bits: x87, SSE, AVX (YMM upper halves).
pub const XCR0_X87: u64 = 1;
/// See [`XCR0_X87`].
pub const XCR0_SSE: u64 = 2;
/// See [`XCR0_X87`].
pub const XCR0_YMM: u64 = 4;
/// XCR0.PKRU, which Xen refuses to PV guests.
pub const XCR0_PKRU: u64 = 1 << 9;

/// Runs `f`, one `len`-byte instruction, with #UD and #GP expected: `Err(vector)` if it
/// raised one of them.
fn catching(len: u8, f: impl FnOnce()) -> Result<(), u8> {
    let (ud, gp) = (traps::taken(UD), traps::taken(GP));
    traps::expect(UD, len);
    traps::expect(GP, len);
    f();
    let r = if traps::taken(UD) != ud {
        Err(UD)
    } else if traps::taken(GP) != gp {
        Err(GP)
    } else {
        Ok(())
    };
    traps::unexpect(UD);
    traps::unexpect(GP);
    r
}

/// `xgetbv` of register `index`: its value, or the vector it raised.
pub fn xgetbv(index: u32) -> Result<u64, u8> {
    let (mut lo, mut hi) = (0u32, 0u32);
    // SAFETY: `xgetbv` (0f 01 d0) only reads XCR[ECX] into EDX:EAX; a fault is bounced to
    // the trap table and skipped; the handler runs Rust code, so the C ABI clobbers are
    // declared.
    catching(3, || unsafe {
        core::arch::asm!(
            ".byte 0x0f, 0x01, 0xd0",
            in("ecx") index,
            inout("eax") lo,
            inout("edx") hi,
            clobber_abi("C")
        )
    })?;
    Ok(u64::from(hi) << 32 | u64::from(lo))
}

/// `xsetbv` of register `index` to `value`: Ok, or the vector it raised.
pub fn xsetbv(index: u32, value: u64) -> Result<(), u8> {
    // SAFETY: `xsetbv` (0f 01 d1) traps in ring 3 and the hypervisor changes only this
    // vCPU's XCR0 (or refuses with a fault, caught here); the callers keep x87 and SSE
    // enabled, which the compiled code uses.
    catching(3, || unsafe {
        core::arch::asm!(
            ".byte 0x0f, 0x01, 0xd1",
            in("ecx") index,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            clobber_abi("C")
        )
    })
}

/// Writes `v` into the upper 128 bits of YMM0 (`vinsertf128 $1, (%rax), %ymm0, %ymm0`):
/// false if it raised a fault (no AVX state enabled). Compiled code (SSE, no VEX) never
/// changes those bits, so they must read back the same after anything that keeps to this
/// vCPU: only a hypervisor that switched vCPUs without their AVX state would lose them.
pub fn set_ymm0_high(v: [u64; 2]) -> bool {
    // SAFETY: c4 e3 7d 18 00 01 reads the 16 bytes of `v` into YMM0[255:128] (XMM0 is kept);
    // a #UD is caught and skipped.
    catching(6, || unsafe {
        core::arch::asm!(
            ".byte 0xc4, 0xe3, 0x7d, 0x18, 0x00, 0x01",
            in("rax") v.as_ptr(),
            clobber_abi("C")
        )
    })
    .is_ok()
}

/// The upper 128 bits of YMM0 (`vextractf128 $1, %ymm0, (%rax)`), or None on a fault.
pub fn ymm0_high() -> Option<[u64; 2]> {
    let mut out = [0u64; 2];
    // SAFETY: c4 e3 7d 19 00 01 writes YMM0[255:128] into the 16 bytes of `out`.
    catching(6, || unsafe {
        core::arch::asm!(
            ".byte 0xc4, 0xe3, 0x7d, 0x19, 0x00, 0x01",
            in("rax") out.as_mut_ptr(),
            clobber_abi("C")
        )
    })
    .ok()?;
    Some(out)
}
