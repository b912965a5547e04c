//! What the event-channel code asks the bare-metal side to do after commit (wrapped in
//! [`crate::effect::Effect::Evtchn`]): change bits of a domain's shared_info page with the
//! functions of [`super::deliver`] (2-level ABI) or its event words and queues with those of
//! [`super::fifo_deliver`] (FIFO ABI), and park a vCPU in SCHEDOP_poll.

use crate::effect::DomId;
use alloc::vec::Vec;
use lockstep::{Hasher, Value};

/// An event-channel effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvtchnEffect {
    /// [`super::deliver::deliver`] `port` of `dom` to `vcpu`; then, if the pending bit was
    /// newly set, wake `dom`'s vCPUs polling it, and if asked, kick `vcpu`.
    Set {
        /// The domain owning the port.
        dom: DomId,
        /// The port.
        port: u32,
        /// The vCPU to notify.
        vcpu: u32,
    },
    /// [`super::deliver::unmask`] `port` of `dom`, re-delivering to `vcpu`; kick if asked.
    Unmask {
        /// The domain.
        dom: DomId,
        /// The port.
        port: u32,
        /// The port's notify vCPU.
        vcpu: u32,
    },
    /// [`super::deliver::clear`] `port` of `dom` (the port was freed).
    Clear {
        /// The domain.
        dom: DomId,
        /// The port.
        port: u32,
    },
    /// SCHEDOP_poll found nothing pending: block the calling vCPU until one of `ports` is
    /// pending (any event of the domain when `ports.len() != 1`, as Xen's `poll_evtchn = -1`)
    /// or system time reaches `timeout` (0: no timeout). The bare-metal side marks the vCPU
    /// polling, then re-checks the ports with [`super::deliver::is_pending`] and the vCPU's
    /// upcall flag before it sleeps (the check in the transaction may be stale by then);
    /// `Set` effects wake it. RAX is already 0.
    Poll {
        /// The ports polled, in order.
        ports: Vec<u32>,
        /// Absolute system time (ns) to give up at; 0 for none.
        timeout: u64,
    },
    /// FIFO ABI: [`super::fifo_deliver::set_pending`] `port` of `dom` on the queue of `vcpu`
    /// with `priority`; then as `Set` (wake pollers, kick).
    FifoSet {
        /// The domain owning the port.
        dom: DomId,
        /// The port (inside the event array).
        port: u32,
        /// The vCPU whose queue it joins.
        vcpu: u32,
        /// The port's priority.
        priority: u8,
    },
    /// FIFO ABI: [`super::fifo_deliver::unmask`] `port` of `dom`, re-raising it on `vcpu`.
    FifoUnmask {
        /// The domain.
        dom: DomId,
        /// The port (inside the event array).
        port: u32,
        /// Its notify vCPU.
        vcpu: u32,
        /// Its priority.
        priority: u8,
    },
    /// FIFO ABI: [`super::fifo_deliver::clear`] a freed port of `dom`: its event word's
    /// machine address, as the port's page was when it was freed (a reset that frees the last
    /// port also drops the event array in the same transaction).
    FifoClear {
        /// The domain.
        dom: DomId,
        /// Machine address of the event word.
        word: u64,
    },
    /// `dom` switched to FIFO afresh, or left it: forget its queue tails and last queues.
    FifoReset {
        /// The domain.
        dom: DomId,
    },
}

impl EvtchnEffect {
    fn tag(&self) -> u8 {
        match self {
            EvtchnEffect::Set { .. } => 1,
            EvtchnEffect::Unmask { .. } => 2,
            EvtchnEffect::Clear { .. } => 3,
            EvtchnEffect::Poll { .. } => 4,
            EvtchnEffect::FifoSet { .. } => 5,
            EvtchnEffect::FifoUnmask { .. } => 6,
            EvtchnEffect::FifoClear { .. } => 7,
            EvtchnEffect::FifoReset { .. } => 8,
        }
    }
}

/// Flips bit `bit` of the two fields `a` and `b` taken as one bit string, `a` first.
fn flip2(a: &mut impl Value, b: &mut impl Value, bit: u64) {
    let n = a.bit_len();
    if bit < n {
        a.flip_bit(bit);
    } else {
        b.flip_bit(bit - n);
    }
}

fn flip3(a: &mut DomId, b: &mut u32, c: &mut u32, bit: u64) {
    let na = a.bit_len();
    let nb = b.bit_len();
    if bit < na {
        a.flip_bit(bit);
    } else if bit < na + nb {
        b.flip_bit(bit - na);
    } else {
        c.flip_bit(bit - na - nb);
    }
}

