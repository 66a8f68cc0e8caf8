//! The bundled demo guest (`vmm demo`): on two vCPUs, enables x2APIC and VT-d interrupt
//! remapping, points a posted IRTE and a remapped IRTE at vCPU 1, raises MSIs through the
//! VMM's MSI test device from vCPU 0, and times each from the send to vCPU 1's handler.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use postbox_guest::arch::{rdtsc, Global, IRQ_LAST_TSC};
use postbox_guest::smp::{self, count};
use postbox_guest::testdev::send_msi;
use postbox_guest::testing::{wait_until, TIMEOUT_TSC};
use postbox_guest::vtd::{self, posted_irte, remappable_address, remapped_irte, set_irte};
use postbox_guest::{apic, entry, println, BootInfo};

entry!(elf64, main);

const RID: u16 = 0x0100;
const ROUNDS: usize = 200;
const POSTED_VECTOR: u8 = 0x60;
const REMAPPED_VECTOR: u8 = 0x50;

#[repr(C, align(64))]
struct Pid([u64; 8]);
static PID1: Global<Pid> = Global::new(Pid([0; 8]));

/// Sends `ROUNDS` MSIs for IRTE `index`, each after the previous one arrived on vCPU 1, and
/// returns the send-to-handler latencies in TSC cycles (sorted).
fn measure(index: u16, vector: u8, out: &mut [u64; ROUNDS]) -> usize {
    let mut n = 0;
    for slot in out.iter_mut() {
        let before = count(1, vector);
        let sent = rdtsc();
        send_msi(remappable_address(index), 0, RID, 1);
        if !wait_until(|| count(1, vector) > before) {
            break;
        }
        *slot = IRQ_LAST_TSC[1].load(Ordering::SeqCst).saturating_sub(sent);
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
        "postbox demo guest: {:<28} {:>4} interrupts, send->handler median {} cycles, p99 {} cycles",
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
    if smp::start_aps(1, |_| {
        let _ = apic::enable_x2apic();
        let _ = apic::software_enable();
    }, TIMEOUT_TSC) != 1
    {
        println!("postbox demo guest: vCPU 1 did not start");
        return 1;
    }
    if let Err(e) = vtd::enable(true, true) {
        println!("postbox demo guest: VT-d: {}", e);
        return 2;
    }
    let pid = PID1.get() as u64;
    // NV 0xf2 (the VM's posted-interrupt notification vector), NDST = APIC 1.
    // SAFETY: the descriptor is ours until the IRTE points the IOMMU at it.
    unsafe { (PID1.get() as *mut AtomicU64).add(4).as_ref().unwrap().store((0xf2 << 16) | (1 << 32), Ordering::SeqCst) };
    let (lo, hi) = posted_irte(POSTED_VECTOR, pid, false);
    set_irte(1, lo, hi);
    set_irte(2, remapped_irte(REMAPPED_VECTOR, 1, true), 0);
    vtd::invalidate_iec();
    println!("postbox demo guest: x2APIC on both vCPUs, VT-d remapping in EIM mode, IRTE 1 posted and IRTE 2 remapped to vCPU 1");

    let mut samples = [0u64; ROUNDS];
    let n = measure(1, POSTED_VECTOR, &mut samples);
    report("posted (IRTE 1)", &samples[..n]);
    let posted_ok = n == ROUNDS;
    let n = measure(2, REMAPPED_VECTOR, &mut samples);
    report("remapped (IRTE 2)", &samples[..n]);
    let remapped_ok = n == ROUNDS;
    u32::from(!(posted_ok && remapped_ok))
}
