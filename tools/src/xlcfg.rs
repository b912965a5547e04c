//! xl.cfg: Xen's domain configuration file, parsed into a typed [`DomainConfig`].
//!
//! [`syntax`] reads the text as libxlu does; [`DomainConfig::parse`] then gives the keys
//! their meaning as `xl create` (xl_parse.c) does for the subset DualVisor builds today:
//! `name`, `type`/`builder`, `kernel`, `ramdisk`, `cmdline`/`root`/`extra`, `memory`,
//! `maxmem`, `vcpus`, `maxvcpus`, `on_poweroff`/`on_reboot`/`on_crash`, `uuid`. Other keys
//! are reported as warnings. Every error names the file and, where it has one, the line.

pub mod action;
pub mod syntax;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

pub use action::ShutdownAction;
use syntax::{parse_long, Setting, Settings, Value};

/// What kind of guest to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestType {
    /// Paravirtualised guest (the only kind built today).
    Pv,
}

/// libxl's default memory when a config gives neither `memory` nor `maxmem` (MiB).
pub const DEFAULT_MEMORY_MIB: u64 = 32;
/// Largest `vcpus`/`maxvcpus` accepted (Xen's `HVM_MAX_VCPUS`-sized guest limit).
pub const MAX_VCPUS: u32 = 128;
/// Largest `memory`/`maxmem` accepted, in MiB (1 TiB: beyond any host this runs on).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

/// A parsed domain configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// Domain name (`name`).
    pub name: String,
    /// Guest type (`type`, or the deprecated `builder`).
    pub type_: GuestType,
    /// Path of the kernel image (`kernel`).
    pub kernel: String,
    /// Path of the initial ramdisk (`ramdisk`).
    pub ramdisk: Option<String>,
    /// Kernel command line, combined from `cmdline`, `root` and `extra` as xl does.
    pub cmdline: Option<String>,
    /// Initial memory in MiB (`memory`).
    pub memory_mib: u64,
    /// Maximum memory in MiB (`maxmem`, defaults to `memory`).
    pub maxmem_mib: u64,
    /// vCPUs online at start (`vcpus`).
    pub vcpus: u32,
    /// Maximum vCPUs (`maxvcpus`, defaults to `vcpus`).
    pub maxvcpus: u32,
    /// What to do when the guest powers off.
    pub on_poweroff: ShutdownAction,
    /// What to do when the guest reboots.
    pub on_reboot: ShutdownAction,
    /// What to do when the guest crashes.
    pub on_crash: ShutdownAction,
    /// The domain's UUID, if the config fixes one.
    pub uuid: Option<[u8; 16]>,
}

/// A configuration error: file, line (when the problem has one) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to the parser.
    pub file: String,
    /// 1-based line, if the error belongs to one.
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A parsed configuration with the warnings it produced (unknown or ignored keys...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The configuration.
    pub config: DomainConfig,
    /// Warnings, each formatted `file:line: warning: ...`.
    pub warnings: Vec<String>,
}

/// Keys this parser gives a meaning to.
const KNOWN: [&str; 16] = [
    "name",
    "type",
    "builder",
    "kernel",
    "ramdisk",
    "cmdline",
    "root",
    "extra",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "uuid",
];

/// Keys xl understands that DualVisor does not act on yet (warned as ignored, not unknown).
const XL_UNSUPPORTED: [&str; 32] = [
    "bootloader",
    "bootloader_args",
    "cap",
    "cpu_weight",
    "cpus",
    "cpus_soft",
    "device_model_version",
    "disk",
    "driver_domain",
    "e820_host",
    "hap",
    "iomem",
    "ioports",
    "irqs",
    "max_event_channels",
    "max_grant_frames",
    "max_maptrack_frames",
    "nomigrate",
    "on_soft_reset",
    "on_watchdog",
    "pci",
    "pool",
    "seclabel",
    "serial",
    "shadow_memory",
    "tsc_mode",
    "vfb",
    "vif",
    "vkb",
    "vnc",
    "vtpm",
    "xen_platform_pci",
];

struct Ctx<'a> {
    file: &'a str,
    settings: &'a Settings,
    warnings: Vec<String>,
}

