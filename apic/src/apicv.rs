//! APIC virtualization (Intel SDM vol. 3 chapter 30, "APIC Virtualization and Virtual
//! Interrupts"): the virtual-APIC page, guest interrupt status (RVI/SVI), virtual-interrupt
//! delivery, EOI/TPR/self-IPI virtualization, virtualized x2APIC mode and posted-interrupt
//! processing — done in software on the same register page as the [`LocalApic`].
//!
//! Every guest access comes back as an [`Access`]: `Virtualized` (the CPU would have
//! completed it without a VM exit), `Exit` (which VM exit a CPU with these controls would
//! take), or `Fault`. The `*_or_emulate` methods additionally perform the VMM's emulation
//! after an exit, so one call handles the access while the result still tells the VMM
//! which way it went (to count exits).

use crate::action::{Actions, ApicMode, Exception};
use crate::lapic::{processor_priority, LocalApic};
use crate::message::InterruptRequest;
use crate::pid::PostedInterruptDescriptor;
use crate::registers::*;

/// The VM-execution controls that govern APIC virtualization (SDM §25.6.2, §30.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApicvControls {
    /// Primary control "use TPR shadow": the virtual-APIC page exists.
    pub use_tpr_shadow: bool,
    /// Secondary control "virtualize APIC accesses" (xAPIC MMIO page).
    pub virtualize_apic_accesses: bool,
    /// Secondary control "virtualize x2APIC mode" (MSRs 0x800–0x8ff).
    pub virtualize_x2apic_mode: bool,
    /// Secondary control "APIC-register virtualization".
    pub apic_register_virtualization: bool,
    /// Secondary control "virtual-interrupt delivery".
    pub virtual_interrupt_delivery: bool,
    /// Pin-based control "process posted interrupts".
    pub process_posted_interrupts: bool,
    /// Posted-interrupt notification vector.
    pub notification_vector: u8,
    /// TPR threshold, bits 3:0 (used when virtual-interrupt delivery is 0).
    pub tpr_threshold: u8,
    /// EOI-exit bitmap: bit n set = EOI of vector n causes an EOI-induced VM exit.
    pub eoi_exit_bitmap: [u64; 4],
    /// The read half of the MSR bitmap for MSRs 800H–8FFH: bit n set = RDMSR of 800H + n
    /// causes a VM exit (§25.6.9). Writes other than the virtualized TPR, EOI and SELF IPI
    /// are assumed intercepted.
    pub msr_read_intercepts: [u64; 4],
}

/// The MSR-read intercepts a VMM sets with APIC-register virtualization (as KVM does):
/// the current count (839H), whose page value is not maintained, and every MSR that is not
/// a readable x2APIC register, so that the guest gets the #GP a real x2APIC raises.
pub const fn default_msr_read_intercepts() -> [u64; 4] {
    let mut bits = [0u64; 4];
    let mut n = 0usize;
    while n < 256 {
        let offset = (n as u16) << 4;
        if !x2apic_readable(offset) || offset == APIC_TIMER_CURRENT_COUNT {
            bits[n / 64] |= 1 << (n % 64);
        }
        n += 1;
    }
    bits
}

impl ApicvControls {
    /// Every APICv feature on, as KVM configures a vCPU with APICv and posted interrupts.
    pub const fn full(notification_vector: u8) -> Self {
        Self {
            use_tpr_shadow: true,
            virtualize_apic_accesses: true,
            virtualize_x2apic_mode: true,
            apic_register_virtualization: true,
            virtual_interrupt_delivery: true,
            process_posted_interrupts: true,
            notification_vector,
            tpr_threshold: 0,
            eoi_exit_bitmap: [0; 4],
            msr_read_intercepts: default_msr_read_intercepts(),
        }
    }

    fn eoi_exit(&self, vector: u8) -> bool {
        self.eoi_exit_bitmap
            .get(usize::from(vector >> 6))
            .is_some_and(|w| w & (1 << (vector & 63)) != 0)
    }
}

