//! I/O APIC routing, from the MADT's I/O APICs and interrupt source overrides: the serial
//! port's IRQ 4 to one CPU, and the GSIs guests bind (their pins programmed from committed
//! effects, all delivered to the lockstep leader).

use crate::acpi::{Platform, Polarity, Trigger};
use crate::layout::phys_to_virt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::Mutex;

/// Where one ISA IRQ arrives: the I/O APIC's MMIO base, the pin on it, and its signalling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaRoute {
    /// MMIO base of the I/O APIC handling the GSI.
    pub ioapic_paddr: u64,
    /// Input pin on that I/O APIC (GSI minus its base).
    pub pin: u32,
    /// Active-low input.
    pub active_low: bool,
    /// Level-triggered input.
    pub level: bool,
}

/// Where ISA IRQ `irq` arrives on `platform`: an override's GSI and flags, else GSI = IRQ,
/// active high, edge (the ISA defaults). None if no I/O APIC handles the GSI.
pub fn isa_route(platform: &Platform, irq: u8) -> Option<IsaRoute> {
    let (gsi, active_low, level) = match platform.overrides.iter().find(|o| o.isa_irq == irq) {
        Some(o) => (
            o.gsi,
            o.polarity() == Polarity::Low,
            o.trigger() == Trigger::Level,
        ),
        None => (u32::from(irq), false, false),
    };
    // The I/O APIC with the highest base not above the GSI (each has at most 240 pins).
    let io = platform
        .ioapics
        .iter()
        .filter(|a| a.gsi_base <= gsi && gsi - a.gsi_base < 240)
        .max_by_key(|a| a.gsi_base)?;
    Some(IsaRoute {
        ioapic_paddr: io.paddr,
        pin: gsi - io.gsi_base,
        active_low,
        level,
    })
}

/// The redirection-table entry delivering `route` as fixed `vector` to physical APIC `dest`.
pub fn redirection_entry(route: &IsaRoute, vector: u8, dest: u32) -> u64 {
    let mut low = u64::from(vector); // fixed delivery, physical destination, unmasked
    if route.active_low {
        low |= 1 << 13;
    }
    if route.level {
        low |= 1 << 15;
    }
    low | (u64::from(dest & 0xff) << 56)
}

/// MMIO bases of the machine's I/O APICs (MADT order), recorded at boot.
static IOAPICS: Mutex<heapless::Vec<u64, { crate::acpi::MAX_IOAPICS }>> =
    Mutex::new(heapless::Vec::new());
/// Each I/O APIC's (MMIO base, first GSI, pins), recorded at boot.
static GSI_BLOCKS: Mutex<heapless::Vec<(u64, u32, u32), { crate::acpi::MAX_IOAPICS }>> =
    Mutex::new(heapless::Vec::new());
/// GSIs whose pins [`program_gsi`] may drive.
pub const MAX_GSIS: usize = 128;
/// The redirection entry last programmed for each GSI (0: never; bit 63 of the stored word
/// marks it written, the destination is applied at write time).
static GSI_ENTRIES: [AtomicU64; MAX_GSIS] = [const { AtomicU64::new(0) }; MAX_GSIS];
/// The physical APIC id guest GSIs are delivered to (the lockstep leader).
static GSI_TARGET: AtomicU32 = AtomicU32::new(0);
/// Boot signalling of GSIs 0..16, two bits each: level, active low.
static LEGACY: AtomicU32 = AtomicU32::new(0);
/// The GSI of ISA IRQ 4 (COM1), u32::MAX if unknown.
static COM1_GSI: AtomicU32 = AtomicU32::new(u32::MAX);
/// Serialises every IOREGSEL-then-IOWIN access (Xen's `ioapic_lock`).
static IOAPIC_LOCK: Mutex<()> = Mutex::new(());

/// Records the MMIO bases of `platform`'s I/O APICs.
pub fn record_ioapics(platform: &Platform) {
    let mut v = IOAPICS.lock();
    v.clear();
    for a in platform.ioapics.iter() {
        let _ = v.push(a.paddr);
    }
    drop(v);
    let mut legacy = 0;
    for gsi in 0..16 {
        let (level, low) = legacy_signalling(platform, gsi);
        legacy |= (u32::from(level) | (u32::from(low) << 1)) << (2 * gsi);
    }
    LEGACY.store(legacy, Ordering::Relaxed);
    let mut b = GSI_BLOCKS.lock();
    b.clear();
    for (i, a) in platform.ioapics.iter().enumerate() {
        // Version register: bits 16..24 hold the highest redirection entry.
        let pins = read_register(i, 1).map_or(0, |v| ((v >> 16) & 0xff) + 1);
        let _ = b.push((a.paddr, a.gsi_base, pins));
    }
}

/// GSIs the I/O APICs have pins for (the highest GSI + 1), at most [`MAX_GSIS`].
pub fn nr_gsis() -> u32 {
    let n = GSI_BLOCKS
        .lock()
        .iter()
        .map(|(_, base, pins)| base + pins)
        .max()
        .unwrap_or(0);
    n.min(MAX_GSIS as u32)
}

