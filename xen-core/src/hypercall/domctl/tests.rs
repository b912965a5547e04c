//! Host tests of domctl and sysctl through the real state machine: every sub-op's success and
//! refusal paths, and frame accounting against a model allocator (every frame comes back).

use crate::effect::{Effect, MmEffect};
use crate::hv::value_kind;
use crate::hypercall::testing::{Harness, Outcome};
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use dom0_interface::domctl::*;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::physdev::PHYSDEVOP_PIRQ_EOI_GMFN_V2;
use dom0_interface::sysctl::*;
use dom0_interface::xen::{HYPERVISOR_DOMCTL, HYPERVISOR_MEMORY_OP, HYPERVISOR_SYSCTL};

pub(super) const OP: u64 = 0x1000;
pub(super) const BUF: u64 = 0x4000;
const EXT: u64 = 0x8000;
const RES: u64 = 0x9000;

/// The harness plus a model of the host allocator.
pub(super) struct Host {
    pub(super) h: Harness,
    pub(super) free: BTreeSet<u64>,
}

impl Host {
    pub(super) fn new() -> Self {
        Self::with(Harness::dom0())
    }

    fn with(h: Harness) -> Self {
        Host {
            h,
            free: (0x10_000..0x10_100).collect(),
        }
    }

    /// Runs a hypercall with the allocator's frames offered through ALLOC_FRAME, then applies
    /// FramesAllocated / FreeFrames / unkept frames to the model.
    pub(super) fn call(&mut self, nr: u32, args: [u64; 5]) -> Outcome {
        let mut offered: Vec<u64> = self.free.iter().copied().take(32).collect();
        offered.push(crate::mm::NO_FRAME);
        self.h
            .mem
            .values
            .insert(value_kind::ALLOC_FRAME, offered.iter().copied().collect());
        self.h.mem.values.insert(
            value_kind::HOST_FREE_PAGES,
            [self.free.len() as u64].into_iter().collect(),
        );
        self.h
            .mem
            .values
            .insert(value_kind::HOST_TOTAL_PAGES, [0x100].into_iter().collect());
        self.h
            .mem
            .values
            .insert(value_kind::HOST_NR_CPUS, [3].into_iter().collect());
        self.h
            .mem
            .values
            .insert(value_kind::HOST_CPU_KHZ, [2_600_000].into_iter().collect());
        self.h
            .mem
            .values
            .insert(value_kind::HOST_PADDR_BITS, [40; 16].into_iter().collect());
        let left = self.h.mem.values[&value_kind::ALLOC_FRAME].len();
        let r = self.h.hypercall(u64::from(nr), args);
        let left_after = self
            .h
            .mem
            .values
            .get(&value_kind::ALLOC_FRAME)
            .map_or(0, |q| q.len());
        let taken = &offered[..left - left_after];
        assert!(
            left_after > 0 || offered.len() == 1,
            "the test allocator ran dry: offer more frames"
        );
        let mut kept: BTreeSet<u64> = BTreeSet::new();
        for e in &r.effects {
            match e {
                Effect::Mm(MmEffect::FramesAllocated { mfns, .. }) => kept.extend(mfns),
                Effect::Mm(MmEffect::FreeFrames(mfns)) => {
                    for m in mfns {
                        assert!(self.free.insert(*m), "frame {m:#x} freed twice");
                    }
                }
                _ => {}
            }
        }
        for m in taken {
            if kept.contains(m) {
                self.free.remove(m);
            }
        }
        r
    }

    pub(super) fn domctl(&mut self, op: &XenDomctl) -> (i64, XenDomctl) {
        self.h.mem.map(OP, &op.to_vec());
        let r = self.call(HYPERVISOR_DOMCTL, [OP, 0, 0, 0, 0]);
        let mut b = [0u8; XenDomctl::SIZE];
        for (i, x) in b.iter_mut().enumerate() {
            *x = self.h.mem.bytes[&(OP + i as u64)];
        }
        (r.ret, XenDomctl::read_from(&b).unwrap())
    }

    fn sysctl(&mut self, op: &XenSysctl) -> (i64, XenSysctl) {
        self.h.mem.map(OP, &op.to_vec());
        let r = self.call(HYPERVISOR_SYSCTL, [OP, 0, 0, 0, 0]);
        let mut b = [0u8; XenSysctl::SIZE];
        for (i, x) in b.iter_mut().enumerate() {
            *x = self.h.mem.bytes[&(OP + i as u64)];
        }
        (r.ret, XenSysctl::read_from(&b).unwrap())
    }

