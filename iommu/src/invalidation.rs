//! Queued invalidation (VT-d specification §6.5.2, "Queued Invalidation Interface"): the
//! invalidation queue in guest memory (IQA, IQH, IQT), 128-bit descriptors, the
//! "Interrupt Entry Cache Invalidate Descriptor" (§6.5.2.7), the "Invalidation Wait
//! Descriptor" with its status write and completion event (ICS.IWC, IECTL/IEDATA/IEADDR:
//! "Hardware Generation of Invalidation Completion Events"), and queue errors ("Hardware
//! Handling of Queued Invalidation Interface Errors": IQE in FSTS, IQERCD.IQEI, the queue
//! stops with IQH at the offending descriptor until software clears IQE).
//!
//! Context-cache (type 1) and IOTLB (type 2) invalidate descriptors complete as no-ops:
//! DMA remapping is not modelled yet. Device-TLB (type 3) and the PASID-based types need
//! ECAP.DT / scalable mode, which this unit does not report: they are invalid types.
//! Descriptors are processed synchronously when IQT is written, so every descriptor has
//! completed before a wait descriptor behind it: the fence (FN) holds trivially.

use apic::MsiMessage;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::regs::*;
use crate::Iommu;

/// Size of a 128-bit descriptor.
pub const DESC_SIZE: u64 = 16;

/// Descriptor type, bits 3:0 (with bits 11:9 as type bits 6:4).
pub const DESC_TYPE_MASK: u64 = 0xf;
pub const DESC_TYPE_HI_MASK: u64 = 0x7 << 9;
pub const DESC_CONTEXT_CACHE: u64 = 0x1;
pub const DESC_IOTLB: u64 = 0x2;
pub const DESC_IEC: u64 = 0x4;
pub const DESC_WAIT: u64 = 0x5;

/// IEC descriptor: G, bit 4 (0 = global, 1 = index-selective).
pub const IEC_G_INDEX: u64 = 1 << 4;
/// IEC descriptor: IM, bits 31:27.
pub const IEC_IM_SHIFT: u32 = 27;
/// IEC descriptor: IIDX, bits 47:32.
pub const IEC_IIDX_SHIFT: u32 = 32;
/// IEC descriptor reserved bits: 8:5, 26:12, 63:48 (and the whole upper qword).
pub const IEC_RSVD_LO: u64 = (0xf << 5) | (0x7fff << 12) | (0xffff << 48);

/// Wait descriptor: IF, bit 4 (interrupt on completion).
pub const WAIT_IF: u64 = 1 << 4;
/// Wait descriptor: SW, bit 5 (status write).
pub const WAIT_SW: u64 = 1 << 5;
/// Wait descriptor: FN, bit 6 (fence).
pub const WAIT_FN: u64 = 1 << 6;
/// Wait descriptor: status data, bits 63:32.
pub const WAIT_STATUS_DATA_SHIFT: u32 = 32;
/// Wait descriptor reserved bits: 7 (PD: page requests are not supported), 8, 31:12;
/// upper qword bits 1:0 (the status address is dword aligned).
pub const WAIT_RSVD_LO: u64 = (1 << 7) | (1 << 8) | (0xfffff << 12);
pub const WAIT_RSVD_HI: u64 = 0x3;

/// Context-cache descriptor reserved bits: 8:6, 15:12, 63:50 (G is 5:4, DID 31:16,
/// SID 47:32, FM 49:48), and the whole upper qword.
pub const CC_RSVD_LO: u64 = (0x7 << 6) | (0xf << 12) | (0x3fff << 50);
/// IOTLB descriptor reserved bits: 8, 15:12, 63:32 (G 5:4, DW 6, DR 7, DID 31:16);
/// upper qword 75:71 (ADDR 127:76, IH 70, AM 69:64).
pub const IOTLB_RSVD_LO: u64 = (1 << 8) | (0xf << 12) | (0xffff_ffff << 32);
pub const IOTLB_RSVD_HI: u64 = 0xf80;

/// The queued-invalidation registers.
#[derive(Debug)]
pub struct InvalidationQueue {
    pub iqh: u64,
    pub iqt: u64,
    pub iqa: u64,
    pub iqercd: u64,
    pub ics: u32,
    pub iectl: u32,
    pub iedata: u32,
    pub ieaddr: u32,
    pub ieuaddr: u32,
}

