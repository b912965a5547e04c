//! The build plan against a fake hypervisor that fails at each step in turn.

use super::*;
use crate::xlcfg::DomainConfig;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::vec;

/// A fake hypervisor: a pool of frames, domains owning frames, event channels, pause state,
/// and a log of every call.
struct Fake {
    free: BTreeSet<u64>,
    domains: BTreeSet<DomId>,
    owned: Vec<(DomId, u64)>,
    evtchns: BTreeSet<u32>,
    paused: BTreeSet<DomId>,
    fail_at: Option<Step>,
    fail_undo_of: Option<Step>,
    partial_populate: bool,
    lie_on_create: bool,
    log: Vec<String>,
    next_dom: DomId,
}

impl Fake {
    fn new(frames: u64) -> Fake {
        Fake {
            free: (0x1000..0x1000 + frames).collect(),
            domains: BTreeSet::new(),
            owned: Vec::new(),
            evtchns: BTreeSet::new(),
            paused: BTreeSet::new(),
            fail_at: None,
            fail_undo_of: None,
            partial_populate: false,
            lie_on_create: false,
            log: Vec::new(),
            next_dom: 1,
        }
    }

    fn clean(&self, frames: u64) -> bool {
        self.free.len() as u64 == frames
            && self.domains.is_empty()
            && self.owned.is_empty()
            && self.evtchns.is_empty()
            && self.paused.is_empty()
    }

    fn free_frames_of(&mut self, d: DomId, which: Option<&[u64]>) {
        let mut keep = Vec::new();
        for (o, f) in self.owned.drain(..) {
            if o == d && which.is_none_or(|w| w.contains(&f)) {
                self.free.insert(f);
            } else {
                keep.push((o, f));
            }
        }
        self.owned = keep;
    }
}

impl Hypervisor for Fake {
    type Error = String;

    fn perform(
        &mut self,
        step: Step,
        plan: &BuildPlan,
        domid: Option<DomId>,
    ) -> Result<Record, String> {
        self.log.push(format!("do {}", step.name()));
        let fail = self.fail_at == Some(step);
        let d = match (step, domid) {
            (Step::CreateDomain, None) => 0,
            (Step::CreateDomain, Some(_)) => return Err("created twice".into()),
            (_, Some(d)) if self.domains.contains(&d) => d,
            _ => return Err(format!("{} without a domain", step.name())),
        };
        match step {
            Step::CreateDomain => {
                if fail {
                    return Err("ENOMEM".into());
                }
                let d = self.next_dom;
                self.next_dom += 1;
                self.domains.insert(d);
                self.paused.insert(d);
                if self.lie_on_create {
                    return Ok(Record::Written);
                }
                Ok(Record::Domain(d))
            }
            Step::MaxVcpus | Step::MaxMem => {
                if fail {
                    return Err("EINVAL".into());
                }
                Ok(Record::Limits)
            }
            Step::PopulateMemory => {
                let mut got = Vec::new();
                for _ in 0..plan.memory_pages {
                    let Some(f) = self.free.pop_first() else {
                        break;
                    };
                    self.owned.push((d, f));
                    got.push(f);
                    if fail && self.partial_populate && got.len() as u64 == plan.memory_pages / 2 {
                        break;
                    }
                }
                if fail || (got.len() as u64) < plan.memory_pages {
                    // Atomic: give back what this call got.
                    self.free_frames_of(d, Some(&got));
                    return Err("ENOMEM".into());
                }
                Ok(Record::Frames(got))
            }
            Step::ConsoleRing => {
                if fail {
                    return Err("ENOSPC".into());
                }
                let port = (1..).find(|p| !self.evtchns.contains(p)).unwrap_or(0);
                self.evtchns.insert(port);
                Ok(Record::EventChannel(port))
            }
            Step::Unpause => {
                if fail {
                    return Err("ESRCH".into());
                }
                self.paused.remove(&d);
                Ok(Record::Unpaused)
            }
            Step::LoadKernel | Step::LoadRamdisk | Step::StartInfo | Step::VcpuContext => {
                if fail {
                    return Err("EFAULT".into());
                }
                Ok(Record::Written)
            }
        }
    }

