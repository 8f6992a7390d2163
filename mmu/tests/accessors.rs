//! The `pte_offset_map` contract: what each accessor returns, which lock
//! it uses, the pmd recheck, and that a mapped table outlives its detach.

mod common;

use common::*;
use mmu::testing::TlbOp;
use mmu::{
    pmd_same, Attrs, Desc, Features, Geometry, Granularity, Ipa, LockMode, MemType, PhysAddr, Vmid,
};
use mmu::{Error, ErrorKind};

const BASE: u64 = 0x4000_0000;

fn geo40() -> Geometry {
    Geometry::aarch64(40, 48, Features::default()).unwrap()
}

#[test]
fn folded_levels_follow_the_start_level() {
    let env = Env::new(64);
    for (geo, levels) in [
        (Geometry::aarch64(48, 48, Features::default()).unwrap(), [0, 1, 2]),
        (geo40(), [1, 1, 2]),
        (Geometry::aarch64(32, 40, Features::default()).unwrap(), [2, 2, 2]),
        (Geometry::armv7(30).unwrap(), [2, 2, 2]),
    ] {
        let s2 = env.stage2(geo, LockMode::Split);
        s2.map(Ipa(0x20_0000), PhysAddr(0x8000_0000), PAGE, &Attrs::RAM, Granularity::Pages)
            .unwrap();
        let g = s2.rcu().read_lock();
        let pgd = s2.pgd_offset(&g, Ipa(0x20_0000)).unwrap();
        let pud = s2.pud_offset(s2.p4d_offset(pgd)).unwrap();
        let pmd = s2.pmd_offset(pud).unwrap();
        assert_eq!([pgd.level(), pud.level(), pmd.level()], levels, "{geo:?}");
        assert!(pmd.read().is_table(2));
        assert!(s2.pgd_offset(&g, Ipa(geo.ipa_limit())).is_none());
    }
}

#[test]
fn pte_offset_map_needs_a_table() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    // A 2 MiB block at BASE, a page table at BASE + 2 MiB, nothing above.
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), MB2, &Attrs::RAM, Granularity::Largest).unwrap();
    s2.map(Ipa(BASE + MB2), PhysAddr(0x9000_0000), PAGE, &Attrs::RAM, Granularity::Largest)
        .unwrap();
    let g = s2.rcu().read_lock();
    let block = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
    assert!(s2.pte_offset_map(&block).is_none(), "a block has no pte table");
    assert!(s2.pte_offset_map_lock(&block).is_none());
    let none = s2.pmd_lookup(&g, Ipa(BASE + 2 * MB2)).unwrap();
    assert!(s2.pte_offset_map(&none).is_none(), "an invalid pmd has no pte table");
    // A pud is not a pmd.
    let pud = s2.pud_offset(s2.p4d_offset(s2.pgd_offset(&g, Ipa(BASE)).unwrap())).unwrap();
    assert!(s2.pte_offset_map(&pud).is_none());

    let pmd = s2.pmd_lookup(&g, Ipa(BASE + MB2)).unwrap();
    let map = s2.pte_offset_map(&pmd).unwrap();
    assert!(map.get().is_leaf(3));
    assert_eq!(map.get().addr(), PhysAddr(0x9000_0000));
    assert_eq!(map.get_at(Ipa(BASE + MB2 + PAGE)), Ok(Desc::INVALID));
    assert_eq!(
        map.get_at(Ipa(BASE)).map_err(|e| e.kind()),
        Err(ErrorKind::OutOfRange),
        "outside the table's span"
    );
    assert!(pmd_same(map.pmdval(), pmd.read()));
}

#[test]
fn locks_split_versus_single() {
    let env = Env::new(64);
    for mode in MODES {
        let s2 = env.stage2(geo40(), mode);
        for i in 0..2 {
            let ipa = BASE + i * MB2;
            s2.map(Ipa(ipa), PhysAddr(0x8000_0000 + ipa), PAGE, &Attrs::RAM, Granularity::Pages)
                .unwrap();
        }
        let g = s2.rcu().read_lock();
        let a = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
        let b = s2.pmd_lookup(&g, Ipa(BASE + MB2)).unwrap();
        let la = s2.pte_lockptr(a.read());
        let lb = s2.pte_lockptr(b.read());
        let same_table_lock = std::ptr::eq(la, lb);
        let pmd_lock_is_pte_lock = std::ptr::eq(s2.pmd_lockptr(&a), la);
        match mode {
            LockMode::Split => {
                assert!(!same_table_lock && !pmd_lock_is_pte_lock, "one lock per table")
            }
            LockMode::Single => {
                assert!(same_table_lock && pmd_lock_is_pte_lock, "one lock for all")
            }
        }
        // The locked guard reports the lock it holds, and ro_nolock the
        // same lock without taking it.
        let ro = s2.pte_offset_map_ro_nolock(&a).unwrap();
        assert!(std::ptr::eq(ro.ptl(), la));
        assert!(ro.ptl().try_lock().is_some(), "ro_nolock does not take the lock");
        let locked = s2.pte_offset_map_lock(&a).unwrap();
        assert!(std::ptr::eq(locked.ptl(), la));
        assert!(la.try_lock().is_none(), "map_lock holds the lock");
        drop(locked);
        let pmd_guard = s2.pmd_lock(&a);
        assert!(s2.pmd_lockptr(&a).try_lock().is_none());
        assert!(pmd_guard.get().is_table(2));
    }
}

