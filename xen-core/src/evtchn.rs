//! Event channels, 2-level and FIFO ABIs, with Xen 4.17's semantics
//! (`common/event_channel.c`, `common/event_2l.c`, `common/event_fifo.c`).
//!
//! The replica holds every domain's port table: one [`Channel`] per bound port in
//! [`HvState::evtchns`](crate::hv::HvState) keyed by (domain, port) (free ports are absent,
//! port 0 is always reserved), a [`PortTable`] per domain with the bucket-granular valid range
//! and the allocation bitmap, and the VIRQ → port bindings per vCPU. Operations ([`ops`]) change
//! that state and emit delivery effects; nothing here touches guest memory.
//!
//! Delivery (the pending/mask bits in the target domain's shared_info page) happens after
//! commit, on the bare-metal side, by applying [`EvtchnEffect`]s `Set`, `Unmask` and
//! `Clear` with the pure functions of [`deliver`] over the
//! [`deliver::SharedInfoBits`] trait. [`virq`] raises VIRQs from other transactions (timers,
//! VIRQ_DOM_EXC); [`poll`] is SCHEDOP_poll. A domain that called `EVTCHNOP_init_control` uses
//! the FIFO ABI instead: [`fifo`] holds its replica state and operations, [`fifo_deliver`]
//! the commit-time queue work of the `Fifo*` effects.

pub mod deliver;
pub mod effect;
pub mod fifo;
pub mod fifo_deliver;
pub mod ops;
pub mod poll;
pub mod table;
pub mod virq;

use crate::domain::VcpuKey;
use crate::effect::{DomId, Effect};
use crate::hv::{Ctx, HvError, HvState};
use alloc::vec::Vec;
use lockstep::{Hasher, Value};

pub use effect::EvtchnEffect;
pub use table::PortTable;

/// Ports of the 2-level ABI on 64-bit guests (`BITS_PER_EVTCHN_WORD`²).
pub const NR_PORTS: u32 = 4096;
/// Ports per bucket of Xen's port table (a page of 64-byte `struct evtchn`): ports are valid
/// up to the end of the last bucket allocated, measured on Xen 4.17.
pub const PORTS_PER_BUCKET: u32 = 64;
/// Bits per word of the pending/mask bitmaps and of `evtchn_pending_sel`.
pub const BITS_PER_WORD: u32 = 64;

/// What a bound port is (Xen's `ECS_*` minus FREE and RESERVED, which are not stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChanState {
    /// `ECS_UNBOUND`: waiting for `remote_dom` to bind.
    Unbound {
        /// The domain allowed to bind.
        remote_dom: DomId,
    },
    /// `ECS_INTERDOMAIN`: connected to `remote_port` of `remote_dom`.
    Interdomain {
        /// The other end's domain.
        remote_dom: DomId,
        /// The other end's port.
        remote_port: u32,
    },
    /// `ECS_VIRQ`: bound to a virtual IRQ.
    Virq(u32),
    /// `ECS_IPI`: an inter-vCPU notification within the domain.
    Ipi,
    /// `ECS_PIRQ`: bound to a physical IRQ of the domain.
    Pirq(u32),
}

impl ChanState {
    fn tag(&self) -> u8 {
        match self {
            ChanState::Unbound { .. } => 1,
            ChanState::Interdomain { .. } => 2,
            ChanState::Virq(_) => 4,
            ChanState::Ipi => 5,
            ChanState::Pirq(_) => 3,
        }
    }
}

impl Value for ChanState {
    fn digest(&self, h: &mut Hasher) {
        h.write_u8(self.tag());
        match self {
            ChanState::Unbound { remote_dom } => remote_dom.digest(h),
            ChanState::Interdomain {
                remote_dom,
                remote_port,
            } => {
                remote_dom.digest(h);
                remote_port.digest(h);
            }
            ChanState::Virq(v) | ChanState::Pirq(v) => v.digest(h),
            ChanState::Ipi => {}
        }
    }

    fn bit_len(&self) -> u64 {
        match self {
            ChanState::Unbound { remote_dom } => remote_dom.bit_len(),
            ChanState::Interdomain {
                remote_dom,
                remote_port,
            } => remote_dom.bit_len() + remote_port.bit_len(),
            ChanState::Virq(v) | ChanState::Pirq(v) => v.bit_len(),
            ChanState::Ipi => 0,
        }
    }

    fn flip_bit(&mut self, bit: u64) {
        match self {
            ChanState::Unbound { remote_dom } => remote_dom.flip_bit(bit),
            ChanState::Interdomain {
                remote_dom,
                remote_port,
            } => {
                let n = remote_dom.bit_len();
                if bit < n {
                    remote_dom.flip_bit(bit);
                } else {
                    remote_port.flip_bit(bit - n);
                }
            }
            ChanState::Virq(v) | ChanState::Pirq(v) => v.flip_bit(bit),
            ChanState::Ipi => {}
        }
    }
}

/// One bound port (Xen's `struct evtchn` for a port that is neither free nor reserved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// What it is bound to.
    pub state: ChanState,
    /// The vCPU its events are delivered to (`notify_vcpu_id`).
    pub notify_vcpu: u32,
}
lockstep::impl_value!(Channel { state, notify_vcpu });

/// Key of a port: (domain, port).
pub type PortKey = (DomId, u32);

/// Key of a VIRQ binding: (domain, vCPU, VIRQ). Global VIRQs are kept under vCPU 0, as Xen
/// keeps them in vCPU 0's `virq_to_evtchn`.
pub type VirqKey = (DomId, u32, u32);

