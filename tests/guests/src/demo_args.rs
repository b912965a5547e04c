//! The `demo` guest's command line: `count=N` (power off after N lines; 0 runs until the
//! domain is destroyed), `period_ms=M` (time between lines) and `crash=1` (after the N
//! lines, crash — `SHUTDOWN_crash` — instead of powering off, for `on_crash`). Unknown words are ignored,
//! as a kernel ignores parameters it does not know.

/// What the demo was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoArgs {
    /// Lines before powering off (0: forever).
    pub count: u64,
    /// Milliseconds between lines.
    pub period_ms: u64,
    /// End with `SHUTDOWN_crash` instead of a power-off.
    pub crash: bool,
}

impl DemoArgs {
    /// Parses `cmdline` over the defaults `count`/`period_ms`; a malformed value keeps the
    /// default.
    pub fn parse(cmdline: &str, count: u64, period_ms: u64) -> DemoArgs {
        let mut a = DemoArgs {
            count,
            period_ms,
            crash: false,
        };
        for word in cmdline.split_ascii_whitespace() {
            let Some((k, v)) = word.split_once('=') else {
                continue;
            };
            let Ok(n) = v.parse::<u64>() else { continue };
            match k {
                "count" => a.count = n,
                "period_ms" if (1..=60_000).contains(&n) => a.period_ms = n,
                "crash" if n <= 1 => a.crash = n == 1,
                _ => {}
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_override_defaults() {
        assert_eq!(
            DemoArgs::parse("", 3, 100),
            DemoArgs {
                count: 3,
                period_ms: 100,
                crash: false,
            }
        );
        assert_eq!(
            DemoArgs::parse("quiet count=20 period_ms=250 crash=1", 0, 1000),
            DemoArgs {
                count: 20,
                period_ms: 250,
                crash: true,
            }
        );
        assert_eq!(DemoArgs::parse("count=0", 3, 1).count, 0);
    }

    #[test]
    fn malformed_values_keep_defaults() {
        let a = DemoArgs::parse("count=x period_ms=0 period_ms=99999999 count crash=2", 5, 7);
        assert_eq!(
            a,
            DemoArgs {
                count: 5,
                period_ms: 7,
                crash: false,
            }
        );
    }
}
