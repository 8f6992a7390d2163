//! `dirty`: a split under dirty logging.
//!
//! Maps a 2 MiB block (block policy), write-protects it, then writes three
//! distinct pages (one of them twice). The first write to each page faults;
//! the hypervisor splits the block once and makes only the written page
//! writable again. The dirty pages are reported exactly.
//!
//! Checks: 1 `policy_blocks`, 2 `one_block`, 3 `protect`, 4 `clean`,
//! 5 `perm_faults` (3), 6 `one_split`, 7 `dirty_count` (3), 8 `data`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("dirty: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::{counter, PAGE_SIZE, PERM_R, PERM_X, POLICY_BLOCKS, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{check_eq, check_mem, hyp_dirty_count, hyp_protect, hyp_set_policy, stat};

    guest::guest_main!("dirty", 1200, main);

    const SEED: u64 = 0xd1d1_0000_0000_0012;
    const BLOCK: u64 = 2 << 20;
    const WRITTEN: [u64; 4] = [3, 100, 100, 511];

    fn main(_dtb: u64) {
        let region = TEST_REGION;
        check_eq(1, "policy_blocks", hyp_set_policy(POLICY_BLOCKS), 0);
        let b0 = stat(counter::BLOCKS_MAPPED);
        mem::fill(region, BLOCK, |a| pattern(SEED, a));
        check_eq(2, "one_block", stat(counter::BLOCKS_MAPPED) - b0, 1);

        check_eq(3, "protect", hyp_protect(region, BLOCK, PERM_R | PERM_X), 0);
        check_eq(4, "clean", hyp_dirty_count(region, BLOCK), 0);
        let (p0, s0) = (stat(counter::PERMISSION_FAULTS), stat(counter::SPLITS));
        for &page in &WRITTEN {
            let a = region + page * PAGE_SIZE;
            mem::write64(a, !pattern(SEED, a));
        }
        let (p1, s1) = (stat(counter::PERMISSION_FAULTS), stat(counter::SPLITS));
        println!("dirty: wrote pages {WRITTEN:?} of the write-protected block");
        check_eq(5, "perm_faults", p1 - p0, 3);
        check_eq(6, "one_split", s1 - s0, 1);
        check_eq(7, "dirty_count", hyp_dirty_count(region, BLOCK), 3);
        let written = |a: u64| WRITTEN.iter().any(|&p| a == region + p * PAGE_SIZE);
        check_mem(
            8,
            "data",
            mem::verify(region, BLOCK, |a| {
                if written(a) {
                    !pattern(SEED, a)
                } else {
                    pattern(SEED, a)
                }
            }),
        );
    }
}
