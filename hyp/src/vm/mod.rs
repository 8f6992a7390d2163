//! Virtual machines and virtual CPUs: what they are made of, how they are
//! started, stopped and reset, and (in `mem` and `alias`) what they do to
//! stage 2. Portable: written against [`Machine`], built and tested on the
//! host (`crate::testing`) as well as at EL2.
//!
//! # Lock order
//!
//! This is the one place the hypervisor's lock order is written down;
//! `docs/HYPERVISOR.md` repeats it. A lock may be taken while holding only
//! locks above it:
//!
//! 1. a vCPU's registers ([`Vcpu::regs`]): held by the CPU that runs the
//!    vCPU, across the guest's run and the handling of its exits. Anyone
//!    else takes them only from a vCPU that is off ([`Vcpu::power`]), which
//!    nobody runs: so no guest request ever waits for a lock that a running
//!    guest holds (PSCI `CPU_ON` of a running vCPU answers `ALREADY_ON`
//!    without touching its registers);
//! 2. [`Guests`]'s `ro_writer` (the `ro` coherency policy's one writer);
//! 3. a VM's sharing lock ([`Vm::sharing`]); two of them only in VM id
//!    order (accept, revoke);
//! 4. stage-2 page-table locks, in `mmu`'s own order
//!    (`docs/ARCHITECTURE.md`);
//! 5. a VM's console line buffer: a finished line is printed under it,
//!    so the hypervisor's console lock is taken inside it;
//! 6. the console input ([`Guests::poll_input`]): a byte is put in a VM's
//!    PL011 under it;
//! 7. a VM's PL011 model ([`Vm::uart_read`] and friends): its interrupt
//!    hook runs under it, so the virtual interrupt controller's lock will
//!    nest inside;
//! 8. leaves, under which nothing else is taken: `mmu`'s reverse map, the
//!    frame and table allocators, the run queue, a VM's warning limiter,
//!    the hypervisor's console and heap.
//!
//! No lock is held while waiting for a guest, and the run queue is never
//! held while a vCPU's registers are taken.

mod alias;
mod coherency;
mod dirty;
mod error;
mod paging;
mod sched;
pub mod share;
#[cfg(test)]
mod tests;

pub use error::Error;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use mmu::{Geometry, LockMode, Rcu, Rmap, Stage2, Vmid};
use spin::Mutex;

use crate::conmux::{self, Routed};
use crate::fdt_writer::GuestGic;
use crate::hypercall::Stat;
use crate::layout;
use crate::machine::{EntryArg, Machine};
use crate::platform::Coherency;
use crate::ratelimit::RateLimit;
use crate::vgic::Vgic;
use crate::vuart::{self, Pl011};
use share::{Sharing, ALIAS_ENTRIES, OFFERS};

/// IPA where guest RAM starts.
pub const RAM_BASE: u64 = 0x4000_0000;
/// IPA of the guest image (raw images are linked there).
pub const IMAGE_IPA: u64 = 0x4020_0000;
/// IPA of the emulated PL011.
pub const UART_IPA: u64 = 0x0900_0000;
/// The emulated PL011's interrupt: SPI 1, INTID 33 (as on QEMU `virt`).
pub const UART_INTID: u32 = 33;
const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;
const HUGE: u64 = 1 << 30;

/// Tracked pages one VM may be charged for in the reverse map: one per
/// alias entry and per offer it can have.
pub const RMAP_QUOTA: usize = ALIAS_ENTRIES + OFFERS;

/// A VM's stage 2.
pub type S2<M> = Stage2<'static, &'static <M as Machine>::Tables, &'static <M as Machine>::Tlb>;

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

impl Policy {
    /// The policy `HYP_SET_POLICY` names (0, 1 or 2).
    pub fn from_abi(v: u64) -> Option<Self> {
        match v {
            0 => Some(Policy::Pages),
            1 => Some(Policy::Blocks),
            2 => Some(Policy::Huge),
            _ => None,
        }
    }
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
    /// The interrupt controller the guest sees (`None`: none, the host
    /// has no GIC).
    pub gic: Option<crate::vgic::Version>,
    /// GICv2: the host's virtual CPU interface (`GICV`), mapped at the
    /// guest's GICC address.
    pub gicv: Option<u64>,
    /// The VM has QEMU `virt`'s flash at IPA 0 ([`layout::FLASH_BASE`],
    /// [`layout::FLASH_SIZE`]): read-only memory, erased (`0xff`) but for
    /// the firmware loaded there (a bundle's `vmN/firmware`).
    pub flash: bool,
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
    /// Shares this VM accepted.
    pub shares_in: AtomicU64,
    /// Undefined-instruction exceptions injected (unhandled traps).
    pub undef: AtomicU64,
    /// Calls refused (hypercalls and PSCI calls answered with an error).
    pub refused: AtomicU64,
    /// Instructions executed at EL2 for its exits (`Stat::El2Instructions`).
    pub el2_instructions: AtomicU64,
    /// Exits for physical interrupts (`Stat::IrqExits`).
    pub irq_exits: AtomicU64,
    /// vCPUs put to sleep in WFI (`Stat::Sleeps`).
    pub sleeps: AtomicU64,
    /// Lazy loads of its vCPUs' FP state (`Stat::FpLoads`).
    pub fp_loads: AtomicU64,
    /// Exits by cause: HVC and SMC (`Stat::CallExits`), WFI and WFE
    /// (`Stat::WfxExits`), emulated devices (`Stat::MmioExits`), other
    /// trapped instructions (`Stat::TrapExits`).
    pub call_exits: AtomicU64,
    /// See `call_exits`.
    pub wfx_exits: AtomicU64,
    /// See `call_exits`.
    pub mmio_exits: AtomicU64,
    /// See `call_exits`.
    pub trap_exits: AtomicU64,
}

