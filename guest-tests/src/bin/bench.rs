//! The benchmark guest of `vmm bench`. One scenario per boot (`scenario=NAME rounds=N` on
//! the command line), on 2 vCPUs with x2APIC and VT-d remapping in EIM mode. vCPU 0 is the
//! sender; vCPU 1 receives, either spinning at CPL3 ("running") or halted. Each sample is
//! TSC cycles from the send (the instruction before the MSI doorbell, IPI or self-IPI) to
//! the receiving handler's first TSC read. Output, for `vmm bench` to parse:
//! `BENCH scenario=NAME series=SERIES samples=c1,c2,...` and
//! `BENCH scenario=NAME rate delivered=N cycles=C`. Marks 1 and 2 bracket the measured
//! phase, in which each interrupt costs the sender exactly one exit (the doorbell: a port
//! write for MSIs, an ICR or SELF_IPI write for IPIs).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use postbox_guest::apic::{self, ICR_ASSERT, ICR_FIXED};
use postbox_guest::arch::{rdtsc, Global, IRQ_EOI_CYCLES, IRQ_LAST_TSC, IRQ_TOTAL};
use postbox_guest::smp::{self, count};
use postbox_guest::testdev::{fire, mark, send_msi};
use postbox_guest::testing::{option, spin, wait_until, TIMEOUT_TSC};
use postbox_guest::vtd::{self, posted_irte, remappable_address, remapped_irte, set_irte};
use postbox_guest::{entry, print, println, BootInfo};

entry!(elf64, main);

const RID: u16 = 0x0100;
const MAX_ROUNDS: usize = 2000;
const REMAPPED_VECTOR: u8 = 0x50;
const POSTED_VECTOR: u8 = 0x60;
const IPI_VECTOR: u8 = 0x41;
const SELF_VECTOR: u8 = 0x42;
/// IRTEs 16..32 remap vectors 0x70..0x80 for the sustained-rate scenarios.
const SUSTAINED_FIRST_IRTE: u16 = 16;
const SUSTAINED_VECTORS: u16 = 16;
/// Time for a receiver to go back to HLT between rounds.
const SETTLE: u64 = 2_000_000;
const SUSTAIN_CYCLES: u64 = 1_000_000_000;

static SPIN: AtomicBool = AtomicBool::new(false);
/// Set by vCPU 1 once its APIC is enabled (a software-disabled APIC refuses interrupts).
static AP_READY: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static PID1: vtd::Descriptor = vtd::Descriptor::new();
static SAMPLES: Global<[u64; MAX_ROUNDS]> = Global::new([0; MAX_ROUNDS]);
static EOI: Global<[u64; MAX_ROUNDS]> = Global::new([0; MAX_ROUNDS]);

fn ap_main(_cpu: usize) {
    let _ = apic::enable_x2apic();
    let _ = apic::software_enable();
    AP_READY.store(true, Ordering::SeqCst);
    if SPIN.load(Ordering::SeqCst) {
        while !STOP.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
    }
}

fn print_series(scenario: &str, series: &str, samples: &[u64]) {
    print!("BENCH scenario={} series={} samples=", scenario, series);
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            print!(",");
        }
        print!("{}", s);
    }
    println!();
}

/// Runs `rounds` one-at-a-time deliveries to `cpu`/`vector`; `send` fires one.
fn latency(rounds: usize, cpu: usize, vector: u8, halted: bool, send: &dyn Fn()) -> usize {
    // SAFETY: the sample arrays are only touched by this CPU.
    let (samples, eoi) = unsafe { (&mut *SAMPLES.get(), &mut *EOI.get()) };
    let mut n = 0;
    mark(1);
    for i in 0..rounds {
        if halted {
            spin(SETTLE);
        }
        let before = count(cpu, vector);
        let handled_before = IRQ_TOTAL[cpu].load(Ordering::SeqCst);
        let sent = rdtsc();
        send();
        if !wait_until(|| count(cpu, vector) > before) {
            break;
        }
        samples[i] = IRQ_LAST_TSC[cpu]
            .load(Ordering::SeqCst)
            .saturating_sub(sent);
        // The handler counts itself done after its EOI.
        wait_until(|| IRQ_TOTAL[cpu].load(Ordering::SeqCst) > handled_before);
        eoi[i] = IRQ_EOI_CYCLES[cpu].load(Ordering::SeqCst);
        n += 1;
    }
    mark(2);
    n
}

