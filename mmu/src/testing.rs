//! Host-side fakes for tests and benchmarks (feature `testing`): a pool of
//! table pages that counts them, detects double frees, poisons freed
//! pages, can keep freed pages out of circulation for a while
//! (quarantine) and fails on demand; and a TLB that records every call.

extern crate std;

use std::boxed::Box;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::vec;
use std::vec::Vec;

use crate::addr::{Ipa, PhysAddr, Vmid, ENTRIES_PER_TABLE, PAGE_SIZE};
use crate::coherent::CacheMaintenance;
use crate::geometry::Level;
use crate::memory::{PtDesc, TableMemory};
use crate::sync::{AtomicU64, Ordering};
use crate::tlb::{TlbMaintenance, TlbScope};

/// The value written over every entry of a freed page.
pub const POISON: u64 = 0xdead_0000_dead_0000;

#[repr(C, align(4096))]
struct Page([AtomicU64; ENTRIES_PER_TABLE]);

struct PoolState {
    in_use: Vec<bool>,
    live: usize,
    peak: usize,
    allocations: u64,
    fail_at: Option<u64>,
    next: usize,
    poison: bool,
    /// Freed pages not handed out again yet, oldest first (at most
    /// `quarantine_len`); `held[i]` marks them.
    quarantine: VecDeque<usize>,
    quarantine_len: usize,
    held: Vec<bool>,
}

/// A pool of host pages posing as physical memory at `base`.
pub struct HostMemory {
    base: u64,
    pages: Box<[Page]>,
    descs: Box<[PtDesc]>,
    state: Mutex<PoolState>,
}

impl HostMemory {
    /// Physical address of the first page of every pool (fits 40-bit PAs).
    pub const BASE: u64 = 0x40_0000_0000;

    /// A pool of `pages` table pages.
    pub fn new(pages: usize) -> Self {
        let pages_v: Vec<Page> =
            (0..pages).map(|_| Page(core::array::from_fn(|_| AtomicU64::new(0)))).collect();
        let descs: Vec<PtDesc> = (0..pages).map(|_| PtDesc::new()).collect();
        Self {
            base: Self::BASE,
            pages: pages_v.into_boxed_slice(),
            descs: descs.into_boxed_slice(),
            state: Mutex::new(PoolState {
                in_use: vec![false; pages],
                live: 0,
                peak: 0,
                allocations: 0,
                fail_at: None,
                next: 0,
                poison: true,
                quarantine: VecDeque::new(),
                quarantine_len: 0,
                held: vec![false; pages],
            }),
        }
    }

    /// Stops poisoning freed pages (for benchmarks, where writing 4 KiB per
    /// freed table would measure the fake, not the tables). Tests keep it.
    pub fn without_poison(self) -> Self {
        self.state.lock().unwrap().poison = false;
        self
    }

    /// Keeps the last `n` freed pages out of circulation: a freed page is
    /// handed out again only after `n` more pages have been freed. So a
    /// reader that still holds a freed table (a use after free) reads the
    /// poison, not a recycled table, unless `n` frees have happened since.
    /// Quarantined pages count as free ([`HostMemory::live`],
    /// [`HostMemory::is_allocated`]) but cannot be allocated: size the pool
    /// for `n` more pages. The default is no quarantine (`n = 0`).
    pub fn with_quarantine(self, n: usize) -> Self {
        self.state.lock().unwrap().quarantine_len = n;
        self
    }

    /// Pages in quarantine now (freed, not allocatable yet).
    pub fn quarantined(&self) -> usize {
        self.state.lock().unwrap().quarantine.len()
    }

    #[inline]
    fn index(&self, pa: PhysAddr) -> usize {
        // Below the base wraps to a huge index: one check covers both ends.
        let i = (pa.get().wrapping_sub(self.base) / PAGE_SIZE) as usize;
        assert!(
            pa.is_aligned(PAGE_SIZE) && i < self.pages.len(),
            "table PA {pa:?} unaligned or outside the pool"
        );
        i
    }

