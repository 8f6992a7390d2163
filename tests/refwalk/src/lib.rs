//! Reference stage-2 translation walker.
//!
//! This crate translates an intermediate physical address (IPA) through a
//! set of stage-2 translation tables exactly as the Arm architecture defines
//! it, so that the tests of the `mmu` crate can check that the tables `mmu`
//! builds mean what they are supposed to mean.
//!
//! It is written directly from the architecture documents (Arm ARM DDI 0487
//! chapter D8 "The AArch64 Virtual Memory System Architecture" and its
//! translation pseudocode, and ARMv7-A ARM DDI 0406 section B3.6 "Long-descriptor
//! translation table format") and deliberately shares **no** code, constants
//! or types with `mmu`: a checker that reused the code under test would only
//! confirm the code's own mistakes. Plain, obviously-correct code is preferred
//! over clever code here.
//!
//! Scope: 4 KiB granule, stage 2 only, in two formats:
//!
//! * VMSAv8-64 (`VTCR_EL2` / `VTTBR_EL2`), IPA sizes 25..=48 bits, start
//!   levels 0..=2, up to 16 concatenated tables at the start level;
//! * ARMv7 LPAE (`VTCR` / `VTTBR` of the Virtualization Extensions), IPA
//!   sizes 25..=40 bits, start levels 1..=2, 40-bit output addresses.
//!
//! Modelled implementation (where the architecture leaves a choice):
//!
//! * AArch64: `PAMax` is 48 bits; FEAT_LPA, FEAT_LPA2, FEAT_TTST, FEAT_D128,
//!   FEAT_S2PIE/S2POE and hardware Access flag / dirty state management are
//!   not implemented or not enabled (the register decoders reject the control
//!   bits that would turn them on). FEAT_S2FWB (with `HCR_EL2.FWB`) and
//!   FEAT_XNX are selected by the caller.
//! * No hardware management of the Access flag: a leaf with AF == 0 yields an
//!   Access flag fault.
//! * Permission faults are not generated: the walk reports the permissions
//!   and the caller decides.

use std::fmt;

/// Translation table format of the stage-2 regime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// VMSAv8-64 stage 2, controlled by `VTCR_EL2` / `VTTBR_EL2`.
    Aarch64 {
        /// `HCR_EL2.FWB` is 1 (FEAT_S2FWB): MemAttr is decoded in the
        /// "forced write-back" form.
        fwb: bool,
        /// FEAT_XNX is implemented: descriptor bits \[54:53\] are XN\[1:0\].
        xnx: bool,
    },
    /// ARMv7 LPAE stage 2, controlled by `VTCR` / `VTTBR`.
    Armv7,
}

/// A decoded stage-2 translation regime.
///
/// Normally produced by [`regime_aarch64`] or [`regime_armv7`]; the fields are
/// public so that tests can also build one by hand. [`translate`] reports a
/// Translation fault at the top level for a hand-built regime whose
/// geometry the architecture does not permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regime {
    /// Descriptor format.
    pub format: Format,
    /// Size of the input (IPA) space in bits: IPAs are `0..2^ipa_bits`.
    pub ipa_bits: u32,
    /// Level of the first lookup (0, 1 or 2).
    pub start_level: u32,
    /// Physical address of the first (possibly concatenated) start-level table.
    pub root_pa: u64,
    /// Output address size in bits (from `VTCR_EL2.PS`; 40 for ARMv7).
    pub pa_bits: u32,
    /// VMID that tags the TLB entries of this regime.
    pub vmid: u16,
}

impl Regime {
    /// Number of IPA bits resolved by the start-level lookup (9 for one full
    /// table, more when tables are concatenated, fewer for a short table).
    pub fn start_index_bits(&self) -> u32 {
        self.ipa_bits.saturating_sub(level_shift(self.start_level))
    }

    /// Size in bytes of the start-level table, all concatenated tables
    /// included. `root_pa` must be aligned to this.
    pub fn root_table_bytes(&self) -> u64 {
        8u64 << self.start_index_bits()
    }

    /// Number of 4 KiB tables concatenated at the start level (1 when the
    /// start-level table is a single table, full or short).
    pub fn root_table_count(&self) -> u64 {
        (self.root_table_bytes() / 4096).max(1)
    }
}

/// Why a register pair does not describe a usable stage-2 regime.
///
/// Each variant is an encoding that the architecture calls reserved, invalid
/// or CONSTRAINED UNPREDICTABLE for the 4 KiB granule, or (for
/// [`RegimeError::Unsupported`]) a feature this model does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegimeError {
    /// `VTCR_EL2.TG0` does not select the 4 KiB granule.
    Granule {
        /// The TG0 field value.
        tg0: u64,
    },
    /// `VTCR_EL2.T0SZ` outside 16..=39 (IPA larger than 48 bits needs
    /// FEAT_LPA2, smaller than 25 bits needs FEAT_TTST).
    T0sz {
        /// The T0SZ field value.
        t0sz: u64,
    },
    /// ARMv7 `VTCR.S` (bit 4) differs from `VTCR.T0SZ[3]`.
    SignMismatch {
        /// The VTCR value.
        vtcr: u32,
    },
    /// `SL0` is a reserved encoding (0b11 on AArch64, 0b1x on ARMv7).
    ReservedSl0 {
        /// The SL0 field value.
        sl0: u64,
    },
    /// The start level cannot translate an IPA of this size: it would
    /// resolve no bit at all, or need more than 16 concatenated tables.
    InconsistentStartLevel {
        /// IPA size in bits.
        ipa_bits: u32,
        /// Start level selected by SL0.
        start_level: u32,
    },
    /// `VTCR_EL2.PS` is a reserved encoding (0b110, 0b111 without FEAT_LPA).
    ReservedPs {
        /// The PS field value.
        ps: u64,
    },
    /// `SH0` is 0b01 (reserved).
    ReservedShareability,
    /// The base address is not aligned to the size of the start-level table
    /// (bits \[x-1:1\] of `VTTBR_EL2`, \[x-1:0\] of ARMv7 `VTTBR`, are not 0).
    MisalignedRoot {
        /// Base address taken from the register.
        root_pa: u64,
        /// Required alignment in bytes.
        align: u64,
    },
    /// ARMv7 `VTTBR` bits \[47:40\] or \[63:56\] (UNK/SBZP) are not zero.
    ReservedVttbrBits {
        /// The VTTBR value.
        vttbr: u64,
    },
    /// A control bit is set that enables a feature this model does not
    /// implement (the name is the `VTCR_EL2` field).
    Unsupported {
        /// Name of the field.
        field: &'static str,
    },
}

impl fmt::Display for RegimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegimeError::Granule { tg0 } => write!(f, "TG0 = {tg0:#b} is not the 4 KiB granule"),
            RegimeError::T0sz { t0sz } => write!(f, "T0SZ = {t0sz} is out of range"),
            RegimeError::SignMismatch { vtcr } => {
                write!(f, "VTCR.S does not match VTCR.T0SZ[3] (VTCR = {vtcr:#x})")
            }
            RegimeError::ReservedSl0 { sl0 } => write!(f, "SL0 = {sl0:#b} is reserved"),
            RegimeError::InconsistentStartLevel { ipa_bits, start_level } => write!(
                f,
                "a {ipa_bits}-bit IPA cannot be translated starting at level {start_level}"
            ),
            RegimeError::ReservedPs { ps } => write!(f, "PS = {ps:#b} is reserved"),
            RegimeError::ReservedShareability => write!(f, "SH0 = 0b01 is reserved"),
            RegimeError::MisalignedRoot { root_pa, align } => {
                write!(f, "root table address {root_pa:#x} is not aligned to {align:#x} bytes")
            }
            RegimeError::ReservedVttbrBits { vttbr } => {
                write!(f, "reserved VTTBR bits are set (VTTBR = {vttbr:#x})")
            }
            RegimeError::Unsupported { field } => {
                write!(f, "VTCR_EL2.{field} enables a feature this model does not implement")
            }
        }
    }
}

