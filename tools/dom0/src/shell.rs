//! The serial shell: the event loop (console input, domU consoles, domain deaths) and the
//! built-in commands `help`, `ls` and `cat`; `xl` is in [`crate::xl`].

use crate::domains::Registry;
use crate::events::Events;
use crate::{out, xl};
use alloc::string::String;
use alloc::vec::Vec;
use tools::console_log::split_detach;
use tools::cpio::Archive;
use tools::shell::{boot_commands, parse_line, LineEditor, ShellCmd, HELP, PROMPT};

/// Bytes read per `CONSOLEIO_read`.
const READ_CHUNK: usize = 256;

/// dom0's state.
pub struct Shell {
    /// The initrd.
    pub archive: Archive<'static>,
    /// Event channels and time.
    pub events: Events,
    /// The domUs.
    pub reg: Registry,
    /// The domain whose console the terminal is attached to.
    pub attached: Option<u16>,
    editor: LineEditor,
    boot: Vec<String>,
}

impl Shell {
    /// A shell over `archive`; `cmdline` is dom0's command line, whose `run=` commands
    /// ([`boot_commands`]) run at start.
    pub fn new(archive: Archive<'static>, events: Events, cmdline: &str) -> Shell {
        if !cmdline.is_empty() {
            out::say(format_args!("dom0: command line '{cmdline}'\n"));
        }
        Shell {
            archive,
            events,
            reg: Registry::default(),
            attached: None,
            editor: LineEditor::new(),
            boot: boot_commands(cmdline),
        }
    }

    /// Runs the boot commands, then the interactive shell, for ever.
    pub fn run(&mut self) -> ! {
        for c in core::mem::take(&mut self.boot) {
            out::say(format_args!("{PROMPT}{c}\n"));
            self.execute(&c);
            while self.attached.is_some() {
                self.poll_once(true);
            }
        }
        out::text("dom0: shell ready; type 'help' for the commands\n");
        out::text(PROMPT);
        loop {
            self.poll_once(true);
        }
    }

    /// Waits for and handles one round of events; `input` also reads the console.
    pub fn poll_once(&mut self, input: bool) {
        if self.events.wait(&self.reg.console_ports()) {
            xl::domain_exceptions(self);
        }
        let live = self.reg.pump_consoles(self.attached);
        if !live.is_empty() {
            out::bytes(&live);
        }
        if input {
            self.read_input();
        }
    }

    fn read_input(&mut self) {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let n = match guest_rt::console::read(&mut buf) {
                Ok(n) if n > 0 => (n as usize).min(READ_CHUNK),
                _ => return,
            };
            let mut rest: &[u8] = &buf[..n];
            if let Some(domid) = self.attached {
                let (to_guest, detach) = split_detach(rest);
                if !to_guest.is_empty() {
                    self.reg.console_input(domid, to_guest);
                }
                if !detach {
                    continue;
                }
                self.attached = None;
                out::text("\n");
                out::text(PROMPT);
                rest = &[];
            }
            for &b in rest {
                let edit = self.editor.feed(b);
                let echo: Vec<u8> = edit.echo.iter().copied().filter(|&c| c != b'\r').collect();
                out::bytes(&echo);
                if let Some(line) = edit.line {
                    self.execute(&line);
                    if self.attached.is_some() {
                        break;
                    }
                    out::text(PROMPT);
                }
            }
        }
    }

    /// Runs one command line.
    pub fn execute(&mut self, line: &str) {
        match parse_line(line) {
            ShellCmd::Empty => {}
            ShellCmd::Help => out::text(HELP),
            ShellCmd::Ls(dirs) => self.ls(&dirs),
            ShellCmd::Cat(files) => self.cat(&files),
            ShellCmd::Xl(words) => xl::run(self, &words),
            ShellCmd::Error(msg) => out::say(format_args!("{msg}\n")),
        }
    }

    fn ls(&self, dirs: &[String]) {
        let root = [String::from("/")];
        let dirs = if dirs.is_empty() { &root[..] } else { dirs };
        for (i, d) in dirs.iter().enumerate() {
            if dirs.len() > 1 {
                out::say(format_args!("{}{d}:\n", if i > 0 { "\n" } else { "" }));
            }
            match self.archive.list(d) {
                Ok(names) => {
                    for n in names {
                        out::say(format_args!("{n}\n"));
                    }
                }
                Err(e) if self.archive.read(d).is_ok() => {
                    let _ = e;
                    out::say(format_args!("{d}\n"));
                }
                Err(e) => out::say(format_args!("ls: {e}\n")),
            }
        }
    }

    fn cat(&self, files: &[String]) {
        for f in files {
            match self.archive.read(f) {
                Ok(data) => out::bytes(data),
                Err(e) => out::say(format_args!("cat: {e}\n")),
            }
        }
    }
}
