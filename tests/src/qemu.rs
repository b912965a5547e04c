//! Builds QEMU command lines: the machine every scenario shares plus what it boots.

use std::fmt;
use std::path::{Path, PathBuf};

/// The QEMU binary used unless `QEMU` is set in the environment.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";

/// A boot module passed through multiboot: a file and the arguments after its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The module file.
    pub path: PathBuf,
    /// Arguments appended to the module's command line (may be empty).
    pub args: String,
}

impl Module {
    /// A module with arguments.
    pub fn new(path: impl Into<PathBuf>, args: impl Into<String>) -> Self {
        Module {
            path: path.into(),
            args: args.into(),
        }
    }
}

/// What QEMU boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// `-kernel` (multiboot1 through QEMU's loader) with `-append` and `-initrd` modules.
    Kernel {
        /// The kernel ELF.
        image: PathBuf,
        /// The kernel command line.
        append: String,
        /// Boot modules, in order.
        modules: Vec<Module>,
    },
    /// `-cdrom` with a bootable ISO (GRUB, multiboot2).
    Cdrom(PathBuf),
}

/// Where the first serial port goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    /// `-serial file:PATH`.
    File(PathBuf),
    /// `-serial stdio`.
    Stdio,
    /// An interactive console driven by a script; the runner turns it into [`Serial::Socket`].
    Script(crate::script::Script),
    /// A Unix socket QEMU listens on (and waits for before starting the machine); the
    /// client (the runner) logs what the port sends.
    Socket(PathBuf),
}

/// An error building a QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// A path is not valid UTF-8, so it cannot be put on QEMU's option syntax.
    NonUtf8Path(PathBuf),
    /// `-smp 0` or `-m 0`.
    ZeroResource(&'static str),
    /// A scripted serial port has no command line of its own (the runner gives it a socket).
    UnresolvedScript,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NonUtf8Path(p) => write!(f, "path is not UTF-8: {}", p.display()),
            CommandError::ZeroResource(what) => write!(f, "{what} must be at least 1"),
            CommandError::UnresolvedScript => write!(f, "the serial script has no socket yet"),
        }
    }
}

impl std::error::Error for CommandError {}

/// A QEMU invocation: the shared q35/EPYC machine, isa-debug-exit, no network, no display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCommand {
    /// The QEMU executable.
    pub binary: String,
    /// Number of CPUs (`-smp`).
    pub smp: u32,
    /// Memory in MiB (`-m`).
    pub memory_mib: u32,
    /// CPU model (`-cpu`).
    pub cpu: String,
    /// Accelerator (`-accel`), QEMU's default (multi-threaded TCG here) when `None`.
    pub accel: Option<String>,
    /// Whether a guest reset makes QEMU exit (status 0) instead of rebooting.
    pub no_reboot: bool,
    /// The display adapter (`-vga`), QEMU's default (a standard VGA on the PCI bus) when
    /// `None`.
    pub vga: Option<String>,
    /// Serial port destination.
    pub serial: Serial,
    /// What to boot.
    pub boot: Boot,
}

impl QemuCommand {
    /// The shared machine (`-machine q35 -cpu EPYC,-monitor,-smap -m 1024`, one CPU,
    /// `-no-reboot`) booting `boot`, serial to stdio. The binary is `$QEMU` or
    /// [`DEFAULT_QEMU`].
    pub fn new(boot: Boot) -> Self {
        QemuCommand {
            binary: std::env::var("QEMU").unwrap_or_else(|_| DEFAULT_QEMU.to_string()),
            smp: 1,
            memory_mib: 1024,
            cpu: "EPYC,-monitor,-smap".to_string(),
            accel: None,
            no_reboot: true,
            vga: None,
            serial: Serial::Stdio,
            boot,
        }
    }

    /// Boots `image` with `-kernel`, command line `append` and `modules`.
    pub fn kernel(
        image: impl Into<PathBuf>,
        append: impl Into<String>,
        modules: Vec<Module>,
    ) -> Self {
        Self::new(Boot::Kernel {
            image: image.into(),
            append: append.into(),
            modules,
        })
    }

