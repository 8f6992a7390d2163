//! The errors of every stage-2 operation. An operation that returns one
//! has changed nothing.
//!
//! Each variant is one cause and carries what the caller needs to act on
//! it or report it: the address, the level, the entry that conflicted.
//! Code that only branches on the cause matches [`Error::kind`].

use core::fmt;

use crate::addr::{Ipa, PhysAddr, Vmid};
use crate::desc::Desc;
use crate::geometry::Level;

/// Why a stage-2 operation was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum Error {
    /// An address or size is not a multiple of the granule, or of the
    /// block size asked for.
    Unaligned {
        /// The offending address or size.
        value: u64,
        /// What it must be a multiple of.
        align: u64,
    },
    /// A range that wraps, is empty, or leaves the IPA or output space.
    OutOfRange {
        /// First address of the range.
        start: u64,
        /// Its size in bytes.
        size: u64,
        /// The end of the space it must lie in.
        limit: u64,
    },
    /// Something else is mapped in the range and the operation does not
    /// replace mappings.
    AlreadyMapped {
        /// The IPA where the conflicting entry maps.
        ipa: Ipa,
        /// The conflicting entry's level.
        level: Level,
        /// The entry found.
        existing: Desc,
    },
    /// The table allocator had no pages left.
    OutOfMemory {
        /// Table pages the operation asked for.
        pages: usize,
    },
    /// The reverse map has no free slot for another tracked page.
    ReverseMapFull {
        /// The page that could not be tracked.
        pa: PhysAddr,
    },
    /// The address space has as many tracked pages charged to it as its
    /// quota allows.
    QuotaExceeded {
        /// The address space.
        vmid: Vmid,
    },
    /// A tracked page has as many mappings (and holds) recorded as it can.
    TooManyMappings {
        /// The page.
        pa: PhysAddr,
    },
    /// Attributes or a descriptor that cannot be encoded, or make no sense.
    BadAttributes {
        /// What is wrong with them.
        why: &'static str,
    },
    /// A regime this crate does not support: IPA or output size, VMID
    /// width, or a level with no blocks.
    Unsupported {
        /// What is not supported.
        why: &'static str,
    },
    /// The operation needs a reverse map and the address space has none
    /// ([`Stage2::with_rmap`](crate::Stage2::with_rmap)).
    NoReverseMap,
    /// A page is mapped in an address space the caller did not pass, or
    /// one that records its mappings in another reverse map.
    UnknownSpace {
        /// That space's VMID.
        vmid: Vmid,
    },
    /// The entry is not a table (invalid or a leaf), or the path to it has
    /// no table at some level.
    NotATable {
        /// The IPA looked up.
        ipa: Ipa,
        /// The level of the entry found.
        level: Level,
        /// The entry found.
        found: Desc,
    },
    /// The entry is not a block (invalid or a table).
    NotABlock {
        /// The IPA looked up.
        ipa: Ipa,
        /// The level of the entry found.
        level: Level,
        /// The entry found.
        found: Desc,
    },
    /// A table whose entries cannot become one block.
    NotCollapsible {
        /// First IPA of the would-be block.
        ipa: Ipa,
        /// Its level.
        level: Level,
        /// Which condition failed.
        why: &'static str,
    },
    /// The IPA is not mapped by a page (it is unmapped, or inside a block).
    NotMapped {
        /// The IPA.
        ipa: Ipa,
    },
    /// The page is not tracked by the reverse map.
    NotTracked {
        /// The page.
        pa: PhysAddr,
    },
    /// The entry maps a tracked page, whose mapping only an unmap removes
    /// (it forgets the mapping once its removal is invalidated, and says
    /// who owns the page then).
    Tracked {
        /// The page.
        pa: PhysAddr,
    },
}

/// The cause of an [`Error`], without its context: what callers branch on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // One to one with `Error`'s variants.
pub enum ErrorKind {
    Unaligned,
    OutOfRange,
    AlreadyMapped,
    OutOfMemory,
    ReverseMapFull,
    QuotaExceeded,
    TooManyMappings,
    BadAttributes,
    Unsupported,
    NoReverseMap,
    UnknownSpace,
    NotATable,
    NotABlock,
    NotCollapsible,
    NotMapped,
    NotTracked,
    Tracked,
}

