//! PCI bus 0 behind a host bridge: configuration mechanism #1 (I/O ports 0xcf8 and
//! 0xcfc–0xcff, PCI 3.0 §3.2.2.3.2), ECAM/MMCONFIG (PCIe Base 4.0 §7.2.2) and routing of
//! memory accesses to the BAR that decodes them.
//!
//! The VMM registers three things on its buses and forwards them here with absolute
//! addresses: the ports 0xcf8–0xcff, the ECAM window (`ecam_base`, [`ECAM_BUS0_SIZE`]
//! bytes: bus 0 only) and one PCI MMIO window (see [`PciBus::mmio_window`]) in which the
//! guest (or [`PciBus::assign_bars`]) places BARs. The bus finds the decoding BAR on every
//! access, so BARs move as soon as they are reprogrammed. Unclaimed reads return all ones
//! and unclaimed writes are ignored, as on a PC.

use std::any::Any;
use std::sync::Arc;

use vm_device::bus::{MmioAddress, MmioAddressOffset, PioAddress, PioAddressOffset};
use vm_device::{MutDeviceMmio, MutDevicePio};

use super::host_bridge::HostBridge;
use crate::time::Clock;

/// CONFIG_ADDRESS (32-bit accesses only).
pub const PCI_CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// CONFIG_DATA (0xcfc–0xcff).
pub const PCI_CONFIG_DATA_PORT: u16 = 0xcfc;
/// CONFIG_ADDRESS: enable bit.
pub const PCI_CONFIG_ADDRESS_ENABLE: u32 = 1 << 31;
/// ECAM bytes per bus: 32 devices × 8 functions × 4 KiB.
pub const ECAM_BUS0_SIZE: u64 = 1 << 20;

/// A device on the bus: one or more functions (with SR-IOV, a PF and its VFs).
pub trait PciDevice: Send {
    /// Whether this device answers configuration accesses to routing ID `rid`.
    fn responds_to(&self, rid: u16) -> bool;
    fn config_read(&mut self, rid: u16, offset: u16, len: usize, now: u64) -> u32;
    fn config_write(&mut self, rid: u16, offset: u16, data: &[u8], now: u64);
    /// A memory read; returns false when no BAR of this device decodes `addr`.
    fn mmio_read(&mut self, _addr: u64, _data: &mut [u8], _now: u64) -> bool {
        false
    }
    /// A memory write; returns false when no BAR of this device decodes `addr`.
    fn mmio_write(&mut self, _addr: u64, _data: &[u8], _now: u64) -> bool {
        false
    }
    /// Time passes: fire what was waiting for `now` (interrupt moderation).
    fn poll(&mut self, _now: u64) {}
    /// The earliest time at which `poll` has work, if any.
    fn next_deadline(&self) -> Option<u64> {
        None
    }
    /// Host-side resource assignment (what firmware does): program BARs from `alloc`
    /// (size → aligned address).
    fn assign_bars(&mut self, _alloc: &mut dyn FnMut(u64) -> Option<u64>) {}
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Bus counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BusStats {
    pub unclaimed_mmio: u64,
    pub unclaimed_config: u64,
}

/// Bus 0 with its host bridge.
pub struct PciBus {
    devices: Vec<Box<dyn PciDevice>>,
    config_address: u32,
    ecam_base: u64,
    mmio_window: (u64, u64),
    clock: Arc<dyn Clock>,
    pub stats: BusStats,
}

impl PciBus {
    /// A bus with the host bridge at 00:00.0, ECAM at `ecam_base` and the given PCI MMIO
    /// window `[start, start + len)` for BAR assignment.
    pub fn new(clock: Arc<dyn Clock>, ecam_base: u64, mmio_window: (u64, u64)) -> Self {
        Self {
            devices: vec![Box::new(HostBridge::default())],
            config_address: 0,
            ecam_base,
            mmio_window,
            clock,
            stats: BusStats::default(),
        }
    }

    /// Adds a device; returns its handle for [`PciBus::device_mut`].
    pub fn add_device(&mut self, dev: Box<dyn PciDevice>) -> usize {
        self.devices.push(dev);
        self.devices.len() - 1
    }

    pub fn device<T: 'static>(&self, handle: usize) -> Option<&T> {
        self.devices.get(handle)?.as_any().downcast_ref()
    }

