//! Interrupt requests: compatibility format and remappable format (handle, sub-handle),
//! the table walk through the interrupt entry cache, and the checks that turn into fault
//! reasons 0x20–0x26. VT-d specification chapter 5, §5.1 ("Interrupt Remapping":
//! interrupt request formats, the interrupt remapping table, hardware operation and its
//! fault conditions) and §9.10–§9.11 (IRTE formats).

use apic::{InterruptRequest, MsiMessage};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::fault::{FaultReason, IrFault};
use crate::irte::{DecodedIrte, Irte, IrteMode, IRTE_SIZE};
use crate::regs::*;
use crate::Iommu;

/// Remappable format, address bit 2: handle bit 15.
pub const MSI_ADDR_HANDLE_HI: u64 = 1 << 2;
/// Remappable format, address bit 3: SHV (sub-handle valid).
pub const MSI_ADDR_SHV: u64 = 1 << 3;
/// Remappable format, address bit 4: interrupt format (1 = remappable).
pub const MSI_ADDR_REMAPPABLE: u64 = 1 << 4;
/// Remappable format, address bits 19:5: handle bits 14:0.
pub const MSI_ADDR_HANDLE_LO_SHIFT: u32 = 5;
pub const MSI_ADDR_HANDLE_LO_MASK: u64 = 0x7fff << MSI_ADDR_HANDLE_LO_SHIFT;
/// Remappable format, data bits 15:0: the sub-handle (used when SHV is set).
pub const MSI_DATA_SUBHANDLE_MASK: u32 = 0xffff;
/// Remappable format, data bits 31:16: reserved (fault 0x20 when set).
pub const MSI_DATA_RSVD: u32 = 0xffff_0000;

/// A request for the posting step: what a posted-format IRTE asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostingRequest {
    /// Posted-interrupt descriptor address (guest physical, 64-byte aligned).
    pub pda: u64,
    /// Virtual vector: the PIR bit to set.
    pub vector: u8,
    /// URG: notify even when SN is set.
    pub urgent: bool,
    /// Interrupt index of the IRTE.
    pub index: u32,
    /// Requester ID of the request (for fault records).
    pub source_id: u16,
    /// The IRTE's FPD, which qualifies descriptor faults (0x27, 0x28).
    pub fpd: bool,
}

/// The outcome of [`Iommu::remap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemapResult {
    /// Interrupt remapping is off, or a compatibility-format request passed (CFIS set,
    /// EIME clear): deliver the request as the message encodes it.
    Compatibility(InterruptRequest),
    /// A remapped-format IRTE produced this request.
    Remapped {
        request: InterruptRequest,
        index: u32,
    },
    /// A posted-format IRTE: post into the descriptor with [`Iommu::post`].
    Posting(PostingRequest),
    /// The request faulted (and was recorded unless FPD, PFO or overflow said otherwise).
    Fault(IrFault),
    /// The address is not in the 0xFEEx_xxxx interrupt window: not an interrupt request.
    NotInterrupt,
}

/// The interrupt index a remappable-format message names ("Interrupt Requests in Remappable Format"):
/// `handle = addr[2] << 15 | addr[19:5]`, plus `data[15:0]` when SHV is set. May exceed 16
/// bits (then it exceeds every table size).
#[inline]
pub fn interrupt_index(msi: &MsiMessage) -> u32 {
    let handle = (((msi.address & MSI_ADDR_HANDLE_LO_MASK) >> MSI_ADDR_HANDLE_LO_SHIFT)
        | if msi.address & MSI_ADDR_HANDLE_HI != 0 {
            1 << 15
        } else {
            0
        }) as u32;
    if msi.address & MSI_ADDR_SHV != 0 {
        handle + (msi.data & MSI_DATA_SUBHANDLE_MASK)
    } else {
        handle
    }
}

