//! CPUs, IOAPICs and interrupt overrides from the ACPI MADT, via the `acpi` crate.
//!
//! The `acpi` crate trusts table lengths and pointers, so [`discover`] first validates the
//! RSDP, the root table and the MADT with bounds-checked reads (`validate`), and only then lets
//! the crate walk them. Missing or malformed tables give an [`AcpiError`]; the caller falls
//! back to a single CPU. No heap is used.

mod handler;
#[cfg(test)]
mod tests;
mod validate;

use ::acpi::madt::{Madt, MadtEntry};
use ::acpi::AcpiTables;
use core::fmt;

pub use handler::DirectMapHandler;

/// Most CPUs recorded.
pub const MAX_CPUS: usize = 256;
/// Most IOAPICs recorded.
pub const MAX_IOAPICS: usize = 16;
/// Most interrupt source overrides recorded.
pub const MAX_OVERRIDES: usize = 16;
/// Most local APIC NMI entries recorded.
pub const MAX_LAPIC_NMIS: usize = 16;
/// Most MCFG (PCI ECAM) areas recorded.
pub const MAX_MCFG_AREAS: usize = 8;

/// A processor listed in the MADT (local APIC or local x2APIC entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// Local APIC ID (x2APIC ID for x2APIC entries).
    pub apic_id: u32,
    /// ACPI processor UID.
    pub acpi_id: u32,
    /// Usable now (flag bit 0). Disabled or hot-plug-only processors are `false`.
    pub enabled: bool,
    /// The boot processor: the first enabled entry by ACPI convention, or the one set with
    /// [`Platform::mark_bsp`].
    pub bsp: bool,
}

/// An I/O APIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    /// I/O APIC ID.
    pub id: u8,
    /// MMIO base address.
    pub paddr: u64,
    /// First global system interrupt it handles.
    pub gsi_base: u32,
}

/// Interrupt polarity of an override or NMI entry (MPS INTI flags bits 0–1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    /// As the bus specifies (ISA: active high).
    Bus,
    /// Active high.
    High,
    /// Active low.
    Low,
    /// The reserved encoding.
    Reserved,
}

/// Interrupt trigger mode of an override or NMI entry (MPS INTI flags bits 2–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// As the bus specifies (ISA: edge).
    Bus,
    /// Edge triggered.
    Edge,
    /// Level triggered.
    Level,
    /// The reserved encoding.
    Reserved,
}

/// Decodes MPS INTI flags.
pub fn decode_inti_flags(flags: u16) -> (Polarity, Trigger) {
    let p = match flags & 3 {
        0 => Polarity::Bus,
        1 => Polarity::High,
        3 => Polarity::Low,
        _ => Polarity::Reserved,
    };
    let t = match (flags >> 2) & 3 {
        0 => Trigger::Bus,
        1 => Trigger::Edge,
        3 => Trigger::Level,
        _ => Trigger::Reserved,
    };
    (p, t)
}

/// An ISA IRQ routed to a different GSI (or with different polarity/trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqOverride {
    /// ISA IRQ (bus 0).
    pub isa_irq: u8,
    /// Global system interrupt it arrives on.
    pub gsi: u32,
    /// Raw MPS INTI flags (see [`IrqOverride::polarity`], [`IrqOverride::trigger`]).
    pub flags: u16,
}

impl IrqOverride {
    /// Polarity from the flags.
    pub fn polarity(&self) -> Polarity {
        decode_inti_flags(self.flags).0
    }

    /// Trigger mode from the flags.
    pub fn trigger(&self) -> Trigger {
        decode_inti_flags(self.flags).1
    }
}

/// Which local APIC LINT pin carries NMI, for one or all processors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LapicNmi {
    /// ACPI processor UID, or `None` for all processors.
    pub acpi_id: Option<u32>,
    /// LINT pin (0 or 1).
    pub lint: u8,
    /// Raw MPS INTI flags.
    pub flags: u16,
}

