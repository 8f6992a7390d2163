//! What the hypervisor knows about a board before, or without, a device
//! tree: the board an image is built for (cargo feature `rpi4`, `rpi3`,
//! `rpi2`, or QEMU `virt` without one).
//!
//! Two things come from here. The early identity map of the first 4 GiB
//! (2 MiB blocks; RAM Normal write-back, devices Device-nGnRE, the rest
//! unmapped), which must be right before anything is parsed: the Pis have
//! RAM where QEMU `virt` has devices. And a machine description for when
//! the boot loader passes no DTB (QEMU's `raspi` boards given a raw kernel
//! and no `-dtb`): RAM, the PL011 and how secondary CPUs are started. A
//! DTB, when there is one, always wins; its root `compatible` names the
//! board, and this build's board is the fallback.

use alloc::string::String;

use crate::platform::{Board, Cpu, EnableMethod, Gic, NamedRegion, Platform, Region};

/// A board as this build knows it.
#[derive(Debug)]
pub struct BoardSpec {
    /// How the board is named in the log.
    pub name: &'static str,
    /// The board a DTB's root `compatible` would name.
    pub board: Board,
    /// That root `compatible` string.
    pub compatible: &'static str,
    /// The PL011 the console uses.
    pub uart: u64,
    /// Ranges mapped Normal write-back by the early map.
    pub normal: &'static [(u64, u64)],
    /// Ranges mapped Device-nGnRE by the early map.
    pub device: &'static [(u64, u64)],
    /// RAM assumed without a DTB (the part every model of the board has,
    /// below the VideoCore's share on the Pis).
    pub ram: &'static [(u64, u64)],
    /// RAM the boot firmware keeps, without a DTB's `/memreserve/`.
    pub reserved: &'static [(&'static str, u64, u64)],
    /// CPUs without a DTB.
    pub cpus: u64,
    /// Where CPU `i` is released without a DTB: the spin table of the
    /// firmware's arm64 stub (`cpu-release-addr` 0xd8 + 8 i).
    pub spin_table: Option<u64>,
    /// The GIC-400 (a GICv2 with the virtualization extensions), if the
    /// board has one: GICD, GICC, GICH, GICV.
    pub gic400: Option<[u64; 4]>,
}

const GIB: u64 = 1 << 30;

/// QEMU `virt`: devices in the first GiB, RAM from 1 GiB.
pub const VIRT: BoardSpec = BoardSpec {
    name: "QEMU virt",
    compatible: "linux,dummy-virt",
    board: Board::QemuVirt,
    uart: 0x0900_0000,
    normal: &[(GIB, 4 * GIB)],
    device: &[(0, GIB)],
    ram: &[],
    reserved: &[],
    cpus: 1,
    spin_table: None,
    gic400: None,
};

/// Raspberry Pi 4 Model B (BCM2711, low-peripheral mode): RAM below
/// 0xfc00_0000, peripherals (PL011 at 0xfe20_1000, GIC-400 at
/// 0xff84_0000) above.
pub const RPI4: BoardSpec = BoardSpec {
    name: "Raspberry Pi 4 Model B (BCM2711)",
    compatible: "raspberrypi,4-model-b",
    board: Board::RaspberryPi4B,
    uart: 0xfe20_1000,
    normal: &[(0, 0xfc00_0000)],
    device: &[(0xfc00_0000, 4 * GIB)],
    ram: &[(0, 0x3c00_0000)],
    reserved: &[("firmware spin table", 0, 0x1000)],
    cpus: 4,
    spin_table: Some(0xd8),
    // The BCM2711's ARM local peripherals at 0xff80_0000, the GIC-400
    // 0x4_0000 into them (QEMU's raspi4b has the same, with its
    // virtualization interface).
    gic400: Some([0xff84_1000, 0xff84_2000, 0xff84_4000, 0xff84_6000]),
};

/// Raspberry Pi 3 Model B (BCM2837): RAM below 0x3f00_0000, peripherals
/// (PL011 at 0x3f20_1000) up to 1 GiB, the ARM local peripherals above;
/// no GIC.
pub const RPI3: BoardSpec = BoardSpec {
    name: "Raspberry Pi 3 Model B (BCM2837)",
    compatible: "raspberrypi,3-model-b",
    board: Board::RaspberryPi3B,
    uart: 0x3f20_1000,
    normal: &[(0, 0x3f00_0000)],
    device: &[(0x3f00_0000, GIB + 0x20_0000)],
    ram: &[(0, 0x3c00_0000)],
    reserved: &[("firmware spin table", 0, 0x1000)],
    cpus: 4,
    spin_table: Some(0xd8),
    gic400: None,
};

