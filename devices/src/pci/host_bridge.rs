//! The host bridge at 00:00.0: a type-0 header with class 06/00/00 (PCI 3.0 Appendix D)
//! and no BARs, so that enumeration finds a root.

use std::any::Any;

use super::bus::PciDevice;
use super::config::ConfigSpace;

/// Intel 82G33/Q35 DRAM controller, the host bridge PC guests know.
pub const HOST_BRIDGE_DEVICE_ID: u16 = 0x29c0;

#[derive(Debug)]
pub struct HostBridge {
    cfg: ConfigSpace,
}

impl Default for HostBridge {
    fn default() -> Self {
        Self {
            cfg: ConfigSpace::new(0x8086, HOST_BRIDGE_DEVICE_ID, 0x06_00_00, 0),
        }
    }
}

impl PciDevice for HostBridge {
    fn responds_to(&self, rid: u16) -> bool {
        rid == 0
    }
    fn config_read(&mut self, _rid: u16, offset: u16, len: usize, _now: u64) -> u32 {
        self.cfg.read(offset, len)
    }
    fn config_write(&mut self, _rid: u16, offset: u16, data: &[u8], _now: u64) {
        self.cfg.write(offset, data)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
