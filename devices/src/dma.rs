//! Device DMA: every access a device makes to guest memory goes through a
//! [`DmaTranslator`] (identity now; the IOMMU's DMA remapping later) and is then
//! bounds-checked against the VMM's `GuestMemory`. A failed translation or an address
//! outside guest memory aborts the DMA (PCIe Base 4.0 §2.3.2: the completer returns
//! Unsupported Request / the IOMMU blocks it), is counted, and never touches host memory.

use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemory};

/// Why a DMA was aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaError {
    /// The translator refused the I/O virtual address (no mapping / permission).
    Translation { iova: u64 },
    /// The translated address is not backed by guest memory.
    OutOfGuestMemory { gpa: u64 },
    /// The address range wraps around the 64-bit address space.
    Overflow,
}

/// Translates a device's I/O virtual address into a guest-physical address.
///
/// Called once per 4 KiB page touched, with the requester ID of the function issuing the
/// DMA (so an IOMMU can pick the context entry) and whether the access writes memory.
pub trait DmaTranslator: Send + Sync {
    /// Returns the guest-physical address for `iova`, or `None` to abort the access.
    fn translate(&self, requester_id: u16, iova: u64, write: bool) -> Option<u64>;
}

/// DMA remapping disabled: device addresses are guest-physical addresses.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityTranslator;

impl DmaTranslator for IdentityTranslator {
    fn translate(&self, _requester_id: u16, iova: u64, _write: bool) -> Option<u64> {
        Some(iova)
    }
}

/// The device-facing DMA interface: reads and writes of guest memory on behalf of a
/// requester. Object safe, so device models hold an `Arc<dyn DmaSpace>`.
pub trait DmaSpace: Send + Sync {
    fn read(&self, requester_id: u16, iova: u64, buf: &mut [u8]) -> Result<(), DmaError>;
    fn write(&self, requester_id: u16, iova: u64, data: &[u8]) -> Result<(), DmaError>;
    /// Number of DMAs aborted so far.
    fn aborted(&self) -> u64;
}

const PAGE_SIZE: u64 = 4096;

/// The translated pieces of one access, without allocating for the usual few pages.
struct Pieces {
    inline: [(u64, usize); 8],
    n: usize,
    spill: Vec<(u64, usize)>,
}

impl Pieces {
    fn new() -> Self {
        Self {
            inline: [(0, 0); 8],
            n: 0,
            spill: Vec::new(),
        }
    }

    fn last_mut(&mut self) -> Option<&mut (u64, usize)> {
        if !self.spill.is_empty() {
            self.spill.last_mut()
        } else if self.n > 0 {
            Some(&mut self.inline[self.n - 1])
        } else {
            None
        }
    }

    fn push(&mut self, p: (u64, usize)) {
        if self.n < self.inline.len() && self.spill.is_empty() {
            self.inline[self.n] = p;
            self.n += 1;
        } else {
            self.spill.push(p);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.inline[..self.n]
            .iter()
            .chain(self.spill.iter())
            .copied()
    }
}

/// `DmaSpace` over a vm-memory address space (`Arc<GuestMemoryMmap>`,
/// `GuestMemoryAtomic<...>`, `&GuestMemoryMmap`) and a translator.
pub struct GuestDma<M, T> {
    mem: M,
    translator: T,
    aborted: AtomicU64,
}

impl<M: GuestAddressSpace, T: DmaTranslator> GuestDma<M, T> {
    pub fn new(mem: M, translator: T) -> Self {
        Self {
            mem,
            translator,
            aborted: AtomicU64::new(0),
        }
    }

    /// The guest memory (a snapshot guard of the address space).
    pub fn memory(&self) -> M::T {
        self.mem.memory()
    }

    /// Splits `[iova, iova + len)` at page boundaries and translates each piece; the
    /// whole access is checked before any byte moves, so an abort leaves memory intact.
    fn plan(
        &self,
        mem: &M::M,
        rid: u16,
        iova: u64,
        len: usize,
        write: bool,
    ) -> Result<Pieces, DmaError> {
        let len64 = len as u64;
        let mut pieces = Pieces::new();
        if len == 0 {
            return Ok(pieces);
        }
        iova.checked_add(len64 - 1).ok_or(DmaError::Overflow)?;
        let mut done = 0u64;
        while done < len64 {
            let cur = iova + done;
            let in_page = (PAGE_SIZE - (cur % PAGE_SIZE)).min(len64 - done);
            let gpa = self
                .translator
                .translate(rid, cur, write)
                .ok_or(DmaError::Translation { iova: cur })?;
            gpa.checked_add(in_page - 1).ok_or(DmaError::Overflow)?;
            if !mem.check_range(
                GuestAddress(gpa),
                in_page as usize,
                if write {
                    vm_memory::Permissions::Write
                } else {
                    vm_memory::Permissions::Read
                },
            ) {
                return Err(DmaError::OutOfGuestMemory { gpa });
            }
            // Merge with the previous piece when contiguous (the identity case).
            match pieces.last_mut() {
                Some((prev_gpa, prev_len)) if *prev_gpa + *prev_len as u64 == gpa => {
                    *prev_len += in_page as usize
                }
                _ => pieces.push((gpa, in_page as usize)),
            }
            done += in_page;
        }
        Ok(pieces)
    }

