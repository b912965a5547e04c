//! `portio`: string port I/O (`ins`/`outs`) from the ring-3 PV kernel, emulated by the
//! hypervisor when the virtual IOPL allows it: PCI configuration space through 0xcf8/0xcfc
//! (the host bridge's IDs, the same on Xen and DualVisor), REP counts, both directions, long
//! counts, and the faults of bad memory operands with REP progress kept. Without IOPL, the
//! I/O bitmap registered with PHYSDEVOP_set_iobitmap decides (`in`/`out` and `ins`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU8, Ordering};
use guest_rt::hypercall::BadPtr;
use guest_rt::portio::{self, Op, Regs};
use guest_rt::pvcpu;
use guest_rt::pvmm::Scratch;
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;
use guest_rt::test::{check, check_eq, info};
use guest_rt::{println, traps, Errno};

guest_rt::entry!(main);
guest_rt::no_heap!();

/// PCI configuration address and data ports.
const CF8: u16 = 0xcf8;
const CFC: u16 = 0xcfc;
/// POST port: writes go nowhere.
const POST: u16 = 0x80;
/// CONFIG_ADDRESS of bus 0, device 0, function 0, registers 0 (IDs) and 8 (class).
const BDF0_ID: u32 = 0x8000_0000;
const BDF0_CLASS: u32 = 0x8000_0008;

fn main(si: &StartInfo) {
    println!("portio: ins/outs test guest");
    let shared = match SharedInfo::map(si) {
        Ok(s) => s,
        Err(e) => guest_rt::test::error(format_args!("mapping shared_info failed: {}", e)),
    };
    without_iopl();
    check_eq("physdev set_iopl(1)", pvcpu::set_iopl(1), Ok(0));
    pci_config();
    counts_and_directions();
    faults(si, &shared);
    denied_ports();
    pit_channel_2();
    rtc();
    check_eq("physdev set_iopl(0)", pvcpu::set_iopl(0), Ok(0));
    io_bitmap();
}

/// PIT channel 2 and the speaker gate are dom0's, as Linux's TSC calibration uses them: the
/// gate set through 0x61 (only its two low bits are written), channel 2 loaded with 0xffff in
/// mode 0 through 0x43/0x42 and read back counting down from there. (Xen 4.17 passes them to
/// the hardware for the hardware domain; writes that were dropped left the counter where the
/// hypervisor's boot calibration had it.)
fn pit_channel_2() {
    let Some(gate) = portio::port_in(1, 0x61) else {
        check("in 0x61", false);
        return;
    };
    check(
        "gate channel 2 on, speaker off",
        portio::port_out(1, 0x61, (gate & !3) | 1),
    );
    check_eq(
        "0x61 reads back the gate bits written",
        portio::port_in(1, 0x61).map(|v| v & 3),
        Some(1),
    );
    check(
        "channel 2: lobyte/hibyte, mode 0",
        portio::port_out(1, 0x43, 0xb0),
    );
    check("count 0xffff (low)", portio::port_out(1, 0x42, 0xff));
    check("count 0xffff (high)", portio::port_out(1, 0x42, 0xff));
    let lsb = portio::port_in(1, 0x42);
    let msb = portio::port_in(1, 0x42);
    println!("portio: channel 2 read back {:x?} {:x?}", lsb, msb);
    // Counting down at 1.193 MHz from 0xffff: the high byte is still near 0xff two port
    // reads later (well under 0x20 * 256 ticks = 6.9 ms even under TCG).
    check(
        "channel 2 counts down from the loaded 0xffff",
        msb.is_some_and(|m| m >= 0xe0),
    );
    check("gate restored", portio::port_out(1, 0x61, gate));
    // Measured: Xen 4.17 under QEMU answers 0, as the hardware does.
    check_eq(
        "in 0x43 (the write-only mode port) reads 0",
        portio::port_in(1, 0x43),
        Some(0),
    );
}

