//! The 82576-compatible NIC: one physical function (8086:10c9) with up to eight SR-IOV
//! virtual functions (8086:10ca), 16 queue pairs, MSI-X, the PF/VF mailboxes and the
//! internal VM-to-VM switch.
//!
//! Queue ownership follows the 82576 in VMDq/SR-IOV mode: pool n (n < NumVFs) is VF n and
//! owns physical queues n and n + 8 (its local queues 0 and 1); the PF's pool is NumVFs
//! and owns the others (Linux igb uses queue NumVFs as its ring 0). Frames for pool p land
//! in physical receive queue p.
//!
//! PF driver: either a guest driver (igb) programs the PF — receive addresses with pool
//! bits, VFRE/VFTE, DTXSWC loopback — and answers the VFs over the mailbox; or, when no
//! guest PF driver runs, the host enables the built-in PF agent ([`Nic82576::set_pf_agent`],
//! implied by [`Nic82576::host_enable_vfs`]) which answers VF_RESET (with the VF's MAC
//! address), SET_MAC_ADDR, SET_MULTICAST, SET_VLAN, SET_LPE and SET_PROMISC itself, so an
//! igbvf driver alone works. Never enable the agent while a guest PF driver runs.

pub mod backend;
pub mod csum;
pub mod intr;
pub mod mailbox;
pub mod nvm_phy;
mod pf_agent;
pub mod regs;
pub mod rx;
pub mod switch;
pub mod tx;

use std::any::Any;
use std::sync::Arc;

use apic::MsiMessage;

use crate::dma::DmaSpace;
use crate::interrupt::InterruptSink;
use crate::pci::bus::PciDevice;
use crate::pci::caps::{self, EXP_DEVCTL};
use crate::pci::config::*;
use crate::pci::msix::{self, MsixControl, MsixTable};
use crate::pci::sriov::{self, SriovParams, SriovState};
use backend::NetBackend;
use intr::{ivar_vector, IntrBlock};
use mailbox::Mailboxes;
use regs::*;
use rx::{RxOutcome, RxParams, RxQueue};
use tx::TxQueue;

/// Physical queue pairs.
pub const NUM_QUEUES: usize = 16;
/// TotalVFs.
pub const MAX_VFS: usize = 8;
/// MSI-X vectors of the PF and of each VF.
pub const PF_MSIX_VECTORS: usize = 10;
pub const VF_MSIX_VECTORS: usize = 3;
/// BAR sizes: PF BAR0 (registers) 128 KiB, MSI-X BAR 16 KiB, VF BAR0/BAR3 16 KiB each.
pub const PF_BAR0_SIZE: u64 = 128 << 10;
pub const MSIX_BAR_SIZE: u64 = 16 << 10;
pub const VF_BAR0_SIZE: u64 = 16 << 10;
pub const VF_BAR3_SIZE: u64 = 16 << 10;
/// The register BAR and the MSI-X BAR (table at 0, PBA at 0x2000), for PF and VFs.
pub const REG_BAR: usize = 0;
pub const MSIX_BAR: usize = 3;
pub const MSIX_PBA_OFFSET: u32 = 0x2000;
/// Configuration space layout (SPEC-FACTS.md; QEMU's igb uses the same).
pub const PM_CAP: u16 = 0x40;
pub const MSI_CAP: u16 = 0x50;
pub const MSIX_CAP: u16 = 0x70;
pub const PCIE_CAP: u16 = 0xa0;
pub const AER_CAP: u16 = 0x100;
pub const ARI_CAP: u16 = 0x150;
pub const SRIOV_CAP: u16 = 0x160;
/// First VF offset and VF stride (routing IDs).
pub const VF_OFFSET: u16 = 0x80;
pub const VF_STRIDE: u16 = 2;
/// VF register window: local queues 0 and 1.
const VF_QUEUES: u32 = 2;

/// A function of the NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Pf,
    Vf(u16),
}

/// Construction parameters.
#[derive(Debug, Clone)]
pub struct NicConfig {
    /// Device number on bus 0 (the PF is function 0). At most 0x0d so that the VFs'
    /// routing IDs stay on bus 0.
    pub device: u8,
    /// The PF's permanent address (NVM words 0–2).
    pub mac: [u8; 6],
    /// Addresses the built-in PF agent gives the VFs.
    pub vf_macs: [[u8; 6]; MAX_VFS],
}

impl NicConfig {
    /// VF n gets `mac` with its last byte + 1 + n and the locally administered bit set.
    pub fn new(device: u8, mac: [u8; 6]) -> Self {
        let mut vf_macs = [[0; 6]; MAX_VFS];
        for (n, m) in vf_macs.iter_mut().enumerate() {
            *m = mac;
            m[0] = (m[0] | 0x02) & !0x01;
            m[5] = mac[5].wrapping_add(1 + n as u8);
        }
        Self {
            device,
            mac,
            vf_macs,
        }
    }
}

/// Device-level counters (beyond the guest-visible statistics registers).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NicCounters {
    pub tx_frames: u64,
    pub tx_dropped: u64,
    pub tx_to_wire: u64,
    pub rx_delivered: u64,
    /// Frames dropped for lack of receive descriptors (also in MPC/RNBC/RQDPC).
    pub rx_no_descriptors: u64,
    /// Frames dropped as too long for the receiving function (also in ROC).
    pub rx_oversize: u64,
    /// Frames for a function whose receiver is disabled.
    pub rx_disabled: u64,
    /// DMAs aborted (outside guest memory or refused by translation).
    pub dma_aborted: u64,
    /// Rings whose head or tail lies beyond the ring.
    pub bad_ring: u64,
    /// Register accesses ignored (partial-dword writes, misaligned).
    pub ignored_accesses: u64,
}

/// Errors of host-side operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicError {
    TooManyVfs(u16),
    BadDevice(u8),
}

impl std::fmt::Display for NicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NicError::TooManyVfs(n) => write!(f, "{n} VFs requested, the 82576 has {MAX_VFS}"),
            NicError::BadDevice(d) => {
                write!(f, "device number {d} leaves no room for VFs on bus 0")
            }
        }
    }
}

impl std::error::Error for NicError {}

struct PfFn {
    cfg: ConfigSpace,
    msix: MsixTable,
    intr: IntrBlock,
    regs: Vec<u32>,
    icr: u32,
    ims: u32,
    eerd: u32,
    mdic: u32,
    phy: [u16; 32],
    nvm: [u16; nvm_phy::NVM_WORDS],
}

struct VfFn {
    cfg: ConfigSpace,
    msix: MsixTable,
    intr: IntrBlock,
    regs: Vec<u32>,
}

