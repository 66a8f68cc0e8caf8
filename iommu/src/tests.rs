//! Model-level tests: each rule of the specification the crate implements, driven through
//! the register page and guest memory the way a guest driver does it.

use apic::pid::PostedInterruptDescriptor;
use apic::{DeliveryMode, DestinationMode, InterruptRequest, MsiMessage, TriggerMode};
use vm_device::bus::MmioAddress;
use vm_device::MutDeviceMmio;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::invalidation::descriptor;
use crate::regs::*;
use crate::*;

type Mem = GuestMemoryMmap<()>;

const MEM_SIZE: u64 = 0x10_0000;
const IRT: u64 = 0x1_0000;
const IQ: u64 = 0x4_0000;
const PID: u64 = 0x6_0000;
const STATUS: u64 = 0x7_0000;
const SID: u16 = 0x0108;
const FE_ADDR: u32 = 0xfee0_0000;
const FE_DATA: u32 = 0x49;
const IE_DATA: u32 = 0x4a;

fn mem() -> Mem {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
}

/// A remappable-format MSI for `handle` (SHV clear).
fn rmsi(handle: u16) -> MsiMessage {
    let h = u64::from(handle);
    MsiMessage::new(
        SID,
        0xfee0_0000 | ((h & 0x7fff) << 5) | ((h >> 15) << 2) | 0x10,
        0,
    )
}

/// The unit, brought up the way Linux's intel_setup_irq_remapping does it.
struct Rig {
    iommu: Iommu<Mem>,
    tail: u64,
    gcmd: u32,
    wait_seq: u32,
}

impl Rig {
    /// Unit in reset state over fresh memory.
    fn bare() -> Self {
        Self {
            iommu: Iommu::new(mem()),
            tail: 0,
            gcmd: 0,
            wait_seq: 0,
        }
    }

    /// QI on, table of 2^(s+1) entries at IRT latched (EIME as given), IEC flushed, IR on.
    fn up(eim: bool, s: u64) -> Self {
        let mut r = Self::bare();
        r.enable_qi();
        r.set_table(eim, s);
        r.global_iec_sync();
        r.command(G_IRE);
        r
    }

    fn enable_qi(&mut self) {
        self.iommu.write_u64(IQT, 0);
        self.iommu.write_u64(IQA, IQ); // QS = 0: one page, 256 descriptors
        self.command(G_QIE);
        assert_ne!(self.iommu.read_u32(GSTS) & G_QIE, 0);
    }

    fn set_table(&mut self, eim: bool, s: u64) {
        let irta = IRT | if eim { IRTA_EIME } else { 0 } | s;
        self.iommu.write_u64(IRTA, irta);
        self.iommu.write_u32(GCMD, self.gcmd | G_SIRTP);
        assert_ne!(self.iommu.read_u32(GSTS) & G_SIRTP, 0, "IRTPS");
    }

    /// Sets a persistent enable the way Linux does: gcmd |= bit, write gcmd.
    fn command(&mut self, bit: u32) {
        self.gcmd |= bit;
        self.iommu.write_u32(GCMD, self.gcmd);
        assert_eq!(self.iommu.read_u32(GSTS) & bit, bit);
    }

    fn clear_command(&mut self, bit: u32) {
        self.gcmd &= !bit;
        self.iommu.write_u32(GCMD, self.gcmd);
        assert_eq!(self.iommu.read_u32(GSTS) & bit, 0);
    }

    fn set_irte(&self, index: u32, e: Irte) {
        self.iommu
            .memory()
            .write_slice(&e.to_bytes(), GuestAddress(IRT + u64::from(index) * 16))
            .unwrap();
    }

    /// Queues descriptors and rings the tail.
    fn submit(&mut self, descs: &[[u64; 2]]) {
        for d in descs {
            let m = self.iommu.memory();
            m.write_obj(d[0], GuestAddress(IQ + self.tail)).unwrap();
            m.write_obj(d[1], GuestAddress(IQ + self.tail + 8)).unwrap();
            self.tail = (self.tail + 16) % 0x1000;
        }
        self.iommu.write_u64(IQT, self.tail);
    }

    /// Like Linux's qi_submit_sync: the descriptors, then a wait with a status write that
    /// must land.
    fn submit_sync(&mut self, descs: &[[u64; 2]]) {
        self.wait_seq += 1;
        let mut all = descs.to_vec();
        all.push(descriptor::wait(true, false, true, self.wait_seq, STATUS));
        self.submit(&all);
        let status: u32 = self.iommu.memory().read_obj(GuestAddress(STATUS)).unwrap();
        assert_eq!(status, self.wait_seq, "wait descriptor status write");
        assert_eq!(self.iommu.read_u64(IQH), self.iommu.read_u64(IQT));
    }

    fn global_iec_sync(&mut self) {
        self.submit_sync(&[descriptor::iec_global()]);
    }

    fn pid(&self) -> &PostedInterruptDescriptor {
        let p = self
            .iommu
            .memory()
            .get_host_address(GuestAddress(PID))
            .unwrap();
        // SAFETY: PID is 64-byte aligned inside the (page-aligned) mapping, which lives
        // as long as `self`.
        unsafe { PostedInterruptDescriptor::from_ptr(p) }
    }

    fn unmask_fault_events(&mut self) {
        self.iommu.write_u32(FEDATA, FE_DATA);
        self.iommu.write_u32(FEADDR, FE_ADDR);
        self.iommu.write_u32(FEUADDR, 0);
        self.iommu.write_u32(FECTL, 0);
    }

    fn record(&self, i: u64) -> (u64, u64) {
        (
            self.iommu.read_u64(FRCD_BASE + i * 16),
            self.iommu.read_u64(FRCD_BASE + i * 16 + 8),
        )
    }

    fn fault_of(&mut self, msi: &MsiMessage) -> IrFault {
        match self.iommu.remap(msi) {
            RemapResult::Fault(f) => f,
            other => panic!("expected a fault, got {other:?}"),
        }
    }
}

fn fixed(vector: u8, dest: u32) -> InterruptRequest {
    InterruptRequest::fixed(vector, dest)
}

// ---------------------------------------------------------------------------------------
// Capabilities and the Linux bring-up sequence.
// ---------------------------------------------------------------------------------------

#[test]
fn unit_can_move_to_another_thread() {
    fn send<T: Send>(_: &T) {}
    let r = Rig::up(true, 7);
    send(&r.iommu);
    let text = format!("{:?}", r.iommu);
    assert!(text.contains("gsts: 0x7000000"), "{text}");
}

