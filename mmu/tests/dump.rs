//! The ptdump-style text dump.

mod common;

use common::*;
use mmu::{Attrs, Features, Geometry, Granularity, Ipa, LockMode, PhysAddr};

#[test]
fn dump_coalesces_runs_and_counts_tables() {
    let env = Env::new(64);
    let s2 = env.stage2(Geometry::aarch64(40, 48, Features::default()).unwrap(), LockMode::Split);
    s2.map(Ipa(0x4000_0000), PhysAddr(0x8000_0000), 4 * MB2, &Attrs::RAM, Granularity::Largest)
        .unwrap();
    s2.map(Ipa(0x4080_0000), PhysAddr(0x9000_0000), 3 * PAGE, &Attrs::RAM_RO, Granularity::Pages)
        .unwrap();
    s2.map(Ipa(0x0900_0000), PhysAddr(0x0900_0000), PAGE, &Attrs::DEVICE, Granularity::Pages)
        .unwrap();
    let mut out = String::new();
    s2.dump(&mut out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "stage 2: VMID 7 Aarch64, 40-bit IPA, start level 1, root 0x4000000000 (2 tables), Split locks",
            "0x000009000000-0x000009001000 -> 0x000009000000 4K x1      rw- Device-nGnRE OSH",
            "0x000040000000-0x000040800000 -> 0x000080000000 2M x4      rwx Normal-WB ISH",
            "0x000040800000-0x000040803000 -> 0x000090000000 4K x3      r-- Normal-WB ISH",
            "tables: root 2 + level 1: 0, level 2: 2, level 3: 2",
        ],
        "{out}"
    );
}