/// Raspberry Pi 2 Model B (BCM2836, ARMv7 Hyp mode): the BCM2837's map.
/// Its secondary CPUs wait on their ARM local mailbox 3 (see
/// [`release_address`]).
pub const RPI2: BoardSpec = BoardSpec {
    name: "Raspberry Pi 2 Model B (BCM2836)",
    compatible: "raspberrypi,2-model-b",
    board: Board::RaspberryPi2B,
    uart: 0x3f20_1000,
    normal: &[(0, 0x3f00_0000)],
    device: &[(0x3f00_0000, GIB + 0x20_0000)],
    ram: &[(0, 0x3c00_0000)],
    reserved: &[("firmware", 0, 0x1000)],
    cpus: 4,
    spin_table: None,
    gic400: None,
};

/// The `enable-method` of the BCM2836's CPUs.
pub const BCM2836_SMP: &str = "brcm,bcm2836-smp";

/// Where to write a secondary CPU's entry point to release it: the spin
/// table's `cpu-release-addr`, or for the BCM2836 (Pi 2) the set register
/// of the CPU's ARM local mailbox 3 (`0x4000_008c + 0x10 n`), which the
/// firmware's 32-bit stub polls until it holds an address.
pub fn release_address(method: &EnableMethod, mpidr: u64) -> Option<u64> {
    match method {
        EnableMethod::SpinTable { release_addr } => Some(*release_addr),
        EnableMethod::Other(m) if m == BCM2836_SMP && mpidr < 4 => Some(0x4000_008c + 0x10 * mpidr),
        _ => None,
    }
}

/// The board this image was built for.
pub const BUILT_FOR: &BoardSpec = if cfg!(feature = "rpi4") {
    &RPI4
} else if cfg!(feature = "rpi3") {
    &RPI3
} else if cfg!(feature = "rpi2") {
    &RPI2
} else {
    &VIRT
};

/// The spec for a board a DTB names, if this build knows it.
pub fn spec(board: Board) -> Option<&'static BoardSpec> {
    [&VIRT, &RPI4, &RPI3, &RPI2].into_iter().find(|s| s.board == board)
}

/// Level-2 tables of 2 MiB blocks for the first 4 GiB: table `i` maps
/// `[i GiB, (i + 1) GiB)`.
#[repr(C, align(4096))]
pub struct BootTables(pub [[u64; 512]; 4]);

/// The fields of a level-2 block descriptor of the EL2 stage 1: the
/// VMSAv8-64 format (Arm ARM, DDI 0487) and ARMv7's long-descriptor format
/// for Hyp mode (DDI 0406C) agree on every field the early map uses.
#[allow(missing_docs, non_camel_case_types)]
mod desc {
    use tock_registers::register_bitfields;

    register_bitfields! {u64,
        /// A stage-1 level-2 (2 MiB) block descriptor of the EL2
        /// (`TTBR0_EL2`) or Hyp-mode (`HTTBR`) translation regime.
        pub BLOCK [
            /// Bit `[0]`: the descriptor is valid.
            VALID OFFSET(0) NUMBITS(1) [],
            /// Bit `[1]`: a block (0) or, above level 3, a table (1).
            TYPE OFFSET(1) NUMBITS(1) [
                Block = 0,
                Table = 1
            ],
            /// `AttrIndx` `[4:2]`: the memory type's index in `MAIR_EL2` or
            /// `HMAIR0`, as the boot code sets them (Attr0 0x04, Attr1 0xff).
            ATTR_INDX OFFSET(2) NUMBITS(3) [
                /// Attr0: Device-nGnRE.
                Device = 0,
                /// Attr1: Normal, write-back read/write-allocate.
                Normal = 1
            ],
            /// `AP[1]` `[6]`: RES1 at EL2 (should-be-one in Hyp mode).
            AP1 OFFSET(6) NUMBITS(1) [],
            /// `AP[2]` `[7]`: read-only.
            AP2 OFFSET(7) NUMBITS(1) [],
            /// `SH` `[9:8]`: the shareability of Normal memory.
            SH OFFSET(8) NUMBITS(2) [
                NonShareable = 0b00,
                OuterShareable = 0b10,
                InnerShareable = 0b11
            ],
            /// `AF` `[10]`: the access flag.
            AF OFFSET(10) NUMBITS(1) [],
            /// The output address `[47:21]` (bits `[47:21]` of the block's
            /// address, in place).
            OA OFFSET(21) NUMBITS(27) [],
            /// `XN` `[54]`: execute-never.
            XN OFFSET(54) NUMBITS(1) []
        ]
    }
}
use desc::BLOCK;

