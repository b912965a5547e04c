//! `linux-dom0`: Debian's Linux 6.1 (`build/linux/vmlinux`, from `make linux`) booted as a PV
//! dom0 with no root device, on real Xen 4.17 (`xen-oracle-linux-dom0`) and on DualVisor
//! (`dualvisor-linux-dom0`): both must bring Linux to the same end, its root-mount panic,
//! reported by the hypervisor as a crashed dom0. The `-smp2` pair boots it with two vCPUs on
//! two CPUs (`xen-oracle-linux-dom0-smp2`, and `dualvisor-linux-dom0-smp2-off` with
//! `lockstep=off`, where every CPU runs guests): Linux brings its second CPU up
//! (`VCPUOP_initialise`, IPIs over event channels) and ends the same way.

use std::time::Duration;

use crate::monitor::{End, Expectation};
use crate::pattern::Pattern;
use crate::qemu::{Module, QemuCommand};
use crate::scenario::{Paths, Planned, Scenario};

/// The hypervisor command line (Xen's; DualVisor takes it unchanged): one dom0 vCPU and
/// 512 MiB, as a small Xen host gives dom0.
pub const CMDLINE: &str = "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot \
                           dom0_max_vcpus=1 dom0_mem=512M";
/// Linux's command line: the Xen console, early printk through Xen, every message.
pub const LINUX_ARGS: &str = "console=hvc0 earlyprintk=xen loglevel=8";
/// Linux's last words without a root device (the line Xen 4.17's run ends with).
pub const ROOT_PANIC: &str = "Kernel panic - not syncing: VFS: Unable to mount root fs";
/// Time limit: a hang detector. Xen takes about 10 s here, DualVisor with lockstep about
/// 40 s of guest time (more on a loaded host: every hypercall is a lockstep transaction).
const TIMEOUT: Duration = Duration::from_secs(240);

/// Both scenarios, skipped (saying why) without the kernel or, for the oracle, without Xen.
pub fn linux_dom0(p: &Paths) -> Vec<Planned> {
    let missing_linux = (!p.linux.is_file()).then(|| {
        format!(
            "{} missing (make linux: apt-get download linux-image-6.1.0-*-amd64)",
            p.show(&p.linux)
        )
    });
    let xen = match (&missing_linux, p.xen.is_file()) {
        (Some(why), _) => Planned::Skip {
            name: "xen-oracle-linux-dom0".into(),
            reason: why.clone(),
        },
        (None, false) => Planned::Skip {
            name: "xen-oracle-linux-dom0".into(),
            reason: format!("{} missing (make xen)", p.show(&p.xen)),
        },
        (None, true) => Planned::Run(Box::new(scenario(p, true))),
    };
    let ours = match missing_linux {
        Some(reason) => Planned::Skip {
            name: "dualvisor-linux-dom0".into(),
            reason,
        },
        None => Planned::Run(Box::new(scenario(p, false))),
    };
    let mut v = vec![xen, ours];
    // The same with two vCPUs on two CPUs, skipped for the same reasons.
    v.extend([&v[0], &v[1]].map(|planned| match planned {
        Planned::Skip { name, reason } => Planned::Skip {
            name: smp2_name(name),
            reason: reason.clone(),
        },
        Planned::Run(s) => Planned::Run(Box::new(smp2(p, s.name.starts_with("xen")))),
    }));
    v
}

/// The name of a scenario's two-vCPU variant.
fn smp2_name(name: &str) -> String {
    if name.starts_with("xen") {
        format!("{name}-smp2")
    } else {
        format!("{name}-smp2-off")
    }
}

/// Linux with two vCPUs on two CPUs (`dom0_max_vcpus=2`, `-smp 2`), on Xen or on DualVisor
/// with lockstep off (every CPU runs guests, vCPU 1 on CPU1): its second CPU comes up.
fn smp2(p: &Paths, on_xen: bool) -> Scenario {
    let mut s = scenario(p, on_xen);
    s.name = smp2_name(&s.name);
    s.qemu.smp = 2;
    if let crate::qemu::Boot::Kernel { append, .. } = &mut s.qemu.boot {
        *append = append.replace("dom0_max_vcpus=1", "dom0_max_vcpus=2");
        if !on_xen {
            append.push_str(" lockstep=off");
        }
    }
    s.expect
        .expect
        .retain(|m| !m.matches("(XEN) lockstep: pair 0 leader CPU1 follower CPU2"));
    if !on_xen {
        s.expect.expect.extend([
            Pattern::contains(crate::lockstep_off::OFF_LINE),
            Pattern::contains("(XEN) lockstep: CPU1 enters d0v1"),
        ]);
    }
    s.expect
        .expect
        .push(Pattern::contains("smp: Brought up 1 node, 2 CPUs"));
    s
}