/// Ports the hypervisor drives itself are denied to dom0 as on Xen 4.17: reads give all ones
/// (COM1's line status would read 0x60, and reading its data port would steal console input),
/// writes are dropped; so is the ACPI PM timer Xen uses; the other ports reach the hardware
/// (0x92: A20 on).
fn denied_ports() {
    for (port, name) in [
        (0x3f8u16, "COM1 data"),
        (0x3fb, "COM1 LCR"),
        (0x3fd, "COM1 LSR"),
        (0x21, "PIC master mask"),
        (0xa1, "PIC slave mask"),
        (0x40, "PIT channel 0"),
    ] {
        check_eq(name, portio::port_in(1, port), Some(0xff));
    }
    check_eq(
        "inl from the ACPI PM timer (q35: 0x608): all ones",
        portio::port_in(4, 0x608),
        Some(u32::MAX),
    );
    check_eq(
        "inw across 0x3f7/0x3f8: all ones",
        portio::port_in(2, 0x3f7),
        Some(0xffff),
    );
    let mut b = [0u8; 3];
    let _ = portio::ins(Op::Insb, true, false, 0x3fd, &mut b, 0, 3);
    check_eq("rep insb x3 from COM1's LSR", b, [0xff; 3]);
    check(
        "outb to COM1's IER (dropped)",
        portio::port_out(1, 0x3f9, 0x0f),
    );
    check_eq(
        "port 0x92 reaches the hardware",
        portio::port_in(1, 0x92),
        Some(2),
    );
}

/// The RTC as Xen 4.17 lets dom0 use it (`rtc_guest_read`/`rtc_guest_write`): the index
/// written to 0x70 reads back as written (NMI bit included), 0x71 reaches the register it
/// selects (status A: 32.768 kHz base, 1024 Hz rate; a CMOS RAM byte written and restored).
fn rtc() {
    check("outb 0x8a to 0x70", portio::port_out(1, 0x70, 0x8a));
    check_eq(
        "inb from 0x70: the index",
        portio::port_in(1, 0x70),
        Some(0x8a),
    );
    check_eq(
        "inb from 0x71: status A",
        portio::port_in(1, 0x71).map(|v| v & 0x7f),
        Some(0x26),
    );
    check_eq(
        "inw from 0x70: index and status A",
        portio::port_in(2, 0x70).map(|v| v & 0x7fff),
        Some(0x268a),
    );
    check(
        "outb 0x4e to 0x70 (CMOS RAM)",
        portio::port_out(1, 0x70, 0x4e),
    );
    let old = portio::port_in(1, 0x71);
    check("outb 0x5a to 0x71", portio::port_out(1, 0x71, 0x5a));
    check_eq("  reads back", portio::port_in(1, 0x71), Some(0x5a));
    if let Some(v) = old {
        check("  restored", portio::port_out(1, 0x71, v));
    }
}

/// The kernel's I/O bitmap: one bit per port, clear to allow.
static BITMAP: [AtomicU8; 8192] = [const { AtomicU8::new(0xff) }; 8192];

/// Allows (clear) or denies (set) `port` in [`BITMAP`].
fn allow(port: u16, on: bool) {
    let byte = &BITMAP[usize::from(port >> 3)];
    let bit = 1u8 << (port & 7);
    if on {
        byte.fetch_and(!bit, Ordering::SeqCst);
    } else {
        byte.fetch_or(bit, Ordering::SeqCst);
    }
}

