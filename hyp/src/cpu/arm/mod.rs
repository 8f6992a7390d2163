//! ARMv7-A with the virtualization extensions, in Hyp mode.

mod boot;
mod exception;
mod fp;

use core::fmt;

pub use arch::armv7::cache::{self, PocByPa};
use arch::armv7::regs;
pub use arch::armv7::tlb::Stage2Tlb;
use arch::fields::armv7::{
    CNTHCTL, CPSR, DFSR, HCPTR, HCR, HDCR, HSTR, IFSR, MPIDR, PMCR, SCTLR, TTBCR,
};
use arch::{read_cp15, read_cp15_64, write_cp15, write_cp15_64};
pub use exception::GuestRegs;
use mmu::Geometry;
use tock_registers::LocalRegisterCopy;

use super::{ec, EntryArg, Exit, Syndrome};
use crate::idregs::ID_DFR0;
use crate::psci::{self, Conduit};

/// How the banner names the CPU mode.
pub const NAME: &str = "ARMv7 Hyp mode";

/// `HVC` from an AArch32 guest.
pub const EC_HVC: u64 = ec::HVC32;
/// `SMC` from an AArch32 guest, trapped (`HCR.TSC`).
pub const EC_SMC: u64 = ec::SMC32;

/// PSCI `CPU_ON` as this hypervisor calls it.
pub const PSCI_CPU_ON: u32 = psci::CPU_ON_32;

/// HCR while guests run: stage 2 (VM), set/way as clean+inval (SWIO),
/// physical interrupts and asynchronous aborts to Hyp mode (FMO, IMO,
/// AMO), broadcast TLB and cache maintenance Inner Shareable (FB,
/// BSU=IS), WFI, WFE and SMC trapped (TWI, TWE, TSC), the ID registers
/// (TID3), implementation-defined registers (TIDCP) and ACTLR (TAC)
/// trapped.
const HCR_GUEST: u32 = HCR::VM::SET.value
    | HCR::SWIO::SET.value
    | HCR::FMO::SET.value
    | HCR::IMO::SET.value
    | HCR::AMO::SET.value
    | HCR::FB::SET.value
    | HCR::BSU::InnerShareable.value
    | HCR::TWI::SET.value
    | HCR::TWE::SET.value
    | HCR::TID3::SET.value
    | HCR::TSC::SET.value
    | HCR::TIDCP::SET.value
    | HCR::TAC::SET.value;

/// HSTR while guests run: T15, accesses to the implementation-defined
/// CP15 c15 registers trapped.
const HSTR_GUEST: u32 = HSTR::T15::SET.value;

/// HCPTR while a guest runs without its VFP state on the CPU: every
/// coprocessor trap bit that exists, CP10 and CP11 (VFP, Advanced SIMD)
/// included, and TASE. Its first VFP or Advanced SIMD instruction traps,
/// and loads its state ([`fp`]).
const HCPTR_GUEST: u32 = HCPTR::TCP::SET.value | HCPTR::TASE::SET.value;

/// HCPTR while a guest's VFP state is on the CPU: CP10, CP11 and
/// Advanced SIMD reachable, the other coprocessors still trapped.
const HCPTR_GUEST_FP: u32 =
    HCPTR_GUEST & !(HCPTR::TCP10::SET.value | HCPTR::TCP11::SET.value | HCPTR::TASE::SET.value);

/// HDCR while guests run, but for `HPMN`: the PMU (TPMCR, TPM) and every
/// debug register (TDA, TDOSA, TDRA) trapped.
const HDCR_GUEST: u32 = HDCR::TPMCR::SET.value
    | HDCR::TPM::SET.value
    | HDCR::TDA::SET.value
    | HDCR::TDOSA::SET.value
    | HDCR::TDRA::SET.value;

/// CNTHCTL while guests run: PL1 may use the physical counter and timer.
const CNTHCTL_GUEST: u32 = CNTHCTL::PL1PCTEN::SET.value | CNTHCTL::PL1PCEN::SET.value;

/// CPSR of a vCPU at its first instruction: SVC mode, ARM state,
/// asynchronous aborts, IRQ and FIQ masked.
const CPSR_SVC_MASKED: u32 = CPSR::M::Supervisor.value
    | CPSR::T::CLEAR.value
    | CPSR::F::SET.value
    | CPSR::I::SET.value
    | CPSR::A::SET.value;

