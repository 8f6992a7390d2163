//! Proof that it is safe (issue 4): lockless `pte_offset_map` readers
//! race against writers, faults and a thread that keeps detaching and
//! re-creating level-3 tables (unmap + map, collapse, collapse_copy,
//! split), on several CPUs of one RCU domain.
//!
//! The detector: table pages come from a [`HostMemory`] pool that poisons
//! every freed page with [`POISON`] and keeps the last freed pages in
//! quarantine, so a reader still holding a freed table reads the poison
//! rather than a recycled table. Every entry a reader reads must be
//! invalid (zero) or a page descriptor whose output address follows one
//! of the two patterns the test maps ([`PA_A`] or [`PA_B`] plus the offset
//! of the IPA); the poison, anything else, or a table page that is no
//! longer allocated while the reader's guard holds it, counts as a use
//! after free.
//!
//! With RCU as built the detector must stay silent; with
//! [`Stage2::set_free_immediately_for_tests`] (detached tables freed
//! without a grace period) it must fire: first in a deterministic
//! handshake, then in the randomized stress. Work is bounded by fixed
//! iteration counts (readers also keep reading until the collapsers are
//! done), every wait is on other threads' progress, a panicking thread
//! releases the others, and no assertion depends on timing.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use common::*;
use mmu::pgtable::PteMap;
use mmu::testing::{HostMemory, RecordingTlb, POISON};
use mmu::{
    Attrs, Desc, Error, Features, Geometry, Granularity, Ipa, LockMode, PhysAddr, Rcu, Stage2,
    TableMemory,
};

type S2<'a> = Stage2<'a, &'a HostMemory, &'a RecordingTlb>;

/// The IPA region the ranges live in: 1 GiB, one level-2 table.
const BASE: u64 = 0x4000_0000;
/// 2 MiB ranges whose level-3 tables are detached and re-created.
const RANGES: u64 = 4;
/// A page mapped for the whole test, in the same level-2 table, so that
/// the level-2 table is never emptied and detached: only level-3 tables
/// are (the readers' `pmd` stays in live memory).
const PINNED: u64 = BASE + 511 * MB2;
/// The mapping every range starts with: IPA `BASE + off` → `PA_A + off`.
const PA_A: u64 = 0x8000_0000;
/// Where `collapse_copy` moves a range: IPA `BASE + off` → `PA_B + off`.
const PA_B: u64 = 0x1_0000_0000;
/// Freed table pages kept out of circulation.
const QUARANTINE: usize = 64;

fn geo40() -> Geometry {
    Geometry::aarch64(40, 48, Features::default()).unwrap()
}

fn range(r: u64) -> u64 {
    BASE + r * MB2
}

fn pa_a(ipa: u64) -> u64 {
    PA_A + (ipa - BASE)
}

fn pa_b(ipa: u64) -> u64 {
    PA_B + (ipa - BASE)
}

/// An SMP environment whose pool poisons and quarantines freed pages, and
/// a TLB that records nothing (the stress would fill memory with calls).
fn env(pages: usize) -> Env {
    Env {
        mem: HostMemory::new(pages).with_quarantine(QUARANTINE),
        tlb: RecordingTlb::silent(),
        // SAFETY: each thread has its own CPU number (`thread_cpu`).
        rcu: unsafe { Rcu::with_cpus(thread_cpu, 1) },
    }
}

/// What readers saw that they must not have.
#[derive(Default)]
struct Detector {
    /// Entries (level 3, or the pmd) that held the poison of a freed page.
    poison: AtomicU64,
    /// Entries that were neither invalid, nor the poison, nor a leaf of
    /// the expected patterns (a recycled or corrupted table).
    garbage: AtomicU64,
    /// Table pages found freed while a reader's guard held them.
    freed_under_reader: AtomicU64,
    /// Level-3 entries read (to show the readers did work).
    entries_read: AtomicU64,
    /// Level-3 tables mapped by readers.
    tables_read: AtomicU64,
}

