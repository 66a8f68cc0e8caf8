//! An interrupt message on the (virtual) APIC bus: what an MSI, a remapped IRTE or an ICR
//! write asks the local APICs to do. Intel SDM vol. 3, §11.6.1 (ICR fields) and §11.11.2
//! (MSI data register fields) use the same encodings.

/// Delivery mode, SDM vol. 3 §11.6.1 (ICR bits 10:8) and §11.11.2 (MSI data bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    StartUp,
    ExtInt,
    /// Encoding 0b011: reserved in the ICR and in MSI data.
    Reserved,
}

impl DeliveryMode {
    /// Decodes the 3-bit field.
    pub const fn from_bits(bits: u32) -> Self {
        match bits & 0x7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            3 => Self::Reserved,
            4 => Self::Nmi,
            5 => Self::Init,
            6 => Self::StartUp,
            _ => Self::ExtInt,
        }
    }

    /// Encodes the 3-bit field.
    pub const fn bits(self) -> u32 {
        match self {
            Self::Fixed => 0,
            Self::LowestPriority => 1,
            Self::Smi => 2,
            Self::Reserved => 3,
            Self::Nmi => 4,
            Self::Init => 5,
            Self::StartUp => 6,
            Self::ExtInt => 7,
        }
    }
}

/// Destination mode: physical (an APIC ID) or logical (matched against LDR/DFR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestinationMode {
    Physical,
    Logical,
}

/// Trigger mode: edge or level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TriggerMode {
    Edge,
    Level,
}

/// One interrupt request addressed to local APICs.
///
/// `destination` holds the full 32-bit x2APIC destination; in xAPIC mode only its low 8
/// bits are meaningful (the caller stores them there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InterruptRequest {
    pub vector: u8,
    pub delivery_mode: DeliveryMode,
    pub destination_mode: DestinationMode,
    pub destination: u32,
    pub trigger_mode: TriggerMode,
    /// Level: assert (true) or de-assert. Edge-triggered requests always assert.
    pub level: bool,
    /// Redirection hint (MSI address bit 3 / IRTE RH): lowest-priority style delivery to one
    /// of the logical destinations is allowed.
    pub redirection_hint: bool,
}

impl InterruptRequest {
    /// A fixed, edge-triggered, physical-destination request: the common MSI.
    pub const fn fixed(vector: u8, destination: u32) -> Self {
        Self {
            vector,
            delivery_mode: DeliveryMode::Fixed,
            destination_mode: DestinationMode::Physical,
            destination,
            trigger_mode: TriggerMode::Edge,
            level: true,
            redirection_hint: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_round_trips_every_encoding() {
        for bits in 0..8 {
            assert_eq!(DeliveryMode::from_bits(bits).bits(), bits);
        }
        assert_eq!(DeliveryMode::from_bits(4), DeliveryMode::Nmi);
        assert_eq!(DeliveryMode::from_bits(6), DeliveryMode::StartUp);
    }
}
