//! The xl.cfg grammar of Xen's libxlu (`libxlu_cfg_l.l` / `libxlu_cfg_y.y`): tokens,
//! statements and the raw settings they store, before any key is given a meaning.
//!
//! Grammar (as libxlu's bison file): a file is statements, each `IDENT = value` or
//! `IDENT += value` ended by a newline or `;` (the last may end at end of file), or an empty
//! statement. A value is an atom (a quoted string or a number, both kept as text) or a list
//! `[ atom, atom, ... ]` of atoms, where newlines are allowed anywhere inside the brackets
//! and a trailing comma is accepted. `#` starts a comment to the end of the line.
//! Identifiers are `[a-z][_0-9a-z]*`; numbers are `[0-9][0-9a-fx]*` (read later with C's
//! `strtol(.., 0)`). A later assignment of a key replaces an earlier one; `+=` appends to
//! the earlier string or list.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// A syntax error: the line it is on and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line number.
    pub line: u32,
    /// What is wrong, e.g. `expected '=' after 'memory'`.
    pub message: String,
}

/// A value as written: one atom or a list of atoms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A quoted string (unescaped) or a number (verbatim).
    Atom(String),
    /// A bracketed list of atoms.
    List(Vec<String>),
}

impl Value {
    /// The atom's text, if this is not a list.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Value::Atom(s) => Some(s),
            Value::List(_) => None,
        }
    }
}

/// One stored `key = value` (after `+=` concatenation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The key.
    pub name: String,
    /// The value.
    pub value: Value,
    /// Line of the assignment.
    pub line: u32,
    /// Whether it was written with `+=`.
    pub appended: bool,
}

/// The settings of a file, in the order written (later ones win).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Every assignment.
    pub items: Vec<Setting>,
}

impl Settings {
    /// The effective (last) setting of `name`.
    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.items.iter().rev().find(|s| s.name == name)
    }

    fn store(
        &mut self,
        name: String,
        value: Value,
        line: u32,
        appended: bool,
    ) -> Result<(), SyntaxError> {
        let value = match (appended, self.get(&name).map(|s| &s.value)) {
            (true, Some(Value::Atom(prev))) => match value {
                Value::Atom(more) => Value::Atom(format!("{prev}{more}")),
                Value::List(_) => return Err(mismatch(line)),
            },
            (true, Some(Value::List(prev))) => match value {
                Value::List(more) => {
                    let mut all = prev.clone();
                    all.extend(more);
                    Value::List(all)
                }
                Value::Atom(_) => return Err(mismatch(line)),
            },
            _ => value,
        };
        self.items.push(Setting {
            name,
            value,
            line,
            appended,
        });
        Ok(())
    }
}

fn mismatch(line: u32) -> SyntaxError {
    SyntaxError {
        line,
        message: "can't add [list] to \"string\" or vice versa".to_string(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Atom(String),
    Newline,
    Comma,
    Open,
    Close,
    Assign,
    Append,
    Semi,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Atom(s) => format!("value '{s}'"),
            Tok::Newline => "end of line".to_string(),
            Tok::Comma => "','".to_string(),
            Tok::Open => "'['".to_string(),
            Tok::Close => "']'".to_string(),
            Tok::Assign => "'='".to_string(),
            Tok::Append => "'+='".to_string(),
            Tok::Semi => "';'".to_string(),
            Tok::End => "end of file".to_string(),
        }
    }
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
}

impl<'a> Lexer<'a> {
    fn err(&self, message: String) -> SyntaxError {
        SyntaxError {
            line: self.line,
            message,
        }
    }

