//! The build against a fake hypervisor that keeps frames, domains and pins like Xen does,
//! and can fail any chosen hypercall: every failure leaves no domain and no frame behind.

use super::*;
use crate::image::tests::test_kernel;
use alloc::collections::BTreeMap;
use alloc::vec;
use dom0_interface::domctl::XenDomctlCreatedomain;
use tools::xlcfg::DomainConfig;

#[derive(Default)]
struct Dom {
    frames: Vec<u64>,
    paused: bool,
    pinned: Vec<u64>,
    ports: Vec<(u32, DomId)>,
    ctx: Option<VcpuGuestContext>,
    create: XenDomctlCreatedomain,
    max_mem_kib: u64,
}

struct Fake {
    free: Vec<u64>,
    mem: BTreeMap<u64, Vec<u8>>,
    doms: BTreeMap<DomId, Dom>,
    next_dom: DomId,
    calls: u32,
    fail_at: Option<u32>,
}

const SHARED_INFO: u64 = 0x9999;

impl Fake {
    fn new(free: u64) -> Fake {
        Fake {
            free: (0..free).map(|i| 0x10_0000 + 3 * i).collect(),
            mem: BTreeMap::new(),
            doms: BTreeMap::new(),
            next_dom: 1,
            calls: 0,
            fail_at: None,
        }
    }
    fn tick(&mut self) -> Result<(), i32> {
        self.calls += 1;
        if self.fail_at == Some(self.calls) {
            return Err(-5);
        }
        Ok(())
    }
    fn dom(&mut self, d: DomId) -> Result<&mut Dom, i32> {
        self.doms.get_mut(&d).ok_or(-3)
    }
}

