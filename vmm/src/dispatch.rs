//! The one dispatch path for the guest's port I/O, MMIO and MSR exits.
//!
//! Shared devices sit on vm-device's PIO and MMIO buses; devices that exist once per vCPU
//! (the local APIC) and MSRs plug in through [`VcpuDevices`]. An access nobody claims
//! behaves as on a PC: reads return all-ones, writes vanish, and the access is traced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vm_device::bus::{MmioAddress, PioAddress};
use vm_device::device_manager::{IoManager, MmioManager, PioManager};

/// Result of an MSR access a handler claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrResult {
    /// Read value (for writes, ignored).
    Ok(u64),
    /// The access raises #GP in the guest.
    GeneralProtection,
}

/// Per-vCPU devices and MSRs. Each method returns `None` when it does not claim the access.
pub trait VcpuDevices: Send + Sync {
    fn mmio_read(&self, _vcpu: usize, _addr: u64, _data: &mut [u8]) -> Option<()> {
        None
    }
    fn mmio_write(&self, _vcpu: usize, _addr: u64, _data: &[u8]) -> Option<()> {
        None
    }
    fn rdmsr(&self, _vcpu: usize, _msr: u32) -> Option<MsrResult> {
        None
    }
    fn wrmsr(&self, _vcpu: usize, _msr: u32, _value: u64) -> Option<MsrResult> {
        None
    }
}

/// Exit counters, printable at the end of a run.
#[derive(Debug, Default)]
pub struct ExitCounters {
    pub pio: AtomicU64,
    pub mmio: AtomicU64,
    pub msr: AtomicU64,
    pub hlt: AtomicU64,
    pub unclaimed: AtomicU64,
    pub interrupted: AtomicU64,
    pub other: AtomicU64,
}

impl ExitCounters {
    pub fn total(&self) -> u64 {
        [
            &self.pio,
            &self.mmio,
            &self.msr,
            &self.hlt,
            &self.interrupted,
            &self.other,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "exits: {} total (pio {}, mmio {}, msr {}, hlt {}, kicked {}, other {}); unclaimed accesses {}",
            self.total(),
            g(&self.pio),
            g(&self.mmio),
            g(&self.msr),
            g(&self.hlt),
            g(&self.interrupted),
            g(&self.other),
            g(&self.unclaimed)
        )
    }
}

/// Routes exits to devices.
pub struct Dispatcher {
    pub io: IoManager,
    pub per_vcpu: Vec<Arc<dyn VcpuDevices>>,
    pub counters: Arc<ExitCounters>,
}

impl Dispatcher {
    pub fn new(io: IoManager) -> Self {
        Self {
            io,
            per_vcpu: Vec::new(),
            counters: Arc::new(ExitCounters::default()),
        }
    }

    fn unclaimed(&self, kind: &'static str, vcpu: usize, addr: u64, len: usize, write: bool) {
        self.counters.unclaimed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            kind,
            vcpu,
            addr = format_args!("{addr:#x}"),
            len,
            write,
            "unclaimed access"
        );
    }

    pub fn pio_read(&self, vcpu: usize, port: u16, data: &mut [u8]) {
        self.counters.pio.fetch_add(1, Ordering::Relaxed);
        if self.io.pio_read(PioAddress(port), data).is_err() {
            data.fill(0xff);
            self.unclaimed("pio", vcpu, port.into(), data.len(), false);
        }
    }

    pub fn pio_write(&self, vcpu: usize, port: u16, data: &[u8]) {
        self.counters.pio.fetch_add(1, Ordering::Relaxed);
        if self.io.pio_write(PioAddress(port), data).is_err() {
            self.unclaimed("pio", vcpu, port.into(), data.len(), true);
        }
    }

    pub fn mmio_read(&self, vcpu: usize, addr: u64, data: &mut [u8]) {
        self.counters.mmio.fetch_add(1, Ordering::Relaxed);
        if self
            .per_vcpu
            .iter()
            .any(|d| d.mmio_read(vcpu, addr, data).is_some())
        {
            return;
        }
        if self.io.mmio_read(MmioAddress(addr), data).is_err() {
            data.fill(0xff);
            self.unclaimed("mmio", vcpu, addr, data.len(), false);
        }
    }

    pub fn mmio_write(&self, vcpu: usize, addr: u64, data: &[u8]) {
        self.counters.mmio.fetch_add(1, Ordering::Relaxed);
        if self
            .per_vcpu
            .iter()
            .any(|d| d.mmio_write(vcpu, addr, data).is_some())
        {
            return;
        }
        if self.io.mmio_write(MmioAddress(addr), data).is_err() {
            self.unclaimed("mmio", vcpu, addr, data.len(), true);
        }
    }

    /// An MSR nobody claims raises #GP, as an unimplemented MSR does on hardware.
    pub fn rdmsr(&self, vcpu: usize, msr: u32) -> MsrResult {
        self.counters.msr.fetch_add(1, Ordering::Relaxed);
        self.per_vcpu
            .iter()
            .find_map(|d| d.rdmsr(vcpu, msr))
            .unwrap_or_else(|| {
                self.unclaimed("msr", vcpu, msr.into(), 8, false);
                MsrResult::GeneralProtection
            })
    }

    pub fn wrmsr(&self, vcpu: usize, msr: u32, value: u64) -> MsrResult {
        self.counters.msr.fetch_add(1, Ordering::Relaxed);
        self.per_vcpu
            .iter()
            .find_map(|d| d.wrmsr(vcpu, msr, value))
            .unwrap_or_else(|| {
                self.unclaimed("msr", vcpu, msr.into(), 8, true);
                MsrResult::GeneralProtection
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_device::bus::{PioAddressOffset, PioRange};
    use vm_device::DevicePio;

    struct Answer;
    impl DevicePio for Answer {
        fn pio_read(&self, _b: PioAddress, _o: PioAddressOffset, data: &mut [u8]) {
            data.fill(0x42);
        }
        fn pio_write(&self, _b: PioAddress, _o: PioAddressOffset, _data: &[u8]) {}
    }

    struct OneMsr;
    impl VcpuDevices for OneMsr {
        fn rdmsr(&self, vcpu: usize, msr: u32) -> Option<MsrResult> {
            (msr == 0x10).then_some(MsrResult::Ok(vcpu as u64))
        }
    }

    #[test]
    fn unclaimed_accesses_float_high_and_are_counted() {
        let mut io = IoManager::new();
        io.register_pio(
            PioRange::new(PioAddress(0x60), 1).unwrap(),
            Arc::new(Answer),
        )
        .unwrap();
        let mut d = Dispatcher::new(io);
        d.per_vcpu.push(Arc::new(OneMsr));
        let mut b = [0u8; 1];
        d.pio_read(0, 0x60, &mut b);
        assert_eq!(b, [0x42]);
        let mut w = [0u8; 4];
        d.pio_read(0, 0x61, &mut w);
        assert_eq!(w, [0xff; 4]);
        d.mmio_write(0, 0xfebf_0000, &[1, 2, 3, 4]);
        d.mmio_read(0, 0xfebf_0000, &mut w);
        assert_eq!(w, [0xff; 4]);
        assert_eq!(d.rdmsr(3, 0x10), MsrResult::Ok(3));
        assert_eq!(d.rdmsr(0, 0x11), MsrResult::GeneralProtection);
        assert_eq!(d.counters.unclaimed.load(Ordering::Relaxed), 4);
        assert_eq!(d.counters.total(), 6);
    }
}
