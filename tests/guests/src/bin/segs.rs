//! `segs`: the data segment selectors DS, ES, FS, GS are each vCPU's own, and a selector that
//! no longer loads enters the failsafe callback with Xen's frame.
//!
//! vCPU 1 is started (VCPUOP_initialise) with a DS that cannot load (an LDT selector, and
//! there is no LDT), `VGCF_failsafe_disables_events`, and distinctive RCX/R11: when it first
//! runs, Xen's `load_segments` builds the failsafe frame (RCX, R11, the saved DS, ES, FS, GS,
//! RIP, CS, RFLAGS, RSP, SS) on its kernel stack, masks its events and enters the callback
//! with DS left null. Then both vCPUs hold different selectors and FS bases and yield to each
//! other many times (on DualVisor both run on the one leader CPU, so every yield switches
//! between them; on Xen they may run on separate CPUs), checking that theirs survive.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_rt::cpu::{self, FLAT_RING3_SS64};
use guest_rt::sched;
use guest_rt::segs::{self, DataSelectors};
use guest_rt::shared_info::SharedInfo;
use guest_rt::smp::{self, VCPU_GUEST_CONTEXT_SIZE};
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::vcpu;

guest_rt::entry!(main);
guest_rt::no_heap!();

/// Xen's flat data selector (`FLAT_RING3_DS32`/`SS64`).
const FLAT: u16 = FLAT_RING3_SS64;
/// vCPU 0's DS, ES, FS, GS while the vCPUs take turns.
const SEGS0: DataSelectors = [FLAT, 0, 0, 0];
/// vCPU 1's: a non-null FS, whose load replaces the FS base with the descriptor's, so its
/// FS base survives a switch only if it is written after the selector is loaded.
const SEGS1: DataSelectors = [0, FLAT, FLAT, FLAT];
/// An LDT selector (index 1, RPL 3): with no LDT it cannot be loaded.
const BAD_DS: u16 = 0x000f;
/// vCPU 1's selectors in its initial context: DS cannot load; FS and GS are null selectors
/// with an RPL, which Xen 4.17 on this (SVM) CPU loads as 0 (`svm_load_segs`).
const START_SEGS: DataSelectors = [BAD_DS, FLAT, 3, 2];
/// RCX and R11 in vCPU 1's initial context (the failsafe frame's first two words).
const RCX: u64 = 0x5e65_0000_0000_00c1;
const R11: u64 = 0x5e65_0000_0000_0011;
/// Turns each vCPU takes.
const ROUNDS: u32 = 300;

/// Offsets in `struct vcpu_guest_context` (x86-64): flags, user_regs (r11, rcx, rip, rsp,
/// es, ds, fs, gs), failsafe_callback_eip.
const FLAGS: usize = 512;
const USER_REGS: usize = 520;
const R11_OFF: usize = USER_REGS + 48;
const RCX_OFF: usize = USER_REGS + 88;
const RIP_OFF: usize = USER_REGS + 128;
const RSP_OFF: usize = USER_REGS + 152;
const ES_OFF: usize = USER_REGS + 168;
const FAILSAFE_OFF: usize = 5120;
/// `VGCF_failsafe_disables_events`.
const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;

/// What each vCPU reads through its FS base.
static MARK0: AtomicU64 = AtomicU64::new(0x5e65_0000_0000_f500);
static MARK1: AtomicU64 = AtomicU64::new(0x5e65_0000_0000_f501);
/// vCPU 1's progress: 1 when its selectors are loaded, 2 when its turns are done.
static AP_STAGE: AtomicU32 = AtomicU32::new(0);
/// Turns in which a vCPU found other selectors, or another FS base, than its own.
static BAD0: AtomicU32 = AtomicU32::new(0);
static BAD1: AtomicU32 = AtomicU32::new(0);
/// The first wrong selectors vCPU 1 saw (packed DS..GS), and its FS word.
static AP_SEEN: AtomicU64 = AtomicU64::new(0);
static AP_FS_WORD: AtomicU64 = AtomicU64::new(0);

