//! What the ID registers tell a guest: the host's values with every
//! feature the hypervisor does not give guests taken out (KVM's
//! "sanitised" view). A field is passed through only where a guest can use
//! the feature without the hypervisor's help, or with help it gives (the
//! pointer-authentication keys are switched per vCPU, the debug registers
//! emulated); every other field, known or not yet defined, reads as the
//! "not implemented" value. Portable and tested on the host; the EL2 trap
//! handlers feed it the host's registers.

use tock_registers::fields::FieldValue;
use tock_registers::{LocalRegisterCopy, RegisterLongName};

use crate::syndrome::{ISS_COP, ISS_SYS64};

/// The fields of the ID registers the hypervisor passes through or sets
/// (named as in the Arm ARM).
#[allow(missing_docs, non_camel_case_types)]
pub mod fields {
    use tock_registers::register_bitfields;

    register_bitfields! {u64,
        /// `ID_AA64PFR0_EL1`.
        pub ID_AA64PFR0 [
            EL0 OFFSET(0) NUMBITS(4) [], EL1 OFFSET(4) NUMBITS(4) [],
            EL2 OFFSET(8) NUMBITS(4) [], EL3 OFFSET(12) NUMBITS(4) [],
            FP OFFSET(16) NUMBITS(4) [], AdvSIMD OFFSET(20) NUMBITS(4) [],
            GIC OFFSET(24) NUMBITS(4) [], RAS OFFSET(28) NUMBITS(4) [],
            SVE OFFSET(32) NUMBITS(4) [], SEL2 OFFSET(36) NUMBITS(4) [],
            MPAM OFFSET(40) NUMBITS(4) [], AMU OFFSET(44) NUMBITS(4) [],
            DIT OFFSET(48) NUMBITS(4) [], RME OFFSET(52) NUMBITS(4) [],
            CSV2 OFFSET(56) NUMBITS(4) [], CSV3 OFFSET(60) NUMBITS(4) []
        ],
        /// `ID_AA64PFR1_EL1`.
        pub ID_AA64PFR1 [
            BT OFFSET(0) NUMBITS(4) [], SSBS OFFSET(4) NUMBITS(4) [],
            MTE OFFSET(8) NUMBITS(4) [], SME OFFSET(24) NUMBITS(4) [],
            NMI OFFSET(36) NUMBITS(4) [], GCS OFFSET(44) NUMBITS(4) []
        ],
        /// `ID_AA64DFR0_EL1`.
        pub ID_AA64DFR0 [
            DebugVer OFFSET(0) NUMBITS(4) [], TraceVer OFFSET(4) NUMBITS(4) [],
            PMUVer OFFSET(8) NUMBITS(4) [], BRPs OFFSET(12) NUMBITS(4) [],
            WRPs OFFSET(20) NUMBITS(4) [], CTX_CMPs OFFSET(28) NUMBITS(4) [],
            PMSVer OFFSET(32) NUMBITS(4) [], DoubleLock OFFSET(36) NUMBITS(4) [],
            TraceFilt OFFSET(40) NUMBITS(4) [], TraceBuffer OFFSET(44) NUMBITS(4) []
        ],
        /// `ID_AA64ISAR0_EL1`.
        pub ID_AA64ISAR0 [
            AES OFFSET(4) NUMBITS(4) [], SHA1 OFFSET(8) NUMBITS(4) [],
            SHA2 OFFSET(12) NUMBITS(4) [], CRC32 OFFSET(16) NUMBITS(4) [],
            Atomic OFFSET(20) NUMBITS(4) [], TME OFFSET(24) NUMBITS(4) [],
            RDM OFFSET(28) NUMBITS(4) [], SHA3 OFFSET(32) NUMBITS(4) [],
            SM3 OFFSET(36) NUMBITS(4) [], SM4 OFFSET(40) NUMBITS(4) [],
            DP OFFSET(44) NUMBITS(4) [], FHM OFFSET(48) NUMBITS(4) [],
            TS OFFSET(52) NUMBITS(4) [], TLB OFFSET(56) NUMBITS(4) [],
            RNDR OFFSET(60) NUMBITS(4) []
        ],
        /// `ID_AA64ISAR1_EL1`.
        pub ID_AA64ISAR1 [
            DPB OFFSET(0) NUMBITS(4) [], APA OFFSET(4) NUMBITS(4) [],
            API OFFSET(8) NUMBITS(4) [], JSCVT OFFSET(12) NUMBITS(4) [],
            FCMA OFFSET(16) NUMBITS(4) [], LRCPC OFFSET(20) NUMBITS(4) [],
            GPA OFFSET(24) NUMBITS(4) [], GPI OFFSET(28) NUMBITS(4) [],
            FRINTTS OFFSET(32) NUMBITS(4) [], SB OFFSET(36) NUMBITS(4) [],
            SPECRES OFFSET(40) NUMBITS(4) [], BF16 OFFSET(44) NUMBITS(4) [],
            DGH OFFSET(48) NUMBITS(4) [], I8MM OFFSET(52) NUMBITS(4) [],
            XS OFFSET(56) NUMBITS(4) [], LS64 OFFSET(60) NUMBITS(4) []
        ],
        /// `ID_AA64ISAR2_EL1`.
        pub ID_AA64ISAR2 [
            WFxT OFFSET(0) NUMBITS(4) [], RPRES OFFSET(4) NUMBITS(4) [],
            GPA3 OFFSET(8) NUMBITS(4) [], APA3 OFFSET(12) NUMBITS(4) [],
            MOPS OFFSET(16) NUMBITS(4) [], BC OFFSET(20) NUMBITS(4) [],
            PAC_frac OFFSET(24) NUMBITS(4) [], CLRBHB OFFSET(28) NUMBITS(4) [],
            PRFMSLC OFFSET(40) NUMBITS(4) [], RPRFM OFFSET(48) NUMBITS(4) [],
            CSSC OFFSET(52) NUMBITS(4) []
        ],
        /// `ID_AA64MMFR0_EL1`.
        pub ID_AA64MMFR0 [
            PARange OFFSET(0) NUMBITS(4) [], ASIDBits OFFSET(4) NUMBITS(4) [],
            BigEnd OFFSET(8) NUMBITS(4) [], SNSMem OFFSET(12) NUMBITS(4) [],
            BigEndEL0 OFFSET(16) NUMBITS(4) [], TGran16 OFFSET(20) NUMBITS(4) [],
            TGran64 OFFSET(24) NUMBITS(4) [], TGran4 OFFSET(28) NUMBITS(4) [],
            TGran16_2 OFFSET(32) NUMBITS(4) [], TGran64_2 OFFSET(36) NUMBITS(4) [],
            TGran4_2 OFFSET(40) NUMBITS(4) [], ExS OFFSET(44) NUMBITS(4) [],
            FGT OFFSET(56) NUMBITS(4) [], ECV OFFSET(60) NUMBITS(4) []
        ],
        /// `ID_AA64MMFR1_EL1`.
        pub ID_AA64MMFR1 [
            HAFDBS OFFSET(0) NUMBITS(4) [], VMIDBits OFFSET(4) NUMBITS(4) [],
            VH OFFSET(8) NUMBITS(4) [], HPDS OFFSET(12) NUMBITS(4) [],
            LO OFFSET(16) NUMBITS(4) [], PAN OFFSET(20) NUMBITS(4) [],
            SpecSEI OFFSET(24) NUMBITS(4) [], XNX OFFSET(28) NUMBITS(4) [],
            TWED OFFSET(32) NUMBITS(4) [], ETS OFFSET(36) NUMBITS(4) [],
            HCX OFFSET(40) NUMBITS(4) [], AFP OFFSET(44) NUMBITS(4) [],
            nTLBPA OFFSET(48) NUMBITS(4) [], ECBHB OFFSET(60) NUMBITS(4) []
        ],
        /// `ID_AA64MMFR2_EL1`.
        pub ID_AA64MMFR2 [
            CnP OFFSET(0) NUMBITS(4) [], UAO OFFSET(4) NUMBITS(4) [],
            LSM OFFSET(8) NUMBITS(4) [], IESB OFFSET(12) NUMBITS(4) [],
            VARange OFFSET(16) NUMBITS(4) [], CCIDX OFFSET(20) NUMBITS(4) [],
            NV OFFSET(24) NUMBITS(4) [], ST OFFSET(28) NUMBITS(4) [],
            AT OFFSET(32) NUMBITS(4) [], IDS OFFSET(36) NUMBITS(4) [],
            FWB OFFSET(40) NUMBITS(4) [], TTL OFFSET(48) NUMBITS(4) [],
            BBM OFFSET(52) NUMBITS(4) [], EVT OFFSET(56) NUMBITS(4) [],
            E0PD OFFSET(60) NUMBITS(4) []
        ]
    }

