//! The IDT and the 256 entry stubs. Every vector enters `trap_common`, which saves the
//! general registers and the SSE state (a partial [`crate::guest::FxArea`]), calls [`crate::trap::trap_dispatch`], and returns.
//! Its return to ring 3 is one of the guest `iretq`s of [`crate::guest_return`].

use crate::gdt::{HYPERVISOR_CS, IST_DOUBLE_FAULT, IST_EXCEPTION, IST_IRQ, IST_MCE, IST_NMI};
use core::arch::asm;

#[cfg(not(test))]
core::arch::global_asm!(
    r#"
    .section .text.trap_common, "ax"
    .global trap_common
trap_common:
    /* GS holds the guest's base when the CPU was in ring 3, or at one of the iretqs that
       return to a guest (after their swapgs): swap in the hypervisor's. */
    testb $3, 24(%rsp)
    jnz 0f
    pushq %rax
    leaq dv_guest_iret_trap(%rip), %rax
    cmpq %rax, 24(%rsp)
    je 5f
    leaq dv_guest_iret_enter(%rip), %rax
    cmpq %rax, 24(%rsp)
5:  popq %rax
    jne 1f
0:  swapgs
1:  clts
    pushq %r15
    pushq %r14
    pushq %r13
    pushq %r12
    pushq %r11
    pushq %r10
    pushq %r9
    pushq %r8
    pushq %rbp
    pushq %rdi
    pushq %rsi
    pushq %rdx
    pushq %rcx
    pushq %rbx
    pushq %rax
    cld
    movq %rsp, %rdi
    movq %rsp, %r12
    subq $512, %rsp
    andq $-64, %rsp
    /* The SSE part only (the hypervisor runs no x87 code): MXCSR and XMM0-15 into their
       FXSAVE slots, and the partial-image marker (guest.rs, FxArea). FXSAVE/FXRSTOR take
       ~1/4 of a hypercall under TCG; these plain moves do not. */
    stmxcsr 24(%rsp)
    movdqa %xmm0, 160(%rsp)
    movdqa %xmm1, 176(%rsp)
    movdqa %xmm2, 192(%rsp)
    movdqa %xmm3, 208(%rsp)
    movdqa %xmm4, 224(%rsp)
    movdqa %xmm5, 240(%rsp)
    movdqa %xmm6, 256(%rsp)
    movdqa %xmm7, 272(%rsp)
    movdqa %xmm8, 288(%rsp)
    movdqa %xmm9, 304(%rsp)
    movdqa %xmm10, 320(%rsp)
    movdqa %xmm11, 336(%rsp)
    movdqa %xmm12, 352(%rsp)
    movdqa %xmm13, 368(%rsp)
    movdqa %xmm14, 384(%rsp)
    movdqa %xmm15, 400(%rsp)
    movabsq ${partial}, %rax
    movq %rax, {marker}(%rsp)
    movq %rsp, %rsi
    call trap_dispatch
    /* Still partial: the x87 state in the hardware is the one to return to. Otherwise the
       handler put a whole image there (another vCPU's, or this one's completed). */
    movabsq ${partial}, %rax
    cmpq %rax, {marker}(%rsp)
    jne 6f
    movdqa 160(%rsp), %xmm0
    movdqa 176(%rsp), %xmm1
    movdqa 192(%rsp), %xmm2
    movdqa 208(%rsp), %xmm3
    movdqa 224(%rsp), %xmm4
    movdqa 240(%rsp), %xmm5
    movdqa 256(%rsp), %xmm6
    movdqa 272(%rsp), %xmm7
    movdqa 288(%rsp), %xmm8
    movdqa 304(%rsp), %xmm9
    movdqa 320(%rsp), %xmm10
    movdqa 336(%rsp), %xmm11
    movdqa 352(%rsp), %xmm12
    movdqa 368(%rsp), %xmm13
    movdqa 384(%rsp), %xmm14
    movdqa 400(%rsp), %xmm15
    ldmxcsr 24(%rsp)
    jmp 7f
6:  fxrstor64 (%rsp)
7:  movq %r12, %rsp
    testb $3, 144(%rsp)
    jz 4f
    cmpq $0, %gs:24
    je 4f
    movq %cr0, %rax
    orq $8, %rax
    movq %rax, %cr0
4:  popq %rax
    popq %rbx
    popq %rcx
    popq %rdx
    popq %rsi
    popq %rdi
    popq %rbp
    popq %r8
    popq %r9
    popq %r10
    popq %r11
    popq %r12
    popq %r13
    popq %r14
    popq %r15
    addq $16, %rsp
    testb $3, 8(%rsp)
    jz 2f
    swapgs
    /* A fault here is the guest's (`guest_return`); the entry above swaps GS back. */
    .global dv_guest_iret_trap
dv_guest_iret_trap:
    iretq
2:  iretq

    .section .text.trap_stubs, "ax"
    .align 16
    .global trap_stubs
trap_stubs:
    .set i, 0
    .rept 256
    .align 16
    .if (i == 8) || ((i >= 10) && (i <= 14)) || (i == 17) || (i == 21) || (i == 29) || (i == 30)
    .else
    pushq $0
    .endif
    pushq $i
    jmp trap_common
    .set i, i + 1
    .endr
    .text
"#,
    partial = const crate::guest::FX_PARTIAL,
    marker = const crate::guest::FX_MARKER_AT,
    options(att_syntax)
);

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Gate {
    lo: u64,
    hi: u64,
}

static mut IDT: [Gate; 256] = [Gate { lo: 0, hi: 0 }; 256];

extern "C" {
    /// 256 stubs, 16 bytes apart (one per vector).
    static trap_stubs: [u8; 0];
}

/// The IST slot a vector runs on.
pub fn ist_for(vector: u8) -> u8 {
    match vector {
        2 => IST_NMI,
        8 => IST_DOUBLE_FAULT,
        18 => IST_MCE,
        0..=31 => IST_EXCEPTION,
        _ => IST_IRQ,
    }
}

/// Fills the shared IDT. Call once on the boot CPU before any CPU loads it.
pub fn init() {
    for v in 0..256usize {
        // Only the address is taken: `trap_stubs` is code emitted by the assembly above.
        let handler = core::ptr::addr_of!(trap_stubs) as u64 + 16 * v as u64;
        let ist = u64::from(ist_for(v as u8));
        // Present 64-bit interrupt gates (IF cleared on entry), DPL0 except the software
        // interrupts a PV guest may raise directly, as in Xen: int3, into and int $0x80.
        let access: u64 = if matches!(v, 3 | 4 | 0x80) {
            0xEE
        } else {
            0x8E
        };
        let lo = (handler & 0xFFFF)
            | (u64::from(HYPERVISOR_CS) << 16)
            | (ist << 32)
            | (access << 40)
            | (((handler >> 16) & 0xFFFF) << 48);
        let hi = handler >> 32;
        // SAFETY: single-threaded boot-time initialisation; no CPU has loaded the IDT yet.
        unsafe { (*core::ptr::addr_of_mut!(IDT))[v] = Gate { lo, hi } };
    }
}

/// Loads the shared IDT on the running CPU.
pub fn load() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr = Pointer {
        limit: (256 * 16 - 1) as u16,
        base: core::ptr::addr_of!(IDT) as u64,
    };
    // SAFETY: the IDT is static and fully initialised by `init` before any CPU loads it.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) }
}
