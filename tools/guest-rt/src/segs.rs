//! The data segment selectors DS, ES, FS, GS of the running vCPU (read, loaded), a read
//! through the FS base, and an entry stub for the failsafe callback, which Xen enters when a
//! selector saved for a vCPU no longer loads as it is resumed (`load_segments`): the frame
//! on the kernel stack is RCX, R11, DS, ES, FS, GS, RIP, CS, RFLAGS, RSP, SS. The stub records
//! the frame and the selectors as they are at entry, then continues in a function the guest
//! chose ([`set_failsafe_continuation`]).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::desc::lar;

/// DS, ES, FS, GS, in that order (the failsafe frame's order).
pub type DataSelectors = [u16; 4];

/// The running vCPU's DS, ES, FS, GS.
pub fn read_selectors() -> DataSelectors {
    let (ds, es, fs, gs): (u32, u32, u32, u32);
    // SAFETY: reading segment registers has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {0:e}, ds",
            "mov {1:e}, es",
            "mov {2:e}, fs",
            "mov {3:e}, gs",
            out(reg) ds,
            out(reg) es,
            out(reg) fs,
            out(reg) gs,
            options(nomem, nostack, preserves_flags)
        );
    }
    [ds as u16, es as u16, fs as u16, gs as u16]
}

/// Whether `sel` can be loaded into a data segment register at CPL 3 without faulting: a
/// null selector, or a present DPL-3 data segment (checked with `lar`).
pub fn loadable(sel: u16) -> bool {
    sel & !3 == 0 || lar(sel).is_some_and(|r| r & 0xf800 == 0xf000)
}

/// Loads `s` into DS, ES, FS, GS; None (nothing loaded) unless every selector is
/// [`loadable`]. Loading FS or GS replaces its base with the descriptor's (0 for the flat
/// selectors): set the bases afterwards with `set_segment_base`.
pub fn load_selectors(s: DataSelectors) -> Option<()> {
    if !s.iter().all(|&x| loadable(x)) {
        return None;
    }
    // SAFETY: every selector is null or a present DPL-3 data segment (checked above), so no
    // load faults; this runtime addresses nothing through DS/ES (ignored in 64-bit mode) or
    // FS/GS (see `cpu::set_segment_base`).
    unsafe {
        core::arch::asm!(
            "mov ds, {0:e}",
            "mov es, {1:e}",
            "mov fs, {2:e}",
            "mov gs, {3:e}",
            in(reg) u32::from(s[0]),
            in(reg) u32::from(s[1]),
            in(reg) u32::from(s[2]),
            in(reg) u32::from(s[3]),
            options(nostack, preserves_flags)
        );
    }
    Some(())
}

/// The 8-byte word at offset 0 of the FS segment, for a FS base the caller set (with
/// `set_segment_base`) to the address of `marker`: the word read back shows which base the
/// vCPU runs with. None if the base does not hold `marker`'s address (nothing is read).
pub fn read_fs_word(marker: &AtomicU64, fs_base: u64) -> Option<u64> {
    if fs_base != marker as *const AtomicU64 as u64 {
        return None;
    }
    let v: u64;
    // SAFETY: FS's base is `marker`'s address (the caller set it and vouches it is still in
    // effect, which is what the read tests); an 8-byte aligned read of a live static.
    unsafe {
        core::arch::asm!(
            "mov {0}, qword ptr fs:[0]",
            out(reg) v,
            options(nostack, preserves_flags, readonly)
        );
    }
    Some(v)
}

/// The failsafe frame, as Xen pushed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailsafeFrame {
    /// RCX, R11 of the interrupted context.
    pub rcx: u64,
    /// R11.
    pub r11: u64,
    /// DS, ES, FS, GS as saved for the vCPU (the ones that did not load included).
    pub segs: [u64; 4],
    /// RIP, CS (saved upcall mask in bits 32-39), RFLAGS, RSP, SS.
    pub rip: u64,
    /// CS and the saved upcall mask.
    pub cs: u64,
    /// RFLAGS (IF: events were unmasked).
    pub rflags: u64,
    /// RSP.
    pub rsp: u64,
    /// SS.
    pub ss: u64,
}

