//! CPU roles from the number of CPUs at boot: CPU0 coordinates, then a leader/follower pair,
//! the rest spares. With two CPUs the leader coordinates itself; with one, or with lockstep
//! off, every transaction runs once.

use alloc::vec::Vec;
use core::fmt;

/// Who does what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One execution per transaction on `cpu` (lockstep off, or no partner CPU).
    Single {
        /// The CPU that runs guests.
        cpu: usize,
        /// Why: "lockstep=off" or "one CPU".
        reason: &'static str,
    },
    /// One lockstep pair.
    Pair {
        /// Runs guest vCPUs and the first execution.
        leader: usize,
        /// Runs the second execution.
        follower: usize,
        /// Compares digests (`None`: the leader coordinates inline).
        coordinator: Option<usize>,
        /// CPUs held in reserve to replace a core taken out of service.
        spares: Vec<usize>,
    },
}

impl Topology {
    /// Roles for `ncpus` online CPUs (numbered 0..ncpus).
    pub fn assign(ncpus: usize, lockstep: bool) -> Self {
        if !lockstep {
            return Topology::Single {
                cpu: 0,
                reason: "lockstep=off",
            };
        }
        match ncpus {
            0 | 1 => Topology::Single {
                cpu: 0,
                reason: "one CPU",
            },
            2 => Topology::Pair {
                leader: 0,
                follower: 1,
                coordinator: None,
                spares: Vec::new(),
            },
            n => Topology::Pair {
                leader: 1,
                follower: 2,
                coordinator: Some(0),
                spares: (3..n).collect(),
            },
        }
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
            Topology::Single { cpu, reason } => {
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
            } => {
                write!(f, "pair 0 leader CPU{leader} follower CPU{follower}, ")?;
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
        assert!(
            matches!(Topology::assign(8, true), Topology::Pair { ref spares, .. } if spares.len() == 5)
        );
    }
}