    pub(super) fn simple(&mut self, cmd: u32, dom: u16) -> i64 {
        self.domctl(&XenDomctl::new(cmd, dom)).0
    }

    pub(super) fn create_with(&mut self, dom: u16, c: XenDomctlCreatedomain) -> Result<u16, i64> {
        let mut op = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, dom);
        op.set_payload(&c).unwrap();
        match self.domctl(&op) {
            (0, out) => Ok(out.domain),
            (e, _) => Err(e),
        }
    }

    fn create(&mut self) -> u16 {
        self.create_with(0, cfg(2)).expect("createdomain")
    }

    fn info(&mut self, dom: u16) -> Result<XenDomctlGetdomaininfo, i64> {
        match self.domctl(&XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, dom)) {
            (0, out) => Ok(out.payload().unwrap()),
            (e, _) => Err(e),
        }
    }

    pub(super) fn max_mem(&mut self, dom: u16, kb: u64) -> i64 {
        let mut op = XenDomctl::new(XEN_DOMCTL_MAX_MEM, dom);
        op.set_payload(&XenDomctlMaxMem { max_memkb: kb }).unwrap();
        self.domctl(&op).0
    }

    pub(super) fn max_vcpus(&mut self, dom: u16, max: u32) -> i64 {
        let mut op = XenDomctl::new(XEN_DOMCTL_MAX_VCPUS, dom);
        op.set_payload(&XenDomctlMaxVcpus { max }).unwrap();
        self.domctl(&op).0
    }

    /// populate_physmap (cmd 6) or decrease_reservation (cmd 1) of `ext` on `dom`.
    pub(super) fn reservation(&mut self, cmd: u64, dom: u16, ext: &[u64]) -> (i64, Vec<u64>) {
        let mut r = [0u8; 40];
        r[..8].copy_from_slice(&EXT.to_le_bytes());
        r[8..16].copy_from_slice(&(ext.len() as u64).to_le_bytes());
        r[24..26].copy_from_slice(&dom.to_le_bytes());
        self.h.mem.map(RES, &r);
        let bytes: Vec<u8> = ext.iter().flat_map(|e| e.to_le_bytes()).collect();
        self.h.mem.map(EXT, &bytes);
        let ret = self.call(HYPERVISOR_MEMORY_OP, [cmd, RES, 0, 0, 0]).ret;
        let out = (0..ext.len() as u64)
            .map(|i| {
                let mut b = [0u8; 8];
                for (k, x) in b.iter_mut().enumerate() {
                    *x = self.h.mem.bytes[&(EXT + i * 8 + k as u64)];
                }
                u64::from_le_bytes(b)
            })
            .collect();
        (ret, out)
    }

    fn physinfo(&mut self) -> XenSysctlPhysinfo {
        let (r, out) = self.sysctl(&XenSysctl::new(XEN_SYSCTL_PHYSINFO));
        assert_eq!(r, 0);
        out.payload().unwrap()
    }
}

pub(super) fn cfg(max_vcpus: u32) -> XenDomctlCreatedomain {
    XenDomctlCreatedomain {
        handle: [7; 16],
        max_vcpus,
        max_evtchn_port: 1023,
        max_grant_frames: 32,
        max_maptrack_frames: 1024,
        grant_opts: 1,
        ..XenDomctlCreatedomain::default()
    }
}

const EPERM: i64 = -1;
const ESRCH: i64 = -3;
const ENOMEM: i64 = -12;
const EACCES: i64 = -13;
const EFAULT: i64 = -14;
const EEXIST: i64 = -17;
const EINVAL: i64 = -22;
const ENOSYS: i64 = -38;

#[test]
fn unprivileged_callers_get_eperm() {
    let mut h = Host::with(Harness::domu(3));
    assert_eq!(h.simple(XEN_DOMCTL_GETDOMAININFO, 3), EPERM);
    assert_eq!(h.simple(XEN_DOMCTL_PAUSEDOMAIN, 3), EPERM);
    assert_eq!(h.create_with(0, cfg(1)), Err(EPERM));
    assert_eq!(h.sysctl(&XenSysctl::new(XEN_SYSCTL_PHYSINFO)).0, EPERM);
    // Xen looks the domain up before asking XSM: a missing one is -ESRCH even for a domU.
    assert_eq!(h.simple(XEN_DOMCTL_PAUSEDOMAIN, 9), ESRCH);
    assert_eq!(h.h.state.domains.len(), 1);
}

