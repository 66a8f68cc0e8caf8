//! The pure model pipeline, without KVM and without threads: one device interrupt through
//! every model on the calling thread, as the emulated backend runs it, to measure what the
//! models themselves cost (issue 9: "the model pipeline above 10 million interrupts per
//! second per core").
//!
//! Posted pipeline ([`pipeline`], [`PipelineKind::Posted`]), per interrupt:
//!
//! ```text
//! MsiMessage (remappable format, handle HANDLE, requester REQUESTER_ID)
//!   -> Iommu::remap            IEC hit on a posted-format IRTE      -> PostingRequest
//!   -> Iommu::post             PIR bit + ON 0->1 in guest memory     -> Notify { nv, destination }
//!   -> Iommu::with_descriptor  VirtualApic::process_posted_interrupts (PIR -> VIRR, RVI)
//!   -> VirtualApic::deliver    virtual-interrupt delivery (as the VMM injects it)
//!   -> VirtualApic::msr_write_or_emulate(MSR_X2APIC_EOI, 0)  virtualized EOI
//! ```
//!
//! Remapped pipeline ([`pipeline_remapped`], [`PipelineKind::Remapped`]): the same MSI
//! through a remapped-format IRTE, then `LocalApic::accept` / `acknowledge` / `eoi`.
//!
//! The IOMMU is brought up the way a guest driver does it: the IRTE written into a table
//! in guest memory, IRTA written, GCMD.SIRTP, then GCMD.IRE, all through the register API;
//! the posted-interrupt descriptor lives in guest memory too.
//!
//! [`Pipeline`] is the reusable rig (the criterion bench in `benches/pipeline.rs` calls
//! [`Pipeline::one`] per iteration); [`run`] times a loop of it and checks afterwards that
//! every interrupt was delivered exactly once; [`stage_breakdown`] splits the cost per stage
//! by timing prefixes of the pipeline.

use std::time::{Duration, Instant};

use apic::pid::ndst_for;
use apic::registers::{
    x2apic_msr, APIC_BASE_BSP, APIC_BASE_ENABLE, APIC_BASE_EXTD, APIC_DEFAULT_BASE, APIC_SVR,
    MSR_IA32_APIC_BASE, MSR_X2APIC_EOI, SVR_APIC_ENABLED,
};
use apic::{
    ApicConfig, ApicvControls, Handling, InterruptRequest, LocalApic, MsiMessage, VirtualApic,
};
use iommu::regs::{irta_entries, GCMD, GSTS, G_IRE, G_SIRTP, IRTA, IRTA_EIME};
use iommu::remap::{
    MSI_ADDR_HANDLE_HI, MSI_ADDR_HANDLE_LO_MASK, MSI_ADDR_HANDLE_LO_SHIFT, MSI_ADDR_REMAPPABLE,
};
use iommu::{Iommu, Irte, PostResult, RemapResult};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest memory of the rig.
pub type Memory = GuestMemoryMmap<()>;

/// Size of the rig's guest memory (one region).
pub const MEMORY_SIZE: usize = 4 << 20;
/// Guest-physical address of the interrupt remapping table (4 KiB aligned, as IRTA needs).
pub const IRT_ADDRESS: u64 = 0x10_0000;
/// IRTA.S: the table holds 2^(S+1) = 256 entries.
pub const IRTA_SIZE_FIELD: u64 = 7;
/// Guest-physical address of the posted-interrupt descriptor (64-byte aligned).
pub const PID_ADDRESS: u64 = 0x20_0000;
/// The interrupt index (handle) the device's MSI names.
pub const HANDLE: u16 = 5;
/// Requester ID of the sending function (bus 1, device 1, function 0: a VF).
pub const REQUESTER_ID: u16 = 0x0108;
/// SVT = 01: the IRTE verifies the requester ID.
pub const SVT_REQUESTER_ID: u8 = 1;
/// SQ = 00: all 16 bits of the requester ID are compared.
pub const SQ_ALL_BITS: u8 = 0;
/// The guest's device vector (the IRTE's vector: virtual when posted, physical when remapped).
pub const DEVICE_VECTOR: u8 = 0x41;
/// The posted-interrupt notification vector (descriptor NV and the APICv controls).
pub const NOTIFICATION_VECTOR: u8 = 0xf2;
/// The x2APIC ID of the one vCPU (descriptor NDST, remapped IRTE destination).
pub const APIC_ID: u32 = 0;
/// The guest's spurious-interrupt vector (SVR bits 7:0).
pub const SPURIOUS_VECTOR: u32 = 0xff;
/// Guest TSC passed to the APIC model: nothing here depends on time.
const NOW: u64 = 0;