    fn undo(&mut self, step: Step, record: Record, domid: Option<DomId>) -> Result<(), String> {
        self.log.push(format!("undo {}", step.name()));
        if self.fail_undo_of == Some(step) {
            return Err("EBUSY".into());
        }
        match record {
            Record::Domain(d) => {
                // Destroying a domain returns every frame it still owns.
                self.free_frames_of(d, None);
                self.domains.remove(&d);
                self.paused.remove(&d);
                Ok(())
            }
            Record::Frames(frames) => {
                let d = domid.ok_or("no domain")?;
                self.free_frames_of(d, Some(&frames));
                Ok(())
            }
            Record::EventChannel(p) => {
                self.evtchns.remove(&p);
                Ok(())
            }
            Record::Unpaused => {
                self.paused.insert(domid.ok_or("no domain")?);
                Ok(())
            }
            Record::Limits | Record::Written => Err("nothing to undo".into()),
        }
    }

    fn bad_record(&self) -> String {
        "bad record".into()
    }
}

const FRAMES: u64 = 64;

fn plan(ramdisk: bool, paused: bool) -> BuildPlan {
    let mut text =
        String::from("name='demo1'\nkernel='/etc/xen/demo1.elf'\nmemory=0x10\nvcpus=2\n");
    if ramdisk {
        text.push_str("ramdisk='/etc/xen/demo1.initrd'\n");
    }
    let cfg = DomainConfig::parse("demo1.cfg", &text).unwrap().config;
    let mut p = BuildPlan::from_config(&cfg, [9; 16], paused);
    // 16 MiB would need 4096 frames; the fake has 64, so build with 32 pages.
    assert_eq!(p.memory_pages, 4096);
    p.memory_pages = 32;
    p
}

#[test]
fn plan_from_config() {
    let p = plan(true, false);
    assert_eq!(p.name, "demo1");
    assert_eq!((p.vcpus, p.max_vcpus, p.max_mem_kib), (2, 2, 16384));
    assert_eq!(p.uuid, [9; 16]);
    assert_eq!(
        p.steps(),
        vec![
            Step::CreateDomain,
            Step::MaxVcpus,
            Step::MaxMem,
            Step::PopulateMemory,
            Step::LoadKernel,
            Step::LoadRamdisk,
            Step::StartInfo,
            Step::ConsoleRing,
            Step::VcpuContext,
            Step::Unpause,
        ]
    );
    let p = plan(false, true);
    assert!(!p.steps().contains(&Step::LoadRamdisk));
    assert!(!p.steps().contains(&Step::Unpause));
}

#[test]
fn domctl_arguments() {
    let p = plan(false, false);
    let c = p.createdomain(2);
    assert_eq!((c.flags, c.max_vcpus, c.max_evtchn_port), (0, 2, 1023));
    assert_eq!(
        (c.max_grant_frames, c.max_maptrack_frames, c.grant_opts),
        (-1, -1, 2)
    );
    assert_eq!(c.handle, [9; 16]);
    assert_eq!(c.arch.emulation_flags, 0);
    assert_eq!(p.createdomain(0x31).grant_opts, 1);
    assert_eq!(p.max_vcpus_domctl().max, 2);
    // 32 pages = 128 KiB, plus libxl's 1 MiB, below maxmem (16 MiB).
    assert_eq!(p.max_mem_domctl().max_memkb, 16384);
    let mut big = p.clone();
    big.memory_pages = 4096;
    assert_eq!(big.max_mem_domctl().max_memkb, 16384 + 1024);
    big.memory_pages = u64::MAX;
    assert_eq!(big.max_mem_domctl().max_memkb, u64::MAX);
}

#[test]
fn successful_build() {
    let mut hv = Fake::new(FRAMES);
    let p = plan(true, false);
    let d = run(&p, &mut hv).unwrap();
    assert_eq!(d, 1);
    assert!(hv.domains.contains(&1));
    assert_eq!(hv.owned.len(), 32);
    assert_eq!(hv.free.len() as u64, FRAMES - 32);
    assert!(!hv.paused.contains(&1));
    assert_eq!(hv.evtchns.len(), 1);
    assert!(hv.log.iter().all(|l| l.starts_with("do ")));
    // Paused create stays paused.
    let d = run(&plan(false, true), &mut hv).unwrap();
    assert!(hv.paused.contains(&d));
}

