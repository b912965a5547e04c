//! `mca`: the machine-check hypercall (`HYPERVISOR_mca`, 48) as dom0 sees it on Xen 4.17:
//! `XEN_MC_physcpuinfo` counts the online CPUs and describes each (numbers, APIC and
//! topology ids, CPUID identity, MCG_CAP), `XEN_MC_fetch` finds no telemetry on a machine
//! without machine checks, and the errnos for a wrong interface version, command, flags or
//! buffer. (Not asked: physcpuinfo with fewer entries than CPUs, which overruns Xen 4.17's
//! heap; the injection commands.)
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::hypercall::{call_with_bad_ptr, BadPtr};
use guest_rt::mca::{self, *};
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, pvcpu, Errno, XenResult};

guest_rt::entry!(main);
guest_rt::no_heap!();

fn fetch(flags: u32, id: u64, data: u64) -> (XenResult, XenMcFetch) {
    let q = XenMcFetch {
        flags,
        pad0: 0,
        fetch_id: id,
        data,
    };
    let mut u = [0u8; 24];
    let _ = q.write_to(&mut u);
    let mut b = mca::op(XEN_MC_FETCH, XEN_MCA_INTERFACE_VERSION, &u);
    let r = mca::call(&mut b);
    (r, XenMcFetch::read_from(&b[XEN_MC_U..]).unwrap_or_default())
}

fn main(_si: &StartInfo) {
    println!("mca: machine-check hypercall test guest");
    physcpuinfo();
    fetches();
    errors();
}

/// The physical CPUs as `platform_op`'s `XENPF_get_cpuinfo` lists them: their APIC ids.
fn pcpus() -> ([u32; 8], u32) {
    let mut ids = [0u32; 8];
    let mut n = 0;
    for cpu in 0..8u32 {
        match pvcpu::pcpu_info(cpu) {
            Ok(i) if i.flags & 1 != 0 => ids[cpu as usize] = i.apic_id,
            _ => break,
        }
        n += 1;
    }
    (ids, n)
}

