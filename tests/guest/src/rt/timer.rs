//! The generic timer's virtual counter, for timing the fault path.

use core::arch::asm;

/// `CNTVCT_EL0` (after an `isb`, so earlier instructions are done).
#[inline]
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the virtual counter has no side effects (EL1 access
    // is always allowed).
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// `CNTFRQ_EL0`: counter ticks per second.
pub fn frequency() -> u64 {
    let v: u64;
    // SAFETY: reading the counter frequency has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Counter ticks to nanoseconds (0 if the frequency is unknown).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    match frequency() {
        0 => 0,
        f => (u128::from(ticks) * 1_000_000_000 / u128::from(f)) as u64,
    }
}
