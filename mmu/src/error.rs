//! The errors of every stage-2 operation. An operation that returns one
//! has changed nothing.

use core::fmt;

/// Why a stage-2 operation was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Error {
    /// An address or size is not aligned to the granule (or to the block
    /// size asked for).
    Unaligned,
    /// An address range wraps, is empty, or leaves the IPA or PA space.
    OutOfRange,
    /// The range is already mapped (to something else) and the operation
    /// does not replace mappings.
    AlreadyMapped,
    /// The page allocator ran out of table pages.
    OutOfMemory,
    /// The reverse map has no room: every slot taken, the address space's
    /// quota of tracked pages reached, or a page's mappings all recorded.
    ReverseMapFull,
    /// Attributes that cannot be encoded or make no sense (executable device
    /// memory, split XN without FEAT_XNX, software bits out of range).
    BadAttributes,
    /// An unsupported regime: IPA or PA size, VMID width; or a level this
    /// regime has no blocks at.
    BadConfig,
    /// The entry does not point at a table (it is invalid or a block), or
    /// the path to it has no table at some level.
    NotATable,
    /// The entry is not a block (it is invalid or a table).
    NotABlock,
    /// The table's entries cannot become one block: not all valid leaves,
    /// attributes that differ, or (in place) not one physically contiguous,
    /// aligned range.
    NotCollapsible,
    /// The IPA is not mapped by a page (it is unmapped, or inside a block).
    NotMapped,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Unaligned => "address or size not aligned",
            Error::OutOfRange => "address range out of bounds",
            Error::AlreadyMapped => "range already mapped",
            Error::OutOfMemory => "out of table memory",
            Error::ReverseMapFull => "reverse map full (slots, quota or mappings of a page)",
            Error::BadAttributes => "invalid stage-2 attributes",
            Error::BadConfig => "unsupported stage-2 configuration",
            Error::NotATable => "entry is not a table",
            Error::NotABlock => "entry is not a block",
            Error::NotCollapsible => "table cannot be collapsed into a block",
            Error::NotMapped => "not mapped by a page",
        })
    }
}