/// A VM exit a processor with these controls would take (SDM §30.4–§30.5, basic exit
/// reasons in Appendix C).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmExit {
    /// Exit reason 44, APIC access (fault-like): the access did not happen.
    ApicAccess { offset: u16, write: bool },
    /// Exit reason 56, APIC write (trap-like): the value is in the virtual-APIC page at
    /// `offset`, the VMM emulates its effect.
    ApicWrite { offset: u16 },
    /// Exit reason 45, virtualized EOI (trap-like): EOI of `vector`, which is in the
    /// EOI-exit bitmap.
    VirtualizedEoi { vector: u8 },
    /// Exit reason 43, TPR below threshold (trap-like).
    TprBelowThreshold,
    /// Exit reason 28, control-register access: MOV to CR8 without a TPR shadow.
    Cr8Write,
    /// Exit reason 28: MOV from CR8 without a TPR shadow.
    Cr8Read,
    /// Exit reason 31, RDMSR not virtualized.
    MsrRead { msr: u32 },
    /// Exit reason 32, WRMSR not virtualized.
    MsrWrite { msr: u32 },
}

/// The outcome of one guest access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<T> {
    /// Completed by the (virtual) processor without a VM exit.
    Virtualized(T),
    /// Would cause this VM exit.
    Exit(VmExit),
    /// Raises an exception in the guest (no VM exit).
    Fault(Exception),
}

impl<T> Access<T> {
    pub fn is_exit(&self) -> bool {
        matches!(self, Self::Exit(_))
    }
}

/// Which way an emulated-or-virtualized access went, for exit counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handling {
    Virtualized,
    Exit(VmExit),
}

/// Registers whose reads APIC-register virtualization satisfies from the virtual-APIC page
/// in xAPIC mode (§30.4.2): the readable registers except PPR, APR, RRD, the current count
/// and CMCI.
fn mmio_read_virtualized(offset: u16) -> bool {
    LocalApic::xapic_readable(offset)
        && !matches!(
            offset,
            APIC_PPR | APIC_APR | APIC_RRD | APIC_LVT_CMCI | APIC_TIMER_CURRENT_COUNT
        )
}

/// Registers whose writes APIC-register virtualization lets through to the page, followed
/// by an APIC-write exit (§30.4.3.2).
fn mmio_write_to_page(offset: u16) -> bool {
    matches!(
        offset,
        APIC_ID
            | APIC_TPR
            | APIC_ICR_HIGH
            | APIC_LDR
            | APIC_DFR
            | APIC_SVR
            | APIC_ESR
            | APIC_LVT_TIMER
            | APIC_LVT_THERMAL
            | APIC_LVT_PMI
            | APIC_LVT_LINT0
            | APIC_LVT_LINT1
            | APIC_LVT_ERROR
            | APIC_TIMER_INITIAL_COUNT
            | APIC_TIMER_DIVIDE
    )
}

/// ICR low bits that must be 0 for a virtualized self IPI through the xAPIC ICR:
/// reserved 31:20, 17:16, 13; trigger 15; delivery status 12; delivery mode 10:8 (§30.4.3.3).
const VICR_SELF_IPI_ZERO: u32 = 0xfff3_b700;

/// A local APIC with APIC virtualization: the [`LocalApic`] (whose register page is the
/// virtual-APIC page), the controls, and guest interrupt status.
#[derive(Clone, Debug)]
pub struct VirtualApic {
    apic: LocalApic,
    pub controls: ApicvControls,
    /// Requesting virtual interrupt (guest interrupt status bits 7:0).
    rvi: u8,
    /// Servicing virtual interrupt (guest interrupt status bits 15:8).
    svi: u8,
}

impl VirtualApic {
    pub fn new(apic: LocalApic, controls: ApicvControls) -> Self {
        let mut v = Self {
            apic,
            controls,
            rvi: 0,
            svi: 0,
        };
        v.vm_entry();
        v
    }

    pub fn apic(&self) -> &LocalApic {
        &self.apic
    }

