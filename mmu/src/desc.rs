//! Stage-2 descriptors (VMSAv8-64 and ARMv7 LPAE share the layout with the
//! 4 KiB granule) and their attributes.
//!
//! ```text
//!  63  59 58  55 54 53 52  51  50 48 47          12 11 10 9  8 7  6 5     2 1 0
//! | ign | SW   | XN   | C | DBM | res | OA / table  | 0 |AF| SH | S2AP | MemAttr |T|V|
//! ```
//! `V` = valid; `T` = table (levels 0-2) or page (level 3), clear for a
//! block. XN is bit 54 alone on ARMv7 and without FEAT_XNX; `XN[1:0]` is
//! bits 54:53 with FEAT_XNX. ARMv7 output addresses stop at bit 39.

use crate::addr::PhysAddr;
use crate::error::Error;
use crate::geometry::{Arch, Geometry, Level};

/// Descriptor bit positions.
mod bits {
    pub const VALID: u64 = 1 << 0;
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    pub const MEMATTR_SHIFT: u32 = 2;
    pub const MEMATTR: u64 = 0xf << MEMATTR_SHIFT;
    pub const S2AP_R: u64 = 1 << 6;
    pub const S2AP_W: u64 = 1 << 7;
    pub const SH_SHIFT: u32 = 8;
    pub const SH: u64 = 0b11 << SH_SHIFT;
    pub const AF: u64 = 1 << 10;
    pub const CONTIGUOUS: u64 = 1 << 52;
    pub const XN0: u64 = 1 << 53;
    pub const XN1: u64 = 1 << 54;
    pub const SW_SHIFT: u32 = 55;
    pub const SW: u64 = 0xf << SW_SHIFT;
    /// Output address (leaf) or next-level table address: bits `[47:12]`.
    pub const OA: u64 = 0x0000_ffff_ffff_f000;
    /// Dirty bit modifier (FEAT_HAFDBS): the hardware may set `S2AP[1]`.
    pub const DBM: u64 = 1 << 51;
    /// The descriptor kind: valid, and table/page versus block.
    pub const KIND: u64 = VALID | TABLE_OR_PAGE;
    /// Bits that only restrict or grant access: changing them alone needs no
    /// break-before-make.
    pub const PERMISSIONS: u64 = S2AP_R | S2AP_W | XN0 | XN1 | AF | SW;
}

/// One 64-bit stage-2 descriptor value at some level. Linux's `pgd_t`,
/// `pud_t`, `pmd_t` and `pte_t` are all this type here; the level is known
/// from where the value was read.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Desc(u64);

/// A level-2 descriptor value (Linux's `pmd_t`).
pub type Pmd = Desc;
/// A level-3 descriptor value (Linux's `pte_t`).
pub type Pte = Desc;

/// Memory type of a leaf.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum MemType {
    /// Device-nGnRnE: strongly ordered MMIO.
    DeviceNGnRnE,
    /// Device-nGnRE: ordinary MMIO.
    DeviceNGnRE,
    /// Normal memory, non-cacheable.
    NormalNc,
    /// Normal memory, write-back cacheable (guest RAM).
    NormalWb,
}

/// Shareability domain of a leaf.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Shareability {
    /// Non-shareable.
    Non,
    /// Outer Shareable.
    Outer,
    /// Inner Shareable (what SMP guest RAM uses).
    Inner,
}

/// Which exception levels of the guest may execute from a leaf.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Exec {
    /// Execute-never at EL1 and EL0.
    Never,
    /// Executable at EL1 and EL0.
    All,
    /// Executable at EL1 only (needs FEAT_XNX).
    El1Only,
    /// Executable at EL0 only (needs FEAT_XNX).
    El0Only,
}

