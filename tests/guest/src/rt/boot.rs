//! The per-vCPU stacks and the Rust side of the entry points.
//!
//! The entry assembly (`arch::boot`) takes a vCPU from reset state to Rust:
//! vectors, stage-1 MMU and caches, `.bss` zeroed (primary only), its stack
//! from [`stack_bounds`], its CPU index in a system register
//! ([`cpu_index`](crate::rt::smp::cpu_index)); then [`primary_main`] or
//! `smp::secondary_main`.

use core::cell::UnsafeCell;

use crate::abi::MAX_CPUS;

/// Stack size per vCPU.
pub const STACK_SIZE: usize = 32 * 1024;

/// The per-vCPU stacks, in `.bss` (zeroed, hence faulted in, by the primary
/// before `main`, so stack growth never adds stage-2 faults to a test).
#[repr(C, align(16))]
pub(crate) struct Stacks(UnsafeCell<[[u8; STACK_SIZE]; MAX_CPUS]>);

// SAFETY: only the assembly entry code touches the stacks (each vCPU takes
// its own slot as SP); Rust never creates references into them.
unsafe impl Sync for Stacks {}

pub(crate) static STACKS: Stacks = Stacks(UnsafeCell::new([[0; STACK_SIZE]; MAX_CPUS]));

/// Lowest and one-past-highest address of vCPU `cpu`'s stack.
pub fn stack_bounds(cpu: usize) -> (u64, u64) {
    let base = STACKS.0.get() as u64 + (cpu * STACK_SIZE) as u64;
    (base, base + STACK_SIZE as u64)
}

unsafe extern "C" {
    /// The PSCI `CPU_ON` entry point of secondary vCPUs (context id = CPU
    /// index), in `arch::boot`.
    pub(crate) fn __rt_secondary_entry() -> !;
}

/// The primary vCPU once MMU, caches, stack and vectors are up: probes for
/// the hypervisor, reads the DTB at `dtb`, runs the image's `main` and
/// powers off.
pub(crate) fn primary_main(dtb: u64) -> ! {
    super::hvc::detect();
    super::platform::init(dtb);
    let image = super::image();
    super::test::start(image);
    (image.main)(dtb);
    super::test::finish()
}
