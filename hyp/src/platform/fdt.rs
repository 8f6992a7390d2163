//! Device tree blob validation and parsing: [`dtb_total_size`] for a caller
//! holding only a pointer; [`check_blob`], which checks everything the
//! `fdt` crate would otherwise panic on (header bounds, every structure
//! token, name and string offset, nesting); [`strip_nops`]; and [`Tree`],
//! the queries over a checked blob behind
//! [`Platform::parse`](super::Platform::parse) (cell counts, `reg`
//! translated through the parents' `ranges`, the initrd, the UART, the
//! GIC, the CPUs, PSCI).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

use super::{Cpu, EnableMethod, Gic, Psci, PsciMethod, PsciVersion, Region};

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
    /// [`Platform::from_addr`](super::Platform::from_addr) was given a null (or
    /// unrepresentable) address.
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

// ---------------------------------------------------------------------------
// Blob checking

/// What [`check_blob`] learnt about a blob that passed.
pub(super) struct Checked {
    pub(super) total_size: usize,
    struct_range: core::ops::Range<usize>,
    strings_range: core::ops::Range<usize>,
    pub(super) reservations: Vec<Region>,
    pub(super) boot_cpuid: u32,
    pub(super) has_nops: bool,
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
pub(super) fn check_blob(data: &[u8]) -> Result<Checked, DtbError> {
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
pub(super) fn strip_nops(data: &[u8], c: &Checked) -> Vec<u8> {
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

pub(super) struct Entry<'b, 'a> {
    pub(super) node: FdtNode<'b, 'a>,
    parent: Option<usize>,
}

/// Every node of the tree in document order, with parent links (which the
/// `fdt` crate does not provide), so that paths, inherited cell counts and
/// `ranges` translation can be computed.
pub(super) struct Tree<'b, 'a> {
    pub(super) nodes: Vec<Entry<'b, 'a>>,
}

impl<'b, 'a> Tree<'b, 'a> {
    pub(super) fn new(fdt: &'b Fdt<'a>) -> Result<Self, DtbError> {
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

    pub(super) fn children(&self, idx: usize) -> impl Iterator<Item = usize> + '_ {
        (idx + 1..self.nodes.len()).filter(move |&i| self.nodes[i].parent == Some(idx))
    }

    pub(super) fn base_name(&self, idx: usize) -> &'a str {
        let name = self.nodes[idx].node.name;
        name.split('@').next().unwrap_or(name)
    }

    pub(super) fn child_named(&self, idx: usize, name: &str) -> Option<usize> {
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

    pub(super) fn malformed_reg(&self, idx: usize) -> DtbError {
        DtbError::MalformedReg { node: self.path(idx) }
    }

    /// A string property; `Err` if present but not one UTF-8 string.
    pub(super) fn string(
        &self,
        idx: usize,
        name: &'static str,
    ) -> Result<Option<&'a str>, DtbError> {
        let Some(value) = self.prop(idx, name) else { return Ok(None) };
        let value = value.strip_suffix(&[0]).unwrap_or(value);
        match core::str::from_utf8(value) {
            Ok(s) if !s.contains('\0') => Ok(Some(s)),
            _ => Err(self.malformed(idx, name)),
        }
    }

    /// A string property, `None` when absent or malformed.
    pub(super) fn str_prop(&self, idx: usize, name: &'static str) -> Option<&'a str> {
        self.string(idx, name).ok().flatten()
    }

    /// The strings of a string-list property (non-UTF-8 entries skipped).
    pub(super) fn strings(&self, idx: usize, name: &str) -> impl Iterator<Item = &'a str> {
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
    pub(super) fn enabled(&self, idx: usize) -> bool {
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
    pub(super) fn reg(&self, idx: usize) -> Result<Option<Vec<Region>>, DtbError> {
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

    pub(super) fn initrd(&self, chosen: usize) -> Result<Option<Region>, DtbError> {
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

    pub(super) fn uart(&self, chosen: Option<usize>) -> Result<Option<Region>, DtbError> {
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

    pub(super) fn gic(&self) -> Result<Option<Gic>, DtbError> {
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

    pub(super) fn cpus(&self) -> Result<Vec<Cpu>, DtbError> {
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

    pub(super) fn psci(&self) -> Result<Option<Psci>, DtbError> {
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
    use crate::fdt_writer::FdtWriter;
    use crate::platform::fixtures::{rng, GICV2_SMP2, GICV3_SMP4, RPI4_LIKE};
    use crate::platform::{Board, Platform};

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
}
