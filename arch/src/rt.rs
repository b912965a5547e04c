//! Freestanding runtime support the compiler expects: memcpy/memmove/memset/memcmp/bcmp and
//! the unwinding symbols (never used: panic = abort).
//!
//! The memory functions move 32 bytes per loop iteration through four general registers,
//! then 8 at a time, and only the last 0-7 bytes one by one. A `rep movsb` over the whole
//! length (what this file had first) costs one loop iteration per byte under QEMU TCG, where
//! each iteration of a `rep` string instruction is a translated block of its own, and the
//! exit path copies 272-byte requests, trap frames and effects on every guest exit: with it,
//! a lockstep-off `xen_version` from the `bench` guest took ~15,000 TCG cycles, with these
//! ~12,000 (min of 256-call batches, interleaved runs). The direction flag is clear on entry
//! (the ABI's rule).
//!
//! The code is assembled under `arch_*` names and the C names are aliases of them: the unit
//! tests call the `arch_*` ones and compare them with reference copies for every length up
//! to 300 and several alignments and overlaps.

// The functions under their own names (the unit tests call these); the C names below are
// aliases of them.
core::arch::global_asm!(
    r#"
    .section .text.arch_memcpy, "ax"
    .global arch_memcpy
arch_memcpy:
    movq %rdi, %rax
20: cmpq $32, %rdx
    jb 21f
    movq (%rsi), %rcx
    movq 8(%rsi), %r8
    movq 16(%rsi), %r9
    movq 24(%rsi), %r10
    movq %rcx, (%rdi)
    movq %r8, 8(%rdi)
    movq %r9, 16(%rdi)
    movq %r10, 24(%rdi)
    addq $32, %rsi
    addq $32, %rdi
    subq $32, %rdx
    jmp 20b
21: cmpq $8, %rdx
    jb 22f
    movq (%rsi), %rcx
    movq %rcx, (%rdi)
    addq $8, %rsi
    addq $8, %rdi
    subq $8, %rdx
    jmp 21b
22: movq %rdx, %rcx
    rep movsb
    ret

    .section .text.arch_memmove, "ax"
    .global arch_memmove
arch_memmove:
    cmpq %rsi, %rdi
    jbe arch_memcpy
    movq %rdi, %rax
    addq %rdx, %rsi
    addq %rdx, %rdi
30: cmpq $32, %rdx
    jb 31f
    movq -8(%rsi), %rcx
    movq -16(%rsi), %r8
    movq -24(%rsi), %r9
    movq -32(%rsi), %r10
    movq %rcx, -8(%rdi)
    movq %r8, -16(%rdi)
    movq %r9, -24(%rdi)
    movq %r10, -32(%rdi)
    subq $32, %rsi
    subq $32, %rdi
    subq $32, %rdx
    jmp 30b
31: cmpq $8, %rdx
    jb 32f
    movq -8(%rsi), %rcx
    movq %rcx, -8(%rdi)
    subq $8, %rsi
    subq $8, %rdi
    subq $8, %rdx
    jmp 31b
32: testq %rdx, %rdx
    jz 33f
    decq %rsi
    decq %rdi
    movzbl (%rsi), %ecx
    movb %cl, (%rdi)
    decq %rdx
    jmp 32b
33: ret

    .section .text.arch_memset, "ax"
    .global arch_memset
arch_memset:
    movq %rdi, %r9
    movzbl %sil, %eax
    movabsq $0x0101010101010101, %rcx
    imulq %rcx, %rax
40: cmpq $32, %rdx
    jb 41f
    movq %rax, (%rdi)
    movq %rax, 8(%rdi)
    movq %rax, 16(%rdi)
    movq %rax, 24(%rdi)
    addq $32, %rdi
    subq $32, %rdx
    jmp 40b
41: cmpq $8, %rdx
    jb 42f
    movq %rax, (%rdi)
    addq $8, %rdi
    subq $8, %rdx
    jmp 41b
42: movq %rdx, %rcx
    rep stosb
    movq %r9, %rax
    ret

    .section .text.arch_memcmp, "ax"
    .global arch_memcmp
arch_memcmp:
    xorl %eax, %eax
50: cmpq $8, %rdx
    jb 51f
    movq (%rdi), %rcx
    cmpq (%rsi), %rcx
    jne 51f
    addq $8, %rdi
    addq $8, %rsi
    subq $8, %rdx
    jmp 50b
51: testq %rdx, %rdx
    jz 53f
52: movzbl (%rdi), %eax
    movzbl (%rsi), %ecx
    subl %ecx, %eax
    jnz 53f
    incq %rdi
    incq %rsi
    decq %rdx
    jnz 52b
53: ret
    .text
"#,
    options(att_syntax)
);

