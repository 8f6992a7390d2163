//! Keeping a page's aliases coherent: Linux's `make_coherent()` and
//! `adjust_pte()` (`arch/arm/mm/fault-armv.c`, in its form after Qi Zheng's
//! `pte_offset_map_rw_nolock()` series and the 2025 fix), for a physical
//! page mapped at several IPAs, in one address space or in several.
//!
//! On a fault that maps a tracked page, with the faulting table's lock
//! held, [`make_coherent`] visits the page's other mappings (from the
//! [`Rmap`]) and adjusts each: reach its pmd locklessly, read
//! its table with `pte_offset_map_rw_nolock`, take the table's lock unless
//! it is the lock already held, recheck `pmd_same` (retry if the pmd
//! changed, skip if no table is left), check the entry still maps the page,
//! and rewrite it with break-before-make, cleaning the page to the point
//! of coherency when its memory type changes and invalidating the alias's
//! IPA for the alias's VMID. Only locks taken here are released. If any
//! alias maps the page, the faulting entry is adjusted too.
//!
//! Which lock is "already held" is decided from the held guard itself
//! (the lock a [`PteMapLock`] holds, compared with the alias's) and never
//! from optional caller state: the 2025 Linux fix, after a caller without
//! a fault context made the old `ptl != vmf->ptl` test dereference
//! nothing. A caller holding no lock uses [`Stage2::adjust_aliases`],
//! which takes every lock itself, one at a time.
//!
//! Deadlock: a second page-table lock is taken while one is held only
//! here. It is taken waiting only in address order (the alias's lock above
//! the held one); against the order it is only tried, and an alias whose
//! lock is busy is *deferred*: counted in [`Coherence::deferred`] for the
//! caller to finish with [`Stage2::adjust_aliases`] once it has unlocked.
//! No other path holds a level-3 table lock while waiting for another, and
//! the reverse map's lock is a leaf, so no cycle can form.
//!
//! The policy belongs to the caller: `adjust` maps an alias's attributes
//! to what they must become (Normal Non-cacheable, read-only, ...).

use crate::addr::{Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::desc::{Attrs, Desc, Pte};
use crate::error::Error;
use crate::memory::TableMemory;
use crate::pgtable::PteMapLock;
use crate::rmap::{Mapping, Rmap};
use crate::stage2::Stage2;
use crate::sync::{lock, try_lock, Ordering, PtLock};
use crate::tlb::TlbMaintenance;
use crate::write::EntrySlot;

/// The coherency policy gave attributes that cannot be encoded.
const POLICY_UNENCODABLE: Error =
    Error::BadAttributes { why: "the coherency policy's attributes cannot be encoded" };

/// Data-cache maintenance by physical address, implemented by the
/// architecture (`DC CIVAC` on AArch64, `DCCIMVAC` on ARMv7) and on the
/// host by a recorder.
pub trait CacheMaintenance {
    /// Cleans and invalidates `[pa, pa + len)` to the point of coherency,
    /// and waits for it to complete.
    fn clean_inval_poc(&self, pa: PhysAddr, len: u64);
}

/// What [`make_coherent`] or [`Stage2::adjust_aliases`] did.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Coherence {
    /// Aliases found still mapping the page (not counting the faulting
    /// entry).
    pub aliases: u32,
    /// Entries rewritten, the faulting entry included (an entry that
    /// already had the adjusted attributes is not rewritten).
    pub adjusted: u32,
    /// Recorded mappings passed over: unmapped or remapped meanwhile, their
    /// table collapsed or gone, mapped by a block, or attributes `adjust`
    /// turned into ones that cannot be encoded.
    pub skipped: u32,
    /// Times an alias's pmd changed between the lockless read and the lock
    /// (`pmd_same` failed), so its table was looked up again.
    pub retries: u32,
    /// Aliases whose lock was busy and could not be waited for (see the
    /// module documentation): left for [`Stage2::adjust_aliases`].
    pub deferred: u32,
}