/// Which delivery path the pipeline runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PipelineKind {
    /// Posted-format IRTE, posted-interrupt descriptor, APICv (virtual-interrupt delivery,
    /// virtualized EOI).
    Posted,
    /// Remapped-format IRTE, `LocalApic::accept` / `acknowledge` / `eoi`.
    Remapped,
}

impl PipelineKind {
    /// Both kinds, posted first.
    pub const ALL: [PipelineKind; 2] = [PipelineKind::Posted, PipelineKind::Remapped];

    /// A short name for tables and bench IDs.
    pub fn name(self) -> &'static str {
        match self {
            PipelineKind::Posted => "posted",
            PipelineKind::Remapped => "remapped",
        }
    }
}

/// How far [`Pipeline::run_prefix`] takes one interrupt. The stages are cumulative: each
/// includes the ones before it. Every prefix leaves the models in a steady state (a vector
/// that stays pending in VIRR/IRR is set again idempotently), so a prefix can be repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// `Iommu::remap` only (interrupt entry cache hit, source-ID check).
    Remap = 0,
    /// Plus the signal into the vCPU: posting and posted-interrupt processing (posted), or
    /// `LocalApic::accept` (remapped).
    Signal = 1,
    /// Plus delivery to the guest handler and its EOI: the whole pipeline.
    DeliverEoi = 2,
}

/// What happened to the interrupts a [`Pipeline`] ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineCounts {
    /// Interrupts the guest handler received (delivered, then EOIed).
    pub deliveries: u64,
    /// Deliveries of a vector other than [`DEVICE_VECTOR`].
    pub wrong_vector: u64,
    /// Remapping or posting faults.
    pub faults: u64,
    /// Any other unexpected outcome: a remap that was not of the expected format, a post
    /// that did not notify, a notification for another vector or vCPU, a descriptor that
    /// could not be reached, nothing to deliver.
    pub unexpected: u64,
    /// EOIs that would have been a VM exit instead of being virtualized (posted pipeline).
    pub eoi_exits: u64,
}

/// The state of one pipeline: guest memory, the IOMMU over it, the vCPU's APIC, the MSI.
pub struct Pipeline {
    kind: PipelineKind,
    iommu: Iommu<Memory>,
    sink: Sink,
    msi: MsiMessage,
    counts: PipelineCounts,
}

/// The vCPU end: an APICv-virtualized APIC for the posted path, a plain one for remapped.
enum Sink {
    Posted(Box<VirtualApic>),
    Remapped(Box<LocalApic>),
}

/// The MSI address of a remappable-format request for `handle` (SHV clear): handle bits
/// 14:0 in address bits 19:5, handle bit 15 in address bit 2, bit 4 set.
pub fn remappable_address(handle: u16) -> u64 {
    let h = u64::from(handle);
    apic::msi::MSI_ADDRESS_WINDOW
        | ((h << MSI_ADDR_HANDLE_LO_SHIFT) & MSI_ADDR_HANDLE_LO_MASK)
        | if h >> 15 != 0 { MSI_ADDR_HANDLE_HI } else { 0 }
        | MSI_ADDR_REMAPPABLE
}

