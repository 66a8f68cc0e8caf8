//! Builders for the simple capabilities: Power Management (PCI PM 1.2 §3.2), MSI (PCI 3.0
//! §6.8.1), PCI Express (PCIe Base 4.0 §7.5.3), AER (§7.8.4) and ARI (§7.8.7).

use super::config::*;

/// PM capability: PMC at +2, PMCSR at +4 (power state bits 1:0 writable).
pub const PM_CAP_LEN: u16 = 8;
pub const PM_PMC: u16 = 2;
pub const PM_PMCSR: u16 = 4;

/// MSI capability, 64-bit with per-vector masking: control +2, address +4/+8, data +0xc,
/// mask +0x10, pending +0x14.
pub const MSI_CAP_LEN: u16 = 0x18;
pub const MSI_CONTROL: u16 = 2;
pub const MSI_ADDRESS_LO: u16 = 4;
pub const MSI_ADDRESS_HI: u16 = 8;
pub const MSI_DATA: u16 = 0xc;
pub const MSI_MASK: u16 = 0x10;
pub const MSI_PENDING: u16 = 0x14;
/// MSI control: enable.
pub const MSI_CONTROL_ENABLE: u16 = 1 << 0;
/// MSI control: 64-bit address capable.
pub const MSI_CONTROL_64BIT: u16 = 1 << 7;
/// MSI control: per-vector masking capable.
pub const MSI_CONTROL_PVM: u16 = 1 << 8;

/// PCI Express capability (version 2, endpoint) registers.
pub const EXP_CAP_LEN: u16 = 0x3c;
pub const EXP_FLAGS: u16 = 0x2;
pub const EXP_DEVCAP: u16 = 0x4;
pub const EXP_DEVCTL: u16 = 0x8;
pub const EXP_DEVSTA: u16 = 0xa;
pub const EXP_LNKCAP: u16 = 0xc;
pub const EXP_LNKCTL: u16 = 0x10;
pub const EXP_LNKSTA: u16 = 0x12;
pub const EXP_DEVCAP2: u16 = 0x24;
pub const EXP_DEVCTL2: u16 = 0x28;
/// Device Capabilities: Function-Level Reset capable (bit 28).
pub const EXP_DEVCAP_FLR: u32 = 1 << 28;
/// Device Control: Initiate Function-Level Reset (bit 15, always reads 0).
pub const EXP_DEVCTL_BCR_FLR: u16 = 1 << 15;

/// AER extended capability registers.
pub const AER_CAP_LEN: u16 = 0x48;
pub const AER_UNCOR_STATUS: u16 = 0x4;
pub const AER_UNCOR_MASK: u16 = 0x8;
pub const AER_UNCOR_SEVER: u16 = 0xc;
pub const AER_COR_STATUS: u16 = 0x10;
pub const AER_COR_MASK: u16 = 0x14;
pub const AER_CAP_CTRL: u16 = 0x18;

/// ARI extended capability registers.
pub const ARI_CAP_LEN: u16 = 8;
pub const ARI_CAP: u16 = 4;
pub const ARI_CTRL: u16 = 6;

pub fn add_pm(c: &mut ConfigSpace, off: u16) {
    c.add_capability(off, PCI_CAP_ID_PM, PM_CAP_LEN);
    // Version 3 (PCI PM 1.2), D0/D3hot only.
    c.set16(off + PM_PMC, 0x0003);
    c.set_wmask16(off + PM_PMCSR, 0x0003);
}

/// Adds a 64-bit MSI capability with per-vector masking and one message.
pub fn add_msi(c: &mut ConfigSpace, off: u16) {
    c.add_capability(off, PCI_CAP_ID_MSI, MSI_CAP_LEN);
    c.set16(off + MSI_CONTROL, MSI_CONTROL_64BIT | MSI_CONTROL_PVM);
    c.set_wmask16(off + MSI_CONTROL, MSI_CONTROL_ENABLE | (0b111 << 4));
    c.set_wmask32(off + MSI_ADDRESS_LO, !3);
    c.set_wmask32(off + MSI_ADDRESS_HI, !0);
    c.set_wmask16(off + MSI_DATA, !0);
    c.set_wmask32(off + MSI_MASK, 1);
}

