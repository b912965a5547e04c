//! The scenario catalogue: boot, command line, modules, ISO and faults, with the serial
//! markers each must show; [`static_scenarios`] also gathers the self-test and oracle ones.

use std::path::PathBuf;
use std::time::Duration;

use crate::monitor::{End, Expectation};
use crate::oracle::{dualvisor_guests, find_guests, xen_oracles};
use crate::pattern::Pattern;
use crate::qemu::{Module, QemuCommand};
use crate::scenario::{Paths, Planned, Scenario};
use crate::selftests::{selftest_list, selftest_unknown, stack_overflow};

/// Console options every DualVisor scenario passes.
pub const CONSOLE: &str = "console=com1 com1=115200,8n1 loglvl=all";
/// The command line of the plain boot scenarios.
pub const BOOT_CMDLINE: &str = "console=com1 com1=115200,8n1 loglvl=all noreboot";
/// The command line GRUB passes (arch/grub.cfg) and `make run` uses.
pub const RUN_CMDLINE: &str = "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot";
/// Sizes of the two boot modules of the `modules` scenario (deliberately not page multiples).
pub const MODULE_SIZES: [usize; 2] = [12345, 777];

/// Time limit of every DualVisor scenario (TCG on a shared 2-core host is slow).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(120);
/// How long an idle system must stay up after its last marker.
const LINGER: Duration = Duration::from_secs(1);

/// Lines that mean the hypervisor crashed.
pub(crate) fn crash_markers() -> Vec<Pattern> {
    vec![
        Pattern::contains("(XEN) FATAL TRAP"),
        Pattern::contains("(XEN) Panic"),
        Pattern::contains("panicked at"),
    ]
}

/// Crash lines plus command-line warnings: for runs whose command line is all valid.
fn clean_boot_failures() -> Vec<Pattern> {
    let mut v = crash_markers();
    v.push(Pattern::contains("(XEN) Warning: unknown boot option"));
    v.push(Pattern::contains("(XEN) Warning: bad value"));
    v
}

/// DualVisor booted with `-kernel` (multiboot1), `smp` CPUs and command line `append`.
pub(crate) fn kernel(p: &Paths, smp: u32, append: &str) -> QemuCommand {
    QemuCommand::kernel(&p.image, append, vec![]).smp(smp)
}

/// The image every DualVisor scenario needs, and the target that builds it.
pub(crate) fn image_needs(p: &Paths) -> Vec<(PathBuf, &'static str)> {
    vec![(p.image.clone(), "make image")]
}

/// The line after which an idle system without dom0 prints nothing more of its own accord.
fn idle_reached() -> Pattern {
    Pattern::contains("(XEN) No dom0 kernel given")
}

fn idle(expect: Vec<Pattern>, fail: Vec<Pattern>) -> Expectation {
    Expectation {
        expect,
        fail,
        stop: vec![idle_reached()],
        end: End::KillWhenSeen { linger: LINGER },
        timeout: TIMEOUT,
    }
}

/// Markers of a complete boot to idle with `cpus` CPUs (and no dom0).
fn boot_markers(cpus: u32, cmdline: &str, loader: &str) -> Vec<Pattern> {
    let mut v = vec![
        Pattern::contains("(XEN) DualVisor"),
        Pattern::contains_all(["(XEN) Command line: ", cmdline]),
        Pattern::contains_all(["(XEN) Bootloader: ", &format!("({loader})")]),
        Pattern::contains(format!("(XEN) Brought up {cpus} CPUs")),
    ];
    for i in 0..cpus {
        v.push(Pattern::contains(format!("(XEN) CPU{i}: timer ticking")));
    }
    v.push(Pattern::contains("(XEN) No dom0 kernel given"));
    v
}

fn boot_smp(p: &Paths, cpus: u32) -> Scenario {
    Scenario {
        name: format!("boot-smp{cpus}"),
        qemu: kernel(p, cpus, BOOT_CMDLINE),
        expect: idle(
            boot_markers(cpus, BOOT_CMDLINE, "multiboot1"),
            clean_boot_failures(),
        ),
        needs: image_needs(p),
        inputs: vec![],
    }
}

