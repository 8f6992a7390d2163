//! Loom model of `pte_offset_map_lock` against a concurrent detach, on the
//! real `Stage2` (`loom_common::fixture`: ARMv7 LPAE, 30-bit IPA, the root
//! is the level-2 table) with one level-3 table T1 mapped at `X`:
//!
//! - CPU 1 looks the pmd up, takes `pte_offset_map_lock` on it (which
//!   retries while the recheck fails) and installs a page at `X + 4 KiB`;
//! - CPU 2 unmaps the whole 2 MiB (detaching T1 in one piece, under the
//!   root's lock then T1's), maps `X` again (a new table T2) and reclaims.
//!
//! Checked in every execution loom explores:
//! - while CPU 1 holds the lock, the pmd points at the table it locked,
//!   before and after its write: it never writes into a detached table
//!   (rule 3: detaching needs the table's lock);
//! - the table stays allocated until CPU 1 leaves its RCU section (the
//!   pool's lifetime checks, see `loom_common`);
//! - afterwards the tables say exactly what CPU 1's outcome implies: it
//!   locked T1 → its write is in T1 (so made before the detach) and
//!   `X + 4 KiB` is unmapped; it locked T2 → `X + 4 KiB` translates to its
//!   page; it found no table (between the unmap and the map) → unmapped.
//!   `X` maps CPU 2's new page, and dropping the address space frees T1
//!   and T2.
//!
//! Bounds: preemption bound 3 (`loom_common::builder`); CPU 2 reclaims
//! once more after a yield. Counters assert that CPU 1 locked T1, locked
//! T2 and found no table, each in some execution (`LOOM_COVERAGE=1` and
//! `--nocapture` print them).
#![cfg(loom)]

mod loom_common;

use std::sync::atomic::{AtomicUsize as StdUsize, Ordering as StdOrdering};

use loom::thread;
use loom_common::fixture::{self, PA_A, X};
use loom_common::{builder, report, start_cpu};
use mmu::ErrorKind;
use mmu::{pmd_same, Attrs, Desc, Ipa, LockMode, PhysAddr, PAGE_SIZE};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// Locked this table (attached throughout) and wrote into it.
    Locked(PhysAddr),
    /// The pmd held no table.
    NoTable,
}

#[derive(Default)]
struct Coverage {
    executions: StdUsize,
    /// CPU 2 freed T1 (after CPU 1's section, or before CPU 1 found it).
    t1_freed_by_cpu2: StdUsize,
    locked_t1: StdUsize,
    locked_t2: StdUsize,
    no_table: StdUsize,
}

fn model(name: &str, mode: LockMode) {
    let cov: &'static Coverage = Box::leak(Box::default());
    builder(3).check(move || {
        let (w, s2, t1) = fixture::new(mode, PAGE_SIZE);
        let leaf = Desc::leaf(&fixture::geometry(), 3, PhysAddr(PA_A), &Attrs::RAM);
        let a = {
            let s2 = s2.clone();
            thread::spawn(move || {
                start_cpu(&w.rcu, 1);
                let g = w.rcu.read_lock();
                let pmd = s2.pmd_lookup(&g, Ipa(X)).expect("the root holds the pmd");
                let out = match s2.pte_offset_map_lock(&pmd) {
                    None => Outcome::NoTable,
                    Some(mut pte) => {
                        let t = pte.table();
                        let generation = w.mem.generation(t);
                        assert_eq!(generation % 2, 1, "locked a free table");
                        assert_eq!(pte.pmdval().addr(), t);
                        assert!(pmd_same(pmd.read(), pte.pmdval()), "locked a detached table");
                        assert_eq!(pte.install(Ipa(X + PAGE_SIZE), leaf), Ok(()));
                        assert!(pmd_same(pmd.read(), pte.pmdval()), "detached while locked");
                        w.mem.touch(t, generation);
                        Outcome::Locked(t)
                    }
                };
                drop(g);
                assert!(w.rcu.quiescent());
                w.rcu.offline();
                out
            })
        };
        let b = {
            let s2 = s2.clone();
            thread::spawn(move || fixture::detach_and_remap(w, &s2))
        };
        let out = a.join().unwrap();
        if b.join().unwrap() {
            cov.t1_freed_by_cpu2.fetch_add(1, StdOrdering::Relaxed);
        }

        let (t2, a_page) = fixture::final_state(w, &s2, t1);
        match out {
            Outcome::Locked(t) if t == t1 => {
                assert_eq!(a_page, None, "T1's entries went with it");
                assert_eq!(w.mem.raw_entry(t1, 1), leaf.bits(), "the write went into T1");
                cov.locked_t1.fetch_add(1, StdOrdering::Relaxed);
            }
            Outcome::Locked(t) => {
                assert_eq!(t, t2, "locked a table that was never attached");
                assert_eq!(a_page, Some(PhysAddr(PA_A)));
                cov.locked_t2.fetch_add(1, StdOrdering::Relaxed);
            }
            Outcome::NoTable => {
                assert_eq!(a_page, None);
                cov.no_table.fetch_add(1, StdOrdering::Relaxed);
            }
        }
        cov.executions.fetch_add(1, StdOrdering::Relaxed);
        fixture::teardown(w, s2, &[t1, t2]);
    });
    let n = |c: &StdUsize| c.load(StdOrdering::Relaxed);
    report(
        name,
        &[
            ("executions", n(&cov.executions)),
            ("t1_freed_by_cpu2", n(&cov.t1_freed_by_cpu2)),
            ("locked_t1", n(&cov.locked_t1)),
            ("locked_t2", n(&cov.locked_t2)),
            ("no_table", n(&cov.no_table)),
        ],
    );
    assert!(n(&cov.t1_freed_by_cpu2) > 0, "CPU 2 never freed T1");
    assert!(n(&cov.locked_t1) > 0, "CPU 1 never locked T1");
    assert!(n(&cov.locked_t2) > 0, "CPU 1 never locked T2");
    assert!(n(&cov.no_table) > 0, "CPU 1 never found the pmd empty");
}

