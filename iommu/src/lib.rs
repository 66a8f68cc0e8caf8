//! Intel VT-d interrupt remapping as a pure state machine: the register page, the
//! interrupt remapping table walk with remapped- and posted-format IRTEs, the interrupt
//! entry cache, queued invalidation and fault recording. Intel Virtualization Technology
//! for Directed I/O specification, chapters 5 (interrupt remapping and posting), 6
//! (interrupt entry cache, queued invalidation), 7 (fault recording), 9.10–9.12 (IRTE
//! and posted-interrupt descriptor formats) and 11 (registers).
//!
//! The model never delivers anything itself. A request goes through two steps with room
//! for a delivery policy between them:
//!
//! 1. [`Iommu::remap`] turns an [`MsiMessage`] into a [`RemapResult`]: a compatibility
//!    pass-through, a remapped APIC request, a [`PostingRequest`], or a fault (recorded
//!    in the fault recording registers as the specification says).
//! 2. [`Iommu::post`] performs a posting request on the posted-interrupt descriptor in
//!    guest memory and returns a [`PostResult`]: notify (NV → NDST), suppressed (SN), or
//!    a notification already outstanding.
//!
//! [`Iommu::deliver`] does both. Interrupts the IOMMU raises itself (fault events and
//! invalidation-completion events) queue up as `MsiMessage`s for the VMM to drain with
//! [`Iommu::take_interrupts`]; they are not subject to remapping.
//!
//! DMA remapping is not modelled yet: TE latches into GSTS.TES, and context-cache and
//! IOTLB invalidations (register-based or queued) complete as no-ops.

pub mod fault;
pub mod iec;
pub mod invalidation;
pub mod irte;
mod mmio;
pub mod post;
pub mod regs;
pub mod remap;

use apic::{InterruptRequest, MsiMessage};
use vm_memory::GuestMemory;

pub use fault::{FaultReason, FaultRecord, IrFault};
pub use irte::Irte;
pub use post::PostResult;
pub use remap::{PostingRequest, RemapResult};

use fault::FaultUnit;
use iec::InterruptEntryCache;
use invalidation::InvalidationQueue;

/// Event counters, readable by the VMM at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests passed to `remap`.
    pub requests: u64,
    /// Compatibility-format requests passed through (or all requests while IR is off).
    pub compatibility: u64,
    /// Requests remapped through a remapped-format IRTE.
    pub remapped: u64,
    /// Posts performed into a descriptor.
    pub posted: u64,
    /// Posts that sent a notification (ON went 0 → 1).
    pub notified: u64,
    /// Posts whose notification SN suppressed.
    pub suppressed: u64,
    /// Posts that found a notification already outstanding.
    pub outstanding: u64,
    /// Faults detected (recorded or not).
    pub faulted: u64,
    /// Faults written into a fault recording register.
    pub faults_recorded: u64,
    /// Interrupt entry cache invalidations (descriptors, and SIRTP flushes).
    pub invalidations: u64,
    /// Invalidation wait descriptors completed.
    pub invalidation_waits: u64,
    /// Invalidation descriptors processed.
    pub descriptors: u64,
    /// Invalidation queue errors (IQE).
    pub queue_errors: u64,
    /// IRTE reads from guest memory (entry cache misses).
    pub irte_fetches: u64,
}

/// What [`Iommu::deliver`] did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Interrupt remapping is off, or a compatibility-format request passed: deliver as is.
    Compatibility(InterruptRequest),
    /// Deliver this request on the APIC bus (from IRTE `index`).
    Remapped {
        request: InterruptRequest,
        index: u32,
    },
    /// Posted; send notification vector `nv` to `destination` (decoded from the raw
    /// `ndst`: the full ID in x2APIC mode, bits 15:8 in xAPIC mode).
    PostedNotify {
        nv: u8,
        ndst: u32,
        destination: u32,
        index: u32,
    },
    /// Posted; SN held the notification back.
    PostedSuppressed { index: u32 },
    /// Posted; a notification was already outstanding (ON set).
    PostedOutstanding { index: u32 },
    /// Not delivered: a fault.
    Fault(IrFault),
    /// The write is outside the interrupt address window: not an interrupt request.
    NotInterrupt,
}

impl Delivery {
    /// For [`Delivery::PostedNotify`], the notification event as an APIC bus request:
    /// vector NV, fixed, physical destination, edge (§5.2.3).
    pub fn notification(&self) -> Option<InterruptRequest> {
        match *self {
            Delivery::PostedNotify {
                nv, destination, ..
            } => Some(InterruptRequest::fixed(nv, destination)),
            _ => None,
        }
    }
}

