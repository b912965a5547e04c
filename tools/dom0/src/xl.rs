//! `xl` in dom0: each verb of `tools::cmd` carried out with domctl/sysctl and printed with
//! `tools::format`, plus the handling of domain deaths (VIRQ_DOM_EXC) per the configs'
//! `on_*` actions, as xl's per-domain daemon does.

use crate::builder::{self, Request};
use crate::domains::DomU;
use crate::shell::Shell;
use crate::{host, out};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use dom0_interface::domctl::{
    XEN_DOMCTL_DESTROYDOMAIN, XEN_DOMCTL_PAUSEDOMAIN, XEN_DOMCTL_UNPAUSEDOMAIN, XEN_DOMINF_SHUTDOWN,
};
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::lockstep_ctl::LockstepStatus;
use guest_rt::{sched, toolstack, Errno};
use tools::cmd::{self, Command, DomainRef, LockstepCmd, Target};
use tools::console_log::OutputLog;
use tools::format::{self, DomainInfo, UptimeEntry};
use tools::lifecycle::{self, Reaction, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};
use tools::xlcfg::{self, DomainConfig};

/// Bytes read per `XEN_SYSCTL_readconsole` call.
const DMESG_CHUNK: usize = 16 * 1024;
/// Name shown for a domain dom0 did not build.
const UNNAMED: &str = "(null)";

/// Runs `xl WORDS`.
pub fn run(sh: &mut Shell, words: &[String]) {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let command = match cmd::parse(&w) {
        Ok(c) => c,
        Err(u) => {
            out::text(&u.stderr);
            out::text(&u.stdout);
            return;
        }
    };
    match command {
        Command::Help { verb } => out::text(&cmd::help(verb.as_deref())),
        Command::List { domain } => list(sh, domain.as_ref()),
        Command::Info { name } => info(name.as_deref()),
        Command::Create {
            config,
            console,
            paused,
            vars,
        } => create(sh, &config, console, paused, &vars),
        Command::Destroy { domain } => {
            if let Some(id) = resolve(sh, &domain) {
                destroy(sh, id);
            }
        }
        Command::Shutdown { target, wait } => shutdown(sh, &target, wait, SHUTDOWN_POWEROFF),
        Command::Reboot { target, wait } => shutdown(sh, &target, wait, SHUTDOWN_REBOOT),
        Command::Pause { domain } => simple(sh, &domain, XEN_DOMCTL_PAUSEDOMAIN, "pause"),
        Command::Unpause { domain } => simple(sh, &domain, XEN_DOMCTL_UNPAUSEDOMAIN, "unpause"),
        Command::Console { domain } => {
            if let Some(id) = resolve(sh, &domain) {
                attach(sh, id);
            }
        }
        Command::VcpuList { domains } => vcpu_list(sh, &domains),
        Command::Domid { name } => {
            let found = sh
                .reg
                .names()
                .into_iter()
                .find(|(_, n)| *n == name)
                .map(|(id, _)| id);
            print_result(format::domid(&name, found));
        }
        Command::Domname { domid } => {
            let exists = u16::try_from(domid)
                .ok()
                .and_then(|d| host::domain(d).ok().flatten())
                .is_some();
            let name = u16::try_from(domid)
                .ok()
                .and_then(|d| sh.reg.name(d))
                .filter(|_| exists);
            print_result(format::domname(domid, name));
        }
        Command::Dmesg { clear } => dmesg(clear),
        Command::Uptime { short, domains } => uptime(sh, short, &domains),
        Command::Lockstep(l) => lockstep(l),
    }
}

fn print_result(r: Result<String, String>) {
    match r {
        Ok(s) | Err(s) => out::text(&s),
    }
}

fn errno_text(e: Errno) -> String {
    match e.name() {
        Some(n) => alloc::format!("{} ({n})", e.0),
        None => alloc::format!("{}", e.0),
    }
}

/// The domain id `r` names, or `None` after printing xl's error.
fn resolve(sh: &Shell, r: &DomainRef) -> Option<u16> {
    match r.resolve(&sh.reg.names()) {
        Ok(id) => match u16::try_from(id) {
            Ok(id) => Some(id),
            Err(_) => {
                out::say(format_args!("Invalid domain id {id}.\n"));
                None
            }
        },
        Err(msg) => {
            out::text(&msg);
            None
        }
    }
}

fn name_of(sh: &Shell, domid: u16) -> String {
    sh.reg.name(domid).unwrap_or(UNNAMED).to_string()
}

