//! AArch64 at EL2.

mod boot;
mod exception;

use core::cell::UnsafeCell;
use core::fmt;

pub use arch::aarch64::cache::{self, PocByPa};
pub use arch::aarch64::tlb::Stage2Tlb;
use arch::{read_sysreg, write_sysreg};
pub use exception::GuestRegs;
use exception::{guest_enter, HostContext};
use mmu::{Features, Geometry};

use super::{EntryArg, Exit, Syndrome, MAX_CPUS};
use crate::psci::{self, Conduit};

/// How the banner names the CPU mode.
pub const NAME: &str = "AArch64 EL2";

/// `HVC` from an AArch64 guest.
pub const EC_HVC: u64 = 0x16;
/// `SMC` from an AArch64 guest, trapped (`HCR_EL2.TSC`).
pub const EC_SMC: u64 = 0x17;

/// PSCI `CPU_ON` as this hypervisor calls it.
pub const PSCI_CPU_ON: u32 = psci::CPU_ON_64;

/// HCR_EL2 while guests run: stage 2 (VM), set/way as clean+inval
/// (SWIO), physical interrupts to EL2 (FMO, IMO, AMO), broadcast TLB
/// and cache maintenance Inner Shareable (FB, BSU=IS), WFI, WFE and SMC
/// trapped (TWI, TWE: a waiting vCPU yields its CPU; TSC), EL1 is
/// AArch64 (RW), pointer authentication keys and instructions not
/// trapped (APK, API).
const HCR_GUEST: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 9)
    | (1 << 10)
    | (1 << 13)
    | (1 << 14)
    | (1 << 19)
    | (1 << 31)
    | (1 << 40)
    | (1 << 41);

/// This CPU's index: `MPIDR_EL1.Aff0` (CPUs of QEMU `virt` up to 8, and of
/// the Raspberry Pi boards, are numbered 0..n there).
#[inline]
pub fn cpu_index() -> usize {
    (read_sysreg!("mpidr_el1") & 0xff) as usize
}

/// This CPU's affinity (`MPIDR_EL1` Aff3..Aff0), as the DTB's `reg`.
pub fn mpidr() -> u64 {
    read_sysreg!("mpidr_el1") & 0xff_00ff_ffff
}

/// `MIDR_EL1`.
pub fn midr() -> u64 {
    read_sysreg!("midr_el1")
}

/// The physical count and the counter frequency (`CNTPCT_EL0`,
/// `CNTFRQ_EL0`).
pub fn counter() -> (u64, u64) {
    (read_sysreg!("cntpct_el0"), read_sysreg!("cntfrq_el0"))
}

/// The guests' stage-2 regime: 40-bit IPA (from level 1, two concatenated
/// roots), the CPU's PA size and TLB features.
pub fn stage2_geometry() -> Result<Geometry, mmu::Error> {
    let parange = read_sysreg!("id_aa64mmfr0_el1") & 0xf;
    let pa_bits = [32, 36, 40, 42, 44, 48, 48][parange.min(6) as usize];
    let features = Features {
        tlbi_range: (read_sysreg!("id_aa64isar0_el1") >> 56) & 0xf >= 2,
        ..Features::default()
    };
    Geometry::aarch64(40, pa_bits, features)
}

/// EL2 state each CPU needs before it runs guests.
pub fn el2_init(vtcr: u64) {
    // SAFETY: configuration of this CPU's EL2 for guests; no guest runs.
    unsafe {
        write_sysreg!("vtcr_el2", vtcr);
        write_sysreg!("hcr_el2", HCR_GUEST);
        // EL1 may use the physical counter and timer.
        write_sysreg!("cnthctl_el2", 0b11);
        write_sysreg!("cntvoff_el2", 0);
        write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
    }
    arch::aarch64::barrier::isb();
}

