//! The `xl` command table (as xl_cmdtable.c, for the verbs DualVisor implements) and the
//! `xl help` texts generated from it (xl.c's `help()`).

use alloc::string::String;
use core::fmt::Write;

/// One verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdSpec {
    /// The verb.
    pub name: &'static str,
    /// Accepts xl's global `-f` (the command modifies state).
    pub modifies: bool,
    /// Accepts xl's global `-N` (dry run).
    pub can_dryrun: bool,
    /// One-line description.
    pub desc: &'static str,
    /// Usage after the verb.
    pub usage: &'static str,
    /// Option descriptions, if any.
    pub options: Option<&'static str>,
}

const fn spec(
    name: &'static str,
    modifies: bool,
    can_dryrun: bool,
    desc: &'static str,
    usage: &'static str,
    options: Option<&'static str>,
) -> CmdSpec {
    CmdSpec {
        name,
        modifies,
        can_dryrun,
        desc,
        usage,
        options,
    }
}

/// Every verb, in xl's table order (DualVisor's `lockstep` last).
pub const CMD_TABLE: [CmdSpec; 15] = [
    spec(
        "create",
        true,
        true,
        "Create a domain from config file <filename>",
        "<ConfigFile> [options] [vars]",
        Some(
            "-h                      Print this help.\n\
             -p                      Leave the domain paused after it is created.\n\
             -c                      Connect to the console after the domain is created.",
        ),
    ),
    spec(
        "list",
        false,
        false,
        "List information about all/some domains",
        "[options] [Domain]\n",
        None,
    ),
    spec(
        "destroy",
        false,
        true,
        "Terminate a domain immediately",
        "[options] <Domain>\n",
        None,
    ),
    spec(
        "shutdown",
        false,
        true,
        "Issue a shutdown signal to a domain",
        "[options] <-a|Domain>",
        Some(
            "-a, --all               Shutdown all guest domains.\n\
             -h                      Print this help.\n\
             -w, --wait              Wait for guest(s) to shutdown.\n",
        ),
    ),
    spec(
        "reboot",
        false,
        true,
        "Issue a reboot signal to a domain",
        "[options] <-a|Domain>",
        Some(
            "-a, --all               Shutdown all guest domains.\n\
             -h                      Print this help.\n\
             -w, --wait              Wait for guest(s) to reboot.\n",
        ),
    ),
    spec(
        "pause",
        false,
        true,
        "Pause execution of a domain",
        "<Domain>",
        None,
    ),
    spec(
        "unpause",
        false,
        true,
        "Unpause a paused domain",
        "<Domain>",
        None,
    ),
    spec(
        "console",
        false,
        false,
        "Attach to domain's console",
        "<Domain>",
        None,
    ),
    spec(
        "vcpu-list",
        false,
        false,
        "List the VCPUs for all/some domains",
        "[Domain, ...]",
        None,
    ),
    spec(
        "info",
        false,
        false,
        "Get information about Xen host",
        "[<Name>]",
        None,
    ),
    spec(
        "domid",
        false,
        false,
        "Convert a domain name to domain id",
        "<DomainName>",
        None,
    ),
    spec(
        "domname",
        false,
        false,
        "Convert a domain id to domain name",
        "<DomainId>",
        None,
    ),
    spec(
        "dmesg",
        false,
        false,
        "Read and/or clear dmesg buffer",
        "[-c]",
        Some("  -c                        Clear dmesg buffer as well as printing it"),
    ),
    spec(
        "uptime",
        false,
        false,
        "Print uptime for all/some domains",
        "[-s] [Domain]",
        None,
    ),
    spec(
        "lockstep",
        false,
        false,
        "Show or control DualVisor's dual-core lockstep",
        "<status|on|off|inject [-w] <Kind> <Count> [pair=<P>]|fail <leader|follower> [pair=<P>]>",
        Some(
            "status                  Roles, counters and injection outcomes.\n\
             on                      Run every hypercall and VM exit on two cores.\n\
             off                     Run them once, unprotected.\n\
             inject <Kind> <Count>   Inject <Count> faults of <Kind>: leader-reg,\n\
             \x20                       follower-reg, replica-state, effects, digest,\n\
             \x20                       mailbox or hang. -w: wait until all are\n\
             \x20                       injected, then print their outcomes.\n\
             fail <leader|follower>  Make that core fail for good (a permanent fault):\n\
             \x20                       the pair takes it out of service; a spare CPU\n\
             \x20                       replaces a follower.\n\
             pair=<P>                With several pairs (5 CPUs and more): inject in\n\
             \x20                       or fail a core of pair <P> (0: CPU1/CPU2,\n\
             \x20                       1: CPU3/CPU4, ...); default pair 0.",
        ),
    ),
];

