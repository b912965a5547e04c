//! Tests of the `xl` command-line parser.

use super::*;
use alloc::vec;

fn p(line: &str) -> Result<Command, UsageError> {
    let words = split_words(line).unwrap();
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    parse(&refs)
}

fn name(n: &str) -> DomainRef {
    DomainRef::Name(n.to_string())
}

#[test]
fn create_with_options_anywhere() {
    let want = Command::Create {
        config: "/etc/xen/demo1.cfg".into(),
        console: true,
        paused: false,
        vars: vec![],
    };
    assert_eq!(p("create /etc/xen/demo1.cfg -c"), Ok(want.clone()));
    assert_eq!(p("create -c /etc/xen/demo1.cfg"), Ok(want));
    assert_eq!(
        p("create -pc demo.cfg memory=96 'name=\"x y\"'"),
        Ok(Command::Create {
            config: "demo.cfg".into(),
            console: true,
            paused: true,
            vars: vec!["memory=96".into(), "name=\"x y\"".into()],
        })
    );
    assert_eq!(
        p("create -- -odd.cfg -c"),
        Ok(Command::Create {
            config: "-odd.cfg".into(),
            console: false,
            paused: false,
            vars: vec!["-c".into()],
        })
    );
}

#[test]
fn domain_verbs() {
    assert_eq!(
        p("destroy demo1"),
        Ok(Command::Destroy {
            domain: name("demo1")
        })
    );
    assert_eq!(
        p("pause 3"),
        Ok(Command::Pause {
            domain: DomainRef::Id(3)
        })
    );
    assert_eq!(
        p("unpause demo1"),
        Ok(Command::Unpause {
            domain: name("demo1")
        })
    );
    assert_eq!(
        p("console 7"),
        Ok(Command::Console {
            domain: DomainRef::Id(7)
        })
    );
    assert_eq!(
        p("shutdown -w demo1"),
        Ok(Command::Shutdown {
            target: Target::One(name("demo1")),
            wait: true
        })
    );
    assert_eq!(
        p("shutdown --all --wait"),
        Ok(Command::Shutdown {
            target: Target::All,
            wait: true
        })
    );
    assert_eq!(
        p("reboot 2"),
        Ok(Command::Reboot {
            target: Target::One(DomainRef::Id(2)),
            wait: false
        })
    );
    assert_eq!(p("list"), Ok(Command::List { domain: None }));
    assert_eq!(
        p("li Domain-0"),
        Ok(Command::List {
            domain: Some(name("Domain-0"))
        })
    );
    assert_eq!(
        p("vcpu-list 0 demo1"),
        Ok(Command::VcpuList {
            domains: vec![DomainRef::Id(0), name("demo1")]
        })
    );
    assert_eq!(p("info"), Ok(Command::Info { name: None }));
    assert_eq!(
        p("info free_memory"),
        Ok(Command::Info {
            name: Some("free_memory".into())
        })
    );
    assert_eq!(
        p("domid demo1"),
        Ok(Command::Domid {
            name: "demo1".into()
        })
    );
    assert_eq!(p("domname 3"), Ok(Command::Domname { domid: 3 }));
    assert_eq!(p("domname 3abc"), Ok(Command::Domname { domid: 3 }));
    assert_eq!(p("dmesg"), Ok(Command::Dmesg { clear: false }));
    assert_eq!(p("dmesg -c"), Ok(Command::Dmesg { clear: true }));
    assert_eq!(p("dmesg --clear"), Ok(Command::Dmesg { clear: true }));
    assert_eq!(
        p("uptime -s demo1"),
        Ok(Command::Uptime {
            short: true,
            domains: vec![name("demo1")]
        })
    );
    assert_eq!(p("-v list"), Ok(Command::List { domain: None }));
}

