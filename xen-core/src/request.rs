//! The request that starts a transaction (exit reason, caller, the guest's registers), and
//! its encoding as the input log's request words.

use crate::effect::DomId;
use lockstep::impl_value;

/// Why the guest left: the transaction's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A hypercall (SYSCALL from the guest kernel).
    Hypercall,
    /// A CPU exception in guest context (vector, error code, CR2 in the request).
    Exception,
    /// SYSCALL from guest user space (bounced to the guest kernel's syscall callback).
    UserSyscall,
    /// A timer or other hypervisor event while the guest ran (deliver pending work).
    Interrupt,
    /// Resuming the vCPU on its CPU, a saved data selector failed to load: enter the failsafe
    /// callback (the request's `error_code` holds the saved selectors,
    /// [`crate::pv::segments::pack`]).
    Failsafe,
    /// Returning to the guest faulted (the `iretq` refused the frame): the exception is the
    /// guest's, at the frame being returned to (`regs`), as Xen's `iret_exit_to_guest` fixup
    /// makes it. The `vector` word is [`crate::traps::return_fault_word`]`(vector, repeats)`.
    ReturnFault,
    /// The vCPU leaves its CPU after an exit in which no other transaction recorded the
    /// segment bases it left in the hardware: only [`Request::live`] is recorded (Xen's
    /// `save_segments`).
    SwitchOut,
    /// Leader CPU `vcpu` leaves service for good (its leader core was escalated as the
    /// suspect and parked): every vCPU placed there moves to the other leader CPUs. From
    /// `DOMID_IDLE` only, run by another leader ([`crate::sched::retire`]).
    RetireCpu,
}

impl ExitKind {
    fn code(self) -> u64 {
        match self {
            ExitKind::Hypercall => 1,
            ExitKind::Exception => 2,
            ExitKind::UserSyscall => 3,
            ExitKind::Interrupt => 4,
            ExitKind::Failsafe => 5,
            ExitKind::ReturnFault => 6,
            ExitKind::SwitchOut => 7,
            ExitKind::RetireCpu => 8,
        }
    }

    fn from_code(c: u64) -> Option<Self> {
        match c {
            1 => Some(ExitKind::Hypercall),
            2 => Some(ExitKind::Exception),
            3 => Some(ExitKind::UserSyscall),
            4 => Some(ExitKind::Interrupt),
            5 => Some(ExitKind::Failsafe),
            6 => Some(ExitKind::ReturnFault),
            7 => Some(ExitKind::SwitchOut),
            8 => Some(ExitKind::RetireCpu),
            _ => None,
        }
    }
}

/// The guest's general registers and iret frame at the exit (layout-independent of `arch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
impl_value!(GuestRegs {
    rax,
    rbx,
    rcx,
    rdx,
    rsi,
    rdi,
    rbp,
    r8,
    r9,
    r10,
    r11,
    r12,
    r13,
    r14,
    r15,
    rip,
    cs,
    rflags,
    rsp,
    ss
});

impl GuestRegs {
    /// Number of words.
    pub const WORDS: usize = 20;

    /// The registers in a fixed order.
    pub fn to_words(&self) -> [u64; Self::WORDS] {
        [
            self.rax,
            self.rbx,
            self.rcx,
            self.rdx,
            self.rsi,
            self.rdi,
            self.rbp,
            self.r8,
            self.r9,
            self.r10,
            self.r11,
            self.r12,
            self.r13,
            self.r14,
            self.r15,
            self.rip,
            self.cs,
            self.rflags,
            self.rsp,
            self.ss,
        ]
    }

    /// Inverse of [`GuestRegs::to_words`].
    pub fn from_words(w: &[u64; Self::WORDS]) -> Self {
        GuestRegs {
            rax: w[0],
            rbx: w[1],
            rcx: w[2],
            rdx: w[3],
            rsi: w[4],
            rdi: w[5],
            rbp: w[6],
            r8: w[7],
            r9: w[8],
            r10: w[9],
            r11: w[10],
            r12: w[11],
            r13: w[12],
            r14: w[13],
            r15: w[14],
            rip: w[15],
            cs: w[16],
            rflags: w[17],
            rsp: w[18],
            ss: w[19],
        }
    }

