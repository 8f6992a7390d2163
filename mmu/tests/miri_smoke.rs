//! One pass through every path of `mmu` that turns table memory into
//! references (`Stage2::slot`, the walker's page cache and run slices, the
//! accessors' table guards, detach and deferred free, collapse,
//! `make_coherent`), small
//! enough for Miri to interpret in seconds: `scripts/test.sh` runs it with
//! `cargo +nightly miri test`. The other integration tests cover the same
//! code far more thoroughly but take Miri many minutes each.

use mmu::testing::{HostMemory, RecordingTlb};
use mmu::{
    pmd_same, Attrs, Desc, Features, Geometry, Granularity, Ipa, LockMode, PhysAddr, Rcu, Stage2,
    Vmid, PAGE_SIZE,
};

const BASE: u64 = 0x4000_0000;
const MB2: u64 = 1 << 21;

#[test]
fn every_path_through_table_memory() {
    // 40-bit IPA: the walk starts at level 1 with two concatenated root
    // pages, so slots are found across root pages too.
    let geo = Geometry::aarch64(40, 48, Features::default()).unwrap();
    for mode in [LockMode::Split, LockMode::Single] {
        // SAFETY: this test runs on one thread.
        let rcu = unsafe { Rcu::new() };
        let (mem, tlb) = (HostMemory::new(16), RecordingTlb::silent());
        let s2 = Stage2::new(geo, Vmid(1), mode, &mem, &tlb, &rcu).unwrap();
        // Runs of pages (the walker's run slices), a block, a page at the
        // top of the second root page.
        s2.map(Ipa(BASE), PhysAddr(0x8000_0000), 4 * PAGE_SIZE, &Attrs::RAM, Granularity::Pages)
            .unwrap();
        s2.map(Ipa(BASE + MB2), PhysAddr(0x8040_0000), MB2, &Attrs::RAM, Granularity::Largest)
            .unwrap();
        let top = geo.ipa_limit() - PAGE_SIZE;
        s2.map(Ipa(top), PhysAddr(0x9000_0000), PAGE_SIZE, &Attrs::RAM, Granularity::Pages)
            .unwrap();
        assert_eq!(s2.translate(Ipa(top)).unwrap().pa, PhysAddr(0x9000_0000));

        {
            // The accessors on the page table at BASE.
            let g = rcu.read_lock();
            let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
            let map = s2.pte_offset_map(&pmd).unwrap();
            assert!(map.get().is_valid());
            drop(map);
            let ro = s2.pte_offset_map_ro_nolock(&pmd).unwrap().lock();
            assert!(ro.get().is_valid());
            drop(ro);
            let rw = s2.pte_offset_map_rw_nolock(&pmd).unwrap();
            let mut pte = rw.lock().ok().unwrap();
            let mut batch = s2.tlb_batch();
            let leaf = Desc::leaf(&geo, 3, PhysAddr(0x8000_4000), &Attrs::RAM);
            assert_eq!(pte.install(Ipa(BASE + 4 * PAGE_SIZE), leaf), Ok(()));
            let ro_leaf = Desc::leaf(&geo, 3, PhysAddr(0x8000_0000), &Attrs::RAM_RO);
            assert!(pte.set(Ipa(BASE), ro_leaf, &mut batch).unwrap().is_valid());
            drop(pte);
            drop(batch);
            let locked = s2.pte_offset_map_lock(&pmd).unwrap();
            assert!(pmd_same(locked.pmdval(), pmd.read()));
            drop(locked);
            assert!(s2.pmd_lock(&pmd).get().is_table(2));
        }

        // Split the block (unmap cuts it), protect, then detach the page
        // table under a reader that still holds it.
        s2.unmap(Ipa(BASE + MB2), PAGE_SIZE).unwrap();
        s2.protect(Ipa(BASE + MB2), MB2, &Attrs::RAM_RO).unwrap();
        {
            let g = rcu.read_lock();
            let pmd = s2.pmd_lookup(&g, Ipa(BASE)).unwrap();
            let map = s2.pte_offset_map(&pmd).unwrap();
            s2.unmap(Ipa(BASE), MB2).unwrap();
            assert!(mem.is_allocated(map.table()), "freed under a reader");
            assert!(map.get().is_valid(), "a detached table keeps its entries");
        }
        assert!(s2.reclaim() >= 1);

        // Collapse a table of contiguous pages into a block, and split it.
        let at = BASE + 4 * MB2;
        s2.map(Ipa(at), PhysAddr(0x8060_0000), MB2, &Attrs::RAM, Granularity::Pages).unwrap();
        let c = s2.collapse(Ipa(at), 2).unwrap();
        assert_eq!(c.pa, PhysAddr(0x8060_0000));
        assert_eq!(s2.translate(Ipa(at + PAGE_SIZE)).unwrap().level, 2);
        s2.split(Ipa(at), 2).unwrap();
        assert_eq!(s2.translate(Ipa(at + PAGE_SIZE)).unwrap().level, 3);
        s2.rcu_barrier();
        drop(s2);
        assert_eq!(mem.live(), 0);
    }
}