    /// Pages allocated now.
    pub fn live(&self) -> usize {
        self.state.lock().unwrap().live
    }
    /// Most pages allocated at once.
    pub fn peak(&self) -> usize {
        self.state.lock().unwrap().peak
    }
    /// Allocation calls so far (successful or not).
    pub fn allocations(&self) -> u64 {
        self.state.lock().unwrap().allocations
    }
    /// Makes the `n`-th allocation call from now (1-based) fail, and every
    /// one after it until [`HostMemory::clear_failure`].
    pub fn fail_after(&self, n: u64) {
        let mut s = self.state.lock().unwrap();
        s.fail_at = Some(s.allocations + n);
    }
    /// Lets allocations succeed again.
    pub fn clear_failure(&self) {
        self.state.lock().unwrap().fail_at = None;
    }
    /// Whether a page is allocated.
    pub fn is_allocated(&self, pa: PhysAddr) -> bool {
        self.state.lock().unwrap().in_use[self.index(pa)]
    }
    /// Frees `count` pages from `pa` with the pool's lock held.
    fn free_locked(&self, s: &mut PoolState, pa: PhysAddr, count: usize) {
        let first = self.index(pa);
        for i in first..first + count {
            assert!(
                s.in_use[i],
                "double free of table page {:#x}",
                self.base + i as u64 * PAGE_SIZE
            );
            s.in_use[i] = false;
            if s.poison {
                for e in &self.pages[i].0 {
                    e.store(POISON, Ordering::Relaxed);
                }
            }
            if s.quarantine_len > 0 {
                s.held[i] = true;
                s.quarantine.push_back(i);
                while s.quarantine.len() > s.quarantine_len {
                    let j = s.quarantine.pop_front().unwrap();
                    s.held[j] = false;
                }
            }
        }
        s.live -= count;
    }

    /// Reads the descriptor at `pa` (8-byte aligned) as the hardware would,
    /// for the reference walker. Panics on pages that are not allocated.
    pub fn read_phys(&self, pa: u64) -> u64 {
        let page = PhysAddr(pa & !(PAGE_SIZE - 1));
        assert!(self.is_allocated(page), "walk touched free page {page:?}");
        self.pages[self.index(page)].0[((pa % PAGE_SIZE) / 8) as usize].load(Ordering::Acquire)
    }
}

// SAFETY: pages are handed out once (tracked by `in_use`), zeroed, aligned
// to the request (indices aligned to `count` from an aligned base), and
// `entries`/`ptdesc` point into boxed slices that live as long as `self`.
unsafe impl TableMemory for HostMemory {
    fn alloc_tables(&self, count: usize) -> Option<PhysAddr> {
        assert!(count.is_power_of_two() && count <= 16);
        let mut s = self.state.lock().unwrap();
        s.allocations += 1;
        if s.fail_at.is_some_and(|f| s.allocations >= f) {
            return None;
        }
        let n = s.in_use.len();
        let start = s.next;
        let found = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| i % count == 0 && i + count <= n)
            .find(|&i| (i..i + count).all(|j| !s.in_use[j] && !s.held[j]))?;
        for i in found..found + count {
            s.in_use[i] = true;
            for e in &self.pages[i].0 {
                e.store(0, Ordering::Relaxed);
            }
        }
        s.live += count;
        s.peak = s.peak.max(s.live);
        s.next = (found + count) % n;
        Some(PhysAddr(self.base + found as u64 * PAGE_SIZE))
    }

    unsafe fn free_tables(&self, pa: PhysAddr, count: usize) {
        let mut s = self.state.lock().unwrap();
        self.free_locked(&mut s, pa, count);
    }

    unsafe fn free_table_pages(&self, pages: &mut dyn Iterator<Item = PhysAddr>) {
        let mut s = self.state.lock().unwrap();
        for pa in pages {
            self.free_locked(&mut s, pa, 1);
        }
    }

    #[inline]
    fn entries(&self, pa: PhysAddr) -> *const AtomicU64 {
        self.pages[self.index(pa)].0.as_ptr()
    }

    #[inline]
    fn ptdesc(&self, pa: PhysAddr) -> &PtDesc {
        &self.descs[self.index(pa)]
    }
}

