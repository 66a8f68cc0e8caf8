//! Irqchip backends: who owns the interrupt controller.
//!
//! | backend    | interrupt controller                                          |
//! |------------|---------------------------------------------------------------|
//! | `emulated` | Postbox's APIC/APICv, VT-d and descriptor models, `KVM_INTERRUPT` |
//! | `kernel`   | KVM's in-kernel LAPIC (split irqchip); MSIs by `KVM_SIGNAL_MSI` |
//! | `bypass`   | a VFIO-assigned VF whose MSI-X reaches KVM through irqfd       |

use std::fmt;
use std::str::FromStr;

use kvm_bindings::{kvm_enable_cap, KVM_CAP_SPLIT_IRQCHIP};
use kvm_ioctls::VmFd;

use crate::error::{Error, Result};

/// IOAPIC pins KVM reserves for a userspace IOAPIC in split-irqchip mode.
pub const SPLIT_IRQCHIP_IOAPIC_PINS: u64 = 24;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IrqchipKind {
    #[default]
    Emulated,
    Kernel,
    Bypass,
}

impl FromStr for IrqchipKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "emulated" => Ok(Self::Emulated),
            "kernel" => Ok(Self::Kernel),
            "bypass" => Ok(Self::Bypass),
            other => Err(format!(
                "unknown irqchip {other:?} (expected emulated, kernel or bypass)"
            )),
        }
    }
}

impl fmt::Display for IrqchipKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Self::Emulated => "emulated",
            Self::Kernel => "kernel",
            Self::Bypass => "bypass",
        })
    }
}

impl IrqchipKind {
    /// Whether KVM itself starts APs on INIT/SIPI (the in-kernel LAPIC does); otherwise the
    /// VMM parks APs in wait-for-SIPI until its APIC model delivers a start-up IPI.
    pub fn kvm_starts_aps(self) -> bool {
        matches!(self, Self::Kernel | Self::Bypass)
    }

    /// VM-wide setup that must happen before vCPUs exist.
    pub fn setup_vm(self, vm: &VmFd) -> Result<()> {
        match self {
            Self::Emulated => Ok(()),
            Self::Kernel | Self::Bypass => {
                let cap = kvm_enable_cap {
                    cap: KVM_CAP_SPLIT_IRQCHIP,
                    args: [SPLIT_IRQCHIP_IOAPIC_PINS, 0, 0, 0],
                    ..Default::default()
                };
                vm.enable_cap(&cap)
                    .map_err(Error::kvm("enabling KVM_CAP_SPLIT_IRQCHIP"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in [
            IrqchipKind::Emulated,
            IrqchipKind::Kernel,
            IrqchipKind::Bypass,
        ] {
            assert_eq!(kind.to_string().parse::<IrqchipKind>(), Ok(kind));
        }
        assert!("pic".parse::<IrqchipKind>().is_err());
    }
}
