//! Mask-and-drain interrupt handling (the fifth delivery technique): the handler masks the
//! VF's MSI-X vector, the driver drains the RX ring until it is empty, then unmasks; frames
//! that arrive while the vector is masked only set its pending bit, so a burst costs one or
//! two interrupts instead of one per frame. Compared, on the same burst, with per-frame
//! interrupts (no auto-masking). Needs `--vfs 2`.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use postbox_guest::arch::{set_irq_handler, Global, TrapFrame};
use postbox_guest::igbvf::{self, QueueMemory, Vf, EIAM, RING};
use postbox_guest::smp::count;
use postbox_guest::testing::{spin, wait_until, Checks};
use postbox_guest::{apic, entry, println, BootInfo};

entry!(elf64, main);

const VECTOR: u8 = 0x58;
const BURST: usize = 6;
/// MSI-X vector control, bit 0: mask (PCI Local Bus 3.0 §6.8.2.9).
const MSIX_MASKED: u32 = 1;

static Q0: Global<QueueMemory> = Global::new(QueueMemory::new());
static Q1: Global<QueueMemory> = Global::new(QueueMemory::new());
/// Address of VF 1's MSI-X entry 0 vector control; the handler masks through it.
static VECTOR_CONTROL: AtomicU64 = AtomicU64::new(0);
static MASKED: AtomicBool = AtomicBool::new(false);

/// The interrupt handler (CPL0): mask the source, leave the work to the driver.
fn mask_source(_frame: &mut TrapFrame) {
    // SAFETY: the VF's MSI-X table is identity-mapped MMIO.
    unsafe { (VECTOR_CONTROL.load(Ordering::SeqCst) as *mut u32).write_volatile(MSIX_MASKED) };
    MASKED.store(true, Ordering::SeqCst);
}

fn burst(vf0: &Vf, dst: [u8; 6]) {
    let mut frame = [0u8; 64];
    frame[..6].copy_from_slice(&dst);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    for _ in 0..BURST {
        vf0.send(&Q0, &frame);
    }
}

/// Takes every received frame from the ring; returns how many.
fn drain(vf1: &Vf, slot: &mut usize) -> usize {
    let mut n = 0;
    let mut buf = [0u8; 128];
    while vf1.receive(&Q1, *slot, &mut buf).is_some() {
        *slot = (*slot + 1) % RING;
        n += 1;
    }
    n
}

fn main(_info: &BootInfo) -> u32 {
    let mut c = Checks::default();
    let _ = apic::enable_x2apic();
    let _ = apic::software_enable();
    let (vf0, vf1, _, mac1) = match igbvf::bring_up_pair(&Q0, &Q1) {
        Ok(pair) => pair,
        Err(e) => {
            c.check(e, false);
            return c.finish();
        }
    };
    // Per-frame interrupts: no auto-masking, compatibility-format MSI to APIC 0.
    vf1.wr(EIAM, 0);
    vf1.set_msix(0, 0xfee0_0000, u32::from(VECTOR));
    VECTOR_CONTROL.store(vf1.bar3 + 12, Ordering::SeqCst);
    let mut slot = 0;

    let before = count(0, VECTOR);
    burst(&vf0, mac1);
    let arrived = wait_until(|| count(0, VECTOR) - before >= BURST as u32);
    spin(50_000_000);
    let per_frame = count(0, VECTOR) - before;
    c.check(
        "per-frame handling: every frame received",
        drain(&vf1, &mut slot) == BURST,
    );
    c.check(
        "per-frame handling: one interrupt per frame",
        arrived && per_frame == BURST as u32,
    );

    set_irq_handler(VECTOR, mask_source);
    let before = count(0, VECTOR);
    burst(&vf0, mac1);
    let mut received = 0;
    while received < BURST {
        if !wait_until(|| MASKED.load(Ordering::SeqCst)) {
            break;
        }
        received += drain(&vf1, &mut slot);
        MASKED.store(false, Ordering::SeqCst);
        // Unmask: a message that arrived while masked is sent now.
        // SAFETY: as in the handler.
        unsafe { (VECTOR_CONTROL.load(Ordering::SeqCst) as *mut u32).write_volatile(0) };
    }
    spin(50_000_000);
    received += drain(&vf1, &mut slot);
    let drained = count(0, VECTOR) - before;
    println!(
        "MASKDRAIN frames={} per-frame-interrupts={} mask-drain-interrupts={}",
        BURST, per_frame, drained
    );
    c.check("mask-and-drain: every frame received", received == BURST);
    c.check(
        "mask-and-drain: the burst costs at most two interrupts",
        (1..=2).contains(&drained),
    );
    c.finish()
}
