//! A 16550A UART on the PIO bus, built on vm-superio's `Serial`.
//!
//! The UART's registers are byte-wide; a wider access from the guest is split into byte
//! accesses at consecutive offsets, as the ISA bus does.

use std::io::Write;
use std::sync::Mutex;

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;
use vm_superio::{Serial, Trigger};

/// I/O base of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// Number of UART registers.
pub const COM1_LEN: u16 = 8;

/// A serial port whose interrupt line is `T` and whose transmitter writes to `W`.
pub struct SerialPort<T: Trigger, W: Write> {
    uart: Mutex<Serial<T, vm_superio::serial::NoEvents, W>>,
}

impl<T: Trigger, W: Write> SerialPort<T, W> {
    pub fn new(trigger: T, out: W) -> Self {
        Self {
            uart: Mutex::new(Serial::new(trigger, out)),
        }
    }

    /// Flushes the transmitter's output.
    pub fn flush(&self) {
        let mut uart = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        let _ = uart.writer_mut().flush();
    }

    /// Runs `f` on the output writer (tests read what the guest printed).
    pub fn with_writer<R>(&self, f: impl FnOnce(&W) -> R) -> R {
        let uart = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        f(uart.writer())
    }
}

impl<T: Trigger, W: Write> DevicePio for SerialPort<T, W> {
    fn pio_read(&self, _base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let mut uart = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        for (i, byte) in data.iter_mut().enumerate() {
            let reg = u64::from(offset) + i as u64;
            *byte = if reg < u64::from(COM1_LEN) {
                uart.read(reg as u8)
            } else {
                0xff
            };
        }
    }

    fn pio_write(&self, _base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let mut uart = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        for (i, byte) in data.iter().enumerate() {
            let reg = u64::from(offset) + i as u64;
            if reg < u64::from(COM1_LEN) {
                if let Err(e) = uart.write(reg as u8, *byte) {
                    tracing::warn!(?e, "serial write failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_device::bus::PioAddress;

    struct NoIrq;
    impl Trigger for NoIrq {
        type E = ();
        fn trigger(&self) -> Result<(), ()> {
            Ok(())
        }
    }

    #[test]
    fn transmit_holding_register_writes_output() {
        let port = SerialPort::new(NoIrq, Vec::new());
        let base = PioAddress(COM1_BASE);
        port.pio_write(base, 0, b"h");
        port.pio_write(base, 0, b"i");
        assert_eq!(port.with_writer(|w| w.clone()), b"hi");
        // LSR (offset 5): THR empty and transmitter empty bits are set.
        let mut lsr = [0u8];
        port.pio_read(base, 5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60);
        // Beyond the eight registers: reads float high, writes are ignored.
        let mut wide = [0u8; 4];
        port.pio_read(base, 6, &mut wide);
        assert_eq!(&wide[2..], &[0xff, 0xff]);
    }
}
