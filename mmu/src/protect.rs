//! Permission and attribute changes: over a range ([`Stage2::protect`],
//! [`Stage2::write_protect`]), on the one leaf a permission fault hit
//! ([`Stage2::relax_perms`]), and the dirty-logging scan built on them
//! ([`Stage2::dirty_scan`]).

use crate::addr::{Ipa, PAGE_SIZE};
use crate::collapse::SplitPrepare;
use crate::desc::{Attrs, Desc, Exec};
use crate::error::Error;
use crate::geometry::Level;
use crate::map::{Granularity, CONTIGUOUS_REFUSED};
use crate::memory::TableMemory;
use crate::stage2::Stage2;
use crate::tlb::TlbMaintenance;
use crate::walk::{Cursor, Step, TableCache, Visit, Visitor, WalkError};

/// Permissions [`Stage2::relax_perms`] adds to a leaf.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Perms {
    /// Read (`S2AP[0]`).
    pub read: bool,
    /// Write (`S2AP[1]`).
    pub write: bool,
    /// Execute at EL1 and EL0.
    pub exec: bool,
}

/// Protect, phase 2: every leaf in range becomes `change(leaf)`; blocks
/// the range cuts are split first.
struct ChangeCommit<'a> {
    change: &'a dyn Fn(Desc) -> Desc,
    cache: TableCache,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for ChangeCommit<'_> {
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        if !v.old.is_leaf(v.level) {
            return Ok(Step::Next);
        }
        let new = (self.change)(v.old);
        if new == v.old {
            return Ok(Step::Next);
        }
        if v.covers() {
            cx.write(v.old, new)?;
            return Ok(Step::Next);
        }
        cx.split(v.old, &mut self.cache)?;
        Ok(Step::Descend)
    }
}

/// `relax_perms`: descends to the leaf for one IPA, splits blocks above
/// the granularity asked for, and adds permissions to the leaf in place.
struct Relax {
    add: Perms,
    gran: Granularity,
    cache: TableCache,
    /// The level of the leaf relaxed.
    done: Option<Level>,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for Relax {
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        if !v.old.is_leaf(v.level) {
            return Err(WalkError::Fail(Error::NotMapped { ipa: Ipa(v.start) }));
        }
        if !self.gran.allows(v.level) {
            cx.split(v.old, &mut self.cache)?;
            return Ok(Step::Descend);
        }
        let geo = cx.stage2().geometry();
        let mut a = v.old.attrs(geo);
        a.read |= self.add.read;
        a.write |= self.add.write;
        if self.add.exec {
            a.exec = Exec::All;
        }
        let new = v.old.with_attrs(geo, &a);
        if new != v.old {
            // Permissions only: in place, one invalidation.
            cx.write(v.old, new)?;
        }
        self.done = Some(v.level);
        Ok(Step::Next)
    }
}

/// `dirty_scan`: counts the 4 KiB pages of writable leaves in range.
struct CountWritable(u64);

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for CountWritable {
    fn pre(&mut self, _: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        if v.old.is_leaf(v.level) && v.old.is_writable() {
            self.0 += (v.end - v.start) / PAGE_SIZE;
        }
        Ok(Step::Next)
    }
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<'_, M, T> {
    /// Sets the attributes of every mapped leaf in `[ipa, ipa + size)` to
    /// `attrs`, splitting blocks the range cuts. Permission-only changes are
    /// made in place; memory-type or shareability changes use
    /// break-before-make. Unmapped holes are skipped.
    pub fn protect(&self, ipa: Ipa, size: u64, attrs: &Attrs) -> Result<(), Error> {
        attrs.validate(&self.geo)?;
        if attrs.contiguous {
            return Err(CONTIGUOUS_REFUSED);
        }
        let geo = self.geo;
        self.change_range(ipa, size, &|d| d.with_attrs(&geo, attrs))
    }

    /// Takes write permission away from every mapped leaf in
    /// `[ipa, ipa + size)`, in place (splitting the blocks the range
    /// cuts), the other attributes unchanged: KVM's `wrprotect`, what
    /// starts dirty logging.
    pub fn write_protect(&self, ipa: Ipa, size: u64) -> Result<(), Error> {
        self.change_range(ipa, size, &|d| d.without_write())
    }

    /// Every leaf in the range becomes `change(leaf)`: a prepare pass
    /// counts the splits the range's ends need and allocates their tables,
    /// then one pass changes the leaves.
    fn change_range(
        &self,
        ipa: Ipa,
        size: u64,
        change: &dyn Fn(Desc) -> Desc,
    ) -> Result<(), Error> {
        let end = self.check_range(ipa, size)?;
        let mut batch = self.tlb_batch();
        let mut prep = SplitPrepare { needed: 0, change: Some(change) };
        self.walk_range(ipa.get(), end, &mut prep, &mut batch)?;
        let cache = TableCache::fill(self, prep.needed)?;
        let mut commit = ChangeCommit { change, cache };
        let result = self.walk_range(ipa.get(), end, &mut commit, &mut batch);
        commit.cache.release(self);
        batch.flush();
        drop(batch);
        self.reclaim();
        result
    }

    /// KVM's `relax_perms`, for a permission fault at `ipa`: adds `add` to
    /// the leaf mapping it, in place, with one invalidation, in one walk.
    /// A block larger than `gran` allows is split first, down to the leaf
    /// size `gran` allows (what dirty logging at page granularity wants);
    /// the tables come from the allocator then. Returns the level of the
    /// leaf relaxed.
    ///
    /// Errors: `Unaligned`/`OutOfRange` (`ipa` not a page of the space),
    /// `NotMapped` (nothing maps it), `OutOfMemory` (a split found no
    /// table), with nothing changed.
    pub fn relax_perms(&self, ipa: Ipa, add: Perms, gran: Granularity) -> Result<Level, Error> {
        self.check_page_ipa(ipa)?;
        let mut batch = self.tlb_batch();
        let mut relax = Relax { add, gran, cache: TableCache::default(), done: None };
        let result = self.walk_range(ipa.get(), ipa.get() + PAGE_SIZE, &mut relax, &mut batch);
        relax.cache.release(self);
        batch.flush();
        drop(batch);
        self.reclaim();
        result?;
        relax.done.ok_or(Error::NotMapped { ipa })
    }

    /// Dirty logging: the 4 KiB pages of `[ipa, ipa + size)` mapped
    /// writable (after a [`Stage2::write_protect`], exactly the pages the
    /// guest wrote since, each made writable by [`Stage2::relax_perms`] at
    /// its fault). With `clear`, write-protects the range again, so the
    /// next scan reports what is written from now on (KVM's "get and clear
    /// dirty log"). One walk (two with `clear`), no memory.
    pub fn dirty_scan(&self, ipa: Ipa, size: u64, clear: bool) -> Result<u64, Error> {
        let end = self.check_range(ipa, size)?;
        let mut count = CountWritable(0);
        let mut batch = self.tlb_batch();
        self.walk_range(ipa.get(), end, &mut count, &mut batch)?;
        drop(batch);
        if clear && count.0 != 0 {
            self.write_protect(ipa, size)?;
        }
        Ok(count.0)
    }
}
