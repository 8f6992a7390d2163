//! Table → block collapse (in place and by copying) and block → table
//! split: translations, the exact break-before-make sequence and its
//! order, deferred freeing of the old table under readers, refusals that
//! change nothing, and collapse/split racing with faults and readers.
//!
//! Level-1 (1 GiB) collapses run on the geometries whose walk starts at
//! level 0 or 1; where it starts at level 2 (a 32-bit AArch64 IPA, a
//! 30-bit ARMv7 IPA) there are no level-1 entries and the call is refused
//! with `Unsupported` (checked too).
#![allow(missing_docs)]

mod common;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use common::*;
use mmu::pgtable::PmdChanged;
use mmu::testing::{HostMemory, RecordingTlb, TlbOp};
use mmu::{
    Attrs, Collapsed, Desc, Error, Features, Geometry, Granularity, Ipa, Level, LockMode, MemType,
    PhysAddr, Rcu, Stage2, TlbMaintenance, Vmid,
};
use mmu::{ErrorKind, TlbScope};

/// A 2 MiB-aligned IPA inside every geometry's space (30-bit ARMv7 too).
const BASE: u64 = 0x2000_0000;
/// Where the contiguous pages live.
const PA: u64 = 0x8000_0000;
/// A 1 GiB-aligned IPA and PA for level-1 collapses.
const BASE_1G: u64 = GB1;
const PA_1G: u64 = 0x80_0000_0000;
const VMID: Vmid = Vmid(7);
const POOL: usize = 64;

fn geo40() -> Geometry {
    Geometry::aarch64(40, 48, Features::default()).unwrap()
}

fn page(geo: &Geometry, pa: u64, attrs: &Attrs) -> Desc {
    Desc::leaf(geo, 3, PhysAddr(pa), attrs)
}

/// Maps `BASE..BASE + 2 MiB` as 512 pages onto `PA..`; returns the model.
fn map_2m_pages(s2: &Stage2<'_, &HostMemory, &RecordingTlb>, attrs: &Attrs) -> Model {
    s2.map(Ipa(BASE), PhysAddr(PA), MB2, attrs, Granularity::Pages).unwrap();
    (0..512).map(|i| (BASE + i * PAGE, (PA + i * PAGE, *attrs))).collect()
}

fn pages_2m() -> impl Iterator<Item = u64> {
    (0..512).map(|i| BASE + i * PAGE)
}

/// The level-3 table under the pmd for `ipa`, and the pmd's value.
fn pte_table(s2: &Stage2<'_, &HostMemory, impl TlbMaintenance>, ipa: u64) -> (PhysAddr, Desc) {
    let g = s2.rcu().read_lock();
    let pmd = s2.pmd_lookup(&g, Ipa(ipa)).unwrap();
    let map = s2.pte_offset_map(&pmd).expect("a level-3 table");
    (map.table(), pmd.read())
}

/// The physical address of the level-2 entry for `ipa`.
fn pmd_slot_pa(s2: &Stage2<'_, &HostMemory, impl TlbMaintenance>, ipa: u64) -> u64 {
    let g = s2.rcu().read_lock();
    let pmd = s2.pmd_lookup(&g, Ipa(ipa)).unwrap();
    let index = s2.geometry().index(2, ipa) % 512;
    pmd.table().get() + index as u64 * 8
}

#[test]
fn collapse_2m_in_place_translates_the_same() {
    for (name, geo) in geometries() {
        for mode in MODES {
            let env = Env::new(POOL);
            let s2 = env.stage2(geo, mode);
            let model = map_2m_pages(&s2, &Attrs::RAM);
            check_pages(&env, &s2, &model, pages_2m());
            let (table, _) = pte_table(&s2, BASE);
            let before = s2.stats();
            env.tlb.take();

            let c = s2.collapse(Ipa(BASE), 2).unwrap();
            assert_eq!(c, Collapsed { ipa: Ipa(BASE), level: 2, pa: PhysAddr(PA) }, "{name}");
            check_pages(&env, &s2, &model, pages_2m());
            let t = s2.translate(Ipa(BASE + 5 * PAGE)).unwrap();
            assert_eq!((t.level, t.pa), (2, PhysAddr(PA + 5 * PAGE)), "{name} {mode:?}");
            assert_eq!(t.desc, Desc::leaf(&geo, 2, PhysAddr(PA), &Attrs::RAM), "{name}");
            // No reader: the grace period has elapsed by the end of the
            // operation and the table is gone.
            assert!(!env.mem.is_allocated(table), "{name} {mode:?}");
            let after = s2.stats();
            assert_eq!(after.collapses, before.collapses + 1);
            assert_eq!(after.tables_freed, before.tables_freed + 1);
            assert_eq!(after.tables_live, before.tables_live - 1);
            assert_eq!(after.tables_pending, 0);
            assert_eq!(env.mem.live() as u64, after.tables_live);
            // Already a block: nothing to collapse, and no maintenance.
            env.tlb.take();
            assert_eq!(s2.collapse(Ipa(BASE), 2).map_err(|e| e.kind()), Err(ErrorKind::NotATable));
            assert!(env.tlb.take().is_empty());
        }
    }
}

