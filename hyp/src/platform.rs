//! The host platform, from the device tree the firmware (or QEMU) passes in
//! `x0`, and the hypervisor configuration from `/chosen/bootargs`.
//!
//! - [`Platform::parse`] reads RAM, reserved memory (`/reserved-memory`
//!   and `/memreserve/`), the DTB's own extent, the initrd, bootargs, the
//!   PL011, the GIC, the CPUs, PSCI and the root `compatible` strings.
//! - [`Config::parse`] reads the bootargs grammar of `docs/HYPERVISOR.md`.
//! - [`free_ranges`] subtracts excluded regions (hypervisor image, DTB,
//!   initrd, reserved memory) from RAM; [`ensure_disjoint`] checks that a
//!   region avoids all of them and names the overlap otherwise.
//!
//! Bad input never panics: the `fdt` crate (0.1.5) panics on some malformed
//! blobs, so the whole blob is first checked here (header bounds, every
//! structure token, name and string offset, nesting) and only then handed
//! to it. `FDT_NOP` tokens, which that crate mishandles between properties,
//! are stripped from a copy first. Everything here allocates: the heap must
//! be up before [`Platform::parse`] runs.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

/// The granule [`free_ranges`] aligns to.
pub const PAGE_SIZE: u64 = 4096;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const HEADER_SIZE: usize = 40;
/// Deepest node nesting accepted (the `fdt` crate tracks at most 63 levels;
/// real trees use fewer than 10).
const MAX_DEPTH: usize = 32;

/// A physical address range `[base, base + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// The range `[base, base + size)`.
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte (saturating at `u64::MAX`).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether the region has no bytes.
    pub const fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Whether `addr` lies inside the region.
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    /// The common part of two regions, if they share any byte.
    pub fn intersection(&self, other: &Region) -> Option<Region> {
        let base = self.base.max(other.base);
        let end = self.end().min(other.end());
        (base < end).then(|| Region::new(base, end - base))
    }

    /// Whether the two regions share any byte.
    pub fn overlaps(&self, other: &Region) -> bool {
        self.intersection(other).is_some()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.base, self.end())
    }
}

/// A region with a human-readable name ("hypervisor image", "DTB",
/// "initrd", "reserved-memory nvram@3b3f0000", "/memreserve/", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRegion {
    /// What the region holds, as error messages should name it.
    pub name: String,
    /// Where it is.
    pub region: Region,
}

impl NamedRegion {
    /// A named region.
    pub fn new(name: impl Into<String>, region: Region) -> Self {
        Self { name: name.into(), region }
    }
}

/// Why a device tree blob was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtbError {
    /// The buffer is shorter than the header or than the header's `totalsize`.
    Truncated {
        /// Bytes the blob says it needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The first word is not `0xd00dfeed`.
    BadMagic(u32),
    /// [`Platform::from_addr`] was given a null (or unrepresentable) address.
    BadAddress(u64),
    /// The blob's version is older than 17 or incompatible with 17.
    UnsupportedVersion(u32),
    /// A header offset or size points outside the blob.
    BadLayout(&'static str),
    /// The structure block is malformed at `offset` (relative to the block).
    BadStructure {
        /// Byte offset inside the structure block.
        offset: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// A node the hypervisor cannot do without is absent.
    MissingNode(&'static str),
    /// No memory node with a non-empty `reg`.
    NoMemory,
    /// `/cpus` has no `cpu` node.
    NoCpus,
    /// A `reg` property whose length does not match the cell counts, or
    /// whose range overflows, or whose cell counts exceed 64 bits.
    MalformedReg {
        /// Path of the node.
        node: String,
    },
    /// Any other property with an unexpected length or value.
    MalformedProperty {
        /// Path of the node.
        node: String,
        /// Property name.
        property: &'static str,
    },
    /// A `reg` address that no `ranges` entry of a parent bus maps.
    Untranslatable {
        /// Path of the node.
        node: String,
        /// The bus address that could not be translated.
        address: u64,
    },
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(f, "DTB truncated: needs {needed} bytes, {available} available")
            }
            Self::BadMagic(m) => write!(f, "not a DTB: magic {m:#010x}, expected 0xd00dfeed"),
            Self::BadAddress(a) => write!(f, "no DTB: address {a:#x}"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported DTB version {v} (need 17)"),
            Self::BadLayout(what) => write!(f, "malformed DTB header: {what}"),
            Self::BadStructure { offset, reason } => {
                write!(f, "malformed DTB structure block at offset {offset:#x}: {reason}")
            }
            Self::MissingNode(path) => write!(f, "DTB has no {path} node"),
            Self::NoMemory => write!(f, "DTB describes no memory"),
            Self::NoCpus => write!(f, "DTB describes no CPU under /cpus"),
            Self::MalformedReg { node } => write!(f, "DTB node {node}: malformed reg"),
            Self::MalformedProperty { node, property } => {
                write!(f, "DTB node {node}: malformed {property}")
            }
            Self::Untranslatable { node, address } => {
                write!(f, "DTB node {node}: bus address {address:#x} outside the parent's ranges")
            }
        }
    }
}

/// How a secondary CPU is started (its `enable-method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnableMethod {
    /// PSCI `CPU_ON`.
    Psci,
    /// Write the entry point to `release_addr`, then `SEV`.
    SpinTable {
        /// The `cpu-release-addr` property.
        release_addr: u64,
    },
    /// Anything else (for example `"brcm,bcm2836-smp"`), verbatim.
    Other(String),
}

/// One `/cpus/cpu@*` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// The `reg` value: the MPIDR affinity fields (Aff3 in bits 39:32).
    pub mpidr: u64,
    /// The `enable-method` (inherited from `/cpus` if the node has none).
    /// `None` when absent: QEMU omits it on single-CPU machines.
    pub enable_method: Option<EnableMethod>,
}

/// The PSCI conduit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciMethod {
    /// `SMC #0`.
    Smc,
    /// `HVC #0`.
    Hvc,
}

/// The newest PSCI binding the `/psci` node claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PsciVersion {
    /// `"arm,psci"`: function IDs come from the node, not the standard ones.
    V0_1,
    /// `"arm,psci-0.2"`: standard function IDs.
    V0_2,
    /// `"arm,psci-1.0"`.
    V1_0,
}

/// The `/psci` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Psci {
    /// `method`.
    pub method: PsciMethod,
    /// Newest compatible binding.
    pub version: PsciVersion,
}

/// The interrupt controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gic {
    /// `arm,cortex-a15-gic` or `arm,gic-400`.
    V2 {
        /// GICD.
        distributor: Region,
        /// GICC.
        cpu_interface: Region,
        /// GICH (virtual interface control), when listed.
        hyp_interface: Option<Region>,
        /// GICV (virtual CPU interface), when listed.
        vcpu_interface: Option<Region>,
    },
    /// `arm,gic-v3`.
    V3 {
        /// GICD.
        distributor: Region,
        /// The redistributor regions (`#redistributor-regions`, default 1).
        redistributors: Vec<Region>,
    },
}

impl Gic {
    /// The distributor (GICD), whatever the version.
    pub fn distributor(&self) -> Region {
        match self {
            Gic::V2 { distributor, .. } | Gic::V3 { distributor, .. } => *distributor,
        }
    }
}

/// Boards recognised from the root `compatible`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    /// `"raspberrypi,4-model-b"`.
    RaspberryPi4B,
    /// `"raspberrypi,3-model-b"` (or `-plus`).
    RaspberryPi3B,
    /// `"raspberrypi,2-model-b"`.
    RaspberryPi2B,
    /// `"linux,dummy-virt"` (QEMU `virt`).
    QemuVirt,
    /// Anything else.
    Unknown,
}

/// What the hypervisor needs to know about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// The DTB itself: the address given to [`Platform::parse`] and the
    /// header's `totalsize`.
    pub dtb: Region,
    /// The header's `boot_cpuid_phys`.
    pub boot_cpuid: u32,
    /// RAM: every `reg` entry of every memory node, in DTB order (empty
    /// entries dropped).
    pub memory: Vec<Region>,
    /// `/memreserve/` entries (named `"/memreserve/"`), then
    /// `/reserved-memory` children with a `reg` (named
    /// `"reserved-memory <node>"`; disabled ones and those placed
    /// dynamically with `size` only are left out).
    pub reserved: Vec<NamedRegion>,
    /// `/chosen` `linux,initrd-start` .. `linux,initrd-end`.
    pub initrd: Option<Region>,
    /// `/chosen/bootargs`.
    pub bootargs: Option<String>,
    /// The PL011's registers: the one `/chosen/stdout-path` names if it is
    /// a PL011, else the first enabled `arm,pl011`.
    pub uart: Option<Region>,
    /// The first enabled GIC.
    pub gic: Option<Gic>,
    /// `/cpus/cpu@*`, in DTB order.
    pub cpus: Vec<Cpu>,
    /// The PSCI node, if any.
    pub psci: Option<Psci>,
    /// The root `compatible` strings.
    pub compatible: Vec<String>,
    /// The root `model`, if any.
    pub model: Option<String>,
}

/// Reads the `totalsize` field of a DTB header after checking the magic,
/// so that a caller holding only a pointer knows how long a slice to make.
/// `header` needs at least 8 bytes.
pub fn dtb_total_size(header: &[u8]) -> Result<usize, DtbError> {
    let magic =
        be32(header, 0).ok_or(DtbError::Truncated { needed: 8, available: header.len() })?;
    if magic != FDT_MAGIC {
        return Err(DtbError::BadMagic(magic));
    }
    let total =
        be32(header, 4).ok_or(DtbError::Truncated { needed: 8, available: header.len() })?;
    if (total as usize) < HEADER_SIZE {
        return Err(DtbError::BadLayout("totalsize smaller than the header"));
    }
    Ok(total as usize)
}

/// Largest `totalsize` [`Platform::from_addr`] accepts (real blobs are
/// tens of KiB; QEMU pads to 1 MiB).
pub const MAX_DTB_SIZE: usize = 16 << 20;

impl Platform {
    /// Parses the DTB at address `dtb` (as the boot loader passes it in
    /// `x0`): reads the header's `totalsize`, then [`Platform::parse`]s
    /// that many bytes.
    ///
    /// # Safety
    ///
    /// `dtb` must be a readable (mapped, identity VA = PA) address whose
    /// first 8 bytes can be read; if they hold the DTB magic, the
    /// `totalsize` bytes from `dtb` (at most [`MAX_DTB_SIZE`]) must be
    /// readable and must not be written while this runs.
    pub unsafe fn from_addr(dtb: u64) -> Result<Platform, DtbError> {
        let Some(addr) = usize::try_from(dtb).ok().filter(|&a| a != 0) else {
            return Err(DtbError::BadAddress(dtb));
        };
        let ptr = addr as *const u8;
        // SAFETY: the caller guarantees that 8 bytes at `dtb` are readable.
        let header = unsafe { core::slice::from_raw_parts(ptr, 8) };
        let total = dtb_total_size(header)?;
        if total > MAX_DTB_SIZE {
            return Err(DtbError::BadLayout("totalsize larger than MAX_DTB_SIZE"));
        }
        // SAFETY: the magic matched, so the caller guarantees that
        // `totalsize` bytes at `dtb` are readable and stay unchanged; the
        // length is at most MAX_DTB_SIZE, far below isize::MAX.
        let blob = unsafe { core::slice::from_raw_parts(ptr, total) };
        Platform::parse(blob, dtb)
    }

