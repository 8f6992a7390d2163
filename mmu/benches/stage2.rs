//! Stage-2 table benchmarks: `mmu` against the `aarch64-paging` crate.
//!
//! Both libraries build the same stage-2 tables on host memory: IPA
//! `0x4000_0000..+1 GiB` to PA `0x8000_0000..` (the 2 MiB-block row uses PA
//! `0x8020_0000..`, which is 2 MiB- but not 1 GiB-aligned, so that neither
//! library may use a 1 GiB block), with guest-RAM attributes that give
//! bit-identical descriptors (read/write, executable, Normal inner/outer
//! write-back, Inner Shareable, AF set: `0x7ff` pages, `0x7fd` blocks).
//!
//! Rows, each for both libraries:
//! 1. map 1 GiB as 4 KiB pages into an empty table, one call;
//! 2. map 1 GiB page by page (262,144 calls of 4 KiB: the fault path);
//! 3. map 1 GiB as 2 MiB blocks, one call;
//! 4. unmap 1 GiB that was mapped as 4 KiB pages;
//! 5. translate 1,000,000 random IPAs inside 1 GiB of 4 KiB pages.
//!
//! `aarch64-paging` runs twice: with its `Mapping` inactive (its fastest
//! path: no break-before-make checks, no TLB maintenance, which is how it
//! builds tables before they go live) and marked active (`mark_active`:
//! what a stage-2 table of a running guest is; its TLBIs compile to nothing
//! on a non-AArch64 host, but the walks that issue them remain). `mmu`
//! always behaves as live.
//!
//! Setup (creating the empty table, pre-mapping for unmap and translate)
//! and teardown are outside the timed region (`iter_custom`). The table
//! memory each library uses is printed once, before the timings.
//!
//! Run: `cargo bench -p mmu` (results in `docs/PERFORMANCE.md`).

use std::alloc::{dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{
    Constraints, MemoryRegion, PageTable, Stage2 as ApStage2, Translation as ApTranslation,
};
use aarch64_paging::Mapping;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use mmu::{
    Attrs, Entry, Features, Geometry, Granularity, Ipa, Level, LockMode, PhysAddr, PtDesc, Rcu,
    Stage2, TableMemory, TlbMaintenance, TlbScope, Vmid,
};

/// First IPA mapped.
const IPA0: u64 = 0x4000_0000;
/// PA the first IPA maps to (4 KiB pages).
const PA0: u64 = 0x8000_0000;
/// PA for the 2 MiB-block row: 2 MiB-aligned, not 1 GiB-aligned.
const PA_2M: u64 = 0x8020_0000;
/// Size mapped by every row.
const GIB: u64 = 1 << 30;
/// Granule.
const PAGE: u64 = 4096;
/// Pages in 1 GiB.
const PAGES_PER_GIB: u64 = GIB / PAGE;
/// Random translations per iteration of row 5.
const LOOKUPS: usize = 1_000_000;
/// Table pages in the `mmu` pool: 1 GiB of pages needs 515.
const POOL_PAGES: usize = 1024;

/// `aarch64-paging` attributes equal to `mmu`'s `Attrs::RAM`.
const AP_RAM: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::SH_INNER)
    .union(Stage2Attributes::ACCESS_FLAG);

// ---- mmu ----------------------------------------------------------------

/// Table memory for the benchmark, as plain as the `aarch64-paging`
/// side's: 4 KiB pages from one arena, a free list, zeroing on
/// allocation, no checks beyond the trait's contract (the tests use
/// `mmu::testing::HostMemory`, which also counts, poisons and fails on
/// demand).
struct BenchMemory {
    pages: Box<[BenchPage]>,
    descs: Box<[PtDesc]>,
    /// Freed allocations by size: `free[k]` holds first pages of runs of
    /// `1 << k` pages.
    free: RefCell<[Vec<usize>; 5]>,
    /// Next never-used page.
    next: Cell<usize>,
    live: Cell<usize>,
    peak: Cell<usize>,
}

#[repr(C, align(4096))]
struct BenchPage([Entry; 512]);

impl BenchMemory {
    /// Where the arena poses in physical memory (fits 40-bit PAs).
    const BASE: u64 = 0x40_0000_0000;

