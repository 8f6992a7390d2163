//! Shared pieces of the loom models (`mmu/tests/loom_*.rs`): a tiny table
//! memory built from loom atomics that checks every access to a table page
//! against the page's lifetime, a TLB that does nothing, CPU numbers for
//! the RCU domain, and a way to share one `Stage2` with loom threads.
//!
//! The lifetime checks are of two kinds:
//! - an *oracle* in plain (non-loom) memory, in the order loom runs the
//!   threads: a generation count per page, odd while allocated. A page
//!   reached through `TableMemory::entries` must be allocated, and a test
//!   holding a table checks its generation has not moved ([`Memory::touch`]);
//! - loom's causality check: each page has a `loom::cell::UnsafeCell`
//!   that every access reads (`with`) and allocation and freeing write
//!   (`with_mut`), so loom fails the model if a free does not
//!   *happen after* every access to the page, under the weak memory model
//!   loom explores, even when the free comes later in the run.
#![allow(dead_code, missing_docs)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64 as StdU64, AtomicUsize as StdUsize, Ordering as StdOrdering};

use mmu::Entry as AtomicU64;
use mmu::{
    CacheMaintenance, Ipa, Level, PhysAddr, PtDesc, Rcu, TableMemory, TlbMaintenance, TlbScope,
    PAGE_SIZE,
};

/// Physical address of the first pool page.
pub const BASE: u64 = 0x4000_0000;

/// A `loom::cell::UnsafeCell<()>` used only for its access tracking.
pub struct Life(loom::cell::UnsafeCell<()>);
// SAFETY: the cell holds `()`; it is only used for loom's checks of who
// accesses it when, which loom itself synchronises.
unsafe impl Sync for Life {}

struct Page {
    entries: Box<[AtomicU64; 512]>,
    desc: PtDesc,
    /// Even: free (or never used); odd: allocated. Plain memory: the order
    /// loom runs things in.
    generation: StdU64,
    life: Life,
}

/// A pool of table pages that never reuses a page: a freed page stays
/// free, so any later access through the pool is caught.
pub struct Memory {
    pages: Vec<Page>,
    next: StdUsize,
}

impl Memory {
    pub fn new(pages: usize) -> Self {
        let pages = (0..pages)
            .map(|_| Page {
                entries: Box::new(core::array::from_fn(|_| AtomicU64::new(0))),
                desc: PtDesc::new(),
                generation: StdU64::new(0),
                life: Life(loom::cell::UnsafeCell::new(())),
            })
            .collect();
        Self { pages, next: StdUsize::new(0) }
    }

    fn page(&self, pa: PhysAddr) -> &Page {
        let i = (pa.get().wrapping_sub(BASE) / PAGE_SIZE) as usize;
        assert!(
            pa.get().is_multiple_of(PAGE_SIZE) && i < self.pages.len(),
            "PA {pa:?} outside the pool"
        );
        &self.pages[i]
    }

    /// The page's generation now (odd: allocated).
    pub fn generation(&self, pa: PhysAddr) -> u64 {
        self.page(pa).generation.load(StdOrdering::SeqCst)
    }

    pub fn is_allocated(&self, pa: PhysAddr) -> bool {
        self.generation(pa) % 2 == 1
    }

    /// A test still holding table `pa`, which it found at generation
    /// `generation`, checks the page was not freed meanwhile and accesses
    /// it (for loom's causality check against the free).
    pub fn touch(&self, pa: PhysAddr, generation: u64) {
        let p = self.page(pa);
        assert_eq!(
            p.generation.load(StdOrdering::SeqCst),
            generation,
            "table page {pa:?} freed while still in use"
        );
        p.life.0.with(|_| ());
    }

    /// Reads entry `index` of page `pa` (allocated or not), for checks
    /// after the threads have been joined.
    pub fn raw_entry(&self, pa: PhysAddr, index: usize) -> u64 {
        self.page(pa).entries[index].load(loom::sync::atomic::Ordering::Relaxed)
    }
}

