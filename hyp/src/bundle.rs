//! The bundle: what VMs to run and with what, passed as the hypervisor's
//! initrd. An uncompressed cpio "newc" archive (Linux's initramfs format)
//! holding, for each VM `N` from 1 without gaps, `vmN/kernel` (an arm64
//! `Image`, an ARM `zImage`, or a raw or ELF test image) or
//! `vmN/firmware` (or both), and optionally `vmN/initrd` (the guest's
//! initramfs, handed over as Linux's boot protocol says), `vmN/cmdline`
//! (the guest's whole command line; a final newline is dropped) and
//! `vmN/config` (`vcpus=N mem=SIZE`, overriding the hypervisor's bootargs
//! for that VM). Directory entries are ignored; any other name is refused
//! (a typo is caught, not skipped).
//!
//! `vmN/firmware` makes the VM boot as QEMU `virt` boots its `-bios`: the
//! image (U-Boot's `qemu_arm64` or `qemu_arm` `u-boot.bin`, linked at 0)
//! is placed at the start of the VM's flash at IPA 0
//! ([`crate::layout::FLASH_BASE`]; the rest of the flash reads as
//! erased) and the VM starts there, with its DTB at the start of RAM. A
//! `vmN/kernel` beside it (and its `initrd`) is still loaded in RAM as
//! for a kernel of its own, but not entered: it is there for the firmware
//! to boot (U-Boot's `booti`).
//! Portable and host-tested; `scripts/linux.sh` builds bundles (with
//! `tests/src/bin/mkcpio.rs`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The most VMs a bundle may describe.
pub const MAX_VMS: usize = 8;

/// One VM of a bundle.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct BundleVm<'a> {
    /// The kernel (empty when the bundle has none: then `firmware` is
    /// set).
    pub kernel: &'a [u8],
    /// Firmware for the VM's flash, where the VM starts.
    pub firmware: Option<&'a [u8]>,
    /// Its initramfs, if any.
    pub initrd: Option<&'a [u8]>,
    /// Its command line, exactly as given.
    pub cmdline: String,
    /// `vcpus`, if the bundle sets it.
    pub vcpus: Option<usize>,
    /// `mem` in bytes, if the bundle sets it.
    pub mem: Option<u64>,
}

/// Why a bundle was refused.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BundleError {
    /// Not a newc archive, or one cut short.
    Cpio(&'static str),
    /// An entry the format does not have.
    UnknownEntry(String),
    /// A VM with neither a kernel nor firmware, or VMs not numbered 1,
    /// 2, ... .
    MissingKernel(usize),
    /// More than [`MAX_VMS`] VMs.
    TooManyVms,
    /// A `config` word that is not `vcpus=N` or `mem=SIZE`.
    BadConfig(String),
    /// A `cmdline` that is not UTF-8.
    BadCmdline(usize),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Cpio(why) => write!(f, "bundle: not a cpio newc archive: {why}"),
            BundleError::UnknownEntry(n) => write!(f, "bundle: unknown entry {n:?}"),
            BundleError::MissingKernel(n) => {
                write!(f, "bundle: vm{n} has neither a kernel nor firmware")
            }
            BundleError::TooManyVms => write!(f, "bundle: more than {MAX_VMS} VMs"),
            BundleError::BadConfig(w) => write!(f, "bundle: bad config word {w:?}"),
            BundleError::BadCmdline(n) => write!(f, "bundle: vm{n}'s cmdline is not UTF-8"),
        }
    }
}

/// Whether `bytes` look like a newc archive (and so a bundle).
pub fn is_bundle(bytes: &[u8]) -> bool {
    bytes.starts_with(b"070701")
}

/// One entry of a newc archive.
struct Entry<'a> {
    name: &'a str,
    mode: u32,
    data: &'a [u8],
}