impl VmStats {
    /// Adds one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A VM's power state, one atomic so that it is never seen half changed
/// (a VM being reset is not a stopped VM).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum VmPower {
    /// Created, RAM being loaded, vCPU 0 not started yet.
    Booting = 0,
    /// Running: its vCPUs run; stopped once all are off.
    Running = 1,
    /// PSCI `SYSTEM_RESET`: its vCPUs stop; the last one resets the VM.
    Resetting = 2,
    /// Off for good (`SYSTEM_OFF`, or stopped by the hypervisor).
    Off = 3,
}

/// A VM's power state ([`VmPower`], bits 7:0) and its vCPUs that are on
/// or being started (bits 31:8), as one value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct VmState(u32);

impl VmState {
    const BOOTING: VmState = VmState(VmPower::Booting as u32);
    /// One vCPU in the count.
    const ONE: u32 = 1 << 8;

    fn power(self) -> VmPower {
        match self.0 & 0xff {
            0 => VmPower::Booting,
            1 => VmPower::Running,
            2 => VmPower::Resetting,
            _ => VmPower::Off,
        }
    }

    fn running(self) -> u32 {
        self.0 >> 8
    }

    fn with_power(self, p: VmPower) -> VmState {
        VmState((self.0 & !0xff) | p as u32)
    }
}

/// A vCPU's power state (PSCI's view of it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum VcpuPower {
    /// Off: nobody runs it or holds its registers.
    Off = 0,
    /// Being started (`CPU_ON` claimed it, its registers are being set).
    OnPending = 1,
    /// On: running, ready to run, or waiting.
    On = 2,
}

/// Why `CPU_ON` did not start a vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CpuOnError {
    /// It is on.
    AlreadyOn,
    /// Another `CPU_ON` of it is under way.
    OnPending,
    /// The VM is not running (being reset or stopped).
    NotRunning,
}

/// A virtual CPU.
pub struct Vcpu<M: Machine> {
    /// Its VM.
    pub vm: &'static Vm<M>,
    /// Index in the VM (its MPIDR Aff0).
    pub index: usize,
    /// Its power state (a [`VcpuPower`]).
    power: AtomicU8,
    /// Its architectural state: held by the CPU running it (see the lock
    /// order in the module documentation).
    pub regs: Mutex<M::Regs>,
    /// Queued, running or blocked.
    sched: sched::Sched,
}

impl<M: Machine> Vcpu<M> {
    /// Its power state.
    pub fn power(&self) -> VcpuPower {
        match self.power.load(Ordering::Acquire) {
            0 => VcpuPower::Off,
            1 => VcpuPower::OnPending,
            _ => VcpuPower::On,
        }
    }

    /// The vCPU stops (PSCI `CPU_OFF`, its VM stopping or being reset).
    /// Called by the CPU that ran it, after letting go of its registers.
    /// The last vCPU of a VM being reset carries out the reset.
    pub fn stop(&'static self) {
        let was = self.power.swap(VcpuPower::Off as u8, Ordering::AcqRel);
        debug_assert_eq!(
            was,
            VcpuPower::On as u8,
            "vm{} vcpu{} stopped twice",
            self.vm.id,
            self.index
        );
        self.vm.vcpu_stopped();
    }
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
    pub bootargs: String,
    /// `bootargs` are the guest's whole command line (a bundle's): nothing
    /// is added. Otherwise ` vm=N` (and after a reset ` resets=N`) follow,
    /// for the test images.
    pub exact_cmdline: bool,
    /// The guest's initramfs: placed at the top of its RAM (of the first
    /// 512 MiB for ARMv7 guests, which need it in their low memory) and
    /// named in the DTB (`linux,initrd-start`, `linux,initrd-end`).
    pub initrd: Option<&'static [u8]>,
    /// The interrupt controller the DTB describes: the boot code picks it
    /// from the host's GIC with [`GuestGic::for_host`] (a GICv3's
    /// `redist_count` is `vcpus`); [`GuestGic::native`] where the host's
    /// is not known.
    pub gic: GuestGic,
}

/// Every VM, the reverse map they share and the run queue: one per
/// hypervisor (one per test on the host).
pub struct Guests<M: Machine> {
    m: &'static M,
    /// The reverse map of every VM's stage 2: the frames aliases and shares
    /// let several IPAs map are tracked here, so that a fault on one mapping
    /// finds the others (`mmu::make_coherent`) and a frame is freed only
    /// once nothing maps or holds it. Made with [`Rmap::with_quota`]`(`
    /// [`RMAP_QUOTA`]`)`.
    pub rmap: &'static Rmap,
    vms: spin::Once<Vec<&'static Vm<M>>>,
    /// vCPUs ready to run, taken by whichever CPU is free.
    runq: Mutex<VecDeque<&'static Vcpu<M>>>,
    coherency: Coherency,
    /// The earliest deadline of a blocked vCPU (see `sched`).
    earliest: core::sync::atomic::AtomicU64,
    /// The CPUs idle in the run loop, waiting for an interrupt: bit per
    /// CPU (see `sched`).
    idle: AtomicU32,
    /// Serialises the `ro` policy's write faults on aliased pages, so that
    /// they leave one writable mapping of a page, not several.
    ro_writer: Mutex<()>,
    /// Which VM console input goes to (`conmux`); held while bytes are
    /// taken from the console and delivered, so they arrive in order.
    input: Mutex<conmux::Input>,
}

