//! A minimal flattened-device-tree (DTB) writer, and the guest device tree.
//!
//! [`FdtWriter`] emits a version 17 blob (big-endian): the 40-byte header,
//! the memory reservation block (with its all-zero terminator), the
//! structure block and the strings block (property names deduplicated).
//! Nodes are written in order: [`FdtWriter::begin_node`], the node's
//! properties, its children, then [`FdtWriter::end_node`]. Misuse (a
//! property after a child node, unbalanced nodes, a name containing NUL,
//! a `reg` value that does not fit its cells) does not panic: the first
//! such error is remembered and returned by [`FdtWriter::finish`].
//!
//! [`guest_dtb`] builds the device tree a guest is given at IPA
//! `0x4000_0000` (see `docs/HYPERVISOR.md`, "Guest device tree").
//!
//! Why not rust-vmm's `vm-fdt` (0.3): with default features off it does
//! not compile (its phandle set is a `std` `HashSet`), and its `alloc`
//! feature pulls `hashbrown`, `ahash`, `zerocopy`, `once_cell`, `cfg-if`
//! and `allocator-api2` into the EL2 image for a tree of fixed shape; the
//! platform parser's tests build their trees with this writer anyway.

use crate::layout;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Magic number at the start of every flattened device tree.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// The blob version written by [`FdtWriter`].
pub const FDT_VERSION: u32 = 17;
/// The oldest version the written blob is backwards compatible with.
pub const FDT_LAST_COMP_VERSION: u32 = 16;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;
const HEADER_SIZE: usize = 40;

/// Why [`FdtWriter::finish`] (or [`guest_dtb`]) refused to produce a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdtWriteError {
    /// A node or property name contains a NUL byte (or a string property
    /// value does, where NUL would split it).
    NulInString(String),
    /// A property was added outside any node, or after the node's first
    /// child (the format puts all properties before the children).
    PropertyOutOfPlace(String),
    /// [`FdtWriter::end_node`] was given a node other than the innermost
    /// open one, or a second root node was begun.
    UnbalancedNodes,
    /// [`FdtWriter::finish`] was called with nodes still open (or with no
    /// root node at all).
    UnclosedNodes(usize),
    /// A `reg` entry does not fit the requested number of cells, or the
    /// cell count is not 0, 1 or 2.
    RegDoesNotFit {
        /// The address of the offending entry.
        address: u64,
        /// The size of the offending entry.
        size: u64,
    },
    /// The blob would exceed the 4 GiB the 32-bit header fields can describe.
    TooLarge,
}

impl fmt::Display for FdtWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NulInString(s) => write!(f, "device tree string {s:?} contains a NUL byte"),
            Self::PropertyOutOfPlace(name) => {
                write!(f, "property {name:?} is outside a node or after a child node")
            }
            Self::UnbalancedNodes => write!(f, "device tree nodes closed out of order"),
            Self::UnclosedNodes(n) => write!(f, "{n} device tree node(s) left open"),
            Self::RegDoesNotFit { address, size } => {
                write!(f, "reg entry <{address:#x} {size:#x}> does not fit its cells")
            }
            Self::TooLarge => write!(f, "device tree larger than 4 GiB"),
        }
    }
}

/// An open node, returned by [`FdtWriter::begin_node`] and handed back to
/// [`FdtWriter::end_node`] so that nesting mistakes are caught.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "pass the node to FdtWriter::end_node"]
pub struct OpenNode {
    depth: usize,
}

/// Builds a flattened device tree blob; see the module documentation.
#[derive(Debug, Default)]
pub struct FdtWriter {
    reservations: Vec<(u64, u64)>,
    structure: Vec<u8>,
    strings: Vec<u8>,
    string_offsets: BTreeMap<String, u32>,
    /// Number of currently open nodes.
    depth: usize,
    /// Whether the innermost open node already has a child (no more
    /// properties may follow).
    has_child: Vec<bool>,
    /// Whether the root node has been closed (nothing may follow).
    root_done: bool,
    error: Option<FdtWriteError>,
}

