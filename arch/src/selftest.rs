//! In-hypervisor self-tests: `selftest=NAME` on the command line runs one after boot and
//! reports `selftest NAME: PASS|FAIL: reason` on serial and through isa-debug-exit.

use crate::percpu;
use crate::platform::{debug_exit, DEBUG_EXIT_FAIL, DEBUG_EXIT_PASS};
use crate::xprintln;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// One named self-test.
#[derive(Clone, Copy)]
pub struct SelfTest {
    /// Name given with `selftest=`.
    pub name: &'static str,
    /// The test; `Err` carries the failure reason.
    pub run: fn() -> Result<(), String>,
}

/// The self-tests of the hardware layer.
pub const ARCH_TESTS: &[SelfTest] = &[
    SelfTest {
        name: "heap",
        run: heap,
    },
    SelfTest {
        name: "traps",
        run: traps,
    },
    SelfTest {
        name: "timer",
        run: timer,
    },
    SelfTest {
        name: "ipi",
        run: ipi,
    },
    SelfTest {
        name: "frames",
        run: frames,
    },
    SelfTest {
        name: "ring3",
        run: ring3,
    },
    SelfTest {
        name: "segments",
        run: segments,
    },
    SelfTest {
        name: "guest-return",
        run: guest_return,
    },
];

/// Runs the named test from `tests` (or lists them for `list`), reports, and exits QEMU.
pub fn run(name: &str, tests: &[&[SelfTest]]) -> ! {
    if name == "list" {
        let names: Vec<&str> = tests
            .iter()
            .flat_map(|t| t.iter().map(|t| t.name))
            .collect();
        xprintln!("selftests: {}", names.join(" "));
        debug_exit(DEBUG_EXIT_PASS);
    }
    let Some(test) = tests.iter().flat_map(|t| t.iter()).find(|t| t.name == name) else {
        xprintln!("selftest {}: FAIL: unknown self-test", name);
        debug_exit(DEBUG_EXIT_FAIL);
    };
    xprintln!("selftest {}: running on {} CPUs", name, percpu::nr_online());
    report(name, (test.run)())
}

/// Reports a self-test's result on serial and exits QEMU with the matching status.
pub fn report(name: &str, result: Result<(), String>) -> ! {
    match result {
        Ok(()) => {
            xprintln!("selftest {}: PASS", name);
            debug_exit(DEBUG_EXIT_PASS)
        }
        Err(why) => {
            xprintln!("selftest {}: FAIL: {}", name, why);
            debug_exit(DEBUG_EXIT_FAIL)
        }
    }
}

fn heap() -> Result<(), String> {
    let before = crate::heap::usage().0;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 0..512usize {
        let len = 1 + (i * 7919) % 9000;
        blocks.push(alloc::vec![(i % 251) as u8; len]);
    }
    let mut map: hashbrown::HashMap<u64, u64> = hashbrown::HashMap::new();
    for i in 0..10_000u64 {
        map.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
    }
    for (i, b) in blocks.iter().enumerate() {
        if b.iter().any(|&x| x != (i % 251) as u8) {
            return Err(format!("block {i} corrupted"));
        }
    }
    for i in 0..10_000u64 {
        if map.get(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) != Some(&i) {
            return Err(format!("hash map lost key {i}"));
        }
    }
    drop(blocks);
    drop(map);
    let after = crate::heap::usage().0;
    if after != before {
        return Err(format!(
            "heap leaked {} bytes",
            after as i64 - before as i64
        ));
    }
    Ok(())
}

static TRAP_SEEN: AtomicU64 = AtomicU64::new(0);

fn int3_hook(frame: &mut crate::trap::TrapFrame) -> bool {
    if frame.vector != 3 {
        return false;
    }
    TRAP_SEEN.store(frame.rax ^ frame.r15, Ordering::SeqCst);
    // Clobber xmm0 in the handler: the entry path must restore the interrupted SSE state.
    // SAFETY: zeroing xmm0 has no memory effects; it is saved/restored around this handler.
    unsafe { core::arch::asm!("pxor xmm0, xmm0", out("xmm0") _) };
    frame.r14 = 0x0B0B_0B0B;
    true
}

