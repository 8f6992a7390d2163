//! Bad input to every public entry point, on every geometry and lock mode:
//! the call is refused with the documented error, and nothing changes (the
//! tables byte for byte and as translated, the table-page count, the TLB).
#![allow(missing_docs)]

mod common;

use std::collections::BTreeMap;

use common::*;
use mmu::testing::{HostMemory, RecordingTlb, TlbOp};
use mmu::ErrorKind;
use mmu::{
    Attrs, Desc, Error, Exec, Features, Geometry, Granularity, Ipa, LockMode, MemType, PhysAddr,
    Stage2, Vmid,
};

const POOL: usize = 64;

type S2<'a> = Stage2<'a, &'a HostMemory, &'a RecordingTlb>;

fn snapshot(env: &Env) -> BTreeMap<u64, Vec<u64>> {
    common::snapshot(env, POOL)
}

fn for_all(f: impl Fn(&str, Geometry, LockMode)) {
    for (name, geo) in geometries() {
        for mode in MODES {
            f(&format!("{name} {mode:?}"), geo, mode);
        }
    }
}

/// An address space with mappings to disturb: a page at the bottom of a
/// low 1 GiB region, a 2 MiB block after it, and the last page of the IPA
/// space.
struct Fixture<'e> {
    env: &'e Env,
    s2: S2<'e>,
    model: Model,
    /// Pages checked after every refused call.
    pages: Vec<u64>,
    base: u64,
    lim: u64,
}

const PA: u64 = 0x8000_0000;

impl<'e> Fixture<'e> {
    fn new(env: &'e Env, geo: Geometry, mode: LockMode) -> Self {
        let s2 = env.stage2(geo, mode);
        let lim = geo.ipa_limit();
        let base = if lim > GB1 { GB1 } else { 0 };
        let mut model = Model::new();
        let maps = [
            (base, PA, PAGE, Attrs::RAM, Granularity::Pages),
            (base + MB2, PA + MB2, MB2, Attrs::RAM_RO, Granularity::Largest),
            (lim - PAGE, 0x9000_0000, PAGE, Attrs::DEVICE, Granularity::Pages),
        ];
        for (ipa, pa, size, a, g) in maps {
            s2.map(Ipa(ipa), PhysAddr(pa), size, &a, g).unwrap();
            for off in (0..size).step_by(PAGE as usize) {
                model.insert(ipa + off, (pa + off, a));
            }
        }
        assert_eq!(s2.translate(Ipa(base + MB2)).unwrap().level, 2);
        let mut pages: Vec<u64> =
            (base..base + 2 * MB2 + 4 * PAGE).step_by(PAGE as usize).collect();
        pages.extend((lim - 4 * PAGE..lim).step_by(PAGE as usize));
        pages.extend([0, PAGE, lim / 2, lim / 2 - PAGE]);
        pages.sort_unstable();
        pages.dedup();
        env.tlb.take();
        Self { env, s2, model, pages, base, lim }
    }

