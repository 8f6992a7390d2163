//! The syndrome of an exception taken to the hypervisor, by name:
//! `ESR_EL2` on AArch64 and `HSR` on ARMv7 share one layout (exception
//! class, instruction length, instruction-specific syndrome), and the ISS
//! encodings the hypervisor decodes are the same on both (a data abort's
//! `SRT` is 4 bits wide on ARMv7, bit 20 being zero there). Portable and
//! tested on the host; `cpu` reads the register, `trap` and `idregs` decode
//! it through here.

use tock_registers::LocalRegisterCopy;

/// The fields (Arm ARM: DDI 0487 `ESR_EL2`, DDI 0406C `HSR`).
#[allow(missing_docs, non_camel_case_types)]
pub mod fields {
    use tock_registers::register_bitfields;

    register_bitfields! {u64,
        /// `ESR_EL2` (AArch64) and `HSR` (ARMv7): the syndrome of an
        /// exception taken to EL2 or Hyp mode. (`ESR_EL1` has the same
        /// layout; `aarch64-cpu` defines it for the injections.)
        pub ESR [
            /// `ISS` `[24:0]`: the instruction-specific syndrome, one of the
            /// `ISS_*` layouts below as the exception class says.
            ISS OFFSET(0) NUMBITS(25) [],
            /// `IL` `[25]`: the trapped instruction's length.
            IL OFFSET(25) NUMBITS(1) [
                /// A 16-bit T32 instruction.
                Bits16 = 0,
                /// A 32-bit instruction (and every exception without one).
                Bits32 = 1
            ],
            /// `EC` `[31:26]`: the exception class.
            EC OFFSET(26) NUMBITS(6) [
                /// Unknown reason (an UNDEFINED instruction).
                Unknown = 0x00,
                /// WFI or WFE trapped.
                WFx = 0x01,
                /// AArch32 `MCR`/`MRC` to CP15 trapped.
                McrMrcCp15 = 0x03,
                /// AArch32 `MCRR`/`MRRC` to CP15 trapped.
                McrrMrrcCp15 = 0x04,
                /// AArch32 `MCR`/`MRC` to CP14 trapped.
                McrMrcCp14 = 0x05,
                /// AArch32 `LDC`/`STC` to CP14 trapped.
                LdcStcCp14 = 0x06,
                /// FP/Advanced SIMD trapped (`HCPTR`, `CPTR_EL2.TFP`).
                SimdFp = 0x07,
                /// AArch32 `VMRS` trapped (ARMv7: CP10 `MRC`).
                Vmrs = 0x08,
                /// Pointer authentication trapped (`HCR_EL2.API`, `APK`).
                PAuth = 0x09,
                /// AArch32 `MRRC` to CP14 trapped.
                MrrcCp14 = 0x0c,
                /// `HVC` from AArch32.
                Hvc32 = 0x12,
                /// `SMC` from AArch32, trapped.
                Smc32 = 0x13,
                /// `HVC` from AArch64.
                Hvc64 = 0x16,
                /// `SMC` from AArch64, trapped.
                Smc64 = 0x17,
                /// AArch64 `MSR`/`MRS`/system instruction trapped.
                Sys64 = 0x18,
                /// SVE trapped.
                Sve = 0x19,
                /// SME trapped.
                Sme = 0x1d,
                /// Instruction abort from a lower Exception level (the guest).
                IabtLow = 0x20,
                /// Instruction abort from the same Exception level.
                IabtCur = 0x21,
                /// Data abort from a lower Exception level (the guest).
                DabtLow = 0x24,
                /// Data abort from the same Exception level.
                DabtCur = 0x25
            ]
        ],

        /// The ISS of a data abort (EC 0x24, 0x25), and of an instruction
        /// abort (EC 0x20, 0x21), which has `FnV`, `EA`, `S1PTW` and the
        /// status code (`IFSC`) at the same places and the rest RES0.
        pub ISS_ABORT [
            /// `DFSC`/`IFSC` `[5:0]`: the fault status code (the
            /// long-descriptor codes, on ARMv7 too).
            FSC OFFSET(0) NUMBITS(6) [
                AddressSizeL0 = 0x00,
                AddressSizeL1 = 0x01,
                AddressSizeL2 = 0x02,
                AddressSizeL3 = 0x03,
                TranslationL0 = 0x04,
                TranslationL1 = 0x05,
                TranslationL2 = 0x06,
                TranslationL3 = 0x07,
                AccessFlagL0 = 0x08,
                AccessFlagL1 = 0x09,
                AccessFlagL2 = 0x0a,
                AccessFlagL3 = 0x0b,
                PermissionL0 = 0x0c,
                PermissionL1 = 0x0d,
                PermissionL2 = 0x0e,
                PermissionL3 = 0x0f,
                /// Synchronous external abort, not on a table walk.
                SyncExternal = 0x10
            ],
            /// `WnR` `[6]`: the access was a write (data aborts).
            WNR OFFSET(6) NUMBITS(1) [],
            /// `S1PTW` `[7]`: on a stage-2 walk for a stage-1 walk.
            S1PTW OFFSET(7) NUMBITS(1) [],
            /// `CM` `[8]`: on a cache maintenance instruction.
            CM OFFSET(8) NUMBITS(1) [],
            /// `EA` `[9]`: external abort type.
            EA OFFSET(9) NUMBITS(1) [],
            /// `FnV` `[10]`: the FAR is not valid.
            FNV OFFSET(10) NUMBITS(1) [],
            /// `AR` `[14]`: acquire/release semantics.
            AR OFFSET(14) NUMBITS(1) [],
            /// `SF` `[15]`: a 64-bit register (AArch64).
            SF OFFSET(15) NUMBITS(1) [],
            /// `SRT` `[20:16]`: the load's or store's register (`[19:16]`
            /// on ARMv7).
            SRT OFFSET(16) NUMBITS(5) [],
            /// `SSE` `[21]`: the load sign-extends.
            SSE OFFSET(21) NUMBITS(1) [],
            /// `SAS` `[23:22]`: the access size.
            SAS OFFSET(22) NUMBITS(2) [
                Byte = 0b00,
                Halfword = 0b01,
                Word = 0b10,
                Doubleword = 0b11
            ],
            /// `ISV` `[24]`: `SAS`, `SSE`, `SRT`, `SF` and `AR` are valid.
            ISV OFFSET(24) NUMBITS(1) []
        ],

        /// The ISS of a trapped `WFI` or `WFE` (EC 0x01).
        pub ISS_WFX [
            /// `TI` `[1:0]`: which instruction (ARMv7's `HSR` has bit 0
            /// only, bit 1 reading as zero).
            TI OFFSET(0) NUMBITS(2) [
                Wfi = 0b00,
                Wfe = 0b01,
                /// `WFIT` (FEAT_WFxT).
                Wfit = 0b10,
                /// `WFET` (FEAT_WFxT).
                Wfet = 0b11
            ]
        ],

        /// The ISS of an `HVC` (EC 0x12, 0x16) or trapped AArch64 `SMC`
        /// (EC 0x17).
        pub ISS_CALL [
            /// `imm16` `[15:0]`: the instruction's immediate.
            IMM16 OFFSET(0) NUMBITS(16) []
        ],

        /// The ISS of a trapped AArch64 `MSR`/`MRS` (EC 0x18).
        pub ISS_SYS64 [
            /// `Direction` `[0]`.
            DIRECTION OFFSET(0) NUMBITS(1) [
                /// `MSR`.
                Write = 0,
                /// `MRS`.
                Read = 1
            ],
            /// `CRm` `[4:1]`.
            CRM OFFSET(1) NUMBITS(4) [],
            /// `Rt` `[9:5]`: the general-purpose register (31: XZR).
            RT OFFSET(5) NUMBITS(5) [],
            /// `CRn` `[13:10]`.
            CRN OFFSET(10) NUMBITS(4) [],
            /// `Op1` `[16:14]`.
            OP1 OFFSET(14) NUMBITS(3) [],
            /// `Op2` `[19:17]`.
            OP2 OFFSET(17) NUMBITS(3) [],
            /// `Op0` `[21:20]`.
            OP0 OFFSET(20) NUMBITS(2) []
        ],

        /// The ISS of a trapped AArch32 `MCR`/`MRC` (EC 0x03 for CP15,
        /// 0x05 for CP14), and of a trapped `VMRS` (EC 0x08: `Opc1` 7,
        /// `CRn` the VFP register, `CRm` and `Opc2` 0, a read).
        pub ISS_COP [
            /// `Direction` `[0]`.
            DIRECTION OFFSET(0) NUMBITS(1) [
                /// `MCR`.
                Write = 0,
                /// `MRC`.
                Read = 1
            ],
            /// `CRm` `[4:1]`.
            CRM OFFSET(1) NUMBITS(4) [],
            /// `Rt` `[8:5]` (ARMv7's `HSR`; `ESR_EL2`'s `[9:5]` has bit 9 zero).
            RT OFFSET(5) NUMBITS(4) [],
            /// `CRn` `[13:10]`.
            CRN OFFSET(10) NUMBITS(4) [],
            /// `Opc1` `[16:14]`.
            OPC1 OFFSET(14) NUMBITS(3) [],
            /// `Opc2` `[19:17]`.
            OPC2 OFFSET(17) NUMBITS(3) [],
            /// `COND` `[23:20]`: the condition code, if `CV`.
            COND OFFSET(20) NUMBITS(4) [],
            /// `CV` `[24]`: `COND` is valid.
            CV OFFSET(24) NUMBITS(1) []
        ],

        /// The ISS of an `HCPTR`-trapped coprocessor, VFP or Advanced
        /// SIMD access on ARMv7 (EC 0x07).
        pub ISS_HCPTR [
            /// `coproc` `[3:0]`: the coprocessor accessed (10 or 11: VFP
            /// and Advanced SIMD), if not `TA`.
            COPROC OFFSET(0) NUMBITS(4) [],
            /// `TA` `[5]`: an Advanced SIMD instruction (trapped by
            /// `HCPTR.TASE` or, with `TCP10`, as a CP10 access).
            TA OFFSET(5) NUMBITS(1) []
        ]
    }
}
pub use fields::*;

