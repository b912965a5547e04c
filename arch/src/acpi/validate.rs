//! Safe validation of the RSDP, the root table and the MADT through bounds-checked reads,
//! done before the `acpi` crate touches any of it (the crate trusts lengths and pointers).

use super::AcpiError;
use crate::multiboot::PhysMem;

/// Size of the ACPI 1.0 RSDP.
pub(super) const RSDP_V1_LEN: usize = 20;
/// Size of the ACPI 2.0+ RSDP.
pub(super) const RSDP_V2_LEN: usize = 36;
/// Size of a system description table header.
pub(super) const SDT_HEADER_LEN: usize = 36;
/// Size of the MADT's fixed part (header, local APIC address, flags).
pub(super) const MADT_FIXED_LEN: usize = 44;
/// Largest table accepted.
const MAX_TABLE_LEN: u32 = 1 << 20;

/// What the RSDP says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RsdpInfo {
    /// 0 for ACPI 1.0, 2 for 2.0+.
    pub revision: u8,
    /// RSDT physical address.
    pub rsdt: u32,
    /// XSDT physical address (0 if none).
    pub xsdt: u64,
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// Validates RSDP bytes (20 for ACPI 1.0, at least 36 for 2.0+).
pub(super) fn check_rsdp(bytes: &[u8]) -> Result<RsdpInfo, AcpiError> {
    if bytes.len() < RSDP_V1_LEN {
        return Err(AcpiError::RsdpTruncated);
    }
    if &bytes[..8] != b"RSD PTR " {
        return Err(AcpiError::RsdpSignature);
    }
    if sum(&bytes[..RSDP_V1_LEN]) != 0 {
        return Err(AcpiError::RsdpChecksum);
    }
    if core::str::from_utf8(&bytes[9..15]).is_err() {
        return Err(AcpiError::OemId { table: "RSDP" });
    }
    let revision = bytes[15];
    let rsdt = le32(bytes, 16);
    if revision == 0 {
        return Ok(RsdpInfo {
            revision: 0,
            rsdt,
            xsdt: 0,
        });
    }
    if bytes.len() < RSDP_V2_LEN {
        return Err(AcpiError::RsdpTruncated);
    }
    let length = le32(bytes, 20) as usize;
    if length < RSDP_V2_LEN {
        return Err(AcpiError::RsdpTruncated);
    }
    // The extended checksum covers `length` bytes; only what we hold can be checked.
    if sum(&bytes[..length.min(bytes.len())]) != 0 {
        return Err(AcpiError::RsdpChecksum);
    }
    Ok(RsdpInfo {
        revision: 2,
        rsdt,
        xsdt: le64(bytes, 24),
    })
}

/// Reads and checks the RSDP at `paddr`.
pub(super) fn read_rsdp<M: PhysMem + ?Sized>(mem: &M, paddr: u64) -> Result<RsdpInfo, AcpiError> {
    let mut b = [0u8; RSDP_V2_LEN];
    if mem.read(paddr, &mut b) {
        check_rsdp(&b)
    } else if mem.read(paddr, &mut b[..RSDP_V1_LEN]) {
        check_rsdp(&b[..RSDP_V1_LEN])
    } else {
        Err(AcpiError::Unreadable {
            what: "RSDP",
            paddr,
        })
    }
}

/// BIOS RSDP search: the first KiB of the EBDA, then 0xE0000–0xFFFFF, on 16-byte boundaries.
pub(super) fn find_rsdp_bios<M: PhysMem + ?Sized>(mem: &M) -> Option<u64> {
    let mut seg = [0u8; 2];
    let ebda = if mem.read(0x40E, &mut seg) {
        u64::from(u16::from_le_bytes(seg)) << 4
    } else {
        0
    };
    let ebda_area = (0x8_0000..0xA_0000)
        .contains(&ebda)
        .then_some(ebda..ebda + 1024);
    let bios_area = Some(0xE_0000..0x10_0000);
    for area in [ebda_area, bios_area].into_iter().flatten() {
        let mut p = area.start;
        while p < area.end {
            let mut sig = [0u8; 8];
            if mem.read(p, &mut sig) && &sig == b"RSD PTR " && read_rsdp(mem, p).is_ok() {
                return Some(p);
            }
            p += 16;
        }
    }
    None
}

