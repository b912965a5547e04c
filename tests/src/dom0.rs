//! Scenarios of the dom0 kernel (`build/dom0.elf`, `make dom0`) with a test initrd the
//! runner writes: an administrator types at the `dom0# ` prompt (an interactive serial
//! script), on real Xen 4.17 (`dom0-shell-xen`, the oracle for the xl outputs) and on
//! DualVisor (`dom0-shell`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tools::cpio::{write_newc, S_IFDIR, S_IFREG};

use crate::catalogue::crash_markers;
use crate::console_scenarios::SWITCH;
use crate::monitor::{End, Expectation};
use crate::oracle::XEN_CMDLINE;
use crate::pattern::Pattern;
use crate::qemu::{Module, QemuCommand};
use crate::scenario::{Paths, Planned, Scenario};
use crate::script::Script;

/// The prompt.
pub const PROMPT: &str = "dom0# ";

/// The command line of the dom0 scenarios: the oracle's, with dom0 at 256 MiB (Xen's
/// default gives dom0 nearly all memory, leaving none for domUs; DualVisor caps it there).
pub fn cmdline() -> String {
    format!("{XEN_CMDLINE} dom0_mem=256M")
}

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

/// `xl info`'s hw_caps line as Xen 4.17 prints it on QEMU 7.2's `-cpu EPYC,-monitor,-smap`
/// (TCG): its featureset words 1d, 1c, e1d, e1c, Da1, 7b0, 7c0, e7d.
pub const HW_CAPS: &str =
    "hw_caps                : 178bf3fd:f6d83203:2c500800:00000077:00000005:008801a9:00000000:00000000";

