//! Local APIC register layout: offsets in the 4 KiB xAPIC register page (Intel SDM vol. 3
//! §11.4.1), the x2APIC MSR numbers (§11.12.1.2), and the bit fields
//! of each register. Every constant of the crate's register interface is declared here, once.
//!
//! The same page layout is the virtual-APIC page of APIC virtualization (§30.1): each 32-bit
//! register sits at a 16-byte aligned offset, bytes 4–15 of each slot are unused.

// ---------------------------------------------------------------------------------------------
// Register offsets (xAPIC MMIO page; also virtual-APIC page offsets). SDM §11.4.1.
// ---------------------------------------------------------------------------------------------

/// Size of the xAPIC register page (and of a virtual-APIC page).
pub const APIC_PAGE_SIZE: usize = 4096;
/// Local APIC ID register.
pub const APIC_ID: u16 = 0x020;
/// Local APIC version register.
pub const APIC_VERSION: u16 = 0x030;
/// Task-priority register (TPR), §11.8.3.1.
pub const APIC_TPR: u16 = 0x080;
/// Arbitration-priority register (APR), §11.6.2.4; xAPIC only.
pub const APIC_APR: u16 = 0x090;
/// Processor-priority register (PPR), §11.8.3.1.
pub const APIC_PPR: u16 = 0x0a0;
/// EOI register, §11.8.5.
pub const APIC_EOI: u16 = 0x0b0;
/// Remote read register (RRD); xAPIC only, reads 0.
pub const APIC_RRD: u16 = 0x0c0;
/// Logical destination register (LDR), §11.6.2.2.
pub const APIC_LDR: u16 = 0x0d0;
/// Destination format register (DFR), §11.6.2.2; xAPIC only.
pub const APIC_DFR: u16 = 0x0e0;
/// Spurious-interrupt vector register (SVR), §11.9.
pub const APIC_SVR: u16 = 0x0f0;
/// In-service register, 8 × 32 bits at 0x100–0x170, §11.8.4.
pub const APIC_ISR: u16 = 0x100;
/// Trigger-mode register, 8 × 32 bits at 0x180–0x1f0, §11.8.4.
pub const APIC_TMR: u16 = 0x180;
/// Interrupt-request register, 8 × 32 bits at 0x200–0x270, §11.8.4.
pub const APIC_IRR: u16 = 0x200;
/// Error status register (ESR), §11.5.3.
pub const APIC_ESR: u16 = 0x280;
/// LVT corrected machine check interrupt (CMCI) register, §11.5.1.
pub const APIC_LVT_CMCI: u16 = 0x2f0;
/// Interrupt command register, low half (x2APIC: the whole 64-bit ICR), §11.6.1.
pub const APIC_ICR_LOW: u16 = 0x300;
/// Interrupt command register, high half (destination, bits 63:56); xAPIC only.
pub const APIC_ICR_HIGH: u16 = 0x310;
/// LVT timer register, §11.5.1.
pub const APIC_LVT_TIMER: u16 = 0x320;
/// LVT thermal sensor register, §11.5.1.
pub const APIC_LVT_THERMAL: u16 = 0x330;
/// LVT performance monitoring counters register, §11.5.1.
pub const APIC_LVT_PMI: u16 = 0x340;
/// LVT LINT0 register, §11.5.1.
pub const APIC_LVT_LINT0: u16 = 0x350;
/// LVT LINT1 register, §11.5.1.
pub const APIC_LVT_LINT1: u16 = 0x360;
/// LVT error register, §11.5.1.
pub const APIC_LVT_ERROR: u16 = 0x370;
/// Timer initial count register, §11.5.4.
pub const APIC_TIMER_INITIAL_COUNT: u16 = 0x380;
/// Timer current count register (read-only), §11.5.4.
pub const APIC_TIMER_CURRENT_COUNT: u16 = 0x390;
/// Timer divide configuration register, §11.5.4.
pub const APIC_TIMER_DIVIDE: u16 = 0x3e0;
/// SELF IPI register (x2APIC only, write-only), §11.12.11.
pub const APIC_SELF_IPI: u16 = 0x3f0;

// ---------------------------------------------------------------------------------------------
// MSRs. SDM §11.4.4 (IA32_APIC_BASE), §11.5.4.1 (TSC deadline), §11.12.1.2 (x2APIC range).
// ---------------------------------------------------------------------------------------------

