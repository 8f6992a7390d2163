//! The one table walker every operation uses, and that callers use for
//! their own (KVM's `kvm_pgtable_walk` shape): a [`Visitor`] is called for
//! each entry of a range before descending ([`Visitor::pre`]: leaves,
//! invalid entries and tables alike, KVM's `LEAF | TABLE_PRE`), after the
//! subtree of a table entry ([`Visitor::post`], `TABLE_POST`), and may take
//! a run of entries of one table page in one go ([`Visitor::run`]).
//! [`Stage2::walk`] runs one.
//!
//! What a visitor may do: read every entry it is shown ([`Visit::old`], a
//! lockless read); write the entry it visits through [`Cursor::write`],
//! which takes the page's lock, rechecks the entry and goes through the
//! one write path (break-before-make, counts, reverse map, invalidation);
//! descend; stop the walk for now ([`WalkError::Pause`]) or fail it. It
//! must pass on the cursor's errors (with `?`): they tell the walk to
//! look again at an entry that changed or a table that was detached. It
//! must not start another walk or map, unmap, protect or collapse of this
//! address space from inside a visit (the cursor may hold a table lock),
//! nor sleep (the walk is one RCU read-side section).
//!
//! Locking, the same at every level (see `docs/ARCHITECTURE.md`):
//! - the walk descends locklessly inside one RCU read-side section;
//! - an entry is written only under the lock of the table page holding
//!   it, taken lazily by the [`Cursor`] and kept across consecutive writes
//!   to that page; right after taking it the cursor rechecks that the
//!   parent entry still points at the table (`pmd_same`), exactly as
//!   `pte_offset_map_lock` does; if not, the table was detached and the
//!   walk resumes from the root;
//! - the lock is dropped before descending, so a walker holds one table
//!   lock at a time, except when detaching a child, which takes the
//!   parent's lock and then the child's (parent before child, always).
//!
//! A table is only ever detached when it holds no table entries (it is
//! empty, or all leaves being collapsed), and detaching needs its lock.
//! So holding a table's lock after a successful parent recheck pins the
//! whole path above it.

use crate::addr::{Ipa, PhysAddr, ENTRIES_PER_TABLE, PAGE_SHIFT};
use crate::desc::Desc;
use crate::error::Error;
use crate::geometry::{level_size, Level};
use crate::memory::{PtDesc, TableMemory};
use crate::rcu::load_entry;
use crate::stage2::{Stage2, TableList};
use crate::sync::{lock, AtomicU64, Ordering, PtLockGuard};
use crate::tlb::{TlbBatch, TlbMaintenance};
use crate::unmap::{Leaf, LeafGather};
use crate::write::{EntrySlot, Removes};

/// Why a visit did not complete.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WalkError {
    /// The table being walked was detached: the walk goes back to the
    /// parent entry (the cursor says so; visitors pass it on).
    Retry,
    /// The entry changed under the visitor: the walk reads it again and
    /// visits it again (the cursor says so; visitors pass it on).
    Again,
    /// The visitor stops here for now (say, an unmap whose gather of
    /// removed leaves is full): the walk returns how far it got, and the
    /// caller may resume it from there.
    Pause,
    /// The walk fails with this error.
    Fail(Error),
}

impl From<Error> for WalkError {
    fn from(e: Error) -> Self {
        WalkError::Fail(e)
    }
}

/// One entry as the visitor sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Visit {
    /// IPA mapped by the start of the entry.
    pub base: u64,
    /// The entry's level.
    pub level: Level,
    /// The value read (locklessly) before the visit; for
    /// [`Visitor::post`], the table entry that was walked.
    pub old: Desc,
    /// The start of the part of the walk's range inside this entry.
    pub start: u64,
    /// The end of that part (exclusive).
    pub end: u64,
}

impl Visit {
    /// Size mapped by the entry.
    pub fn size(&self) -> u64 {
        level_size(self.level)
    }
    /// Whether the walk's range covers the whole entry.
    pub fn covers(&self) -> bool {
        self.start == self.base && self.end - self.base == self.size()
    }
    /// `AlreadyMapped` naming this entry.
    pub fn conflict(&self) -> Error {
        Error::AlreadyMapped { ipa: Ipa(self.base), level: self.level, existing: self.old }
    }
}

