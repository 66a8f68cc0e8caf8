//! Kernel loading: ELF64 bare-metal kernels (entered in long mode) and Multiboot v1 kernels
//! (entered in 32-bit protected mode), with modules and the multiboot information structure,
//! which Postbox hands to both kinds.

pub mod elf;
pub mod multiboot;

use std::path::Path;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::error::{Error, Result};
use crate::layout;

/// How the kernel is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// 64-bit long mode, identity-mapped low 4 GiB, RDI = information, RSI = magic.
    Elf64,
    /// 32-bit protected mode, paging off, EAX = magic, EBX = information.
    Multiboot,
}

#[derive(Clone, Debug)]
pub struct LoadedKernel {
    pub protocol: BootProtocol,
    pub entry: u64,
    /// First byte after the kernel's highest segment.
    pub end: u64,
    pub symbols: elf::Symbols,
}

/// A module handed to the kernel (the `--initrd` file).
pub struct Module<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// Which RAM range of `mem` holds `[start, start + len)` whole, if any.
fn in_ram(mem: &GuestMemoryMmap, start: u64, len: u64) -> bool {
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    if len == 0 {
        return mem.address_in_range(GuestAddress(start));
    }
    mem.iter().any(|r| {
        let base = r.start_addr().0;
        start >= base && end <= base + r.len()
    })
}

fn ram_mib(mem: &GuestMemoryMmap) -> u64 {
    mem.iter().map(|r| r.len()).sum::<u64>() >> 20
}

/// Loads `image` into guest memory.
pub fn load_kernel(mem: &GuestMemoryMmap, image: &[u8], path: &Path) -> Result<LoadedKernel> {
    let bad = |reason: String| Error::BadKernel {
        path: path.to_owned(),
        reason,
    };
    let (protocol, entry, segments) = if let Some(header) = multiboot::find_header(image) {
        let plan = multiboot::plan(image, &header).map_err(bad)?;
        (BootProtocol::Multiboot, plan.entry, plan.segments)
    } else if elf::class(image) == Some(elf::ElfClass::Elf64) {
        let parsed = elf::parse(image).map_err(bad)?;
        (BootProtocol::Elf64, parsed.entry, parsed.segments)
    } else {
        return Err(bad(
            "neither an ELF64 kernel nor a multiboot kernel (no multiboot header in the first 8 KiB)"
                .into(),
        ));
    };
    let mut end = 0;
    for seg in &segments {
        if seg.paddr < layout::BOOT_AREA_END {
            return Err(bad(format!(
                "segment at {:#x} overlaps the loader's boot area (below {:#x})",
                seg.paddr,
                layout::BOOT_AREA_END
            )));
        }
        if !in_ram(mem, seg.paddr, seg.memsz) {
            return Err(Error::DoesNotFit {
                what: format!("kernel {}", path.display()),
                detail: format!(
                    "segment {:#x}..{:#x} is outside {} MiB of RAM",
                    seg.paddr,
                    seg.paddr.saturating_add(seg.memsz),
                    ram_mib(mem)
                ),
            });
        }
        // The parsers checked offset + filesz against the file.
        let data = &image[seg.offset as usize..(seg.offset + seg.filesz) as usize];
        mem.write_slice(data, GuestAddress(seg.paddr))
            .map_err(|e| Error::Memory(e.to_string()))?;
        let zeros = seg.memsz - seg.filesz;
        if zeros > 0 {
            let zero = vec![0u8; zeros as usize];
            mem.write_slice(&zero, GuestAddress(seg.paddr + seg.filesz))
                .map_err(|e| Error::Memory(e.to_string()))?;
        }
        end = end.max(seg.paddr + seg.memsz);
    }
    if !segments
        .iter()
        .any(|s| (s.paddr..s.paddr + s.memsz.max(1)).contains(&entry))
    {
        return Err(bad(format!(
            "entry point {entry:#x} is outside the loaded image"
        )));
    }
    Ok(LoadedKernel {
        protocol,
        entry,
        end,
        symbols: elf::Symbols::from_elf64(image),
    })
}

/// A bump allocator over the information structure's data area.
struct InfoArea {
    next: u64,
}

