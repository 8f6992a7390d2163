//! Lookups on the walker, lockless: what an IPA translates to, the entry
//! at a level, the next hole in a range, whether a range holds tracked
//! pages.

use crate::addr::{Ipa, PhysAddr, PAGE_SIZE};
use crate::desc::{Attrs, Desc};
use crate::geometry::{level_size, Level};
use crate::memory::TableMemory;
use crate::stage2::Stage2;
use crate::tlb::TlbMaintenance;
use crate::walk::{Cursor, Step, Visit, Visitor, WalkError};

/// What an IPA translates to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation {
    /// The output address of the IPA (offset within the page included).
    pub pa: PhysAddr,
    /// Level of the leaf: 1 (1 GiB), 2 (2 MiB) or 3 (4 KiB).
    pub level: Level,
    /// The leaf's attributes.
    pub attrs: Attrs,
    /// The raw leaf descriptor.
    pub desc: Desc,
}

/// Descends to the entry for one IPA at `level` (or, with `None`, to the
/// deepest entry on the path) and keeps it with its level.
struct Lookup {
    level: Option<Level>,
    found: (Level, Desc),
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for Lookup {
    fn pre(&mut self, _: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        self.found = (v.level, v.old);
        let deeper = self.level.is_none_or(|l| v.level < l);
        Ok(if deeper && v.old.is_table(v.level) { Step::Descend } else { Step::Next })
    }
}

/// Finds the first IPA of a range that no leaf maps, and how far the hole
/// goes from there.
struct Hole {
    start: Option<u64>,
    end: u64,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for Hole {
    fn pre(&mut self, _: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        match (self.start, v.old.is_valid()) {
            (None, false) => self.start = Some(v.start),
            // The hole ends at the first mapped entry after it.
            (Some(_), true) => {
                self.end = v.start;
                return Err(WalkError::Pause);
            }
            _ => {}
        }
        Ok(Step::Next)
    }
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<'_, M, T> {
    /// The entry on `ipa`'s path at `level`, or the deepest one before it
    /// when the path ends earlier (an invalid entry or a leaf), with its
    /// level. Lockless: the value may be stale as soon as it is read.
    pub(crate) fn lookup(&self, ipa: Ipa, level: Option<Level>) -> (Level, Desc) {
        let mut l = Lookup { level, found: (self.geo.start_level(), Desc::INVALID) };
        let page = ipa.align_down(PAGE_SIZE).get();
        let mut batch = self.tlb_batch();
        // A lookup writes nothing, so it cannot fail.
        let _ = self.walk_range(page, page + PAGE_SIZE, &mut l, &mut batch);
        l.found
    }

    /// Translates `ipa` by walking the tables locklessly, as the hardware
    /// would (ignoring permissions). `None` if it is not mapped.
    ///
    /// One address, one entry a level: the accessors' steps
    /// (`pgd_offset`, then one level down at a time, as `pud_offset` and
    /// `pmd_offset` do), inside one RCU section. Ranges take the walker.
    pub fn translate(&self, ipa: Ipa) -> Option<Translation> {
        let rcu = self.rcu.read_lock();
        let mut e = self.pgd_offset(&rcu, ipa)?;
        let (level, d) = loop {
            let d = e.read();
            if d.is_leaf(e.level()) {
                break (e.level(), d);
            }
            e = self.entry_below(e)?;
        };
        let off = ipa.get() & (level_size(level) - 1);
        let attrs = d.attrs(&self.geo);
        Some(Translation { pa: PhysAddr(d.addr().get() + off), level, attrs, desc: d })
    }

    /// The first hole of `[ipa, ipa + size)`: `(start, size)` of the first
    /// run of IPAs no leaf maps, or `None` if all of it is mapped. For
    /// populating a range without looking at it page by page. Lockless.
    pub fn next_hole(&self, ipa: Ipa, size: u64) -> Option<(Ipa, u64)> {
        let end = self.check_range(ipa, size).ok()?;
        let mut h = Hole { start: None, end };
        let mut batch = self.tlb_batch();
        let _ = self.walk_until(ipa.get(), end, &mut h, &mut batch);
        h.start.map(|s| (Ipa(s), h.end - s))
    }

    /// Whether this address space maps a tracked page (one the reverse
    /// map records) anywhere in `[ipa, ipa + size)`: such a range keeps
    /// its pages (no block over an alias, no collapse of it).
    pub fn any_tracked(&self, ipa: Ipa, size: u64) -> bool {
        let end = Ipa(ipa.get().saturating_add(size));
        self.rmap.is_some_and(|r| r.next_mapped(self.vmid, ipa, end).is_some())
    }
}
