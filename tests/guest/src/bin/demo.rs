//! `demo`: the default demo guest (embedded in the hypervisor).
//!
//! Touches 16 MiB from `0x4100_0000` page by page, writing a pattern to
//! every word of a page and verifying it before moving on, then verifies
//! the whole range again (no two pages share a frame) and prints the
//! `HYP_STAT` counters (faults, pages and blocks mapped, tables allocated).
//! Works with either fault policy (it does not set one).
//!
//! Checks: 1 `version` (`HYP_VERSION` = 0x1_0000), 2 `touch` (every page
//! reads back right after it is written), 3 `reverify` (the whole range
//! after all of it is written), 4 `faults` (between 1 and one per page).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("demo: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::{counter, hyp, PAGE_SIZE, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{check_eq, check_mem, hyp_version, test_result_with, timer, Stats};

    guest::guest_main!("demo", 100, main);

    const SIZE: u64 = 16 << 20;
    const SEED: u64 = 0xde30_0000_0000_0001;

    fn main(_dtb: u64) {
        println!("demo: hello from the demo guest");
        check_eq(1, "version", hyp_version(), hyp::VERSION_1_0 as i64);

        println!("demo: touching {} MiB at {TEST_REGION:#x} page by page", SIZE >> 20);
        let before = Stats::read();
        let t0 = timer::counter();
        let mut touch = Ok(());
        let mut page = TEST_REGION;
        while page < TEST_REGION + SIZE {
            mem::fill(page, PAGE_SIZE, |a| pattern(SEED, a));
            touch = mem::verify(page, PAGE_SIZE, |a| pattern(SEED, a));
            if touch.is_err() {
                break;
            }
            page += PAGE_SIZE;
        }
        let t1 = timer::counter();
        let after = Stats::read();
        check_mem(2, "touch", touch);
        check_mem(3, "reverify", mem::verify(TEST_REGION, SIZE, |a| pattern(SEED, a)));

        let d = after.delta(&before);
        let pages = SIZE / PAGE_SIZE;
        let faults = d.get(counter::FAULTS);
        test_result_with(
            4,
            "faults",
            (1..=pages).contains(&faults),
            format_args!("{faults} stage-2 faults for {pages} pages"),
        );
        println!(
            "demo: {pages} pages in {} us: faults {faults}, pages mapped {}, blocks mapped {}, \
             tables allocated {}",
            timer::ticks_to_ns(t1 - t0) / 1000,
            d.get(counter::PAGES_MAPPED),
            d.get(counter::BLOCKS_MAPPED),
            d.get(counter::TABLES_ALLOCATED),
        );
        d.print("demo: counters for the touch");
        Stats::read().print("demo: counters since boot");
    }
}