    /// The underlying APIC, for the VMM's emulation after an exit. Call
    /// [`Self::vm_entry`] before the next guest access.
    pub fn apic_mut(&mut self) -> &mut LocalApic {
        &mut self.apic
    }

    pub fn rvi(&self) -> u8 {
        self.rvi
    }

    pub fn svi(&self) -> u8 {
        self.svi
    }

    /// Guest interrupt status (VMCS field): SVI in bits 15:8, RVI in bits 7:0.
    pub fn guest_interrupt_status(&self) -> u16 {
        u16::from(self.svi) << 8 | u16::from(self.rvi)
    }

    /// VPPR (page offset 0xa0).
    pub fn vppr(&self) -> u8 {
        self.apic.page().read(APIC_PPR) as u8
    }

    /// VTPR (page offset 0x80).
    pub fn vtpr(&self) -> u8 {
        self.apic.page().read(APIC_TPR) as u8
    }

    fn vid(&self) -> bool {
        self.controls.virtual_interrupt_delivery
    }

    /// What a VMM does before VM entry with virtual-interrupt delivery (KVM sets RVI to the
    /// highest VIRR bit and SVI to the highest VISR bit), then what VM entry does with
    /// virtual-interrupt delivery:
    /// PPR virtualization and evaluation of pending virtual interrupts.
    pub fn vm_entry(&mut self) -> Option<u8> {
        let page = self.apic.page();
        self.rvi = page.highest(VectorArray::Irr).unwrap_or(0);
        self.svi = page.highest(VectorArray::Isr).unwrap_or(0);
        if self.vid() {
            self.ppr_virtualization();
            self.evaluate()
        } else {
            self.apic.update_ppr();
            None
        }
    }

    /// PPR virtualization (§30.1.3): VPPR = VTPR when VTPR\[7:4\] ≥ SVI\[7:4\], else SVI & 0xf0.
    fn ppr_virtualization(&mut self) {
        let vppr = processor_priority(self.vtpr(), self.svi);
        self.apic.page_mut().write(APIC_PPR, u32::from(vppr));
    }

    /// Evaluation of pending virtual interrupts (§30.2.1): a virtual interrupt is recognized
    /// when RVI\[7:4\] > VPPR\[7:4\]. Returns the vector the VMM delivers (as it would inject
    /// an interrupt) when the guest can take it, with [`Self::deliver`].
    pub fn evaluate(&self) -> Option<u8> {
        (self.vid() && self.rvi >> 4 > self.vppr() >> 4).then_some(self.rvi)
    }

    /// Virtual-interrupt delivery (§30.2.2): VISR\[RVI\] = 1, SVI = RVI, VPPR = RVI & 0xf0,
    /// VIRR\[RVI\] = 0, RVI = highest remaining VIRR bit (or 0). Returns the delivered vector.
    pub fn deliver(&mut self) -> Option<u8> {
        let vector = self.evaluate()?;
        let page = self.apic.page_mut();
        page.set(VectorArray::Isr, vector);
        page.clear(VectorArray::Irr, vector);
        page.write(APIC_PPR, u32::from(vector & APIC_PRIORITY_CLASS));
        self.svi = vector;
        self.rvi = self.apic.page().highest(VectorArray::Irr).unwrap_or(0);
        Some(vector)
    }

    /// An interrupt message routed to this vCPU by the VMM (not posted): the VMM sets VIRR
    /// and RVI = max(RVI, vector), then evaluation happens at the next VM entry.
    pub fn accept(&mut self, request: &InterruptRequest) -> Actions {
        let actions = self.apic.accept(request);
        if self.vid() {
            let irrv = self.apic.page().highest(VectorArray::Irr).unwrap_or(0);
            self.rvi = self.rvi.max(irrv);
        }
        actions
    }

    /// The vector to inject now: with virtual-interrupt delivery the recognized virtual
    /// interrupt ([`Self::evaluate`]), otherwise the APIC's own dispatch decision.
    pub fn pending_interrupt(&self) -> Option<u8> {
        if self.vid() {
            self.evaluate()
        } else {
            self.apic.pending_interrupt()
        }
    }

