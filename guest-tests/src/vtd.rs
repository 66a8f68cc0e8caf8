//! A guest driver for Intel VT-d interrupt remapping, doing what Linux's
//! drivers/iommu/intel/irq_remapping.c does at bring-up: program IRTA and latch it (SIRTP),
//! enable queued invalidation, invalidate the interrupt entry cache and wait for it, then
//! enable remapping. VT-d specification chapters 5 (interrupt remapping), 6.5 (queued
//! invalidation), 7 (fault recording) and 10 (registers).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::arch::Global;

pub const VTD_BASE: u64 = 0xfed9_0000;

pub const REG_CAP: u64 = 0x08;
pub const REG_ECAP: u64 = 0x10;
pub const REG_GCMD: u64 = 0x18;
pub const REG_GSTS: u64 = 0x1c;
pub const REG_FSTS: u64 = 0x34;
pub const REG_FECTL: u64 = 0x38;
pub const REG_FEDATA: u64 = 0x3c;
pub const REG_FEADDR: u64 = 0x40;
pub const REG_IQT: u64 = 0x88;
pub const REG_IQA: u64 = 0x90;
pub const REG_IRTA: u64 = 0xb8;

/// GCMD/GSTS bits.
pub const G_QIE: u32 = 1 << 26;
pub const G_IRE: u32 = 1 << 25;
pub const G_SIRTP: u32 = 1 << 24;
pub const G_CFI: u32 = 1 << 23;
/// Status bits that reflect a persistent command (rewritten with every GCMD write).
const G_PERSISTENT: u32 = (1 << 31) | G_QIE | G_IRE | G_CFI;

pub const CAP_PI: u64 = 1 << 59;
pub const ECAP_QI: u64 = 1 << 1;
pub const ECAP_IR: u64 = 1 << 3;
pub const ECAP_EIM: u64 = 1 << 4;
pub const FSTS_PPF: u32 = 1 << 1;
pub const FSTS_FRI_SHIFT: u32 = 8;
pub const FECTL_IM: u32 = 1 << 31;
pub const FRCD_F: u64 = 1 << 63;
const IRTA_EIME: u64 = 1 << 11;

/// IRTE bits (VT-d §9.10 remapped format, §9.11 posted format).
pub const IRTE_P: u64 = 1 << 0;
pub const IRTE_FPD: u64 = 1 << 1;
pub const IRTE_DM_LOGICAL: u64 = 1 << 2;
pub const IRTE_URG: u64 = 1 << 14;
pub const IRTE_IM_POSTED: u64 = 1 << 15;
/// SVT = 01b: verify the request's source ID against SID with SQ.
pub const IRTE_SVT_SID: u64 = 1 << 18;

/// Table entries: 2^(S + 1) with S = 7.
pub const IRT_ENTRIES: usize = 256;
const IRTA_S: u64 = 7;
const QUEUE_ENTRIES: usize = 256;

#[repr(C, align(4096))]
struct Page([u64; 512]);
static IRT: Global<Page> = Global::new(Page([0; 512]));
static QUEUE: Global<Page> = Global::new(Page([0; 512]));
static QUEUE_TAIL: AtomicU32 = AtomicU32::new(0);
static WAIT_STATUS: AtomicU32 = AtomicU32::new(0);
static WAIT_SEQ: AtomicU32 = AtomicU32::new(0);

fn reg32(offset: u64) -> *mut u32 {
    (VTD_BASE + offset) as *mut u32
}

pub fn read32(offset: u64) -> u32 {
    // SAFETY: the VT-d register page is identity-mapped MMIO.
    unsafe { reg32(offset).read_volatile() }
}

pub fn write32(offset: u64, v: u32) {
    // SAFETY: as `read32`.
    unsafe { reg32(offset).write_volatile(v) }
}

pub fn read64(offset: u64) -> u64 {
    // SAFETY: as `read32`; 64-bit registers are 8-byte aligned.
    unsafe { ((VTD_BASE + offset) as *mut u64).read_volatile() }
}

pub fn write64(offset: u64, v: u64) {
    // SAFETY: as `read64`.
    unsafe { ((VTD_BASE + offset) as *mut u64).write_volatile(v) }
}

/// Issues one GCMD command and waits for GSTS to show it (one command at a time, §10.4.4).
fn command(bit: u32, set: bool) -> bool {
    let status = read32(REG_GSTS) & G_PERSISTENT;
    let value = if set { status | bit } else { status & !bit };
    write32(REG_GCMD, value);
    crate::testing::wait_until(|| (read32(REG_GSTS) & bit != 0) == set)
}

/// Submits one 128-bit descriptor to the invalidation queue.
fn submit(desc: [u64; 2]) {
    let tail = QUEUE_TAIL.load(Ordering::SeqCst) as usize;
    let q = QUEUE.get() as *mut u64;
    // SAFETY: `tail` < QUEUE_ENTRIES; the queue page is ours.
    unsafe {
        q.add(2 * tail).write_volatile(desc[0]);
        q.add(2 * tail + 1).write_volatile(desc[1]);
    }
    let next = (tail + 1) % QUEUE_ENTRIES;
    QUEUE_TAIL.store(next as u32, Ordering::SeqCst);
    write64(REG_IQT, (next as u64) << 4);
}

/// Invalidation wait with a status write; returns when the status arrives.
pub fn wait_for_queue() -> bool {
    let seq = WAIT_SEQ.fetch_add(1, Ordering::SeqCst) + 1;
    const WAIT: u64 = 0x5;
    const WAIT_SW: u64 = 1 << 5;
    submit([
        WAIT | WAIT_SW | (u64::from(seq) << 32),
        WAIT_STATUS.as_ptr() as u64,
    ]);
    crate::testing::wait_until(|| WAIT_STATUS.load(Ordering::SeqCst) == seq)
}