/// What the walker does after a pre-visit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// Go on with the next entry.
    Next,
    /// Walk the table the entry (now) points at.
    Descend,
}

/// An operation expressed as a visitor (see the module documentation).
pub trait Visitor<M: TableMemory, T: TlbMaintenance> {
    /// Called for every entry in range, top-down: leaves, invalid entries
    /// and table entries (return [`Step::Descend`] to walk the table).
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError>;

    /// Whether the visitor takes runs ([`Visitor::run`]): a visitor that
    /// overrides `run` sets it, so that a walk of one that does not (a
    /// look-up, say) skips offering them.
    const TAKES_RUNS: bool = false;

    /// Offered each run of entries of one table page before they are
    /// visited one by one (if [`Visitor::TAKES_RUNS`]), so that a visitor
    /// can handle many entries in one go (say, fill invalid entries with
    /// new leaves). Returns the IPA up to which it handled the run: the
    /// rest is visited entry by entry.
    fn run(&mut self, cx: &mut RunCursor<'_, '_, M, T>) -> Result<u64, WalkError> {
        Ok(cx.start)
    }

    /// Called after the subtree under a table entry (`v.old`) was walked.
    fn post(&mut self, _cx: &mut Cursor<'_, '_, M, T>, _v: &Visit) -> Result<(), WalkError> {
        Ok(())
    }
}

/// The lock a walker holds on the table page it is writing, if any, with
/// that page's metadata.
type Held<'s> = Option<(PhysAddr, PtLockGuard<'s>, &'s PtDesc)>;

/// A visitor's handle on the entry being visited: the only way a visitor
/// writes, so the locking rules are applied in one place.
pub struct Cursor<'w, 's, M: TableMemory, T: TlbMaintenance> {
    pub(crate) s2: &'s Stage2<'s, M, T>,
    slot: &'s AtomicU64,
    page: PhysAddr,
    parent: Option<(&'s AtomicU64, Desc)>,
    held: &'w mut Held<'s>,
    pub(crate) batch: &'w mut TlbBatch<'s, T>,
    level: Level,
    base: u64,
}

impl<'s, M: TableMemory, T: TlbMaintenance> Cursor<'_, 's, M, T> {
    /// The address space being walked.
    pub fn stage2(&self) -> &'s Stage2<'s, M, T> {
        self.s2
    }

