//! Decoding the few instructions Xen emulates for a PV guest (`mov` to/from CR/DR, `clts`,
//! `wbinvd`, `rdtsc`, `rdtscp`, `rdmsr`, `wrmsr`, `cpuid`, `cli`/`sti`, `hlt`, `in`/`out`,
//! `ins`/`outs`) from bytes fetched at the faulting RIP. Anything else decodes to
//! [`Insn::Other`].

/// The data segment of an `outs` (a segment override; `ins` always writes through ES). In
/// 64-bit mode ES, CS, SS and DS are flat; FS and GS add their bases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataSeg {
    /// ES/CS/SS/DS (or no override): base 0.
    Flat,
    /// FS: the vCPU's FS base.
    Fs,
    /// GS: the GS base in effect (kernel or user).
    Gs,
}

/// The operands of `ins`/`outs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringIo {
    /// Bytes per element: 1, 2 (0x66) or 4.
    pub size: u8,
    /// A REP prefix (F3 or F2, both repeat string I/O): RCX counts the elements.
    pub rep: bool,
    /// An address-size prefix (0x67): RSI/RDI/RCX are used and updated as 32-bit registers.
    pub addr32: bool,
    /// The memory operand's segment (always [`DataSeg::Flat`] for `ins`).
    pub seg: DataSeg,
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// `mov %crN, %reg`.
    ReadCr { cr: u8, gpr: u8 },
    /// `mov %reg, %crN`.
    WriteCr { cr: u8, gpr: u8 },
    /// `mov %drN, %reg`.
    ReadDr { dr: u8, gpr: u8 },
    /// `mov %reg, %drN`.
    WriteDr { dr: u8, gpr: u8 },
    /// `clts`.
    Clts,
    /// `wbinvd`.
    Wbinvd,
    /// `rdtsc`.
    Rdtsc,
    /// `rdtscp`.
    Rdtscp,
    /// `cpuid`.
    Cpuid,
    /// `xsetbv` (0f 01 d1).
    Xsetbv,
    /// `rdmsr`.
    Rdmsr,
    /// `wrmsr`.
    Wrmsr,
    /// `cli`.
    Cli,
    /// `sti`.
    Sti,
    /// `hlt`.
    Hlt,
    /// `in` from `port` (None: %dx) of `size` bytes into %al/%ax/%eax.
    In { port: Option<u8>, size: u8 },
    /// `out` of `size` bytes from %al/%ax/%eax to `port` (None: %dx).
    Out { port: Option<u8>, size: u8 },
    /// `ins`: from port %dx to memory at ES:RDI.
    Ins(StringIo),
    /// `outs`: from memory at seg:RSI to port %dx.
    Outs(StringIo),
    /// Not emulated.
    Other,
}

/// A decoded instruction and its length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The instruction.
    pub insn: Insn,
    /// Length including prefixes.
    pub len: u8,
}

/// Longest x86 instruction.
pub const MAX_LEN: usize = 15;

