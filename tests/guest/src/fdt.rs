//! A minimal read-only flattened device tree (DTB) reader: just enough for
//! a guest to find its RAM (`/memory`), its vCPUs (`/cpus/cpu@N`), the PSCI
//! method and `/chosen/bootargs`. Malformed input makes the queries return
//! `None`; nothing panics.

/// The DTB magic, big endian at offset 0.
pub const FDT_MAGIC: u32 = 0xd00d_feed;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// Reads a big-endian number of `cells` 32-bit cells (1 or 2) from `b`.
pub fn read_cells(b: &[u8], cells: usize) -> Option<u64> {
    match cells {
        1 => be32(b, 0).map(u64::from),
        2 => Some((u64::from(be32(b, 0)?) << 32) | u64::from(be32(b, 4)?)),
        _ => None,
    }
}

/// The NUL-terminated string at the start of `b`.
fn cstr(b: &[u8]) -> Option<&str> {
    let end = b.iter().position(|&c| c == 0)?;
    core::str::from_utf8(&b[..end]).ok()
}

/// Does the node name `node` (`memory@40000000`) match the path component
/// `comp` (`memory@40000000`, or `memory` for any unit address)?
fn name_matches(node: &str, comp: &str) -> bool {
    node == comp || (!comp.contains('@') && node.split('@').next() == Some(comp))
}

/// A parsed DTB header over the blob.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    blob: &'a [u8],
    structs: &'a [u8],
    strings: &'a [u8],
}

/// One structure-block token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// Start of a node, with its name (`""` for the root).
    Begin(&'a str),
    /// End of the innermost open node.
    End,
    /// A property of the innermost open node: name and value.
    Prop(&'a str, &'a [u8]),
}

/// Iterator over the structure block's tokens (stops at `FDT_END` or at the
/// first malformed token).
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    fdt: Fdt<'a>,
    off: usize,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let s = self.fdt.structs;
        loop {
            let tag = be32(s, self.off)?;
            let body = self.off + 4;
            match tag {
                FDT_NOP => self.off = body,
                FDT_BEGIN_NODE => {
                    let rest = s.get(body..)?;
                    let name = cstr(rest)?;
                    self.off = align4(body + name.len() + 1)?;
                    return Some(Token::Begin(name));
                }
                FDT_END_NODE => {
                    self.off = body;
                    return Some(Token::End);
                }
                FDT_PROP => {
                    let len = be32(s, body)? as usize;
                    let nameoff = be32(s, body + 4)? as usize;
                    let start = body + 8;
                    let value = s.get(start..start.checked_add(len)?)?;
                    let name = cstr(self.fdt.strings.get(nameoff..)?)?;
                    self.off = align4(start + len)?;
                    return Some(Token::Prop(name, value));
                }
                FDT_END => return None,
                _ => return None,
            }
        }
    }
}

impl<'a> Fdt<'a> {
    /// The blob's `totalsize` from its header, if `header` (at least the
    /// first 8 bytes of a DTB) has the magic.
    pub fn header_total_size(header: &[u8]) -> Option<usize> {
        if be32(header, 0)? != FDT_MAGIC {
            return None;
        }
        Some(be32(header, 4)? as usize)
    }

    /// Checks the header of `blob` and locates its structure and strings
    /// blocks.
    pub fn new(blob: &'a [u8]) -> Option<Self> {
        let total = Self::header_total_size(blob)?;
        let blob = blob.get(..total)?;
        let off_struct = be32(blob, 8)? as usize;
        let off_strings = be32(blob, 12)? as usize;
        let version = be32(blob, 20)?;
        let size_strings = be32(blob, 32)? as usize;
        // size_dt_struct exists from version 17; before, the block runs to
        // the end of the blob.
        let structs = if version >= 17 {
            let size_struct = be32(blob, 36)? as usize;
            blob.get(off_struct..off_struct.checked_add(size_struct)?)?
        } else {
            blob.get(off_struct..)?
        };
        let strings = blob.get(off_strings..off_strings.checked_add(size_strings)?)?;
        Some(Fdt { blob, structs, strings })
    }

