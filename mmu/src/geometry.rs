//! Level geometry of a stage-2 regime with the 4 KiB granule, and the
//! VTCR/VTTBR values that describe it to the hardware.
//!
//! Each level resolves 9 IPA bits above the 12-bit page offset: level 3
//! bits `[20:12]`, level 2 `[29:21]`, level 1 `[38:30]`, level 0 `[47:39]`. Stage 2
//! may start its walk with up to 16 *concatenated* tables, so the start
//! level is the highest one whose span times 16 tables still covers the
//! IPA space. That gives the fewest levels for every size, as KVM does.

use tock_registers::fields::FieldValue;

use crate::addr::{PhysAddr, Vmid, PAGE_SHIFT, PAGE_SIZE};
use crate::error::Error;

/// The stage-2 control and base registers' fields, as the Arm ARM names
/// them (DDI 0487 for `VTCR_EL2`/`VTTBR_EL2`, DDI 0406C for ARMv7's
/// `VTCR`/`VTTBR`).
#[allow(missing_docs, non_camel_case_types)]
mod regs {
    use tock_registers::register_bitfields;

    register_bitfields! {u64,
        /// `VTCR_EL2`, the AArch64 stage-2 translation control (E2H 0).
        pub VTCR_EL2 [
            /// `T0SZ` [5:0]: the IPA space is 2^(64 - T0SZ) bytes.
            T0SZ OFFSET(0) NUMBITS(6) [],
            /// `SL0` [7:6]: the walk's start level (with the 4 KiB granule).
            SL0 OFFSET(6) NUMBITS(2) [
                Level2 = 0b00,
                Level1 = 0b01,
                Level0 = 0b10
            ],
            /// `IRGN0` [9:8]: inner cacheability of table walks.
            IRGN0 OFFSET(8) NUMBITS(2) [
                NonCacheable = 0b00,
                WriteBackWriteAllocate = 0b01,
                WriteThrough = 0b10,
                WriteBackNoWriteAllocate = 0b11
            ],
            /// `ORGN0` [11:10]: outer cacheability of table walks.
            ORGN0 OFFSET(10) NUMBITS(2) [
                NonCacheable = 0b00,
                WriteBackWriteAllocate = 0b01,
                WriteThrough = 0b10,
                WriteBackNoWriteAllocate = 0b11
            ],
            /// `SH0` [13:12]: shareability of table walks.
            SH0 OFFSET(12) NUMBITS(2) [
                NonShareable = 0b00,
                OuterShareable = 0b10,
                InnerShareable = 0b11
            ],
            /// `TG0` [15:14]: the translation granule.
            TG0 OFFSET(14) NUMBITS(2) [
                Granule4K = 0b00,
                Granule64K = 0b01,
                Granule16K = 0b10
            ],
            /// `PS` [18:16]: the physical (output) address size, encoded as
            /// `ID_AA64MMFR0_EL1.PARange`.
            PS OFFSET(16) NUMBITS(3) [
                PA32 = 0b000,
                PA36 = 0b001,
                PA40 = 0b010,
                PA42 = 0b011,
                PA44 = 0b100,
                PA48 = 0b101
            ],
            /// `VS` [19]: 16-bit VMIDs.
            VS OFFSET(19) NUMBITS(1) [],
            /// Bit [31], RES1.
            RES1 OFFSET(31) NUMBITS(1) []
        ],
        /// `VTTBR_EL2`, the AArch64 stage-2 translation table base.
        pub VTTBR_EL2 [
            /// `VMID` [63:48] with 16-bit VMIDs (`VTCR_EL2.VS`); 8-bit VMIDs
            /// are bits [55:48] (see [`VTTBR_EL2::VMID8`]).
            VMID OFFSET(48) NUMBITS(16) [],
            /// `VMID` [55:48] with 8-bit VMIDs (bits [63:56] RES0).
            VMID8 OFFSET(48) NUMBITS(8) []
        ],
        /// `VTTBR`, the ARMv7 stage-2 translation table base (64-bit).
        pub VTTBR [
            /// `VMID` [55:48].
            VMID OFFSET(48) NUMBITS(8) []
        ]
    }