#[test]
fn version_and_pointer_errors() {
    let mut h = Host::new();
    let mut op = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, 0);
    op.interface_version = 0x14;
    assert_eq!(h.domctl(&op).0, EACCES);
    let mut s = XenSysctl::new(XEN_SYSCTL_PHYSINFO);
    s.interface_version = 0x16;
    assert_eq!(h.sysctl(&s).0, EACCES);
    assert_eq!(
        h.call(HYPERVISOR_DOMCTL, [0xdead_0000, 0, 0, 0, 0]).ret,
        EFAULT
    );
    assert_eq!(
        h.call(HYPERVISOR_SYSCTL, [0xdead_0000, 0, 0, 0, 0]).ret,
        EFAULT
    );
    assert_eq!(h.sysctl(&XenSysctl::new(0x7777)).0, ENOSYS);
    assert_eq!(h.simple(0x7777, 0), ENOSYS);
}

#[test]
fn createdomain_uses_xens_rover_and_checks_the_config() {
    let mut h = Host::new();
    assert_eq!(h.create_with(0, cfg(0)), Err(EINVAL));
    assert_eq!(
        h.create_with(
            0,
            XenDomctlCreatedomain {
                flags: 1 << 20,
                ..cfg(1)
            }
        ),
        Err(EINVAL)
    );
    assert_eq!(
        h.create_with(
            0,
            XenDomctlCreatedomain {
                grant_opts: 0x31,
                ..cfg(1)
            }
        ),
        Err(EINVAL)
    );
    assert_eq!(
        h.create_with(
            0,
            XenDomctlCreatedomain {
                flags: XEN_DOMCTL_CDF_HVM,
                ..cfg(1)
            }
        ),
        Err(EINVAL)
    );
    // Four failed creates moved the rover to 4.
    let d = h.create();
    assert_eq!(d, 5);
    assert_eq!(h.create_with(d, cfg(1)), Err(EEXIST));
    assert_eq!(h.create_with(0, cfg(1)), Ok(6));
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, 5), 0);
    assert_eq!(h.create_with(0, cfg(1)), Ok(7));
    assert_eq!(h.create_with(5, cfg(1)), Ok(5));
    // An explicit id does not move the rover.
    assert_eq!(h.create_with(0, cfg(1)), Ok(8));
}

#[test]
fn createdomain_without_memory_is_enomem() {
    let mut h = Host::new();
    h.free.clear();
    assert_eq!(h.create_with(0, cfg(1)), Err(ENOMEM));
    assert_eq!(h.h.state.domains.len(), 1);
}

#[test]
fn getdomaininfo_reports_xens_fields() {
    let mut h = Host::new();
    let d = h.create();
    let i = h.info(d).unwrap();
    assert_eq!(i.domain, d);
    assert_eq!(i.flags, 0xffff_0000 | XEN_DOMINF_PAUSED);
    assert_eq!((i.tot_pages, i.max_pages), (0, 0));
    assert_eq!(i.max_vcpu_id, XEN_INVALID_MAX_VCPU_ID);
    assert_eq!(i.nr_online_vcpus, 0);
    assert_eq!(i.handle, [7; 16]);
    assert_eq!(i.gpaddr_bits, 40);
    let shinfo = i.shared_info_frame;
    assert!(!h.free.contains(&shinfo) && h.h.state.frames.get(&shinfo).unwrap().special);
    // 4.17: the first domain at or above the id; reserved ids -EINVAL; none left -ESRCH.
    assert_eq!(h.info(0).unwrap().domain, 0);
    assert_eq!(h.info(0).unwrap().flags & XEN_DOMINF_PAUSED, 0);
    assert_eq!(h.info(0).unwrap().max_vcpu_id, 1);
    assert_eq!(h.create_with(9, cfg(1)), Ok(9));
    assert_eq!(h.info(d + 1).map(|i| i.domain), Ok(9));
    assert_eq!(h.info(10).map(|i| i.domain), Err(ESRCH));
    assert_eq!(h.info(0x7FF0).map(|i| i.domain), Err(EINVAL));
    assert_eq!(h.max_vcpus(d, 1), EINVAL);
    assert_eq!(h.max_vcpus(0, 2), EINVAL);
    assert_eq!(h.max_vcpus(d, 2), 0);
    let i = h.info(d).unwrap();
    assert_eq!((i.max_vcpu_id, i.nr_online_vcpus), (1, 0));
    // A shutdown code lands in bits 16-31.
    h.h.state
        .domains
        .update(&mut lockstep::Journal::new(), &d, |x| x.shutdown = Some(3));
    let i = h.info(d).unwrap();
    assert_eq!(i.flags & XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWN);
    assert_eq!(i.shutdown_code(), 3);
}

