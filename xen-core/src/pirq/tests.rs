//! Host tests of the PIRQ operations through the hypercall table and interrupt transactions,
//! with the answers Xen 4.17 gave the `pirq` test guest.

use super::*;
use crate::effect::{Effect, MmEffect};
use crate::evtchn::EvtchnEffect;
use crate::hypercall::testing::Harness;
use crate::request::{ExitKind, GuestRegs, Request};
use dom0_interface::event_channel::{EvtchnBindPirq, EvtchnClose, EVTCHNOP_BIND_PIRQ};
use dom0_interface::event_channel::{EVTCHNOP_CLOSE, EVTCHNOP_SEND};
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::physdev::*;
use dom0_interface::xen::{DOMID_IDLE, DOMID_SELF};

const BUF: u64 = 0x6000;
const EVTCHN_OP: u64 = 32;
const PHYSDEV_OP: u64 = 33;

/// q35's interrupt facts: 24 GSIs, IRQ 0 on GSI 2 (edge), the SCI on GSI 9 (level), the
/// serial port's GSI 4 the hypervisor's.
fn q35(h: &mut Harness) {
    let mut legacy = alloc::vec![0u8; 16];
    legacy[9] = 1;
    let cfg = PirqConfig {
        nr_gsis: 24,
        legacy,
        xen_gsis: alloc::vec![4],
    };
    let mut j = lockstep::Journal::new();
    j.begin(1_000_000);
    h.state.pirq_config.set(&mut j, cfg);
    lockstep::replica::forget(&mut h.state);
}

fn dom0() -> Harness {
    let mut h = Harness::dom0();
    q35(&mut h);
    h
}

fn call<T: GuestAbi>(h: &mut Harness, nr: u64, cmd: u32, arg: &T) -> (i64, Vec<Effect>, T) {
    h.mem.map(BUF, &arg.to_vec());
    let o = h.hypercall(nr, [u64::from(cmd), BUF, 0, 0, 0]);
    let b: Vec<u8> = (0..T::SIZE as u64)
        .map(|i| h.mem.bytes[&(BUF + i)])
        .collect();
    (o.ret, o.effects, T::read_from(&b).expect("reads back"))
}

fn map(h: &mut Harness, domid: u16, gsi: i32, pirq: i32) -> (i64, i32) {
    let m = PhysdevMapPirq {
        domid,
        r#type: MAP_PIRQ_TYPE_GSI,
        index: gsi,
        pirq,
        ..PhysdevMapPirq::default()
    };
    let (r, _, out) = call(h, PHYSDEV_OP, PHYSDEVOP_MAP_PIRQ, &m);
    (r, out.pirq)
}

fn unmap(h: &mut Harness, pirq: i32) -> i64 {
    let u = PhysdevUnmapPirq {
        domid: DOMID_SELF,
        pirq,
    };
    call(h, PHYSDEV_OP, PHYSDEVOP_UNMAP_PIRQ, &u).0
}

fn bind(h: &mut Harness, pirq: u32) -> (i64, Vec<Effect>, u32) {
    let b = EvtchnBindPirq {
        pirq,
        flags: 0,
        port: 0,
    };
    let (r, e, out) = call(h, EVTCHN_OP, EVTCHNOP_BIND_PIRQ, &b);
    (r, e, out.port)
}

fn eoi(h: &mut Harness, pirq: u32) -> (i64, Vec<Effect>) {
    let (r, e, _) = call(h, PHYSDEV_OP, PHYSDEVOP_EOI, &PhysdevEoi { irq: pirq });
    (r, e)
}

fn setup_gsi(h: &mut Harness, gsi: i32, level: u8, low: u8) -> (i64, Vec<Effect>) {
    let g = PhysdevSetupGsi {
        gsi,
        triggering: level,
        polarity: low,
    };
    let (r, e, _) = call(h, PHYSDEV_OP, PHYSDEVOP_SETUP_GSI, &g);
    (r, e)
}

fn interrupt(h: &mut Harness, gsi: u32) -> Vec<Effect> {
    let req = Request::exit(
        ExitKind::Interrupt,
        DOMID_IDLE,
        1,
        GuestRegs::default(),
        gsi_vector(gsi),
        0,
        0,
    );
    h.run(req).effects
}

fn gsi_effects(e: &[Effect]) -> Vec<GsiEffect> {
    e.iter()
        .filter_map(|x| match x {
            Effect::Gsi(g) => Some(*g),
            _ => None,
        })
        .collect()
}

