//! `xl info`: host, physical and Xen facts as `key                    : value` lines, in
//! xl 4.17's order (output_nodeinfo, output_physinfo, output_xeninfo).

use alloc::string::String;
use core::fmt::Write;
use dom0_interface::sysctl::{
    XenSysctlPhysinfo, XEN_SYSCTL_PHYSCAP_DIRECTIO, XEN_SYSCTL_PHYSCAP_GNTTAB_V1,
    XEN_SYSCTL_PHYSCAP_GNTTAB_V2, XEN_SYSCTL_PHYSCAP_HAP, XEN_SYSCTL_PHYSCAP_HVM,
    XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE, XEN_SYSCTL_PHYSCAP_PV, XEN_SYSCTL_PHYSCAP_SHADOW,
    XEN_SYSCTL_PHYSCAP_VMTRACE, XEN_SYSCTL_PHYSCAP_VPMU,
};

/// `XEN_SYSCTL_PHYSCAP_X86_ASSISTED_XAPIC` (arch capability bit 0).
pub const PHYSCAP_X86_ASSISTED_XAPIC: u32 = 1 << 0;
/// `XEN_SYSCTL_PHYSCAP_X86_ASSISTED_X2APIC` (arch capability bit 1).
pub const PHYSCAP_X86_ASSISTED_X2APIC: u32 = 1 << 1;

/// What `uname` tells of dom0 (xl's output_nodeinfo).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name.
    pub host: String,
    /// Kernel release.
    pub release: String,
    /// Kernel version.
    pub version: String,
    /// Machine, e.g. `x86_64`.
    pub machine: String,
}

/// `XEN_SYSCTL_physinfo` as libxl presents it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhysInfo {
    /// CPUs online.
    pub nr_cpus: u32,
    /// Largest CPU id.
    pub max_cpu_id: u32,
    /// NUMA nodes.
    pub nr_nodes: u32,
    /// Cores per socket.
    pub cores_per_socket: u32,
    /// Threads per core.
    pub threads_per_core: u32,
    /// CPU frequency, kHz.
    pub cpu_khz: u32,
    /// Hardware capability words.
    pub hw_cap: [u32; 8],
    /// `XEN_SYSCTL_PHYSCAP_*`.
    pub capabilities: u32,
    /// `XEN_SYSCTL_PHYSCAP_X86_*`.
    pub arch_capabilities: u32,
    /// Total pages.
    pub total_pages: u64,
    /// Free pages.
    pub free_pages: u64,
    /// Claimed, not yet allocated pages.
    pub outstanding_pages: u64,
    /// Pages freed by sharing.
    pub sharing_freed_pages: u64,
    /// Frames used by sharing.
    pub sharing_used_frames: u64,
}

impl PhysInfo {
    /// From `XEN_SYSCTL_physinfo` (sharing counters come from other calls and start at 0).
    pub fn from_sysctl(p: &XenSysctlPhysinfo) -> PhysInfo {
        PhysInfo {
            nr_cpus: p.nr_cpus,
            max_cpu_id: p.max_cpu_id,
            nr_nodes: p.nr_nodes,
            cores_per_socket: p.cores_per_socket,
            threads_per_core: p.threads_per_core,
            cpu_khz: p.cpu_khz,
            hw_cap: p.hw_cap,
            capabilities: p.capabilities,
            arch_capabilities: p.arch_capabilities,
            total_pages: p.total_pages,
            free_pages: p.free_pages,
            outstanding_pages: p.outstanding_pages,
            sharing_freed_pages: 0,
            sharing_used_frames: 0,
        }
    }

