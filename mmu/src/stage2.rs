//! One guest's stage-2 address space: its root, VMID, lock mode, and the
//! primitives every operation is built from (reaching a table, writing an
//! entry, allocating and freeing tables).

use core::fmt;

use crate::addr::{Ipa, PhysAddr, Vmid, ENTRIES_PER_TABLE, PAGE_SIZE};
use crate::error::Error;
use crate::geometry::{Geometry, Level};
use crate::memory::{table_of, PtDesc, TableMemory};
use crate::rcu::{GpCookie, Rcu};
use crate::rmap::Rmap;
use crate::sync::{lock, new_lock, AtomicU64, Mutex, Ordering, PtLock};
use crate::tlb::{TlbBatch, TlbMaintenance, TlbScope, TlbStats};
use crate::walk::{Cursor, Step, Visit, Visitor, WalkError};

/// How the entries of an address space's tables are locked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockMode {
    /// Split page-table locks: each table page has its own lock, in its
    /// [`PtDesc`] (Linux with `USE_SPLIT_PTE_PTLOCKS`).
    Split,
    /// One lock for the whole address space (Linux's
    /// `mm->page_table_lock`).
    Single,
}

/// Counters of table memory, per address space.
#[derive(Default)]
pub struct TableStats {
    /// Table pages allocated, roots included.
    pub allocated: AtomicU64,
    /// Table pages returned to the allocator.
    pub freed: AtomicU64,
    /// Tables detached and waiting for a grace period.
    pub deferred: AtomicU64,
    /// Blocks split into tables.
    pub splits: AtomicU64,
    /// Tables collapsed into blocks.
    pub collapses: AtomicU64,
}

/// A snapshot of an address space's counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Stats {
    /// Table pages in use now (allocated, not yet freed), roots included.
    pub tables_live: u64,
    /// Table pages allocated so far.
    pub tables_allocated: u64,
    /// Table pages freed so far.
    pub tables_freed: u64,
    /// Tables detached, still waiting for a grace period.
    pub tables_pending: u64,
    /// Blocks split into tables.
    pub splits: u64,
    /// Tables collapsed into blocks (in place or by copying).
    pub collapses: u64,
    /// Per-entry invalidations by IPA.
    pub tlbi_ipa: u64,
    /// Range invalidations by IPA.
    pub tlbi_range: u64,
    /// Whole-VMID invalidations.
    pub tlbi_vmid: u64,
    /// Stage-1 invalidations that followed IPA invalidations.
    pub tlbi_stage1: u64,
}

/// An intrusive singly linked list of table pages, linked through their
/// [`PtDesc::free_next`] (bit 0 marks "has a next").
#[derive(Default)]
pub(crate) struct TableList {
    head: Option<PhysAddr>,
    tail: Option<PhysAddr>,
    len: usize,
}

impl TableList {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push<M: TableMemory>(&mut self, mem: &M, pa: PhysAddr) {
        mem.ptdesc(pa).free_next.store(0, Ordering::Relaxed);
        match self.tail {
            Some(t) => mem.ptdesc(t).free_next.store(pa.get() | 1, Ordering::Relaxed),
            None => self.head = Some(pa),
        }
        self.tail = Some(pa);
        self.len += 1;
    }

    /// Calls `f` on the metadata of every table on the list.
    pub(crate) fn for_each<M: TableMemory>(&self, mem: &M, mut f: impl FnMut(&PtDesc)) {
        self.for_each_page(mem, |_, pd| f(pd));
    }

    /// Calls `f` on every table page on the list and its metadata.
    pub(crate) fn for_each_page<M: TableMemory>(
        &self,
        mem: &M,
        mut f: impl FnMut(PhysAddr, &PtDesc),
    ) {
        let mut cur = self.head;
        while let Some(pa) = cur {
            let pd = mem.ptdesc(pa);
            f(pa, pd);
            let next = pd.free_next.load(Ordering::Relaxed);
            cur = (next & 1 != 0).then_some(PhysAddr(next & !1));
        }
    }

    /// Moves all of `other` to the end of this list, in O(1).
    pub(crate) fn splice<M: TableMemory>(&mut self, mem: &M, other: &mut TableList) {
        let (Some(head), Some(tail)) = (other.head, other.tail) else { return };
        match self.tail {
            Some(t) => mem.ptdesc(t).free_next.store(head.get() | 1, Ordering::Relaxed),
            None => self.head = Some(head),
        }
        self.tail = Some(tail);
        self.len += other.len;
        *other = TableList::default();
    }

