//! Property tests: random map/unmap/protect sequences against a reference
//! model, on every geometry and lock mode.
//!
//! The model is leaf-granular (IPA of a leaf's base → level, PA,
//! attributes), so it mirrors the table structure the operations must
//! build: which leaves `map` uses, which blocks `unmap`/`protect` split,
//! and therefore exactly which table pages must be live. After every
//! operation the test checks
//! - the result (`AlreadyMapped` computed from the model, nothing changed);
//! - every page touched so far, through the reference walker and
//!   `Stage2::translate`, and the leaf level `translate` reports;
//! - table accounting after `rcu_barrier`: the pool, the counters and the
//!   tables the model's leaves need all agree;
//! - the TLB calls of the operation: none for `map`; for `unmap` and
//!   `protect`, every changed page invalidated with the right level hint,
//!   in well-formed batches, and nothing at all when nothing changed.
#![allow(missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use mmu::testing::{RecordingTlb, TlbOp};
use mmu::ErrorKind;
use mmu::{
    Arch, Attrs, Desc, Error, Exec, Geometry, Granularity, Ipa, LockMode, MemType, PhysAddr,
    Shareability, Vmid,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const VMID: Vmid = Vmid(7);

fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - u32::from(level))
}

fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

// ---- the model ---------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Leaf {
    level: u8,
    pa: u64,
    attrs: Attrs,
}

impl Leaf {
    fn size(&self) -> u64 {
        level_size(self.level)
    }
}

/// A changed piece of one old leaf: `[start, end)` and the old leaf's level.
type Changed = (u64, u64, u8);

/// Leaf-granular reference model: base IPA of each leaf → the leaf.
#[derive(Clone)]
struct Tree {
    geo: Geometry,
    leaves: BTreeMap<u64, Leaf>,
}

impl Tree {
    fn new(geo: Geometry) -> Self {
        Self { geo, leaves: BTreeMap::new() }
    }

    /// The leaf containing `ipa`.
    fn leaf_at(&self, ipa: u64) -> Option<(u64, Leaf)> {
        let (&b, &lf) = self.leaves.range(..=ipa).next_back()?;
        (ipa < b + lf.size()).then_some((b, lf))
    }

    /// Leaves overlapping `[s, e)`, in order.
    fn overlapping(&self, s: u64, e: u64) -> Vec<(u64, Leaf)> {
        let mut v = Vec::new();
        if let Some((b, lf)) = self.leaf_at(s) {
            if b < s {
                v.push((b, lf));
            }
        }
        v.extend(self.leaves.range(s..e).map(|(&b, &lf)| (b, lf)));
        v
    }

    /// What the page at `ipa` maps to.
    fn page(&self, ipa: u64) -> Option<(u64, Attrs)> {
        self.leaf_at(ipa).map(|(b, lf)| (lf.pa + (ipa - b), lf.attrs))
    }

    /// Table pages the leaves need: the root plus, for every leaf at level
    /// L, one table per level between the start level and L.
    fn tables(&self) -> usize {
        let sl = self.geo.start_level();
        let mut set = BTreeSet::new();
        for (&b, lf) in &self.leaves {
            for l in sl + 1..=lf.level {
                set.insert((l, b >> level_shift(l - 1)));
            }
        }
        self.geo.root_tables() + set.len()
    }

    fn map(
        &mut self,
        ipa: u64,
        pa: u64,
        size: u64,
        attrs: Attrs,
        gran: Granularity,
    ) -> Result<(), Error> {
        let end = ipa + size;
        for (b, lf) in self.overlapping(ipa, end) {
            if lf.pa.wrapping_sub(b) != pa.wrapping_sub(ipa) || lf.attrs != attrs {
                // The first conflicting leaf, with what it holds.
                let existing = Desc::leaf(&self.geo, lf.level, PhysAddr(lf.pa), &lf.attrs);
                return Err(Error::AlreadyMapped { ipa: Ipa(b), level: lf.level, existing });
            }
        }
        let t = (ipa, pa, attrs, gran);
        self.fill(self.geo.start_level(), ipa, end, t);
        Ok(())
    }

