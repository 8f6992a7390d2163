//! CPU-specific code for the hypervisor: TLB and cache maintenance
//! instructions and system-register plumbing for AArch64 at EL2 and for
//! ARMv7-A with the virtualization extensions in Hyp mode.
//!
//! Policy (what to invalidate, when) is `mmu`'s; this crate carries it out.
//! On other architectures (the host) it holds only what needs no Arm CPU:
//! the TLBI operand encodings ([`tlbi`]) and the system registers' field
//! layouts ([`fields`]), tested there.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

#[cfg(test)]
extern crate std;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
pub mod barrier;

#[cfg(target_arch = "arm")]
pub mod armv7;
pub mod fields;
/// TLBI operand encodings (AArch64), portable.
pub mod tlbi;