    /// Parses the DTB in `dtb`, which was found at physical address
    /// `dtb_addr`. `dtb` may be longer than the blob's `totalsize`.
    pub fn parse(dtb: &[u8], dtb_addr: u64) -> Result<Self, DtbError> {
        let checked = check_blob(dtb)?;
        let stripped;
        let blob: &[u8] = if checked.has_nops {
            stripped = strip_nops(dtb, &checked);
            &stripped
        } else {
            &dtb[..checked.total_size]
        };
        let fdt = Fdt::new(blob).map_err(|_| DtbError::BadLayout("rejected by the fdt crate"))?;
        let tree = Tree::new(&fdt)?;
        let root = 0;

        let mut memory = Vec::new();
        for idx in tree.children(root) {
            let is_memory = tree.str_prop(idx, "device_type") == Some("memory")
                || tree.base_name(idx) == "memory";
            if is_memory && tree.enabled(idx) {
                let regs = tree.reg(idx)?.ok_or_else(|| tree.malformed_reg(idx))?;
                memory.extend(regs.into_iter().filter(|r| !r.is_empty()));
            }
        }
        if memory.is_empty() {
            return Err(DtbError::NoMemory);
        }

        let mut reserved: Vec<NamedRegion> =
            checked.reservations.iter().map(|r| NamedRegion::new("/memreserve/", *r)).collect();
        if let Some(rmem) = tree.child_named(root, "reserved-memory") {
            for idx in tree.children(rmem) {
                if !tree.enabled(idx) {
                    continue;
                }
                if let Some(regs) = tree.reg(idx)? {
                    let name = alloc::format!("reserved-memory {}", tree.nodes[idx].node.name);
                    for r in regs.into_iter().filter(|r| !r.is_empty()) {
                        reserved.push(NamedRegion::new(name.clone(), r));
                    }
                }
            }
        }

        let chosen = tree.child_named(root, "chosen");
        let (initrd, bootargs) = match chosen {
            Some(c) => (tree.initrd(c)?, tree.string(c, "bootargs")?.map(ToOwned::to_owned)),
            None => (None, None),
        };

        Ok(Platform {
            dtb: Region::new(dtb_addr, checked.total_size as u64),
            boot_cpuid: checked.boot_cpuid,
            memory,
            reserved,
            initrd,
            bootargs,
            uart: tree.uart(chosen)?,
            gic: tree.gic()?,
            cpus: tree.cpus()?,
            psci: tree.psci()?,
            compatible: tree.strings(root, "compatible").map(ToOwned::to_owned).collect(),
            model: tree.string(root, "model")?.map(ToOwned::to_owned),
        })
    }

    /// The board, from the root `compatible`.
    pub fn board(&self) -> Board {
        for c in &self.compatible {
            match c.as_str() {
                "raspberrypi,4-model-b" => return Board::RaspberryPi4B,
                "raspberrypi,3-model-b" | "raspberrypi,3-model-b-plus" => {
                    return Board::RaspberryPi3B
                }
                "raspberrypi,2-model-b" => return Board::RaspberryPi2B,
                "linux,dummy-virt" => return Board::QemuVirt,
                _ => {}
            }
        }
        Board::Unknown
    }

    /// Everything in RAM that must never be handed out: the hypervisor
    /// image (`hyp_image`, including its BSS and stacks), the DTB, the
    /// initrd and the reserved regions, each named.
    pub fn excluded_regions(&self, hyp_image: Region) -> Vec<NamedRegion> {
        let mut out = vec![
            NamedRegion::new("hypervisor image", hyp_image),
            NamedRegion::new("DTB", self.dtb),
        ];
        if let Some(initrd) = self.initrd {
            out.push(NamedRegion::new("initrd", initrd));
        }
        out.extend(self.reserved.iter().cloned());
        out
    }

    /// [`free_ranges`] of [`Platform::memory`] minus
    /// [`Platform::excluded_regions`].
    pub fn free_memory(&self, hyp_image: Region) -> Vec<Region> {
        free_ranges(&self.memory, &self.excluded_regions(hyp_image))
    }
}

// ---------------------------------------------------------------------------
// Free memory and overlap checks

/// A region that overlaps an excluded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlapError {
    /// The name of the excluded region hit ("initrd", "DTB", ...).
    pub name: String,
    /// The excluded region.
    pub excluded: Region,
    /// The region that was checked.
    pub region: Region,
    /// The bytes they share.
    pub overlap: Region,
}

impl fmt::Display for OverlapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} overlaps the {} at {} (shared: {})",
            self.region, self.name, self.excluded, self.overlap
        )
    }
}

/// Checks that `region` shares no byte with any of `excluded`; the error
/// names the overlapped excluded region at the lowest address (the first
/// listed, if several overlap at the same address).
pub fn ensure_disjoint(region: Region, excluded: &[NamedRegion]) -> Result<(), OverlapError> {
    let mut first: Option<OverlapError> = None;
    for e in excluded {
        if let Some(overlap) = region.intersection(&e.region) {
            if first.as_ref().is_none_or(|f| overlap.base < f.overlap.base) {
                first = Some(OverlapError {
                    name: e.name.clone(),
                    excluded: e.region,
                    region,
                    overlap,
                });
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// RAM minus the excluded regions: sorted, non-overlapping, non-adjacent
/// ranges whose bases and sizes are multiples of [`PAGE_SIZE`]. RAM is
/// shrunk to whole pages, excluded regions grown to whole pages; RAM
/// regions may overlap or be unsorted.
pub fn free_ranges(ram: &[Region], excluded: &[NamedRegion]) -> Vec<Region> {
    let ram = merge(ram.iter().filter_map(|r| {
        let start = align_up(r.base)?;
        let end = r.end() & !(PAGE_SIZE - 1);
        (start < end).then_some((start, end))
    }));
    let holes = merge(excluded.iter().filter(|e| !e.region.is_empty()).map(|e| {
        let start = e.region.base & !(PAGE_SIZE - 1);
        let end = align_up(e.region.end()).unwrap_or(u64::MAX);
        (start, end)
    }));

    let mut out = Vec::new();
    for (start, end) in ram {
        let mut cursor = start;
        for &(hole_start, hole_end) in &holes {
            if hole_end <= cursor || hole_start >= end {
                continue;
            }
            if hole_start > cursor {
                out.push(Region::new(cursor, hole_start - cursor));
            }
            cursor = cursor.max(hole_end);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            out.push(Region::new(cursor, end - cursor));
        }
    }
    out
}

fn align_up(v: u64) -> Option<u64> {
    Some(v.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1))
}

/// Sorts `[start, end)` pairs and merges overlapping or touching ones.
fn merge(ranges: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = ranges.collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (start, end) in v {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Bootargs configuration

/// Guest memory population policy (`policy=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Map 4 KiB pages on demand (default).
    #[default]
    Pages,
    /// Map 2 MiB blocks where a whole aligned block lies in guest RAM.
    Blocks,
}

/// Stage-2 table locking (`lock=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockKind {
    /// Split locking (default).
    #[default]
    Split,
    /// One lock per VM.
    Single,
}

/// How the aliases of a page shared with `HYP_ALIAS` or `HYP_SHARE` are
/// kept coherent (`coherency=`): what every mapping of such a page becomes
/// once it has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coherency {
    /// Normal Non-cacheable (default).
    #[default]
    Nc,
    /// Read-only: a write faults, and the writing mapping becomes the only
    /// writable one.
    Ro,
}

/// The hypervisor configuration from `/chosen/bootargs`:
/// `vms=N vcpus=N mem=SIZE policy=pages|blocks lock=split|single
/// premap=0|1 collapse=0|1 coherency=nc|ro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Number of VMs running the guest image (1..=8, default 1).
    pub vms: usize,
    /// vCPUs per VM (1..=8, default 1).
    pub vcpus: usize,
    /// Guest RAM in bytes (2 MiB..=4 GiB, a multiple of 2 MiB; default 128 MiB).
    pub mem: u64,
    /// Population policy (default pages).
    pub policy: Policy,
    /// Locking mode (default split).
    pub lock: LockKind,
    /// Map all guest RAM before the guest starts (`premap=1`), for
    /// comparing against demand paging. Default 0.
    pub premap: bool,
    /// Collapse a 2 MiB range into a block once all its pages are mapped
    /// (`collapse=1`). Default 0.
    pub collapse: bool,
    /// Coherency policy for aliased pages (default `nc`).
    pub coherency: Coherency,
}

impl Config {
    /// Largest `vms=`.
    pub const MAX_VMS: usize = 8;
    /// Largest `vcpus=`.
    pub const MAX_VCPUS: usize = 8;
    /// Smallest `mem=`.
    pub const MIN_MEM: u64 = 2 << 20;
    /// Largest `mem=`.
    pub const MAX_MEM: u64 = 4 << 30;
    /// `mem=` must be a multiple of this.
    pub const MEM_ALIGN: u64 = 2 << 20;
    /// `mem=` when not given.
    pub const DEFAULT_MEM: u64 = 128 << 20;

    /// Parses whitespace-separated `key=value` words. An unknown key, a
    /// key given twice or a word without `=` is an error. When a word is
    /// `--`, only the words after the first one are the hypervisor's: the
    /// Raspberry Pi firmware puts its own Linux options before the contents
    /// of `cmdline.txt`, which therefore starts with `--`. Keys not given
    /// keep their defaults.
    pub fn parse(bootargs: &str) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut seen: Vec<&str> = Vec::new();
        let words: Vec<&str> = bootargs.split_ascii_whitespace().collect();
        let ours = match words.iter().position(|&w| w == "--") {
            Some(i) => &words[i + 1..],
            None => &words[..],
        };
        for &word in ours {
            let Some((key, value)) = word.split_once('=') else {
                return Err(ConfigError::NotKeyValue(word.into()));
            };
            if seen.contains(&key) {
                return Err(ConfigError::DuplicateKey(key.into()));
            }
            seen.push(key);
            match key {
                "vms" => config.vms = parse_count("vms", value, Self::MAX_VMS)?,
                "vcpus" => config.vcpus = parse_count("vcpus", value, Self::MAX_VCPUS)?,
                "mem" => {
                    let mem = parse_size(value).ok_or_else(|| ConfigError::BadNumber {
                        key: "mem",
                        value: value.into(),
                    })?;
                    if !(Self::MIN_MEM..=Self::MAX_MEM).contains(&mem) {
                        return Err(ConfigError::OutOfRange {
                            key: "mem",
                            value: mem,
                            min: Self::MIN_MEM,
                            max: Self::MAX_MEM,
                        });
                    }
                    if !mem.is_multiple_of(Self::MEM_ALIGN) {
                        return Err(ConfigError::NotMultiple {
                            key: "mem",
                            value: mem,
                            multiple: Self::MEM_ALIGN,
                        });
                    }
                    config.mem = mem;
                }
                "policy" => {
                    config.policy = match value {
                        "pages" => Policy::Pages,
                        "blocks" => Policy::Blocks,
                        _ => return Err(bad_choice("policy", value, "pages|blocks")),
                    }
                }
                "lock" => {
                    config.lock = match value {
                        "split" => LockKind::Split,
                        "single" => LockKind::Single,
                        _ => return Err(bad_choice("lock", value, "split|single")),
                    }
                }
                "premap" => config.premap = parse_bool("premap", value)?,
                "collapse" => config.collapse = parse_bool("collapse", value)?,
                "coherency" => {
                    config.coherency = match value {
                        "nc" => Coherency::Nc,
                        "ro" => Coherency::Ro,
                        _ => return Err(bad_choice("coherency", value, "nc|ro")),
                    }
                }
                _ => return Err(ConfigError::UnknownKey(key.into())),
            }
        }
        Ok(config)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            vms: 1,
            vcpus: 1,
            mem: Self::DEFAULT_MEM,
            policy: Policy::Pages,
            lock: LockKind::Split,
            premap: false,
            collapse: false,
            coherency: Coherency::Nc,
        }
    }
}

