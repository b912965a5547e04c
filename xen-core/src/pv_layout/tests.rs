//! Layouts checked by hand against the xen.h rules and dom0_build.c, plus property tests.

use super::*;
use crate::elf::test_image::Rng;
use alloc::string::ToString;
use alloc::vec::Vec;
use hashbrown::{HashMap, HashSet};

const V: u64 = 0xffff_ffff_8000_0000;
const MIB: u64 = 1 << 20;

fn linux_dom0(nr_vcpus: u32) -> LayoutRequest {
    LayoutRequest {
        kind: DomainKind::Dom0,
        virt_base: V,
        virt_kstart: V + 16 * MIB,
        virt_kend: V + 18 * MIB,
        initrd: None,
        nr_pages: 16384, // 64 MiB
        nr_vcpus,
        init_p2m: None,
        hypercall_page: Some(V + 16 * MIB + 0x1000),
        p2m_superpages: PtLevel::L2,
    }
}

/// Fast page-table walker over a plan.
struct Walker {
    root: u64,
    map: HashMap<(u64, u16), PtEntry>,
}

impl Walker {
    fn new(plan: &PageTablePlan) -> Self {
        let mut map = HashMap::new();
        for e in &plan.entries {
            assert!(
                map.insert((e.table_pfn, e.index), *e).is_none(),
                "entry written twice: {e:?}"
            );
        }
        Self {
            root: plan.root_pfn,
            map,
        }
    }

    fn translate(&self, va: u64) -> Option<(u64, u64)> {
        let mut table = self.root;
        let mut level = PtLevel::L4;
        loop {
            let e = self.map.get(&(table, level.index(va)))?;
            assert_eq!(e.table_level, level);
            if e.is_leaf() {
                return Some((
                    e.target_pfn + (va & (level.entry_span() - 1)) / PAGE_SIZE,
                    e.flags,
                ));
            }
            table = e.target_pfn;
            level = level.below()?;
        }
    }
}

#[test]
fn linux_dom0_64mib_by_hand() {
    for vcpus in [1, 4] {
        let l = PvLayout::compute(&linux_dom0(vcpus)).unwrap();
        assert_eq!(l.nr_vcpus, vcpus);
        assert_eq!(l.v_start, V);
        assert_eq!(
            l.kernel,
            Region {
                vstart: V + 0x100_0000,
                vend: V + 0x120_0000,
                first_pfn: 0x1000
            }
        );
        assert_eq!(l.initrd, None);
        // 16384 pages * 8 bytes = 128 KiB of p2m right after the kernel.
        assert_eq!(
            l.p2m,
            P2mPlacement::Bootstrap(Region {
                vstart: V + 0x120_0000,
                vend: V + 0x122_0000,
                first_pfn: 0x1200
            })
        );
        // start_info (1168) + VGA console info (40) = 0x4b8 bytes.
        assert_eq!(
            l.start_info,
            Region {
                vstart: V + 0x122_0000,
                vend: V + 0x122_04b8,
                first_pfn: 0x1220
            }
        );
        assert_eq!((l.xenstore, l.console), (None, None));
        // 20 MiB region: 1 L4 + 1 L3 + 1 L2 + 10 L1 = 13 frames.
        assert_eq!(l.nr_pt_frames, 13);
        assert_eq!(l.page_tables.vstart, V + 0x122_1000);
        assert_eq!(l.page_tables.vend, V + 0x122_e000);
        assert_eq!(l.stack.vstart, V + 0x122_e000);
        assert_eq!(l.initial_rsp(), V + 0x122_f000);
        assert_eq!(l.initial_rsi(), V + 0x122_0000);
        // Next 4 MiB boundary leaves 0x1d1000 >= 512 KiB of padding.
        assert_eq!(l.v_end, V + 0x140_0000);
        assert_eq!(l.bootstrap_pages, 5120);
        assert_eq!(l.alloc_pages, 8192);
        let si = l.start_info_fields();
        assert_eq!(
            si,
            StartInfoFields {
                nr_pages: 16384,
                flags: SIF_PRIVILEGED | SIF_INITDOMAIN,
                pt_base: V + 0x122_1000,
                nr_pt_frames: 13,
                mfn_list: V + 0x120_0000,
                mod_start: 0,
                mod_len: 0,
                first_p2m_pfn: 8192,
                nr_p2m_frames: 0,
            }
        );

        let plan = l.page_table_plan().unwrap();
        assert_eq!(plan.root_pfn, 0x1221);
        let frames: Vec<_> = plan.frames.iter().map(|f| (f.pfn, f.level)).collect();
        let mut expect = alloc::vec![
            (0x1221, PtLevel::L4),
            (0x1222, PtLevel::L1),
            (0x1223, PtLevel::L2),
            (0x1224, PtLevel::L3),
        ];
        expect.extend((0x1225..0x122e).map(|p| (p, PtLevel::L1)));
        assert_eq!(frames, expect);
        let find = |table: u64, index: u16| {
            plan.entries
                .iter()
                .find(|e| e.table_pfn == table && e.index == index)
                .map(|e| (e.target_pfn, e.flags))
        };
        assert_eq!(find(0x1221, 511), Some((0x1224, TABLE_PROT)));
        assert_eq!(find(0x1224, 510), Some((0x1223, TABLE_PROT)));
        assert_eq!(find(0x1223, 0), Some((0x1222, TABLE_PROT)));
        assert_eq!(find(0x1223, 9), Some((0x122d, TABLE_PROT)));
        assert_eq!(find(0x1223, 10), None);
        assert_eq!(plan.translate(V), Some((0, L1_PROT)));
        assert_eq!(
            plan.translate(V + 0x122_1000),
            Some((0x1221, L1_PROT & !PTE_RW))
        );
        assert_eq!(
            plan.translate(V + 0x122_d000),
            Some((0x122d, L1_PROT & !PTE_RW))
        );
        assert_eq!(plan.translate(V + 0x122_e000), Some((0x122e, L1_PROT)));
        assert_eq!(plan.translate(V + 0x13f_f000), Some((0x13ff, L1_PROT)));
        assert_eq!(plan.translate(V + 0x140_0000), None);
        assert_eq!(plan.entries.len(), 3 + 9 + 5120);
    }
}

