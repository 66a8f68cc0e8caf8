//! The PCI side of the machine: the host bridge with configuration mechanism #1 and ECAM,
//! and the 82576-compatible NIC at 00:01.0 whose VFs the guest (or `--vfs N`) enables.
//! The bus model routes MMIO by BAR; a poll thread serves its EITR deadlines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use devices::nic::{Nic82576, NicConfig};
use devices::pci::PciBus;
use devices::{Clock, GuestDma, IdentityTranslator, MonotonicClock};
use vm_device::bus::{MmioAddress, MmioAddressOffset, PioAddress, PioAddressOffset};
use vm_device::{DeviceMmio, DevicePio, MutDeviceMmio, MutDevicePio};
use vm_memory::GuestMemoryMmap;

use crate::error::{Error, Result};
use crate::fabric::Fabric;

/// ECAM (MMCONFIG) base: bus 0 only, 1 MiB.
pub const ECAM_BASE: u64 = 0xe000_0000;
pub const ECAM_SIZE: u64 = 1 << 20;
/// The window BARs are placed in: 0xc0000000–0xcfffffff.
pub const MMIO_WINDOW: (u64, u64) = (0xc000_0000, 0x1000_0000);
/// Configuration mechanism #1: CONFIG_ADDRESS 0xcf8, CONFIG_DATA 0xcfc–0xcff.
pub const CONFIG_PORTS: u16 = 0xcf8;
pub const CONFIG_PORTS_LEN: u16 = 8;
/// The NIC's device number on bus 0 and its permanent MAC address.
pub const NIC_DEVICE: u8 = 1;
pub const NIC_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// The PCI bus, shared by the exit path and the poll thread. Accesses wake the poll
/// thread, since they may arm an earlier deadline.
pub struct Pci {
    bus: Mutex<PciBus>,
    clock: Arc<MonotonicClock>,
    changed: Condvar,
    stopping: AtomicBool,
}

impl Pci {
    /// Builds the bus with the NIC; `vfs` VFs are enabled as a PF driver would (with the
    /// built-in PF agent answering their mailboxes).
    pub fn new(memory: &GuestMemoryMmap, fabric: Arc<Fabric>, vfs: u16) -> Result<Arc<Self>> {
        let clock = Arc::new(MonotonicClock::default());
        let mut bus = PciBus::new(clock.clone(), ECAM_BASE, MMIO_WINDOW);
        let dma = Arc::new(GuestDma::new(Arc::new(memory.clone()), IdentityTranslator));
        let nic = Nic82576::new(NicConfig::new(NIC_DEVICE, NIC_MAC), dma, fabric)
            .map_err(|e| Error::Internal(format!("NIC: {e:?}")))?;
        let handle = bus.add_device(Box::new(nic));
        if !bus.assign_bars() {
            return Err(Error::Internal(
                "PCI BARs do not fit the MMIO window".into(),
            ));
        }
        if vfs > 0 {
            let now = clock.now_ns();
            bus.device_mut::<Nic82576>(handle)
                .expect("the NIC was just added")
                .host_enable_vfs(vfs, now)
                .map_err(|e| Error::BadConfig(format!("--vfs {vfs}: {e:?}")))?;
        }
        Ok(Arc::new(Self {
            bus: Mutex::new(bus),
            clock,
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        }))
    }

    fn bus(&self) -> std::sync::MutexGuard<'_, PciBus> {
        self.bus.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The poll thread: calls `PciBus::poll` at each deadline the bus reports.
    pub fn run_poll(&self) {
        let mut bus = self.bus();
        while !self.stopping.load(Ordering::SeqCst) {
            let now = self.clock.now_ns();
            let wait = match bus.next_deadline() {
                Some(d) if d <= now => {
                    bus.poll(now);
                    continue;
                }
                Some(d) => Duration::from_nanos(d - now),
                None => Duration::from_millis(100),
            };
            bus = self
                .changed
                .wait_timeout(bus, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }
}

/// Config ports, ECAM and the BAR window, on the VMM's buses.
pub struct PciPorts(pub Arc<Pci>);

impl DevicePio for PciPorts {
    fn pio_read(&self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        self.0.bus().pio_read(base, offset, data);
    }
    fn pio_write(&self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        self.0.bus().pio_write(base, offset, data);
        self.0.changed.notify_all();
    }
}

impl DeviceMmio for PciPorts {
    fn mmio_read(&self, base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        self.0.bus().mmio_read(base, offset, data);
    }
    fn mmio_write(&self, base: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        self.0.bus().mmio_write(base, offset, data);
        self.0.changed.notify_all();
    }
}

impl devices::InterruptSink for Fabric {
    fn send_msi(&self, msg: apic::MsiMessage) {
        Fabric::send_msi(self, msg);
    }
}
