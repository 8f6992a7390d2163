//! `collapse`: collapsing a 2 MiB range while vCPUs write it.
//!
//! Two writer vCPUs keep storing a running counter into their own word of
//! every page of a 2 MiB region (yielding between passes) while vCPU 0
//! asks the hypervisor to collapse the region (`HYP_COLLAPSE`). When the
//! writers stop, every page must hold each writer's last value: a write
//! lost during the collapse would leave an older one.
//!
//! Round A, in place: the region is first a 2 MiB block (block policy),
//! split by `HYP_SPLIT` into 512 contiguous pages, then collapsed in place.
//! Round B, copying: the region is faulted in page by page (page policy,
//! frames not contiguous), so the collapse copies the pages into a new
//! block.
//!
//! Checks per round (A: 1-5, B: 11-15): `setup`, `collapse` (returns 0),
//! `no_lost_write`, `collapses` (+1), `data`. Then 20 `table_freed` (the
//! old tables were freed, after grace periods), run with `vcpus=3`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("collapse: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use guest::abi::{counter, PAGE_SIZE, POLICY_BLOCKS, POLICY_PAGES, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{
        check_eq, check_mem, hyp_set_policy, join_secondaries, start_secondaries, stat,
    };
    use guest::rt::{hyp_collapse, hyp_split, test_result_with};

    guest::guest_main!("collapse", 1300, main);

    const BLOCK: u64 = 2 << 20;
    const PAGES: u64 = BLOCK / PAGE_SIZE;
    const WRITERS: usize = 2;
    /// Word 0 holds the page pattern; writer `w` (1..=2) owns word `w`.
    const SEED: u64 = 0xc011_0000_0000_0013;

    static REGION: AtomicU64 = AtomicU64::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    static LAST: [AtomicU64; WRITERS + 1] = [const { AtomicU64::new(0) }; WRITERS + 1];

    fn writer(w: usize) {
        let region = REGION.load(Ordering::Acquire);
        let mut k = 0u64;
        while !STOP.load(Ordering::Acquire) {
            k += 1;
            for p in 0..PAGES {
                mem::write64(region + p * PAGE_SIZE + 8 * w as u64, k);
            }
            LAST[w].store(k, Ordering::Release);
            // Give the CPU to the others.
            guest::rt::smp::yield_now();
        }
    }

    fn round(base: u64, region: u64, in_place: bool) {
        REGION.store(region, Ordering::Release);
        STOP.store(false, Ordering::Release);
        let ok = if in_place {
            hyp_set_policy(POLICY_BLOCKS);
            mem::fill(region, BLOCK, |a| pattern(SEED, a));
            // SAFETY: the region is test memory; splitting keeps its contents.
            unsafe { hyp_split(region) == 0 }
        } else {
            hyp_set_policy(POLICY_PAGES);
            mem::fill(region, BLOCK, |a| pattern(SEED, a));
            true
        };
        check_eq(base + 1, "setup", ok, true);
        let c0 = stat(counter::COLLAPSES);
        start_secondaries(WRITERS + 1, writer).expect("writers start");
        // Let the writers get going, then collapse under them.
        while LAST[1].load(Ordering::Acquire) < 2 || LAST[2].load(Ordering::Acquire) < 2 {
            guest::rt::smp::yield_now();
        }
        // SAFETY: the region is test memory; collapsing keeps its contents.
        let r = unsafe { hyp_collapse(region) };
        let seen = LAST[1].load(Ordering::Acquire);
        while LAST[1].load(Ordering::Acquire) < seen + 2 {
            guest::rt::smp::yield_now();
        }
        STOP.store(true, Ordering::Release);
        join_secondaries();
        check_eq(base + 2, "collapse", r, 0);
        let mut lost = 0;
        for (w, last) in LAST.iter().enumerate().skip(1) {
            let last = last.load(Ordering::Acquire);
            for p in 0..PAGES {
                if mem::read64(region + p * PAGE_SIZE + 8 * w as u64) != last {
                    lost += 1;
                }
            }
        }
        test_result_with(base + 3, "no_lost_write", lost == 0, format_args!("{lost} stale words"));
        check_eq(base + 4, "collapses", stat(counter::COLLAPSES) - c0, 1);
        let data = mem::verify(region, BLOCK, |a| {
            let off = a % PAGE_SIZE;
            if (8..8 * (WRITERS as u64 + 1)).contains(&off) {
                LAST[(off / 8) as usize].load(Ordering::Relaxed)
            } else {
                pattern(SEED, a)
            }
        });
        check_mem(base + 5, "data", data);
    }

    fn main(_dtb: u64) {
        let f0 = stat(counter::TABLES_FREED);
        println!("collapse: round A (in place), writers on {WRITERS} vCPUs");
        round(0, TEST_REGION, true);
        println!("collapse: round B (copying), writers on {WRITERS} vCPUs");
        round(10, TEST_REGION + BLOCK, false);
        // The replaced tables are freed once a grace period has passed;
        // the exits since then make sure one did.
        let freed = stat(counter::TABLES_FREED) - f0;
        let gps = stat(counter::GRACE_PERIODS);
        test_result_with(
            20,
            "table_freed",
            freed >= 2 && gps >= 1,
            format_args!("{freed} tables freed, {gps} grace periods"),
        );
    }
}