/// IA32_APIC_BASE.
pub const MSR_IA32_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE.
pub const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
/// First MSR of the x2APIC register range: MSR = 0x800 + (MMIO offset >> 4).
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// Last MSR of the x2APIC register range.
pub const MSR_X2APIC_LAST: u32 = 0x8ff;
/// x2APIC ICR (one 64-bit MSR).
pub const MSR_X2APIC_ICR: u32 = x2apic_msr(APIC_ICR_LOW);
/// x2APIC EOI.
pub const MSR_X2APIC_EOI: u32 = x2apic_msr(APIC_EOI);
/// x2APIC TPR.
pub const MSR_X2APIC_TPR: u32 = x2apic_msr(APIC_TPR);
/// x2APIC SELF IPI.
pub const MSR_X2APIC_SELF_IPI: u32 = x2apic_msr(APIC_SELF_IPI);

/// The x2APIC MSR of the register at MMIO `offset`.
pub const fn x2apic_msr(offset: u16) -> u32 {
    MSR_X2APIC_FIRST + (offset as u32 >> 4)
}

/// The register page offset of x2APIC MSR `msr` (which must lie in 0x800–0x8ff).
pub const fn x2apic_offset(msr: u32) -> u16 {
    ((msr & 0xff) << 4) as u16
}

/// Whether the register at `offset` can be read through RDMSR in x2APIC mode (§11.12.1.2):
/// everything but EOI, SELF IPI and the xAPIC-only APR, RRD, DFR and ICR high.
pub const fn x2apic_readable(offset: u16) -> bool {
    matches!(
        offset,
        APIC_ID
            | APIC_VERSION
            | APIC_TPR
            | APIC_PPR
            | APIC_LDR
            | APIC_SVR
            | APIC_ESR
            | APIC_LVT_CMCI
            | APIC_ICR_LOW
            | APIC_LVT_TIMER
            | APIC_LVT_THERMAL
            | APIC_LVT_PMI
            | APIC_LVT_LINT0
            | APIC_LVT_LINT1
            | APIC_LVT_ERROR
            | APIC_TIMER_INITIAL_COUNT
            | APIC_TIMER_CURRENT_COUNT
            | APIC_TIMER_DIVIDE
    ) || (offset >= APIC_ISR && offset < APIC_ESR && offset & 0xf == 0)
}

/// IA32_APIC_BASE: BSP flag, bit 8.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE: x2APIC enable (EXTD), bit 10.
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE: APIC global enable (EN), bit 11.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE: base address field starts at bit 12.
pub const APIC_BASE_ADDR_MASK: u64 = !0xfff;
/// IA32_APIC_BASE: bits 7:0 and 9 are reserved.
pub const APIC_BASE_RESERVED_LOW: u64 = 0x2ff;
/// Default (power-up) APIC base address.
pub const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;

// ---------------------------------------------------------------------------------------------
// Register fields.
// ---------------------------------------------------------------------------------------------

/// Version register value for an integrated APIC (§11.4.8): version 0x14.
pub const APIC_VERSION_VALUE: u32 = 0x14;
/// Version register: Max LVT Entry (number of LVT entries − 1), bits 23:16. Seven entries
/// (timer, thermal, PMI, LINT0, LINT1, error, CMCI).
pub const APIC_VERSION_MAX_LVT: u32 = 6 << 16;
/// Version register: bit 24, "suppress EOI-broadcasts" supported (§11.8.5).
pub const APIC_VERSION_DIRECTED_EOI: u32 = 1 << 24;

/// xAPIC ID register: the ID sits in bits 31:24.
pub const XAPIC_ID_SHIFT: u32 = 24;
pub const XAPIC_ID_MASK: u32 = 0xff << XAPIC_ID_SHIFT;
/// xAPIC LDR: logical ID in bits 31:24.
pub const XAPIC_LDR_MASK: u32 = 0xff00_0000;
/// DFR model, bits 31:28: 1111b flat, 0000b cluster; bits 27:0 read as ones.
pub const APIC_DFR_MODEL_MASK: u32 = 0xf000_0000;
pub const APIC_DFR_RESERVED_ONES: u32 = 0x0fff_ffff;
pub const APIC_DFR_FLAT: u32 = 0xffff_ffff;

/// TPR/PPR: priority class bits 7:4, sub-class bits 3:0.
pub const APIC_PRIORITY_MASK: u32 = 0xff;
pub const APIC_PRIORITY_CLASS: u8 = 0xf0;

/// SVR: spurious vector, bits 7:0.
pub const SVR_VECTOR_MASK: u32 = 0xff;
/// SVR: APIC software enable, bit 8.
pub const SVR_APIC_ENABLED: u32 = 1 << 8;
/// SVR: focus processor checking (1 = disabled), bit 9.
pub const SVR_FOCUS_DISABLED: u32 = 1 << 9;
/// SVR: EOI-broadcast suppression, bit 12 (only when the version register advertises it).
pub const SVR_SUPPRESS_EOI_BROADCAST: u32 = 1 << 12;
/// SVR reset value (§11.4.7.1).
pub const SVR_RESET: u32 = 0xff;

