//! A domU a dom0 test guest builds and follows, as a toolstack without xenstore does: built
//! with xenguest, its console ring mapped and its console event channel bound, its lines read
//! (echoed with a prefix, the domU's own verdict line reworded so that the runner sees only
//! dom0's), lines typed into its ring, its shutdown awaited, and its destruction checked.
//! Guest-only (hypercalls); the ring logic it uses is [`crate::console`]'s.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::console::{drain, take_lines, type_in};
use dom0_interface::domctl::XEN_DOMINF_SHUTDOWN;
use guest_rt::shared_info::SharedInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{evtchn, println, sched};
use tools::xlcfg::DomainConfig;
use xenguest::{create_pv, destroy_domain, domain_info, map_foreign, BuildRequest, ForeignPage};

/// How long (system time) a domU may take for each step and to power off.
pub const STEP_LIMIT_NS: u64 = 120_000_000_000;
/// How long destroyed domains may take to disappear.
pub const SETTLE_NS: u64 = 10_000_000_000;
/// `-ESRCH`.
pub const ESRCH: i32 = -3;

/// A running domU and its console as dom0 sees them.
pub struct Peer<'a> {
    shared: &'a SharedInfo,
    now: &'a dyn Fn() -> u64,
    /// Prefix of the echoed lines (the dom0 test's name).
    tag: &'static str,
    /// Its domain id.
    pub domid: u16,
    /// dom0's end of its console event channel.
    pub con: u32,
    ring: ForeignPage,
    pending: Vec<u8>,
    /// Everything it printed.
    pub transcript: String,
}

impl<'a> Peer<'a> {
    /// Builds and starts a PV domU named `name` (8 MiB, one vCPU) from `kernel` and attaches
    /// to its console; checks each step, None (nothing left behind) if one failed.
    pub fn start(
        shared: &'a SharedInfo,
        now: &'a dyn Fn() -> u64,
        tag: &'static str,
        kernel: &[u8],
        name: &str,
    ) -> Option<Peer<'a>> {
        let text = format!(
            "name = \"{name}\"\ntype = \"pv\"\nkernel = \"/boot/{name}.elf\"\n\
             memory = 8\nvcpus = 1\non_poweroff = \"destroy\"\n"
        );
        let cfg = match DomainConfig::parse("peer.cfg", &text) {
            Ok(p) => p.config,
            Err(e) => guest_rt::test::error(format_args!("config: {e:?}")),
        };
        let built = match create_pv(&BuildRequest {
            config: &cfg,
            kernel,
            ramdisk: None,
            paused: false,
        }) {
            Ok(b) => b,
            Err(e) => {
                info(format_args!("build: {e}"));
                check("domU built", false);
                return None;
            }
        };
        info(format_args!("{name}: built domain {}", built.domid));
        check("domU built", built.domid != 0);
        let con = evtchn::bind_interdomain(built.domid, built.console_port);
        let ring = map_foreign(built.domid, built.console_mfn);
        check(
            "bind the console port and map the ring",
            con.is_ok() && ring.is_ok(),
        );
        let (Ok(con), Ok(ring)) = (con, ring) else {
            let _ = destroy_domain(built.domid);
            return None;
        };
        Some(Peer {
            shared,
            now,
            tag,
            domid: built.domid,
            con,
            ring,
            pending: Vec::new(),
            transcript: String::new(),
        })
    }

    /// Reads the ring, echoes complete lines and returns them.
    pub fn pump(&mut self) -> Vec<String> {
        drain(self.ring.as_mut_slice(), &mut self.pending);
        let lines = take_lines(&mut self.pending);
        for line in &lines {
            println!(
                "{}: [dom{}] {}",
                self.tag,
                self.domid,
                line.replace("Test result:", "verdict:")
            );
            self.transcript.push_str(line);
            self.transcript.push('\n');
        }
        lines
    }

    /// Its shutdown code once it has shut down.
    pub fn shut_down(&self) -> Option<u32> {
        let i = domain_info(self.domid).ok()?;
        (i.flags & XEN_DOMINF_SHUTDOWN != 0).then(|| i.shutdown_code())
    }

    /// Reads lines until `f` accepts one, it shuts down or [`STEP_LIMIT_NS`] pass.
    pub fn wait_for<T>(&mut self, f: impl Fn(&str) -> Option<T>) -> Option<T> {
        let t0 = (self.now)();
        loop {
            for line in self.pump() {
                if let Some(v) = f(&line) {
                    return Some(v);
                }
            }
            if (self.now)() > t0 + STEP_LIMIT_NS || self.shut_down().is_some() {
                // One last look at what it wrote before it went.
                return self.pump().iter().find_map(|l| f(l));
            }
            let _ = sched::poll(&[self.con], (self.now)() + 50_000_000);
            self.shared.clear_evtchn_pending(self.con);
        }
    }

    /// Types `line` and a newline into its console; whether all of it fit.
    pub fn type_line(&mut self, line: &str) -> bool {
        let text = format!("{line}\n");
        let typed = type_in(self.ring.as_mut_slice(), text.as_bytes());
        let _ = evtchn::send(self.con);
        typed == text.len()
    }

    /// Reads its last lines until it shuts down; checks that it powered off with its own
    /// checks passed.
    pub fn expect_success(&mut self) {
        let _ = self.wait_for(|_| None::<()>);
        check_eq("the domU powered off", self.shut_down(), Some(0));
        check(
            "the domU's own checks passed",
            self.transcript.contains("Test result: SUCCESS"),
        );
    }

    /// Closes the console channel and unmaps the ring (the domain lives on).
    pub fn detach(self) -> u16 {
        let _ = evtchn::close(self.con);
        self.domid
    }
}

/// Whether event `port` is (or within [`SETTLE_NS`] becomes) pending; clears it. A domain's
/// shutdown flag can be seen before its VIRQ_DOM_EXC is raised: Xen 4.17 sets
/// `is_shut_down` and then sends the VIRQ, and dom0 on another CPU may look in between.
pub fn event_arrives(shared: &SharedInfo, now: &dyn Fn() -> u64, port: u32) -> bool {
    let t0 = now();
    loop {
        if shared.clear_evtchn_pending(port) {
            return true;
        }
        if now() > t0 + SETTLE_NS {
            return false;
        }
        let _ = sched::poll(&[port], now() + 50_000_000);
    }
}

/// Destroys `domid` and checks that it goes (within [`SETTLE_NS`]).
pub fn destroy_and_wait(now: &dyn Fn() -> u64, domid: u16) {
    check_eq("destroydomain", destroy_domain(domid), Ok(()));
    check_eq("destroyed domain is gone", gone(now, domid), Some(ESRCH));
}

/// Waits until `domid` no longer exists: its last domctl error.
pub fn gone(now: &dyn Fn() -> u64, domid: u16) -> Option<i32> {
    let t1 = now();
    let mut gone = domain_info(domid).err();
    while gone != Some(ESRCH) && now() < t1 + SETTLE_NS {
        let _ = sched::yield_now();
        gone = domain_info(domid).err();
    }
    gone
}
