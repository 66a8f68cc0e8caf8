//! The VMM's MSI test device (port 0x5f0): raise an MSI with any address, data and
//! requester ID, as a PCI function would.

use crate::arch::{outl, outw};

const BASE: u16 = 0x5f0;

pub fn send_msi(address: u64, data: u32, requester_id: u16, count: u16) {
    outl(BASE, address as u32);
    outl(BASE + 4, (address >> 32) as u32);
    outl(BASE + 8, data);
    outw(BASE + 0xc, requester_id);
    outw(BASE + 0xe, count);
}

/// Sends the MSI programmed by the last `send_msi` again, `count` times: one port write.
pub fn fire(count: u16) {
    outw(BASE + 0xe, count);
}

/// Asks the VMM to snapshot its counters, labelled `label` (benchmark phases).
pub fn mark(label: u32) {
    outl(BASE + 0x10, label);
}