// The values before the fields had names: behaviour must not change.
const _: () = assert!(HCR_GUEST == 0x003c_663b);
const _: () = assert!(HSTR_GUEST == 0x8000);
const _: () = assert!(HCPTR_GUEST == 0xbfff);
const _: () = assert!(HCPTR_GUEST_FP == 0x33ff);
const _: () = assert!(HDCR_GUEST == 0x0e60);
const _: () = assert!(CNTHCTL_GUEST == 0b11);
const _: () = assert!(CPSR_SVC_MASKED == 0x1d3);

/// Where the exception vectors are with `SCTLR.V` set ("high vectors").
const HIGH_VECTORS: u32 = 0xffff_0000;

/// Offsets of the exception vectors (from `VBAR` or [`HIGH_VECTORS`]).
mod vector {
    /// Undefined instruction.
    pub const UNDEF: u32 = 0x04;
    /// Prefetch abort.
    pub const PABT: u32 = 0x0c;
    /// Data abort.
    pub const DABT: u32 = 0x10;
}

/// The guest's processor mode (`CPSR.M`), if it is a valid one.
fn mode(cpsr: u32) -> Option<CPSR::M::Value> {
    CPSR::M.read_as_enum(cpsr)
}

/// This CPU's index: `MPIDR.Aff0` (CPUs of QEMU `virt` and of the
/// Raspberry Pi 2 are numbered 0..n there).
#[inline]
pub fn cpu_index() -> usize {
    MPIDR::Aff0.read(regs::mpidr()) as usize
}

/// This CPU's affinity (`MPIDR` Aff2..Aff0), as the DTB's `reg`.
pub fn mpidr() -> u64 {
    let affinity = MPIDR::Aff2::SET + MPIDR::Aff1::SET + MPIDR::Aff0::SET;
    u64::from(regs::mpidr() & affinity.mask())
}

/// `MIDR`.
pub fn midr() -> u64 {
    u64::from(regs::midr())
}

/// The physical count and the counter frequency (`CNTPCT`, `CNTFRQ`).
pub fn counter() -> (u64, u64) {
    (regs::cntpct(), u64::from(regs::cntfrq()))
}

/// The guests' stage-2 regime: ARMv7 LPAE with a 40-bit IPA (from level
/// 1, two concatenated roots).
pub fn stage2_geometry() -> Result<Geometry, mmu::Error> {
    Geometry::armv7(40)
}

