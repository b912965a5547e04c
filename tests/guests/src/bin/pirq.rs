//! `pirq`: physical interrupts for dom0 — GSI 8 (the CMOS RTC) mapped to a PIRQ with
//! PHYSDEVOP_map_pirq, bound to an event channel with EVTCHNOP_bind_pirq, the RTC's periodic
//! interrupt programmed through ports 0x70/0x71 and received as events (SCHEDOP_poll), each
//! acknowledged with PHYSDEVOP_eoi and a read of CMOS register C; the PIRQ EOI bitmap, and
//! the errors Xen 4.17 gives for bad GSIs, PIRQs and bindings; PCI devices reported by dom0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::evtchn::{self, Status, DOMID_SELF};
use guest_rt::physdev::{self, PhysdevMapPirq, MAP_PIRQ_TYPE_GSI};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check_eq, info};
use guest_rt::{portio, println, pvcpu, sched, smp, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// The CMOS RTC's GSI (ISA IRQ 8, no override on q35).
const RTC_GSI: i32 = 8;
/// Periodic interrupts to receive.
const EVENTS: u32 = 6;
/// RTC register A: 32.768 kHz time base, rate 0xC (16 Hz).
const RTC_A_16HZ: u8 = 0x2c;
/// RTC register B: periodic interrupt enable.
const RTC_B_PIE: u8 = 0x40;
/// RTC register C: interrupt request and periodic flags.
const RTC_C_IRQF_PF: u8 = 0xc0;

/// A page-aligned page of ours to register as the PIRQ EOI bitmap.
#[repr(C, align(4096))]
struct Page([AtomicU64; 512]);
static EOI_MAP: Page = Page([const { AtomicU64::new(0) }; 512]);

/// `pirq`'s bit in the EOI bitmap.
fn eoi_bit(pirq: u32) -> u64 {
    (EOI_MAP.0[(pirq / 64) as usize].load(Ordering::SeqCst) >> (pirq % 64)) & 1
}

fn cmos_read(reg: u8) -> Option<u8> {
    portio::port_out(1, 0x70, u32::from(reg));
    portio::port_in(1, 0x71).map(|v| v as u8)
}

fn cmos_write(reg: u8, v: u8) {
    portio::port_out(1, 0x70, u32::from(reg));
    portio::port_out(1, 0x71, u32::from(v));
}

fn main(si: &StartInfo) {
    println!("pirq: GSI -> PIRQ -> event channel test guest");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("mapping shared_info failed: {}", e)),
    };
    check_eq("physdev set_iopl(1)", pvcpu::set_iopl(1), Ok(0));
    bad_maps();
    let pirq = match physdev::map_gsi(DOMID_SELF, RTC_GSI, -1) {
        Ok(p) => p,
        Err(e) => guest_rt::test::error(format_args!("map_pirq(GSI 8) failed: {}", e)),
    };
    info(format_args!("GSI 8 mapped to pirq {}", pirq));
    check_eq(
        "GSI 8 maps to the first free PIRQ above the legacy ones",
        pirq,
        16,
    );
    remap(pirq);
    let p = pirq as u32;
    eoi_map(si, p);
    let port = bind(p);
    interrupts(&shared, p, port);
    teardown(p, port);
    serial_gsi();
    sci(&shared);
    pci_devices();
}

/// q35's ACPI registers (ICH9, PMBASE 0x600): PM1 status, enable and control; the SMI
/// command port and its ACPI_ENABLE value.
const PM1_STS: u16 = 0x600;
const PM1_EN: u16 = 0x602;
const PM1_CNT: u16 = 0x604;
const SMI_CMD: u16 = 0xb2;
const ACPI_ENABLE: u32 = 0x02;
/// PM1 timer status/enable: set each time bit 23 of the ACPI PM timer flips (2.3 s).
const TMR: u32 = 1;
/// Level-triggered SCIs to receive.
const SCIS: u32 = 2;

