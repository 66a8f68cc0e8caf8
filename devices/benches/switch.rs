//! Frames per second VF to VF through the NIC's internal switch: VF 0 transmits 64-byte
//! frames to VF 1's MAC; each iteration is one frame with the driver work a VF driver
//! does per frame (write the TX descriptor, bump TDT, re-arm one RX descriptor with RDT).
//! `one_msi_per_frame`: VF 1's RX vector with EITR 0 and no auto-mask (an MSI-X message
//! per frame). `moderated_100us`: EITR 100 µs with simulated time advancing 1 µs per
//! frame (so about one MSI per 100 frames, fired from `poll` at the deadline).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use devices::nic::regs::*;
use devices::nic::{Function, REG_BAR};
use devices::sim::{frame, Rig};
use std::hint::black_box;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress};

struct Bench {
    r: Rig,
    tail: u32,
    now: u64,
    tdt: u64,
    rdt: u64,
}

fn setup(eitr_us: u32) -> Bench {
    let mut r = Rig::with_vfs(2);
    let src = r.igbvf_init(0);
    let dst = r.igbvf_init(1);
    r.rings(Function::Vf(0), 0x10_0000);
    r.rings(Function::Vf(1), 0x20_0000);
    r.wr(Function::Vf(0), EIMC, 0x7, 0);
    r.wr(Function::Vf(1), EIAM, 0, 0);
    r.wr(Function::Vf(1), EITR, eitr_us << 2, 0);
    let f = frame(dst, src, 64);
    // All eight TX descriptors point at the same frame buffer.
    for i in 0..8u64 {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&0x10_2000u64.to_le_bytes());
        r.mem
            .memory()
            .write_slice(&d, GuestAddress(0x10_1000 + 16 * i))
            .unwrap();
    }
    r.mem
        .memory()
        .write_slice(&f, GuestAddress(0x10_2000))
        .unwrap();
    let tdt = r.addr(Function::Vf(0), REG_BAR, TXQ_LOW_BASE + TDT);
    let rdt = r.addr(Function::Vf(1), REG_BAR, RXQ_LOW_BASE + RDT);
    Bench {
        r,
        tail: 0,
        now: 0,
        tdt,
        rdt,
    }
}

impl Bench {
    fn one_frame(&mut self, dt: u64) {
        let cmd = 64 | ADVTXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS;
        let mut d = [0u8; 8];
        d[0..4].copy_from_slice(&cmd.to_le_bytes());
        d[4..8].copy_from_slice(&(64u32 << 14).to_le_bytes());
        let desc = 0x10_1000 + 16 * self.tail as u64 + 8;
        self.r
            .mem
            .memory()
            .write_slice(&d, GuestAddress(desc))
            .unwrap();
        self.tail = (self.tail + 1) % 8;
        self.now += dt;
        let now = self.now;
        self.r
            .bus
            .mmio_write_at(self.tdt, &self.tail.to_le_bytes(), now);
        // Re-arm: RX tail one behind the head.
        let rx_tail = (self.tail + 7) % 8;
        self.r
            .bus
            .mmio_write_at(self.rdt, &rx_tail.to_le_bytes(), now);
        if let Some(t) = self.r.bus.next_deadline() {
            if t <= now {
                self.r.bus.poll(now);
            }
        }
        if self.tail == 0 {
            black_box(self.r.sink.take());
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("vf_to_vf_switch");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(20);
    for (name, eitr, dt) in [("one_msi_per_frame", 0, 0), ("moderated_100us", 100, 1_000)] {
        let mut b = setup(eitr);
        g.bench_function(name, |bch| bch.iter(|| b.one_frame(dt)));
        let nic = b.r.nic();
        let frames = nic.counters.rx_delivered;
        eprintln!(
            "{name}: {frames} frames delivered, {} MSIs ({:.3} per frame), {} dropped",
            nic.interrupts_sent(),
            nic.interrupts_sent() as f64 / frames.max(1) as f64,
            nic.counters.rx_no_descriptors
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
