//! What a 64-bit PV domU's memory holds at start of day, computed from its kernel, as Xen
//! 4.17's libxenguest (`xg_dom_x86.c`) produces it: the kernel's segments and the ramdisk
//! at the places the Xen notes and the start-of-day layout of `public/xen.h` give, the p2m
//! list, start_info, the bootstrap page tables (their own mappings read-only; the L4 is
//! pinned by the builder), a boot stack, the hypercall page, and the console ring page.
//!
//! The ELF and note parsing and the layout are xen-core's (the hypervisor's dom0 builder
//! uses the same code); this module only turns them into whole pages to write, so the
//! builder writes every page with one foreign mapping.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use dom0_interface::arch_x86::{
    VcpuGuestContext, FLAT_KERNEL_CS, FLAT_KERNEL_DS, FLAT_KERNEL_SS, VGCF_IN_KERNEL, VGCF_ONLINE,
};
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::StartInfo;
use xen_core::builder::{hypercall_page, MAX_KERNEL_SPAN};
use xen_core::elf::{ElfError, ElfFile};
use xen_core::pv_layout::{
    DomainKind, InitrdLayout, LayoutError, LayoutRequest, P2mPlacement, PageTablePlan, PtLevel,
    PvLayout, PTE_GUEST_KERNEL,
};
use xen_core::xen_notes::{parse_xen_elf_info, BootMode, XenElfInfo, XenNotesError};

/// Bytes in a page.
pub const PAGE: u64 = 4096;
/// One page of contents.
pub type PageBuf = Box<[u8; PAGE as usize]>;
/// `XENFEAT_*` bits a PV kernel may require: libxenguest (`xc_dom_parse_image`) only checks
/// that the required features are among those the kernel itself supports, which libelf
/// guarantees (a `!feature` is both), so every bit is offered (Linux requires
/// `writable_page_tables`, which Xen honours by emulating page-table writes).
pub const OFFERED_FEATURES: u32 = u32::MAX;

/// Why a kernel cannot be built into a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// Not a loadable ELF.
    Elf(String),
    /// Xen notes missing or unusable.
    Notes(String),
    /// The start-of-day layout does not fit the domain.
    Layout(String),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Elf(e) => write!(f, "kernel: {e}"),
            ImageError::Notes(e) => write!(f, "kernel Xen notes: {e}"),
            ImageError::Layout(e) => write!(f, "layout: {e}"),
        }
    }
}

fn elf_err(e: ElfError) -> ImageError {
    ImageError::Elf(alloc::format!("{e}"))
}
fn notes_err(e: XenNotesError) -> ImageError {
    ImageError::Notes(alloc::format!("{e}"))
}
fn layout_err(e: LayoutError) -> ImageError {
    ImageError::Layout(alloc::format!("{e}"))
}

/// The values only the hypervisor knows, which start_info carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Runtime {
    /// Machine frame of the domain's shared_info (getdomaininfo's `shared_info_frame`).
    pub shared_info_mfn: u64,
    /// The console event channel (0 until allocated).
    pub console_evtchn: u32,
}

/// A kernel prepared for a domain of `nr_pages` pages.
pub struct Image {
    /// The kernel's Xen notes.
    pub info: XenElfInfo,
    /// The start-of-day layout.
    pub layout: PvLayout,
    /// The bootstrap page tables.
    pub plan: PageTablePlan,
    /// The loaded kernel image from `virt_kstart` (segments placed, bss zero).
    kernel: Vec<u8>,
    /// Pseudo-physical address of `kernel[0]`.
    kernel_paddr: u64,
    cmdline: String,
}

