//! Value types of boot options and their parsers, following Xen's syntax
//! (`docs/misc/xen-command-line.pandoc`). Every parser is total: `None` means malformed.

/// Parses a Xen boolean value: `yes|on|true|enable|1` or `no|off|false|disable|0`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "on" | "yes" | "true" | "enable" => Some(true),
        "0" | "off" | "no" | "false" | "disable" => Some(false),
        _ => None,
    }
}

/// Splits a Xen integer into (digits, radix): `0x` hex, leading `0` octal, else decimal.
fn radix_of(s: &str) -> (&str, u32) {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    }
}

/// Parses a whole unsigned Xen integer (decimal, `0x` hex, or octal with a leading `0`).
pub fn parse_uint(s: &str) -> Option<u64> {
    let (digits, radix) = radix_of(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Parses a Xen size: an integer with an optional `T|G|M|K|B` suffix (either case); without
/// a suffix the unit is KiB. Returns bytes. As in Xen, the number is read greedily, so hex
/// digits `b`/`B` belong to a `0x` number, not to the suffix.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, radix) = radix_of(s);
    let split = digits
        .char_indices()
        .find(|(_, c)| !c.is_digit(radix))
        .map_or(digits.len(), |(i, _)| i);
    let (num, suffix) = digits.split_at(split);
    // "0M": the leading 0 taken as the octal prefix is itself the number.
    let num = if num.is_empty() && radix == 8 {
        "0"
    } else {
        num
    };
    if num.is_empty() {
        return None;
    }
    let shift = match suffix {
        "" | "K" | "k" => 10,
        "T" | "t" => 40,
        "G" | "g" => 30,
        "M" | "m" => 20,
        "B" | "b" => 0,
        _ => return None,
    };
    let v = u64::from_str_radix(num, radix).ok()?;
    v.checked_mul(1u64 << shift)
}

/// A Xen log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    None,
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warning,
    /// Errors, warnings and information.
    Info,
    /// Everything but trace output.
    Debug,
    /// Everything.
    All,
}

impl LogLevel {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => LogLevel::None,
            "error" => LogLevel::Error,
            "warning" => LogLevel::Warning,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "all" => LogLevel::All,
            _ => return None,
        })
    }

    /// The `log` crate filter that lets exactly this level and more important ones through.
    pub fn to_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::None => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warning => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::All => log::LevelFilter::Trace,
        }
    }
}

/// `loglvl=` / `guest_loglvl=`: messages at or above `always` print unconditionally, those
/// down to `rate_limited` print rate-limited, less important ones are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevels {
    /// Printed always.
    pub always: LogLevel,
    /// Printed with rate limiting (never less verbose than `always`).
    pub rate_limited: LogLevel,
}

impl LogLevels {
    /// Parses `<level>[/<rate-limited level>]`.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, r) = match s.split_once('/') {
            Some((a, r)) => (LogLevel::parse(a)?, LogLevel::parse(r)?),
            None => {
                let a = LogLevel::parse(s)?;
                (a, a)
            }
        };
        Some(LogLevels {
            always: a,
            rate_limited: r.max(a),
        })
    }
}

/// Console devices of `console=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleDevice {
    /// First serial port (Xen's `com1`, also `com1H`/`com1L`).
    Com1,
    /// Second serial port.
    Com2,
    /// VGA text console.
    Vga,
    /// No console at all.
    None,
}

/// Parses the `console=` comma list.
pub fn parse_console(s: &str) -> Option<heapless::Vec<ConsoleDevice, 4>> {
    let mut out = heapless::Vec::new();
    for item in s.split(',') {
        let dev = match item {
            "com1" | "com1H" | "com1L" => ConsoleDevice::Com1,
            "com2" | "com2H" | "com2L" => ConsoleDevice::Com2,
            "vga" => ConsoleDevice::Vga,
            "none" => ConsoleDevice::None,
            _ => return None,
        };
        if !out.contains(&dev) {
            // At most 4 distinct devices exist, so this cannot overflow.
            let _ = out.push(dev);
        }
    }
    Some(out)
}