fn hex(field: &[u8]) -> Result<u32, BundleError> {
    let s = core::str::from_utf8(field).map_err(|_| BundleError::Cpio("header not ASCII"))?;
    u32::from_str_radix(s, 16).map_err(|_| BundleError::Cpio("header field not hex"))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The entries of `bytes`, up to `TRAILER!!!`.
fn entries(bytes: &[u8]) -> Result<Vec<Entry<'_>>, BundleError> {
    const HEADER: usize = 110;
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let h = bytes.get(at..at + HEADER).ok_or(BundleError::Cpio("cut short"))?;
        if &h[..6] != b"070701" {
            return Err(BundleError::Cpio("bad magic"));
        }
        let field = |i: usize| hex(&h[6 + 8 * i..14 + 8 * i]);
        let (mode, size, namesize) = (field(1)?, field(6)? as usize, field(11)? as usize);
        let name_at = at + HEADER;
        let name = bytes
            .get(name_at..name_at + namesize)
            .and_then(|n| n.split_last())
            .filter(|(nul, _)| **nul == 0)
            .ok_or(BundleError::Cpio("bad name"))?
            .1;
        let name = core::str::from_utf8(name).map_err(|_| BundleError::Cpio("name not UTF-8"))?;
        let data_at = align4(name_at + namesize);
        let data = bytes.get(data_at..data_at + size).ok_or(BundleError::Cpio("cut short"))?;
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push(Entry { name, mode, data });
        at = align4(data_at + size);
    }
}