/// What the stub recorded: the frame's 11 words, the selectors at entry, the stack pointer
/// at entry, and how often it ran.
static FRAME: [AtomicU64; 11] = [const { AtomicU64::new(0) }; 11];
static ENTRY_SEGS: AtomicU64 = AtomicU64::new(0);
static ENTRY_RSP: AtomicU64 = AtomicU64::new(0);
static TAKEN: AtomicU32 = AtomicU32::new(0);
static CONTINUATION: AtomicU64 = AtomicU64::new(0);

/// Address of the failsafe entry stub (for `callback_op` or a vCPU context).
pub fn failsafe_entry_address() -> u64 {
    guest_rt_failsafe_entry as *const () as u64
}

/// Where the failsafe stub continues after recording: `f(rdi)`, with the RDI the interrupted
/// context had (for a vCPU started by `smp::build_context`, its id). Without one the domain
/// crashes.
pub fn set_failsafe_continuation(f: fn(u64) -> !) {
    CONTINUATION.store(f as usize as u64, Ordering::SeqCst);
}

/// How many times the failsafe callback ran.
pub fn failsafe_taken() -> u32 {
    TAKEN.load(Ordering::SeqCst)
}

/// The last failsafe frame, the selectors the vCPU had when it entered the callback, and its
/// stack pointer there.
pub fn last_failsafe() -> (FailsafeFrame, DataSelectors, u64) {
    let w: [u64; 11] = core::array::from_fn(|i| FRAME[i].load(Ordering::SeqCst));
    let f = FailsafeFrame {
        rcx: w[0],
        r11: w[1],
        segs: [w[2], w[3], w[4], w[5]],
        rip: w[6],
        cs: w[7],
        rflags: w[8],
        rsp: w[9],
        ss: w[10],
    };
    let s = ENTRY_SEGS.load(Ordering::SeqCst);
    let segs = core::array::from_fn(|i| (s >> (16 * i)) as u16);
    (f, segs, ENTRY_RSP.load(Ordering::SeqCst))
}

extern "C" fn failsafe_record(frame: *const u64, rdi: u64) -> ! {
    let segs = read_selectors();
    ENTRY_SEGS.store(
        segs.iter()
            .enumerate()
            .fold(0, |w, (i, &x)| w | (u64::from(x) << (16 * i))),
        Ordering::SeqCst,
    );
    ENTRY_RSP.store(frame as u64, Ordering::SeqCst);
    for (i, slot) in FRAME.iter().enumerate() {
        // SAFETY: Xen wrote the 11-word failsafe frame at `frame`, on this vCPU's kernel
        // stack, which the stub leaves untouched below the realigned stack pointer.
        let w = unsafe { frame.add(i).read_volatile() };
        slot.store(w, Ordering::SeqCst);
    }
    TAKEN.fetch_add(1, Ordering::SeqCst);
    let f = CONTINUATION.load(Ordering::SeqCst);
    if f != 0 {
        // SAFETY: only `set_failsafe_continuation` stores non-zero values, `fn(u64) -> !`s.
        let cont: fn(u64) -> ! = unsafe { core::mem::transmute::<usize, fn(u64) -> !>(f as usize) };
        cont(rdi);
    }
    crate::sched::stop(crate::sched::SHUTDOWN_CRASH)
}

core::arch::global_asm!(
    ".pushsection .text.guest_rt_failsafe,\"ax\",@progbits",
    ".globl guest_rt_failsafe_entry",
    "guest_rt_failsafe_entry:",
    "mov %rdi, %rsi",
    "mov %rsp, %rdi",
    "sub $128, %rsp",
    "and $-16, %rsp",
    "cld",
    "call {record}",
    "ud2",
    ".popsection",
    record = sym failsafe_record,
    options(att_syntax)
);

extern "C" {
    fn guest_rt_failsafe_entry();
}