fn parse_bool(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(bad_choice(key, value, "0|1")),
    }
}

/// Why bootargs were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A word without `=`.
    NotKeyValue(String),
    /// A key the hypervisor does not know.
    UnknownKey(String),
    /// A key given twice.
    DuplicateKey(String),
    /// A value that is not a number (or size) at all.
    BadNumber {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
    },
    /// A number outside the key's bounds.
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value (bytes for `mem`).
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A size that is not a multiple of the required granule.
    NotMultiple {
        /// The key.
        key: &'static str,
        /// The value in bytes.
        value: u64,
        /// The granule.
        multiple: u64,
    },
    /// A value outside a fixed set of words.
    BadChoice {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// The allowed words, `|`-separated.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotKeyValue(w) => write!(f, "bootargs: {w:?} is not key=value"),
            Self::UnknownKey(k) => {
                write!(
                    f,
                    "bootargs: unknown key {k:?} (known: vms, vcpus, mem, policy, lock, premap, collapse, coherency)"
                )
            }
            Self::DuplicateKey(k) => write!(f, "bootargs: {k} given twice"),
            Self::BadNumber { key, value } => write!(f, "bootargs: {key}={value} is not a number"),
            Self::OutOfRange { key, value, min, max } => {
                write!(f, "bootargs: {key}={value} is outside {min}..={max}")
            }
            Self::NotMultiple { key, value, multiple } => {
                write!(f, "bootargs: {key}={value} is not a multiple of {multiple}")
            }
            Self::BadChoice { key, value, expected } => {
                write!(f, "bootargs: {key}={value}: expected {expected}")
            }
        }
    }
}

fn bad_choice(key: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::BadChoice { key, value: value.into(), expected }
}

fn parse_count(key: &'static str, value: &str, max: usize) -> Result<usize, ConfigError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::BadNumber { key, value: value.into() });
    }
    let n: u64 = value.parse().unwrap_or(u64::MAX); // all digits: only overflow fails
    let max = max as u64;
    match usize::try_from(n) {
        Ok(count) if (1..=max).contains(&n) => Ok(count),
        _ => Err(ConfigError::OutOfRange { key, value: n, min: 1, max }),
    }
}

/// Parses a decimal size with an optional `K`, `M` or `G` suffix (binary
/// multiples, either case): `"64M"` = 64 MiB. `None` if malformed or
/// overflowing.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

// ---------------------------------------------------------------------------
// Blob checking

/// What [`check_blob`] learnt about a blob that passed.
struct Checked {
    total_size: usize,
    struct_range: core::ops::Range<usize>,
    strings_range: core::ops::Range<usize>,
    reservations: Vec<Region>,
    boot_cpuid: u32,
    has_nops: bool,
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

/// A NUL-terminated UTF-8 string at `off` in `b`.
fn cstr_at(b: &[u8], off: usize) -> Option<&str> {
    let rest = b.get(off..)?;
    let len = rest.iter().position(|&c| c == 0)?;
    core::str::from_utf8(&rest[..len]).ok()
}

const fn align4(v: usize) -> usize {
    (v + 3) & !3
}

/// Validates everything the `fdt` crate would otherwise panic on.
fn check_blob(data: &[u8]) -> Result<Checked, DtbError> {
    if data.len() < HEADER_SIZE {
        if let Some(magic) = be32(data, 0) {
            if magic != FDT_MAGIC {
                return Err(DtbError::BadMagic(magic));
            }
        }
        return Err(DtbError::Truncated { needed: HEADER_SIZE, available: data.len() });
    }
    let field = |i: usize| be32(data, i * 4).unwrap_or(0);
    let field_usize = |i: usize| field(i) as usize;
    if field(0) != FDT_MAGIC {
        return Err(DtbError::BadMagic(field(0)));
    }
    let total_size = field_usize(1);
    let (version, last_comp) = (field(5), field(6));
    if version < 17 || last_comp > 17 {
        return Err(DtbError::UnsupportedVersion(version));
    }
    if total_size < HEADER_SIZE {
        return Err(DtbError::BadLayout("totalsize smaller than the header"));
    }
    if total_size > data.len() {
        return Err(DtbError::Truncated { needed: total_size, available: data.len() });
    }
    let blob = &data[..total_size];
    let block = |off: usize, size: usize, what: &'static str| {
        let end = off.checked_add(size).ok_or(DtbError::BadLayout(what))?;
        if off < HEADER_SIZE || end > total_size {
            return Err(DtbError::BadLayout(what));
        }
        Ok(off..end)
    };
    let struct_range = block(field_usize(2), field_usize(9), "structure block outside the blob")?;
    let strings_range = block(field_usize(3), field_usize(8), "strings block outside the blob")?;

    let mut reservations = Vec::new();
    let mut off = field_usize(4);
    if off < HEADER_SIZE {
        return Err(DtbError::BadLayout("memory reservation block overlaps the header"));
    }
    loop {
        let entry = blob.get(off..).and_then(|rest| rest.get(..16));
        let Some((address, size)) = entry.and_then(|e| Some((be64(e, 0)?, be64(e, 8)?))) else {
            return Err(DtbError::BadLayout("memory reservation block not terminated"));
        };
        if address == 0 && size == 0 {
            break;
        }
        if address.checked_add(size).is_none() {
            return Err(DtbError::MalformedReg { node: "/memreserve/".into() });
        }
        if size != 0 {
            reservations.push(Region::new(address, size));
        }
        off += 16;
    }

    let has_nops = check_structure(&blob[struct_range.clone()], &blob[strings_range.clone()])?;
    Ok(Checked {
        total_size,
        struct_range,
        strings_range,
        reservations,
        boot_cpuid: field(7),
        has_nops,
    })
}

/// Walks every token of the structure block; returns whether any
/// `FDT_NOP` was seen.
fn check_structure(s: &[u8], strings: &[u8]) -> Result<bool, DtbError> {
    let bad = |offset, reason| DtbError::BadStructure { offset, reason };
    let mut pos = 0;
    let mut has_nops = false;
    let mut seen_root = false;
    // For each open node: whether it already has a child.
    let mut open: Vec<bool> = Vec::new();
    loop {
        let at = pos;
        let token = be32(s, pos).ok_or(bad(at, "block ends without FDT_END"))?;
        pos += 4;
        match token {
            FDT_BEGIN_NODE => {
                if open.is_empty() && seen_root {
                    return Err(bad(at, "second root node"));
                }
                let name = cstr_at(s, pos).ok_or(bad(pos, "bad node name"))?;
                if open.is_empty() && !name.is_empty() {
                    return Err(bad(pos, "root node has a name"));
                }
                if let Some(parent_has_child) = open.last_mut() {
                    *parent_has_child = true;
                }
                if open.len() >= MAX_DEPTH {
                    return Err(bad(at, "nodes nested too deeply"));
                }
                open.push(false);
                seen_root = true;
                pos = align4(pos + name.len() + 1);
            }
            FDT_END_NODE => {
                if open.pop().is_none() {
                    return Err(bad(at, "FDT_END_NODE outside a node"));
                }
            }
            FDT_PROP => {
                match open.last() {
                    None => return Err(bad(at, "property outside a node")),
                    Some(true) => return Err(bad(at, "property after a child node")),
                    Some(false) => {}
                }
                let len = be32(s, pos).ok_or(bad(pos, "truncated property"))? as usize;
                let name_off = be32(s, pos + 4).ok_or(bad(pos, "truncated property"))? as usize;
                pos += 8;
                let end = pos.checked_add(len).filter(|&e| e <= s.len());
                let end = end.ok_or(bad(at, "property value overruns the block"))?;
                cstr_at(strings, name_off).ok_or(bad(at, "bad property name offset"))?;
                pos = align4(end);
            }
            FDT_NOP => has_nops = true,
            FDT_END => {
                if !open.is_empty() || !seen_root {
                    return Err(bad(at, "FDT_END before the root node is closed"));
                }
                return Ok(has_nops);
            }
            _ => return Err(bad(at, "unknown token")),
        }
    }
}

/// A copy of a checked blob without `FDT_NOP` tokens: header, memory
/// reservation block, structure block, strings block.
fn strip_nops(data: &[u8], c: &Checked) -> Vec<u8> {
    let s = &data[c.struct_range.clone()];
    let mut structure = Vec::with_capacity(s.len());
    let mut pos = 0;
    while let Some(token) = be32(s, pos) {
        let len = match token {
            FDT_BEGIN_NODE => align4(4 + cstr_at(s, pos + 4).map_or(0, str::len) + 1),
            FDT_PROP => 12 + align4(be32(s, pos + 4).unwrap_or(0) as usize),
            FDT_END => {
                structure.extend_from_slice(&s[pos..pos + 4]);
                break;
            }
            _ => 4, // FDT_END_NODE, FDT_NOP
        };
        let chunk = s.get(pos..pos + len).unwrap_or(&s[pos..]);
        if token != FDT_NOP {
            structure.extend_from_slice(chunk);
        }
        pos += len;
    }
    let strings = &data[c.strings_range.clone()];
    let rsv_off = HEADER_SIZE;
    let struct_off = rsv_off + (c.reservations.len() + 1) * 16;
    let strings_off = struct_off + structure.len();
    let total = strings_off + strings.len();
    let mut out = Vec::with_capacity(total);
    let header = [
        FDT_MAGIC,
        total as u32,
        struct_off as u32,
        strings_off as u32,
        rsv_off as u32,
        17,
        16,
        c.boot_cpuid,
        strings.len() as u32,
        structure.len() as u32,
    ];
    for v in header {
        out.extend_from_slice(&v.to_be_bytes());
    }
    for r in c.reservations.iter().chain(core::iter::once(&Region::new(0, 0))) {
        out.extend_from_slice(&r.base.to_be_bytes());
        out.extend_from_slice(&r.size.to_be_bytes());
    }
    out.extend_from_slice(&structure);
    out.extend_from_slice(strings);
    out
}