impl Image {
    /// Parses `kernel` and lays out a domU of `nr_pages` pages with a ramdisk of
    /// `ramdisk_len` bytes.
    pub fn prepare(
        kernel: &[u8],
        ramdisk_len: Option<u64>,
        cmdline: &str,
        nr_pages: u64,
    ) -> Result<Image, ImageError> {
        let elf = ElfFile::parse(kernel, MAX_KERNEL_SPAN).map_err(elf_err)?;
        let info = parse_xen_elf_info(&elf, BootMode::Pv).map_err(notes_err)?;
        info.check_pv_boot(false, OFFERED_FEATURES)
            .map_err(notes_err)?;
        let mut req = LayoutRequest::from_info(&info, DomainKind::DomU, nr_pages, 1, ramdisk_len);
        // Frames from populate_physmap are not contiguous: 4 KiB p2m mappings only.
        req.p2m_superpages = PtLevel::L1;
        let layout = PvLayout::compute(&req).map_err(layout_err)?;
        let plan = layout.page_table_plan().map_err(layout_err)?;
        let (pstart, pend) = elf.paddr_range();
        let mut image = vec![0u8; (pend - pstart) as usize];
        elf.load_into(&mut image).map_err(elf_err)?;
        Ok(Image {
            kernel_paddr: info.virt_kstart - layout.v_start,
            kernel: image,
            info,
            layout,
            plan,
            cmdline: String::from(cmdline),
        })
    }

    /// Pages of the domain.
    pub fn nr_pages(&self) -> u64 {
        self.layout.nr_pages
    }

    /// The kernel's pages: (pfn, contents), the hypercall page filled with its stubs.
    pub fn kernel_pages(&self) -> Vec<(u64, PageBuf)> {
        let mut v = bytes_to_pages(self.kernel_paddr, &self.kernel);
        if let Some(pfn) = self
            .info
            .hypercall_page
            .and_then(|va| self.layout.bootstrap_pfn(va))
        {
            let hp = hypercall_page();
            match v.iter_mut().find(|(p, _)| *p == pfn) {
                Some((_, page)) => page.copy_from_slice(&hp),
                None => v.push((pfn, Box::new(hp))),
            }
        }
        v
    }

    /// The ramdisk's pages.
    pub fn ramdisk_pages(&self, ramdisk: &[u8]) -> Vec<(u64, PageBuf)> {
        let first = match self.layout.initrd {
            Some(InitrdLayout::Mapped(r)) => r.first_pfn,
            Some(InitrdLayout::Unmapped { first_pfn, .. }) => first_pfn,
            None => return Vec::new(),
        };
        bytes_to_pages(first * PAGE, ramdisk)
    }

    /// pfn of the console ring page.
    pub fn console_pfn(&self) -> u64 {
        self.layout.console.map_or(0, |r| r.first_pfn)
    }

    /// pfn of the start_info page.
    pub fn start_info_pfn(&self) -> u64 {
        self.layout.start_info.first_pfn
    }

    /// pfn of the root page table (CR3).
    pub fn l4_pfn(&self) -> u64 {
        self.plan.root_pfn
    }

    /// start_info as libxenguest fills it for a domU (no xenstore: `store_mfn` 0).
    pub fn start_info(&self, p2m: &[u64], rt: Runtime) -> StartInfo {
        let f = self.layout.start_info_fields();
        let mut si = StartInfo::default();
        let magic = b"xen-3.0-x86_64";
        si.magic[..magic.len()].copy_from_slice(magic);
        si.nr_pages = f.nr_pages;
        si.shared_info = rt.shared_info_mfn * PAGE;
        si.flags = f.flags;
        si.pt_base = f.pt_base;
        si.nr_pt_frames = f.nr_pt_frames;
        si.mfn_list = f.mfn_list;
        si.mod_start = f.mod_start;
        si.mod_len = f.mod_len;
        si.first_p2m_pfn = f.first_p2m_pfn;
        si.nr_p2m_frames = f.nr_p2m_frames;
        si.console_mfn = p2m.get(self.console_pfn() as usize).copied().unwrap_or(0);
        si.console_evtchn = rt.console_evtchn;
        let cl = self.cmdline.as_bytes();
        let n = cl.len().min(si.cmd_line.len() - 1);
        si.cmd_line[..n].copy_from_slice(&cl[..n]);
        si
    }

    /// The start_info page.
    pub fn start_info_page(&self, p2m: &[u64], rt: Runtime) -> (u64, PageBuf) {
        let mut page: PageBuf = Box::new([0; PAGE as usize]);
        let si = self.start_info(p2m, rt).to_vec();
        page[..si.len()].copy_from_slice(&si);
        (self.start_info_pfn(), page)
    }

