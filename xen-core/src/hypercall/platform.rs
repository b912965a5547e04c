//! `platform_op` (7) and `xenpmu_op` (40) as Xen 4.17 answers a PV dom0 on a machine booted
//! without BIOS disk/EDID probing or EFI, with no vPMU (`vpmu=` not given): the firmware
//! queries Linux makes at boot, and Xen's errnos for the rest.

use crate::hv::{value_kind, Ctx, HvResult, HvState};
use crate::time;
use dom0_interface::errno::XenErrno;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::platform::*;

/// `platform_op(op)`: copies the whole `xen_platform_op` in (-EFAULT), checks the interface
/// version (-EACCES) and only then the caller's privilege (-EPERM), as Xen's
/// `do_platform_op` does.
pub fn platform_op(state: &mut HvState, ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    let arg = ctx.req.args[0];
    let mut op = [0u8; XEN_PLATFORM_OP_SIZE];
    ctx.copy_from_guest(arg, &mut op)?;
    let head =
        XenPlatformOpHead::read_from(&op[..XEN_PLATFORM_OP_U]).map_err(|_| XenErrno::EFAULT)?;
    if head.interface_version != XENPF_INTERFACE_VERSION {
        return Err(XenErrno::EACCES.into());
    }
    if !super::is_privileged(state, ctx.dom()) {
        return Err(XenErrno::EPERM.into());
    }
    let u = &op[XEN_PLATFORM_OP_U..];
    match head.cmd {
        XENPF_FIRMWARE_INFO => {
            let fw = XenpfFirmwareInfoHead::read_from(&u[..8]).map_err(|_| XenErrno::EFAULT)?;
            firmware_info(ctx, arg, fw)
        }
        XENPF_SETTIME32 => {
            let t = XenpfSettime32::read_from(&u[..XenpfSettime32::SIZE])
                .map_err(|_| XenErrno::EFAULT)?;
            do_settime(state, ctx, u64::from(t.secs), t.nsecs, t.system_time);
            Ok(0)
        }
        XENPF_SETTIME64 => {
            let t = XenpfSettime64::read_from(&u[..XenpfSettime64::SIZE])
                .map_err(|_| XenErrno::EFAULT)?;
            if t.mbz != 0 {
                return Err(XenErrno::EINVAL.into());
            }
            do_settime(state, ctx, t.secs, t.nsecs, t.system_time);
            Ok(0)
        }
        XENPF_GET_CPUINFO => {
            let info = XenpfPcpuinfo::read_from(&u[..XenpfPcpuinfo::SIZE])
                .map_err(|_| XenErrno::EFAULT)?;
            get_cpuinfo(ctx, arg, info)
        }
        cmd => super::unknown_subop(state, ctx, "platform_op", u64::from(cmd)),
    }
}

/// `XENPF_firmware_info`. DualVisor probes no disks (EDD) or displays (EDID) through the
/// BIOS and is not booted by EFI: Xen gives -ESRCH for an item it has not collected and
/// -ENOSYS for EFI information when not booted by EFI (measured on Xen 4.17). The keyboard shift flags are the
/// BIOS data area's byte at 0x417, which int 16h AH=02 returns.
fn firmware_info(ctx: &mut Ctx<'_, '_, '_>, arg: u64, fw: XenpfFirmwareInfoHead) -> HvResult {
    match fw.type_ {
        XEN_FW_DISK_INFO | XEN_FW_DISK_MBR_SIGNATURE | XEN_FW_VBEDDC_INFO => {
            Err(XenErrno::ESRCH.into())
        }
        XEN_FW_EFI_INFO => Err(XenErrno::ENOSYS.into()),
        XEN_FW_KBD_SHIFT_FLAGS => {
            if fw.index != 0 {
                return Err(XenErrno::ESRCH.into());
            }
            let flags = ctx.value(value_kind::BIOS_KBD_SHIFT_FLAGS)? as u8;
            ctx.copy_to_guest(arg + KBD_SHIFT_FLAGS_OFFSET as u64, &[flags])?;
            Ok(0)
        }
        _ => Err(XenErrno::EINVAL.into()),
    }
}