    fn new(pages: usize) -> Self {
        Self {
            pages: (0..pages).map(|_| BenchPage(std::array::from_fn(|_| Entry::new(0)))).collect(),
            descs: (0..pages).map(|_| PtDesc::new()).collect(),
            free: RefCell::new(Default::default()),
            next: Cell::new(0),
            live: Cell::new(0),
            peak: Cell::new(0),
        }
    }

    fn index(&self, pa: PhysAddr) -> usize {
        ((pa.get() - Self::BASE) / PAGE) as usize
    }

    fn live(&self) -> usize {
        self.live.get()
    }
}

// SAFETY: a page is handed out by one allocation (from the free list, or
// the never-used tail of the arena, aligned to the count asked for) until it
// is freed, and is zeroed first; `entries` and `ptdesc` point into boxed
// slices that live as long as `self`.
unsafe impl TableMemory for BenchMemory {
    fn alloc_tables(&self, count: usize) -> Option<PhysAddr> {
        let k = count.trailing_zeros() as usize;
        let reused = self.free.borrow_mut()[k].pop();
        let i = match reused {
            Some(i) => i,
            None => {
                let i = self.next.get().next_multiple_of(count);
                if i + count > self.pages.len() {
                    return None;
                }
                self.next.set(i + count);
                i
            }
        };
        for p in &self.pages[i..i + count] {
            for e in &p.0 {
                e.store(0, Ordering::Relaxed);
            }
        }
        self.live.set(self.live.get() + count);
        self.peak.set(self.peak.get().max(self.live.get()));
        Some(PhysAddr(Self::BASE + i as u64 * PAGE))
    }

    unsafe fn free_tables(&self, pa: PhysAddr, count: usize) {
        self.free.borrow_mut()[count.trailing_zeros() as usize].push(self.index(pa));
        self.live.set(self.live.get() - count);
    }

    #[inline]
    fn entries(&self, pa: PhysAddr) -> *const Entry {
        self.pages[self.index(pa)].0.as_ptr()
    }

    #[inline]
    fn ptdesc(&self, pa: PhysAddr) -> &PtDesc {
        &self.descs[self.index(pa)]
    }
}

/// TLB maintenance that does nothing, as `aarch64-paging`'s TLBIs on a
/// non-AArch64 host.
struct NoTlb;

impl TlbMaintenance for NoTlb {
    fn has_ipa_invalidation(&self) -> bool {
        true
    }
    fn has_range_invalidation(&self) -> bool {
        false
    }
    #[inline]
    fn sync_tables(&self) {}
    fn invalidate_ipa(&self, _: TlbScope, _: Ipa, _: Option<Level>, _: bool) {}
    fn invalidate_ipa_range(&self, _: TlbScope, _: Ipa, _: u64, _: Option<Level>) {}
    fn invalidate_stage1(&self, _: TlbScope) {}
    fn invalidate_vmid(&self, _: TlbScope) {}
    fn complete(&self) {}
}

/// One `mmu` address space's environment.
struct MmuEnv {
    mem: BenchMemory,
    tlb: NoTlb,
    rcu: Rcu,
    geo: Geometry,
}

/// The address space the rows time.
type S2<'e> = Stage2<'e, &'e BenchMemory, &'e NoTlb>;

impl MmuEnv {
    fn new() -> Self {
        Self {
            mem: BenchMemory::new(POOL_PAGES),
            tlb: NoTlb,
            // SAFETY: the benchmarks run on one thread.
            rcu: unsafe { Rcu::new() },
            geo: Geometry::aarch64(40, 48, Features::default()).unwrap(),
        }
    }

    fn stage2(&self) -> S2<'_> {
        Stage2::new(self.geo, Vmid(1), LockMode::Split, &self.mem, &self.tlb, &self.rcu).unwrap()
    }
}

fn mmu_map_pages(s2: &S2<'_>) {
    s2.map(Ipa(IPA0), PhysAddr(PA0), GIB, &Attrs::RAM, Granularity::Pages).unwrap();
}

/// The fault path's shape: the attributes encoded once (as a hypervisor
/// keeps them per VM, Linux's `vm_page_prot`), then one page per call.
fn mmu_map_page_by_page(s2: &S2<'_>) {
    let ram = s2.page_prot(&Attrs::RAM).unwrap();
    for i in 0..PAGES_PER_GIB {
        let off = i * PAGE;
        s2.map_page_prot(Ipa(IPA0 + off), PhysAddr(PA0 + off), ram).unwrap();
    }
}

