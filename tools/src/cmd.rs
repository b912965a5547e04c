//! The `xl` command line: verbs, options (GNU getopt style, as xl parses them: options may
//! follow the arguments, `--` ends them, short options group) and xl's usage errors.
//!
//! [`parse`] takes the words after `xl` and gives a [`Command`] or a [`UsageError`]
//! holding exactly what xl prints (to stderr and stdout) and its exit status.

pub mod table;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use dom0_interface::lockstep_ctl::{
    LockstepKind, LockstepRequest, LOCKSTEP_CORE_FOLLOWER, LOCKSTEP_CORE_LEADER,
};

pub use table::{help, lookup, CmdSpec, CMD_TABLE};

/// libxl's `ERROR_INVAL`, the code xl prints for a name that names no domain.
pub const ERROR_INVAL: i32 = -6;

/// A domain as given on the command line (libxl's "domain qualifier").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainRef {
    /// All digits: a domain id (not checked to exist, as libxl does not).
    Id(u32),
    /// Anything else: a name.
    Name(String),
}

impl DomainRef {
    /// As `libxl_domain_qualifier_to_domid`: digits only is an id, else a name.
    pub fn parse(text: &str) -> DomainRef {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            DomainRef::Id(text.parse::<u32>().unwrap_or(u32::MAX))
        } else {
            DomainRef::Name(text.to_string())
        }
    }

    /// The domain id among `domains` (id, name); Err is xl's `find_domain` message.
    pub fn resolve(&self, domains: &[(u32, &str)]) -> Result<u32, String> {
        match self {
            DomainRef::Id(id) => Ok(*id),
            DomainRef::Name(name) => domains
                .iter()
                .find(|(_, n)| n == name)
                .map(|(id, _)| *id)
                .ok_or_else(|| {
                    format!("{name} is an invalid domain identifier (rc={ERROR_INVAL})\n")
                }),
        }
    }
}

/// `shutdown`/`reboot` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `-a`: every guest domain.
    All,
    /// One domain.
    One(DomainRef),
}

/// `xl lockstep ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockstepCmd {
    /// `status`.
    Status,
    /// `on`.
    On,
    /// `off`.
    Off,
    /// `inject [-w] KIND COUNT [pair=P]`.
    Inject {
        /// Fault kind.
        kind: LockstepKind,
        /// Number of faults (at least 1).
        count: u32,
        /// `-w`: wait until every fault is injected and print their outcomes.
        wait: bool,
        /// `pair=P`: the pair whose transactions get the faults (default 0).
        pair: u32,
    },
    /// `fail leader|follower [pair=P]`: a permanent fault of that core (`LOCKSTEP_CORE_*`)
    /// of pair `P` (default 0).
    Fail {
        /// `LOCKSTEP_CORE_LEADER` or `LOCKSTEP_CORE_FOLLOWER`.
        core: u32,
        /// `pair=P` (default 0).
        pair: u32,
    },
}

impl LockstepCmd {
    /// The sysctl request for this command; `status` gets the caller's buffer.
    pub const fn request(self, status_buffer: u64, status_size: u32) -> LockstepRequest {
        match self {
            LockstepCmd::Status => LockstepRequest::Status {
                buffer: status_buffer,
                size: status_size,
            },
            LockstepCmd::On => LockstepRequest::On,
            LockstepCmd::Off => LockstepRequest::Off,
            LockstepCmd::Inject {
                kind, count, pair, ..
            } => LockstepRequest::Inject { kind, count, pair },
            LockstepCmd::Fail { core, pair } => LockstepRequest::Fail { core, pair },
        }
    }
}

