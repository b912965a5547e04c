//! `lockstep`: DualVisor's lockstep control sysctl from dom0, while dom0 keeps making
//! hypercalls. Status (mode, roles, counters); every fault kind injected N times (`effects`
//! 100 times) into the following transactions: each injection classified, the detectable
//! kinds (`effects`, `digest`, `hang`) all detected and recovered, nothing escalated, silent
//! or crashed, and every hypercall result and guest buffer exactly right throughout; an
//! off/on round trip (transactions keep running once, then twice again, and a `digest`
//! injection after it proves the follower is back in lockstep); the error answers.
//!
//! On Xen 4.17 the sub-op does not exist: `do_sysctl` answers its unknown command with
//! `-ENOSYS`, and the guest reports `Test result: SKIP`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::hypercall::BadPtr;
use guest_rt::lockstep_ctl::{
    self as ls, LockstepKind, LockstepRequest, LockstepStatus, XenSysctlLockstep,
};
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info, skip};
use guest_rt::{println, version, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

fn main(_si: &StartInfo) {
    println!("lockstep: DualVisor lockstep control test guest");
    let st = match ls::status() {
        Ok((st, written)) => {
            check_eq(
                "status: bytes written",
                written as usize,
                core::mem::size_of::<LockstepStatus>(),
            );
            st
        }
        Err(Errno::ENOSYS) => {
            skip(format_args!(
                "the lockstep sysctl answers -ENOSYS: not DualVisor (Xen has no such sub-op)"
            ));
            return;
        }
        Err(e) => {
            check_eq("lockstep status", Err::<(), Errno>(e), Ok(()));
            return;
        }
    };
    show(&st);
    check_eq(
        "status: layout version",
        st.version,
        ls::LOCKSTEP_CTL_VERSION,
    );
    error_checks();
    if st.enabled != ls::LOCKSTEP_MODE_ON {
        skip(format_args!(
            "lockstep is not on (mode {}): no pair to inject into",
            st.enabled
        ));
        return;
    }
    let leaders = (0..st.nr_cpus as usize)
        .filter(|&c| {
            st.role(c)
                .is_some_and(|r| r & ls::LOCKSTEP_ROLE_LEADER != 0)
        })
        .count();
    let followers = (0..st.nr_cpus as usize)
        .filter(|&c| {
            st.role(c)
                .is_some_and(|r| r & ls::LOCKSTEP_ROLE_FOLLOWER != 0)
        })
        .count();
    // One pair per leader: `-smp 3` and `-smp 4` have one, `-smp 5` two.
    check(
        "status: a follower for every leader",
        leaders >= 1 && followers == leaders,
    );
    check("status: replica bytes reported", st.replica_bytes > 0);
    check("status: transactions counted", st.transactions > 0);

    for (kind, n) in [
        (LockstepKind::Effects, 100),
        (LockstepKind::Digest, 10),
        (LockstepKind::Mailbox, 10),
        (LockstepKind::LeaderReg, 10),
        (LockstepKind::FollowerReg, 10),
        (LockstepKind::ReplicaState, 10),
        (LockstepKind::Hang, 3),
    ] {
        inject_while_running(kind, n);
    }
    off_on_round_trip();
    if let Ok((st, _)) = ls::status() {
        show(&st);
    }
}

fn show(st: &LockstepStatus) {
    info(format_args!(
        "mode {} cpus {} roles {:?} transactions {} commits {} rollbacks {} retries {} detected {} recovered {} escalated {} replica {} bytes",
        st.enabled,
        st.nr_cpus,
        &st.roles[..st.nr_cpus.min(8) as usize],
        st.transactions,
        st.commits,
        st.rollbacks,
        st.retries,
        st.detected,
        st.recovered,
        st.escalated,
        st.replica_bytes
    ));
    if let Some(mean) = st.recovery_latency_ns_mean() {
        info(format_args!(
            "recovery latency ns: min {} mean {} max {}",
            st.recovery_latency_ns_min, mean, st.recovery_latency_ns_max
        ));
    }
    check_eq(
        "every recovery in the latency histogram",
        st.recovery_latency_hist.iter().sum::<u64>(),
        st.recovered,
    );
}

/// One round of guest work whose every result is known: a scalar hypercall and one that
/// writes a guest buffer. Returns whether both came out exactly right.
fn work() -> bool {
    let v = version::version() == Ok((4, 17));
    let mut extra = [0xA5u8; version::EXTRAVERSION_LEN];
    let r = version::into_buffer(version::XENVER_EXTRAVERSION, &mut extra);
    let s = r == Ok(0) && version::c_str(&extra).is_some_and(|s| s.starts_with(".0"));
    v && s
}

fn counts(kind: LockstepKind) -> Option<(LockstepStatus, ls::LockstepKindCounts)> {
    ls::status().ok().map(|(st, _)| (st, *st.kind(kind)))
}

fn inject_while_running(kind: LockstepKind, n: u32) {
    let name = kind.name();
    let Some((st0, k0)) = counts(kind) else {
        check(name, false);
        return;
    };
    check_eq(
        &alloc_name(name, "inject returns 0"),
        ls::inject(kind, n),
        Ok(0),
    );
    let mut intact = true;
    let mut rounds = 0u32;
    let (st1, k1) = loop {
        intact &= work();
        rounds += 1;
        let Some((st, k)) = counts(kind) else {
            check(name, false);
            return;
        };
        if k.injected - k0.injected >= u64::from(n) || rounds > 20 * n {
            break (st, k);
        }
    };
    let injected = k1.injected - k0.injected;
    let masked = k1.masked - k0.masked;
    let recovered = k1.recovered - k0.recovered;
    info(format_args!(
        "{name}: injected {injected} masked {masked} recovered {recovered} escalated {} silent {} crashed {} in {rounds} rounds; detected +{} recovered +{}",
        k1.escalated - k0.escalated,
        k1.silent - k0.silent,
        k1.crashed - k0.crashed,
        st1.detected - st0.detected,
        st1.recovered - st0.recovered
    ));
    let (dn, dt) = (
        st1.recovered - st0.recovered,
        st1.recovery_latency_ns_total - st0.recovery_latency_ns_total,
    );
    if let Some(mean) = dt.checked_div(dn) {
        info(format_args!(
            "{name}: {dn} recoveries, mean recovery latency {mean} ns"
        ));
    }
    check_eq(&alloc_name(name, "all injected"), injected, u64::from(n));
    check(
        &alloc_name(name, "guest results intact throughout"),
        intact && work(),
    );
    check_eq(
        &alloc_name(name, "every injection masked or recovered"),
        masked + recovered,
        injected,
    );
    check_eq(
        &alloc_name(name, "nothing escalated, silent or crashed"),
        (
            k1.escalated - k0.escalated,
            k1.silent - k0.silent,
            k1.crashed - k0.crashed,
        ),
        (0, 0, 0),
    );
    if matches!(
        kind,
        LockstepKind::Effects | LockstepKind::Digest | LockstepKind::Hang
    ) {
        check_eq(
            &alloc_name(name, "every injection detected and recovered"),
            recovered,
            u64::from(n),
        );
        check(
            &alloc_name(name, "engine counted the detections and recoveries"),
            st1.detected - st0.detected >= u64::from(n)
                && st1.recovered - st0.recovered >= u64::from(n),
        );
    }
    check_eq(
        &alloc_name(name, "still protected"),
        st1.enabled,
        ls::LOCKSTEP_MODE_ON,
    );
}

fn off_on_round_trip() {
    check_eq("off returns 0", ls::off(), Ok(0));
    let off = ls::status().map(|(s, _)| s);
    check_eq(
        "status after off: mode off",
        off.map(|s| s.enabled),
        Ok(ls::LOCKSTEP_MODE_OFF),
    );
    let mut intact = true;
    for _ in 0..20 {
        intact &= work();
    }
    check("lockstep off: guest results intact", intact);
    check_eq("off again returns 0", ls::off(), Ok(0));
    check_eq("on returns 0", ls::on(), Ok(0));
    let on = ls::status().map(|(s, _)| s);
    check_eq(
        "status after on: mode on",
        on.map(|s| s.enabled),
        Ok(ls::LOCKSTEP_MODE_ON),
    );
    if let (Ok(a), Ok(b)) = (off, on) {
        check(
            "transactions kept running while off",
            b.transactions >= a.transactions + 40,
        );
    }
    check_eq("on again returns 0", ls::on(), Ok(0));
    // The follower runs every transaction again: digest faults are detected and recovered.
    inject_while_running(LockstepKind::Digest, 3);
}

fn error_checks() {
    let inject = LockstepRequest::Inject {
        kind: LockstepKind::Effects,
        count: 1,
        pair: 0,
    }
    .encode();
    let status = |buffer: BadPtr, size: u32| {
        LockstepRequest::Status {
            buffer: buffer.addr(),
            size,
        }
        .encode()
    };
    let cases = [
        (
            "inject unknown kind -> -EINVAL",
            XenSysctlLockstep { kind: 7, ..inject },
            Errno::EINVAL,
        ),
        (
            "inject count 0 -> -EINVAL",
            XenSysctlLockstep { count: 0, ..inject },
            Errno::EINVAL,
        ),
        (
            "inject into pair 99 (no such pair) -> -EINVAL",
            XenSysctlLockstep { pair: 99, ..inject },
            Errno::EINVAL,
        ),
        (
            "on with a pair -> -EINVAL",
            XenSysctlLockstep {
                pair: 1,
                ..LockstepRequest::On.encode()
            },
            Errno::EINVAL,
        ),
        (
            "unknown sub-command -> -ENOSYS",
            XenSysctlLockstep { cmd: 77, ..inject },
            Errno::ENOSYS,
        ),
        (
            "other layout version -> -EACCES",
            XenSysctlLockstep {
                version: 99,
                ..inject
            },
            Errno::EACCES,
        ),
        (
            "status buffer too small -> -ENOBUFS",
            status(BadPtr::NULL, 16),
            Errno(-105), // ENOBUFS
        ),
        (
            "status to an unwritable buffer -> -EFAULT",
            status(BadPtr::HYPERVISOR, 4096),
            Errno::EFAULT,
        ),
    ];
    for (name, req, err) in cases {
        check_eq(name, ls::raw(&req), Err(err));
    }
}

/// `"<kind>: <what>"` in a fixed buffer (no allocator in the guest).
fn alloc_name(kind: &str, what: &str) -> Name {
    let mut n = Name {
        buf: [0; 96],
        len: 0,
    };
    for part in [kind, ": ", what] {
        for &b in part.as_bytes() {
            if n.len < n.buf.len() {
                n.buf[n.len] = b;
                n.len += 1;
            }
        }
    }
    n
}

/// A short check name.
struct Name {
    buf: [u8; 96],
    len: usize,
}

impl core::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}
