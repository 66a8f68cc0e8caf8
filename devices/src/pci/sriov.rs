//! The SR-IOV extended capability (PCI-SIG Single Root I/O Virtualization and Sharing
//! 1.1, §3.3): VF enable, NumVFs, routing-ID offset and stride, VF device ID and the VF
//! BARs through which the PF programs every VF's memory window (VF n's BAR i =
//! VF BAR i base + n × VF BAR i size).

use super::config::*;

pub const SRIOV_CAP_LEN: u16 = 0x40;
/// SR-IOV Capabilities.
pub const SRIOV_CAPABILITIES: u16 = 0x04;
/// SR-IOV Control.
pub const SRIOV_CTRL: u16 = 0x08;
/// SR-IOV Status.
pub const SRIOV_STATUS: u16 = 0x0a;
pub const SRIOV_INITIAL_VF: u16 = 0x0c;
pub const SRIOV_TOTAL_VF: u16 = 0x0e;
pub const SRIOV_NUM_VF: u16 = 0x10;
pub const SRIOV_FUNC_LINK: u16 = 0x12;
pub const SRIOV_VF_OFFSET: u16 = 0x14;
pub const SRIOV_VF_STRIDE: u16 = 0x16;
pub const SRIOV_VF_DID: u16 = 0x1a;
pub const SRIOV_SUP_PGSIZE: u16 = 0x1c;
pub const SRIOV_SYS_PGSIZE: u16 = 0x20;
pub const SRIOV_BAR: u16 = 0x24;
pub const SRIOV_VFM: u16 = 0x3c;

/// Control: VF Enable.
pub const SRIOV_CTRL_VFE: u16 = 0x01;
/// Control: VF Migration Enable.
pub const SRIOV_CTRL_VFM: u16 = 0x02;
/// Control: VF Migration Interrupt Enable.
pub const SRIOV_CTRL_INTR: u16 = 0x04;
/// Control: VF Memory Space Enable.
pub const SRIOV_CTRL_MSE: u16 = 0x08;
/// Control: ARI Capable Hierarchy.
pub const SRIOV_CTRL_ARI: u16 = 0x10;

/// Static description of the SR-IOV capability a PF offers.
#[derive(Debug, Clone, Copy)]
pub struct SriovParams {
    pub total_vfs: u16,
    pub initial_vfs: u16,
    pub first_vf_offset: u16,
    pub vf_stride: u16,
    pub vf_device_id: u16,
    /// VF BARs (index 0..6); 64-bit BARs take two slots.
    pub vf_bars: [Option<BarDef>; 6],
}

/// Adds the capability at `off`.
pub fn add_sriov(c: &mut ConfigSpace, off: u16, p: &SriovParams) {
    c.add_ext_capability(off, PCI_EXT_CAP_ID_SRIOV, 1, SRIOV_CAP_LEN);
    c.set32(off + SRIOV_CAPABILITIES, 0);
    // VF Migration is not offered, so its enable bits stay read-only zero.
    c.set_wmask16(
        off + SRIOV_CTRL,
        SRIOV_CTRL_VFE | SRIOV_CTRL_MSE | SRIOV_CTRL_ARI,
    );
    c.set16(off + SRIOV_INITIAL_VF, p.initial_vfs);
    c.set16(off + SRIOV_TOTAL_VF, p.total_vfs);
    c.set_wmask16(off + SRIOV_NUM_VF, 0xffff);
    c.set16(off + SRIOV_VF_OFFSET, p.first_vf_offset);
    c.set16(off + SRIOV_VF_STRIDE, p.vf_stride);
    c.set16(off + SRIOV_VF_DID, p.vf_device_id);
    // 4K, 8K, 64K, 256K, 1M, 4M supported; 4K selected.
    c.set32(off + SRIOV_SUP_PGSIZE, 0x553);
    c.set32(off + SRIOV_SYS_PGSIZE, 0x1);
    c.set_wmask32(off + SRIOV_SYS_PGSIZE, 0x553);
    for (i, bar) in p.vf_bars.iter().enumerate() {
        if let Some(def) = bar {
            let ty = if def.kind == BarKind::Mem64 {
                PCI_BAR_MEM_64
            } else {
                0
            } | if def.prefetchable {
                PCI_BAR_PREFETCH
            } else {
                0
            };
            c.declare_bar_regs(off + SRIOV_BAR + 4 * i as u16, *def, ty);
        }
    }
}

/// A snapshot of the capability's guest-programmed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SriovState {
    pub vf_enable: bool,
    pub vf_mse: bool,
    /// NumVFs, clamped to TotalVFs.
    pub num_vfs: u16,
    pub first_vf_offset: u16,
    pub vf_stride: u16,
}

pub fn sriov_state(c: &ConfigSpace, off: u16) -> SriovState {
    let ctrl = c.read16(off + SRIOV_CTRL);
    SriovState {
        vf_enable: ctrl & SRIOV_CTRL_VFE != 0,
        vf_mse: ctrl & SRIOV_CTRL_MSE != 0,
        num_vfs: c
            .read16(off + SRIOV_NUM_VF)
            .min(c.read16(off + SRIOV_TOTAL_VF)),
        first_vf_offset: c.read16(off + SRIOV_VF_OFFSET),
        vf_stride: c.read16(off + SRIOV_VF_STRIDE),
    }
}

/// Base of VF BAR `i` (the region of VF 0); 0 when unprogrammed.
pub fn vf_bar_base(c: &ConfigSpace, off: u16, i: usize, def: &BarDef) -> u64 {
    c.bar_regs_address(off + SRIOV_BAR + 4 * i as u16, def.kind)
}

/// Address of VF `n`'s BAR `i`, or `None` on arithmetic overflow.
pub fn vf_bar_address(c: &ConfigSpace, off: u16, i: usize, def: &BarDef, n: u16) -> Option<u64> {
    vf_bar_base(c, off, i, def).checked_add(def.size.checked_mul(n as u64)?)
}

/// The routing ID of VF `n` (0-based) of a PF at `pf_rid` (SR-IOV 1.1 §3.3.10–11).
pub fn vf_routing_id(pf_rid: u16, s: &SriovState, n: u16) -> u16 {
    pf_rid
        .wrapping_add(s.first_vf_offset)
        .wrapping_add(s.vf_stride.wrapping_mul(n))
}
