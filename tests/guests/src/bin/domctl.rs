//! `domctl`: the toolstack's hypercalls, run as dom0. sysctl physinfo and getdomaininfolist,
//! domctl createdomain / getdomaininfo / max_mem / pause / unpause / getvcpuinfo /
//! destroydomain, populate_physmap on the new domain with the exact free-page delta, and the
//! refusals (-EACCES for a wrong interface version, -ESRCH, -EINVAL, -EEXIST, -EFAULT).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::hypercall::BadPtr;
use guest_rt::mm::{XENMEM_DECREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP};
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::xenctl::ops::*;
use guest_rt::xenctl::{domctl, foreign_reservation, sysctl, CtlBuf, DOMCTL_U, SYSCTL_U};
use guest_rt::{println, Errno, XenResult};

guest_rt::entry!(main);
guest_rt::no_heap!();

// Xen 4.17's numbers and offsets (public/domctl.h, public/sysctl.h), written out here so the
// guest checks the hypervisor's mirrors independently.
/// `XEN_DOMINF_shutdown` bits of a domain that never set a shutdown code
/// (`SHUTDOWN_CODE_INVALID` shifted in).
const NO_SHUTDOWN_CODE: u32 = 0xffff_0000;
/// `sizeof(struct xen_domctl_getdomaininfo)`.
const INFO_SIZE: usize = 112;

/// Pages populated into the new domain.
const POPULATE: usize = 8;

/// The fields of `struct xen_domctl_getdomaininfo` the checks use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Info {
    domain: u16,
    flags: u32,
    tot_pages: u64,
    max_pages: u64,
    shared_info_frame: u64,
    cpu_time: u64,
    nr_online_vcpus: u32,
    max_vcpu_id: u32,
    ssidref: u32,
    handle: [u8; 16],
    cpupool: u32,
    gpaddr_bits: u8,
}

impl Info {
    fn decode(b: &CtlBuf, at: usize) -> Info {
        Info {
            domain: b.u16(at),
            flags: b.u32(at + 4),
            tot_pages: b.u64(at + 8),
            max_pages: b.u64(at + 16),
            shared_info_frame: b.u64(at + 48),
            cpu_time: b.u64(at + 56),
            nr_online_vcpus: b.u32(at + 64),
            max_vcpu_id: b.u32(at + 68),
            ssidref: b.u32(at + 72),
            handle: b.bytes::<16>(at + 76),
            cpupool: b.u32(at + 92),
            gpaddr_bits: b.u8(at + 96),
        }
    }
}

fn main(si: &StartInfo) {
    println!("domctl: domctl/sysctl test guest (dom0)");
    version_checks();
    physinfo_checks();
    dom0_info_checks(si);
    create_refusal_checks();
    // Measured after a first create/destroy (Xen makes one-time allocations on the first)
    // once Xen's deferred (RCU) frees of that domain are done.
    let before = free_pages_after(si, None, 1000);
    let Some(d) = create_checks() else {
        guest_rt::test::finish();
    };
    let after_create = free_pages();
    info(format_args!(
        "free_pages before create {before}, after create {after_create}"
    ));
    list_checks(d);
    memory_checks(d, after_create);
    pause_checks(d);
    vcpu_checks(d);
    destroy_checks(si, d, before);
    guest_rt::test::finish();
}

fn physinfo() -> Result<CtlBuf, Errno> {
    let mut s = CtlBuf::sysctl(SYSCTL_PHYSINFO);
    sysctl(&mut s)?;
    Ok(s)
}

fn free_pages() -> u64 {
    physinfo().map_or(0, |p| p.u64(SYSCTL_U + 48))
}

/// free_pages once `target` is reached or `ms` milliseconds have passed, yielding meanwhile
/// (Xen frees a dead domain's last pages in an RCU callback, some time after destroydomain
/// returns). Without a target it waits the full time.
fn free_pages_after(si: &StartInfo, target: Option<u64>, ms: u64) -> u64 {
    let Ok(sh) = SharedInfo::map(si) else {
        return free_pages();
    };
    let now = || sh.system_time_now(0).unwrap_or(0);
    let start = now();
    loop {
        let f = free_pages();
        if Some(f) == target || now().saturating_sub(start) >= ms * 1_000_000 {
            return f;
        }
        let _ = guest_rt::sched::yield_now();
    }
}