    /// The `virt_caps` words, each with its leading space (xl 4.17's list and order).
    pub fn virt_caps(&self) -> String {
        let cap = |f| self.capabilities & f != 0;
        let arch = |f| self.arch_capabilities & f != 0;
        let (pv, hvm, directio) = (
            cap(XEN_SYSCTL_PHYSCAP_PV),
            cap(XEN_SYSCTL_PHYSCAP_HVM),
            cap(XEN_SYSCTL_PHYSCAP_DIRECTIO),
        );
        let words = [
            (pv, " pv"),
            (hvm, " hvm"),
            (hvm && directio, " hvm_directio"),
            (pv && directio, " pv_directio"),
            (cap(XEN_SYSCTL_PHYSCAP_HAP), " hap"),
            (cap(XEN_SYSCTL_PHYSCAP_SHADOW), " shadow"),
            (
                cap(XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE),
                " iommu_hap_pt_share",
            ),
            (cap(XEN_SYSCTL_PHYSCAP_VMTRACE), " vmtrace"),
            (cap(XEN_SYSCTL_PHYSCAP_VPMU), " vpmu"),
            (cap(XEN_SYSCTL_PHYSCAP_GNTTAB_V1), " gnttab-v1"),
            (cap(XEN_SYSCTL_PHYSCAP_GNTTAB_V2), " gnttab-v2"),
            (arch(PHYSCAP_X86_ASSISTED_XAPIC), " assisted_xapic"),
            (arch(PHYSCAP_X86_ASSISTED_X2APIC), " assisted_x2apic"),
        ];
        words
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, w)| *w)
            .collect()
    }
}

/// What `xen_version` tells (libxl's `libxl_version_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XenInfo {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Extra version, e.g. `.0`.
    pub extra: String,
    /// `XENVER_capabilities`, e.g. `xen-3.0-x86_64 hvm-3.0-x86_32 ...`.
    pub capabilities: String,
    /// Scheduler name, e.g. `credit2`.
    pub scheduler: String,
    /// Page size in bytes.
    pub pagesize: u32,
    /// `XENVER_platform_parameters` virt_start.
    pub virt_start: u64,
    /// Changeset.
    pub changeset: String,
    /// Hypervisor command line.
    pub commandline: String,
    /// Compiler.
    pub compiler: String,
    /// Compiled by.
    pub compile_by: String,
    /// Compile domain.
    pub compile_domain: String,
    /// Compile date.
    pub compile_date: String,
    /// Build id (hex).
    pub build_id: String,
}

/// Everything `xl info` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// dom0's uname.
    pub node: NodeInfo,
    /// Physical facts.
    pub phys: PhysInfo,
    /// Free CPUs (not in any cpupool); `None` omits the line as xl does on failure.
    pub free_cpus: Option<u32>,
    /// Hypervisor facts.
    pub xen: XenInfo,
}

fn line(out: &mut String, key: &str, value: core::fmt::Arguments<'_>) {
    let _ = writeln!(out, "{key:<23}: {value}");
}

