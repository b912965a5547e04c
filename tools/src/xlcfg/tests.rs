//! Tests of the typed xl.cfg reading.

use super::*;
use alloc::vec;

const DEMO: &str = "# demo guest\n\
name = \"demo1\"\n\
type = 'pv'\n\
kernel = '/etc/xen/demo1.elf'\n\
ramdisk = \"/etc/xen/demo1.initrd\"\n\
extra = 'console=hvc0 loglevel=8'\n\
memory = 64\n\
maxmem = 0x80\n\
vcpus = 2\n\
maxvcpus = 4\n\
on_poweroff = 'destroy'\n\
on_reboot = 'restart'\n\
on_crash = 'preserve'\n\
uuid = '3fb1a5c7-0d2e-4b8f-9a61-7c0e5d2b9f10'\n";

fn parse(text: &str) -> Result<Parsed, ConfigError> {
    DomainConfig::parse("demo1.cfg", text)
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn full_config() {
    let p = parse(DEMO).unwrap();
    assert_eq!(p.warnings, Vec::<String>::new());
    let c = p.config;
    assert_eq!(c.name, "demo1");
    assert_eq!(c.type_, GuestType::Pv);
    assert_eq!(c.kernel, "/etc/xen/demo1.elf");
    assert_eq!(c.ramdisk.as_deref(), Some("/etc/xen/demo1.initrd"));
    assert_eq!(c.cmdline.as_deref(), Some("console=hvc0 loglevel=8"));
    assert_eq!((c.memory_mib, c.maxmem_mib), (64, 128));
    assert_eq!((c.memory_kib(), c.maxmem_kib()), (65536, 131072));
    assert_eq!((c.vcpus, c.maxvcpus), (2, 4));
    assert_eq!(c.on_poweroff, ShutdownAction::Destroy);
    assert_eq!(c.on_reboot, ShutdownAction::Restart);
    assert_eq!(c.on_crash, ShutdownAction::Preserve);
    let u = c.uuid.unwrap();
    assert_eq!(u[0], 0x3f);
    assert_eq!(u[15], 0x10);
}

#[test]
fn defaults_like_xl() {
    let c = parse("name='a'\nkernel='k'\n").unwrap().config;
    assert_eq!(
        (c.memory_mib, c.maxmem_mib),
        (DEFAULT_MEMORY_MIB, DEFAULT_MEMORY_MIB)
    );
    assert_eq!((c.vcpus, c.maxvcpus), (1, 1));
    assert_eq!(c.on_poweroff, ShutdownAction::Destroy);
    assert_eq!(c.on_reboot, ShutdownAction::Restart);
    assert_eq!(c.on_crash, ShutdownAction::Destroy);
    assert_eq!((c.ramdisk, c.cmdline, c.uuid), (None, None, None));
    // Only one of memory/maxmem: the other follows it.
    let c = parse("name='a'\nkernel='k'\nmaxmem=96\n").unwrap().config;
    assert_eq!((c.memory_mib, c.maxmem_mib), (96, 96));
    let c = parse("name='a'\nkernel='k'\nmemory=\"48\"\nvcpus=3\n")
        .unwrap()
        .config;
    assert_eq!(
        (c.memory_mib, c.maxmem_mib, c.vcpus, c.maxvcpus),
        (48, 48, 3, 3)
    );
}

#[test]
fn cmdline_root_extra_as_xl_combines_them() {
    let c = |t: &str| parse(&format!("name='a'\nkernel='k'\n{t}")).unwrap();
    assert_eq!(
        c("root='/dev/xvda1'\nextra='ro quiet'\n")
            .config
            .cmdline
            .as_deref(),
        Some("root=/dev/xvda1 ro quiet")
    );
    assert_eq!(
        c("root='/dev/xvda1'\n").config.cmdline.as_deref(),
        Some("root=/dev/xvda1")
    );
    assert_eq!(c("extra='x=1'\n").config.cmdline.as_deref(), Some("x=1"));
    let p = c("cmdline='a b'\nroot='r'\nextra='e'\n");
    assert_eq!(p.config.cmdline.as_deref(), Some("a b"));
    assert_eq!(
        p.warnings,
        vec!["demo1.cfg:3: warning: ignoring root= and extra= in favour of cmdline=".to_string()]
    );
}

#[test]
fn required_keys() {
    assert_eq!(
        err("kernel='k'\n"),
        "demo1.cfg: Domain name must be specified."
    );
    assert_eq!(
        err("name='a'\nmemory=4\n"),
        "demo1.cfg: kernel must be specified for a PV domain"
    );
    assert_eq!(
        err("name=''\nkernel='k'\n"),
        "demo1.cfg:1: name must not be empty"
    );
    assert_eq!(
        err("name='a'\nkernel=['k']\n"),
        "demo1.cfg:2: parameter `kernel' is a list but should be a single value"
    );
}

#[test]
fn types() {
    assert_eq!(
        parse("type='pv'\nname='a'\nkernel='k'\n")
            .unwrap()
            .config
            .type_,
        GuestType::Pv
    );
    assert_eq!(
        parse("builder='generic'\nname='a'\nkernel='k'\n")
            .unwrap()
            .config
            .type_,
        GuestType::Pv
    );
    assert_eq!(
        err("name='a'\ntype='pvh'\n"),
        "demo1.cfg:2: domain type \"pvh\" is not supported yet (only \"pv\")"
    );
    assert_eq!(
        err("type = \"hvm\"\n"),
        "demo1.cfg:1: domain type \"hvm\" is not supported yet (only \"pv\")"
    );
    assert_eq!(
        err("builder='hvm'\n"),
        "demo1.cfg:1: domain type \"hvm\" is not supported yet (only \"pv\")"
    );
    assert_eq!(err("type='xen'\n"), "demo1.cfg:1: Invalid domain type xen.");
}

#[test]
fn memory_and_vcpu_errors() {
    let base = "name='a'\nkernel='k'\n";
    let e = |t: &str| err(&format!("{base}{t}"));
    assert_eq!(
        e("memory = 512\nmaxmem = 256\n"),
        "demo1.cfg:4: maxmem (256 MiB) must not be smaller than memory (512 MiB)"
    );
    assert_eq!(
        e("memory = 0\n"),
        "demo1.cfg:3: value `0' of `memory' is smaller than minimum bound '1'"
    );
    assert_eq!(
        e("memory = '512M'\n"),
        "demo1.cfg:3: parameter `memory' is not a valid number: '512M'"
    );
    assert_eq!(
        e("memory = '-5'\n"),
        "demo1.cfg:3: value `-5' of `memory' is smaller than minimum bound '1'"
    );
    assert_eq!(
        e("memory = 99999999999\n"),
        "demo1.cfg:3: value `99999999999' of `memory' is greater than maximum bound '1048576'"
    );
    assert_eq!(
        e("memory = 5\nmemory += 6\n"),
        "demo1.cfg:4: can't use += with numbers for parameter `memory'"
    );
    assert_eq!(
        e("vcpus = 4\nmaxvcpus = 2\n"),
        "demo1.cfg:4: maxvcpus < vcpus (2 < 4)"
    );
    assert_eq!(
        e("vcpus = 0\n"),
        "demo1.cfg:3: value `0' of `vcpus' is smaller than minimum bound '1'"
    );
    assert_eq!(
        e("vcpus = 129\n"),
        "demo1.cfg:3: value `129' of `vcpus' is greater than maximum bound '128'"
    );
}

#[test]
fn actions_and_uuid() {
    let base = "name='a'\nkernel='k'\n";
    assert_eq!(
        err(&format!("{base}on_crash = 'explode'\n")),
        "demo1.cfg:3: Unknown on_crash action \"explode\" specified"
    );
    let p = parse(&format!(
        "{base}on_crash = 'coredump-restart'\non_reboot='rename-restart'\n"
    ))
    .unwrap();
    assert_eq!(p.config.on_crash, ShutdownAction::CoredumpRestart);
    assert_eq!(p.config.on_reboot, ShutdownAction::RenameRestart);
    assert_eq!(p.warnings.len(), 2);
    assert!(
        p.warnings[0].starts_with("demo1.cfg:4: warning: on_reboot = \"rename-restart\""),
        "{:?}",
        p.warnings
    );
    assert_eq!(
        err(&format!("{base}uuid='not-a-uuid'\n")),
        "demo1.cfg:3: Failed to parse UUID: not-a-uuid"
    );
    assert_eq!(parse_uuid("00000000-0000-0000-0000-00000000000g"), None);
    assert_eq!(parse_uuid("00000000x0000-0000-0000-000000000000"), None);
    assert_eq!(
        parse_uuid("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        Some([0xff; 16])
    );
}

#[test]
fn unknown_keys_warn() {
    let p = parse("name='a'\nkernel='k'\nvif=['bridge=xenbr0']\ncolour='blue'\ncolour='red'\n")
        .unwrap();
    assert_eq!(
        p.warnings,
        vec![
            "demo1.cfg:3: warning: `vif' is not supported by DualVisor yet; ignored".to_string(),
            "demo1.cfg:5: warning: unknown key `colour' ignored".to_string(),
        ]
    );
}

#[test]
fn syntax_errors_carry_the_file() {
    assert_eq!(
        err("name = 'demo1'\nkernel = 'k'\nmemory 64\n"),
        "demo1.cfg:3: expected '=' after 'memory', found value '64'"
    );
}

#[test]
fn overrides_win() {
    let text = with_overrides(
        "name='a'\nkernel='k'\nmemory=64",
        &["memory=96", "name=\"b\""],
    );
    let c = parse(&text).unwrap().config;
    assert_eq!((c.name.as_str(), c.memory_mib), ("b", 96));
}

#[test]
fn random_configs_never_panic() {
    let words = [
        "name",
        "kernel",
        "memory",
        "maxmem",
        "vcpus",
        "maxvcpus",
        "type",
        "builder",
        "on_crash",
        "uuid",
        "extra",
        "root",
        "cmdline",
        "=",
        "+=",
        "'pv'",
        "'hvm'",
        "'x'",
        "0",
        "1",
        "0x10",
        "99999999999999999999",
        "[",
        "]",
        ",",
        "\n",
        ";",
        "'destroy'",
        "#",
    ];
    let mut state: u64 = 0x1234_5678;
    for _ in 0..20_000 {
        let mut text = String::new();
        let n = state % 24;
        for _ in 0..n {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(words[(state % words.len() as u64) as usize]);
            text.push(' ');
        }
        state = state.wrapping_add(0x9e37_79b9);
        match parse(&text) {
            Ok(p) => {
                assert!(p.config.memory_mib <= p.config.maxmem_mib);
                assert!(p.config.vcpus >= 1 && p.config.vcpus <= p.config.maxvcpus);
                assert!(!p.config.name.is_empty() && !p.config.kernel.is_empty());
            }
            Err(e) => assert!(!e.message.is_empty()),
        }
    }
}