#[test]
fn getdomaininfolist_in_id_order() {
    let mut h = Host::new();
    let a = h.create();
    let b = h.create();
    let mut s = XenSysctl::new(XEN_SYSCTL_GETDOMAININFOLIST);
    h.h.mem.map(BUF, &[0u8; 3 * 112]);
    s.set_payload(&XenSysctlGetdomaininfolist {
        first_domain: 0,
        max_domains: 2,
        buffer: BUF,
        num_domains: 0,
    })
    .unwrap();
    let (r, out) = h.sysctl(&s);
    assert_eq!(r, 0);
    let l: XenSysctlGetdomaininfolist = out.payload().unwrap();
    assert_eq!(l.num_domains, 2);
    let dom_at = |h: &Host, i: u64| h.h.mem.bytes[&(BUF + i * 112)];
    assert_eq!((dom_at(&h, 0), dom_at(&h, 1)), (0, a as u8));
    s.set_payload(&XenSysctlGetdomaininfolist {
        first_domain: a + 1,
        max_domains: 3,
        buffer: BUF,
        num_domains: 0,
    })
    .unwrap();
    let (r, out) = h.sysctl(&s);
    let l: XenSysctlGetdomaininfolist = out.payload().unwrap();
    assert_eq!((r, l.num_domains, dom_at(&h, 0)), (0, 1, b as u8));
    // An unwritable buffer is -EFAULT.
    s.set_payload(&XenSysctlGetdomaininfolist {
        first_domain: 0,
        max_domains: 3,
        buffer: 0xdead_0000,
        num_domains: 0,
    })
    .unwrap();
    assert_eq!(h.sysctl(&s).0, EFAULT);
}

#[test]
fn physinfo_reports_the_inputs() {
    let mut h = Host::new();
    let p = h.physinfo();
    assert_eq!((p.nr_cpus, p.max_cpu_id, p.cpu_khz), (3, 2, 2_600_000));
    assert_eq!(p.free_pages, 0x100);
    assert_eq!(p.total_pages, 0x100);
    assert_eq!(
        p.capabilities & XEN_SYSCTL_PHYSCAP_PV,
        XEN_SYSCTL_PHYSCAP_PV
    );
    assert_eq!(p.capabilities & XEN_SYSCTL_PHYSCAP_HVM, 0);
}

#[test]
fn pause_unpause_count_like_xen() {
    let mut h = Host::new();
    let d = h.create();
    let paused = |h: &mut Host| h.info(d).unwrap().flags & XEN_DOMINF_PAUSED != 0;
    assert_eq!(h.simple(XEN_DOMCTL_PAUSEDOMAIN, 0), EINVAL);
    assert_eq!(h.simple(XEN_DOMCTL_PAUSEDOMAIN, 77), ESRCH);
    assert_eq!(h.simple(XEN_DOMCTL_PAUSEDOMAIN, d), 0);
    assert_eq!(h.simple(XEN_DOMCTL_UNPAUSEDOMAIN, d), 0);
    assert!(paused(&mut h));
    assert_eq!(h.simple(XEN_DOMCTL_UNPAUSEDOMAIN, d), 0);
    assert!(!paused(&mut h));
    assert!(!h.h.state.domains.get(&d).unwrap().flags.paused);
    assert_eq!(h.simple(XEN_DOMCTL_UNPAUSEDOMAIN, d), EINVAL);
    assert_eq!(h.simple(XEN_DOMCTL_PAUSEDOMAIN, d), 0);
    assert!(paused(&mut h));
}

