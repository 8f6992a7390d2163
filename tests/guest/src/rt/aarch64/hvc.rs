//! The `HVC #0` conduit of AArch64 guests: SMCCC 1.1, function ids as
//! given (SMC64 hypercalls), arguments and results in 64-bit registers.

use core::arch::asm;

/// The id a call with function id `fid` is issued with: `fid` itself.
#[inline]
pub(crate) const fn call_id(fid: u64) -> u64 {
    fid
}

/// Issues `HVC #0` with function id `fid` and arguments `a1..a5` in
/// `x1..x5`; returns `x0..x3`. `x4..x17` are treated as clobbered.
///
/// # Safety
///
/// As `rt::hvc::hvc`.
#[inline(always)]
pub(crate) unsafe fn hvc(
    fid: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
) -> (u64, u64, u64, u64) {
    let (r0, r1, r2, r3);
    // SAFETY: `hvc #0` traps to EL2 (or to the emulator's PSCI); the
    // registers are declared, the rest is the caller's contract.
    unsafe {
        asm!(
            "hvc #0",
            inlateout("x0") fid => r0,
            inlateout("x1") a1 => r1,
            inlateout("x2") a2 => r2,
            inlateout("x3") a3 => r3,
            inlateout("x4") a4 => _,
            inlateout("x5") a5 => _,
            lateout("x6") _,
            lateout("x7") _,
            lateout("x8") _,
            lateout("x9") _,
            lateout("x10") _,
            lateout("x11") _,
            lateout("x12") _,
            lateout("x13") _,
            lateout("x14") _,
            lateout("x15") _,
            lateout("x16") _,
            lateout("x17") _,
            options(nostack),
        );
    }
    (r0, r1, r2, r3)
}

/// The bits of a value one argument register carries: all 64.
pub(crate) const REGISTER_MASK: u64 = u64::MAX;