/// ESR bits (§11.5.3, error status register).
pub const ESR_SEND_CHECKSUM: u32 = 1 << 0;
pub const ESR_RECEIVE_CHECKSUM: u32 = 1 << 1;
pub const ESR_SEND_ACCEPT: u32 = 1 << 2;
pub const ESR_RECEIVE_ACCEPT: u32 = 1 << 3;
pub const ESR_REDIRECTABLE_IPI: u32 = 1 << 4;
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// Illegal register address: xAPIC mode only.
pub const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// Vectors 0–15 are illegal for fixed/lowest-priority interrupts (§11.5.2).
pub const FIRST_LEGAL_VECTOR: u8 = 16;

/// LVT fields (§11.5.1, local vector table).
pub const LVT_VECTOR_MASK: u32 = 0xff;
pub const LVT_DELIVERY_MODE_SHIFT: u32 = 8;
pub const LVT_DELIVERY_MODE_MASK: u32 = 0x7 << LVT_DELIVERY_MODE_SHIFT;
/// Delivery status (read-only; always idle in this model: delivery is immediate).
pub const LVT_DELIVERY_STATUS: u32 = 1 << 12;
/// Interrupt input pin polarity (LINT0/LINT1): 1 = active low.
pub const LVT_POLARITY_LOW: u32 = 1 << 13;
/// Remote IRR (LINT0/LINT1, read-only).
pub const LVT_REMOTE_IRR: u32 = 1 << 14;
/// Trigger mode (LINT0/LINT1): 1 = level.
pub const LVT_TRIGGER_LEVEL: u32 = 1 << 15;
/// Mask bit.
pub const LVT_MASKED: u32 = 1 << 16;
/// Timer mode, bits 18:17: 00 one-shot, 01 periodic, 10 TSC-deadline, 11 reserved.
pub const LVT_TIMER_MODE_SHIFT: u32 = 17;
pub const LVT_TIMER_MODE_MASK: u32 = 0x3 << LVT_TIMER_MODE_SHIFT;
/// Timer mode bit 18: set in TSC-deadline mode (10b), writable only when supported.
pub const LVT_TIMER_TSC_DEADLINE: u32 = 2 << LVT_TIMER_MODE_SHIFT;

/// Writable bits of each LVT register.
pub const LVT_TIMER_WRITABLE: u32 = LVT_VECTOR_MASK | LVT_MASKED | LVT_TIMER_MODE_MASK;
pub const LVT_LINT_WRITABLE: u32 =
    LVT_VECTOR_MASK | LVT_DELIVERY_MODE_MASK | LVT_POLARITY_LOW | LVT_TRIGGER_LEVEL | LVT_MASKED;
pub const LVT_ERROR_WRITABLE: u32 = LVT_VECTOR_MASK | LVT_MASKED;
/// Thermal, PMI and CMCI: vector, delivery mode, mask.
pub const LVT_DM_WRITABLE: u32 = LVT_VECTOR_MASK | LVT_DELIVERY_MODE_MASK | LVT_MASKED;
/// Read-only LVT bits (delivery status, remote IRR): ignored on write, not reserved.
pub const LVT_READ_ONLY: u32 = LVT_DELIVERY_STATUS | LVT_REMOTE_IRR;

/// ICR fields (§11.6.1 interrupt command register; x2APIC: §11.12.9).
pub const ICR_VECTOR_MASK: u32 = 0xff;
pub const ICR_DELIVERY_MODE_SHIFT: u32 = 8;
pub const ICR_DEST_LOGICAL: u32 = 1 << 11;
/// Delivery status (xAPIC, read-only; reserved in x2APIC).
pub const ICR_DELIVERY_STATUS: u32 = 1 << 12;
/// Level: 1 = assert, 0 = de-assert.
pub const ICR_LEVEL_ASSERT: u32 = 1 << 14;
/// Trigger mode: 1 = level.
pub const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
/// Destination shorthand, bits 19:18.
pub const ICR_SHORTHAND_SHIFT: u32 = 18;
pub const ICR_SHORTHAND_MASK: u32 = 0x3 << ICR_SHORTHAND_SHIFT;
/// Writable (defined) bits of the ICR low dword.
pub const ICR_LOW_WRITABLE: u32 = ICR_VECTOR_MASK
    | (0x7 << ICR_DELIVERY_MODE_SHIFT)
    | ICR_DEST_LOGICAL
    | ICR_LEVEL_ASSERT
    | ICR_TRIGGER_LEVEL
    | ICR_SHORTHAND_MASK;
