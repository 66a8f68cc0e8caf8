//! The CPUID the guest sees: KVM's supported set, with each vCPU's APIC ID and the
//! topology of this VM filled in (Intel SDM vol. 2A, CPUID leaves 01H and 0BH).

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
/// Leaf 01H EBX bits 31:24: initial APIC ID; bits 23:16: logical processors per package.
const EBX_APIC_ID_SHIFT: u32 = 24;
const EBX_LOGICAL_COUNT_SHIFT: u32 = 16;
/// Leaf 01H EDX bit 28: HTT (the logical-processor count is valid); bit 9: on-chip APIC.
const EDX_HTT: u32 = 1 << 28;
const EDX_APIC: u32 = 1 << 9;
/// Leaf 01H ECX bit 21: x2APIC; bit 24: TSC-deadline timer.
const ECX_X2APIC: u32 = 1 << 21;
const ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Sets vCPU `index`'s APIC ID (= index) in leaves 01H and 0BH/1FH, and advertises the APIC
/// with x2APIC and TSC-deadline support.
pub fn patch(cpuid: &mut CpuId, index: u32, cpus: u32) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                entry.ebx = (entry.ebx & 0x0000_ffff)
                    | (index << EBX_APIC_ID_SHIFT)
                    | ((cpus.min(255)) << EBX_LOGICAL_COUNT_SHIFT);
                if cpus > 1 {
                    entry.edx |= EDX_HTT;
                }
                // Every backend's APIC (Postbox's model, KVM's LAPIC) has x2APIC mode and
                // the TSC-deadline timer.
                entry.edx |= EDX_APIC;
                entry.ecx |= ECX_X2APIC | ECX_TSC_DEADLINE;
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => entry.edx = index,
            _ => {}
        }
    }
}