    /// Runs a call that must be refused with `err` and change nothing.
    fn refused(&self, what: &str, err: ErrorKind, f: impl FnOnce(&S2<'e>) -> Result<(), Error>) {
        let live = self.env.mem.live();
        let snap = snapshot(self.env);
        let stats = self.s2.stats();
        assert_eq!(f(&self.s2).map_err(|e| e.kind()), Err(err), "{what}");
        assert_eq!(self.env.tlb.take(), vec![], "{what}: TLB maintenance on a refused call");
        assert_eq!(self.env.mem.live(), live, "{what}: table pages leaked");
        assert!(snapshot(self.env) == snap, "{what}: table memory changed");
        assert_eq!(self.s2.stats().tables_live, stats.tables_live, "{what}");
        check_pages(self.env, &self.s2, &self.model, self.pages.iter().copied());
    }
}

/// Page-aligned attributes that `validate` refuses on `geo`.
fn bad_attrs(geo: &Geometry) -> Vec<(&'static str, Attrs)> {
    let mut v = vec![
        ("executable Device-nGnRE", Attrs { exec: Exec::All, ..Attrs::DEVICE }),
        (
            "executable Device-nGnRnE",
            Attrs { exec: Exec::All, mem: MemType::DeviceNGnRnE, ..Attrs::DEVICE },
        ),
        ("sw 16", Attrs { sw: 16, ..Attrs::RAM }),
        ("sw 255", Attrs { sw: 255, ..Attrs::RAM }),
        ("contiguous", Attrs { contiguous: true, ..Attrs::RAM }),
    ];
    if geo.features().xnx {
        v.push(("EL1-executable device", Attrs { exec: Exec::El1Only, ..Attrs::DEVICE }));
        v.push(("EL0-executable device", Attrs { exec: Exec::El0Only, ..Attrs::DEVICE }));
    } else {
        v.push(("El1Only without XNX", Attrs { exec: Exec::El1Only, ..Attrs::RAM }));
        v.push(("El0Only without XNX", Attrs { exec: Exec::El0Only, ..Attrs::RAM_RO }));
    }
    v
}

/// (what, ipa, size, error) for ranges every operation refuses.
fn bad_ranges(fx: &Fixture<'_>) -> Vec<(String, u64, u64, ErrorKind)> {
    let (b, lim) = (fx.base, fx.lim);
    let top = !(PAGE - 1);
    vec![
        ("ipa + 1".into(), b + 1, PAGE, ErrorKind::Unaligned),
        ("ipa + 0x800".into(), b + 0x800, PAGE, ErrorKind::Unaligned),
        ("size + 1".into(), b, PAGE + 1, ErrorKind::Unaligned),
        ("size 0x800".into(), b, 0x800, ErrorKind::Unaligned),
        ("size 0".into(), b, 0, ErrorKind::OutOfRange),
        ("end wraps".into(), top, 2 * PAGE, ErrorKind::OutOfRange),
        ("size wraps".into(), b, top, ErrorKind::OutOfRange),
        ("at the limit".into(), lim, PAGE, ErrorKind::OutOfRange),
        ("over the limit".into(), lim - PAGE, 2 * PAGE, ErrorKind::OutOfRange),
        ("block over the limit".into(), lim - MB2, 2 * MB2, ErrorKind::OutOfRange),
        ("whole space from base".into(), b + PAGE, lim, ErrorKind::OutOfRange),
        ("far beyond".into(), 1 << 60, PAGE, ErrorKind::OutOfRange),
        ("aliasing the bottom".into(), lim + b, PAGE, ErrorKind::OutOfRange),
    ]
}

#[test]
fn map_refuses_bad_ranges_pas_and_attributes() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        let fx = Fixture::new(&env, geo, mode);
        // A hole: a wrongly accepted map would show there.
        let hole = fx.base + 4 * PAGE;
        let ram = Attrs::RAM;
        for (what, ipa, size, err) in bad_ranges(&fx) {
            let what = format!("{name}: map {what}");
            fx.refused(&what, err, |s2| {
                s2.map(Ipa(ipa), PhysAddr(0x1_0000_0000), size, &ram, Granularity::Largest)
            });
        }
        let pa_lim = 1u64 << geo.pa_bits();
        let top = !(PAGE - 1);
        let pas = [
            ("pa + 1", PA + 1, PAGE, ErrorKind::Unaligned),
            ("pa + 0x800", PA + 0x800, PAGE, ErrorKind::Unaligned),
            ("pa at the PA limit", pa_lim, PAGE, ErrorKind::OutOfRange),
            ("pa over the PA limit", pa_lim - PAGE, 2 * PAGE, ErrorKind::OutOfRange),
            ("pa block over the PA limit", pa_lim - MB2, 2 * MB2, ErrorKind::OutOfRange),
            ("pa far beyond", 1 << 52, PAGE, ErrorKind::OutOfRange),
            ("pa wraps", top, 2 * PAGE, ErrorKind::OutOfRange),
        ];
        for (what, pa, size, err) in pas {
            let what = format!("{name}: map {what}");
            fx.refused(&what, err, |s2| {
                s2.map(Ipa(hole), PhysAddr(pa), size, &ram, Granularity::Pages)
            });
        }
        for (what, a) in bad_attrs(&geo) {
            let what = format!("{name}: map {what}");
            fx.refused(&what, ErrorKind::BadAttributes, |s2| {
                s2.map(Ipa(hole), PhysAddr(PA), PAGE, &a, Granularity::Pages)
            });
            fx.refused(&format!("{what} (2 MiB)"), ErrorKind::BadAttributes, |s2| {
                s2.map(Ipa(fx.base + 4 * MB2), PhysAddr(PA), MB2, &a, Granularity::Largest)
            });
        }
    });
}