fn maxcpus(p: &Paths) -> Scenario {
    let cmdline = format!("{BOOT_CMDLINE} maxcpus=2");
    let mut fail = clean_boot_failures();
    fail.push(Pattern::contains("(XEN) CPU2: timer ticking"));
    fail.push(Pattern::contains("(XEN) CPU3: timer ticking"));
    Scenario {
        name: "maxcpus".into(),
        qemu: kernel(p, 4, &cmdline),
        expect: idle(boot_markers(2, &cmdline, "multiboot1"), fail),
        needs: image_needs(p),
        inputs: vec![],
    }
}

fn bad_value(value: &str, option: &str) -> Pattern {
    Pattern::contains(format!(
        "(XEN) Warning: bad value '{value}' for boot option '{option}', using default"
    ))
}

fn bad_cmdline(p: &Paths) -> Scenario {
    let cmdline = format!("{BOOT_CMDLINE} maxcpus=abc loglvl=purple frobnicate=1 lockstep=maybe");
    let mut expect = vec![
        bad_value("abc", "maxcpus"),
        bad_value("purple", "loglvl"),
        bad_value("maybe", "lockstep"),
        Pattern::contains_all([
            "(XEN) Warning: unknown boot option 'frobnicate",
            "' ignored",
        ]),
    ];
    expect.extend(boot_markers(2, &cmdline, "multiboot1"));
    Scenario {
        name: "bad-cmdline".into(),
        qemu: kernel(p, 2, &cmdline),
        expect: idle(expect, crash_markers()),
        needs: image_needs(p),
        inputs: vec![],
    }
}

/// Deterministic, non-trivial module contents of `len` bytes.
pub fn module_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `(XEN) Module <i>: <size> bytes at <paddr>, cmdline '<text>'`, where the text is the
/// arguments alone (image name stripped, as Xen does for dom0) or the whole loader string.
fn module_line(index: usize, size: usize, file: &str, args: &str) -> Pattern {
    let head = format!("(XEN) Module {index}: {size} bytes at ");
    let full = if args.is_empty() {
        format!("{file}'")
    } else {
        format!("{file} {args}'")
    };
    Pattern::any([
        Pattern::contains_all([head.clone(), format!(", cmdline '{args}'")]),
        Pattern::contains_all([head, ", cmdline '".to_string(), full]),
    ])
}

fn modules(p: &Paths) -> Scenario {
    let dir = p.logs.join("modules");
    let a = dir.join("mod-a.bin");
    let b = dir.join("mod-b.bin");
    let mods = vec![Module::new(&a, "arg1 arg2"), Module::new(&b, "")];
    let expect = vec![
        module_line(0, MODULE_SIZES[0], "mod-a.bin", "arg1 arg2"),
        module_line(1, MODULE_SIZES[1], "mod-b.bin", ""),
    ];
    // Module 0 is not a kernel, so what follows the module lines is up to the loader's
    // error handling: only a trap counts as a failure here.
    let fail = vec![Pattern::contains("(XEN) FATAL TRAP")];
    Scenario {
        name: "modules".into(),
        qemu: QemuCommand::kernel(&p.image, BOOT_CMDLINE, mods).smp(1),
        expect: Expectation {
            expect,
            fail,
            stop: vec![],
            end: End::KillWhenSeen {
                linger: Duration::ZERO,
            },
            timeout: TIMEOUT,
        },
        needs: image_needs(p),
        inputs: vec![
            (a, module_bytes(0xa5, MODULE_SIZES[0])),
            (b, module_bytes(0x5a, MODULE_SIZES[1])),
        ],
    }
}

fn iso(p: &Paths) -> Scenario {
    // GRUB draws on the serial line first: no marker may rely on a line starting cleanly.
    let mut expect = vec![
        Pattern::contains("(XEN) DualVisor"),
        Pattern::contains_all(["(XEN) Command line: ", RUN_CMDLINE]),
        Pattern::contains_all(["(XEN) Bootloader: ", "(multiboot2)"]),
        Pattern::contains("(XEN) Brought up 2 CPUs"),
    ];
    expect.push(Pattern::contains("(XEN) No dom0 kernel given"));
    Scenario {
        name: "iso".into(),
        qemu: QemuCommand::cdrom(&p.iso).smp(2),
        expect: idle(expect, clean_boot_failures()),
        needs: vec![(p.iso.clone(), "make iso")],
        inputs: vec![],
    }
}

