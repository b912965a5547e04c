//! The request that starts a transaction (exit reason, caller, guest registers), and its
//! encoding as the input log's request words.

use crate::effect::DomId;

/// Why the guest left: the transaction's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A hypercall (SYSCALL from the guest kernel / VMMCALL).
    Hypercall,
}

impl ExitKind {
    fn code(self) -> u64 {
        match self {
            ExitKind::Hypercall => 1,
        }
    }

    fn from_code(c: u64) -> Option<Self> {
        match c {
            1 => Some(ExitKind::Hypercall),
            _ => None,
        }
    }
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
    /// RAX: the hypercall number.
    pub nr: u64,
    /// Arguments: RDI, RSI, RDX, R10, R8 (Xen's 64-bit PV convention).
    pub args: [u64; 5],
    /// Guest RIP at the exit.
    pub rip: u64,
}

/// Number of request words.
pub const REQUEST_WORDS: usize = 10;

impl Request {
    /// A hypercall request.
    pub fn hypercall(dom: DomId, vcpu: u32, nr: u64, args: [u64; 5], rip: u64) -> Self {
        Request {
            kind: ExitKind::Hypercall,
            dom,
            vcpu,
            nr,
            args,
            rip,
        }
    }

    /// The request as log words.
    pub fn to_words(&self) -> [u64; REQUEST_WORDS] {
        let a = self.args;
        [
            self.kind.code(),
            u64::from(self.dom),
            u64::from(self.vcpu),
            self.nr,
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            self.rip,
        ]
    }

    /// Decodes request words; `None` if they are malformed (e.g. a corrupted log).
    pub fn from_words(w: &[u64]) -> Option<Self> {
        if w.len() != REQUEST_WORDS {
            return None;
        }
        Some(Request {
            kind: ExitKind::from_code(w[0])?,
            dom: DomId::try_from(w[1]).ok()?,
            vcpu: u32::try_from(w[2]).ok()?,
            nr: w[3],
            args: [w[4], w[5], w[6], w[7], w[8]],
            rip: w[9],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Request::hypercall(7, 3, 17, [1, 2, 3, 4, 5], 0xffff_ffff_8000_1234);
        assert_eq!(Request::from_words(&r.to_words()), Some(r));
    }

    #[test]
    fn malformed_words_are_refused() {
        let mut w = Request::hypercall(0, 0, 1, [0; 5], 0).to_words();
        assert!(Request::from_words(&w[..9]).is_none());
        w[0] = 99;
        assert!(Request::from_words(&w).is_none());
        w[0] = 1;
        w[1] = 1 << 20;
        assert!(Request::from_words(&w).is_none());
    }
}
