//! The Multiboot v1 information structure (Multiboot specification §3.3), which both of
//! Postbox's loaders hand to the guest.

/// `flags` bits.
pub const MBI_MEM: u32 = 1 << 0;
pub const MBI_CMDLINE: u32 = 1 << 2;
pub const MBI_MODS: u32 = 1 << 3;
pub const MBI_MMAP: u32 = 1 << 6;
pub const MBI_LOADER_NAME: u32 = 1 << 9;

/// Memory-map entry type of usable RAM.
pub const MMAP_RAM: u32 = 1;

#[repr(C)]
pub struct BootInfo {
    pub flags: u32,
    pub mem_lower: u32,
    pub mem_upper: u32,
    pub boot_device: u32,
    pub cmdline: u32,
    pub mods_count: u32,
    pub mods_addr: u32,
    pub syms: [u32; 4],
    pub mmap_length: u32,
    pub mmap_addr: u32,
    pub drives_length: u32,
    pub drives_addr: u32,
    pub config_table: u32,
    pub boot_loader_name: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Module {
    pub start: u32,
    pub end: u32,
    pub string: u32,
    pub reserved: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct MemoryRegion {
    pub base: u64,
    pub length: u64,
    pub kind: u32,
}

/// Reads a NUL-terminated string at a physical (identity-mapped) address.
///
/// # Safety
/// `addr` must point to a NUL-terminated string that lives as long as the guest.
unsafe fn c_str(addr: u32) -> &'static str {
    let start = addr as usize as *const u8;
    let mut len = 0;
    while *start.add(len) != 0 && len < 4096 {
        len += 1;
    }
    core::str::from_utf8(core::slice::from_raw_parts(start, len)).unwrap_or("<not utf-8>")
}

impl BootInfo {
    pub fn cmdline(&self) -> Option<&'static str> {
        // SAFETY: the loader's flag says the field is valid.
        (self.flags & MBI_CMDLINE != 0).then(|| unsafe { c_str(self.cmdline) })
    }

    pub fn loader_name(&self) -> Option<&'static str> {
        // SAFETY: as `cmdline`.
        (self.flags & MBI_LOADER_NAME != 0).then(|| unsafe { c_str(self.boot_loader_name) })
    }

    pub fn modules(&self) -> &'static [Module] {
        if self.flags & MBI_MODS == 0 || self.mods_count == 0 {
            return &[];
        }
        // SAFETY: the loader's flag says `mods_addr` holds `mods_count` entries.
        unsafe {
            core::slice::from_raw_parts(
                self.mods_addr as usize as *const Module,
                self.mods_count as usize,
            )
        }
    }

    /// The memory map: entries of `size` (u32), then base, length (u64) and type (u32).
    pub fn memory_map(&self) -> impl Iterator<Item = MemoryRegion> {
        let (mut addr, end) = if self.flags & MBI_MMAP != 0 {
            (
                self.mmap_addr as usize,
                (self.mmap_addr + self.mmap_length) as usize,
            )
        } else {
            (0, 0)
        };
        core::iter::from_fn(move || {
            if addr + 24 > end {
                return None;
            }
            // SAFETY: within the map the loader described; fields are unaligned.
            unsafe {
                let p = addr as *const u8;
                let size = (p as *const u32).read_unaligned() as usize;
                let region = MemoryRegion {
                    base: (p.add(4) as *const u64).read_unaligned(),
                    length: (p.add(12) as *const u64).read_unaligned(),
                    kind: (p.add(20) as *const u32).read_unaligned(),
                };
                addr += size + 4;
                Some(region)
            }
        })
    }
}

impl Module {
    pub fn name(&self) -> &'static str {
        // SAFETY: module strings are NUL-terminated (or 0 for none).
        if self.string == 0 {
            ""
        } else {
            unsafe { c_str(self.string) }
        }
    }

    pub fn bytes(&self) -> &'static [u8] {
        let len = self.end.saturating_sub(self.start) as usize;
        // SAFETY: the loader placed the module there.
        unsafe { core::slice::from_raw_parts(self.start as usize as *const u8, len) }
    }
}
