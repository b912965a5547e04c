//! Xen ELF notes (note name "Xen", types in [`dom0_interface::elfnote`]) → [`XenElfInfo`].
//!
//! Follows Xen's libelf (`libelf-dominfo.c`): notes come from PT_NOTE segments (skipping
//! those with `p_offset == 0`, a binutils quirk), else from SHT_NOTE sections, else (PV only)
//! from the legacy `__xen_guest` section string. Later notes override earlier ones; FEATURES
//! and SUPPORTED_FEATURES accumulate. The derived values (virt_base, paddr_offset,
//! virt_kstart/kend, entry) and the sanity checks are libelf's, with wrapping arithmetic as
//! in C. Deviations, each giving a clearer error instead of silent zeros: a numeric note
//! whose size is not 1/2/4/8 is refused, and a kernel with PHYS32_ENTRY but no ENTRY note
//! booted as PV is reported as PVH-only.

mod error;
mod features;
mod legacy;
#[cfg(test)]
mod tests;

pub use error::XenNotesError;
pub use features::{
    XenFeatures, FEATURE_NAMES, XENFEAT_AUTO_TRANSLATED_PHYSMAP, XENFEAT_DOM0,
    XENFEAT_HVM_CALLBACK_VECTOR, XENFEAT_PAE_PGDIR_ABOVE_4GB, XENFEAT_SUPERVISOR_MODE_KERNEL,
    XENFEAT_WRITABLE_DESCRIPTOR_TABLES, XENFEAT_WRITABLE_PAGE_TABLES,
};
pub use legacy::{guest_info_pairs, strtoull, GuestInfoPair};

use crate::elf::{ElfFile, NoteIter, PT_NOTE, SHT_NOTE, SHT_STRTAB, SHT_SYMTAB};
use alloc::string::String;
use dom0_interface::elfnote as n;

/// libelf's cap on the number of notes it reads from one image.
pub const MAX_TOTAL_NOTES: usize = 65536;

/// How the kernel is to be booted (libelf's `hvm` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMode {
    /// 64-bit PV: paging on, kernel in ring 3 at its virtual addresses.
    Pv,
    /// PVH: paging off, entered at PHYS32_ENTRY.
    Pvh,
}

/// Where the Xen information was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotesSource {
    /// PT_NOTE program headers.
    NoteSegments,
    /// SHT_NOTE sections (fallback).
    NoteSections,
    /// The legacy `__xen_guest` section string.
    LegacyGuestInfo,
}

/// Everything a domain builder needs from the kernel's Xen notes, with libelf's defaults
/// applied. Addresses are guest-virtual unless named otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XenElfInfo {
    /// Where the information came from.
    pub source: NotesSource,
    /// Number of notes named "Xen" read (0 for the legacy string).
    pub xen_note_count: usize,
    /// Entry point (ENTRY note, else `e_entry`; PVH: PHYS32_ENTRY, else `e_entry`).
    pub entry: u64,
    /// Whether `entry` came from an ENTRY note (or legacy VIRT_ENTRY).
    pub entry_from_note: bool,
    /// HYPERCALL_PAGE: where the builder writes the hypercall stubs.
    pub hypercall_page: Option<u64>,
    /// VIRT_BASE (0 when absent; 0 for PVH).
    pub virt_base: u64,
    /// PADDR_OFFSET (absent: 0 with notes, `virt_base` with the legacy string).
    pub paddr_offset: u64,
    /// `virt_base - paddr_offset` (mod 2^64): added to ELF physical addresses.
    pub virt_offset: u64,
    /// Start of the kernel image in guest virtual memory (`pstart + virt_offset`).
    pub virt_kstart: u64,
    /// End of the kernel image, exclusive (`pend + virt_offset`, or the BSD symtab end).
    pub virt_kend: u64,
    /// XEN_VERSION string.
    pub xen_version: String,
    /// GUEST_OS string.
    pub guest_os: String,
    /// GUEST_VERSION string.
    pub guest_version: String,
    /// LOADER string.
    pub loader: String,
    /// PAE_MODE string (only meaningful for 32-bit kernels).
    pub pae_mode: String,
    /// FEATURES (and SUPPORTED_FEATURES merged into `supported`).
    pub features: XenFeatures,
    /// The raw SUPPORTED_FEATURES bitmap, when that note is present.
    pub supported_features_note: Option<u32>,
    /// INIT_P2M: where the builder maps the p2m list outside the bootstrap region.
    pub init_p2m: Option<u64>,
    /// MOD_START_PFN: the initrd may be left unmapped and passed as a pfn.
    pub mod_start_pfn: bool,
    /// PHYS32_ENTRY (PVH entry point), truncated to 32 bits as libelf stores it.
    pub phys32_entry: Option<u32>,
    /// SUSPEND_CANCEL value, when present.
    pub suspend_cancel: Option<u64>,
    /// HV_START_LOW value, when present (32-bit kernels only).
    pub hv_start_low: Option<u64>,
    /// L1_MFN_VALID value, when present.
    pub l1_mfn_valid: Option<u64>,
    /// BSD_SYMTAB "yes": the loader appends the symbol table after the image.
    pub bsd_symtab: bool,
    /// Physical `[start, end)` of the BSD symbol table area, when it extends the image.
    pub bsd_symtab_range: Option<(u64, u64)>,
}

