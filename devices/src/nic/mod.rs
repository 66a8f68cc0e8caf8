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
mod datapath;
pub mod events;
mod function;
pub mod intr;
mod irq;
mod layout;
pub mod mailbox;
pub mod nvm_phy;
mod pf_agent;
mod registers;
pub mod regs;
pub mod rx;
pub mod switch;
pub mod tap;
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
use events::{DropReason, NicEvents, NoEvents};
use function::{PfFn, VfFn};
use intr::{ivar_vector, IntrBlock};
use layout::{pf_config, vf_config};
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
    /// Device number on bus 0 (the PF is function 0), 1–0x0e: 0 is the host bridge, and
    /// at most 0x0e keeps the VFs' routing IDs on bus 0.
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
    events: Arc<dyn NicEvents>,
    pub counters: NicCounters,
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
        // Device 0 is the host bridge.
        if config.device == 0 || config.device > 0x0e {
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
            events: Arc::new(NoEvents),
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

    /// Attaches a metrics observer.
    pub fn set_events(&mut self, events: Arc<dyn NicEvents>) {
        self.events = events;
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
        let (rars, nr) = self.rars();
        let r = switch::route(
            &frame[..6],
            &rars[..nr],
            None,
            self.pf_pool(),
            self.all_pools(),
            true,
        );
        for p in bits(r.pools) {
            self.deliver_to_pool(p as u32, frame, false);
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
        for n in 0..self.active_vfs as usize {
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
        if self.pf.icr_irq {
            let t = self.pf.icr_next_allowed();
            d = Some(d.map_or(t, |x| x.min(t)));
        }
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