/// `[DSB ISHST, <the invalidation>, DSB ISH; ISB]` for a 2 MiB or 1 GiB
/// span at `ipa` on a TLB with the given capabilities.
fn span_flush(
    ipa: u64,
    pages: u64,
    ipa_caps: bool,
    range: bool,
    hint: Option<Level>,
) -> Vec<TlbOp> {
    if ipa_caps && range {
        vec![
            TlbOp::SyncTables,
            TlbOp::Range { vmid: VMID, ipa: Ipa(ipa), pages, level: hint },
            TlbOp::Stage1(VMID),
            TlbOp::Complete,
        ]
    } else {
        // 512 per-page invalidations are past the per-entry threshold;
        // ARMv7 has no IPA invalidation at all.
        vec![TlbOp::SyncTables, TlbOp::Vmid(VMID), TlbOp::Complete]
    }
}

#[test]
fn collapse_tlb_sequence_is_exact() {
    for (ipa_caps, range) in [(true, false), (true, true), (false, false)] {
        for mode in MODES {
            let env = Env::with_tlb(POOL, RecordingTlb::with_caps(ipa_caps, range));
            let s2 = env.stage2(geo40(), mode);
            map_2m_pages(&s2, &Attrs::RAM);
            env.tlb.take();
            s2.collapse(Ipa(BASE), 2).unwrap();
            assert_eq!(
                env.tlb.take(),
                span_flush(BASE, 512, ipa_caps, range, None),
                "ipa {ipa_caps} range {range} {mode:?}"
            );
            // 1 GiB: every page of the span.
            s2.map(Ipa(BASE_1G), PhysAddr(PA_1G), GB1, &Attrs::RAM, Granularity::Max2M).unwrap();
            env.tlb.take();
            s2.collapse(Ipa(BASE_1G), 1).unwrap();
            assert_eq!(env.tlb.take(), span_flush(BASE_1G, 1 << 18, ipa_caps, range, None));
        }
    }
}

/// One TLB call or copy, with the values of the watched entries then.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Tlb(TlbOp, Vec<u64>),
    Copy(Vec<u64>),
}

/// A TLB that records, at each call, the value of some table entries: to
/// show what was stored before and after each maintenance step.
struct WatchingTlb<'m> {
    mem: &'m HostMemory,
    caps: (bool, bool),
    watch: Mutex<Vec<u64>>,
    log: Mutex<Vec<Event>>,
}

