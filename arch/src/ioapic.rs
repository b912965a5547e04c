//! I/O APIC routing of ISA interrupts (the serial port's IRQ 4) to one CPU, from the MADT's
//! I/O APICs and interrupt source overrides.

use crate::acpi::{Platform, Polarity, Trigger};
use crate::layout::phys_to_virt;
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
/// Serialises every IOREGSEL-then-IOWIN access (Xen's `ioapic_lock`).
static IOAPIC_LOCK: Mutex<()> = Mutex::new(());

/// Records the MMIO bases of `platform`'s I/O APICs.
pub fn record_ioapics(platform: &Platform) {
    let mut v = IOAPICS.lock();
    v.clear();
    for a in platform.ioapics.iter() {
        let _ = v.push(a.paddr);
    }
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
    let _g = IOAPIC_LOCK.lock();
    // SAFETY: `base` is an I/O APIC's MMIO page from the MADT, inside the direct map (which
    // covers the low 4 GiB); IOREGSEL (offset 0) selects a register, IOWIN (0x10) reads it,
    // under the lock every other IOREGSEL user takes.
    let v = unsafe {
        core::ptr::write_volatile(va as *mut u32, reg & 0xff);
        core::ptr::read_volatile((va + 0x10) as *const u32)
    };
    Some(v)
}

/// The serial port's route, recorded at boot from the MADT.
static COM1_ROUTE: Mutex<Option<IsaRoute>> = Mutex::new(None);

/// Records where ISA IRQ 4 (COM1) arrives on this machine.
pub fn record_com1(platform: &Platform) {
    *COM1_ROUTE.lock() = isa_route(platform, 4);
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
