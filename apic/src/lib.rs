//! The vCPU end of Postbox's interrupt delivery path: the local APIC in xAPIC and x2APIC
//! mode, APIC virtualization (APICv), and the posted-interrupt descriptor that VT-d and the
//! VMM post into.
//!
//! Everything here is a pure state machine: register accesses, messages and time in;
//! what must happen next out. Nothing here calls KVM, spawns a thread or sleeps.

pub mod message;
pub mod msi;
pub mod pid;

pub use message::{DeliveryMode, DestinationMode, InterruptRequest, TriggerMode};
pub use msi::MsiMessage;
pub use pid::{PostOutcome, PostedInterruptDescriptor};
