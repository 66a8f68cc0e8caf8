//! Random register writes, random interrupt remapping table and invalidation queue
//! contents in guest memory, and random interrupt requests and posts: the model must
//! never panic, and every outcome must be one the VT-d specification allows.

#![no_main]

use apic::MsiMessage;
use iommu::regs::*;
use iommu::{Delivery, FaultReason, Iommu, PostResult, PostingRequest};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM_SIZE: u64 = 0x4_0000;

/// A little-endian byte reader that yields zeros once the input runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
}

fuzz_target!(|data: &[u8]| {
    let mem: GuestMemoryMmap<()> =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
    let mut input = Input(data);
    // Seed the first pages (where tables and queues usually point) with input bytes.
    let seed_len = usize::from(input.u16()) % 0x2000;
    let seed: Vec<u8> = (0..seed_len).map(|_| input.u8()).collect();
    mem.write_slice(&seed, GuestAddress(0)).unwrap();
    let mut iommu = Iommu::new(mem);
    // A plausible starting point half of the time: table at 0, QI and IR on.
    if input.u8() & 1 != 0 {
        iommu.write_u64(IQA, 0x1000);
        iommu.write_u64(IRTA, u64::from(input.u8() & 0xf) | (u64::from(input.u8() & 1) << 11));
        iommu.write_u32(GCMD, G_SIRTP);
        iommu.write_u32(GCMD, G_QIE | G_IRE | (u32::from(input.u8() & 1) * G_CFI));
    }
    while !input.0.is_empty() {
        match input.u8() % 5 {
            0 => {
                let offset = u64::from(input.u16() & 0xffc);
                let value = input.u64();
                if offset % 8 == 0 && input.u8() & 1 != 0 {
                    iommu.write_u64(offset, value);
                } else {
                    iommu.write_u32(offset, value as u32);
                }
            }
            1 => {
                let addr = u64::from(input.u32()) % (MEM_SIZE + 0x100);
                let _ = iommu.memory().write_obj(input.u64(), GuestAddress(addr));
            }
            2 => {
                let rid = input.u16();
                let address = u64::from(input.u32());
                let m = MsiMessage::new(rid, address, input.u32());
                match iommu.deliver(&m) {
                    Delivery::Fault(f) => {
                        assert!((0x20..=0x28).contains(&f.reason.code()));
                        assert_eq!(f.source_id, rid);
                        if f.reason == FaultReason::CompatibilityBlocked {
                            assert!(!m.is_remappable());
                        }
                    }
                    Delivery::NotInterrupt => assert!(!m.in_interrupt_window()),
                    Delivery::Compatibility(_) => {
                        assert!(!iommu.remapping_enabled() || !m.is_remappable())
                    }
                    Delivery::Remapped { index, .. }
                    | Delivery::PostedNotify { index, .. }
                    | Delivery::PostedSuppressed { index }
                    | Delivery::PostedOutstanding { index } => {
                        assert!(iommu.remapping_enabled() && m.is_remappable());
                        assert!(index < 0x1_0000);
                    }
                }
            }
            3 => {
                let p = PostingRequest {
                    pda: input.u64() % (MEM_SIZE + 0x1000),
                    vector: input.u8(),
                    urgent: input.u8() & 1 != 0,
                    index: u32::from(input.u16()),
                    source_id: input.u16(),
                    fpd: input.u8() & 1 != 0,
                };
                if let PostResult::Fault(f) = iommu.post(&p) {
                    assert!(matches!(
                        f.reason,
                        FaultReason::PostedDescriptorAccessError
                            | FaultReason::PostedDescriptorReservedField
                    ));
                }
            }
            _ => {
                let mut b = [0u8; 8];
                let offset = u64::from(input.u16() & 0xfff);
                let len = [1usize, 2, 4, 8][usize::from(input.u8() & 3)];
                iommu.read(offset, &mut b[..len]);
            }
        }
        let fsts = iommu.read_u32(FSTS);
        assert_eq!(fsts & !(FSTS_PFO | FSTS_PPF | FSTS_IQE | FSTS_FRI_MASK), 0);
        assert!(((fsts & FSTS_FRI_MASK) >> FSTS_FRI_SHIFT) < NUM_FAULT_RECORDS as u32);
        assert_eq!(iommu.read_u64(IQH) & !IQ_OFFSET_MASK, 0);
        assert_eq!(iommu.read_u64(CAP), CAP_VALUE);
        let _ = iommu.take_interrupts();
    }
});