/// `do_settime`: the wall clock reads `secs.nsecs` at system time `system_time`, so at
/// system time 0 it read their difference (Xen's unsigned arithmetic); every domain's
/// shared_info gets the new wall clock under its seqlock.
fn do_settime(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    secs: u64,
    nsecs: u32,
    system_time: u64,
) {
    let x = secs
        .wrapping_mul(1_000_000_000)
        .wrapping_add(u64::from(nsecs))
        .wrapping_sub(system_time);
    let (wc_sec, wc_nsec) = (x / 1_000_000_000, (x % 1_000_000_000) as u32);
    let j = ctx.journal();
    let mut base = *state.time.get();
    base.wc_sec = wc_sec;
    base.wc_nsec = wc_nsec;
    state.time.set(j, base);
    let doms: alloc::vec::Vec<_> = state
        .dom_time
        .iter()
        .filter(|(_, t)| t.shared_info_maddr != 0)
        .map(|(d, t)| (*d, *t))
        .collect();
    for (dom, mut t) in doms {
        t.wc_version = t.wc_version.wrapping_add(2);
        for e in time::wallclock_effects(t.shared_info_maddr, t.wc_version, wc_sec, wc_nsec) {
            ctx.emit(e);
        }
        let j = ctx.journal();
        state.dom_time.insert(j, dom, t);
    }
}

/// The highest CPU number DualVisor looks at (`NR_CPUS`-like bound of the physical CPUs).
const MAX_PCPUS: u32 = 64;

/// `XENPF_get_cpuinfo`: the physical CPU's APIC and ACPI ids and whether it is online, or
/// `XEN_PCPU_FLAGS_INVALID` for a CPU that is not there; `max_present` always. The flags
/// the caller passed in are kept (Xen ORs into them). Every CPU DualVisor knows is up.
fn get_cpuinfo(ctx: &mut Ctx<'_, '_, '_>, arg: u64, mut info: XenpfPcpuinfo) -> HvResult {
    let mut max_present = 0;
    for i in 0..MAX_PCPUS {
        if ctx.value(value_kind::host_pcpu(i))? & value_kind::HOST_PCPU_UP == 0 {
            break;
        }
        max_present = i;
    }
    let cpu = if info.xen_cpuid < MAX_PCPUS {
        ctx.value(value_kind::host_pcpu(info.xen_cpuid))?
    } else {
        0
    };
    if cpu & value_kind::HOST_PCPU_UP == 0 {
        info.flags |= XEN_PCPU_FLAGS_INVALID;
    } else {
        info.apic_id = cpu as u32;
        info.acpi_id = ((cpu >> 32) & 0x7FFF_FFFF) as u32;
        info.flags |= XEN_PCPU_FLAGS_ONLINE;
    }
    info.max_present = max_present;
    ctx.copy_to_guest(arg + XEN_PLATFORM_OP_U as u64, &info.to_vec())?;
    Ok(0)
}

