//! This vCPU's x87, MXCSR and XMM state, for checks that a hypervisor keeps each vCPU's own
//! across hypercalls and vCPU switches. Compiled Rust code uses no x87 instructions and does
//! not change MXCSR, so what these set stays until they set it again.

/// `fninit`: the x87 unit in its initial state (FCW 0x37f, empty register stack).
pub fn fninit() {
    // SAFETY: FNINIT changes only the x87 state, which no compiled code relies on.
    unsafe { core::arch::asm!("fninit", options(nostack, nomem)) }
}

/// The x87 control word (`fnstcw`).
pub fn fcw() -> u16 {
    let mut v = 0u16;
    // SAFETY: FNSTCW writes the two bytes of `v`.
    unsafe { core::arch::asm!("fnstcw [{}]", in(reg) &mut v, options(nostack)) }
    v
}

/// Loads the x87 control word (`fldcw`).
pub fn set_fcw(v: u16) {
    // SAFETY: FLDCW reads the two bytes of `v`; it changes only x87 rounding, precision and
    // exception masks, which no compiled code relies on.
    unsafe { core::arch::asm!("fldcw [{}]", in(reg) &v, options(nostack)) }
}

/// Pushes `v` onto the x87 register stack (`fild`; exact for every i64).
pub fn x87_push(v: i64) {
    // SAFETY: FILD reads the eight bytes of `v` and changes only the x87 stack.
    unsafe { core::arch::asm!("fild qword ptr [{}]", in(reg) &v, options(nostack)) }
}

/// The value on top of the x87 register stack as an integer, left there (`fld st(0)`,
/// `fistp`).
pub fn x87_top() -> i64 {
    let mut v = 0i64;
    // SAFETY: FLD ST(0) duplicates the top, FISTP stores and pops the copy into `v`.
    unsafe {
        core::arch::asm!(
            "fld st(0)",
            "fistp qword ptr [{}]",
            in(reg) &mut v,
            options(nostack)
        )
    }
    v
}

/// The SSE control and status register (`stmxcsr`).
pub fn mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: STMXCSR writes the four bytes of `v`.
    unsafe { core::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) }
    v
}

/// Loads MXCSR (`ldmxcsr`); `v` must have no reserved bit set (bits 16-31).
pub fn set_mxcsr(v: u32) {
    let v = v & 0xFFFF;
    // SAFETY: LDMXCSR reads the four bytes of `v`, whose reserved bits are clear; the guest
    // does no floating-point work that the rounding mode or masks could upset.
    unsafe { core::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack)) }
}

/// Puts `v` in XMM15, makes one `xen_version(XENVER_version)` hypercall in the same asm
/// block (so no compiled code touches XMM15 in between), and returns what XMM15 holds after
/// it; None without a hypercall page.
pub fn xmm15_across_hypercall(v: u64) -> Option<u64> {
    let stub = crate::hypercall::stub_address(crate::hypercall::XEN_VERSION)?;
    let out: u64;
    // SAFETY: the stub is xen_version's in the page Xen filled; XENVER_version (0) with a
    // null argument reads and writes no guest memory. RAX and the argument registers are
    // clobbered as by any hypercall; XMM15 is the register under test.
    unsafe {
        core::arch::asm!(
            "movq xmm15, {v}",
            "call {stub}",
            "movq {out}, xmm15",
            v = in(reg) v,
            stub = in(reg) stub,
            out = lateout(reg) out,
            out("rax") _,
            inout("rdi") 0u64 => _,
            inout("rsi") 0u64 => _,
            out("rdx") _,
            out("r10") _,
            out("r8") _,
            out("xmm15") _,
        )
    }
    Some(out)
}
