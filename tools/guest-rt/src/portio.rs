//! String port I/O (`ins`/`outs`, with or without REP, either direction) from the ring-3 PV
//! kernel: each traps with #GP and the hypervisor emulates it or bounces the #GP (no virtual
//! IOPL), or raises #PF/#GP for a bad memory operand; arm [`crate::traps::expect`] with the
//! instruction's length ([`Op::len`]) where a fault is expected. Single `in`/`out`
//! ([`port_in`], [`port_out`]) catch their #GP themselves.

/// One string I/O instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `insb`.
    Insb,
    /// `insw`.
    Insw,
    /// `insl`.
    Insl,
    /// `outsb`.
    Outsb,
    /// `outsw`.
    Outsw,
    /// `outsl`.
    Outsl,
}

impl Op {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Op::Insb | Op::Outsb => 1,
            Op::Insw | Op::Outsw => 2,
            Op::Insl | Op::Outsl => 4,
        }
    }

    /// Whether it writes memory (`ins`).
    pub fn is_in(self) -> bool {
        matches!(self, Op::Insb | Op::Insw | Op::Insl)
    }

    /// Instruction length: opcode, 0x66 for the word forms, 0xf3 with REP.
    pub fn len(self, rep: bool) -> u8 {
        1 + u8::from(self.size() == 2) + u8::from(rep)
    }
}

/// RCX, RSI and RDI after the instruction (or where a fault left them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// RCX.
    pub rcx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
}

macro_rules! string_io_asm {
    ($insn:literal, $down:expr, $port:expr, $r:ident) => {
        core::arch::asm!(
            "test {down}, {down}",
            "jz 2f",
            "std",
            "2:",
            $insn,
            "cld",
            down = in(reg) u64::from($down),
            in("dx") $port,
            inout("rcx") $r.rcx,
            inout("rsi") $r.rsi,
            inout("rdi") $r.rdi,
            clobber_abi("C"),
            options(att_syntax),
        )
    };
}

/// Runs `op` (with REP if `rep`, with DF set if `down`) on port `port` with RCX, RSI, RDI
/// from `r`; returns them as the instruction (or a handled fault) left them.
///
/// # Safety
/// Every element the instruction may touch (RCX of them with REP, else one, stepping from
/// RDI/RSI by the element size, downwards with `down`) must be memory the caller owns (for
/// `ins`: may overwrite; for `outs`: may read) or unmapped with the matching fault expected.
pub unsafe fn string_io(op: Op, rep: bool, down: bool, port: u16, mut r: Regs) -> Regs {
    // SAFETY: the caller vouches for the memory; the instruction traps to the hypervisor,
    // which emulates it or bounces a fault the trap table handles (C ABI clobbers for the
    // handler); DF is cleared again before Rust code runs (the handler clears it itself).
    unsafe {
        match (op, rep) {
            (Op::Insb, false) => string_io_asm!("insb", down, port, r),
            (Op::Insw, false) => string_io_asm!("insw", down, port, r),
            (Op::Insl, false) => string_io_asm!("insl", down, port, r),
            (Op::Outsb, false) => string_io_asm!("outsb", down, port, r),
            (Op::Outsw, false) => string_io_asm!("outsw", down, port, r),
            (Op::Outsl, false) => string_io_asm!("outsl", down, port, r),
            (Op::Insb, true) => string_io_asm!("rep insb", down, port, r),
            (Op::Insw, true) => string_io_asm!("rep insw", down, port, r),
            (Op::Insl, true) => string_io_asm!("rep insl", down, port, r),
            (Op::Outsb, true) => string_io_asm!("rep outsb", down, port, r),
            (Op::Outsw, true) => string_io_asm!("rep outsw", down, port, r),
            (Op::Outsl, true) => string_io_asm!("rep outsl", down, port, r),
        }
    }
    r
}

/// The byte range `[lo, hi)` the instruction may touch, from index `at` with `count`
/// elements.
fn span(op: Op, rep: bool, down: bool, at: u64, count: u64) -> Option<(u64, u64)> {
    let n = if rep { count } else { 1 };
    let bytes = n.checked_mul(op.size())?;
    if bytes == 0 {
        return Some((at, at));
    }
    if down {
        let lo = at.checked_add(op.size())?.checked_sub(bytes)?;
        Some((lo, at + op.size()))
    } else {
        Some((at, at.checked_add(bytes)?))
    }
}

/// The address of element `start` of a buffer at `base`, `len` bytes long, if all `count`
/// elements a string instruction moves from there (see [`span`]) lie in the buffer.
fn start_in(
    op: Op,
    rep: bool,
    down: bool,
    base: u64,
    len: usize,
    start: usize,
    count: u64,
) -> Option<u64> {
    let at = base + start as u64;
    let (lo, hi) = span(op, rep, down, at, count)?;
    (lo >= base && hi <= base + len as u64).then_some(at)
}

/// [`string_io`] on `buf`: the index starts at `buf[start]` and every element must stay in
/// `buf` (else `None`). `ins` needs a mutable buffer: use [`ins`].
pub fn outs(
    op: Op,
    rep: bool,
    down: bool,
    port: u16,
    buf: &[u8],
    start: usize,
    count: u64,
) -> Option<Regs> {
    if op.is_in() {
        return None;
    }
    let at = start_in(op, rep, down, buf.as_ptr() as u64, buf.len(), start, count)?;
    // SAFETY: every element read lies in `buf`.
    Some(unsafe {
        string_io(
            op,
            rep,
            down,
            port,
            Regs {
                rcx: count,
                rsi: at,
                rdi: 0,
            },
        )
    })
}

