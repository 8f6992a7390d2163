//! The runtime of the guest images: EL1 on AArch64, PL1 (SVC mode) on
//! ARM32. The architecture-specific code (entry assembly, stage-1 map,
//! vectors, the `HVC` conduit, system registers) lives in `aarch64/` and
//! `arm/`, behind the same small interface (the private `arch` module);
//! everything else, and the API the images use, is shared.
//!
//! Boot: the first instruction at `0x4020_0000` is the entry (`_start`).
//! The primary vCPU, entered with the MMU off (AArch64: EL1h, `x0` = DTB
//! IPA; ARM32: SVC mode, `r2` = DTB IPA), sets the vector base, turns on
//! the stage-1 MMU with a static identity map (IPA 0-1 GiB Device, 1-4 GiB
//! Normal write-back inner shareable; AArch64 also 4-8 GiB Device) and the
//! caches, zeroes `.bss` (which holds the stacks), takes its stack, then
//! in Rust probes for the hypervisor and PSCI, reads the DTB
//! ([`platform`]) and calls the image's `main` (see
//! [`guest_main!`](crate::guest_main)). When `main` returns the runtime
//! prints a summary and calls PSCI `SYSTEM_OFF` ([`test::finish`]).
//!
//! Secondary vCPUs ([`smp::start_secondaries`]) enter at
//! `__rt_secondary_entry` with their CPU index as PSCI context id, set up
//! the same way (shared page tables), run the given function and `CPU_OFF`.
//!
//! Modules: [`boot`] (stacks, Rust entries), [`console`]
//! (`print!`/`println!`), [`mod@hvc`] (hypercalls), [`psci`],
//! [`exception`] (SEA probes), [`smp`], [`mem`] (volatile test-memory
//! accessors), [`timer`], [`mod@test`] (results), and [`platform`].

#[cfg(target_arch = "aarch64")]
#[path = "aarch64/mod.rs"]
mod arch;
#[cfg(target_arch = "arm")]
#[path = "arm/mod.rs"]
mod arch;

pub mod boot;
pub mod console;
pub mod exception;
pub mod gic;
pub mod hvc;
pub mod mem;
pub mod platform;
pub mod psci;
pub mod smp;
pub mod test;
pub mod timer;

pub use crate::abi::{counter, MAX_CPUS, PAGE_SIZE, TEST_REGION};
pub use hvc::*;
pub use smp::{cpu_index, join_secondaries, start_secondaries, Barrier};
pub use test::{check_eq, check_mem, exit, finish, test_result, test_result_with};

/// What an image gives the runtime: its name (for `TEST <name>/<check>`
/// lines), the base of its `HYP_REPORT` test numbers and its `main`.
/// Defined by [`guest_main!`](crate::guest_main).
pub struct Image {
    /// Image name, e.g. `"faults"`.
    pub name: &'static str,
    /// Check `n` is reported as test number `test_base + n`.
    pub test_base: u64,
    /// The image's main, called on the primary vCPU with the DTB IPA.
    pub main: fn(u64),
}

/// Defines the image's entry for the runtime:
/// `guest_main!("faults", 200, main);` with `fn main(dtb: u64)`.
///
/// The runtime calls `main` on vCPU 0 once the MMU, stacks, console and
/// vectors are up, then prints the summary and powers the VM off
/// ([`test::finish`]).
#[macro_export]
macro_rules! guest_main {
    ($name:literal, $test_base:expr, $main:path) => {
        /// The image descriptor the runtime's entry reads.
        #[unsafe(no_mangle)]
        pub static __GUEST_IMAGE: $crate::rt::Image =
            $crate::rt::Image { name: $name, test_base: $test_base, main: $main };
    };
}

/// The image descriptor defined by the binary.
pub(crate) fn image() -> &'static Image {
    unsafe extern "Rust" {
        static __GUEST_IMAGE: Image;
    }
    // SAFETY: every binary linking the runtime defines `__GUEST_IMAGE`
    // with `guest_main!`, as an immutable static of this type.
    unsafe { &__GUEST_IMAGE }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    test::fatal(format_args!("panic: {info}"))
}