    /// Injection of [`Self::pending_interrupt`]: virtual-interrupt delivery (§30.2.2) or the
    /// APIC's interrupt acknowledge.
    pub fn acknowledge(&mut self) -> Option<u8> {
        if self.vid() {
            self.deliver()
        } else {
            self.apic.acknowledge()
        }
    }

    /// Advances the APIC timer (see [`LocalApic::tick`]); a timer interrupt raises RVI.
    pub fn tick(&mut self, now: u64) -> Actions {
        let actions = self.apic.tick(now);
        if self.vid() {
            let irrv = self.apic.page().highest(VectorArray::Irr).unwrap_or(0);
            self.rvi = self.rvi.max(irrv);
        }
        actions
    }

    /// TPR virtualization (§30.1.2) after VTPR was written.
    fn tpr_virtualization(&mut self) -> Access<()> {
        if self.vid() {
            self.ppr_virtualization();
            Access::Virtualized(())
        } else if (self.vtpr() >> 4) < (self.controls.tpr_threshold & 0xf) {
            Access::Exit(VmExit::TprBelowThreshold)
        } else {
            Access::Virtualized(())
        }
    }

    /// EOI virtualization (§30.1.4): VISR\[SVI\] = 0, SVI = highest VISR, PPR virtualization;
    /// EOI-induced exit when the vector is in the EOI-exit bitmap.
    fn eoi_virtualization(&mut self) -> Access<()> {
        let vector = self.svi;
        self.apic.page_mut().write(APIC_EOI, 0);
        self.apic.page_mut().clear(VectorArray::Isr, vector);
        self.svi = self.apic.page().highest(VectorArray::Isr).unwrap_or(0);
        self.ppr_virtualization();
        if self.controls.eoi_exit(vector) {
            Access::Exit(VmExit::VirtualizedEoi { vector })
        } else {
            Access::Virtualized(())
        }
    }

    /// Self-IPI virtualization (§30.1.5): VIRR\[vector\] = 1, RVI = max(RVI, vector).
    fn self_ipi_virtualization(&mut self, vector: u8) {
        self.apic.page_mut().set(VectorArray::Irr, vector);
        self.rvi = self.rvi.max(vector);
    }

    /// Posted-interrupt processing (§30.6) when the vCPU receives `vector`. Returns `false`
    /// (nothing done) unless posted-interrupt processing is on and `vector` is the
    /// notification vector. Otherwise: clear ON, move PIR into VIRR, RVI = max(RVI, highest
    /// PIR bit), evaluate pending virtual interrupts.
    pub fn notification(&mut self, vector: u8, pid: &PostedInterruptDescriptor) -> bool {
        if !self.controls.process_posted_interrupts || vector != self.controls.notification_vector {
            return false;
        }
        self.process_posted_interrupts(pid);
        true
    }

    /// The PIR → VIRR move of posted-interrupt processing (§30.6 steps 3–5); returns the
    /// recognized virtual interrupt after evaluation, if any. Like the processor, it copies
    /// every PIR bit, vectors 0–15 included.
    #[inline]
    pub fn process_posted_interrupts(&mut self, pid: &PostedInterruptDescriptor) -> Option<u8> {
        let pir = pid.process();
        self.apic.page_mut().or_bits(VectorArray::Irr, &pir);
        if let Some(highest) = highest_of(&pir) {
            self.rvi = self.rvi.max(highest);
        }
        self.evaluate()
    }

    /// MOV to CR8 with "use TPR shadow" (§30.3): VTPR = CR8\[3:0\] << 4 (bytes 81H–83H
    /// cleared), then TPR virtualization. Bits 63:4 set: #GP.
    pub fn cr8_write(&mut self, value: u64) -> Access<()> {
        if !self.controls.use_tpr_shadow {
            return Access::Exit(VmExit::Cr8Write);
        }
        if value >> 4 != 0 {
            return Access::Fault(Exception::GeneralProtection);
        }
        self.apic.page_mut().write(APIC_TPR, (value as u32) << 4);
        self.tpr_virtualization()
    }