#[test]
fn lockstep_verbs() {
    assert_eq!(
        p("lockstep status"),
        Ok(Command::Lockstep(LockstepCmd::Status))
    );
    assert_eq!(p("lockstep on"), Ok(Command::Lockstep(LockstepCmd::On)));
    assert_eq!(p("lockstep off"), Ok(Command::Lockstep(LockstepCmd::Off)));
    for k in LockstepKind::ALL {
        assert_eq!(
            p(&format!("lockstep inject {} 100", k.name())),
            Ok(Command::Lockstep(LockstepCmd::Inject {
                kind: k,
                count: 100,
                wait: false,
                pair: 0,
            }))
        );
    }
    assert_eq!(
        p("lockstep inject -w effects 100"),
        Ok(Command::Lockstep(LockstepCmd::Inject {
            kind: LockstepKind::Effects,
            count: 100,
            wait: true,
            pair: 0,
        }))
    );
    assert_eq!(
        p("lockstep inject -w effects 10 pair=1"),
        Ok(Command::Lockstep(LockstepCmd::Inject {
            kind: LockstepKind::Effects,
            count: 10,
            wait: true,
            pair: 1,
        }))
    );
    let req = LockstepCmd::Inject {
        kind: LockstepKind::Effects,
        count: 100,
        wait: true,
        pair: 3,
    }
    .request(0, 0);
    assert_eq!(
        req,
        LockstepRequest::Inject {
            kind: LockstepKind::Effects,
            count: 100,
            pair: 3
        }
    );
    assert_eq!(
        LockstepCmd::Status.request(0x1000, 464),
        LockstepRequest::Status {
            buffer: 0x1000,
            size: 464
        }
    );
    use dom0_interface::lockstep_ctl::{LOCKSTEP_CORE_FOLLOWER, LOCKSTEP_CORE_LEADER};
    for (w, core) in [
        ("leader", LOCKSTEP_CORE_LEADER),
        ("follower", LOCKSTEP_CORE_FOLLOWER),
    ] {
        assert_eq!(
            p(&format!("lockstep fail {w}")),
            Ok(Command::Lockstep(LockstepCmd::Fail { core, pair: 0 }))
        );
        assert_eq!(
            p(&format!("lockstep fail {w} pair=2")),
            Ok(Command::Lockstep(LockstepCmd::Fail { core, pair: 2 }))
        );
        assert_eq!(
            LockstepCmd::Fail { core, pair: 2 }.request(0, 0),
            LockstepRequest::Fail { core, pair: 2 }
        );
    }
    let err = |line: &str| p(line).unwrap_err();
    for bad in [
        "lockstep fail",
        "lockstep fail coordinator",
        "lockstep fail follower now",
        "lockstep fail pair=1",
    ] {
        assert_eq!(
            err(bad).stderr,
            "'xl lockstep fail' requires one core: leader or follower [pair=<P>].\n\n",
            "{bad}"
        );
    }
    for (bad, msg) in [
        (
            "lockstep fail follower pair=",
            "invalid pair '': expected a pair number (0, 1, ...).\n\n",
        ),
        (
            "lockstep fail follower pair=-1",
            "invalid pair '-1': expected a pair number (0, 1, ...).\n\n",
        ),
        (
            "lockstep inject effects 1 pair=one",
            "invalid pair 'one': expected a pair number (0, 1, ...).\n\n",
        ),
        (
            "lockstep on pair=1",
            "pair=<P> applies to 'xl lockstep inject' and 'fail' only.\n\n",
        ),
        (
            "lockstep status pair=0",
            "pair=<P> applies to 'xl lockstep inject' and 'fail' only.\n\n",
        ),
        (
            "lockstep inject effects pair=1",
            "'xl lockstep inject' requires [-w] <Kind> <Count> [pair=<P>].\n\n",
        ),
        (
            "lockstep inject effects 10 pair=1 pair=1",
            "'xl lockstep inject' requires [-w] <Kind> <Count> [pair=<P>].\n\n",
        ),
    ] {
        assert_eq!(err(bad).stderr, msg, "{bad}");
    }
    assert_eq!(
        err("lockstep -w status").stderr,
        "-w applies to 'xl lockstep inject' only.\n\n"
    );
    let e = err("lockstep inject cosmic-ray 1");
    assert_eq!(
        e.stderr,
        "unknown fault kind 'cosmic-ray'; kinds: leader-reg, follower-reg, replica-state, effects, digest, mailbox, hang.\n\n"
    );
    assert_eq!(e.exit_code, 2);
    assert!(e.stdout.starts_with("Usage: xl [-v] lockstep "));
    for bad in ["0", "x", "4294967296", "+5", "", "1.5"] {
        let e = err(&format!("lockstep inject effects '{bad}'"));
        assert!(
            e.stderr.starts_with(&format!("invalid count '{bad}'")),
            "{bad}: {e:?}"
        );
    }
    // A negative count reads as an option, as getopt sees it.
    assert_eq!(
        err("lockstep inject effects -1").stderr,
        "option `1' not supported.\n"
    );
    assert_eq!(
        err("lockstep inject effects").stderr,
        "'xl lockstep inject' requires [-w] <Kind> <Count> [pair=<P>].\n\n"
    );
    assert_eq!(
        err("lockstep status now").stderr,
        "'xl lockstep status' takes no arguments.\n\n"
    );
    assert_eq!(
        err("lockstep sideways").stderr,
        "unknown lockstep command 'sideways' (status, on, off, inject, fail).\n\n"
    );
    assert_eq!(
        err("lockstep").stderr,
        "'xl lockstep' requires at least 1 argument.\n\n"
    );
}