impl InfoArea {
    fn place(&mut self, mem: &GuestMemoryMmap, bytes: &[u8], what: &str) -> Result<u32> {
        let at = self.next.next_multiple_of(8);
        let end = at + bytes.len() as u64;
        if end > layout::MBI_DATA_END {
            return Err(Error::BadConfig(format!(
                "{what} is too long for the boot information area ({} bytes free)",
                layout::MBI_DATA_END.saturating_sub(at)
            )));
        }
        mem.write_slice(bytes, GuestAddress(at))
            .map_err(|e| Error::Memory(e.to_string()))?;
        self.next = end;
        Ok(at as u32)
    }
}

fn write_u32(mem: &GuestMemoryMmap, addr: u64, v: u32) -> Result<()> {
    mem.write_obj(v, GuestAddress(addr))
        .map_err(|e| Error::Memory(e.to_string()))
}

/// The memory map for `ram_ranges`: conventional memory, the reserved legacy area, and RAM.
pub fn memory_map(ram_ranges: &[(u64, u64)]) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, layout::LOW_RAM_END, multiboot::MMAP_RAM),
        (
            layout::LOW_RAM_END,
            layout::HIGH_MEMORY - layout::LOW_RAM_END,
            multiboot::MMAP_RESERVED,
        ),
    ];
    for &(start, len) in ram_ranges {
        let start_hi = start.max(layout::HIGH_MEMORY);
        let end = start + len;
        if end > start_hi {
            map.push((start_hi, end - start_hi, multiboot::MMAP_RAM));
        }
    }
    map
}

