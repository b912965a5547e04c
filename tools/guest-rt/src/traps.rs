//! The PV trap table (`set_trap_table`, `struct trap_info` in `public/arch-x86/xen.h`):
//! entry stubs for the exceptions Xen bounces to the guest, a handler that reports unexpected
//! traps and resumes expected ones through `HYPERVISOR_iret`.
//!
//! Xen's 64-bit PV bounce frame on the kernel stack is, from the top: RCX, R11, [error code],
//! RIP, CS, RFLAGS, RSP, SS. The stubs pop RCX and R11, push a zero error code where the CPU
//! pushes none, push the vector and join a common path that saves the registers and calls
//! [`handle`]. To resume, the common path pushes the iret `flags` word (0) and jumps to the
//! hypercall page's iret stub, which pushes RCX, R11 and RAX and enters Xen.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::cpu::{FLAT_RING3_CS64, FLAT_RING3_SS64};
use crate::errno::XenResult;
use crate::hypercall::{self, IRET, SET_TRAP_TABLE};

pub use dom0_interface::arch_x86::{TrapInfo, TI_IF as TI_MASK_EVENTS};

/// Vectors for which the CPU pushes an error code.
pub const ERROR_CODE_VECTORS: [u8; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];
/// Vectors the trap table installs (all architectural exceptions except NMI (2, a callback in
/// PV), coprocessor overrun (9) and reserved 15).
pub const INSTALLED_VECTORS: [u8; 19] = [
    0, 1, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21,
];
/// Distance between two entry stubs.
pub const STUB_STRIDE: u64 = 16;

/// The registers saved by the common entry path, lowest address first, followed by the vector,
/// the error code and the frame Xen bounced.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    /// Saved general-purpose registers.
    pub r15: u64,
    /// Saved R14.
    pub r14: u64,
    /// Saved R13.
    pub r13: u64,
    /// Saved R12.
    pub r12: u64,
    /// Saved R11 (as Xen bounced it).
    pub r11: u64,
    /// Saved R10.
    pub r10: u64,
    /// Saved R9.
    pub r9: u64,
    /// Saved R8.
    pub r8: u64,
    /// Saved RBP.
    pub rbp: u64,
    /// Saved RDI.
    pub rdi: u64,
    /// Saved RSI.
    pub rsi: u64,
    /// Saved RDX.
    pub rdx: u64,
    /// Saved RCX (as Xen bounced it).
    pub rcx: u64,
    /// Saved RBX.
    pub rbx: u64,
    /// Saved RAX.
    pub rax: u64,
    /// Exception vector.
    pub vector: u64,
    /// Error code (0 for vectors without one).
    pub error_code: u64,
    /// Interrupted RIP.
    pub rip: u64,
    /// Interrupted CS.
    pub cs: u64,
    /// Interrupted RFLAGS.
    pub rflags: u64,
    /// Interrupted RSP.
    pub rsp: u64,
    /// Interrupted SS.
    pub ss: u64,
}

/// Per-vector "expected" markers: 0 = unexpected, otherwise 1 + bytes to skip on resume.
static EXPECTED: [AtomicU8; 256] = [const { AtomicU8::new(0) }; 256];
/// Per-vector counts of expected traps taken.
static TAKEN: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
/// The last expected trap taken: vector, error code, RIP, CS, RFLAGS, RSP, SS (as Xen bounced
/// them) and the address of the saved frame (where the handler ran).
static LAST: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// What [`last_trap`] reports about the most recent expected trap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastTrap {
    /// Vector.
    pub vector: u64,
    /// Error code (0 where the vector has none).
    pub error_code: u64,
    /// Interrupted RIP.
    pub rip: u64,
    /// Interrupted CS as Xen bounced it (RPL 0 for guest kernel, 3 for guest user).
    pub cs: u64,
    /// Interrupted RFLAGS.
    pub rflags: u64,
    /// Interrupted RSP.
    pub rsp: u64,
    /// Interrupted SS.
    pub ss: u64,
    /// Address of the saved register frame, i.e. the stack the handler ran on.
    pub frame: u64,
}

