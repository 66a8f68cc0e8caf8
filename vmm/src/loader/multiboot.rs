//! Multiboot v1 (the Multiboot Specification 0.6.96, §3.1 "OS image format" and §3.3
//! "Boot information format"): the header a kernel carries, and the information structure
//! the loader hands it.

use super::elf;

pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// EAX on entry.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie, 4-byte aligned, within the image's first 8 KiB.
pub const SEARCH_LIMIT: usize = 8192;

/// Header flags. Bits 0–15 are requirements a loader must meet or refuse the image.
pub const FLAG_PAGE_ALIGN_MODULES: u32 = 1 << 0;
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
pub const FLAG_VIDEO_MODE: u32 = 1 << 2;
pub const FLAG_ADDRESS_FIELDS: u32 = 1 << 16;
const REQUIRED_MASK: u32 = 0xffff;
/// Requirements this loader meets. Video mode information is not provided (like QEMU's
/// loader, a request for it is ignored rather than refused).
const SUPPORTED_REQUIRED: u32 = FLAG_PAGE_ALIGN_MODULES | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE;

/// Information-structure `flags` bits.
pub const INFO_MEM: u32 = 1 << 0;
pub const INFO_CMDLINE: u32 = 1 << 2;
pub const INFO_MODS: u32 = 1 << 3;
pub const INFO_MMAP: u32 = 1 << 6;
pub const INFO_LOADER_NAME: u32 = 1 << 9;

/// Information structure field offsets.
pub const INFO_OFF_FLAGS: u64 = 0;
pub const INFO_OFF_MEM_LOWER: u64 = 4;
pub const INFO_OFF_MEM_UPPER: u64 = 8;
pub const INFO_OFF_CMDLINE: u64 = 16;
pub const INFO_OFF_MODS_COUNT: u64 = 20;
pub const INFO_OFF_MODS_ADDR: u64 = 24;
pub const INFO_OFF_MMAP_LENGTH: u64 = 44;
pub const INFO_OFF_MMAP_ADDR: u64 = 48;
pub const INFO_OFF_LOADER_NAME: u64 = 64;
pub const INFO_SIZE: u64 = 88;
/// A memory-map entry: size (u32, not counting itself), base (u64), length (u64), type (u32).
pub const MMAP_ENTRY_SIZE: u32 = 20;
pub const MMAP_RAM: u32 = 1;
pub const MMAP_RESERVED: u32 = 2;
/// A module entry: mod_start, mod_end, string, reserved (all u32).
pub const MODULE_ENTRY_SIZE: u64 = 16;

/// The a.out-kludge address fields (flag bit 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressFields {
    pub header_addr: u32,
    pub load_addr: u32,
    pub load_end_addr: u32,
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Offset of the header in the image.
    pub offset: usize,
    pub flags: u32,
    pub address: Option<AddressFields>,
}

/// Finds a valid multiboot header (magic + flags + checksum == 0) in the first 8 KiB.
pub fn find_header(image: &[u8]) -> Option<Header> {
    let limit = image.len().min(SEARCH_LIMIT);
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?))
    };
    (0..limit.saturating_sub(11)).step_by(4).find_map(|offset| {
        if word(offset)? != HEADER_MAGIC {
            return None;
        }
        let flags = word(offset + 4)?;
        let checksum = word(offset + 8)?;
        if HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum) != 0 {
            return None;
        }
        let address = if flags & FLAG_ADDRESS_FIELDS != 0 {
            Some(AddressFields {
                header_addr: word(offset + 12)?,
                load_addr: word(offset + 16)?,
                load_end_addr: word(offset + 20)?,
                bss_end_addr: word(offset + 24)?,
                entry_addr: word(offset + 28)?,
            })
        } else {
            None
        };
        Some(Header {
            offset,
            flags,
            address,
        })
    })
}

/// What to copy where, and where to enter, for a multiboot image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    pub entry: u64,
    pub segments: Vec<elf::Segment>,
}

