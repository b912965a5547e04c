//! The domU start-of-day image of a small hand-made PV kernel.

use super::*;

/// VIRT_BASE of the test kernel.
pub(crate) const VBASE: u64 = 0xffff_ffff_8000_0000;

fn note(out: &mut Vec<u8>, ty: u32, desc: &[u8]) {
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(b"Xen\0");
    out.extend_from_slice(desc);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A 64-bit PV kernel: one PT_LOAD of 2 pages of text (filled with 0x90) plus a page of
/// bss at VIRT_BASE, entry at VIRT_BASE, hypercall page the second page.
pub(crate) fn test_kernel() -> Vec<u8> {
    let mut notes = Vec::new();
    note(&mut notes, 6, b"test\0");
    note(&mut notes, 5, b"xen-3.0\0");
    note(&mut notes, 8, b"generic\0");
    note(&mut notes, 3, &VBASE.to_le_bytes());
    note(&mut notes, 4, &0u64.to_le_bytes());
    note(&mut notes, 1, &VBASE.to_le_bytes());
    note(&mut notes, 2, &(VBASE + 0x1000).to_le_bytes());
    let notes_off = 64 + 2 * 56;
    let load_off = 0x1000u64;
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little endian
    f[6] = 1; // version
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&VBASE.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes());
    f[58..60].copy_from_slice(&64u16.to_le_bytes());
    let ph = |ty: u32, flags: u32, off: u64, va: u64, pa: u64, fsz: u64, msz: u64, al: u64| {
        let mut p = Vec::new();
        p.extend_from_slice(&ty.to_le_bytes());
        p.extend_from_slice(&flags.to_le_bytes());
        for v in [off, va, pa, fsz, msz, al] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p
    };
    f.extend(ph(1, 7, load_off, VBASE, 0, 0x2000, 0x3000, 0x1000));
    let nl = notes.len() as u64;
    f.extend(ph(4, 4, notes_off, 0, 0, nl, nl, 4));
    f.extend_from_slice(&notes);
    f.resize(load_off as usize, 0);
    f.extend(core::iter::repeat_n(0x90u8, 0x2000));
    f
}

/// A p2m whose frames are scattered: mfn = 0x5000 + 7 * pfn.
pub(crate) fn fake_p2m(n: u64) -> Vec<u64> {
    (0..n).map(|p| 0x5000 + 7 * p).collect()
}

#[test]
fn kernel_pages_hold_text_bss_and_the_hypercall_stubs() {
    let img = Image::prepare(&test_kernel(), None, "count=3", 2048).unwrap();
    assert_eq!(img.layout.v_start, VBASE);
    let k = img.kernel_pages();
    let pfns: Vec<u64> = k.iter().map(|(p, _)| *p).collect();
    assert_eq!(pfns, [0, 1, 2]);
    assert!(k[0].1.iter().all(|&b| b == 0x90));
    assert_eq!(&k[1].1[..], &hypercall_page()[..], "hypercall page filled");
    assert!(k[2].1.iter().all(|&b| b == 0), "bss is zero");
}

#[test]
fn start_info_names_the_console_ring_and_the_layout() {
    let img = Image::prepare(&test_kernel(), None, "count=3", 2048).unwrap();
    let p2m = fake_p2m(2048);
    let rt = Runtime {
        shared_info_mfn: 0x777,
        console_evtchn: 5,
    };
    let si = img.start_info(&p2m, rt);
    assert!(si.magic.starts_with(b"xen-3.0-x86_64\0"));
    assert_eq!(si.nr_pages, 2048);
    assert_eq!(si.shared_info, 0x777 * 4096);
    assert_eq!(
        si.flags, 0,
        "a domU is neither privileged nor the initial domain"
    );
    assert_eq!(si.store_mfn, 0);
    assert_eq!(si.console_mfn, p2m[img.console_pfn() as usize]);
    assert_eq!(si.console_evtchn, 5);
    assert_eq!(si.mfn_list, img.layout.mfn_list());
    assert_eq!(si.pt_base, img.layout.page_tables.vstart);
    assert!(si.cmd_line.starts_with(b"count=3\0"));
    // The console page follows start_info and precedes the page tables.
    assert!(img.console_pfn() > img.start_info_pfn());
    assert!(img.console_pfn() < img.l4_pfn());
}

/// Walks the written tables like the MMU: the mfn and flags mapping `va`.
fn walk(pages: &[(u64, PageBuf)], p2m: &[u64], l4_pfn: u64, va: u64) -> Option<(u64, u64)> {
    let m2p = |mfn: u64| p2m.iter().position(|&m| m == mfn).map(|p| p as u64);
    let mut table = l4_pfn;
    let mut flags = !0u64;
    for shift in [39u32, 30, 21, 12] {
        let (_, page) = pages.iter().find(|(p, _)| *p == table)?;
        let i = ((va >> shift) & 511) as usize * 8;
        let e = u64::from_le_bytes(page[i..i + 8].try_into().ok()?);
        if e & 1 == 0 {
            return None;
        }
        flags &= e;
        let mfn = (e >> 12) & ((1 << 40) - 1);
        if shift == 12 {
            return Some((mfn, flags & 0xfff));
        }
        table = m2p(mfn)?;
    }
    None
}

