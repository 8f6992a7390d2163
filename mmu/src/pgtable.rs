//! The `pte_offset_map` family: Linux's page-table accessors, with their
//! contract expressed in types.
//!
//! | Linux                          | here                                   |
//! |--------------------------------|----------------------------------------|
//! | `pgd_offset(mm, addr)`         | [`Stage2::pgd_offset`]                 |
//! | `p4d/pud/pmd_offset(e, addr)`  | [`Stage2::p4d_offset`] ... (folded levels return their input) |
//! | `pte_offset_map(pmd, addr)`    | [`Stage2::pte_offset_map`] → [`PteMap`]: read-only, lockless |
//! | `pte_offset_map_lock(...)`     | [`Stage2::pte_offset_map_lock`] → [`PteMapLock`]: the write capability |
//! | `pte_offset_map_ro_nolock(...)`| [`Stage2::pte_offset_map_ro_nolock`] → [`PteRoNoLock`]: no write method at all |
//! | `pte_offset_map_rw_nolock(...)`| [`Stage2::pte_offset_map_rw_nolock`] → [`PteRwNoLock`]: writes only after [`PteRwNoLock::lock`] rechecks `pmd_same` |
//! | `pte_unmap[_unlock]()`         | dropping the guard                     |
//! | `pte_lockptr`, `pmd_lock`      | [`Stage2::pte_lockptr`], [`Stage2::pmd_lock`] |
//!
//! Every guard holds an RCU read-side section for its lifetime, so the
//! level-3 table it points into stays valid memory even if it is detached
//! meanwhile (then it is "a valid though empty and disconnected table":
//! reads may be stale, and nothing can write to it, because every write
//! path has rechecked the pmd under the table's lock).
//!
//! A `pmd` given to these functions is an [`EntryRef`] reached through
//! `pmd_offset` inside the caller's own RCU section (Jann Horn's "case 3"
//! in the seeds): the section keeps the level-2 table alive while we read
//! the entry once, locklessly.
//!
//! The type rules, checked by the compiler. This compiles: writing through
//! an `rw_nolock` result after `lock()` has rechecked the pmd.
//!
//! ```no_run
//! use mmu::{Desc, Ipa, Stage2, TableMemory, TlbMaintenance};
//! fn clear<M: TableMemory, T: TlbMaintenance>(s2: &Stage2<'_, M, T>, ipa: Ipa) {
//!     let g = s2.rcu().read_lock();
//!     let pmd = s2.pmd_lookup(&g, ipa).unwrap();
//!     let rw = s2.pte_offset_map_rw_nolock(&pmd).unwrap();
//!     let mut batch = s2.tlb_batch();
//!     if let Ok(mut locked) = rw.lock() {
//!         locked.set(ipa, Desc::INVALID, &mut batch).unwrap();
//!     };
//! }
//! ```
//!
//! These do not: writing through `rw_nolock` without the lock and
//! recheck,
//!
//! ```compile_fail
//! use mmu::{Desc, Ipa, Stage2, TableMemory, TlbMaintenance};
//! fn clear<M: TableMemory, T: TlbMaintenance>(s2: &Stage2<'_, M, T>, ipa: Ipa) {
//!     let g = s2.rcu().read_lock();
//!     let pmd = s2.pmd_lookup(&g, ipa).unwrap();
//!     let mut rw = s2.pte_offset_map_rw_nolock(&pmd).unwrap();
//!     let mut batch = s2.tlb_batch();
//!     rw.set(ipa, Desc::INVALID, &mut batch).unwrap();
//! }
//! ```
//!
//! writing through `ro_nolock`, even with its lock taken,
//!
//! ```compile_fail
//! use mmu::{Desc, Ipa, Stage2, TableMemory, TlbMaintenance};
//! fn clear<M: TableMemory, T: TlbMaintenance>(s2: &Stage2<'_, M, T>, ipa: Ipa) {
//!     let g = s2.rcu().read_lock();
//!     let pmd = s2.pmd_lookup(&g, ipa).unwrap();
//!     let mut ro = s2.pte_offset_map_ro_nolock(&pmd).unwrap().lock();
//!     let mut batch = s2.tlb_batch();
//!     ro.set(ipa, Desc::INVALID, &mut batch).unwrap();
//! }
//! ```
//!
//! writing through a lockless `pte_offset_map`,
//!
//! ```compile_fail
//! use mmu::{Desc, Ipa, Stage2, TableMemory, TlbMaintenance};
//! fn clear<M: TableMemory, T: TlbMaintenance>(s2: &Stage2<'_, M, T>, ipa: Ipa) {
//!     let g = s2.rcu().read_lock();
//!     let pmd = s2.pmd_lookup(&g, ipa).unwrap();
//!     let mut map = s2.pte_offset_map(&pmd).unwrap();
//!     let mut batch = s2.tlb_batch();
//!     map.set(ipa, Desc::INVALID, &mut batch).unwrap();
//! }
//! ```
//!
//! and keeping a table guard beyond the RCU section its pmd was found in.
//!
//! ```compile_fail
//! use mmu::{Ipa, Stage2, TableMemory, TlbMaintenance};
//! fn leak<M: TableMemory, T: TlbMaintenance>(s2: &Stage2<'_, M, T>, ipa: Ipa) {
//!     let g = s2.rcu().read_lock();
//!     let pmd = s2.pmd_lookup(&g, ipa).unwrap();
//!     let map = s2.pte_offset_map(&pmd).unwrap();
//!     drop(g);
//!     let _ = map.get();
//! }
//! ```
//!
//! Nor does moving a table guard, or the RCU guard under it, to another
//! CPU: the section it holds is counted on the CPU that opened it
//! ([`RcuReadGuard`] is neither `Send` nor `Sync`).
//!
//! ```compile_fail,E0277
//! use mmu::{Ipa, Stage2, TableMemory, TlbMaintenance};
//! fn send<M: TableMemory + Sync, T: TlbMaintenance + Sync>(s2: &Stage2<'_, M, T>, ipa: Ipa) {
//!     let g = s2.rcu().read_lock();
//!     let pmd = s2.pmd_lookup(&g, ipa).unwrap();
//!     let locked = s2.pte_offset_map_lock(&pmd).unwrap();
//!     std::thread::scope(|sc| {
//!         sc.spawn(move || drop(locked));
//!     });
//! }
//! ```

