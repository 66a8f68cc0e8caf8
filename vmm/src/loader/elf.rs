//! A small, bounds-checked ELF reader: just what a kernel loader needs (the file header,
//! PT_LOAD program headers, and the symbol table for symbolizing guest addresses).
//! System V gABI, "ELF Header", "Program Header" and "Symbol Table".

use std::ops::Range;

pub const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const STT_FUNC: u8 = 2;
const STT_OBJECT: u8 = 1;
const STT_NOTYPE: u8 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

/// One PT_LOAD segment: `filesz` bytes from `offset` go to physical address `paddr`, and
/// the rest of `memsz` is zero-filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
}

impl Segment {
    pub fn end(&self) -> Option<u64> {
        self.paddr.checked_add(self.memsz)
    }
}

#[derive(Clone, Debug)]
pub struct Elf {
    pub class: ElfClass,
    pub entry: u64,
    pub segments: Vec<Segment>,
}

fn field(bytes: &[u8], at: u64, len: usize) -> Result<&[u8], String> {
    let start = usize::try_from(at).map_err(|_| "offset out of range".to_string())?;
    bytes
        .get(start..start.checked_add(len).ok_or("offset overflow")?)
        .ok_or_else(|| format!("truncated ELF file (needs {len} bytes at offset {at:#x})"))
}

fn u16_at(b: &[u8], at: u64) -> Result<u16, String> {
    Ok(u16::from_le_bytes(field(b, at, 2)?.try_into().unwrap()))
}
fn u32_at(b: &[u8], at: u64) -> Result<u32, String> {
    Ok(u32::from_le_bytes(field(b, at, 4)?.try_into().unwrap()))
}
fn u64_at(b: &[u8], at: u64) -> Result<u64, String> {
    Ok(u64::from_le_bytes(field(b, at, 8)?.try_into().unwrap()))
}

pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(&ELF_MAGIC)
}

/// The class of an ELF image, if `bytes` is one.
pub fn class(bytes: &[u8]) -> Option<ElfClass> {
    if !is_elf(bytes) {
        return None;
    }
    match bytes.get(EI_CLASS) {
        Some(&ELFCLASS32) => Some(ElfClass::Elf32),
        Some(&ELFCLASS64) => Some(ElfClass::Elf64),
        _ => None,
    }
}

/// Parses an x86 executable (ELF32 for EM_386, ELF64 for EM_X86_64), little-endian, ET_EXEC.
pub fn parse(bytes: &[u8]) -> Result<Elf, String> {
    let class = class(bytes).ok_or("not an ELF32 or ELF64 image")?;
    if bytes.get(EI_DATA) != Some(&ELFDATA2LSB) {
        return Err("not a little-endian ELF image".into());
    }
    let e_type = u16_at(bytes, 16)?;
    let machine = u16_at(bytes, 18)?;
    if e_type != ET_EXEC {
        return Err(format!("ELF type {e_type} is not an executable (ET_EXEC)"));
    }
    let (entry, phoff, phentsize, phnum) = match class {
        ElfClass::Elf64 => {
            if machine != EM_X86_64 {
                return Err(format!("ELF64 machine {machine} is not x86-64"));
            }
            (
                u64_at(bytes, 24)?,
                u64_at(bytes, 32)?,
                u16_at(bytes, 54)?,
                u16_at(bytes, 56)?,
            )
        }
        ElfClass::Elf32 => {
            if machine != EM_386 {
                return Err(format!("ELF32 machine {machine} is not i386"));
            }
            (
                u64::from(u32_at(bytes, 24)?),
                u64::from(u32_at(bytes, 28)?),
                u16_at(bytes, 42)?,
                u16_at(bytes, 44)?,
            )
        }
    };
    let min_phentsize = if class == ElfClass::Elf64 { 56 } else { 32 };
    if phnum > 0 && u64::from(phentsize) < min_phentsize {
        return Err(format!("program header size {phentsize} is too small"));
    }
    let mut segments = Vec::new();
    for i in 0..u64::from(phnum) {
        let ph = phoff
            .checked_add(i * u64::from(phentsize))
            .ok_or("program header offset overflow")?;
        if u32_at(bytes, ph)? != PT_LOAD {
            continue;
        }
        let seg = match class {
            ElfClass::Elf64 => Segment {
                offset: u64_at(bytes, ph + 8)?,
                paddr: u64_at(bytes, ph + 24)?,
                filesz: u64_at(bytes, ph + 32)?,
                memsz: u64_at(bytes, ph + 40)?,
            },
            ElfClass::Elf32 => Segment {
                offset: u64::from(u32_at(bytes, ph + 4)?),
                paddr: u64::from(u32_at(bytes, ph + 12)?),
                filesz: u64::from(u32_at(bytes, ph + 16)?),
                memsz: u64::from(u32_at(bytes, ph + 20)?),
            },
        };
        if seg.filesz > seg.memsz {
            return Err(format!("segment {i}: file size exceeds memory size"));
        }
        let file_end = seg.offset.checked_add(seg.filesz);
        if file_end.is_none_or(|end| end > bytes.len() as u64) {
            return Err(format!("segment {i} lies beyond the end of the file"));
        }
        if seg.end().is_none() {
            return Err(format!("segment {i}: address overflow"));
        }
        if seg.memsz > 0 {
            segments.push(seg);
        }
    }
    if segments.is_empty() {
        return Err("no loadable segments".into());
    }
    Ok(Elf {
        class,
        entry,
        segments,
    })
}