    /// Hypercall arguments in Xen's 64-bit PV convention: RDI, RSI, RDX, R10, R8.
    pub fn hypercall_args(&self) -> [u64; 5] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8]
    }

    /// The registers of a call to hypercall `nr` with `args` (the inverse of
    /// [`GuestRegs::hypercall_args`]), every other register zero.
    pub fn for_hypercall(nr: u64, args: [u64; 5]) -> Self {
        let [rdi, rsi, rdx, r10, r8] = args;
        GuestRegs {
            rax: nr,
            rdi,
            rsi,
            rdx,
            r10,
            r8,
            ..Default::default()
        }
    }
}

/// The segment bases the hardware held for the calling vCPU when it left ring 3: the guest
/// changes them without an exit (loading a selector into FS or GS, `wrfsbase`/`wrgsbase` with
/// CR4.FSGSBASE), so they are input to the transaction, like the registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveBases {
    /// FS base.
    pub fs_base: u64,
    /// The GS base in effect (the kernel one in guest kernel mode, else the user one).
    pub gs_base: u64,
}

/// A transaction's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The exit.
    pub kind: ExitKind,
    /// The calling domain.
    pub dom: DomId,
    /// The calling vCPU.
    pub vcpu: u32,
    /// RAX at a hypercall: the hypercall number (also `regs.rax`).
    pub nr: u64,
    /// Hypercall arguments (RDI, RSI, RDX, R10, R8).
    pub args: [u64; 5],
    /// Exception vector (exceptions) or interrupt vector.
    pub vector: u64,
    /// Exception error code (for a #PF on the vCPU's LDT window with
    /// [`crate::pv::ldt::PF_LDT_WINDOW`] above the hardware's 32 bits).
    pub error_code: u64,
    /// CR2 at a page fault (the offset into the LDT with `PF_LDT_WINDOW`); DR6 at a debug
    /// exception.
    pub cr2: u64,
    /// The guest's registers at the exit.
    pub regs: GuestRegs,
    /// The segment bases the hardware held at the exit, when the request carries them (the
    /// first transaction of an exit does; the replica then holds them, and is what later
    /// transactions of the exit and the resume path see).
    pub live: Option<LiveBases>,
}

/// Number of request words: 6, the registers, then the live bases (a flag word, FS, GS).
pub const REQUEST_WORDS: usize = 6 + GuestRegs::WORDS + 3;

/// A single execution takes the request as it is; the engine encodes it only to log it,
/// compare it or flip one of its words.
impl lockstep::TypedRequest for Request {
    fn encode(&self, out: &mut alloc::vec::Vec<u64>) {
        out.extend_from_slice(&self.to_words());
    }
}

impl Request {
    /// A hypercall request from the registers at the SYSCALL.
    pub fn hypercall(dom: DomId, vcpu: u32, regs: GuestRegs) -> Self {
        Request {
            kind: ExitKind::Hypercall,
            dom,
            vcpu,
            nr: regs.rax,
            args: regs.hypercall_args(),
            vector: 0,
            error_code: 0,
            cr2: 0,
            regs,
            live: None,
        }
    }

    /// A request of `kind` (exception, user syscall, interrupt) with its trap details.
    pub fn exit(
        kind: ExitKind,
        dom: DomId,
        vcpu: u32,
        regs: GuestRegs,
        vector: u64,
        error_code: u64,
        cr2: u64,
    ) -> Self {
        Request {
            kind,
            dom,
            vcpu,
            nr: regs.rax,
            args: regs.hypercall_args(),
            vector,
            error_code,
            cr2,
            regs,
            live: None,
        }
    }

    /// This request carrying the segment bases the hardware holds for the caller.
    pub fn with_live(mut self, live: Option<LiveBases>) -> Self {
        self.live = live;
        self
    }

