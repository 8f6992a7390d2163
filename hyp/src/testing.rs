//! A host machine for the VM logic's tests ([`HostMachine`]): guest
//! frames in a host buffer posing as physical memory, tables and TLBs from
//! `mmu::testing`, a clock the test moves, the console captured.
//!
//! The frame buffer is allocated zeroed and left to the host's lazy
//! zero pages, so a test may give VMs gigabytes of RAM: only frames
//! something wrote are ever touched again (zeroed when handed out anew,
//! poisoned when freed, so a stale mapping shows).

extern crate std;

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::cell::Cell;
use std::sync::Mutex;

use buddy_system_allocator::FrameAllocator;
use mmu::testing::{HostMemory, RecordingTlb};
use mmu::{Geometry, LockMode, PhysAddr, Rcu};

use crate::conmux::{Output, Sink};
use crate::fdt_writer::{GuestArch, GuestGic};
use crate::machine::{EntryArg, Machine};
use crate::platform::Coherency;
use crate::vm::{Boot, Guests, Policy, Vm, VmSpec, IMAGE_IPA};

/// Where the host's guest frames start, as physical addresses.
pub const FRAMES_BASE: u64 = 0x1_0000_0000;
const PAGE: u64 = 4096;

/// What a freed frame that had been written is filled with.
pub const POISON: u64 = 0xdead_beef_dead_beef;

/// A vCPU's "registers" on the host: where it was started, and with what.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostRegs {
    /// Entry point.
    pub entry: u64,
    /// What `x0` holds at entry.
    pub arg: EntryArg,
}

std::thread_local!(static CPU: Cell<usize> = const { Cell::new(0) });

fn thread_cpu() -> usize {
    CPU.with(|c| c.get())
}

/// The machine (see the module documentation).
pub struct HostMachine {
    tables: &'static HostMemory,
    rcu: &'static Rcu,
    cache: &'static RecordingTlb,
    mem: &'static [AtomicU64],
    frames: Mutex<FrameAllocator<32>>,
    /// Frames something wrote since they were last zeroed.
    dirty: Mutex<BTreeSet<u64>>,
    /// Frames handed out now.
    live: AtomicU64,
    /// A bit per frame, set while it is handed out: freeing a frame that
    /// is not (twice, or never allocated) fails the test at once.
    allocated: &'static [AtomicU64],
    clock: AtomicU64,
    /// CPUs kicked (`Machine::kick_cpu`), in order.
    pub kicks: Mutex<Vec<usize>>,
    /// What was printed, and whose line is unfinished.
    out: Mutex<(Captured, Output)>,
}

/// The console of the host machine: a string.
#[derive(Default)]
struct Captured(String);

impl Sink for Captured {
    fn put(&mut self, bytes: &[u8]) {
        self.0.push_str(&String::from_utf8_lossy(bytes));
    }
}

