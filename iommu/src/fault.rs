//! Fault recording and the fault event: the fault status and control registers, the
//! primary fault recording registers, and the fault-event interrupt. VT-d specification
//! chapter 7 ("Address Translation Faults": primary fault logging, the fault event
//! interrupt), the table "Interrupt Remapping Fault Conditions" (reasons 0x20–0x28,
//! which also says which are qualified) and chapter 11 (FSTS, FECTL, FRCD registers).

use apic::MsiMessage;

use crate::regs::*;

/// Interrupt-remapping fault reasons (table "Interrupt Remapping Fault Conditions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FaultReason {
    /// 0x20: a reserved field of a remappable-format request is set (MSI data bits 31:16).
    ReservedFieldInRequest = 0x20,
    /// 0x21: the interrupt index exceeds the table size.
    IndexBeyondTable = 0x21,
    /// 0x22: the IRTE's P bit is clear.
    EntryNotPresent = 0x22,
    /// 0x23: reading the IRTE through IRTA failed.
    TableAccessError = 0x23,
    /// 0x24: a reserved field (or reserved encoding) of a present IRTE is set.
    ReservedFieldInIrte = 0x24,
    /// 0x25: a compatibility-format request was blocked (CFIS clear, or EIME set).
    CompatibilityBlocked = 0x25,
    /// 0x26: source-ID verification failed.
    SourceIdCheckFailed = 0x26,
    /// 0x27: accessing the posted-interrupt descriptor through PDA failed.
    PostedDescriptorAccessError = 0x27,
    /// 0x28: a reserved field of the posted-interrupt descriptor is set.
    PostedDescriptorReservedField = 0x28,
}

impl FaultReason {
    /// Qualified faults (the table's "qualified" column) are the ones an IRTE's FPD can suppress: those detected
    /// after a (present or not) IRTE was read.
    pub const fn qualified(self) -> bool {
        matches!(
            self,
            Self::EntryNotPresent
                | Self::ReservedFieldInIrte
                | Self::SourceIdCheckFailed
                | Self::PostedDescriptorAccessError
                | Self::PostedDescriptorReservedField
        )
    }

    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// A fault, as returned to the caller of `remap`/`post`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrFault {
    pub reason: FaultReason,
    /// The requester ID of the faulting request.
    pub source_id: u16,
    /// The interrupt index (the handle plus the sub-handle), 0 for compatibility format.
    pub index: u32,
    /// Whether a fault record was written (false: FPD, PFO already set, or overflow).
    pub recorded: bool,
}

/// One 128-bit fault recording register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultRecord {
    pub lo: u64,
    pub hi: u64,
}

impl FaultRecord {
    pub const fn pending(&self) -> bool {
        self.hi & FRCD_HI_F != 0
    }
    pub const fn reason(&self) -> u8 {
        (self.hi >> FRCD_HI_FR_SHIFT) as u8
    }
    pub const fn source_id(&self) -> u16 {
        (self.hi & FRCD_HI_SID_MASK) as u16
    }
    pub const fn index(&self) -> u16 {
        (self.lo >> FRCD_FI_INDEX_SHIFT) as u16
    }
}

/// FSTS, FECTL, FEDATA/FEADDR/FEUADDR and the fault recording registers.
#[derive(Debug)]
pub struct FaultUnit {
    /// FSTS without PPF (PPF is computed from the records).
    fsts: u32,
    fectl: u32,
    pub fedata: u32,
    feaddr: u32,
    pub feuaddr: u32,
    records: [FaultRecord; NUM_FAULT_RECORDS],
    /// The internal fault recording index ("Primary Fault Logging").
    next: usize,
}

impl Default for FaultUnit {
    fn default() -> Self {
        Self {
            fsts: 0,
            fectl: CTL_IM,
            fedata: 0,
            feaddr: 0,
            feuaddr: 0,
            records: [FaultRecord::default(); NUM_FAULT_RECORDS],
            next: 0,
        }
    }
}

impl FaultUnit {
    fn ppf(&self) -> bool {
        self.records.iter().any(FaultRecord::pending)
    }

    /// FSTS as software reads it.
    pub fn fsts(&self) -> u32 {
        self.fsts | if self.ppf() { FSTS_PPF } else { 0 }
    }

    pub fn fectl(&self) -> u32 {
        self.fectl
    }

    pub fn feaddr(&self) -> u32 {
        self.feaddr
    }

    pub fn set_feaddr(&mut self, v: u32) {
        self.feaddr = v & EVENT_ADDR_MASK;
    }

    pub fn record(&self, i: usize) -> Option<FaultRecord> {
        self.records.get(i).copied()
    }

    fn any_status(&self) -> bool {
        self.fsts() & FSTS_EVENT_STATUS != 0
    }

    /// The fault event message ("Fault Event"): FEDATA to FEUADDR:FEADDR.
    fn message(&self) -> MsiMessage {
        MsiMessage::new(
            0,
            (u64::from(self.feuaddr) << 32) | u64::from(self.feaddr),
            self.fedata,
        )
    }

    /// A new event condition: sets IP and, unless masked, sends the message and clears IP.
    /// Called only when no status bit was set before ("Fault Event": otherwise the new condition is
    /// not a new interrupt event).
    fn event(&mut self, out: &mut Vec<MsiMessage>) {
        self.fectl |= CTL_IP;
        if self.fectl & CTL_IM == 0 {
            out.push(self.message());
            self.fectl &= !CTL_IP;
        }
    }

    /// Clears IP once software has serviced every status bit.
    fn maybe_clear_ip(&mut self) {
        if !self.any_status() {
            self.fectl &= !CTL_IP;
        }
    }