impl<'a> Ctx<'a> {
    fn err(&self, line: Option<u32>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line,
            message,
        }
    }

    fn warn(&mut self, line: u32, message: &str) {
        self.warnings
            .push(format!("{}:{}: warning: {}", self.file, line, message));
    }

    fn string(&self, key: &str) -> Result<Option<(&'a str, &'a Setting)>, ConfigError> {
        match self.settings.get(key) {
            None => Ok(None),
            Some(s) => match &s.value {
                Value::Atom(a) => Ok(Some((a.as_str(), s))),
                Value::List(_) => Err(self.err(
                    Some(s.line),
                    format!("parameter `{key}' is a list but should be a single value"),
                )),
            },
        }
    }

    fn number(&self, key: &str, min: i64, max: i64) -> Result<Option<(i64, u32)>, ConfigError> {
        let Some((text, s)) = self.string(key)? else {
            return Ok(None);
        };
        if s.appended {
            return Err(self.err(
                Some(s.line),
                format!("can't use += with numbers for parameter `{key}'"),
            ));
        }
        let Some(v) = parse_long(text) else {
            return Err(self.err(
                Some(s.line),
                format!("parameter `{key}' is not a valid number: '{text}'"),
            ));
        };
        if v < min {
            return Err(self.err(
                Some(s.line),
                format!("value `{v}' of `{key}' is smaller than minimum bound '{min}'"),
            ));
        }
        if v > max {
            return Err(self.err(
                Some(s.line),
                format!("value `{v}' of `{key}' is greater than maximum bound '{max}'"),
            ));
        }
        Ok(Some((v, s.line)))
    }

    fn action(&self, key: &str, default: ShutdownAction) -> Result<ShutdownAction, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some((word, s)) => ShutdownAction::from_name(word).ok_or_else(|| {
                self.err(
                    Some(s.line),
                    format!("Unknown {key} action \"{word}\" specified"),
                )
            }),
        }
    }
}

fn guest_type(ctx: &Ctx<'_>) -> Result<GuestType, ConfigError> {
    let not_yet = |word: &str, line| {
        ctx.err(
            Some(line),
            format!("domain type \"{word}\" is not supported yet (only \"pv\")"),
        )
    };
    let mut ty = None;
    if let Some((word, s)) = ctx.string("type")? {
        ty = Some(match word {
            "pv" => GuestType::Pv,
            "pvh" | "hvm" => return Err(not_yet(word, s.line)),
            _ => return Err(ctx.err(Some(s.line), format!("Invalid domain type {word}."))),
        });
    }
    if let Some((word, s)) = ctx.string("builder")? {
        let b = match word {
            "generic" => GuestType::Pv,
            "hvm" => return Err(not_yet(word, s.line)),
            _ => return Err(ctx.err(Some(s.line), format!("Invalid domain type {word}."))),
        };
        if ty.is_some_and(|t| t != b) {
            return Err(ctx.err(
                Some(s.line),
                "Contradicting \"builder\" and \"type\" options specified.".to_string(),
            ));
        }
        ty = Some(b);
    }
    Ok(ty.unwrap_or(GuestType::Pv))
}

fn cmdline(ctx: &mut Ctx<'_>) -> Result<Option<String>, ConfigError> {
    let cmd = ctx.string("cmdline")?;
    let root = ctx.string("root")?;
    let extra = ctx.string("extra")?;
    Ok(match (cmd, root, extra) {
        (Some((c, s)), r, e) => {
            if r.is_some() || e.is_some() {
                ctx.warn(s.line, "ignoring root= and extra= in favour of cmdline=");
            }
            Some(c.to_string())
        }
        (None, Some((r, _)), Some((e, _))) => Some(format!("root={r} {e}")),
        (None, Some((r, _)), None) => Some(format!("root={r}")),
        (None, None, Some((e, _))) => Some(e.to_string()),
        (None, None, None) => None,
    })
}

/// Parses `8-4-4-4-12` hexadecimal UUID text, as `libxl_uuid_from_string`.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hi = char::from(b[i]).to_digit(16)?;
        let lo = char::from(*b.get(i + 1)?).to_digit(16)?;
        out[n] = (hi * 16 + lo) as u8;
        n += 1;
        i += 2;
    }
    Some(out)
}