/// Serial line baud rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baud {
    /// Keep what firmware or the boot loader programmed.
    Auto,
    /// A fixed rate.
    Rate(u32),
}

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// `n`.
    None,
    /// `o`.
    Odd,
    /// `e`.
    Even,
    /// `m`.
    Mark,
    /// `s`.
    Space,
}

/// `com1=` / `com2=`: `<baud>[/<base-baud>][,[DPS][,[<io-base>][,[<irq>]]]]`, plus the
/// `name=value` forms for these same fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialConfig {
    /// Baud rate.
    pub baud: Baud,
    /// UART base baud (clock / 16), if given.
    pub base_baud: Option<u32>,
    /// Data bits, 5–8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// I/O port base; `None` means the standard one for the port.
    pub io_base: Option<u16>,
    /// IRQ; `Some(0)` means polled mode; `None` means the standard one.
    pub irq: Option<u8>,
}

impl SerialConfig {
    /// 115200 8n1 at the standard port and IRQ.
    pub const DEFAULT: SerialConfig = SerialConfig {
        baud: Baud::Rate(115_200),
        base_baud: None,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        io_base: None,
        irq: None,
    };

    /// Parses a `comN=` value.
    pub fn parse(s: &str) -> Option<Self> {
        let mut c = SerialConfig::DEFAULT;
        for (pos, field) in s.split(',').enumerate() {
            if let Some((k, v)) = field.split_once('=') {
                c.set_named(k, v)?;
                continue;
            }
            if field.is_empty() {
                continue;
            }
            match pos {
                0 => {
                    let (baud, base) = match field.split_once('/') {
                        Some((b, base)) => (b, Some(base)),
                        None => (field, None),
                    };
                    c.baud = parse_baud(baud)?;
                    if let Some(base) = base {
                        c.base_baud = Some(u32::try_from(parse_uint(base)?).ok()?);
                    }
                }
                1 => c.set_dps(field)?,
                2 => c.io_base = Some(u16::try_from(parse_uint(field)?).ok()?),
                3 => c.irq = Some(u8::try_from(parse_uint(field)?).ok()?),
                _ => return None,
            }
        }
        Some(c)
    }

    fn set_dps(&mut self, f: &str) -> Option<()> {
        let b = f.as_bytes();
        if b.len() != 3 {
            return None;
        }
        self.data_bits = match b[0] {
            b'5'..=b'8' => b[0] - b'0',
            _ => return None,
        };
        self.parity = parse_parity(b[1])?;
        self.stop_bits = match b[2] {
            b'1' | b'2' => b[2] - b'0',
            _ => return None,
        };
        Some(())
    }

    fn set_named(&mut self, k: &str, v: &str) -> Option<()> {
        match k {
            "baud" => self.baud = parse_baud(v)?,
            "data-bits" => {
                self.data_bits = u8::try_from(parse_uint(v)?)
                    .ok()
                    .filter(|d| (5..=8).contains(d))?
            }
            "parity" if v.len() == 1 => self.parity = parse_parity(v.as_bytes()[0])?,
            "stop-bits" => {
                self.stop_bits = u8::try_from(parse_uint(v)?)
                    .ok()
                    .filter(|s| (1..=2).contains(s))?
            }
            "io-base" => self.io_base = Some(u16::try_from(parse_uint(v)?).ok()?),
            "irq" => self.irq = Some(u8::try_from(parse_uint(v)?).ok()?),
            _ => return None,
        }
        Some(())
    }
}

fn parse_baud(s: &str) -> Option<Baud> {
    if s == "auto" {
        return Some(Baud::Auto);
    }
    let v = u32::try_from(parse_uint(s)?).ok()?;
    (v != 0).then_some(Baud::Rate(v))
}

fn parse_parity(b: u8) -> Option<Parity> {
    Some(match b {
        b'n' => Parity::None,
        b'o' => Parity::Odd,
        b'e' => Parity::Even,
        b'm' => Parity::Mark,
        b's' => Parity::Space,
        _ => return None,
    })
}

