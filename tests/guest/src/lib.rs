//! Guest test images for the hypervisor and the small EL1 runtime they share.
//!
//! The images (`src/bin/*.rs`) are raw AArch64 binaries linked at IPA
//! `0x4020_0000` and run as guests under the hypervisor (see
//! `docs/HYPERVISOR.md`, "Guest contract" and "Hypercalls"). Each checks one
//! property of the stage-2 fault path, prints `TEST <image>/<check> PASS` or
//! `FAIL` on the console, reports every check with `HYP_REPORT` and ends
//! with PSCI `SYSTEM_OFF`.
//!
//! * [`abi`]: hypercall and PSCI function ids, counter indices, the guest
//!   memory map. Plain constants, available on every target.
//! * [`fdt`]: a minimal read-only device-tree reader (the guest's RAM size
//!   and vCPUs come from the DTB the hypervisor passes in `x0`). Host-tested.
//! * `rt` (bare-metal AArch64 only): entry, stacks, stage-1 MMU, exception
//!   vectors, PL011 console, hypercalls, PSCI and SMP helpers.
//!
//! On the host every image is a stub `main` that says it runs under the
//! hypervisor, so that `cargo test --workspace` and clippy build them.
#![cfg_attr(target_os = "none", no_std)]

#[cfg(all(target_os = "none", not(target_arch = "aarch64")))]
compile_error!("the guest images are AArch64 only: build with --target aarch64-unknown-none");

pub mod abi;
pub mod fdt;

#[cfg(all(target_os = "none", target_arch = "aarch64"))]
pub mod rt;
