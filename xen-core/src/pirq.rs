//! Physical IRQs of PV domains, with Xen 4.17's semantics (`arch/x86/irq.c`,
//! `arch/x86/physdev.c`, `arch/x86/io_apic.c`, `arch/x86/mpparse.c`): GSIs mapped to a
//! domain's PIRQs, PIRQs bound to event channels, the I/O APIC pins the hypervisor owns set up
//! and unmasked for bound GSIs, an interrupt turned into the PIRQ's event, and the EOI that
//! unmasks a level-triggered pin again.
//!
//! Only GSIs (`MAP_PIRQ_TYPE_GSI`) are mapped; IRQ numbers are GSI numbers, as in Xen for the
//! I/O APIC's pins. The I/O APIC is programmed after commit, through [`GsiEffect`]s that
//! carry a pin's whole state; the interrupt arrives as an `Interrupt` transaction whose vector
//! is [`gsi_vector`] of the GSI.

pub mod ops;

use crate::effect::DomId;
use crate::hv::HvState;
use alloc::vec::Vec;

/// The first hypervisor vector of a GSI: GSI `n` arrives on vector `GSI_VECTOR_BASE + n`.
pub const GSI_VECTOR_BASE: u64 = 0x90;
/// GSIs DualVisor routes (vectors 0x90..0xE0, below the local APIC's vectors).
pub const MAX_GSIS: u32 = 0x50;

/// The vector GSI `gsi` arrives on.
pub fn gsi_vector(gsi: u32) -> u64 {
    GSI_VECTOR_BASE + u64::from(gsi)
}

/// The GSI vector `v` belongs to, if it is one.
pub fn vector_gsi(v: u64) -> Option<u32> {
    v.checked_sub(GSI_VECTOR_BASE)
        .filter(|g| *g < u64::from(MAX_GSIS))
        .map(|g| g as u32)
}

/// Host interrupt facts the handlers need, set at boot from the MADT and FADT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PirqConfig {
    /// GSIs the I/O APICs have pins for (Xen's `nr_irqs_gsi`), at most [`MAX_GSIS`].
    pub nr_gsis: u32,
    /// Signalling of the 16 ISA GSIs (interrupt source overrides, else edge, active high):
    /// bit 0 level-triggered, bit 1 active low.
    pub legacy: Vec<u8>,
    /// GSIs the hypervisor itself handles (the serial port's): no guest may bind them.
    pub xen_gsis: Vec<u32>,
}
lockstep::impl_value!(PirqConfig {
    nr_gsis,
    legacy,
    xen_gsis
});

impl PirqConfig {
    /// The boot signalling of `gsi`: (level, active low). ISA GSIs follow the overrides; the
    /// others are PCI's (level, active low) until `PHYSDEVOP_setup_gsi` says otherwise.
    pub fn default_signalling(&self, gsi: u32) -> (bool, bool) {
        match self.legacy.get(gsi as usize) {
            Some(f) => (f & 1 != 0, f & 2 != 0),
            None if gsi < 16 => (false, false),
            None => (true, true),
        }
    }
}

/// One PIRQ of a domain (Xen's `struct pirq` with `arch.irq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pirq {
    /// The GSI it is mapped to; 0 none; negative: force-unbound by `unmap_pirq` while its
    /// event channel was bound, until that channel closes (Xen's `arch.irq = -irq`).
    pub irq: i32,
    /// The event channel bound to it (0 none).
    pub evtchn: u32,
    /// An interrupt was delivered and the domain has not EOI'd it yet (`pirq->masked`).
    pub masked: bool,
}
lockstep::impl_value!(Pirq {
    irq,
    evtchn,
    masked
});

impl Pirq {
    /// Xen's `is_free_pirq` for a PV domain.
    pub fn is_free(&self) -> bool {
        self.irq == 0
    }

    /// Nothing left in it (`pirq_cleanup_check`: no IRQ, no event channel).
    fn is_empty(&self) -> bool {
        self.irq == 0 && self.evtchn == 0
    }
}

