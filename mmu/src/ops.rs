//! The address-space operations: map, unmap, protect, translate.
//!
//! Each runs in two phases on the generic walker. *Prepare* walks
//! read-only: it checks for conflicts and counts the table pages the
//! change needs (new tables, block splits); those pages are then allocated
//! up front, so running out of memory is found before anything changes.
//! *Commit* walks again and makes the change from the prepared pages.
//! Only a concurrent writer racing on the same range can make commit need
//! more; it then allocates, and if that fails, map rolls back what it
//! installed. A one-page map (the fault path) skips the prepare pass: its
//! only possible failures come before its leaf is written, and the
//! rollback frees the tables it installed.

use crate::addr::{Ipa, PhysAddr, PAGE_SIZE};
use crate::desc::{Attrs, Desc};
use crate::error::Error;
use crate::geometry::{level_size, Level};
use crate::memory::TableMemory;
use crate::stage2::{Stage2, TableList};
use crate::tlb::TlbMaintenance;
use crate::walk::{
    count_new_tables, Cursor, RunCursor, Step, TableCache, Visit, Visitor, WalkError,
};

/// `map` and `protect` leave the contiguous hint alone.
const CONTIGUOUS_REFUSED: Error =
    Error::BadAttributes { why: "the contiguous hint is not managed by map or protect" };

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

/// A leaf an unmap removed: `size()` bytes at `pa`, which were mapped at
/// `ipa` (see [`Stage2::unmap_with`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Leaf {
    /// The IPA the leaf mapped.
    pub ipa: Ipa,
    /// The memory it mapped.
    pub pa: PhysAddr,
    /// Its level: 1 (1 GiB), 2 (2 MiB) or 3 (4 KiB).
    pub level: Level,
    /// Whether the memory is the caller's again: true unless it is a
    /// tracked page (see [`Rmap`](crate::Rmap)) that something else still
    /// maps or holds, whose last reference will own it instead.
    pub owned: bool,
}

impl Leaf {
    /// Bytes the leaf mapped.
    pub fn size(&self) -> u64 {
        level_size(self.level)
    }
}

/// Leaves an unmap removes between two reports: the walk pauses when it
/// has gathered this many, so an unmap of any size holds at most this many
/// (plus the detached tables, linked through their own metadata).
pub const UNMAP_GATHER: usize = 64;

/// The leaves an unmap removed and has not reported yet (Linux's
/// `mmu_gather`): a fixed array, so gathering allocates nothing.
pub(crate) struct LeafGather {
    leaves: [Leaf; UNMAP_GATHER],
    len: usize,
}

impl LeafGather {
    fn new() -> Self {
        let none = Leaf { ipa: Ipa(0), pa: PhysAddr(0), level: 3, owned: false };
        Self { leaves: [none; UNMAP_GATHER], len: 0 }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == UNMAP_GATHER
    }

    pub(crate) fn push(&mut self, leaf: Leaf) {
        self.leaves[self.len] = leaf;
        self.len += 1;
    }

    /// Hands every gathered leaf to `hand` and empties the gather.
    fn report(&mut self, mut hand: impl FnMut(Leaf)) {
        for &leaf in &self.leaves[..self.len] {
            hand(leaf);
        }
        self.len = 0;
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
        let allowed = || {
            matches!(
                (v.level, self.gran),
                (2, Granularity::Largest | Granularity::Max2M) | (1, Granularity::Largest)
            )
        };
        v.level == 3
            || (allowed()
                && s2.geo.leaf_allowed(v.level)
                && v.covers()
                && self.pa_for(v.base) & (v.size() - 1) == 0)
    }

