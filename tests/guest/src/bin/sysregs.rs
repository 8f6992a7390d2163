//! `sysregs`: no EL1/EL0 (PL1/PL0) register state crosses between VMs,
//! and the ID registers advertise only what works. Run with `vms=2` on one
//! CPU, so that the two VMs take turns on it.
//!
//! Each VM probes a list of system registers a guest can name (timers,
//! pointer-authentication keys, debug, PMU, and the registers of features
//! the hypervisor may hide: SVE, SME, MTE, GCS, permission overlays, ...):
//! a register whose access is UNDEFINED is inaccessible (the hypervisor
//! trapped it and injected an undefined-instruction exception, as hardware
//! would for a feature it lacks). Into every accessible writable register
//! it writes a value unique to the VM and the register, then yields the CPU
//! (`WFI`) a hundred times; after each turn of the other VM, every register
//! must still hold what this VM wrote: a register the hypervisor does not
//! switch shows the other VM's value.
//!
//! Checks: 1 `no_leaks`; 2 `features_match` (a register of a feature the ID
//! registers advertise is accessible, one of a feature they do not is
//! not); 3 `hidden` (AArch64: the ID registers say there is no SVE, SME,
//! MTE, PMU, AMU, MPAM, trace, statistical profiling, EL2 or EL3 for the
//! guest; not on ARMv7, where QEMU does not trap the ID registers);
//! 4 `survived` (probing every register did not stop the VM); AArch64:
//! 5 `id_fields` (every field of every ID register `HCR_EL2.TID3` traps,
//! 56 encodings, is one the hypervisor supports: its pass-through fields,
//! EL0 and EL1 AArch64 only, PARange at most 40 bits, debug at most v8.2
//! without double lock, no stage-2 granules, `GIC` 1 with a GICv3 and 0
//! with a GICv2 as the DTB and the distributor say; every other field,
//! SVE's, SME's, MTE's, RAS's, AMU's, MPAM's, the PMU's, SPE's, TRBE's,
//! ZFR0, SMFR0 and the AArch32 registers included, 0); 6
//! `hidden_instructions_undefined` (SVE's `RDVL` and SME's `RDSVL`
//! UNDEFINED, MTE's `IRG` generating no tag; WFxT's `WFIT` and `WFET`
//! printed).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("sysregs: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::println;
    use guest::rt::exception::catch_undefined;
    use guest::rt::smp::yield_now;
    use guest::rt::{platform, test_result_with};

    guest::guest_main!("sysregs", 1700, main);

    /// One register: how to read and write it, the value a VM writes, and
    /// the feature (if any) it belongs to.
    pub struct Reg {
        pub name: &'static str,
        pub read: fn() -> u64,
        /// `None`: probed for access only (a write could disturb the VM).
        pub write: Option<fn(u64)>,
        /// The value VM `vm` writes.
        pub value: fn(u64) -> u64,
        /// Whether the ID registers advertise its feature (`None`: no
        /// check).
        pub advertised: fn() -> Option<bool>,
        /// Read-only status bits, not compared.
        pub status: u64,
    }

    const ROUNDS: u64 = 100;
    /// CNT*_CTL.ISTATUS: whether the timer's condition is met now.
    const TIMER_ISTATUS: u64 = 1 << 2;
    /// At most this many registers are checked.
    const MAX_REGS: usize = 96;

    fn main(_dtb: u64) {
        let vm = platform::vm_id().unwrap_or(0);
        arch::enable_all();
        let regs = arch::regs();
        assert!(regs.len() <= MAX_REGS);
        let mut mine = [None::<u64>; MAX_REGS];
        let (mut accessible, mut mismatched) = (0, 0);
        for (k, r) in regs.iter().enumerate() {
            let (_, undef) = catch_undefined(r.read);
            let ok = !undef;
            if let Some(adv) = (r.advertised)() {
                if adv != ok {
                    println!(
                        "sysregs: {}: {} but its feature is {}advertised",
                        r.name,
                        if ok { "accessible" } else { "UNDEFINED" },
                        if adv { "" } else { "not " }
                    );
                    mismatched += 1;
                }
            }
            if !ok {
                continue;
            }
            accessible += 1;
            if let Some(w) = r.write {
                let (_, undef) = catch_undefined(|| w((r.value)(vm)));
                if !undef {
                    // What reads back (RAZ/WI bits and all) is ours to keep.
                    mine[k] = Some(catch_undefined(r.read).0);
                }
            }
        }
        let names: usize = mine.iter().flatten().count();
        println!(
            "sysregs: VM {vm}: {accessible} of {} registers accessible, {names} written",
            regs.len()
        );
        if vm == 1 {
            for (k, r) in regs.iter().enumerate() {
                if mine[k].is_some() {
                    guest::print!(" {}", r.name);
                }
            }
            println!();
        }
        let mut leaks = 0;
        for round in 0..ROUNDS {
            yield_now();
            for (k, r) in regs.iter().enumerate() {
                let Some(want) = mine[k] else { continue };
                let (got, _) = catch_undefined(r.read);
                // Status bits (a timer's ISTATUS) are not state.
                let (got, want) = (got & !r.status, want & !r.status);
                if got != want {
                    if leaks < 16 {
                        println!(
                            "sysregs: round {round}: {} holds {got:#x}, VM {vm} wrote {want:#x}",
                            r.name
                        );
                    }
                    leaks += 1;
                    // Put ours back, to see whether it happens again.
                    if let Some(w) = r.write {
                        let _ = catch_undefined(|| w((r.value)(vm)));
                    }
                }
            }
        }
        test_result_with(
            1,
            "no_leaks",
            leaks == 0 && names > 0,
            format_args!("{leaks} changed values over {ROUNDS} turns, {names} registers"),
        );
        test_result_with(
            2,
            "features_match",
            mismatched == 0,
            format_args!("{mismatched} registers disagree with the ID registers"),
        );
        if let Some(hidden) = arch::hidden_features() {
            test_result_with(
                3,
                "hidden",
                hidden.is_empty(),
                format_args!("advertised: {hidden:?}"),
            );
        }
        if let Some((wrong, fields)) = arch::id_fields() {
            test_result_with(
                5,
                "id_fields",
                wrong == 0,
                format_args!("{fields} fields read, {wrong} not what the hypervisor supports"),
            );
        }
        if let Some((wrong, probes)) = arch::hidden_instructions() {
            test_result_with(
                6,
                "hidden_instructions_undefined",
                wrong == 0,
                format_args!("{wrong} of {probes} instructions not UNDEFINED (or harmless)"),
            );
        }
        test_result_with(4, "survived", true, format_args!("{accessible} accessible"));
    }

    /// The value VM `vm` writes into register number `k` of a list: 64
    /// bits unique to both.
    pub fn unique(vm: u64, k: u64) -> u64 {
        0x5e00_0000_0000_0000 | (vm << 40) | (k << 16) | 0x1d0
    }

    #[cfg(target_arch = "aarch64")]
    mod arch {
        use core::arch::asm;

        use super::{unique, Reg, TIMER_ISTATUS};

        macro_rules! sysreg {
            ($name:literal, $enc:literal, $value:expr, $adv:expr, rw) => {
                sysreg!(@ $name, $enc, $value, $adv, Some({
                    fn w(v: u64) {
                        // SAFETY: a register of this VM's own EL1/EL0 state,
                        // with a value that changes nothing the runtime uses.
                        unsafe { asm!(concat!("msr ", $enc, ", {}"), in(reg) v, options(nostack)) };
                    }
                    w as fn(u64)
                }))
            };
            ($name:literal, $enc:literal, $value:expr, $adv:expr, ro) => {
                sysreg!(@ $name, $enc, $value, $adv, None)
            };
            (@ $name:literal, $enc:literal, $value:expr, $adv:expr, $write:expr) => {
                Reg {
                    name: $name,
                    read: {
                        fn r() -> u64 {
                            let v: u64;
                            // SAFETY: reading a system register has no side
                            // effects here; an UNDEFINED one is skipped.
                            unsafe { asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nostack)) };
                            v
                        }
                        r
                    },
                    write: $write,
                    value: $value,
                    advertised: $adv,
                    status: if $name.ends_with("_CTL_EL0") { TIMER_ISTATUS } else { 0 },
                }
            };
        }

        macro_rules! id {
            ($enc:literal) => {{
                let v: u64;
                // SAFETY: ID registers read without side effects.
                unsafe { asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack)) };
                v
            }};
        }

        fn field(v: u64, shift: u32) -> u64 {
            (v >> shift) & 0xf
        }
        fn pfr0() -> u64 {
            id!("id_aa64pfr0_el1")
        }
        fn pfr1() -> u64 {
            id!("id_aa64pfr1_el1")
        }
        fn dfr0() -> u64 {
            id!("id_aa64dfr0_el1")
        }
        fn isar1() -> u64 {
            id!("id_aa64isar1_el1")
        }
        fn isar2() -> u64 {
            id!("id_aa64isar2_el1")
        }
        fn mmfr1() -> u64 {
            id!("id_aa64mmfr1_el1")
        }
        fn mmfr3() -> u64 {
            id!("id_aa64mmfr3_el1")
        }

        fn any() -> Option<bool> {
            None
        }
        fn pauth() -> Option<bool> {
            let (i1, i2) = (isar1(), isar2());
            Some(
                field(i1, 4)
                    | field(i1, 8)
                    | field(i1, 24)
                    | field(i1, 28)
                    | field(i2, 8)
                    | field(i2, 12)
                    != 0,
            )
        }
        fn sve() -> Option<bool> {
            Some(field(pfr0(), 32) != 0)
        }
        fn sme() -> Option<bool> {
            Some(field(pfr1(), 24) != 0)
        }
        fn mte() -> Option<bool> {
            Some(field(pfr1(), 8) >= 2)
        }
        fn gcs() -> Option<bool> {
            Some(field(pfr1(), 44) != 0)
        }
        fn pmu() -> Option<bool> {
            let v = field(dfr0(), 8);
            Some(v != 0 && v != 0xf)
        }
        fn amu() -> Option<bool> {
            Some(field(pfr0(), 44) != 0)
        }
        fn mpam() -> Option<bool> {
            Some(field(pfr0(), 40) | field(pfr1(), 16) != 0)
        }
        fn ras() -> Option<bool> {
            Some(field(pfr0(), 28) != 0)
        }
        fn lor() -> Option<bool> {
            Some(field(mmfr1(), 16) != 0)
        }
        fn scxt() -> Option<bool> {
            Some(field(pfr0(), 56) >= 2)
        }
        fn tcr2() -> Option<bool> {
            Some(field(mmfr3(), 0) != 0)
        }
        fn sctlr2() -> Option<bool> {
            Some(field(mmfr3(), 4) != 0)
        }
        fn s1pie() -> Option<bool> {
            Some(field(mmfr3(), 8) != 0)
        }
        fn s1poe() -> Option<bool> {
            Some(field(mmfr3(), 16) != 0)
        }
        fn ls64() -> Option<bool> {
            Some(field(isar1(), 60) >= 3)
        }

        fn small(vm: u64) -> u64 {
            vm & 1
        }

        /// Lets EL1 use SVE and SME as far as this EL1 decides
        /// (CPACR_EL1.ZEN, .SMEN), so that what traps is the hypervisor's
        /// doing.
        pub fn enable_all() {
            // SAFETY: only enables (possibly absent) SIMD extensions at EL1
            // and EL0; RES0 bits on a CPU without them.
            unsafe {
                asm!(
                    "mrs {t}, cpacr_el1",
                    "orr {t}, {t}, #(3 << 16)",
                    "orr {t}, {t}, #(3 << 24)",
                    "msr cpacr_el1, {t}",
                    "isb",
                    t = out(reg) _,
                    options(nostack)
                )
            };
        }

        /// The registers the VMs probe.
        pub fn regs() -> [Reg; 56] {
            [
                // Controls: switched since the first version.
                sysreg!("TPIDR_EL0", "tpidr_el0", |vm| unique(vm, 1), any, rw),
                sysreg!("TPIDRRO_EL0", "tpidrro_el0", |vm| unique(vm, 2), any, rw),
                sysreg!("CONTEXTIDR_EL1", "contextidr_el1", |vm| vm << 8 | 3, any, rw),
                // Generic timer.
                sysreg!("CNTKCTL_EL1", "cntkctl_el1", |vm| 0x3 | (vm & 1) << 9, any, rw),
                sysreg!("CNTV_CTL_EL0", "cntv_ctl_el0", |vm| 0b10 | small(vm), any, rw),
                sysreg!("CNTV_CVAL_EL0", "cntv_cval_el0", |vm| unique(vm, 4) >> 1, any, rw),
                sysreg!("CNTP_CTL_EL0", "cntp_ctl_el0", |vm| 0b10 | small(vm), any, rw),
                sysreg!("CNTP_CVAL_EL0", "cntp_cval_el0", |vm| unique(vm, 5) >> 1, any, rw),
                sysreg!("CSSELR_EL1", "csselr_el1", small, any, rw),
                // Pointer authentication keys.
                sysreg!("APIAKeyLo_EL1", "s3_0_c2_c1_0", |vm| unique(vm, 10), pauth, rw),
                sysreg!("APIAKeyHi_EL1", "s3_0_c2_c1_1", |vm| unique(vm, 11), pauth, rw),
                sysreg!("APIBKeyLo_EL1", "s3_0_c2_c1_2", |vm| unique(vm, 12), pauth, rw),
                sysreg!("APIBKeyHi_EL1", "s3_0_c2_c1_3", |vm| unique(vm, 13), pauth, rw),
                sysreg!("APDAKeyLo_EL1", "s3_0_c2_c2_0", |vm| unique(vm, 14), pauth, rw),
                sysreg!("APDAKeyHi_EL1", "s3_0_c2_c2_1", |vm| unique(vm, 15), pauth, rw),
                sysreg!("APDBKeyLo_EL1", "s3_0_c2_c2_2", |vm| unique(vm, 16), pauth, rw),
                sysreg!("APDBKeyHi_EL1", "s3_0_c2_c2_3", |vm| unique(vm, 17), pauth, rw),
                sysreg!("APGAKeyLo_EL1", "s3_0_c2_c3_0", |vm| unique(vm, 18), pauth, rw),
                sysreg!("APGAKeyHi_EL1", "s3_0_c2_c3_1", |vm| unique(vm, 19), pauth, rw),
                // Debug: breakpoint and watchpoint 0 (not enabled), the
                // debug control's DCC trap bit, the claim tags.
                sysreg!("DBGBVR0_EL1", "s2_0_c0_c0_4", |vm| vm << 12, any, rw),
                sysreg!("DBGBCR0_EL1", "s2_0_c0_c0_5", |vm| 0x1e0 | small(vm) << 1, any, rw),
                sysreg!("DBGWVR0_EL1", "s2_0_c0_c0_6", |vm| vm << 13, any, rw),
                sysreg!("DBGWCR0_EL1", "s2_0_c0_c0_7", |vm| 0x1e0 | small(vm) << 3, any, rw),
                sysreg!("MDSCR_EL1", "s2_0_c0_c2_2", |vm| small(vm) << 12, any, rw),
                sysreg!("DBGCLAIMSET_EL1", "s2_0_c7_c8_6", |vm| 1 << small(vm), any, rw),
                sysreg!("MDCCINT_EL1", "s2_0_c0_c2_0", |vm| small(vm) << 29, any, rw),
                // PMU: hidden for guests (counters not enabled here).
                sysreg!("PMCCNTR_EL0", "s3_3_c9_c13_0", |vm| unique(vm, 30), pmu, rw),
                sysreg!("PMSELR_EL0", "s3_3_c9_c12_5", small, pmu, rw),
                sysreg!("PMUSERENR_EL0", "s3_3_c9_c14_0", small, pmu, rw),
                sysreg!("PMCCFILTR_EL0", "s3_3_c14_c15_7", |vm| small(vm) << 31, pmu, rw),
                sysreg!(
                    "PMEVCNTR0_EL0",
                    "s3_3_c14_c8_0",
                    |vm| unique(vm, 31) & 0xffff_ffff,
                    pmu,
                    rw
                ),
                sysreg!("PMEVTYPER0_EL0", "s3_3_c14_c12_0", |vm| small(vm) << 31, pmu, rw),
                sysreg!("AMUSERENR_EL0", "s3_3_c13_c2_3", small, amu, rw),
                // Features the hypervisor does not give guests: their
                // registers must be inaccessible (or, if a feature is
                // advertised, switched).
                sysreg!("ZCR_EL1", "s3_0_c1_c2_0", small, sve, rw),
                sysreg!("SMCR_EL1", "s3_0_c1_c2_6", small, sme, rw),
                sysreg!("SMPRI_EL1", "s3_0_c1_c2_4", small, sme, rw),
                sysreg!("SVCR", "s3_3_c4_c2_2", small, sme, ro),
                sysreg!("TPIDR2_EL0", "s3_3_c13_c0_5", |vm| unique(vm, 40), sme, rw),
                sysreg!("SMIDR_EL1", "s3_1_c0_c0_6", |_| 0, sme, ro),
                sysreg!("GCR_EL1", "s3_0_c1_c0_6", |vm| small(vm) << 16, mte, rw),
                sysreg!("RGSR_EL1", "s3_0_c1_c0_5", |vm| small(vm) << 8, mte, rw),
                sysreg!("TFSRE0_EL1", "s3_0_c5_c6_1", small, mte, rw),
                sysreg!("GCSCR_EL1", "s3_0_c2_c5_0", |_| 0, gcs, ro),
                sysreg!("GCSPR_EL0", "s3_3_c2_c5_1", |vm| vm << 12, gcs, rw),
                sysreg!("POR_EL0", "s3_3_c10_c2_4", |vm| unique(vm, 41), s1poe, rw),
                sysreg!("POR_EL1", "s3_0_c10_c2_4", |vm| unique(vm, 42), s1poe, rw),
                sysreg!("PIRE0_EL1", "s3_0_c10_c2_2", |vm| unique(vm, 43), s1pie, rw),
                sysreg!("TCR2_EL1", "s3_0_c2_c0_3", |_| 0, tcr2, ro),
                sysreg!("SCTLR2_EL1", "s3_0_c1_c0_3", |_| 0, sctlr2, ro),
                sysreg!("SCXTNUM_EL0", "s3_3_c13_c0_7", |vm| unique(vm, 44), scxt, rw),
                sysreg!("SCXTNUM_EL1", "s3_0_c13_c0_7", |vm| unique(vm, 45), scxt, rw),
                sysreg!(
                    "ACCDATA_EL1",
                    "s3_0_c13_c0_5",
                    |vm| unique(vm, 46) & 0xffff_ffff,
                    ls64,
                    rw
                ),
                sysreg!("MPAM1_EL1", "s3_0_c10_c5_0", |vm| small(vm) << 16, mpam, rw),
                sysreg!("ERRSELR_EL1", "s3_0_c5_c3_1", small, ras, rw),
                sysreg!("LORC_EL1", "s3_0_c10_c4_3", |vm| small(vm) << 2, lor, rw),
                // The GIC's CPU interface: the system registers of a
                // virtual GICv3 (none with a GICv2).
                sysreg!("ICC_PMR_EL1", "s3_0_c4_c6_0", |vm| 0x80 | vm << 4, gic, rw),
            ]
        }

        fn gic() -> Option<bool> {
            Some(field(pfr0(), 24) != 0)
        }

        /// Features the ID registers advertise that the hypervisor does
        /// not give guests.
        pub fn hidden_features() -> Option<super::heapless_names::Names> {
            let mut n = super::heapless_names::Names::new();
            let (p0, p1, d0) = (pfr0(), pfr1(), dfr0());
            for (name, v) in [
                ("EL2", field(p0, 8)),
                ("EL3", field(p0, 12)),
                ("SVE", field(p0, 32)),
                ("MPAM", field(p0, 40)),
                ("AMU", field(p0, 44)),
                ("SEL2", field(p0, 36)),
                ("RME", field(p0, 52)),
                ("SME", field(p1, 24)),
                ("MTE", field(p1, 8)),
                ("GCS", field(p1, 44)),
                ("NMI", field(p1, 36)),
                ("trace", field(d0, 4)),
                ("SPE", field(d0, 32)),
                ("TRBE", field(d0, 44)),
                ("BRBE", field(d0, 52)),
            ] {
                if v != 0 {
                    n.push(name);
                }
            }
            let pmu = field(d0, 8);
            if pmu != 0 && pmu != 0xf {
                n.push("PMU");
            }
            if field(p0, 0) != 1 {
                n.push("EL0 AArch32");
            }
            Some(n)
        }

        /// What an ID register field may hold for a guest.
        #[derive(Clone, Copy)]
        enum Rule {
            /// The host's value: a feature that needs nothing of the
            /// hypervisor, or whose state it switches.
            Any,
            /// Exactly this.
            Is(u64),
            /// At most this.
            AtMost(u64),
            /// 1 (the GICv3 system registers) with a GICv3, 0 with a GICv2.
            Gic,
        }
        use Rule::{Any, AtMost, Is};

        /// The fields of one ID register that may be non-zero, with what
        /// they may hold; every other field must read 0 (not implemented).
        type Fields = &'static [(&'static str, u32, Rule)];

        /// The ID registers with fields a guest may see set, by `CRm`,
        /// `op2`: what the hypervisor supports (`docs/HYPERVISOR.md`,
        /// "Register state"). Every other register of the space, SVE's,
        /// SME's, FPMR's, the AArch32 ones, ISAR3, MMFR3 and 4, DFR1, the
        /// auxiliary ones and the unallocated encodings, must read 0.
        const ID_FIELDS: [(u32, u32, &str, Fields); 9] = [
            (
                4,
                0,
                "ID_AA64PFR0_EL1",
                &[
                    ("EL0", 0, Is(1)),
                    ("EL1", 4, Is(1)),
                    ("FP", 16, Any),
                    ("AdvSIMD", 20, Any),
                    ("GIC", 24, Rule::Gic),
                    ("DIT", 48, Any),
                    ("CSV2", 56, AtMost(1)),
                    ("CSV3", 60, Any),
                ],
            ),
            (4, 1, "ID_AA64PFR1_EL1", &[("BT", 0, Any), ("SSBS", 4, Any)]),
            (
                5,
                0,
                "ID_AA64DFR0_EL1",
                &[
                    ("DebugVer", 0, AtMost(8)),
                    ("BRPs", 12, Any),
                    ("WRPs", 20, Any),
                    ("CTX_CMPs", 28, Any),
                    ("DoubleLock", 36, Is(0xf)),
                ],
            ),
            (
                6,
                0,
                "ID_AA64ISAR0_EL1",
                &[
                    ("AES", 4, Any),
                    ("SHA1", 8, Any),
                    ("SHA2", 12, Any),
                    ("CRC32", 16, Any),
                    ("Atomic", 20, Any),
                    ("RDM", 28, Any),
                    ("SHA3", 32, Any),
                    ("SM3", 36, Any),
                    ("SM4", 40, Any),
                    ("DP", 44, Any),
                    ("FHM", 48, Any),
                    ("TS", 52, Any),
                    ("TLB", 56, Any),
                    ("RNDR", 60, Any),
                ],
            ),
            (
                6,
                1,
                "ID_AA64ISAR1_EL1",
                &[
                    ("DPB", 0, Any),
                    ("APA", 4, Any),
                    ("API", 8, Any),
                    ("JSCVT", 12, Any),
                    ("FCMA", 16, Any),
                    ("LRCPC", 20, Any),
                    ("GPA", 24, Any),
                    ("GPI", 28, Any),
                    ("FRINTTS", 32, Any),
                    ("SB", 36, Any),
                    ("SPECRES", 40, Any),
                    ("BF16", 44, Any),
                    ("DGH", 48, Any),
                    ("I8MM", 52, Any),
                    ("XS", 56, Any),
                ],
            ),
            (
                6,
                2,
                "ID_AA64ISAR2_EL1",
                &[
                    ("RPRES", 4, Any),
                    ("GPA3", 8, Any),
                    ("APA3", 12, Any),
                    ("BC", 20, Any),
                    ("PAC_frac", 24, Any),
                    ("CLRBHB", 28, Any),
                    ("PRFMSLC", 40, Any),
                    ("RPRFM", 48, Any),
                    ("CSSC", 52, Any),
                ],
            ),
            (
                7,
                0,
                "ID_AA64MMFR0_EL1",
                &[
                    ("PARange", 0, AtMost(2)),
                    ("ASIDBits", 4, Any),
                    ("BigEnd", 8, Any),
                    ("SNSMem", 12, Any),
                    ("BigEndEL0", 16, Any),
                    ("TGran16", 20, Any),
                    ("TGran64", 24, Any),
                    ("TGran4", 28, Any),
                    ("TGran16_2", 32, Is(1)),
                    ("TGran64_2", 36, Is(1)),
                    ("TGran4_2", 40, Is(1)),
                    ("ExS", 44, Any),
                ],
            ),
            (
                7,
                1,
                "ID_AA64MMFR1_EL1",
                &[
                    ("HAFDBS", 0, Any),
                    ("HPDS", 12, Any),
                    ("PAN", 20, Any),
                    ("SpecSEI", 24, Any),
                    ("ETS", 36, Any),
                    ("AFP", 44, Any),
                    ("nTLBPA", 48, Any),
                    ("ECBHB", 60, Any),
                ],
            ),
            (
                7,
                2,
                "ID_AA64MMFR2_EL1",
                &[
                    ("CnP", 0, Any),
                    ("UAO", 4, Any),
                    ("LSM", 8, Any),
                    ("IESB", 12, Any),
                    ("VARange", 16, Any),
                    ("CCIDX", 20, Any),
                    ("ST", 28, Any),
                    ("AT", 32, Any),
                    ("IDS", 36, Any),
                    ("TTL", 48, Any),
                    ("BBM", 52, Any),
                    ("E0PD", 60, Any),
                ],
            ),
        ];

        /// Readers of the ID register space `op0` 3, `op1` 0, `CRn` 0,
        /// `CRm` 1..=7 (what `HCR_EL2.TID3` traps), by `CRm` and `op2`.
        macro_rules! id_space {
            ($(($crm:literal, $op2:literal)),* $(,)?) => {
                [$(($crm, $op2, {
                    fn r() -> u64 {
                        let v: u64;
                        // SAFETY: an ID register read has no side effects
                        // (an UNDEFINED one is skipped by the caller).
                        unsafe {
                            asm!(concat!("mrs {}, s3_0_c0_c", $crm, "_", $op2),
                                 out(reg) v, options(nomem, nostack))
                        };
                        v
                    }
                    r as fn() -> u64
                })),*]
            };
        }

        /// An ID register's `CRm`, `op2` and reader.
        type IdReader = (u32, u32, fn() -> u64);

        #[rustfmt::skip]
        fn id_space() -> [IdReader; 56] {
            id_space![
                (1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7),
                (2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (2, 6), (2, 7),
                (3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (3, 5), (3, 6), (3, 7),
                (4, 0), (4, 1), (4, 2), (4, 3), (4, 4), (4, 5), (4, 6), (4, 7),
                (5, 0), (5, 1), (5, 2), (5, 3), (5, 4), (5, 5), (5, 6), (5, 7),
                (6, 0), (6, 1), (6, 2), (6, 3), (6, 4), (6, 5), (6, 6), (6, 7),
                (7, 0), (7, 1), (7, 2), (7, 3), (7, 4), (7, 5), (7, 6), (7, 7),
            ]
        }

        /// The GIC the guest has, from its DTB's interrupt controller,
        /// checked against the distributor's `PIDR2.ArchRev`: whether it
        /// is a GICv3.
        fn gicv3() -> bool {
            let compatible = guest::rt::platform::fdt()
                .and_then(|f| f.property_str("/intc", "compatible"))
                .unwrap_or("");
            let v3 = compatible == "arm,gic-v3";
            // GICD_PIDR2 is at 0xFFE8 in a GICv3's 64 KiB distributor,
            // at 0xFE8 in a GICv2's 4 KiB one.
            let pidr2 = if v3 { 0xFFE8 } else { 0xFE8 };
            let rev = (guest::rt::gic::read32(guest::rt::gic::GICD + pidr2) >> 4) & 0xf;
            guest::println!("sysregs: GIC \"{compatible}\", distributor ArchRev {rev}");
            assert_eq!(rev, if v3 { 3 } else { 2 }, "the DTB's GIC is not the distributor's");
            v3
        }

        /// Every field of every ID register of the space `HCR_EL2.TID3`
        /// traps against [`ID_FIELDS`]: how many were not what the
        /// hypervisor supports, and how many were read.
        pub fn id_fields() -> Option<(u32, u32)> {
            let gic = u64::from(gicv3());
            let (mut wrong, mut read) = (0, 0);
            for (crm, op2, r) in id_space() {
                let (v, undef) = guest::rt::exception::catch_undefined(r);
                let known = ID_FIELDS.iter().find(|&&(c, o, ..)| (c, o) == (crm, op2));
                let name = known.map_or("", |&(_, _, n, _)| n);
                if undef {
                    guest::println!("sysregs: s3_0_c0_c{crm}_{op2} {name}: UNDEFINED");
                    wrong += 1;
                    continue;
                }
                if known.is_some() || v != 0 {
                    guest::println!("sysregs: s3_0_c0_c{crm}_{op2} {name} = {v:#018x}");
                }
                let fields = known.map_or(&[][..], |&(.., f)| f);
                for shift in (0..64).step_by(4) {
                    read += 1;
                    let got = field(v, shift);
                    let rule = fields.iter().find(|&&(_, s, _)| s == shift);
                    let ok = match rule.map(|&(_, _, r)| r) {
                        None => got == 0,
                        Some(Any) => true,
                        Some(Is(want)) => got == want,
                        Some(AtMost(max)) => got <= max,
                        Some(Rule::Gic) => got == gic,
                    };
                    if !ok {
                        let fname = rule.map_or("(not supported)", |&(n, ..)| n);
                        guest::println!(
                            "sysregs: s3_0_c0_c{crm}_{op2} {name} bits [{}:{shift}] {fname} = \
                             {got:#x}: not what the hypervisor supports",
                            shift + 3
                        );
                        wrong += 1;
                    }
                }
            }
            Some((wrong, read))
        }

        /// Instructions of features the ID registers do not advertise,
        /// with this EL1's own enables on (`enable_all`), so that only the
        /// hypervisor can stop them: SVE's `RDVL` and SME's `RDSVL` must be
        /// UNDEFINED. MTE's `IRG` cannot be trapped where the CPU has the
        /// instructions: it must then generate no tag (tag access is off
        /// for guests). WFxT's `WFIT` and `WFET` are probed and printed
        /// (see below). How many misbehaved, and how many were judged.
        pub fn hidden_instructions() -> Option<(u32, u32)> {
            use guest::rt::exception::catch_undefined;
            use guest::rt::gic;
            let (p0, p1, i2) = (pfr0(), pfr1(), isar2());
            let (mut wrong, mut probes) = (0, 0);
            let mut expect_undef = |name: &str, advertised: bool, undef: bool| {
                probes += 1;
                guest::println!(
                    "sysregs: {name}: {} ({}advertised)",
                    if undef { "UNDEFINED" } else { "executes" },
                    if advertised { "" } else { "not " }
                );
                if !advertised && !undef {
                    wrong += 1;
                }
            };
            let (_, undef) = catch_undefined(|| {
                let v: u64;
                // SAFETY: reads the SVE vector length; nothing else.
                unsafe {
                    asm!(".arch_extension sve", "rdvl {}, #1", out(reg) v, options(nomem, nostack))
                };
                v
            });
            expect_undef("SVE RDVL", field(p0, 32) != 0, undef);
            let (_, undef) = catch_undefined(|| {
                let v: u64;
                // SAFETY: reads the SME streaming vector length; nothing
                // else (streaming mode stays off).
                unsafe {
                    asm!(".arch_extension sme", "rdsvl {}, #1", out(reg) v, options(nomem, nostack))
                };
                v
            });
            expect_undef("SME RDSVL", field(p1, 24) != 0, undef);
            // WFxT's WFIT and WFET, with a timeout 10 ms ahead (one
            // already past completes at once, untrapped) and the virtual
            // timer armed 40 ms ahead (IRQs masked), so that a WFIT taken
            // for a WFI without its timeout wakes this vCPU all the same.
            // Printed, not judged: the hypervisor makes a trapped WFIT or
            // WFET UNDEFINED by its syndrome (ISS.TI 0b10, 0b11), but QEMU
            // reports a trapped WFIT as a WFI (TI 0), which it then is, and
            // traps no WFET (as no WFE).
            let wfxt = field(i2, 0) != 0;
            let f = guest::rt::timer::frequency();
            gic::init_cpu();
            gic::enable(gic::VTIMER_PPI);
            for (name, wfit) in [("WFxT WFIT", true), ("WFxT WFET", false)] {
                gic::vtimer_in(f / 25);
                let t0 = gic::vcounter();
                let timeout = t0 + f / 100;
                let (_, undef) = catch_undefined(|| {
                    // SAFETY: waits for an interrupt or event at most until
                    // `timeout` (or the timer); no memory is touched.
                    unsafe {
                        if wfit {
                            asm!(".arch_extension wfxt", "wfit {}", in(reg) timeout,
                                 options(nomem, nostack))
                        } else {
                            asm!(".arch_extension wfxt", "wfet {}", in(reg) timeout,
                                 options(nomem, nostack))
                        }
                    };
                });
                let waited = gic::vcounter() - t0;
                gic::vtimer_stop();
                guest::println!(
                    "sysregs: {name}: {} after {} us ({}advertised; not judged)",
                    if undef { "UNDEFINED" } else { "returned" },
                    guest::rt::timer::ticks_to_ns(waited) / 1000,
                    if wfxt { "" } else { "not " }
                );
            }
            gic::disable(gic::VTIMER_PPI);
            // IRG with a tag in the address (bits 59:56): without tag
            // access its result carries tag 0.
            let tagged = (0xa << 56) | 0x4100_0000;
            let (v, undef) = catch_undefined(|| {
                let v: u64;
                // SAFETY: computes a tagged address; nothing is accessed.
                unsafe {
                    asm!(".arch_extension mte", "irg {}, {}", out(reg) v, in(reg) tagged,
                         options(nomem, nostack))
                };
                v
            });
            let mte = field(p1, 8) != 0;
            probes += 1;
            let untagged = undef || v == tagged & !(0xf << 56);
            let adv = if mte { "" } else { "not " };
            if undef {
                guest::println!("sysregs: MTE IRG: UNDEFINED ({adv}advertised)");
            } else {
                guest::println!("sysregs: MTE IRG: {tagged:#x} -> {v:#x} ({adv}advertised)");
            }
            if !mte && !untagged {
                wrong += 1;
            }
            Some((wrong, probes))
        }
    }

    #[cfg(target_arch = "arm")]
    mod arch {
        use core::arch::asm;

        use super::{unique, Reg, TIMER_ISTATUS};

        macro_rules! cp {
            ($name:literal, $enc:literal, $value:expr, $adv:expr) => {
                Reg {
                    name: $name,
                    read: {
                        fn r() -> u64 {
                            let v: u32;
                            // SAFETY: reading a CP14/CP15 register has no side
                            // effects here; an UNDEFINED one is skipped.
                            unsafe { asm!(concat!("mrc ", $enc), out(reg) v, options(nostack)) };
                            u64::from(v)
                        }
                        r
                    },
                    write: Some({
                        fn w(v: u64) {
                            // SAFETY: a register of this VM's own PL1/PL0
                            // state, with a value the runtime does not use.
                            unsafe { asm!(concat!("mcr ", $enc), in(reg) v as u32, options(nostack)) };
                        }
                        w as fn(u64)
                    }),
                    value: $value,
                    advertised: $adv,
                    status: if $name.ends_with("_CTL") { TIMER_ISTATUS } else { 0 },
                }
            };
        }

        macro_rules! cp64 {
            ($name:literal, $op1:literal, $crm:literal, $value:expr, $adv:expr) => {
                Reg {
                    name: $name,
                    read: {
                        fn r() -> u64 {
                            let (lo, hi): (u32, u32);
                            // SAFETY: as for `cp!`.
                            unsafe {
                                asm!(concat!("mrrc p15, ", $op1, ", {}, {}, ", $crm),
                                     out(reg) lo, out(reg) hi, options(nostack))
                            };
                            (u64::from(hi) << 32) | u64::from(lo)
                        }
                        r
                    },
                    write: Some({
                        fn w(v: u64) {
                            // SAFETY: as for `cp!`.
                            unsafe {
                                asm!(concat!("mcrr p15, ", $op1, ", {}, {}, ", $crm),
                                     in(reg) v as u32, in(reg) (v >> 32) as u32, options(nostack))
                            };
                        }
                        w as fn(u64)
                    }),
                    value: $value,
                    advertised: $adv,
                    status: 0,
                }
            };
        }

        fn id_dfr0() -> u64 {
            let v: u32;
            // SAFETY: ID registers read without side effects.
            unsafe { asm!("mrc p15, 0, {}, c0, c1, 2", out(reg) v, options(nomem, nostack)) };
            u64::from(v)
        }
        fn id_pfr1() -> u64 {
            let v: u32;
            // SAFETY: as above.
            unsafe { asm!("mrc p15, 0, {}, c0, c1, 1", out(reg) v, options(nomem, nostack)) };
            u64::from(v)
        }

        fn any() -> Option<bool> {
            None
        }

        /// Nothing to enable on ARMv7 (no SVE or SME).
        pub fn enable_all() {}

        fn small(vm: u64) -> u64 {
            vm & 1
        }

        /// The registers the VMs probe.
        pub fn regs() -> [Reg; 16] {
            [
                cp!("TPIDRURW", "p15, 0, {}, c13, c0, 2", |vm| unique(vm, 1) & 0xffff_ffff, any),
                cp!("CONTEXTIDR", "p15, 0, {}, c13, c0, 1", |vm| vm << 8 | 3, any),
                cp!("CNTKCTL", "p15, 0, {}, c14, c1, 0", |vm| 0x3 | (vm & 1) << 9, any),
                cp!("CNTV_CTL", "p15, 0, {}, c14, c3, 1", |vm| 0b10 | small(vm), any),
                cp64!("CNTV_CVAL", "3", "c14", |vm| unique(vm, 4) >> 1, any),
                cp!("CNTP_CTL", "p15, 0, {}, c14, c2, 1", |vm| 0b10 | small(vm), any),
                cp64!("CNTP_CVAL", "2", "c14", |vm| unique(vm, 5) >> 1, any),
                cp!("CSSELR", "p15, 2, {}, c0, c0, 0", small, any),
                cp!("PMCCNTR", "p15, 0, {}, c9, c13, 0", |vm| unique(vm, 30) & 0xffff_ffff, any),
                cp!("PMSELR", "p15, 0, {}, c9, c12, 5", small, any),
                cp!("PMUSERENR", "p15, 0, {}, c9, c14, 0", small, any),
                // Debug: read as zero and ignore writes for ARMv7 guests
                // (ID_DFR0 says there is none), so nothing to switch.
                cp!("DBGBVR0", "p14, 0, {}, c0, c0, 4", |vm| vm << 12, any),
                cp!("DBGBCR0", "p14, 0, {}, c0, c0, 5", |vm| 0x1e0 | small(vm) << 1, any),
                cp!("DBGWVR0", "p14, 0, {}, c0, c0, 6", |vm| vm << 13, any),
                cp!("DBGWCR0", "p14, 0, {}, c0, c0, 7", |vm| 0x1e0 | small(vm) << 3, any),
                cp!("DBGCLAIMSET", "p14, 0, {}, c7, c8, 6", |vm| 1 << small(vm), any),
            ]
        }

        /// Not on ARMv7 (see [`hidden_features`]).
        pub fn id_fields() -> Option<(u32, u32)> {
            None
        }

        /// Not on ARMv7: no SVE, SME, MTE or WFxT there.
        pub fn hidden_instructions() -> Option<(u32, u32)> {
            None
        }

        /// Not checked on ARMv7: QEMU honours `HCR.TID3` only from ARMv8
        /// on, so an ARMv7 guest there reads the host's ID registers
        /// whatever the hypervisor does (the hypervisor's values are
        /// tested on the host, `hyp::idregs`). Printed for the log.
        pub fn hidden_features() -> Option<super::heapless_names::Names> {
            let (d0, p1) = (id_dfr0(), id_pfr1());
            guest::println!(
                "sysregs: ID_PFR1 {p1:#x}, ID_DFR0 {d0:#x} (the host's under QEMU: not checked)"
            );
            None
        }
    }

    /// A few names, without a heap.
    #[cfg_attr(target_arch = "arm", allow(dead_code))]
    mod heapless_names {
        /// Up to 16 feature names.
        pub struct Names {
            names: [&'static str; 16],
            len: usize,
        }

        impl Names {
            pub fn new() -> Self {
                Self { names: [""; 16], len: 0 }
            }
            pub fn push(&mut self, n: &'static str) {
                if self.len < 16 {
                    self.names[self.len] = n;
                    self.len += 1;
                }
            }
            pub fn is_empty(&self) -> bool {
                self.len == 0
            }
        }

        impl core::fmt::Debug for Names {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_list().entries(&self.names[..self.len]).finish()
            }
        }
    }
}