/// Places modules after the kernel (page aligned) and writes the multiboot information
/// structure at `layout::MBI`. Returns its address.
pub fn write_boot_info(
    mem: &GuestMemoryMmap,
    ram_ranges: &[(u64, u64)],
    kernel_end: u64,
    cmdline: &str,
    modules: &[Module],
) -> Result<u64> {
    let mut area = InfoArea {
        next: layout::MBI_DATA,
    };
    let info = layout::MBI;
    let zero = [0u8; multiboot::INFO_SIZE as usize];
    mem.write_slice(&zero, GuestAddress(info))
        .map_err(|e| Error::Memory(e.to_string()))?;
    let mut flags = multiboot::INFO_MEM | multiboot::INFO_MMAP | multiboot::INFO_LOADER_NAME;

    let low_end = ram_ranges.first().map_or(0, |r| r.0 + r.1);
    write_u32(
        mem,
        info + multiboot::INFO_OFF_MEM_LOWER,
        (layout::LOW_RAM_END / 1024) as u32,
    )?;
    write_u32(
        mem,
        info + multiboot::INFO_OFF_MEM_UPPER,
        (low_end.saturating_sub(layout::HIGH_MEMORY) / 1024) as u32,
    )?;

    let mut cstr = cmdline.as_bytes().to_vec();
    cstr.push(0);
    let at = area.place(mem, &cstr, "the command line")?;
    write_u32(mem, info + multiboot::INFO_OFF_CMDLINE, at)?;
    flags |= multiboot::INFO_CMDLINE;

    let at = area.place(mem, b"postbox\0", "the loader name")?;
    write_u32(mem, info + multiboot::INFO_OFF_LOADER_NAME, at)?;

    let mut map = Vec::new();
    for (base, len, kind) in memory_map(ram_ranges) {
        map.extend_from_slice(&multiboot::MMAP_ENTRY_SIZE.to_le_bytes());
        map.extend_from_slice(&base.to_le_bytes());
        map.extend_from_slice(&len.to_le_bytes());
        map.extend_from_slice(&kind.to_le_bytes());
    }
    let at = area.place(mem, &map, "the memory map")?;
    write_u32(mem, info + multiboot::INFO_OFF_MMAP_ADDR, at)?;
    write_u32(
        mem,
        info + multiboot::INFO_OFF_MMAP_LENGTH,
        map.len() as u32,
    )?;

    if !modules.is_empty() {
        let mut next = kernel_end.next_multiple_of(4096);
        let mut entries = Vec::new();
        for m in modules {
            let len = m.bytes.len() as u64;
            if next
                .checked_add(len)
                .is_none_or(|end| end > u64::from(u32::MAX))
                || !in_ram(mem, next, len)
            {
                return Err(Error::DoesNotFit {
                    what: format!("module {}", m.name),
                    detail: format!(
                        "{len} bytes at {next:#x} exceed {} MiB of RAM",
                        ram_mib(mem)
                    ),
                });
            }
            mem.write_slice(m.bytes, GuestAddress(next))
                .map_err(|e| Error::Memory(e.to_string()))?;
            let mut name = m.name.as_bytes().to_vec();
            name.push(0);
            let string = area.place(mem, &name, "a module name")?;
            for w in [next as u32, (next + len) as u32, string, 0] {
                entries.extend_from_slice(&w.to_le_bytes());
            }
            next = (next + len).next_multiple_of(4096);
        }
        let at = area.place(mem, &entries, "the module list")?;
        write_u32(mem, info + multiboot::INFO_OFF_MODS_ADDR, at)?;
        write_u32(
            mem,
            info + multiboot::INFO_OFF_MODS_COUNT,
            modules.len() as u32,
        )?;
        flags |= multiboot::INFO_MODS;
    }
    write_u32(mem, info + multiboot::INFO_OFF_FLAGS, flags)?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(mib: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (mib << 20) as usize)]).unwrap()
    }

    #[test]
    fn elf64_kernel_loads_and_a_too_large_one_is_refused() {
        let mem = memory(4);
        let img = elf::minimal_elf64(0x100000, 0x100000, &[0xf4; 16]);
        let k = load_kernel(&mem, &img, Path::new("k")).unwrap();
        assert_eq!(k.protocol, BootProtocol::Elf64);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x100000)).unwrap(), 0xf4);
        let far = elf::minimal_elf64(0x800000, 0x800000, &[0xf4; 16]);
        assert!(matches!(
            load_kernel(&mem, &far, Path::new("k")),
            Err(Error::DoesNotFit { .. })
        ));
        let low = elf::minimal_elf64(0x7000, 0x7000, &[0xf4; 16]);
        assert!(matches!(
            load_kernel(&mem, &low, Path::new("k")),
            Err(Error::BadKernel { .. })
        ));
    }

    #[test]
    fn boot_info_describes_memory_cmdline_and_modules() {
        let mem = memory(8);
        let ranges = [(0, 8 << 20)];
        let module = [7u8; 5000];
        write_boot_info(
            &mem,
            &ranges,
            0x123456,
            "console=ttyS0",
            &[Module {
                name: "initrd",
                bytes: &module,
            }],
        )
        .unwrap();
        let rd = |off: u64| {
            mem.read_obj::<u32>(GuestAddress(layout::MBI + off))
                .unwrap()
        };
        let flags = rd(multiboot::INFO_OFF_FLAGS);
        assert_eq!(flags & multiboot::INFO_MODS, multiboot::INFO_MODS);
        assert_eq!(rd(multiboot::INFO_OFF_MEM_UPPER), 7 * 1024);
        assert_eq!(rd(multiboot::INFO_OFF_MODS_COUNT), 1);
        let mods = u64::from(rd(multiboot::INFO_OFF_MODS_ADDR));
        let start = mem.read_obj::<u32>(GuestAddress(mods)).unwrap();
        assert_eq!(start, 0x124000, "modules are page aligned after the kernel");
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(u64::from(start) + 4999))
                .unwrap(),
            7
        );
        assert_eq!(memory_map(&ranges).len(), 3);
    }

    #[test]
    fn oversized_module_and_command_line_are_refused() {
        let mem = memory(4);
        let big = vec![0u8; 4 << 20];
        let r = write_boot_info(
            &mem,
            &[(0, 4 << 20)],
            0x200000,
            "",
            &[Module {
                name: "m",
                bytes: &big,
            }],
        );
        assert!(matches!(r, Err(Error::DoesNotFit { .. })));
        let long = "x".repeat(64 * 1024);
        assert!(matches!(
            write_boot_info(&mem, &[(0, 4 << 20)], 0x200000, &long, &[]),
            Err(Error::BadConfig(_))
        ));
    }
}