    /// The walk `map` does: existing tables are descended, existing
    /// (identical) leaves skipped, empty entries get the largest leaf that
    /// fits or a new table.
    fn fill(&mut self, level: u8, s: u64, e: u64, t: (u64, u64, Attrs, Granularity)) {
        let (ipa0, pa0, attrs, gran) = t;
        let size = level_size(level);
        let mut x = s;
        while x < e {
            let b = x & !(size - 1);
            let ve = e.min(b + size);
            let existing_leaf = self.leaves.get(&b).is_some_and(|lf| lf.level == level);
            let is_table = !existing_leaf && self.leaves.range(b..b + size).next().is_some();
            if existing_leaf {
                // Identical (checked): left alone.
            } else if is_table {
                self.fill(level + 1, x, ve, t);
            } else {
                let gran_ok = match level {
                    3 => true,
                    2 => gran != Granularity::Pages,
                    1 => gran == Granularity::Largest,
                    _ => false,
                };
                let pa = pa0.wrapping_add(b.wrapping_sub(ipa0));
                let fits = gran_ok
                    && self.geo.leaf_allowed(level)
                    && x == b
                    && ve == b + size
                    && pa.is_multiple_of(size);
                if fits {
                    self.leaves.insert(b, Leaf { level, pa, attrs });
                } else {
                    assert!(level < 3, "a page always fits");
                    self.fill(level + 1, x, ve, t);
                }
            }
            x = ve;
        }
    }

    /// The leaves an unmap of `[s, e)` removes, as `unmap_with` reports
    /// them (IPA, PA, level): the leaves covered whole, and the pieces of
    /// those the range cuts, split level by level.
    fn removed(&self, s: u64, e: u64) -> BTreeSet<(u64, u64, u8)> {
        fn add(out: &mut BTreeSet<(u64, u64, u8)>, b: u64, lf: Leaf, s: u64, e: u64) {
            let end = b + lf.size();
            if end <= s || b >= e {
            } else if s <= b && end <= e {
                out.insert((b, lf.pa, lf.level));
            } else {
                let cs = level_size(lf.level + 1);
                for i in 0..512 {
                    let child = Leaf { level: lf.level + 1, pa: lf.pa + i * cs, ..lf };
                    add(out, b + i * cs, child, s, e);
                }
            }
        }
        let mut out = BTreeSet::new();
        for (b, lf) in self.overlapping(s, e) {
            add(&mut out, b, lf, s, e);
        }
        out
    }

    /// Unmap (`attrs == None`) or protect: returns the changed pieces.
    fn cut(&mut self, s: u64, e: u64, attrs: Option<Attrs>) -> Vec<Changed> {
        let mut changed = Vec::new();
        for (b, lf) in self.overlapping(s, e) {
            if attrs != Some(lf.attrs) {
                changed.push((s.max(b), e.min(b + lf.size()), lf.level));
            }
            self.leaves.remove(&b);
            self.reinsert(b, lf, s, e, attrs);
        }
        changed
    }

    fn reinsert(&mut self, b: u64, lf: Leaf, s: u64, e: u64, attrs: Option<Attrs>) {
        let end = b + lf.size();
        if end <= s || b >= e {
            self.leaves.insert(b, lf);
        } else if s <= b && end <= e {
            if let Some(a) = attrs {
                self.leaves.insert(b, Leaf { attrs: a, ..lf });
            }
        } else if attrs == Some(lf.attrs) {
            // Protect with the attributes it has: the block stays whole.
            self.leaves.insert(b, lf);
        } else {
            // Partially covered: split into the next level.
            let cl = lf.level + 1;
            let cs = level_size(cl);
            for i in 0..512 {
                let child = Leaf { level: cl, pa: lf.pa + i * cs, attrs: lf.attrs };
                self.reinsert(b + i * cs, child, s, e, attrs);
            }
        }
    }
}

