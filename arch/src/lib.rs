//! CPU-specific code for the hypervisor: system registers, TLB and cache
//! maintenance instructions and exception-level plumbing for AArch64 and
//! ARMv7/AArch32.
//!
//! Not built yet: the AArch64 side arrives with the hypervisor (issue 3),
//! the ARMv7 side with the ARM32 port. Policy (when to invalidate what)
//! stays in `mmu`; this crate only carries it out.
#![no_std]
