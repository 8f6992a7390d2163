//! The cpio "newc" format (the `070701` SVR4 format without checksums,
//! the one Linux's initramfs and the hypervisor's bundles use): a
//! [`Writer`], a strict reader ([`parse`]), a directory tree archiver
//! ([`write_tree`]) and the hypervisor's bundle ([`write_bundle`],
//! [`check_bundle`]).
//!
//! Each entry is a 110-byte ASCII header (the magic `070701` then 13
//! eight-digit hexadecimal fields: inode, mode, uid, gid, nlink, mtime,
//! filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check),
//! the name with its NUL (namesize counts it), zero padding to a multiple
//! of 4 bytes from the header's start, then the data, zero padded to a
//! multiple of 4. A symbolic link's data is its target. The archive ends
//! with an entry named [`TRAILER`].
//!
//! What this module writes is deterministic: uid, gid and mtime are 0,
//! inodes count from 1 in archive order, and nothing is read from the
//! clock or the user database.
//!
//! # The bundle
//!
//! The hypervisor's initrd, when it runs Linux guests: an uncompressed
//! newc archive whose regular files are, for each VM `N` numbered from 1
//! without gaps, `vmN/kernel` (an arm64 `Image`, an ARM `zImage`, or a
//! raw or ELF test image), `vmN/firmware` (firmware for the VM's flash at
//! IPA 0, where the VM then starts, such as U-Boot's `u-boot.bin`; a VM
//! needs a kernel, firmware or both), `vmN/initrd` (optional: the
//! guest's initramfs, in any format Linux accepts), `vmN/cmdline`
//! (optional: the guest's command line, one line; a trailing newline is
//! dropped) and `vmN/config` (optional: `key=value` words overriding the
//! hypervisor's bootargs for that VM, such as `vcpus=2 mem=512M`).
//! Directory entries `vmN` may be present and are ignored.
//! [`write_bundle`] writes the directory entry, then firmware, kernel,
//! initrd, cmdline and config, VM after VM.

use std::{
    fmt, fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

/// The newc magic (no checksums).
pub const MAGIC: &[u8; 6] = b"070701";

/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// The length of an entry's header: the magic and 13 eight-digit fields.
pub const HEADER_LEN: usize = 6 + 13 * 8;

/// File type bits of `mode`: directory.
pub const S_IFDIR: u32 = 0o040_000;
/// File type bits of `mode`: regular file.
pub const S_IFREG: u32 = 0o100_000;
/// File type bits of `mode`: symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// The mask of the file type bits.
pub const S_IFMT: u32 = 0o170_000;

/// One archive entry as read back by [`parse`] (device numbers, uid, gid
/// and times are checked or dropped: see [`parse`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path inside the archive, without a leading `/` or `./`.
    pub name: String,
    /// File type and permission bits (`S_IFREG | 0o644`...).
    pub mode: u32,
    /// The file's contents, or a symbolic link's target.
    pub data: Vec<u8>,
}

impl Entry {
    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
}

impl fmt::Debug for Entry {
    /// Like `ls -l`: type and permissions, size, name (`-> target`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", describe(self))
    }
}

/// One line about `entry`, like `ls -l`: `-rwxr-xr-x 12345 bin/busybox`,
/// `lrwxrwxrwx 7 bin/sh -> busybox`, `drwxr-xr-x 0 bin`.
pub fn describe(entry: &Entry) -> String {
    let kind = match entry.mode & S_IFMT {
        S_IFDIR => 'd',
        S_IFREG => '-',
        S_IFLNK => 'l',
        _ => '?',
    };
    let mut perms = String::with_capacity(9);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        perms.push(if entry.mode & (0o400 >> i) != 0 { c } else { '-' });
    }
    let mut line = format!("{kind}{perms} {:>9} {}", entry.data.len(), entry.name);
    if entry.is_symlink() {
        line.push_str(" -> ");
        line.push_str(&String::from_utf8_lossy(&entry.data));
    }
    line
}