/// One `dom0_mem` amount: `[-](<size> | [<size>+]<frac>%)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemAmount {
    /// Negative: "all available memory minus this".
    pub negative: bool,
    /// Absolute part in bytes.
    pub bytes: u64,
    /// Fraction of host memory in percent (< 100).
    pub percent: u8,
}

impl MemAmount {
    fn parse(s: &str) -> Option<Self> {
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (bytes, percent) = match s.strip_suffix('%') {
            Some(body) => {
                let (size, frac) = match body.split_once('+') {
                    Some((size, frac)) => (parse_size(size)?, frac),
                    None => (0, body),
                };
                let p = parse_uint(frac).filter(|p| *p < 100)?;
                (size, p as u8)
            }
            None => (parse_size(s)?, 0),
        };
        Some(MemAmount {
            negative,
            bytes,
            percent,
        })
    }

    /// The amount in bytes given `avail` bytes of memory available for dom0.
    pub fn resolve(&self, avail: u64) -> u64 {
        let part = (u128::from(avail) * u128::from(self.percent) / 100) as u64;
        let amt = self.bytes.saturating_add(part);
        if self.negative {
            avail.saturating_sub(amt)
        } else {
            amt
        }
    }
}

/// `dom0_mem=`: comma list of `<sz>`, `min:<sz>`, `max:<sz>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dom0Mem {
    /// The exact amount (default: all minus min(1/16, 128 MiB)).
    pub amount: Option<MemAmount>,
    /// Lower bound.
    pub min: Option<MemAmount>,
    /// Upper bound, also the balloon-up limit.
    pub max: Option<MemAmount>,
}

impl Dom0Mem {
    /// Parses the `dom0_mem=` list.
    pub fn parse(s: &str) -> Option<Self> {
        let mut d = Dom0Mem::default();
        for item in s.split(',') {
            if let Some(v) = item.strip_prefix("min:") {
                d.min = Some(MemAmount::parse(v)?);
            } else if let Some(v) = item.strip_prefix("max:") {
                d.max = Some(MemAmount::parse(v)?);
            } else {
                d.amount = Some(MemAmount::parse(item)?);
            }
        }
        Some(d)
    }

    /// Dom0's initial memory in bytes for `avail` bytes available, with Xen's rules: the
    /// default keeps back min(avail/16, 128 MiB); the result is raised to `min`, then capped by
    /// `max` (max wins) and by `avail`.
    pub fn initial_bytes(&self, avail: u64) -> u64 {
        let nr = match self.amount {
            Some(a) => a.resolve(avail),
            None => avail - (avail / 16).min(128 << 20),
        };
        let mut nr = nr.max(self.min.map_or(0, |m| m.resolve(avail)));
        if let Some(max) = self.max {
            nr = nr.min(max.resolve(avail));
        }
        nr.min(avail)
    }

    /// The maximum reservation in bytes (`None`: unlimited).
    pub fn max_bytes(&self, avail: u64) -> Option<u64> {
        self.max.map(|m| m.resolve(avail))
    }
}

/// `dom0_max_vcpus=`: `N`, `N-`, `-M` or `N-M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dom0Vcpus {
    /// At least this many vCPUs (≥ 1).
    pub min: u32,
    /// At most this many vCPUs.
    pub max: u32,
}

impl Default for Dom0Vcpus {
    fn default() -> Self {
        Dom0Vcpus {
            min: 1,
            max: u32::MAX,
        }
    }
}

impl Dom0Vcpus {
    /// Parses the value (Xen's rules: `N` means exactly N; 0 counts as 1).
    pub fn parse(s: &str) -> Option<Self> {
        let num = |t: &str| parse_uint(t).and_then(|v| u32::try_from(v).ok());
        let mut d = Dom0Vcpus::default();
        match s.split_once('-') {
            None => {
                d.min = num(s)?.max(1);
                d.max = d.min;
            }
            Some(("", m)) => d.max = num(m)?,
            Some((n, "")) => d.min = num(n)?.max(1),
            Some((n, m)) => {
                d.min = num(n)?.max(1);
                d.max = num(m)?;
            }
        }
        Some(d)
    }

