//! Table → block collapse (in place, or khugepaged style by copying) and
//! block → table split.
//!
//! # Collapse, the sequence
//!
//! As KVM's `stage2_map_walk_table_pre` and Linux's `retract_page_tables`
//! do it, for the entry `E` at level L (2: a level-3 table becomes a
//! 2 MiB block; 1: a level-2 table of 2 MiB blocks becomes a 1 GiB block):
//!
//! 1. inside an RCU read-side section, descend locklessly to the table
//!    page `P` holding `E`; take `P`'s lock (Linux's `pmd_lock`) and
//!    recheck that `P`'s parent entry still points at `P` (rule 2 of
//!    `docs/ARCHITECTURE.md`), else start again from the root. `P` is then
//!    attached and stays so (rule 3), and so does the path above it
//!    (rule 4);
//! 2. read `E` under the lock: it must be a table `C`; take `C`'s lock
//!    (split locks; under the single lock it is the one already held:
//!    never taken twice), parent before child (rule 5);
//! 3. check `C` under both locks: 512 valid leaves with the same
//!    descriptor bits apart from the output address and, in place, one
//!    physically contiguous range aligned to the block size. Anything
//!    else is an error, and nothing has changed;
//! 4. break: store invalid in `E`;
//! 5. invalidate the TLBs for the whole block's IPA range in the VMID
//!    (every page of the span, non-last-level, so cached walks through
//!    `C` go too) and wait for completion;
//! 6. make: store the block in `E` with Release. `P`'s count of valid
//!    entries does not change (`E` was valid and is valid);
//! 7. unlock `C`, then `P`;
//! 8. queue `C` for freeing after a grace period ([`Stage2::reclaim`]):
//!    lockless walkers may still be reading it. `C` keeps its leaves until
//!    then: a reader inside it sees a valid though disconnected table.
//!
//! In-place collapse changes neither the memory mapped nor its attributes,
//! so it needs no cache maintenance. The whole sequence is one
//! break-before-make of `E`; like every other break-before-make here it
//! is not followed by a `DSB ISHST` of its own: a vCPU that misses the new
//! block for a moment faults, and its fault handler finds the block.
//!
//! # Readers (the Linux contract)
//!
//! - A `pte_offset_map` reader that reached `C` before the break keeps
//!   reading `C`'s stale, well-formed leaves until its guard drops: the
//!   guard holds an RCU read-side section, and `C` is freed only after a
//!   grace period.
//! - A `pte_offset_map_rw_nolock` holder that takes `C`'s lock after the
//!   collapse finds the pmd changed (`PmdChanged`, the pmd now a block);
//!   one that takes it before makes the collapse wait at step 2. A fresh
//!   `pte_offset_map_lock` after the collapse returns `None`: it is a
//!   block now.
//! - The walker rechecks the parent after taking a table's lock, so a
//!   writer that reached `C` or `P` locklessly before the collapse retries
//!   from the root.
//!
//! # Copy collapse
//!
//! [`Stage2::collapse_copy`] is khugepaged's collapse for 512 pages that
//! are not contiguous: after the checks of step 3 (everything checked
//! before anything is written), and still under both locks, every
//! writable page is write-protected in place (a permission-only change)
//! and one batched invalidation is waited for, so that no vCPU can write
//! any page any more; then the 512 pages are copied into the caller's
//! 2 MiB block, and steps 4 to 8 install the block with the original
//! attributes (writable again). A vCPU writing during the copy takes a
//! permission fault; its handler must not treat the page as
//! write-protected for good: it retries through `pte_offset_map_lock`,
//! which waits for `C`'s lock, then sees the pmd changed (a block now),
//! and the guest's access is simply retried. The old pages are returned
//! to the caller, who frees them: the invalidation of step 5 has
//! completed by then, so no TLB still maps them (a lockless software
//! reader of `C` may still read their addresses, as any stale read).
//!
//! The copy function is the caller's: it copies through the hypervisor's
//! linear map and does the cache maintenance the guest's memory type
//! needs (cleaning the destination to the point of coherency for a
//! non-cacheable mapping without FWB; invalidating the instruction cache
//! for executable memory without FEAT_DIC), as for any page the
//! hypervisor fills before mapping it.
//!
//! # Split
//!
//! [`Stage2::split`] turns a block into a table of the next level with the
//! same mapping, through the walker's `Cursor::split` (the path `unmap`
//! and `protect` use): the new table is complete before the
//! break-before-make that publishes it.

