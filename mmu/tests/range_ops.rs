//! The operations a hypervisor builds on instead of page-by-page loops:
//! `write_protect`, `relax_perms`, `dirty_scan`, `next_hole`,
//! `collapse_check`, `map_page_locked`, and a caller's own visitor through
//! the public walker. Each on every geometry and lock mode, checked
//! against the independent reference walker where it changes tables.

mod common;

use common::*;
use mmu::testing::TlbOp;
use mmu::walk::{Cursor, Step, Visit, Visitor, WalkError};
use mmu::{
    Attrs, CollapseKind, Error, ErrorKind, Granularity, Ipa, Perms, PhysAddr, TableMemory,
    TlbMaintenance,
};

/// Inside every regime's IPA space (the smallest is 1 GiB).
const BASE: u64 = 0x0100_0000;
const PA: u64 = 0x8000_0000;

fn for_all(mut f: impl FnMut(&str, mmu::Geometry, mmu::LockMode)) {
    for (name, geo) in geometries() {
        for mode in MODES {
            f(name, geo, mode);
        }
    }
}

/// A 2 MiB block (or 512 pages where the regime has no level-2 blocks of
/// this granularity) mapped read-write at `BASE`.
fn map_block(s2: &S2<'_>) {
    s2.map(Ipa(BASE), PhysAddr(PA), MB2, &Attrs::RAM, Granularity::Max2M).unwrap();
}

type S2<'e> = mmu::Stage2<'e, &'e mmu::testing::HostMemory, &'e mmu::testing::RecordingTlb>;

#[test]
fn dirty_logging_at_page_granularity_on_a_block() {
    for_all(|name, geo, mode| {
        let env = Env::new(64);
        let s2 = env.stage2(geo, mode);
        map_block(&s2);
        assert_eq!(s2.dirty_scan(Ipa(BASE), MB2, false), Ok(512), "{name}: all writable");
        s2.write_protect(Ipa(BASE), MB2).unwrap();
        assert_eq!(s2.stats().splits, 0, "{name}: a covered block is protected whole");
        assert_eq!(s2.dirty_scan(Ipa(BASE), MB2, false), Ok(0), "{name}: clean");
        assert_eq!(s2.translate(Ipa(BASE)).unwrap().attrs, Attrs { write: false, ..Attrs::RAM });
        // Three write faults: the block splits once, each page alone
        // becomes writable, in place.
        let write = Perms { write: true, ..Perms::default() };
        for page in [3u64, 100, 511] {
            let ipa = Ipa(BASE + page * PAGE);
            env.tlb.take();
            assert_eq!(s2.relax_perms(ipa, write, Granularity::Pages), Ok(3), "{name}");
            let ops = env.tlb.take();
            assert!(ops.contains(&TlbOp::Complete), "{name}: the relax is invalidated");
        }
        assert_eq!(s2.stats().splits, 1, "{name}");
        assert_eq!(s2.dirty_scan(Ipa(BASE), MB2, true), Ok(3), "{name}: the written pages");
        assert_eq!(s2.dirty_scan(Ipa(BASE), MB2, false), Ok(0), "{name}: cleared");
        // Every page still maps its frame, with RAM's other attributes.
        for page in 0..512 {
            let t = s2.translate(Ipa(BASE + page * PAGE)).unwrap();
            assert_eq!(t.pa, PhysAddr(PA + page * PAGE));
            assert_eq!(t.attrs, Attrs { write: false, ..Attrs::RAM }, "{name} page {page}");
            let seen = ref_translate(&env, &s2, BASE + page * PAGE);
            assert_eq!(seen, Seen::Mapped { pa: PA + page * PAGE, attrs: t.attrs });
        }
    });
}

