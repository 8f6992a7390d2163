//! The CP15 registers the shared runtime reads: CPU index, MPIDR and the
//! generic timer.

use core::arch::asm;

/// This vCPU's index, from `TPIDRPRW` (PL1-only thread id, set at entry).
#[inline]
pub(crate) fn cpu_index() -> usize {
    let v: u32;
    // SAFETY: reading TPIDRPRW has no side effects.
    unsafe {
        asm!("mrc p15, 0, {}, c13, c0, 4", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    v as usize
}

/// `MPIDR`.
pub(crate) fn mpidr() -> u64 {
    let v: u32;
    // SAFETY: reading MPIDR has no side effects.
    unsafe {
        asm!("mrc p15, 0, {}, c0, c0, 5", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    u64::from(v)
}

/// `CNTPCT`, the physical counter (after an `isb`, so earlier instructions
/// are done). The hypervisor lets PL1 read it.
#[inline]
pub(crate) fn counter() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading the physical counter has no side effects.
    unsafe {
        asm!("isb", "mrrc p15, 0, {lo}, {hi}, c14", lo = out(reg) lo, hi = out(reg) hi,
             options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `CNTFRQ`: counter ticks per second.
pub(crate) fn frequency() -> u64 {
    let v: u32;
    // SAFETY: reading the counter frequency has no side effects.
    unsafe {
        asm!("mrc p15, 0, {}, c14, c0, 0", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    u64::from(v)
}
