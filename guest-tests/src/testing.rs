//! Small helpers for test bodies: named checks and options from the command line.

use crate::{println, BootInfo};

/// TSC cycles a test waits for an event before calling it lost (seconds on any host).
pub const TIMEOUT_TSC: u64 = 20_000_000_000;

/// Counts failed checks and prints each one.
#[derive(Default)]
pub struct Checks {
    failures: u32,
}

impl Checks {
    pub fn check(&mut self, name: &str, ok: bool) {
        println!("{} {}", if ok { "ok" } else { "FAIL" }, name);
        self.failures += u32::from(!ok);
    }

    /// Prints the summary line and returns the exit code (0 when every check passed).
    pub fn finish(self) -> u32 {
        println!("checks done, failures={}", self.failures);
        self.failures.min(0x7f)
    }
}

/// Whether the command line holds the word `flag`.
pub fn has_flag(info: &BootInfo, flag: &str) -> bool {
    info.cmdline()
        .is_some_and(|c| c.split_whitespace().any(|w| w == flag))
}

/// The value of `key=value` on the command line.
pub fn option(info: &BootInfo, key: &str) -> Option<u64> {
    info.cmdline()?.split_whitespace().find_map(|w| {
        let (k, v) = w.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

/// Spins until `cond` holds or the timeout passes; returns whether it held.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let start = crate::arch::rdtsc();
    while !cond() {
        if crate::arch::rdtsc() - start > TIMEOUT_TSC {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Spins for about `cycles` TSC cycles.
pub fn spin(cycles: u64) {
    let start = crate::arch::rdtsc();
    while crate::arch::rdtsc() - start < cycles {
        core::hint::spin_loop();
    }
}