fn getinfo(dom: u16) -> Result<Info, Errno> {
    let mut op = CtlBuf::domctl(DOMCTL_GETDOMAININFO, dom);
    domctl(&mut op)?;
    Ok(Info::decode(&op, DOMCTL_U))
}

fn max_vcpus(dom: u16, max: u32) -> XenResult {
    let mut op = CtlBuf::domctl(DOMCTL_MAX_VCPUS, dom);
    op.set_u32(DOMCTL_U, max);
    domctl(&mut op)
}

fn simple(cmd: u32, dom: u16) -> XenResult {
    domctl(&mut CtlBuf::domctl(cmd, dom))
}

fn version_checks() {
    let mut op = CtlBuf::domctl(DOMCTL_GETDOMAININFO, 0);
    op.set_u32(4, 0x14);
    check_eq(
        "domctl with an old interface version is -EACCES",
        domctl(&mut op),
        Err(Errno::EACCES),
    );
    let mut s = CtlBuf::sysctl(SYSCTL_PHYSINFO);
    s.set_u32(4, 0x16);
    check_eq(
        "sysctl with a newer interface version is -EACCES",
        sysctl(&mut s),
        Err(Errno::EACCES),
    );
    if let Some(p) = BadPtr::new(0xffff_8800_0000_0000) {
        check_eq(
            "domctl from an unmapped address is -EFAULT",
            guest_rt::xenctl::domctl_with_bad_ptr(p),
            Err(Errno::EFAULT),
        );
    }
    let mut s = CtlBuf::sysctl(0x7777);
    check_eq(
        "unknown sysctl is -ENOSYS",
        sysctl(&mut s),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "unknown domctl is -ENOSYS",
        simple(0x7777, 0),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "max_vcpus on oneself is -EINVAL",
        max_vcpus(0, 2),
        Err(Errno::EINVAL),
    );
}

fn physinfo_checks() {
    let Ok(p) = physinfo() else {
        check("sysctl physinfo succeeds", false);
        return;
    };
    let u = SYSCTL_U;
    let (threads, cores, nr_cpus, max_cpu_id) =
        (p.u32(u), p.u32(u + 4), p.u32(u + 8), p.u32(u + 12));
    let (nr_nodes, max_node_id, khz, caps) =
        (p.u32(u + 16), p.u32(u + 20), p.u32(u + 24), p.u32(u + 28));
    let (total, free, max_mfn) = (p.u64(u + 40), p.u64(u + 48), p.u64(u + 72));
    info(format_args!(
        "physinfo: threads/core {threads} cores/socket {cores} nr_cpus {nr_cpus} \
         max_cpu_id {max_cpu_id} nr_nodes {nr_nodes} max_node_id {max_node_id} cpu_khz {khz} \
         caps {caps:#x} arch_caps {:#x} total {total} free {free} scrub {} outstanding {} \
         max_mfn {max_mfn:#x}",
        p.u32(u + 32),
        p.u64(u + 56),
        p.u64(u + 64),
    ));
    check("physinfo nr_cpus >= 1", nr_cpus >= 1);
    check(
        "physinfo max_cpu_id >= nr_cpus - 1",
        max_cpu_id + 1 >= nr_cpus,
    );
    check("physinfo threads_per_core >= 1", threads >= 1);
    check("physinfo nr_nodes >= 1", nr_nodes >= 1);
    check("physinfo cpu_khz > 0", khz > 0);
    check("physinfo reports PV guests", caps & PHYSCAP_PV != 0);
    check(
        "physinfo 0 < free_pages < total_pages",
        free > 0 && free < total,
    );
    check("physinfo max_mfn >= total_pages", max_mfn >= total);
}

fn dom0_info_checks(si: &StartInfo) {
    let Ok(i) = getinfo(0) else {
        check("getdomaininfo(0) succeeds", false);
        return;
    };
    info(format_args!("dom0: {i:?}"));
    check_eq("getdomaininfo(0).domain", i.domain, 0);
    check(
        "dom0 is running, not paused, not dying, not shut down",
        i.flags & DOMINF_RUNNING != 0
            && i.flags & (DOMINF_PAUSED | DOMINF_DYING | DOMINF_SHUTDOWN) == 0,
    );
    check_eq(
        "dom0 tot_pages is start_info nr_pages",
        i.tot_pages,
        si.nr_pages,
    );
    check_eq(
        "dom0 shared_info_frame is its shared_info page",
        i.shared_info_frame,
        si.shared_info >> 12,
    );
    check("dom0 has an online vCPU", i.nr_online_vcpus >= 1);
    check("dom0 cpu_time advances", i.cpu_time > 0);
    check_eq("dom0 ssidref (dummy XSM)", i.ssidref, 0);
    check_eq(
        "getdomaininfo(DOMID_SELF) is -EINVAL",
        getinfo(0x7FF0).map(|i| i.domain),
        Err(Errno::EINVAL),
    );
    check_eq(
        "getdomaininfo past the last domain is -ESRCH",
        getinfo(0x7000).map(|i| i.domain),
        Err(Errno::ESRCH),
    );
    check_eq(
        "pausedomain of a missing domain is -ESRCH",
        simple(DOMCTL_PAUSEDOMAIN, 0x7000),
        Err(Errno::ESRCH),
    );
    check_eq(
        "pausedomain of oneself is -EINVAL",
        simple(DOMCTL_PAUSEDOMAIN, 0),
        Err(Errno::EINVAL),
    );
}