/// Typed text: the line and Enter (CR, as a terminal sends it).
pub(crate) fn typed(line: &str) -> Vec<u8> {
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
            // In xl's order. Xen 4.17's physinfo and sched_id under the runner's
            // `-cpu EPYC,-monitor,-smap`: DualVisor must print the same.
            vec![
                Pattern::line(HW_CAPS),
                Pattern::line("xen_major              : 4"),
                Pattern::line("xen_minor              : 17"),
                Pattern::line("xen_scheduler          : credit2"),
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
        qemu: QemuCommand::kernel(qemu_kernel, cmdline(), mods)
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

/// A row of `xl lockstep status`'s injection table: kind, injected, masked, recovered,
/// escalated, silent, crashed (the layout of `tools::format::lockstep_status`).
pub(crate) fn injection_row(kind: &str, n: [u64; 6]) -> String {
    let [a, b, c, d, e, f] = n;
    format!("{kind:<14} {a:>9} {b:>9} {c:>9} {d:>9} {e:>9} {f:>9}")
}

/// What a step of the life cycle must print: a line, or a value to remember or to see again.
#[derive(Debug, Clone)]
pub(crate) enum Says {
    /// A line matching this.
    Line(Pattern),
    /// A line starting with this prefix; its rest is kept under the name.
    Capture(&'static str, &'static str),
    /// A line that is the prefix followed by exactly the value kept under the name.
    Same(&'static str, &'static str),
}

/// `xl info`'s free memory line (MiB), the prefix a value is captured after.
const FREE_MEMORY: &str = "free_memory            : ";

/// Typed `xl info` and its free memory remembered as `name`.
fn free_memory_is(name: &'static str) -> (Vec<u8>, Vec<Says>) {
    (typed("xl info"), vec![Says::Capture(name, FREE_MEMORY)])
}

/// Typed `xl info` and its free memory required equal to what was remembered as `name`.
fn free_memory_again(name: &'static str) -> (Vec<u8>, Vec<Says>) {
    (typed("xl info"), vec![Says::Same(name, FREE_MEMORY)])
}

/// The domain life cycle an administrator drives with xl, on the real initrd (`make initrd`:
/// `/etc/xen/demo1.cfg` builds the demo guest, which prints a line a second): create, list,
/// console (live output, Ctrl-] back to the prompt), pause/unpause in the State column,
/// `xl reboot` restarting it under a new id (`on_reboot = "restart"`), destroy with `xl info`'s free memory back to its value before the create, a config whose
/// memory is more than is free leaving no domain behind, and four domUs at once shut down
/// together with `xl shutdown -a -w`, after which free memory is back again.
///
/// `dualvisor`: the run is on DualVisor, which returns every page of a destroyed domain, so
/// free memory is compared with its value before the very first create, and with the four
/// demo domains running `xl lockstep inject effects 100` must be detected and recovered 100
/// times with the domains still running. Xen 4.17 keeps a page of the first domU it builds
/// (seen by h1 and h6), so there free memory is compared after the second cycle only (the
/// value after the first destroy against the value after the four domUs are gone), and the
/// lockstep verbs are refused (`dom0-shell-xen` checks that).
pub fn lifecycle_session(dualvisor: bool) -> Script {
    let gone = |name: &str| {
        Says::Line(Pattern::line(format!(
            "Can't get domid of domain name '{name}', maybe this domain does not exist."
        )))
    };
    let mut steps: Vec<(Vec<u8>, Vec<Says>)> = vec![
        free_memory_is("before-create"),
        (
            typed("xl create /etc/xen/demo1.cfg"),
            vec![Says::Line(Pattern::line(
                "Parsing config from /etc/xen/demo1.cfg",
            ))],
        ),
        (
            typed("xl list"),
            vec![Says::Line(Pattern::contains_all([
                "demo1 ",
                "    1    32     1     ",
            ]))],
        ),
        (
            typed("xl console demo1"),
            vec![Says::Line(Pattern::contains_all([
                "demo: domain 1 line ",
                " time ",
            ]))],
        ),
        (b"\x1d".to_vec(), vec![]),
        (typed("xl pause demo1"), vec![]),
        (
            typed("xl list demo1"),
            vec![Says::Line(Pattern::contains_all(["demo1 ", "p---"]))],
        ),
        (typed("xl unpause demo1"), vec![]),
        // on_reboot = "restart": dom0 sees the shutdown (VIRQ_DOM_EXC), destroys the domain
        // and builds it again from its config, under a new id.
        (
            typed("xl reboot demo1"),
            vec![
                Says::Line(Pattern::line("Rebooting domain 1")),
                Says::Line(Pattern::line(
                    "dom0: domain 1 (demo1) shut down (reboot): restarting it",
                )),
                Says::Line(Pattern::line("dom0: demo1 restarted as domain 2")),
            ],
        ),
        (
            typed("xl list demo1"),
            vec![Says::Line(Pattern::contains_all([
                "demo1 ",
                "    2    32     1     ",
            ]))],
        ),
        (typed("xl destroy demo1"), vec![]),
        (typed("xl domid demo1"), vec![gone("demo1")]),
        // on_crash = "preserve": the demo crashes after two lines and stays, shut down with
        // reason crash, until destroyed.
        (
            typed("xl create /etc/xen/crashdemo.cfg"),
            vec![
                Says::Line(Pattern::line("Parsing config from /etc/xen/crashdemo.cfg")),
                Says::Line(Pattern::line(
                    "dom0: domain 3 (crashdemo) shut down (crash): preserving it",
                )),
            ],
        ),
        (
            typed("xl list crashdemo"),
            vec![Says::Line(Pattern::contains_all(["crashdemo ", "sc-"]))],
        ),
        (typed("xl destroy crashdemo"), vec![]),
        (typed("xl domid crashdemo"), vec![gone("crashdemo")]),
    ];
    if dualvisor {
        steps.push(free_memory_again("before-create"));
    }
    steps.extend([
        free_memory_is("after-first-domu"),
        (
            typed("xl create /etc/xen/demo2.cfg 'memory=100000'"),
            vec![Says::Line(Pattern::contains(
                "/etc/xen/demo2.cfg: memory = 100000 MiB is more than the ",
            ))],
        ),
        (typed("xl domid demo2"), vec![gone("demo2")]),
        // Four domUs at once, then all shut down (on_poweroff = "destroy") and waited for.
        (typed("xl create /etc/xen/demo1.cfg"), vec![]),
        // demo2 powers off after 20 lines (count=20); here it must outlive the steps below.
        (
            typed("xl create /etc/xen/demo2.cfg 'extra=\"count=0\"'"),
            vec![],
        ),
        (typed("xl create /etc/xen/demo1.cfg 'name=\"d3\"'"), vec![]),
        (typed("xl create /etc/xen/demo1.cfg 'name=\"d4\"'"), vec![]),
        (
            typed("xl list"),
            vec![
                Says::Line(Pattern::starts_with("demo2 ")),
                Says::Line(Pattern::starts_with("d3 ")),
                Says::Line(Pattern::starts_with("d4 ")),
            ],
        ),
    ]);
    if dualvisor {
        steps.extend([
            (
                // `-w`: returns once all 100 are injected (each into a transaction of the
                // domains or of xl's own status polls), with their outcomes.
                typed("xl lockstep inject -w effects 100"),
                vec![
                    Says::Line(Pattern::line("lockstep: injecting 100 effects faults")),
                    Says::Line(Pattern::line(
                        "lockstep: 100 effects faults injected so far: 0 masked, 100 recovered, \
                         0 escalated, 0 silent, 0 crashed",
                    )),
                ],
            ),
            // The domains keep running (and making hypercalls) while we watch one.
            (
                typed("xl console d4"),
                vec![
                    Says::Line(Pattern::contains("demo: domain ")),
                    Says::Line(Pattern::contains("demo: domain ")),
                ],
            ),
            (b"\x1d".to_vec(), vec![]),
            (
                typed("xl list"),
                vec![Says::Line(Pattern::starts_with("d4 "))],
            ),
            (
                typed("xl lockstep status"),
                // Every injected fault detected and recovered, none escalated. The totals
                // above the table also count deadline misses of healthy cores on a loaded
                // host (seen: one, a vCPU thread descheduled for 470 ms with two QEMUs on
                // two host cores), so the per-kind row is what must read exactly 100.
                vec![
                    Says::Line(Pattern::line("escalated              : 0")),
                    Says::Line(Pattern::line(injection_row(
                        "effects",
                        [100, 0, 100, 0, 0, 0],
                    ))),
                ],
            ),
            // The hypervisor's own view (debug key `l`): detections split into mismatches,
            // deadline misses and rejected effects, for the log.
            (
                SWITCH.to_vec(),
                vec![Says::Line(Pattern::contains("*** Serial input to Xen"))],
            ),
            (
                b"l".to_vec(),
                vec![
                    Says::Line(Pattern::contains("'l' pressed -> dumping lockstep state")),
                    Says::Line(Pattern::contains("stats: detected ")),
                ],
            ),
            (
                SWITCH.to_vec(),
                vec![Says::Line(Pattern::contains("*** Serial input to DOM0"))],
            ),
            (typed(""), vec![]),
            (
                typed("xl list"),
                vec![
                    Says::Line(Pattern::starts_with("demo1 ")),
                    Says::Line(Pattern::starts_with("demo2 ")),
                    Says::Line(Pattern::starts_with("d3 ")),
                    Says::Line(Pattern::starts_with("d4 ")),
                ],
            ),
        ]);
    }
    steps.extend([
        (
            typed("xl shutdown -a -w"),
            vec![Says::Line(Pattern::line("Waiting for 4 domains"))],
        ),
        (typed("xl domid d4"), vec![gone("d4")]),
        free_memory_again("after-first-domu"),
    ]);
    steps_script(steps)
}

/// The script of typed steps, each followed by what it must print and (unless it attaches
/// to a console or the debug keys) the prompt.
pub(crate) fn steps_script(steps: Vec<(Vec<u8>, Vec<Says>)>) -> Script {
    let sc = Script::new()
        .wait_for(Pattern::contains("dom0: shell ready"))
        .wait_for(Pattern::contains(PROMPT));
    add_steps(sc, steps)
}

/// `sc` followed by `steps`, as [`steps_script`] makes them.
pub(crate) fn add_steps(mut sc: Script, steps: Vec<(Vec<u8>, Vec<Says>)>) -> Script {
    for (keys, says) in steps {
        // Attached to a console there is no prompt until Ctrl-] (0x1d); nor while input
        // goes to the hypervisor's debug keys.
        let attaches = keys.starts_with(b"xl console") || keys == SWITCH || keys == b"l";
        // Building or tearing down domains under lockstep on a loaded host takes a while.
        let slow = keys.starts_with(b"xl create") || keys.starts_with(b"xl shutdown");
        sc = sc.send(keys);
        for p in says {
            sc = match p {
                Says::Line(p) => sc.wait_for(p),
                Says::Capture(name, prefix) => sc.capture(name, prefix),
                Says::Same(name, prefix) => sc.wait_for_captured(name, prefix),
            };
        }
        if !attaches {
            sc = if slow {
                sc.wait_for_within(Pattern::contains(PROMPT), SLOW_STEP)
            } else {
                sc.wait_for(Pattern::contains(PROMPT))
            };
        }
    }
    sc
}

/// How long `xl create` and `xl shutdown -w` may take to return to the prompt.
const SLOW_STEP: Duration = Duration::from_secs(180);

pub(crate) fn lifecycle(
    p: &Paths,
    name: &str,
    kernel: &Path,
    smp: u32,
    dualvisor: bool,
) -> Scenario {
    let timeout = Duration::from_secs(if dualvisor { 900 } else { 300 });
    real_initrd(p, name, kernel, smp, lifecycle_session(dualvisor), timeout)
}

/// dom0 with the real initrd (`make initrd`) under `kernel` on `smp` CPUs, driven by `script`.
pub(crate) fn real_initrd(
    p: &Paths,
    name: &str,
    kernel: &Path,
    smp: u32,
    script: Script,
    timeout: Duration,
) -> Scenario {
    let dom0 = dom0_path(p);
    let initrd = p.root.join("build").join("dom0-initrd.cpio");
    let mods = vec![Module::new(&dom0, ""), Module::new(&initrd, "")];
    let mut fail = crash_markers();
    fail.extend([
        Pattern::contains("Panic on CPU"),
        Pattern::contains("Domain 0 crashed"),
        Pattern::contains("Hardware Dom0 crashed"),
        Pattern::contains("libxl: error"),
    ]);
    Scenario {
        name: name.into(),
        qemu: QemuCommand::kernel(kernel, cmdline(), mods)
            .smp(smp)
            .interactive(script),
        expect: Expectation {
            expect: vec![Pattern::contains("dom0: initrd: ")],
            fail,
            stop: vec![],
            end: End::KillWhenSeen {
                linger: Duration::ZERO,
            },
            timeout,
        },
        needs: vec![(dom0, "make dom0"), (initrd, "make initrd")],
        inputs: vec![],
    }
}

/// `dom0-xl-xen`: the life cycle on real Xen 4.17.
pub fn dom0_xl_xen(p: &Paths) -> Planned {
    if !p.xen.is_file() {
        return Planned::Skip {
            name: "dom0-xl-xen".into(),
            reason: format!("{} missing (make xen)", p.show(&p.xen)),
        };
    }
    let mut s = lifecycle(p, "dom0-xl-xen", &p.xen, 2, false);
    s.needs.push((p.xen.clone(), "make xen"));
    Planned::Run(Box::new(s))
}

/// `dom0-xl`: the life cycle on DualVisor (lockstep pair). Skipped while DualVisor cannot
/// build a domU (the builder is the one the `domu` guest uses, see
/// [`crate::oracle::dualvisor_known_failure`]).
pub fn dom0_xl(p: &Paths) -> Planned {
    if let Some(why) = crate::oracle::dualvisor_known_failure(Path::new("domu.elf")) {
        return Planned::Skip {
            name: "dom0-xl".into(),
            reason: format!("xl create uses the domu guest's builder: {why}"),
        };
    }
    let mut s = lifecycle(p, "dom0-xl", &p.image, 3, true);
    s.needs.push((p.image.clone(), "make image"));
    Planned::Run(Box::new(s))
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
    fn the_lifecycle_session_detaches_before_the_next_prompt() {
        use crate::script::ScriptStep;
        for dualvisor in [false, true] {
            let sc = lifecycle_session(dualvisor);
            let steps = sc.steps();
            let consoles: Vec<usize> = steps
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, ScriptStep::Send(b) if b.starts_with(b"xl console")))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(consoles.len(), if dualvisor { 2 } else { 1 });
            for console in consoles {
                let detach = steps[console..]
                    .iter()
                    .position(|s| matches!(s, ScriptStep::Send(_)) && *s != steps[console])
                    .unwrap()
                    + console;
                assert!(steps[console + 1..detach]
                    .iter()
                    .all(|s| matches!(s, ScriptStep::WaitFor { .. })));
                assert!(
                    detach > console + 1,
                    "a console shows output before detaching"
                );
                assert_eq!(steps[detach], ScriptStep::Send(b"\x1d".to_vec()));
                assert!(matches!(
                    &steps[detach + 1],
                    ScriptStep::WaitFor { pattern, .. } if pattern.matches(PROMPT)
                ));
            }
        }
    }

    #[test]
    fn the_injection_row_is_the_one_xl_prints() {
        use dom0_interface::lockstep_ctl::{LockstepKind, LockstepStatus};
        let mut st = LockstepStatus::default();
        let k = &mut st.kinds[LockstepKind::Effects.index()];
        k.injected = 100;
        k.recovered = 100;
        let text = tools::format::lockstep_status(&st);
        let row = injection_row("effects", [100, 0, 100, 0, 0, 0]);
        assert!(text.lines().any(|l| l == row), "{row:?} not in\n{text}");
        assert!(!text
            .lines()
            .any(|l| l == injection_row("effects", [100, 0, 99, 1, 0, 0])));
    }

    #[test]
    fn free_memory_is_compared_with_a_value_captured_earlier() {
        use crate::script::ScriptStep;
        let names = |dualvisor| -> Vec<(bool, String)> {
            lifecycle_session(dualvisor)
                .steps()
                .iter()
                .filter_map(|s| match s {
                    ScriptStep::Capture { name, .. } => Some((true, name.clone())),
                    ScriptStep::WaitForCaptured { name, .. } => Some((false, name.clone())),
                    _ => None,
                })
                .collect()
        };
        let c = |n: &str| (true, n.to_string());
        let w = |n: &str| (false, n.to_string());
        assert_eq!(
            names(true),
            [
                c("before-create"),
                w("before-create"),
                c("after-first-domu"),
                w("after-first-domu")
            ]
        );
        assert_eq!(
            names(false),
            [
                c("before-create"),
                c("after-first-domu"),
                w("after-first-domu")
            ]
        );
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