    /// Number of dom0 vCPUs on a host with `pcpus` physical CPUs.
    pub fn resolve(&self, pcpus: u32) -> u32 {
        pcpus.max(self.min).min(self.max).max(1)
    }
}

/// Dom0 virtualisation mode (`dom0=pv|pvh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dom0Mode {
    /// Paravirtualised.
    Pv,
    /// PVH (HVM container with PV interfaces).
    Pvh,
}

/// `dom0=`: list of `pv | pvh, shadow=<bool>, verbose=<bool>, cpuid-faulting=<bool>,
/// msr-relaxed=<bool>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dom0Options {
    /// PV (default) or PVH.
    pub mode: Dom0Mode,
    /// Build dom0 with shadow paging.
    pub shadow: bool,
    /// Verbose dom0 build.
    pub verbose: bool,
    /// CPUID faulting for a PV dom0 (default on).
    pub cpuid_faulting: bool,
    /// 4.14-style relaxed MSR handling.
    pub msr_relaxed: bool,
}

impl Default for Dom0Options {
    fn default() -> Self {
        Dom0Options {
            mode: Dom0Mode::Pv,
            shadow: false,
            verbose: false,
            cpuid_faulting: true,
            msr_relaxed: false,
        }
    }
}

/// Parses one boolean sub-option of a list (`name`, `no-name`, `name=<bool>`) into `slot`.
/// Returns `None` if `item` is not about `name`, `Some(false)` if it is but malformed.
fn sub_bool(item: &str, name: &str, slot: &mut bool) -> Option<bool> {
    if item == name {
        *slot = true;
        return Some(true);
    }
    if item.strip_prefix("no-") == Some(name) {
        *slot = false;
        return Some(true);
    }
    let v = item.strip_prefix(name)?.strip_prefix('=')?;
    match parse_bool(v) {
        Some(b) => {
            *slot = b;
            Some(true)
        }
        None => Some(false),
    }
}

impl Dom0Options {
    /// Parses the `dom0=` list.
    pub fn parse(s: &str) -> Option<Self> {
        let mut d = Dom0Options::default();
        for item in s.split(',') {
            match item {
                "pv" => d.mode = Dom0Mode::Pv,
                "pvh" => d.mode = Dom0Mode::Pvh,
                _ => {
                    let ok = sub_bool(item, "shadow", &mut d.shadow)
                        .or_else(|| sub_bool(item, "verbose", &mut d.verbose))
                        .or_else(|| sub_bool(item, "cpuid-faulting", &mut d.cpuid_faulting))
                        .or_else(|| sub_bool(item, "msr-relaxed", &mut d.msr_relaxed));
                    if ok != Some(true) {
                        return None;
                    }
                }
            }
        }
        Some(d)
    }
}

/// `dom0-iommu=`: list of `passthrough=<bool>, strict=<bool>, map-inclusive=<bool>,
/// map-reserved=<bool>, none`. DualVisor has no IOMMU support; the settings are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dom0Iommu {
    /// `passthrough`.
    pub passthrough: bool,
    /// `strict`.
    pub strict: bool,
    /// `map-inclusive`.
    pub map_inclusive: bool,
    /// `map-reserved` (default on).
    pub map_reserved: bool,
    /// `none`: skip IOMMU safety checks for dom0.
    pub none: bool,
}

impl Default for Dom0Iommu {
    fn default() -> Self {
        Dom0Iommu {
            passthrough: false,
            strict: false,
            map_inclusive: false,
            map_reserved: true,
            none: false,
        }
    }
}