fn traps() -> Result<(), String> {
    crate::trap::set_exception_hook(Some(int3_hook));
    let (mut rax, mut rbx, mut r15) = (0x1111_2222_3333_4444u64, 0u64, 0x5555_6666_7777_8888u64);
    let xmm_in: u64 = 0xDEAD_BEEF_CAFE_F00D;
    let xmm_out: u64;
    // SAFETY: `int3` traps into the hook installed above, which returns to the next
    // instruction; all registers used are declared.
    unsafe {
        core::arch::asm!(
            "movq xmm0, {xin}",
            "int3",
            "movq {xout}, xmm0",
            xin = in(reg) xmm_in,
            xout = out(reg) xmm_out,
            inout("rax") rax,
            inout("r14") rbx,
            inout("r15") r15,
            out("xmm0") _,
        )
    };
    crate::trap::set_exception_hook(None);
    let seen = TRAP_SEEN.load(Ordering::SeqCst);
    if seen != 0x1111_2222_3333_4444 ^ 0x5555_6666_7777_8888 {
        return Err(format!("handler saw wrong registers ({seen:#x})"));
    }
    if rax != 0x1111_2222_3333_4444 || r15 != 0x5555_6666_7777_8888 {
        return Err("registers not preserved across the trap".into());
    }
    if rbx != 0x0B0B_0B0B {
        return Err("handler's register update not returned to the interrupted code".into());
    }
    if xmm_out != xmm_in {
        return Err(format!("SSE state not preserved: xmm0 {xmm_out:#x}"));
    }
    Ok(())
}

fn online_cpus() -> Vec<usize> {
    (0..percpu::MAX_CPUS)
        .filter(|&i| percpu::get(i).is_some_and(|p| p.online.load(Ordering::Acquire)))
        .collect()
}

fn timer() -> Result<(), String> {
    let cpus = online_cpus();
    let before: Vec<u64> = cpus
        .iter()
        .map(|&i| percpu::get(i).map_or(0, |p| p.timer_ticks.load(Ordering::Relaxed)))
        .collect();
    crate::cpu::enable_interrupts();
    for _ in 0..20 {
        crate::cpu::enable_and_halt();
    }
    for (k, &i) in cpus.iter().enumerate() {
        let now = percpu::get(i).map_or(0, |p| p.timer_ticks.load(Ordering::Relaxed));
        if now <= before[k] {
            return Err(format!("CPU{i}'s timer did not tick"));
        }
    }
    Ok(())
}

fn ipi_handler(_v: u8, _f: &mut crate::trap::TrapFrame) {
    percpu::this().ipis.fetch_add(1, Ordering::Relaxed);
    crate::lapic::eoi();
}

fn ipi() -> Result<(), String> {
    crate::trap::register_irq(crate::lapic::CALL_VECTOR, ipi_handler);
    let me = percpu::cpu_index();
    let others: Vec<usize> = online_cpus().into_iter().filter(|&i| i != me).collect();
    for round in 1..=10u64 {
        for &i in &others {
            let Some(p) = percpu::get(i) else { continue };
            let before = p.ipis.load(Ordering::Relaxed);
            crate::lapic::send_ipi(p.apic_id.load(Ordering::Relaxed), crate::lapic::CALL_VECTOR);
            let mut waited = 0u64;
            while p.ipis.load(Ordering::Relaxed) == before {
                crate::lapic::udelay(10);
                waited += 1;
                if waited > 200_000 {
                    return Err(format!("CPU{i} did not take IPI round {round}"));
                }
            }
        }
    }
    Ok(())
}

/// The self-tests that end in the fatal-trap path on purpose (never PASS, not in the list):
/// [`deliberate_fault`] and [`deliberate_stack_overflow`]'s two.
pub const FATAL_TESTS: [&str; 3] = ["fault", "stack-overflow-main", "stack-overflow-syscall"];

/// `selftest=stack-overflow-main` / `stack-overflow-syscall`: pushes onto this CPU's main
/// stack (or, with `syscall`, from the top of its SYSCALL stack) until the unmapped guard
/// page below it faults; the fatal-trap path must report `stack overflow on CPUn (...)`.
pub fn deliberate_stack_overflow(syscall: bool) -> ! {
    let cpu = percpu::cpu_index();
    let top = percpu::this().syscall_stack_top.load(Ordering::Relaxed);
    if syscall {
        xprintln!("selftest stack-overflow: filling the SYSCALL stack of CPU{cpu} from {top:#x}");
        // SAFETY: the SYSCALL stack is not in use outside a guest exit (this is boot, no guest
        // runs); the pushes run into its guard page and the #PF (on an IST stack) is fatal.
        unsafe {
            core::arch::asm!(
                "mov rsp, {top}",
                "2:",
                "push rax",
                "jmp 2b",
                top = in(reg) top,
                options(noreturn)
            )
        }
    }
    xprintln!("selftest stack-overflow: filling the main stack of CPU{cpu}");
    // SAFETY: the pushes only overwrite the unused part of this CPU's main stack below RSP
    // and then fault on its guard page; the #PF (on an IST stack) is fatal, nothing returns.
    unsafe { core::arch::asm!("2:", "push rax", "jmp 2b", options(noreturn)) }
}