/// State of an MSI capability as seen by the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiState {
    pub enabled: bool,
    pub masked: bool,
    pub address: u64,
    pub data: u32,
}

pub fn msi_state(c: &ConfigSpace, off: u16) -> MsiState {
    MsiState {
        enabled: c.read16(off + MSI_CONTROL) & MSI_CONTROL_ENABLE != 0,
        masked: c.read32(off + MSI_MASK) & 1 != 0,
        address: c.read32(off + MSI_ADDRESS_LO) as u64
            | ((c.read32(off + MSI_ADDRESS_HI) as u64) << 32),
        data: c.read16(off + MSI_DATA) as u32,
    }
}

/// Sets or clears the MSI pending bit (read-only to software).
pub fn msi_set_pending(c: &mut ConfigSpace, off: u16, pending: bool) {
    c.set32(off + MSI_PENDING, pending as u32);
}

pub fn msi_pending(c: &ConfigSpace, off: u16) -> bool {
    c.read32(off + MSI_PENDING) & 1 != 0
}

/// Adds a PCIe v2 endpoint capability: 512-byte max payload, FLR capable, x4 2.5 GT/s
/// link (the 82576's).
pub fn add_pcie_endpoint(c: &mut ConfigSpace, off: u16, flr: bool) {
    c.add_capability(off, PCI_CAP_ID_EXP, EXP_CAP_LEN);
    c.set16(off + EXP_FLAGS, 0x0002);
    c.set32(off + EXP_DEVCAP, 0x2 | if flr { EXP_DEVCAP_FLR } else { 0 });
    // Error reporting enables, relaxed ordering, max payload/read size, no snoop,
    // aux power. Bit 15 (initiate FLR) is handled by the owner and never stored.
    c.set_wmask16(off + EXP_DEVCTL, 0x7fff);
    c.set16(off + EXP_DEVCTL, 0x2810);
    c.set_w1cmask16(off + EXP_DEVSTA, 0x000f);
    c.set32(off + EXP_LNKCAP, 0x0000_0041 | (1 << 10));
    c.set_wmask16(off + EXP_LNKCTL, 0x01c3);
    c.set16(off + EXP_LNKSTA, 0x1041);
    // Completion timeout ranges A/B, disable supported.
    c.set32(off + EXP_DEVCAP2, 0x1f);
    c.set_wmask16(off + EXP_DEVCTL2, 0x001f);
}

pub fn add_aer(c: &mut ConfigSpace, off: u16) {
    c.add_ext_capability(off, PCI_EXT_CAP_ID_AER, 1, AER_CAP_LEN);
    c.set_w1cmask32(off + AER_UNCOR_STATUS, 0x003f_f030);
    c.set_wmask32(off + AER_UNCOR_MASK, 0x003f_f030);
    c.set_wmask32(off + AER_UNCOR_SEVER, 0x003f_f030);
    c.set32(off + AER_UNCOR_SEVER, 0x0006_2030);
    c.set_w1cmask32(off + AER_COR_STATUS, 0x0000_31c1);
    c.set_wmask32(off + AER_COR_MASK, 0x0000_31c1);
    c.set32(off + AER_COR_MASK, 0x0000_2000);
    c.set_wmask32(off + AER_CAP_CTRL, 0x0000_0140);
}

/// ARI capability; `next_function` is the next function number in the device (0: last).
pub fn add_ari(c: &mut ConfigSpace, off: u16, next_function: u8) {
    c.add_ext_capability(off, PCI_EXT_CAP_ID_ARI, 1, ARI_CAP_LEN);
    c.set16(off + ARI_CAP, (next_function as u16) << 8);
}
