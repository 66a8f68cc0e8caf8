//! The `emulated` irqchip backend: one Postbox `LocalApic` model per vCPU, reached through
//! MSR exits (IA32_APIC_BASE, IA32_TSC_DEADLINE, x2APIC 0x800–0x8ff, routed to userspace with
//! an MSR filter) and xAPIC MMIO exits; interrupts injected with `KVM_INTERRUPT` when the
//! guest can take them, else through an interrupt window; APIC timers on a host timer thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use apic::{
    destination, ApicAction, ApicConfig, ApicSnapshot, Exception, Ipi, LocalApic, Shorthand,
};
use kvm_bindings::{kvm_interrupt, kvm_msr_entry, Msrs};
use kvm_ioctls::{MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VcpuFd, VmFd};
use vmm_sys_util::ioctl::ioctl_with_ref;

use crate::dispatch::{MsrResult, VcpuDevices};
use crate::error::{Error, Result};
use crate::hops::{self, Hop, HopStats};
use crate::vcpu::VcpuHandle;

pub const MSR_IA32_TSC: u32 = 0x10;
pub const MSR_IA32_APIC_BASE: u32 = 0x1b;
pub const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_COUNT: u32 = 0x100;
/// Size of the xAPIC register page.
pub const XAPIC_PAGE_SIZE: u64 = 0x1000;
/// The EOI register: MSR 0x80b, MMIO offset 0xb0.
pub const MSR_X2APIC_EOI: u32 = 0x80b;
pub const XAPIC_EOI_OFFSET: u64 = 0xb0;

vmm_sys_util::ioctl_iow_nr!(KVM_INTERRUPT, kvm_bindings::KVMIO, 0x86, kvm_interrupt);

/// Routes the APIC MSRs to userspace: a filter whose bitmaps allow nothing in its ranges.
pub fn install_msr_filter(vm: &VmFd) -> Result<()> {
    let deny = [0u8; (MSR_X2APIC_COUNT / 8) as usize];
    let rw = MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE;
    let range = |base, msr_count| MsrFilterRange {
        flags: rw,
        base,
        msr_count,
        bitmap: &deny,
    };
    vm.set_msr_filter(
        MsrFilterDefaultAction::ALLOW,
        &[
            range(MSR_IA32_APIC_BASE, 1),
            range(MSR_IA32_TSC_DEADLINE, 1),
            range(MSR_X2APIC_FIRST, MSR_X2APIC_COUNT),
        ],
    )
    .map_err(Error::kvm("KVM_X86_SET_MSR_FILTER"))
}

/// Counters of the emulated path, printable.
#[derive(Debug, Default)]
pub struct ApicCounters {
    pub injected: AtomicU64,
    pub windows: AtomicU64,
    pub ipis: AtomicU64,
    pub timer_fires: AtomicU64,
    pub nmis: AtomicU64,
}

impl ApicCounters {
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "apic: injected {}, interrupt windows {}, IPIs {}, timer expiries {}, NMIs {}",
            g(&self.injected),
            g(&self.windows),
            g(&self.ipis),
            g(&self.timer_fires),
            g(&self.nmis)
        )
    }
}

struct VcpuApic {
    apic: Mutex<LocalApic>,
    /// Host TSC when each vector became pending (0: not pending), and when it was injected.
    accepted_at: [AtomicU64; 256],
    injected_at: [AtomicU64; 256],
    /// Guest TSC = host TSC + offset (KVM gives each vCPU its own offset).
    tsc_offset: AtomicU64,
    nmi_pending: AtomicBool,
}

/// The emulated interrupt controller of one VM.
pub struct EmulatedIrqchip {
    vcpus: Vec<VcpuApic>,
    handles: Arc<Vec<VcpuHandle>>,
    tsc_hz: u64,
    /// Timer deadlines in host TSC, per vCPU (0: none); the timer thread waits on `timer_cv`.
    deadlines: Mutex<Vec<u64>>,
    timer_cv: Condvar,
    stopping: AtomicBool,
    pub counters: ApicCounters,
    hops: Arc<HopStats>,
}

fn host_tsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

