//! `physdev_op` (33) as Xen 4.17 answers it: set_iopl, set_iobitmap, apic_read, and the
//! physical IRQs of dom0 — map/unmap a GSI to a PIRQ, setup_gsi, irq_status_query, eoi and
//! the PIRQ EOI bitmap ([`crate::pirq`]); PCI devices dom0 reports. MSI mappings answer
//! -ENODEV, Xen 4.17's answer for a device it does not know: DualVisor maps no MSIs yet.

use crate::hv::{Ctx, HvResult, HvState};
use crate::pv::state;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::physdev::*;

/// `IOBMP_BYTES`: a full I/O bitmap (65536 ports).
pub const IOBMP_BYTES: u64 = 8192;

/// PIRQs of dom0 (`d0 has maximum 232 PIRQs` on the oracle: q35, 2 CPUs).
pub const DOM0_NR_PIRQS: u32 = 232;
/// PIRQs of another domain: the 24 GSIs plus Xen's default 32 extra.
pub const DOMU_NR_PIRQS: u32 = 24 + 32;

/// The number of PIRQs `dom` may use.
pub fn nr_pirqs(state: &HvState, dom: crate::effect::DomId) -> u32 {
    if crate::hypercall::is_privileged(state, dom) {
        DOM0_NR_PIRQS
    } else {
        DOMU_NR_PIRQS
    }
}

/// The most I/O APICs DualVisor looks for.
const MAX_IOAPICS: u32 = 8;

/// `PHYSDEVOP_apic_read` (dom0): a register of the I/O APIC at `apic_physbase`, read from
/// the hardware (`ioapic_guest_read`); -EINVAL for a base no I/O APIC has. As in Xen the
/// struct is copied back whatever the outcome.
fn apic_read(state: &HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    let mut raw = [0u8; PhysdevApic::SIZE];
    ctx.copy_from_guest(arg, &mut raw)?;
    let mut a = PhysdevApic::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
    if !crate::hypercall::is_privileged(state, ctx.dom()) {
        return Err(XenErrno::EPERM.into());
    }
    let mut index = None;
    for i in 0..MAX_IOAPICS {
        let base = ctx.value(crate::hv::value_kind::ioapic_base(i))?;
        if base == 0 {
            break;
        }
        if base == a.apic_physbase {
            index = Some(i);
            break;
        }
    }
    let ret = match index {
        Some(i) => {
            let v = ctx.value(crate::hv::value_kind::ioapic_read(i, a.reg))?;
            a.value = v as u32;
            Ok(0)
        }
        None => Err(XenErrno::EINVAL.into()),
    };
    ctx.copy_to_guest(arg, &a.to_vec())?;
    ret
}

/// Logs `what` and the device as Xen's `%pp` prints it (`0000:00:1f.2`).
fn log_sbdf(ctx: &mut Ctx<'_, '_, '_>, what: &str, (seg, bus, devfn): (u16, u8, u8)) {
    let line = alloc::format!(
        "{} {:04x}:{:02x}:{:02x}.{}",
        what,
        seg,
        bus,
        devfn >> 3,
        devfn & 7
    );
    ctx.emit(crate::effect::Effect::Log(line.into_bytes()));
}

/// `pci_mmcfg_reserved`: dom0 confirms (or not) that an MCFG area is reserved. An area the
/// MCFG has (same segment and buses) is accepted at the same address, -EIO at another; an
/// unknown one is -ENODEV.
fn mmcfg_reserved(
    state: &HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    r: &PhysdevPciMmcfgReserved,
) -> Result<(), XenErrno> {
    if r.flags & !XEN_PCI_MMCFG_RESERVED != 0 {
        return Err(XenErrno::EINVAL);
    }
    let area = state
        .config
        .get()
        .mcfg
        .iter()
        .find(|(_, seg, start, end)| {
            *seg == r.segment && *start == r.start_bus && *end == r.end_bus
        })
        .copied();
    match area {
        None => Err(XenErrno::ENODEV),
        Some((base, ..)) if base != r.address => {
            let line = alloc::format!(
                "Base address presented for segment {:04x} bus {:02x}-{:02x} ({:08x}) does not match previously obtained one ({:08x})",
                r.segment, r.start_bus, r.end_bus, r.address, base
            );
            ctx.emit(crate::effect::Effect::Log(line.into_bytes()));
            Err(XenErrno::EIO)
        }
        Some(_) => Ok(()),
    }
}