/// Stage-2 attributes of a leaf (block or page).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Attrs {
    /// `S2AP[0]`: the guest may read.
    pub read: bool,
    /// `S2AP[1]`: the guest may write.
    pub write: bool,
    /// Execute permission.
    pub exec: Exec,
    /// Memory type.
    pub mem: MemType,
    /// Shareability.
    pub sh: Shareability,
    /// Access flag; a clear AF makes the first access fault.
    pub af: bool,
    /// Contiguous hint.
    pub contiguous: bool,
    /// Software bits `[58:55]`, ignored by the hardware.
    pub sw: u8,
}

impl Attrs {
    /// Guest RAM: read, write, execute, Normal WB, Inner Shareable.
    pub const RAM: Attrs = Attrs {
        read: true,
        write: true,
        exec: Exec::All,
        mem: MemType::NormalWb,
        sh: Shareability::Inner,
        af: true,
        contiguous: false,
        sw: 0,
    };

    /// Read-only, non-executable guest RAM.
    pub const RAM_RO: Attrs = Attrs { write: false, exec: Exec::Never, ..Attrs::RAM };

    /// MMIO passed through: read, write, never executable, Device-nGnRE.
    pub const DEVICE: Attrs = Attrs {
        read: true,
        write: true,
        exec: Exec::Never,
        mem: MemType::DeviceNGnRE,
        sh: Shareability::Outer,
        af: true,
        contiguous: false,
        sw: 0,
    };

    /// Checks the attributes are encodable and sensible for `geo`.
    pub fn validate(&self, geo: &Geometry) -> Result<(), Error> {
        let device = matches!(self.mem, MemType::DeviceNGnRnE | MemType::DeviceNGnRE);
        let split_xn = matches!(self.exec, Exec::El1Only | Exec::El0Only);
        if device && self.exec != Exec::Never {
            return Err(Error::BadAttributes { why: "executable device memory" });
        }
        if self.sw > 0xf {
            return Err(Error::BadAttributes { why: "software bits beyond [58:55]" });
        }
        if split_xn && !(geo.arch() == Arch::Aarch64 && geo.features().xnx) {
            return Err(Error::BadAttributes { why: "EL1/EL0 execute control without FEAT_XNX" });
        }
        Ok(())
    }
}

impl Desc {
    /// The invalid descriptor.
    pub const INVALID: Desc = Desc(0);

    /// A descriptor from its raw bits.
    #[inline]
    pub const fn from_bits(bits: u64) -> Self {
        Desc(bits)
    }

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Bit 0.
    #[inline]
    pub const fn is_valid(self) -> bool {
        self.0 & bits::VALID != 0
    }

    /// A table descriptor, for an entry at `level` (0..=2).
    #[inline]
    pub const fn is_table(self, level: Level) -> bool {
        level < 3
            && self.0 & (bits::VALID | bits::TABLE_OR_PAGE) == bits::VALID | bits::TABLE_OR_PAGE
    }

    /// A leaf (block at levels 1-2, page at level 3). Level-0 blocks and
    /// level-3 "blocks" are reserved encodings and are not leaves.
    #[inline]
    pub const fn is_leaf(self, level: Level) -> bool {
        match level {
            1 | 2 => self.0 & (bits::VALID | bits::TABLE_OR_PAGE) == bits::VALID,
            3 => self.0 & (bits::VALID | bits::TABLE_OR_PAGE) == bits::VALID | bits::TABLE_OR_PAGE,
            _ => false,
        }
    }

    /// A table descriptor pointing at `table`.
    #[inline]
    pub const fn table(table: PhysAddr) -> Self {
        Desc(table.get() | bits::VALID | bits::TABLE_OR_PAGE)
    }