/// The most recent expected trap.
pub fn last_trap() -> LastTrap {
    let l = |i: usize| LAST[i].load(Ordering::SeqCst);
    LastTrap {
        vector: l(0),
        error_code: l(1),
        rip: l(2),
        cs: l(3),
        rflags: l(4),
        rsp: l(5),
        ss: l(6),
        frame: l(7),
    }
}
/// Where the next expected trap resumes instead of `skip` bytes on (0: nowhere set); see
/// [`recover_at`].
static RECOVER_AT: AtomicU64 = AtomicU64::new(0);

/// Makes the next expected trap resume at `rip` on Xen's flat kernel code and stack selectors
/// (keeping the interrupted RSP and registers), whatever selectors it interrupted: for a
/// frame the guest cannot return to. 0 withdraws it.
pub fn recover_at(rip: u64) {
    RECOVER_AT.store(rip, Ordering::SeqCst);
}

/// Address of the hypercall page's iret stub, read by the entry path.
static IRET_STUB: AtomicU64 = AtomicU64::new(0);

/// Marks the next trap on `vector` as expected: it is counted and the guest resumes `skip`
/// bytes after the trapping RIP (0 for traps such as `int3`, which already point past the
/// instruction). Vectors 32 and above are software interrupts (see [`INT80_STUB`]). Returns
/// `false` for skips above 254.
pub fn expect(vector: u8, skip: u8) -> bool {
    if skip == u8::MAX {
        return false;
    }
    EXPECTED[vector as usize].store(skip + 1, Ordering::SeqCst);
    true
}

/// Withdraws an expectation set with [`expect`] that did not trap (a later trap on `vector`
/// is unexpected again).
pub fn unexpect(vector: u8) {
    EXPECTED[vector as usize].store(0, Ordering::SeqCst);
}

/// How many expected traps on `vector` have been taken.
pub fn taken(vector: u8) -> u32 {
    TAKEN
        .get(vector as usize)
        .map_or(0, |t| t.load(Ordering::SeqCst))
}

/// Decides what to do with a trap: `Some(skip)` to resume (and consumes the expectation), or
/// `None` if it is unexpected.
fn consume_expectation(vector: u64) -> Option<u8> {
    let slot = EXPECTED.get(usize::try_from(vector).ok()?)?;
    match slot.swap(0, Ordering::SeqCst) {
        0 => None,
        n => {
            TAKEN[vector as usize].fetch_add(1, Ordering::SeqCst);
            Some(n - 1)
        }
    }
}

/// Human name of an exception vector.
pub fn vector_name(vector: u64) -> &'static str {
    const NAMES: [&str; 22] = [
        "#DE",
        "#DB",
        "NMI",
        "#BP",
        "#OF",
        "#BR",
        "#UD",
        "#NM",
        "#DF",
        "#MF-overrun",
        "#TS",
        "#NP",
        "#SS",
        "#GP",
        "#PF",
        "reserved",
        "#MF",
        "#AC",
        "#MC",
        "#XM",
        "#VE",
        "#CP",
    ];
    usize::try_from(vector)
        .ok()
        .and_then(|v| NAMES.get(v))
        .copied()
        .unwrap_or("vector")
}

/// Called by the entry path with the saved frame. Returns to resume an expected trap; an
/// unexpected one ends the test with `Test result: ERROR`.
extern "C" fn handle(frame: &mut TrapFrame) {
    if let Some(skip) = consume_expectation(frame.vector) {
        let words = [
            frame.vector,
            frame.error_code,
            frame.rip,
            frame.cs,
            frame.rflags,
            frame.rsp,
            frame.ss,
            frame as *const TrapFrame as u64,
        ];
        for (slot, w) in LAST.iter().zip(words) {
            slot.store(w, Ordering::SeqCst);
        }
        match RECOVER_AT.swap(0, Ordering::SeqCst) {
            0 => frame.rip = frame.rip.wrapping_add(u64::from(skip)),
            rip => {
                frame.rip = rip;
                // RPL 0: guest kernel mode (Xen makes it 3); RPL 3 would mean user mode.
                frame.cs = u64::from(FLAT_RING3_CS64 & !3);
                frame.ss = u64::from(FLAT_RING3_SS64);
            }
        }
        return;
    }
    crate::test::error(format_args!(
        "unexpected exception {} ({}) error code {:#x} at rip {:#x} rsp {:#x} cs {:#x} rflags {:#x}",
        vector_name(frame.vector),
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.rsp,
        frame.cs,
        frame.rflags
    ));
}

