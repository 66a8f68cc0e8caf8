//! Destination resolution over a set of local APICs (SDM vol. 3 §11.6.2 for xAPIC,
//! §11.12.9–§11.12.10 for x2APIC), as a pure function: APIC states in, targets out.
//!
//! - Physical mode: the destination is an APIC ID; 0xff (xAPIC format) or 0xffff_ffff
//!   (x2APIC format) is a broadcast.
//! - Logical mode, xAPIC format: flat model (DFR 1111b) matches `LDR[31:24] & dest != 0`;
//!   cluster model (DFR 0000b) matches cluster `dest[7:4] == LDR[31:28]` and
//!   `dest[3:0] & LDR[27:24] != 0`; 0xff matches every APIC.
//! - Logical mode, x2APIC format (cluster only): `dest[31:16] == LDR[31:16]` and
//!   `dest[15:0] & LDR[15:0] != 0`; 0xffff_ffff matches every APIC.
//! - Shorthands select the sender, everybody, or everybody but the sender.
//! - Lowest-priority delivery (delivery mode 001b, or the MSI redirection hint) picks one
//!   target: among software-enabled candidates the one with the lowest PPR, ties broken by
//!   position in the slice (the SDM leaves the choice to the platform on Pentium 4 and later;
//!   focus-processor checking is not modelled).
//!
//! Mixed modes: an xAPIC-format destination reaches x2APIC-mode APICs physically by their
//! ID's low 8 bits (and by broadcast); logical xAPIC-format destinations never match an
//! x2APIC-mode APIC, nor x2APIC-format ones an xAPIC-mode APIC, except broadcasts.
//! Hardware-disabled APICs are never targets.

use crate::action::{ApicMode, DestinationFormat, Shorthand};
use crate::lapic::LocalApic;
use crate::message::{DeliveryMode, DestinationMode, InterruptRequest};
use crate::registers::{APIC_DFR_MODEL_MASK, X2APIC_BROADCAST, XAPIC_BROADCAST};

/// What destination resolution needs to know of one APIC.
pub trait ApicTarget {
    /// The APIC ID in the current mode (xAPIC: 8 bits).
    fn apic_id(&self) -> u32;
    fn apic_mode(&self) -> ApicMode;
    fn logical_destination(&self) -> u32;
    fn destination_format(&self) -> u32;
    fn processor_priority(&self) -> u8;
    fn apic_software_enabled(&self) -> bool;
}

impl ApicTarget for LocalApic {
    fn apic_id(&self) -> u32 {
        self.id()
    }
    fn apic_mode(&self) -> ApicMode {
        self.mode()
    }
    fn logical_destination(&self) -> u32 {
        self.ldr()
    }
    fn destination_format(&self) -> u32 {
        self.dfr()
    }
    fn processor_priority(&self) -> u8 {
        self.compute_ppr()
    }
    fn apic_software_enabled(&self) -> bool {
        self.software_enabled()
    }
}

/// A snapshot of the fields [`ApicTarget`] needs, for a VMM that keeps them in a shared
/// table (and for tests and benchmarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ApicSnapshot {
    pub id: u32,
    pub mode: ApicMode,
    pub ldr: u32,
    pub dfr: u32,
    pub ppr: u8,
    pub software_enabled: bool,
}

impl ApicSnapshot {
    pub fn of(apic: &LocalApic) -> Self {
        Self {
            id: apic.apic_id(),
            mode: apic.apic_mode(),
            ldr: apic.logical_destination(),
            dfr: apic.destination_format(),
            ppr: apic.processor_priority(),
            software_enabled: apic.apic_software_enabled(),
        }
    }
}

impl ApicTarget for ApicSnapshot {
    fn apic_id(&self) -> u32 {
        self.id
    }
    fn apic_mode(&self) -> ApicMode {
        self.mode
    }
    fn logical_destination(&self) -> u32 {
        self.ldr
    }
    fn destination_format(&self) -> u32 {
        self.dfr
    }
    fn processor_priority(&self) -> u8 {
        self.ppr
    }
    fn apic_software_enabled(&self) -> bool {
        self.software_enabled
    }
}

/// A destination decoded once, then tested against each APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Matcher {
    /// Every present APIC.
    Broadcast,
    /// The APIC with this ID.
    Physical(u32),
    /// xAPIC-format logical destination (8 bits), flat or cluster per the target's DFR.
    XApicLogical(u32),
    /// x2APIC cluster destination.
    X2ApicLogical { cluster: u32, members: u32 },
}