/// The NIC: PF, VFs, queues, mailboxes and switch.
pub struct Nic82576 {
    config: NicConfig,
    pf_rid: u16,
    pf: PfFn,
    vfs: Vec<VfFn>,
    active_vfs: u16,
    pf_ready: bool,
    rxq: Vec<RxQueue>,
    txq: Vec<TxQueue>,
    mbx: Mailboxes,
    dma: Arc<dyn DmaSpace>,
    sink: Arc<dyn InterruptSink>,
    agent: bool,
    agent_cts: u32,
    backend: Option<Box<dyn NetBackend>>,
    pub counters: NicCounters,
}

fn pf_config() -> ConfigSpace {
    let mut c = ConfigSpace::new(
        INTEL_VENDOR_ID,
        E82576_DEVICE_ID,
        CLASS_ETHERNET,
        E82576_REVISION,
    );
    c.set16(PCI_SUBSYSTEM_VENDOR_ID, INTEL_VENDOR_ID);
    c.set16(PCI_SUBSYSTEM_ID, E82576_SUBSYS_ID);
    c.set8(PCI_INTERRUPT_PIN, 1);
    c.add_bar(
        REG_BAR,
        BarDef {
            size: PF_BAR0_SIZE,
            kind: BarKind::Mem64,
            prefetchable: false,
        },
    );
    c.add_bar(
        MSIX_BAR,
        BarDef {
            size: MSIX_BAR_SIZE,
            kind: BarKind::Mem64,
            prefetchable: false,
        },
    );
    caps::add_pm(&mut c, PM_CAP);
    caps::add_msi(&mut c, MSI_CAP);
    msix::add_msix(
        &mut c,
        MSIX_CAP,
        PF_MSIX_VECTORS as u16,
        MSIX_BAR as u8,
        0,
        MSIX_PBA_OFFSET,
    );
    caps::add_pcie_endpoint(&mut c, PCIE_CAP, true);
    caps::add_aer(&mut c, AER_CAP);
    caps::add_ari(&mut c, ARI_CAP, 0);
    let mut vf_bars = [None; 6];
    vf_bars[REG_BAR] = Some(BarDef {
        size: VF_BAR0_SIZE,
        kind: BarKind::Mem64,
        prefetchable: false,
    });
    vf_bars[MSIX_BAR] = Some(BarDef {
        size: VF_BAR3_SIZE,
        kind: BarKind::Mem64,
        prefetchable: false,
    });
    sriov::add_sriov(
        &mut c,
        SRIOV_CAP,
        &SriovParams {
            total_vfs: MAX_VFS as u16,
            initial_vfs: MAX_VFS as u16,
            first_vf_offset: VF_OFFSET,
            vf_stride: VF_STRIDE,
            vf_device_id: E82576_VF_DEVICE_ID,
            vf_bars,
        },
    );
    c
}

fn vf_config() -> ConfigSpace {
    // A VF's vendor and device ID registers read 0xffff (SR-IOV 1.1 §3.4.1.1–2).
    let mut c = ConfigSpace::new(0xffff, 0xffff, CLASS_ETHERNET, E82576_REVISION);
    c.set16(PCI_SUBSYSTEM_VENDOR_ID, INTEL_VENDOR_ID);
    c.set16(PCI_SUBSYSTEM_ID, E82576_SUBSYS_ID);
    // Only Bus Master Enable is implemented in a VF's command register (§3.4.1.3);
    // memory decoding is the PF's VF MSE.
    c.set_wmask16(PCI_COMMAND, PCI_COMMAND_MASTER);
    c.set_wmask8(PCI_CACHE_LINE_SIZE, 0);
    c.set_wmask8(PCI_LATENCY_TIMER, 0);
    c.set_wmask8(PCI_INTERRUPT_LINE, 0);
    msix::add_msix(
        &mut c,
        MSIX_CAP,
        VF_MSIX_VECTORS as u16,
        MSIX_BAR as u8,
        0,
        MSIX_PBA_OFFSET,
    );
    caps::add_pcie_endpoint(&mut c, PCIE_CAP, true);
    caps::add_aer(&mut c, AER_CAP);
    caps::add_ari(&mut c, ARI_CAP, 0);
    c
}

impl PfFn {
    fn new(mac: [u8; 6]) -> Self {
        let mut f = Self {
            cfg: pf_config(),
            msix: MsixTable::new(PF_MSIX_VECTORS),
            intr: IntrBlock::new(PF_MSIX_VECTORS),
            regs: vec![0; (PF_BAR0_SIZE / 4) as usize],
            icr: 0,
            ims: 0,
            eerd: 0,
            mdic: MDIC_READY,
            phy: nvm_phy::phy_defaults(),
            nvm: nvm_phy::nvm_image(mac),
        };
        f.reset_regs();
        f
    }

    /// Register state after a PF software reset (CTRL.RST).
    fn reset_regs(&mut self) {
        self.regs.fill(0);
        self.intr.reset();
        self.icr = 0;
        self.ims = 0;
        self.eerd = 0;
        self.mdic = MDIC_READY;
        self.phy = nvm_phy::phy_defaults();
        self.set(CTRL, CTRL_SLU);
        self.set(RXCSUM, RXCSUM_IPOFL | RXCSUM_TUOFL);
        // RAR0 holds the NVM address after reset.
        let m = [
            self.nvm[0].to_le_bytes(),
            self.nvm[1].to_le_bytes(),
            self.nvm[2].to_le_bytes(),
        ];
        self.set(
            RAL0,
            u32::from_le_bytes([m[0][0], m[0][1], m[1][0], m[1][1]]),
        );
        self.set(
            RAL0 + 4,
            u32::from_le_bytes([m[2][0], m[2][1], 0, 0]) | RAH_AV,
        );
    }

    fn get(&self, off: u32) -> u32 {
        self.regs.get((off / 4) as usize).copied().unwrap_or(0)
    }

    fn set(&mut self, off: u32, v: u32) {
        if let Some(r) = self.regs.get_mut((off / 4) as usize) {
            *r = v;
        }
    }

    fn stat_add(&mut self, off: u32, n: u64) {
        let v = self.get(off).saturating_add(n.min(u32::MAX as u64) as u32);
        self.set(off, v);
    }

    /// A 64-bit low/high statistics pair.
    fn stat_add64(&mut self, off: u32, n: u64) {
        let cur = self.get(off) as u64 | ((self.get(off + 4) as u64) << 32);
        let v = cur.wrapping_add(n);
        self.set(off, v as u32);
        self.set(off + 4, (v >> 32) as u32);
    }
}

impl VfFn {
    fn new() -> Self {
        Self {
            cfg: vf_config(),
            msix: MsixTable::new(VF_MSIX_VECTORS),
            intr: IntrBlock::new(VF_MSIX_VECTORS),
            regs: vec![0; (VF_BAR0_SIZE / 4) as usize],
        }
    }

