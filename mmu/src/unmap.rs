//! Unmap, handing every removed leaf to its owner in bounded memory.

use crate::addr::{Ipa, PhysAddr};
use crate::collapse::SplitPrepare;
use crate::desc::Desc;
use crate::error::Error;
use crate::geometry::{level_size, Level};
use crate::memory::TableMemory;
use crate::stage2::{Stage2, TableList};
use crate::tlb::TlbMaintenance;
use crate::walk::{Cursor, RunCursor, Step, TableCache, Visit, Visitor, WalkError};

/// A leaf an unmap removed: `size()` bytes at `pa`, which were mapped at
/// `ipa` (see [`Stage2::unmap_with`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Leaf {
    /// The IPA the leaf mapped.
    pub ipa: Ipa,
    /// The memory it mapped.
    pub pa: PhysAddr,
    /// Its level: 1 (1 GiB), 2 (2 MiB) or 3 (4 KiB).
    pub level: Level,
    /// Whether the memory is the caller's again: true unless it is a
    /// tracked page (see [`Rmap`](crate::Rmap)) that something else still
    /// maps or holds, whose last reference will own it instead.
    pub owned: bool,
}

impl Leaf {
    /// Bytes the leaf mapped.
    pub fn size(&self) -> u64 {
        level_size(self.level)
    }
}

/// Leaves an unmap removes between two reports: the walk pauses when it
/// has gathered this many, so an unmap of any size holds at most this many
/// (plus the detached tables, linked through their own metadata).
pub const UNMAP_GATHER: usize = 64;

/// The leaves an unmap removed and has not reported yet (Linux's
/// `mmu_gather`): a fixed array, so gathering allocates nothing.
pub(crate) struct LeafGather {
    leaves: [Leaf; UNMAP_GATHER],
    len: usize,
    /// Whether anyone is told: without a caller that wants the leaves and
    /// without a reverse map to forget them in, nothing is gathered.
    wanted: bool,
}

impl LeafGather {
    fn new(wanted: bool) -> Self {
        let none = Leaf { ipa: Ipa(0), pa: PhysAddr(0), level: 3, owned: false };
        Self { leaves: [none; UNMAP_GATHER], len: 0, wanted }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == UNMAP_GATHER
    }

    #[inline]
    pub(crate) fn push(&mut self, leaf: Leaf) {
        if self.wanted {
            self.leaves[self.len] = leaf;
            self.len += 1;
        }
    }

    /// Hands every gathered leaf to `hand` and empties the gather.
    fn report(&mut self, mut hand: impl FnMut(Leaf)) {
        for &leaf in &self.leaves[..self.len] {
            hand(leaf);
        }
        self.len = 0;
    }
}

/// Unmap, phase 2. Removed leaves are gathered (blocks and pages one by
/// one; whole level-3 tables on the detached list, their leaves in them)
/// and reported once their removal is invalidated; a full gather pauses
/// the walk for that.
struct UnmapCommit {
    cache: TableCache,
    detached: TableList,
    leaves: LeafGather,
}

