//! Stage-2 translation tables for an AArch64 and ARM32 hypervisor.
//!
//! Portable and `no_std`: the formats (VMSAv8-64 and ARMv7 LPAE, 4 KiB
//! granule), one generic walker, Linux's `pte_offset_map` accessors with
//! their contract in types, split and single page-table locks, RCU for
//! lockless walkers, and the TLB-maintenance policy. Memory, TLB and CPU
//! specifics come in through traits ([`TableMemory`], [`TlbMaintenance`]),
//! so everything here is tested on the host.
//!
//! Start with [`Stage2`] (an address space), then [`pgtable`] (the
//! accessors) and `docs/ARCHITECTURE.md` for the locking and RCU rules.
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
pub use map::Granularity;
pub use memory::{Entry, PtDesc, TableMemory};
pub use protect::Perms;
pub use rcu::{Rcu, RcuReadGuard};
pub use rmap::{Mapping, Mappings, Rmap};
pub use stage2::{LockMode, Stage2, Stats};
pub use sync::{PtLock, PtLockGuard};
pub use tlb::{TlbBatch, TlbMaintenance, TlbScope, MAX_PER_ENTRY_OPS};
pub use unmap::{Leaf, UNMAP_GATHER};
