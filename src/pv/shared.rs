//! Event delivery on a domain's real shared_info page: `xen-core`'s `SharedInfoBits` over
//! atomic operations on machine memory, with each vCPU's vcpu_info where the guest put it;
//! and for the FIFO ABI its `EventWords` over the event array and control blocks, with the
//! queue tails every leader shares ([`FIFO_QUEUES`]).

use alloc::collections::BTreeMap;
use spin::Mutex;
use xen_core::evtchn::deliver::SharedInfoBits;
use xen_core::evtchn::fifo_deliver::{EventWords, FifoQueues};

/// The FIFO queue tails and last queues of every domain: hypervisor data only the commit-time
/// delivery uses, changed only while the runtime lock is held. Outside the replicas (the
/// tails follow the guest-visible queues, not the replicated state), and in memory every
/// leader CPU shares, so a promoted leader goes on with them as they are.
pub static FIFO_QUEUES: Mutex<FifoQueues> = Mutex::new(FifoQueues::new());

const PENDING: u64 = 2048;
const MASK: u64 = 2560;

/// A domain's shared_info page and its vCPUs' vcpu_info machine addresses.
pub struct SharedPage {
    /// Machine address of shared_info.
    pub base: u64,
    /// vCPU → machine address of its vcpu_info.
    pub vcpu_info: BTreeMap<u32, u64>,
}

impl SharedPage {
    fn word(&self, area: u64, port: u32) -> (u64, u32) {
        (self.base + area + u64::from(port / 64) * 8, port % 64)
    }
}

impl SharedInfoBits for SharedPage {
    fn test_and_set_pending(&mut self, port: u32) -> bool {
        let (w, b) = self.word(PENDING, port);
        arch::guestmem::test_and_set_bit(w, b)
    }
    fn clear_pending(&mut self, port: u32) {
        let (w, b) = self.word(PENDING, port);
        arch::guestmem::test_and_clear_bit(w, b);
    }
    fn is_pending(&self, port: u32) -> bool {
        let (w, b) = self.word(PENDING, port);
        arch::guestmem::test_bit(w, b)
    }
    fn is_masked(&self, port: u32) -> bool {
        let (w, b) = self.word(MASK, port);
        arch::guestmem::test_bit(w, b)
    }
    fn test_and_clear_mask(&mut self, port: u32) -> bool {
        let (w, b) = self.word(MASK, port);
        arch::guestmem::test_and_clear_bit(w, b)
    }
    fn test_and_set_sel(&mut self, vcpu: u32, word: u32) -> bool {
        match self.vcpu_info.get(&vcpu) {
            Some(&vi) => arch::guestmem::test_and_set_bit(vi + 8, word),
            None => true,
        }
    }
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
        match self.vcpu_info.get(&vcpu) {
            Some(&vi) => arch::guestmem::test_and_set_byte_flag(vi),
            None => true,
        }
    }
}

impl EventWords for SharedPage {
    fn load(&self, maddr: u64) -> u32 {
        arch::guestmem::load_u32(maddr)
    }
    fn cmpxchg(&mut self, maddr: u64, old: u32, new: u32) -> u32 {
        arch::guestmem::cmpxchg_u32(maddr, old, new)
    }
    fn test_and_set(&mut self, maddr: u64, bit: u32) -> bool {
        let m = 1u32 << (bit % 32);
        arch::guestmem::fetch_or_u32(maddr, m) & m != 0
    }
    fn clear(&mut self, maddr: u64, bit: u32) {
        arch::guestmem::fetch_and_u32(maddr, !(1u32 << (bit % 32)));
    }
    fn store(&mut self, maddr: u64, v: u32) {
        arch::guestmem::store_u32(maddr, v);
    }
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
        SharedInfoBits::test_and_set_upcall_pending(self, vcpu)
    }
}
