//! What the VMs need from the machine under them: guest frames, table
//! pages, TLB and cache maintenance, the RCU domain, a clock, the console
//! and the vCPU register state. The VM logic (`vm`, `psci`,
//! `hypercall`) is written against this trait only, so it builds for the
//! host and is tested there against `mmu`'s fakes (`crate::testing`); the
//! hypervisor implements it at EL2 (`crate::el2`).
//!
//! Guest frames are physical memory that the machine reaches by physical
//! address: the EL2 identity map, or a host buffer posing as memory.

use core::fmt;

use mmu::{CacheMaintenance, PhysAddr, Rcu, TableMemory, TlbMaintenance};

/// What a vCPU finds in its registers when it starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EntryArg {
    /// The boot vCPU: the IPA of its device tree.
    Dtb(u64),
    /// A vCPU started with PSCI `CPU_ON`: the caller's context id.
    Context(u64),
}

/// The machine the VMs run on (see the module documentation).
pub trait Machine: Sync + Send + Sized + 'static {
    /// Where stage-2 tables live.
    type Tables: TableMemory + Sync + Send + 'static;
    /// TLB maintenance for one VM's stage 2.
    type Tlb: TlbMaintenance + Sync + Send + 'static;
    /// Data-cache maintenance by physical address.
    type Cache: CacheMaintenance + Sync + Send + 'static;
    /// A vCPU's architectural state: registers and system registers.
    type Regs: Send + 'static;

    /// The stage-2 table pool.
    fn tables(&self) -> &'static Self::Tables;
    /// The RCU domain of every stage 2.
    fn rcu(&self) -> &'static Rcu;
    /// Cache maintenance.
    fn cache(&self) -> &'static Self::Cache;
    /// Stage-2 TLB maintenance, shared by every VM (each operation names
    /// the VM's VMID and VTTBR).
    fn tlb(&'static self) -> &'static Self::Tlb;

    /// `count` (a power of two) contiguous zeroed frames aligned to their
    /// size, or `None`.
    fn alloc_frames(&self, count: usize) -> Option<PhysAddr>;
    /// Returns frames from [`alloc_frames`](Machine::alloc_frames) (a part
    /// of an allocation may be returned on its own).
    fn free_frames(&self, pa: PhysAddr, count: usize);
    /// Writes `data` at `pa` (guest memory the caller owns or maps).
    fn write_phys(&self, pa: PhysAddr, data: &[u8]);
    /// Fills the 4 KiB page at `pa` with the 64-bit `pattern`.
    fn fill_page(&self, pa: PhysAddr, pattern: u64);
    /// Copies the 4 KiB page at `src` to `dst`.
    fn copy_page(&self, src: PhysAddr, dst: PhysAddr);
    /// Cleans and invalidates `[pa, pa + len)` to the point of coherency
    /// (a guest with its MMU off reads memory non-cacheably).
    fn clean_inval_poc(&self, pa: PhysAddr, len: u64);
    /// Invalidates the instruction caches (after loading code).
    fn icache_inval_all(&self);

    /// A clock: (ticks, ticks per second).
    fn now(&self) -> (u64, u64);
    /// The CPU this runs on.
    fn cpu(&self) -> usize;
    /// Makes CPU `cpu` leave the guest it runs, so that it looks at its
    /// vCPU's interrupts again.
    fn kick_cpu(&self, cpu: usize);
    /// Prints on the hypervisor's console: the hypervisor's own text
    /// (`conmux::Output::hyp`).
    fn print(&self, args: fmt::Arguments<'_>);
    /// Prints a piece of VM `vm`'s console line on the hypervisor's
    /// console: `text` (no newline in it), then the end of the line if
    /// `end`; prefixed with `[vmN] ` unless it continues the VM's
    /// unfinished line (`conmux::Output::guest`).
    fn print_guest(&self, vm: usize, text: &[u8], end: bool);

    /// The state of a vCPU about to run its first instruction at `entry`
    /// with `arg` in its registers (boot or PSCI `CPU_ON`), its system
    /// registers in their reset state.
    fn regs_at_entry(&self, entry: u64, arg: EntryArg) -> Self::Regs;
}