// ---- checks ------------------------------------------------------------

/// Checks `pages` through `check_pages` and the leaf level `translate`
/// reports.
fn check(
    env: &Env,
    s2: &mmu::Stage2<'_, &mmu::testing::HostMemory, &RecordingTlb>,
    tree: &Tree,
    pages: &BTreeSet<u64>,
) {
    let mut model = Model::new();
    for &p in pages {
        if let Some(m) = tree.page(p) {
            model.insert(p, m);
        }
    }
    check_pages(env, s2, &model, pages.iter().copied());
    for &p in pages {
        if let Some((_, lf)) = tree.leaf_at(p) {
            let t = s2.translate(Ipa(p)).expect("checked above");
            assert_eq!(t.level, lf.level, "leaf level of IPA {p:#x}");
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Batch {
    Idle,
    Open(usize),
    Stage1Done,
    VmidDone,
}

/// Checks the TLB calls of one unmap/protect: well-formed batches, only
/// instructions the CPU has, and every changed piece invalidated (by VMID,
/// or by IPA/range with a level hint matching the old leaf).
fn check_tlb(ops: &[TlbOp], changed: &[Changed], caps: (bool, bool), what: &str) {
    let (has_ipa, has_range) = caps;
    let mut st = Batch::Idle;
    let mut whole = false;
    for (i, op) in ops.iter().enumerate() {
        st = match (st, *op) {
            (Batch::Idle, TlbOp::SyncTables) | (Batch::Open(0), TlbOp::SyncTables) => {
                Batch::Open(0)
            }
            (Batch::Open(n), TlbOp::Ipa { vmid, .. }) if vmid == VMID && has_ipa => {
                Batch::Open(n + 1)
            }
            (Batch::Open(n), TlbOp::Range { vmid, pages, .. })
                if vmid == VMID && has_range && pages > 0 =>
            {
                Batch::Open(n + 1)
            }
            (Batch::Open(n), TlbOp::Stage1(v)) if n > 0 && v == VMID => Batch::Stage1Done,
            (Batch::Open(0), TlbOp::Vmid(v)) if v == VMID => {
                whole = true;
                Batch::VmidDone
            }
            (Batch::Stage1Done | Batch::VmidDone, TlbOp::Complete) => Batch::Idle,
            (st, op) => {
                panic!("{what}: unexpected TLB op #{i} {op:?} in state {st:?}; all: {ops:?}")
            }
        };
    }
    assert!(matches!(st, Batch::Idle | Batch::Open(0)), "{what}: unfinished batch {ops:?}");
    if whole {
        return;
    }
    for &(s, e, level) in changed {
        let size = level_size(level);
        let mut iv: Vec<(u64, u64)> = ops
            .iter()
            .filter_map(|op| match *op {
                TlbOp::Ipa { ipa, level: h, .. } if h.is_none() || h == Some(level) => {
                    let b = ipa.get() & !(size - 1);
                    Some((b, b + size))
                }
                TlbOp::Range { ipa, pages, level: h, .. } if h.is_none() || h == Some(level) => {
                    Some((ipa.get(), ipa.get() + pages * PAGE))
                }
                _ => None,
            })
            .collect();
        iv.sort_unstable();
        let mut reach = s;
        for (a, b) in iv {
            if a <= reach && b > reach {
                reach = b;
            }
        }
        assert!(
            reach >= e,
            "{what}: IPA {reach:#x} (of changed [{s:#x}, {e:#x}), level-{level} leaf) not invalidated; ops {ops:?}"
        );
    }
}

// ---- test cases --------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Map {
        off: u64,
        len: u64,
        pa: usize,
        attrs: usize,
        gran: Granularity,
    },
    Unmap {
        off: u64,
        len: u64,
    },
    Protect {
        off: u64,
        len: u64,
        attrs: usize,
    },
    /// Maps a piece (eighths `from..=to`) of an earlier map again, the same
    /// way, with any granularity: identical mappings are no conflict.
    Remap {
        pick: usize,
        from: u64,
        to: u64,
        gran: Granularity,
    },
}

#[derive(Clone, Debug)]
struct Case {
    window: usize,
    range_tlb: bool,
    ops: Vec<Op>,
}

/// Attributes valid for `geo`.
fn attr_set(geo: &Geometry) -> Vec<Attrs> {
    let mut v = vec![
        Attrs::RAM,
        Attrs::RAM_RO,
        Attrs::DEVICE,
        // Permission-only change from RAM (in place).
        Attrs { write: false, ..Attrs::RAM },
        // Memory-type change from RAM (break-before-make).
        Attrs { mem: MemType::NormalNc, ..Attrs::RAM },
        Attrs {
            read: false,
            write: false,
            exec: Exec::Never,
            mem: MemType::NormalNc,
            sh: Shareability::Non,
            af: true,
            contiguous: false,
            sw: 5,
        },
        Attrs { af: false, ..Attrs::RAM },
        Attrs { mem: MemType::DeviceNGnRnE, sh: Shareability::Non, sw: 15, ..Attrs::DEVICE },
        Attrs { read: false, exec: Exec::All, sw: 9, ..Attrs::RAM },
    ];
    if geo.arch() == Arch::Aarch64 && geo.features().xnx {
        v.push(Attrs { exec: Exec::El1Only, ..Attrs::RAM });
        v.push(Attrs { exec: Exec::El0Only, ..Attrs::RAM_RO });
    }
    for a in &v {
        a.validate(geo).expect("attribute set is valid for the geometry");
    }
    v
}

/// A range `[off, off + len)` inside a window of `w` bytes.
fn range_in(w: u64) -> BoxedStrategy<(u64, u64)> {
    let pages = w / PAGE;
    let chunks = w / MB2;
    let clamp = move |s: i64, e: i64| {
        let s = s.clamp(0, (w - PAGE) as i64) as u64;
        let e = (e.max(0) as u64).clamp(s + PAGE, w);
        (s, e - s)
    };
    let page = (0..pages, 1..=96u64)
        .prop_map(move |(o, n)| clamp((o * PAGE) as i64, ((o + n) * PAGE) as i64));
    let block = (0..chunks, 1..=chunks.min(4))
        .prop_map(move |(c, n)| clamp((c * MB2) as i64, ((c + n) * MB2) as i64));
    let ragged =
        (0..chunks, 1..=chunks.min(4), -16i64..=16, -16i64..=16).prop_map(move |(c, n, ds, de)| {
            clamp((c * MB2) as i64 + ds * PAGE as i64, ((c + n) * MB2) as i64 + de * PAGE as i64)
        });
    let any = (0..pages, 0..pages).prop_map(move |(a, b)| {
        let (a, b) = (a.min(b), a.max(b) + 1);
        clamp((a * PAGE) as i64, (b * PAGE) as i64)
    });
    if w >= 2 * GB1 {
        let gig = (0..w / GB1, 1..=2u64)
            .prop_map(move |(g, n)| clamp((g * GB1) as i64, ((g + n) * GB1) as i64));
        let gig_ragged = (0..w / GB1, -3i64..=3, -600i64..=600).prop_map(move |(g, ds, de)| {
            clamp((g * GB1) as i64 + ds * MB2 as i64, ((g + 1) * GB1) as i64 + de * PAGE as i64)
        });
        prop_oneof![3 => page, 3 => block, 2 => ragged, 2 => gig, 2 => gig_ragged, 1 => any].boxed()
    } else {
        prop_oneof![3 => page, 3 => block, 2 => ragged, 1 => any].boxed()
    }
}

fn granularity() -> impl Strategy<Value = Granularity> {
    prop::sample::select(vec![Granularity::Largest, Granularity::Max2M, Granularity::Pages])
}

/// Cases of up to `max_ops` operations in one of `windows` windows of `w`
/// bytes. With `gib_first`, the first operation maps a 1 GiB block (1 GiB
/// windows), so that splitting and cutting them is common.
fn case_strategy(
    w: u64,
    windows: usize,
    max_ops: usize,
    gib_first: bool,
) -> impl Strategy<Value = Case> {
    let map = (range_in(w), 0..4usize, 0..16usize, granularity())
        .prop_map(|((off, len), pa, attrs, gran)| Op::Map { off, len, pa, attrs, gran });
    let unmap = range_in(w).prop_map(|(off, len)| Op::Unmap { off, len });
    let protect =
        (range_in(w), 0..16usize).prop_map(|((off, len), attrs)| Op::Protect { off, len, attrs });
    let remap = (any::<usize>(), 0..8u64, 0..8u64, granularity())
        .prop_map(|(pick, a, b, gran)| Op::Remap { pick, from: a.min(b), to: a.max(b), gran });
    let op = prop_oneof![5 => map, 3 => unmap, 3 => protect, 2 => remap];
    let first = (0..w / GB1, 0..16usize).prop_map(|(g, attrs)| Op::Map {
        off: g * GB1,
        len: GB1,
        pa: 0,
        attrs,
        gran: Granularity::Largest,
    });
    let lead = prop::collection::vec(first, usize::from(gib_first));
    (0..windows, any::<bool>(), lead, prop::collection::vec(op, 1..=max_ops)).prop_map(
        |(window, range_tlb, mut ops, rest)| {
            ops.extend(rest);
            Case { window, range_tlb, ops }
        },
    )
}

fn geometry(idx: usize) -> Geometry {
    geometries()[idx].1
}

const SMALL_WINDOW: u64 = 8 << 20;

/// Windows of 8 MiB: from a 1 GiB boundary (or 0), across the middle of
/// the space (the highest internal boundary: a level-0 entry, a root
/// table page, or 2 GiB), and at the very top of the space.
fn small_windows(geo: &Geometry) -> [u64; 3] {
    let lim = geo.ipa_limit();
    let low = if lim > GB1 { GB1 } else { 0 };
    [low, lim / 2 - SMALL_WINDOW / 2, lim - SMALL_WINDOW]
}

/// Page-aligned and 2 MiB-aligned PA bases (the PA of the window start),
/// one near the top of a 40-bit PA space.
const SMALL_PAS: [u64; 4] =
    [0x8000_0000, 0x8000_0000 + 5 * PAGE, 0x1_2340_0000, (1 << 40) - (16 << 20)];
/// For 1 GiB windows: 1 GiB-aligned, 2 MiB-aligned and page-aligned.
const BIG_PAS: [u64; 4] = [4 << 30, (4 << 30) + MB2, (8 << 30) + 5 * PAGE, (1 << 40) - (4 << 30)];

struct Setup {
    geo: Geometry,
    mode: LockMode,
    base: u64,
    w: u64,
    pas: [u64; 4],
    /// Check every page of each operation's range (small windows), or a
    /// sample (1 GiB windows).
    every_page: bool,
    /// Table pages in the pool.
    pool: usize,
}

fn sample_pages(st: &Setup, bounds: &BTreeSet<u64>) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    for c in 0..st.w / MB2 {
        set.insert(st.base + c * MB2 + ((c * 37 + 11) % 512) * PAGE);
    }
    for &b in bounds {
        for p in [b.wrapping_sub(PAGE), b] {
            if p >= st.base && p < st.base + st.w {
                set.insert(p);
            }
        }
    }
    set.insert(st.base);
    set.insert(st.base + st.w - PAGE);
    set
}

