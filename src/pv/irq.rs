//! Guest GSIs on the lockstep leader: the I/O APIC pins of GSIs guests bind are delivered to
//! the leader on [`xen_core::pirq::gsi_vector`]s; the interrupt handler masks a
//! level-triggered pin, acknowledges the local APIC and records the GSI, and the leader then
//! runs one interrupt transaction per recorded GSI (at its next guest exit or, idle, after
//! its `hlt`), which raises the PIRQ events. Pins are programmed only from committed
//! [`xen_core::pirq::GsiEffect`]s.

use super::{transact, After, Runtime};
use core::sync::atomic::{AtomicU64, Ordering};
use dom0_interface::xen::DOMID_IDLE;
use xen_core::pirq::{gsi_vector, vector_gsi, GsiEffect, PirqConfig, MAX_GSIS};
use xen_core::request::{ExitKind, GuestRegs, Request};

/// GSIs whose interrupt arrived and awaits its transaction, one bit each.
static PENDING: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// The host facts the PIRQ handlers need, from the MADT recorded at boot.
pub fn pirq_config() -> PirqConfig {
    let nr_gsis = arch::ioapic::nr_gsis().min(MAX_GSIS);
    PirqConfig {
        nr_gsis,
        legacy: (0..16).map(arch::ioapic::legacy_flags).collect(),
        xen_gsis: arch::ioapic::com1_gsi().into_iter().collect(),
    }
}

fn gsi_interrupt(vector: u8, _frame: &mut arch::trap::TrapFrame) {
    if let Some(gsi) = vector_gsi(u64::from(vector)) {
        if arch::ioapic::gsi_is_level(gsi) {
            arch::ioapic::mask_gsi(gsi);
        }
        PENDING[(gsi / 64) as usize].fetch_or(1 << (gsi % 64), Ordering::AcqRel);
    }
    arch::lapic::eoi();
}

/// Installs the handler of every GSI vector.
pub fn register_handlers() {
    for gsi in 0..MAX_GSIS.min(arch::ioapic::MAX_GSIS as u32) {
        arch::trap::register_irq(gsi_vector(gsi) as u8, gsi_interrupt);
    }
}

/// Delivers guest GSIs to leader CPU `leader` (at boot and when a new leader takes over).
pub fn route_to(leader: usize) {
    if let Some(c) = arch::percpu::get(leader) {
        arch::ioapic::set_gsi_target(c.apic_id.load(Ordering::Relaxed));
    }
}

/// Programs a committed pin state.
pub fn apply(g: &GsiEffect) {
    arch::ioapic::program_gsi(
        g.gsi,
        gsi_vector(g.gsi) as u8,
        g.level,
        g.active_low,
        g.unmasked,
    );
}

/// Runs the interrupt transaction of every GSI that arrived on leader CPU `cpu`; None if
/// none did.
pub(crate) fn poll(rt: &mut Runtime, cpu: usize) -> Option<After> {
    let mut after: Option<After> = None;
    for (w, word) in PENDING.iter().enumerate() {
        let mut bits = word.swap(0, Ordering::AcqRel);
        while bits != 0 {
            let gsi = w as u32 * 64 + bits.trailing_zeros();
            bits &= bits - 1;
            let req = Request::exit(
                ExitKind::Interrupt,
                DOMID_IDLE,
                cpu as u32,
                GuestRegs::default(),
                gsi_vector(gsi),
                0,
                0,
            );
            let a = transact(rt, &req, 0, None);
            match &mut after {
                Some(x) => x.merge(a),
                None => after = Some(a),
            }
        }
    }
    after
}
