//! The local APIC (Intel SDM vol. 3 chapter 11) in xAPIC and x2APIC mode.
//!
//! Registers live in an [`ApicPage`] with the hardware layout, so that APIC virtualization
//! ([`crate::apicv`]) works on the very same bytes as the virtual-APIC page.

use crate::action::{Actions, ApicAction, ApicMode, DestinationFormat, Exception, Ipi, Shorthand};
use crate::message::{DeliveryMode, DestinationMode, InterruptRequest, TriggerMode};
use crate::registers::*;
use crate::timer::{divide_value, TimerClock, TimerMode, TimerState};

/// Static configuration of one local APIC (what CPUID and the platform say about it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicConfig {
    /// Initial APIC ID (x2APIC ID; its low 8 bits are the xAPIC ID).
    pub apic_id: u32,
    /// Bootstrap processor (IA32_APIC_BASE bit 8 at reset; APs start in wait-for-SIPI).
    pub bsp: bool,
    /// Advertise "suppress EOI broadcast" in the version register (bit 24), making SVR
    /// bit 12 writable (directed EOI, §11.8.5).
    pub directed_eoi: bool,
    /// TSC-deadline timer mode supported (CPUID.01H:ECX\[24\]); makes LVT timer bit 18 and
    /// IA32_TSC_DEADLINE available.
    pub tsc_deadline: bool,
    /// Clock relation for the timer. Time unit of the whole model: guest TSC ticks.
    pub clock: TimerClock,
    /// MAXPHYADDR: IA32_APIC_BASE bits at and above it are reserved (#GP when set).
    pub max_phys_addr_bits: u8,
}

impl ApicConfig {
    /// Defaults: directed EOI and TSC deadline supported, 1 GHz TSC and 1 GHz bus clock
    /// (one timer count per nanosecond at divide 1, as KVM's emulated APIC), MAXPHYADDR 46.
    pub const fn new(apic_id: u32, bsp: bool) -> Self {
        Self {
            apic_id,
            bsp,
            directed_eoi: true,
            tsc_deadline: true,
            clock: TimerClock {
                tsc_hz: 1_000_000_000,
                bus_hz: 1_000_000_000,
            },
            max_phys_addr_bits: 46,
        }
    }
}

/// Activity of the processor as far as the APIC's INIT/SIPI protocol is concerned
/// (SDM §9.4 multiple-processor initialization, §11.4.7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessorState {
    Running,
    /// After INIT, an AP waits for a start-up IPI.
    WaitForSipi,
}

/// One local vector table entry (§11.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LvtEntry {
    Timer,
    Thermal,
    PerformanceCounter,
    Lint0,
    Lint1,
    Error,
    Cmci,
}

impl LvtEntry {
    pub const ALL: [LvtEntry; 7] = [
        Self::Timer,
        Self::Thermal,
        Self::PerformanceCounter,
        Self::Lint0,
        Self::Lint1,
        Self::Error,
        Self::Cmci,
    ];

    /// Register offset of the entry.
    pub const fn offset(self) -> u16 {
        match self {
            Self::Timer => APIC_LVT_TIMER,
            Self::Thermal => APIC_LVT_THERMAL,
            Self::PerformanceCounter => APIC_LVT_PMI,
            Self::Lint0 => APIC_LVT_LINT0,
            Self::Lint1 => APIC_LVT_LINT1,
            Self::Error => APIC_LVT_ERROR,
            Self::Cmci => APIC_LVT_CMCI,
        }
    }

    fn from_offset(offset: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.offset() == offset)
    }

    fn has_delivery_mode(self) -> bool {
        !matches!(self, Self::Timer | Self::Error)
    }

    fn is_lint(self) -> bool {
        matches!(self, Self::Lint0 | Self::Lint1)
    }
}

/// Computes the processor priority (§11.8.3.1): PPR = TPR when TPR\[7:4\] ≥ ISRV\[7:4\],
/// else ISRV\[7:4\] with sub-class 0.
#[inline]
pub const fn processor_priority(tpr: u8, isrv: u8) -> u8 {
    if tpr >> 4 >= isrv >> 4 {
        tpr
    } else {
        isrv & APIC_PRIORITY_CLASS
    }
}

/// Computes the arbitration priority (§11.6.2.4, arbitration priority register).
pub const fn arbitration_priority(tpr: u8, isrv: u8, irrv: u8) -> u8 {
    if tpr >> 4 >= irrv >> 4 && tpr >> 4 > isrv >> 4 {
        tpr
    } else {
        let mut class = tpr >> 4;
        if isrv >> 4 > class {
            class = isrv >> 4;
        }
        if irrv >> 4 > class {
            class = irrv >> 4;
        }
        class << 4
    }
}

/// A local APIC. See the crate documentation for the call cycle.
#[derive(Clone, Debug)]
pub struct LocalApic {
    page: Box<ApicPage>,
    config: ApicConfig,
    apic_base: u64,
    /// Errors detected since the last ESR write (§11.5.3); the ESR register shows the
    /// errors collected up to that write.
    esr_pending: u32,
    timer: TimerState,
    state: ProcessorState,
    /// Current input level of LINT0/LINT1 after polarity (true = active).
    lint_active: [bool; 2],
}

fn gp<T>() -> Result<T, Exception> {
    Err(Exception::GeneralProtection)
}