    /// The entry under this table page's lock (taken, the page rechecked
    /// attached), to act on it in place: what collapse does.
    pub(crate) fn locked(&mut self) -> Result<EntrySlot<'s>, WalkError> {
        self.lock()?;
        Ok(self.at())
    }

    /// The entry, for `write_entry`.
    fn at(&self) -> EntrySlot<'s> {
        let pd = match &*self.held {
            Some((_, _, pd)) => pd,
            None => self.s2.ptdesc_of(self.page),
        };
        EntrySlot { slot: self.slot, pd, level: self.level, ipa: Ipa(self.base) }
    }

    /// Holds the lock of the entry's table page, with the table verified
    /// attached to its parent entry.
    #[inline]
    fn lock(&mut self) -> Result<(), WalkError> {
        lock_page(self.s2, self.held, self.page, self.parent).map(|_| ())
    }

    /// Writes `new` if the entry still holds `old`, under its table's lock,
    /// with the maintenance the change requires (see the crate's write
    /// path: a make into an invalid entry, a break, a change in place, or
    /// break-before-make). [`WalkError::Again`] if the entry changed.
    #[inline]
    pub fn write(&mut self, old: Desc, new: Desc) -> Result<(), WalkError> {
        self.lock()?;
        if self.slot.load(Ordering::Relaxed) != old.bits() {
            return Err(WalkError::Again);
        }
        Ok(self.s2.write_entry(self.at(), old, new, self.batch)?)
    }

    /// Replaces the block `old` by a table of the next level mapping the
    /// same range with the same attributes. The table is complete before
    /// it becomes visible, and the swap is break-before-make.
    pub(crate) fn split(&mut self, old: Desc, cache: &mut TableCache) -> Result<(), WalkError> {
        let child_level = self.level + 1;
        let t = cache
            .take(self.s2, child_level)
            .ok_or(WalkError::Fail(Error::OutOfMemory { pages: 1 }))?;
        self.s2.fill_new_table(t, |i| old.split_entry(self.level, i));
        if let Err(e) = self.write(old, Desc::table(t)) {
            // Never published: empty it and give it back.
            self.s2.clear_new_table(t, child_level);
            cache.put(self.s2, t);
            return Err(e);
        }
        self.s2.tstats.splits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Detaches the child table `old` points at if it has no valid entry
    /// left, and adds it to `detached` (to be freed after the TLB flush and
    /// a grace period). Takes this table's lock, then the child's.
    pub(crate) fn free_if_empty(
        &mut self,
        old: Desc,
        detached: &mut TableList,
    ) -> Result<(), WalkError> {
        if self.s2.mem.ptdesc(old.addr()).valid_entries() != 0 {
            return Ok(());
        }
        self.detach_child(old, detached, true)
    }

    /// Detaches the level-3 table `old` points at, whatever it maps: for
    /// an unmap that covers the entry's whole span. Its leaves go with it
    /// (a level-3 table holds no tables, so nothing below can be lost); the
    /// whole span is invalidated.
    pub(crate) fn detach_leaf_table(
        &mut self,
        old: Desc,
        detached: &mut TableList,
    ) -> Result<(), WalkError> {
        debug_assert_eq!(self.level, 2);
        self.detach_child(old, detached, false)
    }

    fn detach_child(
        &mut self,
        old: Desc,
        detached: &mut TableList,
        only_if_empty: bool,
    ) -> Result<(), WalkError> {
        self.lock()?;
        if self.slot.load(Ordering::Relaxed) != old.bits() {
            return Ok(());
        }
        self.s2.detach_table(self.at(), old, self.batch, detached, only_if_empty);
        Ok(())
    }
}

/// Makes `held` the lock of table page `page`, taking it if needed, and
/// checks the table is still attached to `parent` (rule 2 of
/// `docs/ARCHITECTURE.md`). Returns the page's metadata.
#[inline]
fn lock_page<'s, M: TableMemory, T: TlbMaintenance>(
    s2: &'s Stage2<'s, M, T>,
    held: &mut Held<'s>,
    page: PhysAddr,
    parent: Option<(&'s AtomicU64, Desc)>,
) -> Result<&'s PtDesc, WalkError> {
    if let Some((p, _, pd)) = held {
        if *p == page {
            return Ok(pd);
        }
    }
    *held = None;
    let guard = lock(s2.table_lock(page));
    if let Some((pslot, expected)) = parent {
        if pslot.load(Ordering::Acquire) != expected.bits() {
            return Err(WalkError::Retry);
        }
    }
    let pd = s2.ptdesc_of(page);
    *held = Some((page, guard, pd));
    Ok(pd)
}

