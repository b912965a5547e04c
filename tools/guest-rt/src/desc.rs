//! Descriptor tables of a 64-bit PV guest: `set_gdt`, `update_descriptor`
//! (`pv/descriptor-tables.c`) and the instructions that use or inspect a selector of the
//! guest's own GDT (`mov %ds`, `lar`).

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, BadPtr, SET_GDT, UPDATE_DESCRIPTOR};
use crate::pvmm::Scratch;

/// `FIRST_RESERVED_GDT_ENTRY`: entries a guest GDT may have.
pub const FIRST_RESERVED_GDT_ENTRY: u64 = 14 * 512;

/// `set_gdt(frames, entries)`. The guest's code and stack selectors are Xen's (above the
/// guest entries), so replacing the GDT never pulls a segment from under the running code.
pub fn set_gdt(frames: &[u64], entries: u64) -> XenResult {
    if entries <= FIRST_RESERVED_GDT_ENTRY && (frames.len() as u64) < entries.div_ceil(512) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: Xen reads `entries.div_ceil(512)` words of the list (all inside `frames`, or
    // none when it refuses `entries` first) and changes only the descriptor table.
    unsafe { hypercall::call(SET_GDT, [frames.as_ptr() as u64, entries, 0, 0, 0]) }
}

/// `set_gdt` with a frame list Xen cannot read (-EFAULT).
pub fn set_gdt_bad_list(list: BadPtr, entries: u64) -> XenResult {
    // SAFETY: the list is a `BadPtr`, which Xen never reads successfully.
    unsafe { hypercall::call(SET_GDT, [list.addr(), entries, 0, 0, 0]) }
}

/// `update_descriptor` of entry `index` of the frame the scratch page maps (a frame only
/// reached through it), at byte offset `index * 8 + misalign`.
pub fn update_descriptor(s: &Scratch, index: u64, misalign: u64, desc: u64) -> XenResult {
    let Some(mfn) = s.mapped_mfn() else {
        return Err(Errno::EINVAL);
    };
    if index >= 512 || misalign >= 8 {
        return Err(Errno::EINVAL);
    }
    let maddr = (mfn << 12) + index * 8 + misalign;
    // SAFETY: Xen writes at most 8 bytes inside that frame, which holds no Rust object (it is
    // only reached through the scratch page).
    unsafe { hypercall::call(UPDATE_DESCRIPTOR, [maddr, desc, 0, 0, 0]) }
}

/// `update_descriptor` at machine address `maddr` of a frame beyond the machine's RAM (or
/// otherwise not the caller's): Xen must refuse it (-EINVAL) without writing.
pub fn update_descriptor_not_ours(maddr: u64, desc: u64, max_ram_page: u64) -> XenResult {
    if maddr >> 12 < max_ram_page {
        return Err(Errno::EINVAL);
    }
    // SAFETY: no frame of this guest lies at `maddr` (beyond the RAM Xen reports).
    unsafe { hypercall::call(UPDATE_DESCRIPTOR, [maddr, desc, 0, 0, 0]) }
}

/// `lar sel`: the access rights (bits 8..23 of the descriptor's high word) if the selector
/// is valid and visible at CPL 3, `None` otherwise.
pub fn lar(sel: u16) -> Option<u32> {
    let rights: u32;
    let ok: u8;
    // SAFETY: `lar` only reads the descriptor table; a bad selector clears ZF, never faults.
    unsafe {
        core::arch::asm!(
            "xor {r:e}, {r:e}",
            "lar {r:e}, {s:e}",
            "setz {ok}",
            r = out(reg) rights,
            s = in(reg) u32::from(sel),
            ok = out(reg_byte) ok,
            options(nomem, nostack)
        );
    }
    (ok != 0).then_some(rights)
}

/// `lar sel` for a selector whose descriptor read may fault (a page of the LDT Xen cannot
/// map gives #PF): the 3-byte `lar %ecx, %eax`, so an expected #PF
/// (`traps::expect(14, 3)`) resumes after it. The access rights as [`lar`] reports them;
/// `None` for an invalid selector or when the read faulted.
pub fn lar_may_fault(sel: u16) -> Option<u32> {
    let rights: u32;
    let ok: u8;
    // A fault on the table's page is handled by the trap table (the caller expects it) and
    // resumes after the instruction with ZF clear (`cmp` below leaves it so).
    // SAFETY: `lar` only reads the descriptor table (an invalid selector clears ZF); the
    // asm declares the C ABI clobbers the fault handler may leave.
    unsafe {
        core::arch::asm!(
            "xor eax, eax",
            "cmp eax, 1",
            ".byte 0x0f, 0x02, 0xc1",
            "setz dl",
            in("ecx") u32::from(sel),
            out("eax") rights,
            out("dl") ok,
            clobber_abi("C"),
        );
    }
    (ok != 0).then_some(rights)
}

/// Loads `sel` into `%ds` (a data selector of the guest's GDT, checked with `lar` first to be
/// a present, readable data segment at DPL 3 so the load cannot fault), reads `%ds` back and
/// restores the previous `%ds`. In 64-bit mode `%ds` takes no part in addressing.
pub fn load_ds(sel: u16) -> Option<u16> {
    let rights = lar(sel)?;
    // Present, DPL 3, code/data, data (type bit 3 clear).
    if rights & 0xf800 != 0xf000 {
        return None;
    }
    let got: u32;
    // SAFETY: the descriptor is a present DPL-3 data segment (checked above), so the load
    // cannot fault; the old %ds is restored; 64-bit addressing ignores %ds.
    unsafe {
        core::arch::asm!(
            "mov {old:e}, ds",
            "mov ds, {s:e}",
            "mov {got:e}, ds",
            "mov ds, {old:e}",
            old = out(reg) _,
            s = in(reg) u32::from(sel),
            got = out(reg) got,
            options(nostack, preserves_flags)
        );
    }
    Some(got as u16)
}

extern "C" {
    fn guest_rt_on_code_selector(cs: u64, iret_stub: u64) -> u64;
    fn guest_rt_iret_to(cs: u64, ss: u64, iret_stub: u64, rip: u64) -> u64;
    fn guest_rt_iret_to_recovered();
}

core::arch::global_asm!(
    ".pushsection .text.guest_rt_desc,\"ax\",@progbits",
    // on_code_selector(cs, iret_stub): HYPERVISOR_iret to the next instruction with CS `cs`
    // (guest kernel mode: RPL 0 in the frame, Xen makes it 3; same stack and flags), read
    // %cs there, HYPERVISOR_iret back to FLAT_RING3_CS64 and return what was read.
    ".globl guest_rt_on_code_selector",
    "guest_rt_on_code_selector:",
    "mov %rsp, %rax",
    "push $0xe02b",
    "push %rax",
    "pushfq",
    "push %rdi",
    "lea 1f(%rip), %rax",
    "push %rax",
    "push $0",
    "jmp *%rsi",
    "1:",
    "xor %eax, %eax",
    "mov %cs, %eax",
    "mov %rsp, %rdx",
    "push $0xe02b",
    "push %rdx",
    "pushfq",
    "push $0xe030",
    "lea 2f(%rip), %rdx",
    "push %rdx",
    "push $0",
    "jmp *%rsi",
    "2:",
    "ret",
    // iret_to(cs, ss, iret_stub, rip): HYPERVISOR_iret to `rip` (0: the next instruction)
    // with CS `cs` and SS `ss` (same stack and flags); at the next instruction, read %cs and
    // HYPERVISOR_iret back to FLAT_RING3_CS64 / FLAT_RING3_SS64 and return it. If the return
    // faults, the trap handler resumes at `guest_rt_iret_to_recovered` on the flat selectors
    // (see `traps::recover_at`) with the stack as it was: return 0.
    ".globl guest_rt_iret_to",
    "guest_rt_iret_to:",
    "mov %rsp, %rax",
    "push %rsi",
    "push %rax",
    "pushfq",
    "push %rdi",
    "lea 1f(%rip), %rax",
    "test %rcx, %rcx",
    "cmovnz %rcx, %rax",
    "push %rax",
    "push $0",
    "jmp *%rdx",
    "1:",
    "xor %eax, %eax",
    "mov %cs, %eax",
    "mov %rsp, %rcx",
    "push $0xe02b",
    "push %rcx",
    "pushfq",
    "push $0xe030",
    "lea 2f(%rip), %rcx",
    "push %rcx",
    "push $0",
    "jmp *%rdx",
    "2:",
    "ret",
    ".globl guest_rt_iret_to_recovered",
    "guest_rt_iret_to_recovered:",
    "xor %eax, %eax",
    "ret",
    ".popsection",
    options(att_syntax)
);

/// `HYPERVISOR_iret` to the next instruction with code selector `cs` and stack selector `ss`
/// (RPL 0 in the frame, Xen makes it 3) on the current stack: `Some(cs read there)` if the
/// guest ran on them (it comes back on Xen's flat selectors), `None` if returning to them
/// faulted or there is no hypercall page. Arm [`crate::traps::expect`] for the vectors the
/// return may raise first: the trap handler counts the fault and resumes here on the flat
/// selectors.
pub fn iret_to(cs: u16, ss: u16) -> Option<u16> {
    iret_to_at(0, cs, ss)
}

/// [`iret_to`] with RIP `rip` in the frame instead of the next instruction (0: that one):
/// for a RIP the guest cannot run at, which must fault.
pub fn iret_to_at(rip: u64, cs: u16, ss: u16) -> Option<u16> {
    let iret = hypercall::stub_address(hypercall::IRET)?;
    crate::traps::recover_at(guest_rt_iret_to_recovered as *const () as u64);
    // It comes back either through the second iret (on Xen's flat selectors) or, when the
    // first return faults, through the trap handler, which resumes at
    // `guest_rt_iret_to_recovered` with the flat selectors and the same stack pointer.
    // SAFETY: the code touches no memory but its own stack and follows the C ABI (RAX, RCX,
    // RDX and the hypercall's RCX/R11 are caller-saved; only caller-saved registers differ).
    let got = unsafe { guest_rt_iret_to(u64::from(cs & !3), u64::from(ss & !3), iret, rip) };
    crate::traps::recover_at(0);
    (got != 0).then_some(got as u16)
}

/// Which of #NP, #SS, #GP, #PF (a descriptor in an LDT page that cannot be mapped)
/// returning to `cs`:`ss` with [`iret_to`] raised, and its error code (as the guest's trap
/// handler received them); `None` if none did (the guest ran there, or there is no
/// hypercall page).
pub fn iret_fault(cs: u16, ss: u16) -> Option<(u8, u64)> {
    iret_fault_at(0, cs, ss)
}

/// [`iret_fault`] for a frame with RIP `rip` ([`iret_to_at`]).
pub fn iret_fault_at(rip: u64, cs: u16, ss: u16) -> Option<(u8, u64)> {
    use crate::traps;
    const VECTORS: [u8; 4] = [11, 12, 13, 14];
    for v in VECTORS {
        traps::expect(v, 0);
    }
    let before = VECTORS.map(traps::taken);
    let ran = iret_to_at(rip, cs, ss);
    for v in VECTORS {
        traps::unexpect(v);
    }
    let fault = VECTORS
        .into_iter()
        .zip(before)
        .find(|&(v, n)| traps::taken(v) != n);
    match (ran, fault) {
        (None, Some((v, _))) => Some((v, traps::last_trap().error_code)),
        _ => None,
    }
}

/// Runs a few instructions of guest kernel code with code selector `cs` (a 64-bit code
/// segment at DPL 3, of the GDT or LDT), entered and left through `HYPERVISOR_iret`: the
/// `%cs` read there. `None` without a hypercall page. A selector Xen cannot return to makes
/// the return fault, and the fault (#GP, #NP, #SS) is bounced to the guest's trap table as
/// its own, never back here: use [`iret_to`] for such selectors.
pub fn on_code_selector(cs: u16) -> Option<u16> {
    let iret = hypercall::stub_address(hypercall::IRET)?;
    // SAFETY: the code touches no memory but its own stack, returns on it with
    // FLAT_RING3_CS64 back, and follows the C ABI (RAX, RDX and the hypercall's RCX/R11 are
    // caller-saved); a failed iret ends in the guest's trap handler, never back here.
    Some(unsafe { guest_rt_on_code_selector(u64::from(cs & !3), iret) } as u16)
}