    register_bitfields! {u32,
        /// `VTCR`, the ARMv7 (virtualization extensions) stage-2
        /// translation control.
        pub VTCR [
            /// `T0SZ` [3:0]: the IPA space is 2^(32 - T0SZ) bytes, T0SZ a
            /// signed 4-bit value (-8..=7).
            T0SZ OFFSET(0) NUMBITS(4) [],
            /// `S` [4]: the sign of `T0SZ`, a copy of `T0SZ[3]`.
            S OFFSET(4) NUMBITS(1) [],
            /// `SL0` [7:6]: the walk's start level.
            SL0 OFFSET(6) NUMBITS(2) [
                Level2 = 0b00,
                Level1 = 0b01
            ],
            /// `IRGN0` [9:8]: inner cacheability of table walks.
            IRGN0 OFFSET(8) NUMBITS(2) [
                NonCacheable = 0b00,
                WriteBackWriteAllocate = 0b01,
                WriteThrough = 0b10,
                WriteBackNoWriteAllocate = 0b11
            ],
            /// `ORGN0` [11:10]: outer cacheability of table walks.
            ORGN0 OFFSET(10) NUMBITS(2) [
                NonCacheable = 0b00,
                WriteBackWriteAllocate = 0b01,
                WriteThrough = 0b10,
                WriteBackNoWriteAllocate = 0b11
            ],
            /// `SH0` [13:12]: shareability of table walks.
            SH0 OFFSET(12) NUMBITS(2) [
                NonShareable = 0b00,
                OuterShareable = 0b10,
                InnerShareable = 0b11
            ],
            /// Bit [31], UNK/SBOP (should be one).
            SBOP OFFSET(31) NUMBITS(1) []
        ]
    }
}

/// A translation level, 0 (top) to 3 (pages).
pub type Level = u8;

/// Bits resolved per level with the 4 KiB granule.
const BITS_PER_LEVEL: u32 = 9;
/// The architecture allows at most 16 concatenated tables at the start level.
const MAX_CONCAT_BITS: u32 = 4;

/// Which descriptor and register format the tables use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arch {
    /// VMSAv8-64 stage 2 (AArch64 `VTCR_EL2`/`VTTBR_EL2`).
    Aarch64,
    /// ARMv7 LPAE stage 2 (virtualization extensions, `VTCR`/`VTTBR`).
    Armv7,
}

/// CPU features that change the encoding or the maintenance policy.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Features {
    /// FEAT_S2FWB: `HCR_EL2.FWB` set, stage 2 forces the memory type.
    pub fwb: bool,
    /// FEAT_XNX: separate execute-never for EL1 and EL0 (`XN[1:0]`).
    pub xnx: bool,
    /// 16-bit VMIDs (`VTCR_EL2.VS`).
    pub vmid16: bool,
}

/// The shape of one guest's stage-2 tables.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Geometry {
    arch: Arch,
    ipa_bits: u8,
    pa_bits: u8,
    start_level: Level,
    features: Features,
    /// Index mask at the start level (the concatenated root's entries).
    root_mask: u16,
}

/// Size in bytes mapped by one entry at `level`.
#[inline]
pub const fn level_size(level: Level) -> u64 {
    1 << level_shift(level)
}

/// IPA bit where the index of `level` starts.
#[inline]
pub const fn level_shift(level: Level) -> u32 {
    PAGE_SHIFT + BITS_PER_LEVEL * (3 - level as u32)
}

impl Geometry {
    /// A VMSAv8-64 regime for `ipa_bits` (32..=48) on a CPU whose physical
    /// address range is `pa_bits` (one of the `ID_AA64MMFR0_EL1.PARange`
    /// sizes: 32, 36, 40, 42, 44, 48).
    pub fn aarch64(ipa_bits: u32, pa_bits: u32, features: Features) -> Result<Self, Error> {
        if ps_encoding(pa_bits).is_none() {
            return Err(Error::Unsupported { why: "physical address size not a PARange value" });
        }
        if !(32..=48).contains(&ipa_bits) || ipa_bits > pa_bits {
            return Err(Error::Unsupported {
                why: "IPA size outside 32..=48 or above the PA size",
            });
        }
        Ok(Self::with_root_mask(Self {
            arch: Arch::Aarch64,
            ipa_bits: ipa_bits as u8,
            pa_bits: pa_bits as u8,
            start_level: min_start_level(ipa_bits),
            features,
            root_mask: 0,
        }))
    }

