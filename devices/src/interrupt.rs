//! The seam between devices and the interrupt fabric.
//!
//! A device raises an MSI or MSI-X vector by handing the message it would write on the
//! bus — address, data and its requester ID (PCIe routing ID, bus/device/function) — to an
//! [`InterruptSink`]. In the VMM the sink is the interrupt fabric (IOMMU interrupt
//! remapping, posting, the virtual APIC); in unit tests it is a [`RecordingSink`].

use std::sync::{Arc, Mutex};

use apic::MsiMessage;

/// Receives the MSI/MSI-X memory writes that devices emit (PCI Local Bus 3.0 §6.8; PCIe
/// Base 4.0 §6.1.4: an MSI is a posted memory write carrying the requester ID).
pub trait InterruptSink: Send + Sync {
    /// Delivers one message. Must not call back into the device.
    fn send_msi(&self, msg: MsiMessage);
}

impl<T: InterruptSink + ?Sized> InterruptSink for Arc<T> {
    fn send_msi(&self, msg: MsiMessage) {
        (**self).send_msi(msg)
    }
}

/// A sink that records every message, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct RecordingSink {
    messages: Mutex<Vec<MsiMessage>>,
}

impl RecordingSink {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Removes and returns the messages received so far.
    pub fn take(&self) -> Vec<MsiMessage> {
        std::mem::take(&mut *self.lock())
    }

    /// Number of messages received and not yet taken.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<MsiMessage>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InterruptSink for RecordingSink {
    fn send_msi(&self, msg: MsiMessage) {
        self.lock().push(msg);
    }
}

/// A sink that counts and drops messages (benchmarks).
#[derive(Debug, Default)]
pub struct CountingSink {
    count: std::sync::atomic::AtomicU64,
}

impl CountingSink {
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl InterruptSink for CountingSink {
    fn send_msi(&self, _msg: MsiMessage) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}