    /// The output address (leaf) or next table (table), from bits `[47:12]`.
    #[inline]
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 & bits::OA)
    }

    /// The same descriptor with output (or table) address `pa`, which must
    /// be aligned to what the entry maps.
    #[inline]
    pub const fn with_addr(self, pa: PhysAddr) -> Self {
        Desc((self.0 & !bits::OA) | (pa.get() & bits::OA))
    }

    /// Every bit but the address: what two leaves of a block-sized range
    /// must share to become one block.
    #[inline]
    pub const fn attr_bits(self) -> u64 {
        self.0 & !bits::OA
    }

    /// This leaf as a leaf of `level`, with its address and attributes: a
    /// page at level 3, a block above (the kind bit is the only
    /// difference).
    #[inline]
    pub const fn as_leaf_of(self, level: Level) -> Self {
        let kind = if level == 3 { bits::VALID | bits::TABLE_OR_PAGE } else { bits::VALID };
        Desc((self.0 & !bits::KIND) | kind)
    }

    /// Entry `i` of the table that splits this block of `level`: the same
    /// attributes, a leaf of the next level, at the matching address.
    #[inline]
    pub const fn split_entry(self, level: Level, i: usize) -> Self {
        let child = self.as_leaf_of(level + 1);
        let pa = self.addr().get() + ((i as u64) << crate::geometry::level_shift(level + 1));
        child.with_addr(PhysAddr(pa))
    }

    /// `S2AP[1]`: whether the guest may write.
    #[inline]
    pub const fn is_writable(self) -> bool {
        self.0 & bits::S2AP_W != 0
    }

    /// The same leaf without write permission (a permission-only change).
    #[inline]
    pub const fn without_write(self) -> Self {
        Desc(self.0 & !bits::S2AP_W)
    }

    /// The dirty bit modifier: the hardware may make the leaf writable by
    /// itself, which defeats write-protection.
    #[inline]
    pub const fn has_dbm(self) -> bool {
        self.0 & bits::DBM != 0
    }

    /// The contiguous hint: the leaf is one of 16 that map one contiguous
    /// range alike.
    #[inline]
    pub const fn is_contiguous(self) -> bool {
        self.0 & bits::CONTIGUOUS != 0
    }

    /// A leaf at `level` mapping `pa` with `attrs`. `pa` must be aligned to
    /// the level's size and `attrs` validated against `geo`.
    #[inline]
    pub fn leaf(geo: &Geometry, level: Level, pa: PhysAddr, attrs: &Attrs) -> Self {
        debug_assert!(geo.leaf_allowed(level) && pa.get() & !geo.oa_mask() == 0);
        let kind = if level == 3 { bits::VALID | bits::TABLE_OR_PAGE } else { bits::VALID };
        Desc(pa.get() | kind | encode_attrs(geo, attrs))
    }

    /// Decodes the attributes of a leaf.
    pub fn attrs(self, geo: &Geometry) -> Attrs {
        let v = self.0;
        let memattr = ((v & bits::MEMATTR) >> bits::MEMATTR_SHIFT) as u8;
        let mem = match (geo.features().fwb, memattr) {
            (false, 0b0000) | (true, 0b0000) => MemType::DeviceNGnRnE,
            (false, 0b0001) | (true, 0b0001) => MemType::DeviceNGnRE,
            (false, 0b0101) | (true, 0b0101) => MemType::NormalNc,
            _ => MemType::NormalWb,
        };
        let sh = match (v & bits::SH) >> bits::SH_SHIFT {
            0b11 => Shareability::Inner,
            0b10 => Shareability::Outer,
            _ => Shareability::Non,
        };
        let exec = if geo.arch() == Arch::Aarch64 && geo.features().xnx {
            match (v & bits::XN1 != 0, v & bits::XN0 != 0) {
                (false, false) => Exec::All,
                (false, true) => Exec::El0Only,
                (true, false) => Exec::Never,
                (true, true) => Exec::El1Only,
            }
        } else if v & bits::XN1 != 0 {
            Exec::Never
        } else {
            Exec::All
        };
        Attrs {
            read: v & bits::S2AP_R != 0,
            write: v & bits::S2AP_W != 0,
            exec,
            mem,
            sh,
            af: v & bits::AF != 0,
            contiguous: v & bits::CONTIGUOUS != 0,
            sw: ((v & bits::SW) >> bits::SW_SHIFT) as u8,
        }
    }

    /// Replaces the attributes of a leaf, keeping its address and kind.
    pub fn with_attrs(self, geo: &Geometry, attrs: &Attrs) -> Self {
        let keep = self.0 & (bits::OA | bits::KIND);
        Desc(keep | encode_attrs(geo, attrs))
    }

    /// Whether going from `self` to `new` (both valid leaves of one level)
    /// changes only permission, access-flag or software bits, which the
    /// architecture allows in place; anything else (output address, memory
    /// type, shareability, contiguous hint) needs break-before-make.
    pub fn only_permissions_differ(self, new: Desc) -> bool {
        (self.0 ^ new.0) & !bits::PERMISSIONS == 0
    }

    /// Software bits `[58:55]`.
    pub const fn sw(self) -> u8 {
        ((self.0 & bits::SW) >> bits::SW_SHIFT) as u8
    }
}

