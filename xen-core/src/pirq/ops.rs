//! The PIRQ operations on the replica in Xen 4.17's order of checks: map/unmap a GSI
//! (`physdev_map_pirq`, `allocate_and_map_gsi_pirq`, `allocate_pirq`, `map_domain_pirq`,
//! `unmap_domain_pirq`), `PHYSDEVOP_setup_gsi` (`mp_register_gsi`), bind/unbind an event
//! channel (`evtchn_bind_pirq`, `pirq_guest_bind`, `pirq_guest_unbind`), an interrupt
//! (`__do_IRQ_guest`), the EOI (`pirq_guest_eoi`) and the EOI bitmap.

use super::{gsi_entry, gsi_state, irq_permitted, irq_to_pirq, pirq_to_irq, EoiMap, Gsi, Pirq};
use crate::effect::{DomId, Effect, MmEffect};
use crate::evtchn::{table, ChanState, Channel};
use crate::hv::{Ctx, HvError, HvState};
use crate::hypercall::physdev::nr_pirqs;
use dom0_interface::errno::XenErrno;
use dom0_interface::xen::DOMID_SELF;

/// At most this many guests share one GSI (`IRQ_MAX_GUESTS`).
const IRQ_MAX_GUESTS: usize = 7;

fn pirq_of(state: &HvState, d: DomId, pirq: u32) -> Pirq {
    state.pirqs.get(&(d, pirq)).copied().unwrap_or_default()
}

fn put_pirq(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, d: DomId, pirq: u32, p: Pirq) {
    if p.is_empty() {
        state.pirqs.remove(ctx.journal(), &(d, pirq));
    } else {
        state.pirqs.insert(ctx.journal(), (d, pirq), p);
    }
}

/// Stores `gsi`'s new state and, if its pin changed, emits the pin's programming.
fn put_gsi(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, gsi: u32, g: Gsi) {
    let before = gsi_state(state, gsi);
    state.gsis.insert(ctx.journal(), gsi, g);
    let after = gsi_state(state, gsi);
    if after != before {
        ctx.emit(Effect::Gsi(after));
    }
}

/// The EOI bitmap bit of `pirq` in `d`'s map (if registered), set or cleared after commit
/// (`set_pirq_eoi`, `clear_pirq_eoi`).
fn eoi_bit(state: &HvState, ctx: &mut Ctx<'_, '_, '_>, d: DomId, pirq: u32, set: bool) {
    let Some(m) = state.eoi_maps.get(&d).copied() else {
        return;
    };
    let maddr = (m.mfn << 12) + u64::from(pirq / 64) * 8;
    let bit = 1u64 << (pirq % 64);
    let (set, clear) = if set { (bit, 0) } else { (0, bit) };
    ctx.emit(Effect::Mm(MmEffect::AtomicBits { maddr, set, clear }));
}

/// `rcu_lock_domain_by_any_id` then XSM's `XSM_DM_PRIV` (only a privileged caller).
fn target(state: &HvState, caller: DomId, domid: DomId) -> Result<DomId, XenErrno> {
    let d = if domid == DOMID_SELF { caller } else { domid };
    if !state.domains.contains_key(&d) {
        return Err(XenErrno::ESRCH);
    }
    if !crate::hypercall::is_privileged(state, caller) {
        return Err(XenErrno::EPERM);
    }
    Ok(d)
}

/// The checks `physdev_map_pirq` makes before it looks at the mapping's type.
pub fn check_target(state: &HvState, caller: DomId, domid: DomId) -> Result<(), XenErrno> {
    target(state, caller, domid).map(|_| ())
}

/// `PHYSDEVOP_map_pirq` of type GSI: maps GSI `index` to `pirq` (negative: any free) in
/// `domid`; the PIRQ it is mapped to.
pub fn map_gsi(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    domid: DomId,
    index: i32,
    pirq: i32,
) -> Result<i32, XenErrno> {
    let caller = ctx.dom();
    let d = target(state, caller, domid)?;
    let nr_gsis = state.pirq_config.get().nr_gsis;
    if index < 0 || index as u32 >= nr_gsis {
        return Err(XenErrno::EINVAL);
    }
    // The caller's own PIRQ `index` names the IRQ if it is mapped; else dom0 names the GSI.
    let mut irq = pirq_to_irq(state, caller, index as u32);
    if irq <= 0 {
        if !crate::hypercall::is_privileged(state, caller) {
            return Err(XenErrno::EINVAL);
        }
        irq = index;
    }
    let irq = irq as u32;
    // allocate_pirq
    let current = irq_to_pirq(state, d, irq);
    let pirq = if pirq < 0 {
        if current < 0 {
            return Err(XenErrno::EBUSY);
        }
        if current > 0 {
            current as i32
        } else {
            get_free_pirq(state, d).ok_or(XenErrno::ENOSPC)? as i32
        }
    } else {
        if current != 0 && i64::from(pirq) != current {
            return Err(XenErrno::EEXIST);
        }
        pirq
    };
    map_domain_pirq(state, ctx, d, pirq, irq)?;
    Ok(pirq)
}