/// Looks a verb up as xl's `cmdtable_lookup`: an exact name, or an unambiguous prefix.
pub fn lookup(verb: &str) -> Option<&'static CmdSpec> {
    if verb.is_empty() {
        return None;
    }
    if let Some(exact) = CMD_TABLE.iter().find(|c| c.name == verb) {
        return Some(exact);
    }
    let mut found = None;
    for c in CMD_TABLE.iter().filter(|c| c.name.starts_with(verb)) {
        if found.is_some() {
            return None;
        }
        found = Some(c);
    }
    found
}

/// `xl help [verb]`: the verb list, one verb's usage, or xl's "not implemented" line.
pub fn help(verb: Option<&str>) -> String {
    let mut out = String::new();
    match verb {
        None | Some("help") => {
            out.push_str(
                "Usage xl [-vfNtT] <subcommand> [args]\n\nxl full list of subcommands:\n\n",
            );
            for c in &CMD_TABLE {
                let _ = write!(out, " {:<19} ", c.name);
                if c.name.len() > 19 {
                    let _ = write!(out, "\n {:<19} ", "");
                }
                let _ = writeln!(out, "{}", c.desc);
            }
        }
        Some(v) => match lookup(v) {
            Some(c) => {
                let _ = write!(
                    out,
                    "Usage: xl [-v{}{}] {} {}\n\n{}.\n\n",
                    if c.modifies { "f" } else { "" },
                    if c.can_dryrun { "N" } else { "" },
                    c.name,
                    c.usage,
                    c.desc
                );
                if let Some(opts) = c.options {
                    let _ = writeln!(out, "Options:\n\n{opts}");
                }
            }
            None => {
                let _ = writeln!(out, "command \"{v}\" not implemented");
            }
        },
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_exact_and_prefix() {
        assert_eq!(lookup("list").unwrap().name, "list");
        assert_eq!(lookup("li").unwrap().name, "list");
        assert_eq!(lookup("vcpu").unwrap().name, "vcpu-list");
        assert_eq!(lookup("dom"), None); // domid or domname
        assert_eq!(lookup("d"), None);
        assert_eq!(lookup("unp").unwrap().name, "unpause");
        assert_eq!(lookup("lock").unwrap().name, "lockstep");
        assert_eq!(lookup(""), None);
        assert_eq!(lookup("listx"), None);
    }

    #[test]
    fn golden_help() {
        let expected = "\
Usage xl [-vfNtT] <subcommand> [args]

xl full list of subcommands:

 create              Create a domain from config file <filename>
 list                List information about all/some domains
 destroy             Terminate a domain immediately
 shutdown            Issue a shutdown signal to a domain
 reboot              Issue a reboot signal to a domain
 pause               Pause execution of a domain
 unpause             Unpause a paused domain
 console             Attach to domain's console
 vcpu-list           List the VCPUs for all/some domains
 info                Get information about Xen host
 domid               Convert a domain name to domain id
 domname             Convert a domain id to domain name
 dmesg               Read and/or clear dmesg buffer
 uptime              Print uptime for all/some domains
 lockstep            Show or control DualVisor's dual-core lockstep
";
        assert_eq!(help(None), expected);
        assert_eq!(help(Some("help")), expected);
    }

    #[test]
    fn golden_verb_help() {
        assert_eq!(
            help(Some("dmesg")),
            "Usage: xl [-v] dmesg [-c]\n\nRead and/or clear dmesg buffer.\n\n\
             Options:\n\n  -c                        Clear dmesg buffer as well as printing it\n"
        );
        assert_eq!(
            help(Some("pause")),
            "Usage: xl [-vN] pause <Domain>\n\nPause execution of a domain.\n\n"
        );
        assert!(help(Some("create"))
            .starts_with("Usage: xl [-vfN] create <ConfigFile> [options] [vars]\n"));
        assert_eq!(
            help(Some("frobnicate")),
            "command \"frobnicate\" not implemented\n"
        );
    }
}
