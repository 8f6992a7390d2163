//! The machine under the VMs at EL2 ([`Machine`] for the hypervisor
//! proper): guest frames from the frame allocator, reached through the
//! identity map; stage-2 tables from the table pool; `arch`'s TLB and
//! cache maintenance; the generic timer; the console.

use core::fmt;

use mmu::{PhysAddr, Rcu};

use crate::cpu::{self, cache, PocByPa, Stage2Tlb, VcpuRegs};
use crate::machine::{EntryArg, Machine};
use crate::mm::{self, TablePool};

/// The EL2 machine.
pub struct El2 {
    pool: &'static TablePool,
    rcu: &'static Rcu,
    tlb: Stage2Tlb,
}

impl El2 {
    /// Guest frames from [`mm`], tables from `pool`, RCU domain `rcu`.
    pub fn new(pool: &'static TablePool, rcu: &'static Rcu) -> Self {
        Self { pool, rcu, tlb: Stage2Tlb::new() }
    }
}

static CACHE: PocByPa = PocByPa;

impl Machine for El2 {
    type Tables = TablePool;
    type Tlb = Stage2Tlb;
    type Cache = PocByPa;
    type Regs = VcpuRegs;

    fn tables(&self) -> &'static TablePool {
        self.pool
    }

    fn rcu(&self) -> &'static Rcu {
        self.rcu
    }

    fn cache(&self) -> &'static PocByPa {
        &CACHE
    }

    fn tlb(&'static self) -> &'static Stage2Tlb {
        &self.tlb
    }

    fn alloc_frames(&self, count: usize) -> Option<PhysAddr> {
        mm::alloc_frames(count)
    }

    fn free_frames(&self, pa: PhysAddr, count: usize) {
        mm::free_frames(pa, count);
    }

    fn write_phys(&self, pa: PhysAddr, data: &[u8]) {
        // SAFETY: `pa` is guest memory the caller owns or maps (a frame the
        // frame allocator handed out), identity mapped at EL2; `data` is
        // hypervisor memory, so the two do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), pa.get() as usize as *mut u8, data.len())
        };
    }

    fn fill_page(&self, pa: PhysAddr, pattern: u64) {
        // SAFETY: a frame the caller owns, identity mapped, page aligned:
        // 512 aligned words.
        let words = unsafe { core::slice::from_raw_parts_mut(pa.get() as usize as *mut u64, 512) };
        words.fill(pattern);
    }

    fn copy_page(&self, src: PhysAddr, dst: PhysAddr) {
        // SAFETY: two distinct frames (the caller owns `dst`; `src` is
        // mapped read-only to its guest while this runs), identity mapped.
        unsafe {
            core::ptr::copy_nonoverlapping(
                src.get() as usize as *const u8,
                dst.get() as usize as *mut u8,
                mmu::PAGE_SIZE as usize,
            )
        };
    }

    fn clean_inval_poc(&self, pa: PhysAddr, len: u64) {
        cache::clean_inval_poc(pa.get() as usize, len as usize);
    }

    fn icache_inval_all(&self) {
        cache::icache_inval_all();
    }

    fn now(&self) -> (u64, u64) {
        cpu::counter()
    }

    fn cpu(&self) -> usize {
        cpu::cpu_index()
    }

    fn kick_cpu(&self, cpu: usize) {
        crate::gic::kick(cpu);
    }

    fn print(&self, args: fmt::Arguments<'_>) {
        crate::console::print(args);
    }

    fn print_guest(&self, vm: usize, text: &[u8], end: bool) {
        crate::console::print_guest(vm, text, end);
    }

    fn regs_at_entry(&self, entry: u64, arg: EntryArg) -> VcpuRegs {
        VcpuRegs::at_entry(entry, arg)
    }
}