    register_bitfields! {u32,
        /// `ID_PFR0` (ARMv7).
        pub ID_PFR0 [
            State0 OFFSET(0) NUMBITS(4) [], State1 OFFSET(4) NUMBITS(4) [],
            State2 OFFSET(8) NUMBITS(4) [], State3 OFFSET(12) NUMBITS(4) []
        ],
        /// `ID_PFR1` (ARMv7).
        pub ID_PFR1 [
            ProgMod OFFSET(0) NUMBITS(4) [], Security OFFSET(4) NUMBITS(4) [],
            MProgMod OFFSET(8) NUMBITS(4) [], Virtualization OFFSET(12) NUMBITS(4) [],
            GenTimer OFFSET(16) NUMBITS(4) []
        ],
        /// `ID_DFR0` (ARMv7).
        pub ID_DFR0 [
            CopDbg OFFSET(0) NUMBITS(4) [], CopSDbg OFFSET(4) NUMBITS(4) [],
            MMapDbg OFFSET(8) NUMBITS(4) [], CopTrc OFFSET(12) NUMBITS(4) [],
            MMapTrc OFFSET(16) NUMBITS(4) [], MProfDbg OFFSET(20) NUMBITS(4) [],
            PerfMon OFFSET(24) NUMBITS(4) []
        ],
        /// `MVFR0` (ARMv7 VFP).
        pub MVFR0 [
            SIMDReg OFFSET(0) NUMBITS(4) [], FPSP OFFSET(4) NUMBITS(4) [],
            FPDP OFFSET(8) NUMBITS(4) [], FPTrap OFFSET(12) NUMBITS(4) [],
            FPDivide OFFSET(16) NUMBITS(4) [], FPSqrt OFFSET(20) NUMBITS(4) [],
            FPShVec OFFSET(24) NUMBITS(4) [], FPRound OFFSET(28) NUMBITS(4) []
        ],
        /// `MVFR1` (ARMv7 VFP and Advanced SIMD).
        pub MVFR1 [
            FPFtZ OFFSET(0) NUMBITS(4) [], FPDNaN OFFSET(4) NUMBITS(4) [],
            SIMDLS OFFSET(8) NUMBITS(4) [], SIMDInt OFFSET(12) NUMBITS(4) [],
            SIMDSP OFFSET(16) NUMBITS(4) [], SIMDHP OFFSET(20) NUMBITS(4) [],
            FPHP OFFSET(24) NUMBITS(4) [], SIMDFMAC OFFSET(28) NUMBITS(4) []
        ]
    }
}
pub use fields::*;

