//! The grant-table tests' harness: grant_table_op run on a leader (recording its input) and a
//! follower (replaying it), both replicas compared, the effects applied to the fixture's fake
//! machine memory, and the guest's side (writing and revoking entries).

use crate::effect::{Effect, MmEffect};
use crate::hv::{value_kind, HvState, Xen};
use crate::hypercall::testing::Harness;
use crate::mm::fixture::{harness, VA_BASE};
use crate::request::{GuestRegs, Request};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use dom0_interface::grant_table::*;
use dom0_interface::guest_abi::GuestAbi;
use dom0_interface::xen::DOMID_SELF;
use lockstep::effects::Effects;
use lockstep::input::{Input, InputLog};
use lockstep::machine::execute;
use lockstep::replica::full_digest;
use lockstep::Journal;

/// Where the tests keep their op structures in guest memory.
pub(super) const UOP: u64 = 0x9000;
/// Where setup_table's frame list goes.
pub(super) const LIST: u64 = 0xa000;
/// First frame the fake allocator hands out.
pub(super) const ALLOC_BASE: u64 = 0x3000;

/// A dom0 with the fixture's memory, its follower replica and the last call's effects.
pub(super) struct T {
    pub(super) h: Harness,
    follower: HvState,
    epoch: u64,
    next_alloc: u64,
    pub(super) effects: Vec<Effect>,
}

impl T {
    /// A fresh harness.
    pub(super) fn new() -> T {
        let h = harness(true);
        let follower = h.state.clone();
        let mut t = T {
            h,
            follower,
            epoch: 100,
            next_alloc: ALLOC_BASE,
            effects: Vec::new(),
        };
        t.h.mem.map(LIST, &[0u8; 8 * 80]);
        t
    }

    /// Queues `n` fresh frames for the allocator.
    pub(super) fn frames(&mut self, n: u64) {
        for _ in 0..n {
            let m = self.next_alloc;
            self.next_alloc += 1;
            self.h.mem.add_frame(m);
            self.h
                .mem
                .values
                .entry(value_kind::ALLOC_FRAME)
                .or_default()
                .push_back(m);
        }
    }

    /// grant_table_op(cmd, uop, count) on the leader and the follower; applies the effects.
    pub(super) fn op(&mut self, cmd: u32, uop: u64, count: u64) -> i64 {
        self.epoch += 1;
        let regs = GuestRegs {
            rax: 20,
            rdi: u64::from(cmd),
            rsi: uop,
            rdx: count,
            ..Default::default()
        };
        let req = Request::hypercall(self.h.dom, 0, regs).to_words();
        let mut log = InputLog::new(1 << 22);
        let (mut lj, mut le) = (Journal::new(), Effects::new());
        let lead = {
            let mut input = Input::record(&req, &mut self.h.mem, &mut log);
            execute::<Xen>(&mut self.h.state, &mut lj, self.epoch, &mut le, &mut input)
        };
        let (mut fj, mut fe) = (Journal::new(), Effects::new());
        let follow = {
            let mut src = log.reader();
            let mut input = Input::replay(&req, &mut src);
            execute::<Xen>(&mut self.follower, &mut fj, self.epoch, &mut fe, &mut input)
        };
        assert!(lead.error.is_none() && follow.error.is_none());
        assert_eq!(le.as_slice(), fe.as_slice(), "effects differ");
        assert_eq!(lead.digest, follow.digest, "digests differ");
        assert_eq!(full_digest(&self.h.state), full_digest(&self.follower));
        lockstep::replica::forget(&mut self.h.state);
        lockstep::replica::forget(&mut self.follower);
        self.effects = le.as_slice().to_vec();
        let mut ret = i64::MIN;
        for e in le.as_slice() {
            self.apply(e);
            if let Effect::Return(v) = e {
                ret = *v;
            }
        }
        ret
    }

    /// Changes frame `mfn`'s record in both replicas, outside any hypercall.
    pub(super) fn set_frame(&mut self, mfn: u64, f: impl Fn(&mut crate::mm::PageInfo)) {
        let mut j = Journal::new();
        j.begin(1);
        self.h.state.frames.update(&mut j, &mfn, &f);
        self.follower.frames.update(&mut j, &mfn, &f);
        lockstep::replica::forget(&mut self.h.state);
        lockstep::replica::forget(&mut self.follower);
    }

    pub(super) fn apply(&mut self, e: &Effect) {
        let mem = &mut self.h.mem;
        match e {
            Effect::WriteGuest { addr, data } => mem.map(*addr, data),
            Effect::WriteMachine { maddr, value } => {
                mem.machine.insert(*maddr, *value);
            }
            Effect::Mm(MmEffect::AtomicBits { maddr, set, clear }) => {
                let w = (mem.word(*maddr) | set) & !clear;
                mem.machine.insert(*maddr, w);
            }
            Effect::Mm(MmEffect::ClearPage { mfn }) => {
                for i in 0..512 {
                    mem.machine.remove(&((mfn << 12) + i * 8));
                }
            }
            Effect::Mm(MmEffect::CopyBytes { dst, src, len }) => {
                let bytes: Vec<u8> = (0..u64::from(*len)).map(|i| byte(mem, src + i)).collect();
                for (i, b) in bytes.iter().enumerate() {
                    let a = dst + i as u64;
                    let sh = (a & 7) * 8;
                    let w = mem.word(a & !7) & !(0xff << sh) | (u64::from(*b) << sh);
                    mem.machine.insert(a & !7, w);
                }
            }
            _ => {}
        }
    }

