//! Permissions and dirty logging: `HYP_PROTECT`, the write faults that
//! follow it, and the count of pages written since.

use mmu::{Attrs, ErrorKind, Exec, Granularity, Ipa, Perms};

use super::coherency::read_only;
use super::{Error, Vm, VmStats, PAGE};
use crate::machine::Machine;
use crate::platform::Coherency;

impl<M: Machine> Vm<M> {
    /// `HYP_PROTECT`: sets the permissions of `[ipa, ipa + size)` (bit 0 R,
    /// 1 W, 2 X). Aliased pages then get the coherency policy applied
    /// again (the new attributes are those of ordinary RAM).
    pub fn protect(&self, ipa: u64, size: u64, perms: u64) -> Result<(), Error> {
        let attrs = Attrs {
            read: perms & 1 != 0,
            write: perms & 2 != 0,
            exec: if perms & 4 != 0 { Exec::All } else { Exec::Never },
            ..Attrs::RAM
        };
        self.s2.protect(Ipa(ipa), size, &attrs)?;
        let rmap = &self.guests.rmap;
        if rmap.tracked() == 0 {
            return Ok(());
        }
        let (spaces, adjust, cache) =
            (self.guests.spaces(), self.policy_adjust(), self.machine().cache());
        let (mut from, end) = (Ipa(ipa), Ipa(ipa + size));
        // Only the aliased pages the reverse map records in the range.
        while let Some(at) = rmap.next_mapped(self.s2.vmid(), from, end) {
            match self.s2.adjust_aliases(at, &spaces, &adjust, cache) {
                Ok(c) => self.count_coherence(&c),
                // Unmapped meanwhile.
                Err(e) if e.kind() == ErrorKind::NotMapped => {}
                Err(e) => return Err(e.into()),
            }
            from = Ipa(at.get() + PAGE);
        }
        Ok(())
    }

    /// A write hit a write-protected page: count it and make the page
    /// writable again (dirty logging at page granularity: a block is split
    /// so that only the written page becomes writable). Under the `ro`
    /// policy a write to an aliased page write-protects its other mappings
    /// first, so that one mapping at a time is writable.
    pub fn write_fault(&self, ipa: u64) -> Result<(), Error> {
        VmStats::bump(&self.stats.perm_faults);
        let page = ipa & !(PAGE - 1);
        let rmap = &self.guests.rmap;
        let aliased =
            || self.s2.translate(Ipa(page)).is_some_and(|t| t.level == 3 && rmap.is_tracked(t.pa));
        // Held until this mapping is writable: a racing write fault on
        // another alias waits, then write-protects this one again.
        let _one_writer = if self.guests.coherency == Coherency::Ro && aliased() {
            let guard = self.guests.ro_writer.lock();
            VmStats::bump(&self.stats.coherency_faults);
            let (spaces, cache) = (self.guests.spaces(), self.machine().cache());
            match self.s2.adjust_aliases(Ipa(page), &spaces, &read_only, cache) {
                Ok(c) => self.count_coherence(&c),
                // Unmapped meanwhile: the guest faults again.
                Err(e) if e.kind() == ErrorKind::NotMapped => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            Some(guard)
        } else {
            None
        };
        let write = Perms { write: true, ..Perms::default() };
        match self.s2.relax_perms(Ipa(page), write, Granularity::Pages) {
            Ok(_) => Ok(()),
            // Unmapped meanwhile: the guest faults again.
            Err(e) if e.kind() == ErrorKind::NotMapped => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `HYP_DIRTY_COUNT`: pages of `[ipa, ipa + size)` mapped writable:
    /// after a protect to read-only, exactly the pages written since
    /// (dirty logging). One walk of the range, no memory.
    pub fn dirty_count(&self, ipa: u64, size: u64) -> Result<u64, Error> {
        Ok(self.s2.dirty_scan(Ipa(ipa), size, false)?)
    }
}
