//! Scenarios of the dom0 kernel (`build/dom0.elf`, `make dom0`) with a test initrd the
//! runner writes: an administrator types at the `dom0# ` prompt (an interactive serial
//! script), on real Xen 4.17 (`dom0-shell-xen`, the oracle for the xl outputs) and on
//! DualVisor (`dom0-shell`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tools::cpio::{write_newc, S_IFDIR, S_IFREG};

use crate::catalogue::crash_markers;
use crate::monitor::{End, Expectation};
use crate::oracle::XEN_CMDLINE;
use crate::pattern::Pattern;
use crate::qemu::{Module, QemuCommand};
use crate::scenario::{Paths, Planned, Scenario};
use crate::script::Script;

/// The prompt.
pub const PROMPT: &str = "dom0# ";

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

/// Typed text: the line and Enter (CR, as a terminal sends it).
fn typed(line: &str) -> Vec<u8> {
    let mut v = line.as_bytes().to_vec();
    v.push(b'\r');
    v
}

/// The administrator's session: each command, then what it must print, then the prompt.
/// `extra` are further (command, line it prints) steps for one hypervisor.
pub fn session(extra: &[(&str, Pattern)]) -> Script {
    let mut steps: Vec<(Vec<u8>, Vec<Pattern>)> = vec![
        (
            // A typo corrected with DEL, as the line editor must handle.
            b"xl lisx\x7ft\r".to_vec(),
            vec![Pattern::starts_with(
                "Domain-0                                     0 ",
            )],
        ),
        (
            typed("xl info"),
            vec![
                Pattern::line("xen_major              : 4"),
                Pattern::line("xen_minor              : 17"),
            ],
        ),
        (typed("help"), vec![Pattern::contains("  xl SUBCOMMAND")]),
        (typed("ls /etc/xen"), vec![Pattern::line("demo1.cfg")]),
        (
            typed("cat /etc/xen/demo1.cfg"),
            vec![Pattern::line("# demo guest 1")],
        ),
        (
            typed("frob 1"),
            vec![Pattern::line(
                "dom0: frob: command not found (type 'help' for the commands)",
            )],
        ),
        (
            typed("xl create /etc/xen/bad.cfg"),
            vec![Pattern::line(
                "/etc/xen/bad.cfg:3: expected a value after 'memory =', found '='",
            )],
        ),
        (
            typed("xl create /etc/xen/nokernel.cfg"),
            vec![
                Pattern::line("/etc/xen/nokernel.cfg:3: warning: unknown key `colour' ignored"),
                Pattern::line(
                    "/etc/xen/nokernel.cfg: kernel: /boot/missing.elf: No such file or directory",
                ),
            ],
        ),
        (
            typed("xl create /etc/xen/none.cfg"),
            vec![Pattern::line(
                "Failed to read config file: /etc/xen/none.cfg: No such file or directory",
            )],
        ),
        (typed("xl domid Domain-0"), vec![Pattern::line("0")]),
    ];
    for (cmd, says) in extra {
        steps.push((typed(cmd), vec![says.clone()]));
    }
    let mut sc = Script::new()
        .wait_for(Pattern::contains("dom0: shell ready"))
        .wait_for(Pattern::contains(PROMPT));
    for (keys, says) in steps {
        sc = sc.send(keys);
        for p in says {
            sc = sc.wait_for(p);
        }
        sc = sc.wait_for(Pattern::contains(PROMPT));
    }
    sc
}

fn dom0_path(p: &Paths) -> PathBuf {
    p.root.join("build").join("dom0.elf")
}

fn scenario(p: &Paths, name: &str, qemu_kernel: &Path, smp: u32, script: Script) -> Scenario {
    let initrd = p.logs.join(name).join("initrd.cpio");
    let dom0 = dom0_path(p);
    let mods = vec![Module::new(&dom0, ""), Module::new(&initrd, "")];
    let mut fail = crash_markers();
    fail.extend([
        Pattern::contains("Panic on CPU"),
        Pattern::contains("Domain 0 crashed"),
        Pattern::contains("Hardware Dom0 crashed"),
        Pattern::contains("dom0: initrd: not"),
    ]);
    Scenario {
        name: name.into(),
        qemu: QemuCommand::kernel(qemu_kernel, XEN_CMDLINE, mods)
            .smp(smp)
            .interactive(script),
        expect: Expectation {
            // The script checks every answer; the run itself only has to reach the shell.
            expect: vec![Pattern::contains_all([
                "dom0: initrd: ",
                " bytes, 5 entries",
            ])],
            fail,
            stop: vec![],
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
    let script = session(&[(
        "xl lockstep status",
        Pattern::line(
            "xl: lockstep: the hypervisor refused the request: -38 (ENOSYS); \
             this hypervisor has no DualVisor lockstep control",
        ),
    )]);
    let mut s = scenario(p, "dom0-shell-xen", &p.xen, 2, script);
    s.needs.push((p.xen.clone(), "make xen"));
    Planned::Run(Box::new(s))
}

/// dom0 on DualVisor (lockstep pair): the shell, the config errors, `xl list` and `xl info`.
pub fn dom0_shell(p: &Paths) -> Planned {
    let mut s = scenario(p, "dom0-shell", &p.image, 3, session(&[]));
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
    }

    #[test]
    fn the_session_types_each_command_once_at_a_prompt() {
        use crate::script::ScriptStep;
        let sc = session(&[]);
        let sends: Vec<&Vec<u8>> = sc
            .steps()
            .iter()
            .filter_map(|s| match s {
                ScriptStep::Send(b) => Some(b),
                _ => None,
            })
            .collect();
        assert_eq!(sends.len(), 10);
        assert!(sends.iter().all(|b| b.ends_with(b"\r")));
        // Every send follows a wait for the prompt.
        for (i, s) in sc.steps().iter().enumerate() {
            if matches!(s, ScriptStep::Send(_)) {
                assert!(matches!(
                    &sc.steps()[i - 1],
                    ScriptStep::WaitFor { pattern, .. } if pattern.matches(PROMPT)
                ));
            }
        }
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
