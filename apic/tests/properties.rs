//! Property tests: the invariants of SDM vol. 3 §11.8 under random operation sequences, and
//! robustness of the register interface under random (hostile) accesses.

use apic::registers::*;
use apic::*;
use proptest::prelude::*;

fn enabled_x2apic() -> LocalApic {
    let mut apic = LocalApic::new(ApicConfig::new(3, true));
    apic.write_msr(
        MSR_IA32_APIC_BASE,
        APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_EXTD,
        0,
    )
    .unwrap();
    apic.write_msr(x2apic_msr(APIC_SVR), 0x1ff, 0).unwrap();
    apic
}

fn highest(bits: &[u64; 4]) -> Option<u8> {
    apic::apicv::highest_of(bits)
}

#[derive(Clone, Debug)]
enum Op {
    Accept(u8, bool),
    Dispatch,
    Eoi,
    Tpr(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (16u8..=255, any::<bool>()).prop_map(|(v, l)| Op::Accept(v, l)),
        Just(Op::Dispatch),
        Just(Op::Eoi),
        any::<u8>().prop_map(Op::Tpr),
    ]
}

fn request(vector: u8, level: bool) -> InterruptRequest {
    InterruptRequest {
        trigger_mode: if level {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        },
        ..InterruptRequest::fixed(vector, 3)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Every accepted vector is dispatched exactly once (each vector accepted once).
    #[test]
    fn every_accepted_vector_is_dispatched_exactly_once(
        vectors in proptest::collection::btree_set(16u8..=255, 1..40),
        interleave in proptest::collection::vec(0u8..4, 0..80),
        tpr in any::<u8>(),
    ) {
        let mut apic = enabled_x2apic();
        apic.write_msr(MSR_X2APIC_TPR, u64::from(tpr), 0).unwrap();
        let mut pending: Vec<u8> = vectors.iter().copied().collect();
        let mut dispatched = [0u32; 256];
        let mut steps = interleave.into_iter();
        while !pending.is_empty() {
            match steps.next() {
                Some(0) | None => {
                    let v = pending.remove(0);
                    apic.accept(&request(v, false));
                }
                Some(1) => {
                    if let Some(v) = apic.acknowledge() {
                        dispatched[usize::from(v)] += 1;
                    }
                }
                Some(2) => { apic.eoi(); }
                Some(_) => {
                    if let Some(v) = apic.acknowledge() {
                        dispatched[usize::from(v)] += 1;
                        apic.eoi();
                    }
                }
            }
        }
        // Drain: lower TPR, dispatch and EOI until nothing is left.
        apic.write_msr(MSR_X2APIC_TPR, 0, 0).unwrap();
        for _ in 0..600 {
            match apic.acknowledge() {
                Some(v) => dispatched[usize::from(v)] += 1,
                None => {
                    if apic.isr() == [0; 4] { break; }
                    apic.eoi();
                }
            }
        }
        prop_assert_eq!(apic.irr(), [0; 4]);
        prop_assert_eq!(apic.isr(), [0; 4]);
        for v in 0..=255u8 {
            let expected = u32::from(vectors.contains(&v));
            prop_assert_eq!(dispatched[usize::from(v)], expected, "vector {:#x}", v);
        }
    }

    /// PPR = TPR when TPR[7:4] ≥ ISRV[7:4], else ISRV & 0xf0; so its class is the larger
    /// of the TPR class and the highest in-service class.
    #[test]
    fn ppr_is_the_larger_of_tpr_and_isr_class(ops in proptest::collection::vec(op(), 1..100)) {
        let mut apic = enabled_x2apic();
        for op in ops {
            match op {
                Op::Accept(v, l) => { apic.accept(&request(v, l)); }
                Op::Dispatch => { apic.acknowledge(); }
                Op::Eoi => { apic.eoi(); }
                Op::Tpr(t) => { apic.write_msr(MSR_X2APIC_TPR, u64::from(t), 0).unwrap(); }
            }
            let ppr = apic.read_msr(x2apic_msr(APIC_PPR), 0).unwrap() as u8;
            let tpr = apic.tpr();
            let isrv = highest(&apic.isr()).unwrap_or(0);
            prop_assert_eq!(ppr >> 4, (tpr >> 4).max(isrv >> 4));
            let exact = if tpr >> 4 >= isrv >> 4 { tpr } else { isrv & 0xf0 };
            prop_assert_eq!(ppr, exact);
            // Nothing deliverable is left waiting below a deliverable class.
            if let Some(v) = apic.pending_interrupt() {
                prop_assert!(v >> 4 > ppr >> 4);
                prop_assert_eq!(Some(v), highest(&apic.irr()));
            }
        }
    }

    /// EOI clears exactly the highest ISR bit.
    #[test]
    fn eoi_clears_exactly_the_highest_isr_bit(ops in proptest::collection::vec(op(), 1..100)) {
        let mut apic = enabled_x2apic();
        for op in ops {
            match op {
                Op::Accept(v, l) => { apic.accept(&request(v, l)); }
                Op::Dispatch => { apic.acknowledge(); }
                Op::Tpr(t) => { apic.write_msr(MSR_X2APIC_TPR, u64::from(t), 0).unwrap(); }
                Op::Eoi => {
                    let before = apic.isr();
                    let tmr = apic.tmr();
                    let actions = apic.write_msr(MSR_X2APIC_EOI, 0, 0).unwrap();
                    let after = apic.isr();
                    let mut expected = before;
                    if let Some(h) = highest(&before) {
                        expected[usize::from(h >> 6)] &= !(1u64 << (h & 63));
                        let level = tmr[usize::from(h >> 6)] & (1u64 << (h & 63)) != 0;
                        prop_assert_eq!(
                            actions.contains(&ApicAction::EoiBroadcast { vector: h }),
                            level
                        );
                    } else {
                        prop_assert!(actions.is_empty());
                    }
                    prop_assert_eq!(after, expected);
                }
            }
        }
    }

    /// Virtual-interrupt delivery keeps RVI/SVI equal to the highest VIRR/VISR bits and
    /// delivers every posted vector exactly once.
    #[test]
    fn posted_vectors_are_delivered_once_through_apicv(
        batches in proptest::collection::vec(proptest::collection::btree_set(16u8..=255, 0..20), 1..8),
    ) {
        let pid = PostedInterruptDescriptor::new(0xf2, 3);
        let mut v = VirtualApic::new(enabled_x2apic(), ApicvControls::full(0xf2));
        let mut delivered = [0u32; 256];
        let mut posted = [0u32; 256];
        for batch in batches {
            for &vector in &batch {
                // A vector is posted again only after its previous delivery completed.
                if v.apic().irr()[usize::from(vector >> 6)] & (1 << (vector & 63)) == 0
                    && v.apic().isr()[usize::from(vector >> 6)] & (1 << (vector & 63)) == 0
                {
                    pid.post(vector, false);
                    posted[usize::from(vector)] += 1;
                }
            }
            v.notification(0xf2, &pid);
            prop_assert_eq!(v.rvi(), highest(&v.apic().irr()).unwrap_or(0));
            while let Some(vec) = v.deliver() {
                delivered[usize::from(vec)] += 1;
                prop_assert_eq!(v.svi(), highest(&v.apic().isr()).unwrap_or(0));
            }
            // Complete one handler per batch.
            v.msr_write(MSR_X2APIC_EOI, 0);
            prop_assert_eq!(v.svi(), highest(&v.apic().isr()).unwrap_or(0));
        }
        for _ in 0..300 {
            if let Some(vec) = v.deliver() {
                delivered[usize::from(vec)] += 1;
            } else if v.apic().isr() != [0; 4] {
                v.msr_write(MSR_X2APIC_EOI, 0);
            } else {
                break;
            }
        }
        prop_assert_eq!(delivered, posted);
    }
}

// ---- Robustness: random register traffic never panics and keeps the state consistent ----

#[derive(Clone, Debug)]
enum Access {
    MmioRead(u64, usize),
    MmioWrite(u64, Vec<u8>),
    MsrRead(u32),
    MsrWrite(u32, u64),
    Accept(u8, u8, bool, bool, u32),
    Ack,
    Tick(u64),
    Lint(u8, bool),
    Lvt(u8),
}

fn msr() -> impl Strategy<Value = u32> {
    prop_oneof![
        0x7f0u32..0x910,
        Just(MSR_IA32_APIC_BASE),
        Just(MSR_IA32_TSC_DEADLINE),
        any::<u32>(),
    ]
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..0x400,
        Just(APIC_DEFAULT_BASE | APIC_BASE_ENABLE),
        Just(APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_EXTD),
        Just(APIC_DEFAULT_BASE),
        Just(0x1ff),
        any::<u32>().prop_map(u64::from),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        (0u64..0x1100, 0usize..10).prop_map(|(o, l)| Access::MmioRead(o, l)),
        (
            prop_oneof![0u64..0x1000, any::<u64>()],
            proptest::collection::vec(any::<u8>(), 0..9)
        )
            .prop_map(|(o, d)| Access::MmioWrite(o & !0x3 | (o & 0x3), d)),
        msr().prop_map(Access::MsrRead),
        (msr(), interesting_u64()).prop_map(|(m, v)| Access::MsrWrite(m, v)),
        (
            any::<u8>(),
            0u8..8,
            any::<bool>(),
            any::<bool>(),
            any::<u32>()
        )
            .prop_map(|(v, d, t, l, dest)| Access::Accept(v, d, t, l, dest)),
        Just(Access::Ack),
        any::<u64>().prop_map(Access::Tick),
        (0u8..3, any::<bool>()).prop_map(|(p, l)| Access::Lint(p, l)),
        (0u8..7).prop_map(Access::Lvt),
    ]
}