/// Notes as collected, before defaults and checks.
#[derive(Default)]
struct Raw {
    count: usize,
    total: usize,
    entry: Option<u64>,
    hypercall_page: Option<u64>,
    virt_base: Option<u64>,
    paddr_offset: Option<u64>,
    xen_version: String,
    guest_os: String,
    guest_version: String,
    loader: String,
    pae_mode: String,
    features: XenFeatures,
    supported_features_note: Option<u32>,
    init_p2m: Option<u64>,
    mod_start_pfn: bool,
    phys32_entry: Option<u32>,
    suspend_cancel: Option<u64>,
    hv_start_low: Option<u64>,
    l1_mfn_valid: Option<u64>,
    bsd_symtab: bool,
}

/// A note's string value: bytes up to the first NUL (or the whole descriptor).
fn note_string(desc: &[u8]) -> String {
    let s = match desc.iter().position(|&b| b == 0) {
        Some(nul) => &desc[..nul],
        None => desc,
    };
    String::from_utf8_lossy(s).into_owned()
}

/// A note's numeric value: 1, 2, 4 or 8 little-endian bytes; any other size reads as 0,
/// as libelf's `elf_note_numeric` reads it (Linux's 16-byte L1_MFN_VALID note, a mask and
/// a value, is such a note: Xen 4.17 boots the kernel and ignores it).
fn note_number(desc: &[u8]) -> u64 {
    match desc.len() {
        1 | 2 | 4 | 8 => {
            let mut a = [0u8; 8];
            a[..desc.len()].copy_from_slice(desc);
            u64::from_le_bytes(a)
        }
        _ => 0,
    }
}