/// What the hypervisor gives guests beyond what needs no help.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct GuestCaps {
    /// The pointer-authentication keys are switched per vCPU.
    pub pauth: bool,
    /// The guest has a virtual GICv3 (its CPU interface through the
    /// system registers).
    pub gicv3: bool,
}

/// Debug architecture versions of `ID_AA64DFR0_EL1.DebugVer` up to which
/// the emulated debug registers are what the architecture specifies
/// (Armv8.2: breakpoints, watchpoints, context comparison).
const DEBUG_V8_2: u64 = 0x8;
/// `ID_AA64DFR0_EL1.DoubleLock`: not implemented (OSDLR_EL1 reads as 0).
const DOUBLE_LOCK_NONE: u64 = 0xf;
/// `ID_AA64MMFR0_EL1.PARange`: 40 bits, the guests' IPA size.
const PA_40_BITS: u64 = 0b0010;
/// `ID_AA64MMFR0_EL1.TGran*_2`: not supported at stage 2 (a guest has no
/// EL2).
const STAGE2_GRANULE_NONE: u64 = 0b0001;

/// A register holding `fields` and zero elsewhere.
fn view<T: tock_registers::UIntLike, R: RegisterLongName>(
    fields: impl IntoIterator<Item = FieldValue<T, R>>,
) -> T {
    let mut g = LocalRegisterCopy::<T, R>::new(T::zero());
    for f in fields {
        g.modify(f);
    }
    g.get()
}

