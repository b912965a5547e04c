//! dom0's event channels: VIRQ_CONSOLE (serial input for dom0), VIRQ_DOM_EXC (a domain shut
//! down or died) and each domU's console port, waited for with `SCHEDOP_poll` (events stay
//! masked from upcalls; dom0 has no event callback) and a short timeout so nothing is missed.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use guest_rt::evtchn::{self, VIRQ_CONSOLE, VIRQ_DOM_EXC};
use guest_rt::sched;
use guest_rt::shared_info::SharedInfo;
use guest_rt::start_info::StartInfo;

/// Longest wait between looks at the console (ns), in case an event was missed.
const TICK_NS: u64 = 100_000_000;

/// The bound ports and the shared_info page.
pub struct Events {
    shinfo: SharedInfo,
    console: u32,
    dom_exc: u32,
}

impl Events {
    /// Maps shared_info and binds the two VIRQs on vCPU 0.
    pub fn new(si: &StartInfo) -> Result<Events, String> {
        let shinfo = SharedInfo::map(si).map_err(|e| format!("mapping shared_info: {e}"))?;
        let console =
            evtchn::bind_virq(VIRQ_CONSOLE, 0).map_err(|e| format!("binding VIRQ_CONSOLE: {e}"))?;
        let dom_exc =
            evtchn::bind_virq(VIRQ_DOM_EXC, 0).map_err(|e| format!("binding VIRQ_DOM_EXC: {e}"))?;
        Ok(Events {
            shinfo,
            console,
            dom_exc,
        })
    }

    /// System time now (ns since boot), 0 if unknown.
    pub fn now_ns(&self) -> u64 {
        self.shinfo.system_time_now(0).unwrap_or(0)
    }

    /// Wall-clock seconds now (0 if the hypervisor keeps none).
    pub fn wallclock_s(&self) -> u64 {
        let (_, sec, nsec) = self.shinfo.wallclock();
        sec + (u64::from(nsec) + self.now_ns()) / 1_000_000_000
    }

    /// Waits (at most [`TICK_NS`]) for one of the VIRQs or `ports` and clears them; returns
    /// whether VIRQ_DOM_EXC fired. (The console and the rings are looked at after every wait,
    /// so their events need no answer of their own.)
    pub fn wait(&self, ports: &[u32]) -> bool {
        let mut all = Vec::with_capacity(ports.len() + 2);
        all.push(self.console);
        all.push(self.dom_exc);
        all.extend_from_slice(ports);
        if !all.iter().any(|&p| self.shinfo.evtchn_pending(p)) {
            let now = self.now_ns();
            let deadline = if now == 0 { 0 } else { now + TICK_NS };
            // Woken by an event, the deadline or an error: every case is handled by looking.
            let _ = sched::poll(&all, deadline);
        }
        self.shinfo.clear_evtchn_pending(self.console);
        for &p in ports {
            self.shinfo.clear_evtchn_pending(p);
        }
        self.shinfo.clear_evtchn_pending(self.dom_exc)
    }
}