    pub fn device_mut<T: 'static>(&mut self, handle: usize) -> Option<&mut T> {
        self.devices.get_mut(handle)?.as_any_mut().downcast_mut()
    }

    pub fn ecam_base(&self) -> u64 {
        self.ecam_base
    }

    /// The PCI MMIO window `(start, len)` the VMM must forward to [`PciBus::mmio_write`].
    pub fn mmio_window(&self) -> (u64, u64) {
        self.mmio_window
    }

    pub fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    // ---- configuration ----

    pub fn config_read(&mut self, rid: u16, offset: u16, len: usize, now: u64) -> u32 {
        match self.devices.iter_mut().find(|d| d.responds_to(rid)) {
            Some(d) => d.config_read(rid, offset & 0xfff, len, now),
            None => {
                self.stats.unclaimed_config += 1;
                u32::MAX >> (32 - 8 * len.clamp(1, 4))
            }
        }
    }

    pub fn config_write(&mut self, rid: u16, offset: u16, data: &[u8], now: u64) {
        match self.devices.iter_mut().find(|d| d.responds_to(rid)) {
            Some(d) => d.config_write(rid, offset & 0xfff, data, now),
            None => self.stats.unclaimed_config += 1,
        }
    }

    /// Configuration mechanism #1 port read (absolute port number).
    pub fn pio_read_at(&mut self, port: u16, data: &mut [u8], now: u64) {
        data.fill(0xff);
        match port {
            PCI_CONFIG_ADDRESS_PORT if data.len() == 4 => {
                data.copy_from_slice(&self.config_address.to_le_bytes())
            }
            0xcfc..=0xcff => {
                if self.config_address & PCI_CONFIG_ADDRESS_ENABLE == 0 || data.len() > 4 {
                    return;
                }
                let bus = (self.config_address >> 16) as u8;
                if bus != 0 {
                    return;
                }
                let rid = ((self.config_address >> 8) & 0xff) as u16;
                let off = (self.config_address & 0xfc) as u16 + (port - PCI_CONFIG_DATA_PORT);
                let v = self.config_read(rid, off, data.len(), now);
                let n = data.len();
                data.copy_from_slice(&v.to_le_bytes()[..n]);
            }
            _ => {}
        }
    }

    /// Configuration mechanism #1 port write (absolute port number).
    pub fn pio_write_at(&mut self, port: u16, data: &[u8], now: u64) {
        match port {
            PCI_CONFIG_ADDRESS_PORT if data.len() == 4 => {
                // Bits 30:24 are reserved (read as 0), bits 1:0 are fixed 0.
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.config_address = v & 0x80ff_fffc;
            }
            0xcfc..=0xcff => {
                if self.config_address & PCI_CONFIG_ADDRESS_ENABLE == 0 || data.len() > 4 {
                    return;
                }
                if (self.config_address >> 16) as u8 != 0 {
                    return;
                }
                let rid = ((self.config_address >> 8) & 0xff) as u16;
                let off = (self.config_address & 0xfc) as u16 + (port - PCI_CONFIG_DATA_PORT);
                self.config_write(rid, off, data, now);
            }
            _ => {}
        }
    }

    fn ecam_decode(&self, addr: u64) -> Option<(u16, u16)> {
        let o = addr.checked_sub(self.ecam_base)?;
        if o >= ECAM_BUS0_SIZE {
            return None;
        }
        Some((((o >> 12) & 0xff) as u16, (o & 0xfff) as u16))
    }

    // ---- memory ----

    /// A memory read at absolute address `addr` (ECAM or a BAR). Returns false when
    /// nothing claimed it (`data` is then all ones).
    pub fn mmio_read_at(&mut self, addr: u64, data: &mut [u8], now: u64) -> bool {
        if let Some((rid, off)) = self.ecam_decode(addr) {
            data.fill(0xff);
            for (i, chunk) in data.chunks_mut(4).enumerate() {
                let v = self.config_read(rid, off + 4 * i as u16, chunk.len(), now);
                let n = chunk.len();
                chunk.copy_from_slice(&v.to_le_bytes()[..n]);
            }
            return true;
        }
        for d in self.devices.iter_mut() {
            if d.mmio_read(addr, data, now) {
                return true;
            }
        }
        self.stats.unclaimed_mmio += 1;
        tracing::trace!(addr, "unclaimed PCI MMIO read");
        data.fill(0xff);
        false
    }

    /// A memory write at absolute address `addr`. Returns false when nothing claimed it.
    pub fn mmio_write_at(&mut self, addr: u64, data: &[u8], now: u64) -> bool {
        if let Some((rid, off)) = self.ecam_decode(addr) {
            for (i, chunk) in data.chunks(4).enumerate() {
                self.config_write(rid, off + 4 * i as u16, chunk, now);
            }
            return true;
        }
        for d in self.devices.iter_mut() {
            if d.mmio_write(addr, data, now) {
                return true;
            }
        }
        self.stats.unclaimed_mmio += 1;
        tracing::trace!(addr, "unclaimed PCI MMIO write");
        false
    }

    /// Fires everything due at `now` (EITR-moderated interrupts).
    pub fn poll(&mut self, now: u64) {
        for d in self.devices.iter_mut() {
            d.poll(now);
        }
    }

    /// The earliest deadline at which the VMM must call [`PciBus::poll`].
    pub fn next_deadline(&self) -> Option<u64> {
        self.devices.iter().filter_map(|d| d.next_deadline()).min()
    }

    /// Programs every device's BARs inside the MMIO window, naturally aligned, as
    /// firmware would (the guest may move them later). Returns false if the window is
    /// too small.
    pub fn assign_bars(&mut self) -> bool {
        let (start, len) = self.mmio_window;
        let end = start.saturating_add(len);
        let mut next = start;
        let mut ok = true;
        let mut alloc = |size: u64| -> Option<u64> {
            let size = size.max(16);
            let base = next.checked_add(size - 1)? & !(size - 1);
            let top = base.checked_add(size)?;
            if top > end {
                ok = false;
                return None;
            }
            next = top;
            Some(base)
        };
        for d in self.devices.iter_mut() {
            d.assign_bars(&mut alloc);
        }
        ok
    }
}

