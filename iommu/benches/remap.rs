//! Interrupt remapping hot paths: a remap that hits the interrupt entry cache, a post
//! into a descriptor, and a remap that must fetch its IRTE from guest memory.

use std::hint::black_box;
use std::time::Duration;

use apic::pid::PostedInterruptDescriptor;
use apic::{InterruptRequest, MsiMessage};
use criterion::{criterion_group, criterion_main, Criterion};
use iommu::invalidation::descriptor;
use iommu::regs::*;
use iommu::{Iommu, Irte, PostingRequest, RemapResult};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

type Mem = GuestMemoryMmap<()>;

const IRT: u64 = 0x1_0000;
const IQ: u64 = 0x4_0000;
const PID: u64 = 0x6_0000;

fn rmsi(handle: u16) -> MsiMessage {
    let h = u64::from(handle);
    MsiMessage::new(
        0x0108,
        0xfee0_0000 | ((h & 0x7fff) << 5) | ((h >> 15) << 2) | 0x10,
        0,
    )
}

/// A unit with a 4096-entry x2APIC table at IRT, QI and IR on.
fn unit() -> Iommu<Mem> {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let mut iommu = Iommu::new(mem);
    iommu.write_u64(IQA, IQ);
    iommu.write_u32(GCMD, G_QIE);
    iommu.write_u64(IRTA, IRT | IRTA_EIME | 11);
    iommu.write_u32(GCMD, G_QIE | G_SIRTP);
    let d = descriptor::iec_global();
    iommu.memory().write_obj(d[0], GuestAddress(IQ)).unwrap();
    iommu
        .memory()
        .write_obj(d[1], GuestAddress(IQ + 8))
        .unwrap();
    iommu.write_u64(IQT, 0x10);
    iommu.write_u32(GCMD, G_QIE | G_IRE);
    for i in 0..4096u64 {
        let e = Irte::remapped(&InterruptRequest::fixed(0x40, i as u32), false);
        iommu
            .memory()
            .write_slice(&e.to_bytes(), GuestAddress(IRT + i * 16))
            .unwrap();
    }
    iommu
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("iommu");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));

    let mut iommu = unit();
    let msi = rmsi(7);
    assert!(matches!(iommu.remap(&msi), RemapResult::Remapped { .. }));
    g.bench_function("remap_warm_iec", |b| {
        b.iter(|| black_box(iommu.remap(black_box(&msi))))
    });

    // Cold: indices 0, 1024, 2048, 3072 share one entry-cache slot, so every lookup misses
    // and reads the IRTE from guest memory.
    let cold: Vec<MsiMessage> = (0..4).map(|k| rmsi(k * 1024)).collect();
    let mut k = 0;
    g.bench_function("remap_cold_irte_fetch", |b| {
        b.iter(|| {
            k = (k + 1) & 3;
            black_box(iommu.remap(black_box(&cold[k])))
        })
    });

    // Posting into a descriptor that already has ON set (the steady state under load).
    let post = PostingRequest {
        pda: PID,
        vector: 0x55,
        urgent: false,
        index: 9,
        source_id: 0x0108,
        fpd: false,
    };
    iommu.post(&post);
    g.bench_function("post_on_set", |b| {
        b.iter(|| black_box(iommu.post(black_box(&post))))
    });

    // Posting that notifies: the vCPU side clears ON between posts.
    let host = iommu.memory().get_host_address(GuestAddress(PID)).unwrap();
    // SAFETY: PID is 64-byte aligned in the mapping, which outlives the benchmark.
    let pid = unsafe { PostedInterruptDescriptor::from_ptr(host) };
    g.bench_function("post_notify_then_process", |b| {
        b.iter(|| {
            let r = iommu.post(black_box(&post));
            pid.process();
            black_box(r)
        })
    });

    // Remap + post in one call (posted IRTE, warm cache).
    let e = Irte::posted_entry(0x66, false, PID);
    iommu
        .memory()
        .write_slice(&e.to_bytes(), GuestAddress(IRT + 100 * 16))
        .unwrap();
    let pmsi = rmsi(100);
    g.bench_function("deliver_posted_warm", |b| {
        b.iter(|| black_box(iommu.deliver(black_box(&pmsi))))
    });
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