/// Loads vCPU `index` of the VM whose stage 2 is `vttbr`. `other_ran`:
/// another vCPU ran on this CPU since this one did, so its stage-1
/// entries (same VMID, maybe the same ASIDs) must not serve this one.
pub fn load_vcpu(vttbr: u64, index: usize, other_ran: bool) {
    // SAFETY: switching this CPU's stage 2 to the vCPU; no guest runs on
    // this CPU meanwhile.
    unsafe {
        write_sysreg!("vttbr_el2", vttbr);
        write_sysreg!("vmpidr_el2", 0x8000_0000 | index as u64);
    }
    arch::aarch64::barrier::isb();
    if other_ran {
        // SAFETY: TLB invalidation only drops cached translations.
        unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
    }
}

/// Host context per CPU for guest entry, reached through `TPIDR_EL2`.
struct PerCpu(UnsafeCell<HostContext>);

// SAFETY: each CPU touches only its own entry (indexed by `cpu_index`).
unsafe impl Sync for PerCpu {}

static HOST: [PerCpu; MAX_CPUS] = [const { PerCpu(UnsafeCell::new(HostContext::new())) }; MAX_CPUS];

/// Runs the guest whose registers are `regs` until it exits.
pub fn run_guest(regs: &mut GuestRegs) -> Exit {
    let host = HOST[cpu_index() % MAX_CPUS].0.get();
    // SAFETY: the registers and this CPU's host context outlive the call;
    // `load_vcpu` and `GuestSysRegs::restore` set up EL2 and EL1 for it.
    Exit::from_code(unsafe { guest_enter(regs, host) })
}

/// The syndrome of the exception that made the guest exit (`ESR_EL2`).
pub fn syndrome() -> Syndrome {
    Syndrome(read_sysreg!("esr_el2"))
}

/// The faulting virtual address of a guest abort (`FAR_EL2`).
pub fn fault_va(_ec: u64) -> u64 {
    read_sysreg!("far_el2")
}

/// The faulting IPA's page: `HPFAR_EL2.FIPA` [43:4] holds IPA [51:12].
pub fn fault_ipa_page() -> u64 {
    (read_sysreg!("hpfar_el2") & 0x0fff_ffff_fff0) << 8
}

/// Injects a synchronous external abort into the guest's EL1, as the
/// architecture would take it: ESR/FAR/ELR/SPSR_EL1 set, PC at the right
/// vector, EL1h with interrupts masked.
pub fn inject_external_abort(regs: &mut GuestRegs, data: bool, write: bool, far: u64) {
    let from_el1 = regs.pstate & 0xc == 0x4;
    let offset = match (from_el1, regs.pstate & 1) {
        (false, _) => 0x400, // lower EL, AArch64
        (true, 1) => 0x200,  // current EL, SP_ELx
        (true, _) => 0x000,  // current EL, SP_EL0
    };
    // Data or instruction abort, same or lower EL; IL; DFSC/IFSC = 0x10.
    let ec: u64 = match (data, from_el1) {
        (true, true) => 0x25,
        (true, false) => 0x24,
        (false, true) => 0x21,
        (false, false) => 0x20,
    };
    let wnr = if data && write { 1 << 6 } else { 0 };
    let esr = (ec << 26) | (1 << 25) | wnr | 0x10;
    let vbar = read_sysreg!("vbar_el1");
    // SAFETY: the guest's EL1 registers are live on this CPU while its
    // vCPU is handled; writing them is what taking the exception does.
    unsafe {
        write_sysreg!("esr_el1", esr);
        write_sysreg!("far_el1", far);
        write_sysreg!("elr_el1", regs.pc);
        write_sysreg!("spsr_el1", regs.pstate);
    }
    regs.pc = vbar + offset;
    regs.pstate = 0x3c5;
}

impl GuestRegs {
    /// A vCPU about to run its first instruction at `entry`, in EL1h with
    /// interrupts masked and `x0` = the argument (the boot protocol of
    /// arm64 Linux, and PSCI `CPU_ON`).
    pub fn at_entry(entry: u64, arg: EntryArg) -> Self {
        let mut r = Self::new();
        r.x[0] = match arg {
            EntryArg::Dtb(a) | EntryArg::Context(a) => a,
        };
        r.pc = entry;
        r.pstate = 0x3c5; // EL1h, DAIF masked
        r
    }