impl Dom0Iommu {
    /// Parses the `dom0-iommu=` list.
    pub fn parse(s: &str) -> Option<Self> {
        let mut d = Dom0Iommu::default();
        for item in s.split(',') {
            if item == "none" {
                d.none = true;
                continue;
            }
            let ok = sub_bool(item, "passthrough", &mut d.passthrough)
                .or_else(|| sub_bool(item, "strict", &mut d.strict))
                .or_else(|| sub_bool(item, "map-inclusive", &mut d.map_inclusive))
                .or_else(|| sub_bool(item, "map-reserved", &mut d.map_reserved));
            if ok != Some(true) {
                return None;
            }
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_sizes() {
        assert_eq!(parse_uint("42"), Some(42));
        assert_eq!(parse_uint("0x2f8"), Some(0x2f8));
        assert_eq!(parse_uint("010"), Some(8));
        assert_eq!(parse_uint("0"), Some(0));
        for bad in ["", "0x", "09", "-1", "1a", "99999999999999999999999"] {
            assert_eq!(parse_uint(bad), None, "{bad}");
        }
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("2T"), Some(2 << 40));
        assert_eq!(parse_size("4096"), Some(4096 << 10));
        assert_eq!(parse_size("100B"), Some(100));
        assert_eq!(parse_size("0xab"), Some(0xab << 10));
        assert_eq!(parse_size("0x10b"), Some(0x10b << 10));
        assert_eq!(parse_size("0x10M"), Some(0x10 << 20));
        assert_eq!(parse_size("010M"), Some(8 << 20));
        assert_eq!(parse_size("12MB"), None);
        assert_eq!(parse_size("0M"), Some(0));
        assert_eq!(parse_size("0x"), None);
        assert_eq!(parse_size("100000000T"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn log_levels() {
        let l = LogLevels::parse("all").unwrap();
        assert_eq!((l.always, l.rate_limited), (LogLevel::All, LogLevel::All));
        let l = LogLevels::parse("none/warning").unwrap();
        assert_eq!(
            (l.always, l.rate_limited),
            (LogLevel::None, LogLevel::Warning)
        );
        // A rate-limited level below the always level is raised to it (as Xen does).
        let l = LogLevels::parse("info/error").unwrap();
        assert_eq!(l.rate_limited, LogLevel::Info);
        for bad in ["", "loud", "info/", "/info", "info/debug/all"] {
            assert_eq!(LogLevels::parse(bad), None, "{bad}");
        }
        assert_eq!(LogLevel::All.to_filter(), log::LevelFilter::Trace);
        assert_eq!(LogLevel::None.to_filter(), log::LevelFilter::Off);
    }

    #[test]
    fn serial_configs() {
        let c = SerialConfig::parse("115200,8n1").unwrap();
        assert_eq!(c, SerialConfig::DEFAULT);
        let c = SerialConfig::parse("auto").unwrap();
        assert_eq!(c.baud, Baud::Auto);
        let c = SerialConfig::parse("9600/115200,7e2,0x2f8,3").unwrap();
        assert_eq!(c.baud, Baud::Rate(9600));
        assert_eq!(c.base_baud, Some(115_200));
        assert_eq!((c.data_bits, c.parity, c.stop_bits), (7, Parity::Even, 2));
        assert_eq!((c.io_base, c.irq), (Some(0x2f8), Some(3)));
        let c = SerialConfig::parse("115200,,,0").unwrap();
        assert_eq!(c.irq, Some(0));
        let c = SerialConfig::parse("baud=57600,parity=o,stop-bits=2,io-base=0x3e8").unwrap();
        assert_eq!(
            (c.baud, c.parity, c.stop_bits),
            (Baud::Rate(57600), Parity::Odd, 2)
        );
        assert_eq!(c.io_base, Some(0x3e8));
        for bad in [
            "fast",
            "0",
            "115200,9n1",
            "115200,8x1",
            "115200,8n3",
            "115200,8n1,0x10000",
            "115200,8n1,0x3f8,4,0:1.0",
            "115200,8n1,pci",
            "115200,8n1,0x3f8,msi",
            "reg-width=4",
            "data-bits=9",
        ] {
            assert_eq!(SerialConfig::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn console_lists() {
        assert_eq!(
            parse_console("com1,vga").unwrap().as_slice(),
            &[ConsoleDevice::Com1, ConsoleDevice::Vga]
        );
        assert_eq!(
            parse_console("com2H,com2").unwrap().as_slice(),
            &[ConsoleDevice::Com2]
        );
        assert_eq!(
            parse_console("none").unwrap().as_slice(),
            &[ConsoleDevice::None]
        );
        assert_eq!(parse_console("com1,,vga"), None);
        assert_eq!(parse_console("serial"), None);
    }

    #[test]
    fn dom0_mem_syntax_and_rules() {
        const G: u64 = 1 << 30;
        let d = Dom0Mem::parse("512M,max:1G").unwrap();
        assert_eq!(d.amount.unwrap().bytes, 512 << 20);
        assert_eq!(d.max_bytes(8 * G), Some(G));
        assert_eq!(d.initial_bytes(8 * G), 512 << 20);
        // Negative: all but 1 GiB.
        let d = Dom0Mem::parse("-1G").unwrap();
        assert_eq!(d.initial_bytes(8 * G), 7 * G);
        // Percent and size+percent: 1G+25% of 256 GiB is 65 GiB (the doc's example).
        let d = Dom0Mem::parse("1G+25%").unwrap();
        assert_eq!(d.initial_bytes(256 * G), 65 * G);
        let d = Dom0Mem::parse("min:2G,max:4G").unwrap();
        assert_eq!(d.initial_bytes(16 * G), 4 * G);
        assert_eq!(d.initial_bytes(G), G, "never more than available");
        // max overrides min.
        let d = Dom0Mem::parse("min:3G,max:2G").unwrap();
        assert_eq!(d.initial_bytes(16 * G), 2 * G);
        // Default: keep back min(avail/16, 128 MiB).
        let d = Dom0Mem::default();
        assert_eq!(d.initial_bytes(16 * G), 16 * G - (128 << 20));
        assert_eq!(d.initial_bytes(G), G - G / 16);
        for bad in ["", "512Q", "min:", "max:1G,", "100%", "1G+", "-", "1G+x%"] {
            assert_eq!(Dom0Mem::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dom0_vcpus() {
        let d = Dom0Vcpus::parse("4").unwrap();
        assert_eq!((d.min, d.max), (4, 4));
        let d = Dom0Vcpus::parse("4-8").unwrap();
        // The table from the Xen documentation.
        let got: alloc::vec::Vec<u32> = [2, 4, 6, 8, 10].iter().map(|&p| d.resolve(p)).collect();
        assert_eq!(got, [4, 4, 6, 8, 8]);
        assert_eq!(Dom0Vcpus::parse("-2").unwrap().resolve(4), 2);
        assert_eq!(Dom0Vcpus::parse("3-").unwrap().resolve(8), 8);
        assert_eq!(Dom0Vcpus::parse("0").unwrap().resolve(8), 1);
        for bad in ["", "x", "1-2-3", "-", "4-x"] {
            assert_eq!(Dom0Vcpus::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dom0_lists() {
        let d = Dom0Options::parse("pvh,shadow,no-cpuid-faulting,msr-relaxed=1").unwrap();
        assert_eq!(d.mode, Dom0Mode::Pvh);
        assert!(d.shadow && !d.cpuid_faulting && d.msr_relaxed && !d.verbose);
        assert_eq!(Dom0Options::parse("hvm"), None);
        assert_eq!(Dom0Options::parse("pv,shadow=maybe"), None);
        let i = Dom0Iommu::parse("none").unwrap();
        assert!(i.none && i.map_reserved);
        let i = Dom0Iommu::parse("passthrough=1,no-map-reserved,strict").unwrap();
        assert!(i.passthrough && i.strict && !i.map_reserved);
        assert_eq!(Dom0Iommu::parse("off"), None);
    }
}