fn run_case(st: &Setup, case: &Case) {
    let geo = st.geo;
    let caps = if geo.arch() == Arch::Armv7 { (false, false) } else { (true, case.range_tlb) };
    let env = Env::with_tlb(st.pool, RecordingTlb::with_caps(caps.0, caps.1));
    let s2 = env.stage2(geo, st.mode);
    assert_eq!(env.tlb.take(), vec![], "Stage2::new issues no TLB maintenance");
    assert_eq!(env.mem.live(), geo.root_tables());
    let attrs = attr_set(&geo);
    let mut tree = Tree::new(geo);
    let mut touched = BTreeSet::new();
    let mut bounds = BTreeSet::new();

    // The maps issued so far, for `Remap`.
    let mut maps: Vec<Op> = Vec::new();
    let ops = case.ops.iter().cloned().chain([Op::Unmap { off: 0, len: st.w }]);
    for (i, op) in ops.enumerate() {
        let op = match op {
            Op::Remap { pick, from, to, gran } => {
                let Some(Op::Map { off, len, pa, attrs, .. }) = maps.get(pick % maps.len().max(1))
                else {
                    continue;
                };
                let a = off + ((len * from / 8) & !(PAGE - 1));
                let b = off + (len * (to + 1) / 8).next_multiple_of(PAGE).min(*len);
                Op::Map { off: a, len: b - a, pa: *pa, attrs: *attrs, gran }
            }
            op => op,
        };
        let before = tree.leaves.clone();
        let what = format!("op #{i} {op:?}");
        let (off, mut len) = match op {
            Op::Map { off, len, .. } | Op::Unmap { off, len } | Op::Protect { off, len, .. } => {
                (off, len)
            }
            Op::Remap { .. } => unreachable!(),
        };
        let (s, mut e) = (st.base + off, st.base + off + len);
        let is_map = matches!(op, Op::Map { .. });
        let (got, want, changed) = match op {
            Op::Map { pa: pa_idx, attrs: a, gran, .. } => {
                let pa = st.pas[pa_idx] + off;
                if !st.every_page && (gran == Granularity::Pages || !pa.is_multiple_of(MB2)) {
                    // Keep 1 GiB windows cheap: at most 16 MiB of pages.
                    len = len.min(16 << 20);
                    e = s + len;
                }
                maps.push(Op::Map { off, len, pa: pa_idx, attrs: a, gran });
                let a = attrs[a % attrs.len()];
                let want = tree.map(s, pa, len, a, gran);
                (s2.map(Ipa(s), PhysAddr(pa), len, &a, gran), want, vec![])
            }
            Op::Unmap { .. } => {
                let want_removed = tree.removed(s, e);
                let changed = tree.cut(s, e, None);
                let mut removed = BTreeSet::new();
                let got = s2.unmap_with(Ipa(s), len, &mut |l| {
                    let new = removed.insert((l.ipa.get(), l.pa.get(), l.level));
                    assert!(new, "{what}: {l:?} reported twice");
                });
                assert_eq!(removed, want_removed, "{what}: the leaves reported");
                (got, Ok(()), changed)
            }
            Op::Protect { attrs: a, .. } => {
                let a = attrs[a % attrs.len()];
                let changed = tree.cut(s, e, Some(a));
                (s2.protect(Ipa(s), len, &a), Ok(()), changed)
            }
            Op::Remap { .. } => unreachable!(),
        };
        assert_eq!(got, want, "{what}");
        if want.is_err() {
            assert_eq!(tree.leaves, before, "a refused map changes nothing in the model");
        }

        let tlb = env.tlb.take();
        if is_map {
            // A map that wrote something ends with exactly one DSB; one
            // that changed nothing (identical, or refused) issues nothing.
            let wrote = got.is_ok() && tree.leaves != before;
            let want_tlb = if wrote { vec![TlbOp::SyncTables] } else { vec![] };
            assert_eq!(tlb, want_tlb, "{what}: map never invalidates");
        } else {
            check_tlb(&tlb, &changed, caps, &what);
            if tree.leaves == before {
                assert_eq!(tlb, vec![], "{what}: changed nothing, so no TLB maintenance");
            }
        }

        bounds.insert(s);
        bounds.insert(e);
        if st.every_page {
            touched.extend((s..e).step_by(PAGE as usize));
            check(&env, &s2, &tree, &touched);
        } else {
            check(&env, &s2, &tree, &sample_pages(st, &bounds));
        }

        s2.rcu_barrier();
        let stats = s2.stats();
        assert_eq!(stats.tables_pending, 0, "{what}");
        assert_eq!(env.mem.live() as u64, stats.tables_live, "{what}: pool vs counters");
        assert_eq!(env.mem.live(), tree.tables(), "{what}: table pages the leaves need");
    }
    assert!(tree.leaves.is_empty());
    assert_eq!(env.mem.live(), geo.root_tables(), "only the root is left");
    drop(s2);
    assert_eq!(env.mem.live(), 0, "drop frees every table");
}

