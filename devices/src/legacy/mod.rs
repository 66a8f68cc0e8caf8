//! Legacy platform devices: the 16550 serial port and the exit port.