/// Block attributes of the early map, valid for the AArch64 EL2 and the
/// ARMv7 Hyp-mode stage 1 alike (`AP[1]` is should-be-one in both).
/// AttrIndx 0 (Device-nGnRE); `AP[1]`; AF; XN.
const BLOCK_DEVICE: u64 = BLOCK::VALID::SET.value
    | BLOCK::TYPE::Block.value
    | BLOCK::ATTR_INDX::Device.value
    | BLOCK::AP1::SET.value
    | BLOCK::AF::SET.value
    | BLOCK::XN::SET.value;
/// AttrIndx 1 (Normal write-back); `AP[1]`; Inner Shareable; AF.
const BLOCK_NORMAL: u64 = BLOCK::VALID::SET.value
    | BLOCK::TYPE::Block.value
    | BLOCK::ATTR_INDX::Normal.value
    | BLOCK::AP1::SET.value
    | BLOCK::SH::InnerShareable.value
    | BLOCK::AF::SET.value;

/// The size of a level-2 block.
const BLOCK_SIZE: u64 = 2 << 20;

const fn within(ranges: &[(u64, u64)], a: u64) -> bool {
    let mut i = 0;
    while i < ranges.len() {
        if ranges[i].0 <= a && a < ranges[i].1 {
            return true;
        }
        i += 1;
    }
    false
}

/// The early map for `spec`: each 2 MiB block Normal, Device or invalid.
pub const fn boot_tables(spec: &BoardSpec) -> BootTables {
    let mut t = [[0u64; 512]; 4];
    let mut i = 0;
    while i < 4 * 512 {
        // The block's address is its descriptor's output address in place.
        let a = i as u64 * BLOCK_SIZE;
        t[i / 512][i % 512] = if within(spec.device, a) {
            a | BLOCK_DEVICE
        } else if within(spec.normal, a) {
            a | BLOCK_NORMAL
        } else {
            0
        };
        i += 1;
    }
    BootTables(t)
}