fn small(idx: usize, mode: LockMode, case: &Case) {
    let geo = geometry(idx);
    let base = small_windows(&geo)[case.window];
    let st =
        Setup { geo, mode, base, w: SMALL_WINDOW, pas: SMALL_PAS, every_page: true, pool: 128 };
    run_case(&st, case);
}

fn big(idx: usize, mode: LockMode, case: &Case) {
    let geo = geometry(idx);
    assert!(geo.leaf_allowed(1), "1 GiB blocks on {}", geometries()[idx].0);
    let st = Setup { geo, mode, base: GB1, w: 2 * GB1, pas: BIG_PAS, every_page: false, pool: 512 };
    run_case(&st, case);
}

/// `cases` random cases; a failing case is saved (shrunk) in
/// `mmu/tests/model.proptest-regressions`, replayed first by every later
/// run, and committed with the fix.
fn config(cases: u32) -> ProptestConfig {
    let persist = FileFailurePersistence::WithSource("proptest-regressions");
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(persist)),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn a64_40bit_split(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(0, LockMode::Split, &case) }
    #[test]
    fn a64_40bit_single(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(0, LockMode::Single, &case) }
    #[test]
    fn a64_48bit_split(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(1, LockMode::Split, &case) }
    #[test]
    fn a64_48bit_single(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(1, LockMode::Single, &case) }
    #[test]
    fn a64_32bit_split(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(2, LockMode::Split, &case) }
    #[test]
    fn a64_32bit_single(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(2, LockMode::Single, &case) }
    #[test]
    fn v7_40bit_split(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(3, LockMode::Split, &case) }
    #[test]
    fn v7_40bit_single(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(3, LockMode::Single, &case) }
    #[test]
    fn v7_30bit_split(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(4, LockMode::Split, &case) }
    #[test]
    fn v7_30bit_single(case in case_strategy(SMALL_WINDOW, 3, 12, false)) { small(4, LockMode::Single, &case) }
}

