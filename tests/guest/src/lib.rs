//! Guest test images for the hypervisor and the small EL1 runtime they share.
//!
//! The images (`src/bin/*.rs`) are raw AArch64 (`aarch64-unknown-none`, EL1)
//! or ARM32 (`armv7a-none-eabi`, SVC mode) binaries linked at IPA
//! `0x4020_0000` and run as guests under the hypervisor (see
//! `docs/HYPERVISOR.md`, "Guest contract" and "Hypercalls"). Each checks one
//! property of the stage-2 fault path, prints `TEST <image>/<check> PASS` or
//! `FAIL` on the console, reports every check with `HYP_REPORT` and ends
//! with PSCI `SYSTEM_OFF`.
//!
//! * [`abi`]: hypercall and PSCI function ids, counter indices, the guest
//!   memory map. Plain constants, available on every target.
//! * [`fdt`]: a minimal read-only device-tree reader (the guest's RAM size
//!   and vCPUs come from the DTB the hypervisor passes in `x0`, or `r2` on
//!   ARM32). Host-tested.
//! * [`aarch32`]: the AArch32 encodings the ARM32 runtime uses (LPAE
//!   stage-1 map, fault status formats, boot registers). Host-tested.
//! * `rt` (bare metal only): entry, stacks, stage-1 MMU, exception vectors,
//!   PL011 console, hypercalls, PSCI and SMP helpers; the architecture
//!   specific parts in `rt/aarch64` and `rt/arm`.
//!
//! On the host every image is a stub `main` that says it runs under the
//! hypervisor, so that `cargo test --workspace` and clippy build them.
#![cfg_attr(target_os = "none", no_std)]

#[cfg(all(target_os = "none", not(any(target_arch = "aarch64", target_arch = "arm"))))]
compile_error!(
    "the guest images are AArch64 or ARM32: build with --target aarch64-unknown-none or \
     --target armv7a-none-eabi"
);

pub mod aarch32;
pub mod abi;
pub mod fdt;

#[cfg(target_os = "none")]
pub mod rt;
