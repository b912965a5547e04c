//! The PV domain builder (dom0 at boot; domUs later through the toolstack): loads a kernel
//! ELF and its initrd into a new domain's frames and writes the start-of-day state Xen's
//! `xen.h` defines — p2m list, start_info, bootstrap page tables, hypercall page, boot stack —
//! through a small [`BuildMemory`] trait, so the logic runs (and is tested) on the host.

use crate::elf::{ElfError, ElfFile};
use crate::pv_layout::{
    DomainKind, InitrdLayout, LayoutError, LayoutRequest, P2mPlacement, PtLevel, PvLayout,
    XEN_L4_END_SLOT, XEN_L4_FIRST_SLOT,
};
use crate::xen_notes::{
    parse_xen_elf_info, BootMode, XenElfInfo, XenNotesError, XENFEAT_PAE_PGDIR_ABOVE_4GB,
};
use alloc::vec::Vec;
use core::fmt;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::{StartInfo, HYPERVISOR_IRET, VMASST_TYPE_PAE_EXTENDED_CR3};

/// Largest kernel image span the builder accepts.
pub const MAX_KERNEL_SPAN: u64 = 1 << 30;
const PAGE: u64 = 4096;

/// Machine memory as the builder sees it.
pub trait BuildMemory {
    /// Allocates `n` frames (any machine addresses); their contents are undefined.
    fn alloc_frames(&mut self, n: u64) -> Option<Vec<u64>>;
    /// Gives frames back (a failed build leaves nothing behind).
    fn free_frames(&mut self, mfns: &[u64]);
    /// Writes `data` into frame `mfn` at byte `offset` (`offset + data.len() <= 4096`).
    fn write(&mut self, mfn: u64, offset: usize, data: &[u8]);
    /// Zeroes frame `mfn`.
    fn zero(&mut self, mfn: u64);
    /// The hypervisor's L4 entries for slots 256..272, which every PV root carries.
    fn hypervisor_l4_entries(&self) -> [u64; XEN_L4_END_SLOT - XEN_L4_FIRST_SLOT];
}

/// What to build.
pub struct BuildRequest<'a> {
    /// The kernel ELF.
    pub kernel: &'a [u8],
    /// The initrd (dom0: module 2), if any.
    pub initrd: Option<&'a [u8]>,
    /// The guest command line.
    pub cmdline: &'a str,
    /// Pages of RAM for the domain.
    pub nr_pages: u64,
    /// vCPUs.
    pub nr_vcpus: u32,
    /// dom0 or a domU.
    pub kind: DomainKind,
}

/// Why a build failed (one clear line each).
#[derive(Debug)]
pub enum BuildError {
    /// The kernel is not a loadable ELF.
    Elf(ElfError),
    /// The kernel's Xen notes are missing or unusable.
    Notes(XenNotesError),
    /// The start-of-day layout does not fit.
    Layout(LayoutError),
    /// Not enough free memory.
    OutOfMemory {
        /// Frames wanted.
        wanted: u64,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Elf(e) => write!(f, "{e}"),
            BuildError::Notes(e) => write!(f, "{e}"),
            BuildError::Layout(e) => write!(f, "{e}"),
            BuildError::OutOfMemory { wanted } => {
                write!(
                    f,
                    "not enough memory for {wanted} pages ({} MiB)",
                    (wanted * PAGE) >> 20
                )
            }
        }
    }
}

/// The result: everything needed to register and start the domain.
#[derive(Debug)]
pub struct BuiltDomain {
    /// pfn → mfn.
    pub p2m: Vec<u64>,
    /// Machine frame of the shared_info page (outside the domain's pfn space).
    pub shared_info_mfn: u64,
    /// Machine frame of the initial L4 (the kernel's CR3).
    pub l4_mfn: u64,
    /// Page-table frames (mfn, level) of the bootstrap tables.
    pub pt_frames: Vec<(u64, PtLevel)>,
    /// Entry point (RIP).
    pub entry: u64,
    /// Initial RSP.
    pub stack: u64,
    /// Initial RSI: start_info's virtual address.
    pub start_info_va: u64,
    /// VMASST bits the kernel's notes ask for.
    pub vm_assist: u64,
    /// The kernel's notes.
    pub info: XenElfInfo,
    /// The layout (for the builder's log lines).
    pub layout: PvLayout,
    /// The bootstrap page tables written (for the frame table's registration).
    pub plan: crate::pv_layout::PageTablePlan,
}