/// Zero bytes that pad `len` to a multiple of 4.
fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Writes a newc archive entry by entry; [`finish`](Self::finish) writes
/// the trailer.
pub struct Writer<W: Write> {
    out: W,
    /// The inode of the next entry (the trailer's is 0).
    next_ino: u32,
    /// Bytes written so far, for the padding.
    written: u64,
}

impl<W: Write> Writer<W> {
    /// A writer that writes to `out`.
    pub fn new(out: W) -> Self {
        Writer { out, next_ino: 1, written: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes one entry: `name` (relative, no leading `/`; not
    /// [`TRAILER`]), `mode` with its type bits, and `data` (a symbolic
    /// link's target). Errors: an empty name or one holding a NUL, data
    /// of 4 GiB or more.
    pub fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
        if name.is_empty() || name.contains('\0') || name.starts_with('/') || name == TRAILER {
            return Err(invalid(format!("invalid archive entry name {name:?}")));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| invalid(format!("{name}: {} bytes, over newc's 4 GiB", data.len())))?;
        let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(name, ino, mode, nlink, size)?;
        self.put(data)?;
        self.put(&[0; 3][..pad4(data.len())])
    }

    /// The header and padded name of an entry.
    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, size: u32) -> io::Result<()> {
        debug_assert_eq!(self.written % 4, 0, "entries start 4-byte aligned");
        let namesize = name.len() as u32 + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor
        // rdevmajor rdevminor namesize check
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0];
        let mut head = String::with_capacity(HEADER_LEN);
        head.push_str(std::str::from_utf8(MAGIC).expect("ASCII"));
        for f in fields {
            head.push_str(&format!("{f:08x}"));
        }
        self.put(head.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.put(&[0; 3][..pad4(HEADER_LEN + namesize as usize)])
    }

    /// A directory `name` with permissions `perm`.
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | (perm & 0o7777), &[])
    }

    /// A regular file `name` with permissions `perm` holding `data`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (perm & 0o7777), data)
    }

    /// A symbolic link `name` to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, target.as_bytes())
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(TRAILER, 0, 0, 1, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads a newc archive back, strictly: every header has the `070701`
/// magic and hexadecimal fields, names end with their NUL, padding is
/// zeros, the archive ends with [`TRAILER`] followed by nothing but zero
/// bytes, no name repeats. Returns the entries before the trailer.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut at = 0;
    loop {
        let header =
            bytes.get(at..at + HEADER_LEN).ok_or(format!("offset {at}: archive ends early"))?;
        if &header[..6] != MAGIC {
            return Err(format!(
                "offset {at}: bad magic {:?}",
                String::from_utf8_lossy(&header[..6])
            ));
        }
        let mut field = [0u32; 13];
        for (i, f) in field.iter_mut().enumerate() {
            let text = &header[6 + 8 * i..14 + 8 * i];
            let text = std::str::from_utf8(text).map_err(|_| format!("offset {at}: bad field"))?;
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("offset {at}: field {i} is {text:?}, not hexadecimal"));
            }
            *f = u32::from_str_radix(text, 16).map_err(|e| format!("offset {at}: {e}"))?;
        }
        let [_ino, mode, _uid, _gid, _nlink, _mtime, size, _, _, _, _, namesize, _check] = field;
        let (size, namesize) = (size as usize, namesize as usize);
        if namesize == 0 {
            return Err(format!("offset {at}: empty name"));
        }
        let name_at = at + HEADER_LEN;
        let name = bytes
            .get(name_at..name_at + namesize)
            .ok_or(format!("offset {at}: the name runs past the end"))?;
        if name[namesize - 1] != 0 || name[..namesize - 1].contains(&0) {
            return Err(format!("offset {at}: the name is not one NUL-terminated string"));
        }
        let name = std::str::from_utf8(&name[..namesize - 1])
            .map_err(|_| format!("offset {at}: the name is not UTF-8"))?
            .to_string();
        let data_at = name_at + namesize + pad4(HEADER_LEN + namesize);
        zeros(bytes, name_at + namesize, data_at, &name)?;
        let data = bytes
            .get(data_at..data_at + size)
            .ok_or(format!("{name}: the data runs past the end"))?;
        let next = data_at + size + pad4(size);
        zeros(bytes, data_at + size, next, &name)?;
        if name == TRAILER {
            if let Some(i) = bytes[next.min(bytes.len())..].iter().position(|&b| b != 0) {
                return Err(format!("offset {}: data after the trailer", next + i));
            }
            return Ok(entries);
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(format!("{name}: in the archive twice"));
        }
        entries.push(Entry { name, mode, data: data.to_vec() });
        at = next;
    }
}

