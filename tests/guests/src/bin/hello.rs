//! `hello`: the first PV test guest. Console output, xen_version and its sub-ops, bad guest
//! pointers, unknown hypercalls and sub-ops, yield, multicall, bounced traps, SSE.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use guest_rt::hypercall::{self, BadPtr};
use guest_rt::multicall::{multicall_scalar, MulticallEntry, MulticallEntryExt};
use guest_rt::start_info::{StartInfo, StartInfoExt};
use guest_rt::test::{check, check_eq, info};
use guest_rt::{console, cpu, evtchn, println, sched, traps, version, Errno};
use test_guests::{feature_set, has_token, is_c_string};

guest_rt::entry!(main);
guest_rt::no_heap!();

fn main(si: &StartInfo) {
    println!("hello: DualVisor PV test guest");
    info(format_args!(
        "start_info magic {:?} flags {:#x} nr_pages {} cmdline {:?}",
        si.magic_str(),
        si.flags,
        si.nr_pages,
        si.cmd_line_str().unwrap_or("<not utf-8>")
    ));
    check("start_info flags: SIF_INITDOMAIN", si.is_initdomain());

    check_eq(
        "console_io(CONSOLEIO_write) returns 0",
        console::write(b"hello: written with console_io\n"),
        Ok(0),
    );

    version_checks();
    bad_argument_checks();
    misc_checks();
}

fn version_checks() {
    check_eq(
        "xen_version(XENVER_version)",
        version::version(),
        Ok((4, 17)),
    );

    let mut extra = [0u8; version::EXTRAVERSION_LEN];
    let r = version::into_buffer(version::XENVER_EXTRAVERSION, &mut extra);
    check_eq("XENVER_extraversion returns 0", r, Ok(0));
    info(format_args!("extraversion {:?}", version::c_str(&extra)));
    check("XENVER_extraversion is a C string", is_c_string(&extra));

    let mut caps = [0u8; version::CAPABILITIES_LEN];
    let r = version::into_buffer(version::XENVER_CAPABILITIES, &mut caps);
    check_eq("XENVER_capabilities returns 0", r, Ok(0));
    let caps_str = version::c_str(&caps).unwrap_or("");
    info(format_args!("capabilities {:?}", caps_str));
    check(
        "XENVER_capabilities lists xen-3.0-x86_64",
        has_token(caps_str, "xen-3.0-x86_64"),
    );

    match version::features(0) {
        Ok(f) => {
            info(format_args!("XENVER_get_features[0] = {:#x}", f));
            check(
                "XENFEAT_dom0 set for dom0",
                feature_set(f, version::XENFEAT_DOM0),
            );
            check(
                "XENFEAT_auto_translated_physmap clear for PV",
                !feature_set(f, version::XENFEAT_AUTO_TRANSLATED_PHYSMAP),
            );
        }
        Err(e) => {
            check_eq("XENVER_get_features[0]", Err::<u32, Errno>(e), Ok(0));
        }
    }
    check_eq(
        "XENVER_get_features submap 1 -> -EINVAL",
        version::features(1),
        Err(Errno::EINVAL),
    );

    check_eq(
        "XENVER_platform_parameters virt_start",
        version::platform_virt_start(),
        Ok(hypercall::HYPERVISOR_VIRT_START),
    );
    check_eq(
        "XENVER_pagesize",
        version::scalar(version::XENVER_PAGESIZE),
        Ok(4096),
    );
}

