//! The VT-d remapping-hardware register page: offsets, bit layouts and the capability
//! values this model reports. Intel VT-d specification, chapter 11 ("Register
//! Descriptions"); each group below names its register. Every layout used elsewhere in
//! the crate is declared here, once.

/// Size of the register page (one 4 KiB page; everything below fits in it).
pub const REG_PAGE_SIZE: u64 = 0x1000;
/// Where the VMM maps the page (the ACPI DMAR table's register base address).
pub const DEFAULT_BASE: u64 = 0xfed9_0000;

// ---------------------------------------------------------------------------------------
// Offsets (table "Address Mapping for Remapping Hardware Registers").
// ---------------------------------------------------------------------------------------
/// Version register (32-bit, RO).
pub const VER: u64 = 0x00;
/// Capability register (64-bit, RO).
pub const CAP: u64 = 0x08;
/// Extended capability register (64-bit, RO).
pub const ECAP: u64 = 0x10;
/// Global command register (32-bit, WO).
pub const GCMD: u64 = 0x18;
/// Global status register (32-bit, RO).
pub const GSTS: u64 = 0x1c;
/// Root table address register (64-bit, RW; DMA remapping is not modelled yet).
pub const RTADDR: u64 = 0x20;
/// Context command register (64-bit, RW).
pub const CCMD: u64 = 0x28;
/// Fault status register (32-bit).
pub const FSTS: u64 = 0x34;
/// Fault event control register (32-bit).
pub const FECTL: u64 = 0x38;
/// Fault event data register (32-bit).
pub const FEDATA: u64 = 0x3c;
/// Fault event address register (32-bit).
pub const FEADDR: u64 = 0x40;
/// Fault event upper address register (32-bit).
pub const FEUADDR: u64 = 0x44;
/// Advanced fault log register (64-bit; CAP.AFL = 0, reads 0).
pub const AFLOG: u64 = 0x58;
/// Protected memory enable register (CAP.PLMR = CAP.PHMR = 0, reads 0).
pub const PMEN: u64 = 0x64;
/// Invalidation queue head (64-bit, RO).
pub const IQH: u64 = 0x80;
/// Invalidation queue tail (64-bit, RW).
pub const IQT: u64 = 0x88;
/// Invalidation queue address (64-bit, RW).
pub const IQA: u64 = 0x90;
/// Invalidation completion status (32-bit).
pub const ICS: u64 = 0x9c;
/// Invalidation event control (32-bit).
pub const IECTL: u64 = 0xa0;
/// Invalidation event data (32-bit).
pub const IEDATA: u64 = 0xa4;
/// Invalidation event address (32-bit).
pub const IEADDR: u64 = 0xa8;
/// Invalidation event upper address (32-bit).
pub const IEUADDR: u64 = 0xac;
/// Invalidation queue error record (64-bit, RO).
pub const IQERCD: u64 = 0xb0;
/// Interrupt remapping table address (64-bit, RW).
pub const IRTA: u64 = 0xb8;
/// First fault recording register (CAP.FRO × 16).
pub const FRCD_BASE: u64 = 0x200;
/// Each fault recording register is 128 bits.
pub const FRCD_SIZE: u64 = 16;
/// Number of fault recording registers (CAP.NFR + 1).
pub const NUM_FAULT_RECORDS: usize = 8;
/// IOTLB registers (ECAP.IRO × 16): invalidate address register.
pub const IVA: u64 = 0x300;
/// IOTLB invalidate register.
pub const IOTLB: u64 = 0x308;

// ---------------------------------------------------------------------------------------
// VER, Version Register: major 7:4, minor 3:0.
// ---------------------------------------------------------------------------------------
/// Architecture version 1.0, as QEMU and many chipsets report for legacy-mode units.
pub const VER_VALUE: u32 = 0x10;

// ---------------------------------------------------------------------------------------
// CAP, Capability Register.
// ---------------------------------------------------------------------------------------
/// ND, bits 2:0: number of domains (2 → 256).
pub const CAP_ND_SHIFT: u32 = 0;
/// SAGAW, bits 12:8 (bit 2 of the field: 48-bit AGAW, 4-level tables).
pub const CAP_SAGAW_SHIFT: u32 = 8;
/// MGAW, bits 21:16: maximum guest address width − 1.
pub const CAP_MGAW_SHIFT: u32 = 16;
/// FRO, bits 33:24: fault recording register offset in 16-byte units.
pub const CAP_FRO_SHIFT: u32 = 24;
/// NFR, bits 47:40: number of fault recording registers − 1.
pub const CAP_NFR_SHIFT: u32 = 40;
/// PI, bit 59: posted interrupts supported.
pub const CAP_PI: u64 = 1 << 59;
/// ESIRTPS, bit 62: a Set Interrupt Remap Table Pointer operation also invalidates the
/// interrupt entry cache.
pub const CAP_ESIRTPS: u64 = 1 << 62;

