//! Per-function register state of the NIC: the PF's and each VF's configuration space,
//! MSI-X table, interrupt block and plain register file.

use super::*;

pub(super) struct PfFn {
    pub(super) cfg: ConfigSpace,
    pub(super) msix: MsixTable,
    pub(super) intr: IntrBlock,
    pub(super) regs: Vec<u32>,
    pub(super) icr: u32,
    pub(super) ims: u32,
    /// A non-MSI-X mode interrupt (ICR & IMS) is due.
    pub(super) icr_irq: bool,
    /// When the non-MSI-X interrupt last fired (legacy ITR moderation).
    pub(super) icr_last_fire: Option<u64>,
    pub(super) eerd: u32,
    pub(super) mdic: u32,
    pub(super) phy: [u16; 32],
    pub(super) nvm: [u16; nvm_phy::NVM_WORDS],
}

pub(super) struct VfFn {
    pub(super) cfg: ConfigSpace,
    pub(super) msix: MsixTable,
    pub(super) intr: IntrBlock,
    pub(super) regs: Vec<u32>,
}

impl PfFn {
    pub(super) fn new(mac: [u8; 6]) -> Self {
        let mut f = Self {
            cfg: pf_config(),
            msix: MsixTable::new(PF_MSIX_VECTORS),
            intr: IntrBlock::new(PF_MSIX_VECTORS),
            regs: vec![0; (PF_BAR0_SIZE / 4) as usize],
            icr: 0,
            ims: 0,
            icr_irq: false,
            icr_last_fire: None,
            eerd: 0,
            mdic: MDIC_READY,
            phy: nvm_phy::phy_defaults(),
            nvm: nvm_phy::nvm_image(mac),
        };
        f.reset_regs();
        f
    }

    /// Register state after a PF software reset (CTRL.RST).
    pub(super) fn reset_regs(&mut self) {
        self.regs.fill(0);
        self.intr.reset();
        self.icr = 0;
        self.ims = 0;
        self.icr_irq = false;
        self.icr_last_fire = None;
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

    /// Earliest time the non-MSI-X interrupt may fire again: ITR interval bits 15:0 in
    /// 256 ns units since the last one.
    pub(super) fn icr_next_allowed(&self) -> u64 {
        let interval = (self.get(ITR) & ITR_INTERVAL_MASK) as u64 * 256;
        self.icr_last_fire.map_or(0, |t| t.saturating_add(interval))
    }

    pub(super) fn get(&self, off: u32) -> u32 {
        self.regs.get((off / 4) as usize).copied().unwrap_or(0)
    }

    pub(super) fn set(&mut self, off: u32, v: u32) {
        if let Some(r) = self.regs.get_mut((off / 4) as usize) {
            *r = v;
        }
    }

    pub(super) fn stat_add(&mut self, off: u32, n: u64) {
        let v = self.get(off).saturating_add(n.min(u32::MAX as u64) as u32);
        self.set(off, v);
    }

    /// A 64-bit low/high statistics pair.
    pub(super) fn stat_add64(&mut self, off: u32, n: u64) {
        let cur = self.get(off) as u64 | ((self.get(off + 4) as u64) << 32);
        let v = cur.wrapping_add(n);
        self.set(off, v as u32);
        self.set(off + 4, (v >> 32) as u32);
    }
}

impl VfFn {
    pub(super) fn new() -> Self {
        Self {
            cfg: vf_config(),
            msix: MsixTable::new(VF_MSIX_VECTORS),
            intr: IntrBlock::new(VF_MSIX_VECTORS),
            regs: vec![0; (VF_BAR0_SIZE / 4) as usize],
        }
    }

    /// VTCTRL.RST: registers back to their reset values; statistics are kept (igbvf
    /// computes deltas), PCI state untouched.
    pub(super) fn soft_reset(&mut self) {
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

    pub(super) fn get(&self, off: u32) -> u32 {
        self.regs.get((off / 4) as usize).copied().unwrap_or(0)
    }

    pub(super) fn set(&mut self, off: u32, v: u32) {
        if let Some(r) = self.regs.get_mut((off / 4) as usize) {
            *r = v;
        }
    }

    pub(super) fn stat_add(&mut self, off: u32, n: u64) {
        let v = self.get(off).wrapping_add(n as u32);
        self.set(off, v);
    }
}