/// The 64-bit PV hypercall page: 128 stubs `push %rcx; push %r11; mov $nr,%eax; syscall;
/// pop %r11; pop %rcx; ret`, `iret` without the return, the rest `int3`, as Xen fills it.
pub fn hypercall_page() -> [u8; 4096] {
    let mut p = [0xCCu8; 4096];
    for nr in 0..128u32 {
        let s = &mut p[(nr as usize) * 32..(nr as usize) * 32 + 32];
        if nr == HYPERVISOR_IRET {
            s[0] = 0x51;
            s[1..3].copy_from_slice(&[0x41, 0x53]);
            s[3] = 0x50; // push %rax
            s[4] = 0xB8;
            s[5..9].copy_from_slice(&nr.to_le_bytes());
            s[9..11].copy_from_slice(&[0x0F, 0x05]);
        } else {
            s[0] = 0x51;
            s[1..3].copy_from_slice(&[0x41, 0x53]);
            s[3] = 0xB8;
            s[4..8].copy_from_slice(&nr.to_le_bytes());
            s[8..10].copy_from_slice(&[0x0F, 0x05]);
            s[10..12].copy_from_slice(&[0x41, 0x5B]);
            s[12] = 0x59;
            s[13] = 0xC3;
        }
    }
    p
}

struct Writer<'m> {
    mem: &'m mut dyn BuildMemory,
    p2m: Vec<u64>,
}

impl Writer<'_> {
    /// Writes `data` starting at pseudo-physical byte address `paddr`.
    fn write_phys(&mut self, paddr: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = paddr + done as u64;
            let off = (at % PAGE) as usize;
            let n = (PAGE as usize - off).min(data.len() - done);
            if let Some(&mfn) = self.p2m.get((at / PAGE) as usize) {
                self.mem.write(mfn, off, &data[done..done + n]);
            }
            done += n;
        }
    }

    /// Zeroes `len` bytes starting at pseudo-physical byte address `paddr`.
    fn zero_phys(&mut self, paddr: u64, len: u64) {
        const ZEROS: [u8; PAGE as usize] = [0; PAGE as usize];
        let mut done = 0u64;
        while done < len {
            let at = paddr + done;
            let n = (PAGE - at % PAGE).min(len - done);
            self.write_phys(at, &ZEROS[..n as usize]);
            done += n;
        }
    }
}