#[test]
fn page_tables_map_the_region_with_tables_read_only() {
    let img = Image::prepare(&test_kernel(), None, "", 2048).unwrap();
    let p2m = fake_p2m(2048);
    let pages = img.boot_pages(&p2m, Runtime::default());
    let l4 = img.l4_pfn();
    for pfn in [0u64, 1, img.start_info_pfn(), img.console_pfn()] {
        let (mfn, flags) = walk(&pages, &p2m, l4, VBASE + pfn * 4096).unwrap();
        assert_eq!(mfn, p2m[pfn as usize]);
        assert_eq!(flags & 3, 3, "present and writable");
    }
    for (pfn, _) in img.table_pfns() {
        let (mfn, flags) = walk(&pages, &p2m, l4, VBASE + pfn * 4096).unwrap();
        assert_eq!(mfn, p2m[pfn as usize]);
        assert_eq!(flags & 2, 0, "page tables are mapped read-only");
    }
    assert_eq!(walk(&pages, &p2m, l4, img.layout.v_end), None);
    for (pfn, page) in &pages {
        if img.table_pfns().any(|(p, _)| p == *pfn) {
            for e in page.chunks(8) {
                let e = u64::from_le_bytes(e.try_into().unwrap());
                assert_eq!(e & PTE_GUEST_KERNEL, 0, "no Xen-internal bits");
            }
        }
    }
    // The p2m list is written where mfn_list points.
    let first = (img.layout.mfn_list() - VBASE) / 4096;
    let (_, p) = pages.iter().find(|(pfn, _)| *pfn == first).unwrap();
    assert_eq!(u64::from_le_bytes(p[8..16].try_into().unwrap()), p2m[1]);
}

#[test]
fn vcpu0_starts_at_the_entry_with_start_info_in_rsi() {
    let img = Image::prepare(&test_kernel(), None, "", 2048).unwrap();
    let c = img.vcpu_context(0x1234);
    assert_eq!(c.user_regs.rip, VBASE);
    assert_eq!(c.user_regs.rsi, img.layout.start_info.vstart);
    assert_eq!(c.user_regs.rsp, img.layout.stack.vend);
    assert_eq!(c.user_regs.cs, 0xe033);
    assert_eq!(c.user_regs.ss, 0xe02b);
    assert_eq!(c.kernel_sp, c.user_regs.rsp);
    assert_eq!(c.ctrlreg[3], 0x1234 << 12);
    assert_eq!(c.flags, VGCF_IN_KERNEL | VGCF_ONLINE);
    assert_eq!(c.user_regs.rflags, 0x200);
}

#[test]
fn ramdisk_pages_follow_the_kernel() {
    let rd: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let img = Image::prepare(&test_kernel(), Some(rd.len() as u64), "", 2048).unwrap();
    let pages = img.ramdisk_pages(&rd);
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].0, 3, "right after the kernel's three pages");
    assert_eq!(pages[1].1[903], rd[4096 + 903]);
    assert_eq!(pages[1].1[904], 0);
    let si = img.start_info(&fake_p2m(2048), Runtime::default());
    assert_eq!(si.mod_start, VBASE + 3 * 4096);
    assert_eq!(si.mod_len, 5000);
}

#[test]
fn bad_kernels_and_small_domains_are_refused() {
    assert!(matches!(
        Image::prepare(b"not an elf", None, "", 2048),
        Err(ImageError::Elf(_))
    ));
    let mut k = test_kernel();
    // Break the XEN_VERSION note ("xen-3.0" -> "xen-2.0").
    let at = k.windows(7).position(|w| w == b"xen-3.0").unwrap();
    k[at + 4] = b'2';
    assert!(matches!(
        Image::prepare(&k, None, "", 2048),
        Err(ImageError::Notes(_))
    ));
    assert!(matches!(
        Image::prepare(&test_kernel(), None, "", 16),
        Err(ImageError::Layout(_))
    ));
}

#[test]
fn pages_split_at_page_boundaries() {
    let v = bytes_to_pages(4090, &[1; 10]);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].0, 0);
    assert_eq!(&v[0].1[4090..], &[1; 6]);
    assert_eq!(&v[1].1[..4], &[1; 4]);
    assert_eq!(v[1].1[4], 0);
    assert!(bytes_to_pages(0, &[]).is_empty());
}