fn mmu_map_blocks(s2: &S2<'_>) {
    s2.map(Ipa(IPA0), PhysAddr(PA_2M), GIB, &Attrs::RAM, Granularity::Largest).unwrap();
}

fn mmu_translate_all(s2: &S2<'_>, ipas: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &ipa in ipas {
        let t = s2.translate(Ipa(black_box(ipa))).unwrap();
        sum = sum.wrapping_add(t.pa.get());
    }
    sum
}

// ---- aarch64-paging -------------------------------------------------------

/// Host tables for `aarch64-paging`: pages from the global allocator
/// (`PageTable::new`, as its `IdTranslation` does), identity "physical"
/// addresses, and counts of the pages in use.
#[derive(Default)]
struct CountingTranslation {
    live: usize,
    peak: usize,
}

impl ApTranslation<Stage2Attributes> for CountingTranslation {
    fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
        let table = PageTable::new();
        self.live += 1;
        self.peak = self.peak.max(self.live);
        (table, PhysicalAddress(table.as_ptr() as usize))
    }

    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        self.live -= 1;
        // SAFETY: the caller passes a table from `allocate_table`, which got
        // it from `PageTable::new`: the global allocator with the layout of
        // `PageTable`. It is freed once.
        unsafe { dealloc(table.as_ptr().cast(), Layout::new::<PageTable<Stage2Attributes>>()) };
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        NonNull::new(pa.0 as *mut PageTable<Stage2Attributes>).unwrap()
    }
}

type ApMap = Mapping<CountingTranslation, ApStage2>;

/// An empty `aarch64-paging` stage-2 table (root at level 1: 39-bit IPA,
/// since it cannot concatenate root tables), live or not.
fn ap_new(live: bool) -> ApMap {
    let m = Mapping::new(CountingTranslation::default(), 1, ApStage2);
    if live {
        m.mark_active();
    }
    m
}

/// Drops a mapping made by [`ap_new`] (an active one may not be dropped).
fn ap_drop(m: ApMap) {
    if m.active() {
        m.mark_inactive();
    }
    drop(m);
}

fn ap_region(ipa: u64, size: u64) -> MemoryRegion {
    MemoryRegion::new(ipa as usize, (ipa + size) as usize)
}

fn ap_map_pages(m: &mut ApMap) {
    m.map_range(
        &ap_region(IPA0, GIB),
        PhysicalAddress(PA0 as usize),
        AP_RAM,
        Constraints::NO_BLOCK_MAPPINGS,
    )
    .unwrap();
}

fn ap_map_page_by_page(m: &mut ApMap) {
    for i in 0..PAGES_PER_GIB {
        let off = i * PAGE;
        m.map_range(
            &ap_region(IPA0 + off, PAGE),
            PhysicalAddress((PA0 + off) as usize),
            AP_RAM,
            Constraints::NO_BLOCK_MAPPINGS,
        )
        .unwrap();
    }
}

fn ap_map_blocks(m: &mut ApMap) {
    m.map_range(
        &ap_region(IPA0, GIB),
        PhysicalAddress(PA_2M as usize),
        AP_RAM,
        Constraints::empty(),
    )
    .unwrap();
}

/// Its unmap: `map_range` with flags lacking `VALID`. A range covering a
/// whole table entry drops that entry and frees its subtree at once.
fn ap_unmap(m: &mut ApMap) {
    m.map_range(
        &ap_region(IPA0, GIB),
        PhysicalAddress(0),
        Stage2Attributes::empty(),
        Constraints::empty(),
    )
    .unwrap();
}

/// The leaf descriptor bits and output address for `ipa`, found with
/// `walk_range` (the crate has no single-address lookup).
fn ap_translate(m: &ApMap, ipa: u64) -> Option<(usize, u64)> {
    let mut out = None;
    m.walk_range(&ap_region(ipa, 1), &mut |_, d, level| {
        if d.is_valid() {
            let span = (PAGE as usize) << (9 * (3 - level));
            let oa = d.output_address().0;
            out = Some((oa | d.flags().bits(), (oa + (ipa as usize & (span - 1))) as u64));
        }
        Ok(())
    })
    .unwrap();
    out
}

fn ap_translate_all(m: &ApMap, ipas: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &ipa in ipas {
        let (_, pa) = ap_translate(m, black_box(ipa)).unwrap();
        sum = sum.wrapping_add(pa);
    }
    sum
}

// ---- shared -----------------------------------------------------------------

