//! `hostile`: random arguments (fixed-seed PRNG) thrown at every hypercall number, thousands
//! of calls, through guest-rt's `fuzz` policy (which keeps the hypervisor's writes in a
//! scratch page and leaves out the calls that end or derail the caller). Checks: every call
//! returns, with success or a Xen errno; the hypervisor keeps running; the guest's own memory
//! (its read-only image, a canary array, its p2m list and bootstrap page tables) is intact.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_rt::fuzz;
use guest_rt::hypercall::GET_DEBUGREG;
use guest_rt::println;
use guest_rt::pvmm::{self, Scratch};
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// Calls made.
const CALLS: u32 = 4000;
/// A canary the calls must leave alone.
static CANARY: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// One argument: a mix of the shapes hypercall arguments take.
    fn arg(&mut self, scratch: u64) -> u64 {
        let r = self.next();
        match r % 10 {
            0 => r >> 60,                                               // small
            1 => (r >> 8) & 0xffff_ffff,                                // 32-bit
            2 => 0,                                                     // NULL
            3 => 0xffff_8000_0000_0000 | ((r >> 4) & 0x7f_ffff_fff8),   // Xen's range
            4 => 0x8000_0000_0000_0000 | (r >> 4),                      // non-canonical
            5 | 6 => scratch + ((r >> 8) & (fuzz::SCRATCH_WINDOW - 8)), // the scratch page
            7 => 0x7ff0,                                                // DOMID_SELF
            8 => u64::MAX,
            _ => r,
        }
    }
}

/// FNV-1a over words.
fn fnv(acc: u64, w: u64) -> u64 {
    (acc ^ w).wrapping_mul(0x0000_0100_0000_01b3)
}

/// A digest of what the calls must not change: the read-only image, the p2m list and the
/// bootstrap page tables (accessed/dirty bits masked).
fn own_memory_digest(si: &StartInfo) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in fuzz::readonly_image() {
        h = fnv(h, u64::from(*b));
    }
    for pfn in 0..si.nr_pages {
        h = fnv(h, pvmm::pfn_to_mfn(si, pfn).unwrap_or(u64::MAX));
    }
    for f in 0..si.nr_pt_frames {
        let va = si.pt_base + f * 4096;
        let Some(mfn) = guest_rt::smp::virt_to_mfn(si, va) else {
            continue;
        };
        for i in 0..512 {
            h = fnv(h, pvmm::read_table_entry(si, mfn, i).unwrap_or(0) & !0x60);
        }
    }
    h
}

fn main(si: &StartInfo) {
    println!("hostile: random-argument hypercalls");
    let Some(s) = Scratch::new(si) else {
        guest_rt::test::error(format_args!("no scratch page"));
    };
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for (i, c) in CANARY.iter().enumerate() {
        c.store(rng.next() ^ i as u64, Ordering::SeqCst);
    }
    let canary_seed = rng.0;
    let before = own_memory_digest(si);
    info(format_args!(
        "read-only image {} bytes, digest {:#x}, scratch {:#x}",
        fuzz::readonly_image().len(),
        before,
        s.va()
    ));

    let mut made = [0u32; 128];
    let mut ok = [0u32; 128];
    let mut bad = 0u32;
    for i in 0..CALLS {
        let r = rng.next();
        // Every number twice in turn, then random ones (one in eight past the table).
        let nr = if i < 128 * 2 {
            i % 128
        } else if r & 7 == 0 {
            64 + ((r >> 3) % 64) as u32
        } else {
            ((r >> 3) % 64) as u32
        };
        if i % 8 == 0 {
            for w in 0..512 {
                s.write(w, rng.next());
            }
        }
        let args = [
            rng.arg(s.va()),
            rng.arg(s.va()),
            rng.arg(s.va()),
            rng.arg(s.va()),
            rng.arg(s.va()),
        ];
        let Some(ret) = fuzz::call(nr, args, &s) else {
            continue;
        };
        made[nr as usize] += 1;
        // get_debugreg answers with the register, which may look negative (an address in
        // the kernel's upper half).
        let valid = ret >= 0 || (1..=133).contains(&-ret) || nr == GET_DEBUGREG;
        if ret >= 0 {
            ok[nr as usize] += 1;
        }
        if !valid {
            bad += 1;
            info(format_args!(
                "call {} nr {} args {:x?} -> {}",
                i, nr, args, ret
            ));
        }
    }
    let total: u32 = made.iter().sum();
    for nr in 0..64 {
        if made[nr] != 0 {
            info(format_args!(
                "nr {:2}: {:3} calls, {:3} succeeded",
                nr, made[nr], ok[nr]
            ));
        }
    }
    info(format_args!(
        "numbers 64-127: {} calls",
        made[64..].iter().sum::<u32>()
    ));
    check("thousands of calls made and returned", total >= 3000);
    check_eq("every result is success or a Xen errno", bad, 0);

    let mut rng2 = Rng(0x5eed_1234_abcd_0001);
    let mut intact = true;
    for (i, c) in CANARY.iter().enumerate() {
        intact &= c.load(Ordering::SeqCst) == rng2.next() ^ i as u64;
    }
    check("the canary is intact", intact && rng2.0 == canary_seed);
    check_eq(
        "image, p2m and page tables unchanged",
        own_memory_digest(si),
        before,
    );
    check_eq(
        "the scratch page is still ours",
        s.mapped_mfn(),
        Some(s.home()),
    );
    unreturnable_frames(&mut rng);
}

/// Frames the guest cannot be returned to, given to `HYPERVISOR_iret`: random code and stack
/// selectors below Xen's reserved GDT entries (this guest has no GDT or LDT of its own, so
/// every one is empty, null or past the table), or a good code selector with such a stack
/// selector. Each return faults with #GP, the code selector's checked first, and the fault
/// comes back to the guest as its own.
fn unreturnable_frames(rng: &mut Rng) {
    const FRAMES: u32 = 200;
    let mut wrong = 0;
    for i in 0..FRAMES {
        let r = rng.next();
        let bad = |x: u64| (x % 0xe000) as u16;
        let (cs, ss) = match i % 4 {
            0 => (guest_rt::cpu::FLAT_RING3_CS64, bad(r >> 16)),
            1 => (bad(r), guest_rt::cpu::FLAT_RING3_SS64),
            _ => (bad(r), bad(r >> 16)),
        };
        let culprit = if cs == guest_rt::cpu::FLAT_RING3_CS64 {
            ss
        } else {
            cs
        };
        let want = Some((13, u64::from(culprit & 0xfffc)));
        let got = guest_rt::desc::iret_fault(cs, ss);
        if got != want {
            wrong += 1;
            info(format_args!(
                "iret to {:#x}:{:#x}: {:?}, expected {:?}",
                cs, ss, got, want
            ));
        }
    }
    check_eq(
        "returns to unusable selectors fault as the guest's #GP(selector)",
        wrong,
        0,
    );
}
