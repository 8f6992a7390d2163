//! The `HVC #0` conduit of ARM32 guests: SMCCC 1.1 with the SMC32 form of
//! every function id, arguments in `r1..r5` and results in `r0..r3`, each
//! 32 bits.

use core::arch::asm;

use crate::abi::smc32;

/// The id a call with function id `fid` is issued with: its SMC32 form.
#[inline]
pub(crate) const fn call_id(fid: u64) -> u64 {
    smc32(fid) as u64
}

/// The bits of a value one argument register carries: the low 32.
pub(crate) const REGISTER_MASK: u64 = u32::MAX as u64;

/// An argument as the 32-bit register value it is passed in. A value that
/// does not fit is a bug in the image (an address above 4 GiB, a 64-bit
/// pattern): it panics rather than pass something else.
#[inline]
fn arg(v: u64) -> u32 {
    match u32::try_from(v) {
        Ok(r) => r,
        Err(_) => panic!("hypercall argument {v:#x} does not fit in a 32-bit register"),
    }
}

/// Issues `HVC #0` with `r0` = the SMC32 form of `fid` and `a1..a5` in
/// `r1..r5`; returns `r0` sign-extended and `r1..r3` zero-extended. `r4`,
/// `r5` and `r12` are treated as clobbered.
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
    let (r0, r1, r2, r3): (u32, u32, u32, u32);
    // SAFETY: `hvc #0` traps to Hyp mode (or to the emulator's PSCI); the
    // registers are declared, the rest is the caller's contract. The
    // virtualization extension is named so that LLVM assembles `hvc`.
    unsafe {
        asm!(
            ".arch_extension virt",
            "hvc #0",
            inlateout("r0") smc32(fid) => r0,
            inlateout("r1") arg(a1) => r1,
            inlateout("r2") arg(a2) => r2,
            inlateout("r3") arg(a3) => r3,
            inlateout("r4") arg(a4) => _,
            inlateout("r5") arg(a5) => _,
            lateout("r12") _,
            options(nostack),
        );
    }
    (r0 as i32 as i64 as u64, u64::from(r1), u64::from(r2), u64::from(r3))
}
