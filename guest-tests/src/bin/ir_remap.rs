//! Interrupt remapping end to end through the VMM's fabric, with the MSI test device as the
//! interrupt source: compatibility format, remapped IRTEs (to a running and to a halted
//! vCPU), sub-handles, posted IRTEs (notification vector processed by the vCPU, a wake-up
//! vector delivered as such, SN suppression, URG), interrupt-entry-cache staleness and
//! invalidation, and faults (entry not present, source-ID mismatch, blocked compatibility
//! format, descriptor outside memory) recorded and signalled through the fault event.
//! `x2apic` on the command line selects x2APIC mode and extended interrupt mode.
#![no_std]
#![no_main]

use postbox_guest::apic;
use postbox_guest::smp::{self, count};
use postbox_guest::testdev::send_msi;
use postbox_guest::testing::{has_flag, spin, wait_until, Checks};
use postbox_guest::vtd::{self, *};
use postbox_guest::{entry, BootInfo};

entry!(elf64, main);

/// Requester ID of the test device's MSIs: bus 1, device 0, function 0.
const RID: u16 = 0x0100;
const NOTIFICATION_VECTOR: u8 = 0xf2;
const WAKEUP_VECTOR: u8 = 0xf1;
const FAULT_VECTOR: u8 = 0x70;
const QUIET: u64 = 50_000_000;

static PID0: Descriptor = Descriptor::new();
static PID1: Descriptor = Descriptor::new();
static PID_NOWHERE: Descriptor = Descriptor::new();

fn post_irte(index: usize, vector: u8, pid: &Descriptor, urgent: bool) {
    let (lo, hi) = posted_irte(vector, pid.address(), urgent);
    set_irte(index, lo, hi);
}

fn msi(index: u16, rid: u16) {
    send_msi(remappable_address(index), 0, rid, 1);
}

/// Finds a recorded fault with `reason`, returns (index field, source ID), and clears it.
fn take_fault(reason: u8) -> Option<(u64, u64)> {
    let nfr = ((read64(REG_CAP) >> 40) & 0xff) + 1;
    for i in 0..nfr {
        let (lo, hi) = fault_record(i);
        if hi & FRCD_F != 0 && ((hi >> 32) & 0xff) as u8 == reason {
            clear_fault(i);
            return Some((lo >> 48, hi & 0xffff));
        }
    }
    None
}

