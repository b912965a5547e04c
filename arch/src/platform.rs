//! Machine-level controls: reset, the isa-debug-exit test device, the legacy PIC.

use crate::cpu::{inb, outb, outl};

/// I/O port of QEMU's isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xF4;
/// Value written for a passing self-test (QEMU exits with status 33).
pub const DEBUG_EXIT_PASS: u32 = 0x10;
/// Value written for a failing self-test (QEMU exits with status 35).
pub const DEBUG_EXIT_FAIL: u32 = 0x11;

/// Exits QEMU with status `(code << 1) | 1`; on a machine without the device, halts.
pub fn debug_exit(code: u32) -> ! {
    outl(DEBUG_EXIT_PORT, code);
    crate::cpu::halt_forever()
}

/// Resets the machine: the 0xCF9 reset control, then the keyboard controller, then a
/// triple fault.
pub fn reset() -> ! {
    outb(0xCF9, 0x02);
    outb(0xCF9, 0x06);
    for _ in 0..100_000 {
        if inb(0x64) & 0x02 == 0 {
            break;
        }
    }
    outb(0x64, 0xFE);
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let null = Pointer { limit: 0, base: 0 };
    // SAFETY: deliberately loads an empty IDT and raises an exception: the resulting triple
    // fault resets the machine, which is what the caller asked for.
    unsafe { core::arch::asm!("lidt [{}]", "int3", in(reg) &null) };
    crate::cpu::halt_forever()
}

/// Masks every line of both legacy 8259 PICs (the LAPIC/IOAPIC are used instead).
pub fn mask_legacy_pic() {
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
}