fn list(sh: &Shell, only: Option<&DomainRef>) {
    let infos = match host::domains() {
        Ok(i) => i,
        Err(e) => {
            out::say(format_args!(
                "libxl: error: getdomaininfolist failed: {}\n",
                errno_text(e)
            ));
            return;
        }
    };
    let only = match only {
        None => None,
        Some(r) => match resolve(sh, r) {
            Some(id) => Some(id),
            None => return,
        },
    };
    if let Some(id) = only {
        if !infos.iter().any(|i| i.domain == id) {
            out::say(format_args!("Error: Domain \'{id}\' does not exist.\n"));
            return;
        }
    }
    let doms: Vec<DomainInfo> = infos
        .iter()
        .filter(|i| only.is_none_or(|id| i.domain == id))
        .map(|i| DomainInfo::from_domctl(i, &name_of(sh, i.domain)))
        .collect();
    out::text(&format::list(&doms));
}

fn info(name: Option<&str>) {
    match host::host_info() {
        Ok(h) => match name {
            Some(n) => out::text(&format::info_field(&h, n)),
            None => out::text(&format::info(&h)),
        },
        Err(e) => out::say(format_args!(
            "libxl: error: getting host information failed: {}\n",
            errno_text(e)
        )),
    }
}

/// Reads, parses and checks a config from the initrd; prints what is wrong.
fn load_config(sh: &Shell, path: &str, vars: &[String]) -> Option<DomainConfig> {
    out::text(&format::parsing_config(path));
    let bytes = match sh.archive.read(path) {
        Ok(b) => b,
        Err(e) => {
            out::say(format_args!("Failed to read config file: {e}\n"));
            return None;
        }
    };
    let Ok(text) = core::str::from_utf8(bytes) else {
        out::say(format_args!("{path}: config file is not UTF-8 text\n"));
        return None;
    };
    let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
    let text = xlcfg::with_overrides(text, &vars);
    match DomainConfig::parse(path, &text) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                out::say(format_args!("{w}\n"));
            }
            Some(parsed.config)
        }
        Err(e) => {
            out::say(format_args!("{e}\n"));
            None
        }
    }
}

/// Builds a domain from `config`; prints what went wrong and returns its id on success.
fn build(sh: &mut Shell, path: &str, config: DomainConfig, paused: bool) -> Option<u16> {
    if sh.reg.name_taken(&config.name) {
        out::say(format_args!(
            "libxl: error: Domain with name \"{}\" already exists.\n",
            config.name
        ));
        return None;
    }
    let kernel = match sh.archive.read(&config.kernel) {
        Ok(k) => k,
        Err(e) => {
            out::say(format_args!("{path}: kernel: {e}\n"));
            return None;
        }
    };
    let ramdisk = match &config.ramdisk {
        None => None,
        Some(r) => match sh.archive.read(r) {
            Ok(b) => Some(b),
            Err(e) => {
                out::say(format_args!("{path}: ramdisk: {e}\n"));
                return None;
            }
        },
    };
    if let Ok(p) = host::physinfo() {
        let free_kib = p.free_pages.saturating_sub(p.outstanding_pages) * 4;
        if config.memory_kib() > free_kib {
            out::say(format_args!(
                "{path}: memory = {} MiB is more than the {} MiB free\n",
                config.memory_mib,
                free_kib / 1024
            ));
            return None;
        }
    }
    let req = Request {
        config: &config,
        kernel,
        ramdisk,
        paused,
    };
    match builder::create_pv(&req) {
        Ok(built) => {
            let dom = DomU {
                name: config.name.clone(),
                config_path: path.to_string(),
                config,
                created_ns: sh.events.now_ns(),
                console: None,
                log: OutputLog::new(),
                handled: false,
            };
            sh.reg.add(built, dom);
            Some(built.domid)
        }
        Err(e) => {
            out::say(format_args!(
                "libxl: error: cannot build domain \"{}\": {e}\n",
                config.name
            ));
            None
        }
    }
}

fn create(sh: &mut Shell, path: &str, console: bool, paused: bool, vars: &[String]) {
    let Some(config) = load_config(sh, path, vars) else {
        return;
    };
    if let Some(domid) = build(sh, path, config, paused) {
        if console {
            attach(sh, domid);
        }
    }
}

