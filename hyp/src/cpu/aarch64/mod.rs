//! AArch64 at EL2.

mod boot;
mod exception;
mod features;
mod sysreg;
mod vgic;

use core::cell::UnsafeCell;
use core::fmt;

use aarch64_cpu::registers::{
    CNTHCTL_EL2, CPACR_EL1, ESR_EL1, ICC_SRE_EL2, MPIDR_EL1, SPSR_EL2, VMPIDR_EL2,
};
pub use arch::aarch64::cache::{self, PocByPa};
pub use arch::aarch64::tlb::Stage2Tlb;
use arch::fields::aarch64 as fields;
use arch::{read_sysreg, write_sysreg};
pub use exception::GuestRegs;
use exception::{guest_enter, HostContext};
use mmu::{Features, Geometry, PAGE_SHIFT};
use tock_registers::LocalRegisterCopy;
pub use vgic::IchCpu;

use super::{ec, EntryArg, Exit, Syndrome, MAX_CPUS};
use crate::psci::{self, Conduit};
use crate::syndrome::ISS_ABORT;

/// How the banner names the CPU mode.
pub const NAME: &str = "AArch64 EL2";

/// `HVC` from an AArch64 guest.
pub const EC_HVC: u64 = ec::HVC64;
/// `SMC` from an AArch64 guest, trapped (`HCR_EL2.TSC`).
pub const EC_SMC: u64 = ec::SMC64;

/// PSCI `CPU_ON` as this hypervisor calls it.
pub const PSCI_CPU_ON: u32 = psci::CPU_ON_64;

/// HCR_EL2 while guests run: stage 2 (VM), set/way as clean+inval
/// (SWIO), physical interrupts to EL2 (FMO, IMO, AMO), broadcast TLB
/// and cache maintenance Inner Shareable (FB, BSU=IS), WFI, WFE and SMC
/// trapped (TWI, TWE: a waiting vCPU yields its CPU; TSC), EL1 is
/// AArch64 (RW); the ID registers (TID3, and TID1 for `SMIDR_EL1`,
/// which without it reads as the host's although SME is hidden),
/// implementation-defined registers (TIDCP) and ACTLR_EL1 (TACR) trapped; RAS error records
/// (TERR) and LORegions (TLOR) trapped where they exist; the
/// pointer-authentication keys and instructions not trapped where they
/// exist (APK, API: the keys are switched). Left clear: EnSCXT (SCXTNUM
/// traps), ATA (MTE tags trap), FIEN (RAS fault injection traps).
fn hcr_guest(f: &features::Features) -> u64 {
    use aarch64_cpu::registers::HCR_EL2 as H;
    let mut v = H::VM::Enable
        + H::SWIO::SET
        + H::FMO::EnableVirtualFIQ
        + H::IMO::EnableVirtualIRQ
        + H::AMO::SET
        + H::FB::SET
        + H::BSU::InnerShareable
        + H::TWI::SET
        + H::TWE::SET
        + H::TSC::EnableTrapEl1SmcToEl2
        + H::RW::EL1IsAarch64
        + H::TID3::SET
        + H::TID1::SET
        + H::TIDCP::SET
        + H::TACR::SET;
    if f.ras {
        v += H::TERR::SET;
    }
    if f.lor {
        v += H::TLOR::SET;
    }
    if f.pauth {
        v += H::APK::DisableTrapPointerAuthKeyRegsToEl2 + H::API::DisableTrapPointerAuthInstToEl2;
    }
    v.value
}

