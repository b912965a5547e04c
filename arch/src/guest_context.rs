//! A vCPU's PV CPU state as one unit (virtual CR0.TS, TSC_AUX, CR4.TSD and CR4.FSGSBASE, GDT
//! and LDT frames, breakpoints, XCR0), loaded with one call that does nothing when this CPU holds
//! exactly that state already.
//!
//! Each part has its own setter (in `guest` and `gdt`), which writes the hardware only when
//! the part changed; but checking the seven parts one by one on every guest exit (per-CPU
//! lookups, a CR4 read, 30 window slots) took ~2,800 TCG cycles of a lockstep-off
//! `xen_version` from the `bench` guest (profile medians). [`load`] compares the whole state
//! with what this CPU last loaded instead, and calls the setters only on a difference: ~1,800
//! cycles with building the state from the replica. Every setter forgets what this CPU
//! loaded ([`invalidate`]), so a part set on its own (an `fpu_taskswitch` or `set_gdt`
//! applied on the exit path) is never mistaken for loaded.
//!
//! [`load_from`] skips even building the state when the caller names where it comes from
//! with a [`Source`] equal to the one of the last load and nothing was set on its own since:
//! the exit path names the vCPU and the change stamps of the replica maps the state is read
//! from, which stay the same as long as no entry of them changes. Building and comparing the
//! state took ~1,600 of a lockstep-off `xen_version`'s ~9,400 TCG cycles (`bench` guest,
//! profile means), a load from an unchanged source takes ~100.

use crate::percpu::MAX_CPUS;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

/// Pages of a vCPU's GDT frames (Xen's 14 guest pages).
pub const GDT_PAGES: usize = crate::gdt::GUEST_PAGES;
/// Pages of a vCPU's LDT window (64 KiB).
pub const LDT_PAGES: usize = crate::gdt::LDT_PAGES;

/// The PV CPU state a guest context resumes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestContext {
    /// Virtual CR0.TS.
    pub ts: bool,
    /// TSC_AUX (what `rdtscp` reports).
    pub tsc_aux: u32,
    /// CR4.TSD.
    pub tsd: bool,
    /// CR4.FSGSBASE.
    pub fsgsbase: bool,
    /// GDT frames (0: unused page).
    pub gdt_frames: [u64; GDT_PAGES],
    /// LDT frames mapped so far (0: not mapped).
    pub ldt_frames: [u64; LDT_PAGES],
    /// LDT entries (0: no LDT).
    pub ldt_ents: u32,
    /// DR0-DR3.
    pub dr: [u64; 4],
    /// DR7.
    pub dr7: u64,
    /// XCR0 (`xstate`).
    pub xcr0: u64,
}

impl GuestContext {
    /// What a CPU holds while it runs no guest: no guest GDT or LDT frame mapped in its
    /// windows, no breakpoint armed, XCR0 x87|SSE, the rest cleared. A CPU that leaves a
    /// vCPU to idle loads it, so that nothing of a domain whose frames may be released next
    /// stays mapped there.
    pub fn idle() -> Self {
        GuestContext {
            ts: false,
            tsc_aux: 0,
            tsd: false,
            fsgsbase: false,
            gdt_frames: [0; GDT_PAGES],
            ldt_frames: [0; LDT_PAGES],
            ldt_ents: 0,
            dr: [0; 4],
            dr7: crate::cpu::DR7_DEFAULT,
            xcr0: crate::xstate::XCR0_FP_SSE,
        }
    }
}

/// Words naming what a [`GuestContext`] is built from: two equal sources give equal
/// contexts (e.g. a vCPU and change stamps of the state it is read from).
pub type Source = [u64; 5];