    /// The request as log words.
    pub fn to_words(&self) -> [u64; REQUEST_WORDS] {
        let mut w = [0u64; REQUEST_WORDS];
        w[0] = self.kind.code();
        w[1] = u64::from(self.dom);
        w[2] = u64::from(self.vcpu);
        w[3] = self.vector;
        w[4] = self.error_code;
        w[5] = self.cr2;
        let r = 6 + GuestRegs::WORDS;
        w[6..r].copy_from_slice(&self.regs.to_words());
        if let Some(b) = self.live {
            w[r] = 1;
            w[r + 1] = b.fs_base;
            w[r + 2] = b.gs_base;
        }
        w
    }

    /// Decodes request words; `None` if they are malformed (e.g. a corrupted log).
    pub fn from_words(w: &[u64]) -> Option<Self> {
        if w.len() != REQUEST_WORDS {
            return None;
        }
        let r = 6 + GuestRegs::WORDS;
        let regs_words: &[u64; GuestRegs::WORDS] = w[6..r].try_into().ok()?;
        let regs = GuestRegs::from_words(regs_words);
        let live = match w[r] {
            0 => None,
            1 => Some(LiveBases {
                fs_base: w[r + 1],
                gs_base: w[r + 2],
            }),
            _ => return None,
        };
        Some(
            Request::exit(
                ExitKind::from_code(w[0])?,
                DomId::try_from(w[1]).ok()?,
                u32::try_from(w[2]).ok()?,
                regs,
                w[3],
                w[4],
                w[5],
            )
            .with_live(live),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> GuestRegs {
        GuestRegs {
            rax: 17,
            rdi: 1,
            rsi: 2,
            rdx: 3,
            r10: 4,
            r8: 5,
            rip: 0xffff_ffff_8000_1234,
            cs: 0xe033,
            ..Default::default()
        }
    }

    #[test]
    fn round_trip() {
        let r = Request::hypercall(7, 3, regs());
        assert_eq!(r.nr, 17);
        assert_eq!(r.args, [1, 2, 3, 4, 5]);
        assert_eq!(Request::from_words(&r.to_words()), Some(r));
        let e = Request::exit(ExitKind::Exception, 1, 0, regs(), 14, 2, 0xdead_b000);
        assert_eq!(Request::from_words(&e.to_words()), Some(e));
        let l = e.with_live(Some(LiveBases {
            fs_base: 0x7fff_1234_5000,
            gs_base: 0xffff_8880_0000_0000,
        }));
        assert_eq!(Request::from_words(&l.to_words()), Some(l));
        let s = Request::exit(ExitKind::SwitchOut, 0, 1, regs(), 0, 0, 0).with_live(l.live);
        assert_eq!(Request::from_words(&s.to_words()), Some(s));
    }

    #[test]
    fn words_keep_their_layout_for_every_register() {
        let w: [u64; GuestRegs::WORDS] = core::array::from_fn(|i| 0x100 + i as u64);
        let regs = GuestRegs::from_words(&w);
        let live = LiveBases {
            fs_base: 0xf5,
            gs_base: 0x65,
        };
        let r = Request::exit(ExitKind::ReturnFault, 3, 2, regs, 13, 0x18, 0x9000)
            .with_live(Some(live));
        let words = r.to_words();
        assert_eq!(words[..6], [r.kind.code(), 3, 2, 13, 0x18, 0x9000]);
        assert_eq!(words[6..6 + GuestRegs::WORDS], regs.to_words());
        assert_eq!(words[6 + GuestRegs::WORDS..], [1, 0xf5, 0x65]);
        let back = Request::from_words(&words).expect("well-formed");
        assert_eq!(back, r);
        assert_eq!(back.nr, 0x100);
        assert_eq!(back.args, regs.hypercall_args());
        let none = Request::hypercall(1, 0, regs).to_words();
        assert_eq!(none[6 + GuestRegs::WORDS..], [0, 0, 0]);
    }

    #[test]
    fn malformed_words_are_refused() {
        let mut w = Request::hypercall(0, 0, regs()).to_words();
        assert!(Request::from_words(&w[..9]).is_none());
        w[0] = 99;
        assert!(Request::from_words(&w).is_none());
        w[0] = 1;
        w[1] = 1 << 20;
        assert!(Request::from_words(&w).is_none());
        w[1] = 0;
        w[6 + GuestRegs::WORDS] = 2;
        assert!(Request::from_words(&w).is_none());
    }
}