    pub(crate) fn peek(&self) -> Option<PhysAddr> {
        self.head
    }

    pub(crate) fn pop<M: TableMemory>(&mut self, mem: &M) -> Option<PhysAddr> {
        let pa = self.head?;
        let next = mem.ptdesc(pa).free_next.load(Ordering::Relaxed);
        self.head = (next & 1 != 0).then_some(PhysAddr(next & !1));
        if self.head.is_none() {
            self.tail = None;
        }
        self.len -= 1;
        Some(pa)
    }
}

/// A stage-2 address space (one VM's tables).
///
/// It owns its table memory handle `M` and TLB maintenance `T`: values, or
/// shared references to a pool and a maintenance object many spaces use
/// (both traits are implemented for `&M` and `&T`). The RCU domain and the
/// reverse map are shared by every space that may alias, so it borrows
/// them (`'a`; `'static` in a hypervisor that keeps them in statics).
///
/// Concurrency: every method takes `&self`; lockless readers are protected
/// by RCU and writers by the page-table locks of [`LockMode`] (see
/// `docs/ARCHITECTURE.md`). Leaf pages belong to the caller: unmapping
/// returns only after their invalidation, so the caller may reuse them.
pub struct Stage2<'a, M: TableMemory, T: TlbMaintenance> {
    pub(crate) geo: Geometry,
    pub(crate) vmid: Vmid,
    pub(crate) mode: LockMode,
    pub(crate) root: PhysAddr,
    /// The VMID and VTTBR value TLB maintenance runs with.
    pub(crate) scope: TlbScope,
    pub(crate) mem: M,
    pub(crate) tlb: T,
    pub(crate) rcu: &'a Rcu,
    /// The single lock of [`LockMode::Single`].
    pub(crate) page_table_lock: PtLock,
    /// Detached tables waiting for their grace period, oldest first.
    pending: Mutex<TableList>,
    pub(crate) tstats: TableStats,
    pub(crate) tlb_stats: TlbStats,
    /// The reverse map this space records its mappings of tracked pages
    /// in, if it takes part in aliasing.
    pub(crate) rmap: Option<&'a Rmap>,
    /// Test-only hook run by `make_coherent` between reading an alias's
    /// table without its lock and locking it (see
    /// [`Stage2::set_alias_hook_for_tests`]).
    #[cfg(feature = "testing")]
    pub(crate) alias_hook: std::sync::Mutex<Option<std::boxed::Box<dyn FnOnce() + Send>>>,
    /// Test-only: `make_coherent` skips its `pmd_same` recheck (see
    /// [`Stage2::set_skip_pmd_recheck_for_tests`]).
    #[cfg(feature = "testing")]
    pub(crate) skip_recheck: core::sync::atomic::AtomicBool,
    /// Test-only fault injection: see
    /// [`Stage2::set_free_immediately_for_tests`]. A `core` atomic, not one
    /// of `crate::sync`: the loom models need not explore a flag that no
    /// model sets.
    #[cfg(feature = "testing")]
    free_immediately: core::sync::atomic::AtomicBool,
}