    /// Boots the ISO at `iso` from the CD-ROM drive.
    pub fn cdrom(iso: impl Into<PathBuf>) -> Self {
        Self::new(Boot::Cdrom(iso.into()))
    }

    /// Sets the CPU count.
    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }

    /// Sets the accelerator, e.g. `tcg,thread=single`.
    pub fn accel(mut self, accel: impl Into<String>) -> Self {
        self.accel = Some(accel.into());
        self
    }

    /// Sends the serial port to `path`.
    pub fn serial_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.serial = Serial::File(path.into());
        self
    }

    /// Drives the serial port interactively with `script` (the serial log is still written).
    pub fn interactive(mut self, script: crate::script::Script) -> Self {
        self.serial = Serial::Script(script);
        self
    }

    /// Puts the serial port on Unix socket `socket` (QEMU the server, waiting for the
    /// client).
    pub fn serial_socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.serial = Serial::Socket(socket.into());
        self
    }

    /// The arguments after the binary name.
    pub fn args(&self) -> Result<Vec<String>, CommandError> {
        if self.smp == 0 {
            return Err(CommandError::ZeroResource("-smp"));
        }
        if self.memory_mib == 0 {
            return Err(CommandError::ZeroResource("-m"));
        }
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        push("-machine");
        push("q35");
        push("-cpu");
        push(&self.cpu);
        push("-smp");
        push(&self.smp.to_string());
        push("-m");
        push(&self.memory_mib.to_string());
        if let Some(accel) = &self.accel {
            push("-accel");
            push(accel);
        }
        for fixed in [
            "-nic",
            "none",
            "-display",
            "none",
            "-monitor",
            "none",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ] {
            push(fixed);
        }
        if let Some(vga) = &self.vga {
            push("-vga");
            push(vga);
        }
        if self.no_reboot {
            push("-no-reboot");
        }
        match &self.serial {
            Serial::Stdio => {
                push("-serial");
                push("stdio");
            }
            Serial::File(p) => {
                push("-serial");
                push(&format!("file:{}", utf8(p)?));
            }
            Serial::Script(_) => return Err(CommandError::UnresolvedScript),
            Serial::Socket(socket) => {
                push("-chardev");
                push(&format!(
                    "socket,id=ser0,path={},server=on,wait=on",
                    utf8(socket)?.replace(',', ",,")
                ));
                push("-serial");
                push("chardev:ser0");
            }
        }
        match &self.boot {
            Boot::Kernel {
                image,
                append,
                modules,
            } => {
                push("-kernel");
                push(utf8(image)?);
                push("-append");
                push(append);
                if !modules.is_empty() {
                    push("-initrd");
                    push(&initrd_arg(modules)?);
                }
            }
            Boot::Cdrom(iso) => {
                push("-cdrom");
                push(utf8(iso)?);
            }
        }
        Ok(a)
    }

    /// The command as one shell-quoted line, for logs and "how to reproduce" hints.
    pub fn shell_line(&self) -> Result<String, CommandError> {
        let mut line = shell_quote(&self.binary);
        for arg in self.args()? {
            line.push(' ');
            line.push_str(&shell_quote(&arg));
        }
        Ok(line)
    }
}

fn utf8(p: &Path) -> Result<&str, CommandError> {
    p.to_str()
        .ok_or_else(|| CommandError::NonUtf8Path(p.to_path_buf()))
}

/// The `-initrd` value for `modules`: `"path args,path args"`, commas inside doubled
/// (QEMU's option escape).
pub fn initrd_arg(modules: &[Module]) -> Result<String, CommandError> {
    let mut parts = Vec::with_capacity(modules.len());
    for m in modules {
        let mut one = utf8(&m.path)?.to_string();
        if !m.args.is_empty() {
            one.push(' ');
            one.push_str(&m.args);
        }
        parts.push(one.replace(',', ",,"));
    }
    Ok(parts.join(","))
}

