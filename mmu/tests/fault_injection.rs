//! Allocation failure at every point of map, unmap and protect: the
//! operation fails with `OutOfMemory` and leaves everything as it was
//! (table memory byte for byte, translations, table-page count, TLB), and
//! succeeds once memory is back.
#![allow(missing_docs)]

mod common;

use std::collections::BTreeMap;

use common::*;
use mmu::testing::{HostMemory, RecordingTlb, TlbOp};
use mmu::ErrorKind;
use mmu::{Attrs, Error, Geometry, Granularity, Ipa, LockMode, MemType, PhysAddr};

const POOL: usize = 256;

type S2<'a> = mmu::Stage2<'a, &'a HostMemory, &'a RecordingTlb>;

fn snapshot(env: &Env) -> BTreeMap<u64, Vec<u64>> {
    common::snapshot(env, POOL)
}

/// The boundary the large operations straddle: the middle of the IPA space
/// (a level-0 entry on 48 bits, the second root table on 40 bits, 2 GiB on
/// 32 bits, 512 MiB on ARMv7 30 bits).
fn boundary(geo: &Geometry) -> u64 {
    geo.ipa_limit() / 2
}

/// A linear mapping, in the model and as a list of pages to check.
struct Linear {
    ipa: u64,
    pa: u64,
    size: u64,
    attrs: Attrs,
    gran: Granularity,
}

impl Linear {
    fn map(&self, s2: &S2<'_>) -> Result<(), Error> {
        s2.map(Ipa(self.ipa), PhysAddr(self.pa), self.size, &self.attrs, self.gran)
    }
    fn add_to(&self, model: &mut Model, pages: &[u64]) {
        for &p in pages {
            if p >= self.ipa && p < self.ipa + self.size {
                model.insert(p, (self.pa + (p - self.ipa), self.attrs));
            }
        }
    }
    fn end(&self) -> u64 {
        self.ipa + self.size
    }
}

