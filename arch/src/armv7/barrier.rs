//! Barriers (ARMv7 has the same DSB/DMB/ISB options as AArch64).

use core::arch::asm;

/// `DSB ISHST`: preceding stores (table entries) complete, Inner Shareable.
#[inline]
pub fn dsb_ishst() {
    // SAFETY: a barrier has no effect besides ordering.
    unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
}

/// `DSB ISH`: preceding memory accesses and maintenance complete.
#[inline]
pub fn dsb_ish() {
    // SAFETY: a barrier has no effect besides ordering.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// `DSB SY`.
#[inline]
pub fn dsb_sy() {
    // SAFETY: a barrier has no effect besides ordering.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// `ISB`: later instructions see the effect of preceding register writes.
#[inline]
pub fn isb() {
    // SAFETY: a barrier has no effect besides ordering.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}
