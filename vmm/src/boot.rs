//! The CPU state a kernel is entered with: the boot GDT and identity page tables in guest
//! memory, and the registers of the bootstrap vCPU (Intel SDM vol. 3 §10.8.5, "Initializing
//! IA-32e Mode"; Multiboot §3.2 "Machine state").

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::{Error, Result};
use crate::layout;
use crate::loader::{multiboot, BootProtocol};

/// Boot GDT: null, 64-bit code (0x08), flat data (0x10), flat 32-bit code (0x18).
pub const BOOT_GDT_ENTRIES: [u64; 4] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x00cf_9b00_0000_ffff,
];
pub const SEL_CODE64: u16 = 0x08;
pub const SEL_DATA: u16 = 0x10;
pub const SEL_CODE32: u16 = 0x18;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Page-table entry bits: present, writable, user-accessible (test bodies run at CPL3), and
/// for a page-directory entry, a 2 MiB page.
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_PS: u64 = 1 << 7;
const RFLAGS_RESERVED: u64 = 1 << 1;

/// Writes the boot GDT and the identity map of the low 4 GiB (2 MiB pages).
pub fn write_tables(mem: &GuestMemoryMmap) -> Result<()> {
    let w = |addr: u64, v: u64| {
        mem.write_obj(v, GuestAddress(addr))
            .map_err(|e| Error::Memory(e.to_string()))
    };
    for (i, d) in BOOT_GDT_ENTRIES.iter().enumerate() {
        w(layout::BOOT_GDT + 8 * i as u64, *d)?;
    }
    let table = PTE_P | PTE_RW | PTE_US;
    w(layout::PML4, layout::PDPT | table)?;
    for i in 0..layout::PD_COUNT {
        w(layout::PDPT + 8 * i, (layout::PD + 0x1000 * i) | table)?;
    }
    let mut pd = Vec::with_capacity((512 * layout::PD_COUNT * 8) as usize);
    for i in 0..512 * layout::PD_COUNT {
        pd.extend_from_slice(&((i << 21) | table | PTE_PS).to_le_bytes());
    }
    mem.write_slice(&pd, GuestAddress(layout::PD))
        .map_err(|e| Error::Memory(e.to_string()))
}

fn segment(selector: u16, code: bool, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long && code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Sets the bootstrap vCPU's registers for `protocol`.
pub fn setup_bsp(vcpu: &VcpuFd, protocol: BootProtocol, entry: u64, info: u64) -> Result<()> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
    sregs.gdt.base = layout::BOOT_GDT;
    sregs.gdt.limit = (BOOT_GDT_ENTRIES.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    let mut regs = kvm_regs {
        rflags: RFLAGS_RESERVED,
        rip: entry,
        ..Default::default()
    };
    match protocol {
        BootProtocol::Elf64 => {
            sregs.cs = segment(SEL_CODE64, true, true);
            let data = segment(SEL_DATA, false, true);
            (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
            sregs.cr3 = layout::PML4;
            sregs.cr4 |= CR4_PAE;
            sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
            regs.rdi = info;
            regs.rsi = u64::from(multiboot::BOOTLOADER_MAGIC);
            regs.rsp = layout::BOOT_STACK_TOP;
        }
        BootProtocol::Multiboot => {
            sregs.cs = segment(SEL_CODE32, true, false);
            let data = segment(SEL_DATA, false, false);
            (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
            sregs.cr0 = CR0_PE | CR0_ET | CR0_NE;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rax = u64::from(multiboot::BOOTLOADER_MAGIC);
            regs.rbx = info;
        }
    }
    vcpu.set_sregs(&sregs)
        .map_err(Error::kvm("KVM_SET_SREGS"))?;
    vcpu.set_regs(&regs).map_err(Error::kvm("KVM_SET_REGS"))
}

/// Puts an AP into real mode at the start-up vector's page (SDM vol. 3 §9.4.4.1): CS selector
/// `vector << 8`, base `vector << 12`, IP 0.
pub fn setup_ap_startup(vcpu: &VcpuFd, vector: u8) -> Result<()> {
    let mut sregs = vcpu.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
    sregs.cs.selector = u16::from(vector) << 8;
    sregs.cs.base = u64::from(vector) << 12;
    sregs.cs.limit = 0xffff;
    vcpu.set_sregs(&sregs)
        .map_err(Error::kvm("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(Error::kvm("KVM_SET_REGS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn identity_map_covers_4gib_with_user_pages() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_tables(&mem).unwrap();
        let rd = |a: u64| mem.read_obj::<u64>(GuestAddress(a)).unwrap();
        assert_eq!(rd(layout::PML4), layout::PDPT | 7);
        assert_eq!(rd(layout::PDPT + 24), (layout::PD + 0x3000) | 7);
        let last = layout::PD + 8 * (512 * layout::PD_COUNT - 1);
        assert_eq!(rd(last), 0xffe0_0000 | 0x87);
        assert_eq!(rd(layout::BOOT_GDT + 8), BOOT_GDT_ENTRIES[1]);
    }
}
