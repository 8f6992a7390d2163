//! Map: `[ipa, ipa + size)` to `[pa, pa + size)` with the largest leaves
//! the granularity, alignment and size allow.
//!
//! It runs in two phases on the walker. *Prepare* walks read-only: it
//! checks for conflicts, counts the table pages the map needs and checks
//! the reverse map has room; those pages are then allocated up front, so
//! running out of memory is found before anything changes. *Commit* walks
//! again and makes the change from the prepared pages. Only a concurrent
//! writer racing on the same range can make commit need more; it then
//! allocates, and if that fails, map rolls back what it installed. A
//! one-page map (the fault path) skips the prepare pass: its only possible
//! failures come before its leaf is written, and the rollback frees the
//! tables it installed.

use crate::addr::{Ipa, PhysAddr, PAGE_SIZE};
use crate::desc::{Attrs, Desc};
use crate::error::Error;
use crate::geometry::{level_size, Level};
use crate::memory::TableMemory;
use crate::pgtable::PteMapLock;
use crate::rcu::RcuReadGuard;
use crate::stage2::{Stage2, TableList};
use crate::tlb::TlbMaintenance;
use crate::walk::{
    count_new_tables, Cursor, RunCursor, Step, TableCache, Visit, Visitor, WalkError,
};

/// `map` and `protect` leave the contiguous hint alone.
pub(crate) const CONTIGUOUS_REFUSED: Error =
    Error::BadAttributes { why: "the contiguous hint is not managed by map or protect" };

/// Page attributes validated and encoded for one regime by
/// [`Stage2::page_prot`] (Linux's `vm_page_prot`), for the fault path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PageProt {
    /// A page descriptor with these attributes and output address 0.
    page: Desc,
    /// The regime it was encoded for.
    geo: crate::geometry::Geometry,
}

impl PageProt {
    /// The attributes.
    pub fn attrs(&self) -> Attrs {
        self.page.attrs(&self.geo)
    }
}

/// Which leaf sizes `map` may use.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Granularity {
    /// The largest block that alignment and size allow (1 GiB, 2 MiB).
    #[default]
    Largest,
    /// At most 2 MiB blocks.
    Max2M,
    /// 4 KiB pages only.
    Pages,
}

impl Granularity {
    /// Whether a leaf at `level` is allowed (level 3 always is).
    #[inline]
    pub const fn allows(self, level: Level) -> bool {
        match level {
            3 => true,
            2 => !matches!(self, Granularity::Pages),
            1 => matches!(self, Granularity::Largest),
            _ => false,
        }
    }
}

/// The mapping `map` builds: `ipa0..` to `pa0..` with fixed attributes.
#[derive(Clone, Copy)]
struct Target {
    ipa0: u64,
    pa0: u64,
    gran: Granularity,
    /// Attribute bits of a page (level 3) and of a block (levels 1-2).
    page_bits: u64,
    block_bits: u64,
}

impl Target {
    fn pa_for(&self, ipa: u64) -> u64 {
        self.pa0 + (ipa - self.ipa0)
    }

    /// Whether entry `v` can be one leaf of the mapping.
    fn leaf_fits<M: TableMemory, T: TlbMaintenance>(
        &self,
        s2: &Stage2<'_, M, T>,
        v: &Visit,
    ) -> bool {
        // Level 3 is always allowed and always aligned: test it first.
        v.level == 3
            || (self.gran.allows(v.level)
                && s2.geo.leaf_allowed(v.level)
                && v.covers()
                && self.pa_for(v.base) & (v.size() - 1) == 0)
    }

    /// Whether every entry of run `cx` can be one leaf of the mapping.
    fn run_fits<M: TableMemory, T: TlbMaintenance>(&self, cx: &RunCursor<'_, '_, M, T>) -> bool {
        let size = level_size(cx.level);
        self.gran.allows(cx.level)
            && cx.s2.geo.leaf_allowed(cx.level)
            && cx.covers_entries()
            && self.pa_for(cx.base()) & (size - 1) == 0
    }

    /// The leaf this mapping puts at `level` for `ipa`.
    fn leaf_at(&self, level: Level, ipa: u64) -> Desc {
        let bits = if level == 3 { self.page_bits } else { self.block_bits };
        Desc::from_bits(self.pa_for(ipa) | bits)
    }

    /// Whether `cur`, a valid entry at `level` for `ipa`, is exactly the
    /// leaf this mapping would put there.
    fn is_leaf_at(&self, level: Level, ipa: u64, cur: Desc) -> bool {
        cur == self.leaf_at(level, ipa)
    }

    fn leaf(&self, v: &Visit) -> Desc {
        let bits = if v.level == 3 { self.page_bits } else { self.block_bits };
        Desc::from_bits(self.pa_for(v.base) | bits)
    }