/// Exception classes (`ESR_EL2.EC`, `HSR.EC`: the same field), as the
/// numbers a `match` on [`Syndrome::ec`] takes.
pub mod ec {
    use super::ESR::EC::Value as Ec;

    /// WFI or WFE trapped.
    pub const WFX: u64 = Ec::WFx as u64;
    /// AArch32 `MCR`/`MRC` to CP15 trapped.
    pub const MCR_MRC_CP15: u64 = Ec::McrMrcCp15 as u64;
    /// AArch32 `MCR`/`MRC` to CP14 trapped.
    pub const MCR_MRC_CP14: u64 = Ec::McrMrcCp14 as u64;
    /// FP/Advanced SIMD trapped (ARMv7: `HCPTR`, any coprocessor).
    pub const SIMD_FP: u64 = Ec::SimdFp as u64;
    /// AArch32 `VMRS` of an ID register trapped (`HCR.TID0`, `TID3`).
    pub const VMRS: u64 = Ec::Vmrs as u64;
    /// `HVC` from AArch32.
    pub const HVC32: u64 = Ec::Hvc32 as u64;
    /// `SMC` from AArch32, trapped.
    pub const SMC32: u64 = Ec::Smc32 as u64;
    /// `HVC` from AArch64.
    pub const HVC64: u64 = Ec::Hvc64 as u64;
    /// `SMC` from AArch64, trapped.
    pub const SMC64: u64 = Ec::Smc64 as u64;
    /// AArch64 `MSR`/`MRS` trapped.
    pub const SYS64: u64 = Ec::Sys64 as u64;
    /// Instruction abort from the guest.
    pub const IABT_LOW: u64 = Ec::IabtLow as u64;
    /// Data abort from the guest.
    pub const DABT_LOW: u64 = Ec::DabtLow as u64;
}

