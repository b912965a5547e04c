//! ACPI tests over synthetic tables in a fake physical address space backed by a `Vec`.

use super::*;
use alloc::vec;
use alloc::vec::Vec;
use std::cell::Cell;

std::thread_local! {
    static BASE: Cell<u64> = const { Cell::new(0) };
}

/// The fake direct map: physical `p` lives at `BASE + p` (the current test's buffer).
fn p2v(p: u64) -> u64 {
    BASE.with(|b| b.get()) + p
}

const SPACE: usize = 0x11_0000;
const RSDP_AT: u64 = 0xF_0010;
const XSDT_AT: u64 = 0x1000;
const RSDT_AT: u64 = 0x1800;
const FACP_AT: u64 = 0x1100;
const MADT_AT: u64 = 0x2000;

struct Fake {
    mem: Vec<u8>,
}

fn checksum_fix(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let s = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    bytes[at] = 0u8.wrapping_sub(s);
}

fn sdt(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 36];
    t[..4].copy_from_slice(sig);
    t[4..8].copy_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t[8] = 1;
    t[10..16].copy_from_slice(b"DUALV ");
    t[16..24].copy_from_slice(b"SYNTHETC");
    t.extend_from_slice(body);
    checksum_fix(&mut t, 9);
    t
}

fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> [u8; 36] {
    let mut r = [0u8; 36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"DUALV ");
    r[15] = revision;
    r[16..20].copy_from_slice(&rsdt.to_le_bytes());
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    checksum_fix(&mut r[..20], 8);
    checksum_fix(&mut r, 32);
    r
}

