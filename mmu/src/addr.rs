//! Typed addresses and the 4 KiB-granule constants.

use core::fmt;

/// log2 of the translation granule (4 KiB).
pub const PAGE_SHIFT: u32 = 12;
/// Size of a page and of one translation table.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Entries in one 4 KiB translation table.
pub const ENTRIES_PER_TABLE: usize = 512;
/// Size of a level-2 block ("huge pmd").
pub const BLOCK_2M: u64 = 1 << 21;
/// Size of a level-1 block ("huge pud").
pub const BLOCK_1G: u64 = 1 << 30;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw address.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }

            /// Whether the address is a multiple of `align` (a power of two).
            #[inline]
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }

            /// Rounds down to a multiple of `align` (a power of two).
            #[inline]
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }

            /// Adds `off`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_type!(
    /// An intermediate physical address: what a guest believes is physical.
    Ipa,
    "IPA:"
);
address_type!(
    /// A (host) physical address: an output address of stage 2, or the
    /// location of a translation table.
    PhysAddr,
    "PA:"
);

/// A VMID tags a guest's TLB entries. 16 bits on AArch64 with
/// `VTCR_EL2.VS = 1`, 8 bits otherwise and on ARMv7.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub struct Vmid(pub u16);
