//! `qemu-tests`: boots DualVisor (and real Xen, as the oracle) under QEMU, scenario by
//! scenario, and prints `test NAME ... ok|FAILED` lines and a final `N passed, N failed`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tests::cli::{parse_args, Invocation, USAGE};
use tests::scenario::Paths;
use tests::schedule::{plan, run_all};

fn default_root() -> PathBuf {
    // This crate lives in <root>/tests.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1), default_root()) {
        Ok(Invocation::Run(o)) => o,
        Ok(Invocation::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("qemu-tests: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let paths = Paths::new(&opts.root);
    let filter = opts.filter.as_deref();
    let planned = plan(tests::catalogue::static_scenarios(&paths), filter);
    if opts.list {
        for s in &planned {
            println!("{}", s.name());
        }
        println!("(plus selftest-<name> for each name selftest-list prints, and the first of them as selftest-<name>-tcg-single)");
        return ExitCode::SUCCESS;
    }
    println!(
        "running {} scenarios (more once selftest-list names the self-tests), at most {} at once; serial logs in {}",
        planned.len(),
        opts.jobs,
        paths.show(&paths.logs)
    );
    let tally = run_all(planned, &paths, opts.jobs, filter, |r| {
        print!("{}", r.render());
        let _ = std::io::stdout().flush();
    });
    println!();
    println!("{}", tally.summary());
    if tally.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