impl Raw {
    /// Applies one note named "Xen" (libelf's `elf_xen_parse_note`).
    fn apply_note(&mut self, n_type: u32, desc: &[u8]) -> Result<(), XenNotesError> {
        match n_type {
            n::XEN_ELFNOTE_LOADER => self.loader = note_string(desc),
            n::XEN_ELFNOTE_GUEST_OS => self.guest_os = note_string(desc),
            n::XEN_ELFNOTE_GUEST_VERSION => self.guest_version = note_string(desc),
            n::XEN_ELFNOTE_XEN_VERSION => self.xen_version = note_string(desc),
            n::XEN_ELFNOTE_PAE_MODE => self.pae_mode = note_string(desc),
            n::XEN_ELFNOTE_BSD_SYMTAB if note_string(desc) == "yes" => self.bsd_symtab = true,
            n::XEN_ELFNOTE_FEATURES => {
                let text = match desc.iter().position(|&b| b == 0) {
                    Some(nul) => &desc[..nul],
                    None => desc,
                };
                self.features.add_feature_string(text).map_err(|name| {
                    XenNotesError::UnknownRequiredFeature(
                        String::from_utf8_lossy(name).into_owned(),
                    )
                })?;
            }
            n::XEN_ELFNOTE_SUPPORTED_FEATURES => {
                // An array of u32 submaps; XENFEAT_NR_SUBMAPS is 1, so only the first counts.
                // libelf's elf_note_numeric_array reads a size that is not a multiple of 4
                // as 0.
                if desc.len() < 4 || !desc.len().is_multiple_of(4) {
                    self.supported_features_note = Some(self.supported_features_note.unwrap_or(0));
                    return Ok(());
                }
                let map = u32::from_le_bytes([desc[0], desc[1], desc[2], desc[3]]);
                self.features.supported |= map;
                self.supported_features_note =
                    Some(self.supported_features_note.unwrap_or(0) | map);
            }
            n::XEN_ELFNOTE_ENTRY => self.entry = Some(note_number(desc)),
            n::XEN_ELFNOTE_HYPERCALL_PAGE => self.hypercall_page = Some(note_number(desc)),
            n::XEN_ELFNOTE_VIRT_BASE => self.virt_base = Some(note_number(desc)),
            n::XEN_ELFNOTE_PADDR_OFFSET => self.paddr_offset = Some(note_number(desc)),
            n::XEN_ELFNOTE_INIT_P2M => self.init_p2m = Some(note_number(desc)),
            n::XEN_ELFNOTE_MOD_START_PFN => self.mod_start_pfn = note_number(desc) != 0,
            n::XEN_ELFNOTE_HV_START_LOW => self.hv_start_low = Some(note_number(desc)),
            n::XEN_ELFNOTE_L1_MFN_VALID => self.l1_mfn_valid = Some(note_number(desc)),
            n::XEN_ELFNOTE_SUSPEND_CANCEL => self.suspend_cancel = Some(note_number(desc)),
            n::XEN_ELFNOTE_PHYS32_ENTRY => {
                // libelf keeps phys_entry in a uint32_t.
                self.phys32_entry = Some(note_number(desc) as u32)
            }
            // INFO, PHYS32_RELOC and unknown types are counted but ignored, as in libelf.
            _ => {}
        }
        Ok(())
    }

    /// Reads every note of one region; returns how many were Xen notes.
    fn scan_region(&mut self, data: &[u8]) -> Result<usize, XenNotesError> {
        let mut found = 0;
        for note in NoteIter::new(data) {
            let note = match note {
                Ok(note) => note,
                Err(e) => {
                    // libelf marks such an image "broken" but carries on.
                    log::warn!("kernel has a malformed ELF note: {e}");
                    break;
                }
            };
            if self.total >= MAX_TOTAL_NOTES {
                return Err(XenNotesError::TooManyNotes);
            }
            self.total += 1;
            if note.name != dom0_interface::elfnote::XEN_ELFNOTE_NAME {
                continue;
            }
            self.apply_note(note.n_type, note.desc)?;
            found += 1;
        }
        self.count += found;
        Ok(found)
    }

    /// Applies the legacy `__xen_guest` string (libelf's `elf_xen_parse_guest_info`).
    fn apply_guest_info(&mut self, section: &[u8]) -> Result<(), XenNotesError> {
        for pair in guest_info_pairs(section) {
            let text = || String::from_utf8_lossy(pair.value).into_owned();
            match pair.name {
                b"LOADER" => self.loader = text(),
                b"GUEST_OS" => self.guest_os = text(),
                b"GUEST_VER" => self.guest_version = text(),
                b"XEN_VER" => self.xen_version = text(),
                b"PAE" => self.pae_mode = text(),
                b"BSD_SYMTAB" => self.bsd_symtab = true,
                b"VIRT_BASE" => self.virt_base = Some(strtoull(pair.value)),
                b"VIRT_ENTRY" => self.entry = Some(strtoull(pair.value)),
                b"ELF_PADDR_OFFSET" => self.paddr_offset = Some(strtoull(pair.value)),
                // Given as a page number relative to VIRT_BASE.
                b"HYPERCALL_PAGE" => self.hypercall_page = Some(strtoull(pair.value) << 12),
                b"FEATURES" => {
                    self.features
                        .add_feature_string(pair.value)
                        .map_err(|name| {
                            XenNotesError::UnknownRequiredFeature(
                                String::from_utf8_lossy(name).into_owned(),
                            )
                        })?;
                }
                _ => {}
            }
        }
        if let (Some(base), Some(page)) = (self.virt_base, self.hypercall_page) {
            self.hypercall_page = Some(page.wrapping_add(base));
        }
        Ok(())
    }
}