/// GSI 9, the ACPI SCI (level-triggered, active high): the PM timer's carry raises it until
/// its status bit is cleared; the pin stays masked until the EOI.
fn sci(shared: &SharedInfo) {
    let pirq = match physdev::map_gsi(DOMID_SELF, 9, -1) {
        Ok(p) => p as u32,
        Err(e) => {
            check_eq("map_pirq(GSI 9)", Err::<i32, _>(e), Ok(16));
            return;
        }
    };
    check_eq("map_pirq(GSI 9): pirq 16 is free again", pirq, 16);
    let port = match physdev::bind_pirq(pirq, 0) {
        Ok(p) => p,
        Err(e) => {
            check_eq("bind_pirq(GSI 9's pirq)", Err::<u32, _>(e), Ok(0));
            return;
        }
    };
    shared.clear_evtchn_pending(port);
    portio::port_out(1, SMI_CMD, ACPI_ENABLE);
    check_eq(
        "ACPI mode: SCI_EN",
        portio::port_in(2, PM1_CNT).map(|v| v & 1),
        Some(1),
    );
    portio::port_out(2, PM1_STS, TMR);
    portio::port_out(2, PM1_EN, TMR);
    let mut got = 0;
    let mut status = 0;
    for _ in 0..SCIS {
        let now = shared.system_time_now(0).unwrap_or(0);
        let r = sched::poll(&[port], now + 8_000_000_000);
        if r != Ok(0) || !shared.evtchn_pending(port) {
            info(format_args!(
                "SCI: poll -> {:?}, pending {}",
                r,
                shared.evtchn_pending(port)
            ));
            break;
        }
        got += 1;
        shared.clear_evtchn_pending(port);
        check_eq("  the EOI bitmap asks for an EOI", eoi_bit(pirq), 1);
        if portio::port_in(2, PM1_STS).is_some_and(|v| v & TMR != 0) {
            status += 1;
        }
        portio::port_out(2, PM1_STS, TMR);
        check_eq("  eoi(SCI pirq)", physdev::eoi(pirq), Ok(0));
        check_eq("  the bitmap bit stays set after the EOI", eoi_bit(pirq), 1);
    }
    portio::port_out(2, PM1_EN, 0);
    portio::port_out(2, PM1_STS, TMR);
    check_eq("SCIs received as pirq events", got, SCIS);
    check_eq("  each with TMR_STS set", status, SCIS);
    check_eq("close(SCI port)", evtchn::close(port), Ok(0));
    check_eq(
        "unmap_pirq(SCI pirq)",
        physdev::unmap_pirq(DOMID_SELF, pirq as i32),
        Ok(0),
    );
}

