//! Virtual machines and virtual CPUs, and what they do to stage 2.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use arch::aarch64::cache;
use arch::aarch64::tlb::Stage2Tlb;
use mmu::{
    Attrs, Error, Exec, Geometry, Granularity, Ipa, LockMode, Rcu, Stage2, TableMemory, Vmid,
};
use spin::Mutex;

use crate::exception::GuestRegs;
use crate::hypercall::Stat;
use crate::mm::{self, TablePool};

/// IPA where guest RAM starts.
pub const RAM_BASE: u64 = 0x4000_0000;
/// IPA of the guest image (raw images are linked there).
pub const IMAGE_IPA: u64 = 0x4020_0000;
/// IPA of the emulated PL011.
pub const UART_IPA: u64 = 0x0900_0000;
const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;

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
}

/// EL1 system registers of a vCPU, switched when another vCPU runs on
/// the same CPU.
#[derive(Clone, Copy, Default, Debug)]
pub struct El1Regs {
    r: [u64; 20],
}

macro_rules! el1_regs {
    ($m:ident) => {
        $m!(
            0 "sctlr_el1", 1 "ttbr0_el1", 2 "ttbr1_el1", 3 "tcr_el1", 4 "mair_el1",
            5 "amair_el1", 6 "vbar_el1", 7 "contextidr_el1", 8 "cpacr_el1", 9 "esr_el1",
            10 "far_el1", 11 "afsr0_el1", 12 "afsr1_el1", 13 "elr_el1", 14 "spsr_el1",
            15 "sp_el0", 16 "tpidr_el0", 17 "tpidrro_el0", 18 "tpidr_el1", 19 "par_el1"
        )
    };
}

impl El1Regs {
    /// The state a vCPU starts with: MMU off, FP/SIMD not trapped.
    pub fn reset() -> Self {
        let mut r = Self::default();
        r.r[0] = 0x30d0_0800; // SCTLR_EL1 RES1 bits, MMU and caches off
        r.r[8] = 3 << 20; // CPACR_EL1.FPEN
        r
    }

    /// Reads the live registers.
    pub fn save(&mut self) {
        macro_rules! save { ($($i:literal $n:literal),*) => { $( self.r[$i] = arch::read_sysreg!($n); )* } }
        el1_regs!(save);
    }

    /// Writes them back.
    pub fn restore(&self) {
        macro_rules! restore {
            ($($i:literal $n:literal),*) => {
                // SAFETY: EL1 registers only affect the guest, which is not
                // running while the hypervisor switches them.
                $( unsafe { arch::write_sysreg!($n, self.r[$i]) }; )*
            }
        }
        el1_regs!(restore);
    }
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
    pub el1: El1Regs,
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
    pub s2: Stage2<'static, TablePool, Stage2Tlb>,
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
        let s2 = Stage2::new(geo, vmid, lock, pool, tlb, rcu)?;
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
                        el1: El1Regs::reset(),
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
        if resets > 0 {
            // Tells the guest it was reset (the counters survive; RAM not).
            bootargs.push_str(&alloc::format!(" resets={resets}"));
        }
        let spec = crate::fdt_writer::GuestDtbSpec {
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
        self.start_vcpu(0, boot.entry, RAM_BASE);
        Ok(())
    }

