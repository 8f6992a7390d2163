//! `remap`: `HYP_REMAP` and stale translations.
//!
//! Writes pattern A to a page and reads it (its translation is now in the
//! TLB), `HYP_REMAP`s it with pattern B and reads it: every word must be B
//! (a stale TLB entry would still show A). Then writes C and reads C,
//! remaps again with D, and checks the neighbouring page kept its data.
//!
//! Checks: 1 `policy_pages`, 2 `data_a`, 3 `remap` (returns 0), 4
//! `sees_b`, 5 `no_fault` (the remapped page is mapped: reading it does not
//! fault), 6 `data_c`, 7 `remap_again` (D seen), 8 `neighbour` (the next
//! page still holds A), 9 `bad_args` (unaligned and out-of-RAM IPAs are
//! rejected with INVALID_PARAMETER).
//!
//! On ARM32 the fill patterns are 32-bit (the call passes one 32-bit
//! register, which the hypervisor zero-extends: `rt::remap_fill`), and the
//! IPA outside RAM is `abi::OUTSIDE_IPA_ARM`, below 4 GiB.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("remap: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::SMCCC_INVALID_PARAMETER as EINVAL;
    use guest::abi::{counter, OUTSIDE_IPA, PAGE_SIZE, POLICY_PAGES, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{check_eq, check_mem, hyp_remap, hyp_set_policy, platform, remap_fill, stat};
    use guest::rt::{test_result, test_result_with};

    guest::guest_main!("remap", 500, main);

    const SEED_A: u64 = 0x0a0a_0000_0000_0005;
    const SEED_C: u64 = 0x0c0c_0000_0000_0005;
    // Fill patterns as the remapped words hold them (ARM32: the low 32 bits).
    const B: u64 = remap_fill(0xbbbb_5555_bbbb_5555);
    const D: u64 = remap_fill(0xdddd_0005_dddd_0005);

    fn main(_dtb: u64) {
        check_eq(1, "policy_pages", hyp_set_policy(POLICY_PAGES), 0);
        let page = TEST_REGION;
        let next = page + PAGE_SIZE;
        println!("remap: page {page:#x}: write A, read A, HYP_REMAP(B), read B, write C, read C");
        mem::fill(page, 2 * PAGE_SIZE, |a| pattern(SEED_A, a));
        check_mem(2, "data_a", mem::verify(page, 2 * PAGE_SIZE, |a| pattern(SEED_A, a)));

        let f0 = stat(counter::FAULTS);
        // SAFETY: test memory, which Rust code never uses.
        let r = unsafe { hyp_remap(page, B) };
        let b = mem::verify(page, PAGE_SIZE, |_| B);
        let f1 = stat(counter::FAULTS);
        // Printed only now: console output could count as faults.
        check_eq(3, "remap", r, 0);
        check_mem(4, "sees_b", b);
        check_eq(5, "no_fault", f1.wrapping_sub(f0), 0);

        mem::fill(page, PAGE_SIZE, |a| pattern(SEED_C, a));
        check_mem(6, "data_c", mem::verify(page, PAGE_SIZE, |a| pattern(SEED_C, a)));

        // SAFETY: as above.
        let r = unsafe { hyp_remap(page, D) };
        let d = mem::verify(page, PAGE_SIZE, |_| D);
        test_result_with(
            7,
            "remap_again",
            r == 0 && d.is_ok(),
            format_args!("HYP_REMAP = {r}, contents {d:x?}"),
        );
        check_mem(8, "neighbour", mem::verify(next, PAGE_SIZE, |a| pattern(SEED_A, a)));

        let end = platform::ram_end();
        let mut ok = true;
        for ipa in [page + 8, page + 0x800, end, OUTSIDE_IPA] {
            // SAFETY: every IPA is invalid; were one accepted it would be
            // test memory or outside RAM.
            let r = unsafe { hyp_remap(ipa, B) };
            if r != EINVAL {
                println!("remap: HYP_REMAP({ipa:#x}) = {r}, want {EINVAL}");
                ok = false;
            }
        }
        test_result(9, "bad_args", ok);
    }
}