/// Whether two word arrays are equal, compared inline: `==` on arrays of this size calls
/// `memcmp` (~15 instructions a call, three calls on every guest exit's resume check).
pub fn words_eq<const N: usize>(a: &[u64; N], b: &[u64; N]) -> bool {
    a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// What one CPU last loaded as a whole: decides whether a load can be skipped.
#[derive(Debug, Default)]
pub struct Loaded {
    ctx: Option<GuestContext>,
    /// Where `ctx` was built from, when the load named it.
    source: Option<Source>,
    /// Changes so far: every call that may change what [`Loaded::holds`] answers counts one.
    changes: u64,
}

impl Loaded {
    /// Nothing known to be loaded.
    pub const NONE: Loaded = Loaded {
        ctx: None,
        source: None,
        changes: 0,
    };

    /// Whether `c` must be loaded (it differs from what was loaded, or that is unknown);
    /// then records it as loaded (from no named source), assuming the caller loads it now.
    pub fn needs_load(&mut self, c: &GuestContext) -> bool {
        self.changes += 1;
        self.source = None;
        if self.ctx.as_ref() == Some(c) {
            return false;
        }
        self.ctx = Some(*c);
        true
    }

    /// Whether what `source` gives is loaded already: it was the source of the last load and
    /// nothing was set on its own since.
    pub fn holds(&self, source: &Source) -> bool {
        self.ctx.is_some() && self.source.as_ref().is_some_and(|s| words_eq(s, source))
    }

    /// Records that the context loaded last came from `source`.
    pub fn loaded_from(&mut self, source: Source) {
        self.changes += 1;
        if self.ctx.is_some() {
            self.source = Some(source);
        }
    }

    /// Forgets what was loaded (a part of it was set on its own).
    pub fn invalidate(&mut self) {
        self.changes += 1;
        self.ctx = None;
        self.source = None;
    }

    /// Records `c` as loaded, its parts having been set (which forgot it).
    fn set_loaded(&mut self, c: GuestContext) {
        self.changes += 1;
        self.ctx = Some(c);
    }

    /// The count of changes so far (see [`Held`]).
    pub fn changes(&self) -> u64 {
        self.changes
    }
}

/// What each CPU last loaded with [`load`].
static LOADED: [Mutex<Loaded>; MAX_CPUS] = [const { Mutex::new(Loaded::NONE) }; MAX_CPUS];

/// Each CPU's [`Loaded::changes`], published after every change (written by that CPU only):
/// what [`Held::still`] reads without the lock.
static CHANGES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Publishes this CPU's change count (called with its `LOADED` lock held, after a change).
fn publish(cpu: usize, l: &Loaded) {
    CHANGES[cpu].store(l.changes, Ordering::Relaxed);
}

/// This CPU held the context of a source when the token was taken ([`held`]). While nothing
/// changed what it holds since, it holds that context still ([`Held::still`]: one load, not
/// the lock and a compare of the source, on every guest exit's resume check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held(u64);

impl Held {
    /// Whether this CPU still holds what it held when the token was taken. Only meaningful
    /// on the CPU that took it.
    pub fn still(self) -> bool {
        CHANGES[crate::percpu::cpu_index()].load(Ordering::Relaxed) == self.0
    }
}

/// A token that this CPU holds the context `source` gives, if it does (as [`load_from`]
/// would find it).
pub fn held(source: &Source) -> Option<Held> {
    let l = LOADED[crate::percpu::cpu_index()].lock();
    l.holds(source).then_some(Held(l.changes))
}

/// Loads `c` on this CPU, unless it holds exactly `c` already.
pub fn load(c: &GuestContext) {
    let cpu = crate::percpu::cpu_index();
    let slot = &LOADED[cpu];
    {
        let mut l = slot.lock();
        let needed = l.needs_load(c);
        publish(cpu, &l);
        if !needed {
            return;
        }
    }
    crate::guest::set_guest_ts(c.ts);
    crate::guest::load_tsc_aux(c.tsc_aux);
    crate::guest::set_guest_tsd(c.tsd);
    crate::guest::set_guest_fsgsbase(c.fsgsbase);
    crate::gdt::load_guest_gdt(&c.gdt_frames);
    crate::gdt::load_guest_ldt(&c.ldt_frames, c.ldt_ents);
    crate::guest::load_debug_registers(c.dr, c.dr7);
    crate::xstate::set_xcr0(c.xcr0);
    // The setters forgot the state: it is loaded now.
    let mut l = slot.lock();
    l.set_loaded(*c);
    publish(cpu, &l);
}

/// Loads the context `build` gives, which depends only on `source`: nothing (not even
/// `build`) when this CPU last loaded from the same source and nothing was set on its own
/// since, else as [`load`].
pub fn load_from(source: Source, build: impl FnOnce() -> GuestContext) {
    let cpu = crate::percpu::cpu_index();
    let slot = &LOADED[cpu];
    if slot.lock().holds(&source) {
        return;
    }
    load(&build());
    let mut l = slot.lock();
    l.loaded_from(source);
    publish(cpu, &l);
}

/// Forgets what this CPU loaded with [`load`]: called by every setter of a part.
pub fn invalidate() {
    let cpu = crate::percpu::cpu_index();
    let mut l = LOADED[cpu].lock();
    l.invalidate();
    publish(cpu, &l);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> GuestContext {
        GuestContext::idle()
    }

    #[test]
    fn words_eq_is_array_equality() {
        let a = [1u64, 2, 3, 4, 5];
        assert!(words_eq(&a, &a));
        for i in 0..5 {
            for bit in [0, 31, 63] {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!words_eq(&a, &b), "word {i} bit {bit}");
            }
        }
        assert!(words_eq::<0>(&[], &[]));
    }

    #[test]
    fn loads_the_first_time_and_after_any_change() {
        let mut l = Loaded::NONE;
        let a = ctx();
        assert!(l.needs_load(&a));
        assert!(!l.needs_load(&a));
        let changes: [fn(&mut GuestContext); 9] = [
            |c| c.ts = true,
            |c| c.tsc_aux = 3,
            |c| c.tsd = true,
            |c| c.fsgsbase = true,
            |c| c.gdt_frames[13] = 0x1234,
            |c| c.ldt_frames[15] = 0x99,
            |c| c.ldt_ents = 1,
            |c| c.dr[3] = 0xffff_8000_0000_0000,
            |c| c.dr7 = 0x401,
        ];
        for change in changes {
            let mut b = a;
            change(&mut b);
            assert!(l.needs_load(&b));
            assert!(!l.needs_load(&b));
            // Back to the first state: loaded again.
            assert!(l.needs_load(&a));
        }
    }

    /// A `Held` token stays good only while the change count stands: every call that can
    /// change what `holds` answers moves it, and none that cannot.
    #[test]
    fn every_change_to_what_is_held_is_counted() {
        let mut l = Loaded::NONE;
        let s = [1, 2, 3, 4, 5];
        let mut last = l.changes();
        let mut step = |l: &mut Loaded, what: &str, f: &dyn Fn(&mut Loaded)| {
            f(l);
            assert!(l.changes() > last, "{what} not counted");
            last = l.changes();
        };
        step(&mut l, "needs_load", &|l| {
            l.needs_load(&ctx());
        });
        step(&mut l, "loaded_from", &|l| l.loaded_from(s));
        assert!(l.holds(&s));
        let before = l.changes();
        assert!(l.holds(&s) && !l.holds(&[0; 5]));
        assert_eq!(l.changes(), before, "asking changes nothing");
        step(&mut l, "invalidate", &|l| l.invalidate());
        step(&mut l, "set_loaded", &|l| l.set_loaded(ctx()));
        step(&mut l, "needs_load of the same", &|l| {
            l.needs_load(&ctx());
        });
    }

    #[test]
    fn a_named_source_is_held_until_another_load_or_a_part_set_on_its_own() {
        let mut l = Loaded::NONE;
        let (s, t) = ([1, 2, 3, 4, 5], [1, 2, 3, 4, 6]);
        assert!(!l.holds(&s), "nothing loaded");
        l.loaded_from(s);
        assert!(!l.holds(&s), "nothing loaded yet: no source recorded");
        assert!(l.needs_load(&ctx()));
        l.loaded_from(s);
        assert!(l.holds(&s));
        assert!(!l.holds(&t));
        // A load of a context without a source (even the same one) forgets the source.
        assert!(!l.needs_load(&ctx()));
        assert!(!l.holds(&s));
        l.loaded_from(s);
        assert!(l.holds(&s));
        l.invalidate();
        assert!(!l.holds(&s));
        assert!(l.needs_load(&ctx()));
        assert!(!l.holds(&s));
    }

    #[test]
    fn loads_again_after_a_part_was_set_on_its_own() {
        let mut l = Loaded::NONE;
        let a = ctx();
        assert!(l.needs_load(&a));
        l.invalidate();
        assert!(l.needs_load(&a));
        assert!(!l.needs_load(&a));
    }
}
