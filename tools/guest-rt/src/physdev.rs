//! `physdev_op` (`public/physdev.h`) for physical interrupts: map/unmap a GSI to a PIRQ,
//! set a GSI's signalling up, EOI a PIRQ, register the PIRQ EOI bitmap; and
//! `EVTCHNOP_bind_pirq` (`public/event_channel.h`), which binds a PIRQ to an event channel.

use crate::errno::{Errno, XenResult};
use crate::hypercall::{self, EVENT_CHANNEL_OP, PHYSDEV_OP};
use dom0_interface::event_channel::{EvtchnBindPirq, EVTCHNOP_BIND_PIRQ};
use dom0_interface::physdev::{
    PhysdevEoi, PhysdevIrq, PhysdevPciDevice, PhysdevPciDeviceAdd, PhysdevPciMmcfgReserved,
    PhysdevSetupGsi, PhysdevUnmapPirq, PHYSDEVOP_ALLOC_IRQ_VECTOR, PHYSDEVOP_PCI_DEVICE_ADD,
    PHYSDEVOP_PCI_DEVICE_REMOVE, PHYSDEVOP_PCI_MMCFG_RESERVED,
};
pub use dom0_interface::physdev::{
    PhysdevMapPirq, MAP_PIRQ_TYPE_GSI, MAP_PIRQ_TYPE_MSI, PHYSDEVOP_EOI, PHYSDEVOP_MAP_PIRQ,
    PHYSDEVOP_PIRQ_EOI_GMFN_V1, PHYSDEVOP_PIRQ_EOI_GMFN_V2, PHYSDEVOP_SETUP_GSI,
    PHYSDEVOP_UNMAP_PIRQ,
};

/// Issues `physdev_op(cmd, arg)` on a plain-old-data argument struct.
fn op<T>(cmd: u32, arg: &mut T) -> XenResult {
    // SAFETY: every caller passes the exact `struct physdev_*` for `cmd`, which Xen reads and
    // writes within its size; `arg` is an exclusive reference to it.
    unsafe { hypercall::call(PHYSDEV_OP, [cmd.into(), arg as *mut T as u64, 0, 0, 0]) }
}

/// `PHYSDEVOP_map_pirq` with the whole struct (for the error paths): the result and the
/// struct as Xen left it.
pub fn map_pirq_raw(mut m: PhysdevMapPirq) -> (XenResult, PhysdevMapPirq) {
    let r = op(PHYSDEVOP_MAP_PIRQ, &mut m);
    (r, m)
}

/// `PHYSDEVOP_map_pirq` of GSI `gsi` for domain `domid`, asking for `pirq` (-1: any): the
/// PIRQ Xen chose.
pub fn map_gsi(domid: u16, gsi: i32, pirq: i32) -> Result<i32, Errno> {
    let (r, m) = map_pirq_raw(PhysdevMapPirq {
        domid,
        r#type: MAP_PIRQ_TYPE_GSI,
        index: gsi,
        pirq,
        ..PhysdevMapPirq::default()
    });
    r.map(|_| m.pirq)
}

/// `PHYSDEVOP_unmap_pirq` of `pirq` in domain `domid`.
pub fn unmap_pirq(domid: u16, pirq: i32) -> XenResult {
    op(PHYSDEVOP_UNMAP_PIRQ, &mut PhysdevUnmapPirq { domid, pirq })
}

/// `PHYSDEVOP_setup_gsi`: `gsi`'s trigger mode (1 level) and polarity (1 active low).
pub fn setup_gsi(gsi: i32, triggering: u8, polarity: u8) -> XenResult {
    op(
        PHYSDEVOP_SETUP_GSI,
        &mut PhysdevSetupGsi {
            gsi,
            triggering,
            polarity,
        },
    )
}

/// `PHYSDEVOP_alloc_irq_vector` for `irq`: the vector Xen answers.
pub fn alloc_irq_vector(irq: u32) -> Result<u32, Errno> {
    let mut i = PhysdevIrq {
        irq,
        vector: 0xdead,
    };
    op(PHYSDEVOP_ALLOC_IRQ_VECTOR, &mut i)?;
    Ok(i.vector)
}

/// `PHYSDEVOP_pci_device_add` of device `seg:bus:devfn` with `flags` (`XEN_PCI_DEV_*`, no
/// proximity domain).
pub fn pci_device_add(seg: u16, bus: u8, devfn: u8, flags: u32) -> XenResult {
    let mut a = PhysdevPciDeviceAdd {
        seg,
        bus,
        devfn,
        flags,
        ..PhysdevPciDeviceAdd::default()
    };
    op(PHYSDEVOP_PCI_DEVICE_ADD, &mut a)
}

/// `PHYSDEVOP_pci_mmcfg_reserved` of the ECAM area at `address` for `segment`'s buses
/// `start..=end` with `flags` (`XEN_PCI_MMCFG_RESERVED`).
pub fn pci_mmcfg_reserved(address: u64, segment: u16, start: u8, end: u8, flags: u32) -> XenResult {
    op(
        PHYSDEVOP_PCI_MMCFG_RESERVED,
        &mut PhysdevPciMmcfgReserved {
            address,
            segment,
            start_bus: start,
            end_bus: end,
            flags,
        },
    )
}

/// `PHYSDEVOP_pci_device_remove` of device `seg:bus:devfn`.
pub fn pci_device_remove(seg: u16, bus: u8, devfn: u8) -> XenResult {
    op(
        PHYSDEVOP_PCI_DEVICE_REMOVE,
        &mut PhysdevPciDevice { seg, bus, devfn },
    )
}

/// `PHYSDEVOP_eoi` of `pirq`.
pub fn eoi(pirq: u32) -> XenResult {
    op(PHYSDEVOP_EOI, &mut PhysdevEoi { irq: pirq })
}

/// `PHYSDEVOP_pirq_eoi_gmfn_v1`/`_v2` (`cmd`): registers frame `gmfn` as the PIRQ EOI bitmap.
pub fn pirq_eoi_gmfn(cmd: u32, gmfn: u64) -> XenResult {
    let mut g = gmfn;
    op(cmd, &mut g)
}

/// `EVTCHNOP_bind_pirq`: a new port for `pirq` (`flags`: `BIND_PIRQ__WILL_SHARE`).
pub fn bind_pirq(pirq: u32, flags: u32) -> Result<u32, Errno> {
    let mut b = EvtchnBindPirq {
        pirq,
        flags,
        port: 0,
    };
    // SAFETY: Xen reads and writes the 12-byte `struct evtchn_bind_pirq` in `b`.
    let r = unsafe {
        hypercall::call(
            EVENT_CHANNEL_OP,
            [EVTCHNOP_BIND_PIRQ.into(), &mut b as *mut _ as u64, 0, 0, 0],
        )
    };
    r.map(|_| b.port)
}