    /// VTCTRL.RST: registers back to their reset values; statistics are kept (igbvf
    /// computes deltas), PCI state untouched.
    fn soft_reset(&mut self) {
        let keep: Vec<(u32, u32)> = [
            VFGPRC, VFGPTC, VFGORC, VFGOTC, VFMPRC, VFGPRLBC, VFGPTLBC, VFGORLBC, VFGOTLBC,
        ]
        .iter()
        .map(|&o| (o, self.get(o)))
        .collect();
        self.regs.fill(0);
        for (o, v) in keep {
            self.set(o, v);
        }
        self.intr.reset();
    }

    fn get(&self, off: u32) -> u32 {
        self.regs.get((off / 4) as usize).copied().unwrap_or(0)
    }

    fn set(&mut self, off: u32, v: u32) {
        if let Some(r) = self.regs.get_mut((off / 4) as usize) {
            *r = v;
        }
    }

    fn stat_add(&mut self, off: u32, n: u64) {
        let v = self.get(off).wrapping_add(n as u32);
        self.set(off, v);
    }
}

/// Decodes a queue register offset: `(queue, offset within block, is_tx)`.
fn pf_queue_reg(off: u32) -> Option<(usize, u32, bool)> {
    let q = |base: u32, stride: u32, n: u32| -> Option<(usize, u32)> {
        let o = off.checked_sub(base)?;
        let i = o / stride;
        (i < n).then_some((i as usize, o % stride))
    };
    if let Some((i, o)) = q(RXQ_LOW_BASE, QLOW_STRIDE, 4) {
        return Some((i, o, false));
    }
    if let Some((i, o)) = q(TXQ_LOW_BASE, QLOW_STRIDE, 4) {
        return Some((i, o, true));
    }
    if let Some((i, o)) = q(RXQ_HIGH_BASE, QHIGH_STRIDE, NUM_QUEUES as u32) {
        return Some((i, o, false));
    }
    if let Some((i, o)) = q(TXQ_HIGH_BASE, QHIGH_STRIDE, NUM_QUEUES as u32) {
        return Some((i, o, true));
    }
    None
}

/// A VF's queue registers: local queue k at 0x2800/0x3800 + 0x100·k.
fn vf_queue_reg(off: u32) -> Option<(u32, u32, bool)> {
    for (base, tx) in [(RXQ_LOW_BASE, false), (TXQ_LOW_BASE, true)] {
        if let Some(o) = off.checked_sub(base) {
            if o / QLOW_STRIDE < VF_QUEUES {
                return Some((o / QLOW_STRIDE, o % QLOW_STRIDE, tx));
            }
        }
    }
    None
}

fn bits(mut m: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let b = m.trailing_zeros();
            m &= m - 1;
            Some(b as usize)
        }
    })
}

impl Nic82576 {
    /// A NIC at device `config.device` on bus 0 doing DMA through `dma` and raising
    /// interrupts into `sink`.
    pub fn new(
        config: NicConfig,
        dma: Arc<dyn DmaSpace>,
        sink: Arc<dyn InterruptSink>,
    ) -> Result<Self, NicError> {
        let pf_rid = crate::pci::routing_id(0, config.device, 0);
        // The last VF's routing ID must stay on bus 0.
        if config.device > 0x0d {
            return Err(NicError::BadDevice(config.device));
        }
        Ok(Self {
            pf: PfFn::new(config.mac),
            vfs: (0..MAX_VFS).map(|_| VfFn::new()).collect(),
            active_vfs: 0,
            pf_ready: false,
            rxq: vec![RxQueue::default(); NUM_QUEUES],
            txq: vec![TxQueue::default(); NUM_QUEUES],
            mbx: Mailboxes::new(MAX_VFS),
            dma,
            sink,
            agent: false,
            agent_cts: 0,
            backend: None,
            counters: NicCounters::default(),
            pf_rid,
            config,
        })
    }

    // ---- host-side API ----

    pub fn pf_rid(&self) -> u16 {
        self.pf_rid
    }

    /// Number of VFs currently present (VF Enable set).
    pub fn active_vfs(&self) -> u16 {
        self.active_vfs
    }

    fn sriov(&self) -> SriovState {
        sriov::sriov_state(&self.pf.cfg, SRIOV_CAP)
    }

    /// The routing ID (requester ID) of a function.
    pub fn rid(&self, f: Function) -> u16 {
        match f {
            Function::Pf => self.pf_rid,
            Function::Vf(n) => sriov::vf_routing_id(self.pf_rid, &self.sriov(), n),
        }
    }

    /// The memory address of a function's BAR (`REG_BAR` or `MSIX_BAR`), if programmed.
    pub fn bar_address(&self, f: Function, bar: usize) -> Option<u64> {
        match f {
            Function::Pf => self.pf.cfg.bar_address(bar),
            Function::Vf(n) => {
                let size = if bar == REG_BAR {
                    VF_BAR0_SIZE
                } else {
                    VF_BAR3_SIZE
                };
                let def = BarDef {
                    size,
                    kind: BarKind::Mem64,
                    prefetchable: false,
                };
                sriov::vf_bar_address(&self.pf.cfg, SRIOV_CAP, bar, &def, n)
            }
        }
    }

    /// Enables or disables the built-in PF agent (see the module documentation).
    pub fn set_pf_agent(&mut self, on: bool) {
        self.agent = on;
        if on {
            // The agent is a PF driver that is ready: clear RSTI.
            self.pf_ready = true;
            self.mbx.pf_reset_done();
        }
    }

    /// What `--vfs N` does: as a PF driver would, sets NumVFs, VF Memory Space Enable
    /// and VF Enable through the SR-IOV capability (VF BARs must have been assigned, see
    /// [`crate::pci::PciBus::assign_bars`]), and turns the built-in PF agent on.
    pub fn host_enable_vfs(&mut self, n: u16, now: u64) -> Result<(), NicError> {
        if n as usize > MAX_VFS {
            return Err(NicError::TooManyVfs(n));
        }
        self.set_pf_agent(true);
        let ctrl = SRIOV_CAP + sriov::SRIOV_CTRL;
        self.pf_config_write(ctrl, &0u16.to_le_bytes(), now);
        self.pf_config_write(SRIOV_CAP + sriov::SRIOV_NUM_VF, &n.to_le_bytes(), now);
        if n > 0 {
            let v = sriov::SRIOV_CTRL_VFE | sriov::SRIOV_CTRL_MSE | sriov::SRIOV_CTRL_ARI;
            self.pf_config_write(ctrl, &v.to_le_bytes(), now);
        }
        Ok(())
    }