impl Default for InvalidationQueue {
    fn default() -> Self {
        Self {
            iqh: 0,
            iqt: 0,
            iqa: 0,
            iqercd: 0,
            ics: 0,
            iectl: CTL_IM,
            iedata: 0,
            ieaddr: 0,
            ieuaddr: 0,
        }
    }
}

impl InvalidationQueue {
    /// Queue length in bytes: 2^QS pages.
    pub fn size(&self) -> u64 {
        0x1000 << (self.iqa & IQA_QS_MASK)
    }

    fn completion_message(&self) -> MsiMessage {
        MsiMessage::new(
            0,
            (u64::from(self.ieuaddr) << 32) | u64::from(self.ieaddr),
            self.iedata,
        )
    }

    /// Software writes IECTL: only IM is writable; unmasking with IP set sends the event.
    pub fn write_iectl(&mut self, v: u32, out: &mut Vec<MsiMessage>) {
        self.iectl = (self.iectl & CTL_IP) | (v & CTL_IM);
        if self.iectl & (CTL_IM | CTL_IP) == CTL_IP {
            out.push(self.completion_message());
            self.iectl &= !CTL_IP;
        }
    }

    /// Software writes ICS: IWC is RW1C; clearing it also clears IP.
    pub fn write_ics(&mut self, v: u32) {
        if v & ICS_IWC != 0 {
            self.ics &= !ICS_IWC;
            self.iectl &= !CTL_IP;
        }
    }

    /// An invalidation wait descriptor with IF completed: set IWC; if it was
    /// clear, this is a new event: set IP and send unless masked.
    fn complete_wait_with_interrupt(&mut self, out: &mut Vec<MsiMessage>) {
        if self.ics & ICS_IWC != 0 {
            return;
        }
        self.ics |= ICS_IWC;
        self.iectl |= CTL_IP;
        if self.iectl & CTL_IM == 0 {
            out.push(self.completion_message());
            self.iectl &= !CTL_IP;
        }
    }
}

/// Why a descriptor could not be processed: the IQEI value.
type QueueError = u64;

impl<M: GuestMemory> Iommu<M> {
    /// Software wrote IQT: remember it and, if queued invalidation is on, run the queue.
    pub(crate) fn write_iqt(&mut self, v: u64) {
        self.queue.iqt = v & IQ_OFFSET_MASK;
        self.run_queue();
    }

    /// Processes descriptors from IQH up to IQT unless QI is off or IQE is pending.
    pub(crate) fn run_queue(&mut self) {
        if self.gsts & G_QIE == 0 || self.faults.fsts() & FSTS_IQE != 0 {
            return;
        }
        let size = self.queue.size();
        if self.queue.iqt >= size {
            return self.queue_error(IQEI_INVALID_TAIL);
        }
        // A queue shrunk under a head beyond its end: treat the head as invalid too.
        if self.queue.iqh >= size {
            return self.queue_error(IQEI_FETCH_ERROR);
        }
        while self.queue.iqh != self.queue.iqt {
            let base = self.queue.iqa & IQA_ADDR_MASK;
            let Some(addr) = base.checked_add(self.queue.iqh) else {
                return self.queue_error(IQEI_FETCH_ERROR);
            };
            let mut bytes = [0u8; DESC_SIZE as usize];
            if self.mem.read_slice(&mut bytes, GuestAddress(addr)).is_err() {
                return self.queue_error(IQEI_FETCH_ERROR);
            }
            let mut q = [0u8; 8];
            q.copy_from_slice(&bytes[..8]);
            let lo = u64::from_le_bytes(q);
            q.copy_from_slice(&bytes[8..]);
            let hi = u64::from_le_bytes(q);
            if let Err(iqei) = self.process_descriptor(lo, hi) {
                return self.queue_error(iqei);
            }
            self.counters.descriptors += 1;
            self.queue.iqh = (self.queue.iqh + DESC_SIZE) % size;
        }
    }

    fn queue_error(&mut self, iqei: u64) {
        self.counters.queue_errors += 1;
        self.queue.iqercd = (self.queue.iqercd & !IQERCD_IQEI_MASK) | iqei;
        self.faults.set_status(FSTS_IQE, &mut self.interrupts);
        tracing::debug!(
            target: "iommu",
            iqei,
            iqh = self.queue.iqh,
            iqt = self.queue.iqt,
            "invalidation queue error"
        );
    }