use crate::addr::{Ipa, PhysAddr, ENTRIES_PER_TABLE, PAGE_SIZE};
use crate::desc::{pmd_same, Desc, Pmd, Pte};
use crate::error::Error;
use crate::geometry::{level_shift, Level};
use crate::memory::{PtDesc, TableMemory};
use crate::rcu::{load_entry, RcuReadGuard};
use crate::stage2::Stage2;
use crate::sync::{lock, AtomicU64, Ordering, PtLock, PtLockGuard};
use crate::tlb::{TlbBatch, TlbMaintenance};
use crate::write::{EntrySlot, Vacant};

/// A reference to one entry of a live table: what Linux passes around as
/// `pgd_t *`, `pud_t *` or `pmd_t *`. It cannot outlive the RCU section
/// (`'g`) it was reached in.
#[derive(Clone, Copy)]
pub struct EntryRef<'g> {
    slot: &'g AtomicU64,
    page: PhysAddr,
    level: Level,
    ipa: Ipa,
    /// The section the entry was reached in.
    rcu: &'g RcuReadGuard<'g>,
}

impl EntryRef<'_> {
    /// Reads the entry once, locklessly (Linux's `pmdp_get_lockless`).
    #[inline]
    pub fn read(&self) -> Desc {
        Desc::from_bits(load_entry(self.slot))
    }
    /// The level of the table holding the entry.
    pub fn level(&self) -> Level {
        self.level
    }
    /// The IPA the entry was looked up for.
    pub fn ipa(&self) -> Ipa {
        self.ipa
    }
    /// The table page holding the entry.
    pub fn table(&self) -> PhysAddr {
        self.page
    }
}