    /// The next token and the line it starts on.
    fn next(&mut self) -> Result<(Tok, u32), SyntaxError> {
        while let Some(&c) = self.src.get(self.pos) {
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    while self.src.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        let line = self.line;
        let Some(&c) = self.src.get(self.pos) else {
            return Ok((Tok::End, line));
        };
        let tok = match c {
            b'\n' => {
                self.pos += 1;
                self.line += 1;
                Tok::Newline
            }
            b',' => self.single(Tok::Comma),
            b'[' => self.single(Tok::Open),
            b']' => self.single(Tok::Close),
            b'=' => self.single(Tok::Assign),
            b';' => self.single(Tok::Semi),
            b'+' if self.src.get(self.pos + 1) == Some(&b'=') => {
                self.pos += 2;
                Tok::Append
            }
            b'a'..=b'z' => Tok::Ident(self.take(|c| matches!(c, b'_' | b'0'..=b'9' | b'a'..=b'z'))),
            b'0'..=b'9' => Tok::Atom(self.take(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f' | b'x'))),
            b'\'' | b'"' => Tok::Atom(self.string(c)?),
            _ => return Err(self.unexpected()),
        };
        Ok((tok, line))
    }

    fn single(&mut self, tok: Tok) -> Tok {
        self.pos += 1;
        tok
    }

    fn take(&mut self, ok: impl Fn(u8) -> bool) -> String {
        let start = self.pos;
        while self.src.get(self.pos).is_some_and(|&c| ok(c)) {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.src[start..self.pos]).into_owned()
    }

    fn unexpected(&self) -> SyntaxError {
        let rest = &self.src[self.pos..];
        let end = rest
            .iter()
            .position(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(rest.len());
        let word = String::from_utf8_lossy(&rest[..end]);
        let first = word.chars().next().unwrap_or('?');
        let mut message = format!(
            "unexpected character '{}' in '{word}'",
            first.escape_debug()
        );
        if matches!(first, '+' | '-' | '.' | '(' | ')' | ':') {
            message.push_str(" (this looks like Python, which xl.cfg no longer supports)");
        } else if first.is_ascii_uppercase() {
            message.push_str(" (keys are lower case)");
        }
        self.err(message)
    }

    /// A quoted string, unescaped like libxlu's `xlu__cfgl_dequote`. Strings end on the
    /// same line.
    fn string(&mut self, quote: u8) -> Result<String, SyntaxError> {
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.src.get(self.pos) else {
                return Err(self.err("unterminated string".to_string()));
            };
            self.pos += 1;
            match c {
                b'\n' => {
                    return Err(self.err(
                        "unterminated string (strings end on the line they start)".to_string(),
                    ));
                }
                c if c == quote => break,
                b'\\' => {
                    let Some(&e) = self.src.get(self.pos) else {
                        return Err(self.err("unterminated string".to_string()));
                    };
                    self.pos += 1;
                    let byte = match e {
                        b'"' | b'\'' | b'\\' => e,
                        b'a' => 0x07,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'v' => 0x0b,
                        b'x' => self.numeric_escape(16, 2, 2, "hex")?,
                        b'0'..=b'7' => {
                            self.pos -= 1;
                            self.numeric_escape(8, 1, 3, "octal")?
                        }
                        b'\n' => return Err(self.err("unterminated string".to_string())),
                        _ => {
                            return Err(self.err(format!(
                                "invalid character '{}' after backslash in quoted string",
                                char::from(e).escape_debug()
                            )))
                        }
                    };
                    out.push(byte);
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not valid UTF-8".to_string()))
    }

    fn numeric_escape(
        &mut self,
        base: u32,
        min: usize,
        max: usize,
        what: &str,
    ) -> Result<u8, SyntaxError> {
        let mut value: u32 = 0;
        let mut n = 0;
        while n < max {
            let Some(d) = self
                .src
                .get(self.pos)
                .and_then(|&c| char::from(c).to_digit(base))
            else {
                break;
            };
            value = value * base + d;
            self.pos += 1;
            n += 1;
        }
        if n < min || value > 0xff {
            return Err(self.err(format!(
                "invalid digit after backslash in {what} numerical character escape in quoted string"
            )));
        }
        Ok(value as u8)
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    line: u32,
}

impl<'a> Parser<'a> {
    fn bump(&mut self) -> Result<(), SyntaxError> {
        let (tok, line) = self.lex.next()?;
        self.tok = tok;
        self.line = line;
        Ok(())
    }

    fn err(&self, message: String) -> SyntaxError {
        SyntaxError {
            line: self.line,
            message,
        }
    }

    fn skip_newlines(&mut self) -> Result<(), SyntaxError> {
        while self.tok == Tok::Newline {
            self.bump()?;
        }
        Ok(())
    }

    fn file(&mut self, out: &mut Settings) -> Result<(), SyntaxError> {
        loop {
            match core::mem::replace(&mut self.tok, Tok::End) {
                Tok::End => return Ok(()),
                Tok::Newline | Tok::Semi => self.bump()?,
                Tok::Ident(name) => {
                    let line = self.line;
                    self.bump()?;
                    let appended = match self.tok {
                        Tok::Assign => false,
                        Tok::Append => true,
                        _ => {
                            return Err(self.err(format!(
                                "expected '=' after '{name}', found {}",
                                self.tok.describe()
                            )))
                        }
                    };
                    self.bump()?;
                    let value = self.value(&name)?;
                    match self.tok {
                        Tok::Newline | Tok::Semi => self.bump()?,
                        Tok::End => {}
                        _ => {
                            return Err(self.err(format!(
                                "expected end of line after the value of '{name}', found {}",
                                self.tok.describe()
                            )))
                        }
                    }
                    out.store(name, value, line, appended)?;
                }
                other => {
                    self.tok = other;
                    return Err(self.err(format!("expected a key, found {}", self.tok.describe())));
                }
            }
        }
    }

    fn value(&mut self, name: &str) -> Result<Value, SyntaxError> {
        match core::mem::replace(&mut self.tok, Tok::End) {
            Tok::Atom(a) => {
                self.bump()?;
                Ok(Value::Atom(a))
            }
            Tok::Open => {
                self.bump()?;
                self.skip_newlines()?;
                let mut items = Vec::new();
                loop {
                    match core::mem::replace(&mut self.tok, Tok::End) {
                        Tok::Close => break,
                        Tok::Atom(a) => {
                            items.push(a);
                            self.bump()?;
                            self.skip_newlines()?;
                            match self.tok {
                                Tok::Comma => {
                                    self.bump()?;
                                    self.skip_newlines()?;
                                }
                                Tok::Close => {}
                                _ => {
                                    return Err(self.err(format!(
                                        "expected ',' or ']' in the list of '{name}', found {}",
                                        self.tok.describe()
                                    )))
                                }
                            }
                        }
                        other => {
                            self.tok = other;
                            return Err(self.err(format!(
                                "expected a string or number in the list of '{name}', found {}",
                                self.tok.describe()
                            )));
                        }
                    }
                }
                self.bump()?;
                Ok(Value::List(items))
            }
            other => {
                self.tok = other;
                let hint = match &self.tok {
                    Tok::Ident(w) => format!(" (quote it: '{w}')"),
                    _ => String::new(),
                };
                Err(self.err(format!(
                    "expected a value after '{name} =', found {}{hint}",
                    self.tok.describe()
                )))
            }
        }
    }
}

/// Parses xl.cfg text into its settings.
pub fn parse(text: &str) -> Result<Settings, SyntaxError> {
    let mut p = Parser {
        lex: Lexer {
            src: text.as_bytes(),
            pos: 0,
            line: 1,
        },
        tok: Tok::End,
        line: 1,
    };
    p.bump()?;
    let mut out = Settings::default();
    p.file(&mut out)?;
    Ok(out)
}

/// Reads a number as C's `strtol(text, &end, 0)` with the whole text consumed: optional
/// leading blanks and sign, `0x` hexadecimal, leading-`0` octal, else decimal.
pub fn parse_long(text: &str) -> Option<i64> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, h)
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn atom(s: &str) -> Value {
        Value::Atom(s.to_string())
    }

    #[test]
    fn assignments_strings_numbers_lists() {
        let s = parse(
            "# demo\nname = \"demo1\"\nmemory = 64\nextra='a \\'b\\''\n\
             disk = [ 'x', \"y\",\n  'z', ]\nempty=[]\n",
        )
        .unwrap();
        assert_eq!(s.get("name").unwrap().value, atom("demo1"));
        assert_eq!(s.get("name").unwrap().line, 2);
        assert_eq!(s.get("memory").unwrap().value, atom("64"));
        assert_eq!(s.get("extra").unwrap().value, atom("a 'b'"));
        assert_eq!(
            s.get("disk").unwrap().value,
            Value::List(vec!["x".into(), "y".into(), "z".into()])
        );
        assert_eq!(s.get("disk").unwrap().line, 5);
        assert_eq!(s.get("empty").unwrap().value, Value::List(vec![]));
    }

    #[test]
    fn semicolons_comments_and_last_line_without_newline() {
        let s = parse("a = 1; b = 2;\nc = 'x' # trailing comment\n;;\nd = 3").unwrap();
        assert_eq!(s.get("a").unwrap().value, atom("1"));
        assert_eq!(s.get("b").unwrap().value, atom("2"));
        assert_eq!(s.get("c").unwrap().value, atom("x"));
        assert_eq!(s.get("d").unwrap().value, atom("3"));
        assert_eq!(s.get("d").unwrap().line, 4);
        assert!(parse("# only a comment, no newline")
            .unwrap()
            .items
            .is_empty());
    }

    #[test]
    fn later_wins_and_append() {
        let s = parse("m = 1\nm = 2\nx = 'a'\nx += 'b'\nl = ['1']\nl += ['2', '3']\nn += 'new'\n")
            .unwrap();
        assert_eq!(s.get("m").unwrap().value, atom("2"));
        assert_eq!(s.get("x").unwrap().value, atom("ab"));
        assert!(s.get("x").unwrap().appended);
        assert_eq!(
            s.get("l").unwrap().value,
            Value::List(vec!["1".into(), "2".into(), "3".into()])
        );
        assert_eq!(s.get("n").unwrap().value, atom("new"));
        let e = parse("x = 'a'\nx += ['b']\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("can't add"), "{e:?}");
    }

    #[test]
    fn escapes() {
        let s = parse(r#"a = "t\tn\nq\"\\ \x41\101 \a""#).unwrap();
        assert_eq!(s.get("a").unwrap().value, atom("t\tn\nq\"\\ AA \x07"));
        assert!(parse(r#"a = "\q""#)
            .unwrap_err()
            .message
            .contains("after backslash"));
        assert!(parse(r#"a = "\xZ1""#).unwrap_err().message.contains("hex"));
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases: [(&str, u32, &str); 10] = [
            (
                "name = 'a'\n\nmemory 64\n",
                3,
                "expected '=' after 'memory', found value '64'",
            ),
            (
                "memory =\n",
                1,
                "expected a value after 'memory =', found end of line",
            ),
            (
                "type = pv\n",
                1,
                "expected a value after 'type =', found 'pv' (quote it: 'pv')",
            ),
            (
                "a = 1 2\n",
                1,
                "expected end of line after the value of 'a', found value '2'",
            ),
            (
                "a = [ '1' '2' ]\n",
                1,
                "expected ',' or ']' in the list of 'a', found value '2'",
            ),
            (
                "a = [ , ]\n",
                1,
                "expected a string or number in the list of 'a', found ','",
            ),
            (
                "a = [ '1'\n",
                2,
                "expected ',' or ']' in the list of 'a', found end of file",
            ),
            ("= 3\n", 1, "expected a key, found '='"),
            ("x = 'abc\n", 1, "unterminated string"),
            (
                "\n\nMemory = 3\n",
                3,
                "unexpected character 'M' in 'Memory' (keys are lower case)",
            ),
        ];
        for (text, line, msg) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.message.starts_with(msg), "{text:?}: {e:?}");
        }
        let e = parse("memory = 512 + 64\n").unwrap_err();
        assert!(e.message.contains("Python"), "{e:?}");
    }

    #[test]
    fn numbers_like_strtol() {
        assert_eq!(parse_long("512"), Some(512));
        assert_eq!(parse_long("0x200"), Some(512));
        assert_eq!(parse_long("010"), Some(8));
        assert_eq!(parse_long("0"), Some(0));
        assert_eq!(parse_long(" -3"), Some(-3));
        assert_eq!(parse_long("+7"), Some(7));
        assert_eq!(parse_long("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_long("-9223372036854775808"), Some(i64::MIN));
        for bad in [
            "",
            "0x",
            "12a",
            "09",
            "1e5",
            "9223372036854775808",
            "- 1",
            "512M",
        ] {
            assert_eq!(parse_long(bad), None, "{bad}");
        }
    }

    /// A small deterministic generator for the fuzz tests (no extra crates).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        let alphabet = b"ab_z09x='\"[],;#+\n \t\\-.()M\xff";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = parse(&text) {
                assert!(
                    e.line >= 1 && e.line as usize <= text.lines().count() + 1,
                    "{text:?} {e:?}"
                );
                assert!(!e.message.is_empty());
            }
            let _ = parse_long(&text);
        }
    }

    #[test]
    fn mutated_valid_files_never_panic() {
        let good =
            "name = 'demo1'\nmemory = 64\nvcpus = 2\ndisk = [ 'a', 'b' ]\nextra = \"x\\ty\"\n";
        let mut rng = Rng(42);
        for _ in 0..20_000 {
            let mut b = good.as_bytes().to_vec();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() % b.len() as u64) as usize;
                match rng.next() % 3 {
                    0 => b[i] = (rng.next() & 0x7f) as u8,
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, (rng.next() & 0x7f) as u8),
                }
            }
            let _ = parse(&String::from_utf8_lossy(&b));
        }
    }
}