/// Global interrupt-entry-cache invalidation, then a wait.
pub fn invalidate_iec() -> bool {
    const IEC: u64 = 0x4;
    submit([IEC, 0]);
    wait_for_queue()
}

/// Brings interrupt remapping up. `x2apic`: extended interrupt mode (32-bit destinations).
/// `block_compat`: leave CFI clear, so compatibility-format interrupts are blocked.
pub fn enable(x2apic: bool, block_compat: bool) -> Result<(), &'static str> {
    let ecap = read64(REG_ECAP);
    if ecap & ECAP_IR == 0 || ecap & ECAP_QI == 0 {
        return Err("no IR or QI in ECAP");
    }
    let eime = if x2apic { IRTA_EIME } else { 0 };
    write64(REG_IRTA, IRT.get() as u64 | eime | IRTA_S);
    if !command(G_SIRTP, true) {
        return Err("SIRTP not acknowledged");
    }
    write64(REG_IQT, 0);
    QUEUE_TAIL.store(0, Ordering::SeqCst);
    write64(REG_IQA, QUEUE.get() as u64);
    if !command(G_QIE, true) {
        return Err("QIE not acknowledged");
    }
    if !invalidate_iec() {
        return Err("IEC invalidation did not complete");
    }
    if !command(G_IRE, true) {
        return Err("IRE not acknowledged");
    }
    if !block_compat && !command(G_CFI, true) {
        return Err("CFI not acknowledged");
    }
    Ok(())
}

/// Writes IRTE `index` (then the caller invalidates the cache).
pub fn set_irte(index: usize, lo: u64, hi: u64) {
    let t = IRT.get() as *mut u64;
    // SAFETY: index < IRT_ENTRIES; high half first, present bit (low half) last.
    unsafe {
        t.add(2 * index + 1).write_volatile(hi);
        t.add(2 * index).write_volatile(lo);
    }
}

/// A remapped-format IRTE: fixed, edge, physical `dest` (x2APIC: 32 bits, xAPIC: bits 47:40).
pub fn remapped_irte(vector: u8, dest: u32, x2apic: bool) -> u64 {
    let dest = if x2apic {
        u64::from(dest) << 32
    } else {
        u64::from(dest & 0xff) << 40
    };
    IRTE_P | (u64::from(vector) << 16) | dest
}

/// A posted-format IRTE's halves for a descriptor at `pda` (64-byte aligned).
pub fn posted_irte(vector: u8, pda: u64, urgent: bool) -> (u64, u64) {
    let lo = IRTE_P
        | IRTE_IM_POSTED
        | if urgent { IRTE_URG } else { 0 }
        | (u64::from(vector) << 16)
        | (((pda >> 6) & 0x3ff_ffff) << 38);
    (lo, (pda >> 32) << 32)
}

/// The remappable-format MSI address for `handle` (VT-d §5.1.5.2).
pub fn remappable_address(handle: u16) -> u64 {
    0xfee0_0000 | (u64::from(handle & 0x7fff) << 5) | (1 << 4) | (u64::from(handle >> 15) << 2)
}

/// Fault recording register `i`: (low, high) qwords.
pub fn fault_record(i: u64) -> (u64, u64) {
    let fro = ((read64(REG_CAP) >> 24) & 0x3ff) * 16;
    (read64(fro + 16 * i), read64(fro + 16 * i + 8))
}

/// Clears fault record `i` (F is write-1-to-clear) and the primary-fault status.
pub fn clear_fault(i: u64) {
    let fro = ((read64(REG_CAP) >> 24) & 0x3ff) * 16;
    write64(fro + 16 * i + 8, FRCD_F);
    write32(REG_FSTS, read32(REG_FSTS));
}

/// A posted-interrupt descriptor in guest memory (VT-d §9.12): PIR in words 0–3, the control
/// word (ON bit 0, SN bit 1, NV bits 23:16, NDST bits 63:32) in word 4. The IOMMU and the
/// VMM update it atomically; so does this driver.
#[repr(C, align(64))]
pub struct Descriptor([AtomicU64; 8]);

impl Descriptor {
    pub const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; 8])
    }

    /// Clears it and sets NV and NDST (`apic_id`, encoded for the APIC mode).
    pub fn init(&self, nv: u8, apic_id: u32, x2apic: bool) {
        for w in &self.0 {
            w.store(0, Ordering::SeqCst);
        }
        let ndst = u64::from(if x2apic { apic_id } else { apic_id << 8 });
        self.0[4].store((u64::from(nv) << 16) | (ndst << 32), Ordering::SeqCst);
    }

    pub fn address(&self) -> u64 {
        self as *const Self as u64
    }

    pub fn on(&self) -> bool {
        self.0[4].load(Ordering::SeqCst) & 1 != 0
    }

    pub fn set_sn(&self, sn: bool) {
        if sn {
            self.0[4].fetch_or(2, Ordering::SeqCst);
        } else {
            self.0[4].fetch_and(!2, Ordering::SeqCst);
        }
    }

    pub fn pir_bit(&self, v: u8) -> bool {
        self.0[usize::from(v / 64)].load(Ordering::SeqCst) & (1 << (v % 64)) != 0
    }

    pub fn pir_empty(&self) -> bool {
        self.0[..4].iter().all(|w| w.load(Ordering::SeqCst) == 0)
    }
}

impl Default for Descriptor {
    fn default() -> Self {
        Self::new()
    }
}
