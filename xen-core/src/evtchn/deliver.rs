//! Event delivery into a domain's shared_info page, 2-level ABI: the pure logic of Xen's
//! `evtchn_2l_set_pending`, `evtchn_2l_unmask` and `evtchn_2l_clear_pending` over the
//! [`SharedInfoBits`] trait. The bare-metal side implements the trait with atomic operations
//! on the real page and applies the `EvtchnSet` / `EvtchnUnmask` / `EvtchnClear` effects with
//! [`deliver`], [`unmask`] and [`clear`] after commit; [`SharedInfoBytes`] implements it over a
//! page image in Xen's layout.

use super::{BITS_PER_WORD, NR_PORTS};

/// The bits of a shared_info page event delivery reads and writes. Every method is one
/// atomic operation on the page; their order in [`deliver`] and [`unmask`] is Xen's.
pub trait SharedInfoBits {
    /// Sets `port`'s bit in `evtchn_pending`; returns its old value.
    fn test_and_set_pending(&mut self, port: u32) -> bool;
    /// Clears `port`'s bit in `evtchn_pending`.
    fn clear_pending(&mut self, port: u32);
    /// `port`'s bit in `evtchn_pending`.
    fn is_pending(&self, port: u32) -> bool;
    /// `port`'s bit in `evtchn_mask`.
    fn is_masked(&self, port: u32) -> bool;
    /// Clears `port`'s bit in `evtchn_mask`; returns its old value.
    fn test_and_clear_mask(&mut self, port: u32) -> bool;
    /// Sets bit `word` of `vcpu`'s `evtchn_pending_sel`; returns its old value. A vCPU
    /// without a vcpu_info answers `true` (nothing more to deliver).
    fn test_and_set_sel(&mut self, vcpu: u32, word: u32) -> bool;
    /// Sets `vcpu`'s `evtchn_upcall_pending`; returns its old value (`true` for a vCPU
    /// without a vcpu_info).
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool;
}

/// What delivering one event did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The pending bit went from clear to set: wake vCPUs of the domain polling this port
    /// (Xen's `evtchn_check_pollers`).
    pub newly_pending: bool,
    /// `evtchn_upcall_pending` went from clear to set: kick the vCPU (`vcpu_kick`: wake it if
    /// blocked, interrupt it if running elsewhere).
    pub kick: bool,
}

/// `evtchn_2l_set_pending`: marks `port` pending and, unless it is masked or already
/// flagged, sets its selector bit and the upcall flag of `vcpu`.
pub fn deliver(page: &mut dyn SharedInfoBits, port: u32, vcpu: u32) -> Delivery {
    if port >= NR_PORTS || page.test_and_set_pending(port) {
        return Delivery::default();
    }
    let kick = !page.is_masked(port)
        && !page.test_and_set_sel(vcpu, port / BITS_PER_WORD)
        && !page.test_and_set_upcall_pending(vcpu);
    Delivery {
        newly_pending: true,
        kick,
    }
}

/// `evtchn_2l_unmask`: clears `port`'s mask bit and, if it was masked and is pending,
/// re-delivers it to `vcpu`. Returns whether to kick the vCPU.
pub fn unmask(page: &mut dyn SharedInfoBits, port: u32, vcpu: u32) -> bool {
    port < NR_PORTS
        && page.test_and_clear_mask(port)
        && page.is_pending(port)
        && !page.test_and_set_sel(vcpu, port / BITS_PER_WORD)
        && !page.test_and_set_upcall_pending(vcpu)
}

/// `evtchn_2l_clear_pending`: clears `port`'s pending bit (a port being freed).
pub fn clear(page: &mut dyn SharedInfoBits, port: u32) {
    if port < NR_PORTS {
        page.clear_pending(port);
    }
}

/// `evtchn_2l_is_pending` (what SCHEDOP_poll asks).
pub fn is_pending(page: &dyn SharedInfoBits, port: u32) -> bool {
    port < NR_PORTS && page.is_pending(port)
}

