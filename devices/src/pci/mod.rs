//! PCI(e): configuration spaces, capabilities, MSI-X, SR-IOV and the bus with its host
//! bridge (configuration mechanism #1 and ECAM) and BAR-routed MMIO dispatch.

pub mod bus;
pub mod caps;
pub mod config;
pub mod host_bridge;
pub mod msix;
pub mod sriov;

pub use bus::{PciBus, PciDevice, ECAM_BUS0_SIZE, PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_DATA_PORT};
pub use config::ConfigSpace;

/// A routing ID (PCIe requester ID): bus 15:8, device 7:3, function 2:0.
pub const fn routing_id(bus: u8, device: u8, function: u8) -> u16 {
    ((bus as u16) << 8) | (((device & 0x1f) as u16) << 3) | (function & 7) as u16
}