impl FdtWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `/memreserve/` entry to the memory reservation block.
    pub fn add_mem_reserve(&mut self, address: u64, size: u64) {
        self.reservations.push((address, size));
    }

    /// Opens a node: `""` for the root, else `name` or `name@unit`.
    pub fn begin_node(&mut self, name: &str) -> OpenNode {
        if name.contains('\0') {
            self.fail(FdtWriteError::NulInString(name.into()));
        }
        if self.root_done || (self.depth == 0 && !self.structure.is_empty()) {
            self.fail(FdtWriteError::UnbalancedNodes);
        }
        if let Some(last) = self.has_child.last_mut() {
            *last = true;
        }
        self.push_u32(FDT_BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.align4();
        self.depth += 1;
        self.has_child.push(false);
        OpenNode { depth: self.depth }
    }

    /// Closes `node`, which must be the innermost open node.
    pub fn end_node(&mut self, node: OpenNode) {
        if node.depth != self.depth || self.depth == 0 {
            self.fail(FdtWriteError::UnbalancedNodes);
            return;
        }
        self.push_u32(FDT_END_NODE);
        self.depth -= 1;
        self.has_child.pop();
        if self.depth == 0 {
            self.root_done = true;
        }
    }

    /// Adds a property with a raw value to the innermost open node.
    pub fn prop(&mut self, name: &str, value: &[u8]) {
        if name.contains('\0') {
            self.fail(FdtWriteError::NulInString(name.into()));
        }
        if self.depth == 0 || self.has_child.last().copied().unwrap_or(true) {
            self.fail(FdtWriteError::PropertyOutOfPlace(name.into()));
        }
        let Ok(len) = u32::try_from(value.len()) else {
            self.fail(FdtWriteError::TooLarge);
            return;
        };
        let name_offset = self.string_offset(name);
        self.push_u32(FDT_PROP);
        self.push_u32(len);
        self.push_u32(name_offset);
        self.structure.extend_from_slice(value);
        self.align4();
    }

    /// Adds a property with no value (a boolean flag such as `always-on`).
    pub fn prop_empty(&mut self, name: &str) {
        self.prop(name, &[]);
    }

    /// Adds a NUL-terminated string property.
    pub fn prop_str(&mut self, name: &str, value: &str) {
        self.prop_strs(name, &[value]);
    }

    /// Adds a string-list property (`"a\0b\0"`, as `compatible` uses).
    pub fn prop_strs(&mut self, name: &str, values: &[&str]) {
        let mut bytes = Vec::new();
        for value in values {
            if value.contains('\0') {
                self.fail(FdtWriteError::NulInString((*value).into()));
            }
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(0);
        }
        self.prop(name, &bytes);
    }

    /// Adds a one-cell (32-bit big-endian) property.
    pub fn prop_u32(&mut self, name: &str, value: u32) {
        self.prop_cells(name, &[value]);
    }

    /// Adds a two-cell (64-bit big-endian) property.
    pub fn prop_u64(&mut self, name: &str, value: u64) {
        self.prop_u64s(name, &[value]);
    }

    /// Adds a property made of 32-bit cells.
    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &bytes);
    }

    /// Adds a property made of 64-bit values (two cells each).
    pub fn prop_u64s(&mut self, name: &str, values: &[u64]) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        self.prop(name, &bytes);
    }

    /// Adds a `reg` property: `(address, size)` pairs encoded with the
    /// parent's `#address-cells` and `#size-cells` (each 0, 1 or 2; a
    /// value that does not fit is an error reported by `finish`).
    pub fn prop_reg(&mut self, entries: &[(u64, u64)], address_cells: u32, size_cells: u32) {
        let mut bytes = Vec::new();
        for &(address, size) in entries {
            let ok = encode_cells(&mut bytes, address, address_cells)
                && encode_cells(&mut bytes, size, size_cells);
            if !ok {
                self.fail(FdtWriteError::RegDoesNotFit { address, size });
            }
        }
        self.prop("reg", &bytes);
    }

    /// Assembles the blob; `boot_cpuid` goes into the header's
    /// `boot_cpuid_phys` field. Returns the first misuse error, if any.
    pub fn finish(mut self, boot_cpuid: u32) -> Result<Vec<u8>, FdtWriteError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if self.depth != 0 || !self.root_done {
            return Err(FdtWriteError::UnclosedNodes(self.depth));
        }
        self.push_u32(FDT_END);

        let rsvmap_offset = HEADER_SIZE; // already 8-byte aligned
        let rsvmap_size = (self.reservations.len() + 1) * 16;
        let struct_offset = rsvmap_offset + rsvmap_size;
        let strings_offset = struct_offset + self.structure.len();
        let total = strings_offset + self.strings.len();
        let field = |v: usize| u32::try_from(v).map_err(|_| FdtWriteError::TooLarge);

        let mut out = Vec::with_capacity(total);
        for v in [
            FDT_MAGIC,
            field(total)?,
            field(struct_offset)?,
            field(strings_offset)?,
            field(rsvmap_offset)?,
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            boot_cpuid,
            field(self.strings.len())?,
            field(self.structure.len())?,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for &(address, size) in self.reservations.iter().chain(core::iter::once(&(0, 0))) {
            out.extend_from_slice(&address.to_be_bytes());
            out.extend_from_slice(&size.to_be_bytes());
        }
        out.extend_from_slice(&self.structure);
        out.extend_from_slice(&self.strings);
        Ok(out)
    }

    fn fail(&mut self, error: FdtWriteError) {
        self.error.get_or_insert(error);
    }

    fn push_u32(&mut self, v: u32) {
        self.structure.extend_from_slice(&v.to_be_bytes());
    }

    fn align4(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    fn string_offset(&mut self, name: &str) -> u32 {
        if let Some(&offset) = self.string_offsets.get(name) {
            return offset;
        }
        let Ok(offset) = u32::try_from(self.strings.len()) else {
            self.fail(FdtWriteError::TooLarge);
            return 0;
        };
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.string_offsets.insert(name.into(), offset);
        offset
    }
}

/// Appends `value` as `cells` big-endian 32-bit cells; false if it does not fit.
fn encode_cells(out: &mut Vec<u8>, value: u64, cells: u32) -> bool {
    match cells {
        0 => value == 0,
        1 => match u32::try_from(value) {
            Ok(v) => {
                out.extend_from_slice(&v.to_be_bytes());
                true
            }
            Err(_) => false,
        },
        2 => {
            out.extend_from_slice(&value.to_be_bytes());
            true
        }
        _ => false,
    }
}

/// Guest RAM base IPA (the guest DTB is placed here).
pub const GUEST_RAM_BASE: u64 = 0x4000_0000;
/// IPA of the emulated PL011.
pub const GUEST_UART_BASE: u64 = 0x0900_0000;
/// Size of the emulated PL011's MMIO window.
pub const GUEST_UART_SIZE: u64 = 0x1000;
/// Frequency of the fixed `apb-pclk` clock the guest PL011 node refers to
/// (the value QEMU `virt` uses; only Linux's PL011 driver looks at it).
pub const GUEST_UART_CLOCK_HZ: u32 = 24_000_000;
const GUEST_CLOCK_PHANDLE: u32 = 1;
/// The phandle of the guest's interrupt controller node (`intc`), which
/// the root's `interrupt-parent` names.
pub const GUEST_GIC_PHANDLE: u32 = 2;

