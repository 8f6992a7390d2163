//! The one write path: every change to a live entry goes through the
//! break/make pair here (KVM's `stage2_try_break_pte` and
//! `stage2_make_pte`), and only here are valid-entry counts kept, mappings
//! of tracked pages recorded in the reverse map, and invalidations
//! gathered.
//!
//! - [`Stage2::break_entry`] makes a valid entry invalid, counts it out of
//!   its table and gathers its invalidation: the entry's own IPA for a
//!   leaf or an empty table, every page of the span for a table whose
//!   leaves go with it. It returns a [`Vacant`] entry that remembers it
//!   was broken.
//! - A make stores a new entry into a [`Vacant`] one: an entry read
//!   invalid under its lock ([`Stage2::make_entry`]), or one just broken,
//!   in which case the break's invalidation is completed first
//!   ([`Stage2::write_entry_with`]). That is break-before-make, and the
//!   type makes it the only way: no path stores over a valid entry except
//!   [`Stage2::change_in_place`], which takes only changes the
//!   architecture allows without a break (permissions, access flag,
//!   software bits of a leaf).
//! - A leaf's page(s) that the reverse map tracks are recorded as mapped
//!   *before* anything is stored ([`Stage2::write_entry`] records, then
//!   breaks, then makes), so a refusal (`TooManyMappings`) changes nothing
//!   and `make_coherent` finds a mapping as soon as it can exist. Mappings
//!   are forgotten only after their removal is invalidated
//!   ([`Stage2::hand_over`]): whoever drops a tracked page's last
//!   reference must know no TLB still maps it.
//!
//! Every function here is called with the lock of the table page holding
//! the entry (or the address space's single lock) held, the entry's value
//! rechecked under it.

use crate::addr::{Ipa, PhysAddr, ENTRIES_PER_TABLE, PAGE_SIZE};
use crate::desc::Desc;
use crate::error::Error;
use crate::geometry::{level_shift, level_size, Level};
use crate::memory::{PtDesc, TableMemory};
use crate::stage2::{LockMode, Stage2, TableList};
use crate::sync::{lock, AtomicU64, Ordering};
use crate::tlb::{TlbBatch, TlbMaintenance};
use crate::unmap::Leaf;

/// A live entry whose table page's lock the caller holds: its slot, the
/// metadata of the table page holding it, its level and the IPA its span
/// starts at.
#[derive(Clone, Copy)]
pub(crate) struct EntrySlot<'a> {
    pub slot: &'a AtomicU64,
    pub pd: &'a PtDesc,
    pub level: Level,
    pub ipa: Ipa,
}

impl EntrySlot<'_> {
    /// The entry's value, stable under the lock the caller holds.
    #[inline]
    pub fn get(&self) -> Desc {
        Desc::from_bits(self.slot.load(Ordering::Relaxed))
    }
}

/// An entry that holds the invalid descriptor, ready for
/// [`Stage2::make_entry`]: read so under its lock, or broken.
#[must_use = "a broken entry stays invalid until it is made"]
pub(crate) struct Vacant<'a> {
    at: EntrySlot<'a>,
    /// It held a valid entry whose invalidation sits in the batch: the
    /// make completes it first.
    broken: bool,
}

impl<'a> Vacant<'a> {
    /// The entry, if it is invalid now (the caller holds its lock).
    #[inline]
    pub fn of(at: EntrySlot<'a>) -> Option<Self> {
        (!at.get().is_valid()).then_some(Vacant { at, broken: false })
    }
}

