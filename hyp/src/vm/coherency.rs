//! Keeping a frame's mappings coherent under the machine's policy: `nc`
//! makes every mapping of an aliased page Normal Non-cacheable, `ro`
//! leaves one mapping at a time writable. Applied by `mmu::make_coherent`
//! on the fault that maps an alias, under the lock of the level-3 table
//! the alias was mapped with (Linux's `update_mmu_cache` contract).

use core::sync::atomic::{AtomicU64, Ordering};

use mmu::pgtable::PteMapLock;
use mmu::{make_coherent, Attrs, Coherence, Ipa};

use super::{Vm, VmStats, S2};
use crate::machine::Machine;
use crate::platform::Coherency;

/// `nc`: every mapping of an aliased page Normal Non-cacheable, so that
/// no mapping reads a line another mapping's writes have not reached.
pub(super) fn non_cacheable(a: &Attrs) -> Attrs {
    Attrs { mem: mmu::MemType::NormalNc, ..*a }
}

/// `ro`: every mapping of an aliased page read-only; a write faults and
/// makes its own mapping the one writable mapping.
pub(super) fn read_only(a: &Attrs) -> Attrs {
    Attrs { write: false, ..*a }
}

/// The locked level-3 table of a VM's stage 2.
type Locked<'g, M> = PteMapLock<'g, &'static <M as Machine>::Tables, &'static <M as Machine>::Tlb>;

impl<M: Machine> Vm<M> {
    /// The coherency policy as `make_coherent` takes it: the attributes an
    /// alias gets.
    pub(super) fn policy_adjust(&self) -> fn(&Attrs) -> Attrs {
        match self.guests.coherency {
            Coherency::Nc => non_cacheable,
            Coherency::Ro => read_only,
        }
    }

    /// `make_coherent` for the alias just mapped at `page` through `pte`
    /// (its table still locked): the policy is applied to every mapping
    /// of the frame, in every VM. The aliases whose lock was busy against
    /// the lock order are finished once `pte` is dropped, by
    /// [`Vm::finish_coherence`]. Counts what it did; errors are logged
    /// (the guest runs on, its mappings as they are).
    pub(super) fn make_coherent(&self, pte: &mut Locked<'_, M>, page: u64) -> Option<Coherence> {
        VmStats::bump(&self.stats.coherency_faults);
        let spaces: alloc::vec::Vec<&S2<M>> = self.guests.spaces();
        let cache = self.machine().cache();
        match make_coherent(pte, Ipa(page), &spaces, &self.policy_adjust(), cache) {
            Ok(c) => Some(c),
            Err(e) => {
                self.warn(format_args!("make_coherent at {page:#x}: {e}"));
                None
            }
        }
    }

    /// What [`Vm::make_coherent`] deferred, done with no table lock held,
    /// and the counts.
    pub(super) fn finish_coherence(&self, page: u64, mut c: Coherence) {
        if c.deferred > 0 {
            // Their locks were busy against the lock order: now that none
            // is held, take each in turn.
            let (spaces, cache) = (self.guests.spaces(), self.machine().cache());
            match self.s2.adjust_aliases(Ipa(page), &spaces, &self.policy_adjust(), cache) {
                Ok(d) => {
                    c.adjusted += d.adjusted;
                    c.skipped += d.skipped;
                    c.retries += d.retries;
                }
                Err(e) => self.warn(format_args!("adjust_aliases at {page:#x}: {e}")),
            }
        }
        self.count_coherence(&c);
    }

    /// Adds what a coherency pass did to the VM's counters.
    pub(super) fn count_coherence(&self, c: &Coherence) {
        let add = |a: &AtomicU64, n: u32| a.fetch_add(u64::from(n), Ordering::Relaxed);
        add(&self.stats.adjusted, c.adjusted);
        add(&self.stats.skipped, c.skipped);
        add(&self.stats.retries, c.retries);
        add(&self.stats.deferred, c.deferred);
    }
}
