//! The Hyp-mode registers the hypervisor uses, by name.
//!
//! Reads are safe (no side effects); writes are `unsafe` because they
//! change how the CPU translates, traps or runs guests. The values are
//! plain words; their fields are named in [`crate::fields::armv7`] (`HSR`'s,
//! shared with `ESR_EL2`, in the hypervisor's `syndrome` module; `VTCR`'s
//! and `VTTBR`'s in `mmu`, which computes them).

use crate::{read_cp15, read_cp15_64, write_cp15, write_cp15_64};

/// Reads `MIDR` (main ID).
pub fn midr() -> u32 {
    read_cp15!("p15, 0, {}, c0, c0, 0")
}

/// Reads `MPIDR` (multiprocessor affinity,
/// [`MPIDR`](crate::fields::armv7::MPIDR)).
pub fn mpidr() -> u32 {
    read_cp15!("p15, 0, {}, c0, c0, 5")
}

/// Reads `ID_MMFR0`: `VMSA` [3:0] is 5 or more with LPAE.
pub fn id_mmfr0() -> u32 {
    read_cp15!("p15, 0, {}, c0, c1, 4")
}

/// Reads `HSR`, the syndrome of the exception taken to Hyp mode (same
/// layout as `ESR_EL2`: EC [31:26], IL [25], ISS [24:0]).
pub fn hsr() -> u32 {
    read_cp15!("p15, 4, {}, c5, c2, 0")
}

/// Reads `HDFAR`: the VA of a data abort taken to Hyp mode.
pub fn hdfar() -> u32 {
    read_cp15!("p15, 4, {}, c6, c0, 0")
}

/// Reads `HIFAR`: the VA of a prefetch abort taken to Hyp mode.
pub fn hifar() -> u32 {
    read_cp15!("p15, 4, {}, c6, c0, 2")
}

/// Reads `HPFAR`: IPA [39:12] of a stage-2 abort in bits [31:4]
/// ([`HPFAR::FIPA`](crate::fields::armv7::HPFAR::FIPA)).
pub fn hpfar() -> u32 {
    read_cp15!("p15, 4, {}, c6, c0, 4")
}

/// The faulting IPA's page from `HPFAR`.
pub fn fault_ipa_page() -> u64 {
    use crate::fields::armv7::HPFAR;
    u64::from(HPFAR::FIPA.read(hpfar())) << mmu::PAGE_SHIFT
}

/// Reads `HSCTLR`.
pub fn hsctlr() -> u32 {
    read_cp15!("p15, 4, {}, c1, c0, 0")
}

/// Reads `VTTBR`.
pub fn vttbr() -> u64 {
    read_cp15_64!("p15, 6, {}, {}, c2")
}

/// Reads `CNTPCT`, the physical count.
pub fn cntpct() -> u64 {
    read_cp15_64!("p15, 0, {}, {}, c14")
}

/// Reads `CNTFRQ`, the counter frequency in Hz.
pub fn cntfrq() -> u32 {
    read_cp15!("p15, 0, {}, c14, c0, 0")
}

/// Writes `HCR`, the hypervisor configuration
/// ([`HCR`](crate::fields::armv7::HCR)).
///
/// # Safety
///
/// Changes traps and stage 2 for the guest that runs next.
pub unsafe fn set_hcr(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 4, {}, c1, c1, 0", v) }
}

/// Reads `HCPTR` (coprocessor traps; a `TCPn` bit reads as one when
/// coprocessor n does not exist).
pub fn hcptr() -> u32 {
    read_cp15!("p15, 4, {}, c1, c1, 2")
}

/// Writes `HCPTR` (coprocessor traps,
/// [`HCPTR`](crate::fields::armv7::HCPTR)).
///
/// # Safety
///
/// As [`set_hcr`].
pub unsafe fn set_hcptr(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 4, {}, c1, c1, 2", v) }
}

/// Writes `HSTR` (CP15 primary-register traps,
/// [`HSTR`](crate::fields::armv7::HSTR)).
///
/// # Safety
///
/// As [`set_hcr`].
pub unsafe fn set_hstr(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 4, {}, c1, c1, 3", v) }
}

