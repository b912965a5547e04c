//! Steady-state lockstep recovery under a guest: `hcloop` arms effects faults through the
//! lockstep sysctl (`inject=N`), so its first N xen_version calls are each detected, rolled
//! back and re-executed; every result must still be right, every fault recovered, and the
//! guest prints the recoveries' mean latency and where the histogram puts them (`make bench`
//! reads the same lines; the latencies themselves are never judged here). Run with a
//! coordinator core (`-smp 3`) and with the leader deciding itself (`-smp 2`).

use std::path::PathBuf;

use crate::oracle::dualvisor_guest;
use crate::pattern::Pattern;
use crate::qemu::{Boot, Module};
use crate::scenario::{Paths, Planned};
use crate::two_pairs::stem;

/// Calls and injected faults of each run.
const CALLS: u32 = 2000;
const FAULTS: u32 = 200;

/// The roles line of each CPU count.
fn roles(smp: u32) -> &'static str {
    if smp == 2 {
        "(XEN) lockstep: pair 0 leader CPU0 follower CPU1, coordinator CPU0 (the leader)"
    } else {
        "(XEN) lockstep: pair 0 leader CPU1 follower CPU2, coordinator CPU0"
    }
}

/// `dualvisor-hcloop-inject` (`-smp 3`) and `dualvisor-hcloop-inject-smp2`, when the hcloop
/// guest was built.
pub fn hcloop_inject(p: &Paths, guests: &[PathBuf]) -> Vec<Planned> {
    let Some(g) = guests.iter().find(|g| stem(g) == Some("hcloop")) else {
        return Vec::new();
    };
    [3, 2]
        .into_iter()
        .map(|smp| {
            let mut s = dualvisor_guest(p, g);
            s.name = if smp == 3 {
                "dualvisor-hcloop-inject".into()
            } else {
                format!("dualvisor-hcloop-inject-smp{smp}")
            };
            s.qemu = s.qemu.smp(smp);
            if let Boot::Kernel { modules, .. } = &mut s.qemu.boot {
                *modules = vec![Module::new(
                    g.clone(),
                    format!("count={CALLS} inject={FAULTS}"),
                )];
            }
            s.expect.expect = vec![
                Pattern::contains(roles(smp)),
                Pattern::contains(format!(
                    "hcloop: {FAULTS} recoveries, mean recovery latency "
                )),
                // Every recovery in the status's histogram (the guest checks the sum too).
                Pattern::contains("hcloop: recovery latency median "),
                Pattern::contains(format!(" of {FAULTS} below 20000 ns")),
                Pattern::contains("Test result: SUCCESS"),
                Pattern::contains("(XEN) Hardware Dom0 halted"),
            ];
            Planned::Run(Box::new(s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::test_support::{find, watch};
    use crate::watch::WatchState;

    #[test]
    fn hcloop_runs_with_faults_at_two_cpu_counts() {
        let p = Paths::new("/repo");
        let guests: Vec<PathBuf> = ["hello", "hcloop"]
            .iter()
            .map(|g| PathBuf::from(format!("/repo/build/guests/{g}.elf")))
            .collect();
        let v = hcloop_inject(&p, &guests);
        assert_eq!(v.len(), 2);
        let s = find(&v, "dualvisor-hcloop-inject-smp2");
        assert_eq!(s.qemu.smp, 2);
        let Boot::Kernel { modules, .. } = &s.qemu.boot else {
            panic!("hcloop boots with -kernel");
        };
        assert_eq!(modules.len(), 1);
        assert_eq!(modules[0].args, "count=2000 inject=200");
        let log = format!(
            "{}\nhcloop: 2000 x version\nhcloop: 24000 cycles per call\n\
             hcloop: 200 recoveries, mean recovery latency 6000 ns\n\
             hcloop: recovery latency median 5000-10000 ns, p90 5000-10000 ns, \
             p99 10000-20000 ns, 200 of 200 below 20000 ns\nTest result: SUCCESS\n\
             (XEN) Hardware Dom0 halted: halting machine\n",
            roles(2)
        );
        assert_eq!(watch(&s, &log), WatchState::AllSeen);
        let fewer = log.replace("hcloop: 200 recoveries", "hcloop: 199 recoveries");
        assert_ne!(watch(&s, &fewer), WatchState::AllSeen);
        let no_hist = log.replace("200 of 200 below", "200 of 199 below");
        assert_ne!(watch(&s, &no_hist), WatchState::AllSeen);
        let s3 = find(&v, "dualvisor-hcloop-inject");
        assert_eq!(s3.qemu.smp, 3);
        assert_ne!(
            watch(&s3, &log),
            WatchState::AllSeen,
            "-smp 3 has a coordinator core"
        );
        assert!(hcloop_inject(&p, &guests[..1]).is_empty());
    }
}