#[test]
fn relax_perms_keeps_blocks_when_allowed_and_refuses_holes() {
    for_all(|name, geo, mode| {
        let env = Env::new(64);
        let s2 = env.stage2(geo, mode);
        map_block(&s2);
        s2.write_protect(Ipa(BASE), MB2).unwrap();
        let level = s2.translate(Ipa(BASE)).unwrap().level;
        let write = Perms { write: true, ..Perms::default() };
        assert_eq!(s2.relax_perms(Ipa(BASE + 7 * PAGE), write, Granularity::Largest), Ok(level));
        assert_eq!(s2.stats().splits, 0, "{name}: relaxed whole");
        assert_eq!(s2.dirty_scan(Ipa(BASE), MB2, false), Ok(512));
        // Nothing to add: no write, no invalidation.
        env.tlb.take();
        assert_eq!(s2.relax_perms(Ipa(BASE), write, Granularity::Largest), Ok(level));
        assert_eq!(env.tlb.take(), vec![], "{name}");
        let hole = Ipa(BASE + 4 * MB2);
        assert_eq!(
            s2.relax_perms(hole, write, Granularity::Pages),
            Err(Error::NotMapped { ipa: hole })
        );
        assert_eq!(
            s2.relax_perms(Ipa(BASE + 1), write, Granularity::Pages).map_err(|e| e.kind()),
            Err(ErrorKind::Unaligned)
        );
    });
}

#[test]
fn next_hole_finds_each_unmapped_run() {
    for_all(|name, geo, mode| {
        let env = Env::new(64);
        let s2 = env.stage2(geo, mode);
        let range = 8 * MB2;
        assert_eq!(s2.next_hole(Ipa(BASE), range), Some((Ipa(BASE), range)), "{name}: empty");
        map_block(&s2);
        let pages = |ipa: u64, n: u64| {
            s2.map(Ipa(ipa), PhysAddr(PA + ipa - BASE), n * PAGE, &Attrs::RAM, Granularity::Pages)
                .unwrap()
        };
        pages(BASE + MB2, 3);
        pages(BASE + MB2 + 5 * PAGE, 1);
        assert_eq!(s2.next_hole(Ipa(BASE), range), Some((Ipa(BASE + MB2 + 3 * PAGE), 2 * PAGE)));
        let after = BASE + MB2 + 6 * PAGE;
        assert_eq!(
            s2.next_hole(Ipa(after), range - (after - BASE)),
            Some((Ipa(after), range - (after - BASE)))
        );
        // Populating hole after hole ends with a fully mapped range.
        let mut n = 0;
        while let Some((ipa, size)) = s2.next_hole(Ipa(BASE), range) {
            pages(ipa.get(), size / PAGE);
            n += 1;
        }
        assert_eq!(n, 2, "{name}");
        assert_eq!(s2.dirty_scan(Ipa(BASE), range, false), Ok(range / PAGE));
    });
}