    /// Primary fault logging (chapter 7, "Primary Fault Logging"). Returns whether the fault was recorded.
    pub fn record_fault(
        &mut self,
        reason: FaultReason,
        source_id: u16,
        index: u32,
        out: &mut Vec<MsiMessage>,
    ) -> bool {
        if self.fsts & FSTS_PFO != 0 {
            return false;
        }
        let was_status = self.any_status();
        let slot = self.next % NUM_FAULT_RECORDS;
        if self.records[slot].pending() {
            // Overflow: set PFO, drop the fault.
            self.fsts |= FSTS_PFO;
            if !was_status {
                self.event(out);
            }
            return false;
        }
        let ppf_before = self.ppf();
        self.records[slot] = FaultRecord {
            lo: u64::from(index as u16) << FRCD_FI_INDEX_SHIFT,
            hi: FRCD_HI_F | (u64::from(reason.code()) << FRCD_HI_FR_SHIFT) | u64::from(source_id),
        };
        if !ppf_before {
            self.fsts = (self.fsts & !FSTS_FRI_MASK) | ((slot as u32) << FSTS_FRI_SHIFT);
        }
        self.next = (slot + 1) % NUM_FAULT_RECORDS;
        if !was_status {
            self.event(out);
        }
        true
    }

    /// Sets a status bit (IQE) raised by the invalidation queue.
    pub fn set_status(&mut self, bit: u32, out: &mut Vec<MsiMessage>) {
        let was_status = self.any_status();
        self.fsts |= bit;
        if !was_status {
            self.event(out);
        }
    }

    /// Software writes FSTS: write 1 to clear PFO, IQE, ICE, ITE (AFO/APF never set).
    pub fn write_fsts(&mut self, v: u32) {
        self.fsts &= !(v & FSTS_RW1C);
        self.maybe_clear_ip();
    }

    /// Software writes FECTL: only IM is writable; unmasking with IP set sends the event.
    pub fn write_fectl(&mut self, v: u32, out: &mut Vec<MsiMessage>) {
        self.fectl = (self.fectl & CTL_IP) | (v & CTL_IM);
        if self.fectl & CTL_IM == 0 && self.fectl & CTL_IP != 0 {
            out.push(self.message());
            self.fectl &= !CTL_IP;
        }
    }

    /// Software writes the upper dword of a fault record's high qword: F is RW1C, the
    /// rest is read-only.
    pub fn write_record_hi_dword(&mut self, i: usize, v: u32) {
        if let Some(r) = self.records.get_mut(i) {
            if v & (1 << 31) != 0 {
                r.hi &= !FRCD_HI_F;
            }
        }
        self.maybe_clear_ip();
    }

    /// The internal index is reset when both DMA and interrupt remapping are disabled.
    pub fn reset_index(&mut self) {
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppf_fri_and_overflow() {
        let mut f = FaultUnit::default();
        let mut out = Vec::new();
        f.write_fectl(0, &mut out);
        assert!(f.record_fault(FaultReason::EntryNotPresent, 0x100, 5, &mut out));
        assert_eq!(out.len(), 1, "PPF 0→1 raises the event");
        assert_eq!(f.fsts() & FSTS_PPF, FSTS_PPF);
        assert_eq!((f.fsts() & FSTS_FRI_MASK) >> FSTS_FRI_SHIFT, 0);
        for i in 1..NUM_FAULT_RECORDS {
            assert!(f.record_fault(FaultReason::SourceIdCheckFailed, 0x200, i as u32, &mut out));
        }
        assert_eq!(out.len(), 1, "PPF already set: no new event");
        assert_eq!((f.fsts() & FSTS_FRI_MASK) >> FSTS_FRI_SHIFT, 0, "FRI stays");
        // All slots full: overflow.
        assert!(!f.record_fault(FaultReason::SourceIdCheckFailed, 0x300, 9, &mut out));
        assert_eq!(f.fsts() & FSTS_PFO, FSTS_PFO);
        // PFO set: further faults are dropped without touching records.
        f.write_record_hi_dword(0, 1 << 31);
        assert!(!f.record_fault(FaultReason::SourceIdCheckFailed, 0x300, 9, &mut out));
        f.write_fsts(FSTS_PFO);
        assert_eq!(f.fsts() & FSTS_PFO, 0);
        assert!(f.record_fault(FaultReason::IndexBeyondTable, 0x400, 0x1234, &mut out));
        let r = f.record(0).unwrap();
        assert_eq!(
            (r.reason(), r.source_id(), r.index()),
            (0x21, 0x400, 0x1234)
        );
    }

    #[test]
    fn masked_event_is_sent_on_unmask() {
        let mut f = FaultUnit::default();
        let mut out = Vec::new();
        f.fedata = 0x4049;
        f.set_feaddr(0xfee0_1000);
        f.record_fault(FaultReason::EntryNotPresent, 1, 0, &mut out);
        assert!(out.is_empty(), "IM is set at reset");
        assert_eq!(f.fectl() & CTL_IP, CTL_IP);
        f.write_fectl(0, &mut out);
        assert_eq!(out, vec![MsiMessage::new(0, 0xfee0_1000, 0x4049)]);
        assert_eq!(f.fectl() & CTL_IP, 0);
    }

    #[test]
    fn servicing_all_status_clears_ip() {
        let mut f = FaultUnit::default();
        let mut out = Vec::new();
        f.set_status(FSTS_IQE, &mut out);
        assert_eq!(f.fectl() & CTL_IP, CTL_IP);
        f.write_fsts(FSTS_IQE);
        assert_eq!(f.fectl() & CTL_IP, 0);
        f.write_fectl(0, &mut out);
        assert!(out.is_empty());
    }
}