/// A visitor's handle on a run of entries `[start, end)` of one table page
/// (see [`Visitor::run`]).
pub struct RunCursor<'w, 's, M: TableMemory, T: TlbMaintenance> {
    pub(crate) s2: &'s Stage2<'s, M, T>,
    /// The run's entries, in IPA order.
    slots: &'s [AtomicU64],
    page: PhysAddr,
    parent: Option<(&'s AtomicU64, Desc)>,
    held: &'w mut Held<'s>,
    pub(crate) batch: &'w mut TlbBatch<'s, T>,
    pub(crate) level: Level,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl<M: TableMemory, T: TlbMaintenance> RunCursor<'_, '_, M, T> {
    /// The level of the run's entries.
    pub fn level(&self) -> Level {
        self.level
    }
    /// The part of the walk's range the run covers: `[start, end)`.
    pub fn range(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    /// IPA of the first entry of the run (the start rounded down).
    pub fn base(&self) -> u64 {
        self.start & !(level_size(self.level) - 1)
    }

    /// Whether the run's table page maps nothing (its count of valid
    /// entries, read without the lock: advisory).
    pub(crate) fn page_is_empty(&self) -> bool {
        self.s2.ptdesc_of(self.page).valid_entries() == 0
    }

    /// Whether the run starts and ends on entry boundaries, so that every
    /// entry in it is covered whole.
    pub fn covers_entries(&self) -> bool {
        let mask = level_size(self.level) - 1;
        self.start & mask == 0 && self.end & mask == 0
    }

    /// The entries of the run, read locklessly, with their IPAs.
    pub fn entries(&self) -> impl Iterator<Item = (u64, Desc)> + '_ {
        let (base, size) = (self.base(), level_size(self.level));
        self.slots
            .iter()
            .enumerate()
            .map(move |(i, slot)| (base + i as u64 * size, Desc::from_bits(load_entry(slot))))
    }

    /// Makes `leaf(ipa)` every invalid entry of the run, under the page's
    /// lock (see [`Stage2::make_run`]): a valid entry for which
    /// `keep(ipa, entry)` holds is left alone, any other stops the fill.
    /// `pa0` is what the run's first entry maps. Returns the IPA reached
    /// (the run's end, or the entry that stopped it) and whether any entry
    /// was written.
    pub(crate) fn fill(
        &mut self,
        pa0: u64,
        leaf: impl Fn(u64) -> Desc,
        keep: impl Fn(u64, Desc) -> bool,
    ) -> Result<(u64, bool), WalkError> {
        let pd = lock_page(self.s2, self.held, self.page, self.parent)?;
        let base = self.base();
        let (reached, made) =
            self.s2.make_run(self.slots, pd, self.level, base, pa0, leaf, keep)?;
        Ok((reached.max(self.start), made != 0))
    }
}

impl<M: TableMemory, T: TlbMaintenance> RunCursor<'_, '_, M, T> {
    /// Removes everything the run maps, for a run of level-2 entries it
    /// covers whole: blocks are cleared and gathered in `leaves`, level-3
    /// tables detached in one piece (they hold no tables). Returns the IPA
    /// reached: the run's end, or an entry it leaves to the per-entry
    /// visit (one it cannot clear, or a block when `leaves` is full).
    pub(crate) fn clear_covered(
        &mut self,
        detached: &mut TableList,
        leaves: &mut LeafGather,
    ) -> Result<u64, WalkError> {
        debug_assert!(self.level == 2 && self.covers_entries());
        let pd = lock_page(self.s2, self.held, self.page, self.parent)?;
        let (base, size) = (self.base(), level_size(self.level));
        for (i, slot) in self.slots.iter().enumerate() {
            let ipa = base + i as u64 * size;
            let cur = Desc::from_bits(slot.load(Ordering::Relaxed));
            let at = EntrySlot { slot, pd, level: self.level, ipa: Ipa(ipa) };
            if cur.is_table(self.level) {
                self.s2.detach_table(at, cur, self.batch, detached, false);
            } else if cur.is_leaf(self.level) && !leaves.is_full() {
                let _ = self.s2.break_entry(at, cur, Removes::Entry, self.batch);
                leaves.push(Leaf { ipa: Ipa(ipa), pa: cur.addr(), level: self.level, owned: true });
            } else if cur.is_valid() {
                return Ok(ipa.max(self.start));
            }
        }
        Ok(self.end)
    }
}

/// Table pages allocated before an operation commits, so that running out
/// of memory is found before anything changes (KVM's memcache).
#[derive(Default)]
pub(crate) struct TableCache {
    list: TableList,
}

impl TableCache {
    /// Allocates `n` pages, or none at all.
    pub fn fill<M: TableMemory, T: TlbMaintenance>(
        s2: &Stage2<'_, M, T>,
        n: usize,
    ) -> Result<Self, Error> {
        let mut c = TableCache::default();
        for _ in 0..n {
            match s2.alloc_table(3) {
                Some(pa) => c.list.push(&s2.mem, pa),
                None => {
                    s2.free_list_now(&mut c.list);
                    return Err(Error::OutOfMemory { pages: n });
                }
            }
        }
        Ok(c)
    }

    /// A zeroed table for `level`: from the cache, else (only when a
    /// concurrent change made the prepared count short) freshly allocated.
    pub fn take<M: TableMemory, T: TlbMaintenance>(
        &mut self,
        s2: &Stage2<'_, M, T>,
        level: Level,
    ) -> Option<PhysAddr> {
        match self.list.pop(&s2.mem) {
            Some(pa) => {
                s2.mem.ptdesc(pa).init(level);
                Some(pa)
            }
            None => s2.alloc_table(level),
        }
    }

    /// Returns an unpublished, zeroed table.
    pub fn put<M: TableMemory, T: TlbMaintenance>(&mut self, s2: &Stage2<'_, M, T>, pa: PhysAddr) {
        self.list.push(&s2.mem, pa);
    }

    /// Frees what was not used.
    pub fn release<M: TableMemory, T: TlbMaintenance>(mut self, s2: &Stage2<'_, M, T>) {
        s2.free_list_now(&mut self.list);
    }
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<'_, M, T> {
    /// Walks `[ipa, ipa + size)` (page aligned, inside the IPA space) with
    /// `visitor`, inside one RCU read-side section; a table detached under
    /// the walk sends it back to the root at the point it reached. The
    /// invalidations of what the visitor wrote are issued and completed
    /// before it returns, and tables it detached are freed after a grace
    /// period. Returns the IPA reached: the end of the range, or where the
    /// visitor paused ([`WalkError::Pause`]).
    ///
    /// ```
    /// use mmu::walk::{Cursor, Step, Visit, Visitor, WalkError};
    /// use mmu::{TableMemory, TlbMaintenance};
    ///
    /// /// Counts the 4 KiB pages mapped writable.
    /// struct Writable(u64);
    ///
    /// impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for Writable {
    ///     fn pre(&mut self, _: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
    ///         if v.old.is_table(v.level) {
    ///             return Ok(Step::Descend);
    ///         }
    ///         if v.old.is_leaf(v.level) && v.old.is_writable() {
    ///             self.0 += (v.end - v.start) / mmu::PAGE_SIZE;
    ///         }
    ///         Ok(Step::Next)
    ///     }
    /// }
    /// ```
    pub fn walk<V: Visitor<M, T>>(
        &self,
        ipa: Ipa,
        size: u64,
        visitor: &mut V,
    ) -> Result<Ipa, Error> {
        let end = self.check_range(ipa, size)?;
        let mut batch = self.tlb_batch();
        let (reached, result) = self.walk_until(ipa.get(), end, visitor, &mut batch);
        batch.flush();
        drop(batch);
        self.reclaim();
        result.map(|()| Ipa(reached))
    }

    /// Walks `[start, end)` with `v`. Inside one RCU read-side section; a
    /// detached table on the path restarts the walk from the root at the
    /// point reached.
    pub(crate) fn walk_range<'s, V: Visitor<M, T>>(
        &'s self,
        start: u64,
        end: u64,
        v: &mut V,
        batch: &mut TlbBatch<'s, T>,
    ) -> Result<(), Error> {
        let (reached, result) = self.walk_until(start, end, v, batch);
        debug_assert!(result.is_err() || reached == end, "only unmap's visitor pauses");
        result
    }

    /// [`Stage2::walk`] for a visitor that may pause ([`WalkError::Pause`]):
    /// returns how far the walk got (every entry below was visited; `end`
    /// when it completed) with its outcome. The RCU section ends with the
    /// call, so the caller may act on what the visitor gathered and resume
    /// from there.
    pub(crate) fn walk_until<'s, V: Visitor<M, T>>(
        &'s self,
        start: u64,
        end: u64,
        v: &mut V,
        batch: &mut TlbBatch<'s, T>,
    ) -> (u64, Result<(), Error>) {
        let _rcu = self.rcu.read_lock();
        let mut progress = start;
        // A range inside one page (a look-up, a fault) is one entry a level:
        // the point walk, without runs or the range loop.
        let point = !V::TAKES_RUNS && start < end && (end - 1) >> PAGE_SHIFT == start >> PAGE_SHIFT;
        loop {
            let level = self.geo.start_level();
            let walked = if point {
                self.walk_point(self.root, level, None, start, end, v, batch)
            } else {
                self.walk_table(self.root, level, None, progress, end, v, batch, &mut progress)
            };
            match walked {
                Ok(()) => return (end, Ok(())),
                Err(WalkError::Fail(e)) => return (progress, Err(e)),
                Err(WalkError::Pause) => return (progress, Ok(())),
                Err(WalkError::Retry | WalkError::Again) => crate::sync::spin_hint(),
            }
        }
    }