impl std::error::Error for RegimeError {}

/// Cacheability of one level (inner or outer) of Normal memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Non-cacheable.
    NonCacheable,
    /// Write-Through cacheable.
    WriteThrough,
    /// Write-Back cacheable.
    WriteBack,
}

/// Stage-2 memory type given by a leaf descriptor's MemAttr\[3:0\]
/// (descriptor bits \[5:2\]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemType {
    /// Device-nGnRnE (ARMv7: Strongly-ordered).
    DeviceNGnRnE,
    /// Device-nGnRE (ARMv7: Device).
    DeviceNGnRE,
    /// Device-nGRE.
    DeviceNGRE,
    /// Device-GRE.
    DeviceGRE,
    /// Normal memory with the given cacheability.
    Normal {
        /// Outer cacheability (MemAttr\[3:2\]).
        outer: Cache,
        /// Inner cacheability (MemAttr\[1:0\]).
        inner: Cache,
    },
    /// FEAT_S2FWB, MemAttr\[2:0\] = 0b110: Normal Write-Back forced whatever
    /// stage 1 says.
    NormalForceWb,
    /// FEAT_S2FWB, MemAttr\[2:0\] = 0b111: Normal, the stage 1 attributes are
    /// used.
    NormalUseStage1,
    /// An encoding the architecture calls UNPREDICTABLE or reserved:
    /// without FWB, Normal with MemAttr\[1:0\] = 0b00 (0b0100, 0b1000, 0b1100);
    /// with FWB, MemAttr\[2:0\] = 0b100; on ARMv7 also Device with
    /// MemAttr\[1\] = 1 (0b0010, 0b0011), which ARMv7 does not define.
    /// Added to the requested API so that a checker never mistakes such a
    /// descriptor for a well-defined one.
    Unpredictable {
        /// The raw MemAttr\[3:0\] value.
        memattr: u8,
    },
}

/// A successful stage-2 translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// Output physical address.
    pub pa: u64,
    /// Level of the leaf descriptor (1, 2 or 3).
    pub level: u32,
    /// Size of the region the leaf maps: 1 GiB, 2 MiB or 4 KiB.
    pub block_size: u64,
    /// S2AP\[0\] (bit 6): stage 2 permits reads.
    pub read: bool,
    /// S2AP\[1\] (bit 7): stage 2 permits writes.
    pub write: bool,
    /// Stage 2 permits instruction fetches made at EL1 (ARMv7: PL1).
    pub exec_el1: bool,
    /// Stage 2 permits instruction fetches made at EL0 (ARMv7: PL0).
    pub exec_el0: bool,
    /// Memory type from MemAttr.
    pub mem: MemType,
    /// SH\[1:0\] (bits \[9:8\]) as stored: 0b00 Non-shareable, 0b10 Outer
    /// Shareable, 0b11 Inner Shareable, 0b01 reserved.
    pub sh: u8,
    /// Access flag (bit 10). Always true in a successful translation, since
    /// AF == 0 faults.
    pub af: bool,
    /// Contiguous hint (bit 52).
    pub contiguous: bool,
    /// Bits \[58:55\], reserved for software use.
    pub sw: u8,
    /// DBM (bit 51); always false for ARMv7, which has no such bit.
    pub dbm: bool,
}

/// A stage-2 fault, with the lookup level the architecture reports it at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Translation fault.
    Translation {
        /// Lookup level.
        level: u32,
    },
    /// Address size fault.
    AddressSize {
        /// Lookup level.
        level: u32,
    },
    /// Access flag fault.
    AccessFlag {
        /// Lookup level.
        level: u32,
    },
}

/// log2 of the granule (4 KiB).
const GRANULE_BITS: u32 = 12;
/// IPA bits resolved by one full table of 512 entries.
const STRIDE: u32 = 9;
/// Up to 2^4 = 16 tables may be concatenated at the start level.
const MAX_CONCAT_BITS: u32 = 4;

/// Position of the lowest IPA bit resolved at `level` (39, 30, 21, 12); a
/// leaf at `level` maps `1 << level_shift(level)` bytes.
fn level_shift(level: u32) -> u32 {
    GRANULE_BITS + STRIDE * (3 - level)
}

/// `width` bits of `value` starting at bit `lo`.
fn field(value: u64, lo: u32, width: u32) -> u64 {
    (value >> lo) & ((1u64 << width) - 1)
}