/// x2APIC mode: the 64-bit ICR's upper half is kept at 0x304, next to its lower half, as
/// RDMSR 830H under APIC-register virtualization reads the 8 bytes at 0x300 (SDM §30.5).
pub const APIC_ICR_X2APIC_HIGH: u16 = APIC_ICR_LOW + 4;
/// xAPIC ICR high: destination in bits 31:24 (ICR bits 63:56).
pub const ICR_HIGH_XAPIC_DEST_MASK: u32 = 0xff00_0000;
pub const ICR_HIGH_XAPIC_DEST_SHIFT: u32 = 24;

/// Divide configuration: bits 0, 1 and 3 (§11.5.4, divide configuration register).
pub const TIMER_DIVIDE_WRITABLE: u32 = 0xb;

/// SELF IPI: vector bits 7:0.
pub const SELF_IPI_VECTOR_MASK: u32 = 0xff;

/// xAPIC broadcast destination (physical 0xff; logical 0xff matches all).
pub const XAPIC_BROADCAST: u32 = 0xff;
/// x2APIC broadcast destination.
pub const X2APIC_BROADCAST: u32 = 0xffff_ffff;

/// The x2APIC LDR derived from the x2APIC ID (§11.12.10.2): cluster ID (`id >> 4`) in bits
/// 31:16, bit `id & 0xf` set in bits 15:0.
pub const fn x2apic_ldr(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

// ---------------------------------------------------------------------------------------------
// The register page itself.
// ---------------------------------------------------------------------------------------------

/// A 4 KiB register page with the hardware layout: the xAPIC MMIO page and the virtual-APIC
/// page of APICv (SDM §30.1) share it. Indexing masks the offset, so no guest value can
/// index out of bounds.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct ApicPage {
    words: [u32; APIC_PAGE_SIZE / 4],
}

impl Default for ApicPage {
    fn default() -> Self {
        Self {
            words: [0; APIC_PAGE_SIZE / 4],
        }
    }
}

impl std::fmt::Debug for ApicPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApicPage")
            .field("tpr", &self.read(APIC_TPR))
            .field("ppr", &self.read(APIC_PPR))
            .field("svr", &self.read(APIC_SVR))
            .finish_non_exhaustive()
    }
}

/// Which 256-bit vector array of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorArray {
    Isr,
    Tmr,
    Irr,
}

impl VectorArray {
    const fn base(self) -> u16 {
        match self {
            Self::Isr => APIC_ISR,
            Self::Tmr => APIC_TMR,
            Self::Irr => APIC_IRR,
        }
    }
}

const fn word_index(offset: u16) -> usize {
    (offset as usize >> 2) & (APIC_PAGE_SIZE / 4 - 1)
}

const fn array_word(array: VectorArray, chunk: usize) -> usize {
    word_index(array.base()) + (chunk & 7) * 4
}

impl ApicPage {
    /// Reads the 32-bit word at byte `offset` (rounded down to 4 bytes, wrapped to the page).
    #[inline]
    pub fn read(&self, offset: u16) -> u32 {
        self.words[word_index(offset)]
    }

    /// Writes the 32-bit word at byte `offset` (rounded down to 4 bytes, wrapped to the page).
    #[inline]
    pub fn write(&mut self, offset: u16, value: u32) {
        self.words[word_index(offset)] = value;
    }

    /// Reads one byte of the page.
    pub fn read_byte(&self, offset: u16) -> u8 {
        let word = self.read(offset & !3);
        (word >> ((offset & 3) * 8)) as u8
    }

    /// Writes one byte of the page.
    pub fn write_byte(&mut self, offset: u16, byte: u8) {
        let shift = (offset & 3) * 8;
        let word = self.read(offset & !3);
        self.write(
            offset & !3,
            (word & !(0xff << shift)) | (u32::from(byte) << shift),
        );
    }

    /// The 32 bits of `array` holding vectors `32 * chunk ..`.
    #[inline]
    pub fn chunk(&self, array: VectorArray, chunk: usize) -> u32 {
        self.words[array_word(array, chunk)]
    }

    #[inline]
    pub fn set_chunk(&mut self, array: VectorArray, chunk: usize, value: u32) {
        self.words[array_word(array, chunk)] = value;
    }

    #[inline]
    pub fn test(&self, array: VectorArray, vector: u8) -> bool {
        self.chunk(array, usize::from(vector >> 5)) & (1 << (vector & 31)) != 0
    }

