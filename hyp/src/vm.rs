//! Virtual machines and virtual CPUs, and what they do to stage 2.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use mmu::rmap::RMAP_MAPPINGS;
use mmu::{
    make_coherent, Attrs, Coherence, Error, Exec, Geometry, Granularity, Ipa, LockMode, MemType,
    PhysAddr, Rcu, Rmap, Stage2, TableMemory, Vmid,
};
use spin::Mutex;

use crate::alias::{AliasTable, Pins};
use crate::cpu::{cache, EntryArg, GuestRegs, GuestSysRegs, PocByPa, Stage2Tlb};
use crate::hypercall::Stat;
use crate::mm::{self, TablePool};
use crate::platform::Coherency;

/// IPA where guest RAM starts.
pub const RAM_BASE: u64 = 0x4000_0000;
/// IPA of the guest image (raw images are linked there).
pub const IMAGE_IPA: u64 = 0x4020_0000;
/// IPA of the emulated PL011.
pub const UART_IPA: u64 = 0x0900_0000;
const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;
const HUGE: u64 = 1 << 30;

/// A VM's stage 2.
type S2 = Stage2<'static, TablePool, Stage2Tlb>;

/// The reverse map of every VM's stage 2: the frames `HYP_ALIAS` and
/// `HYP_SHARE` let several IPAs map are tracked here, so that a fault on
/// one mapping finds the others (`mmu::make_coherent`) and a frame is freed
/// only once nothing maps it (`Rmap::release`).
pub static RMAP: Rmap = Rmap::new();

/// Alias-table entries (all VMs) per frame: a frame an alias will map on
/// its first access is not freed meanwhile, whatever else unmaps it.
/// Taken after a VM's alias lock; a leaf but for `RMAP`'s and the frame
/// allocator's locks.
static PINS: Mutex<Pins> = Mutex::new(Pins::new());

/// The coherency policy (`coherency=`), set once at boot.
static COHERENCY: AtomicU8 = AtomicU8::new(Coherency::Nc as u8);

/// Serialises the `ro` policy's write faults on aliased pages, so that
/// they leave one writable mapping of a page, not several.
static RO_WRITER: Mutex<()> = Mutex::new(());

/// Sets the coherency policy for aliased pages (before any guest runs).
pub fn set_coherency(c: Coherency) {
    COHERENCY.store(c as u8, Ordering::Relaxed);
}

fn coherency() -> Coherency {
    if COHERENCY.load(Ordering::Relaxed) == Coherency::Ro as u8 {
        Coherency::Ro
    } else {
        Coherency::Nc
    }
}

/// `nc`: every mapping of an aliased page Normal Non-cacheable, so that
/// no mapping reads a line another mapping's writes have not reached.
fn non_cacheable(a: &Attrs) -> Attrs {
    Attrs { mem: MemType::NormalNc, ..*a }
}

/// `ro`: every mapping of an aliased page read-only; a write faults and
/// makes its own mapping the one writable mapping.
fn read_only(a: &Attrs) -> Attrs {
    Attrs { write: false, ..*a }
}

/// The policy as `make_coherent` takes it: the attributes an alias gets.
fn policy_adjust() -> fn(&Attrs) -> Attrs {
    match coherency() {
        Coherency::Nc => non_cacheable,
        Coherency::Ro => read_only,
    }
}

/// Every VM's stage 2: the spaces an aliased frame may be mapped in.
fn all_spaces() -> Vec<&'static S2> {
    VMS.lock().iter().map(|vm| &vm.s2).collect()
}

/// The VM with id `id`.
pub fn find(id: u64) -> Option<&'static Vm> {
    VMS.lock().iter().copied().find(|vm| vm.id as u64 == id)
}

/// Frees `pa`, a frame that was tracked when it was unmapped, if nothing
/// maps it any more and no alias entry will: `RMAP.release` is true once,
/// for whichever caller comes last.
fn put_frame(pa: PhysAddr) {
    let free = {
        let pins = PINS.lock();
        pins.count(pa.get()) == 0 && RMAP.release(pa)
    };
    if free {
        mm::free_frames(pa, 1);
    }
}

/// An alias entry for `pa` went: unpins it and frees it if that was the
/// last reference.
fn unpin_and_put(pa: PhysAddr) {
    let free = {
        let mut pins = PINS.lock();
        !pins.unpin(pa.get()) && RMAP.release(pa)
    };
    if free {
        mm::free_frames(pa, 1);
    }
}

/// How guest RAM is populated on a fault.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Policy {
    /// 4 KiB pages.
    Pages = 0,
    /// 2 MiB blocks where the block lies in RAM.
    Blocks = 1,
    /// 1 GiB blocks where the block lies in RAM and the host has a free,
    /// aligned gigabyte; else as `Blocks`.
    Huge = 2,
}

/// What a VM is made of.
#[derive(Clone, Copy, Debug)]
pub struct VmSpec {
    /// Number, from 1; also its VMID.
    pub id: usize,
    /// Stage-2 geometry.
    pub geo: Geometry,
    /// vCPUs.
    pub vcpus: usize,
    /// Guest RAM in bytes.
    pub ram_size: u64,
    /// Fault policy.
    pub policy: Policy,
    /// Stage-2 lock mode.
    pub lock: LockMode,
}