    fn abort(&self, e: DmaError) -> DmaError {
        self.aborted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(?e, "DMA aborted");
        e
    }
}

impl<M: GuestAddressSpace + Send + Sync, T: DmaTranslator> DmaSpace for GuestDma<M, T> {
    fn read(&self, rid: u16, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let mem = self.mem.memory();
        let pieces = self
            .plan(&mem, rid, iova, buf.len(), false)
            .map_err(|e| self.abort(e))?;
        let mut off = 0;
        for (gpa, len) in pieces.iter() {
            mem.read_slice(&mut buf[off..off + len], GuestAddress(gpa))
                .map_err(|_| self.abort(DmaError::OutOfGuestMemory { gpa }))?;
            off += len;
        }
        Ok(())
    }

    fn write(&self, rid: u16, iova: u64, data: &[u8]) -> Result<(), DmaError> {
        let mem = self.mem.memory();
        let pieces = self
            .plan(&mem, rid, iova, data.len(), true)
            .map_err(|e| self.abort(e))?;
        let mut off = 0;
        for (gpa, len) in pieces.iter() {
            mem.write_slice(&data[off..off + len], GuestAddress(gpa))
                .map_err(|_| self.abort(DmaError::OutOfGuestMemory { gpa }))?;
            off += len;
        }
        Ok(())
    }

    fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> std::sync::Arc<GuestMemoryMmap> {
        std::sync::Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap())
    }

    #[test]
    fn identity_round_trip_across_pages() {
        let dma = GuestDma::new(mem(), IdentityTranslator);
        let data: Vec<u8> = (0..6000u32).map(|i| i as u8).collect();
        dma.write(0, 0xf00, &data).unwrap();
        let mut back = vec![0; 6000];
        dma.read(0, 0xf00, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(dma.aborted(), 0);
    }

    #[test]
    fn outside_guest_memory_is_aborted_and_counted() {
        let dma = GuestDma::new(mem(), IdentityTranslator);
        // Straddles the end of memory: nothing may be written, not even the first part.
        assert!(dma.write(0, 0xfff0, &[0xaa; 32]).is_err());
        let mut b = [0u8; 16];
        dma.read(0, 0xfff0, &mut b).unwrap();
        assert_eq!(b, [0; 16]);
        assert!(matches!(
            dma.read(0, u64::MAX - 3, &mut [0; 8]),
            Err(DmaError::Overflow)
        ));
        assert_eq!(dma.aborted(), 2);
    }

    struct Deny;
    impl DmaTranslator for Deny {
        fn translate(&self, _: u16, iova: u64, _: bool) -> Option<u64> {
            (iova < 0x1000).then_some(iova)
        }
    }

    #[test]
    fn translation_fault_aborts() {
        let dma = GuestDma::new(mem(), Deny);
        assert_eq!(
            dma.write(7, 0xff0, &[1; 32]),
            Err(DmaError::Translation { iova: 0x1000 })
        );
        let mut b = [0u8; 16];
        dma.read(7, 0xff0, &mut b).unwrap();
        assert_eq!(b, [0; 16]);
        assert_eq!(dma.aborted(), 1);
    }

    /// Maps IOVA page i to guest page 15 - i: nothing merges, so long transfers use
    /// more pieces than the inline array holds.
    struct Reverse;
    impl DmaTranslator for Reverse {
        fn translate(&self, _: u16, iova: u64, _: bool) -> Option<u64> {
            let page = iova / 4096;
            (page < 16).then(|| (15 - page) * 4096 + iova % 4096)
        }
    }

    #[test]
    fn scattered_translation_round_trip() {
        let dma = GuestDma::new(mem(), Reverse);
        let data: Vec<u8> = (0..12 * 4096 + 100).map(|i| (i % 251) as u8).collect();
        dma.write(0, 100, &data).unwrap();
        let mut back = vec![0; data.len()];
        dma.read(0, 100, &mut back).unwrap();
        assert_eq!(back, data);
        // IOVA page 0 landed in guest page 15.
        let mut direct = [0u8; 4];
        dma.memory()
            .read_slice(&mut direct, GuestAddress(15 * 4096 + 100))
            .unwrap();
        assert_eq!(direct, [0, 1, 2, 3]);
        assert!(dma.write(0, 16 * 4096 - 8, &[0; 16]).is_err());
    }
}