/// dom0 reports PCI devices: 00:1f.3 (q35's SMBus controller) added, again, removed and
/// added back; a device nobody added cannot be removed.
fn pci_devices() {
    // q35's MCFG: segment 0, buses 0-0xff at 0xb0000000.
    for (name, r) in [
        (
            "pci_mmcfg_reserved(q35's area)",
            physdev::pci_mmcfg_reserved(0xb000_0000, 0, 0, 0xff, 1),
        ),
        (
            "pci_mmcfg_reserved(q35's area, not reserved)",
            physdev::pci_mmcfg_reserved(0xb000_0000, 0, 0, 0xff, 0),
        ),
        (
            "pci_mmcfg_reserved(q35's area) back",
            physdev::pci_mmcfg_reserved(0xb000_0000, 0, 0, 0xff, 1),
        ),
    ] {
        check_eq(name, r, Ok(0));
    }
    check_eq(
        "pci_mmcfg_reserved(another address)",
        physdev::pci_mmcfg_reserved(0xc000_0000, 0, 0, 0xff, 1),
        Err(Errno::EIO),
    );
    check_eq(
        "pci_mmcfg_reserved(buses 0-0x7f)",
        physdev::pci_mmcfg_reserved(0xb000_0000, 0, 0, 0x7f, 1),
        Err(Errno::ENODEV),
    );
    check_eq(
        "pci_mmcfg_reserved(segment 1)",
        physdev::pci_mmcfg_reserved(0xb000_0000, 1, 0, 0xff, 1),
        Err(Errno::ENODEV),
    );
    check_eq(
        "pci_mmcfg_reserved(flags 2)",
        physdev::pci_mmcfg_reserved(0xb000_0000, 0, 0, 0xff, 2),
        Err(Errno::EINVAL),
    );
    let smbus = (0x1f << 3) | 3;
    check_eq(
        "pci_device_add(00:1f.3)",
        physdev::pci_device_add(0, 0, smbus, 0),
        Ok(0),
    );
    check_eq(
        "pci_device_add(00:1f.3) again",
        physdev::pci_device_add(0, 0, smbus, 0),
        Ok(0),
    );
    check_eq(
        "pci_device_remove(00:1f.3)",
        physdev::pci_device_remove(0, 0, smbus),
        Ok(0),
    );
    check_eq(
        "pci_device_remove(00:1f.3) again",
        physdev::pci_device_remove(0, 0, smbus),
        Err(Errno::ENODEV),
    );
    check_eq(
        "pci_device_remove(00:1c.7, no such device)",
        physdev::pci_device_remove(0, 0, (0x1c << 3) | 7),
        Err(Errno::ENODEV),
    );
    check_eq(
        "pci_device_add(00:1f.3) back",
        physdev::pci_device_add(0, 0, smbus, 0),
        Ok(0),
    );
}

