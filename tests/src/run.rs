//! Runs one QEMU process under a hard timeout, capturing the serial log to a file, and
//! stops it by PID when the [`Monitor`] decides.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::exit::QemuExit;
use crate::monitor::{Expectation, Monitor, Step, Verdict};
use crate::qemu::{QemuCommand, Serial};
use crate::script::{Script, ScriptAction};

/// How often the log file and the process are polled.
const POLL: Duration = Duration::from_millis(50);
/// Extra time `timeout(1)` grants beyond the scenario's own limit: it only fires if this
/// runner itself dies, so that no QEMU outlives it.
const OUTER_GRACE_SECS: u64 = 30;
/// How long QEMU gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// Everything a finished run left behind.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Pass or fail, with the reason.
    pub verdict: Verdict,
    /// How QEMU ended, if it ended by itself.
    pub exit: Option<QemuExit>,
    /// The serial log (also saved in the log file).
    pub log: Vec<u8>,
    /// QEMU's own stderr/stdout (error messages), trimmed.
    pub qemu_output: String,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The QEMU command line, shell-quoted, to reproduce the run by hand.
    pub command: String,
}

/// A spawned QEMU that is stopped (by PID) when dropped, so none outlives its run.
struct Running {
    child: Child,
}

impl Running {
    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The child is `timeout(1)` wrapping QEMU: SIGTERM makes it forward the signal to
            // QEMU (and SIGKILL it after --kill-after). The PID stays ours until we reap it.
            let pid = self.child.id().to_string();
            let _ = Command::new("sh")
                .args(["-c", "kill -TERM \"$1\"", "sh", &pid])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let start = Instant::now();
            while start.elapsed() < TERM_GRACE {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                thread::sleep(POLL);
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Appends whatever `file` has gained since the last call to `log` and returns the new bytes.
fn read_new(file: &mut File, log: &mut Vec<u8>) -> std::io::Result<usize> {
    let before = log.len();
    file.read_to_end(log)?;
    Ok(log.len() - before)
}

/// The runner's end of a scripted serial port.
struct Console {
    script: Script,
    socket: PathBuf,
    stream: Option<UnixStream>,
}

/// How long QEMU gets to create its serial socket.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);

impl Console {
    /// Connects to QEMU's socket (QEMU starts the machine once connected) and drains what
    /// it sends in a thread (the log file gets a copy through QEMU's `logfile=`).
    fn connect(&mut self, child: &mut Child) -> Result<(), String> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(&self.socket) {
                Ok(s) => break s,
                Err(e) => {
                    if start.elapsed() > CONNECT_LIMIT || !matches!(child.try_wait(), Ok(None)) {
                        return Err(format!(
                            "cannot connect to the serial socket {}: {e}",
                            self.socket.display()
                        ));
                    }
                    thread::sleep(POLL);
                }
            }
        };
        let mut reader = stream
            .try_clone()
            .map_err(|e| format!("cannot clone the serial socket: {e}"))?;
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        });
        self.stream = Some(stream);
        Ok(())
    }

    /// Feeds new output to the script and types what it asks for.
    fn drive(&mut self, fresh: &[u8], now: Duration) -> Result<(), String> {
        self.script.feed(fresh);
        loop {
            match self.script.poll(now) {
                ScriptAction::Send(bytes) => {
                    let Some(s) = self.stream.as_mut() else {
                        return Err("the serial socket is not connected".into());
                    };
                    s.write_all(&bytes)
                        .map_err(|e| format!("cannot write to the serial socket: {e}"))?;
                }
                ScriptAction::Wait | ScriptAction::Done => return Ok(()),
                ScriptAction::Failed(reason) => return Err(reason),
            }
        }
    }
}

/// The file next to the serial log that receives QEMU's own output.
pub fn qemu_output_path(log_path: &Path) -> PathBuf {
    log_path.with_extension("qemu.txt")
}

fn fail(command: String, reason: String) -> RunOutcome {
    RunOutcome {
        verdict: Verdict::Fail(reason),
        exit: None,
        log: Vec::new(),
        qemu_output: String::new(),
        elapsed: Duration::ZERO,
        command,
    }
}