/// Writes `HDCR` (debug and PMU traps,
/// [`HDCR`](crate::fields::armv7::HDCR)).
///
/// # Safety
///
/// As [`set_hcr`].
pub unsafe fn set_hdcr(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 4, {}, c1, c1, 1", v) }
}

/// Reads `PMCR` (the PMU's control; [`PMCR::N`](crate::fields::armv7::PMCR::N)
/// is its counters).
pub fn pmcr() -> u32 {
    read_cp15!("p15, 0, {}, c9, c12, 0")
}

/// Points `PMXEVTYPER`/`PMXEVCNTR` at event counter `n` (`PMSELR`).
///
/// # Safety
///
/// Changes which PMU counter the event registers reach.
pub unsafe fn set_pmselr(n: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 0, {}, c9, c12, 5", n) }
}

/// Writes `PMXEVTYPER` of the selected counter.
///
/// # Safety
///
/// Changes what a PMU counter counts.
pub unsafe fn set_pmxevtyper(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 0, {}, c9, c13, 1", v) }
}

/// Reads `PMXEVCNTR`, the selected event counter.
pub fn pmxevcntr() -> u32 {
    read_cp15!("p15, 0, {}, c9, c13, 2")
}

/// Writes `PMXEVCNTR`.
///
/// # Safety
///
/// Changes a PMU counter.
pub unsafe fn set_pmxevcntr(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 0, {}, c9, c13, 2", v) }
}

/// Writes `PMCNTENSET` (counters enabled: a bit each).
///
/// # Safety
///
/// Starts PMU counters.
pub unsafe fn set_pmcntenset(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 0, {}, c9, c12, 1", v) }
}

/// Writes `PMCR`.
///
/// # Safety
///
/// Changes the PMU's global controls.
pub unsafe fn set_pmcr(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 0, {}, c9, c12, 0", v) }
}

/// Reads `ID_DFR0` (debug and PMU features).
pub fn id_dfr0() -> u32 {
    read_cp15!("p15, 0, {}, c0, c1, 2")
}

/// Reads `ACTLR` (implementation defined auxiliary control).
pub fn actlr() -> u32 {
    read_cp15!("p15, 0, {}, c1, c0, 1")
}

/// Writes `VTCR` (stage-2 translation control).
///
/// # Safety
///
/// Stage 2 of the next guest is walked with it.
pub unsafe fn set_vtcr(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 4, {}, c2, c1, 2", v) }
}

/// Writes `VTTBR` (stage-2 root and VMID [55:48]) with `MCRR`.
///
/// # Safety
///
/// The table must be a valid stage-2 root for the guest run next.
pub unsafe fn set_vttbr(v: u64) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15_64!("p15, 6, {}, {}, c2", v) }
}

/// Writes `VPIDR`, the `MIDR` guests read.
///
/// # Safety
///
/// Only what guests see changes.
pub unsafe fn set_vpidr(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 4, {}, c0, c0, 0", v) }
}

/// Writes `VMPIDR`, the `MPIDR` guests read
/// ([`MPIDR`](crate::fields::armv7::MPIDR)).
///
/// # Safety
///
/// Only what guests see changes.
pub unsafe fn set_vmpidr(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 4, {}, c0, c0, 5", v) }
}

/// Writes `CNTHCTL` (PL1 access to the physical counter and timer,
/// [`CNTHCTL`](crate::fields::armv7::CNTHCTL)).
///
/// # Safety
///
/// Only what guests may access changes.
pub unsafe fn set_cnthctl(v: u32) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15!("p15, 4, {}, c14, c1, 0", v) }
}

/// Writes `CNTVOFF` (virtual counter offset).
///
/// # Safety
///
/// Only what guests see changes.
pub unsafe fn set_cntvoff(v: u64) {
    // SAFETY: the caller's contract.
    unsafe { write_cp15_64!("p15, 4, {}, {}, c14", v) }
}

/// Invalidates this CPU's stage-1 entries of the VMID in `VTTBR`
/// (`TLBIALL`, not broadcast): another vCPU of the same VM ran here.
pub fn local_invalidate_vmid() {
    // SAFETY: TLB invalidation only drops cached translations.
    unsafe {
        core::arch::asm!(
            "mcr p15, 0, {}, c8, c7, 0",
            "dsb nsh",
            "isb",
            in(reg) 0u32,
            options(nostack)
        )
    };
}
