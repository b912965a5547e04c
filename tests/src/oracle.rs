//! The differential oracle: the test guests booted as dom0 on real Xen 4.17, which defines
//! what "correct" means for them.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::monitor::{End, Expectation};
use crate::pattern::Pattern;
use crate::qemu::{Module, QemuCommand};
use crate::scenario::{Paths, Planned, Scenario};

/// Real Xen's command line for the oracle runs (two dom0 vCPUs: the guests' multi-vCPU
/// checks run, none of them skips).
pub const XEN_CMDLINE: &str =
    "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot dom0_max_vcpus=2";
/// DualVisor's command line for the same guests: Xen's, unchanged.
pub const DUALVISOR_GUEST_CMDLINE: &str = XEN_CMDLINE;
/// Time limit of a real-Xen oracle run.
const XEN_TIMEOUT: Duration = Duration::from_secs(180);
/// Time limit of a DualVisor guest run: a hang detector, not a speed check (`make bench` is).
/// Every transaction hands off between the leader's, follower's and coordinator's QEMU vCPU
/// threads; on a two-core host running two QEMUs each handoff waits for the host scheduler.
const DUALVISOR_TIMEOUT: Duration = Duration::from_secs(300);

/// Boot modules after the kernel that a test guest needs (dom0's initrd): `domu` builds the
/// `demo` guest as a domU from it, `gnttab2` the domU-only `gntpeer` kernel, `ptwrdomu` the
/// `ptwr` guest.
pub fn extra_modules(p: &Paths, guest: &Path) -> Vec<PathBuf> {
    match guest.file_stem().and_then(|s| s.to_str()) {
        Some("domu") => vec![p.guests.join("demo.elf")],
        Some("gnttab2") => vec![p.guests.join("domus").join("gntpeer.elf")],
        Some("ptwrdomu") => vec![p.guests.join("ptwr.elf")],
        _ => vec![],
    }
}

/// `guest` and its extra modules as QEMU modules, and what building them needs.
fn guest_modules(p: &Paths, guest: &Path) -> (Vec<Module>, Vec<(PathBuf, &'static str)>) {
    let mut mods = vec![Module::new(guest, "")];
    let mut needs = vec![(guest.to_path_buf(), "make guests")];
    for m in extra_modules(p, guest) {
        mods.push(Module::new(&m, ""));
        needs.push((m, "make guests"));
    }
    (mods, needs)
}

/// Guests of DualVisor's own extensions, which are not part of Xen's ABI (the lockstep
/// control sysctl). Real Xen answers the extension with its error for an unknown command
/// (`-ENOSYS`), so on the oracle these guests must recognise that and print
/// `Test result: SKIP`: the oracle expects exactly SKIP from them (SUCCESS there would mean
/// the guest mistook Xen for DualVisor), and SUCCESS on DualVisor as usual.
pub const DUALVISOR_EXTENSION_GUESTS: &[&str] = &["lockstep", "lockpairs", "lockleader"];

/// Boots real Xen 4.17 with `guest` as dom0, expecting the guest's SUCCESS line (SKIP for
/// the [`DUALVISOR_EXTENSION_GUESTS`]).
pub fn xen_oracle(p: &Paths, guest: &Path) -> Scenario {
    let stem = guest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "guest".into());
    let (want, unwanted) = if DUALVISOR_EXTENSION_GUESTS.contains(&stem.as_str()) {
        ("Test result: SKIP", "Test result: SUCCESS")
    } else {
        ("Test result: SUCCESS", "Test result: SKIP")
    };
    let fail = vec![
        Pattern::contains("Test result: FAILURE"),
        Pattern::contains("Test result: ERROR"),
        Pattern::contains(unwanted),
        Pattern::contains("Panic on CPU"),
        Pattern::contains("Domain 0 crashed"),
    ];
    let (modules, guest_needs) = guest_modules(p, guest);
    Scenario {
        name: format!("xen-oracle-{stem}"),
        qemu: crate::console_scenarios::with_guest_script(
            &stem,
            QemuCommand::kernel(&p.xen, XEN_CMDLINE, modules).smp(2),
        ),
        expect: Expectation {
            expect: vec![Pattern::contains(want)],
            fail,
            // Xen keeps running after dom0 halts: stop there whatever the guest printed.
            stop: vec![Pattern::contains("Hardware Dom0 halted")],
            end: End::KillWhenSeen {
                linger: Duration::ZERO,
            },
            timeout: XEN_TIMEOUT,
        },
        needs: [(p.xen.clone(), "make xen")]
            .into_iter()
            .chain(guest_needs)
            .collect(),
        inputs: vec![],
    }
}

/// What a DualVisor guest run on `cpus` CPUs must print, in order: `head`, the guest's own
/// `says`, its SUCCESS line, every CPU's stack high-water marks (printed as dom0 goes down)
/// and dom0's halt.
pub(crate) fn guest_run_lines(head: Vec<Pattern>, says: &[&str], cpus: u32) -> Vec<Pattern> {
    let mut v = head;
    v.extend(says.iter().map(|l| Pattern::contains(*l)));
    v.push(Pattern::contains("Test result: SUCCESS"));
    v.extend(
        (0..cpus).map(|cpu| Pattern::contains(format!("(XEN) stack use (KiB): CPU{cpu} main"))),
    );
    v.push(Pattern::contains("(XEN) Hardware Dom0 halted"));
    v
}