/// Offset of `evtchn_pending[64]` in shared_info.
pub const PENDING_OFFSET: usize = 2048;
/// Offset of `evtchn_mask[64]` in shared_info.
pub const MASK_OFFSET: usize = 2560;
/// Size of `struct vcpu_info`.
pub const VCPU_INFO_SIZE: usize = 64;
/// vcpu_info slots in shared_info (`XEN_LEGACY_MAX_VCPUS`).
pub const LEGACY_VCPUS: u32 = 32;
/// Offset of `evtchn_pending_sel` in vcpu_info.
const SEL_OFFSET: usize = 8;
/// Bytes of shared_info the bitmaps reach.
const PAGE_BYTES: usize = MASK_OFFSET + (NR_PORTS / 8) as usize;

/// A shared_info page image in Xen's x86-64 layout (at least up to `evtchn_mask`). vCPUs
/// `0..32` use the vcpu_info slots of the page; others have none here.
pub struct SharedInfoBytes<'a> {
    page: &'a mut [u8],
}

impl<'a> SharedInfoBytes<'a> {
    /// Wraps `page`; `None` if it is too short to hold the event bitmaps.
    pub fn new(page: &'a mut [u8]) -> Option<Self> {
        (page.len() >= PAGE_BYTES).then_some(SharedInfoBytes { page })
    }

    fn word(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        if let Some(s) = self.page.get(off..off + 8) {
            b.copy_from_slice(s);
        }
        u64::from_le_bytes(b)
    }

    fn set_word(&mut self, off: usize, v: u64) {
        if let Some(s) = self.page.get_mut(off..off + 8) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    }

    fn bit(base: usize, port: u32) -> (usize, u64) {
        (
            base + (port / BITS_PER_WORD) as usize * 8,
            1 << (port % BITS_PER_WORD),
        )
    }

    fn test_and_change(&mut self, base: usize, port: u32, set: bool) -> bool {
        let (off, bit) = Self::bit(base, port);
        let w = self.word(off);
        self.set_word(off, if set { w | bit } else { w & !bit });
        w & bit != 0
    }

    fn vcpu_info(vcpu: u32) -> Option<usize> {
        (vcpu < LEGACY_VCPUS).then(|| vcpu as usize * VCPU_INFO_SIZE)
    }
}