impl Value for EvtchnEffect {
    fn digest(&self, h: &mut Hasher) {
        h.write_u8(self.tag());
        match self {
            EvtchnEffect::Set { dom, port, vcpu } | EvtchnEffect::Unmask { dom, port, vcpu } => {
                dom.digest(h);
                port.digest(h);
                vcpu.digest(h);
            }
            EvtchnEffect::Clear { dom, port } => {
                dom.digest(h);
                port.digest(h);
            }
            EvtchnEffect::FifoClear { dom, word } => {
                dom.digest(h);
                word.digest(h);
            }
            EvtchnEffect::Poll { ports, timeout } => {
                ports.digest(h);
                timeout.digest(h);
            }
            EvtchnEffect::FifoSet {
                dom,
                port,
                vcpu,
                priority,
            }
            | EvtchnEffect::FifoUnmask {
                dom,
                port,
                vcpu,
                priority,
            } => {
                dom.digest(h);
                port.digest(h);
                vcpu.digest(h);
                priority.digest(h);
            }
            EvtchnEffect::FifoReset { dom } => dom.digest(h),
        }
    }

    fn bit_len(&self) -> u64 {
        match self {
            EvtchnEffect::Set { dom, port, vcpu } | EvtchnEffect::Unmask { dom, port, vcpu } => {
                dom.bit_len() + port.bit_len() + vcpu.bit_len()
            }
            EvtchnEffect::Clear { dom, port } => dom.bit_len() + port.bit_len(),
            EvtchnEffect::FifoClear { dom, word } => dom.bit_len() + word.bit_len(),
            EvtchnEffect::Poll { ports, timeout } => ports.bit_len() + timeout.bit_len(),
            EvtchnEffect::FifoSet {
                dom,
                port,
                vcpu,
                priority,
            }
            | EvtchnEffect::FifoUnmask {
                dom,
                port,
                vcpu,
                priority,
            } => dom.bit_len() + port.bit_len() + vcpu.bit_len() + priority.bit_len(),
            EvtchnEffect::FifoReset { dom } => dom.bit_len(),
        }
    }

    fn flip_bit(&mut self, bit: u64) {
        match self {
            EvtchnEffect::Set { dom, port, vcpu } | EvtchnEffect::Unmask { dom, port, vcpu } => {
                flip3(dom, port, vcpu, bit)
            }
            EvtchnEffect::Clear { dom, port } => flip2(dom, port, bit),
            EvtchnEffect::FifoClear { dom, word } => flip2(dom, word, bit),
            EvtchnEffect::Poll { ports, timeout } => flip2(ports, timeout, bit),
            EvtchnEffect::FifoSet {
                dom,
                port,
                vcpu,
                priority,
            }
            | EvtchnEffect::FifoUnmask {
                dom,
                port,
                vcpu,
                priority,
            } => {
                let n = dom.bit_len() + port.bit_len() + vcpu.bit_len();
                if bit < n {
                    flip3(dom, port, vcpu, bit);
                } else {
                    priority.flip_bit(bit - n);
                }
            }
            EvtchnEffect::FifoReset { dom } => dom.flip_bit(bit),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn digest(e: &EvtchnEffect) -> u32 {
        let mut h = Hasher::new();
        e.digest(&mut h);
        h.finish()
    }

    /// One effect of each kind.
    pub(crate) fn samples() -> Vec<EvtchnEffect> {
        alloc::vec![
            EvtchnEffect::Set {
                dom: 1,
                port: 7,
                vcpu: 2
            },
            EvtchnEffect::Unmask {
                dom: 3,
                port: 4095,
                vcpu: 0
            },
            EvtchnEffect::Clear { dom: 0, port: 9 },
            EvtchnEffect::Poll {
                ports: alloc::vec![1, 2, 3],
                timeout: 1_000_000
            },
            EvtchnEffect::FifoSet {
                dom: 1,
                port: 70_000,
                vcpu: 3,
                priority: 15
            },
            EvtchnEffect::FifoUnmask {
                dom: 2,
                port: 5,
                vcpu: 1,
                priority: 0
            },
            EvtchnEffect::FifoClear {
                dom: 4,
                word: 0x1234_5678
            },
            EvtchnEffect::FifoReset { dom: 6 },
        ]
    }

    #[test]
    fn every_bit_flip_changes_the_digest() {
        for e in samples() {
            let d0 = digest(&e);
            assert!(e.bit_len() > 0);
            for bit in 0..e.bit_len() {
                let mut f = e.clone();
                f.flip_bit(bit);
                assert_ne!(f, e, "flip {bit} of {e:?} changed nothing");
                assert_ne!(digest(&f), d0, "flip {bit} of {e:?} not detected");
            }
        }
    }

    #[test]
    fn kinds_with_equal_fields_digest_differently() {
        let s = EvtchnEffect::Set {
            dom: 1,
            port: 2,
            vcpu: 3,
        };
        let u = EvtchnEffect::Unmask {
            dom: 1,
            port: 2,
            vcpu: 3,
        };
        assert_ne!(digest(&s), digest(&u));
    }
}