impl UnmapCommit {
    /// Reports what was removed so far: the gathered leaves, then the
    /// leaves of each level-3 table detached whole. The caller has flushed
    /// the TLB batch.
    fn report<M: TableMemory, T: TlbMaintenance>(
        &mut self,
        s2: &Stage2<'_, M, T>,
        put: &mut dyn FnMut(Leaf),
    ) {
        self.leaves.report(|leaf| s2.hand_over(leaf, put));
        s2.hand_over_detached(&self.detached, put);
    }
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for UnmapCommit {
    const TAKES_RUNS: bool = true;

    /// Level-2 entries the range covers whole go in one pass.
    fn run(&mut self, cx: &mut RunCursor<'_, '_, M, T>) -> Result<u64, WalkError> {
        if cx.level != 2 || !cx.covers_entries() {
            return Ok(cx.start);
        }
        cx.clear_covered(&mut self.detached, &mut self.leaves)
    }

    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            // A level-3 table the range covers whole goes in one piece.
            if v.level == 2 && v.covers() {
                cx.detach_leaf_table(v.old, &mut self.detached)?;
                return Ok(Step::Next);
            }
            return Ok(Step::Descend);
        }
        if !v.old.is_valid() {
            return Ok(Step::Next);
        }
        if v.covers() {
            let leaf = v.old.is_leaf(v.level);
            if leaf && self.leaves.is_full() {
                return Err(WalkError::Pause);
            }
            cx.write(v.old, Desc::INVALID)?;
            if leaf {
                let (ipa, pa) = (Ipa(v.base), v.old.addr());
                self.leaves.push(Leaf { ipa, pa, level: v.level, owned: true });
            }
            return Ok(Step::Next);
        }
        cx.split(v.old, &mut self.cache)?;
        Ok(Step::Descend)
    }

    fn post(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<(), WalkError> {
        cx.free_if_empty(v.old, &mut self.detached)
    }
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<'_, M, T> {
    /// Unmaps `[ipa, ipa + size)`, splitting blocks the range cuts, and
    /// frees tables left empty (after a grace period). Unmapped holes are
    /// skipped. On return every removed entry has been invalidated in the
    /// TLBs, so the caller may reuse the pages. [`Stage2::unmap_with`]
    /// says which leaves went.
    pub fn unmap(&self, ipa: Ipa, size: u64) -> Result<(), Error> {
        self.unmap_reporting(ipa, size, None)
    }

    /// [`Stage2::unmap`], handing every leaf it removes to `put` (Linux's
    /// `put_page` after `zap_pte_range`): a block as one leaf, a page as
    /// one, each exactly once. A leaf is handed over only after its
    /// removal has been invalidated in the TLBs and forgotten by the
    /// reverse map, and outside every page-table lock and RCU section, so
    /// `put` may free or reuse its memory at once when [`Leaf::owned`]
    /// says it is the caller's (it must not call back into this address
    /// space's unmap on the same range). With a reverse map, a tracked page
    /// still mapped or held elsewhere comes with `owned` false: the one
    /// that drops its last reference gets it, exactly once.
    ///
    /// Bounded memory, whatever the range: the walk gathers at most
    /// [`UNMAP_GATHER`] leaves, then stops, flushes the TLB batch, reports
    /// them and resumes. Level-3 tables the range covers whole are detached
    /// in one piece and their leaves reported from the detached table.
    ///
    /// If the unmap fails part way (`OutOfMemory`: a concurrent change made
    /// it split more blocks than it prepared for), what it removed before
    /// failing is still reported.
    pub fn unmap_with(&self, ipa: Ipa, size: u64, put: &mut dyn FnMut(Leaf)) -> Result<(), Error> {
        self.unmap_reporting(ipa, size, Some(put))
    }

    /// Unmap, reporting to `put` if there is one. With no `put` and no
    /// reverse map nobody needs the leaves: none is gathered or reported.
    fn unmap_reporting(
        &self,
        ipa: Ipa,
        size: u64,
        mut put: Option<&mut dyn FnMut(Leaf)>,
    ) -> Result<(), Error> {
        let end = self.check_range(ipa, size)?;
        let wanted = put.is_some() || self.rmap.is_some();
        let mut batch = self.tlb_batch();
        let mut prep = SplitPrepare { needed: 0, change: None };
        self.walk_range(ipa.get(), end, &mut prep, &mut batch)?;
        let cache = TableCache::fill(self, prep.needed)?;

        let mut commit =
            UnmapCommit { cache, detached: TableList::default(), leaves: LeafGather::new(wanted) };
        let mut from = ipa.get();
        let result = loop {
            let (reached, result) = self.walk_until(from, end, &mut commit, &mut batch);
            // Invalidate before the leaves go back to the caller and the
            // detached tables can be freed and reused.
            batch.flush();
            if wanted {
                commit.report(self, put.as_mut().map_or(&mut |_| {}, |p| &mut **p));
            }
            self.defer_free(&mut commit.detached);
            match result {
                Ok(()) if reached < end => {
                    debug_assert!(reached > from, "a paused unmap makes progress");
                    from = reached;
                }
                done => break done,
            }
        };
        commit.cache.release(self);
        drop(batch);
        self.reclaim();
        result
    }
}
