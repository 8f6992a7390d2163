//! Host-side harness for the hypervisor's QEMU runs.
//!
//! Not built yet: the QEMU boots arrive with the AArch64 hypervisor issue.
//! The independent reference walker used by `mmu`'s tests lives in
//! `tests/refwalk`.
