//! `xl vcpu-list`: one line per vCPU of each domain.

use super::{bitmap, ljust, seconds};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use dom0_interface::domctl::XenDomctlGetvcpuinfo;

/// One vCPU as `libxl_vcpuinfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// vCPU id.
    pub vcpuid: u32,
    /// Physical CPU it last ran on.
    pub cpu: u32,
    /// Online.
    pub online: bool,
    /// Blocked waiting for an event.
    pub blocked: bool,
    /// Running now.
    pub running: bool,
    /// CPU time, ns.
    pub vcpu_time_ns: u64,
    /// Hard affinity bitmap (bit n = physical CPU n).
    pub hard_affinity: Vec<u8>,
    /// Soft affinity bitmap.
    pub soft_affinity: Vec<u8>,
}

impl VcpuInfo {
    /// From `XEN_DOMCTL_getvcpuinfo`, with affinity to every one of `nr_cpus` CPUs (DualVisor
    /// does not pin vCPUs).
    pub fn from_domctl(v: &XenDomctlGetvcpuinfo, nr_cpus: u32) -> VcpuInfo {
        let all = all_cpus(nr_cpus);
        VcpuInfo {
            vcpuid: v.vcpu,
            cpu: v.cpu,
            online: v.online != 0,
            blocked: v.blocked != 0,
            running: v.running != 0,
            vcpu_time_ns: v.cpu_time,
            hard_affinity: all.clone(),
            soft_affinity: all,
        }
    }
}

/// A bitmap with the first `nr` bits set.
pub fn all_cpus(nr: u32) -> Vec<u8> {
    let nr = nr as usize;
    let mut map = alloc::vec![0u8; nr.div_ceil(8)];
    for i in 0..nr {
        map[i / 8] |= 1 << (i % 8);
    }
    map
}

/// The `xl vcpu-list` header line (with newline).
pub fn vcpu_list_header() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:>5} {:>5} {:>5} {:>5} {:>9} Affinity (Hard / Soft)",
        "Name", "ID", "VCPU", "CPU", "State", "Time(s)"
    );
    out
}

/// The lines of one domain's vCPUs; `nr_cpus` is the host's CPU count (bitmap width).
pub fn vcpu_lines(name: &str, domid: u32, vcpus: &[VcpuInfo], nr_cpus: u32) -> String {
    let mut out = String::new();
    for v in vcpus {
        ljust(&mut out, name, 32);
        let _ = write!(out, " {domid:5} {:5}", v.vcpuid);
        if v.online {
            let r = if v.running { 'r' } else { '-' };
            let b = if v.blocked { 'b' } else { '-' };
            let _ = write!(out, "{:5} {:>3}{b}- ", v.cpu, r);
        } else {
            let _ = write!(out, "{:>5} {:>3}-p ", '-', '-');
        }
        seconds(&mut out, v.vcpu_time_ns, 9);
        out.push_str("  ");
        out.push_str(&bitmap(&v.hard_affinity, nr_cpus as usize));
        out.push_str(" / ");
        out.push_str(&bitmap(&v.soft_affinity, nr_cpus as usize));
        out.push('\n');
    }
    out
}

/// `xl vcpu-list`: the header, then each `(name, domid, vcpus)` in the order given.
pub fn vcpu_list(domains: &[(&str, u32, &[VcpuInfo])], nr_cpus: u32) -> String {
    let mut out = vcpu_list_header();
    for (name, domid, vcpus) in domains {
        out.push_str(&vcpu_lines(name, *domid, vcpus, nr_cpus));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_vcpu_list() {
        let v0 = VcpuInfo {
            vcpuid: 0,
            cpu: 1,
            online: true,
            running: true,
            vcpu_time_ns: 15_600_000_000,
            hard_affinity: all_cpus(4),
            soft_affinity: all_cpus(4),
            ..VcpuInfo::default()
        };
        let v1 = VcpuInfo {
            vcpuid: 1,
            cpu: 3,
            online: true,
            blocked: true,
            vcpu_time_ns: 250_000_000,
            hard_affinity: alloc::vec![0b0000_0110],
            soft_affinity: all_cpus(4),
            ..VcpuInfo::default()
        };
        let off = VcpuInfo {
            vcpuid: 2,
            online: false,
            hard_affinity: all_cpus(4),
            soft_affinity: alloc::vec![0],
            ..VcpuInfo::default()
        };
        let dom0 = [v0];
        let demo = [v1, off];
        let out = vcpu_list(&[("Domain-0", 0, &dom0), ("demo1", 3, &demo)], 4);
        let expected = "\
Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)
Domain-0                             0     0    1   r--      15.6  all / all
demo1                                3     1    3   -b-       0.2  1-2 / all
demo1                                3     2    -   --p       0.0  all / none
";
        assert_eq!(out, expected);
    }

    #[test]
    fn from_getvcpuinfo() {
        let raw = XenDomctlGetvcpuinfo {
            vcpu: 1,
            online: 1,
            blocked: 0,
            running: 1,
            cpu_time: 9,
            cpu: 2,
        };
        let v = VcpuInfo::from_domctl(&raw, 3);
        assert_eq!(
            (v.vcpuid, v.cpu, v.online, v.running, v.blocked),
            (1, 2, true, true, false)
        );
        assert_eq!(v.hard_affinity, alloc::vec![0b111]);
        assert_eq!(all_cpus(9), alloc::vec![0xff, 0x01]);
        assert_eq!(all_cpus(0), Vec::<u8>::new());
    }
}