#[test]
fn max_mem_may_drop_below_tot_pages_and_then_nothing_is_added() {
    let mut h = Host::new();
    let d = h.create();
    assert_eq!(h.reservation(6, d, &[0]).0, 0);
    assert_eq!(h.max_mem(d, 32), 0);
    assert_eq!(h.info(d).unwrap().max_pages, 8);
    let (n, mfns) = h.reservation(6, d, &[0, 1, 2, 3, 4, 5]);
    assert_eq!(n, 6);
    assert!(mfns
        .iter()
        .all(|m| h.h.state.frames.get(m).unwrap().owner == d));
    assert_eq!(h.info(d).unwrap().tot_pages, 6);
    assert_eq!(h.max_mem(d, 4), 0);
    assert_eq!(h.info(d).unwrap().max_pages, 1);
    assert_eq!(h.reservation(6, d, &[9]).0, 0);
    assert_eq!(h.max_mem(77, 4), ESRCH);
    assert_eq!(h.max_mem(d, u64::MAX), 0);
    assert_eq!(h.info(d).unwrap().max_pages, u64::from(u32::MAX));
}

#[test]
fn destroy_returns_every_frame_and_refuses_what_xen_refuses() {
    let mut h = Host::new();
    let before = h.free.len();
    let d = h.create();
    assert_eq!(h.free.len(), before - 1, "shared_info");
    assert_eq!(h.max_mem(d, 1024), 0);
    let (n, _) = h.reservation(6, d, &[0, 1, 2, 3]);
    assert_eq!(n, 4);
    assert_eq!(h.physinfo().free_pages, before as u64 - 5);
    assert_eq!(h.max_vcpus(d, 2), 0);
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, 0), EINVAL);
    let r = h.call(HYPERVISOR_DOMCTL, [OP, 0, 0, 0, 0]);
    assert_eq!(r.ret, EINVAL, "the same request again");
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0);
    assert_eq!(h.free.len(), before);
    assert_eq!(h.physinfo().free_pages, before as u64);
    assert!(h.h.state.frames.iter().all(|(_, p)| p.owner != d));
    assert!(h.h.state.vcpus.iter().all(|(k, _)| k.0 != d));
    assert!(h.h.state.p2m.iter().all(|(k, _)| k.0 != d));
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), ESRCH);
    assert_eq!(h.info(d).map(|i| i.domain), Err(ESRCH));
}

#[test]
fn vcpu_sub_ops_check_their_arguments() {
    let mut h = Host::new();
    let d = h.create();
    let vcpuinfo = |h: &mut Host, dom: u16, vcpu: u32| {
        let mut op = XenDomctl::new(XEN_DOMCTL_GETVCPUINFO, dom);
        op.set_payload(&XenDomctlGetvcpuinfo {
            vcpu,
            ..Default::default()
        })
        .unwrap();
        let (r, out) = h.domctl(&op);
        (r, out.payload::<XenDomctlGetvcpuinfo>().unwrap())
    };
    assert_eq!(vcpuinfo(&mut h, d, 0).0, ESRCH);
    assert_eq!(vcpuinfo(&mut h, d, 2).0, EINVAL);
    assert_eq!(h.max_vcpus(d, 2), 0);
    let (r, v) = vcpuinfo(&mut h, d, 1);
    assert_eq!((r, v.vcpu, v.online, v.running), (0, 1, 0, 0));
    let (r, v) = vcpuinfo(&mut h, 0, 0);
    assert_eq!((r, v.online), (0, 1));
    let setctx = |h: &mut Host, dom: u16, vcpu: u32, ctxt: u64| {
        let mut op = XenDomctl::new(XEN_DOMCTL_SETVCPUCONTEXT, dom);
        op.set_payload(&XenDomctlVcpucontext { vcpu, ctxt })
            .unwrap();
        h.domctl(&op).0
    };
    assert_eq!(setctx(&mut h, 0, 0, 0), EINVAL);
    assert_eq!(setctx(&mut h, d, 5, 0), EINVAL);
    assert_eq!(setctx(&mut h, d, 0, 0xdead_0000), EFAULT);
    assert_eq!(setctx(&mut h, d, 0, 0), 0, "a null context resets the vCPU");
    // A context naming no page table of the domain is refused.
    let c = dom0_interface::arch_x86::VcpuGuestContext::default();
    h.h.mem.map(BUF, &c.to_vec());
    assert_eq!(setctx(&mut h, d, 0, BUF), EINVAL);
}

