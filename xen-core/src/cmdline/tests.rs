//! Command-line tests: every option, Xen's documented examples, DESIGN.md's command lines, and
//! garbage.

use super::*;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Parses and collects the warnings as display strings.
fn parse(s: &str) -> (BootOptions, Vec<String>) {
    let mut w = Vec::new();
    let o = BootOptions::parse(s, &mut |x| w.push(x.to_string()));
    (o, w)
}

fn parse_quiet(s: &str) -> BootOptions {
    let (o, w) = parse(s);
    assert!(w.is_empty(), "unexpected warnings for {s:?}: {w:?}");
    o
}

#[test]
fn defaults() {
    let o = parse_quiet("");
    assert_eq!(o, BootOptions::default());
    assert_eq!(
        o.console.as_slice(),
        &[ConsoleDevice::Com1, ConsoleDevice::Vga]
    );
    assert!(o.lockstep && !o.noreboot && !o.sync_console);
    assert_eq!(o.lockstep_retries, 3);
    assert_eq!(o.log_level_filter(), log::LevelFilter::Warn);
    assert_eq!(o.guest_loglvl.always, LogLevel::None);
    assert_eq!(o.dom0.mode, Dom0Mode::Pv);
    assert_eq!(o.com1_or_default(), SerialConfig::DEFAULT);
}

#[test]
fn design_md_command_lines_boot_quietly() {
    let o = parse_quiet(
        "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot dom0_max_vcpus=2",
    );
    assert_eq!(o.console.as_slice(), &[ConsoleDevice::Com1]);
    assert_eq!(o.com1, Some(SerialConfig::DEFAULT));
    assert_eq!(o.log_level_filter(), log::LevelFilter::Trace);
    assert_eq!(o.guest_loglvl.rate_limited, LogLevel::All);
    assert!(o.noreboot);
    assert_eq!((o.dom0_max_vcpus.min, o.dom0_max_vcpus.max), (2, 2));
    let o = parse_quiet(
        "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot \
         dom0_max_vcpus=1 dom0=pvh dom0-iommu=none",
    );
    assert_eq!(o.dom0.mode, Dom0Mode::Pvh);
    assert!(o.dom0_iommu.none);
}

#[test]
fn xen_doc_examples() {
    assert!(parse_quiet("noreboot=true").noreboot);
    assert!(parse_quiet("sync_console").sync_console);
    let o = parse_quiet("x2apic=off iommu=no dom0_vcpus_pin");
    assert_eq!(o.ignored.as_slice(), &["x2apic", "iommu", "dom0_vcpus_pin"]);
    let o = parse_quiet("dom0_mem=512M,max:1G");
    assert_eq!(o.dom0_mem.max_bytes(8 << 30), Some(1 << 30));
    let o = parse_quiet("com1=115200,8n1,0x3f8,4");
    assert_eq!(o.com1.unwrap().irq, Some(4));
}

#[test]
fn booleans() {
    for (s, want) in [
        ("noreboot", true),
        ("no-noreboot", false),
        ("noreboot=1", true),
        ("noreboot=yes", true),
        ("noreboot=enable", true),
        ("noreboot=off", false),
        ("noreboot=disable", false),
        ("noreboot=0", false),
    ] {
        assert_eq!(parse_quiet(s).noreboot, want, "{s}");
    }
    assert!(!parse_quiet("lockstep=off").lockstep);
    assert!(!parse_quiet("no-lockstep").lockstep);
    assert!(parse_quiet("lockstep=off lockstep").lockstep);
    assert!(!parse_quiet("sync_console=false").sync_console);
    let (o, w) = parse("lockstep=maybe");
    assert!(o.lockstep);
    assert_eq!(
        w,
        ["bad value 'maybe' for boot option 'lockstep', using default"]
    );
    let (o, w) = parse("noreboot no-noreboot=1");
    assert!(!o.noreboot, "a bad value resets to the default");
    assert_eq!(
        w,
        ["bad value '1' for boot option 'noreboot', using default"]
    );
}

#[test]
fn numeric_options() {
    assert_eq!(parse_quiet("maxcpus=4").maxcpus, Some(4));
    assert_eq!(parse_quiet("maxcpus=0x10").maxcpus, Some(16));
    assert_eq!(parse_quiet("lockstep_retries=0").lockstep_retries, 0);
    assert_eq!(parse_quiet("lockstep_retries=100").lockstep_retries, 100);
    assert_eq!(parse_quiet("").lockstep_spin, super::LOCKSTEP_SPIN_DEFAULT);
    assert_eq!(parse_quiet("lockstep_spin=0").lockstep_spin, 0);
    assert_eq!(
        parse_quiet("lockstep_spin=1000000").lockstep_spin,
        1_000_000
    );
    for (s, name, value) in [
        ("lockstep_spin=1000001", "lockstep_spin", "1000001"),
        ("lockstep_spin=x", "lockstep_spin", "x"),
        ("lockstep_retries=101", "lockstep_retries", "101"),
        ("lockstep_retries=-1", "lockstep_retries", "-1"),
        ("lockstep_retries=", "lockstep_retries", ""),
        ("maxcpus=0", "maxcpus", "0"),
        ("maxcpus=lots", "maxcpus", "lots"),
        ("maxcpus", "maxcpus", ""),
        ("dom0_max_vcpus=x", "dom0_max_vcpus", "x"),
        ("dom0_mem=lots", "dom0_mem", "lots"),
    ] {
        let (o, w) = parse(s);
        assert_eq!(o, BootOptions::default(), "{s}");
        assert_eq!(
            w,
            [alloc::format!(
                "bad value '{value}' for boot option '{name}', using default"
            )]
        );
    }
}