#[test]
fn map_lock_against_detach_split_locks() {
    model("map_lock/split", LockMode::Split);
}

#[test]
fn map_lock_against_detach_single_lock() {
    model("map_lock/single", LockMode::Single);
}

/// `pte_offset_map_lock` against `Stage2::collapse`: T1 maps the whole
/// 2 MiB with contiguous pages; CPU 1 locks it and write-protects the page
/// at `X + 4 KiB` (in place), while CPU 2 collapses T1 into a 2 MiB block
/// (under the root's lock, then T1's) and frees T1 after a grace period.
///
/// Exactly one of them wins, and the tables show which: CPU 1 locked T1
/// (attached throughout, checked under the lock) and wrote → the collapse
/// found the leaves differ (`NotCollapsible`) and `X + 4 KiB` is a
/// read-only page in T1; or the collapse went first → CPU 1 found no
/// table (a block), and `X + 4 KiB` is inside a writable 2 MiB block.
/// T1 stays allocated while CPU 1 is inside its RCU section.
fn collapse_model(name: &str, mode: LockMode) {
    #[derive(Default)]
    struct Coverage {
        executions: StdUsize,
        wrote: StdUsize,
        collapsed: StdUsize,
        t1_freed_by_cpu2: StdUsize,
    }
    let cov: &'static Coverage = Box::leak(Box::default());
    builder(3).check(move || {
        let (w, s2, t1) = fixture::new(mode, fixture::MB2);
        let geo = fixture::geometry();
        let ro = Desc::leaf(&geo, 3, PhysAddr(fixture::PA_OLD + PAGE_SIZE), &Attrs::RAM_RO);
        let a = {
            let s2 = s2.clone();
            thread::spawn(move || {
                start_cpu(&w.rcu, 1);
                let g = w.rcu.read_lock();
                let pmd = s2.pmd_lookup(&g, Ipa(X)).expect("the root holds the pmd");
                let mut batch = s2.tlb_batch();
                let out = match s2.pte_offset_map_lock(&pmd) {
                    None => Outcome::NoTable,
                    Some(mut pte) => {
                        let t = pte.table();
                        let generation = w.mem.generation(t);
                        assert_eq!(generation % 2, 1, "locked a free table");
                        assert!(pmd_same(pmd.read(), pte.pmdval()), "locked a detached table");
                        let old = pte.set(Ipa(X + PAGE_SIZE), ro, &mut batch).unwrap();
                        assert!(old.is_leaf(3));
                        assert!(pmd_same(pmd.read(), pte.pmdval()), "detached while locked");
                        w.mem.touch(t, generation);
                        Outcome::Locked(t)
                    }
                };
                drop(batch);
                drop(g);
                assert!(w.rcu.quiescent());
                w.rcu.offline();
                out
            })
        };
        let b = {
            let s2 = s2.clone();
            thread::spawn(move || {
                start_cpu(&w.rcu, 2);
                let r = s2.collapse(Ipa(X), 2);
                thread::yield_now();
                s2.reclaim();
                w.rcu.offline();
                (r, s2.stats().tables_freed == 1)
            })
        };
        let out = a.join().unwrap();
        let (collapsed, freed) = b.join().unwrap();
        if freed {
            cov.t1_freed_by_cpu2.fetch_add(1, StdOrdering::Relaxed);
        }

        w.rcu.online(0);
        let page = s2.translate(Ipa(X + PAGE_SIZE)).expect("X + 4 KiB stays mapped");
        assert_eq!(page.pa, PhysAddr(fixture::PA_OLD + PAGE_SIZE));
        match out {
            Outcome::Locked(t) => {
                assert_eq!(t, t1);
                assert_eq!(
                    collapsed.map(|_| ()).map_err(|e| e.kind()),
                    Err(ErrorKind::NotCollapsible)
                );
                assert_eq!(fixture::pmd_table(&s2), Some(t1));
                assert_eq!((page.level, page.attrs.write), (3, false));
                cov.wrote.fetch_add(1, StdOrdering::Relaxed);
            }
            Outcome::NoTable => {
                let c = collapsed.expect("collapsed");
                assert_eq!((c.level, c.pa), (2, PhysAddr(fixture::PA_OLD)));
                assert_eq!(fixture::pmd_table(&s2), None);
                assert_eq!((page.level, page.attrs.write), (2, true));
                cov.collapsed.fetch_add(1, StdOrdering::Relaxed);
            }
        }
        cov.executions.fetch_add(1, StdOrdering::Relaxed);
        fixture::teardown(w, s2, &[t1]);
    });
    let n = |c: &StdUsize| c.load(StdOrdering::Relaxed);
    report(
        name,
        &[
            ("executions", n(&cov.executions)),
            ("t1_freed_by_cpu2", n(&cov.t1_freed_by_cpu2)),
            ("cpu1_wrote", n(&cov.wrote)),
            ("collapsed", n(&cov.collapsed)),
        ],
    );
    assert!(n(&cov.t1_freed_by_cpu2) > 0, "CPU 2 never freed T1");
    assert!(n(&cov.wrote) > 0, "CPU 1 never won");
    assert!(n(&cov.collapsed) > 0, "the collapse never won");
}

#[test]
fn map_lock_against_collapse_split_locks() {
    collapse_model("map_lock/collapse/split", LockMode::Split);
}

#[test]
fn map_lock_against_collapse_single_lock() {
    collapse_model("map_lock/collapse/single", LockMode::Single);
}
