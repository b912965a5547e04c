//! A scenario: one named QEMU run with its expectation, and the files it needs.

use std::path::{Path, PathBuf};

use crate::monitor::Expectation;
use crate::qemu::QemuCommand;

/// One QEMU run to perform.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name, used for `--filter`, the report and the log file name.
    pub name: String,
    /// What to run (the serial destination is set by the runner).
    pub qemu: QemuCommand,
    /// What it must show.
    pub expect: Expectation,
    /// Files that must exist before QEMU starts, with the make target that produces them.
    pub needs: Vec<(PathBuf, &'static str)>,
    /// Files this scenario writes before QEMU starts (path, contents).
    pub inputs: Vec<(PathBuf, Vec<u8>)>,
}

/// A scenario to run, or one that cannot run here and why.
#[derive(Debug, Clone)]
pub enum Planned {
    /// Run it.
    Run(Box<Scenario>),
    /// Report it as skipped.
    Skip {
        /// Scenario name.
        name: String,
        /// Why it cannot run.
        reason: String,
    },
}

impl Planned {
    /// The scenario's name.
    pub fn name(&self) -> &str {
        match self {
            Planned::Run(s) => &s.name,
            Planned::Skip { name, .. } => name,
        }
    }
}

/// Where the harness finds its inputs and puts its logs, all under the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Repository root (QEMU runs with this working directory).
    pub root: PathBuf,
    /// `build/dualvisor.elf` (from `make image`).
    pub image: PathBuf,
    /// `build/dualvisor.iso` (from `make iso`).
    pub iso: PathBuf,
    /// `build/xen/xen.elf` (from `make xen`).
    pub xen: PathBuf,
    /// `build/guests/` (from `make guests`).
    pub guests: PathBuf,
    /// `build/linux/vmlinux`, Debian's Linux 6.1 (from `make linux`).
    pub linux: PathBuf,
    /// `build/test-logs/`.
    pub logs: PathBuf,
}

impl Paths {
    /// The standard layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let build = root.join("build");
        Paths {
            image: build.join("dualvisor.elf"),
            iso: build.join("dualvisor.iso"),
            xen: build.join("xen").join("xen.elf"),
            guests: build.join("guests"),
            linux: build.join("linux").join("vmlinux"),
            logs: build.join("test-logs"),
            root,
        }
    }

    /// The serial log of scenario `name`.
    pub fn log_of(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// `path` relative to the root when it lies under it, for short messages.
    pub fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Whether `name` is selected by `filter` (a substring; no filter selects everything).
pub fn selected(name: &str, filter: Option<&str>) -> bool {
    filter.is_none_or(|f| name.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_layout() {
        let p = Paths::new("/repo");
        assert_eq!(p.image, PathBuf::from("/repo/build/dualvisor.elf"));
        assert_eq!(p.iso, PathBuf::from("/repo/build/dualvisor.iso"));
        assert_eq!(p.xen, PathBuf::from("/repo/build/xen/xen.elf"));
        assert_eq!(
            p.log_of("boot-smp1"),
            PathBuf::from("/repo/build/test-logs/boot-smp1.log")
        );
        assert_eq!(p.show(&p.image), "build/dualvisor.elf");
        assert_eq!(p.show(Path::new("/elsewhere/x")), "/elsewhere/x");
    }

    #[test]
    fn filter_is_a_substring() {
        assert!(selected("boot-smp2", None));
        assert!(selected("boot-smp2", Some("smp")));
        assert!(!selected("boot-smp2", Some("iso")));
    }
}
