//! A domain's port table bookkeeping: the bucket-granular valid range, the allocation
//! bitmap, the port limit and the reset cursor (Xen's `valid_evtchns`, bucket states,
//! `max_evtchn_port`, `next_evtchn`), and the lookups every operation starts with.

use super::{Channel, PORTS_PER_BUCKET};

// One allocation-bitmap word per bucket.
const _: () = assert!(PORTS_PER_BUCKET == 64);
use crate::effect::DomId;
use crate::hv::{Ctx, HvError, HvState};
use alloc::vec::Vec;
use dom0_interface::errno::XenErrno;
use dom0_interface::event_channel::{EVTCHN_FIFO_LINKED, EVTCHN_FIFO_NR_CHANNELS};
use lockstep::Journal;

/// No `max_evtchn_port` below the ABI's (Xen's dom0 and the default: `INT_MAX`).
pub const NO_PORT_LIMIT: u32 = i32::MAX as u32;

/// Per-domain port table bookkeeping. A domain without an entry has the default table: one
/// bucket valid, only port 0 (reserved) in use, no port limit below the ABI's (4096 ports on
/// the 2-level ABI, 2^17 on FIFO).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortTable {
    /// Ports `0..valid` are valid (allocated buckets); a multiple of [`PORTS_PER_BUCKET`].
    pub valid: u32,
    /// Highest port the domain may allocate (`max_evtchn_port`).
    pub max_port: u32,
    /// Allocation bitmap: bit `p` set when port `p` is not free (bit 0, the reserved port 0,
    /// is always set); one word per 64 valid ports.
    pub used: Vec<u64>,
    /// Where an interrupted `EVTCHNOP_reset` resumes (0: no reset in progress).
    pub next_reset: u32,
}
lockstep::impl_value!(PortTable {
    valid,
    max_port,
    used,
    next_reset
});

impl Default for PortTable {
    fn default() -> Self {
        PortTable {
            valid: PORTS_PER_BUCKET,
            max_port: NO_PORT_LIMIT,
            used: alloc::vec![1],
            next_reset: 0,
        }
    }
}

impl PortTable {
    /// Whether `port` is valid (`port_is_valid`: inside an allocated bucket).
    pub fn is_valid(&self, port: u32) -> bool {
        port < self.valid
    }

    /// Whether `port` is in use (bound or reserved).
    pub fn is_used(&self, port: u32) -> bool {
        let w = usize::try_from(port / 64).unwrap_or(usize::MAX);
        self.used
            .get(w)
            .is_some_and(|word| word & (1 << (port % 64)) != 0)
    }

    fn set_used(&mut self, port: u32, used: bool) {
        let w = usize::try_from(port / 64).unwrap_or(usize::MAX);
        if let Some(word) = self.used.get_mut(w) {
            if used {
                *word |= 1 << (port % 64);
            } else {
                *word &= !(1 << (port % 64));
            }
        }
    }

    /// Number of bound ports (Xen's `active_evtchns`: port 0 does not count).
    pub fn active(&self) -> u32 {
        let all: u32 = self.used.iter().map(|w| w.count_ones()).sum();
        all.saturating_sub(1)
    }

    /// `get_free_port`'s choice: the lowest free valid port that is not `busy`, else the
    /// first port of the next bucket (which then becomes valid), else -ENOSPC (beyond
    /// `max_port` or the ABI's `max_evtchns`).
    fn take_free_port_where<E>(
        &mut self,
        max_evtchns: u32,
        mut busy: impl FnMut(u32) -> Result<bool, E>,
    ) -> Result<Result<u32, XenErrno>, E> {
        let limit = self.valid.min(self.max_port.saturating_add(1));
        'words: for (w, word) in self.used.iter().enumerate() {
            let mut free = !*word;
            while free != 0 {
                let port = (w as u32) * 64 + free.trailing_zeros();
                if port >= limit {
                    break 'words;
                }
                if !busy(port)? {
                    return Ok(Ok(port));
                }
                free &= free - 1;
            }
        }
        let port = self.valid;
        if port > self.max_port || port >= max_evtchns {
            return Ok(Err(XenErrno::ENOSPC));
        }
        self.valid += PORTS_PER_BUCKET;
        self.used.resize((self.valid / 64) as usize, 0);
        Ok(Ok(port))
    }

    /// [`Self::take_free_port_where`] with no port busy (the 2-level ABI).
    #[cfg(test)]
    fn take_free_port(&mut self) -> Result<u32, XenErrno> {
        match self.take_free_port_where(super::NR_PORTS, |_| Ok::<bool, ()>(false)) {
            Ok(r) => r,
            Err(()) => Err(XenErrno::ENOSPC),
        }
    }
}

