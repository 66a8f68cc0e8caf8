//! Message-signalled interrupts as a PCI function writes them: a DWORD to an address in
//! the 0xFEEx_xxxx window. Compatibility format per Intel SDM vol. 3 §11.11.1–§11.11.2;
//! the remappable format (address bit 4 set) is decoded by VT-d (`iommu`).

use crate::message::{DeliveryMode, DestinationMode, InterruptRequest, TriggerMode};

/// Address bits 31:20 of every MSI: the interrupt window 0xFEEx_xxxx.
pub const MSI_ADDRESS_WINDOW_MASK: u64 = 0xfff0_0000;
pub const MSI_ADDRESS_WINDOW: u64 = 0xfee0_0000;
/// Compatibility format: destination ID, address bits 19:12.
pub const MSI_ADDR_DEST_ID_SHIFT: u32 = 12;
pub const MSI_ADDR_DEST_ID_MASK: u64 = 0xff << MSI_ADDR_DEST_ID_SHIFT;
/// Interrupt format bit (VT-d): 1 = remappable format.
pub const MSI_ADDR_REMAPPABLE: u64 = 1 << 4;
/// Redirection hint.
pub const MSI_ADDR_RH: u64 = 1 << 3;
/// Destination mode: 1 = logical.
pub const MSI_ADDR_DM_LOGICAL: u64 = 1 << 2;
/// Data: vector, bits 7:0.
pub const MSI_DATA_VECTOR_MASK: u32 = 0xff;
/// Data: delivery mode, bits 10:8.
pub const MSI_DATA_DELIVERY_MODE_SHIFT: u32 = 8;
/// Data: level (assert), bit 14.
pub const MSI_DATA_LEVEL_ASSERT: u32 = 1 << 14;
/// Data: trigger mode, bit 15 (1 = level).
pub const MSI_DATA_TRIGGER_LEVEL: u32 = 1 << 15;

/// One MSI/MSI-X write as it leaves a function, tagged with the function's requester ID
/// (bus << 8 | device << 3 | function), which VT-d uses for source-ID validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsiMessage {
    pub requester_id: u16,
    pub address: u64,
    pub data: u32,
}

impl MsiMessage {
    pub const fn new(requester_id: u16, address: u64, data: u32) -> Self {
        Self {
            requester_id,
            address,
            data,
        }
    }

    /// Whether the address lies in the 0xFEEx_xxxx interrupt window (upper dword zero).
    pub const fn in_interrupt_window(&self) -> bool {
        self.address & !0xffff_ffff == 0
            && self.address & MSI_ADDRESS_WINDOW_MASK == MSI_ADDRESS_WINDOW
    }

    /// Whether the address is in VT-d's remappable format (address bit 4).
    pub const fn is_remappable(&self) -> bool {
        self.address & MSI_ADDR_REMAPPABLE != 0
    }

    /// Builds a compatibility-format message for `request` (8-bit destination).
    pub const fn compatibility(requester_id: u16, request: &InterruptRequest) -> Self {
        let mut address =
            MSI_ADDRESS_WINDOW | (((request.destination & 0xff) as u64) << MSI_ADDR_DEST_ID_SHIFT);
        if request.redirection_hint {
            address |= MSI_ADDR_RH;
        }
        if matches!(request.destination_mode, DestinationMode::Logical) {
            address |= MSI_ADDR_DM_LOGICAL;
        }
        let mut data =
            request.vector as u32 | (request.delivery_mode.bits() << MSI_DATA_DELIVERY_MODE_SHIFT);
        if request.level {
            data |= MSI_DATA_LEVEL_ASSERT;
        }
        if matches!(request.trigger_mode, TriggerMode::Level) {
            data |= MSI_DATA_TRIGGER_LEVEL;
        }
        Self::new(requester_id, address, data)
    }

    /// Decodes a compatibility-format message into an APIC bus request. Returns `None` when
    /// the address is outside the interrupt window (the write is not an interrupt). The
    /// remappable-format bit is not interpreted here: with interrupt remapping off, the
    /// platform treats every message as compatibility format.
    pub const fn decode_compatibility(&self) -> Option<InterruptRequest> {
        if !self.in_interrupt_window() {
            return None;
        }
        let trigger_mode = if self.data & MSI_DATA_TRIGGER_LEVEL != 0 {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        };
        Some(InterruptRequest {
            vector: (self.data & MSI_DATA_VECTOR_MASK) as u8,
            delivery_mode: DeliveryMode::from_bits(self.data >> MSI_DATA_DELIVERY_MODE_SHIFT),
            destination_mode: if self.address & MSI_ADDR_DM_LOGICAL != 0 {
                DestinationMode::Logical
            } else {
                DestinationMode::Physical
            },
            destination: ((self.address & MSI_ADDR_DEST_ID_MASK) >> MSI_ADDR_DEST_ID_SHIFT) as u32,
            trigger_mode,
            // Edge-triggered messages always assert.
            level: matches!(trigger_mode, TriggerMode::Edge)
                || self.data & MSI_DATA_LEVEL_ASSERT != 0,
            redirection_hint: self.address & MSI_ADDR_RH != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_round_trip() {
        let req = InterruptRequest {
            vector: 0x41,
            delivery_mode: DeliveryMode::LowestPriority,
            destination_mode: DestinationMode::Logical,
            destination: 0x0c,
            trigger_mode: TriggerMode::Level,
            level: true,
            redirection_hint: true,
        };
        let msg = MsiMessage::compatibility(0x0108, &req);
        assert_eq!(msg.address, 0xfee0_c00c);
        assert_eq!(msg.data, 0xc141);
        assert_eq!(msg.decode_compatibility(), Some(req));
    }

    #[test]
    fn outside_window_is_not_an_interrupt() {
        assert_eq!(
            MsiMessage::new(0, 0xfed0_0000, 0x30).decode_compatibility(),
            None
        );
        assert_eq!(
            MsiMessage::new(0, 0x1_fee0_0000, 0x30).decode_compatibility(),
            None
        );
    }

    #[test]
    fn remappable_bit_is_reported() {
        assert!(MsiMessage::new(0, 0xfee0_0010, 0).is_remappable());
        assert!(!MsiMessage::new(0, 0xfee0_0000, 0).is_remappable());
    }
}