fn attach(sh: &mut Shell, domid: u16) {
    if domid == 0 {
        out::text("xl: console: this terminal is Domain-0's console\n");
        return;
    }
    let Some(d) = sh.reg.get(domid) else {
        out::say(format_args!(
            "xl: console: domain {domid} has no console served by this dom0\n"
        ));
        return;
    };
    if d.console.is_none() {
        out::say(format_args!(
            "xl: console: the console of domain {domid} is not connected\n"
        ));
        return;
    }
    out::bytes(&d.log.contents());
    sh.attached = Some(domid);
}

fn destroy(sh: &mut Shell, domid: u16) {
    if domid == 0 {
        out::text(
            "Not destroying domain 0; use -f to force.\n\
             This can only be done using the xl command line,\n\
             it is not possible to do it via libxl.\n",
        );
        return;
    }
    if let Err(e) = destroy_quiet(sh, domid) {
        out::say(format_args!("destroy failed (rc={})\n", e.0));
    }
}

fn destroy_quiet(sh: &mut Shell, domid: u16) -> Result<(), Errno> {
    host::domctl_simple(XEN_DOMCTL_DESTROYDOMAIN, domid)?;
    if sh.attached == Some(domid) {
        sh.detach_gone();
    }
    sh.reg.remove(domid);
    Ok(())
}

fn simple(sh: &Shell, r: &DomainRef, cmd: u32, verb: &str) {
    let Some(id) = resolve(sh, r) else {
        return;
    };
    if let Err(e) = host::domctl_simple(cmd, id) {
        out::say(format_args!(
            "libxl: error: {verb} of domain {id} failed: {}\n",
            errno_text(e)
        ));
    }
}

fn shutdown(sh: &mut Shell, target: &Target, wait: bool, reason: u32) {
    let ids: Vec<u16> = match target {
        Target::One(r) => match resolve(sh, r) {
            Some(id) => alloc::vec![id],
            None => return,
        },
        Target::All => match host::domains() {
            Ok(i) => i.iter().map(|d| d.domain).filter(|&d| d != 0).collect(),
            Err(e) => {
                out::say(format_args!("xl: listing domains: {}\n", errno_text(e)));
                return;
            }
        },
    };
    let verb = if reason == SHUTDOWN_REBOOT {
        "Rebooting"
    } else {
        "Shutting down"
    };
    let mut asked = Vec::new();
    for id in ids {
        out::say(format_args!("{verb} domain {id}\n"));
        match sched::remote_shutdown(id, reason) {
            Ok(_) => asked.push(id),
            Err(e) => out::say(format_args!(
                "libxl: error: shutdown of domain {id} failed: {}\n",
                errno_text(e)
            )),
        }
    }
    if wait && !asked.is_empty() {
        out::say(format_args!("Waiting for {} domains\n", asked.len()));
        for id in asked {
            wait_done(sh, id, reason);
        }
    }
}

/// Waits until `domid` is destroyed (or, for a reboot, replaced; or preserved).
fn wait_done(sh: &mut Shell, domid: u16, reason: u32) {
    loop {
        let info = host::domain(domid).ok().flatten();
        let gone = info.is_none();
        // Shut down and kept: by its config's `preserve`, or because dom0 did not build it
        // and so has no config to act on.
        let preserved = sh.reg.get(domid).map_or(
            info.is_some_and(|i| i.flags & XEN_DOMINF_SHUTDOWN != 0),
            |d| d.handled,
        );
        if gone || preserved {
            let what = if preserved {
                "has shut down (preserved)"
            } else if reason == SHUTDOWN_REBOOT {
                "has been rebooted"
            } else {
                "has been destroyed"
            };
            out::say(format_args!("Domain {domid} {what}.\n"));
            return;
        }
        sh.poll_once(false);
    }
}

