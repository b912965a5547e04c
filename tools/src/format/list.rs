//! `xl list`: one line per domain, Domain-0 first.

use super::{ljust, seconds};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use dom0_interface::domctl::{
    XenDomctlGetdomaininfo, XEN_DOMINF_BLOCKED, XEN_DOMINF_DYING, XEN_DOMINF_PAUSED,
    XEN_DOMINF_RUNNING, XEN_DOMINF_SHUTDOWN,
};

/// Page size the domctl page counts are in (KiB).
const PAGE_KIB: u64 = 4;

/// What xl shows of a domain (libxl's `libxl_dominfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainInfo {
    /// Domain id.
    pub domid: u32,
    /// Name (libxl reads it from xenstore; DualVisor's dom0 keeps it).
    pub name: String,
    /// UUID.
    pub uuid: [u8; 16],
    /// Memory allocated, KiB.
    pub current_kib: u64,
    /// Claimed but not yet allocated, KiB.
    pub outstanding_kib: u64,
    /// Memory limit, KiB.
    pub max_kib: u64,
    /// vCPUs online.
    pub vcpu_online: u32,
    /// Running on a physical CPU now.
    pub running: bool,
    /// Blocked waiting for an event.
    pub blocked: bool,
    /// Paused by the toolstack.
    pub paused: bool,
    /// Shut down (see `shutdown_reason`).
    pub shutdown: bool,
    /// Being destroyed.
    pub dying: bool,
    /// `SHUTDOWN_*` code when `shutdown` (poweroff 0, reboot 1, suspend 2, crash 3,
    /// watchdog 4, soft_reset 5).
    pub shutdown_reason: u32,
    /// CPU time used, ns.
    pub cpu_time_ns: u64,
}

impl DomainInfo {
    /// Maps `XEN_DOMCTL_getdomaininfo` output as libxl's `xcinfo2xlinfo` does.
    pub fn from_domctl(info: &XenDomctlGetdomaininfo, name: &str) -> DomainInfo {
        let flag = |f| info.flags & f != 0;
        let shutdown = flag(XEN_DOMINF_SHUTDOWN);
        DomainInfo {
            domid: u32::from(info.domain),
            name: String::from(name),
            uuid: info.handle,
            current_kib: info.tot_pages.saturating_mul(PAGE_KIB),
            outstanding_kib: info.outstanding_pages.saturating_mul(PAGE_KIB),
            max_kib: info.max_pages.saturating_mul(PAGE_KIB),
            vcpu_online: info.nr_online_vcpus,
            running: flag(XEN_DOMINF_RUNNING),
            blocked: flag(XEN_DOMINF_BLOCKED),
            paused: flag(XEN_DOMINF_PAUSED),
            shutdown,
            dying: flag(XEN_DOMINF_DYING),
            shutdown_reason: if shutdown { info.shutdown_code() } else { 0 },
            cpu_time_ns: info.cpu_time,
        }
    }

    /// The six state letters of `xl list` (`r b p s <reason> d`, `-` when clear).
    pub fn state(&self) -> [char; 6] {
        const REASONS: [char; 6] = ['-', 'r', 's', 'c', 'w', 'S'];
        let reason = if self.shutdown {
            self.shutdown_reason
        } else {
            0
        };
        let on = |b: bool, c: char| if b { c } else { '-' };
        [
            on(self.running, 'r'),
            on(self.blocked, 'b'),
            on(self.paused, 'p'),
            on(self.shutdown, 's'),
            REASONS.get(reason as usize).copied().unwrap_or('?'),
            on(self.dying, 'd'),
        ]
    }
}

/// The `xl list` header line (without newline).
pub const LIST_HEADER: &str =
    "Name                                        ID   Mem VCPUs\tState\tTime(s)";