/// Host address width in bits (the ACPI DMAR table's HAW field should say 47, i.e.
/// HAW − 1). An IRTE above it is fault 0x21.
pub const HAW_BITS: u32 = 48;

/// The CAP value this model reports.
pub const CAP_VALUE: u64 = (2 << CAP_ND_SHIFT)
    | (0x4 << CAP_SAGAW_SHIFT)
    | (47 << CAP_MGAW_SHIFT)
    | ((FRCD_BASE / 16) << CAP_FRO_SHIFT)
    | (((NUM_FAULT_RECORDS as u64) - 1) << CAP_NFR_SHIFT)
    | CAP_PI
    | CAP_ESIRTPS;

// ---------------------------------------------------------------------------------------
// ECAP, Extended Capability Register.
// ---------------------------------------------------------------------------------------
/// C, bit 0: hardware accesses to remapping structures are coherent.
pub const ECAP_C: u64 = 1 << 0;
/// QI, bit 1: queued invalidation.
pub const ECAP_QI: u64 = 1 << 1;
/// DT, bit 2: device-TLBs (not supported).
pub const ECAP_DT: u64 = 1 << 2;
/// IR, bit 3: interrupt remapping.
pub const ECAP_IR: u64 = 1 << 3;
/// EIM, bit 4: extended interrupt mode (x2APIC, 32-bit destinations).
pub const ECAP_EIM: u64 = 1 << 4;
/// IRO, bits 17:8: IOTLB register offset in 16-byte units.
pub const ECAP_IRO_SHIFT: u32 = 8;
/// The ECAP value this model reports.
pub const ECAP_VALUE: u64 = ECAP_C | ECAP_QI | ECAP_IR | ECAP_EIM | ((IVA / 16) << ECAP_IRO_SHIFT);

// ---------------------------------------------------------------------------------------
// GCMD / GSTS, Global Command and Global Status Registers: the same bit positions.
// ---------------------------------------------------------------------------------------
/// TE / TES, bit 31: translation enable (DMA remapping).
pub const G_TE: u32 = 1 << 31;
/// SRTP / RTPS, bit 30: set root table pointer.
pub const G_SRTP: u32 = 1 << 30;
/// SFL / FLS, bit 29: set fault log (CAP.AFL = 0: ignored).
pub const G_SFL: u32 = 1 << 29;
/// EAFL / AFLS, bit 28: enable advanced fault logging (CAP.AFL = 0: ignored).
pub const G_EAFL: u32 = 1 << 28;
/// WBF / WBFS, bit 27: write buffer flush (CAP.RWBF = 0: ignored).
pub const G_WBF: u32 = 1 << 27;
/// QIE / QIES, bit 26: queued invalidation enable.
pub const G_QIE: u32 = 1 << 26;
/// IRE / IRES, bit 25: interrupt remapping enable.
pub const G_IRE: u32 = 1 << 25;
/// SIRTP / IRTPS, bit 24: set interrupt remap table pointer.
pub const G_SIRTP: u32 = 1 << 24;
/// CFI / CFIS, bit 23: compatibility format interrupts allowed.
pub const G_CFI: u32 = 1 << 23;

// ---------------------------------------------------------------------------------------
// CCMD (Context Command Register) and IOTLB (IOTLB Invalidate Register): register-based
// invalidation, accepted as no-ops.
// ---------------------------------------------------------------------------------------
/// CCMD.ICC, bit 63: invalidate context cache (cleared on completion).
pub const CCMD_ICC: u64 = 1 << 63;
/// CCMD.CIRG, bits 62:61: requested granularity.
pub const CCMD_CIRG_SHIFT: u32 = 61;
/// CCMD.CAIG, bits 60:59: actual granularity.
pub const CCMD_CAIG_SHIFT: u32 = 59;
/// IOTLB.IVT, bit 63: invalidate IOTLB (cleared on completion).
pub const IOTLB_IVT: u64 = 1 << 63;
/// IOTLB.IIRG, bits 61:60: requested granularity.
pub const IOTLB_IIRG_SHIFT: u32 = 60;
/// IOTLB.IAIG, bits 58:57: actual granularity.
pub const IOTLB_IAIG_SHIFT: u32 = 57;

// ---------------------------------------------------------------------------------------
// FSTS, Fault Status Register.
// ---------------------------------------------------------------------------------------
/// PFO, bit 0: primary fault overflow (RW1C).
pub const FSTS_PFO: u32 = 1 << 0;
/// PPF, bit 1: primary pending fault (RO; OR of all F bits).
pub const FSTS_PPF: u32 = 1 << 1;
/// AFO, bit 2: advanced fault overflow (CAP.AFL = 0: never set).
pub const FSTS_AFO: u32 = 1 << 2;
/// APF, bit 3: advanced pending fault (never set).
pub const FSTS_APF: u32 = 1 << 3;
/// IQE, bit 4: invalidation queue error (RW1C).
pub const FSTS_IQE: u32 = 1 << 4;
/// ICE, bit 5: invalidation completion error (device-TLB; never set).
pub const FSTS_ICE: u32 = 1 << 5;
/// ITE, bit 6: invalidation time-out error (device-TLB; never set).
pub const FSTS_ITE: u32 = 1 << 6;
/// FRI, bits 15:8: fault record index (valid while PPF is set).
pub const FSTS_FRI_SHIFT: u32 = 8;
pub const FSTS_FRI_MASK: u32 = 0xff << FSTS_FRI_SHIFT;
/// Status bits software clears by writing 1.
pub const FSTS_RW1C: u32 = FSTS_PFO | FSTS_AFO | FSTS_APF | FSTS_IQE | FSTS_ICE | FSTS_ITE;
/// Status bits whose setting is a fault event condition (chapter 7, "Fault Event").
pub const FSTS_EVENT_STATUS: u32 = FSTS_RW1C | FSTS_PPF;

