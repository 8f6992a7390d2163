//! `huge`: a 1 GiB block split into 2 MiB blocks and collapsed back.
//!
//! Run with `mem=2G` (QEMU `-m 4G`): guest RAM then holds the gigabyte at
//! IPA 0x8000_0000. Under the 1 GiB policy the first touch maps it as one
//! block; `HYP_SPLIT` at level 1 makes it a table of 512 2 MiB blocks,
//! `HYP_COLLAPSE` at level 1 folds them back in place (they are contiguous
//! and aligned), with the data intact throughout.
//!
//! Checks: 1 `policy_huge`, 2 `one_block` (one fault, one block), 3
//! `split`, 4 `data_after_split`, 5 `collapse`, 6 `data_after_collapse`,
//! 7 `counters` (splits +1, collapses +1).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("huge: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::{counter, hyp, POLICY_HUGE};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{check_eq, hvc, hyp_set_policy, platform, stat, test_result_with};

    guest::guest_main!("huge", 1400, main);

    const GIB: u64 = 1 << 30;
    const BASE: u64 = 0x8000_0000;
    const STEP: u64 = 64 << 20;
    const SEED: u64 = 0x1616_0000_0000_0014;

    fn check_data(check: u64, name: &str) {
        let bad = (0..GIB / STEP).filter(|i| {
            let a = BASE + i * STEP + 8 * i;
            mem::read64(a) != pattern(SEED, a)
        });
        let n = bad.count();
        test_result_with(check, name, n == 0, format_args!("{n} bad words"));
    }

    fn main(_dtb: u64) {
        if platform::ram_end() < BASE + GIB {
            println!("huge: needs mem=2G (RAM ends at {:#x})", platform::ram_end());
        }
        check_eq(1, "policy_huge", hyp_set_policy(POLICY_HUGE), 0);
        let (f0, b0) = (stat(counter::FAULTS), stat(counter::BLOCKS_MAPPED));
        let (s0, c0) = (stat(counter::SPLITS), stat(counter::COLLAPSES));
        for i in 0..GIB / STEP {
            let a = BASE + i * STEP + 8 * i;
            mem::write64(a, pattern(SEED, a));
        }
        let (f1, b1) = (stat(counter::FAULTS), stat(counter::BLOCKS_MAPPED));
        test_result_with(
            2,
            "one_block",
            f1 - f0 == 1 && b1 - b0 == 1,
            format_args!("{} faults, {} blocks", f1 - f0, b1 - b0),
        );
        // SAFETY: test memory; splitting keeps the contents.
        let r = unsafe { hvc(hyp::HYP_SPLIT, BASE, 1, 0, 0, 0) }.0 as i64;
        check_eq(3, "split", r, 0);
        check_data(4, "data_after_split");
        // SAFETY: as above; collapsing keeps the contents.
        let r = unsafe { hvc(hyp::HYP_COLLAPSE, BASE, 1, 0, 0, 0) }.0 as i64;
        check_eq(5, "collapse", r, 0);
        check_data(6, "data_after_collapse");
        let (s1, c1) = (stat(counter::SPLITS), stat(counter::COLLAPSES));
        test_result_with(
            7,
            "counters",
            s1 - s0 == 1 && c1 - c0 == 1,
            format_args!("splits +{}, collapses +{}", s1 - s0, c1 - c0),
        );
    }
}