const HANDLE: &[u8; 16] = b"dualvisor-domctl";

/// A createdomain request as libxl makes it for a PV guest.
fn create_op(dom: u16, max_vcpus: u32, flags: u32, grant_opts: u32) -> CtlBuf {
    let mut op = CtlBuf::domctl(DOMCTL_CREATEDOMAIN, dom);
    let u = DOMCTL_U;
    op.set_bytes(u + 4, HANDLE);
    op.set_u32(u + 20, flags);
    op.set_u32(u + 28, max_vcpus);
    op.set_u32(u + 32, 1023);
    op.set_u32(u + 36, 32);
    op.set_u32(u + 40, 1024);
    op.set_u32(u + 44, grant_opts);
    op
}

fn create(mut op: CtlBuf) -> Result<u16, Errno> {
    domctl(&mut op)?;
    Ok(op.u16(8))
}

fn create_refusal_checks() {
    check_eq(
        "createdomain with unknown flags is -EINVAL",
        create(create_op(0, 1, 1 << 20, 1)),
        Err(Errno::EINVAL),
    );
    check_eq(
        "createdomain with 0 vCPUs is -EINVAL",
        create(create_op(0, 0, 0, 1)),
        Err(Errno::EINVAL),
    );
    check_eq(
        "createdomain with bad grant_opts is -EINVAL",
        create(create_op(0, 1, 0, 0x31)),
        Err(Errno::EINVAL),
    );
    check_eq(
        "createdomain with an id in use is -EEXIST",
        create(create_op(0, 1, 0, 1)).and_then(|d| {
            let again = create(create_op(d, 1, 0, 1));
            let _ = simple(DOMCTL_DESTROYDOMAIN, d);
            again
        }),
        Err(Errno::EEXIST),
    );
}

fn create_checks() -> Option<u16> {
    let d = match create(create_op(0, 2, 0, 1)) {
        Ok(d) => d,
        Err(e) => {
            check_eq("createdomain succeeds", Err(e), Ok(0u16));
            return None;
        }
    };
    info(format_args!("created d{d}"));
    check_eq(
        "createdomain ids come from Xen's rover (failed creates use ids up too)",
        d,
        5,
    );
    let Ok(i) = getinfo(d) else {
        check("getdomaininfo of the new domain", false);
        return Some(d);
    };
    info(format_args!("d{d}: {i:?}"));
    check_eq("new domain's id", i.domain, d);
    check_eq(
        "new domain is paused, nothing else",
        i.flags,
        NO_SHUTDOWN_CODE | DOMINF_PAUSED,
    );
    check_eq("new domain has no pages", i.tot_pages, 0);
    check_eq("new domain has no vCPU online", i.nr_online_vcpus, 0);
    check_eq(
        "new domain has no vCPUs before max_vcpus",
        i.max_vcpu_id,
        u32::MAX,
    );
    check_eq("new domain's handle", &i.handle, HANDLE);
    check_eq("new domain used no CPU time", i.cpu_time, 0);
    check(
        "new domain has a shared_info frame",
        i.shared_info_frame != 0,
    );
    check_eq(
        "getdomaininfo between domains finds the next one",
        getinfo(1).map(|i| i.domain),
        Ok(d),
    );
    check_eq(
        "getvcpuinfo before max_vcpus is -ESRCH",
        vcpuinfo(d, 0).0,
        Err(Errno::ESRCH),
    );
    check_eq(
        "max_vcpus other than createdomain's is -EINVAL",
        max_vcpus(d, 1),
        Err(Errno::EINVAL),
    );
    check_eq("max_vcpus creates the vCPUs", max_vcpus(d, 2), Ok(0));
    check_eq(
        "max_vcpu_id after max_vcpus",
        getinfo(d).map(|i| (i.max_vcpu_id, i.nr_online_vcpus)),
        Ok((1, 0)),
    );
    check_eq("max_vcpus again is harmless", max_vcpus(d, 2), Ok(0));
    Some(d)
}

