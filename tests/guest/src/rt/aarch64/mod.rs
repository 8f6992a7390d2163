//! The AArch64 (EL1) half of the runtime: entry and stage-1 map
//! ([`boot`]), vectors ([`exception`]), single-instruction accesses
//! ([`access`]), the `HVC` conduit ([`hvc`]) and system registers
//! ([`sysreg`]).

pub(crate) mod access;
pub(crate) mod boot;
pub(crate) mod exception;
pub(crate) mod hvc;
pub(crate) mod sysreg;