    /// Every other start-of-day page: the p2m list, start_info, the (zeroed) xenstore and
    /// console pages, the bootstrap page tables (entries naming machine frames), the stack.
    pub fn boot_pages(&self, p2m: &[u64], rt: Runtime) -> Vec<(u64, PageBuf)> {
        let mut v = Vec::new();
        let list: Vec<u8> = p2m.iter().flat_map(|m| m.to_le_bytes()).collect();
        let p2m_pfn = match self.layout.p2m {
            P2mPlacement::Bootstrap(r) => r.first_pfn,
            P2mPlacement::Separate { first_pfn, .. } => first_pfn,
        };
        v.extend(bytes_to_pages(p2m_pfn * PAGE, &list));
        v.push(self.start_info_page(p2m, rt));
        for r in [
            self.layout.xenstore,
            self.layout.console,
            Some(self.layout.stack),
        ]
        .into_iter()
        .flatten()
        {
            v.push((r.first_pfn, Box::new([0; PAGE as usize])));
        }
        let mut tables: Vec<(u64, PageBuf)> = self
            .plan
            .frames
            .iter()
            .map(|f| (f.pfn, Box::new([0u8; PAGE as usize])))
            .collect();
        for e in &self.plan.entries {
            let (Some(&target), Some((_, page))) = (
                p2m.get(e.target_pfn as usize),
                tables.iter_mut().find(|(p, _)| *p == e.table_pfn),
            ) else {
                continue;
            };
            // Xen-internal flag bits are the hypervisor's to set, never a guest's.
            let pte = e.pte(target) & !PTE_GUEST_KERNEL;
            let at = usize::from(e.index) * 8;
            page[at..at + 8].copy_from_slice(&pte.to_le_bytes());
        }
        v.extend(tables);
        v
    }

    /// vCPU 0's `vcpu_guest_context` as libxenguest's `vcpu_x86_64` sets it: kernel mode,
    /// online, flat kernel segments, RIP the entry, RSP the end of the boot stack, RSI
    /// start_info, IF set, CR3 the L4's frame.
    pub fn vcpu_context(&self, l4_mfn: u64) -> VcpuGuestContext {
        let mut c = VcpuGuestContext {
            flags: VGCF_IN_KERNEL | VGCF_ONLINE,
            ..VcpuGuestContext::default()
        };
        c.user_regs.rip = self.info.entry;
        c.user_regs.rsp = self.layout.initial_rsp();
        c.user_regs.rsi = self.layout.initial_rsi();
        c.user_regs.rflags = 1 << 9;
        c.user_regs.cs = FLAT_KERNEL_CS;
        c.user_regs.ss = FLAT_KERNEL_SS;
        c.user_regs.ds = FLAT_KERNEL_DS;
        c.user_regs.es = FLAT_KERNEL_DS;
        c.user_regs.fs = FLAT_KERNEL_DS;
        c.user_regs.gs = FLAT_KERNEL_DS;
        c.kernel_ss = u64::from(FLAT_KERNEL_SS);
        c.kernel_sp = c.user_regs.rsp;
        c.ctrlreg[3] = dom0_interface::arch_x86::xen_pfn_to_cr3(l4_mfn);
        c
    }

    /// Frames (pfn, level) of the bootstrap page tables.
    pub fn table_pfns(&self) -> impl Iterator<Item = (u64, PtLevel)> + '_ {
        self.plan.frames.iter().map(|f| (f.pfn, f.level))
    }
}

/// Splits `data` placed at pseudo-physical `paddr` into whole pages (zero-filled).
pub fn bytes_to_pages(paddr: u64, data: &[u8]) -> Vec<(u64, PageBuf)> {
    let mut v: Vec<(u64, PageBuf)> = Vec::new();
    let mut done = 0usize;
    while done < data.len() {
        let at = paddr + done as u64;
        let pfn = at / PAGE;
        let off = (at % PAGE) as usize;
        let n = (PAGE as usize - off).min(data.len() - done);
        if v.last().is_none_or(|(p, _)| *p != pfn) {
            v.push((pfn, Box::new([0; PAGE as usize])));
        }
        if let Some((_, page)) = v.last_mut() {
            page[off..off + n].copy_from_slice(&data[done..done + n]);
        }
        done += n;
    }
    v
}

#[cfg(test)]
pub(crate) mod tests;