/// The level-3 table a guard points into, its metadata, and the entry
/// for its IPA.
struct PteTable<'a> {
    entries: &'a [AtomicU64; ENTRIES_PER_TABLE],
    pd: &'a PtDesc,
    pa: PhysAddr,
    ipa: Ipa,
}

impl<'a> PteTable<'a> {
    /// Where the entry for `ipa` lives, to write it through
    /// [`Stage2::write_entry`].
    #[inline]
    fn entry_slot(&self, ipa: Ipa) -> Result<EntrySlot<'a>, Error> {
        let slot = &self.entries[self.index(ipa)?];
        let ipa = ipa.align_down(1 << level_shift(3));
        Ok(EntrySlot { slot, pd: self.pd, level: 3, ipa })
    }

    fn index(&self, ipa: Ipa) -> Result<usize, Error> {
        // The table maps one 2 MiB-aligned span; other IPAs are not in it.
        if ipa.get() >> level_shift(2) != self.ipa.get() >> level_shift(2) {
            let span = 1 << level_shift(2);
            let limit = (self.ipa.get() | (span - 1)) + 1;
            return Err(Error::OutOfRange { start: ipa.get(), size: 1 << level_shift(3), limit });
        }
        Ok(((ipa.get() >> level_shift(3)) as usize) % ENTRIES_PER_TABLE)
    }

    fn get(&self, ipa: Ipa) -> Result<Pte, Error> {
        Ok(Desc::from_bits(self.entries[self.index(ipa)?].load(Ordering::Acquire)))
    }
}

/// Result of [`Stage2::pte_offset_map`]: a lockless, read-only view of a
/// level-3 table. Reads may be stale; the memory stays valid until drop.
#[must_use = "dropping the guard is pte_unmap()"]
pub struct PteMap<'a> {
    table: PteTable<'a>,
    pmdval: Pmd,
    _rcu: RcuReadGuard<'a>,
}

impl PteMap<'_> {
    /// The entry for the IPA the table was mapped for.
    pub fn get(&self) -> Pte {
        self.get_at(self.table.ipa).unwrap_or_default()
    }
    /// The entry for another IPA in the same table's 2 MiB span.
    pub fn get_at(&self, ipa: Ipa) -> Result<Pte, Error> {
        self.table.get(ipa)
    }
    /// The pmd value this table was reached through.
    pub fn pmdval(&self) -> Pmd {
        self.pmdval
    }
    /// The table's physical address.
    pub fn table(&self) -> PhysAddr {
        self.table.pa
    }
}

/// Result of [`Stage2::pte_offset_map_lock`]: the table is locked and was
/// attached to the pmd when the lock was taken (and stays so until drop,
/// because detaching it needs this lock). The only way to write entries.
#[must_use = "dropping the guard is pte_unmap_unlock()"]
pub struct PteMapLock<'a, M: TableMemory, T: TlbMaintenance> {
    map: PteMap<'a>,
    ptl: &'a PtLock,
    _guard: PtLockGuard<'a>,
    s2: &'a Stage2<'a, M, T>,
}

