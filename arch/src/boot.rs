//! Boot entry: multiboot1/multiboot2 headers, the 32-bit entry, long-mode switch, the jump to
//! the high half, and the real-mode trampoline application processors start in.
//!
//! The image is loaded at physical `LOAD_PADDR` (2 MiB) and linked at `IMAGE_VBASE + paddr`.
//! The boot page tables map: identity 0–4 GiB (early boot and AP start-up only), the direct
//! map (L4 slot 262) over the same 4 GiB, and the image window (L4 slot 261).

/// Physical address the AP trampoline is copied to (real-mode segment 0x800).
pub const AP_TRAMPOLINE_PADDR: u64 = 0x8000;

/// Size of the boot CPU's main stack (in .bss, under `boot_stack_top`), as big as the other
/// CPUs' main stacks (`smp::AP_STACK_SIZE`): the boot CPU builds dom0 on it and, as the
/// coordinator or the only CPU, runs the hypervisor's idle and console paths. At 64 KiB its
/// high-water mark in the `domrun` scenario was 49 KiB (`stacks::report`).
pub const BOOT_STACK_SIZE: usize = 256 * 1024;

#[cfg(not(test))]
core::arch::global_asm!(
    r#"
    .set VB, 0xFFFF82D080000000
    .set TRAMP, 0x8000
    .set MB1_MAGIC, 0x1BADB002
    .set MB1_FLAGS, 0x00010003
    .set MB2_MAGIC, 0xE85250D6

    .section .boot.header, "a"
    .code32
    .align 4
mb1_header:
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long 0x100000000 - (MB1_MAGIC + MB1_FLAGS)
    .long mb1_header - VB
    .long __image_start - VB
    .long __data_end - VB
    .long __bss_end - VB
    .long mb_entry32 - VB

    .align 8
mb2_header:
    .long MB2_MAGIC
    .long 0
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + (mb2_header_end - mb2_header))
    /* address tag */
    .align 8
    .short 2, 0
    .long 24
    .long mb2_header - VB
    .long __image_start - VB
    .long __data_end - VB
    .long __bss_end - VB
    /* entry address tag */
    .align 8
    .short 3, 0
    .long 12
    .long mb_entry32 - VB
    /* module alignment tag */
    .align 8
    .short 6, 0
    .long 8
    /* end tag */
    .align 8
    .short 0, 0
    .long 8
mb2_header_end:

    .section .boot.text, "ax"
    .code32
    .global mb_entry32
mb_entry32:
    cli
    cld
    movl %eax, (mb_magic_saved - VB)
    movl %ebx, (mb_info_saved - VB)
    movl $(boot_stack_top - VB), %esp

    /* Long mode present? CPUID 0x80000001 EDX bit 29. */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    btl $29, %edx
    jnc no_long_mode
    movl %edx, (boot_ext_edx - VB)

    /* Zero the boot page tables (7 pages). */
    movl $(boot_pml4 - VB), %edi
    movl $(7 * 1024), %ecx
    xorl %eax, %eax
    rep stosl

    /* 2048 2 MiB pages: 0..4 GiB. */
    movl $(boot_pd - VB), %edi
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, (%edi,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jb 1b

    /* PDPT for the low 4 GiB: 4 page directories. */
    movl $(boot_pdpt_low - VB), %edi
    movl $(boot_pd - VB + 0x003), %eax
    movl %eax, 0(%edi)
    addl $0x1000, %eax
    movl %eax, 8(%edi)
    addl $0x1000, %eax
    movl %eax, 16(%edi)
    addl $0x1000, %eax
    movl %eax, 24(%edi)

    /* Image window: PDPT entry 322 of slot 261 maps the first GiB. */
    movl $(boot_pdpt_image - VB), %edi
    movl $(boot_pd - VB + 0x003), %eax
    movl %eax, (322 * 8)(%edi)

    movl $(boot_pml4 - VB), %edi
    movl $(boot_pdpt_low - VB + 0x003), %eax
    movl %eax, 0(%edi)
    movl %eax, (262 * 8)(%edi)
    movl $(boot_pdpt_image - VB + 0x003), %eax
    movl %eax, (261 * 8)(%edi)

    /* PAE + PGE, CR3, EFER.LME (+NXE when present), paging + WP. */
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 7)), %eax
    movl %eax, %cr4
    movl $(boot_pml4 - VB), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $(1 << 8), %eax
    btl $20, (boot_ext_edx - VB)
    jnc 2f
    orl $(1 << 11), %eax