/// `getdomaininfolist(first, max)` into a buffer: (result, num_domains, entries).
fn list(first: u16, max: u32) -> (XenResult, u32, [Info; 4]) {
    let mut buf = [[0u64; INFO_SIZE / 8]; 4];
    let mut s = CtlBuf::sysctl(SYSCTL_GETDOMAININFOLIST);
    s.set_u16(SYSCTL_U, first);
    s.set_u32(SYSCTL_U + 4, max.min(4));
    s.set_u64(SYSCTL_U + 8, buf.as_mut_ptr() as u64);
    let r = sysctl(&mut s);
    let mut out = [Info::default(); 4];
    for (o, e) in out.iter_mut().zip(buf.iter()) {
        let mut b = CtlBuf([0; 144]);
        for (k, w) in e.iter().enumerate() {
            b.set_u64(k * 8, *w);
        }
        *o = Info::decode(&b, 0);
    }
    (r, s.u32(SYSCTL_U + 16), out)
}

fn list_checks(d: u16) {
    let (r, n, e) = list(0, 4);
    check_eq("getdomaininfolist succeeds", r, Ok(0));
    check_eq("getdomaininfolist lists dom0 and the new domain", n, 2);
    check_eq(
        "getdomaininfolist entries in id order",
        (e[0].domain, e[1].domain),
        (0, d),
    );
    check_eq(
        "getdomaininfolist entry matches getdomaininfo",
        Ok(e[1]),
        getinfo(d),
    );
    let (r, n, e) = list(1, 1);
    check_eq(
        "getdomaininfolist from 1 with room for 1",
        (r, n, e[0].domain),
        (Ok(0), 1, d),
    );
}

fn set_max_mem(d: u16, kb: u64) -> XenResult {
    let mut op = CtlBuf::domctl(DOMCTL_MAX_MEM, d);
    op.set_u64(DOMCTL_U, kb);
    domctl(&mut op)
}

fn memory_checks(d: u16, free0: u64) {
    let mut ext = [0u64; POPULATE];
    check_eq(
        "populate_physmap beyond max_pages (0) does nothing",
        foreign_reservation(XENMEM_POPULATE_PHYSMAP, d, &mut ext[..1], 0),
        Ok(0),
    );
    check_eq("max_mem 64 KiB", set_max_mem(d, 64), Ok(0));
    check_eq(
        "max_pages follows max_mem",
        getinfo(d).map(|i| i.max_pages),
        Ok(16),
    );
    for (i, e) in ext.iter_mut().enumerate() {
        *e = i as u64;
    }
    check_eq(
        "populate_physmap of 8 pages into the new domain",
        foreign_reservation(XENMEM_POPULATE_PHYSMAP, d, &mut ext, 0),
        Ok(POPULATE as i64),
    );
    check(
        "populate_physmap reports frames",
        ext.iter().all(|&m| m != 0),
    );
    check_eq(
        "free_pages drops by exactly the populated pages",
        free0.wrapping_sub(free_pages()),
        POPULATE as u64,
    );
    check_eq(
        "tot_pages counts them",
        getinfo(d).map(|i| i.tot_pages),
        Ok(POPULATE as u64),
    );
    check_eq(
        "max_mem below tot_pages is accepted (Xen lets it ratchet down)",
        set_max_mem(d, 16),
        Ok(0),
    );
    let mut more = [100u64];
    check_eq(
        "...and no page is added while over it",
        foreign_reservation(XENMEM_POPULATE_PHYSMAP, d, &mut more, 0),
        Ok(0),
    );
    let mut back = [ext[POPULATE - 1]];
    check_eq(
        "decrease_reservation of one of its frames",
        foreign_reservation(XENMEM_DECREASE_RESERVATION, d, &mut back, 0),
        Ok(1),
    );
    check_eq(
        "free_pages gets it back",
        free0.wrapping_sub(free_pages()),
        POPULATE as u64 - 1,
    );
    check_eq(
        "max_mem of a missing domain is -ESRCH",
        set_max_mem(0x7000, 64),
        Err(Errno::ESRCH),
    );
}

