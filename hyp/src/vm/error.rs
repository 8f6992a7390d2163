//! Why something a VM asked for, or the hypervisor did to a VM, failed.

use core::fmt;

use mmu::ErrorKind;

/// A failed VM operation; it changed nothing the guest can see.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// The stage-2 tables refused the change.
    Mmu(mmu::Error),
    /// The frame pool has no room for guest memory.
    NoFrames {
        /// Frames asked for.
        frames: usize,
    },
    /// The range does not lie in the VM's RAM.
    OutsideRam {
        /// First IPA.
        ipa: u64,
        /// Bytes.
        size: u64,
    },
    /// The range holds an alias or a shared page, which stay mapped page
    /// by page (no block over them, no collapse of them).
    Aliased {
        /// First IPA of the range.
        ipa: u64,
    },
    /// A VM description that cannot be built (id out of order, a VMID
    /// the regime cannot hold, no image to boot again from).
    BadSpec(&'static str),
    /// Racing faults, collapses or unmaps kept undoing the operation; the
    /// guest may ask again.
    Contended(&'static str),
}

impl Error {
    /// The `mmu` cause, if `mmu` refused.
    pub fn mmu_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Mmu(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// Whether memory or room in a bounded table ran out (the guest is
    /// told `NO_MEMORY`), rather than the request being wrong.
    pub fn is_resource_exhausted(&self) -> bool {
        match self {
            Error::Mmu(e) => e.is_resource_exhausted(),
            Error::NoFrames { .. } => true,
            _ => false,
        }
    }
}

impl From<mmu::Error> for Error {
    fn from(e: mmu::Error) -> Self {
        Error::Mmu(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Mmu(e) => write!(f, "{e}"),
            Error::NoFrames { frames } => write!(f, "no free frame for {frames} guest page(s)"),
            Error::OutsideRam { ipa, size } => {
                write!(f, "{ipa:#x}+{size:#x} is not in the VM's RAM")
            }
            Error::Aliased { ipa } => {
                write!(f, "the range at {ipa:#x} holds an alias or a shared page")
            }
            Error::BadSpec(why) => write!(f, "bad VM description: {why}"),
            Error::Contended(why) => write!(f, "gave up racing changes: {why}"),
        }
    }
}