#[test]
fn linux_dom0_init_p2m_and_unmapped_initrd_by_hand() {
    let mut req = linux_dom0(4);
    req.init_p2m = Some(0x80_0000_0000);
    let initrd_len = 5 * MIB + 100;
    req.initrd = Some(InitrdSpec {
        len: initrd_len,
        mapped: false,
    });
    let l = PvLayout::compute(&req).unwrap();
    assert_eq!(l.start_info.vstart, V + 0x120_0000);
    assert_eq!(l.page_tables.vstart, V + 0x120_1000);
    assert_eq!(l.nr_pt_frames, 13);
    assert_eq!(l.stack.vstart, V + 0x120_e000);
    assert_eq!(l.v_end, V + 0x140_0000);
    assert_eq!(l.alloc_pages, 8192);
    assert_eq!(
        l.initrd,
        Some(InitrdLayout::Unmapped {
            first_pfn: 8192,
            nr_pages: 1281,
            len: initrd_len
        })
    );
    // p2m: L3, L2, L1 then 32 data pages, from pfn 8192 + 1281.
    assert_eq!(
        l.p2m,
        P2mPlacement::Separate {
            vstart: 0x80_0000_0000,
            vend: 0x80_0002_0000,
            first_pfn: 9473,
            nr_frames: 35
        }
    );
    let si = l.start_info_fields();
    assert_eq!(
        si.flags,
        SIF_PRIVILEGED | SIF_INITDOMAIN | SIF_MOD_START_PFN
    );
    assert_eq!((si.mod_start, si.mod_len), (8192, initrd_len));
    assert_eq!(si.mfn_list, 0x80_0000_0000);
    assert_eq!((si.first_p2m_pfn, si.nr_p2m_frames), (9473, 35));

    let plan = l.page_table_plan().unwrap();
    let p2m_frames: Vec<_> = plan
        .frames
        .iter()
        .filter(|f| !f.bootstrap)
        .map(|f| (f.pfn, f.level))
        .collect();
    assert_eq!(
        p2m_frames,
        [
            (9473, PtLevel::L3),
            (9474, PtLevel::L2),
            (9475, PtLevel::L1)
        ]
    );
    assert_eq!(
        plan.translate(0x80_0000_0000),
        Some((9476, L1_PROT | PTE_DIRTY))
    );
    assert_eq!(
        plan.translate(0x80_0001_f000),
        Some((9507, L1_PROT | PTE_DIRTY))
    );
    assert_eq!(plan.translate(0x80_0002_0000), None);
    let root = plan.root_pfn;
    assert!(plan
        .entries
        .iter()
        .any(|e| e.table_pfn == root && e.index == 1 && e.target_pfn == 9473));
}

