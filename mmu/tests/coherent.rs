//! `make_coherent` / `adjust_pte` and the reverse map: aliases in the same
//! level-3 table, in another table, in another address space; both lock
//! modes; no alias; no fault context; an alias's table collapsed or
//! unmapped between the lockless read and the lock (forced with the test
//! hook); busy locks against the lock order; bad input. TLB and cache
//! operations are asserted exactly.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{geometries, Env, MB2, MODES, PAGE};
use mmu::testing::{HostMemory, RecordingTlb, TlbOp};
use mmu::ErrorKind;
use mmu::{
    make_coherent, Arch, Attrs, Coherence, Desc, Error, Exec, Features, Geometry, Granularity, Ipa,
    LockMode, MemType, PhysAddr, Rmap, Stage2, Vmid,
};

type S2<'a> = Stage2<'a, &'a HostMemory, &'a RecordingTlb>;

const A: Vmid = Vmid(1);
const B: Vmid = Vmid(2);
/// The shared page.
const P: u64 = 0x8000_5000;
const IPA1: u64 = 0x4000_0000 + 3 * PAGE;
/// Same level-3 table as `IPA1`.
const IPA_SAME: u64 = 0x4000_0000 + 9 * PAGE;
/// Another level-3 table.
const IPA_OTHER: u64 = 0x4000_0000 + 5 * MB2 + 7 * PAGE;
/// In space B.
const IPB: u64 = 0x6000_0000 + 11 * PAGE;
/// Where `raced` maps `P` in space B (B maps a whole 2 MiB range there).
const IPB_RACED: u64 = (IPB & !(MB2 - 1)) + P % MB2;

fn geo40() -> Geometry {
    Geometry::aarch64(40, 48, Features::default()).unwrap()
}

fn nc(a: &Attrs) -> Attrs {
    Attrs { mem: MemType::NormalNc, ..*a }
}

fn ro(a: &Attrs) -> Attrs {
    Attrs { write: false, ..*a }
}

fn space<'e>(env: &'e Env, rmap: &'e Rmap, geo: Geometry, vmid: Vmid, mode: LockMode) -> S2<'e> {
    Stage2::new(geo, vmid, mode, &env.mem, &env.tlb, &env.rcu).unwrap().with_rmap(rmap)
}

fn map_page(s2: &S2<'_>, ipa: u64, pa: u64) {
    s2.map(Ipa(ipa), PhysAddr(pa), PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
}

/// The fault path: `pa` is mapped at `ipa` and, under the table lock the
/// mapping was made with, the page's aliases are made coherent.
fn fault(
    s2: &S2<'_>,
    ipa: u64,
    pa: u64,
    spaces: &[&S2<'_>],
    adjust: &dyn Fn(&Attrs) -> Attrs,
    tlb: &RecordingTlb,
) -> Result<Coherence, Error> {
    map_page(s2, ipa, pa);
    tlb.take();
    let rcu = s2.rcu().read_lock();
    let pmd = s2.pmd_lookup(&rcu, Ipa(ipa)).unwrap();
    let mut pte = s2.pte_offset_map_lock(&pmd).unwrap();
    make_coherent(&mut pte, Ipa(ipa), spaces, adjust, tlb)
}

/// Runs `f` on another thread and fails the test if it does not finish:
/// a self-deadlock shows as a timeout, not a hung test run.
fn within_5s<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("{what}: deadlocked"))
}

/// The address of the lock protecting `ipa`'s level-3 table in `s`.
fn lock_of(s: &S2<'_>, ipa: u64) -> usize {
    let rcu = s.rcu().read_lock();
    let pmd = s.pmd_lookup(&rcu, Ipa(ipa)).unwrap();
    let ptl = s.pte_offset_map_ro_nolock(&pmd).unwrap().ptl() as *const _ as usize;
    ptl
}

fn attrs_at(s2: &S2<'_>, ipa: u64) -> Attrs {
    s2.translate(Ipa(ipa)).unwrap_or_else(|| panic!("{ipa:#x} unmapped")).attrs
}

