//! Interrupt remapping table entries: the remapped format (VT-d specification §9.10) and
//! the posted format (§9.11), their reserved-bit rules, and source-ID validation
//! (§9.10, SVT/SQ/SID fields).

use apic::{DeliveryMode, DestinationMode, InterruptRequest, TriggerMode};

use crate::fault::FaultReason;

/// Size of one IRTE in bytes.
pub const IRTE_SIZE: u64 = 16;

// Low qword (bits 63:0), both formats.
/// P, bit 0: present.
pub const IRTE_P: u64 = 1 << 0;
/// FPD, bit 1: fault processing disable.
pub const IRTE_FPD: u64 = 1 << 1;
/// IM, bit 15: IRTE mode (0 = remapped, 1 = posted).
pub const IRTE_IM: u64 = 1 << 15;
/// Vector, bits 23:16 (the physical vector when remapped, the virtual vector when posted).
pub const IRTE_VECTOR_SHIFT: u32 = 16;
pub const IRTE_VECTOR_MASK: u64 = 0xff << IRTE_VECTOR_SHIFT;

// Remapped format, low qword.
/// DM, bit 2: destination mode (1 = logical).
pub const IRTE_DM: u64 = 1 << 2;
/// RH, bit 3: redirection hint.
pub const IRTE_RH: u64 = 1 << 3;
/// TM, bit 4: trigger mode (1 = level).
pub const IRTE_TM: u64 = 1 << 4;
/// DLM, bits 7:5: delivery mode.
pub const IRTE_DLM_SHIFT: u32 = 5;
pub const IRTE_DLM_MASK: u64 = 0x7 << IRTE_DLM_SHIFT;
/// DST, bits 63:32: destination ID.
pub const IRTE_DST_SHIFT: u32 = 32;
/// xAPIC mode: the 8-bit destination is DST bits 15:8 (IRTE bits 47:40).
pub const IRTE_DST_XAPIC_SHIFT: u32 = 40;
/// Remapped format, reserved low-qword bits: 14:12 and 31:24. (AVL 11:8 is ignored.)
pub const IRTE_REMAPPED_RSVD_LO: u64 = (0x7 << 12) | (0xff << 24);
/// xAPIC mode additionally reserves DST bits 7:0 and 31:16 (IRTE bits 39:32, 63:48).
pub const IRTE_REMAPPED_RSVD_LO_XAPIC: u64 = (0xff << 32) | (0xffff << 48);

// Posted format, low qword.
/// URG, bit 14: urgent (notify even when SN is set).
pub const IRTE_URG: u64 = 1 << 14;
/// PDA low, bits 63:38: descriptor address bits 31:6.
pub const IRTE_PDA_LO_SHIFT: u32 = 38;
/// Posted format, reserved low-qword bits: 7:2, 13:12, 37:24.
pub const IRTE_POSTED_RSVD_LO: u64 = (0x3f << 2) | (0x3 << 12) | (0x3fff << 24);

// High qword (bits 127:64), both formats.
/// SID, bits 79:64.
pub const IRTE_HI_SID_MASK: u64 = 0xffff;
/// SQ, bits 81:80.
pub const IRTE_HI_SQ_SHIFT: u32 = 16;
/// SVT, bits 83:82.
pub const IRTE_HI_SVT_SHIFT: u32 = 18;
/// Remapped format: bits 127:84 reserved.
pub const IRTE_REMAPPED_RSVD_HI: u64 = !0 << 20;
/// Posted format: bits 95:84 reserved; PDA high in bits 127:96 (address bits 63:32).
pub const IRTE_POSTED_RSVD_HI: u64 = 0xfff << 20;
pub const IRTE_HI_PDA_HI_SHIFT: u32 = 32;

/// An IRTE as it sits in memory: two little-endian qwords.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irte {
    pub lo: u64,
    pub hi: u64,
}

/// Source-ID verification type (SVT, §9.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceValidation {
    /// SVT = 00: no verification.
    None,
    /// SVT = 01: compare the requester ID with SID under the SQ mask.
    RequesterId { sid: u16, mask: u16 },
    /// SVT = 10: the requester's bus must lie in `start..=end` (SID bits 15:8 and 7:0).
    BusRange { start: u8, end: u8 },
}

impl SourceValidation {
    /// Whether a request from `requester_id` passes.
    #[inline]
    pub fn check(&self, requester_id: u16) -> bool {
        match *self {
            Self::None => true,
            Self::RequesterId { sid, mask } => requester_id & mask == sid & mask,
            Self::BusRange { start, end } => {
                let bus = (requester_id >> 8) as u8;
                start <= bus && bus <= end
            }
        }
    }
}