/// A syndrome (`ESR_EL2` or `HSR`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Syndrome(pub u64);

/// What a stage-2 abort's fault status code says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// Translation fault, at any level.
    Translation,
    /// Permission fault, at any level.
    Permission,
    /// Anything else (address size, access flag, external abort...).
    Other,
}

/// Which wait instruction a trapped `WFx` (EC 0x01) was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wfx {
    /// `WFI`.
    Wfi,
    /// `WFE`.
    Wfe,
    /// `WFIT`: `WFI` with a timeout (FEAT_WFxT).
    Wfit,
    /// `WFET`: `WFE` with a timeout (FEAT_WFxT).
    Wfet,
}

/// A data abort's access as its syndrome describes it (`ISV` set).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Access {
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u64,
    /// The register loaded or stored (`SRT`).
    pub reg: usize,
}

impl Syndrome {
    /// Exception class `[31:26]`.
    pub fn ec(self) -> u64 {
        ESR::EC.read(self.0)
    }

    /// Instruction length `[25]`: 4 bytes when set, 2 (a 16-bit Thumb
    /// instruction) when clear.
    pub fn insn_len(self) -> u64 {
        if ESR::IL.is_set(self.0) {
            4
        } else {
            2
        }
    }

    /// Instruction-specific syndrome `[24:0]`.
    pub fn iss(self) -> u64 {
        ESR::ISS.read(self.0)
    }