#[test]
fn map_lock_writes_with_the_required_maintenance() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    env.tlb.take();
    let geo = *s2.geometry();
    let g = s2.rcu().read_lock();
    let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
    let mut l = s2.pte_offset_map_lock(&pmd).unwrap();
    // Install into an invalid entry: no invalidation at all.
    let new = Desc::leaf(&geo, 3, PhysAddr(0x8000_1000), &Attrs::RAM);
    l.install(Ipa(BASE + PAGE), new).unwrap();
    assert_eq!(
        l.install(Ipa(BASE + PAGE), new),
        Err(Error::AlreadyMapped { ipa: Ipa(BASE + PAGE), level: 3, existing: new }),
        "install never overwrites"
    );
    assert!(env.tlb.take().is_empty());
    // Moving a page to another frame is break-before-make: the break is
    // invalidated before the make.
    let mut batch = s2.tlb_batch();
    let moved = Desc::leaf(&geo, 3, PhysAddr(0x8800_0000), &Attrs::RAM);
    let old = l.set(Ipa(BASE), moved, &mut batch).unwrap();
    assert_eq!(old.addr(), PhysAddr(0x8000_0000));
    let vmid = Vmid(7);
    assert_eq!(
        env.tlb.take(),
        vec![
            TlbOp::SyncTables,
            TlbOp::Ipa { vmid, ipa: Ipa(BASE), level: Some(3), last_level: true },
            TlbOp::Stage1(vmid),
            TlbOp::Complete
        ]
    );
    assert_eq!(l.get(), moved);
    // A permission-only change is made in place; its invalidation waits
    // in the batch until the batch is flushed (here: dropped).
    let ro = moved.with_attrs(&geo, &Attrs::RAM_RO);
    l.set(Ipa(BASE), ro, &mut batch).unwrap();
    assert!(env.tlb.take().is_empty());
    assert_eq!(l.get(), ro);
    drop(batch);
    assert_eq!(env.tlb.take().len(), 4);
    // Blocks and tables cannot be written through a pte guard.
    let block = Desc::leaf(&geo, 2, PhysAddr(0x8000_0000), &Attrs::RAM);
    let mut batch = s2.tlb_batch();
    assert_eq!(
        l.set(Ipa(BASE), block, &mut batch).map_err(|e| e.kind()),
        Err(ErrorKind::BadAttributes)
    );
    drop(l);
    drop(g);
    let t = s2.translate(Ipa(BASE)).unwrap();
    assert_eq!((t.pa, t.attrs), (PhysAddr(0x8800_0000), Attrs::RAM_RO));
    let mut model = Model::new();
    model.insert(BASE, (0x8800_0000, Attrs::RAM_RO));
    model.insert(BASE + PAGE, (0x8000_1000, Attrs::RAM));
    check_pages(&env, &s2, &model, [BASE, BASE + PAGE, BASE + 2 * PAGE]);
}

#[test]
fn rw_nolock_rechecks_the_pmd_before_writing() {
    let env = Env::new(64);
    for mode in MODES {
        let s2 = env.stage2(geo40(), mode);
        s2.map(Ipa(BASE), PhysAddr(0x8000_0000), PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
        let g = s2.rcu().read_lock();
        let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
        let rw = s2.pte_offset_map_rw_nolock(&pmd).unwrap();
        let pmdval = rw.pmdval();
        assert!(rw.get().is_leaf(3));
        // The table is emptied and detached before the writer locks it.
        s2.unmap(Ipa(BASE), PAGE).unwrap();
        assert!(!pmd_same(pmdval, pmd.read()));
        let err = rw.lock().err().expect("a stale pmd must be refused");
        assert_eq!(err.now, Desc::INVALID);
        // The old pmd slot now sits in a detached (empty) level-2 table: the
        // level-2 table emptied too. It stays readable but leads nowhere.
        s2.map(Ipa(BASE), PhysAddr(0x8000_0000), PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
        assert!(s2.pte_offset_map_rw_nolock(&pmd).is_none());
        // A fresh walk finds the new tables and may write.
        let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
        let rw = s2.pte_offset_map_rw_nolock(&pmd).unwrap();
        assert!(pmd_same(rw.pmdval(), pmd.read()));
        let mut locked = rw.lock().expect("pmd unchanged");
        let mut batch = s2.tlb_batch();
        let geo = *s2.geometry();
        let nc = Desc::leaf(
            &geo,
            3,
            PhysAddr(0x8000_0000),
            &Attrs { mem: MemType::NormalNc, ..Attrs::RAM },
        );
        locked.set(Ipa(BASE), nc, &mut batch).unwrap();
        drop(batch);
        drop(locked);
        drop(g);
        assert_eq!(s2.translate(Ipa(BASE)).unwrap().attrs.mem, MemType::NormalNc);
    }
}

#[test]
fn a_mapped_table_outlives_its_detach_until_the_guard_drops() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), 4 * PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    let g = s2.rcu().read_lock();
    let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
    let map = s2.pte_offset_map(&pmd).unwrap();
    let table = map.table();
    // Unmapping empties the table and detaches it, but a reader is inside
    // its RCU section: the page must stay allocated.
    s2.unmap(Ipa(BASE), 4 * PAGE).unwrap();
    assert_eq!(s2.reclaim(), 0);
    assert!(env.mem.is_allocated(table), "freed under a pte_offset_map reader");
    assert!(s2.stats().tables_pending >= 1);
    // A valid though empty and disconnected table.
    assert_eq!(map.get(), Desc::INVALID);
    drop(map);
    drop(g);
    assert!(s2.reclaim() >= 1);
    assert!(!env.mem.is_allocated(table));
    assert_eq!(s2.stats().tables_pending, 0);
}