// ---------------------------------------------------------------------------------------
// FECTL (Fault Event Control) and IECTL (Invalidation Event Control): the same layout.
// ---------------------------------------------------------------------------------------
/// IM, bit 31: interrupt mask (set at reset).
pub const CTL_IM: u32 = 1 << 31;
/// IP, bit 30: interrupt pending (RO).
pub const CTL_IP: u32 = 1 << 30;
/// FEADDR / IEADDR: bits 1:0 are reserved.
pub const EVENT_ADDR_MASK: u32 = !0x3;

// ---------------------------------------------------------------------------------------
// Fault Recording Registers, 128 bits each.
// ---------------------------------------------------------------------------------------
/// Low qword, bits 63:12: fault information. For interrupt-remapping faults bits 63:48
/// hold the interrupt index and bits 47:12 are zero.
pub const FRCD_FI_INDEX_SHIFT: u32 = 48;
/// High qword, bits 15:0 (bits 79:64): source identifier.
pub const FRCD_HI_SID_MASK: u64 = 0xffff;
/// High qword, bits 39:32 (bits 103:96): fault reason.
pub const FRCD_HI_FR_SHIFT: u32 = 32;
/// High qword, bit 62 (bit 126): type (0 = write; interrupt requests are writes).
pub const FRCD_HI_T: u64 = 1 << 62;
/// High qword, bit 63 (bit 127): fault (RW1C).
pub const FRCD_HI_F: u64 = 1 << 63;

// ---------------------------------------------------------------------------------------
// Queued invalidation registers: IQH, IQT, IQA, ICS, IQERCD.
// ---------------------------------------------------------------------------------------
/// IQH / IQT: QH / QT, bits 18:4 (offset of a 128-bit descriptor).
pub const IQ_OFFSET_MASK: u64 = 0x7fff0;
/// IQA: base address, bits 63:12.
pub const IQA_ADDR_MASK: u64 = !0xfff;
/// IQA.DW, bit 11: 256-bit descriptors. Only meaningful with scalable mode
/// (ECAP.SMTS), which this model does not report: the bit is treated as reserved and
/// reads as 0.
pub const IQA_DW: u64 = 1 << 11;
/// IQA.QS, bits 2:0: the queue is 2^QS 4 KiB pages, i.e. 2^(QS+8) 128-bit descriptors.
pub const IQA_QS_MASK: u64 = 0x7;
/// ICS.IWC, bit 0: invalidation wait descriptor complete (RW1C).
pub const ICS_IWC: u32 = 1 << 0;
/// IQERCD.IQEI, bits 3:0: why IQE was set.
pub const IQERCD_IQEI_MASK: u64 = 0xf;
/// IQEI values.
pub const IQEI_INVALID_TAIL: u64 = 1;
pub const IQEI_FETCH_ERROR: u64 = 2;
pub const IQEI_INVALID_TYPE: u64 = 3;
pub const IQEI_RESERVED_FIELD: u64 = 4;

// ---------------------------------------------------------------------------------------
// IRTA, Interrupt Remapping Table Address Register.
// ---------------------------------------------------------------------------------------
/// IRTA, bits 63:12: table base.
pub const IRTA_ADDR_MASK: u64 = !0xfff;
/// EIME, bit 11: extended interrupt mode (x2APIC) enable.
pub const IRTA_EIME: u64 = 1 << 11;
/// S, bits 3:0: the table has 2^(S+1) entries.
pub const IRTA_S_MASK: u64 = 0xf;
/// The writable bits of IRTA (bits 10:4 are reserved).
pub const IRTA_WRITABLE: u64 = IRTA_ADDR_MASK | IRTA_EIME | IRTA_S_MASK;

// The fault recording registers and the IOTLB registers fit the page without overlap.
const _: () = assert!(FRCD_BASE + FRCD_SIZE * NUM_FAULT_RECORDS as u64 <= IVA);
const _: () = assert!(IOTLB + 8 <= REG_PAGE_SIZE);

/// Number of IRTEs a table of size field `s` holds: 2^(S+1).
pub const fn irta_entries(irta: u64) -> u32 {
    2u32 << (irta & IRTA_S_MASK)
}
