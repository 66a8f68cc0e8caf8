//! The device end of Postbox's interrupt delivery path: PCI(e), MSI-X, SR-IOV and the
//! 82576-compatible NIC, plus the legacy platform devices (serial, exit port).
//!
//! Every model here is a pure state machine: register accesses and time go in, MSI
//! messages (through an [`InterruptSink`]) and DMA (through a [`DmaSpace`]) come out. No
//! KVM, no threads, no sleeping: the VMM owns threads and time and calls
//! [`pci::PciBus::poll`] when the deadline reported by [`pci::PciBus::next_deadline`]
//! passes.

pub mod dma;
pub mod interrupt;
pub mod legacy;
pub mod nic;
pub mod pci;
pub mod sim;
pub mod time;

pub use dma::{DmaError, DmaSpace, DmaTranslator, GuestDma, IdentityTranslator};
pub use interrupt::{InterruptSink, RecordingSink};
pub use time::{Clock, ManualClock, MonotonicClock};