/// `get_free_pirq` for a GSI: the first free above the legacy 16, else the highest free
/// above the GSIs.
fn get_free_pirq(state: &HvState, d: DomId) -> Option<u32> {
    let nr_gsis = state.pirq_config.get().nr_gsis;
    let free = |p: u32| pirq_of(state, d, p).is_free();
    (16..nr_gsis)
        .find(|p| free(*p))
        .or_else(|| (nr_gsis..nr_pirqs(state, d)).rev().find(|p| free(*p)))
}

/// `map_domain_pirq` for a GSI.
fn map_domain_pirq(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    d: DomId,
    pirq: i32,
    irq: u32,
) -> Result<(), XenErrno> {
    if !irq_permitted(state, ctx.dom(), irq) {
        return Err(XenErrno::EPERM);
    }
    if pirq < 0 || pirq as u32 >= nr_pirqs(state, d) || irq == 0 {
        return Err(XenErrno::EINVAL);
    }
    let pirq = pirq as u32;
    let old_irq = pirq_to_irq(state, d, pirq);
    let old_pirq = irq_to_pirq(state, d, irq);
    if (old_irq > 0 && old_irq as u32 != irq) || (old_pirq != 0 && old_pirq != i64::from(pirq)) {
        // "pirq or irq already mapped": Xen answers 0 and maps nothing.
        return Ok(());
    }
    state.irq_access.insert(ctx.journal(), (d, irq), true);
    let p = Pirq {
        irq: irq as i32,
        ..pirq_of(state, d, pirq)
    };
    put_pirq(state, ctx, d, pirq, p);
    Ok(())
}

/// `PHYSDEVOP_unmap_pirq`: unmaps `pirq` of `domid`, force-unbinding its event channel if
/// bound, and revokes the domain's access to the IRQ.
pub fn unmap(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    domid: DomId,
    pirq: i32,
) -> Result<(), XenErrno> {
    let d = target(state, ctx.dom(), domid)?;
    if pirq < 0 || pirq as u32 >= nr_pirqs(state, d) {
        return Err(XenErrno::EINVAL);
    }
    let pirq = pirq as u32;
    let mut p = pirq_of(state, d, pirq);
    if p.irq <= 0 {
        return Err(XenErrno::EINVAL);
    }
    let irq = p.irq as u32;
    let bound = gsi_entry(state, irq).guests.contains(&d);
    if bound {
        guest_unbind(state, ctx, d, pirq, irq);
        p = pirq_of(state, d, pirq);
        p.irq = -(irq as i32);
    } else {
        p.irq = 0;
    }
    put_pirq(state, ctx, d, pirq, p);
    state.irq_access.insert(ctx.journal(), (d, irq), false);
    Ok(())
}

/// `PHYSDEVOP_setup_gsi` (dom0; the caller checked): sets GSI `gsi`'s trigger mode and
/// polarity, once per pin (the ACPI SCI's too: Xen 4.17 answers 0 for it).
pub fn setup_gsi(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    gsi: i32,
    triggering: u8,
    polarity: u8,
) -> Result<i64, XenErrno> {
    let cfg = state.pirq_config.get().clone();
    if gsi < 0 || gsi as u32 >= cfg.nr_gsis {
        return Err(XenErrno::EINVAL);
    }
    let gsi = gsi as u32;
    let mut g = gsi_entry(state, gsi);
    if g.programmed {
        return Err(XenErrno::EEXIST);
    }
    g.programmed = true;
    // A pin in use (by the hypervisor or a bound guest) keeps its signalling.
    if cfg.xen_gsis.contains(&gsi) || !g.guests.is_empty() {
        put_gsi(state, ctx, gsi, g);
        return Err(XenErrno::EEXIST);
    }
    g.level = triggering != 0;
    g.active_low = polarity != 0;
    put_gsi(state, ctx, gsi, g);
    Ok(0)
}

