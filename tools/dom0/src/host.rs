//! What dom0 asks the hypervisor: the domain list, vCPUs, physical and version facts, mapped
//! into the `tools::format` structures xl prints.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use dom0_interface::domctl::{
    XenDomctlGetdomaininfo, XenDomctlGetvcpuinfo, XEN_DOMCTL_GETVCPUINFO,
};
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::sysctl::XenSysctlPhysinfo;
use guest_rt::toolstack::{self, GETDOMAININFO_SIZE, PHYSINFO_SIZE};
use guest_rt::version::{self, c_str};
use guest_rt::xenctl::{self, CtlBuf, DOMCTL_U};
use guest_rt::Errno;
use tools::format::{HostInfo, NodeInfo, PhysInfo, VcpuInfo, XenInfo};

/// Entries asked for per `getdomaininfolist` call.
const BATCH: usize = 32;

// guest-rt's raw sizes are the ABI's.
const _: () = assert!(GETDOMAININFO_SIZE == core::mem::size_of::<XenDomctlGetdomaininfo>());
const _: () = assert!(PHYSINFO_SIZE == core::mem::size_of::<XenSysctlPhysinfo>());

/// Up to `n` domains from `first`.
fn info_batch(first: u16, n: usize) -> Result<Vec<XenDomctlGetdomaininfo>, Errno> {
    let mut buf = alloc::vec![0u8; n * GETDOMAININFO_SIZE];
    let got = toolstack::getdomaininfolist(first, &mut buf)?;
    Ok(buf
        .chunks(GETDOMAININFO_SIZE)
        .take(got)
        .filter_map(|c| XenDomctlGetdomaininfo::read_from(c).ok())
        .collect())
}

/// Every domain, in id order.
pub fn domains() -> Result<Vec<XenDomctlGetdomaininfo>, Errno> {
    let mut all = Vec::new();
    let mut first: u16 = 0;
    loop {
        let batch = info_batch(first, BATCH)?;
        let n = batch.len();
        let next = batch.last().map(|d| d.domain);
        all.extend(batch);
        match next {
            Some(last) if n == BATCH && last < u16::MAX => first = last + 1,
            _ => return Ok(all),
        }
    }
}

/// One domain's info, `None` if it does not exist.
pub fn domain(domid: u16) -> Result<Option<XenDomctlGetdomaininfo>, Errno> {
    Ok(info_batch(domid, 1)?
        .into_iter()
        .find(|d| d.domain == domid))
}

/// `XEN_SYSCTL_physinfo`.
pub fn physinfo() -> Result<XenSysctlPhysinfo, Errno> {
    let raw = toolstack::physinfo()?;
    XenSysctlPhysinfo::read_from(&raw).map_err(|_| Errno::EINVAL)
}

/// A domctl without payload (pause, unpause, destroy).
pub fn domctl_simple(cmd: u32, domid: u16) -> Result<(), Errno> {
    let mut op = CtlBuf::domctl(cmd, domid);
    xenctl::domctl(&mut op).map(|_| ())
}

/// The vCPUs 0..=`max_vcpu_id` of `domid` (stopping at the first that does not exist).
pub fn vcpus(domid: u16, max_vcpu_id: u32, nr_cpus: u32) -> Vec<VcpuInfo> {
    let mut out = Vec::new();
    for vcpu in 0..=max_vcpu_id.min(4095) {
        let mut op = CtlBuf::domctl(XEN_DOMCTL_GETVCPUINFO, domid);
        op.set_u32(DOMCTL_U, vcpu);
        if xenctl::domctl(&mut op).is_err() {
            break;
        }
        match XenDomctlGetvcpuinfo::read_from(&op.0[DOMCTL_U..]) {
            Ok(v) => out.push(VcpuInfo::from_domctl(&v, nr_cpus)),
            Err(_) => break,
        }
    }
    out
}

fn text<const N: usize>(cmd: u32) -> String {
    let mut buf = [0u8; N];
    match version::into_buffer(cmd, &mut buf) {
        Ok(_) => c_str(&buf).unwrap_or("").to_string(),
        Err(_) => String::new(),
    }
}

/// Scheduler names by `XEN_SCHEDULER_*` number (`public/domctl.h`).
fn scheduler_name(id: u32) -> String {
    match id {
        5 => "credit",
        6 => "credit2",
        7 => "arinc653",
        8 => "rtds",
        9 => "null",
        _ => "unknown",
    }
    .to_string()
}

/// Everything `xl info` prints.
pub fn host_info() -> Result<HostInfo, Errno> {
    let phys = physinfo()?;
    let (major, minor) = version::version()?;
    let mut compile = [0u8; 144];
    let ok = version::into_buffer(version::XENVER_COMPILE_INFO, &mut compile).is_ok();
    let field = |a: usize, b: usize| {
        if ok {
            c_str(&compile[a..b]).unwrap_or("").to_string()
        } else {
            String::new()
        }
    };
    let xen = XenInfo {
        major: u32::from(major),
        minor: u32::from(minor),
        extra: text::<{ version::EXTRAVERSION_LEN }>(version::XENVER_EXTRAVERSION),
        capabilities: text::<{ version::CAPABILITIES_LEN }>(version::XENVER_CAPABILITIES),
        scheduler: toolstack::sched_id().map_or_else(|_| String::new(), scheduler_name),
        pagesize: version::scalar(version::XENVER_PAGESIZE).map_or(4096, |p| p as u32),
        virt_start: version::platform_virt_start().unwrap_or(0),
        changeset: text::<{ version::CHANGESET_LEN }>(version::XENVER_CHANGESET),
        commandline: text::<{ version::COMMANDLINE_LEN }>(version::XENVER_COMMANDLINE),
        compiler: field(0, 64),
        compile_by: field(64, 80),
        compile_domain: field(80, 112),
        compile_date: field(112, 144),
        build_id: String::new(),
    };
    Ok(HostInfo {
        node: NodeInfo {
            host: "dom0".to_string(),
            release: env!("CARGO_PKG_VERSION").to_string(),
            version: "DualVisor dom0".to_string(),
            machine: "x86_64".to_string(),
        },
        phys: PhysInfo::from_sysctl(&phys),
        free_cpus: None,
        xen,
    })
}