#[test]
fn capabilities_are_what_linux_checks() {
    let r = Rig::bare();
    let cap = r.iommu.read_u64(CAP);
    let ecap = r.iommu.read_u64(ECAP);
    assert_eq!(r.iommu.read_u32(VER), 0x10);
    assert_ne!(cap & (1 << 59), 0, "CAP.PI");
    assert_ne!(cap & (1 << 62), 0, "CAP.ESIRTPS");
    assert_eq!(((cap >> 24) & 0x3ff) * 16, FRCD_BASE, "CAP.FRO");
    assert_eq!(
        ((cap >> 40) & 0xff) + 1,
        NUM_FAULT_RECORDS as u64,
        "CAP.NFR"
    );
    assert_eq!(ecap & 0b11010, 0b11010, "ECAP QI, IR, EIM");
    assert_eq!(ecap & ECAP_DT, 0);
    assert_eq!(((ecap >> 8) & 0x3ff) * 16, IVA, "ECAP.IRO");
    assert_eq!(
        r.iommu.read_u32(FECTL),
        CTL_IM,
        "fault events masked at reset"
    );
    assert_eq!(
        r.iommu.read_u32(IECTL),
        CTL_IM,
        "invalidation events masked at reset"
    );
    assert_eq!(r.iommu.read_u32(GSTS), 0);
}

#[test]
fn linux_bring_up_sequence() {
    let mut r = Rig::bare();
    // dmar_enable_qi: IQT = 0, IQA, QIE.
    r.enable_qi();
    assert_eq!(r.iommu.read_u64(IQH), 0);
    // iommu_set_irq_remapping: IRTA (x2APIC, 2^16 entries), SIRTP; with ESIRTPS the driver
    // may skip the global IEC flush, but it does one here to exercise the queue.
    r.set_table(true, 0xf);
    assert!(r.iommu.extended_interrupt_mode());
    r.global_iec_sync();
    // iommu_enable_irq_remapping: IRE.
    r.command(G_IRE);
    assert_eq!(r.iommu.read_u32(GSTS), G_QIE | G_IRE | G_SIRTP);
    // A remapped x2APIC interrupt flows.
    r.set_irte(42, Irte::remapped(&fixed(0x31, 0x1_0002), false));
    assert_eq!(
        r.iommu.remap(&rmsi(42)),
        RemapResult::Remapped {
            request: fixed(0x31, 0x1_0002),
            index: 42
        }
    );
    // xAPIC kernels also set CFI so that compatibility-format MSIs keep working; with
    // EIME set they stay blocked regardless.
    r.command(G_CFI);
    let compat = MsiMessage::compatibility(SID, &fixed(0x40, 1));
    assert_eq!(
        r.fault_of(&compat).reason,
        FaultReason::CompatibilityBlocked
    );
    // Disabling keeps the other enables.
    r.clear_command(G_IRE);
    assert_eq!(r.iommu.read_u32(GSTS) & (G_QIE | G_CFI), G_QIE | G_CFI);
    // QI off: IQH resets to 0.
    assert_ne!(r.iommu.read_u64(IQH), 0);
    r.clear_command(G_QIE);
    assert_eq!(r.iommu.read_u64(IQH), 0);
}

#[test]
fn gcmd_reads_zero_and_read_only_registers_ignore_writes() {
    let mut r = Rig::up(true, 7);
    for off in [VER, CAP, CAP + 4, ECAP, ECAP + 4, GSTS, IQH, IQERCD] {
        let before = r.iommu.read_u32(off);
        r.iommu.write_u32(off, !before);
        assert_eq!(r.iommu.read_u32(off), before, "offset {off:#x}");
    }
    assert_eq!(r.iommu.read_u32(GCMD), 0);
    // FRCD low qword and FSTS.PPF/FRI are read-only too.
    r.iommu.write_u64(FRCD_BASE, !0);
    assert_eq!(r.iommu.read_u64(FRCD_BASE), 0);
    r.iommu.write_u32(FSTS, FSTS_PPF | FSTS_FRI_MASK);
    assert_eq!(r.iommu.read_u32(FSTS), 0);
}

#[test]
fn sirtp_latches_irta_later_irta_writes_do_not_apply() {
    let mut r = Rig::up(true, 7);
    r.set_irte(5, Irte::remapped(&fixed(0x50, 9), false));
    // Software rewrites IRTA (xAPIC mode, a different table) without SIRTP.
    r.iommu.write_u64(IRTA, 0x8_0000 | 3);
    assert_eq!(r.iommu.read_u64(IRTA), 0x8_0000 | 3);
    assert!(r.iommu.extended_interrupt_mode(), "still the latched EIME");
    assert!(matches!(
        r.iommu.remap(&rmsi(5)),
        RemapResult::Remapped { .. }
    ));
    // Reserved IRTA bits 10:4 do not stick.
    r.iommu.write_u64(IRTA, IRT | 0x7f0 | 7);
    assert_eq!(r.iommu.read_u64(IRTA), IRT | 7);
}

#[test]
fn mmio_trait_partial_reads_and_unsupported_sizes() {
    let mut r = Rig::bare();
    let base = MmioAddress(DEFAULT_BASE);
    let mut b8 = [0u8; 8];
    r.iommu.mmio_read(base, CAP, &mut b8);
    assert_eq!(u64::from_le_bytes(b8), CAP_VALUE);
    let mut b1 = [0u8; 1];
    r.iommu.mmio_read(base, VER, &mut b1);
    assert_eq!(b1[0], 0x10);
    let mut b2 = [0u8; 2];
    r.iommu.mmio_read(base, CAP + 6, &mut b2);
    assert_eq!(u16::from_le_bytes(b2), (CAP_VALUE >> 48) as u16);
    // A misaligned 8-byte read reads zeros; byte writes are ignored.
    r.iommu.mmio_read(base, CAP + 4, &mut b8);
    assert_eq!(b8, [0; 8]);
    r.iommu.mmio_write(base, FEDATA, &[0xaa]);
    assert_eq!(r.iommu.read_u32(FEDATA), 0);
    r.iommu.mmio_write(base, FEDATA, &0x1234u32.to_le_bytes());
    assert_eq!(r.iommu.read_u32(FEDATA), 0x1234);
    // 64-bit registers accept two 32-bit halves.
    r.iommu.write_u32(IRTA, (IRT as u32) | 3);
    r.iommu.write_u32(IRTA + 4, 0x1);
    assert_eq!(r.iommu.read_u64(IRTA), 0x1_0000_0000 | IRT | 3);
}

#[test]
fn register_based_invalidations_complete_at_once() {
    let mut r = Rig::bare();
    // CCMD: ICC | CIRG = global (01).
    r.iommu.write_u64(CCMD, CCMD_ICC | (1 << CCMD_CIRG_SHIFT));
    let ccmd = r.iommu.read_u64(CCMD);
    assert_eq!(ccmd & CCMD_ICC, 0);
    assert_eq!((ccmd >> CCMD_CAIG_SHIFT) & 3, 1);
    r.iommu
        .write_u64(IOTLB, IOTLB_IVT | (1 << IOTLB_IIRG_SHIFT));
    let iotlb = r.iommu.read_u64(IOTLB);
    assert_eq!(iotlb & IOTLB_IVT, 0);
    assert_eq!((iotlb >> IOTLB_IAIG_SHIFT) & 3, 1);
}