/// `n` IPAs inside `IPA0..IPA0 + 1 GiB`, from a fixed-seed xorshift64.
fn random_ipas(n: usize) -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            IPA0 + (x % GIB)
        })
        .collect()
}

const KIB_PER_PAGE: u64 = PAGE / 1024;

/// Prints the table memory of both libraries once, and checks that they
/// build the same leaves.
fn memory_report() {
    let env = MmuEnv::new();
    let mut lines = Vec::new();
    let mut row = |what: &str, mmu_pages: u64, ap_pages: usize| {
        lines.push(format!(
            "  {what:<42} mmu {mmu_pages:>4} pages ({:>5} KiB)   aarch64-paging {ap_pages:>4} pages ({:>5} KiB)",
            mmu_pages * KIB_PER_PAGE,
            ap_pages as u64 * KIB_PER_PAGE
        ));
    };

    let s2 = env.stage2();
    let mut ap = ap_new(false);
    row("empty table (root)", s2.stats().tables_live, ap.translation().live);

    mmu_map_pages(&s2);
    ap_map_pages(&mut ap);
    let s = s2.stats();
    assert_eq!(s.tables_live, env.mem.live() as u64);
    row("1 GiB of 4 KiB pages", s.tables_live, ap.translation().live);
    for ipa in random_ipas(4096) {
        let t = s2.translate(Ipa(ipa)).unwrap();
        let (bits, pa) = ap_translate(&ap, ipa).unwrap();
        assert_eq!(t.desc.bits(), bits as u64, "descriptors differ at {ipa:#x}");
        assert_eq!(t.pa.get(), pa);
    }

    s2.unmap(Ipa(IPA0), GIB).unwrap();
    let before_barrier = s2.stats();
    s2.rcu_barrier();
    ap_unmap(&mut ap);
    row("after unmap, before rcu_barrier", before_barrier.tables_live, ap.translation().live);
    row("after unmap + rcu_barrier", s2.stats().tables_live, ap.translation().live);
    assert_eq!(s2.stats().tables_live, env.mem.live() as u64);
    let mmu_peak = env.mem.peak.get();
    let ap_peak = ap.translation().peak;
    drop(s2);
    ap_drop(ap);

    let s2 = env.stage2();
    let mut ap = ap_new(false);
    mmu_map_blocks(&s2);
    ap_map_blocks(&mut ap);
    for ipa in random_ipas(4096) {
        let t = s2.translate(Ipa(ipa)).unwrap();
        let (bits, pa) = ap_translate(&ap, ipa).unwrap();
        assert_eq!(t.level, 2);
        assert_eq!(t.desc.bits(), bits as u64, "descriptors differ at {ipa:#x}");
        assert_eq!(t.pa.get(), pa);
    }
    row("1 GiB of 2 MiB blocks", s2.stats().tables_live, ap.translation().live);
    drop(s2);
    ap_drop(ap);
    row("peak during the 4 KiB map/unmap", mmu_peak as u64, ap_peak);

    eprintln!("table memory (4 KiB table pages; mmu root = 2 concatenated pages for 40-bit IPA):");
    for l in lines {
        eprintln!("{l}");
    }
    eprintln!("  descriptors of both libraries identical on 8192 sampled IPAs");
}

/// Times `op` on a fresh empty `mmu` table per iteration.
fn time_mmu(iters: u64, env: &MmuEnv, op: fn(&S2<'_>)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let s2 = env.stage2();
        let t = Instant::now();
        op(black_box(&s2));
        total += t.elapsed();
        drop(s2);
    }
    total
}

/// Times `op` on a fresh empty `aarch64-paging` table per iteration.
fn time_ap(iters: u64, live: bool, op: fn(&mut ApMap)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut m = ap_new(live);
        let t = Instant::now();
        op(black_box(&mut m));
        total += t.elapsed();
        ap_drop(m);
    }
    total
}

/// A group of one row: both libraries, flat sampling, 10 samples.
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    warm_up_ms: u64,
    measure_ms: u64,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(warm_up_ms))
        .measurement_time(Duration::from_millis(measure_ms));
    g
}

