//! Links the bare-metal guest images (AArch64 and ARM32) with `linker.ld`
//! (load address and entry `0x4020_0000`). Host builds (tests, clippy)
//! link normally.

use std::{env, path::PathBuf};

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    if target == "aarch64-unknown-none" || target == "armv7a-none-eabi" {
        println!("cargo:rustc-link-arg-bins=-T{}", dir.join("linker.ld").display());
    }
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
