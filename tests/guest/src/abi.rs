//! The hypervisor ABI seen from a guest (`docs/HYPERVISOR.md`): hypercall
//! function ids, `HYP_STAT` counter indices, PSCI function ids and the guest
//! IPA memory map.
//!
//! The ids are written in their SMC64 form (`0xC...`), as AArch64 guests
//! issue them; ARM32 guests issue the SMC32 form of the same call
//! ([`smc32`]), with 32-bit arguments and results.

/// SMCCC result: the function is not supported.
pub const SMCCC_NOT_SUPPORTED: i64 = -1;
/// SMCCC result: an argument was rejected.
pub const SMCCC_INVALID_PARAMETER: i64 = -3;
/// The hypervisor's result for a full bounded table (alias table, reverse
/// map) or no memory (vendor-defined).
pub const HYP_NO_MEMORY: i64 = -4;

/// Entries of a VM's alias table (`HYP_ALIAS`, `HYP_SHARE`).
pub const ALIAS_ENTRIES: u64 = 16;

/// SMCCC function id bit 30: set for the SMC64 calling convention.
pub const SMCCC_64: u64 = 1 << 30;

/// The SMC32 form of an SMCCC function id (bit 30 clear), which ARM32
/// guests issue: `HYP_VERSION` `0xC600_0000` becomes `0x8600_0000`, PSCI
/// `CPU_ON` `0xC400_0003` becomes `0x8400_0003`; ids that are SMC32
/// already (`PSCI_VERSION`) are unchanged.
pub const fn smc32(id: u64) -> u32 {
    (id & !SMCCC_64) as u32
}

/// Hypercall function ids (SMC64 fast calls, vendor-specific hypervisor
/// service range, OEN 6), issued with `HVC #0`.
pub mod hyp {
    /// `x0` = `0x0001_0000`.
    pub const HYP_VERSION: u64 = 0xC600_0000;
    /// `x1` = 0 pass / else fail code, `x2` = test number.
    pub const HYP_REPORT: u64 = 0xC600_0001;
    /// `x1` = counter index ([`super::counter`]); `x0` = value.
    pub const HYP_STAT: u64 = 0xC600_0002;
    /// `x1` = IPA, `x2` = size: unmap (the next access faults in a zeroed page).
    pub const HYP_UNMAP: u64 = 0xC600_0003;
    /// `x1` = IPA of one page, `x2` = 64-bit fill pattern: map a fresh frame
    /// filled with the pattern there.
    pub const HYP_REMAP: u64 = 0xC600_0004;
    /// `x1` = IPA, `x2` = size, `x3` = permissions ([`super::PERM_R`]...).
    pub const HYP_PROTECT: u64 = 0xC600_0005;
    /// `x1` = [`super::POLICY_PAGES`] or [`super::POLICY_BLOCKS`].
    pub const HYP_SET_POLICY: u64 = 0xC600_0006;
    /// `x1` = 2 MiB-aligned IPA.
    pub const HYP_COLLAPSE: u64 = 0xC600_0007;
    /// `x1` = 2 MiB-aligned IPA.
    pub const HYP_SPLIT: u64 = 0xC600_0008;
    /// `x1` = source page, `x2` = another page of the caller's RAM: from
    /// its next access on, the second page maps the source page's frame.
    pub const HYP_ALIAS: u64 = 0xC600_0009;
    /// `x1` = a page of the caller's, `x2` = another VM's id (`x3` = 0):
    /// offers the page to that VM; `x0` = the offer's handle.
    pub const HYP_SHARE: u64 = 0xC600_000A;
    /// `x1` = IPA, `x2` = size: pages mapped writable (dirty logging).
    pub const HYP_DIRTY_COUNT: u64 = 0xC600_000B;
    /// `x1` = handle of an offer made to the caller, `x2` = a page of the
    /// caller's: that page maps the offered one from its next access on.
    pub const HYP_ACCEPT: u64 = 0xC600_000C;
    /// `x1` = handle of the caller's offer: withdrawn, the receiver's page
    /// with it.
    pub const HYP_REVOKE: u64 = 0xC600_000D;
    /// `x1` = handle: the caller drops its page of that offer.
    pub const HYP_RELINQUISH: u64 = 0xC600_000E;
    /// `x1` = n: the n-th offer made to the caller; `x0` = handle, `x1` =
    /// owner, `x2` = accepted (or `x0` = -3: no such offer).
    pub const HYP_OFFERED: u64 = 0xC600_000F;
    /// `HYP_YIELD()`: let another vCPU run on this CPU if one waits.
    pub const HYP_YIELD: u64 = 0xC600_0010;
    /// What `HYP_VERSION` returns.
    pub const VERSION_1_0: u64 = 0x0001_0000;
}

