//! AArch64 system-register fields `aarch64-cpu` 11 lacks (Arm ARM, DDI
//! 0487). Where it defines a register only in part (`CPTR_EL2` has `TAM`
//! alone, `ICH_HCR_EL2` has no `TC`/`TALL0`/`TALL1`, `SCTLR_EL1` no `SPAN`
//! or `DSSBS`, `SPSR_EL2` no `DIT`, `PAN` or `SSBS`), the register is
//! defined here with the fields the hypervisor uses, so that one value is
//! composed from one definition; `HPFAR_EL2` is here because
//! `aarch64-cpu`'s `FIPA` runs to bit 51 where the architecture's stops at
//! bit 43. Everything `aarch64-cpu` has in full (`HCR_EL2`, `MDCR_EL2`,
//! `CNTHCTL_EL2`, `ESR_EL1`, `CPACR_EL1`, `MDSCR_EL1`, `MPIDR_EL1`...) is
//! used from there.

#![allow(missing_docs, non_camel_case_types)]

use tock_registers::register_bitfields;

register_bitfields! {u64,
    /// `CPTR_EL2` with `HCR_EL2.E2H` clear: the EL2 architectural feature
    /// traps.
    pub CPTR_EL2 [
        /// Bits [7:0]: RES1.
        RES1_7_0 OFFSET(0) NUMBITS(8) [],
        /// `TZ` [8]: trap SVE (RES1 without FEAT_SVE).
        TZ OFFSET(8) NUMBITS(1) [],
        /// Bit [9]: RES1.
        RES1_9 OFFSET(9) NUMBITS(1) [],
        /// `TFP` [10]: trap FP/SIMD.
        TFP OFFSET(10) NUMBITS(1) [],
        /// `TSM` [12]: trap SME (RES1 without FEAT_SME).
        TSM OFFSET(12) NUMBITS(1) [],
        /// Bit [13]: RES1.
        RES1_13 OFFSET(13) NUMBITS(1) [],
        /// `TTA` [20]: trap the trace registers.
        TTA OFFSET(20) NUMBITS(1) [],
        /// `TAM` [30]: trap the activity monitors (FEAT_AMUv1).
        TAM OFFSET(30) NUMBITS(1) [],
        /// `TCPAC` [31]: trap `CPACR_EL1`.
        TCPAC OFFSET(31) NUMBITS(1) []
    ],

    /// `ICH_HCR_EL2`, the GICv3 virtual CPU interface's hypervisor control.
    pub ICH_HCR_EL2 [
        /// `En` [0]: the virtual CPU interface enabled.
        En OFFSET(0) NUMBITS(1) [],
        /// `TC` [10]: trap EL1's accesses to the common GIC registers
        /// (`ICC_SGI*R_EL1`, `ICC_ASGI1R_EL1`, `ICC_CTLR_EL1`, ...).
        TC OFFSET(10) NUMBITS(1) [],
        /// `TALL0` [11]: trap EL1's accesses to the Group 0 registers.
        TALL0 OFFSET(11) NUMBITS(1) [],
        /// `TALL1` [12]: trap EL1's accesses to the Group 1 registers.
        TALL1 OFFSET(12) NUMBITS(1) [],
        /// `TDIR` [14]: trap EL1's writes to `ICC_DIR_EL1`.
        TDIR OFFSET(14) NUMBITS(1) []
    ],

    /// `SCTLR_EL1`, the EL1 system control (a guest's).
    pub SCTLR_EL1 [
        /// `M` [0]: the EL1&0 stage-1 MMU on.
        M OFFSET(0) NUMBITS(1) [],
        /// `C` [2]: data caching.
        C OFFSET(2) NUMBITS(1) [],
        /// `EOS` [11]: exception exit is context synchronizing (RES1
        /// without FEAT_ExS).
        EOS OFFSET(11) NUMBITS(1) [],
        /// `I` [12]: instruction caching.
        I OFFSET(12) NUMBITS(1) [],
        /// `TSCXT` [20]: trap `SCXTNUM_EL0` (RES1 without FEAT_CSV2_2).
        TSCXT OFFSET(20) NUMBITS(1) [],
        /// `EIS` [22]: exception entry is context synchronizing (RES1
        /// without FEAT_ExS).
        EIS OFFSET(22) NUMBITS(1) [],
        /// `SPAN` [23]: `PSTATE.PAN` left unchanged on exception entry to
        /// EL1 (RES1 without FEAT_PAN).
        SPAN OFFSET(23) NUMBITS(1) [],
        /// `nTLSMD` [28]: no trap of A32/T32 multiple loads and stores to
        /// Device memory (RES1 without FEAT_LSMAOC).
        nTLSMD OFFSET(28) NUMBITS(1) [],
        /// `LSMAOE` [29]: A32/T32 multiple loads and stores keep their
        /// order (RES1 without FEAT_LSMAOC).
        LSMAOE OFFSET(29) NUMBITS(1) [],
        /// `DSSBS` [44]: `PSTATE.SSBS` on exception entry to EL1
        /// (FEAT_SSBS).
        DSSBS OFFSET(44) NUMBITS(1) []
    ],

    /// `SPSR_EL2` (and `SPSR_EL1`) for an exception taken from AArch64: the
    /// saved `PSTATE`. The interrupt masks and the whole `M[3:0]` are
    /// `aarch64-cpu`'s `SPSR_EL2`/`SPSR_EL1`; these are the rest.
    pub SPSR_EL2 [
        /// `M[0]`: the stack pointer, `SP_EL0` (`t`) or `SP_ELx` (`h`).
        SP OFFSET(0) NUMBITS(1) [
            SpEl0 = 0,
            SpElx = 1
        ],
        /// `M[3:2]`: the Exception level.
        EL OFFSET(2) NUMBITS(2) [
            EL0 = 0b00,
            EL1 = 0b01,
            EL2 = 0b10,
            EL3 = 0b11
        ],
        /// `M[4]`: the Execution state (set: the exception came from
        /// AArch32 and the AArch32 layout applies).
        nRW OFFSET(4) NUMBITS(1) [
            AArch64 = 0,
            AArch32 = 1
        ],
        /// `SSBS` [12]: speculative store bypass safe (FEAT_SSBS).
        SSBS OFFSET(12) NUMBITS(1) [],
        /// `PAN` [22]: privileged access never (FEAT_PAN).
        PAN OFFSET(22) NUMBITS(1) [],
        /// `DIT` [24]: data independent timing (FEAT_DIT).
        DIT OFFSET(24) NUMBITS(1) []
    ],

    /// `HPFAR_EL2`, the hypervisor IPA fault address.
    pub HPFAR_EL2 [
        /// `FIPA` [43:4]: bits [51:12] of the faulting IPA (bits [47:12]
        /// without FEAT_LPA).
        FIPA OFFSET(4) NUMBITS(40) [],
        /// `NS` [63]: the faulting IPA is in the Non-secure space.
        NS OFFSET(63) NUMBITS(1) []
    ],

    /// `MDCCINT_EL1`, the debug communications channel interrupt enables.
    pub MDCCINT_EL1 [
        /// `TX` [29]: the transmit interrupt.
        TX OFFSET(29) NUMBITS(1) [],
        /// `RX` [30]: the receive interrupt.
        RX OFFSET(30) NUMBITS(1) []
    ],

    /// `OSLSR_EL1`, the OS lock status.
    pub OSLSR_EL1 [
        /// `OSLM[0]` [0]: with `OSLM[1]`, the OS lock model (0b10: the
        /// OS lock is implemented, `OSLAR_EL1` locks it).
        OSLM0 OFFSET(0) NUMBITS(1) [],
        /// `OSLK` [1]: the OS lock is locked.
        OSLK OFFSET(1) NUMBITS(1) [],
        /// `nTT` [2]: not 32-bit access (RAZ).
        nTT OFFSET(2) NUMBITS(1) [],
        /// `OSLM[1]` [3]: see `OSLM0`.
        OSLM1 OFFSET(3) NUMBITS(1) []
    ],

    /// `DBGCLAIMSET_EL1` and `DBGCLAIMCLR_EL1`, the claim tags (one layout).
    pub DBGCLAIM_EL1 [
        /// `CLAIM` [7:0]: one bit per claim tag.
        CLAIM OFFSET(0) NUMBITS(8) []
    ],

    /// `PMCR_EL0`, the Performance Monitors Control Register.
    pub PMCR_EL0 [
        /// `E` [0]: the counters enabled.
        E OFFSET(0) NUMBITS(1) [],
        /// `N` [15:11]: the number of event counters.
        N OFFSET(11) NUMBITS(5) []
    ],

    /// `PMEVTYPER<n>_EL0` (and `PMXEVTYPER_EL0`), what event counter `n`
    /// counts and at which exception levels.
    pub PMEVTYPER_EL0 [
        /// `evtCount` [15:0]: the event.
        EVTCOUNT OFFSET(0) NUMBITS(16) [
            /// `INST_RETIRED`: instructions architecturally executed.
            InstRetired = 0x08
        ],
        /// `NSH` [27]: count at EL2.
        NSH OFFSET(27) NUMBITS(1) [],
        /// `NSU` [28]: Non-secure EL0 filtering, as `U` when equal to it.
        NSU OFFSET(28) NUMBITS(1) [],
        /// `NSK` [29]: Non-secure EL1 filtering, as `P` when equal to it.
        NSK OFFSET(29) NUMBITS(1) [],
        /// `U` [30]: do not count at EL0.
        U OFFSET(30) NUMBITS(1) [],
        /// `P` [31]: do not count at EL1.
        P OFFSET(31) NUMBITS(1) []
    ],

    /// `DCZID_EL0`, the Data Cache Zero ID register.
    pub DCZID_EL0 [
        /// `BS` [3:0]: log2 of the `DC ZVA` block, in words.
        BS OFFSET(0) NUMBITS(4) [],
        /// `DZP` [4]: `DC ZVA` prohibited.
        DZP OFFSET(4) NUMBITS(1) []
    ],

    /// `CTR_EL0`, the Cache Type Register.
    pub CTR_EL0 [
        /// `IminLine` [3:0]: log2 of the smallest instruction cache line,
        /// in words.
        IminLine OFFSET(0) NUMBITS(4) [],
        /// `DminLine` [19:16]: log2 of the smallest data cache line, in
        /// words.
        DminLine OFFSET(16) NUMBITS(4) []
    ],

    /// `ID_AA64ISAR0_EL1`, the TLB field (`arch` does not depend on the
    /// hypervisor's full ID register definitions).
    pub ID_AA64ISAR0_EL1 [
        /// `TLB` [59:56]: the outer-shareable and range TLB maintenance
        /// instructions.
        TLB OFFSET(56) NUMBITS(4) [
            /// Neither.
            NotImplemented = 0b0000,
            /// FEAT_TLBIOS.
            Os = 0b0001,
            /// FEAT_TLBIOS and FEAT_TLBIRANGE.
            Range = 0b0010
        ]
    ],

    /// `ID_AA64MMFR2_EL1`, the TTL field.
    pub ID_AA64MMFR2_EL1 [
        /// `TTL` [51:48]: FEAT_TTL, the TLBI level hint.
        TTL OFFSET(48) NUMBITS(4) [
            NotImplemented = 0b0000,
            Ttl = 0b0001
        ]
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_where_the_arm_arm_puts_them() {
        // Hand-decoded from DDI 0487's register diagrams.
        let res1 = CPTR_EL2::RES1_7_0::SET + CPTR_EL2::RES1_9::SET + CPTR_EL2::RES1_13::SET;
        assert_eq!(res1.value, 0x22ff);
        // RES1, TFP clear: what the boot code writes (0x33ff) with TZ, TSM.
        assert_eq!((res1 + CPTR_EL2::TZ::SET + CPTR_EL2::TSM::SET).value, 0x33ff);
        assert_eq!(CPTR_EL2::TFP::SET.value, 1 << 10);
        assert_eq!(CPTR_EL2::TTA::SET.value, 1 << 20);
        assert_eq!(CPTR_EL2::TAM::SET.value, 1 << 30);
        let ich = ICH_HCR_EL2::TC::SET
            + ICH_HCR_EL2::TALL0::SET
            + ICH_HCR_EL2::TALL1::SET
            + ICH_HCR_EL2::TDIR::SET;
        assert_eq!(ich.value, 0x5c00);
        assert_eq!(SCTLR_EL1::SPAN::SET.value, 1 << 23);
        assert_eq!(SCTLR_EL1::DSSBS::SET.value, 1 << 44);
        // SPSR_EL2 of EL1h (0x3c5 with DAIF), EL0t, and AArch32 EL0.
        let el1h = LocalCopy::new(0x3c5);
        assert_eq!(el1h.read_as_enum(SPSR_EL2::EL), Some(SPSR_EL2::EL::Value::EL1));
        assert_eq!(el1h.read_as_enum(SPSR_EL2::SP), Some(SPSR_EL2::SP::Value::SpElx));
        assert!(!el1h.is_set(SPSR_EL2::nRW));
        assert_eq!(LocalCopy::new(0x3c0).read(SPSR_EL2::EL), 0);
        assert!(LocalCopy::new(0x10).is_set(SPSR_EL2::nRW));
        assert_eq!(SPSR_EL2::SSBS::SET.value, 1 << 12);
        assert_eq!(SPSR_EL2::PAN::SET.value, 1 << 22);
        assert_eq!(SPSR_EL2::DIT::SET.value, 1 << 24);
        assert_eq!(HPFAR_EL2::FIPA.read(0x0fff_ffff_fff0), 0xff_ffff_ffff);
        assert_eq!(HPFAR_EL2::FIPA.read(0xf000_0000_0000_000f), 0);
        assert_eq!((MDCCINT_EL1::TX::SET + MDCCINT_EL1::RX::SET).value, 3 << 29);
        assert_eq!((OSLSR_EL1::OSLM1::SET + OSLSR_EL1::OSLK::SET).value, 0b1010);
        assert_eq!(DBGCLAIM_EL1::CLAIM::SET.value, 0xff);
        // QEMU's PMCR_EL0 with 6 counters; a Cortex-A72's CTR_EL0.
        assert_eq!(PMCR_EL0::N.read(0x4100_3000), 6);
        assert_eq!(CTR_EL0::DminLine.read(0x8444_c004), 4);
        assert_eq!(ID_AA64ISAR0_EL1::TLB.read(0x0221_1000_1021_1120), 2);
        assert_eq!(ID_AA64MMFR2_EL1::TTL.read(0x1221_0110_1000_1011), 1);
    }

    type LocalCopy = tock_registers::LocalRegisterCopy<u64, SPSR_EL2::Register>;

    #[test]
    fn sctlr_el1_res1_bits() {
        // SCTLR_EL1's RES1 bits on an Armv8.0 CPU: what a vCPU starts with.
        let res1 = SCTLR_EL1::EOS::SET
            + SCTLR_EL1::TSCXT::SET
            + SCTLR_EL1::EIS::SET
            + SCTLR_EL1::SPAN::SET
            + SCTLR_EL1::nTLSMD::SET
            + SCTLR_EL1::LSMAOE::SET;
        assert_eq!(res1.value, 0x30d0_0800);
    }
}
