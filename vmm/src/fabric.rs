//! The interrupt fabric: where device MSIs meet VT-d and the interrupt controller.
//!
//! One MSI's path: [`Fabric::send_msi`] → VT-d remapping when the guest enabled it
//! (compatibility, remapped, posted, or a fault recorded by the IOMMU) → for a posting, the
//! post into the descriptor in guest memory → the notification → the backend (Postbox's
//! APIC models, or KVM's LAPIC through `KVM_SIGNAL_MSI`).
//!
//! Posted-interrupt notifications follow APICv: a notification whose vector is the VM's
//! posted-interrupt notification vector ([`POSTED_INTERRUPT_VECTOR`]) makes the target
//! vCPU process the descriptor before its next entry (PIR → IRR, then normal delivery), so
//! the guest sees the posted vector itself; any other notification vector (a hypervisor's
//! wake-up vector, say) is delivered to the guest as an ordinary interrupt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use apic::{DestinationFormat, InterruptRequest, MsiMessage};
use iommu::post::PostResult;
use iommu::remap::RemapResult;
use iommu::Iommu;
use kvm_ioctls::VmFd;
use vm_device::bus::{MmioAddress, MmioAddressOffset};
use vm_device::{DeviceMmio, MutDeviceMmio};
use vm_memory::GuestMemoryMmap;

use crate::emulated::EmulatedIrqchip;
use crate::hops::{self, Hop, HopStats};
use crate::msi_routes::{MsiKey, MsiRoutes};
use crate::policy::{Decision, Policy};
use crate::sched::Scheduler;

/// The posted-interrupt notification vector of the VM's vCPUs (Linux's choice, 0xf2).
pub const POSTED_INTERRUPT_VECTOR: u8 = 0xf2;

/// Counters of every hop, printable.
#[derive(Debug, Default)]
pub struct FabricCounters {
    pub msis: AtomicU64,
    pub compatibility: AtomicU64,
    pub remapped: AtomicU64,
    pub posted: AtomicU64,
    pub notified: AtomicU64,
    pub suppressed: AtomicU64,
    pub outstanding: AtomicU64,
    pub faulted: AtomicU64,
    pub not_interrupts: AtomicU64,
    pub iommu_events: AtomicU64,
    pub redirected: AtomicU64,
    pub pid_processed: AtomicU64,
    pub dropped: AtomicU64,
}

impl FabricCounters {
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "fabric: MSIs {}, compatibility {}, remapped {}, posted {} (notified {}, suppressed {}, outstanding {}), redirected {}, faulted {}, not interrupts {}, IOMMU events {}, descriptors processed {}, dropped {}",
            g(&self.msis),
            g(&self.compatibility),
            g(&self.remapped),
            g(&self.posted),
            g(&self.notified),
            g(&self.suppressed),
            g(&self.outstanding),
            g(&self.redirected),
            g(&self.faulted),
            g(&self.not_interrupts),
            g(&self.iommu_events),
            g(&self.pid_processed),
            g(&self.dropped)
        )
    }
}

/// Where interrupt requests finally go.
pub enum Backend {
    Emulated(Arc<EmulatedIrqchip>),
    /// KVM's LAPIC, reached through GSI routes and irqfds.
    Kernel(Arc<VmFd>, MsiRoutes),
}