/// Rounds up to 8 bytes as libelf's `elf_round_up` for 64-bit images (wrapping as in C).
fn round8(x: u64) -> u64 {
    x.wrapping_add(7) & !7
}

/// libelf's `elf_parse_bsdsyms`: physical `[start, end)` of the symbol table area appended
/// after the image, or `None` when there is no usable symbol table.
fn bsd_symtab_range(elf: &ElfFile<'_>, pend: u64) -> Option<(u64, u64)> {
    let shnum = usize::from(elf.header().e_shnum);
    let symtab = elf.section_headers().find(|sh| {
        sh.sh_type == SHT_SYMTAB && usize::try_from(sh.sh_link).is_ok_and(|l| l < shnum)
    })?;
    let strtab = elf.section_header(usize::try_from(symtab.sh_link).ok()?)?;
    if strtab.sh_type != SHT_STRTAB {
        return None;
    }
    // u32 size word + ELF header (64) + 3 section headers (64 each), as `elf_sym_header`.
    let mut size = round8(4 + 64 + 3 * 64);
    size = round8(size.wrapping_add(symtab.sh_size));
    size = round8(size.wrapping_add(strtab.sh_size));
    let start = round8(pend);
    Some((start, start.wrapping_add(size)))
}

/// Reads the Xen notes of a validated kernel image and derives the boot parameters exactly
/// as libelf's `elf_xen_parse` does for `mode`.
pub fn parse_xen_elf_info(elf: &ElfFile<'_>, mode: BootMode) -> Result<XenElfInfo, XenNotesError> {
    let mut raw = Raw::default();
    let mut source = NotesSource::NoteSegments;
    for ph in elf.program_headers() {
        if ph.p_type != PT_NOTE || ph.p_offset == 0 {
            continue;
        }
        if let Some(data) = elf.segment_data(&ph) {
            raw.scan_region(data)?;
        }
    }
    if raw.count == 0 {
        source = NotesSource::NoteSections;
        for (index, sh) in elf.section_headers().enumerate().skip(1) {
            if sh.sh_type != SHT_NOTE {
                continue;
            }
            match elf.section_data(index, &sh) {
                Ok(data) => {
                    raw.scan_region(data)?;
                }
                Err(e) => log::warn!("kernel note section skipped: {e}"),
            }
        }
    }
    if raw.count == 0 && mode == BootMode::Pv {
        if let Some((index, sh)) = elf.section_by_name(b"__xen_guest") {
            source = NotesSource::LegacyGuestInfo;
            raw.apply_guest_info(elf.section_data(index, &sh)?)?;
        }
    }
    if raw.count == 0 && source != NotesSource::LegacyGuestInfo {
        return Err(XenNotesError::NoXenNotes);
    }
    check_notes(&raw, mode)?;
    derive(elf, raw, source, mode)
}

/// libelf's `elf_xen_note_check`, plus the PVH-only diagnosis for PV boot.
fn check_notes(raw: &Raw, mode: BootMode) -> Result<(), XenNotesError> {
    if raw.phys32_entry.is_some() {
        match mode {
            BootMode::Pvh => return Ok(()),
            BootMode::Pv if raw.entry.is_none() => return Err(XenNotesError::PvhOnly),
            BootMode::Pv => {}
        }
    }
    if !raw.loader.starts_with("generic") && !raw.guest_os.starts_with("linux") {
        return Err(XenNotesError::BadLoader {
            loader: raw.loader.clone(),
            guest_os: raw.guest_os.clone(),
        });
    }
    if !raw.xen_version.starts_with("xen-3.0") {
        return Err(XenNotesError::BadXenVersion(raw.xen_version.clone()));
    }
    Ok(())
}

