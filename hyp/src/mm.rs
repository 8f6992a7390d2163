//! Memory: the hypervisor heap, the frame allocator for guest pages, and
//! the pool stage-2 tables come from (with their `PtDesc`s).
//!
//! Physical memory is identity-mapped at EL2, so a frame's physical
//! address is also the address the hypervisor uses to reach it.

use alloc::vec::Vec;

use buddy_system_allocator::{FrameAllocator, LockedHeap};
use mmu::Entry;
use mmu::{PhysAddr, PtDesc, TableMemory, PAGE_SIZE};
use spin::Mutex;

/// Bytes of heap (in BSS).
const HEAP_SIZE: usize = 8 << 20;
/// Stage-2 table pages in the pool: 32 MiB, enough for 16 GiB of guest
/// memory mapped with 4 KiB pages.
pub const TABLE_POOL_PAGES: usize = 8192;

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);
static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

/// Frames for guest memory, by 4 KiB frame number.
static FRAMES: Mutex<FrameAllocator<32>> = Mutex::new(FrameAllocator::new());

/// Sets up the heap. Called once, first thing.
pub fn init_heap() {
    // SAFETY: HEAP_SPACE is used by nothing else, and this runs once on
    // the primary CPU before any allocation.
    unsafe { HEAP.lock().init(core::ptr::addr_of_mut!(HEAP_SPACE) as usize, HEAP_SIZE) };
}

/// Hands the free physical ranges `[start, end)` to the frame allocator.
pub fn add_frames(ranges: &[(u64, u64)]) -> u64 {
    let mut frames = FRAMES.lock();
    let mut total = 0;
    for &(start, end) in ranges {
        let (s, e) = (start.div_ceil(PAGE_SIZE), end / PAGE_SIZE);
        if e > s {
            frames.add_frame(s as usize, e as usize);
            total += (e - s) * PAGE_SIZE;
        }
    }
    total
}

/// Allocates `count` (a power of two) contiguous zeroed frames aligned to
/// their size.
pub fn alloc_frames(count: usize) -> Option<PhysAddr> {
    let frame = FRAMES.lock().alloc(count)?;
    let pa = frame as u64 * PAGE_SIZE;
    // SAFETY: the frames were just allocated to us and RAM is identity
    // mapped (as normal memory); nothing else refers to them.
    unsafe { crate::cpu::cache::zero(pa as usize, count * PAGE_SIZE as usize) };
    Some(PhysAddr(pa))
}

/// Returns frames from [`alloc_frames`].
pub fn free_frames(pa: PhysAddr, count: usize) {
    FRAMES.lock().dealloc((pa.get() / PAGE_SIZE) as usize, count);
}

/// The pool stage-2 tables live in, and their metadata.
pub struct TablePool {
    base: u64,
    pages: usize,
    descs: Vec<PtDesc>,
    free: Mutex<FrameAllocator<16>>,
}

impl TablePool {
    /// A pool of `pages` table pages taken from the frame allocator.
    pub fn new(pages: usize) -> Option<Self> {
        let base = alloc_frames(pages)?.get();
        let mut free = FrameAllocator::new();
        free.add_frame(0, pages);
        let descs = (0..pages).map(|_| PtDesc::new()).collect();
        Some(Self { base, pages, descs, free: Mutex::new(free) })
    }

    fn index(&self, pa: PhysAddr) -> usize {
        let i = (pa.get().wrapping_sub(self.base) / PAGE_SIZE) as usize;
        assert!(i < self.pages && pa.is_aligned(PAGE_SIZE), "{pa:?} is not a table page");
        i
    }
}

// SAFETY: pages come from a buddy allocator over a region reserved for the
// pool (aligned to their count, handed out once until freed) and are zeroed
// before being returned; RAM is identity mapped, so `entries` is the page
// itself; `descs` lives as long as the pool.
unsafe impl TableMemory for TablePool {
    fn alloc_tables(&self, count: usize) -> Option<PhysAddr> {
        let i = self.free.lock().alloc(count)?;
        let pa = self.base + i as u64 * PAGE_SIZE;
        // SAFETY: just allocated; identity mapped; not yet published.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, count * PAGE_SIZE as usize) };
        Some(PhysAddr(pa))
    }

    unsafe fn free_tables(&self, pa: PhysAddr, count: usize) {
        let i = self.index(pa);
        self.free.lock().dealloc(i, count);
    }

    fn entries(&self, pa: PhysAddr) -> *const Entry {
        pa.get() as *const Entry
    }

    fn ptdesc(&self, pa: PhysAddr) -> &PtDesc {
        &self.descs[self.index(pa)]
    }
}