pub struct Fabric {
    iommu: Mutex<Iommu<GuestMemoryMmap>>,
    backend: Backend,
    cpus: u32,
    /// Emulated backend: descriptors with an outstanding notification, per vCPU, processed
    /// by that vCPU before its next entry.
    pending_descriptors: Vec<Mutex<Vec<u64>>>,
    /// The descriptors each vCPU owns (learned from postings: the vCPU their NDST names).
    descriptors: Vec<Mutex<Vec<u64>>>,
    /// Whether anything needs `descriptors` (a policy, or a preemption schedule that sets
    /// SN): when not, postings skip learning owners, which costs a lock and a lookup.
    track_owners: bool,
    pub sched: Arc<Scheduler>,
    pub policy: Policy,
    /// The hinting interface (written under the hinting policy).
    pub hints: Arc<crate::hint::Hints>,
    /// The hybrid policy's per-source mode table.
    pub hybrid: Arc<crate::hybrid::Hybrid>,
    pub counters: FabricCounters,
    pub hops: Arc<HopStats>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Fabric {
    pub fn new(
        memory: GuestMemoryMmap,
        backend: Backend,
        cpus: u32,
        hops: Arc<HopStats>,
        policy: Policy,
        hybrid: crate::hybrid::Hybrid,
        track_owners: bool,
    ) -> Self {
        Self {
            track_owners,
            iommu: Mutex::new(Iommu::new(memory.clone())),
            backend,
            cpus,
            pending_descriptors: (0..cpus).map(|_| Mutex::new(Vec::new())).collect(),
            descriptors: (0..cpus).map(|_| Mutex::new(Vec::new())).collect(),
            sched: Arc::new(Scheduler::new(cpus as usize)),
            hints: Arc::new(crate::hint::Hints::new(memory.clone())),
            hybrid: Arc::new(hybrid),
            policy,
            counters: FabricCounters::default(),
            hops,
        }
    }

    fn iommu(&self) -> MutexGuard<'_, Iommu<GuestMemoryMmap>> {
        self.iommu.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Snapshot of the IOMMU's own counters.
    pub fn iommu_counters(&self) -> iommu::Counters {
        self.iommu().counters()
    }

    /// A device (or the test device) raised an MSI.
    pub fn send_msi(&self, msg: MsiMessage) {
        bump(&self.counters.msis);
        let span = tracing::trace_span!(
            "msi",
            rid = format_args!("{:#06x}", msg.requester_id),
            address = format_args!("{:#x}", msg.address),
            data = format_args!("{:#x}", msg.data)
        );
        let _guard = span.enter();
        let start = hops::now();
        if self.policy.kind() == crate::policy::PolicyKind::Hinting {
            self.hints.device_event(msg.requester_id, &self.sched);
        }
        let (result, eim) = {
            let mut iommu = self.iommu();
            let eim = iommu.extended_interrupt_mode();
            (iommu.remap(&msg), eim)
        };
        match result {
            RemapResult::Compatibility(request) => {
                bump(&self.counters.compatibility);
                self.hops.record(Hop::Remap, hops::now() - start);
                self.deliver(&request, DestinationFormat::XApic);
            }
            RemapResult::Remapped { request, index } => {
                bump(&self.counters.remapped);
                self.hops.record(Hop::Remap, hops::now() - start);
                tracing::trace!(
                    index,
                    vector = request.vector,
                    dest = request.destination,
                    "remapped"
                );
                let format = if eim {
                    DestinationFormat::X2Apic
                } else {
                    DestinationFormat::XApic
                };
                self.deliver(&request, format);
            }
            RemapResult::Posting(posting) => {
                // Hybrid: a shared source is trapped — the VMM handles the interrupt and
                // injects it into the owner (and its copies into the other sharers).
                if self.policy.kind() == crate::policy::PolicyKind::Hybrid {
                    if self.hybrid.delivery_mode(msg.requester_id)
                        == crate::hybrid::SourceMode::Trapped
                    {
                        if let Some(owner) = self.descriptor_owner(posting.pda, eim) {
                            self.hybrid.deliver_copies(msg.requester_id);
                            self.hops.record(Hop::Remap, hops::now() - start);
                            self.deliver(
                                &InterruptRequest::fixed(posting.vector, owner as u32),
                                DestinationFormat::X2Apic,
                            );
                            self.drain_iommu_events();
                            return;
                        }
                    }
                    self.hybrid
                        .counters
                        .straight
                        .fetch_add(1, Ordering::Relaxed);
                }
                // The delivery-policy seam: a posted interrupt may go to another vCPU.
                let owner = if self.track_owners {
                    self.descriptor_owner(posting.pda, eim)
                } else {
                    None
                };
                if let Some(owner) = owner {
                    if let Decision::Redirect(to) =
                        self.policy.decide(&self.sched, posting.index, owner)
                    {
                        bump(&self.counters.redirected);
                        self.hops.record(Hop::Remap, hops::now() - start);
                        tracing::trace!(index = posting.index, from = owner, to, "redirected");
                        self.deliver(
                            &InterruptRequest::fixed(posting.vector, to as u32),
                            DestinationFormat::X2Apic,
                        );
                        self.drain_iommu_events();
                        return;
                    }
                }
                bump(&self.counters.posted);
                let outcome = self.iommu().post(&posting);
                self.hops.record(Hop::Remap, hops::now() - start);
                tracing::trace!(
                    index = posting.index,
                    vector = posting.vector,
                    ?outcome,
                    "posted"
                );
                match outcome {
                    PostResult::Notify {
                        nv, destination, ..
                    } => {
                        bump(&self.counters.notified);
                        self.notify(nv, destination, posting.pda);
                    }
                    PostResult::Suppressed => bump(&self.counters.suppressed),
                    PostResult::AlreadyOutstanding => bump(&self.counters.outstanding),
                    PostResult::Fault(_) => bump(&self.counters.faulted),
                }
            }
            RemapResult::Fault(fault) => {
                bump(&self.counters.faulted);
                tracing::debug!(?fault, "interrupt-remapping fault");
            }
            RemapResult::NotInterrupt => bump(&self.counters.not_interrupts),
        }
        self.drain_iommu_events();
    }

    /// Delivers the IOMMU's own interrupts (fault events, invalidation completion), which
    /// are not subject to remapping.
    pub fn drain_iommu_events(&self) {
        let events = {
            let mut iommu = self.iommu();
            if !iommu.has_interrupts() {
                return;
            }
            iommu.take_interrupts()
        };
        for msg in events {
            bump(&self.counters.iommu_events);
            match msg.decode_compatibility() {
                Some(request) => self.deliver(&request, DestinationFormat::XApic),
                None => bump(&self.counters.dropped),
            }
        }
    }

    /// The vCPU whose APIC the descriptor at `pda` notifies (its NDST), remembered as the
    /// descriptor's owner so that preemption can set SN in it.
    fn descriptor_owner(&self, pda: u64, eim: bool) -> Option<usize> {
        let ndst = self.iommu().with_descriptor(pda, |pid| pid.ndst())?;
        let vcpu = self.vcpu_of(if eim { ndst } else { (ndst >> 8) & 0xff })?;
        let mut owned = self.descriptors[vcpu]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !owned.contains(&pda) {
            owned.push(pda);
        }
        Some(vcpu)
    }

    /// Deschedules `vcpu`: SN in its descriptors, as KVM does for a preempted vCPU. The
    /// caller kicks it out of KVM_RUN.
    pub fn preempt(&self, vcpu: usize) {
        self.sched.preempt(vcpu);
        self.set_suppress(vcpu, true);
    }

    /// Lets `vcpu` run again: SN cleared, and requests that waited in PIR are processed
    /// before its next entry (KVM's check on scheduling a vCPU in).
    pub fn resume(&self, vcpu: usize) {
        let waiting = self.set_suppress(vcpu, false);
        self.policy.resumed(vcpu);
        for pda in waiting {
            match &self.backend {
                Backend::Emulated(_) => {
                    let mut pending = self.pending_descriptors[vcpu]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if !pending.contains(&pda) {
                        pending.push(pda);
                    }
                }
                Backend::Kernel(..) => self.process_descriptor(pda, |vector| {
                    self.deliver(
                        &InterruptRequest::fixed(vector, vcpu as u32),
                        DestinationFormat::X2Apic,
                    )
                }),
            }
        }
        self.sched.resume(vcpu);
    }

    /// Sets or clears SN in `vcpu`'s descriptors; returns those with requests in PIR.
    fn set_suppress(&self, vcpu: usize, suppress: bool) -> Vec<u64> {
        let owned = self.descriptors[vcpu]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let iommu = self.iommu();
        owned
            .into_iter()
            .filter(|&pda| {
                iommu
                    .with_descriptor(pda, |pid| {
                        pid.set_sn(suppress);
                        pid.pir_pending()
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    fn vcpu_of(&self, apic_id: u32) -> Option<usize> {
        (apic_id < self.cpus).then_some(apic_id as usize)
    }

    /// A posted-interrupt notification `nv` for APIC `destination`.
    fn notify(&self, nv: u8, destination: u32, pda: u64) {
        let Some(vcpu) = self.vcpu_of(destination) else {
            // No such APIC: the notification goes nowhere, as on a bus with no taker.
            tracing::debug!(destination, "notification to a nonexistent APIC dropped");
            bump(&self.counters.dropped);
            return;
        };
        if nv != POSTED_INTERRUPT_VECTOR {
            self.deliver(
                &InterruptRequest::fixed(nv, destination),
                DestinationFormat::X2Apic,
            );
            return;
        }
        match &self.backend {
            Backend::Emulated(chip) => {
                let mut pending = self.pending_descriptors[vcpu]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if !pending.contains(&pda) {
                    pending.push(pda);
                }
                drop(pending);
                chip.kick(vcpu);
            }
            Backend::Kernel(..) => {
                self.process_descriptor(pda, |vector| {
                    self.deliver(
                        &InterruptRequest::fixed(vector, destination),
                        DestinationFormat::X2Apic,
                    )
                });
            }
        }
    }

    /// On `vcpu`'s thread before entry (emulated backend): posted-interrupt processing of the
    /// descriptors notified to it, their vectors accepted by its APIC.
    pub fn before_entry(&self, vcpu: usize) {
        let Backend::Emulated(chip) = &self.backend else {
            return;
        };
        let pdas = std::mem::take(
            &mut *self.pending_descriptors[vcpu]
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for pda in pdas {
            self.process_descriptor(pda, |vector| {
                chip.accept_local(vcpu, &InterruptRequest::fixed(vector, vcpu as u32))
            });
        }
    }

    /// Posted-interrupt processing of the descriptor at `pda`: clear ON, take PIR, and call
    /// `deliver` for each requested vector, lowest first.
    pub fn process_descriptor(&self, pda: u64, mut deliver: impl FnMut(u8)) {
        let pir = self.iommu().with_descriptor(pda, |pid| pid.process());
        let Some(pir) = pir else {
            bump(&self.counters.dropped);
            return;
        };
        bump(&self.counters.pid_processed);
        for (word, bits) in pir.iter().enumerate() {
            let mut bits = *bits;
            while bits != 0 {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                deliver((word * 64) as u8 + bit as u8);
            }
        }
    }

    /// Hands a request to the interrupt controller.
    pub fn deliver(&self, request: &InterruptRequest, format: DestinationFormat) {
        match &self.backend {
            Backend::Emulated(chip) => chip.deliver(request, format),
            Backend::Kernel(vm, routes) => {
                let msg = MsiMessage::compatibility(0, request);
                let key = MsiKey {
                    address_lo: msg.address as u32,
                    // x2APIC destinations above 255: bits 31:8 in the upper address (KVM's
                    // extended destination, KVM_CAP_X2APIC_API).
                    address_hi: request.destination & 0xffff_ff00,
                    data: msg.data,
                };
                if let Err(e) = routes.deliver(vm, key) {
                    tracing::debug!(%e, "irqfd delivery failed");
                    bump(&self.counters.dropped);
                }
            }
        }
    }
}

/// The VT-d register page on the MMIO bus.
pub struct IommuRegisters(pub Arc<Fabric>);

impl DeviceMmio for IommuRegisters {
    fn mmio_read(&self, base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        self.0.iommu().mmio_read(base, offset, data);
    }

    fn mmio_write(&self, base: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        self.0.iommu().mmio_write(base, offset, data);
        self.0.drain_iommu_events();
    }
}