fn apply(apic: &mut LocalApic, access: &Access, now: u64) {
    match access {
        Access::MmioRead(o, l) => {
            let mut buf = vec![0u8; *l];
            apic.mmio_read(*o, &mut buf, now);
        }
        Access::MmioWrite(o, d) => {
            apic.mmio_write(*o, d, now);
        }
        Access::MsrRead(m) => {
            let _ = apic.read_msr(*m, now);
        }
        Access::MsrWrite(m, v) => {
            let _ = apic.write_msr(*m, *v, now);
        }
        Access::Accept(v, d, t, l, dest) => {
            apic.accept(&InterruptRequest {
                vector: *v,
                delivery_mode: DeliveryMode::from_bits(u32::from(*d)),
                destination_mode: DestinationMode::Physical,
                destination: *dest,
                trigger_mode: if *t {
                    TriggerMode::Level
                } else {
                    TriggerMode::Edge
                },
                level: *l,
                redirection_hint: false,
            });
        }
        Access::Ack => {
            apic.acknowledge();
        }
        Access::Tick(t) => {
            apic.tick(*t);
        }
        Access::Lint(p, l) => {
            apic.set_lint(*p, *l);
        }
        Access::Lvt(i) => {
            if let Some(e) = LvtEntry::ALL.get(usize::from(*i)) {
                apic.deliver_lvt(*e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_register_traffic_keeps_the_model_consistent(
        accesses in proptest::collection::vec(access(), 1..200),
        bsp in any::<bool>(),
    ) {
        let mut apic = LocalApic::new(ApicConfig::new(5, bsp));
        let mut now = 0u64;
        for a in &accesses {
            now = now.wrapping_add(97);
            apply(&mut apic, a, now);
            prop_assert!(apic.check_invariants().is_ok(), "{:?} after {:?}", apic.check_invariants(), a);
            prop_assert_eq!(apic.irr()[0] & 0xffff, 0, "illegal vector accepted");
            prop_assert_eq!(apic.isr()[0] & 0xffff, 0, "illegal vector in service");
        }
    }

    #[test]
    fn random_guest_accesses_through_apicv_never_panic(
        accesses in proptest::collection::vec(access(), 1..150),
        controls in (any::<[bool; 6]>(), any::<u8>(), any::<[u64; 4]>()),
    ) {
        let (b, threshold, bitmap) = controls;
        let controls = ApicvControls {
            use_tpr_shadow: b[0],
            virtualize_apic_accesses: b[1],
            virtualize_x2apic_mode: b[2],
            apic_register_virtualization: b[3],
            virtual_interrupt_delivery: b[4],
            process_posted_interrupts: b[5],
            notification_vector: 0xf2,
            tpr_threshold: threshold,
            eoi_exit_bitmap: bitmap,
            msr_read_intercepts: if b[0] { apic::apicv::default_msr_read_intercepts() } else { bitmap },
        };
        let mut v = VirtualApic::new(enabled_x2apic(), controls);
        let pid = PostedInterruptDescriptor::new(0xf2, 3);
        let mut now = 0u64;
        for a in &accesses {
            now = now.wrapping_add(13);
            match a {
                Access::MmioRead(o, l) => { let mut buf = vec![0u8; *l]; v.mmio_read_or_emulate(*o, &mut buf, now); }
                Access::MmioWrite(o, d) => { v.mmio_write_or_emulate(*o, d, now); }
                Access::MsrRead(m) => { let _ = v.msr_read_or_emulate(*m, now); }
                Access::MsrWrite(m, val) => { let _ = v.msr_write_or_emulate(*m, *val, now); }
                Access::Accept(vec, ..) => { pid.post(*vec, false); v.notification(0xf2, &pid); }
                Access::Ack => { v.deliver(); }
                other => apply(v.apic_mut(), other, now),
            }
            if let Some(r) = v.evaluate() {
                prop_assert!(r >> 4 > v.vppr() >> 4);
            }
            v.vm_entry();
            prop_assert!(v.apic().check_invariants().is_ok(), "{:?} after {:?}", v.apic().check_invariants(), a);
        }
    }
}

// ---- Destination resolution -------------------------------------------------------------

fn snapshot() -> impl Strategy<Value = ApicSnapshot> {
    (
        0u32..64,
        0u8..3,
        any::<u32>(),
        any::<bool>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(id, mode, ldr, cluster_model, ppr, enabled)| {
            let mode = [ApicMode::Disabled, ApicMode::XApic, ApicMode::X2Apic][usize::from(mode)];
            ApicSnapshot {
                id,
                mode,
                ldr: if mode == ApicMode::X2Apic {
                    x2apic_ldr(id)
                } else {
                    ldr & 0xff00_0000
                },
                dfr: if cluster_model {
                    0x0fff_ffff
                } else {
                    0xffff_ffff
                },
                ppr,
                software_enabled: enabled,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn lowest_priority_picks_one_best_candidate_of_the_fixed_set(
        apics in proptest::collection::vec(snapshot(), 1..24),
        destination in prop_oneof![any::<u32>(), 0u32..0x100, Just(0xff), Just(X2APIC_BROADCAST)],
        logical in any::<bool>(),
        x2_format in any::<bool>(),
    ) {
        let format = if x2_format { DestinationFormat::X2Apic } else { DestinationFormat::XApic };
        let fixed = InterruptRequest {
            destination_mode: if logical { DestinationMode::Logical } else { DestinationMode::Physical },
            ..InterruptRequest::fixed(0x40, destination)
        };
        let lowest = InterruptRequest { delivery_mode: DeliveryMode::LowestPriority, ..fixed };
        let all = resolve(&apics, &fixed, Shorthand::None, None, format);
        let one = resolve(&apics, &lowest, Shorthand::None, None, format);
        prop_assert!(all.iter().all(|&i| apics[i].mode != ApicMode::Disabled));
        prop_assert_eq!(one.is_empty(), all.is_empty());
        if let [chosen] = one.as_slice() {
            prop_assert!(all.contains(chosen));
            let key = |i: usize| (!apics[i].software_enabled, apics[i].ppr);
            prop_assert!(all.iter().all(|&i| key(*chosen) <= key(i)));
        } else {
            prop_assert!(one.is_empty());
        }
    }

    #[test]
    fn broadcasts_and_shorthands_cover_every_present_apic(
        apics in proptest::collection::vec(snapshot(), 1..24),
        source in 0usize..24,
    ) {
        let present: Vec<usize> = (0..apics.len()).filter(|&i| apics[i].mode != ApicMode::Disabled).collect();
        let bcast = InterruptRequest::fixed(0x40, X2APIC_BROADCAST);
        prop_assert_eq!(&resolve(&apics, &bcast, Shorthand::None, None, DestinationFormat::X2Apic), &present);
        prop_assert_eq!(&resolve(&apics, &bcast, Shorthand::None, None, DestinationFormat::XApic), &present);
        let src = Some(source);
        let including = resolve(&apics, &bcast, Shorthand::AllIncludingSelf, src, DestinationFormat::X2Apic);
        prop_assert_eq!(&including, &present);
        let excluding = resolve(&apics, &bcast, Shorthand::AllExcludingSelf, src, DestinationFormat::X2Apic);
        let expected: Vec<usize> = present.iter().copied().filter(|&i| i != source).collect();
        prop_assert_eq!(excluding, expected);
        let own = resolve(&apics, &bcast, Shorthand::SelfOnly, src, DestinationFormat::X2Apic);
        prop_assert_eq!(own, present.iter().copied().filter(|&i| i == source).collect::<Vec<_>>());
    }
}