/// GIC binding interrupt specifier, cell 0: a shared peripheral interrupt.
const GIC_SPI: u32 = 0;
/// GIC binding interrupt specifier, cell 0: a private peripheral interrupt.
const GIC_PPI: u32 = 1;
/// GIC binding interrupt specifier, cell 2 bits `[3:0]`: level-sensitive,
/// active high.
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;

/// The architecture guests run in, for the CPU and timer nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestArch {
    /// AArch64 at EL1.
    Armv8,
    /// ARMv7-A (AArch32) in SVC mode.
    Armv7,
}

impl GuestArch {
    /// The architecture the hypervisor itself was built for.
    pub const fn native() -> Self {
        if cfg!(target_arch = "arm") {
            GuestArch::Armv7
        } else {
            GuestArch::Armv8
        }
    }

    fn cpu_compatible(self) -> &'static str {
        match self {
            GuestArch::Armv8 => "arm,armv8",
            GuestArch::Armv7 => "arm,armv7",
        }
    }

    fn timer_compatible(self) -> &'static str {
        match self {
            GuestArch::Armv8 => "arm,armv8-timer",
            GuestArch::Armv7 => "arm,armv7-timer",
        }
    }
}

/// The virtual GIC a guest is given (the layout is [`crate::layout`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestGic {
    /// GICv3: a distributor and one redistributor per vCPU, no ITS.
    V3 {
        /// Redistributors: the VM's vCPU count.
        redist_count: u32,
    },
    /// GICv2: a distributor and a CPU interface.
    V2,
    /// None: the host has no GIC to back one (Raspberry Pi 2 and 3). The
    /// tree then has no interrupt controller and no `interrupts`.
    None,
}

impl GuestGic {
    /// The GIC a guest of `arch` with `vcpus` vCPUs gets when nothing is
    /// known of the host's: GICv3 for AArch64, GICv2 for ARMv7.
    pub const fn native(arch: GuestArch, vcpus: u32) -> Self {
        match arch {
            GuestArch::Armv8 => GuestGic::V3 { redist_count: vcpus },
            GuestArch::Armv7 => GuestGic::V2,
        }
    }

    /// The GIC a guest of `arch` with `vcpus` vCPUs gets on a host whose
    /// own GIC is `host` (the boot DTB's, `None` when it describes none):
    /// the host's version, so that a later virtual GIC can be backed by
    /// the host's virtualization support for it. An AArch64 guest gets
    /// GICv3 on a GICv3 host and GICv2 on a GICv2 host; an ARMv7 guest
    /// always gets GICv2; without a host GIC, none.
    pub fn for_host(host: Option<&crate::platform::Gic>, arch: GuestArch, vcpus: u32) -> Self {
        match (arch, host) {
            (_, None) => GuestGic::None,
            (GuestArch::Armv8, Some(crate::platform::Gic::V2 { .. })) => GuestGic::V2,
            _ => Self::native(arch, vcpus),
        }
    }
}

/// What varies between guests' device trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDtbSpec {
    /// The guests' architecture.
    pub arch: GuestArch,
    /// Guest RAM base IPA ([`GUEST_RAM_BASE`] per `docs/HYPERVISOR.md`).
    pub ram_base: u64,
    /// Guest RAM size in bytes.
    pub ram_size: u64,
    /// Number of vCPUs: `cpu@0 .. cpu@{cpus-1}`, MPIDR affinity 0 = index.
    pub cpus: u32,
    /// The interrupt controller (a GICv3's `redist_count` is `cpus`).
    pub gic: GuestGic,
    /// The initramfs, `[start, end)`: `/chosen`'s `linux,initrd-start`
    /// and `linux,initrd-end`.
    pub initrd: Option<(u64, u64)>,
    /// `/chosen/bootargs` (for example the VM's test parameters). Cut at
    /// the first NUL byte, if any.
    pub bootargs: String,
}

/// Builds the guest device tree described in `docs/HYPERVISOR.md`
/// ("Guest device tree"), following the Linux device tree bindings:
///
/// - `/`: `#address-cells = <2>`, `#size-cells = <2>`,
///   `compatible = "linux,dummy-virt"`, `interrupt-parent = <&intc>`;
/// - `/memory@<ram_base>` (`/memory@40000000`): `device_type = "memory"`,
///   `reg = <ram_base ram_size>`;
/// - `/cpus` (`#address-cells = <1>`, `#size-cells = <0>`) with one
///   `cpu@i` per vCPU: `compatible = "arm,armv8"` (`"arm,armv7"` for ARM32
///   guests), `device_type = "cpu"`, `reg = <i>`, `enable-method = "psci"`;
/// - `/psci`: `compatible = "arm,psci-1.0", "arm,psci-0.2"`,
///   `method = "hvc"` (guests always call the hypervisor with `HVC`);
/// - `/intc@8000000` (phandle [`GUEST_GIC_PHANDLE`]), at the addresses of
///   [`crate::layout`]:
///   - [`GuestGic::V3`]: `compatible = "arm,gic-v3"`,
///     `#interrupt-cells = <3>`, `#address-cells = <2>`,
///     `#size-cells = <2>`, `ranges`, `interrupt-controller`,
///     `reg = <GICD 64 KiB>, <GICR 128 KiB x redist_count>`,
///     `#redistributor-regions = <1>`; no ITS child, and no maintenance
///     interrupt (only a guest hypervisor would use it);
///   - [`GuestGic::V2`]: `compatible = "arm,cortex-a15-gic"`,
///     `#interrupt-cells = <3>`, `#address-cells = <0>` (no children; `dtc`
///     wants interrupt providers to give it), `interrupt-controller`,
///     `reg = <GICD 4 KiB>, <GICC 8 KiB>`;
/// - `/apb-pclk`: a 24 MHz `fixed-clock` (phandle 1), and
///   `/pl011@9000000`: `compatible = "arm,pl011", "arm,primecell"`,
///   `reg = <0x0900_0000 0x1000>`, `interrupts = <0 1 4>` (SPI 1, INTID
///   33, level high), `clocks`/`clock-names` pointing at `apb-pclk`
///   (Linux's PL011 driver will not probe without them);
/// - `/chosen`: `stdout-path = "/pl011@9000000"`, `bootargs`;
/// - `/timer`: `compatible = "arm,armv8-timer"` (`"arm,armv7-timer"`),
///   `always-on`, and `interrupts` with the binding's four PPIs in its
///   order: secure physical (13), non-secure physical (14), virtual (11)
///   and hypervisor (10), each `<1 N flags>` with flags 4 (level high);
///   a GICv2 also takes the PPI's CPU mask in bits `[15:8]` of the flags,
///   one bit per vCPU.
///
/// The result is about 1.5 KiB, far below the 2 MiB between the RAM base
/// and the image load address. It cannot fail: the tree's shape is fixed,
/// every value fits its cells and `bootargs` is cut at a NUL (the
/// writer's error path, unreachable here, would yield an empty vector).
pub fn guest_dtb(spec: &GuestDtbSpec) -> Vec<u8> {
    build_guest_dtb(spec).unwrap_or_default()
}

