//! `HYPERVISOR_mca` (48, `do_mca`) as Xen 4.17 answers a PV dom0: the physical CPUs machine
//! checks are reported for (`XEN_MC_physcpuinfo`, which Linux's xen-mcelog reads at boot)
//! and the telemetry fetch. DualVisor treats a machine check in its own execution as fatal
//! and keeps no telemetry, so a fetch always finds none (`XEN_MC_NODATA`), as Xen's does
//! on a machine that had none. Injection (msrinject, mceinject, inject_v2) is not offered:
//! -ENOSYS, logged once.

use crate::hv::{value_kind, Ctx, HvResult, HvState};
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen_mca::*;

/// `MSR_IA32_MCG_CAP`.
const MSR_MCG_CAP: u64 = 0x179;
/// CPUID.1:EDX.SEP.
const SEP: u32 = 1 << 11;
/// `CPUID_COMMON_1D_FEATURES`: the 0x80000001 EDX bits AMD repeats from leaf 1.
const COMMON_1D: u32 = 0x0183_f3ff;
/// CPU numbers looked at for the online count (as `platform_op`'s `get_cpuinfo`).
const MAX_PCPUS: u32 = 64;

/// `do_mca(op)`: the caller's privilege first (-EPERM, `xsm_do_mca`), then the whole
/// `xen_mc` copied in (-EFAULT) and its interface version (-EACCES).
pub fn mca(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    if !super::is_privileged(state, ctx.dom()) {
        return Err(XenErrno::EPERM.into());
    }
    let arg = ctx.req.args[0];
    let mut op = [0u8; XEN_MC_SIZE];
    ctx.copy_from_guest(arg, &mut op)?;
    let word = |i: usize| u32::from_le_bytes([op[i], op[i + 1], op[i + 2], op[i + 3]]);
    let (cmd, version) = (word(0), word(4));
    if version != XEN_MCA_INTERFACE_VERSION {
        return Err(XenErrno::EACCES.into());
    }
    match cmd {
        XEN_MC_FETCH => {
            let f = XenMcFetch::read_from(&op[XEN_MC_U..]).map_err(|_| XenErrno::EFAULT)?;
            fetch(ctx, arg, op, f)
        }
        XEN_MC_PHYSCPUINFO => {
            let q = XenMcPhyscpuinfo::read_from(&op[XEN_MC_U..]).map_err(|_| XenErrno::EFAULT)?;
            physcpuinfo(ctx, arg, op, q)
        }
        XEN_MC_MSRINJECT | XEN_MC_MCEINJECT | XEN_MC_INJECT_V2 => {
            super::unknown_subop(state, ctx, "mca", u64::from(cmd))
        }
        // notifydomain included: Xen 4.17 answers "unsupported" with -EINVAL.
        _ => Err(XenErrno::EINVAL.into()),
    }
}

/// `XEN_MC_fetch`: exactly one of URGENT / NONURGENT (-EINVAL); an ack is taken as is;
/// otherwise the data handle must be set (-EINVAL) and the answer is `XEN_MC_NODATA` with
/// fetch id 0, written back into the caller's `xen_mc`.
fn fetch(
    ctx: &mut Ctx<'_, '_, '_>,
    arg: u64,
    mut op: [u8; XEN_MC_SIZE],
    f: XenMcFetch,
) -> HvResult {
    match f.flags & (XEN_MC_NONURGENT | XEN_MC_URGENT) {
        XEN_MC_NONURGENT | XEN_MC_URGENT => {}
        _ => return Err(XenErrno::EINVAL.into()),
    }
    if f.flags & XEN_MC_ACK != 0 {
        return Ok(0);
    }
    if f.data == 0 {
        return Err(XenErrno::EINVAL.into());
    }
    let out = XenMcFetch {
        flags: XEN_MC_OK | XEN_MC_NODATA,
        fetch_id: 0,
        ..f
    };
    out.write_to(&mut op[XEN_MC_U..])
        .map_err(|_| XenErrno::EFAULT)?;
    ctx.copy_to_guest(arg, &op)?;
    Ok(0)
}