/// `xl info`.
pub fn info(h: &HostInfo) -> String {
    let mut out = String::new();
    let n = &h.node;
    line(&mut out, "host", format_args!("{}", n.host));
    line(&mut out, "release", format_args!("{}", n.release));
    line(&mut out, "version", format_args!("{}", n.version));
    line(&mut out, "machine", format_args!("{}", n.machine));
    let p = &h.phys;
    line(&mut out, "nr_cpus", format_args!("{}", p.nr_cpus as i32));
    line(
        &mut out,
        "max_cpu_id",
        format_args!("{}", p.max_cpu_id as i32),
    );
    line(&mut out, "nr_nodes", format_args!("{}", p.nr_nodes as i32));
    line(
        &mut out,
        "cores_per_socket",
        format_args!("{}", p.cores_per_socket as i32),
    );
    line(
        &mut out,
        "threads_per_core",
        format_args!("{}", p.threads_per_core as i32),
    );
    line(
        &mut out,
        "cpu_mhz",
        format_args!(
            "{}.{:03}",
            (p.cpu_khz / 1000) as i32,
            (p.cpu_khz % 1000) as i32
        ),
    );
    let c = &p.hw_cap;
    line(
        &mut out,
        "hw_caps",
        format_args!(
            "{:08x}:{:08x}:{:08x}:{:08x}:{:08x}:{:08x}:{:08x}:{:08x}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        ),
    );
    let _ = writeln!(out, "{:<23}:{}", "virt_caps", p.virt_caps());
    let pages_per_mib = u64::from(
        (1u32 << 20)
            .checked_div(h.xen.pagesize)
            .filter(|&n| n > 0)
            .unwrap_or(1),
    );
    line(
        &mut out,
        "total_memory",
        format_args!("{}", p.total_pages / pages_per_mib),
    );
    line(
        &mut out,
        "free_memory",
        format_args!(
            "{}",
            p.free_pages.saturating_sub(p.outstanding_pages) / pages_per_mib
        ),
    );
    line(
        &mut out,
        "sharing_freed_memory",
        format_args!("{}", p.sharing_freed_pages / pages_per_mib),
    );
    line(
        &mut out,
        "sharing_used_memory",
        format_args!("{}", p.sharing_used_frames / pages_per_mib),
    );
    line(
        &mut out,
        "outstanding_claims",
        format_args!("{}", p.outstanding_pages / pages_per_mib),
    );
    if let Some(free) = h.free_cpus {
        line(&mut out, "free_cpus", format_args!("{}", free as i32));
    }
    let x = &h.xen;
    line(&mut out, "xen_major", format_args!("{}", x.major as i32));
    line(&mut out, "xen_minor", format_args!("{}", x.minor as i32));
    line(&mut out, "xen_extra", format_args!("{}", x.extra));
    line(
        &mut out,
        "xen_version",
        format_args!("{}.{}{}", x.major as i32, x.minor as i32, x.extra),
    );
    line(&mut out, "xen_caps", format_args!("{}", x.capabilities));
    line(&mut out, "xen_scheduler", format_args!("{}", x.scheduler));
    line(&mut out, "xen_pagesize", format_args!("{}", x.pagesize));
    line(
        &mut out,
        "platform_params",
        format_args!("virt_start=0x{:x}", x.virt_start),
    );
    line(&mut out, "xen_changeset", format_args!("{}", x.changeset));
    line(
        &mut out,
        "xen_commandline",
        format_args!("{}", x.commandline),
    );
    line(&mut out, "cc_compiler", format_args!("{}", x.compiler));
    line(&mut out, "cc_compile_by", format_args!("{}", x.compile_by));
    line(
        &mut out,
        "cc_compile_domain",
        format_args!("{}", x.compile_domain),
    );
    line(
        &mut out,
        "cc_compile_date",
        format_args!("{}", x.compile_date),
    );
    line(&mut out, "build_id", format_args!("{}", x.build_id));
    line(&mut out, "xend_config_format", format_args!("4"));
    out
}

/// `xl info NAME`: the values of the lines whose text starts with `name` (xl's
/// `maybe_printf` filter: a prefix match, value after the first `": "`).
pub fn info_field(h: &HostInfo, name: &str) -> String {
    let mut out = String::new();
    for l in info(h).lines() {
        if !l.starts_with(name) {
            continue;
        }
        if let Some(colon) = l.find(':') {
            if let Some(v) = l[colon..].strip_prefix(": ") {
                out.push_str(v);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn host() -> HostInfo {
        HostInfo {
            node: NodeInfo {
                host: "dom0".into(),
                release: "0.1.0".into(),
                version: "#1 DualVisor dom0".into(),
                machine: "x86_64".into(),
            },
            phys: PhysInfo {
                nr_cpus: 4,
                max_cpu_id: 3,
                nr_nodes: 1,
                cores_per_socket: 4,
                threads_per_core: 1,
                cpu_khz: 2_994_372,
                hw_cap: [
                    0x178bfbff, 0xf6f83203, 0x2e500800, 0x000003f7, 0, 0x219c01a9, 0, 0x4,
                ],
                capabilities: XEN_SYSCTL_PHYSCAP_PV
                    | XEN_SYSCTL_PHYSCAP_HVM
                    | XEN_SYSCTL_PHYSCAP_HAP
                    | XEN_SYSCTL_PHYSCAP_SHADOW
                    | XEN_SYSCTL_PHYSCAP_GNTTAB_V1,
                arch_capabilities: 0,
                total_pages: 262_144,
                free_pages: 200_000,
                outstanding_pages: 256,
                sharing_freed_pages: 0,
                sharing_used_frames: 0,
            },
            free_cpus: Some(0),
            xen: XenInfo {
                major: 4,
                minor: 17,
                extra: ".0".into(),
                capabilities: "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64".into(),
                scheduler: "credit2".into(),
                pagesize: 4096,
                virt_start: 0xffff_8000_0000_0000,
                changeset: "".into(),
                commandline: "console=com1 loglvl=all".into(),
                compiler: "rustc 1.95.0".into(),
                compile_by: "dualvisor".into(),
                compile_domain: "".into(),
                compile_date: "2026-11-25".into(),
                build_id: "".into(),
            },
        }
    }

    #[test]
    fn golden_info() {
        let expected = "\
host                   : dom0
release                : 0.1.0
version                : #1 DualVisor dom0
machine                : x86_64
nr_cpus                : 4
max_cpu_id             : 3
nr_nodes               : 1
cores_per_socket       : 4
threads_per_core       : 1
cpu_mhz                : 2994.372
hw_caps                : 178bfbff:f6f83203:2e500800:000003f7:00000000:219c01a9:00000000:00000004
virt_caps              : pv hvm hap shadow gnttab-v1
total_memory           : 1024
free_memory            : 780
sharing_freed_memory   : 0
sharing_used_memory    : 0
outstanding_claims     : 1
free_cpus              : 0
xen_major              : 4
xen_minor              : 17
xen_extra              : .0
xen_version            : 4.17.0
xen_caps               : xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64
xen_scheduler          : credit2
xen_pagesize           : 4096
platform_params        : virt_start=0xffff800000000000
xen_changeset          : 
xen_commandline        : console=com1 loglvl=all
cc_compiler            : rustc 1.95.0
cc_compile_by          : dualvisor
cc_compile_domain      : 
cc_compile_date        : 2026-11-25
build_id               : 
xend_config_format     : 4
";
        assert_eq!(info(&host()), expected);
    }

    #[test]
    fn virt_caps_combinations() {
        let mut p = PhysInfo::default();
        assert_eq!(p.virt_caps(), "");
        p.capabilities = XEN_SYSCTL_PHYSCAP_PV | XEN_SYSCTL_PHYSCAP_DIRECTIO;
        assert_eq!(p.virt_caps(), " pv pv_directio");
        p.capabilities |=
            XEN_SYSCTL_PHYSCAP_HVM | XEN_SYSCTL_PHYSCAP_GNTTAB_V2 | XEN_SYSCTL_PHYSCAP_VPMU;
        p.arch_capabilities = PHYSCAP_X86_ASSISTED_XAPIC | PHYSCAP_X86_ASSISTED_X2APIC;
        assert_eq!(
            p.virt_caps(),
            " pv hvm hvm_directio pv_directio vpmu gnttab-v2 assisted_xapic assisted_x2apic"
        );
        let h = HostInfo::default();
        assert!(info(&h).contains("\nvirt_caps              :\n"));
        assert!(!info(&h).contains("free_cpus"));
    }

    #[test]
    fn filter_like_maybe_printf() {
        let h = host();
        assert_eq!(info_field(&h, "free_memory"), "780\n");
        assert_eq!(info_field(&h, "xen_version"), "4.17.0\n");
        // A prefix matches every line it begins.
        assert_eq!(info_field(&h, "xen_m"), "4\n17\n");
        assert_eq!(info_field(&h, "nosuch"), "");
        // virt_caps has no ": " after its colon unless it has capabilities.
        assert_eq!(info_field(&h, "virt_caps"), "pv hvm hap shadow gnttab-v1\n");
        assert_eq!(info_field(&HostInfo::default(), "virt_caps"), "");
    }

    #[test]
    fn from_physinfo_sysctl() {
        let s = XenSysctlPhysinfo {
            nr_cpus: 2,
            max_cpu_id: 1,
            cpu_khz: 1000,
            capabilities: XEN_SYSCTL_PHYSCAP_PV,
            total_pages: 1000,
            free_pages: 900,
            hw_cap: [1, 2, 3, 4, 5, 6, 7, 8],
            ..XenSysctlPhysinfo::default()
        };
        let p = PhysInfo::from_sysctl(&s);
        assert_eq!(
            (p.nr_cpus, p.max_cpu_id, p.cpu_khz, p.hw_cap[7]),
            (2, 1, 1000, 8)
        );
        assert_eq!(
            (p.total_pages, p.free_pages, p.virt_caps()),
            (1000, 900, " pv".to_string())
        );
        // A zero page size never divides by zero (counts are then shown as pages).
        let h = HostInfo {
            phys: p,
            ..HostInfo::default()
        };
        assert!(info(&h).contains("total_memory           : 1000\n"));
    }
}