proptest! {
    #![proptest_config(config(12))]

    // 1 GiB blocks, on the regimes that have them; pages are sampled.
    #[test]
    fn gib_a64_40bit(case in case_strategy(2 * GB1, 1, 8, true), single in any::<bool>()) {
        big(0, if single { LockMode::Single } else { LockMode::Split }, &case)
    }
    #[test]
    fn gib_a64_48bit(case in case_strategy(2 * GB1, 1, 8, true), single in any::<bool>()) {
        big(1, if single { LockMode::Single } else { LockMode::Split }, &case)
    }
    #[test]
    fn gib_v7_40bit(case in case_strategy(2 * GB1, 1, 8, true), single in any::<bool>()) {
        big(3, if single { LockMode::Single } else { LockMode::Split }, &case)
    }
}

// ---- deterministic cases the properties rely on -------------------------

/// The model itself: a map that fits blocks uses them, and a cut splits.
#[test]
fn model_sanity() {
    let geo = geometry(0);
    let mut t = Tree::new(geo);
    t.map(GB1, 0x8000_0000, 3 * MB2 + PAGE, Attrs::RAM, Granularity::Largest).unwrap();
    let levels: Vec<u8> = t.leaves.values().map(|l| l.level).collect();
    assert_eq!(levels, vec![2, 2, 2, 3]);
    assert_eq!(t.tables(), 2 + 1 + 1);
    let ch = t.cut(GB1 + PAGE, GB1 + 2 * PAGE, None);
    assert_eq!(ch, vec![(GB1 + PAGE, GB1 + 2 * PAGE, 2)]);
    assert_eq!(t.leaves.len(), 511 + 2 + 1);
    assert_eq!(t.tables(), 2 + 1 + 2);
    assert_eq!(
        t.map(GB1, 0x8000_0000, PAGE, Attrs::RAM_RO, Granularity::Pages).map_err(|e| e.kind()),
        Err(ErrorKind::AlreadyMapped)
    );
    assert_eq!(t.map(GB1, 0x8000_0000, PAGE, Attrs::RAM, Granularity::Pages), Ok(()));
}

