//! PSCI through `HVC #0` (the guest DTB's `method = "hvc"`).
//!
//! Without PSCI (detected at boot: plain QEMU with `-device loader`) the
//! calls return NOT_SUPPORTED and the power-off calls halt the vCPU in a
//! `wfi` loop.

use crate::abi::{psci, SMCCC_NOT_SUPPORTED};
use crate::rt::arch::hvc::call_id;
use crate::rt::hvc::{hvc, psci_present};

/// Parks this vCPU forever.
pub fn halt() -> ! {
    loop {
        // SAFETY: `wfi` only waits (with no interrupt enabled, for ever).
        unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

/// `PSCI_VERSION` (major << 16 | minor), or negative.
pub fn version() -> i64 {
    if !psci_present() {
        return SMCCC_NOT_SUPPORTED;
    }
    // SAFETY: no side effects.
    unsafe { hvc(psci::VERSION, 0, 0, 0, 0, 0).0 as i64 }
}

/// `PSCI_FEATURES(fid)`: 0 (or feature flags) if implemented, else negative.
/// On ARM32 the SMC32 form of `fid` is asked about, the one it would call.
pub fn features(fid: u64) -> i64 {
    if !psci_present() {
        return SMCCC_NOT_SUPPORTED;
    }
    // SAFETY: no side effects.
    unsafe { hvc(psci::FEATURES, call_id(fid), 0, 0, 0, 0).0 as i64 }
}

/// `CPU_ON`: starts the vCPU with MPIDR affinity `target_mpidr` at IPA
/// `entry` (MMU off, EL1h; ARM32: SVC mode) with `x0` (`r0`) = `context_id`.
///
/// # Safety
///
/// `entry` must be code that can start a vCPU from reset state (such as
/// the runtime's secondary entry, which [`crate::rt::smp::start_secondaries`]
/// uses).
pub unsafe fn cpu_on(target_mpidr: u64, entry: u64, context_id: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { cpu_on_as(psci::CPU_ON, target_mpidr, entry, context_id) }
}

/// [`cpu_on`] issued with function id `fid`: [`psci::CPU_ON`] (SMC64) or
/// its SMC32 form (an AArch64 guest may use either; ARM32 issues the SMC32
/// one whatever `fid` says).
///
/// # Safety
///
/// As [`cpu_on`].
pub unsafe fn cpu_on_as(fid: u64, target_mpidr: u64, entry: u64, context_id: u64) -> i64 {
    if !psci_present() {
        return SMCCC_NOT_SUPPORTED;
    }
    // SAFETY: the caller vouches for `entry`; CPU_ON does not touch this
    // vCPU's memory.
    unsafe { hvc(fid, target_mpidr, entry, context_id, 0, 0).0 as i64 }
}

/// `CPU_OFF`: stops this vCPU. Returns only on failure (then halts).
pub fn cpu_off() -> ! {
    if psci_present() {
        // SAFETY: the vCPU stops; nothing after this runs.
        unsafe { hvc(psci::CPU_OFF, 0, 0, 0, 0, 0) };
    }
    halt()
}

/// `SYSTEM_OFF`: the VM stops. Without PSCI, prints so and halts.
pub fn system_off() -> ! {
    if psci_present() {
        // SAFETY: the VM stops.
        unsafe { hvc(psci::SYSTEM_OFF, 0, 0, 0, 0, 0) };
        crate::println!("PSCI SYSTEM_OFF returned; halting");
    } else {
        crate::println!("no PSCI: halting instead of SYSTEM_OFF");
    }
    halt()
}

/// `SYSTEM_RESET`: the VM restarts. Without PSCI, prints so and halts.
pub fn system_reset() -> ! {
    if psci_present() {
        // SAFETY: the VM restarts.
        unsafe { hvc(psci::SYSTEM_RESET, 0, 0, 0, 0, 0) };
        crate::println!("PSCI SYSTEM_RESET returned; halting");
    } else {
        crate::println!("no PSCI: halting instead of SYSTEM_RESET");
    }
    halt()
}
