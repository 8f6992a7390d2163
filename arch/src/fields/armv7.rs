//! ARMv7-A registers with the virtualization extensions (Arm ARM, DDI
//! 0406C): the Hyp-mode configuration and syndrome-side registers, and the
//! PL1 registers the hypervisor reads or writes on a guest's behalf.
//!
//! `HSR` shares `ESR_EL2`'s layout; the hypervisor defines it once, for
//! both, in `hyp::syndrome`. `VTCR` and `VTTBR` are `mmu`'s (it computes
//! their values).

#![allow(missing_docs, non_camel_case_types)]

use tock_registers::register_bitfields;

register_bitfields! {u32,
    /// `HCR`, the Hyp Configuration Register (the low half of
    /// `HCR_EL2`'s layout).
    pub HCR [
        /// `VM` [0]: stage 2 on.
        VM OFFSET(0) NUMBITS(1) [],
        /// `SWIO` [1]: set/way invalidation as clean and invalidate.
        SWIO OFFSET(1) NUMBITS(1) [],
        /// `PTW` [2]: protected table walks.
        PTW OFFSET(2) NUMBITS(1) [],
        /// `FMO` [3]: physical FIQs to Hyp mode.
        FMO OFFSET(3) NUMBITS(1) [],
        /// `IMO` [4]: physical IRQs to Hyp mode.
        IMO OFFSET(4) NUMBITS(1) [],
        /// `AMO` [5]: asynchronous aborts to Hyp mode.
        AMO OFFSET(5) NUMBITS(1) [],
        /// `VF` [6]: virtual FIQ pending.
        VF OFFSET(6) NUMBITS(1) [],
        /// `VI` [7]: virtual IRQ pending.
        VI OFFSET(7) NUMBITS(1) [],
        /// `VA` [8]: virtual asynchronous abort pending.
        VA OFFSET(8) NUMBITS(1) [],
        /// `FB` [9]: force broadcast of TLB and cache maintenance.
        FB OFFSET(9) NUMBITS(1) [],
        /// `BSU` [11:10]: barrier shareability upgrade.
        BSU OFFSET(10) NUMBITS(2) [
            NoEffect = 0b00,
            InnerShareable = 0b01,
            OuterShareable = 0b10,
            FullSystem = 0b11
        ],
        /// `DC` [12]: default cacheable.
        DC OFFSET(12) NUMBITS(1) [],
        /// `TWI` [13]: trap WFI.
        TWI OFFSET(13) NUMBITS(1) [],
        /// `TWE` [14]: trap WFE.
        TWE OFFSET(14) NUMBITS(1) [],
        /// `TID0` [15]: trap the ID group 0 registers.
        TID0 OFFSET(15) NUMBITS(1) [],
        /// `TID1` [16]: trap the ID group 1 registers.
        TID1 OFFSET(16) NUMBITS(1) [],
        /// `TID2` [17]: trap the ID group 2 registers.
        TID2 OFFSET(17) NUMBITS(1) [],
        /// `TID3` [18]: trap the ID group 3 registers.
        TID3 OFFSET(18) NUMBITS(1) [],
        /// `TSC` [19]: trap SMC.
        TSC OFFSET(19) NUMBITS(1) [],
        /// `TIDCP` [20]: trap the implementation defined CP15 registers.
        TIDCP OFFSET(20) NUMBITS(1) [],
        /// `TAC` [21]: trap ACTLR.
        TAC OFFSET(21) NUMBITS(1) [],
        /// `TSW` [22]: trap set/way cache maintenance.
        TSW OFFSET(22) NUMBITS(1) [],
        /// `TPC` [23]: trap cache maintenance to the point of coherency.
        TPC OFFSET(23) NUMBITS(1) [],
        /// `TPU` [24]: trap cache maintenance to the point of unification.
        TPU OFFSET(24) NUMBITS(1) [],
        /// `TTLB` [25]: trap TLB maintenance.
        TTLB OFFSET(25) NUMBITS(1) [],
        /// `TVM` [26]: trap writes to the virtual memory controls.
        TVM OFFSET(26) NUMBITS(1) [],
        /// `TGE` [27]: trap general exceptions.
        TGE OFFSET(27) NUMBITS(1) []
    ],

    /// `HCPTR`, the Hyp Coprocessor Trap Register.
    pub HCPTR [
        /// `TCPn` [13:0]: bit n traps coprocessor n (CP10 and CP11: VFP
        /// and Advanced SIMD); RAO/WI where the coprocessor does not exist.
        TCP OFFSET(0) NUMBITS(14) [],
        /// `TCP10` [10]: trap CP10 (VFP, and with CP11 Advanced SIMD).
        TCP10 OFFSET(10) NUMBITS(1) [],
        /// `TCP11` [11]: trap CP11.
        TCP11 OFFSET(11) NUMBITS(1) [],
        /// `TASE` [15]: trap Advanced SIMD.
        TASE OFFSET(15) NUMBITS(1) [],
        /// `TTA` [20]: trap the trace registers.
        TTA OFFSET(20) NUMBITS(1) [],
        /// `TCPAC` [31]: trap CPACR.
        TCPAC OFFSET(31) NUMBITS(1) []
    ],

    /// `HSTR`, the Hyp System Trap Register.
    pub HSTR [
        /// `T15` [15]: trap the CP15 primary register c15 (the
        /// implementation defined registers).
        T15 OFFSET(15) NUMBITS(1) [],
        /// `TTEE` [16]: trap the ThumbEE registers.
        TTEE OFFSET(16) NUMBITS(1) [],
        /// `TJDBX` [17]: trap BXJ and the Jazelle registers.
        TJDBX OFFSET(17) NUMBITS(1) []
    ],

    /// `HDCR`, the Hyp Debug Configuration Register.
    pub HDCR [
        /// `HPMN` [4:0]: the PMU's event counters PL1 and PL0 may use.
        HPMN OFFSET(0) NUMBITS(5) [],
        /// `TPMCR` [5]: trap PMCR.
        TPMCR OFFSET(5) NUMBITS(1) [],
        /// `TPM` [6]: trap the PMU's registers.
        TPM OFFSET(6) NUMBITS(1) [],
        /// `HPME` [7]: the counters reserved for Hyp mode enabled.
        HPME OFFSET(7) NUMBITS(1) [],
        /// `TDE` [8]: route debug exceptions to Hyp mode.
        TDE OFFSET(8) NUMBITS(1) [],
        /// `TDA` [9]: trap the debug registers (but the OS and power-down
        /// ones).
        TDA OFFSET(9) NUMBITS(1) [],
        /// `TDOSA` [10]: trap the OS-related debug registers.
        TDOSA OFFSET(10) NUMBITS(1) [],
        /// `TDRA` [11]: trap the debug ROM address registers.
        TDRA OFFSET(11) NUMBITS(1) []
    ],

    /// `CNTHCTL`, the Hyp counter-timer control.
    pub CNTHCTL [
        /// `PL1PCTEN` [0]: PL1 and PL0 may read the physical counter.
        PL1PCTEN OFFSET(0) NUMBITS(1) [],
        /// `PL1PCEN` [1]: PL1 and PL0 may use the physical timer.
        PL1PCEN OFFSET(1) NUMBITS(1) [],
        /// `EVNTEN` [2]: the event stream.
        EVNTEN OFFSET(2) NUMBITS(1) [],
        /// `EVNTDIR` [3]: the event stream's trigger direction.
        EVNTDIR OFFSET(3) NUMBITS(1) [],
        /// `EVNTI` [7:4]: the event stream's counter bit.
        EVNTI OFFSET(4) NUMBITS(4) []
    ],

    /// `HPFAR`, the Hyp IPA Fault Address Register.
    pub HPFAR [
        /// `FIPA` [31:4]: bits [39:12] of the faulting IPA.
        FIPA OFFSET(4) NUMBITS(28) []
    ],

    /// `MPIDR` (and `VMPIDR`, the value guests read for it), the
    /// multiprocessor affinity register.
    pub MPIDR [
        /// `Aff0` [7:0]: affinity level 0 (the CPU within its cluster).
        Aff0 OFFSET(0) NUMBITS(8) [],
        /// `Aff1` [15:8]: affinity level 1.
        Aff1 OFFSET(8) NUMBITS(8) [],
        /// `Aff2` [23:16]: affinity level 2.
        Aff2 OFFSET(16) NUMBITS(8) [],
        /// `MT` [24]: the lowest affinity level is multithreaded.
        MT OFFSET(24) NUMBITS(1) [],
        /// `U` [30]: a uniprocessor system.
        U OFFSET(30) NUMBITS(1) [],
        /// `M` [31]: the multiprocessing extensions' format (reads as one
        /// with them).
        M OFFSET(31) NUMBITS(1) []
    ],

    /// `PMXEVTYPER` (of the counter `PMSELR` selects), what an event
    /// counter counts and in which modes (PMUv2 with the Virtualization
    /// Extensions: `NSH` counts in Hyp mode).
    pub PMXEVTYPER [
        /// `evtCount` [7:0]: the event.
        EVTCOUNT OFFSET(0) NUMBITS(8) [
            /// Instructions architecturally executed.
            InstRetired = 0x08
        ],
        /// `NSH` [27]: count in Hyp mode.
        NSH OFFSET(27) NUMBITS(1) [],
        /// `NSU` [28]: Non-secure PL0 filtering, as `U` when equal to it.
        NSU OFFSET(28) NUMBITS(1) [],
        /// `NSK` [29]: Non-secure PL1 filtering, as `P` when equal to it.
        NSK OFFSET(29) NUMBITS(1) [],
        /// `U` [30]: do not count at PL0.
        U OFFSET(30) NUMBITS(1) [],
        /// `P` [31]: do not count at PL1.
        P OFFSET(31) NUMBITS(1) []
    ],

    /// `PMCR`, the Performance Monitors Control Register.
    pub PMCR [
        /// `E` [0]: the counters enabled.
        E OFFSET(0) NUMBITS(1) [],
        /// `N` [15:11]: the number of event counters.
        N OFFSET(11) NUMBITS(5) [],
        /// `IDCODE` [23:16].
        IDCODE OFFSET(16) NUMBITS(8) [],
        /// `IMP` [31:24]: the implementer.
        IMP OFFSET(24) NUMBITS(8) []
    ],

    /// `CTR`, the Cache Type Register.
    pub CTR [
        /// `IminLine` [3:0]: log2 of the smallest instruction cache line,
        /// in words.
        IminLine OFFSET(0) NUMBITS(4) [],
        /// `DminLine` [19:16]: log2 of the smallest data cache line, in
        /// words.
        DminLine OFFSET(16) NUMBITS(4) []
    ],

    /// `SCTLR`, the PL1 System Control Register (a guest's).
    pub SCTLR [
        /// `M` [0]: the MMU on.
        M OFFSET(0) NUMBITS(1) [],
        /// `A` [1]: alignment checks.
        A OFFSET(1) NUMBITS(1) [],
        /// `C` [2]: data caching.
        C OFFSET(2) NUMBITS(1) [],
        /// Bits [4:3]: RAO/SBOP.
        SBOP_4_3 OFFSET(3) NUMBITS(2) [],
        /// `CP15BEN` [5]: the CP15 barrier operations enabled (RAO/SBOP
        /// where not implemented).
        CP15BEN OFFSET(5) NUMBITS(1) [],
        /// Bit [6]: RAO/SBOP.
        SBOP_6 OFFSET(6) NUMBITS(1) [],
        /// `I` [12]: instruction caching.
        I OFFSET(12) NUMBITS(1) [],
        /// `V` [13]: high exception vectors (`0xffff_0000`), not `VBAR`.
        V OFFSET(13) NUMBITS(1) [],
        /// Bit [16]: RAO/SBOP.
        SBOP_16 OFFSET(16) NUMBITS(1) [],
        /// Bit [18]: RAO/SBOP.
        SBOP_18 OFFSET(18) NUMBITS(1) [],
        /// Bit [22]: RAO/SBOP (`U` before ARMv7).
        SBOP_22 OFFSET(22) NUMBITS(1) [],
        /// Bit [23]: RAO/SBOP.
        SBOP_23 OFFSET(23) NUMBITS(1) [],
        /// `EE` [25]: exceptions taken big-endian (`CPSR.E`).
        EE OFFSET(25) NUMBITS(1) [],
        /// `TE` [30]: exceptions taken in Thumb state (`CPSR.T`).
        TE OFFSET(30) NUMBITS(1) []
    ],

    /// `TTBCR`, the PL1 Translation Table Base Control Register.
    pub TTBCR [
        /// `EAE` [31]: the long-descriptor (LPAE) translation table
        /// format, and fault status format.
        EAE OFFSET(31) NUMBITS(1) []
    ],

    /// `DFSR`, the PL1 Data Fault Status Register, in both its formats:
    /// short-descriptor (`FS`, `FS4`) and long-descriptor (`STATUS`, with
    /// `LPAE` set).
    pub DFSR [
        /// `FS[3:0]` [3:0] (short-descriptor format).
        FS OFFSET(0) NUMBITS(4) [
            /// With `FS4` clear: synchronous external abort, not on a
            /// translation table walk.
            SyncExternal = 0b1000
        ],
        /// `STATUS` [5:0] (long-descriptor format).
        STATUS OFFSET(0) NUMBITS(6) [
            /// Synchronous external abort, not on a translation table walk.
            SyncExternal = 0b01_0000
        ],
        /// `LPAE` [9]: the long-descriptor format.
        LPAE OFFSET(9) NUMBITS(1) [],
        /// `FS[4]` [10] (short-descriptor format).
        FS4 OFFSET(10) NUMBITS(1) [],
        /// `WnR` [11]: the abort was on a write.
        WnR OFFSET(11) NUMBITS(1) [],
        /// `ExT` [12]: external abort type.
        ExT OFFSET(12) NUMBITS(1) [],
        /// `CM` [13]: the abort was on a cache maintenance operation.
        CM OFFSET(13) NUMBITS(1) []
    ],

    /// `IFSR`, the PL1 Instruction Fault Status Register, in both its
    /// formats (as [`DFSR`], without `WnR` and `CM`).
    pub IFSR [
        /// `FS[3:0]` [3:0] (short-descriptor format).
        FS OFFSET(0) NUMBITS(4) [
            /// With `FS4` clear: synchronous external abort, not on a
            /// translation table walk.
            SyncExternal = 0b1000
        ],
        /// `STATUS` [5:0] (long-descriptor format).
        STATUS OFFSET(0) NUMBITS(6) [
            /// Synchronous external abort, not on a translation table walk.
            SyncExternal = 0b01_0000
        ],
        /// `LPAE` [9]: the long-descriptor format.
        LPAE OFFSET(9) NUMBITS(1) [],
        /// `FS[4]` [10] (short-descriptor format).
        FS4 OFFSET(10) NUMBITS(1) [],
        /// `ExT` [12]: external abort type.
        ExT OFFSET(12) NUMBITS(1) []
    ],

    /// `CPSR` and the `SPSR`s, the program status registers.
    pub CPSR [
        /// `M` [4:0]: the processor mode.
        M OFFSET(0) NUMBITS(5) [
            User = 0b1_0000,
            Fiq = 0b1_0001,
            Irq = 0b1_0010,
            Supervisor = 0b1_0011,
            Monitor = 0b1_0110,
            Abort = 0b1_0111,
            Hyp = 0b1_1010,
            Undefined = 0b1_1011,
            System = 0b1_1111
        ],
        /// `T` [5]: Thumb state.
        T OFFSET(5) NUMBITS(1) [],
        /// `F` [6]: FIQs masked.
        F OFFSET(6) NUMBITS(1) [],
        /// `I` [7]: IRQs masked.
        I OFFSET(7) NUMBITS(1) [],
        /// `A` [8]: asynchronous aborts masked.
        A OFFSET(8) NUMBITS(1) [],
        /// `E` [9]: big-endian data accesses.
        E OFFSET(9) NUMBITS(1) [],
        /// `IT[7:2]` [15:10]: the If-Then state's high bits.
        IT_7_2 OFFSET(10) NUMBITS(6) [],
        /// `J` [24]: Jazelle state.
        J OFFSET(24) NUMBITS(1) [],
        /// `IT[1:0]` [26:25]: the If-Then state's low bits.
        IT_1_0 OFFSET(25) NUMBITS(2) []
    ],

    /// `FPEXC`, the Floating-Point Exception Control register (VFP
    /// common subarchitecture).
    pub FPEXC [
        /// `FP2V` [28]: `FPINST2` holds a valid instruction.
        FP2V OFFSET(28) NUMBITS(1) [],
        /// `EN` [30]: VFP and Advanced SIMD enabled (their registers
        /// reachable, but for `FPEXC`, `FPSID` and the `MVFR`s).
        EN OFFSET(30) NUMBITS(1) [],
        /// `EX` [31]: an asynchronous VFP exception is pending, `FPINST`
        /// (and with `FP2V` `FPINST2`) hold its state.
        EX OFFSET(31) NUMBITS(1) []
    ],

    /// `MVFR0`, Media and VFP Feature Register 0.
    pub MVFR0 [
        /// `A_SIMD registers` [3:0]: 0 none, 1 sixteen 64-bit registers,
        /// 2 thirty-two.
        SIMDReg OFFSET(0) NUMBITS(4) [
            None = 0,
            D16 = 1,
            D32 = 2
        ]
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_where_the_arm_arm_puts_them() {
        // Hand-decoded from DDI 0406C's register diagrams.
        assert_eq!(HCR::BSU::InnerShareable.value, 1 << 10);
        assert_eq!(HCR::TAC::SET.value, 1 << 21);
        assert_eq!(HCR::TGE::SET.value, 1 << 27);
        assert_eq!(HCPTR::TCP::SET.value, 0x3fff);
        assert_eq!((HCPTR::TCP10::SET + HCPTR::TCP11::SET).value, 0xc00);
        assert_eq!(HCPTR::TASE::SET.value, 1 << 15);
        assert_eq!(HSTR::T15::SET.value, 1 << 15);
        assert_eq!(HDCR::HPMN.val(31).value, 0x1f);
        assert_eq!((HDCR::TPMCR::SET + HDCR::TPM::SET).value, 0x60);
        assert_eq!((HDCR::TDA::SET + HDCR::TDOSA::SET + HDCR::TDRA::SET).value, 0xe00);
        assert_eq!((CNTHCTL::PL1PCTEN::SET + CNTHCTL::PL1PCEN::SET).value, 0b11);
        assert_eq!(HPFAR::FIPA.read(0xffff_fff0), 0x0fff_ffff);
        assert_eq!(HPFAR::FIPA.read(0xf), 0);
        assert_eq!(MPIDR::Aff0.read(0x8000_0a03), 3);
        assert_eq!((MPIDR::M::SET + MPIDR::Aff0.val(2)).value, 0x8000_0002);
        assert_eq!(PMCR::N.read(0x4100_3000), 6);
        assert_eq!(CTR::DminLine.read(0x8444_c004), 4);
        assert_eq!(TTBCR::EAE::SET.value, 1 << 31);
        assert_eq!((SCTLR::V::SET + SCTLR::EE::SET + SCTLR::TE::SET).value, 0x4200_2000);
        // A long-descriptor synchronous external abort on a write.
        let dfsr = DFSR::LPAE::SET + DFSR::STATUS::SyncExternal + DFSR::WnR::SET;
        assert_eq!(dfsr.value, 0xa10);
        assert_eq!(DFSR::FS::SyncExternal.value, 0x08);
        assert_eq!((IFSR::LPAE::SET + IFSR::STATUS::SyncExternal).value, 0x210);
        assert_eq!(CPSR::M::Hyp.value, 0x1a);
        assert_eq!((CPSR::M::Supervisor + CPSR::A::SET + CPSR::I::SET + CPSR::F::SET).value, 0x1d3);
        assert_eq!((CPSR::T::SET + CPSR::E::SET).value, 0x220);
        assert_eq!((FPEXC::EX::SET + FPEXC::EN::SET + FPEXC::FP2V::SET).value, 0xd000_0000);
        // Cortex-A15's MVFR0: 32 double-word registers.
        assert_eq!(MVFR0::SIMDReg.read_as_enum(0x1011_0222), Some(MVFR0::SIMDReg::Value::D32));
    }

    #[test]
    fn sctlr_should_be_one_bits() {
        // The bits ARMv7's SCTLR reads as one (RAO/SBOP), CP15BEN included.
        let sbop = SCTLR::SBOP_4_3::SET
            + SCTLR::CP15BEN::SET
            + SCTLR::SBOP_6::SET
            + SCTLR::SBOP_16::SET
            + SCTLR::SBOP_18::SET
            + SCTLR::SBOP_22::SET
            + SCTLR::SBOP_23::SET;
        assert_eq!(sbop.value, 0x00c5_0078);
    }
}