    /// MOV from CR8 with "use TPR shadow" (§30.3): VTPR\[7:4\].
    pub fn cr8_read(&self) -> Access<u64> {
        if !self.controls.use_tpr_shadow {
            return Access::Exit(VmExit::Cr8Read);
        }
        Access::Virtualized(u64::from(self.vtpr() >> 4))
    }

    // -----------------------------------------------------------------------------------
    // Guest MSR accesses in virtualized x2APIC mode (§30.5).
    // -----------------------------------------------------------------------------------

    /// Whether the "virtualize x2APIC mode" control covers `msr`. As on the processor, this
    /// does not depend on the APIC's mode (§30.5: "even if the local APIC is not in x2APIC
    /// mode"); a VMM sets the control only while the guest is in x2APIC mode.
    fn x2apic_virtualized(&self, msr: u32) -> bool {
        self.controls.virtualize_x2apic_mode && (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr)
    }

    /// A guest RDMSR, as the processor would handle it (§30.5): with APIC-register
    /// virtualization every MSR 800H–8FFH reads the 8 bytes at offset `(msr & 0xff) << 4`
    /// of the virtual-APIC page (in x2APIC mode the model keeps the 64-bit ICR at 300H–307H
    /// for this reason, as KVM does); without it only the TPR (808H) is read from the page.
    /// MSRs set in `msr_read_intercepts` exit first, as the MSR bitmap makes them.
    pub fn msr_read(&mut self, msr: u32) -> Access<u64> {
        if !self.x2apic_virtualized(msr) {
            return Access::Exit(VmExit::MsrRead { msr });
        }
        let offset = x2apic_offset(msr);
        let n = (msr & 0xff) as usize;
        let intercepted = self
            .controls
            .msr_read_intercepts
            .get(n / 64)
            .is_some_and(|w| w & (1 << (n % 64)) != 0);
        if intercepted || (!self.controls.apic_register_virtualization && msr != MSR_X2APIC_TPR) {
            return Access::Exit(VmExit::MsrRead { msr });
        }
        let page = self.apic.page();
        let value = u64::from(page.read(offset)) | (u64::from(page.read(offset + 4)) << 32);
        Access::Virtualized(value)
    }

    /// A guest WRMSR, as the processor would handle it.
    pub fn msr_write(&mut self, msr: u32, value: u64) -> Access<()> {
        if !self.x2apic_virtualized(msr) {
            return Access::Exit(VmExit::MsrWrite { msr });
        }
        match msr {
            MSR_X2APIC_TPR => {
                if value >> 8 != 0 {
                    return Access::Fault(Exception::GeneralProtection);
                }
                self.apic.page_mut().write(APIC_TPR, value as u32);
                self.tpr_virtualization()
            }
            MSR_X2APIC_EOI if self.vid() => {
                if value != 0 {
                    return Access::Fault(Exception::GeneralProtection);
                }
                self.eoi_virtualization()
            }
            MSR_X2APIC_SELF_IPI if self.vid() => {
                if value >> 8 != 0 {
                    return Access::Fault(Exception::GeneralProtection);
                }
                let vector = value as u8;
                if vector < FIRST_LEGAL_VECTOR {
                    self.apic.page_mut().write(APIC_SELF_IPI, u32::from(vector));
                    return Access::Exit(VmExit::ApicWrite {
                        offset: APIC_SELF_IPI,
                    });
                }
                self.self_ipi_virtualization(vector);
                Access::Virtualized(())
            }
            _ => Access::Exit(VmExit::MsrWrite { msr }),
        }
    }

    // -----------------------------------------------------------------------------------
    // Guest accesses to the APIC-access page in xAPIC mode (§30.4).
    // -----------------------------------------------------------------------------------

    /// Whether an access to the APIC-access page exits before any virtualization: the
    /// controls decide (a VMM sets "virtualize APIC accesses" only in xAPIC mode); accesses
    /// wider than 4 bytes, beyond offset 3FFH or spanning a dword boundary exit (§30.4.2, §30.4.3.1).
    fn mmio_access_exits(&self, offset: u64, len: usize) -> bool {
        let len = len as u64;
        !self.controls.virtualize_apic_accesses
            || !self.controls.use_tpr_shadow
            || len == 0
            || len > 4
            || offset >= 0x400
            || offset / 4 != (offset + len - 1) / 4
    }