    pub(super) fn setup(&mut self, n: u32) -> (i16, Vec<u64>) {
        let op = GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: n,
            status: 0x55,
            frame_list: LIST,
        };
        self.h.mem.map(UOP, &op.to_vec());
        assert_eq!(self.op(GNTTABOP_SETUP_TABLE, UOP, 1), 0);
        let back = self.read::<GnttabSetupTable>(UOP);
        let frames = (0..u64::from(n))
            .map(|i| self.guest_u64(LIST + i * 8))
            .collect();
        (back.status, frames)
    }

    pub(super) fn read<S: GuestAbi>(&self, addr: u64) -> S {
        let bytes: Vec<u8> = (0..S::SIZE as u64)
            .map(|i| self.h.mem.bytes.get(&(addr + i)).copied().unwrap_or(0))
            .collect();
        S::read_from(&bytes).expect("decode")
    }

    pub(super) fn guest_u64(&self, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        for (i, x) in b.iter_mut().enumerate() {
            *x = self
                .h
                .mem
                .bytes
                .get(&(addr + i as u64))
                .copied()
                .unwrap_or(0);
        }
        u64::from_le_bytes(b)
    }

    /// The grantor writes v1 entry `gref` (table frame 0 at `table`).
    pub(super) fn grant(&mut self, table: u64, gref: u32, flags: u16, frame: u64) {
        let w = u64::from(flags) | ((frame & 0xffff_ffff) << 32);
        self.h
            .mem
            .machine
            .insert((table << 12) + u64::from(gref) * 8, w);
    }

    pub(super) fn flags(&self, table: u64, gref: u32) -> u16 {
        self.h.mem.word((table << 12) + u64::from(gref) * 8) as u16
    }

    /// The grantor's revocation (Linux's gnttab_end_foreign_access_ref).
    pub(super) fn revoke(&mut self, table: u64, gref: u32) -> bool {
        let a = (table << 12) + u64::from(gref) * 8;
        let w = self.h.mem.word(a);
        if w as u16 & (GTF_READING | GTF_WRITING) != 0 {
            return false;
        }
        self.h.mem.machine.insert(a, w & !0xffff_ffff);
        true
    }

    pub(super) fn map(&mut self, gref: u32, flags: u32, host_addr: u64) -> GnttabMapGrantRef {
        let op = GnttabMapGrantRef {
            host_addr,
            flags,
            r#ref: gref,
            dom: 0,
            status: 0x55,
            ..Default::default()
        };
        self.h.mem.map(UOP, &op.to_vec());
        assert_eq!(self.op(GNTTABOP_MAP_GRANT_REF, UOP, 1), 0);
        self.read(UOP)
    }

    pub(super) fn unmap(&mut self, handle: u32, host_addr: u64) -> i16 {
        let op = GnttabUnmapGrantRef {
            host_addr,
            dev_bus_addr: 0,
            handle,
            status: 0x55,
        };
        self.h.mem.map(UOP, &op.to_vec());
        assert_eq!(self.op(GNTTABOP_UNMAP_GRANT_REF, UOP, 1), 0);
        self.read::<GnttabUnmapGrantRef>(UOP).status
    }

    pub(super) fn copy(
        &mut self,
        src: GnttabCopyPtr,
        dst: GnttabCopyPtr,
        len: u16,
        flags: u16,
    ) -> i16 {
        let op = GnttabCopy {
            source: src,
            dest: dst,
            len,
            flags,
            status: 0x55,
        };
        self.h.mem.map(UOP, &op.to_vec());
        assert_eq!(self.op(GNTTABOP_COPY, UOP, 1), 0);
        self.read::<GnttabCopy>(UOP).status
    }

    pub(super) fn counts(&self) -> BTreeMap<u64, (u32, u32)> {
        self.h
            .state
            .frames
            .iter()
            .map(|(m, p)| (*m, (p.count, p.type_count)))
            .collect()
    }
}

/// Byte `a` of the fake machine memory.
pub(super) fn byte(mem: &crate::hypercall::testing::FakeMem, a: u64) -> u8 {
    (mem.word(a & !7) >> ((a & 7) * 8)) as u8
}

/// A table set up with one frame; returns the harness and the table frame.
pub(super) fn ready() -> (T, u64) {
    let mut t = T::new();
    t.frames(1);
    let (s, f) = t.setup(1);
    assert_eq!(s, GNTST_OKAY);
    (t, f[0])
}

/// The fixture's virtual address of pfn `pfn`.
pub(super) fn va(pfn: u64) -> u64 {
    VA_BASE + pfn * 4096
}
