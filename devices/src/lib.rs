//! The device end of Postbox's interrupt delivery path: PCI(e), MSI-X, SR-IOV and the
//! 82576-compatible NIC, plus the legacy platform devices (serial, exit port).

pub mod legacy;
