//! The two-domain grant test's protocol between `gnttab2` (dom0) and `gntpeer` (the domU it
//! builds), carried over the domU's console ring as a toolstack without xenstore would: the
//! domU prints its offer (grant references and the frames behind them) on its console, dom0
//! types commands into the ring's `in` side, and the domU answers each with an `ack` line
//! once its own checks of that step are done. The page contents both sides check byte for
//! byte are defined here once.

use alloc::format;
use alloc::string::String;

/// Prefix of every protocol line the domU prints.
pub const PREFIX: &str = "gntpeer: ";
/// The domain the domU grants to (dom0, the backend).
pub const BACKEND: u16 = 0;
/// A domain id that is not dom0's: a grant to it must not be usable by dom0.
pub const NOT_BACKEND: u16 = 7;

/// Seed of page A's first contents (the domU fills it before granting it writable).
pub const SEED_A: u8 = 0x11;
/// Seed of page B (granted read-only).
pub const SEED_B: u8 = 0x22;
/// Seed of what dom0 writes through its writable mapping of A, into A's first half.
pub const SEED_MAPPED: u8 = 0x33;
/// Seed of what dom0 copies into A's second half with `GNTTABOP_copy` (dest gref).
pub const SEED_COPIED: u8 = 0x44;
/// Where A's second half starts (dom0's copy goes there; its mapping writes before it).
pub const HALF: usize = 2048;

/// Byte `i` of the page filled with `seed` (no period shorter than the page).
pub fn pattern(seed: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add(seed) ^ ((i >> 8) as u8).wrapping_mul(13)
}

/// Byte `i` of page A once dom0 has written its first half through the mapping.
pub fn a_after_map(i: usize) -> u8 {
    if i < HALF {
        pattern(SEED_MAPPED, i)
    } else {
        pattern(SEED_A, i)
    }
}

/// Byte `i` of page A once dom0 has also copied into its second half.
pub fn a_after_copy(i: usize) -> u8 {
    if i < HALF {
        pattern(SEED_MAPPED, i)
    } else {
        pattern(SEED_COPIED, i)
    }
}

/// What the domU offers dom0: its grant references and the frames they name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Page A granted writable to dom0.
    pub rw: u32,
    /// Page B granted read-only to dom0.
    pub ro: u32,
    /// Page A granted writable to [`NOT_BACKEND`], not to dom0.
    pub other: u32,
    /// A's frame.
    pub a_frame: u64,
    /// B's frame.
    pub b_frame: u64,
}

impl Offer {
    /// The line the domU prints.
    pub fn line(&self) -> String {
        format!(
            "{PREFIX}offer rw={} ro={} other={} a={:#x} b={:#x}",
            self.rw, self.ro, self.other, self.a_frame, self.b_frame
        )
    }

    /// Parses an offer line (as [`Offer::line`] prints it, possibly after other output on
    /// the same console line).
    pub fn parse(line: &str) -> Option<Offer> {
        let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
        let mut words = rest.strip_prefix("offer ")?.split(' ');
        let mut field = |name: &str| -> Option<u64> {
            let v = words.next()?.strip_prefix(name)?.strip_prefix('=')?;
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            }
        };
        let rw = u32::try_from(field("rw")?).ok()?;
        let ro = u32::try_from(field("ro")?).ok()?;
        let other = u32::try_from(field("other")?).ok()?;
        let a_frame = field("a")?;
        let b_frame = field("b")?;
        if words.next().is_some() {
            return None;
        }
        Some(Offer {
            rw,
            ro,
            other,
            a_frame,
            b_frame,
        })
    }
}

/// dom0's commands, in the order it sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// dom0 holds A mapped writable and B read-only, and wrote A's first half.
    Mapped,
    /// dom0 unmapped both and copied into A's second half.
    Copied,
    /// The domU is to revoke both grants.
    Revoke,
    /// dom0's refusals of the revoked grants are done; the domU checks and powers off.
    Done,
}

impl Command {
    /// Every command, in protocol order.
    pub const SEQUENCE: [Command; 4] = [
        Command::Mapped,
        Command::Copied,
        Command::Revoke,
        Command::Done,
    ];

    /// The word typed into the domU's console.
    pub fn word(self) -> &'static str {
        match self {
            Command::Mapped => "mapped",
            Command::Copied => "copied",
            Command::Revoke => "revoke",
            Command::Done => "done",
        }
    }

    /// The command a typed line names.
    pub fn parse(line: &str) -> Option<Command> {
        let line = line.trim();
        Command::SEQUENCE.into_iter().find(|c| c.word() == line)
    }

    /// The line the domU prints when it has handled the command.
    pub fn ack(self) -> String {
        format!("{PREFIX}ack {}", self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_round_trips_and_rejects_garbage() {
        let o = Offer {
            rw: 10,
            ro: 11,
            other: 12,
            a_frame: 0x1234,
            b_frame: 0xfffff,
        };
        assert_eq!(
            o.line(),
            "gntpeer: offer rw=10 ro=11 other=12 a=0x1234 b=0xfffff"
        );
        assert_eq!(Offer::parse(&o.line()), Some(o));
        assert_eq!(Offer::parse(&format!("junk {}", o.line())), Some(o));
        for bad in [
            "gntpeer: offer rw=10 ro=11 other=12 a=0x1234",
            "gntpeer: offer rw=10 ro=11 other=12 a=0x1234 b=0x1 c=3",
            "gntpeer: offer ro=11 rw=10 other=12 a=0x1234 b=0x1",
            "gntpeer: offer rw=x ro=11 other=12 a=0x1234 b=0x1",
            "gntpeer: offer rw=4294967296 ro=11 other=12 a=0x1 b=0x1",
            "offer rw=10 ro=11 other=12 a=0x1234 b=0x1",
            "gntpeer: ack mapped",
        ] {
            assert_eq!(Offer::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn commands_parse_their_own_words_only() {
        for c in Command::SEQUENCE {
            assert_eq!(Command::parse(c.word()), Some(c));
            assert_eq!(Command::parse(&format!("{}\r", c.word())), Some(c));
            assert_eq!(c.ack(), format!("gntpeer: ack {}", c.word()));
        }
        assert_eq!(Command::parse("map"), None);
        assert_eq!(Command::parse(""), None);
    }

    #[test]
    fn page_contents_differ_where_each_step_writes() {
        let differs = |f: fn(usize) -> u8, g: fn(usize) -> u8, r: core::ops::Range<usize>| {
            r.into_iter().all(|i| f(i) != g(i))
        };
        // Every byte a step writes changes, so a missing write cannot pass unnoticed.
        assert!(differs(|i| pattern(SEED_A, i), a_after_map, 0..HALF));
        assert!(differs(a_after_map, a_after_copy, HALF..4096));
        assert!((0..HALF).all(|i| a_after_map(i) == a_after_copy(i)));
        assert!((0..4096).all(|i| pattern(SEED_A, i) != pattern(SEED_B, i)));
        // No period of 256: a page shifted by whole 256-byte blocks would be caught.
        assert!((0..3840).any(|i| pattern(SEED_A, i) != pattern(SEED_A, i + 256)));
    }
}