/// `XEN_MC_physcpuinfo`: with a null `info` only the number of online CPUs; else
/// `ncpus` > 0 (-EINVAL) and an entry for each of the first `min(ncpus, online)` CPUs
/// (-EFAULT if they cannot be written, after the count was written back). Xen 4.17 fills an
/// entry for every online CPU into an array of `min(ncpus, online)`: with fewer entries
/// than CPUs it overruns its heap (measured: a fatal page fault in `xmem_pool_free`);
/// DualVisor writes only the entries asked for.
fn physcpuinfo(
    ctx: &mut Ctx<'_, '_, '_>,
    arg: u64,
    mut op: [u8; XEN_MC_SIZE],
    q: XenMcPhyscpuinfo,
) -> HvResult {
    let mut apic_ids = Vec::new();
    for i in 0..MAX_PCPUS {
        let cpu = ctx.value(value_kind::host_pcpu(i))?;
        if cpu & value_kind::HOST_PCPU_UP == 0 {
            break;
        }
        apic_ids.push(cpu as u32);
    }
    let mut n = apic_ids.len() as u32;
    let mut result = Ok(0);
    if q.info != 0 {
        if q.ncpus == 0 || q.ncpus > i32::MAX as u32 {
            return Err(XenErrno::EINVAL.into());
        }
        n = n.min(q.ncpus);
        let host = Host::read(ctx)?;
        let mut bytes = alloc::vec![0u8; n as usize * McLogicalCpu::SIZE];
        for (i, chunk) in bytes.chunks_exact_mut(McLogicalCpu::SIZE).enumerate() {
            let entry = host.logical_cpu(i as u32, &apic_ids);
            entry.write_to(chunk).map_err(|_| XenErrno::EFAULT)?;
        }
        // A failed copy is reported after the count is written back, as Xen does.
        if let Err(e) = ctx.copy_to_guest(q.info, &bytes) {
            result = Err(e);
        }
    }
    let out = XenMcPhyscpuinfo { ncpus: n, ..q };
    out.write_to(&mut op[XEN_MC_U..])
        .map_err(|_| XenErrno::EFAULT)?;
    ctx.copy_to_guest(arg, &op)?;
    result
}

/// What every CPU reports alike (the CPUs of a machine DualVisor runs on are identical; Xen
/// reads each CPU's own, which are the same values), from the leader's CPUID and MSRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Leaf 0: max basic leaf, vendor words (EBX, EDX, ECX).
    pub leaf0: [u32; 4],
    /// Leaf 1.
    pub leaf1: [u32; 4],
    /// Leaf 7.0 EBX, ECX.
    pub leaf7: [u32; 2],
    /// Leaf 0xd.1 EAX.
    pub xsave1_eax: u32,
    /// Leaf 0xb subleaves 0 and 1 EAX (x2APIC id shift of threads, of cores) and ECX (level
    /// types); zero without leaf 0xb.
    pub topo: [[u32; 2]; 2],
    /// Leaf 0x80000001 ECX, EDX.
    pub ext1: [u32; 2],
    /// Brand string (leaves 0x80000002-4).
    pub brand: [u8; 48],
    /// Leaf 0x80000006 ECX (L2 size in KiB in bits 16-31) and EDX (L3 size in 512 KiB
    /// units in bits 18-31).
    pub ext6: [u32; 2],
    /// Leaf 0x80000008 ECX (cores per package - 1 in bits 0-7).
    pub ext8_ecx: u32,
    /// `MSR_IA32_MCG_CAP`.
    pub mcg_cap: u64,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            leaf0: [0; 4],
            leaf1: [0; 4],
            leaf7: [0; 2],
            xsave1_eax: 0,
            topo: [[0; 2]; 2],
            ext1: [0; 2],
            brand: [0; 48],
            ext6: [0; 2],
            ext8_ecx: 0,
            mcg_cap: 0,
        }
    }
}

