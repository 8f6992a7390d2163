//! `reset`: PSCI `SYSTEM_RESET`.
//!
//! First boot: writes a pattern over 16 pages of test memory, reads it
//! back, and asks for a reset. The hypervisor frees guest RAM, loads the
//! image and DTB again and restarts vCPU 0, adding `resets=1` to the
//! bootargs. Second boot: the pages read as zero (fresh memory, nothing of
//! the first boot left) and the counters the hypervisor keeps across the
//! reset show the first boot's faults.
//!
//! Checks: first boot 1 `data`; second boot 2 `reset_seen`, 3
//! `fresh_memory`, 4 `counters_kept`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("reset: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::{counter, PAGE_SIZE, POLICY_PAGES, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{check_eq, check_mem, hyp_set_policy, platform, psci, stat, test_result_with};

    guest::guest_main!("reset", 1100, main);

    const SEED: u64 = 0x5e5e_7000_0000_0011;
    const PAGES: u64 = 16;

    fn main(_dtb: u64) {
        let resets = platform::bootargs()
            .and_then(|b| b.split_whitespace().find_map(|w| w.strip_prefix("resets=")))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let len = PAGES * PAGE_SIZE;
        if resets == 0 {
            check_eq(5, "policy_pages", hyp_set_policy(POLICY_PAGES), 0);
            mem::fill(TEST_REGION, len, |a| pattern(SEED, a));
            check_mem(1, "data", mem::verify(TEST_REGION, len, |a| pattern(SEED, a)));
            println!(
                "reset: first boot done, {} faults so far: SYSTEM_RESET",
                stat(counter::FAULTS)
            );
            psci::system_reset();
        }
        test_result_with(2, "reset_seen", resets == 1, format_args!("resets={resets}"));
        check_mem(3, "fresh_memory", mem::verify_zero(TEST_REGION, len));
        // The first boot faulted its 16 test pages in; the counters survive.
        let faults = stat(counter::FAULTS);
        test_result_with(
            4,
            "counters_kept",
            faults >= 2 * PAGES,
            format_args!("{faults} faults over both boots"),
        );
    }
}
