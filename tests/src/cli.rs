//! Command-line options of the `qemu-tests` binary.

use std::path::PathBuf;

/// The most QEMU processes run at once: the host has two cores.
pub const MAX_JOBS: usize = 2;

/// Usage text.
pub const USAGE: &str = "\
usage: qemu-tests [--filter S] [--list] [--jobs N] [--root DIR]
  --filter S   run only scenarios whose name contains S; selftest-<name> scenarios are
               discovered by running selftest-list, so they need a filter that selects
               selftest-list or starts with 'selftest-'
  --list       print the scenario names and exit
  --jobs N     run at most N QEMUs at once (1 or 2, default 2)
  --root DIR   repository root holding build/ (default: this workspace)";

/// Parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Substring a scenario name must contain.
    pub filter: Option<String>,
    /// List instead of running.
    pub list: bool,
    /// Concurrent QEMUs.
    pub jobs: usize,
    /// Repository root.
    pub root: PathBuf,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run (or list) with these options.
    Run(Options),
    /// Print the usage text.
    Help,
}

/// Parses the arguments after the program name; `default_root` applies without `--root`.
pub fn parse_args<I: IntoIterator<Item = String>>(
    args: I,
    default_root: PathBuf,
) -> Result<Invocation, String> {
    let mut o = Options {
        filter: None,
        list: false,
        jobs: MAX_JOBS,
        root: default_root,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--filter" => o.filter = Some(value("--filter")?),
            "--list" => o.list = true,
            "--jobs" => {
                let v = value("--jobs")?;
                o.jobs = match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_JOBS).contains(&n) => n,
                    _ => return Err(format!("--jobs must be 1..={MAX_JOBS}, got {v:?}")),
                };
            }
            "--root" => o.root = PathBuf::from(value("--root")?),
            "-h" | "--help" => return Ok(Invocation::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Invocation::Run(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, String> {
        parse_args(args.iter().map(|s| s.to_string()), PathBuf::from("/r"))
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse(&[]),
            Ok(Invocation::Run(Options {
                filter: None,
                list: false,
                jobs: 2,
                root: "/r".into()
            }))
        );
    }

    #[test]
    fn all_options() {
        let got = parse(&["--filter", "smp", "--list", "--jobs", "1", "--root", "/x"]);
        assert_eq!(
            got,
            Ok(Invocation::Run(Options {
                filter: Some("smp".into()),
                list: true,
                jobs: 1,
                root: "/x".into()
            }))
        );
        assert_eq!(parse(&["--help"]), Ok(Invocation::Help));
    }

    #[test]
    fn errors_are_explained() {
        assert_eq!(parse(&["--filter"]), Err("--filter needs a value".into()));
        assert!(parse(&["--jobs", "3"]).unwrap_err().contains("1..=2"));
        assert!(parse(&["--jobs", "x"]).is_err());
        assert_eq!(
            parse(&["--bogus"]),
            Err("unknown argument \"--bogus\"".into())
        );
    }
}
