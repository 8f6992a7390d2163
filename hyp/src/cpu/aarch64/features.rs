//! What this CPU implements, as far as the switching and trapping of guest
//! state depends on it: read from the ID registers once, on the boot CPU
//! (the hypervisor runs on CPUs of one kind).

use arch::fields::aarch64::PMCR_EL0;
use arch::read_sysreg;

use crate::idregs::{
    ID_AA64DFR0 as DFR0, ID_AA64ISAR1 as ISAR1, ID_AA64ISAR2 as ISAR2, ID_AA64MMFR0 as MMFR0,
    ID_AA64MMFR1 as MMFR1, ID_AA64PFR0 as PFR0, ID_AA64PFR1 as PFR1,
};

/// The features the EL2 set-up and the vCPU switch look at.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// Pointer authentication (any algorithm): the keys are switched.
    pub pauth: bool,
    /// Breakpoints and watchpoints implemented (`BRPs + 1`, `WRPs + 1`).
    pub brps: usize,
    /// See `brps`.
    pub wrps: usize,
    /// Event counters of the PMU (`PMCR_EL0.N`), if there is a PMU.
    pub pmu_counters: Option<u64>,
    /// Statistical profiling (`MDCR_EL2.TPMS`, `E2PB`).
    pub spe: bool,
    /// The trace buffer extension (`MDCR_EL2.E2TB`).
    pub trbe: bool,
    /// Self-hosted trace filtering (`MDCR_EL2.TTRF`).
    pub trf: bool,
    /// Fine-grained traps: 0 none, 1 FEAT_FGT, 2 FEAT_FGT2.
    pub fgt: u64,
    /// `HCRX_EL2`.
    pub hcx: bool,
    /// Activity monitors (`CPTR_EL2.TAM`, `HAFGRTR_EL2`).
    pub amu: bool,
    /// RAS: `HCR_EL2.TERR`, and `VDISR_EL2` is switched.
    pub ras: bool,
    /// LORegions (`HCR_EL2.TLOR`).
    pub lor: bool,
    /// PAN: exception entry may set `PSTATE.PAN`.
    pub pan: bool,
    /// `PSTATE.SSBS` is set from `SCTLR_EL1.DSSBS` on exception entry.
    pub ssbs: bool,
    /// The GICv3 system-register interface (`ICC_*`, `ICH_*`).
    pub gicv3: bool,
}

/// `ID_AA64DFR0_EL1.PMUVer`: no PMU, or an IMPLEMENTATION DEFINED one.
const PMU_NONE: u64 = 0x0;
/// See [`PMU_NONE`].
const PMU_IMP_DEF: u64 = 0xf;

impl Features {
    /// Reads them from this CPU's ID registers.
    pub fn read() -> Self {
        let pfr0 = read_sysreg!("id_aa64pfr0_el1");
        let pfr1 = read_sysreg!("id_aa64pfr1_el1");
        let dfr0 = read_sysreg!("id_aa64dfr0_el1");
        let isar1 = read_sysreg!("id_aa64isar1_el1");
        let isar2 = read_sysreg!("id_aa64isar2_el1");
        let mmfr0 = read_sysreg!("id_aa64mmfr0_el1");
        let mmfr1 = read_sysreg!("id_aa64mmfr1_el1");
        let pmu = DFR0::PMUVer.read(dfr0);
        let pmu_counters = (pmu != PMU_NONE && pmu != PMU_IMP_DEF)
            .then(|| PMCR_EL0::N.read(read_sysreg!("pmcr_el0")));
        Self {
            pauth: ISAR1::APA.read(isar1)
                | ISAR1::API.read(isar1)
                | ISAR1::GPA.read(isar1)
                | ISAR1::GPI.read(isar1)
                | ISAR2::GPA3.read(isar2)
                | ISAR2::APA3.read(isar2)
                != 0,
            brps: DFR0::BRPs.read(dfr0) as usize + 1,
            wrps: DFR0::WRPs.read(dfr0) as usize + 1,
            pmu_counters,
            spe: DFR0::PMSVer.read(dfr0) != 0,
            trbe: DFR0::TraceBuffer.read(dfr0) != 0,
            trf: DFR0::TraceFilt.read(dfr0) != 0,
            fgt: MMFR0::FGT.read(mmfr0),
            hcx: MMFR1::HCX.read(mmfr1) != 0,
            amu: PFR0::AMU.read(pfr0) != 0,
            ras: PFR0::RAS.read(pfr0) != 0,
            lor: MMFR1::LO.read(mmfr1) != 0,
            pan: MMFR1::PAN.read(mmfr1) != 0,
            ssbs: PFR1::SSBS.read(pfr1) != 0,
            gicv3: PFR0::GIC.read(pfr0) != 0,
        }
    }
}

static FEATURES: spin::Once<Features> = spin::Once::new();

/// This machine's features (read on first use).
pub fn features() -> &'static Features {
    FEATURES.call_once(Features::read)
}
