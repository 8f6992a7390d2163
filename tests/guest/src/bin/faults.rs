//! `faults`: demand faults, one exit per 4 KiB page.
//!
//! Sets the page policy, then over 64 MiB of RAM from `0x4100_0000` (above
//! the image) checks each page reads as zero when first touched and writes
//! a pattern unique to each word, then verifies the whole range.
//!
//! Checks: 1 `policy_pages`, 2 `zero_fill` (every fresh page reads zero),
//! 3 `data` (all patterns intact: no page lost or aliased), 4 `faults`
//! (`HYP_STAT` faults grew by exactly the number of pages), 5
//! `pages_mapped` (likewise), 6 `no_refault` (verifying mapped pages adds
//! no fault). Needs `mem=` of at least 80 MiB (the default 128 MiB does).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("faults: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::{counter, PAGE_SIZE, POLICY_PAGES, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern, Mismatch};
    use guest::rt::{check_eq, check_mem, hyp_set_policy, stat, timer, Stats};

    guest::guest_main!("faults", 200, main);

    const SIZE: u64 = 64 << 20;
    const SEED: u64 = 0xfa17_0000_0000_0002;

    fn main(_dtb: u64) {
        check_eq(1, "policy_pages", hyp_set_policy(POLICY_PAGES), 0);
        let pages = SIZE / PAGE_SIZE;
        println!(
            "faults: touching {pages} pages ({} MiB) at {TEST_REGION:#x}: zero check, write, verify",
            SIZE >> 20
        );

        let before = Stats::read();
        let t0 = timer::counter();
        let mut zero: Result<(), Mismatch> = Ok(());
        let mut page = TEST_REGION;
        while page < TEST_REGION + SIZE {
            // The first read faults the page in; it must be zero-filled.
            if let Err(m) = mem::verify_zero(page, PAGE_SIZE) {
                zero = zero.and(Err(m));
            }
            mem::fill(page, PAGE_SIZE, |a| pattern(SEED, a));
            page += PAGE_SIZE;
        }
        let t1 = timer::counter();
        let after = Stats::read();
        let data = mem::verify(TEST_REGION, SIZE, |a| pattern(SEED, a));
        let refaults = stat(counter::FAULTS).wrapping_sub(after.get(counter::FAULTS));

        check_mem(2, "zero_fill", zero);
        check_mem(3, "data", data);
        let d = after.delta(&before);
        check_eq(4, "faults", d.get(counter::FAULTS), pages);
        check_eq(5, "pages_mapped", d.get(counter::PAGES_MAPPED), pages);
        check_eq(6, "no_refault", refaults, 0);
        println!(
            "faults: {pages} pages in {} us ({} ns/page)",
            timer::ticks_to_ns(t1 - t0) / 1000,
            timer::ticks_to_ns(t1 - t0) / pages
        );
        d.print("faults: counters for the touch");
    }
}
