//! The dom0 serial shell: line editing of raw console input ([`LineEditor`]) and the
//! parsing of a finished line into a command ([`parse_line`]). The dom0 kernel feeds bytes
//! from `CONSOLEIO_read`, writes back the echo, and runs what [`parse_line`] returns.

use crate::cmd::split_words;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The prompt.
pub const PROMPT: &str = "dom0# ";
/// Longest line accepted; further characters are dropped (with a bell).
pub const MAX_LINE: usize = 1024;

/// What one input byte did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edit {
    /// Bytes to echo to the terminal.
    pub echo: Vec<u8>,
    /// A finished line (Enter), or an abandoned one (Ctrl-C: `Some("")`).
    pub line: Option<String>,
}

/// Line input with echo, backspace/DEL, Ctrl-U (kill line) and Ctrl-C (abandon line).
/// CR, LF and CR LF each end one line.
#[derive(Clone, Debug, Default)]
pub struct LineEditor {
    buf: String,
    after_cr: bool,
}

impl LineEditor {
    /// An empty editor.
    pub fn new() -> LineEditor {
        LineEditor::default()
    }

    /// The line typed so far.
    pub fn pending(&self) -> &str {
        &self.buf
    }

    /// Takes one input byte.
    pub fn feed(&mut self, byte: u8) -> Edit {
        let mut e = Edit::default();
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match byte {
            b'\n' if after_cr => {}
            b'\r' | b'\n' => {
                self.after_cr = byte == b'\r';
                e.echo.extend_from_slice(b"\r\n");
                e.line = Some(core::mem::take(&mut self.buf));
            }
            0x08 | 0x7f if self.buf.pop().is_some() => {
                e.echo.extend_from_slice(b"\x08 \x08");
            }
            0x15 => {
                for _ in 0..self.buf.len() {
                    e.echo.extend_from_slice(b"\x08 \x08");
                }
                self.buf.clear();
            }
            0x03 => {
                e.echo.extend_from_slice(b"^C\r\n");
                self.buf.clear();
                e.line = Some(String::new());
            }
            b'\t' | 0x20..=0x7e => {
                if self.buf.len() < MAX_LINE {
                    let c = if byte == b'\t' { b' ' } else { byte };
                    self.buf.push(c as char);
                    e.echo.push(c);
                } else {
                    e.echo.push(0x07);
                }
            }
            _ => {}
        }
        e
    }
}

/// A shell command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellCmd {
    /// Nothing typed.
    Empty,
    /// `help`.
    Help,
    /// `ls [DIR...]` (the root when empty).
    Ls(Vec<String>),
    /// `cat FILE...`.
    Cat(Vec<String>),
    /// `xl WORDS...`.
    Xl(Vec<String>),
    /// A line that could not be run: the message to print.
    Error(String),
}

/// The `help` text.
pub const HELP: &str = "\
DualVisor dom0 shell. Commands:
  help              this text
  ls [DIR...]       list a directory of the initrd (default /)
  cat FILE...       print files of the initrd
  xl SUBCOMMAND     the Xen toolstack (`xl help` lists its commands)
Keys: Backspace deletes, Ctrl-U clears the line, Ctrl-C abandons it;
Ctrl-] leaves `xl console`; Ctrl-A three times switches input to the hypervisor.
";

/// Parses one line.
pub fn parse_line(line: &str) -> ShellCmd {
    let words = match split_words(line) {
        Ok(w) => w,
        Err(e) => return ShellCmd::Error(format!("dom0: syntax error: {e}")),
    };
    let Some((first, rest)) = words.split_first() else {
        return ShellCmd::Empty;
    };
    let rest = rest.to_vec();
    match first.as_str() {
        "help" | "?" => ShellCmd::Help,
        "ls" => ShellCmd::Ls(rest),
        "cat" if rest.is_empty() => ShellCmd::Error(String::from("cat: missing file operand")),
        "cat" => ShellCmd::Cat(rest),
        "xl" => ShellCmd::Xl(rest),
        other => ShellCmd::Error(format!(
            "dom0: {other}: command not found (type 'help' for the commands)"
        )),
    }
}