// SAFETY: pages are handed out once and never reused (`next` only grows),
// zeroed (created so), page-aligned in the pool's PA space; `entries`
// points at the page's 512 entries, which live as long as the pool;
// `ptdesc` is per page and lives as long as the pool.
unsafe impl TableMemory for Memory {
    fn alloc_tables(&self, count: usize) -> Option<PhysAddr> {
        assert_eq!(count, 1, "the loom pool hands out single pages");
        let i = self.next.fetch_add(1, StdOrdering::SeqCst);
        let p = self.pages.get(i)?;
        assert_eq!(p.generation.fetch_add(1, StdOrdering::SeqCst), 0);
        p.life.0.with_mut(|_| ());
        Some(PhysAddr(BASE + i as u64 * PAGE_SIZE))
    }

    unsafe fn free_tables(&self, pa: PhysAddr, count: usize) {
        assert_eq!(count, 1);
        let p = self.page(pa);
        let g = p.generation.fetch_add(1, StdOrdering::SeqCst);
        assert!(g % 2 == 1, "double free of table page {pa:?}");
        // Loom: the free must happen after every access to the page.
        p.life.0.with_mut(|_| ());
    }

    fn entries(&self, pa: PhysAddr) -> *const AtomicU64 {
        let p = self.page(pa);
        assert!(
            p.generation.load(StdOrdering::SeqCst) % 2 == 1,
            "access to free table page {pa:?}"
        );
        // Loom: this access must happen after the allocation and before the
        // free.
        p.life.0.with(|_| ());
        p.entries.as_ptr()
    }

    fn ptdesc(&self, pa: PhysAddr) -> &PtDesc {
        &self.page(pa).desc
    }
}

/// TLB maintenance that does nothing (the models check the tables).
pub struct NoTlb;

impl TlbMaintenance for NoTlb {
    fn has_ipa_invalidation(&self) -> bool {
        true
    }
    fn has_range_invalidation(&self) -> bool {
        false
    }
    fn sync_tables(&self) {}
    fn invalidate_ipa(&self, _: TlbScope, _: Ipa, _: Option<Level>, _: bool) {}
    fn invalidate_ipa_range(&self, _: TlbScope, _: Ipa, _: u64, _: Option<Level>) {}
    fn invalidate_stage1(&self, _: TlbScope) {}
    fn invalidate_vmid(&self, _: TlbScope) {}
    fn complete(&self) {}
}

impl CacheMaintenance for NoTlb {
    fn clean_inval_poc(&self, _: PhysAddr, _: u64) {}
}

loom::thread_local! {
    static CPU: Cell<usize> = Cell::new(usize::MAX);
}

/// The CPU the calling loom thread runs as (`Rcu::with_cpus`'s `cpu_id`).
pub fn cpu() -> usize {
    CPU.with(|c| c.get())
}

/// Makes the calling loom thread CPU `i`.
pub fn set_cpu(i: usize) {
    CPU.with(|c| c.set(i));
}

/// Makes the calling loom thread CPU `i` and brings it online.
pub fn start_cpu(rcu: &Rcu, i: usize) {
    CPU.with(|c| c.set(i));
    rcu.online(i);
}

/// Memory, TLB and RCU of one model execution, leaked for the threads'
/// `'static` closures and reclaimed by [`World::reclaim`].
pub struct World {
    pub mem: Memory,
    pub tlb: NoTlb,
    pub rcu: Rcu,
}

impl World {
    /// A world with `pages` table pages and every CPU offline.
    pub fn leak(pages: usize) -> &'static World {
        Box::leak(Box::new(World {
            mem: Memory::new(pages),
            tlb: NoTlb,
            // SAFETY: each loom thread has its own CPU number (`cpu`).
            rcu: unsafe { Rcu::with_cpus(cpu, 0) },
        }))
    }

    /// Frees a world from [`World::leak`].
    ///
    /// # Safety
    ///
    /// Nothing refers to `w` any more: every thread that had it was joined
    /// and every `Stage2` over it dropped.
    pub unsafe fn reclaim(w: &'static World) {
        // SAFETY: `w` came from `Box::leak` and is no longer referred to.
        drop(unsafe { Box::from_raw(w as *const World as *mut World) });
    }
}

/// A loom model builder with the given preemption bound (unless
/// `LOOM_MAX_PREEMPTIONS` sets another) and a branch limit large enough
/// for the table walks.
pub fn builder(preemptions: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(preemptions);
    }
    b.max_branches = b.max_branches.max(100_000);
    b
}

