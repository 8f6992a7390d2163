//! `Stage2::unmap_with`: every leaf an unmap removes is handed to the
//! caller exactly once, after its removal is invalidated and forgotten by
//! the reverse map, and a large unmap reports as it goes (bounded memory),
//! not once at the end.

mod common;

use std::collections::BTreeMap;

use common::*;
use mmu::testing::TlbOp;
use mmu::{Attrs, Granularity, Ipa, Leaf, PhysAddr, Rmap, Stage2, UNMAP_GATHER};

fn geo40() -> mmu::Geometry {
    mmu::Geometry::aarch64(40, 48, mmu::Features::default()).unwrap()
}

/// (IPA, PA, level) of a leaf.
type Key = (u64, u64, u8);

fn key(l: &Leaf) -> Key {
    (l.ipa.get(), l.pa.get(), l.level)
}

/// Unmaps `[ipa, ipa + size)` and returns the leaves reported, checking
/// at each report that the leaf is gone from the tables and that the last
/// TLB call before it completed a flush.
fn unmap_collect(
    env: &Env,
    s2: &Stage2<'_, &mmu::testing::HostMemory, &mmu::testing::RecordingTlb>,
    ipa: u64,
    size: u64,
) -> Vec<Leaf> {
    let mut got = Vec::new();
    s2.unmap_with(Ipa(ipa), size, &mut |leaf| {
        assert_eq!(s2.translate(leaf.ipa), None, "{leaf:?} reported while still mapped");
        assert_eq!(env.tlb.last(), Some(TlbOp::Complete), "{leaf:?} reported before the flush");
        got.push(leaf);
    })
    .unwrap();
    got
}

#[test]
fn every_removed_leaf_is_reported_once_after_its_invalidation() {
    for (name, geo) in geometries() {
        for mode in MODES {
            let env = Env::new(256);
            let s2 = env.stage2(geo, mode);
            // Inside the smallest IPA space (30 bits).
            let base = 0x1000_0000;
            // Three 2 MiB blocks, then 600 pages (one table whole, one in
            // part), all with distinct output addresses.
            let mut want: BTreeMap<u64, Key> = BTreeMap::new();
            let blocks_pa = 0x8000_0000;
            s2.map(Ipa(base), PhysAddr(blocks_pa), 3 * MB2, &Attrs::RAM, Granularity::Max2M)
                .unwrap();
            for i in 0..3 {
                want.insert(base + i * MB2, (base + i * MB2, blocks_pa + i * MB2, 2));
            }
            let pages = base + 3 * MB2;
            let pages_pa = 0x9000_0000;
            s2.map(Ipa(pages), PhysAddr(pages_pa), 600 * PAGE, &Attrs::RAM, Granularity::Pages)
                .unwrap();
            for i in 0..600 {
                want.insert(pages + i * PAGE, (pages + i * PAGE, pages_pa + i * PAGE, 3));
            }
            env.tlb.take();
            // Cut the first block in its middle: its upper half goes as
            // 256 pages (split first), the rest whole.
            let from = base + MB2 / 2;
            let got = unmap_collect(&env, &s2, from, 3 * MB2 - MB2 / 2 + 600 * PAGE);
            want.remove(&base);
            for i in 256..512 {
                let ipa = base + i * PAGE;
                want.insert(ipa, (ipa, blocks_pa + i * PAGE, 3));
            }
            let mut seen: BTreeMap<u64, Key> = BTreeMap::new();
            for l in &got {
                assert!(seen.insert(l.ipa.get(), key(l)).is_none(), "{name} {mode:?}: {l:?} twice");
            }
            assert_eq!(seen, want, "{name} {mode:?}");
            // The lower half of the cut block is still mapped, by pages.
            let t = s2.translate(Ipa(base)).unwrap();
            assert_eq!((t.pa.get(), t.level), (blocks_pa, 3), "{name} {mode:?}");
            assert_eq!(s2.translate(Ipa(from)), None);
        }
    }
}

