//! Level geometry of a stage-2 regime with the 4 KiB granule, and the
//! VTCR/VTTBR values that describe it to the hardware.
//!
//! Each level resolves 9 IPA bits above the 12-bit page offset: level 3
//! bits `[20:12]`, level 2 `[29:21]`, level 1 `[38:30]`, level 0 `[47:39]`. Stage 2
//! may start its walk with up to 16 *concatenated* tables, so the start
//! level is the highest one whose span times 16 tables still covers the
//! IPA space. That gives the fewest levels for every size, as KVM does.

use crate::addr::{PhysAddr, Vmid, PAGE_SHIFT, PAGE_SIZE};
use crate::error::Error;

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
        // IRGN0 = ORGN0 = 0b01 (WB-WA), SH0 = 0b11 (Inner Shareable).
        const WALK_ATTRS: u64 = (0b01 << 8) | (0b01 << 10) | (0b11 << 12);
        // Bit 31 is RES1 on AArch64 and should-be-one on ARMv7.
        const RES1: u64 = 1 << 31;
        // SL0 with the 4 KiB granule: 0b00 level 2, 0b01 level 1, 0b10 level 0.
        let sl0 = u64::from(2 - self.start_level) << 6;
        match self.arch {
            Arch::Aarch64 => {
                let t0sz = 64 - u64::from(self.ipa_bits);
                let ps = u64::from(ps_encoding(self.pa_bits.into()).unwrap_or(0)) << 16;
                let vs = u64::from(self.features.vmid16) << 19;
                RES1 | vs | ps | WALK_ATTRS | sl0 | t0sz
            }
            Arch::Armv7 => {
                // T0SZ is signed: 32 - ipa_bits in -8..=7, stored in 4 bits,
                // with its sign copied into S (bit 4).
                let t0sz = (32 - i64::from(self.ipa_bits)) as u64 & 0xf;
                let s = (t0sz >> 3) << 4;
                RES1 | WALK_ATTRS | sl0 | s | t0sz
            }
        }
    }

    /// The value for `VTTBR_EL2`/`VTTBR`: the root's address with the VMID
    /// in bits `[63:48]` (16-bit) or `[55:48]` (8-bit). The VMID is never lost:
    /// an out-of-range VMID or a misaligned or too-high root is an error.
    pub fn vttbr(&self, root: PhysAddr, vmid: Vmid) -> Result<u64, Error> {
        let vmid_bits = if self.arch == Arch::Aarch64 && self.features.vmid16 { 16 } else { 8 };
        if u32::from(vmid.0) >= 1 << vmid_bits {
            return Err(Error::Unsupported { why: "VMID wider than the CPU's VMIDs" });
        }
        Error::check_aligned(root.get(), self.root_size())?;
        if root.get() >> self.pa_bits != 0 {
            let limit = 1 << self.pa_bits;
            return Err(Error::OutOfRange { start: root.get(), size: self.root_size(), limit });
        }
        Ok(root.get() | u64::from(vmid.0) << 48)
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
fn ps_encoding(pa_bits: u32) -> Option<u8> {
    Some(match pa_bits {
        32 => 0,
        36 => 1,
        40 => 2,
        42 => 3,
        44 => 4,
        48 => 5,
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