/// Sample pages of `[s, e)`: the edges, every 2 MiB boundary nearby, and
/// a stride through the rest.
fn sample(s: u64, e: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (s..e).step_by((97 * PAGE) as usize).collect();
    for b in [s, s + PAGE, e - PAGE, e.saturating_sub(2 * PAGE)] {
        v.push(b);
    }
    let mut b = (s + MB2 - 1) & !(MB2 - 1);
    while b < e {
        v.push(b);
        if b >= s + PAGE {
            v.push(b - PAGE);
        }
        b += if e - s > 64 * MB2 { 61 * MB2 } else { MB2 };
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn no_invalidation(ops: &[TlbOp], what: &str) {
    assert!(
        ops.iter().all(|op| *op == TlbOp::SyncTables),
        "{what}: TLB maintenance on a failed operation: {ops:?}"
    );
}

/// The values of k to fail at: all of 1..=k_max when few, else the ends
/// and an even sample.
fn ks(k_max: u64) -> Vec<u64> {
    if k_max <= 40 {
        return (1..=k_max).collect();
    }
    let mut v: Vec<u64> = (0..12).map(|i| 1 + i * (k_max - 1) / 11).collect();
    v.extend([1, 2, k_max - 1, k_max]);
    v.sort_unstable();
    v.dedup();
    v
}

/// Runs `op` on fresh envs prepared by `setup`: counts its allocations K, then fails the
/// k-th allocation for each k, checking the failure changes nothing and
/// that the operation then succeeds. `after` checks the successful result.
#[allow(clippy::too_many_arguments)]
fn inject(
    name: &str,
    geo: Geometry,
    mode: LockMode,
    setup: &dyn Fn(&S2<'_>) -> Model,
    op: &dyn Fn(&S2<'_>) -> Result<(), Error>,
    check_range: &[u64],
    after: &dyn Fn(&mut Model),
    // Whether a failed attempt may need TLB maintenance (a one-walk map
    // that published a table before failing must invalidate it).
    may_invalidate: bool,
) -> u64 {
    // The successful run, for K.
    let k_max = {
        let env = Env::new(POOL);
        let s2 = env.stage2(geo, mode);
        setup(&s2);
        let a0 = env.mem.allocations();
        op(&s2).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        env.mem.allocations() - a0
    };
    assert!(k_max > 0, "{name}: needs at least one table");

    for k in ks(k_max).into_iter().chain([k_max + 1]) {
        let what = format!("{name}, allocation {k} of {k_max} fails");
        let env = Env::new(POOL);
        let s2 = env.stage2(geo, mode);
        let mut model = setup(&s2);
        s2.rcu_barrier();
        env.tlb.take();
        let live = env.mem.live();
        let snap = snapshot(&env);
        let mut pages: Vec<u64> = model.keys().copied().collect();
        pages.extend_from_slice(check_range);

        env.mem.fail_after(k);
        let r = op(&s2);
        if k > k_max {
            // One more than needed: the operation does not allocate again.
            assert_eq!(r, Ok(()), "{what}");
            env.mem.clear_failure();
        } else {
            assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::OutOfMemory), "{what}");
            let tlb = env.tlb.take();
            // Before the first table is published there is nothing to
            // invalidate even on the one-walk path.
            if !may_invalidate || k == 1 {
                no_invalidation(&tlb, &what);
            }
            s2.rcu_barrier();
            assert_eq!(env.mem.live(), live, "{what}: table pages leaked");
            assert_eq!(s2.stats().tables_live, live as u64, "{what}: counters");
            assert!(snapshot(&env) == snap, "{what}: table memory changed");
            check_pages(&env, &s2, &model, pages.iter().copied());

            env.mem.clear_failure();
            assert_eq!(op(&s2), Ok(()), "{what}: then with memory back");
        }
        after(&mut model);
        check_pages(&env, &s2, &model, pages.iter().copied());
        s2.rcu_barrier();
        assert_eq!(env.mem.live() as u64, s2.stats().tables_live, "{what}");
        drop(s2);
        assert_eq!(env.mem.live(), 0, "{what}: teardown");
    }
    k_max
}

fn for_all(f: impl Fn(&str, Geometry, LockMode)) {
    for (name, geo) in geometries() {
        for mode in MODES {
            f(&format!("{name} {mode:?}"), geo, mode);
        }
    }
}

#[test]
fn map_64mib_of_pages_across_a_boundary() {
    for_all(|name, geo, mode| {
        let x = boundary(&geo);
        // Ragged ends, so the first and last level-3 tables already exist
        // (pre-existing pages share them) and the rest must be allocated.
        let big = Linear {
            ipa: x - (32 << 20) + 3 * PAGE,
            pa: 0x1_0000_0000 + 3 * PAGE,
            size: (64 << 20) - 5 * PAGE,
            attrs: Attrs::RAM,
            gran: Granularity::Pages,
        };
        let pre = [
            Linear {
                ipa: x - (32 << 20),
                pa: 0x9000_0000,
                size: 2 * PAGE,
                attrs: Attrs::RAM_RO,
                gran: Granularity::Pages,
            },
            Linear {
                ipa: big.end(),
                pa: 0x9010_0000,
                size: PAGE,
                attrs: Attrs::DEVICE,
                gran: Granularity::Pages,
            },
            Linear {
                ipa: x - (64 << 20),
                pa: 0xa000_0000,
                size: MB2,
                attrs: Attrs::RAM,
                gran: Granularity::Largest,
            },
            Linear {
                ipa: 0,
                pa: 0xb000_0000,
                size: 4 * PAGE,
                attrs: Attrs::RAM,
                gran: Granularity::Pages,
            },
        ];
        let range = sample(big.ipa - PAGE, big.end() + PAGE);
        let setup = |s2: &S2<'_>| {
            let mut m = Model::new();
            for p in &pre {
                p.map(s2).unwrap();
                let pages: Vec<u64> = (p.ipa..p.end()).step_by(PAGE as usize).collect();
                p.add_to(&mut m, &pages);
            }
            m
        };
        let k = inject(
            name,
            geo,
            mode,
            &setup,
            &|s2| big.map(s2),
            &range,
            &|m| big.add_to(m, &range),
            false,
        );
        // 32 level-3 tables minus the 2 the pre-existing pages use; the
        // tables above exist on both sides of the boundary.
        assert_eq!(k, 30, "{name}: allocations");
    });
}

#[test]
fn map_largest_needing_tables_at_every_level() {
    for_all(|name, geo, mode| {
        let x = boundary(&geo);
        let span = GB1.min(geo.ipa_limit() / 4);
        let ipa = x - MB2 - 3 * PAGE;
        // PA of the boundary 1 GiB aligned: blocks wherever they fit.
        let big = Linear {
            ipa,
            pa: (8 << 30) - (x - ipa),
            size: (x + span + MB2 + 5 * PAGE) - ipa,
            attrs: Attrs { mem: MemType::NormalNc, ..Attrs::RAM },
            gran: Granularity::Largest,
        };
        let pre = [
            Linear {
                // Shares the level-2 table left of the boundary, not the
                // level-3 one.
                ipa: ipa - MB2,
                pa: 0x9000_0000,
                size: PAGE,
                attrs: Attrs::RAM_RO,
                gran: Granularity::Pages,
            },
            Linear {
                ipa: x - 4 * MB2,
                pa: 0xa000_0000,
                size: MB2,
                attrs: Attrs::RAM,
                gran: Granularity::Largest,
            },
            Linear {
                ipa: 0,
                pa: 0xb000_0000,
                size: PAGE,
                attrs: Attrs::DEVICE,
                gran: Granularity::Pages,
            },
        ];
        let range = sample(big.ipa - PAGE, big.end() + PAGE);
        let setup = |s2: &S2<'_>| {
            let mut m = Model::new();
            for p in &pre {
                p.map(s2).unwrap();
                let pages: Vec<u64> = (p.ipa..p.end()).step_by(PAGE as usize).collect();
                p.add_to(&mut m, &pages);
            }
            m
        };
        let k = inject(
            name,
            geo,
            mode,
            &setup,
            &|s2| big.map(s2),
            &range,
            &|m| big.add_to(m, &range),
            false,
        );
        // Left: the level-3 table of the first pages. Right: a table per
        // level below the root (the 1 GiB block sits in the level-1 one).
        let want = 1 + u64::from(3 - geo.start_level());
        assert_eq!(k, want, "{name}: allocations");
    });
}