    /// The instruction of a trapped `WFx` (`TI`).
    pub fn wfx(self) -> Wfx {
        use ISS_WFX::TI::Value as Ti;
        match LocalRegisterCopy::<u64, ISS_WFX::Register>::new(self.iss()).read_as_enum(ISS_WFX::TI)
        {
            Some(Ti::Wfi) | None => Wfx::Wfi,
            Some(Ti::Wfe) => Wfx::Wfe,
            Some(Ti::Wfit) => Wfx::Wfit,
            Some(Ti::Wfet) => Wfx::Wfet,
        }
    }

    /// The immediate of an `HVC` or trapped `SMC`.
    pub fn imm16(self) -> u64 {
        ISS_CALL::IMM16.read(self.iss())
    }

    fn abort(self) -> LocalRegisterCopy<u64, ISS_ABORT::Register> {
        LocalRegisterCopy::new(self.iss())
    }

    /// A data or instruction abort's kind of fault.
    pub fn fault(self) -> Fault {
        use ISS_ABORT::FSC::Value as Fsc;
        match self.abort().read_as_enum(ISS_ABORT::FSC) {
            Some(
                Fsc::TranslationL0 | Fsc::TranslationL1 | Fsc::TranslationL2 | Fsc::TranslationL3,
            ) => Fault::Translation,
            Some(Fsc::PermissionL0 | Fsc::PermissionL1 | Fsc::PermissionL2 | Fsc::PermissionL3) => {
                Fault::Permission
            }
            _ => Fault::Other,
        }
    }

    /// A data abort was on a write (`WnR`).
    pub fn write(self) -> bool {
        self.abort().is_set(ISS_ABORT::WNR)
    }

    /// A data abort on a cache maintenance instruction (`CM`; `WnR` is
    /// set on those, `ISV` clear).
    pub fn cache_maintenance(self) -> bool {
        self.abort().is_set(ISS_ABORT::CM)
    }

    /// An abort on the stage-2 translation of a stage-1 table walk
    /// (`S1PTW`): not on the access the instruction made, so it cannot be
    /// emulated or stepped over.
    pub fn s1ptw(self) -> bool {
        self.abort().is_set(ISS_ABORT::S1PTW)
    }

    /// A data abort's size and register, if the syndrome holds them
    /// (`ISV`).
    pub fn access(self) -> Option<Access> {
        use ISS_ABORT::SAS::Value as Sas;
        let iss = self.abort();
        if !iss.is_set(ISS_ABORT::ISV) {
            return None;
        }
        let size = match iss.read_as_enum(ISS_ABORT::SAS)? {
            Sas::Byte => 1,
            Sas::Halfword => 2,
            Sas::Word => 4,
            Sas::Doubleword => 8,
        };
        Some(Access { size, reg: iss.read(ISS_ABORT::SRT) as usize })
    }

