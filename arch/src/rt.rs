//! Freestanding runtime support the compiler expects: memcpy/memmove/memset/memcmp/bcmp and
//! the unwinding symbols (never used: panic = abort).

#[cfg(not(test))]
core::arch::global_asm!(
    r#"
    .section .text.memcpy, "ax"
    .global memcpy
memcpy:
    movq %rdi, %rax
    movq %rdx, %rcx
    rep movsb
    ret

    .section .text.memmove, "ax"
    .global memmove
memmove:
    movq %rdi, %rax
    movq %rdx, %rcx
    cmpq %rsi, %rdi
    jbe 1f
    leaq -1(%rsi,%rdx), %rsi
    leaq -1(%rdi,%rdx), %rdi
    std
    rep movsb
    cld
    ret
1:  rep movsb
    ret

    .section .text.memset, "ax"
    .global memset
memset:
    movq %rdi, %r9
    movl %esi, %eax
    movq %rdx, %rcx
    rep stosb
    movq %r9, %rax
    ret

    .section .text.memcmp, "ax"
    .global memcmp
    .global bcmp
memcmp:
bcmp:
    xorl %eax, %eax
    testq %rdx, %rdx
    jz 3f
2:  movzbl (%rdi), %eax
    movzbl (%rsi), %ecx
    subl %ecx, %eax
    jnz 3f
    incq %rdi
    incq %rsi
    decq %rdx
    jnz 2b
3:  ret

    .section .text.unwind, "ax"
    .global rust_eh_personality
    .global _Unwind_Resume
rust_eh_personality:
_Unwind_Resume:
    ud2
    .text
"#,
    options(att_syntax)
);