impl Elf {
    /// The physical range the segments occupy.
    pub fn extent(&self) -> Range<u64> {
        let start = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let end = self
            .segments
            .iter()
            .filter_map(Segment::end)
            .max()
            .unwrap_or(0);
        start..end
    }
}

/// Function and object symbols of an ELF64 image, for naming guest addresses.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    /// (address, size, name), sorted by address.
    entries: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// Reads `.symtab`; an image without one gives an empty table.
    pub fn from_elf64(bytes: &[u8]) -> Symbols {
        Self::read(bytes).unwrap_or_default()
    }

    fn read(bytes: &[u8]) -> Result<Symbols, String> {
        if class(bytes) != Some(ElfClass::Elf64) {
            return Err("not ELF64".into());
        }
        let shoff = u64_at(bytes, 40)?;
        let shentsize = u64::from(u16_at(bytes, 58)?);
        let shnum = u64::from(u16_at(bytes, 60)?);
        if shentsize < 64 {
            return Err("bad section header size".into());
        }
        let section = |i: u64| -> Result<(u32, u64, u64, u32, u64), String> {
            let sh = shoff.checked_add(i * shentsize).ok_or("overflow")?;
            Ok((
                u32_at(bytes, sh + 4)?,
                u64_at(bytes, sh + 24)?,
                u64_at(bytes, sh + 32)?,
                u32_at(bytes, sh + 40)?,
                u64_at(bytes, sh + 56)?,
            ))
        };
        let mut entries = Vec::new();
        for i in 0..shnum {
            let (kind, offset, size, link, entsize) = section(i)?;
            if kind != SHT_SYMTAB || entsize < 24 {
                continue;
            }
            let (_, str_off, str_size, _, _) = section(u64::from(link))?;
            let strtab = field(bytes, str_off, usize::try_from(str_size).unwrap_or(0))?;
            for s in 0..size / entsize {
                let sym = offset + s * entsize;
                let name_off = u32_at(bytes, sym)? as usize;
                let info = field(bytes, sym + 4, 1)?[0];
                let value = u64_at(bytes, sym + 8)?;
                let sym_size = u64_at(bytes, sym + 16)?;
                if !matches!(info & 0xf, STT_FUNC | STT_OBJECT | STT_NOTYPE) || value == 0 {
                    continue;
                }
                let Some(name) = strtab
                    .get(name_off..)
                    .and_then(|n| n.split(|&b| b == 0).next())
                else {
                    continue;
                };
                if name.is_empty() || name.starts_with(b".") || name.starts_with(b"$") {
                    continue;
                }
                entries.push((value, sym_size, String::from_utf8_lossy(name).into_owned()));
            }
        }
        entries.sort_by_key(|e| e.0);
        Ok(Symbols { entries })
    }

    /// `name+0xoff` for the symbol containing `addr` (or the nearest one below it when sizes
    /// are unknown).
    pub fn describe(&self, addr: u64) -> Option<String> {
        let idx = self
            .entries
            .partition_point(|e| e.0 <= addr)
            .checked_sub(1)?;
        let (start, size, name) = &self.entries[idx];
        if *size != 0 && addr >= start + size {
            return None;
        }
        Some(format!(
            "{:#}+{:#x}",
            rustc_demangle::demangle(name),
            addr - start
        ))
    }
}

/// A minimal ELF64 executable with one PT_LOAD segment of `payload` (plus 16 bytes of BSS)
/// at `paddr`: for tests of loaders and of the VMM's bad-input handling.
#[doc(hidden)]
pub fn minimal_elf64(entry: u64, paddr: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 64 + 56];
    f[..4].copy_from_slice(&ELF_MAGIC);
    f[EI_CLASS] = ELFCLASS64;
    f[EI_DATA] = ELFDATA2LSB;
    f[6] = 1;
    f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
    f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
    f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
    f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
    f[ph + 32..ph + 40].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    f[ph + 40..ph + 48].copy_from_slice(&(payload.len() as u64 + 16).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_executable() {
        let img = minimal_elf64(0x100000, 0x100000, &[0xf4; 8]);
        let elf = parse(&img).unwrap();
        assert_eq!(elf.class, ElfClass::Elf64);
        assert_eq!(elf.entry, 0x100000);
        assert_eq!(elf.extent(), 0x100000..0x100018);
    }

    #[test]
    fn rejects_truncated_and_inconsistent_images() {
        let img = minimal_elf64(0x100000, 0x100000, &[0xf4; 8]);
        for cut in [3, 20, 64, 100, 127] {
            assert!(parse(&img[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = img.clone();
        bad[64 + 32..64 + 40].copy_from_slice(&1000u64.to_le_bytes());
        assert!(parse(&bad).unwrap_err().contains("exceeds memory size"));
        let mut overflow = img.clone();
        overflow[64 + 24..64 + 32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&overflow).is_err());
        assert!(parse(b"not an elf").is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let base = minimal_elf64(0x100000, 0x100000, &[0; 32]);
        for _ in 0..20_000 {
            let mut img = base.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % img.len();
                img[at] = (x >> 32) as u8;
            }
            let _ = parse(&img);
            let _ = Symbols::from_elf64(&img);
        }
    }
}