impl<'a, M: TableMemory, T: TlbMaintenance> Stage2<'a, M, T> {
    /// An empty address space: allocates the (concatenated) root.
    pub fn new(
        geo: Geometry,
        vmid: Vmid,
        mode: LockMode,
        mem: M,
        tlb: T,
        rcu: &'a Rcu,
    ) -> Result<Self, Error> {
        // The VMID width first: a refused VMID allocates and maintains
        // nothing.
        geo.vttbr(PhysAddr(0), vmid)?;
        let n = geo.root_tables();
        let root = mem.alloc_tables(n).ok_or(Error::OutOfMemory { pages: n })?;
        let vttbr = match geo.vttbr(root, vmid) {
            Ok(v) => v,
            Err(e) => {
                // SAFETY: just allocated with the same count, never published.
                unsafe { mem.free_tables(root, n) };
                return Err(e);
            }
        };
        let s2 = Self {
            geo,
            vmid,
            mode,
            root,
            scope: TlbScope { vmid, vttbr },
            mem,
            tlb,
            rcu,
            page_table_lock: new_lock(),
            pending: Mutex::new(TableList::default()),
            tstats: TableStats::default(),
            tlb_stats: TlbStats::default(),
            rmap: None,
            #[cfg(feature = "testing")]
            alias_hook: std::sync::Mutex::new(None),
            #[cfg(feature = "testing")]
            skip_recheck: core::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "testing")]
            free_immediately: core::sync::atomic::AtomicBool::new(false),
        };
        s2.tstats.allocated.fetch_add(n as u64, Ordering::Relaxed);
        for i in 0..n {
            s2.mem.ptdesc(PhysAddr(root.get() + i as u64 * PAGE_SIZE)).init(geo.start_level());
        }
        Ok(s2)
    }

    /// Makes this space record its mappings of the pages `rmap` tracks,
    /// so [`make_coherent`](crate::make_coherent) can find them. Every
    /// space whose mappings may alias uses the same `rmap`, and VMIDs
    /// unique among them.
    pub fn with_rmap(mut self, rmap: &'a Rmap) -> Self {
        self.rmap = Some(rmap);
        self
    }

    /// The reverse map, if any.
    pub fn rmap(&self) -> Option<&'a Rmap> {
        self.rmap
    }

    /// The regime's geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }
    /// The VMID.
    pub fn vmid(&self) -> Vmid {
        self.vmid
    }
    /// The lock mode.
    pub fn lock_mode(&self) -> LockMode {
        self.mode
    }
    /// Physical address of the root table(s).
    pub fn root(&self) -> PhysAddr {
        self.root
    }
    /// The table memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }
    /// The TLB maintenance.
    pub fn tlb(&self) -> &T {
        &self.tlb
    }
    /// The RCU domain lockless walkers use.
    pub fn rcu(&self) -> &'a Rcu {
        self.rcu
    }
    /// The value to load into `VTTBR_EL2`/`VTTBR` for this guest.
    pub fn vttbr(&self) -> u64 {
        self.scope.vttbr
    }
    /// The value to load into `VTCR_EL2`/`VTCR`.
    pub fn vtcr(&self) -> u64 {
        self.geo.vtcr()
    }

    /// `Unaligned` or `OutOfRange` unless `ipa` starts a page of the IPA
    /// space.
    pub(crate) fn check_page_ipa(&self, ipa: Ipa) -> Result<(), Error> {
        Error::check_aligned(ipa.get(), PAGE_SIZE)?;
        let limit = self.geo.ipa_limit();
        if ipa.get() >= limit {
            return Err(Error::OutOfRange { start: ipa.get(), size: PAGE_SIZE, limit });
        }
        Ok(())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (alloc, freed) = (r(&self.tstats.allocated), r(&self.tstats.freed));
        Stats {
            tables_live: alloc - freed,
            tables_allocated: alloc,
            tables_freed: freed,
            tables_pending: r(&self.tstats.deferred),
            splits: r(&self.tstats.splits),
            collapses: r(&self.tstats.collapses),
            tlbi_ipa: r(&self.tlb_stats.by_ipa),
            tlbi_range: r(&self.tlb_stats.by_range),
            tlbi_vmid: r(&self.tlb_stats.whole_vmid),
            tlbi_stage1: r(&self.tlb_stats.stage1),
        }
    }

    /// A TLB batch for this address space's VMID.
    pub fn tlb_batch(&self) -> TlbBatch<'_, T> {
        TlbBatch::new(&self.tlb, &self.tlb_stats, self.scope)
    }

    // ---- table access -------------------------------------------------

    /// The entry slot `index` of the table starting at `table` (a root may
    /// span several pages). The caller keeps the table alive: it is the
    /// root, or was reached inside an RCU read-side section or under a
    /// lock that prevents its freeing.
    #[inline]
    pub(crate) fn slot(&self, table: PhysAddr, index: usize) -> (&AtomicU64, PhysAddr) {
        let page = PhysAddr(table.get() + (index / ENTRIES_PER_TABLE) as u64 * PAGE_SIZE);
        let ptr = self.mem.entries(page);
        // SAFETY: `TableMemory` guarantees `entries` points at 512 entries
        // of an allocated table page; `index % 512` stays inside them. The
        // page is live by this function's contract, and the reference does
        // not outlive `&self`, which the RCU guard or lock the caller holds
        // also borrows.
        let slot = unsafe { &*ptr.add(index % ENTRIES_PER_TABLE) };
        (slot, page)
    }

    /// The metadata of the table page holding an entry.
    #[inline]
    pub(crate) fn ptdesc_of(&self, page: PhysAddr) -> &PtDesc {
        self.mem.ptdesc(table_of(page))
    }

    /// The lock protecting the entries of table page `page`.
    #[inline]
    pub(crate) fn table_lock(&self, page: PhysAddr) -> &PtLock {
        self.lock_in(self.ptdesc_of(page))
    }

    /// The lock protecting the entries of the table page whose metadata
    /// `pd` is.
    #[inline]
    pub(crate) fn lock_in<'p>(&'p self, pd: &'p PtDesc) -> &'p PtLock {
        match self.mode {
            LockMode::Split => &pd.lock,
            LockMode::Single => &self.page_table_lock,
        }
    }

    // ---- table pages --------------------------------------------------

    /// Allocates one zeroed table page for `level`.
    pub(crate) fn alloc_table(&self, level: Level) -> Option<PhysAddr> {
        let pa = self.mem.alloc_tables(1)?;
        self.mem.ptdesc(pa).init(level);
        self.tstats.allocated.fetch_add(1, Ordering::Relaxed);
        Some(pa)
    }

    /// Returns a table page that was never made reachable, or whose grace
    /// period has elapsed.
    pub(crate) fn free_table_now(&self, pa: PhysAddr) {
        // SAFETY: the page came from `alloc_tables(1)` in `alloc_table`;
        // callers pass pages that no walker can reach any more (never
        // published, or detached and past a grace period) and free each
        // once, because it is removed from the list that held it.
        unsafe { self.mem.free_tables(pa, 1) };
        self.tstats.freed.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns the pages of `list` at once (never-published tables).
    pub(crate) fn free_list_now(&self, list: &mut TableList) {
        let n = list.len() as u64;
        let mut pages = core::iter::from_fn(|| list.pop(&self.mem));
        // SAFETY: as in `free_table_now`: each page on the list came from
        // `alloc_table`, is unreachable, and leaves the list as it is freed.
        unsafe { self.mem.free_table_pages(&mut pages) };
        self.tstats.freed.fetch_add(n, Ordering::Relaxed);
    }

    /// Frees detached tables after a grace period: at once if one has
    /// already elapsed since they were detached, else by queueing them for
    /// [`Stage2::reclaim`]. Their detachment has already been invalidated
    /// in the TLBs: the caller flushed its batch first, so that no walk
    /// cache can still reach them when the grace period ends.
    pub(crate) fn defer_free(&self, detached: &mut TableList) {
        if detached.len() == 0 {
            return;
        }
        #[cfg(feature = "testing")]
        if self.free_immediately.load(core::sync::atomic::Ordering::Relaxed) {
            // The deliberate bug of `set_free_immediately_for_tests`.
            self.free_list_now(detached);
            return;
        }
        let cookie: GpCookie = self.rcu.get_state();
        if self.rcu.poll_state(cookie) {
            // A grace period has already elapsed since the tables became
            // unreachable: no reader can hold them.
            self.free_list_now(detached);
            return;
        }
        detached.for_each(&self.mem, |pd| pd.free_after.store(cookie.0, Ordering::Relaxed));
        self.tstats.deferred.fetch_add(detached.len() as u64, Ordering::Relaxed);
        lock(&self.pending).splice(&self.mem, detached);
    }

    /// Frees the detached tables whose grace period has elapsed; returns
    /// how many. Called at the end of every operation; the hypervisor may
    /// also call it when idle.
    pub fn reclaim(&self) -> usize {
        if self.tstats.deferred.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut done = TableList::default();
        {
            let mut pending = lock(&self.pending);
            while let Some(pa) = pending.peek() {
                let cookie = GpCookie(self.mem.ptdesc(pa).free_after.load(Ordering::Relaxed));
                if !self.rcu.poll_state(cookie) {
                    break;
                }
                pending.pop(&self.mem);
                done.push(&self.mem, pa);
            }
        }
        let n = done.len();
        self.tstats.deferred.fetch_sub(n as u64, Ordering::Relaxed);
        self.free_list_now(&mut done);
        n
    }

    /// **Breaks RCU on purpose, for tests only** (feature `testing`): with
    /// `on`, detached tables are freed at once, without waiting for a grace
    /// period, so a lockless reader still inside one reads freed memory.
    /// It exists only to prove that the use-after-free detector of
    /// `mmu/tests/stress.rs` (poisoned, quarantined pages in
    /// [`HostMemory`](crate::testing::HostMemory)) fires when the grace
    /// period is skipped. Never use it otherwise.
    #[cfg(feature = "testing")]
    pub fn set_free_immediately_for_tests(&self, on: bool) {
        self.free_immediately.store(on, core::sync::atomic::Ordering::Relaxed);
    }

    /// Test hook (feature `testing`): the next time
    /// [`make_coherent`](crate::make_coherent) visits an alias in this
    /// space, it runs `hook` after reading the alias's table without its
    /// lock and before locking it: the window in which a collapse or an
    /// unmap can take the table away. Runs once.
    #[cfg(feature = "testing")]
    pub fn set_alias_hook_for_tests(&self, hook: impl FnOnce() + Send + 'static) {
        *self.alias_hook.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::boxed::Box::new(hook));
    }

    /// **Breaks `adjust_pte` on purpose, for tests only** (feature
    /// `testing`): with `on`, an alias's table is written after locking
    /// without rechecking `pmd_same`, so a table collapsed or detached in
    /// the window is written after it left the tables. Exists to show the
    /// race tests of `mmu/tests/coherent.rs` catch that bug.
    #[cfg(feature = "testing")]
    pub fn set_skip_pmd_recheck_for_tests(&self, on: bool) {
        self.skip_recheck.store(on, core::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the deliberate bug of
    /// `Stage2::set_skip_pmd_recheck_for_tests` (feature `testing`) is on.
    #[inline]
    pub(crate) fn skip_pmd_recheck(&self) -> bool {
        #[cfg(feature = "testing")]
        {
            self.skip_recheck.load(core::sync::atomic::Ordering::Relaxed)
        }
        #[cfg(not(feature = "testing"))]
        {
            false
        }
    }

    /// Runs the hook `Stage2::set_alias_hook_for_tests` (feature `testing`) set, if any.
    #[inline]
    pub(crate) fn alias_hook(&self) {
        #[cfg(feature = "testing")]
        {
            let hook = self.alias_hook.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(hook) = hook {
                hook();
            }
        }
    }

    /// Waits for a grace period and frees every detached table. Must not
    /// be called inside an RCU read-side section.
    pub fn rcu_barrier(&self) {
        self.rcu.synchronize();
        self.reclaim();
    }
}

/// Teardown, as a visitor: every table is freed once its subtree is.
/// Only when nothing can reach the tables any more.
struct FreeTables;

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for FreeTables {
    fn pre(&mut self, _: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        Ok(if v.old.is_table(v.level) { Step::Descend } else { Step::Next })
    }

    fn post(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<(), WalkError> {
        cx.stage2().free_table_now(v.old.addr());
        Ok(())
    }
}

impl<M: TableMemory, T: TlbMaintenance> Drop for Stage2<'_, M, T> {
    /// Tears the address space down: its mappings leave the reverse map,
    /// the whole VMID is invalidated, then every table is freed (no reader can hold `&self` any more).
    fn drop(&mut self) {
        if let Some(r) = self.rmap {
            r.note_unmap(self.vmid, Ipa(0), u64::MAX);
        }
        let t = &self.tlb;
        t.sync_tables();
        t.invalidate_vmid(self.scope);
        t.complete();
        self.tlb_stats.whole_vmid.fetch_add(1, Ordering::Relaxed);
        let mut batch = self.tlb_batch();
        // Reads and frees only: it cannot fail.
        let _ = self.walk_range(0, self.geo.ipa_limit(), &mut FreeTables, &mut batch);
        drop(batch);
        let mut pending = core::mem::take(&mut *lock(&self.pending));
        self.free_list_now(&mut pending);
        // SAFETY: the root came from `alloc_tables(root_tables())` in `new`
        // and nothing refers to it now.
        unsafe { self.mem.free_tables(self.root, self.geo.root_tables()) };
        self.tstats.freed.fetch_add(self.geo.root_tables() as u64, Ordering::Relaxed);
    }
}

impl<M: TableMemory, T: TlbMaintenance> fmt::Debug for Stage2<'_, M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage2")
            .field("geometry", &self.geo)
            .field("vmid", &self.vmid)
            .field("mode", &self.mode)
            .field("root", &self.root)
            .finish()
    }
}
