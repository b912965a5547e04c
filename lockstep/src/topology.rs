//! CPU roles from the number of CPUs at boot: CPU0 coordinates, then leader/follower pairs
//! (CPU1/CPU2, CPU3/CPU4, ...), the odd CPU left over a spare. With two CPUs the leader
//! coordinates itself; with one, or with lockstep off, every transaction runs once (with
//! lockstep off on every CPU: each runs guests, as Xen's CPUs do).

use alloc::vec::Vec;
use core::fmt;

/// Who does what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One execution per transaction (lockstep off, or no partner CPU), on the CPU that
    /// runs the guest exit: CPUs `cpu..cpu + guests` run guests.
    Single {
        /// The first CPU that runs guests (dom0's boot vCPU).
        cpu: usize,
        /// Why: "lockstep=off" or "one CPU".
        reason: &'static str,
        /// How many CPUs run guests (at least 1): every online CPU with lockstep off.
        guests: usize,
    },
    /// One or more lockstep pairs (pair 0 here, the others in `more`).
    Pair {
        /// Runs guest vCPUs and the first execution.
        leader: usize,
        /// Runs the second execution.
        follower: usize,
        /// Compares digests (`None`: the leader coordinates inline).
        coordinator: Option<usize>,
        /// CPUs held in reserve to replace a core taken out of service.
        spares: Vec<usize>,
        /// Pairs 1, 2, ...: (leader, follower) each; empty with one pair.
        more: Vec<(usize, usize)>,
    },
}

impl Topology {
    /// Roles for `ncpus` online CPUs (numbered 0..ncpus).
    pub fn assign(ncpus: usize, lockstep: bool) -> Self {
        if !lockstep {
            return Topology::Single {
                cpu: 0,
                reason: "lockstep=off",
                guests: ncpus.max(1),
            };
        }
        match ncpus {
            0 | 1 => Topology::Single {
                cpu: 0,
                reason: "one CPU",
                guests: 1,
            },
            2 => Topology::Pair {
                leader: 0,
                follower: 1,
                coordinator: None,
                spares: Vec::new(),
                more: Vec::new(),
            },
            n => {
                // CPU0 coordinates; (n - 1) / 2 pairs follow it, the odd CPU is a spare.
                let pairs = (n - 1) / 2;
                Topology::Pair {
                    leader: 1,
                    follower: 2,
                    coordinator: Some(0),
                    spares: (1 + 2 * pairs..n).collect(),
                    more: (1..pairs).map(|i| (1 + 2 * i, 2 + 2 * i)).collect(),
                }
            }
        }
    }