impl<'a, M: TableMemory, T: TlbMaintenance> PteMapLock<'a, M, T> {
    /// The (stable) entry for the guard's IPA.
    pub fn get(&self) -> Pte {
        self.map.get()
    }
    /// The (stable) entry for another IPA of the same table.
    pub fn get_at(&self, ipa: Ipa) -> Result<Pte, Error> {
        self.map.get_at(ipa)
    }
    /// The pmd value, rechecked when the lock was taken.
    pub fn pmdval(&self) -> Pmd {
        self.map.pmdval
    }
    /// The lock held (to compare with another table's, as `adjust_pte`
    /// does).
    pub fn ptl(&self) -> &'a PtLock {
        self.ptl
    }
    /// The table's physical address.
    pub fn table(&self) -> PhysAddr {
        self.map.table.pa
    }

    /// Replaces the entry for `ipa` (in this table) with `new`, doing the
    /// maintenance the change needs: none for a new mapping, a gathered
    /// invalidation for a removal or permission change, break-before-make
    /// otherwise. A new page that the reverse map tracks is recorded as
    /// mapped (`TooManyMappings` if it has no room). Returns the old entry.
    ///
    /// `Tracked` when the entry maps a tracked page and `new` would remove
    /// or replace it: that takes [`Stage2::unmap_with`], which forgets the
    /// mapping after invalidating it and says who owns the page.
    pub fn set(&mut self, ipa: Ipa, new: Pte, batch: &mut TlbBatch<'_, T>) -> Result<Pte, Error> {
        if new.is_valid() {
            self.check_page(new)?;
        }
        let at = self.entry_slot(ipa)?;
        let old = at.get();
        let keeps_page = new.is_valid() && new.addr() == old.addr();
        if old.is_leaf(3) && !keeps_page && self.s2.rmap.is_some_and(|r| r.is_tracked(old.addr())) {
            return Err(Error::Tracked { pa: old.addr() });
        }
        self.s2.write_entry(at, old, new, batch)?;
        Ok(old)
    }

    /// Checks `new` is a page descriptor `map` could have written: a
    /// level-3 leaf whose output address fits and whose attributes pass
    /// [`Attrs::validate`](crate::Attrs::validate). (At level 3 a table
    /// descriptor has the page encoding, with attributes no `Attrs` gives.)
    fn check_page(&self, new: Pte) -> Result<(), Error> {
        let geo = &self.s2.geo;
        if !new.is_leaf(3) {
            return Err(Error::BadAttributes { why: "not a page descriptor" });
        }
        if new.addr().get() & !geo.oa_mask() != 0 {
            let limit = geo.oa_mask() + PAGE_SIZE;
            return Err(Error::OutOfRange { start: new.addr().get(), size: PAGE_SIZE, limit });
        }
        let attrs = new.attrs(geo);
        attrs.validate(geo)?;
        // The contiguous hint spans 16 entries; one entry cannot set it.
        if attrs.contiguous {
            return Err(Error::BadAttributes { why: "contiguous hint on one entry" });
        }
        // Only what `Attrs` encodes: no stray bits a decode would drop.
        if new.with_attrs(geo, &attrs) != new {
            return Err(Error::BadAttributes { why: "bits no attribute encodes" });
        }
        Ok(())
    }

    /// The slot of `ipa` in this table, for writers in this crate.
    pub(crate) fn entry_slot(&self, ipa: Ipa) -> Result<EntrySlot<'a>, Error> {
        self.map.table.entry_slot(ipa)
    }

    /// The address space the table belongs to.
    pub(crate) fn stage2(&self) -> &'a Stage2<'a, M, T> {
        self.s2
    }

    /// Maps `ipa` with `new` only if its entry is invalid (the fault-path
    /// install: no invalidation needed), recording a tracked page as
    /// mapped. `AlreadyMapped` with the entry found when it is valid;
    /// `OutOfRange` when `ipa` is outside the table; `BadAttributes` or
    /// `OutOfRange` when `new` is not a page descriptor `map` could write;
    /// `TooManyMappings`.
    pub fn install(&mut self, ipa: Ipa, new: Pte) -> Result<(), Error> {
        self.check_page(new)?;
        self.install_checked(ipa, new)
    }

    /// [`PteMapLock::install`] for a descriptor already known to be a
    /// valid page (built by `map` from validated attributes).
    #[inline]
    pub(crate) fn install_checked(&mut self, ipa: Ipa, new: Pte) -> Result<(), Error> {
        let at = self.entry_slot(ipa)?;
        let Some(vacant) = Vacant::of(at) else {
            return Err(Error::AlreadyMapped { ipa: at.ipa, level: 3, existing: at.get() });
        };
        // Making an invalid entry needs no invalidation.
        self.s2.make_entry(vacant, new)
    }
}