/// The value a guest reads from the AArch64 ID register at `CRm`, `op2`
/// (encoding `op0` 3, `op1` 0, `CRn` 0, the space `HCR_EL2.TID3` traps),
/// given the host's value there.
pub fn aarch64(crm: u32, op2: u32, host: u64, caps: GuestCaps) -> u64 {
    use ID_AA64DFR0 as D0;
    use ID_AA64ISAR0 as I0;
    use ID_AA64ISAR1 as I1;
    use ID_AA64ISAR2 as I2;
    use ID_AA64MMFR0 as M0;
    use ID_AA64MMFR1 as M1;
    use ID_AA64MMFR2 as M2;
    use ID_AA64PFR0 as P0;
    use ID_AA64PFR1 as P1;
    match (crm, op2) {
        // ID_AA64PFR0_EL1: AArch64 only at EL0 and EL1; no EL2, EL3, SVE,
        // RAS, MPAM, AMU or RME; the GIC system registers (GICv3.0) when
        // the guest has a virtual GICv3; CSV2 without SCXTNUM (trapped).
        (4, 0) => {
            let h = LocalRegisterCopy::<u64, P0::Register>::new(host);
            view([
                P0::EL0.val(1),
                P0::EL1.val(1),
                P0::FP.val(h.read(P0::FP)),
                P0::AdvSIMD.val(h.read(P0::AdvSIMD)),
                P0::DIT.val(h.read(P0::DIT)),
                P0::CSV2.val(h.read(P0::CSV2).min(1)),
                P0::CSV3.val(h.read(P0::CSV3)),
                P0::GIC.val(u64::from(caps.gicv3)),
            ])
        }
        // ID_AA64PFR1_EL1: branch targets and speculative-store bypass
        // safety need nothing of the hypervisor; no MTE, SME, NMI, GCS.
        (4, 1) => {
            let h = LocalRegisterCopy::<u64, P1::Register>::new(host);
            view([P1::BT.val(h.read(P1::BT)), P1::SSBS.val(h.read(P1::SSBS))])
        }
        // ID_AA64DFR0_EL1: the debug registers (emulated per vCPU) up to
        // v8.2, no PMU, trace, statistical profiling or double lock.
        (5, 0) => {
            let h = LocalRegisterCopy::<u64, D0::Register>::new(host);
            view([
                D0::DebugVer.val(h.read(D0::DebugVer).min(DEBUG_V8_2)),
                D0::BRPs.val(h.read(D0::BRPs)),
                D0::WRPs.val(h.read(D0::WRPs)),
                D0::CTX_CMPs.val(h.read(D0::CTX_CMPs)),
                D0::DoubleLock.val(DOUBLE_LOCK_NONE),
            ])
        }
        // ID_AA64ISAR0_EL1: instructions without state, all but TME.
        (6, 0) => {
            let h = LocalRegisterCopy::<u64, I0::Register>::new(host);
            view(
                [
                    I0::AES,
                    I0::SHA1,
                    I0::SHA2,
                    I0::CRC32,
                    I0::Atomic,
                    I0::RDM,
                    I0::SHA3,
                    I0::SM3,
                    I0::SM4,
                    I0::DP,
                    I0::FHM,
                    I0::TS,
                    I0::TLB,
                    I0::RNDR,
                ]
                .map(|f| f.val(h.read(f))),
            )
        }
        // ID_AA64ISAR1_EL1: pointer authentication if the keys are
        // switched; no LS64 (its accelerator data register is not).
        (6, 1) => {
            let h = LocalRegisterCopy::<u64, I1::Register>::new(host);
            let pauth = |f: tock_registers::fields::Field<u64, I1::Register>| {
                f.val(if caps.pauth { h.read(f) } else { 0 })
            };
            let fields = [
                I1::DPB,
                I1::JSCVT,
                I1::FCMA,
                I1::LRCPC,
                I1::FRINTTS,
                I1::SB,
                I1::SPECRES,
                I1::BF16,
                I1::DGH,
                I1::I8MM,
                I1::XS,
            ]
            .map(|f| f.val(h.read(f)));
            view(fields.into_iter().chain([
                pauth(I1::APA),
                pauth(I1::API),
                pauth(I1::GPA),
                pauth(I1::GPI),
            ]))
        }
        // ID_AA64ISAR2_EL1: as ISAR1 for pointer authentication; no WFxT
        // (the timeout is not honoured) and no MOPS (HCRX_EL2 keeps it off).
        (6, 2) => {
            let h = LocalRegisterCopy::<u64, I2::Register>::new(host);
            let pauth = |f: tock_registers::fields::Field<u64, I2::Register>| {
                f.val(if caps.pauth { h.read(f) } else { 0 })
            };
            view([
                I2::RPRES.val(h.read(I2::RPRES)),
                I2::BC.val(h.read(I2::BC)),
                I2::CLRBHB.val(h.read(I2::CLRBHB)),
                I2::PRFMSLC.val(h.read(I2::PRFMSLC)),
                I2::RPRFM.val(h.read(I2::RPRFM)),
                I2::CSSC.val(h.read(I2::CSSC)),
                pauth(I2::GPA3),
                pauth(I2::APA3),
                pauth(I2::PAC_frac),
            ])
        }
        // ID_AA64MMFR0_EL1: the guest's stage 1 as the host's, a 40-bit
        // physical (intermediate) address space, no stage 2, no fine-grained
        // traps, no enhanced counter virtualization.
        (7, 0) => {
            let h = LocalRegisterCopy::<u64, M0::Register>::new(host);
            let fields = [
                M0::ASIDBits,
                M0::BigEnd,
                M0::SNSMem,
                M0::BigEndEL0,
                M0::TGran16,
                M0::TGran64,
                M0::TGran4,
                M0::ExS,
            ]
            .map(|f| f.val(h.read(f)));
            view(fields.into_iter().chain([
                M0::PARange.val(h.read(M0::PARange).min(PA_40_BITS)),
                M0::TGran16_2.val(STAGE2_GRANULE_NONE),
                M0::TGran64_2.val(STAGE2_GRANULE_NONE),
                M0::TGran4_2.val(STAGE2_GRANULE_NONE),
            ]))
        }
        // ID_AA64MMFR1_EL1: stage-1 features only; no VHE, VMIDs, LORegions,
        // stage-2 XN split, TWED, HCRX.
        (7, 1) => {
            let h = LocalRegisterCopy::<u64, M1::Register>::new(host);
            view(
                [
                    M1::HAFDBS,
                    M1::HPDS,
                    M1::PAN,
                    M1::SpecSEI,
                    M1::ETS,
                    M1::AFP,
                    M1::nTLBPA,
                    M1::ECBHB,
                ]
                .map(|f| f.val(h.read(f))),
            )
        }
        // ID_AA64MMFR2_EL1: stage-1 features only; no nested
        // virtualization, FWB, enhanced virtualization traps.
        (7, 2) => {
            let h = LocalRegisterCopy::<u64, M2::Register>::new(host);
            view(
                [
                    M2::CnP,
                    M2::UAO,
                    M2::LSM,
                    M2::IESB,
                    M2::VARange,
                    M2::CCIDX,
                    M2::ST,
                    M2::AT,
                    M2::IDS,
                    M2::TTL,
                    M2::BBM,
                    M2::E0PD,
                ]
                .map(|f| f.val(h.read(f))),
            )
        }
        // Everything else in the space: the AArch32 registers (no AArch32
        // for guests), SVE, SME, FPMR, DFR1, the auxiliary registers, MMFR3
        // and 4 and the unallocated encodings: nothing.
        _ => 0,
    }
}

