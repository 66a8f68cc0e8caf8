//! The bundled demo guest (`vmm demo`): on two vCPUs with x2APIC and VT-d remapping (EIM),
//! brings up the NIC's two VFs, sends frames VF 0 → VF 1 through the NIC's switch, and
//! times each frame from the transmit doorbell to vCPU 1's handler for VF 1's RX interrupt:
//! first through a posted IRTE, then through a remapped one.
#![no_std]
#![no_main]

use core::sync::atomic::Ordering;

use postbox_guest::arch::{rdtsc, Global, IRQ_LAST_TSC};
use postbox_guest::igbvf::{self, QueueMemory, Vf, EIMS, RING};
use postbox_guest::smp::{self, count};
use postbox_guest::testing::wait_until;
use postbox_guest::vtd::{self, posted_irte, remappable_address, remapped_irte, set_irte};
use postbox_guest::{apic, entry, println, BootInfo};

entry!(elf64, main);

const FRAMES: usize = 200;
const POSTED_VECTOR: u8 = 0x60;
const REMAPPED_VECTOR: u8 = 0x50;

static Q0: Global<QueueMemory> = Global::new(QueueMemory::new());
static Q1: Global<QueueMemory> = Global::new(QueueMemory::new());
static PID1: vtd::Descriptor = vtd::Descriptor::new();

/// Sends `FRAMES` frames VF 0 → VF 1, each after the previous one was received, and
/// returns the doorbell-to-handler latencies (TSC cycles, sorted).
fn measure(
    vf0: &Vf,
    vf1: &Vf,
    dst: [u8; 6],
    vector: u8,
    slot: &mut usize,
    out: &mut [u64; FRAMES],
) -> usize {
    let mut frame = [0u8; 64];
    frame[..6].copy_from_slice(&dst);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    let mut n = 0;
    for sample in out.iter_mut() {
        let before = count(1, vector);
        let sent = rdtsc();
        vf0.send(&Q0, &frame);
        if !wait_until(|| count(1, vector) > before) {
            break;
        }
        *sample = IRQ_LAST_TSC[1].load(Ordering::SeqCst).saturating_sub(sent);
        let mut buf = [0u8; 128];
        if vf1.receive(&Q1, *slot, &mut buf).is_none() {
            break;
        }
        *slot = (*slot + 1) % RING;
        vf1.wr(EIMS, 1);
        n += 1;
    }
    out[..n].sort_unstable();
    n
}

fn report(what: &str, samples: &[u64]) {
    if samples.is_empty() {
        println!("postbox demo guest: {}: nothing arrived", what);
        return;
    }
    let p = |q: usize| samples[(samples.len() - 1) * q / 100];
    println!(
        "postbox demo guest: {:<10} {:>4} frames, doorbell->handler median {} TSC cycles, p99 {}",
        what,
        samples.len(),
        p(50),
        p(99)
    );
}

fn main(_info: &BootInfo) -> u32 {
    println!("postbox demo guest: running at CPL3 with IOPL=3");
    let _ = apic::enable_x2apic();
    let _ = apic::software_enable();
    if !smp::start_ap_like_bsp() || vtd::enable(true, true).is_err() {
        println!("postbox demo guest: vCPU 1 or VT-d did not come up");
        return 1;
    }
    let (vf0, vf1, _, mac1) = match igbvf::bring_up_pair(&Q0, &Q1) {
        Ok(pair) => pair,
        Err(e) => {
            println!("postbox demo guest: {}", e);
            return 2;
        }
    };
    // Posted IRTE 1 → vCPU 1's descriptor (NV 0xf2, NDST 1); remapped IRTE 2 → vCPU 1.
    PID1.init(0xf2, 1, true);
    let (lo, hi) = posted_irte(POSTED_VECTOR, PID1.address(), false);
    set_irte(1, lo, hi);
    set_irte(2, remapped_irte(REMAPPED_VECTOR, 1, true), 0);
    vtd::invalidate_iec();
    println!("postbox demo guest: VF 0 {:#x} -> VF 1 {:#x}, x2APIC + VT-d EIM, VF 1 RX interrupt to vCPU 1", vf0.rid, vf1.rid);

    let mut slot = 0;
    let mut samples = [0u64; FRAMES];
    vf1.set_msix(0, remappable_address(1), 0);
    let n = measure(&vf0, &vf1, mac1, POSTED_VECTOR, &mut slot, &mut samples);
    report("posted", &samples[..n]);
    let posted_ok = n == FRAMES;
    vf1.set_msix(0, remappable_address(2), 0);
    let n = measure(&vf0, &vf1, mac1, REMAPPED_VECTOR, &mut slot, &mut samples);
    report("remapped", &samples[..n]);
    u32::from(!(posted_ok && n == FRAMES))
}
