//! `rdfsbase`/`wrfsbase`/`rdgsbase`/`wrgsbase` from a 64-bit PV kernel (ring 3) and the
//! CR4.FSGSBASE bit that enables them: with the bit set in its virtual CR4 the kernel runs
//! with it in the real CR4 and the instructions execute natively; without it they raise #UD,
//! bounced to the guest and caught here (the trap table must be installed) as `None`.

use crate::cpu::read_cr4;
use crate::traps;

/// `X86_CR4_FSGSBASE`.
pub const CR4_FSGSBASE: u64 = 1 << 16;

/// #UD.
const UD: u8 = 6;

/// Sets or clears CR4.FSGSBASE with `mov %rax, %cr4` (emulated: the hypervisor keeps it only
/// if the guest's CPUID has FSGSBASE). Returns the CR4 read back.
pub fn set_cr4_fsgsbase(on: bool) -> u64 {
    let cr4 = read_cr4();
    let v = if on {
        cr4 | CR4_FSGSBASE
    } else {
        cr4 & !CR4_FSGSBASE
    };
    // SAFETY: in ring 3 the write always traps; the hypervisor changes only the guest's own
    // virtual CR4 bits, FSGSBASE here, which only decides whether the base instructions run.
    unsafe { core::arch::asm!("mov {}, %cr4", in(reg) v, options(att_syntax, nomem, nostack)) };
    read_cr4()
}

/// Writes `v` to CR4 with `mov %rax, %cr4` (emulated: the hypervisor keeps the bits a PV
/// kernel may change — TSD, DE, FSGSBASE, OSXSAVE as its CPUID allows — and ignores the
/// rest). Returns the CR4 read back.
pub fn write_cr4(v: u64) -> u64 {
    // SAFETY: in ring 3 the write always traps; the hypervisor changes only the guest's own
    // virtual CR4 bits, which the caller restores.
    unsafe { core::arch::asm!("mov {}, %cr4", in(reg) v, options(att_syntax, nomem, nostack)) };
    read_cr4()
}

/// Whether the guest's CPUID (leaf 7 EBX bit 0) has FSGSBASE.
pub fn supported() -> bool {
    crate::pvcpu::xen_cpuid(0, 0)[0] >= 7 && crate::pvcpu::xen_cpuid(7, 0)[1] & 1 != 0
}

/// Runs `f`, one 5-byte base instruction, with #UD expected; false if it raised #UD.
fn catching_ud(f: impl FnOnce()) -> bool {
    let before = traps::taken(UD);
    traps::expect(UD, 5);
    f();
    if traps::taken(UD) != before {
        false
    } else {
        traps::unexpect(UD);
        true
    }
}

/// `rdfsbase %rax`: the FS base, or None on #UD.
pub fn rdfsbase() -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: `rdfsbase` only reads the FS base into RAX (5 bytes: f3 48 0f ae c0); a #UD is
    // bounced to the trap table and skipped; the handler runs Rust code, so the C ABI
    // clobbers are declared.
    let ok = catching_ud(|| unsafe {
        core::arch::asm!(".byte 0xf3, 0x48, 0x0f, 0xae, 0xc0", inout("rax") v, clobber_abi("C"))
    });
    ok.then_some(v)
}

/// `rdgsbase %rax`: the GS base in effect, or None on #UD.
pub fn rdgsbase() -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: as `rdfsbase` (f3 48 0f ae c8).
    let ok = catching_ud(|| unsafe {
        core::arch::asm!(".byte 0xf3, 0x48, 0x0f, 0xae, 0xc8", inout("rax") v, clobber_abi("C"))
    });
    ok.then_some(v)
}

/// `wrfsbase %rax`; false on #UD. guest-rt addresses nothing through FS.
pub fn wrfsbase(base: u64) -> bool {
    // SAFETY: `wrfsbase` only changes the FS base (f3 48 0f ae d0), which this runtime does
    // not use; a #UD is caught as above.
    catching_ud(|| unsafe {
        core::arch::asm!(".byte 0xf3, 0x48, 0x0f, 0xae, 0xd0", in("rax") base, clobber_abi("C"))
    })
}

/// `wrgsbase %rax`; false on #UD. guest-rt addresses nothing through GS.
pub fn wrgsbase(base: u64) -> bool {
    // SAFETY: as `wrfsbase` (f3 48 0f ae d8), for the GS base in effect.
    catching_ud(|| unsafe {
        core::arch::asm!(".byte 0xf3, 0x48, 0x0f, 0xae, 0xd8", in("rax") base, clobber_abi("C"))
    })
}