#[test]
fn concurrent_faults_on_one_table() {
    // Several "vCPUs" fault different pages of the same level-3 table at
    // once, through map (the fault path) and through map_lock installs.
    for mode in MODES {
        let env = Env::smp(256);
        let s2 = env.stage2(geo40(), mode);
        s2.map(Ipa(BASE), PhysAddr(0x8000_0000), PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
        let geo = *s2.geometry();
        std::thread::scope(|sc| {
            for cpu in 0..4u64 {
                let (s2, env) = (&s2, &env);
                sc.spawn(move || {
                    env.as_cpu(cpu as usize + 1, || {
                        for i in 0..128u64 {
                            let page = 1 + (i * 4 + cpu) % 511;
                            let ipa = BASE + page * PAGE;
                            let pa = 0x8000_0000 + page * PAGE;
                            if cpu % 2 == 0 {
                                match s2.map(
                                    Ipa(ipa),
                                    PhysAddr(pa),
                                    PAGE,
                                    &Attrs::RAM,
                                    Granularity::Pages,
                                ) {
                                    Ok(()) | Err(mmu::Error::AlreadyMapped { .. }) => {}
                                    Err(e) => panic!("{e:?}"),
                                }
                            } else {
                                let g = s2.rcu().read_lock();
                                let pmd = s2.pmd_lookup(&g, Ipa(ipa)).unwrap();
                                let mut l = s2.pte_offset_map_lock(&pmd).unwrap();
                                let _ = l.install(
                                    Ipa(ipa),
                                    Desc::leaf(&geo, 3, PhysAddr(pa), &Attrs::RAM),
                                );
                            }
                        }
                    })
                });
            }
        });
        let mut model = Model::new();
        for page in 0..512 {
            model.insert(BASE + page * PAGE, (0x8000_0000 + page * PAGE, Attrs::RAM));
        }
        check_pages(&env, &s2, &model, (0..512).map(|p| BASE + p * PAGE));
    }
}

#[test]
fn a_pte_guard_refuses_what_map_refuses() {
    let env = Env::new(64);
    let s2 = env.stage2(geo40(), LockMode::Split);
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), PAGE, &Attrs::RAM, Granularity::Pages).unwrap();
    let geo = *s2.geometry();
    let g = s2.rcu().read_lock();
    let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
    let mut l = s2.pte_offset_map_lock(&pmd).unwrap();
    let mut batch = s2.tlb_batch();
    // The contiguous hint spans 16 entries: one entry cannot carry it.
    let contiguous = Attrs { contiguous: true, ..Attrs::RAM };
    let page = Desc::leaf(&geo, 3, PhysAddr(0x8000_1000), &contiguous);
    assert_eq!(
        l.set(Ipa(BASE + PAGE), page, &mut batch).map_err(|e| e.kind()),
        Err(ErrorKind::BadAttributes)
    );
    assert_eq!(
        l.install(Ipa(BASE + PAGE), page),
        Err(Error::BadAttributes { why: "contiguous hint on one entry" })
    );
    // Executable device memory, as `Attrs::validate` says.
    let dev_x = Desc::leaf(
        &geo,
        3,
        PhysAddr(0x0900_0000),
        &Attrs { exec: mmu::Exec::All, ..Attrs::DEVICE },
    );
    assert_eq!(
        l.set(Ipa(BASE + PAGE), dev_x, &mut batch).map_err(|e| e.kind()),
        Err(ErrorKind::BadAttributes)
    );
    assert_eq!(l.get_at(Ipa(BASE + PAGE)), Ok(Desc::INVALID), "nothing was written");
}
