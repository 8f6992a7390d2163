//! `blocks`: the 2 MiB block policy.
//!
//! `HYP_SET_POLICY(1)`, then one write at each 2 MiB-aligned address of
//! 16 MiB from `0x4100_0000`: every write must fault in a whole zeroed
//! block. Then every page of the 16 MiB is written and verified without a
//! further fault.
//!
//! Checks: 1 `policy_blocks`, 2 `blocks_mapped` (= 8), 3 `faults` (= 8),
//! 4 `zero_fill` (the rest of each block reads zero), 5 `no_page_faults`
//! (writing all 4096 pages adds no fault), 6 `data`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("blocks: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::{counter, BLOCK_SIZE, POLICY_BLOCKS, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern, Mismatch};
    use guest::rt::{check_eq, check_mem, hyp_set_policy, Stats};

    guest::guest_main!("blocks", 300, main);

    const SIZE: u64 = 16 << 20;
    const SEED: u64 = 0xb10c_0000_0000_0003;

    fn main(_dtb: u64) {
        check_eq(1, "policy_blocks", hyp_set_policy(POLICY_BLOCKS), 0);
        let blocks = SIZE / BLOCK_SIZE;
        println!("blocks: one write per 2 MiB over {} MiB at {TEST_REGION:#x}", SIZE >> 20);

        let s0 = Stats::read();
        let mut a = TEST_REGION;
        while a < TEST_REGION + SIZE {
            mem::write64(a, pattern(SEED, a));
            a += BLOCK_SIZE;
        }
        let s1 = Stats::read();
        let d = s1.delta(&s0);
        check_eq(2, "blocks_mapped", d.get(counter::BLOCKS_MAPPED), blocks);
        check_eq(3, "faults", d.get(counter::FAULTS), blocks);
        d.print("blocks: counters for the 8 writes");

        let mut zero: Result<(), Mismatch> = Ok(());
        let mut b = TEST_REGION;
        while b < TEST_REGION + SIZE {
            if let Err(m) = mem::verify_zero(b + 8, BLOCK_SIZE - 8) {
                zero = zero.and(Err(m));
            }
            b += BLOCK_SIZE;
        }
        let s2 = Stats::read();
        mem::fill(TEST_REGION, SIZE, |a| pattern(SEED, a));
        let data = mem::verify(TEST_REGION, SIZE, |a| pattern(SEED, a));
        let s3 = Stats::read();
        check_mem(4, "zero_fill", zero);
        check_eq(
            5,
            "no_page_faults",
            s3.get(counter::FAULTS).wrapping_sub(s2.get(counter::FAULTS)),
            0,
        );
        check_mem(6, "data", data);
        s3.delta(&s0).print("blocks: counters for the whole test");
    }
}
