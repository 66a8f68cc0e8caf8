//! The APIC timer (SDM vol. 3 §11.5.4): one-shot, periodic and TSC-deadline modes.
//!
//! **Time unit: guest TSC ticks.** Every `now` the model takes and every deadline it reports
//! is a guest TSC value (`u64`). The counter of the one-shot and periodic modes decrements at
//! the APIC bus clock divided by the divide configuration; [`TimerClock`] relates the bus
//! clock to the TSC. The model never reads a clock and never sleeps: the VMM passes `now`
//! and arms its own timer for [`crate::LocalApic::next_deadline`].

use crate::registers::{LVT_TIMER_MODE_MASK, LVT_TIMER_MODE_SHIFT};

/// Timer mode, LVT timer bits 18:17.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
    /// 11b: reserved; this model's timer does not count in it.
    Reserved,
}

impl TimerMode {
    pub const fn from_lvt(lvt: u32) -> Self {
        match (lvt & LVT_TIMER_MODE_MASK) >> LVT_TIMER_MODE_SHIFT {
            0 => Self::OneShot,
            1 => Self::Periodic,
            2 => Self::TscDeadline,
            _ => Self::Reserved,
        }
    }
}

/// Divide value of the divide configuration register: bits 3,1:0 = 111b → 1, else
/// 2^(value + 1) (§11.5.4, divide configuration register).
pub const fn divide_value(tdcr: u32) -> u64 {
    let v = ((tdcr >> 1) & 0x4) | (tdcr & 0x3);
    if v == 7 {
        1
    } else {
        2 << v
    }
}

/// The relation between the APIC bus clock and the guest TSC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerClock {
    /// Guest TSC frequency in Hz (≥ 1).
    pub tsc_hz: u64,
    /// APIC timer input (bus/core crystal) frequency in Hz (≥ 1).
    pub bus_hz: u64,
}

impl TimerClock {
    fn tsc_hz(&self) -> u128 {
        u128::from(self.tsc_hz.max(1))
    }

    fn bus_hz(&self) -> u128 {
        u128::from(self.bus_hz.max(1))
    }

    /// TSC ticks for `counts` timer counts at divide `divide` (rounded up).
    pub fn counts_to_tsc(&self, counts: u64, divide: u64) -> u64 {
        let num = u128::from(counts) * u128::from(divide) * self.tsc_hz();
        let ticks = num.div_ceil(self.bus_hz());
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Whole timer counts elapsed in `tsc` TSC ticks at divide `divide`.
    pub fn tsc_to_counts(&self, tsc: u64, divide: u64) -> u64 {
        let counts = u128::from(tsc) * self.bus_hz() / (self.tsc_hz() * u128::from(divide.max(1)));
        u64::try_from(counts).unwrap_or(u64::MAX)
    }

    /// Converts TSC ticks to nanoseconds (for a VMM arming a host timer).
    pub fn tsc_to_ns(&self, tsc: u64) -> u64 {
        let ns = u128::from(tsc) * 1_000_000_000 / self.tsc_hz();
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Converts nanoseconds to TSC ticks.
    pub fn ns_to_tsc(&self, ns: u64) -> u64 {
        let tsc = u128::from(ns) * self.tsc_hz() / 1_000_000_000;
        u64::try_from(tsc).unwrap_or(u64::MAX)
    }
}

/// Counting state of the one-shot/periodic counter and the TSC-deadline register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerState {
    /// The counter is running (one-shot/periodic).
    pub armed: bool,
    /// TSC time at which the counter held `anchor_count`.
    pub anchor: u64,
    /// Counter value at `anchor` (≥ 1 while armed).
    pub anchor_count: u32,
    /// TSC time at which the counter reaches zero.
    pub expiry: u64,
    /// IA32_TSC_DEADLINE (0 = disarmed).
    pub tsc_deadline: u64,
}

impl TimerState {
    /// Starts counting down from `count` at `now` (a write to the initial count register,
    /// or a re-anchoring); a count of 0 stops the counter.
    pub fn start(&mut self, clock: &TimerClock, count: u32, divide: u64, now: u64) {
        if count == 0 {
            self.armed = false;
            return;
        }
        self.armed = true;
        self.anchor = now;
        self.anchor_count = count;
        self.expiry = now.saturating_add(clock.counts_to_tsc(u64::from(count), divide));
    }

    /// Current count register value (§11.5.4): counts down from the anchor; 0 once a one-shot
    /// count expired; a periodic counter reloads `initial` (even if `tick` was not called).
    pub fn current_count(
        &self,
        clock: &TimerClock,
        mode: TimerMode,
        initial: u32,
        divide: u64,
        now: u64,
    ) -> u32 {
        if !self.armed {
            return 0;
        }
        let elapsed = clock.tsc_to_counts(now.saturating_sub(self.anchor), divide);
        let anchor_count = u64::from(self.anchor_count);
        if elapsed < anchor_count {
            return (anchor_count - elapsed) as u32;
        }
        match mode {
            TimerMode::Periodic if initial != 0 => {
                let into_period = (elapsed - anchor_count) % u64::from(initial);
                (u64::from(initial) - into_period) as u32
            }
            _ => 0,
        }
    }