/// A remapped-format IRTE, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemappedIrte {
    pub request: InterruptRequest,
}

/// A posted-format IRTE, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostedIrte {
    /// The virtual vector to set in PIR.
    pub vector: u8,
    /// URG: notify even when SN is set.
    pub urgent: bool,
    /// Posted-interrupt descriptor address (64-byte aligned by construction).
    pub pda: u64,
}

/// What a present, well-formed IRTE asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteMode {
    Remapped(RemappedIrte),
    Posted(PostedIrte),
}

/// A present, well-formed IRTE, decoded once and kept in the interrupt entry cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedIrte {
    pub fpd: bool,
    pub source: SourceValidation,
    pub mode: IrteMode,
}

/// Why an IRTE cannot be used, with the FPD bit that qualifies the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrteError {
    pub reason: FaultReason,
    pub fpd: bool,
}

impl Irte {
    pub const fn new(lo: u64, hi: u64) -> Self {
        Self { lo, hi }
    }

    /// Parses the 16 bytes of an entry.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&bytes[..8]);
        hi.copy_from_slice(&bytes[8..]);
        Self {
            lo: u64::from_le_bytes(lo),
            hi: u64::from_le_bytes(hi),
        }
    }

    pub const fn present(&self) -> bool {
        self.lo & IRTE_P != 0
    }

    pub const fn fpd(&self) -> bool {
        self.lo & IRTE_FPD != 0
    }

    pub const fn posted(&self) -> bool {
        self.lo & IRTE_IM != 0
    }

    /// Decodes the entry. `eim` is IRTA.EIME as latched by the last SIRTP: it selects
    /// between 32-bit (x2APIC) and 8-bit (xAPIC, bits 47:40) destinations.
    ///
    /// Fails with 0x22 when P is clear and 0x24 when a reserved field (or a reserved
    /// encoding: DLM 011 or 110, SVT 11) is set.
    pub fn decode(&self, eim: bool) -> Result<DecodedIrte, IrteError> {
        let fpd = self.fpd();
        let fail = |reason| Err(IrteError { reason, fpd });
        if !self.present() {
            return fail(FaultReason::EntryNotPresent);
        }
        let source = match self.decode_source() {
            Some(s) => s,
            None => return fail(FaultReason::ReservedFieldInIrte),
        };
        let vector = ((self.lo & IRTE_VECTOR_MASK) >> IRTE_VECTOR_SHIFT) as u8;
        let mode = if self.posted() {
            if self.lo & IRTE_POSTED_RSVD_LO != 0 || self.hi & IRTE_POSTED_RSVD_HI != 0 {
                return fail(FaultReason::ReservedFieldInIrte);
            }
            let pda =
                ((self.hi >> IRTE_HI_PDA_HI_SHIFT) << 32) | ((self.lo >> IRTE_PDA_LO_SHIFT) << 6);
            IrteMode::Posted(PostedIrte {
                vector,
                urgent: self.lo & IRTE_URG != 0,
                pda,
            })
        } else {
            let mut rsvd = IRTE_REMAPPED_RSVD_LO;
            if !eim {
                rsvd |= IRTE_REMAPPED_RSVD_LO_XAPIC;
            }
            if self.lo & rsvd != 0 || self.hi & IRTE_REMAPPED_RSVD_HI != 0 {
                return fail(FaultReason::ReservedFieldInIrte);
            }
            let dlm = ((self.lo & IRTE_DLM_MASK) >> IRTE_DLM_SHIFT) as u32;
            let delivery_mode = match DeliveryMode::from_bits(dlm) {
                // §9.10: DLM 011 and 110 are reserved (no start-up through an IRTE).
                DeliveryMode::Reserved | DeliveryMode::StartUp => {
                    return fail(FaultReason::ReservedFieldInIrte)
                }
                m => m,
            };
            let destination = if eim {
                (self.lo >> IRTE_DST_SHIFT) as u32
            } else {
                ((self.lo >> IRTE_DST_XAPIC_SHIFT) & 0xff) as u32
            };
            let trigger_mode = if self.lo & IRTE_TM != 0 {
                TriggerMode::Level
            } else {
                TriggerMode::Edge
            };
            IrteMode::Remapped(RemappedIrte {
                request: InterruptRequest {
                    vector,
                    delivery_mode,
                    destination_mode: if self.lo & IRTE_DM != 0 {
                        DestinationMode::Logical
                    } else {
                        DestinationMode::Physical
                    },
                    destination,
                    trigger_mode,
                    level: true,
                    redirection_hint: self.lo & IRTE_RH != 0,
                },
            })
        };
        Ok(DecodedIrte { fpd, source, mode })
    }

    /// SVT/SQ/SID; `None` for the reserved SVT encoding 11.
    fn decode_source(&self) -> Option<SourceValidation> {
        let sid = (self.hi & IRTE_HI_SID_MASK) as u16;
        let sq = (self.hi >> IRTE_HI_SQ_SHIFT) & 0x3;
        match (self.hi >> IRTE_HI_SVT_SHIFT) & 0x3 {
            0 => Some(SourceValidation::None),
            1 => {
                // SQ: 00 compare all 16 bits; 01 ignore bit 2; 10 ignore bits 2:1;
                // 11 ignore bits 2:0 (the function number bits).
                let ignored: u16 = match sq {
                    0 => 0,
                    1 => 0b100,
                    2 => 0b110,
                    _ => 0b111,
                };
                Some(SourceValidation::RequesterId {
                    sid,
                    mask: !ignored,
                })
            }
            2 => Some(SourceValidation::BusRange {
                start: (sid >> 8) as u8,
                end: sid as u8,
            }),
            _ => None,
        }
    }

    // Builders, for tests, benchmarks and VMM-side table setup.

    /// A present remapped-format entry. `destination` is the 32-bit x2APIC ID in EIM mode;
    /// in xAPIC mode pass the 8-bit ID and set `xapic`.
    pub fn remapped(request: &InterruptRequest, xapic: bool) -> Self {
        let mut lo = IRTE_P
            | (u64::from(request.vector) << IRTE_VECTOR_SHIFT)
            | (u64::from(request.delivery_mode.bits()) << IRTE_DLM_SHIFT);
        if matches!(request.destination_mode, DestinationMode::Logical) {
            lo |= IRTE_DM;
        }
        if request.redirection_hint {
            lo |= IRTE_RH;
        }
        if matches!(request.trigger_mode, TriggerMode::Level) {
            lo |= IRTE_TM;
        }
        if xapic {
            lo |= u64::from(request.destination & 0xff) << IRTE_DST_XAPIC_SHIFT;
        } else {
            lo |= u64::from(request.destination) << IRTE_DST_SHIFT;
        }
        Self { lo, hi: 0 }
    }

    /// A present posted-format entry. `pda` must be 64-byte aligned (bits 5:0 are dropped).
    pub fn posted_entry(vector: u8, urgent: bool, pda: u64) -> Self {
        let mut lo = IRTE_P
            | IRTE_IM
            | (u64::from(vector) << IRTE_VECTOR_SHIFT)
            | (((pda >> 6) & ((1 << 26) - 1)) << IRTE_PDA_LO_SHIFT);
        if urgent {
            lo |= IRTE_URG;
        }
        Self {
            lo,
            hi: (pda >> 32) << IRTE_HI_PDA_HI_SHIFT,
        }
    }

    /// Sets SVT/SQ/SID.
    pub fn with_source(mut self, svt: u8, sq: u8, sid: u16) -> Self {
        self.hi &= !((0x3 << IRTE_HI_SVT_SHIFT) | (0x3 << IRTE_HI_SQ_SHIFT) | IRTE_HI_SID_MASK);
        self.hi |= (u64::from(svt & 3) << IRTE_HI_SVT_SHIFT)
            | (u64::from(sq & 3) << IRTE_HI_SQ_SHIFT)
            | u64::from(sid);
        self
    }

    /// Sets FPD.
    pub fn with_fpd(mut self, fpd: bool) -> Self {
        if fpd {
            self.lo |= IRTE_FPD;
        } else {
            self.lo &= !IRTE_FPD;
        }
        self
    }

    /// The 16 bytes as stored in memory.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.lo.to_le_bytes());
        b[8..].copy_from_slice(&self.hi.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remapped_x2apic_destination_is_bits_63_32() {
        let e = Irte::new(IRTE_P | (0x41 << 16) | (0x1234_5678u64 << 32), 0);
        let d = e.decode(true).unwrap();
        match d.mode {
            IrteMode::Remapped(r) => {
                assert_eq!(r.request.destination, 0x1234_5678);
                assert_eq!(r.request.vector, 0x41);
            }
            _ => panic!("expected remapped"),
        }
    }

    #[test]
    fn remapped_xapic_destination_is_bits_47_40_and_rest_reserved() {
        let e = Irte::new(IRTE_P | (0x41 << 16) | (0x07u64 << 40), 0);
        match e.decode(false).unwrap().mode {
            IrteMode::Remapped(r) => assert_eq!(r.request.destination, 7),
            _ => panic!("expected remapped"),
        }
        for bit in [32u32, 39, 48, 63] {
            let bad = Irte::new(e.lo | (1u64 << bit), 0);
            assert_eq!(
                bad.decode(false).unwrap_err().reason,
                FaultReason::ReservedFieldInIrte,
                "bit {bit} is reserved in xAPIC mode"
            );
            assert!(bad.decode(true).is_ok(), "bit {bit} is DST in x2APIC mode");
        }
    }

    #[test]
    fn every_remapped_field_decodes() {
        let e = Irte::new(
            IRTE_P | IRTE_DM | IRTE_RH | IRTE_TM | (1 << IRTE_DLM_SHIFT) | (0xfe << 16) | (3 << 32),
            0,
        );
        let IrteMode::Remapped(r) = e.decode(true).unwrap().mode else {
            panic!("expected remapped")
        };
        assert_eq!(r.request.delivery_mode, DeliveryMode::LowestPriority);
        assert_eq!(r.request.destination_mode, DestinationMode::Logical);
        assert_eq!(r.request.trigger_mode, TriggerMode::Level);
        assert!(r.request.redirection_hint);
        assert_eq!(r.request.vector, 0xfe);
    }

    #[test]
    fn reserved_delivery_modes_fault() {
        for dlm in 0..8u64 {
            let e = Irte::new(IRTE_P | (dlm << IRTE_DLM_SHIFT), 0);
            let ok = e.decode(true).is_ok();
            assert_eq!(ok, dlm != 3 && dlm != 6, "DLM {dlm:03b}");
        }
    }

    #[test]
    fn remapped_reserved_bits_fault_avl_does_not() {
        let base = Irte::new(IRTE_P, 0);
        assert!(
            Irte::new(base.lo | (0xf << 8), 0).decode(true).is_ok(),
            "AVL"
        );
        for bit in [12u32, 13, 14, 24, 31] {
            let e = Irte::new(base.lo | (1 << bit), 0);
            assert_eq!(
                e.decode(true).unwrap_err().reason,
                FaultReason::ReservedFieldInIrte
            );
        }
        for bit in [20u32, 40, 63] {
            let e = Irte::new(base.lo, 1 << bit);
            assert_eq!(
                e.decode(true).unwrap_err().reason,
                FaultReason::ReservedFieldInIrte
            );
        }
    }

    #[test]
    fn posted_fields_and_reserved_bits() {
        let pda = 0x0000_0012_3456_7fc0u64;
        let e = Irte::posted_entry(0x66, true, pda).with_source(1, 0, 0x0108);
        let d = e.decode(false).unwrap();
        assert_eq!(
            d.mode,
            IrteMode::Posted(PostedIrte {
                vector: 0x66,
                urgent: true,
                pda
            })
        );
        assert_eq!(
            d.source,
            SourceValidation::RequesterId {
                sid: 0x0108,
                mask: 0xffff
            }
        );
        for bit in [2u32, 7, 12, 13, 24, 37] {
            let bad = Irte::new(e.lo | (1 << bit), e.hi);
            assert_eq!(
                bad.decode(true).unwrap_err().reason,
                FaultReason::ReservedFieldInIrte
            );
        }
        for bit in [20u32, 31] {
            let bad = Irte::new(e.lo, e.hi | (1 << bit));
            assert_eq!(
                bad.decode(true).unwrap_err().reason,
                FaultReason::ReservedFieldInIrte
            );
        }
    }

    #[test]
    fn not_present_reports_fpd() {
        let e = Irte::new(IRTE_FPD, 0);
        assert_eq!(
            e.decode(true).unwrap_err(),
            IrteError {
                reason: FaultReason::EntryNotPresent,
                fpd: true
            }
        );
    }

    #[test]
    fn source_validation_rules() {
        let sq = |sq| {
            Irte::new(IRTE_P, 0)
                .with_source(1, sq, 0x0108)
                .decode(true)
                .unwrap()
                .source
        };
        assert!(sq(0).check(0x0108));
        assert!(!sq(0).check(0x0109));
        assert!(sq(1).check(0x010c), "SQ=01 ignores bit 2");
        assert!(!sq(1).check(0x010a));
        assert!(sq(2).check(0x010e), "SQ=10 ignores bits 2:1");
        assert!(!sq(2).check(0x0109));
        assert!(sq(3).check(0x010f), "SQ=11 ignores bits 2:0");
        assert!(!sq(3).check(0x0110));
        let bus = Irte::new(IRTE_P, 0)
            .with_source(2, 0, 0x0305)
            .decode(true)
            .unwrap()
            .source;
        assert!(!bus.check(0x0208));
        assert!(bus.check(0x0300) && bus.check(0x0400) && bus.check(0x05ff));
        assert!(!bus.check(0x0600));
        let rsvd = Irte::new(IRTE_P, 0).with_source(3, 0, 0).decode(true);
        assert_eq!(rsvd.unwrap_err().reason, FaultReason::ReservedFieldInIrte);
    }
}