    /// Attaches the host side of the wire.
    pub fn set_backend(&mut self, b: Box<dyn NetBackend>) {
        self.backend = Some(b);
    }

    /// A frame arriving from the wire (host backend): delivered by destination MAC.
    pub fn receive_from_wire(&mut self, frame: &[u8], now: u64) {
        if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            self.counters.rx_oversize += 1;
            return;
        }
        let r = switch::route(
            &frame[..6],
            &self.rars(),
            None,
            self.pf_pool(),
            self.all_pools(),
            true,
        );
        for p in bits(r.pools) {
            self.deliver_to_pool(p as u32, frame, false, now);
        }
        self.service(now);
    }

    /// The PF's permanent MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.config.mac
    }

    /// The MAC address the built-in PF agent gives (or gave) VF `n`.
    pub fn vf_mac(&self, n: usize) -> [u8; 6] {
        self.config.vf_macs.get(n).copied().unwrap_or([0; 6])
    }

    /// A present function's configuration space.
    pub fn config_space(&self, f: Function) -> Option<&ConfigSpace> {
        match f {
            Function::Pf => Some(&self.pf.cfg),
            Function::Vf(n) if n < self.active_vfs => Some(&self.vfs[n as usize].cfg),
            Function::Vf(_) => None,
        }
    }

    /// Mailbox protocol violations seen so far.
    pub fn mailbox_misuse(&self) -> u64 {
        self.mbx.misuse
    }

    /// MSI/MSI-X messages sent so far.
    pub fn interrupts_sent(&self) -> u64 {
        self.pf.msix.sent + self.vfs.iter().map(|v| v.msix.sent).sum::<u64>()
    }

    // ---- configuration space ----

    fn function_of(&self, rid: u16) -> Option<Function> {
        if rid == self.pf_rid {
            return Some(Function::Pf);
        }
        if self.active_vfs == 0 {
            return None;
        }
        let s = self.sriov();
        (0..self.active_vfs)
            .find(|&n| sriov::vf_routing_id(self.pf_rid, &s, n) == rid)
            .map(Function::Vf)
    }

    fn flr_requested(off: u16, data: &[u8]) -> bool {
        let b = PCIE_CAP + EXP_DEVCTL + 1;
        b >= off && ((b - off) as usize) < data.len() && data[(b - off) as usize] & 0x80 != 0
    }

    fn pf_config_write(&mut self, off: u16, data: &[u8], now: u64) {
        let before = self.sriov();
        let numvfs = self.pf.cfg.read16(SRIOV_CAP + sriov::SRIOV_NUM_VF);
        self.pf.cfg.write(off, data);
        if before.vf_enable {
            // NumVFs may only change while VF Enable is clear (SR-IOV 1.1 §3.3.7).
            self.pf.cfg.set16(SRIOV_CAP + sriov::SRIOV_NUM_VF, numvfs);
        }
        if Self::flr_requested(off, data) {
            self.pf_flr();
            return;
        }
        let after = self.sriov();
        if after.vf_enable && !before.vf_enable {
            self.create_vfs(after.num_vfs);
        } else if !after.vf_enable && before.vf_enable {
            self.remove_vfs();
        }
        let ctl = MsixControl::from_config(&self.pf.cfg, MSIX_CAP);
        self.pf.msix.deliver_pending(ctl, self.pf_rid, &*self.sink);
        let st = caps::msi_state(&self.pf.cfg, MSI_CAP);
        if !ctl.enabled
            && st.enabled
            && !st.masked
            && self.pf.cfg.bus_master()
            && caps::msi_pending(&self.pf.cfg, MSI_CAP)
        {
            caps::msi_set_pending(&mut self.pf.cfg, MSI_CAP, false);
            self.sink
                .send_msi(MsiMessage::new(self.pf_rid, st.address, st.data));
        }
        self.service(now);
    }

    fn vf_config_write(&mut self, n: u16, off: u16, data: &[u8], now: u64) {
        let rid = self.rid(Function::Vf(n));
        let vf = &mut self.vfs[n as usize];
        vf.cfg.write(off, data);
        if Self::flr_requested(off, data) {
            vf.cfg = vf_config();
            vf.msix.reset();
            self.vf_soft_reset(n as usize);
            return;
        }
        let ctl = MsixControl::from_config(&vf.cfg, MSIX_CAP);
        vf.msix.deliver_pending(ctl, rid, &*self.sink);
        self.service(now);
    }

    /// VF Enable 0 → 1: VFs 0..num appear with fresh configuration spaces.
    fn create_vfs(&mut self, num: u16) {
        self.active_vfs = num.min(MAX_VFS as u16);
        for n in 0..MAX_VFS {
            self.vfs[n] = VfFn::new();
            let mb = &mut self.mbx.mb[n];
            *mb = Default::default();
            mb.vf_status = if self.pf_ready { V2P_RSTD } else { V2P_RSTI };
            self.rxq[n] = RxQueue::default();
            self.rxq[n + 8] = RxQueue::default();
            self.txq[n] = TxQueue::default();
            self.txq[n + 8] = TxQueue::default();
        }
        self.agent_cts = 0;
        tracing::debug!(num = self.active_vfs, "SR-IOV VFs enabled");
    }

    /// VF Enable 1 → 0: the VFs disappear.
    fn remove_vfs(&mut self) {
        for n in 0..self.active_vfs as usize {
            self.vfs[n] = VfFn::new();
            self.rxq[n] = RxQueue::default();
            self.rxq[n + 8] = RxQueue::default();
            self.txq[n] = TxQueue::default();
            self.txq[n + 8] = TxQueue::default();
        }
        self.active_vfs = 0;
        self.pf.set(VFRE, 0);
        self.pf.set(VFTE, 0);
        tracing::debug!("SR-IOV VFs disabled");
    }

    /// PF function-level reset: PCI state, device registers and the VFs.
    fn pf_flr(&mut self) {
        if self.active_vfs > 0 {
            self.remove_vfs();
        }
        self.pf.cfg = pf_config();
        self.pf.msix.reset();
        self.pf_soft_reset();
    }

    /// CTRL.RST: the PF's registers and queues reset; VFs see RSTI until PFRSTD.
    fn pf_soft_reset(&mut self) {
        self.pf.reset_regs();
        for q in 0..NUM_QUEUES {
            if self.owner(q) == Function::Pf {
                self.rxq[q] = RxQueue::default();
                self.txq[q] = TxQueue::default();
            }
        }
        self.mbx.pf_reset();
        self.pf_ready = false;
        self.agent_cts = 0;
        if self.agent {
            self.set_pf_agent(true);
        }
        let st = self.pf.get(STATUS) | STATUS_PF_RST_DONE;
        self.pf.set(STATUS, st);
    }

    /// VTCTRL.RST or VF FLR.
    fn vf_soft_reset(&mut self, n: usize) {
        if n >= self.active_vfs as usize {
            return;
        }
        self.vfs[n].soft_reset();
        self.rxq[n] = RxQueue::default();
        self.rxq[n + 8] = RxQueue::default();
        self.txq[n] = TxQueue::default();
        self.txq[n + 8] = TxQueue::default();
        let vfre = self.pf.get(VFRE) & !(1 << n);
        self.pf.set(VFRE, vfre);
        let vfte = self.pf.get(VFTE) & !(1 << n);
        self.pf.set(VFTE, vfte);
        self.agent_cts &= !(1 << n);
        let ev = self.mbx.vf_reset(n);
        if ev.to_pf {
            self.pf_other_cause(ICR_VMMB);
        }
    }

    // ---- MMIO ----

    fn decode(&self, addr: u64) -> Option<(Function, usize, u64)> {
        if let Some((bar, off)) = self.pf.cfg.decode(addr) {
            return Some((Function::Pf, bar, off));
        }
        let s = self.sriov();
        if self.active_vfs == 0 || !s.vf_mse || !self.pf.cfg.memory_enabled() {
            return None;
        }
        for (bar, size) in [(REG_BAR, VF_BAR0_SIZE), (MSIX_BAR, VF_BAR3_SIZE)] {
            let def = BarDef {
                size,
                kind: BarKind::Mem64,
                prefetchable: false,
            };
            let base = sriov::vf_bar_base(&self.pf.cfg, SRIOV_CAP, bar, &def);
            if base == 0 || addr < base {
                continue;
            }
            let n = (addr - base) / size;
            if n < self.active_vfs as u64 {
                return Some((Function::Vf(n as u16), bar, (addr - base) % size));
            }
        }
        None
    }

    fn msix_access(&mut self, f: Function, off: u64, data: &mut [u8], write: bool) {
        let rid = self.rid(f);
        let (cfg, table) = match f {
            Function::Pf => (&self.pf.cfg, &mut self.pf.msix),
            Function::Vf(n) => {
                let v = &mut self.vfs[n as usize];
                (&v.cfg, &mut v.msix)
            }
        };
        let ctl = MsixControl::from_config(cfg, MSIX_CAP);
        let pba = MSIX_PBA_OFFSET as u64;
        if off < pba {
            if write {
                table.table_write(off, data, ctl, rid, &*self.sink);
            } else {
                table.table_read(off, data);
            }
        } else if !write {
            table.pba_read(off - pba, data);
        }
    }

    fn mmio_read_impl(&mut self, addr: u64, data: &mut [u8], now: u64) -> bool {
        let Some((f, bar, off)) = self.decode(addr) else {
            return false;
        };
        if bar == MSIX_BAR {
            self.msix_access(f, off, data, false);
            return true;
        }
        data.fill(0);
        match data.len() {
            1 | 2 | 4 => {
                let v = self.reg_read(f, (off & !3) as u32, now);
                let sh = (off & 3) as usize;
                let bytes = v.to_le_bytes();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = bytes.get(sh + i).copied().unwrap_or(0);
                }
            }
            8 if off & 7 == 0 => {
                let lo = self.reg_read(f, off as u32, now);
                let hi = self.reg_read(f, off as u32 + 4, now);
                data.copy_from_slice(&(lo as u64 | (hi as u64) << 32).to_le_bytes());
            }
            _ => self.counters.ignored_accesses += 1,
        }
        true
    }

    fn mmio_write_impl(&mut self, addr: u64, data: &[u8], now: u64) -> bool {
        let Some((f, bar, off)) = self.decode(addr) else {
            return false;
        };
        if bar == MSIX_BAR {
            let mut d = data.to_vec();
            self.msix_access(f, off, &mut d, true);
            self.service(now);
            return true;
        }
        match data.len() {
            4 if off & 3 == 0 => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.reg_write(f, off as u32, v, now);
            }
            8 if off & 7 == 0 => {
                let lo = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                let hi = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
                self.reg_write(f, off as u32, lo, now);
                self.reg_write(f, off as u32 + 4, hi, now);
            }
            _ => self.counters.ignored_accesses += 1,
        }
        self.service(now);
        true
    }

    /// A register read in function `f`'s register BAR (offset dword-aligned).
    pub fn reg_read(&mut self, f: Function, off: u32, _now: u64) -> u32 {
        match f {
            Function::Pf => self.pf_reg_read(off),
            Function::Vf(n) => self.vf_reg_read(n as usize, off),
        }
    }

    /// A register write in function `f`'s register BAR.
    pub fn reg_write(&mut self, f: Function, off: u32, v: u32, now: u64) {
        match f {
            Function::Pf => self.pf_reg_write(off, v, now),
            Function::Vf(n) => self.vf_reg_write(n as usize, off, v, now),
        }
    }

    fn pf_reg_read(&mut self, off: u32) -> u32 {
        if let Some((q, o, tx)) = pf_queue_reg(off) {
            return if tx {
                self.txq[q].read_reg(o)
            } else {
                self.rxq[q].read_reg(o)
            };
        }
        let mbx_mem_end = VMBMEM + (MAX_VFS * VMBMEM_WORDS * 4) as u32;
        match off {
            STATUS => {
                STATUS_FD
                    | STATUS_LU
                    | STATUS_SPEED_1000
                    | (self.pf.get(STATUS) & STATUS_PF_RST_DONE)
            }
            EECD => self.pf.get(EECD) | EECD_PRES | EECD_AUTO_RD,
            EERD => self.pf.eerd,
            MDIC => self.pf.mdic,
            ICR => {
                let v = std::mem::take(&mut self.pf.icr);
                if v & self.pf.ims != 0 {
                    v | ICR_INT_ASSERTED
                } else {
                    v
                }
            }
            IMS => self.pf.ims,
            EICR => self.pf.intr.read_eicr(),
            EIMS => self.pf.intr.eims,
            EIAC => self.pf.intr.eiac,
            EIAM => self.pf.intr.eiam,
            o if (EITR..EITR + 4 * 25).contains(&o) => self.pf.intr.eitr(((o - EITR) / 4) as usize),
            o if (VMBMEM..mbx_mem_end).contains(&o) => {
                let w = ((o - VMBMEM) / 4) as usize;
                self.mbx.pf_read_mem(w / VMBMEM_WORDS, w % VMBMEM_WORDS)
            }
            o if (P2VMAILBOX..P2VMAILBOX + 4 * MAX_VFS as u32).contains(&o) => {
                self.mbx.pf_read_ctl(((o - P2VMAILBOX) / 4) as usize)
            }
            MBVFICR => self.mbx.mbvficr,
            MBVFIMR => self.mbx.mbvfimr,
            VFLRE => self.mbx.vflre,
            o if (STATS_START..STATS_END).contains(&o) => {
                // Statistics clear on read.
                let v = self.pf.get(o);
                self.pf.set(o, 0);
                v
            }
            o => self.pf.get(o),
        }
    }

    fn pf_reg_write(&mut self, off: u32, v: u32, now: u64) {
        if let Some((q, o, tx)) = pf_queue_reg(off) {
            if tx {
                self.txq[q].write_reg(o, v);
                if o == TDT || o == TXDCTL {
                    self.transmit(q, now);
                }
            } else {
                self.rxq[q].write_reg(o, v);
            }
            return;
        }
        let mbx_mem_end = VMBMEM + (MAX_VFS * VMBMEM_WORDS * 4) as u32;
        match off {
            CTRL => {
                if v & CTRL_RST != 0 {
                    self.pf_soft_reset();
                } else {
                    self.pf.set(CTRL, v & !CTRL_PHY_RST);
                }
            }
            STATUS => {}
            EERD => self.pf.eerd = nvm_phy::eerd_access(&self.pf.nvm, v),
            MDIC => self.pf.mdic = nvm_phy::mdic_access(&mut self.pf.phy, v),
            CTRL_EXT => {
                self.pf.set(CTRL_EXT, v);
                if v & CTRL_EXT_PFRSTD != 0 {
                    self.pf_ready = true;
                    self.mbx.pf_reset_done();
                    for n in 0..self.active_vfs as usize {
                        self.vf_mailbox_cause(n);
                    }
                }
            }
            ICR => self.pf.icr &= !v,
            ICS => self.pf_other_cause(v),
            IMS => {
                let newly = v & !self.pf.ims;
                self.pf.ims |= v;
                if newly & self.pf.icr != 0 {
                    self.pf_other_vector();
                }
            }
            IMC => self.pf.ims &= !v,
            EICS => self.pf.intr.cause(v),
            EIMS => self.pf.intr.write_eims(v),
            EIMC => self.pf.intr.write_eimc(v),
            EIAC => self.pf.intr.eiac = v,
            EIAM => self.pf.intr.eiam = v,
            EICR => self.pf.intr.write_eicr(v),
            o if (EITR..EITR + 4 * 25).contains(&o) => {
                self.pf.intr.write_eitr(((o - EITR) / 4) as usize, v)
            }
            o if (VMBMEM..mbx_mem_end).contains(&o) => {
                let w = ((o - VMBMEM) / 4) as usize;
                self.mbx.pf_write_mem(w / VMBMEM_WORDS, w % VMBMEM_WORDS, v)
            }
            o if (P2VMAILBOX..P2VMAILBOX + 4 * MAX_VFS as u32).contains(&o) => {
                let n = ((o - P2VMAILBOX) / 4) as usize;
                let ev = self.mbx.pf_write_ctl(n, v);
                if ev.to_vf {
                    self.vf_mailbox_cause(n);
                }
            }
            MBVFICR => self.mbx.mbvficr &= !v,
            MBVFIMR => self.mbx.mbvfimr = v,
            VFLRE => self.mbx.vflre &= !v,
            VFTE => {
                self.pf.set(VFTE, v);
                for q in 0..NUM_QUEUES {
                    if matches!(self.owner(q), Function::Vf(_)) {
                        self.transmit(q, now);
                    }
                }
            }
            TCTL => {
                self.pf.set(TCTL, v);
                if v & TCTL_EN != 0 {
                    for q in 0..NUM_QUEUES {
                        if self.owner(q) == Function::Pf {
                            self.transmit(q, now);
                        }
                    }
                }
            }
            o if (STATS_START..STATS_END).contains(&o) => {}
            o => self.pf.set(o, v),
        }
    }

    fn vf_reg_read(&mut self, n: usize, off: u32) -> u32 {
        if let Some((k, o, tx)) = vf_queue_reg(off) {
            let q = n + 8 * k as usize;
            return if tx {
                self.txq[q].read_reg(o)
            } else {
                self.rxq[q].read_reg(o)
            };
        }
        let vf = &mut self.vfs[n];
        match off {
            STATUS => STATUS_FD | STATUS_LU | STATUS_SPEED_1000,
            EICR => vf.intr.read_eicr(),
            EIMS => vf.intr.eims,
            EIAC => vf.intr.eiac,
            EIAM => vf.intr.eiam,
            o if (EITR..EITR + 4 * VF_MSIX_VECTORS as u32).contains(&o) => {
                vf.intr.eitr(((o - EITR) / 4) as usize)
            }
            V2PMAILBOX => self.mbx.vf_read_ctl(n),
            o if (VMBMEM..VMBMEM + 4 * VMBMEM_WORDS as u32).contains(&o) => {
                self.mbx.vf_read_mem(n, ((o - VMBMEM) / 4) as usize)
            }
            o => vf.get(o),
        }
    }

    fn vf_reg_write(&mut self, n: usize, off: u32, v: u32, now: u64) {
        if let Some((k, o, tx)) = vf_queue_reg(off) {
            let q = n + 8 * k as usize;
            if tx {
                self.txq[q].write_reg(o, v);
                if o == TDT || o == TXDCTL {
                    self.transmit(q, now);
                }
            } else {
                self.rxq[q].write_reg(o, v);
            }
            return;
        }
        let vf = &mut self.vfs[n];
        match off {
            CTRL => {
                if v & CTRL_RST != 0 {
                    self.vf_soft_reset(n);
                } else {
                    vf.set(CTRL, v);
                }
            }
            STATUS => {}
            EICS => vf.intr.cause(v),
            EIMS => vf.intr.write_eims(v),
            EIMC => vf.intr.write_eimc(v),
            EIAC => vf.intr.eiac = v,
            EIAM => vf.intr.eiam = v,
            EICR => vf.intr.write_eicr(v),
            o if (EITR..EITR + 4 * VF_MSIX_VECTORS as u32).contains(&o) => {
                vf.intr.write_eitr(((o - EITR) / 4) as usize, v)
            }
            V2PMAILBOX => {
                let ev = self.mbx.vf_write_ctl(n, v);
                if ev.to_pf {
                    self.pf_other_cause(ICR_VMMB);
                }
                if ev.vf_request && self.agent {
                    self.agent_handle(n);
                }
            }
            o if (VMBMEM..VMBMEM + 4 * VMBMEM_WORDS as u32).contains(&o) => {
                self.mbx.vf_write_mem(n, ((o - VMBMEM) / 4) as usize, v)
            }
            // Statistics are read-only.
            o if (VFGPRC..=VFGOTLBC).contains(&o) => {}
            o => vf.set(o, v),
        }
    }

    // ---- interrupts ----

    /// An "other" cause in ICR (mailbox, link): raises the vector IVAR_MISC (byte 1)
    /// names when enabled in IMS.
    fn pf_other_cause(&mut self, bits: u32) {
        self.pf.icr |= bits;
        if bits & self.pf.ims != 0 {
            self.pf_other_vector();
        }
    }

    fn pf_other_vector(&mut self) {
        match ivar_vector(self.pf.get(IVAR_MISC), 1) {
            Some(v) => self.pf.intr.cause(1 << v),
            None if self.pf.get(GPIE) & GPIE_MSIX_MODE == 0 => self.pf.intr.cause(1),
            None => {}
        }
    }

    /// VF n's mailbox cause: the vector in VTIVAR_MISC byte 0.
    fn vf_mailbox_cause(&mut self, n: usize) {
        if n >= self.active_vfs as usize {
            return;
        }
        let vf = &mut self.vfs[n];
        if let Some(v) = ivar_vector(vf.get(IVAR_MISC), 0) {
            vf.intr.cause(1 << v);
        }
    }

    /// A queue's receive or transmit cause, mapped to a vector by its owner's IVAR.
    fn queue_cause(&mut self, q: usize, tx: bool) {
        match self.owner(q) {
            Function::Pf => {
                let ivar = self.pf.get(IVAR0 + 4 * (q as u32 & 7));
                let byte = if q & 8 != 0 { 2 } else { 0 } + tx as u32;
                if let Some(v) = ivar_vector(ivar, byte) {
                    self.pf.intr.cause(1 << v);
                }
            }
            Function::Vf(n) => {
                let vf = &mut self.vfs[n as usize];
                let k = (q >> 3) as u32;
                if let Some(v) = ivar_vector(vf.get(IVAR0), 2 * k + tx as u32) {
                    vf.intr.cause(1 << v);
                }
            }
        }
    }

    /// Sends every interrupt due at `now`.
    fn service(&mut self, now: u64) {
        let auto = self.pf.get(GPIE) & GPIE_EIAME != 0;
        let due = self.pf.intr.take_due(now, auto);
        for v in bits(due) {
            self.pf_signal(v);
        }
        for n in 0..self.active_vfs as usize {
            let due = self.vfs[n].intr.take_due(now, true);
            if due == 0 {
                continue;
            }
            let rid = self.rid(Function::Vf(n as u16));
            let vf = &mut self.vfs[n];
            let ctl = MsixControl::from_config(&vf.cfg, MSIX_CAP);
            for v in bits(due) {
                vf.msix.signal(v, ctl, rid, &*self.sink);
            }
        }
    }

    fn pf_signal(&mut self, v: usize) {
        let ctl = MsixControl::from_config(&self.pf.cfg, MSIX_CAP);
        if ctl.enabled {
            self.pf.msix.signal(v, ctl, self.pf_rid, &*self.sink);
            return;
        }
        let st = caps::msi_state(&self.pf.cfg, MSI_CAP);
        if !st.enabled || !self.pf.cfg.bus_master() {
            return;
        }
        if st.masked {
            caps::msi_set_pending(&mut self.pf.cfg, MSI_CAP, true);
        } else {
            self.pf.msix.sent += 1;
            self.sink
                .send_msi(MsiMessage::new(self.pf_rid, st.address, st.data));
        }
    }

    // ---- data path ----

    /// Which function owns physical queue `q`.
    pub fn owner(&self, q: usize) -> Function {
        let p = (q & 7) as u16;
        if p < self.active_vfs {
            Function::Vf(p)
        } else {
            Function::Pf
        }
    }

    fn pf_pool(&self) -> u32 {
        self.active_vfs as u32
    }

    fn all_pools(&self) -> u32 {
        (1u32 << (self.active_vfs as u32 + 1)) - 1
    }

    fn rars(&self) -> Vec<([u8; 6], u32)> {
        (0..RAR_ENTRIES as u32)
            .filter_map(|i| {
                let off = if i < 16 {
                    RAL0 + 8 * i
                } else {
                    RAL16 + 8 * (i - 16)
                };
                switch::rar_entry(self.pf.get(off), self.pf.get(off + 4))
            })
            .collect()
    }

    fn transmit(&mut self, q: usize, now: u64) {
        let owner = self.owner(q);
        let enabled = match owner {
            Function::Pf => self.pf.get(TCTL) & TCTL_EN != 0,
            Function::Vf(n) => self.pf.get(VFTE) & (1 << n) != 0,
        };
        if !enabled || !self.txq[q].enabled() {
            return;
        }
        let bus_master = match owner {
            Function::Pf => self.pf.cfg.bus_master(),
            Function::Vf(n) => self.vfs[n as usize].cfg.bus_master(),
        };
        if !bus_master {
            return;
        }
        let rid = self.rid(owner);
        let mut frames = Vec::new();
        let rep = self.txq[q].process(rid, &*self.dma, &mut frames);
        self.counters.dma_aborted += rep.dma_aborted as u64;
        self.counters.tx_dropped += rep.dropped as u64;
        self.counters.bad_ring += rep.bad_tail as u64;
        if rep.written_back > 0 {
            self.queue_cause(q, true);
        }
        let src_pool = match owner {
            Function::Pf => self.pf_pool(),
            Function::Vf(n) => n as u32,
        };
        for f in frames {
            self.switch_frame(src_pool, owner, &f, now);
        }
        self.service(now);
    }

    fn switch_frame(&mut self, src_pool: u32, owner: Function, frame: &[u8], now: u64) {
        self.counters.tx_frames += 1;
        let loopback = self.pf.get(DTXSWC) & DTXSWC_LOOPBACK_EN != 0;
        let r = switch::route(
            &frame[..6],
            &self.rars(),
            Some(src_pool),
            self.pf_pool(),
            self.all_pools(),
            loopback,
        );
        let len = frame.len() as u64;
        let mc = switch::is_multicast(frame);
        match owner {
            Function::Pf => {
                self.pf.stat_add(GPTC, 1);
                self.pf.stat_add(TPT, 1);
                self.pf.stat_add64(GOTCL, len + 4);
                self.pf.stat_add64(TOTL, len + 4);
                if frame[..6] == [0xff; 6] {
                    self.pf.stat_add(BPTC, 1);
                } else if mc {
                    self.pf.stat_add(MPTC, 1);
                }
            }
            Function::Vf(n) => {
                let vf = &mut self.vfs[n as usize];
                vf.stat_add(VFGPTC, 1);
                vf.stat_add(VFGOTC, len);
                if r.pools != 0 {
                    vf.stat_add(VFGPTLBC, 1);
                    vf.stat_add(VFGOTLBC, len);
                }
            }
        }
        for p in bits(r.pools) {
            self.deliver_to_pool(p as u32, frame, true, now);
        }
        if r.wire {
            self.counters.tx_to_wire += 1;
            if let Some(b) = self.backend.as_mut() {
                b.send(frame);
            }
        }
    }

    /// Maximum frame length a function accepts.
    fn max_rx_len(&self, f: Function) -> usize {
        let rctl = self.pf.get(RCTL);
        match f {
            Function::Pf if rctl & RCTL_LPE != 0 => {
                let l = (self.pf.get(RLPML) & 0x3fff) as usize;
                if l == 0 {
                    MAX_FRAME
                } else {
                    l
                }
            }
            Function::Pf => MAX_STD_FRAME,
            Function::Vf(n) => {
                let vmolr = self.pf.get(VMOLR + 4 * n as u32);
                if vmolr & VMOLR_LPE != 0 {
                    ((vmolr & VMOLR_RLPML_MASK) as usize).max(MAX_STD_FRAME)
                } else {
                    MAX_STD_FRAME
                }
            }
        }
    }

    fn deliver_to_pool(&mut self, pool: u32, frame: &[u8], loopback: bool, now: u64) {
        let q = pool as usize;
        if q >= NUM_QUEUES {
            return;
        }
        let owner = self.owner(q);
        let (enabled, bus_master) = match owner {
            Function::Pf => (self.pf.get(RCTL) & RCTL_EN != 0, self.pf.cfg.bus_master()),
            Function::Vf(n) => (
                self.pf.get(VFRE) & (1 << n) != 0,
                self.vfs[n as usize].cfg.bus_master(),
            ),
        };
        if !enabled || !bus_master {
            self.counters.rx_disabled += 1;
            return;
        }
        if frame.len() > self.max_rx_len(owner) {
            self.counters.rx_oversize += 1;
            self.pf.stat_add(ROC, 1);
            return;
        }
        let rctl = self.pf.get(RCTL);
        let mut bsize = match (rctl >> RCTL_BSIZE_SHIFT) & 3 {
            0 => 2048,
            1 => 1024,
            2 => 512,
            _ => 256,
        };
        if rctl & RCTL_BSEX != 0 {
            bsize *= 16;
        }
        let rxcsum = self.pf.get(RXCSUM);
        let params = RxParams {
            rctl_bsize: bsize,
            ip_csum: rxcsum & RXCSUM_IPOFL != 0,
            l4_csum: rxcsum & RXCSUM_TUOFL != 0,
        };
        let rid = self.rid(owner);
        let outcome = self.rxq[q].receive(frame, rid, &*self.dma, &params);
        let len = frame.len() as u64;
        match outcome {
            RxOutcome::Delivered { .. } => {
                self.counters.rx_delivered += 1;
                match owner {
                    Function::Pf => {
                        self.pf.stat_add(GPRC, 1);
                        self.pf.stat_add(TPR, 1);
                        self.pf.stat_add64(GORCL, len + 4);
                        self.pf.stat_add64(TORL, len + 4);
                        if frame[..6] == [0xff; 6] {
                            self.pf.stat_add(BPRC, 1);
                        } else if switch::is_multicast(frame) {
                            self.pf.stat_add(MPRC, 1);
                        }
                    }
                    Function::Vf(n) => {
                        let vf = &mut self.vfs[n as usize];
                        vf.stat_add(VFGPRC, 1);
                        vf.stat_add(VFGORC, len);
                        if switch::is_multicast(frame) {
                            vf.stat_add(VFMPRC, 1);
                        }
                        if loopback {
                            vf.stat_add(VFGPRLBC, 1);
                            vf.stat_add(VFGORLBC, len);
                        }
                    }
                }
                self.queue_cause(q, false);
            }
            RxOutcome::NoDescriptors => {
                self.counters.rx_no_descriptors += 1;
                if self.rxq[q].available() == 0
                    && (self.rxq[q].rdh >= self.rxq[q].count()
                        || self.rxq[q].rdt >= self.rxq[q].count())
                {
                    self.counters.bad_ring += 1;
                }
                self.pf.stat_add(MPC, 1);
                self.pf.stat_add(RNBC, 1);
            }
            RxOutcome::DmaAborted => self.counters.dma_aborted += 1,
            RxOutcome::Disabled => self.counters.rx_disabled += 1,
        }
        let _ = now;
    }
}

