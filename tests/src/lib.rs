//! Shared helpers for the cross-crate integration tests in `tests/`: paths through several
//! of Postbox's models at once, with no KVM.

/// The remappable-format MSI address for interrupt handle `handle` (VT-d §5.1.5.2):
/// 0xFEE in bits 31:20, handle bits 14:0 in 19:5, the format bit 4, handle bit 15 in bit 2.
pub fn remappable_address(handle: u16) -> u64 {
    0xfee0_0000 | (u64::from(handle & 0x7fff) << 5) | (1 << 4) | (u64::from(handle >> 15) << 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_encoding() {
        assert_eq!(remappable_address(0), 0xfee0_0010);
        assert_eq!(remappable_address(5), 0xfee0_00b0);
        assert_eq!(remappable_address(0x8001), 0xfee0_0034);
        assert_eq!(
            iommu::remap::interrupt_index(&apic::MsiMessage::new(0, remappable_address(0x8001), 0)),
            0x8001
        );
    }
}