impl EmulatedIrqchip {
    pub fn new(
        cpus: u32,
        tsc_khz: u32,
        handles: Arc<Vec<VcpuHandle>>,
        hops: Arc<HopStats>,
    ) -> Self {
        let tsc_hz = u64::from(tsc_khz.max(1)) * 1000;
        let vcpus = (0..cpus)
            .map(|id| {
                let mut config = ApicConfig::new(id, id == 0);
                config.clock.tsc_hz = tsc_hz;
                VcpuApic {
                    apic: Mutex::new(LocalApic::new(config)),
                    accepted_at: [const { AtomicU64::new(0) }; 256],
                    injected_at: [const { AtomicU64::new(0) }; 256],
                    tsc_offset: AtomicU64::new(0),
                    nmi_pending: AtomicBool::new(false),
                }
            })
            .collect();
        Self {
            vcpus,
            handles,
            tsc_hz,
            deadlines: Mutex::new(vec![0; cpus as usize]),
            timer_cv: Condvar::new(),
            stopping: AtomicBool::new(false),
            counters: ApicCounters::default(),
            hops,
        }
    }

    fn apic(&self, vcpu: usize) -> MutexGuard<'_, LocalApic> {
        self.vcpus[vcpu]
            .apic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn tsc_khz(&self) -> u32 {
        (self.tsc_hz / 1000) as u32
    }

    /// The guest TSC of `vcpu` now.
    pub fn now(&self, vcpu: usize) -> u64 {
        host_tsc().wrapping_add(self.vcpus[vcpu].tsc_offset.load(Ordering::Relaxed))
    }

