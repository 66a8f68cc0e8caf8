//! The Postbox VMM: a KVM virtual machine whose interrupt delivery path runs through
//! Postbox's device models. `vm::run` boots a kernel; `guests` names the bundled test guests.

pub mod bench;
pub mod boot;
pub mod bypass;
pub mod cpuid;
pub mod dispatch;
pub mod emulated;
pub mod error;
pub mod fabric;
pub mod guests;
pub mod hint;
pub mod hops;
pub mod hybrid;
pub mod irqchip;
pub mod layout;
pub mod loader;
pub mod model_bench;
pub mod msi_routes;
pub mod pci;
pub mod plot;
pub mod policy;
pub mod sched;
pub mod testdev;
pub mod vcpu;
pub mod vm;