/// The I/O APIC base and pin of `gsi`.
fn gsi_pin(gsi: u32) -> Option<(u64, u32)> {
    GSI_BLOCKS
        .lock()
        .iter()
        .find(|(_, base, pins)| gsi >= *base && gsi - base < *pins)
        .map(|(paddr, base, _)| (*paddr, gsi - base))
}

/// Boot signalling of GSI `gsi` < 16 as recorded: bit 0 level, bit 1 active low.
pub fn legacy_flags(gsi: u32) -> u8 {
    ((LEGACY.load(Ordering::Relaxed) >> (2 * (gsi & 15))) & 3) as u8
}

/// The GSI ISA IRQ 4 (COM1) arrives on, if the MADT routes it.
pub fn com1_gsi() -> Option<u32> {
    Some(COM1_GSI.load(Ordering::Relaxed)).filter(|g| *g != u32::MAX)
}

/// The signalling of GSI `gsi` < 16 at boot: (level, active low) from an interrupt source
/// override naming it, else the ISA defaults (edge, active high).
pub fn legacy_signalling(platform: &Platform, gsi: u32) -> (bool, bool) {
    match platform.overrides.iter().find(|o| o.gsi == gsi) {
        Some(o) => (o.trigger() == Trigger::Level, o.polarity() == Polarity::Low),
        None => (false, false),
    }
}

/// Programs GSI `gsi`'s pin: fixed `vector` to the GSI target CPU, with this signalling,
/// masked or not. Does nothing for a GSI no I/O APIC has.
pub fn program_gsi(gsi: u32, vector: u8, level: bool, active_low: bool, unmasked: bool) {
    // Interrupts off throughout: the GSI interrupt handler ([`mask_gsi`]) takes the same
    // locks.
    crate::cpu::without_interrupts(|| program_gsi_locked(gsi, vector, level, active_low, unmasked));
}

fn program_gsi_locked(gsi: u32, vector: u8, level: bool, active_low: bool, unmasked: bool) {
    let Some(slot) = GSI_ENTRIES.get(gsi as usize) else {
        return;
    };
    let Some((paddr, pin)) = gsi_pin(gsi) else {
        return;
    };
    let route = IsaRoute {
        ioapic_paddr: paddr,
        pin,
        active_low,
        level,
    };
    let mut entry = redirection_entry(&route, vector, 0) & !(0xffu64 << 56);
    if !unmasked {
        entry |= 1 << 16;
    }
    slot.store(entry | (1 << 63), Ordering::Relaxed);
    write_entry(paddr, pin, entry, GSI_TARGET.load(Ordering::Relaxed));
}

/// Writes redirection entry `pin` (destination `dest`): masked while the halves change.
/// Called with interrupts off.
fn write_entry(paddr: u64, pin: u32, entry: u64, dest: u32) {
    let entry = entry | (u64::from(dest & 0xff) << 56);
    let reg = 0x10 + 2 * pin;
    let _g = IOAPIC_LOCK.lock();
    write_reg(paddr, reg, 1 << 16);
    write_reg(paddr, reg + 1, (entry >> 32) as u32);
    write_reg(paddr, reg, entry as u32);
}

/// Whether GSI `gsi` was last programmed level-triggered.
pub fn gsi_is_level(gsi: u32) -> bool {
    GSI_ENTRIES
        .get(gsi as usize)
        .is_some_and(|e| e.load(Ordering::Relaxed) & (1 << 15) != 0)
}

/// Masks GSI `gsi`'s pin (a level interrupt taken, until the guests' EOI programs it again).
/// Runs in the interrupt handler; every other holder of the locks it takes keeps interrupts
/// off.
pub fn mask_gsi(gsi: u32) {
    let Some(slot) = GSI_ENTRIES.get(gsi as usize) else {
        return;
    };
    let e = slot.load(Ordering::Relaxed);
    if e & (1 << 63) == 0 {
        return;
    }
    let Some((paddr, pin)) = gsi_pin(gsi) else {
        return;
    };
    let _g = IOAPIC_LOCK.lock();
    write_reg(paddr, 0x10 + 2 * pin, (e as u32) | (1 << 16));
}

/// Delivers guest GSIs to physical APIC `apic_id` from now on, moving the pins already
/// programmed (a new lockstep leader).
pub fn set_gsi_target(apic_id: u32) {
    GSI_TARGET.store(apic_id, Ordering::Relaxed);
    crate::cpu::without_interrupts(|| {
        for (gsi, slot) in GSI_ENTRIES.iter().enumerate() {
            let e = slot.load(Ordering::Relaxed);
            if e & (1 << 63) == 0 {
                continue;
            }
            if let Some((paddr, pin)) = gsi_pin(gsi as u32) {
                write_entry(paddr, pin, e & !(1 << 63), apic_id);
            }
        }
    });
}