impl PciDevice for Nic82576 {
    fn responds_to(&self, rid: u16) -> bool {
        self.function_of(rid).is_some()
    }

    fn config_read(&mut self, rid: u16, offset: u16, len: usize, _now: u64) -> u32 {
        match self.function_of(rid) {
            Some(Function::Pf) => self.pf.cfg.read(offset, len),
            Some(Function::Vf(n)) => self.vfs[n as usize].cfg.read(offset, len),
            None => u32::MAX,
        }
    }

    fn config_write(&mut self, rid: u16, offset: u16, data: &[u8], now: u64) {
        match self.function_of(rid) {
            Some(Function::Pf) => self.pf_config_write(offset, data, now),
            Some(Function::Vf(n)) => self.vf_config_write(n, offset, data, now),
            None => {}
        }
    }

    fn mmio_read(&mut self, addr: u64, data: &mut [u8], now: u64) -> bool {
        self.mmio_read_impl(addr, data, now)
    }

    fn mmio_write(&mut self, addr: u64, data: &[u8], now: u64) -> bool {
        self.mmio_write_impl(addr, data, now)
    }

    fn poll(&mut self, now: u64) {
        self.service(now);
    }

    fn next_deadline(&self) -> Option<u64> {
        let mut d = self.pf.intr.next_deadline();
        for vf in &self.vfs[..self.active_vfs as usize] {
            d = match (d, vf.intr.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        d
    }

    fn assign_bars(&mut self, alloc: &mut dyn FnMut(u64) -> Option<u64>) {
        for (bar, size) in [(REG_BAR, PF_BAR0_SIZE), (MSIX_BAR, MSIX_BAR_SIZE)] {
            if let Some(a) = alloc(size) {
                self.pf.cfg.set_bar_address(bar, a);
            }
        }
        for (bar, size) in [(REG_BAR, VF_BAR0_SIZE), (MSIX_BAR, VF_BAR3_SIZE)] {
            if let Some(a) = alloc(size * MAX_VFS as u64) {
                let off = SRIOV_CAP + sriov::SRIOV_BAR + 4 * bar as u16;
                let ty = self.pf.cfg.read32(off) & !PCI_BAR_MEM_MASK;
                self.pf.cfg.set32(off, (a as u32 & PCI_BAR_MEM_MASK) | ty);
                self.pf.cfg.set32(off + 4, (a >> 32) as u32);
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;