fn main(info: &BootInfo) -> u32 {
    let x2apic = has_flag(info, "x2apic");
    let mut c = Checks::default();
    if x2apic {
        let _ = apic::enable_x2apic();
    }
    let _ = apic::software_enable();
    c.check("AP 1 online", smp::start_ap_like_bsp());

    c.check(
        "CAP advertises posted interrupts",
        read64(REG_CAP) & CAP_PI != 0,
    );
    c.check(
        "ECAP advertises IR, QI and EIM",
        read64(REG_ECAP) & (ECAP_IR | ECAP_QI | ECAP_EIM) == ECAP_IR | ECAP_QI | ECAP_EIM,
    );
    let enabled = vtd::enable(x2apic, false);
    if let Err(e) = enabled {
        postbox_guest::println!("enable failed: {}", e);
    }
    c.check("interrupt remapping enabled", enabled.is_ok());
    write32(REG_FEDATA, u32::from(FAULT_VECTOR));
    write32(REG_FEADDR, 0xfee0_0000);
    write32(REG_FECTL, 0);

    // Compatibility format passes while CFI is set, except in extended interrupt mode, where
    // it is always blocked (VT-d §5.1.4).
    let faults = count(0, FAULT_VECTOR);
    send_msi(0xfee0_0000, 0x48, RID, 1);
    if x2apic {
        c.check(
            "compatibility-format MSI blocked in EIM mode",
            wait_until(|| count(0, FAULT_VECTOR) == faults + 1),
        );
        c.check(
            "fault 0x25 recorded in EIM mode",
            take_fault(0x25).is_some() && count(0, 0x48) == 0,
        );
    } else {
        c.check(
            "compatibility-format MSI passes with CFI set",
            wait_until(|| count(0, 0x48) == 1),
        );
    }
    let compat_delivered = count(0, 0x48);

    // Remapped IRTEs.
    set_irte(1, remapped_irte(0x50, 0, x2apic), 0);
    set_irte(2, remapped_irte(0x51, 1, x2apic), 0);
    invalidate_iec();
    msi(1, RID);
    c.check(
        "remapped IRTE delivers its vector",
        wait_until(|| count(0, 0x50) == 1),
    );
    msi(2, RID);
    c.check(
        "remapped IRTE wakes a halted vCPU",
        wait_until(|| count(1, 0x51) == 1),
    );
    send_msi(remappable_address(0) | (1 << 3), 1, RID, 1);
    c.check(
        "sub-handle selects handle + data",
        wait_until(|| count(0, 0x50) == 2),
    );

    // Interrupt entry cache: a changed IRTE is not seen until invalidated.
    set_irte(1, remapped_irte(0x53, 0, x2apic), 0);
    msi(1, RID);
    c.check(
        "a stale cached IRTE is still used",
        wait_until(|| count(0, 0x50) == 3) && count(0, 0x53) == 0,
    );
    invalidate_iec();
    msi(1, RID);
    c.check(
        "after IEC invalidation the new IRTE is used",
        wait_until(|| count(0, 0x53) == 1),
    );

    // Posted: the notification vector makes the vCPU process the descriptor.
    PID0.init(NOTIFICATION_VECTOR, 0, x2apic);
    PID1.init(NOTIFICATION_VECTOR, 1, x2apic);
    post_irte(3, 0x60, &PID0, false);
    post_irte(4, 0x61, &PID1, false);
    invalidate_iec();
    msi(3, RID);
    c.check("posted vector arrives", wait_until(|| count(0, 0x60) == 1));
    c.check(
        "no notification-vector interrupt reaches the guest",
        count(0, NOTIFICATION_VECTOR) == 0,
    );
    c.check(
        "ON and PIR are clear after processing",
        !PID0.on() && PID0.pir_empty(),
    );
    msi(4, RID);
    c.check(
        "posted interrupt wakes a halted vCPU",
        wait_until(|| count(1, 0x61) == 1),
    );

    // A wake-up vector as NV: delivered as an ordinary interrupt, the request stays in PIR.
    PID0.init(WAKEUP_VECTOR, 0, x2apic);
    msi(3, RID);
    c.check(
        "a non-notification NV is delivered as itself",
        wait_until(|| count(0, WAKEUP_VECTOR) == 1),
    );
    c.check(
        "the posted request waits in PIR with ON set",
        PID0.pir_bit(0x60) && PID0.on(),
    );

    // SN suppresses; URG overrides.
    PID0.init(NOTIFICATION_VECTOR, 0, x2apic);
    PID0.set_sn(true);
    msi(3, RID);
    spin(QUIET);
    c.check(
        "SN suppresses the notification",
        count(0, 0x60) == 1 && !PID0.on(),
    );
    c.check("the suppressed request is in PIR", PID0.pir_bit(0x60));
    post_irte(5, 0x62, &PID0, true);
    invalidate_iec();
    msi(5, RID);
    c.check(
        "URG notifies despite SN",
        wait_until(|| count(0, 0x62) == 1),
    );
    c.check(
        "processing also delivers the earlier suppressed request",
        wait_until(|| count(0, 0x60) == 2),
    );
    PID0.set_sn(false);

    // Faults, recorded and signalled with the fault event.
    let faults = count(0, FAULT_VECTOR);
    msi(9, RID);
    c.check(
        "entry-not-present raises the fault event",
        wait_until(|| count(0, FAULT_VECTOR) == faults + 1),
    );
    c.check(
        "fault 0x22 recorded with index and source ID",
        take_fault(0x22) == Some((9, u64::from(RID))),
    );

    set_irte(6, remapped_irte(0x52, 0, x2apic), IRTE_SVT_SID | 0x0200);
    invalidate_iec();
    msi(6, RID);
    c.check(
        "source-ID mismatch raises the fault event",
        wait_until(|| count(0, FAULT_VECTOR) == faults + 2),
    );
    c.check(
        "fault 0x26 recorded",
        take_fault(0x26) == Some((6, u64::from(RID))),
    );
    msi(6, 0x0200);
    c.check(
        "the right source ID is delivered",
        wait_until(|| count(0, 0x52) == 1),
    );

    let (lo, hi) = posted_irte(0x63, 0x7_0000_0000, false);
    set_irte(7, lo, hi);
    invalidate_iec();
    msi(7, RID);
    c.check(
        "a descriptor outside memory faults",
        wait_until(|| count(0, FAULT_VECTOR) == faults + 3),
    );
    c.check("fault 0x27 recorded", take_fault(0x27).is_some());

    // A notification to an APIC that does not exist goes nowhere; the VM stays responsive.
    PID_NOWHERE.init(NOTIFICATION_VECTOR, 200, x2apic);
    post_irte(8, 0x64, &PID_NOWHERE, false);
    invalidate_iec();
    msi(8, RID);
    msi(1, RID);
    c.check(
        "VM responsive after a notification to a missing APIC",
        wait_until(|| count(0, 0x53) == 2),
    );
    c.check(
        "nothing delivered for it",
        count(0, 0x64) == 0 && count(1, 0x64) == 0,
    );

    // Compatibility format blocked once CFI is cleared.
    let status = read32(REG_GSTS) & ((1 << 31) | G_QIE | G_IRE);
    write32(REG_GCMD, status);
    c.check("CFI cleared", wait_until(|| read32(REG_GSTS) & G_CFI == 0));
    send_msi(0xfee0_0000, 0x48, RID, 1);
    c.check(
        "blocked compatibility MSI raises the fault event",
        wait_until(|| count(0, FAULT_VECTOR) == faults + 4),
    );
    c.check("fault 0x25 recorded", take_fault(0x25).is_some());
    c.check(
        "the blocked MSI was not delivered",
        count(0, 0x48) == compat_delivered,
    );
    c.finish()
}