/// The break-before-make of one alias changing memory type, for `vmid`:
/// break, invalidate the IPA (and stage 1) and wait, clean the page to the
/// PoC, make (nothing left to flush).
fn bbm_ops(vmid: Vmid, ipa: u64) -> Vec<TlbOp> {
    vec![
        TlbOp::SyncTables,
        TlbOp::Ipa { vmid, ipa: Ipa(ipa), level: Some(3), last_level: true },
        TlbOp::Stage1(vmid),
        TlbOp::Complete,
        TlbOp::CleanInval { pa: PhysAddr(P), len: PAGE },
    ]
}

/// Scenario shared by the same-table and other-table tests: the page is
/// mapped at `IPA1`, tracked, then faulted in at `at`.
fn one_space_alias(at: u64, geo: Geometry, mode: LockMode) -> (Coherence, Vec<TlbOp>, [Attrs; 2]) {
    // ARMv7 CPUs cannot invalidate stage 2 by IPA.
    let tlb = RecordingTlb::with_caps(geo.arch() == Arch::Aarch64, false);
    let env: &'static Env = Box::leak(Box::new(Env::with_tlb(64, tlb)));
    let rmap: &'static Rmap = Box::leak(Box::new(Rmap::new()));
    let s2: &'static S2<'static> = Box::leak(Box::new(space(env, rmap, geo, A, mode)));
    map_page(s2, IPA1, P);
    assert_eq!(s2.track_page(Ipa(IPA1)), Ok(PhysAddr(P)));
    let c = within_5s("make_coherent", move || {
        fault(s2, at, P, &[], &nc, &env.tlb).expect("make_coherent")
    });
    (c, env.tlb.take(), [attrs_at(s2, IPA1), attrs_at(s2, at)])
}

#[test]
fn alias_in_the_same_table_does_not_take_the_held_lock_again() {
    for mode in MODES {
        let (c, ops, attrs) = one_space_alias(IPA_SAME, geo40(), mode);
        assert_eq!(c, Coherence { aliases: 1, adjusted: 2, ..Default::default() }, "{mode:?}");
        let mut want = bbm_ops(A, IPA1);
        want.extend(bbm_ops(A, IPA_SAME));
        assert_eq!(ops, want, "{mode:?}");
        for a in attrs {
            assert_eq!(a, Attrs { mem: MemType::NormalNc, ..Attrs::RAM }, "{mode:?}");
        }
    }
}

#[test]
fn alias_in_another_table_is_locked_nested_or_not_by_mode() {
    for (name, geo) in geometries() {
        if geo.ipa_limit() <= IPA_OTHER {
            continue;
        }
        for mode in MODES {
            let (c, ops, attrs) = one_space_alias(IPA_OTHER, geo, mode);
            assert_eq!(c, Coherence { aliases: 1, adjusted: 2, ..Default::default() }, "{name}");
            if geo.features().fwb || name.starts_with("v7") {
                // Other TLB shapes: covered by `armv7_aliases_flush_the_vmid`.
                assert!(ops.contains(&TlbOp::CleanInval { pa: PhysAddr(P), len: PAGE }));
            } else {
                let mut want = bbm_ops(A, IPA1);
                want.extend(bbm_ops(A, IPA_OTHER));
                assert_eq!(ops, want, "{name} {mode:?}");
            }
            assert!(attrs.iter().all(|a| a.mem == MemType::NormalNc), "{name} {mode:?}");
        }
    }
}

#[test]
fn armv7_aliases_flush_the_vmid() {
    let (c, ops, _) = one_space_alias(IPA_OTHER, Geometry::armv7(40).unwrap(), LockMode::Split);
    assert_eq!(c.adjusted, 2);
    let bbm = [
        TlbOp::SyncTables,
        TlbOp::Vmid(A),
        TlbOp::Complete,
        TlbOp::CleanInval { pa: PhysAddr(P), len: PAGE },
    ];
    assert_eq!(ops, [bbm, bbm].concat());
}