#[test]
fn map_one_page_needing_new_tables() {
    for_all(|name, geo, mode| {
        let x = boundary(&geo);
        let page = Linear {
            ipa: x + 7 * PAGE,
            pa: 0x7000_0000,
            size: PAGE,
            attrs: Attrs::RAM,
            gran: Granularity::Pages,
        };
        let pre = Linear {
            ipa: 0,
            pa: 0xb000_0000,
            size: PAGE,
            attrs: Attrs::DEVICE,
            gran: Granularity::Pages,
        };
        let range = sample(x - MB2, x + MB2);
        let setup = |s2: &S2<'_>| {
            let mut m = Model::new();
            pre.map(s2).unwrap();
            pre.add_to(&mut m, &[0]);
            m
        };
        // A table published before the failure is taken back, with the
        // invalidation that needs; the rest is as for the large maps.
        let k = inject(
            name,
            geo,
            mode,
            &setup,
            &|s2| page.map(s2),
            &range,
            &|m| page.add_to(m, &range),
            true,
        );
        let levels = 3 - u64::from(geo.start_level());
        assert_eq!(k, levels, "{name}: one table per level below the root");
    });
}

/// Unmap and protect of pages inside a block: the split tables are
/// allocated up front; failing any of them changes nothing.
#[test]
fn splits_in_unmap_and_protect() {
    for_all(|name, geo, mode| {
        let block = if geo.leaf_allowed(1) { GB1 } else { MB2 };
        let x = boundary(&geo);
        let b = Linear {
            ipa: x,
            pa: 4 << 30,
            size: block,
            attrs: Attrs::RAM,
            gran: Granularity::Largest,
        };
        let neighbour = Linear {
            ipa: x - PAGE,
            pa: 0x9000_0000,
            size: PAGE,
            attrs: Attrs::RAM_RO,
            gran: Granularity::Pages,
        };
        // Inside one 2 MiB piece, and across two (3 tables for a 1 GiB block).
        let cuts: Vec<(u64, u64)> = if block == GB1 {
            vec![(x + 3 * MB2 + 5 * PAGE, 4 * PAGE), (x + 4 * MB2 - 2 * PAGE, 4 * PAGE)]
        } else {
            vec![(x + 5 * PAGE, 4 * PAGE), (x + MB2 - 3 * PAGE, 2 * PAGE)]
        };
        for (s, len) in cuts {
            let mut range = sample(x - PAGE, x + block);
            range.extend((s - 2 * PAGE..s + len + 2 * PAGE).step_by(PAGE as usize));
            range.sort_unstable();
            range.dedup();
            let setup = |s2: &S2<'_>| {
                b.map(s2).unwrap();
                neighbour.map(s2).unwrap();
                let level = if block == GB1 { 1 } else { 2 };
                assert_eq!(s2.translate(Ipa(x)).unwrap().level, level);
                let mut m = Model::new();
                neighbour.add_to(&mut m, &range);
                b.add_to(&mut m, &range);
                m
            };
            let nc = Attrs { mem: MemType::NormalNc, ..Attrs::RAM };
            let crosses = (s + len - 1) / MB2 != s / MB2;
            let want = match (block == GB1, crosses) {
                (true, true) => 3,
                (true, false) => 2,
                (false, _) => 1,
            };
            type OpFn<'f> = &'f dyn Fn(&S2<'_>) -> Result<(), Error>;
            let cases: [(&str, OpFn<'_>, Option<Attrs>); 3] = [
                ("unmap", &|s2| s2.unmap(Ipa(s), len), None),
                ("protect RO", &|s2| s2.protect(Ipa(s), len, &Attrs::RAM_RO), Some(Attrs::RAM_RO)),
                ("protect NC", &|s2| s2.protect(Ipa(s), len, &nc), Some(nc)),
            ];
            for (opname, op, attrs) in cases {
                let what = format!("{name} {opname} [{s:#x}+{len:#x})");
                let after = |m: &mut Model| {
                    for p in (s..s + len).step_by(PAGE as usize) {
                        match attrs {
                            None => m.remove(&p),
                            Some(a) => m.insert(p, (b.pa + (p - x), a)),
                        };
                    }
                };
                let k = inject(&what, geo, mode, &setup, op, &range, &after, false);
                assert_eq!(k, want, "{what}: split tables");
            }
        }
    });
}

/// Allocation failure while creating an address space.
#[test]
fn stage2_new_out_of_memory() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        env.mem.fail_after(1);
        let r = mmu::Stage2::new(geo, mmu::Vmid(1), mode, &env.mem, &env.tlb, &env.rcu);
        assert_eq!(r.err().map(|e| e.kind()), Some(ErrorKind::OutOfMemory), "{name}");
        assert_eq!(env.mem.live(), 0, "{name}");
        assert_eq!(env.tlb.take(), vec![], "{name}");
        env.mem.clear_failure();
        let s2 = env.stage2(geo, mode);
        assert_eq!(env.mem.live(), geo.root_tables(), "{name}");
        drop(s2);
        assert_eq!(env.mem.live(), 0, "{name}");
    });
}