/// Protecting part of a block with the attributes it already has changes
/// no translation, so it needs no TLB maintenance (and no split).
#[test]
fn protect_with_identical_attrs_inside_a_block_needs_no_invalidation() {
    for (name, geo) in geometries() {
        for mode in MODES {
            let env = Env::new(64);
            let s2 = env.stage2(geo, mode);
            let base = if geo.ipa_limit() > GB1 { GB1 } else { 0 };
            s2.map(Ipa(base), PhysAddr(0x8000_0000), MB2, &Attrs::RAM, Granularity::Largest)
                .unwrap();
            assert_eq!(s2.translate(Ipa(base)).unwrap().level, 2);
            env.tlb.take();
            let live = env.mem.live();
            s2.protect(Ipa(base + 16 * PAGE), 4 * PAGE, &Attrs::RAM).unwrap();
            let mut model = Model::new();
            for p in (0..MB2).step_by(PAGE as usize) {
                model.insert(base + p, (0x8000_0000 + p, Attrs::RAM));
            }
            check_pages(&env, &s2, &model, (base..base + MB2).step_by(PAGE as usize));
            assert_eq!(
                env.tlb.take(),
                vec![],
                "{name} {mode:?}: nothing changed, yet TLB maintenance"
            );
            s2.rcu_barrier();
            assert_eq!(env.mem.live(), live, "{name} {mode:?}");
        }
    }
}

