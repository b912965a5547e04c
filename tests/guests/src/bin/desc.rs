//! `desc`: the guest's own descriptor tables. No LDT selector works before an LDT is set;
//! set_gdt on a frame of ours (refused while it
//! is mapped writable, and a GDT frame may not be mapped writable), Xen's descriptor checks
//! and fix-ups (DPL 0 code and data raised to DPL 3, system descriptors refused), selectors
//! of the new GDT usable (`lar`, `mov %ds`), update_descriptor into the live GDT and into a
//! plain frame, and the refusals with Xen's errnos; `HYPERVISOR_iret` to a frame whose CS or
//! SS cannot be loaded (empty, not present, null, an LDT page that cannot be mapped) or whose
//! RIP is not canonical: the return faults and the fault is the guest's, bounced with the
//! selector as error code (#PF at the LDT address); an LDT (MMUEXT_SET_LDT) whose selectors
//! work, with its descriptors checked as the GDT's, and whose pages Xen maps only when a
//! selector is used: SET_LDT accepts a base not mapped yet or mapping a writable page, the
//! use of a selector then maps the page or bounces #PF at the LDT address, and succeeds once
//! the page is mapped right.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::desc::{self, FIRST_RESERVED_GDT_ENTRY};
use guest_rt::hypercall::BadPtr;
use guest_rt::mm::{self as xmm, pte};
use guest_rt::pvmm::{self, Scratch};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::traps;
use guest_rt::{println, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

const RW: u64 = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;
const RO: u64 = pte::PRESENT | pte::ACCESSED;

/// 64-bit code, DPL 0 (Xen makes it DPL 3), accessed.
const CODE64_DPL0: u64 = 0x00af_9b00_0000_ffff;
/// The same at DPL 3.
const CODE64_DPL3: u64 = 0x00af_fb00_0000_ffff;
/// Flat writable data, DPL 3, accessed.
const DATA_DPL3: u64 = 0x00cf_f300_0000_ffff;
/// Flat writable data, DPL 0, accessed (Xen makes it DPL 3).
const DATA_DPL0: u64 = 0x00cf_9300_0000_ffff;
/// An available 64-bit TSS descriptor (low half): refused.
const TSS: u64 = 0x0000_8900_0000_0067;
/// An LDT descriptor (low half): refused.
const LDT: u64 = 0x0000_8200_0000_0fff;
/// A 64-bit interrupt gate: refused (only call gates are allowed).
const INT_GATE: u64 = 0x0000_ee00_e033_0000;

/// `lar`'s view of a descriptor: access byte and flags (bits 8..23 of the high word), with
/// the accessed bit masked (the CPU sets it when a selector is loaded).
fn rights(desc: u64) -> u32 {
    ((desc >> 32) as u32) & 0x00f0_fe00
}

fn main(si: &StartInfo) {
    println!("desc: descriptor-table test guest");
    let Some(mut s) = Scratch::new(si) else {
        guest_rt::test::error(format_args!("no scratch page"));
    };
    let (Some(gdt_pfn), Some(plain_pfn)) = (pvmm::spare_pfn(si, 0), pvmm::spare_pfn(si, 1)) else {
        guest_rt::test::error(format_args!("no spare pfns"));
    };
    let gdt = pvmm::pfn_to_mfn(si, gdt_pfn).unwrap_or(0);
    let plain = pvmm::pfn_to_mfn(si, plain_pfn).unwrap_or(0);
    info(format_args!(
        "GDT frame {:#x}, plain frame {:#x}",
        gdt, plain
    ));

    // No LDT yet: an LDT selector names nothing (the CPU reads no descriptor for it).
    traps::expect(14, 3);
    let faults = traps::taken(14);
    check_eq(
        "no LDT: lar of an LDT selector fails",
        desc::lar_may_fault(0x07),
        None,
    );
    check_eq(
        "... without reading any memory (no #PF)",
        traps::taken(14) - faults,
        0,
    );
    traps::unexpect(14);

    // Build the GDT contents through a writable mapping.
    check_eq("map the GDT frame writable", s.map(gdt, RW), Ok(0));
    check(
        "write the descriptors",
        s.fill(0) && s.write(1, CODE64_DPL0) && s.write(2, DATA_DPL3) && s.write(3, DATA_DPL0),
    );
    check_eq(
        "set_gdt of a frame mapped writable -> -EINVAL",
        desc::set_gdt(&[gdt], 512),
        Err(Errno::EINVAL),
    );
    check_eq("map it read-only instead", s.map(gdt, RO), Ok(0));
    check_eq(
        "set_gdt of our frame, 512 entries",
        desc::set_gdt(&[gdt], 512),
        Ok(0),
    );
    check_eq(
        "a GDT frame may not be mapped writable -> -EBUSY",
        s.map(gdt, RW),
        Err(Errno::EBUSY),
    );
    check_eq("... read-only is fine", s.map(gdt, RO), Ok(0));
    check_eq("DPL 0 code became DPL 3", s.read(1), Some(CODE64_DPL3));
    check_eq("DPL 3 data unchanged", s.read(2), Some(DATA_DPL3));
    check_eq("DPL 0 data became DPL 3", s.read(3), Some(DATA_DPL3));

    // The new entries are live.
    check_eq(
        "lar of the code selector",
        desc::lar(0x0b).map(|r| r & 0x00f0_fe00),
        Some(rights(CODE64_DPL3)),
    );
    check_eq(
        "lar of a data selector (with RPL 0)",
        desc::lar(0x10).map(|r| r & 0x00f0_fe00),
        Some(rights(DATA_DPL3)),
    );
    check_eq("lar of an empty entry fails", desc::lar(0x20), None);
    check_eq("load %ds from our GDT", desc::load_ds(0x13), Some(0x13));
    check_eq(
        "load %ds from the fixed-up entry",
        desc::load_ds(0x1b),
        Some(0x1b),
    );
    check_eq(
        "Xen's selectors still work (FLAT_RING3_DS)",
        desc::load_ds(0xe02b),
        Some(0xe02b),
    );

    // update_descriptor into the live GDT.
    let ud = |s: &Scratch, i, mis, d| desc::update_descriptor(s, i, mis, d);
    check_eq(
        "update_descriptor: data at entry 5",
        ud(&s, 5, 0, DATA_DPL3),
        Ok(0),
    );
    check_eq("visible through the mapping", s.read(5), Some(DATA_DPL3));
    check_eq(
        "... and to the CPU at once",
        desc::load_ds(0x2b),
        Some(0x2b),
    );
    check_eq(
        "update_descriptor: DPL 0 code",
        ud(&s, 6, 0, CODE64_DPL0),
        Ok(0),
    );
    check_eq("stored at DPL 3", s.read(6), Some(CODE64_DPL3));
    check_eq("a TSS -> -EINVAL", ud(&s, 7, 0, TSS), Err(Errno::EINVAL));
    check_eq(
        "an LDT descriptor -> -EINVAL",
        ud(&s, 7, 0, LDT),
        Err(Errno::EINVAL),
    );
    check_eq(
        "an interrupt gate -> -EINVAL",
        ud(&s, 7, 0, INT_GATE),
        Err(Errno::EINVAL),
    );
    check_eq(
        "misaligned -> -EINVAL",
        ud(&s, 7, 4, DATA_DPL3),
        Err(Errno::EINVAL),
    );
    check_eq("nothing written by the refusals", s.read(7), Some(0));
    check_eq("clear entry 5 (not present)", ud(&s, 5, 0, 0), Ok(0));
    check_eq("the cleared selector is gone", desc::lar(0x2b), None);
    unreturnable_frames(&s);
    match xmm::maximum_ram_page() {
        Ok(max) => check_eq(
            "update_descriptor beyond RAM -> -EINVAL",
            desc::update_descriptor_not_ours((max as u64 + 16) << 12, DATA_DPL3, max as u64),
            Err(Errno::EINVAL),
        ),
        Err(e) => check_eq("maximum_ram_page", Err::<i64, Errno>(e), Ok(0)),
    };

    // update_descriptor into a plain frame of ours (not a GDT): allowed, as Xen.
    check_eq("map the plain frame writable", s.map(plain, RW), Ok(0));
    check("clear it", s.fill(0));
    check_eq(
        "update_descriptor into a plain frame",
        ud(&s, 9, 0, CODE64_DPL0),
        Ok(0),
    );
    check_eq("written with the fix-up", s.read(9), Some(CODE64_DPL3));
    check_eq(
        "set_gdt of a page holding a TSS -> -EINVAL",
        {
            let ok = s.write(9, TSS);
            let _ = s.map(plain, RO);
            if ok {
                desc::set_gdt(&[plain], 1024)
            } else {
                Ok(-1)
            }
        },
        Err(Errno::EINVAL),
    );
    check_eq(
        "two frames, the second bad: the whole call -> -EINVAL",
        desc::set_gdt(&[gdt, plain], 1024),
        Err(Errno::EINVAL),
    );
    check_eq(
        "the old GDT survived the failed calls",
        desc::lar(0x0b).map(|r| r & 0x00f0_fe00),
        Some(rights(CODE64_DPL3)),
    );
    check_eq(
        "too many entries -> -EINVAL",
        desc::set_gdt(&[gdt; 15], FIRST_RESERVED_GDT_ENTRY + 1),
        Err(Errno::EINVAL),
    );
    check_eq(
        "a frame list Xen cannot read -> -EFAULT",
        desc::set_gdt_bad_list(BadPtr::NULL, 512),
        Err(Errno::EFAULT),
    );

    ldt_checks(si, &mut s);
    lazy_ldt_checks(si, &mut s);

    // Drop the GDT: the frame may become writable again.
    check_eq("set_gdt with no entries", desc::set_gdt(&[], 0), Ok(0));
    check_eq("our selectors are gone", desc::lar(0x0b), None);
    check_eq(
        "the old GDT frame maps writable again",
        s.map(gdt, RW),
        Ok(0),
    );
    check_eq("restore the scratch page", s.restore(), Ok(0));
}

/// 64-bit code at DPL 3, not present.
const CODE64_NOT_PRESENT: u64 = CODE64_DPL3 & !(1 << 47);

/// A frame `HYPERVISOR_iret` is given whose code or stack selector cannot be loaded: the
/// return to the guest faults, and the fault is the guest's, bounced through its trap table
/// with the selector as error code (Xen's `iret_exit_to_guest` fixup). GDT entry 5 is empty.
fn unreturnable_frames(s: &Scratch) {
    check_eq(
        "iret to an empty GDT entry as CS: #GP(selector)",
        desc::iret_fault(0x2b, 0xe02b),
        Some((13, 0x28)),
    );
    check_eq(
        "iret to an empty GDT entry as SS: #GP(selector)",
        desc::iret_fault(0xe033, 0x2b),
        Some((13, 0x28)),
    );
    check_eq(
        "update_descriptor: code, not present",
        desc::update_descriptor(s, 5, 0, CODE64_NOT_PRESENT),
        Ok(0),
    );
    check_eq("stored as given", s.read(5), Some(CODE64_NOT_PRESENT));
    check_eq(
        "iret to a not-present code selector: #NP(selector)",
        desc::iret_fault(0x2b, 0xe02b),
        Some((11, 0x28)),
    );
    check_eq(
        "iret to a null code selector: #GP(0)",
        desc::iret_fault(0, 0xe02b),
        Some((13, 0)),
    );
    check_eq(
        "iret to a non-canonical RIP",
        desc::iret_fault_at(0x8000_0000_0000_0000, 0xe033, 0xe02b),
        Some((13, 0)),
    );
    check_eq(
        "... the #GP's frame holds that RIP",
        traps::last_trap().rip,
        0x8000_0000_0000_0000,
    );
    check_eq(
        "the guest still returns to a good selector",
        desc::iret_to(0x33, 0xe02b),
        Some(0x33),
    );
    check_eq(
        "clear entry 5 again",
        desc::update_descriptor(s, 5, 0, 0),
        Ok(0),
    );
}

fn ldt_checks(si: &StartInfo, s: &mut Scratch) {
    let Some(ldt_pfn) = pvmm::spare_pfn(si, 2) else {
        guest_rt::test::error(format_args!("no spare pfn for the LDT"));
    };
    let ldt = pvmm::pfn_to_mfn(si, ldt_pfn).unwrap_or(0);
    check_eq("map the LDT frame writable", s.map(ldt, RW), Ok(0));
    check(
        "write the LDT descriptors",
        s.fill(0) && s.write(0, DATA_DPL3) && s.write(1, DATA_DPL0) && s.write(2, CODE64_DPL0),
    );
    check_eq("map it read-only", s.map(ldt, RO), Ok(0));
    check_eq(
        "SET_LDT of a misaligned base -> -EINVAL",
        pvmm::set_ldt(s.va() + 8, 3).0,
        Err(Errno::EINVAL),
    );
    check_eq(
        "SET_LDT of too many entries -> -EINVAL",
        pvmm::set_ldt(s.va(), 8193).0,
        Err(Errno::EINVAL),
    );
    check_eq(
        "SET_LDT in the hypervisor's range -> -EINVAL",
        pvmm::set_ldt(0xffff_8000_0000_0000, 3).0,
        Err(Errno::EINVAL),
    );
    check_eq("SET_LDT, 3 entries", pvmm::set_ldt(s.va(), 3), (Ok(0), 1));
    check_eq(
        "lar of LDT entry 0",
        desc::lar(0x07).map(|r| r & 0x00f0_fe00),
        Some(rights(DATA_DPL3)),
    );
    check_eq(
        "LDT entry 1: DPL 0 data became DPL 3",
        desc::lar(0x0f).map(|r| r & 0x00f0_fe00),
        Some(rights(DATA_DPL3)),
    );
    check_eq("load %ds from the LDT", desc::load_ds(0x0f), Some(0x0f));
    check_eq(
        "LDT entry 2: code at DPL 3",
        desc::lar(0x17).map(|r| r & 0x00f0_fe00),
        Some(rights(CODE64_DPL3)),
    );
    check_eq("past the LDT's 3 entries: nothing", desc::lar(0x1f), None);
    check_eq("the fix-up is in the frame", s.read(1), Some(DATA_DPL3));
    check_eq(
        "an LDT page in use may not be mapped writable -> -EBUSY",
        s.map(ldt, RW),
        Err(Errno::EBUSY),
    );
    check_eq(
        "update_descriptor into the LDT",
        desc::update_descriptor(s, 3, 0, DATA_DPL0),
        Ok(0),
    );
    check_eq("SET_LDT, 4 entries", pvmm::set_ldt(s.va(), 4), (Ok(0), 1));
    check_eq("the new entry is usable", desc::load_ds(0x1f), Some(0x1f));
    check_eq("SET_LDT with no entries", pvmm::set_ldt(0, 0), (Ok(0), 1));
    check_eq("LDT selectors are gone", desc::lar(0x07), None);
    check_eq("the LDT frame maps writable again", s.map(ldt, RW), Ok(0));
}

/// SET_LDT only records the LDT (Xen 4.17 maps each page on first use): a base that maps
/// nothing yet, or a writable page, is accepted; a selector used while its page cannot be
/// mapped bounces #PF (kernel read, not present) at the guest's LDT address, and the same
/// selector works once the page is mapped read-only.
fn lazy_ldt_checks(si: &StartInfo, s: &mut Scratch) {
    let Ok(shared) = SharedInfo::map(si) else {
        guest_rt::test::error(format_args!("cannot map shared_info"));
    };
    let Some(ldt) = pvmm::spare_pfn(si, 2).and_then(|p| pvmm::pfn_to_mfn(si, p)) else {
        guest_rt::test::error(format_args!("no spare pfn for the LDT"));
    };
    check_eq("nothing at the scratch address", s.map(ldt, 0), Ok(0));
    check_eq(
        "SET_LDT at an address mapping nothing",
        pvmm::set_ldt(s.va(), 2),
        (Ok(0), 1),
    );
    check_eq("then map the LDT frame read-only", s.map(ldt, RO), Ok(0));
    check_eq(
        "its first selector works: the page is mapped on use",
        desc::lar_may_fault(0x07).map(|r| r & 0x00f0_fe00),
        Some(rights(DATA_DPL3)),
    );
    check_eq("SET_LDT with no entries", pvmm::set_ldt(0, 0), (Ok(0), 1));
    check_eq("the frame maps writable", s.map(ldt, RW), Ok(0));
    check_eq(
        "SET_LDT on a writable page",
        pvmm::set_ldt(s.va(), 2),
        (Ok(0), 1),
    );
    traps::expect(14, 3);
    check_eq("its selector faults", desc::lar_may_fault(0x0f), None);
    check_eq("#PF bounced", traps::taken(14), 1);
    check_eq(
        "#PF error code: kernel read, not present",
        traps::last_trap().error_code,
        0,
    );
    check_eq(
        "CR2: the guest's LDT address of the descriptor",
        shared.cr2(0),
        Some(s.va() + 8),
    );
    check_eq("map the frame read-only", s.map(ldt, RO), Ok(0));
    check_eq(
        "the selector works now",
        desc::lar_may_fault(0x0f).map(|r| r & 0x00f0_fe00),
        Some(rights(DATA_DPL3)),
    );
    // A code selector of the LDT given to iret before its page was used: the page is
    // mapped when the return to the guest needs it.
    check_eq("SET_LDT again", pvmm::set_ldt(0, 0), (Ok(0), 1));
    check_eq("with 3 entries", pvmm::set_ldt(s.va(), 3), (Ok(0), 1));
    // LDT entry 2 is a 64-bit code segment, DPL 3 since Xen's fix-up.
    let cs = desc::on_code_selector(0x17);
    check_eq("iret to an LDT code selector: runs on it", cs, Some(0x17));
    check_eq("drop the LDT", pvmm::set_ldt(0, 0), (Ok(0), 1));
    check_eq("the frame maps writable again", s.map(ldt, RW), Ok(0));
    // The same selector given to iret while its page cannot be mapped: the return faults
    // on the LDT page, and the guest gets the #PF at its LDT address.
    check_eq(
        "SET_LDT on the writable page, 3 entries",
        pvmm::set_ldt(s.va(), 3),
        (Ok(0), 1),
    );
    check_eq(
        "iret to its code selector: #PF, kernel read, not present",
        desc::iret_fault(0x17, 0xe02b),
        Some((14, 0)),
    );
    check_eq(
        "CR2: the guest's LDT address of the descriptor",
        shared.cr2(0),
        Some(s.va() + 0x10),
    );
    check_eq("drop the LDT", pvmm::set_ldt(0, 0), (Ok(0), 1));
    check_eq("restore the scratch page", s.restore(), Ok(0));
}