/// MDCR_EL2 while guests run: the PMU (TPM, TPMCR) and every debug
/// register (TDA, TDOSA, TDRA) trapped, and where they exist statistical
/// profiling (TPMS, buffer owned by EL2), the trace buffer (owned by EL2)
/// and trace filtering (TTRF) trapped; all the PMU's counters reserved
/// for EL2 (HPMN, which no guest can reach anyway).
fn mdcr_guest(f: &features::Features) -> u64 {
    use aarch64_cpu::registers::MDCR_EL2 as M;
    let mut v = M::TPM::SET + M::TPMCR::SET + M::TDA::SET + M::TDOSA::SET + M::TDRA::SET;
    if let Some(n) = f.pmu_counters {
        v += M::HPMN.val(n);
    }
    if f.spe {
        v += M::TPMS::SET + M::E2PB::OwnedByEL2OrEL1;
    }
    if f.trbe {
        v += M::E2TB::EL1OrEL2OwnerTrapToEL2;
    }
    if f.trf {
        v += M::TTRF::SET;
    }
    if f.fgt >= 1 {
        // With fine-grained traps: the DCC registers too.
        v += M::TDCC::SET;
    }
    v.value
}

/// CPTR_EL2 (E2H 0 layout) while guests run: FP/SIMD not trapped (TFP
/// clear: the guest's registers are saved on every exit); SVE (TZ) and
/// SME (TSM) trapped (both are also the RES1 values without the
/// features); trace registers (TTA) and activity monitors (TAM, where
/// they exist) trapped.
fn cptr_guest(f: &features::Features) -> u64 {
    use fields::CPTR_EL2 as C;
    let mut v = C::RES1_7_0::SET
        + C::RES1_9::SET
        + C::RES1_13::SET
        + C::TZ::SET
        + C::TSM::SET
        + C::TTA::SET
        + C::TFP::CLEAR;
    if f.amu {
        v += C::TAM::SET;
    }
    v.value
}

/// `PSTATE` of EL1 using `SP_EL1` with debug exceptions, SErrors, IRQs
/// and FIQs masked (in `SPSR_EL2`'s layout): a vCPU's first, and what
/// taking an exception to EL1 sets.
fn pstate_el1h_masked() -> u64 {
    use SPSR_EL2 as S;
    (S::D::Masked + S::A::Masked + S::I::Masked + S::F::Masked + S::M::EL1h).value
}

/// This CPU's index: `MPIDR_EL1.Aff0` (CPUs of QEMU `virt` up to 8, and of
/// the Raspberry Pi boards, are numbered 0..n there).
#[inline]
pub fn cpu_index() -> usize {
    MPIDR_EL1::Aff0.read(read_sysreg!("mpidr_el1")) as usize
}

/// This CPU's affinity (`MPIDR_EL1` Aff3..Aff0), as the DTB's `reg`.
pub fn mpidr() -> u64 {
    use MPIDR_EL1 as M;
    let affinity = M::Aff3::SET + M::Aff2::SET + M::Aff1::SET + M::Aff0::SET;
    read_sysreg!("mpidr_el1") & affinity.mask()
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
    let parange = crate::idregs::ID_AA64MMFR0::PARange.read(read_sysreg!("id_aa64mmfr0_el1"));
    // PARange 0b0000 to 0b0101, and above: 52 bits, of which 48 are used.
    let pa_bits = [32, 36, 40, 42, 44, 48, 48][parange.min(6) as usize];
    Geometry::aarch64(40, pa_bits, Features::default())
}