impl LocalApic {
    /// A local APIC in its power-up state (§11.4.7.1): xAPIC mode at 0xFEE0_0000, software
    /// disabled, LVT entries masked. An AP starts in wait-for-SIPI.
    pub fn new(config: ApicConfig) -> Self {
        let mut apic = Self {
            page: Box::default(),
            config,
            apic_base: APIC_DEFAULT_BASE
                | APIC_BASE_ENABLE
                | if config.bsp { APIC_BASE_BSP } else { 0 },
            esr_pending: 0,
            timer: TimerState::default(),
            state: ProcessorState::Running,
            lint_active: [false; 2],
        };
        apic.reset_registers();
        apic.state = if config.bsp {
            ProcessorState::Running
        } else {
            ProcessorState::WaitForSipi
        };
        apic
    }

    /// Power-up/INIT register values (§11.4.7.1, §11.4.7.3): IRR, ISR, TMR, ICR, LDR, TPR,
    /// timer counts, divide configuration and ESR zero; DFR all ones; LVTs masked; SVR 0xFF.
    /// The ID (in the current mode's format) and IA32_APIC_BASE are kept.
    fn reset_registers(&mut self) {
        *self.page = ApicPage::default();
        self.write_id_for_mode();
        let version = APIC_VERSION_VALUE
            | APIC_VERSION_MAX_LVT
            | if self.config.directed_eoi {
                APIC_VERSION_DIRECTED_EOI
            } else {
                0
            };
        self.page.write(APIC_VERSION, version);
        self.page.write(APIC_DFR, APIC_DFR_FLAT);
        self.page.write(APIC_SVR, SVR_RESET);
        for entry in LvtEntry::ALL {
            self.page.write(entry.offset(), LVT_MASKED);
        }
        self.esr_pending = 0;
        self.timer = TimerState::default();
    }

    /// ID (and, in x2APIC mode, the derived LDR) for the current mode (§11.12.5.1).
    fn write_id_for_mode(&mut self) {
        let id = self.config.apic_id;
        if self.mode() == ApicMode::X2Apic {
            self.page.write(APIC_ID, id);
            self.page.write(APIC_LDR, x2apic_ldr(id));
        } else {
            self.page.write(APIC_ID, (id & 0xff) << XAPIC_ID_SHIFT);
        }
    }

    /// Power-up/RESET (§11.4.7.1): the state [`Self::new`] returns, for a VMM resetting the
    /// machine.
    pub fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    // -----------------------------------------------------------------------------------
    // State accessors.
    // -----------------------------------------------------------------------------------

    pub fn config(&self) -> &ApicConfig {
        &self.config
    }

    /// Mode from IA32_APIC_BASE.EN/EXTD.
    #[inline]
    pub fn mode(&self) -> ApicMode {
        mode_of(self.apic_base).unwrap_or(ApicMode::Disabled)
    }

    /// The APIC ID as the current mode reads it (xAPIC: ID bits 31:24).
    pub fn id(&self) -> u32 {
        match self.mode() {
            ApicMode::X2Apic => self.page.read(APIC_ID),
            _ => self.page.read(APIC_ID) >> XAPIC_ID_SHIFT,
        }
    }

    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// The xAPIC MMIO page's guest-physical base, when the page is decoded (xAPIC mode).
    pub fn mmio_base(&self) -> Option<u64> {
        (self.mode() == ApicMode::XApic).then_some(
            self.apic_base & APIC_BASE_ADDR_MASK & mask_below(self.config.max_phys_addr_bits),
        )
    }

    /// SVR bit 8 (§11.4.7.2).
    #[inline]
    pub fn software_enabled(&self) -> bool {
        self.page.read(APIC_SVR) & SVR_APIC_ENABLED != 0
    }

    pub fn tpr(&self) -> u8 {
        self.page.read(APIC_TPR) as u8
    }

    /// CR8 as MOV from CR8 reads it: TPR bits 7:4 (SDM vol. 3 §11.8.6).
    pub fn cr8(&self) -> u64 {
        u64::from(self.tpr() >> 4)
    }

    /// MOV to CR8 (e.g. from `kvm_run.cr8` after an exit): TPR = CR8\[3:0\] << 4. Bits 63:4
    /// are reserved: #GP (§11.8.6).
    pub fn write_cr8(&mut self, cr8: u64) -> Result<(), Exception> {
        if cr8 >> 4 != 0 {
            return gp();
        }
        self.page.write(APIC_TPR, (cr8 as u32) << 4);
        self.update_ppr();
        Ok(())
    }

    /// The PPR register value.
    pub fn ppr(&self) -> u8 {
        self.page.read(APIC_PPR) as u8
    }

    pub fn ldr(&self) -> u32 {
        self.page.read(APIC_LDR)
    }

    pub fn dfr(&self) -> u32 {
        self.page.read(APIC_DFR)
    }

    /// The visible ESR value.
    pub fn esr(&self) -> u32 {
        self.page.read(APIC_ESR)
    }

    pub fn processor_state(&self) -> ProcessorState {
        self.state
    }

    pub fn irr(&self) -> [u64; 4] {
        self.page.bits(VectorArray::Irr)
    }

    pub fn isr(&self) -> [u64; 4] {
        self.page.bits(VectorArray::Isr)
    }

    pub fn tmr(&self) -> [u64; 4] {
        self.page.bits(VectorArray::Tmr)
    }

    /// The register page (hardware layout).
    pub fn page(&self) -> &ApicPage {
        &self.page
    }

    pub(crate) fn page_mut(&mut self) -> &mut ApicPage {
        &mut self.page
    }

    pub fn lvt(&self, entry: LvtEntry) -> u32 {
        self.page.read(entry.offset())
    }