/// Checks the table at `paddr`: readable header, signature `sig`, sane length, OEM ids valid
/// UTF-8 (as the `acpi` crate requires), whole table readable and summing to zero. Returns the
/// table length.
pub(super) fn check_sdt<M: PhysMem + ?Sized>(
    mem: &M,
    paddr: u64,
    sig: &[u8; 4],
) -> Result<u32, AcpiError> {
    let name = sig_name(sig);
    let mut h = [0u8; SDT_HEADER_LEN];
    if !mem.read(paddr, &mut h) {
        return Err(AcpiError::Unreadable { what: name, paddr });
    }
    if &h[..4] != sig {
        return Err(AcpiError::Signature {
            expected: name,
            paddr,
        });
    }
    let len = le32(&h, 4);
    if (len as usize) < SDT_HEADER_LEN || len > MAX_TABLE_LEN {
        return Err(AcpiError::Length { table: name, len });
    }
    if core::str::from_utf8(&h[10..16]).is_err() || core::str::from_utf8(&h[16..24]).is_err() {
        return Err(AcpiError::OemId { table: name });
    }
    let mut acc = 0u8;
    let mut off = 0u64;
    let mut buf = [0u8; 256];
    while off < u64::from(len) {
        let n = (u64::from(len) - off).min(buf.len() as u64) as usize;
        if !mem.read(paddr + off, &mut buf[..n]) {
            return Err(AcpiError::Unreadable {
                what: name,
                paddr: paddr + off,
            });
        }
        acc = acc.wrapping_add(sum(&buf[..n]));
        off += n as u64;
    }
    if acc != 0 {
        return Err(AcpiError::Checksum { table: name, paddr });
    }
    Ok(len)
}

fn sig_name(sig: &[u8; 4]) -> &'static str {
    match sig {
        b"RSDT" => "RSDT",
        b"XSDT" => "XSDT",
        b"APIC" => "MADT",
        _ => "table",
    }
}

