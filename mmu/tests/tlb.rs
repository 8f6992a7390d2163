//! Exact TLB-maintenance sequences for each kind of change, on CPUs with
//! and without IPA and range invalidation.

mod common;

use common::*;
use mmu::testing::{RecordingTlb, TlbOp};
use mmu::{Attrs, Features, Geometry, Granularity, Ipa, LockMode, MemType, PhysAddr, Vmid};

const BASE: u64 = 0x4000_0000;
const VMID: Vmid = Vmid(7);

fn geo40() -> Geometry {
    Geometry::aarch64(40, 48, Features::default()).unwrap()
}

fn ipa_op(ipa: u64, level: u8, last_level: bool) -> TlbOp {
    TlbOp::Ipa { vmid: VMID, ipa: Ipa(ipa), level: Some(level), last_level }
}

/// The invalidation of a removed table entry: not last level, no level
/// hint (the leaves under it may be cached at any deeper level).
fn table_op(ipa: u64) -> TlbOp {
    TlbOp::Ipa { vmid: VMID, ipa: Ipa(ipa), level: None, last_level: false }
}

/// `DSB ISHST; TLBI ...; DSB ISH; TLBI VMALLE1IS; DSB ISH; ISB`.
fn flushed(ops: Vec<TlbOp>) -> Vec<TlbOp> {
    let mut v = vec![TlbOp::SyncTables];
    v.extend(ops);
    v.push(TlbOp::Stage1(VMID));
    v.push(TlbOp::Complete);
    v
}

#[test]
fn mapping_invalid_entries_invalidates_nothing() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), 16 * PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    s2.map(Ipa(BASE + GB1), PhysAddr(0xC000_0000), GB1, &Attrs::RAM, Granularity::Largest).unwrap();
    // Only the barrier that publishes the new entries to table walks.
    assert_eq!(env.tlb.take(), vec![TlbOp::SyncTables, TlbOp::SyncTables]);
    // Mapping again what is already mapped writes nothing: no barrier.
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), 16 * PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    assert_eq!(env.tlb.take(), vec![]);
}

#[test]
fn unmap_invalidates_the_leaf_and_the_freed_tables() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    env.tlb.take();
    s2.unmap(Ipa(BASE), PAGE).unwrap();
    // The page (last level, hinted at level 3), then the emptied level-3
    // and level-2 tables (not last level: cached walks through them must
    // go too; no level hint, since what a TLB caches under a table entry is
    // a leaf of a deeper level).
    assert_eq!(
        env.tlb.take(),
        flushed(vec![ipa_op(BASE, 3, true), table_op(BASE), table_op(BASE)])
    );
    s2.rcu_barrier();
    assert_eq!(env.mem.live(), s2.geometry().root_tables(), "only the root is left");
    // Unmapping a hole invalidates nothing.
    s2.unmap(Ipa(BASE), 64 * PAGE).unwrap();
    assert!(env.tlb.take().is_empty());
}

#[test]
fn many_pages_become_one_vmid_invalidation() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), 65 * PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    env.tlb.take();
    // 64 pages (the table keeps one) stay per-entry invalidations.
    s2.unmap(Ipa(BASE), 64 * PAGE).unwrap();
    let per_page: Vec<TlbOp> = (0..64).map(|p| ipa_op(BASE + p * PAGE, 3, true)).collect();
    assert_eq!(env.tlb.take(), flushed(per_page));
    s2.unmap(Ipa(BASE + 64 * PAGE), PAGE).unwrap();
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
    env.tlb.take();
    // 512 pages + 2 tables: past the threshold, one whole-VMID flush.
    s2.unmap(Ipa(BASE), MB2).unwrap();
    assert_eq!(env.tlb.take(), vec![TlbOp::SyncTables, TlbOp::Vmid(VMID), TlbOp::Complete]);
}

#[test]
fn range_invalidation_when_the_cpu_has_it() {
    let env = Env::with_tlb(64, RecordingTlb::with_caps(true, true));
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
    env.tlb.take();
    s2.unmap(Ipa(BASE), MB2).unwrap();
    // The range covers the level-3 table whole: it is detached in one
    // piece, and one range invalidation (no level hint: leaves and the
    // cached table entry) covers its span; then the emptied level-2 table.
    assert_eq!(
        env.tlb.take(),
        flushed(vec![
            TlbOp::Range { vmid: VMID, ipa: Ipa(BASE), pages: 512, level: None },
            table_op(BASE),
        ])
    );
    s2.rcu_barrier();
    assert_eq!(env.mem.live(), s2.geometry().root_tables());
    // A partial unmap clears entries one by one, in one range.
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
    env.tlb.take();
    s2.unmap(Ipa(BASE + PAGE), 16 * PAGE).unwrap();
    assert_eq!(
        env.tlb.take(),
        flushed(vec![TlbOp::Range {
            vmid: VMID,
            ipa: Ipa(BASE + PAGE),
            pages: 16,
            level: Some(3)
        }])
    );
}