/// One boot of Linux as dom0 on Xen (`on_xen`) or on DualVisor (a lockstep pair, `-smp 3`;
/// Xen gets the same machine).
fn scenario(p: &Paths, on_xen: bool) -> Scenario {
    let (name, hypervisor, make) = if on_xen {
        ("xen-oracle-linux-dom0", &p.xen, "make xen")
    } else {
        ("dualvisor-linux-dom0", &p.image, "make image")
    };
    let mut qemu =
        QemuCommand::kernel(hypervisor, CMDLINE, vec![Module::new(&p.linux, LINUX_ARGS)]).smp(3);
    qemu.memory_mib = 2048;
    // No display adapter: QEMU 7.2 (TCG) sometimes segfaults (NULL + 0xa0) while Linux
    // sizes the standard VGA's ROM BAR on DualVisor (2 runs in 6); no scenario here needs
    // the adapter, and both hypervisors get the same machine.
    qemu.vga = Some("none".into());
    let mut expect = vec![];
    if !on_xen {
        expect.push(Pattern::contains(
            "(XEN) lockstep: pair 0 leader CPU1 follower CPU2",
        ));
    }
    expect.push(Pattern::contains("Hypervisor detected: Xen PV"));
    expect.push(Pattern::contains(ROOT_PANIC));
    expect.push(Pattern::contains(
        "(XEN) Hardware Dom0 crashed: 'noreboot' set - not rebooting.",
    ));
    Scenario {
        name: name.into(),
        qemu,
        expect: Expectation {
            expect,
            fail: vec![
                Pattern::contains("(XEN) FATAL TRAP"),
                Pattern::contains("(XEN) Panic"),
                Pattern::contains("Panic on CPU"),
                // Linux's own alarms: an oops, a BUG, a WARN_ON splat, a failed multicall.
                Pattern::contains("Oops: "),
                Pattern::contains("BUG: "),
                Pattern::contains("------------[ cut here ]------------"),
                Pattern::contains("multicall(s) failed"),
                Pattern::contains("Kernel panic - not syncing: Attempted to kill"),
            ],
            stop: vec![],
            end: End::KillWhenSeen {
                linger: Duration::ZERO,
            },
            timeout: TIMEOUT,
        },
        needs: vec![(hypervisor.clone(), make), (p.linux.clone(), "make linux")],
        inputs: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_without_the_kernel_and_the_oracle_without_xen() {
        let p = Paths::new("/nonexistent-repo");
        let v = linux_dom0(&p);
        assert_eq!(v.len(), 4);
        for s in &v {
            match s {
                Planned::Skip { reason, .. } => assert!(reason.contains("make linux"), "{reason}"),
                Planned::Run(_) => panic!("ran without a kernel"),
            }
        }
        assert_eq!(v[0].name(), "xen-oracle-linux-dom0");
        assert_eq!(v[1].name(), "dualvisor-linux-dom0");
        assert_eq!(v[2].name(), "xen-oracle-linux-dom0-smp2");
        assert_eq!(v[3].name(), "dualvisor-linux-dom0-smp2-off");
    }

    #[test]
    fn the_smp2_pair_boots_two_vcpus_on_two_cpus() {
        let p = Paths::new("/repo");
        let (x, d) = (smp2(&p, true), smp2(&p, false));
        assert_eq!((x.qemu.smp, d.qemu.smp), (2, 2));
        let append = |s: &Scenario| match &s.qemu.boot {
            crate::qemu::Boot::Kernel { append, .. } => append.clone(),
            _ => panic!("not a -kernel boot"),
        };
        assert!(append(&x).contains("dom0_max_vcpus=2 dom0_mem=512M"));
        assert!(!append(&x).contains("lockstep"));
        assert!(append(&d).ends_with("dom0_mem=512M lockstep=off"));
        for s in [&x, &d] {
            assert!(s
                .expect
                .expect
                .iter()
                .any(|m| m.matches("[    2.88] smp: Brought up 1 node, 2 CPUs")));
        }
        assert!(d
            .expect
            .expect
            .iter()
            .any(|m| m.matches(crate::lockstep_off::OFF_LINE)));
        assert!(!d.expect.expect.iter().any(
            |m| m.matches("(XEN) lockstep: pair 0 leader CPU1 follower CPU2, coordinator CPU0")
        ));
    }

    #[test]
    fn both_boot_the_same_kernel_the_same_way() {
        let p = Paths::new("/repo");
        let x = scenario(&p, true);
        let d = scenario(&p, false);
        assert_eq!(x.qemu.memory_mib, 2048);
        assert_eq!(x.qemu.vga.as_deref(), Some("none"));
        assert!(d
            .qemu
            .args()
            .unwrap()
            .windows(2)
            .any(|w| w == ["-vga", "none"]));
        assert_eq!((x.qemu.smp, d.qemu.smp), (3, 3));
        assert_eq!(x.qemu.boot, {
            let crate::qemu::Boot::Kernel {
                modules, append, ..
            } = &d.qemu.boot
            else {
                panic!("not a -kernel boot");
            };
            crate::qemu::Boot::Kernel {
                image: p.xen.clone(),
                append: append.clone(),
                modules: modules.clone(),
            }
        });
        for s in [&x, &d] {
            assert!(s.expect.expect.iter().any(|m| m.matches(
                "[   39.01] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
            )));
            assert!(s
                .needs
                .iter()
                .any(|(f, m)| f == &p.linux && *m == "make linux"));
        }
    }
}
