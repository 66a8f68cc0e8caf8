//! The interrupt entry cache (IEC): decoded IRTEs the remapping hardware keeps, so that
//! a changed entry in memory is not seen until software invalidates it. VT-d
//! specification chapter 6 ("Interrupt Entry Cache") and §6.5.2.7 (IEC invalidate descriptor:
//! global, or index-selective over 2^IM entries starting at IIDX).
//!
//! Direct-mapped: slot = index mod `IEC_SLOTS`, tagged with the full index.

use crate::irte::DecodedIrte;

/// Number of cache slots.
pub const IEC_SLOTS: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The cached interrupt index, or `u32::MAX` when empty.
    tag: u32,
    entry: Option<DecodedIrte>,
}

const EMPTY: Slot = Slot {
    tag: u32::MAX,
    entry: None,
};

/// The interrupt entry cache.
#[derive(Debug)]
pub struct InterruptEntryCache {
    slots: Box<[Slot]>,
    valid: usize,
}

impl Default for InterruptEntryCache {
    fn default() -> Self {
        Self {
            slots: vec![EMPTY; IEC_SLOTS].into_boxed_slice(),
            valid: 0,
        }
    }
}

impl InterruptEntryCache {
    /// The cached entry for `index`, if any.
    #[inline]
    pub fn lookup(&self, index: u32) -> Option<&DecodedIrte> {
        let slot = &self.slots[index as usize % IEC_SLOTS];
        if slot.tag == index {
            slot.entry.as_ref()
        } else {
            None
        }
    }

    /// Caches `entry` for `index`, evicting whatever shared its slot.
    pub fn insert(&mut self, index: u32, entry: DecodedIrte) {
        let slot = &mut self.slots[index as usize % IEC_SLOTS];
        if slot.entry.is_none() {
            self.valid += 1;
        }
        *slot = Slot {
            tag: index,
            entry: Some(entry),
        };
    }

    /// Global invalidation.
    pub fn invalidate_all(&mut self) {
        if self.valid != 0 {
            self.slots.fill(EMPTY);
            self.valid = 0;
        }
    }

    /// Index-selective invalidation: the 2^`mask` entries whose index matches `index` in
    /// every bit above the low `mask` bits.
    pub fn invalidate_indices(&mut self, index: u16, mask: u8) {
        if mask >= 16 {
            return self.invalidate_all();
        }
        let count = 1u32 << mask;
        let first = u32::from(index) & !(count - 1);
        if count as usize >= IEC_SLOTS {
            for slot in self.slots.iter_mut() {
                if slot.entry.is_some() && slot.tag >= first && slot.tag - first < count {
                    *slot = EMPTY;
                    self.valid -= 1;
                }
            }
        } else {
            for i in first..first + count {
                let slot = &mut self.slots[i as usize % IEC_SLOTS];
                if slot.tag == i && slot.entry.is_some() {
                    *slot = EMPTY;
                    self.valid -= 1;
                }
            }
        }
    }

    /// Number of valid entries.
    pub fn len(&self) -> usize {
        self.valid
    }

    pub fn is_empty(&self) -> bool {
        self.valid == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irte::Irte;

    fn entry(v: u8) -> DecodedIrte {
        Irte::posted_entry(v, false, 0x1000).decode(true).unwrap()
    }

    #[test]
    fn index_mask_covers_aligned_block() {
        let mut c = InterruptEntryCache::default();
        for i in 0..16 {
            c.insert(i, entry(i as u8));
        }
        // IIDX 5, IM 2: indices 4..=7.
        c.invalidate_indices(5, 2);
        for i in 0..16 {
            assert_eq!(c.lookup(i).is_some(), !(4..8).contains(&i), "index {i}");
        }
        assert_eq!(c.len(), 12);
        // A large mask walks the slots instead.
        c.insert(5000, entry(1));
        c.invalidate_indices(4096, 12);
        assert!(c.lookup(5000).is_none());
        assert!(c.lookup(3).is_some());
        c.invalidate_indices(0, 31);
        assert!(c.is_empty());
    }

    #[test]
    fn aliasing_indices_do_not_hit() {
        let mut c = InterruptEntryCache::default();
        c.insert(3, entry(3));
        c.insert(3 + IEC_SLOTS as u32, entry(4));
        assert!(c.lookup(3).is_none());
        assert_eq!(c.lookup(3 + IEC_SLOTS as u32), Some(&entry(4)));
        assert_eq!(c.len(), 1);
    }
}