/// Per-VM counters the hypervisor keeps itself (stage-2 table and TLB
/// counters come from `mmu`).
#[derive(Default)]
pub struct VmStats {
    /// Stage-2 faults.
    pub faults: AtomicU64,
    /// 4 KiB pages mapped on faults.
    pub pages: AtomicU64,
    /// 2 MiB blocks mapped on faults.
    pub blocks: AtomicU64,
    /// Permission faults (writes to write-protected pages).
    pub perm_faults: AtomicU64,
    /// Guest exits of any kind.
    pub exits: AtomicU64,
    /// Synchronous external aborts injected.
    pub sea: AtomicU64,
    /// Faults that ran the coherency policy.
    pub coherency_faults: AtomicU64,
    /// Entries those faults rewrote.
    pub adjusted: AtomicU64,
    /// Recorded mappings they passed over.
    pub skipped: AtomicU64,
    /// `pmd_same` retries while adjusting aliases.
    pub retries: AtomicU64,
    /// Aliases deferred to the second, lock-free pass.
    pub deferred: AtomicU64,
    /// Pages shared into this VM by others.
    pub shares_in: AtomicU64,
}

/// What a vCPU is doing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VcpuStatus {
    /// Not started (PSCI CPU_OFF or never on).
    Off,
    /// Ready to run or running.
    Runnable,
}

/// A virtual CPU's saved state.
pub struct VcpuState {
    /// General-purpose and FP/SIMD registers.
    pub regs: GuestRegs,
    /// EL1 system registers.
    pub sys: GuestSysRegs,
    /// Status.
    pub status: VcpuStatus,
}

/// A virtual CPU.
pub struct Vcpu {
    /// Its VM.
    pub vm: &'static Vm,
    /// Index in the VM (its MPIDR Aff0).
    pub index: usize,
    /// State; locked while the vCPU runs.
    pub state: Mutex<VcpuState>,
}

/// A virtual machine.
pub struct Vm {
    /// Number, from 1.
    pub id: usize,
    /// Its stage 2.
    pub s2: S2,
    /// Guest RAM size in bytes.
    pub ram_size: u64,
    policy: AtomicU8,
    /// Counters.
    pub stats: VmStats,
    /// vCPUs (set once, right after the VM is created: they point back
    /// at it).
    vcpus: spin::Once<Vec<&'static Vcpu>>,
    /// Console output not yet printed (up to a newline).
    console: Mutex<Vec<u8>>,
    /// vCPUs still on; the VM has stopped when it reaches 0 after start.
    pub running: AtomicUsize,
    /// Set by SYSTEM_OFF (and while a reset is under way).
    pub off: core::sync::atomic::AtomicBool,
    /// Set by SYSTEM_RESET until the VM has restarted.
    pub reset_pending: core::sync::atomic::AtomicBool,
    /// Resets so far.
    resets: AtomicU64,
    /// What the VM boots from, kept for SYSTEM_RESET.
    boot: spin::Once<Boot>,
    /// Collapse a 2 MiB range once fully populated.
    auto_collapse: core::sync::atomic::AtomicBool,
    /// The alias table, and the lock that serialises what may change a
    /// page's tracking or free a frame in this VM: `HYP_ALIAS`,
    /// `HYP_SHARE` (both VMs'), unmap, remap, reset, collapse, block
    /// population and the mapping of aliases on faults. Taken before any
    /// page-table lock; two of them in VM id order.
    aliases: Mutex<AliasTable>,
    /// Entries in `aliases`, readable without its lock: the fault path
    /// only looks at the table when there are any.
    alias_count: AtomicUsize,
    pool: &'static TablePool,
    rcu: &'static Rcu,
}