#[test]
fn unmap_and_protect_refuse_bad_ranges_and_attributes() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        let fx = Fixture::new(&env, geo, mode);
        for (what, ipa, size, err) in bad_ranges(&fx) {
            fx.refused(&format!("{name}: unmap {what}"), err, |s2| s2.unmap(Ipa(ipa), size));
            fx.refused(&format!("{name}: protect {what}"), err, |s2| {
                s2.protect(Ipa(ipa), size, &Attrs::RAM_RO)
            });
        }
        for (what, a) in bad_attrs(&geo) {
            // Over the mapped page and block: a wrongly accepted call shows.
            fx.refused(&format!("{name}: protect {what}"), ErrorKind::BadAttributes, |s2| {
                s2.protect(Ipa(fx.base), 2 * MB2, &a)
            });
        }
    });
}

/// The edges that must work: the last page and the last 2 MiB of the IPA
/// space, and the last page of the PA space.
#[test]
fn ranges_ending_exactly_at_the_limits_work() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        let s2 = env.stage2(geo, mode);
        let lim = geo.ipa_limit();
        let pa_top = (1u64 << geo.pa_bits()) - PAGE;
        assert_eq!(
            s2.map(Ipa(lim - PAGE), PhysAddr(pa_top), PAGE, &Attrs::RAM, Granularity::Pages),
            Ok(()),
            "{name}"
        );
        let mut m = Model::new();
        m.insert(lim - PAGE, (pa_top, Attrs::RAM));
        check_pages(&env, &s2, &m, [lim - 2 * PAGE, lim - PAGE, 0]);
        assert_eq!(s2.protect(Ipa(lim - PAGE), PAGE, &Attrs::RAM_RO), Ok(()), "{name}");
        m.insert(lim - PAGE, (pa_top, Attrs::RAM_RO));
        check_pages(&env, &s2, &m, [lim - PAGE]);
        assert_eq!(s2.unmap(Ipa(lim - PAGE), PAGE), Ok(()), "{name}");
        m.clear();
        check_pages(&env, &s2, &m, [lim - PAGE]);
        // The last 2 MiB as one block, to the last 2 MiB of the PA space.
        let pa_blk = (1u64 << geo.pa_bits()) - MB2;
        assert_eq!(
            s2.map(Ipa(lim - MB2), PhysAddr(pa_blk), MB2, &Attrs::RAM, Granularity::Largest),
            Ok(()),
            "{name}"
        );
        let t = s2.translate(Ipa(lim - PAGE)).unwrap();
        assert_eq!((t.level, t.pa.get()), (2, pa_blk + MB2 - PAGE), "{name}");
        m.insert(lim - PAGE, (pa_blk + MB2 - PAGE, Attrs::RAM));
        m.insert(lim - MB2, (pa_blk, Attrs::RAM));
        check_pages(&env, &s2, &m, [lim - MB2, lim - PAGE, lim - MB2 - PAGE]);
        assert_eq!(s2.unmap(Ipa(lim - MB2), MB2), Ok(()), "{name}");
        s2.rcu_barrier();
        assert_eq!(env.mem.live(), geo.root_tables(), "{name}");
    });
}