/// Runs `qemu` with its serial port written to `log_path`, in working directory `cwd`,
/// until `exp` passes, fails or times out. QEMU is always stopped before this returns.
pub fn run(qemu: &QemuCommand, exp: &Expectation, log_path: &Path, cwd: &Path) -> RunOutcome {
    let (qemu, mut script) = match &qemu.serial {
        Serial::Script(sc) => {
            let name = log_path.file_stem().map_or_else(
                || "serial".to_string(),
                |s| s.to_string_lossy().into_owned(),
            );
            let sock =
                std::env::temp_dir().join(format!("qemu-tests-{}-{name}.sock", std::process::id()));
            let _ = fs::remove_file(&sock);
            (
                qemu.clone().serial_socket(&sock, log_path),
                Some(Console {
                    script: sc.clone(),
                    socket: sock,
                    stream: None,
                }),
            )
        }
        _ => (qemu.clone().serial_file(log_path), None),
    };
    let command = qemu.shell_line().unwrap_or_else(|e| format!("<{e}>"));
    let args = match qemu.args() {
        Ok(a) => a,
        Err(e) => return fail(command, format!("bad QEMU command: {e}")),
    };
    if let Some(dir) = log_path.parent() {
        if let Err(e) = fs::create_dir_all(dir) {
            return fail(command, format!("cannot create {}: {e}", dir.display()));
        }
    }
    let mut log_file = match File::create(log_path).and_then(|_| File::open(log_path)) {
        Ok(f) => f,
        Err(e) => {
            return fail(
                command,
                format!("cannot create {}: {e}", log_path.display()),
            )
        }
    };
    let out_path = qemu_output_path(log_path);
    let out = match File::create(&out_path).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(pair) => pair,
        Err(e) => {
            return fail(
                command,
                format!("cannot create {}: {e}", out_path.display()),
            )
        }
    };
    let outer = (exp.timeout.as_secs() + OUTER_GRACE_SECS).to_string();
    let spawned = Command::new("timeout")
        .args(["--foreground", "--kill-after=5", &outer, &qemu.binary])
        .args(&args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.0))
        .stderr(Stdio::from(out.1))
        .spawn();
    let start = Instant::now();
    let mut running = match spawned {
        Ok(child) => Running { child },
        Err(e) => {
            return fail(
                command,
                format!("cannot start timeout(1) + {}: {e}", qemu.binary),
            )
        }
    };

    if let Some(c) = script.as_mut() {
        if let Err(e) = c.connect(&mut running.child) {
            drop(running);
            return fail(command, e);
        }
    }

    let mut monitor = Monitor::new(exp);
    let mut log = Vec::new();
    let mut exit = None;
    let verdict = loop {
        let fresh = log.len();
        if let Err(e) = read_new(&mut log_file, &mut log) {
            break Verdict::Fail(format!("cannot read {}: {e}", log_path.display()));
        }
        if exit.is_none() {
            match running.child.try_wait() {
                Ok(Some(status)) => {
                    exit = Some(QemuExit::from_status(status));
                    // QEMU has exited: everything it wrote is in the file now.
                    if let Err(e) = read_new(&mut log_file, &mut log) {
                        break Verdict::Fail(format!("cannot read {}: {e}", log_path.display()));
                    }
                }
                Ok(None) => {}
                Err(e) => break Verdict::Fail(format!("cannot wait for QEMU: {e}")),
            }
        }
        monitor.feed(&log[fresh..]);
        if let Some(c) = script.as_mut() {
            if let Err(reason) = c.drive(&log[fresh..], start.elapsed()) {
                break Verdict::Fail(reason);
            }
        }
        let pending = script.as_ref().and_then(|c| c.script.pending());
        match (monitor.step(start.elapsed(), exit), pending) {
            (Step::Continue, _) => thread::sleep(POLL),
            // Every marker is there, but the administrator has not finished typing.
            (Step::Stop(Verdict::Pass), Some(_)) if exit.is_none() => thread::sleep(POLL),
            (Step::Stop(Verdict::Pass), Some(step)) => {
                break Verdict::Fail(format!("QEMU ended before {step}"))
            }
            (Step::Stop(v), _) => break v,
        }
    };
    if let Some(c) = script.as_ref() {
        let _ = fs::remove_file(&c.socket);
    }
    running.stop();
    drop(running);
    let _ = read_new(&mut log_file, &mut log);
    let qemu_output = fs::read_to_string(&out_path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    RunOutcome {
        verdict,
        exit,
        log,
        qemu_output,
        elapsed: start.elapsed(),
        command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::End;
    use crate::pattern::Pattern;

    /// A stand-in "QEMU": a shell script that finds its `-serial file:PATH` argument and
    /// runs `body` with `$LOG` set to that path.
    fn fake_qemu(dir: &Path, body: &str) -> QemuCommand {
        let script = dir.join("fake-qemu.sh");
        let text = format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in file:*) LOG=\"${{a#file:}}\";; esac; done\n{body}\n"
        );
        fs::write(&script, text).expect("write script");
        let _ = Command::new("chmod").arg("+x").arg(&script).status();
        let mut q = QemuCommand::kernel("k.elf", "x", vec![]);
        q.binary = script.to_str().expect("utf8").to_string();
        q
    }

    /// A scratch directory removed when dropped.
    struct TmpDir(PathBuf);

    impl std::ops::Deref for TmpDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tmpdir(name: &str) -> TmpDir {
        let d = std::env::temp_dir().join(format!("qemu-tests-run-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        TmpDir(d)
    }

    fn exp(expect: &[&str], end: End, secs: u64) -> Expectation {
        Expectation {
            expect: expect.iter().map(|s| Pattern::contains(*s)).collect(),
            fail: vec![Pattern::contains("FATAL")],
            stop: vec![],
            end,
            timeout: Duration::from_secs(secs),
        }
    }

    #[test]
    fn exit_status_and_markers_pass() {
        let d = tmpdir("exit");
        let q = fake_qemu(&d, "printf '(XEN) selftest a: PASS\\n' > \"$LOG\"; exit 33");
        let out = run(
            &q,
            &exp(&["selftest a: PASS"], End::Exit(33), 20),
            &d.join("a.log"),
            &d,
        );
        assert_eq!(out.verdict, Verdict::Pass, "{out:?}");
        assert_eq!(out.exit, Some(QemuExit::Code(33)));
        assert_eq!(
            fs::read(d.join("a.log")).expect("log"),
            b"(XEN) selftest a: PASS\n"
        );
    }

    #[test]
    fn still_running_process_is_stopped_after_markers() {
        let d = tmpdir("kill");
        let q = fake_qemu(
            &d,
            "echo '(XEN) idle' > \"$LOG\"; echo $$ > \"$LOG.pid\"; exec sleep 300",
        );
        let end = End::KillWhenSeen {
            linger: Duration::from_millis(200),
        };
        let out = run(&q, &exp(&["idle"], end, 20), &d.join("k.log"), &d);
        assert_eq!(out.verdict, Verdict::Pass, "{out:?}");
        assert!(out.elapsed < Duration::from_secs(15), "{:?}", out.elapsed);
        let pid = fs::read_to_string(d.join("k.log.pid")).expect("pid");
        let alive = Command::new("sh")
            .args(["-c", "kill -0 \"$1\" 2>/dev/null", "sh", pid.trim()])
            .status()
            .expect("sh");
        assert!(!alive.success(), "fake QEMU {pid} still running");
    }

    #[test]
    fn timeout_kills_and_fails() {
        let d = tmpdir("timeout");
        let q = fake_qemu(&d, "echo '(XEN) booting' > \"$LOG\"; exec sleep 300");
        let out = run(&q, &exp(&["never"], End::Exit(33), 1), &d.join("t.log"), &d);
        match &out.verdict {
            Verdict::Fail(r) => assert!(r.contains("timed out after 1s"), "{r}"),
            v => panic!("{v:?}"),
        }
        assert_eq!(out.log, b"(XEN) booting\n");
    }

    #[test]
    fn qemu_errors_are_captured() {
        let d = tmpdir("stderr");
        let q = fake_qemu(&d, "echo 'qemu: could not load kernel' >&2; exit 1");
        let out = run(
            &q,
            &exp(&["banner"], End::Exit(33), 20),
            &d.join("e.log"),
            &d,
        );
        assert_eq!(out.qemu_output, "qemu: could not load kernel");
        assert_eq!(out.exit, Some(QemuExit::Code(1)));
        assert!(matches!(out.verdict, Verdict::Fail(_)));
    }

    #[test]
    fn missing_binary_fails_cleanly() {
        let d = tmpdir("missing");
        let mut q = QemuCommand::kernel("k.elf", "x", vec![]);
        q.binary = d.join("no-such-qemu").to_str().expect("utf8").to_string();
        let out = run(
            &q,
            &exp(&["banner"], End::Exit(33), 20),
            &d.join("m.log"),
            &d,
        );
        assert!(matches!(out.verdict, Verdict::Fail(_)));
        assert_eq!(out.exit, Some(QemuExit::Code(127)));
    }
}