/// The table of `dom` (the default one if it never changed).
pub fn table(state: &HvState, dom: DomId) -> PortTable {
    state.evtchn_tables.get(&dom).cloned().unwrap_or_default()
}

/// `f` of the table of `dom`, borrowed (a copy of its bitmap was a heap allocation and
/// release on every port check, ~30% of a lockstep-off `EVTCHNOP_send`).
pub fn with_table<R>(state: &HvState, dom: DomId, f: impl FnOnce(&PortTable) -> R) -> R {
    match state.evtchn_tables.get(&dom) {
        Some(t) => f(t),
        None => f(&PortTable::default()),
    }
}

fn update_table<R>(
    state: &mut HvState,
    j: &mut Journal,
    dom: DomId,
    f: impl FnOnce(&mut PortTable) -> R,
) -> R {
    let mut t = table(state, dom);
    let r = f(&mut t);
    if state.evtchn_tables.get(&dom) != Some(&t) {
        state.evtchn_tables.insert(j, dom, t);
    }
    r
}

/// Whether `port` is valid in `dom`.
pub fn port_is_valid(state: &HvState, dom: DomId, port: u32) -> bool {
    with_table(state, dom, |t| t.is_valid(port))
}

/// What a valid port holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `ECS_FREE`.
    Free,
    /// `ECS_RESERVED` (port 0).
    Reserved,
    /// Bound.
    Bound(Channel),
}

/// `_evtchn_from_port`: the slot of `port` in `dom`, or -EINVAL if the port is not valid.
pub fn slot(state: &HvState, dom: DomId, port: u32) -> Result<Slot, XenErrno> {
    if !port_is_valid(state, dom, port) {
        return Err(XenErrno::EINVAL);
    }
    if port == 0 {
        return Ok(Slot::Reserved);
    }
    Ok(match state.evtchns.get(&(dom, port)) {
        Some(c) => Slot::Bound(*c),
        None => Slot::Free,
    })
}

/// `get_free_port`: picks (and, if needed, makes valid) a free port of `dom`. The port stays
/// free until [`occupy`] binds it; the grown valid range stays even if the caller then fails,
/// as in Xen. On the FIFO ABI a free port whose event word is still LINKED (the guest has not
/// consumed it from its queue yet) is busy and skipped (`evtchn_is_busy`); the word is read
/// through the input, as the guest changes it.
pub fn get_free_port(
    state: &mut HvState,
    ctx: &mut Ctx<'_, '_, '_>,
    dom: DomId,
) -> Result<u32, HvError> {
    if state.domains.get(&dom).is_some_and(|d| d.flags.dying) {
        return Err(XenErrno::EINVAL.into());
    }
    let fifo = state.evtchn_fifo.get(&dom).cloned();
    let max_evtchns = if fifo.is_some() {
        EVTCHN_FIFO_NR_CHANNELS
    } else {
        super::NR_PORTS
    };
    let mut t = table(state, dom);
    let port = t.take_free_port_where(max_evtchns, |p| {
        let Some(at) = fifo.as_ref().and_then(|f| f.word_maddr(p)) else {
            return Ok(false);
        };
        let mut w = [0u8; 4];
        match ctx.read_machine(at, &mut w) {
            Ok(()) => Ok(u32::from_le_bytes(w) & (1 << EVTCHN_FIFO_LINKED) != 0),
            Err(HvError::Errno(_)) => Ok(false),
            Err(e) => Err(e),
        }
    })?;
    if state.evtchn_tables.get(&dom) != Some(&t) {
        state.evtchn_tables.insert(ctx.journal(), dom, t);
    }
    Ok(port?)
}

/// Binds free port `port` of `dom` to `chan`.
pub fn occupy(state: &mut HvState, j: &mut Journal, dom: DomId, port: u32, chan: Channel) {
    update_table(state, j, dom, |t| t.set_used(port, true));
    state.evtchns.insert(j, (dom, port), chan);
}

/// Replaces the channel of an already bound port.
pub fn rebind(state: &mut HvState, j: &mut Journal, dom: DomId, port: u32, chan: Channel) {
    state.evtchns.insert(j, (dom, port), chan);
}