#[test]
fn map_over_a_different_mapping_is_already_mapped() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        let fx = Fixture::new(&env, geo, mode);
        let b = fx.base;
        let ram = Attrs::RAM;
        let ro = Attrs::RAM_RO;
        let cases: Vec<(&str, u64, u64, u64, Attrs, Granularity)> = vec![
            // Several pages (prepare pass) ...
            ("other PA", b, PA + PAGE, 2 * PAGE, ram, Granularity::Pages),
            ("other attributes", b, PA, 2 * PAGE, ro, Granularity::Pages),
            (
                "hole first, conflict last",
                b + MB2 - 4 * PAGE,
                PA + MB2 - 4 * PAGE,
                5 * PAGE,
                ram,
                Granularity::Pages,
            ),
            (
                "page range over a block, other PA",
                b + MB2 + 8 * PAGE,
                PA,
                4 * PAGE,
                ro,
                Granularity::Pages,
            ),
            (
                "block over a block, other attributes",
                b + MB2,
                PA + MB2,
                MB2,
                ram,
                Granularity::Largest,
            ),
            (
                "new tables first, conflict last",
                fx.lim - 4 * MB2 - 3 * PAGE,
                0x1_0000_0000,
                4 * MB2 + 3 * PAGE,
                ram,
                Granularity::Pages,
            ),
            (
                "new blocks first, conflict last",
                fx.lim - 8 * MB2,
                0x1_0000_0000,
                8 * MB2,
                ram,
                Granularity::Largest,
            ),
            ("2 MiB over a page", b, PA, MB2, ro, Granularity::Largest),
            (
                "pages up to the last page",
                fx.lim - 8 * PAGE,
                0x9000_0000 - 7 * PAGE,
                8 * PAGE,
                ram,
                Granularity::Pages,
            ),
            // ... and one page (the one-walk path).
            ("one page, other PA", b, PA + PAGE, PAGE, ram, Granularity::Pages),
            ("one page, other attributes", b, PA, PAGE, ro, Granularity::Pages),
            ("one page inside a block", b + MB2 + PAGE, PA, PAGE, ro, Granularity::Pages),
            ("last page", fx.lim - PAGE, 0x9000_0000, PAGE, ram, Granularity::Pages),
        ];
        for (what, ipa, pa, size, a, g) in cases {
            let what = format!("{name}: {what}");
            let live = env.mem.live();
            let snap = snapshot(&env);
            let r = fx.s2.map(Ipa(ipa), PhysAddr(pa), size, &a, g);
            assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::AlreadyMapped), "{what}");
            let tlb = env.tlb.take();
            // The one-walk path ends with its DSB even when refused; no
            // invalidation either way.
            if size == PAGE {
                assert!(tlb.is_empty() || tlb == vec![TlbOp::SyncTables], "{what}: {tlb:?}");
            } else {
                assert_eq!(tlb, vec![], "{what}");
            }
            fx.s2.rcu_barrier();
            assert_eq!(env.mem.live(), live, "{what}: table pages leaked");
            assert!(snapshot(&env) == snap, "{what}: table memory changed");
            let mut pages = fx.pages.clone();
            pages.extend((ipa..ipa + size.min(4 * MB2)).step_by(PAGE as usize));
            check_pages(&env, &fx.s2, &fx.model, pages);
        }
        // Mapping exactly what is there is no conflict and changes nothing.
        let live = env.mem.live();
        let snap = snapshot(&env);
        assert_eq!(
            fx.s2.map(
                Ipa(b + MB2 + 8 * PAGE),
                PhysAddr(PA + MB2 + 8 * PAGE),
                4 * PAGE,
                &ro,
                Granularity::Pages
            ),
            Ok(()),
            "{name}"
        );
        assert_eq!(
            fx.s2.map(Ipa(b), PhysAddr(PA), PAGE, &ram, Granularity::Largest),
            Ok(()),
            "{name}"
        );
        assert_eq!(
            fx.s2.translate(Ipa(b + MB2 + 8 * PAGE)).unwrap().level,
            2,
            "{name}: block kept"
        );
        assert!(snapshot(&env) == snap, "{name}: identical re-map changed the tables");
        assert_eq!(env.mem.live(), live, "{name}");
    });
}

#[test]
fn geometry_constructors_refuse_bad_sizes() {
    let f = Features::default();
    let pas = [32u32, 36, 40, 42, 44, 48];
    for ipa in 0..=64u32 {
        for pa in 0..=64u32 {
            let ok = (32..=48).contains(&ipa) && pas.contains(&pa) && ipa <= pa;
            let r = Geometry::aarch64(ipa, pa, f);
            if ok {
                let g = r.unwrap_or_else(|e| panic!("aarch64({ipa}, {pa}): {e:?}"));
                assert_eq!((g.ipa_bits(), g.pa_bits()), (ipa, pa));
            } else {
                assert_eq!(
                    r.map_err(|e| e.kind()),
                    Err(ErrorKind::Unsupported),
                    "aarch64({ipa}, {pa})"
                );
            }
        }
    }
    for ipa in [u32::MAX, 1 << 31, 256] {
        assert_eq!(
            Geometry::aarch64(ipa, 48, f).map_err(|e| e.kind()),
            Err(ErrorKind::Unsupported)
        );
        assert_eq!(
            Geometry::aarch64(40, ipa, f).map_err(|e| e.kind()),
            Err(ErrorKind::Unsupported)
        );
        assert_eq!(Geometry::armv7(ipa).map_err(|e| e.kind()), Err(ErrorKind::Unsupported));
    }
    for ipa in 0..=64u32 {
        let r = Geometry::armv7(ipa);
        if (25..=40).contains(&ipa) {
            assert_eq!(r.map(|g| (g.ipa_bits(), g.pa_bits())), Ok((ipa, 40)));
        } else {
            assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::Unsupported), "armv7({ipa})");
        }
    }
}

