//! Interactive serial-console scenarios: the `console` test guest reads lines the runner
//! types (on Xen 4.17 and on DualVisor), and on DualVisor the administrator also switches
//! input to the hypervisor with CTRL-a x3, presses the debug keys and switches back.

use std::path::{Path, PathBuf};

use crate::oracle::dualvisor_guest;
use crate::pattern::Pattern;
use crate::qemu::QemuCommand;
use crate::scenario::{Planned, Scenario};
use crate::script::Script;

/// The guest's name (`build/guests/console.elf`).
pub const GUEST: &str = "console";
/// The first line typed (the guest checks it).
pub const FIRST_LINE: &str = "hello dualvisor 42";
/// The second line typed (the guest checks it).
pub const SECOND_LINE: &str = "still typing after the keys";
/// CTRL-a three times: switches serial input between dom0 and the hypervisor.
pub const SWITCH: &[u8] = b"\x01\x01\x01";
/// Xen 4.17's line when input goes to the hypervisor.
pub const TO_XEN: &str =
    "(XEN) *** Serial input to Xen (type 'CTRL-a' three times to switch input)";
/// Xen 4.17's line when input goes to dom0.
pub const TO_DOM0: &str =
    "(XEN) *** Serial input to DOM0 (type 'CTRL-a' three times to switch input)";

fn typed(line: &str) -> Vec<u8> {
    let mut v = line.as_bytes().to_vec();
    v.push(b'\r');
    v
}

fn echo(line: &str) -> Pattern {
    Pattern::contains(format!("console: you typed '{line}'"))
}

/// The first line typed at the guest's first prompt, up to its second prompt.
fn first_line() -> Script {
    Script::new()
        .wait_for(Pattern::contains("console: type a line> "))
        .send(typed(FIRST_LINE))
        .wait_for(echo(FIRST_LINE))
        .wait_for(Pattern::contains("console: type another line> "))
}

/// The console guest's script when it runs as a plain test guest: type both lines.
pub fn plain_script() -> Script {
    first_line()
        .send(typed(SECOND_LINE))
        .wait_for(echo(SECOND_LINE))
}

/// Puts `qemu`'s serial port under a script if guest `stem` needs someone typing.
pub fn with_guest_script(stem: &str, qemu: QemuCommand) -> QemuCommand {
    if stem == GUEST {
        qemu.interactive(plain_script())
    } else {
        qemu
    }
}

/// The debug-keys session: switch to the hypervisor, press h, q, r, l, switch back. Each
/// wait names a short distinctive part of a line (the exact formats are host-tested in
/// `xen_core::debugkeys`); the switch lines are matched whole, in Xen 4.17's wording.
pub fn keys_script() -> Script {
    first_line()
        .send(SWITCH)
        .wait_for(Pattern::contains(TO_XEN))
        .send("h")
        .wait_for(Pattern::contains(
            "'h' pressed -> showing installed handlers",
        ))
        .wait_for(Pattern::contains("key 'q' (ascii '71')"))
        .wait_for(Pattern::contains("key 'r' (ascii '72')"))
        .send("q")
        .wait_for(Pattern::contains("'q' pressed -> dumping domain info"))
        .wait_for(Pattern::contains("General information for domain 0:"))
        .wait_for(Pattern::contains("privileged=1"))
        .wait_for(Pattern::contains("VCPU0: CPU1 online=1"))
        .send("r")
        .wait_for(Pattern::contains("'r' pressed -> dumping run queues"))
        .wait_for(Pattern::contains("CPU[01] current="))
        .send("l")
        .wait_for(Pattern::contains("'l' pressed -> dumping lockstep state"))
        .wait_for(Pattern::contains("leader CPU1 follower CPU2"))
        .wait_for(Pattern::contains(
            "(XEN) roles now: CPU0 coordinator, CPU1 leader, CPU2 follower",
        ))
        .wait_for(Pattern::contains("(XEN) health: "))
        .wait_for(Pattern::contains("(XEN) stats: transactions "))
        .send(SWITCH)
        .wait_for(Pattern::contains(TO_DOM0))
        .send(typed(SECOND_LINE))
        .wait_for(echo(SECOND_LINE))
}

