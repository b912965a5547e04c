//! The hypervisor boot command line, with Xen's syntax and semantics.
//!
//! Options are separated by whitespace; each is `name`, `name=value`, or `no-name` for
//! booleans. Later occurrences override earlier ones. Unknown options and malformed values
//! produce a [`CmdlineWarning`] through a callback and never stop the boot. Options that Xen
//! has and DualVisor accepts without acting on them are listed in [`IGNORED_OPTIONS`] so Xen
//! command lines boot without warnings. Parsing needs no heap.

#[cfg(test)]
mod tests;
mod values;

use core::fmt;

pub use values::{
    parse_bool, parse_size, parse_uint, Baud, ConsoleDevice, Dom0Iommu, Dom0Mem, Dom0Mode,
    Dom0Options, Dom0Vcpus, LogLevel, LogLevels, MemAmount, Parity, SerialConfig,
};

/// A problem found while parsing the command line. The borrowed strings point into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdlineWarning<'a> {
    /// An option nobody knows; `option` is the whole token.
    Unknown {
        /// The token.
        option: &'a str,
    },
    /// A known option with a value that does not parse; the option keeps its default.
    BadValue {
        /// Option name.
        name: &'a str,
        /// The rejected value.
        value: &'a str,
    },
}

impl fmt::Display for CmdlineWarning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineWarning::Unknown { option } => {
                write!(f, "unknown boot option '{option}' ignored")
            }
            CmdlineWarning::BadValue { name, value } => {
                write!(
                    f,
                    "bad value '{value}' for boot option '{name}', using default"
                )
            }
        }
    }
}

/// Xen options accepted without effect (DualVisor does not implement them, but a Xen command
/// line that uses them must boot quietly). `no-` forms of these are accepted too.
pub const IGNORED_OPTIONS: &[&str] = &[
    "acpi",
    "apic",
    "apic_verbosity",
    "availmem",
    "bootscrub",
    "bootscrub_chunk",
    "cet",
    "clocksource",
    "conring_size",
    "console_timestamps",
    "console_to_ring",
    "conswitch",
    "cpufreq",
    "cpuid",
    "cpuidle",
    "crashkernel",
    "debug_stack_lines",
    "dom0-cpuid",
    "dom0_ioports_disable",
    "dom0_nodes",
    "dom0_vcpus_pin",
    "e820-verbose",
    "edd",
    "edid",
    "ept",
    "extra_guest_irqs",
    "flask",
    "gnttab",
    "gnttab_max_frames",
    "gnttab_max_maptrack_frames",
    "hap",
    "hpet",
    "iommu",
    "ler",
    "low_mem_virq_limit",
    "mce",
    "mem",
    "msi",
    "nmi",
    "no-real-mode",
    "pv-linear-pt",
    "pv-l1tf",
    "sched",
    "smt",
    "spec-ctrl",
    "tsc",
    "ucode",
    "vga",
    "vpmu",
    "watchdog",
    "x2apic",
    "xpti",
];

/// Longest `selftest=` name.
pub const SELFTEST_NAME_MAX: usize = 32;
/// Most `IGNORED_OPTIONS` names remembered in [`BootOptions::ignored`].
pub const IGNORED_KEEP: usize = 16;

/// Everything the boot command line configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOptions {
    /// `console=` (default `com1,vga` as in Xen).
    pub console: heapless::Vec<ConsoleDevice, 4>,
    /// `com1=`; `None` if not given (use [`SerialConfig::DEFAULT`]).
    pub com1: Option<SerialConfig>,
    /// `com2=`.
    pub com2: Option<SerialConfig>,
    /// `loglvl=` (default `warning`).
    pub loglvl: LogLevels,
    /// `guest_loglvl=` (default `none/warning`).
    pub guest_loglvl: LogLevels,
    /// `noreboot`: halt instead of rebooting on a crash or dom0 shutdown.
    pub noreboot: bool,
    /// `sync_console`: unbuffered console output.
    pub sync_console: bool,
    /// `dom0_mem=`.
    pub dom0_mem: Dom0Mem,
    /// `dom0_max_vcpus=`.
    pub dom0_max_vcpus: Dom0Vcpus,
    /// `dom0=`.
    pub dom0: Dom0Options,
    /// `dom0-iommu=`.
    pub dom0_iommu: Dom0Iommu,
    /// `maxcpus=`: bring up at most this many CPUs.
    pub maxcpus: Option<u32>,
    /// `lockstep=on|off` (default on).
    pub lockstep: bool,
    /// `lockstep_retries=K`: re-executions before escalating (0–100, default 3).
    pub lockstep_retries: u8,
    /// `lockstep_spin=N`: polls a waiting leader or follower makes before it halts until
    /// kicked (0–1000000; default [`LOCKSTEP_SPIN_DEFAULT`]); a coordinator core halts at once.
    pub lockstep_spin: u32,
    /// `selftest=NAME`: run a built-in self test.
    pub selftest: Option<heapless::String<SELFTEST_NAME_MAX>>,
    /// Names from [`IGNORED_OPTIONS`] that appeared (first [`IGNORED_KEEP`]).
    pub ignored: heapless::Vec<&'static str, IGNORED_KEEP>,
}