/// VIRQ_DOM_EXC: act on shut-down domUs per their config; forget vanished ones.
pub fn domain_exceptions(sh: &mut Shell) {
    let Ok(infos) = host::domains() else {
        return;
    };
    for id in sh.reg.ids() {
        let Some(info) = infos.iter().find(|i| i.domain == id) else {
            if let Some(d) = sh.reg.remove(id) {
                sh.interrupt_prompt();
                out::say(format_args!("dom0: domain {id} ({}) is gone\n", d.name));
            }
            continue;
        };
        if info.flags & XEN_DOMINF_SHUTDOWN == 0 {
            continue;
        }
        let Some(d) = sh.reg.get(id) else { continue };
        if d.handled {
            continue;
        }
        let code = info.shutdown_code();
        let reaction = lifecycle::reaction(&d.config, code);
        let (name, path, config) = (d.name.clone(), d.config_path.clone(), d.config.clone());
        sh.interrupt_prompt();
        out::say(format_args!(
            "dom0: domain {id} ({name}) shut down ({}): {}\n",
            lifecycle::reason_name(code),
            match reaction {
                Reaction::Destroy => "destroying it",
                Reaction::Restart => "restarting it",
                Reaction::Preserve => "preserving it",
                Reaction::Ignore => "nothing to do",
            }
        ));
        match reaction {
            Reaction::Ignore => {}
            Reaction::Preserve => {
                if let Some(d) = sh.reg.get_mut(id) {
                    d.handled = true;
                }
            }
            Reaction::Destroy | Reaction::Restart => {
                if let Err(e) = destroy_quiet(sh, id) {
                    out::say(format_args!("dom0: destroying domain {id}: {e}\n"));
                    continue;
                }
                if reaction == Reaction::Restart {
                    if let Some(new) = build(sh, &path, config, false) {
                        out::say(format_args!("dom0: {name} restarted as domain {new}\n"));
                    }
                }
            }
        }
    }
}

fn vcpu_list(sh: &Shell, refs: &[DomainRef]) {
    let (infos, nr_cpus) = match (host::domains(), host::physinfo()) {
        (Ok(i), Ok(p)) => (i, p.nr_cpus),
        (Err(e), _) | (_, Err(e)) => {
            out::say(format_args!("libxl: error: {}\n", errno_text(e)));
            return;
        }
    };
    let mut ids = Vec::new();
    for r in refs {
        match resolve(sh, r) {
            Some(id) => ids.push(id),
            None => return,
        }
    }
    let chosen: Vec<_> = infos
        .iter()
        .filter(|i| ids.is_empty() || ids.contains(&i.domain))
        .collect();
    let data: Vec<(String, u32, Vec<format::VcpuInfo>)> = chosen
        .iter()
        .map(|i| {
            (
                name_of(sh, i.domain),
                u32::from(i.domain),
                host::vcpus(i.domain, i.max_vcpu_id, nr_cpus),
            )
        })
        .collect();
    let view: Vec<(&str, u32, &[format::VcpuInfo])> = data
        .iter()
        .map(|(n, id, v)| (n.as_str(), *id, v.as_slice()))
        .collect();
    out::text(&format::vcpu_list(&view, nr_cpus));
}

fn uptime(sh: &Shell, short: bool, refs: &[DomainRef]) {
    let Ok(infos) = host::domains() else {
        out::text("libxl: error: getdomaininfolist failed\n");
        return;
    };
    let mut ids = Vec::new();
    for r in refs {
        match resolve(sh, r) {
            Some(id) => ids.push(id),
            None => return,
        }
    }
    let now = sh.events.now_ns();
    let names: Vec<(u16, String, u64)> = infos
        .iter()
        .filter(|i| ids.is_empty() || ids.contains(&i.domain))
        .map(|i| {
            let start = sh.reg.get(i.domain).map_or(0, |d| d.created_ns);
            (
                i.domain,
                name_of(sh, i.domain),
                now.saturating_sub(start) / 1_000_000_000,
            )
        })
        .collect();
    let entries: Vec<UptimeEntry<'_>> = names
        .iter()
        .map(|(id, n, s)| UptimeEntry {
            name: n,
            domid: u32::from(*id),
            uptime_s: *s,
        })
        .collect();
    out::text(&format::uptime(&entries, short, sh.events.wallclock_s()));
}

fn dmesg(clear: bool) {
    let mut all = Vec::new();
    let mut buf = alloc::vec![0u8; DMESG_CHUNK];
    let mut index = 0u32;
    let mut incremental = false;
    loop {
        match toolstack::readconsole(&mut buf, clear, incremental, index) {
            Ok((0, _)) => break,
            Ok((n, next)) => {
                all.extend_from_slice(&buf[..n]);
                if n < buf.len() {
                    break;
                }
                index = next;
                incremental = true;
            }
            Err(e) => {
                out::say(format_args!(
                    "libxl: error: reading the hypervisor console failed: {}\n",
                    errno_text(e)
                ));
                return;
            }
        }
    }
    out::text(&format::dmesg(&all));
}

/// The lockstep status, if the hypervisor gives one.
fn lockstep_status() -> Option<LockstepStatus> {
    let mut raw = alloc::vec![0u8; core::mem::size_of::<LockstepStatus>()];
    let op = LockstepCmd::Status.request(0, 0).encode();
    toolstack::lockstep(op.cmd, op.kind, op.count, op.pair, &mut raw).ok()?;
    LockstepStatus::read_from(&raw).ok()
}