    /// An ARMv7 LPAE regime for `ipa_bits` (25..=40; `VTCR.T0SZ` is a signed
    /// 4-bit field, so the size is 32 - T0SZ with T0SZ in -8..=7). Output
    /// addresses are 40 bits. The walk starts at level 2 up to 30 bits and at
    /// level 1 above, where a 40-bit space takes two concatenated tables.
    pub fn armv7(ipa_bits: u32) -> Result<Self, Error> {
        if !(25..=40).contains(&ipa_bits) {
            return Err(Error::Unsupported { why: "ARMv7 IPA size outside 25..=40" });
        }
        Ok(Self::with_root_mask(Self {
            arch: Arch::Armv7,
            ipa_bits: ipa_bits as u8,
            pa_bits: 40,
            start_level: if ipa_bits <= 30 { 2 } else { 1 },
            features: Features::default(),
            root_mask: 0,
        }))
    }

    /// `g` with its start-level index mask filled in.
    fn with_root_mask(g: Self) -> Self {
        Self { root_mask: (g.root_entries() - 1) as u16, ..g }
    }

    /// The descriptor and register format.
    pub fn arch(&self) -> Arch {
        self.arch
    }
    /// Size of the IPA space in bits.
    pub fn ipa_bits(&self) -> u32 {
        self.ipa_bits.into()
    }
    /// Size of the output (physical) address space in bits.
    pub fn pa_bits(&self) -> u32 {
        self.pa_bits.into()
    }
    /// The level the hardware walk starts at.
    pub fn start_level(&self) -> Level {
        self.start_level
    }
    /// The CPU features this regime assumes.
    pub fn features(&self) -> Features {
        self.features
    }
    /// One past the highest IPA.
    #[inline]
    pub fn ipa_limit(&self) -> u64 {
        1 << self.ipa_bits
    }

    /// Number of concatenated 4 KiB tables at the start level (1..=16).
    pub fn root_tables(&self) -> usize {
        let bits = self.ipa_bits as u32 - level_shift(self.start_level);
        1usize << bits.saturating_sub(BITS_PER_LEVEL)
    }

    /// Entries in the (concatenated) root.
    pub fn root_entries(&self) -> usize {
        1usize << (self.ipa_bits as u32 - level_shift(self.start_level))
    }

    /// Size and required alignment of the root in bytes.
    pub fn root_size(&self) -> u64 {
        self.root_tables() as u64 * PAGE_SIZE
    }

    /// Index of `ipa` in a table at `level`; at the start level the index
    /// spans all concatenated tables.
    #[inline]
    pub fn index(&self, level: Level, ipa: u64) -> usize {
        let mask = if level == self.start_level {
            u64::from(self.root_mask)
        } else {
            (1 << BITS_PER_LEVEL) - 1
        };
        ((ipa >> level_shift(level)) & mask) as usize
    }

    /// Whether a leaf (block) may be placed at `level`: 1 GiB at level 1,
    /// 2 MiB at level 2, pages at level 3. Level 0 has no blocks with 4 KiB.
    pub fn leaf_allowed(&self, level: Level) -> bool {
        level >= 1 && level >= self.start_level
    }

    /// Mask of the output-address bits a descriptor can hold.
    #[inline]
    pub fn oa_mask(&self) -> u64 {
        ((1u64 << self.pa_bits) - 1) & !(PAGE_SIZE - 1)
    }

