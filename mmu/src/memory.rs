//! Where table pages come from, and their out-of-page metadata.

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::geometry::Level;
use crate::sync::{new_lock, AtomicU16, AtomicU64, AtomicU8, Ordering, PtLock};

/// One table entry as it sits in memory: an atomic 64-bit word (loom's,
/// in the `--cfg loom` models). [`TableMemory::entries`] points at 512 of
/// them.
pub type Entry = AtomicU64;

/// Per-table metadata kept outside the table page, like Linux's
/// `struct ptdesc`: the table's split lock, its level, its count of valid
/// entries, and the link used while it waits for a grace period.
pub struct PtDesc {
    /// The split page-table lock of this table.
    pub(crate) lock: PtLock,
    level: AtomicU8,
    /// Valid entries; changed only under the table's lock.
    valid: AtomicU16,
    /// Next table on a deferred-free list (a PA, or 0).
    pub(crate) free_next: AtomicU64,
    /// Grace-period cookie after which the table may be freed.
    pub(crate) free_after: AtomicU64,
    /// The IPA a level-3 table mapped when an unmap detached it with its
    /// leaves: they are reported to the unmap's caller from the detached
    /// table once the detach is invalidated (see `Stage2::unmap_with`).
    pub(crate) detached_base: AtomicU64,
}

/// The metadata of a page that is not a table (the two `PtDesc::new`
/// differ only in const-ness: loom's atomics are not const).
macro_rules! blank_ptdesc {
    () => {
        PtDesc {
            lock: new_lock(),
            level: AtomicU8::new(0),
            valid: AtomicU16::new(0),
            free_next: AtomicU64::new(0),
            free_after: AtomicU64::new(0),
            detached_base: AtomicU64::new(0),
        }
    };
}

impl PtDesc {
    /// Metadata for a page that is not a table.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        blank_ptdesc!()
    }

    /// Metadata for a page that is not a table (loom model).
    #[cfg(loom)]
    pub fn new() -> Self {
        blank_ptdesc!()
    }

    pub(crate) fn init(&self, level: Level) {
        self.level.store(level, Ordering::Relaxed);
        self.valid.store(0, Ordering::Relaxed);
        self.free_next.store(0, Ordering::Relaxed);
    }

    /// The level of the table this page holds.
    pub fn level(&self) -> Level {
        self.level.load(Ordering::Relaxed)
    }

    /// Number of valid entries in the table.
    #[inline]
    pub fn valid_entries(&self) -> usize {
        self.valid.load(Ordering::Relaxed).into()
    }

    #[inline]
    pub(crate) fn add_valid(&self, delta: i32) {
        // Only under the table's lock, so a plain read-modify-write suffices
        // for the count; relaxed because the lock orders it.
        let v = i32::from(self.valid.load(Ordering::Relaxed)) + delta;
        debug_assert!((0..=512).contains(&v), "valid-entry count out of range: {v}");
        self.valid.store(v as u16, Ordering::Relaxed);
    }
}

impl Default for PtDesc {
    fn default() -> Self {
        Self::new()
    }
}

/// The memory translation tables live in: a page allocator plus the means
/// to reach a page and its [`PtDesc`].
///
/// The hypervisor implements it over its frame allocator; the host tests
/// over a pool of host pages that counts pages and can fail on demand.
///
/// # Safety
///
/// Implementors guarantee that:
/// - `alloc_tables(n)` returns `n` (1, 2, 4, 8 or 16) zeroed, physically
///   contiguous pages aligned to `n * PAGE_SIZE` that nothing else uses
///   until they are passed to `free_tables`;
/// - `entries(pa)` for an allocated page returns a pointer to its 512
///   entries, valid for reads and atomic writes until the page is freed;
/// - `ptdesc(pa)` returns the same descriptor for a page every time, for
///   as long as `self` lives (it may outlive the page's allocation).
pub unsafe trait TableMemory {
    /// Allocates `count` contiguous zeroed table pages, or `None`.
    fn alloc_tables(&self, count: usize) -> Option<PhysAddr>;

    /// Returns pages from [`TableMemory::alloc_tables`].
    ///
    /// # Safety
    ///
    /// `pa` and `count` come from one earlier allocation, nothing refers to
    /// the pages any more, and they are freed once.
    unsafe fn free_tables(&self, pa: PhysAddr, count: usize);

    /// Returns many single pages at once (an allocator may take its lock
    /// once for all of them). The default frees them one by one.
    ///
    /// # Safety
    ///
    /// As [`TableMemory::free_tables`] with a count of 1, for every page.
    unsafe fn free_table_pages(&self, pages: &mut dyn Iterator<Item = PhysAddr>) {
        for pa in pages {
            // SAFETY: the caller's contract covers every page.
            unsafe { self.free_tables(pa, 1) };
        }
    }

    /// The entries of the table page at `pa`.
    fn entries(&self, pa: PhysAddr) -> *const Entry;

    /// The metadata of the page at `pa`.
    fn ptdesc(&self, pa: PhysAddr) -> &PtDesc;
}

/// A shared reference is table memory as what it refers to, so an address
/// space can own its memory handle or borrow a pool many spaces share.
// SAFETY: every method forwards to `M`, whose guarantees hold unchanged.
unsafe impl<M: TableMemory + ?Sized> TableMemory for &M {
    #[inline]
    fn alloc_tables(&self, count: usize) -> Option<PhysAddr> {
        (**self).alloc_tables(count)
    }
    unsafe fn free_tables(&self, pa: PhysAddr, count: usize) {
        // SAFETY: the caller's contract is `M::free_tables`'.
        unsafe { (**self).free_tables(pa, count) }
    }
    unsafe fn free_table_pages(&self, pages: &mut dyn Iterator<Item = PhysAddr>) {
        // SAFETY: the caller's contract is `M::free_table_pages`'.
        unsafe { (**self).free_table_pages(pages) }
    }
    #[inline]
    fn entries(&self, pa: PhysAddr) -> *const Entry {
        (**self).entries(pa)
    }
    #[inline]
    fn ptdesc(&self, pa: PhysAddr) -> &PtDesc {
        (**self).ptdesc(pa)
    }
}

/// Rounds a table-entry address down to its 4 KiB table page.
#[inline]
pub(crate) fn table_of(entry_pa: PhysAddr) -> PhysAddr {
    entry_pa.align_down(PAGE_SIZE)
}