#[test]
fn vttbr_refuses_bad_vmids_and_roots() {
    let mut geos = geometries();
    let vmid16 = Features { vmid16: true, ..Features::default() };
    geos.push(("a64-40bit-vmid16", Geometry::aarch64(40, 44, vmid16).unwrap()));
    for (name, g) in geos {
        let bits = if g.features().vmid16 { 16 } else { 8 };
        let root = PhysAddr(0x10_8000_0000);
        let max = ((1u32 << bits) - 1) as u16;
        assert_eq!(g.vttbr(root, Vmid(max)), Ok(root.get() | u64::from(max) << 48), "{name}");
        assert_eq!(g.vttbr(root, Vmid(0)), Ok(root.get()), "{name}");
        if bits == 8 {
            for v in [256u16, 0x1ff, 0x8000, u16::MAX] {
                assert_eq!(
                    g.vttbr(root, Vmid(v)).map_err(|e| e.kind()),
                    Err(ErrorKind::Unsupported),
                    "{name} VMID {v:#x}"
                );
            }
        }
        let rs = g.root_size();
        let mut misaligned = vec![root.get() + 0x800, root.get() + 8, root.get() + PAGE / 2];
        if rs > PAGE {
            // A concatenated root must be aligned to its whole size.
            misaligned.push(root.get() + PAGE);
            misaligned.push(root.get() + rs / 2);
        }
        for r in misaligned {
            let want = Error::Unaligned { value: r, align: rs };
            assert_eq!(g.vttbr(PhysAddr(r), Vmid(1)), Err(want), "{name} root {r:#x}");
        }
        // The root must be addressable.
        let limit = 1 << g.pa_bits();
        for r in [limit, root.get() | (1 << 48), !(rs - 1)] {
            let want = Error::OutOfRange { start: r, size: rs, limit };
            assert_eq!(g.vttbr(PhysAddr(r), Vmid(1)), Err(want), "{name} root {r:#x}");
        }
    }
}

#[test]
fn stage2_new_refuses_without_memory_and_with_a_bad_vmid() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        env.mem.fail_after(1);
        let r = Stage2::new(geo, Vmid(1), mode, &env.mem, &env.tlb, &env.rcu);
        assert_eq!(r.err().map(|e| e.kind()), Some(ErrorKind::OutOfMemory), "{name}");
        assert_eq!(env.mem.live(), 0, "{name}: leak");
        env.mem.clear_failure();

        // None of the regimes has 16-bit VMIDs.
        assert!(!geo.features().vmid16);
        for bad in [256, 0x1234, u16::MAX] {
            let r = Stage2::new(geo, Vmid(bad), mode, &env.mem, &env.tlb, &env.rcu);
            assert_eq!(
                r.err().map(|e| e.kind()),
                Some(ErrorKind::Unsupported),
                "{name}: VMID {bad:#x}"
            );
            assert_eq!(env.mem.live(), 0, "{name}: root leaked");
        }
        let s2 = Stage2::new(geo, Vmid(255), mode, &env.mem, &env.tlb, &env.rcu).unwrap();
        assert_eq!(s2.vttbr() >> 48, 255, "{name}");
        drop(s2);
        assert_eq!(env.mem.live(), 0, "{name}");
    });
}

/// A constructor that refuses a VMID has no address space to maintain:
/// it must not issue TLB maintenance for that (invalid) VMID.
#[test]
fn stage2_new_with_a_bad_vmid_issues_no_tlb_maintenance() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        let r = Stage2::new(geo, Vmid(300), mode, &env.mem, &env.tlb, &env.rcu);
        assert_eq!(r.err().map(|e| e.kind()), Some(ErrorKind::Unsupported), "{name}");
        assert_eq!(env.tlb.take(), vec![], "{name}");
    });
}