#[test]
fn random_create_populate_destroy_sequences_return_every_frame() {
    let mut seed = 0x1234_5678_u64;
    let mut rnd = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for _round in 0..8 {
        let mut h = Host::new();
        let before = h.free.len();
        let mut live: Vec<u16> = Vec::new();
        for _ in 0..40 {
            match rnd(4) {
                0 => {
                    if let Ok(d) = h.create_with(0, cfg(1 + rnd(3) as u32)) {
                        assert_eq!(h.max_mem(d, 64), 0);
                        live.push(d);
                    }
                }
                1 if !live.is_empty() => {
                    let d = live[rnd(live.len() as u64) as usize];
                    let n = 1 + rnd(4) as usize;
                    let base = rnd(8);
                    let pfns: Vec<u64> = (0..n as u64).map(|i| base * 4 + i).collect();
                    let _ = h.reservation(6, d, &pfns);
                }
                2 if !live.is_empty() => {
                    let d = live[rnd(live.len() as u64) as usize];
                    let mine: Vec<u64> =
                        h.h.state
                            .frames
                            .iter()
                            .filter(|(_, p)| p.owner == d && !p.special)
                            .map(|(m, _)| *m)
                            .take(2)
                            .collect();
                    if !mine.is_empty() {
                        assert_eq!(h.reservation(1, d, &mine).0, mine.len() as i64);
                    }
                }
                _ if !live.is_empty() => {
                    let d = live.swap_remove(rnd(live.len() as u64) as usize);
                    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0);
                }
                _ => {}
            }
            let owned =
                h.h.state
                    .frames
                    .iter()
                    .filter(|(_, p)| p.owner != 0)
                    .count();
            assert_eq!(owned + h.free.len(), before, "every frame accounted for");
        }
        for d in live {
            assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0);
        }
        assert_eq!(h.free.len(), before);
        assert_eq!(h.h.state.domains.len(), 1);
    }
}

/// Runs `f` with the harness's caller switched to domain `d` (vCPU 0).
pub(super) fn as_dom<R>(h: &mut Host, d: u16, f: impl FnOnce(&mut Host) -> R) -> R {
    let me = h.h.dom;
    h.h.dom = d;
    let r = f(h);
    h.h.dom = me;
    r
}

fn evtchn_op(h: &mut Host, cmd: u32, words: &[u32]) -> (i64, Vec<u32>) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    h.h.mem.map(BUF, &bytes);
    let r = h.call(
        dom0_interface::xen::HYPERVISOR_EVENT_CHANNEL_OP,
        [u64::from(cmd), BUF, 0, 0, 0],
    );
    let out = (0..words.len() as u64)
        .map(|i| {
            let mut b = [0u8; 4];
            for (k, x) in b.iter_mut().enumerate() {
                *x = h.h.mem.bytes[&(BUF + i * 4 + k as u64)];
            }
            u32::from_le_bytes(b)
        })
        .collect();
    (r.ret, out)
}

#[test]
fn a_domu_shutdown_raises_virq_dom_exc_and_leaves_dom0_alone() {
    use dom0_interface::event_channel::EVTCHNOP_BIND_VIRQ;
    use dom0_interface::sched::{SCHEDOP_SHUTDOWN, SHUTDOWN_REBOOT};
    let mut h = Host::new();
    let (r, out) = evtchn_op(&mut h, EVTCHNOP_BIND_VIRQ, &[3, 0, 0]);
    assert_eq!(r, 0);
    let port = out[2];
    let d = h.create();
    assert_eq!(h.max_vcpus(d, 2), 0);
    h.h.mem.map(RES, &SHUTDOWN_REBOOT.to_le_bytes());
    let r = as_dom(&mut h, d, |h| {
        h.call(
            dom0_interface::xen::HYPERVISOR_SCHED_OP,
            [u64::from(SCHEDOP_SHUTDOWN), RES, 0, 0, 0],
        )
    });
    assert_eq!(r.ret, 0);
    assert!(r.effects.contains(&Effect::DomainShutdown {
        dom: d,
        reason: SHUTDOWN_REBOOT
    }));
    assert!(
        r.effects.iter().any(|e| matches!(
            e,
            Effect::Evtchn(crate::evtchn::EvtchnEffect::Set { dom: 0, port: p, .. }) if *p == port
        )),
        "VIRQ_DOM_EXC reaches dom0: {:?}",
        r.effects
    );
    let i = h.info(d).unwrap();
    assert_eq!(i.flags & XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWN);
    assert_eq!(i.shutdown_code(), SHUTDOWN_REBOOT);
    let i0 = h.info(0).unwrap();
    assert_eq!(i0.flags & XEN_DOMINF_SHUTDOWN, 0);
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0);
}

