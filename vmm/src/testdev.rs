//! The Postbox MSI test device: lets a test guest raise an arbitrary MSI write — address,
//! data and requester ID of its choosing — through the interrupt fabric, so that interrupt
//! remapping, posting and faults can be tested without a PCI device (in the spirit of
//! QEMU's pci-testdev). Port I/O at [`TESTDEV_BASE`]:
//!
//! | offset | width | register                                             |
//! |--------|-------|------------------------------------------------------|
//! | 0x0    | 32    | MSI address, low                                     |
//! | 0x4    | 32    | MSI address, high                                    |
//! | 0x8    | 32    | MSI data                                             |
//! | 0xc    | 16    | requester ID (bus << 8 \| device << 3 \| function)    |
//! | 0xe    | 16    | write n: send the MSI n times                        |
//! | 0x10   | 32    | write v: the VMM snapshots its counters, labelled v  |
//!
//! It is a VMM test fixture, not a model of real hardware.

use std::sync::{Arc, Mutex};

use apic::MsiMessage;
use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;

use crate::fabric::Fabric;

pub const TESTDEV_BASE: u16 = 0x5f0;
pub const TESTDEV_LEN: u16 = 0x14;
const REG_ADDR_LO: u16 = 0x0;
const REG_ADDR_HI: u16 = 0x4;
const REG_DATA: u16 = 0x8;
const REG_RID: u16 = 0xc;
const REG_SEND: u16 = 0xe;
const REG_MARK: u16 = 0x10;
/// Most MSIs one write sends.
const MAX_BURST: u16 = 4096;

/// Called with the label of a mark write.
pub type MarkFn = Box<dyn Fn(u32) + Send + Sync>;

pub struct MsiTestDevice {
    regs: Mutex<[u8; REG_MARK as usize]>,
    fabric: Arc<Fabric>,
    mark: MarkFn,
}

impl MsiTestDevice {
    pub fn new(fabric: Arc<Fabric>, mark: MarkFn) -> Self {
        Self {
            regs: Mutex::new([0; REG_MARK as usize]),
            fabric,
            mark,
        }
    }
}

impl DevicePio for MsiTestDevice {
    fn pio_read(&self, _base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
        for (i, b) in data.iter_mut().enumerate() {
            *b = regs.get(usize::from(offset) + i).copied().unwrap_or(0xff);
        }
    }

    fn pio_write(&self, _base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        if offset == REG_MARK && data.len() == 4 {
            (self.mark)(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
            return;
        }
        if offset == REG_SEND && data.len() == 2 {
            let count = u16::from_le_bytes([data[0], data[1]]).min(MAX_BURST);
            let msg = {
                let r = self.regs.lock().unwrap_or_else(|e| e.into_inner());
                let u32_at = |o: u16| {
                    u32::from_le_bytes(r[usize::from(o)..usize::from(o) + 4].try_into().unwrap())
                };
                MsiMessage::new(
                    u16::from_le_bytes([r[usize::from(REG_RID)], r[usize::from(REG_RID) + 1]]),
                    u64::from(u32_at(REG_ADDR_LO)) | (u64::from(u32_at(REG_ADDR_HI)) << 32),
                    u32_at(REG_DATA),
                )
            };
            for _ in 0..count {
                self.fabric.send_msi(msg);
            }
            return;
        }
        let mut regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
        for (i, b) in data.iter().enumerate() {
            if let Some(r) = regs.get_mut(usize::from(offset) + i) {
                if usize::from(offset) + i < usize::from(REG_SEND) {
                    *r = *b;
                }
            }
        }
    }
}