    fn process_descriptor(&mut self, lo: u64, hi: u64) -> Result<(), QueueError> {
        if lo & DESC_TYPE_HI_MASK != 0 {
            return Err(IQEI_INVALID_TYPE);
        }
        match lo & DESC_TYPE_MASK {
            DESC_CONTEXT_CACHE => {
                let g = (lo >> 4) & 0x3;
                if g == 0 || lo & CC_RSVD_LO != 0 || hi != 0 {
                    return Err(IQEI_RESERVED_FIELD);
                }
                tracing::debug!(target: "iommu", lo, "context-cache invalidation (no-op)");
                Ok(())
            }
            DESC_IOTLB => {
                let g = (lo >> 4) & 0x3;
                if g == 0 || lo & IOTLB_RSVD_LO != 0 || hi & IOTLB_RSVD_HI != 0 {
                    return Err(IQEI_RESERVED_FIELD);
                }
                tracing::debug!(target: "iommu", lo, hi, "IOTLB invalidation (no-op)");
                Ok(())
            }
            DESC_IEC => {
                if lo & IEC_RSVD_LO != 0 || hi != 0 {
                    return Err(IQEI_RESERVED_FIELD);
                }
                self.counters.invalidations += 1;
                if lo & IEC_G_INDEX != 0 {
                    let iidx = (lo >> IEC_IIDX_SHIFT) as u16;
                    let im = ((lo >> IEC_IM_SHIFT) & 0x1f) as u8;
                    self.iec.invalidate_indices(iidx, im);
                    tracing::debug!(target: "iommu", iidx, im, "IEC index-selective invalidation");
                } else {
                    self.iec.invalidate_all();
                    tracing::debug!(target: "iommu", "IEC global invalidation");
                }
                Ok(())
            }
            DESC_WAIT => {
                if lo & WAIT_RSVD_LO != 0 || hi & WAIT_RSVD_HI != 0 {
                    return Err(IQEI_RESERVED_FIELD);
                }
                self.counters.invalidation_waits += 1;
                if lo & WAIT_SW != 0 {
                    let data = (lo >> WAIT_STATUS_DATA_SHIFT) as u32;
                    // A status address outside guest memory drops the write (an aborted
                    // DMA write); the queue goes on.
                    let ok = self.mem.write_obj(data.to_le(), GuestAddress(hi)).is_ok();
                    tracing::debug!(target: "iommu", address = hi, data, ok, "invalidation wait status write");
                }
                if lo & WAIT_IF != 0 {
                    self.queue
                        .complete_wait_with_interrupt(&mut self.interrupts);
                    tracing::debug!(target: "iommu", "invalidation wait completion event");
                }
                Ok(())
            }
            _ => Err(IQEI_INVALID_TYPE),
        }
    }
}

/// Builders for descriptors (tests, benchmarks, VMM-side tools).
pub mod descriptor {
    use super::*;

    /// Global IEC invalidation.
    pub const fn iec_global() -> [u64; 2] {
        [DESC_IEC, 0]
    }

    /// Index-selective IEC invalidation of 2^`im` entries around `iidx`.
    pub const fn iec_index(iidx: u16, im: u8) -> [u64; 2] {
        [
            DESC_IEC
                | IEC_G_INDEX
                | (((im & 0x1f) as u64) << IEC_IM_SHIFT)
                | ((iidx as u64) << IEC_IIDX_SHIFT),
            0,
        ]
    }

    /// Invalidation wait: status write of `data` to `addr` when `sw`, interrupt when
    /// `interrupt`, fence when `fence`.
    pub const fn wait(sw: bool, interrupt: bool, fence: bool, data: u32, addr: u64) -> [u64; 2] {
        let mut lo = DESC_WAIT | ((data as u64) << WAIT_STATUS_DATA_SHIFT);
        if sw {
            lo |= WAIT_SW;
        }
        if interrupt {
            lo |= WAIT_IF;
        }
        if fence {
            lo |= WAIT_FN;
        }
        [lo, addr & !WAIT_RSVD_HI]
    }
}