/// A parsed `xl` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `create CFG [-c] [-p] [key=value...]`.
    Create {
        /// Config file path.
        config: String,
        /// `-c`: attach to the console afterwards.
        console: bool,
        /// `-p`: leave the domain paused.
        paused: bool,
        /// `key=value` overrides appended to the config.
        vars: Vec<String>,
    },
    /// `list [Domain]`.
    List {
        /// Only this domain.
        domain: Option<DomainRef>,
    },
    /// `destroy Domain`.
    Destroy {
        /// The domain.
        domain: DomainRef,
    },
    /// `shutdown [-w] <-a|Domain>`.
    Shutdown {
        /// Which domains.
        target: Target,
        /// `-w`: wait until they are gone.
        wait: bool,
    },
    /// `reboot [-w] <-a|Domain>`.
    Reboot {
        /// Which domains.
        target: Target,
        /// `-w`: wait until they rebooted.
        wait: bool,
    },
    /// `pause Domain`.
    Pause {
        /// The domain.
        domain: DomainRef,
    },
    /// `unpause Domain`.
    Unpause {
        /// The domain.
        domain: DomainRef,
    },
    /// `console Domain`.
    Console {
        /// The domain.
        domain: DomainRef,
    },
    /// `vcpu-list [Domain...]`.
    VcpuList {
        /// Domains (all when empty).
        domains: Vec<DomainRef>,
    },
    /// `info [Name]`.
    Info {
        /// Only the lines starting with this.
        name: Option<String>,
    },
    /// `domid Name`.
    Domid {
        /// The name.
        name: String,
    },
    /// `domname Id`.
    Domname {
        /// The id.
        domid: u32,
    },
    /// `dmesg [-c]`.
    Dmesg {
        /// `-c`: clear the ring after reading.
        clear: bool,
    },
    /// `uptime [-s] [Domain...]`.
    Uptime {
        /// `-s`: short format.
        short: bool,
        /// Domains (all when empty).
        domains: Vec<DomainRef>,
    },
    /// `lockstep status|on|off|inject KIND COUNT [pair=P]|fail CORE [pair=P]`.
    Lockstep(LockstepCmd),
    /// `help [verb]`, or `-h` on a verb: print [`help`] and succeed.
    Help {
        /// The verb, if any.
        verb: Option<String>,
    },
}

/// What xl prints for a bad command line, and its exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    /// Text for stderr.
    pub stderr: String,
    /// Text for stdout (the help xl prints after some errors).
    pub stdout: String,
    /// Exit status.
    pub exit_code: i32,
}

impl UsageError {
    fn new(stderr: String, exit_code: i32) -> UsageError {
        UsageError {
            stderr,
            stdout: String::new(),
            exit_code,
        }
    }

    fn with_help(stderr: String, verb: &str, exit_code: i32) -> UsageError {
        UsageError {
            stderr,
            stdout: help(Some(verb)),
            exit_code,
        }
    }
}

/// A verb's options: `(short letter, long name)`.
type OptSpec = &'static [(char, &'static str)];

/// The words of a verb split into options and arguments, as GNU `getopt_long` permutes them.
struct Split {
    opts: Vec<char>,
    args: Vec<String>,
}

fn getopt(verb: &str, words: &[&str], spec: OptSpec) -> Result<Result<Split, Command>, UsageError> {
    let mut opts = Vec::new();
    let mut args = Vec::new();
    let mut iter = words.iter();
    while let Some(&w) = iter.next() {
        if w == "--" {
            args.extend(iter.by_ref().map(|s| s.to_string()));
            break;
        }
        if let Some(long) = w.strip_prefix("--") {
            if "help".starts_with(long)
                && !long.is_empty()
                && !spec.iter().any(|(_, l)| l.starts_with(long))
            {
                return Ok(Err(Command::Help {
                    verb: Some(verb.to_string()),
                }));
            }
            let hits: Vec<_> = spec
                .iter()
                .filter(|(_, l)| l.starts_with(long) && !long.is_empty())
                .collect();
            match hits.as_slice() {
                [(c, _)] => opts.push(*c),
                _ => {
                    return Err(UsageError::new(format!("option `{w}' not supported.\n"), 2));
                }
            }
        } else if w.len() > 1 && w.starts_with('-') {
            for c in w[1..].chars() {
                if c == 'h' {
                    return Ok(Err(Command::Help {
                        verb: Some(verb.to_string()),
                    }));
                }
                if !spec.iter().any(|(s, _)| *s == c) {
                    return Err(UsageError::new(format!("option `{c}' not supported.\n"), 2));
                }
                opts.push(c);
            }
        } else {
            args.push(w.to_string());
        }
    }
    Ok(Ok(Split { opts, args }))
}