#[test]
fn mapped_initrd_by_hand() {
    let mut req = linux_dom0(1);
    req.initrd = Some(InitrdSpec {
        len: 3 * MIB,
        mapped: true,
    });
    let l = PvLayout::compute(&req).unwrap();
    assert_eq!(
        l.initrd,
        Some(InitrdLayout::Mapped(Region {
            vstart: V + 0x120_0000,
            vend: V + 0x150_0000,
            first_pfn: 0x1200
        }))
    );
    assert_eq!(l.mfn_list(), V + 0x150_0000);
    assert_eq!(l.page_tables.vstart, V + 0x152_1000);
    assert_eq!(l.nr_pt_frames, 15);
    assert_eq!(l.stack.vstart, V + 0x153_0000);
    assert_eq!(l.v_end, V + 0x180_0000);
    // (24 MiB - 3 MiB) rounds up to 8192 pages, plus 768 initrd pages.
    assert_eq!(l.alloc_pages, 8192);
    assert_eq!(l.first_p2m_pfn, 8960);
    let si = l.start_info_fields();
    assert_eq!(
        (si.mod_start, si.mod_len, si.flags),
        (V + 0x120_0000, 3 * MIB, 3)
    );
}

#[test]
fn domu_gets_xenstore_and_console_pages() {
    let req = LayoutRequest {
        kind: DomainKind::DomU,
        virt_base: 0,
        virt_kstart: 0,
        virt_kend: 0x5_0000,
        initrd: None,
        nr_pages: 8192,
        nr_vcpus: 2,
        init_p2m: None,
        hypercall_page: Some(0x2000),
        p2m_superpages: PtLevel::L1,
    };
    let l = PvLayout::compute(&req).unwrap();
    assert_eq!(l.mfn_list(), 0x5_0000);
    assert_eq!(l.start_info.vstart, 0x6_0000);
    assert_eq!(l.start_info.vend, 0x6_0000 + START_INFO_SIZE);
    assert_eq!(l.xenstore.unwrap().vstart, 0x6_1000);
    assert_eq!(l.xenstore.unwrap().first_pfn, 0x61);
    assert_eq!(l.console.unwrap().vstart, 0x6_2000);
    assert_eq!(l.page_tables.vstart, 0x6_3000);
    // 4 MiB from 0: L4 + L3 + L2 + 2 L1.
    assert_eq!(l.nr_pt_frames, 5);
    assert_eq!(l.stack.vstart, 0x6_8000);
    assert_eq!(l.v_end, 4 * MIB);
    assert_eq!(l.alloc_pages, 1024);
    assert_eq!(l.start_info_fields().flags, 0);
}

#[test]
fn padding_rule_adds_4mib() {
    let req = LayoutRequest {
        kind: DomainKind::Dom0,
        virt_base: 0,
        virt_kstart: 0,
        virt_kend: 0x3a_0000,
        initrd: None,
        nr_pages: 4096,
        nr_vcpus: 1,
        init_p2m: None,
        hypercall_page: None,
        p2m_superpages: PtLevel::L2,
    };
    let l = PvLayout::compute(&req).unwrap();
    assert_eq!(l.start_info.vstart, 0x3a_8000);
    assert_eq!(l.page_tables.vstart, 0x3a_9000);
    assert_eq!(l.nr_pt_frames, 7);
    assert_eq!(l.stack.vend, 0x3b_1000);
    // 0x400000 - 0x3b1000 < 512 KiB, so the region grows to 8 MiB.
    assert_eq!(l.v_end, 8 * MIB);
}

