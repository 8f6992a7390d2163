//! Loom model of `make_coherent` (its `adjust_pte` of an alias) racing a
//! collapse of the alias's level-3 table, on the real `Stage2`s.
//!
//! Two address spaces share a reverse map. Space B maps the 2 MiB at 0
//! with 512 contiguous pages (table TB), so it can collapse in place; the
//! tracked page `P` is the sixth of them. Space A maps `P` at `X` and at
//! `X + 4 KiB` (its table TA).
//!
//! - CPU 1 takes TA's lock for `X + 4 KiB` (the fault) and runs
//!   `make_coherent`, making every alias Normal Non-cacheable;
//! - CPU 2 collapses B's 2 MiB into a block and reclaims.
//!
//! Checked in every execution loom explores:
//! - exactly one of them wins for B's alias: either it was adjusted in TB
//!   while TB was attached (then the collapse is refused: the entries no
//!   longer agree), or the collapse happened and the alias was skipped (a
//!   block now; `pmd_same` failed under the lock and the retry found no
//!   table, or no table was found at once); never a write into TB after
//!   it was detached (TB's entry is unchanged when the collapse won);
//! - with one lock per space, B's lock may be busy with the collapse and
//!   lie below A's in the lock order: the alias is deferred, and finished
//!   by `adjust_aliases` once CPU 1 has unlocked (a block by then);
//! - A's two mappings are adjusted in every case (the alias `X` maps `P`);
//! - TB is freed only after CPU 1's RCU section (pool lifetime checks).
//!
//! Bounds: preemption bound 3 (about 5000 executions per lock mode): it covers the collapse running inside the window
//! between the lockless read and the lock, collapse and adjust blocking on
//! each other's locks, and either preempted at any point. Counters assert
//! that the retry path, the skip without retry and the adjust-first path
//! each happened in some execution.
#![cfg(loom)]

mod loom_common;

use std::sync::atomic::{AtomicUsize as StdUsize, Ordering as StdOrdering};

use loom::thread;
use loom_common::{builder, report, start_cpu, Memory, NoTlb, World};
use mmu::ErrorKind;
use mmu::{
    make_coherent, Attrs, Coherence, Desc, Geometry, Granularity, Ipa, LockMode, MemType, PhysAddr,
    Rmap, Stage2, Vmid, PAGE_SIZE,
};

type S2 = Stage2<'static, &'static Memory, &'static NoTlb>;

const MB2: u64 = 1 << 21;
/// B's 2 MiB range and its frames.
const Q: u64 = 0x8000_0000;
/// The shared page: B maps it at `5 * PAGE_SIZE`.
const P: u64 = Q + 5 * PAGE_SIZE;
const B_IPA: u64 = 5 * PAGE_SIZE;
/// A's two mappings of `P`.
const X: u64 = 0x20_0000;

#[derive(Default)]
struct Coverage {
    executions: StdUsize,
    adjusted_first: StdUsize,
    collapsed_then_retried: StdUsize,
    collapsed_then_skipped: StdUsize,
    deferred: StdUsize,
}

fn nc(a: &Attrs) -> Attrs {
    Attrs { mem: MemType::NormalNc, ..*a }
}

fn table_of(s2: &S2, ipa: u64) -> Option<PhysAddr> {
    let g = s2.rcu().read_lock();
    let d = s2.pmd_lookup(&g, Ipa(ipa))?.read();
    d.is_table(2).then(|| d.addr())
}