/// Result of [`Stage2::pte_offset_map_ro_nolock`]: the table and the lock
/// it would use, unlocked. It has no method that writes.
#[must_use = "dropping the guard is pte_unmap()"]
pub struct PteRoNoLock<'a> {
    map: PteMap<'a>,
    ptl: &'a PtLock,
}

impl<'a> PteRoNoLock<'a> {
    /// The entry, read locklessly.
    pub fn get(&self) -> Pte {
        self.map.get()
    }
    /// Another entry of the same table, read locklessly.
    pub fn get_at(&self, ipa: Ipa) -> Result<Pte, Error> {
        self.map.get_at(ipa)
    }
    /// The lock that protects this table.
    pub fn ptl(&self) -> &'a PtLock {
        self.ptl
    }
    /// Takes the lock to read stable entries. Still read-only.
    pub fn lock(self) -> PteRoLocked<'a> {
        let guard = lock(self.ptl);
        PteRoLocked { map: self.map, _guard: guard }
    }
}

/// A [`PteRoNoLock`] with its lock held: stable reads, no writes.
#[must_use = "dropping the guard unlocks and unmaps"]
pub struct PteRoLocked<'a> {
    map: PteMap<'a>,
    _guard: PtLockGuard<'a>,
}

impl PteRoLocked<'_> {
    /// The entry.
    pub fn get(&self) -> Pte {
        self.map.get()
    }
    /// Another entry of the same table.
    pub fn get_at(&self, ipa: Ipa) -> Result<Pte, Error> {
        self.map.get_at(ipa)
    }
}

/// The table changed under a [`PteRwNoLock`] (`!pmd_same`): it was detached
/// or replaced before the lock was taken. Walk again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PmdChanged {
    /// What the pmd holds now.
    pub now: Pmd,
}

/// Result of [`Stage2::pte_offset_map_rw_nolock`]: the table, its lock
/// (not taken) and the pmd value read. Writing needs [`PteRwNoLock::lock`],
/// which takes the lock and rechecks `pmd_same(pmdval, *pmd)`.
#[must_use = "dropping the guard is pte_unmap()"]
pub struct PteRwNoLock<'a, M: TableMemory, T: TlbMaintenance> {
    map: PteMap<'a>,
    ptl: &'a PtLock,
    pmd: EntryRef<'a>,
    s2: &'a Stage2<'a, M, T>,
}

impl<'a, M: TableMemory, T: TlbMaintenance> PteRwNoLock<'a, M, T> {
    /// The entry, read locklessly.
    pub fn get(&self) -> Pte {
        self.map.get()
    }
    /// The pmd value the table was reached through.
    pub fn pmdval(&self) -> Pmd {
        self.map.pmdval
    }
    /// The lock that protects this table.
    pub fn ptl(&self) -> &'a PtLock {
        self.ptl
    }

    /// The slot of `ipa` in this table. Only for writers in this crate
    /// that hold [`PteRwNoLock::ptl`] (taken by them, or by their caller)
    /// and have rechecked [`PteRwNoLock::pmd_unchanged`] under it.
    pub(crate) fn entry_slot(&self, ipa: Ipa) -> Result<EntrySlot<'a>, Error> {
        self.map.table.entry_slot(ipa)
    }

    /// `pmd_same(pmdval, *pmd)`: whether the pmd still holds the value the
    /// table was reached through.
    pub(crate) fn pmd_unchanged(&self) -> bool {
        pmd_same(self.map.pmdval, self.pmd.read())
    }

    /// Takes the table's lock and rechecks that the pmd still points at
    /// this table; only then is writing allowed.
    pub fn lock(self) -> Result<PteMapLock<'a, M, T>, PmdChanged> {
        let guard = lock(self.ptl);
        let now = self.pmd.read();
        if !pmd_same(self.map.pmdval, now) {
            return Err(PmdChanged { now });
        }
        Ok(PteMapLock { map: self.map, ptl: self.ptl, _guard: guard, s2: self.s2 })
    }
}