use crate::addr::{Ipa, PhysAddr, ENTRIES_PER_TABLE, PAGE_SIZE};
use crate::desc::{Desc, MemType};
use crate::error::Error;
use crate::geometry::{level_size, Level};
use crate::memory::TableMemory;
use crate::stage2::{LockMode, Stage2, TableList};
use crate::sync::{lock, Ordering};
use crate::tlb::{TlbBatch, TlbMaintenance};
use crate::walk::{count_new_tables, Cursor, Step, TableCache, Visit, Visitor, WalkError};
use crate::write::EntrySlot;

/// Why an in-place collapse is refused for tables that are otherwise fine.
const NOT_IN_PLACE: &str = "the output is not one aligned, contiguous range";

/// How a table can become a block, as [`Stage2::collapse_check`] sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CollapseKind {
    /// Its leaves map one aligned, contiguous range: [`Stage2::collapse`]
    /// makes the block map the same memory.
    InPlace,
    /// Its pages are scattered: [`Stage2::collapse_copy`] copies them into
    /// a new 2 MiB block.
    ByCopy,
}

/// Collapse eligibility, read inside the walk's RCU section: the entry at
/// `level` must be a table of uniform leaves.
struct Examine {
    level: Level,
    out: Result<CollapseKind, Error>,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for Examine {
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.level < self.level && v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        let ipa = Ipa(v.base);
        if v.level != self.level || !v.old.is_table(v.level) {
            self.out = Err(Error::NotATable { ipa, level: v.level, found: v.old });
            return Ok(Step::Next);
        }
        let s2 = cx.stage2();
        let mut pas = [PhysAddr(0); ENTRIES_PER_TABLE];
        self.out = s2.uniform_leaves(ipa, v.old.addr(), v.level + 1, &mut pas).and_then(|leaf| {
            if Stage2::<M, T>::in_place(&pas, v.level) {
                return Ok(CollapseKind::InPlace);
            }
            if v.level != 2 {
                return Err(Error::NotCollapsible { ipa, level: v.level, why: NOT_IN_PLACE });
            }
            match s2.copy_refusal(leaf, &pas) {
                Some(why) => Err(Error::NotCollapsible { ipa, level: v.level, why }),
                None => Ok(CollapseKind::ByCopy),
            }
        });
        Ok(Step::Next)
    }
}

/// A table that [`Stage2::collapse`] replaced by a block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Collapsed {
    /// First IPA of the block.
    pub ipa: Ipa,
    /// Level of the block: 2 (2 MiB) or 1 (1 GiB).
    pub level: Level,
    /// Output address of the block.
    pub pa: PhysAddr,
}

/// Result of [`Stage2::collapse_copy`]: the block, and the pages it
/// replaced, which the caller frees (no TLB maps them any more).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CopyCollapsed {
    /// The new 2 MiB block.
    pub block: Collapsed,
    /// The page that mapped `block.ipa + i * 4 KiB`, for each `i`.
    pub old_pages: [PhysAddr; ENTRIES_PER_TABLE],
}

/// Split, as a visitor: descends to `level` and splits the block there.
struct SplitOne {
    level: Level,
    cache: TableCache,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for SplitOne {
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        let not_a_block = Error::NotABlock { ipa: Ipa(v.start), level: v.level, found: v.old };
        if v.level < self.level {
            return if v.old.is_table(v.level) {
                Ok(Step::Descend)
            } else {
                Err(WalkError::Fail(not_a_block))
            };
        }
        if !v.old.is_leaf(v.level) {
            return Err(WalkError::Fail(not_a_block));
        }
        // Break-before-make of the block (one IPA invalidated: a block is
        // one TLB entry), counted in `splits`.
        cx.split(v.old, &mut self.cache)?;
        Ok(Step::Next)
    }
}

/// Collapse, steps 1-7, as a visitor: descends to the entry at `level`,
/// takes its table page's lock (the walker rechecks the page attached),
/// the child's, and replaces the table by the block `make` returns.
struct Replace<F, R> {
    level: Level,
    make: Option<F>,
    detached: TableList,
    out: Option<R>,
}

