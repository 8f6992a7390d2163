//! The EL2 hypervisor: boot, platform, VMs, trap handling and the stage-2
//! fault path built on `mmu`.
//!
//! Not built yet: it arrives with the AArch64 hypervisor issue.
#![no_std]