    /// [`Stage2::walk_table`] for a range inside one page: one entry at
    /// each level, visited, descended and post-visited with the same
    /// rules (an entry that changed is visited again).
    #[allow(clippy::too_many_arguments)]
    fn walk_point<'s, V: Visitor<M, T>>(
        &'s self,
        table: PhysAddr,
        level: Level,
        parent: Option<(&'s AtomicU64, Desc)>,
        start: u64,
        end: u64,
        v: &mut V,
        batch: &mut TlbBatch<'s, T>,
    ) -> Result<(), WalkError> {
        let (slot, page) = self.slot(table, self.geo.index(level, start));
        let base = start & !(level_size(level) - 1);
        let mut held: Held<'s> = None;
        loop {
            let old = Desc::from_bits(load_entry(slot));
            let visit = Visit { base, level, old, start, end };
            let mut cx =
                Cursor { s2: self, slot, page, parent, held: &mut held, batch, level, base };
            match v.pre(&mut cx, &visit) {
                Ok(Step::Next) => return Ok(()),
                Ok(Step::Descend) => {
                    let d = Desc::from_bits(load_entry(slot));
                    if !d.is_table(level) {
                        continue;
                    }
                    held = None;
                    match self.walk_point(
                        d.addr(),
                        level + 1,
                        Some((slot, d)),
                        start,
                        end,
                        v,
                        batch,
                    ) {
                        Ok(()) => {
                            let visit = Visit { old: d, ..visit };
                            let mut cx = Cursor {
                                s2: self,
                                slot,
                                page,
                                parent,
                                held: &mut held,
                                batch,
                                level,
                                base,
                            };
                            return match v.post(&mut cx, &visit) {
                                Ok(()) | Err(WalkError::Again) => Ok(()),
                                Err(e) => Err(e),
                            };
                        }
                        // Our entry changed under the child walk: visit it
                        // again.
                        Err(WalkError::Retry | WalkError::Again) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(WalkError::Again) => {}
                Err(e) => return Err(e),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_table<'s, V: Visitor<M, T>>(
        &'s self,
        table: PhysAddr,
        level: Level,
        parent: Option<(&'s AtomicU64, Desc)>,
        start: u64,
        end: u64,
        v: &mut V,
        batch: &mut TlbBatch<'s, T>,
        progress: &mut u64,
    ) -> Result<(), WalkError> {
        let size = level_size(level);
        // One table page maps this much; a concatenated root has several.
        let page_span = size << 9;
        let mut held: Held<'s> = None;
        let mut pages = PageCache::default();
        let mut ipa = start;
        let mut offered_until = start;
        while ipa < end {
            let index = self.geo.index(level, ipa);
            let (slot, page) = pages.slot(self, table, index);
            if V::TAKES_RUNS && ipa >= offered_until {
                // A new page segment: offer it to the visitor as a run.
                let seg_end = end.min((ipa | (page_span - 1)).wrapping_add(1)).max(ipa + 1);
                let n = ((seg_end - 1 - (ipa & !(size - 1))) / size) as usize + 1;
                // SAFETY: `pages.entries` points at the page's 512 entries
                // (it was just used for `slot`, entry `index % 512`), and the
                // run stays inside the page (`seg_end` is clipped to it), so
                // the `n` entries from there are live entries of the page.
                // (Built from the page's pointer, not from `slot`: a
                // reference to one entry gives no access to its neighbours.)
                let slots = unsafe {
                    core::slice::from_raw_parts(pages.entries.add(index % ENTRIES_PER_TABLE), n)
                };
                let mut rc = RunCursor {
                    s2: self,
                    slots,
                    page,
                    parent,
                    held: &mut held,
                    batch,
                    level,
                    start: ipa,
                    end: seg_end,
                };
                match v.run(&mut rc) {
                    Ok(reached) => {
                        offered_until = seg_end;
                        if reached > ipa {
                            ipa = reached;
                            *progress = reached;
                            continue;
                        }
                    }
                    Err(WalkError::Again) => continue,
                    Err(e) => return Err(e),
                }
            }
            let base = ipa & !(size - 1);
            let vend = end.min(base + size);
            let old = Desc::from_bits(load_entry(slot));
            let visit = Visit { base, level, old, start: ipa, end: vend };
            let mut cx =
                Cursor { s2: self, slot, page, parent, held: &mut held, batch, level, base };
            match v.pre(&mut cx, &visit) {
                Ok(Step::Next) => {
                    ipa = vend;
                    *progress = vend;
                }
                Ok(Step::Descend) => {
                    let d = Desc::from_bits(load_entry(slot));
                    if !d.is_table(level) {
                        continue;
                    }
                    held = None;
                    let child = self.walk_table(
                        d.addr(),
                        level + 1,
                        Some((slot, d)),
                        ipa,
                        vend,
                        v,
                        batch,
                        progress,
                    );
                    match child {
                        Ok(()) => {
                            let visit = Visit { old: d, ..visit };
                            let mut cx = Cursor {
                                s2: self,
                                slot,
                                page,
                                parent,
                                held: &mut held,
                                batch,
                                level,
                                base,
                            };
                            match v.post(&mut cx, &visit) {
                                Ok(()) | Err(WalkError::Again) => {}
                                Err(e) => return Err(e),
                            }
                            ipa = vend;
                        }
                        // Our entry changed under the child walk: re-read it
                        // and carry on from where the child got to.
                        Err(WalkError::Retry | WalkError::Again) => ipa = ipa.max(*progress),
                        Err(e) => return Err(e),
                    }
                }
                Err(WalkError::Again) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The entries pointer of the table page last used, so that a walk over a
/// table asks `TableMemory::entries` once per page, not once per entry.
struct PageCache {
    page: PhysAddr,
    entries: *const AtomicU64,
}

impl Default for PageCache {
    fn default() -> Self {
        Self { page: PhysAddr(u64::MAX), entries: core::ptr::null() }
    }
}

impl PageCache {
    /// Like [`Stage2::slot`], with the same contract on `table`.
    #[inline]
    fn slot<'s, M: TableMemory, T: TlbMaintenance>(
        &mut self,
        s2: &'s Stage2<'_, M, T>,
        table: PhysAddr,
        index: usize,
    ) -> (&'s AtomicU64, PhysAddr) {
        let page =
            PhysAddr(table.get() + (index / ENTRIES_PER_TABLE) as u64 * crate::addr::PAGE_SIZE);
        if page != self.page {
            self.page = page;
            self.entries = s2.mem.entries(page);
        }
        // SAFETY: `entries` points at the 512 entries of `page`, a live
        // table (the caller's contract, as for `Stage2::slot`), and
        // `index % 512` stays inside them.
        let slot = unsafe { &*self.entries.add(index % ENTRIES_PER_TABLE) };
        (slot, page)
    }
}

/// Tables needed to map `[start, end)` below a new table at `level` when
/// `needs_table(visit)` says which entries need one of their own.
///
/// `needs_table` must answer alike for every entry the range covers whole
/// at a level (true of both users: a linear mapping's leaves fit or not by
/// the output's alignment; a split is needed only where the range cuts an
/// entry), so the first entry, the last and one between them decide, in
/// time proportional to the levels rather than to the entries.
pub(crate) fn count_new_tables(
    level: Level,
    start: u64,
    end: u64,
    needs_table: &dyn Fn(&Visit) -> bool,
) -> usize {
    if level >= 3 || start >= end {
        return 0;
    }
    let size = level_size(level);
    // The tables under the entry whose part of the range starts at `s`.
    let under = |s: u64| {
        let base = s & !(size - 1);
        let e = end.min(base + size);
        let v = Visit { base, level, old: Desc::INVALID, start: s, end: e };
        if needs_table(&v) {
            1 + count_new_tables(level + 1, s, e, needs_table)
        } else {
            0
        }
    };
    let (first, last) = (start & !(size - 1), (end - 1) & !(size - 1));
    let mut n = under(start);
    if last > first {
        n += under(last);
        let between = ((last - first) / size - 1) as usize;
        if between > 0 {
            n += between * under(first + size);
        }
    }
    n
}