    #[inline]
    pub fn set(&mut self, array: VectorArray, vector: u8) {
        self.words[array_word(array, usize::from(vector >> 5))] |= 1 << (vector & 31);
    }

    #[inline]
    pub fn clear(&mut self, array: VectorArray, vector: u8) {
        self.words[array_word(array, usize::from(vector >> 5))] &= !(1 << (vector & 31));
    }

    /// The highest vector set in `array`.
    #[inline]
    pub fn highest(&self, array: VectorArray) -> Option<u8> {
        (0..8).rev().find_map(|chunk| {
            let bits = self.chunk(array, chunk);
            (bits != 0).then(|| (chunk as u32 * 32 + 31 - bits.leading_zeros()) as u8)
        })
    }

    /// The 256 bits of `array` as four 64-bit words (bit n = vector n).
    pub fn bits(&self, array: VectorArray) -> [u64; 4] {
        std::array::from_fn(|i| {
            u64::from(self.chunk(array, 2 * i)) | (u64::from(self.chunk(array, 2 * i + 1)) << 32)
        })
    }

    /// ORs 256 request bits (bit n = vector n) into `array`.
    #[inline]
    pub fn or_bits(&mut self, array: VectorArray, bits: &[u64; 4]) {
        for (i, word) in bits.iter().enumerate() {
            let lo = array_word(array, 2 * i);
            let hi = array_word(array, 2 * i + 1);
            self.words[lo] |= *word as u32;
            self.words[hi] |= (*word >> 32) as u32;
        }
    }

    /// The raw page bytes (for a VMM that maps it, and for tests).
    pub fn as_bytes(&self) -> [u8; APIC_PAGE_SIZE] {
        let mut out = [0u8; APIC_PAGE_SIZE];
        for (i, w) in self.words.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x2apic_msr_numbers_match_the_sdm_table() {
        assert_eq!(x2apic_msr(APIC_ID), 0x802);
        assert_eq!(x2apic_msr(APIC_VERSION), 0x803);
        assert_eq!(MSR_X2APIC_TPR, 0x808);
        assert_eq!(x2apic_msr(APIC_PPR), 0x80a);
        assert_eq!(MSR_X2APIC_EOI, 0x80b);
        assert_eq!(x2apic_msr(APIC_LDR), 0x80d);
        assert_eq!(x2apic_msr(APIC_SVR), 0x80f);
        assert_eq!(x2apic_msr(APIC_ISR), 0x810);
        assert_eq!(x2apic_msr(APIC_TMR), 0x818);
        assert_eq!(x2apic_msr(APIC_IRR), 0x820);
        assert_eq!(x2apic_msr(APIC_ESR), 0x828);
        assert_eq!(x2apic_msr(APIC_LVT_CMCI), 0x82f);
        assert_eq!(MSR_X2APIC_ICR, 0x830);
        assert_eq!(x2apic_msr(APIC_LVT_TIMER), 0x832);
        assert_eq!(x2apic_msr(APIC_LVT_ERROR), 0x837);
        assert_eq!(x2apic_msr(APIC_TIMER_INITIAL_COUNT), 0x838);
        assert_eq!(x2apic_msr(APIC_TIMER_CURRENT_COUNT), 0x839);
        assert_eq!(x2apic_msr(APIC_TIMER_DIVIDE), 0x83e);
        assert_eq!(MSR_X2APIC_SELF_IPI, 0x83f);
        assert_eq!(x2apic_offset(0x83e), APIC_TIMER_DIVIDE);
    }

    #[test]
    fn x2apic_ldr_is_cluster_and_bit() {
        assert_eq!(x2apic_ldr(0), 0x0000_0001);
        assert_eq!(x2apic_ldr(0x13), 0x0001_0008);
        assert_eq!(x2apic_ldr(0xffff_ffff), 0xffff_8000);
    }

    #[test]
    fn vector_arrays_use_16_byte_strides() {
        let mut page = ApicPage::default();
        page.set(VectorArray::Irr, 0x41);
        assert_eq!(
            page.read(APIC_IRR + 0x20),
            1 << 1,
            "vector 0x41 is IRR word 2 bit 1"
        );
        page.set(VectorArray::Irr, 0xff);
        assert_eq!(page.highest(VectorArray::Irr), Some(0xff));
        page.clear(VectorArray::Irr, 0xff);
        assert_eq!(page.highest(VectorArray::Irr), Some(0x41));
        assert_eq!(page.bits(VectorArray::Irr)[1], 1 << 1);
        assert_eq!(page.highest(VectorArray::Isr), None);
    }
}