// ---------------------------------------------------------------------------
// Tree queries over a checked blob

struct Entry<'b, 'a> {
    node: FdtNode<'b, 'a>,
    parent: Option<usize>,
}

/// Every node of the tree in document order, with parent links (which the
/// `fdt` crate does not provide), so that paths, inherited cell counts and
/// `ranges` translation can be computed.
struct Tree<'b, 'a> {
    nodes: Vec<Entry<'b, 'a>>,
}

impl<'b, 'a> Tree<'b, 'a> {
    fn new(fdt: &'b Fdt<'a>) -> Result<Self, DtbError> {
        let root = fdt.find_node("/").ok_or(DtbError::MissingNode("/"))?;
        let mut nodes = Vec::new();
        let mut stack = vec![(root, None)];
        while let Some((node, parent)) = stack.pop() {
            let idx = nodes.len();
            nodes.push(Entry { node, parent });
            let children: Vec<_> = node.children().collect();
            stack.extend(children.into_iter().rev().map(|c| (c, Some(idx))));
        }
        Ok(Tree { nodes })
    }

    fn children(&self, idx: usize) -> impl Iterator<Item = usize> + '_ {
        (idx + 1..self.nodes.len()).filter(move |&i| self.nodes[i].parent == Some(idx))
    }

    fn base_name(&self, idx: usize) -> &'a str {
        let name = self.nodes[idx].node.name;
        name.split('@').next().unwrap_or(name)
    }

    fn child_named(&self, idx: usize, name: &str) -> Option<usize> {
        self.children(idx).find(|&i| self.nodes[i].node.name == name || self.base_name(i) == name)
    }

    fn path(&self, idx: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(idx);
        while let Some(i) = cur {
            if self.nodes[i].parent.is_some() {
                parts.push(self.nodes[i].node.name);
            }
            cur = self.nodes[i].parent;
        }
        if parts.is_empty() {
            return "/".into();
        }
        parts.iter().rev().fold(String::new(), |mut acc, p| {
            acc.push('/');
            acc.push_str(p);
            acc
        })
    }

    /// Resolves an absolute path; a component without `@unit` matches a
    /// node's name without its unit address.
    fn find_path(&self, path: &str) -> Option<usize> {
        let mut cur = 0;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur = self.children(cur).find(|&i| {
                self.nodes[i].node.name == part
                    || (!part.contains('@') && self.base_name(i) == part)
            })?;
        }
        Some(cur)
    }

    fn prop(&self, idx: usize, name: &str) -> Option<&'a [u8]> {
        self.nodes[idx].node.property(name).map(|p| p.value)
    }

    fn malformed(&self, idx: usize, property: &'static str) -> DtbError {
        DtbError::MalformedProperty { node: self.path(idx), property }
    }

    fn malformed_reg(&self, idx: usize) -> DtbError {
        DtbError::MalformedReg { node: self.path(idx) }
    }

    /// A string property; `Err` if present but not one UTF-8 string.
    fn string(&self, idx: usize, name: &'static str) -> Result<Option<&'a str>, DtbError> {
        let Some(value) = self.prop(idx, name) else { return Ok(None) };
        let value = value.strip_suffix(&[0]).unwrap_or(value);
        match core::str::from_utf8(value) {
            Ok(s) if !s.contains('\0') => Ok(Some(s)),
            _ => Err(self.malformed(idx, name)),
        }
    }

    /// A string property, `None` when absent or malformed.
    fn str_prop(&self, idx: usize, name: &'static str) -> Option<&'a str> {
        self.string(idx, name).ok().flatten()
    }

    /// The strings of a string-list property (non-UTF-8 entries skipped).
    fn strings(&self, idx: usize, name: &str) -> impl Iterator<Item = &'a str> {
        let value = self.prop(idx, name).unwrap_or(&[]);
        let value = value.strip_suffix(&[0]).unwrap_or(value);
        value
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| core::str::from_utf8(s).ok())
    }

    fn is_compatible(&self, idx: usize, with: &[&str]) -> bool {
        self.strings(idx, "compatible").any(|c| with.contains(&c))
    }

    /// `status` absent, `"okay"` or `"ok"`.
    fn enabled(&self, idx: usize) -> bool {
        matches!(self.str_prop(idx, "status"), None | Some("okay") | Some("ok"))
    }

    /// A one-cell property such as `#address-cells`; `default` if absent.
    fn cell_count(&self, idx: usize, name: &'static str, default: u32) -> Result<u32, DtbError> {
        match self.prop(idx, name) {
            None => Ok(default),
            Some(v) if v.len() == 4 => Ok(be32(v, 0).unwrap_or(default)),
            Some(_) => Err(self.malformed(idx, name)),
        }
    }

    /// `(#address-cells, #size-cells)` that `idx` gives its children.
    fn child_cells(&self, idx: usize) -> Result<(u32, u32), DtbError> {
        Ok((self.cell_count(idx, "#address-cells", 2)?, self.cell_count(idx, "#size-cells", 1)?))
    }

    /// A 32- or 64-bit number property.
    fn number(&self, idx: usize, name: &'static str) -> Result<Option<u64>, DtbError> {
        match self.prop(idx, name) {
            None => Ok(None),
            Some(v) => read_number(v).map(Some).ok_or_else(|| self.malformed(idx, name)),
        }
    }

    /// `reg` entries as written, in the parent's cells.
    fn raw_reg(&self, idx: usize) -> Result<Option<Vec<(u64, u64)>>, DtbError> {
        let Some(value) = self.prop(idx, "reg") else { return Ok(None) };
        let (ac, sc) = match self.nodes[idx].parent {
            Some(p) => self.child_cells(p)?,
            None => (2, 1),
        };
        let entries = split_entries(value, &[ac, sc]).ok_or_else(|| self.malformed_reg(idx))?;
        Ok(Some(entries.into_iter().map(|e| (e[0], e[1])).collect()))
    }

    /// `reg` entries translated to CPU physical addresses through the
    /// parents' `ranges`. A bus without `ranges`, or with an empty one,
    /// maps one to one (lenient: strictly, no `ranges` means "not
    /// memory-mapped", but the nodes read here are all memory-mapped).
    fn reg(&self, idx: usize) -> Result<Option<Vec<Region>>, DtbError> {
        let Some(raw) = self.raw_reg(idx)? else { return Ok(None) };
        let mut out = Vec::with_capacity(raw.len());
        for (address, size) in raw {
            let base = self.translate(idx, address)?;
            if base.checked_add(size).is_none() {
                return Err(self.malformed_reg(idx));
            }
            out.push(Region::new(base, size));
        }
        Ok(Some(out))
    }

    fn translate(&self, idx: usize, mut address: u64) -> Result<u64, DtbError> {
        let mut bus = self.nodes[idx].parent;
        while let Some(b) = bus {
            let Some(grandparent) = self.nodes[b].parent else { break };
            let ranges = self.prop(b, "ranges").unwrap_or(&[]);
            if !ranges.is_empty() {
                let (child_ac, sc) = self.child_cells(b)?;
                let (parent_ac, _) = self.child_cells(grandparent)?;
                let entries = split_entries(ranges, &[child_ac, parent_ac, sc])
                    .ok_or_else(|| self.malformed(b, "ranges"))?;
                let hit = entries.iter().find(|e| address >= e[0] && address - e[0] < e[2]);
                let e =
                    hit.ok_or_else(|| DtbError::Untranslatable { node: self.path(idx), address })?;
                address =
                    e[1].checked_add(address - e[0]).ok_or_else(|| self.malformed(b, "ranges"))?;
            }
            bus = Some(grandparent);
        }
        Ok(address)
    }

    fn initrd(&self, chosen: usize) -> Result<Option<Region>, DtbError> {
        let start = self.number(chosen, "linux,initrd-start")?;
        let end = self.number(chosen, "linux,initrd-end")?;
        match (start, end) {
            (None, None) => Ok(None),
            (Some(start), Some(end)) if end >= start => {
                Ok((end > start).then(|| Region::new(start, end - start)))
            }
            (Some(_), _) => Err(self.malformed(chosen, "linux,initrd-end")),
            (None, Some(_)) => Err(self.malformed(chosen, "linux,initrd-start")),
        }
    }

    fn uart(&self, chosen: Option<usize>) -> Result<Option<Region>, DtbError> {
        const PL011: &[&str] = &["arm,pl011"];
        let usable = |i: usize| self.is_compatible(i, PL011) && self.enabled(i);
        let from_stdout = chosen
            .and_then(|c| self.str_prop(c, "stdout-path"))
            .and_then(|p| self.resolve_alias_path(p))
            .filter(|&i| usable(i));
        let Some(idx) = from_stdout.or_else(|| (0..self.nodes.len()).find(|&i| usable(i))) else {
            return Ok(None);
        };
        let regs = self.reg(idx)?.ok_or_else(|| self.malformed_reg(idx))?;
        regs.first().copied().map(Some).ok_or_else(|| self.malformed_reg(idx))
    }

    /// Resolves `stdout-path` style values: options after `:` are dropped,
    /// a value not starting with `/` is looked up in `/aliases`.
    fn resolve_alias_path(&self, value: &str) -> Option<usize> {
        let path = value.split(':').next().unwrap_or(value);
        if path.starts_with('/') {
            return self.find_path(path);
        }
        let aliases = self.child_named(0, "aliases")?;
        let target = self.str_prop_dynamic(aliases, path)?;
        target.starts_with('/').then(|| self.find_path(target)).flatten()
    }

    fn str_prop_dynamic(&self, idx: usize, name: &str) -> Option<&'a str> {
        let value = self.prop(idx, name)?;
        let value = value.strip_suffix(&[0]).unwrap_or(value);
        core::str::from_utf8(value).ok()
    }

    fn gic(&self) -> Result<Option<Gic>, DtbError> {
        const V3: &[&str] = &["arm,gic-v3"];
        const V2: &[&str] = &["arm,cortex-a15-gic", "arm,gic-400"];
        let found = (0..self.nodes.len())
            .find(|&i| (self.is_compatible(i, V3) || self.is_compatible(i, V2)) && self.enabled(i));
        let Some(idx) = found else { return Ok(None) };
        let regs = self.reg(idx)?.ok_or_else(|| self.malformed_reg(idx))?;
        let reg = |n: usize| regs.get(n).copied().ok_or_else(|| self.malformed_reg(idx));
        if self.is_compatible(idx, V3) {
            let count = self.cell_count(idx, "#redistributor-regions", 1)? as usize;
            if count == 0 || regs.len() < 1 + count {
                return Err(self.malformed_reg(idx));
            }
            Ok(Some(Gic::V3 { distributor: reg(0)?, redistributors: regs[1..=count].to_vec() }))
        } else {
            Ok(Some(Gic::V2 {
                distributor: reg(0)?,
                cpu_interface: reg(1)?,
                hyp_interface: regs.get(2).copied(),
                vcpu_interface: regs.get(3).copied(),
            }))
        }
    }

    fn cpus(&self) -> Result<Vec<Cpu>, DtbError> {
        let cpus_node = self.child_named(0, "cpus").ok_or(DtbError::MissingNode("/cpus"))?;
        let inherited = self.enable_method(cpus_node)?;
        let mut cpus = Vec::new();
        for idx in self.children(cpus_node) {
            let is_cpu = self.base_name(idx) == "cpu"
                && matches!(self.str_prop(idx, "device_type"), None | Some("cpu"));
            if !is_cpu {
                continue;
            }
            let regs = self.raw_reg(idx)?.ok_or_else(|| self.malformed_reg(idx))?;
            let &(mpidr, _) = regs.first().ok_or_else(|| self.malformed_reg(idx))?;
            let enable_method = match self.enable_method(idx)? {
                Some(m) => Some(m),
                None => inherited.clone(),
            };
            cpus.push(Cpu { mpidr, enable_method });
        }
        if cpus.is_empty() {
            return Err(DtbError::NoCpus);
        }
        Ok(cpus)
    }

    fn enable_method(&self, idx: usize) -> Result<Option<EnableMethod>, DtbError> {
        Ok(match self.string(idx, "enable-method")? {
            None => None,
            Some("psci") => Some(EnableMethod::Psci),
            Some("spin-table") => {
                let addr = self.number(idx, "cpu-release-addr")?;
                let release_addr = addr.ok_or_else(|| self.malformed(idx, "cpu-release-addr"))?;
                Some(EnableMethod::SpinTable { release_addr })
            }
            Some(other) => Some(EnableMethod::Other(other.into())),
        })
    }

    fn psci(&self) -> Result<Option<Psci>, DtbError> {
        const COMPAT: &[(&str, PsciVersion)] = &[
            ("arm,psci-1.0", PsciVersion::V1_0),
            ("arm,psci-0.2", PsciVersion::V0_2),
            ("arm,psci", PsciVersion::V0_1),
        ];
        let version_of = |i: usize| {
            COMPAT.iter().filter(|(c, _)| self.is_compatible(i, &[c])).map(|x| x.1).max()
        };
        let Some(idx) = (0..self.nodes.len()).find(|&i| version_of(i).is_some() && self.enabled(i))
        else {
            return Ok(None);
        };
        let method = match self.string(idx, "method")? {
            Some("smc") => PsciMethod::Smc,
            Some("hvc") => PsciMethod::Hvc,
            _ => return Err(self.malformed(idx, "method")),
        };
        Ok(version_of(idx).map(|version| Psci { method, version }))
    }
}