/// Builds a PV domain in freshly allocated frames. On error every frame is given back.
pub fn build_pv(
    req: &BuildRequest<'_>,
    mem: &mut dyn BuildMemory,
) -> Result<BuiltDomain, BuildError> {
    let elf = ElfFile::parse(req.kernel, MAX_KERNEL_SPAN).map_err(BuildError::Elf)?;
    let info = parse_xen_elf_info(&elf, BootMode::Pv).map_err(BuildError::Notes)?;
    let dom0 = req.kind == DomainKind::Dom0;
    info.check_pv_boot(dom0, u32::MAX)
        .map_err(BuildError::Notes)?;
    let mut lreq = LayoutRequest::from_info(
        &info,
        req.kind,
        req.nr_pages,
        req.nr_vcpus,
        req.initrd.map(|i| i.len() as u64),
    );
    // The builder's frames need not be contiguous: map the p2m with 4 KiB pages.
    lreq.p2m_superpages = PtLevel::L1;
    let layout = PvLayout::compute(&lreq).map_err(BuildError::Layout)?;
    let plan = layout.page_table_plan().map_err(BuildError::Layout)?;

    let p2m = mem
        .alloc_frames(req.nr_pages)
        .ok_or(BuildError::OutOfMemory {
            wanted: req.nr_pages,
        })?;
    let Some(shared) = mem.alloc_frames(1) else {
        mem.free_frames(&p2m);
        return Err(BuildError::OutOfMemory {
            wanted: req.nr_pages + 1,
        });
    };
    let shared_info_mfn = shared[0];
    let mut w = Writer { mem, p2m };
    for pfn in 0..layout.alloc_pages.min(req.nr_pages) {
        let mfn = w.p2m[pfn as usize];
        w.mem.zero(mfn);
    }
    w.mem.zero(shared_info_mfn);

    // Kernel: ELF physical addresses are offsets from VIRT_BASE. Each segment goes straight
    // into the domain's frames (a kernel image of tens of MiB, Linux's ~58 MiB, would not
    // fit in the hypervisor heap as one buffer); the part past p_filesz is zeroed.
    let (pstart, _) = elf.paddr_range();
    let kbase = info.virt_kstart - layout.v_start;
    for seg in elf.load_segments() {
        let at = kbase + (seg.header.p_paddr - pstart);
        let file = seg.data.len().min(seg.header.p_memsz as usize);
        w.write_phys(at, &seg.data[..file]);
        w.zero_phys(at + file as u64, seg.header.p_memsz - file as u64);
    }

    // Initrd.
    match (layout.initrd, req.initrd) {
        (Some(InitrdLayout::Mapped(r)), Some(data)) => w.write_phys(r.first_pfn * PAGE, data),
        (Some(InitrdLayout::Unmapped { first_pfn, .. }), Some(data)) => {
            w.write_phys(first_pfn * PAGE, data)
        }
        _ => {}
    }

    // p2m list.
    let list: Vec<u8> = w.p2m.iter().flat_map(|m| m.to_le_bytes()).collect();
    let p2m_pfn = match layout.p2m {
        P2mPlacement::Bootstrap(r) => r.first_pfn,
        P2mPlacement::Separate { vstart, .. } => plan
            .translate(vstart)
            .map_or(layout.first_p2m_pfn, |(pfn, _)| pfn),
    };
    w.write_phys(p2m_pfn * PAGE, &list);

    // Page tables.
    for e in &plan.entries {
        let (Some(&table), Some(&target)) = (
            w.p2m.get(e.table_pfn as usize),
            w.p2m.get(e.target_pfn as usize),
        ) else {
            continue;
        };
        w.mem.write(
            table,
            usize::from(e.index) * 8,
            &e.pte(target).to_le_bytes(),
        );
    }
    let l4_mfn = w.p2m[plan.root_pfn as usize];
    let slots = w.mem.hypervisor_l4_entries();
    for (i, v) in slots.iter().enumerate() {
        w.mem
            .write(l4_mfn, (XEN_L4_FIRST_SLOT + i) * 8, &v.to_le_bytes());
    }

    // Hypercall page.
    if let Some(va) = info.hypercall_page {
        if let Some(pfn) = layout.bootstrap_pfn(va) {
            w.write_phys(pfn * PAGE, &hypercall_page());
        }
    }

    // start_info.
    let f = layout.start_info_fields();
    let pae = !info.pae_mode.is_empty() && info.pae_mode != "no";
    let mut si = StartInfo::default();
    let magic: &[u8] = if pae {
        b"xen-3.0-x86_64p"
    } else {
        b"xen-3.0-x86_64"
    };
    si.magic[..magic.len()].copy_from_slice(magic);
    si.nr_pages = f.nr_pages;
    si.shared_info = shared_info_mfn * PAGE;
    // dom0 also learns that the hypervisor drives processor power states (Px|Cx).
    si.flags = f.flags | if dom0 { 0x300 } else { 0 };
    si.pt_base = f.pt_base;
    si.nr_pt_frames = f.nr_pt_frames;
    si.mfn_list = f.mfn_list;
    si.mod_start = f.mod_start;
    si.mod_len = f.mod_len;
    let cl = req.cmdline.as_bytes();
    let n = cl.len().min(si.cmd_line.len() - 1);
    si.cmd_line[..n].copy_from_slice(&cl[..n]);
    si.first_p2m_pfn = f.first_p2m_pfn;
    si.nr_p2m_frames = f.nr_p2m_frames;
    w.write_phys(layout.start_info.first_pfn * PAGE, &si.to_vec());

    // shared_info: events masked on every vCPU until the guest enables them.
    for v in 0..32usize {
        w.mem.write(shared_info_mfn, v * 64 + 1, &[1]);
    }

    let pt_frames = plan
        .frames
        .iter()
        .filter(|fr| fr.bootstrap)
        .filter_map(|fr| w.p2m.get(fr.pfn as usize).map(|&m| (m, fr.level)))
        .collect();
    let vm_assist = if info.features.supports(XENFEAT_PAE_PGDIR_ABOVE_4GB) {
        1 << VMASST_TYPE_PAE_EXTENDED_CR3
    } else {
        0
    };
    Ok(BuiltDomain {
        p2m: w.p2m,
        shared_info_mfn,
        l4_mfn,
        pt_frames,
        entry: info.entry,
        stack: layout.initial_rsp(),
        start_info_va: layout.initial_rsi(),
        vm_assist,
        info,
        layout,
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::test_image::{pv_kernel, ImageBuilder};
    use alloc::collections::BTreeMap;

    const VBASE: u64 = 0xffff_ffff_8000_0000;

    /// Machine memory: frames handed out from 0x1000 upwards (in reverse order, so the
    /// builder cannot assume contiguity), contents in a map.
    struct FakeMachine {
        next: u64,
        limit: u64,
        frames: BTreeMap<u64, [u8; 4096]>,
        freed: Vec<u64>,
    }

    impl FakeMachine {
        fn new(limit: u64) -> Self {
            FakeMachine {
                next: 0x100,
                limit,
                frames: BTreeMap::new(),
                freed: Vec::new(),
            }
        }
        fn read(&self, mfn: u64, off: usize, len: usize) -> Vec<u8> {
            self.frames[&mfn][off..off + len].to_vec()
        }
        fn u64_at(&self, mfn: u64, off: usize) -> u64 {
            u64::from_le_bytes(self.read(mfn, off, 8).try_into().unwrap())
        }
    }

    impl BuildMemory for FakeMachine {
        fn alloc_frames(&mut self, n: u64) -> Option<Vec<u64>> {
            if self.next + n > self.limit {
                return None;
            }
            let v: Vec<u64> = (self.next..self.next + n).rev().collect();
            self.next += n;
            for &m in &v {
                self.frames.insert(m, [0xEE; 4096]);
            }
            Some(v)
        }
        fn free_frames(&mut self, mfns: &[u64]) {
            self.freed.extend_from_slice(mfns);
        }
        fn write(&mut self, mfn: u64, offset: usize, data: &[u8]) {
            self.frames.get_mut(&mfn).expect("unallocated frame")[offset..offset + data.len()]
                .copy_from_slice(data);
        }
        fn zero(&mut self, mfn: u64) {
            self.frames.insert(mfn, [0; 4096]);
        }
        fn hypervisor_l4_entries(&self) -> [u64; 16] {
            core::array::from_fn(|i| 0xABC0_0000 + i as u64)
        }
    }

    fn kernel() -> Vec<u8> {
        let mut code = alloc::vec![0x90u8; 0x3000];
        code[0] = 0xF4;
        pv_kernel(code, Some(b"!writable_page_tables|pae_pgdir_above_4gb\0"))
    }

    fn request<'a>(k: &'a [u8], initrd: Option<&'a [u8]>, pages: u64) -> BuildRequest<'a> {
        BuildRequest {
            kernel: k,
            initrd,
            cmdline: "console=hvc0 root=/dev/ram",
            nr_pages: pages,
            nr_vcpus: 2,
            kind: DomainKind::Dom0,
        }
    }

    /// Translates `va` through the built tables like the MMU: (mfn, flags of the leaf).
    fn walk(m: &FakeMachine, l4: u64, va: u64) -> Option<(u64, u64)> {
        let mut t = l4;
        for level in (0..4).rev() {
            let e = m.u64_at(t, (((va >> (12 + 9 * level)) & 511) * 8) as usize);
            if e & 1 == 0 {
                return None;
            }
            if level == 0 {
                return Some(((e >> 12) & 0xFF_FFFF_FFFF, e & 0xFFF));
            }
            t = (e >> 12) & 0xFF_FFFF_FFFF;
        }
        None
    }

    #[test]
    fn builds_a_bootable_layout() {
        let k = kernel();
        let initrd = alloc::vec![0x5Au8; 5000];
        let mut m = FakeMachine::new(1 << 20);
        let d = build_pv(&request(&k, Some(&initrd), 16384), &mut m).expect("build");
        assert_eq!(d.p2m.len(), 16384);
        assert_eq!(d.entry, VBASE);
        // The kernel's first byte is where the entry maps.
        let (mfn, flags) = walk(&m, d.l4_mfn, VBASE).expect("entry mapped");
        assert_eq!(m.read(mfn, 0, 1), alloc::vec![0xF4]);
        assert!(
            flags & 0x4 != 0,
            "guest kernel pages are user-accessible (ring 3)"
        );
        // The hypercall page holds Xen's stubs.
        let (hc, _) = walk(&m, d.l4_mfn, VBASE + 0x1000).unwrap();
        assert_eq!(
            m.read(hc, 17 * 32, 14),
            [0x51, 0x41, 0x53, 0xB8, 17, 0, 0, 0, 0x0F, 0x05, 0x41, 0x5B, 0x59, 0xC3]
        );
        assert_eq!(
            m.read(hc, 23 * 32, 11),
            [0x51, 0x41, 0x53, 0x50, 0xB8, 23, 0, 0, 0, 0x0F, 0x05]
        );
        // BSS beyond the file is zero.
        let (bss, _) = walk(&m, d.l4_mfn, VBASE + 0x3000).unwrap();
        assert!(m.read(bss, 0, 4096).iter().all(|&b| b == 0));
        // start_info.
        let (si, _) = walk(&m, d.l4_mfn, d.start_info_va).unwrap();
        let si = StartInfo::read_from(&m.read(si, 0, StartInfo::SIZE)).unwrap();
        assert_eq!(&si.magic[..15], b"xen-3.0-x86_64p");
        assert_eq!(si.nr_pages, 16384);
        assert_eq!(si.flags & 3, 3);
        assert_eq!(si.shared_info, d.shared_info_mfn * 4096);
        assert_eq!(si.mod_len, 5000);
        assert!(si.cmd_line.starts_with(b"console=hvc0 root=/dev/ram\0"));
        // The initrd is mapped at mod_start; the p2m list at mfn_list maps pfn i to p2m[i].
        let (rd, _) = walk(&m, d.l4_mfn, si.mod_start).unwrap();
        assert_eq!(m.read(rd, 0, 4), [0x5A; 4]);
        for pfn in [0u64, 1, 100, 16383] {
            let va = si.mfn_list + pfn * 8;
            let (pm, _) = walk(&m, d.l4_mfn, va).unwrap();
            assert_eq!(m.u64_at(pm, (va & 0xFFF) as usize), d.p2m[pfn as usize]);
        }
        // Page tables are mapped read-only at pt_base; the L4 carries the hypervisor slots.
        let (pt, ptf) = walk(&m, d.l4_mfn, si.pt_base).unwrap();
        assert_eq!(pt, d.l4_mfn);
        assert_eq!(ptf & 2, 0);
        assert_eq!(m.u64_at(d.l4_mfn, 256 * 8), 0xABC0_0000);
        assert_eq!(m.u64_at(d.l4_mfn, 271 * 8), 0xABC0_000F);
        // Events start masked; the stack is in the bootstrap region.
        assert_eq!(m.read(d.shared_info_mfn, 1, 1), [1]);
        assert!(walk(&m, d.l4_mfn, d.stack - 8).is_some());
        assert_eq!(d.vm_assist, 1 << VMASST_TYPE_PAE_EXTENDED_CR3);
    }

    #[test]
    fn bad_kernels_are_refused_cleanly() {
        let mut m = FakeMachine::new(1 << 20);
        let e = build_pv(
            &request(b"not an elf at all, just text", None, 4096),
            &mut m,
        )
        .unwrap_err();
        assert!(matches!(e, BuildError::Elf(_)), "{e}");
        let mut elf32 = kernel();
        elf32[4] = 1; // ELFCLASS32
        assert!(matches!(
            build_pv(&request(&elf32, None, 4096), &mut m),
            Err(BuildError::Elf(_))
        ));
        let plain = ImageBuilder::simple(VBASE, 0, alloc::vec![0; 64], 0x1000).build();
        assert!(matches!(
            build_pv(&request(&plain, None, 4096), &mut m),
            Err(BuildError::Notes(_))
        ));
        assert_eq!(m.next, 0x100, "nothing allocated for refused kernels");
    }

    #[test]
    fn out_of_memory_and_too_small_domains() {
        let k = kernel();
        let mut m = FakeMachine::new(0x100 + 100);
        assert!(matches!(
            build_pv(&request(&k, None, 4096), &mut m),
            Err(BuildError::OutOfMemory { .. })
        ));
        let mut m = FakeMachine::new(1 << 20);
        assert!(matches!(
            build_pv(&request(&k, None, 8), &mut m),
            Err(BuildError::Layout(_))
        ));
    }
}
