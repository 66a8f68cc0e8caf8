//! Output on COM1 (0x3f8). Works at CPL3 (IOPL=3) through `print!`, and at CPL0 through
//! the formatting-free `raw_*` functions.

use core::fmt;

use crate::arch::outb;

pub const COM1: u16 = 0x3f8;

pub fn write_byte(b: u8) {
    outb(COM1, b);
}

pub fn write_bytes(s: &[u8]) {
    for &b in s {
        write_byte(b);
    }
}

/// Prints `v` as `0x`-prefixed hex without libcore formatting (safe at CPL0).
pub fn raw_hex(v: u64) {
    write_bytes(b"0x");
    let mut started = false;
    let mut shift = 64;
    while shift > 0 {
        shift -= 4;
        let nibble = ((v >> shift) & 0xf) as u8;
        if nibble != 0 || started || shift == 0 {
            started = true;
            write_byte(if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            });
        }
    }
}

pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let _ = fmt::Write::write_fmt(&mut Serial, args);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::serial::_print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