fn bad_argument_checks() {
    check_eq(
        "XENVER_extraversion into NULL -> -EFAULT",
        hypercall::call_with_bad_ptr(
            hypercall::XEN_VERSION,
            version::XENVER_EXTRAVERSION.into(),
            BadPtr::NULL,
        ),
        Err(Errno::EFAULT),
    );
    check_eq(
        "XENVER_capabilities into Xen's range -> -EFAULT",
        hypercall::call_with_bad_ptr(
            hypercall::XEN_VERSION,
            version::XENVER_CAPABILITIES.into(),
            BadPtr::HYPERVISOR,
        ),
        Err(Errno::EFAULT),
    );
    check_eq(
        "XENVER_get_features at a non-canonical address -> -EFAULT",
        hypercall::call_with_bad_ptr(
            hypercall::XEN_VERSION,
            version::XENVER_GET_FEATURES.into(),
            BadPtr::NON_CANONICAL,
        ),
        Err(Errno::EFAULT),
    );
    check_eq(
        "console_io write from NULL -> -EFAULT",
        console_write_bad_ptr(),
        Err(Errno::EFAULT),
    );
    check_eq(
        "xen_version unknown sub-op 0x7fff -> -ENOSYS",
        version::scalar(0x7fff),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "sched_op unknown sub-op 0x7fff -> -ENOSYS",
        hypercall::call_with_bad_ptr(hypercall::SCHED_OP, 0x7fff, BadPtr::NULL),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "event_channel_op unknown sub-op 0x7fff -> -ENOSYS",
        evtchn::op_with_bad_ptr(0x7fff, BadPtr::NULL),
        Err(Errno::ENOSYS),
    );
    check_eq(
        "console_io unknown sub-op 0x7fff -> -ENOSYS",
        hypercall::call_with_bad_ptr(hypercall::CONSOLE_IO, 0x7fff, BadPtr::NULL),
        Err(Errno::ENOSYS),
    );
    for nr in [11u32, 43, 47, 63, 64, 100, 127] {
        let r = hypercall::call_zero_args(nr);
        let mut name = [0u8; 32];
        let label = label(&mut name, b"unknown hypercall ", nr);
        check_eq(label, r, Err(Errno::ENOSYS));
    }
}

/// `console_io(CONSOLEIO_write, 16, NULL)`.
fn console_write_bad_ptr() -> guest_rt::XenResult {
    hypercall::call_with_count_and_bad_ptr(
        hypercall::CONSOLE_IO,
        console::CONSOLEIO_WRITE,
        16,
        BadPtr::NULL,
    )
}

/// Builds "`prefix``n`" in `buf` (for check names without allocation).
fn label<'a>(buf: &'a mut [u8; 32], prefix: &[u8], n: u32) -> &'a str {
    let mut len = prefix.len().min(20);
    buf[..len].copy_from_slice(&prefix[..len]);
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        buf[len] = d;
        len += 1;
    }
    core::str::from_utf8(&buf[..len]).unwrap_or("unknown hypercall")
}

fn misc_checks() {
    check_eq("sched_op(SCHEDOP_yield)", sched::yield_now(), Ok(0));

    let mut calls = [
        MulticallEntry::new(
            hypercall::XEN_VERSION,
            [version::XENVER_VERSION.into(), 0, 0, 0, 0, 0],
        ),
        MulticallEntry::new(hypercall::SCHED_OP, [0; 6]),
        MulticallEntry::new(
            hypercall::XEN_VERSION,
            [version::XENVER_PAGESIZE.into(), 0, 0, 0, 0, 0],
        ),
    ];
    check_eq(
        "multicall of 3 returns 0",
        multicall_scalar(&mut calls),
        Ok(0),
    );
    check_eq(
        "multicall[0] xen_version",
        calls[0].outcome(),
        Ok((4 << 16) | 17),
    );
    check_eq("multicall[1] yield", calls[1].outcome(), Ok(0));
    check_eq("multicall[2] pagesize", calls[2].outcome(), Ok(4096));

    traps::expect(3, 0);
    traps::int3();
    check_eq(
        "int3 bounced through the trap table and resumed",
        traps::taken(3),
        1,
    );
    traps::expect(6, 2);
    traps::ud2();
    check_eq("ud2 bounced as #UD and resumed", traps::taken(6), 1);

    let cr4 = cpu::read_cr4();
    info(format_args!("guest view of CR4 = {:#x}", cr4));
    check("CR4.OSFXSR set for PV guests", cr4 & cpu::CR4_OSFXSR != 0);
    let x = core::hint::black_box(1.5f64);
    check_eq("SSE arithmetic", x * core::hint::black_box(2.0f64), 3.0);
}