/// An APIC in x2APIC mode, software enabled, programmed through its MSRs as a guest does.
fn x2apic() -> LocalApic {
    let mut apic = LocalApic::new(ApicConfig::new(APIC_ID, true));
    apic.write_msr(
        MSR_IA32_APIC_BASE,
        APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_EXTD | APIC_BASE_BSP,
        NOW,
    )
    .expect("x2APIC enable");
    apic.write_msr(
        x2apic_msr(APIC_SVR),
        u64::from(SVR_APIC_ENABLED | SPURIOUS_VECTOR),
        NOW,
    )
    .expect("SVR write");
    apic
}

impl Pipeline {
    /// A rig for `kind`, brought up the way a guest driver brings up interrupt remapping.
    pub fn new(kind: PipelineKind) -> Self {
        let memory = Memory::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)])
            .expect("guest memory for the model pipeline");
        let irte = match kind {
            PipelineKind::Posted => Irte::posted_entry(DEVICE_VECTOR, false, PID_ADDRESS),
            PipelineKind::Remapped => {
                Irte::remapped(&InterruptRequest::fixed(DEVICE_VECTOR, APIC_ID), false)
            }
        }
        .with_source(SVT_REQUESTER_ID, SQ_ALL_BITS, REQUESTER_ID);
        let irte_address = IRT_ADDRESS + u64::from(HANDLE) * iommu::irte::IRTE_SIZE;
        memory
            .write_slice(&irte.to_bytes(), GuestAddress(irte_address))
            .expect("IRTE write");

        let mut iommu = Iommu::new(memory);
        let irta = IRT_ADDRESS | IRTA_EIME | IRTA_SIZE_FIELD;
        debug_assert!(u32::from(HANDLE) < irta_entries(irta));
        iommu.write_u64(IRTA, irta);
        iommu.write_u32(GCMD, G_SIRTP);
        assert_ne!(iommu.read_u32(GSTS) & G_SIRTP, 0, "GSTS.IRTPS after SIRTP");
        iommu.write_u32(GCMD, G_IRE);
        assert_ne!(iommu.read_u32(GSTS) & G_IRE, 0, "GSTS.IRES after IRE");

        let sink = match kind {
            PipelineKind::Posted => {
                // The VMM programs the vCPU's descriptor: NV, and NDST in x2APIC format.
                iommu
                    .with_descriptor(PID_ADDRESS, |pid| {
                        pid.set_notification(NOTIFICATION_VECTOR, ndst_for(APIC_ID, true))
                    })
                    .expect("descriptor inside guest memory");
                Sink::Posted(Box::new(VirtualApic::new(
                    x2apic(),
                    ApicvControls::full(NOTIFICATION_VECTOR),
                )))
            }
            PipelineKind::Remapped => Sink::Remapped(Box::new(x2apic())),
        };
        Self {
            kind,
            iommu,
            sink,
            msi: MsiMessage::new(REQUESTER_ID, remappable_address(HANDLE), 0),
            counts: PipelineCounts::default(),
        }
    }

    /// The posted pipeline.
    pub fn posted() -> Self {
        Self::new(PipelineKind::Posted)
    }

    /// The remapped pipeline.
    pub fn remapped() -> Self {
        Self::new(PipelineKind::Remapped)
    }

    /// Which path this rig runs.
    pub fn kind(&self) -> PipelineKind {
        self.kind
    }

    /// What happened so far.
    pub fn counts(&self) -> PipelineCounts {
        self.counts
    }

    /// The IOMMU (its counters, its guest memory, its descriptor).
    pub fn iommu(&self) -> &Iommu<Memory> {
        &self.iommu
    }

    /// The vCPU's local APIC.
    pub fn apic(&self) -> &LocalApic {
        match &self.sink {
            Sink::Posted(v) => v.apic(),
            Sink::Remapped(a) => a,
        }
    }

    /// The MSI the device sends; tests change it to provoke faults.
    pub fn msi_mut(&mut self) -> &mut MsiMessage {
        &mut self.msi
    }

    /// One interrupt through the whole pipeline. Returns the vector the guest handler
    /// received (and EOIed), or `None` when the interrupt went astray (counted in
    /// [`Self::counts`]).
    #[inline]
    pub fn one(&mut self) -> Option<u8> {
        self.run_prefix(Stage::DeliverEoi)
    }

    /// One interrupt through the pipeline up to and including `last`. Returns the
    /// delivered vector when `last` is [`Stage::DeliverEoi`].
    #[inline]
    pub fn run_prefix(&mut self, last: Stage) -> Option<u8> {
        let counts = &mut self.counts;
        let remapped = self.iommu.remap(&self.msi);
        if last == Stage::Remap {
            return None;
        }
        match &mut self.sink {
            Sink::Posted(vapic) => {
                let posting = match remapped {
                    RemapResult::Posting(p) => p,
                    RemapResult::Fault(_) => {
                        counts.faults += 1;
                        return None;
                    }
                    _ => {
                        counts.unexpected += 1;
                        return None;
                    }
                };
                match self.iommu.post(&posting) {
                    PostResult::Notify {
                        nv, destination, ..
                    } if nv == NOTIFICATION_VECTOR && destination == APIC_ID => {
                        // The notification reaches the vCPU: posted-interrupt processing.
                        if self
                            .iommu
                            .with_descriptor(posting.pda, |pid| {
                                vapic.process_posted_interrupts(pid)
                            })
                            .is_none()
                        {
                            counts.unexpected += 1;
                            return None;
                        }
                    }
                    PostResult::Fault(_) => {
                        counts.faults += 1;
                        return None;
                    }
                    _ => {
                        counts.unexpected += 1;
                        return None;
                    }
                }
                if last == Stage::Signal {
                    return None;
                }
                // Injection with virtual-interrupt delivery, then the handler's EOI.
                let Some(vector) = vapic.deliver() else {
                    counts.unexpected += 1;
                    return None;
                };
                let (handling, result) = vapic.msr_write_or_emulate(MSR_X2APIC_EOI, 0, NOW);
                if let Handling::Exit(_) = handling {
                    counts.eoi_exits += 1;
                }
                if result.is_err() {
                    counts.unexpected += 1;
                }
                Self::delivered(counts, vector)
            }
            Sink::Remapped(apic) => {
                let request = match remapped {
                    // One vCPU: the fabric's destination resolution is this comparison.
                    RemapResult::Remapped { request, .. } if request.destination == APIC_ID => {
                        request
                    }
                    RemapResult::Fault(_) => {
                        counts.faults += 1;
                        return None;
                    }
                    _ => {
                        counts.unexpected += 1;
                        return None;
                    }
                };
                apic.accept(&request);
                if last == Stage::Signal {
                    return None;
                }
                let Some(vector) = apic.acknowledge() else {
                    counts.unexpected += 1;
                    return None;
                };
                apic.eoi();
                Self::delivered(counts, vector)
            }
        }
    }

    #[inline]
    fn delivered(counts: &mut PipelineCounts, vector: u8) -> Option<u8> {
        counts.deliveries += 1;
        if vector != DEVICE_VECTOR {
            counts.wrong_vector += 1;
        }
        Some(vector)
    }

    /// Whether nothing is left in flight: IRR and ISR empty, and for the posted path PIR
    /// empty and ON clear. True after every complete [`Self::one`].
    pub fn drained(&self) -> bool {
        let apic = self.apic();
        let apic_empty = apic.irr() == [0; 4] && apic.isr() == [0; 4];
        let pid_empty = match self.kind {
            PipelineKind::Posted => self
                .iommu
                .with_descriptor(PID_ADDRESS, |pid| !pid.has_pending() && !pid.on())
                .unwrap_or(false),
            PipelineKind::Remapped => true,
        };
        apic_empty && pid_empty
    }
}