/// libelf's `elf_xen_addr_calc_check`.
fn derive(
    elf: &ElfFile<'_>,
    raw: Raw,
    source: NotesSource,
    mode: BootMode,
) -> Result<XenElfInfo, XenNotesError> {
    let pvh = mode == BootMode::Pvh;
    if raw.paddr_offset.is_some() && raw.virt_base.is_none() && !pvh {
        return Err(XenNotesError::PaddrOffsetWithoutVirtBase);
    }
    let virt_base = if pvh { 0 } else { raw.virt_base.unwrap_or(0) };
    let paddr_offset = match raw.paddr_offset {
        Some(off) if !pvh => off,
        _ if pvh || source != NotesSource::LegacyGuestInfo => 0,
        _ => virt_base,
    };
    let virt_offset = virt_base.wrapping_sub(paddr_offset);
    let (pstart, pend) = elf.paddr_range();
    let virt_kstart = pstart.wrapping_add(virt_offset);
    let mut virt_kend = pend.wrapping_add(virt_offset);
    let entry = match (pvh, raw.entry, raw.phys32_entry) {
        (true, _, Some(phys)) => u64::from(phys),
        (true, _, None) | (false, None, _) => elf.entry(),
        (false, Some(e), _) => e,
    };
    let bsd_range = if raw.bsd_symtab {
        bsd_symtab_range(elf, pend)
    } else {
        None
    };
    if let Some((_, end)) = bsd_range {
        virt_kend = end.wrapping_add(virt_offset);
    }
    if virt_kstart > virt_kend
        || entry < virt_kstart
        || entry > virt_kend
        || virt_base > virt_kstart
    {
        return Err(XenNotesError::AddressesOutOfBounds {
            virt_kstart,
            virt_kend,
            entry,
            virt_base,
        });
    }
    if let Some(p2m) = raw.init_p2m {
        if p2m >= virt_kstart && p2m < virt_kend {
            return Err(XenNotesError::P2mInsideKernel(p2m));
        }
    }
    Ok(XenElfInfo {
        source,
        xen_note_count: raw.count,
        entry,
        entry_from_note: raw.entry.is_some() && !pvh,
        hypercall_page: raw.hypercall_page,
        virt_base,
        paddr_offset,
        virt_offset,
        virt_kstart,
        virt_kend,
        xen_version: raw.xen_version,
        guest_os: raw.guest_os,
        guest_version: raw.guest_version,
        loader: raw.loader,
        pae_mode: raw.pae_mode,
        features: raw.features,
        supported_features_note: raw.supported_features_note,
        init_p2m: raw.init_p2m,
        mod_start_pfn: raw.mod_start_pfn,
        phys32_entry: raw.phys32_entry,
        suspend_cancel: raw.suspend_cancel,
        hv_start_low: raw.hv_start_low,
        l1_mfn_valid: raw.l1_mfn_valid,
        bsd_symtab: raw.bsd_symtab,
        bsd_symtab_range: bsd_range,
    })
}

impl XenElfInfo {
    /// The checks Xen's PV builders make before building: as dom0, a kernel with a
    /// SUPPORTED_FEATURES note must list XENFEAT_dom0; every required feature must be in
    /// `offered` (the XENFEAT bits this hypervisor honours for PV guests; Xen refuses
    /// `supervisor_mode_kernel` for 64-bit PV).
    pub fn check_pv_boot(&self, is_dom0: bool, offered: u32) -> Result<(), XenNotesError> {
        if is_dom0
            && self.supported_features_note.is_some()
            && !self.features.supports(XENFEAT_DOM0)
        {
            return Err(XenNotesError::NotDom0Capable);
        }
        let missing = self.features.required & !offered;
        if missing != 0 {
            return Err(XenNotesError::UnsupportedRequiredFeatures(missing));
        }
        Ok(())
    }
}