/// A register of the group `HCR_EL2.TID1` traps that a guest reads as
/// the host's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tid1 {
    /// `REVIDR_EL1`: the implementation's revision (errata fixed).
    Revidr,
    /// `AIDR_EL1`: implementation-defined identification.
    Aidr,
}

/// What a guest's read of the register at `enc` (`op0`, `op1`, `CRn`,
/// `CRm`, `op2`) in the group `HCR_EL2.TID1` traps comes to: `REVIDR_EL1`
/// and `AIDR_EL1` read as the host's (they describe no feature); `SMIDR_EL1`
/// (`op1` 1, `op2` 6), SME's identification, which reads as the host's
/// without the trap although `ID_AA64PFR1_EL1.SME` says there is no SME,
/// is UNDEFINED (`None`), as on a CPU without SME; so is anything else.
pub fn aarch64_tid1(enc: (u32, u32, u32, u32, u32)) -> Option<Tid1> {
    match enc {
        (3, 0, 0, 0, 6) => Some(Tid1::Revidr),
        (3, 1, 0, 0, 7) => Some(Tid1::Aidr),
        _ => None,
    }
}

/// The value an ARMv7 guest reads from the ID register at `CRm`, `op2`
/// (`MRC p15, 0, Rt, c0, CRm, op2`, the registers `HCR.TID3` traps), given
/// the host's value there.
pub fn armv7(crm: u32, op2: u32, host: u32) -> u32 {
    match (crm, op2) {
        // ID_PFR0: ARM, Thumb and Jazelle states; no ThumbEE (its
        // registers are not switched).
        (1, 0) => {
            let h = LocalRegisterCopy::<u32, ID_PFR0::Register>::new(host);
            view([ID_PFR0::State0, ID_PFR0::State1, ID_PFR0::State2].map(|f| f.val(h.read(f))))
        }
        // ID_PFR1: the programmers' model and the generic timer; no
        // Security or Virtualization Extensions for guests.
        (1, 1) => {
            let h = LocalRegisterCopy::<u32, ID_PFR1::Register>::new(host);
            view([ID_PFR1::ProgMod, ID_PFR1::GenTimer].map(|f| f.val(h.read(f))))
        }
        // ID_MMFR0-3, ID_ISAR0-5: memory model and instructions, as the
        // host's.
        (1, 4..=7) | (2, 0..=5) => host,
        // ID_DFR0 (no debug, trace or PMU for guests), ID_AFR0, and the
        // rest of the space: nothing.
        _ => 0,
    }
}

/// The `VMRS` register numbers of the VFP ID registers (the `CRn` of a
/// trapped `VMRS`'s syndrome).
pub mod vfp_reg {
    /// FPSID (`HCR.TID0` traps it).
    pub const FPSID: u32 = 0b0000;
    /// MVFR1 (`HCR.TID3`).
    pub const MVFR1: u32 = 0b0110;
    /// MVFR0 (`HCR.TID3`).
    pub const MVFR0: u32 = 0b0111;
}

/// The value an ARMv7 guest reads with `VMRS` from VFP ID register `reg`
/// ([`vfp_reg`]), given the host's value there. `fp`: whether guests get
/// the VFP (the CPUs have one, and the hypervisor switches its state).
///
/// A guest gets the host's VFP and Advanced SIMD whole: D0-D31 (or D0-D15),
/// FPSCR and FPEXC (with FPINST/FPINST2 when FPEXC.EX is set, so trapped
/// floating-point exceptions work) are switched per vCPU, and every other
/// feature MVFR0 and MVFR1 describe (precisions, divide, square root, short
/// vectors, rounding modes, flush-to-zero, default NaN, the Advanced SIMD
/// instruction groups, half precision, fused multiply-accumulate) is
/// instructions without state. So MVFR0 and MVFR1 are the host's, each of
/// their fields (ARMv7 defines them all) passed through; FPSID, which only
/// names the implementation, is the host's. Without a VFP all three read
/// as zero (a guest cannot execute `VMRS` then anyway: it is UNDEFINED).
pub fn armv7_vfp(reg: u32, host: u32, fp: bool) -> u32 {
    if !fp {
        return 0;
    }
    let h0 = LocalRegisterCopy::<u32, MVFR0::Register>::new(host);
    let h1 = LocalRegisterCopy::<u32, MVFR1::Register>::new(host);
    match reg {
        vfp_reg::FPSID => host,
        vfp_reg::MVFR0 => view(
            [
                MVFR0::SIMDReg,
                MVFR0::FPSP,
                MVFR0::FPDP,
                MVFR0::FPTrap,
                MVFR0::FPDivide,
                MVFR0::FPSqrt,
                MVFR0::FPShVec,
                MVFR0::FPRound,
            ]
            .map(|f| f.val(h0.read(f))),
        ),
        vfp_reg::MVFR1 => view(
            [
                MVFR1::FPFtZ,
                MVFR1::FPDNaN,
                MVFR1::SIMDLS,
                MVFR1::SIMDInt,
                MVFR1::SIMDSP,
                MVFR1::SIMDHP,
                MVFR1::FPHP,
                MVFR1::SIMDFMAC,
            ]
            .map(|f| f.val(h1.read(f))),
        ),
        _ => 0,
    }
}