/// Whether the PMU counts the hypervisor's instructions (event counter 0:
/// instructions retired, in Hyp mode only). The same on every CPU.
static PMU_COUNTS_HYP: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Instructions this CPU has executed in Hyp mode since [`el2_init`] (a
/// 32-bit count that wraps), if its PMU counts them. Under QEMU the event
/// counts only with `-icount`, and then exactly.
#[inline]
pub fn el2_instructions() -> Option<u32> {
    PMU_COUNTS_HYP.load(core::sync::atomic::Ordering::Relaxed).then(|| {
        // Counter 0 stays selected: nothing else writes PMSELR.
        regs::pmxevcntr()
    })
}

/// Hyp-mode state each CPU needs before it runs guests.
pub fn el2_init(vtcr: u64) {
    // SAFETY: configuration of this CPU's Hyp mode (and of its PMU, which
    // belongs to Hyp mode: every guest access traps) for guests; no guest
    // runs.
    unsafe {
        regs::set_vtcr(vtcr as u32);
        regs::set_hcr(HCR_GUEST);
        regs::set_hstr(HSTR_GUEST);
        // The PMU and every debug register trapped: guests get neither
        // (ID_DFR0 reads as 0; see `emulate_trap`). HPMN: all of the PMU's
        // counters (none without a PMU: ID_DFR0.PerfMon 0).
        let pmu_counters = if ID_DFR0::PerfMon.read(regs::id_dfr0()) == 0 {
            0
        } else {
            PMCR::N.read(regs::pmcr())
        };
        regs::set_hdcr(HDCR_GUEST | HDCR::HPMN.val(pmu_counters).value);
        if pmu_counters > 0 {
            // Counter 0 counts the instructions this CPU executes in Hyp
            // mode and nowhere else: guests reach no PMU register (HDCR
            // traps them), so the counter is the hypervisor's own.
            use arch::fields::armv7::PMXEVTYPER as T;
            let hyp_only = T::EVTCOUNT::InstRetired
                + T::P::SET
                + T::NSK::SET
                + T::U::SET
                + T::NSU::SET
                + T::NSH::SET;
            regs::set_pmselr(0);
            regs::set_pmxevtyper(hyp_only.value);
            regs::set_pmxevcntr(0);
            regs::set_pmcntenset(1);
            regs::set_pmcr(regs::pmcr() | PMCR::E::SET.value);
            PMU_COUNTS_HYP.store(true, core::sync::atomic::Ordering::Relaxed);
        }
        regs::set_cnthctl(CNTHCTL_GUEST);
        regs::set_cntvoff(0);
        regs::set_vpidr(regs::midr());
    }
    arch::armv7::barrier::isb();
    // HCPTR: the guests' traps, VFP included, once the VFP is found.
    fp::probe();
}

/// Loads vCPU `index` of the VM whose stage 2 is `vttbr`. `other_ran`:
/// another vCPU ran on this CPU since this one did, so its stage-1
/// entries (same VMID, maybe the same ASIDs) must not serve this one.
pub fn load_vcpu(vttbr: u64, index: usize, other_ran: bool) {
    // SAFETY: switching this CPU's stage 2 to the vCPU; no guest runs on
    // this CPU meanwhile.
    unsafe {
        regs::set_vttbr(vttbr);
        regs::set_vmpidr((MPIDR::M::SET + MPIDR::Aff0.val(index as u32)).value);
    }
    arch::armv7::barrier::isb();
    if other_ran {
        regs::local_invalidate_vmid();
    }
}

/// Runs the guest whose registers are `regs` until it exits.
pub fn run_guest(regs: &mut GuestRegs) -> Exit {
    // SAFETY: the registers outlive the call; `load_vcpu` and
    // `GuestSysRegs::restore` set up Hyp mode and PL1 for it.
    Exit::from_code(unsafe { exception::guest_enter(regs) })
}

/// The syndrome of the exception that made the guest exit (`HSR`).
pub fn syndrome() -> Syndrome {
    Syndrome(u64::from(regs::hsr()))
}

/// The faulting virtual address of a guest abort (`HIFAR` for a prefetch
/// abort, `HDFAR` for a data abort).
pub fn fault_va(ec: u64) -> u64 {
    u64::from(if ec == ec::IABT_LOW { regs::hifar() } else { regs::hdfar() })
}

/// The faulting IPA's page, from `HPFAR`.
pub fn fault_ipa_page() -> u64 {
    regs::fault_ipa_page()
}

/// Injects a synchronous external abort into the guest, as the CPU takes
/// one: Abort mode with IRQs and asynchronous aborts masked, `SPSR_abt` =
/// the old CPSR, `LR_abt` = the faulting instruction + 8 (data) or + 4
/// (prefetch), `DFSR`/`DFAR` or `IFSR`/`IFAR` set in the format `TTBCR.EAE`
/// selects, PC at the vector (`VBAR`, or `0xffff_0000` with `SCTLR.V`).
pub fn inject_external_abort(regs: &mut GuestRegs, data: bool, write: bool, far: u64) {
    let sctlr = guest_sctlr();
    let lpae = TTBCR::EAE.is_set(read_cp15!("p15, 0, {}, c2, c0, 2"));
    // Synchronous external abort, not on a table walk: STATUS 0b010000
    // (long-descriptor format, with the LPAE bit) or FS 0b01000.
    let (offset, lr) = if data {
        let status = if lpae {
            DFSR::LPAE::SET + DFSR::STATUS::SyncExternal
        } else {
            DFSR::FS4::CLEAR + DFSR::FS::SyncExternal
        };
        let wnr = if write { DFSR::WnR::SET } else { DFSR::WnR::CLEAR };
        // SAFETY: the guest's PL1 registers are live on this CPU while
        // its vCPU is handled; writing them is what taking the abort does.
        unsafe {
            write_cp15!("p15, 0, {}, c5, c0, 0", (status + wnr).value);
            write_cp15!("p15, 0, {}, c6, c0, 0", far as u32);
        }
        (vector::DABT, regs.pc.wrapping_add(8))
    } else {
        let status = if lpae {
            IFSR::LPAE::SET + IFSR::STATUS::SyncExternal
        } else {
            IFSR::FS4::CLEAR + IFSR::FS::SyncExternal
        };
        // SAFETY: as above.
        unsafe {
            write_cp15!("p15, 0, {}, c5, c0, 1", status.value);
            write_cp15!("p15, 0, {}, c6, c0, 2", far as u32);
        }
        (vector::PABT, regs.pc.wrapping_add(4))
    };
    regs.abt = [regs.abt[0], lr, regs.cpsr];
    // F kept; A and I set.
    let old = LocalRegisterCopy::<u32, CPSR::Register>::new(regs.cpsr);
    let masks = CPSR::F.val(old.read(CPSR::F)) + CPSR::A::SET + CPSR::I::SET;
    regs.cpsr = exception_cpsr(sctlr, masks + CPSR::M::Abort);
    regs.pc = vector_base(sctlr).wrapping_add(offset);
}

/// Injects an undefined-instruction exception at the instruction that
/// trapped, as the CPU takes one: Undefined mode with IRQs masked,
/// `SPSR_und` = the old CPSR, `LR_und` = the instruction + 4 (ARM state)
/// or + 2 (Thumb), PC at the vector + 4 (`VBAR`, or `0xffff_0000` with
/// `SCTLR.V`).
pub fn inject_undef(regs: &mut GuestRegs) {
    let sctlr = guest_sctlr();
    let old = LocalRegisterCopy::<u32, CPSR::Register>::new(regs.cpsr);
    let thumb = old.is_set(CPSR::T);
    let lr = regs.pc.wrapping_add(if thumb { 2 } else { 4 });
    regs.und = [regs.und[0], lr, regs.cpsr];
    // A and F kept; I set.
    let masks = CPSR::A.val(old.read(CPSR::A)) + CPSR::F.val(old.read(CPSR::F)) + CPSR::I::SET;
    regs.cpsr = exception_cpsr(sctlr, masks + CPSR::M::Undefined);
    regs.pc = vector_base(sctlr).wrapping_add(vector::UNDEF);
}

/// The guest's `SCTLR`.
fn guest_sctlr() -> LocalRegisterCopy<u32, SCTLR::Register> {
    LocalRegisterCopy::new(read_cp15!("p15, 0, {}, c1, c0, 0"))
}

/// The guest's exception vectors: `VBAR`, or the high vectors with
/// `SCTLR.V`.
fn vector_base(sctlr: LocalRegisterCopy<u32, SCTLR::Register>) -> u32 {
    if sctlr.is_set(SCTLR::V) {
        HIGH_VECTORS
    } else {
        read_cp15!("p15, 0, {}, c12, c0, 0")
    }
}

/// The CPSR on taking an exception: `mode_and_masks` (the new mode, and
/// the interrupt masks as the exception kept or set them), Thumb state and
/// endianness from `SCTLR.TE` and `.EE`, IT state and J cleared.
fn exception_cpsr(
    sctlr: LocalRegisterCopy<u32, SCTLR::Register>,
    mode_and_masks: tock_registers::fields::FieldValue<u32, CPSR::Register>,
) -> u32 {
    let state = CPSR::T.val(sctlr.read(SCTLR::TE)) + CPSR::E.val(sctlr.read(SCTLR::EE));
    (mode_and_masks + state + CPSR::IT_7_2::CLEAR + CPSR::IT_1_0::CLEAR + CPSR::J::CLEAR).value
}

/// Emulates an instruction that trapped with exception class `ec`: true
/// when done (the caller steps over it); false when the guest gets an
/// undefined-instruction exception instead.
///
/// - CP15 (0x03): the ID registers (`HCR.TID3`) read through
///   [`crate::idregs`]; `ACTLR` reads as the hardware's and ignores
///   writes (`HCR.TAC`: a guest's writes would reach the core); the
///   implementation-defined registers (`HCR.TIDCP`, `HSTR.T15`) and the
///   PMU (`HDCR.TPM`, `TPMCR`) read as zero and ignore writes: a PMU with
///   no event counters and a cycle counter that does not count, which
///   is also what a guest finds where the ID registers are not trapped
///   (QEMU honours `HCR.TID3` only from ARMv8 on, so its ARMv7 guests read
///   the host's `ID_DFR0`); everything else is UNDEFINED.
/// - CP14 (0x05): the debug registers (`HDCR.TDA`, `TDOSA`, `TDRA`) read as
///   zero and ignore writes: guests get no debug (`ID_DFR0` says so).
/// - `VMRS` of the VFP ID registers (0x08: MVFR0 and MVFR1 with
///   `HCR.TID3`; FPSID, which `HCR.TID0` would trap) read through
///   [`crate::idregs::armv7_vfp`]. Such a `VMRS` traps only once the vCPU's
///   VFP state is loaded: before, `HCPTR` traps it first ([`fp_trap`]).
/// - VFP/Advanced SIMD traps (0x07) that [`fp_trap`] did not take (another
///   coprocessor; no VFP), 64-bit and LDC/STC coprocessor accesses (0x04,
///   0x06, 0x0C), anything else: UNDEFINED.
pub fn emulate_trap(ec: u64, iss: u64, st: &mut super::VcpuRegs) -> bool {
    use crate::idregs::{armv7, armv7_vfp, CopAccess};
    use ec::{MCR_MRC_CP14 as CP14, MCR_MRC_CP15 as CP15, VMRS};
    let a = CopAccess::decode(iss);
    let regs = &mut st.regs;
    let value = match (ec, a.enc, a.read) {
        (CP15, (0, 0, crm @ 1..=7, op2), true) => Some(armv7(crm, op2, host_id(crm, op2))),
        (VMRS, (7, reg, 0, 0), true) => match vfp_id(reg) {
            Some(host) => Some(armv7_vfp(reg, host, fp::present())),
            None => return false,
        },
        (CP15, (0, 1, 0, 1), true) => Some(regs::actlr()),
        (CP15, (0, 1, 0, 1), false) => None,
        // The PMU (CRn 9, opc1 0, CRm 12-14) with the implementation
        // defined registers of CRn 9-11 and 15, and CP14's debug registers.
        (CP15, (_, 9..=11 | 15, _, _), read) | (CP14, _, read) => read.then_some(0),
        _ => return false,
    };
    if let Some(v) = value {
        regs.set_gpr(a.rt, u64::from(v));
    }
    true
}

/// The host's VFP ID register that `VMRS` register number `reg` names,
/// if it is one (FPSID, MVFR1, MVFR0).
fn vfp_id(reg: u32) -> Option<u32> {
    use crate::idregs::vfp_reg::{FPSID, MVFR0, MVFR1};
    let [fpsid, mvfr0, mvfr1] = fp::host_ids();
    match reg {
        FPSID => Some(fpsid),
        MVFR0 => Some(mvfr0),
        MVFR1 => Some(mvfr1),
        _ => None,
    }
}

/// A VFP or Advanced SIMD access trapped by `HCPTR` (exception class
/// 0x07): the vCPU's first since it was loaded. Its VFP state goes on the
/// CPU and the traps are cleared; true when the instruction is to run
/// again (not skipped). False (the guest gets UNDEFINED, as on a CPU
/// without it) for another coprocessor, or without a VFP.
pub fn fp_trap(iss: u64, st: &mut super::VcpuRegs) -> bool {
    use crate::syndrome::ISS_HCPTR;
    let iss = LocalRegisterCopy::<u64, ISS_HCPTR::Register>::new(iss);
    let vfp = iss.is_set(ISS_HCPTR::TA) || matches!(iss.read(ISS_HCPTR::COPROC), 10 | 11);
    let s = &mut st.sys;
    if !vfp || s.fp_live || !fp::present() {
        return false;
    }
    s.fp.load();
    s.fp_live = true;
    true
}

/// The host's ID register `MRC p15, 0, Rt, c0, CRm, op2`: the encoding is
/// in the instruction, hence the match.
fn host_id(crm: u32, op2: u32) -> u32 {
    macro_rules! ids {
        ($(($m:literal, $o:literal)),*) => {
            match (crm, op2) {
                $( ($m, $o) => {
                    let v: u32;
                    // SAFETY: reading an ID register has no side effects.
                    unsafe {
                        core::arch::asm!(concat!("mrc p15, 0, {}, c0, c", $m, ", ", $o),
                                         out(reg) v, options(nomem, nostack))
                    };
                    v
                } )*
                _ => 0,
            }
        };
    }
    ids!(
        (1, 0),
        (1, 1),
        (1, 4),
        (1, 5),
        (1, 6),
        (1, 7),
        (2, 0),
        (2, 1),
        (2, 2),
        (2, 3),
        (2, 4),
        (2, 5)
    )
}

impl GuestRegs {
    /// A vCPU about to run its first instruction at `entry`, in SVC mode
    /// with interrupts masked. The boot vCPU gets the ARM Linux boot
    /// registers (`r0` = 0, `r1` = `0xffff_ffff`: no machine type, the DTB
    /// describes the machine; `r2` = the DTB), a PSCI `CPU_ON` one `r0` =
    /// the context id.
    pub fn at_entry(entry: u64, arg: EntryArg) -> Self {
        let mut r = Self::default();
        match arg {
            EntryArg::Dtb(dtb) => r.r[..3].copy_from_slice(&[0, u32::MAX, dtb as u32]),
            EntryArg::Context(c) => r.r[0] = c as u32,
        }
        r.pc = entry as u32;
        r.cpsr = CPSR_SVC_MASKED;
        r
    }

    /// The banked SP, LR (and SPSR) of the guest's current mode.
    fn banked(&mut self) -> &mut [u32] {
        use CPSR::M::Value as Mode;
        match mode(self.cpsr) {
            Some(Mode::Fiq) => &mut self.fiq[5..],
            Some(Mode::Irq) => &mut self.irq,
            Some(Mode::Supervisor) => &mut self.svc,
            Some(Mode::Abort) => &mut self.abt,
            Some(Mode::Undefined) => &mut self.und,
            _ => &mut self.usr,
        }
    }

    /// Register `n` as the guest's current mode sees it (15 reads as the
    /// instruction's address + 8, as in ARM state).
    pub fn gpr(&self, n: usize) -> u64 {
        // `slot` hands out the banked storage mutably; read it from a copy.
        let mut copy = *self;
        let v = copy.slot(n).map(|r| *r);
        u64::from(v.unwrap_or(self.pc.wrapping_add(8)))
    }

    /// Sets register `n` (the low 32 bits of `v`) as the guest's current
    /// mode sees it; writes to the PC are dropped.
    pub fn set_gpr(&mut self, n: usize, v: u64) {
        if let Some(r) = self.slot(n) {
            *r = v as u32;
        }
    }

    /// Where register `n` of the current mode lives (none for the PC).
    fn slot(&mut self, n: usize) -> Option<&mut u32> {
        let fiq = mode(self.cpsr) == Some(CPSR::M::Value::Fiq);
        match n {
            8..=12 if fiq => Some(&mut self.fiq[n - 8]),
            0..=12 => Some(&mut self.r[n]),
            13 | 14 => Some(&mut self.banked()[n - 13]),
            _ => None,
        }
    }

    /// Moves the guest on by `len` bytes (a trapped instruction). A
    /// trapped instruction inside a Thumb IT block is not supported: the
    /// guest images run in ARM state.
    pub fn skip(&mut self, len: u64) {
        self.pc = self.pc.wrapping_add(len as u32);
    }
}

/// The guest's PL1 system registers (the Non-secure banked CP15
/// registers), the generic timer's PL1 registers and the VFP and Advanced
/// SIMD registers, switched when another vCPU runs on the same CPU (the
/// VFP's lazily: [`fp`]).
#[derive(Clone, Copy, Default, Debug)]
pub struct GuestSysRegs {
    r: [u32; 21],
    /// TTBR0, TTBR1, PAR (64-bit with LPAE).
    d: [u64; 3],
    /// CNTV_CTL, CNTP_CTL.
    timer_ctl: [u32; 2],
    /// CNTV_CVAL, CNTP_CVAL.
    timer_cval: [u64; 2],
    /// The VFP and Advanced SIMD registers, while not on the CPU.
    fp: fp::FpRegs,
    /// Whether they are on the CPU (loaded at the vCPU's first VFP access
    /// since it was loaded; saved when it leaves).
    fp_live: bool,
}

macro_rules! pl1_regs {
    ($m:ident) => {
        $m!(
            0 "p15, 0, {}, c1, c0, 0",   // SCTLR
            1 "p15, 0, {}, c1, c0, 2",   // CPACR
            2 "p15, 0, {}, c2, c0, 2",   // TTBCR
            3 "p15, 0, {}, c3, c0, 0",   // DACR
            4 "p15, 0, {}, c5, c0, 0",   // DFSR
            5 "p15, 0, {}, c5, c0, 1",   // IFSR
            6 "p15, 0, {}, c5, c1, 0",   // ADFSR
            7 "p15, 0, {}, c5, c1, 1",   // AIFSR
            8 "p15, 0, {}, c6, c0, 0",   // DFAR
            9 "p15, 0, {}, c6, c0, 2",   // IFAR
            10 "p15, 0, {}, c10, c2, 0", // PRRR / MAIR0
            11 "p15, 0, {}, c10, c2, 1", // NMRR / MAIR1
            12 "p15, 0, {}, c10, c3, 0", // AMAIR0
            13 "p15, 0, {}, c10, c3, 1", // AMAIR1
            14 "p15, 0, {}, c12, c0, 0", // VBAR
            15 "p15, 0, {}, c13, c0, 1", // CONTEXTIDR
            16 "p15, 0, {}, c13, c0, 2", // TPIDRURW
            17 "p15, 0, {}, c13, c0, 3", // TPIDRURO
            18 "p15, 0, {}, c13, c0, 4", // TPIDRPRW
            19 "p15, 0, {}, c14, c1, 0", // CNTKCTL
            20 "p15, 2, {}, c0, c0, 0"   // CSSELR
        )
    };
}

macro_rules! pl1_regs_64 {
    ($m:ident) => {
        $m!(
            0 "p15, 0, {}, {}, c2", // TTBR0
            1 "p15, 1, {}, {}, c2", // TTBR1
            2 "p15, 0, {}, {}, c7"  // PAR
        )
    };
}

impl GuestSysRegs {
    /// The state a vCPU starts with: SCTLR with its should-be-one bits,
    /// MMU, caches and alignment checks off; no coprocessor access
    /// (`CPACR` 0), the VFP disabled (`FPEXC.EN` clear) and its registers
    /// zero.
    pub fn reset() -> Self {
        use SCTLR as S;
        let mut s = Self::default();
        let sctlr = S::SBOP_4_3::SET
            + S::CP15BEN::SET
            + S::SBOP_6::SET
            + S::SBOP_16::SET
            + S::SBOP_18::SET
            + S::SBOP_22::SET
            + S::SBOP_23::SET
            + S::M::CLEAR
            + S::A::CLEAR
            + S::C::CLEAR
            + S::I::CLEAR;
        s.r[0] = sctlr.value;
        s
    }

    /// Reads the live registers, and stops the vCPU's timers in the
    /// hardware (a parked vCPU's timer must not fire for another). Its VFP
    /// state is saved too if it was loaded, and the VFP trapped again.
    pub fn save(&mut self) {
        if self.fp_live {
            self.fp.save();
            self.fp_live = false;
        }
        macro_rules! save { ($($i:literal $e:literal),*) => { $( self.r[$i] = read_cp15!($e); )* } }
        macro_rules! save64 { ($($i:literal $e:literal),*) => { $( self.d[$i] = read_cp15_64!($e); )* } }
        pl1_regs!(save);
        pl1_regs_64!(save64);
        self.timer_ctl =
            [read_cp15!("p15, 0, {}, c14, c3, 1"), read_cp15!("p15, 0, {}, c14, c2, 1")];
        self.timer_cval =
            [read_cp15_64!("p15, 3, {}, {}, c14"), read_cp15_64!("p15, 2, {}, {}, c14")];
        // SAFETY: the vCPU is off the CPU; its timers are restored with it.
        unsafe {
            write_cp15!("p15, 0, {}, c14, c3, 1", 0);
            write_cp15!("p15, 0, {}, c14, c2, 1", 0);
        }
    }

    /// When the vCPU's timers, as saved, next fire, in physical counter
    /// ticks (`u64::MAX`: neither is enabled and unmasked); the virtual
    /// timer's compare value is `cntvoff` behind the physical count.
    /// `want`: (virtual, physical), whether each timer's interrupt would
    /// be taken at all.
    pub fn timer_deadline(&self, cntvoff: u64, want: (bool, bool)) -> u64 {
        let ctl = self.timer_ctl.map(u64::from);
        super::timer_deadline(ctl, self.timer_cval, cntvoff, want)
    }

    /// Writes them back, but for the VFP state: the vCPU's first VFP
    /// access traps ([`fp_trap`]) and loads it.
    pub fn restore(&self) {
        // SAFETY: the VFP and Advanced SIMD traps (no vCPU's VFP state is
        // on this CPU: whoever had it saved it when it left).
        unsafe { regs::set_hcptr(HCPTR_GUEST) };
        macro_rules! restore {
            ($($i:literal $e:literal),*) => {
                // SAFETY: PL1 registers only affect the guest, which is not
                // running while the hypervisor switches them.
                $( unsafe { write_cp15!($e, self.r[$i]) }; )*
            }
        }
        macro_rules! restore64 {
            ($($i:literal $e:literal),*) => {
                // SAFETY: as above.
                $( unsafe { write_cp15_64!($e, self.d[$i]) }; )*
            }
        }
        pl1_regs!(restore);
        pl1_regs_64!(restore64);
        // SAFETY: as above; the compare values before the controls, so a
        // timer is never enabled with another vCPU's deadline.
        unsafe {
            write_cp15_64!("p15, 3, {}, {}, c14", self.timer_cval[0]);
            write_cp15_64!("p15, 2, {}, {}, c14", self.timer_cval[1]);
            write_cp15!("p15, 0, {}, c14, c3, 1", self.timer_ctl[0]);
            write_cp15!("p15, 0, {}, c14, c2, 1", self.timer_ctl[1]);
        }
    }
}

/// The guest's PL1 timer outputs now: (virtual, physical), each high when
/// the timer is enabled, unmasked and has reached its compare value
/// (`CNTx_CTL` ENABLE, IMASK, ISTATUS).
pub fn timer_levels() -> (bool, bool) {
    use super::timer_level as level;
    let (v, p): (u32, u32) =
        (read_cp15!("p15, 0, {}, c14, c3, 1"), read_cp15!("p15, 0, {}, c14, c2, 1"));
    (level(v.into()), level(p.into()))
}

/// Sets the virtual counter's offset for the VM about to run.
pub fn set_cntvoff(off: u64) {
    // SAFETY: the offset only affects PL1's view of the virtual counter.
    unsafe { regs::set_cntvoff(off) };
}

/// Arms the Hyp physical timer (`CNTHP`) to fire when the physical count
/// reaches `at`.
pub fn hyp_timer_arm(at: u64) {
    // SAFETY: the Hyp timer is the hypervisor's own (CNTHP_CVAL, CNTHP_CTL).
    unsafe {
        write_cp15_64!("p15, 6, {}, {}, c14", at);
        write_cp15!("p15, 4, {}, c14, c2, 1", 1);
    }
}

/// Stops the Hyp physical timer.
pub fn hyp_timer_stop() {
    // SAFETY: as above.
    unsafe { write_cp15!("p15, 4, {}, c14, c2, 1", 0) };
}

/// GICv3's SGI registers do not exist for ARMv7 guests (their GIC is a
/// GICv2, SGIs through its distributor).
pub fn trapped_sgi(_ec: u64, _iss: u64, _regs: &GuestRegs) -> Option<u64> {
    None
}

/// Calls the firmware (SMCCC, SMC32 register use).
pub fn firmware_call(conduit: Conduit, fid: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut r0 = fid;
    let (a1, a2, a3) = (a1 as u32, a2 as u32, a3 as u32);
    // SAFETY: an SMCCC call to the firmware; it preserves r4-r14 and our
    // memory, and clobbers at most r0-r3.
    unsafe {
        match conduit {
            Conduit::Smc => core::arch::asm!(
                ".arch_extension sec",
                "smc #0",
                inout("r0") r0, inout("r1") a1 => _, inout("r2") a2 => _, inout("r3") a3 => _,
                options(nostack)
            ),
            Conduit::Hvc => core::arch::asm!(
                ".arch_extension virt",
                "hvc #0",
                inout("r0") r0, inout("r1") a1 => _, inout("r2") a2 => _, inout("r3") a3 => _,
                options(nostack)
            ),
        }
    }
    i64::from(r0 as i32)
}

fn elr_hyp() -> u32 {
    let v: u32;
    // SAFETY: reading a special register has no side effects.
    unsafe {
        core::arch::asm!(".arch_extension virt", "mrs {}, elr_hyp", out(reg) v,
            options(nomem, nostack))
    };
    v
}

fn spsr_hyp() -> u32 {
    let v: u32;
    // SAFETY: reading a special register has no side effects.
    unsafe { core::arch::asm!("mrs {}, spsr", out(reg) v, options(nomem, nostack)) };
    v
}

/// The Hyp-mode exception registers, for a panic message.
pub struct ExceptionState;

impl fmt::Display for ExceptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HSR {:#x} HDFAR {:#x} HIFAR {:#x} ELR_hyp {:#x} SPSR_hyp {:#x} HPFAR {:#x}",
            regs::hsr(),
            regs::hdfar(),
            regs::hifar(),
            elr_hyp(),
            spsr_hyp(),
            regs::hpfar(),
        )
    }
}

