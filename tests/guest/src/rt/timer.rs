//! The generic timer's counter, for timing the fault path: the virtual
//! counter `CNTVCT_EL0` on AArch64, the physical counter `CNTPCT` on ARM32
//! (the hypervisor gives PL1 access to it).

/// The counter, read after an `isb` (so earlier instructions are done).
#[inline]
pub fn counter() -> u64 {
    super::arch::sysreg::counter()
}

/// The counter frequency (`CNTFRQ`): ticks per second.
pub fn frequency() -> u64 {
    super::arch::sysreg::frequency()
}

/// Counter ticks to nanoseconds (0 if the frequency is unknown).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    match frequency() {
        0 => 0,
        f => (u128::from(ticks) * 1_000_000_000 / u128::from(f)) as u64,
    }
}