/// What a break removes besides the entry itself, for the invalidation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removes {
    /// A leaf, or a table entry whose table maps nothing: the entry's own
    /// IPA (a leaf with its level as hint; a table with none).
    Entry,
    /// A table entry whose table still maps leaves, which go with it: every
    /// page of the entry's span.
    Subtree,
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<'_, M, T> {
    /// Break: makes the valid entry `old` at `at` invalid, counts it out of
    /// its table and gathers its invalidation in `batch`.
    pub(crate) fn break_entry<'e>(
        &self,
        at: EntrySlot<'e>,
        old: Desc,
        removes: Removes,
        batch: &mut TlbBatch<'_, T>,
    ) -> Vacant<'e> {
        debug_assert!(old.is_valid() && at.get() == old);
        at.slot.store(Desc::INVALID.bits(), Ordering::Release);
        at.pd.add_valid(-1);
        match removes {
            Removes::Entry => batch.add(at.ipa, at.level, old.is_leaf(at.level)),
            Removes::Subtree => batch.add_span(at.ipa, at.level),
        }
        Vacant { at, broken: true }
    }

    /// Make: stores `new` into `v`, an entry read invalid under its lock
    /// (never broken: no invalidation is due, so no batch is needed; the
    /// fault path's install), recording a leaf's tracked pages first
    /// (`TooManyMappings`: nothing stored). A broken entry is made by
    /// [`Stage2::write_entry_with`], which completes the break first.
    pub(crate) fn make_entry(&self, v: Vacant<'_>, new: Desc) -> Result<(), Error> {
        debug_assert!(!v.broken);
        self.record(v.at, new)?;
        store_counted(v.at, new);
        Ok(())
    }

    /// A change the architecture allows on a live leaf without a break:
    /// only permission, access-flag or software bits differ. Gathered.
    pub(crate) fn change_in_place(
        &self,
        at: EntrySlot<'_>,
        old: Desc,
        new: Desc,
        batch: &mut TlbBatch<'_, T>,
    ) {
        debug_assert!(old.is_leaf(at.level) && new.is_leaf(at.level));
        debug_assert!(old.only_permissions_differ(new));
        at.slot.store(new.bits(), Ordering::Release);
        batch.add(at.ipa, at.level, true);
    }

    /// Writes `new` over `old` in the entry `at`, whichever way the change
    /// needs: a make into an invalid entry, a break to invalid, a change in
    /// place, or break-before-make (running `between` after the break is
    /// invalidated and before the make: where cache maintenance for a
    /// changing memory type goes). The caller holds the page's lock and
    /// has checked the entry holds `old`.
    ///
    /// Fails only when a new leaf's tracked page cannot be recorded
    /// (`TooManyMappings`), and then before anything is written.
    pub(crate) fn write_entry_with(
        &self,
        at: EntrySlot<'_>,
        old: Desc,
        new: Desc,
        batch: &mut TlbBatch<'_, T>,
        between: impl FnOnce(),
    ) -> Result<(), Error> {
        if old == new {
            return Ok(());
        }
        if !old.is_valid() {
            return self.make_entry(Vacant { at, broken: false }, new);
        }
        let (old_leaf, new_leaf) = (old.is_leaf(at.level), new.is_leaf(at.level));
        if !new.is_valid() {
            let _ = self.break_entry(at, old, Removes::Entry, batch);
        } else if old_leaf && new_leaf && old.only_permissions_differ(new) {
            self.change_in_place(at, old, new, batch);
        } else {
            // The new leaf's pages are recorded before the break, so that a
            // refusal leaves the old entry in place.
            if !(old_leaf && new_leaf && old.addr() == new.addr()) {
                self.record(at, new)?;
            }
            let v = self.break_entry(at, old, Removes::Entry, batch);
            self.store_made(v, new, batch, between);
        }
        Ok(())
    }

    /// [`Stage2::write_entry_with`] with nothing between break and make.
    #[inline]
    pub(crate) fn write_entry(
        &self,
        at: EntrySlot<'_>,
        old: Desc,
        new: Desc,
        batch: &mut TlbBatch<'_, T>,
    ) -> Result<(), Error> {
        self.write_entry_with(at, old, new, batch, || {})
    }

    /// Makes every invalid entry of `slots` (a run of one table page,
    /// `pd` its metadata, the first at `ipa0`, of `level`) the leaf
    /// `leaf(ipa)`, leaving valid entries for which `keep` holds. Stops at
    /// a valid entry `keep` refuses. The run's tracked pages are recorded
    /// in one step before any store. Returns the IPA reached (the run's
    /// end, or the entry that stopped it) and how many entries were made.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn make_run(
        &self,
        slots: &[AtomicU64],
        pd: &PtDesc,
        level: Level,
        ipa0: u64,
        pa0: u64,
        leaf: impl Fn(u64) -> Desc,
        keep: impl Fn(u64, Desc) -> bool,
    ) -> Result<(u64, usize), Error> {
        let size = level_size(level);
        let mut reached = ipa0 + size * slots.len() as u64;
        if let Some(r) = self.rmap.filter(|r| r.tracked() != 0) {
            // Record exactly the entries this run will make or keep.
            let stop = slots.iter().enumerate().find_map(|(i, slot)| {
                let (ipa, cur) =
                    (ipa0 + i as u64 * size, Desc::from_bits(slot.load(Ordering::Relaxed)));
                (cur.is_valid() && !keep(ipa, cur)).then_some(ipa)
            });
            reached = stop.unwrap_or(reached);
            r.note_map(self.vmid, Ipa(ipa0), PhysAddr(pa0), reached - ipa0)?;
        }
        let mut made = 0;
        let mut ipa = ipa0;
        let n = ((reached - ipa0) >> level_shift(level)) as usize;
        for slot in &slots[..n] {
            let cur = Desc::from_bits(slot.load(Ordering::Relaxed));
            if !cur.is_valid() {
                // Release: what the leaf maps (a zeroed page, say) is
                // visible before the leaf is. No invalidation: nothing was
                // there.
                slot.store(leaf(ipa).bits(), Ordering::Release);
                made += 1;
            } else if !keep(ipa, cur) {
                reached = ipa;
                break;
            }
            ipa += size;
        }
        pd.add_valid(made as i32);
        Ok((reached, made))
    }

    /// Detaches the child table `old` (what `at` holds) from its parent
    /// page, whose lock the caller holds: takes the child's lock (parent
    /// before child), breaks the entry (the whole span if leaves go with
    /// the table) and queues the child on `detached`, to be freed after
    /// the batch is flushed and a grace period has passed. With
    /// `only_if_empty`, a child that still maps something is left. Returns
    /// whether the child was detached.
    pub(crate) fn detach_table(
        &self,
        at: EntrySlot<'_>,
        old: Desc,
        batch: &mut TlbBatch<'_, T>,
        detached: &mut TableList,
        only_if_empty: bool,
    ) -> bool {
        // Split locks: the child's own lock, after the parent's (held). The
        // single lock is held already.
        let child = self.mem.ptdesc(old.addr());
        let _child = (self.mode == LockMode::Split).then(|| lock(&child.lock));
        let live = child.valid_entries();
        if only_if_empty && live != 0 {
            return false;
        }
        let removes = if live != 0 {
            // Its leaves go with it; an unmap reports them from the table.
            child.detached_base.store(at.ipa.get(), Ordering::Relaxed);
            Removes::Subtree
        } else {
            Removes::Entry
        };
        let _ = self.break_entry(at, old, removes, batch);
        detached.push(&self.mem, old.addr());
        true
    }

    /// Replaces the table entry `old` at `at` (the child table's lock held
    /// too) by `block`, a leaf of the same span: break (the whole span:
    /// the child's leaves and the walks through it go), complete, make.
    /// The child joins `detached`. The block's pages were mapped at the
    /// same IPAs or are fresh, so recording it cannot fail.
    pub(crate) fn table_to_block(
        &self,
        at: EntrySlot<'_>,
        old: Desc,
        block: Desc,
        batch: &mut TlbBatch<'_, T>,
        detached: &mut TableList,
    ) -> Result<(), Error> {
        debug_assert!(old.is_table(at.level) && block.is_leaf(at.level));
        self.record(at, block)?;
        let v = self.break_entry(at, old, Removes::Subtree, batch);
        self.store_made(v, block, batch, || {});
        detached.push(&self.mem, old.addr());
        Ok(())
    }

    /// Fills the fresh table `t`, not reachable yet, with `entry(i)` for
    /// each of its 512 entries, counted (a split's table, complete before
    /// the make that publishes it). Its pages are those of the block it
    /// replaces, recorded already.
    pub(crate) fn fill_new_table(&self, t: PhysAddr, entry: impl Fn(usize) -> Desc) {
        for i in 0..ENTRIES_PER_TABLE {
            let (slot, _) = self.slot(t, i);
            slot.store(entry(i).bits(), Ordering::Relaxed);
        }
        self.mem.ptdesc(t).add_valid(ENTRIES_PER_TABLE as i32);
    }

    /// Empties a table [`Stage2::fill_new_table`] filled that was never
    /// published, for reuse at `level`.
    pub(crate) fn clear_new_table(&self, t: PhysAddr, level: Level) {
        for i in 0..ENTRIES_PER_TABLE {
            self.slot(t, i).0.store(0, Ordering::Relaxed);
        }
        self.mem.ptdesc(t).init(level);
    }

    /// Records the pages a new leaf maps, if the reverse map tracks any.
    #[inline]
    fn record(&self, at: EntrySlot<'_>, new: Desc) -> Result<(), Error> {
        match self.rmap {
            Some(r) if new.is_leaf(at.level) => {
                r.note_map(self.vmid, at.ipa, new.addr(), level_size(at.level))
            }
            _ => Ok(()),
        }
    }

    /// The store of a make, its pages recorded already.
    #[inline]
    fn store_made(
        &self,
        v: Vacant<'_>,
        new: Desc,
        batch: &mut TlbBatch<'_, T>,
        between: impl FnOnce(),
    ) {
        if v.broken {
            // Break-before-make: the old entry is gone from every TLB
            // before the new one can be cached.
            batch.flush();
            between();
        }
        store_counted(v.at, new);
    }

    /// Hands a removed leaf to `put`, its removal invalidated: the reverse
    /// map forgets the mapping first (after the entry is gone: until then,
    /// `make_coherent` may still find and adjust it) and says whether the
    /// caller owns the memory. A block holding tracked pages is handed
    /// over page by page, each with its own answer.
    pub(crate) fn hand_over(&self, leaf: Leaf, put: &mut dyn FnMut(Leaf)) {
        let Some(r) = self.rmap else { return put(leaf) };
        if leaf.level == 3 {
            let owned = r.forget_page(self.vmid, leaf.ipa, leaf.pa);
            return put(Leaf { owned, ..leaf });
        }
        if !r.any_tracked_in(leaf.pa, leaf.size()) {
            return put(leaf);
        }
        for off in (0..leaf.size()).step_by(PAGE_SIZE as usize) {
            let (ipa, pa) = (Ipa(leaf.ipa.get() + off), PhysAddr(leaf.pa.get() + off));
            let owned = r.forget_page(self.vmid, ipa, pa);
            put(Leaf { ipa, pa, level: 3, owned });
        }
    }

    /// Hands over the leaves of the level-3 tables on `detached` that were
    /// detached with their leaves (see [`Stage2::detach_table`]), their
    /// removal invalidated. The tables stay on the list, to be freed after
    /// a grace period; nothing writes a detached table, so their entries
    /// are intact.
    pub(crate) fn hand_over_detached(&self, detached: &TableList, put: &mut dyn FnMut(Leaf)) {
        detached.for_each_page(&self.mem, |table, pd| {
            if pd.level() != 3 || pd.valid_entries() == 0 {
                return;
            }
            let base = pd.detached_base.load(Ordering::Relaxed);
            for i in 0..ENTRIES_PER_TABLE {
                let (slot, _) = self.slot(table, i);
                let d = Desc::from_bits(slot.load(Ordering::Relaxed));
                if d.is_leaf(3) {
                    let ipa = Ipa(base + i as u64 * PAGE_SIZE);
                    self.hand_over(Leaf { ipa, pa: d.addr(), level: 3, owned: true }, put);
                }
            }
        });
    }
}

/// The store of every make, and its count: Release, so that a walker that
/// reads a new table descriptor also sees the table's contents, and a new
/// leaf's memory is written before the leaf.
#[inline]
fn store_counted(at: EntrySlot<'_>, new: Desc) {
    at.slot.store(new.bits(), Ordering::Release);
    if new.is_valid() {
        at.pd.add_valid(1);
    }
}