// ---------------------------------------------------------------------------------------
// Compatibility format.
// ---------------------------------------------------------------------------------------

#[test]
fn ir_off_passes_everything_as_compatibility_format() {
    let mut r = Rig::bare();
    let req = fixed(0x33, 2);
    let m = MsiMessage::compatibility(SID, &req);
    assert_eq!(r.iommu.remap(&m), RemapResult::Compatibility(req));
    // With IR off even the remappable bit is not interpreted.
    let mut remappable = m;
    remappable.address |= 0x10;
    assert_eq!(r.iommu.remap(&remappable), RemapResult::Compatibility(req));
    assert_eq!(
        r.iommu.remap(&MsiMessage::new(SID, 0xfed0_0000, 0)),
        RemapResult::NotInterrupt
    );
    assert_eq!(r.iommu.counters().compatibility, 2);
}

#[test]
fn compatibility_format_blocked_unless_cfi_and_xapic() {
    let req = fixed(0x33, 2);
    let m = MsiMessage::compatibility(SID, &req);
    // xAPIC mode, CFI clear: blocked with 0x25.
    let mut r = Rig::up(false, 7);
    let f = r.fault_of(&m);
    assert_eq!(
        (f.reason, f.source_id, f.recorded),
        (FaultReason::CompatibilityBlocked, SID, true)
    );
    // CFI set: passes.
    r.command(G_CFI);
    assert_eq!(r.iommu.remap(&m), RemapResult::Compatibility(req));
    // x2APIC mode (EIME): blocked even with CFI.
    let mut r = Rig::up(true, 7);
    r.command(G_CFI);
    assert_eq!(r.fault_of(&m).reason, FaultReason::CompatibilityBlocked);
    let (_, hi) = r.record(0);
    assert_eq!((hi >> 32) & 0xff, 0x25);
}

// ---------------------------------------------------------------------------------------
// Remapped IRTEs: decode, EIM vs xAPIC, sub-handles.
// ---------------------------------------------------------------------------------------

#[test]
fn eim_destination_is_32_bits_xapic_is_bits_47_40() {
    let req = InterruptRequest {
        vector: 0x61,
        delivery_mode: DeliveryMode::LowestPriority,
        destination_mode: DestinationMode::Logical,
        destination: 0x0003_0004,
        trigger_mode: TriggerMode::Level,
        level: true,
        redirection_hint: true,
    };
    let mut r = Rig::up(true, 7);
    r.set_irte(1, Irte::remapped(&req, false));
    assert_eq!(
        r.iommu.remap(&rmsi(1)),
        RemapResult::Remapped {
            request: req,
            index: 1
        }
    );

    let mut r = Rig::up(false, 7);
    let xreq = InterruptRequest {
        destination: 0x04,
        ..req
    };
    r.set_irte(1, Irte::remapped(&xreq, true));
    assert_eq!(
        r.iommu.remap(&rmsi(1)),
        RemapResult::Remapped {
            request: xreq,
            index: 1
        }
    );
    // The x2APIC layout of the same destination is a reserved-bit fault in xAPIC mode.
    r.set_irte(2, Irte::remapped(&req, false));
    assert_eq!(
        r.fault_of(&rmsi(2)).reason,
        FaultReason::ReservedFieldInIrte
    );
}

#[test]
fn sub_handles_add_to_the_handle_when_shv_is_set() {
    let mut r = Rig::up(true, 7);
    for i in 0..8u32 {
        r.set_irte(16 + i, Irte::remapped(&fixed(0x40 + i as u8, 0), false));
    }
    // Multi-message MSI: handle 16, SHV, sub-handle = message number in data[15:0].
    for k in 0..8u32 {
        let mut m = rmsi(16);
        m.address |= 0x8;
        m.data = k;
        match r.iommu.remap(&m) {
            RemapResult::Remapped { request, index } => {
                assert_eq!(index, 16 + k);
                assert_eq!(request.vector, 0x40 + k as u8);
            }
            other => panic!("{other:?}"),
        }
    }
    // Without SHV the data is ignored.
    let mut m = rmsi(16);
    m.data = 5;
    assert!(matches!(
        r.iommu.remap(&m),
        RemapResult::Remapped { index: 16, .. }
    ));
    // Handle + sub-handle beyond the table: 0x21.
    let mut m = rmsi(250);
    m.address |= 0x8;
    m.data = 6;
    let f = r.fault_of(&m);
    assert_eq!((f.reason, f.index), (FaultReason::IndexBeyondTable, 256));
}

#[test]
fn handle_bit_15_comes_from_address_bit_2() {
    let mut r = Rig::up(true, 0xf);
    r.set_irte(0x8001, Irte::remapped(&fixed(0x77, 3), false));
    assert_eq!(
        r.iommu.remap(&rmsi(0x8001)),
        RemapResult::Remapped {
            request: fixed(0x77, 3),
            index: 0x8001
        }
    );
}

// ---------------------------------------------------------------------------------------
// Every fault reason, recorded with source ID and index.
// ---------------------------------------------------------------------------------------

fn expect_recorded(r: &mut Rig, msi: &MsiMessage, reason: FaultReason, index: u32) {
    let before = r.iommu.counters().faults_recorded;
    let f = r.fault_of(msi);
    assert_eq!(f.reason, reason);
    assert_eq!(f.index, index);
    assert!(f.recorded, "{reason:?} recorded");
    let slot = before % NUM_FAULT_RECORDS as u64;
    let (lo, hi) = r.record(slot);
    assert_eq!(lo, u64::from(index as u16) << 48, "FI: index in bits 63:48");
    assert_eq!(hi & 0xffff, u64::from(msi.requester_id), "SID");
    assert_eq!((hi >> 32) & 0xff, u64::from(reason.code()), "FR");
    assert_eq!(hi & FRCD_HI_T, 0, "T = write");
    assert_ne!(hi & FRCD_HI_F, 0, "F");
    r.iommu.write_u32(FRCD_BASE + slot * 16 + 12, 1 << 31);
}

#[test]
fn fault_reason_0x20_reserved_request_bits() {
    let mut r = Rig::up(true, 7);
    r.set_irte(3, Irte::remapped(&fixed(0x30, 0), false));
    let mut m = rmsi(3);
    m.data = 0x0001_0000;
    expect_recorded(&mut r, &m, FaultReason::ReservedFieldInRequest, 3);
}

#[test]
fn fault_reason_0x21_index_beyond_table() {
    let mut r = Rig::up(true, 3); // 16 entries
    r.set_irte(16, Irte::remapped(&fixed(0x30, 0), false));
    expect_recorded(&mut r, &rmsi(16), FaultReason::IndexBeyondTable, 16);
    r.set_irte(15, Irte::remapped(&fixed(0x30, 0), false));
    assert!(matches!(
        r.iommu.remap(&rmsi(15)),
        RemapResult::Remapped { .. }
    ));
}