#[test]
fn a_large_unmap_reports_as_it_goes() {
    let env = Env::new(256);
    let s2 = env.stage2(geo40(), mmu::LockMode::Split);
    let base = 0x4000_0000;
    // 200 blocks (more than one gather), then 4 MiB of pages.
    let blocks = 200u64;
    s2.map(Ipa(base), PhysAddr(0x1_0000_0000), blocks * MB2, &Attrs::RAM, Granularity::Max2M)
        .unwrap();
    let pages = base + blocks * MB2;
    s2.map(Ipa(pages), PhysAddr(0x2_0000_0000), 2 * MB2, &Attrs::RAM, Granularity::Pages).unwrap();
    env.tlb.take();
    let last = pages + 2 * MB2 - PAGE;
    let (mut reports, mut still_mapped_at_first, mut completes_seen) = (0u64, None, Vec::new());
    s2.unmap_with(Ipa(base), blocks * MB2 + 2 * MB2, &mut |leaf| {
        if reports == 0 {
            still_mapped_at_first = Some(s2.translate(Ipa(last)).is_some());
        }
        reports += 1;
        let completes = env.tlb.take().iter().filter(|op| **op == TlbOp::Complete).count();
        completes_seen.push((completes, leaf.level));
    })
    .unwrap();
    assert_eq!(reports, blocks + 1024);
    assert_eq!(still_mapped_at_first, Some(true), "the first leaves come before the walk ends");
    // Blocks come in gathers of at most UNMAP_GATHER, each after its own
    // flush: a new flush before every UNMAP_GATHER-th block.
    let flushes_before_blocks: usize =
        completes_seen.iter().filter(|(_, level)| *level == 2).map(|(c, _)| c).sum();
    assert_eq!(flushes_before_blocks as u64, blocks.div_ceil(UNMAP_GATHER as u64));
    s2.rcu_barrier();
    assert_eq!(env.mem.live(), s2.geometry().root_tables());
}

#[test]
fn reported_pages_are_forgotten_by_the_reverse_map_first() {
    let env = Env::new(64);
    let rmap = Rmap::new();
    let s2 = env.stage2(geo40(), mmu::LockMode::Split).with_rmap(&rmap);
    let (ipa, pa) = (0x4000_0000u64, 0x8000_0000u64);
    s2.map(Ipa(ipa), PhysAddr(pa), 8 * PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    let tracked = PhysAddr(pa + 3 * PAGE);
    s2.track_page(Ipa(ipa + 3 * PAGE)).unwrap();
    let mut owned = Vec::new();
    s2.unmap_with(Ipa(ipa), 8 * PAGE, &mut |leaf| {
        owned.push(leaf.owned);
        if leaf.pa == tracked {
            // Nothing maps it any more: forgotten and untracked already.
            assert!(!rmap.is_tracked(leaf.pa));
        }
    })
    .unwrap();
    assert_eq!(owned, [true; 8]);
    assert_eq!(rmap.tracked(), 0);
}

#[test]
fn a_shared_page_goes_to_the_last_unmap_only() {
    let env = Env::new(64);
    let rmap = Rmap::new();
    let a = env.stage2(geo40(), mmu::LockMode::Split).with_rmap(&rmap);
    let b = Stage2::new(geo40(), mmu::Vmid(9), mmu::LockMode::Split, &env.mem, &env.tlb, &env.rcu)
        .unwrap()
        .with_rmap(&rmap);
    let p = PhysAddr(0x8000_0000);
    a.map(Ipa(0x4000_0000), p, PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    a.hold_page(Ipa(0x4000_0000)).unwrap();
    b.map(Ipa(0x5000_0000), p, PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    b.map(Ipa(0x5000_1000), p, PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    let unmap = |s: &Stage2<'_, _, _>, ipa: u64| {
        let mut got = Vec::new();
        s.unmap_with(Ipa(ipa), PAGE, &mut |l| got.push(l.owned)).unwrap();
        got
    };
    assert_eq!(unmap(&a, 0x4000_0000), [false], "mapped twice in B, and held");
    assert_eq!(unmap(&b, 0x5000_0000), [false], "mapped once more, and held");
    assert!(!rmap.unhold(p), "the hold goes; B still maps it");
    assert!(!rmap.is_tracked(p), "one mapping, no hold: an ordinary page of B's");
    assert_eq!(unmap(&b, 0x5000_1000), [true], "B's last mapping owns it");
}

#[test]
fn plain_unmap_and_holes_report_nothing_else() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), mmu::LockMode::Single);
    s2.map(Ipa(0x4000_0000), PhysAddr(0x8000_0000), PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    let got = unmap_collect(&env, &s2, 0x4000_0000 - MB2, 4 * MB2);
    assert_eq!(got.iter().map(key).collect::<Vec<_>>(), [(0x4000_0000, 0x8000_0000, 3)]);
    assert!(unmap_collect(&env, &s2, 0x4000_0000, MB2).is_empty(), "a hole reports nothing");
}