/// `512M`, `1G`, `65536`: bytes.
fn size(s: &str) -> Option<u64> {
    let (num, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Reads the bundle in `bytes` (see the module documentation).
pub fn parse(bytes: &[u8]) -> Result<Vec<BundleVm<'_>>, BundleError> {
    let mut vms: Vec<Option<BundleVm<'_>>> = Vec::new();
    for e in entries(bytes)? {
        const S_IFMT: u32 = 0o170_000;
        const S_IFDIR: u32 = 0o040_000;
        let name = e.name.trim_start_matches("./");
        let unknown = || BundleError::UnknownEntry(name.into());
        let (vm, file) = match name.split_once('/') {
            Some((vm, file)) => (vm, Some(file)),
            None => (name, None),
        };
        let n: usize = vm.strip_prefix("vm").and_then(|n| n.parse().ok()).ok_or_else(unknown)?;
        if n == 0 {
            return Err(unknown());
        }
        if n > MAX_VMS {
            return Err(BundleError::TooManyVms);
        }
        if vms.len() < n {
            vms.resize(n, None);
        }
        let slot = vms[n - 1].get_or_insert_with(BundleVm::default);
        match file {
            None if e.mode & S_IFMT == S_IFDIR => {}
            Some("kernel") => slot.kernel = e.data,
            Some("firmware") => slot.firmware = Some(e.data).filter(|d| !d.is_empty()),
            Some("initrd") => slot.initrd = Some(e.data),
            Some("cmdline") => {
                let text = core::str::from_utf8(e.data).map_err(|_| BundleError::BadCmdline(n))?;
                slot.cmdline = text.strip_suffix('\n').unwrap_or(text).into();
            }
            Some("config") => {
                let text = core::str::from_utf8(e.data)
                    .map_err(|_| BundleError::BadConfig("(not UTF-8)".into()))?;
                for word in text.split_ascii_whitespace() {
                    let bad = || BundleError::BadConfig(word.into());
                    match word.split_once('=') {
                        Some(("vcpus", v)) => {
                            slot.vcpus = Some(v.parse().ok().filter(|&v| v > 0).ok_or_else(bad)?)
                        }
                        Some(("mem", v)) => slot.mem = Some(size(v).ok_or_else(bad)?),
                        _ => return Err(bad()),
                    }
                }
            }
            _ => return Err(unknown()),
        }
    }
    vms.into_iter()
        .enumerate()
        .map(|(i, vm)| {
            vm.filter(|v| !v.kernel.is_empty() || v.firmware.is_some())
                .ok_or(BundleError::MissingKernel(i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A newc archive of `(name, mode, data)`.
    fn cpio(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |name: &str, mode: u32, data: &[u8]| {
            let namesize = name.len() + 1;
            let fields = [1, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, namesize as u32, 0];
            out.extend_from_slice(b"070701");
            for f in fields {
                out.extend_from_slice(alloc::format!("{f:08X}").as_bytes());
            }
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        for &(n, m, d) in files {
            push(n, m, d);
        }
        push("TRAILER!!!", 0, &[]);
        out
    }

    const FILE: u32 = 0o100_644;
    const DIR: u32 = 0o040_755;

    #[test]
    fn two_vms_with_their_own_images_and_command_lines() {
        let b = cpio(&[
            ("vm1", DIR, b""),
            ("vm1/kernel", FILE, b"KERNEL-ONE"),
            ("vm1/initrd", FILE, b"INITRD"),
            ("vm1/cmdline", FILE, b"console=ttyAMA0 quiet\n"),
            ("vm1/config", FILE, b"vcpus=4 mem=512M\n"),
            ("./vm2/kernel", FILE, b"K2"),
        ]);
        assert!(is_bundle(&b));
        let vms = parse(&b).unwrap();
        assert_eq!(vms.len(), 2);
        assert_eq!(vms[0].kernel, b"KERNEL-ONE");
        assert_eq!(vms[0].initrd, Some(&b"INITRD"[..]));
        assert_eq!(vms[0].cmdline, "console=ttyAMA0 quiet");
        assert_eq!((vms[0].vcpus, vms[0].mem), (Some(4), Some(512 << 20)));
        assert_eq!(vms[1], BundleVm { kernel: b"K2", ..BundleVm::default() });
    }

    #[test]
    fn firmware_alone_or_with_a_kernel() {
        let b = cpio(&[
            ("vm1/firmware", FILE, b"U-BOOT"),
            ("vm1/config", FILE, b"mem=256M"),
            ("vm2/firmware", FILE, b"U-BOOT"),
            ("vm2/kernel", FILE, b"LINUX"),
            ("vm2/initrd", FILE, b"RD"),
        ]);
        let vms = parse(&b).unwrap();
        assert_eq!(vms[0].firmware, Some(&b"U-BOOT"[..]));
        assert!(vms[0].kernel.is_empty());
        assert_eq!(vms[0].mem, Some(256 << 20));
        assert_eq!((vms[1].firmware, vms[1].kernel), (Some(&b"U-BOOT"[..]), &b"LINUX"[..]));
        assert_eq!(vms[1].initrd, Some(&b"RD"[..]));
        // Empty firmware is no firmware: the VM has nothing to boot.
        let empty = cpio(&[("vm1/firmware", FILE, b"")]);
        assert_eq!(parse(&empty), Err(BundleError::MissingKernel(1)));
        let only_initrd = cpio(&[("vm1/initrd", FILE, b"RD")]);
        assert_eq!(parse(&only_initrd), Err(BundleError::MissingKernel(1)));
        assert_eq!(
            alloc::format!("{}", BundleError::MissingKernel(1)),
            "bundle: vm1 has neither a kernel nor firmware"
        );
    }

    #[test]
    fn bad_bundles_are_refused_with_a_reason() {
        let no_kernel = cpio(&[("vm1/kernel", FILE, b"K"), ("vm3/kernel", FILE, b"K")]);
        assert_eq!(parse(&no_kernel), Err(BundleError::MissingKernel(2)));
        let typo = cpio(&[("vm1/kernal", FILE, b"K")]);
        assert_eq!(parse(&typo), Err(BundleError::UnknownEntry("vm1/kernal".into())));
        let zero = cpio(&[("vm0/kernel", FILE, b"K")]);
        assert!(matches!(parse(&zero), Err(BundleError::UnknownEntry(_))));
        let many = cpio(&[("vm9/kernel", FILE, b"K")]);
        assert_eq!(parse(&many), Err(BundleError::TooManyVms));
        let cfg = cpio(&[("vm1/kernel", FILE, b"K"), ("vm1/config", FILE, b"vcpus=0")]);
        assert_eq!(parse(&cfg), Err(BundleError::BadConfig("vcpus=0".into())));
        let cfg = cpio(&[("vm1/kernel", FILE, b"K"), ("vm1/config", FILE, b"smp=2")]);
        assert_eq!(parse(&cfg), Err(BundleError::BadConfig("smp=2".into())));
        let mut cut = cpio(&[("vm1/kernel", FILE, b"KERNEL")]);
        cut.truncate(120);
        assert!(matches!(parse(&cut), Err(BundleError::Cpio(_))));
        assert!(!is_bundle(b"\x7fELF"));
        assert_eq!(parse(&cpio(&[])), Ok(vec![]));
    }
}