/// The interrupt-controller topology described by the MADT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Local APIC MMIO base (after any address override entry).
    pub lapic_paddr: u64,
    /// The machine also has dual 8259 PICs (PCAT_COMPAT): mask them.
    pub pic_8259: bool,
    /// Processors in MADT order; APIC IDs are unique.
    pub cpus: heapless::Vec<Cpu, MAX_CPUS>,
    /// I/O APICs.
    pub ioapics: heapless::Vec<IoApic, MAX_IOAPICS>,
    /// ISA interrupt source overrides.
    pub overrides: heapless::Vec<IrqOverride, MAX_OVERRIDES>,
    /// Local APIC NMI wiring.
    pub lapic_nmis: heapless::Vec<LapicNmi, MAX_LAPIC_NMIS>,
    /// Entries that did not fit in the vectors above.
    pub dropped: u32,
    /// The ACPI PM timer's I/O port (from the FADT), if the firmware has one.
    pub pm_timer_port: Option<u16>,
    /// The MCFG's PCI ECAM areas: (base, segment, first bus, last bus).
    pub mcfg: heapless::Vec<(u64, u16, u8, u8), MAX_MCFG_AREAS>,
}

impl Platform {
    /// Marks the CPU with `apic_id` (read from the running BSP's local APIC) as the boot
    /// processor and clears the flag elsewhere. Returns `false` if no such CPU is listed.
    pub fn mark_bsp(&mut self, apic_id: u32) -> bool {
        if !self.cpus.iter().any(|c| c.apic_id == apic_id) {
            return false;
        }
        for c in self.cpus.iter_mut() {
            c.bsp = c.apic_id == apic_id;
        }
        true
    }

    /// Number of enabled processors.
    pub fn enabled_cpus(&self) -> usize {
        self.cpus.iter().filter(|c| c.enabled).count()
    }

    /// The GSI an ISA IRQ arrives on (identity unless overridden).
    pub fn isa_irq_to_gsi(&self, irq: u8) -> u32 {
        self.overrides
            .iter()
            .find(|o| o.isa_irq == irq)
            .map_or(u32::from(irq), |o| o.gsi)
    }

    fn add_cpu(&mut self, apic_id: u32, acpi_id: u32, flags: u32) {
        if self.cpus.iter().any(|c| c.apic_id == apic_id) {
            return;
        }
        let enabled = flags & 1 != 0;
        let bsp = enabled && !self.cpus.iter().any(|c| c.bsp);
        if self
            .cpus
            .push(Cpu {
                apic_id,
                acpi_id,
                enabled,
                bsp,
            })
            .is_err()
        {
            self.dropped = self.dropped.saturating_add(1);
        }
    }
}

/// Where the RSDP is, if the boot loader said.
#[derive(Debug, Clone, Copy)]
pub enum RsdpHint<'a> {
    /// A copy of the RSDP bytes (Multiboot 2 ACPI tags).
    Copy(&'a [u8]),
    /// The RSDP's physical address (PVH start info, EFI).
    Paddr(u64),
}