2:  wrmsr
    movl %eax, (boot_efer - VB)
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0

    lgdt (boot_gdtr - VB)
    ljmp $0x08, $(entry64_low - VB)

no_long_mode:
    /* Say so on COM1 and stop: this CPU cannot run DualVisor. */
    movl $(no_lm_msg - VB), %esi
3:  movb (%esi), %al
    testb %al, %al
    jz 5f
    movw $0x3FD, %dx
4:  inb %dx, %al
    testb $0x20, %al
    jz 4b
    movb (%esi), %al
    movw $0x3F8, %dx
    outb %al, %dx
    incl %esi
    jmp 3b
5:  hlt
    jmp 5b

    .code64
entry64_low:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    movabsq $entry64_high, %rax
    jmpq *%rax

    .section .boot.data, "aw"
    .align 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
boot_gdt_end:
boot_gdtr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt - VB
    .align 4
    .global mb_magic_saved
mb_magic_saved:
    .long 0
    .global mb_info_saved
mb_info_saved:
    .long 0
boot_ext_edx:
    .long 0
    .global boot_efer
boot_efer:
    .long 0
no_lm_msg:
    .asciz "DualVisor: this CPU has no long mode (x86-64); cannot boot.\r\n"

    .section .bss.boot_pt, "aw", @nobits
    .align 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt_low:
    .skip 4096
boot_pdpt_image:
    .skip 4096
boot_pd:
    .skip 4 * 4096

    .section .bss.boot_stack, "aw", @nobits
    .align 4096
    /* Unmapped in the hypervisor page tables: an overflow of the boot stack faults. */
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096
boot_stack:
    .skip {boot_stack_size}
    .global boot_stack_top
boot_stack_top:

    .section .text.entry64, "ax"
    .code64
entry64_high:
    movabsq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    /* SSE: the precompiled core uses it. CR0.EM=0, MP=1; CR4.OSFXSR|OSXMMEXCPT. */
    movq %cr0, %rax
    andq $~(1 << 2), %rax
    orq $(1 << 1), %rax
    movq %rax, %cr0
    movq %cr4, %rax
    orq $((1 << 9) | (1 << 10)), %rax
    movq %rax, %cr4
    fninit
    movl mb_magic_saved(%rip), %edi
    movl mb_info_saved(%rip), %esi
    call arch_boot_entry
6:  cli
    hlt
    jmp 6b

    /* ---- Application processor trampoline, copied to TRAMP (0x8000). ---- */
    .section .rodata.ap_trampoline, "a"
    .code16
    .global ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (TRAMP + (tramp_gdtr - ap_trampoline_start))
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(TRAMP + (tramp32 - ap_trampoline_start))
    .code32
tramp32:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 7)), %eax
    movl %eax, %cr4
    movl (TRAMP + (tramp_cr3 - ap_trampoline_start)), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    movl (TRAMP + (tramp_efer - ap_trampoline_start)), %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    ljmp $0x18, $(TRAMP + (tramp64 - ap_trampoline_start))
    .code64
tramp64:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movq %cr0, %rax
    andq $~(1 << 2), %rax
    orq $(1 << 1), %rax
    movq %rax, %cr0
    movq %cr4, %rax
    orq $((1 << 9) | (1 << 10)), %rax
    movq %rax, %cr4
    fninit
    movq (TRAMP + (tramp_stack - ap_trampoline_start)), %rsp
    movq (TRAMP + (tramp_arg - ap_trampoline_start)), %rdi
    movq (TRAMP + (tramp_entry - ap_trampoline_start)), %rax
    xorl %ebp, %ebp
    pushq $0            /* fake return address: ABI stack alignment, ends call traces */
    jmpq *%rax
    .align 8
tramp_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0x00AF9A000000FFFF
tramp_gdtr:
    .short 31
    .long TRAMP + (tramp_gdt - ap_trampoline_start)
    .align 8
    .global ap_tramp_cr3
ap_tramp_cr3:
tramp_cr3:
    .quad 0
    .global ap_tramp_efer
ap_tramp_efer:
tramp_efer:
    .quad 0
    .global ap_tramp_stack
ap_tramp_stack:
tramp_stack:
    .quad 0
    .global ap_tramp_entry
ap_tramp_entry:
tramp_entry:
    .quad 0
    .global ap_tramp_arg
ap_tramp_arg:
tramp_arg:
    .quad 0
    .global ap_trampoline_end
ap_trampoline_end:
    .text
"#,
    boot_stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);