/// MSI latency through IRTE `irte`: the test device is programmed and fired once outside
/// the measured loop (that interrupt is waited for and not sampled), then fired per round.
fn msi_latency(rounds: usize, irte: u16, vector: u8, halted: bool) -> usize {
    let before = count(1, vector);
    send_msi(remappable_address(irte), 0, RID, 1);
    if !wait_until(|| count(1, vector) > before) {
        return 0;
    }
    latency(rounds, 1, vector, halted, &|| fire(1))
}

/// Back-to-back MSIs over 16 IRTEs for SUSTAIN_CYCLES; counts what the targets handled.
fn sustained(first_irte: u16) -> (u32, u64) {
    let total = |cpus: usize| {
        (0..cpus)
            .map(|c| IRQ_TOTAL[c].load(Ordering::SeqCst))
            .sum::<u32>()
    };
    mark(1);
    let before = total(2);
    let start = rdtsc();
    let mut i = 0;
    while rdtsc() - start < SUSTAIN_CYCLES {
        send_msi(
            remappable_address(first_irte + i % SUSTAINED_VECTORS),
            0,
            RID,
            1,
        );
        i += 1;
    }
    let elapsed = rdtsc() - start;
    spin(50_000_000);
    mark(2);
    (total(2) - before, elapsed)
}

fn main(info: &BootInfo) -> u32 {
    let rounds = (option(info, "rounds").unwrap_or(500) as usize).min(MAX_ROUNDS);
    let scenario = info
        .cmdline()
        .and_then(|c| {
            c.split_whitespace()
                .find_map(|w| w.strip_prefix("scenario="))
        })
        .unwrap_or("");
    let halted = scenario.ends_with("-halted");
    SPIN.store(scenario.ends_with("-running"), Ordering::SeqCst);
    let _ = apic::enable_x2apic();
    let _ = apic::software_enable();
    if smp::start_aps(1, ap_main, TIMEOUT_TSC) != 1
        || !wait_until(|| AP_READY.load(Ordering::SeqCst))
        || vtd::enable(true, true).is_err()
    {
        println!("BENCH error: vCPU 1 or VT-d did not come up");
        return 1;
    }
    PID1.init(0xf2, 1, true);
    set_irte(1, remapped_irte(REMAPPED_VECTOR, 1, true), 0);
    let (lo, hi) = posted_irte(POSTED_VECTOR, PID1.address(), false);
    set_irte(2, lo, hi);
    for i in 0..SUSTAINED_VECTORS {
        let vector = 0x70 + i as u8;
        set_irte(
            usize::from(SUSTAINED_FIRST_IRTE + i),
            remapped_irte(vector, 1, true),
            0,
        );
        set_irte(
            usize::from(SUSTAINED_FIRST_IRTE + SUSTAINED_VECTORS + i),
            remapped_irte(vector, u32::from(i % 2), true),
            0,
        );
    }
    vtd::invalidate_iec();
    spin(SETTLE);

    let (n, rate) = match scenario {
        // The MSI is programmed once (uncounted, before the loop) and fired with one write.
        "msi-remapped-running" | "msi-remapped-halted" => {
            (msi_latency(rounds, 1, REMAPPED_VECTOR, halted), None)
        }
        "msi-posted-running" | "msi-posted-halted" => {
            (msi_latency(rounds, 2, POSTED_VECTOR, halted), None)
        }
        "ipi-running" | "ipi-halted" => (
            latency(rounds, 1, IPI_VECTOR, halted, &|| {
                let _ = apic::send_ipi(1, ICR_FIXED | ICR_ASSERT | u64::from(IPI_VECTOR));
            }),
            None,
        ),
        "self-ipi" => (
            latency(rounds, 0, SELF_VECTOR, false, &|| {
                let _ = apic::self_ipi(SELF_VECTOR);
            }),
            None,
        ),
        "sustained-one" => (0, Some(sustained(SUSTAINED_FIRST_IRTE))),
        "sustained-spread" => (0, Some(sustained(SUSTAINED_FIRST_IRTE + SUSTAINED_VECTORS))),
        other => {
            println!("BENCH error: unknown scenario {:?}", other);
            return 2;
        }
    };
    STOP.store(true, Ordering::SeqCst);
    if let Some((delivered, cycles)) = rate {
        println!(
            "BENCH scenario={} rate delivered={} cycles={}",
            scenario, delivered, cycles
        );
    } else {
        // SAFETY: written above by this CPU.
        let (samples, eoi) = unsafe { (&*SAMPLES.get(), &*EOI.get()) };
        print_series(scenario, "latency", &samples[..n]);
        print_series(scenario, "eoi", &eoi[..n]);
        if n < rounds {
            println!("BENCH error: only {} of {} interrupts arrived", n, rounds);
            return 3;
        }
    }
    0
}