impl Default for BootOptions {
    fn default() -> Self {
        let mut console = heapless::Vec::new();
        // Capacity 4: cannot fail.
        let _ = console.push(ConsoleDevice::Com1);
        let _ = console.push(ConsoleDevice::Vga);
        BootOptions {
            console,
            com1: None,
            com2: None,
            loglvl: LogLevels {
                always: LogLevel::Warning,
                rate_limited: LogLevel::Warning,
            },
            guest_loglvl: LogLevels {
                always: LogLevel::None,
                rate_limited: LogLevel::Warning,
            },
            noreboot: false,
            sync_console: false,
            dom0_mem: Dom0Mem::default(),
            dom0_max_vcpus: Dom0Vcpus::default(),
            dom0: Dom0Options::default(),
            dom0_iommu: Dom0Iommu::default(),
            maxcpus: None,
            lockstep: true,
            lockstep_retries: 3,
            lockstep_spin: LOCKSTEP_SPIN_DEFAULT,
            selftest: None,
            ignored: heapless::Vec::new(),
        }
    }
}

/// Default of `lockstep_spin=`: the measurements are with `HwIdle` in the hypervisor's
/// `lockstep_hw.rs` (polls without `pause`; about 5,000 of them cover the other core's
/// execution of a hypercall under TCG).
pub const LOCKSTEP_SPIN_DEFAULT: u32 = 5000;
/// Largest accepted `lockstep_spin=`.
pub const LOCKSTEP_SPIN_MAX: u32 = 1_000_000;

/// How an option takes its value.
enum Kind {
    /// `name`, `no-name`, `name=<bool>`.
    Bool,
    /// `name=value` only.
    Value,
}

/// The options DualVisor implements, and how each takes its value.
const OPTIONS: &[(&str, Kind)] = &[
    ("console", Kind::Value),
    ("com1", Kind::Value),
    ("com2", Kind::Value),
    ("loglvl", Kind::Value),
    ("guest_loglvl", Kind::Value),
    ("noreboot", Kind::Bool),
    ("sync_console", Kind::Bool),
    ("dom0_mem", Kind::Value),
    ("dom0_max_vcpus", Kind::Value),
    ("dom0", Kind::Value),
    ("dom0-iommu", Kind::Value),
    ("maxcpus", Kind::Value),
    ("lockstep", Kind::Bool),
    ("lockstep_retries", Kind::Value),
    ("lockstep_spin", Kind::Value),
    ("selftest", Kind::Value),
];