#[test]
fn failure_at_every_step_rolls_back_completely() {
    for ramdisk in [false, true] {
        for paused in [false, true] {
            let p = plan(ramdisk, paused);
            let steps = p.steps();
            for (i, &failing) in steps.iter().enumerate() {
                for partial in [false, true] {
                    let mut hv = Fake::new(FRAMES);
                    hv.fail_at = Some(failing);
                    hv.partial_populate = partial;
                    let err = run(&p, &mut hv).unwrap_err();
                    assert_eq!(err.step, failing);
                    assert!(err.undo_errors.is_empty(), "{err:?}");
                    assert!(
                        hv.clean(FRAMES),
                        "failing {failing:?}: leaked {:?}",
                        hv.owned
                    );
                    // Undos run in reverse order of the steps that completed.
                    let undos: Vec<&str> = hv
                        .log
                        .iter()
                        .filter_map(|l| l.strip_prefix("undo "))
                        .collect();
                    let expected: Vec<&str> = steps[..i]
                        .iter()
                        .rev()
                        .filter(|s| {
                            matches!(
                                s,
                                Step::CreateDomain
                                    | Step::PopulateMemory
                                    | Step::ConsoleRing
                                    | Step::Unpause
                            )
                        })
                        .map(|s| s.name())
                        .collect();
                    assert_eq!(undos, expected, "failing {failing:?}");
                    let msg = format!("{err}");
                    assert!(
                        msg.starts_with(&format!("failed to {}: ", failing.name())),
                        "{msg}"
                    );
                    assert!(msg.ends_with("(rolled back)"), "{msg}");
                }
            }
        }
    }
}

#[test]
fn out_of_memory_is_a_clean_failure() {
    let mut hv = Fake::new(16);
    let err = run(&plan(false, false), &mut hv).unwrap_err();
    assert_eq!(
        (err.step, err.error.as_str()),
        (Step::PopulateMemory, "ENOMEM")
    );
    assert!(hv.clean(16));
}

#[test]
fn failed_undo_is_reported_and_the_rest_still_undone() {
    let mut hv = Fake::new(FRAMES);
    hv.fail_at = Some(Step::VcpuContext);
    hv.fail_undo_of = Some(Step::PopulateMemory);
    let err = run(&plan(false, false), &mut hv).unwrap_err();
    assert_eq!(err.step, Step::VcpuContext);
    assert_eq!(
        err.undo_errors,
        vec![(Step::PopulateMemory, "EBUSY".to_string())]
    );
    // Destroying the domain still returned its frames.
    assert!(hv.clean(FRAMES));
    assert!(format!("{err}").contains("rollback incomplete: populate memory: EBUSY;"));
}

#[test]
fn a_create_without_a_domain_record_is_rolled_back() {
    let mut hv = Fake::new(FRAMES);
    hv.lie_on_create = true;
    let err = run(&plan(false, false), &mut hv).unwrap_err();
    assert_eq!(
        (err.step, err.error.as_str()),
        (Step::CreateDomain, "bad record")
    );
}

#[test]
fn machine_protocol() {
    let p = plan(false, true);
    let mut m: BuildMachine<&str> = BuildMachine::new(&p);
    assert_eq!(m.next_action(), Action::Perform(Step::CreateDomain));
    // Asking again without an answer repeats the step.
    assert_eq!(m.next_action(), Action::Perform(Step::CreateDomain));
    // An answer nobody asked for is ignored.
    m.undone(Ok(()));
    m.performed(Ok(Record::Domain(5)), "bad");
    assert_eq!(m.domid(), Some(5));
    m.performed(Ok(Record::Limits), "bad"); // not awaited: ignored
    assert_eq!(m.next_action(), Action::Perform(Step::MaxVcpus));
    m.performed(Ok(Record::Limits), "bad");
    assert_eq!(m.next_action(), Action::Perform(Step::MaxMem));
    m.performed(Ok(Record::Domain(6)), "bad"); // a domain record from another step
    assert_eq!(
        m.next_action(),
        Action::Undo(Step::CreateDomain, Record::Domain(5))
    );
    m.undone(Ok(()));
    assert_eq!(m.next_action(), Action::RolledBack);
    assert_eq!(m.next_action(), Action::RolledBack);
    let f = m.failure().unwrap();
    assert_eq!((f.step, f.error), (Step::MaxMem, "bad"));
}