/// A 4- or 8-byte big-endian number.
fn read_number(v: &[u8]) -> Option<u64> {
    match v.len() {
        4 => be32(v, 0).map(u64::from),
        8 => be64(v, 0),
        _ => None,
    }
}

/// Splits `value` into entries of fields of `cells[i]` cells each (every
/// count 0..=2); `None` if a count is larger or the length does not divide.
fn split_entries(value: &[u8], cells: &[u32]) -> Option<Vec<Vec<u64>>> {
    if cells.iter().any(|&c| c > 2) {
        return None;
    }
    let entry_len: usize = cells.iter().map(|&c| c as usize * 4).sum();
    if entry_len == 0 || !value.len().is_multiple_of(entry_len) {
        return None;
    }
    let mut out = Vec::with_capacity(value.len() / entry_len);
    for chunk in value.chunks_exact(entry_len) {
        let mut fields = Vec::with_capacity(cells.len());
        let mut off = 0;
        for &c in cells {
            let n = c as usize * 4;
            fields.push(if n == 0 { 0 } else { read_number(&chunk[off..off + n])? });
            off += n;
        }
        out.push(fields);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt_writer::{guest_dtb, FdtWriter, GuestDtbSpec};

    const GICV3_SMP4: &[u8] = include_bytes!("../tests/fixtures/virt-gicv3-smp4.dtb");
    const A57_SMP1: &[u8] = include_bytes!("../tests/fixtures/virt-a57-smp1.dtb");
    const GICV2_SMP2: &[u8] = include_bytes!("../tests/fixtures/virt-gicv2-smp2.dtb");
    const RPI4_LIKE: &[u8] = include_bytes!("../tests/fixtures/rpi4-like.dtb");
    const MIB: u64 = 1 << 20;

    fn named(name: &str, base: u64, size: u64) -> NamedRegion {
        NamedRegion::new(name, Region::new(base, size))
    }

    #[test]
    fn qemu_virt_gicv3_smp4() {
        let p = Platform::parse(GICV3_SMP4, 0x4820_0000).unwrap();
        assert_eq!(p.dtb, Region::new(0x4820_0000, GICV3_SMP4.len() as u64));
        assert_eq!(p.boot_cpuid, 0);
        assert_eq!(p.memory, [Region::new(0x4000_0000, 1 << 30)]);
        assert_eq!(p.reserved, []);
        assert_eq!(p.initrd, Some(Region::new(0x4800_0000, 0x1000)));
        assert_eq!(p.bootargs.as_deref(), Some("vms=2 vcpus=2 mem=64M"));
        assert_eq!(p.uart, Some(Region::new(0x0900_0000, 0x1000)));
        assert_eq!(
            p.gic,
            Some(Gic::V3 {
                distributor: Region::new(0x0800_0000, 0x1_0000),
                redistributors: vec![Region::new(0x080a_0000, 0xf6_0000)],
            })
        );
        assert_eq!(p.gic.as_ref().unwrap().distributor().base, 0x0800_0000);
        let cpus: Vec<_> =
            (0..4).map(|i| Cpu { mpidr: i, enable_method: Some(EnableMethod::Psci) }).collect();
        assert_eq!(p.cpus, cpus);
        // virtualization=on: QEMU's own PSCI moves to SMC (HVC would trap to us).
        assert_eq!(p.psci, Some(Psci { method: PsciMethod::Smc, version: PsciVersion::V1_0 }));
        assert_eq!(p.compatible, ["linux,dummy-virt"]);
        assert_eq!(p.model.as_deref(), Some("linux,dummy-virt"));
        assert_eq!(p.board(), Board::QemuVirt);

        let config = Config::parse(p.bootargs.as_deref().unwrap()).unwrap();
        assert_eq!(config, Config { vms: 2, vcpus: 2, mem: 64 * MIB, ..Config::default() });
    }

    #[test]
    fn qemu_virt_a57_smp1_without_initrd_or_bootargs() {
        let p = Platform::parse(A57_SMP1, 0x4800_0000).unwrap();
        assert_eq!(p.memory, [Region::new(0x4000_0000, 512 * MIB)]);
        assert_eq!(p.initrd, None);
        assert_eq!(p.bootargs, None);
        // With one CPU QEMU writes no enable-method at all.
        assert_eq!(p.cpus, [Cpu { mpidr: 0, enable_method: None }]);
        assert!(matches!(p.gic, Some(Gic::V3 { .. })));
        assert_eq!(p.psci.unwrap().method, PsciMethod::Smc);
        assert_eq!(p.uart, Some(Region::new(0x0900_0000, 0x1000)));
        assert_eq!(p.reserved, []);
    }

    #[test]
    fn qemu_virt_gicv2_smp2() {
        let p = Platform::parse(GICV2_SMP2, 0x4820_0000).unwrap();
        assert_eq!(p.memory, [Region::new(0x4000_0000, 256 * MIB)]);
        assert_eq!(p.initrd, Some(Region::new(0x4800_0000, 0x1000)));
        assert_eq!(
            p.gic,
            Some(Gic::V2 {
                distributor: Region::new(0x0800_0000, 0x1_0000),
                cpu_interface: Region::new(0x0801_0000, 0x1_0000),
                hyp_interface: Some(Region::new(0x0803_0000, 0x1_0000)),
                vcpu_interface: Some(Region::new(0x0804_0000, 0x1_0000)),
            })
        );
        assert_eq!(p.cpus.len(), 2);
        assert_eq!(p.cpus[1], Cpu { mpidr: 1, enable_method: Some(EnableMethod::Psci) });
        let config = Config::parse(p.bootargs.as_deref().unwrap()).unwrap();
        assert_eq!(
            config,
            Config { policy: Policy::Blocks, lock: LockKind::Single, ..Config::default() }
        );
    }

    #[test]
    fn raspberry_pi_4_shapes() {
        let p = Platform::parse(RPI4_LIKE, 0x2eff_0000).unwrap();
        assert_eq!(p.board(), Board::RaspberryPi4B);
        assert_eq!(p.compatible, ["raspberrypi,4-model-b", "brcm,bcm2711"]);
        assert_eq!(p.model.as_deref(), Some("Raspberry Pi 4 Model B Rev 1.4"));
        // #size-cells = <1>: two entries in one memory node.
        assert_eq!(p.memory, [Region::new(0, 0x3b40_0000), Region::new(0x4000_0000, 0xbc00_0000)]);
        // /memreserve/ first; the disabled and the size-only (CMA) children are left out.
        assert_eq!(
            p.reserved,
            [
                named("/memreserve/", 0, 0x1000),
                named("reserved-memory nvram@3b3f0000", 0x3b3f_0000, 0x1_0000),
            ]
        );
        // 32-bit initrd cells.
        assert_eq!(p.initrd, Some(Region::new(0x2eff_2000, 0xe000)));
        assert_eq!(p.bootargs.as_deref(), Some("vms=3 vcpus=2 mem=256M policy=blocks lock=split"));
        // stdout-path = "serial1:115200n8" -> alias -> /soc/serial@7e201000,
        // translated through /soc ranges (0x7e000000 -> 0xfe000000).
        assert_eq!(p.uart, Some(Region::new(0xfe20_1000, 0x200)));
        assert_eq!(
            p.gic,
            Some(Gic::V2 {
                distributor: Region::new(0xff84_1000, 0x1000),
                cpu_interface: Region::new(0xff84_2000, 0x2000),
                hyp_interface: Some(Region::new(0xff84_4000, 0x2000)),
                vcpu_interface: Some(Region::new(0xff84_6000, 0x2000)),
            })
        );
        let release: Vec<_> = p
            .cpus
            .iter()
            .map(|c| match c.enable_method {
                Some(EnableMethod::SpinTable { release_addr }) => (c.mpidr, release_addr),
                ref other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(release, [(0, 0xd8), (1, 0xe0), (2, 0xe8), (3, 0xf0)]);
        assert_eq!(p.psci, None);
        let config = Config::parse(p.bootargs.as_deref().unwrap()).unwrap();
        assert_eq!(config.vms, 3);
        assert_eq!(config.mem, 256 * MIB);
    }

    #[test]
    fn guest_dtb_round_trip() {
        let spec = GuestDtbSpec {
            arch: crate::fdt_writer::GuestArch::Armv8,
            ram_base: crate::fdt_writer::GUEST_RAM_BASE,
            ram_size: 64 * MIB,
            cpus: 2,
            bootargs: "vms=1".into(),
        };
        let blob = guest_dtb(&spec);
        let p = Platform::parse(&blob, 0x4000_0000).unwrap();
        assert_eq!(p.memory, [Region::new(0x4000_0000, 64 * MIB)]);
        assert_eq!(p.uart, Some(Region::new(0x0900_0000, 0x1000)));
        assert_eq!(p.psci, Some(Psci { method: PsciMethod::Hvc, version: PsciVersion::V1_0 }));
        assert_eq!(p.cpus.len(), 2);
        assert_eq!(p.cpus[1], Cpu { mpidr: 1, enable_method: Some(EnableMethod::Psci) });
        assert_eq!(p.gic, None);
        assert_eq!(p.bootargs.as_deref(), Some("vms=1"));
        assert_eq!(p.board(), Board::QemuVirt);
        assert_eq!(p.dtb, Region::new(0x4000_0000, blob.len() as u64));
    }

    #[test]
    fn from_addr_reads_the_header_first() {
        // A buffer longer than the blob: only totalsize bytes are read.
        let mut buf = GICV3_SMP4.to_vec();
        buf.extend_from_slice(&[0xff; 64]);
        let addr = buf.as_ptr() as u64;
        // SAFETY: `buf` is live and holds the whole blob.
        let p = unsafe { Platform::from_addr(addr) }.unwrap();
        assert_eq!(p, Platform::parse(GICV3_SMP4, addr).unwrap());
        // SAFETY: 0 is rejected before any read.
        assert_eq!(unsafe { Platform::from_addr(0) }, Err(DtbError::BadAddress(0)));
        let junk = [0u8; 8];
        // SAFETY: 8 readable bytes without the magic: nothing more is read.
        let err = unsafe { Platform::from_addr(junk.as_ptr() as u64) };
        assert_eq!(err, Err(DtbError::BadMagic(0)));
        let mut huge = GICV3_SMP4[..8].to_vec();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        // SAFETY: the oversized totalsize is rejected before the second read.
        let err = unsafe { Platform::from_addr(huge.as_ptr() as u64) };
        assert!(matches!(err, Err(DtbError::BadLayout(_))), "{err:?}");
    }

    #[test]
    fn dtb_total_size_reads_the_header() {
        assert_eq!(dtb_total_size(GICV3_SMP4), Ok(GICV3_SMP4.len()));
        assert_eq!(dtb_total_size(&GICV3_SMP4[..8]), Ok(GICV3_SMP4.len()));
        assert_eq!(
            dtb_total_size(&GICV3_SMP4[..7]),
            Err(DtbError::Truncated { needed: 8, available: 7 })
        );
        assert_eq!(dtb_total_size(&[0; 8]), Err(DtbError::BadMagic(0)));
        let mut tiny = GICV3_SMP4[..8].to_vec();
        tiny[4..8].copy_from_slice(&8u32.to_be_bytes());
        assert!(matches!(dtb_total_size(&tiny), Err(DtbError::BadLayout(_))));
    }

    fn set_be32(blob: &mut [u8], off: usize, v: u32) {
        blob[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    #[test]
    fn malformed_blobs_are_errors() {
        assert_eq!(Platform::parse(&[], 0), Err(DtbError::Truncated { needed: 40, available: 0 }));
        assert_eq!(
            Platform::parse(&GICV3_SMP4[..39], 0),
            Err(DtbError::Truncated { needed: 40, available: 39 })
        );
        let half = GICV3_SMP4.len() / 2;
        assert_eq!(
            Platform::parse(&GICV3_SMP4[..half], 0),
            Err(DtbError::Truncated { needed: GICV3_SMP4.len(), available: half })
        );
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\xb7\0";
        assert_eq!(Platform::parse(elf, 0), Err(DtbError::BadMagic(0x7f45_4c46)));
        let mut bad = GICV3_SMP4.to_vec();
        bad[0] = 0;
        assert_eq!(Platform::parse(&bad, 0), Err(DtbError::BadMagic(0x000d_feed)));

        let corrupt = |off: usize, v: u32| {
            let mut b = GICV3_SMP4.to_vec();
            set_be32(&mut b, off, v);
            Platform::parse(&b, 0)
        };
        assert_eq!(corrupt(20, 16), Err(DtbError::UnsupportedVersion(16)));
        assert_eq!(corrupt(24, 18), Err(DtbError::UnsupportedVersion(17)));
        assert!(matches!(corrupt(4, 12), Err(DtbError::BadLayout(_))));
        assert!(matches!(corrupt(8, 0xffff_fff0), Err(DtbError::BadLayout(_))));
        assert!(matches!(corrupt(12, 0x10_0000), Err(DtbError::BadLayout(_))));
        assert!(matches!(corrupt(36, 0xffff_ffff), Err(DtbError::BadLayout(_))));
        assert!(matches!(corrupt(16, 0), Err(DtbError::BadLayout(_))));
        // First structure token: FDT_BEGIN_NODE of the root.
        let st = u32::from_be_bytes(GICV3_SMP4[8..12].try_into().unwrap()) as usize;
        assert_eq!(
            corrupt(st, 0x77),
            Err(DtbError::BadStructure { offset: 0, reason: "unknown token" })
        );
        assert_eq!(
            corrupt(st, FDT_PROP),
            Err(DtbError::BadStructure { offset: 0, reason: "property outside a node" })
        );
        // The root's first property (after the root's padded empty name):
        // its name offset beyond the strings block.
        assert_eq!(
            corrupt(st + 16, 0xffff),
            Err(DtbError::BadStructure { offset: 8, reason: "bad property name offset" })
        );
        // Its length beyond the block.
        assert_eq!(
            corrupt(st + 12, 0xffff),
            Err(DtbError::BadStructure { offset: 8, reason: "property value overruns the block" })
        );
        // A memory reservation block without terminator.
        let total = GICV3_SMP4.len() as u32;
        assert_eq!(
            corrupt(16, total - 8),
            Err(DtbError::BadLayout("memory reservation block not terminated"))
        );
        // One whose entry overflows.
        let mut b = GICV3_SMP4.to_vec();
        set_be32(&mut b, 16, total - 32);
        b[total as usize - 32..].fill(0xff);
        assert_eq!(
            Platform::parse(&b, 0),
            Err(DtbError::MalformedReg { node: "/memreserve/".into() })
        );
        let msg = DtbError::BadMagic(1).to_string();
        assert!(msg.contains("0x00000001"), "{msg}");
    }

    /// A tiny xorshift, so that the mutation test is deterministic.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn mutated_blobs_never_panic() {
        let mut parsed = 0;
        // Every structure word of the small fixture set to interesting tokens.
        let st = u32::from_be_bytes(RPI4_LIKE[8..12].try_into().unwrap()) as usize;
        let size = u32::from_be_bytes(RPI4_LIKE[36..40].try_into().unwrap()) as usize;
        for off in (st..st + size).step_by(4) {
            for v in [0, 1, 2, 3, 4, 9, 0xffff_ffff, 0x8000] {
                let mut b = RPI4_LIKE.to_vec();
                set_be32(&mut b, off, v);
                parsed += Platform::parse(&b, 0).is_ok() as u32;
            }
        }
        // Random byte flips anywhere in a QEMU blob.
        let mut state = 0x1234_5678_9abc_def1;
        for _ in 0..1500 {
            let mut b = GICV2_SMP2.to_vec();
            for _ in 0..1 + rng(&mut state) % 4 {
                let i = (rng(&mut state) % b.len() as u64) as usize;
                b[i] = rng(&mut state) as u8;
            }
            parsed += Platform::parse(&b, 0).is_ok() as u32;
        }
        // Every truncation with a matching totalsize.
        for len in 0..RPI4_LIKE.len() {
            let mut b = RPI4_LIKE[..len].to_vec();
            if len >= 8 {
                set_be32(&mut b, 4, len as u32);
            }
            parsed += Platform::parse(&b, 0).is_ok() as u32;
        }
        assert!(parsed > 0);
    }

    /// The same blob with an `FDT_NOP` before every structure token.
    fn with_nops(blob: &[u8]) -> Vec<u8> {
        let word = |b: &[u8], o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        let (st, st_size) = (word(blob, 8) as usize, word(blob, 36) as usize);
        let s = &blob[st..st + st_size];
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < s.len() {
            let len = match word(s, pos) {
                FDT_BEGIN_NODE => align4(4 + cstr_at(s, pos + 4).unwrap().len() + 1),
                FDT_PROP => 12 + align4(word(s, pos + 4) as usize),
                _ => 4,
            };
            out.extend_from_slice(&FDT_NOP.to_be_bytes());
            out.extend_from_slice(&s[pos..pos + len]);
            pos += len;
        }
        let grow = out.len() - st_size;
        let mut b = blob[..st].to_vec();
        b.extend_from_slice(&out);
        b.extend_from_slice(&blob[st + st_size..]);
        set_be32(&mut b, 4, (blob.len() + grow) as u32);
        set_be32(&mut b, 36, out.len() as u32);
        set_be32(&mut b, 12, word(blob, 12) + grow as u32);
        b
    }

    #[test]
    fn nop_tokens_are_ignored() {
        for blob in [GICV3_SMP4, RPI4_LIKE] {
            let nops = with_nops(blob);
            assert!(nops.len() > blob.len());
            let mut expected = Platform::parse(blob, 0x1000).unwrap();
            expected.dtb.size = nops.len() as u64;
            assert_eq!(Platform::parse(&nops, 0x1000), Ok(expected));
        }
    }

    /// A minimal valid tree with `extra` run inside the root node, after
    /// `/cpus` (one PSCI CPU) and `/chosen`.
    fn build(extra: impl FnOnce(&mut FdtWriter)) -> Result<Platform, DtbError> {
        let mut w = FdtWriter::new();
        let root = w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        let cpus = w.begin_node("cpus");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 0);
        let cpu = w.begin_node("cpu@0");
        w.prop_u32("reg", 0);
        w.end_node(cpu);
        w.end_node(cpus);
        extra(&mut w);
        w.end_node(root);
        Platform::parse(&w.finish(0).unwrap(), 0)
    }

    fn memory(w: &mut FdtWriter) {
        let m = w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_reg(&[(0x4000_0000, 0x1000_0000)], 2, 2);
        w.end_node(m);
    }

    fn node(w: &mut FdtWriter, name: &str, props: impl FnOnce(&mut FdtWriter)) {
        let n = w.begin_node(name);
        props(w);
        w.end_node(n);
    }

    #[test]
    fn semantic_errors() {
        assert!(build(memory).is_ok());
        assert_eq!(build(|_| {}), Err(DtbError::NoMemory));
        assert_eq!(
            build(|w| node(w, "memory@0", |w| w.prop_reg(&[(0, 0)], 2, 2))),
            Err(DtbError::NoMemory)
        );
        assert_eq!(
            build(|w| node(w, "memory@0", |w| w.prop_cells("reg", &[0, 0, 1]))),
            Err(DtbError::MalformedReg { node: "/memory@0".into() })
        );
        assert_eq!(
            build(|w| node(w, "memory@0", |w| w.prop_u64s("reg", &[u64::MAX, 2]))),
            Err(DtbError::MalformedReg { node: "/memory@0".into() })
        );
        assert_eq!(
            build(|w| node(w, "memory@0", |w| w.prop_str("device_type", "memory"))),
            Err(DtbError::MalformedReg { node: "/memory@0".into() }),
            "a memory node without reg"
        );
        let own_cells = build(|w| {
            node(w, "memory@0", |w| {
                w.prop_u32("#address-cells", 3);
                w.prop_reg(&[(0, 0x1000)], 2, 2);
            })
        });
        assert_eq!(own_cells.unwrap().memory, [Region::new(0, 0x1000)], "parent's cells apply");

        let mut w = FdtWriter::new();
        let root = w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        memory(&mut w);
        w.end_node(root);
        let blob = w.finish(0).unwrap();
        assert_eq!(Platform::parse(&blob, 0), Err(DtbError::MissingNode("/cpus")));
        let mut w = FdtWriter::new();
        let root = w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        memory(&mut w);
        node(&mut w, "cpus", |w| node(w, "cpu-map", |_| {}));
        w.end_node(root);
        assert_eq!(Platform::parse(&w.finish(0).unwrap(), 0), Err(DtbError::NoCpus));

        let with = |f: fn(&mut FdtWriter)| {
            build(|w| {
                memory(w);
                f(w);
            })
        };
        let chosen_err =
            |property| Err(DtbError::MalformedProperty { node: "/chosen".into(), property });
        assert_eq!(
            with(|w| node(w, "chosen", |w| w.prop_u32("linux,initrd-start", 0x4800_0000))),
            chosen_err("linux,initrd-end")
        );
        assert_eq!(
            with(|w| node(w, "chosen", |w| {
                w.prop_u64("linux,initrd-start", 0x4800_0000);
                w.prop_u64("linux,initrd-end", 0x4700_0000);
            })),
            chosen_err("linux,initrd-end")
        );
        assert_eq!(
            with(|w| node(w, "chosen", |w| {
                w.prop_cells("linux,initrd-start", &[0, 0, 1]);
                w.prop_u64("linux,initrd-end", 0x4700_0000);
            })),
            chosen_err("linux,initrd-start")
        );
        assert_eq!(
            with(|w| node(w, "chosen", |w| {
                w.prop_u32("linux,initrd-start", 0x4800_0000);
                w.prop_u64("linux,initrd-end", 0x4800_0000);
            }))
            .unwrap()
            .initrd,
            None,
            "an empty initrd is no initrd"
        );
        assert_eq!(
            with(|w| node(w, "chosen", |w| w.prop("bootargs", b"\xff\0"))),
            chosen_err("bootargs")
        );
        assert_eq!(
            with(|w| node(w, "psci", |w| {
                w.prop_str("compatible", "arm,psci-0.2");
                w.prop_str("method", "svc");
            })),
            Err(DtbError::MalformedProperty { node: "/psci".into(), property: "method" })
        );
        assert_eq!(
            with(|w| node(w, "psci", |w| {
                w.prop_strs("compatible", &["arm,psci-0.2", "arm,psci"]);
                w.prop_str("method", "hvc");
            }))
            .unwrap()
            .psci,
            Some(Psci { method: PsciMethod::Hvc, version: PsciVersion::V0_2 })
        );
        assert_eq!(
            with(|w| node(w, "intc@8000000", |w| {
                w.prop_str("compatible", "arm,gic-v3");
                w.prop_reg(&[(0x800_0000, 0x1_0000)], 2, 2);
            })),
            Err(DtbError::MalformedReg { node: "/intc@8000000".into() })
        );
        assert_eq!(
            with(|w| node(w, "intc@8000000", |w| {
                w.prop_str("compatible", "arm,gic-400");
                w.prop_reg(&[(0x800_0000, 0x1000)], 2, 2);
            })),
            Err(DtbError::MalformedReg { node: "/intc@8000000".into() })
        );
        let gic = with(|w| {
            node(w, "intc@8000000", |w| {
                w.prop_str("compatible", "arm,gic-v3");
                w.prop_u32("#redistributor-regions", 2);
                w.prop_reg(
                    &[(0x800_0000, 0x1_0000), (0x80a_0000, 0x2_0000), (0x1_0000_0000, 0x4_0000)],
                    2,
                    2,
                );
            })
        });
        assert_eq!(
            gic.unwrap().gic,
            Some(Gic::V3 {
                distributor: Region::new(0x800_0000, 0x1_0000),
                redistributors: vec![
                    Region::new(0x80a_0000, 0x2_0000),
                    Region::new(0x1_0000_0000, 0x4_0000)
                ],
            })
        );
        // A PL011 on a bus whose ranges do not cover it.
        assert_eq!(
            with(|w| node(w, "soc", |w| {
                w.prop_u32("#address-cells", 1);
                w.prop_u32("#size-cells", 1);
                w.prop_cells("ranges", &[0x7e00_0000, 0, 0xfe00_0000, 0x10_0000]);
                node(w, "serial@7f201000", |w| {
                    w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
                    w.prop_cells("reg", &[0x7f20_1000, 0x200]);
                });
            })),
            Err(DtbError::Untranslatable {
                node: "/soc/serial@7f201000".into(),
                address: 0x7f20_1000
            })
        );
        // No PL011, no GIC, no PSCI, no /chosen: all optional.
        let p = with(|_| {}).unwrap();
        assert_eq!((p.uart, &p.gic, p.psci, p.initrd), (None, &None, None, None));
        assert_eq!(p.bootargs, None);
        assert_eq!(p.cpus, [Cpu { mpidr: 0, enable_method: None }]);
        assert_eq!(p.board(), Board::Unknown);
    }

    #[test]
    fn spin_table_and_inherited_enable_method() {
        let p = build(|w| {
            memory(w);
            node(w, "extra", |_| {});
        })
        .unwrap();
        assert_eq!(p.cpus.len(), 1);

        let mut w = FdtWriter::new();
        let root = w.begin_node("");
        w.prop_strs("compatible", &["raspberrypi,3-model-b", "brcm,bcm2837"]);
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        memory(&mut w);
        node(&mut w, "cpus", |w| {
            w.prop_u32("#address-cells", 2);
            w.prop_u32("#size-cells", 0);
            w.prop_str("enable-method", "brcm,bcm2836-smp");
            node(w, "cpu@0", |w| w.prop_u64("reg", 0x1_0000_0100));
            node(w, "cpu@1", |w| {
                w.prop_u64("reg", 0x101);
                w.prop_str("enable-method", "spin-table");
            });
        });
        w.end_node(root);
        let blob = w.finish(0).unwrap();
        assert_eq!(
            Platform::parse(&blob, 0),
            Err(DtbError::MalformedProperty {
                node: "/cpus/cpu@1".into(),
                property: "cpu-release-addr"
            })
        );

        let mut w = FdtWriter::new();
        let root = w.begin_node("");
        w.prop_strs("compatible", &["raspberrypi,3-model-b", "brcm,bcm2837"]);
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        memory(&mut w);
        node(&mut w, "cpus", |w| {
            w.prop_u32("#address-cells", 2);
            w.prop_u32("#size-cells", 0);
            w.prop_str("enable-method", "brcm,bcm2836-smp");
            node(w, "cpu@0", |w| w.prop_u64("reg", 0x1_0000_0100));
            node(w, "cpu@1", |w| {
                w.prop_u64("reg", 0x101);
                w.prop_str("enable-method", "spin-table");
                w.prop_u64("cpu-release-addr", 0xe0);
            });
        });
        w.end_node(root);
        let p = Platform::parse(&w.finish(0).unwrap(), 0).unwrap();
        assert_eq!(p.board(), Board::RaspberryPi3B);
        assert_eq!(
            p.cpus,
            [
                Cpu {
                    mpidr: 0x1_0000_0100,
                    enable_method: Some(EnableMethod::Other("brcm,bcm2836-smp".into()))
                },
                Cpu {
                    mpidr: 0x101,
                    enable_method: Some(EnableMethod::SpinTable { release_addr: 0xe0 })
                },
            ]
        );
    }

    #[test]
    fn stdout_path_fallbacks() {
        let uart = |name: &str, base: u64, status: Option<&str>| {
            let (name, status) = (name.to_owned(), status.map(str::to_owned));
            move |w: &mut FdtWriter| {
                node(w, &name, |w| {
                    w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
                    w.prop_reg(&[(base, 0x1000)], 2, 2);
                    if let Some(s) = &status {
                        w.prop_str("status", s);
                    }
                })
            }
        };
        let tree = |stdout: &str| {
            let stdout = stdout.to_owned();
            build(move |w| {
                memory(w);
                uart("pl011@9000000", 0x900_0000, None)(w);
                uart("pl011@9001000", 0x900_1000, Some("okay"))(w);
                uart("pl011@9002000", 0x900_2000, Some("disabled"))(w);
                node(w, "aliases", |w| w.prop_str("serial1", "/pl011@9001000"));
                node(w, "chosen", |w| w.prop_str("stdout-path", &stdout));
            })
            .unwrap()
            .uart
            .unwrap()
            .base
        };
        assert_eq!(tree("/pl011@9001000"), 0x900_1000);
        assert_eq!(tree("/pl011@9001000:115200n8"), 0x900_1000);
        assert_eq!(tree("serial1"), 0x900_1000);
        assert_eq!(tree("serial1:115200"), 0x900_1000);
        assert_eq!(tree("/pl011"), 0x900_0000, "unit-less path: first match");
        assert_eq!(tree("/pl011@9002000"), 0x900_0000, "disabled: fall back");
        assert_eq!(tree("serial9"), 0x900_0000, "unknown alias: fall back");
        assert_eq!(tree("/nowhere"), 0x900_0000);
        assert_eq!(tree("/cpus"), 0x900_0000, "not a PL011: fall back");
    }

    #[test]
    fn config_grammar() {
        assert_eq!(
            Config::default(),
            Config {
                vms: 1,
                vcpus: 1,
                mem: 128 * MIB,
                policy: Policy::Pages,
                lock: LockKind::Split,
                premap: false,
                collapse: false,
                coherency: Coherency::Nc,
            }
        );
        assert_eq!(Config::parse(""), Ok(Config::default()));
        assert_eq!(Config::parse("  \n"), Ok(Config::default()));
        assert_eq!(
            Config::parse("vms=8 vcpus=8 mem=4G policy=blocks lock=single premap=1"),
            Ok(Config {
                vms: 8,
                vcpus: 8,
                mem: 4 << 30,
                policy: Policy::Blocks,
                lock: LockKind::Single,
                premap: true,
                collapse: false,
                coherency: Coherency::Nc,
            })
        );
        assert_eq!(Config::parse("coherency=ro").unwrap().coherency, Coherency::Ro);
        assert_eq!(Config::parse("coherency=nc").unwrap().coherency, Coherency::Nc);
        assert!(!Config::parse("premap=0").unwrap().premap);
        assert!(Config::parse("collapse=1").unwrap().collapse);
        assert!(matches!(Config::parse("premap=yes"), Err(ConfigError::BadChoice { .. })));
        assert_eq!(Config::parse("mem=2M").unwrap().mem, 2 * MIB);
        assert_eq!(Config::parse("mem=2048k").unwrap().mem, 2 * MIB);
        assert_eq!(Config::parse("mem=1g").unwrap().mem, 1 << 30);
        assert_eq!(Config::parse("mem=4194304").unwrap().mem, 4 * MIB);
        assert_eq!(Config::parse("\tvms=3\n").unwrap().vms, 3);
        assert_eq!(Config::parse("vms=007").unwrap().vms, 7);

        use ConfigError::*;
        let err = |s| Config::parse(s).unwrap_err();
        assert_eq!(err("quiet"), NotKeyValue("quiet".into()));
        assert_eq!(err("console=ttyAMA0"), UnknownKey("console".into()));
        assert_eq!(err("vms=1 vms=2"), DuplicateKey("vms".into()));
        assert_eq!(err("vms="), BadNumber { key: "vms", value: "".into() });
        assert_eq!(err("vms=-1"), BadNumber { key: "vms", value: "-1".into() });
        assert_eq!(err("vms=0x2"), BadNumber { key: "vms", value: "0x2".into() });
        assert_eq!(err("vms=0"), OutOfRange { key: "vms", value: 0, min: 1, max: 8 });
        assert_eq!(err("vms=9"), OutOfRange { key: "vms", value: 9, min: 1, max: 8 });
        assert_eq!(
            err("vcpus=99999999999999999999999"),
            OutOfRange { key: "vcpus", value: u64::MAX, min: 1, max: 8 }
        );
        assert_eq!(err("vcpus=9"), OutOfRange { key: "vcpus", value: 9, min: 1, max: 8 });
        assert_eq!(err("mem=64X"), BadNumber { key: "mem", value: "64X".into() });
        assert_eq!(err("mem=M"), BadNumber { key: "mem", value: "M".into() });
        assert_eq!(err("mem="), BadNumber { key: "mem", value: "".into() });
        assert_eq!(err("mem=99999999999G"), BadNumber { key: "mem", value: "99999999999G".into() });
        assert_eq!(
            err("mem=1M"),
            OutOfRange { key: "mem", value: MIB, min: 2 * MIB, max: 4 << 30 }
        );
        assert_eq!(err("mem=0"), OutOfRange { key: "mem", value: 0, min: 2 * MIB, max: 4 << 30 });
        assert_eq!(
            err("mem=4100M"),
            OutOfRange { key: "mem", value: 4100 * MIB, min: 2 * MIB, max: 4 << 30 }
        );
        assert_eq!(err("mem=3M"), NotMultiple { key: "mem", value: 3 * MIB, multiple: 2 * MIB });
        assert_eq!(
            err("policy=huge"),
            BadChoice { key: "policy", value: "huge".into(), expected: "pages|blocks" }
        );
        assert_eq!(
            err("coherency=wb"),
            BadChoice { key: "coherency", value: "wb".into(), expected: "nc|ro" }
        );
        assert_eq!(
            err("lock=none"),
            BadChoice { key: "lock", value: "none".into(), expected: "split|single" }
        );
        // What follows `--` is ours; before it, the boot loader's.
        let pi = "coherent_pool=1M 8250.nr_uarts=1 console=ttyS0,115200 -- vms=2 lock=single";
        let c = Config::parse(pi).unwrap();
        assert_eq!((c.vms, c.lock), (2, LockKind::Single));
        assert_eq!(Config::parse("console=ttyS0 --").unwrap(), Config::default());
        assert_eq!(err("console=ttyS0 -- bogus=1"), UnknownKey("bogus".into()));
        assert_eq!(err("vms=2 bogus=1"), UnknownKey("bogus".into()));
        assert!(err("console=x").to_string().contains("unknown key \"console\""));
        assert!(err("mem=3M").to_string().contains("multiple of 2097152"));
        assert_eq!(parse_size("16K"), Some(16 << 10));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("1.5G"), None);
    }

    #[test]
    fn free_ranges_examples() {
        let ram = [Region::new(0x4000_0000, 0x4000_0000)];
        let excluded = [
            named("hypervisor image", 0x4020_0000, 0x12_3456),
            named("DTB", 0x4820_0000, 0x10_0000),
            named("initrd", 0x4800_0000, 0x1000),
        ];
        assert_eq!(
            free_ranges(&ram, &excluded),
            [
                Region::new(0x4000_0000, 0x20_0000),
                Region::new(0x4032_4000, 0x4800_0000 - 0x4032_4000),
                Region::new(0x4800_1000, 0x4820_0000 - 0x4800_1000),
                Region::new(0x4830_0000, 0x8000_0000 - 0x4830_0000),
            ]
        );
        // Unaligned RAM shrinks, unaligned holes grow; unsorted, overlapping inputs.
        let ram = [Region::new(0x2_0800, 0x1_0000), Region::new(0x1_0000, 0x1_0001)];
        let excluded = [named("b", 0x2_5001, 1), named("a", 0x1_0fff, 2), named("c", 0x1_1000, 0)];
        assert_eq!(
            free_ranges(&ram, &excluded),
            [
                Region::new(0x1_2000, 0x2_0000 - 0x1_2000),
                Region::new(0x2_1000, 0x2_5000 - 0x2_1000),
                Region::new(0x2_6000, 0x3_0000 - 0x2_6000)
            ]
        );
        // Exclusions covering everything, or past the ends.
        assert_eq!(free_ranges(&ram, &[named("all", 0, u64::MAX)]), []);
        assert_eq!(free_ranges(&[Region::new(0x1000, 0x800)], &[]), []);
        assert_eq!(
            free_ranges(&[Region::new(u64::MAX - 0x1fff, 0x2000)], &[]),
            [Region::new(u64::MAX - 0x1fff, 0x1000)]
        );
        assert_eq!(free_ranges(&[], &excluded), []);
    }

    #[test]
    fn free_ranges_match_a_page_bitmap() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            let pages = 64u64;
            let mut region = |max_len: u64| {
                let base = rng(&mut state) % (pages * PAGE_SIZE);
                let size = rng(&mut state) % (max_len * PAGE_SIZE);
                Region::new(base, size)
            };
            let ram: Vec<_> = (0..3).map(|_| region(32)).collect();
            let excluded: Vec<_> = (0..4).map(|_| NamedRegion::new("x", region(8))).collect();
            let mut free = vec![false; 128];
            for r in &ram {
                for (p, slot) in free.iter_mut().enumerate() {
                    let (s, e) = (p as u64 * PAGE_SIZE, (p as u64 + 1) * PAGE_SIZE);
                    if s >= r.base && e <= r.end() {
                        *slot = true;
                    }
                }
            }
            for x in &excluded {
                for (p, slot) in free.iter_mut().enumerate() {
                    let page = Region::new(p as u64 * PAGE_SIZE, PAGE_SIZE);
                    if page.overlaps(&x.region) {
                        *slot = false;
                    }
                }
            }
            let got = free_ranges(&ram, &excluded);
            let mut bitmap = vec![false; 128];
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.base % PAGE_SIZE, 0);
                assert_eq!(r.size % PAGE_SIZE, 0);
                assert!(r.size > 0);
                if i > 0 {
                    assert!(got[i - 1].end() < r.base, "sorted, disjoint, not adjacent: {got:?}");
                }
                for p in r.base / PAGE_SIZE..r.end() / PAGE_SIZE {
                    bitmap[p as usize] = true;
                }
                assert!(ensure_disjoint(*r, &excluded).is_ok());
            }
            assert_eq!(bitmap, free, "ram {ram:?} excluded {excluded:?}");
        }
    }

    #[test]
    fn overlap_errors_name_the_region() {
        let excluded = [
            named("hypervisor image", 0x4020_0000, 0x20_0000),
            named("initrd", 0x4800_0000, 0x1000),
        ];
        assert_eq!(ensure_disjoint(Region::new(0x4400_0000, 0x400_0000), &excluded), Ok(()));
        assert_eq!(ensure_disjoint(Region::new(0x4800_1000, 0x1000), &excluded), Ok(()));
        let err = ensure_disjoint(Region::new(0x47f0_0000, 0x20_0000), &excluded).unwrap_err();
        assert_eq!(
            err,
            OverlapError {
                name: "initrd".into(),
                excluded: Region::new(0x4800_0000, 0x1000),
                region: Region::new(0x47f0_0000, 0x20_0000),
                overlap: Region::new(0x4800_0000, 0x1000),
            }
        );
        assert_eq!(
            err.to_string(),
            "[0x47f00000, 0x48100000) overlaps the initrd at [0x48000000, 0x48001000) \
             (shared: [0x48000000, 0x48001000))"
        );
        let err = ensure_disjoint(Region::new(0, u64::MAX), &excluded).unwrap_err();
        assert_eq!(err.name, "hypervisor image");
        let reversed = [excluded[1].clone(), excluded[0].clone()];
        let err = ensure_disjoint(Region::new(0, u64::MAX), &reversed).unwrap_err();
        assert_eq!(err.name, "hypervisor image", "lowest address, not list order");
    }

    #[test]
    fn platform_excluded_and_free_memory() {
        let p = Platform::parse(GICV3_SMP4, 0x4820_0000).unwrap();
        let hyp = Region::new(0x4020_0000, 0x40_0000);
        let excluded = p.excluded_regions(hyp);
        let names: Vec<_> = excluded.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["hypervisor image", "DTB", "initrd"]);
        let free = p.free_memory(hyp);
        assert_eq!(free[0], Region::new(0x4000_0000, 0x20_0000));
        assert_eq!(free.last().unwrap().end(), 0x8000_0000);
        let total: u64 = free.iter().map(|r| r.size).sum();
        assert_eq!(total, (1 << 30) - 0x40_0000 - 0x1000 - 0x3000);
        let err = ensure_disjoint(Region::new(0x4800_0000, 64 * MIB), &excluded).unwrap_err();
        assert_eq!(err.name, "initrd");

        let p = Platform::parse(RPI4_LIKE, 0x2eff_0000).unwrap();
        let names: Vec<_> = p
            .excluded_regions(Region::new(0x8_0000, 0x10_0000))
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            names,
            ["hypervisor image", "DTB", "initrd", "/memreserve/", "reserved-memory nvram@3b3f0000"]
        );
        assert_eq!(
            p.free_memory(Region::new(0x8_0000, 0x10_0000))[0],
            Region::new(0x1000, 0x7_f000)
        );
    }

    #[test]
    fn region_helpers() {
        let r = Region::new(0x1000, 0x1000);
        assert!(r.contains(0x1000) && r.contains(0x1fff) && !r.contains(0x2000));
        assert!(!r.overlaps(&Region::new(0x2000, 1)));
        assert!(r.overlaps(&Region::new(0x1fff, 1)));
        assert_eq!(Region::new(u64::MAX, 5).end(), u64::MAX);
        assert!(Region::new(5, 0).is_empty());
        assert_eq!(r.to_string(), "[0x1000, 0x2000)");
    }
}