impl BootOptions {
    /// Parses a command line (already stripped of the image name, see [`strip_image_name`]).
    /// Every problem is reported once through `warn`; the result is always usable.
    pub fn parse(cmdline: &str, warn: &mut dyn FnMut(CmdlineWarning<'_>)) -> BootOptions {
        let mut o = BootOptions::default();
        for token in cmdline
            .split(|c: char| c.is_ascii_whitespace())
            .filter(|t| !t.is_empty())
        {
            o.apply(token, warn);
        }
        o
    }

    /// The `log` filter for the hypervisor's own messages (`loglvl`'s rate-limited level: the
    /// least important level that is printed at all).
    pub fn log_level_filter(&self) -> log::LevelFilter {
        self.loglvl.rate_limited.to_filter()
    }

    /// The `com1` settings, or the defaults if `com1=` was not given.
    pub fn com1_or_default(&self) -> SerialConfig {
        self.com1.unwrap_or(SerialConfig::DEFAULT)
    }

    fn apply(&mut self, token: &str, warn: &mut dyn FnMut(CmdlineWarning<'_>)) {
        let (name, value) = match token.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (token, None),
        };
        let (key, negated) = match name.strip_prefix("no-") {
            Some(rest) if !rest.is_empty() => (rest, true),
            _ => (name, false),
        };
        let known = OPTIONS.iter().find(|(n, _)| *n == key);
        match known {
            Some((_, Kind::Bool)) => {
                let v = match (negated, value) {
                    (false, None) => Some(true),
                    (true, None) => Some(false),
                    (false, Some(v)) => parse_bool(v),
                    // `no-name=value` is undefined in Xen: reject.
                    (true, Some(_)) => None,
                };
                match v {
                    Some(b) => self.set_bool(key, b),
                    None => {
                        self.reset(key);
                        warn(CmdlineWarning::BadValue {
                            name: key,
                            value: value.unwrap_or(""),
                        });
                    }
                }
            }
            Some((_, Kind::Value)) => match (negated, value) {
                (false, Some(v)) => {
                    if self.set_value(key, v).is_none() {
                        self.reset(key);
                        warn(CmdlineWarning::BadValue {
                            name: key,
                            value: v,
                        });
                    }
                }
                (false, None) => {
                    self.reset(key);
                    warn(CmdlineWarning::BadValue {
                        name: key,
                        value: "",
                    });
                }
                (true, _) => warn(CmdlineWarning::Unknown { option: token }),
            },
            None => match IGNORED_OPTIONS.iter().find(|n| **n == key || **n == name) {
                Some(n) => {
                    if !self.ignored.contains(n) {
                        // Full list: only the first IGNORED_KEEP are remembered.
                        let _ = self.ignored.push(n);
                    }
                }
                None => warn(CmdlineWarning::Unknown { option: token }),
            },
        }
    }

    fn set_bool(&mut self, key: &str, b: bool) {
        match key {
            "noreboot" => self.noreboot = b,
            "sync_console" => self.sync_console = b,
            "lockstep" => self.lockstep = b,
            _ => {}
        }
    }

    /// Parses `v` into the option `key`; `None` if malformed.
    fn set_value(&mut self, key: &str, v: &str) -> Option<()> {
        match key {
            "console" => self.console = values::parse_console(v)?,
            "com1" => self.com1 = Some(SerialConfig::parse(v)?),
            "com2" => self.com2 = Some(SerialConfig::parse(v)?),
            "loglvl" => self.loglvl = LogLevels::parse(v)?,
            "guest_loglvl" => self.guest_loglvl = LogLevels::parse(v)?,
            "dom0_mem" => self.dom0_mem = Dom0Mem::parse(v)?,
            "dom0_max_vcpus" => self.dom0_max_vcpus = Dom0Vcpus::parse(v)?,
            "dom0" => self.dom0 = Dom0Options::parse(v)?,
            "dom0-iommu" => self.dom0_iommu = Dom0Iommu::parse(v)?,
            "maxcpus" => {
                self.maxcpus = Some(u32::try_from(parse_uint(v)?).ok().filter(|n| *n > 0)?)
            }
            "lockstep_retries" => {
                self.lockstep_retries = u8::try_from(parse_uint(v)?).ok().filter(|k| *k <= 100)?
            }
            "lockstep_spin" => {
                self.lockstep_spin = u32::try_from(parse_uint(v)?)
                    .ok()
                    .filter(|n| *n <= LOCKSTEP_SPIN_MAX)?
            }
            "selftest" => {
                let ok = !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return None;
                }
                self.selftest = Some(heapless::String::try_from(v).ok()?);
            }
            _ => return None,
        }
        Some(())
    }

    /// Puts option `key` back to its default (after a malformed value).
    fn reset(&mut self, key: &str) {
        let d = BootOptions::default();
        match key {
            "console" => self.console = d.console,
            "com1" => self.com1 = d.com1,
            "com2" => self.com2 = d.com2,
            "loglvl" => self.loglvl = d.loglvl,
            "guest_loglvl" => self.guest_loglvl = d.guest_loglvl,
            "noreboot" => self.noreboot = d.noreboot,
            "sync_console" => self.sync_console = d.sync_console,
            "dom0_mem" => self.dom0_mem = d.dom0_mem,
            "dom0_max_vcpus" => self.dom0_max_vcpus = d.dom0_max_vcpus,
            "dom0" => self.dom0 = d.dom0,
            "dom0-iommu" => self.dom0_iommu = d.dom0_iommu,
            "maxcpus" => self.maxcpus = d.maxcpus,
            "lockstep" => self.lockstep = d.lockstep,
            "lockstep_retries" => self.lockstep_retries = d.lockstep_retries,
            "lockstep_spin" => self.lockstep_spin = d.lockstep_spin,
            "selftest" => self.selftest = d.selftest,
            _ => {}
        }
    }
}

/// Removes the image name that Multiboot loaders other than GRUB 2 put first on the command
/// line (QEMU `-kernel` passes "path args"), as Xen's `cmdline_cook` does. Leading whitespace
/// is always dropped. Use it on the hypervisor's and on module command lines.
pub fn strip_image_name<'a>(cmdline: &'a str, loader_name: &str) -> &'a str {
    let s = cmdline.trim_start_matches(' ');
    // GRUB 2 ("GRUB 2.06", not legacy "GRUB 0.97") omits the image name.
    let grub2 = loader_name
        .strip_prefix("GRUB ")
        .is_some_and(|rest| !rest.starts_with('0'));
    if grub2 {
        return s;
    }
    match s.find(' ') {
        Some(i) => s[i..].trim_start_matches(' '),
        None => "",
    }
}