#[cfg(not(test))]
core::arch::global_asm!(
    r#"
    .global memcpy
    .set memcpy, arch_memcpy
    .global memmove
    .set memmove, arch_memmove
    .global memset
    .set memset, arch_memset
    .global memcmp
    .set memcmp, arch_memcmp
    .global bcmp
    .set bcmp, arch_memcmp
"#,
    options(att_syntax)
);

#[cfg(not(test))]
core::arch::global_asm!(
    r#"
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

#[cfg(test)]
mod tests {
    extern "C" {
        fn arch_memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        fn arch_memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        fn arch_memset(d: *mut u8, c: i32, n: usize) -> *mut u8;
        fn arch_memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
    }

    /// A buffer of distinct-looking bytes.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
            .collect()
    }

    const LENS: core::ops::RangeInclusive<usize> = 0..=300;

    #[test]
    fn memcpy_copies_exactly_the_bytes_asked_for() {
        for len in LENS {
            for (da, sa) in [(0, 0), (1, 0), (0, 3), (5, 7), (8, 1)] {
                let src = pattern(len + sa + 16, 1);
                let mut dst = pattern(len + da + 16, 200);
                let mut want = dst.clone();
                want[da..da + len].copy_from_slice(&src[sa..sa + len]);
                // SAFETY: both ranges lie inside their buffers and do not overlap.
                let r = unsafe { arch_memcpy(dst.as_mut_ptr().add(da), src.as_ptr().add(sa), len) };
                assert_eq!(r, dst[da..].as_mut_ptr());
                assert_eq!(dst, want, "len {len} dst+{da} src+{sa}");
            }
        }
    }

    #[test]
    fn memmove_handles_overlap_both_ways() {
        for len in LENS {
            for (from, to) in [(0, 1), (1, 0), (0, 8), (8, 0), (3, 40), (40, 3), (5, 5)] {
                let mut buf = pattern(len + 64, 9);
                let mut want = buf.clone();
                want.copy_within(from..from + len, to);
                let p = buf.as_mut_ptr();
                // SAFETY: both ranges lie inside `buf`; memmove allows them to overlap.
                let r = unsafe { arch_memmove(p.add(to), p.add(from), len) };
                assert_eq!(r, p.wrapping_add(to));
                assert_eq!(buf, want, "len {len} from {from} to {to}");
            }
        }
    }

    #[test]
    fn memset_fills_exactly_the_bytes_asked_for() {
        for len in LENS {
            for (off, c) in [(0, 0u8), (3, 0xa5), (8, 0xff), (1, 0x01)] {
                let mut buf = pattern(len + off + 16, 77);
                let mut want = buf.clone();
                want[off..off + len].fill(c);
                let p = buf.as_mut_ptr();
                // SAFETY: the range lies inside `buf`; the high bits of `c` must be ignored.
                let r = unsafe { arch_memset(p.add(off), i32::from(c) | 0x1200, len) };
                assert_eq!(r, p.wrapping_add(off));
                assert_eq!(buf, want, "len {len} off {off} byte {c:#x}");
            }
        }
    }

    #[test]
    fn memcmp_orders_by_the_first_differing_byte() {
        for len in LENS {
            let a = pattern(len, 4);
            let same = a.clone();
            // SAFETY: both buffers hold `len` bytes.
            let r = unsafe { arch_memcmp(a.as_ptr(), same.as_ptr(), len) };
            assert_eq!(r, 0);
            for at in [0, len / 3, len / 2, len.saturating_sub(1)] {
                if at >= len {
                    continue;
                }
                let mut b = a.clone();
                b[at] = b[at].wrapping_add(1);
                // A later difference in the other direction must not change the answer.
                if at + 1 < len {
                    b[len - 1] = a[len - 1].wrapping_sub(1);
                }
                let want = a[at] as i32 - b[at] as i32;
                // SAFETY: both buffers hold `len` bytes.
                let got = unsafe { arch_memcmp(a.as_ptr(), b.as_ptr(), len) };
                assert_eq!(got.signum(), want.signum(), "len {len} differs at {at}");
                // SAFETY: as above, swapped.
                let back = unsafe { arch_memcmp(b.as_ptr(), a.as_ptr(), len) };
                assert_eq!(back.signum(), -want.signum(), "len {len} differs at {at}");
            }
        }
    }
}
