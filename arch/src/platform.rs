//! Machine-level controls: reset, the isa-debug-exit test device, the legacy PIC, the CMOS/RTC,
//! the ACPI PM timer's port.

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

/// The ACPI PM timer's I/O port plus one (0: none), from the FADT.
static PM_TIMER_PORT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Records the ACPI PM timer's I/O port the firmware tables name (Xen uses that timer and
/// denies dom0 its ports; dom0 gets the same answer here).
pub fn record_pm_timer(port: Option<u16>) {
    let v = port.map_or(0, |p| u32::from(p) + 1);
    PM_TIMER_PORT.store(v, core::sync::atomic::Ordering::Relaxed);
}

/// The MCFG's PCI ECAM areas, recorded at boot.
static MCFG: spin::Mutex<heapless::Vec<(u64, u16, u8, u8), { crate::acpi::MAX_MCFG_AREAS }>> =
    spin::Mutex::new(heapless::Vec::new());

/// Records the MCFG's PCI ECAM areas: (base, segment, first bus, last bus).
pub fn record_mcfg(areas: &[(u64, u16, u8, u8)]) {
    let mut m = MCFG.lock();
    m.clear();
    for a in areas {
        let _ = m.push(*a);
    }
}

/// The MCFG's PCI ECAM areas recorded at boot.
pub fn mcfg_areas() -> alloc::vec::Vec<(u64, u16, u8, u8)> {
    MCFG.lock().iter().copied().collect()
}

/// ACPI processor UIDs of the MADT's enabled processors, by local APIC id.
static ACPI_IDS: spin::Mutex<heapless::Vec<(u32, u32), { crate::percpu::MAX_CPUS }>> =
    spin::Mutex::new(heapless::Vec::new());

/// Records the (local APIC id, ACPI processor UID) pairs of the MADT's processors.
pub fn record_acpi_ids(cpus: impl IntoIterator<Item = (u32, u32)>) {
    let mut ids = ACPI_IDS.lock();
    ids.clear();
    for c in cpus {
        if ids.push(c).is_err() {
            break;
        }
    }
}

/// The ACPI processor UID of the CPU with local APIC id `apic_id` (the APIC id itself when
/// the MADT did not name it).
pub fn acpi_id_of(apic_id: u32) -> u32 {
    ACPI_IDS
        .lock()
        .iter()
        .find(|c| c.0 == apic_id)
        .map_or(apic_id, |c| c.1)
}

/// The ACPI PM timer's I/O port, if the firmware named one.
pub fn pm_timer_port() -> Option<u16> {
    let v = PM_TIMER_PORT.load(core::sync::atomic::Ordering::Relaxed);
    (v != 0).then(|| (v - 1) as u16)
}

/// Serialises every index-then-data access to the CMOS/RTC (the boot's wall-clock read and
/// dom0's emulated accesses on any leader CPU).
static CMOS_LOCK: spin::Mutex<()> = spin::Mutex::new(());

fn cmos(reg: u8) -> u8 {
    cmos_read(reg)
}

/// Reads CMOS/RTC register `index` (its NMI-disable bit cleared), selecting it at 0x70 and
/// reading 0x71 under the CMOS lock (Xen's `rtc_guest_read`).
pub fn cmos_read(index: u8) -> u8 {
    let _g = CMOS_LOCK.lock();
    outb(0x70, index & 0x7f);
    inb(0x71)
}

/// The keyboard shift flags in the BIOS data area (byte 0x417), what int 16h AH=02 returns
/// (Xen reads them through the BIOS at boot for `XEN_FW_KBD_SHIFT_FLAGS`).
pub fn bios_kbd_shift_flags() -> u8 {
    let v = crate::layout::phys_to_virt(0x417) as *const u8;
    // SAFETY: the direct map covers [0, 4 GiB) linearly in the boot and hypervisor page
    // tables; the BIOS data area is firmware memory below 1 MiB the frame allocator never
    // hands out; a byte read has no alignment requirement.
    unsafe { core::ptr::read_volatile(v) }
}

/// Writes `value` to CMOS/RTC register `index` (its NMI-disable bit cleared) under the CMOS
/// lock (Xen's `rtc_guest_write`).
pub fn cmos_write(index: u8, value: u8) {
    let _g = CMOS_LOCK.lock();
    outb(0x70, index & 0x7f);
    outb(0x71, value);
}

/// Wall-clock time from the CMOS RTC, in seconds since 1970-01-01 UTC (the RTC is assumed to
/// hold UTC, as QEMU's does by default).
pub fn rtc_unix_time() -> u64 {
    // Wait out an update in progress (bounded), then read twice until stable.
    let read = || {
        for _ in 0..100_000 {
            if cmos(0x0A) & 0x80 == 0 {
                break;
            }
        }
        [
            cmos(0x00),
            cmos(0x02),
            cmos(0x04),
            cmos(0x07),
            cmos(0x08),
            cmos(0x09),
            cmos(0x32),
        ]
    };
    let mut r = read();
    for _ in 0..5 {
        let again = read();
        if again == r {
            break;
        }
        r = again;
    }
    let bcd = cmos(0x0B) & 0x04 == 0;
    let conv = |v: u8| {
        if bcd {
            u64::from((v & 0x0F) + (v >> 4) * 10)
        } else {
            u64::from(v)
        }
    };
    let (sec, min, hour_raw, day, month, year) = (
        conv(r[0]),
        conv(r[1]),
        r[2],
        conv(r[3]),
        conv(r[4]),
        conv(r[5]),
    );
    let pm = hour_raw & 0x80 != 0;
    let mut hour = conv(hour_raw & 0x7F);
    if cmos(0x0B) & 0x02 == 0 {
        hour = (hour % 12) + if pm { 12 } else { 0 };
    }
    let century = if r[6] != 0 && conv(r[6]) >= 19 {
        conv(r[6])
    } else {
        20
    };
    let y = century * 100 + year;
    days_from_civil(y, month.clamp(1, 12), day.clamp(1, 31)) * 86_400 + hour * 3600 + min * 60 + sec
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::days_from_civil;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 25), 20_782);
    }
}
