//! The vCPU end of Postbox's interrupt delivery path: the local APIC in xAPIC and x2APIC
//! mode, APIC virtualization (APICv), and the posted-interrupt descriptor that VT-d and the
//! VMM post into.
//!
//! Everything here is a pure state machine: register accesses, messages and time in;
//! what must happen next out ([`ApicAction`]s, or an [`Exception`] for the guest). Nothing
//! here calls KVM, spawns a thread or sleeps.
//!
//! # Time
//!
//! The model's only time unit is **guest TSC ticks** (`u64`): every `now` argument and
//! every reported deadline. [`ApicConfig::clock`] relates the APIC timer's bus clock to the
//! TSC, and [`timer::TimerClock`] converts to and from nanoseconds for the VMM's host timer.
//!
//! # The cycle a VMM runs per vCPU
//!
//! 1. Guest register accesses: MSR exits go to [`LocalApic::read_msr`] /
//!    [`LocalApic::write_msr`] (IA32_APIC_BASE, IA32_TSC_DEADLINE, 0x800–0x8ff; an `Err`
//!    is a #GP to inject), MMIO exits in the xAPIC page to [`LocalApic::mmio_read`] /
//!    [`LocalApic::mmio_write`].
//! 2. Interrupts routed to this APIC (MSIs, IOAPIC, IPIs from [`ApicAction::SendIpi`] after
//!    [`destination::resolve`]): [`LocalApic::accept`].
//! 3. Before entering the guest: [`LocalApic::pending_interrupt`]; when the vCPU can take
//!    it, inject it with `KVM_INTERRUPT` and call [`LocalApic::acknowledge`] (IRR → ISR).
//! 4. The guest's EOI write arrives as a register write; the resulting
//!    [`ApicAction::EoiBroadcast`] goes to the IOAPIC for level-triggered vectors.
//! 5. Time: arm a host timer for [`LocalApic::next_deadline`] (also reported as
//!    [`ApicAction::TimerDeadline`]) and call [`LocalApic::tick`] when it fires.
//!
//! ```
//! use apic::{ApicAction, ApicConfig, InterruptRequest, LocalApic};
//! use apic::registers::*;
//!
//! let mut apic = LocalApic::new(ApicConfig::new(0, true));
//! let now = 0;
//! // The guest enables x2APIC mode and the APIC (SVR bit 8, spurious vector 0xff).
//! apic.write_msr(MSR_IA32_APIC_BASE, APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_EXTD | APIC_BASE_BSP, now).unwrap();
//! apic.write_msr(x2apic_msr(APIC_SVR), 0x1ff, now).unwrap();
//!
//! // A device MSI for vector 0x41 arrives.
//! apic.accept(&InterruptRequest::fixed(0x41, 0));
//! // Before KVM_RUN: inject what is deliverable.
//! assert_eq!(apic.pending_interrupt(), Some(0x41));
//! let vector = apic.acknowledge().unwrap(); // KVM_INTERRUPT(vector)
//! assert_eq!(vector, 0x41);
//! // The guest handler writes EOI (MSR 0x80b, value 0).
//! let actions = apic.write_msr(MSR_X2APIC_EOI, 0, now).unwrap();
//! assert!(actions.is_empty(), "edge-triggered: no EOI broadcast");
//!
//! // The guest arms a one-shot timer: vector 0x30, divide by 1, 1000 counts.
//! apic.write_msr(x2apic_msr(APIC_TIMER_DIVIDE), 0xb, now).unwrap();
//! apic.write_msr(x2apic_msr(APIC_LVT_TIMER), 0x30, now).unwrap();
//! let actions = apic.write_msr(x2apic_msr(APIC_TIMER_INITIAL_COUNT), 1000, now).unwrap();
//! assert!(actions.contains(&ApicAction::TimerDeadline(Some(1000))));
//! // The VMM's host timer fires at TSC 1000.
//! apic.tick(1000);
//! assert_eq!(apic.pending_interrupt(), Some(0x30));
//! ```
//!
//! With APICv semantics, wrap the APIC in an [`apicv::VirtualApic`]: guest accesses then go
//! through its `*_or_emulate` methods (which say whether the access was virtualized or
//! would have caused a VM exit), posted interrupts through
//! [`apicv::VirtualApic::process_posted_interrupts`], and injection through
//! [`apicv::VirtualApic::evaluate`] / [`apicv::VirtualApic::deliver`].

pub mod action;
pub mod apicv;
pub mod destination;
pub mod lapic;
pub mod message;
pub mod msi;
pub mod pid;
pub mod registers;
pub mod timer;

pub use action::{Actions, ApicAction, ApicMode, DestinationFormat, Exception, Ipi, Shorthand};
pub use apicv::{Access, ApicvControls, Handling, VirtualApic, VmExit};
pub use destination::{resolve, resolve_into, ApicSnapshot, ApicTarget};
pub use lapic::{ApicConfig, LocalApic, LvtEntry, ProcessorState};
pub use message::{DeliveryMode, DestinationMode, InterruptRequest, TriggerMode};
pub use msi::MsiMessage;
pub use pid::{PostOutcome, PostedInterruptDescriptor};
pub use timer::{TimerClock, TimerMode};