#[test]
fn armv7_invalidates_the_whole_vmid() {
    // ARMv7 has no stage-2 invalidation by IPA: every batch is one
    // TLBIALLIS for the VMID, whatever was changed.
    let env = Env::with_tlb(64, RecordingTlb::with_caps(false, false));
    let s2 = env.stage2(Geometry::armv7(40).unwrap(), LockMode::Single);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), 2 * PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    env.tlb.take();
    s2.protect(Ipa(BASE), PAGE, &Attrs::RAM_RO).unwrap();
    assert_eq!(env.tlb.take(), vec![TlbOp::SyncTables, TlbOp::Vmid(VMID), TlbOp::Complete]);
    s2.unmap(Ipa(BASE), 2 * PAGE).unwrap();
    assert_eq!(env.tlb.take(), vec![TlbOp::SyncTables, TlbOp::Vmid(VMID), TlbOp::Complete]);
}

#[test]
fn permission_change_in_place_memory_type_change_break_before_make() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), 2 * PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    env.tlb.take();
    // Write-protect: in place, one batch for both pages.
    s2.protect(Ipa(BASE), 2 * PAGE, &Attrs::RAM_RO).unwrap();
    assert_eq!(env.tlb.take(), flushed(vec![ipa_op(BASE, 3, true), ipa_op(BASE + PAGE, 3, true)]));
    // Same attributes again: nothing to do.
    s2.protect(Ipa(BASE), 2 * PAGE, &Attrs::RAM_RO).unwrap();
    assert!(env.tlb.take().is_empty());
    // Memory type: each page broken, invalidated, then made.
    let nc = Attrs { mem: MemType::NormalNc, ..Attrs::RAM_RO };
    s2.protect(Ipa(BASE), 2 * PAGE, &nc).unwrap();
    let mut want = flushed(vec![ipa_op(BASE, 3, true)]);
    want.extend(flushed(vec![ipa_op(BASE + PAGE, 3, true)]));
    assert_eq!(env.tlb.take(), want);
    assert_eq!(s2.translate(Ipa(BASE + PAGE)).unwrap().attrs, nc);
}

#[test]
fn splitting_a_block_is_break_before_make() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), MB2, &Attrs::RAM, Granularity::Largest).unwrap();
    assert_eq!(s2.translate(Ipa(BASE)).unwrap().level, 2);
    env.tlb.take();
    s2.unmap(Ipa(BASE + 5 * PAGE), PAGE).unwrap();
    // The block is invalidated before the table replaces it, then the page
    // removed from the new table is invalidated.
    let mut want = flushed(vec![ipa_op(BASE, 2, true)]);
    want.extend(flushed(vec![ipa_op(BASE + 5 * PAGE, 3, true)]));
    assert_eq!(env.tlb.take(), want);
    assert_eq!(s2.stats().splits, 1);
    let mut model = Model::new();
    for p in (0..512).filter(|&p| p != 5) {
        model.insert(BASE + p * PAGE, (0x8000_0000 + p * PAGE, Attrs::RAM));
    }
    check_pages(&env, &s2, &model, (0..512).map(|p| BASE + p * PAGE));
}

#[test]
fn a_one_gib_block_splits_down_to_pages() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Single);
    s2.map(Ipa(GB1), PhysAddr(0x8000_0000), GB1, &Attrs::RAM, Granularity::Largest).unwrap();
    assert_eq!(s2.translate(Ipa(GB1)).unwrap().level, 1);
    let before = env.mem.live();
    s2.protect(Ipa(GB1 + 3 * MB2 + PAGE), PAGE, &Attrs::RAM_RO).unwrap();
    assert_eq!(env.mem.live(), before + 2, "one level-2 and one level-3 table");
    assert_eq!(s2.stats().splits, 2);
    let mut model = Model::new();
    let sample: Vec<u64> = (0..1024).map(|p| GB1 + 3 * MB2 - 256 * PAGE + p * PAGE).collect();
    for &ipa in &sample {
        let attrs = if ipa == GB1 + 3 * MB2 + PAGE { Attrs::RAM_RO } else { Attrs::RAM };
        model.insert(ipa, (0x8000_0000 + ipa - GB1, attrs));
    }
    check_pages(&env, &s2, &model, sample);
    assert_eq!(s2.translate(Ipa(GB1 + 7 * MB2)).unwrap().level, 2);
    assert_eq!(s2.translate(Ipa(GB1 + 3 * MB2)).unwrap().level, 3);
}