    /// Called on the vCPU's own thread before it first runs: learns its TSC offset.
    pub fn vcpu_started(&self, vcpu: usize, fd: &VcpuFd) {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }])
        .expect("one MSR entry fits");
        let host = host_tsc();
        if fd.get_msrs(&mut msrs) == Ok(1) {
            let guest = msrs.as_slice()[0].data;
            self.vcpus[vcpu]
                .tsc_offset
                .store(guest.wrapping_sub(host), Ordering::Relaxed);
        }
    }

    /// Handles what a model step asked for. `vcpu` is the APIC the actions came from.
    fn handle(&self, vcpu: usize, actions: apic::Actions) {
        for action in actions.iter() {
            match *action {
                ApicAction::SendIpi(ipi) => self.send_ipi(vcpu, &ipi),
                ApicAction::TimerDeadline(deadline) => self.set_deadline(vcpu, deadline),
                ApicAction::Startup { vector } => {
                    tracing::debug!(vcpu, vector, "start-up IPI");
                    self.handles[vcpu].start_up(vector);
                }
                ApicAction::Init => {
                    tracing::debug!(vcpu, "INIT");
                }
                ApicAction::Nmi => {
                    self.vcpus[vcpu].nmi_pending.store(true, Ordering::SeqCst);
                    self.handles[vcpu].kick();
                }
                ApicAction::EoiBroadcast { vector } => {
                    tracing::trace!(vcpu, vector, "EOI broadcast (no IOAPIC)");
                }
                ApicAction::Smi | ApicAction::ExtInt => {
                    tracing::debug!(vcpu, ?action, "ignored: no SMM, no 8259 PIC");
                }
                ApicAction::ModeChanged { mode, base } => {
                    tracing::debug!(vcpu, ?mode, base = format_args!("{base:#x}"), "APIC mode");
                }
            }
        }
    }

    fn snapshots(&self) -> Vec<ApicSnapshot> {
        (0..self.vcpus.len())
            .map(|i| ApicSnapshot::of(&self.apic(i)))
            .collect()
    }

    /// Delivers an IPI from `source` to the APICs it resolves to.
    fn send_ipi(&self, source: usize, ipi: &Ipi) {
        self.counters.ipis.fetch_add(1, Ordering::Relaxed);
        let targets = destination::resolve(
            &self.snapshots(),
            &ipi.request,
            ipi.shorthand,
            Some(source),
            ipi.format,
        );
        let _span = tracing::trace_span!("ipi", source, vector = ipi.request.vector).entered();
        for target in targets {
            self.accept(target, &ipi.request);
        }
    }

    /// An interrupt request for `vcpu`'s APIC (IPI, MSI, remapped interrupt), from another
    /// thread: the vCPU is kicked so that it injects before its next entry.
    pub fn accept(&self, vcpu: usize, request: &apic::InterruptRequest) {
        self.accept_local(vcpu, request);
        self.kick(vcpu);
    }

    /// As [`Self::accept`], on `vcpu`'s own thread (no kick needed).
    pub fn accept_local(&self, vcpu: usize, request: &apic::InterruptRequest) {
        let actions = self.apic(vcpu).accept(request);
        let _ = self.vcpus[vcpu].accepted_at[usize::from(request.vector)].compare_exchange(
            0,
            hops::now(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        tracing::trace!(vcpu, vector = request.vector, "accepted");
        self.handle(vcpu, actions);
    }

    /// Makes `vcpu` leave KVM_RUN or its halt.
    pub fn kick(&self, vcpu: usize) {
        self.handles[vcpu].kick();
    }

    /// Resolves `request` (a device interrupt, no shorthand) and accepts it on each target.
    pub fn deliver(&self, request: &apic::InterruptRequest, format: apic::DestinationFormat) {
        let targets =
            destination::resolve(&self.snapshots(), request, Shorthand::None, None, format);
        for target in targets {
            self.accept(target, request);
        }
    }

    fn set_deadline(&self, vcpu: usize, guest_deadline: Option<u64>) {
        let host = guest_deadline.map_or(0, |d| {
            d.wrapping_sub(self.vcpus[vcpu].tsc_offset.load(Ordering::Relaxed))
                .max(1)
        });
        let mut deadlines = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        deadlines[vcpu] = host;
        self.timer_cv.notify_all();
    }

    /// Before KVM_RUN on `vcpu`'s thread: timer expiry, NMIs, and injection of the highest
    /// deliverable vector, or an interrupt window when the guest cannot take it now.
    pub fn before_entry(&self, vcpu: usize, fd: &mut VcpuFd) {
        let now = self.now(vcpu);
        let mut apic = self.apic(vcpu);
        if apic.next_deadline().is_some_and(|d| d <= now) {
            self.counters.timer_fires.fetch_add(1, Ordering::Relaxed);
            let actions = apic.tick(now);
            drop(apic);
            self.handle(vcpu, actions);
            apic = self.apic(vcpu);
        }
        if self.vcpus[vcpu].nmi_pending.swap(false, Ordering::SeqCst) {
            self.counters.nmis.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = fd.nmi() {
                tracing::warn!(vcpu, %e, "KVM_NMI failed");
            }
        }
        let pending = apic.pending_interrupt();
        let run = fd.get_kvm_run();
        match pending {
            Some(_) if run.ready_for_interrupt_injection != 0 && run.if_flag != 0 => {
                let vector = apic
                    .acknowledge()
                    .expect("a pending interrupt is acknowledged");
                drop(apic);
                let irq = kvm_interrupt {
                    irq: u32::from(vector),
                };
                // SAFETY: KVM_INTERRUPT on this thread's own vCPU fd with a valid argument.
                let ret = unsafe { ioctl_with_ref(fd, KVM_INTERRUPT(), &irq) };
                if ret < 0 {
                    tracing::warn!(
                        vcpu,
                        vector,
                        errno = std::io::Error::last_os_error().raw_os_error(),
                        "KVM_INTERRUPT failed"
                    );
                }
                self.counters.injected.fetch_add(1, Ordering::Relaxed);
                let v = &self.vcpus[vcpu];
                let now = hops::now();
                let accepted = v.accepted_at[usize::from(vector)].swap(0, Ordering::Relaxed);
                if accepted != 0 {
                    self.hops
                        .record(Hop::AcceptToInject, now.saturating_sub(accepted));
                }
                v.injected_at[usize::from(vector)].store(now, Ordering::Relaxed);
                tracing::trace!(vcpu, vector, "injected");
                fd.get_kvm_run().request_interrupt_window = 0;
            }
            Some(_) => {
                self.counters.windows.fetch_add(1, Ordering::Relaxed);
                run.request_interrupt_window = 1;
            }
            None => run.request_interrupt_window = 0,
        }
    }

    /// Whether `vcpu` has something to do after HLT (an interrupt the APIC would deliver, a
    /// due timer, or an NMI).
    pub fn has_work(&self, vcpu: usize) -> bool {
        let now = self.now(vcpu);
        let apic = self.apic(vcpu);
        apic.pending_interrupt().is_some()
            || apic.next_deadline().is_some_and(|d| d <= now)
            || self.vcpus[vcpu].nmi_pending.load(Ordering::SeqCst)
    }

    /// The timer thread: kicks each vCPU when its APIC timer deadline passes.
    pub fn run_timers(&self) {
        let mut deadlines = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        while !self.stopping.load(Ordering::SeqCst) {
            let now = host_tsc();
            let mut next = u64::MAX;
            for (vcpu, d) in deadlines.iter_mut().enumerate() {
                if *d != 0 && *d <= now {
                    *d = 0;
                    self.handles[vcpu].kick();
                } else if *d != 0 {
                    next = next.min(*d);
                }
            }
            let wait = if next == u64::MAX {
                Duration::from_millis(100)
            } else {
                Duration::from_nanos(
                    ((next - now) as u128 * 1_000_000_000 / u128::from(self.tsc_hz)) as u64,
                )
            };
            deadlines = self
                .timer_cv
                .wait_timeout(deadlines, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.timer_cv.notify_all();
    }

    /// Times injected → EOI for the vector in service (the highest ISR bit).
    fn record_eoi(&self, vcpu: usize) {
        let isr = self.apic(vcpu).isr();
        let Some(word) = (0..4).rev().find(|&w| isr[w] != 0) else {
            return;
        };
        let vector = word * 64 + 63 - isr[word].leading_zeros() as usize;
        let injected = self.vcpus[vcpu].injected_at[vector].swap(0, Ordering::Relaxed);
        if injected != 0 {
            self.hops
                .record(Hop::InjectToEoi, hops::now().saturating_sub(injected));
        }
    }

    fn in_xapic_page(&self, vcpu: usize, addr: u64) -> Option<u64> {
        let base = self.apic(vcpu).mmio_base()?;
        (addr >= base && addr < base + XAPIC_PAGE_SIZE).then(|| addr - base)
    }

    fn msr_result<T>(r: std::result::Result<T, Exception>) -> std::result::Result<T, MsrResult> {
        r.map_err(|_| MsrResult::GeneralProtection)
    }

    fn is_apic_msr(msr: u32) -> bool {
        msr == MSR_IA32_APIC_BASE
            || msr == MSR_IA32_TSC_DEADLINE
            || (MSR_X2APIC_FIRST..MSR_X2APIC_FIRST + MSR_X2APIC_COUNT).contains(&msr)
    }
}

impl VcpuDevices for EmulatedIrqchip {
    fn mmio_read(&self, vcpu: usize, addr: u64, data: &mut [u8]) -> Option<()> {
        let offset = self.in_xapic_page(vcpu, addr)?;
        let now = self.now(vcpu);
        if !self.apic(vcpu).mmio_read(offset, data, now) {
            data.fill(0);
        }
        Some(())
    }

    fn mmio_write(&self, vcpu: usize, addr: u64, data: &[u8]) -> Option<()> {
        let offset = self.in_xapic_page(vcpu, addr)?;
        let now = self.now(vcpu);
        if offset == XAPIC_EOI_OFFSET {
            self.record_eoi(vcpu);
        }
        let actions = self.apic(vcpu).mmio_write(offset, data, now);
        self.handle(vcpu, actions);
        Some(())
    }

    fn rdmsr(&self, vcpu: usize, msr: u32) -> Option<MsrResult> {
        if !Self::is_apic_msr(msr) {
            return None;
        }
        let now = self.now(vcpu);
        let value = Self::msr_result(self.apic(vcpu).read_msr(msr, now));
        Some(value.map_or_else(|e| e, MsrResult::Ok))
    }

    fn wrmsr(&self, vcpu: usize, msr: u32, value: u64) -> Option<MsrResult> {
        if !Self::is_apic_msr(msr) {
            return None;
        }
        let now = self.now(vcpu);
        if msr == MSR_X2APIC_EOI {
            self.record_eoi(vcpu);
        }
        let result = self.apic(vcpu).write_msr(msr, value, now);
        Some(match result {
            Ok(actions) => {
                self.handle(vcpu, actions);
                MsrResult::Ok(0)
            }
            Err(_) => MsrResult::GeneralProtection,
        })
    }
}