impl MutDevicePio for PciBus {
    fn pio_read(&mut self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let now = self.now();
        self.pio_read_at(base.0.wrapping_add(offset), data, now)
    }
    fn pio_write(&mut self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let now = self.now();
        self.pio_write_at(base.0.wrapping_add(offset), data, now)
    }
}

impl MutDeviceMmio for PciBus {
    fn mmio_read(&mut self, base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        let now = self.now();
        self.mmio_read_at(base.0.wrapping_add(offset), data, now);
    }
    fn mmio_write(&mut self, base: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        let now = self.now();
        self.mmio_write_at(base.0.wrapping_add(offset), data, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ManualClock;

    fn bus() -> PciBus {
        PciBus::new(
            Arc::new(ManualClock::default()),
            0xe000_0000,
            (0xc000_0000, 0x2000_0000),
        )
    }

    #[test]
    fn mechanism1_reads_host_bridge_and_empty_slots() {
        let mut b = bus();
        b.pio_write_at(0xcf8, &0x8000_0000u32.to_le_bytes(), 0);
        let mut d = [0u8; 4];
        b.pio_read_at(0xcfc, &mut d, 0);
        assert_eq!(u32::from_le_bytes(d), 0x29c0_8086);
        let mut w = [0u8; 2];
        b.pio_read_at(0xcfe, &mut w, 0);
        assert_eq!(u16::from_le_bytes(w), 0x29c0);
        b.pio_write_at(0xcf8, &0x8000_0800u32.to_le_bytes(), 0);
        b.pio_read_at(0xcfc, &mut d, 0);
        assert_eq!(d, [0xff; 4]);
        // Enable bit clear: no configuration cycle.
        b.pio_write_at(0xcf8, &0x0000_0000u32.to_le_bytes(), 0);
        b.pio_read_at(0xcfc, &mut d, 0);
        assert_eq!(d, [0xff; 4]);
        let mut a = [0u8; 4];
        b.pio_read_at(0xcf8, &mut a, 0);
        assert_eq!(a, [0; 4]);
    }

    #[test]
    fn ecam_reads_and_unclaimed_mmio() {
        let mut b = bus();
        let mut d = [0u8; 4];
        assert!(b.mmio_read_at(0xe000_0008, &mut d, 0));
        assert_eq!(u32::from_le_bytes(d) >> 8, 0x06_00_00);
        assert!(b.mmio_read_at(0xe000_8000, &mut d, 0));
        assert_eq!(d, [0xff; 4]);
        assert!(!b.mmio_read_at(0xc000_0000, &mut d, 0));
        assert_eq!(d, [0xff; 4]);
        assert!(!b.mmio_write_at(0xc000_0000, &d, 0));
        assert_eq!(b.stats.unclaimed_mmio, 2);
    }
}