/// Decodes the instruction whose bytes `fetch(i)` returns (None: not readable).
pub fn decode(mut fetch: impl FnMut(usize) -> Option<u8>) -> Option<Decoded> {
    let mut i = 0usize;
    let mut opsize16 = false;
    let mut rep = false;
    let mut addr32 = false;
    let mut seg = DataSeg::Flat;
    let mut rex = 0u8;
    let mut b = fetch(i)?;
    // Legacy prefixes, then REX (must come last). The last segment override wins.
    loop {
        match b {
            0x66 => opsize16 = true,
            0x67 => addr32 = true,
            0xf2 | 0xf3 => rep = true,
            0x26 | 0x2e | 0x36 | 0x3e => seg = DataSeg::Flat,
            0x64 => seg = DataSeg::Fs,
            0x65 => seg = DataSeg::Gs,
            0xf0 => {}
            _ => break,
        }
        i += 1;
        if i >= MAX_LEN {
            return None;
        }
        b = fetch(i)?;
    }
    if b & 0xf0 == 0x40 {
        rex = b;
        i += 1;
        b = fetch(i)?;
    }
    // REX.W makes the operand 8 bytes, which port I/O clips to 4; 0x66 alone makes it 2.
    let wide = if opsize16 && rex & 8 == 0 { 2 } else { 4 };
    let string = |size: u8, seg: DataSeg| StringIo {
        size,
        rep,
        addr32,
        seg,
    };
    let done = |insn: Insn, len: usize| {
        Some(Decoded {
            insn,
            len: len as u8,
        })
    };
    match b {
        0xfa => return done(Insn::Cli, i + 1),
        0xfb => return done(Insn::Sti, i + 1),
        0xf4 => return done(Insn::Hlt, i + 1),
        0xe4 => {
            return done(
                Insn::In {
                    port: Some(fetch(i + 1)?),
                    size: 1,
                },
                i + 2,
            )
        }
        0xe5 => {
            return done(
                Insn::In {
                    port: Some(fetch(i + 1)?),
                    size: wide,
                },
                i + 2,
            )
        }
        0xe6 => {
            return done(
                Insn::Out {
                    port: Some(fetch(i + 1)?),
                    size: 1,
                },
                i + 2,
            )
        }
        0xe7 => {
            return done(
                Insn::Out {
                    port: Some(fetch(i + 1)?),
                    size: wide,
                },
                i + 2,
            )
        }
        0xec => {
            return done(
                Insn::In {
                    port: None,
                    size: 1,
                },
                i + 1,
            )
        }
        0xed => {
            return done(
                Insn::In {
                    port: None,
                    size: wide,
                },
                i + 1,
            )
        }
        0xee => {
            return done(
                Insn::Out {
                    port: None,
                    size: 1,
                },
                i + 1,
            )
        }
        0xef => {
            return done(
                Insn::Out {
                    port: None,
                    size: wide,
                },
                i + 1,
            )
        }
        0x6c => return done(Insn::Ins(string(1, DataSeg::Flat)), i + 1),
        0x6d => return done(Insn::Ins(string(wide, DataSeg::Flat)), i + 1),
        0x6e => return done(Insn::Outs(string(1, seg)), i + 1),
        0x6f => return done(Insn::Outs(string(wide, seg)), i + 1),
        0x0f => {}
        _ => return done(Insn::Other, i + 1),
    }
    let op = fetch(i + 1)?;
    match op {
        0x06 => done(Insn::Clts, i + 2),
        0x09 => done(Insn::Wbinvd, i + 2),
        0x31 => done(Insn::Rdtsc, i + 2),
        0x30 => done(Insn::Wrmsr, i + 2),
        0x32 => done(Insn::Rdmsr, i + 2),
        0xa2 => done(Insn::Cpuid, i + 2),
        0x01 if fetch(i + 2)? == 0xf9 => done(Insn::Rdtscp, i + 3),
        0x01 if fetch(i + 2)? == 0xd1 => done(Insn::Xsetbv, i + 3),
        0x20..=0x23 => {
            // The mod field is ignored: these always name registers.
            let modrm = fetch(i + 2)?;
            let ctl = ((modrm >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
            let gpr = (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 };
            let insn = match op {
                0x20 => Insn::ReadCr { cr: ctl, gpr },
                0x22 => Insn::WriteCr { cr: ctl, gpr },
                0x21 => Insn::ReadDr { dr: ctl, gpr },
                _ => Insn::WriteDr { dr: ctl, gpr },
            };
            done(insn, i + 3)
        }
        _ => done(Insn::Other, i + 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8]) -> Option<Decoded> {
        decode(|i| bytes.get(i).copied())
    }

    #[test]
    fn msr_accesses() {
        assert_eq!(
            dec(&[0x0f, 0x32]).map(|d| (d.insn, d.len)),
            Some((Insn::Rdmsr, 2))
        );
        assert_eq!(
            dec(&[0x0f, 0x30]).map(|d| (d.insn, d.len)),
            Some((Insn::Wrmsr, 2))
        );
    }

    #[test]
    fn control_and_debug_register_moves() {
        // mov %cr4, %rax
        assert_eq!(
            dec(&[0x0f, 0x20, 0xe0]),
            Some(Decoded {
                insn: Insn::ReadCr { cr: 4, gpr: 0 },
                len: 3
            })
        );
        // mov %cr3, %r9 (REX.B)
        assert_eq!(
            dec(&[0x41, 0x0f, 0x20, 0xd9]),
            Some(Decoded {
                insn: Insn::ReadCr { cr: 3, gpr: 9 },
                len: 4
            })
        );
        // mov %rdx, %cr0
        assert_eq!(
            dec(&[0x0f, 0x22, 0xc2]).map(|d| d.insn),
            Some(Insn::WriteCr { cr: 0, gpr: 2 })
        );
        // mov %db7, %rcx / mov %rax, %db6
        assert_eq!(
            dec(&[0x0f, 0x21, 0xf9]).map(|d| d.insn),
            Some(Insn::ReadDr { dr: 7, gpr: 1 })
        );
        assert_eq!(
            dec(&[0x0f, 0x23, 0xf0]).map(|d| d.insn),
            Some(Insn::WriteDr { dr: 6, gpr: 0 })
        );
    }

    #[test]
    fn simple_and_port_instructions() {
        assert_eq!(
            dec(&[0xfa]),
            Some(Decoded {
                insn: Insn::Cli,
                len: 1
            })
        );
        assert_eq!(dec(&[0xf4]).map(|d| d.insn), Some(Insn::Hlt));
        assert_eq!(
            dec(&[0x0f, 0xa2]).map(|d| (d.insn, d.len)),
            Some((Insn::Cpuid, 2))
        );
        assert_eq!(
            dec(&[0xe4, 0x71]),
            Some(Decoded {
                insn: Insn::In {
                    port: Some(0x71),
                    size: 1
                },
                len: 2
            })
        );
        assert_eq!(
            dec(&[0x66, 0xef]),
            Some(Decoded {
                insn: Insn::Out {
                    port: None,
                    size: 2
                },
                len: 2
            })
        );
        assert_eq!(dec(&[0x90]).map(|d| d.insn), Some(Insn::Other));
    }

    #[test]
    fn string_port_instructions() {
        let plain = StringIo {
            size: 1,
            rep: false,
            addr32: false,
            seg: DataSeg::Flat,
        };
        assert_eq!(
            dec(&[0x6c]),
            Some(Decoded {
                insn: Insn::Ins(plain),
                len: 1
            })
        );
        // rep insl
        assert_eq!(
            dec(&[0xf3, 0x6d]).map(|d| (d.insn, d.len)),
            Some((
                Insn::Ins(StringIo {
                    size: 4,
                    rep: true,
                    ..plain
                }),
                2
            ))
        );
        // rep outsw with a 32-bit address and a GS override
        assert_eq!(
            dec(&[0x66, 0x67, 0x65, 0xf3, 0x6f]).map(|d| (d.insn, d.len)),
            Some((
                Insn::Outs(StringIo {
                    size: 2,
                    rep: true,
                    addr32: true,
                    seg: DataSeg::Gs,
                }),
                5
            ))
        );
        // The last override wins; REX.W clips to 4 bytes even with 0x66.
        assert_eq!(
            dec(&[0x64, 0x3e, 0x66, 0x48, 0x6f]).map(|d| d.insn),
            Some(Insn::Outs(StringIo { size: 4, ..plain }))
        );
        assert_eq!(
            dec(&[0xf2, 0x6e]).map(|d| d.insn),
            Some(Insn::Outs(StringIo { rep: true, ..plain }))
        );
        assert_eq!(
            dec(&[0x66, 0x48, 0xed]).map(|d| d.insn),
            Some(Insn::In {
                port: None,
                size: 4
            })
        );
    }

    #[test]
    fn rdtscp_and_other_0f01_forms() {
        assert_eq!(
            dec(&[0x0f, 0x01, 0xf9]).map(|d| (d.insn, d.len)),
            Some((Insn::Rdtscp, 3))
        );
        assert_eq!(
            dec(&[0x0f, 0x01, 0xd1]).map(|d| (d.insn, d.len)),
            Some((Insn::Xsetbv, 3))
        );
        // 0f 01 d0 is xgetbv, which runs natively (CR4.OSXSAVE): never emulated.
        assert_eq!(dec(&[0x0f, 0x01, 0xd0]).map(|d| d.insn), Some(Insn::Other));
        assert_eq!(dec(&[0x0f, 0x01]), None);
    }

    #[test]
    fn truncated_or_endless_input_is_refused() {
        assert_eq!(dec(&[0x0f]), None);
        assert_eq!(dec(&[0xe4]), None);
        assert_eq!(dec(&[0x66; 20]), None);
        assert_eq!(dec(&[]), None);
    }
}
