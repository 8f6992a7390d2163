//! `outside`: accesses to IPAs with neither RAM nor a device.
//!
//! The hypervisor must inject a synchronous external abort, which the
//! runtime's vectors catch (DFSC 0x10, FAR recorded, the access skipped).
//! RAM end comes from the DTB's `/memory` node, or is the contract's
//! default `0x4000_0000 + 128 MiB` when the DTB has none.
//!
//! Checks: 1 `outside_read` (read of `OUTSIDE_IPA`, `0x1_0000_0000`,
//! aborts, FAR = the address), 2 `outside_write`, 3 `ram_end_read` (the
//! first IPA past RAM),
//! 4 `ram_end_write` (a page further), 5 `device_hole` (`0x0a00_0000`: no
//! device in the guest), 6 `last_ram_word` (the last word of RAM is RAM:
//! no abort, reads zero), 7 `aborts_counted` (`HYP_STAT` external aborts
//! injected grew by exactly 5), 8 `still_running` (normal memory still
//! works after the aborts).
//!
//! ARM32: 32-bit VAs cannot reach `0x1_0000_0000`, so checks 1 and 2 probe
//! `abi::OUTSIDE_IPA_ARM` (`0xF000_0000`), the ARM32 value of
//! `OUTSIDE_IPA`: also above any RAM the tests configure, but mapped Normal
//! (the runtime's stage 1 maps 1-4 GiB Normal) where AArch64 maps it
//! Device. The probes are one `ldrd`/`strd` there (one `ldr`/`str` of a
//! 64-bit register on AArch64).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("outside: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::{counter, OUTSIDE_IPA, PAGE_SIZE, TEST_REGION};
    use guest::println;
    use guest::rt::exception::{probe_read, probe_write, Sea};
    use guest::rt::{check_eq, mem, platform, stat, test_result_with};

    guest::guest_main!("outside", 700, main);

    /// Inside the 0-1 GiB device window, but no device there in the guest.
    const DEVICE_HOLE: u64 = 0x0a00_0000;

    fn aborted(r: Result<(), Sea>, addr: u64) -> bool {
        matches!(r, Err(Sea { far, .. }) if far.is_none_or(|f| f == addr))
    }

    fn check_abort(check: u64, name: &str, addr: u64, r: Result<(), Sea>) {
        test_result_with(
            check,
            name,
            aborted(r, addr),
            format_args!("access to {addr:#x}: {r:x?}"),
        );
    }

    fn main(_dtb: u64) {
        let end = platform::ram_end();
        println!(
            "outside: RAM {:#x}-{end:#x} ({}); probing {OUTSIDE_IPA:#x}, {end:#x}, {DEVICE_HOLE:#x}",
            platform::ram_start(),
            if platform::ram_from_dtb() { "from the DTB" } else { "default 128 MiB" },
        );
        let a0 = stat(counter::ABORTS_INJECTED);

        // SAFETY: (for all the probes below) the addresses are in the runtime's stage-1
        // map (Device 0-1 GiB and, on AArch64, 4-8 GiB; Normal 1-4 GiB) and
        // are neither RAM nor a device of the guest, so nothing Rust uses
        // changes.
        let r = unsafe { probe_read(OUTSIDE_IPA) }.map(|_| ());
        check_abort(1, "outside_read", OUTSIDE_IPA, r);
        // SAFETY: as above.
        let r = unsafe { probe_write(OUTSIDE_IPA, 0x5a5a) };
        check_abort(2, "outside_write", OUTSIDE_IPA, r);
        // SAFETY: as above.
        let r = unsafe { probe_read(end) }.map(|_| ());
        check_abort(3, "ram_end_read", end, r);
        // SAFETY: as above.
        let r = unsafe { probe_write(end + PAGE_SIZE, 0x5a5a) };
        check_abort(4, "ram_end_write", end + PAGE_SIZE, r);
        // SAFETY: as above.
        let r = unsafe { probe_read(DEVICE_HOLE) }.map(|_| ());
        check_abort(5, "device_hole", DEVICE_HOLE, r);

        // SAFETY: the last word of RAM is test memory (above the image).
        let last = unsafe { probe_read(end - 8) };
        test_result_with(
            6,
            "last_ram_word",
            last == Ok(0),
            format_args!("read {:#x}: {last:x?}", end - 8),
        );
        let a1 = stat(counter::ABORTS_INJECTED);
        check_eq(7, "aborts_counted", a1.wrapping_sub(a0), 5);

        mem::write64(TEST_REGION, 0x1234);
        test_result_with(
            8,
            "still_running",
            mem::read64(TEST_REGION) == 0x1234,
            format_args!("runtime handled {} aborts", guest::rt::exception::sea_count()),
        );
    }
}