impl<'m> WatchingTlb<'m> {
    fn new(mem: &'m HostMemory, ipa: bool, range: bool) -> Self {
        Self { mem, caps: (ipa, range), watch: Mutex::new(vec![]), log: Mutex::new(vec![]) }
    }
    fn values(&self) -> Vec<u64> {
        self.watch.lock().unwrap().iter().map(|&pa| self.mem.read_phys(pa)).collect()
    }
    fn push(&self, op: TlbOp) {
        if !self.watch.lock().unwrap().is_empty() {
            let v = self.values();
            self.log.lock().unwrap().push(Event::Tlb(op, v));
        }
    }
    fn copied(&self) {
        let v = self.values();
        self.log.lock().unwrap().push(Event::Copy(v));
    }
    /// Stops watching (before the watched tables are freed) and returns
    /// the log.
    fn finish(&self) -> Vec<Event> {
        self.watch.lock().unwrap().clear();
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl TlbMaintenance for WatchingTlb<'_> {
    fn has_ipa_invalidation(&self) -> bool {
        self.caps.0
    }
    fn has_range_invalidation(&self) -> bool {
        self.caps.1
    }
    fn sync_tables(&self) {
        self.push(TlbOp::SyncTables);
    }
    fn invalidate_ipa(&self, scope: TlbScope, ipa: Ipa, level: Option<Level>, last_level: bool) {
        self.push(TlbOp::Ipa { vmid: scope.vmid, ipa, level, last_level });
    }
    fn invalidate_ipa_range(&self, scope: TlbScope, ipa: Ipa, pages: u64, level: Option<Level>) {
        self.push(TlbOp::Range { vmid: scope.vmid, ipa, pages, level });
    }
    fn invalidate_stage1(&self, scope: TlbScope) {
        self.push(TlbOp::Stage1(scope.vmid));
    }
    fn invalidate_vmid(&self, scope: TlbScope) {
        self.push(TlbOp::Vmid(scope.vmid));
    }
    fn complete(&self) {
        self.push(TlbOp::Complete);
    }
}

fn tlb_events(ops: Vec<TlbOp>, values: &[u64]) -> Vec<Event> {
    ops.into_iter().map(|op| Event::Tlb(op, values.to_vec())).collect()
}

#[test]
fn the_block_is_stored_only_after_the_invalidation_completed() {
    for (ipa_caps, range) in [(true, false), (true, true), (false, false)] {
        for mode in MODES {
            let mem = HostMemory::new(POOL);
            let tlb = WatchingTlb::new(&mem, ipa_caps, range);
            // SAFETY: this test runs on one thread.
            let rcu = unsafe { Rcu::new() };
            let s2 = Stage2::new(geo40(), VMID, mode, &mem, &tlb, &rcu).unwrap();
            let geo = *s2.geometry();
            s2.map(Ipa(BASE), PhysAddr(PA), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
            let (table, pmdval) = pte_table(&s2, BASE);
            let slot = pmd_slot_pa(&s2, BASE);
            assert_eq!(mem.read_phys(slot), pmdval.bits());
            *tlb.watch.lock().unwrap() = vec![slot, table.get()];
            s2.collapse(Ipa(BASE), 2).unwrap();
            let p0 = page(&geo, PA, &Attrs::RAM).bits();
            // Every maintenance call saw the entry broken (invalid); the
            // table's leaves untouched.
            assert_eq!(
                tlb.finish(),
                tlb_events(span_flush(BASE, 512, ipa_caps, range, None), &[0, p0]),
                "{mode:?}"
            );
            // The block came after the last of them.
            let block = Desc::leaf(&geo, 2, PhysAddr(PA), &Attrs::RAM);
            assert_eq!(mem.read_phys(slot), block.bits());
        }
    }
}

/// A fake of guest memory: 4 KiB frames by physical address.
#[derive(Default)]
struct GuestRam {
    frames: Mutex<HashMap<u64, Vec<u8>>>,
}

impl GuestRam {
    fn pattern(seed: u64) -> Vec<u8> {
        let mut v: Vec<u8> =
            (0..PAGE).map(|b| (b as u8) ^ (seed as u8) ^ ((seed >> 8) as u8) ^ 0x5a).collect();
        v[..8].copy_from_slice(&seed.to_le_bytes());
        v
    }
    fn fill(&self, pa: u64, seed: u64) {
        self.frames.lock().unwrap().insert(pa, Self::pattern(seed));
    }
    fn read(&self, pa: u64) -> Vec<u8> {
        self.frames.lock().unwrap().get(&pa).cloned().unwrap_or_else(|| vec![0; PAGE as usize])
    }
    fn copy(&self, src: PhysAddr, dst: PhysAddr) {
        let data = self.read(src.get());
        self.frames.lock().unwrap().insert(dst.get(), data);
    }
}

/// Where page `i` of the scattered mapping lives: 512 distinct frames,
/// every other one of a 4 MiB area, in a shuffled order.
fn scattered(i: u64) -> u64 {
    0x9000_0000 + ((i * 97) % 512) * 2 * PAGE
}
const NEW_BLOCK: u64 = 0xA000_0000;

fn map_scattered(s2: &Stage2<'_, &HostMemory, impl TlbMaintenance>, attrs: &Attrs) {
    for i in 0..512 {
        s2.map(Ipa(BASE + i * PAGE), PhysAddr(scattered(i)), PAGE, attrs, Granularity::Pages)
            .unwrap();
    }
}

#[test]
fn copy_collapse_moves_the_data_and_returns_the_old_pages() {
    for (name, geo) in geometries() {
        for mode in MODES {
            let env = Env::new(POOL);
            let s2 = env.stage2(geo, mode);
            map_scattered(&s2, &Attrs::RAM);
            let ram = GuestRam::default();
            for i in 0..512 {
                ram.fill(scattered(i), BASE + i * PAGE);
            }
            let (table, _) = pte_table(&s2, BASE);
            env.tlb.take();
            let copies = Cell::new(0);
            let copy = |src: PhysAddr, dst: PhysAddr| {
                if copies.get() == 0 {
                    // The write-protection is complete before the first copy...
                    assert_eq!(env.tlb.take(), span_flush(BASE, 512, true, false, Some(3)));
                }
                // ... and every page is read-only while copied.
                let i = (dst.get() - NEW_BLOCK) / PAGE;
                let t = s2.translate(Ipa(BASE + i * PAGE)).unwrap();
                assert_eq!(t.pa, src);
                assert!(!t.attrs.write, "page {i} writable during the copy");
                ram.copy(src, dst);
                copies.set(copies.get() + 1);
            };
            let r = s2.collapse_copy(Ipa(BASE), PhysAddr(NEW_BLOCK), &copy).unwrap();
            assert_eq!(copies.get(), 512);
            // Then the break, invalidated over the whole span.
            assert_eq!(env.tlb.take(), span_flush(BASE, 512, true, false, None), "{name}");
            assert_eq!(r.block, Collapsed { ipa: Ipa(BASE), level: 2, pa: PhysAddr(NEW_BLOCK) });
            let want: Vec<PhysAddr> = (0..512).map(|i| PhysAddr(scattered(i))).collect();
            assert_eq!(r.old_pages.to_vec(), want);
            // The block maps the copies, writable again.
            let model: Model =
                (0..512).map(|i| (BASE + i * PAGE, (NEW_BLOCK + i * PAGE, Attrs::RAM))).collect();
            check_pages(&env, &s2, &model, pages_2m());
            assert_eq!(s2.translate(Ipa(BASE)).unwrap().level, 2);
            for i in 0..512 {
                assert_eq!(ram.read(NEW_BLOCK + i * PAGE), GuestRam::pattern(BASE + i * PAGE));
            }
            assert!(!env.mem.is_allocated(table));
            assert_eq!(s2.stats().collapses, 1);
        }
    }
}

#[test]
fn copy_collapse_order_with_a_range_tlb() {
    for mode in MODES {
        let mem = HostMemory::new(POOL);
        let tlb = WatchingTlb::new(&mem, true, true);
        // SAFETY: this test runs on one thread.
        let rcu = unsafe { Rcu::new() };
        let s2 = Stage2::new(geo40(), VMID, mode, &mem, &tlb, &rcu).unwrap();
        let geo = *s2.geometry();
        map_scattered(&s2, &Attrs::RAM);
        let (table, pmdval) = pte_table(&s2, BASE);
        let slot = pmd_slot_pa(&s2, BASE);
        *tlb.watch.lock().unwrap() = vec![slot, table.get()];
        let r = s2.collapse_copy(Ipa(BASE), PhysAddr(NEW_BLOCK), &|_, _| tlb.copied()).unwrap();
        assert_eq!(r.old_pages[0], PhysAddr(scattered(0)));
        let rw = page(&geo, scattered(0), &Attrs::RAM).bits();
        let ro = page(&geo, scattered(0), &Attrs { write: false, ..Attrs::RAM }).bits();
        assert_ne!(rw, ro);
        let wp = vec![pmdval.bits(), ro];
        let mut want = tlb_events(span_flush(BASE, 512, true, true, Some(3)), &wp);
        want.extend((0..512).map(|_| Event::Copy(wp.clone())));
        want.extend(tlb_events(span_flush(BASE, 512, true, true, None), &[0, ro]));
        assert_eq!(tlb.finish(), want, "{mode:?}");
        // The original attributes, writable.
        let block = Desc::leaf(&geo, 2, PhysAddr(NEW_BLOCK), &Attrs::RAM);
        assert_eq!(mem.read_phys(slot), block.bits());
    }
}

#[test]
fn copy_collapse_of_read_only_pages_needs_no_write_protection() {
    let env = Env::with_tlb(POOL, RecordingTlb::with_caps(true, true));
    let s2 = env.stage2(geo40(), LockMode::Split);
    map_scattered(&s2, &Attrs::RAM_RO);
    env.tlb.take();
    s2.collapse_copy(Ipa(BASE), PhysAddr(NEW_BLOCK), &|_, _| {}).unwrap();
    assert_eq!(env.tlb.take(), span_flush(BASE, 512, true, true, None));
    let t = s2.translate(Ipa(BASE + 3 * PAGE)).unwrap();
    assert_eq!((t.pa, t.attrs, t.level), (PhysAddr(NEW_BLOCK + 3 * PAGE), Attrs::RAM_RO, 2));
}

/// Runs `f` and checks it changed nothing: tables byte for byte, no TLB
/// maintenance, no collapse counted.
fn unchanged<R>(
    env: &Env,
    s2: &Stage2<'_, &HostMemory, &RecordingTlb>,
    f: impl FnOnce() -> R,
) -> R {
    env.tlb.take();
    let (snap, stats) = (snapshot(env, POOL), s2.stats());
    let r = f();
    assert_eq!(snapshot(env, POOL), snap, "tables changed");
    assert!(env.tlb.take().is_empty(), "TLB maintenance issued");
    assert_eq!(s2.stats(), stats);
    r
}

#[test]
fn collapse_refuses_and_changes_nothing() {
    for (name, geo) in geometries() {
        for mode in MODES {
            let ctx = format!("{name} {mode:?}");
            let env = Env::new(POOL);
            let s2 = env.stage2(geo, mode);
            let refuse = |want: ErrorKind| {
                let got = unchanged(&env, &s2, || s2.collapse(Ipa(BASE), 2));
                assert_eq!(got.map_err(|e| e.kind()), Err(want), "{ctx}");
            };
            // Nothing mapped.
            refuse(ErrorKind::NotATable);
            // Partially mapped: 511 pages.
            let mut model = map_2m_pages(&s2, &Attrs::RAM);
            s2.unmap(Ipa(BASE + 17 * PAGE), PAGE).unwrap();
            model.remove(&(BASE + 17 * PAGE));
            refuse(ErrorKind::NotCollapsible);
            // Not contiguous: one page elsewhere.
            s2.map(
                Ipa(BASE + 17 * PAGE),
                PhysAddr(0x9000_0000),
                PAGE,
                &Attrs::RAM,
                Granularity::Pages,
            )
            .unwrap();
            refuse(ErrorKind::NotCollapsible);
            // Mixed attributes.
            s2.unmap(Ipa(BASE + 17 * PAGE), PAGE).unwrap();
            s2.map(
                Ipa(BASE + 17 * PAGE),
                PhysAddr(PA + 17 * PAGE),
                PAGE,
                &Attrs::RAM,
                Granularity::Pages,
            )
            .unwrap();
            model.insert(BASE + 17 * PAGE, (PA + 17 * PAGE, Attrs::RAM));
            s2.protect(Ipa(BASE + 511 * PAGE), PAGE, &Attrs::RAM_RO).unwrap();
            model.insert(BASE + 511 * PAGE, (PA + 511 * PAGE, Attrs::RAM_RO));
            refuse(ErrorKind::NotCollapsible);
            let nc = Attrs { mem: MemType::NormalNc, ..Attrs::RAM };
            s2.protect(Ipa(BASE + 511 * PAGE), PAGE, &nc).unwrap();
            model.insert(BASE + 511 * PAGE, (PA + 511 * PAGE, nc));
            refuse(ErrorKind::NotCollapsible);
            check_pages(&env, &s2, &model, pages_2m());
            // Contiguous but not 2 MiB aligned in PA.
            s2.unmap(Ipa(BASE), MB2).unwrap();
            s2.map(Ipa(BASE), PhysAddr(PA + PAGE), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
            refuse(ErrorKind::NotCollapsible);
            // Bad arguments.
            let bad = |ipa: u64, level: Level, want: ErrorKind| {
                let got = unchanged(&env, &s2, || s2.collapse(Ipa(ipa), level));
                assert_eq!(got.map_err(|e| e.kind()), Err(want), "{ctx} {ipa:#x} level {level}");
            };
            bad(BASE + PAGE, 2, ErrorKind::Unaligned);
            bad(BASE + MB2 / 2, 2, ErrorKind::Unaligned);
            bad(geo.ipa_limit(), 2, ErrorKind::OutOfRange);
            bad(BASE, 3, ErrorKind::Unsupported);
            bad(0, 0, ErrorKind::Unsupported);
            if geo.start_level() == 2 {
                // No level-1 entries in this regime.
                bad(0, 1, ErrorKind::Unsupported);
            } else {
                bad(BASE_1G + MB2, 1, ErrorKind::Unaligned);
            }
            // A block is not a table; neither is a hole.
            s2.unmap(Ipa(BASE), MB2).unwrap();
            s2.map(Ipa(BASE), PhysAddr(PA), MB2, &Attrs::RAM, Granularity::Largest).unwrap();
            refuse(ErrorKind::NotATable);
        }
    }
}

#[test]
fn copy_collapse_refuses_and_copies_nothing() {
    for mode in MODES {
        let env = Env::new(POOL);
        let s2 = env.stage2(geo40(), mode);
        let copies = Cell::new(0);
        let copy = |_: PhysAddr, _: PhysAddr| copies.set(copies.get() + 1);
        let refuse = |ipa: u64, block: u64, want: ErrorKind| {
            let got = unchanged(&env, &s2, || {
                s2.collapse_copy(Ipa(ipa), PhysAddr(block), &copy).map(|r| r.block)
            });
            assert_eq!(got.map_err(|e| e.kind()), Err(want), "{mode:?} {ipa:#x} {block:#x}");
        };
        map_scattered(&s2, &Attrs::RAM);
        refuse(BASE, NEW_BLOCK + PAGE, ErrorKind::Unaligned);
        refuse(BASE + PAGE, NEW_BLOCK, ErrorKind::Unaligned);
        refuse(BASE, 1 << 48, ErrorKind::OutOfRange);
        // The destination overlaps pages being copied.
        refuse(BASE, 0x9000_0000, ErrorKind::AlreadyMapped);
        // A page missing.
        s2.unmap(Ipa(BASE + 100 * PAGE), PAGE).unwrap();
        refuse(BASE, NEW_BLOCK, ErrorKind::NotCollapsible);
        // Mixed attributes.
        let ro = Attrs { write: false, ..Attrs::RAM };
        s2.map(Ipa(BASE + 100 * PAGE), PhysAddr(scattered(100)), PAGE, &ro, Granularity::Pages)
            .unwrap();
        refuse(BASE, NEW_BLOCK, ErrorKind::NotCollapsible);
        // Device memory is not copied.
        s2.unmap(Ipa(BASE), MB2).unwrap();
        map_scattered(&s2, &Attrs::DEVICE);
        refuse(BASE, NEW_BLOCK, ErrorKind::NotCollapsible);
        assert_eq!(copies.get(), 0);
        // Nothing (a hole) and a block.
        s2.unmap(Ipa(BASE), MB2).unwrap();
        refuse(BASE, NEW_BLOCK, ErrorKind::NotATable);
        s2.map(Ipa(BASE), PhysAddr(PA), MB2, &Attrs::RAM, Granularity::Largest).unwrap();
        refuse(BASE, NEW_BLOCK, ErrorKind::NotATable);
        assert_eq!(copies.get(), 0);
    }
}

#[test]
fn collapse_1g_of_2m_blocks() {
    for (name, geo) in geometries() {
        if geo.start_level() == 2 {
            // No level-1 entries (see the file's header); refused above.
            continue;
        }
        for mode in MODES {
            let env = Env::new(POOL);
            let s2 = env.stage2(geo, mode);
            s2.map(Ipa(BASE_1G), PhysAddr(PA_1G), GB1, &Attrs::RAM, Granularity::Max2M).unwrap();
            // The first and last page of every 2 MiB block.
            let sample: Vec<u64> = (0..512)
                .flat_map(|b| [BASE_1G + b * MB2, BASE_1G + b * MB2 + MB2 - PAGE])
                .collect();
            let model: Model =
                sample.iter().map(|&i| (i, (PA_1G + (i - BASE_1G), Attrs::RAM))).collect();
            check_pages(&env, &s2, &model, sample.iter().copied());
            let live = env.mem.live();
            let c = s2.collapse(Ipa(BASE_1G), 1).unwrap();
            assert_eq!(c, Collapsed { ipa: Ipa(BASE_1G), level: 1, pa: PhysAddr(PA_1G) });
            check_pages(&env, &s2, &model, sample.iter().copied());
            assert_eq!(s2.translate(Ipa(BASE_1G + 12345 * PAGE)).unwrap().level, 1, "{name}");
            assert_eq!(env.mem.live(), live - 1, "the level-2 table freed");
            // And back: 512 2 MiB blocks, then one of them into pages.
            s2.split(Ipa(BASE_1G), 1).unwrap();
            check_pages(&env, &s2, &model, sample.iter().copied());
            assert_eq!(s2.translate(Ipa(BASE_1G + 12345 * PAGE)).unwrap().level, 2);
            s2.split(Ipa(BASE_1G + 3 * MB2), 2).unwrap();
            check_pages(&env, &s2, &model, sample.iter().copied());
            // A level-2 table holding a table is not all leaves.
            assert_eq!(
                unchanged(&env, &s2, || s2.collapse(Ipa(BASE_1G), 1)).map_err(|e| e.kind()),
                Err(ErrorKind::NotCollapsible)
            );
            s2.collapse(Ipa(BASE_1G + 3 * MB2), 2).unwrap();
            s2.collapse(Ipa(BASE_1G), 1).unwrap();
            check_pages(&env, &s2, &model, sample.iter().copied());
            let st = s2.stats();
            assert_eq!((st.collapses, st.splits), (3, 2));
        }
    }
}

#[test]
fn split_turns_a_block_into_the_same_mapping() {
    for (name, geo) in geometries() {
        for mode in MODES {
            let env = Env::new(POOL);
            let s2 = env.stage2(geo, mode);
            s2.map(Ipa(BASE), PhysAddr(PA), MB2, &Attrs::RAM, Granularity::Largest).unwrap();
            let model: Model =
                (0..512).map(|i| (BASE + i * PAGE, (PA + i * PAGE, Attrs::RAM))).collect();
            env.tlb.take();
            s2.split(Ipa(BASE), 2).unwrap();
            // Break-before-make of one block entry.
            let inv = vec![
                TlbOp::SyncTables,
                TlbOp::Ipa { vmid: VMID, ipa: Ipa(BASE), level: Some(2), last_level: true },
                TlbOp::Stage1(VMID),
                TlbOp::Complete,
            ];
            assert_eq!(env.tlb.take(), inv, "{name}");
            check_pages(&env, &s2, &model, pages_2m());
            assert_eq!(s2.translate(Ipa(BASE)).unwrap().level, 3);
            assert_eq!(s2.stats().splits, 1);
            // A table is not a block; neither is a hole or a bad level.
            let refuse = |ipa: u64, level: Level, want: ErrorKind| {
                let got = unchanged(&env, &s2, || s2.split(Ipa(ipa), level));
                assert_eq!(
                    got.map_err(|e| e.kind()),
                    Err(want),
                    "{name} {mode:?} {ipa:#x} level {level}"
                );
            };
            refuse(BASE, 2, ErrorKind::NotABlock);
            refuse(BASE + MB2, 2, ErrorKind::NotABlock);
            refuse(BASE + PAGE, 2, ErrorKind::Unaligned);
            refuse(BASE, 3, ErrorKind::Unsupported);
            refuse(geo.ipa_limit(), 2, ErrorKind::OutOfRange);
            if geo.start_level() == 2 {
                refuse(0, 1, ErrorKind::Unsupported);
            } else {
                // Level 1 holds a table there.
                refuse(0, 1, ErrorKind::NotABlock);
            }
            // Collapse and split again: the same mapping every time.
            for _ in 0..3 {
                s2.collapse(Ipa(BASE), 2).unwrap();
                check_pages(&env, &s2, &model, pages_2m());
                s2.split(Ipa(BASE), 2).unwrap();
                check_pages(&env, &s2, &model, pages_2m());
            }
            let st = s2.stats();
            assert_eq!((st.collapses, st.splits, st.tables_pending), (3, 4, 0));
            // Out of memory: refused, nothing changed.
            s2.collapse(Ipa(BASE), 2).unwrap();
            env.mem.fail_after(1);
            refuse(BASE, 2, ErrorKind::OutOfMemory);
            env.mem.clear_failure();
        }
    }
    // A 2 MiB entry inside a 1 GiB block is not a block of its own.
    let env = Env::new(POOL);
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE_1G), PhysAddr(PA_1G), GB1, &Attrs::RAM, Granularity::Largest).unwrap();
    assert_eq!(s2.split(Ipa(BASE_1G + MB2), 2).map_err(|e| e.kind()), Err(ErrorKind::NotABlock));
    s2.split(Ipa(BASE_1G), 1).unwrap();
    s2.split(Ipa(BASE_1G + MB2), 2).unwrap();
    assert_eq!(s2.translate(Ipa(BASE_1G + MB2)).unwrap().level, 3);
}

#[test]
fn readers_of_the_old_table_follow_the_linux_contract() {
    for mode in MODES {
        let env = Env::new(POOL);
        let s2 = env.stage2(geo40(), mode);
        let geo = *s2.geometry();
        map_2m_pages(&s2, &Attrs::RAM);
        let g = s2.rcu().read_lock();
        let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
        let map = s2.pte_offset_map(&pmd).unwrap();
        let rw = s2.pte_offset_map_rw_nolock(&pmd).unwrap();
        let (table, pmdval) = (map.table(), map.pmdval());
        let freed = s2.stats().tables_freed;

        s2.collapse(Ipa(BASE), 2).unwrap();
        let block = Desc::leaf(&geo, 2, PhysAddr(PA), &Attrs::RAM);
        assert_eq!(pmd.read(), block);
        // The reader's table is detached but still valid memory, with its
        // stale leaves: a valid though disconnected table.
        assert!(env.mem.is_allocated(table), "{mode:?}: freed under a reader");
        assert_eq!(s2.stats().tables_pending, 1);
        assert_eq!(s2.reclaim(), 0, "no grace period while the reader is inside");
        for i in 0..512 {
            let e = map.get_at(Ipa(BASE + i * PAGE)).unwrap();
            assert_eq!(e, page(&geo, PA + i * PAGE, &Attrs::RAM));
        }
        assert_eq!(map.pmdval(), pmdval);
        // A writer that read the pmd before the collapse must not write.
        let err = rw.lock().err().expect("the pmd changed");
        assert_eq!(err, PmdChanged { now: block });
        // A fresh look finds the block: no pte table any more.
        assert!(s2.pte_offset_map_lock(&pmd).is_none());
        assert!(s2.pte_offset_map(&pmd).is_none());
        assert!(s2.pte_offset_map_ro_nolock(&pmd).is_none());
        drop(map);
        assert!(env.mem.is_allocated(table), "the outer section is still open");
        drop(g);
        s2.rcu_barrier();
        assert!(!env.mem.is_allocated(table));
        let st = s2.stats();
        assert_eq!((st.tables_pending, st.tables_freed), (0, freed + 1));
    }
}

#[test]
fn collapse_waits_for_the_pte_lock_and_rechecks_under_it() {
    for mode in MODES {
        let env = Env::smp(POOL);
        let s2 = env.stage2(geo40(), mode);
        let geo = *s2.geometry();
        map_2m_pages(&s2, &Attrs::RAM);
        let started = AtomicBool::new(false);
        let g = s2.rcu().read_lock();
        let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
        let mut l = s2.pte_offset_map_lock(&pmd).unwrap();
        let result = std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                env.as_cpu(1, || {
                    started.store(true, Ordering::SeqCst);
                    s2.collapse(Ipa(BASE), 2)
                })
            });
            while !started.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            // The collapse cannot have happened: we hold the table's lock.
            assert!(pmd.read().is_table(2), "{mode:?}");
            // Change the table under the lock: the collapse must see it.
            let mut batch = s2.tlb_batch();
            l.set(Ipa(BASE + 9 * PAGE), Desc::INVALID, &mut batch).unwrap();
            drop(batch);
            drop(l);
            h.join().unwrap()
        });
        assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::NotCollapsible), "{mode:?}");
        assert!(pmd.read().is_table(2));
        // Put the page back: now it collapses.
        let mut l = s2.pte_offset_map_lock(&pmd).unwrap();
        l.install(Ipa(BASE + 9 * PAGE), page(&geo, PA + 9 * PAGE, &Attrs::RAM)).unwrap();
        drop(l);
        drop(g);
        s2.collapse(Ipa(BASE), 2).unwrap();
        assert!(pmd_is_block(&s2));
    }
}