/// A GSI's pin and the guests bound to it (Xen's `irq_desc` with its `irq_guest_action_t`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gsi {
    /// Level-triggered.
    pub level: bool,
    /// Active low.
    pub active_low: bool,
    /// `PHYSDEVOP_setup_gsi` programmed the pin (`pin_programmed`).
    pub programmed: bool,
    /// Domains bound to it, in binding order.
    pub guests: Vec<DomId>,
    /// The first binder allowed sharing (`BIND_PIRQ__WILL_SHARE`).
    pub shareable: bool,
    /// Guests that have an interrupt not yet EOI'd (a level pin stays masked meanwhile).
    pub in_flight: u32,
}
lockstep::impl_value!(Gsi {
    level,
    active_low,
    programmed,
    guests,
    shareable,
    in_flight
});

impl Gsi {
    /// Whether the pin is unmasked: bound, and no level interrupt awaits an EOI.
    pub fn unmasked(&self) -> bool {
        !(self.guests.is_empty() || (self.level && self.in_flight > 0))
    }
}

/// A domain's PIRQ EOI bitmap (`PHYSDEVOP_pirq_eoi_gmfn_v1/v2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EoiMap {
    /// Its machine frame.
    pub mfn: u64,
    /// Registered with v1: an EOI also unmasks the PIRQ's event channel.
    pub auto_unmask: bool,
}
lockstep::impl_value!(EoiMap { mfn, auto_unmask });

/// Program GSI `gsi`'s redirection entry after commit: its vector is [`gsi_vector`], its
/// destination the leader CPU, the rest as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GsiEffect {
    /// The GSI.
    pub gsi: u32,
    /// Level-triggered.
    pub level: bool,
    /// Active low.
    pub active_low: bool,
    /// Unmasked.
    pub unmasked: bool,
}
lockstep::impl_value!(GsiEffect {
    gsi,
    level,
    active_low,
    unmasked
});

/// The pin state of `gsi` now (for a [`GsiEffect`]).
pub fn gsi_state(state: &HvState, gsi: u32) -> GsiEffect {
    let g = gsi_entry(state, gsi);
    GsiEffect {
        gsi,
        level: g.level,
        active_low: g.active_low,
        unmasked: g.unmasked(),
    }
}

/// `gsi`'s entry, or its boot state.
pub fn gsi_entry(state: &HvState, gsi: u32) -> Gsi {
    match state.gsis.get(&gsi) {
        Some(g) => g.clone(),
        None => {
            let (level, active_low) = state.pirq_config.get().default_signalling(gsi);
            Gsi {
                level,
                active_low,
                ..Gsi::default()
            }
        }
    }
}

/// Xen's `irq_access_permitted(d, irq)`: dom0 starts with GSIs 1..nr_gsis, unmap revokes,
/// map grants.
pub fn irq_permitted(state: &HvState, d: DomId, irq: u32) -> bool {
    match state.irq_access.get(&(d, irq)) {
        Some(p) => *p,
        None => {
            crate::hypercall::is_privileged(state, d)
                && irq >= 1
                && irq < state.pirq_config.get().nr_gsis
        }
    }
}

/// `domain_pirq_to_irq`: the (possibly negative) IRQ of `pirq`, 0 if none.
pub fn pirq_to_irq(state: &HvState, d: DomId, pirq: u32) -> i32 {
    state.pirqs.get(&(d, pirq)).map_or(0, |p| p.irq)
}

/// `domain_irq_to_pirq`: the PIRQ `irq` is mapped to in `d` (negative: force-unbound), 0 none.
pub fn irq_to_pirq(state: &HvState, d: DomId, irq: u32) -> i64 {
    for ((dom, pirq), p) in state.pirqs.iter() {
        if *dom != d {
            continue;
        }
        if p.irq == irq as i32 {
            return i64::from(*pirq);
        }
        if p.irq == -(irq as i32) {
            return -i64::from(*pirq);
        }
    }
    0
}

/// Whether `pirq` of `d` shares its GSI with another guest (`XENIRQSTAT_shared`).
pub fn is_shared(state: &HvState, d: DomId, pirq: u32) -> bool {
    let irq = pirq_to_irq(state, d, pirq);
    irq > 0
        && state
            .gsis
            .get(&(irq as u32))
            .is_some_and(|g| g.guests.len() > 1)
}

#[cfg(test)]
mod tests;