/// The result of a timed run.
#[derive(Clone, Copy, Debug)]
pub struct PipelineResult {
    /// Which path ran.
    pub kind: PipelineKind,
    /// Interrupts sent.
    pub iterations: u64,
    /// Wall-clock time of the loop (set-up excluded).
    pub elapsed: Duration,
    /// Interrupts per second on this one thread.
    pub per_second: f64,
    /// Mean time per interrupt.
    pub ns_per_interrupt: f64,
    /// What happened to the interrupts.
    pub counts: PipelineCounts,
    /// The IOMMU's counters after the run.
    pub iommu: iommu::Counters,
}

/// Rates from a loop of `iterations` that took `elapsed`.
fn rates(iterations: u64, elapsed: Duration) -> (f64, f64) {
    let secs = elapsed.as_secs_f64();
    let per_second = if secs > 0.0 {
        iterations as f64 / secs
    } else {
        f64::INFINITY
    };
    let ns = if iterations > 0 {
        secs * 1e9 / iterations as f64
    } else {
        0.0
    };
    (per_second, ns)
}

/// Times `iterations` interrupts through a fresh `kind` pipeline on the calling thread.
///
/// # Panics
/// When an interrupt was lost, duplicated, faulted or misdelivered: after the loop the
/// number of deliveries must equal `iterations`, every one of [`DEVICE_VECTOR`], and
/// nothing may be left pending.
pub fn run(kind: PipelineKind, iterations: u64) -> PipelineResult {
    let mut p = Pipeline::new(kind);
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(p.one());
    }
    let elapsed = start.elapsed();
    let counts = p.counts();
    assert_eq!(
        counts,
        PipelineCounts {
            deliveries: iterations,
            ..PipelineCounts::default()
        },
        "{} pipeline: every interrupt delivered exactly once",
        kind.name()
    );
    assert!(p.drained(), "{} pipeline left state pending", kind.name());
    let (per_second, ns_per_interrupt) = rates(iterations, elapsed);
    PipelineResult {
        kind,
        iterations,
        elapsed,
        per_second,
        ns_per_interrupt,
        counts,
        iommu: p.iommu().counters(),
    }
}