/// Mask with bits `hi..=lo` set.
fn mask(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// The start-level rule shared by both formats (AArch64.S2InconsistentSL;
/// the AArch32 walk applies the same bounds): the start level must resolve
/// at least 1 IPA bit and at most 9 + 4 (16 concatenated tables).
fn check_start_level(ipa_bits: u32, start_level: u32) -> Result<(), RegimeError> {
    let min = level_shift(start_level) + 1;
    let max = level_shift(start_level) + STRIDE + MAX_CONCAT_BITS;
    if !(min..=max).contains(&ipa_bits) {
        return Err(RegimeError::InconsistentStartLevel { ipa_bits, start_level });
    }
    Ok(())
}

/// `root_pa` must be aligned to the size of the whole start-level table.
fn check_root_alignment(root_pa: u64, ipa_bits: u32, start_level: u32) -> Result<(), RegimeError> {
    let align = 8u64 << (ipa_bits - level_shift(start_level));
    if !root_pa.is_multiple_of(align) {
        return Err(RegimeError::MisalignedRoot { root_pa, align });
    }
    Ok(())
}

/// `VTCR_EL2` bits that turn on features this model does not implement.
const UNSUPPORTED_VTCR_EL2_BITS: &[(u32, &str)] =
    &[(21, "HA"), (22, "HD"), (32, "DS"), (33, "SL2"), (36, "S2PIE"), (37, "S2POE"), (38, "D128")];

/// Decode `VTCR_EL2` / `VTTBR_EL2` as an AArch64 EL2 with the 4 KiB granule
/// does. `fwb` is the effective `HCR_EL2.FWB`, `xnx` whether FEAT_XNX is
/// implemented.
///
/// Fields: T0SZ \[5:0\], SL0 \[7:6\], IRGN0 \[9:8\], ORGN0 \[11:10\], SH0 \[13:12\],
/// TG0 \[15:14\], PS \[18:16\], VS \[19\]; `VTTBR_EL2` BADDR \[47:1\] (bit 0 is
/// CnP and is ignored), VMID \[63:48\] (only \[55:48\] when VS = 0).
///
/// An IPA size larger than the PS size is accepted: the architecture only
/// constrains the IPA size against PAMax, which this model takes as 48.
pub fn regime_aarch64(
    vtcr_el2: u64,
    vttbr_el2: u64,
    fwb: bool,
    xnx: bool,
) -> Result<Regime, RegimeError> {
    for &(bit, name) in UNSUPPORTED_VTCR_EL2_BITS {
        if field(vtcr_el2, bit, 1) == 1 {
            return Err(RegimeError::Unsupported { field: name });
        }
    }

    let tg0 = field(vtcr_el2, 14, 2);
    if tg0 != 0b00 {
        return Err(RegimeError::Granule { tg0 });
    }

    let t0sz = field(vtcr_el2, 0, 6);
    if !(16..=39).contains(&t0sz) {
        return Err(RegimeError::T0sz { t0sz });
    }
    let ipa_bits = 64 - t0sz as u32;

    let sl0 = field(vtcr_el2, 6, 2);
    let start_level = match sl0 {
        0b00 => 2,
        0b01 => 1,
        0b10 => 0,
        _ => return Err(RegimeError::ReservedSl0 { sl0 }),
    };
    check_start_level(ipa_bits, start_level)?;

    if field(vtcr_el2, 12, 2) == 0b01 {
        return Err(RegimeError::ReservedShareability);
    }

    let ps = field(vtcr_el2, 16, 3);
    let pa_bits = match ps {
        0b000 => 32,
        0b001 => 36,
        0b010 => 40,
        0b011 => 42,
        0b100 => 44,
        0b101 => 48,
        _ => return Err(RegimeError::ReservedPs { ps }),
    };

    let root_pa = vttbr_el2 & mask(47, 1);
    check_root_alignment(root_pa, ipa_bits, start_level)?;

    let vs = field(vtcr_el2, 19, 1) == 1;
    let vmid = if vs { field(vttbr_el2, 48, 16) } else { field(vttbr_el2, 48, 8) } as u16;

    Ok(Regime {
        format: Format::Aarch64 { fwb, xnx },
        ipa_bits,
        start_level,
        root_pa,
        pa_bits,
        vmid,
    })
}

/// Decode ARMv7 `VTCR` / `VTTBR` (Virtualization Extensions, LPAE).
///
/// Fields: T0SZ \[3:0\] (signed), S \[4\] (must equal T0SZ\[3\]), SL0 \[7:6\]
/// (0b00 level 2, 0b01 level 1), IRGN0 \[9:8\], ORGN0 \[11:10\], SH0 \[13:12\];
/// IPA size = 32 - T0SZ. `VTTBR`: BADDR \[39:x\], VMID \[55:48\]; bits \[47:40\]
/// and \[63:56\] are UNK/SBZP and rejected when set.
pub fn regime_armv7(vtcr: u32, vttbr: u64) -> Result<Regime, RegimeError> {
    let t0sz_field = vtcr & 0xF;
    let s = (vtcr >> 4) & 1;
    if s != (t0sz_field >> 3) & 1 {
        return Err(RegimeError::SignMismatch { vtcr });
    }
    // Sign-extend the 4-bit field: 0b1000 is -8, 0b0111 is 7.
    let t0sz: i32 =
        if t0sz_field & 0b1000 != 0 { t0sz_field as i32 - 16 } else { t0sz_field as i32 };
    let ipa_bits = (32 - t0sz) as u32; // 25..=40

    let sl0 = u64::from((vtcr >> 6) & 3);
    let start_level = match sl0 {
        0b00 => 2,
        0b01 => 1,
        _ => return Err(RegimeError::ReservedSl0 { sl0 }),
    };
    check_start_level(ipa_bits, start_level)?;

    if (vtcr >> 12) & 3 == 0b01 {
        return Err(RegimeError::ReservedShareability);
    }

    if field(vttbr, 40, 8) != 0 || field(vttbr, 56, 8) != 0 {
        return Err(RegimeError::ReservedVttbrBits { vttbr });
    }
    let root_pa = vttbr & mask(39, 0);
    check_root_alignment(root_pa, ipa_bits, start_level)?;

    Ok(Regime {
        format: Format::Armv7,
        ipa_bits,
        start_level,
        root_pa,
        pa_bits: 40,
        vmid: field(vttbr, 48, 8) as u16,
    })
}

/// The level the architecture reports faults detected before the first
/// lookup at: AArch64 uses level 0 (AArch64.S2Translate / S2Walk); the
/// AArch32 long-descriptor walk has no level 0 and reports level 1.
fn top_fault_level(format: Format) -> u32 {
    match format {
        Format::Aarch64 { .. } => 0,
        Format::Armv7 => 1,
    }
}

/// Whether a (possibly hand-built) regime has a geometry the architecture
/// permits.
fn geometry_ok(r: &Regime) -> bool {
    let (min_level, max_ipa, max_pa) = match r.format {
        Format::Aarch64 { .. } => (0, 48, 48),
        Format::Armv7 => (1, 40, 40),
    };
    (min_level..=2).contains(&r.start_level)
        && (25..=max_ipa).contains(&r.ipa_bits)
        && (32..=max_pa).contains(&r.pa_bits)
        && check_start_level(r.ipa_bits, r.start_level).is_ok()
}

/// Translate `ipa` through the stage-2 tables of `r`.
///
/// `read` returns the 64-bit little-endian descriptor stored at a physical
/// address (always 8-byte aligned).
///
/// Fault rules, in the order they are checked:
/// * the regime geometry is not permitted, or `ipa >= 2^ipa_bits`:
///   Translation fault at level 0 (AArch64) / level 1 (ARMv7);
/// * `root_pa` above the output address size: Address size fault at the same
///   level;
/// * then per lookup at level L: bits\[1:0\] = 0b00 or 0b10, or 0b01 (block)
///   at level 0 or 3: Translation fault at L; a table or leaf output address
///   with bits at or above `pa_bits` set: Address size fault at L; a leaf
///   with AF = 0: Access flag fault at L.
///
/// Stage-2 table descriptors carry no hierarchical attributes: only the
/// next-level table address (bits \[47:12\]) is used. For ARMv7, descriptor
/// bits \[47:40\] are part of the address field checked against the 40-bit
/// output size. In AArch64 descriptors, bits above 47 are never address
/// bits (no FEAT_LPA/LPA2), so RES0 bits \[51:48\] of a table descriptor and
/// \[49:48\] of a leaf are ignored rather than reported.
pub fn translate(r: &Regime, read: &dyn Fn(u64) -> u64, ipa: u64) -> Result<Translation, Fault> {
    let top = top_fault_level(r.format);
    if !geometry_ok(r) || ipa >> r.ipa_bits != 0 {
        return Err(Fault::Translation { level: top });
    }
    if r.root_pa >> r.pa_bits != 0 {
        return Err(Fault::AddressSize { level: top });
    }

    let mut level = r.start_level;
    let mut table = r.root_pa;
    // At the start level the index takes every IPA bit above the level's
    // shift, so with concatenated tables it runs past 511 into the next
    // table, which lies right after the previous one in memory.
    let mut index = ipa >> level_shift(level);
    loop {
        let desc = read(table + index * 8);
        match desc & 0b11 {
            0b01 if level == 1 || level == 2 => return leaf(r, desc, level, ipa),
            0b11 if level == 3 => return leaf(r, desc, level, ipa),
            0b11 => {
                let next = desc & mask(47, 12);
                if next >> r.pa_bits != 0 {
                    return Err(Fault::AddressSize { level });
                }
                level += 1;
                table = next;
                index = field(ipa, level_shift(level), STRIDE);
            }
            // 0b00 / 0b10 invalid; 0b01 at level 0 or 3 is reserved for
            // the 4 KiB granule without FEAT_LPA2.
            _ => return Err(Fault::Translation { level }),
        }
    }
}

/// Decode a block (levels 1, 2) or page (level 3) descriptor.
fn leaf(r: &Regime, desc: u64, level: u32, ipa: u64) -> Result<Translation, Fault> {
    let shift = level_shift(level);
    let block_size = 1u64 << shift;

    let oa = desc & mask(47, shift);
    if oa >> r.pa_bits != 0 {
        return Err(Fault::AddressSize { level });
    }
    let af = field(desc, 10, 1) == 1;
    if !af {
        return Err(Fault::AccessFlag { level });
    }

    let read = field(desc, 6, 1) == 1;
    let write = field(desc, 7, 1) == 1;
    let (exec_el1, exec_el0) = match r.format {
        Format::Aarch64 { xnx: true, .. } => match field(desc, 53, 2) {
            0b00 => (true, true),
            0b01 => (false, true),
            0b10 => (false, false),
            _ => (true, false),
        },
        Format::Aarch64 { xnx: false, .. } => {
            let xn = field(desc, 54, 1) == 1;
            (!xn, !xn)
        }
        // ARMv7: an instruction fetch needs XN == 0 and read permission.
        Format::Armv7 => {
            let xn = field(desc, 54, 1) == 1;
            let exec = !xn && read;
            (exec, exec)
        }
    };

    let memattr = field(desc, 2, 4) as u8;
    let dbm = match r.format {
        Format::Aarch64 { .. } => field(desc, 51, 1) == 1,
        Format::Armv7 => false,
    };

    Ok(Translation {
        pa: oa | (ipa & (block_size - 1)),
        level,
        block_size,
        read,
        write,
        exec_el1,
        exec_el0,
        mem: decode_memattr(r.format, memattr),
        sh: field(desc, 8, 2) as u8,
        af,
        contiguous: field(desc, 52, 1) == 1,
        sw: field(desc, 55, 4) as u8,
        dbm,
    })
}

/// Device type from MemAttr\[1:0\].
fn device(dd: u8) -> MemType {
    match dd & 0b11 {
        0b00 => MemType::DeviceNGnRnE,
        0b01 => MemType::DeviceNGnRE,
        0b10 => MemType::DeviceNGRE,
        _ => MemType::DeviceGRE,
    }
}

/// Cacheability from a 2-bit MemAttr half; 0b00 has no Normal meaning.
fn cache(bits: u8) -> Option<Cache> {
    match bits & 0b11 {
        0b01 => Some(Cache::NonCacheable),
        0b10 => Some(Cache::WriteThrough),
        0b11 => Some(Cache::WriteBack),
        _ => None,
    }
}

/// Decode stage-2 MemAttr\[3:0\].
fn decode_memattr(format: Format, memattr: u8) -> MemType {
    let unpredictable = MemType::Unpredictable { memattr };
    let high = (memattr >> 2) & 0b11;
    let low = memattr & 0b11;
    match format {
        // FEAT_S2FWB: MemAttr[3] is RES0 (ignored), MemAttr[2] selects
        // Device (0) or Normal (1), MemAttr[1:0] says which.
        Format::Aarch64 { fwb: true, .. } => {
            if memattr & 0b100 == 0 {
                device(low)
            } else {
                match low {
                    0b01 => {
                        MemType::Normal { outer: Cache::NonCacheable, inner: Cache::NonCacheable }
                    }
                    0b10 => MemType::NormalForceWb,
                    0b11 => MemType::NormalUseStage1,
                    _ => unpredictable,
                }
            }
        }
        Format::Aarch64 { fwb: false, .. } | Format::Armv7 => {
            if high == 0b00 {
                // ARMv7 defines only Strongly-ordered (0b00) and Device (0b01).
                if format == Format::Armv7 && low & 0b10 != 0 {
                    return unpredictable;
                }
                return device(low);
            }
            match (cache(high), cache(low)) {
                (Some(outer), Some(inner)) => MemType::Normal { outer, inner },
                _ => unpredictable,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Physical memory holding hand-built tables; unset words read as 0
    /// (an invalid descriptor).
    #[derive(Default)]
    struct Mem(HashMap<u64, u64>);

    impl Mem {
        fn set(&mut self, pa: u64, desc: u64) {
            assert!(pa.is_multiple_of(8));
            self.0.insert(pa, desc);
        }

        fn walk(&self, r: &Regime, ipa: u64) -> Result<Translation, Fault> {
            let read = |pa: u64| {
                assert!(pa.is_multiple_of(8), "unaligned descriptor read at {pa:#x}");
                self.0.get(&pa).copied().unwrap_or(0)
            };
            translate(r, &read, ipa)
        }
    }

    // Descriptor pieces, written out from the descriptor layout.
    const TABLE: u64 = 0b11;
    const PAGE: u64 = 0b11;
    const BLOCK: u64 = 0b01;
    const AF: u64 = 1 << 10;
    const S2AP_R: u64 = 1 << 6;
    const S2AP_W: u64 = 1 << 7;
    const SH_INNER: u64 = 0b11 << 8;
    /// MemAttr = 0b1111 (Normal, outer WB, inner WB) in bits \[5:2\].
    const NORMAL_WB: u64 = 0b1111 << 2;
    /// Read/write, inner shareable, AF set, Normal WB: 0x7fc.
    const RW_WB: u64 = NORMAL_WB | S2AP_R | S2AP_W | SH_INNER | AF;

    /// `VTCR_EL2` bit 31 is RES1; set it as real software does.
    const VTCR_RES1: u64 = 1 << 31;

    fn vtcr_el2(t0sz: u64, sl0: u64, ps: u64) -> u64 {
        VTCR_RES1 | (ps << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (sl0 << 6) | t0sz
    }

    fn normal_wb() -> MemType {
        MemType::Normal { outer: Cache::WriteBack, inner: Cache::WriteBack }
    }

    #[test]
    fn rw_wb_constant() {
        assert_eq!(RW_WB, 0x7fc);
    }

    // ---------------------------------------------------------------- walks

    #[test]
    fn four_level_walk_48_bit_page() {
        // T0SZ = 16 (48-bit IPA), SL0 = 0b10 (level 0), PS = 0b101 (48 bits).
        let vtcr = vtcr_el2(16, 0b10, 0b101);
        assert_eq!(vtcr, 0x8005_3590);
        // CnP (bit 0) set: must not be part of the base address.
        let vttbr = (0x2a << 48) | 0x4000_0000 | 1;
        let r = regime_aarch64(vtcr, vttbr, false, false).unwrap();
        assert_eq!(
            r,
            Regime {
                format: Format::Aarch64 { fwb: false, xnx: false },
                ipa_bits: 48,
                start_level: 0,
                root_pa: 0x4000_0000,
                pa_bits: 48,
                vmid: 0x2a,
            }
        );
        assert_eq!(r.root_table_bytes(), 4096);
        assert_eq!(r.root_table_count(), 1);

        // IPA 0x1234_5678_9abc: L0 index [47:39] = 0x24, L1 [38:30] = 0xd1,
        // L2 [29:21] = 0xb3, L3 [20:12] = 0x189, offset 0xabc.
        let ipa = 0x1234_5678_9abc;
        let mut m = Mem::default();
        m.set(0x4000_0000 + 0x24 * 8, 0x4000_1000 | TABLE);
        m.set(0x4000_1000 + 0xd1 * 8, 0x4000_2000 | TABLE);
        m.set(0x4000_2000 + 0xb3 * 8, 0x4000_3000 | TABLE);
        m.set(0x4000_3000 + 0x189 * 8, 0x8_7654_3000 | RW_WB | PAGE);

        let t = m.walk(&r, ipa).unwrap();
        assert_eq!(
            t,
            Translation {
                pa: 0x8_7654_3abc,
                level: 3,
                block_size: 4096,
                read: true,
                write: true,
                exec_el1: true,
                exec_el0: true,
                mem: normal_wb(),
                sh: 0b11,
                af: true,
                contiguous: false,
                sw: 0,
                dbm: false,
            }
        );

        // Neighbouring page: L3 index 0x18a is empty -> translation fault at 3.
        assert_eq!(m.walk(&r, ipa + 0x1000), Err(Fault::Translation { level: 3 }));
        // A different L0 entry (index 0x25) is empty -> level 0.
        assert_eq!(m.walk(&r, ipa + (1 << 39)), Err(Fault::Translation { level: 0 }));
    }

    #[test]
    fn forty_bit_ipa_two_concatenated_roots_at_level_1() {
        // T0SZ = 24 (40-bit IPA), SL0 = 0b01 (level 1), PS = 0b010 (40 bits).
        // Level 1 resolves IPA[39:30]: 10 bits, so two concatenated tables,
        // 8 KiB, which must be 8 KiB aligned.
        let r = regime_aarch64(vtcr_el2(24, 0b01, 0b010), 0x8000_2000, false, false).unwrap();
        assert_eq!(r.ipa_bits, 40);
        assert_eq!(r.start_level, 1);
        assert_eq!(r.pa_bits, 40);
        assert_eq!(r.root_pa, 0x8000_2000);
        assert_eq!(r.start_index_bits(), 10);
        assert_eq!(r.root_table_bytes(), 8192);
        assert_eq!(r.root_table_count(), 2);

        let mut m = Mem::default();
        // First root table, entry 1: 1 GiB block at 0xc000_0000.
        m.set(0x8000_2000 + 8, 0xc000_0000 | RW_WB | BLOCK);
        // Second root table (root + 4096), entry 1 -> level 2 table.
        m.set(0x8000_2000 + 4096 + 8, 0x8000_4000 | TABLE);
        m.set(0x8000_4000 + 3 * 8, 0x8000_5000 | TABLE);
        m.set(0x8000_5000 + 5 * 8, 0x9_8765_4000 | RW_WB | PAGE);

        // Bit 39 clear: level 1 index 1, first table.
        let t = m.walk(&r, 0x4060_5123).unwrap();
        assert_eq!(t.pa, 0xc060_5123);
        assert_eq!(t.level, 1);
        assert_eq!(t.block_size, 1 << 30);

        // IPA 0x80_4060_5123: bit 39 set, IPA[39:30] = 0x201 = 513 ->
        // second table entry 1; L2 index 3, L3 index 5, offset 0x123.
        let t = m.walk(&r, 0x80_4060_5123).unwrap();
        assert_eq!(t.pa, 0x9_8765_4123);
        assert_eq!(t.level, 3);
        assert_eq!(t.block_size, 4096);

        // IPA at 2^40 is outside the IPA space: level 0 translation fault.
        assert_eq!(m.walk(&r, 1 << 40), Err(Fault::Translation { level: 0 }));
    }

    #[test]
    fn one_gib_block() {
        // T0SZ = 25 (39-bit IPA), level 1, one full table.
        let r = regime_aarch64(vtcr_el2(25, 0b01, 0b101), 0x1000, false, false).unwrap();
        assert_eq!(r.root_table_bytes(), 4096);
        let mut m = Mem::default();
        // IPA 0x7f_c123_4567: IPA[38:30] = 0x1ff.
        m.set(0x1000 + 0x1ff * 8, 0x1234_4000_0000 | RW_WB | BLOCK);
        let t = m.walk(&r, 0x7f_c123_4567).unwrap();
        assert_eq!(t.pa, 0x1234_4123_4567);
        assert_eq!(t.level, 1);
        assert_eq!(t.block_size, 0x4000_0000);
        assert_eq!(t.mem, normal_wb());
    }

    #[test]
    fn two_mib_block_with_four_concatenated_roots_at_level_2() {
        // T0SZ = 32 (32-bit IPA), SL0 = 0b00 (level 2), PS = 0b000 (32 bits).
        // Level 2 resolves IPA[31:21]: 11 bits, 4 tables, 16 KiB.
        let r = regime_aarch64(vtcr_el2(32, 0b00, 0b000), 0x10_0000, false, false).unwrap();
        assert_eq!((r.ipa_bits, r.start_level, r.pa_bits), (32, 2, 32));
        assert_eq!(r.root_table_count(), 4);
        let mut m = Mem::default();
        // IPA 0xffe1_2345: IPA[31:21] = 0x7ff = 2047 -> table 3, entry 511,
        // at root + 2047 * 8 = 0x10_3ff8.
        m.set(0x10_3ff8, 0x8020_0000 | RW_WB | BLOCK);
        let t = m.walk(&r, 0xffe1_2345).unwrap();
        assert_eq!(t.pa, 0x8021_2345);
        assert_eq!(t.level, 2);
        assert_eq!(t.block_size, 0x20_0000);

        // Descriptor bits [20:12] of a 2 MiB block are not output address
        // bits: the OA below the block size comes from the IPA.
        m.set(0x10_3ff8, 0x8020_0000 | 0x1f_f000 | RW_WB | BLOCK);
        assert_eq!(m.walk(&r, 0xffe1_2345).unwrap().pa, 0x8021_2345);
    }

    #[test]
    fn table_descriptors_carry_no_attributes() {
        // Set every upper attribute bit ([63:52]) and lower bit ([11:2]) of a
        // table descriptor: the leaf must be unchanged.
        let r = regime_aarch64(vtcr_el2(25, 0b01, 0b101), 0x1000, false, false).unwrap();
        let mut m = Mem::default();
        let junk = mask(63, 52) | mask(11, 2);
        m.set(0x1000, 0x2000 | junk | TABLE);
        m.set(0x2000, 0x3000 | TABLE);
        m.set(0x3000, 0x5000 | RW_WB | PAGE);
        let t = m.walk(&r, 0x123).unwrap();
        assert_eq!(t.pa, 0x5123);
        assert!(t.read && t.write && t.exec_el1 && t.exec_el0);
        assert_eq!(t.mem, normal_wb());
    }

    #[test]
    fn upper_leaf_attributes() {
        let r = regime_aarch64(vtcr_el2(25, 0b01, 0b101), 0x1000, false, false).unwrap();
        let mut m = Mem::default();
        let contiguous = 1 << 52;
        let dbm = 1 << 51;
        let sw = 0b1010 << 55;
        // Bits [63:59] are ignored at stage 2 (no PBHA decoding here).
        m.set(0x1000, 0x4000_0000 | RW_WB | contiguous | dbm | sw | BLOCK);
        let t = m.walk(&r, 0).unwrap();
        assert!(t.contiguous);
        assert!(t.dbm);
        assert_eq!(t.sw, 0b1010);
        // Read-only, non-shareable.
        m.set(0x1000, 0x4000_0000 | NORMAL_WB | S2AP_R | AF | BLOCK);
        let t = m.walk(&r, 0).unwrap();
        assert!(t.read && !t.write);
        assert_eq!(t.sh, 0);
        assert!(!t.contiguous && !t.dbm);
        assert_eq!(t.sw, 0);
        // Write-only.
        m.set(0x1000, 0x4000_0000 | NORMAL_WB | S2AP_W | AF | BLOCK);
        let t = m.walk(&r, 0).unwrap();
        assert!(!t.read && t.write);
        // No access, outer shareable.
        m.set(0x1000, 0x4000_0000 | NORMAL_WB | (0b10 << 8) | AF | BLOCK);
        let t = m.walk(&r, 0).unwrap();
        assert!(!t.read && !t.write);
        assert_eq!(t.sh, 0b10);
    }

    // --------------------------------------------------------------- faults

    #[test]
    fn translation_faults() {
        // 48-bit, start at level 0.
        let r = regime_aarch64(vtcr_el2(16, 0b10, 0b101), 0x10_0000, false, false).unwrap();
        let mut m = Mem::default();
        // Empty root: level 0.
        assert_eq!(m.walk(&r, 0), Err(Fault::Translation { level: 0 }));
        // Block descriptor at level 0 is invalid with the 4 KiB granule.
        m.set(0x10_0000, 0x8000_0000 | RW_WB | BLOCK);
        assert_eq!(m.walk(&r, 0), Err(Fault::Translation { level: 0 }));
        // 0b10 is invalid too.
        m.set(0x10_0000, 0x11_0000 | 0b10);
        assert_eq!(m.walk(&r, 0), Err(Fault::Translation { level: 0 }));

        m.set(0x10_0000, 0x11_0000 | TABLE);
        assert_eq!(m.walk(&r, 0), Err(Fault::Translation { level: 1 }));
        m.set(0x11_0000, 0x12_0000 | TABLE);
        // Level 2 entry with bits[1:0] = 0b10.
        m.set(0x12_0000, 0x13_0000 | RW_WB | 0b10);
        assert_eq!(m.walk(&r, 0), Err(Fault::Translation { level: 2 }));
        m.set(0x12_0000, 0x13_0000 | TABLE);
        // Level 3 entry with bits[1:0] = 0b01 (reserved at level 3).
        m.set(0x13_0000, 0x8000_0000 | RW_WB | BLOCK);
        assert_eq!(m.walk(&r, 0), Err(Fault::Translation { level: 3 }));
        // Level 3 entry with bits[1:0] = 0b00 but otherwise full of bits.
        m.set(0x13_0000, 0x8000_0000 | RW_WB);
        assert_eq!(m.walk(&r, 0), Err(Fault::Translation { level: 3 }));
        m.set(0x13_0000, 0x8000_0000 | RW_WB | PAGE);
        assert_eq!(m.walk(&r, 0).unwrap().pa, 0x8000_0000);

        // IPA out of range of a 39-bit regime starting at level 1: AArch64
        // reports level 0, not the start level.
        let r = regime_aarch64(vtcr_el2(25, 0b01, 0b101), 0x1000, false, false).unwrap();
        assert_eq!(m.walk(&r, 1 << 39), Err(Fault::Translation { level: 0 }));
        assert_eq!(m.walk(&r, u64::MAX), Err(Fault::Translation { level: 0 }));
    }

    #[test]
    fn address_size_faults() {
        // 32-bit IPA from level 1 (IPA[31:30], 4 entries), PS = 32 bits.
        let r = regime_aarch64(vtcr_el2(32, 0b01, 0b000), 0x1000, false, false).unwrap();
        assert_eq!(r.pa_bits, 32);
        assert_eq!(r.root_table_bytes(), 32);
        let mut m = Mem::default();
        // Level 1 block with OA 0x1_0000_0000: above 32 bits.
        m.set(0x1000, 0x1_0000_0000 | RW_WB | BLOCK);
        assert_eq!(m.walk(&r, 0), Err(Fault::AddressSize { level: 1 }));
        // Level 1 table at 0x1_0000_0000: address size fault at level 1.
        m.set(0x1000, 0x1_0000_0000 | TABLE);
        assert_eq!(m.walk(&r, 0), Err(Fault::AddressSize { level: 1 }));
        // Level 2 block at OA bit 47.
        m.set(0x1000, 0x2000 | TABLE);
        m.set(0x2000, (1 << 47) | RW_WB | BLOCK);
        assert_eq!(m.walk(&r, 0), Err(Fault::AddressSize { level: 2 }));
        // Level 3 page with OA bit 32.
        m.set(0x2000, 0x3000 | TABLE);
        m.set(0x3000, 0x1_0000_0000 | RW_WB | PAGE);
        assert_eq!(m.walk(&r, 0), Err(Fault::AddressSize { level: 3 }));
        // The largest in-range OA is fine.
        m.set(0x3000, 0xffff_f000 | RW_WB | PAGE);
        assert_eq!(m.walk(&r, 0xfff).unwrap().pa, 0xffff_ffff);
        // Address size is checked before the access flag.
        m.set(0x3000, 0x1_0000_0000 | NORMAL_WB | S2AP_R | PAGE);
        assert_eq!(m.walk(&r, 0), Err(Fault::AddressSize { level: 3 }));

        // Same OA with PS = 36 bits translates.
        let r36 = regime_aarch64(vtcr_el2(32, 0b01, 0b001), 0x1000, false, false).unwrap();
        m.set(0x3000, 0x1_0000_0000 | RW_WB | PAGE);
        assert_eq!(m.walk(&r36, 0x10).unwrap().pa, 0x1_0000_0010);

        // Root table above PS: level 0 address size fault.
        let high_root =
            regime_aarch64(vtcr_el2(32, 0b01, 0b000), 0x1_0000_0000, false, false).unwrap();
        assert_eq!(m.walk(&high_root, 0), Err(Fault::AddressSize { level: 0 }));
    }

    #[test]
    fn access_flag_faults() {
        let r = regime_aarch64(vtcr_el2(25, 0b01, 0b101), 0x1000, false, false).unwrap();
        let mut m = Mem::default();
        m.set(0x1000, 0x4000_0000 | (RW_WB & !AF) | BLOCK);
        assert_eq!(m.walk(&r, 0), Err(Fault::AccessFlag { level: 1 }));
        m.set(0x1000, 0x2000 | TABLE);
        m.set(0x2000, 0x4000_0000 | (RW_WB & !AF) | BLOCK);
        assert_eq!(m.walk(&r, 0), Err(Fault::AccessFlag { level: 2 }));
        m.set(0x2000, 0x3000 | TABLE);
        m.set(0x3000, 0x4000_0000 | (RW_WB & !AF) | PAGE);
        assert_eq!(m.walk(&r, 0), Err(Fault::AccessFlag { level: 3 }));
        // Table descriptors have no AF: an AF-less table is fine.
        m.set(0x3000, 0x4000_0000 | RW_WB | PAGE);
        assert!(m.walk(&r, 0).is_ok());
    }

    #[test]
    fn hand_built_regime_with_bad_geometry_faults_at_top_level() {
        let m = Mem::default();
        let mut r = Regime {
            format: Format::Aarch64 { fwb: false, xnx: false },
            ipa_bits: 48,
            start_level: 1, // would need 512 concatenated tables
            root_pa: 0,
            pa_bits: 48,
            vmid: 0,
        };
        assert_eq!(m.walk(&r, 0), Err(Fault::Translation { level: 0 }));
        r.format = Format::Armv7;
        r.ipa_bits = 40;
        r.pa_bits = 40;
        r.start_level = 0;
        assert_eq!(m.walk(&r, 0), Err(Fault::Translation { level: 1 }));
    }

    // ------------------------------------------------------------ MemAttr

    /// Translate a level-2 block whose MemAttr field is `memattr`.
    fn mem_of(format: Format, memattr: u64) -> MemType {
        let r =
            Regime { format, ipa_bits: 32, start_level: 1, root_pa: 0x1000, pa_bits: 40, vmid: 0 };
        let mut m = Mem::default();
        m.set(0x1000, 0x2000 | TABLE);
        m.set(0x2000, 0x20_0000 | (memattr << 2) | S2AP_R | AF | BLOCK);
        m.walk(&r, 0).unwrap().mem
    }

    #[test]
    fn memattr_without_fwb() {
        use Cache::*;
        use MemType::*;
        let n = |outer, inner| Normal { outer, inner };
        let u = |memattr| Unpredictable { memattr };
        let expect = [
            DeviceNGnRnE, // 0b0000
            DeviceNGnRE,  // 0b0001
            DeviceNGRE,   // 0b0010
            DeviceGRE,    // 0b0011
            u(0b0100),    // outer NC, inner 00
            n(NonCacheable, NonCacheable),
            n(NonCacheable, WriteThrough),
            n(NonCacheable, WriteBack),
            u(0b1000), // outer WT, inner 00
            n(WriteThrough, NonCacheable),
            n(WriteThrough, WriteThrough),
            n(WriteThrough, WriteBack),
            u(0b1100), // outer WB, inner 00
            n(WriteBack, NonCacheable),
            n(WriteBack, WriteThrough),
            n(WriteBack, WriteBack),
        ];
        let format = Format::Aarch64 { fwb: false, xnx: false };
        for (memattr, want) in expect.iter().enumerate() {
            assert_eq!(mem_of(format, memattr as u64), *want, "MemAttr {memattr:#06b}");
        }
    }

    #[test]
    fn memattr_with_fwb() {
        use MemType::*;
        let nc = Normal { outer: Cache::NonCacheable, inner: Cache::NonCacheable };
        // MemAttr[3] is RES0 with FWB: it does not change the meaning.
        let expect = [
            DeviceNGnRnE,                      // x000
            DeviceNGnRE,                       // x001
            DeviceNGRE,                        // x010
            DeviceGRE,                         // x011
            Unpredictable { memattr: 0b0100 }, // x100
            nc,                                // x101
            NormalForceWb,                     // x110
            NormalUseStage1,                   // x111
        ];
        let format = Format::Aarch64 { fwb: true, xnx: false };
        for (low3, want) in expect.iter().enumerate() {
            let low3 = low3 as u64;
            assert_eq!(mem_of(format, low3), *want, "MemAttr {low3:#06b}");
            let with_bit3 = match *want {
                Unpredictable { .. } => Unpredictable { memattr: 0b1100 },
                other => other,
            };
            assert_eq!(mem_of(format, 0b1000 | low3), with_bit3, "MemAttr {:#06b}", 0b1000 | low3);
        }
    }

    #[test]
    fn memattr_armv7() {
        use Cache::*;
        use MemType::*;
        // Strongly-ordered and Device; 0b001x is UNPREDICTABLE in ARMv7.
        assert_eq!(mem_of(Format::Armv7, 0b0000), DeviceNGnRnE);
        assert_eq!(mem_of(Format::Armv7, 0b0001), DeviceNGnRE);
        assert_eq!(mem_of(Format::Armv7, 0b0010), Unpredictable { memattr: 0b0010 });
        assert_eq!(mem_of(Format::Armv7, 0b0011), Unpredictable { memattr: 0b0011 });
        assert_eq!(mem_of(Format::Armv7, 0b0100), Unpredictable { memattr: 0b0100 });
        assert_eq!(
            mem_of(Format::Armv7, 0b0110),
            Normal { outer: NonCacheable, inner: WriteThrough }
        );
        assert_eq!(mem_of(Format::Armv7, 0b1101), Normal { outer: WriteBack, inner: NonCacheable });
        assert_eq!(mem_of(Format::Armv7, 0b1111), Normal { outer: WriteBack, inner: WriteBack });
    }

    // ------------------------------------------------------------------ XN

    /// (exec_el1, exec_el0) of a level-2 block with bits \[54:53\] = `xn`
    /// and the given S2AP.
    fn exec_of(format: Format, xn: u64, s2ap: u64) -> (bool, bool) {
        let r =
            Regime { format, ipa_bits: 32, start_level: 1, root_pa: 0x1000, pa_bits: 40, vmid: 0 };
        let mut m = Mem::default();
        m.set(0x1000, 0x2000 | TABLE);
        m.set(0x2000, 0x20_0000 | (xn << 53) | (s2ap << 6) | NORMAL_WB | AF | BLOCK);
        let t = m.walk(&r, 0).unwrap();
        (t.exec_el1, t.exec_el0)
    }

    #[test]
    fn xn_without_xnx() {
        let f = Format::Aarch64 { fwb: false, xnx: false };
        // Bit 54 is XN for both ELs; bit 53 is ignored.
        assert_eq!(exec_of(f, 0b00, 0b11), (true, true));
        assert_eq!(exec_of(f, 0b01, 0b11), (true, true));
        assert_eq!(exec_of(f, 0b10, 0b11), (false, false));
        assert_eq!(exec_of(f, 0b11, 0b11), (false, false));
        // AArch64 stage 2 execute does not need read permission.
        assert_eq!(exec_of(f, 0b00, 0b00), (true, true));
    }

    #[test]
    fn xn_with_xnx() {
        let f = Format::Aarch64 { fwb: false, xnx: true };
        assert_eq!(exec_of(f, 0b00, 0b11), (true, true));
        assert_eq!(exec_of(f, 0b01, 0b11), (false, true));
        assert_eq!(exec_of(f, 0b10, 0b11), (false, false));
        assert_eq!(exec_of(f, 0b11, 0b11), (true, false));
        assert_eq!(exec_of(f, 0b00, 0b00), (true, true));
    }

    #[test]
    fn xn_armv7() {
        let f = Format::Armv7;
        assert_eq!(exec_of(f, 0b00, 0b11), (true, true));
        assert_eq!(exec_of(f, 0b01, 0b11), (true, true)); // bit 53 ignored
        assert_eq!(exec_of(f, 0b10, 0b11), (false, false));
        // ARMv7: instruction fetch also needs read permission.
        assert_eq!(exec_of(f, 0b00, 0b01), (true, true));
        assert_eq!(exec_of(f, 0b00, 0b10), (false, false));
        assert_eq!(exec_of(f, 0b00, 0b00), (false, false));
    }

    // --------------------------------------------------- AArch64 registers

    #[test]
    fn aarch64_register_decoding() {
        // VMID: 8 bits when VS = 0, 16 bits when VS = 1.
        let vttbr = (0xabcd << 48) | 0x1000;
        let vtcr = vtcr_el2(25, 0b01, 0b101);
        assert_eq!(regime_aarch64(vtcr, vttbr, false, false).unwrap().vmid, 0xcd);
        assert_eq!(regime_aarch64(vtcr | (1 << 19), vttbr, false, false).unwrap().vmid, 0xabcd);
        // fwb / xnx are carried in the format.
        assert_eq!(
            regime_aarch64(vtcr, vttbr, true, true).unwrap().format,
            Format::Aarch64 { fwb: true, xnx: true }
        );
        // PS encodings.
        for (ps, bits) in [(0, 32), (1, 36), (2, 40), (3, 42), (4, 44), (5, 48)] {
            let r = regime_aarch64(vtcr_el2(25, 0b01, ps), 0x1000, false, false).unwrap();
            assert_eq!(r.pa_bits, bits);
        }
        // 16 concatenated tables at level 1 (43-bit IPA): root 64 KiB aligned.
        let r = regime_aarch64(vtcr_el2(21, 0b01, 0b101), 0x1_0000, false, false).unwrap();
        assert_eq!(r.root_table_count(), 16);
        // 40-bit IPA from level 0: two entries, 16-byte table.
        let r = regime_aarch64(vtcr_el2(24, 0b10, 0b101), 0x1010, false, false).unwrap();
        assert_eq!((r.start_level, r.root_table_bytes()), (0, 16));
        // 25-bit IPA from level 2 (T0SZ = 39, the largest without TTST).
        let r = regime_aarch64(vtcr_el2(39, 0b00, 0b000), 0x1000, false, false).unwrap();
        assert_eq!((r.ipa_bits, r.root_table_bytes()), (25, 128));
    }

    #[test]
    fn aarch64_register_errors() {
        let ok = vtcr_el2(24, 0b01, 0b010);
        assert!(regime_aarch64(ok, 0x2000, false, false).is_ok());
        // TG0 = 64 KiB, 16 KiB, reserved.
        for tg0 in 1..=3 {
            assert_eq!(
                regime_aarch64(ok | (tg0 << 14), 0x2000, false, false),
                Err(RegimeError::Granule { tg0 })
            );
        }
        // 48-bit IPA from level 1 would need 512 tables.
        assert_eq!(
            regime_aarch64(vtcr_el2(16, 0b01, 0b101), 0x0, false, false),
            Err(RegimeError::InconsistentStartLevel { ipa_bits: 48, start_level: 1 })
        );
        // 44-bit IPA from level 1 would need 32 tables.
        assert!(regime_aarch64(vtcr_el2(20, 0b01, 0b101), 0x0, false, false).is_err());
        // 35-bit IPA from level 2 would need 32 tables.
        assert!(regime_aarch64(vtcr_el2(29, 0b00, 0b101), 0x0, false, false).is_err());
        // 32-bit IPA from level 0 resolves no bit at level 0.
        assert_eq!(
            regime_aarch64(vtcr_el2(32, 0b10, 0b101), 0x0, false, false),
            Err(RegimeError::InconsistentStartLevel { ipa_bits: 32, start_level: 0 })
        );
        // 39-bit IPA from level 0 resolves no bit at level 0 either.
        assert!(regime_aarch64(vtcr_el2(25, 0b10, 0b101), 0x0, false, false).is_err());
        // 30-bit IPA from level 1 likewise.
        assert!(regime_aarch64(vtcr_el2(34, 0b01, 0b101), 0x0, false, false).is_err());
        // SL0 = 0b11 is reserved without FEAT_TTST.
        assert_eq!(
            regime_aarch64(vtcr_el2(32, 0b11, 0b101), 0x0, false, false),
            Err(RegimeError::ReservedSl0 { sl0: 3 })
        );
        // T0SZ out of range.
        assert_eq!(
            regime_aarch64(vtcr_el2(15, 0b10, 0b101), 0x0, false, false),
            Err(RegimeError::T0sz { t0sz: 15 })
        );
        assert_eq!(
            regime_aarch64(vtcr_el2(40, 0b00, 0b101), 0x0, false, false),
            Err(RegimeError::T0sz { t0sz: 40 })
        );
        // PS reserved.
        assert_eq!(
            regime_aarch64(vtcr_el2(24, 0b01, 0b110), 0x2000, false, false),
            Err(RegimeError::ReservedPs { ps: 6 })
        );
        // Root of two concatenated tables must be 8 KiB aligned.
        assert_eq!(
            regime_aarch64(ok, 0x1000, false, false),
            Err(RegimeError::MisalignedRoot { root_pa: 0x1000, align: 0x2000 })
        );
        // 16-byte root (40-bit from level 0) at an 8-byte boundary.
        assert!(regime_aarch64(vtcr_el2(24, 0b10, 0b101), 0x1008, false, false).is_err());
        // SH0 = 0b01 reserved.
        assert_eq!(
            regime_aarch64((ok & !(0b11 << 12)) | (0b01 << 12), 0x2000, false, false),
            Err(RegimeError::ReservedShareability)
        );
        // Hardware AF management is not modelled.
        assert_eq!(
            regime_aarch64(ok | (1 << 21), 0x2000, false, false),
            Err(RegimeError::Unsupported { field: "HA" })
        );
        // LPA2 descriptors are not modelled.
        assert_eq!(
            regime_aarch64(ok | (1 << 32), 0x2000, false, false),
            Err(RegimeError::Unsupported { field: "DS" })
        );
        // Errors print.
        assert!(!RegimeError::ReservedShareability.to_string().is_empty());
    }

    // ----------------------------------------------------- ARMv7 registers

    #[test]
    fn armv7_t0sz_minus_8_is_40_bits_from_level_1() {
        // T0SZ = 0b1000 (-8), S = 1, SL0 = 0b01; bit 31 RES1.
        let vtcr: u32 = (1 << 31) | (0b01 << 6) | (1 << 4) | 0b1000;
        assert_eq!(vtcr, 0x8000_0058);
        // 10 bits at level 1: two tables, 8 KiB aligned base. VMID 5.
        let vttbr = (5 << 48) | 0x1_2345_6000;
        let r = regime_armv7(vtcr, vttbr).unwrap();
        assert_eq!(
            r,
            Regime {
                format: Format::Armv7,
                ipa_bits: 40,
                start_level: 1,
                root_pa: 0x1_2345_6000,
                pa_bits: 40,
                vmid: 5,
            }
        );
        assert_eq!(r.root_table_count(), 2);

        let mut m = Mem::default();
        // IPA 0xff_ffff_f123: IPA[39:30] = 0x3ff = 1023 -> root + 0x1ff8,
        // the last entry of the second table. 1 GiB block at 0x40_0000_0000.
        m.set(0x1_2345_6000 + 0x1ff8, 0x40_0000_0000 | RW_WB | BLOCK);
        let t = m.walk(&r, 0xff_ffff_f123).unwrap();
        assert_eq!(t.pa, 0x40_3fff_f123);
        assert_eq!(t.level, 1);
        assert_eq!(t.block_size, 1 << 30);
        assert_eq!(t.mem, normal_wb());
        assert!(!t.dbm);

        // Page via level 2 and 3; DBM bit 51 has no meaning in ARMv7.
        m.set(0x1_2345_6000, 0x2000 | TABLE);
        m.set(0x2000 + 8, 0x3000 | TABLE);
        m.set(0x3000 + 2 * 8, 0xab_cdef_0000 | RW_WB | (1 << 51) | PAGE);
        let t = m.walk(&r, 0x20_2abc).unwrap();
        assert_eq!(t.pa, 0xab_cdef_0abc);
        assert_eq!(t.level, 3);
        assert!(!t.dbm);

        // Output address bit 40 is beyond the 40-bit PA: address size fault.
        m.set(0x3000 + 2 * 8, (1 << 40) | RW_WB | PAGE);
        assert_eq!(m.walk(&r, 0x20_2abc), Err(Fault::AddressSize { level: 3 }));
        m.set(0x2000 + 8, (1 << 47) | 0x3000 | TABLE);
        assert_eq!(m.walk(&r, 0x20_2abc), Err(Fault::AddressSize { level: 2 }));
        // Invalid entry at the start level.
        assert_eq!(m.walk(&r, 0x4000_0000), Err(Fault::Translation { level: 1 }));
        // IPA >= 2^40: ARMv7 reports the fault at level 1.
        assert_eq!(m.walk(&r, 1 << 40), Err(Fault::Translation { level: 1 }));
    }

    #[test]
    fn armv7_t0sz_0_is_32_bits() {
        // T0SZ = 0, S = 0, SL0 = 0b01: 32-bit IPA from level 1, IPA[31:30]
        // -> 4 entries, 32-byte table.
        let r = regime_armv7(0b01 << 6, 0x8000_0020).unwrap();
        assert_eq!((r.ipa_bits, r.start_level, r.root_pa), (32, 1, 0x8000_0020));
        assert_eq!(r.root_table_bytes(), 32);
        let mut m = Mem::default();
        // IPA 0xc000_1000: IPA[31:30] = 3 -> root + 24.
        m.set(0x8000_0020 + 24, 0x5000 | TABLE);
        m.set(0x5000, 0x6000 | TABLE);
        m.set(0x6000 + 8, 0x7_0000_0000 | RW_WB | PAGE);
        let t = m.walk(&r, 0xc000_1234).unwrap();
        assert_eq!(t.pa, 0x7_0000_0234);
        // 2^32 is outside the IPA space.
        assert_eq!(m.walk(&r, 1 << 32), Err(Fault::Translation { level: 1 }));

        // T0SZ = 0 from level 2: IPA[31:21], four concatenated tables.
        let r = regime_armv7(0, 0x4000).unwrap();
        assert_eq!((r.ipa_bits, r.start_level), (32, 2));
        assert_eq!(r.root_table_count(), 4);
        // Misaligned (needs 16 KiB).
        assert_eq!(
            regime_armv7(0, 0x2000),
            Err(RegimeError::MisalignedRoot { root_pa: 0x2000, align: 0x4000 })
        );
        // 32-byte table at an 8-byte boundary.
        assert!(regime_armv7(0b01 << 6, 0x8000_0028).is_err());
    }

    #[test]
    fn armv7_register_errors() {
        // S-bit mismatch: T0SZ = 0b1000 with S = 0, and T0SZ = 0b0111 with S = 1.
        assert_eq!(
            regime_armv7((0b01 << 6) | 0b1000, 0),
            Err(RegimeError::SignMismatch { vtcr: (0b01 << 6) | 0b1000 })
        );
        assert!(matches!(
            regime_armv7((1 << 4) | 0b0111, 0),
            Err(RegimeError::SignMismatch { .. })
        ));
        // SL0 = 0b10 / 0b11 reserved.
        assert_eq!(regime_armv7(0b10 << 6, 0), Err(RegimeError::ReservedSl0 { sl0: 2 }));
        assert_eq!(regime_armv7(0b11 << 6, 0), Err(RegimeError::ReservedSl0 { sl0: 3 }));
        // 40-bit IPA from level 2 would need 512 tables.
        assert_eq!(
            regime_armv7((1 << 4) | 0b1000, 0),
            Err(RegimeError::InconsistentStartLevel { ipa_bits: 40, start_level: 2 })
        );
        // T0SZ = 7 (25 bits) from level 1 resolves no bit at level 1.
        assert_eq!(
            regime_armv7((0b01 << 6) | 7, 0),
            Err(RegimeError::InconsistentStartLevel { ipa_bits: 25, start_level: 1 })
        );
        // ...but is fine from level 2 (16 entries).
        let r = regime_armv7(7, 0x80).unwrap();
        assert_eq!((r.ipa_bits, r.root_table_bytes()), (25, 128));
        // T0SZ = 1 (31 bits) from level 1: two entries.
        let r = regime_armv7((0b01 << 6) | 1, 0x10).unwrap();
        assert_eq!((r.ipa_bits, r.root_table_bytes()), (31, 16));
        // VTTBR bits [47:40] or [63:56] set.
        assert!(matches!(
            regime_armv7(0b01 << 6, 1 << 40),
            Err(RegimeError::ReservedVttbrBits { .. })
        ));
        assert!(matches!(
            regime_armv7(0b01 << 6, 1 << 63),
            Err(RegimeError::ReservedVttbrBits { .. })
        ));
        // SH0 = 0b01 reserved.
        assert_eq!(
            regime_armv7((0b01 << 6) | (0b01 << 12), 0),
            Err(RegimeError::ReservedShareability)
        );
    }
}