/// Linux's `pmd_same()`: two reads of a pmd are the same entry.
#[inline]
pub fn pmd_same(a: Pmd, b: Pmd) -> bool {
    a == b
}

#[inline]
fn encode_attrs(geo: &Geometry, a: &Attrs) -> u64 {
    let fwb = geo.features().fwb;
    let memattr: u64 = match (a.mem, fwb) {
        (MemType::DeviceNGnRnE, _) => 0b0000,
        (MemType::DeviceNGnRE, _) => 0b0001,
        (MemType::NormalNc, _) => 0b0101,
        // Without FWB: outer WB, inner WB. With FWB: force Normal WB.
        (MemType::NormalWb, false) => 0b1111,
        (MemType::NormalWb, true) => 0b0110,
    };
    let sh: u64 = match a.sh {
        Shareability::Non => 0b00,
        Shareability::Outer => 0b10,
        Shareability::Inner => 0b11,
    };
    let xn = match a.exec {
        Exec::All => 0,
        Exec::Never => bits::XN1,
        Exec::El1Only => bits::XN1 | bits::XN0,
        Exec::El0Only => bits::XN0,
    };
    (memattr << bits::MEMATTR_SHIFT)
        | (sh << bits::SH_SHIFT)
        | if a.read { bits::S2AP_R } else { 0 }
        | if a.write { bits::S2AP_W } else { 0 }
        | if a.af { bits::AF } else { 0 }
        | if a.contiguous { bits::CONTIGUOUS } else { 0 }
        | xn
        | (u64::from(a.sw & 0xf) << bits::SW_SHIFT)
}

