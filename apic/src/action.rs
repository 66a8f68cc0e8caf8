//! What the local APIC model asks its caller (the VMM) to do: explicit values, never calls.

use crate::message::InterruptRequest;

/// Destination shorthand of an IPI, ICR bits 19:18 (SDM vol. 3 §11.6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shorthand {
    /// 00: the destination field selects the targets.
    None,
    /// 01: the sender only.
    SelfOnly,
    /// 10: all APICs including the sender.
    AllIncludingSelf,
    /// 11: all APICs except the sender.
    AllExcludingSelf,
}

impl Shorthand {
    /// Decodes ICR bits 19:18 (passed shifted down to bits 1:0).
    pub const fn from_bits(bits: u32) -> Self {
        match bits & 3 {
            0 => Self::None,
            1 => Self::SelfOnly,
            2 => Self::AllIncludingSelf,
            _ => Self::AllExcludingSelf,
        }
    }

    pub const fn bits(self) -> u32 {
        match self {
            Self::None => 0,
            Self::SelfOnly => 1,
            Self::AllIncludingSelf => 2,
            Self::AllExcludingSelf => 3,
        }
    }
}

/// How the destination field of a request is to be read (SDM §11.6.2 vs §11.12.9–10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestinationFormat {
    /// 8-bit destination (xAPIC ICR, compatibility-format MSI, IOAPIC); broadcast 0xff.
    XApic,
    /// 32-bit destination (x2APIC ICR, remapped interrupt with EIM); broadcast 0xffff_ffff.
    X2Apic,
}

/// An IPI leaving an APIC through an ICR write: the VMM resolves the targets with
/// [`crate::destination::resolve`] and calls `accept` on each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipi {
    pub request: InterruptRequest,
    pub shorthand: Shorthand,
    /// The sender's APIC ID.
    pub source_id: u32,
    pub format: DestinationFormat,
}

/// The local APIC's operating mode, from IA32_APIC_BASE EN/EXTD (SDM §11.12.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApicMode {
    /// EN = 0: the APIC is hardware-disabled (its MMIO page is not decoded).
    Disabled,
    /// EN = 1, EXTD = 0.
    XApic,
    /// EN = 1, EXTD = 1.
    X2Apic,
}

/// One thing the VMM must do after a call into the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApicAction {
    /// Send an IPI (ICR write; shorthand "self" is handled inside the model).
    SendIpi(Ipi),
    /// EOI of a level-triggered vector (TMR set) without broadcast suppression: tell every
    /// IOAPIC (and level-triggered device model) that `vector` was serviced (§11.8.5).
    EoiBroadcast { vector: u8 },
    /// The timer's next deadline changed (guest TSC ticks; `None`: disarmed). The VMM calls
    /// [`crate::LocalApic::tick`] at or after that time.
    TimerDeadline(Option<u64>),
    /// Deliver an NMI to this vCPU (`KVM_NMI`).
    Nmi,
    /// An SMI for this vCPU.
    Smi,
    /// INIT was received: reset the vCPU. For an AP the APIC is now in wait-for-SIPI.
    Init,
    /// A start-up IPI was received in wait-for-SIPI: start the vCPU at `vector << 12`
    /// (CS = `vector << 8`, IP = 0).
    Startup { vector: u8 },
    /// An ExtINT (LINT0 in virtual-wire mode, or hardware-disabled APIC): the VMM takes the
    /// vector from its 8259 PIC and injects it.
    ExtInt,
    /// IA32_APIC_BASE changed mode or base address: remap the MMIO page accordingly.
    ModeChanged { mode: ApicMode, base: u64 },
}

/// An exception the guest's access raises instead of completing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exception {
    /// #GP(0): inject it and do not advance RIP.
    GeneralProtection,
}

/// The largest number of actions one call can produce.
pub const MAX_ACTIONS: usize = 4;

/// A short list of actions, without allocation. No call of the model produces more than
/// [`MAX_ACTIONS`]; a push beyond that is dropped (and counted in `overflowed`, which stays 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actions {
    len: u8,
    overflowed: u8,
    items: [Option<ApicAction>; MAX_ACTIONS],
}

impl Default for Actions {
    fn default() -> Self {
        Self::new()
    }
}

impl Actions {
    pub const fn new() -> Self {
        Self {
            len: 0,
            overflowed: 0,
            items: [None; MAX_ACTIONS],
        }
    }

    pub fn push(&mut self, action: ApicAction) {
        match self.items.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = Some(action);
                self.len += 1;
            }
            None => self.overflowed = self.overflowed.saturating_add(1),
        }
    }

    pub fn extend(&mut self, other: Actions) {
        for action in other.iter() {
            self.push(*action);
        }
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of actions dropped for lack of room (always 0 for the model's own calls).
    pub fn overflowed(&self) -> usize {
        usize::from(self.overflowed)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ApicAction> {
        self.items.iter().take(self.len()).flatten()
    }

    pub fn contains(&self, action: &ApicAction) -> bool {
        self.iter().any(|a| a == action)
    }
}

impl<'a> IntoIterator for &'a Actions {
    type Item = &'a ApicAction;
    type IntoIter = std::iter::Flatten<std::iter::Take<std::slice::Iter<'a, Option<ApicAction>>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter().take(usize::from(self.len)).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_hold_up_to_the_bound_and_count_overflow() {
        let mut actions = Actions::new();
        for _ in 0..MAX_ACTIONS + 2 {
            actions.push(ApicAction::Nmi);
        }
        assert_eq!(actions.len(), MAX_ACTIONS);
        assert_eq!(actions.overflowed(), 2);
        assert_eq!((&actions).into_iter().count(), MAX_ACTIONS);
    }

    #[test]
    fn shorthand_round_trips() {
        for bits in 0..4 {
            assert_eq!(Shorthand::from_bits(bits).bits(), bits);
        }
    }
}
