//! Guest GSIs on the lockstep leader: the I/O APIC pins of GSIs guests bind are delivered to
//! the leader on [`xen_core::pirq::gsi_vector`]s; the interrupt handler masks a
//! level-triggered pin, acknowledges the local APIC and records the GSI, and the leader then
//! runs one interrupt transaction per recorded GSI (at its next guest exit or, idle, after
//! its `hlt`), which raises the PIRQ events. Pins are programmed only from committed
//! [`xen_core::pirq::GsiEffect`]s.
//!
//! Latency: each GSI's arrival is stamped (TSC) and the time until its interrupt
//! transaction has raised the events is measured; the totals are printed as dom0 goes down
//! ([`report`]).

use super::{transact, After, Runtime};
use core::sync::atomic::{AtomicU64, Ordering};
use dom0_interface::xen::DOMID_IDLE;
use xen_core::pirq::{gsi_vector, vector_gsi, GsiEffect, PirqConfig, MAX_GSIS};
use xen_core::request::{ExitKind, GuestRegs, Request};

/// GSIs whose interrupt arrived and awaits its transaction, one bit each.
static PENDING: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// Per GSI, the TSC when its oldest undelivered interrupt arrived (0: none waiting).
static ARRIVED: [AtomicU64; 128] = [const { AtomicU64::new(0) }; 128];
/// Delivered GSIs: how many (by where they were picked up: [`Site`]), total and highest TSC
/// cycles from arrival to the end of their interrupt transaction.
static DELIVERED: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static LATENCY_TOTAL: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static LATENCY_MAX: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// The part of it before the GSI's transaction started (the rest is the transaction).
static WAIT_TOTAL: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static WAIT_MAX: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

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
        if let Some(a) = ARRIVED.get(gsi as usize) {
            let _ = a.compare_exchange(0, arch::cpu::rdtsc(), Ordering::AcqRel, Ordering::Relaxed);
        }
        PENDING[(gsi / 64) as usize].fetch_or(1 << (gsi % 64), Ordering::AcqRel);
    }
    arch::lapic::eoi();
}

/// Whether a GSI awaits its transaction.
pub(crate) fn any_pending() -> bool {
    PENDING.iter().any(|w| w.load(Ordering::Acquire) != 0)
}

/// Where a leader picks up the GSIs that arrived.
#[derive(Clone, Copy)]
pub(crate) enum Site {
    /// Idle, after its `hlt`.
    Idle = 0,
    /// At a guest exit for an interrupt.
    InterruptExit = 1,
    /// At the end of any guest exit, before the guest resumes ([`poll_late`]).
    BeforeResume = 2,
}

/// Counts one delivery of `gsi` picked up at `site`: its transaction started at TSC
/// `started` and just ended.
fn delivered(gsi: u32, site: Site, started: u64) {
    let Some(a) = ARRIVED.get(gsi as usize) else {
        return;
    };
    let since = a.swap(0, Ordering::AcqRel);
    if since == 0 {
        return;
    }
    let cycles = arch::cpu::rdtsc().saturating_sub(since);
    DELIVERED[site as usize].fetch_add(1, Ordering::AcqRel);
    LATENCY_TOTAL[site as usize].fetch_add(cycles, Ordering::AcqRel);
    LATENCY_MAX[site as usize].fetch_max(cycles, Ordering::AcqRel);
    let wait = started.saturating_sub(since);
    WAIT_TOTAL[site as usize].fetch_add(wait, Ordering::AcqRel);
    WAIT_MAX[site as usize].fetch_max(wait, Ordering::AcqRel);
}

/// Prints how fast guest GSIs were delivered, by where they were picked up (nothing if
/// none was).
pub fn report() {
    let khz = arch::lapic::tsc_khz().max(1);
    let us = |c: u64| c.saturating_mul(1000) / khz;
    let mut line = alloc::string::String::new();
    for (i, what) in [
        "to an idle leader",
        "at an interrupt exit",
        "before a guest resumed",
    ]
    .into_iter()
    .enumerate()
    {
        let n = DELIVERED[i].load(Ordering::Acquire);
        if n == 0 {
            continue;
        }
        let total = LATENCY_TOTAL[i].load(Ordering::Acquire);
        let max = LATENCY_MAX[i].load(Ordering::Acquire);
        let wait = WAIT_TOTAL[i].load(Ordering::Acquire);
        let wait_max = WAIT_MAX[i].load(Ordering::Acquire);
        let sep = if line.is_empty() { "" } else { "; " };
        let _ = core::fmt::Write::write_fmt(
            &mut line,
            format_args!(
                "{sep}{n} {what}: mean {} us (waiting {}), max {} us (waiting {})",
                us(total / n),
                us(wait / n),
                us(max),
                us(wait_max)
            ),
        );
    }
    if !line.is_empty() {
        arch::xprintln!(
            "GSI delivery, from the interrupt to its events raised (of which waiting for its transaction to start): {}",
            line
        );
    }
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

/// After a guest exit's transactions, before the guest resumes: the GSIs that arrived
/// meanwhile (the leader takes interrupts while it halts waiting for its follower) get
/// their transactions now instead of at the next interrupt exit (the next tick, up to
/// 10 ms later), and so do those arriving during these (a few rounds at most).
#[inline]
pub(crate) fn poll_late(rt: &mut Runtime, cpu: usize) -> Option<After> {
    // On every exit, nearly always with nothing pending: decided here, without a call.
    if !any_pending() || rt.stepping_down(cpu) {
        // (Stepping down: the successor serves the GSIs.)
        return None;
    }
    poll_late_pending(rt, cpu)
}

/// [`poll_late`] once a GSI is pending.
#[inline(never)]
fn poll_late_pending(rt: &mut Runtime, cpu: usize) -> Option<After> {
    let mut after: Option<After> = None;
    for _ in 0..4 {
        if !any_pending() {
            break;
        }
        let Some(a) = poll(rt, cpu, Site::BeforeResume) else {
            break;
        };
        match &mut after {
            Some(x) => x.merge(a),
            None => after = Some(a),
        }
    }
    after
}

/// Runs the interrupt transaction of every GSI that arrived on leader CPU `cpu`, picked up
/// at `site`; None if none did.
pub(crate) fn poll(rt: &mut Runtime, cpu: usize, site: Site) -> Option<After> {
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
            let started = arch::cpu::rdtsc();
            let a = transact(rt, &req, 0, None);
            delivered(gsi, site, started);
            match &mut after {
                Some(x) => x.merge(a),
                None => after = Some(a),
            }
        }
    }
    after
}