impl Xc for Fake {
    fn physinfo(&mut self) -> Result<XenSysctlPhysinfo, i32> {
        self.tick()?;
        Ok(XenSysctlPhysinfo {
            free_pages: self.free.len() as u64,
            capabilities: XEN_SYSCTL_PHYSCAP_GNTTAB_V2,
            ..Default::default()
        })
    }
    fn domctl(&mut self, d: &mut XenDomctl) -> Result<(), i32> {
        self.tick()?;
        match d.cmd {
            dc::XEN_DOMCTL_CREATEDOMAIN => {
                let id = self.next_dom;
                self.next_dom += 1;
                let create = d.payload().map_err(|_| -22)?;
                self.doms.insert(
                    id,
                    Dom {
                        paused: true,
                        create,
                        ..Default::default()
                    },
                );
                d.domain = id;
            }
            dc::XEN_DOMCTL_DESTROYDOMAIN => {
                let dom = self.doms.remove(&d.domain).ok_or(-3)?;
                self.free.extend(dom.frames);
            }
            dc::XEN_DOMCTL_MAX_VCPUS => {
                self.dom(d.domain)?;
            }
            dc::XEN_DOMCTL_MAX_MEM => {
                let m: dom0_interface::domctl::XenDomctlMaxMem = d.payload().map_err(|_| -22)?;
                self.dom(d.domain)?.max_mem_kib = m.max_memkb;
            }
            dc::XEN_DOMCTL_GETDOMAININFO => {
                let n = self.dom(d.domain)?.frames.len() as u64;
                let info = XenDomctlGetdomaininfo {
                    domain: d.domain,
                    tot_pages: n,
                    shared_info_frame: SHARED_INFO,
                    ..Default::default()
                };
                d.set_payload(&info).map_err(|_| -22)?;
            }
            dc::XEN_DOMCTL_UNPAUSEDOMAIN => self.dom(d.domain)?.paused = false,
            dc::XEN_DOMCTL_PAUSEDOMAIN => self.dom(d.domain)?.paused = true,
            _ => return Err(-38),
        }
        Ok(())
    }
    fn populate(&mut self, domid: DomId, pfns: &mut [u64]) -> Result<usize, i32> {
        self.tick()?;
        self.dom(domid)?;
        let mut n = 0;
        for p in pfns.iter_mut() {
            let Some(m) = self.free.pop() else { break };
            self.mem.insert(m, vec![0xEE; 4096]); // not scrubbed: the builder must write
            *p = m;
            n += 1;
        }
        let got: Vec<u64> = pfns[..n].to_vec();
        self.dom(domid)?.frames.extend(got);
        Ok(n)
    }
    fn release(&mut self, domid: DomId, mfns: &[u64]) -> Result<usize, i32> {
        self.tick()?;
        let dom = self.dom(domid)?;
        let mut n = 0;
        for m in mfns {
            if dom.pinned.contains(m) {
                break;
            }
            let Some(i) = dom.frames.iter().position(|f| f == m) else {
                break;
            };
            dom.frames.swap_remove(i);
            n += 1;
        }
        self.free.extend_from_slice(&mfns[..n]);
        Ok(n)
    }
    fn write(&mut self, domid: DomId, mfn: u64, offset: usize, data: &[u8]) -> Result<(), i32> {
        self.tick()?;
        let dom = self.dom(domid)?;
        if mfn != SHARED_INFO && !dom.frames.contains(&mfn) {
            return Err(-1);
        }
        if dom.pinned.contains(&mfn) {
            return Err(-22);
        }
        let page = self.mem.entry(mfn).or_insert_with(|| vec![0; 4096]);
        page[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn pin(&mut self, domid: DomId, cmd: u32, mfn: u64) -> Result<(), i32> {
        self.tick()?;
        let dom = self.dom(domid)?;
        match cmd {
            MMUEXT_PIN_L4_TABLE => dom.pinned.push(mfn),
            MMUEXT_UNPIN_TABLE => dom.pinned.retain(|&m| m != mfn),
            _ => return Err(-22),
        }
        Ok(())
    }
    fn alloc_unbound(&mut self, domid: DomId, remote: DomId) -> Result<u32, i32> {
        self.tick()?;
        let dom = self.dom(domid)?;
        let port = dom.ports.len() as u32 + 1;
        dom.ports.push((port, remote));
        Ok(port)
    }
    fn setvcpucontext(&mut self, domid: DomId, vcpu: u32, c: &VcpuGuestContext) -> Result<(), i32> {
        self.tick()?;
        if vcpu != 0 {
            return Err(-22);
        }
        self.dom(domid)?.ctx = Some(*c);
        Ok(())
    }
}

fn config(memory_mib: u64) -> DomainConfig {
    let text = alloc::format!(
        "name = \"t\"\ntype = \"pv\"\nkernel = \"/boot/t.elf\"\nmemory = {memory_mib}\nextra = \"count=2\"\n"
    );
    DomainConfig::parse("t.cfg", &text).unwrap().config
}

#[test]
fn a_build_leaves_a_running_domain_with_its_console() {
    let mut xc = Fake::new(20_000);
    let cfg = config(8);
    let k = test_kernel();
    let req = BuildRequest {
        config: &cfg,
        kernel: &k,
        ramdisk: None,
        paused: false,
    };
    let b = create_with(&mut xc, &req).unwrap();
    assert_eq!(b.domid, 1);
    assert_eq!(b.console_port, 1);
    assert_eq!(xc.free.len(), 20_000 - 2048);
    let dom = &xc.doms[&1];
    assert!(!dom.paused);
    assert_eq!(dom.ports, [(1, 0)], "console port unbound, remote dom0");
    assert_eq!(dom.create.max_evtchn_port, 1023);
    assert_eq!(dom.create.grant_opts, 2);
    assert_eq!(dom.max_mem_kib, 8 * 1024 + 1024);
    assert_eq!(dom.pinned.len(), 1);
    let ctx = dom.ctx.unwrap();
    assert_eq!(ctx.ctrlreg[3] >> 12, dom.pinned[0], "CR3 is the pinned L4");
    assert!(dom.frames.contains(&b.console_mfn));
    // start_info (at RSI) names the ring and the port.
    let img = Image::prepare(&k, None, "count=2", 2048).unwrap();
    let si_mfn = xc
        .mem
        .iter()
        .find(|(_, p)| p.starts_with(b"xen-3.0-x86_64\0"))
        .unwrap();
    let si: dom0_interface::xen::StartInfo =
        dom0_interface::guest_abi::GuestAbi::read_from(si_mfn.1).unwrap();
    assert_eq!(si.console_mfn, b.console_mfn);
    assert_eq!(si.console_evtchn, 1);
    assert_eq!(si.shared_info, SHARED_INFO << 12);
    assert_eq!(ctx.user_regs.rsi, img.layout.start_info.vstart);
    assert!(si.cmd_line.starts_with(b"count=2\0"));
    // The console ring page was zeroed (the fake hands out dirty frames).
    assert!(xc.mem[&b.console_mfn].iter().all(|&x| x == 0));
    // Events start masked.
    assert_eq!(xc.mem[&SHARED_INFO][1], 1);
    assert_eq!(xc.mem[&SHARED_INFO][31 * 64 + 1], 1);
}

#[test]
fn paused_builds_stay_paused() {
    let mut xc = Fake::new(20_000);
    let cfg = config(8);
    let k = test_kernel();
    let req = BuildRequest {
        config: &cfg,
        kernel: &k,
        ramdisk: Some(&[7u8; 10_000]),
        paused: true,
    };
    let b = create_with(&mut xc, &req).unwrap();
    assert!(xc.doms[&b.domid].paused);
}

fn assert_rolled_back(xc: &Fake, free: u64) {
    assert!(xc.doms.is_empty(), "no domain left");
    assert_eq!(xc.free.len() as u64, free, "no frame leaked");
}

#[test]
fn a_corrupt_kernel_rolls_everything_back() {
    let mut xc = Fake::new(20_000);
    let cfg = config(8);
    let mut k = test_kernel();
    k[0] = 0;
    let req = BuildRequest {
        config: &cfg,
        kernel: &k,
        ramdisk: None,
        paused: false,
    };
    let e = create_with(&mut xc, &req).unwrap_err();
    assert_eq!(e.step, Step::LoadKernel);
    assert!(matches!(e.error, StepError::Image(ImageError::Elf(_))));
    assert!(e.undo_errors.is_empty());
    assert_rolled_back(&xc, 20_000);
}

#[test]
fn more_memory_than_is_free_rolls_everything_back() {
    let mut xc = Fake::new(1000);
    let cfg = config(8);
    let k = test_kernel();
    let req = BuildRequest {
        config: &cfg,
        kernel: &k,
        ramdisk: None,
        paused: false,
    };
    let e = create_with(&mut xc, &req).unwrap_err();
    assert_eq!(e.step, Step::PopulateMemory);
    assert_eq!(e.error, StepError::Hypercall("populate_physmap", -ENOMEM));
    assert_rolled_back(&xc, 1000);
}

#[test]
fn a_failure_of_any_hypercall_rolls_everything_back() {
    let cfg = config(8);
    let k = test_kernel();
    let req = BuildRequest {
        config: &cfg,
        kernel: &k,
        ramdisk: Some(&[1u8; 9000]),
        paused: false,
    };
    let total = {
        let mut xc = Fake::new(20_000);
        create_with(&mut xc, &req).unwrap();
        xc.calls
    };
    for n in 1..=total {
        let mut xc = Fake::new(20_000);
        xc.fail_at = Some(n);
        let r = create_with(&mut xc, &req);
        let e = r.expect_err("a failed hypercall fails the build");
        assert!(e.undo_errors.is_empty(), "call {n}: {e}");
        let msg = alloc::format!("{e}");
        assert!(msg.contains("rolled back"), "{msg}");
        assert_rolled_back(&xc, 20_000);
    }
}

#[test]
fn the_initrd_demo_configs_parse_and_build() {
    for (file, text) in [
        (
            "demo1.cfg",
            include_str!("../../../initrd-root/etc/xen/demo1.cfg"),
        ),
        (
            "demo2.cfg",
            include_str!("../../../initrd-root/etc/xen/demo2.cfg"),
        ),
    ] {
        let parsed = DomainConfig::parse(file, text).unwrap();
        assert!(parsed.warnings.is_empty(), "{file}: {:?}", parsed.warnings);
        let cfg = parsed.config;
        assert_eq!(cfg.kernel, "/boot/demo.elf");
        assert_eq!(cfg.memory_mib, 32);
        assert_eq!(cfg.vcpus, 1);
        assert!(cfg.cmdline.as_deref().unwrap_or("").starts_with("count="));
        let mut xc = Fake::new(20_000);
        let k = test_kernel();
        let b = create_with(
            &mut xc,
            &BuildRequest {
                config: &cfg,
                kernel: &k,
                ramdisk: None,
                paused: false,
            },
        )
        .unwrap();
        assert_eq!(xc.doms[&b.domid].frames.len(), 32 * 256);
    }
}