    /// PSCI SYSTEM_RESET, once every vCPU has stopped: guest RAM is freed
    /// and filled again from the image, and vCPU 0 starts over.
    pub fn reset(&'static self) -> Result<(), Error> {
        self.unmap(RAM_BASE, self.ram_size)?;
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
    /// 2 MiB block under the block policy where the block lies in RAM,
    /// otherwise a zeroed page. A racing vCPU that mapped it first wins.
    pub fn populate(&self, ipa: u64) -> Result<(), Error> {
        const HUGE: u64 = 1 << 30;
        let huge = ipa & !(HUGE - 1);
        if self.policy() == Policy::Huge && self.in_ram(huge, HUGE) {
            if let Some(pa) = mm::alloc_frames((HUGE / PAGE) as usize) {
                cache::clean_inval_poc(pa.get() as usize, HUGE as usize);
                match self.s2.map(Ipa(huge), pa, HUGE, &Attrs::RAM, Granularity::Largest) {
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
                match self.s2.map(Ipa(block), pa, BLOCK, &Attrs::RAM, Granularity::Max2M) {
                    Ok(()) => {
                        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    // Pages already there (or a racing block): fall back.
                    Err(_) => mm::free_frames(pa, 512),
                }
            }
        }
        let page = ipa & !(PAGE - 1);
        let pa = mm::alloc_frames(1).ok_or(Error::OutOfMemory)?;
        cache::clean_inval_poc(pa.get() as usize, PAGE as usize);
        match self.s2.map(Ipa(page), pa, PAGE, &Attrs::RAM, Granularity::Pages) {
            Ok(()) => {
                self.stats.pages.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(Error::AlreadyMapped) => {
                // Another vCPU faulted on the same page first.
                mm::free_frames(pa, 1);
                Ok(())
            }
            Err(e) => {
                mm::free_frames(pa, 1);
                Err(e)
            }
        }
    }

    /// Unmaps `[ipa, ipa + size)` and frees the frames it mapped.
    pub fn unmap(&self, ipa: u64, size: u64) -> Result<(), Error> {
        let mut frames = Vec::new();
        let mut a = ipa;
        while a < ipa + size {
            if let Some(t) = self.s2.translate(Ipa(a)) {
                frames.push(t.pa.align_down(PAGE));
            }
            a += PAGE;
        }
        self.s2.unmap(Ipa(ipa), size)?;
        // Invalidated on return: the frames can go.
        for pa in frames {
            mm::free_frames(pa, 1);
        }
        Ok(())
    }

    /// Replaces the page at `ipa` by a fresh frame filled with `pattern`.
    pub fn remap(&self, ipa: u64, pattern: u64) -> Result<(), Error> {
        let pa = mm::alloc_frames(1).ok_or(Error::OutOfMemory)?;
        // SAFETY: a fresh frame, identity mapped, owned by us.
        let words = unsafe { core::slice::from_raw_parts_mut(pa.get() as *mut u64, 512) };
        words.fill(pattern);
        cache::clean_inval_poc(pa.get() as usize, PAGE as usize);
        self.unmap(ipa, PAGE)?;
        match self.s2.map(Ipa(ipa), pa, PAGE, &Attrs::RAM, Granularity::Pages) {
            Ok(()) => Ok(()),
            Err(e) => {
                mm::free_frames(pa, 1);
                Err(e)
            }
        }
    }

    /// Sets the permissions of `[ipa, ipa + size)` (bit 0 R, 1 W, 2 X).
    pub fn protect(&self, ipa: u64, size: u64, perms: u64) -> Result<(), Error> {
        let attrs = Attrs {
            read: perms & 1 != 0,
            write: perms & 2 != 0,
            exec: if perms & 4 != 0 { Exec::All } else { Exec::Never },
            ..Attrs::RAM
        };
        self.s2.protect(Ipa(ipa), size, &attrs)
    }

    /// A write hit a write-protected page: count it and make the page
    /// writable again (dirty logging).
    pub fn write_fault(&self, ipa: u64) -> Result<(), Error> {
        self.stats.perm_faults.fetch_add(1, Ordering::Relaxed);
        let page = ipa & !(PAGE - 1);
        let Some(t) = self.s2.translate(Ipa(page)) else { return Ok(()) };
        let attrs = Attrs { write: true, ..t.attrs };
        self.s2.protect(Ipa(page), PAGE, &attrs)
    }

    /// Collapses the 2 MiB range at `ipa` into one block: in place when its
    /// pages are one contiguous, aligned run; otherwise by copying them into
    /// a fresh 2 MiB block (the pages are write-protected while they are
    /// copied, so no guest write is lost) and freeing them after.
    /// A 1 GiB range (`level` 1) collapses in place only.
    pub fn collapse(&self, ipa: u64, level: u8) -> Result<(), Error> {
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
        }
    }

    /// Starts vCPU `index` at `entry` with `x0 = arg` (boot or PSCI
    /// CPU_ON). Returns false if it is already on.
    pub fn start_vcpu(&'static self, index: usize, entry: u64, arg: u64) -> bool {
        let vcpu = self.vcpus()[index];
        let mut st = vcpu.state.lock();
        if st.status != VcpuStatus::Off {
            return false;
        }
        st.regs = GuestRegs::new();
        st.regs.x[0] = arg;
        st.regs.pc = entry;
        st.regs.pstate = 0x3c5; // EL1h, DAIF masked
        st.el1 = El1Regs::reset();
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
