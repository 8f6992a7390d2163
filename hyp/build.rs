//! Links the bare-metal image with `linker-aarch64.ld` or `linker-arm.ld`
//! and embeds the demo guest.

use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let script = match target.as_str() {
        "aarch64-unknown-none" => Some("linker-aarch64.ld"),
        "armv7a-none-eabi" => Some("linker-arm.ld"),
        _ => None,
    };
    if let Some(script) = script {
        println!("cargo:rustc-link-arg-bins=-T{}", dir.join(script).display());
        println!("cargo:rerun-if-changed={script}");
    }
    // The built-in demo guest: `scripts/build.sh` builds it first and points
    // HYP_DEMO_GUEST at the raw image. Without it the hypervisor has no
    // built-in guest and needs one from the initrd.
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("demo-guest.bin");
    println!("cargo:rerun-if-env-changed=HYP_DEMO_GUEST");
    match env::var("HYP_DEMO_GUEST") {
        Ok(path) => {
            println!("cargo:rerun-if-changed={path}");
            fs::copy(&path, &out).unwrap_or_else(|e| panic!("HYP_DEMO_GUEST={path}: {e}"));
        }
        Err(_) => fs::write(&out, []).unwrap(),
    }
}