/// `EVTCHNOP_bind_pirq`: a new port of the caller for `pirq`, notifying vCPU 0; the GSI's
/// pin is unmasked for it.
pub fn bind(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    pirq: u32,
    will_share: bool,
) -> Result<u32, HvError> {
    let d = ctx.dom();
    if pirq >= nr_pirqs(state, d) {
        return Err(XenErrno::EINVAL.into());
    }
    let irq = pirq_to_irq(state, d, pirq);
    if irq <= 0 || !irq_permitted(state, d, irq as u32) {
        return Err(XenErrno::EPERM.into());
    }
    let irq = irq as u32;
    if pirq_of(state, d, pirq).evtchn != 0 {
        return Err(XenErrno::EEXIST.into());
    }
    let port = table::get_free_port(state, ctx, d)?;
    // pirq_guest_bind
    let mut g = gsi_entry(state, irq);
    if state.pirq_config.get().xen_gsis.contains(&irq) {
        // "Cannot bind IRQ%d to dom%d. In use by '%s'."
        return Err(XenErrno::EBUSY.into());
    }
    if !g.guests.is_empty() && (!g.shareable || !will_share) {
        return Err(XenErrno::EBUSY.into());
    }
    if g.guests.contains(&d) || g.guests.len() >= IRQ_MAX_GUESTS {
        return Err(XenErrno::EBUSY.into());
    }
    if g.guests.is_empty() {
        g.shareable = will_share;
        g.in_flight = 0;
    }
    g.guests.push(d);
    // The EOI bitmap says which PIRQs need PHYSDEVOP_eoi: those of a level pin (Xen's
    // ACKTYPE_EOI), set at bind and left so; an edge pin's are acknowledged early.
    eoi_bit(state, ctx, d, pirq, g.level);
    put_gsi(state, ctx, irq, g);
    let p = Pirq {
        evtchn: port,
        ..pirq_of(state, d, pirq)
    };
    put_pirq(state, ctx, d, pirq, p);
    let chan = Channel {
        state: ChanState::Pirq(pirq),
        notify_vcpu: 0,
    };
    table::occupy(state, ctx.journal(), d, port, chan);
    Ok(port)
}

/// Takes `d` off GSI `irq`'s guests (`__pirq_guest_unbind`): its pending EOI is dropped, and
/// the pin is masked when no guest is left.
fn guest_unbind(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, d: DomId, pirq: u32, irq: u32) {
    let mut g = gsi_entry(state, irq);
    g.guests.retain(|x| *x != d);
    let mut p = pirq_of(state, d, pirq);
    if p.masked {
        p.masked = false;
        g.in_flight = g.in_flight.saturating_sub(1);
        put_pirq(state, ctx, d, pirq, p);
    }
    if g.guests.is_empty() {
        g.in_flight = 0;
    }
    put_gsi(state, ctx, irq, g);
}

/// Closing a PIRQ port (`evtchn_close`'s `ECS_PIRQ`): unbinds the GSI (or finishes a forced
/// unbind's unmapping) and forgets the port.
pub fn close_port(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, d: DomId, pirq: u32) {
    let mut p = pirq_of(state, d, pirq);
    if p.irq > 0 {
        guest_unbind(state, ctx, d, pirq, p.irq as u32);
        p = pirq_of(state, d, pirq);
    } else if p.irq < 0 {
        p.irq = 0;
    }
    p.evtchn = 0;
    put_pirq(state, ctx, d, pirq, p);
}

/// `PHYSDEVOP_eoi` of the caller's `pirq`: ends its interrupt (a level pin unmasks when no
/// guest has one in flight), and with a v1 bitmap unmasks its event channel.
pub fn eoi(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, pirq: u32) -> Result<(), XenErrno> {
    let d = ctx.dom();
    if pirq >= nr_pirqs(state, d) {
        return Err(XenErrno::EINVAL);
    }
    let Some(mut p) = state.pirqs.get(&(d, pirq)).copied() else {
        return Err(XenErrno::EINVAL);
    };
    if state.eoi_maps.get(&d).is_some_and(|m| m.auto_unmask) && p.evtchn != 0 {
        crate::evtchn::ops::unmask(state, ctx, p.evtchn)?;
    }
    if p.masked {
        p.masked = false;
        put_pirq(state, ctx, d, pirq, p);
        if p.irq > 0 {
            let mut g = gsi_entry(state, p.irq as u32);
            g.in_flight = g.in_flight.saturating_sub(1);
            put_gsi(state, ctx, p.irq as u32, g);
        }
    }
    Ok(())
}

