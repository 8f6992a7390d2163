//! `protect`: `HYP_PROTECT` and write faults on read-only pages (dirty
//! logging).
//!
//! Writes a page, makes it read-only with `HYP_PROTECT(page, 4096, R|X)`,
//! reads it (no fault), then writes it again: the write must complete (the
//! hypervisor counts a permission fault and makes the page writable) and
//! the data must be right. Then the same over a 4-page range, and a
//! read-only page made writable again with `R|W` must take no fault.
//!
//! Checks: 1 `policy_pages`, 2 `protect` (returns 0), 3 `read_no_fault`,
//! 4 `perm_fault` (permission faults grew by exactly 1), 5
//! `writable_again` (more writes to the page: no fault), 6 `data`, 7
//! `range` (one permission fault per page of a 4-page range), 8
//! `unprotect` (R then R|W: writing takes no fault), 9 `bad_args`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("protect: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::SMCCC_INVALID_PARAMETER as EINVAL;
    use guest::abi::{counter, PAGE_SIZE, PERM_R, PERM_W, PERM_X, POLICY_PAGES, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{check_eq, check_mem, hyp_protect, hyp_set_policy, platform, stat};
    use guest::rt::{test_result, test_result_with};

    guest::guest_main!("protect", 600, main);

    const SEED_A: u64 = 0x0a0a_0000_0000_0006;
    const SEED_C: u64 = 0x0c0c_0000_0000_0006;
    const B: u64 = 0xbbbb_6666_bbbb_6666;

    fn perm_faults() -> u64 {
        stat(counter::PERMISSION_FAULTS)
    }

    fn main(_dtb: u64) {
        check_eq(1, "policy_pages", hyp_set_policy(POLICY_PAGES), 0);
        let page = TEST_REGION;
        println!("protect: page {page:#x}: write, HYP_PROTECT(R|X), read, write");
        mem::fill(page, 8 * PAGE_SIZE, |a| pattern(SEED_A, a));

        check_eq(2, "protect", hyp_protect(page, PAGE_SIZE, PERM_R | PERM_X), 0);
        let p0 = perm_faults();
        let read = mem::verify(page, PAGE_SIZE, |a| pattern(SEED_A, a));
        let p1 = perm_faults();
        test_result_with(
            3,
            "read_no_fault",
            read.is_ok() && p1 == p0,
            format_args!("{} permission faults, contents {read:x?}", p1.wrapping_sub(p0)),
        );

        mem::write64(page, B);
        let p2 = perm_faults();
        check_eq(4, "perm_fault", p2.wrapping_sub(p1), 1);

        mem::fill(page + 8, PAGE_SIZE - 8, |a| pattern(SEED_C, a));
        let p3 = perm_faults();
        check_eq(5, "writable_again", p3.wrapping_sub(p2), 0);
        let data = mem::verify(page, PAGE_SIZE, |a| if a == page { B } else { pattern(SEED_C, a) });
        check_mem(6, "data", data);

        let range = page + PAGE_SIZE;
        let r = hyp_protect(range, 4 * PAGE_SIZE, PERM_R);
        let p4 = perm_faults();
        for i in 0..4 {
            mem::write64(range + i * PAGE_SIZE + 8 * i, B);
        }
        let p5 = perm_faults();
        let data = mem::verify(range, 4 * PAGE_SIZE, |a| {
            let off = a - range;
            if off % PAGE_SIZE == 8 * (off / PAGE_SIZE) {
                B
            } else {
                pattern(SEED_A, a)
            }
        });
        test_result_with(
            7,
            "range",
            r == 0 && p5.wrapping_sub(p4) == 4 && data.is_ok(),
            format_args!(
                "HYP_PROTECT = {r}, {} permission faults for 4 pages, contents {data:x?}",
                p5.wrapping_sub(p4)
            ),
        );

        let rw = page + 5 * PAGE_SIZE;
        let r1 = hyp_protect(rw, PAGE_SIZE, PERM_R);
        let r2 = hyp_protect(rw, PAGE_SIZE, PERM_R | PERM_W);
        let p6 = perm_faults();
        mem::write64(rw, B);
        let p7 = perm_faults();
        test_result_with(
            8,
            "unprotect",
            r1 == 0 && r2 == 0 && p7 == p6 && mem::read64(rw) == B,
            format_args!("HYP_PROTECT = {r1}, {r2}; {} permission faults", p7.wrapping_sub(p6)),
        );

        let end = platform::ram_end();
        let mut ok = true;
        for (ipa, size) in
            [(page + 8, PAGE_SIZE), (page, 0), (end, PAGE_SIZE), (end - PAGE_SIZE, 2 * PAGE_SIZE)]
        {
            let r = hyp_protect(ipa, size, PERM_R);
            if r != EINVAL {
                println!("protect: HYP_PROTECT({ipa:#x}, {size:#x}, R) = {r}, want {EINVAL}");
                ok = false;
            }
        }
        test_result(9, "bad_args", ok);
    }
}