#[test]
fn alias_in_another_address_space_uses_its_lock_and_vmid() {
    for mode in MODES {
        let env = Env::new(64);
        let rmap = Rmap::new();
        let a = space(&env, &rmap, geo40(), A, mode);
        let b = space(&env, &rmap, geo40(), B, mode);
        map_page(&a, IPA1, P);
        a.track_page(Ipa(IPA1)).unwrap();
        // Shared into B: recorded by `map`.
        map_page(&b, IPB, P);
        let c = fault(&a, IPA_SAME, P, &[&b], &nc, &env.tlb).unwrap();
        assert_eq!(c, Coherence { aliases: 2, adjusted: 3, ..Default::default() }, "{mode:?}");
        let ops = env.tlb.take();
        let mut want = bbm_ops(A, IPA1);
        want.extend(bbm_ops(B, IPB));
        want.extend(bbm_ops(A, IPA_SAME));
        assert_eq!(ops, want, "{mode:?}");
        assert_eq!(attrs_at(&b, IPB).mem, MemType::NormalNc);
        assert_eq!(b.translate(Ipa(IPB)).unwrap().pa, PhysAddr(P));
    }
}

#[test]
fn no_alias_changes_nothing() {
    for mode in MODES {
        let env = Env::new(64);
        let rmap = Rmap::new();
        let a = space(&env, &rmap, geo40(), A, mode);
        // Untracked page, then a tracked page with one mapping.
        let c = fault(&a, IPA1, P, &[], &nc, &env.tlb).unwrap();
        assert_eq!(c, Coherence::default());
        a.track_page(Ipa(IPA1)).unwrap();
        let rcu = a.rcu().read_lock();
        let pmd = a.pmd_lookup(&rcu, Ipa(IPA1)).unwrap();
        let mut pte = a.pte_offset_map_lock(&pmd).unwrap();
        assert_eq!(
            make_coherent(&mut pte, Ipa(IPA1), &[], &nc, &env.tlb),
            Ok(Coherence::default())
        );
        drop(pte);
        assert_eq!(env.tlb.take(), []);
        assert_eq!(attrs_at(&a, IPA1), Attrs::RAM);
    }
}

#[test]
fn without_fault_context_every_lock_is_taken_by_adjust_aliases() {
    for mode in MODES {
        let env = Env::new(64);
        let rmap = Rmap::new();
        let a = space(&env, &rmap, geo40(), A, mode);
        let b = space(&env, &rmap, geo40(), B, mode);
        map_page(&a, IPA1, P);
        a.track_page(Ipa(IPA1)).unwrap();
        map_page(&a, IPA_SAME, P);
        map_page(&b, IPB, P);
        env.tlb.take();
        // No lock held here: if it took a lock the caller was assumed to
        // hold, it would write unlocked; if it assumed one held that is
        // not, `within_5s` would not matter, but a lock taken twice would.
        let c = std::thread::scope(|s| {
            s.spawn(|| a.adjust_aliases(Ipa(IPA_SAME), &[&b], &nc, &env.tlb)).join().unwrap()
        })
        .unwrap();
        assert_eq!(c, Coherence { aliases: 2, adjusted: 3, ..Default::default() }, "{mode:?}");
        let mut want = bbm_ops(A, IPA1);
        want.extend(bbm_ops(B, IPB));
        want.extend(bbm_ops(A, IPA_SAME));
        assert_eq!(env.tlb.take(), want);
        // Idempotent: everything already has the policy's attributes.
        let again = a.adjust_aliases(Ipa(IPA1), &[&b], &nc, &env.tlb).unwrap();
        assert_eq!(again, Coherence { aliases: 2, ..Default::default() });
        assert_eq!(env.tlb.take(), []);
        // And each lock is free afterwards.
        let rcu = a.rcu().read_lock();
        for (s, ipa) in [(&a, IPA1), (&b, IPB)] {
            let pmd = s.pmd_lookup(&rcu, Ipa(ipa)).unwrap();
            let ptl = s.pte_offset_map_ro_nolock(&pmd).unwrap().ptl();
            assert!(ptl.try_lock().is_some());
        }
    }
}

#[test]
fn write_protect_policy_is_in_place_with_gathered_invalidation_and_no_cache_maintenance() {
    let env = Env::new(64);
    let rmap = Rmap::new();
    let a = space(&env, &rmap, geo40(), A, LockMode::Split);
    map_page(&a, IPA1, P);
    a.track_page(Ipa(IPA1)).unwrap();
    let c = fault(&a, IPA_OTHER, P, &[], &ro, &env.tlb).unwrap();
    assert_eq!(c.adjusted, 2);
    let inval = |ipa| {
        vec![
            TlbOp::SyncTables,
            TlbOp::Ipa { vmid: A, ipa: Ipa(ipa), level: Some(3), last_level: true },
            TlbOp::Stage1(A),
            TlbOp::Complete,
        ]
    };
    assert_eq!(env.tlb.take(), [inval(IPA1), inval(IPA_OTHER)].concat());
    assert!(!attrs_at(&a, IPA1).write && !attrs_at(&a, IPA_OTHER).write);
}

