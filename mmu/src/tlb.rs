//! TLB maintenance: what to invalidate is decided here, how is the
//! architecture's business (trait [`TlbMaintenance`], implemented in
//! `arch` with TLBI/DSB/ISB and on the host by a recorder).
//!
//! Rules (Arm ARM, "TLB maintenance requirements"):
//! - writing a valid entry over an invalid one needs no invalidation;
//! - changing or removing a valid entry needs the entry's IPA invalidated
//!   for the VMID, and afterwards the guest's stage-1 entries too, because
//!   combined stage 1+2 entries are tagged by VA, not IPA;
//! - break-before-make: an entry changing output address, memory type,
//!   shareability or size is first made invalid and invalidated, and only
//!   then written with its new value.
//!
//! A [`TlbBatch`] gathers the invalidations of one operation and issues
//! them once: per-entry by IPA with a level hint; as ranges with
//! FEAT_TLBIRANGE; the whole VMID when there are too many, or when the CPU
//! cannot invalidate by IPA (ARMv7), so that case never reaches the walk.

use crate::addr::{Ipa, Vmid, PAGE_SIZE};
use crate::geometry::{level_size, Level};
use crate::sync::{AtomicU64, Ordering};

/// The guest stage 2 a maintenance operation is for. TLB entries are
/// tagged by VMID, and the instructions act on the VMID in `VTTBR_EL2` (or
/// `VTTBR`): an implementation loads `vttbr` around them and restores the
/// previous value, so one maintenance object serves every address space.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct TlbScope {
    /// The address space's VMID.
    pub vmid: Vmid,
    /// Its `VTTBR` value: root table and VMID.
    pub vttbr: u64,
}

/// The TLB maintenance instructions, for one address space at a time
/// ([`TlbScope`]).
pub trait TlbMaintenance {
    /// Whether stage-2 entries can be invalidated by IPA (`TLBI IPAS2E1IS`;
    /// absent on ARMv7).
    fn has_ipa_invalidation(&self) -> bool;
    /// Whether range invalidation by IPA exists (FEAT_TLBIRANGE).
    fn has_range_invalidation(&self) -> bool;
    /// Makes preceding table writes visible to table walks (`DSB ISHST`).
    fn sync_tables(&self);
    /// Invalidates stage-2 entries for one IPA (`TLBI IPAS2E1IS`, or
    /// `IPAS2LE1IS` when `last_level`), `level` a TTL hint.
    fn invalidate_ipa(&self, scope: TlbScope, ipa: Ipa, level: Option<Level>, last_level: bool);
    /// Invalidates stage-2 entries for `pages` 4 KiB pages from `ipa`
    /// (`TLBI RIPAS2E1IS`); only called when ranges are supported.
    fn invalidate_ipa_range(&self, scope: TlbScope, ipa: Ipa, pages: u64, level: Option<Level>);
    /// Invalidates the guest's stage-1 (and combined) entries after IPA
    /// invalidations (`DSB ISH; TLBI VMALLE1IS`).
    fn invalidate_stage1(&self, scope: TlbScope);
    /// Invalidates every entry of the VMID, both stages
    /// (`TLBI VMALLS12E1IS`; ARMv7 `TLBIALLIS` with the VMID in VTTBR).
    fn invalidate_vmid(&self, scope: TlbScope);
    /// Waits for completion (`DSB ISH; ISB`).
    fn complete(&self);
}

/// A shared reference maintains as what it refers to, so an address space
/// can hold its TLB maintenance by value or borrow one many spaces share.
impl<T: TlbMaintenance + ?Sized> TlbMaintenance for &T {
    #[inline(always)]
    fn has_ipa_invalidation(&self) -> bool {
        (**self).has_ipa_invalidation()
    }
    #[inline(always)]
    fn has_range_invalidation(&self) -> bool {
        (**self).has_range_invalidation()
    }
    #[inline(always)]
    fn sync_tables(&self) {
        (**self).sync_tables()
    }
    #[inline(always)]
    fn invalidate_ipa(&self, scope: TlbScope, ipa: Ipa, level: Option<Level>, last_level: bool) {
        (**self).invalidate_ipa(scope, ipa, level, last_level)
    }
    #[inline(always)]
    fn invalidate_ipa_range(&self, scope: TlbScope, ipa: Ipa, pages: u64, level: Option<Level>) {
        (**self).invalidate_ipa_range(scope, ipa, pages, level)
    }
    #[inline(always)]
    fn invalidate_stage1(&self, scope: TlbScope) {
        (**self).invalidate_stage1(scope)
    }
    #[inline(always)]
    fn invalidate_vmid(&self, scope: TlbScope) {
        (**self).invalidate_vmid(scope)
    }
    #[inline(always)]
    fn complete(&self) {
        (**self).complete()
    }
}

/// More per-entry invalidations than this in one batch become one
/// whole-VMID invalidation (when ranges are not available).
pub const MAX_PER_ENTRY_OPS: u64 = 64;
/// Distinct runs a batch tracks before it gives up and flushes the VMID.
const MAX_RUNS: usize = 8;

