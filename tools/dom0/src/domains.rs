//! The domUs dom0 built: their names and configs (xl keeps these in xenstore), their console
//! rings and output logs, and what happens when one shuts down (xl's per-domain daemon).

use crate::builder::{self, ConsolePage};
use crate::out;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use guest_rt::evtchn;
use tools::console_log::{drain_out, push_in, OutputLog};
use tools::xlcfg::DomainConfig;

/// dom0's own name, as xl shows it.
pub const DOM0_NAME: &str = "Domain-0";

/// A domU's console as dom0 serves it.
pub struct Console {
    /// dom0's end of the console event channel.
    pub port: u32,
    /// The ring page.
    pub page: ConsolePage,
}

/// One domU.
pub struct DomU {
    /// Name.
    pub name: String,
    /// Where its config came from.
    pub config_path: String,
    /// The config (with `xl create` overrides applied).
    pub config: DomainConfig,
    /// System time (ns) at creation.
    pub created_ns: u64,
    /// The console, when it could be bound and mapped.
    pub console: Option<Console>,
    /// Recent console output.
    pub log: OutputLog,
    /// Its shutdown has been acted on (preserved).
    pub handled: bool,
}

/// Every domU dom0 knows, by id.
#[derive(Default)]
pub struct Registry {
    doms: BTreeMap<u16, DomU>,
}

impl Registry {
    /// Name of `domid` (`Domain-0` for 0), if known.
    pub fn name(&self, domid: u16) -> Option<&str> {
        if domid == 0 {
            return Some(DOM0_NAME);
        }
        self.doms.get(&domid).map(|d| d.name.as_str())
    }

    /// (id, name) of every known domain, Domain-0 first.
    pub fn names(&self) -> Vec<(u32, &str)> {
        let mut v = alloc::vec![(0, DOM0_NAME)];
        v.extend(
            self.doms
                .iter()
                .map(|(id, d)| (u32::from(*id), d.name.as_str())),
        );
        v
    }

    /// Whether a domain is called `name`.
    pub fn name_taken(&self, name: &str) -> bool {
        name == DOM0_NAME || self.doms.values().any(|d| d.name == name)
    }

    /// The domU `domid`.
    pub fn get(&self, domid: u16) -> Option<&DomU> {
        self.doms.get(&domid)
    }

    /// The domU `domid`, mutable.
    pub fn get_mut(&mut self, domid: u16) -> Option<&mut DomU> {
        self.doms.get_mut(&domid)
    }

    /// Ids of every known domU.
    pub fn ids(&self) -> Vec<u16> {
        self.doms.keys().copied().collect()
    }

    /// Records a built domain and connects its console.
    pub fn add(&mut self, built: builder::Built, dom: DomU) {
        let mut dom = dom;
        dom.console = connect_console(&built);
        self.doms.insert(built.domid, dom);
    }

    /// Forgets `domid` (after destroy), closing its console channel.
    pub fn remove(&mut self, domid: u16) -> Option<DomU> {
        let d = self.doms.remove(&domid)?;
        if let Some(c) = &d.console {
            let _ = evtchn::close(c.port);
        }
        Some(d)
    }

    /// Console ports to wait on.
    pub fn console_ports(&self) -> Vec<u32> {
        self.doms
            .values()
            .filter_map(|d| d.console.as_ref().map(|c| c.port))
            .collect()
    }

    /// Drains every console ring into the logs; returns the new output of `attached`.
    pub fn pump_consoles(&mut self, attached: Option<u16>) -> Vec<u8> {
        let mut live = Vec::new();
        for (id, d) in self.doms.iter_mut() {
            if let Some(c) = d.console.as_mut() {
                let data = drain_out(c.page.bytes());
                if !data.is_empty() {
                    d.log.push(&data);
                    if attached == Some(*id) {
                        live.extend_from_slice(&data);
                    }
                    let _ = evtchn::send(c.port);
                }
            }
        }
        live
    }

    /// Sends console input to `domid`; returns the bytes the ring took.
    pub fn console_input(&mut self, domid: u16, input: &[u8]) -> usize {
        let Some(c) = self.doms.get_mut(&domid).and_then(|d| d.console.as_mut()) else {
            return 0;
        };
        let n = push_in(c.page.bytes(), input);
        let _ = evtchn::send(c.port);
        n
    }
}

fn connect_console(built: &builder::Built) -> Option<Console> {
    let port = match evtchn::bind_interdomain(built.domid, built.console_port) {
        Ok(p) => p,
        Err(e) => {
            out::say(format_args!(
                "dom0: domain {}: binding console port {}: {e}\n",
                built.domid, built.console_port
            ));
            return None;
        }
    };
    match builder::map_console(built.domid, built.console_mfn) {
        Ok(page) => Some(Console { port, page }),
        Err(e) => {
            out::say(format_args!(
                "dom0: domain {}: mapping console ring: {e}\n",
                built.domid
            ));
            let _ = evtchn::close(port);
            None
        }
    }
}