/// PHYSDEVOP_set_iobitmap without IOPL: the ports whose bits are clear (below `nr_ports`) are
/// emulated, the others raise #GP; the bitmap is read at each access; bad bitmap addresses
/// and sizes are refused, an unmapped bitmap denies everything.
fn io_bitmap() {
    let bm = BITMAP.as_ptr() as u64;
    check_eq(
        "set_iobitmap nr_ports 65537 -> -EINVAL",
        pvcpu::set_iobitmap(bm, 65537),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_iobitmap in the hypervisor's range -> -EINVAL",
        pvcpu::set_iobitmap(0xffff_8000_0000_0000, 16),
        Err(Errno::EINVAL),
    );
    check_eq(
        "set_iobitmap at a non-canonical address -> -EINVAL",
        pvcpu::set_iobitmap(0x0000_8000_0000_0000, 16),
        Err(Errno::EINVAL),
    );
    check_eq(
        "in 0xcfc without a bitmap -> #GP",
        portio::port_in(4, CFC),
        None,
    );
    for p in CF8..CF8 + 8 {
        allow(p, true);
    }
    check_eq("set_iobitmap", pvcpu::set_iobitmap(bm, 0x1000), Ok(0));
    check("outl to 0xcf8 allowed", portio::port_out(4, CF8, BDF0_ID));
    let id = portio::port_in(4, CFC);
    check_eq(
        "inl from 0xcfc allowed: Intel's vendor id",
        id.map(|v| v & 0xffff),
        Some(0x8086),
    );
    check_eq(
        "inb from 0x80 (bit set) -> #GP",
        portio::port_in(1, POST),
        None,
    );
    check(
        "outb to 0x80 (bit set) -> #GP",
        !portio::port_out(1, POST, 0),
    );
    let mut b = [0u8; 4];
    let r = portio::ins(Op::Insl, false, false, CFC, &mut b, 0, 0);
    check_eq(
        "insl from 0xcfc allowed too",
        r.map(|_| u32::from_le_bytes(b)),
        id,
    );
    allow(CFC, false);
    check_eq(
        "bit of 0xcfc set again: #GP at once",
        portio::port_in(1, CFC),
        None,
    );
    check_eq(
        "  inw from 0xcfb (and 0xcfc) -> #GP",
        portio::port_in(2, CFC - 1),
        None,
    );
    check(
        "  inb from 0xcfd still allowed",
        portio::port_in(1, CFC + 1).is_some(),
    );
    allow(CFC, true);
    check_eq(
        "set_iobitmap nr_ports 0xcfd",
        pvcpu::set_iobitmap(bm, 0xcfd),
        Ok(0),
    );
    check(
        "inb from 0xcfc: below nr_ports",
        portio::port_in(1, CFC).is_some(),
    );
    check_eq(
        "inw from 0xcfc: past nr_ports -> #GP",
        portio::port_in(2, CFC),
        None,
    );
    check_eq("set_iobitmap nr_ports 0", pvcpu::set_iobitmap(bm, 0), Ok(0));
    check_eq("inb from 0xcfc -> #GP", portio::port_in(1, CFC), None);
    check_eq(
        "set_iobitmap at an unmapped address",
        pvcpu::set_iobitmap(0x7fff_0000_0000, 0x1000),
        Ok(0),
    );
    check_eq("  inb from 0xcfc -> #GP", portio::port_in(1, CFC), None);
    check_eq("set_iobitmap none", pvcpu::set_iobitmap(0, 0), Ok(0));
}

/// Writes CONFIG_ADDRESS with one `outsl`.
fn select(addr: u32) -> Option<Regs> {
    portio::outs(Op::Outsl, false, false, CF8, &addr.to_le_bytes(), 0, 0)
}

/// Reads CONFIG_DATA with one `insl`.
fn read_data() -> u32 {
    let mut b = [0u8; 4];
    let _ = portio::ins(Op::Insl, false, false, CFC, &mut b, 0, 0);
    u32::from_le_bytes(b)
}

/// Runs `f` expecting #GP; (taken, error code).
fn expect_gp(len: u8, f: impl FnOnce() -> Option<Regs>) -> (bool, u64, Option<Regs>) {
    let before = traps::taken(13);
    traps::expect(13, len);
    let r = f();
    let taken = traps::taken(13) == before + 1;
    if !taken {
        traps::unexpect(13);
    }
    (taken, traps::last_trap().error_code, r)
}

fn without_iopl() {
    let buf = [1u8, 2, 3, 4];
    let at = buf.as_ptr() as u64;
    let (taken, ec, r) = expect_gp(Op::Outsb.len(true), || {
        portio::outs(Op::Outsb, true, false, POST, &buf, 0, 2)
    });
    check("rep outsb with IOPL 0 -> #GP", taken);
    check_eq("  error code 0", ec, 0);
    check_eq(
        "  RCX and RSI untouched",
        r,
        Some(Regs {
            rcx: 2,
            rsi: at,
            rdi: 0,
        }),
    );
    let mut b = [0u8; 4];
    let (taken, _, _) = expect_gp(Op::Insl.len(false), || {
        portio::ins(Op::Insl, false, false, CFC, &mut b, 0, 0)
    });
    check("insl with IOPL 0 -> #GP", taken);
    check_eq("  nothing stored", b, [0; 4]);
}

