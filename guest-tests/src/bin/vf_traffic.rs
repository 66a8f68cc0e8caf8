//! A VF driver end to end: the guest finds the NIC's VFs (enabled by `--vfs 2`), brings up
//! VF 0 and VF 1 like igbvf, and sends frames VF 0 → VF 1 through the NIC's internal
//! switch. VF 1's RX interrupt goes through VT-d: first a remapped IRTE to vCPU 1, then a
//! posted IRTE to vCPU 0. Every frame must arrive intact and raise exactly one interrupt,
//! with the right vector, on the right vCPU. `x2apic` selects x2APIC and EIM.
#![no_std]
#![no_main]

use postbox_guest::arch::Global;
use postbox_guest::igbvf::{self, QueueMemory, Vf, EIMS, RING};
use postbox_guest::smp::{self, count};
use postbox_guest::testing::{has_flag, spin, wait_until, Checks};
use postbox_guest::vtd::{self, posted_irte, remappable_address, remapped_irte, set_irte};
use postbox_guest::{apic, entry, println, BootInfo};

entry!(elf64, main);

const FRAMES: usize = 16;
const REMAPPED_VECTOR: u8 = 0x58;
const POSTED_VECTOR: u8 = 0x68;
const IRTE_REMAPPED: u16 = 10;
const IRTE_POSTED: u16 = 11;

static Q0: Global<QueueMemory> = Global::new(QueueMemory::new());
static Q1: Global<QueueMemory> = Global::new(QueueMemory::new());
static PID0: vtd::Descriptor = vtd::Descriptor::new();

fn frame(dst: [u8; 6], src: [u8; 6], seq: usize, out: &mut [u8; 128]) -> usize {
    out[..6].copy_from_slice(&dst);
    out[6..12].copy_from_slice(&src);
    out[12..14].copy_from_slice(&[0x88, 0xb5]);
    for (i, b) in out[14..].iter_mut().enumerate() {
        *b = (seq * 7 + i) as u8;
    }
    out.len()
}

/// Sends `FRAMES` frames VF0 → VF1, one at a time; each must raise `vector` once on `cpu`.
fn traffic(
    c: &mut Checks,
    vf0: &Vf,
    vf1: &Vf,
    macs: ([u8; 6], [u8; 6]),
    cpu: usize,
    vector: u8,
    slot: &mut usize,
) {
    let mut intact = 0;
    let mut on_time = 0;
    let start = count(cpu, vector);
    for seq in 0..FRAMES {
        let mut f = [0u8; 128];
        let len = frame(macs.1, macs.0, seq, &mut f);
        vf0.send(&Q0, &f[..len]);
        if wait_until(|| count(cpu, vector) == start + seq as u32 + 1) {
            on_time += 1;
        }
        let mut got = [0u8; 256];
        if vf1.receive(&Q1, *slot, &mut got) == Some(len) && got[..len] == f[..len] {
            intact += 1;
        }
        *slot = (*slot + 1) % RING;
        // Auto-mask cleared the cause's EIMS bit: re-enable it, as igbvf's handler does.
        vf1.wr(EIMS, 1);
    }
    spin(50_000_000);
    c.check("every frame arrived intact", intact == FRAMES);
    c.check("every frame raised its interrupt", on_time == FRAMES);
    c.check(
        "exactly one interrupt per frame, no more",
        count(cpu, vector) == start + FRAMES as u32,
    );
}

fn main(info: &BootInfo) -> u32 {
    let x2apic = has_flag(info, "x2apic");
    let mut c = Checks::default();
    if x2apic {
        let _ = apic::enable_x2apic();
    }
    let _ = apic::software_enable();
    c.check("AP 1 online", smp::start_ap_like_bsp());
    c.check("VT-d remapping enabled", vtd::enable(x2apic, true).is_ok());

    let mut vfs = [None; 8];
    let n = igbvf::discover(&mut vfs);
    c.check("two VFs enabled", n == 2);
    // (Brought up step by step here, checking each step; other guests use bring_up_pair.)
    let (Some(vf0), Some(vf1)) = (vfs[0], vfs[1]) else {
        return c.finish();
    };
    println!(
        "VF0 rid {:#x} bar0 {:#x}; VF1 rid {:#x} bar0 {:#x}",
        vf0.rid, vf0.bar0, vf1.rid, vf1.bar0
    );
    let (Some(mac0), Some(mac1)) = (vf0.init(), vf1.init()) else {
        c.check("VF reset handshake gives MAC addresses", false);
        return c.finish();
    };
    c.check(
        "VF reset handshake gives distinct MAC addresses",
        mac0 != mac1,
    );
    vf0.rings(&Q0);
    vf1.rings(&Q1);

    // VF 1's RX vector 0 → IRTE 10: remapped, source-ID verified, to vCPU 1.
    set_irte(
        usize::from(IRTE_REMAPPED),
        remapped_irte(REMAPPED_VECTOR, 1, x2apic),
        vtd::IRTE_SVT_SID | u64::from(vf1.rid),
    );
    // IRTE 11: posted, to vCPU 0's descriptor: NV 0xf2, NDST 0.
    PID0.init(0xf2, 0, x2apic);
    let (lo, hi) = posted_irte(POSTED_VECTOR, PID0.address(), false);
    set_irte(
        usize::from(IRTE_POSTED),
        lo,
        hi | vtd::IRTE_SVT_SID | u64::from(vf1.rid),
    );
    vtd::invalidate_iec();

    let mut slot = 0;
    vf1.set_msix(0, remappable_address(IRTE_REMAPPED), 0);
    traffic(
        &mut c,
        &vf0,
        &vf1,
        (mac0, mac1),
        1,
        REMAPPED_VECTOR,
        &mut slot,
    );
    vf1.set_msix(0, remappable_address(IRTE_POSTED), 0);
    traffic(
        &mut c,
        &vf0,
        &vf1,
        (mac0, mac1),
        0,
        POSTED_VECTOR,
        &mut slot,
    );
    c.check(
        "no stray interrupts",
        count(0, REMAPPED_VECTOR) == 0 && count(1, POSTED_VECTOR) == 0,
    );
    c.check(
        "no remapping faults",
        vtd::read32(vtd::REG_FSTS) & vtd::FSTS_PPF == 0,
    );
    c.finish()
}