/// Xen's `X86_VENDOR_*` numbers.
fn vendor_number(leaf0: &[u32; 4]) -> u32 {
    match (leaf0[1], leaf0[3], leaf0[2]) {
        (0x756e_6547, 0x4965_6e69, 0x6c65_746e) => 1, // GenuineIntel
        (0x6874_7541, 0x6974_6e65, 0x444d_4163) => 1 << 1, // AuthenticAMD
        (0x6f67_7948, 0x6e65_476e, 0x656e_6975) => 1 << 4, // HygonGenuine
        _ => 0,
    }
}

impl Host {
    /// Reads the values from the input log.
    pub fn read(ctx: &mut Ctx<'_, '_, '_>) -> Result<Host, crate::hv::HvError> {
        let mut c = |leaf: u32, sub: u32, reg: u32| -> Result<u32, crate::hv::HvError> {
            Ok(ctx.value(value_kind::host_cpuid_raw(leaf, sub, reg))? as u32)
        };
        let mut h = Host::default();
        for r in 0..4 {
            h.leaf0[r as usize] = c(0, 0, r)?;
            h.leaf1[r as usize] = c(1, 0, r)?;
        }
        let max = h.leaf0[0];
        if max >= 7 {
            h.leaf7 = [c(7, 0, 1)?, c(7, 0, 2)?];
        }
        if max >= 0xb {
            for sub in 0..2u32 {
                h.topo[sub as usize] = [c(0xb, sub, 0)?, c(0xb, sub, 2)?];
            }
        }
        if max >= 0xd {
            h.xsave1_eax = c(0xd, 1, 0)?;
        }
        let max_ext = c(0x8000_0000, 0, 0)?;
        if max_ext >= 0x8000_0001 {
            h.ext1 = [c(0x8000_0001, 0, 2)?, c(0x8000_0001, 0, 3)?];
        }
        if max_ext >= 0x8000_0004 {
            for (i, leaf) in (0x8000_0002..=0x8000_0004u32).enumerate() {
                for r in 0..4u32 {
                    let w = c(leaf, 0, r)?.to_le_bytes();
                    let at = i * 16 + r as usize * 4;
                    h.brand[at..at + 4].copy_from_slice(&w);
                }
            }
        }
        if max_ext >= 0x8000_0006 {
            h.ext6 = [c(0x8000_0006, 0, 2)?, c(0x8000_0006, 0, 3)?];
        }
        if max_ext >= 0x8000_0008 {
            h.ext8_ecx = c(0x8000_0008, 0, 2)?;
        }
        h.mcg_cap = match value_kind::host_rdmsr(MSR_MCG_CAP as u32) {
            Some(k) => ctx.value(k)?,
            None => 0,
        };
        Ok(h)
    }

    /// Family, model and stepping as Xen's `cpuinfo_x86` (extended family/model folded in).
    fn signature(&self) -> (u32, u32, u32) {
        let eax = self.leaf1[0];
        let mut family = (eax >> 8) & 0xf;
        let mut model = (eax >> 4) & 0xf;
        if family == 0xf {
            family += (eax >> 20) & 0xff;
        }
        if family >= 0x6 {
            model += ((eax >> 16) & 0xf) << 4;
        }
        (family, model, eax & 0xf)
    }

    /// The last-level cache in KiB, as `cpuinfo_x86.x86_cache_size` (`l3 ? l3 : l2`; on AMD
    /// from leaf 0x80000006).
    fn cache_kib(&self) -> u32 {
        match (self.ext6[1] >> 18) * 512 {
            0 => self.ext6[0] >> 16,
            l3 => l3,
        }
    }