impl Error {
    /// The cause, without context.
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Error::Unaligned { .. } => ErrorKind::Unaligned,
            Error::OutOfRange { .. } => ErrorKind::OutOfRange,
            Error::AlreadyMapped { .. } => ErrorKind::AlreadyMapped,
            Error::OutOfMemory { .. } => ErrorKind::OutOfMemory,
            Error::ReverseMapFull { .. } => ErrorKind::ReverseMapFull,
            Error::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
            Error::TooManyMappings { .. } => ErrorKind::TooManyMappings,
            Error::BadAttributes { .. } => ErrorKind::BadAttributes,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::NoReverseMap => ErrorKind::NoReverseMap,
            Error::UnknownSpace { .. } => ErrorKind::UnknownSpace,
            Error::NotATable { .. } => ErrorKind::NotATable,
            Error::NotABlock { .. } => ErrorKind::NotABlock,
            Error::NotCollapsible { .. } => ErrorKind::NotCollapsible,
            Error::NotMapped { .. } => ErrorKind::NotMapped,
            Error::NotTracked { .. } => ErrorKind::NotTracked,
            Error::Tracked { .. } => ErrorKind::Tracked,
        }
    }

    /// Whether the operation failed for want of memory or of room in a
    /// bounded table, rather than because of its arguments or the tables'
    /// contents: the same request may succeed once memory is freed.
    pub const fn is_resource_exhausted(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::OutOfMemory
                | ErrorKind::ReverseMapFull
                | ErrorKind::QuotaExceeded
                | ErrorKind::TooManyMappings
        )
    }

    /// `Unaligned` unless `value` is a multiple of `align` (a power of two).
    pub(crate) const fn check_aligned(value: u64, align: u64) -> Result<(), Error> {
        if value & (align - 1) == 0 {
            Ok(())
        } else {
            Err(Error::Unaligned { value, align })
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Unaligned { value, align } => {
                write!(f, "{value:#x} is not a multiple of {align:#x}")
            }
            Error::OutOfRange { start, size, limit } => {
                write!(f, "range {start:#x}+{size:#x} is empty, wraps or ends beyond {limit:#x}")
            }
            Error::AlreadyMapped { ipa, level, existing } => {
                write!(f, "IPA {ipa} already mapped at level {level} by {existing:?}")
            }
            Error::OutOfMemory { pages } => {
                write!(f, "out of table memory ({pages} page(s) wanted)")
            }
            Error::ReverseMapFull { pa } => {
                write!(f, "reverse map has no free slot to track page {pa}")
            }
            Error::QuotaExceeded { vmid } => {
                write!(f, "VMID {} has its quota of tracked pages", vmid.0)
            }
            Error::TooManyMappings { pa } => {
                write!(f, "page {pa} has all the mappings it can record")
            }
            Error::BadAttributes { why } => write!(f, "invalid stage-2 attributes: {why}"),
            Error::Unsupported { why } => write!(f, "unsupported stage-2 configuration: {why}"),
            Error::NoReverseMap => f.write_str("the address space has no reverse map"),
            Error::UnknownSpace { vmid } => write!(
                f,
                "VMID {} maps the page but was not passed or uses another reverse map",
                vmid.0
            ),
            Error::NotATable { ipa, level, found } => {
                write!(f, "no table at level {level} for IPA {ipa} (found {found:?})")
            }
            Error::NotABlock { ipa, level, found } => {
                write!(f, "no block at level {level} for IPA {ipa} (found {found:?})")
            }
            Error::NotCollapsible { ipa, level, why } => {
                write!(f, "table at IPA {ipa} cannot become a level-{level} block: {why}")
            }
            Error::NotMapped { ipa } => write!(f, "IPA {ipa} is not mapped by a page"),
            Error::NotTracked { pa } => write!(f, "page {pa} is not tracked"),
            Error::Tracked { pa } => write!(f, "page {pa} is tracked: only an unmap removes it"),
        }
    }
}

impl core::error::Error for Error {}