/// Why the MADT could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP was given and the BIOS areas contain none.
    NoRsdp,
    /// RSDP shorter than its revision requires.
    RsdpTruncated,
    /// RSDP signature is not "RSD PTR ".
    RsdpSignature,
    /// RSDP checksum or extended checksum is wrong.
    RsdpChecksum,
    /// A structure could not be read.
    Unreadable {
        /// What was being read.
        what: &'static str,
        /// Where.
        paddr: u64,
    },
    /// A table has the wrong signature.
    Signature {
        /// The table expected.
        expected: &'static str,
        /// Where.
        paddr: u64,
    },
    /// A table length is impossible.
    Length {
        /// Which table.
        table: &'static str,
        /// The length field.
        len: u32,
    },
    /// OEM ID fields are not valid text.
    OemId {
        /// Which table.
        table: &'static str,
    },
    /// A table's bytes do not sum to zero.
    Checksum {
        /// Which table.
        table: &'static str,
        /// Where.
        paddr: u64,
    },
    /// The root table lists no MADT ("APIC").
    NoMadt,
    /// A MADT entry is too short or runs past the table.
    MadtEntry {
        /// Byte offset in the MADT.
        offset: u32,
        /// Entry type.
        ty: u8,
        /// Entry length field.
        len: u8,
    },
    /// The MADT lists no enabled processor.
    NoCpus,
    /// The `acpi` crate rejected tables that passed validation.
    Library(&'static str),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::NoRsdp => write!(f, "no ACPI RSDP found"),
            AcpiError::RsdpTruncated => write!(f, "ACPI RSDP is truncated"),
            AcpiError::RsdpSignature => write!(f, "ACPI RSDP has a bad signature"),
            AcpiError::RsdpChecksum => write!(f, "ACPI RSDP has a bad checksum"),
            AcpiError::Unreadable { what, paddr } => {
                write!(f, "cannot read ACPI {what} at {paddr:#x}")
            }
            AcpiError::Signature { expected, paddr } => {
                write!(f, "ACPI table at {paddr:#x} is not the expected {expected}")
            }
            AcpiError::Length { table, len } => {
                write!(f, "ACPI {table} has an invalid length {len}")
            }
            AcpiError::OemId { table } => write!(f, "ACPI {table} has a malformed OEM ID"),
            AcpiError::Checksum { table, paddr } => {
                write!(f, "ACPI {table} at {paddr:#x} has a bad checksum")
            }
            AcpiError::NoMadt => write!(f, "no ACPI MADT (APIC table)"),
            AcpiError::MadtEntry { offset, ty, len } => write!(
                f,
                "malformed MADT entry at offset {offset} (type {ty}, length {len})"
            ),
            AcpiError::NoCpus => write!(f, "the MADT lists no enabled processor"),
            AcpiError::Library(what) => write!(f, "acpi crate: {what}"),
        }
    }
}

fn library_error(e: ::acpi::AcpiError) -> AcpiError {
    use ::acpi::AcpiError as E;
    AcpiError::Library(match e {
        E::TableMissing(_) => "table missing",
        E::SdtInvalidChecksum(_) => "table checksum",
        E::SdtInvalidSignature(_) => "table signature",
        E::SdtInvalidOemId(_) | E::SdtInvalidTableId(_) => "table OEM id",
        E::InvalidMadt(_) => "invalid MADT",
        _ => "rejected the tables",
    })
}

/// Finds the RSDP: the loader's hint if it is valid, else the BIOS areas.
fn locate_rsdp(
    h: &DirectMapHandler,
    hint: Option<RsdpHint<'_>>,
) -> Result<validate::RsdpInfo, AcpiError> {
    let hinted = match hint {
        Some(RsdpHint::Copy(bytes)) => Some(validate::check_rsdp(bytes)),
        Some(RsdpHint::Paddr(p)) => Some(validate::read_rsdp(h, p)),
        None => None,
    };
    match hinted {
        Some(Ok(info)) => Ok(info),
        Some(Err(e)) => {
            log::warn!("boot loader's ACPI RSDP is unusable ({e}); searching the BIOS areas");
            match validate::find_rsdp_bios(h) {
                Some(p) => validate::read_rsdp(h, p),
                None => Err(e),
            }
        }
        None => match validate::find_rsdp_bios(h) {
            Some(p) => validate::read_rsdp(h, p),
            None => Err(AcpiError::NoRsdp),
        },
    }
}