/// `selftest=fault`: executes `ud2` to exercise the fatal-trap path (register dump, call
/// trace, stop every CPU, then reset or halt as configured). Not in the list: it never passes.
pub fn deliberate_fault() -> ! {
    xprintln!(
        "selftest fault: executing ud2 on CPU{}",
        percpu::cpu_index()
    );
    // SAFETY: `ud2` raises #UD, which the fatal-trap handler reports; it never returns here.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

fn frames() -> Result<(), String> {
    let before = crate::memory::current_stats().free_frames;
    let image = crate::memory::image_phys_range();
    let mut got: Vec<u64> = Vec::new();
    for i in 0..2048u64 {
        let Some(f) = crate::memory::alloc_frame() else {
            return Err(format!("allocation {i} failed with {before} frames free"));
        };
        if !f.is_multiple_of(4096) || f < (1 << 20) || image.contains(&f) {
            return Err(format!("allocator handed out reserved frame {f:#x}"));
        }
        // SAFETY: `f` was just allocated to this test (nobody else references it) and lies
        // in the direct map.
        unsafe {
            core::ptr::write_bytes(
                crate::layout::phys_to_virt(f) as *mut u8,
                (i % 255) as u8,
                4096,
            )
        };
        got.push(f);
    }
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != got.len() {
        return Err("a frame was handed out twice".into());
    }
    for (i, &f) in got.iter().enumerate() {
        // SAFETY: `f` is still allocated to this test and mapped by the direct map.
        let page = unsafe {
            core::slice::from_raw_parts(crate::layout::phys_to_virt(f) as *const u8, 4096)
        };
        if page.iter().any(|&b| b != (i % 255) as u8) {
            return Err(format!("frame {f:#x} overwritten"));
        }
    }
    if crate::memory::free_frame(got[0]).is_err() {
        return Err("free of an allocated frame refused".into());
    }
    if crate::memory::free_frame(got[0]).is_ok() {
        return Err("double free accepted".into());
    }
    if crate::memory::free_frame(image.start).is_ok() {
        return Err("free of an image frame accepted".into());
    }
    for &f in &got[1..] {
        crate::memory::free_frame(f).map_err(|e| format!("free {f:#x}: {e:?}"))?;
    }
    let after = crate::memory::current_stats().free_frames;
    if after != before {
        return Err(format!("free frames {before} before, {after} after"));
    }
    Ok(())
}

/// Phases of the `ring3` self-test, advanced by its exit hook: 0, entered with a null SS (the
/// return faults); 1, the SYSCALL; 2, the `cli` (#GP), returned past with a null CS (the
/// return faults); 3, that fault; 4, the `ud2` (#UD).
static RING3_PHASE: AtomicU64 = AtomicU64::new(0);
static RING3_SYSCALL_RIP: AtomicU64 = AtomicU64::new(0);

fn ring3_exit_hook(
    exit: crate::guest::GuestExit,
    frame: &mut crate::trap::TrapFrame,
    fx: &mut crate::guest::FxArea,
) {
    use crate::guest::GuestExit;
    let fail = |why: &str| -> ! {
        xprintln!(
            "selftest ring3: FAIL: {} (exit {:?}, rip {:#x})",
            why,
            exit,
            frame.rip
        );
        debug_exit(DEBUG_EXIT_FAIL)
    };
    match (RING3_PHASE.load(Ordering::SeqCst), exit) {
        (0, GuestExit::ReturnFault(13)) => {
            // Entered with a null SS: the `iretq` of `enter_guest` faults (#GP(0)), and the
            // fault is the guest's, at its first instruction.
            if frame.rip != 0x40_0000 || frame.ss != 3 || frame.error_code != 0 {
                fail("return fault of enter_guest: wrong frame");
            }
            frame.ss = u64::from(crate::gdt::RING3_DS);
            RING3_PHASE.store(1, Ordering::SeqCst);
        }
        (1, GuestExit::Syscall) => {
            if frame.rax != 0x1234 || frame.rdi != 0x5678 {
                fail("SYSCALL arguments not seen by the hypervisor");
            }
            if frame.cs != u64::from(crate::gdt::RING3_CS64)
                || frame.ss != u64::from(crate::gdt::RING3_DS)
            {
                fail("SYSCALL frame selectors wrong");
            }
            // xmm1 was set by the guest: it must be in the saved FPU image (bytes 160+16).
            let xmm1 = u64::from_le_bytes(fx.0[176..184].try_into().unwrap_or([0; 8]));
            if xmm1 != 0x0123_4567_89AB_CDEF {
                fail("guest SSE state not saved on SYSCALL");
            }
            RING3_SYSCALL_RIP.store(frame.rcx, Ordering::SeqCst);
            frame.rax = 0xABCD;
            RING3_PHASE.store(2, Ordering::SeqCst);
        }
        (2, GuestExit::Exception(13)) => {
            // The guest echoed rax (0xABCD) into rbx, then tried a privileged `cli`. Return
            // past it with a null CS: the exit path's `iretq` faults.
            if frame.rbx != 0xABCD {
                fail("SYSCALL result not returned to ring 3");
            }
            frame.rip += 1; // skip the one-byte `cli`
            frame.cs = 0;
            RING3_PHASE.store(3, Ordering::SeqCst);
        }
        (3, GuestExit::ReturnFault(13)) => {
            // The guest's registers and the frame it was being returned to (RPL 3 forced).
            if frame.cs != 3 || frame.rbx != 0xABCD || frame.error_code != 0 {
                fail("return fault of the exit path: wrong frame");
            }
            let xmm1 = u64::from_le_bytes(fx.0[176..184].try_into().unwrap_or([0; 8]));
            if xmm1 != 0x0123_4567_89AB_CDEF {
                fail("guest SSE state lost on the return fault");
            }
            frame.cs = u64::from(crate::gdt::RING3_CS64);
            RING3_PHASE.store(4, Ordering::SeqCst);
        }
        (4, GuestExit::Exception(6)) => {
            xprintln!("selftest ring3: PASS");
            debug_exit(DEBUG_EXIT_PASS)
        }
        (_, GuestExit::Interrupt(_)) => {}
        _ => fail("unexpected guest exit"),
    }
}

fn ring3() -> Result<(), String> {
    // mov $0x0123456789abcdef, %rax; movq %rax, %xmm1; mov $0x1234, %eax; mov $0x5678, %edi;
    // syscall; mov %rax, %rbx; cli; ud2
    const CODE: &[u8] = &[
        0x48, 0xB8, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01, // movabs rax
        0x66, 0x48, 0x0F, 0x6E, 0xC8, // movq xmm1, rax
        0xB8, 0x34, 0x12, 0x00, 0x00, // mov eax, 0x1234
        0xBF, 0x78, 0x56, 0x00, 0x00, // mov edi, 0x5678
        0x0F, 0x05, // syscall
        0x48, 0x89, 0xC3, // mov rbx, rax
        0xFA, // cli
        0x0F, 0x0B, // ud2
    ];
    let mut alloc = crate::memory::alloc_frame;
    let code = alloc().ok_or("no frame")?;
    let stack = alloc().ok_or("no frame")?;
    // SAFETY: `code` is a fresh frame owned by this test, mapped by the direct map.
    unsafe {
        core::ptr::copy_nonoverlapping(
            CODE.as_ptr(),
            crate::layout::phys_to_virt(code) as *mut u8,
            CODE.len(),
        )
    };
    let l4 = crate::paging::new_guest_l4(&mut alloc)?;
    crate::paging::map_guest_page(l4, 0x40_0000, code, crate::paging::PTE_U, &mut alloc)?;
    crate::paging::map_guest_page(
        l4,
        0x60_0000,
        stack,
        crate::paging::PTE_U | crate::paging::PTE_W | crate::paging::PTE_NX,
        &mut alloc,
    )?;
    crate::guest::set_exit_hook(ring3_exit_hook);
    let mut frame = crate::trap::TrapFrame::ZERO;
    frame.rip = 0x40_0000;
    frame.cs = u64::from(crate::gdt::RING3_CS64);
    frame.rsp = 0x60_1000;
    // A null SS: the first return faults (see `ring3_exit_hook`).
    frame.ss = 0;
    let fx = alloc::boxed::Box::new(crate::guest::FxArea::default());
    let bases = crate::guest::GuestBases {
        cr3: l4,
        fs_base: 0,
        gs_base: 0,
    };
    crate::guest::enter_guest(&frame, &fx, bases)
}

/// Guest data selector loads (`segments::load_data_selectors`): one that faults (#GP: an LDT
/// selector with no LDT, an empty GDT slot) is left null and reported, the others load, and
/// the per-CPU GS base survives the GS load.
fn segments() -> Result<(), String> {
    use crate::segments::{load_data_selectors, read_data_selectors};
    let ds = crate::gdt::RING3_DS;
    let cpu = percpu::cpu_index();
    let (failed, now, cpu_after) = crate::cpu::without_interrupts(|| {
        let before = read_data_selectors();
        let failed = load_data_selectors([0x000f, ds, 0x0013, ds]);
        let now = read_data_selectors();
        let cpu_after = percpu::cpu_index();
        load_data_selectors(before);
        (failed, now, cpu_after)
    });
    if failed != [true, false, true, false] {
        return Err(format!("failed loads {failed:?}, want DS and FS"));
    }
    if now != [0, ds, 0, ds] {
        return Err(format!("selectors after the loads {now:x?}"));
    }
    if cpu_after != cpu {
        return Err(format!(
            "per-CPU data lost with GS: CPU{cpu} reads as CPU{cpu_after}"
        ));
    }
    Ok(())
}

/// What [`guest_return_hook`] saw: the exit and the frame's RIP, CS, RSP, error code.
static RETURN_SEEN: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

fn guest_return_hook(
    exit: crate::guest::GuestExit,
    frame: &mut crate::trap::TrapFrame,
    _fx: &mut crate::guest::FxArea,
) {
    let kind = match exit {
        crate::guest::GuestExit::ReturnFault(v) => 0x100 | u64::from(v),
        _ => 1,
    };
    let seen = [kind, frame.rip, frame.cs, frame.rsp, frame.error_code];
    for (slot, v) in RETURN_SEEN.iter().zip(seen) {
        slot.store(v, Ordering::SeqCst);
    }
}

/// Traps at the return to a guest (`guest_return`), handed to `trap_dispatch` as
/// `trap_common` would: an NMI taken at the guest `iretq` resumes the guest frame being
/// returned to (RPL 3 forced), without an exit; a #GP there is the exit `ReturnFault(13)`
/// over that guest frame, with the guest's registers and the error code.
fn guest_return() -> Result<(), String> {
    use crate::trap::{trap_dispatch, TrapFrame};
    let guest = TrapFrame {
        rip: 0x40_1234,
        cs: 0xe030,
        rflags: 0x202,
        rsp: 0x60_0ff0,
        ss: 0xe028,
        ..TrapFrame::ZERO
    };
    let at_iret = |vector: u64, error_code: u64| TrapFrame {
        rbx: 0xb0b,
        vector,
        error_code,
        rip: crate::guest_return::trap_iret_address(),
        cs: u64::from(crate::gdt::HYPERVISOR_CS),
        rflags: 0x46,
        rsp: 0xdead_0000,
        ss: 0,
        ..TrapFrame::ZERO
    };
    let mut fx = alloc::boxed::Box::new(crate::guest::FxArea::default());
    crate::guest::set_exit_hook(guest_return_hook);
    crate::cpu::disable_interrupts();
    crate::guest_return::record(&guest);
    let mut nmi = at_iret(2, 0);
    trap_dispatch(&mut nmi, &mut fx);
    let want = (0x40_1234, 0xe033, 0x202, 0x60_0ff0, 0xe02b, 0xb0b);
    let got = (nmi.rip, nmi.cs, nmi.rflags, nmi.rsp, nmi.ss, nmi.rbx);
    if got != want {
        return Err(format!(
            "NMI at the guest iretq: frame {got:x?}, want {want:x?}"
        ));
    }
    if RETURN_SEEN[0].load(Ordering::SeqCst) != 0 {
        return Err("NMI at the guest iretq: an exit was made".into());
    }
    let mut gp = at_iret(13, 0x28);
    trap_dispatch(&mut gp, &mut fx);
    let seen: Vec<u64> = RETURN_SEEN
        .iter()
        .map(|s| s.load(Ordering::SeqCst))
        .collect();
    let want = [0x10d, 0x40_1234, 0xe033, 0x60_0ff0, 0x28];
    if seen != want {
        return Err(format!(
            "#GP at the guest iretq: exit {seen:x?}, want {want:x?}"
        ));
    }
    if gp.rbx != 0xb0b {
        return Err("#GP at the guest iretq: guest registers lost".into());
    }
    Ok(())
}
