//! The ARM32 (PL1, SVC mode) half of the runtime: entry, mode stacks and
//! the LPAE stage-1 map ([`boot`]), vectors ([`exception`]),
//! single-instruction accesses ([`access`]), the `HVC` conduit with SMC32
//! ids and 32-bit registers ([`hvc`]) and CP15 registers ([`sysreg`]).
//! The encodings they use are in [`crate::aarch32`], host-tested.

pub(crate) mod access;
pub(crate) mod boot;
pub(crate) mod exception;
pub(crate) mod hvc;
pub(crate) mod sysreg;