/// Frees `port` of `dom` (the caller clears its pending bit).
pub fn release(state: &mut HvState, j: &mut Journal, dom: DomId, port: u32) {
    state.evtchns.remove(j, &(dom, port));
    update_table(state, j, dom, |t| t.set_used(port, false));
}

/// Sets `dom`'s reset cursor.
pub fn set_next_reset(state: &mut HvState, j: &mut Journal, dom: DomId, next: u32) {
    update_table(state, j, dom, |t| t.next_reset = next);
}

/// Sets the highest port `dom` may allocate (`max_evtchn_port` of domain creation; the
/// domain builder calls this, e.g. with xl's `event_channels` minus one). Ports already
/// beyond it stay bound.
pub fn set_max_port(state: &mut HvState, j: &mut Journal, dom: DomId, max_port: u32) {
    update_table(state, j, dom, |t| t.max_port = max_port);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_has_one_bucket_and_port_zero_reserved() {
        let t = PortTable::default();
        assert!(t.is_valid(PORTS_PER_BUCKET - 1));
        assert!(!t.is_valid(PORTS_PER_BUCKET));
        assert!(t.is_used(0));
        assert!(!t.is_used(1));
        assert_eq!(t.active(), 0);
        assert!(!t.is_used(1 << 20), "out-of-range ports are simply unused");
    }

    #[test]
    fn free_ports_lowest_first_then_new_buckets() {
        let mut t = PortTable::default();
        for want in 1..PORTS_PER_BUCKET {
            let p = t.take_free_port().unwrap();
            assert_eq!(p, want);
            t.set_used(p, true);
        }
        assert_eq!(t.active(), PORTS_PER_BUCKET - 1);
        assert_eq!(t.take_free_port(), Ok(PORTS_PER_BUCKET));
        assert_eq!(t.valid, 2 * PORTS_PER_BUCKET, "next bucket made valid");
        // Not taken: asking again returns the same port without growing.
        assert_eq!(t.take_free_port(), Ok(PORTS_PER_BUCKET));
        assert_eq!(t.valid, 2 * PORTS_PER_BUCKET);
        t.set_used(7, false);
        assert_eq!(t.take_free_port(), Ok(7), "a hole is reused first");
    }

    #[test]
    fn limits_give_enospc() {
        let mut t = PortTable {
            max_port: 3,
            ..PortTable::default()
        };
        for p in 1..=3 {
            assert_eq!(t.take_free_port(), Ok(p));
            t.set_used(p, true);
        }
        assert_eq!(t.take_free_port(), Err(XenErrno::ENOSPC));
        let mut full = PortTable {
            valid: super::super::NR_PORTS,
            used: alloc::vec![u64::MAX; (super::super::NR_PORTS / 64) as usize],
            ..PortTable::default()
        };
        assert_eq!(full.take_free_port(), Err(XenErrno::ENOSPC));
        assert_eq!(full.active(), super::super::NR_PORTS - 1);
    }

    #[test]
    fn fifo_domains_allocate_beyond_4096_ports() {
        let n = super::super::NR_PORTS;
        let mut t = PortTable {
            valid: n,
            used: alloc::vec![u64::MAX; (n / 64) as usize],
            ..PortTable::default()
        };
        let never = |_| Ok::<bool, ()>(false);
        assert_eq!(t.take_free_port_where(n, never), Ok(Err(XenErrno::ENOSPC)));
        let fifo = EVTCHN_FIFO_NR_CHANNELS;
        assert_eq!(t.take_free_port_where(fifo, never), Ok(Ok(n)));
        assert_eq!(t.used.len(), (n / 64 + 1) as usize, "one more bitmap word");
        t.set_used(n, true);
        assert!(t.is_used(n));
        assert_eq!(t.active(), n);
        // A busy free port is skipped; the next free one is taken.
        t.set_used(5, false);
        t.set_used(9, false);
        assert_eq!(
            t.take_free_port_where(fifo, |p| Ok::<bool, ()>(p == 5)),
            Ok(Ok(9))
        );
        // The domain's own limit still applies.
        t.max_port = n;
        t.set_used(5, true);
        t.set_used(9, true);
        t.used[(n / 64) as usize] = u64::MAX;
        assert_eq!(
            t.take_free_port_where(fifo, never),
            Ok(Err(XenErrno::ENOSPC))
        );
    }
}