/// The MMIO base of the `index`th I/O APIC, if there is one.
pub fn ioapic_base(index: usize) -> Option<u64> {
    IOAPICS.lock().get(index).copied()
}

/// Reads register `reg` (IOREGSEL takes its low byte) of the `index`th I/O APIC, for dom0's
/// `PHYSDEVOP_apic_read` (Xen's `ioapic_guest_read`).
pub fn read_register(index: usize, reg: u32) -> Option<u32> {
    let base = ioapic_base(index)?;
    let va = phys_to_virt(base);
    // Interrupts off while the lock is held: a GSI's interrupt handler takes it too.
    let v = crate::cpu::without_interrupts(|| {
        let _g = IOAPIC_LOCK.lock();
        // SAFETY: `base` is an I/O APIC's MMIO page from the MADT, inside the direct map
        // (which covers the low 4 GiB); IOREGSEL (offset 0) selects a register, IOWIN (0x10)
        // reads it, under the lock every other IOREGSEL user takes.
        unsafe {
            core::ptr::write_volatile(va as *mut u32, reg & 0xff);
            core::ptr::read_volatile((va + 0x10) as *const u32)
        }
    });
    Some(v)
}

/// The serial port's route, recorded at boot from the MADT.
static COM1_ROUTE: Mutex<Option<IsaRoute>> = Mutex::new(None);

/// Records where ISA IRQ 4 (COM1) arrives on this machine.
pub fn record_com1(platform: &Platform) {
    *COM1_ROUTE.lock() = isa_route(platform, 4);
    let gsi = platform
        .overrides
        .iter()
        .find(|o| o.isa_irq == 4)
        .map_or(4, |o| o.gsi);
    COM1_GSI.store(gsi, Ordering::Relaxed);
}

fn write_reg(base: u64, reg: u32, value: u32) {
    let va = phys_to_virt(base);
    // SAFETY: `base` is an I/O APIC's MMIO page from the MADT, inside the direct map (which
    // covers the low 4 GiB); IOREGSEL (offset 0) selects a register, IOWIN (0x10) writes it.
    unsafe {
        core::ptr::write_volatile(va as *mut u32, reg);
        core::ptr::write_volatile((va + 0x10) as *mut u32, value);
    }
}

/// Routes COM1's interrupt to CPU `apic_id` as `vector`; false if the MADT gave no route.
pub fn route_com1(vector: u8, apic_id: u32) -> bool {
    let Some(route) = *COM1_ROUTE.lock() else {
        return false;
    };
    let entry = redirection_entry(&route, vector, apic_id);
    let reg = 0x10 + 2 * route.pin;
    crate::cpu::without_interrupts(|| {
        let _g = IOAPIC_LOCK.lock();
        // Masked while the halves change, then the low half unmasks it.
        write_reg(route.ioapic_paddr, reg, 1 << 16);
        write_reg(route.ioapic_paddr, reg + 1, (entry >> 32) as u32);
        write_reg(route.ioapic_paddr, reg, entry as u32);
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::{IoApic, IrqOverride};

    fn platform(overrides: &[IrqOverride]) -> Platform {
        let mut p = Platform {
            lapic_paddr: 0xfee0_0000,
            pic_8259: true,
            cpus: heapless::Vec::new(),
            ioapics: heapless::Vec::new(),
            overrides: heapless::Vec::new(),
            lapic_nmis: heapless::Vec::new(),
            dropped: 0,
            pm_timer_port: None,
            mcfg: heapless::Vec::new(),
        };
        p.ioapics
            .push(IoApic {
                id: 0,
                paddr: 0xfec0_0000,
                gsi_base: 0,
            })
            .expect("room");
        for o in overrides {
            p.overrides.push(*o).expect("room");
        }
        p
    }

    #[test]
    fn isa_defaults_without_an_override() {
        let r = isa_route(&platform(&[]), 4).expect("routed");
        assert_eq!(
            r,
            IsaRoute {
                ioapic_paddr: 0xfec0_0000,
                pin: 4,
                active_low: false,
                level: false
            }
        );
        assert_eq!(redirection_entry(&r, 0x24, 1), 0x0100_0000_0000_0024);
    }

    #[test]
    fn overrides_move_the_pin_and_signalling() {
        // ISA IRQ 4 on GSI 20, active low (flags 0b11), level (0b11 << 2).
        let o = IrqOverride {
            isa_irq: 4,
            gsi: 20,
            flags: 0b1111,
        };
        let r = isa_route(&platform(&[o]), 4).expect("routed");
        assert_eq!((r.pin, r.active_low, r.level), (20, true, true));
        assert_eq!(
            redirection_entry(&r, 0x24, 3),
            0x0300_0000_0000_0024 | (1 << 13) | (1 << 15)
        );
    }

    #[test]
    fn no_ioapic_no_route() {
        let mut p = platform(&[]);
        p.ioapics.clear();
        assert_eq!(isa_route(&p, 4), None);
    }
}