/// Counters of TLB maintenance, per address space.
#[derive(Default)]
pub struct TlbStats {
    /// `TLBI IPAS2(L)E1IS` issued.
    pub by_ipa: AtomicU64,
    /// `TLBI RIPAS2E1IS` issued.
    pub by_range: AtomicU64,
    /// Whole-VMID invalidations issued.
    pub whole_vmid: AtomicU64,
    /// Stage-1 invalidations following IPA invalidations.
    pub stage1: AtomicU64,
}

/// A run of adjacent entries of one level and kind.
#[derive(Clone, Copy)]
struct Run {
    start: u64,
    /// Entries of `level_size(level)` bytes each.
    count: u64,
    level: Level,
    /// TTL hint passed to the instruction.
    hint: Option<Level>,
    last_level: bool,
}

/// Invalidations gathered for one operation on one VMID. Flushed by
/// [`TlbBatch::flush`] or on drop, so nothing is ever left pending.
pub struct TlbBatch<'a, T: TlbMaintenance> {
    tlb: &'a T,
    stats: &'a TlbStats,
    scope: TlbScope,
    runs: [Run; MAX_RUNS],
    nruns: usize,
    ops: u64,
    whole: bool,
}

impl<'a, T: TlbMaintenance> TlbBatch<'a, T> {
    /// An empty batch for the address space `scope`.
    pub(crate) fn new(tlb: &'a T, stats: &'a TlbStats, scope: TlbScope) -> Self {
        let empty = Run { start: 0, count: 0, level: 0, hint: None, last_level: false };
        Self { tlb, stats, scope, runs: [empty; MAX_RUNS], nruns: 0, ops: 0, whole: false }
    }

    /// Records that the valid entry at `level` for `ipa` was changed or
    /// removed. `last_level` is false when a table entry was removed, so
    /// cached walks through it go too.
    ///
    /// The level hint (TTL) names the level of the *leaf* a TLB may hold
    /// for the IPA. A changed leaf is that leaf; under a removed table
    /// entry the leaves may be cached at any deeper level, so a table entry
    /// gets no hint (as Linux's `TLBI_TTL_UNKNOWN`): a hint of the table's
    /// own level would let the CPU keep the leaves.
    pub fn add(&mut self, ipa: Ipa, level: Level, last_level: bool) {
        let hint = last_level.then_some(level);
        self.push(Run { start: ipa.get(), count: 1, level, hint, last_level });
    }

    /// Records that a table entry at `level` for `ipa` was removed together
    /// with the leaves under it: every page of its span must go, and the
    /// cached walks through it.
    pub fn add_span(&mut self, ipa: Ipa, level: Level) {
        let pages = level_size(level) / PAGE_SIZE;
        self.push(Run { start: ipa.get(), count: pages, level: 3, hint: None, last_level: false });
    }

    fn push(&mut self, new: Run) {
        self.ops += new.count;
        if self.whole {
            return;
        }
        let size = level_size(new.level);
        if let Some(r) = self.runs[..self.nruns].last_mut() {
            let same_kind =
                r.level == new.level && r.hint == new.hint && r.last_level == new.last_level;
            if same_kind && r.start + r.count * size == new.start {
                r.count += new.count;
                return;
            }
        }
        if self.nruns == MAX_RUNS {
            self.whole = true;
            return;
        }
        self.runs[self.nruns] = new;
        self.nruns += 1;
    }

    /// Whether anything is pending.
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// Issues the gathered invalidations and waits for them.
    #[inline]
    pub fn flush(&mut self) {
        if self.ops != 0 {
            self.issue();
        }
    }

    /// [`TlbBatch::flush`] with something to issue.
    #[inline(never)]
    fn issue(&mut self) {
        let t = self.tlb;
        let range = t.has_range_invalidation();
        let whole =
            self.whole || !t.has_ipa_invalidation() || (!range && self.ops > MAX_PER_ENTRY_OPS);
        t.sync_tables();
        if whole {
            t.invalidate_vmid(self.scope);
            self.stats.whole_vmid.fetch_add(1, Ordering::Relaxed);
        } else {
            for r in &self.runs[..self.nruns] {
                let hint = r.hint;
                if range && r.count > 1 {
                    let pages = r.count * level_size(r.level) / PAGE_SIZE;
                    t.invalidate_ipa_range(self.scope, Ipa(r.start), pages, hint);
                    self.stats.by_range.fetch_add(1, Ordering::Relaxed);
                } else {
                    for i in 0..r.count {
                        let ipa = Ipa(r.start + i * level_size(r.level));
                        t.invalidate_ipa(self.scope, ipa, hint, r.last_level);
                    }
                    self.stats.by_ipa.fetch_add(r.count, Ordering::Relaxed);
                }
            }
            t.invalidate_stage1(self.scope);
            self.stats.stage1.fetch_add(1, Ordering::Relaxed);
        }
        t.complete();
        self.nruns = 0;
        self.ops = 0;
        self.whole = false;
    }
}

impl<T: TlbMaintenance> Drop for TlbBatch<'_, T> {
    fn drop(&mut self) {
        self.flush();
    }
}
