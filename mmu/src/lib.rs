//! Stage-2 translation tables for an AArch64 and ARM32 hypervisor.
//!
//! Portable and `no_std`: the formats (VMSAv8-64 and ARMv7 LPAE, 4 KiB
//! granule), one walker ([`walk`]) on which every operation is built, one
//! write path through which every change to a live entry goes
//! (break-before-make, valid counts, reverse-map records and TLB batching
//! in one place), Linux's `pte_offset_map` accessors with their contract
//! in types ([`pgtable`]), split and single page-table locks, RCU for
//! lockless walkers ([`rcu`]: a table taken out is freed after a grace
//! period), a reverse map that keeps a page's aliases coherent
//! ([`make_coherent`], Linux's `adjust_pte`), and the TLB-maintenance
//! policy. Memory, TLB, cache and CPU specifics come in through traits
//! ([`TableMemory`], [`TlbMaintenance`], [`CacheMaintenance`]), so
//! everything here runs and is tested on the host.
//!
//! # An address space on host memory
//!
//! The `testing` feature provides a page pool and a TLB that records what
//! it is asked to do; a hypervisor implements the traits over its frame
//! allocator and `TLBI`.
//!
//! ```
//! use mmu::testing::{HostMemory, RecordingTlb};
//! use mmu::{Attrs, Features, Geometry, Granularity, Ipa, LockMode, PhysAddr, Rcu, Stage2, Vmid};
//!
//! # fn main() -> Result<(), mmu::Error> {
//! let (mem, tlb) = (HostMemory::new(64), RecordingTlb::new());
//! // SAFETY: one thread uses this domain.
//! let rcu = unsafe { Rcu::new() };
//! // A 40-bit IPA space on a CPU with 48-bit physical addresses.
//! let geo = Geometry::aarch64(40, 48, Features::default())?;
//! let s2 = Stage2::new(geo, Vmid(1), LockMode::Split, &mem, &tlb, &rcu)?;
//!
//! // A guest touches 512 pages of a 2 MiB range: each fault maps a page.
//! let (ipa, pa) = (0x4000_0000, 0x8000_0000);
//! for i in 0..512 {
//!     let off = i * mmu::PAGE_SIZE;
//!     s2.map(Ipa(ipa + off), PhysAddr(pa + off), mmu::PAGE_SIZE, &Attrs::RAM, Granularity::Pages)?;
//! }
//! assert_eq!(s2.translate(Ipa(ipa + 0x1234)).unwrap().pa, PhysAddr(pa + 0x1234));
//!
//! // The range is populated with contiguous memory: one 2 MiB block can
//! // map it. The old table is freed after a grace period.
//! assert_eq!(s2.collapse_check(Ipa(ipa), 2)?, mmu::CollapseKind::InPlace);
//! s2.collapse(Ipa(ipa), 2)?;
//! assert_eq!(s2.translate(Ipa(ipa)).unwrap().level, 2);
//!
//! // Unmapping hands every leaf back to its owner once no TLB maps it.
//! let mut freed = Vec::new();
//! s2.unmap_with(Ipa(ipa), 2 << 20, &mut |leaf| freed.push((leaf.pa, leaf.size())))?;
//! assert_eq!(freed, [(PhysAddr(pa), 2 << 20)]);
//! s2.rcu_barrier();
//! assert_eq!(s2.stats().tables_pending, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Where to go next
//!
//! [`Stage2`] (an address space: map, unmap, protect, collapse, split,
//! dirty logging), [`walk`] (the walker, its locking and RCU rules),
//! [`pgtable`] (the accessors), [`rcu`] (the grace periods), [`Rmap`] and
//! [`make_coherent`] (aliases), [`Error`] (every refusal, with its
//! context). The crate's `README.md` gives the design in one page.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod addr;
mod coherent;
mod collapse;
mod desc;
mod dump;
mod error;
mod geometry;
mod lookup;
mod map;
mod memory;
pub mod pgtable;
mod protect;
pub mod rcu;
mod rmap;
mod stage2;
mod sync;
mod tlb;
mod unmap;
pub mod walk;
mod write;

#[cfg(feature = "testing")]
pub mod testing;

pub use addr::{Ipa, PhysAddr, Vmid, BLOCK_1G, BLOCK_2M, ENTRIES_PER_TABLE, PAGE_SHIFT, PAGE_SIZE};
pub use coherent::{make_coherent, CacheMaintenance, Coherence};
pub use collapse::{CollapseKind, Collapsed, CopyCollapsed};
pub use desc::{pmd_same, Attrs, Desc, Exec, MemType, Pmd, Pte, Shareability};
pub use error::{Error, ErrorKind};
pub use geometry::{level_shift, level_size, Arch, Features, Geometry, Level};
pub use lookup::Translation;
pub use map::{Granularity, PageProt};
pub use memory::{Entry, PtDesc, TableMemory};
pub use protect::Perms;
pub use rcu::{Rcu, RcuReadGuard};
pub use rmap::{Mapping, Mappings, Rmap};
pub use stage2::{LockMode, Stage2, Stats};
pub use sync::{PtLock, PtLockGuard};
pub use tlb::{TlbBatch, TlbMaintenance, TlbScope, MAX_PER_ENTRY_OPS};
pub use unmap::{Leaf, UNMAP_GATHER};