fn pci_config() {
    let word = BDF0_ID.to_le_bytes();
    let r = portio::outs(Op::Outsl, false, false, CF8, &word, 0, 0);
    check_eq(
        "outsl to 0xcf8: RSI advanced by 4, RCX untouched",
        r,
        Some(Regs {
            rcx: 0,
            rsi: word.as_ptr() as u64 + 4,
            rdi: 0,
        }),
    );
    let id = read_data();
    info(format_args!("host bridge id {:#x}", id));
    check_eq("insl from 0xcfc: Intel's vendor id", id & 0xffff, 0x8086);
    let mut b = [0u8; 12];
    let at = b.as_ptr() as u64;
    let r = portio::ins(Op::Insl, true, false, CFC, &mut b, 0, 3);
    check_eq(
        "rep insl x3: RCX 0, RDI + 12",
        r.map(|r| (r.rcx, r.rdi)),
        Some((0, at + 12)),
    );
    check(
        "  three copies of the id",
        b.chunks(4)
            .all(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) == id),
    );
    let mut w = [0u8; 4];
    let _ = portio::ins(Op::Insw, true, false, CFC + 2, &mut w, 0, 2);
    check_eq(
        "rep insw x2 from 0xcfe: the device id twice",
        (
            u16::from_le_bytes([w[0], w[1]]),
            u16::from_le_bytes([w[2], w[3]]),
        ),
        ((id >> 16) as u16, (id >> 16) as u16),
    );
    let mut c = [0u8; 4];
    let _ = portio::ins(Op::Insb, true, false, CFC, &mut c, 0, 4);
    check_eq("rep insb x4: the low byte four times", c, [id as u8; 4]);
    // Backwards: the element at RSI first, so the last one written is the lowest.
    let mut pair = [0u8; 8];
    pair[..4].copy_from_slice(&BDF0_CLASS.to_le_bytes());
    pair[4..].copy_from_slice(&BDF0_ID.to_le_bytes());
    let r = portio::outs(Op::Outsl, true, true, CF8, &pair, 4, 2);
    check_eq(
        "rep outsl x2 with DF: RSI - 8",
        r.map(|r| (r.rcx, r.rsi)),
        Some((0, pair.as_ptr() as u64 - 4)),
    );
    let class = read_data();
    let _ = select(BDF0_CLASS);
    check_eq(
        "  CONFIG_ADDRESS is the lower element's",
        class,
        read_data(),
    );
    info(format_args!("host bridge class/revision {:#x}", class));
    check_eq("  the class register (host bridge)", class >> 16, 0x0600);
    let mut d = [0xeeu8; 4];
    let r = portio::ins(Op::Insb, true, true, CFC, &mut d, 2, 3);
    check_eq(
        "rep insb x3 with DF: RDI - 3",
        r.map(|r| (r.rcx, r.rdi)),
        Some((0, d.as_ptr() as u64 - 1)),
    );
    check_eq(
        "  bytes 2, 1, 0 stored",
        d,
        [class as u8, class as u8, class as u8, 0xee],
    );
}

fn counts_and_directions() {
    let _ = select(BDF0_ID);
    let id = read_data();
    let mut b = [0x55u8; 4];
    let at = b.as_ptr() as u64;
    let r = portio::ins(Op::Insb, true, false, CFC, &mut b, 0, 0);
    check_eq(
        "rep insb with RCX 0: nothing moves",
        (r, b),
        (
            Some(Regs {
                rcx: 0,
                rsi: 0,
                rdi: at,
            }),
            [0x55; 4],
        ),
    );
    let big = [0x5au8; 300];
    let r = portio::outs(Op::Outsb, true, false, POST, &big, 0, 300);
    check_eq(
        "rep outsb x300 to 0x80: all of it",
        r.map(|r| (r.rcx, r.rsi)),
        Some((0, big.as_ptr() as u64 + 300)),
    );
    let mut many = [0u8; 1200];
    let r = portio::ins(Op::Insl, true, false, CFC, &mut many, 0, 300);
    check_eq(
        "rep insl x300: RCX 0, RDI + 1200",
        r.map(|r| (r.rcx, r.rdi)),
        Some((0, many.as_ptr() as u64 + 1200)),
    );
    check(
        "  every element is the id",
        many.chunks(4)
            .all(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) == id),
    );
}

