//! The EL1 system registers the shared runtime reads: CPU index, MPIDR and
//! the generic timer.

use core::arch::asm;

/// This vCPU's index, from `TPIDR_EL1` (set at entry).
#[inline]
pub(crate) fn cpu_index() -> usize {
    let v: u64;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v as usize
}

/// `MPIDR_EL1`.
pub(crate) fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// `CNTVCT_EL0` (after an `isb`, so earlier instructions are done).
#[inline]
pub(crate) fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the virtual counter has no side effects (EL1 access
    // is always allowed).
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// `CNTFRQ_EL0`: counter ticks per second.
pub(crate) fn frequency() -> u64 {
    let v: u64;
    // SAFETY: reading the counter frequency has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
