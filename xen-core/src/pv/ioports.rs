//! Which I/O ports a domain's emulated port accesses reach: Xen's per-domain `ioport_caps`
//! and `admin_io_okay`. The hardware domain may use every port except those the hypervisor
//! drives itself; other domains none. An access that touches a port the domain may not use
//! reads all ones and writes nothing (Xen's `guest_io_read`/`guest_io_write`), measured on Xen
//! 4.17 under QEMU with `console=com1`: the PICs, PIT channels 0-1 and COM1 read 0xff.
//!
//! The CMOS/RTC ports are never reached directly (Xen's `is_cmos_port`, `rtc_guest_read` and
//! `rtc_guest_write`): every PV domain writes and reads back its own latched index at 0x70;
//! 0x71 reads or writes the hardware register that index selects for the hardware domain (the
//! index and the access together, under the hypervisor's CMOS lock), and all ones / nothing
//! for the others.

use crate::effect::{DomId, Effect};
use crate::hv::{value_kind, Ctx, HvError, HvState};
use crate::pv::effect::PvEffect;

/// The RTC index port.
pub const RTC_INDEX: u16 = 0x70;
/// The RTC data port.
pub const RTC_DATA: u16 = 0x71;

/// `is_cmos_port`: the access touches 0x70-0x71.
fn is_cmos_port(port: u16, size: u8) -> bool {
    port <= RTC_DATA && u32::from(port) + u32::from(size) > u32::from(RTC_INDEX)
}

/// Port ranges (inclusive) the hardware domain may not use, as Xen 4.17 denies them
/// (`dom0_setup_permissions`; `ns16550_endboot` for the console UART): the master and slave
/// PIC, the PIT (0x40-0x43) and the speaker gate (0x61), and COM1 (0x3f8, the console
/// DualVisor drives); and the ACPI PM timer's four ports
/// ([`crate::hv::HvConfig::pm_timer_port`]). PIT channel 2 and the speaker gate are then
/// reached through [`pit_write`] and [`pit_read`], as Xen's `hwdom_pit_access` reaches them.
/// Xen denies PCI configuration data (0xcfc-0xcff) as well but emulates it for the hardware
/// domain; here it reaches the hardware.
pub const DOM0_DENIED_PORTS: [(u16, u16); 5] = [
    (0x20, 0x21),
    (0x40, 0x43),
    (0x61, 0x61),
    (0xa0, 0xa1),
    (0x3f8, 0x3ff),
];

/// PIT channel 2's counter port.
const PIT_CH2: u16 = 0x42;
/// The PIT's mode/command port.
const PIT_MODE: u16 = 0x43;
/// The speaker gate / NMI status port (bit 0: channel 2's gate, bit 1: speaker data).
const SPEAKER: u16 = 0x61;

/// The hardware domain's read of one byte at `port` that Xen's `hwdom_pit_access` passes to
/// the hardware (the hypervisor does not use the PIT after its boot calibration, Xen's
/// `using_pit` false): channel 2's counter, the speaker gate, and the write-only mode port
/// (the hardware answers 0 there, as Xen 4.17 does under QEMU: the `portio` guest checks it on
/// both). None for other ports.
fn pit_read(ctx: &mut Ctx<'_, '_, '_>, port: u16) -> Result<Option<u8>, HvError> {
    match port {
        PIT_CH2 | PIT_MODE | SPEAKER => Ok(Some(ctx.value(value_kind::port_in(port, 1))? as u8)),
        _ => Ok(None),
    }
}

/// The hardware domain's write of `b` at `port`, as Xen's `hwdom_pit_access` lets it reach
/// the hardware: channel 2's counter as written; at the mode port a control word for
/// channel 2, and of a read-back command only its channel-2 part; at the speaker gate only
/// its two low bits (the gate and the speaker), the others kept as the hardware holds them.
/// Anything else (channel 0-1 commands) is dropped.
fn pit_write(ctx: &mut Ctx<'_, '_, '_>, port: u16, b: u8) -> Result<(), HvError> {
    let out = match port {
        PIT_CH2 => Some(b),
        PIT_MODE => match b & 0xc0 {
            0x80 => Some(b),
            0xc0 if b & 0x08 != 0 => Some(b & 0xf8),
            _ => None,
        },
        SPEAKER => {
            let now = ctx.value(value_kind::port_in(SPEAKER, 1))? as u8;
            Some((now & !3) | (b & 3))
        }
        _ => None,
    };
    if let Some(value) = out {
        ctx.emit(Effect::Pv(PvEffect::PortOut {
            port,
            size: 1,
            value: u32::from(value),
        }));
    }
    Ok(())
}