/// The posted pipeline: MSI → remap → post → posted-interrupt processing → virtual
/// interrupt delivery → virtualized EOI, `iterations` times. See [`run`].
pub fn pipeline(iterations: u64) -> PipelineResult {
    run(PipelineKind::Posted, iterations)
}

/// The remapped pipeline: MSI → remap → `accept` → `acknowledge` → `eoi`, `iterations`
/// times. See [`run`].
pub fn pipeline_remapped(iterations: u64) -> PipelineResult {
    run(PipelineKind::Remapped, iterations)
}

/// Mean cost per interrupt of each stage, from timing the cumulative prefixes of the
/// pipeline ([`Stage`]) separately: stage cost = prefix time − previous prefix time. Noise
/// can make a small stage come out slightly negative.
#[derive(Clone, Copy, Debug)]
pub struct StageBreakdown {
    /// Which path ran.
    pub kind: PipelineKind,
    /// `Iommu::remap`.
    pub remap_ns: f64,
    /// Posting plus posted-interrupt processing (posted), or `accept` (remapped).
    pub signal_ns: f64,
    /// Delivery (virtual-interrupt delivery or acknowledge) plus EOI.
    pub deliver_eoi_ns: f64,
    /// The whole pipeline.
    pub total_ns: f64,
}

/// Times each prefix of the `kind` pipeline over `iterations` interrupts.
pub fn stage_breakdown(kind: PipelineKind, iterations: u64) -> StageBreakdown {
    let time = |last: Stage| {
        let mut p = Pipeline::new(kind);
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(p.run_prefix(last));
        }
        rates(iterations, start.elapsed()).1
    };
    let remap = time(Stage::Remap);
    let signal = time(Stage::Signal);
    let total = time(Stage::DeliverEoi);
    StageBreakdown {
        kind,
        remap_ns: remap,
        signal_ns: signal - remap,
        deliver_eoi_ns: total - signal,
        total_ns: total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITERATIONS: u64 = 1000;

    #[test]
    fn posted_pipeline_delivers_every_interrupt_once_through_posting() {
        let r = pipeline(ITERATIONS);
        assert_eq!(r.counts.deliveries, ITERATIONS);
        assert_eq!(r.counts.wrong_vector, 0);
        assert_eq!(r.counts.eoi_exits, 0, "EOI virtualized");
        assert_eq!(r.iommu.posted, ITERATIONS);
        assert_eq!(r.iommu.notified, ITERATIONS, "ON went 0 -> 1 every time");
        assert_eq!(r.iommu.remapped, 0);
        assert_eq!(r.iommu.faulted, 0);
        assert_eq!(r.iommu.irte_fetches, 1, "one IEC miss, then hits");
        assert!(r.per_second > 0.0 && r.ns_per_interrupt > 0.0);
    }

    #[test]
    fn remapped_pipeline_delivers_every_interrupt_once_through_the_apic() {
        let r = pipeline_remapped(ITERATIONS);
        assert_eq!(r.counts.deliveries, ITERATIONS);
        assert_eq!(r.counts.wrong_vector, 0);
        assert_eq!(r.iommu.remapped, ITERATIONS);
        assert_eq!(r.iommu.posted, 0);
        assert_eq!(r.iommu.faulted, 0);
    }

    #[test]
    fn one_returns_the_device_vector_and_leaves_nothing_pending() {
        for kind in PipelineKind::ALL {
            let mut p = Pipeline::new(kind);
            assert_eq!(p.one(), Some(DEVICE_VECTOR), "{kind:?}");
            assert!(p.drained(), "{kind:?}");
            assert_eq!(p.counts().deliveries, 1);
        }
    }

    #[test]
    fn a_wrong_requester_id_faults_and_is_not_delivered() {
        for kind in PipelineKind::ALL {
            let mut p = Pipeline::new(kind);
            p.msi_mut().requester_id = REQUESTER_ID + 1;
            assert_eq!(p.one(), None, "{kind:?}");
            assert_eq!(p.counts().faults, 1);
            assert_eq!(p.counts().deliveries, 0);
            assert_eq!(p.iommu().counters().faulted, 1);
            assert!(p.drained());
        }
    }

    #[test]
    fn posted_vector_stays_pending_until_delivered() {
        let mut p = Pipeline::posted();
        p.run_prefix(Stage::Signal);
        let irr = p.apic().irr();
        assert_ne!(
            irr[usize::from(DEVICE_VECTOR / 64)] & (1 << (DEVICE_VECTOR % 64)),
            0
        );
        assert!(!p.drained());
        // The next full interrupt finds the vector already pending: one delivery drains it.
        assert_eq!(p.one(), Some(DEVICE_VECTOR));
        assert!(p.drained());
    }

    #[test]
    fn prefixes_stop_where_they_say() {
        let mut p = Pipeline::posted();
        for _ in 0..ITERATIONS {
            assert_eq!(p.run_prefix(Stage::Remap), None);
        }
        let c = p.iommu().counters();
        assert_eq!((c.requests, c.posted), (ITERATIONS, 0));
        let b = stage_breakdown(PipelineKind::Remapped, ITERATIONS);
        assert!(b.total_ns > 0.0 && b.remap_ns > 0.0, "{b:?}");
    }

    #[test]
    fn remappable_address_encodes_the_handle() {
        let msi = MsiMessage::new(REQUESTER_ID, remappable_address(0x8005), 0);
        assert_eq!(iommu::remap::interrupt_index(&msi), 0x8005);
        assert!(msi.is_remappable() && msi.in_interrupt_window());
    }
}
