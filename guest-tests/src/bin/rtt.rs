//! Request/response between two VFs under vCPU preemption (the experiment of
//! `vmm bench policies`). vCPU 0 is the client: it sends a request VF 0 → VF 1 and polls
//! VF 0's RX ring for the reply. VF 1's RX interrupt is posted to vCPU 1; its handler —
//! on whichever vCPU the interrupt reaches — takes the request and replies VF 1 → VF 0.
//! Output: `RTT rounds=N cycles=TOTAL samples=c1,c2,...` (TSC cycles per round trip).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use postbox_guest::arch::{rdtsc, set_irq_handler, Global, TrapFrame};
use postbox_guest::igbvf::{self, QueueMemory, Vf, EIMS, RING};
use postbox_guest::smp;
use postbox_guest::testing::{option, wait_until};
use postbox_guest::vtd::{self, posted_irte, remappable_address, set_irte, Descriptor};
use postbox_guest::{apic, entry, print, println, BootInfo};

entry!(elf64, main);

const VECTOR: u8 = 0x60;
const MAX_ROUNDS: usize = 1000;

static Q0: Global<QueueMemory> = Global::new(QueueMemory::new());
static Q1: Global<QueueMemory> = Global::new(QueueMemory::new());
static PID1: Descriptor = Descriptor::new();
static SAMPLES: Global<[u64; MAX_ROUNDS]> = Global::new([0; MAX_ROUNDS]);
/// The server's VF and state, for the handler.
static SERVER: Global<Option<Vf>> = Global::new(None);
static SERVER_SLOT: AtomicUsize = AtomicUsize::new(0);
static CLIENT_MAC: AtomicU64 = AtomicU64::new(0);

/// VF 1's RX handler (CPL0): answer every request in the ring, re-enable the cause.
fn serve(_frame: &mut TrapFrame) {
    // SAFETY: set before the interrupt is enabled; read-only afterwards.
    let Some(vf1) = (unsafe { *SERVER.get() }) else {
        return;
    };
    let mac = CLIENT_MAC.load(Ordering::SeqCst).to_le_bytes();
    let mut reply = [0u8; 64];
    reply[..6].copy_from_slice(&mac[..6]);
    reply[12..14].copy_from_slice(&[0x88, 0xb5]);
    let mut buf = [0u8; 64];
    let mut slot = SERVER_SLOT.load(Ordering::SeqCst);
    while vf1.receive(&Q1, slot, &mut buf).is_some() {
        slot = (slot + 1) % RING;
        reply[14] = buf[14];
        vf1.send(&Q1, &reply);
    }
    SERVER_SLOT.store(slot, Ordering::SeqCst);
    vf1.wr(EIMS, 1);
}

fn main(info: &BootInfo) -> u32 {
    let rounds = (option(info, "rounds").unwrap_or(200) as usize).min(MAX_ROUNDS);
    let _ = apic::enable_x2apic();
    let _ = apic::software_enable();
    if !smp::start_ap_like_bsp() || vtd::enable(true, true).is_err() {
        println!("RTT error: vCPU 1 or VT-d did not come up");
        return 1;
    }
    let (vf0, vf1, mac0, mac1) = match igbvf::bring_up_pair(&Q0, &Q1) {
        Ok(pair) => pair,
        Err(e) => {
            println!("RTT error: {}", e);
            return 2;
        }
    };
    let mut m = [0u8; 8];
    m[..6].copy_from_slice(&mac0);
    CLIENT_MAC.store(u64::from_le_bytes(m), Ordering::SeqCst);
    // SAFETY: the handler is not installed yet.
    unsafe { *SERVER.get() = Some(vf1) };
    set_irq_handler(VECTOR, serve);
    PID1.init(0xf2, 1, true);
    let (lo, hi) = posted_irte(VECTOR, PID1.address(), false);
    set_irte(4, lo, hi);
    vtd::invalidate_iec();
    vf1.set_msix(0, remappable_address(4), 0);
    // The client polls its own RX ring: VF 0's interrupt stays masked.
    vf0.wr(igbvf::EIMC, 0x7);

    // SAFETY: only this CPU touches the samples.
    let samples = unsafe { &mut *SAMPLES.get() };
    let mut request = [0u8; 64];
    request[..6].copy_from_slice(&mac1);
    request[12..14].copy_from_slice(&[0x88, 0xb5]);
    let mut slot = 0;
    let mut n = 0;
    let start = rdtsc();
    for (i, sample) in samples.iter_mut().enumerate().take(rounds) {
        request[14] = i as u8;
        let sent = rdtsc();
        vf0.send(&Q0, &request);
        let mut buf = [0u8; 64];
        if !wait_until(|| vf0.receive(&Q0, slot, &mut buf).is_some()) || buf[14] != i as u8 {
            break;
        }
        slot = (slot + 1) % RING;
        *sample = rdtsc() - sent;
        n += 1;
    }
    let total = rdtsc() - start;
    print!("RTT rounds={} cycles={} samples=", n, total);
    for (i, s) in samples[..n].iter().enumerate() {
        if i > 0 {
            print!(",");
        }
        print!("{}", s);
    }
    println!();
    u32::from(n != rounds)
}