/// `dualvisor-console-keys`: the console guest on DualVisor with the debug-keys session.
pub fn keys_scenario(guest: &Path, p: &crate::scenario::Paths) -> Scenario {
    let mut s = dualvisor_guest(p, guest);
    s.name = "dualvisor-console-keys".into();
    s.qemu = s.qemu.interactive(keys_script());
    s
}

/// The debug-keys scenario if the console guest is among `guests`.
pub fn console_scenarios(p: &crate::scenario::Paths, guests: &[PathBuf]) -> Vec<Planned> {
    guests
        .iter()
        .filter(|g| g.file_stem().is_some_and(|s| s == GUEST))
        .map(|g| Planned::Run(Box::new(keys_scenario(g, p))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Serial;
    use crate::scenario::Paths;
    use crate::script::{ScriptAction, ScriptStep};
    use std::time::Duration;

    #[test]
    fn guest_and_runner_agree_on_the_lines() {
        let src = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/src/bin/console.rs"),
        )
        .expect("console guest source");
        assert!(src.contains(&format!("FIRST_LINE: &str = \"{FIRST_LINE}\"")));
        assert!(src.contains(&format!("SECOND_LINE: &str = \"{SECOND_LINE}\"")));
    }

    #[test]
    fn only_the_console_guest_gets_a_script() {
        let q = QemuCommand::kernel("x.elf", "", vec![]);
        assert!(matches!(
            with_guest_script("hello", q.clone()).serial,
            Serial::Stdio
        ));
        assert!(matches!(
            with_guest_script(GUEST, q).serial,
            Serial::Script(_)
        ));
    }

    #[test]
    fn keys_scenario_exists_only_with_the_guest() {
        let p = Paths::new("/repo");
        let none = console_scenarios(&p, &[PathBuf::from("/repo/build/guests/hello.elf")]);
        assert!(none.is_empty());
        let v = console_scenarios(&p, &[PathBuf::from("/repo/build/guests/console.elf")]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name(), "dualvisor-console-keys");
    }

    /// Plays a whole transcript through the keys script: it must send exactly the keys an
    /// administrator would, in order, and finish.
    #[test]
    fn keys_script_plays_against_a_transcript() {
        let mut sc = keys_script();
        let transcript: &[(&str, &[u8])] = &[
            ("console: type a line> ", b"hello dualvisor 42\r"),
            (
                "\r\nconsole: you typed 'hello dualvisor 42'\r\nconsole: type another line> ",
                SWITCH,
            ),
            (&format!("{TO_XEN}\r\n"), b"h"),
            (
                "(XEN) 'h' pressed -> showing installed handlers\r\n(XEN)  key 'h' (ascii '68') => show this message\r\n(XEN)  key 'q' (ascii '71') => dump domain (and guest debug) info\r\n(XEN)  key 'r' (ascii '72') => dump run queues\r\n",
                b"q",
            ),
            (
                "(XEN) 'q' pressed -> dumping domain info (now = 5)\r\n(XEN) General information for domain 0:\r\n(XEN)     privileged=1 paused=0\r\n(XEN)   VCPU0: CPU1 online=1 running kernel cr3=0x1\r\n",
                b"r",
            ),
            ("(XEN) 'r' pressed -> dumping run queues\r\n(XEN) CPU[01] current=d0v0, runq: 0\r\n", b"l"),
            (
                "(XEN) 'l' pressed -> dumping lockstep state\r\n(XEN) lockstep: pair 0 leader CPU1 follower CPU2, coordinator CPU0 (at boot)\r\n(XEN) roles now: CPU0 coordinator, CPU1 leader, CPU2 follower\r\n(XEN) health: protected\r\n(XEN) stats: transactions 9\r\n",
                SWITCH,
            ),
            (&format!("{TO_DOM0}\r\n"), b"still typing after the keys\r"),
        ];
        let mut t = 0;
        for (output, keys) in transcript {
            sc.feed(output.as_bytes());
            t += 1;
            assert_eq!(
                sc.poll(Duration::from_secs(t)),
                ScriptAction::Send(keys.to_vec()),
                "after {output:?}"
            );
        }
        sc.feed(b"\r\nconsole: you typed 'still typing after the keys'\r\n");
        assert_eq!(sc.poll(Duration::from_secs(t + 1)), ScriptAction::Done);
        assert!(sc
            .steps()
            .iter()
            .all(|s| !matches!(s, ScriptStep::WaitFor { timeout, .. } if timeout.is_zero())));
    }
}