/// A trapped AArch64 `MSR`/`MRS`, decoded from `ESR_EL2.ISS` (exception
/// class 0x18).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SysregAccess {
    /// `op0`, `op1`, `CRn`, `CRm`, `op2`.
    pub enc: (u32, u32, u32, u32, u32),
    /// The general-purpose register (31: XZR).
    pub rt: usize,
    /// `MRS` (read) rather than `MSR`.
    pub read: bool,
}

impl SysregAccess {
    /// Op0 `[21:20]`, Op2 `[19:17]`, Op1 `[16:14]`, CRn `[13:10]`, Rt `[9:5]`,
    /// CRm `[4:1]`, Direction `[0]` (1: read): [`ISS_SYS64`].
    pub fn decode(iss: u64) -> Self {
        let iss = LocalRegisterCopy::<u64, ISS_SYS64::Register>::new(iss);
        let f = |field| iss.read(field) as u32;
        use ISS_SYS64::{CRM, CRN, OP0, OP1, OP2, RT};
        Self {
            enc: (f(OP0), f(OP1), f(CRN), f(CRM), f(OP2)),
            rt: iss.read(RT) as usize,
            read: iss.matches_all(ISS_SYS64::DIRECTION::Read),
        }
    }
}

/// A trapped ARMv7 `MRC`/`MCR` (`HSR.EC` 0x03 for CP15, 0x05 for CP14),
/// decoded from the ISS.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CopAccess {
    /// `opc1`, `CRn`, `CRm`, `opc2`.
    pub enc: (u32, u32, u32, u32),
    /// The general-purpose register.
    pub rt: usize,
    /// `MRC` (read) rather than `MCR`.
    pub read: bool,
}