fn pack(s: DataSelectors) -> u64 {
    s.iter()
        .enumerate()
        .fold(0, |w, (i, &x)| w | (u64::from(x) << (16 * i)))
}

/// Takes on `segs` and an FS base pointing at `mark`; false if either is refused.
fn take_on(segs: DataSelectors, mark: &AtomicU64) -> bool {
    segs::load_selectors(segs).is_some()
        && cpu::set_segment_base(cpu::SEGBASE_FS, mark as *const AtomicU64 as u64) == Ok(0)
}

/// One turn: yield, then whether the vCPU still has `segs` and reads `mark` through FS.
fn turn(segs: DataSelectors, mark: &AtomicU64) -> (bool, DataSelectors, Option<u64>) {
    let _ = sched::yield_now();
    let now = segs::read_selectors();
    let word = segs::read_fs_word(mark, mark as *const AtomicU64 as u64);
    let ok = now == segs && word == Some(mark.load(Ordering::SeqCst));
    (ok, now, word)
}

/// vCPU 1 after its failsafe callback recorded the frame: its turns.
fn ap_main(vcpu: u64) -> ! {
    if take_on(SEGS1, &MARK1) {
        AP_STAGE.store(1, Ordering::SeqCst);
        for _ in 0..ROUNDS {
            let (ok, now, word) = turn(SEGS1, &MARK1);
            if !ok && BAD1.fetch_add(1, Ordering::SeqCst) == 0 {
                AP_SEEN.store(pack(now), Ordering::SeqCst);
                AP_FS_WORD.store(word.unwrap_or(0), Ordering::SeqCst);
            }
        }
    }
    AP_STAGE.store(2, Ordering::SeqCst);
    loop {
        let _ = vcpu::down(vcpu as u32);
    }
}

/// Where vCPU 1's context would start it: never, as its DS cannot load.
fn not_via_failsafe(_vcpu: u32) -> ! {
    AP_STAGE.store(3, Ordering::SeqCst);
    sched::stop(sched::SHUTDOWN_CRASH)
}

fn u64_at(c: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&c[off..off + 8]);
    u64::from_le_bytes(b)
}

/// vCPU 1's context: starts in kernel mode with [`START_SEGS`], RCX/R11 set, the failsafe
/// callback at guest-rt's stub, events masked on failsafe entry.
fn ap_context(si: &StartInfo) -> Option<[u8; VCPU_GUEST_CONTEXT_SIZE]> {
    let mut c = smp::build_context(si, 1, not_via_failsafe).ok()?;
    let flags = u64_at(&c, FLAGS) | VGCF_FAILSAFE_DISABLES_EVENTS;
    c[FLAGS..FLAGS + 8].copy_from_slice(&flags.to_le_bytes());
    c[R11_OFF..R11_OFF + 8].copy_from_slice(&R11.to_le_bytes());
    c[RCX_OFF..RCX_OFF + 8].copy_from_slice(&RCX.to_le_bytes());
    // es, ds, fs, gs: 8 bytes apart (selector and padding).
    let [ds, es, fs, gs] = START_SEGS;
    for (i, s) in [es, ds, fs, gs].iter().enumerate() {
        let off = ES_OFF + 8 * i;
        c[off..off + 8].copy_from_slice(&u64::from(*s).to_le_bytes());
    }
    let fs_entry = segs::failsafe_entry_address();
    c[FAILSAFE_OFF..FAILSAFE_OFF + 8].copy_from_slice(&fs_entry.to_le_bytes());
    Some(c)
}