impl HostMachine {
    /// A machine with `mem` bytes of guest frames and `tables` table pages;
    /// its RCU domain has one CPU per thread ([`HostMachine::as_cpu`]), the
    /// calling thread CPU 0.
    pub fn new(mem: u64, tables: usize) -> &'static Self {
        let words = (mem / 8) as usize;
        // Zeroed memory from the host, committed only where written.
        let layout = std::alloc::Layout::from_size_align(words * 8, 4096).expect("layout");
        // SAFETY: a non-zero size; zeroed `AtomicU64`s are valid values,
        // and the memory lives for the rest of the test process.
        let mem_slice: &'static [AtomicU64] = unsafe {
            let p = std::alloc::alloc_zeroed(layout) as *mut AtomicU64;
            assert!(!p.is_null(), "no host memory for {mem} bytes of guest frames");
            core::slice::from_raw_parts(p, words)
        };
        let mut frames = FrameAllocator::new();
        let first = (FRAMES_BASE / PAGE) as usize;
        frames.add_frame(first, first + (mem / PAGE) as usize);
        Box::leak(Box::new(Self {
            tables: Box::leak(Box::new(HostMemory::new(tables))),
            // SAFETY: every thread that uses the machine sets its own CPU
            // number first (`as_cpu`; the calling thread is CPU 0).
            rcu: Box::leak(Box::new(unsafe { Rcu::with_cpus(thread_cpu, 1) })),
            cache: Box::leak(Box::new(RecordingTlb::silent())),
            mem: mem_slice,
            frames: Mutex::new(frames),
            dirty: Mutex::new(BTreeSet::new()),
            live: AtomicU64::new(0),
            allocated: Box::leak(
                (0..(mem / PAGE).div_ceil(64)).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>(),
            ),
            clock: AtomicU64::new(0),
            kicks: Mutex::new(Vec::new()),
            out: Mutex::new((Captured::default(), Output::new())),
        }))
    }

    /// Runs `f` on this thread as CPU `cpu` (1..): online while it runs.
    pub fn as_cpu<R>(&self, cpu: usize, f: impl FnOnce() -> R) -> R {
        CPU.with(|c| c.set(cpu));
        self.rcu.online(cpu);
        let r = f();
        self.rcu.offline();
        r
    }

    /// Frames handed out now.
    pub fn frames_in_use(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Moves the clock on by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::Relaxed);
    }

    /// What was printed so far, taken.
    pub fn take_output(&self) -> String {
        core::mem::take(&mut self.out.lock().unwrap().0 .0)
    }

    /// Marks `count` frames from frame number `first` handed out (`on`)
    /// or free; panics on a frame that already was (a double free, a free
    /// of a frame never handed out, or an allocator handing one out
    /// twice).
    fn mark(&self, first: u64, count: usize, on: bool) {
        let base = FRAMES_BASE / PAGE;
        for f in first..first + count as u64 {
            let (i, bit) = (((f - base) / 64) as usize, 1u64 << ((f - base) % 64));
            let was = if on {
                self.allocated[i].fetch_or(bit, Ordering::Relaxed)
            } else {
                self.allocated[i].fetch_and(!bit, Ordering::Relaxed)
            };
            assert_eq!(
                was & bit != 0,
                !on,
                "frame {:#x} {}",
                f * PAGE,
                if on { "handed out twice" } else { "freed twice, or never allocated" }
            );
        }
    }

    fn word(&self, pa: u64) -> &AtomicU64 {
        let i = pa.checked_sub(FRAMES_BASE).expect("below the frames") / 8;
        &self.mem[i as usize]
    }

    /// The 64-bit word at `pa`.
    pub fn read_u64(&self, pa: u64) -> u64 {
        self.word(pa).load(Ordering::Relaxed)
    }

    /// Writes the 64-bit word at `pa` (as a guest would).
    pub fn write_u64(&self, pa: u64, v: u64) {
        self.dirty.lock().unwrap().insert(pa / PAGE);
        self.word(pa).store(v, Ordering::Relaxed);
    }

    fn byte(&self, pa: u64) -> &AtomicU8 {
        let w = self.word(pa & !7) as *const AtomicU64 as *const AtomicU8;
        // SAFETY: an `AtomicU64` is 8 `AtomicU8`s in memory (same size and
        // bit validity); the byte stays inside the word.
        unsafe { &*w.add((pa & 7) as usize) }
    }
}

impl Machine for HostMachine {
    type Tables = HostMemory;
    type Tlb = RecordingTlb;
    type Cache = RecordingTlb;
    type Regs = HostRegs;

    fn tables(&self) -> &'static HostMemory {
        self.tables
    }

    fn rcu(&self) -> &'static Rcu {
        self.rcu
    }

    fn cache(&self) -> &'static RecordingTlb {
        self.cache
    }

    fn tlb(&'static self) -> &'static RecordingTlb {
        self.cache
    }

    fn alloc_frames(&self, count: usize) -> Option<PhysAddr> {
        let frame = self.frames.lock().unwrap().alloc(count)? as u64;
        let (start, end) = (frame * PAGE, (frame + count as u64) * PAGE);
        let written: Vec<u64> =
            self.dirty.lock().unwrap().range(frame..end / PAGE).copied().collect();
        for f in written {
            for w in 0..PAGE / 8 {
                self.word(f * PAGE + w * 8).store(0, Ordering::Relaxed);
            }
            self.dirty.lock().unwrap().remove(&f);
        }
        self.mark(frame, count, true);
        self.live.fetch_add(count as u64, Ordering::Relaxed);
        Some(PhysAddr(start))
    }

    fn free_frames(&self, pa: PhysAddr, count: usize) {
        let first = pa.get() / PAGE;
        self.mark(first, count, false);
        let written: Vec<u64> =
            self.dirty.lock().unwrap().range(first..first + count as u64).copied().collect();
        for f in written {
            for w in 0..PAGE / 8 {
                self.word(f * PAGE + w * 8).store(POISON, Ordering::Relaxed);
            }
        }
        self.live.fetch_sub(count as u64, Ordering::Relaxed);
        self.frames.lock().unwrap().dealloc(first as usize, count);
    }

    fn write_phys(&self, pa: PhysAddr, data: &[u8]) {
        let mut dirty = self.dirty.lock().unwrap();
        for (i, &b) in data.iter().enumerate() {
            let a = pa.get() + i as u64;
            dirty.insert(a / PAGE);
            self.byte(a).store(b, Ordering::Relaxed);
        }
    }

    fn fill_page(&self, pa: PhysAddr, pattern: u64) {
        self.dirty.lock().unwrap().insert(pa.get() / PAGE);
        for w in 0..PAGE / 8 {
            self.word(pa.get() + w * 8).store(pattern, Ordering::Relaxed);
        }
    }

    fn copy_page(&self, src: PhysAddr, dst: PhysAddr) {
        self.dirty.lock().unwrap().insert(dst.get() / PAGE);
        for w in 0..PAGE / 8 {
            let v = self.word(src.get() + w * 8).load(Ordering::Relaxed);
            self.word(dst.get() + w * 8).store(v, Ordering::Relaxed);
        }
    }

    fn clean_inval_poc(&self, _pa: PhysAddr, _len: u64) {}

    fn icache_inval_all(&self) {}

    fn now(&self) -> (u64, u64) {
        (self.clock.load(Ordering::Relaxed), 1000)
    }

    fn cpu(&self) -> usize {
        thread_cpu()
    }

    fn kick_cpu(&self, cpu: usize) {
        self.kicks.lock().unwrap().push(cpu);
    }

    fn print(&self, args: fmt::Arguments<'_>) {
        let (sink, out) = &mut *self.out.lock().unwrap();
        out.hyp(sink, args);
    }

    fn print_guest(&self, vm: usize, text: &[u8], end: bool) {
        let (sink, out) = &mut *self.out.lock().unwrap();
        out.guest(sink, vm, text, end);
    }

    fn regs_at_entry(&self, entry: u64, arg: EntryArg) -> HostRegs {
        HostRegs { entry, arg }
    }
}