fn physcpuinfo() {
    let (ids, online) = pcpus();
    info(format_args!("{online} physical CPUs online (platform_op)"));
    let Ok(n) = mca::physcpuinfo(&mut []) else {
        check_eq(
            "XEN_MC_physcpuinfo count",
            mca::physcpuinfo(&mut []),
            Ok(online),
        );
        return;
    };
    check_eq("XEN_MC_physcpuinfo counts the CPUs online", n, online);
    let mut cpus = [McLogicalCpu::default(); 8];
    check_eq(
        "XEN_MC_physcpuinfo with room for 8 fills one per CPU",
        mca::physcpuinfo(&mut cpus),
        Ok(online),
    );
    let l0 = pvcpu::xen_cpuid(0, 0);
    let l1 = pvcpu::xen_cpuid(1, 0);
    let family = ((l1[0] >> 8) & 0xf) + ((l1[0] >> 20) & 0xff);
    let model = ((l1[0] >> 4) & 0xf) | (((l1[0] >> 16) & 0xf) << 4);
    let mut vendor = [0u8; 12];
    for (i, w) in [l0[1], l0[3], l0[2]].iter().enumerate() {
        vendor[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    for (i, c) in cpus.iter().take(online as usize).enumerate() {
        let apic = ids[i];
        let i = i as u32;
        info(format_args!(
            "cpu {} chip {} core {} thread {} apic {} cluster {} cores {}/{} threads {}",
            c.mc_cpunr,
            c.mc_chipid,
            c.mc_coreid,
            c.mc_threadid,
            c.mc_apicid,
            c.mc_clusterid,
            c.mc_ncores_active,
            c.mc_ncores,
            c.mc_nthreads
        ));
        check_eq("  ... its number", c.mc_cpunr, i);
        // QEMU's -smp N: one package of N single-thread cores.
        check_eq(
            "  ... one package of single-thread cores: chip, core, thread, APIC, cluster",
            (
                c.mc_chipid,
                c.mc_coreid,
                c.mc_threadid,
                c.mc_apicid,
                c.mc_clusterid,
            ),
            (0, apic as u16, 0, apic, apic),
        );
        check_eq(
            "  ... cores, active cores, threads",
            (c.mc_ncores, c.mc_ncores_active, c.mc_nthreads),
            (online, online, 1),
        );
        check_eq(
            "  ... CPUID level, family, model, stepping as CPUID says",
            (c.mc_cpuid_level, c.mc_family, c.mc_model, c.mc_step),
            (l0[0] as i32, family, model, l1[0] & 0xf),
        );
        check_eq("  ... vendor string", &c.mc_vendorid[..12], &vendor[..]);
        check_eq("  ... vendor number (AMD: 2)", c.mc_vendor, 2);
        check_eq(
            "  ... brand string",
            mca::cstr_bytes(&c.mc_brandid),
            &b"AMD EPYC Processor"[..],
        );
        check_eq(
            "  ... last-level cache and line size",
            (c.mc_cache_size, c.mc_cache_alignment),
            (8192, 64),
        );
        check_eq(
            "  ... feature words 0, 2-6",
            (c.mc_cpu_caps[0], &c.mc_cpu_caps[2..]),
            (0x178b_f3fd, &[0x2c50_0800, 0x77, 5, 0x0088_01a9, 0][..]),
        );
        check_eq("  ... one MSR value", c.mc_nmsrvals, 1);
        check_eq(
            "  ... MCG_CAP (0x179) as QEMU has it: 10 banks, MCG_CTL_P, SER_P",
            (c.mc_msrvalues[0].reg, c.mc_msrvalues[0].value),
            (0x179, 0x0100_010a),
        );
    }
    check(
        "  ... entries past the CPUs untouched",
        cpus[online as usize..]
            .iter()
            .all(|c| *c == McLogicalCpu::default()),
    );
}

fn fetches() {
    let buf = [0u64; 128];
    let data = buf.as_ptr() as u64;
    for flags in [XEN_MC_NONURGENT, XEN_MC_URGENT] {
        let (r, f) = fetch(flags, 7, data);
        check_eq("XEN_MC_fetch: nothing to fetch", (flags, r), (flags, Ok(0)));
        check_eq(
            "  ... flags XEN_MC_NODATA, fetch id 0",
            (f.flags, f.fetch_id),
            (XEN_MC_NODATA, 0),
        );
    }
    check("  ... the buffer untouched", buf.iter().all(|&w| w == 0));
    for flags in [0, XEN_MC_NONURGENT | XEN_MC_URGENT, XEN_MC_ACK] {
        check_eq(
            "XEN_MC_fetch neither or both of URGENT/NONURGENT -> -EINVAL",
            (flags, fetch(flags, 0, data).0),
            (flags, Err(Errno::EINVAL)),
        );
    }
    check_eq(
        "XEN_MC_fetch without a buffer -> -EINVAL",
        fetch(XEN_MC_NONURGENT, 0, 0).0,
        Err(Errno::EINVAL),
    );
    let (r, f) = fetch(XEN_MC_URGENT | XEN_MC_ACK, 5, 0);
    check_eq("XEN_MC_fetch ack (no buffer needed)", r, Ok(0));
    check_eq(
        "  ... nothing written back",
        (f.flags, f.fetch_id),
        (XEN_MC_URGENT | XEN_MC_ACK, 5),
    );
}

fn errors() {
    // (ncpus 4 below: more entries than CPUs, as Xen 4.17 needs.)
    let mut b = mca::op(XEN_MC_PHYSCPUINFO, XEN_MCA_INTERFACE_VERSION - 1, &[]);
    check_eq(
        "wrong interface version -> -EACCES",
        mca::call(&mut b),
        Err(Errno::EACCES),
    );
    for cmd in [0, XEN_MC_NOTIFYDOMAIN, 99] {
        let mut b = mca::op(cmd, XEN_MCA_INTERFACE_VERSION, &[]);
        check_eq(
            "unknown or unsupported command -> -EINVAL",
            (cmd, mca::call(&mut b)),
            (cmd, Err(Errno::EINVAL)),
        );
    }
    let buf = [0u64; 64];
    let mut u = [0u8; 16];
    let q = XenMcPhyscpuinfo {
        ncpus: 0,
        pad0: 0,
        info: buf.as_ptr() as u64,
    };
    let _ = q.write_to(&mut u);
    let mut b = mca::op(XEN_MC_PHYSCPUINFO, XEN_MCA_INTERFACE_VERSION, &u);
    check_eq(
        "XEN_MC_physcpuinfo with a buffer of 0 entries -> -EINVAL",
        mca::call(&mut b),
        Err(Errno::EINVAL),
    );
    let q = XenMcPhyscpuinfo {
        ncpus: 4,
        pad0: 0,
        info: BadPtr::HYPERVISOR.addr(),
    };
    let _ = q.write_to(&mut u);
    let mut b = mca::op(XEN_MC_PHYSCPUINFO, XEN_MCA_INTERFACE_VERSION, &u);
    check_eq(
        "XEN_MC_physcpuinfo into Xen's range -> -EFAULT",
        mca::call(&mut b),
        Err(Errno::EFAULT),
    );
    check_eq(
        "  ... the count (min(CPUs, 4)) written back even so",
        XenMcPhyscpuinfo::read_from(&b[XEN_MC_U..]).map(|q| q.ncpus),
        Ok(pcpus().1.min(4)),
    );
    for bad in [BadPtr::NULL, BadPtr::HYPERVISOR, BadPtr::NON_CANONICAL] {
        check_eq(
            "HYPERVISOR_mca with a bad op pointer -> -EFAULT",
            call_with_bad_ptr(HYPERVISOR_MCA, bad.addr(), BadPtr::NULL),
            Err(Errno::EFAULT),
        );
    }
}