    /// Whether the existing leaf `v.old` already maps `v`'s range the way
    /// this mapping would.
    fn same_as_existing(&self, v: &Visit) -> bool {
        let bits = if v.level == 3 { self.page_bits } else { self.block_bits };
        let existing_pa = v.old.addr().get() + (v.start - v.base);
        existing_pa == self.pa_for(v.start) && v.old.attr_bits() == bits
    }
}

/// Map, phase 1: conflicts and the number of tables needed.
struct MapPrepare<'t> {
    t: &'t Target,
    needed: usize,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for MapPrepare<'_> {
    const TAKES_RUNS: bool = true;

    /// Entries that will take a leaf need no table: only valid entries
    /// need a closer look, entry by entry.
    fn run(&mut self, cx: &mut RunCursor<'_, '_, M, T>) -> Result<u64, WalkError> {
        if !self.t.run_fits(cx) {
            return Ok(cx.start);
        }
        // A table page mapping nothing has nothing to conflict with. (The
        // count is read without the lock: the commit checks again.)
        if cx.page_is_empty() {
            return Ok(cx.end);
        }
        let level = cx.level;
        let first =
            cx.entries().find(|&(ipa, d)| d.is_valid() && !self.t.is_leaf_at(level, ipa, d));
        Ok(first.map_or(cx.end, |(ipa, _)| ipa.max(cx.start)))
    }

    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        if v.old.is_valid() {
            return if v.old.is_leaf(v.level) && self.t.same_as_existing(v) {
                Ok(Step::Next)
            } else {
                Err(WalkError::Fail(v.conflict()))
            };
        }
        if !self.t.leaf_fits(cx.s2, v) {
            let needs = |w: &Visit| !self.t.leaf_fits(cx.s2, w);
            self.needed += 1 + count_new_tables(v.level + 1, v.start, v.end, &needs);
        }
        Ok(Step::Next)
    }
}

/// Map, phase 2: install tables and leaves.
struct MapCommit<'t> {
    t: &'t Target,
    cache: TableCache,
    /// Everything below this IPA has been mapped by this call.
    done: u64,
    /// Whether any entry was written.
    wrote: bool,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for MapCommit<'_> {
    const TAKES_RUNS: bool = true;

    /// Fills a run of entries that all take a leaf in one go.
    fn run(&mut self, cx: &mut RunCursor<'_, '_, M, T>) -> Result<u64, WalkError> {
        if !self.t.run_fits(cx) {
            return Ok(cx.start);
        }
        let (t, level) = (self.t, cx.level);
        let pa0 = t.pa_for(cx.base());
        let (reached, wrote) =
            cx.fill(pa0, |ipa| t.leaf_at(level, ipa), |ipa, d| t.is_leaf_at(level, ipa, d))?;
        self.done = reached;
        self.wrote |= wrote;
        Ok(reached)
    }

    #[inline]
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        if v.old.is_valid() {
            return if v.old.is_leaf(v.level) && self.t.same_as_existing(v) {
                self.done = v.end;
                Ok(Step::Next)
            } else {
                Err(WalkError::Fail(v.conflict()))
            };
        }
        if self.t.leaf_fits(cx.s2, v) {
            cx.write(v.old, self.t.leaf(v))?;
            self.done = v.end;
            self.wrote = true;
            return Ok(Step::Next);
        }
        let table = self
            .cache
            .take(cx.s2, v.level + 1)
            .ok_or(WalkError::Fail(Error::OutOfMemory { pages: 1 }))?;
        if let Err(e) = cx.write(v.old, Desc::table(table)) {
            self.cache.put(cx.s2, table);
            return Err(e);
        }
        self.wrote = true;
        Ok(Step::Descend)
    }
}