/// The stage-2 regime the tests use: 40-bit IPA, as the hypervisor's.
pub fn geometry() -> Geometry {
    Geometry::aarch64(40, 48, mmu::Features::default()).expect("geometry")
}

/// `n` VMs of `ram` bytes and `vcpus` vCPUs each on `m`, booted from a
/// one-page image (so they run: vCPU 0 is queued).
pub fn boot_vms(
    m: &'static HostMachine,
    n: usize,
    vcpus: usize,
    ram: u64,
    coherency: Coherency,
) -> (&'static Guests<HostMachine>, &'static [&'static Vm<HostMachine>]) {
    boot_vms_with(m, n, vcpus, ram, coherency, |b| b)
}

/// [`boot_vms`], each VM's [`Boot`] changed by `f` first.
pub fn boot_vms_with(
    m: &'static HostMachine,
    n: usize,
    vcpus: usize,
    ram: u64,
    coherency: Coherency,
    f: impl Fn(Boot) -> Boot,
) -> (&'static Guests<HostMachine>, &'static [&'static Vm<HostMachine>]) {
    let rmap = Box::leak(Box::new(mmu::Rmap::with_quota(crate::vm::RMAP_QUOTA)));
    let guests: &'static Guests<HostMachine> = Box::leak(Box::new(Guests::new(m, coherency, rmap)));
    let specs: Vec<VmSpec> = (1..=n)
        .map(|id| VmSpec {
            id,
            geo: geometry(),
            vcpus,
            ram_size: ram,
            policy: Policy::Pages,
            lock: LockMode::Split,
            gic: Some(crate::vgic::Version::V3),
            gicv: None,
            flash: false,
        })
        .collect();
    let vms = guests.create(&specs).expect("create");
    static IMAGE: [u8; 64] = [0x5a; 64];
    for vm in vms {
        let boot = Boot {
            segments: alloc::vec![(IMAGE_IPA, &IMAGE[..], 64)],
            entry: IMAGE_IPA,
            vcpus: vcpus as u32,
            bootargs: String::new(),
            exact_cmdline: false,
            initrd: None,
            gic: GuestGic::native(GuestArch::native(), vcpus as u32),
        };
        vm.boot(f(boot)).expect("boot");
    }
    (guests, vms)
}

/// Counts the heap bytes each thread allocates, so a test can show that
/// an operation allocates nothing in proportion to guest memory.
pub struct CountingAlloc;

std::thread_local!(static ALLOCATED: Cell<u64> = const { Cell::new(0) });

// SAFETY: forwards to the system allocator unchanged; the count is a
// thread-local cell with a constant initialiser (no allocation, no
// destructor), so counting cannot recurse into the allocator.
unsafe impl core::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        ALLOCATED.with(|a| a.set(a.get() + layout.size() as u64));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: core::alloc::Layout) -> *mut u8 {
        ALLOCATED.with(|a| a.set(a.get() + layout.size() as u64));
        // SAFETY: as above.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: core::alloc::Layout, new: usize) -> *mut u8 {
        ALLOCATED.with(|a| a.set(a.get() + new as u64));
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static COUNTING: CountingAlloc = CountingAlloc;

/// Heap bytes the calling thread has allocated so far.
pub fn heap_allocated() -> u64 {
    ALLOCATED.with(Cell::get)
}