/// How one alias visit ended.
enum Visit {
    /// The entry maps the page; whether it was rewritten.
    Mapped(bool),
    Skipped,
    Deferred,
}

/// The rewrite shared by both entry points: the policy and the cache.
struct Adjust<'c, C: CacheMaintenance> {
    adjust: &'c dyn Fn(&Attrs) -> Attrs,
    cache: &'c C,
    pa: PhysAddr,
}

impl<C: CacheMaintenance> Adjust<'_, C> {
    /// The adjusted entry for `old`, if it maps the page and the policy's
    /// attributes can be encoded.
    fn new_entry<M: TableMemory, T: TlbMaintenance>(
        &self,
        s2: &Stage2<'_, M, T>,
        old: Pte,
    ) -> Option<Pte> {
        if !(old.is_leaf(3) && old.addr() == self.pa) {
            return None;
        }
        let attrs = (self.adjust)(&old.attrs(&s2.geo));
        (attrs.validate(&s2.geo).is_ok() && !attrs.contiguous)
            .then(|| old.with_attrs(&s2.geo, &attrs))
    }

    /// Rewrites the entry at `at` (its lock held): break-before-make with
    /// the page cleaned to the PoC between break and make when the memory
    /// type changes, in place when only permissions do; the TLB
    /// maintenance completes before returning. Whether anything changed.
    fn rewrite<M: TableMemory, T: TlbMaintenance>(
        &self,
        s2: &Stage2<'_, M, T>,
        at: EntrySlot<'_>,
        old: Pte,
        new: Pte,
    ) -> bool {
        if new == old {
            return false;
        }
        let memory_type_changes = old.attrs(&s2.geo).mem != new.attrs(&s2.geo).mem;
        let mut batch = s2.tlb_batch();
        // The same page: it is recorded already, so the write cannot fail.
        let written = s2.write_entry_with(at, old, new, &mut batch, || {
            if memory_type_changes {
                // No TLB maps the page through this entry any more: no
                // line can be refilled through the old attributes.
                self.cache.clean_inval_poc(self.pa, PAGE_SIZE);
            }
        });
        batch.flush();
        written.is_ok()
    }

    /// Linux's `adjust_pte()`: the mapping of the page at `ipa` in `s2`,
    /// with `held` the page-table lock the caller holds (if any).
    fn adjust_pte<M: TableMemory, T: TlbMaintenance>(
        &self,
        s2: &Stage2<'_, M, T>,
        ipa: Ipa,
        held: Option<&PtLock>,
        out: &mut Coherence,
    ) -> Visit {
        let rcu = s2.rcu.read_lock();
        // Lockless, inside the RCU section: the level-2 table stays valid.
        let Some(pmd) = s2.pmd_lookup(&rcu, ipa) else { return Visit::Skipped };
        loop {
            // No table (a block now, or gone): nothing maps the page here.
            let Some(pte) = s2.pte_offset_map_rw_nolock(&pmd) else { return Visit::Skipped };
            s2.alias_hook();
            let ptl = pte.ptl();
            let _taken = match held {
                // The same lock (the same table under split locks, the same
                // space under one lock): held already, taking it again
                // would deadlock.
                Some(h) if core::ptr::eq(h, ptl) => None,
                // In address order: safe to wait.
                Some(h) if (ptl as *const PtLock) > (h as *const PtLock) => Some(lock(ptl)),
                Some(_) => match try_lock(ptl) {
                    Some(g) => Some(g),
                    None => return Visit::Deferred,
                },
                None => Some(lock(ptl)),
            };
            if !pte.pmd_unchanged() && !s2.skip_pmd_recheck() {
                // Collapsed, detached or replaced since the lockless read:
                // unlock (dropping `_taken`) and look again.
                out.retries += 1;
                continue;
            }
            // Under the lock, with the pmd rechecked: the table is attached
            // and its entries are ours to change.
            let Ok(at) = pte.entry_slot(ipa) else { return Visit::Skipped };
            let old = Desc::from_bits(at.slot.load(Ordering::Relaxed));
            return match self.new_entry(s2, old) {
                Some(new) => Visit::Mapped(self.rewrite(s2, at, old, new)),
                None => Visit::Skipped,
            };
        }
    }

    /// Visits every recorded mapping of the page except `own`, in `own`'s
    /// space or in `spaces`.
    fn visit_aliases<M: TableMemory, T: TlbMaintenance>(
        &self,
        own: (&Stage2<'_, M, T>, Ipa),
        spaces: &[&Stage2<'_, M, T>],
        held: Option<&PtLock>,
        out: &mut Coherence,
    ) -> Result<(), Error> {
        let (s2, ipa) = own;
        let rmap = s2.rmap.ok_or(Error::NoReverseMap)?;
        let maps = rmap.mappings(self.pa);
        // Every space must be known and share the reverse map before
        // anything changes.
        for m in maps.iter() {
            if m.vmid != s2.vmid {
                let unknown = Error::UnknownSpace { vmid: m.vmid };
                let other = space_of(spaces, m.vmid).ok_or(unknown)?;
                if !other.rmap.is_some_and(|r| core::ptr::eq(r, rmap)) {
                    return Err(unknown);
                }
            }
        }
        for &Mapping { vmid, ipa: alias } in maps.iter() {
            if vmid == s2.vmid && alias == ipa {
                continue;
            }
            let space = if vmid == s2.vmid {
                s2
            } else {
                space_of(spaces, vmid).ok_or(Error::UnknownSpace { vmid })?
            };
            match self.adjust_pte(space, alias, held, out) {
                Visit::Mapped(changed) => {
                    out.aliases += 1;
                    out.adjusted += u32::from(changed);
                }
                Visit::Skipped => out.skipped += 1,
                Visit::Deferred => out.deferred += 1,
            }
        }
        Ok(())
    }
}

fn space_of<'s, 'a, M: TableMemory, T: TlbMaintenance>(
    spaces: &'s [&'s Stage2<'a, M, T>],
    vmid: Vmid,
) -> Option<&'s Stage2<'a, M, T>> {
    spaces.iter().copied().find(|s| s.vmid == vmid)
}

/// Linux's `make_coherent()`: called on the fault path right after the
/// page at `ipa` was mapped through `held` (whose lock is still held), it
/// adjusts the page's other mappings with `adjust` and, if there are any,
/// the faulting entry too. `spaces` are the other address spaces that may
/// map the page (the faulting one need not be among them); they must share
/// its [`Rmap`].
///
/// Errors, with nothing changed: `OutOfRange` (`ipa` not in `held`'s
/// table), `NotMapped` (it holds no page), `BadAttributes` (`adjust` gives
/// the faulting entry attributes that cannot be encoded), `NoReverseMap`,
/// `UnknownSpace` (a mapping in a space not in `spaces` or with another
/// reverse map).
///
/// Aliases whose lock was busy against the lock order are counted in
/// [`Coherence::deferred`]; the caller finishes them by calling
/// [`Stage2::adjust_aliases`] after dropping `held`.
pub fn make_coherent<M: TableMemory, T: TlbMaintenance, C: CacheMaintenance>(
    held: &mut PteMapLock<'_, M, T>,
    ipa: Ipa,
    spaces: &[&Stage2<'_, M, T>],
    adjust: &dyn Fn(&Attrs) -> Attrs,
    cache: &C,
) -> Result<Coherence, Error> {
    let s2 = held.stage2();
    let at = held.entry_slot(ipa)?;
    let old = Desc::from_bits(at.slot.load(Ordering::Relaxed));
    if !old.is_leaf(3) {
        return Err(Error::NotMapped { ipa });
    }
    let a = Adjust { adjust, cache, pa: old.addr() };
    // Validated before any alias changes.
    let new = a.new_entry(s2, old).ok_or(POLICY_UNENCODABLE)?;
    let mut out = Coherence::default();
    a.visit_aliases((s2, ipa), spaces, Some(held.ptl()), &mut out)?;
    if out.aliases > 0 {
        // Still under `held`: the entry is as read above.
        out.adjusted += u32::from(a.rewrite(s2, at, old, new));
    }
    Ok(out)
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<'_, M, T> {
    /// `make_coherent` without a fault context: the caller holds no
    /// page-table lock. Adjusts every other mapping of the page mapped at
    /// `ipa` and, if there is one, the mapping at `ipa` too, taking each
    /// table's lock in turn (never two at once). Also finishes what a
    /// [`make_coherent`] deferred.
    ///
    /// Errors, with nothing changed: `Unaligned`, `OutOfRange`,
    /// `NotMapped` (`ipa` is not mapped by a page), `BadAttributes`,
    /// `NoReverseMap`, `UnknownSpace` (as for [`make_coherent`]).
    pub fn adjust_aliases<C: CacheMaintenance>(
        &self,
        ipa: Ipa,
        spaces: &[&Stage2<'_, M, T>],
        adjust: &dyn Fn(&Attrs) -> Attrs,
        cache: &C,
    ) -> Result<Coherence, Error> {
        self.check_page_ipa(ipa)?;
        let not_mapped = Error::NotMapped { ipa };
        let old = {
            let rcu = self.rcu.read_lock();
            let pmd = self.pmd_lookup(&rcu, ipa).ok_or(not_mapped)?;
            let map = self.pte_offset_map(&pmd).ok_or(not_mapped)?;
            map.get_at(ipa)?
        };
        if !old.is_leaf(3) {
            return Err(not_mapped);
        }
        let a = Adjust { adjust, cache, pa: old.addr() };
        a.new_entry(self, old).ok_or(POLICY_UNENCODABLE)?;
        let mut out = Coherence::default();
        a.visit_aliases((self, ipa), spaces, None, &mut out)?;
        if out.aliases > 0 {
            let mut own = Coherence::default();
            if let Visit::Mapped(true) = a.adjust_pte(self, ipa, None, &mut own) {
                out.adjusted += 1;
            }
            out.retries += own.retries;
        }
        Ok(out)
    }

    /// Starts tracking the page mapped at `ipa` in the reverse map, with
    /// this mapping recorded: from now on every mapping of it is recorded,
    /// so [`make_coherent`] finds them. Returns the page. The page is
    /// charged to this space's quota unless it is tracked already.
    ///
    /// Errors, with nothing changed: `NoReverseMap`, `Unaligned`,
    /// `OutOfRange`, `NotMapped` (no page at `ipa`: unmapped or inside a
    /// block, which the caller splits first), `ReverseMapFull` (no slot),
    /// `QuotaExceeded` (this space's quota), `TooManyMappings` (the page's).
    pub fn track_page(&self, ipa: Ipa) -> Result<PhysAddr, Error> {
        self.track_at(ipa, false)
    }

    /// [`Stage2::track_page`] plus a hold on the page, in one step (see
    /// [`Rmap`]): for a mapping to come, such as an alias the guest has not
    /// touched yet. [`Rmap::unhold`] drops it.
    pub fn hold_page(&self, ipa: Ipa) -> Result<PhysAddr, Error> {
        self.track_at(ipa, true)
    }

    fn track_at(&self, ipa: Ipa, hold: bool) -> Result<PhysAddr, Error> {
        let rmap: &Rmap = self.rmap.ok_or(Error::NoReverseMap)?;
        self.check_page_ipa(ipa)?;
        let not_mapped = Error::NotMapped { ipa };
        let rcu = self.rcu.read_lock();
        let pmd = self.pmd_lookup(&rcu, ipa).ok_or(not_mapped)?;
        // Under the table's lock: the mapping cannot go (and be forgotten
        // by `unmap`) before it is recorded.
        let pte = self.pte_offset_map_lock(&pmd).ok_or(not_mapped)?;
        let e = pte.get_at(ipa)?;
        if !e.is_leaf(3) {
            return Err(not_mapped);
        }
        rmap.track(e.addr(), Mapping { vmid: self.vmid, ipa }, hold)?;
        Ok(e.addr())
    }
}
