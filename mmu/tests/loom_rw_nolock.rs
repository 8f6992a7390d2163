//! Loom model of `pte_offset_map_rw_nolock` + `PteRwNoLock::lock()`
//! against a concurrent detach, on the real `Stage2`
//! (`loom_common::fixture`) with one level-3 table T1 mapped at `X`:
//!
//! - CPU 1 maps the table without its lock (`rw_nolock`), then takes the
//!   lock, which rechecks `pmd_same` (no retry, unlike
//!   `pte_offset_map_lock`); if that succeeds it installs a page at
//!   `X + 4 KiB`;
//! - CPU 2 unmaps the whole 2 MiB (detaching T1), maps `X` again (table
//!   T2) and reclaims.
//!
//! Checked in every execution loom explores:
//! - `lock()` fails with `PmdChanged { now }` exactly when the pmd no
//!   longer points at the table: `now` is what the pmd holds (invalid, or
//!   T2), and the table is still allocated (CPU 1 is in its RCU section);
//! - when `lock()` succeeds, the pmd points at the locked table before and
//!   after the write, so the write lands in the live tables: afterwards
//!   `X + 4 KiB` translates to CPU 1's page if it locked T2; if it locked
//!   T1 its write is in T1 (before the detach) and `X + 4 KiB` is unmapped;
//!   after `PmdChanged` nothing was written anywhere;
//! - T1 is freed only after CPU 1 left its section (pool lifetime checks),
//!   and dropping the address space frees T1 and T2.
//!
//! Bounds: preemption bound 3. Counters assert that `lock()` failed, and
//! succeeded on T1 and on T2, each in some execution.
#![cfg(loom)]

mod loom_common;

use std::sync::atomic::{AtomicUsize as StdUsize, Ordering as StdOrdering};

use loom::thread;
use loom_common::fixture::{self, PA_A, X};
use loom_common::{builder, report, start_cpu};
use mmu::pgtable::PmdChanged;
use mmu::{pmd_same, Attrs, Desc, Ipa, LockMode, PhysAddr, Pmd, PAGE_SIZE};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// `lock()` succeeded on this table and CPU 1 wrote into it.
    Locked(PhysAddr),
    /// `lock()` on this table found the pmd changed to `now`.
    Changed(PhysAddr, Pmd),
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
    changed: StdUsize,
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
                let out = match s2.pte_offset_map_rw_nolock(&pmd) {
                    None => Outcome::NoTable,
                    Some(rw) => {
                        let seen = rw.pmdval();
                        let t = seen.addr();
                        let generation = w.mem.generation(t);
                        assert_eq!(generation % 2, 1, "mapped a free table");
                        match rw.lock() {
                            Err(PmdChanged { now }) => {
                                // (`now` may be stale already: with split locks
                                // the table's lock does not cover the pmd once
                                // the table is detached.)
                                assert!(!pmd_same(seen, now));
                                w.mem.touch(t, generation);
                                Outcome::Changed(t, now)
                            }
                            Ok(mut pte) => {
                                assert_eq!(pte.table(), t);
                                assert!(pmd_same(pmd.read(), seen), "locked a detached table");
                                assert_eq!(pte.install(Ipa(X + PAGE_SIZE), leaf), Ok(()));
                                assert!(pmd_same(pmd.read(), seen), "detached while locked");
                                w.mem.touch(t, generation);
                                Outcome::Locked(t)
                            }
                        }
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
            Outcome::Changed(t, now) => {
                // Only T1 is ever detached; the pmd then held nothing or T2.
                assert_eq!(t, t1);
                assert!(now == Desc::INVALID || now == Desc::table(t2), "pmd held {now:?}");
                assert_eq!(a_page, None);
                assert_eq!(w.mem.raw_entry(t1, 1), 0, "wrote after PmdChanged");
                cov.changed.fetch_add(1, StdOrdering::Relaxed);
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
            ("changed", n(&cov.changed)),
            ("no_table", n(&cov.no_table)),
        ],
    );
    assert!(n(&cov.t1_freed_by_cpu2) > 0, "CPU 2 never freed T1");
    assert!(n(&cov.changed) > 0, "lock() never saw the pmd change");
    assert!(n(&cov.locked_t1) > 0, "CPU 1 never locked T1");
    assert!(n(&cov.locked_t2) > 0, "CPU 1 never locked T2");
}

#[test]
fn rw_nolock_lock_against_detach_split_locks() {
    model("rw_nolock/split", LockMode::Split);
}

#[test]
fn rw_nolock_lock_against_detach_single_lock() {
    model("rw_nolock/single", LockMode::Single);
}
