//! Several APICs wired together the way the VMM does it: actions out of one APIC, resolved
//! over all of them, accepted by the targets. SMP start-up (INIT-SIPI-SIPI), IPIs, and a
//! level-triggered device interrupt with its EOI broadcast.

use apic::destination::matches;
use apic::registers::*;
use apic::*;

/// A miniature VMM fabric: routes SendIpi actions, records everything else per vCPU.
struct Fabric {
    apics: Vec<LocalApic>,
    events: Vec<(usize, ApicAction)>,
}

impl Fabric {
    fn new(n: u32) -> Self {
        Self {
            apics: (0..n)
                .map(|i| LocalApic::new(ApicConfig::new(i, i == 0)))
                .collect(),
            events: Vec::new(),
        }
    }

    fn route(&mut self, from: usize, actions: Actions) {
        for action in actions.iter().copied() {
            match action {
                ApicAction::SendIpi(ipi) => {
                    let targets = resolve(
                        &self.apics,
                        &ipi.request,
                        ipi.shorthand,
                        Some(from),
                        ipi.format,
                    );
                    for t in targets {
                        let out = self.apics[t].accept(&ipi.request);
                        self.route(t, out);
                    }
                }
                other => self.events.push((from, other)),
            }
        }
    }

    fn msr(&mut self, cpu: usize, msr: u32, value: u64) {
        let actions = self.apics[cpu].write_msr(msr, value, 0).unwrap();
        self.route(cpu, actions);
    }
}

fn enable_x2apic(f: &mut Fabric, cpu: usize) {
    let bsp = if cpu == 0 { APIC_BASE_BSP } else { 0 };
    f.msr(
        cpu,
        MSR_IA32_APIC_BASE,
        APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_EXTD | bsp,
    );
    f.msr(cpu, x2apic_msr(APIC_SVR), 0x1ff);
}

#[test]
fn smp_start_up_and_ipis() {
    let mut f = Fabric::new(4);
    enable_x2apic(&mut f, 0);
    // INIT to all excluding self, then two SIPIs with vector 0x9a (as Linux/firmware do).
    f.msr(0, MSR_X2APIC_ICR, 0x000c_4500);
    f.msr(0, MSR_X2APIC_ICR, 0x000c_469a);
    f.msr(0, MSR_X2APIC_ICR, 0x000c_469a);
    for ap in 1..4 {
        assert!(f.events.contains(&(ap, ApicAction::Init)));
        let startups = f
            .events
            .iter()
            .filter(|(c, a)| *c == ap && *a == ApicAction::Startup { vector: 0x9a })
            .count();
        assert_eq!(startups, 1, "the second SIPI is ignored by a running AP");
        assert_eq!(f.apics[ap].processor_state(), ProcessorState::Running);
        enable_x2apic(&mut f, ap);
    }
    // A fixed IPI to logical cluster 0, members 1 and 3 (x2APIC IDs 1 and 3).
    f.msr(0, MSR_X2APIC_ICR, (0x0000_000a << 32) | 0x0000_0841);
    assert_eq!(f.apics[1].pending_interrupt(), Some(0x41));
    assert_eq!(f.apics[3].pending_interrupt(), Some(0x41));
    assert_eq!(f.apics[2].pending_interrupt(), None);
    // Broadcast NMI to everyone else.
    f.msr(2, MSR_X2APIC_ICR, 0x000c_0400);
    for cpu in [0, 1, 3] {
        assert!(f.events.contains(&(cpu, ApicAction::Nmi)));
    }
    assert!(!f.events.contains(&(2, ApicAction::Nmi)));
}

#[test]
fn level_triggered_device_interrupt_round_trip() {
    let mut f = Fabric::new(2);
    enable_x2apic(&mut f, 0);
    // An IOAPIC-style level-triggered, lowest-priority interrupt to both CPUs (logical).
    let request = InterruptRequest {
        vector: 0x61,
        delivery_mode: DeliveryMode::LowestPriority,
        destination_mode: DestinationMode::Logical,
        destination: 0x0000_0003,
        trigger_mode: TriggerMode::Level,
        level: true,
        redirection_hint: false,
    };
    // CPU 1 is in x2APIC mode but software-disabled (PPR 0 like CPU 0): CPU 0 wins.
    f.msr(
        1,
        MSR_IA32_APIC_BASE,
        APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_EXTD,
    );
    assert!(matches(
        &f.apics[1],
        DestinationMode::Logical,
        0x3,
        DestinationFormat::X2Apic
    ));
    let targets = resolve(
        &f.apics,
        &request,
        Shorthand::None,
        None,
        DestinationFormat::X2Apic,
    );
    assert_eq!(targets, vec![0]);
    let out = f.apics[0].accept(&request);
    f.route(0, out);
    assert_eq!(f.apics[0].acknowledge(), Some(0x61));
    f.msr(0, MSR_X2APIC_EOI, 0);
    assert!(f
        .events
        .contains(&(0, ApicAction::EoiBroadcast { vector: 0x61 })));
}