/// What a VM's RAM starts with: the guest image and its DTB.
pub struct Boot {
    /// Image segments: guest IPA, bytes, bytes to map.
    pub segments: Vec<(u64, &'static [u8], u64)>,
    /// Entry point.
    pub entry: u64,
    /// vCPUs in the DTB.
    pub vcpus: u32,
    /// Bootargs in the DTB.
    pub bootargs: alloc::string::String,
}

/// The run queue: vCPUs ready to run, taken by whichever CPU is free.
pub static RUNQ: Mutex<VecDeque<&'static Vcpu>> = Mutex::new(VecDeque::new());

/// All VMs.
pub static VMS: Mutex<Vec<&'static Vm>> = Mutex::new(Vec::new());

impl Vm {
    /// Creates a VM as `spec` says, its tables from `pool`.
    pub fn create(
        spec: &VmSpec,
        pool: &'static TablePool,
        rcu: &'static Rcu,
    ) -> Result<&'static Vm, Error> {
        let VmSpec { id, geo, vcpus, ram_size, policy, lock } = *spec;
        let vmid = Vmid(id as u16);
        let tlb: &'static Stage2Tlb = Box::leak(Box::new(Stage2Tlb::new()));
        let s2 = Stage2::new(geo, vmid, lock, pool, tlb, rcu)?.with_rmap(&RMAP);
        tlb.bind(s2.vttbr());
        let vm_ref: &'static Vm = Box::leak(Box::new(Vm {
            id,
            s2,
            ram_size,
            policy: AtomicU8::new(policy as u8),
            stats: VmStats::default(),
            vcpus: spin::Once::new(),
            console: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            off: core::sync::atomic::AtomicBool::new(false),
            reset_pending: core::sync::atomic::AtomicBool::new(false),
            resets: AtomicU64::new(0),
            boot: spin::Once::new(),
            auto_collapse: core::sync::atomic::AtomicBool::new(false),
            aliases: Mutex::new(AliasTable::new()),
            alias_count: AtomicUsize::new(0),
            pool,
            rcu,
        }));
        let list = (0..vcpus)
            .map(|index| {
                &*Box::leak(Box::new(Vcpu {
                    vm: vm_ref,
                    index,
                    state: Mutex::new(VcpuState {
                        regs: GuestRegs::new(),
                        sys: GuestSysRegs::reset(),
                        status: VcpuStatus::Off,
                    }),
                }))
            })
            .collect();
        vm_ref.vcpus.call_once(|| list);
        Ok(vm_ref)
    }

    /// Fills guest RAM from `boot` (DTB and image) and starts vCPU 0: at
    /// creation and after each reset.
    pub fn boot(&'static self, boot: Boot) -> Result<(), Error> {
        let boot = self.boot.call_once(|| boot);
        let resets = self.resets.load(Ordering::Relaxed);
        let mut bootargs = boot.bootargs.clone();
        // The guest's own id, which HYP_SHARE names VMs by.
        bootargs.push_str(&alloc::format!(" vm={}", self.id));
        if resets > 0 {
            // Tells the guest it was reset (the counters survive; RAM not).
            bootargs.push_str(&alloc::format!(" resets={resets}"));
        }
        let spec = crate::fdt_writer::GuestDtbSpec {
            arch: crate::fdt_writer::GuestArch::native(),
            ram_base: RAM_BASE,
            ram_size: self.ram_size,
            cpus: boot.vcpus,
            bootargs,
        };
        let dtb = crate::fdt_writer::guest_dtb(&spec);
        self.load(RAM_BASE, &dtb, dtb.len() as u64)?;
        for &(ipa, data, size) in &boot.segments {
            self.load(ipa, data, size)?;
        }
        self.start_vcpu(0, boot.entry, EntryArg::Dtb(RAM_BASE));
        Ok(())
    }

    /// PSCI SYSTEM_RESET, once every vCPU has stopped: guest RAM is freed
    /// (its alias entries go with it) and filled again from the image, and
    /// vCPU 0 starts over.
    pub fn reset(&'static self) -> Result<(), Error> {
        // Held until RAM is loaded again: a page another VM shares into
        // this one meanwhile becomes an alias after the load, rather than
        // being shadowed by a page the load maps.
        let mut t = self.aliases.lock();
        self.unmap_locked(&mut t, RAM_BASE, self.ram_size)?;
        self.resets.fetch_add(1, Ordering::Relaxed);
        self.off.store(false, Ordering::SeqCst);
        let boot = self.boot.get().ok_or(Error::BadConfig)?;
        let again = Boot {
            segments: boot.segments.clone(),
            entry: boot.entry,
            vcpus: boot.vcpus,
            bootargs: boot.bootargs.clone(),
        };
        // `boot` keeps the first value; `again` only carries it through.
        let r = self.boot(again);
        drop(t);
        self.reset_pending.store(false, Ordering::SeqCst);
        r
    }

    /// The vCPUs.
    pub fn vcpus(&self) -> &[&'static Vcpu] {
        self.vcpus.get().map_or(&[], |v| v.as_slice())
    }

    /// The VM's fault policy.
    pub fn policy(&self) -> Policy {
        match self.policy.load(Ordering::Relaxed) {
            2 => Policy::Huge,
            1 => Policy::Blocks,
            _ => Policy::Pages,
        }
    }

    /// Sets the fault policy.
    pub fn set_policy(&self, p: Policy) {
        self.policy.store(p as u8, Ordering::Relaxed);
    }

    /// Whether `[ipa, ipa + len)` lies in guest RAM.
    pub fn in_ram(&self, ipa: u64, len: u64) -> bool {
        ipa >= RAM_BASE && len <= self.ram_size && ipa - RAM_BASE <= self.ram_size - len
    }

    /// Places `data` at `ipa` in guest RAM, followed by zeros up to
    /// `mem_size` bytes, mapping fresh pages where nothing is mapped yet
    /// (or using the page already there), with the cache maintenance code
    /// needs.
    pub fn load(&self, ipa: u64, data: &[u8], mem_size: u64) -> Result<(), Error> {
        let end = ipa + mem_size.max(data.len() as u64);
        let mut page = ipa & !(PAGE - 1);
        while page < end {
            let pa = match self.s2.translate(Ipa(page)) {
                Some(t) => t.pa.get(),
                None => {
                    let pa = mm::alloc_frames(1).ok_or(Error::OutOfMemory)?;
                    self.s2.map(Ipa(page), pa, PAGE, &Attrs::RAM, Granularity::Pages)?;
                    self.stats.pages.fetch_add(1, Ordering::Relaxed);
                    pa.get()
                }
            };
            // The part of `data` that falls in this page.
            let lo = page.max(ipa);
            let hi = (page + PAGE).min(ipa + data.len() as u64);
            if lo < hi {
                let src = &data[(lo - ipa) as usize..(hi - ipa) as usize];
                // SAFETY: `pa` is a guest frame (fresh, or mapped by this
                // loader), identity mapped; the copy stays in the page.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        (pa + (lo - page)) as *mut u8,
                        src.len(),
                    )
                };
            }
            cache::clean_inval_poc(pa as usize, PAGE as usize);
            page += PAGE;
        }
        cache::icache_inval_all();
        Ok(())
    }

    /// Maps all of guest RAM now, as faults would (for comparing demand
    /// paging against memory mapped in advance).
    pub fn premap(&self) -> Result<(), Error> {
        let step = if self.policy() == Policy::Pages { PAGE } else { BLOCK };
        let mut ipa = RAM_BASE;
        while ipa < RAM_BASE + self.ram_size {
            if self.s2.translate(Ipa(ipa)).is_none() {
                self.populate(ipa)?;
            }
            ipa += step;
        }
        // Pages under blocks that could not be blocks (the DTB and image).
        let mut ipa = RAM_BASE;
        while ipa < RAM_BASE + self.ram_size {
            if self.s2.translate(Ipa(ipa)).is_none() {
                self.populate(ipa)?;
            }
            ipa += PAGE;
        }
        Ok(())
    }

    /// Populates guest RAM at `ipa` after a translation fault: a zeroed
    /// 2 MiB block under the block policy where the block lies in RAM and
    /// holds no alias, otherwise a zeroed page. A racing vCPU that mapped
    /// it first wins.
    pub fn populate(&self, ipa: u64) -> Result<(), Error> {
        let huge = ipa & !(HUGE - 1);
        if self.policy() == Policy::Huge && self.in_ram(huge, HUGE) {
            if let Some(pa) = mm::alloc_frames((HUGE / PAGE) as usize) {
                cache::clean_inval_poc(pa.get() as usize, HUGE as usize);
                match self.map_block(huge, pa, HUGE, Granularity::Largest) {
                    Ok(()) => {
                        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(e) => {
                        log::warn!("vm{}: 1 GiB block at {huge:#x}: {e}", self.id);
                        mm::free_frames(pa, (HUGE / PAGE) as usize)
                    }
                }
            } else {
                log::warn!("vm{}: no free aligned 1 GiB for {huge:#x}", self.id);
            }
        }
        let block = ipa & !(BLOCK - 1);
        if self.policy() != Policy::Pages && self.in_ram(block, BLOCK) {
            if let Some(pa) = mm::alloc_frames(512) {
                cache::clean_inval_poc(pa.get() as usize, BLOCK as usize);
                match self.map_block(block, pa, BLOCK, Granularity::Max2M) {
                    Ok(()) => {
                        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    // Pages already there, a racing block, or an alias in
                    // the range: fall back.
                    Err(_) => mm::free_frames(pa, 512),
                }
            }
        }
        let page = ipa & !(PAGE - 1);
        if self.map_fresh_page(page)? {
            // A HYP_ALIAS/SHARE making `page` an alias may have unmapped
            // it just before this mapped it: one of the two sees the other
            // (the entry count is stored before that unmap, and read here
            // after the map, both with SeqCst fences between).
            fence(Ordering::SeqCst);
            if self.alias_count.load(Ordering::SeqCst) != 0 {
                self.unshadow(page);
            }
        }
        Ok(())
    }

    /// Maps a fresh block unless an alias lies in its range: under the
    /// alias lock, so that no alias entry appears between the check and the
    /// map (an alias under a block would never fault). `AlreadyMapped`
    /// when refused.
    fn map_block(&self, ipa: u64, pa: PhysAddr, size: u64, gran: Granularity) -> Result<(), Error> {
        let t = self.aliases.lock();
        if t.any_in(ipa, size) {
            return Err(Error::AlreadyMapped);
        }
        self.s2.map(Ipa(ipa), pa, size, &Attrs::RAM, gran)
    }

    /// Maps a fresh zeroed frame at `page`; false when a racing vCPU had
    /// mapped the page first.
    fn map_fresh_page(&self, page: u64) -> Result<bool, Error> {
        let pa = mm::alloc_frames(1).ok_or(Error::OutOfMemory)?;
        cache::clean_inval_poc(pa.get() as usize, PAGE as usize);
        match self.s2.map(Ipa(page), pa, PAGE, &Attrs::RAM, Granularity::Pages) {
            Ok(()) => {
                self.stats.pages.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                mm::free_frames(pa, 1);
                // Another vCPU faulted on the same page first.
                if e == Error::AlreadyMapped {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `populate` mapped a fresh page at `page` while it became an alias:
    /// takes the fresh page out again, so the next access maps the alias.
    fn unshadow(&self, page: u64) {
        let t = self.aliases.lock();
        let Some(pa) = t.get(page) else { return };
        let shadowed = self.s2.translate(Ipa(page)).is_some_and(|tr| tr.pa.get() != pa);
        if shadowed {
            if let Err(e) = self.unmap_frames(&t, page, PAGE) {
                log::warn!("vm{}: alias at {page:#x} stays shadowed: {e}", self.id);
            }
        }
    }

    /// After a translation fault: if `ipa` is an alias (`HYP_ALIAS`,
    /// `HYP_SHARE`), maps its frame there (a 4 KiB page) and makes the
    /// frame's mappings coherent. `None` if it is not an alias.
    pub fn fault_alias(&self, ipa: u64) -> Option<Result<(), Error>> {
        if self.alias_count.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let page = ipa & !(PAGE - 1);
        let t = self.aliases.lock();
        let pa = PhysAddr(t.get(page)?);
        let r = self.map_alias(&t, page, pa);
        // The mapping holds the frame now (the reverse map records it):
        // the coherency pass needs no alias lock.
        drop(t);
        Some(r.map(|mapped| {
            if mapped {
                self.make_coherent(page, pa);
            }
        }))
    }

    /// Maps the alias `page` → `pa` (its entry in `t`, whose lock the
    /// caller holds): false if it is mapped so already.
    fn map_alias(&self, t: &AliasTable, page: u64, pa: PhysAddr) -> Result<bool, Error> {
        match self.s2.translate(Ipa(page)) {
            Some(tr) if tr.level == 3 && tr.pa == pa => return Ok(false),
            // A fresh page a racing fault mapped before the alias existed.
            Some(_) => self.unmap_frames(t, page, PAGE)?,
            None => {}
        }
        match self.s2.map(Ipa(page), pa, PAGE, &Attrs::RAM, Granularity::Pages) {
            Ok(()) => {
                self.stats.pages.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            // A racing populate: it takes its page out again (`unshadow`)
            // and the guest faults once more.
            Err(Error::AlreadyMapped) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Linux's `update_mmu_cache` → `make_coherent` for the alias just
    /// mapped at `page` → `pa`: under the lock of the page's level-3 table,
    /// the policy is applied to every mapping of the frame, in every VM.
    /// Counts what it did; errors are logged (the guest runs on, its
    /// mappings as they are).
    fn make_coherent(&self, page: u64, pa: PhysAddr) {
        VmStats::bump(&self.stats.coherency_faults);
        let spaces = all_spaces();
        let adjust = policy_adjust();
        let ipa = Ipa(page);
        let first = {
            let rcu = self.s2.rcu().read_lock();
            let Some(pmd) = self.s2.pmd_lookup(&rcu, ipa) else { return };
            let Some(mut pte) = self.s2.pte_offset_map_lock(&pmd) else { return };
            // Unmapped or replaced since it was mapped: nothing to do.
            if !pte.get_at(ipa).is_ok_and(|e| e.is_leaf(3) && e.addr() == pa) {
                return;
            }
            make_coherent(&mut pte, ipa, &spaces, &adjust, &PocByPa)
        };
        let mut c = match first {
            Ok(c) => c,
            Err(e) => {
                log::warn!("vm{}: make_coherent at {page:#x}: {e}", self.id);
                return;
            }
        };
        if c.deferred > 0 {
            // Their locks were busy against the lock order: now that none
            // is held, take each in turn.
            match self.s2.adjust_aliases(ipa, &spaces, &adjust, &PocByPa) {
                Ok(d) => {
                    c.adjusted += d.adjusted;
                    c.skipped += d.skipped;
                    c.retries += d.retries;
                }
                Err(e) => log::warn!("vm{}: adjust_aliases at {page:#x}: {e}", self.id),
            }
        }
        self.count_coherence(&c);
    }

    fn count_coherence(&self, c: &Coherence) {
        let add = |a: &AtomicU64, n: u32| a.fetch_add(u64::from(n), Ordering::Relaxed);
        add(&self.stats.adjusted, c.adjusted);
        add(&self.stats.skipped, c.skipped);
        add(&self.stats.retries, c.retries);
        add(&self.stats.deferred, c.deferred);
    }

    /// Makes the page at `src` a tracked 4 KiB mapping and returns its
    /// frame: faults it in first if it is not mapped (as the guest's access
    /// would: an alias not mapped yet maps its frame), splits the block
    /// around it if it is in one. `t` is this VM's alias table, locked.
    fn track_source(&self, t: &AliasTable, src: u64) -> Result<PhysAddr, Error> {
        // Each round makes progress unless a racing collapse or fault undid
        // it; the bound only stops a livelock.
        for _ in 0..8 {
            match self.s2.translate(Ipa(src)) {
                None => match t.get(src) {
                    Some(pa) => {
                        let pa = PhysAddr(pa);
                        if self.map_alias(t, src, pa)? {
                            self.make_coherent(src, pa);
                        }
                    }
                    None => {
                        self.map_fresh_page(src)?;
                    }
                },
                Some(tr) if tr.level == 3 => match self.s2.track_page(Ipa(src)) {
                    Ok(pa) => return Ok(pa),
                    // Collapsed or unmapped meanwhile: look again.
                    Err(Error::NotMapped) => {}
                    Err(e) => return Err(e),
                },
                Some(tr) => {
                    let size = if tr.level == 2 { BLOCK } else { HUGE };
                    match self.s2.split(Ipa(src & !(size - 1)), tr.level) {
                        Ok(()) | Err(Error::NotABlock) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(Error::NotMapped)
    }

    /// Records `dst` in this VM's alias table `t` (locked by the caller) as
    /// a mapping of `pa`, a tracked frame, and unmaps what `dst` mapped:
    /// its next access faults and maps `pa`. Changes nothing on error.
    fn add_alias(&self, t: &mut AliasTable, pa: PhysAddr, dst: u64) -> Result<(), Error> {
        {
            let mut pins = PINS.lock();
            // Room in the reverse map for every mapping the frame may get:
            // those it has, one per entry that may map it (some are mapped
            // already and counted twice: on the safe side), and this one.
            let might = RMAP.mappings(pa).len() + pins.count(pa.get()) as usize + 1;
            if t.get(dst) != Some(pa.get()) && might > RMAP_MAPPINGS {
                return Err(Error::OutOfMemory);
            }
            pins.pin(pa.get());
        }
        let old = match t.insert(dst, pa.get()) {
            Ok(old) => old,
            Err(_) => {
                unpin_and_put(pa);
                return Err(Error::OutOfMemory);
            }
        };
        // Published before the unmap: see `populate`.
        self.alias_count.store(t.len(), Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Err(e) = self.unmap_frames(t, dst, PAGE) {
            // Nothing was unmapped: put the table back as it was.
            match old {
                Some(o) => {
                    let _ = t.insert(dst, o);
                }
                None => {
                    let _ = t.remove_range(dst, PAGE);
                }
            }
            self.alias_count.store(t.len(), Ordering::SeqCst);
            unpin_and_put(pa);
            return Err(e);
        }
        if let Some(o) = old {
            unpin_and_put(PhysAddr(o));
        }
        Ok(())
    }

    /// `HYP_ALIAS`: the page at `dst` becomes another mapping of the frame
    /// at `src` (mapped now if it is not), from `dst`'s next access on.
    pub fn alias(&self, src: u64, dst: u64) -> Result<(), Error> {
        let mut t = self.aliases.lock();
        if !t.can_insert(dst) {
            return Err(Error::OutOfMemory);
        }
        let pa = self.track_source(&t, src)?;
        self.add_alias(&mut t, pa, dst)
    }

    /// `HYP_SHARE`: as [`Vm::alias`], with `dst` in `target`'s RAM.
    pub fn share(&self, src: u64, target: &Vm, dst: u64) -> Result<(), Error> {
        if core::ptr::eq(self, target) {
            return Err(Error::BadConfig);
        }
        // Both alias locks, the lower VM id first.
        let (mine, mut theirs) = if self.id < target.id {
            let mine = self.aliases.lock();
            (mine, target.aliases.lock())
        } else {
            let theirs = target.aliases.lock();
            (self.aliases.lock(), theirs)
        };
        if !theirs.can_insert(dst) {
            return Err(Error::OutOfMemory);
        }
        let pa = self.track_source(&mine, src)?;
        target.add_alias(&mut theirs, pa, dst)?;
        VmStats::bump(&target.stats.shares_in);
        Ok(())
    }

    /// Unmaps `[ipa, ipa + size)` and frees the frames it mapped: an
    /// untracked one at once, a tracked one (aliased or shared) only once
    /// nothing maps or pins it. `_held` is this VM's alias table: with its
    /// lock held no page here becomes tracked between the check and the
    /// unmap (only this VM's `HYP_ALIAS`/`HYP_SHARE` track its pages).
    fn unmap_frames(&self, _held: &AliasTable, ipa: u64, size: u64) -> Result<(), Error> {
        let mut frames = Vec::new();
        let mut a = ipa;
        while a < ipa + size {
            if let Some(t) = self.s2.translate(Ipa(a)) {
                let pa = t.pa.align_down(PAGE);
                frames.push((pa, RMAP.is_tracked(pa)));
            }
            a += PAGE;
        }
        self.s2.unmap(Ipa(ipa), size)?;
        // Invalidated on return: the frames can go.
        for (pa, tracked) in frames {
            if tracked {
                put_frame(pa);
            } else {
                mm::free_frames(pa, 1);
            }
        }
        Ok(())
    }

    /// Unmaps `[ipa, ipa + size)`, frees the frames it mapped (see
    /// `unmap_frames`) and forgets the aliases in the range.
    pub fn unmap(&self, ipa: u64, size: u64) -> Result<(), Error> {
        self.unmap_locked(&mut self.aliases.lock(), ipa, size)
    }

    /// [`Vm::unmap`] with the alias table `t` locked by the caller.
    fn unmap_locked(&self, t: &mut AliasTable, ipa: u64, size: u64) -> Result<(), Error> {
        self.unmap_frames(t, ipa, size)?;
        let gone = t.remove_range(ipa, size);
        self.alias_count.store(t.len(), Ordering::SeqCst);
        for pa in gone {
            unpin_and_put(PhysAddr(pa));
        }
        Ok(())
    }

    /// Replaces the page at `ipa` by a fresh frame filled with `pattern`
    /// (an alias there is forgotten).
    pub fn remap(&self, ipa: u64, pattern: u64) -> Result<(), Error> {
        let pa = mm::alloc_frames(1).ok_or(Error::OutOfMemory)?;
        // SAFETY: a fresh frame, identity mapped, owned by us.
        let words = unsafe { core::slice::from_raw_parts_mut(pa.get() as *mut u64, 512) };
        words.fill(pattern);
        cache::clean_inval_poc(pa.get() as usize, PAGE as usize);
        let mut t = self.aliases.lock();
        let r = self
            .unmap_frames(&t, ipa, PAGE)
            .and_then(|()| self.s2.map(Ipa(ipa), pa, PAGE, &Attrs::RAM, Granularity::Pages));
        if let Err(e) = r {
            mm::free_frames(pa, 1);
            return Err(e);
        }
        let gone = t.remove_range(ipa, PAGE);
        self.alias_count.store(t.len(), Ordering::SeqCst);
        for pa in gone {
            unpin_and_put(PhysAddr(pa));
        }
        Ok(())
    }

    /// Sets the permissions of `[ipa, ipa + size)` (bit 0 R, 1 W, 2 X).
    /// Aliased pages then get the coherency policy applied again (the
    /// new attributes are those of ordinary RAM).
    pub fn protect(&self, ipa: u64, size: u64, perms: u64) -> Result<(), Error> {
        let attrs = Attrs {
            read: perms & 1 != 0,
            write: perms & 2 != 0,
            exec: if perms & 4 != 0 { Exec::All } else { Exec::Never },
            ..Attrs::RAM
        };
        self.s2.protect(Ipa(ipa), size, &attrs)?;
        if RMAP.tracked() == 0 {
            return Ok(());
        }
        let (spaces, adjust) = (all_spaces(), policy_adjust());
        for page in (ipa..ipa + size).step_by(PAGE as usize) {
            let tracked = self.s2.translate(Ipa(page)).is_some_and(|t| RMAP.is_tracked(t.pa));
            if tracked {
                match self.s2.adjust_aliases(Ipa(page), &spaces, &adjust, &PocByPa) {
                    Ok(c) => self.count_coherence(&c),
                    // Unmapped meanwhile.
                    Err(Error::NotMapped) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// A write hit a write-protected page: count it and make the page
    /// writable again (dirty logging). Under the `ro` policy a write to an
    /// aliased page write-protects its other mappings first, so that one
    /// mapping at a time is writable.
    pub fn write_fault(&self, ipa: u64) -> Result<(), Error> {
        self.stats.perm_faults.fetch_add(1, Ordering::Relaxed);
        let page = ipa & !(PAGE - 1);
        let Some(t) = self.s2.translate(Ipa(page)) else { return Ok(()) };
        let attrs = Attrs { write: true, ..t.attrs };
        if !(coherency() == Coherency::Ro && t.level == 3 && RMAP.is_tracked(t.pa)) {
            return self.s2.protect(Ipa(page), PAGE, &attrs);
        }
        // Held until this mapping is writable: a racing write fault on
        // another alias waits, then write-protects this one again.
        let _one_writer = RO_WRITER.lock();
        VmStats::bump(&self.stats.coherency_faults);
        match self.s2.adjust_aliases(Ipa(page), &all_spaces(), &read_only, &PocByPa) {
            Ok(c) => self.count_coherence(&c),
            // Unmapped meanwhile: the guest faults again.
            Err(Error::NotMapped) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.s2.protect(Ipa(page), PAGE, &attrs)
    }

    /// Whether a page of `[ipa, ipa + size)` maps a tracked frame.
    fn maps_tracked(&self, ipa: u64, size: u64) -> bool {
        RMAP.tracked() != 0
            && (ipa..ipa + size)
                .step_by(PAGE as usize)
                .any(|a| self.s2.translate(Ipa(a)).is_some_and(|t| RMAP.is_tracked(t.pa)))
    }

    /// Collapses the 2 MiB range at `ipa` into one block: in place when its
    /// pages are one contiguous, aligned run; otherwise by copying them into
    /// a fresh 2 MiB block (the pages are write-protected while they are
    /// copied, so no guest write is lost) and freeing them after.
    /// A 1 GiB range (`level` 1) collapses in place only. A 2 MiB range
    /// holding an alias, or a page that is aliased, stays as it is
    /// (`NotCollapsible`): its coherency is kept per page.
    pub fn collapse(&self, ipa: u64, level: u8) -> Result<(), Error> {
        // No page in the range becomes tracked or an alias meanwhile.
        let t = self.aliases.lock();
        if level == 2 && (t.any_in(ipa, BLOCK) || self.maps_tracked(ipa, BLOCK)) {
            return Err(Error::NotCollapsible);
        }
        match self.s2.collapse(Ipa(ipa), level) {
            Ok(_) => return Ok(()),
            Err(Error::NotCollapsible) if level == 2 => {}
            Err(e) => return Err(e),
        }
        let block = mm::alloc_frames(512).ok_or(Error::OutOfMemory)?;
        let copy = |src: mmu::PhysAddr, dst: mmu::PhysAddr| {
            // SAFETY: both are guest frames, identity mapped: `src` is mapped
            // read-only to the guest while this runs, `dst` is not mapped
            // yet; the ranges do not overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src.get() as *const u8,
                    dst.get() as *mut u8,
                    PAGE as usize,
                )
            };
            cache::clean_inval_poc(dst.get() as usize, PAGE as usize);
        };
        match self.s2.collapse_copy(Ipa(ipa), block, &copy) {
            Ok(done) => {
                // The guest may run code from the new block.
                cache::icache_inval_all();
                // Unmapped and invalidated: the old pages can go.
                for pa in done.old_pages {
                    mm::free_frames(pa, 1);
                }
                Ok(())
            }
            Err(e) => {
                mm::free_frames(block, 512);
                Err(e)
            }
        }
    }

    /// Splits the block at `ipa` (2 MiB at level 2, 1 GiB at level 1) into
    /// a table of the next level.
    pub fn split(&self, ipa: u64, level: u8) -> Result<(), Error> {
        self.s2.split(Ipa(ipa), level)
    }

    /// With automatic collapse on, collapses the 2 MiB range of `ipa` once
    /// all its pages are mapped.
    pub fn maybe_collapse(&self, ipa: u64) {
        if !self.auto_collapse.load(Ordering::Relaxed) {
            return;
        }
        let block = ipa & !(BLOCK - 1);
        if !self.in_ram(block, BLOCK) || self.table_population(block) != Some(512) {
            return;
        }
        if let Err(e) = self.collapse(block, 2) {
            log::warn!("vm{}: collapse of {block:#x}: {e}", self.id);
        }
    }

    /// Valid entries of the level-3 table mapping `ipa`, if there is one.
    fn table_population(&self, ipa: u64) -> Option<usize> {
        let rcu = self.s2.rcu().read_lock();
        let pmd = self.s2.pmd_lookup(&rcu, Ipa(ipa))?;
        let map = self.s2.pte_offset_map(&pmd)?;
        Some(self.pool.ptdesc(map.table()).valid_entries())
    }

    /// Turns automatic collapse on or off.
    pub fn set_auto_collapse(&self, on: bool) {
        self.auto_collapse.store(on, Ordering::Relaxed);
    }

    /// Pages of `[ipa, ipa + size)` mapped writable: after a protect to
    /// read-only, exactly the pages written since (dirty logging).
    pub fn dirty_count(&self, ipa: u64, size: u64) -> u64 {
        (0..size / PAGE)
            .filter(|i| self.s2.translate(Ipa(ipa + i * PAGE)).is_some_and(|t| t.attrs.write))
            .count() as u64
    }

    /// A byte the guest wrote to its console.
    pub fn console_byte(&self, b: u8) {
        let mut buf = self.console.lock();
        if b == b'\n' || buf.len() >= 1024 {
            let line = core::str::from_utf8(&buf).unwrap_or("<non-UTF-8 output>");
            crate::println!("[vm{}] {}", self.id, line);
            buf.clear();
        } else if b != b'\r' {
            buf.push(b);
        }
    }

    /// A counter for `HYP_STAT`.
    pub fn stat(&self, s: Stat) -> u64 {
        let st = self.s2.stats();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        match s {
            Stat::Faults => r(&self.stats.faults),
            Stat::PagesMapped => r(&self.stats.pages),
            Stat::BlocksMapped => r(&self.stats.blocks),
            Stat::TablesAllocated => st.tables_allocated,
            Stat::TablesFreed => st.tables_freed,
            Stat::Collapses => st.collapses,
            Stat::Splits => st.splits,
            Stat::TlbiIpa => st.tlbi_ipa,
            Stat::TlbiRange => st.tlbi_range,
            Stat::TlbiVmid => st.tlbi_vmid,
            Stat::GracePeriods => self.rcu.grace_periods(),
            Stat::PermFaults => r(&self.stats.perm_faults),
            Stat::Exits => r(&self.stats.exits),
            Stat::ExternalAborts => r(&self.stats.sea),
            Stat::CoherencyFaults => r(&self.stats.coherency_faults),
            Stat::AliasesAdjusted => r(&self.stats.adjusted),
            Stat::AliasesSkipped => r(&self.stats.skipped),
            Stat::AliasRetries => r(&self.stats.retries),
            Stat::AliasesDeferred => r(&self.stats.deferred),
            Stat::AliasEntries => self.alias_count.load(Ordering::Relaxed) as u64,
            Stat::SharesReceived => r(&self.stats.shares_in),
        }
    }

    /// Starts vCPU `index` at `entry` with `arg` in its registers (boot or
    /// PSCI CPU_ON). Returns false if it is already on.
    pub fn start_vcpu(&'static self, index: usize, entry: u64, arg: EntryArg) -> bool {
        let vcpu = self.vcpus()[index];
        let mut st = vcpu.state.lock();
        if st.status != VcpuStatus::Off {
            return false;
        }
        st.regs = GuestRegs::at_entry(entry, arg);
        st.sys = GuestSysRegs::reset();
        st.status = VcpuStatus::Runnable;
        drop(st);
        self.running.fetch_add(1, Ordering::SeqCst);
        RUNQ.lock().push_back(vcpu);
        true
    }
}

impl VmStats {
    /// Adds one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Prints the counters of every VM as a table.
pub fn print_summary() {
    let vms = VMS.lock();
    crate::println!("stage-2 counters:");
    crate::print!("  {:<22}", "counter");
    for vm in vms.iter() {
        crate::print!(" {:>10}", alloc::format!("vm{}", vm.id));
    }
    crate::println!();
    for s in Stat::ALL {
        crate::print!("  {:<22}", s.name());
        for vm in vms.iter() {
            crate::print!(" {:>10}", vm.stat(s));
        }
        crate::println!();
    }
}