/// The commands dom0's command line asks to run at boot: everything after the first
/// `run=` word, split at `;` (e.g. `run=xl list;xl info`), empty parts skipped. Commas cannot
/// appear in a QEMU `-initrd` argument, so `;` separates.
pub fn boot_commands(cmdline: &str) -> Vec<String> {
    let start = if cmdline.starts_with("run=") {
        Some(0)
    } else {
        cmdline.find(" run=").map(|i| i + 1)
    };
    match start {
        None => Vec::new(),
        Some(i) => cmdline[i + 4..]
            .split(';')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect(),
    }
}

/// Converts `\n` to `\r\n` for the serial terminal (a `\r\n` already there stays as is).
pub fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 16);
    let mut prev = 0u8;
    for &b in text {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(ed: &mut LineEditor, s: &[u8]) -> (Vec<u8>, Vec<String>) {
        let mut echo = Vec::new();
        let mut lines = Vec::new();
        for &b in s {
            let e = ed.feed(b);
            echo.extend(e.echo);
            lines.extend(e.line);
        }
        (echo, lines)
    }

    #[test]
    fn editing() {
        let mut ed = LineEditor::new();
        let (echo, lines) = typed(&mut ed, b"xl lisx\x7ft\r\n");
        assert_eq!(lines, ["xl list"]);
        assert_eq!(echo, b"xl lisx\x08 \x08t\r\n");
        let (_, lines) = typed(&mut ed, b"a\rb\nc\r\r\n");
        assert_eq!(lines, ["a", "b", "c", ""]);
        let (echo, lines) = typed(&mut ed, b"\x7f\x08abc\x15d\x03");
        assert_eq!(lines, [""]);
        assert_eq!(echo, b"abc\x08 \x08\x08 \x08\x08 \x08d^C\r\n");
        let (echo, _) = typed(&mut ed, b"\x1b\x01\x1d");
        assert!(echo.is_empty());
        assert_eq!(ed.pending(), "");
    }

    #[test]
    fn long_lines_are_capped() {
        let mut ed = LineEditor::new();
        let (_, _) = typed(&mut ed, &[b'a'; MAX_LINE + 5]);
        assert_eq!(ed.pending().len(), MAX_LINE);
        assert_eq!(ed.feed(b'b').echo, [7]);
    }

    #[test]
    fn commands() {
        assert_eq!(parse_line("  "), ShellCmd::Empty);
        assert_eq!(parse_line("help"), ShellCmd::Help);
        assert_eq!(parse_line("ls"), ShellCmd::Ls(Vec::new()));
        assert_eq!(
            parse_line("ls /etc/xen"),
            ShellCmd::Ls(alloc::vec!["/etc/xen".into()])
        );
        assert_eq!(
            parse_line("cat a b"),
            ShellCmd::Cat(alloc::vec!["a".into(), "b".into()])
        );
        assert_eq!(
            parse_line("cat"),
            ShellCmd::Error("cat: missing file operand".into())
        );
        assert_eq!(
            parse_line("xl list 'x y'"),
            ShellCmd::Xl(alloc::vec!["list".into(), "x y".into()])
        );
        assert_eq!(
            parse_line("frob 1"),
            ShellCmd::Error("dom0: frob: command not found (type 'help' for the commands)".into())
        );
        assert!(
            matches!(parse_line("xl \"oops"), ShellCmd::Error(m) if m.contains("unterminated"))
        );
    }

    #[test]
    fn commands_from_the_command_line() {
        assert!(boot_commands("").is_empty());
        assert!(boot_commands("quiet rerun=x").is_empty());
        assert_eq!(boot_commands("run=xl list"), ["xl list"]);
        assert_eq!(
            boot_commands("loglevel=3 run=xl list; ls /etc ;;xl info"),
            ["xl list", "ls /etc", "xl info"]
        );
    }

    #[test]
    fn crlf_conversion() {
        assert_eq!(crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
    }
}