    /// The blob's size (`totalsize`).
    pub fn total_size(&self) -> usize {
        self.blob.len()
    }

    /// The structure block's tokens.
    pub fn tokens(&self) -> Tokens<'a> {
        Tokens { fdt: *self, off: 0 }
    }

    /// The value of property `prop` of the node at `path` (`"/"`,
    /// `"/chosen"`, `"/cpus/cpu@0"`; a component without `@` matches any
    /// unit address). The first match wins.
    pub fn property(&self, path: &str, prop: &str) -> Option<&'a [u8]> {
        let comps = || path.split('/').filter(|c| !c.is_empty());
        let n = comps().count();
        // depth = open nodes (root = 1); matched = how many of them, from
        // the root, match the path.
        let (mut depth, mut matched) = (0usize, 0usize);
        for tok in self.tokens() {
            match tok {
                Token::Begin(name) => {
                    depth += 1;
                    if depth == 1 {
                        matched = 1;
                    } else if matched == depth - 1
                        && depth - 2 < n
                        && comps().nth(depth - 2).is_some_and(|c| name_matches(name, c))
                    {
                        matched = depth;
                    }
                }
                Token::End => {
                    depth = depth.checked_sub(1)?;
                    matched = matched.min(depth);
                }
                Token::Prop(name, value) => {
                    if depth == n + 1 && matched == depth && name == prop {
                        return Some(value);
                    }
                }
            }
        }
        None
    }

    /// `u32` property.
    pub fn property_u32(&self, path: &str, prop: &str) -> Option<u32> {
        be32(self.property(path, prop)?, 0)
    }

    /// String property (without its NUL).
    pub fn property_str(&self, path: &str, prop: &str) -> Option<&'a str> {
        let v = self.property(path, prop)?;
        let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
        core::str::from_utf8(&v[..end]).ok()
    }

    /// The root's `#address-cells` and `#size-cells` (defaults 2 and 1).
    pub fn root_cells(&self) -> (usize, usize) {
        let a = self.property_u32("/", "#address-cells").unwrap_or(2) as usize;
        let s = self.property_u32("/", "#size-cells").unwrap_or(1) as usize;
        (a, s)
    }

    /// The first `(base, size)` of the first memory node (a child of the
    /// root named `memory` or `memory@...`, or with `device_type =
    /// "memory"`).
    pub fn memory(&self) -> Option<(u64, u64)> {
        let (ac, sc) = self.root_cells();
        let mut depth = 0usize;
        let mut is_memory = false;
        let mut reg: Option<&[u8]> = None;
        for tok in self.tokens() {
            match tok {
                Token::Begin(name) => {
                    depth += 1;
                    if depth == 2 {
                        is_memory = name_matches(name, "memory");
                        reg = None;
                    }
                }
                Token::Prop(name, value) if depth == 2 => {
                    if name == "reg" {
                        reg = Some(value);
                    } else if name == "device_type" && cstr(value) == Some("memory") {
                        is_memory = true;
                    }
                }
                Token::Prop(..) => {}
                Token::End => {
                    if depth == 2 && is_memory {
                        if let Some(r) = reg {
                            let base = read_cells(r, ac)?;
                            let size = read_cells(r.get(ac * 4..)?, sc)?;
                            return Some((base, size));
                        }
                    }
                    depth = depth.checked_sub(1)?;
                }
            }
        }
        None
    }

    /// Writes the `reg` (MPIDR affinity) of each `/cpus/cpu@N` node to
    /// `out`, in tree order; returns how many CPU nodes there are (may be
    /// more than `out.len()`).
    pub fn cpus(&self, out: &mut [u64]) -> usize {
        let ac = self.property_u32("/cpus", "#address-cells").unwrap_or(1) as usize;
        let mut depth = 0usize;
        let mut in_cpus = false;
        let mut cpu_node = false;
        let mut count = 0usize;
        for tok in self.tokens() {
            match tok {
                Token::Begin(name) => {
                    depth += 1;
                    if depth == 2 {
                        in_cpus = name == "cpus";
                    } else if depth == 3 && in_cpus {
                        cpu_node = name_matches(name, "cpu");
                        if cpu_node {
                            count += 1;
                        }
                    }
                }
                Token::Prop("reg", value) if depth == 3 && in_cpus && cpu_node => {
                    if let (Some(slot), Some(v)) = (out.get_mut(count - 1), read_cells(value, ac)) {
                        *slot = v;
                    }
                }
                Token::Prop(..) => {}
                Token::End => {
                    if depth == 3 {
                        cpu_node = false;
                    }
                    let Some(d) = depth.checked_sub(1) else { break };
                    depth = d;
                }
            }
        }
        count
    }

    /// `/psci` `method` (`"hvc"` or `"smc"`).
    pub fn psci_method(&self) -> Option<&'a str> {
        self.property_str("/psci", "method")
    }

    /// `/chosen/bootargs`.
    pub fn bootargs(&self) -> Option<&'a str> {
        self.property_str("/chosen", "bootargs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a DTB (version 17) from a closure that emits tokens.
    struct Builder {
        structs: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Builder { structs: Vec::new(), strings: Vec::new() }
        }
        fn u32(&mut self, v: u32) {
            self.structs.extend_from_slice(&v.to_be_bytes());
        }
        fn pad(&mut self) {
            while !self.structs.len().is_multiple_of(4) {
                self.structs.push(0);
            }
        }
        fn begin(&mut self, name: &str) -> &mut Self {
            self.u32(FDT_BEGIN_NODE);
            self.structs.extend_from_slice(name.as_bytes());
            self.structs.push(0);
            self.pad();
            self
        }
        fn end(&mut self) -> &mut Self {
            self.u32(FDT_END_NODE);
            self
        }
        fn nop(&mut self) -> &mut Self {
            self.u32(FDT_NOP);
            self
        }
        fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            self.u32(FDT_PROP);
            self.u32(value.len() as u32);
            self.u32(off);
            self.structs.extend_from_slice(value);
            self.pad();
            self
        }
        fn prop_u32s(&mut self, name: &str, cells: &[u32]) -> &mut Self {
            let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.prop(name, &v)
        }
        fn prop_str(&mut self, name: &str, s: &str) -> &mut Self {
            let mut v = s.as_bytes().to_vec();
            v.push(0);
            self.prop(name, &v)
        }
        fn finish(&mut self) -> Vec<u8> {
            self.u32(FDT_END);
            let hdr = 40u32;
            let rsv = 16u32; // one empty reservation entry
            let off_struct = hdr + rsv;
            let off_strings = off_struct + self.structs.len() as u32;
            let total = off_strings + self.strings.len() as u32;
            let mut b = Vec::new();
            for v in [
                FDT_MAGIC,
                total,
                off_struct,
                off_strings,
                hdr,
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structs.len() as u32,
            ] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            b.extend_from_slice(&[0; 16]);
            b.extend_from_slice(&self.structs);
            b.extend_from_slice(&self.strings);
            b
        }
    }

    /// A tree shaped like the guest DTB of the contract (and QEMU virt's).
    fn sample() -> Vec<u8> {
        Builder::new()
            .begin("")
            .prop_u32s("#address-cells", &[2])
            .prop_u32s("#size-cells", &[2])
            .prop_str("compatible", "linux,dummy-virt")
            .begin("psci")
            .prop_str("compatible", "arm,psci-1.0")
            .prop_str("method", "hvc")
            .end()
            .begin("pl011@9000000")
            .prop_u32s("reg", &[0, 0x0900_0000, 0, 0x1000])
            .end()
            .nop()
            .begin("memory@40000000")
            .prop_str("device_type", "memory")
            .prop_u32s("reg", &[0, 0x4000_0000, 0, 0x0800_0000])
            .end()
            .begin("cpus")
            .prop_u32s("#address-cells", &[1])
            .prop_u32s("#size-cells", &[0])
            .begin("cpu@0")
            .prop_str("device_type", "cpu")
            .prop_u32s("reg", &[0])
            .end()
            .begin("cpu@1")
            .prop_str("device_type", "cpu")
            .prop_u32s("reg", &[1])
            .end()
            .begin("cpu@100")
            .prop_str("device_type", "cpu")
            .prop_u32s("reg", &[0x100])
            .end()
            .begin("cpu-map")
            .begin("cluster0")
            .end()
            .end()
            .end()
            .begin("chosen")
            .prop_str("bootargs", "vms=2 vcpus=4 mem=256M")
            .end()
            .end()
            .finish()
    }

    #[test]
    fn memory_cpus_chosen_psci() {
        let blob = sample();
        let fdt = Fdt::new(&blob).expect("valid header");
        assert_eq!(fdt.root_cells(), (2, 2));
        assert_eq!(fdt.memory(), Some((0x4000_0000, 0x0800_0000)));
        let mut cpus = [0u64; 8];
        assert_eq!(fdt.cpus(&mut cpus), 3);
        assert_eq!(&cpus[..3], &[0, 1, 0x100]);
        let mut two = [0u64; 2];
        assert_eq!(fdt.cpus(&mut two), 3, "counts beyond the output slice");
        assert_eq!(two, [0, 1]);
        assert_eq!(fdt.psci_method(), Some("hvc"));
        assert_eq!(fdt.bootargs(), Some("vms=2 vcpus=4 mem=256M"));
        assert_eq!(fdt.property_str("/", "compatible"), Some("linux,dummy-virt"));
        assert_eq!(
            fdt.property("/pl011", "reg").map(<[u8]>::len),
            Some(16),
            "unit address matched by a bare name"
        );
        assert_eq!(fdt.property_u32("/cpus/cpu@100", "reg"), Some(0x100));
        assert_eq!(fdt.property("/cpus/cpu@2", "reg"), None);
        assert_eq!(fdt.property("/chosen", "missing"), None);
        assert_eq!(fdt.property("/nope", "reg"), None);
        // A property of a sibling subtree is not found under another path.
        assert_eq!(fdt.property("/memory", "method"), None);
    }

    #[test]
    fn one_cell_memory_and_defaults() {
        let blob = Builder::new()
            .begin("")
            .prop_u32s("#address-cells", &[1])
            .prop_u32s("#size-cells", &[1])
            .begin("ram")
            .prop_str("device_type", "memory")
            .prop_u32s("reg", &[0x4000_0000, 0x2000_0000])
            .end()
            .end()
            .finish();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.memory(), Some((0x4000_0000, 0x2000_0000)));
        assert_eq!(fdt.cpus(&mut []), 0);
        assert_eq!(fdt.psci_method(), None);
        assert_eq!(fdt.bootargs(), None);
    }

    #[test]
    fn rejects_bad_blobs() {
        let blob = sample();
        assert!(Fdt::new(&blob[..blob.len() - 1]).is_none(), "truncated");
        let mut bad = blob.clone();
        bad[0] = 0;
        assert!(Fdt::new(&bad).is_none(), "bad magic");
        assert_eq!(Fdt::header_total_size(&blob), Some(blob.len()));
        assert_eq!(Fdt::new(&blob).unwrap().total_size(), blob.len());
        // A corrupt token stops the walk without panicking.
        let mut corrupt = blob.clone();
        corrupt[56 + 8..56 + 12].copy_from_slice(&7u32.to_be_bytes());
        let fdt = Fdt::new(&corrupt).unwrap();
        assert_eq!(fdt.memory(), None);
        assert_eq!(fdt.tokens().count(), 1);
        // A property length running past the block is rejected.
        let mut long = blob;
        long[56 + 8 + 4..56 + 8 + 8].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        let fdt = Fdt::new(&long).unwrap();
        assert_eq!(fdt.root_cells(), (2, 1));
    }

    #[test]
    fn read_cells_sizes() {
        assert_eq!(read_cells(&[0, 0, 0, 5], 1), Some(5));
        assert_eq!(read_cells(&[0, 0, 0, 1, 0, 0, 0, 2], 2), Some((1 << 32) | 2));
        assert_eq!(read_cells(&[0, 0, 0, 1], 2), None);
        assert_eq!(read_cells(&[0; 12], 3), None);
    }
}
