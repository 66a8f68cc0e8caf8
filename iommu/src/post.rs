//! Interrupt posting as the remapping hardware performs it (VT-d specification §5.2.3,
//! "Interrupt-Posting Hardware Operation", and §9.12 for the descriptor): set the PIR bit
//! for the vector atomically; set ON unless SN is set (URG overrides SN); when ON goes
//! from 0 to 1, send the notification event NV to NDST. The descriptor is shared with
//! the APIC model (`apic::pid`).
//!
//! The descriptor is reached through guest memory only after the address is checked: a
//! PDA outside guest memory, straddling two regions, or misaligned is fault 0x27 and the
//! host is never touched; reserved descriptor bits set are fault 0x28.

use apic::pid::{PostOutcome, PostedInterruptDescriptor, PID_SIZE};
use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::bitmap::Bitmap;
use vm_memory::{GuestAddress, GuestMemory, Permissions};

use crate::fault::{FaultReason, IrFault};
use crate::remap::PostingRequest;
use crate::Iommu;

/// Descriptor control word (bytes 32–39) bits that are reserved: 15:2 and 31:24.
pub const PID_CTL_RSVD: u64 = (0x3fff << 2) | (0xff << 24);
/// In xAPIC mode NDST holds the APIC ID in bits 15:8; bits 7:0 and 31:16 are reserved.
pub const PID_NDST_XAPIC_RSVD: u64 = (0xff | 0xffff_0000) << 32;

/// The outcome of [`Iommu::post`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostResult {
    /// ON went 0 → 1: send vector `nv` to `destination` (decoded from the raw `ndst`).
    Notify { nv: u8, ndst: u32, destination: u32 },
    /// Posted; SN held the notification back (URG clear).
    Suppressed,
    /// Posted; ON was already set.
    AlreadyOutstanding,
    /// The descriptor could not be used (0x27, 0x28); nothing was posted.
    Fault(IrFault),
}

impl PostResult {
    /// For [`PostResult::Notify`], the notification event as an APIC bus request: vector
    /// NV, fixed, physical destination, edge (§5.2.3).
    pub fn notification(&self) -> Option<apic::InterruptRequest> {
        match *self {
            PostResult::Notify {
                nv, destination, ..
            } => Some(apic::InterruptRequest::fixed(nv, destination)),
            _ => None,
        }
    }
}

impl<M: GuestMemory> Iommu<M> {
    /// Performs a posting request on its descriptor in guest memory.
    pub fn post(&mut self, req: &PostingRequest) -> PostResult {
        let pid = match self.descriptor_ptr(req.pda) {
            Some(p) => p,
            None => return self.post_fault(FaultReason::PostedDescriptorAccessError, req),
        };
        let eim = self.extended_interrupt_mode();
        // SAFETY: `descriptor_ptr` returned a host address with 64 valid, writable bytes
        // inside one guest memory region, 64-byte aligned. The region stays mapped while
        // `self.mem` lives, which outlives this call; the guest accesses it concurrently
        // only as memory it shares with posting hardware (atomically, on real hardware).
        if unsafe { descriptor_reserved_bits(pid, eim) } {
            return self.post_fault(FaultReason::PostedDescriptorReservedField, req);
        }
        // SAFETY: as above.
        let pid = unsafe { PostedInterruptDescriptor::from_ptr(pid) };
        let outcome = pid.post(req.vector, req.urgent);
        self.counters.posted += 1;
        let result = match outcome {
            PostOutcome::Notify { nv, ndst } => {
                self.counters.notified += 1;
                let destination = if eim { ndst } else { (ndst >> 8) & 0xff };
                PostResult::Notify {
                    nv,
                    ndst,
                    destination,
                }
            }
            PostOutcome::Suppressed => {
                self.counters.suppressed += 1;
                PostResult::Suppressed
            }
            PostOutcome::AlreadyOutstanding => {
                self.counters.outstanding += 1;
                PostResult::AlreadyOutstanding
            }
        };
        tracing::trace!(
            target: "iommu",
            index = req.index,
            pda = req.pda,
            vector = req.vector,
            urgent = req.urgent,
            ?result,
            "posted"
        );
        result
    }

    /// Runs `f` on the posted-interrupt descriptor at guest-physical `pda` (a vCPU's
    /// posted-interrupt processing), if it is 64-byte aligned and inside one region of guest
    /// memory; `None` otherwise, without touching any memory.
    pub fn with_descriptor<R>(
        &self,
        pda: u64,
        f: impl FnOnce(&PostedInterruptDescriptor) -> R,
    ) -> Option<R> {
        let ptr = self.descriptor_ptr(pda)?;
        // SAFETY: `descriptor_ptr` checked alignment and that 64 bytes lie in one mapped
        // region of guest memory, which lives as long as `self.mem`.
        Some(f(unsafe { PostedInterruptDescriptor::from_ptr(ptr) }))
    }

    fn post_fault(&mut self, reason: FaultReason, req: &PostingRequest) -> PostResult {
        PostResult::Fault(self.fault(reason, req.source_id, req.index, req.fpd))
    }

    /// The host address of the 64-byte descriptor at `pda`, if it lies entirely in one
    /// region of guest memory and is 64-byte aligned (guest and host side).
    fn descriptor_ptr(&self, pda: u64) -> Option<*mut u8> {
        if pda % PID_SIZE as u64 != 0 || pda.checked_add(PID_SIZE as u64 - 1).is_none() {
            return None;
        }
        let mut slices = self
            .mem
            .get_slices(GuestAddress(pda), PID_SIZE, Permissions::ReadWrite)
            .ok()?;
        let slice = slices.next()?.ok()?;
        if slice.len() != PID_SIZE {
            return None;
        }
        slice.bitmap().mark_dirty(0, PID_SIZE);
        let ptr = slice.ptr_guard_mut().as_ptr();
        if ptr as usize % PID_SIZE != 0 {
            return None;
        }
        Some(ptr)
    }
}

/// Whether the descriptor's reserved fields (control bits 15:2 and 31:24, bytes 40–63,
/// and in xAPIC mode NDST bits 7:0 and 31:16) are non-zero.
///
/// # Safety
/// `pid` must be 64-byte aligned and valid for atomic reads of 64 bytes.
unsafe fn descriptor_reserved_bits(pid: *mut u8, eim: bool) -> bool {
    // SAFETY: the caller guarantees 64 valid, aligned bytes; offsets 32..64 in steps of 8
    // stay inside them and are 8-byte aligned.
    let word = |offset: usize| unsafe {
        AtomicU64::from_ptr(pid.add(offset).cast::<u64>()).load(Ordering::Relaxed)
    };
    let mut rsvd = PID_CTL_RSVD;
    if !eim {
        rsvd |= PID_NDST_XAPIC_RSVD;
    }
    word(32) & rsvd != 0 || word(40) != 0 || word(48) != 0 || word(56) != 0
}