/// `HYP_PROTECT` permission bit: read.
pub const PERM_R: u64 = 1 << 0;
/// `HYP_PROTECT` permission bit: write.
pub const PERM_W: u64 = 1 << 1;
/// `HYP_PROTECT` permission bit: execute.
pub const PERM_X: u64 = 1 << 2;

/// `HYP_SET_POLICY`: demand faults map 4 KiB pages.
pub const POLICY_PAGES: u64 = 0;
/// `HYP_SET_POLICY`: demand faults map 2 MiB blocks where they fit in RAM.
pub const POLICY_BLOCKS: u64 = 1;
/// `HYP_SET_POLICY`: demand faults map 1 GiB blocks where they fit in RAM
/// and the host has one free (else 2 MiB blocks).
pub const POLICY_HUGE: u64 = 2;

/// `HYP_STAT` counter indices (per VM).
pub mod counter {
    /// Stage-2 faults.
    pub const FAULTS: u64 = 0;
    /// Pages mapped.
    pub const PAGES_MAPPED: u64 = 1;
    /// Blocks mapped.
    pub const BLOCKS_MAPPED: u64 = 2;
    /// Table pages allocated.
    pub const TABLES_ALLOCATED: u64 = 3;
    /// Table pages freed.
    pub const TABLES_FREED: u64 = 4;
    /// Collapses.
    pub const COLLAPSES: u64 = 5;
    /// Splits.
    pub const SPLITS: u64 = 6;
    /// TLBI by IPA.
    pub const TLBI_IPA: u64 = 7;
    /// TLBI by range.
    pub const TLBI_RANGE: u64 = 8;
    /// TLBI of the whole VMID.
    pub const TLBI_VMID: u64 = 9;
    /// Grace periods.
    pub const GRACE_PERIODS: u64 = 10;
    /// Permission faults.
    pub const PERMISSION_FAULTS: u64 = 11;
    /// Guest exits.
    pub const GUEST_EXITS: u64 = 12;
    /// External aborts injected.
    pub const ABORTS_INJECTED: u64 = 13;
    /// Faults that applied the coherency policy to an aliased page.
    pub const COHERENCY_FAULTS: u64 = 14;
    /// Mappings those faults rewrote.
    pub const ALIASES_ADJUSTED: u64 = 15;
    /// Recorded mappings they passed over.
    pub const ALIASES_SKIPPED: u64 = 16;
    /// `pmd_same` retries while adjusting.
    pub const ALIAS_RETRIES: u64 = 17;
    /// Aliases left for the second pass (lock busy).
    pub const ALIASES_DEFERRED: u64 = 18;
    /// Entries in this VM's alias table now.
    pub const ALIAS_ENTRIES: u64 = 19;
    /// Shares this VM accepted.
    pub const SHARES_RECEIVED: u64 = 20;
    /// Tracked pages this VM is charged for (reverse-map quota).
    pub const TRACKED_PAGES: u64 = 21;
    /// Offers this VM has out.
    pub const OFFERS: u64 = 22;
    /// Undefined-instruction exceptions injected into this VM.
    pub const UNDEFS_INJECTED: u64 = 23;
    /// Calls this VM made that were refused.
    pub const CALLS_REFUSED: u64 = 24;
    /// Instructions the hypervisor executed at EL2 for this VM's exits
    /// (PMU instructions retired, EL2 only; 0 without a PMU).
    pub const EL2_INSTRUCTIONS: u64 = 25;
    /// Exits for physical interrupts (timers, kicks, maintenance).
    pub const IRQ_EXITS: u64 = 26;
    /// Times a vCPU slept in WFI with nothing to take.
    pub const SLEEPS: u64 = 27;
    /// Lazy loads of this VM's FP state (ARM32: a vCPU's first VFP access
    /// after it was put on a CPU; 0 on AArch64).
    pub const FP_LOADS: u64 = 28;
    /// Exits for HVC or a trapped SMC.
    pub const CALL_EXITS: u64 = 29;
    /// Exits for a trapped WFI or WFE.
    pub const WFX_EXITS: u64 = 30;
    /// Exits for an emulated device access (PL011, virtual GIC).
    pub const MMIO_EXITS: u64 = 31;
    /// Exits for other trapped instructions.
    pub const TRAP_EXITS: u64 = 32;
    /// Number of counters.
    pub const COUNT: usize = 33;
    /// Short names, by index, for printing.
    pub const NAMES: [&str; COUNT] = [
        "faults",
        "pages_mapped",
        "blocks_mapped",
        "tables_allocated",
        "tables_freed",
        "collapses",
        "splits",
        "tlbi_ipa",
        "tlbi_range",
        "tlbi_vmid",
        "grace_periods",
        "perm_faults",
        "exits",
        "aborts_injected",
        "coherency_faults",
        "aliases_adjusted",
        "aliases_skipped",
        "alias_retries",
        "aliases_deferred",
        "alias_entries",
        "shares_received",
        "tracked_pages",
        "offers",
        "undefs_injected",
        "calls_refused",
        "el2_instructions",
        "irq_exits",
        "sleeps",
        "fp_loads",
        "call_exits",
        "wfx_exits",
        "mmio_exits",
        "trap_exits",
    ];
}