/// `xenpmu_op(op, arg)`: without `vpmu=` on the command line Xen 4.17 answers every sub-op
/// -EOPNOTSUPP before looking at the argument (Linux then prints "VPMU disabled by
/// hypervisor.").
pub fn xenpmu_op(_state: &mut HvState, _ctx: &mut Ctx<'_, '_, '_>) -> HvResult {
    Err(XenErrno::EOPNOTSUPP.into())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;
    use super::*;

    fn op(cmd: u32, version: u32, u: &[u8]) -> alloc::vec::Vec<u8> {
        let mut b = alloc::vec![0u8; XEN_PLATFORM_OP_SIZE];
        b[0..4].copy_from_slice(&cmd.to_le_bytes());
        b[4..8].copy_from_slice(&version.to_le_bytes());
        b[8..8 + u.len()].copy_from_slice(u);
        b
    }

    fn fw(ty: u32, index: u32) -> alloc::vec::Vec<u8> {
        let mut u = alloc::vec::Vec::new();
        u.extend_from_slice(&ty.to_le_bytes());
        u.extend_from_slice(&index.to_le_bytes());
        op(XENPF_FIRMWARE_INFO, XENPF_INTERFACE_VERSION, &u)
    }

    const BUF: u64 = 0x5000;
    const PLATFORM_OP: u64 = 7;

    #[test]
    fn firmware_info_as_xen_without_bios_probes_or_efi() {
        let mut h = Harness::dom0();
        for (ty, want) in [
            (XEN_FW_DISK_INFO, -3),
            (XEN_FW_DISK_MBR_SIGNATURE, -3),
            (XEN_FW_VBEDDC_INFO, -3),
            (XEN_FW_EFI_INFO, -38),
            (99, -22),
        ] {
            h.mem.map(BUF, &fw(ty, 0));
            assert_eq!(
                h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret,
                want,
                "type {ty}"
            );
        }
    }

    #[test]
    fn keyboard_shift_flags_come_from_the_bios_data_area() {
        let mut h = Harness::dom0();
        h.mem
            .values
            .insert(value_kind::BIOS_KBD_SHIFT_FLAGS, [0x20].into());
        h.mem.map(BUF, &fw(XEN_FW_KBD_SHIFT_FLAGS, 0));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, 0);
        assert_eq!(h.mem.bytes[&(BUF + KBD_SHIFT_FLAGS_OFFSET as u64)], 0x20);
        h.mem.map(BUF, &fw(XEN_FW_KBD_SHIFT_FLAGS, 1));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, -3);
    }

    #[test]
    fn version_then_privilege_then_command() {
        let mut h = Harness::dom0();
        h.mem.map(BUF, &op(XENPF_FIRMWARE_INFO, 0x0300_0000, &[]));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, -13);
        h.mem.map(BUF, &op(1000, XENPF_INTERFACE_VERSION, &[]));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, -38);
        assert_eq!(h.hypercall(PLATFORM_OP, [0x10, 0, 0, 0, 0]).ret, -14);
        let mut u = Harness::domu(1);
        u.mem.map(BUF, &fw(XEN_FW_DISK_INFO, 0));
        assert_eq!(u.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, -1);
        u.mem.map(BUF, &op(XENPF_FIRMWARE_INFO, 1, &[]));
        assert_eq!(u.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, -13);
    }

    fn cpuinfo(cpu: u32) -> alloc::vec::Vec<u8> {
        let mut u = alloc::vec::Vec::new();
        u.extend_from_slice(&cpu.to_le_bytes());
        op(XENPF_GET_CPUINFO, XENPF_INTERFACE_VERSION, &u)
    }

    fn read_info(h: &Harness) -> XenpfPcpuinfo {
        let b: alloc::vec::Vec<u8> = (0..XenpfPcpuinfo::SIZE as u64)
            .map(|i| h.mem.bytes[&(BUF + 8 + i)])
            .collect();
        XenpfPcpuinfo::read_from(&b).unwrap()
    }

    /// Three CPUs up (APIC ids 0, 1, 2; ACPI ids 0, 1, 2), as QEMU `-smp 3`.
    fn three_cpus(h: &mut Harness) {
        for i in 0..4u32 {
            let v = if i < 3 {
                value_kind::HOST_PCPU_UP | (u64::from(i) << 32) | u64::from(i)
            } else {
                0
            };
            // Read once for max_present and once more for the CPU asked about.
            h.mem.values.insert(value_kind::host_pcpu(i), [v, v].into());
        }
    }

    #[test]
    fn get_cpuinfo_names_each_cpu_and_the_last_present() {
        let mut h = Harness::dom0();
        three_cpus(&mut h);
        h.mem.map(BUF, &cpuinfo(1));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, 0);
        let i = read_info(&h);
        assert_eq!(
            (i.xen_cpuid, i.max_present, i.flags, i.apic_id, i.acpi_id),
            (1, 2, XEN_PCPU_FLAGS_ONLINE, 1, 1)
        );
        three_cpus(&mut h);
        h.mem.map(BUF, &cpuinfo(3));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, 0);
        let i = read_info(&h);
        assert_eq!((i.max_present, i.flags), (2, XEN_PCPU_FLAGS_INVALID));
        three_cpus(&mut h);
        h.mem.map(BUF, &cpuinfo(u32::MAX));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, 0);
        assert_eq!(read_info(&h).flags, XEN_PCPU_FLAGS_INVALID);
    }

    #[test]
    fn settime_moves_every_domains_wall_clock() {
        let mut h = Harness::dom0();
        let mut u = alloc::vec::Vec::new();
        u.extend_from_slice(&1_800_000_000u64.to_le_bytes()); // secs
        u.extend_from_slice(&500u32.to_le_bytes()); // nsecs
        u.extend_from_slice(&0u32.to_le_bytes()); // mbz
        u.extend_from_slice(&2_000_000_000u64.to_le_bytes()); // system time: 2 s
        h.mem
            .map(BUF, &op(XENPF_SETTIME64, XENPF_INTERFACE_VERSION, &u));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, 0);
        let base = *h.state.time.get();
        assert_eq!((base.wc_sec, base.wc_nsec), (1_799_999_998, 500));
        u[12] = 1;
        h.mem
            .map(BUF, &op(XENPF_SETTIME64, XENPF_INTERFACE_VERSION, &u));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, -22, "mbz");
        let mut u32op = alloc::vec::Vec::new();
        u32op.extend_from_slice(&100u32.to_le_bytes());
        u32op.extend_from_slice(&7u32.to_le_bytes());
        u32op.extend_from_slice(&1_000_000_000u64.to_le_bytes());
        h.mem
            .map(BUF, &op(XENPF_SETTIME32, XENPF_INTERFACE_VERSION, &u32op));
        assert_eq!(h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]).ret, 0);
        let base = *h.state.time.get();
        assert_eq!((base.wc_sec, base.wc_nsec), (99, 7));
    }

    #[test]
    fn settime_republishes_a_known_shared_info() {
        let mut h = Harness::dom0();
        let mut j = lockstep::Journal::new();
        j.begin(1);
        h.state.dom_time.insert(
            &mut j,
            0,
            crate::sched::DomTime {
                shared_info_maddr: 0x9000,
                wc_version: 2,
            },
        );
        let mut u = alloc::vec::Vec::new();
        u.extend_from_slice(&10u32.to_le_bytes());
        u.extend_from_slice(&0u32.to_le_bytes());
        u.extend_from_slice(&0u64.to_le_bytes());
        h.mem
            .map(BUF, &op(XENPF_SETTIME32, XENPF_INTERFACE_VERSION, &u));
        let out = h.hypercall(PLATFORM_OP, [BUF, 0, 0, 0, 0]);
        assert_eq!(out.ret, 0);
        assert_eq!(h.state.dom_time.get(&0).map(|t| t.wc_version), Some(4));
        assert_eq!(
            h.mem.word(0x9000 + time::SHARED_INFO_WC_OFFSET),
            4 | (10 << 32),
            "wc_version 4, wc_sec 10"
        );
    }

    #[test]
    fn xenpmu_op_is_not_supported() {
        let mut h = Harness::dom0();
        for sub in [XENPMU_MODE_GET, XENPMU_INIT, XENPMU_FINISH, 77] {
            assert_eq!(h.hypercall(40, [u64::from(sub), 0, 0, 0, 0]).ret, -95);
        }
    }
}
