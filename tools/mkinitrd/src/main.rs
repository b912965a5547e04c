//! `mkinitrd`: writes dom0's initrd, a cpio "newc" archive, from a directory tree plus
//! `name=path` extra files.
//!
//! usage: `mkinitrd OUT.cpio [DIR] [ARCHIVE/NAME=HOST/PATH ...]`

mod newc;

use std::path::PathBuf;
use std::process::ExitCode;

/// Usage text.
const USAGE: &str = "usage: mkinitrd OUT.cpio [DIR] [ARCHIVE_NAME=HOST_PATH ...]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(n) => {
            eprintln!("mkinitrd: {} ({n} entries)", args[0]);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mkinitrd: {e}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the archive the arguments describe and writes it; returns the entry count.
fn run(args: &[String]) -> Result<usize, String> {
    let (out, rest) = args.split_first().ok_or("missing output file")?;
    let mut tree = newc::Tree::default();
    for a in rest {
        match a.split_once('=') {
            Some((name, path)) => {
                let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
                tree.add_file(name, data)?;
            }
            None => tree.add_dir_tree(&PathBuf::from(a))?,
        }
    }
    let bytes = tree.archive();
    std::fs::write(out, &bytes).map_err(|e| format!("{out}: {e}"))?;
    Ok(tree.len())
}