#[test]
fn destroy_closes_the_dead_domains_channels_and_the_peer_sees_it_unbound() {
    use dom0_interface::event_channel::{EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN};
    let mut h = Host::new();
    let d = h.create();
    assert_eq!(h.max_vcpus(d, 2), 0);
    // dom0 offers a port to d; d binds it.
    let (r, out) = evtchn_op(&mut h, EVTCHNOP_ALLOC_UNBOUND, &[u32::from(d) << 16, 0]);
    assert_eq!(r, 0);
    let p0 = out[1];
    let (r, out) = as_dom(&mut h, d, |h| {
        evtchn_op(h, EVTCHNOP_BIND_INTERDOMAIN, &[0, p0, 0])
    });
    assert_eq!(r, 0);
    let pd = out[2];
    assert!(h.h.state.evtchns.get(&(d, pd)).is_some());
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0);
    assert!(h.h.state.evtchns.iter().all(|(k, _)| k.0 != d));
    assert!(matches!(
        h.h.state.evtchns.get(&(0, p0)).map(|c| c.state),
        Some(crate::evtchn::ChanState::Unbound { .. })
    ));
}

/// A paused domU with one vCPU and six pages: the L4 -> L3 -> L2 -> L1 chain mapping a code
/// and a stack page. Returns its id and the page frames.
pub(super) fn paged_domu(h: &mut Host) -> (u16, Vec<u64>) {
    let d = h.create_with(0, cfg(1)).unwrap();
    assert_eq!(h.max_vcpus(d, 1), 0);
    assert_eq!(h.max_mem(d, 64), 0);
    let (n, m) = h.reservation(6, d, &[0, 1, 2, 3, 4, 5]);
    assert_eq!(n, 6);
    for f in &m {
        h.h.mem.add_frame(*f);
    }
    let table = 0x27; // P | RW | US | A
    h.h.mem.machine.insert(m[0] << 12, (m[1] << 12) | table);
    h.h.mem.machine.insert(m[1] << 12, (m[2] << 12) | table);
    h.h.mem
        .machine
        .insert((m[2] << 12) + 16, (m[3] << 12) | table);
    h.h.mem.machine.insert(m[3] << 12, (m[4] << 12) | 0x25);
    h.h.mem
        .machine
        .insert((m[3] << 12) + 8, (m[5] << 12) | 0x67);
    (d, m)
}

#[test]
fn setvcpucontext_validates_the_roots_and_brings_the_vcpu_online() {
    use dom0_interface::arch_x86::VcpuGuestContext;
    let mut h = Host::new();
    let (d, m) = paged_domu(&mut h);
    let mut c = VcpuGuestContext {
        flags: (1 << 2) | (1 << 5),
        kernel_ss: 0xe02b,
        kernel_sp: 0x40_2000,
        ..VcpuGuestContext::default()
    };
    c.user_regs.rip = 0x40_0000;
    c.user_regs.cs = 0xe033;
    c.user_regs.ss = 0xe02b;
    c.user_regs.rsp = 0x40_2000;
    c.user_regs.rflags = 0x200;
    c.ctrlreg[3] = m[0] << 12;
    h.h.mem.map(BUF, &c.to_vec());
    let mut op = XenDomctl::new(XEN_DOMCTL_SETVCPUCONTEXT, d);
    op.set_payload(&XenDomctlVcpucontext { vcpu: 0, ctxt: BUF })
        .unwrap();
    h.h.mem.map(OP, &op.to_vec());
    let r = h.call(HYPERVISOR_DOMCTL, [OP, 0, 0, 0, 0]);
    assert_eq!(r.ret, 0, "{:?}", r.effects);
    let root = h.h.state.frames.get(&m[0]).unwrap();
    assert_eq!((root.ty, root.validated), (crate::mm::PageType::L4, true));
    assert_eq!(h.h.state.vcpus.get(&(d, 0)).unwrap().cr3, m[0] << 12);
    assert!(h.h.state.vcpus.get(&(d, 0)).unwrap().online);
    assert!(r
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Sched(crate::sched::SchedEffect::SetVcpuRegs { dom, .. }) if *dom == d)));
    // Paused: nothing runs it yet; the last unpause does.
    assert!(h
        .h
        .state
        .runqs
        .iter()
        .all(|(_, q)| !q.queue.contains(&(d, 0))));
    assert_eq!(h.simple(XEN_DOMCTL_UNPAUSEDOMAIN, d), 0);
    // Destroy drops the validated tables with everything else.
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0);
    assert!(h.h.state.frames.iter().all(|(_, p)| p.owner != d));
    assert_eq!(h.free.len(), 0x100);
}