/// `xl list`: the header and one line per domain, sorted by domain id (Domain-0 first).
pub fn list(domains: &[DomainInfo]) -> String {
    let mut sorted: Vec<&DomainInfo> = domains.iter().collect();
    sorted.sort_by_key(|d| d.domid);
    let mut out = String::from(LIST_HEADER);
    out.push('\n');
    for d in sorted {
        ljust(&mut out, &d.name, 40);
        let mem_mib = d.current_kib.saturating_add(d.outstanding_kib) / 1024;
        let _ = write!(out, " {:5} {:5} {:5}     ", d.domid, mem_mib, d.vcpu_online);
        out.extend(d.state());
        out.push_str("  ");
        seconds(&mut out, d.cpu_time_ns, 8);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom0_interface::domctl::{XEN_DOMINF_SHUTDOWNSHIFT, XEN_INVALID_MAX_VCPU_ID};

    fn dom(domid: u32, name: &str, mib: u64, vcpus: u32, ns: u64) -> DomainInfo {
        DomainInfo {
            domid,
            name: name.into(),
            current_kib: mib * 1024,
            max_kib: mib * 1024,
            vcpu_online: vcpus,
            cpu_time_ns: ns,
            ..DomainInfo::default()
        }
    }

    #[test]
    fn golden_list() {
        let mut demo = dom(3, "demo1", 64, 1, 1_234_567_890);
        demo.blocked = true;
        let mut paused = dom(4, "demo2", 32, 2, 0);
        paused.paused = true;
        let mut crashed = dom(5, "demo3", 16, 1, 50_000_000);
        crashed.shutdown = true;
        crashed.shutdown_reason = 3;
        let mut dom0 = dom(0, "Domain-0", 512, 1, 15_600_000_000);
        dom0.running = true;
        let out = list(&[demo, paused, dom0, crashed]);
        let expected = "\
Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0   512     1     r-----      15.6
demo1                                        3    64     1     -b----       1.2
demo2                                        4    32     2     --p---       0.0
demo3                                        5    16     1     ---sc-       0.1
";
        assert_eq!(out, expected);
    }

    #[test]
    fn long_names_and_odd_reasons() {
        let mut d = dom(
            7,
            "a-very-long-domain-name-that-exceeds-forty-chars",
            1,
            1,
            0,
        );
        d.shutdown = true;
        d.shutdown_reason = 200;
        d.dying = true;
        d.outstanding_kib = 1024;
        let out = list(&[d]);
        assert_eq!(
            out.lines().nth(1).unwrap(),
            "a-very-long-domain-name-that-exceeds-forty-chars     7     2     1     ---s?d       0.0"
        );
        // A reason without `shutdown` shows '-'.
        let mut d = dom(1, "x", 1, 1, 0);
        d.shutdown_reason = 1;
        assert_eq!(d.state(), ['-'; 6]);
    }

    #[test]
    fn from_getdomaininfo() {
        let info = XenDomctlGetdomaininfo {
            domain: 3,
            flags: XEN_DOMINF_SHUTDOWN | XEN_DOMINF_PAUSED | (1 << XEN_DOMINF_SHUTDOWNSHIFT),
            tot_pages: 16384,
            max_pages: 32768,
            outstanding_pages: 256,
            cpu_time: 42,
            nr_online_vcpus: 2,
            max_vcpu_id: XEN_INVALID_MAX_VCPU_ID,
            handle: [7; 16],
            ..XenDomctlGetdomaininfo::default()
        };
        let d = DomainInfo::from_domctl(&info, "demo1");
        assert_eq!(d.domid, 3);
        assert_eq!(
            (d.current_kib, d.max_kib, d.outstanding_kib),
            (65536, 131072, 1024)
        );
        assert_eq!(d.state(), ['-', '-', 'p', 's', 'r', '-']);
        assert_eq!((d.vcpu_online, d.cpu_time_ns, d.uuid), (2, 42, [7; 16]));
        let running = XenDomctlGetdomaininfo {
            flags: XEN_DOMINF_RUNNING
                | XEN_DOMINF_BLOCKED
                | XEN_DOMINF_DYING
                | (3 << XEN_DOMINF_SHUTDOWNSHIFT),
            ..info
        };
        let d = DomainInfo::from_domctl(&running, "x");
        assert_eq!(d.state(), ['r', 'b', '-', '-', '-', 'd']);
        assert_eq!(d.shutdown_reason, 0);
    }
}