fn need(verb: &str, split: &Split, n: usize) -> Result<(), UsageError> {
    if split.args.len() < n {
        return Err(UsageError::with_help(
            format!(
                "'xl {verb}' requires at least {n} argument{}.\n\n",
                if n > 1 { "s" } else { "" }
            ),
            verb,
            2,
        ));
    }
    Ok(())
}

fn refs(args: &[String]) -> Vec<DomainRef> {
    args.iter().map(|a| DomainRef::parse(a)).collect()
}

/// Reads a domain id as xl's `domname` does (`strtol(.., 10)`, trailing text ignored).
fn leading_number(text: &str) -> Option<u32> {
    let t = text.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits: &str = &t[..t.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() {
        return None;
    }
    let v = digits.parse::<u64>().unwrap_or(u64::MAX);
    Some(if neg {
        (v as u32).wrapping_neg()
    } else {
        u32::try_from(v).unwrap_or(u32::MAX)
    })
}

fn shutdown_like(verb: &str, words: &[&str]) -> Result<Command, UsageError> {
    let split = match getopt(verb, words, &[('a', "all"), ('w', "wait"), ('F', "")])? {
        Ok(s) => s,
        Err(help) => return Ok(help),
    };
    let all = split.opts.contains(&'a');
    let wait = split.opts.contains(&'w');
    let target = match (all, split.args.first()) {
        (true, None) => Target::All,
        (false, Some(d)) => Target::One(DomainRef::parse(d)),
        _ => {
            return Err(UsageError::new(
                "You must specify -a or a domain id.\n\n".to_string(),
                1,
            ))
        }
    };
    Ok(if verb == "shutdown" {
        Command::Shutdown { target, wait }
    } else {
        Command::Reboot { target, wait }
    })
}

const KIND_LIST: &str = "leader-reg, follower-reg, replica-state, effects, digest, mailbox, hang";

fn lockstep(words: &[&str]) -> Result<Command, UsageError> {
    let split = match getopt("lockstep", words, &[('w', "wait")])? {
        Ok(s) => s,
        Err(help) => return Ok(help),
    };
    need("lockstep", &split, 1)?;
    let bad = |msg: String| Err(UsageError::with_help(msg, "lockstep", 2));
    // `pair=P` (inject and fail), the last word; the hypervisor says whether pair P exists.
    let mut a = split.args.clone();
    let mut pair = 0;
    if let Some(p) = a.last().and_then(|w| w.strip_prefix("pair=")) {
        if !matches!(a[0].as_str(), "inject" | "fail") {
            return bad(
                "pair=<P> applies to 'xl lockstep inject' and 'fail' only.\n\n".to_string(),
            );
        }
        pair = match p.parse::<u32>() {
            Ok(n) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return bad(format!(
                    "invalid pair '{p}': expected a pair number (0, 1, ...).\n\n"
                ))
            }
        };
        a.pop();
    }
    let a = &a;
    let extra = |n: usize| a.len() > n;
    let wait = split.opts.contains(&'w');
    if wait && a[0] != "inject" {
        return bad("-w applies to 'xl lockstep inject' only.\n\n".to_string());
    }
    let cmd = match a[0].as_str() {
        "status" | "on" | "off" if extra(1) => {
            return bad(format!("'xl lockstep {}' takes no arguments.\n\n", a[0]));
        }
        "status" => LockstepCmd::Status,
        "on" => LockstepCmd::On,
        "off" => LockstepCmd::Off,
        "inject" => {
            if a.len() != 3 {
                return bad(
                    "'xl lockstep inject' requires [-w] <Kind> <Count> [pair=<P>].\n\n".to_string(),
                );
            }
            let Some(kind) = LockstepKind::from_name(&a[1]) else {
                return bad(format!(
                    "unknown fault kind '{}'; kinds: {KIND_LIST}.\n\n",
                    a[1]
                ));
            };
            let count = match a[2].parse::<u32>() {
                Ok(c) if c > 0 && a[2].bytes().all(|b| b.is_ascii_digit()) => c,
                _ => {
                    return bad(format!(
                        "invalid count '{}': expected a whole number from 1 to {}.\n\n",
                        a[2],
                        u32::MAX
                    ))
                }
            };
            LockstepCmd::Inject {
                kind,
                count,
                wait,
                pair,
            }
        }
        "fail" => {
            let core =
                match a.get(1).map(String::as_str) {
                    Some("leader") if a.len() == 2 => LOCKSTEP_CORE_LEADER,
                    Some("follower") if a.len() == 2 => LOCKSTEP_CORE_FOLLOWER,
                    _ => return bad(
                        "'xl lockstep fail' requires one core: leader or follower [pair=<P>].\n\n"
                            .to_string(),
                    ),
                };
            LockstepCmd::Fail { core, pair }
        }
        other => {
            return bad(format!(
                "unknown lockstep command '{other}' (status, on, off, inject, fail).\n\n"
            ))
        }
    };
    Ok(Command::Lockstep(cmd))
}