/// Prints a model's coverage counters when `LOOM_COVERAGE` is set (the
/// models print nothing otherwise).
pub fn report(model: &str, counters: &[(&str, usize)]) {
    if std::env::var_os("LOOM_COVERAGE").is_some() {
        let list: Vec<String> = counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("{model}: {}", list.join(" "));
    }
}

/// The address space the `pte_offset_map` models share: ARMv7 LPAE with a
/// 30-bit IPA (the root is the level-2 table, one page), one page mapped at
/// [`X`] so that its pmd points at a level-3 table.
pub mod fixture {
    use std::sync::Arc;

    use mmu::{Attrs, Geometry, Granularity, Ipa, LockMode, PhysAddr, Stage2, Vmid, PAGE_SIZE};

    use super::{start_cpu, Memory, NoTlb, World};

    /// The IPA both threads work at (its 2 MiB span is one pmd).
    pub const X: u64 = 0x20_0000;
    pub const MB2: u64 = 1 << 21;
    /// Output of the first mapping of `X`, and of the one made after the
    /// detach.
    pub const PA_OLD: u64 = 0x8000_0000;
    pub const PA_NEW: u64 = 0x8800_0000;
    /// What CPU 1 installs at `X + 4 KiB`.
    pub const PA_A: u64 = 0x9000_0000;

    pub type S2 = Stage2<'static, &'static Memory, &'static NoTlb>;

    pub fn geometry() -> Geometry {
        Geometry::armv7(30).unwrap()
    }

    /// A world of four pages, the address space with `size` bytes from `X`
    /// mapped with pages to `PA_OLD..` through table T1, and T1. CPU 0 (the
    /// caller) is offline on return.
    pub fn new(mode: LockMode, size: u64) -> (&'static World, Arc<S2>, PhysAddr) {
        let w = World::leak(4);
        start_cpu(&w.rcu, 0);
        let s2 = Stage2::new(geometry(), Vmid(1), mode, &w.mem, &w.tlb, &w.rcu).unwrap();
        s2.map(Ipa(X), PhysAddr(PA_OLD), size, &Attrs::RAM, Granularity::Pages).unwrap();
        let t1 = pmd_table(&s2).expect("T1");
        w.rcu.offline();
        (w, Arc::new(s2), t1)
    }

    /// CPU 2's part: detach T1 (unmap the whole 2 MiB), map `X` again
    /// (table T2), and reclaim once more after a yield. Returns whether it
    /// freed T1 (else the teardown does).
    pub fn detach_and_remap(w: &'static World, s2: &S2) -> bool {
        start_cpu(&w.rcu, 2);
        s2.unmap(Ipa(X), MB2).unwrap();
        s2.map(Ipa(X), PhysAddr(PA_NEW), PAGE_SIZE, &Attrs::RAM, Granularity::Pages).unwrap();
        loom::thread::yield_now();
        s2.reclaim();
        w.rcu.offline();
        s2.stats().tables_freed == 1
    }

    /// The table the pmd for `X` points at, if any.
    pub fn pmd_table(s2: &S2) -> Option<PhysAddr> {
        let g = s2.rcu().read_lock();
        let d = s2.pmd_lookup(&g, Ipa(X))?.read();
        d.is_table(2).then(|| d.addr())
    }

    /// After the threads: CPU 0 back online; `X` maps `PA_NEW` through a
    /// table T2 other than `t1`. Returns T2 and what `X + 4 KiB` maps to.
    pub fn final_state(w: &'static World, s2: &S2, t1: PhysAddr) -> (PhysAddr, Option<PhysAddr>) {
        w.rcu.online(0);
        let t2 = pmd_table(s2).expect("T2");
        assert_ne!(t2, t1);
        let tr = s2.translate(Ipa(X)).expect("X mapped again");
        assert_eq!((tr.pa, tr.level), (PhysAddr(PA_NEW), 3));
        (t2, s2.translate(Ipa(X + PAGE_SIZE)).map(|t| t.pa))
    }

    /// Drops the address space, checks it freed `tables`, frees the world.
    pub fn teardown(w: &'static World, s2: Arc<S2>, tables: &[PhysAddr]) {
        drop(Arc::into_inner(s2).expect("threads joined"));
        for &t in tables {
            assert!(!w.mem.is_allocated(t), "{t:?} not freed");
        }
        // SAFETY: the threads were joined and the address space dropped.
        unsafe { World::reclaim(w) };
    }
}