fn pmd_is_block(s2: &Stage2<'_, &HostMemory, &RecordingTlb>) -> bool {
    let g = s2.rcu().read_lock();
    s2.pmd_lookup(&g, Ipa(BASE)).unwrap().read().is_leaf(2)
}

/// Collapse and split race with vCPU-like threads that fault pages in
/// (`pte_offset_map_lock` + install, and `map`) and with lockless and
/// locked readers: every page always translates to its own frame, or to
/// nothing during a break or before it is faulted in; a reader inside an
/// old table never sees it freed (poisoned); every hole ends up mapped.
#[test]
fn collapse_and_split_race_with_faults_and_readers() {
    const ROUNDS: usize = 200;
    for mode in MODES {
        let env = Env::smp(1024);
        let s2 = env.stage2(geo40(), mode);
        let geo = *s2.geometry();
        map_2m_pages(&s2, &Attrs::RAM);
        let holes: Vec<u64> = (0..512).filter(|p| p % 41 == 3).collect();
        for &h in &holes {
            s2.unmap(Ipa(BASE + h * PAGE), PAGE).unwrap();
        }
        let is_hole = |p: u64| p % 41 == 3;
        let want = |p: u64| page(&geo, PA + p * PAGE, &Attrs::RAM);
        let block = Desc::leaf(&geo, 2, PhysAddr(PA), &Attrs::RAM);
        let installers_done = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        // Collapses that succeeded while the holes were being filled.
        let attempts = AtomicUsize::new(0);

        std::thread::scope(|sc| {
            // Two faulting vCPUs fill the holes.
            for cpu in 1..=2usize {
                let (s2, env, holes) = (&s2, &env, &holes);
                let (installers_done, stop) = (&installers_done, &stop);
                sc.spawn(move || {
                    env.as_cpu(cpu, || {
                        for &h in holes.iter().skip(cpu - 1).step_by(2) {
                            let ipa = BASE + h * PAGE;
                            if cpu == 2 {
                                // The fault path.
                                s2.map(
                                    Ipa(ipa),
                                    PhysAddr(PA + h * PAGE),
                                    PAGE,
                                    &Attrs::RAM,
                                    Granularity::Pages,
                                )
                                .unwrap();
                            } else {
                                loop {
                                    let g = s2.rcu().read_lock();
                                    let pmd = s2.pmd_lookup(&g, Ipa(ipa)).unwrap();
                                    if let Some(mut l) = s2.pte_offset_map_lock(&pmd) {
                                        // Stable under the lock: the neighbours too.
                                        let n = (h + 1) % 512;
                                        let e = l.get_at(Ipa(BASE + n * PAGE)).unwrap();
                                        assert!(e == want(n) || (is_hole(n) && e == Desc::INVALID));
                                        match l.install(Ipa(ipa), want(h)) {
                                            Ok(()) => break,
                                            Err(cur) => panic!("hole {h} held {cur:?}"),
                                        }
                                    }
                                    // A block can only exist once every hole is filled;
                                    // this is a break in progress: try again.
                                    drop(g);
                                    env.rcu.quiescent();
                                    std::hint::spin_loop();
                                }
                            }
                            env.rcu.quiescent();
                        }
                        installers_done.fetch_add(1, Ordering::SeqCst);
                        while installers_done.load(Ordering::SeqCst) < 2 {
                            env.rcu.quiescent();
                            std::hint::spin_loop();
                        }
                        // Then fault again on mapped pages while the table
                        // is collapsed and split: nothing to install.
                        let mut p = cpu as u64;
                        while !stop.load(Ordering::SeqCst) {
                            p = (p * 7 + 1) % 512;
                            let ipa = BASE + p * PAGE;
                            if cpu == 2 {
                                s2.map(
                                    Ipa(ipa),
                                    PhysAddr(PA + p * PAGE),
                                    PAGE,
                                    &Attrs::RAM,
                                    Granularity::Pages,
                                )
                                .unwrap();
                            } else {
                                let g = s2.rcu().read_lock();
                                let pmd = s2.pmd_lookup(&g, Ipa(ipa)).unwrap();
                                if let Some(mut l) = s2.pte_offset_map_lock(&pmd) {
                                    let existing = want(p);
                                    assert_eq!(
                                        l.install(Ipa(ipa), want(p)),
                                        Err(Error::AlreadyMapped {
                                            ipa: Ipa(ipa),
                                            level: 3,
                                            existing
                                        })
                                    );
                                };
                            }
                            env.rcu.quiescent();
                        }
                    })
                });
            }
            // Two readers.
            for cpu in 3..=4usize {
                let (s2, env, stop) = (&s2, &env, &stop);
                sc.spawn(move || {
                    env.as_cpu(cpu, || {
                        let mut p = cpu as u64;
                        while !stop.load(Ordering::SeqCst) {
                            p = (p * 5 + 3) % 512;
                            let ipa = BASE + p * PAGE;
                            let expect_pa = PA + p * PAGE;
                            // Nothing during a break (or before the fault).
                            if let Some(t) = s2.translate(Ipa(ipa)) {
                                assert_eq!((t.pa.get(), t.attrs), (expect_pa, Attrs::RAM));
                                assert!(t.level == 2 || t.level == 3);
                            }
                            {
                                let g = s2.rcu().read_lock();
                                let pmd = s2.pmd_lookup(&g, Ipa(ipa)).unwrap();
                                if let Some(m) = s2.pte_offset_map(&pmd) {
                                    // Possibly a detached table: never a freed one.
                                    let e = m.get_at(Ipa(ipa)).unwrap();
                                    assert!(
                                        e == want(p) || (is_hole(p) && e == Desc::INVALID),
                                        "{e:?}"
                                    );
                                }
                                if let Some(rw) = s2.pte_offset_map_rw_nolock(&pmd) {
                                    match rw.lock() {
                                        Ok(l) => {
                                            let e = l.get();
                                            assert!(
                                                e == want(p) || (is_hole(p) && e == Desc::INVALID)
                                            );
                                        }
                                        Err(PmdChanged { now }) => {
                                            assert!(
                                                now == block
                                                    || now == Desc::INVALID
                                                    || now.is_table(2)
                                            )
                                        }
                                    }
                                }
                                match ref_translate(env, s2, ipa) {
                                    Seen::Mapped { pa, attrs } => {
                                        assert_eq!((pa, attrs), (expect_pa, Attrs::RAM))
                                    }
                                    Seen::Unmapped => {}
                                    s => panic!("{s:?}"),
                                }
                            }
                            env.rcu.quiescent();
                        }
                    })
                });
            }
            // This thread (CPU 0) collapses and splits: refused while
            // holes are being filled...
            while installers_done.load(Ordering::SeqCst) < 2 {
                match s2.collapse(Ipa(BASE), 2) {
                    Err(Error::NotCollapsible { .. }) => {}
                    Ok(_) => {
                        // Only possible once the last hole was filled.
                        assert!(holes
                            .iter()
                            .all(|&h| s2.translate(Ipa(BASE + h * PAGE)).is_some()));
                        s2.split(Ipa(BASE), 2).unwrap();
                        attempts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("{e:?}"),
                }
                s2.reclaim();
            }
            // ... then every time, racing the faults and the readers.
            for _ in 0..ROUNDS {
                let c = s2.collapse(Ipa(BASE), 2).unwrap();
                assert_eq!(c.pa, PhysAddr(PA));
                s2.split(Ipa(BASE), 2).unwrap();
                // Let the others run and report quiescent states, so old
                // tables are freed while they work.
                std::thread::yield_now();
                s2.reclaim();
            }
            s2.collapse(Ipa(BASE), 2).unwrap();
            stop.store(true, Ordering::SeqCst);
        });
        let model: Model =
            (0..512).map(|p| (BASE + p * PAGE, (PA + p * PAGE, Attrs::RAM))).collect();
        check_pages(&env, &s2, &model, pages_2m());
        s2.rcu_barrier();
        let st = s2.stats();
        let n = attempts.load(Ordering::Relaxed) as u64;
        assert_eq!(st.collapses, n + ROUNDS as u64 + 1, "{mode:?}");
        assert_eq!(st.splits, n + ROUNDS as u64);
        assert_eq!(st.tables_pending, 0);
        assert_eq!(env.mem.live() as u64, st.tables_live);
    }
}