    /// Whether every entry of run `cx` can be one leaf of the mapping.
    fn run_fits<M: TableMemory, T: TlbMaintenance>(&self, cx: &RunCursor<'_, '_, M, T>) -> bool {
        let size = level_size(cx.level);
        let allowed = match cx.level {
            3 => true,
            2 => self.gran != Granularity::Pages,
            1 => self.gran == Granularity::Largest,
            _ => false,
        };
        allowed
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
    /// Entries that will take a leaf need no table: only valid entries
    /// need a closer look, entry by entry.
    fn run(&mut self, cx: &mut RunCursor<'_, '_, M, T>) -> Result<u64, WalkError> {
        if !self.t.run_fits(cx) {
            return Ok(cx.start);
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

/// Unmap and protect, phase 1: blocks the range cuts need splitting.
struct SplitPrepare<'a> {
    needed: usize,
    /// For protect: the new attributes. A block that already has them is
    /// left whole.
    attrs: Option<&'a Attrs>,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for SplitPrepare<'_> {
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        // Only blocks cut by the range's ends need splitting: nothing
        // covered whole does.
        if v.covers() {
            return Ok(Step::Next);
        }
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        let unchanged = self.attrs.is_some_and(|a| v.old.with_attrs(&cx.s2.geo, a) == v.old);
        if v.old.is_leaf(v.level) && !unchanged {
            let partial = |w: &Visit| !w.covers();
            self.needed += 1 + count_new_tables(v.level + 1, v.start, v.end, &partial);
        }
        Ok(Step::Next)
    }
}

/// Unmap, phase 2. Removed leaves are gathered (blocks and pages one by
/// one; whole level-3 tables on the detached list, their leaves in them)
/// and reported once their removal is invalidated; a full gather pauses
/// the walk for that.
struct UnmapCommit {
    cache: TableCache,
    detached: TableList,
    leaves: LeafGather,
}

impl UnmapCommit {
    /// Reports what was removed so far: the gathered leaves, then the
    /// leaves of each level-3 table detached whole. The caller has flushed
    /// the TLB batch.
    fn report<M: TableMemory, T: TlbMaintenance>(
        &mut self,
        s2: &Stage2<'_, M, T>,
        put: &mut dyn FnMut(Leaf),
    ) {
        self.leaves.report(|leaf| s2.hand_over(leaf, put));
        s2.hand_over_detached(&self.detached, put);
    }
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for UnmapCommit {
    /// Level-2 entries the range covers whole go in one pass.
    fn run(&mut self, cx: &mut RunCursor<'_, '_, M, T>) -> Result<u64, WalkError> {
        if cx.level != 2 || !cx.covers_entries() {
            return Ok(cx.start);
        }
        cx.clear_covered(&mut self.detached, &mut self.leaves)
    }

    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            // A level-3 table the range covers whole goes in one piece.
            if v.level == 2 && v.covers() {
                cx.detach_leaf_table(v.old, &mut self.detached)?;
                return Ok(Step::Next);
            }
            return Ok(Step::Descend);
        }
        if !v.old.is_valid() {
            return Ok(Step::Next);
        }
        if v.covers() {
            let leaf = v.old.is_leaf(v.level);
            if leaf && self.leaves.is_full() {
                return Err(WalkError::Pause);
            }
            cx.write(v.old, Desc::INVALID)?;
            if leaf {
                let (ipa, pa) = (Ipa(v.base), v.old.addr());
                self.leaves.push(Leaf { ipa, pa, level: v.level, owned: true });
            }
            return Ok(Step::Next);
        }
        cx.split(v.old, &mut self.cache)?;
        Ok(Step::Descend)
    }

    fn post(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<(), WalkError> {
        cx.free_if_empty(v.old, &mut self.detached)
    }
}

/// Protect, phase 2.
struct ProtectCommit<'a> {
    attrs: &'a Attrs,
    cache: TableCache,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for ProtectCommit<'_> {
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        if !v.old.is_leaf(v.level) {
            return Ok(Step::Next);
        }
        let new = v.old.with_attrs(&cx.s2.geo, self.attrs);
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
        if size == PAGE_SIZE {
            if let Some(installed) = self.map_page_fast(&t, ipa) {
                if installed? {
                    // Let table walks see the new entry before the guest
                    // retries.
                    self.tlb.sync_tables();
                }
                return Ok(());
            }
        }
        let mut batch = self.tlb_batch();

        // One leaf (the fault path): a failure can only come before the
        // leaf is written, and the rollback below frees any table the
        // commit installed, so the prepare pass is not needed.
        let cache = if size == PAGE_SIZE {
            TableCache::default()
        } else {
            let mut prep = MapPrepare { t: &t, needed: 0 };
            self.walk(ipa.get(), end, &mut prep, &mut batch)?;
            if let Some(r) = self.rmap {
                r.check_room(self.vmid, ipa, pa, size)?;
            }
            TableCache::fill(self, prep.needed)?
        };

        let mut commit = MapCommit { t: &t, cache, done: ipa.get(), wrote: false };
        let result = self.walk(ipa.get(), end, &mut commit, &mut batch);
        commit.cache.release(self);
        if result.is_err() {
            let clear_until = commit.done;
            let mut undo = MapRollback { t: &t, clear_until, detached: TableList::default() };
            // Removing leaves and empty tables allocates nothing: it cannot
            // fail.
            let _ = self.walk(ipa.get(), end, &mut undo, &mut batch);
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
    fn map_page_fast(&self, t: &Target, ipa: Ipa) -> Option<Result<bool, Error>> {
        let rcu = self.rcu.read_lock();
        let pmd = self.pmd_lookup(&rcu, ipa)?;
        let mut pte = self.pte_offset_map_lock(&pmd)?;
        let new = t.leaf_at(3, ipa.get());
        Some(match pte.install_checked(ipa, new) {
            Ok(()) => Ok(true),
            Err(Error::AlreadyMapped { existing, .. }) if existing == new => Ok(false),
            Err(e) => Err(e),
        })
    }

    /// Unmaps `[ipa, ipa + size)`, splitting blocks the range cuts, and
    /// frees tables left empty (after a grace period). Unmapped holes are
    /// skipped. On return every removed entry has been invalidated in the
    /// TLBs, so the caller may reuse the pages. [`Stage2::unmap_with`]
    /// says which leaves went.
    pub fn unmap(&self, ipa: Ipa, size: u64) -> Result<(), Error> {
        self.unmap_with(ipa, size, &mut |_| {})
    }

    /// [`Stage2::unmap`], handing every leaf it removes to `put` (Linux's
    /// `put_page` after `zap_pte_range`): a block as one leaf, a page as
    /// one, each exactly once. A leaf is handed over only after its
    /// removal has been invalidated in the TLBs and forgotten by the
    /// reverse map, and outside every page-table lock and RCU section, so
    /// `put` may free or reuse its memory at once when [`Leaf::owned`]
    /// says it is the caller's (it must not call back into this address
    /// space's unmap on the same range). With a reverse map, a tracked page
    /// still mapped or held elsewhere comes with `owned` false: the one
    /// that drops its last reference gets it, exactly once.
    ///
    /// Bounded memory, whatever the range: the walk gathers at most
    /// [`UNMAP_GATHER`] leaves, then stops, flushes the TLB batch, reports
    /// them and resumes. Level-3 tables the range covers whole are detached
    /// in one piece and their leaves reported from the detached table.
    ///
    /// If the unmap fails part way (`OutOfMemory`: a concurrent change made
    /// it split more blocks than it prepared for), what it removed before
    /// failing is still reported.
    pub fn unmap_with(&self, ipa: Ipa, size: u64, put: &mut dyn FnMut(Leaf)) -> Result<(), Error> {
        let end = self.check_range(ipa, size)?;
        let mut batch = self.tlb_batch();
        let mut prep = SplitPrepare { needed: 0, attrs: None };
        self.walk(ipa.get(), end, &mut prep, &mut batch)?;
        let cache = TableCache::fill(self, prep.needed)?;

        let mut commit =
            UnmapCommit { cache, detached: TableList::default(), leaves: LeafGather::new() };
        let mut from = ipa.get();
        let result = loop {
            let (reached, result) = self.walk_until(from, end, &mut commit, &mut batch);
            // Invalidate before the leaves go back to the caller and the
            // detached tables can be freed and reused.
            batch.flush();
            commit.report(self, put);
            self.defer_free(&mut commit.detached);
            match result {
                Ok(()) if reached < end => {
                    debug_assert!(reached > from, "a paused unmap makes progress");
                    from = reached;
                }
                done => break done,
            }
        };
        commit.cache.release(self);
        drop(batch);
        self.reclaim();
        result
    }

    /// Sets the attributes of every mapped leaf in `[ipa, ipa + size)` to
    /// `attrs`, splitting blocks the range cuts. Permission-only changes are
    /// made in place; memory-type or shareability changes use
    /// break-before-make. Unmapped holes are skipped.
    pub fn protect(&self, ipa: Ipa, size: u64, attrs: &Attrs) -> Result<(), Error> {
        let end = self.check_range(ipa, size)?;
        attrs.validate(&self.geo)?;
        if attrs.contiguous {
            return Err(CONTIGUOUS_REFUSED);
        }
        let mut batch = self.tlb_batch();
        let mut prep = SplitPrepare { needed: 0, attrs: Some(attrs) };
        self.walk(ipa.get(), end, &mut prep, &mut batch)?;
        let cache = TableCache::fill(self, prep.needed)?;

        let mut commit = ProtectCommit { attrs, cache };
        let result = self.walk(ipa.get(), end, &mut commit, &mut batch);
        commit.cache.release(self);
        batch.flush();
        drop(batch);
        self.reclaim();
        result
    }

    /// Translates `ipa` by walking the tables locklessly, as the hardware
    /// would (ignoring permissions). `None` if it is not mapped.
    pub fn translate(&self, ipa: Ipa) -> Option<Translation> {
        if ipa.get() >= self.geo.ipa_limit() {
            return None;
        }
        let _rcu = self.rcu.read_lock();
        let mut table = self.root;
        let mut level = self.geo.start_level();
        loop {
            let (slot, _) = self.slot(table, self.geo.index(level, ipa.get()));
            let d = Desc::from_bits(crate::rcu::load_entry(slot));
            if d.is_table(level) {
                table = d.addr();
                level += 1;
                continue;
            }
            if !d.is_leaf(level) {
                return None;
            }
            let off = ipa.get() & (crate::geometry::level_size(level) - 1);
            let attrs = d.attrs(&self.geo);
            return Some(Translation { pa: PhysAddr(d.addr().get() + off), level, attrs, desc: d });
        }
    }
}