/// Checks that `bytes[from..to]` exist and are zeros (padding of `name`).
fn zeros(bytes: &[u8], from: usize, to: usize, name: &str) -> Result<(), String> {
    match bytes.get(from..to) {
        Some(pad) if pad.iter().all(|&b| b == 0) => Ok(()),
        Some(_) => Err(format!("{name}: non-zero padding at offset {from}")),
        None => Err(format!("{name}: the padding runs past the end")),
    }
}

/// Archives the tree under `root` (not `root` itself): directories,
/// regular files with their permission bits (setuid, setgid and sticky
/// included) and symbolic links (not followed), each directory's entries
/// sorted by name and written before its subdirectories' contents, so the
/// output depends only on the tree's names, modes, contents and link
/// targets. Errors on any other kind of file and on names that are not
/// UTF-8. Does not write the trailer.
pub fn write_tree<W: Write>(w: &mut Writer<W>, root: &Path) -> io::Result<()> {
    fn walk<W: Write>(w: &mut Writer<W>, dir: &Path, prefix: &str) -> io::Result<()> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.into_string().map_err(|n| {
                io::Error::new(io::ErrorKind::InvalidData, format!("name {n:?} is not UTF-8"))
            })?;
            names.push(name);
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let archived = format!("{prefix}{name}");
            let meta = fs::symlink_metadata(&path)?;
            let perm = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = fs::read_link(&path)?;
                let target = target.to_str().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{archived}: target not UTF-8"),
                    )
                })?;
                w.symlink(&archived, target)?;
            } else if kind.is_dir() {
                w.dir(&archived, perm)?;
                walk(w, &path, &format!("{archived}/"))?;
            } else if kind.is_file() {
                w.file(&archived, perm, &fs::read(&path)?)?;
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: neither a directory, a file nor a symlink", path.display()),
                ));
            }
        }
        Ok(())
    }
    walk(w, root, "")
}

/// One VM of a bundle to write: the files and texts of its entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmSpec {
    /// The guest kernel (`vmN/kernel`); empty for none (a firmware VM's
    /// kernel is optional).
    pub kernel: PathBuf,
    /// Firmware for the VM's flash (`vmN/firmware`).
    pub firmware: Option<PathBuf>,
    /// The guest's initramfs (`vmN/initrd`).
    pub initrd: Option<PathBuf>,
    /// The guest's command line (`vmN/cmdline`), one line.
    pub cmdline: Option<String>,
    /// The hypervisor settings for the VM (`vmN/config`), `key=value`
    /// words.
    pub config: Option<String>,
}

/// The keys of a [`VmSpec`] in its text form.
const VM_KEYS: [&str; 5] = ["kernel", "firmware", "initrd", "cmdline", "config"];

impl VmSpec {
    /// Parses `kernel=PATH[,firmware=PATH][,initrd=PATH][,cmdline=TEXT]
    /// [,config=TEXT]` (in any order, `kernel` or `firmware` required,
    /// each key once). A comma separates two items only where one of the
    /// five keys and `=` follow it, so a command line such as
    /// `console=ttyAMA0,115200` keeps its comma.
    pub fn parse(spec: &str) -> Result<VmSpec, String> {
        // Where each `key=` item starts: at 0 or just after such a comma.
        let starts_item =
            |s: &str| VM_KEYS.iter().any(|k| s.strip_prefix(k).is_some_and(|r| r.starts_with('=')));
        let mut starts = vec![0];
        for (i, _) in spec.match_indices(',') {
            if starts_item(&spec[i + 1..]) {
                starts.push(i + 1);
            }
        }
        let mut vm = VmSpec::default();
        let mut seen = Vec::new();
        for (n, &start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).map_or(spec.len(), |&next| next - 1);
            let item = &spec[start..end];
            let (key, value) = item.split_once('=').filter(|(k, _)| VM_KEYS.contains(k)).ok_or(
                format!("{item:?}: expected kernel=, firmware=, initrd=, cmdline= or config="),
            )?;
            if seen.contains(&key) {
                return Err(format!("{key}= given twice in {spec:?}"));
            }
            seen.push(key);
            match key {
                "kernel" => vm.kernel = PathBuf::from(value),
                "firmware" => vm.firmware = Some(PathBuf::from(value)),
                "initrd" => vm.initrd = Some(PathBuf::from(value)),
                "cmdline" => vm.cmdline = Some(value.to_string()),
                _ => vm.config = Some(value.to_string()),
            }
        }
        if vm.kernel.as_os_str().is_empty() && vm.firmware.is_none() {
            return Err(format!("{spec:?}: no kernel=PATH (nor firmware=PATH)"));
        }
        Ok(vm)
    }
}