    /// Every pair as (leader, follower), pair 0 first (empty without lockstep).
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        match self {
            Topology::Single { .. } => Vec::new(),
            Topology::Pair {
                leader,
                follower,
                more,
                ..
            } => core::iter::once((*leader, *follower))
                .chain(more.iter().copied())
                .collect(),
        }
    }

    /// The pair whose leader is `cpu`, if any.
    pub fn pair_led_by(&self, cpu: usize) -> Option<usize> {
        self.pairs().iter().position(|&(l, _)| l == cpu)
    }

    /// The CPUs that run guest vCPUs: every pair's leader, or the CPUs of a single
    /// execution (all of them with lockstep off).
    pub fn guest_cpus(&self) -> Vec<usize> {
        match self {
            Topology::Single { cpu, guests, .. } => (*cpu..*cpu + (*guests).max(1)).collect(),
            Topology::Pair { .. } => self.pairs().into_iter().map(|(l, _)| l).collect(),
        }
    }

    /// The CPU that runs guest vCPU `vcpu` first: guest CPU `vcpu % guest CPUs` (spread
    /// over them, as Xen places dom0's vCPU i on CPU i).
    pub fn guest_cpu_of(&self, vcpu: usize) -> usize {
        let cpus = self.guest_cpus();
        cpus.get(vcpu % cpus.len().max(1))
            .copied()
            .unwrap_or_else(|| self.guest_cpu())
    }

    /// The CPU that runs guest vCPUs.
    pub fn guest_cpu(&self) -> usize {
        match self {
            Topology::Single { cpu, .. } => *cpu,
            Topology::Pair { leader, .. } => *leader,
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Single {
                cpu,
                reason,
                guests,
            } if *guests > 1 => write!(
                f,
                "off ({reason}): single execution, guests on CPU{cpu}-CPU{}, no redundancy",
                cpu + guests - 1
            ),
            Topology::Single { cpu, reason, .. } => {
                write!(
                    f,
                    "off ({reason}): single execution on CPU{cpu}, no redundancy"
                )
            }
            Topology::Pair {
                leader,
                follower,
                coordinator,
                spares,
                more,
            } => {
                write!(f, "pair 0 leader CPU{leader} follower CPU{follower}, ")?;
                for (i, (l, fl)) in more.iter().enumerate() {
                    write!(f, "pair {} leader CPU{l} follower CPU{fl}, ", i + 1)?;
                }
                match coordinator {
                    Some(c) => write!(f, "coordinator CPU{c}")?,
                    None => write!(f, "coordinator CPU{leader} (the leader)")?,
                }
                for s in spares {
                    write!(f, ", spare CPU{s}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn roles_by_cpu_count() {
        assert_eq!(
            Topology::assign(1, true).to_string(),
            "off (one CPU): single execution on CPU0, no redundancy"
        );
        assert_eq!(
            Topology::assign(2, true).to_string(),
            "pair 0 leader CPU0 follower CPU1, coordinator CPU0 (the leader)"
        );
        assert_eq!(
            Topology::assign(3, true).to_string(),
            "pair 0 leader CPU1 follower CPU2, coordinator CPU0"
        );
        assert_eq!(
            Topology::assign(4, true).to_string(),
            "pair 0 leader CPU1 follower CPU2, coordinator CPU0, spare CPU3"
        );
        assert_eq!(Topology::assign(4, false).guest_cpu(), 0);
        assert_eq!(Topology::assign(3, true).guest_cpu(), 1);
        assert_eq!(
            Topology::assign(5, true).to_string(),
            "pair 0 leader CPU1 follower CPU2, pair 1 leader CPU3 follower CPU4, coordinator CPU0"
        );
        assert_eq!(
            Topology::assign(6, true).to_string(),
            "pair 0 leader CPU1 follower CPU2, pair 1 leader CPU3 follower CPU4, coordinator CPU0, spare CPU5"
        );
        assert_eq!(
            Topology::assign(8, true).to_string(),
            "pair 0 leader CPU1 follower CPU2, pair 1 leader CPU3 follower CPU4, \
             pair 2 leader CPU5 follower CPU6, coordinator CPU0, spare CPU7"
        );
        assert_eq!(
            Topology::assign(5, false).to_string(),
            "off (lockstep=off): single execution, guests on CPU0-CPU4, no redundancy"
        );
        assert_eq!(
            Topology::assign(1, false).to_string(),
            "off (lockstep=off): single execution on CPU0, no redundancy"
        );
    }

    #[test]
    fn pairs_and_guest_placement() {
        for n in 0..=16 {
            let t = Topology::assign(n, true);
            let pairs = t.pairs();
            let want = match n {
                0 | 1 => 0,
                2 => 1,
                n => (n - 1) / 2,
            };
            assert_eq!(pairs.len(), want, "{n} CPUs");
            // Every CPU has exactly one role.
            let mut seen = alloc::vec![0u32; n.max(1)];
            if let Topology::Pair {
                coordinator,
                spares,
                ..
            } = &t
            {
                for &(l, f) in &pairs {
                    seen[l] += 1;
                    seen[f] += 1;
                }
                if let Some(c) = coordinator {
                    seen[*c] += 1;
                }
                for s in spares {
                    seen[*s] += 1;
                }
                assert!(seen.iter().all(|&c| c == 1), "{n} CPUs: {seen:?}");
                assert_eq!(spares.len(), usize::from(n >= 3 && n % 2 == 0));
            }
        }
        let t = Topology::assign(5, true);
        assert_eq!(t.pairs(), alloc::vec![(1, 2), (3, 4)]);
        assert_eq!(t.pair_led_by(3), Some(1));
        assert_eq!(t.pair_led_by(4), None);
        assert_eq!(
            (0..4).map(|v| t.guest_cpu_of(v)).collect::<Vec<_>>(),
            alloc::vec![1, 3, 1, 3]
        );
        assert_eq!(Topology::assign(4, true).guest_cpu_of(1), 1);
        assert_eq!(Topology::assign(1, true).guest_cpu_of(3), 0);
        assert_eq!(t.guest_cpus(), alloc::vec![1, 3]);
        assert_eq!(Topology::assign(3, true).guest_cpus(), alloc::vec![1]);
        assert_eq!(Topology::assign(1, true).guest_cpus(), alloc::vec![0]);
    }

    #[test]
    fn lockstep_off_runs_guests_on_every_cpu() {
        let t = Topology::assign(3, false);
        assert_eq!(t.guest_cpus(), alloc::vec![0, 1, 2]);
        assert!(t.pairs().is_empty(), "no pair, no follower");
        assert_eq!(
            (0..4).map(|v| t.guest_cpu_of(v)).collect::<Vec<_>>(),
            alloc::vec![0, 1, 2, 0]
        );
        assert_eq!(t.guest_cpu(), 0, "dom0's boot vCPU on CPU0");
        assert_eq!(Topology::assign(0, false).guest_cpus(), alloc::vec![0]);
    }
}