/// `PHYSDEVOP_pci_device_add` (`pci_add_device`): dom0 reports a PCI device; Xen records it
/// (no IOMMU here, nothing else to set up) and answers 0, for a device it knows already too.
fn pci_device_add(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    let mut raw = [0u8; PhysdevPciDeviceAdd::SIZE];
    ctx.copy_from_guest(arg, &mut raw)?;
    let a = PhysdevPciDeviceAdd::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
    if a.flags & XEN_PCI_DEV_PXM != 0 {
        let mut pxm = [0u8; 4];
        ctx.copy_from_guest(arg.wrapping_add(PhysdevPciDeviceAdd::SIZE as u64), &mut pxm)?;
    }
    if !crate::hypercall::is_privileged(state, ctx.dom()) {
        return Err(XenErrno::EPERM.into());
    }
    let key = (a.seg, a.bus, a.devfn);
    state.pci_devs.insert(ctx.journal(), key, a.flags);
    let kind = if a.flags & XEN_PCI_DEV_VIRTFN != 0 {
        "virtual function"
    } else if a.flags & XEN_PCI_DEV_EXTFN != 0 {
        "extended function"
    } else {
        "device"
    };
    log_sbdf(ctx, &alloc::format!("PCI add {kind}"), key);
    Ok(0)
}

/// `PHYSDEVOP_map_pirq`: as in Xen the struct is copied back whatever the outcome, with
/// the PIRQ on success.
fn map_pirq(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>, arg: u64) -> HvResult {
    let mut raw = [0u8; PhysdevMapPirq::SIZE];
    ctx.copy_from_guest(arg, &mut raw)?;
    let mut m = PhysdevMapPirq::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
    let ret = match m.r#type {
        MAP_PIRQ_TYPE_GSI => {
            crate::pirq::ops::map_gsi(state, ctx, m.domid, m.index, m.pirq).map(|p| m.pirq = p)
        }
        MAP_PIRQ_TYPE_MSI | MAP_PIRQ_TYPE_MSI_SEG | MAP_PIRQ_TYPE_MULTI_MSI => {
            crate::pirq::ops::check_target(state, ctx.dom(), m.domid).and(Err(XenErrno::ENODEV))
        }
        _ => crate::pirq::ops::check_target(state, ctx.dom(), m.domid).and(Err(XenErrno::EINVAL)),
    };
    ctx.copy_to_guest(arg, &m.to_vec())?;
    ret?;
    Ok(0)
}