impl Matcher {
    fn new(mode: DestinationMode, destination: u32, format: DestinationFormat) -> Self {
        match (format, mode) {
            (DestinationFormat::XApic, _) if destination & 0xff == XAPIC_BROADCAST => {
                Self::Broadcast
            }
            (DestinationFormat::X2Apic, _) if destination == X2APIC_BROADCAST => Self::Broadcast,
            (DestinationFormat::XApic, DestinationMode::Physical) => {
                Self::Physical(destination & 0xff)
            }
            (DestinationFormat::X2Apic, DestinationMode::Physical) => Self::Physical(destination),
            (DestinationFormat::XApic, DestinationMode::Logical) => {
                Self::XApicLogical(destination & 0xff)
            }
            (DestinationFormat::X2Apic, DestinationMode::Logical) => Self::X2ApicLogical {
                cluster: destination >> 16,
                members: destination & 0xffff,
            },
        }
    }

    #[inline]
    fn matches<T: ApicTarget + ?Sized>(self, target: &T) -> bool {
        let mode = target.apic_mode();
        if mode == ApicMode::Disabled {
            return false;
        }
        match self {
            Self::Broadcast => true,
            Self::Physical(id) => target.apic_id() == id,
            Self::XApicLogical(dest) => {
                if mode == ApicMode::X2Apic {
                    return false;
                }
                let logical_id = target.logical_destination() >> 24;
                if target.destination_format() & APIC_DFR_MODEL_MASK == APIC_DFR_MODEL_MASK {
                    logical_id & dest != 0
                } else {
                    logical_id >> 4 == dest >> 4 && logical_id & dest & 0xf != 0
                }
            }
            Self::X2ApicLogical { cluster, members } => {
                let ldr = target.logical_destination();
                mode == ApicMode::X2Apic && ldr >> 16 == cluster && ldr & members != 0
            }
        }
    }
}

/// Whether `target` is addressed by `destination` in `mode` (no shorthand).
pub fn matches<T: ApicTarget + ?Sized>(
    target: &T,
    mode: DestinationMode,
    destination: u32,
    format: DestinationFormat,
) -> bool {
    Matcher::new(mode, destination, format).matches(target)
}

/// Whether lowest-priority arbitration applies to `request`.
pub fn is_lowest_priority(request: &InterruptRequest) -> bool {
    request.delivery_mode == DeliveryMode::LowestPriority || request.redirection_hint
}

/// Resolves the targets of `request` among `apics` into `out` (cleared first), as indices
/// into `apics`. `source` is the sender's index (for shorthands; `None` for device
/// interrupts). Allocation-free when `out` has capacity.
pub fn resolve_into<T: ApicTarget>(
    apics: &[T],
    request: &InterruptRequest,
    shorthand: Shorthand,
    source: Option<usize>,
    format: DestinationFormat,
    out: &mut Vec<usize>,
) {
    out.clear();
    let present = |a: &T| a.apic_mode() != ApicMode::Disabled;
    if shorthand == Shorthand::SelfOnly {
        if let Some(s) = source.filter(|&s| apics.get(s).is_some_and(present)) {
            out.push(s);
        }
        return;
    }
    let skip = if shorthand == Shorthand::AllExcludingSelf {
        source
    } else {
        None
    };
    let matcher = Matcher::new(request.destination_mode, request.destination, format);
    let is_target = |i: usize, a: &T| match shorthand {
        Shorthand::None => matcher.matches(a),
        _ => Some(i) != skip && present(a),
    };
    if is_lowest_priority(request) {
        // One pass: the first candidate with the lowest (disabled, PPR) key.
        let mut best: Option<(bool, u8, usize)> = None;
        for (i, a) in apics.iter().enumerate() {
            if is_target(i, a) {
                let key = (!a.apic_software_enabled(), a.processor_priority(), i);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        out.extend(best.map(|(_, _, i)| i));
        return;
    }
    out.extend(
        apics
            .iter()
            .enumerate()
            .filter(|(i, a)| is_target(*i, a))
            .map(|(i, _)| i),
    );
}

/// [`resolve_into`] returning a fresh vector.
pub fn resolve<T: ApicTarget>(
    apics: &[T],
    request: &InterruptRequest,
    shorthand: Shorthand,
    source: Option<usize>,
    format: DestinationFormat,
) -> Vec<usize> {
    let mut out = Vec::new();
    resolve_into(apics, request, shorthand, source, format, &mut out);
    out
}