/// Locates and parses the MADT. `handler` must cover the tables (all of low memory and the
/// RSDP/root/MADT pages: the boot direct map does).
pub fn discover(
    handler: &DirectMapHandler,
    hint: Option<RsdpHint<'_>>,
) -> Result<Platform, AcpiError> {
    let rsdp = locate_rsdp(handler, hint)?;
    let (root, xsdt) = if rsdp.revision >= 2 && rsdp.xsdt != 0 {
        (rsdp.xsdt, true)
    } else {
        (u64::from(rsdp.rsdt), false)
    };
    let madt_paddr = validate::check_root(handler, root, xsdt)?;
    let madt_len = validate::check_sdt(handler, madt_paddr, b"APIC")?;
    validate::check_madt_entries(handler, madt_paddr, madt_len)?;

    // SAFETY: `check_root` validated the root table and the headers of every table it lists
    // (the MADT in full) through `handler`, so the crate reads only validated memory.
    let tables =
        unsafe { AcpiTables::from_rsdt(*handler, if xsdt { 2 } else { 0 }, root as usize) }
            .map_err(library_error)?;
    let madt = tables.find_table::<Madt>().map_err(library_error)?;
    if madt.physical_start() as u64 != madt_paddr {
        return Err(AcpiError::Library(
            "found a different MADT than the validated one",
        ));
    }
    let madt = madt.get();
    let mut p = Platform {
        lapic_paddr: u64::from(madt.local_apic_address),
        pic_8259: madt.supports_8259(),
        cpus: heapless::Vec::new(),
        ioapics: heapless::Vec::new(),
        overrides: heapless::Vec::new(),
        lapic_nmis: heapless::Vec::new(),
        dropped: 0,
        pm_timer_port: validate::find_sdt(handler, root, xsdt, b"FACP").and_then(|f| {
            let len = validate::check_sdt(handler, f, b"FACP").ok()?;
            validate::fadt_pm_timer(handler, f, len)
        }),
        mcfg: validate::find_sdt(handler, root, xsdt, b"MCFG")
            .and_then(|m| {
                let len = validate::check_sdt(handler, m, b"MCFG").ok()?;
                Some(validate::mcfg_areas(handler, m, len))
            })
            .unwrap_or_default(),
    };
    // `check_madt_entries` made sure the entries tile the table and each is long enough.
    for entry in madt.entries() {
        let full = match entry {
            MadtEntry::LocalApic(e) => {
                p.add_cpu(u32::from(e.apic_id), u32::from(e.processor_id), e.flags);
                false
            }
            MadtEntry::LocalX2Apic(e) => {
                p.add_cpu(e.x2apic_id, e.processor_uid, e.flags);
                false
            }
            MadtEntry::IoApic(e) => p
                .ioapics
                .push(IoApic {
                    id: e.io_apic_id,
                    paddr: u64::from(e.io_apic_address),
                    gsi_base: e.global_system_interrupt_base,
                })
                .is_err(),
            MadtEntry::InterruptSourceOverride(e) if e.bus == 0 => p
                .overrides
                .push(IrqOverride {
                    isa_irq: e.irq,
                    gsi: e.global_system_interrupt,
                    flags: e.flags,
                })
                .is_err(),
            MadtEntry::LocalApicNmi(e) => p
                .lapic_nmis
                .push(LapicNmi {
                    acpi_id: (e.processor_id != 0xff).then_some(u32::from(e.processor_id)),
                    lint: e.nmi_line,
                    flags: e.flags,
                })
                .is_err(),
            MadtEntry::X2ApicNmi(e) => p
                .lapic_nmis
                .push(LapicNmi {
                    acpi_id: (e.processor_uid != u32::MAX).then_some(e.processor_uid),
                    lint: e.nmi_line,
                    flags: e.flags,
                })
                .is_err(),
            MadtEntry::LocalApicAddressOverride(e) => {
                p.lapic_paddr = e.local_apic_address;
                false
            }
            _ => false,
        };
        if full {
            p.dropped = p.dropped.saturating_add(1);
        }
    }
    if p.dropped > 0 {
        log::warn!("MADT: {} entries did not fit and were dropped", p.dropped);
    }
    if p.enabled_cpus() == 0 {
        return Err(AcpiError::NoCpus);
    }
    Ok(p)
}