    /// Bits of an APIC id below the core id and below the package id.
    fn id_shifts(&self) -> (u32, u32) {
        let level = |sub: usize| (self.topo[sub][1] >> 8) & 0xff;
        if level(0) == 1 && level(1) == 2 {
            return (self.topo[0][0] & 0x1f, self.topo[1][0] & 0x1f);
        }
        // AMD without leaf 0xb: ApicIdCoreIdSize, or enough bits for the cores.
        let size = (self.ext8_ecx >> 12) & 0xf;
        let cores = (self.ext8_ecx & 0xff) + 1;
        let bits = if size != 0 {
            size
        } else {
            32 - (cores.max(1) - 1).leading_zeros()
        };
        (0, bits)
    }

    /// CPU `cpu`'s entry; `apic_ids` are every online CPU's.
    pub fn logical_cpu(&self, cpu: u32, apic_ids: &[u32]) -> McLogicalCpu {
        let apic = apic_ids.get(cpu as usize).copied().unwrap_or(0);
        let (smt, pkg) = self.id_shifts();
        let chip = |a: u32| a.checked_shr(pkg).unwrap_or(0);
        let (family, model, step) = self.signature();
        let vendor = vendor_number(&self.leaf0);
        let mut vendorid = [0u8; 16];
        for (i, w) in [self.leaf0[1], self.leaf0[3], self.leaf0[2]]
            .iter()
            .enumerate()
        {
            vendorid[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        let mut brandid = [0u8; 64];
        brandid[..48].copy_from_slice(&self.brand);
        // Xen's `cpuinfo_x86.x86_model_id`: the brand string without leading blanks.
        let lead = brandid.iter().take_while(|&&b| b == b' ').count();
        brandid.copy_within(lead.., 0);
        let amd = vendor == 1 << 1 || vendor == 1 << 4;
        let cores_per_chip = if amd {
            (self.ext8_ecx & 0xff) + 1
        } else {
            (1u32 << pkg.saturating_sub(smt)).max(1)
        };
        let mut msrs = [McinfoMsr::default(); MC_MSR_ARRAYSIZE];
        msrs[0] = McinfoMsr {
            reg: MSR_MCG_CAP,
            value: self.mcg_cap,
        };
        McLogicalCpu {
            mc_cpunr: cpu,
            mc_chipid: chip(apic),
            mc_coreid: ((apic >> smt) & ((1u32 << pkg.saturating_sub(smt)) - 1)) as u16,
            mc_threadid: (apic & ((1u32 << smt) - 1)) as u16,
            mc_apicid: apic,
            mc_clusterid: apic,
            mc_ncores: cores_per_chip,
            mc_ncores_active: apic_ids.iter().filter(|&&a| chip(a) == chip(apic)).count() as u32,
            mc_nthreads: 1u32 << smt,
            mc_cpuid_level: self.leaf0[0] as i32,
            mc_family: family,
            mc_vendor: vendor,
            mc_model: model,
            mc_step: step,
            mc_vendorid: vendorid,
            mc_brandid: brandid,
            // Xen's first seven feature words: 1.EDX, 1.ECX, e1.EDX, e1.ECX, 0xd.1 EAX,
            // 7.0 EBX, 7.0 ECX; on AMD without SEP (no SYSENTER in long mode) and with the
            // e1.EDX bits that repeat 1.EDX cleared (`CPUID_COMMON_1D_FEATURES`).
            mc_cpu_caps: [
                self.leaf1[3] & if amd { !SEP } else { !0 },
                self.leaf1[2],
                self.ext1[1] & if amd { !COMMON_1D } else { !0 },
                self.ext1[0],
                self.xsave1_eax,
                self.leaf7[0],
                self.leaf7[1],
            ],
            mc_cache_size: self.cache_kib(),
            mc_cache_alignment: ((self.leaf1[1] >> 8) & 0xff) * 8,
            mc_nmsrvals: 1,
            mc_msrvalues: msrs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host like QEMU's `-cpu EPYC` with 3 CPUs in one package (leaf 0xb: no SMT bits, 2
    /// core bits; 512 KiB L2 and 8 MiB L3 in leaf 0x80000006).
    fn epyc() -> Host {
        let mut brand = [0u8; 48];
        brand[..18].copy_from_slice(b"AMD EPYC Processor");
        Host {
            leaf0: [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65],
            leaf1: [0x0080_0f12, 0x0003_0800, 0xfed8_3203, 0x178b_fbfd],
            leaf7: [0x0088_01a9, 0],
            xsave1_eax: 5,
            topo: [[0, 0x100], [2, 0x201]],
            ext1: [0x77, 0x2dd3_fbfd],
            brand,
            ext6: [0x0200_6140, 0x0040_9140],
            ext8_ecx: 0x2,
            mcg_cap: 0x0100_010a,
        }
    }

    #[test]
    fn entries_as_xen_4_17_reports_them_for_qemus_epyc() {
        // Measured on the oracle (the `mca` guest): CPU n has core n and APIC id n in chip
        // 0 of 3 cores, one thread each; family 23 model 1 stepping 2, AMD (2), CPUID
        // level 13, an 8192 KiB last-level cache, 64-byte lines, MCG_CAP 0x100010a; feature
        // words 0 and 2-6 as Xen's (its word 1 on CPU0 lacks OSXSAVE, read before Xen set it).
        let h = epyc();
        let ids = [0, 1, 2];
        let c = h.logical_cpu(1, &ids);
        assert_eq!(
            (
                c.mc_cpunr,
                c.mc_chipid,
                c.mc_coreid,
                c.mc_threadid,
                c.mc_apicid
            ),
            (1, 0, 1, 0, 1)
        );
        assert_eq!(
            (
                c.mc_clusterid,
                c.mc_ncores,
                c.mc_ncores_active,
                c.mc_nthreads
            ),
            (1, 3, 3, 1)
        );
        assert_eq!(
            (
                c.mc_cpuid_level,
                c.mc_family,
                c.mc_vendor,
                c.mc_model,
                c.mc_step
            ),
            (13, 23, 2, 1, 2)
        );
        assert_eq!(&c.mc_vendorid[..13], b"AuthenticAMD\0");
        assert_eq!(&c.mc_brandid[..19], b"AMD EPYC Processor\0");
        assert_eq!((c.mc_cache_size, c.mc_cache_alignment), (8192, 64));
        assert_eq!(c.mc_nmsrvals, 1);
        assert_eq!(
            c.mc_msrvalues[0],
            McinfoMsr {
                reg: 0x179,
                value: 0x0100_010a
            }
        );
        assert_eq!(c.mc_cpu_caps[0], 0x178b_f3fd);
        assert_eq!(c.mc_cpu_caps[2..], [0x2c50_0800, 0x77, 5, 0x0088_01a9, 0]);
    }

    #[test]
    fn packages_and_threads_from_the_apic_id() {
        // Two packages of two cores with two threads each: leaf 0xb shifts 1 and 2.
        let h = Host {
            topo: [[1, 0x102], [2, 0x204]],
            leaf0: [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            ..epyc()
        };
        let ids = [0, 1, 2, 3, 4, 5, 6, 7];
        let c = h.logical_cpu(7, &ids);
        assert_eq!((c.mc_chipid, c.mc_coreid, c.mc_threadid), (1, 1, 1));
        assert_eq!((c.mc_vendor, c.mc_nthreads, c.mc_ncores_active), (1, 2, 4));
        assert_eq!(h.logical_cpu(9, &ids).mc_apicid, 0);
    }

    use super::super::testing::Harness;

    const BUF: u64 = 0x5000;
    const MCA: u64 = 48;

    fn op(cmd: u32, version: u32, u: &[u8]) -> alloc::vec::Vec<u8> {
        let mut b = alloc::vec![0u8; XEN_MC_SIZE];
        b[0..4].copy_from_slice(&cmd.to_le_bytes());
        b[4..8].copy_from_slice(&version.to_le_bytes());
        b[8..8 + u.len()].copy_from_slice(u);
        b
    }

    fn union_bytes(h: &Harness, n: usize) -> alloc::vec::Vec<u8> {
        (0..n as u64).map(|i| h.mem.bytes[&(BUF + 8 + i)]).collect()
    }

    #[test]
    fn privilege_then_copy_then_version_then_command() {
        let mut u = Harness::domu(1);
        assert_eq!(
            u.hypercall(MCA, [0x10, 0, 0, 0, 0]).ret,
            -1,
            "domU: -EPERM first"
        );
        let mut h = Harness::dom0();
        assert_eq!(h.hypercall(MCA, [0x10, 0, 0, 0, 0]).ret, -14);
        h.mem
            .map(BUF, &op(XEN_MC_FETCH, XEN_MCA_INTERFACE_VERSION + 1, &[]));
        assert_eq!(h.hypercall(MCA, [BUF, 0, 0, 0, 0]).ret, -13);
        for cmd in [0, XEN_MC_NOTIFYDOMAIN, 99] {
            h.mem.map(BUF, &op(cmd, XEN_MCA_INTERFACE_VERSION, &[]));
            assert_eq!(h.hypercall(MCA, [BUF, 0, 0, 0, 0]).ret, -22, "cmd {cmd}");
        }
        h.mem
            .map(BUF, &op(XEN_MC_MCEINJECT, XEN_MCA_INTERFACE_VERSION, &[]));
        assert_eq!(h.hypercall(MCA, [BUF, 0, 0, 0, 0]).ret, -38);
    }

    #[test]
    fn a_fetch_finds_no_telemetry() {
        let mut h = Harness::dom0();
        let f = |flags: u32, data: u64| {
            let mut u = [0u8; 24];
            let q = XenMcFetch {
                flags,
                pad0: 0,
                fetch_id: 9,
                data,
            };
            q.write_to(&mut u).unwrap();
            op(XEN_MC_FETCH, XEN_MCA_INTERFACE_VERSION, &u)
        };
        h.mem.map(BUF, &f(XEN_MC_URGENT, 0x8000));
        assert_eq!(h.hypercall(MCA, [BUF, 0, 0, 0, 0]).ret, 0);
        let back = XenMcFetch::read_from(&union_bytes(&h, 24)).unwrap();
        assert_eq!(
            (back.flags, back.fetch_id, back.data),
            (XEN_MC_NODATA, 0, 0x8000)
        );
        for (flags, data, want) in [(0, 0x8000, -22), (3, 0x8000, -22), (1, 0, -22), (5, 0, 0)] {
            h.mem.map(BUF, &f(flags, data));
            assert_eq!(h.hypercall(MCA, [BUF, 0, 0, 0, 0]).ret, want, "{flags:#x}");
        }
    }

    #[test]
    fn physcpuinfo_counts_the_online_cpus() {
        let mut h = Harness::dom0();
        for i in 0..3u32 {
            h.mem.values.insert(
                value_kind::host_pcpu(i),
                [value_kind::HOST_PCPU_UP | u64::from(i)].into(),
            );
        }
        h.mem.values.insert(value_kind::host_pcpu(3), [0].into());
        let mut u = [0u8; 16];
        XenMcPhyscpuinfo::default().write_to(&mut u).unwrap();
        h.mem
            .map(BUF, &op(XEN_MC_PHYSCPUINFO, XEN_MCA_INTERFACE_VERSION, &u));
        assert_eq!(h.hypercall(MCA, [BUF, 0, 0, 0, 0]).ret, 0);
        let back = XenMcPhyscpuinfo::read_from(&union_bytes(&h, 16)).unwrap();
        assert_eq!(back.ncpus, 3);
        // A buffer of no entries.
        let q = XenMcPhyscpuinfo {
            ncpus: 0,
            pad0: 0,
            info: 0x9000,
        };
        q.write_to(&mut u).unwrap();
        h.mem
            .map(BUF, &op(XEN_MC_PHYSCPUINFO, XEN_MCA_INTERFACE_VERSION, &u));
        assert_eq!(h.hypercall(MCA, [BUF, 0, 0, 0, 0]).ret, -22);
    }
}