impl<M: Machine> Guests<M> {
    /// No VMs yet, on machine `m`, with coherency policy `coherency`, their
    /// reverse map `rmap` (which should be `Rmap::with_quota(RMAP_QUOTA)`;
    /// a `static` at EL2: it is too large for a CPU's stack).
    pub fn new(m: &'static M, coherency: Coherency, rmap: &'static Rmap) -> Self {
        Self {
            m,
            rmap,
            vms: spin::Once::new(),
            runq: Mutex::new(VecDeque::new()),
            coherency,
            earliest: core::sync::atomic::AtomicU64::new(u64::MAX),
            idle: AtomicU32::new(0),
            ro_writer: Mutex::new(()),
            input: Mutex::new(conmux::Input::new()),
        }
    }

    /// The machine.
    pub fn machine(&self) -> &'static M {
        self.m
    }

    /// Creates the VMs `specs` describes (ids 1, 2, ... in order) and
    /// publishes them; once only.
    pub fn create(&'static self, specs: &[VmSpec]) -> Result<&'static [&'static Vm<M>], Error> {
        let mut list = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if spec.id != i + 1 {
                return Err(Error::BadSpec("VM ids must be 1, 2, ... in order"));
            }
            list.push(Vm::create(self, spec)?);
        }
        Ok(self.vms.call_once(|| list).as_slice())
    }

    /// The VMs, in id order (empty before [`Guests::create`]).
    pub fn vms(&self) -> &[&'static Vm<M>] {
        self.vms.get().map_or(&[], Vec::as_slice)
    }

    /// The VM with id `id`.
    pub fn vm(&self, id: u64) -> Option<&'static Vm<M>> {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        self.vms().get(i).copied()
    }

    /// Every VM's stage 2: the spaces an aliased frame may be mapped in.
    fn spaces(&self) -> Vec<&'static S2<M>> {
        self.vms().iter().map(|vm| &vm.s2).collect()
    }

    /// The next vCPU to run, if any is ready.
    pub fn next_runnable(&self) -> Option<&'static Vcpu<M>> {
        self.runq.lock().pop_front()
    }

    /// Puts a vCPU that is on back on the run queue (it yielded).
    pub fn requeue(&self, vcpu: &'static Vcpu<M>) {
        vcpu.queued();
        self.runq.lock().push_back(vcpu);
        self.kick_idle(vcpu);
    }

    /// vCPUs on the run queue.
    pub fn queued(&self) -> usize {
        self.runq.lock().len()
    }

    /// Whether every VM has stopped for good: off, or running with every
    /// vCPU off. A VM booting or being reset has not.
    pub fn all_stopped(&self) -> bool {
        let vms = self.vms();
        !vms.is_empty() && vms.iter().all(|vm| vm.has_stopped())
    }

    /// Moves console input to the VMs: up to [`INPUT_BATCH`] bytes from
    /// `next` (the console's receiver, which must not wait), each to the
    /// VM that owns the input or, for the escape (`conmux`), switching the
    /// owner with a note on the console. Does nothing if another CPU is at
    /// it. A byte for a VM whose receive FIFO is full is lost (an overrun
    /// its PL011 records), as on a real UART: no VM holds up the console.
    pub fn poll_input(&self, mut next: impl FnMut() -> Option<u8>) {
        let Some(mut input) = self.input.try_lock() else {
            return;
        };
        for _ in 0..INPUT_BATCH {
            let Some(b) = next() else {
                break;
            };
            let r = input.feed(b, self.vms().len());
            match r {
                Routed::Deliver { vm, byte } => {
                    if let Some(vm) = self.vm(vm as u64) {
                        vm.uart_input(byte);
                    }
                }
                _ => {
                    if let Some(note) = conmux::Input::note(r) {
                        self.m.print(format_args!("{note}\n"));
                    }
                }
            }
        }
    }

    /// The VM console input goes to.
    pub fn input_owner(&self) -> usize {
        self.input.lock().owner()
    }

    /// Frees what waited for a grace period, in every VM.
    pub fn reclaim(&self) {
        for vm in self.vms() {
            vm.s2.reclaim();
        }
    }

    /// Prints the counters of every VM as a table.
    pub fn print_summary(&self) {
        let m = self.m;
        let vms = self.vms();
        m.print(format_args!("stage-2 counters:\n  {:<22}", "counter"));
        for vm in vms {
            m.print(format_args!(" {:>10}", alloc::format!("vm{}", vm.id)));
        }
        m.print(format_args!("\n"));
        for s in Stat::ALL {
            m.print(format_args!("  {:<22}", s.name()));
            for vm in vms {
                m.print(format_args!(" {:>10}", vm.stat(s)));
            }
            m.print(format_args!("\n"));
        }
    }
}