    /// A guest read of the APIC-access page.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) -> Access<()> {
        let exit = Access::Exit(VmExit::ApicAccess {
            offset: (offset & 0xfff) as u16,
            write: false,
        });
        if self.mmio_access_exits(offset, data.len()) {
            return exit;
        }
        let offset = offset as u16;
        let register = offset & !0xf;
        let virtualized = if self.controls.apic_register_virtualization {
            offset & 0xf < 4 && mmio_read_virtualized(register)
        } else {
            offset == APIC_TPR
        };
        if !virtualized {
            return exit;
        }
        let page = self.apic.page();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = page.read_byte(offset + i as u16);
        }
        Access::Virtualized(())
    }

    /// A guest write to the APIC-access page.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) -> Access<()> {
        let exit = Access::Exit(VmExit::ApicAccess {
            offset: (offset & 0xfff) as u16,
            write: true,
        });
        if self.mmio_access_exits(offset, data.len()) {
            return exit;
        }
        let offset = offset as u16;
        let register = offset & !0xf;
        if offset == APIC_TPR {
            // TPR virtualization: VTPR gets the written byte, bytes 1–3 are cleared.
            let byte = data.first().copied().unwrap_or(0);
            self.apic.page_mut().write(APIC_TPR, u32::from(byte));
            return self.tpr_virtualization();
        }
        let to_page = match register {
            APIC_EOI | APIC_ICR_LOW => self.vid() || self.controls.apic_register_virtualization,
            r => self.controls.apic_register_virtualization && mmio_write_to_page(r),
        };
        if !to_page || offset & 0xf >= 4 {
            return exit;
        }
        let page = self.apic.page_mut();
        for (i, byte) in data.iter().enumerate() {
            page.write_byte(offset + i as u16, *byte);
        }
        // APIC-write emulation (§30.4.3.3), trap-like after the write.
        match register {
            APIC_EOI if self.vid() => self.eoi_virtualization(),
            APIC_ICR_HIGH => {
                let high = self.apic.page().read(APIC_ICR_HIGH);
                self.apic
                    .page_mut()
                    .write(APIC_ICR_HIGH, high & ICR_HIGH_XAPIC_DEST_MASK);
                Access::Virtualized(())
            }
            APIC_ICR_LOW => {
                let vicr = self.apic.page().read(APIC_ICR_LOW);
                let vector = vicr as u8;
                let shorthand = (vicr & ICR_SHORTHAND_MASK) >> ICR_SHORTHAND_SHIFT;
                if self.vid()
                    && vicr & VICR_SELF_IPI_ZERO == 0
                    && shorthand == 1
                    && vector >= FIRST_LEGAL_VECTOR
                {
                    self.self_ipi_virtualization(vector);
                    Access::Virtualized(())
                } else {
                    Access::Exit(VmExit::ApicWrite {
                        offset: APIC_ICR_LOW,
                    })
                }
            }
            r => Access::Exit(VmExit::ApicWrite { offset: r }),
        }
    }

    // -----------------------------------------------------------------------------------
    // Combined: the processor's handling, then the VMM's emulation after an exit.
    // -----------------------------------------------------------------------------------

    /// Handles the effect of a VM exit the way a VMM does (KVM's handlers): emulates the
    /// access on the [`LocalApic`] and resynchronizes RVI/SVI.
    fn emulate_exit(
        &mut self,
        exit: VmExit,
        old_page_value: Option<(u16, u32)>,
        now: u64,
    ) -> Result<Actions, Exception> {
        let result = match exit {
            VmExit::VirtualizedEoi { vector } => Ok(self.apic.eoi_effects(vector)),
            VmExit::TprBelowThreshold => {
                self.apic.update_ppr();
                Ok(Actions::new())
            }
            VmExit::ApicWrite { offset } => {
                // Trap-like: the page holds the new value; emulate the write from the old
                // state, as KVM's APIC-write handler does.
                let value = self.apic.page().read(offset);
                if let Some((o, old)) = old_page_value {
                    self.apic.page_mut().write(o, old);
                }
                if self.apic.mode() == ApicMode::X2Apic {
                    self.apic
                        .write_msr(x2apic_msr(offset), u64::from(value), now)
                } else {
                    Ok(self
                        .apic
                        .mmio_write(u64::from(offset), &value.to_le_bytes(), now))
                }
            }
            VmExit::ApicAccess { .. }
            | VmExit::MsrRead { .. }
            | VmExit::MsrWrite { .. }
            | VmExit::Cr8Write
            | VmExit::Cr8Read => Ok(Actions::new()),
        };
        self.vm_entry();
        result
    }

    /// A guest WRMSR: virtualized by the processor or emulated after the exit.
    pub fn msr_write_or_emulate(
        &mut self,
        msr: u32,
        value: u64,
        now: u64,
    ) -> (Handling, Result<Actions, Exception>) {
        match self.msr_write(msr, value) {
            Access::Virtualized(()) => (Handling::Virtualized, Ok(Actions::new())),
            Access::Fault(e) => (Handling::Virtualized, Err(e)),
            Access::Exit(exit @ VmExit::MsrWrite { .. }) => {
                let result = self.apic.write_msr(msr, value, now);
                self.vm_entry();
                (Handling::Exit(exit), result)
            }
            Access::Exit(exit) => (Handling::Exit(exit), self.emulate_exit(exit, None, now)),
        }
    }

    /// A guest RDMSR: virtualized by the processor or emulated after the exit.
    pub fn msr_read_or_emulate(
        &mut self,
        msr: u32,
        now: u64,
    ) -> (Handling, Result<u64, Exception>) {
        match self.msr_read(msr) {
            Access::Virtualized(v) => (Handling::Virtualized, Ok(v)),
            Access::Fault(e) => (Handling::Virtualized, Err(e)),
            Access::Exit(exit) => (Handling::Exit(exit), self.apic.read_msr(msr, now)),
        }
    }

    /// A guest MMIO read of the APIC page: virtualized or emulated after the exit. Returns
    /// `false` in the second field when the page is not decoded (see
    /// [`LocalApic::mmio_read`]).
    pub fn mmio_read_or_emulate(
        &mut self,
        offset: u64,
        data: &mut [u8],
        now: u64,
    ) -> (Handling, bool) {
        match self.mmio_read(offset, data) {
            Access::Virtualized(()) | Access::Fault(_) => (Handling::Virtualized, true),
            Access::Exit(exit) => (Handling::Exit(exit), self.apic.mmio_read(offset, data, now)),
        }
    }

    /// A guest MMIO write of the APIC page: virtualized or emulated after the exit.
    pub fn mmio_write_or_emulate(
        &mut self,
        offset: u64,
        data: &[u8],
        now: u64,
    ) -> (Handling, Actions) {
        let register = (offset & 0xff0) as u16;
        let old = self.apic.page().read(register);
        match self.mmio_write(offset, data) {
            Access::Virtualized(()) | Access::Fault(_) => (Handling::Virtualized, Actions::new()),
            Access::Exit(exit @ VmExit::ApicAccess { .. }) => {
                let actions = self.apic.mmio_write(offset, data, now);
                self.vm_entry();
                (Handling::Exit(exit), actions)
            }
            Access::Exit(exit) => (
                Handling::Exit(exit),
                self.emulate_exit(exit, Some((register, old)), now)
                    .unwrap_or_default(),
            ),
        }
    }
}

/// The highest set bit of a 256-bit PIR image.
#[inline]
pub fn highest_of(bits: &[u64; 4]) -> Option<u8> {
    (0..4).rev().find_map(|i| {
        let w = bits[i];
        (w != 0).then(|| (i as u32 * 64 + 63 - w.leading_zeros()) as u8)
    })
}
