//! Virtual device interrupt hinting: the guest finds the hint interface in CPUID, registers
//! a hint page through its MSR, and its VF driver moves VF 1's RX interrupt (a remapped
//! IRTE, first aimed at vCPU 1) to the vCPU the VMM says runs on the host CPU where the
//! device event arrived. Run with `--vfs 2 --policy hinting --pin`.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use postbox_guest::arch::Global;
use postbox_guest::igbvf::{self, QueueMemory, EIMS, RING};
use postbox_guest::smp::{self, count};
use postbox_guest::testing::{wait_until, Checks};
use postbox_guest::vtd::{self, remappable_address, remapped_irte, set_irte};
use postbox_guest::{apic, entry, println, sys, BootInfo};

entry!(elf64, main);

const HINT_LEAF: u32 = 0x4000_0100;
const HINT_SIGNATURE: u32 = u32::from_le_bytes(*b"PbHt");
const FRAMES: usize = 8;
const VECTOR: u8 = 0x58;
const IRTE: u16 = 10;

/// The hint page (layout in the VMM's hint.rs): seq, events, requester ID, host CPU, mask.
#[repr(C, align(4096))]
struct HintPage {
    seq: AtomicU32,
    events: AtomicU32,
    requester_id: AtomicU32,
    host_cpu: AtomicU32,
    vcpu_mask: AtomicU64,
}
static HINT: HintPage = HintPage {
    seq: AtomicU32::new(0),
    events: AtomicU32::new(0),
    requester_id: AtomicU32::new(0),
    host_cpu: AtomicU32::new(0),
    vcpu_mask: AtomicU64::new(0),
};
static Q0: Global<QueueMemory> = Global::new(QueueMemory::new());
static Q1: Global<QueueMemory> = Global::new(QueueMemory::new());

/// A consistent (events, mask) snapshot of the hint page (seqlock read).
fn read_hint() -> (u32, u64) {
    loop {
        let s1 = HINT.seq.load(Ordering::SeqCst);
        let snapshot = (
            HINT.events.load(Ordering::SeqCst),
            HINT.vcpu_mask.load(Ordering::SeqCst),
        );
        if s1 % 2 == 0 && HINT.seq.load(Ordering::SeqCst) == s1 {
            return snapshot;
        }
    }
}

fn main(_info: &BootInfo) -> u32 {
    let mut c = Checks::default();
    // SAFETY: CPUID is available on every x86-64 CPU.
    let leaf = unsafe { core::arch::x86_64::__cpuid(HINT_LEAF) };
    c.check(
        "CPUID advertises the hint interface",
        leaf.eax == HINT_SIGNATURE,
    );
    c.check(
        "hint page registered",
        sys::wrmsr(leaf.ebx, &HINT as *const HintPage as u64).is_ok(),
    );
    c.check(
        "a misaligned hint page is refused",
        sys::wrmsr(leaf.ebx, 0x1234) == Err(13),
    );
    let _ = sys::wrmsr(leaf.ebx, &HINT as *const HintPage as u64);

    let _ = apic::enable_x2apic();
    let _ = apic::software_enable();
    c.check("AP 1 online", smp::start_ap_like_bsp());
    c.check("VT-d enabled", vtd::enable(true, true).is_ok());
    let (vf0, vf1, _, mac1) = match igbvf::bring_up_pair(&Q0, &Q1) {
        Ok(pair) => pair,
        Err(e) => {
            c.check(e, false);
            return c.finish();
        }
    };
    let mut destination = 1u32;
    set_irte(
        usize::from(IRTE),
        remapped_irte(VECTOR, destination, true),
        0,
    );
    vtd::invalidate_iec();
    vf1.set_msix(0, remappable_address(IRTE), 0);

    let mut frame = [0u8; 64];
    frame[..6].copy_from_slice(&mac1);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    let mut slot = 0;
    let mut moved_at = None;
    for i in 0..FRAMES {
        let before = count(0, VECTOR) + count(1, VECTOR);
        vf0.send(&Q0, &frame);
        let arrived = wait_until(|| count(0, VECTOR) + count(1, VECTOR) > before);
        let mut buf = [0u8; 128];
        let received = vf1.receive(&Q1, slot, &mut buf).is_some();
        slot = (slot + 1) % RING;
        vf1.wr(EIMS, 1);
        if !arrived || !received {
            c.check("frame and interrupt arrived", false);
            break;
        }
        // The driver follows the hint: the lowest vCPU on the event's host CPU.
        let (events, mask) = read_hint();
        if events > 0 && mask != 0 {
            let hinted = mask.trailing_zeros();
            if hinted != destination {
                destination = hinted;
                set_irte(
                    usize::from(IRTE),
                    remapped_irte(VECTOR, destination, true),
                    0,
                );
                vtd::invalidate_iec();
                moved_at.get_or_insert(i);
            }
        }
    }
    let (events, mask) = read_hint();
    println!(
        "HINT events={} mask={:#x} host_cpu={} rid={:#x} moved_after_frame={:?} vcpu0={} vcpu1={}",
        events,
        mask,
        HINT.host_cpu.load(Ordering::SeqCst),
        HINT.requester_id.load(Ordering::SeqCst),
        moved_at,
        count(0, VECTOR),
        count(1, VECTOR)
    );
    c.check("every device event was hinted", events as usize >= FRAMES);
    c.check(
        "the hint names the vCPU whose thread raised the event (vCPU 0)",
        mask & 1 != 0,
    );
    c.check(
        "the hint names the raising function (VF 1)",
        HINT.requester_id.load(Ordering::SeqCst) == u32::from(vf1.rid),
    );
    c.check(
        "the driver moved the interrupt after the first event",
        moved_at == Some(0),
    );
    c.check(
        "later interrupts follow the hint",
        count(0, VECTOR) as usize == FRAMES - 1 && count(1, VECTOR) == 1,
    );
    c.finish()
}