fn paused(d: u16) -> Option<bool> {
    getinfo(d).ok().map(|i| i.flags & DOMINF_PAUSED != 0)
}

fn pause_checks(d: u16) {
    check_eq("pausedomain", simple(DOMCTL_PAUSEDOMAIN, d), Ok(0));
    check_eq("paused", paused(d), Some(true));
    check_eq("unpausedomain", simple(DOMCTL_UNPAUSEDOMAIN, d), Ok(0));
    check_eq("still paused by creation", paused(d), Some(true));
    check_eq(
        "unpausedomain again",
        simple(DOMCTL_UNPAUSEDOMAIN, d),
        Ok(0),
    );
    check_eq("not paused", paused(d), Some(false));
    check_eq(
        "unpausing an unpaused domain is -EINVAL",
        simple(DOMCTL_UNPAUSEDOMAIN, d),
        Err(Errno::EINVAL),
    );
    check_eq(
        "an unpaused domain without a vCPU up shows no state flags",
        getinfo(d).map(|i| i.flags),
        Ok(NO_SHUTDOWN_CODE),
    );
    check_eq("pausedomain", simple(DOMCTL_PAUSEDOMAIN, d), Ok(0));
    check_eq("paused again", paused(d), Some(true));
}

fn vcpuinfo(d: u16, vcpu: u32) -> (XenResult, u32, u8, u8, u8, u64) {
    let mut op = CtlBuf::domctl(DOMCTL_GETVCPUINFO, d);
    op.set_u32(DOMCTL_U, vcpu);
    let r = domctl(&mut op);
    let u = DOMCTL_U;
    (
        r,
        op.u32(u),
        op.u8(u + 4),
        op.u8(u + 5),
        op.u8(u + 6),
        op.u64(u + 8),
    )
}

fn setvcpucontext(d: u16, vcpu: u32, ctxt: u64) -> XenResult {
    let mut op = CtlBuf::domctl(DOMCTL_SETVCPUCONTEXT, d);
    op.set_u32(DOMCTL_U, vcpu);
    op.set_u64(DOMCTL_U + 8, ctxt);
    domctl(&mut op)
}

fn vcpu_checks(d: u16) {
    let v = vcpuinfo(d, 1);
    info(format_args!("getvcpuinfo d{d}v1 -> {v:?}"));
    check_eq(
        "getvcpuinfo of a vCPU not yet up",
        v,
        (Ok(0), 1, 0, 0, 0, 0),
    );
    check_eq(
        "getvcpuinfo beyond max_vcpus is -EINVAL",
        vcpuinfo(d, 2).0,
        Err(Errno::EINVAL),
    );
    let v = vcpuinfo(0, 0);
    check_eq(
        "getvcpuinfo of our own running vCPU 0",
        (v.0, v.2, v.4),
        (Ok(0), 1, 1),
    );
    check_eq(
        "setvcpucontext on oneself is -EINVAL",
        setvcpucontext(0, 0, 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "setvcpucontext beyond max_vcpus is -EINVAL",
        setvcpucontext(d, 5, 0),
        Err(Errno::EINVAL),
    );
    check_eq(
        "setvcpucontext from an unmapped context is -EFAULT",
        setvcpucontext(d, 0, 0xffff_8800_0000_0000),
        Err(Errno::EFAULT),
    );
}

fn destroy_checks(si: &StartInfo, d: u16, before: u64) {
    check_eq("destroydomain", simple(DOMCTL_DESTROYDOMAIN, d), Ok(0));
    check_eq(
        "the destroyed domain is gone",
        getinfo(d).map(|i| i.domain),
        Err(Errno::ESRCH),
    );
    check_eq(
        "destroying it again is -ESRCH",
        simple(DOMCTL_DESTROYDOMAIN, d),
        Err(Errno::ESRCH),
    );
    let now = free_pages_after(si, Some(before), 5000);
    info(format_args!(
        "free_pages after destroy {now}, before create {before}"
    ));
    // Xen 4.17 keeps one page of a domain that had vCPUs (seen here: 16315 of 16316 after
    // 5 s); DualVisor's exact return is checked by xen-core's unit tests.
    check(
        "free_pages back after destroy (to within the page Xen keeps)",
        now <= before && before - now <= 1,
    );
    check_eq(
        "destroying oneself is -EINVAL",
        simple(DOMCTL_DESTROYDOMAIN, 0),
        Err(Errno::EINVAL),
    );
}
