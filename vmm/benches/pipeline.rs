//! Criterion microbenchmarks of the pure model pipeline (no KVM, no threads): one device
//! interrupt per iteration through `vmm::model_bench::Pipeline`, posted and remapped, plus
//! each cumulative prefix of the pipeline so the per-stage cost can be read off.
//!
//! `cargo bench -p vmm --bench pipeline`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use vmm::model_bench::{run, stage_breakdown, Pipeline, PipelineKind, Stage};

/// Measurement time per benchmark.
const MEASUREMENT: Duration = Duration::from_secs(2);
/// Warm-up time per benchmark.
const WARM_UP: Duration = Duration::from_millis(500);
/// Interrupts per timed loop in the summary under `cargo bench`.
const SUMMARY_ITERATIONS: u64 = 20_000_000;
/// The same when the bench runs as a test (`cargo test --benches`, unoptimized).
const SMOKE_ITERATIONS: u64 = 10_000;
/// Issue 9's goal for the model pipeline, shown beside the measurement (not asserted).
const TARGET_PER_SECOND: f64 = 10e6;

/// One whole interrupt (MSI → IOMMU → APIC → EOI) per iteration, for each path.
fn one_interrupt(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    for kind in PipelineKind::ALL {
        let mut p = Pipeline::new(kind);
        group.bench_function(kind.name(), |b| b.iter(|| black_box(p.one())));
        let counts = p.counts();
        assert_eq!(
            (counts.faults, counts.unexpected, counts.wrong_vector),
            (0, 0, 0),
            "{} pipeline went astray: {counts:?}",
            kind.name()
        );
        assert!(p.drained(), "{} pipeline left state pending", kind.name());
    }
    group.finish();
}

/// The cumulative prefixes: remap only, then plus the signal (post + posted-interrupt
/// processing, or accept), the whole pipeline being `one_interrupt`.
fn prefixes(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline_prefix");
    for kind in PipelineKind::ALL {
        for (stage, name) in [(Stage::Remap, "remap"), (Stage::Signal, "signal")] {
            let mut p = Pipeline::new(kind);
            group.bench_function(format!("{}/{name}", kind.name()), |b| {
                b.iter(|| black_box(p.run_prefix(stage)))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(MEASUREMENT)
        .warm_up_time(WARM_UP);
    targets = one_interrupt, prefixes
}
/// A plain timed loop of each pipeline (`model_bench::run`, which also checks that every
/// interrupt was delivered exactly once) and its per-stage split, printed beside the goal.
fn summary() {
    let optimized = std::env::args().any(|a| a == "--bench");
    let iterations = if optimized {
        SUMMARY_ITERATIONS
    } else {
        SMOKE_ITERATIONS
    };
    let note = if optimized {
        ""
    } else {
        " (test-mode smoke run, unoptimized: not a measurement)"
    };
    println!("\nmodel pipeline, one thread, {iterations} interrupts per loop{note}:");
    for kind in PipelineKind::ALL {
        let r = run(kind, iterations);
        let b = stage_breakdown(kind, iterations);
        println!(
            "  {:<8} {:>6.2} M interrupts/s ({:.1} ns each; goal > {:.0} M/s) | remap {:.1} ns, \
             signal {:.1} ns, deliver+EOI {:.1} ns",
            kind.name(),
            r.per_second / 1e6,
            r.ns_per_interrupt,
            TARGET_PER_SECOND / 1e6,
            b.remap_ns,
            b.signal_ns,
            b.deliver_eoi_ns,
        );
    }
}

fn main() {
    benches();
    summary();
    Criterion::default().configure_from_args().final_summary();
}