/// One VT-d remapping unit (interrupt remapping), over guest memory `M`.
pub struct Iommu<M: GuestMemory> {
    mem: M,
    /// GSTS as software reads it.
    gsts: u32,
    rtaddr: u64,
    ccmd: u64,
    iva: u64,
    iotlb: u64,
    /// IRTA as last written.
    irta: u64,
    /// IRTA as latched by the last SIRTP: the table in use.
    active_irta: u64,
    iec: InterruptEntryCache,
    faults: FaultUnit,
    queue: InvalidationQueue,
    interrupts: Vec<MsiMessage>,
    counters: Counters,
}

impl<M: GuestMemory> std::fmt::Debug for Iommu<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iommu")
            .field("gsts", &format_args!("{:#x}", self.gsts))
            .field("irta", &format_args!("{:#x}", self.irta))
            .field("active_irta", &format_args!("{:#x}", self.active_irta))
            .field("fsts", &format_args!("{:#x}", self.faults.fsts()))
            .field("queue", &self.queue)
            .field("cached_entries", &self.iec.len())
            .field("pending_interrupts", &self.interrupts.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemory> Iommu<M> {
    /// A unit in its reset state (everything disabled, fault and invalidation events
    /// masked), reading its tables from `mem`.
    pub fn new(mem: M) -> Self {
        Self {
            mem,
            gsts: 0,
            rtaddr: 0,
            ccmd: 0,
            iva: 0,
            iotlb: 0,
            irta: 0,
            active_irta: 0,
            iec: InterruptEntryCache::default(),
            faults: FaultUnit::default(),
            queue: InvalidationQueue::default(),
            interrupts: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// The guest memory the unit reads and writes.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The event counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// GSTS.
    pub fn gsts(&self) -> u32 {
        self.gsts
    }

    /// Whether interrupt remapping is enabled (GSTS.IRES).
    pub fn remapping_enabled(&self) -> bool {
        self.gsts & regs::G_IRE != 0
    }

    /// Whether extended interrupt mode (x2APIC destinations) is in effect: IRTA.EIME as
    /// latched by the last SIRTP.
    pub fn extended_interrupt_mode(&self) -> bool {
        self.active_irta & regs::IRTA_EIME != 0
    }

    /// The fault recording register `i`, for inspection.
    pub fn fault_record(&self, i: usize) -> Option<FaultRecord> {
        self.faults.record(i)
    }

    /// Number of entries held by the interrupt entry cache.
    pub fn cached_entries(&self) -> usize {
        self.iec.len()
    }

    /// Takes the interrupts the unit raised (fault events, invalidation-completion
    /// events) since the last call, oldest first. They go to the APIC bus as
    /// compatibility-format MSIs and are never remapped.
    pub fn take_interrupts(&mut self) -> Vec<MsiMessage> {
        std::mem::take(&mut self.interrupts)
    }

    /// Whether [`take_interrupts`](Self::take_interrupts) has anything.
    pub fn has_interrupts(&self) -> bool {
        !self.interrupts.is_empty()
    }

    /// Remaps `msi` and, for a posted IRTE, posts it: both steps in one call.
    pub fn deliver(&mut self, msi: &MsiMessage) -> Delivery {
        match self.remap(msi) {
            RemapResult::Compatibility(r) => Delivery::Compatibility(r),
            RemapResult::Remapped { request, index } => Delivery::Remapped { request, index },
            RemapResult::Fault(f) => Delivery::Fault(f),
            RemapResult::NotInterrupt => Delivery::NotInterrupt,
            RemapResult::Posting(p) => match self.post(&p) {
                PostResult::Notify {
                    nv,
                    ndst,
                    destination,
                } => Delivery::PostedNotify {
                    nv,
                    ndst,
                    destination,
                    index: p.index,
                },
                PostResult::Suppressed => Delivery::PostedSuppressed { index: p.index },
                PostResult::AlreadyOutstanding => Delivery::PostedOutstanding { index: p.index },
                PostResult::Fault(f) => Delivery::Fault(f),
            },
        }
    }

    /// Records a fault by primary fault logging (unless FPD suppresses a qualified one) and returns it.
    fn fault(&mut self, reason: FaultReason, source_id: u16, index: u32, fpd: bool) -> IrFault {
        self.counters.faulted += 1;
        let recorded = if fpd && reason.qualified() {
            false
        } else {
            self.faults
                .record_fault(reason, source_id, index, &mut self.interrupts)
        };
        if recorded {
            self.counters.faults_recorded += 1;
        }
        tracing::debug!(
            target: "iommu",
            reason = reason.code(),
            source_id,
            index,
            fpd,
            recorded,
            "interrupt remapping fault"
        );
        IrFault {
            reason,
            source_id,
            index,
            recorded,
        }
    }
}

#[cfg(test)]
mod tests;
