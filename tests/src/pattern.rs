//! Regex-free patterns matched against one serial log line at a time.

use std::fmt;

/// A pattern matched against a single line of serial output (without its line ending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// The line contains this text.
    Contains(String),
    /// The line starts with this text.
    StartsWith(String),
    /// The line equals this text exactly.
    Line(String),
    /// The line contains every one of these texts, in this order, without overlap.
    ContainsAll(Vec<String>),
    /// The line matches at least one of these patterns.
    Any(Vec<Pattern>),
}

impl Pattern {
    /// A [`Pattern::Contains`].
    pub fn contains(text: impl Into<String>) -> Self {
        Pattern::Contains(text.into())
    }

    /// A [`Pattern::StartsWith`].
    pub fn starts_with(text: impl Into<String>) -> Self {
        Pattern::StartsWith(text.into())
    }

    /// A [`Pattern::Line`].
    pub fn line(text: impl Into<String>) -> Self {
        Pattern::Line(text.into())
    }

    /// A [`Pattern::ContainsAll`].
    pub fn contains_all<S: Into<String>>(parts: impl IntoIterator<Item = S>) -> Self {
        Pattern::ContainsAll(parts.into_iter().map(Into::into).collect())
    }

    /// A [`Pattern::Any`].
    pub fn any(alternatives: impl IntoIterator<Item = Pattern>) -> Self {
        Pattern::Any(alternatives.into_iter().collect())
    }

    /// Whether `line` (one line, line ending already removed) matches.
    pub fn matches(&self, line: &str) -> bool {
        match self {
            Pattern::Contains(t) => line.contains(t.as_str()),
            Pattern::StartsWith(t) => line.starts_with(t.as_str()),
            Pattern::Line(t) => line == t,
            Pattern::ContainsAll(parts) => {
                let mut rest = line;
                for part in parts {
                    match rest.find(part.as_str()) {
                        Some(at) => rest = &rest[at + part.len()..],
                        None => return false,
                    }
                }
                true
            }
            Pattern::Any(alts) => alts.iter().any(|p| p.matches(line)),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Contains(t) => write!(f, "{t:?}"),
            Pattern::StartsWith(t) => write!(f, "line starting {t:?}"),
            Pattern::Line(t) => write!(f, "line {t:?}"),
            Pattern::ContainsAll(parts) => {
                write!(f, "line with ")?;
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        write!(f, " .. ")?;
                    }
                    write!(f, "{p:?}")?;
                }
                Ok(())
            }
            Pattern::Any(alts) => {
                write!(f, "one of (")?;
                for (i, p) in alts.iter().enumerate() {
                    if i > 0 {
                        write!(f, " | ")?;
                    }
                    write!(f, "{p}")?;
                }
                write!(f, ")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_and_starts_with() {
        let line = "(XEN) Brought up 4 CPUs";
        assert!(Pattern::contains("Brought up 4 CPUs").matches(line));
        assert!(!Pattern::contains("Brought up 2 CPUs").matches(line));
        assert!(Pattern::starts_with("(XEN) Brought").matches(line));
        assert!(!Pattern::starts_with("Brought").matches(line));
    }

    #[test]
    fn exact_line() {
        assert!(Pattern::line("(XEN) x").matches("(XEN) x"));
        assert!(!Pattern::line("(XEN) x").matches("(XEN) xy"));
    }

    #[test]
    fn cpu_numbers_do_not_alias() {
        let p = Pattern::contains("(XEN) CPU1: timer ticking");
        assert!(!p.matches("(XEN) CPU11: timer ticking"));
        assert!(p.matches("(XEN) CPU1: timer ticking"));
    }

    #[test]
    fn contains_all_in_order() {
        let p = Pattern::contains_all(["Module 0: ", "12 bytes at ", "cmdline 'a b'"]);
        assert!(p.matches("(XEN) Module 0: 12 bytes at 0x200000, cmdline 'a b'"));
        assert!(!p.matches("(XEN) Module 0: 13 bytes at 0x200000, cmdline 'a b'"));
        let order = Pattern::contains_all(["b", "a"]);
        assert!(!order.matches("ab"));
        assert!(order.matches("bab"));
        let overlap = Pattern::contains_all(["aa", "aa"]);
        assert!(!overlap.matches("aaa"));
        assert!(overlap.matches("aaaa"));
    }

    #[test]
    fn any_matches_an_alternative() {
        let p = Pattern::any([Pattern::contains("x"), Pattern::line("y")]);
        assert!(p.matches("axb"));
        assert!(p.matches("y"));
        assert!(!p.matches("yy"));
        assert!(!Pattern::any([]).matches("anything"));
        assert_eq!(p.to_string(), "one of (\"x\" | line \"y\")");
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(Pattern::contains("x").to_string(), "\"x\"");
        assert_eq!(
            Pattern::contains_all(["a", "b"]).to_string(),
            "line with \"a\" .. \"b\""
        );
    }
}