#[test]
fn layout_errors() {
    let ok = linux_dom0(1);

    let err = |f: &dyn Fn(&mut LayoutRequest)| {
        let mut r = ok;
        f(&mut r);
        PvLayout::compute(&r).unwrap_err()
    };
    assert_eq!(err(&|r| r.nr_vcpus = 0), LayoutError::BadVcpuCount(0));
    assert_eq!(
        err(&|r| r.nr_vcpus = MAX_PV_VCPUS + 1),
        LayoutError::BadVcpuCount(MAX_PV_VCPUS + 1)
    );
    assert_eq!(
        err(&|r| r.virt_base = V + 1),
        LayoutError::MisalignedVirtBase(V + 1)
    );
    assert!(matches!(
        err(&|r| r.virt_kstart = V - 0x1000),
        LayoutError::BadKernelRange { .. }
    ));
    assert_eq!(
        err(&|r| r.nr_pages = 4096),
        LayoutError::TooSmall {
            needed: 8192,
            nr_pages: 4096
        }
    );
    assert!(matches!(
        err(&|r| {
            r.virt_base = HYPERVISOR_VIRT_START + 0x4000_0000;
            r.virt_kstart = r.virt_base;
            r.virt_kend = r.virt_base + MIB;
        }),
        LayoutError::HypervisorHole { .. }
    ));
    assert!(matches!(
        err(&|r| {
            // Less than 512 KiB below 2^47: the padding pushes v_end past it.
            r.virt_base = CANONICAL_LOW_END - 0x4_0000;
            r.virt_kstart = r.virt_base;
            r.virt_kend = r.virt_base + 0x1000;
            r.hypercall_page = None;
        }),
        LayoutError::NonCanonical { .. }
    ));
    // Ending exactly at the top of the lower half is fine.
    let mut r = ok;
    r.virt_base = CANONICAL_LOW_END - 4 * MIB;
    r.virt_kstart = r.virt_base;
    r.virt_kend = r.virt_base + MIB;
    r.hypercall_page = None;
    assert_eq!(PvLayout::compute(&r).unwrap().v_end, CANONICAL_LOW_END);
    assert_eq!(
        err(&|r| {
            r.virt_base = 0xffff_ffff_ffc0_0000;
            r.virt_kstart = r.virt_base;
            r.virt_kend = r.virt_base + 0x1000;
        }),
        LayoutError::Overflow
    );
    assert_eq!(
        err(&|r| r.hypercall_page = Some(V + 20 * MIB)),
        LayoutError::BadHypercallPage(V + 20 * MIB)
    );
    assert_eq!(
        err(&|r| r.init_p2m = Some(V + 20 * MIB)),
        LayoutError::P2mOverlapsBootstrap {
            p2m_base: V + 20 * MIB
        }
    );
    assert!(matches!(
        err(&|r| r.init_p2m = Some(HYPERVISOR_VIRT_START)),
        LayoutError::HypervisorHole { .. }
    ));
    assert_eq!(
        err(&|r| {
            r.init_p2m = Some(0x80_0000_0000);
            r.nr_pages = 8200;
        }),
        // 8192 allocated + 17 p2m pages (8200 * 8 bytes) + 3 tables.
        LayoutError::P2mTooSmall {
            needed: 8192 + 17 + 3,
            nr_pages: 8200
        }
    );
    for e in [
        LayoutError::Overflow,
        LayoutError::TooSmall {
            needed: 2,
            nr_pages: 1,
        },
        LayoutError::HypervisorHole { start: 0, end: 1 },
    ] {
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn from_notes_request() {
    use crate::xen_notes::{BootMode, XenElfInfo};
    let mut notes = Vec::new();
    let xen = |t, d: &[u8]| crate::elf::test_image::note_bytes(b"Xen", t, d);
    use dom0_interface::elfnote as n;
    notes.extend(xen(n::XEN_ELFNOTE_LOADER, b"generic\0"));
    notes.extend(xen(n::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"));
    notes.extend(xen(n::XEN_ELFNOTE_VIRT_BASE, &V.to_le_bytes()));
    notes.extend(xen(n::XEN_ELFNOTE_MOD_START_PFN, &1u32.to_le_bytes()));
    let mut b = crate::elf::test_image::ImageBuilder::simple(
        V + 16 * MIB,
        16 * MIB,
        alloc::vec![0; 16],
        2 * MIB,
    );
    b.note_segment = Some(notes);
    let img = b.build();
    let elf = crate::elf::ElfFile::parse(&img, 1 << 30).unwrap();
    let info: XenElfInfo = crate::xen_notes::parse_xen_elf_info(&elf, BootMode::Pv).unwrap();
    let req = LayoutRequest::from_info(&info, DomainKind::Dom0, 16384, 1, Some(4096));
    assert_eq!(req.virt_kstart, V + 16 * MIB);
    assert_eq!(req.virt_kend, V + 18 * MIB);
    assert_eq!(
        req.initrd,
        Some(InitrdSpec {
            len: 4096,
            mapped: false
        })
    );
    let l = PvLayout::compute(&req).unwrap();
    assert!(matches!(l.initrd, Some(InitrdLayout::Unmapped { .. })));
}

/// Every page of `[vstart, vend)`.
fn pages(vstart: u64, vend: u64) -> impl Iterator<Item = u64> {
    (vstart / PAGE_SIZE..vend.div_ceil(PAGE_SIZE)).map(|p| p * PAGE_SIZE)
}

fn check_properties(req: &LayoutRequest, l: &PvLayout) {
    assert_eq!(l.v_end % BOOTSTRAP_ALIGN, 0);
    assert!(l.v_end - l.stack.vend >= BOOTSTRAP_PADDING);
    assert_eq!(l.nr_pt_frames, pt_frames_needed(l.v_start, l.v_end));
    assert_eq!(l.page_tables.nr_pages(), l.nr_pt_frames);
    assert!(l.first_p2m_pfn + l.nr_p2m_frames <= req.nr_pages);
    assert!(l.bootstrap_pages <= l.first_p2m_pfn);

    // Bootstrap elements in xen.h order, page-aligned (but the kernel), disjoint.
    let mut regions = alloc::vec![("kernel", l.kernel)];
    if let Some(InitrdLayout::Mapped(r)) = l.initrd {
        regions.push(("initrd", r));
    }
    if let P2mPlacement::Bootstrap(r) = l.p2m {
        regions.push(("p2m", r));
    }
    regions.push(("start_info", l.start_info));
    regions.extend(l.xenstore.map(|r| ("xenstore", r)));
    regions.extend(l.console.map(|r| ("console", r)));
    regions.push(("page tables", l.page_tables));
    regions.push(("stack", l.stack));
    let mut prev_end = l.v_start;
    for (i, (name, r)) in regions.iter().enumerate() {
        if i > 0 {
            assert_eq!(r.vstart % PAGE_SIZE, 0, "{name} not page-aligned");
        }
        assert!(r.vstart >= prev_end, "{name} overlaps its predecessor");
        assert!(r.vend <= l.v_end, "{name} beyond v_end");
        assert_eq!(r.first_pfn, (r.vstart - l.v_start) / PAGE_SIZE);
        prev_end = r.vend.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    }

    let plan = l.page_table_plan().unwrap();
    let walker = Walker::new(&plan);
    let mut frame_pfns = HashSet::new();
    for f in &plan.frames {
        assert!(f.pfn < req.nr_pages);
        assert!(frame_pfns.insert(f.pfn), "frame {} twice", f.pfn);
    }
    assert_eq!(
        plan.frames.iter().filter(|f| f.bootstrap).count() as u64,
        l.nr_pt_frames
    );
    for e in &plan.entries {
        assert!(e.target_pfn < req.nr_pages);
        if e.table_pfn == plan.root_pfn {
            let slot = usize::from(e.index);
            assert!(!(XEN_L4_FIRST_SLOT..XEN_L4_END_SLOT).contains(&slot));
        }
    }
    // The whole bootstrap region is mapped 1:1; page tables read-only, the rest writable.
    let pt_pfns = l.page_tables.first_pfn..l.page_tables.first_pfn + l.nr_pt_frames;
    for va in pages(l.v_start, l.v_end) {
        let (pfn, flags) = walker.translate(va).expect("bootstrap page unmapped");
        assert_eq!(pfn, (va - l.v_start) / PAGE_SIZE);
        assert!(pfn < req.nr_pages);
        assert_eq!(flags & PTE_RW == 0, pt_pfns.contains(&pfn), "va {va:#x}");
        assert!(flags & PTE_PRESENT != 0 && flags & PTE_USER != 0);
    }
    assert_eq!(walker.translate(l.v_end), None);
    if l.v_start >= PAGE_SIZE {
        assert_eq!(walker.translate(l.v_start - PAGE_SIZE), None);
    }
    if let Some(InitrdLayout::Unmapped {
        first_pfn,
        nr_pages,
        ..
    }) = l.initrd
    {
        assert!(first_pfn >= l.bootstrap_pages);
        assert_eq!(first_pfn + nr_pages, l.first_p2m_pfn);
    }
    if let P2mPlacement::Separate {
        vstart,
        vend,
        first_pfn,
        nr_frames,
    } = l.p2m
    {
        let range = first_pfn..first_pfn + nr_frames;
        let mut seen = HashSet::new();
        for va in pages(vstart, vend) {
            let (pfn, flags) = walker.translate(va).expect("p2m page unmapped");
            assert!(range.contains(&pfn), "p2m page {va:#x} -> {pfn}");
            assert!(!frame_pfns.contains(&pfn), "p2m data in a table frame");
            assert!(seen.insert(pfn));
            assert!(flags & PTE_RW != 0);
        }
        for f in plan.frames.iter().filter(|f| !f.bootstrap) {
            assert!(range.contains(&f.pfn));
        }
    }
    if let Some(hp) = req.hypercall_page {
        assert!(walker.translate(hp).is_some());
    }
}

#[test]
fn property_random_layouts() {
    let mut rng = Rng(0x5eed_1a70_u64);
    let bases = [
        0,
        0x40_0000,
        0x20_1000, // not 2 MiB-aligned
        V,
        0xffff_8800_0000_0000,
        0xffff_ffff_c000_0000 - 64 * MIB,
        0x7fff_0000_0000,
    ];
    let p2m_bases = [0x80_0000_0000u64, 0xffff_c900_0000_0000, 0x4000_0000];
    let (mut ok, mut separate, mut superpage, mut unmapped, mut domu) = (0, 0, 0, 0, 0);
    for _ in 0..300 {
        let virt_base = bases[rng.below(bases.len() as u64) as usize];
        let kstart = virt_base + rng.below(4) * 0x20_0000 + rng.below(16) * PAGE_SIZE;
        let kend = kstart + 1 + rng.below(6 * MIB);
        let initrd = (rng.below(3) != 0).then(|| InitrdSpec {
            len: rng.below(10 * MIB),
            mapped: rng.below(2) == 0,
        });
        let req = LayoutRequest {
            kind: if rng.below(2) == 0 {
                DomainKind::Dom0
            } else {
                DomainKind::DomU
            },
            virt_base,
            virt_kstart: kstart,
            virt_kend: kend,
            initrd,
            nr_pages: 1024 + rng.below(300_000),
            nr_vcpus: 1 + rng.below(64) as u32,
            init_p2m: (rng.below(2) == 0)
                .then(|| p2m_bases[rng.below(p2m_bases.len() as u64) as usize]),
            hypercall_page: (rng.below(2) == 0).then_some(kstart & !(PAGE_SIZE - 1)),
            p2m_superpages: [PtLevel::L1, PtLevel::L2, PtLevel::L3][rng.below(3) as usize],
        };
        match PvLayout::compute(&req) {
            Ok(l) => {
                ok += 1;
                check_properties(&req, &l);
                if let P2mPlacement::Separate { .. } = l.p2m {
                    separate += 1;
                    let plan = l.page_table_plan().unwrap();
                    if plan.entries.iter().any(|e| e.flags & PTE_PSE != 0) {
                        superpage += 1;
                    }
                }
                if let Some(InitrdLayout::Unmapped { .. }) = l.initrd {
                    unmapped += 1;
                }
                if l.kind == DomainKind::DomU {
                    domu += 1;
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    assert!(ok > 100, "only {ok} layouts computed");
    // The generator must reach every shape.
    assert!(separate > 20 && superpage > 5 && unmapped > 20 && domu > 20);
}