    /// What a data abort's load of `size` bytes that read `raw` leaves in
    /// its register: zero-extended, or sign-extended (`SSE`) to 64 bits for
    /// a 64-bit register (`SF`) and to 32 bits otherwise (an AArch64 `W`
    /// register, any AArch32 register: `SF` is 0 there).
    pub fn loaded(self, raw: u64, size: u64) -> u64 {
        let iss = self.abort();
        let bits = (size * 8).clamp(8, 64) as u32;
        let raw = if bits == 64 { raw } else { raw & ((1 << bits) - 1) };
        if !iss.is_set(ISS_ABORT::SSE) || bits == 64 {
            return raw;
        }
        let shift = 64 - bits;
        let wide = (((raw << shift) as i64) >> shift) as u64;
        if iss.is_set(ISS_ABORT::SF) {
            wide
        } else {
            wide & 0xffff_ffff
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Syndromes decoded by hand from the Arm ARM's field tables.

    #[test]
    fn a_store_to_mmio_with_a_valid_syndrome() {
        // STR w1, [x0] from EL1, translation fault at level 3: EC 0x24,
        // IL, ISV, SAS 0b10 (word), SRT 1, WnR, DFSC 0x07.
        let s = Syndrome(0x9381_0047);
        assert_eq!((s.ec(), s.insn_len(), s.iss()), (ec::DABT_LOW, 4, 0x181_0047));
        assert_eq!(s.access(), Some(Access { size: 4, reg: 1 }));
        assert!(s.write());
        assert_eq!(s.fault(), Fault::Translation);
    }

    #[test]
    fn a_byte_load_and_a_64_bit_load() {
        // LDRB w3, [x2]: SAS 0b00, SRT 3, read, DFSC 0x06 (level 2).
        let s = Syndrome(0x9303_0006);
        assert_eq!(s.access(), Some(Access { size: 1, reg: 3 }));
        assert!(!s.write());
        assert_eq!(s.fault(), Fault::Translation);
        // LDR x30, [x0]: SAS 0b11, SF, SRT 30.
        let s = Syndrome(0x93de_8007);
        assert_eq!(s.access(), Some(Access { size: 8, reg: 30 }));
    }

    #[test]
    fn loads_extend_as_the_syndrome_says() {
        // LDRB w3, [x2]: zero-extended (the value's upper bits dropped).
        assert_eq!(Syndrome(0x9303_0006).loaded(0x1f0, 1), 0xf0);
        // LDRSB w3, [x2]: SSE; a W register.
        let s = Syndrome(0x9323_0006);
        assert_eq!(s.access(), Some(Access { size: 1, reg: 3 }));
        assert_eq!(s.loaded(0xf0, 1), 0xffff_fff0);
        assert_eq!(s.loaded(0x70, 1), 0x70);
        // LDRSB x3, [x2]: SSE and SF.
        assert_eq!(Syndrome(0x9323_8006).loaded(0x80, 1), 0xffff_ffff_ffff_ff80);
        // LDRSH w3, [x2].
        let s = Syndrome(0x9363_0006);
        assert_eq!(s.access(), Some(Access { size: 2, reg: 3 }));
        assert_eq!(s.loaded(0x8001, 2), 0xffff_8001);
        // LDR w1 and LDR x30: as read.
        assert_eq!(Syndrome(0x9381_0007).loaded(0x8000_0000, 4), 0x8000_0000);
        assert_eq!(Syndrome(0x93de_8007).loaded(u64::MAX, 8), u64::MAX);
        // LDRSW x3: SSE, SF, a word.
        assert_eq!(Syndrome(0x93a3_8006).loaded(0x8000_0000, 4), 0xffff_ffff_8000_0000);
    }

    #[test]
    fn a_write_permission_fault_without_a_valid_syndrome() {
        // STP to a write-protected page: no ISV, WnR, DFSC 0x0f.
        let s = Syndrome(0x9200_004f);
        assert_eq!(s.access(), None);
        assert!(s.write());
        assert_eq!(s.fault(), Fault::Permission);
        // Permission fault at level 0 (0x0c) to level 2 (0x0e) too.
        for dfsc in 0x0c..=0x0e {
            assert_eq!(Syndrome(0x9200_0040 | dfsc).fault(), Fault::Permission);
        }
    }

    #[test]
    fn cache_maintenance_and_table_walk_aborts() {
        // DC IVAC on a write-protected page: CM, WnR, no ISV, DFSC 0x0f.
        let s = Syndrome(0x9200_014f);
        assert!(s.cache_maintenance() && s.write() && !s.s1ptw());
        assert_eq!((s.access(), s.fault()), (None, Fault::Permission));
        // A stage-1 walk's descriptor update in a read-only page: S1PTW,
        // WnR, DFSC 0x0f.
        let s = Syndrome(0x9200_00cf);
        assert!(s.s1ptw() && s.write() && !s.cache_maintenance());
        // A plain store: neither.
        let s = Syndrome(0x9381_004f);
        assert!(!s.s1ptw() && !s.cache_maintenance());
    }

    #[test]
    fn other_fault_codes() {
        // Access flag (0x0b), address size (0x00), external (0x10), and a
        // translation fault at level 0 (0x04).
        assert_eq!(Syndrome(0x9200_000b).fault(), Fault::Other);
        assert_eq!(Syndrome(0x9200_0000).fault(), Fault::Other);
        assert_eq!(Syndrome(0x9200_0010).fault(), Fault::Other);
        assert_eq!(Syndrome(0x9200_0004).fault(), Fault::Translation);
    }

    #[test]
    fn an_instruction_abort() {
        // Translation fault at level 2 on a fetch: EC 0x20, IL, IFSC 0x06.
        let s = Syndrome(0x8200_0006);
        assert_eq!(s.ec(), ec::IABT_LOW);
        assert_eq!(s.fault(), Fault::Translation);
    }

    #[test]
    fn calls_and_traps() {
        // HVC #0 and HVC #0x1234 from AArch64, HVC from ARMv7 (HSR), SMC.
        assert_eq!((Syndrome(0x5a00_0000).ec(), Syndrome(0x5a00_0000).imm16()), (ec::HVC64, 0));
        assert_eq!(Syndrome(0x5a00_1234).imm16(), 0x1234);
        assert_eq!(Syndrome(0x4a00_0000).ec(), ec::HVC32);
        assert_eq!(Syndrome(0x5e00_0000).ec(), ec::SMC64);
        assert_eq!(Syndrome(0x4e00_0000).ec(), ec::SMC32);
        // WFI, as a 32-bit instruction and as a 16-bit Thumb one.
        assert_eq!((Syndrome(0x0600_0000).ec(), Syndrome(0x0600_0000).insn_len()), (ec::WFX, 4));
        assert_eq!(Syndrome(0x0400_0000).insn_len(), 2);
        // TI: WFI, WFE, WFIT and WFET (with RV and Rn: x3), and ARMv7's
        // WFE with a condition (CV, COND).
        assert_eq!(Syndrome(0x0600_0000).wfx(), Wfx::Wfi);
        assert_eq!(Syndrome(0x0600_0001).wfx(), Wfx::Wfe);
        assert_eq!(Syndrome(0x0600_0066).wfx(), Wfx::Wfit);
        assert_eq!(Syndrome(0x0600_0067).wfx(), Wfx::Wfet);
        assert_eq!(Syndrome(0x07e0_0001).wfx(), Wfx::Wfe);
        // MRS x3, ID_AA64PFR0_EL1; MRC p15 and p14 (HSR).
        assert_eq!(Syndrome(0x6230_0069).ec(), ec::SYS64);
        assert_eq!(Syndrome(0x6230_0069).iss(), 0x30_0069);
        assert_eq!(Syndrome(0x0e00_0000).ec(), ec::MCR_MRC_CP15);
        assert_eq!(Syndrome(0x1600_0000).ec(), ec::MCR_MRC_CP14);
    }

    #[test]
    fn decoding_is_what_the_hand_decoding_gave() {
        // The decoding before the fields had names, on many syndromes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = Syndrome(x);
            let iss = x & 0x1ff_ffff;
            assert_eq!(s.ec(), (x >> 26) & 0x3f);
            assert_eq!(s.insn_len(), if x & (1 << 25) != 0 { 4 } else { 2 });
            assert_eq!(s.iss(), iss);
            assert_eq!(s.imm16(), iss & 0xffff);
            assert_eq!(s.write(), iss & (1 << 6) != 0);
            let access = (iss & (1 << 24) != 0).then(|| Access {
                size: 1 << ((iss >> 22) & 3),
                reg: ((iss >> 16) & 0x1f) as usize,
            });
            assert_eq!(s.access(), access);
            let fault = match iss & 0x3f {
                0x04..=0x07 => Fault::Translation,
                0x0c..=0x0f => Fault::Permission,
                _ => Fault::Other,
            };
            assert_eq!(s.fault(), fault, "{x:#x}");
        }
    }

    #[test]
    fn fields_sit_where_the_arm_arm_puts_them() {
        assert_eq!((ESR::EC::DabtCur + ESR::IL::Bits32).value, 0x9600_0000);
        assert_eq!(ESR::ISS.val(u64::MAX).value, 0x1ff_ffff);
        // The ISS of an injected synchronous external abort on a write.
        assert_eq!((ISS_ABORT::WNR::SET + ISS_ABORT::FSC::SyncExternal).value, 0x50);
        assert_eq!(ISS_ABORT::SAS::Doubleword.value, 3 << 22);
        assert_eq!(ISS_ABORT::SRT.val(31).value, 31 << 16);
        assert_eq!(ISS_ABORT::ISV::SET.value, 1 << 24);
        assert_eq!(ISS_SYS64::OP0.val(3).value, 3 << 20);
        assert_eq!(ISS_SYS64::RT.val(31).value, 31 << 5);
        assert_eq!(ISS_COP::RT.val(15).value, 15 << 5);
        assert_eq!(ISS_COP::CV::SET.value, 1 << 24);
    }
}
