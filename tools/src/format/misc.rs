//! The small verbs: `xl uptime`, `xl domid`, `xl domname`, `xl dmesg`.

use super::ljust;
use alloc::format;
use alloc::string::String;
use core::fmt::Write;

/// One domain's uptime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UptimeEntry<'a> {
    /// Name.
    pub name: &'a str,
    /// Domain id.
    pub domid: u32,
    /// Seconds since the domain started.
    pub uptime_s: u64,
}

/// xl's `uptime_to_string`: `[D day(s), ]HH:MM[:SS]` with the hour space-padded.
pub fn uptime_to_string(uptime: u64, short: bool) -> String {
    let day = uptime / 86400;
    let hour = (uptime % 86400) / 3600;
    let min = (uptime % 3600) / 60;
    let sec = uptime % 60;
    let days = match day {
        0 => String::new(),
        1 => String::from("1 day, "),
        d => format!("{d} days, "),
    };
    if short {
        format!("{days}{hour:2}:{min:02}")
    } else {
        format!("{days}{hour:2}:{min:02}:{sec:02}")
    }
}

/// `xl uptime [-s]`. `now_s` is the wall-clock time of day in seconds (used by `-s`,
/// which prints it as `HH:MM:SS`).
pub fn uptime(entries: &[UptimeEntry<'_>], short: bool, now_s: u64) -> String {
    let mut out = String::new();
    if !short {
        let _ = writeln!(out, "{:<33} {:>4} Uptime", "Name", "ID");
    }
    let t = now_s % 86400;
    for e in entries {
        if short {
            let _ = writeln!(
                out,
                " {:02}:{:02}:{:02} up {}, {} ({})",
                t / 3600,
                (t % 3600) / 60,
                t % 60,
                uptime_to_string(e.uptime_s, true),
                e.name,
                e.domid
            );
        } else {
            ljust(&mut out, e.name, 33);
            let _ = writeln!(
                out,
                " {:4} {}",
                e.domid,
                uptime_to_string(e.uptime_s, false)
            );
        }
    }
    out
}

/// `xl domid NAME`: the id, or xl's error text.
pub fn domid(name: &str, found: Option<u32>) -> Result<String, String> {
    match found {
        Some(id) => Ok(format!("{id}\n")),
        None => Err(format!(
            "Can't get domid of domain name '{name}', maybe this domain does not exist.\n"
        )),
    }
}

/// `xl domname ID` once the id is known valid: the name, or xl's error text.
pub fn domname(domid: u32, found: Option<&str>) -> Result<String, String> {
    match found {
        Some(name) => Ok(format!("{name}\n")),
        None => Err(format!(
            "Can't get domain name of domain id '{domid}', maybe this domain does not exist.\n"
        )),
    }
}

/// What `xl create` writes to stderr before reading the config.
pub fn parsing_config(file: &str) -> String {
    format!("Parsing config from {file}\n")
}

/// `xl dmesg`: the hypervisor console ring as read by `XEN_SYSCTL_readconsole`, printed as
/// is (bytes that are not UTF-8 become U+FFFD). A missing final newline is not added,
/// as xl does not add one.
pub fn dmesg(ring: &[u8]) -> String {
    String::from_utf8_lossy(ring).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_strings() {
        assert_eq!(uptime_to_string(0, false), " 0:00:00");
        assert_eq!(uptime_to_string(59, false), " 0:00:59");
        assert_eq!(uptime_to_string(3 * 3600 + 7 * 60 + 5, false), " 3:07:05");
        assert_eq!(
            uptime_to_string(86400 + 13 * 3600 + 60, false),
            "1 day, 13:01:00"
        );
        assert_eq!(uptime_to_string(3 * 86400 + 5, true), "3 days,  0:00");
        assert_eq!(
            uptime_to_string(u64::MAX, false),
            "213503982334601 days,  7:00:15"
        );
    }

    #[test]
    fn golden_uptime() {
        let e = [
            UptimeEntry {
                name: "Domain-0",
                domid: 0,
                uptime_s: 3725,
            },
            UptimeEntry {
                name: "demo1",
                domid: 3,
                uptime_s: 90061,
            },
        ];
        assert_eq!(
            uptime(&e, false, 0),
            "Name                                ID Uptime\n\
             Domain-0                             0  1:02:05\n\
             demo1                                3 1 day,  1:01:01\n"
        );
        assert_eq!(
            uptime(&e, true, 86400 + 13 * 3600 + 4 * 60 + 9),
            " 13:04:09 up  1:02, Domain-0 (0)\n 13:04:09 up 1 day,  1:01, demo1 (3)\n"
        );
    }

    #[test]
    fn domid_domname_dmesg() {
        assert_eq!(domid("demo1", Some(3)), Ok("3\n".into()));
        assert_eq!(
            domid("nope", None),
            Err(
                "Can't get domid of domain name 'nope', maybe this domain does not exist.\n".into()
            )
        );
        assert_eq!(domname(0, Some("Domain-0")), Ok("Domain-0\n".into()));
        assert_eq!(
            domname(9, None),
            Err(
                "Can't get domain name of domain id '9', maybe this domain does not exist.\n"
                    .into()
            )
        );
        assert_eq!(dmesg(b"(XEN) hello\n(XEN) bye"), "(XEN) hello\n(XEN) bye");
        assert_eq!(dmesg(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(
            parsing_config("/etc/xen/demo1.cfg"),
            "Parsing config from /etc/xen/demo1.cfg\n"
        );
    }
}