/// Entered in a mode other than Hyp: say why nothing happens (the MMU is
/// off, so the PL011 at QEMU virt's address is reachable as device
/// memory).
#[unsafe(no_mangle)]
extern "C" fn refuse_not_hyp(_dtb: usize) {
    let cpsr: u32;
    // SAFETY: reading the CPSR has no side effects.
    unsafe { core::arch::asm!("mrs {}, cpsr", out(reg) cpsr, options(nomem, nostack)) };
    let mode = match mode(cpsr) {
        Some(CPSR::M::Value::Supervisor) => "SVC",
        Some(CPSR::M::Value::System) => "System",
        Some(CPSR::M::Value::Monitor) => "Monitor",
        _ => "a non-Hyp",
    };
    crate::console::print_raw(
        crate::board::BUILT_FOR.uart,
        format_args!(
            "\nhyp: entered in {mode} mode (CPSR {cpsr:#x}): the hypervisor needs Hyp mode \
             (QEMU: -M virt,virtualization=on; a Raspberry Pi 2 firmware entering in Hyp mode). \
             Stopping.\n"
        ),
    );
}

/// An exception taken in Hyp mode: a hypervisor bug.
#[unsafe(no_mangle)]
extern "C" fn hyp_exception(kind: u32, frame: *const u32) -> ! {
    // SAFETY: the vector pushed r0-r12 and LR at `frame`.
    let r = unsafe { core::slice::from_raw_parts(frame, 14) };
    let what = ["reset", "undefined instruction", "SVC/HVC", "prefetch abort", "data abort"];
    panic!(
        "Hyp-mode exception ({}), r0={:#x} r1={:#x} lr={:#x}",
        what.get(kind as usize).unwrap_or(&"?"),
        r[0],
        r[1],
        r[13]
    );
}
