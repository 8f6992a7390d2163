//! What differs between the two architectures the hypervisor runs on:
//! AArch64 at EL2 ([`aarch64`](self)) and ARMv7-A in Hyp mode (`arm`).
//!
//! Each side has its boot entry (`boot.rs`), its vectors with guest entry
//! and exit (`exception.rs`), and here the same small interface for the
//! portable code: the guest register frame ([`GuestRegs`]) and system
//! registers ([`GuestSysRegs`]), the syndrome of an exit, the injection of
//! an external abort, loading a vCPU's stage 2, the per-CPU EL2 set-up,
//! firmware calls and the stage-2 geometry. Everything above this module
//! (VMs, the fault path, hypercalls, PSCI for guests) is shared.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "arm")]
mod arm;
#[cfg(target_arch = "arm")]
pub use arm::*;

mod gich;
pub use gich::set_base as set_gich_base;
use gich::GichCpu;

use core::sync::atomic::{AtomicU8, Ordering};

use crate::vgic::LrEntry;

/// Bytes of stack per CPU.
pub const STACK_SIZE: usize = 64 * 1024;
/// CPUs the hypervisor supports.
pub const MAX_CPUS: usize = 8;

/// Per-CPU stacks, in BSS; the boot code gives CPU `i` the `i`-th.
#[repr(C, align(4096))]
pub struct Stacks(pub [[u8; STACK_SIZE]; MAX_CPUS]);

/// The stacks (the boot code names them).
#[unsafe(no_mangle)]
pub static mut BOOT_STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// The early map's level-2 tables (see [`crate::board`]).
#[unsafe(no_mangle)]
pub static HYP_BOOT_L2: crate::board::BootTables =
    crate::board::boot_tables(crate::board::BUILT_FOR);

// The early map's level-1 table, pointing at `HYP_BOOT_L2`: four table
// descriptors cover 4 GiB (AArch64 `TCR_EL2.T0SZ` = 32 and ARMv7 `HTCR.T0SZ`
// = 0 both start the walk at level 1 with four entries). Written here
// because a descriptor holds an address, which only the linker knows.
core::arch::global_asm!(
    r#"
    .section .rodata.hyp_boot_l1, "a"
    .balign 4096
    .global HYP_BOOT_L1
HYP_BOOT_L1:
    .word   HYP_BOOT_L2 + 0x0003, 0
    .word   HYP_BOOT_L2 + 0x1003, 0
    .word   HYP_BOOT_L2 + 0x2003, 0
    .word   HYP_BOOT_L2 + 0x3003, 0
"#
);

/// Where secondary CPUs enter (PSCI `CPU_ON`, context id = CPU index).
pub fn secondary_entry() -> u64 {
    unsafe extern "C" {
        fn secondary_entry();
    }
    secondary_entry as *const () as usize as u64
}

/// Releases a CPU waiting in the firmware's spin table at `release_addr`
/// (its `cpu-release-addr`, or on the Pi 2 its mailbox): writes
/// `secondary_entry_spin`'s address there (a 64-bit slot on AArch64, a
/// 32-bit register on ARMv7: a `usize` either way), cleans it to the point
/// of coherency (the waiting CPU reads with its caches off), and wakes it
/// with `SEV`.
pub fn release_from_spin_table(release_addr: u64) {
    unsafe extern "C" {
        fn secondary_entry_spin();
    }
    let entry = secondary_entry_spin as *const () as usize;
    // SAFETY: the release address comes from the DTB (or the board's
    // description), lies in memory the frame allocator never hands out,
    // and is identity mapped; the CPU waiting there reads nothing else.
    unsafe { core::ptr::write_volatile(release_addr as usize as *mut usize, entry) };
    cache::clean_inval_poc(release_addr as usize, core::mem::size_of::<usize>());
    // SAFETY: wakes CPUs waiting in WFE; no memory effects.
    unsafe { core::arch::asm!("sev", options(nomem, nostack)) };
}

/// Waits for an interrupt: one pending at the GIC's CPU interface ends
/// the wait even while masked (the hypervisor runs with IRQs masked).
pub fn wait_for_interrupt() {
    // SAFETY: waits for an interrupt; no memory effects.
    unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack)) };
}

/// Waits for an event (idle, or stopped for good).
pub fn wait_for_event() {
    // SAFETY: waits for an event; no memory effects.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
}

/// Why the guest exited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Exit {
    /// A synchronous exception (trap, abort, HVC, SMC, WFI...).
    Sync = 0,
    /// A physical IRQ routed to EL2.
    Irq = 1,
    /// A physical FIQ routed to EL2.
    Fiq = 2,
    /// An SError (AArch64) or asynchronous abort routed to EL2.
    SError = 3,
}

impl Exit {
    /// The exit for the code the vectors return.
    pub fn from_code(code: usize) -> Self {
        match code {
            0 => Exit::Sync,
            1 => Exit::Irq,
            2 => Exit::Fiq,
            _ => Exit::SError,
        }
    }
}

pub use crate::machine::EntryArg;

/// A generic timer's output from its control register (`CNTx_CTL`):
/// ENABLE set, IMASK clear, ISTATUS set.
pub fn timer_level(ctl: u64) -> bool {
    ctl & 0b111 == 0b101
}