/// One recorded TLB maintenance call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TlbOp {
    /// `DSB ISHST`.
    SyncTables,
    /// `TLBI IPAS2E1IS` (or `IPAS2LE1IS` when `last_level`).
    Ipa {
        /// VMID.
        vmid: Vmid,
        /// IPA invalidated.
        ipa: Ipa,
        /// TTL hint.
        level: Option<Level>,
        /// Last-level only.
        last_level: bool,
    },
    /// `TLBI RIPAS2E1IS`.
    Range {
        /// VMID.
        vmid: Vmid,
        /// First IPA.
        ipa: Ipa,
        /// 4 KiB pages covered.
        pages: u64,
        /// TTL hint.
        level: Option<Level>,
    },
    /// `TLBI VMALLE1IS`.
    Stage1(Vmid),
    /// `TLBI VMALLS12E1IS`.
    Vmid(Vmid),
    /// `DSB ISH; ISB`.
    Complete,
    /// Data cache clean and invalidate to the PoC (not a TLB operation:
    /// recorded in the same log so tests see its order among them).
    CleanInval {
        /// First byte.
        pa: PhysAddr,
        /// Bytes.
        len: u64,
    },
}

/// A TLB that records what it is asked to do.
pub struct RecordingTlb {
    ops: Mutex<Vec<TlbOp>>,
    ipa: bool,
    range: bool,
    record: bool,
}

impl RecordingTlb {
    /// An AArch64 CPU without FEAT_TLBIRANGE.
    pub fn new() -> Self {
        Self::with_caps(true, false)
    }
    /// A CPU with the given capabilities (`ipa = false` models ARMv7).
    pub fn with_caps(ipa: bool, range: bool) -> Self {
        Self { ops: Mutex::new(Vec::new()), ipa, range, record: true }
    }
    /// A TLB that counts nothing (for benchmarks).
    pub fn silent() -> Self {
        Self { ops: Mutex::new(Vec::new()), ipa: true, range: false, record: false }
    }
    /// Takes the recorded calls.
    pub fn take(&self) -> Vec<TlbOp> {
        core::mem::take(&mut *self.ops.lock().unwrap())
    }
    /// The last call recorded (not taken yet), if any.
    pub fn last(&self) -> Option<TlbOp> {
        self.ops.lock().unwrap().last().copied()
    }
    /// How many calls are recorded (not taken yet).
    pub fn len(&self) -> usize {
        self.ops.lock().unwrap().len()
    }
    /// Whether no call is recorded (or all were taken).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline(always)]
    fn push(&self, op: TlbOp) {
        if self.record {
            self.log(op);
        }
    }
    #[inline(never)]
    fn log(&self, op: TlbOp) {
        self.ops.lock().unwrap().push(op);
    }
}

impl Default for RecordingTlb {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheMaintenance for RecordingTlb {
    fn clean_inval_poc(&self, pa: PhysAddr, len: u64) {
        self.push(TlbOp::CleanInval { pa, len });
    }
}

impl TlbMaintenance for RecordingTlb {
    fn has_ipa_invalidation(&self) -> bool {
        self.ipa
    }
    fn has_range_invalidation(&self) -> bool {
        self.range
    }
    #[inline(always)]
    fn sync_tables(&self) {
        self.push(TlbOp::SyncTables);
    }
    fn invalidate_ipa(&self, scope: TlbScope, ipa: Ipa, level: Option<Level>, last_level: bool) {
        self.push(TlbOp::Ipa { vmid: scope.vmid, ipa, level, last_level });
    }
    fn invalidate_ipa_range(&self, scope: TlbScope, ipa: Ipa, pages: u64, level: Option<Level>) {
        self.push(TlbOp::Range { vmid: scope.vmid, ipa, pages, level });
    }
    fn invalidate_stage1(&self, scope: TlbScope) {
        self.push(TlbOp::Stage1(scope.vmid));
    }
    fn invalidate_vmid(&self, scope: TlbScope) {
        self.push(TlbOp::Vmid(scope.vmid));
    }
    fn complete(&self) {
        self.push(TlbOp::Complete);
    }
}
