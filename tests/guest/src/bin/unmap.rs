//! `unmap`: `HYP_UNMAP` and the TLB invalidation behind it.
//!
//! Writes a pattern to 16 pages (and reads it back, so the translations
//! are in the TLB), unmaps them with `HYP_UNMAP`, then reads them: each
//! must fault in a fresh zeroed page (a stale TLB entry would still show
//! the pattern).
//!
//! Checks: 1 `policy_pages`, 2 `data_before`, 3 `unmap` (returns 0), 4
//! `zero_after` (all 16 pages read zero), 5 `refaults` (faults grew by
//! exactly 16), 6 `tlbi` (at least one TLB invalidation counted), 7
//! `data_after` (the new pages hold new data), 8 `bad_args` (unaligned,
//! zero-sized and out-of-RAM ranges are rejected with INVALID_PARAMETER;
//! the range outside RAM starts at `OUTSIDE_IPA`, which is `0xF000_0000`
//! on ARM32, where hypercall arguments are 32-bit).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("unmap: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::SMCCC_INVALID_PARAMETER as EINVAL;
    use guest::abi::{counter, OUTSIDE_IPA, PAGE_SIZE, POLICY_PAGES, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{check_eq, check_mem, hyp_set_policy, hyp_unmap, platform, Stats};
    use guest::rt::{test_result, test_result_with};

    guest::guest_main!("unmap", 400, main);

    const PAGES: u64 = 16;
    const SIZE: u64 = PAGES * PAGE_SIZE;
    const SEED_A: u64 = 0x0a0a_0000_0000_0004;
    const SEED_B: u64 = 0x0b0b_0000_0000_0004;

    fn main(_dtb: u64) {
        check_eq(1, "policy_pages", hyp_set_policy(POLICY_PAGES), 0);
        let base = TEST_REGION;
        println!("unmap: {PAGES} pages at {base:#x}: write, read, HYP_UNMAP, read");
        mem::fill(base, SIZE, |a| pattern(SEED_A, a));
        check_mem(2, "data_before", mem::verify(base, SIZE, |a| pattern(SEED_A, a)));

        let s0 = Stats::read();
        // SAFETY: the range is test memory, which Rust code never uses.
        let r = unsafe { hyp_unmap(base, SIZE) };
        let zero = mem::verify_zero(base, SIZE);
        let s1 = Stats::read();
        // Printed only now: console output could count as faults.
        check_eq(3, "unmap", r, 0);
        check_mem(4, "zero_after", zero);
        let d = s1.delta(&s0);
        check_eq(5, "refaults", d.get(counter::FAULTS), PAGES);
        let tlbi =
            d.get(counter::TLBI_IPA) + d.get(counter::TLBI_RANGE) + d.get(counter::TLBI_VMID);
        test_result_with(6, "tlbi", tlbi >= 1, format_args!("{tlbi} TLB invalidations"));
        d.print("unmap: counters for unmap + re-read");

        mem::fill(base, SIZE, |a| pattern(SEED_B, a));
        check_mem(7, "data_after", mem::verify(base, SIZE, |a| pattern(SEED_B, a)));

        let end = platform::ram_end();
        let bad: [(u64, u64); 5] = [
            (base + 8, PAGE_SIZE),
            (base, 0),
            (end, PAGE_SIZE),
            (end - PAGE_SIZE, 2 * PAGE_SIZE),
            (OUTSIDE_IPA, PAGE_SIZE),
        ];
        let mut ok = true;
        for (ipa, size) in bad {
            // SAFETY: every range is invalid; if the hypervisor accepted
            // one anyway, it lies in test memory or outside RAM.
            let r = unsafe { hyp_unmap(ipa, size) };
            if r != EINVAL {
                println!("unmap: HYP_UNMAP({ipa:#x}, {size:#x}) = {r}, want {EINVAL}");
                ok = false;
            }
        }
        test_result(8, "bad_args", ok);
    }
}