/// Undoes a failed map: removes the leaves it installed (below
/// `clear_until`) and frees the tables left empty in the whole range.
struct MapRollback<'t> {
    t: &'t Target,
    clear_until: u64,
    detached: TableList,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for MapRollback<'_> {
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        let ours = v.end <= self.clear_until && v.covers() && self.t.same_as_existing(v);
        if v.old.is_leaf(v.level) && ours {
            cx.write(v.old, Desc::INVALID)?;
        }
        Ok(Step::Next)
    }

    fn post(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<(), WalkError> {
        cx.free_if_empty(v.old, &mut self.detached)
    }
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<'_, M, T> {
    /// Checks an IPA range (page aligned, non-empty, inside the IPA space)
    /// and returns its end.
    pub(crate) fn check_range(&self, ipa: Ipa, size: u64) -> Result<u64, Error> {
        Error::check_aligned(ipa.get(), PAGE_SIZE)?;
        Error::check_aligned(size, PAGE_SIZE)?;
        let limit = self.geo.ipa_limit();
        match ipa.get().checked_add(size) {
            Some(end) if size != 0 && end <= limit => Ok(end),
            _ => Err(Error::OutOfRange { start: ipa.get(), size, limit }),
        }
    }

    /// Checks an output range the way [`Stage2::check_range`] checks an
    /// IPA range.
    fn check_output(&self, pa: PhysAddr, size: u64) -> Result<(), Error> {
        Error::check_aligned(pa.get(), PAGE_SIZE)?;
        let limit = self.geo.oa_mask() + PAGE_SIZE;
        match pa.get().checked_add(size) {
            Some(end) if end <= limit => Ok(()),
            _ => Err(Error::OutOfRange { start: pa.get(), size, limit }),
        }
    }

    /// Maps `[ipa, ipa + size)` to `[pa, pa + size)` with `attrs`, using the
    /// largest leaves `gran`, alignment and size allow. Entries already
    /// mapping the same way are left alone; any other existing mapping in
    /// the range is `AlreadyMapped`. No TLB invalidation is needed: only
    /// invalid entries are written.
    ///
    /// The contiguous hint is not managed by this layer yet and is refused.
    ///
    /// With a reverse map ([`Stage2::with_rmap`]), each leaf's tracked
    /// pages are recorded as mapped as it is made (`TooManyMappings`, with
    /// nothing mapped, if one has no room left).
    ///
    /// A map that fails part way (only a concurrent change to the same
    /// range can make it) removes what it installed; an identical mapping
    /// that was there before it goes too.
    pub fn map(
        &self,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
        attrs: &Attrs,
        gran: Granularity,
    ) -> Result<(), Error> {
        if size == PAGE_SIZE {
            return self.map_page(ipa, pa, attrs);
        }
        self.map_walk(ipa, pa, size, attrs, gran)
    }

    /// [`Stage2::map`] of one 4 KiB page: the fault path. Into an existing
    /// level-3 table it is Linux's fault handler: `pmd` look-up,
    /// `pte_offset_map_lock`, a make into the invalid entry; only a
    /// missing table takes the walker.
    #[inline]
    pub fn map_page(&self, ipa: Ipa, pa: PhysAddr, attrs: &Attrs) -> Result<(), Error> {
        self.map_page_prot(ipa, pa, self.page_prot(attrs)?)
    }

    /// `attrs` validated and encoded as a page of this address space's
    /// regime, once: Linux's `vma->vm_page_prot`. A fault handler keeps it
    /// and maps with [`Stage2::map_page_prot`].
    pub fn page_prot(&self, attrs: &Attrs) -> Result<PageProt, Error> {
        attrs.validate(&self.geo)?;
        if attrs.contiguous {
            return Err(CONTIGUOUS_REFUSED);
        }
        Ok(PageProt { page: Desc::leaf(&self.geo, 3, PhysAddr(0), attrs), geo: self.geo })
    }

    /// [`Stage2::map_page`] with attributes encoded once by
    /// [`Stage2::page_prot`] (of this address space, or one of the same
    /// geometry).
    #[inline]
    pub fn map_page_prot(&self, ipa: Ipa, pa: PhysAddr, prot: PageProt) -> Result<(), Error> {
        debug_assert!(prot.geo == self.geo, "a PageProt of another regime");
        let (i, p) = (ipa.get(), pa.get());
        let bad_args =
            (i | p) & (PAGE_SIZE - 1) != 0 || i >= self.geo.ipa_limit() || p > self.geo.oa_mask();
        if bad_args {
            return Err(self.page_refusal(ipa, pa));
        }
        match self.map_page_fast(ipa, prot.page.with_addr(pa)) {
            // Let table walks see the new entry before the guest retries.
            Some(Ok(true)) => self.tlb.sync_tables(),
            Some(Ok(false)) => {}
            Some(Err(e)) => return Err(e),
            None => {
                let attrs = prot.page.attrs(&self.geo);
                return self.map_walk(ipa, pa, PAGE_SIZE, &attrs, Granularity::Pages);
            }
        }
        Ok(())
    }

    /// Why [`Stage2::map_page_prot`]'s quick argument check failed: the
    /// error `map` of a range would give.
    #[cold]
    fn page_refusal(&self, ipa: Ipa, pa: PhysAddr) -> Error {
        match self.check_range(ipa, PAGE_SIZE).and_then(|_| self.check_output(pa, PAGE_SIZE)) {
            Err(e) => e,
            Ok(()) => unreachable!("page_refusal for acceptable arguments"),
        }
    }

    /// [`Stage2::map`] on the walker.
    fn map_walk(
        &self,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
        attrs: &Attrs,
        gran: Granularity,
    ) -> Result<(), Error> {
        let end = self.check_range(ipa, size)?;
        self.check_output(pa, size)?;
        attrs.validate(&self.geo)?;
        if attrs.contiguous {
            return Err(CONTIGUOUS_REFUSED);
        }
        let page = Desc::leaf(&self.geo, 3, PhysAddr(0), attrs);
        let t = Target {
            ipa0: ipa.get(),
            pa0: pa.get(),
            gran,
            page_bits: page.bits(),
            block_bits: page.as_leaf_of(2).bits(),
        };
        let mut batch = self.tlb_batch();

        // One leaf (the fault path): a failure can only come before the
        // leaf is written, and the rollback below frees any table the
        // commit installed, so the prepare pass is not needed.
        let cache = if size == PAGE_SIZE {
            TableCache::default()
        } else {
            let mut prep = MapPrepare { t: &t, needed: 0 };
            self.walk_range(ipa.get(), end, &mut prep, &mut batch)?;
            if let Some(r) = self.rmap {
                r.check_room(self.vmid, ipa, pa, size)?;
            }
            TableCache::fill(self, prep.needed)?
        };

        let mut commit = MapCommit { t: &t, cache, done: ipa.get(), wrote: false };
        let result = self.walk_range(ipa.get(), end, &mut commit, &mut batch);
        commit.cache.release(self);
        if result.is_err() {
            let clear_until = commit.done;
            let mut undo = MapRollback { t: &t, clear_until, detached: TableList::default() };
            // Removing leaves and empty tables allocates nothing: it cannot
            // fail.
            let _ = self.walk_range(ipa.get(), end, &mut undo, &mut batch);
            batch.flush();
            // Their removal invalidated, the mappings are forgotten.
            if let Some(r) = self.rmap {
                r.note_unmap(self.vmid, ipa, clear_until - ipa.get());
            }
            self.defer_free(&mut undo.detached);
        }
        if result.is_ok() && commit.wrote {
            // Let table walks see the new entries before the guest retries.
            self.tlb.sync_tables();
        }
        drop(batch);
        self.reclaim();
        result
    }

    /// The fault path: one page into an existing level-3 table, through
    /// the accessors (`pmd` lookup, `pte_offset_map_lock`, install into an
    /// invalid entry). `None` when the table is not there yet; otherwise
    /// whether an entry was written (not if the same page was there).
    #[inline]
    fn map_page_fast(&self, ipa: Ipa, new: Desc) -> Option<Result<bool, Error>> {
        let rcu = self.rcu.read_lock();
        let pmd = self.pmd_lookup(&rcu, ipa)?;
        let mut pte = self.pte_offset_map_lock(&pmd)?;
        Some(match pte.install_checked(ipa, new) {
            Ok(()) => Ok(true),
            Err(Error::AlreadyMapped { existing, .. }) if existing == new => Ok(false),
            Err(e) => Err(e),
        })
    }

    /// Maps the page `pa` at `ipa` with `attrs` (as `map` of one page) and
    /// returns its level-3 table locked, for work that must happen under
    /// the lock the mapping was made with: Linux's `update_mmu_cache`
    /// contract, which [`make_coherent`](crate::make_coherent) needs. The
    /// same page mapped there already is not an error.
    ///
    /// Errors: as [`Stage2::map`]; `NotATable` when a block maps `ipa`
    /// (the level-2 entry found).
    pub fn map_page_locked<'g>(
        &'g self,
        rcu: &'g RcuReadGuard<'_>,
        ipa: Ipa,
        pa: PhysAddr,
        attrs: &Attrs,
    ) -> Result<PteMapLock<'g, M, T>, Error> {
        self.check_range(ipa, PAGE_SIZE)?;
        self.check_output(pa, PAGE_SIZE)?;
        attrs.validate(&self.geo)?;
        if attrs.contiguous {
            return Err(CONTIGUOUS_REFUSED);
        }
        let new = Desc::leaf(&self.geo, 3, pa, attrs);
        let mut mapped = false;
        loop {
            let table = self.pmd_lookup(rcu, ipa).and_then(|pmd| self.pte_offset_map_lock(&pmd));
            if let Some(mut pte) = table {
                match pte.install_checked(ipa, new) {
                    Ok(()) => self.tlb.sync_tables(),
                    Err(Error::AlreadyMapped { existing, .. }) if existing == new => {}
                    Err(e) => return Err(e),
                }
                return Ok(pte);
            }
            if mapped {
                // Mapped, but no level-3 table holds it: a block does.
                let (level, found) = self.lookup(ipa, Some(2));
                return Err(Error::NotATable { ipa, level, found });
            }
            // No level-3 table yet: the walker builds the path (and maps
            // the page), then the table is locked.
            self.map(ipa, pa, PAGE_SIZE, attrs, Granularity::Pages)?;
            mapped = true;
        }
    }
}
