//! `ptwr`: writable page-table emulation (`VMASST_TYPE_writable_pagetables`). The guest
//! writes its own L1 entries directly through the read-only mapping of its page tables, with
//! the instructions a PV kernel uses (`mov` of 8 and 4 bytes with several addressing forms,
//! `movq $0`, `xchg`, `lock cmpxchg`, and Linux's bit operations `lock andb/orb`, `lock
//! btr/bts`); the hypervisor validates and performs each write as
//! `mmu_update` would, or the guest takes the #PF (error code: present, write) and nothing
//! changes: a page table mapped writable, a write to an L2 entry, a misaligned write. The
//! new mappings are checked through the pages they map. With the assist off a domU's write
//! faults while dom0's is emulated all the same (Xen 4.17). Runs as dom0, and as a domU
//! under `ptwrdomu`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::cpu::VMASST_TYPE_WRITABLE_PAGETABLES as WRITABLE_PAGETABLES;
use guest_rt::cpu::{vm_assist, VMASST_CMD_DISABLE, VMASST_CMD_ENABLE};
use guest_rt::mm::{invlpg_local, pte};
use guest_rt::pt_write::{self as pw, Entry, Outcome, Store};
use guest_rt::start_info::{StartInfo, StartInfoExt};
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, traps};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// The frame bits of an entry.
const FRAME: u64 = 0x000f_ffff_ffff_f000;
/// The bits of an entry compared after a write: Xen adjusts the rest for a 64-bit PV
/// kernel's mapping (user, global, its guest-kernel bit) and the CPU sets accessed/dirty.
const COMPARED: u64 = FRAME | pte::PRESENT | pte::RW | pte::NX;
/// #PF error code of a kernel-mode write to a present page.
const PF_PRESENT_WRITE: u64 = 3;

