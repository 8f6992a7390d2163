//! Bookkeeping for `HYP_ALIAS` and `HYP_SHARE` (`docs/HYPERVISOR.md`):
//! the per-VM table of IPAs that are to map another page's frame, and the
//! pin counts that keep such a frame alive until its aliases are gone.
//! Pure data structures, tested on the host; `vm.rs` holds them under its
//! locks and does the mapping.
//!
//! An alias is mapped lazily (the guest's first access to it faults), so
//! between `HYP_ALIAS` and that fault nothing maps the frame at the alias's
//! IPA and the reverse map does not count it. The frame must not be freed
//! meanwhile even if every mapping of it goes: each table entry pins it
//! ([`Pins`]), and a frame is freed only when it is neither mapped nor
//! pinned.

use alloc::vec::Vec;

/// Entries of one VM's alias table (`HYP_ALIAS`/`HYP_SHARE` beyond this
/// fail with NO_MEMORY until an entry goes).
pub const ALIAS_ENTRIES: usize = 16;

/// One alias: the page at `ipa` is to map frame `pa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AliasEntry {
    /// The alias's IPA (a page).
    pub ipa: u64,
    /// The frame it maps.
    pub pa: u64,
}

/// The table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// One VM's aliases: at most [`ALIAS_ENTRIES`], one per IPA.
#[derive(Debug)]
pub struct AliasTable {
    slots: [Option<AliasEntry>; ALIAS_ENTRIES],
}

impl Default for AliasTable {
    fn default() -> Self {
        Self::new()
    }
}

impl AliasTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self { slots: [None; ALIAS_ENTRIES] }
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame the alias at `ipa` maps, if `ipa` is one.
    pub fn get(&self, ipa: u64) -> Option<u64> {
        self.slots.iter().flatten().find(|e| e.ipa == ipa).map(|e| e.pa)
    }

    /// Whether an alias lies in `[base, base + size)`.
    pub fn any_in(&self, base: u64, size: u64) -> bool {
        self.slots.iter().flatten().any(|e| e.ipa.wrapping_sub(base) < size)
    }

    /// Whether [`insert`](Self::insert) at `ipa` would succeed: `ipa` has
    /// an entry (to replace) or there is a free slot.
    pub fn can_insert(&self, ipa: u64) -> bool {
        self.get(ipa).is_some() || self.slots.iter().any(Option::is_none)
    }

    /// Makes `ipa` an alias of `pa`, replacing its entry if it has one;
    /// returns the frame the replaced entry mapped. `Full` changes nothing.
    pub fn insert(&mut self, ipa: u64, pa: u64) -> Result<Option<u64>, Full> {
        if let Some(e) = self.slots.iter_mut().flatten().find(|e| e.ipa == ipa) {
            return Ok(Some(core::mem::replace(&mut e.pa, pa)));
        }
        let free = self.slots.iter_mut().find(|s| s.is_none()).ok_or(Full)?;
        *free = Some(AliasEntry { ipa, pa });
        Ok(None)
    }

    /// Removes the entries in `[base, base + size)` and returns the frames
    /// they mapped (one per entry, so a frame twice if two entries had it).
    pub fn remove_range(&mut self, base: u64, size: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            if let Some(e) = *slot {
                if e.ipa.wrapping_sub(base) < size {
                    out.push(e.pa);
                    *slot = None;
                }
            }
        }
        out
    }
}

/// How many alias entries, over all VMs, refer to each frame.
#[derive(Debug, Default)]
pub struct Pins {
    counts: Vec<(u64, u32)>,
}

impl Pins {
    /// No frame pinned.
    pub const fn new() -> Self {
        Self { counts: Vec::new() }
    }

    /// Entries referring to `pa`.
    pub fn count(&self, pa: u64) -> u32 {
        self.counts.iter().find(|c| c.0 == pa).map_or(0, |c| c.1)
    }

    /// One more entry refers to `pa`.
    pub fn pin(&mut self, pa: u64) {
        match self.counts.iter_mut().find(|c| c.0 == pa) {
            Some(c) => c.1 += 1,
            None => self.counts.push((pa, 1)),
        }
    }

    /// One entry less refers to `pa`; returns whether others still do.
    /// Unpinning a frame that is not pinned is a bookkeeping bug: it is
    /// ignored (and reported as not pinned) rather than underflowing.
    pub fn unpin(&mut self, pa: u64) -> bool {
        let Some(i) = self.counts.iter().position(|c| c.0 == pa) else { return false };
        self.counts[i].1 -= 1;
        if self.counts[i].1 == 0 {
            self.counts.swap_remove(i);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 0x8000_3000;
    const Q: u64 = 0x8000_7000;

    #[test]
    fn table_insert_replace_remove() {
        let mut t = AliasTable::new();
        assert!(t.is_empty());
        assert_eq!(t.insert(0x4100_0000, P), Ok(None));
        assert_eq!(t.insert(0x4110_0000, P), Ok(None));
        assert_eq!(t.get(0x4100_0000), Some(P));
        assert_eq!(t.get(0x4100_1000), None);
        // Replacing returns the old frame and takes no new slot.
        assert_eq!(t.insert(0x4100_0000, Q), Ok(Some(P)));
        assert_eq!(t.len(), 2);
        assert!(t.any_in(0x4100_0000, 0x20_0000));
        assert!(!t.any_in(0x4120_0000, 0x20_0000));
        assert!(!t.any_in(0x4100_1000, 0xf_f000), "the end is exclusive");
        assert!(t.any_in(0x4100_1000, 0xf_f000 + 0x1000));
        let mut gone = t.remove_range(0x4000_0000, 0x1000_0000);
        gone.sort_unstable();
        assert_eq!(gone, [P, Q]);
        assert!(t.is_empty());
        assert!(t.remove_range(0, u64::MAX).is_empty());
    }

    #[test]
    fn full_table_refuses_new_ipas_only() {
        let mut t = AliasTable::new();
        for i in 0..ALIAS_ENTRIES as u64 {
            assert!(t.can_insert(i << 12));
            assert_eq!(t.insert(i << 12, P), Ok(None));
        }
        let new = (ALIAS_ENTRIES as u64) << 12;
        assert!(!t.can_insert(new));
        assert_eq!(t.insert(new, P), Err(Full));
        assert_eq!(t.get(new), None, "a refused insert changes nothing");
        // An IPA that has an entry can still be re-aliased.
        assert!(t.can_insert(0));
        assert_eq!(t.insert(0, Q), Ok(Some(P)));
        assert_eq!(t.len(), ALIAS_ENTRIES);
        // Ranges near the top of the address space do not wrap.
        assert!(!t.any_in(!0xfff_u64, 0x1000));
    }

    #[test]
    fn pins_count_per_frame() {
        let mut p = Pins::new();
        assert_eq!(p.count(P), 0);
        p.pin(P);
        p.pin(P);
        p.pin(Q);
        assert_eq!((p.count(P), p.count(Q)), (2, 1));
        assert!(p.unpin(P), "one entry still pins it");
        assert!(!p.unpin(P));
        assert_eq!(p.count(P), 0);
        assert!(!p.unpin(P), "not pinned: ignored");
        assert_eq!(p.count(Q), 1);
    }
}