    /// The value for `VTCR_EL2` (AArch64) or `VTCR` (ARMv7, in the low 32
    /// bits): table walks Inner Shareable, Normal WB-WA, 4 KiB granule.
    pub fn vtcr(&self) -> u64 {
        match self.arch {
            Arch::Aarch64 => {
                use regs::VTCR_EL2 as V;
                // The start level is 0..=2 (`min_start_level`).
                let sl0 = match self.start_level {
                    0 => V::SL0::Level0,
                    1 => V::SL0::Level1,
                    _ => V::SL0::Level2,
                };
                // A PA size `aarch64` accepted always has an encoding.
                let ps = ps_encoding(self.pa_bits.into()).unwrap_or(V::PS::PA32);
                let vs = if self.features.vmid16 { V::VS::SET } else { V::VS::CLEAR };
                let v = V::RES1::SET
                    + vs
                    + ps
                    + V::TG0::Granule4K
                    + V::SH0::InnerShareable
                    + V::ORGN0::WriteBackWriteAllocate
                    + V::IRGN0::WriteBackWriteAllocate
                    + sl0
                    + V::T0SZ.val(64 - u64::from(self.ipa_bits));
                v.value
            }
            Arch::Armv7 => {
                use regs::VTCR as V;
                // The start level is 1 or 2 (`armv7`).
                let sl0 = if self.start_level == 1 { V::SL0::Level1 } else { V::SL0::Level2 };
                // T0SZ is signed: 32 - ipa_bits in -8..=7, kept in 4 bits
                // (two's complement), its sign copied into S.
                let t0sz = 32 - i32::from(self.ipa_bits);
                let v = V::SBOP::SET
                    + V::SH0::InnerShareable
                    + V::ORGN0::WriteBackWriteAllocate
                    + V::IRGN0::WriteBackWriteAllocate
                    + sl0
                    + V::S.val(u32::from(t0sz < 0))
                    + V::T0SZ.val(t0sz as u32);
                u64::from(v.value)
            }
        }
    }

    /// The value for `VTTBR_EL2`/`VTTBR`: the root's address with the VMID
    /// in bits `[63:48]` (16-bit) or `[55:48]` (8-bit). The VMID is never lost:
    /// an out-of-range VMID or a misaligned or too-high root is an error.
    pub fn vttbr(&self, root: PhysAddr, vmid: Vmid) -> Result<u64, Error> {
        let v = u64::from(vmid.0);
        // The largest VMID the field holds, and the VMID in place.
        let (vmid_max, vmid_field) = match self.arch {
            Arch::Aarch64 if self.features.vmid16 => {
                (regs::VTTBR_EL2::VMID.mask, regs::VTTBR_EL2::VMID.val(v).value)
            }
            Arch::Aarch64 => (regs::VTTBR_EL2::VMID8.mask, regs::VTTBR_EL2::VMID8.val(v).value),
            Arch::Armv7 => (regs::VTTBR::VMID.mask, regs::VTTBR::VMID.val(v).value),
        };
        if v > vmid_max {
            return Err(Error::Unsupported { why: "VMID wider than the CPU's VMIDs" });
        }
        Error::check_aligned(root.get(), self.root_size())?;
        if root.get() >> self.pa_bits != 0 {
            let limit = 1 << self.pa_bits;
            return Err(Error::OutOfRange { start: root.get(), size: self.root_size(), limit });
        }
        Ok(root.get() | vmid_field)
    }
}

/// The smallest number of levels whose start level, with up to 16
/// concatenated tables, covers `ipa_bits`.
fn min_start_level(ipa_bits: u32) -> Level {
    (0..=2u8)
        .rev()
        .find(|&l| ipa_bits <= level_shift(l) + BITS_PER_LEVEL + MAX_CONCAT_BITS)
        .unwrap_or(0)
}