fn pattern(k: u64, i: u64) -> u64 {
    (k << 56) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Entry value mapping `mfn` with `flags`.
fn map(mfn: u64, flags: u64) -> u64 {
    (mfn << 12) | flags
}

fn main(si: &StartInfo) {
    println!("ptwr: writable page-table emulation");
    let (Some(e0), Some(e1), Some(l2), Some(h0), Some(h1)) = (
        Entry::of(si, 1, 0),
        Entry::of(si, 1, 1),
        Entry::of(si, 2, 0),
        pw::target_home(si, 0),
        pw::target_home(si, 1),
    ) else {
        guest_rt::test::error(format_args!("target pages not found"));
    };
    let home0 = e0.read();
    info(format_args!(
        "target 0 entry at {:#x} (machine {:#x}) = {:#x}; frames {:#x} {:#x}",
        e0.va(),
        e0.maddr(),
        home0,
        h0,
        h1
    ));
    check_eq("target 0 maps its own frame", (home0 & FRAME) >> 12, h0);
    check_eq("target 1 maps its own frame", (e1.read() & FRAME) >> 12, h1);
    for k in 0..2 {
        check(
            "fill a target page",
            (0..512).all(|i| pw::target_write(si, k, i, pattern(k, i))),
        );
    }
    let rw = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;
    let shows = |k: u64| (0..512).all(|i| pw::target_read(si, 0, i) == Some(pattern(k, i)));
    let restore = |what: &str| {
        check_eq(what, pw::target_restore(si, 0), Ok(0));
    };

    // The assist off (its state at boot): Xen 4.17 still emulates for the hardware domain
    // (through its read-only-MMIO branch), not for a domU.
    let dom0 = si.is_initdomain();
    let before = e0.read();
    let o = e0.write(Store::Mov64, map(h1, rw));
    info(format_args!("assist off: mov {o:?}"));
    let emulated_off = o.map(|o| !o.faulted);
    if dom0 {
        check_eq(
            "without the assist, dom0's write is emulated",
            emulated_off,
            Some(true),
        );
    } else {
        check_eq(
            "without the assist, a domU's write faults",
            emulated_off,
            Some(false),
        );
        check_eq("  entry unchanged", e0.read(), before);
    }
    restore("restore target 0");

    check_eq(
        "vm_assist(enable, writable_pagetables)",
        vm_assist(VMASST_CMD_ENABLE, WRITABLE_PAGETABLES),
        Ok(0),
    );
    emulated(si, &e0, h1, home0, &shows);
    refused(si, &e0, &l2, home0);
    restore("restore target 0");
    check_eq(
        "vm_assist(disable, writable_pagetables)",
        vm_assist(VMASST_CMD_DISABLE, WRITABLE_PAGETABLES),
        Ok(0),
    );
    check("target 0 shows its own bytes again", shows(0));
}

fn ok(o: Option<Outcome>) -> bool {
    o.is_some_and(|o| !o.faulted)
}

/// Writes that are validated and done.
fn emulated(si: &StartInfo, e0: &Entry, h1: u64, home0: u64, shows: &dyn Fn(u64) -> bool) {
    let rw = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;
    let frame_of = |v: u64| (v & FRAME) >> 12;
    check(
        "mov: target 0 -> target 1's frame",
        ok(e0.write(Store::Mov64, map(h1, rw))),
    );
    check_eq(
        "  the entry holds it",
        e0.read() & COMPARED,
        map(h1, rw) & COMPARED,
    );
    check("  target 0 shows target 1's bytes", shows(1));
    check(
        "mov with disp8: back to its own frame",
        ok(e0.write(Store::Mov64Disp8, home0)),
    );
    check("  target 0 shows its own bytes", shows(0));
    check(
        "mov with SIB: target 1's frame again",
        ok(e0.write(Store::Mov64Indexed, map(h1, rw))),
    );
    check("  target 0 shows target 1's bytes", shows(1));
    let o = e0.write(Store::Xchg64, home0);
    check("xchg: back home", ok(o));
    check_eq(
        "  xchg returned the old entry's frame",
        o.map(|o| frame_of(o.rax)),
        Some(h1),
    );
    check("  target 0 shows its own bytes", shows(0));
    let cur = e0.read();
    let o = e0.write(Store::Cmpxchg64 { expect: cur ^ 1 }, map(h1, rw));
    check("cmpxchg with a stale expected value: no fault", ok(o));
    check_eq(
        "  fails: ZF clear, %rax the current entry",
        o.map(|o| (o.zf, o.rax)),
        Some((false, cur)),
    );
    check_eq("  entry unchanged", e0.read(), cur);
    let o = e0.write(Store::Cmpxchg64 { expect: cur }, map(h1, rw));
    check_eq(
        "cmpxchg with the current value: ZF set",
        o.map(|o| (o.faulted, o.zf)),
        Some((false, true)),
    );
    check("  target 0 shows target 1's bytes", shows(1));
    check(
        "mov of the low half: read-only, own frame",
        ok(e0.write(Store::Mov32Low, (home0 & 0xffff_ffff) & !pte::RW)),
    );
    check_eq(
        "  entry: own frame, not writable",
        (frame_of(e0.read()), e0.read() & pte::RW),
        (frame_of(home0), 0),
    );
    check("  target 0 shows its own bytes", shows(0));
    check(
        "mov of the high half: no-execute",
        ok(e0.write(Store::Mov32High, (home0 >> 32) | (1 << 31))),
    );
    check_eq("  entry: no-execute set", e0.read() & pte::NX, pte::NX);
    // The bit operations Linux uses on entries (set_bit/clear_bit with a constant bit,
    // test_and_clear_bit), from the read-only entry above.
    let rw_of = |e: &Entry| e.read() & pte::RW;
    check("lock orb: RW set", ok(e0.write(Store::OrByteSetRw, 0)));
    check_eq("  entry writable", rw_of(e0), pte::RW);
    let o = e0.write(Store::BtrRw, 0);
    check_eq(
        "lock btr: RW cleared, CF the old bit (1)",
        o.map(|o| (o.faulted, o.cf)),
        Some((false, true)),
    );
    check_eq("  entry not writable", rw_of(e0), 0);
    let o = e0.write(Store::BtrRw, 0);
    check_eq(
        "lock btr again: CF 0",
        o.map(|o| (o.faulted, o.cf)),
        Some((false, false)),
    );
    let o = e0.write(Store::BtsRw, 0);
    check_eq(
        "lock bts: RW set, CF 0",
        o.map(|o| (o.faulted, o.cf)),
        Some((false, false)),
    );
    check_eq("  entry writable", rw_of(e0), pte::RW);
    check(
        "lock andb: RW cleared",
        ok(e0.write(Store::AndByteClearRw, 0)),
    );
    check_eq(
        "  entry: own frame, not writable",
        (frame_of(e0.read()), rw_of(e0)),
        (frame_of(home0), 0),
    );
    check(
        "lock orb: RW set again",
        ok(e0.write(Store::OrByteSetRw, 0)),
    );
    check("  target 0 shows its own bytes", shows(0));
    check("movq $0: entry cleared", ok(e0.write(Store::MovZero, 0)));
    check_eq("  entry is 0", e0.read(), 0);
    check_eq("  target 0 reads nothing", pw::target_read(si, 0, 0), None);
    check("mov: back home", ok(e0.write(Store::Mov64, home0)));
    let _ = invlpg_local(pw::target_va(si, 0).unwrap_or(0));
    check("  target 0 shows its own bytes", shows(0));
}

/// Writes the hypervisor refuses: the guest takes the #PF and nothing changes.
fn refused(si: &StartInfo, e0: &Entry, l2: &Entry, home0: u64) {
    let rw = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY;
    let pf = |what: &str, e: &Entry, how: Store, val: u64| {
        let before = e.read();
        let o = e.write(how, val);
        check_eq(what, o.map(|o| o.faulted), Some(true));
        let t = traps::last_trap();
        check_eq(
            "  #PF with error code present|write",
            (t.vector, t.error_code),
            (14, PF_PRESENT_WRITE),
        );
        check_eq("  entry unchanged", e.read(), before);
    };
    let l1_frame = e0.maddr() >> 12;
    pf(
        "mov mapping an L1 table writable -> #PF",
        e0,
        Store::Mov64,
        map(l1_frame, rw),
    );
    check(
        "mov mapping the L1 table read-only is fine",
        ok(e0.write(Store::Mov64, map(l1_frame, pte::PRESENT | pte::ACCESSED))),
    );
    check_eq(
        "  target 0 shows the L1 table: the entry itself",
        pw::target_read(si, 0, (e0.maddr() & 0xfff) / 8),
        Some(e0.read()),
    );
    check("  back home", ok(e0.write(Store::Mov64, home0)));
    pf(
        "writing an L2 entry (its own value) -> #PF",
        l2,
        Store::Mov64,
        l2.read(),
    );
    match e0.misaligned_current() {
        Some(v) => pf(
            "a misaligned 8-byte write across two entries -> #PF",
            e0,
            Store::Misaligned64,
            v,
        ),
        None => {
            check("target 0's entry is not the last of its table", false);
        }
    }
}