    /// Advances to `now`; returns whether the timer fired (reached zero / passed the
    /// deadline) since the last call. Missed periods of a periodic timer coalesce into one
    /// firing, as one IRR bit would hold them.
    pub fn advance(
        &mut self,
        clock: &TimerClock,
        mode: TimerMode,
        initial: u32,
        divide: u64,
        now: u64,
    ) -> bool {
        match mode {
            TimerMode::OneShot => {
                if self.armed && now >= self.expiry {
                    self.armed = false;
                    return true;
                }
                false
            }
            TimerMode::Periodic => {
                if !self.armed || now < self.expiry {
                    return false;
                }
                if initial == 0 {
                    self.armed = false;
                    return true;
                }
                let period = clock.counts_to_tsc(u64::from(initial), divide).max(1);
                let missed = (now - self.expiry) / period;
                let anchor = self.expiry.saturating_add(missed.saturating_mul(period));
                self.start(clock, initial, divide, anchor);
                true
            }
            TimerMode::TscDeadline => {
                if self.tsc_deadline != 0 && now >= self.tsc_deadline {
                    // §11.5.4.1: the timer disarms itself and clears IA32_TSC_DEADLINE.
                    self.tsc_deadline = 0;
                    return true;
                }
                false
            }
            TimerMode::Reserved => false,
        }
    }

    /// The next time at which `advance` will fire, if any.
    pub fn next_deadline(&self, mode: TimerMode) -> Option<u64> {
        match mode {
            TimerMode::OneShot | TimerMode::Periodic => self.armed.then_some(self.expiry),
            TimerMode::TscDeadline => (self.tsc_deadline != 0).then_some(self.tsc_deadline),
            TimerMode::Reserved => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCK: TimerClock = TimerClock {
        tsc_hz: 2_000_000_000,
        bus_hz: 100_000_000,
    };

    #[test]
    fn divide_configuration_encodings() {
        // SDM §11.5.4, divide configuration register: 0000 /2, 0001 /4, 0010 /8, 0011 /16, 1000 /32, 1001 /64,
        // 1010 /128, 1011 /1.
        let expected = [
            (0b0000, 2),
            (0b0001, 4),
            (0b0010, 8),
            (0b0011, 16),
            (0b1000, 32),
            (0b1001, 64),
            (0b1010, 128),
            (0b1011, 1),
        ];
        for (tdcr, div) in expected {
            assert_eq!(divide_value(tdcr), div, "tdcr {tdcr:#b}");
        }
    }

    #[test]
    fn one_shot_counts_down_and_stops_at_zero() {
        let mut t = TimerState::default();
        // 100 counts at /1 = 100 bus ticks = 2000 TSC ticks.
        t.start(&CLOCK, 100, 1, 1000);
        assert_eq!(t.next_deadline(TimerMode::OneShot), Some(3000));
        assert_eq!(
            t.current_count(&CLOCK, TimerMode::OneShot, 100, 1, 1000),
            100
        );
        assert_eq!(
            t.current_count(&CLOCK, TimerMode::OneShot, 100, 1, 2000),
            50
        );
        assert!(!t.advance(&CLOCK, TimerMode::OneShot, 100, 1, 2999));
        assert!(t.advance(&CLOCK, TimerMode::OneShot, 100, 1, 3000));
        assert_eq!(t.current_count(&CLOCK, TimerMode::OneShot, 100, 1, 3500), 0);
        assert_eq!(t.next_deadline(TimerMode::OneShot), None);
    }

    #[test]
    fn periodic_reloads_and_coalesces_missed_periods() {
        let mut t = TimerState::default();
        t.start(&CLOCK, 10, 2, 0); // 10 counts × 2 = 20 bus ticks = 400 TSC ticks.
        assert!(t.advance(&CLOCK, TimerMode::Periodic, 10, 2, 1300));
        assert_eq!(t.next_deadline(TimerMode::Periodic), Some(1600));
        assert_eq!(t.current_count(&CLOCK, TimerMode::Periodic, 10, 2, 1300), 8);
        assert!(!t.advance(&CLOCK, TimerMode::Periodic, 10, 2, 1599));
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let clock = TimerClock {
            tsc_hz: u64::MAX,
            bus_hz: 1,
        };
        let mut t = TimerState::default();
        t.start(&clock, u32::MAX, 128, u64::MAX - 5);
        assert_eq!(t.next_deadline(TimerMode::OneShot), Some(u64::MAX));
        assert_eq!(clock.tsc_to_ns(u64::MAX), 1_000_000_000);
    }
}