/// `PHYSDEVOP_pirq_eoi_gmfn_v1/v2`: frame `gmfn` (a PV domain names its machine frame) of
/// the caller becomes its PIRQ EOI bitmap, taken writable; once per domain.
pub fn register_eoi_map(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    gmfn: u64,
    v1: bool,
) -> Result<(), HvError> {
    use crate::mm::env::CtxEnv;
    use crate::mm::frame::{get_page, get_page_type, put_page, put_page_and_type};
    use crate::mm::PageType;
    let d = ctx.dom();
    {
        let mut env = CtxEnv::new(ctx);
        get_page(state, &mut env, gmfn, d)?;
        match get_page_type(state, &mut env, gmfn, PageType::Writable) {
            Ok(()) => {}
            Err(HvError::Abort(a)) => return Err(HvError::Abort(a)),
            Err(_) => {
                put_page(state, &mut env, gmfn);
                return Err(XenErrno::EINVAL.into());
            }
        }
        if state.eoi_maps.contains_key(&d) {
            put_page_and_type(state, &mut env, gmfn)?;
            return Err(XenErrno::EBUSY.into());
        }
    }
    let m = EoiMap {
        mfn: gmfn,
        auto_unmask: v1,
    };
    state.eoi_maps.insert(ctx.journal(), d, m);
    Ok(())
}

/// GSI `gsi` interrupted (`__do_IRQ_guest`): each bound guest's PIRQ event is raised; a
/// level-triggered pin stays masked until every guest EOI'd it.
pub fn interrupt(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, gsi: u32) -> Result<(), HvError> {
    let mut g = gsi_entry(state, gsi);
    if g.guests.is_empty() {
        // Unbound meanwhile: the pin is masked already (or masks now).
        ctx.emit(Effect::Gsi(gsi_state(state, gsi)));
        return Ok(());
    }
    let guests = g.guests.clone();
    for d in guests {
        let pirq = irq_to_pirq(state, d, gsi);
        if pirq <= 0 {
            continue;
        }
        let pirq = pirq as u32;
        let mut p = pirq_of(state, d, pirq);
        if g.level && !p.masked {
            p.masked = true;
            g.in_flight += 1;
            put_pirq(state, ctx, d, pirq, p);
        }
        if p.evtchn != 0 {
            let vcpu = state
                .evtchns
                .get(&(d, p.evtchn))
                .map_or(0, |c| c.notify_vcpu);
            crate::evtchn::notify(state, ctx, d, p.evtchn, vcpu)?;
        }
    }
    let level = g.level;
    state.gsis.insert(ctx.journal(), gsi, g);
    if level {
        // The hardware masked the level pin when it took the interrupt: its state again.
        ctx.emit(Effect::Gsi(gsi_state(state, gsi)));
    }
    Ok(())
}

/// A dying domain's PIRQs (`free_domain_pirqs`, `free_pirq_eoi_map`): after its ports are
/// closed, every mapping goes (pins of GSIs it still had bound are masked if it was the last
/// guest), its IRQ access with it, and the EOI bitmap frame's references are dropped.
pub fn destroy_domain(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    d: DomId,
) -> Result<(), HvError> {
    let pirqs: alloc::vec::Vec<(u32, Pirq)> = state
        .pirqs
        .iter()
        .filter(|((dom, _), _)| *dom == d)
        .map(|((_, p), v)| (*p, *v))
        .collect();
    for (pirq, p) in pirqs {
        if p.irq > 0 && gsi_entry(state, p.irq as u32).guests.contains(&d) {
            guest_unbind(state, ctx, d, pirq, p.irq as u32);
        }
        state.pirqs.remove(ctx.journal(), &(d, pirq));
    }
    let access: alloc::vec::Vec<(DomId, u32)> = state
        .irq_access
        .iter()
        .filter(|(k, _)| k.0 == d)
        .map(|(k, _)| *k)
        .collect();
    for k in access {
        state.irq_access.remove(ctx.journal(), &k);
    }
    if let Some(m) = state.eoi_maps.get(&d).copied() {
        state.eoi_maps.remove(ctx.journal(), &d);
        let mut env = crate::mm::env::CtxEnv::new(ctx);
        crate::mm::frame::put_page_and_type(state, &mut env, m.mfn)?;
        env.finish();
    }
    Ok(())
}