extern "C" {
    /// First entry stub (the others follow every [`STUB_STRIDE`] bytes); defined in asm below.
    fn guest_rt_trap_stubs();
    /// Entry stub for the software interrupt `int $0x80` (no error code); defined below.
    fn guest_rt_trap_stub_0x80();
}

/// Vector of the software-interrupt stub [`int80_stub_address`] serves.
pub const INT80_STUB: u8 = 0x80;

/// Address of the `int $0x80` entry stub: install it with [`set_trap_table`] and a DPL of
/// choice; [`expect`]`(0x80, 0)` makes the handler count the interrupt and resume after it.
pub fn int80_stub_address() -> u64 {
    guest_rt_trap_stub_0x80 as *const () as u64
}

core::arch::global_asm!(
    ".pushsection .text.guest_rt_traps,\"ax\",@progbits",
    ".balign 16",
    ".globl guest_rt_trap_stubs",
    "guest_rt_trap_stubs:",
    ".irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".balign 16",
    "pop %rcx",
    "pop %r11",
    ".if (\\vec == 8) || (\\vec == 10) || (\\vec == 11) || (\\vec == 12) || (\\vec == 13) || (\\vec == 14) || (\\vec == 17) || (\\vec == 21) || (\\vec == 29) || (\\vec == 30)",
    ".else",
    "push $0",
    ".endif",
    "push $\\vec",
    "jmp guest_rt_trap_common",
    ".endr",
    ".balign 16",
    ".globl guest_rt_trap_stub_0x80",
    "guest_rt_trap_stub_0x80:",
    "pop %rcx",
    "pop %r11",
    "push $0",
    "push $0x80",
    "jmp guest_rt_trap_common",
    "guest_rt_trap_common:",
    "push %rax",
    "push %rbx",
    "push %rcx",
    "push %rdx",
    "push %rsi",
    "push %rdi",
    "push %rbp",
    "push %r8",
    "push %r9",
    "push %r10",
    "push %r11",
    "push %r12",
    "push %r13",
    "push %r14",
    "push %r15",
    "mov %rsp, %rdi",
    "mov %rsp, %rbx",
    "and $-16, %rsp",
    "cld",
    "call {handle}",
    "mov %rbx, %rsp",
    "pop %r15",
    "pop %r14",
    "pop %r13",
    "pop %r12",
    "pop %r11",
    "pop %r10",
    "pop %r9",
    "pop %r8",
    "pop %rbp",
    "pop %rdi",
    "pop %rsi",
    "pop %rdx",
    "pop %rcx",
    "pop %rbx",
    "pop %rax",
    "add $16, %rsp",
    "push $0",
    "jmp *{iret}(%rip)",
    ".popsection",
    handle = sym handle,
    iret = sym IRET_STUB,
    options(att_syntax)
);

/// Address of the entry stub for `vector`.
pub fn stub_address(vector: u8) -> u64 {
    guest_rt_trap_stubs as *const () as u64 + u64::from(vector) * STUB_STRIDE
}

/// The trap table this runtime installs, terminated by a zero entry.
pub fn table() -> [TrapInfo; INSTALLED_VECTORS.len() + 1] {
    let mut t = [TrapInfo::default(); INSTALLED_VECTORS.len() + 1];
    for (slot, &v) in t.iter_mut().zip(INSTALLED_VECTORS.iter()) {
        let dpl = if v == 3 || v == 4 { 3 } else { 0 };
        *slot = TrapInfo {
            vector: v,
            flags: dpl | TI_MASK_EVENTS,
            cs: FLAT_RING3_CS64,
            address: stub_address(v),
        };
    }
    t
}