/// `admin_io_okay`: whether an access of `size` bytes at `port` by `dom` reaches the
/// hardware (every byte of it permitted).
pub fn admin_io_okay(state: &HvState, dom: DomId, port: u16, size: u8) -> bool {
    if !crate::hypercall::is_privileged(state, dom) || is_cmos_port(port, size) {
        return false;
    }
    let first = u32::from(port);
    let last = first + u32::from(size.max(1)) - 1;
    let pm_timer = state
        .config
        .get()
        .pm_timer_port
        .map(|p| (p, p.saturating_add(3)));
    !DOM0_DENIED_PORTS
        .iter()
        .chain(pm_timer.iter())
        .any(|&(s, e)| first <= u32::from(e) && last >= u32::from(s))
}

fn cmos_idx(state: &HvState, dom: DomId) -> u8 {
    state.domains.get(&dom).map_or(0, |d| d.cmos_idx)
}

/// `guest_io_read`: the value an emulated `in` of `size` bytes at `port` gives the calling
/// domain (allowed by [`crate::pv::emulate::io_okay`] already): the hardware's if every port
/// is the domain's ([`admin_io_okay`]), else byte by byte the latched CMOS index at 0x70, the
/// selected CMOS register at 0x71 (hardware domain only), all ones elsewhere.
pub fn guest_io_read(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    port: u16,
    size: u8,
) -> Result<u32, HvError> {
    let dom = ctx.dom();
    if admin_io_okay(state, dom, port, size) {
        return Ok(ctx.value(value_kind::port_in(port, size))? as u32);
    }
    let mut data = 0u32;
    for i in 0..size {
        let privileged = crate::hypercall::is_privileged(state, dom);
        let b = match port.wrapping_add(u16::from(i)) {
            RTC_INDEX => cmos_idx(state, dom),
            RTC_DATA if privileged => ctx.value(value_kind::cmos_read(cmos_idx(state, dom)))? as u8,
            p if privileged => pit_read(ctx, p)?.unwrap_or(0xff),
            _ => 0xff,
        };
        data |= u32::from(b) << (8 * u32::from(i));
    }
    Ok(data)
}

/// `guest_io_write`: an emulated `out` of `size` bytes of `value` at `port` by the calling
/// domain: to the hardware if every port is the domain's, else byte by byte the CMOS index
/// latched at 0x70, the selected CMOS register written at 0x71 and PIT channel 2 and the
/// speaker gate ([`pit_write`]) (hardware domain only), dropped elsewhere.
pub fn guest_io_write(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    port: u16,
    size: u8,
    value: u32,
) -> Result<(), HvError> {
    let dom = ctx.dom();
    if admin_io_okay(state, dom, port, size) {
        let mask = match size {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        };
        ctx.emit(Effect::Pv(PvEffect::PortOut {
            port,
            size,
            value: value & mask,
        }));
        return Ok(());
    }
    for i in 0..size {
        let b = (value >> (8 * u32::from(i))) as u8;
        match port.wrapping_add(u16::from(i)) {
            RTC_INDEX => {
                let j = ctx.journal();
                state.domains.update(j, &dom, |d| d.cmos_idx = b);
            }
            RTC_DATA if crate::hypercall::is_privileged(state, dom) => {
                let index = cmos_idx(state, dom) & 0x7f;
                ctx.emit(Effect::Pv(PvEffect::CmosWrite { index, value: b }));
            }
            p if crate::hypercall::is_privileged(state, dom) => pit_write(ctx, p, b)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::testing::Harness;

    #[test]
    fn dom0_is_denied_the_hypervisors_ports_and_a_domu_everything() {
        let h = Harness::dom0();
        for (port, size) in [
            (0x3f8, 1),
            (0x3fd, 1),
            (0x3f7, 2),
            (0x21, 1),
            (0x40, 4),
            (0x42, 1),
            (0x61, 1),
            (0xa1, 1),
            (0x70, 1),
            (0x6f, 2),
            (0x71, 1),
        ] {
            assert!(!admin_io_okay(&h.state, 0, port, size), "{port:#x}/{size}");
        }
        for (port, size) in [(0x3f7, 1), (0x80, 1), (0xcf8, 4), (0xcfc, 4), (0x72, 1)] {
            assert!(admin_io_okay(&h.state, 0, port, size), "{port:#x}/{size}");
        }
        let u = Harness::domu(1);
        assert!(!admin_io_okay(&u.state, 1, 0x80, 1));
    }

    #[test]
    fn the_pm_timer_is_denied_when_the_firmware_names_it() {
        let mut h = Harness::dom0();
        assert!(admin_io_okay(&h.state, 0, 0x608, 4));
        let mut j = lockstep::Journal::new();
        j.begin(9);
        h.state
            .config
            .update(&mut j, |c| c.pm_timer_port = Some(0x608));
        for (port, size) in [(0x608, 4), (0x60b, 1), (0x606, 4)] {
            assert!(!admin_io_okay(&h.state, 0, port, size), "{port:#x}/{size}");
        }
        assert!(admin_io_okay(&h.state, 0, 0x604, 4));
        assert!(admin_io_okay(&h.state, 0, 0x60c, 1));
    }
}