fn build_guest_dtb(spec: &GuestDtbSpec) -> Result<Vec<u8>, FdtWriteError> {
    let mut w = FdtWriter::new();
    let root = w.begin_node("");
    w.prop_u32("#address-cells", 2);
    w.prop_u32("#size-cells", 2);
    w.prop_str("compatible", "linux,dummy-virt");
    if spec.gic != GuestGic::None {
        w.prop_u32("interrupt-parent", GUEST_GIC_PHANDLE);
    }

    let memory = w.begin_node(&alloc::format!("memory@{:x}", spec.ram_base));
    w.prop_str("device_type", "memory");
    w.prop_reg(&[(spec.ram_base, spec.ram_size)], 2, 2);
    w.end_node(memory);

    let cpus = w.begin_node("cpus");
    w.prop_u32("#address-cells", 1);
    w.prop_u32("#size-cells", 0);
    for i in 0..spec.cpus {
        let cpu = w.begin_node(&alloc::format!("cpu@{i:x}"));
        w.prop_str("compatible", spec.arch.cpu_compatible());
        w.prop_str("device_type", "cpu");
        w.prop_u32("reg", i);
        w.prop_str("enable-method", "psci");
        w.end_node(cpu);
    }
    w.end_node(cpus);

    let psci = w.begin_node("psci");
    w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2"]);
    w.prop_str("method", "hvc");
    w.end_node(psci);

    gic_node(&mut w, spec.gic);

    let clock = w.begin_node("apb-pclk");
    w.prop_str("compatible", "fixed-clock");
    w.prop_u32("#clock-cells", 0);
    w.prop_u32("clock-frequency", GUEST_UART_CLOCK_HZ);
    w.prop_str("clock-output-names", "clk24mhz");
    w.prop_u32("phandle", GUEST_CLOCK_PHANDLE);
    w.end_node(clock);

    let uart_name = alloc::format!("pl011@{GUEST_UART_BASE:x}");
    let uart = w.begin_node(&uart_name);
    w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
    w.prop_reg(&[(GUEST_UART_BASE, GUEST_UART_SIZE)], 2, 2);
    if spec.gic != GuestGic::None {
        w.prop_cells("interrupts", &[GIC_SPI, layout::UART_SPI, IRQ_TYPE_LEVEL_HIGH]);
    }
    w.prop_cells("clocks", &[GUEST_CLOCK_PHANDLE, GUEST_CLOCK_PHANDLE]);
    w.prop_strs("clock-names", &["uartclk", "apb_pclk"]);
    w.end_node(uart);

    let chosen = w.begin_node("chosen");
    w.prop_str("stdout-path", &alloc::format!("/{uart_name}"));
    let bootargs = spec.bootargs.split('\0').next().unwrap_or_default();
    w.prop_str("bootargs", bootargs);
    if let Some((start, end)) = spec.initrd {
        w.prop_u64("linux,initrd-start", start);
        w.prop_u64("linux,initrd-end", end);
    }
    w.end_node(chosen);

    let timer = w.begin_node("timer");
    w.prop_str("compatible", spec.arch.timer_compatible());
    if spec.gic != GuestGic::None {
        let flags = ppi_flags(spec.gic, spec.cpus);
        let interrupts: Vec<u32> =
            layout::timer_ppi::ALL.iter().flat_map(|&ppi| [GIC_PPI, ppi, flags]).collect();
        w.prop_cells("interrupts", &interrupts);
    }
    w.prop_empty("always-on");
    w.end_node(timer);

    w.end_node(root);
    w.finish(0)
}

/// The interrupt controller node, `intc@<GICD>`; see [`guest_dtb`].
fn gic_node(w: &mut FdtWriter, gic: GuestGic) {
    if gic == GuestGic::None {
        return;
    }
    let intc = w.begin_node(&alloc::format!("intc@{:x}", layout::GICD_BASE));
    match gic {
        GuestGic::V3 { redist_count } => {
            w.prop_str("compatible", "arm,gic-v3");
            w.prop_u32("#interrupt-cells", 3);
            w.prop_u32("#address-cells", 2);
            w.prop_u32("#size-cells", 2);
            w.prop_empty("ranges");
            w.prop_empty("interrupt-controller");
            let gicr = layout::gicr_region(redist_count);
            w.prop_reg(&[(layout::GICD_BASE, layout::GICV3_GICD_SIZE), gicr], 2, 2);
            w.prop_u32("#redistributor-regions", 1);
        }
        GuestGic::V2 => {
            w.prop_str("compatible", "arm,cortex-a15-gic");
            w.prop_u32("#interrupt-cells", 3);
            // No address part in an interrupt-map entry naming it (dtc
            // wants every interrupt provider to say so); no children.
            w.prop_u32("#address-cells", 0);
            w.prop_empty("interrupt-controller");
            let gicd = (layout::GICD_BASE, layout::GICV2_GICD_SIZE);
            w.prop_reg(&[gicd, (layout::GICC_BASE, layout::GICC_SIZE)], 2, 2);
        }
        GuestGic::None => {}
    }
    w.prop_u32("phandle", GUEST_GIC_PHANDLE);
    w.end_node(intc);
}