/// `VTCR_EL2.PS` / `ID_AA64MMFR0_EL1.PARange` encoding of a PA size.
fn ps_encoding(pa_bits: u32) -> Option<FieldValue<u64, regs::VTCR_EL2::Register>> {
    use regs::VTCR_EL2::PS;
    Some(match pa_bits {
        32 => PS::PA32,
        36 => PS::PA36,
        40 => PS::PA40,
        42 => PS::PA42,
        44 => PS::PA44,
        48 => PS::PA48,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn a64(ipa: u32) -> Geometry {
        Geometry::aarch64(ipa, 48, Features::default()).unwrap()
    }

    #[test]
    fn start_level_and_concatenation() {
        // (ipa bits, start level, root tables), worked out by hand:
        // a level-2 start covers 21 + 9 + 4 = 34 bits, level 1 up to 43.
        let cases = [
            (32, 2, 4),
            (34, 2, 16),
            (35, 1, 1),
            (39, 1, 1),
            (40, 1, 2),
            (42, 1, 8),
            (43, 1, 16),
            (44, 0, 1),
            (48, 0, 1),
        ];
        for (ipa, sl, n) in cases {
            let g = a64(ipa);
            assert_eq!((g.start_level(), g.root_tables()), (sl, n), "ipa {ipa}");
            assert_eq!(g.root_size(), n as u64 * 4096);
        }
    }

    #[test]
    fn forty_bit_ipa_indexes_the_second_root_table() {
        let g = a64(40);
        // Bit 39 set: entry 512 of the 1024-entry concatenated root, which
        // is entry 0 of the second 4 KiB table.
        assert_eq!(g.index(1, 1 << 39), 512);
        assert_eq!(g.index(1, (1 << 39) + (1 << 30)), 513);
        assert_eq!(g.index(2, (1 << 39) + (3 << 21)), 3);
    }

    #[test]
    fn vtcr_el2_values_from_the_arm_arm() {
        // 40-bit IPA, 40-bit PA, 8-bit VMID: T0SZ=24 (0x18), SL0=01 (0x40),
        // IRGN0=01 (0x100), ORGN0=01 (0x400), SH0=11 (0x3000), PS=010
        // (0x20000), RES1 bit 31.
        let g = Geometry::aarch64(40, 40, Features::default()).unwrap();
        assert_eq!(g.vtcr(), 0x8002_3558);
        // 48-bit IPA and PA with 16-bit VMIDs: T0SZ=16, SL0=10 (0x80),
        // PS=101 (0x50000), VS (0x80000).
        let f = Features { vmid16: true, ..Features::default() };
        let g = Geometry::aarch64(48, 48, f).unwrap();
        assert_eq!(g.vtcr(), 0x800D_3590);
        // 32-bit IPA: T0SZ=32 (0x20), SL0=00.
        let g = Geometry::aarch64(32, 32, Features::default()).unwrap();
        assert_eq!(g.vtcr(), 0x8000_3520);
    }

    #[test]
    fn armv7_vtcr_signed_t0sz() {
        // 40 bits: T0SZ = -8 = 0b1000, S = 1 (0x10), SL0 = 01 (0x40).
        let g = Geometry::armv7(40).unwrap();
        assert_eq!((g.start_level(), g.root_tables()), (1, 2));
        assert_eq!(g.vtcr(), 0x8000_3558);
        // 32 bits: T0SZ = 0, S = 0, level 1 with a 4-entry root.
        let g = Geometry::armv7(32).unwrap();
        assert_eq!(g.vtcr(), 0x8000_3540);
        assert_eq!(g.root_entries(), 4);
        // 30 bits: T0SZ = 2, SL0 = 00 (level 2, 512 entries).
        let g = Geometry::armv7(30).unwrap();
        assert_eq!((g.start_level(), g.root_entries()), (2, 512));
        assert_eq!(g.vtcr(), 0x8000_3502);
        // 25 bits: T0SZ = 7.
        assert_eq!(Geometry::armv7(25).unwrap().vtcr() & 0x1f, 7);
        assert_eq!(Geometry::armv7(41).map_err(|e| e.kind()), Err(ErrorKind::Unsupported));
        assert_eq!(Geometry::armv7(24).map_err(|e| e.kind()), Err(ErrorKind::Unsupported));
    }

    #[test]
    fn vtcr_fields_sit_where_the_arm_arm_puts_them() {
        use regs::{VTCR, VTCR_EL2, VTTBR, VTTBR_EL2};
        assert_eq!(VTCR_EL2::T0SZ.val(0x3f).value, 0x3f);
        assert_eq!(VTCR_EL2::SL0::Level0.value, 2 << 6);
        assert_eq!(VTCR_EL2::IRGN0::WriteBackWriteAllocate.value, 1 << 8);
        assert_eq!(VTCR_EL2::ORGN0::WriteBackWriteAllocate.value, 1 << 10);
        assert_eq!(VTCR_EL2::SH0::InnerShareable.value, 3 << 12);
        assert_eq!(VTCR_EL2::TG0::Granule16K.value, 2 << 14);
        assert_eq!(VTCR_EL2::PS::PA48.value, 5 << 16);
        assert_eq!(VTCR_EL2::VS::SET.value, 1 << 19);
        assert_eq!(VTCR_EL2::RES1::SET.value, 1 << 31);
        assert_eq!(VTCR::T0SZ.val(u32::MAX).value, 0xf);
        assert_eq!(VTCR::S::SET.value, 1 << 4);
        assert_eq!(VTCR::SL0::Level1.value, 1 << 6);
        assert_eq!(VTCR::SH0::InnerShareable.value, 3 << 12);
        assert_eq!(VTCR::SBOP::SET.value, 1 << 31);
        assert_eq!(VTTBR_EL2::VMID.val(0xffff).value, 0xffff << 48);
        assert_eq!(VTTBR_EL2::VMID8.val(0xff).value, 0xff << 48);
        assert_eq!(VTTBR::VMID.val(0x1ff).value, 0xff << 48);
    }

    #[test]
    fn vtcr_is_what_the_hand_encoding_gave() {
        // The encoding before the fields had names, for every regime.
        let old = |g: &Geometry| -> u64 {
            let walk = (0b01 << 8) | (0b01 << 10) | (0b11 << 12);
            let sl0 = u64::from(2 - g.start_level()) << 6;
            match g.arch() {
                Arch::Aarch64 => {
                    let t0sz = 64 - u64::from(g.ipa_bits());
                    let ps = u64::from(ps_encoding_old(g.pa_bits())) << 16;
                    let vs = u64::from(g.features().vmid16) << 19;
                    (1 << 31) | vs | ps | walk | sl0 | t0sz
                }
                Arch::Armv7 => {
                    let t0sz = (32 - i64::from(g.ipa_bits())) as u64 & 0xf;
                    (1 << 31) | walk | sl0 | ((t0sz >> 3) << 4) | t0sz
                }
            }
        };
        fn ps_encoding_old(pa_bits: u32) -> u8 {
            [32, 36, 40, 42, 44, 48].iter().position(|&b| b == pa_bits).unwrap() as u8
        }
        for pa in [32, 36, 40, 42, 44, 48] {
            for ipa in 32..=pa {
                for vmid16 in [false, true] {
                    let f = Features { vmid16, ..Features::default() };
                    let g = Geometry::aarch64(ipa, pa, f).unwrap();
                    assert_eq!(g.vtcr(), old(&g), "ipa {ipa} pa {pa} vmid16 {vmid16}");
                }
            }
        }
        for ipa in 25..=40 {
            let g = Geometry::armv7(ipa).unwrap();
            assert_eq!(g.vtcr(), old(&g), "ARMv7 ipa {ipa}");
        }
    }

    #[test]
    fn vttbr_keeps_the_vmid() {
        let g = a64(40);
        let root = PhysAddr(0x8000_2000);
        // A root of two concatenated tables must be 8 KiB aligned.
        assert_eq!(g.vttbr(root, Vmid(5)), Ok(0x0005_0000_8000_2000));
        assert_eq!(
            g.vttbr(PhysAddr(0x8000_1000), Vmid(5)).map_err(|e| e.kind()),
            Err(ErrorKind::Unaligned)
        );
        // 8-bit VMIDs unless VS is set.
        assert_eq!(g.vttbr(root, Vmid(256)).map_err(|e| e.kind()), Err(ErrorKind::Unsupported));
        let f = Features { vmid16: true, ..Features::default() };
        let g16 = Geometry::aarch64(40, 48, f).unwrap();
        assert_eq!(g16.vttbr(root, Vmid(0xabcd)), Ok(0xabcd_0000_8000_2000));
        // ARMv7: 8-bit VMID in [55:48], 40-bit BADDR.
        let g7 = Geometry::armv7(40).unwrap();
        assert_eq!(g7.vttbr(PhysAddr(0xff_8000_0000), Vmid(0x7f)), Ok(0x007f_00ff_8000_0000));
        assert_eq!(
            g7.vttbr(PhysAddr(1 << 40), Vmid(1)),
            Err(Error::OutOfRange { start: 1 << 40, size: 2 * PAGE_SIZE, limit: 1 << 40 })
        );
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert_eq!(
            Geometry::aarch64(31, 48, Features::default()).map_err(|e| e.kind()),
            Err(ErrorKind::Unsupported)
        );
        assert_eq!(
            Geometry::aarch64(49, 48, Features::default()).map_err(|e| e.kind()),
            Err(ErrorKind::Unsupported)
        );
        assert_eq!(
            Geometry::aarch64(44, 40, Features::default()).map_err(|e| e.kind()),
            Err(ErrorKind::Unsupported)
        );
        assert_eq!(
            Geometry::aarch64(40, 41, Features::default()).map_err(|e| e.kind()),
            Err(ErrorKind::Unsupported)
        );
    }
}