/// Polls of the status `xl lockstep inject -w` makes before giving up. Each poll is itself a
/// hypercall, i.e. a transaction that can carry one of the armed faults, so the wait ends
/// even on an idle machine.
const INJECT_WAIT_POLLS: u32 = 100_000;

/// `inject -w`: waits until `count` more faults of `kind` were injected than `before`, then
/// prints their outcomes.
fn wait_injected(kind: dom0_interface::lockstep_ctl::LockstepKind, count: u32, before: u64) {
    let goal = before.saturating_add(u64::from(count));
    for _ in 0..INJECT_WAIT_POLLS {
        let Some(st) = lockstep_status() else {
            break;
        };
        let k = st.kind(kind);
        if k.injected >= goal {
            out::say(format_args!(
                "lockstep: {} {} faults injected so far: {} masked, {} recovered, {} escalated, {} silent, {} crashed\n",
                k.injected,
                kind.name(),
                k.masked,
                k.recovered,
                k.escalated,
                k.silent,
                k.crashed
            ));
            return;
        }
        let _ = sched::yield_now();
    }
    out::say(format_args!(
        "xl: lockstep: gave up waiting for the {count} {} faults to be injected\n",
        kind.name()
    ));
}

/// ` of pair P` in `xl lockstep` messages for a pair other than 0.
struct PairNote(u32);

impl core::fmt::Display for PairNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => Ok(()),
            p => write!(f, " of pair {p}"),
        }
    }
}

/// The `pair=P` of an inject or fail command (0 otherwise).
fn pair_of(l: LockstepCmd) -> u32 {
    match l {
        LockstepCmd::Inject { pair, .. } | LockstepCmd::Fail { pair, .. } => pair,
        _ => 0,
    }
}

fn lockstep(l: LockstepCmd) {
    let mut raw = alloc::vec![0u8; core::mem::size_of::<LockstepStatus>()];
    let op = l.request(0, 0).encode();
    let before = match l {
        LockstepCmd::Inject {
            kind, wait: true, ..
        } => lockstep_status().map(|st| st.kind(kind).injected),
        _ => None,
    };
    match toolstack::lockstep(op.cmd, op.kind, op.count, op.pair, &mut raw) {
        Ok(_) => match l {
            LockstepCmd::Status => match LockstepStatus::read_from(&raw) {
                Ok(status) => out::text(&format::lockstep_status(&status)),
                Err(e) => out::say(format_args!("xl: lockstep: bad status: {e}\n")),
            },
            LockstepCmd::On => out::text("lockstep: on\n"),
            LockstepCmd::Off => out::text("lockstep: off (unprotected)\n"),
            LockstepCmd::Inject {
                kind,
                count,
                wait,
                pair,
            } => {
                out::say(format_args!(
                    "lockstep: injecting {count} {} fault{}{}\n",
                    kind.name(),
                    if count == 1 { "" } else { "s" },
                    PairNote(pair)
                ));
                if let (true, Some(before)) = (wait, before) {
                    wait_injected(kind, count, before);
                }
            }
            LockstepCmd::Fail { core, pair } => out::say(format_args!(
                "lockstep: the {} core{} now fails for good (fault injection)\n",
                if core == dom0_interface::lockstep_ctl::LOCKSTEP_CORE_LEADER {
                    "leader"
                } else {
                    "follower"
                },
                PairNote(pair)
            )),
        },
        Err(Errno::EINVAL) if pair_of(l) != 0 => {
            let n = lockstep_status().map_or(1, |st| st.nr_pairs.max(1));
            out::say(format_args!(
                "xl: lockstep: there is no pair {}: the hypervisor has {n} pair{} (numbered from 0); refused with -EINVAL\n",
                pair_of(l),
                if n == 1 { "" } else { "s" }
            ))
        }
        Err(Errno::ENODEV) if matches!(l, LockstepCmd::Fail { .. }) => out::text(
            "xl: lockstep: refused: no follower in service (lockstep is off or unprotected)\n",
        ),
        Err(e) => {
            out::say(format_args!(
                "xl: lockstep: the hypervisor refused the request: {}{}\n",
                errno_text(e),
                if e == Errno::ENOSYS || e == Errno::EOPNOTSUPP {
                    "; this hypervisor has no DualVisor lockstep control"
                } else {
                    ""
                }
            ));
        }
    }
}