    /// General-purpose register `n` as an instruction names it (31 is
    /// the zero register in loads, stores and SMCCC arguments).
    pub fn gpr(&self, n: usize) -> u64 {
        self.x.get(n).copied().unwrap_or(0)
    }

    /// Sets register `n` (writes to 31 are dropped).
    pub fn set_gpr(&mut self, n: usize, v: u64) {
        if let Some(r) = self.x.get_mut(n) {
            *r = v;
        }
    }

    /// Where the guest resumes.
    pub fn pc(&self) -> u64 {
        self.pc
    }

    /// Moves the guest on by `len` bytes (a trapped instruction).
    pub fn skip(&mut self, len: u64) {
        self.pc += len;
    }
}

/// EL1 system registers of a vCPU, switched when another vCPU runs on
/// the same CPU.
#[derive(Clone, Copy, Default, Debug)]
pub struct GuestSysRegs {
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

impl GuestSysRegs {
    /// The state a vCPU starts with: MMU off, FP/SIMD not trapped.
    pub fn reset() -> Self {
        let mut r = Self::default();
        r.r[0] = 0x30d0_0800; // SCTLR_EL1 RES1 bits, MMU and caches off
        r.r[8] = 3 << 20; // CPACR_EL1.FPEN
        r
    }

    /// Reads the live registers.
    pub fn save(&mut self) {
        macro_rules! save { ($($i:literal $n:literal),*) => { $( self.r[$i] = read_sysreg!($n); )* } }
        el1_regs!(save);
    }

    /// Writes them back.
    pub fn restore(&self) {
        macro_rules! restore {
            ($($i:literal $n:literal),*) => {
                // SAFETY: EL1 registers only affect the guest, which is not
                // running while the hypervisor switches them.
                $( unsafe { write_sysreg!($n, self.r[$i]) }; )*
            }
        }
        el1_regs!(restore);
    }
}

/// Calls the firmware (SMCCC, SMC64 register use).
pub fn firmware_call(conduit: Conduit, fid: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(fid);
    // SAFETY: an SMCCC call to the firmware; it preserves x4-x17 and our
    // memory, and clobbers at most x0-x3.
    unsafe {
        match conduit {
            Conduit::Smc => core::arch::asm!(
                "smc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                options(nostack)
            ),
            Conduit::Hvc => core::arch::asm!(
                "hvc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                options(nostack)
            ),
        }
    }
    x0 as i64
}

/// The EL2 exception registers, for a panic message.
pub struct ExceptionState;

impl fmt::Display for ExceptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ESR_EL2 {:#x} FAR_EL2 {:#x} ELR_EL2 {:#x} SPSR_EL2 {:#x} HPFAR_EL2 {:#x}",
            read_sysreg!("esr_el2"),
            read_sysreg!("far_el2"),
            read_sysreg!("elr_el2"),
            read_sysreg!("spsr_el2"),
            read_sysreg!("hpfar_el2"),
        )
    }
}

/// Entered at EL1: say why nothing happens (the MMU is off, so the PL011 of
/// the board this image is built for is reachable as device memory).
#[unsafe(no_mangle)]
extern "C" fn refuse_el1(_dtb: u64) {
    crate::console::print_raw(
        crate::board::BUILT_FOR.uart,
        format_args!(
            "\nhyp: entered at EL1: the hypervisor needs EL2 \
             (QEMU: -M virt,virtualization=on). Stopping.\n"
        ),
    );
}

/// An exception taken at EL2: a hypervisor bug.
#[unsafe(no_mangle)]
extern "C" fn el2_exception(kind: u64, frame: *const u64) -> ! {
    // SAFETY: the vector saved 31 registers at `frame`.
    let x = unsafe { core::slice::from_raw_parts(frame, 31) };
    panic!("EL2 exception (vector {kind}), x0={:#x} x1={:#x} x30={:#x}", x[0], x[1], x[30]);
}
