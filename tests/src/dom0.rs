//! Scenarios of the dom0 kernel (`build/dom0.elf`, `make dom0`) with a test initrd the
//! runner writes: the shell's commands, given on dom0's command line (`run=...;...`), on real
//! Xen 4.17 (`dom0-shell-xen`, the oracle for the xl outputs) and on DualVisor (`dom0-shell`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tools::cpio::{write_newc, S_IFDIR, S_IFREG};

use crate::catalogue::crash_markers;
use crate::monitor::{End, Expectation};
use crate::oracle::XEN_CMDLINE;
use crate::pattern::Pattern;
use crate::qemu::{Module, QemuCommand};
use crate::scenario::{Paths, Planned, Scenario};

/// The commands the scenarios run (`;`-separated, as dom0's `run=` wants).
pub const COMMANDS: &str = "help;ls;ls /etc/xen;cat /etc/xen/demo1.cfg;frob 1;\
xl create /etc/xen/bad.cfg;xl create /etc/xen/nokernel.cfg;xl create /etc/xen/none.cfg;\
xl domid Domain-0;xl list;xl info;xl lockstep status";

/// `demo1.cfg` of the test initrd.
pub const DEMO1_CFG: &str = "# demo guest 1\nname = \"demo1\"\nkernel = \"/boot/demo.elf\"\n\
memory = 32\non_reboot = \"restart\"\n";

/// The test initrd: configs under `/etc/xen` (no kernels).
pub fn test_initrd() -> Vec<u8> {
    write_newc(&[
        ("etc", S_IFDIR | 0o755, b""),
        ("etc/xen", S_IFDIR | 0o755, b""),
        ("etc/xen/demo1.cfg", S_IFREG | 0o644, DEMO1_CFG.as_bytes()),
        (
            "etc/xen/bad.cfg",
            S_IFREG | 0o644,
            b"name = \"bad\"\nkernel = \"/boot/demo.elf\"\nmemory = = 32\n",
        ),
        (
            "etc/xen/nokernel.cfg",
            S_IFREG | 0o644,
            b"name = \"nok\"\nkernel = \"/boot/missing.elf\"\ncolour = \"blue\"\n",
        ),
    ])
}

/// Markers every run of [`COMMANDS`] shows, whatever the hypervisor.
fn shell_markers() -> Vec<Pattern> {
    vec![
        Pattern::starts_with("Domain-0                                     0 "),
        Pattern::line("xen_major              : 4"),
        Pattern::line("xen_minor              : 17"),
        Pattern::contains("dom0: initrd: "),
        Pattern::line("dom0# help"),
        Pattern::contains("  xl SUBCOMMAND"),
        Pattern::line("etc/"),
        Pattern::line("demo1.cfg"),
        Pattern::line("nokernel.cfg"),
        Pattern::line("# demo guest 1"),
        Pattern::line("dom0: frob: command not found (type 'help' for the commands)"),
        Pattern::line("Parsing config from /etc/xen/bad.cfg"),
        Pattern::line("/etc/xen/bad.cfg:3: expected a value after 'memory =', found '='"),
        Pattern::line("/etc/xen/nokernel.cfg:3: warning: unknown key `colour' ignored"),
        Pattern::line(
            "/etc/xen/nokernel.cfg: kernel: /boot/missing.elf: No such file or directory",
        ),
        Pattern::line("Failed to read config file: /etc/xen/none.cfg: No such file or directory"),
        Pattern::line("0"),
        Pattern::line("dom0: shell ready; type 'help' for the commands"),
    ]
}

fn dom0_path(p: &Paths) -> PathBuf {
    p.root.join("build").join("dom0.elf")
}

fn scenario(p: &Paths, name: &str, qemu_kernel: &Path, smp: u32, expect: Vec<Pattern>) -> Scenario {
    let initrd = p.logs.join(name).join("initrd.cpio");
    let dom0 = dom0_path(p);
    let mods = vec![
        Module::new(&dom0, format!("run={COMMANDS}")),
        Module::new(&initrd, ""),
    ];
    let mut fail = crash_markers();
    fail.extend([
        Pattern::contains("Panic on CPU"),
        Pattern::contains("Domain 0 crashed"),
        Pattern::contains("Hardware Dom0 crashed"),
        Pattern::contains("dom0: initrd: not"),
    ]);
    Scenario {
        name: name.into(),
        qemu: QemuCommand::kernel(qemu_kernel, XEN_CMDLINE, mods).smp(smp),
        expect: Expectation {
            expect,
            fail,
            stop: vec![Pattern::contains("dom0: shell ready")],
            end: End::KillWhenSeen {
                linger: Duration::ZERO,
            },
            timeout: Duration::from_secs(180),
        },
        needs: vec![(dom0, "make dom0")],
        inputs: vec![(initrd, test_initrd())],
    }
}

/// dom0 on real Xen 4.17: the shell, xl's list and info, and the refused lockstep sysctl.
pub fn dom0_shell_xen(p: &Paths) -> Planned {
    if !p.xen.is_file() {
        return Planned::Skip {
            name: "dom0-shell-xen".into(),
            reason: format!("{} missing (make xen)", p.show(&p.xen)),
        };
    }
    let mut expect = shell_markers();
    expect.extend([Pattern::contains("xl: lockstep: the hypervisor refused the request: -38 (ENOSYS); this hypervisor has no DualVisor lockstep control"),
    ]);
    let mut s = scenario(p, "dom0-shell-xen", &p.xen, 2, expect);
    s.needs.push((p.xen.clone(), "make xen"));
    Planned::Run(Box::new(s))
}

/// dom0 on DualVisor (lockstep pair): the shell, the config errors, `xl list` and `xl info`.
pub fn dom0_shell(p: &Paths) -> Planned {
    let mut s = scenario(p, "dom0-shell", &p.image, 3, shell_markers());
    s.needs.push((p.image.clone(), "make image"));
    Planned::Run(Box::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tools::cpio::Archive;

    #[test]
    fn the_test_initrd_reads_back() {
        let bytes = test_initrd();
        let a = Archive::parse(&bytes).unwrap();
        assert_eq!(a.list("/etc/xen").unwrap().len(), 3);
        assert_eq!(a.read("/etc/xen/demo1.cfg").unwrap(), DEMO1_CFG.as_bytes());
        assert!(!COMMANDS.contains(','));
    }

    #[test]
    fn the_configs_give_the_expected_errors() {
        let bytes = test_initrd();
        let a = Archive::parse(&bytes).unwrap();
        let bad = std::str::from_utf8(a.read("/etc/xen/bad.cfg").unwrap()).unwrap();
        let e = tools::xlcfg::DomainConfig::parse("/etc/xen/bad.cfg", bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/xen/bad.cfg:3: expected a value after 'memory =', found '='"
        );
        let nok = std::str::from_utf8(a.read("/etc/xen/nokernel.cfg").unwrap()).unwrap();
        let p = tools::xlcfg::DomainConfig::parse("/etc/xen/nokernel.cfg", nok).unwrap();
        assert_eq!(
            p.warnings,
            ["/etc/xen/nokernel.cfg:3: warning: unknown key `colour' ignored"]
        );
    }
}