#[test]
fn collapse_check_says_how_and_changes_nothing() {
    for_all(|name, geo, mode| {
        let env = Env::new(64);
        let s2 = env.stage2(geo, mode);
        let check = |ipa| s2.collapse_check(Ipa(ipa), 2);
        assert!(matches!(check(BASE), Err(Error::NotATable { .. })), "{name}: nothing mapped");
        // Contiguous pages: in place.
        s2.map(Ipa(BASE), PhysAddr(PA), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
        let live = env.mem.live();
        env.tlb.take();
        assert_eq!(check(BASE), Ok(CollapseKind::InPlace), "{name}");
        assert_eq!((env.mem.live(), env.tlb.take()), (live, vec![]), "{name}: changes nothing");
        // Scattered pages: by copy. One page missing: not yet.
        let other = BASE + MB2;
        for i in 0..512 {
            let pa = PA + 4 * MB2 + ((i * 7) % 512) * PAGE;
            s2.map(Ipa(other + i * PAGE), PhysAddr(pa), PAGE, &Attrs::RAM, Granularity::Pages)
                .unwrap();
        }
        assert_eq!(check(other), Ok(CollapseKind::ByCopy), "{name}");
        s2.unmap(Ipa(other + 9 * PAGE), PAGE).unwrap();
        assert_eq!(
            check(other),
            Err(Error::NotCollapsible {
                ipa: Ipa(other),
                level: 2,
                why: "not every entry is valid"
            })
        );
        // What collapse_check says is what collapse does.
        assert!(s2.collapse(Ipa(BASE), 2).is_ok(), "{name}");
        assert!(matches!(check(BASE), Err(Error::NotATable { .. })), "{name}: a block now");
    });
}

#[test]
fn map_page_locked_hands_back_the_table_the_page_was_mapped_in() {
    for_all(|name, geo, mode| {
        let env = Env::new(64);
        let s2 = env.stage2(geo, mode);
        let rcu = s2.rcu().read_lock();
        // No table yet: the walker builds it, then it is locked.
        let ipa = Ipa(BASE + 5 * PAGE);
        let pte = s2.map_page_locked(&rcu, ipa, PhysAddr(PA), &Attrs::RAM).unwrap();
        assert_eq!(pte.get_at(ipa).unwrap().addr(), PhysAddr(PA), "{name}");
        assert!(pte.ptl().try_lock().is_none(), "{name}: held");
        drop(pte);
        // Into the existing table, and again (the same page: no error).
        let next = Ipa(BASE + 6 * PAGE);
        for _ in 0..2 {
            let pte = s2.map_page_locked(&rcu, next, PhysAddr(PA + PAGE), &Attrs::RAM).unwrap();
            assert_eq!(pte.get_at(next).unwrap().addr(), PhysAddr(PA + PAGE));
        }
        // Another page there, or a block: refused.
        let other = s2.map_page_locked(&rcu, next, PhysAddr(PA + 9 * PAGE), &Attrs::RAM);
        assert_eq!(other.err().map(|e| e.kind()), Some(ErrorKind::AlreadyMapped), "{name}");
        drop(rcu);
        s2.map(Ipa(BASE + MB2), PhysAddr(PA + MB2), MB2, &Attrs::RAM, Granularity::Max2M).unwrap();
        let rcu = s2.rcu().read_lock();
        let in_block = Ipa(BASE + MB2 + PAGE);
        let r = s2.map_page_locked(&rcu, in_block, PhysAddr(PA + MB2 + PAGE), &Attrs::RAM);
        if geo.leaf_allowed(2) {
            assert_eq!(r.err().map(|e| e.kind()), Some(ErrorKind::NotATable), "{name}");
        }
    });
}

/// A caller's own visitor: counts leaves by level over a range, and
/// rewrites entries through the cursor (here: write-protects pages),
/// which goes through the write path (an invalidation per change).
struct PerLevel([u64; 4], bool);

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for PerLevel {
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            return Ok(Step::Descend);
        }
        if v.old.is_leaf(v.level) {
            self.0[usize::from(v.level)] += 1;
            if self.1 && v.level == 3 {
                cx.write(v.old, v.old.without_write())?;
            }
        }
        Ok(Step::Next)
    }
}

#[test]
fn a_callers_visitor_reads_and_writes_through_the_walker() {
    for_all(|name, geo, mode| {
        let env = Env::new(64);
        let s2 = env.stage2(geo, mode);
        map_block(&s2);
        s2.map(Ipa(BASE + MB2), PhysAddr(PA + MB2), 4 * PAGE, &Attrs::RAM, Granularity::Pages)
            .unwrap();
        let mut v = PerLevel([0; 4], false);
        assert_eq!(s2.walk(Ipa(BASE), 4 * MB2, &mut v), Ok(Ipa(BASE + 4 * MB2)));
        let blocks = if geo.leaf_allowed(2) { 1 } else { 0 };
        assert_eq!(v.0, [0, 0, blocks, 4 + (1 - blocks) * 512], "{name}");
        env.tlb.take();
        let mut w = PerLevel([0; 4], true);
        s2.walk(Ipa(BASE + MB2), MB2, &mut w).unwrap();
        assert_eq!(w.0[3], 4);
        assert_eq!(s2.dirty_scan(Ipa(BASE + MB2), MB2, false), Ok(0), "{name}");
        assert_eq!(env.tlb.last(), Some(TlbOp::Complete), "{name}: invalidated before return");
        assert_eq!(
            s2.walk(Ipa(BASE + 1), MB2, &mut v).map_err(|e| e.kind()),
            Err(ErrorKind::Unaligned)
        );
    });
}

#[test]
fn any_tracked_sees_only_this_spaces_recorded_pages() {
    let env = Env::new(64);
    let rmap = mmu::Rmap::new();
    let geo = geometries()[0].1;
    let a = env.stage2(geo, mmu::LockMode::Split).with_rmap(&rmap);
    a.map(Ipa(BASE), PhysAddr(PA), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
    assert!(!a.any_tracked(Ipa(BASE), MB2));
    a.track_page(Ipa(BASE + 9 * PAGE)).unwrap();
    assert!(a.any_tracked(Ipa(BASE), MB2));
    assert!(!a.any_tracked(Ipa(BASE), 9 * PAGE), "below it");
    assert!(!a.any_tracked(Ipa(BASE + 10 * PAGE), PAGE), "above it");
}