/// [`string_io`] into `buf` (see [`outs`]).
pub fn ins(
    op: Op,
    rep: bool,
    down: bool,
    port: u16,
    buf: &mut [u8],
    start: usize,
    count: u64,
) -> Option<Regs> {
    if !op.is_in() {
        return None;
    }
    let at = start_in(
        op,
        rep,
        down,
        buf.as_mut_ptr() as u64,
        buf.len(),
        start,
        count,
    )?;
    // SAFETY: every element written lies in `buf`, which is borrowed mutably.
    Some(unsafe {
        string_io(
            op,
            rep,
            down,
            port,
            Regs {
                rcx: count,
                rsi: 0,
                rdi: at,
            },
        )
    })
}

/// [`string_io`] against an address the guest cannot use (a fault is expected: #PF for the
/// null page, #GP for the others).
pub fn at_bad_address(
    op: Op,
    rep: bool,
    port: u16,
    bad: crate::hypercall::BadPtr,
    count: u64,
) -> Regs {
    let a = bad.addr();
    // SAFETY: nothing can be read or written at a `BadPtr`: the access faults and the trap
    // table handles it.
    unsafe {
        string_io(
            op,
            rep,
            false,
            port,
            Regs {
                rcx: count,
                rsi: a,
                rdi: a,
            },
        )
    }
}

/// [`string_io`] upwards from `before` bytes below the (unmapped) scratch page: the elements
/// below it land in the start-of-day padding, the first one reaching it faults with #PF.
/// `None` if the scratch page is mapped or `before` is more than a page.
pub fn across_unmapped_scratch(
    scratch: &crate::pvmm::Scratch,
    op: Op,
    rep: bool,
    port: u16,
    before: u64,
    count: u64,
) -> Option<Regs> {
    if scratch.mapped_mfn().is_some() || before > 4096 {
        return None;
    }
    let at = scratch.va() - before;
    // SAFETY: the page below the scratch page is start-of-day padding that holds no Rust
    // object (see `Scratch`), and the scratch page is unmapped: an access there faults.
    Some(unsafe {
        string_io(
            op,
            rep,
            false,
            port,
            Regs {
                rcx: count,
                rsi: at,
                rdi: at,
            },
        )
    })
}

/// Runs `f`, a port instruction of `len` bytes that may raise #GP (bounced and skipped);
/// false if it did.
fn catching_gp(len: u8, f: impl FnOnce()) -> bool {
    let before = crate::traps::taken(13);
    crate::traps::expect(13, len);
    f();
    if crate::traps::taken(13) != before {
        return false;
    }
    crate::traps::unexpect(13);
    true
}

/// `in` of `size` bytes (1, 2 or 4) from `port` (in DX): the value (zero-extended), or None
/// if the access raised #GP (not allowed by IOPL or the I/O bitmap).
pub fn port_in(size: u8, port: u16) -> Option<u32> {
    let mut v: u32 = 0;
    let ok = match size {
        // In ring 3 `in` traps to the hypervisor, which emulates it (into AL/AX/EAX) or
        // bounces #GP, caught and skipped; the handler runs Rust code (C ABI clobbers).
        1 => catching_gp(1, || {
            // SAFETY: a trapping `in`, emulated or #GP-caught (above).
            unsafe {
                core::arch::asm!("in al, dx", in("dx") port, inout("eax") v, clobber_abi("C"))
            }
        }),
        2 => catching_gp(2, || {
            // SAFETY: a trapping `in`, emulated or #GP-caught (above).
            unsafe {
                core::arch::asm!("in ax, dx", in("dx") port, inout("eax") v, clobber_abi("C"))
            }
        }),
        _ => catching_gp(1, || {
            // SAFETY: a trapping `in`, emulated or #GP-caught (above).
            unsafe {
                core::arch::asm!("in eax, dx", in("dx") port, inout("eax") v, clobber_abi("C"))
            }
        }),
    };
    let mask = match size {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    };
    ok.then_some(v & mask)
}

/// `out` of `size` bytes (1, 2 or 4) of `value` to `port` (in DX); false if it raised #GP.
pub fn port_out(size: u8, port: u16, value: u32) -> bool {
    match size {
        // As `port_in`; the caller chooses a port whose write is harmless.
        1 => catching_gp(1, || {
            // SAFETY: a trapping `out`, emulated or #GP-caught (above).
            unsafe {
                core::arch::asm!("out dx, al", in("dx") port, in("eax") value, clobber_abi("C"))
            }
        }),
        2 => catching_gp(2, || {
            // SAFETY: a trapping `out`, emulated or #GP-caught (above).
            unsafe {
                core::arch::asm!("out dx, ax", in("dx") port, in("eax") value, clobber_abi("C"))
            }
        }),
        _ => catching_gp(1, || {
            // SAFETY: a trapping `out`, emulated or #GP-caught (above).
            unsafe {
                core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, clobber_abi("C"))
            }
        }),
    }
}