/// Runs `f` expecting #PF; (taken, error code, cr2, regs).
fn expect_pf(
    shared: &SharedInfo,
    len: u8,
    f: impl FnOnce() -> Option<Regs>,
) -> (bool, u64, Option<u64>, Option<Regs>) {
    let before = traps::taken(14);
    traps::expect(14, len);
    let r = f();
    let taken = traps::taken(14) == before + 1;
    if !taken {
        traps::unexpect(14);
    }
    (taken, traps::last_trap().error_code, shared.cr2(0), r)
}

fn faults(si: &StartInfo, shared: &SharedInfo) {
    let (taken, ec, cr2, r) = expect_pf(shared, Op::Insb.len(true), || {
        Some(portio::at_bad_address(Op::Insb, true, CFC, BadPtr::NULL, 3))
    });
    check("rep insb to the null page -> #PF", taken);
    check_eq("  error code: write (kernel, not present)", ec, 2);
    check_eq("  cr2", cr2, Some(0));
    check_eq(
        "  no progress: RCX 3, RDI 0",
        r.map(|r| (r.rcx, r.rdi)),
        Some((3, 0)),
    );
    let (taken, ec, cr2, _) = expect_pf(shared, Op::Outsw.len(false), || {
        Some(portio::at_bad_address(
            Op::Outsw,
            false,
            POST,
            BadPtr::NULL,
            0,
        ))
    });
    check("outsw from the null page -> #PF", taken);
    check_eq("  error code 0 (read)", (ec, cr2), (0, Some(0)));
    for (name, bad) in [
        ("rep outsb from Xen's range -> #GP(0)", BadPtr::HYPERVISOR),
        (
            "rep outsb from a non-canonical address -> #GP(0)",
            BadPtr::NON_CANONICAL,
        ),
    ] {
        let (taken, ec, r) = expect_gp(Op::Outsb.len(true), || {
            Some(portio::at_bad_address(Op::Outsb, true, POST, bad, 2))
        });
        check_eq(name, (taken, ec), (true, 0));
        check_eq("  RCX untouched", r.map(|r| r.rcx), Some(2));
    }
    let Some(mut scratch) = Scratch::new(si) else {
        check("scratch page", false);
        return;
    };
    check_eq("unmap the scratch page", scratch.map(0, 0), Ok(0));
    let va = scratch.va();
    let (taken, ec, cr2, r) = expect_pf(shared, Op::Insl.len(true), || {
        portio::across_unmapped_scratch(&scratch, Op::Insl, true, CFC, 6, 3)
    });
    check(
        "rep insl x3 from 6 bytes below an unmapped page -> #PF",
        taken,
    );
    check_eq("  error code 2, cr2 the page", (ec, cr2), (2, Some(va)));
    check_eq(
        "  one element done: RCX 2, RDI at the straddling one",
        r.map(|r| (r.rcx, r.rdi)),
        Some((2, va - 2)),
    );
    let (taken, ec, cr2, r) = expect_pf(shared, Op::Outsb.len(true), || {
        portio::across_unmapped_scratch(&scratch, Op::Outsb, true, POST, 1, 3)
    });
    check(
        "rep outsb x3 from 1 byte below an unmapped page -> #PF",
        taken,
    );
    check_eq("  error code 0, cr2 the page", (ec, cr2), (0, Some(va)));
    check_eq(
        "  one element done: RCX 2, RSI the page",
        r.map(|r| (r.rcx, r.rsi)),
        Some((2, va)),
    );
    check_eq("map the scratch page back", scratch.restore(), Ok(0));
}