/// Checks the root table and every table it lists as far as the `acpi` crate will read them;
/// returns the physical address of the first valid MADT.
pub(super) fn check_root<M: PhysMem + ?Sized>(
    mem: &M,
    root: u64,
    xsdt: bool,
) -> Result<u64, AcpiError> {
    let sig = if xsdt { b"XSDT" } else { b"RSDT" };
    let len = check_sdt(mem, root, sig)? as usize;
    let entry = if xsdt { 8 } else { 4 };
    let body = len - SDT_HEADER_LEN;
    if !body.is_multiple_of(entry) {
        return Err(AcpiError::Length {
            table: sig_name(sig),
            len: len as u32,
        });
    }
    let mut madt = None;
    let mut madt_err = None;
    for i in 0..body / entry {
        let at = root + (SDT_HEADER_LEN + i * entry) as u64;
        let mut p = [0u8; 8];
        if !mem.read(at, &mut p[..entry]) {
            return Err(AcpiError::Unreadable {
                what: sig_name(sig),
                paddr: at,
            });
        }
        let table = u64::from_le_bytes(p);
        let mut h = [0u8; SDT_HEADER_LEN];
        if !mem.read(table, &mut h) {
            return Err(AcpiError::Unreadable {
                what: "table listed in the root table",
                paddr: table,
            });
        }
        if &h[..4] != b"APIC" {
            continue;
        }
        // The crate checksums every MADT candidate it meets, valid or not: all must be sane.
        match check_sdt(mem, table, b"APIC") {
            Ok(_) if madt.is_none() => madt = Some(table),
            Ok(_) => {}
            Err(e @ (AcpiError::Checksum { .. } | AcpiError::OemId { .. })) => {
                madt_err.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (madt, madt_err) {
        (Some(m), _) => Ok(m),
        (None, Some(e)) => Err(e),
        (None, None) => Err(AcpiError::NoMadt),
    }
}

/// The first table the (already checked) root table lists with signature `sig` whose header,
/// length and checksum are sound; None if there is none.
pub(super) fn find_sdt<M: PhysMem + ?Sized>(
    mem: &M,
    root: u64,
    xsdt: bool,
    sig: &[u8; 4],
) -> Option<u64> {
    let mut h = [0u8; SDT_HEADER_LEN];
    if !mem.read(root, &mut h) {
        return None;
    }
    let entry = if xsdt { 8 } else { 4 };
    let body = (le32(&h, 4) as usize).checked_sub(SDT_HEADER_LEN)?;
    (0..body / entry).find_map(|i| {
        let mut p = [0u8; 8];
        let at = root + (SDT_HEADER_LEN + i * entry) as u64;
        if !mem.read(at, &mut p[..entry]) {
            return None;
        }
        let table = u64::from_le_bytes(p);
        check_sdt(mem, table, sig).ok().map(|_| table)
    })
}

/// The ACPI PM timer's I/O port from the FADT at `fadt` (`len` bytes) as Xen's
/// `acpi_parse_fadt` takes it: X_PM_TMR_BLK when the FADT is revision 3 or later and it lies
/// in system I/O space, else PM_TMR_BLK; None if neither names a port.
pub(super) fn fadt_pm_timer<M: PhysMem + ?Sized>(mem: &M, fadt: u64, len: u32) -> Option<u16> {
    let mut t = [0u8; 220];
    let n = (len as usize).min(t.len());
    if n < 80 || !mem.read(fadt, &mut t[..n]) {
        return None;
    }
    let mut port = 0u64;
    if t[8] >= 3 && n >= 220 && t[208] == 1 {
        port = u64::from_le_bytes(t[212..220].try_into().ok()?);
    }
    if port == 0 {
        port = u64::from(le32(&t, 76));
    }
    u16::try_from(port).ok().filter(|&p| p != 0)
}

/// The MCFG's ECAM areas (`struct acpi_mcfg_allocation`, 16 bytes each from offset 44):
/// (base address, PCI segment, first bus, last bus), at most `MAX_MCFG_AREAS`.
pub(super) fn mcfg_areas<M: PhysMem + ?Sized>(
    mem: &M,
    mcfg: u64,
    len: u32,
) -> heapless::Vec<(u64, u16, u8, u8), { super::MAX_MCFG_AREAS }> {
    let mut v = heapless::Vec::new();
    let mut off = 44u64;
    while off + 16 <= u64::from(len) {
        let mut e = [0u8; 16];
        if !mem.read(mcfg + off, &mut e) {
            break;
        }
        let area = (le64(&e, 0), u16::from_le_bytes([e[8], e[9]]), e[10], e[11]);
        if v.push(area).is_err() {
            break;
        }
        off += 16;
    }
    v
}

/// Smallest entry length the `acpi` crate's struct for MADT entry type `ty` needs.
fn min_entry_len(ty: u8) -> usize {
    use ::acpi::madt::*;
    use core::mem::size_of;
    match ty {
        0x0 => size_of::<LocalApicEntry>(),
        0x1 => size_of::<IoApicEntry>(),
        0x2 => size_of::<InterruptSourceOverrideEntry>(),
        0x3 => size_of::<NmiSourceEntry>(),
        0x4 => size_of::<LocalApicNmiEntry>(),
        0x5 => size_of::<LocalApicAddressOverrideEntry>(),
        0x6 => size_of::<IoSapicEntry>(),
        0x7 => size_of::<LocalSapicEntry>(),
        0x8 => size_of::<PlatformInterruptSourceEntry>(),
        0x9 => size_of::<LocalX2ApicEntry>(),
        0xa => size_of::<X2ApicNmiEntry>(),
        0xb => size_of::<GiccEntry>(),
        0xc => size_of::<GicdEntry>(),
        0xd => size_of::<GicMsiFrameEntry>(),
        0xe => size_of::<GicRedistributorEntry>(),
        0xf => size_of::<GicInterruptTranslationServiceEntry>(),
        0x10 => size_of::<MultiprocessorWakeupEntry>(),
        _ => 2,
    }
}

/// Checks that the MADT's entries tile its body exactly and are each long enough for the
/// structure the crate will view them as.
pub(super) fn check_madt_entries<M: PhysMem + ?Sized>(
    mem: &M,
    madt: u64,
    len: u32,
) -> Result<(), AcpiError> {
    let len = len as usize;
    if len < MADT_FIXED_LEN {
        return Err(AcpiError::Length {
            table: "MADT",
            len: len as u32,
        });
    }
    let mut off = MADT_FIXED_LEN;
    while off < len {
        let mut h = [0u8; 2];
        if len - off < 2 || !mem.read(madt + off as u64, &mut h) {
            return Err(AcpiError::MadtEntry {
                offset: off as u32,
                ty: 0xff,
                len: 0,
            });
        }
        let (ty, elen) = (h[0], usize::from(h[1]));
        if elen < min_entry_len(ty) || elen > len - off {
            return Err(AcpiError::MadtEntry {
                offset: off as u32,
                ty,
                len: h[1],
            });
        }
        off += elen;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_struct_sizes_match_the_spec() {
        // ACPI 6.x entry lengths for the x86 types we rely on.
        assert_eq!(min_entry_len(0), 8);
        assert_eq!(min_entry_len(1), 12);
        assert_eq!(min_entry_len(2), 10);
        assert_eq!(min_entry_len(4), 6);
        assert_eq!(min_entry_len(5), 12);
        assert_eq!(min_entry_len(9), 16);
        assert_eq!(min_entry_len(0xa), 12);
        assert_eq!(min_entry_len(0x7f), 2);
    }

    #[test]
    fn rsdp_checks() {
        let mut r = [0u8; 36];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[9..15].copy_from_slice(b"BOCHS ");
        r[16..20].copy_from_slice(&0x1234u32.to_le_bytes());
        r[8] = 0u8.wrapping_sub(sum(&r[..20]));
        assert_eq!(
            check_rsdp(&r[..20]),
            Ok(RsdpInfo {
                revision: 0,
                rsdt: 0x1234,
                xsdt: 0
            })
        );
        assert_eq!(check_rsdp(&r[..19]), Err(AcpiError::RsdpTruncated));
        let mut bad = r;
        bad[0] = b'X';
        assert_eq!(check_rsdp(&bad), Err(AcpiError::RsdpSignature));
        let mut bad = r;
        bad[16] ^= 1;
        assert_eq!(check_rsdp(&bad), Err(AcpiError::RsdpChecksum));
        // Revision 2 needs the extended part and its checksum.
        let mut v2 = r;
        v2[15] = 2;
        v2[20..24].copy_from_slice(&36u32.to_le_bytes());
        v2[24..32].copy_from_slice(&0x5678u64.to_le_bytes());
        v2[8] = 0;
        v2[8] = 0u8.wrapping_sub(sum(&v2[..20]));
        v2[32] = 0;
        v2[32] = 0u8.wrapping_sub(sum(&v2));
        assert_eq!(
            check_rsdp(&v2),
            Ok(RsdpInfo {
                revision: 2,
                rsdt: 0x1234,
                xsdt: 0x5678
            })
        );
        assert_eq!(check_rsdp(&v2[..20]), Err(AcpiError::RsdpTruncated));
        let mut bad = v2;
        bad[30] = 1;
        assert_eq!(check_rsdp(&bad), Err(AcpiError::RsdpChecksum));
    }
}