/// Boots DualVisor with `guest` as dom0 on a lockstep pair (`-smp 3`: coordinator, leader,
/// follower), expecting the SUCCESS line the guest prints on Xen 4.17.
pub fn dualvisor_guest(p: &Paths, guest: &Path) -> Scenario {
    let stem = guest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "guest".into());
    let fail = vec![
        Pattern::contains("Test result: FAILURE"),
        Pattern::contains("Test result: ERROR"),
        Pattern::contains("Test result: SKIP"),
        Pattern::contains("(XEN) FATAL TRAP"),
        Pattern::contains("(XEN) Panic"),
        Pattern::contains("Hardware Dom0 crashed"),
        Pattern::contains("(XEN) Warning: stack nearly full"),
    ];
    let (modules, guest_needs) = guest_modules(p, guest);
    Scenario {
        name: format!("dualvisor-{stem}"),
        qemu: crate::console_scenarios::with_guest_script(
            &stem,
            QemuCommand::kernel(&p.image, DUALVISOR_GUEST_CMDLINE, modules).smp(3),
        ),
        expect: Expectation {
            expect: guest_run_lines(
                vec![Pattern::contains(
                    "(XEN) lockstep: pair 0 leader CPU1 follower CPU2",
                )],
                &[],
                3,
            ),
            fail,
            stop: vec![],
            end: End::KillWhenSeen {
                linger: Duration::ZERO,
            },
            timeout: DUALVISOR_TIMEOUT,
        },
        needs: [(p.image.clone(), "make image")]
            .into_iter()
            .chain(guest_needs)
            .collect(),
        inputs: vec![],
    }
}

/// Guests that do not pass on DualVisor yet, and why (each is reported as skipped).
pub fn dualvisor_known_failure(guest: &Path) -> Option<&'static str> {
    // None today: `domu` (whose foreign MMUEXT_PIN_L4_TABLE overflowed the 32 KiB hypercall
    // stack) passes since that stack is 64 KiB. Add `Some("stem") => Some("why")` rows here.
    match guest.file_stem().and_then(|s| s.to_str()) {
        Some(_) | None => None,
    }
}

/// The DualVisor runs of `guests` (nothing when none were built).
pub fn dualvisor_guests(p: &Paths, guests: &[PathBuf]) -> Vec<Planned> {
    guests
        .iter()
        .map(|g| {
            let s = dualvisor_guest(p, g);
            match dualvisor_known_failure(g) {
                Some(reason) => Planned::Skip {
                    name: s.name,
                    reason: reason.into(),
                },
                None => Planned::Run(Box::new(s)),
            }
        })
        .collect()
}