#[test]
fn fault_reason_0x22_not_present() {
    let mut r = Rig::up(true, 7);
    expect_recorded(&mut r, &rmsi(9), FaultReason::EntryNotPresent, 9);
}

#[test]
fn fault_reason_0x23_table_outside_guest_memory() {
    let mut r = Rig::bare();
    r.enable_qi();
    r.iommu
        .write_u64(IRTA, (MEM_SIZE + 0x10_0000) | IRTA_EIME | 7);
    r.iommu.write_u32(GCMD, r.gcmd | G_SIRTP);
    r.command(G_IRE);
    expect_recorded(&mut r, &rmsi(1), FaultReason::TableAccessError, 1);
    // A table whose tail end crosses the end of memory.
    r.iommu
        .write_u64(IRTA, (MEM_SIZE - 0x1000) | IRTA_EIME | 0xf);
    r.iommu.write_u32(GCMD, r.gcmd | G_SIRTP);
    expect_recorded(&mut r, &rmsi(0x100), FaultReason::TableAccessError, 0x100);
    // Below the host address width but outside memory: 0x23.
    r.iommu
        .write_u64(IRTA, ((1 << HAW_BITS) - 0x1000) | IRTA_EIME | 7);
    r.iommu.write_u32(GCMD, r.gcmd | G_SIRTP);
    expect_recorded(&mut r, &rmsi(0xff), FaultReason::TableAccessError, 0xff);
}

#[test]
fn irte_above_host_address_width_is_0x21() {
    let mut r = Rig::up(true, 7);
    r.iommu
        .write_u64(IRTA, ((1 << HAW_BITS) - 0x1000) | IRTA_EIME | 0xf);
    r.iommu.write_u32(GCMD, r.gcmd | G_SIRTP);
    // Entry 0xff ends at 2^HAW − 1: inside; entry 0x100 starts at 2^HAW.
    assert_eq!(
        r.fault_of(&rmsi(0xff)).reason,
        FaultReason::TableAccessError
    );
    r.iommu.write_u32(FRCD_BASE + 12, 1 << 31);
    expect_recorded(&mut r, &rmsi(0x100), FaultReason::IndexBeyondTable, 0x100);
    // The highest possible table base does not overflow.
    r.iommu
        .write_u64(IRTA, 0xffff_ffff_ffff_f000 | IRTA_EIME | 0xf);
    r.iommu.write_u32(GCMD, r.gcmd | G_SIRTP);
    expect_recorded(&mut r, &rmsi(0xffff), FaultReason::IndexBeyondTable, 0xffff);
}

#[test]
fn fault_reason_0x24_reserved_irte_bits() {
    let mut r = Rig::up(true, 7);
    let good = Irte::remapped(&fixed(0x30, 0), false);
    r.set_irte(4, Irte::new(good.lo | (1 << 13), good.hi));
    expect_recorded(&mut r, &rmsi(4), FaultReason::ReservedFieldInIrte, 4);
    r.set_irte(5, Irte::new(good.lo, 1 << (100 - 64)));
    expect_recorded(&mut r, &rmsi(5), FaultReason::ReservedFieldInIrte, 5);
    // SVT = 11 is a reserved encoding.
    r.set_irte(6, good.with_source(3, 0, SID));
    expect_recorded(&mut r, &rmsi(6), FaultReason::ReservedFieldInIrte, 6);
    // Posted format: bits 37:24 reserved.
    let posted = Irte::posted_entry(0x30, false, PID);
    r.set_irte(7, Irte::new(posted.lo | (1 << 30), posted.hi));
    expect_recorded(&mut r, &rmsi(7), FaultReason::ReservedFieldInIrte, 7);
}

#[test]
fn fault_reason_0x26_source_id() {
    let mut r = Rig::up(true, 7);
    r.set_irte(
        8,
        Irte::remapped(&fixed(0x30, 0), false).with_source(1, 0, 0x0200),
    );
    expect_recorded(&mut r, &rmsi(8), FaultReason::SourceIdCheckFailed, 8);
    // Bus range 0x02..=0x03 does not hold bus 0x01.
    r.set_irte(
        9,
        Irte::remapped(&fixed(0x30, 0), false).with_source(2, 0, 0x0203),
    );
    expect_recorded(&mut r, &rmsi(9), FaultReason::SourceIdCheckFailed, 9);
    // SQ = 11 ignores the function: 0x010f matches requester 0x0108.
    r.set_irte(
        10,
        Irte::remapped(&fixed(0x30, 0), false).with_source(1, 3, 0x010f),
    );
    assert!(matches!(
        r.iommu.remap(&rmsi(10)),
        RemapResult::Remapped { .. }
    ));
    // Bus range 0x00..=0x01 holds bus 0x01.
    r.set_irte(
        11,
        Irte::remapped(&fixed(0x30, 0), false).with_source(2, 0, 0x0001),
    );
    assert!(matches!(
        r.iommu.remap(&rmsi(11)),
        RemapResult::Remapped { .. }
    ));
}

#[test]
fn fault_reason_0x27_descriptor_outside_guest_memory() {
    let mut r = Rig::up(true, 7);
    r.set_irte(12, Irte::posted_entry(0x30, false, MEM_SIZE + 0x4000));
    let req = match r.iommu.remap(&rmsi(12)) {
        RemapResult::Posting(p) => p,
        other => panic!("{other:?}"),
    };
    match r.iommu.post(&req) {
        PostResult::Fault(f) => {
            assert_eq!(
                (f.reason, f.index, f.source_id),
                (FaultReason::PostedDescriptorAccessError, 12, SID)
            );
            assert!(f.recorded);
        }
        other => panic!("{other:?}"),
    }
    let (_, hi) = r.record(0);
    assert_eq!((hi >> 32) & 0xff, 0x27);
}

#[test]
fn fault_reason_0x28_descriptor_reserved_bits() {
    let mut r = Rig::up(true, 7);
    r.set_irte(13, Irte::posted_entry(0x30, false, PID));
    r.iommu
        .memory()
        .write_obj(1u64, GuestAddress(PID + 48))
        .unwrap();
    expect_post_fault(&mut r, 13, FaultReason::PostedDescriptorReservedField);
    assert!(!r.pid().pir_bit(0x30), "nothing posted");
    r.iommu
        .memory()
        .write_obj(0u64, GuestAddress(PID + 48))
        .unwrap();
    // Control bits 15:2 are reserved.
    r.iommu
        .memory()
        .write_obj(1u64 << 5, GuestAddress(PID + 32))
        .unwrap();
    expect_post_fault(&mut r, 13, FaultReason::PostedDescriptorReservedField);
    // xAPIC mode: NDST bits 7:0 reserved.
    let mut r = Rig::up(false, 7);
    r.set_irte(13, Irte::posted_entry(0x30, false, PID));
    r.pid().set_notification(0xf2, 0x0301);
    expect_post_fault(&mut r, 13, FaultReason::PostedDescriptorReservedField);
    r.pid().set_notification(0xf2, 0x0300);
    assert!(matches!(
        r.iommu.deliver(&rmsi(13)),
        Delivery::PostedNotify { destination: 3, .. }
    ));
}