/// Maps Xen refuses, and what it answers.
fn bad_maps() {
    let gsi = |index: i32, pirq: i32| PhysdevMapPirq {
        domid: DOMID_SELF,
        r#type: MAP_PIRQ_TYPE_GSI,
        index,
        pirq,
        ..PhysdevMapPirq::default()
    };
    for (name, m, want) in [
        ("map_pirq(GSI -1)", gsi(-1, -1), Errno::EINVAL),
        (
            "map_pirq(GSI 24, past the I/O APIC's pins)",
            gsi(24, -1),
            Errno::EINVAL,
        ),
        ("map_pirq(GSI 1000)", gsi(1000, -1), Errno::EINVAL),
        (
            "map_pirq(GSI 0, no access to IRQ 0)",
            gsi(0, -1),
            Errno::EPERM,
        ),
        (
            "map_pirq(GSI 9, pirq 5000 past nr_pirqs)",
            gsi(9, 5000),
            Errno::EINVAL,
        ),
        (
            "map_pirq(type 7)",
            PhysdevMapPirq {
                r#type: 7,
                ..gsi(9, -1)
            },
            Errno::EINVAL,
        ),
        (
            "map_pirq(domain 7 that does not exist)",
            PhysdevMapPirq {
                domid: 7,
                ..gsi(9, -1)
            },
            Errno::ESRCH,
        ),
    ] {
        let (r, out) = physdev::map_pirq_raw(m);
        check_eq(name, r, Err(want));
        check_eq("  the struct comes back unchanged", out.pirq, m.pirq);
    }
    let msi = |r#type: i32| PhysdevMapPirq {
        r#type,
        index: -1,
        bus: 0,
        devfn: (0x1c << 3) | 7,
        ..gsi(0, -1)
    };
    for (name, t) in [
        (
            "map_pirq(MSI of 00:1c.7, no such device)",
            physdev::MAP_PIRQ_TYPE_MSI,
        ),
        ("map_pirq(MSI_SEG of 0000:00:1c.7)", 3),
    ] {
        let (r, out) = physdev::map_pirq_raw(msi(t));
        check_eq(name, r, Err(Errno::ENODEV));
        check_eq("  the struct comes back unchanged", out.pirq, -1);
    }
    check_eq(
        "setup_gsi(-1)",
        physdev::setup_gsi(-1, 0, 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "setup_gsi(24)",
        physdev::setup_gsi(24, 0, 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "setup_gsi(8, edge, high)",
        physdev::setup_gsi(8, 0, 0),
        Ok(0),
    );
    check_eq(
        "setup_gsi(8) again: pin already programmed",
        physdev::setup_gsi(8, 0, 0),
        Err(Errno::EEXIST),
    );
    check_eq(
        "setup_gsi(10, level, low)",
        physdev::setup_gsi(10, 1, 1),
        Ok(0),
    );
    check_eq(
        "setup_gsi(10) again",
        physdev::setup_gsi(10, 1, 1),
        Err(Errno::EEXIST),
    );
    check_eq(
        "setup_gsi(9, the ACPI SCI)",
        physdev::setup_gsi(9, 1, 0),
        Ok(0),
    );
    check_eq(
        "setup_gsi(4): the serial port's pin is in use",
        physdev::setup_gsi(4, 0, 0),
        Err(Errno::EEXIST),
    );
    check_eq(
        "bind_pirq(40, unmapped)",
        physdev::bind_pirq(40, 0),
        Err(Errno::EPERM),
    );
    check_eq(
        "bind_pirq(5000)",
        physdev::bind_pirq(5000, 0),
        Err(Errno::EINVAL),
    );
    check_eq("eoi(40, unmapped)", physdev::eoi(40), Err(Errno::EINVAL));
    check_eq("eoi(5000)", physdev::eoi(5000), Err(Errno::EINVAL));
    check_eq(
        "unmap_pirq(40, unmapped)",
        physdev::unmap_pirq(DOMID_SELF, 40),
        Err(Errno::EINVAL),
    );
    check_eq(
        "unmap_pirq(5000)",
        physdev::unmap_pirq(DOMID_SELF, 5000),
        Err(Errno::EINVAL),
    );
    check_eq(
        "unmap_pirq(domain 7)",
        physdev::unmap_pirq(7, 16),
        Err(Errno::ESRCH),
    );
    check_eq(
        "alloc_irq_vector(8): the IRQ as the vector",
        physdev::alloc_irq_vector(8),
        Ok(8),
    );
    check_eq(
        "alloc_irq_vector(300)",
        physdev::alloc_irq_vector(300),
        Ok(300),
    );
    check_eq(
        "irq_status_query(40): needs EOI",
        pvcpu::irq_status_query(40),
        Ok(1),
    );
}

/// Mapping the mapped GSI again.
fn remap(pirq: i32) {
    check_eq(
        "map_pirq(GSI 8, any) again: the same pirq",
        physdev::map_gsi(DOMID_SELF, RTC_GSI, -1),
        Ok(pirq),
    );
    check_eq(
        "map_pirq(GSI 8, the same pirq) again",
        physdev::map_gsi(DOMID_SELF, RTC_GSI, pirq),
        Ok(pirq),
    );
    check_eq(
        "map_pirq(GSI 8, another pirq)",
        physdev::map_gsi(DOMID_SELF, RTC_GSI, 30),
        Err(Errno::EEXIST),
    );
    check_eq(
        "map_pirq(GSI 9, the taken pirq): 0, nothing mapped",
        physdev::map_gsi(DOMID_SELF, 9, pirq),
        Ok(pirq),
    );
    check_eq(
        "  GSI 8 is still mapped to it",
        physdev::map_gsi(DOMID_SELF, RTC_GSI, -1),
        Ok(pirq),
    );
    check_eq(
        "eoi(mapped, unbound pirq)",
        physdev::eoi(pirq as u32),
        Ok(0),
    );
}

/// The PIRQ EOI bitmap: a frame of ours, once.
fn eoi_map(si: &StartInfo, _pirq: u32) {
    let va = &EOI_MAP as *const Page as u64;
    let Some(mfn) = smp::virt_to_mfn(si, va) else {
        guest_rt::test::error(format_args!("no mfn for the EOI map page"));
    };
    check_eq(
        "pirq_eoi_gmfn_v2(a frame not ours)",
        physdev::pirq_eoi_gmfn(physdev::PHYSDEVOP_PIRQ_EOI_GMFN_V2, u64::MAX >> 12),
        Err(Errno::EINVAL),
    );
    check_eq(
        "pirq_eoi_gmfn_v2(our page)",
        physdev::pirq_eoi_gmfn(physdev::PHYSDEVOP_PIRQ_EOI_GMFN_V2, mfn),
        Ok(0),
    );
    check_eq(
        "pirq_eoi_gmfn_v2 again",
        physdev::pirq_eoi_gmfn(physdev::PHYSDEVOP_PIRQ_EOI_GMFN_V2, mfn),
        Err(Errno::EBUSY),
    );
    check_eq(
        "pirq_eoi_gmfn_v1 after v2",
        physdev::pirq_eoi_gmfn(physdev::PHYSDEVOP_PIRQ_EOI_GMFN_V1, mfn),
        Err(Errno::EBUSY),
    );
}

fn bind(pirq: u32) -> u32 {
    let port = match physdev::bind_pirq(pirq, 0) {
        Ok(p) => p,
        Err(e) => guest_rt::test::error(format_args!("bind_pirq({}) failed: {}", pirq, e)),
    };
    check_eq(
        "status(pirq port)",
        evtchn::status(port),
        Ok((Status::Pirq(pirq), 0)),
    );
    check_eq(
        "bind_pirq twice",
        physdev::bind_pirq(pirq, 0),
        Err(Errno::EEXIST),
    );
    check_eq(
        "irq_status_query(bound pirq): needs EOI, not shared",
        pvcpu::irq_status_query(pirq),
        Ok(1),
    );
    check_eq(
        "send on a pirq port",
        evtchn::send(port),
        Err(Errno::EINVAL),
    );
    port
}

/// The RTC's periodic interrupt, `EVENTS` times.
fn interrupts(shared: &SharedInfo, pirq: u32, port: u32) {
    let old_a = cmos_read(0x0a).unwrap_or(0x26) & 0x7f;
    let old_b = cmos_read(0x0b).unwrap_or(0x02);
    let _ = cmos_read(0x0c);
    shared.clear_evtchn_pending(port);
    cmos_write(0x0a, RTC_A_16HZ);
    cmos_write(0x0b, old_b | RTC_B_PIE);
    let mut got = 0;
    let mut flagged = 0;
    for _ in 0..EVENTS {
        let now = shared.system_time_now(0).unwrap_or(0);
        let r = sched::poll(&[port], now + 3_000_000_000);
        if r != Ok(0) || !shared.evtchn_pending(port) {
            info(format_args!(
                "poll -> {:?}, pending {}",
                r,
                shared.evtchn_pending(port)
            ));
            break;
        }
        got += 1;
        shared.clear_evtchn_pending(port);
        if got == 1 {
            check_eq("  an edge GSI's event asks for no EOI", eoi_bit(pirq), 0);
        }
        if cmos_read(0x0c).is_some_and(|c| c & RTC_C_IRQF_PF == RTC_C_IRQF_PF) {
            flagged += 1;
        }
        if physdev::eoi(pirq) != Ok(0) {
            info(format_args!("eoi({}) -> {:?}", pirq, physdev::eoi(pirq)));
        }
    }
    let busy = busy_events(shared, pirq, port);
    cmos_write(0x0b, old_b & !RTC_B_PIE);
    cmos_write(0x0a, old_a);
    let _ = cmos_read(0x0c);
    check_eq(
        "RTC periodic interrupts received as pirq events",
        got,
        EVENTS,
    );
    check_eq("  each with IRQF|PF in register C", flagged, EVENTS);
    check_eq(
        "  and while this vCPU keeps making hypercalls (no blocking)",
        busy,
        EVENTS,
    );
}

/// The RTC's periodic interrupt `EVENTS` more times, this vCPU making `xen_version` calls
/// until each event shows pending in shared info: the interrupts arrive while the
/// hypervisor is busy with this vCPU's hypercalls. Returns the events received.
fn busy_events(shared: &SharedInfo, pirq: u32, port: u32) -> u32 {
    let mut got = 0;
    let mut calls = 0u64;
    let first = shared.system_time_now(0).unwrap_or(0);
    for _ in 0..EVENTS {
        let start = shared.system_time_now(0).unwrap_or(0);
        while !shared.evtchn_pending(port)
            && shared.system_time_now(0).unwrap_or(0) < start + 3_000_000_000
        {
            let _ = guest_rt::version::version();
            calls += 1;
        }
        if !shared.evtchn_pending(port) {
            info(format_args!("busy: no event within 3 s"));
            break;
        }
        got += 1;
        shared.clear_evtchn_pending(port);
        let _ = cmos_read(0x0c);
        let _ = physdev::eoi(pirq);
    }
    let ms = shared.system_time_now(0).unwrap_or(0).saturating_sub(first) / 1_000_000;
    info(format_args!(
        "busy: {got} RTC events in {ms} ms (16 Hz: {} ms expected), {calls} hypercalls meanwhile",
        u64::from(EVENTS) * 1000 / 16
    ));
    got
}

fn teardown(pirq: u32, port: u32) {
    check_eq(
        "unmap_pirq while bound (forces the unbind)",
        physdev::unmap_pirq(DOMID_SELF, pirq as i32),
        Ok(0),
    );
    check_eq(
        "  the port stays a pirq port",
        evtchn::status(port),
        Ok((Status::Pirq(pirq), 0)),
    );
    check_eq(
        "  unmap_pirq again",
        physdev::unmap_pirq(DOMID_SELF, pirq as i32),
        Err(Errno::EINVAL),
    );
    check_eq(
        "  map_pirq(GSI 8): busy until the port closes",
        physdev::map_gsi(DOMID_SELF, RTC_GSI, -1),
        Err(Errno::EBUSY),
    );
    check_eq("  eoi(pirq)", physdev::eoi(pirq), Ok(0));
    check_eq("close(pirq port)", evtchn::close(port), Ok(0));
    check_eq(
        "status after close",
        evtchn::status(port),
        Ok((Status::Closed, 0)),
    );
    check_eq(
        "unmap_pirq after close",
        physdev::unmap_pirq(DOMID_SELF, pirq as i32),
        Err(Errno::EINVAL),
    );
    check_eq(
        "bind_pirq after unmap",
        physdev::bind_pirq(pirq, 0),
        Err(Errno::EPERM),
    );
    check_eq("eoi after unmap", physdev::eoi(pirq), Err(Errno::EINVAL));
    check_eq(
        "map GSI 8 to pirq 8 after the unmap: access revoked",
        physdev::map_gsi(DOMID_SELF, RTC_GSI, 8),
        Err(Errno::EPERM),
    );
}

/// GSI 4, the serial port the hypervisor drives: mapped, but not bound.
fn serial_gsi() {
    let p = match physdev::map_gsi(DOMID_SELF, 4, -1) {
        Ok(p) => p,
        Err(e) => {
            check_eq("map_pirq(GSI 4)", Err::<i32, _>(e), Ok(16));
            return;
        }
    };
    check_eq("map_pirq(GSI 4): the first free pirq again", p, 16);
    check_eq(
        "bind_pirq(GSI 4's pirq): in use by the hypervisor",
        physdev::bind_pirq(p as u32, 0),
        Err(Errno::EBUSY),
    );
    check_eq(
        "unmap_pirq(GSI 4's pirq)",
        physdev::unmap_pirq(DOMID_SELF, p),
        Ok(0),
    );
}
