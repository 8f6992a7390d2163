//! Guest images: raw binaries (loaded at the image IPA, entered at their
//! first byte), ELF64 AArch64 executables (`PT_LOAD` segments at their
//! physical addresses, entered at `e_entry`), arm64 Linux `Image`s (at
//! their header's `text_offset` from the 2 MiB-aligned image IPA, with
//! room for its `image_size`, entered at their first byte), and ARM
//! `zImage`s (raw, at the image IPA: they decompress themselves above
//! their end). Pure parsing, tested on the host; the hypervisor copies
//! the segments into guest RAM. Firmware ([`parse_firmware`]: a bundle's
//! `vmN/firmware`) is a raw image for the VM's flash at IPA 0.

use alloc::vec::Vec;
use core::fmt;

/// One piece of the image to place in guest memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Segment<'a> {
    /// Guest physical address of the first byte.
    pub ipa: u64,
    /// Bytes to copy.
    pub data: &'a [u8],
    /// Bytes to map (`data` then zeros, for `.bss`).
    pub mem_size: u64,
}

/// A parsed guest image.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GuestImage<'a> {
    /// Where the guest starts.
    pub entry: u64,
    /// What to load.
    pub segments: Vec<Segment<'a>>,
    /// What the image was.
    pub kind: ImageKind,
}

/// The formats [`parse`] knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImageKind {
    /// A raw binary, entered at its first byte.
    Raw,
    /// An ELF64 AArch64 executable.
    Elf,
    /// An arm64 Linux `Image` (magic `ARM\x64` at 0x38).
    Arm64Image,
    /// An ARM Linux `zImage` (magic 0x016f2818 at 0x24).
    ZImage,
    /// Firmware: a raw image in the VM's flash at
    /// [`crate::layout::FLASH_BASE`], entered at its first byte.
    Firmware,
}

/// The arm64 `Image` header's magic, at offset 0x38.
const ARM64_MAGIC: u32 = 0x644d_5241;
/// The `zImage` header's magic, at offset 0x24.
const ZIMAGE_MAGIC: u32 = 0x016f_2818;