/// Cell 2 of a PPI's specifier for `cpus` vCPUs: level high, and on a
/// GICv2 the CPU mask in bits `[15:8]` (bit `8 + i` for vCPU `i`; a GICv2
/// has at most eight CPU interfaces, so the mask stops there).
fn ppi_flags(gic: GuestGic, cpus: u32) -> u32 {
    match gic {
        GuestGic::V3 { .. } | GuestGic::None => IRQ_TYPE_LEVEL_HIGH,
        GuestGic::V2 => {
            let mask = (1u32 << cpus.min(layout::GICV2_MAX_CPUS)) - 1;
            (mask << 8) | IRQ_TYPE_LEVEL_HIGH
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdt::Fdt;

    fn be32(b: &[u8], off: usize) -> u32 {
        u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn str_prop<'a>(fdt: &'a Fdt<'a>, path: &str, name: &str) -> &'a str {
        fdt.find_node(path)
            .unwrap_or_else(|| panic!("{path} missing"))
            .property(name)
            .unwrap_or_else(|| panic!("{path}:{name} missing"))
            .as_str()
            .unwrap()
    }

    fn raw_prop<'a>(fdt: &'a Fdt<'a>, path: &str, name: &str) -> &'a [u8] {
        fdt.find_node(path)
            .unwrap_or_else(|| panic!("{path} missing"))
            .property(name)
            .unwrap_or_else(|| panic!("{path}:{name} missing"))
            .value
    }

    /// A property as big-endian 32-bit cells.
    fn cells(fdt: &Fdt<'_>, path: &str, name: &str) -> Vec<u32> {
        let raw = raw_prop(fdt, path, name);
        assert_eq!(raw.len() % 4, 0, "{path}:{name} is not made of cells");
        raw.chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect()
    }

    /// A node's `reg` as (address, size) pairs of its parent's cells.
    fn regs(fdt: &Fdt<'_>, path: &str) -> Vec<(u64, u64)> {
        let node = fdt.find_node(path).unwrap_or_else(|| panic!("{path} missing"));
        node.reg()
            .unwrap_or_else(|| panic!("{path}: no reg"))
            .map(|r| (r.starting_address as u64, r.size.unwrap() as u64))
            .collect()
    }

    fn spec(bootargs: &str) -> GuestDtbSpec {
        GuestDtbSpec {
            arch: GuestArch::Armv8,
            ram_base: GUEST_RAM_BASE,
            ram_size: 128 << 20,
            cpus: 3,
            gic: GuestGic::V3 { redist_count: 3 },
            bootargs: bootargs.into(),
            initrd: None,
        }
    }

    fn gicv2_spec(cpus: u32) -> GuestDtbSpec {
        GuestDtbSpec { arch: GuestArch::Armv7, cpus, gic: GuestGic::V2, ..spec("") }
    }

    #[test]
    fn header_and_blocks() {
        let mut w = FdtWriter::new();
        w.add_mem_reserve(0x1000, 0x2000);
        let root = w.begin_node("");
        w.prop_u32("a", 1);
        w.prop_u32("a", 2); // same name: one string
        let child = w.begin_node("child@1");
        w.prop_u32("a", 3);
        w.prop_empty("b");
        w.end_node(child);
        w.end_node(root);
        let blob = w.finish(7).unwrap();

        assert_eq!(be32(&blob, 0), FDT_MAGIC);
        assert_eq!(be32(&blob, 4) as usize, blob.len());
        assert_eq!(be32(&blob, 20), 17);
        assert_eq!(be32(&blob, 24), 16);
        assert_eq!(be32(&blob, 28), 7);
        let rsv = be32(&blob, 16) as usize;
        assert_eq!(rsv % 8, 0);
        assert_eq!(&blob[rsv..rsv + 16], &[0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x20, 0]);
        assert!(blob[rsv + 16..rsv + 32].iter().all(|&b| b == 0), "terminator");
        let (st, sts) = (be32(&blob, 8) as usize, be32(&blob, 36) as usize);
        assert_eq!(st, rsv + 32);
        assert_eq!(be32(&blob, st + sts - 4), FDT_END);
        let (strs, strs_size) = (be32(&blob, 12) as usize, be32(&blob, 32) as usize);
        assert_eq!(strs, st + sts);
        assert_eq!(&blob[strs..strs + strs_size], b"a\0b\0", "names deduplicated");

        let fdt = Fdt::new(&blob).unwrap();
        let res: Vec<_> =
            fdt.memory_reservations().map(|r| (r.address() as usize, r.size())).collect();
        assert_eq!(res, [(0x1000, 0x2000)]);
        let values: Vec<_> = fdt.find_node("/").unwrap().properties().map(|p| p.value).collect();
        assert_eq!(values, [&[0, 0, 0, 1][..], &[0, 0, 0, 2][..]]);
        let child = fdt.find_node("/child@1").unwrap();
        assert_eq!(child.property("a").unwrap().as_usize(), Some(3));
        assert_eq!(child.property("b").unwrap().value, &[] as &[u8]);
    }

    #[test]
    fn value_encodings() {
        let mut w = FdtWriter::new();
        let root = w.begin_node("");
        w.prop_u64("u64", 0x1122_3344_5566_7788);
        w.prop_u64s("u64s", &[1, 2]);
        w.prop_cells("cells", &[0xdead_beef, 5]);
        w.prop_strs("strs", &["ab", "c"]);
        w.prop_str("odd", "xyz12"); // 6 bytes: padding must follow
        w.prop_reg(&[(0x1_0000_0000, 0x1000)], 2, 1);
        w.end_node(root);
        let blob = w.finish(0).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(raw_prop(&fdt, "/", "u64"), 0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(raw_prop(&fdt, "/", "u64s"), [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(raw_prop(&fdt, "/", "cells"), [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 5]);
        assert_eq!(raw_prop(&fdt, "/", "strs"), b"ab\0c\0");
        assert_eq!(raw_prop(&fdt, "/", "odd"), b"xyz12\0");
        assert_eq!(raw_prop(&fdt, "/", "reg"), [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]);
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let finish = |f: &dyn Fn(&mut FdtWriter)| {
            let mut w = FdtWriter::new();
            f(&mut w);
            w.finish(0)
        };
        assert_eq!(finish(&|_| {}), Err(FdtWriteError::UnclosedNodes(0)));
        assert_eq!(
            finish(&|w| {
                let _root = w.begin_node("");
            }),
            Err(FdtWriteError::UnclosedNodes(1))
        );
        assert_eq!(
            finish(&|w| w.prop_u32("x", 1)),
            Err(FdtWriteError::PropertyOutOfPlace("x".into()))
        );
        assert_eq!(
            finish(&|w| {
                let root = w.begin_node("");
                let child = w.begin_node("c");
                w.end_node(root);
                w.end_node(child);
            }),
            Err(FdtWriteError::UnbalancedNodes)
        );
        assert_eq!(
            finish(&|w| {
                let root = w.begin_node("");
                let child = w.begin_node("c");
                w.end_node(child);
                w.prop_u32("late", 1);
                w.end_node(root);
            }),
            Err(FdtWriteError::PropertyOutOfPlace("late".into()))
        );
        assert_eq!(
            finish(&|w| {
                let root = w.begin_node("");
                w.end_node(root);
                let again = w.begin_node("");
                w.end_node(again);
            }),
            Err(FdtWriteError::UnbalancedNodes)
        );
        assert_eq!(
            finish(&|w| {
                let root = w.begin_node("");
                w.prop_str("s", "a\0b");
                w.end_node(root);
            }),
            Err(FdtWriteError::NulInString("a\0b".into()))
        );
        assert_eq!(
            finish(&|w| {
                let root = w.begin_node("");
                w.prop_reg(&[(0x1_0000_0000, 1)], 1, 1);
                w.end_node(root);
            }),
            Err(FdtWriteError::RegDoesNotFit { address: 0x1_0000_0000, size: 1 })
        );
        assert_eq!(
            finish(&|w| {
                let root = w.begin_node("");
                w.prop_reg(&[(0, 1)], 3, 1);
                w.end_node(root);
            }),
            Err(FdtWriteError::RegDoesNotFit { address: 0, size: 1 })
        );
        assert!(FdtWriteError::UnclosedNodes(2).to_string().contains("2 device tree node"));
    }

    #[test]
    fn guest_dtb_contents() {
        let blob = guest_dtb(&spec("vms=2 test=7"));
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.total_size(), blob.len());
        assert!(blob.len() < 2048, "guest DTB is {} bytes", blob.len());
        assert_eq!(fdt.memory_reservations().count(), 0);

        let root = fdt.find_node("/").unwrap();
        assert_eq!(root.property("#address-cells").unwrap().as_usize(), Some(2));
        assert_eq!(root.property("#size-cells").unwrap().as_usize(), Some(2));
        assert_eq!(str_prop(&fdt, "/", "compatible"), "linux,dummy-virt");

        let mem = fdt.find_node("/memory@40000000").unwrap();
        assert_eq!(mem.property("device_type").unwrap().as_str(), Some("memory"));
        let regs: Vec<_> =
            mem.reg().unwrap().map(|r| (r.starting_address as u64, r.size.unwrap())).collect();
        assert_eq!(regs, [(0x4000_0000, 128 << 20)]);

        let cpus = fdt.find_node("/cpus").unwrap();
        assert_eq!(cpus.property("#address-cells").unwrap().as_usize(), Some(1));
        assert_eq!(cpus.property("#size-cells").unwrap().as_usize(), Some(0));
        let names: Vec<_> = cpus.children().map(|c| c.name).collect();
        assert_eq!(names, ["cpu@0", "cpu@1", "cpu@2"]);
        for (i, cpu) in fdt.cpus().enumerate() {
            assert_eq!(cpu.ids().first(), i);
            assert_eq!(cpu.property("compatible").unwrap().as_str(), Some("arm,armv8"));
            assert_eq!(cpu.property("device_type").unwrap().as_str(), Some("cpu"));
            assert_eq!(cpu.property("enable-method").unwrap().as_str(), Some("psci"));
        }

        assert_eq!(raw_prop(&fdt, "/psci", "compatible"), b"arm,psci-1.0\0arm,psci-0.2\0");
        assert_eq!(str_prop(&fdt, "/psci", "method"), "hvc");

        let uart = fdt.find_node("/pl011@9000000").unwrap();
        let compat: Vec<_> = uart.compatible().unwrap().all().collect();
        assert_eq!(compat, ["arm,pl011", "arm,primecell"]);
        let regs: Vec<_> =
            uart.reg().unwrap().map(|r| (r.starting_address as u64, r.size.unwrap())).collect();
        assert_eq!(regs, [(0x0900_0000, 0x1000)]);
        assert_eq!(raw_prop(&fdt, "/pl011@9000000", "clocks"), [0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(raw_prop(&fdt, "/pl011@9000000", "clock-names"), b"uartclk\0apb_pclk\0");
        let clock = fdt.find_phandle(1).unwrap();
        assert_eq!(clock.name, "apb-pclk");
        assert_eq!(clock.property("clock-frequency").unwrap().as_usize(), Some(24_000_000));

        assert_eq!(fdt.chosen().bootargs(), Some("vms=2 test=7"));
        assert_eq!(fdt.chosen().stdout().unwrap().name, "pl011@9000000");

        let timer = fdt.find_node("/timer").unwrap();
        assert_eq!(timer.property("compatible").unwrap().as_str(), Some("arm,armv8-timer"));
        assert_eq!(timer.property("always-on").unwrap().value.len(), 0);

        let top: Vec<_> = root.children().map(|c| c.name).collect();
        assert_eq!(
            top,
            [
                "memory@40000000",
                "cpus",
                "psci",
                "intc@8000000",
                "apb-pclk",
                "pl011@9000000",
                "chosen",
                "timer"
            ]
        );
    }

    /// The root names the GIC as every node's interrupt parent; the PL011
    /// has SPI 1 (INTID 33), level high.
    #[test]
    fn interrupt_parent_and_uart_interrupt() {
        for s in [spec(""), gicv2_spec(2)] {
            let blob = guest_dtb(&s);
            let fdt = Fdt::new(&blob).unwrap();
            assert_eq!(cells(&fdt, "/", "interrupt-parent"), [GUEST_GIC_PHANDLE]);
            assert_eq!(fdt.find_phandle(GUEST_GIC_PHANDLE).unwrap().name, "intc@8000000");
            assert_eq!(cells(&fdt, "/pl011@9000000", "interrupts"), [0, 1, 4]);
            // Neither interrupt user names its own parent: both inherit
            // the root's, whose specifiers are three cells.
            for user in ["/pl011@9000000", "/timer"] {
                let node = fdt.find_node(user).unwrap();
                assert!(node.property("interrupt-parent").is_none(), "{user}");
                assert_eq!(cells(&fdt, user, "interrupts").len() % 3, 0, "{user}");
            }
            let intc = fdt.find_phandle(GUEST_GIC_PHANDLE).unwrap();
            assert_eq!(intc.interrupt_cells(), Some(3));
        }
    }

    /// A host without a GIC (Raspberry Pi 2 and 3): no controller, and
    /// no device claims an interrupt.
    #[test]
    fn without_a_gic_nothing_names_an_interrupt() {
        let blob = guest_dtb(&GuestDtbSpec { gic: GuestGic::None, ..spec("") });
        let fdt = Fdt::new(&blob).unwrap();
        assert!(fdt.find_phandle(GUEST_GIC_PHANDLE).is_none());
        assert!(fdt.find_node("/intc@8000000").is_none());
        for (node, prop) in
            [("/", "interrupt-parent"), ("/pl011@9000000", "interrupts"), ("/timer", "interrupts")]
        {
            assert!(fdt.find_node(node).unwrap().property(prop).is_none(), "{node} {prop}");
        }
        assert!(fdt.find_node("/timer").unwrap().property("always-on").is_some());
    }

    #[test]
    fn gicv3_node_and_timer_interrupts() {
        for vcpus in [1u32, 3, 8] {
            let blob = guest_dtb(&GuestDtbSpec {
                cpus: vcpus,
                gic: GuestGic::V3 { redist_count: vcpus },
                ..spec("")
            });
            let fdt = Fdt::new(&blob).unwrap();
            let intc = fdt.find_node("/intc@8000000").unwrap();
            assert_eq!(intc.compatible().unwrap().all().collect::<Vec<_>>(), ["arm,gic-v3"]);
            for (name, value) in [
                ("#interrupt-cells", 3),
                ("#address-cells", 2),
                ("#size-cells", 2),
                ("#redistributor-regions", 1),
                ("phandle", GUEST_GIC_PHANDLE),
            ] {
                assert_eq!(cells(&fdt, "/intc@8000000", name), [value], "{name}");
            }
            assert_eq!(raw_prop(&fdt, "/intc@8000000", "ranges"), b"");
            assert_eq!(raw_prop(&fdt, "/intc@8000000", "interrupt-controller"), b"");
            assert_eq!(
                regs(&fdt, "/intc@8000000"),
                [(0x0800_0000, 0x1_0000), (0x080A_0000, 0x2_0000 * u64::from(vcpus))]
            );
            // No ITS, no maintenance interrupt.
            assert_eq!(intc.children().count(), 0);
            assert!(intc.property("interrupts").is_none());
            // Secure physical, non-secure physical, virtual, hypervisor:
            // PPIs, level high.
            let want = [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4];
            assert_eq!(cells(&fdt, "/timer", "interrupts"), want, "{vcpus} vCPUs");
            assert_eq!(fdt.find_node("/timer").unwrap().property("always-on").unwrap().value, b"");
        }
    }

    #[test]
    fn gicv2_node_and_timer_cpu_masks() {
        for (vcpus, flags) in
            [(1, 0x104), (2, 0x304), (3, 0x704), (4, 0xf04), (7, 0x7f04), (8, 0xff04)]
        {
            let blob = guest_dtb(&gicv2_spec(vcpus));
            let fdt = Fdt::new(&blob).unwrap();
            let intc = fdt.find_node("/intc@8000000").unwrap();
            let compat: Vec<_> = intc.compatible().unwrap().all().collect();
            assert_eq!(compat, ["arm,cortex-a15-gic"]);
            assert_eq!(cells(&fdt, "/intc@8000000", "#interrupt-cells"), [3]);
            assert_eq!(raw_prop(&fdt, "/intc@8000000", "interrupt-controller"), b"");
            assert_eq!(cells(&fdt, "/intc@8000000", "phandle"), [GUEST_GIC_PHANDLE]);
            assert_eq!(regs(&fdt, "/intc@8000000"), [(0x0800_0000, 0x1000), (0x0801_0000, 0x2000)]);
            assert_eq!(cells(&fdt, "/intc@8000000", "#address-cells"), [0]);
            for absent in ["#redistributor-regions", "ranges", "#size-cells", "interrupts"] {
                assert!(intc.property(absent).is_none(), "{absent}");
            }
            // The four PPIs in the binding's order, each with the mask of
            // every vCPU in bits [15:8].
            let want = [1, 13, flags, 1, 14, flags, 1, 11, flags, 1, 10, flags];
            assert_eq!(cells(&fdt, "/timer", "interrupts"), want, "{vcpus} vCPUs");
            // The SPI has no CPU mask.
            assert_eq!(cells(&fdt, "/pl011@9000000", "interrupts"), [0, 1, 4]);
        }
        // Bits [15:8] only: a GICv2 serves eight CPUs at most.
        assert_eq!(ppi_flags(GuestGic::V2, 9), 0xff04);
        assert_eq!(ppi_flags(GuestGic::V2, 0), 0x004);
        assert_eq!(ppi_flags(GuestGic::V3 { redist_count: 8 }, 8), 4);
    }

    #[test]
    fn the_guest_gets_the_hosts_gic_version() {
        use crate::platform::{Gic, Region};
        let v3 = Gic::V3 {
            distributor: Region::new(0x0800_0000, 0x1_0000),
            redistributors: alloc::vec![Region::new(0x080a_0000, 0xf6_0000)],
        };
        let v2 = Gic::V2 {
            distributor: Region::new(0x0800_0000, 0x1_0000),
            cpu_interface: Region::new(0x0801_0000, 0x1_0000),
            hyp_interface: None,
            vcpu_interface: None,
        };
        let (a64, a32) = (GuestArch::Armv8, GuestArch::Armv7);
        assert_eq!(GuestGic::for_host(Some(&v3), a64, 4), GuestGic::V3 { redist_count: 4 });
        assert_eq!(GuestGic::for_host(Some(&v2), a64, 4), GuestGic::V2);
        assert_eq!(GuestGic::for_host(None, a64, 2), GuestGic::None);
        assert_eq!(GuestGic::for_host(Some(&v3), a32, 4), GuestGic::V2);
        assert_eq!(GuestGic::for_host(Some(&v2), a32, 4), GuestGic::V2);
        assert_eq!(GuestGic::for_host(None, a32, 2), GuestGic::None);
        assert_eq!(GuestGic::native(a64, 3), GuestGic::V3 { redist_count: 3 });
        assert_eq!(GuestGic::native(a32, 3), GuestGic::V2);
    }

    #[test]
    fn guest_dtb_never_fails() {
        for cpus in 0..=8 {
            for ram_size in [2 << 20, 128 << 20, 4 << 30] {
                let spec = GuestDtbSpec { ram_size, cpus, ..spec("x") };
                assert!(build_guest_dtb(&spec).is_ok());
                let blob = guest_dtb(&spec);
                let fdt = Fdt::new(&blob).unwrap();
                let r = fdt.memory().regions().next().unwrap();
                assert_eq!(r.size, Some(ram_size as usize));
                assert_eq!(fdt.cpus().count(), cpus as usize);
            }
        }
        // Another RAM base moves the memory node.
        let blob = guest_dtb(&GuestDtbSpec { ram_base: 0x8000_0000, ..spec("") });
        let fdt = Fdt::new(&blob).unwrap();
        let mem = fdt.find_node("/memory@80000000").unwrap();
        assert_eq!(mem.reg().unwrap().next().unwrap().starting_address as u64, 0x8000_0000);
        assert_eq!(fdt.chosen().bootargs(), Some(""));
        // A NUL cuts the bootargs rather than failing.
        let blob = guest_dtb(&spec("vms=1\0junk"));
        assert_eq!(Fdt::new(&blob).unwrap().chosen().bootargs(), Some("vms=1"));
    }

    /// `dtc` (device-tree-compiler), when installed, must accept both
    /// guest DTBs (GICv3 and GICv2) without errors or warnings (its checks
    /// include the interrupt and GIC ones); skipped otherwise.
    #[test]
    fn dtc_accepts_guest_dtb() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        for s in [spec("vms=1"), gicv2_spec(4)] {
            let blob = guest_dtb(&s);
            let child = Command::new("dtc")
                .args(["-I", "dtb", "-O", "dts", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            let Ok(mut child) = child else {
                std::eprintln!("dtc not installed: skipping");
                return;
            };
            child.stdin.take().unwrap().write_all(&blob).unwrap();
            let out = child.wait_with_output().unwrap();
            let dts = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "dtc failed: {stderr}");
            assert!(!stderr.contains("ERROR"), "{stderr}");
            assert!(!stderr.contains("Warning"), "{stderr}");
            assert!(dts.contains("method = \"hvc\";"), "{dts}");
            assert!(dts.contains("stdout-path = \"/pl011@9000000\";"), "{dts}");
            assert!(dts.contains("interrupt-controller;"), "{dts}");
        }
    }

    #[test]
    fn armv7_guests_get_armv7_cpu_and_timer_nodes() {
        let blob = guest_dtb(&GuestDtbSpec { arch: GuestArch::Armv7, ..spec("") });
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.cpus().count(), 3);
        for cpu in fdt.cpus() {
            assert_eq!(cpu.property("compatible").unwrap().as_str(), Some("arm,armv7"));
        }
        let timer = fdt.find_node("/timer").unwrap();
        assert_eq!(timer.property("compatible").unwrap().as_str(), Some("arm,armv7-timer"));
    }
}