fn raised(e: &[Effect]) -> Vec<u32> {
    e.iter()
        .filter_map(|x| match x {
            Effect::Evtchn(EvtchnEffect::Set { port, .. }) => Some(*port),
            _ => None,
        })
        .collect()
}

#[test]
fn vectors_and_gsis_round_trip() {
    for g in [0, 8, MAX_GSIS - 1] {
        assert_eq!(vector_gsi(gsi_vector(g)), Some(g));
    }
    assert_eq!(vector_gsi(GSI_VECTOR_BASE - 1), None);
    assert_eq!(vector_gsi(gsi_vector(MAX_GSIS)), None);
    assert!(
        gsi_vector(MAX_GSIS - 1) < 0xf0,
        "below the local APIC's vectors"
    );
}

#[test]
fn an_edge_gsi_mapped_bound_and_interrupting() {
    let mut h = dom0();
    assert_eq!(
        map(&mut h, DOMID_SELF, 8, -1),
        (0, 16),
        "first free above 15"
    );
    assert_eq!(map(&mut h, DOMID_SELF, 8, -1), (0, 16), "the same again");
    assert_eq!(
        map(&mut h, DOMID_SELF, 8, 30),
        (-17, 30),
        "another pirq: -EEXIST"
    );
    assert_eq!(
        map(&mut h, DOMID_SELF, 9, 16),
        (0, 16),
        "a taken pirq: 0, nothing mapped"
    );
    assert_eq!(pirq_to_irq(&h.state, 0, 16), 8);
    assert_eq!(irq_to_pirq(&h.state, 0, 9), 0);
    let e = interrupt(&mut h, 8);
    assert!(raised(&e).is_empty(), "not bound: nothing raised");
    assert!(
        gsi_effects(&e).iter().all(|g| !g.unmasked),
        "the pin masked"
    );

    let (r, e, port) = bind(&mut h, 16);
    assert_eq!(r, 0);
    assert_eq!(
        gsi_effects(&e),
        [GsiEffect {
            gsi: 8,
            level: false,
            active_low: false,
            unmasked: true
        }],
        "the pin is unmasked at bind"
    );
    assert_eq!(bind(&mut h, 16).0, -17, "twice: -EEXIST");
    let e = interrupt(&mut h, 8);
    assert_eq!(raised(&e), [port]);
    assert!(gsi_effects(&e).is_empty(), "an edge pin stays unmasked");
    let (r, e) = eoi(&mut h, 16);
    assert_eq!(r, 0);
    assert!(gsi_effects(&e).is_empty(), "nothing in flight");
    let (r, _, _) = call(&mut h, EVTCHN_OP, EVTCHNOP_SEND, &EvtchnClose { port });
    assert_eq!(r, -22, "send on a pirq port");

    let (r, e, _) = call(&mut h, EVTCHN_OP, EVTCHNOP_CLOSE, &EvtchnClose { port });
    assert_eq!(r, 0);
    assert!(
        !gsi_effects(&e)[0].unmasked,
        "masked when the last guest unbinds"
    );
    assert_eq!(unmap(&mut h, 16), 0);
    assert_eq!(unmap(&mut h, 16), -22, "not mapped");
    assert_eq!(
        map(&mut h, DOMID_SELF, 8, -1).0,
        -1,
        "access revoked by the unmap"
    );
    assert!(h.state.pirqs.is_empty());
}

#[test]
fn a_level_gsi_stays_masked_until_the_eoi() {
    let mut h = dom0();
    assert_eq!(setup_gsi(&mut h, 10, 1, 1).0, 0);
    assert_eq!(setup_gsi(&mut h, 10, 1, 1).0, -17, "pin already programmed");
    assert_eq!(map(&mut h, DOMID_SELF, 10, -1), (0, 16));
    let mut j = lockstep::Journal::new();
    j.begin(2_000_000);
    let m = EoiMap {
        mfn: 0x123,
        auto_unmask: false,
    };
    h.state.eoi_maps.insert(&mut j, 0, m);
    lockstep::replica::forget(&mut h.state);
    let (_, e, port) = bind(&mut h, 16);
    let on = GsiEffect {
        gsi: 10,
        level: true,
        active_low: true,
        unmasked: true,
    };
    assert_eq!(gsi_effects(&e), [on]);
    let bit = Effect::Mm(MmEffect::AtomicBits {
        maddr: 0x123000,
        set: 1 << 16,
        clear: 0,
    });
    assert!(
        e.contains(&bit),
        "bound to a level pin, it needs EOIs: {e:?}"
    );

    let e = interrupt(&mut h, 10);
    assert_eq!(raised(&e), [port]);
    assert_eq!(
        gsi_effects(&e),
        [GsiEffect {
            unmasked: false,
            ..on
        }]
    );
    let e = interrupt(&mut h, 10);
    assert_eq!(raised(&e), [port], "raised again, still one in flight");
    assert_eq!(h.state.gsis.get(&10).map(|g| g.in_flight), Some(1));

    let (r, e) = eoi(&mut h, 16);
    assert_eq!(r, 0);
    assert_eq!(gsi_effects(&e), [on], "unmasked by the EOI");
    assert!(
        !e.iter().any(|x| matches!(x, Effect::Mm(_))),
        "the bitmap bit stays set"
    );
    assert!(
        gsi_effects(&eoi(&mut h, 16).1).is_empty(),
        "a second EOI: nothing"
    );
}