#[test]
fn translate_beyond_the_ipa_space_is_none() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        let fx = Fixture::new(&env, geo, mode);
        let lim = fx.lim;
        // What an index that wrapped would find.
        if fx.base != 0 {
            fx.s2
                .map(Ipa(0), PhysAddr(0x7000_0000), PAGE, &Attrs::RAM, Granularity::Pages)
                .unwrap();
        }
        assert!(fx.s2.translate(Ipa(0)).is_some(), "{name}");
        assert!(fx.s2.translate(Ipa(lim - 1)).is_some(), "{name}");
        for ipa in [
            lim,
            lim + 1,
            lim + fx.base,
            lim + fx.base + MB2,
            lim * 2 - PAGE,
            1 << 48,
            1 << 63,
            u64::MAX,
        ] {
            assert_eq!(fx.s2.translate(Ipa(ipa)), None, "{name}: translate({ipa:#x})");
        }
        env.tlb.take();
    });
}

#[test]
fn table_walk_accessors_beyond_the_space_are_none() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        let fx = Fixture::new(&env, geo, mode);
        let s2 = &fx.s2;
        let lim = fx.lim;
        let g = s2.rcu().read_lock();
        let e = s2.pgd_offset(&g, Ipa(lim - PAGE)).expect("last IPA");
        assert_eq!(e.level(), geo.start_level(), "{name}");
        assert!(s2.pgd_offset(&g, Ipa(0)).is_some(), "{name}");
        for ipa in [lim, lim + fx.base, 1 << 48, u64::MAX] {
            assert!(s2.pgd_offset(&g, Ipa(ipa)).is_none(), "{name}: pgd_offset({ipa:#x})");
            assert!(s2.pmd_lookup(&g, Ipa(ipa)).is_none(), "{name}: pmd_lookup({ipa:#x})");
        }
        // No table below: invalid entries and blocks.
        assert!(
            s2.pmd_lookup(&g, Ipa(lim / 2 + 8 * MB2)).is_none() || geo.start_level() == 2,
            "{name}"
        );
        let blk = s2.pmd_lookup(&g, Ipa(fx.base + MB2)).expect("pmd of the block");
        assert!(s2.pte_offset_map(&blk).is_none(), "{name}: pte_offset_map on a block");
        assert!(s2.pte_offset_map_lock(&blk).is_none(), "{name}");
        assert!(s2.pte_offset_map_ro_nolock(&blk).is_none(), "{name}");
        assert!(s2.pte_offset_map_rw_nolock(&blk).is_none(), "{name}");
        let hole = s2.pmd_lookup(&g, Ipa(fx.base + 5 * MB2)).expect("pmd of a hole");
        assert!(s2.pte_offset_map(&hole).is_none(), "{name}: pte_offset_map on an invalid pmd");
        // An entry above level 2 is not a pmd.
        if geo.start_level() < 2 {
            let top = s2.pgd_offset(&g, Ipa(fx.base)).unwrap();
            assert!(
                s2.pte_offset_map(&top).is_none(),
                "{name}: pte_offset_map on a level-{} entry",
                top.level()
            );
            assert!(s2.pte_offset_map_lock(&top).is_none(), "{name}");
        }
        drop(g);
        assert_eq!(env.tlb.take(), vec![], "{name}");
        check_pages(&env, s2, &fx.model, fx.pages.iter().copied());
    });
}

