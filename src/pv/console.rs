//! The serial console's input side on the lockstep leader: reads COM1 on its receive
//! interrupt (routed to the leader through the I/O APIC) and on every timer tick (100 Hz,
//! also while the leader idles in `hlt`: the fallback if an interrupt is missed), switches input between dom0 and the debug
//! keys on CTRL-a x3, runs debug keys against the leader's replica, and queues dom0's bytes
//! in the serial input ring, then runs the transaction that raises VIRQ_CONSOLE.

use super::{transact, After, Runtime};
use arch::xprintln;
use dom0_interface::xen::DOMID_IDLE;
use spin::Mutex;
use xen_core::console::CONSOLE_RX_VECTOR;
use xen_core::debugkeys::{self, LockstepView};
use xen_core::request::{ExitKind, GuestRegs, Request};
use xen_core::serial_switch::{InputSwitch, RxAction};

/// Bytes taken from the UART per tick (its FIFO holds 16; QEMU paces its input to it).
const PER_TICK: usize = 64;

static SWITCH: Mutex<InputSwitch> = Mutex::new(InputSwitch::new());

/// Prints where serial input goes, as Xen's `console_endboot` does before dom0 starts.
pub fn announce() {
    xprintln!("{}", xen_core::serial_switch::TO_DOM0);
}

/// Routes COM1's receive interrupt, and the GSIs guests bind, to leader CPU `leader` (whose
/// exit path polls the UART on any interrupt); without an I/O APIC route the 100 Hz tick
/// still polls.
pub fn route_input(leader: usize) {
    super::irq::route_to(leader);
    let apic =
        arch::percpu::get(leader).map(|c| c.apic_id.load(core::sync::atomic::Ordering::Relaxed));
    let routed = apic.is_some_and(|id| arch::ioapic::route_com1(CONSOLE_RX_VECTOR as u8, id));
    if routed {
        arch::console::enable_rx_interrupt();
        xprintln!("console: COM1 input interrupts (IRQ 4) go to CPU{}", leader);
    } else {
        xprintln!("console: no I/O APIC route for COM1; input is polled at the 100 Hz tick");
    }
}

/// Takes waiting serial input on leader CPU `cpu`. Debug keys print at once; if bytes went
/// to dom0, runs the VIRQ_CONSOLE transaction and returns its aftermath.
pub(crate) fn poll(rt: &mut Runtime, cpu: usize) -> Option<After> {
    let mut to_dom0 = false;
    let mut keys: alloc::vec::Vec<u8> = alloc::vec::Vec::new();
    {
        let mut sw = SWITCH.lock();
        for _ in 0..PER_TICK {
            let Some(c) = arch::console::try_read() else {
                break;
            };
            sw.feed(c, &mut |a| match a {
                RxAction::ToDom0(b) => {
                    // Xen drops the byte when the ring is full but notifies all the same.
                    let _ = arch::conring::SERIAL_RX.lock().push_if_room(b);
                    to_dom0 = true;
                }
                RxAction::Key(k) => {
                    keys.push(k);
                }
                RxAction::Switched(line) => xprintln!("{}", line),
            });
        }
    }
    for k in keys {
        debug_key(rt, k);
    }
    if !to_dom0 {
        return None;
    }
    let req = Request::exit(
        ExitKind::Interrupt,
        DOMID_IDLE,
        cpu as u32,
        GuestRegs::default(),
        CONSOLE_RX_VECTOR,
        0,
        0,
    );
    Some(transact(rt, &req, 0, None))
}

fn debug_key(rt: &Runtime, key: u8) {
    let stats = rt.backend.stats();
    let status = rt.backend.status();
    let cpus = (status.nr_cpus as usize).min(status.roles.len());
    let view = LockstepView {
        topology: crate::lockstep_hw::topology(),
        roles: &status.roles[..cpus],
        health: rt.backend.health(),
        stats: &stats,
    };
    let now = super::env::system_time_ns();
    if let Some(text) = debugkeys::run(key, rt.backend.replica(), &view, now) {
        for line in text.lines() {
            xprintln!("{}", line);
        }
    }
}