/// An alias in space B whose level-3 table the hook takes away between
/// `pte_offset_map_rw_nolock` and the lock. B maps a whole 2 MiB range as
/// 512 contiguous pages (so it can collapse in place) with `P` inside.
fn raced(mode: LockMode, race: fn(&S2<'static>)) -> (Coherence, &'static S2<'static>) {
    let env: &'static Env = Box::leak(Box::new(Env::new(64)));
    let rmap: &'static Rmap = Box::leak(Box::new(Rmap::new()));
    let a: &'static S2<'static> = Box::leak(Box::new(space(env, rmap, geo40(), A, mode)));
    let b: &'static S2<'static> = Box::leak(Box::new(space(env, rmap, geo40(), B, mode)));
    let (ipb0, p0) = (IPB & !(MB2 - 1), P & !(MB2 - 1));
    map_page(a, IPA1, P);
    a.track_page(Ipa(IPA1)).unwrap();
    b.map(Ipa(ipb0), PhysAddr(p0), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
    assert_eq!(rmap.mappings(PhysAddr(P)).len(), 2);
    b.set_alias_hook_for_tests(move || race(b));
    let c = within_5s("make_coherent", move || fault(a, IPA_SAME, P, &[b], &nc, &env.tlb).unwrap());
    (c, b)
}

#[test]
fn alias_table_collapsed_before_the_lock_is_retried_and_skipped() {
    for mode in MODES {
        let (c, b) = raced(mode, |b| {
            b.collapse(Ipa(IPB & !(MB2 - 1)), 2).expect("collapse in the window");
        });
        // The pmd changed under the lock: retried, found a block, skipped.
        assert_eq!(
            c,
            Coherence { aliases: 1, adjusted: 2, skipped: 1, retries: 1, deferred: 0 },
            "{mode:?}"
        );
        // The block was not touched: it keeps B's attributes.
        assert_eq!(attrs_at(b, IPB_RACED), Attrs::RAM, "{mode:?}");
        assert_eq!(b.stats().collapses, 1);
    }
}

/// The recheck is what the two tests above rely on: without it the alias
/// is "adjusted" in the collapsed table, which no longer translates
/// anything (the count says adjusted, the block still has the old
/// attributes).
#[test]
fn without_the_pmd_recheck_the_race_writes_a_detached_table() {
    let (c, b) = raced(LockMode::Split, |b| {
        b.set_skip_pmd_recheck_for_tests(true);
        b.collapse(Ipa(IPB & !(MB2 - 1)), 2).unwrap();
    });
    assert_eq!(c, Coherence { aliases: 2, adjusted: 3, ..Default::default() });
    assert_eq!(attrs_at(b, IPB_RACED), Attrs::RAM, "the write went to the detached table");
}

#[test]
fn alias_table_unmapped_before_the_lock_is_retried_and_skipped() {
    for mode in MODES {
        let (c, b) = raced(mode, |b| b.unmap(Ipa(IPB & !(MB2 - 1)), MB2).unwrap());
        assert_eq!(
            c,
            Coherence { aliases: 1, adjusted: 2, skipped: 1, retries: 1, deferred: 0 },
            "{mode:?}"
        );
        assert!(b.translate(Ipa(IPB_RACED)).is_none());
    }
}

#[test]
fn alias_page_unmapped_before_the_lock_is_skipped_without_retry() {
    for mode in MODES {
        // The table stays: the pmd is the same, the entry no longer maps P.
        let (c, _) = raced(mode, |b| b.unmap(Ipa(IPB_RACED), PAGE).unwrap());
        assert_eq!(c, Coherence { aliases: 1, adjusted: 2, skipped: 1, ..Default::default() });
    }
}

#[test]
fn alias_remapped_elsewhere_before_the_lock_is_left_alone() {
    let (c, b) = raced(LockMode::Split, |b| {
        b.unmap(Ipa(IPB_RACED), PAGE).unwrap();
        // Another frame at the same IPA: not the page's mapping any more.
        b.map(Ipa(IPB_RACED), PhysAddr(0x9000_0000), PAGE, &Attrs::RAM, Granularity::Pages)
            .unwrap();
    });
    assert_eq!(c, Coherence { aliases: 1, adjusted: 2, skipped: 1, ..Default::default() });
    assert_eq!(attrs_at(b, IPB_RACED), Attrs::RAM);
}

/// The same table race inside one address space (split locks: the alias's
/// table has its own lock, which the collapse needs).
#[test]
fn same_space_alias_table_collapsed_before_the_lock() {
    let env: &'static Env = Box::leak(Box::new(Env::new(64)));
    let rmap: &'static Rmap = Box::leak(Box::new(Rmap::new()));
    let a: &'static S2<'static> =
        Box::leak(Box::new(space(env, rmap, geo40(), A, LockMode::Split)));
    let base = IPA_OTHER & !(MB2 - 1);
    a.map(Ipa(base), PhysAddr(P & !(MB2 - 1)), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
    let alias = base + (P % MB2);
    a.track_page(Ipa(alias)).unwrap();
    a.set_alias_hook_for_tests(move || {
        a.collapse(Ipa(base), 2).unwrap();
    });
    let c = within_5s("make_coherent", move || fault(a, IPA1, P, &[], &nc, &env.tlb).unwrap());
    assert_eq!(c, Coherence { aliases: 0, adjusted: 0, skipped: 1, retries: 1, deferred: 0 });
    assert_eq!(attrs_at(a, IPA1), Attrs::RAM, "no alias maps it by a page: nothing adjusted");
}

/// Two address spaces whose alias locks are ordered by address: the one
/// with the lower lock is locked by someone else.
#[test]
fn busy_lock_against_the_order_is_deferred_then_finished_without_context() {
    for mode in MODES {
        let env = Env::new(64);
        let rmap = Rmap::new();
        let x = space(&env, &rmap, geo40(), A, mode);
        let y = space(&env, &rmap, geo40(), B, mode);
        map_page(&x, IPA1, P);
        x.track_page(Ipa(IPA1)).unwrap();
        map_page(&y, IPB, P);
        // Fault in the space whose lock is higher; the alias's is lower.
        let ((hi, hi_ipa, hi_fault), (lo, lo_ipa)) = if lock_of(&x, IPA1) > lock_of(&y, IPB) {
            ((&x, IPA1, IPA_SAME), (&y, IPB))
        } else {
            ((&y, IPB, IPB + PAGE), (&x, IPA1))
        };
        let rcu = lo.rcu().read_lock();
        let lo_pmd = lo.pmd_lookup(&rcu, Ipa(lo_ipa)).unwrap();
        let busy = lo.pte_offset_map_lock(&lo_pmd).unwrap();
        let spaces = [&x, &y];
        let c = fault(hi, hi_fault, P, &spaces, &nc, &env.tlb).unwrap();
        // The unrelated mapping in the faulting space (hi_ipa) is adjusted;
        // the busy one is deferred, not waited for.
        assert_eq!(c, Coherence { aliases: 1, adjusted: 2, deferred: 1, ..Default::default() });
        assert_eq!(attrs_at(lo, lo_ipa), Attrs::RAM);
        drop(busy);
        drop(rcu);
        assert_eq!(attrs_at(hi, hi_ipa).mem, MemType::NormalNc);
        let done = hi.adjust_aliases(Ipa(hi_fault), &spaces, &nc, &env.tlb).unwrap();
        assert_eq!(done, Coherence { aliases: 2, adjusted: 1, ..Default::default() });
        assert_eq!(attrs_at(lo, lo_ipa).mem, MemType::NormalNc, "{mode:?}");
    }
}

/// In lock order the alias's lock is waited for, not deferred.
#[test]
fn busy_lock_in_order_is_waited_for() {
    // Two threads read tables at the same time: one CPU each.
    let env: &'static Env = Box::leak(Box::new(Env::smp(64)));
    let rmap: &'static Rmap = Box::leak(Box::new(Rmap::new()));
    let x: &'static S2<'static> =
        Box::leak(Box::new(space(env, rmap, geo40(), A, LockMode::Split)));
    let y: &'static S2<'static> =
        Box::leak(Box::new(space(env, rmap, geo40(), B, LockMode::Split)));
    map_page(x, IPA1, P);
    x.track_page(Ipa(IPA1)).unwrap();
    map_page(y, IPB, P);
    // Fault in the space whose lock is lower; the alias's is higher.
    let (lo, lo_fault, hi, hi_ipa) = if lock_of(x, IPA1) < lock_of(y, IPB) {
        (x, IPA_SAME, y, IPB)
    } else {
        (y, IPB + PAGE, x, IPA1)
    };
    let (held_tx, held_rx) = mpsc::channel();
    let holder = std::thread::spawn(move || {
        env.as_cpu(1, || {
            let rcu = hi.rcu().read_lock();
            let pmd = hi.pmd_lookup(&rcu, Ipa(hi_ipa)).unwrap();
            let busy = hi.pte_offset_map_lock(&pmd).unwrap();
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(busy);
        })
    });
    held_rx.recv().unwrap();
    let c = within_5s("waiting in order", move || {
        fault(lo, lo_fault, P, &[x, y], &nc, &env.tlb).unwrap()
    });
    holder.join().unwrap();
    assert_eq!(c, Coherence { aliases: 2, adjusted: 3, ..Default::default() });
}

#[test]
fn bad_input_changes_nothing() {
    let env = Env::new(64);
    let rmap = Rmap::new();
    let other_rmap = Rmap::new();
    let a = space(&env, &rmap, geo40(), A, LockMode::Split);
    let b = space(&env, &rmap, geo40(), B, LockMode::Split);
    let stray = space(&env, &other_rmap, geo40(), B, LockMode::Split);
    let plain =
        Stage2::new(geo40(), Vmid(3), LockMode::Split, &env.mem, &env.tlb, &env.rcu).unwrap();
    map_page(&a, IPA1, P);
    assert_eq!(a.track_page(Ipa(IPA1 + 1)).map_err(|e| e.kind()), Err(ErrorKind::Unaligned));
    assert_eq!(a.track_page(Ipa(1 << 40)).map_err(|e| e.kind()), Err(ErrorKind::OutOfRange));
    assert_eq!(a.track_page(Ipa(IPA_SAME)).map_err(|e| e.kind()), Err(ErrorKind::NotMapped));
    assert_eq!(plain.track_page(Ipa(IPA1)), Err(Error::NoReverseMap));
    a.map(
        Ipa(IPA_OTHER & !(MB2 - 1)),
        PhysAddr(0x9000_0000),
        MB2,
        &Attrs::RAM,
        Granularity::Largest,
    )
    .unwrap();
    assert_eq!(
        a.track_page(Ipa(IPA_OTHER)).map_err(|e| e.kind()),
        Err(ErrorKind::NotMapped),
        "inside a block"
    );
    a.track_page(Ipa(IPA1)).unwrap();
    map_page(&b, IPB, P);
    map_page(&a, IPA_SAME, P);
    env.tlb.take();

    let rcu = a.rcu().read_lock();
    let pmd = a.pmd_lookup(&rcu, Ipa(IPA_SAME)).unwrap();
    let mut pte = a.pte_offset_map_lock(&pmd).unwrap();
    let exec_device = |x: &Attrs| Attrs { mem: MemType::DeviceNGnRE, exec: Exec::All, ..*x };
    type Try<'t> = (Ipa, &'t [&'t S2<'t>], &'t dyn Fn(&Attrs) -> Attrs, ErrorKind);
    let tries: [Try<'_>; 5] = [
        (Ipa(IPA_OTHER), &[&b], &nc, ErrorKind::OutOfRange),
        (Ipa(IPA_SAME + PAGE), &[&b], &nc, ErrorKind::NotMapped),
        (Ipa(IPA_SAME), &[], &nc, ErrorKind::UnknownSpace),
        (Ipa(IPA_SAME), &[&stray], &nc, ErrorKind::UnknownSpace),
        (Ipa(IPA_SAME), &[&b], &exec_device, ErrorKind::BadAttributes),
    ];
    for (ipa, spaces, adjust, err) in tries {
        assert_eq!(
            make_coherent(&mut pte, ipa, spaces, adjust, &env.tlb).map_err(|e| e.kind()),
            Err(err)
        );
    }
    drop(pte);
    assert_eq!(
        a.adjust_aliases(Ipa(IPA_SAME + 1), &[&b], &nc, &env.tlb).map_err(|e| e.kind()),
        Err(ErrorKind::Unaligned)
    );
    assert_eq!(
        a.adjust_aliases(Ipa(1 << 40), &[&b], &nc, &env.tlb).map_err(|e| e.kind()),
        Err(ErrorKind::OutOfRange)
    );
    assert_eq!(
        a.adjust_aliases(Ipa(IPA_SAME), &[], &nc, &env.tlb),
        Err(Error::UnknownSpace { vmid: B })
    );
    assert_eq!(env.tlb.take(), [], "no maintenance for refused calls");
    for (s, ipa) in [(&a, IPA1), (&a, IPA_SAME), (&b, IPB)] {
        assert_eq!(attrs_at(s, ipa), Attrs::RAM);
    }
}

#[test]
fn reverse_map_follows_unmap_failed_map_copy_collapse_and_drop() {
    let env = Env::new(64);
    let rmap = Rmap::new();
    let a = space(&env, &rmap, geo40(), A, LockMode::Split);
    let maps =
        || rmap.mappings(PhysAddr(P)).iter().map(|m| (m.vmid, m.ipa.get())).collect::<Vec<_>>();
    map_page(&a, IPA1, P);
    a.track_page(Ipa(IPA1)).unwrap();
    {
        let b = space(&env, &rmap, geo40(), B, LockMode::Split);
        map_page(&b, IPB, P);
        assert_eq!(maps(), [(A, IPA1), (B, IPB)]);
        // A map that fails records nothing.
        assert_eq!(
            b.map(Ipa(IPB), PhysAddr(P), PAGE, &nc(&Attrs::RAM), Granularity::Pages)
                .map_err(|e| e.kind()),
            Err(ErrorKind::AlreadyMapped)
        );
        assert_eq!(
            // P at IPB - PAGE would be new; IPB conflicts.
            b.map(Ipa(IPB - PAGE), PhysAddr(P), 2 * PAGE, &Attrs::RAM, Granularity::Pages)
                .map_err(|e| e.kind()),
            Err(ErrorKind::AlreadyMapped)
        );
        assert_eq!(maps(), [(A, IPA1), (B, IPB)], "failed maps record nothing");
    }
    assert_eq!(maps(), [(A, IPA1)], "dropping a space forgets its mappings");
    // Copying collapse would move the page away from its aliases.
    let base = 0x4000_0000;
    let p0 = P & !(MB2 - 1);
    // Held (an alias to come, say), the page stays tracked when its last
    // mapping goes, and that unmap does not own it.
    rmap.hold(PhysAddr(P)).unwrap();
    let mut owned = Vec::new();
    a.unmap_with(Ipa(IPA1), PAGE, &mut |l| owned.push(l.owned)).unwrap();
    assert_eq!((maps(), owned), (vec![], vec![false]));
    a.map(Ipa(base), PhysAddr(p0), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
    assert_eq!(maps(), [(A, base + (P - p0))], "map records a tracked page inside a range");
    assert_eq!(
        a.collapse_copy(Ipa(base), PhysAddr(0xA000_0000), &|_, _| panic!("no copy")).err(),
        Some(Error::NotCollapsible {
            ipa: Ipa(base),
            level: 2,
            why: "a page is tracked (aliased or shared)"
        })
    );
    a.unmap(Ipa(base), MB2).unwrap();
    assert!(!rmap.release(PhysAddr(P)), "held");
    assert!(rmap.unhold(PhysAddr(P)), "the last reference owns it");
    assert_eq!(rmap.tracked(), 0);
}

/// Every way a page gets mapped records it when it is tracked: a page
/// installed through a locked table (the `pte_offset_map_lock` write path,
/// not `map`) is found by `make_coherent` and counts as a reference, so
/// the page is not handed back as the caller's while it is still mapped.
/// A locked table's `set` cannot drop a tracked mapping behind the
/// reverse map's back: that is `unmap_with`'s job.
#[test]
fn installs_through_a_locked_table_are_recorded_and_sets_cannot_drop_them() {
    let env = Env::new(64);
    let rmap = Rmap::new();
    let a = space(&env, &rmap, geo40(), A, LockMode::Split);
    map_page(&a, IPA1, P);
    a.track_page(Ipa(IPA1)).unwrap();
    let page = Desc::leaf(a.geometry(), 3, PhysAddr(P), &Attrs::RAM);
    {
        let rcu = a.rcu().read_lock();
        let pmd = a.pmd_lookup(&rcu, Ipa(IPA_SAME)).unwrap();
        let mut pte = a.pte_offset_map_lock(&pmd).unwrap();
        pte.install(Ipa(IPA_SAME), page).unwrap();
        let mut batch = a.tlb_batch();
        assert_eq!(
            pte.set(Ipa(IPA_SAME), Desc::INVALID, &mut batch),
            Err(Error::Tracked { pa: PhysAddr(P) })
        );
        let moved = page.with_addr(PhysAddr(P + PAGE));
        assert_eq!(pte.set(Ipa(IPA1), moved, &mut batch), Err(Error::Tracked { pa: PhysAddr(P) }));
        assert!(batch.is_empty(), "refused sets change nothing");
        // Permissions may change: the page stays mapped.
        let ro_page = page.with_attrs(a.geometry(), &Attrs { write: false, ..Attrs::RAM });
        assert_eq!(pte.set(Ipa(IPA_SAME), ro_page, &mut batch), Ok(page));
    }
    let maps: Vec<_> = rmap.mappings(PhysAddr(P)).iter().map(|m| m.ipa.get()).collect();
    assert_eq!(maps, [IPA1, IPA_SAME], "the install is recorded");
    let mut owned = vec![];
    a.unmap_with(Ipa(IPA1), PAGE, &mut |l| owned.push(l.owned)).unwrap();
    assert_eq!(owned, [false], "the installed mapping still holds the page");
    a.unmap_with(Ipa(IPA_SAME), PAGE, &mut |l| owned.push(l.owned)).unwrap();
    assert_eq!(owned, [false, true], "the last mapping hands the page back");
    assert_eq!(rmap.tracked(), 0);
}

/// A tracked page with no room for another mapping cannot be mapped again,
/// by `map` or by an install, and the refusal changes nothing.
#[test]
fn a_full_page_refuses_another_mapping_before_anything_is_written() {
    let env = Env::new(64);
    let rmap = Rmap::new();
    let a = space(&env, &rmap, geo40(), A, LockMode::Split);
    map_page(&a, IPA1, P);
    a.track_page(Ipa(IPA1)).unwrap();
    // More mappings until the page has no room for another.
    let more = |k: u64| {
        a.map(Ipa(0x5000_0000 + k * PAGE), PhysAddr(P), PAGE, &Attrs::RAM, Granularity::Pages)
    };
    let mut k = 0;
    while more(k).is_ok() {
        k += 1;
    }
    let recorded = rmap.mappings(PhysAddr(P)).len();
    assert!(recorded > 1);
    let full = Error::TooManyMappings { pa: PhysAddr(P) };
    let before = env.mem.live();
    assert_eq!(
        a.map(Ipa(IPA_OTHER), PhysAddr(P), PAGE, &Attrs::RAM, Granularity::Pages),
        Err(full)
    );
    let page = Desc::leaf(a.geometry(), 3, PhysAddr(P), &Attrs::RAM);
    {
        let rcu = a.rcu().read_lock();
        let pmd = a.pmd_lookup(&rcu, Ipa(IPA_SAME)).unwrap();
        let mut pte = a.pte_offset_map_lock(&pmd).unwrap();
        assert_eq!(pte.install(Ipa(IPA_SAME), page), Err(full));
        assert_eq!(pte.get_at(Ipa(IPA_SAME)), Ok(Desc::INVALID));
    }
    // A range that takes the page as one of its 512 leaves.
    let base = 0x4000_0000 + 16 * MB2;
    let range = a.map(Ipa(base), PhysAddr(P & !(MB2 - 1)), MB2, &Attrs::RAM, Granularity::Pages);
    assert_eq!(range, Err(full));
    assert!(a.translate(Ipa(IPA_OTHER)).is_none() && a.translate(Ipa(base)).is_none());
    assert_eq!(env.mem.live(), before, "no table kept");
    assert_eq!(rmap.mappings(PhysAddr(P)).len(), recorded);
}