/// `physdev_op(cmd, arg)`.
pub fn physdev_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let [cmd, arg, ..] = ctx.req.args;
    match cmd as u32 {
        PHYSDEVOP_SET_IOPL => {
            let mut raw = [0u8; PhysdevSetIopl::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let s = PhysdevSetIopl::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            if s.iopl > 3 {
                return Err(XenErrno::EINVAL.into());
            }
            let k = state::key(ctx);
            let j = ctx.journal();
            state::update(state, j, k, |p| p.iopl = u64::from(s.iopl) << 12);
            Ok(0)
        }
        PHYSDEVOP_SET_IOBITMAP => {
            let mut raw = [0u8; PhysdevSetIobitmap::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let s = PhysdevSetIobitmap::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            // guest_handle_okay(bitmap, IOBMP_BYTES): `__addr_ok` of the start (below 2^47 or
            // above the hypervisor's range); the bitmap itself is read at each access.
            let handle_ok = state::addr_ok(s.bitmap) && state::is_canonical(s.bitmap);
            if !handle_ok || s.nr_ports > 65536 {
                return Err(XenErrno::EINVAL.into());
            }
            let k = state::key(ctx);
            let j = ctx.journal();
            state::update(state, j, k, |p| {
                p.iobmp = s.bitmap;
                p.iobmp_limit = s.nr_ports;
            });
            Ok(0)
        }
        PHYSDEVOP_APIC_READ => apic_read(state, ctx, arg),
        PHYSDEVOP_ALLOC_IRQ_VECTOR => {
            // A dummy in Xen 4.17: the hypervisor owns the vectors, and answers the IRQ as
            // the vector (dom0 only, XSM's apic check).
            let mut raw = [0u8; PhysdevIrq::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let mut i = PhysdevIrq::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            if !crate::hypercall::is_privileged(state, ctx.dom()) {
                return Err(XenErrno::EPERM.into());
            }
            i.vector = i.irq;
            ctx.copy_to_guest(arg, &i.to_vec())?;
            Ok(0)
        }
        PHYSDEVOP_IRQ_STATUS_QUERY => {
            let mut raw = [0u8; PhysdevIrqStatusQuery::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let mut q = PhysdevIrqStatusQuery::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            if q.irq >= nr_pirqs(state, ctx.dom()) {
                return Err(XenErrno::EINVAL.into());
            }
            // Xen asks every PV domain to EOI (edge and MSI sources may need masking too).
            q.flags = XENIRQSTAT_NEEDS_EOI;
            if crate::pirq::is_shared(state, ctx.dom(), q.irq) {
                q.flags |= XENIRQSTAT_SHARED;
            }
            ctx.copy_to_guest(arg, &q.to_vec())?;
            Ok(0)
        }
        PHYSDEVOP_EOI => {
            let mut raw = [0u8; PhysdevEoi::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let e = PhysdevEoi::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            crate::pirq::ops::eoi(state, ctx, e.irq)?;
            Ok(0)
        }
        PHYSDEVOP_MAP_PIRQ => map_pirq(state, ctx, arg),
        PHYSDEVOP_PCI_DEVICE_ADD => pci_device_add(state, ctx, arg),
        PHYSDEVOP_PCI_MMCFG_RESERVED => {
            // xsm_resource_setup_misc (privileged) comes before the copy.
            if !crate::hypercall::is_privileged(state, ctx.dom()) {
                return Err(XenErrno::EPERM.into());
            }
            let mut raw = [0u8; PhysdevPciMmcfgReserved::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let r = PhysdevPciMmcfgReserved::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            mmcfg_reserved(state, ctx, &r)?;
            Ok(0)
        }
        PHYSDEVOP_PCI_DEVICE_REMOVE => {
            let mut raw = [0u8; PhysdevPciDevice::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let d = PhysdevPciDevice::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            if !crate::hypercall::is_privileged(state, ctx.dom()) {
                return Err(XenErrno::EPERM.into());
            }
            let key = (d.seg, d.bus, d.devfn);
            if state.pci_devs.remove(ctx.journal(), &key).is_none() {
                return Err(XenErrno::ENODEV.into());
            }
            log_sbdf(ctx, "PCI remove device", key);
            Ok(0)
        }
        PHYSDEVOP_UNMAP_PIRQ => {
            let mut raw = [0u8; PhysdevUnmapPirq::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let u = PhysdevUnmapPirq::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            crate::pirq::ops::unmap(state, ctx, u.domid, u.pirq)?;
            Ok(0)
        }
        PHYSDEVOP_SETUP_GSI => {
            if !crate::hypercall::is_privileged(state, ctx.dom()) {
                return Err(XenErrno::EPERM.into());
            }
            let mut raw = [0u8; PhysdevSetupGsi::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let g = PhysdevSetupGsi::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            Ok(crate::pirq::ops::setup_gsi(
                state,
                ctx,
                g.gsi,
                g.triggering,
                g.polarity,
            )?)
        }
        c @ (PHYSDEVOP_PIRQ_EOI_GMFN_V1 | PHYSDEVOP_PIRQ_EOI_GMFN_V2) => {
            let mut raw = [0u8; PhysdevPirqEoiGmfn::SIZE];
            ctx.copy_from_guest(arg, &mut raw)?;
            let g = PhysdevPirqEoiGmfn::read_from(&raw).map_err(|_| XenErrno::EFAULT)?;
            crate::pirq::ops::register_eoi_map(
                state,
                ctx,
                g.gmfn,
                c == PHYSDEVOP_PIRQ_EOI_GMFN_V1,
            )?;
            Ok(0)
        }
        _ => super::unknown_subop(state, ctx, "physdev_op", cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;
    use super::*;
    use crate::hv::value_kind;

    const BUF: u64 = 0x5000;

    fn apic(h: &mut Harness, base: u64, reg: u32) -> (i64, u32) {
        let a = PhysdevApic {
            apic_physbase: base,
            reg,
            value: 0xdead,
        };
        h.mem.map(BUF, &a.to_vec());
        let ret = h
            .hypercall(33, [u64::from(PHYSDEVOP_APIC_READ), BUF, 0, 0, 0])
            .ret;
        let b: alloc::vec::Vec<u8> = (0..PhysdevApic::SIZE as u64)
            .map(|i| h.mem.bytes[&(BUF + i)])
            .collect();
        (ret, PhysdevApic::read_from(&b).unwrap().value)
    }

    /// One I/O APIC at 0xfec00000 whose version register reads as QEMU's (24 pins, 0x20).
    fn one_ioapic(h: &mut Harness) {
        h.mem
            .values
            .insert(value_kind::ioapic_base(0), [0xfec0_0000].into());
        h.mem
            .values
            .insert(value_kind::ioapic_read(0, 1), [0x0017_0020].into());
    }

    #[test]
    fn apic_read_reads_the_ioapic_at_that_base() {
        let mut h = Harness::dom0();
        one_ioapic(&mut h);
        assert_eq!(apic(&mut h, 0xfec0_0000, 1), (0, 0x0017_0020));
        one_ioapic(&mut h);
        assert_eq!(
            apic(&mut h, 0xfec0_1000, 1),
            (-22, 0xdead),
            "no I/O APIC there"
        );
        assert_eq!(
            h.hypercall(33, [u64::from(PHYSDEVOP_APIC_READ), 0, 0, 0, 0])
                .ret,
            -14
        );
        let mut u = Harness::domu(1);
        one_ioapic(&mut u);
        assert_eq!(apic(&mut u, 0xfec0_0000, 1).0, -1);
    }

    fn pci(h: &mut Harness, cmd: u32, bytes: &[u8]) -> i64 {
        h.mem.map(BUF, bytes);
        h.hypercall(33, [u64::from(cmd), BUF, 0, 0, 0]).ret
    }

    #[test]
    fn pci_devices_are_recorded_and_removed_once() {
        let add = PhysdevPciDeviceAdd {
            seg: 0,
            bus: 0,
            devfn: 0xfb,
            ..PhysdevPciDeviceAdd::default()
        }
        .to_vec();
        let dev = PhysdevPciDevice {
            seg: 0,
            bus: 0,
            devfn: 0xfb,
        }
        .to_vec();
        let mut h = Harness::dom0();
        assert_eq!(pci(&mut h, PHYSDEVOP_PCI_DEVICE_ADD, &add), 0);
        let o = h.hypercall(33, [u64::from(PHYSDEVOP_PCI_DEVICE_ADD), BUF, 0, 0, 0]);
        assert_eq!(o.ret, 0, "again");
        assert_eq!(o.logs, ["PCI add device 0000:00:1f.3"]);
        assert_eq!(pci(&mut h, PHYSDEVOP_PCI_DEVICE_REMOVE, &dev), 0);
        assert_eq!(pci(&mut h, PHYSDEVOP_PCI_DEVICE_REMOVE, &dev), -19);
        let pxm = PhysdevPciDeviceAdd {
            flags: XEN_PCI_DEV_PXM,
            ..PhysdevPciDeviceAdd::read_from(&add).unwrap()
        };
        h.mem.bytes.clear();
        assert_eq!(
            pci(&mut h, PHYSDEVOP_PCI_DEVICE_ADD, &pxm.to_vec()),
            -14,
            "no optarr[0]"
        );
        let mut u = Harness::domu(2);
        assert_eq!(pci(&mut u, PHYSDEVOP_PCI_DEVICE_ADD, &add), -1);
        assert_eq!(pci(&mut u, PHYSDEVOP_PCI_DEVICE_REMOVE, &dev), -1);
    }

    #[test]
    fn mmcfg_areas_are_checked_against_the_mcfg() {
        let mut h = Harness::dom0();
        let mut j = lockstep::Journal::new();
        j.begin(1_000_000);
        let cfg = crate::hv::HvConfig {
            mcfg: alloc::vec![(0xb000_0000, 0, 0, 0xff)],
            ..Default::default()
        };
        h.state.config.set(&mut j, cfg);
        lockstep::replica::forget(&mut h.state);
        let r = |address, segment, end_bus, flags| {
            PhysdevPciMmcfgReserved {
                address,
                segment,
                start_bus: 0,
                end_bus,
                flags,
            }
            .to_vec()
        };
        let cmd = PHYSDEVOP_PCI_MMCFG_RESERVED;
        assert_eq!(pci(&mut h, cmd, &r(0xb000_0000, 0, 0xff, 1)), 0);
        assert_eq!(pci(&mut h, cmd, &r(0xb000_0000, 0, 0xff, 0)), 0);
        assert_eq!(pci(&mut h, cmd, &r(0xc000_0000, 0, 0xff, 1)), -5);
        assert_eq!(pci(&mut h, cmd, &r(0xb000_0000, 0, 0x7f, 1)), -19);
        assert_eq!(pci(&mut h, cmd, &r(0xb000_0000, 1, 0xff, 1)), -19);
        assert_eq!(pci(&mut h, cmd, &r(0xb000_0000, 0, 0xff, 2)), -22);
        let mut u = Harness::domu(2);
        assert_eq!(pci(&mut u, cmd, &[]), -1, "refused before the copy");
    }
}