/// PSCI function ids (PSCI 1.1, through `HVC #0`), in their SMC64 form
/// where PSCI defines both ([`smc32`] gives the other), and its results.
pub mod psci {
    /// `PSCI_VERSION`.
    pub const VERSION: u64 = 0x8400_0000;
    /// `CPU_SUSPEND` (SMC64).
    pub const CPU_SUSPEND: u64 = 0xC400_0001;
    /// `CPU_OFF`.
    pub const CPU_OFF: u64 = 0x8400_0002;
    /// `CPU_ON` (SMC64).
    pub const CPU_ON: u64 = 0xC400_0003;
    /// `AFFINITY_INFO` (SMC64).
    pub const AFFINITY_INFO: u64 = 0xC400_0004;
    /// `MIGRATE` (SMC64).
    pub const MIGRATE: u64 = 0xC400_0005;
    /// `MIGRATE_INFO_TYPE`.
    pub const MIGRATE_INFO_TYPE: u64 = 0x8400_0006;
    /// `MIGRATE_INFO_UP_CPU` (SMC64).
    pub const MIGRATE_INFO_UP_CPU: u64 = 0xC400_0007;
    /// `SYSTEM_OFF`.
    pub const SYSTEM_OFF: u64 = 0x8400_0008;
    /// `SYSTEM_RESET`.
    pub const SYSTEM_RESET: u64 = 0x8400_0009;
    /// `PSCI_FEATURES`.
    pub const FEATURES: u64 = 0x8400_000A;
    /// `CPU_FREEZE`.
    pub const CPU_FREEZE: u64 = 0x8400_000B;
    /// `CPU_DEFAULT_SUSPEND` (SMC64).
    pub const CPU_DEFAULT_SUSPEND: u64 = 0xC400_000C;
    /// `NODE_HW_STATE` (SMC64).
    pub const NODE_HW_STATE: u64 = 0xC400_000D;
    /// `SYSTEM_SUSPEND` (SMC64).
    pub const SYSTEM_SUSPEND: u64 = 0xC400_000E;
    /// `PSCI_SET_SUSPEND_MODE`.
    pub const SET_SUSPEND_MODE: u64 = 0x8400_000F;
    /// `PSCI_STAT_RESIDENCY` (SMC64).
    pub const STAT_RESIDENCY: u64 = 0xC400_0010;
    /// `PSCI_STAT_COUNT` (SMC64).
    pub const STAT_COUNT: u64 = 0xC400_0011;
    /// `SYSTEM_RESET2` (SMC64).
    pub const SYSTEM_RESET2: u64 = 0xC400_0012;
    /// `MEM_PROTECT`.
    pub const MEM_PROTECT: u64 = 0x8400_0013;
    /// `MEM_PROTECT_CHECK_RANGE` (SMC64).
    pub const MEM_PROTECT_CHECK_RANGE: u64 = 0xC400_0014;

    /// What `PSCI_VERSION` answers under the hypervisor: 1.1 (major in
    /// bits 31:16, minor in bits 15:0).
    pub const VERSION_1_1: i64 = 0x0001_0001;
    /// `MIGRATE_INFO_TYPE`: no trusted OS, nothing to migrate.
    pub const NO_TRUSTED_OS: i64 = 2;
    /// `AFFINITY_INFO`: the node is on.
    pub const AFFINITY_ON: i64 = 0;
    /// `AFFINITY_INFO`: the node is off.
    pub const AFFINITY_OFF: i64 = 1;
    /// `CPU_SUSPEND` `power_state` (original format) bit 16, `StateType`:
    /// a powerdown state (clear: standby or retention).
    pub const POWER_STATE_POWERDOWN: u64 = 1 << 16;
    /// `CPU_SUSPEND` `power_state` bits 25:24, `PowerLevel` (shift).
    pub const POWER_STATE_LEVEL_SHIFT: u32 = 24;
    /// `SYSTEM_RESET2` `reset_type` 0: `SYSTEM_WARM_RESET`.
    pub const SYSTEM_WARM_RESET: u64 = 0;
    /// `SYSTEM_RESET2` `reset_type` bit 31: a vendor-specific type.
    pub const RESET_TYPE_VENDOR: u64 = 1 << 31;