#[test]
fn usage_errors_as_xl_prints_them() {
    let e = p("pause").unwrap_err();
    assert_eq!(e.stderr, "'xl pause' requires at least 1 argument.\n\n");
    assert_eq!(e.stdout, help(Some("pause")));
    assert_eq!(e.exit_code, 2);
    let e = p("create").unwrap_err();
    assert_eq!(e.stderr, "'xl create' requires at least 1 argument.\n\n");
    let e = p("destroy -x demo1").unwrap_err();
    assert_eq!(
        (e.stderr.as_str(), e.exit_code),
        ("option `x' not supported.\n", 2)
    );
    let e = p("dmesg --frobnicate").unwrap_err();
    assert_eq!(e.stderr, "option `--frobnicate' not supported.\n");
    let e = p("frobnicate").unwrap_err();
    assert_eq!(
        (e.stderr.as_str(), e.exit_code),
        ("command not implemented\n", 1)
    );
    let e = p("shutdown").unwrap_err();
    assert_eq!(
        (e.stderr.as_str(), e.exit_code),
        ("You must specify -a or a domain id.\n\n", 1)
    );
    let e = p("shutdown -a demo1").unwrap_err();
    assert_eq!(e.stderr, "You must specify -a or a domain id.\n\n");
    let e = p("domname abc").unwrap_err();
    assert_eq!(
        (e.stderr.as_str(), e.exit_code),
        ("Invalid domain id.\n\n", 1)
    );
    let e = p("list a b").unwrap_err();
    assert_eq!(
        (e.stderr.as_str(), e.stdout.clone(), e.exit_code),
        ("", help(Some("list")), 1)
    );
    let e = p("").unwrap_err();
    assert_eq!((e.stdout.clone(), e.exit_code), (help(None), 1));
    let e = p("-x list").unwrap_err();
    assert_eq!(e.stderr, "unknown global option\n");
    // `dom` is ambiguous (domid, domname).
    assert_eq!(p("dom 3").unwrap_err().stderr, "command not implemented\n");
}

#[test]
fn help_requests() {
    assert_eq!(p("help"), Ok(Command::Help { verb: None }));
    assert_eq!(
        p("help list"),
        Ok(Command::Help {
            verb: Some("list".into())
        })
    );
    assert_eq!(p("-h"), Ok(Command::Help { verb: None }));
    assert_eq!(
        p("create -h"),
        Ok(Command::Help {
            verb: Some("create".into())
        })
    );
    assert_eq!(
        p("pause --help"),
        Ok(Command::Help {
            verb: Some("pause".into())
        })
    );
    assert_eq!(
        p("shutdown -h"),
        Ok(Command::Help {
            verb: Some("shutdown".into())
        })
    );
    assert_eq!(
        p("lockstep -h"),
        Ok(Command::Help {
            verb: Some("lockstep".into())
        })
    );
}

#[test]
fn domain_refs() {
    assert_eq!(DomainRef::parse("0"), DomainRef::Id(0));
    assert_eq!(DomainRef::parse("007"), DomainRef::Id(7));
    assert_eq!(DomainRef::parse("99999999999"), DomainRef::Id(u32::MAX));
    assert_eq!(DomainRef::parse("3a"), name("3a"));
    assert_eq!(DomainRef::parse(""), name(""));
    let doms = [(0, "Domain-0"), (3, "demo1")];
    assert_eq!(name("demo1").resolve(&doms), Ok(3));
    assert_eq!(DomainRef::Id(42).resolve(&doms), Ok(42));
    assert_eq!(
        name("nope").resolve(&doms),
        Err("nope is an invalid domain identifier (rc=-6)\n".into())
    );
}

#[test]
fn word_splitting() {
    assert_eq!(split_words("  xl   list  ").unwrap(), vec!["xl", "list"]);
    assert_eq!(
        split_words("a 'b c' \"d \\\" e\" f\\ g ''").unwrap(),
        vec!["a", "b c", "d \" e", "f g", ""]
    );
    assert!(split_words("a 'b").is_err());
    assert!(split_words("a \"b").is_err());
    assert_eq!(split_words("").unwrap(), Vec::<String>::new());
}

#[test]
fn random_command_lines_never_panic() {
    let words = [
        "create",
        "list",
        "destroy",
        "shutdown",
        "reboot",
        "pause",
        "unpause",
        "console",
        "vcpu-list",
        "info",
        "domid",
        "domname",
        "dmesg",
        "uptime",
        "lockstep",
        "help",
        "inject",
        "status",
        "effects",
        "-c",
        "-a",
        "-w",
        "-h",
        "--",
        "--all",
        "-",
        "-x",
        "0",
        "4294967296",
        "demo1",
        "'",
        "\"",
        "-vv",
        "--he",
        "on",
        "off",
        "d",
        "l",
        "",
    ];
    let mut s: u64 = 77;
    for _ in 0..20_000 {
        let mut line = String::new();
        for _ in 0..(s % 6) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            line.push_str(words[(s % words.len() as u64) as usize]);
            line.push(' ');
        }
        s = s.wrapping_add(0x9e37_79b9);
        if let Ok(ws) = split_words(&line) {
            let refs: Vec<&str> = ws.iter().map(String::as_str).collect();
            if let Err(e) = parse(&refs) {
                assert!(e.exit_code != 0);
                assert!(!(e.stderr.is_empty() && e.stdout.is_empty()));
            }
        }
    }
}