/// A virtual machine.
pub struct Vm<M: Machine> {
    /// Number, from 1.
    pub id: usize,
    /// The VMs it lives among.
    pub guests: &'static Guests<M>,
    /// Its stage 2.
    pub s2: S2<M>,
    /// Guest RAM's page attributes, encoded once for the fault path.
    ram: mmu::PageProt,
    /// Guest RAM size in bytes.
    pub ram_size: u64,
    /// Size of its flash at [`layout::FLASH_BASE`]: 0 (none) or
    /// [`layout::FLASH_SIZE`].
    pub flash_size: u64,
    /// The flash's page attributes: readable and executable, not
    /// writable.
    flash_prot: mmu::PageProt,
    /// The erased flash page (firmware VMs only): one frame of `0xff`
    /// that every flash page the firmware's image does not cover maps,
    /// read-only, so that a guest reading all of its flash costs stage-2
    /// tables and no frames. Allocated when the VM is created and never
    /// freed (a VM lives as long as the hypervisor): [`Vm::put_leaf`]
    /// keeps the unmaps of a reset from handing it to the allocator.
    erased: Option<mmu::PhysAddr>,
    policy: AtomicU8,
    /// Counters.
    pub stats: VmStats,
    /// vCPUs (set once, right after the VM is created: they point back
    /// at it).
    vcpus: spin::Once<Vec<&'static Vcpu<M>>>,
    /// Console output not yet printed (up to a newline, or until the
    /// guest waits: [`Vm::console_flush`]).
    console: Mutex<Vec<u8>>,
    /// The emulated PL011's registers and receive FIFO.
    uart: Mutex<Pl011>,
    /// Console input for it that its receive FIFO had no room for yet, in
    /// order (at most [`INPUT_HOLD`] bytes): moved into the FIFO as the
    /// guest reads, as a UART's flow control would hold the sender.
    uart_hold: Mutex<VecDeque<u8>>,
    /// The PL011's interrupt output as last reported to
    /// [`Vm::uart_irq_changed`].
    uart_irq: AtomicBool,
    /// Who may be waiting with an unfinished console line: the index of
    /// the vCPU that wrote `UARTDR` last, shifted left by one, with bit 0
    /// set once it has read `UARTFR` since ([`NO_WRITER`] at first).
    uart_writer: AtomicUsize,
    /// The power state and the vCPUs on or being started, in one word (a
    /// [`VmState`]) so that whoever asks whether the VM has stopped sees
    /// both from the same moment.
    state: AtomicU32,
    /// Resets so far.
    resets: AtomicU64,
    /// What the VM boots from, kept for SYSTEM_RESET.
    boot: spin::Once<Boot>,
    /// Collapse a 2 MiB range once fully populated.
    auto_collapse: AtomicBool,
    /// The alias table and the offers, and the lock that serialises what
    /// may change a page's tracking or free a frame in this VM: aliases,
    /// shares, unmap, remap, reset, collapse, block population and the
    /// mapping of aliases on faults.
    sharing: Mutex<Sharing>,
    /// Entries in the alias table, readable without its lock: the fault
    /// path only looks at the table when there are any.
    alias_count: AtomicUsize,
    /// Rate of warnings about this VM's refused calls.
    warnings: Mutex<RateLimit>,
    /// Its interrupt controller (never held across a guest's run).
    pub vgic: Mutex<Vgic>,
    /// What its virtual counter lags the physical one by
    /// (`CNTVOFF_EL2`): the counter at creation, so a guest's time
    /// starts near 0.
    pub cntvoff: u64,
}

/// The attributes of a VM's flash pages: normal memory the guest reads
/// and runs code from but cannot write (it is ROM to the guest: the
/// hypervisor emulates no CFI flash commands).
const FLASH_ATTRS: mmu::Attrs = mmu::Attrs { write: false, ..mmu::Attrs::RAM };

/// What the trap handler does with a guest's store to its flash
/// ([`Vm::flash_store`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FlashStore {
    /// Nothing is written: the guest goes on after the instruction.
    Skip,
    /// The guest takes a synchronous external abort.
    Abort,
}

/// A frame of erased flash for a new firmware VM ([`Vm::erased`]):
/// filled with `0xff` and cleaned to the PoC, since the guest may read it
/// with its caches off.
fn erased_page<M: Machine>(m: &M) -> Result<mmu::PhysAddr, Error> {
    let pa = m.alloc_frames(1).ok_or(Error::NoFrames { frames: 1 })?;
    m.fill_page(pa, layout::FLASH_ERASED);
    m.clean_inval_poc(pa, PAGE);
    Ok(pa)
}

/// Bytes of a guest console line the hypervisor buffers before it prints
/// them anyway (the line goes on).
const CONSOLE_LINE: usize = 1024;

/// Most console input bytes [`Guests::poll_input`] moves in one call.
pub const INPUT_BATCH: usize = 64;

/// Console input a VM may have waiting beyond its PL011's receive FIFO:
/// a pasted line is not lost to the FIFO's 32 bytes, and a VM that never
/// reads its input holds up nothing (what comes past this is lost, as an
/// overrun).
pub const INPUT_HOLD: usize = 4096;

/// [`Vm::uart_writer`] before any vCPU transmitted: matches no vCPU.
const NO_WRITER: usize = usize::MAX;