/// Quotes `s` for a POSIX shell when it holds anything but safe characters.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(args: &[String], flag: &str) -> usize {
        args.iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing from {args:?}"))
    }

    #[test]
    fn base_flags_are_always_present() {
        let args = QemuCommand::kernel("build/dualvisor.elf", "noreboot", vec![])
            .smp(4)
            .serial_file("build/test-logs/x.log")
            .args()
            .expect("valid");
        let joined = args.join(" ");
        for needle in [
            "-machine q35",
            "-cpu EPYC,-monitor,-smap",
            "-smp 4",
            "-m 1024",
            "-nic none",
            "-display none",
            "-monitor none",
            "-device isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
            "-serial file:build/test-logs/x.log",
            "-kernel build/dualvisor.elf",
        ] {
            assert!(joined.contains(needle), "{needle} missing in {joined}");
        }
        assert_eq!(args[pos(&args, "-append") + 1], "noreboot");
        assert!(!args.contains(&"-initrd".to_string()));
        assert!(!args.contains(&"-accel".to_string()));
    }

    #[test]
    fn modules_become_one_initrd_argument() {
        let mods = vec![
            Module::new("/t/a.bin", "arg1 arg2"),
            Module::new("/t/b.bin", ""),
        ];
        let args = QemuCommand::kernel("k", "x", mods).args().expect("valid");
        assert_eq!(
            args[pos(&args, "-initrd") + 1],
            "/t/a.bin arg1 arg2,/t/b.bin"
        );
    }

    #[test]
    fn commas_in_module_text_are_escaped() {
        let arg = initrd_arg(&[Module::new("/t/a.bin", "com1=115200,8n1")]).expect("valid");
        assert_eq!(arg, "/t/a.bin com1=115200,,8n1");
    }

    #[test]
    fn cdrom_and_accel() {
        let args = QemuCommand::cdrom("build/dualvisor.iso")
            .accel("tcg,thread=single")
            .args()
            .expect("valid");
        assert_eq!(args[pos(&args, "-cdrom") + 1], "build/dualvisor.iso");
        assert_eq!(args[pos(&args, "-accel") + 1], "tcg,thread=single");
        assert_eq!(args[pos(&args, "-serial") + 1], "stdio");
        assert!(!args.contains(&"-kernel".to_string()));
    }

    #[test]
    fn zero_cpus_is_an_error() {
        let err = QemuCommand::cdrom("x.iso").smp(0).args().unwrap_err();
        assert_eq!(err, CommandError::ZeroResource("-smp"));
        assert!(err.to_string().contains("-smp"));
    }

    #[test]
    fn non_utf8_path_is_an_error() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let bad = PathBuf::from(OsStr::from_bytes(b"/t/\xff.elf"));
        let err = QemuCommand::kernel(bad, "", vec![]).args().unwrap_err();
        assert!(matches!(err, CommandError::NonUtf8Path(_)));
    }

    #[test]
    fn socket_serial_waits_for_the_client() {
        let cmd = QemuCommand::kernel("k.elf", "", vec![]).serial_socket("/t/s.sock");
        let a = cmd.args().expect("args");
        let i = pos(&a, "-chardev");
        assert_eq!(a[i + 1], "socket,id=ser0,path=/t/s.sock,server=on,wait=on");
        assert_eq!(a[pos(&a, "-serial") + 1], "chardev:ser0");
        let scripted = cmd.interactive(crate::script::Script::new().send("x"));
        assert_eq!(scripted.args(), Err(CommandError::UnresolvedScript));
    }

    #[test]
    fn shell_line_quotes_the_command_line() {
        let mut cmd = QemuCommand::kernel("k.elf", "console=com1 loglvl=all", vec![]);
        cmd.binary = "qemu-system-x86_64".into();
        let line = cmd.shell_line().expect("valid");
        assert!(line.starts_with("qemu-system-x86_64 -machine q35 "));
        assert!(line.contains("-append 'console=com1 loglvl=all'"));
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