#[test]
fn pte_accessors_refuse_ipas_outside_their_table() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        let fx = Fixture::new(&env, geo, mode);
        let s2 = &fx.s2;
        let b = fx.base;
        let live = env.mem.live();
        let snap = snapshot(&env);
        let outside = [b + MB2, b + MB2 + PAGE, b + 2 * MB2, b ^ GB1, b + fx.lim, u64::MAX];
        {
            let g = s2.rcu().read_lock();
            let pmd = s2.pmd_lookup(&g, Ipa(b + 3 * PAGE)).unwrap();
            let map = s2.pte_offset_map(&pmd).unwrap();
            let ro = s2.pte_offset_map_ro_nolock(&pmd).unwrap();
            for ipa in outside {
                assert_eq!(
                    map.get_at(Ipa(ipa)).map_err(|e| e.kind()),
                    Err(ErrorKind::OutOfRange),
                    "{name}: {ipa:#x}"
                );
                assert_eq!(
                    ro.get_at(Ipa(ipa)).map_err(|e| e.kind()),
                    Err(ErrorKind::OutOfRange),
                    "{name}: {ipa:#x}"
                );
            }
            assert_eq!(map.get_at(Ipa(b + MB2 - PAGE)), Ok(Desc::INVALID), "{name}");
            assert!(map.get_at(Ipa(b)).unwrap().is_leaf(3), "{name}");
            drop((map, ro));

            let mut l = s2.pte_offset_map_lock(&pmd).unwrap();
            let page = Desc::leaf(&geo, 3, PhysAddr(0x7000_0000), &Attrs::RAM);
            let mut batch = s2.tlb_batch();
            for ipa in outside {
                assert_eq!(
                    l.get_at(Ipa(ipa)).map_err(|e| e.kind()),
                    Err(ErrorKind::OutOfRange),
                    "{name}: {ipa:#x}"
                );
                assert_eq!(
                    l.set(Ipa(ipa), page, &mut batch).map_err(|e| e.kind()),
                    Err(ErrorKind::OutOfRange),
                    "{name}: set({ipa:#x})"
                );
                assert!(l.install(Ipa(ipa), page).is_err(), "{name}: install({ipa:#x})");
            }
            // A block descriptor is not a page.
            let block = Desc::leaf(&geo, 2, PhysAddr(0x7000_0000 & !(MB2 - 1)), &Attrs::RAM);
            assert_eq!(
                l.set(Ipa(b + PAGE), block, &mut batch).map_err(|e| e.kind()),
                Err(ErrorKind::BadAttributes),
                "{name}: block"
            );
            assert_eq!(
                l.set(Ipa(b), block, &mut batch).map_err(|e| e.kind()),
                Err(ErrorKind::BadAttributes),
                "{name}: block over a page"
            );
            // An output address the regime cannot hold.
            if geo.pa_bits() < 48 {
                let high = Desc::from_bits(page.bits() | (1 << geo.pa_bits()));
                assert_eq!(
                    l.set(Ipa(b + PAGE), high, &mut batch).map_err(|e| e.kind()),
                    Err(ErrorKind::OutOfRange),
                    "{name}: PA"
                );
            }
            // Installing over a valid entry is refused with that entry.
            let cur = l.get_at(Ipa(b)).unwrap();
            let existing = Error::AlreadyMapped { ipa: Ipa(b), level: 3, existing: cur };
            assert_eq!(l.install(Ipa(b), page), Err(existing), "{name}: install over a page");
            assert!(batch.is_empty(), "{name}: refused sets gathered invalidations");
            drop(batch);
            drop(l);
        }
        assert_eq!(env.tlb.take(), vec![], "{name}");
        assert_eq!(env.mem.live(), live, "{name}");
        assert!(snapshot(&env) == snap, "{name}: table memory changed");
        check_pages(&env, s2, &fx.model, fx.pages.iter().copied());
    });
}

/// At level 3 a table descriptor has the page encoding: written there it
/// would be a page of Device-nGnRnE memory, executable, which `Attrs`
/// never allows. `set` must refuse it like a block.
#[test]
fn pte_set_refuses_a_table_descriptor() {
    for_all(|name, geo, mode| {
        let env = Env::new(POOL);
        let fx = Fixture::new(&env, geo, mode);
        let s2 = &fx.s2;
        let b = fx.base;
        let snap = snapshot(&env);
        {
            let g = s2.rcu().read_lock();
            let pmd = s2.pmd_lookup(&g, Ipa(b)).unwrap();
            let mut l = s2.pte_offset_map_lock(&pmd).unwrap();
            let mut batch = s2.tlb_batch();
            let table = Desc::table(PhysAddr(HostMemory::BASE));
            assert_eq!(
                l.set(Ipa(b + PAGE), table, &mut batch).map_err(|e| e.kind()),
                Err(ErrorKind::BadAttributes),
                "{name}: table descriptor"
            );
            drop(batch);
            drop(l);
        }
        assert!(snapshot(&env) == snap, "{name}: table memory changed");
        check_pages(&env, s2, &fx.model, fx.pages.iter().copied());
    });
}