    /// Success.
    pub const SUCCESS: i64 = 0;
    /// The function is not supported.
    pub const NOT_SUPPORTED: i64 = -1;
    /// Invalid parameters.
    pub const INVALID_PARAMETERS: i64 = -2;
    /// `CPU_ON`: the target is already on.
    pub const ALREADY_ON: i64 = -4;
    /// `CPU_ON`: the target is being started.
    pub const ON_PENDING: i64 = -5;
    /// `CPU_ON`: the entry point is not a valid address.
    pub const INVALID_ADDRESS: i64 = -9;
}

/// The Arm architecture calls of SMCCC (SMC Calling Convention, DEN 0028),
/// through `HVC #0`.
pub mod smccc {
    /// `SMCCC_VERSION`.
    pub const VERSION: u64 = 0x8000_0000;
    /// `SMCCC_ARCH_FEATURES`.
    pub const ARCH_FEATURES: u64 = 0x8000_0001;
    /// `SMCCC_ARCH_SOC_ID`.
    pub const ARCH_SOC_ID: u64 = 0x8000_0002;
    /// `SMCCC_ARCH_WORKAROUND_1` (branch predictor invalidation).
    pub const ARCH_WORKAROUND_1: u64 = 0x8000_8000;
    /// `SMCCC_ARCH_WORKAROUND_2` (speculative store bypass).
    pub const ARCH_WORKAROUND_2: u64 = 0x8000_7FFF;
    /// `SMCCC_ARCH_WORKAROUND_3` (branch history).
    pub const ARCH_WORKAROUND_3: u64 = 0x8000_3FFF;
    /// What `SMCCC_VERSION` answers under the hypervisor: 1.1.
    pub const VERSION_1_1: i64 = 0x0001_0001;
}

/// Guest RAM base (IPA); the guest DTB is placed here.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Guest RAM size when the DTB does not say (the hypervisor's default).
pub const DEFAULT_RAM_SIZE: u64 = 128 << 20;
/// Load address and entry of the images.
pub const IMAGE_BASE: u64 = 0x4020_0000;
/// First IPA the tests use freely: above the image and its `.bss`
/// (`linker.ld` checks the image ends below it).
pub const TEST_REGION: u64 = 0x4100_0000;
/// The PL011 console.
pub const UART_BASE: u64 = 0x0900_0000;

/// The PL011's registers (offsets from [`UART_BASE`]) and the bits the
/// images use (Arm PL011 TRM; the hypervisor's model: `docs/HYPERVISOR.md`).
pub mod pl011 {
    /// `UARTDR`: data (read: a received byte, bit 11 overrun).
    pub const DR: usize = 0x000;
    /// `UARTRSR` (read) / `UARTECR` (write).
    pub const RSR: usize = 0x004;
    /// `UARTFR`: flags.
    pub const FR: usize = 0x018;
    /// `UARTIBRD`: integer baud rate divisor.
    pub const IBRD: usize = 0x024;
    /// `UARTFBRD`: fractional baud rate divisor.
    pub const FBRD: usize = 0x028;
    /// `UARTLCR_H`: line control.
    pub const LCR_H: usize = 0x02c;
    /// `UARTCR`: control.
    pub const CR: usize = 0x030;
    /// `UARTIFLS`: interrupt FIFO levels.
    pub const IFLS: usize = 0x034;
    /// `UARTIMSC`: interrupt mask.
    pub const IMSC: usize = 0x038;
    /// `UARTRIS`: raw interrupt status.
    pub const RIS: usize = 0x03c;
    /// `UARTMIS`: masked interrupt status.
    pub const MIS: usize = 0x040;
    /// `UARTICR`: interrupt clear.
    pub const ICR: usize = 0x044;
    /// `UARTPeriphID0`; the identification registers run to 0xffc.
    pub const ID: usize = 0xfe0;