fn expect_post_fault(r: &mut Rig, index: u16, reason: FaultReason) {
    match r.iommu.deliver(&rmsi(index)) {
        Delivery::Fault(f) => assert_eq!(f.reason, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fpd_suppresses_only_qualified_faults() {
    let mut r = Rig::up(true, 3);
    // 0x22 with FPD: not recorded.
    r.set_irte(1, Irte::new(irte::IRTE_FPD, 0));
    assert!(!r.fault_of(&rmsi(1)).recorded);
    // 0x24 with FPD.
    r.set_irte(2, Irte::new(irte::IRTE_P | irte::IRTE_FPD | (1 << 12), 0));
    assert!(!r.fault_of(&rmsi(2)).recorded);
    // 0x26 with FPD.
    r.set_irte(
        3,
        Irte::remapped(&fixed(0x30, 0), false)
            .with_source(1, 0, 0x0300)
            .with_fpd(true),
    );
    assert!(!r.fault_of(&rmsi(3)).recorded);
    // 0x27 with FPD.
    r.set_irte(4, Irte::posted_entry(0x30, false, MEM_SIZE).with_fpd(true));
    assert!(matches!(
        r.iommu.deliver(&rmsi(4)),
        Delivery::Fault(IrFault {
            recorded: false,
            ..
        })
    ));
    assert_eq!(r.iommu.read_u32(FSTS) & FSTS_PPF, 0, "nothing recorded");
    // 0x21 is not qualified: no IRTE, recorded.
    assert!(r.fault_of(&rmsi(100)).recorded);
    assert_eq!(r.iommu.counters().faulted, 5);
    assert_eq!(r.iommu.counters().faults_recorded, 1);
}

#[test]
fn fault_event_msi_and_masking() {
    let mut r = Rig::up(true, 7);
    r.unmask_fault_events();
    r.fault_of(&rmsi(1));
    assert_eq!(
        r.iommu.take_interrupts(),
        vec![MsiMessage::new(0, u64::from(FE_ADDR), FE_DATA)]
    );
    // PPF still set: a second fault is recorded but raises no new event.
    r.fault_of(&rmsi(2));
    assert!(r.iommu.take_interrupts().is_empty());
    let fsts = r.iommu.read_u32(FSTS);
    assert_eq!(fsts & FSTS_PPF, FSTS_PPF);
    assert_eq!(
        (fsts & FSTS_FRI_MASK) >> FSTS_FRI_SHIFT,
        0,
        "FRI: first pending record"
    );
    // Service both records; the next fault is a new event again, masked this time.
    r.iommu.write_u32(FRCD_BASE + 12, 1 << 31);
    r.iommu.write_u32(FRCD_BASE + 16 + 12, 1 << 31);
    assert_eq!(r.iommu.read_u32(FSTS) & FSTS_PPF, 0);
    r.iommu.write_u32(FECTL, CTL_IM);
    r.fault_of(&rmsi(3));
    assert!(r.iommu.take_interrupts().is_empty());
    assert_eq!(r.iommu.read_u32(FECTL), CTL_IM | CTL_IP);
    assert_eq!(
        (r.iommu.read_u32(FSTS) & FSTS_FRI_MASK) >> FSTS_FRI_SHIFT,
        2
    );
    r.iommu.write_u32(FECTL, 0);
    assert_eq!(
        r.iommu.take_interrupts().len(),
        1,
        "unmasking sends the pending event"
    );
    assert_eq!(r.iommu.read_u32(FECTL), 0);
}

#[test]
fn fault_overflow_sets_pfo_and_drops() {
    let mut r = Rig::up(true, 7);
    for i in 0..NUM_FAULT_RECORDS as u16 {
        assert!(r.fault_of(&rmsi(i)).recorded);
    }
    let f = r.fault_of(&rmsi(100));
    assert!(!f.recorded);
    assert_eq!(
        r.iommu.read_u32(FSTS) & (FSTS_PFO | FSTS_PPF),
        FSTS_PFO | FSTS_PPF
    );
    // Free one record: still dropped while PFO is set.
    r.iommu.write_u32(FRCD_BASE + 12, 1 << 31);
    assert!(!r.fault_of(&rmsi(101)).recorded);
    r.iommu.write_u32(FSTS, FSTS_PFO);
    assert!(r.fault_of(&rmsi(102)).recorded, "slot 0 is free again");
    assert_eq!(r.record(0).0 >> 48, 102);
}

#[test]
fn fault_index_resets_when_both_remapping_kinds_are_off() {
    let mut r = Rig::up(true, 7);
    r.fault_of(&rmsi(1));
    r.fault_of(&rmsi(2));
    for i in 0..2 {
        r.iommu.write_u32(FRCD_BASE + i * 16 + 12, 1 << 31);
    }
    r.clear_command(G_IRE);
    r.command(G_IRE);
    r.fault_of(&rmsi(3));
    assert_eq!(r.record(0).0 >> 48, 3, "recorded in slot 0 again");
}

// ---------------------------------------------------------------------------------------
// Posted IRTEs: every SN / URG / ON combination.
// ---------------------------------------------------------------------------------------

#[test]
fn every_sn_urg_on_combination() {
    for sn in [false, true] {
        for urg in [false, true] {
            for on in [false, true] {
                let mut r = Rig::up(true, 7);
                r.set_irte(
                    20,
                    Irte::posted_entry(0x55, urg, PID).with_source(1, 0, SID),
                );
                let pid = r.pid();
                pid.set_notification(0xf2, 0x0001_0003);
                pid.set_sn(sn);
                if on {
                    pid.post(0x20, true);
                }
                let d = r.iommu.deliver(&rmsi(20));
                let pid = r.pid();
                assert!(pid.pir_bit(0x55), "PIR always gets the vector");
                let expected = match (on, sn && !urg) {
                    (_, true) => Delivery::PostedSuppressed { index: 20 },
                    (true, false) => Delivery::PostedOutstanding { index: 20 },
                    (false, false) => Delivery::PostedNotify {
                        nv: 0xf2,
                        ndst: 0x0001_0003,
                        destination: 0x0001_0003,
                        index: 20,
                    },
                };
                assert_eq!(d, expected, "SN={sn} URG={urg} ON={on}");
                assert_eq!(
                    pid.on(),
                    on || !sn || urg,
                    "ON after: SN={sn} URG={urg} ON={on}"
                );
                assert_eq!(pid.sn(), sn, "SN unchanged");
            }
        }
    }
}

#[test]
fn posting_is_two_steps_with_the_request_in_between() {
    let mut r = Rig::up(false, 7);
    r.set_irte(
        21,
        Irte::posted_entry(0x66, false, PID).with_source(2, 0, 0x0101),
    );
    r.pid().set_notification(0xf2, 0x0500);
    let p = match r.iommu.remap(&rmsi(21)) {
        RemapResult::Posting(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        p,
        PostingRequest {
            pda: PID,
            vector: 0x66,
            urgent: false,
            index: 21,
            source_id: SID,
            fpd: false
        }
    );
    assert!(!r.pid().pir_bit(0x66), "remap alone does not post");
    // A policy may retarget the request to another descriptor.
    let other = PID + 0x40;
    let q = PostingRequest { pda: other, ..p };
    assert_eq!(
        r.iommu.post(&q),
        PostResult::Notify {
            nv: 0,
            ndst: 0,
            destination: 0
        }
    );
    let res = r.iommu.post(&p);
    assert_eq!(
        res,
        PostResult::Notify {
            nv: 0xf2,
            ndst: 0x0500,
            destination: 5
        }
    );
    assert_eq!(
        res.notification(),
        Some(fixed(0xf2, 5)),
        "NV, fixed, physical, to NDST"
    );
    let c = r.iommu.counters();
    assert_eq!((c.posted, c.notified), (2, 2));
}

#[test]
fn misaligned_or_straddling_descriptor_is_0x27() {
    let mut r = Rig::up(true, 7);
    for pda in [PID + 8, MEM_SIZE - 32, !63u64, MEM_SIZE] {
        let p = PostingRequest {
            pda,
            vector: 1,
            urgent: false,
            index: 0,
            source_id: SID,
            fpd: false,
        };
        assert!(
            matches!(
                r.iommu.post(&p),
                PostResult::Fault(IrFault {
                    reason: FaultReason::PostedDescriptorAccessError,
                    ..
                })
            ),
            "pda {pda:#x}"
        );
    }
}

/// A descriptor address in a hole between two guest regions, or straddling a region's
/// end, must fault without touching host memory: the bytes around the hole and at the end
/// of each region stay as they were.
#[test]
fn post_outside_guest_memory_never_touches_host_memory() {
    let m: Mem = GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x1_0000),
        (GuestAddress(0x2_0000), 0x1_0000),
    ])
    .unwrap();
    // Fill both regions with a pattern.
    let pattern: Vec<u8> = (0..0x1_0000u32).map(|i| (i * 7 + 3) as u8).collect();
    m.write_slice(&pattern, GuestAddress(0)).unwrap();
    m.write_slice(&pattern, GuestAddress(0x2_0000)).unwrap();
    // One well-formed descriptor at the very end of the first region.
    m.write_slice(&[0u8; 64], GuestAddress(0xffc0)).unwrap();
    let mut iommu = Iommu::new(m);
    for pda in [
        0x1_0000,
        0x1_8000,
        0x1_ffc0,
        0x3_0000,
        0x4000_0000,
        0xffe0,
        0xffc0,
    ] {
        let p = PostingRequest {
            pda,
            vector: 0xff,
            urgent: true,
            index: 1,
            source_id: 1,
            fpd: false,
        };
        match iommu.post(&p) {
            PostResult::Fault(f) => assert_eq!(f.reason, FaultReason::PostedDescriptorAccessError),
            other if pda == 0xffc0 => assert!(matches!(other, PostResult::Notify { .. })),
            other => panic!("pda {pda:#x}: {other:?}"),
        }
    }
    // Every byte outside the one legitimate descriptor (0xffc0) is untouched.
    let mut a = vec![0u8; 0x1_0000];
    let mut b = vec![0u8; 0x1_0000];
    iommu.memory().read_slice(&mut a, GuestAddress(0)).unwrap();
    iommu
        .memory()
        .read_slice(&mut b, GuestAddress(0x2_0000))
        .unwrap();
    assert_eq!(&a[..0xffc0], &pattern[..0xffc0]);
    assert_eq!(b, pattern);
    assert_eq!(
        iommu.counters().posted,
        1,
        "only the descriptor inside memory"
    );
}

// ---------------------------------------------------------------------------------------
// Interrupt entry cache: staleness and invalidation.
// ---------------------------------------------------------------------------------------

#[test]
fn changed_irte_is_not_seen_until_invalidated_global() {
    let mut r = Rig::up(true, 7);
    r.set_irte(30, Irte::remapped(&fixed(0x30, 1), false));
    assert!(
        matches!(r.iommu.remap(&rmsi(30)), RemapResult::Remapped { request, .. } if request.vector == 0x30)
    );
    r.set_irte(30, Irte::remapped(&fixed(0x31, 2), false));
    assert!(
        matches!(r.iommu.remap(&rmsi(30)), RemapResult::Remapped { request, .. } if request.vector == 0x30),
        "stale until invalidated, as on hardware"
    );
    // Even a cleared entry keeps working from the cache.
    r.set_irte(30, Irte::default());
    assert!(matches!(
        r.iommu.remap(&rmsi(30)),
        RemapResult::Remapped { .. }
    ));
    r.set_irte(30, Irte::remapped(&fixed(0x31, 2), false));
    r.global_iec_sync();
    assert_eq!(
        r.iommu.remap(&rmsi(30)),
        RemapResult::Remapped {
            request: fixed(0x31, 2),
            index: 30
        }
    );
    assert_eq!(r.iommu.counters().irte_fetches, 2);
}

#[test]
fn index_selective_invalidation_with_mask() {
    let mut r = Rig::up(true, 7);
    for i in 0..16 {
        r.set_irte(i, Irte::remapped(&fixed(0x40, i), false));
        r.iommu.remap(&rmsi(i as u16));
    }
    for i in 0..16 {
        r.set_irte(i, Irte::remapped(&fixed(0x80, i), false));
    }
    // IIDX 9, IM 2: entries 8..=11.
    r.submit_sync(&[descriptor::iec_index(9, 2)]);
    for i in 0..16u32 {
        let v = match r.iommu.remap(&rmsi(i as u16)) {
            RemapResult::Remapped { request, .. } => request.vector,
            other => panic!("{other:?}"),
        };
        let fresh = (8..12).contains(&i);
        assert_eq!(v, if fresh { 0x80 } else { 0x40 }, "index {i}");
    }
    // IM 0: exactly one entry.
    r.submit_sync(&[descriptor::iec_index(3, 0)]);
    assert!(
        matches!(r.iommu.remap(&rmsi(3)), RemapResult::Remapped { request, .. } if request.vector == 0x80)
    );
    assert!(
        matches!(r.iommu.remap(&rmsi(2)), RemapResult::Remapped { request, .. } if request.vector == 0x40)
    );
}

#[test]
fn posted_entry_cached_too_and_sirtp_flushes() {
    let mut r = Rig::up(true, 7);
    r.set_irte(40, Irte::posted_entry(0x41, false, PID));
    assert!(matches!(r.iommu.remap(&rmsi(40)), RemapResult::Posting(p) if p.vector == 0x41));
    r.set_irte(40, Irte::posted_entry(0x42, false, PID));
    assert!(matches!(r.iommu.remap(&rmsi(40)), RemapResult::Posting(p) if p.vector == 0x41));
    // SIRTP latches the (same) table again: with CAP.ESIRTPS that flushes the cache.
    r.iommu.write_u32(GCMD, r.gcmd | G_SIRTP);
    assert_eq!(r.iommu.cached_entries(), 0);
    assert!(matches!(r.iommu.remap(&rmsi(40)), RemapResult::Posting(p) if p.vector == 0x42));
}

#[test]
fn faulting_entries_are_not_cached() {
    let mut r = Rig::up(true, 7);
    assert_eq!(r.fault_of(&rmsi(50)).reason, FaultReason::EntryNotPresent);
    r.set_irte(50, Irte::remapped(&fixed(0x30, 0), false));
    assert!(matches!(
        r.iommu.remap(&rmsi(50)),
        RemapResult::Remapped { .. }
    ));
}

// ---------------------------------------------------------------------------------------
// Queued invalidation.
// ---------------------------------------------------------------------------------------

#[test]
fn invalidation_wait_interrupt_and_iwc() {
    let mut r = Rig::up(true, 7);
    r.iommu.write_u32(IEDATA, IE_DATA);
    r.iommu.write_u32(IEADDR, 0xfee0_1000);
    // Masked: IWC and IP set, no message.
    r.submit(&[descriptor::wait(false, true, false, 0, 0)]);
    assert_eq!(r.iommu.read_u32(ICS), ICS_IWC);
    assert_eq!(r.iommu.read_u32(IECTL), CTL_IM | CTL_IP);
    assert!(r.iommu.take_interrupts().is_empty());
    // Unmask: the pending event goes out.
    r.iommu.write_u32(IECTL, 0);
    assert_eq!(
        r.iommu.take_interrupts(),
        vec![MsiMessage::new(0, 0xfee0_1000, IE_DATA)]
    );
    // IWC still set: another wait with IF is not a new event.
    r.submit(&[descriptor::wait(false, true, false, 0, 0)]);
    assert!(r.iommu.take_interrupts().is_empty());
    // Clear IWC: the next one is.
    r.iommu.write_u32(ICS, ICS_IWC);
    assert_eq!(r.iommu.read_u32(ICS), 0);
    r.submit(&[descriptor::wait(true, true, true, 0xabcd, STATUS + 8)]);
    assert_eq!(r.iommu.take_interrupts().len(), 1);
    let status: u32 = r.iommu.memory().read_obj(GuestAddress(STATUS + 8)).unwrap();
    assert_eq!(status, 0xabcd);
    assert_eq!(
        r.iommu.counters().invalidation_waits,
        4,
        "3 here + 1 in bring-up"
    );
}

#[test]
fn status_write_outside_memory_is_dropped_and_queue_goes_on() {
    let mut r = Rig::up(true, 7);
    r.submit(&[
        descriptor::wait(true, false, false, 1, MEM_SIZE + 64),
        descriptor::iec_global(),
    ]);
    assert_eq!(r.iommu.read_u32(FSTS) & FSTS_IQE, 0);
    assert_eq!(r.iommu.read_u64(IQH), r.tail);
}

#[test]
fn invalid_descriptor_sets_iqe_and_stops_the_queue() {
    let mut r = Rig::up(true, 7);
    r.unmask_fault_events();
    let head = r.tail;
    // A device-TLB descriptor (type 3; ECAP.DT = 0), then a wait that must not run yet.
    r.submit(&[[0x3, 0], descriptor::wait(true, false, false, 77, STATUS)]);
    assert_eq!(r.iommu.read_u32(FSTS) & FSTS_IQE, FSTS_IQE);
    assert_eq!(
        r.iommu.read_u64(IQH),
        head,
        "IQH points at the bad descriptor"
    );
    assert_eq!(r.iommu.read_u64(IQERCD) & 0xf, IQEI_INVALID_TYPE);
    assert_eq!(
        r.iommu.take_interrupts(),
        vec![MsiMessage::new(0, u64::from(FE_ADDR), FE_DATA)]
    );
    let status: u32 = r.iommu.memory().read_obj(GuestAddress(STATUS)).unwrap();
    assert_ne!(status, 77, "stopped");
    // More tail writes do nothing while IQE is set.
    r.iommu.write_u64(IQT, r.tail);
    assert_eq!(r.iommu.read_u64(IQH), head);
    // Linux's recovery: overwrite the bad descriptor with a harmless one, clear IQE.
    r.iommu
        .memory()
        .write_obj(descriptor::iec_global()[0], GuestAddress(IQ + head))
        .unwrap();
    r.iommu.write_u32(FSTS, FSTS_IQE);
    assert_eq!(r.iommu.read_u32(FSTS) & FSTS_IQE, 0);
    assert_eq!(r.iommu.read_u64(IQH), r.tail, "resumed");
    let status: u32 = r.iommu.memory().read_obj(GuestAddress(STATUS)).unwrap();
    assert_eq!(status, 77);
}

#[test]
fn reserved_descriptor_fields_are_iqe() {
    for (lo, hi) in [
        (descriptor::iec_global()[0] | (1 << 5), 0),
        (descriptor::iec_global()[0] | (1 << 50), 0),
        (descriptor::iec_global()[0], 1),
        (
            descriptor::wait(true, false, false, 0, STATUS)[0] | (1 << 7),
            STATUS,
        ),
        (
            descriptor::wait(true, false, false, 0, STATUS)[0],
            STATUS | 1,
        ),
        (0x1, 0),                 // context cache with G = 0
        (0x2 | (1 << 4), 1 << 8), // IOTLB, reserved upper bit
    ] {
        let mut r = Rig::up(true, 7);
        r.submit(&[[lo, hi]]);
        assert_eq!(
            r.iommu.read_u32(FSTS) & FSTS_IQE,
            FSTS_IQE,
            "{lo:#x} {hi:#x}"
        );
        assert_eq!(r.iommu.read_u64(IQERCD) & 0xf, IQEI_RESERVED_FIELD);
    }
    // Type bits 11:9 set: an invalid type.
    let mut r = Rig::up(true, 7);
    r.submit(&[[descriptor::iec_global()[0] | (1 << 9), 0]]);
    assert_eq!(r.iommu.read_u64(IQERCD) & 0xf, IQEI_INVALID_TYPE);
}

#[test]
fn context_and_iotlb_descriptors_are_accepted_as_no_ops() {
    let mut r = Rig::up(true, 7);
    r.submit_sync(&[
        [0x1 | (1 << 4), 0],
        [0x2 | (1 << 4), 0],
        [0x2 | (3 << 4) | (5 << 16), 0x1000],
    ]);
    assert_eq!(r.iommu.read_u32(FSTS), 0);
}

#[test]
fn tail_beyond_the_queue_is_iqe() {
    let mut r = Rig::up(true, 7);
    // QS = 0: 256 descriptors; offset 0x1000 is past the end.
    r.iommu.write_u64(IQT, 0x1000);
    assert_eq!(r.iommu.read_u32(FSTS) & FSTS_IQE, FSTS_IQE);
    assert_eq!(r.iommu.read_u64(IQERCD) & 0xf, IQEI_INVALID_TAIL);
}

#[test]
fn queue_outside_guest_memory_is_iqe_fetch_error() {
    let mut r = Rig::bare();
    r.iommu.write_u64(IQA, MEM_SIZE);
    r.command(G_QIE);
    r.iommu.write_u64(IQT, 0x10);
    assert_eq!(r.iommu.read_u32(FSTS) & FSTS_IQE, FSTS_IQE);
    assert_eq!(r.iommu.read_u64(IQERCD) & 0xf, IQEI_FETCH_ERROR);
    assert_eq!(r.iommu.read_u64(IQH), 0);
}

#[test]
fn queue_wraps_around() {
    let mut r = Rig::up(true, 7);
    // Fill past the end of the 256-entry ring several times.
    for _ in 0..300 {
        r.submit(&[descriptor::iec_global()]);
    }
    assert_eq!(r.iommu.read_u64(IQH), r.tail);
    assert_eq!(r.iommu.read_u32(FSTS), 0);
}

#[test]
fn queue_waits_for_qie() {
    let mut r = Rig::bare();
    r.iommu.write_u64(IQA, IQ);
    r.iommu
        .memory()
        .write_obj(
            descriptor::wait(true, false, false, 5, STATUS)[0],
            GuestAddress(IQ),
        )
        .unwrap();
    r.iommu
        .memory()
        .write_obj(STATUS, GuestAddress(IQ + 8))
        .unwrap();
    r.iommu.write_u64(IQT, 0x10);
    assert_eq!(r.iommu.read_u64(IQH), 0, "QI disabled: nothing fetched");
    r.command(G_QIE);
    assert_eq!(
        r.iommu.read_u64(IQH),
        0x10,
        "enabling QI runs the pending descriptors"
    );
    let status: u32 = r.iommu.memory().read_obj(GuestAddress(STATUS)).unwrap();
    assert_eq!(status, 5);
}

// ---------------------------------------------------------------------------------------
// Robustness: random register writes, tables, queues and requests.
// ---------------------------------------------------------------------------------------

mod robustness {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Write { offset: u64, value: u64, wide: bool },
        Mem { addr: u64, value: u64 },
        Msi { rid: u16, addr_low: u32, data: u32 },
        Post { pda: u64, vector: u8, urgent: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        let offsets = prop_oneof![
            Just(GCMD),
            Just(IRTA),
            Just(IRTA + 4),
            Just(IQA),
            Just(IQT),
            Just(FSTS),
            Just(FECTL),
            Just(ICS),
            Just(IECTL),
            Just(CCMD + 4),
            Just(IOTLB + 4),
            Just(FRCD_BASE + 12),
            (0u64..0x1000).prop_map(|o| o & !3),
        ];
        prop_oneof![
            (offsets, any::<u64>(), any::<bool>()).prop_map(|(offset, value, wide)| Op::Write {
                offset,
                value,
                wide
            }),
            // Guest memory writes concentrated on the table and queue, sometimes anywhere.
            (
                prop_oneof![
                    IRT..IRT + 0x1000,
                    IQ..IQ + 0x1000,
                    PID..PID + 64,
                    0..MEM_SIZE
                ],
                any::<u64>()
            )
                .prop_map(|(addr, value)| Op::Mem {
                    addr: addr & !7,
                    value
                }),
            (any::<u16>(), any::<u32>(), any::<u32>()).prop_map(|(rid, addr_low, data)| Op::Msi {
                rid,
                addr_low,
                data
            }),
            (any::<u64>(), any::<u8>(), any::<bool>()).prop_map(|(pda, vector, urgent)| Op::Post {
                pda,
                vector,
                urgent
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn random_guest_never_panics_and_outcomes_are_spec_outcomes(ops in proptest::collection::vec(op(), 1..200)) {
            let mut r = Rig::up(true, 7);
            for op in ops {
                match op {
                    Op::Write { offset, value, wide } => {
                        if wide && offset % 8 == 0 {
                            r.iommu.write_u64(offset, value);
                        } else {
                            r.iommu.write_u32(offset, value as u32);
                        }
                    }
                    Op::Mem { addr, value } => {
                        let _ = r.iommu.memory().write_obj(value, GuestAddress(addr));
                    }
                    Op::Msi { rid, addr_low, data } => {
                        // Mostly inside the interrupt window.
                        let address = u64::from(0xfee0_0000 | (addr_low & 0xf_ffff));
                        let m = MsiMessage::new(rid, address, data);
                        match r.iommu.deliver(&m) {
                            Delivery::Fault(f) => {
                                prop_assert!((0x20..=0x28).contains(&f.reason.code()));
                                prop_assert_eq!(f.source_id, rid);
                            }
                            Delivery::Remapped { index, .. }
                            | Delivery::PostedNotify { index, .. }
                            | Delivery::PostedSuppressed { index }
                            | Delivery::PostedOutstanding { index } => {
                                prop_assert!(r.iommu.remapping_enabled());
                                prop_assert!(m.is_remappable());
                                prop_assert!(index < 0x1_0000);
                            }
                            Delivery::Compatibility(_) => {
                                prop_assert!(!r.iommu.remapping_enabled() || !m.is_remappable());
                            }
                            Delivery::NotInterrupt => prop_assert!(false, "inside the window"),
                        }
                    }
                    Op::Post { pda, vector, urgent } => {
                        let p = PostingRequest { pda, vector, urgent, index: 0, source_id: 0, fpd: false };
                        if let PostResult::Fault(f) = r.iommu.post(&p) {
                            prop_assert!(matches!(
                                f.reason,
                                FaultReason::PostedDescriptorAccessError | FaultReason::PostedDescriptorReservedField
                            ));
                        }
                    }
                }
                // Invariants of the register file.
                let fsts = r.iommu.read_u32(FSTS);
                prop_assert_eq!(fsts & !(FSTS_PFO | FSTS_PPF | FSTS_IQE | FSTS_FRI_MASK), 0);
                prop_assert!(((fsts & FSTS_FRI_MASK) >> FSTS_FRI_SHIFT) < NUM_FAULT_RECORDS as u32);
                let iqh = r.iommu.read_u64(IQH);
                prop_assert_eq!(iqh & !IQ_OFFSET_MASK, 0);
                prop_assert_eq!(r.iommu.read_u32(GSTS) & (G_SFL | G_EAFL | G_WBF), 0);
                prop_assert_eq!(r.iommu.read_u64(CAP), CAP_VALUE);
                for m in r.iommu.take_interrupts() {
                    prop_assert_eq!(m.requester_id, 0);
                }
            }
        }
    }
}
