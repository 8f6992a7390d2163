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
//!
//! The code is split by concern, each part with its own unit tests:
//! - `fdt`: checking the blob ([`dtb_total_size`], [`DtbError`]) and the
//!   tree queries behind [`Platform::parse`];
//! - `memory`: the memory map ([`free_ranges`], [`ensure_disjoint`]);
//! - `bootargs`: the hypervisor's command line ([`Config`]).

mod bootargs;
mod fdt;
#[cfg(test)]
mod fixtures;
mod memory;

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use ::fdt::Fdt;

use self::fdt::{check_blob, strip_nops, Tree};

pub use self::bootargs::{parse_size, Coherency, Config, ConfigError, LockKind, Policy};
pub use self::fdt::{dtb_total_size, DtbError};
pub use self::memory::{ensure_disjoint, free_ranges, OverlapError, PAGE_SIZE};

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

#[cfg(test)]
mod tests {
    use super::fixtures::{named, A57_SMP1, GICV2_SMP2, GICV3_SMP4, MIB, RPI4_LIKE};
    use super::*;
    use crate::fdt_writer::{guest_dtb, GuestDtbSpec};

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
        use crate::fdt_writer::{GuestArch, GuestGic, GUEST_RAM_BASE};
        let spec = GuestDtbSpec {
            arch: GuestArch::Armv8,
            ram_base: GUEST_RAM_BASE,
            ram_size: 64 * MIB,
            cpus: 2,
            gic: GuestGic::V3 { redist_count: 2 },
            bootargs: "vms=1".into(),
            initrd: Some((0x4800_0000, 0x4812_3456)),
        };
        let blob = guest_dtb(&spec);
        let p = Platform::parse(&blob, 0x4000_0000).unwrap();
        // What the guest DTB says of its initramfs is what a boot DTB's
        // reader finds.
        assert_eq!(p.initrd, Some(Region { base: 0x4800_0000, size: 0x12_3456 }));
        assert_eq!(p.memory, [Region::new(0x4000_0000, 64 * MIB)]);
        assert_eq!(p.uart, Some(Region::new(0x0900_0000, 0x1000)));
        assert_eq!(p.psci, Some(Psci { method: PsciMethod::Hvc, version: PsciVersion::V1_0 }));
        assert_eq!(p.cpus.len(), 2);
        assert_eq!(p.cpus[1], Cpu { mpidr: 1, enable_method: Some(EnableMethod::Psci) });
        assert_eq!(
            p.gic,
            Some(Gic::V3 {
                distributor: Region::new(0x0800_0000, 0x1_0000),
                redistributors: vec![Region::new(0x080a_0000, 0x4_0000)],
            })
        );
        assert_eq!(p.bootargs.as_deref(), Some("vms=1"));
        assert_eq!(p.board(), Board::QemuVirt);
        assert_eq!(p.dtb, Region::new(0x4000_0000, blob.len() as u64));

        // An ARM32 guest's GICv2.
        let spec = GuestDtbSpec { arch: GuestArch::Armv7, gic: GuestGic::V2, ..spec };
        let p = Platform::parse(&guest_dtb(&spec), 0x4000_0000).unwrap();
        assert_eq!(
            p.gic,
            Some(Gic::V2 {
                distributor: Region::new(0x0800_0000, 0x1000),
                cpu_interface: Region::new(0x0801_0000, 0x2000),
                hyp_interface: None,
                vcpu_interface: None,
            })
        );
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