    /// `UARTFR.BUSY`: transmitting.
    pub const FR_BUSY: u32 = 1 << 3;
    /// `UARTFR.RXFE`: the receive FIFO is empty.
    pub const FR_RXFE: u32 = 1 << 4;
    /// `UARTFR.TXFF`: the transmit FIFO is full.
    pub const FR_TXFF: u32 = 1 << 5;
    /// `UARTFR.RXFF`: the receive FIFO is full.
    pub const FR_RXFF: u32 = 1 << 6;
    /// `UARTFR.TXFE`: the transmit FIFO is empty.
    pub const FR_TXFE: u32 = 1 << 7;

    /// `UARTLCR_H.FEN`: FIFOs on.
    pub const LCR_H_FEN: u32 = 1 << 4;
    /// `UARTLCR_H.WLEN` = 8 bits.
    pub const LCR_H_WLEN8: u32 = 3 << 5;

    /// Receive interrupt (`IMSC`, `RIS`, `MIS`, `ICR` bit 4).
    pub const INT_RX: u32 = 1 << 4;
    /// Transmit interrupt (bit 5).
    pub const INT_TX: u32 = 1 << 5;
    /// Receive timeout interrupt (bit 6).
    pub const INT_RT: u32 = 1 << 6;

    /// `UARTCR` at reset: TXE, RXE.
    pub const CR_RESET: u32 = 0x300;
    /// `UARTIFLS` at reset: both levels half way.
    pub const IFLS_RESET: u32 = 0x12;
    /// The identification registers of a PL011 r1p5.
    pub const IDS: [u32; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
}
/// An IPA with neither RAM nor a device (the `outside` image probes it):
/// [`OUTSIDE_IPA_AARCH64`] or, for ARM32 guests, [`OUTSIDE_IPA_ARM`].
#[cfg(not(target_arch = "arm"))]
pub const OUTSIDE_IPA: u64 = OUTSIDE_IPA_AARCH64;
/// An IPA with neither RAM nor a device (the `outside` image probes it):
/// [`OUTSIDE_IPA_AARCH64`] or, for ARM32 guests, [`OUTSIDE_IPA_ARM`].
#[cfg(target_arch = "arm")]
pub const OUTSIDE_IPA: u64 = OUTSIDE_IPA_ARM;
/// [`OUTSIDE_IPA`] of AArch64 guests: 4 GiB, just above the largest RAM
/// the tests configure (`mem=2G` ends at `0xC000_0000`), mapped Device by
/// the runtime's stage 1.
pub const OUTSIDE_IPA_AARCH64: u64 = 0x1_0000_0000;
/// [`OUTSIDE_IPA`] of ARM32 guests, whose 32-bit VAs cannot reach 4 GiB:
/// the last 256 MiB of the 32-bit space, also above the largest RAM the
/// tests configure, mapped Normal like all of 1-4 GiB by the ARM32
/// runtime's stage 1.
pub const OUTSIDE_IPA_ARM: u64 = 0xF000_0000;
// ARM32 guests reach only 32-bit VAs (identity mapped).
const _: () = assert!(OUTSIDE_IPA_ARM < 1 << 32);
/// Page size.
pub const PAGE_SIZE: u64 = 4096;
/// Block size (level-2 block, 4 KiB granule).
pub const BLOCK_SIZE: u64 = 2 << 20;
/// Most vCPUs the runtime supports (stacks, per-CPU data).
pub const MAX_CPUS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smc32_clears_the_smc64_bit() {
        assert_eq!(smc32(hyp::HYP_VERSION), 0x8600_0000);
        assert_eq!(smc32(hyp::HYP_DIRTY_COUNT), 0x8600_000B);
        assert_eq!(smc32(hyp::HYP_OFFERED), 0x8600_000F);
        assert_eq!(smc32(psci::CPU_ON), 0x8400_0003);
        // Already SMC32: unchanged.
        assert_eq!(smc32(psci::VERSION), 0x8400_0000);
        assert_eq!(smc32(psci::SYSTEM_OFF), 0x8400_0008);
        // Every hypercall keeps its number and the fast-call bit.
        for n in 0..=0xF {
            assert_eq!(smc32(0xC600_0000 | n), 0x8600_0000 | n as u32);
        }
    }

    #[test]
    fn outside_ipas_are_above_test_ram_and_reachable() {
        const TWO_GIB_OF_RAM_END: u64 = RAM_BASE + (2 << 30);
        for ipa in [OUTSIDE_IPA_AARCH64, OUTSIDE_IPA_ARM] {
            assert!(ipa >= TWO_GIB_OF_RAM_END, "{ipa:#x}");
            assert!(ipa.is_multiple_of(PAGE_SIZE), "{ipa:#x}");
        }
        assert_eq!(OUTSIDE_IPA, OUTSIDE_IPA_AARCH64);
    }
}