impl BoardSpec {
    /// The machine as this spec describes it, for a boot without a DTB.
    pub fn platform(&self) -> Platform {
        let cpus = (0..self.cpus)
            .map(|i| Cpu {
                mpidr: i,
                enable_method: match (self.spin_table, self.board) {
                    (Some(base), _) => Some(EnableMethod::SpinTable { release_addr: base + 8 * i }),
                    (None, Board::RaspberryPi2B) => Some(EnableMethod::Other(BCM2836_SMP.into())),
                    (None, _) => None,
                },
            })
            .collect();
        Platform {
            dtb: Region::new(0, 0),
            boot_cpuid: 0,
            memory: self.ram.iter().map(|&(s, e)| Region::new(s, e - s)).collect(),
            reserved: self
                .reserved
                .iter()
                .map(|&(name, s, e)| NamedRegion::new(name, Region::new(s, e - s)))
                .collect(),
            initrd: None,
            bootargs: None,
            uart: Some(Region::new(self.uart, 0x1000)),
            gic: self.gic400.map(|[d, c, h, v]| Gic::V2 {
                distributor: Region::new(d, 0x1000),
                cpu_interface: Region::new(c, 0x2000),
                hyp_interface: Some(Region::new(h, 0x2000)),
                vcpu_interface: Some(Region::new(v, 0x2000)),
            }),
            cpus,
            psci: None,
            compatible: alloc::vec![String::from(self.compatible)],
            model: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(t: &BootTables, a: u64) -> u64 {
        let e = t.0[(a >> 30) as usize][((a >> 21) & 511) as usize];
        assert!(e == 0 || e & !0xfff & ((1 << 48) - 1) == a & !0x1f_ffff, "{a:#x}: {e:#x}");
        e & 0xfff
    }

    #[test]
    fn early_maps_put_ram_and_devices_where_each_board_has_them() {
        let virt = boot_tables(&VIRT);
        assert_eq!(kind(&virt, 0x0900_0000), 0x441);
        assert_eq!(kind(&virt, 0x4000_0000), 0x745);
        assert_eq!(kind(&virt, 0xffe0_0000), 0x745);
        let pi4 = boot_tables(&RPI4);
        assert_eq!(kind(&pi4, 0), 0x745);
        assert_eq!(kind(&pi4, 0xfbe0_0000), 0x745);
        assert_eq!(kind(&pi4, 0xfe20_1000), 0x441);
        assert_eq!(kind(&pi4, 0xff84_1000), 0x441);
        let pi3 = boot_tables(&RPI3);
        assert_eq!(kind(&pi3, 0x3ee0_0000), 0x745);
        assert_eq!(kind(&pi3, 0x3f20_1000), 0x441);
        assert_eq!(kind(&pi3, 0x4000_0000), 0x441);
        assert_eq!(kind(&pi3, 0x4020_0000), 0);
        assert_eq!(kind(&pi3, 0x8000_0000), 0);
        // Devices are never executable; RAM is.
        assert_ne!(pi3.0[0][0x3f20_1000 >> 21] & (1 << 54), 0);
        assert_eq!(pi3.0[0][0] & (1 << 54), 0);
    }

    #[test]
    fn block_descriptors_by_field() {
        // The values before the fields had names.
        assert_eq!(BLOCK_DEVICE, 0x441 | (1 << 54));
        assert_eq!(BLOCK_NORMAL, 0x745);
        let virt = boot_tables(&VIRT);
        let (device, normal) = (virt.0[0][0x0900_0000 >> 21], virt.0[1][3]);
        for e in [device, normal] {
            assert!(BLOCK::VALID.is_set(e) && BLOCK::AF.is_set(e) && BLOCK::AP1.is_set(e));
            assert!(!BLOCK::AP2.is_set(e), "writable");
            assert_eq!(BLOCK::TYPE.read_as_enum(e), Some(BLOCK::TYPE::Value::Block));
        }
        assert_eq!(BLOCK::ATTR_INDX.read_as_enum(device), Some(BLOCK::ATTR_INDX::Value::Device));
        assert_eq!(BLOCK::ATTR_INDX.read_as_enum(normal), Some(BLOCK::ATTR_INDX::Value::Normal));
        assert_eq!(BLOCK::SH.read(device), 0);
        assert_eq!(BLOCK::SH.read_as_enum(normal), Some(BLOCK::SH::Value::InnerShareable));
        assert!(BLOCK::XN.is_set(device) && !BLOCK::XN.is_set(normal));
        // The output address: 0x0900_0000's block, and 1 GiB + 3 * 2 MiB.
        assert_eq!(BLOCK::OA.read(device) * BLOCK_SIZE, 0x0900_0000);
        assert_eq!(BLOCK::OA.read(normal) * BLOCK_SIZE, GIB + 3 * BLOCK_SIZE);
    }

    #[test]
    fn without_a_dtb_the_spec_describes_the_machine() {
        let p = RPI3.platform();
        assert_eq!(p.memory, [Region::new(0, 0x3c00_0000)]);
        assert_eq!(p.uart, Some(Region::new(0x3f20_1000, 0x1000)));
        assert_eq!(p.psci, None);
        assert_eq!(p.board(), Board::RaspberryPi3B);
        assert_eq!(p.cpus.len(), 4);
        assert_eq!(p.cpus[3].enable_method, Some(EnableMethod::SpinTable { release_addr: 0xf0 }));
        let pi2 = RPI2.platform();
        let addrs: alloc::vec::Vec<_> = pi2
            .cpus
            .iter()
            .map(|c| release_address(c.enable_method.as_ref().unwrap(), c.mpidr))
            .collect();
        assert_eq!(
            addrs,
            [Some(0x4000_008c), Some(0x4000_009c), Some(0x4000_00ac), Some(0x4000_00bc)]
        );
        let spin = EnableMethod::SpinTable { release_addr: 0xe0 };
        assert_eq!(release_address(&spin, 1), Some(0xe0));
        assert_eq!(release_address(&EnableMethod::Psci, 1), None);
        assert_eq!(release_address(&EnableMethod::Other(BCM2836_SMP.into()), 4), None);
        assert_eq!(spec(Board::RaspberryPi4B).map(|s| s.uart), Some(0xfe20_1000));
        assert_eq!(BUILT_FOR.board, Board::QemuVirt);
    }
}