#[test]
fn unmapping_a_bound_pirq_forces_the_unbind() {
    let mut h = dom0();
    map(&mut h, DOMID_SELF, 8, -1);
    let (_, _, port) = bind(&mut h, 16);
    assert_eq!(unmap(&mut h, 16), 0);
    assert_eq!(pirq_to_irq(&h.state, 0, 16), -8);
    assert!(h.state.evtchns.get(&(0, port)).is_some(), "the port stays");
    assert!(raised(&interrupt(&mut h, 8)).is_empty());
    assert_eq!(map(&mut h, DOMID_SELF, 8, -1).0, -16, "busy until closed");
    assert_eq!(bind(&mut h, 16).0, -1);
    assert_eq!(eoi(&mut h, 16).0, 0);
    let (r, _, _) = call(&mut h, EVTCHN_OP, EVTCHNOP_CLOSE, &EvtchnClose { port });
    assert_eq!(r, 0);
    assert!(h.state.pirqs.is_empty());
    assert_eq!(eoi(&mut h, 16).0, -22);
}

#[test]
fn errors_as_xen_answers_them() {
    let mut h = dom0();
    assert_eq!(map(&mut h, DOMID_SELF, -1, -1).0, -22);
    assert_eq!(map(&mut h, DOMID_SELF, 24, -1).0, -22);
    assert_eq!(map(&mut h, DOMID_SELF, 0, -1).0, -1, "no access to IRQ 0");
    assert_eq!(map(&mut h, DOMID_SELF, 9, 5000).0, -22);
    assert_eq!(map(&mut h, 7, 9, -1).0, -3);
    let m = PhysdevMapPirq {
        domid: DOMID_SELF,
        r#type: 7,
        index: 9,
        pirq: -1,
        ..PhysdevMapPirq::default()
    };
    assert_eq!(call(&mut h, PHYSDEV_OP, PHYSDEVOP_MAP_PIRQ, &m).0, -22);
    assert_eq!(setup_gsi(&mut h, -1, 0, 0).0, -22);
    assert_eq!(setup_gsi(&mut h, 4, 0, 0).0, -17, "the hypervisor's pin");
    assert_eq!(bind(&mut h, 40).0, -1, "unmapped");
    assert_eq!(bind(&mut h, 5000).0, -22);
    assert_eq!(eoi(&mut h, 40).0, -22);
    assert_eq!(unmap(&mut h, 40), -22);
    assert_eq!(map(&mut h, DOMID_SELF, 4, -1), (0, 16));
    assert_eq!(bind(&mut h, 16).0, -16, "in use by the hypervisor");

    let (r, _, v) = call(
        &mut h,
        PHYSDEV_OP,
        PHYSDEVOP_ALLOC_IRQ_VECTOR,
        &PhysdevIrq { irq: 9, vector: 0 },
    );
    assert_eq!(
        (r, v.vector),
        (0, 9),
        "alloc_irq_vector: the IRQ as the vector"
    );

    let mut u = Harness::domu(3);
    q35(&mut u);
    let (r, _, _) = call(
        &mut u,
        PHYSDEV_OP,
        PHYSDEVOP_ALLOC_IRQ_VECTOR,
        &PhysdevIrq { irq: 9, vector: 0 },
    );
    assert_eq!(r, -1);
    assert_eq!(map(&mut u, DOMID_SELF, 8, -1).0, -1);
    assert_eq!(unmap(&mut u, 16), -1);
    assert_eq!(setup_gsi(&mut u, 8, 0, 0).0, -1);
    assert_eq!(bind(&mut u, 16).0, -1);
}