/// Why an image was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImageError {
    /// Empty image.
    Empty,
    /// An ELF file that is not 64-bit little-endian AArch64 executable.
    NotAarch64Elf,
    /// A header or segment lies outside the file, or sizes overflow.
    Truncated,
    /// A segment falls outside `[ram_base, ram_end)` or over the DTB.
    OutsideRam {
        /// The segment's guest physical address.
        ipa: u64,
    },
    /// The entry point is not inside a loaded segment.
    BadEntry(u64),
    /// Firmware larger than the flash bank it goes in.
    FirmwareTooBig {
        /// The image's size in bytes.
        size: u64,
        /// The bank's size.
        max: u64,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Empty => write!(f, "empty guest image"),
            ImageError::NotAarch64Elf => write!(f, "ELF image is not an AArch64 ELF64 executable"),
            ImageError::Truncated => write!(f, "image truncated or malformed"),
            ImageError::OutsideRam { ipa } => {
                write!(f, "segment at IPA {ipa:#x} outside the guest's RAM (or over its DTB)")
            }
            ImageError::BadEntry(e) => write!(f, "entry point {e:#x} not in any loaded segment"),
            ImageError::FirmwareTooBig { size, max } => {
                write!(f, "firmware of {size} bytes does not fit its {max}-byte flash bank")
            }
        }
    }
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, ImageError> {
    let s = b.get(off..off + 2).ok_or(ImageError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, ImageError> {
    let s = b.get(off..off + 4).ok_or(ImageError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, ImageError> {
    let s = b.get(off..off + 8).ok_or(ImageError::Truncated)?;
    let mut a = [0; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// Parses `bytes` as a guest image. Raw images go at `raw_ipa`. Every
/// segment must lie in `[ram_lo, ram_hi)`, the part of guest RAM images
/// may use (above the DTB).
pub fn parse(
    bytes: &[u8],
    raw_ipa: u64,
    ram_lo: u64,
    ram_hi: u64,
) -> Result<GuestImage<'_>, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let check = |ipa: u64, size: u64| {
        let end = ipa.checked_add(size).ok_or(ImageError::OutsideRam { ipa })?;
        if ipa < ram_lo || end > ram_hi {
            Err(ImageError::OutsideRam { ipa })
        } else {
            Ok(())
        }
    };
    if u32_at(bytes, 0x38).ok() == Some(ARM64_MAGIC) {
        // text_offset from a 2 MiB-aligned base: the first such place at
        // or above `raw_ipa` (Linux's 0 goes at `raw_ipa` itself; the test
        // images, linked at 0x4020_0000, say 0x20_0000 from the RAM base).
        // image_size (0 in kernels before 3.17: then the file's size)
        // includes the BSS.
        const ALIGN: u64 = 2 << 20;
        let text_offset = u64_at(bytes, 8)?;
        let image_size = u64_at(bytes, 16)?.max(bytes.len() as u64);
        let ipa = raw_ipa + (text_offset.wrapping_sub(raw_ipa) % ALIGN);
        check(ipa, image_size)?;
        let seg = Segment { ipa, data: bytes, mem_size: image_size };
        let kind = ImageKind::Arm64Image;
        return Ok(GuestImage { entry: ipa, segments: alloc::vec![seg], kind });
    }
    if !bytes.starts_with(b"\x7fELF") {
        check(raw_ipa, bytes.len() as u64)?;
        let seg = Segment { ipa: raw_ipa, data: bytes, mem_size: bytes.len() as u64 };
        let kind = if u32_at(bytes, 0x24).ok() == Some(ZIMAGE_MAGIC) {
            ImageKind::ZImage
        } else {
            ImageKind::Raw
        };
        return Ok(GuestImage { entry: raw_ipa, segments: alloc::vec![seg], kind });
    }
    // ELFCLASS64, little endian, ET_EXEC, EM_AARCH64 (183).
    if bytes.get(4) != Some(&2)
        || bytes.get(5) != Some(&1)
        || u16_at(bytes, 16)? != 2
        || u16_at(bytes, 18)? != 183
    {
        return Err(ImageError::NotAarch64Elf);
    }
    let entry = u64_at(bytes, 24)?;
    let phoff = usize::try_from(u64_at(bytes, 32)?).map_err(|_| ImageError::Truncated)?;
    let phentsize = usize::from(u16_at(bytes, 54)?);
    let phnum = usize::from(u16_at(bytes, 56)?);
    if phentsize < 56 {
        return Err(ImageError::Truncated);
    }
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i.checked_mul(phentsize).ok_or(ImageError::Truncated)?)
            .ok_or(ImageError::Truncated)?;
        if u32_at(bytes, ph)? != 1 {
            continue; // not PT_LOAD
        }
        let offset = usize::try_from(u64_at(bytes, ph + 8)?).map_err(|_| ImageError::Truncated)?;
        let paddr = u64_at(bytes, ph + 24)?;
        let filesz = usize::try_from(u64_at(bytes, ph + 32)?).map_err(|_| ImageError::Truncated)?;
        let memsz = u64_at(bytes, ph + 40)?;
        if (filesz as u64) > memsz {
            return Err(ImageError::Truncated);
        }
        let data = bytes
            .get(offset..offset.checked_add(filesz).ok_or(ImageError::Truncated)?)
            .ok_or(ImageError::Truncated)?;
        if memsz == 0 {
            continue;
        }
        check(paddr, memsz)?;
        segments.push(Segment { ipa: paddr, data, mem_size: memsz });
    }
    if !segments.iter().any(|s| entry >= s.ipa && entry - s.ipa < s.mem_size) {
        return Err(ImageError::BadEntry(entry));
    }
    Ok(GuestImage { entry, segments, kind: ImageKind::Elf })
}

/// Parses `bytes` as firmware for a VM's flash: a raw image placed at
/// `base` and entered at its first byte, at most `max` bytes (one flash
/// bank). Whatever the image's header says (U-Boot's arm64 build carries
/// none, its ARM build starts with its vector table) it is not moved:
/// firmware is linked where the machine's flash is.
pub fn parse_firmware(bytes: &[u8], base: u64, max: u64) -> Result<GuestImage<'_>, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let size = bytes.len() as u64;
    if size > max {
        return Err(ImageError::FirmwareTooBig { size, max });
    }
    let seg = Segment { ipa: base, data: bytes, mem_size: size };
    Ok(GuestImage { entry: base, segments: alloc::vec![seg], kind: ImageKind::Firmware })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: u64 = 0x4020_0000;
    const HI: u64 = 0x4800_0000;

    /// A minimal ELF64 AArch64 executable with the given PT_LOAD segments
    /// (paddr, file bytes, memsz).
    fn elf(entry: u64, segs: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64u64;
        let data_off = phoff + 56 * segs.len() as u64;
        let mut f = alloc::vec![0u8; data_off as usize];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&183u16.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&phoff.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        let mut off = data_off;
        for (i, (paddr, data, memsz)) in segs.iter().enumerate() {
            let ph = (phoff + 56 * i as u64) as usize;
            f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
            f[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
            f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
            f[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            f[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
            off += data.len() as u64;
        }
        for (_, data, _) in segs {
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn raw_images_go_at_the_load_address() {
        let img = parse(&[1, 2, 3], LO, LO, HI).unwrap();
        assert_eq!(img.entry, LO);
        assert_eq!(img.segments, [Segment { ipa: LO, data: &[1, 2, 3], mem_size: 3 }]);
        assert_eq!(img.kind, ImageKind::Raw);
        assert_eq!(parse(&[], LO, LO, HI), Err(ImageError::Empty));
        let big = alloc::vec![0u8; (HI - LO) as usize + 1];
        assert_eq!(parse(&big, LO, LO, HI), Err(ImageError::OutsideRam { ipa: LO }));
    }

    #[test]
    fn elf_segments_and_entry() {
        let f = elf(0x4030_0010, &[(0x4030_0000, &[9; 32], 0x2000), (0x4040_0000, &[7; 8], 8)]);
        let img = parse(&f, LO, LO, HI).unwrap();
        assert_eq!(img.kind, ImageKind::Elf);
        assert_eq!(img.entry, 0x4030_0010);
        assert_eq!(img.segments.len(), 2);
        assert_eq!(img.segments[0], Segment { ipa: 0x4030_0000, data: &[9; 32], mem_size: 0x2000 });
        assert_eq!(img.segments[1].data, &[7; 8]);
    }

    #[test]
    fn bad_elf_files_are_refused() {
        // Entry outside every segment.
        let f = elf(0x4100_0000, &[(0x4030_0000, &[1; 4], 4)]);
        assert_eq!(parse(&f, LO, LO, HI), Err(ImageError::BadEntry(0x4100_0000)));
        // A segment below the allowed range (over the DTB) or past RAM.
        let f = elf(0x4000_0000, &[(0x4000_0000, &[1; 4], 4)]);
        assert_eq!(parse(&f, LO, LO, HI), Err(ImageError::OutsideRam { ipa: 0x4000_0000 }));
        let f = elf(HI - 4, &[(HI - 4, &[1; 4], 8)]);
        assert_eq!(parse(&f, LO, LO, HI), Err(ImageError::OutsideRam { ipa: HI - 4 }));
        // Not AArch64, truncated headers, file size past the end.
        let mut f = elf(0x4030_0000, &[(0x4030_0000, &[1; 4], 4)]);
        f[18] = 62;
        assert_eq!(parse(&f, LO, LO, HI), Err(ImageError::NotAarch64Elf));
        assert_eq!(parse(b"\x7fELF\x02\x01", LO, LO, HI), Err(ImageError::Truncated));
        let mut f = elf(0x4030_0000, &[(0x4030_0000, &[1; 4], 4)]);
        let n = f.len();
        f.truncate(n - 2);
        assert_eq!(parse(&f, LO, LO, HI), Err(ImageError::Truncated));
    }

    /// An arm64 `Image` header: `text_offset`, `image_size`.
    fn arm64_image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut b = alloc::vec![0u8; len];
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(&ARM64_MAGIC.to_le_bytes());
        b
    }

    #[test]
    fn arm64_images_honour_text_offset_and_image_size() {
        let b = arm64_image(0x8_0000, 0x40_0000, 4096);
        let img = parse(&b, 0x4020_0000, 0x4000_0000, 0x5000_0000).unwrap();
        assert_eq!(img.kind, ImageKind::Arm64Image);
        assert_eq!(img.entry, 0x4028_0000);
        assert_eq!(img.segments[0].mem_size, 0x40_0000, "room for the BSS");
        // image_size 0 (before Linux 3.17): the file's size.
        let b = arm64_image(0, 0, 8192);
        let img = parse(&b, 0x4020_0000, 0x4000_0000, 0x5000_0000).unwrap();
        assert_eq!((img.entry, img.segments[0].mem_size), (0x4020_0000, 8192));
        // text_offset 2 MiB (the test images): at 2 MiB from the RAM base,
        // the load address itself.
        let b = arm64_image(0x20_0000, 0, 4096);
        let img = parse(&b, 0x4020_0000, 0x4000_0000, 0x5000_0000).unwrap();
        assert_eq!(img.entry, 0x4020_0000);
        // An image_size past RAM is refused.
        let b = arm64_image(0, 0x2000_0000, 4096);
        assert!(matches!(
            parse(&b, 0x4020_0000, 0x4000_0000, 0x5000_0000),
            Err(ImageError::OutsideRam { .. })
        ));
    }

    #[test]
    fn zimages_are_raw_and_recognised() {
        let mut b = alloc::vec![0u8; 4096];
        b[0x24..0x28].copy_from_slice(&ZIMAGE_MAGIC.to_le_bytes());
        let img = parse(&b, 0x4020_0000, 0x4000_0000, 0x5000_0000).unwrap();
        assert_eq!((img.kind, img.entry), (ImageKind::ZImage, 0x4020_0000));
    }

    #[test]
    fn firmware_goes_at_the_flash_base_whole() {
        let img = parse_firmware(&[7; 100], 0, 4096).unwrap();
        assert_eq!((img.kind, img.entry), (ImageKind::Firmware, 0));
        assert_eq!(img.segments, [Segment { ipa: 0, data: &[7; 100], mem_size: 100 }]);
        // An arm64 header does not move it.
        let b = arm64_image(0x8_0000, 0x40_0000, 4096);
        let img = parse_firmware(&b, 0, 1 << 20).unwrap();
        assert_eq!((img.entry, img.segments[0].mem_size), (0, 4096));
        assert_eq!(parse_firmware(&[], 0, 4096), Err(ImageError::Empty));
        assert_eq!(
            parse_firmware(&[0; 4097], 0, 4096),
            Err(ImageError::FirmwareTooBig { size: 4097, max: 4096 })
        );
    }
}