fn fault(p: &Paths, noreboot: bool) -> Scenario {
    let mut expect = vec![
        Pattern::contains("(XEN) FATAL TRAP: vector 6"),
        Pattern::contains("RIP:"),
        Pattern::contains("(XEN) Xen call trace:"),
    ];
    let manual = Pattern::contains("(XEN) Manual reset required ('noreboot' specified)");
    let resetting = Pattern::contains("(XEN) Resetting");
    // Xen's fatal-trap report ends with a "Panic on CPU" banner: only a Rust panic (the
    // trap path itself failing) counts as a crash here.
    let mut fail = vec![Pattern::contains("panicked at")];
    let (name, cmdline, end) = if noreboot {
        expect.push(manual);
        fail.push(resetting);
        (
            "fault-noreboot",
            format!("{CONSOLE} noreboot selftest=fault"),
            // Halted, not reset: with -no-reboot a reset would make QEMU exit.
            End::KillWhenSeen {
                linger: Duration::from_secs(2),
            },
        )
    } else {
        expect.push(resetting);
        fail.push(manual);
        (
            "fault-reset",
            format!("{CONSOLE} selftest=fault"),
            End::Exit(0),
        )
    };
    Scenario {
        name: name.into(),
        qemu: kernel(p, 2, &cmdline),
        expect: Expectation {
            expect,
            fail,
            stop: vec![],
            end,
            timeout: TIMEOUT,
        },
        needs: image_needs(p),
        inputs: vec![],
    }
}

/// Every scenario known before any QEMU ran, `selftest-list` first (its output names the
/// self-tests, see [`selftests_from`]).
/// A dom0 module that is not a usable kernel: one clear line, a clean halt, no trap or panic.
fn dom0_bad_kernel(p: &Paths, what: &str, bytes: Vec<u8>, says: &str) -> Scenario {
    let dir = p.logs.join(format!("dom0-{what}"));
    let file = dir.join("kernel.bin");
    Scenario {
        name: format!("dom0-{what}"),
        qemu: QemuCommand::kernel(&p.image, BOOT_CMDLINE, vec![Module::new(&file, "")]).smp(2),
        expect: Expectation {
            expect: vec![
                Pattern::contains(format!("(XEN) Could not set up DOM0 guest OS: {says}")),
                Pattern::contains("(XEN) System halted"),
            ],
            fail: crash_markers(),
            stop: vec![],
            end: End::KillWhenSeen {
                linger: Duration::ZERO,
            },
            timeout: TIMEOUT,
        },
        needs: image_needs(p),
        inputs: vec![(file, bytes)],
    }
}

