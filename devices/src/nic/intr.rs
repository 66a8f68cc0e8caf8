//! Extended interrupt logic of one function (82576 datasheet, "Interrupts" chapter and
//! the EICR/EICS/EIMS/EIMC/EIAC/EIAM/EITR register descriptions; the VF has the same
//! block as VTEICR...VTEITR).
//!
//! In MSI-X mode each EICR bit is one MSI-X vector. A cause event sets its EICR bit; if
//! the bit is enabled in EIMS an interrupt is due. EITR moderation: a vector fires at most
//! once per EITR interval (bits 14:2, 1 µs units); an event inside the interval waits
//! until the interval since the previous interrupt has elapsed (the model reports that
//! deadline). When a vector fires, its EICR bit is auto-cleared if set in EIAC, and with
//! auto-mask enabled (GPIE.EIAME on the PF, always on the VF) its EIMS bit is cleared if
//! set in EIAM.

use super::regs::*;

/// One function's extended interrupt registers and moderation timers.
#[derive(Debug, Clone)]
pub struct IntrBlock {
    pub eicr: u32,
    pub eims: u32,
    pub eiac: u32,
    pub eiam: u32,
    eitr: Vec<u32>,
    /// When each vector last fired (the EITR interval counts from there).
    last_fire: Vec<Option<u64>>,
    /// Vectors with an event not yet signalled.
    want: u32,
    valid: u32,
    /// Interrupts fired.
    pub fired: u64,
}

impl IntrBlock {
    pub fn new(vectors: usize) -> Self {
        Self {
            eicr: 0,
            eims: 0,
            eiac: 0,
            eiam: 0,
            eitr: vec![0; vectors],
            last_fire: vec![None; vectors],
            want: 0,
            valid: if vectors >= 32 {
                u32::MAX
            } else {
                (1u32 << vectors) - 1
            },
            fired: 0,
        }
    }

    pub fn vectors(&self) -> usize {
        self.eitr.len()
    }

    pub fn reset(&mut self) {
        *self = Self::new(self.eitr.len());
    }

    /// A cause event for the vectors in `bits` (queue cause, mailbox, EICS).
    pub fn cause(&mut self, bits: u32) {
        let bits = bits & self.valid;
        self.eicr |= bits;
        self.want |= bits;
    }

    pub fn write_eims(&mut self, v: u32) {
        let newly = v & !self.eims & self.valid;
        self.eims |= v & self.valid;
        // Unmasking a vector whose cause is still set raises it.
        self.want |= newly & self.eicr;
    }

    pub fn write_eimc(&mut self, v: u32) {
        self.eims &= !v;
    }

    /// EICR read: returns and clears the causes.
    pub fn read_eicr(&mut self) -> u32 {
        std::mem::take(&mut self.eicr)
    }

    /// EICR write: write 1 to clear.
    pub fn write_eicr(&mut self, v: u32) {
        self.eicr &= !v;
    }

    pub fn eitr(&self, v: usize) -> u32 {
        self.eitr.get(v).copied().unwrap_or(0)
    }

    pub fn write_eitr(&mut self, v: usize, val: u32) {
        if let Some(r) = self.eitr.get_mut(v) {
            // The counter field (30:16) is not modelled; store interval and CNT_IGNR.
            *r = val & (EITR_INTERVAL_MASK | EITR_CNT_IGNR);
        }
    }

    fn interval_ns(&self, v: usize) -> u64 {
        (((self.eitr[v] & EITR_INTERVAL_MASK) >> 2) as u64) * 1000
    }

    /// Earliest time vector `v` may fire again.
    fn next_allowed(&self, v: usize) -> u64 {
        self.last_fire[v].map_or(0, |t| t.saturating_add(self.interval_ns(v)))
    }

    /// Vectors that must be signalled at `now`; updates EICR/EIMS auto-clear/mask and
    /// the moderation timers.
    pub fn take_due(&mut self, now: u64, auto_mask: bool) -> u32 {
        let mut out = 0;
        let mut w = self.want;
        while w != 0 {
            let v = w.trailing_zeros() as usize;
            let bit = 1u32 << v;
            w &= !bit;
            if self.eims & bit == 0 || self.eicr & bit == 0 {
                // Masked or acknowledged: EIMS write re-arms it while the cause stays.
                self.want &= !bit;
                continue;
            }
            if now < self.next_allowed(v) {
                continue;
            }
            out |= bit;
            self.want &= !bit;
            self.last_fire[v] = Some(now);
            self.eicr &= !(self.eiac & bit);
            if auto_mask {
                self.eims &= !(self.eiam & bit);
            }
            self.fired += 1;
        }
        out
    }

    /// When the next moderated interrupt becomes due.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut w = self.want & self.eims & self.eicr;
        let mut best: Option<u64> = None;
        while w != 0 {
            let v = w.trailing_zeros() as usize;
            w &= w - 1;
            let t = self.next_allowed(v);
            best = Some(best.map_or(t, |b| b.min(t)));
        }
        best
    }
}

/// Decodes an IVAR byte: `Some(vector)` when the valid bit is set.
pub fn ivar_vector(ivar: u32, byte: u32) -> Option<u32> {
    let b = (ivar >> (8 * (byte & 3))) & 0xff;
    (b & IVAR_VALID != 0).then_some(b & IVAR_VECTOR_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_fires_once_and_auto_clears_and_masks() {
        let mut b = IntrBlock::new(3);
        b.write_eims(0b111);
        b.eiac = 0b011;
        b.eiam = 0b001;
        b.cause(0b001);
        assert_eq!(b.take_due(0, true), 0b001);
        assert_eq!(b.eicr, 0);
        assert_eq!(b.eims, 0b110);
        // Auto-masked: a new event waits in EICR until EIMS is written.
        b.cause(0b001);
        assert_eq!(b.take_due(1, true), 0);
        b.write_eims(0b001);
        assert_eq!(b.take_due(2, true), 0b001);
    }

    #[test]
    fn eitr_moderates_to_one_interrupt_per_interval() {
        let mut b = IntrBlock::new(3);
        b.write_eims(0b1);
        b.eiac = 0b1;
        b.write_eitr(0, 100 << 2); // 100 µs
        b.cause(1);
        assert_eq!(b.take_due(1_000, true), 1);
        b.cause(1);
        assert_eq!(b.take_due(50_000, true), 0);
        assert_eq!(b.next_deadline(), Some(101_000));
        b.cause(1);
        assert_eq!(b.take_due(100_999, true), 0);
        assert_eq!(b.take_due(101_000, true), 1);
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.fired, 2);
    }

    #[test]
    fn masked_cause_fires_when_unmasked_and_invalid_bits_ignored() {
        let mut b = IntrBlock::new(3);
        b.cause(0b1000_0100);
        assert_eq!(b.eicr, 0b100);
        assert_eq!(b.take_due(0, true), 0);
        b.write_eims(0xffff_ffff);
        assert_eq!(b.eims, 0b111);
        assert_eq!(b.take_due(0, true), 0b100);
        assert_eq!(b.read_eicr(), 0b100);
        assert_eq!(b.eicr, 0);
    }

    #[test]
    fn ivar_decoding() {
        assert_eq!(ivar_vector(0x0000_8281, 0), Some(1));
        assert_eq!(ivar_vector(0x0000_8281, 1), Some(2));
        assert_eq!(ivar_vector(0x0000_8281, 2), None);
    }
}