impl core::fmt::Debug for Desc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Desc({:#018x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::geometry::Features;

    fn geo(fwb: bool, xnx: bool) -> Geometry {
        Geometry::aarch64(40, 48, Features { fwb, xnx, ..Features::default() }).unwrap()
    }

    #[test]
    fn encodings_derived_by_hand() {
        let g = geo(false, false);
        // RAM page: valid|page (0b11), MemAttr 0b1111 (0x3c), S2AP RW (0xc0),
        // SH inner (0x300), AF (0x400): 0x7ff plus the address.
        let d = Desc::leaf(&g, 3, PhysAddr(0x4000_1000), &Attrs::RAM);
        assert_eq!(d.bits(), 0x4000_17ff);
        assert!(d.is_leaf(3) && !d.is_table(3));
        // The same attributes as a 2 MiB block: bit 1 clear.
        let b = Desc::leaf(&g, 2, PhysAddr(0x4020_0000), &Attrs::RAM);
        assert_eq!(b.bits(), 0x4020_07fd);
        assert!(b.is_leaf(2) && !b.is_table(2));
        // Device-nGnRE, outer shareable, XN: MemAttr 0b0001 (0x4), RW (0xc0),
        // SH 0b10 (0x200), AF (0x400), XN (bit 54), page.
        let dev = Desc::leaf(&g, 3, PhysAddr(0x0900_0000), &Attrs::DEVICE);
        assert_eq!(dev.bits(), 0x0040_0000_0900_06c7);
        // Read-only, XN.
        let ro = Desc::leaf(&g, 3, PhysAddr(0x1000), &Attrs::RAM_RO);
        assert_eq!(ro.bits(), 0x0040_0000_0000_177f);
    }

    #[test]
    fn fwb_memattr() {
        let g = geo(true, false);
        let d = Desc::leaf(&g, 3, PhysAddr(0x1000), &Attrs::RAM);
        assert_eq!((d.bits() >> 2) & 0xf, 0b0110);
        assert_eq!(d.attrs(&g).mem, MemType::NormalWb);
        let nc = Attrs { mem: MemType::NormalNc, ..Attrs::RAM };
        assert_eq!((Desc::leaf(&g, 3, PhysAddr(0), &nc).bits() >> 2) & 0xf, 0b0101);
    }

    #[test]
    fn xnx_encodings() {
        let g = geo(false, true);
        for (exec, xn) in
            [(Exec::All, 0b00), (Exec::El0Only, 0b01), (Exec::Never, 0b10), (Exec::El1Only, 0b11)]
        {
            let a = Attrs { exec, ..Attrs::RAM };
            let d = Desc::leaf(&g, 3, PhysAddr(0), &a);
            assert_eq!((d.bits() >> 53) & 3, xn, "{exec:?}");
            assert_eq!(d.attrs(&g), a);
        }
    }

    #[test]
    fn attribute_round_trip() {
        let g = geo(false, false);
        for mem in
            [MemType::DeviceNGnRnE, MemType::DeviceNGnRE, MemType::NormalNc, MemType::NormalWb]
        {
            for sh in [Shareability::Non, Shareability::Outer, Shareability::Inner] {
                for (read, write) in [(false, false), (true, false), (false, true), (true, true)] {
                    let a = Attrs {
                        read,
                        write,
                        mem,
                        sh,
                        exec: Exec::Never,
                        af: read,
                        contiguous: write,
                        sw: 9,
                    };
                    assert_eq!(Desc::leaf(&g, 2, PhysAddr(0x20_0000), &a).attrs(&g), a);
                }
            }
        }
    }

    #[test]
    fn validation() {
        let g = geo(false, false);
        assert_eq!(
            Attrs { exec: Exec::All, ..Attrs::DEVICE }.validate(&g).map_err(|e| e.kind()),
            Err(ErrorKind::BadAttributes)
        );
        assert_eq!(
            Attrs { exec: Exec::El1Only, ..Attrs::RAM }.validate(&g).map_err(|e| e.kind()),
            Err(ErrorKind::BadAttributes)
        );
        assert_eq!(
            Attrs { sw: 16, ..Attrs::RAM }.validate(&g).map_err(|e| e.kind()),
            Err(ErrorKind::BadAttributes)
        );
        assert_eq!(Attrs::RAM.validate(&g), Ok(()));
        assert_eq!(Attrs { exec: Exec::El1Only, ..Attrs::RAM }.validate(&geo(false, true)), Ok(()));
        let v7 = Geometry::armv7(40).unwrap();
        assert_eq!(
            Attrs { exec: Exec::El0Only, ..Attrs::RAM }.validate(&v7).map_err(|e| e.kind()),
            Err(ErrorKind::BadAttributes)
        );
    }

    #[test]
    fn permission_only_changes() {
        let g = geo(false, false);
        let rw = Desc::leaf(&g, 3, PhysAddr(0x1000), &Attrs::RAM);
        let ro = rw.with_attrs(&g, &Attrs { write: false, ..Attrs::RAM });
        assert!(rw.only_permissions_differ(ro));
        let nc = rw.with_attrs(&g, &Attrs { mem: MemType::NormalNc, ..Attrs::RAM });
        assert!(!rw.only_permissions_differ(nc));
        let moved = Desc::leaf(&g, 3, PhysAddr(0x2000), &Attrs::RAM);
        assert!(!rw.only_permissions_differ(moved));
    }
}