#[test]
fn string_and_list_options() {
    let o = parse_quiet("selftest=evtchn_basic");
    assert_eq!(o.selftest.as_deref(), Some("evtchn_basic"));
    let long = alloc::format!("selftest={}", "x".repeat(40));
    let (o, w) = parse(&long);
    assert_eq!(o.selftest, None);
    assert_eq!(w.len(), 1);
    let (o, w) = parse("selftest=a;b");
    assert_eq!((o.selftest, w.len()), (None, 1));
    let o = parse_quiet("console=vga,com2 com2=9600,7e1,0x2f8,3");
    assert_eq!(
        o.console.as_slice(),
        &[ConsoleDevice::Vga, ConsoleDevice::Com2]
    );
    assert_eq!(o.com2.unwrap().io_base, Some(0x2f8));
    assert_eq!(o.com1, None);
    let (o, w) = parse("console=com1,serial");
    assert_eq!(o.console, BootOptions::default().console);
    assert_eq!(
        w,
        ["bad value 'com1,serial' for boot option 'console', using default"]
    );
    let o = parse_quiet("com1=auto");
    assert_eq!(o.com1.unwrap().baud, Baud::Auto);
    let o = parse_quiet("loglvl=info/debug guest_loglvl=error");
    assert_eq!(o.loglvl.always, LogLevel::Info);
    assert_eq!(o.log_level_filter(), log::LevelFilter::Debug);
    assert_eq!(o.guest_loglvl.rate_limited, LogLevel::Error);
    let o = parse_quiet("dom0=pv,verbose=1 dom0-iommu=strict,map-inclusive");
    assert!(o.dom0.verbose && o.dom0_iommu.strict && o.dom0_iommu.map_inclusive);
    let (o, w) = parse("dom0=hvm");
    assert_eq!(o.dom0, Dom0Options::default());
    assert_eq!(w.len(), 1);
}

#[test]
fn repeated_options_last_wins() {
    let o = parse_quiet("maxcpus=2 maxcpus=8 console=vga console=com1 loglvl=error loglvl=all");
    assert_eq!(o.maxcpus, Some(8));
    assert_eq!(o.console.as_slice(), &[ConsoleDevice::Com1]);
    assert_eq!(o.loglvl.always, LogLevel::All);
    // A later malformed value resets to the default rather than keeping the earlier one.
    let (o, w) = parse("maxcpus=2 maxcpus=x");
    assert_eq!((o.maxcpus, w.len()), (None, 1));
}

#[test]
fn unknown_options_and_garbage() {
    let (o, w) = parse("frobnicate foo=bar no-console =  = ==x");
    assert_eq!(o, BootOptions::default());
    assert_eq!(
        w,
        [
            "unknown boot option 'frobnicate' ignored",
            "unknown boot option 'foo=bar' ignored",
            "unknown boot option 'no-console' ignored",
            "unknown boot option '=' ignored",
            "unknown boot option '=' ignored",
            "unknown boot option '==x' ignored",
        ]
    );
    // Whitespace only, tabs and newlines, and options are case sensitive.
    let (o, w) = parse(" \t\n  NOREBOOT\tnoreboot\n");
    assert!(o.noreboot);
    assert_eq!(w, ["unknown boot option 'NOREBOOT' ignored"]);
    // Non-ASCII.
    let (o, w) = parse("lockstep=ön ünknown noreboot");
    assert!(o.lockstep && o.noreboot);
    assert_eq!(
        w,
        [
            "bad value 'ön' for boot option 'lockstep', using default",
            "unknown boot option 'ünknown' ignored"
        ]
    );
    // "no-" alone and a lone "no-" prefix on an ignored option.
    let (_, w) = parse("no- no-x2apic");
    assert_eq!(w, ["unknown boot option 'no-' ignored"]);
}

#[test]
fn very_long_command_line() {
    let mut s = String::new();
    for i in 0..2000 {
        s.push_str(if i % 2 == 0 {
            "noreboot "
        } else {
            "bogus_option_with_a_long_name "
        });
    }
    s.push_str(&"x".repeat(10_000));
    let (o, w) = parse(&s);
    assert!(o.noreboot);
    assert_eq!(w.len(), 1001);
    assert!(w[1000].len() > 10_000);
}

#[test]
fn ignored_list_is_bounded_and_deduplicated() {
    let line = IGNORED_OPTIONS.join(" ");
    let o = parse_quiet(&alloc::format!("{line} {line}"));
    assert_eq!(o.ignored.len(), IGNORED_KEEP);
    assert_eq!(o.ignored[0], IGNORED_OPTIONS[0]);
}

#[test]
fn warning_display_texts() {
    assert_eq!(
        CmdlineWarning::Unknown { option: "a=b" }.to_string(),
        "unknown boot option 'a=b' ignored"
    );
    assert_eq!(
        CmdlineWarning::BadValue {
            name: "maxcpus",
            value: "x"
        }
        .to_string(),
        "bad value 'x' for boot option 'maxcpus', using default"
    );
}

#[test]
fn image_name_stripping() {
    assert_eq!(
        strip_image_name("/boot/dualvisor console=com1 noreboot", "qemu"),
        "console=com1 noreboot"
    );
    assert_eq!(
        strip_image_name("  /boot/xen   loglvl=all", "GRUB 0.97"),
        "loglvl=all"
    );
    assert_eq!(strip_image_name("/boot/xen", "qemu"), "");
    assert_eq!(strip_image_name("", ""), "");
    assert_eq!(
        strip_image_name(" console=com1", "GRUB 2.06"),
        "console=com1"
    );
    assert_eq!(
        strip_image_name("dom0.elf root=/dev/ram0", ""),
        "root=/dev/ram0"
    );
}
