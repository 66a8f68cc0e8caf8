//! Several threads post into one posted-interrupt descriptor while one vCPU thread processes
//! it on notification: no request is lost, none is delivered twice.
//!
//! Each producer owns a disjoint range of vectors and reposts a vector only after the
//! consumer delivered its previous post (a PIR bit is one request; posting a still-pending
//! bit coalesces, as on hardware). The consumer processes only when ON is set — as a CPU
//! does on the notification vector — so a post whose notification was lost would never be
//! delivered and its producer would time out. Per vector, deliveries must equal posts.

use apic::{ApicConfig, ApicvControls, LocalApic};
use apic::{PostOutcome, PostedInterruptDescriptor, VirtualApic};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRODUCERS: usize = 4;
const VECTORS_PER_PRODUCER: usize = 48;
const ROUNDS: u32 = 400;
const NV: u8 = 0xf2;

struct Shared {
    pid: PostedInterruptDescriptor,
    delivered: Vec<AtomicU32>,
    notifications: AtomicU64,
    done: AtomicBool,
}

/// Busy-waits, yielding now and then so the machine's other work still runs.
fn relax(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if *spins & 63 == 0 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

fn vector_of(producer: usize, i: usize) -> u8 {
    (16 + producer * VECTORS_PER_PRODUCER + i) as u8
}

fn run_hammer(suppress_toggling: bool) {
    let shared = Arc::new(Shared {
        pid: PostedInterruptDescriptor::new(NV, 1),
        delivered: (0..256).map(|_| AtomicU32::new(0)).collect(),
        notifications: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let s = Arc::clone(&shared);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut posted = 0u32;
                let mut spins = 0u32;
                for round in 1..=ROUNDS {
                    for i in 0..VECTORS_PER_PRODUCER {
                        let v = vector_of(p, i);
                        // Repost only after the previous post of this vector was delivered.
                        while s.delivered[usize::from(v)].load(Ordering::SeqCst) < round - 1 {
                            assert!(
                                Instant::now() < deadline,
                                "producer {p}: vector {v:#x} round {} lost",
                                round - 1
                            );
                            relax(&mut spins);
                        }
                        // Urgent posts override SN.
                        let urgent = suppress_toggling && i % 7 == 0;
                        if let PostOutcome::Notify { nv, ndst } = s.pid.post(v, urgent) {
                            assert_eq!((nv, ndst), (NV, 1));
                            s.notifications.fetch_add(1, Ordering::SeqCst);
                        }
                        posted += 1;
                    }
                }
                posted
            })
        })
        .collect();

    let consumer = {
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut vapic = VirtualApic::new(
                {
                    let mut apic = LocalApic::new(ApicConfig::new(1, true));
                    apic.write_msr(0x1b, 0xfee0_0c00, 0).unwrap();
                    apic.write_msr(0x80f, 0x1ff, 0).unwrap();
                    apic
                },
                ApicvControls::full(NV),
            );
            let mut processed = 0u64;
            let mut spins = 0u32;
            let mut sn = false;
            loop {
                let finished = s.done.load(Ordering::SeqCst);
                if suppress_toggling {
                    // The VMM sets SN while the vCPU is "preempted", and on resuming clears
                    // it and processes what was posted meanwhile (KVM's pending check).
                    sn = !sn;
                    s.pid.set_sn(sn);
                    if !sn && s.pid.pir_pending() {
                        vapic.process_posted_interrupts(&s.pid);
                    }
                }
                if s.pid.on() {
                    vapic.notification(NV, &s.pid);
                    processed += 1;
                }
                // Deliver and complete everything pending: each delivery is one request.
                while let Some(v) = vapic.deliver() {
                    s.delivered[usize::from(v)].fetch_add(1, Ordering::SeqCst);
                    vapic.msr_write(0x80b, 0);
                }
                if finished && !s.pid.pir_pending() && !s.pid.on() {
                    break;
                }
                relax(&mut spins);
            }
            s.pid.set_sn(false);
            processed
        })
    };

    let posted: u32 = producers.into_iter().map(|h| h.join().unwrap()).sum();
    shared.done.store(true, Ordering::SeqCst);
    let processed = consumer.join().unwrap();

    let mut delivered_total = 0u32;
    for p in 0..PRODUCERS {
        for i in 0..VECTORS_PER_PRODUCER {
            let v = usize::from(vector_of(p, i));
            let d = shared.delivered[v].load(Ordering::SeqCst);
            assert_eq!(
                d, ROUNDS,
                "vector {v:#x}: delivered {d} times for {ROUNDS} posts"
            );
            delivered_total += d;
        }
    }
    assert_eq!(delivered_total, posted);
    let others: u32 = (0..16)
        .chain(16 + PRODUCERS * VECTORS_PER_PRODUCER..256)
        .map(|v| shared.delivered[v].load(Ordering::SeqCst))
        .sum();
    assert_eq!(others, 0, "nothing that was not posted was delivered");
    eprintln!(
        "posted {posted}, processing passes {processed}, notifications {}",
        shared.notifications.load(Ordering::SeqCst)
    );
    assert!(processed > 0);
    assert!(shared.notifications.load(Ordering::SeqCst) > 0);
}

#[test]
fn concurrent_posts_are_delivered_exactly_once() {
    run_hammer(false);
}

#[test]
fn concurrent_posts_with_suppressed_notifications_are_delivered_exactly_once() {
    run_hammer(true);
}