#[test]
fn a_domu_crash_marks_it_crashed_raises_virq_dom_exc_and_spares_dom0() {
    use crate::request::{ExitKind, GuestRegs, Request};
    use dom0_interface::event_channel::EVTCHNOP_BIND_VIRQ;
    use dom0_interface::sched::SHUTDOWN_CRASH;
    let mut h = Host::new();
    let (_, out) = evtchn_op(&mut h, EVTCHNOP_BIND_VIRQ, &[3, 0, 0]);
    let port = out[2];
    let d = h.create();
    assert_eq!(h.max_vcpus(d, 2), 0);
    // A divide error with no trap table: Xen's create_bounce_frame crashes the domain.
    let regs = GuestRegs {
        rip: 0x40_0000,
        cs: 0xe033,
        ss: 0xe02b,
        rsp: 0x40_2000,
        ..GuestRegs::default()
    };
    let r =
        h.h.run(Request::exit(ExitKind::Exception, d, 0, regs, 0, 0, 0));
    assert!(r.effects.contains(&Effect::DomainCrash { dom: d }));
    assert!(!r.effects.iter().any(|e| matches!(
        e,
        Effect::DomainCrash { dom: 0 } | Effect::DomainShutdown { dom: 0, .. }
    )));
    assert!(r.effects.iter().any(|e| matches!(
        e,
        Effect::Evtchn(crate::evtchn::EvtchnEffect::Set { dom: 0, port: p, .. }) if *p == port
    )));
    let i = h.info(d).unwrap();
    assert_eq!(i.flags & XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWN);
    assert_eq!(i.shutdown_code(), SHUTDOWN_CRASH);
    assert_eq!(h.info(0).unwrap().flags & XEN_DOMINF_SHUTDOWN, 0);
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0);
    assert_eq!(h.free.len(), 0x100);
}

#[test]
fn getdomaininfo_searches_before_xsm() {
    let mut h = Host::with(Harness::domu(3));
    // Nothing at or above the id: -ESRCH, as for dom0; a domain above it: -EPERM.
    assert_eq!(h.simple(XEN_DOMCTL_GETDOMAININFO, 0x7000), ESRCH);
    assert_eq!(h.simple(XEN_DOMCTL_GETDOMAININFO, 1), EPERM);
    assert_eq!(h.simple(XEN_DOMCTL_GETDOMAININFO, 3), EPERM);
}

#[test]
fn destroy_drops_the_pirq_eoi_bitmap_references() {
    let mut h = Host::new();
    let before = h.free.len();
    let d = h.create();
    assert_eq!(h.max_mem(d, 1024), 0);
    assert_eq!(h.reservation(6, d, &[0]).0, 1);
    assert_eq!(h.max_vcpus(d, 2), 0);
    let mfn = *h.h.state.p2m.get(&(d, 0)).expect("pfn 0 populated");
    h.h.dom = d;
    h.h.mem.map(0x7000, &mfn.to_le_bytes());
    let r = h.call(33, [u64::from(PHYSDEVOP_PIRQ_EOI_GMFN_V2), 0x7000, 0, 0, 0]);
    assert_eq!(r.ret, 0, "a domU registers its own frame");
    let r = h.call(33, [u64::from(PHYSDEVOP_PIRQ_EOI_GMFN_V2), 0x7000, 0, 0, 0]);
    assert_eq!(r.ret, -16, "once");
    assert_eq!(h.h.state.frames.get(&mfn).map(|p| p.type_count), Some(1));
    h.h.dom = 0;
    assert_eq!(h.simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0);
    assert!(h.h.state.eoi_maps.is_empty());
    assert_eq!(
        h.free.len(),
        before,
        "the bitmap frame is freed with the rest"
    );
}