fn main(si: &StartInfo) {
    guest_rt::println!("segs: per-vCPU data selectors and the failsafe callback");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("shared_info: {e:?}")),
    };
    check_eq(
        "dom0 starts with null data selectors",
        segs::read_selectors(),
        [0; 4],
    );
    check(
        "vCPU 0 takes on its selectors and FS base",
        take_on(SEGS0, &MARK0),
    );
    check_eq(
        "  ... and reads its mark through FS",
        segs::read_fs_word(&MARK0, &MARK0 as *const AtomicU64 as u64),
        Some(MARK0.load(Ordering::SeqCst)),
    );

    let Some(ctx) = ap_context(si) else {
        guest_rt::test::error(format_args!("cannot build vCPU 1's context"));
    };
    segs::set_failsafe_continuation(ap_main);
    // Events on for vCPU 1 (nothing is pending for it): the failsafe entry must mask them.
    shared.set_upcall_mask(1, false);
    let mask_before = shared.upcall_mask(1).unwrap_or(true);
    check_eq(
        "vCPU 1's events unmasked before it runs",
        mask_before,
        false,
    );
    check_eq(
        "VCPUOP_initialise(1) with DS = 0x000f",
        smp::initialise(1, &ctx),
        Ok(0),
    );
    check_eq("VCPUOP_up(1)", vcpu::up(1), Ok(0));
    check(
        "vCPU 1 enters its failsafe callback",
        sched::wait_for(|| segs::failsafe_taken() >= 1),
    );
    check_eq("  ... once", segs::failsafe_taken(), 1);
    let (f, at_entry, entry_rsp) = segs::last_failsafe();
    info(format_args!(
        "failsafe frame {f:x?}, selectors at entry {at_entry:x?}"
    ));
    check_eq("  ... frame RCX, R11", (f.rcx, f.r11), (RCX, R11));
    check_eq(
        "  ... frame DS, ES, FS, GS: the saved ones",
        f.segs,
        START_SEGS.map(u64::from),
    );
    let rsp = u64_at(&ctx, RSP_OFF);
    check_eq(
        "  ... frame RIP, RSP, SS: the context's",
        (f.rip, f.rsp, f.ss),
        (u64_at(&ctx, RIP_OFF), rsp, u64::from(FLAT)),
    );
    check_eq(
        "  ... frame CS: kernel CS with RPL 0, the saved upcall mask above",
        f.cs,
        0xe030 | (u64::from(mask_before) << 32),
    );
    check_eq(
        "  ... frame RFLAGS.IF: events were unmasked",
        f.rflags & (1 << 9) != 0,
        !mask_before,
    );
    check_eq(
        "  ... the frame sits below the 16-byte aligned stack",
        entry_rsp,
        (rsp & !0xf) - 88,
    );
    check_eq(
        "  ... the selector that failed is left null, null FS and GS loaded as 0",
        at_entry,
        [0, FLAT, 0, 0],
    );
    check_eq(
        "  ... events masked (VGCF_failsafe_disables_events)",
        shared.upcall_mask(1),
        Some(true),
    );

    check(
        "vCPU 1 takes on its selectors and FS base",
        sched::wait_for(|| AP_STAGE.load(Ordering::SeqCst) >= 1),
    );
    for _ in 0..ROUNDS {
        if !turn(SEGS0, &MARK0).0 {
            BAD0.fetch_add(1, Ordering::SeqCst);
        }
    }
    check(
        "vCPU 1 finishes its turns",
        sched::wait_for(|| AP_STAGE.load(Ordering::SeqCst) == 2),
    );
    check_eq(
        "vCPU 0 kept its selectors and FS base every turn",
        BAD0.load(Ordering::SeqCst),
        0,
    );
    check_eq(
        "vCPU 1 kept its selectors and FS base every turn",
        BAD1.load(Ordering::SeqCst),
        0,
    );
    if BAD1.load(Ordering::SeqCst) != 0 {
        info(format_args!(
            "vCPU 1 first saw selectors {:#x}, FS word {:#x}",
            AP_SEEN.load(Ordering::SeqCst),
            AP_FS_WORD.load(Ordering::SeqCst)
        ));
    }
    check_eq(
        "vCPU 0's selectors at the end",
        segs::read_selectors(),
        SEGS0,
    );
}