/// Parses the words after `xl` (global `-v` is accepted and ignored).
pub fn parse(words: &[&str]) -> Result<Command, UsageError> {
    let mut i = 0;
    while let Some(w) = words.get(i).filter(|w| w.starts_with('-') && w.len() > 1) {
        if *w == "-h" {
            return Ok(Command::Help { verb: None });
        }
        if !w[1..].chars().all(|c| c == 'v') {
            return Err(UsageError::new("unknown global option\n".to_string(), 1));
        }
        i += 1;
    }
    let Some(&verb) = words.get(i) else {
        return Err(UsageError {
            stderr: String::new(),
            stdout: help(None),
            exit_code: 1,
        });
    };
    let rest = &words[i + 1..];
    if verb == "help" {
        return Ok(Command::Help {
            verb: rest.first().map(|s| s.to_string()),
        });
    }
    let Some(spec) = lookup(verb) else {
        return Err(UsageError::new("command not implemented\n".to_string(), 1));
    };
    let name = spec.name;
    let opts: OptSpec = match name {
        "create" => &[('c', ""), ('p', "")],
        "dmesg" => &[('c', "clear")],
        "uptime" => &[('s', "")],
        "shutdown" | "reboot" => return shutdown_like(name, rest),
        "lockstep" => return lockstep(rest),
        _ => &[],
    };
    let split = match getopt(name, rest, opts)? {
        Ok(s) => s,
        Err(help) => return Ok(help),
    };
    let has = |c| split.opts.contains(&c);
    let first = || DomainRef::parse(&split.args[0]);
    Ok(match name {
        "create" => {
            need(name, &split, 1)?;
            Command::Create {
                config: split.args[0].clone(),
                console: has('c'),
                paused: has('p'),
                vars: split.args[1..].to_vec(),
            }
        }
        "list" => match split.args.len() {
            0 => Command::List { domain: None },
            1 => Command::List {
                domain: Some(first()),
            },
            _ => return Err(UsageError::with_help(String::new(), name, 1)),
        },
        "destroy" => {
            need(name, &split, 1)?;
            Command::Destroy { domain: first() }
        }
        "pause" => {
            need(name, &split, 1)?;
            Command::Pause { domain: first() }
        }
        "unpause" => {
            need(name, &split, 1)?;
            Command::Unpause { domain: first() }
        }
        "console" => {
            need(name, &split, 1)?;
            Command::Console { domain: first() }
        }
        "vcpu-list" => Command::VcpuList {
            domains: refs(&split.args),
        },
        "info" => Command::Info {
            name: split.args.first().cloned(),
        },
        "domid" => {
            need(name, &split, 1)?;
            Command::Domid {
                name: split.args[0].clone(),
            }
        }
        "domname" => {
            need(name, &split, 1)?;
            match leading_number(&split.args[0]) {
                Some(domid) => Command::Domname { domid },
                None => return Err(UsageError::new("Invalid domain id.\n\n".to_string(), 1)),
            }
        }
        "dmesg" => Command::Dmesg { clear: has('c') },
        "uptime" => Command::Uptime {
            short: has('s'),
            domains: refs(&split.args),
        },
        _ => return Err(UsageError::new("command not implemented\n".to_string(), 1)),
    })
}

/// Splits a shell line into words: blanks separate, `'...'` and `"..."` quote, `\`
/// escapes the next character (outside single quotes). Err on an unterminated quote.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(core::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated ' quote".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch) => cur.push(ch),
                            None => return Err("unterminated \" quote".to_string()),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated \" quote".to_string()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(ch) = chars.next() {
                    cur.push(ch);
                }
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests;