impl DomainConfig {
    /// Parses `text`, the contents of the file called `file` (used in messages).
    pub fn parse(file: &str, text: &str) -> Result<Parsed, ConfigError> {
        let settings = syntax::parse(text).map_err(|e| ConfigError {
            file: file.to_string(),
            line: Some(e.line),
            message: e.message,
        })?;
        let mut ctx = Ctx {
            file,
            settings: &settings,
            warnings: Vec::new(),
        };
        let type_ = guest_type(&ctx)?;
        let name = match ctx.string("name")? {
            Some(("", s)) => {
                return Err(ctx.err(Some(s.line), "name must not be empty".to_string()))
            }
            Some((n, s)) if n.chars().any(|c| c.is_control()) => {
                return Err(ctx.err(
                    Some(s.line),
                    "name must not contain control characters".to_string(),
                ))
            }
            Some((n, _)) => n.to_string(),
            None => return Err(ctx.err(None, "Domain name must be specified.".to_string())),
        };
        let uuid = match ctx.string("uuid")? {
            Some((u, s)) => Some(
                parse_uuid(u)
                    .ok_or_else(|| ctx.err(Some(s.line), format!("Failed to parse UUID: {u}")))?,
            ),
            None => None,
        };
        let max_mem = MAX_MEMORY_MIB as i64;
        let memory = ctx.number("memory", 1, max_mem)?;
        let maxmem = ctx.number("maxmem", 1, max_mem)?;
        let (memory_mib, maxmem_mib) = match (memory, maxmem) {
            (Some((m, _)), Some((x, line))) => {
                if x < m {
                    return Err(ctx.err(
                        Some(line),
                        format!("maxmem ({x} MiB) must not be smaller than memory ({m} MiB)"),
                    ));
                }
                (m as u64, x as u64)
            }
            (Some((m, _)), None) => (m as u64, m as u64),
            (None, Some((x, _))) => (x as u64, x as u64),
            (None, None) => (DEFAULT_MEMORY_MIB, DEFAULT_MEMORY_MIB),
        };
        let vcpus = ctx.number("vcpus", 1, MAX_VCPUS.into())?;
        let maxvcpus = ctx.number("maxvcpus", 1, MAX_VCPUS.into())?;
        let vcpus_n = vcpus.map_or(1, |(v, _)| v as u32);
        let maxvcpus_n = maxvcpus.map_or(vcpus_n, |(v, _)| v as u32);
        if maxvcpus_n < vcpus_n {
            let line = maxvcpus.map(|(_, l)| l);
            return Err(ctx.err(line, format!("maxvcpus < vcpus ({maxvcpus_n} < {vcpus_n})")));
        }
        let on_poweroff = ctx.action("on_poweroff", ShutdownAction::Destroy)?;
        let on_reboot = ctx.action("on_reboot", ShutdownAction::Restart)?;
        let on_crash = ctx.action("on_crash", ShutdownAction::Destroy)?;
        for key in ["on_poweroff", "on_reboot", "on_crash"] {
            if let Some(s) = settings.get(key) {
                let act = ctx.action(key, ShutdownAction::Destroy)?;
                if let Some(note) = act.limitation() {
                    ctx.warn(s.line, &format!("{key} = \"{}\": {note}", act.name()));
                }
            }
        }
        let kernel = match ctx.string("kernel")? {
            Some(("", s)) => {
                return Err(ctx.err(Some(s.line), "kernel must not be empty".to_string()))
            }
            Some((k, _)) => k.to_string(),
            None => {
                return Err(ctx.err(None, "kernel must be specified for a PV domain".to_string()))
            }
        };
        let ramdisk = ctx.string("ramdisk")?.map(|(r, _)| r.to_string());
        let cmdline = cmdline(&mut ctx)?;

        let mut seen: Vec<&str> = Vec::new();
        for s in &settings.items {
            if KNOWN.contains(&s.name.as_str()) || seen.contains(&s.name.as_str()) {
                continue;
            }
            seen.push(&s.name);
            let line = settings.get(&s.name).map_or(s.line, |last| last.line);
            if XL_UNSUPPORTED.contains(&s.name.as_str()) {
                ctx.warn(
                    line,
                    &format!("`{}' is not supported by DualVisor yet; ignored", s.name),
                );
            } else {
                ctx.warn(line, &format!("unknown key `{}' ignored", s.name));
            }
        }
        let warnings = ctx.warnings;
        Ok(Parsed {
            config: DomainConfig {
                name,
                type_,
                kernel,
                ramdisk,
                cmdline,
                memory_mib,
                maxmem_mib,
                vcpus: vcpus_n,
                maxvcpus: maxvcpus_n,
                on_poweroff,
                on_reboot,
                on_crash,
                uuid,
            },
            warnings,
        })
    }

    /// Initial memory in KiB.
    pub const fn memory_kib(&self) -> u64 {
        self.memory_mib * 1024
    }

    /// Maximum memory in KiB (the `max_mem` domctl argument).
    pub const fn maxmem_kib(&self) -> u64 {
        self.maxmem_mib * 1024
    }
}

/// Appends `xl create` command-line `key=value` overrides to config text, one per line,
/// as xl does (they are parsed after the file, so they win).
pub fn with_overrides(text: &str, overrides: &[&str]) -> String {
    let mut out = String::from(text);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for o in overrides {
        out.push_str(o);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