impl<M: GuestMemory> Iommu<M> {
    /// Interrupt remapping of one request ("Interrupt Remapping Hardware Operation"). Faults are recorded as a side effect.
    pub fn remap(&mut self, msi: &MsiMessage) -> RemapResult {
        self.counters.requests += 1;
        if !msi.in_interrupt_window() {
            tracing::trace!(target: "iommu", address = msi.address, "not an interrupt request");
            return RemapResult::NotInterrupt;
        }
        if self.gsts & G_IRE == 0 {
            return self.pass_compatibility(msi);
        }
        if !msi.is_remappable() {
            // "Interrupt Requests in Compatibility Format": blocked when CFIS is clear or when extended interrupt mode is on.
            if self.gsts & G_CFI == 0 || self.extended_interrupt_mode() {
                let f = self.fault(
                    FaultReason::CompatibilityBlocked,
                    msi.requester_id,
                    0,
                    false,
                );
                return RemapResult::Fault(f);
            }
            return self.pass_compatibility(msi);
        }
        let index = interrupt_index(msi);
        let sid = msi.requester_id;
        if msi.data & MSI_DATA_RSVD != 0 {
            let f = self.fault(FaultReason::ReservedFieldInRequest, sid, index, false);
            return RemapResult::Fault(f);
        }
        if index >= irta_entries(self.active_irta) {
            let f = self.fault(FaultReason::IndexBeyondTable, sid, index, false);
            return RemapResult::Fault(f);
        }
        let entry = match self.iec.lookup(index) {
            Some(e) => *e,
            None => match self.fetch_irte(index) {
                Ok(e) => e,
                Err((reason, fpd)) => {
                    return RemapResult::Fault(self.fault(reason, sid, index, fpd));
                }
            },
        };
        if !entry.source.check(sid) {
            let f = self.fault(FaultReason::SourceIdCheckFailed, sid, index, entry.fpd);
            return RemapResult::Fault(f);
        }
        match entry.mode {
            IrteMode::Remapped(r) => {
                self.counters.remapped += 1;
                tracing::trace!(
                    target: "iommu",
                    index,
                    source_id = sid,
                    vector = r.request.vector,
                    destination = r.request.destination,
                    "remapped"
                );
                RemapResult::Remapped {
                    request: r.request,
                    index,
                }
            }
            IrteMode::Posted(p) => {
                tracing::trace!(
                    target: "iommu",
                    index,
                    source_id = sid,
                    vector = p.vector,
                    pda = p.pda,
                    urgent = p.urgent,
                    "posting request"
                );
                RemapResult::Posting(PostingRequest {
                    pda: p.pda,
                    vector: p.vector,
                    urgent: p.urgent,
                    index,
                    source_id: sid,
                    fpd: entry.fpd,
                })
            }
        }
    }

    fn pass_compatibility(&mut self, msi: &MsiMessage) -> RemapResult {
        match msi.decode_compatibility() {
            Some(r) => {
                self.counters.compatibility += 1;
                tracing::trace!(target: "iommu", vector = r.vector, "compatibility pass-through");
                RemapResult::Compatibility(r)
            }
            None => RemapResult::NotInterrupt,
        }
    }

    /// Reads and decodes IRTE `index` from the table in use, caching it when usable.
    /// Errors carry the fault reason and the FPD that qualifies it.
    fn fetch_irte(&mut self, index: u32) -> Result<DecodedIrte, (FaultReason, bool)> {
        self.counters.irte_fetches += 1;
        let base = self.active_irta & IRTA_ADDR_MASK;
        // Fault 0x21 also covers an IRTE at an address above the host address width.
        let addr = base
            .checked_add(u64::from(index) * IRTE_SIZE)
            .filter(|a| a + (IRTE_SIZE - 1) < 1 << HAW_BITS)
            .ok_or((FaultReason::IndexBeyondTable, false))?;
        let mut bytes = [0u8; IRTE_SIZE as usize];
        self.mem
            .read_slice(&mut bytes, GuestAddress(addr))
            .map_err(|_| (FaultReason::TableAccessError, false))?;
        let irte = Irte::from_bytes(bytes);
        let decoded = irte
            .decode(self.extended_interrupt_mode())
            .map_err(|e| (e.reason, e.fpd))?;
        self.iec.insert(index, decoded);
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_and_subhandle() {
        let msi = |addr: u64, data: u32| MsiMessage::new(0, 0xfee0_0000 | addr, data);
        assert_eq!(
            interrupt_index(&msi(0x10 | (5 << 5), 0x1234)),
            5,
            "SHV clear ignores data"
        );
        assert_eq!(interrupt_index(&msi(0x10 | (5 << 5) | 0x8, 3)), 8);
        assert_eq!(
            interrupt_index(&msi(0x10 | 0x4, 0)),
            0x8000,
            "handle bit 15 is addr bit 2"
        );
        assert_eq!(
            interrupt_index(&msi(0x10 | 0xfffe0 | 0xc, 0xffff)),
            0xffff + 0xffff
        );
    }
}
