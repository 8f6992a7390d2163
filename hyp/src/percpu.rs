//! Per-CPU data.

use core::cell::UnsafeCell;

use crate::boot::MAX_CPUS;
use crate::exception::HostContext;

/// This CPU's index: `MPIDR_EL1.Aff0` (CPUs of QEMU `virt` up to 8, and of
/// the Raspberry Pi boards, are numbered 0..n there).
#[inline]
pub fn cpu_index() -> usize {
    (arch::read_sysreg!("mpidr_el1") & 0xff) as usize
}

/// What each CPU owns.
pub struct PerCpu {
    host: UnsafeCell<HostContext>,
}

// SAFETY: each CPU touches only its own entry (indexed by `cpu_index`).
unsafe impl Sync for PerCpu {}

static PERCPU: [PerCpu; MAX_CPUS] =
    [const { PerCpu { host: UnsafeCell::new(HostContext::new()) } }; MAX_CPUS];

/// This CPU's host context for guest entry.
pub fn host_context() -> *mut HostContext {
    PERCPU[cpu_index() % MAX_CPUS].host.get()
}