/// When a vCPU's saved timers next fire, in physical counter ticks
/// (`u64::MAX`: neither is enabled and unmasked): `ctl` and `cval` of its
/// virtual then physical timer; the virtual compare value is `cntvoff`
/// behind the physical count. `want`: (virtual, physical), whether each
/// timer's interrupt would be taken at all.
fn timer_deadline(ctl: [u64; 2], cval: [u64; 2], cntvoff: u64, want: (bool, bool)) -> u64 {
    let armed = |ctl: u64| ctl & 0b11 == 0b01;
    let mut at = u64::MAX;
    if want.0 && armed(ctl[0]) {
        at = at.min(cval[0].saturating_add(cntvoff));
    }
    if want.1 && armed(ctl[1]) {
        at = at.min(cval[1]);
    }
    at
}

/// List registers used (QEMU's GICs have four; GICv3 allows 16).
pub const MAX_LRS: usize = 16;

/// The virtual CPU interface guests get: none (no host GIC), GICv2's
/// (`GICH`) or GICv3's (system registers); set once at boot.
static GIC_IFACE: AtomicU8 = AtomicU8::new(IFACE_NONE);
const IFACE_NONE: u8 = 0;
const IFACE_V2: u8 = 2;
#[cfg(target_arch = "aarch64")]
const IFACE_V3: u8 = 3;

/// Chooses the virtual interface from the host GIC's version.
pub fn set_gic_iface(v: crate::vgic::Version) {
    let iface = match v {
        crate::vgic::Version::V2 => IFACE_V2,
        #[cfg(target_arch = "aarch64")]
        crate::vgic::Version::V3 => IFACE_V3,
        #[cfg(not(target_arch = "aarch64"))]
        crate::vgic::Version::V3 => IFACE_NONE,
    };
    GIC_IFACE.store(iface, Ordering::Relaxed);
}

fn iface() -> u8 {
    GIC_IFACE.load(Ordering::Relaxed)
}

/// A vCPU's virtual CPU interface (GICv3's or GICv2's) while it is off
/// the CPU, and what its list registers were given at the last entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct GicCpu {
    #[cfg(target_arch = "aarch64")]
    ich: IchCpu,
    gich: GichCpu,
    /// What [`GicCpu::write_lrs`] put in each list register.
    pub written: [Option<LrEntry>; MAX_LRS],
}

impl GicCpu {
    /// List registers used on this CPU (none without a GIC).
    pub fn lrs() -> usize {
        match iface() {
            #[cfg(target_arch = "aarch64")]
            IFACE_V3 => IchCpu::lrs().min(MAX_LRS),
            IFACE_V2 => GichCpu::lrs().min(MAX_LRS),
            _ => 0,
        }
    }

    /// Puts the vCPU's interface on the CPU.
    pub fn load(&self) {
        match iface() {
            #[cfg(target_arch = "aarch64")]
            IFACE_V3 => self.ich.load(),
            IFACE_V2 => self.gich.load(),
            _ => {}
        }
    }

    /// Takes it off the CPU (its list registers folded back already).
    pub fn put(&mut self) {
        self.written = [None; MAX_LRS];
        match iface() {
            #[cfg(target_arch = "aarch64")]
            IFACE_V3 => self.ich.put(),
            IFACE_V2 => self.gich.put(),
            _ => {}
        }
    }

    /// Fills the list registers with `entries`, with an underflow
    /// maintenance interrupt if `overflow`.
    pub fn write_lrs(&mut self, entries: &[Option<LrEntry>], overflow: bool) {
        let n = entries.len().min(MAX_LRS);
        self.written[..n].copy_from_slice(&entries[..n]);
        match iface() {
            #[cfg(target_arch = "aarch64")]
            IFACE_V3 => IchCpu::write_lrs(&entries[..n], overflow),
            IFACE_V2 => GichCpu::write_lrs(&entries[..n], overflow),
            _ => {}
        }
    }

    /// What the list registers hold now, for the ones filled.
    pub fn read_lrs(&self, out: &mut [Option<LrEntry>]) {
        let n = out.len().min(MAX_LRS);
        match iface() {
            #[cfg(target_arch = "aarch64")]
            IFACE_V3 => IchCpu::read_lrs(&self.written[..n], &mut out[..n]),
            IFACE_V2 => GichCpu::read_lrs(&self.written[..n], &mut out[..n]),
            _ => {}
        }
    }

    /// Whether guests have a virtual CPU interface at all (a host GIC).
    pub fn present() -> bool {
        iface() != IFACE_NONE
    }
}

/// A vCPU's architectural state: what the guest's exits save and its
/// entries load (`regs`), and what is switched when another vCPU runs on
/// the CPU (`sys`).
pub struct VcpuRegs {
    /// General-purpose (and on AArch64 FP/SIMD) registers.
    pub regs: GuestRegs,
    /// EL1/PL1 system registers (and on ARMv7 the VFP and Advanced SIMD
    /// registers, switched lazily).
    pub sys: GuestSysRegs,
    /// The virtual CPU interface.
    pub gic: GicCpu,
}

impl VcpuRegs {
    /// A vCPU about to run its first instruction at `entry` with `arg`, its
    /// system registers in their reset state.
    pub fn at_entry(entry: u64, arg: EntryArg) -> Self {
        Self {
            regs: GuestRegs::at_entry(entry, arg),
            sys: GuestSysRegs::reset(),
            gic: GicCpu::default(),
        }
    }
}

/// The syndrome of an exit and its exception classes, shared by both
/// architectures (`ESR_EL2` and `HSR` have one layout).
pub use crate::syndrome::{ec, Syndrome};