/// Result of [`Stage2::pmd_lock`]: the lock protecting a level-2 entry,
/// held. The entry is stable while it is held.
#[must_use = "dropping the guard unlocks"]
pub struct PmdLocked<'a> {
    pmd: EntryRef<'a>,
    _guard: PtLockGuard<'a>,
}

impl PmdLocked<'_> {
    /// The (stable) pmd value.
    pub fn get(&self) -> Pmd {
        self.pmd.read()
    }
}

impl<'s, M: TableMemory, T: TlbMaintenance> Stage2<'s, M, T> {
    #[inline]
    fn entry_at<'g>(
        &'g self,
        rcu: &'g RcuReadGuard<'g>,
        table: PhysAddr,
        level: Level,
        ipa: Ipa,
    ) -> EntryRef<'g> {
        let (slot, page) = self.slot(table, self.geo.index(level, ipa.get()));
        EntryRef { slot, page, level, ipa, rcu }
    }

    /// Follows `e` down to `level` while the levels in between are folded
    /// or tables; `None` at the first entry that is not a table.
    #[inline]
    fn descend<'g>(&'g self, mut e: EntryRef<'g>, level: Level) -> Option<EntryRef<'g>> {
        while e.level < level {
            let d = e.read();
            if !d.is_table(e.level) {
                return None;
            }
            e = self.entry_at(e.rcu, d.addr(), e.level + 1, e.ipa);
        }
        Some(e)
    }

    /// The entry one level below `e` for the same IPA, if `e` holds a
    /// table (the step `pud_offset`, `pmd_offset` and the `pte` look-up
    /// each take).
    #[inline]
    pub(crate) fn entry_below<'g>(&'g self, e: EntryRef<'g>) -> Option<EntryRef<'g>> {
        self.descend(e, e.level + 1)
    }

    /// The root entry for `ipa` (Linux's `pgd_offset`), or `None` if `ipa`
    /// is outside the IPA space. The guard keeps what it leads to alive.
    #[inline]
    pub fn pgd_offset<'g>(&'g self, rcu: &'g RcuReadGuard<'_>, ipa: Ipa) -> Option<EntryRef<'g>> {
        (ipa.get() < self.geo.ipa_limit())
            .then(|| self.entry_at(rcu, self.root, self.geo.start_level(), ipa))
    }

    /// Always folded with the 4 KiB stage-2 layout: returns `pgd`.
    #[inline]
    pub fn p4d_offset<'g>(&'g self, pgd: EntryRef<'g>) -> EntryRef<'g> {
        pgd
    }

    /// The level-1 entry under `p4d` (itself, when the walk starts at level
    /// 1 or 2 and the level is folded), or `None` if `p4d` holds no table.
    #[inline]
    pub fn pud_offset<'g>(&'g self, p4d: EntryRef<'g>) -> Option<EntryRef<'g>> {
        self.descend(p4d, 1)
    }

    /// The level-2 entry under `pud`, or `None` if `pud` holds no table (it
    /// is invalid or a 1 GiB block).
    #[inline]
    pub fn pmd_offset<'g>(&'g self, pud: EntryRef<'g>) -> Option<EntryRef<'g>> {
        self.descend(pud, 2)
    }

    /// pgd → p4d → pud → pmd for `ipa` in one call.
    #[inline]
    pub fn pmd_lookup<'g>(&'g self, rcu: &'g RcuReadGuard<'_>, ipa: Ipa) -> Option<EntryRef<'g>> {
        let pgd = self.pgd_offset(rcu, ipa)?;
        let pud = self.pud_offset(self.p4d_offset(pgd))?;
        self.pmd_offset(pud)
    }

    /// Linux's `pte_offset_map`: enters an RCU read-side section, reads
    /// the pmd once and returns the level-3 table for `pmd.ipa()`, or
    /// `None` if the pmd holds no table (invalid, a block, or bad).
    #[inline]
    pub fn pte_offset_map<'a>(&'a self, pmd: &EntryRef<'a>) -> Option<PteMap<'a>> {
        if pmd.level != 2 {
            return None;
        }
        // Nested in the section `pmd` was reached in, which outlives it.
        let rcu = pmd.rcu.nest();
        let pmdval = pmd.read();
        if !pmdval.is_table(2) {
            return None;
        }
        let ptr = self.mem.entries(pmdval.addr());
        // SAFETY: `pmdval` was read inside `rcu` from a live level-2 entry
        // and points at a level-3 table page; `TableMemory` makes `ptr`
        // point at its 512 entries, and RCU keeps the page allocated until
        // `rcu`, stored in the returned guard next to this reference,
        // drops. The guard never hands the reference out.
        let entries = unsafe { &*(ptr as *const [AtomicU64; ENTRIES_PER_TABLE]) };
        let pd = self.mem.ptdesc(pmdval.addr());
        Some(PteMap {
            table: PteTable { entries, pd, pa: pmdval.addr(), ipa: pmd.ipa },
            pmdval,
            _rcu: rcu,
        })
    }

    /// Linux's `pte_lockptr`: the lock for the level-3 table `pmdval`
    /// points at (its split lock, or the address-space lock).
    pub fn pte_lockptr(&self, pmdval: Pmd) -> &PtLock {
        self.table_lock(pmdval.addr())
    }

    /// The lock protecting the level-2 entry `pmd` (Linux's
    /// `pmd_lockptr`): the split lock of the table holding it, or the
    /// address-space lock.
    pub fn pmd_lockptr(&self, pmd: &EntryRef<'_>) -> &PtLock {
        self.table_lock(pmd.page)
    }

    /// Linux's `pmd_lock`: takes the lock of the table holding `pmd`.
    pub fn pmd_lock<'a>(&'a self, pmd: &EntryRef<'a>) -> PmdLocked<'a> {
        PmdLocked { pmd: *pmd, _guard: lock(self.pmd_lockptr(pmd)) }
    }

    /// Linux's `pte_offset_map_lock`: maps the level-3 table, takes its
    /// lock, and rechecks the pmd; if the table was detached or replaced
    /// meanwhile it retries, so on success the table is attached and
    /// stays so until the guard drops. `None` if there is no table.
    #[inline]
    pub fn pte_offset_map_lock<'a>(&'a self, pmd: &EntryRef<'a>) -> Option<PteMapLock<'a, M, T>> {
        loop {
            let map = self.pte_offset_map(pmd)?;
            let ptl = self.lock_in(map.table.pd);
            let guard = lock(ptl);
            if pmd_same(map.pmdval, pmd.read()) {
                return Some(PteMapLock { map, ptl, _guard: guard, s2: self });
            }
            drop(guard);
            drop(map);
            crate::sync::spin_hint();
        }
    }

    /// Linux's `pte_offset_map_ro_nolock`: the table and its lock, not
    /// taken. For reading only: the result has no write method.
    pub fn pte_offset_map_ro_nolock<'a>(&'a self, pmd: &EntryRef<'a>) -> Option<PteRoNoLock<'a>> {
        let map = self.pte_offset_map(pmd)?;
        let ptl = self.pte_lockptr(map.pmdval);
        Some(PteRoNoLock { map, ptl })
    }

    /// Linux's `pte_offset_map_rw_nolock`: the table, its lock (not taken)
    /// and the pmd value read. Writing requires [`PteRwNoLock::lock`],
    /// which rechecks `pmd_same` under the lock.
    pub fn pte_offset_map_rw_nolock<'a>(
        &'a self,
        pmd: &EntryRef<'a>,
    ) -> Option<PteRwNoLock<'a, M, T>> {
        let map = self.pte_offset_map(pmd)?;
        let ptl = self.pte_lockptr(map.pmdval);
        Some(PteRwNoLock { map, ptl, pmd: *pmd, s2: self })
    }
}