/// Emits an event-channel effect.
pub(crate) fn emit(ctx: &mut Ctx<'_, '_, '_>, e: EvtchnEffect) {
    ctx.emit(Effect::Evtchn(e));
}

/// What a vCPU in SCHEDOP_poll waits for ([`HvState::evtchn_pollers`]): this port, or any
/// event of its domain ([`POLL_ANY`]).
pub type PollWait = u32;
/// A poll on several ports (or none): any event of the domain wakes it (Xen's
/// `poll_evtchn = -1`).
pub const POLL_ANY: PollWait = u32::MAX;

/// Raises `port` of `dom` for `vcpu` (Xen's `evtchn_port_set_pending`): emits the delivery
/// (2-level or FIFO, as the domain uses; on FIFO, a port beyond the event array is only
/// saved as pending)
/// and, when the scheduler runs in the replica, wakes the vCPUs this event may end a wait
/// for — those polling `port` (or any port) in `dom`, as `evtchn_check_pollers`, and `vcpu`
/// itself if it is blocked, as `vcpu_kick`. Whether the pending bit or the upcall flag were
/// already set is known only when the effect is applied, so the wake-up may be spurious
/// (a masked port, an upcall already flagged); Xen's ABI allows spurious wake-ups of
/// SCHEDOP_block and SCHEDOP_poll, and guests re-check.
pub fn notify(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
    port: u32,
    vcpu: u32,
) -> Result<(), HvError> {
    if fifo::is_fifo(state, dom) {
        match fifo::raise(state, ctx, dom, port, vcpu) {
            Some(e) => emit(ctx, e),
            // Saved until its event array page exists: nothing visible, no one to wake.
            None => return Ok(()),
        }
    } else {
        emit(ctx, EvtchnEffect::Set { dom, port, vcpu });
    }
    if state.runqs.is_empty() {
        // No scheduler in the replica: the embedder wakes vCPUs from `deliver`'s result.
        return Ok(());
    }
    let mut wake: Vec<VcpuKey> = state
        .evtchn_pollers
        .iter()
        .filter(|((d, _), w)| *d == dom && (**w == port || **w == POLL_ANY))
        .map(|(k, _)| *k)
        .collect();
    let target = (dom, vcpu);
    if !wake.contains(&target) && state.vcpus.get(&target).is_some_and(|v| v.blocked) {
        wake.push(target);
    }
    if wake.is_empty() {
        return Ok(());
    }
    for k in &wake {
        state.evtchn_pollers.remove(ctx.journal(), k);
    }
    crate::sched::with_sched(state, ctx, |s| {
        for k in wake {
            crate::sched::wake(s, k);
        }
    })
}

/// Whether `virq` is global (bound on vCPU 0 only, re-routable with bind_vcpu) rather than
/// per-vCPU. Xen 4.17's `virq_is_global`: per-vCPU are TIMER, DEBUG, XENOPROF and XENPMU;
/// every other number below `NR_VIRQS`, the x86 arch VIRQs included, is global.
pub fn virq_is_global(virq: u32) -> bool {
    use dom0_interface::xen::{VIRQ_DEBUG, VIRQ_TIMER, VIRQ_XENOPROF, VIRQ_XENPMU};
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom0_interface::xen::{VIRQ_ARCH_0, VIRQ_CONSOLE, VIRQ_DOM_EXC, VIRQ_TIMER, VIRQ_XENPMU};

    fn digest<T: Value>(v: &T) -> u32 {
        let mut h = Hasher::new();
        v.digest(&mut h);
        h.finish()
    }

    #[test]
    fn every_bit_flip_of_a_channel_is_detected() {
        let chans = [
            Channel {
                state: ChanState::Unbound { remote_dom: 3 },
                notify_vcpu: 1,
            },
            Channel {
                state: ChanState::Interdomain {
                    remote_dom: 7,
                    remote_port: 42,
                },
                notify_vcpu: 0,
            },
            Channel {
                state: ChanState::Virq(VIRQ_TIMER),
                notify_vcpu: 2,
            },
            Channel {
                state: ChanState::Ipi,
                notify_vcpu: 5,
            },
            Channel {
                state: ChanState::Pirq(16),
                notify_vcpu: 1,
            },
        ];
        for c in chans {
            let d0 = digest(&c);
            for bit in 0..c.bit_len() {
                let mut f = c;
                f.flip_bit(bit);
                assert_ne!(f, c, "flip {bit} of {c:?} changed nothing");
                assert_ne!(digest(&f), d0, "flip {bit} of {c:?} not detected");
            }
        }
    }

    #[test]
    fn states_digest_differently() {
        assert_ne!(
            digest(&ChanState::Ipi),
            digest(&ChanState::Unbound { remote_dom: 0 })
        );
        assert_ne!(digest(&ChanState::Virq(0)), digest(&ChanState::Ipi));
    }

    #[test]
    fn global_and_per_vcpu_virqs() {
        assert!(!virq_is_global(VIRQ_TIMER));
        assert!(!virq_is_global(VIRQ_XENPMU));
        assert!(virq_is_global(VIRQ_CONSOLE));
        assert!(virq_is_global(VIRQ_DOM_EXC));
        assert!(virq_is_global(5), "undefined numbers are global");
        assert!(virq_is_global(VIRQ_ARCH_0 + 7));
    }
}