/// `set_trap_table(table)`.
///
/// # Safety
/// Xen will transfer control to every address in `table` when the matching trap occurs: each
/// must be a correct PV trap entry point. `table` must end with an entry whose address is 0.
pub unsafe fn set_trap_table(table: &[TrapInfo]) -> XenResult {
    // SAFETY: Xen reads entries from `table` up to its zero-address terminator; the caller
    // vouches for the handlers.
    unsafe { hypercall::call(SET_TRAP_TABLE, [table.as_ptr() as u64, 0, 0, 0, 0]) }
}

/// Installs this runtime's trap table (called at boot).
pub fn install() -> XenResult {
    let Some(iret) = hypercall::stub_address(IRET) else {
        return Err(crate::errno::Errno::ENOSYS);
    };
    IRET_STUB.store(iret, Ordering::SeqCst);
    let t = table();
    // SAFETY: every entry points at one of the stubs above, which implement Xen's PV bounce
    // frame protocol; the table ends with a zero entry.
    unsafe { set_trap_table(&t) }
}

/// Executes `int3`; with [`expect`]`(3, 0)` armed the handler counts it and resumes after it.
pub fn int3() {
    // SAFETY: `int3` raises #BP, which the installed trap table handles: an expected #BP
    // resumes right after the instruction with all registers restored; an unexpected one ends
    // the program. The C ABI clobbers are declared since the handler runs Rust code.
    unsafe { core::arch::asm!("int3", clobber_abi("C")) };
}

/// Executes `ud2`; with [`expect`]`(6, 2)` armed the handler counts the #UD and resumes after
/// the 2-byte instruction.
pub fn ud2() {
    // SAFETY: as for `int3`: #UD is handled by the trap table and, when expected, resumes 2
    // bytes later (past `ud2`), with the C ABI clobbers declared.
    unsafe { core::arch::asm!("ud2", clobber_abi("C")) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_the_vectors_and_terminates() {
        let t = table();
        assert_eq!(t.len(), INSTALLED_VECTORS.len() + 1);
        assert_eq!(t[t.len() - 1], TrapInfo::default());
        let bp = t.iter().find(|e| e.vector == 3).unwrap();
        assert_eq!(bp.flags & 3, 3);
        let gp = t.iter().find(|e| e.vector == 13).unwrap();
        assert_eq!(gp.flags & 3, 0);
        assert_eq!(gp.cs, 0xe033);
        assert_eq!(gp.address - t[0].address, 13 * STUB_STRIDE);
        assert!(!INSTALLED_VECTORS.contains(&2));
        assert!(!INSTALLED_VECTORS.contains(&15));
    }

    #[test]
    fn stubs_fit_their_stride() {
        // Every stub must start with `pop %rcx; pop %r11` (59 41 5b) exactly at its computed
        // address; a stub longer than the stride would shift all later ones.
        assert_eq!(stub_address(0) % 16, 0);
        for v in 0..32u8 {
            let p = stub_address(v) as *const [u8; 3];
            // SAFETY: the stubs are in this test binary's text, readable, 16 bytes apart.
            let bytes = unsafe { core::ptr::read(p) };
            assert_eq!(bytes, [0x59, 0x41, 0x5b], "stub {v}");
        }
    }

    #[test]
    fn expectations_are_consumed_once() {
        assert!(expect(0x80, 0));
        assert_eq!(consume_expectation(0x80), Some(0));
        assert!(!expect(5, u8::MAX));
        assert!(expect(5, 2));
        assert_eq!(consume_expectation(5), Some(2));
        assert_eq!(consume_expectation(5), None);
        assert_eq!(taken(5), 1);
        assert_eq!(consume_expectation(99), None);
        assert_eq!(taken(99), 0);
        assert_eq!(consume_expectation(300), None);
    }

    #[test]
    fn frame_layout_matches_the_asm() {
        assert_eq!(core::mem::offset_of!(TrapFrame, rax), 14 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, vector), 15 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, rip), 17 * 8);
        assert_eq!(core::mem::size_of::<TrapFrame>(), 22 * 8);
        assert_eq!(vector_name(14), "#PF");
        assert_eq!(vector_name(200), "vector");
    }
}