/// Writes the bundle of `vms` (VM `i + 1` is `vms[i]`) to `out`: for each
/// VM its directory entry, `firmware` and `kernel`, then `initrd`,
/// `cmdline` and `config` where given, then the trailer. The texts are written as given (no
/// newline added). Errors: no VM, a file that cannot be read or is empty,
/// a command line or config of more than one line.
pub fn write_bundle<W: Write>(out: W, vms: &[VmSpec]) -> io::Result<W> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    if vms.is_empty() {
        return Err(invalid("a bundle needs at least one VM".into()));
    }
    let mut w = Writer::new(out);
    for (i, vm) in vms.iter().enumerate() {
        let dir = format!("vm{}", i + 1);
        w.dir(&dir, 0o755)?;
        let read = |path: &Path, what: &str| -> io::Result<Vec<u8>> {
            let data = fs::read(path).map_err(|e| {
                io::Error::new(e.kind(), format!("{dir} {what} {}: {e}", path.display()))
            })?;
            if data.is_empty() {
                return Err(invalid(format!("{dir} {what} {} is empty", path.display())));
            }
            Ok(data)
        };
        if let Some(firmware) = &vm.firmware {
            w.file(&format!("{dir}/firmware"), 0o644, &read(firmware, "firmware")?)?;
        }
        if vm.firmware.is_none() || !vm.kernel.as_os_str().is_empty() {
            w.file(&format!("{dir}/kernel"), 0o644, &read(&vm.kernel, "kernel")?)?;
        }
        if let Some(initrd) = &vm.initrd {
            w.file(&format!("{dir}/initrd"), 0o644, &read(initrd, "initrd")?)?;
        }
        for (name, text) in [("cmdline", &vm.cmdline), ("config", &vm.config)] {
            if let Some(text) = text {
                if text.trim_end_matches('\n').contains('\n') {
                    return Err(invalid(format!("{dir} {name} {text:?} is more than one line")));
                }
                w.file(&format!("{dir}/{name}"), 0o644, text.as_bytes())?;
            }
        }
    }
    w.finish()
}

/// What a bundle's `vmN/kernel` looks like, from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// An arm64 Linux `Image` (`ARM\x64` at offset 0x38).
    Arm64Image,
    /// An ARM Linux `zImage` (`0x016f2818` at offset 0x24).
    ZImage,
    /// An ELF executable.
    Elf,
    /// Anything else: a raw image loaded as it is.
    Raw,
}

impl KernelKind {
    /// Recognises `image` by its header.
    pub fn of(image: &[u8]) -> KernelKind {
        if image.get(0x38..0x3c) == Some(b"ARMd") {
            KernelKind::Arm64Image
        } else if image.get(0x24..0x28) == Some(&0x016f_2818u32.to_le_bytes()) {
            KernelKind::ZImage
        } else if image.starts_with(b"\x7fELF") {
            KernelKind::Elf
        } else {
            KernelKind::Raw
        }
    }
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelKind::Arm64Image => "arm64 Image",
            KernelKind::ZImage => "ARM zImage",
            KernelKind::Elf => "ELF",
            KernelKind::Raw => "raw image",
        })
    }
}