fn model(name: &str, mode: LockMode, broken: bool) {
    let cov: &'static Coverage = Box::leak(Box::default());
    builder(3).check(move || {
        let w = World::leak(6);
        let rmap: &'static Rmap = Box::leak(Box::new(Rmap::new()));
        start_cpu(&w.rcu, 0);
        let geo = Geometry::armv7(30).unwrap();
        let new = |vmid| Stage2::new(geo, Vmid(vmid), mode, &w.mem, &w.tlb, &w.rcu).unwrap();
        // One allocation for both, B first: the order of their locks (one
        // per space with a single lock) is the same in every execution, as
        // loom needs, and puts B's below A's, so the alias's lock is only
        // tried and the deferred path is explored.
        let pair: &'static [S2; 2] =
            Box::leak(Box::new([new(2).with_rmap(rmap), new(1).with_rmap(rmap)]));
        let (b, a) = (&pair[0], &pair[1]);
        b.set_skip_pmd_recheck_for_tests(broken);
        a.map(Ipa(X), PhysAddr(P), PAGE_SIZE, &Attrs::RAM, Granularity::Pages).unwrap();
        a.track_page(Ipa(X)).unwrap();
        b.map(Ipa(0), PhysAddr(Q), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
        a.map(Ipa(X + PAGE_SIZE), PhysAddr(P), PAGE_SIZE, &Attrs::RAM, Granularity::Pages).unwrap();
        let tb = table_of(&b, 0).expect("TB");
        let b_leaf = Desc::leaf(&geo, 3, PhysAddr(P), &Attrs::RAM);
        w.rcu.offline();

        let fault = {
            thread::spawn(move || {
                start_cpu(&w.rcu, 1);
                let g = w.rcu.read_lock();
                let pmd = a.pmd_lookup(&g, Ipa(X + PAGE_SIZE)).unwrap();
                let mut pte = a.pte_offset_map_lock(&pmd).unwrap();
                let c = make_coherent(&mut pte, Ipa(X + PAGE_SIZE), &[b], &nc, &w.tlb);
                let c = c.expect("make_coherent");
                drop(pte);
                // What the hypervisor does with a deferred alias: finish it
                // with no lock held.
                let later = (c.deferred > 0).then(|| {
                    a.adjust_aliases(Ipa(X + PAGE_SIZE), &[b], &nc, &w.tlb).expect("finish")
                });
                drop(g);
                assert!(w.rcu.quiescent());
                w.rcu.offline();
                (c, later)
            })
        };
        let collapser = {
            thread::spawn(move || {
                start_cpu(&w.rcu, 2);
                let r = b.collapse(Ipa(0), 2).map(|_| ());
                thread::yield_now();
                b.reclaim();
                w.rcu.offline();
                r
            })
        };
        let (c, later) = fault.join().unwrap();
        let collapsed = collapser.join().unwrap();

        w.rcu.online(0);
        for ipa in [X, X + PAGE_SIZE] {
            let t = a.translate(Ipa(ipa)).unwrap();
            assert_eq!((t.pa, t.attrs.mem), (PhysAddr(P), MemType::NormalNc), "A at {ipa:#x}");
        }
        let tb_now = b.translate(Ipa(B_IPA)).unwrap();
        match collapsed {
            Ok(()) => {
                assert_eq!(tb_now.level, 2, "a block");
                assert_eq!(tb_now.attrs, Attrs::RAM, "the block was not adjusted");
                assert_eq!(
                    w.mem.raw_entry(tb, 5),
                    b_leaf.bits(),
                    "written into TB after it was detached"
                );
                assert_eq!(c.aliases, 1, "{c:?}");
                match later {
                    // B's lock (one per space) was busy with the collapse,
                    // against the lock order: deferred, then found a block.
                    Some(l) => {
                        assert_eq!((c.skipped, c.deferred), (0, 1), "{c:?}");
                        // (It may itself find the pmd changed, if the
                        // collapse was still under way.)
                        let l = Coherence { retries: 0, ..l };
                        assert_eq!(l, Coherence { aliases: 1, skipped: 1, ..Default::default() });
                        cov.deferred.fetch_add(1, StdOrdering::Relaxed);
                    }
                    None => assert_eq!((c.skipped, c.deferred), (1, 0), "{c:?}"),
                }
                let counter = if c.retries > 0 {
                    &cov.collapsed_then_retried
                } else {
                    &cov.collapsed_then_skipped
                };
                counter.fetch_add(1, StdOrdering::Relaxed);
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotCollapsible);
                assert_eq!(later, None, "a deferred alias leaves the collapse free to run");
                assert_eq!(c, Coherence { aliases: 2, adjusted: 3, ..Default::default() });
                assert_eq!((tb_now.level, tb_now.attrs.mem), (3, MemType::NormalNc));
                cov.adjusted_first.fetch_add(1, StdOrdering::Relaxed);
            }
        }
        cov.executions.fetch_add(1, StdOrdering::Relaxed);
        // SAFETY: `pair` came from `Box::leak` and the threads that used it
        // were joined.
        drop(unsafe { Box::from_raw(pair as *const [S2; 2] as *mut [S2; 2]) });
        assert!(!w.mem.is_allocated(tb), "TB not freed");
        // SAFETY: the threads were joined and both address spaces dropped.
        unsafe { World::reclaim(w) };
    });
    let n = |c: &StdUsize| c.load(StdOrdering::Relaxed);
    report(
        name,
        &[
            ("executions", n(&cov.executions)),
            ("adjusted_first", n(&cov.adjusted_first)),
            ("collapsed_then_retried", n(&cov.collapsed_then_retried)),
            ("collapsed_then_skipped", n(&cov.collapsed_then_skipped)),
            ("deferred", n(&cov.deferred)),
        ],
    );
    assert!(n(&cov.adjusted_first) > 0, "{name}: adjust never won");
    assert!(n(&cov.collapsed_then_retried) > 0, "{name}: the pmd_same retry never ran");
    assert!(n(&cov.collapsed_then_skipped) > 0, "{name}: the collapse never came first");
}

#[test]
fn adjust_pte_vs_collapse_split_locks() {
    model("adjust_pte_vs_collapse_split", LockMode::Split, false);
}

/// The model catches the bug it guards against: without the `pmd_same`
/// recheck, an execution writes the alias into the detached table.
#[test]
#[should_panic(expected = "written into TB after it was detached")]
fn adjust_pte_without_pmd_recheck_is_caught() {
    model("adjust_pte_without_recheck", LockMode::Split, true);
}

#[test]
fn adjust_pte_vs_collapse_single_lock() {
    model("adjust_pte_vs_collapse_single", LockMode::Single, false);
}
