//! Host tests of a destroyed domain whose frames another domain still maps: it stays, dying,
//! as Xen keeps it (`tot_pages` the frames held, its id taken) until the last mapping goes.

use super::fixture::{audit, call, freed, map_domu5_frame, with_domu5, VA_BASE};
use super::pt::{P, RW};
use crate::effect::Effect;
use crate::hypercall::testing::Harness;
use dom0_interface::domctl::*;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::*;

const OP: u64 = 0x1000;
const ESRCH: i64 = -3;
const EEXIST: i64 = -17;

fn domctl(h: &mut Harness, op: &XenDomctl) -> (i64, XenDomctl, alloc::vec::Vec<Effect>) {
    h.mem.map(OP, &op.to_vec());
    let r = call(h, HYPERVISOR_DOMCTL, [OP, 0, 0, 0, 0]);
    let mut b = [0u8; XenDomctl::SIZE];
    for (i, x) in b.iter_mut().enumerate() {
        *x = h.mem.bytes[&(OP + i as u64)];
    }
    (r.ret, XenDomctl::read_from(&b).unwrap(), r.effects)
}

fn info(h: &mut Harness, dom: u16) -> Result<(u32, u64), i64> {
    match domctl(h, &XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, dom)) {
        (0, out, _) => {
            let i: XenDomctlGetdomaininfo = out.payload().unwrap();
            Ok((i.flags, i.tot_pages))
        }
        (e, _, _) => Err(e),
    }
}

#[test]
fn a_destroyed_domain_stays_dying_while_dom0_maps_its_frame() {
    let mut h = with_domu5(true);
    let theirs = 0x400 + 20;
    assert_eq!(map_domu5_frame(&mut h, 40, theirs, P | RW), 0);
    let (r, _, effects) = domctl(&mut h, &XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, 5));
    assert_eq!(r, 0);
    let gone = freed(&effects);
    assert!(!gone.is_empty() && !gone.contains(&theirs));
    // Xen 4.17 answers getdomaininfo for it: dying, the one page held, no vCPU online.
    assert_eq!(
        info(&mut h, 5),
        Ok((XEN_DOMINF_DYING | 0xffff << XEN_DOMINF_SHUTDOWNSHIFT, 1))
    );
    // Its id is taken: createdomain asking for it is refused.
    let mut create = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 5);
    create
        .set_payload(&XenDomctlCreatedomain {
            max_vcpus: 1,
            max_evtchn_port: 1023,
            max_grant_frames: 32,
            max_maptrack_frames: 1024,
            grant_opts: 1,
            ..XenDomctlCreatedomain::default()
        })
        .unwrap();
    assert_eq!(domctl(&mut h, &create).0, EEXIST);
    // Destroying it again succeeds and frees nothing more.
    let (r, _, effects) = domctl(&mut h, &XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, 5));
    assert_eq!((r, freed(&effects)), (0, alloc::vec![]));
    assert_eq!(info(&mut h, 5).map(|i| i.1), Ok(1));
    audit(&h).unwrap();
    // dom0's last mapping goes: so does the frame, and the domain with it.
    let r = call(
        &mut h,
        HYPERVISOR_UPDATE_VA_MAPPING,
        [VA_BASE + 40 * 4096, 0, 0, 0, 0],
    );
    assert_eq!((r.ret, freed(&r.effects)), (0, alloc::vec![theirs]));
    assert_eq!(info(&mut h, 5), Err(ESRCH));
    assert_eq!(
        domctl(&mut h, &XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, 5)).0,
        ESRCH
    );
    assert!(h.state.frames.iter().all(|(_, p)| p.owner != 5));
    audit(&h).unwrap();
}

#[test]
fn a_destroyed_domain_nobody_maps_goes_at_once() {
    let mut h = with_domu5(true);
    let (r, _, _) = domctl(&mut h, &XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, 5));
    assert_eq!(r, 0);
    assert_eq!(info(&mut h, 5), Err(ESRCH));
    assert!(h.state.frames.iter().all(|(_, p)| p.owner != 5));
}
