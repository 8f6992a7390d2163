//! Barriers: AArch64 and ARMv7 spell DSB, DMB and ISB (with their
//! shareability options) the same way.

use core::arch::asm;

/// `DSB ISHST`: preceding stores are complete for the Inner Shareable
/// domain (including table walkers).
#[inline]
pub fn dsb_ishst() {
    // SAFETY: a barrier only orders memory accesses.
    unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
}

/// `DSB ISH`: preceding memory accesses and maintenance are complete.
#[inline]
pub fn dsb_ish() {
    // SAFETY: a barrier only orders memory accesses.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// `DSB SY`.
#[inline]
pub fn dsb_sy() {
    // SAFETY: a barrier only orders memory accesses.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// `ISB`: context synchronization.
#[inline]
pub fn isb() {
    // SAFETY: a barrier only synchronizes the instruction stream.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}
