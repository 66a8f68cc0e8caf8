//! The guest-physical memory layout Postbox gives every VM.
//!
//! | range                     | what                                              |
//! |---------------------------|---------------------------------------------------|
//! | 0x0500–0x051f             | boot GDT (null, 64-bit code 0x08, data 0x10)      |
//! | 0x7000–0x70ff             | multiboot information structure                   |
//! | 0x7100–0xffff             | its strings, module list and memory map           |
//! | 0x10000–0x15fff           | identity page tables (PML4, PDPT, 4 PDs, 2 MiB)   |
//! | below 0x80000             | initial stack (RSP for ELF64 entry)               |
//! | 0x9fc00–0xfffff           | reserved (EBDA, VGA, BIOS), not RAM               |
//! | 0x100000–                 | kernel, then modules (page aligned)               |
//! | RAM up to 3 GiB           | low RAM                                           |
//! | 0xc0000000–0xffffffff     | MMIO hole: PCI, VT-d 0xfed90000, APIC 0xfee00000  |
//! | 4 GiB–                    | RAM beyond 3 GiB                                  |

pub const BOOT_GDT: u64 = 0x500;
pub const MBI: u64 = 0x7000;
pub const MBI_DATA: u64 = 0x7100;
pub const MBI_DATA_END: u64 = 0x10000;
pub const PML4: u64 = 0x10000;
pub const PDPT: u64 = 0x11000;
pub const PD: u64 = 0x12000;
/// Number of page directories: 4 × 1 GiB of 2 MiB pages, identity-mapping the low 4 GiB.
pub const PD_COUNT: u64 = 4;
pub const BOOT_STACK_TOP: u64 = 0x80000;
/// Everything below this is the loader's: a kernel may not load here.
pub const BOOT_AREA_END: u64 = 0x80000;
/// The end of conventional memory (the EBDA follows).
pub const LOW_RAM_END: u64 = 0x9fc00;
/// Where extended memory starts.
pub const HIGH_MEMORY: u64 = 0x100000;
/// Start of the MMIO hole below 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const FOUR_GIB: u64 = 0x1_0000_0000;

/// Smallest and largest guest memory the VMM accepts, in MiB.
pub const MIN_MEM_MIB: u64 = 4;

/// Guest RAM ranges for `mem_bytes` of memory: low RAM up to the MMIO hole, the rest
/// above 4 GiB.
pub fn ram_ranges(mem_bytes: u64) -> Vec<(u64, u64)> {
    let low = mem_bytes.min(MMIO_HOLE_START);
    let mut ranges = vec![(0, low)];
    if mem_bytes > low {
        ranges.push((FOUR_GIB, mem_bytes - low));
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_above_the_hole_moves_past_4gib() {
        assert_eq!(ram_ranges(64 << 20), vec![(0, 64 << 20)]);
        assert_eq!(
            ram_ranges(4 << 30),
            vec![
                (0, MMIO_HOLE_START),
                (FOUR_GIB, (4 << 30) - MMIO_HOLE_START)
            ]
        );
    }
}