/// One VM of a bundle read back by [`check_bundle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleVm {
    /// The VM's number (`vmN`).
    pub vm: u32,
    /// Its kernel (empty for a firmware VM without one).
    pub kernel: Vec<u8>,
    /// Its firmware.
    pub firmware: Option<Vec<u8>>,
    /// Its initramfs.
    pub initrd: Option<Vec<u8>>,
    /// Its command line, a trailing newline dropped.
    pub cmdline: Option<String>,
    /// Its config, a trailing newline dropped.
    pub config: Option<String>,
}

/// Checks `entries` ([`parse`]'s) against the bundle contract (see the
/// module's documentation) and returns the VMs in order. Errors: an entry
/// other than `vmN` directories and
/// `vmN/{kernel,firmware,initrd,cmdline,config}` regular files, `N` not a
/// number from 1 without leading zeros, a VM without a kernel or
/// firmware, a gap in the numbering, no VM, a command line or
/// config that is not one line of UTF-8, a config word that is not
/// `key=value`.
pub fn check_bundle(entries: &[Entry]) -> Result<Vec<BundleVm>, String> {
    let mut vms: Vec<Option<BundleVm>> = Vec::new();
    for e in entries {
        let (dir, file) = match e.name.split_once('/') {
            Some((d, f)) => (d, Some(f)),
            None => (e.name.as_str(), None),
        };
        let n = dir
            .strip_prefix("vm")
            .filter(|n| {
                !n.starts_with('0') && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
            })
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or(format!("{}: not under a vmN directory", e.name))?;
        let Some(file) = file else {
            if !e.is_dir() {
                return Err(format!("{}: expected a directory", e.name));
            }
            continue;
        };
        if !e.is_file() {
            return Err(format!("{}: expected a regular file", e.name));
        }
        let index = n as usize - 1;
        if vms.len() <= index {
            vms.resize(index + 1, None);
        }
        let vm = vms[index].get_or_insert_with(|| BundleVm {
            vm: n,
            kernel: Vec::new(),
            firmware: None,
            initrd: None,
            cmdline: None,
            config: None,
        });
        let line = || -> Result<String, String> {
            let text =
                std::str::from_utf8(&e.data).map_err(|_| format!("{}: not UTF-8", e.name))?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            if text.contains('\n') {
                return Err(format!("{}: more than one line", e.name));
            }
            Ok(text.to_string())
        };
        match file {
            "kernel" => vm.kernel = e.data.clone(),
            "firmware" => vm.firmware = Some(e.data.clone()),
            "initrd" => vm.initrd = Some(e.data.clone()),
            "cmdline" => vm.cmdline = Some(line()?),
            "config" => {
                let text = line()?;
                if let Some(w) =
                    text.split_whitespace().find(|w| !w.contains('=') || w.starts_with('='))
                {
                    return Err(format!("{}: {w:?} is not key=value", e.name));
                }
                vm.config = Some(text);
            }
            _ => {
                return Err(format!(
                    "{}: unknown entry (kernel, firmware, initrd, cmdline, config)",
                    e.name
                ))
            }
        }
    }
    if vms.is_empty() {
        return Err("no VM in the bundle (no vm1/kernel)".into());
    }
    vms.into_iter()
        .enumerate()
        .map(|(i, vm)| {
            let vm = vm.ok_or(format!("vm{} is missing (VMs are numbered without gaps)", i + 1))?;
            if vm.firmware.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!("vm{}/firmware is empty", vm.vm));
            }
            if vm.kernel.is_empty() && vm.firmware.is_none() {
                return Err(format!("vm{}/kernel is missing or empty (and no firmware)", vm.vm));
            }
            Ok(vm)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(f: impl FnOnce(&mut Writer<Vec<u8>>) -> io::Result<()>) -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        f(&mut w).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn writes_the_newc_layout() {
        let bytes = archive(|w| w.file("ab", 0o644, b"hello"));
        // Header, "ab\0" padded to 4 from the header's start (110 + 3 =
        // 113 -> 116), five bytes of data padded to 8.
        let head = std::str::from_utf8(&bytes[..HEADER_LEN]).unwrap();
        let fields = [
            "00000001", // ino
            "000081a4", // mode: regular file, 0644
            "00000000", // uid
            "00000000", // gid
            "00000001", // nlink
            "00000000", // mtime
            "00000005", // filesize
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000003", // namesize, the NUL included
            "00000000", // check
        ];
        assert_eq!(head, format!("070701{}", fields.concat()));
        assert_eq!(&bytes[110..116], b"ab\0\0\0\0");
        assert_eq!(&bytes[116..124], b"hello\0\0\0");
        // The trailer: 110 + 11 = 121 -> 124, no data.
        assert_eq!(&bytes[124..130], MAGIC);
        assert_eq!(&bytes[124 + 110..124 + 121], b"TRAILER!!!\0");
        assert_eq!(bytes.len(), 124 + 124);
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn round_trips_every_kind_and_padding() {
        // Names and data of every length modulo 4.
        let bytes = archive(|w| {
            w.dir("d", 0o755)?;
            for len in 0..8 {
                let name = format!("d/{}", "n".repeat(len + 1));
                w.file(&name, 0o600 + len as u32, &vec![len as u8 + 1; len])?;
            }
            w.symlink("d/link", "../target")?;
            w.file("setuid", 0o4755, b"x")
        });
        let entries = parse(&bytes).unwrap();
        assert_eq!(entries.len(), 11);
        assert!(entries[0].is_dir() && entries[0].mode == S_IFDIR | 0o755);
        for len in 0..8 {
            let e = &entries[1 + len];
            assert_eq!(e.name, format!("d/{}", "n".repeat(len + 1)));
            assert_eq!(e.mode, S_IFREG | (0o600 + len as u32));
            assert_eq!(e.data, vec![len as u8 + 1; len]);
        }
        assert!(entries[9].is_symlink());
        assert_eq!(entries[9].data, b"../target");
        assert_eq!(entries[10].mode, S_IFREG | 0o4755);
        assert_eq!(describe(&entries[9]), "lrwxrwxrwx         9 d/link -> ../target");
    }

    #[test]
    fn the_reader_is_strict() {
        let good = archive(|w| w.file("ab", 0o644, b"data"));
        assert!(parse(&good).is_ok());
        let mut zeros_after = good.clone();
        zeros_after.extend_from_slice(&[0; 512]);
        assert!(parse(&zeros_after).is_ok(), "zero padding after the trailer is allowed");

        let mut bad = good.clone();
        bad[5] = b'2'; // 070702: the checksummed format
        assert!(parse(&bad).unwrap_err().contains("bad magic"));
        let mut bad = good.clone();
        bad[6] = b'g';
        assert!(parse(&bad).unwrap_err().contains("not hexadecimal"));
        let mut bad = good.clone();
        bad.push(1);
        assert!(parse(&bad).unwrap_err().contains("after the trailer"));
        assert!(parse(&good[..good.len() - 4]).is_err(), "truncated");
        assert!(parse(&good[..120]).is_err(), "no trailer");
        let mut bad = good.clone();
        bad[110 + 3] = b'x'; // the name's padding (110 + 3 -> 116)
        assert!(parse(&bad).unwrap_err().contains("padding"));
        let twice = archive(|w| {
            w.file("f", 0o644, b"")?;
            w.file("f", 0o644, b"")
        });
        assert!(parse(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn refuses_bad_names() {
        let mut w = Writer::new(Vec::new());
        assert!(w.file("", 0o644, b"").is_err());
        assert!(w.file("/abs", 0o644, b"").is_err());
        assert!(w.file("a\0b", 0o644, b"").is_err());
        assert!(w.file(TRAILER, 0o644, b"").is_err());
    }

    /// A scratch directory of this process under the system's temporary
    /// directory, emptied first.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("harness-cpio-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn archives_a_tree_sorted_and_deterministic() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let root = scratch("tree");
        for d in ["bin", "dev", "b-c", "usr/bin"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("init"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("init"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("bin/busybox"), [0x7f, b'E', b'L', b'F']).unwrap();
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(root.join("dev"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink("busybox", root.join("bin/sh")).unwrap();
        symlink("../../bin/busybox", root.join("usr/bin/env")).unwrap();

        let write = || {
            let mut w = Writer::new(Vec::new());
            write_tree(&mut w, &root).unwrap();
            w.finish().unwrap()
        };
        let bytes = write();
        assert_eq!(bytes, write(), "the same tree gives the same bytes");
        let entries = parse(&bytes).unwrap();
        let listing: Vec<String> = entries.iter().map(describe).collect();
        assert_eq!(
            listing,
            [
                "drwxr-xr-x         0 b-c",
                "drwxr-xr-x         0 bin",
                "-rwxr-xr-x         4 bin/busybox",
                "lrwxrwxrwx         7 bin/sh -> busybox",
                "drwx------         0 dev",
                "-rwxr-xr-x        10 init",
                "drwxr-xr-x         0 usr",
                "drwxr-xr-x         0 usr/bin",
                "lrwxrwxrwx        17 usr/bin/env -> ../../bin/busybox",
            ]
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn parses_vm_specs() {
        let vm =
            VmSpec::parse("kernel=/k,cmdline=console=ttyAMA0,115200 quiet,config=vcpus=2 mem=512M")
                .unwrap();
        assert_eq!(
            vm,
            VmSpec {
                kernel: "/k".into(),
                firmware: None,
                initrd: None,
                cmdline: Some("console=ttyAMA0,115200 quiet".into()),
                config: Some("vcpus=2 mem=512M".into()),
            }
        );
        let vm = VmSpec::parse("initrd=/i.gz,kernel=/k").unwrap();
        assert_eq!(vm.initrd, Some("/i.gz".into()));
        assert_eq!(VmSpec::parse("kernel=/k,cmdline=").unwrap().cmdline, Some(String::new()));
        assert!(VmSpec::parse("initrd=/i").unwrap_err().contains("no kernel"));
        let fw = VmSpec::parse("firmware=/u-boot.bin,config=mem=256M").unwrap();
        assert_eq!((fw.firmware, fw.kernel), (Some("/u-boot.bin".into()), PathBuf::new()));
        assert!(VmSpec::parse("kernel=/a,kernel=/b").unwrap_err().contains("twice"));
        assert!(VmSpec::parse("/k").is_err());
        assert!(VmSpec::parse("kernel=/k,foo=1").is_ok(), "foo=1 is part of the path");
        assert_eq!(VmSpec::parse("kernel=/k,foo=1").unwrap().kernel, PathBuf::from("/k,foo=1"));
    }

    #[test]
    fn bundles_round_trip() {
        let dir = scratch("bundle");
        let kernel = dir.join("Image");
        let mut image = vec![0u8; 64];
        image[0x38..0x3c].copy_from_slice(b"ARMd");
        fs::write(&kernel, &image).unwrap();
        let initrd = dir.join("initrd.gz");
        fs::write(&initrd, [0x1f, 0x8b, 8, 0]).unwrap();
        let vms = [
            VmSpec {
                kernel: kernel.clone(),
                firmware: None,
                initrd: Some(initrd.clone()),
                cmdline: Some("console=ttyAMA0 earlycon".into()),
                config: Some("vcpus=2 mem=512M".into()),
            },
            VmSpec { kernel: kernel.clone(), ..VmSpec::default() },
        ];
        let bytes = write_bundle(Vec::new(), &vms).unwrap();
        let entries = parse(&bytes).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["vm1", "vm1/kernel", "vm1/initrd", "vm1/cmdline", "vm1/config", "vm2", "vm2/kernel"]
        );
        let read = check_bundle(&entries).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(KernelKind::of(&read[0].kernel), KernelKind::Arm64Image);
        assert_eq!(read[0].initrd.as_deref(), Some(&[0x1f, 0x8b, 8, 0][..]));
        assert_eq!(read[0].cmdline.as_deref(), Some("console=ttyAMA0 earlycon"));
        assert_eq!(read[0].config.as_deref(), Some("vcpus=2 mem=512M"));
        assert_eq!(
            (read[1].vm, read[1].initrd.as_ref(), read[1].cmdline.as_ref()),
            (2, None, None)
        );

        let two_lines = VmSpec { cmdline: Some("a\nb".into()), ..vms[1].clone() };
        assert!(write_bundle(Vec::new(), &[two_lines]).is_err());
        assert!(write_bundle(Vec::new(), &[]).is_err());
        let empty = dir.join("empty");
        fs::write(&empty, b"").unwrap();
        let no_kernel = VmSpec { kernel: empty.clone(), ..VmSpec::default() };
        assert!(write_bundle(Vec::new(), &[no_kernel]).unwrap_err().to_string().contains("empty"));

        // Firmware VMs: alone, and with a kernel for it to boot.
        let fw = dir.join("u-boot.bin");
        fs::write(&fw, b"FIRMWARE").unwrap();
        let vms = [
            VmSpec { firmware: Some(fw.clone()), ..VmSpec::default() },
            VmSpec { firmware: Some(fw.clone()), kernel: kernel.clone(), ..VmSpec::default() },
        ];
        let entries = parse(&write_bundle(Vec::new(), &vms).unwrap()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["vm1", "vm1/firmware", "vm2", "vm2/firmware", "vm2/kernel"]);
        let read = check_bundle(&entries).unwrap();
        assert_eq!(
            (read[0].firmware.as_deref(), read[0].kernel.len()),
            (Some(&b"FIRMWARE"[..]), 0)
        );
        assert_eq!(KernelKind::of(&read[1].kernel), KernelKind::Arm64Image);
        let empty_fw = VmSpec { firmware: Some(empty), ..VmSpec::default() };
        assert!(write_bundle(Vec::new(), &[empty_fw]).unwrap_err().to_string().contains("empty"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checks_the_bundle_contract() {
        let file = |name: &str, data: &[u8]| Entry {
            name: name.into(),
            mode: S_IFREG | 0o644,
            data: data.into(),
        };
        let dir = |name: &str| Entry { name: name.into(), mode: S_IFDIR | 0o755, data: Vec::new() };
        // Directories are optional; a trailing newline is dropped.
        let ok =
            check_bundle(&[file("vm1/kernel", b"k"), file("vm1/cmdline", b"quiet\n")]).unwrap();
        assert_eq!(ok[0].cmdline.as_deref(), Some("quiet"));
        let err = |entries: &[Entry]| check_bundle(entries).unwrap_err();
        assert!(err(&[]).contains("no VM"));
        assert!(err(&[dir("vm1")]).contains("no VM"));
        assert!(err(&[file("vm2/kernel", b"k")]).contains("vm1 is missing"));
        assert!(err(&[file("vm1/initrd", b"i")]).contains("vm1/kernel is missing"));
        assert!(err(&[file("vm1/firmware", b"")]).contains("vm1/firmware is empty"));
        assert_eq!(
            check_bundle(&[file("vm1/firmware", b"f")]).unwrap()[0].firmware,
            Some(b"f".into())
        );
        assert!(err(&[file("vm01/kernel", b"k")]).contains("not under a vmN"));
        assert!(err(&[file("kernel", b"k")]).contains("not under a vmN"));
        assert!(err(&[file("vm1/kernel", b"k"), file("vm1/extra", b"")]).contains("unknown entry"));
        assert!(err(&[file("vm1/kernel", b"k"), file("vm1/cmdline", b"a\nb")]).contains("one line"));
        assert!(
            err(&[file("vm1/kernel", b"k"), file("vm1/config", b"vcpus")]).contains("key=value")
        );
        assert!(err(&[file("vm1", b"k")]).contains("expected a directory"));
        assert!(err(&[dir("vm1/kernel")]).contains("expected a regular file"));
    }

    #[test]
    fn recognises_kernels() {
        let mut zimage = vec![0u8; 64];
        zimage[0x24..0x28].copy_from_slice(&[0x18, 0x28, 0x6f, 0x01]);
        assert_eq!(KernelKind::of(&zimage), KernelKind::ZImage);
        assert_eq!(KernelKind::of(b"\x7fELF\x02\x01"), KernelKind::Elf);
        assert_eq!(KernelKind::of(&[0; 16]), KernelKind::Raw);
    }
}