impl CopAccess {
    /// Opc2 `[19:17]`, Opc1 `[16:14]`, CRn `[13:10]`, Rt `[8:5]`, CRm `[4:1]`,
    /// Direction `[0]` (1: read): [`ISS_COP`].
    pub fn decode(iss: u64) -> Self {
        let iss = LocalRegisterCopy::<u64, ISS_COP::Register>::new(iss);
        let f = |field| iss.read(field) as u32;
        use ISS_COP::{CRM, CRN, OPC1, OPC2, RT};
        Self {
            enc: (f(OPC1), f(CRN), f(CRM), f(OPC2)),
            rt: iss.read(RT) as usize,
            read: iss.matches_all(ISS_COP::DIRECTION::Read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapped_access_fields() {
        // MRS x3, ID_AA64PFR0_EL1: op0 3, op1 0, CRn 0, CRm 4, op2 0, read.
        let iss = (3 << 20) | (3 << 5) | (4 << 1) | 1;
        assert_eq!(
            SysregAccess::decode(iss),
            SysregAccess { enc: (3, 0, 0, 4, 0), rt: 3, read: true }
        );
        // MSR DBGBCR5_EL1, x30: op0 2, CRm 5, op2 5, write.
        let iss = (2 << 20) | (5 << 17) | (30 << 5) | (5 << 1);
        assert_eq!(
            SysregAccess::decode(iss),
            SysregAccess { enc: (2, 0, 0, 5, 5), rt: 30, read: false }
        );
        // MRC p15, 0, r7, c0, c1, 2 (ID_DFR0); MCR p15, 4, r1, c15, c0, 0.
        let iss = (2 << 17) | (7 << 5) | (1 << 1) | 1;
        assert_eq!(CopAccess::decode(iss), CopAccess { enc: (0, 0, 1, 2), rt: 7, read: true });
        let iss = (4 << 14) | (15 << 10) | (1 << 5);
        assert_eq!(CopAccess::decode(iss), CopAccess { enc: (4, 15, 0, 0), rt: 1, read: false });
    }

    #[test]
    fn decoding_is_what_the_hand_decoding_gave() {
        // The decoding before the fields had names, on many syndromes.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let iss = x & 0x1ff_ffff;
            let f = |shift: u32, bits: u32| ((iss >> shift) as u32) & ((1 << bits) - 1);
            assert_eq!(
                SysregAccess::decode(iss),
                SysregAccess {
                    enc: (f(20, 2), f(14, 3), f(10, 4), f(1, 4), f(17, 3)),
                    rt: f(5, 5) as usize,
                    read: iss & 1 != 0,
                }
            );
            assert_eq!(
                CopAccess::decode(iss),
                CopAccess {
                    enc: (f(14, 3), f(10, 4), f(1, 4), f(17, 3)),
                    rt: f(5, 4) as usize,
                    read: iss & 1 != 0,
                }
            );
        }
    }

    /// QEMU 10's `-cpu max` (as an AArch64 EL2 reads them).
    const MAX_PFR0: u64 = 0x1201_1111_1110_1112 | (1 << 32) | (1 << 28) | (3 << 24);
    const MAX_PFR1: u64 = 0x0000_1011_0100_0221 | (2 << 8);
    const MAX_DFR0: u64 = 0x0000_0f01_f050_f109 | (0x1 << 32);
    const MAX_ISAR1: u64 = 0x0011_1112_1215_1050 | (5 << 4);
    const MAX_MMFR0: u64 = 0x1000_0001_0010_1126;

    fn field(v: u64, shift: u32) -> u64 {
        (v >> shift) & 0xf
    }

    #[test]
    fn pfr0_hides_what_guests_do_not_get() {
        let g = aarch64(4, 0, MAX_PFR0, GuestCaps::default());
        assert_eq!(field(g, 0), 1, "EL0: AArch64 only");
        assert_eq!(field(g, 4), 1, "EL1: AArch64 only");
        for (what, shift) in [
            ("EL2", 8),
            ("EL3", 12),
            ("GIC", 24),
            ("RAS", 28),
            ("SVE", 32),
            ("MPAM", 40),
            ("AMU", 44),
        ] {
            assert_eq!(field(g, shift), 0, "{what}");
        }
        assert_eq!(field(g, 16), field(MAX_PFR0, 16), "FP as the host's");
        assert_eq!(field(g, 20), field(MAX_PFR0, 20), "AdvSIMD as the host's");
        assert!(field(g, 56) <= 1, "CSV2 without SCXTNUM");
        // A CPU without FP/AdvSIMD (0xF) stays so.
        let no_fp = (MAX_PFR0 & !(0xff << 16)) | (0xff << 16);
        assert_eq!(field(aarch64(4, 0, no_fp, GuestCaps::default()), 16), 0xf);
    }

    #[test]
    fn pfr1_keeps_bti_and_ssbs_only() {
        let g = aarch64(4, 1, MAX_PFR1, GuestCaps::default());
        assert_eq!(g, MAX_PFR1 & 0xff);
        assert_eq!(field(g, 8), 0, "no MTE");
    }

    #[test]
    fn dfr0_debug_without_pmu_or_trace() {
        let g = aarch64(5, 0, MAX_DFR0, GuestCaps::default());
        assert_eq!(field(g, 0), DEBUG_V8_2.min(field(MAX_DFR0, 0)));
        assert_eq!(field(g, 8), 0, "no PMU");
        assert_eq!(field(g, 4), 0, "no trace");
        assert_eq!(field(g, 32), 0, "no SPE");
        assert_eq!((field(g, 12), field(g, 20)), (field(MAX_DFR0, 12), field(MAX_DFR0, 20)));
        assert_eq!(field(g, 36), DOUBLE_LOCK_NONE);
        // Bits of fields the hypervisor does not know read as zero.
        assert_eq!(g >> 40, 0);
    }

    #[test]
    fn pointer_authentication_follows_the_key_switching() {
        let without = aarch64(6, 1, MAX_ISAR1, GuestCaps { pauth: false, gicv3: false });
        let with = aarch64(6, 1, MAX_ISAR1, GuestCaps { pauth: true, gicv3: false });
        assert_eq!(field(without, 4), 0);
        assert_eq!(field(with, 4), 5);
        assert_eq!(without & !0xff0, with & !0xff0 & !(0xff << 24));
        assert_eq!(field(with, 60), 0, "no LS64");
    }

    #[test]
    fn mmfr0_is_a_40_bit_stage_1_without_stage_2() {
        let g = aarch64(7, 0, MAX_MMFR0, GuestCaps::default());
        assert_eq!(field(g, 0), PA_40_BITS);
        for shift in [32, 36, 40] {
            assert_eq!(field(g, shift), STAGE2_GRANULE_NONE);
        }
        assert_eq!(field(g, 56), 0, "no FGT");
        assert_eq!(field(g, 60), 0, "no ECV");
        // A 36-bit host stays 36 bits.
        assert_eq!(field(aarch64(7, 0, MAX_MMFR0 & !0xf | 1, GuestCaps::default()), 0), 1);
    }

    #[test]
    fn everything_else_reads_as_zero() {
        for crm in 1..=7 {
            for op2 in 0..8 {
                let known = matches!((crm, op2), (4, 0 | 1) | (5, 0) | (6, 0..=2) | (7, 0..=2));
                if !known {
                    assert_eq!(
                        aarch64(crm, op2, u64::MAX, GuestCaps { pauth: true, gicv3: false }),
                        0
                    );
                }
            }
        }
        // No field the hypervisor does not know comes through.
        assert_eq!(aarch64(6, 0, u64::MAX, GuestCaps::default()) & 0xf, 0);
        assert_eq!(field(aarch64(6, 0, u64::MAX, GuestCaps::default()), 24), 0, "no TME");
    }

    #[test]
    fn tid1_group_keeps_revidr_and_aidr_and_hides_smidr() {
        assert_eq!(aarch64_tid1((3, 0, 0, 0, 6)), Some(Tid1::Revidr));
        assert_eq!(aarch64_tid1((3, 1, 0, 0, 7)), Some(Tid1::Aidr));
        // SMIDR_EL1: SME is not given to guests.
        assert_eq!(aarch64_tid1((3, 1, 0, 0, 6)), None);
        // MIDR_EL1, MPIDR_EL1 (VPIDR, VMPIDR: not trapped), CLIDR_EL1.
        for enc in [(3, 0, 0, 0, 0), (3, 0, 0, 0, 5), (3, 1, 0, 0, 1)] {
            assert_eq!(aarch64_tid1(enc), None);
        }
    }

    #[test]
    fn armv7_hides_debug_pmu_security_and_virtualization() {
        // Cortex-A15's ID_PFR1: ProgMod, Security, Virtualization, timer.
        let pfr1 = 0x0001_1131;
        assert_eq!(armv7(1, 1, pfr1), 0x0001_0001);
        assert_eq!(armv7(1, 2, 0x0201_0555), 0, "ID_DFR0");
        assert_eq!(armv7(1, 0, 0x0000_1131), 0x0000_0131, "no ThumbEE");
        assert_eq!(armv7(2, 3, 0x1111_2131), 0x1111_2131, "ID_ISAR3 as the host's");
        assert_eq!(armv7(3, 0, u32::MAX), 0);
    }

    /// Cortex-A15's (and Cortex-A7's) VFPv4-D32 with Advanced SIMD, as
    /// QEMU and the TRMs give them.
    const A15_FPSID: u32 = 0x4104_30f0;
    const A15_MVFR0: u32 = 0x1011_0222;
    const A15_MVFR1: u32 = 0x1111_1111;

    #[test]
    fn armv7_guests_get_the_hosts_vfp_and_advanced_simd() {
        use vfp_reg::{FPSID, MVFR0 as M0, MVFR1 as M1};
        assert_eq!(armv7_vfp(M0, A15_MVFR0, true), A15_MVFR0, "MVFR0 as the host's");
        assert_eq!(armv7_vfp(M1, A15_MVFR1, true), A15_MVFR1, "MVFR1 as the host's");
        assert_eq!(armv7_vfp(FPSID, A15_FPSID, true), A15_FPSID);
        // 32 double-word registers, single and double precision, no
        // trapped exceptions; every Advanced SIMD group.
        let m0 = armv7_vfp(M0, A15_MVFR0, true);
        assert_eq!((field(m0.into(), 0), field(m0.into(), 4), field(m0.into(), 8)), (2, 2, 2));
        let m1 = armv7_vfp(M1, A15_MVFR1, true);
        for shift in [8, 12, 16] {
            assert_eq!(field(m1.into(), shift), 1, "Advanced SIMD at {shift}");
        }
        // Every field is defined: all of a register passes.
        assert_eq!(armv7_vfp(M0, u32::MAX, true), u32::MAX);
        assert_eq!(armv7_vfp(M1, u32::MAX, true), u32::MAX);
        // A VFPv3-D16 without Advanced SIMD stays so.
        assert_eq!(armv7_vfp(M0, 0x1011_0221, true) & 0xf, 1);
        assert_eq!(armv7_vfp(M1, 0x0000_0011, true) & 0xfff_ff00, 0);
    }

    #[test]
    fn armv7_without_a_vfp_reads_nothing() {
        for reg in [vfp_reg::FPSID, vfp_reg::MVFR0, vfp_reg::MVFR1] {
            assert_eq!(armv7_vfp(reg, u32::MAX, false), 0);
        }
        // Not an ID register (FPSCR, FPEXC are never trapped this way).
        assert_eq!(armv7_vfp(1, u32::MAX, true), 0);
        assert_eq!(armv7_vfp(8, u32::MAX, true), 0);
    }

    #[test]
    fn trapped_vmrs_syndrome() {
        // VMRS r3, MVFR0 trapped by HCR.TID3: CV, COND 0xe, Opc1 7, CRn 7,
        // Rt 3, read (QEMU's and the Arm ARM's EC 0x08 ISS).
        let iss = (1 << 24) | (0xe << 20) | (7 << 14) | (7 << 10) | (3 << 5) | 1;
        assert_eq!(
            CopAccess::decode(iss),
            CopAccess { enc: (7, vfp_reg::MVFR0, 0, 0), rt: 3, read: true }
        );
    }
}