/// Plans the load of a multiboot image: from the header's address fields when flag 16 is
/// set, else from its ELF program headers (ELF32 or ELF64, entered in 32-bit mode).
pub fn plan(image: &[u8], header: &Header) -> Result<LoadPlan, String> {
    let unsupported = header.flags & REQUIRED_MASK & !SUPPORTED_REQUIRED;
    if unsupported != 0 {
        return Err(format!(
            "multiboot header requires unsupported features (flags {unsupported:#x})"
        ));
    }
    if let Some(a) = header.address {
        if a.load_addr > a.header_addr {
            return Err("multiboot header: load_addr is above header_addr".into());
        }
        let file_start = (header.offset as u64)
            .checked_sub(u64::from(a.header_addr - a.load_addr))
            .ok_or("multiboot header: load_addr lies before the start of the file")?;
        let load_end = if a.load_end_addr == 0 {
            u64::from(a.load_addr) + (image.len() as u64 - file_start)
        } else {
            u64::from(a.load_end_addr)
        };
        if load_end < u64::from(a.load_addr) {
            return Err("multiboot header: load_end_addr is below load_addr".into());
        }
        let filesz = load_end - u64::from(a.load_addr);
        if file_start + filesz > image.len() as u64 {
            return Err("multiboot header: load range extends beyond the file".into());
        }
        let mem_end = if a.bss_end_addr == 0 {
            load_end
        } else {
            u64::from(a.bss_end_addr)
        };
        if mem_end < load_end {
            return Err("multiboot header: bss_end_addr is below load_end_addr".into());
        }
        if !(u64::from(a.load_addr)..mem_end.max(u64::from(a.load_addr) + 1))
            .contains(&u64::from(a.entry_addr))
        {
            return Err("multiboot header: entry_addr lies outside the loaded image".into());
        }
        return Ok(LoadPlan {
            entry: u64::from(a.entry_addr),
            segments: vec![elf::Segment {
                paddr: u64::from(a.load_addr),
                offset: file_start,
                filesz,
                memsz: mem_end - u64::from(a.load_addr),
            }],
        });
    }
    if !elf::is_elf(image) {
        return Err("multiboot header has no address fields and the image is not ELF".into());
    }
    let parsed = elf::parse(image)?;
    if parsed.entry > u64::from(u32::MAX) {
        return Err("multiboot ELF entry point is above 4 GiB".into());
    }
    Ok(LoadPlan {
        entry: parsed.entry,
        segments: parsed.segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_words(flags: u32, extra: &[u32]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
        ]
        .iter()
        .chain(extra)
        {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v
    }

    #[test]
    fn aout_kludge_image_is_planned_from_the_header() {
        // Header at file offset 0x40, image loaded at 0x200000 from file offset 0.
        let mut img = vec![0u8; 0x40];
        img.extend(header_words(
            FLAG_ADDRESS_FIELDS | FLAG_MEMORY_INFO,
            &[0x200040, 0x200000, 0x200100, 0x201000, 0x200080],
        ));
        img.resize(0x100, 0x90);
        let h = find_header(&img).unwrap();
        assert_eq!(h.offset, 0x40);
        let plan = plan(&img, &h).unwrap();
        assert_eq!(plan.entry, 0x200080);
        assert_eq!(
            plan.segments,
            vec![elf::Segment {
                paddr: 0x200000,
                offset: 0,
                filesz: 0x100,
                memsz: 0x1000
            }]
        );
    }

    #[test]
    fn bad_checksum_or_late_header_is_not_a_header() {
        let mut img = header_words(0, &[]);
        img[8] ^= 1;
        assert_eq!(find_header(&img), None);
        let mut late = vec![0u8; SEARCH_LIMIT];
        late.extend(header_words(0, &[]));
        assert_eq!(find_header(&late), None);
    }

    #[test]
    fn unsupported_requirements_and_bad_fields_are_refused() {
        let img = header_words(1 << 5, &[]);
        let h = find_header(&img).unwrap();
        assert!(plan(&img, &h).unwrap_err().contains("unsupported"));
        let mut beyond = header_words(
            FLAG_ADDRESS_FIELDS,
            &[0x100000, 0x100000, 0x900000, 0, 0x100000],
        );
        beyond.resize(64, 0);
        let h = find_header(&beyond).unwrap();
        assert!(plan(&beyond, &h).unwrap_err().contains("beyond the file"));
        let no_elf = header_words(0, &[]);
        let h = find_header(&no_elf).unwrap();
        assert!(plan(&no_elf, &h).unwrap_err().contains("not ELF"));
    }
}
