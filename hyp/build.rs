//! Links the bare-metal image with `linker-aarch64.ld` or `linker-arm.ld`,
//! filled in with the load address of the board the image is built for
//! (feature `rpi4`, `rpi3` or `rpi2`; QEMU `virt` without one), and embeds
//! the demo guest.

use std::{env, fs, path::PathBuf};

/// Where the boot loader puts the image: (load address, arm64 text_offset).
fn layout(target: &str, board: Option<&str>) -> Option<(u64, u64)> {
    match (target, board) {
        // QEMU virt: RAM base 0x4000_0000 + text_offset; a raw ARM kernel
        // at RAM base + 0x1_0000.
        ("aarch64-unknown-none", None) => Some((0x4020_0000, 0x20_0000)),
        ("armv7a-none-eabi", None) => Some((0x4001_0000, 0)),
        // The Raspberry Pi firmware: kernel8.img at 0x8_0000 (RAM from 0),
        // kernel7.img at 0x8000.
        ("aarch64-unknown-none", Some("rpi4" | "rpi3")) => Some((0x8_0000, 0x8_0000)),
        ("armv7a-none-eabi", Some("rpi2")) => Some((0x8000, 0)),
        (t, Some(b)) if t.ends_with("-none") || t.ends_with("-eabi") => {
            panic!("board feature {b} does not exist for target {t}")
        }
        _ => None,
    }
}

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let boards: Vec<&str> = ["rpi4", "rpi3", "rpi2"]
        .into_iter()
        .filter(|b| env::var_os(format!("CARGO_FEATURE_{}", b.to_uppercase())).is_some())
        .collect();
    assert!(boards.len() <= 1, "at most one board feature, not {boards:?}");
    let script = if target.starts_with("aarch64") { "linker-aarch64.ld" } else { "linker-arm.ld" };
    if let Some((load, text_offset)) = layout(&target, boards.first().copied()) {
        let text = fs::read_to_string(dir.join(script)).unwrap();
        let text = text
            .replace("@LOAD_ADDR@", &format!("{load:#x}"))
            .replace("@TEXT_OFFSET@", &format!("{text_offset:#x}"));
        let linked = out_dir.join("link.ld");
        fs::write(&linked, text).unwrap();
        println!("cargo:rustc-link-arg-bins=-T{}", linked.display());
    }
    println!("cargo:rerun-if-changed={script}");
    // The built-in demo guest: `scripts/build.sh` builds it first and points
    // HYP_DEMO_GUEST at the raw image. Without it the hypervisor has no
    // built-in guest and needs one from the initrd.
    let out = out_dir.join("demo-guest.bin");
    println!("cargo:rerun-if-env-changed=HYP_DEMO_GUEST");
    match env::var("HYP_DEMO_GUEST") {
        Ok(path) => {
            println!("cargo:rerun-if-changed={path}");
            fs::copy(&path, &out).unwrap_or_else(|e| panic!("HYP_DEMO_GUEST={path}: {e}"));
        }
        Err(_) => fs::write(&out, []).unwrap(),
    }
}