/// Two CPUs fault pages of one table at once (the fault path and the
/// accessors' install), as `accessors.rs` does at scale.
#[test]
fn two_cpus_fault_one_table() {
    std::thread_local!(static CPU: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });
    fn cpu() -> usize {
        CPU.with(|c| c.get())
    }
    let geo = Geometry::aarch64(40, 48, Features::default()).unwrap();
    // SAFETY: each thread sets its own CPU number (`CPU`) first.
    let rcu = unsafe { Rcu::with_cpus(cpu, 1) };
    let (mem, tlb) = (HostMemory::new(8), RecordingTlb::silent());
    let s2 = Stage2::new(geo, Vmid(1), LockMode::Split, &mem, &tlb, &rcu).unwrap();
    s2.map(Ipa(BASE), PhysAddr(0x8000_0000), PAGE_SIZE, &Attrs::RAM, Granularity::Pages).unwrap();
    std::thread::scope(|sc| {
        for id in 1..3u64 {
            let (s2, rcu) = (&s2, &rcu);
            sc.spawn(move || {
                CPU.with(|c| c.set(id as usize));
                rcu.online(id as usize);
                for i in 0..4 {
                    let page = 1 + i * 2 + (id - 1);
                    let (ipa, pa) = (BASE + page * PAGE_SIZE, 0x8000_0000 + page * PAGE_SIZE);
                    if id == 1 {
                        s2.map(Ipa(ipa), PhysAddr(pa), PAGE_SIZE, &Attrs::RAM, Granularity::Pages)
                            .unwrap();
                    } else {
                        let g = rcu.read_lock();
                        let pmd = s2.pmd_lookup(&g, Ipa(ipa)).unwrap();
                        let mut pte = s2.pte_offset_map_lock(&pmd).unwrap();
                        let leaf = Desc::leaf(&geo, 3, PhysAddr(pa), &Attrs::RAM);
                        assert_eq!(pte.install(Ipa(ipa), leaf), Ok(()));
                    }
                }
                rcu.offline();
            });
        }
    });
    for page in 0..9 {
        let t = s2.translate(Ipa(BASE + page * PAGE_SIZE)).unwrap();
        assert_eq!(t.pa, PhysAddr(0x8000_0000 + page * PAGE_SIZE));
    }
}

/// `make_coherent`: an alias in the faulting table (written through the
/// held lock) and one in another space (written through `rw_nolock`).
#[test]
fn aliases_made_coherent() {
    let geo = Geometry::aarch64(40, 48, Features::default()).unwrap();
    for mode in [LockMode::Split, LockMode::Single] {
        // SAFETY: this test runs on one thread.
        let rcu = unsafe { Rcu::new() };
        let (mem, tlb, rmap) = (HostMemory::new(16), RecordingTlb::silent(), mmu::Rmap::new());
        let a = Stage2::new(geo, Vmid(1), mode, &mem, &tlb, &rcu).unwrap().with_rmap(&rmap);
        let b = Stage2::new(geo, Vmid(2), mode, &mem, &tlb, &rcu).unwrap().with_rmap(&rmap);
        let p = PhysAddr(0x8000_0000);
        let map = |s: &Stage2<'_, _, _>, ipa| {
            s.map(Ipa(ipa), p, PAGE_SIZE, &Attrs::RAM, Granularity::Pages).unwrap()
        };
        map(&a, BASE);
        a.track_page(Ipa(BASE)).unwrap();
        map(&b, BASE + MB2);
        map(&a, BASE + PAGE_SIZE);
        let nc = |x: &Attrs| Attrs { mem: mmu::MemType::NormalNc, ..*x };
        let g = rcu.read_lock();
        let pmd = a.pmd_lookup(&g, Ipa(BASE + PAGE_SIZE)).unwrap();
        let mut pte = a.pte_offset_map_lock(&pmd).unwrap();
        let c = mmu::make_coherent(&mut pte, Ipa(BASE + PAGE_SIZE), &[&b], &nc, &tlb).unwrap();
        assert_eq!((c.aliases, c.adjusted), (2, 3));
    }
}
