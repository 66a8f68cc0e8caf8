//! Legacy platform devices: the 16550 serial port and the exit port.

pub mod exit_port;
pub mod serial;

pub use exit_port::{ExitPort, ExitRequest, EXIT_PORT_BASE};
pub use serial::{SerialPort, COM1_BASE, COM1_LEN};