impl<M: Machine> Vm<M> {
    /// Creates a VM as `spec` says, in `guests`.
    fn create(guests: &'static Guests<M>, spec: &VmSpec) -> Result<&'static Vm<M>, Error> {
        let m = guests.m;
        let VmSpec { id, geo, vcpus, ram_size, policy, lock, gic, gicv, flash } = *spec;
        let vmid = Vmid(u16::try_from(id).map_err(|_| Error::BadSpec("VM id beyond 16 bits"))?);
        let s2 = Stage2::new(geo, vmid, lock, m.tables(), m.tlb(), m.rcu())?.with_rmap(guests.rmap);
        if let (Some(crate::vgic::Version::V2), Some(pa)) = (gic, gicv) {
            use crate::vgic::mmio::{GICC_BASE, GICC_SIZE};
            let (ipa, pa) = (mmu::Ipa(GICC_BASE), mmu::PhysAddr(pa));
            s2.map(ipa, pa, GICC_SIZE, &mmu::Attrs::DEVICE, mmu::Granularity::Pages)?;
        }
        let (ram, flash_prot) = (s2.page_prot(&mmu::Attrs::RAM)?, s2.page_prot(&FLASH_ATTRS)?);
        // The last step that can fail: nothing is left to free after it.
        let erased = if flash { Some(erased_page(m)?) } else { None };
        let vm: &'static Vm<M> = alloc::boxed::Box::leak(alloc::boxed::Box::new(Vm {
            id,
            guests,
            ram,
            flash_prot,
            erased,
            s2,
            ram_size,
            flash_size: if flash { layout::FLASH_SIZE } else { 0 },
            policy: AtomicU8::new(policy as u8),
            stats: VmStats::default(),
            vcpus: spin::Once::new(),
            console: Mutex::new(Vec::with_capacity(CONSOLE_LINE)),
            uart: Mutex::new(Pl011::new()),
            uart_hold: Mutex::new(VecDeque::new()),
            uart_irq: AtomicBool::new(false),
            uart_writer: AtomicUsize::new(NO_WRITER),
            state: AtomicU32::new(VmState::BOOTING.0),
            resets: AtomicU64::new(0),
            boot: spin::Once::new(),
            auto_collapse: AtomicBool::new(false),
            sharing: Mutex::new(Sharing::new(id)),
            alias_count: AtomicUsize::new(0),
            warnings: Mutex::new(RateLimit::new(8, 4)),
            vgic: Mutex::new(gic.map_or_else(|| Vgic::absent(vcpus), |v| Vgic::new(v, vcpus))),
            cntvoff: m.now().0,
        }));
        let list = (0..vcpus)
            .map(|index| {
                &*alloc::boxed::Box::leak(alloc::boxed::Box::new(Vcpu {
                    vm,
                    index,
                    power: AtomicU8::new(VcpuPower::Off as u8),
                    regs: Mutex::new(m.regs_at_entry(0, EntryArg::Context(0))),
                    sched: sched::Sched::new(),
                }))
            })
            .collect();
        vm.vcpus.call_once(|| list);
        Ok(vm)
    }

    /// The machine.
    pub fn machine(&self) -> &'static M {
        self.guests.m
    }

    /// The RCU domain.
    pub fn rcu(&self) -> &'static Rcu {
        self.guests.m.rcu()
    }

    /// Resets so far.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// The vCPUs.
    pub fn vcpus(&self) -> &[&'static Vcpu<M>] {
        self.vcpus.get().map_or(&[], |v| v.as_slice())
    }

    /// The VM's fault policy.
    pub fn policy(&self) -> Policy {
        Policy::from_abi(u64::from(self.policy.load(Ordering::Relaxed))).unwrap_or(Policy::Pages)
    }

    /// Sets the fault policy.
    pub fn set_policy(&self, p: Policy) {
        self.policy.store(p as u8, Ordering::Relaxed);
    }

    /// Turns automatic collapse on or off.
    pub fn set_auto_collapse(&self, on: bool) {
        self.auto_collapse.store(on, Ordering::Relaxed);
    }

    /// Whether `[ipa, ipa + len)` lies in guest RAM.
    pub fn in_ram(&self, ipa: u64, len: u64) -> bool {
        ipa >= RAM_BASE && len <= self.ram_size && ipa - RAM_BASE <= self.ram_size - len
    }

    /// Whether `[ipa, ipa + len)` lies in the VM's flash (none unless
    /// [`VmSpec::flash`]).
    pub fn in_flash(&self, ipa: u64, len: u64) -> bool {
        let base = layout::FLASH_BASE;
        ipa >= base && len <= self.flash_size && ipa - base <= self.flash_size - len
    }

    /// What becomes of a store the guest made to its flash, which is ROM
    /// to it (no CFI command set is emulated): `syn` is the data abort's
    /// syndrome, a stage-2 permission fault on a write at `ipa`. A store
    /// the syndrome describes is dropped, with a warning that the VM's
    /// limiter rate-limits (a guest storing in a loop cannot flood the
    /// console); so is a cache maintenance instruction (`DC IVAC` needs
    /// write permission), silently: the flash holds nothing the guest
    /// could have written. Anything else takes an external abort: a store
    /// without a valid syndrome (`STP`, an atomic, `DC ZVA`...) cannot be
    /// stepped over without knowing what it did, nor can a stage-1 table
    /// walk that wanted to update a descriptor in the flash.
    pub fn flash_store(&self, syn: crate::syndrome::Syndrome, ipa: u64) -> FlashStore {
        if syn.s1ptw() {
            return FlashStore::Abort;
        }
        if syn.cache_maintenance() {
            return FlashStore::Skip;
        }
        if syn.access().is_none() {
            return FlashStore::Abort;
        }
        self.warn(format_args!("write to the flash at IPA {ipa:#x} ignored (read-only)"));
        FlashStore::Skip
    }

    /// Whether `pa` is the VM's erased flash page ([`Vm::erased`]), which
    /// is mapped at many IPAs and belongs to none of them.
    pub fn is_erased_page(&self, pa: mmu::PhysAddr) -> bool {
        self.erased == Some(pa)
    }

    // ---- power ---------------------------------------------------------

    fn state(&self) -> VmState {
        VmState(self.state.load(Ordering::SeqCst))
    }

    /// Changes the power state as `f` says, atomically with the count;
    /// returns the state it was in.
    fn set_power(&self, f: impl Fn(VmPower) -> Option<VmPower>) -> VmState {
        let r = self.state.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            f(VmState(v).power()).map(|p| VmState(v).with_power(p).0)
        });
        VmState(r.unwrap_or_else(|v| v))
    }

    /// Its power state.
    pub fn power(&self) -> VmPower {
        self.state().power()
    }

    /// Whether its vCPUs may run.
    pub fn is_running(&self) -> bool {
        self.power() == VmPower::Running
    }

    /// Whether it has stopped for good: off or running, with every vCPU
    /// off. Both read at one moment: a VM being reset has its vCPUs off but
    /// has not stopped. A VM just powered off has not stopped either while
    /// one of its vCPUs is still finishing an exit on some CPU (it stops
    /// at the end of it): its counters are final only then.
    pub fn has_stopped(&self) -> bool {
        let s = self.state();
        match s.power() {
            VmPower::Off | VmPower::Running => s.running() == 0,
            VmPower::Booting | VmPower::Resetting => false,
        }
    }

    /// PSCI `SYSTEM_OFF`, or the hypervisor stopping the VM: off for good,
    /// whatever it was doing (a reset under way is cancelled). Its vCPUs
    /// stop at their next exit.
    pub fn power_off(&self) {
        self.set_power(|_| Some(VmPower::Off));
        self.wake_all();
    }

    /// Wakes every vCPU, so that blocked ones see the VM's new state.
    fn wake_all(&self) {
        for &vcpu in self.vcpus() {
            vcpu.wake();
        }
    }

    /// PSCI `SYSTEM_RESET`: once every vCPU has stopped, the last one to
    /// stop resets the VM. Ignored unless the VM is running (a reset or a
    /// power-off is under way).
    pub fn request_reset(&self) {
        self.set_power(|p| (p == VmPower::Running).then_some(VmPower::Resetting));
        self.wake_all();
    }

    /// A vCPU of this VM stopped.
    fn vcpu_stopped(&'static self) {
        let was = VmState(self.state.fetch_sub(VmState::ONE, Ordering::SeqCst));
        // The last vCPU of a VM being reset: nothing else can change its
        // state now (no vCPU of it runs), so it resets it.
        if was.running() == 1 && was.power() == VmPower::Resetting {
            if let Err(e) = self.reset() {
                self.machine()
                    .print(format_args!("vm{}: reset failed: {e}: VM stopped\n", self.id));
                self.power_off();
            }
        }
    }

    /// Starts vCPU `index` at `entry` with `arg` in its registers (PSCI
    /// `CPU_ON`, from a running vCPU of this VM). Never waits for a running
    /// vCPU: one that is on or being started is refused.
    pub fn start_vcpu(
        &'static self,
        index: usize,
        entry: u64,
        arg: EntryArg,
    ) -> Result<(), CpuOnError> {
        let vcpu = self.claim(index, entry, arg, true)?;
        self.guests.requeue(vcpu);
        Ok(())
    }

    /// Turns vCPU `index` on with its entry state, counted among the
    /// running, but not yet on the run queue: the caller queues it once
    /// the VM may run it (no CPU may find it while the VM is still being
    /// reset, or it would stop it again).
    fn claim(
        &'static self,
        index: usize,
        entry: u64,
        arg: EntryArg,
        only_if_running: bool,
    ) -> Result<&'static Vcpu<M>, CpuOnError> {
        let vcpu = self.vcpus()[index];
        if let Err(was) = vcpu.power.compare_exchange(
            VcpuPower::Off as u8,
            VcpuPower::OnPending as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            return Err(if was == VcpuPower::On as u8 {
                CpuOnError::AlreadyOn
            } else {
                CpuOnError::OnPending
            });
        }
        // Counted, and the VM's state read, in one step. A `CPU_ON` caller
        // is a running vCPU of this VM, counted too, so taking the count
        // back cannot bring it to zero (nor start a reset).
        let was = VmState(self.state.fetch_add(VmState::ONE, Ordering::SeqCst));
        if only_if_running && was.power() != VmPower::Running {
            self.state.fetch_sub(VmState::ONE, Ordering::SeqCst);
            vcpu.power.store(VcpuPower::Off as u8, Ordering::Release);
            return Err(CpuOnError::NotRunning);
        }
        // Off, so nobody holds its registers (the runner lets go of them
        // before it marks the vCPU off).
        *vcpu.regs.lock() = self.machine().regs_at_entry(entry, arg);
        vcpu.power.store(VcpuPower::On as u8, Ordering::Release);
        Ok(vcpu)
    }

    /// Fills guest RAM from `boot` (DTB and image) and starts vCPU 0: at
    /// creation (the first call keeps `boot`) and after each reset.
    pub fn boot(&'static self, boot: Boot) -> Result<(), Error> {
        let boot = self.boot.call_once(|| boot);
        let resets = self.resets.load(Ordering::Relaxed);
        let mut bootargs = boot.bootargs.clone();
        if !boot.exact_cmdline {
            // The guest's own id, which shares name VMs by.
            bootargs.push_str(&alloc::format!(" vm={}", self.id));
            if resets > 0 {
                // Tells the guest it was reset (the counters survive; RAM
                // not).
                bootargs.push_str(&alloc::format!(" resets={resets}"));
            }
        }
        let arch = crate::fdt_writer::GuestArch::native();
        let initrd = match boot.initrd {
            Some(data) => Some((self.initrd_ipa(arch, data.len() as u64, &boot.segments)?, data)),
            None => None,
        };
        let spec = crate::fdt_writer::GuestDtbSpec {
            arch,
            ram_base: RAM_BASE,
            ram_size: self.ram_size,
            cpus: boot.vcpus,
            gic: boot.gic,
            bootargs,
            initrd: initrd.map(|(ipa, data)| (ipa, ipa + data.len() as u64)),
        };
        let dtb = crate::fdt_writer::guest_dtb(&spec);
        self.load(RAM_BASE, &dtb, dtb.len() as u64)?;
        for &(ipa, data, size) in &boot.segments {
            self.load(ipa, data, size)?;
        }
        if let Some((ipa, data)) = initrd {
            self.load(ipa, data, data.len() as u64)?;
        }
        let vcpu0 = self
            .claim(0, boot.entry, EntryArg::Dtb(RAM_BASE), false)
            .map_err(|_| Error::BadSpec("vCPU 0 cannot start"))?;
        // Running with vCPU 0 counted (unless the hypervisor stopped the
        // VM meanwhile), and only then on the run queue.
        self.set_power(|p| (p != VmPower::Off).then_some(VmPower::Running));
        self.guests.requeue(vcpu0);
        Ok(())
    }

    /// Where an initramfs of `len` bytes goes: page-aligned at the top of
    /// RAM (ARMv7: of its first 512 MiB, the guest's low memory), above
    /// every image segment (a zImage decompresses itself above its end,
    /// so the higher the better). A firmware VM's goes at the top of the
    /// lower half of that instead: firmware takes the top of RAM for
    /// itself (U-Boot relocates itself there, with its heap and stack),
    /// and would overwrite it.
    fn initrd_ipa(
        &self,
        arch: crate::fdt_writer::GuestArch,
        len: u64,
        segments: &[(u64, &'static [u8], u64)],
    ) -> Result<u64, Error> {
        const LOWMEM: u64 = 512 << 20;
        let top = match arch {
            crate::fdt_writer::GuestArch::Armv7 => self.ram_size.min(LOWMEM),
            crate::fdt_writer::GuestArch::Armv8 => self.ram_size,
        };
        let top = if self.flash_size > 0 { top / 2 } else { top };
        let image_end =
            segments.iter().map(|&(ipa, d, m)| ipa + m.max(d.len() as u64)).max().unwrap_or(0);
        let ipa = (RAM_BASE + top).checked_sub(len).map(|a| a & !(mmu::PAGE_SIZE - 1));
        match ipa {
            Some(ipa) if ipa >= image_end && ipa >= RAM_BASE => Ok(ipa),
            _ => Err(Error::BadSpec("the initrd does not fit above the image in the guest's RAM")),
        }
    }

    /// The reset, once every vCPU has stopped: guest RAM is freed (the
    /// VM's aliases and offers go with it; shares it accepted too) and
    /// filled again from the image, and vCPU 0 starts over.
    fn reset(&'static self) -> Result<(), Error> {
        {
            // Held until RAM is empty: nothing aliases into this VM or
            // takes one of its pages meanwhile.
            let mut t = self.sharing.lock();
            self.forget_everything(&mut t)?;
        }
        // Its devices reset with it; what it printed stays printed.
        self.console_flush();
        self.with_uart(|u| *u = Pl011::new());
        self.uart_hold.lock().clear();
        self.resets.fetch_add(1, Ordering::Relaxed);
        self.vgic.lock().reset();
        let boot = self.boot.get().ok_or(Error::BadSpec("no boot image to reset to"))?;
        let again = Boot {
            segments: boot.segments.clone(),
            entry: boot.entry,
            vcpus: boot.vcpus,
            bootargs: boot.bootargs.clone(),
            exact_cmdline: boot.exact_cmdline,
            initrd: boot.initrd,
            gic: boot.gic,
        };
        // `boot` keeps the first value; `again` only carries it through.
        self.boot(again)
    }

    // ---- console and PL011 -------------------------------------------------

    /// A byte the guest wrote to its console: printed by lines, prefixed
    /// with the VM's id (`conmux::Output`). Carriage returns are dropped
    /// (the console ends its lines itself); other bytes are printed as
    /// they are. A line longer than 1024 bytes is printed in pieces.
    pub fn console_byte(&self, b: u8) {
        let mut buf = self.console.lock();
        if b == b'\n' {
            self.machine().print_guest(self.id, &buf, true);
            buf.clear();
        } else if b != b'\r' {
            buf.push(b);
            if buf.len() >= CONSOLE_LINE {
                self.machine().print_guest(self.id, &buf, false);
                buf.clear();
            }
        }
    }

    /// Prints the guest's unfinished console line now, without ending it
    /// (a prompt shows): when the vCPU that wrote its last byte waits
    /// ([`Vm::uart_read`], [`Vm::vcpu_waits`]), and before a reset.
    pub fn console_flush(&self) {
        let mut buf = self.console.lock();
        if !buf.is_empty() {
            self.machine().print_guest(self.id, &buf, false);
            buf.clear();
        }
    }

    /// Runs `f` on the PL011 under its lock and reports a change of its
    /// interrupt output to [`Vm::uart_irq_changed`], still under the lock
    /// (so changes are reported in the order they happen).
    fn with_uart<R>(&self, f: impl FnOnce(&mut Pl011) -> R) -> R {
        let mut u = self.uart.lock();
        let r = f(&mut u);
        let level = u.irq_level();
        if level != self.uart_irq.load(Ordering::Relaxed) {
            self.uart_irq_changed(level);
        }
        r
    }

    /// The hook for the interrupt controller: the PL011's interrupt output
    /// (`UARTINTR`, INTID [`UART_INTID`]) is now `level`. Called under the
    /// PL011's lock, once per change, in order: from a guest's access
    /// (`UARTDR` read or write, `UARTIMSC`, `UARTICR`, `UARTLCR_H`...) and
    /// from console input ([`Vm::uart_input`]). The level is recorded
    /// (for [`Vm::uart_irq_level`]) and driven onto the SPI of the VM's
    /// virtual GIC; the vCPU it is routed to is woken or kicked.
    fn uart_irq_changed(&self, level: bool) {
        self.uart_irq.store(level, Ordering::Relaxed);
        let kick = self.vgic.lock().set_level(0, UART_INTID, level);
        for v in kick.iter() {
            if let Some(&vcpu) = self.vcpus().get(v) {
                vcpu.wake();
            }
        }
    }

    /// The PL011's interrupt output: some unmasked interrupt is pending
    /// (`UARTMIS != 0`). What a virtual GIC samples for INTID
    /// [`UART_INTID`] (for instance when it is enabled or reset); changes
    /// are pushed to it by [`Vm::uart_irq_changed`].
    pub fn uart_irq_level(&self) -> bool {
        self.uart_irq.load(Ordering::Relaxed)
    }

    /// A byte typed on the console for this VM: into its PL011's receive
    /// FIFO, or while that is full behind it (up to [`INPUT_HOLD`] bytes,
    /// moved in as the guest reads). `false` if even that is full: the
    /// byte is lost and the PL011 records an overrun.
    pub fn uart_input(&self, b: u8) -> bool {
        let mut hold = self.uart_hold.lock();
        if hold.is_empty() {
            if let Some(taken) = self.with_uart(|u| u.rx_room().then(|| u.push_rx(b))) {
                return taken;
            }
        }
        if hold.len() < INPUT_HOLD {
            hold.push_back(b);
            return true;
        }
        // Lost, and recorded as an overrun.
        self.with_uart(|u| u.push_rx(b))
    }

    /// Moves held console input into the receive FIFO while it has room.
    fn uart_refill(&self) {
        let mut hold = self.uart_hold.lock();
        if hold.is_empty() {
            return;
        }
        self.with_uart(|u| {
            while u.rx_room() {
                let Some(b) = hold.pop_front() else { break };
                u.push_rx(b);
            }
        });
    }

    /// vCPU `vcpu` loads `size` bytes at offset `off` of the PL011 (see
    /// `vuart` for what is accepted). If it wrote the last byte of the
    /// unfinished console line, reading `UARTDR` (it takes input), or
    /// `UARTFR` a second time with no `UARTDR` write between (it polls),
    /// prints that line ([`Vm::console_flush`]): the guest waits, and what
    /// it printed (a prompt) shows. Another vCPU's accesses do not, so a
    /// line being printed is never cut.
    pub fn uart_read(&self, vcpu: usize, off: u64, size: u64) -> u32 {
        let v = self.with_uart(|u| u.read(off, size));
        if off == vuart::reg::DR {
            self.uart_refill();
        }
        let mine = vcpu << 1;
        let waits = match off {
            vuart::reg::DR => self.uart_writer.load(Ordering::Relaxed) >> 1 == vcpu,
            vuart::reg::FR => self
                .uart_writer
                .compare_exchange(mine, mine | 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_err_and(|was| was == mine | 1),
            _ => false,
        };
        if waits {
            self.console_flush();
        }
        v
    }

    /// vCPU `vcpu` stores `value`'s low `size` bytes at offset `off` of the
    /// PL011; a byte written to `UARTDR` goes to the console line.
    pub fn uart_write(&self, vcpu: usize, off: u64, size: u64, value: u64) {
        if let Some(b) = self.with_uart(|u| u.write(off, size, value as u32)) {
            self.uart_writer.store(vcpu << 1, Ordering::Relaxed);
            self.console_byte(b);
        }
    }

    /// vCPU `vcpu` waits (WFI or WFE): if it wrote the last byte of the
    /// unfinished console line, the line is printed.
    pub fn vcpu_waits(&self, vcpu: usize) {
        if self.uart_writer.load(Ordering::Relaxed) >> 1 == vcpu {
            self.console_flush();
        }
    }

    // ---- counters, warnings ----------------------------------------------

    /// Logs a warning about something this VM asked for, at most at the
    /// rate its limiter allows (a guest must not flood the console other
    /// guests share); says how many were left out when it prints again.
    pub fn warn(&self, args: core::fmt::Arguments<'_>) {
        let now = self.machine().now();
        let verdict = self.warnings.lock().check(now.0, now.1);
        if let Some(dropped) = verdict {
            if dropped > 0 {
                self.machine().print(format_args!(
                    "vm{}: ({dropped} warnings about this VM suppressed)\n",
                    self.id
                ));
            }
            self.machine().print(format_args!("vm{}: {}\n", self.id, args));
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
            Stat::GracePeriods => self.rcu().grace_periods(),
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
            Stat::TrackedPages => self.guests.rmap.charged_to(self.s2.vmid()) as u64,
            Stat::Offers => self.sharing.lock().offers.len() as u64,
            Stat::UndefInjected => r(&self.stats.undef),
            Stat::CallsRefused => r(&self.stats.refused),
            Stat::El2Instructions => r(&self.stats.el2_instructions),
            Stat::IrqExits => r(&self.stats.irq_exits),
            Stat::Sleeps => r(&self.stats.sleeps),
            Stat::FpLoads => r(&self.stats.fp_loads),
            Stat::CallExits => r(&self.stats.call_exits),
            Stat::WfxExits => r(&self.stats.wfx_exits),
            Stat::MmioExits => r(&self.stats.mmio_exits),
            Stat::TrapExits => r(&self.stats.trap_exits),
        }
    }
}