impl SharedInfoBits for SharedInfoBytes<'_> {
    fn test_and_set_pending(&mut self, port: u32) -> bool {
        self.test_and_change(PENDING_OFFSET, port % NR_PORTS, true)
    }
    fn clear_pending(&mut self, port: u32) {
        self.test_and_change(PENDING_OFFSET, port % NR_PORTS, false);
    }
    fn is_pending(&self, port: u32) -> bool {
        let (off, bit) = Self::bit(PENDING_OFFSET, port % NR_PORTS);
        self.word(off) & bit != 0
    }
    fn is_masked(&self, port: u32) -> bool {
        let (off, bit) = Self::bit(MASK_OFFSET, port % NR_PORTS);
        self.word(off) & bit != 0
    }
    fn test_and_clear_mask(&mut self, port: u32) -> bool {
        self.test_and_change(MASK_OFFSET, port % NR_PORTS, false)
    }
    fn test_and_set_sel(&mut self, vcpu: u32, word: u32) -> bool {
        let Some(base) = Self::vcpu_info(vcpu) else {
            return true;
        };
        let off = base + SEL_OFFSET;
        let bit = 1u64 << (word % BITS_PER_WORD);
        let w = self.word(off);
        self.set_word(off, w | bit);
        w & bit != 0
    }
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
        let Some(base) = Self::vcpu_info(vcpu) else {
            return true;
        };
        match self.page.get_mut(base) {
            Some(b) => {
                let old = *b != 0;
                *b = 1;
                old
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn page() -> alloc::vec::Vec<u8> {
        vec![0u8; 4096]
    }

    fn sel(p: &[u8], vcpu: usize) -> u64 {
        let o = vcpu * VCPU_INFO_SIZE + SEL_OFFSET;
        u64::from_le_bytes(p[o..o + 8].try_into().unwrap())
    }

    fn pending_word(p: &[u8], w: usize) -> u64 {
        let o = PENDING_OFFSET + w * 8;
        u64::from_le_bytes(p[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn first_delivery_sets_pending_sel_and_upcall_and_kicks() {
        let mut p = page();
        let mut s = SharedInfoBytes::new(&mut p).unwrap();
        let d = deliver(&mut s, 130, 1);
        assert_eq!(
            d,
            Delivery {
                newly_pending: true,
                kick: true
            }
        );
        assert!(s.is_pending(130));
        assert_eq!(pending_word(&p, 2), 1 << 2);
        assert_eq!(sel(&p, 1), 1 << 2);
        assert_eq!(p[VCPU_INFO_SIZE], 1, "vcpu_info[1].evtchn_upcall_pending");
        assert_eq!(sel(&p, 0), 0);
        assert_eq!(p[0], 0);
    }

    #[test]
    fn already_pending_does_nothing_more() {
        let mut p = page();
        let mut s = SharedInfoBytes::new(&mut p).unwrap();
        deliver(&mut s, 5, 0);
        s.set_word(SEL_OFFSET, 0);
        assert_eq!(deliver(&mut s, 5, 0), Delivery::default());
        assert_eq!(s.word(SEL_OFFSET), 0);
    }

    #[test]
    fn second_port_in_a_flagged_word_does_not_kick() {
        let mut p = page();
        let mut s = SharedInfoBytes::new(&mut p).unwrap();
        assert!(deliver(&mut s, 3, 0).kick);
        let d = deliver(&mut s, 4, 0);
        assert!(d.newly_pending && !d.kick, "sel bit already set");
        // Another word, but upcall already pending: no kick either.
        let d = deliver(&mut s, 64, 0);
        assert!(d.newly_pending && !d.kick);
        assert_eq!(s.word(SEL_OFFSET), 0b11);
    }

    #[test]
    fn masked_port_is_pending_without_sel_until_unmasked() {
        let mut p = page();
        p[MASK_OFFSET] = 1 << 7;
        let mut s = SharedInfoBytes::new(&mut p).unwrap();
        let d = deliver(&mut s, 7, 0);
        assert_eq!(
            d,
            Delivery {
                newly_pending: true,
                kick: false
            }
        );
        assert_eq!(s.word(SEL_OFFSET), 0);
        assert!(unmask(&mut s, 7, 0), "unmask re-delivers and kicks");
        assert!(!s.is_masked(7));
        assert_eq!(s.word(SEL_OFFSET), 1);
        assert!(!unmask(&mut s, 7, 0), "not masked any more: nothing");
    }

    #[test]
    fn unmask_of_a_quiet_port_only_clears_the_mask() {
        let mut p = page();
        p[MASK_OFFSET] = 1 << 2;
        let mut s = SharedInfoBytes::new(&mut p).unwrap();
        assert!(!unmask(&mut s, 2, 0));
        assert!(!s.is_masked(2));
        assert_eq!(s.word(SEL_OFFSET), 0);
    }

    #[test]
    fn clear_and_out_of_range() {
        let mut p = page();
        let mut s = SharedInfoBytes::new(&mut p).unwrap();
        deliver(&mut s, 4095, 0);
        assert!(is_pending(&s, 4095));
        clear(&mut s, 4095);
        assert!(!is_pending(&s, 4095));
        assert_eq!(deliver(&mut s, 4096, 0), Delivery::default());
        assert!(!unmask(&mut s, 1 << 20, 0));
        assert!(!is_pending(&s, u32::MAX));
    }

    #[test]
    fn vcpus_without_a_slot_get_the_pending_bit_only() {
        let mut p = page();
        let mut s = SharedInfoBytes::new(&mut p).unwrap();
        let d = deliver(&mut s, 9, 40);
        assert!(d.newly_pending && !d.kick);
        assert!(s.is_pending(9));
    }

    #[test]
    fn short_pages_are_refused() {
        let mut p = vec![0u8; 3000];
        assert!(SharedInfoBytes::new(&mut p).is_none());
    }
}