    /// The timer's next deadline in guest TSC ticks, if armed.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.mode() == ApicMode::Disabled {
            return None;
        }
        self.timer.next_deadline(self.timer_mode())
    }

    fn timer_mode(&self) -> TimerMode {
        TimerMode::from_lvt(self.page.read(APIC_LVT_TIMER))
    }

    fn divide(&self) -> u64 {
        divide_value(self.page.read(APIC_TIMER_DIVIDE))
    }

    fn push_deadline_change(&self, before: Option<u64>, actions: &mut Actions) {
        let after = self.next_deadline();
        if after != before {
            actions.push(ApicAction::TimerDeadline(after));
        }
    }

    // -----------------------------------------------------------------------------------
    // Priorities.
    // -----------------------------------------------------------------------------------

    /// PPR computed from the current TPR and ISR.
    #[inline]
    pub fn compute_ppr(&self) -> u8 {
        let isrv = self.page.highest(VectorArray::Isr).unwrap_or(0);
        processor_priority(self.tpr(), isrv)
    }

    #[inline]
    pub(crate) fn update_ppr(&mut self) {
        let ppr = self.compute_ppr();
        self.page.write(APIC_PPR, u32::from(ppr));
    }

    fn apr(&self) -> u8 {
        let isrv = self.page.highest(VectorArray::Isr).unwrap_or(0);
        let irrv = self.page.highest(VectorArray::Irr).unwrap_or(0);
        arbitration_priority(self.tpr(), isrv, irrv)
    }

    // -----------------------------------------------------------------------------------
    // Interrupt acceptance, dispatch, EOI (§11.8).
    // -----------------------------------------------------------------------------------

    /// Accepts an interrupt message routed to this APIC (from an IPI, an MSI, an IOAPIC).
    /// Fixed and lowest-priority requests set IRR (and TMR for level-triggered ones);
    /// NMI, SMI, INIT, start-up and ExtINT come back as actions for the VMM.
    pub fn accept(&mut self, request: &InterruptRequest) -> Actions {
        let mut actions = Actions::new();
        if self.mode() == ApicMode::Disabled {
            return actions;
        }
        let level_triggered = request.trigger_mode == TriggerMode::Level;
        match request.delivery_mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                if level_triggered && !request.level {
                    // A de-assert message carries no interrupt.
                    return actions;
                }
                self.accept_fixed(request.vector, level_triggered);
            }
            DeliveryMode::Nmi => actions.push(ApicAction::Nmi),
            DeliveryMode::Smi => actions.push(ApicAction::Smi),
            DeliveryMode::Init => {
                if level_triggered && !request.level {
                    // INIT level de-assert: arbitration-ID synchronization only (§11.6.1);
                    // no effect on the processor.
                    return actions;
                }
                let before = self.next_deadline();
                self.init();
                actions.push(ApicAction::Init);
                self.push_deadline_change(before, &mut actions);
            }
            DeliveryMode::StartUp => {
                if self.state == ProcessorState::WaitForSipi {
                    self.state = ProcessorState::Running;
                    actions.push(ApicAction::Startup {
                        vector: request.vector,
                    });
                }
            }
            DeliveryMode::ExtInt => actions.push(ApicAction::ExtInt),
            DeliveryMode::Reserved => {}
        }
        actions
    }

    /// Sets IRR (and TMR per trigger mode) for a fixed interrupt. Vectors 0–15 are illegal
    /// (ESR bit 6, not accepted, §11.5.2); a software-disabled APIC drops fixed interrupts.
    /// Returns whether the vector was accepted.
    #[inline]
    fn accept_fixed(&mut self, vector: u8, level_triggered: bool) -> bool {
        if vector < FIRST_LEGAL_VECTOR {
            self.log_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        if !self.software_enabled() {
            return false;
        }
        self.page.set(VectorArray::Irr, vector);
        if level_triggered {
            self.page.set(VectorArray::Tmr, vector);
        } else {
            self.page.clear(VectorArray::Tmr, vector);
        }
        true
    }

    /// The vector the APIC would dispatch to the processor now: the highest IRR vector whose
    /// priority class is above the PPR class (§11.8.3.1). The VMM injects it when the vCPU
    /// can take an interrupt and then calls [`Self::acknowledge`].
    /// An AP in wait-for-SIPI takes no interrupts (they stay in IRR).
    #[inline]
    pub fn pending_interrupt(&self) -> Option<u8> {
        if self.mode() == ApicMode::Disabled || self.state == ProcessorState::WaitForSipi {
            return None;
        }
        let irrv = self.page.highest(VectorArray::Irr)?;
        (irrv >> 4 > self.compute_ppr() >> 4).then_some(irrv)
    }

    /// The processor's interrupt acknowledge: moves the dispatched vector from IRR to ISR and
    /// raises PPR. Returns the vector to inject (`KVM_INTERRUPT`), or `None` when nothing is
    /// deliverable.
    #[inline]
    pub fn acknowledge(&mut self) -> Option<u8> {
        let vector = self.pending_interrupt()?;
        self.page.clear(VectorArray::Irr, vector);
        self.page.set(VectorArray::Isr, vector);
        // The dispatched vector is now the highest in-service one.
        self.page
            .write(APIC_PPR, u32::from(processor_priority(self.tpr(), vector)));
        Some(vector)
    }

    /// EOI (§11.8.5): clears the highest ISR bit; for a level-triggered vector (TMR set),
    /// clears a matching LINT remote IRR and broadcasts the EOI unless SVR bit 12 suppresses
    /// it.
    #[inline]
    pub fn eoi(&mut self) -> Actions {
        let Some(vector) = self.page.highest(VectorArray::Isr) else {
            return Actions::new();
        };
        self.page.clear(VectorArray::Isr, vector);
        self.update_ppr();
        self.eoi_effects(vector)
    }

    /// What follows the ISR update of an EOI of `vector` (also used after an EOI-induced
    /// VM exit of APICv, where the processor already updated VISR).
    pub(crate) fn eoi_effects(&mut self, vector: u8) -> Actions {
        let mut actions = Actions::new();
        if !self.page.test(VectorArray::Tmr, vector) {
            return actions;
        }
        for (pin, entry) in [(0, LvtEntry::Lint0), (1, LvtEntry::Lint1)] {
            let lvt = self.page.read(entry.offset());
            if lvt & LVT_REMOTE_IRR != 0 && lvt as u8 == vector {
                self.page.write(entry.offset(), lvt & !LVT_REMOTE_IRR);
                if self.lint_active[pin] && lvt & LVT_TRIGGER_LEVEL != 0 {
                    // The level input is still asserted: it is delivered again.
                    actions.extend(self.deliver_lvt(entry));
                }
            }
        }
        let suppressed =
            self.config.directed_eoi && self.page.read(APIC_SVR) & SVR_SUPPRESS_EOI_BROADCAST != 0;
        if !suppressed {
            actions.push(ApicAction::EoiBroadcast { vector });
        }
        actions
    }

    // -----------------------------------------------------------------------------------
    // Errors (§11.5.3).
    // -----------------------------------------------------------------------------------

    fn log_error(&mut self, bits: u32) {
        let new = bits & !self.esr_pending;
        self.esr_pending |= bits;
        if new != 0 {
            // The error interrupt (fixed only). A vector below 16 in LVT error logs a
            // receive-illegal-vector error, which is then already pending: no recursion.
            let _ = self.deliver_lvt(LvtEntry::Error);
        }
    }

    // -----------------------------------------------------------------------------------
    // INIT / SIPI (§11.4.7.3, §11.6.1).
    // -----------------------------------------------------------------------------------

    /// INIT: registers to their INIT state (ID, IA32_APIC_BASE and the x2APIC mode kept);
    /// an AP enters wait-for-SIPI, the BSP restarts at the reset vector.
    pub fn init(&mut self) {
        self.reset_registers();
        self.state = if self.apic_base & APIC_BASE_BSP != 0 {
            ProcessorState::Running
        } else {
            ProcessorState::WaitForSipi
        };
    }

    // -----------------------------------------------------------------------------------
    // Local interrupt sources (§11.5).
    // -----------------------------------------------------------------------------------

    /// Delivers the interrupt of one LVT entry per its delivery mode (unless masked):
    /// thermal, performance-counter and CMCI events come in here.
    pub fn deliver_lvt(&mut self, entry: LvtEntry) -> Actions {
        let mut actions = Actions::new();
        if self.mode() == ApicMode::Disabled {
            return actions;
        }
        let lvt = self.page.read(entry.offset());
        if lvt & LVT_MASKED != 0 {
            return actions;
        }
        if entry == LvtEntry::PerformanceCounter {
            // §11.5.1, local vector table figure note: generating a performance-counter interrupt sets the mask
            // bit of its LVT entry (Pentium 4 and later); the handler unmasks it.
            self.page.write(entry.offset(), lvt | LVT_MASKED);
        }
        let mode = if entry.has_delivery_mode() {
            DeliveryMode::from_bits(lvt >> LVT_DELIVERY_MODE_SHIFT)
        } else {
            DeliveryMode::Fixed
        };
        match mode {
            DeliveryMode::Fixed => {
                // Level-sensitive fixed interrupts exist on LINT0 only; LINT1 is always
                // edge-sensitive (§11.5.1, trigger mode).
                let level = entry == LvtEntry::Lint0 && lvt & LVT_TRIGGER_LEVEL != 0;
                if level && lvt & LVT_REMOTE_IRR != 0 {
                    return actions;
                }
                if self.accept_fixed(lvt as u8, level) && level {
                    self.page.write(entry.offset(), lvt | LVT_REMOTE_IRR);
                }
            }
            DeliveryMode::Nmi => actions.push(ApicAction::Nmi),
            DeliveryMode::Smi => actions.push(ApicAction::Smi),
            DeliveryMode::Init => {
                let before = self.next_deadline();
                self.init();
                actions.push(ApicAction::Init);
                self.push_deadline_change(before, &mut actions);
            }
            DeliveryMode::ExtInt if entry.is_lint() => actions.push(ApicAction::ExtInt),
            _ => {}
        }
        actions
    }

    /// Drives the LINT0 (`pin` 0) or LINT1 (`pin` 1) input. Edge-triggered entries deliver on
    /// the inactive→active transition, level-triggered fixed entries while active (gated by
    /// remote IRR). With the APIC hardware-disabled, LINT0 acts as INTR (ExtINT) and LINT1
    /// as NMI (§11.4.3).
    pub fn set_lint(&mut self, pin: u8, level: bool) -> Actions {
        let (index, entry) = match pin {
            0 => (0, LvtEntry::Lint0),
            1 => (1, LvtEntry::Lint1),
            _ => return Actions::new(),
        };
        let mut actions = Actions::new();
        if self.mode() == ApicMode::Disabled {
            let was = self.lint_active[index];
            self.lint_active[index] = level;
            if level && !was {
                actions.push(if index == 0 {
                    ApicAction::ExtInt
                } else {
                    ApicAction::Nmi
                });
            }
            return actions;
        }
        let lvt = self.page.read(entry.offset());
        let active = level != (lvt & LVT_POLARITY_LOW != 0);
        let was = self.lint_active[index];
        self.lint_active[index] = active;
        let level_fixed = index == 0
            && lvt & LVT_TRIGGER_LEVEL != 0
            && DeliveryMode::from_bits(lvt >> LVT_DELIVERY_MODE_SHIFT) == DeliveryMode::Fixed;
        if active && (level_fixed || !was) {
            actions = self.deliver_lvt(entry);
        }
        actions
    }

    // -----------------------------------------------------------------------------------
    // Timer (§11.5.4).
    // -----------------------------------------------------------------------------------

    /// Advances the timer to `now` (guest TSC): when it expired, delivers the LVT timer
    /// interrupt (unless masked) and reports the next deadline if it changed.
    pub fn tick(&mut self, now: u64) -> Actions {
        let mut actions = Actions::new();
        if self.mode() == ApicMode::Disabled {
            return actions;
        }
        let before = self.next_deadline();
        let initial = self.page.read(APIC_TIMER_INITIAL_COUNT);
        let fired = self.timer.advance(
            &self.config.clock,
            self.timer_mode(),
            initial,
            self.divide(),
            now,
        );
        if fired {
            actions.extend(self.deliver_lvt(LvtEntry::Timer));
        }
        self.push_deadline_change(before, &mut actions);
        actions
    }

    fn current_count(&self, now: u64) -> u32 {
        match self.timer_mode() {
            mode @ (TimerMode::OneShot | TimerMode::Periodic) => self.timer.current_count(
                &self.config.clock,
                mode,
                self.page.read(APIC_TIMER_INITIAL_COUNT),
                self.divide(),
                now,
            ),
            _ => 0,
        }
    }

    // -----------------------------------------------------------------------------------
    // Register reads and writes shared by the MMIO and MSR interfaces.
    // -----------------------------------------------------------------------------------

    /// The value a read of the register at `offset` returns (no validity check).
    fn register_value(&self, offset: u16, now: u64) -> u32 {
        match offset {
            APIC_APR => u32::from(self.apr()),
            APIC_PPR => u32::from(self.compute_ppr()),
            APIC_TIMER_CURRENT_COUNT => self.current_count(now),
            APIC_EOI | APIC_RRD | APIC_SELF_IPI => 0,
            _ => self.page.read(offset),
        }
    }

    /// Writes a register. `x2` selects x2APIC semantics: reserved bits, read-only and
    /// non-existent registers raise #GP (§11.12.1.3); in xAPIC mode writes to reserved bits
    /// and read-only registers are ignored and unimplemented registers log ESR bit 7.
    fn write_register(
        &mut self,
        offset: u16,
        value: u64,
        now: u64,
        x2: bool,
    ) -> Result<Actions, Exception> {
        let mut actions = Actions::new();
        let v = value as u32;
        if x2 && offset != APIC_ICR_LOW && value >> 32 != 0 {
            return gp();
        }
        let check = |writable: u32| -> Result<(), Exception> {
            if x2 && v & !writable != 0 {
                gp()
            } else {
                Ok(())
            }
        };
        match offset {
            APIC_ID if !x2 => self.page.write(APIC_ID, v & XAPIC_ID_MASK),
            APIC_TPR => {
                check(APIC_PRIORITY_MASK)?;
                self.page.write(APIC_TPR, v & APIC_PRIORITY_MASK);
                self.update_ppr();
            }
            APIC_EOI => {
                if x2 && value != 0 {
                    return gp();
                }
                actions = self.eoi();
            }
            APIC_LDR if !x2 => self.page.write(APIC_LDR, v & XAPIC_LDR_MASK),
            APIC_DFR if !x2 => self
                .page
                .write(APIC_DFR, (v & APIC_DFR_MODEL_MASK) | APIC_DFR_RESERVED_ONES),
            APIC_SVR => {
                let mut writable = SVR_VECTOR_MASK | SVR_APIC_ENABLED | SVR_FOCUS_DISABLED;
                if self.config.directed_eoi {
                    writable |= SVR_SUPPRESS_EOI_BROADCAST;
                }
                check(writable)?;
                self.write_svr(v & writable);
            }
            APIC_ESR => {
                if x2 && v != 0 {
                    return gp();
                }
                self.page.write(APIC_ESR, self.esr_pending);
                self.esr_pending = 0;
            }
            APIC_ICR_LOW => {
                if x2 {
                    // The delivery-status bit is reserved in x2APIC mode, but Intel
                    // processors ignore it rather than #GP (as KVM also found): clear it.
                    check(ICR_LOW_WRITABLE | ICR_DELIVERY_STATUS)?;
                    self.page.write(APIC_ICR_LOW, v & ICR_LOW_WRITABLE);
                    self.page.write(APIC_ICR_X2APIC_HIGH, (value >> 32) as u32);
                } else {
                    self.page.write(APIC_ICR_LOW, v & ICR_LOW_WRITABLE);
                }
                actions = self.send_ipi(x2);
            }
            APIC_ICR_HIGH if !x2 => self.page.write(APIC_ICR_HIGH, v & ICR_HIGH_XAPIC_DEST_MASK),
            APIC_LVT_TIMER | APIC_LVT_THERMAL | APIC_LVT_PMI | APIC_LVT_LINT0 | APIC_LVT_LINT1
            | APIC_LVT_ERROR | APIC_LVT_CMCI => {
                let before = self.next_deadline();
                self.write_lvt(offset, v, x2)?;
                self.push_deadline_change(before, &mut actions);
            }
            APIC_TIMER_INITIAL_COUNT => {
                // §11.5.4.1: ignored in TSC-deadline mode.
                if self.timer_mode() != TimerMode::TscDeadline {
                    let before = self.next_deadline();
                    self.page.write(APIC_TIMER_INITIAL_COUNT, v);
                    let divide = self.divide();
                    self.timer.start(&self.config.clock, v, divide, now);
                    self.push_deadline_change(before, &mut actions);
                }
            }
            APIC_TIMER_DIVIDE => {
                check(TIMER_DIVIDE_WRITABLE)?;
                let before = self.next_deadline();
                let current = self.current_count(now);
                self.page
                    .write(APIC_TIMER_DIVIDE, v & TIMER_DIVIDE_WRITABLE);
                if self.timer.armed {
                    // Keep the count, continue at the new rate.
                    let divide = self.divide();
                    self.timer.start(&self.config.clock, current, divide, now);
                }
                self.push_deadline_change(before, &mut actions);
            }
            APIC_SELF_IPI if x2 => {
                check(SELF_IPI_VECTOR_MASK)?;
                let vector = v as u8;
                if vector < FIRST_LEGAL_VECTOR {
                    self.log_error(ESR_SEND_ILLEGAL_VECTOR);
                }
                self.accept_fixed(vector, false);
            }
            APIC_VERSION
            | APIC_APR
            | APIC_PPR
            | APIC_RRD
            | APIC_TIMER_CURRENT_COUNT
            | APIC_ID
            | APIC_LDR => {
                if x2 {
                    return gp();
                }
            }
            o if (APIC_ISR..APIC_ESR).contains(&o) && o & 0xf == 0 => {
                if x2 {
                    return gp();
                }
            }
            _ => {
                if x2 {
                    return gp();
                }
                self.log_error(ESR_ILLEGAL_REGISTER);
            }
        }
        Ok(actions)
    }

    fn write_svr(&mut self, value: u32) {
        let was_enabled = self.software_enabled();
        self.page.write(APIC_SVR, value);
        if was_enabled && value & SVR_APIC_ENABLED == 0 {
            // §11.4.7.2: software disable sets every LVT mask bit.
            for entry in LvtEntry::ALL {
                let lvt = self.page.read(entry.offset());
                self.page.write(entry.offset(), lvt | LVT_MASKED);
            }
        }
    }

    fn write_lvt(&mut self, offset: u16, value: u32, x2: bool) -> Result<(), Exception> {
        let Some(entry) = LvtEntry::from_offset(offset) else {
            return Ok(());
        };
        let writable = match entry {
            LvtEntry::Timer if self.config.tsc_deadline => LVT_TIMER_WRITABLE,
            LvtEntry::Timer => LVT_TIMER_WRITABLE & !LVT_TIMER_TSC_DEADLINE,
            LvtEntry::Lint0 | LvtEntry::Lint1 => LVT_LINT_WRITABLE,
            LvtEntry::Error => LVT_ERROR_WRITABLE,
            _ => LVT_DM_WRITABLE,
        };
        if x2 && value & !(writable | LVT_READ_ONLY) != 0 {
            return gp();
        }
        let old = self.page.read(offset);
        let mut new = (value & writable) | (old & LVT_REMOTE_IRR);
        if !self.software_enabled() {
            // §11.4.7.2: mask bits cannot be cleared while software-disabled.
            new |= LVT_MASKED;
        }
        self.page.write(offset, new);
        let tsc_deadline = |v: u32| TimerMode::from_lvt(v) == TimerMode::TscDeadline;
        if entry == LvtEntry::Timer && tsc_deadline(old) != tsc_deadline(new) {
            // §11.5.4.1: transitions between TSC-deadline mode and the other modes disarm
            // the timer (KVM also zeroes the initial count). Switching between one-shot and
            // periodic neither starts nor stops the counter (§11.5.4).
            self.timer = TimerState::default();
            self.page.write(APIC_TIMER_INITIAL_COUNT, 0);
        }
        Ok(())
    }

    /// The ICR was written: build and send the IPI (§11.6.1). Delivery is immediate, so the
    /// delivery-status bit always reads idle. Combinations the SDM's table of valid ICR combinations (Pentium 4 and later, §11.6.1) lists as invalid are
    /// not sent; a level trigger mode is overridden to edge (that table's note 2), except for
    /// INIT level de-assert, which goes out as such and has no effect on its receivers.
    fn send_ipi(&mut self, x2: bool) -> Actions {
        let mut actions = Actions::new();
        let low = self.page.read(APIC_ICR_LOW);
        let high = if x2 {
            self.page.read(APIC_ICR_X2APIC_HIGH)
        } else {
            self.page.read(APIC_ICR_HIGH)
        };
        let vector = low as u8;
        let delivery_mode = DeliveryMode::from_bits(low >> ICR_DELIVERY_MODE_SHIFT);
        let shorthand = Shorthand::from_bits(low >> ICR_SHORTHAND_SHIFT);
        let level_assert = low & ICR_LEVEL_ASSERT != 0;
        let init_deassert =
            delivery_mode == DeliveryMode::Init && !level_assert && low & ICR_TRIGGER_LEVEL != 0;
        // §11.6.1, valid ICR combinations (Pentium 4 and later): "self" and "all including self" are valid with
        // fixed delivery only; the reserved and ExtINT encodings are never valid. Invalid
        // combinations are undefined on hardware; this model does not send them.
        let valid = match (delivery_mode, shorthand) {
            (DeliveryMode::Reserved | DeliveryMode::ExtInt, _) => false,
            (DeliveryMode::Fixed, _) => true,
            (_, Shorthand::SelfOnly | Shorthand::AllIncludingSelf) => false,
            _ => true,
        };
        if !valid {
            return actions;
        }
        if matches!(
            delivery_mode,
            DeliveryMode::Fixed | DeliveryMode::LowestPriority
        ) && vector < FIRST_LEGAL_VECTOR
        {
            self.log_error(ESR_SEND_ILLEGAL_VECTOR);
        }
        if shorthand == Shorthand::SelfOnly {
            // A self IPI never leaves the APIC.
            self.accept_fixed(vector, false);
            return actions;
        }
        let (destination, format) = if x2 {
            (high, DestinationFormat::X2Apic)
        } else {
            (high >> ICR_HIGH_XAPIC_DEST_SHIFT, DestinationFormat::XApic)
        };
        let request = InterruptRequest {
            vector,
            delivery_mode,
            destination_mode: if low & ICR_DEST_LOGICAL != 0 {
                DestinationMode::Logical
            } else {
                DestinationMode::Physical
            },
            destination,
            // Only INIT level de-assert is level-triggered; every other IPI is an edge
            // (the trigger-mode bit has no meaning on Pentium 4 and later, §11.6.1).
            trigger_mode: if init_deassert {
                TriggerMode::Level
            } else {
                TriggerMode::Edge
            },
            level: !init_deassert,
            redirection_hint: false,
        };
        actions.push(ApicAction::SendIpi(Ipi {
            request,
            shorthand,
            source_id: self.id(),
            format,
        }));
        actions
    }

    // -----------------------------------------------------------------------------------
    // xAPIC MMIO (§11.4.1).
    // -----------------------------------------------------------------------------------

    /// Whether `offset` is an implemented xAPIC register that can be read.
    pub(crate) fn xapic_readable(offset: u16) -> bool {
        matches!(
            offset,
            APIC_ID
                | APIC_VERSION
                | APIC_TPR
                | APIC_APR
                | APIC_PPR
                | APIC_EOI
                | APIC_RRD
                | APIC_LDR
                | APIC_DFR
                | APIC_SVR
                | APIC_ESR
                | APIC_LVT_CMCI
                | APIC_ICR_LOW
                | APIC_ICR_HIGH
                | APIC_LVT_TIMER
                | APIC_LVT_THERMAL
                | APIC_LVT_PMI
                | APIC_LVT_LINT0
                | APIC_LVT_LINT1
                | APIC_LVT_ERROR
                | APIC_TIMER_INITIAL_COUNT
                | APIC_TIMER_CURRENT_COUNT
                | APIC_TIMER_DIVIDE
        ) || (APIC_ISR..APIC_ESR).contains(&offset)
    }

    fn xapic_read(&mut self, slot: u16, now: u64) -> u32 {
        if Self::xapic_readable(slot) {
            self.register_value(slot, now)
        } else {
            self.log_error(ESR_ILLEGAL_REGISTER);
            0
        }
    }

    /// A guest read of `data.len()` bytes at `offset` in the xAPIC page. Returns `false` when
    /// the page is not decoded (x2APIC mode or hardware-disabled): the VMM then treats the
    /// access as unclaimed memory. Bytes 0–3 of each 16-byte slot return the register
    /// (sub-dword reads are model-specific on hardware and return the corresponding bytes
    /// here, as KVM does); bytes 4–15 read as 0.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8], now: u64) -> bool {
        if self.mode() != ApicMode::XApic {
            return false;
        }
        let mut cached: Option<(u64, u32)> = None;
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset.saturating_add(i as u64);
            if at >= APIC_PAGE_SIZE as u64 || at & 0xf >= 4 {
                *byte = 0;
                continue;
            }
            let slot = at & !0xf;
            let value = match cached {
                Some((s, v)) if s == slot => v,
                _ => {
                    let v = self.xapic_read(slot as u16, now);
                    cached = Some((slot, v));
                    v
                }
            };
            *byte = (value >> ((at & 3) * 8)) as u8;
        }
        true
    }

    /// A guest write at `offset` in the xAPIC page. Only aligned 32-bit writes at 16-byte
    /// boundaries reach a register; others are ignored (undefined on hardware, §11.4.1;
    /// ignored by KVM as well). Not decoded outside xAPIC mode.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], now: u64) -> Actions {
        if self.mode() != ApicMode::XApic || offset & 0xf != 0 || offset >= APIC_PAGE_SIZE as u64 {
            return Actions::new();
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return Actions::new();
        };
        self.write_register(
            offset as u16,
            u64::from(u32::from_le_bytes(bytes)),
            now,
            false,
        )
        .unwrap_or_default()
    }

    // -----------------------------------------------------------------------------------
    // MSRs: IA32_APIC_BASE, IA32_TSC_DEADLINE, x2APIC (§11.12.1).
    // -----------------------------------------------------------------------------------

    /// Whether `msr` is one this model implements (the VMM routes these here).
    pub const fn handles_msr(msr: u32) -> bool {
        matches!(msr, MSR_IA32_APIC_BASE | MSR_IA32_TSC_DEADLINE)
            || (msr >= MSR_X2APIC_FIRST && msr <= MSR_X2APIC_LAST)
    }

    /// RDMSR. x2APIC registers #GP unless the APIC is in x2APIC mode, and for write-only
    /// (EOI, SELF IPI) or non-existent registers (§11.12.1.2, the x2APIC register address map).
    pub fn read_msr(&mut self, msr: u32, now: u64) -> Result<u64, Exception> {
        match msr {
            MSR_IA32_APIC_BASE => Ok(self.apic_base),
            MSR_IA32_TSC_DEADLINE => {
                if !self.config.tsc_deadline {
                    return gp();
                }
                // §11.5.4.1: reads 0 outside TSC-deadline mode.
                Ok(match (self.mode(), self.timer_mode()) {
                    (ApicMode::Disabled, _) => 0,
                    (_, TimerMode::TscDeadline) => self.timer.tsc_deadline,
                    _ => 0,
                })
            }
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => {
                let offset = x2apic_offset(msr);
                if self.mode() != ApicMode::X2Apic || !x2apic_readable(offset) {
                    return gp();
                }
                if offset == APIC_ICR_LOW {
                    return Ok(u64::from(self.page.read(APIC_ICR_LOW))
                        | (u64::from(self.page.read(APIC_ICR_X2APIC_HIGH)) << 32));
                }
                Ok(u64::from(self.register_value(offset, now)))
            }
            _ => gp(),
        }
    }

    /// WRMSR. See [`Self::read_msr`]; writes to read-only registers and non-zero writes to
    /// reserved bits #GP in x2APIC mode (§11.12.1.3).
    pub fn write_msr(&mut self, msr: u32, value: u64, now: u64) -> Result<Actions, Exception> {
        match msr {
            MSR_IA32_APIC_BASE => self.write_apic_base(value),
            MSR_IA32_TSC_DEADLINE => {
                if !self.config.tsc_deadline {
                    return gp();
                }
                let mut actions = Actions::new();
                // Ignored outside TSC-deadline mode; 0 disarms.
                if self.mode() != ApicMode::Disabled && self.timer_mode() == TimerMode::TscDeadline
                {
                    let before = self.next_deadline();
                    self.timer.tsc_deadline = value;
                    self.push_deadline_change(before, &mut actions);
                }
                Ok(actions)
            }
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => {
                if self.mode() != ApicMode::X2Apic {
                    return gp();
                }
                self.write_register(x2apic_offset(msr), value, now, true)
            }
            _ => gp(),
        }
    }

    /// IA32_APIC_BASE writes (§11.4.4, §11.12.5 x2APIC state transitions): legal transitions are
    /// disabled→xAPIC, xAPIC→x2APIC, and xAPIC/x2APIC→disabled; x2APIC→xAPIC,
    /// disabled→x2APIC, EXTD without EN and reserved bits #GP.
    pub fn write_apic_base(&mut self, value: u64) -> Result<Actions, Exception> {
        let reserved = APIC_BASE_RESERVED_LOW | !mask_below(self.config.max_phys_addr_bits);
        if value & reserved != 0 {
            return gp();
        }
        let Some(new) = mode_of(value) else {
            return gp();
        };
        let old = self.mode();
        match (old, new) {
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic) => {
                return gp()
            }
            _ => {}
        }
        let mut actions = Actions::new();
        let before = self.next_deadline();
        let old_value = self.apic_base;
        self.apic_base = value;
        match (old, new) {
            (ApicMode::XApic | ApicMode::X2Apic, ApicMode::Disabled) => {
                // Disabling returns the APIC to its power-up register state.
                self.reset_registers();
            }
            (ApicMode::Disabled, ApicMode::XApic) => self.reset_registers(),
            (ApicMode::XApic, ApicMode::X2Apic) => {
                // §11.12.5.1: the ID becomes the x2APIC ID and LDR is derived from it; the
                // other registers keep their values.
                self.write_id_for_mode();
            }
            _ => {}
        }
        if old != new || (old_value ^ value) & APIC_BASE_ADDR_MASK != 0 {
            actions.push(ApicAction::ModeChanged {
                mode: new,
                base: value & APIC_BASE_ADDR_MASK & mask_below(self.config.max_phys_addr_bits),
            });
        }
        self.push_deadline_change(before, &mut actions);
        Ok(actions)
    }

    /// Consistency check of the derived state (used by tests and the fuzz target): PPR
    /// matches TPR/ISR, the x2APIC LDR matches the ID, TPR has no reserved bits, LVTs stay
    /// masked while software-disabled. (Vectors 0–15 never enter IRR through acceptance,
    /// but posted-interrupt processing copies PIR into VIRR unfiltered, as in SDM §30.6.)
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.ppr() != self.compute_ppr() {
            return Err(format!(
                "PPR {:#x} != computed {:#x}",
                self.ppr(),
                self.compute_ppr()
            ));
        }
        if self.mode() == ApicMode::X2Apic && self.ldr() != x2apic_ldr(self.id()) {
            return Err(format!("x2APIC LDR {:#x} not derived from ID", self.ldr()));
        }
        if self.page.read(APIC_TPR) > 0xff {
            return Err("TPR reserved bits set".into());
        }
        if !self.software_enabled() && LvtEntry::ALL.iter().any(|e| self.lvt(*e) & LVT_MASKED == 0)
        {
            return Err("unmasked LVT while software-disabled".into());
        }
        Ok(())
    }
}

/// Mode encoded in an IA32_APIC_BASE value; `None` for the invalid EN=0/EXTD=1.
const fn mode_of(base: u64) -> Option<ApicMode> {
    match (base & APIC_BASE_ENABLE != 0, base & APIC_BASE_EXTD != 0) {
        (false, false) => Some(ApicMode::Disabled),
        (true, false) => Some(ApicMode::XApic),
        (true, true) => Some(ApicMode::X2Apic),
        (false, true) => None,
    }
}

/// Mask of the address bits below `bits` (clamped to 12..=63).
const fn mask_below(bits: u8) -> u64 {
    let bits = if bits < 12 {
        12
    } else if bits > 63 {
        63
    } else {
        bits
    };
    (1u64 << bits) - 1
}