/// The test guests in `build/guests/` (`*.elf`, sorted), empty when there is none.
pub fn find_guests(p: &Paths) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(&p.guests)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|path| path.extension().is_some_and(|x| x == "elf") && path.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The oracle scenarios for `guests`, skipped (with the reason) when Xen is not available.
pub fn xen_oracles(p: &Paths, guests: &[PathBuf], xen_present: bool) -> Vec<Planned> {
    if guests.is_empty() {
        return vec![Planned::Skip {
            name: "xen-oracle".into(),
            reason: format!(
                "no test guests in {} (run `make guests`)",
                p.show(&p.guests)
            ),
        }];
    }
    guests
        .iter()
        .map(|g| {
            let s = xen_oracle(p, g);
            if xen_present {
                Planned::Run(Box::new(s))
            } else {
                Planned::Skip {
                    name: s.name,
                    reason: format!(
                        "{} not found: `make xen` could not fetch Debian's xen-hypervisor-4.17-amd64",
                        p.show(&p.xen)
                    ),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::test_support::{find, watch};
    use crate::watch::WatchState;

    fn paths() -> Paths {
        Paths::new("/repo")
    }

    #[test]
    fn oracle_skips_without_xen_or_guests() {
        let p = paths();
        let none = xen_oracles(&p, &[], true);
        assert!(matches!(&none[..], [Planned::Skip { name, .. }] if name == "xen-oracle"));
        let guests = vec![PathBuf::from("/repo/build/guests/hello.elf")];
        let skipped = xen_oracles(&p, &guests, false);
        match &skipped[..] {
            [Planned::Skip { name, reason }] => {
                assert_eq!(name, "xen-oracle-hello");
                assert!(reason.contains("build/xen/xen.elf"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let run = xen_oracles(&p, &guests, true);
        let s = find(&run, "xen-oracle-hello");
        assert_eq!(
            s.qemu.boot,
            crate::qemu::Boot::Kernel {
                image: p.xen.clone(),
                append: XEN_CMDLINE.into(),
                modules: vec![Module::new("/repo/build/guests/hello.elf", "")],
            }
        );
        let log = "(XEN) Xen version 4.17.5\n(d0) Test result: SUCCESS\n";
        assert_eq!(watch(&s, log), WatchState::AllSeen);
        assert!(matches!(
            watch(&s, "Test result: FAILURE\n"),
            WatchState::Failed { .. }
        ));
    }

    #[test]
    fn dualvisor_runs_each_guest_on_a_pair() {
        let p = paths();
        let guests = vec![PathBuf::from("/repo/build/guests/hello.elf")];
        let v = dualvisor_guests(&p, &guests);
        let s = find(&v, "dualvisor-hello");
        assert_eq!(s.qemu.smp, 3);
        let ok = "(XEN) lockstep: pair 0 leader CPU1 follower CPU2, coordinator CPU0\nTest result: SUCCESS\n(XEN) stack use (KiB): CPU0 main 49/256\n(XEN) stack use (KiB): CPU1 main 5/256\n(XEN) stack use (KiB): CPU2 main 66/256\n(XEN) Hardware Dom0 halted: halting machine\n";
        assert_eq!(watch(&s, ok), WatchState::AllSeen);
        let full = "(XEN) Warning: stack nearly full: CPU0 main stack used 49864 of 65536 bytes\n";
        assert!(matches!(watch(&s, full), WatchState::Failed { .. }));
        assert!(matches!(
            watch(&s, "Test result: SKIP\n"),
            WatchState::Failed { .. }
        ));
        assert!(dualvisor_guests(&p, &[]).is_empty());
    }

    #[test]
    fn extension_guests_must_skip_on_xen_and_succeed_on_dualvisor() {
        let p = paths();
        let guests = vec![PathBuf::from("/repo/build/guests/lockstep.elf")];
        let s = find(&xen_oracles(&p, &guests, true), "xen-oracle-lockstep");
        let skip = "SKIP: the lockstep sysctl answers -ENOSYS\nTest result: SKIP\n";
        assert_eq!(watch(&s, skip), WatchState::AllSeen);
        for bad in ["Test result: SUCCESS\n", "Test result: FAILURE\n"] {
            assert!(matches!(watch(&s, bad), WatchState::Failed { .. }), "{bad}");
        }
        let d = find(&dualvisor_guests(&p, &guests), "dualvisor-lockstep");
        assert!(matches!(watch(&d, skip), WatchState::Failed { .. }));
    }

    #[test]
    fn domu_gets_the_demo_guest_as_its_initrd() {
        let p = paths();
        let guests = vec![PathBuf::from("/repo/build/guests/domu.elf")];
        let domu = Path::new("/repo/build/guests/domu.elf");
        for s in [
            find(&xen_oracles(&p, &guests, true), "xen-oracle-domu"),
            dualvisor_guest(&p, domu),
        ] {
            let crate::qemu::Boot::Kernel { modules, .. } = &s.qemu.boot else {
                panic!("{:?}", s.qemu.boot);
            };
            assert_eq!(
                modules,
                &vec![
                    Module::new("/repo/build/guests/domu.elf", ""),
                    Module::new("/repo/build/guests/demo.elf", ""),
                ]
            );
            assert!(s
                .needs
                .iter()
                .any(|(path, _)| path.ends_with("guests/demo.elf")));
        }
        assert!(extra_modules(&p, Path::new("/repo/build/guests/hello.elf")).is_empty());
        assert!(matches!(
            &dualvisor_guests(&p, &guests)[..],
            [Planned::Run(s)] if s.name == "dualvisor-domu"
        ));
    }

    #[test]
    fn gnttab2_gets_the_domu_only_peer_which_is_no_guest_of_its_own() {
        let p = paths();
        assert_eq!(
            extra_modules(&p, Path::new("/repo/build/guests/gnttab2.elf")),
            vec![PathBuf::from("/repo/build/guests/domus/gntpeer.elf")]
        );
        let dir = std::env::temp_dir().join(format!("qemu-tests-domus-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = Paths::new(&dir);
        fs::create_dir_all(p.guests.join("domus")).expect("mkdir");
        fs::write(p.guests.join("gnttab2.elf"), b"x").expect("write");
        fs::write(p.guests.join("domus").join("gntpeer.elf"), b"x").expect("write");
        let found = find_guests(&p);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(found, vec![p.guests.join("gnttab2.elf")]);
    }

    #[test]
    fn finds_only_elf_guests_sorted() {
        let dir = std::env::temp_dir().join(format!("qemu-tests-guests-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = Paths::new(&dir);
        fs::create_dir_all(&p.guests).expect("mkdir");
        for f in ["zeta.elf", "alpha.elf", "notes.txt"] {
            fs::write(p.guests.join(f), b"x").expect("write");
        }
        let names: Vec<String> = find_guests(&p)
            .iter()
            .map(|g| g.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["alpha.elf", "zeta.elf"]);
        let _ = fs::remove_dir_all(&dir);
        assert!(find_guests(&p).is_empty());
    }
}