fn lapic(acpi_id: u8, apic_id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![0, 8, acpi_id, apic_id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn x2apic(apic_id: u32, uid: u32, flags: u32) -> Vec<u8> {
    let mut e = vec![9, 16, 0, 0];
    e.extend_from_slice(&apic_id.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&uid.to_le_bytes());
    e
}

fn ioapic(id: u8, addr: u32, gsi: u32) -> Vec<u8> {
    let mut e = vec![1, 12, id, 0];
    e.extend_from_slice(&addr.to_le_bytes());
    e.extend_from_slice(&gsi.to_le_bytes());
    e
}

fn iso(irq: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut e = vec![2, 10, 0, irq];
    e.extend_from_slice(&gsi.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn madt_body(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for e in entries {
        b.extend_from_slice(e);
    }
    b
}

/// QEMU-like MADT: 4 CPUs, one IOAPIC, IRQ0→GSI2 and a level-triggered IRQ9, LINT1 NMI.
fn standard_entries() -> Vec<Vec<u8>> {
    vec![
        lapic(0, 0, 1),
        lapic(1, 1, 1),
        lapic(2, 2, 1),
        lapic(3, 3, 1),
        ioapic(0, 0xFEC0_0000, 0),
        iso(0, 2, 0),
        iso(9, 9, 0xd),
        vec![4, 6, 0xff, 5, 0, 1],
    ]
}

impl Fake {
    /// RSDP (rev 2) in the BIOS area, XSDT and RSDT listing a FACP and the MADT.
    fn standard() -> Self {
        Self::with_madt(&madt_body(&standard_entries()))
    }

    fn with_madt(body: &[u8]) -> Self {
        let mut f = Fake {
            mem: vec![0u8; SPACE],
        };
        f.put(RSDP_AT, &rsdp(2, RSDT_AT as u32, XSDT_AT));
        let mut x = Vec::new();
        x.extend_from_slice(&FACP_AT.to_le_bytes());
        x.extend_from_slice(&MADT_AT.to_le_bytes());
        f.put(XSDT_AT, &sdt(b"XSDT", &x));
        let mut r = Vec::new();
        r.extend_from_slice(&(FACP_AT as u32).to_le_bytes());
        r.extend_from_slice(&(MADT_AT as u32).to_le_bytes());
        f.put(RSDT_AT, &sdt(b"RSDT", &r));
        f.put(FACP_AT, &sdt(b"FACP", &[0u8; 80]));
        f.put(MADT_AT, &sdt(b"APIC", body));
        f
    }

    fn put(&mut self, p: u64, bytes: &[u8]) {
        self.mem[p as usize..p as usize + bytes.len()].copy_from_slice(bytes);
    }

    fn put32(&mut self, p: u64, v: u32) {
        self.put(p, &v.to_le_bytes());
    }

    /// Recomputes the checksum of the table at `p` after an edit.
    fn fix(&mut self, p: u64) {
        let len = u32::from_le_bytes(self.mem[p as usize + 4..p as usize + 8].try_into().unwrap());
        let t = &mut self.mem[p as usize..p as usize + len as usize];
        checksum_fix(t, 9);
    }

    fn handler(&self) -> DirectMapHandler {
        BASE.with(|b| b.set(self.mem.as_ptr() as u64));
        // SAFETY: p2v maps [0, SPACE) linearly onto this Fake's live buffer, which outlives
        // every use of the handler in the test.
        unsafe { DirectMapHandler::new(p2v, 0, SPACE as u64) }
    }

    fn discover(&self, hint: Option<RsdpHint<'_>>) -> Result<Platform, AcpiError> {
        discover(&self.handler(), hint)
    }
}

fn check_standard(p: &Platform) {
    assert_eq!(p.lapic_paddr, 0xFEE0_0000);
    assert!(p.pic_8259);
    assert_eq!(p.cpus.len(), 4);
    for (i, c) in p.cpus.iter().enumerate() {
        assert_eq!(
            (c.apic_id, c.acpi_id, c.enabled, c.bsp),
            (i as u32, i as u32, true, i == 0)
        );
    }
    assert_eq!(
        p.ioapics.as_slice(),
        &[IoApic {
            id: 0,
            paddr: 0xFEC0_0000,
            gsi_base: 0
        }]
    );
    assert_eq!(p.overrides.len(), 2);
    assert_eq!(p.isa_irq_to_gsi(0), 2);
    assert_eq!(p.isa_irq_to_gsi(4), 4);
    assert_eq!(p.overrides[1].trigger(), Trigger::Level);
    assert_eq!(p.overrides[1].polarity(), Polarity::High);
    assert_eq!(p.overrides[0].trigger(), Trigger::Bus);
    assert_eq!(
        p.lapic_nmis.as_slice(),
        &[LapicNmi {
            acpi_id: None,
            lint: 1,
            flags: 5
        }]
    );
    assert_eq!(p.dropped, 0);
}

#[test]
fn bios_search_finds_tables() {
    let f = Fake::standard();
    check_standard(&f.discover(None).unwrap());
}

#[test]
fn ebda_search() {
    let mut f = Fake::standard();
    let r: [u8; 36] = f.mem[RSDP_AT as usize..RSDP_AT as usize + 36]
        .try_into()
        .unwrap();
    f.put(RSDP_AT, &[0u8; 36]);
    f.put(0x9_FC00 + 0x40, &r);
    f.put(0x40E, &0x9FC0u16.to_le_bytes());
    check_standard(&f.discover(None).unwrap());
    assert_eq!(validate::find_rsdp_bios(&f.handler()), Some(0x9_FC40));
}

#[test]
fn hints_from_the_boot_loader() {
    let f = Fake::standard();
    let copy = rsdp(2, RSDT_AT as u32, XSDT_AT);
    check_standard(&f.discover(Some(RsdpHint::Copy(&copy))).unwrap());
    check_standard(&f.discover(Some(RsdpHint::Paddr(RSDP_AT))).unwrap());
    // ACPI 1.0 copy (20 bytes) goes through the RSDT.
    let v1 = rsdp(0, RSDT_AT as u32, 0);
    check_standard(&f.discover(Some(RsdpHint::Copy(&v1[..20]))).unwrap());
}

#[test]
fn rsdt_path_when_xsdt_address_is_zero() {
    let mut f = Fake::standard();
    f.put(RSDP_AT, &rsdp(2, RSDT_AT as u32, 0));
    f.put(XSDT_AT, &[0u8; 52]);
    check_standard(&f.discover(None).unwrap());
}

#[test]
fn x2apic_entries_disabled_cpus_and_address_override() {
    let mut override_entry = vec![5, 12, 0, 0];
    override_entry.extend_from_slice(&0xFEE0_1000u64.to_le_bytes());
    let f = Fake::with_madt(&madt_body(&[
        lapic(0, 0, 0), // disabled: not the BSP
        lapic(1, 1, 1),
        lapic(2, 1, 1), // duplicate APIC ID: ignored
        x2apic(0x100, 7, 1),
        x2apic(0x101, 8, 2), // online-capable only: not enabled
        ioapic(2, 0xFEC0_1000, 24),
        override_entry,
        vec![0xa, 12, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0],
        vec![0x80, 4, 0, 0], // OEM entry: skipped
    ]));
    let mut p = f.discover(None).unwrap();
    assert_eq!(p.lapic_paddr, 0xFEE0_1000);
    let ids: Vec<(u32, bool, bool)> = p
        .cpus
        .iter()
        .map(|c| (c.apic_id, c.enabled, c.bsp))
        .collect();
    assert_eq!(
        ids,
        [
            (0, false, false),
            (1, true, true),
            (0x100, true, false),
            (0x101, false, false)
        ]
    );
    assert_eq!(p.cpus[2].acpi_id, 7);
    assert_eq!(p.enabled_cpus(), 2);
    assert_eq!(p.ioapics[0].gsi_base, 24);
    assert_eq!(p.lapic_nmis[0].acpi_id, None);
    assert!(p.mark_bsp(0x100));
    assert!(p.cpus[2].bsp && !p.cpus[1].bsp);
    assert!(!p.mark_bsp(0x55));
    assert!(p.cpus[2].bsp);
}

#[test]
fn too_many_entries_are_counted_not_fatal() {
    let mut entries: Vec<Vec<u8>> = (0..20u32)
        .map(|i| ioapic(i as u8, 0xFEC0_0000 + i * 0x1000, i * 24))
        .collect();
    entries.push(lapic(0, 0, 1));
    let f = Fake::with_madt(&madt_body(&entries));
    let p = f.discover(None).unwrap();
    assert_eq!(p.ioapics.len(), MAX_IOAPICS);
    assert_eq!(p.dropped, 4);
}

#[test]
fn missing_rsdp() {
    let mut f = Fake::standard();
    f.put(RSDP_AT, &[0u8; 36]);
    assert_eq!(f.discover(None).unwrap_err(), AcpiError::NoRsdp);
    // A bad hint with nothing in the BIOS areas reports the hint's problem.
    let mut bad = rsdp(2, RSDT_AT as u32, XSDT_AT);
    bad[20] ^= 0x40;
    assert_eq!(
        f.discover(Some(RsdpHint::Copy(&bad))).unwrap_err(),
        AcpiError::RsdpChecksum
    );
    assert_eq!(
        f.discover(Some(RsdpHint::Copy(b"RSD PTR"))).unwrap_err(),
        AcpiError::RsdpTruncated
    );
    assert_eq!(
        f.discover(Some(RsdpHint::Paddr(0x7000_0000))).unwrap_err(),
        AcpiError::Unreadable {
            what: "RSDP",
            paddr: 0x7000_0000
        }
    );
}

#[test]
fn bad_hint_falls_back_to_bios_search() {
    let f = Fake::standard();
    let mut bad = rsdp(2, RSDT_AT as u32, XSDT_AT);
    bad[0] = b'X';
    check_standard(&f.discover(Some(RsdpHint::Copy(&bad))).unwrap());
}

#[test]
fn bad_checksums_and_signatures() {
    // MADT checksum.
    let mut f = Fake::standard();
    f.mem[MADT_AT as usize + 50] ^= 1;
    let e = f.discover(None).unwrap_err();
    assert_eq!(
        e,
        AcpiError::Checksum {
            table: "MADT",
            paddr: MADT_AT
        }
    );
    assert_eq!(
        alloc::format!("{e}"),
        "ACPI MADT at 0x2000 has a bad checksum"
    );
    // XSDT checksum.
    let mut f = Fake::standard();
    f.mem[XSDT_AT as usize + 36] ^= 1;
    assert_eq!(
        f.discover(None).unwrap_err(),
        AcpiError::Checksum {
            table: "XSDT",
            paddr: XSDT_AT
        }
    );
    // XSDT signature.
    let mut f = Fake::standard();
    f.put(XSDT_AT, b"XSDX");
    f.fix(XSDT_AT);
    assert_eq!(
        f.discover(None).unwrap_err(),
        AcpiError::Signature {
            expected: "XSDT",
            paddr: XSDT_AT
        }
    );
    // No table with the APIC signature.
    let mut f = Fake::standard();
    f.put(MADT_AT, b"APIX");
    f.fix(MADT_AT);
    assert_eq!(f.discover(None).unwrap_err(), AcpiError::NoMadt);
    // Malformed OEM id in the MADT.
    let mut f = Fake::standard();
    f.put(MADT_AT + 10, &[0xff, 0xfe]);
    f.fix(MADT_AT);
    assert_eq!(
        f.discover(None).unwrap_err(),
        AcpiError::OemId { table: "MADT" }
    );
}

#[test]
fn truncated_and_malformed_madt() {
    // Length shorter than the MADT's fixed part.
    let mut f = Fake::standard();
    f.put32(MADT_AT + 4, 40);
    f.fix(MADT_AT);
    assert_eq!(
        f.discover(None).unwrap_err(),
        AcpiError::Length {
            table: "MADT",
            len: 40
        }
    );
    // Length cutting the last entry in half.
    let mut f = Fake::standard();
    let len = 36 + madt_body(&standard_entries()).len() as u32;
    f.put32(MADT_AT + 4, len - 3);
    f.fix(MADT_AT);
    assert!(matches!(
        f.discover(None).unwrap_err(),
        AcpiError::MadtEntry { ty: 4, .. }
    ));
    // An entry of length 0 (the crate would loop forever) and one too short for its type.
    for (entry, ty) in [
        (vec![0u8, 0, 0, 0, 0, 0, 0, 0], 0u8),
        (vec![1u8, 8, 0, 0, 0, 0, 0, 0], 1),
    ] {
        let mut entries = standard_entries();
        entries.insert(1, entry);
        let f = Fake::with_madt(&madt_body(&entries));
        let e = f.discover(None).unwrap_err();
        assert_eq!(
            e,
            AcpiError::MadtEntry {
                offset: 52,
                ty,
                len: if ty == 0 { 0 } else { 8 }
            }
        );
    }
    // A length far beyond readable memory.
    let mut f = Fake::standard();
    f.put32(MADT_AT + 4, 0x000F_FFFF);
    f.fix(MADT_AT);
    // Readable and summing to zero: the zero padding then fails as an entry of length 0.
    assert!(matches!(
        f.discover(None).unwrap_err(),
        AcpiError::MadtEntry { len: 0, .. }
    ));
    let mut f = Fake::standard();
    f.put32(MADT_AT + 4, 0x10_0001);
    assert_eq!(
        f.discover(None).unwrap_err(),
        AcpiError::Length {
            table: "MADT",
            len: 0x10_0001
        }
    );
    let mut f = Fake::standard();
    f.put32(MADT_AT + 4, 0x7FFF_FFFF);
    assert_eq!(
        f.discover(None).unwrap_err(),
        AcpiError::Length {
            table: "MADT",
            len: 0x7FFF_FFFF
        }
    );
    // No enabled CPU.
    let f = Fake::with_madt(&madt_body(&[lapic(0, 0, 0), ioapic(0, 0xFEC0_0000, 0)]));
    assert_eq!(f.discover(None).unwrap_err(), AcpiError::NoCpus);
}

#[test]
fn root_table_problems() {
    // A root entry pointing outside readable memory.
    let mut f = Fake::standard();
    f.put(XSDT_AT + 36, &0x7000_0000u64.to_le_bytes());
    f.fix(XSDT_AT);
    assert!(matches!(
        f.discover(None).unwrap_err(),
        AcpiError::Unreadable { .. }
    ));
    // XSDT body not a multiple of 8.
    let mut f = Fake::standard();
    f.put32(XSDT_AT + 4, 36 + 12);
    f.fix(XSDT_AT);
    assert_eq!(
        f.discover(None).unwrap_err(),
        AcpiError::Length {
            table: "XSDT",
            len: 48
        }
    );
    // A bad first MADT does not hide a good second one.
    let mut f = Fake::standard();
    let bad_madt_at = 0x3000u64;
    f.put(bad_madt_at, &sdt(b"APIC", &madt_body(&[lapic(0, 9, 1)])));
    f.mem[bad_madt_at as usize + 40] ^= 1;
    let mut x = Vec::new();
    for t in [FACP_AT, bad_madt_at, MADT_AT] {
        x.extend_from_slice(&t.to_le_bytes());
    }
    f.put(XSDT_AT, &sdt(b"XSDT", &x));
    check_standard(&f.discover(None).unwrap());
}

#[test]
fn the_fadt_names_the_pm_timer() {
    let mut f = Fake::standard();
    assert_eq!(f.discover(None).unwrap().pm_timer_port, None);
    // Revision 1: PM_TMR_BLK.
    let mut body = vec![0u8; 80];
    body[76 - 36..80 - 36].copy_from_slice(&0x608u32.to_le_bytes());
    f.put(FACP_AT, &sdt(b"FACP", &body));
    assert_eq!(f.discover(None).unwrap().pm_timer_port, Some(0x608));
    // Revision 3 with X_PM_TMR_BLK in system I/O space: it wins.
    let mut body = vec![0u8; 244 - 36];
    body[76 - 36..80 - 36].copy_from_slice(&0x608u32.to_le_bytes());
    body[208 - 36] = 1;
    body[212 - 36..220 - 36].copy_from_slice(&0xb008u64.to_le_bytes());
    let mut t = sdt(b"FACP", &body);
    t[8] = 3;
    checksum_fix(&mut t, 9);
    f.put(FACP_AT, &t);
    assert_eq!(f.discover(None).unwrap().pm_timer_port, Some(0xb008));
    // The X block in memory space: PM_TMR_BLK.
    t[208] = 0;
    checksum_fix(&mut t, 9);
    f.put(FACP_AT, &t);
    assert_eq!(f.discover(None).unwrap().pm_timer_port, Some(0x608));
    // A FADT with a bad checksum names nothing (the MADT still counts).
    t[100] ^= 1;
    f.put(FACP_AT, &t);
    let p = f.discover(None).unwrap();
    assert_eq!(p.pm_timer_port, None);
    check_standard(&p);
}

#[test]
fn the_mcfg_names_the_ecam_areas() {
    let mut f = Fake::standard();
    assert!(f.discover(None).unwrap().mcfg.is_empty(), "no MCFG");
    // Reserved 8 bytes, then (base, segment, first bus, last bus, reserved) per area.
    let mut body = vec![0u8; 8];
    for (base, seg, start, end) in [
        (0xb000_0000u64, 0u16, 0u8, 0xffu8),
        (0xe000_0000, 1, 0, 0x3f),
    ] {
        body.extend_from_slice(&base.to_le_bytes());
        body.extend_from_slice(&seg.to_le_bytes());
        body.extend_from_slice(&[start, end, 0, 0, 0, 0]);
    }
    const MCFG_AT: u64 = 0x3000;
    f.put(MCFG_AT, &sdt(b"MCFG", &body));
    let mut x = Vec::new();
    for t in [FACP_AT, MADT_AT, MCFG_AT] {
        x.extend_from_slice(&t.to_le_bytes());
    }
    f.put(XSDT_AT, &sdt(b"XSDT", &x));
    let p = f.discover(None).unwrap();
    assert_eq!(
        p.mcfg.as_slice(),
        [(0xb000_0000, 0, 0, 0xff), (0xe000_0000, 1, 0, 0x3f)]
    );
    check_standard(&p);
}
