//! `isolation`: no data crosses between VMs (run with `vms=2`: every VM
//! runs this image).
//!
//! Three rounds over 8 MiB from `0x4100_0000`: check every page reads as
//! zero when first touched (a frame reused from the other VM, or from this
//! one's previous round, must have been zeroed), fill it with a pattern
//! unique to this boot (seeded from the counter and printed as the VM's
//! identity), verify the whole range after a pause (a frame shared with
//! the concurrently running other VM would be overwritten by its pattern),
//! then `HYP_UNMAP` the range so its frames go back to the allocator and
//! the next round, or the other VM, gets them.
//!
//! Checks (over all rounds): 1 `fresh_zero`, 2 `own_data`, 3 `unmap`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("isolation: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::{PAGE_SIZE, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern, Mismatch};
    use guest::rt::{check_mem, hyp_unmap, test_result_with, timer};

    guest::guest_main!("isolation", 900, main);

    const SIZE: u64 = 8 << 20;
    const ROUNDS: u64 = 3;

    /// Waits about `us` microseconds.
    fn pause(us: u64) {
        let ticks = timer::frequency() / 1_000_000 * us;
        let t0 = timer::counter();
        while timer::counter().wrapping_sub(t0) < ticks {
            core::hint::spin_loop();
        }
    }

    fn main(_dtb: u64) {
        let seed = pattern(timer::counter(), guest::rt::smp::mpidr());
        println!("isolation: identity (this boot's seed) {seed:#018x}");
        let mut zero: Result<(), Mismatch> = Ok(());
        let mut data: Result<(), Mismatch> = Ok(());
        let mut unmapped = true;
        for round in 0..ROUNDS {
            let s = seed ^ round;
            let mut page = TEST_REGION;
            while page < TEST_REGION + SIZE {
                if let Err(m) = mem::verify_zero(page, PAGE_SIZE) {
                    zero = zero.and(Err(m));
                }
                mem::fill(page, PAGE_SIZE, |a| pattern(s, a));
                page += PAGE_SIZE;
            }
            pause(20_000);
            if let Err(m) = mem::verify(TEST_REGION, SIZE, |a| pattern(s, a)) {
                data = data.and(Err(m));
            }
            // SAFETY: test memory, which Rust code never uses.
            let r = unsafe { hyp_unmap(TEST_REGION, SIZE) };
            if r != 0 {
                println!("isolation: round {round}: HYP_UNMAP returned {r}");
                unmapped = false;
            }
            println!(
                "isolation: round {round} done: zero {}, data {}",
                if zero.is_ok() { "ok" } else { "BAD" },
                if data.is_ok() { "ok" } else { "BAD" }
            );
        }
        check_mem(1, "fresh_zero", zero);
        check_mem(2, "own_data", data);
        test_result_with(3, "unmap", unmapped, format_args!("{ROUNDS} rounds"));
    }
}