impl Detector {
    /// Use-after-free detections of every kind.
    fn detections(&self) -> u64 {
        self.poison.load(Ordering::Relaxed)
            + self.garbage.load(Ordering::Relaxed)
            + self.freed_under_reader.load(Ordering::Relaxed)
    }

    /// Classifies a value read from the level-`level` entry for `ipa`.
    fn check(&self, level: u8, ipa: u64, bits: u64) {
        if bits == 0 {
            return;
        }
        if bits == POISON {
            self.poison.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let d = Desc::from_bits(bits);
        let ok = match level {
            3 => d.is_leaf(3) && [pa_a(ipa), pa_b(ipa)].contains(&d.addr().get()),
            // A pmd: a table (its memory is checked by reading it), or a
            // block of one of the patterns.
            _ => {
                d.is_table(2) || (d.is_leaf(2) && [pa_a(ipa), pa_b(ipa)].contains(&d.addr().get()))
            }
        };
        if !ok {
            self.garbage.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads all 512 entries of the table `map` holds for the range at
    /// `base`; returns how many held the poison.
    fn scan(&self, map: &PteMap<'_>, base: u64) -> u64 {
        let before = self.poison.load(Ordering::Relaxed);
        for i in 0..512 {
            let ipa = base + i * PAGE;
            let bits = map.get_at(Ipa(ipa)).expect("inside the table's span").bits();
            self.check(3, ipa, bits);
        }
        self.entries_read.fetch_add(512, Ordering::Relaxed);
        self.poison.load(Ordering::Relaxed) - before
    }

    /// The table `map` holds must still be allocated.
    fn check_alive(&self, env: &Env, map: &PteMap<'_>) {
        if !env.mem.is_allocated(map.table()) {
            self.freed_under_reader.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn report(&self) -> String {
        format!(
            "poison {} garbage {} freed-under-reader {} (tables read {}, entries read {})",
            self.poison.load(Ordering::Relaxed),
            self.garbage.load(Ordering::Relaxed),
            self.freed_under_reader.load(Ordering::Relaxed),
            self.tables_read.load(Ordering::Relaxed),
            self.entries_read.load(Ordering::Relaxed),
        )
    }
}

/// A small deterministic generator (xorshift64*), one per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A page IPA in one of the ranges.
    fn page(&mut self) -> u64 {
        BASE + (self.next() % (RANGES * 512)) * PAGE
    }
}

fn map_pages(s2: &S2<'_>, ipa: u64, size: u64) -> Result<(), Error> {
    s2.map(Ipa(ipa), PhysAddr(pa_a(ipa)), size, &Attrs::RAM, Granularity::Pages)
}

/// Ranges mapped with pages at `PA_A`, and the pinned page.
fn set_up(s2: &S2<'_>) {
    map_pages(s2, BASE, RANGES * MB2).unwrap();
    map_pages(s2, PINNED, PAGE).unwrap();
}

/// Tolerates the refusals a racing operation may legitimately meet.
fn tolerate(what: &str, r: Result<(), Error>) {
    match r {
        Ok(())
        | Err(Error::AlreadyMapped { .. })
        | Err(Error::NotCollapsible { .. })
        | Err(Error::NotATable { .. })
        | Err(Error::NotABlock { .. }) => {}
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// One pass of a reader over every range, inside one read-side section.
/// With `hold`, it reads each table twice and yields in between, guard
/// held: the window a premature free would fall into.
fn read_pass(env: &Env, s2: &S2<'_>, det: &Detector, hold: bool) {
    let g = s2.rcu().read_lock();
    for r in 0..RANGES {
        let base = range(r);
        let Some(pmd) = s2.pmd_lookup(&g, Ipa(base)) else {
            panic!("the level-2 table is pinned: the pmd for {base:#x} must exist")
        };
        det.check(2, base, pmd.read().bits());
        // `None`: no table (unmapped, or a block now).
        let Some(map) = s2.pte_offset_map(&pmd) else { continue };
        det.tables_read.fetch_add(1, Ordering::Relaxed);
        det.scan(&map, base);
        if hold {
            std::thread::yield_now();
            det.scan(&map, base);
        }
        det.check_alive(env, &map);
    }
}

/// A locked update of one entry, through `pte_offset_map_lock`: an entry
/// found valid goes invalid, read-only, then back; one found invalid is
/// installed, then cleared again. Readers may see any of these states;
/// the table is left as it was found, so collapses still succeed.
fn write_op(s2: &S2<'_>, ipa: u64) {
    let geo = *s2.geometry();
    let g = s2.rcu().read_lock();
    let Some(pmd) = s2.pmd_lookup(&g, Ipa(ipa)) else { return };
    let Some(mut l) = s2.pte_offset_map_lock(&pmd) else { return };
    let mut batch = s2.tlb_batch();
    let old = l.get_at(Ipa(ipa)).unwrap();
    if old.is_valid() {
        l.set(Ipa(ipa), Desc::INVALID, &mut batch).unwrap();
        l.set(Ipa(ipa), old.with_attrs(&geo, &Attrs::RAM_RO), &mut batch).unwrap();
        l.set(Ipa(ipa), old, &mut batch).unwrap();
    } else {
        let page = Desc::leaf(&geo, 3, PhysAddr(pa_a(ipa)), &Attrs::RAM);
        l.install(Ipa(ipa), page).unwrap();
        l.set(Ipa(ipa), Desc::INVALID, &mut batch).unwrap();
    }
}

/// One round of the collapser over range `r`: every operation that
/// detaches a level-3 table (unmap of the whole range, collapse,
/// collapse_copy) and every one that creates one (map, split).
fn collapse_round(s2: &S2<'_>, r: u64) {
    let base = range(r);
    // Detaches the level-3 table whole.
    s2.unmap(Ipa(base), MB2).unwrap();
    tolerate("map", map_pages(s2, base, MB2));
    // Detaches it (a block at PA_A) ...
    tolerate("collapse", s2.collapse(Ipa(base), 2).map(drop));
    // ... a new table ...
    tolerate("split", s2.split(Ipa(base), 2));
    // ... detached again (a block at PA_B; the "copy" is a no-op: the
    // pages are not real) ...
    tolerate(
        "collapse_copy",
        s2.collapse_copy(Ipa(base), PhysAddr(pa_b(base)), &|_, _| {}).map(drop),
    );
    // ... and a new table of pages at PA_B.
    tolerate("split", s2.split(Ipa(base), 2));
}

/// One side of a two-thread rendezvous that cannot hang: a side that
/// panics drops its channels, and the other side's next `sync` panics
/// too instead of waiting forever (which `std::sync::Barrier` would).
/// Each end must be owned by its thread's code inside the scope (moved
/// into the spawned closure, or a local of the scope's closure), so that
/// unwinding drops it before the scope joins.
struct Rendezvous {
    tx: SyncSender<()>,
    rx: Receiver<()>,
}

impl Rendezvous {
    fn pair() -> (Self, Self) {
        let (tx_a, rx_b) = sync_channel(1);
        let (tx_b, rx_a) = sync_channel(1);
        (Self { tx: tx_a, rx: rx_a }, Self { tx: tx_b, rx: rx_b })
    }
    /// Returns once the other side has called `sync` as often.
    fn sync(&self) {
        self.tx.send(()).expect("the other thread panicked");
        self.rx.recv().expect("the other thread panicked");
    }
}

/// Iteration counts of one stress run.
#[derive(Clone, Copy)]
struct Load {
    readers: usize,
    reader_passes: usize,
    writer_ops: usize,
    fault_ops: usize,
    /// Collapser threads, each with its own ranges.
    collapsers: u64,
    /// Rounds of each collapser.
    collapse_rounds: u64,
}

const LOAD: Load = Load {
    readers: 2,
    reader_passes: 300,
    writer_ops: 3000,
    fault_ops: 1500,
    collapsers: 2,
    collapse_rounds: 100,
};

/// Runs `f` on this thread as CPU `cpu` (see [`Env::as_cpu`]). If `f`
/// panics, the CPU goes offline and `abort` is raised, so that no other
/// thread waits forever for this one (for its quiescent state, or for the
/// end of its loop): the test fails instead of hanging.
fn run_cpu(env: &Env, cpu: usize, abort: &AtomicBool, f: impl FnOnce()) {
    struct OnPanic<'a>(&'a Env, &'a AtomicBool);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.1.store(true, Ordering::SeqCst);
                // `f`'s read guards have been dropped by now.
                self.0.rcu.offline();
            }
        }
    }
    env.as_cpu(cpu, || {
        let _on_panic = OnPanic(env, abort);
        f()
    })
}

/// Runs readers, a writer, a faulting vCPU and the collapsers as CPUs 1..
/// of one RCU domain; the calling thread (CPU 0) idles in an extended
/// quiescent state meanwhile. Returns after every table is freed.
fn stress(mode: LockMode, free_immediately: bool, load: Load) -> Detector {
    let env = env(2048);
    let s2 = env.stage2(geo40(), mode);
    s2.set_free_immediately_for_tests(free_immediately);
    set_up(&s2);
    let det = Detector::default();
    let collapsers_done = AtomicU64::new(0);
    let abort = AtomicBool::new(false);
    env.rcu.enter_extended();
    std::thread::scope(|sc| {
        let (env, s2, det, done, abort) = (&env, &s2, &det, &collapsers_done, &abort);
        let go = move || !abort.load(Ordering::Relaxed);
        for i in 0..load.readers {
            sc.spawn(move || {
                run_cpu(env, 1 + i, abort, || {
                    for pass in 0..load.reader_passes {
                        if !go() {
                            return;
                        }
                        read_pass(env, s2, det, pass % 2 == 0);
                        // Between operations, outside any section.
                        assert!(env.rcu.quiescent(), "a read-side section leaked");
                    }
                    // Keep reading while the collapsers work, so that they
                    // overlap however the threads are scheduled.
                    while go() && done.load(Ordering::Acquire) < load.collapsers {
                        read_pass(env, s2, det, true);
                        assert!(env.rcu.quiescent(), "a read-side section leaked");
                    }
                })
            });
        }
        let cpu = 1 + load.readers;
        sc.spawn(move || {
            run_cpu(env, cpu, abort, || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
                for _ in 0..load.writer_ops {
                    if !go() {
                        return;
                    }
                    write_op(s2, rng.page());
                    assert!(env.rcu.quiescent(), "a read-side section leaked");
                }
            })
        });
        sc.spawn(move || {
            run_cpu(env, cpu + 1, abort, || {
                let mut rng = Rng(0xd1b5_4a32_d192_ed03);
                for _ in 0..load.fault_ops {
                    if !go() {
                        return;
                    }
                    tolerate("fault", map_pages(s2, rng.page(), PAGE));
                    assert!(env.rcu.quiescent(), "a read-side section leaked");
                }
            })
        });
        for k in 0..load.collapsers {
            sc.spawn(move || {
                run_cpu(env, cpu + 2 + k as usize, abort, || {
                    // Collapser `k` owns the ranges `r % collapsers == k`.
                    let mine: Vec<u64> = (0..RANGES).filter(|r| r % load.collapsers == k).collect();
                    for round in 0..load.collapse_rounds {
                        if !go() {
                            return;
                        }
                        collapse_round(s2, mine[round as usize % mine.len()]);
                        if round % 2 == 0 {
                            // Wait for a grace period (the readers keep
                            // reporting until every collapser is done) and
                            // free: tables are freed, leave quarantine and
                            // are reused while readers run. Every other
                            // round only, so that detaches also happen
                            // while a grace period is under way.
                            s2.rcu_barrier();
                        } else {
                            s2.reclaim();
                        }
                        assert!(env.rcu.quiescent(), "a read-side section leaked");
                    }
                    done.fetch_add(1, Ordering::Release);
                })
            });
        }
    });
    env.rcu.exit_extended();

    let st = s2.stats();
    eprintln!(
        "{mode:?} free_immediately={free_immediately}: {}; tables allocated {} freed {} \
         (peak pool {}), collapses {} splits {}, grace periods {}",
        det.report(),
        st.tables_allocated,
        st.tables_freed,
        env.mem.peak(),
        st.collapses,
        st.splits,
        env.rcu.grace_periods(),
    );
    assert!(det.tables_read.load(Ordering::Relaxed) > 0, "the readers read nothing");
    assert!(st.collapses > 0, "no collapse ever succeeded: the collapser did not race");

    // Whatever the race left mapped follows the patterns.
    for ipa in (0..RANGES * 512).map(|p| BASE + p * PAGE) {
        if let Some(t) = s2.translate(Ipa(ipa)) {
            assert!([pa_a(ipa), pa_b(ipa)].contains(&t.pa.get()), "{ipa:#x} → {:?}", t.pa);
        }
    }
    // Everything goes: every table is freed once, after its grace period
    // (a double free panics in the pool).
    s2.unmap(Ipa(BASE), 512 * MB2).unwrap();
    s2.rcu_barrier();
    let roots = s2.geometry().root_tables();
    assert_eq!(s2.stats().tables_pending, 0);
    assert_eq!(s2.stats().tables_live, roots as u64);
    assert_eq!(env.mem.live(), roots, "table pages leaked");
    drop(s2);
    assert_eq!(env.mem.live(), 0);
    det
}

#[test]
fn quarantine_keeps_freed_pages_poisoned_and_out_of_circulation() {
    let mem = HostMemory::new(4).with_quarantine(2);
    let p: Vec<PhysAddr> = (0..4).map(|_| mem.alloc_tables(1).unwrap()).collect();
    // SAFETY: the pages were allocated by `mem`; each is freed once.
    unsafe {
        mem.free_tables(p[0], 1);
        mem.free_tables(p[1], 1);
    }
    assert_eq!((mem.live(), mem.quarantined()), (2, 2));
    assert!(!mem.is_allocated(p[0]));
    // SAFETY: `entries` points at the 512 entries of a page of the pool,
    // which lives as long as `mem`; freed pages stay readable host memory.
    let first = unsafe { &*mem.entries(p[0]) };
    assert_eq!(first.load(Ordering::Relaxed), POISON);
    assert_eq!(mem.alloc_tables(1), None, "both free pages are in quarantine");
    // SAFETY: as above.
    unsafe { mem.free_tables(p[2], 1) };
    // The oldest leaves quarantine: it is the one page allocatable, zeroed.
    assert_eq!(mem.alloc_tables(1), Some(p[0]));
    assert_eq!(first.load(Ordering::Relaxed), 0);
    assert_eq!(mem.alloc_tables(1), None);
}

/// The deterministic proof that the detector works: a reader holds a
/// level-3 table through `pte_offset_map`; the table is detached and, with
/// the grace period skipped, freed at once; the reader then reads poison.
#[test]
fn detector_fires_when_the_grace_period_is_skipped() {
    let env = env(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    set_up(&s2);
    s2.set_free_immediately_for_tests(true);
    let det = Detector::default();
    let table = {
        let g = s2.rcu().read_lock();
        s2.pmd_lookup(&g, Ipa(BASE)).unwrap().read().addr()
    };
    let poisoned = std::thread::scope(|sc| {
        // Both ends live inside the scope: a panic on either side drops
        // its end before the scope waits for the other thread.
        let (main, other) = Rendezvous::pair();
        let (env, s2, det) = (&env, &s2, &det);
        let reader = sc.spawn(move || {
            env.as_cpu(1, || {
                let g = s2.rcu().read_lock();
                let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
                let map = s2.pte_offset_map(&pmd).unwrap();
                assert_eq!(map.table(), table);
                assert_eq!(det.scan(&map, BASE), 0);
                assert_eq!(det.detections(), 0, "{}", det.report());
                // Holding the table; then wait for its free.
                other.sync();
                other.sync();
                let poisoned = det.scan(&map, BASE);
                det.check_alive(env, &map);
                poisoned
            })
        });
        main.sync();
        // Detaches the table whole; the switch frees it at once, poisoned,
        // into quarantine, while the reader still holds it.
        s2.unmap(Ipa(BASE), MB2).unwrap();
        assert!(!env.mem.is_allocated(table), "the switch frees at once");
        assert_eq!(s2.stats().tables_pending, 0);
        main.sync();
        reader.join().unwrap()
    });
    eprintln!("{}", det.report());
    assert_eq!(poisoned, 512, "every entry of the freed table reads the poison");
    assert_eq!(det.poison.load(Ordering::Relaxed), 512);
    assert_eq!(det.freed_under_reader.load(Ordering::Relaxed), 1);
    assert!(det.detections() >= 1, "the detector must fire");
}

/// The same handshake with RCU as built: the detached table stays
/// allocated and intact while the reader's guard is held, and is freed
/// only after the reader has left its section and reported a quiescent
/// state (while it is still online).
#[test]
fn a_held_table_survives_its_detach_until_the_reader_is_quiescent() {
    for mode in MODES {
        let env = env(64);
        let s2 = env.stage2(geo40(), mode);
        set_up(&s2);
        let det = Detector::default();
        let table = {
            let g = s2.rcu().read_lock();
            s2.pmd_lookup(&g, Ipa(BASE)).unwrap().read().addr()
        };
        std::thread::scope(|sc| {
            // As above: both ends inside the scope.
            let (main, other) = Rendezvous::pair();
            let (env, s2, det) = (&env, &s2, &det);
            let reader = sc.spawn(move || {
                env.as_cpu(1, || {
                    {
                        let g = s2.rcu().read_lock();
                        let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
                        let map = s2.pte_offset_map(&pmd).unwrap();
                        assert_eq!(map.table(), table);
                        det.scan(&map, BASE);
                        // Holding the table; then wait for its detach.
                        other.sync();
                        other.sync();
                        // Stale but well-formed: the old leaves, no poison.
                        assert_eq!(det.scan(&map, BASE), 0);
                        det.check_alive(env, &map);
                        for i in 0..512 {
                            let ipa = BASE + i * PAGE;
                            let e = map.get_at(Ipa(ipa)).unwrap();
                            assert!(e.is_leaf(3) && e.addr().get() == pa_a(ipa), "{ipa:#x}");
                        }
                    }
                    assert!(env.rcu.quiescent());
                    // Quiescent; then wait, still online, for the free.
                    other.sync();
                    other.sync();
                })
            });
            main.sync();
            s2.unmap(Ipa(BASE), MB2).unwrap();
            assert_eq!(s2.translate(Ipa(BASE)), None);
            assert_eq!(s2.reclaim(), 0, "{mode:?}: CPU 1 is inside its section");
            assert!(env.mem.is_allocated(table), "{mode:?}: freed under a reader");
            assert_eq!(s2.stats().tables_pending, 1);
            main.sync();
            main.sync();
            // CPU 1 reported after leaving its section: the grace period
            // can end now, and it does on this call.
            assert_eq!(s2.reclaim(), 1, "{mode:?}");
            assert!(!env.mem.is_allocated(table));
            assert_eq!(s2.stats().tables_pending, 0);
            main.sync();
            reader.join().unwrap();
        });
        assert_eq!(det.detections(), 0, "{mode:?}: {}", det.report());
        assert_eq!(det.entries_read.load(Ordering::Relaxed), 1024);
    }
}

/// The stress with RCU as built: not one use after free.
#[test]
fn stress_readers_never_see_a_freed_table() {
    for mode in MODES {
        let det = stress(mode, false, LOAD);
        assert_eq!(det.detections(), 0, "{mode:?}: use after free: {}", det.report());
    }
}

/// The same stress with the grace period skipped: the detector fires.
/// Readers hold each table across a yield, so a free falls into the
/// window almost every time; to stay free of flakiness on a loaded
/// machine, up to five runs are allowed to show it.
#[test]
fn stress_detects_use_after_free_when_the_grace_period_is_skipped() {
    let load = Load { reader_passes: 100, writer_ops: 500, fault_ops: 500, ..LOAD };
    let mut seen = 0;
    for _ in 0..5 {
        seen = stress(LockMode::Split, true, load).detections();
        if seen > 0 {
            break;
        }
    }
    assert!(seen > 0, "five runs without the grace period, and no use after free detected");
}