/// Whether the PMU counts the hypervisor's instructions (event counter 0:
/// instructions retired, at EL2 only). The same on every CPU.
static PMU_COUNTS_EL2: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Sets this CPU's event counter 0 to count the instructions it executes
/// at EL2 and nowhere else, where there is a PMU: the guests' PMU accesses
/// all trap (`mdcr_guest`), so the counter is the hypervisor's own.
/// `MDCR_EL2.HPMD` stays clear (counting at EL2 allowed).
fn pmu_init(f: &features::Features) {
    if f.pmu_counters.unwrap_or(0) == 0 {
        return;
    }
    use fields::PMEVTYPER_EL0 as T;
    let el2_only =
        T::EVTCOUNT::InstRetired + T::P::SET + T::NSK::SET + T::U::SET + T::NSU::SET + T::NSH::SET;
    // SAFETY: the PMU belongs to EL2 (every guest access traps); this only
    // starts counter 0.
    unsafe {
        write_sysreg!("pmevtyper0_el0", el2_only.value);
        write_sysreg!("pmevcntr0_el0", 0);
        write_sysreg!("pmcntenset_el0", 1);
        let pmcr = read_sysreg!("pmcr_el0");
        write_sysreg!("pmcr_el0", pmcr | fields::PMCR_EL0::E::SET.value);
    }
    arch::aarch64::barrier::isb();
    PMU_COUNTS_EL2.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// Instructions this CPU has executed at EL2 since [`el2_init`] (a 32-bit
/// count that wraps), if its PMU counts them. Under QEMU the event counts
/// only with `-icount`, and then exactly.
#[inline]
pub fn el2_instructions() -> Option<u32> {
    PMU_COUNTS_EL2
        .load(core::sync::atomic::Ordering::Relaxed)
        .then(|| read_sysreg!("pmevcntr0_el0") as u32)
}

/// EL2 state each CPU needs before it runs guests.
pub fn el2_init(vtcr: u64) {
    let f = features::features();
    // SAFETY: configuration of this CPU's EL2 for guests; no guest runs.
    unsafe {
        write_sysreg!("vtcr_el2", vtcr);
        write_sysreg!("hcr_el2", hcr_guest(f));
        write_sysreg!("mdcr_el2", mdcr_guest(f));
        write_sysreg!("cptr_el2", cptr_guest(f));
        // EL1 may use the physical counter and timer.
        write_sysreg!(
            "cnthctl_el2",
            (CNTHCTL_EL2::EL1PCEN::SET + CNTHCTL_EL2::EL1PCTEN::SET).value
        );
        write_sysreg!("cntvoff_el2", 0);
        write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
        if f.hcx {
            // Every feature HCRX_EL2 enables stays off for EL1 (TCR2,
            // SCTLR2, GCS, MOPS, FPMR, LS64, ...): their registers and
            // instructions trap or are UNDEFINED. Its reset value is
            // UNKNOWN.
            write_sysreg!("s3_4_c1_c2_2", 0);
        }
        if f.fgt >= 1 {
            // The fine-grained traps' reset values are UNKNOWN. Zero:
            // nothing trapped by the bits that trap when set (the coarse
            // traps above decide), and everything trapped by the bits
            // that trap when clear (the newer registers, which no guest
            // gets).
            write_sysreg!("s3_4_c1_c1_4", 0); // HFGRTR_EL2
            write_sysreg!("s3_4_c1_c1_5", 0); // HFGWTR_EL2
            write_sysreg!("s3_4_c1_c1_6", 0); // HFGITR_EL2
            write_sysreg!("s3_4_c3_c1_4", 0); // HDFGRTR_EL2
            write_sysreg!("s3_4_c3_c1_5", 0); // HDFGWTR_EL2
            if f.amu {
                write_sysreg!("s3_4_c3_c1_6", 0); // HAFGRTR_EL2
            }
        }
        if f.fgt >= 2 {
            write_sysreg!("s3_4_c3_c1_0", 0); // HDFGRTR2_EL2
            write_sysreg!("s3_4_c3_c1_1", 0); // HDFGWTR2_EL2
            write_sysreg!("s3_4_c3_c1_2", 0); // HFGRTR2_EL2
            write_sysreg!("s3_4_c3_c1_3", 0); // HFGWTR2_EL2
            write_sysreg!("s3_4_c3_c1_7", 0); // HFGITR2_EL2
        }
        if f.gicv3 {
            // ICC_SRE_EL2: SRE set (EL2 uses the system registers), Enable
            // set (a guest's ICC_SRE_EL1 accesses do not trap: its view is
            // set per vCPU, `GicCpu::load`). The virtual CPU interface
            // stays off (ICH_HCR_EL2.En clear) until a vCPU is loaded;
            // with it on, the guest's ICC_* accesses reach the vCPU's own
            // list registers and ICH_VMCR_EL2, switched with it.
            let mut sre =
                LocalRegisterCopy::<u64, ICC_SRE_EL2::Register>::new(read_sysreg!("s3_4_c12_c9_5"));
            sre.modify(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
            write_sysreg!("s3_4_c12_c9_5", sre.get());
            arch::aarch64::barrier::isb();
            write_sysreg!("s3_4_c12_c11_0", 0);
        }
        // The hardware OS lock off (it is set on a cold reset): each
        // guest's own is emulated, and breakpoints work only unlocked.
        write_sysreg!("oslar_el1", 0);
    }
    arch::aarch64::barrier::isb();
    pmu_init(f);
}

/// Loads vCPU `index` of the VM whose stage 2 is `vttbr`. `other_ran`:
/// another vCPU ran on this CPU since this one did, so its stage-1
/// entries (same VMID, maybe the same ASIDs) must not serve this one.
pub fn load_vcpu(vttbr: u64, index: usize, other_ran: bool) {
    // SAFETY: switching this CPU's stage 2 to the vCPU; no guest runs on
    // this CPU meanwhile.
    unsafe {
        write_sysreg!("vttbr_el2", vttbr);
        write_sysreg!(
            "vmpidr_el2",
            (VMPIDR_EL2::RES1::SET + VMPIDR_EL2::Aff0.val(index as u64)).value
        );
    }
    arch::aarch64::barrier::isb();
    if other_ran {
        // SAFETY: TLB invalidation only drops cached translations.
        unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
    }
}

/// The guest's EL1 timer outputs now: (virtual, physical), each high when
/// the timer is enabled, unmasked and has reached its compare value
/// (`CNTx_CTL_EL0` ENABLE, IMASK, ISTATUS).
pub fn timer_levels() -> (bool, bool) {
    use super::timer_level as level;
    (level(read_sysreg!("cntv_ctl_el0")), level(read_sysreg!("cntp_ctl_el0")))
}

/// Sets the virtual counter's offset for the VM about to run.
pub fn set_cntvoff(off: u64) {
    // SAFETY: the offset only affects EL1's view of the virtual counter.
    unsafe { write_sysreg!("cntvoff_el2", off) };
}

/// Arms the EL2 physical timer (`CNTHP`) to fire when the physical count
/// reaches `at`.
pub fn hyp_timer_arm(at: u64) {
    // SAFETY: the EL2 timer is the hypervisor's own.
    unsafe {
        write_sysreg!("cnthp_cval_el2", at);
        write_sysreg!("cnthp_ctl_el2", 1);
    }
}

/// Stops the EL2 physical timer.
pub fn hyp_timer_stop() {
    // SAFETY: as above.
    unsafe { write_sysreg!("cnthp_ctl_el2", 0) };
}

/// The GICv3 CPU interface's running priority, `ICC_RPR_EL1` bits [7:0]
/// (op0 3, op1 0, CRn 12, CRm 11, op2 3; at EL2 the physical interface's,
/// not the virtual one): the priority of the highest-priority active
/// interrupt, 0xff with none. Only with a GICv3 (`ICC_SRE_EL2.SRE` set).
pub fn gic_running_priority() -> u8 {
    (read_sysreg!("icc_rpr_el1") & 0xff) as u8
}

/// The value a trapped write to `ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1` or
/// `ICC_SGI0R_EL1` (`HCR_EL2.IMO`) would have written, if that is what
/// trapped.
pub fn trapped_sgi(ec: u64, iss: u64, regs: &GuestRegs) -> Option<u64> {
    if ec != ec::SYS64 {
        return None;
    }
    let a = crate::idregs::SysregAccess::decode(iss);
    matches!(a.enc, (3, 0, 12, 11, 5..=7) if !a.read).then(|| regs.gpr(a.rt))
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
    fields::HPFAR_EL2::FIPA.read(read_sysreg!("hpfar_el2")) << PAGE_SHIFT
}

/// Takes a synchronous exception to the guest's EL1 as the architecture
/// does: `ESR_EL1` = `esr`, `FAR_EL1` = `far` if given, `ELR_EL1` = the
/// instruction, `SPSR_EL1` = the old PSTATE, PC at the vector for where the
/// guest was (EL1 with SP_EL0 or SP_EL1, EL0 in AArch64 or AArch32), and
/// PSTATE EL1h with D, A, I, F masked, BTYPE, SS and IL clear, DIT kept,
/// PAN set if `SCTLR_EL1.SPAN` is clear, SSBS from `SCTLR_EL1.DSSBS`.
fn take_el1_exception(regs: &mut GuestRegs, esr: u64, far: Option<u64>) {
    use fields::{SCTLR_EL1 as SCTLR, SPSR_EL2 as PS};
    let old = LocalRegisterCopy::<u64, PS::Register>::new(regs.pstate);
    let offset = if old.matches_all(PS::nRW::AArch32) {
        vector::LOWER_AARCH32
    } else if !old.matches_all(PS::EL::EL1) {
        vector::LOWER_AARCH64
    } else if old.matches_all(PS::SP::SpElx) {
        vector::CURRENT_SPX
    } else {
        vector::CURRENT_SP0
    };
    let f = features::features();
    let sctlr = LocalRegisterCopy::<u64, SCTLR::Register>::new(read_sysreg!("sctlr_el1"));
    let mut new = pstate_el1h_masked() | PS::DIT.val(old.read(PS::DIT)).value;
    // SCTLR_EL1.SPAN clear: PAN set on entry (FEAT_PAN); else kept.
    if f.pan {
        let pan =
            if sctlr.is_set(SCTLR::SPAN) { PS::PAN.val(old.read(PS::PAN)) } else { PS::PAN::SET };
        new |= pan.value;
    }
    // SCTLR_EL1.DSSBS (FEAT_SSBS).
    if f.ssbs && sctlr.is_set(SCTLR::DSSBS) {
        new |= PS::SSBS::SET.value;
    }
    let vbar = read_sysreg!("vbar_el1");
    // SAFETY: the guest's EL1 registers are live on this CPU while its
    // vCPU is handled; writing them is what taking the exception does.
    unsafe {
        write_sysreg!("esr_el1", esr);
        if let Some(far) = far {
            write_sysreg!("far_el1", far);
        }
        write_sysreg!("elr_el1", regs.pc);
        write_sysreg!("spsr_el1", old.get());
    }
    regs.pc = vbar + offset;
    regs.pstate = new;
}

/// Offsets in the EL1 vector table (`VBAR_EL1`) of the synchronous
/// exception entries, by where the exception came from.
mod vector {
    /// The current EL with `SP_EL0`.
    pub const CURRENT_SP0: u64 = 0x000;
    /// The current EL with `SP_ELx`.
    pub const CURRENT_SPX: u64 = 0x200;
    /// A lower EL in AArch64.
    pub const LOWER_AARCH64: u64 = 0x400;
    /// A lower EL in AArch32.
    pub const LOWER_AARCH32: u64 = 0x600;
}

/// Injects a synchronous external abort into the guest's EL1, as the
/// architecture would take it (see [`take_el1_exception`]): a data or
/// instruction abort from the same or a lower EL, DFSC/IFSC 0x10, WnR for
/// writes, FAR_EL1 the faulting VA.
pub fn inject_external_abort(regs: &mut GuestRegs, data: bool, write: bool, far: u64) {
    use fields::SPSR_EL2 as PS;
    use ESR_EL1::EC;
    let pstate = LocalRegisterCopy::<u64, PS::Register>::new(regs.pstate);
    let from_el1 = pstate.matches_all(PS::nRW::AArch64 + PS::EL::EL1);
    let ec = match (data, from_el1) {
        (true, true) => EC::DataAbortCurrentEL,
        (true, false) => EC::DataAbortLowerEL,
        (false, true) => EC::InstrAbortCurrentEL,
        (false, false) => EC::InstrAbortLowerEL,
    };
    let wnr = if data && write { ISS_ABORT::WNR::SET } else { ISS_ABORT::WNR::CLEAR };
    let iss = wnr + ISS_ABORT::FSC::SyncExternal;
    let esr = ec + ESR_EL1::IL::SET + ESR_EL1::ISS.val(iss.value);
    take_el1_exception(regs, esr.value, Some(far));
}

/// Injects an undefined-instruction exception ("unknown reason", EC 0) at
/// the instruction that trapped, as a CPU without the feature it used
/// would take it.
pub fn inject_undef(regs: &mut GuestRegs) {
    // EC 0 with IL set, ISS zero.
    let esr = ESR_EL1::EC::Unknown + ESR_EL1::IL::SET + ESR_EL1::ISS.val(0);
    take_el1_exception(regs, esr.value, None);
}

/// An FP/SIMD access trapped (exception class 0x07): never on AArch64,
/// where `CPTR_EL2` does not trap FP/SIMD (the guest's V0-V31, FPCR and
/// FPSR are saved and loaded with every exit, since the hypervisor's code
/// uses those registers too), so nothing is loaded lazily: false.
pub fn fp_trap(_iss: u64, _st: &mut super::VcpuRegs) -> bool {
    false
}

/// Emulates an instruction that trapped with exception class `ec`: true
/// when done (the caller steps over it); false when the guest gets an
/// undefined-instruction exception instead, as a CPU without what it used
/// would give it. Only trapped `MSR`/`MRS` (0x18) may be emulated; SVE
/// and SME (0x19, 0x1D), pointer-authentication traps (0x09), and AArch32
/// EL0's coprocessor accesses (0x03-0x06, 0x0C) are UNDEFINED.
pub fn emulate_trap(ec: u64, iss: u64, st: &mut super::VcpuRegs) -> bool {
    match ec {
        ec::SYS64 => sysreg::emulate(iss, &mut st.regs, &mut st.sys.debug),
        _ => false,
    }
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
        r.pstate = pstate_el1h_masked();
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

    /// Moves the guest on by `len` bytes (a trapped instruction).
    pub fn skip(&mut self, len: u64) {
        self.pc += len;
    }
}

/// EL1 system registers of a vCPU, switched when another vCPU runs on
/// the same CPU: the translation and exception state, the generic timer's
/// EL1 registers, the pointer-authentication keys (where they exist),
/// `VDISR_EL2` (where RAS exists: with `HCR_EL2.AMO` it is what the
/// guest's `DISR_EL1` reads), and the debug registers (emulated, see
/// `sysreg`).
#[derive(Clone, Copy, Default, Debug)]
pub struct GuestSysRegs {
    r: [u64; 22],
    /// CNTV_CTL, CNTV_CVAL, CNTP_CTL, CNTP_CVAL.
    timers: [u64; 4],
    keys: [u64; 10],
    vdisr: u64,
    /// The debug registers.
    pub debug: sysreg::Debug,
}

macro_rules! el1_regs {
    ($m:ident) => {
        $m!(
            0 "sctlr_el1", 1 "ttbr0_el1", 2 "ttbr1_el1", 3 "tcr_el1", 4 "mair_el1",
            5 "amair_el1", 6 "vbar_el1", 7 "contextidr_el1", 8 "cpacr_el1", 9 "esr_el1",
            10 "far_el1", 11 "afsr0_el1", 12 "afsr1_el1", 13 "elr_el1", 14 "spsr_el1",
            15 "sp_el0", 16 "tpidr_el0", 17 "tpidrro_el0", 18 "tpidr_el1", 19 "par_el1",
            20 "cntkctl_el1", 21 "csselr_el1"
        )
    };
}

macro_rules! pauth_keys {
    ($m:ident) => {
        $m!(
            0 "s3_0_c2_c1_0", 1 "s3_0_c2_c1_1", 2 "s3_0_c2_c1_2", 3 "s3_0_c2_c1_3",
            4 "s3_0_c2_c2_0", 5 "s3_0_c2_c2_1", 6 "s3_0_c2_c2_2", 7 "s3_0_c2_c2_3",
            8 "s3_0_c2_c3_0", 9 "s3_0_c2_c3_1"
        )
    };
}

impl GuestSysRegs {
    /// The state a vCPU starts with: MMU off, FP/SIMD not trapped, timers
    /// off, the OS lock set.
    pub fn reset() -> Self {
        use fields::SCTLR_EL1 as S;
        let mut r = Self::default();
        // SCTLR_EL1: the RES1 bits of Armv8.0 (later features' controls
        // in their Armv8.0 behaviour), M, C and I clear.
        let sctlr = S::EOS::SET
            + S::TSCXT::SET
            + S::EIS::SET
            + S::SPAN::SET
            + S::nTLSMD::SET
            + S::LSMAOE::SET
            + S::M::CLEAR
            + S::C::CLEAR
            + S::I::CLEAR;
        r.r[0] = sctlr.value;
        r.r[8] = CPACR_EL1::FPEN::TrapNothing.value;
        r
    }

    /// Reads the live registers, and stops the vCPU's timers in the
    /// hardware (a parked vCPU's timer must not fire for another).
    pub fn save(&mut self) {
        macro_rules! save { ($($i:literal $n:literal),*) => { $( self.r[$i] = read_sysreg!($n); )* } }
        el1_regs!(save);
        self.timers = [
            read_sysreg!("cntv_ctl_el0"),
            read_sysreg!("cntv_cval_el0"),
            read_sysreg!("cntp_ctl_el0"),
            read_sysreg!("cntp_cval_el0"),
        ];
        // SAFETY: the vCPU is off the CPU; its timers are restored with it.
        unsafe {
            write_sysreg!("cntv_ctl_el0", 0);
            write_sysreg!("cntp_ctl_el0", 0);
        }
        let f = features::features();
        if f.pauth {
            macro_rules! save_keys { ($($i:literal $n:literal),*) => { $( self.keys[$i] = read_sysreg!($n); )* } }
            pauth_keys!(save_keys);
        }
        if f.ras {
            self.vdisr = read_sysreg!("s3_4_c12_c1_1");
        }
    }

    /// When the vCPU's timers, as saved, next fire, in physical counter
    /// ticks (`u64::MAX`: neither is enabled and unmasked); the virtual
    /// timer's compare value is `cntvoff` behind the physical count.
    /// `want`: (virtual, physical), whether each timer's interrupt would
    /// be taken at all.
    pub fn timer_deadline(&self, cntvoff: u64, want: (bool, bool)) -> u64 {
        let [vctl, vcval, pctl, pcval] = self.timers;
        super::timer_deadline([vctl, pctl], [vcval, pcval], cntvoff, want)
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
        // SAFETY: as above; the compare values before the controls, so a
        // timer is never enabled with another vCPU's deadline.
        unsafe {
            write_sysreg!("cntv_cval_el0", self.timers[1]);
            write_sysreg!("cntp_cval_el0", self.timers[3]);
            write_sysreg!("cntv_ctl_el0", self.timers[0]);
            write_sysreg!("cntp_ctl_el0", self.timers[2]);
        }
        let f = features::features();
        if f.pauth {
            macro_rules! restore_keys {
                ($($i:literal $n:literal),*) => {
                    // SAFETY: as above.
                    $( unsafe { write_sysreg!($n, self.keys[$i]) }; )*
                }
            }
            pauth_keys!(restore_keys);
        }
        if f.ras {
            // SAFETY: as above.
            unsafe { write_sysreg!("s3_4_c12_c1_1", self.vdisr) };
        }
        self.debug.restore();
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
