//! `smp`: concurrent demand faults from several vCPUs in one level-3 table.
//!
//! Run with `vcpus=4` (it uses every vCPU of the DTB, up to 8; default 4).
//! The primary starts the secondaries with PSCI `CPU_ON`; then:
//!
//! * region A (2 MiB at `0x4100_0000`, one level-3 table): vCPU `i` touches
//!   pages `i, i + n, i + 2n...` concurrently with the others, writing a
//!   per-word pattern and verifying its own pages;
//! * region B (the next 2 MiB): every vCPU writes its own word slot of
//!   *every* page, in the same order, so the vCPUs race to fault in the same
//!   pages; a lost race that mapped two frames would lose a slot.
//!
//! vCPUs meet at barriers between phases; nothing is printed inside a
//! measured phase (console traps would be exits).
//!
//! Checks: 1 `vcpus` (at least 2), 2 `policy_pages`, 3 `start` (CPU_ON of
//! every secondary), 4 `a_data` (every page, checked by the primary after
//! the join, and each vCPU's own check), 5 `a_faults` (= 512), 6
//! `a_pages_mapped` (= 512), 7 `b_data` (every slot of every page, rest of
//! the page zero), 8 `b_pages_mapped` (= 512: one frame per page however
//! many vCPUs faulted on it), 9 `b_faults` (between 512 and 512 * n).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "smp: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)"
    );
}

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use guest::abi::{counter, BLOCK_SIZE, PAGE_SIZE, POLICY_PAGES, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{check_eq, check_mem, hyp_set_policy, platform, smp, test_result_with};
    use guest::rt::{Barrier, Stats};

    guest::guest_main!("smp", 800, main);

    const REGION_A: u64 = TEST_REGION;
    const REGION_B: u64 = TEST_REGION + BLOCK_SIZE;
    const PAGES: u64 = BLOCK_SIZE / PAGE_SIZE;
    const SEED_A: u64 = 0x5a5a_0000_0000_0008;
    const SEED_B: u64 = 0x5b5b_0000_0000_0008;

    static NCPUS: AtomicUsize = AtomicUsize::new(1);
    static BARRIER: Barrier = Barrier::new();
    /// vCPUs whose own check of region A failed.
    static A_ERRORS: AtomicU64 = AtomicU64::new(0);
    /// Stats read by the primary between the phases.
    static STATS_A_DONE: [AtomicU64; counter::COUNT] =
        [const { AtomicU64::new(0) }; counter::COUNT];

    fn slot_pattern(cpu: u64, a: u64) -> u64 {
        pattern(SEED_B ^ (cpu << 56), a)
    }

    /// The part of the test every vCPU runs; `cpu` 0 is the primary.
    fn work(cpu: usize) {
        let n = NCPUS.load(Ordering::SeqCst);
        let cpu64 = cpu as u64;
        BARRIER.wait(n); // phase A starts
        let mut p = cpu64;
        while p < PAGES {
            let page = REGION_A + p * PAGE_SIZE;
            mem::fill(page, PAGE_SIZE, |a| pattern(SEED_A, a));
            p += n as u64;
        }
        let mut p = cpu64;
        while p < PAGES {
            let page = REGION_A + p * PAGE_SIZE;
            if mem::verify(page, PAGE_SIZE, |a| pattern(SEED_A, a)).is_err() {
                A_ERRORS.fetch_add(1, Ordering::SeqCst);
            }
            p += n as u64;
        }
        BARRIER.wait(n); // phase A done
        if cpu == 0 {
            let s = Stats::read();
            for (slot, v) in STATS_A_DONE.iter().zip(s.0) {
                slot.store(v, Ordering::SeqCst);
            }
        }
        BARRIER.wait(n); // phase B starts
        for p in 0..PAGES {
            let a = REGION_B + p * PAGE_SIZE + 8 * cpu64;
            mem::write64(a, slot_pattern(cpu64, a));
        }
        BARRIER.wait(n); // phase B done
    }

    fn main(_dtb: u64) {
        let n = platform::cpus_or(4);
        NCPUS.store(n, Ordering::SeqCst);
        test_result_with(1, "vcpus", n >= 2, format_args!("{n} vCPUs (run with vcpus=4)"));
        check_eq(2, "policy_pages", hyp_set_policy(POLICY_PAGES), 0);
        println!(
            "smp: {n} vCPUs: region A {REGION_A:#x} interleaved pages, region B {REGION_B:#x} \
             shared pages"
        );

        let started = smp::start_secondaries(n, work);
        test_result_with(3, "start", started.is_ok(), format_args!("{started:?}"));
        if started.is_err() {
            // The started ones wait at the first barrier forever: stop here.
            return;
        }
        let s0 = Stats::read();
        work(0);
        smp::join_secondaries();
        let s2 = Stats::read();
        let mut s1 = Stats::default();
        for (v, slot) in s1.0.iter_mut().zip(&STATS_A_DONE) {
            *v = slot.load(Ordering::SeqCst);
        }

        let own = A_ERRORS.load(Ordering::SeqCst);
        let all = mem::verify(REGION_A, BLOCK_SIZE, |a| pattern(SEED_A, a));
        test_result_with(
            4,
            "a_data",
            own == 0 && all.is_ok(),
            format_args!("{own} own-page checks failed; primary's check: {all:x?}"),
        );
        let da = s1.delta(&s0);
        check_eq(5, "a_faults", da.get(counter::FAULTS), PAGES);
        check_eq(6, "a_pages_mapped", da.get(counter::PAGES_MAPPED), PAGES);

        let nn = n as u64;
        let b = mem::verify(REGION_B, BLOCK_SIZE, |a| {
            let slot = (a - REGION_B) % PAGE_SIZE / 8;
            if slot < nn {
                slot_pattern(slot, a)
            } else {
                0
            }
        });
        check_mem(7, "b_data", b);
        let db = s2.delta(&s1);
        check_eq(8, "b_pages_mapped", db.get(counter::PAGES_MAPPED), PAGES);
        let bf = db.get(counter::FAULTS);
        test_result_with(
            9,
            "b_faults",
            (PAGES..=PAGES * nn).contains(&bf),
            format_args!("{bf} faults for {PAGES} pages shared by {n} vCPUs"),
        );
        da.print("smp: region A counters");
        db.print("smp: region B counters");
    }
}