/// Tables an unmap detaches stay allocated (and intact) while a reader that
/// may have reached them is inside its read-side section.
#[test]
fn unmap_defers_table_frees_past_readers() {
    for (name, geo) in geometries() {
        for mode in MODES {
            let env = Env::new(64);
            let s2 = env.stage2(geo, mode);
            let base = if geo.ipa_limit() > GB1 { GB1 } else { 0 };
            s2.map(Ipa(base), PhysAddr(0x8000_0000), 4 * PAGE, &Attrs::RAM, Granularity::Pages)
                .unwrap();
            let tables = env.mem.live() - geo.root_tables();
            assert_eq!(tables, usize::from(3 - geo.start_level()), "{name}");
            let reader = s2.rcu().read_lock();
            let pmd = s2.pmd_lookup(&reader, Ipa(base)).unwrap();
            let pte_table = pmd.read().addr();
            s2.unmap(Ipa(base), 4 * PAGE).unwrap();
            s2.reclaim();
            assert_eq!(s2.translate(Ipa(base)), None, "{name}");
            assert_eq!(env.mem.live(), geo.root_tables() + tables, "{name} {mode:?}: freed early");
            assert_eq!(s2.stats().tables_pending, tables as u64, "{name}");
            assert!(env.mem.is_allocated(pte_table), "{name}");
            drop(reader);
            s2.rcu_barrier();
            assert_eq!(env.mem.live(), geo.root_tables(), "{name} {mode:?}");
            assert_eq!(s2.stats().tables_pending, 0, "{name}");
        }
    }
}
