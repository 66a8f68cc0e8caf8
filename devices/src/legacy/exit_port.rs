//! The exit port: a write of `v` ends the VM with exit status `(v << 1) | 1`, as QEMU's
//! `isa-debug-exit` device does, so test guests can report pass or fail to the host.

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;

/// The port test guests write to.
pub const EXIT_PORT_BASE: u16 = 0xf4;
/// The port's width: one 32-bit register.
pub const EXIT_PORT_LEN: u16 = 4;

/// Receives the exit status the guest asked for. The VMM implements it to stop the VM.
pub trait ExitRequest {
    fn request_exit(&self, status: u32);
}

/// The exit port device.
pub struct ExitPort<E: ExitRequest> {
    handler: E,
}

impl<E: ExitRequest> ExitPort<E> {
    pub fn new(handler: E) -> Self {
        Self { handler }
    }

    /// The exit status a written value requests.
    pub const fn status_for(value: u32) -> u32 {
        (value << 1) | 1
    }
}

impl<E: ExitRequest> DevicePio for ExitPort<E> {
    fn pio_read(&self, _base: PioAddress, _offset: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xff);
    }

    /// A write of 1, 2 or 4 bytes at the port's base is zero-extended to 32 bits.
    fn pio_write(&self, _base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        if offset != 0 || data.is_empty() || data.len() > 4 {
            tracing::debug!(offset, len = data.len(), "exit port: ignored access");
            return;
        }
        let mut bytes = [0u8; 4];
        bytes[..data.len()].copy_from_slice(data);
        let value = u32::from_le_bytes(bytes);
        tracing::info!(value, status = Self::status_for(value), "exit port written");
        self.handler.request_exit(Self::status_for(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Recorder(Arc<AtomicU32>);
    impl ExitRequest for Recorder {
        fn request_exit(&self, status: u32) {
            self.0.store(status, Ordering::SeqCst);
        }
    }

    #[test]
    fn write_encodes_status_like_isa_debug_exit() {
        let rec = Recorder::default();
        let port = ExitPort::new(rec.clone());
        port.pio_write(PioAddress(EXIT_PORT_BASE), 0, &0x10u32.to_le_bytes());
        assert_eq!(rec.0.load(Ordering::SeqCst), 0x21);
        port.pio_write(PioAddress(EXIT_PORT_BASE), 0, &[0]);
        assert_eq!(rec.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn misplaced_writes_are_ignored() {
        let rec = Recorder::default();
        let port = ExitPort::new(rec.clone());
        port.pio_write(PioAddress(EXIT_PORT_BASE), 2, &[5, 0]);
        assert_eq!(rec.0.load(Ordering::SeqCst), 0);
    }
}