/// Benchmarks an "into an empty table" row for both libraries.
fn map_row(
    c: &mut Criterion,
    name: &str,
    (warm_up_ms, measure_ms): (u64, u64),
    mmu_op: fn(&S2<'_>),
    ap_op: fn(&mut ApMap),
) {
    let env = MmuEnv::new();
    let mut g = group(c, name, warm_up_ms, measure_ms);
    g.bench_function("mmu", |b| b.iter_custom(|n| time_mmu(n, &env, mmu_op)));
    g.bench_function("aarch64-paging", |b| b.iter_custom(|n| time_ap(n, false, ap_op)));
    g.bench_function("aarch64-paging-live", |b| b.iter_custom(|n| time_ap(n, true, ap_op)));
    g.finish();
}

fn benches(c: &mut Criterion) {
    memory_report();

    map_row(c, "map_1g_4k_one_call", (300, 3000), mmu_map_pages, ap_map_pages);
    // The floor under row 1: the stores any library must make to map 1 GiB
    // of pages from an empty table (allocate and zero its 512 level-3
    // tables, write their 262,144 entries), at this machine's memory
    // bandwidth, in the same arena `mmu` uses.
    {
        let env = MmuEnv::new();
        let mut g = group(c, "map_1g_4k_one_call", 300, 3000);
        g.bench_function("store-bandwidth-floor", |b| {
            b.iter_custom(|n| {
                let mut total = Duration::ZERO;
                let mut tables = Vec::with_capacity(512);
                for _ in 0..n {
                    let t = Instant::now();
                    tables.extend((0..512).map(|_| env.mem.alloc_tables(1).unwrap()));
                    for (k, &table) in tables.iter().enumerate() {
                        // SAFETY: `table` is an allocated page of the arena,
                        // which this loop alone uses.
                        let entries = unsafe { &*(env.mem.entries(table) as *const [Entry; 512]) };
                        for (i, e) in entries.iter().enumerate() {
                            let pa = PA0 + ((k * 512 + i) as u64) * PAGE;
                            e.store(black_box(pa | 0x7ff), Ordering::Relaxed);
                        }
                    }
                    total += t.elapsed();
                    for table in tables.drain(..) {
                        // SAFETY: allocated above, unpublished, freed once.
                        unsafe { env.mem.free_tables(table, 1) };
                    }
                }
                total
            })
        });
        g.finish();
    }
    map_row(c, "map_1g_4k_page_by_page", (500, 5000), mmu_map_page_by_page, ap_map_page_by_page);
    map_row(c, "map_1g_2m_blocks_one_call", (200, 1000), mmu_map_blocks, ap_map_blocks);

    // Row 4: unmap 1 GiB of pages; mapping it again is setup.
    {
        let env = MmuEnv::new();
        let mut g = group(c, "unmap_1g_4k", 200, 1000);
        g.bench_function("mmu", |b| {
            b.iter_custom(|n| {
                let mut total = Duration::ZERO;
                for _ in 0..n {
                    let s2 = env.stage2();
                    mmu_map_pages(&s2);
                    let t = Instant::now();
                    black_box(&s2).unmap(Ipa(IPA0), GIB).unwrap();
                    total += t.elapsed();
                    s2.rcu_barrier();
                    drop(s2);
                }
                total
            })
        });
        for (id, live) in [("aarch64-paging", false), ("aarch64-paging-live", true)] {
            g.bench_function(id, |b| {
                b.iter_custom(|n| {
                    let mut total = Duration::ZERO;
                    for _ in 0..n {
                        let mut m = ap_new(live);
                        ap_map_pages(&mut m);
                        let t = Instant::now();
                        ap_unmap(black_box(&mut m));
                        total += t.elapsed();
                        ap_drop(m);
                    }
                    total
                })
            });
        }
        g.finish();
    }

    // Row 5: 1M random translations in 1 GiB of pages, mapped once.
    {
        let ipas = random_ipas(LOOKUPS);
        let env = MmuEnv::new();
        let s2 = env.stage2();
        mmu_map_pages(&s2);
        let mut ap = ap_new(false);
        ap_map_pages(&mut ap);
        assert_eq!(mmu_translate_all(&s2, &ipas), ap_translate_all(&ap, &ipas));

        let mut g = group(c, "translate_1m_random", 500, 3000);
        g.bench_function("mmu", |b| b.iter(|| mmu_translate_all(black_box(&s2), &ipas)));
        g.bench_function("aarch64-paging", |b| b.iter(|| ap_translate_all(black_box(&ap), &ipas)));
        g.finish();
        ap_drop(ap);
    }
}

criterion_group!(stage2, benches);
criterion_main!(stage2);