fn elf32_header() -> Vec<u8> {
    let mut v = vec![0u8; 64];
    v[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    v
}

pub fn static_scenarios(p: &Paths) -> Vec<Planned> {
    let mut v: Vec<Planned> = vec![
        selftest_list(p),
        boot_smp(p, 1),
        boot_smp(p, 2),
        boot_smp(p, 4),
        maxcpus(p),
        bad_cmdline(p),
        modules(p),
        iso(p),
        selftest_unknown(p),
        fault(p, true),
        fault(p, false),
        stack_overflow(p, "main", "main stack"),
        stack_overflow(p, "syscall", "SYSCALL stack"),
        dom0_bad_kernel(p, "not-elf", module_bytes(0x42, 5000), "not an ELF image"),
        dom0_bad_kernel(p, "elf32", elf32_header(), "32-bit ELF image"),
    ]
    .into_iter()
    .map(|s| Planned::Run(Box::new(s)))
    .collect();
    let guests = find_guests(p);
    v.extend(xen_oracles(p, &guests, p.xen.is_file()));
    v.extend(dualvisor_guests(p, &guests));
    v.extend(crate::two_pairs::two_pair_guests(p, &guests));
    v.extend(crate::two_pairs::lockpairs_smp6(p, &guests));
    v.extend(crate::two_pairs::lockleader_rerouted(p, &guests));
    v.extend(crate::recovery::hcloop_inject(p, &guests));
    v.extend(crate::lockstep_off::lockstep_off_guests(p, &guests));
    v.push(crate::dom0::dom0_shell_xen(p));
    v.push(crate::dom0::dom0_shell(p));
    v.push(crate::dom0::dom0_xl_xen(p));
    v.push(crate::dom0::dom0_xl(p));
    v.push(crate::dom0_spare::dom0_lockstep_spare(p));
    v.push(crate::dom0_spare::dom0_lockstep_promote(p, true));
    v.push(crate::dom0_spare::dom0_lockstep_promote(p, false));
    v.push(crate::two_pairs::dom0_two_pairs(p));
    v.push(crate::two_pairs::dom0_spare_smp6(p));
    v.push(crate::lockstep_off::dom0_lockstep_off(p));
    v.push(crate::lockstep_off::dom0_xl_off(p));
    v.extend(crate::console_scenarios::console_scenarios(p, &guests));
    v.extend(crate::linux_dom0::linux_dom0(p));
    v
}

/// Helpers for the scenario tests of this module and its siblings.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::scenario::{Planned, Scenario};
    use crate::watch::{WatchState, Watcher};

    /// The runnable scenario called `name` in `v` (panics if absent or skipped).
    pub(crate) fn find(v: &[Planned], name: &str) -> Scenario {
        match v.iter().find(|p| p.name() == name) {
            Some(Planned::Run(s)) => (**s).clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

    /// What `s`'s markers make of the complete log `log`.
    pub(crate) fn watch(s: &Scenario, log: &str) -> WatchState {
        let mut w = Watcher::new(s.expect.expect.clone(), s.expect.fail.clone());
        w.feed(log.as_bytes());
        w.finish();
        w.state()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{find, watch};
    use super::*;
    use crate::watch::WatchState;
    use std::fs;
    use std::path::Path;

    fn paths() -> Paths {
        Paths::new("/repo")
    }

    fn boot_log(cpus: u32, cmdline: &str) -> String {
        let mut log = format!(
            "(XEN) DualVisor 0.1.0\n(XEN) Command line: {cmdline}\n\
             (XEN) Bootloader: QEMU (multiboot1)\n(XEN) Brought up {cpus} CPUs\n"
        );
        for i in 0..cpus {
            log.push_str(&format!("(XEN) CPU{i}: timer ticking\n"));
        }
        log.push_str("(XEN) No dom0 kernel given\n");
        log
    }

    #[test]
    fn static_names_are_unique_and_listed_first() {
        let v = static_scenarios(&paths());
        assert_eq!(v[0].name(), crate::selftests::SELFTEST_LIST);
        let mut names: Vec<&str> = v.iter().map(Planned::name).collect();
        for n in [
            "boot-smp1",
            "boot-smp2",
            "boot-smp4",
            "maxcpus",
            "bad-cmdline",
            "modules",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        for n in ["iso", "fault-noreboot", "fault-reset", "selftest-unknown"] {
            assert!(names.contains(&n), "{n}");
        }
        let before = names.len();
        names.sort();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn boot_smp_needs_every_cpu() {
        let v = static_scenarios(&paths());
        let s = find(&v, "boot-smp4");
        assert_eq!(s.qemu.smp, 4);
        assert_eq!(watch(&s, &boot_log(4, BOOT_CMDLINE)), WatchState::AllSeen);
        let short = boot_log(4, BOOT_CMDLINE).replace("(XEN) CPU3: timer ticking\n", "");
        assert_eq!(watch(&s, &short), WatchState::Pending);
        let warned = format!(
            "{}(XEN) Warning: unknown boot option 'x' ignored\n",
            boot_log(4, BOOT_CMDLINE)
        );
        assert!(matches!(watch(&s, &warned), WatchState::Failed { .. }));
    }

    #[test]
    fn maxcpus_rejects_extra_cpus() {
        let s = find(&static_scenarios(&paths()), "maxcpus");
        let cmdline = format!("{BOOT_CMDLINE} maxcpus=2");
        assert_eq!(watch(&s, &boot_log(2, &cmdline)), WatchState::AllSeen);
        assert!(matches!(
            watch(&s, &boot_log(4, &cmdline)),
            WatchState::Failed { .. }
        ));
    }

    #[test]
    fn bad_cmdline_wants_every_warning() {
        let s = find(&static_scenarios(&paths()), "bad-cmdline");
        let cmdline =
            format!("{BOOT_CMDLINE} maxcpus=abc loglvl=purple frobnicate=1 lockstep=maybe");
        let warnings = "\
(XEN) Warning: bad value 'abc' for boot option 'maxcpus', using default
(XEN) Warning: bad value 'purple' for boot option 'loglvl', using default
(XEN) Warning: unknown boot option 'frobnicate=1' ignored
(XEN) Warning: bad value 'maybe' for boot option 'lockstep', using default
";
        let log = format!("{warnings}{}", boot_log(2, &cmdline));
        assert_eq!(watch(&s, &log), WatchState::AllSeen);
        let without_lockstep: String = log
            .lines()
            .filter(|l| !l.contains("'lockstep'"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(watch(&s, &without_lockstep), WatchState::Pending);
    }

    #[test]
    fn modules_scenario_writes_its_files_and_checks_sizes() {
        let s = find(&static_scenarios(&paths()), "modules");
        assert_eq!(s.inputs.len(), 2);
        assert_eq!(s.inputs[0].1.len(), MODULE_SIZES[0]);
        assert_eq!(s.inputs[1].1.len(), MODULE_SIZES[1]);
        let a = s.inputs[0].0.display().to_string();
        let b = s.inputs[1].0.display().to_string();
        let log = format!(
            "(XEN) Module 0: 12345 bytes at 0x1000000, cmdline '{a} arg1 arg2'\n\
             (XEN) Module 1: 777 bytes at 0x1004000, cmdline '{b}'\n"
        );
        assert_eq!(watch(&s, &log), WatchState::AllSeen);
        let wrong = log.replace("777 bytes", "4096 bytes");
        assert_eq!(watch(&s, &wrong), WatchState::Pending);
        let stripped = "(XEN) Module 0: 12345 bytes at 0x1000000, cmdline 'arg1 arg2'\n\
                        (XEN) Module 1: 777 bytes at 0x1004000, cmdline ''\n";
        assert_eq!(watch(&s, stripped), WatchState::AllSeen);
        let lost_args = stripped.replace("'arg1 arg2'", "''");
        assert_eq!(watch(&s, &lost_args), WatchState::Pending);
    }

    #[test]
    fn module_bytes_are_deterministic() {
        assert_eq!(module_bytes(1, 4), module_bytes(1, 4));
        assert_ne!(module_bytes(1, 4), module_bytes(2, 4));
        assert_eq!(module_bytes(0, 3), vec![0, 31, 62]);
    }

    #[test]
    fn fault_scenarios_differ_in_how_they_end() {
        let v = static_scenarios(&paths());
        let halt = find(&v, "fault-noreboot");
        let reset = find(&v, "fault-reset");
        assert!(matches!(halt.expect.end, End::KillWhenSeen { .. }));
        assert_eq!(reset.expect.end, End::Exit(0));
        let trap = "(XEN) FATAL TRAP: vector 6 (#UD)\n(XEN) RIP: e008:[<ffff82d080201234>]\n\
                    (XEN) Xen call trace:\n(XEN)    [<ffff82d080201234>] selftest\n";
        let halted = format!("{trap}(XEN) Manual reset required ('noreboot' specified)\n");
        let resetting = format!("{trap}(XEN) Resetting\n");
        assert_eq!(watch(&halt, &halted), WatchState::AllSeen);
        assert!(matches!(
            watch(&halt, &resetting),
            WatchState::Failed { .. }
        ));
        assert_eq!(watch(&reset, &resetting), WatchState::AllSeen);
        assert!(matches!(watch(&reset, &halted), WatchState::Failed { .. }));
    }

    fn repo_file(rel: &str) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ has a parent");
        fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    #[test]
    fn grub_cfg_boots_with_the_command_line_the_iso_scenario_expects() {
        let cfg = repo_file("arch/grub.cfg");
        assert!(cfg.contains(&format!("multiboot2 /boot/dualvisor.elf {RUN_CMDLINE}\n")));
        assert!(cfg.contains("serial --unit=0 --speed=115200"));
        assert!(cfg.contains("terminal_output serial console"));
        assert!(cfg.contains("terminal_input serial console"));
        assert!(cfg.contains("set timeout=0"));
    }

    #[test]
    fn make_run_uses_the_same_command_line() {
        let mk = repo_file("Makefile");
        assert!(mk.contains(&format!("RUN_APPEND  ?= {RUN_CMDLINE}\n")));
    }
}
