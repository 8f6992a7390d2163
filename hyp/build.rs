//! Links the bare-metal image with `linker.ld` and embeds the demo guest.

use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    if target.starts_with("aarch64") && target.ends_with("-none") {
        println!("cargo:rustc-link-arg-bins=-T{}", dir.join("linker.ld").display());
        println!("cargo:rerun-if-changed=linker.ld");
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
