//! Delivery policies under preemption: a posted IRTE bound for vCPU 1, which the VMM
//! deschedules on a schedule (`--preempt 1:...`). vCPU 0 sends MSIs one at a time, each
//! after the previous one arrived, and reports where each landed and how long it took.
//! Whatever the policy, every interrupt must arrive exactly once with its vector.
#![no_std]
#![no_main]

use core::sync::atomic::Ordering;

use postbox_guest::arch::{rdtsc, Global, IRQ_LAST_TSC};
use postbox_guest::smp::{self, count};
use postbox_guest::testdev::{fire, send_msi};
use postbox_guest::testing::{option, spin, wait_until, Checks};
use postbox_guest::vtd::{self, posted_irte, remappable_address, set_irte};
use postbox_guest::{apic, entry, println, BootInfo};

entry!(elf64, main);

const VECTOR: u8 = 0x60;
const MAX_ROUNDS: usize = 400;
/// Cycles between rounds, so that sends fall at all phases of the preemption schedule.
const GAP: u64 = 3_000_000;

static PID1: vtd::Descriptor = vtd::Descriptor::new();
static LATENCY: Global<[u64; MAX_ROUNDS]> = Global::new([0; MAX_ROUNDS]);

fn main(info: &BootInfo) -> u32 {
    let rounds = (option(info, "rounds").unwrap_or(100) as usize).min(MAX_ROUNDS);
    let mut c = Checks::default();
    let _ = apic::enable_x2apic();
    let _ = apic::software_enable();
    c.check("AP 1 online", smp::start_ap_like_bsp());
    c.check("VT-d enabled", vtd::enable(true, true).is_ok());
    PID1.init(0xf2, 1, true);
    let (lo, hi) = posted_irte(VECTOR, PID1.address(), false);
    set_irte(3, lo, hi);
    vtd::invalidate_iec();

    // SAFETY: only this CPU touches the samples.
    let latency = unsafe { &mut *LATENCY.get() };
    let total = || count(0, VECTOR) + count(1, VECTOR);
    send_msi(remappable_address(3), 0, 0x0100, 0);
    let mut arrived = 0;
    for slot in latency.iter_mut().take(rounds) {
        spin(GAP);
        let before = total();
        let sent = rdtsc();
        fire(1);
        if !wait_until(|| total() > before) {
            break;
        }
        let cpu = if count(0, VECTOR) > 0 && IRQ_LAST_TSC[0].load(Ordering::SeqCst) > sent {
            0
        } else {
            1
        };
        *slot = IRQ_LAST_TSC[cpu]
            .load(Ordering::SeqCst)
            .saturating_sub(sent);
        arrived += 1;
    }
    spin(50_000_000);
    let (on0, on1) = (count(0, VECTOR), count(1, VECTOR));
    latency[..arrived].sort_unstable();
    let q = |p: usize| {
        if arrived == 0 {
            0
        } else {
            latency[(arrived - 1) * p / 100]
        }
    };
    println!(
        "POLICY landed vcpu0={} vcpu1={} rounds={} median={} p99={}",
        on0,
        on1,
        arrived,
        q(50),
        q(99)
    );
    c.check("every interrupt arrived", arrived == rounds);
    c.check("exactly once each", on0 + on1 == rounds as u32);
    c.finish()
}
