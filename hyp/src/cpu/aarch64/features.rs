//! What this CPU implements, as far as the switching and trapping of guest
//! state depends on it: read from the ID registers once, on the boot CPU
//! (the hypervisor runs on CPUs of one kind).

use arch::read_sysreg;

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

fn field(v: u64, shift: u32) -> u64 {
    (v >> shift) & 0xf
}

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
        let pmu = field(dfr0, 8);
        let pmu_counters =
            (pmu != 0 && pmu != 0xf).then(|| (read_sysreg!("pmcr_el0") >> 11) & 0x1f);
        Self {
            pauth: field(isar1, 4)
                | field(isar1, 8)
                | field(isar1, 24)
                | field(isar1, 28)
                | field(isar2, 8)
                | field(isar2, 12)
                != 0,
            brps: field(dfr0, 12) as usize + 1,
            wrps: field(dfr0, 20) as usize + 1,
            pmu_counters,
            spe: field(dfr0, 32) != 0,
            trbe: field(dfr0, 44) != 0,
            trf: field(dfr0, 40) != 0,
            fgt: field(mmfr0, 56),
            hcx: field(mmfr1, 40) != 0,
            amu: field(pfr0, 44) != 0,
            ras: field(pfr0, 28) != 0,
            lor: field(mmfr1, 16) != 0,
            pan: field(mmfr1, 20) != 0,
            ssbs: field(pfr1, 4) != 0,
            gicv3: field(pfr0, 24) != 0,
        }
    }
}

static FEATURES: spin::Once<Features> = spin::Once::new();

/// This machine's features (read on first use).
pub fn features() -> &'static Features {
    FEATURES.call_once(Features::read)
}