impl<M, T, F, R> Visitor<M, T> for Replace<F, R>
where
    M: TableMemory,
    T: TlbMaintenance,
    F: FnOnce(PhysAddr, &mut TlbBatch<'_, T>) -> Result<(Desc, R), Error>,
{
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        let not_a_table = |level, found| Error::NotATable { ipa: Ipa(v.start), level, found };
        if v.level < self.level {
            return match v.old.is_table(v.level) {
                true => Ok(Step::Descend),
                false => Err(WalkError::Fail(not_a_table(v.level, v.old))),
            };
        }
        // 1. The pmd lock (or pud lock), the table attached.
        let at = cx.locked()?;
        // 2. The entry, stable under that lock, and the child's lock.
        let old = at.get();
        if !old.is_table(self.level) {
            return Err(WalkError::Fail(not_a_table(self.level, old)));
        }
        let s2 = cx.stage2();
        let child = old.addr();
        let _child_lock = (s2.mode == LockMode::Split).then(|| lock(s2.table_lock(child)));
        // 3. Check (and, for a copy, write-protect and copy). Runs once: a
        //    retry of the walk can only come before it.
        let Some(make) = self.make.take() else { return Ok(Step::Next) };
        let (block, r) = make(child, cx.batch)?;
        // 4-6. Break (every page of the span, and the walks through the
        //    table), complete, make (Release: a copied block's contents
        //    before the block).
        s2.table_to_block(at, old, block, cx.batch, &mut self.detached)?;
        self.out = Some(r);
        Ok(Step::Next)
        // 7. Unlock the child here, the parent when the walk leaves its
        //    page.
    }
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<'_, M, T> {
    /// Checks that `ipa` can start a block at `level` in this regime.
    fn check_block(&self, ipa: Ipa, level: Level) -> Result<(), Error> {
        if !(1..=2).contains(&level) || !self.geo.leaf_allowed(level) {
            return Err(Error::Unsupported { why: "no blocks at this level" });
        }
        Error::check_aligned(ipa.get(), level_size(level))?;
        let limit = self.geo.ipa_limit();
        if ipa.get() >= limit {
            return Err(Error::OutOfRange { start: ipa.get(), size: level_size(level), limit });
        }
        Ok(())
    }

    /// Step 3: checks that the 512 entries of `child` (a table at level
    /// `clevel`: its lock held for a collapse; read locklessly, inside an
    /// RCU section, for `collapse_check`) are valid leaves with the same
    /// bits apart from the output address, none with the contiguous hint.
    /// Fills `pas` with their output addresses; returns the first entry.
    fn uniform_leaves(
        &self,
        ipa: Ipa,
        child: PhysAddr,
        clevel: Level,
        pas: &mut [PhysAddr; ENTRIES_PER_TABLE],
    ) -> Result<Desc, Error> {
        let refuse = |why| Error::NotCollapsible { ipa, level: clevel - 1, why };
        // The count is exact under the lock: a quick refusal first.
        if self.mem.ptdesc(child).valid_entries() != ENTRIES_PER_TABLE {
            return Err(refuse("not every entry is valid"));
        }
        let mut first = None;
        for (i, pa) in pas.iter_mut().enumerate() {
            let (slot, _) = self.slot(child, i);
            let d = Desc::from_bits(slot.load(Ordering::Relaxed));
            if !d.is_leaf(clevel) {
                return Err(refuse("an entry is not a leaf"));
            }
            // About 16 adjacent entries: wrong on a collapsed block.
            if d.is_contiguous() {
                return Err(refuse("an entry has the contiguous hint"));
            }
            if first.get_or_insert(d).attr_bits() != d.attr_bits() {
                return Err(refuse("the entries' attributes differ"));
            }
            *pa = d.addr();
        }
        first.ok_or(refuse("empty table"))
    }

    /// Whether the leaves `pas` (uniform, of level `level + 1`) map one
    /// range aligned to a block of `level`: then the block maps the same
    /// memory.
    fn in_place(pas: &[PhysAddr; ENTRIES_PER_TABLE], level: Level) -> bool {
        let (first, step) = (pas[0], level_size(level + 1));
        first.is_aligned(level_size(level))
            && pas.iter().enumerate().all(|(i, pa)| pa.get() == first.get() + i as u64 * step)
    }

    /// Why the pages `pas` (uniform leaves like `leaf`) cannot be copied
    /// into a new block, if they cannot.
    fn copy_refusal(
        &self,
        leaf: Desc,
        pas: &[PhysAddr; ENTRIES_PER_TABLE],
    ) -> Option<&'static str> {
        let mem = leaf.attrs(&self.geo).mem;
        if matches!(mem, MemType::DeviceNGnRnE | MemType::DeviceNGnRE) {
            return Some("device memory is not copied");
        }
        if leaf.has_dbm() {
            return Some("the hardware may set the dirty state during the copy");
        }
        // A tracked page has aliases: a copy would part them.
        if self.rmap.is_some_and(|r| r.any_tracked(pas)) {
            return Some("a page is tracked (aliased or shared)");
        }
        None
    }

    /// Steps 1-8 around `make`, which runs under both locks with the
    /// child table's address: it checks the child (and may write its
    /// entries, with `batch`) and returns the block to install, or an
    /// error after which nothing has changed.
    fn replace_table<R>(
        &self,
        ipa: Ipa,
        level: Level,
        make: impl FnOnce(PhysAddr, &mut TlbBatch<'_, T>) -> Result<(Desc, R), Error>,
    ) -> Result<R, Error> {
        let mut v = Replace { level, make: Some(make), detached: TableList::default(), out: None };
        let mut batch = self.tlb_batch();
        let walked = self.walk_range(ipa.get(), ipa.get() + PAGE_SIZE, &mut v, &mut batch);
        // 8. Free the old table after a grace period; its detachment is
        //    invalidated already.
        self.defer_free(&mut v.detached);
        drop(batch);
        walked?;
        let out = v.out.ok_or(Error::NotATable { ipa, level, found: Desc::INVALID })?;
        self.tstats.collapses.fetch_add(1, Ordering::Relaxed);
        self.reclaim();
        Ok(out)
    }

    /// Replaces the table under the entry at `level` for `ipa` by one block
    /// mapping the same memory, in place: a level-3 table of 512 pages by a
    /// 2 MiB block (`level` 2), or a level-2 table of 512 2 MiB blocks by a
    /// 1 GiB block (`level` 1). The leaves must be valid, have identical
    /// descriptor bits apart from the output address, and map one
    /// physically contiguous range aligned to the block size.
    ///
    /// The old table is freed after a grace period (see the module
    /// documentation for the sequence and what readers see).
    ///
    /// Errors, with nothing changed: `Unsupported` (the regime has no
    /// blocks at `level`, e.g. level 1 when the walk starts at level 2),
    /// `Unaligned` (`ipa` not aligned to the block size), `OutOfRange`,
    /// `NotATable` (the entry is invalid or a block already),
    /// `NotCollapsible` (the table's contents).
    pub fn collapse(&self, ipa: Ipa, level: Level) -> Result<Collapsed, Error> {
        self.check_block(ipa, level)?;
        let pa = self.replace_table(ipa, level, |child, _| {
            let mut pas = [PhysAddr(0); ENTRIES_PER_TABLE];
            let leaf = self.uniform_leaves(ipa, child, level + 1, &mut pas)?;
            if !Self::in_place(&pas, level) {
                return Err(Error::NotCollapsible { ipa, level, why: NOT_IN_PLACE });
            }
            Ok((leaf.as_leaf_of(level), pas[0]))
        })?;
        Ok(Collapsed { ipa, level, pa })
    }

    /// khugepaged's collapse: replaces the level-3 table under the pmd for
    /// `ipa` (2 MiB aligned) by a 2 MiB block at `new_block`, into which
    /// `copy(src, dst)` copies each of the 512 pages first. The pages must
    /// be valid, with identical attributes (Normal memory, not Device), but
    /// need not be contiguous.
    ///
    /// No guest write is lost: the pages are write-protected (and the TLBs
    /// invalidated, waited for) before the first copy, and the block is
    /// installed with the original attributes only after the last. All of
    /// it happens under the pmd's and the table's locks, so `copy` must not
    /// touch this address space's tables. Returns the old pages, for the
    /// caller to free: no TLB maps them any more.
    ///
    /// Errors, with nothing changed and `copy` never called: `Unaligned`
    /// (`ipa` or `new_block`), `OutOfRange` (`ipa`, or `new_block` beyond
    /// the output range), `NotATable`, `NotCollapsible` (an entry not a
    /// valid page, attributes that differ, Device memory, the contiguous
    /// hint or the dirty-bit modifier set, a page the reverse map tracks),
    /// `AlreadyMapped` (an old page
    /// lies inside `new_block`'s range).
    pub fn collapse_copy(
        &self,
        ipa: Ipa,
        new_block: PhysAddr,
        copy: &dyn Fn(PhysAddr, PhysAddr),
    ) -> Result<CopyCollapsed, Error> {
        const LEVEL: Level = 2;
        self.check_block(ipa, LEVEL)?;
        let size = level_size(LEVEL);
        Error::check_aligned(new_block.get(), size)?;
        if (new_block.get() + size - 1) & !(self.geo.oa_mask() | (PAGE_SIZE - 1)) != 0 {
            let limit = self.geo.oa_mask() + PAGE_SIZE;
            return Err(Error::OutOfRange { start: new_block.get(), size, limit });
        }
        let old_pages = self.replace_table(ipa, LEVEL, |child, batch| {
            let mut pas = [PhysAddr(0); ENTRIES_PER_TABLE];
            let leaf = self.uniform_leaves(ipa, child, LEVEL + 1, &mut pas)?;
            if let Some(why) = self.copy_refusal(leaf, &pas) {
                return Err(Error::NotCollapsible { ipa, level: LEVEL, why });
            }
            let inside = |pa: &PhysAddr| pa.get().wrapping_sub(new_block.get()) < size;
            if let Some(i) = pas.iter().position(inside) {
                let existing = leaf.with_addr(pas[i]);
                let ipa = Ipa(ipa.get() + i as u64 * PAGE_SIZE);
                return Err(Error::AlreadyMapped { ipa, level: LEVEL + 1, existing });
            }
            // Checked: from here on nothing fails.
            if leaf.is_writable() {
                let pd = self.mem.ptdesc(child);
                for (i, pa) in pas.iter().enumerate() {
                    let (slot, _) = self.slot(child, i);
                    let at = EntrySlot {
                        slot,
                        pd,
                        level: LEVEL + 1,
                        ipa: Ipa(ipa.get() + i as u64 * PAGE_SIZE),
                    };
                    let old = leaf.with_addr(*pa);
                    // Permission only: in place, gathered.
                    self.change_in_place(at, old, old.without_write(), batch);
                }
                // No vCPU can write any of the pages once this completes.
                batch.flush();
            }
            for (i, &src) in pas.iter().enumerate() {
                copy(src, PhysAddr(new_block.get() + i as u64 * PAGE_SIZE));
            }
            Ok((leaf.with_addr(new_block).as_leaf_of(LEVEL), pas))
        })?;
        Ok(CopyCollapsed { block: Collapsed { ipa, level: LEVEL, pa: new_block }, old_pages })
    }

    /// Whether the table under the entry at `level` for `ipa` could become
    /// a block now, and how: the checks of [`Stage2::collapse`] and
    /// [`Stage2::collapse_copy`], made locklessly (a cheap test for a
    /// policy such as "collapse once a range is fully populated"; the
    /// collapse itself checks again under the locks). Changes nothing.
    ///
    /// Errors: as [`Stage2::collapse`] and [`Stage2::collapse_copy`]
    /// (`NotCollapsible` says which rule failed).
    pub fn collapse_check(&self, ipa: Ipa, level: Level) -> Result<CollapseKind, Error> {
        self.check_block(ipa, level)?;
        let not_a_table = Error::NotATable { ipa, level, found: Desc::INVALID };
        let mut e = Examine { level, out: Err(not_a_table) };
        let mut batch = self.tlb_batch();
        self.walk_range(ipa.get(), ipa.get() + PAGE_SIZE, &mut e, &mut batch)?;
        e.out
    }

    /// Splits the block at `ipa` (level 1: 1 GiB, level 2: 2 MiB) into a
    /// table of the next level mapping the same range with the same
    /// attributes, break-before-make, the table complete before it is
    /// visible. Counted in [`Stats::splits`](crate::Stats::splits).
    ///
    /// Errors, with nothing changed: `Unsupported`, `Unaligned`,
    /// `OutOfRange` (as for [`Stage2::collapse`]), `NotABlock` (the entry
    /// is a table, invalid, or inside a larger block), `OutOfMemory`.
    pub fn split(&self, ipa: Ipa, level: Level) -> Result<(), Error> {
        self.check_block(ipa, level)?;
        // A lockless look first, so that the common refusal allocates
        // nothing; the walk decides under the lock.
        let (at, found) = self.lookup(ipa, Some(level));
        if at != level || !found.is_leaf(level) {
            return Err(Error::NotABlock { ipa, level, found });
        }
        let cache = TableCache::fill(self, 1)?;
        let mut v = SplitOne { level, cache };
        let mut batch = self.tlb_batch();
        let result = self.walk_range(ipa.get(), ipa.get() + level_size(level), &mut v, &mut batch);
        v.cache.release(self);
        drop(batch);
        self.reclaim();
        result
    }
}

/// Unmap and protect, phase 1: counts the tables the blocks the range
/// cuts need to be split.
pub(crate) struct SplitPrepare<'a> {
    pub needed: usize,
    /// For protect: what each leaf becomes. A block it leaves as it is
    /// stays whole.
    pub change: Option<&'a dyn Fn(Desc) -> Desc>,
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for SplitPrepare<'_> {
    fn pre(&mut self, _: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        // Only blocks cut by the range's ends need splitting: nothing
        // covered whole does.
        if v.covers() {
            return Ok(Step::Next);
        }
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        let unchanged = self.change.is_some_and(|c| c(v.old) == v.old);
        if v.old.is_leaf(v.level) && !unchanged {
            let partial = |w: &Visit| !w.covers();
            self.needed += 1 + count_new_tables(v.level + 1, v.start, v.end, &partial);
        }
        Ok(Step::Next)
    }
}
