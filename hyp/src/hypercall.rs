//! The hypercall ABI (`docs/HYPERVISOR.md`): decoding and validating what
//! a guest passes in registers. Pure functions, tested on the host.

/// SMCCC `SMCCC_VERSION`.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// SMCCC `SMCCC_ARCH_FEATURES`.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// SMCCC `SMCCC_ARCH_SOC_ID`.
pub const SMCCC_ARCH_SOC_ID: u32 = 0x8000_0002;
/// SMCCC `SMCCC_ARCH_WORKAROUND_1` (branch predictor invalidation,
/// CVE-2017-5715).
pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
/// SMCCC `SMCCC_ARCH_WORKAROUND_2` (speculative store bypass,
/// CVE-2018-3639).
pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
/// SMCCC `SMCCC_ARCH_WORKAROUND_3` (branch history, CVE-2022-23960).
pub const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;
/// First function ID of the vendor-specific hypervisor service (SMC64).
pub const HYP_BASE: u32 = 0xC600_0000;
/// The same service in the SMC32 calling convention (ARM32 guests).
pub const HYP_BASE32: u32 = 0x8600_0000;
/// SMCCC function id bit 30: the SMC64 calling convention.
pub const SMC64_BIT: u32 = 1 << 30;

/// SMCCC error codes returned in `x0`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SmcccError {
    /// The function is not implemented.
    NotSupported,
    /// An argument is out of range, unaligned or otherwise bad.
    InvalidParameter,
    /// A bounded resource is exhausted: the alias table, the reverse map,
    /// a page's mappings, or free frames (vendor-defined code -4).
    NoMemory,
}

impl SmcccError {
    /// The value for `x0`.
    pub fn code(self) -> u64 {
        match self {
            SmcccError::NotSupported => -1i64 as u64,
            SmcccError::InvalidParameter => -3i64 as u64,
            SmcccError::NoMemory => -4i64 as u64,
        }
    }
}

/// Counters readable with `HYP_STAT`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stat {
    /// Stage-2 faults.
    Faults = 0,
    /// Pages mapped.
    PagesMapped = 1,
    /// 2 MiB blocks mapped.
    BlocksMapped = 2,
    /// Table pages allocated.
    TablesAllocated = 3,
    /// Table pages freed.
    TablesFreed = 4,
    /// Tables collapsed into blocks.
    Collapses = 5,
    /// Blocks split into tables.
    Splits = 6,
    /// TLBI by IPA.
    TlbiIpa = 7,
    /// TLBI by IPA range.
    TlbiRange = 8,
    /// Whole-VMID invalidations.
    TlbiVmid = 9,
    /// RCU grace periods.
    GracePeriods = 10,
    /// Permission faults.
    PermFaults = 11,
    /// Guest exits.
    Exits = 12,
    /// Synchronous external aborts injected.
    ExternalAborts = 13,
    /// Faults that ran the coherency policy: translation faults mapping an
    /// alias, and (policy `ro`) write faults on an aliased page.
    CoherencyFaults = 14,
    /// Entries those faults rewrote (`Coherence::adjusted`).
    AliasesAdjusted = 15,
    /// Recorded mappings passed over (`Coherence::skipped`).
    AliasesSkipped = 16,
    /// `pmd_same` retries (`Coherence::retries`).
    AliasRetries = 17,
    /// Aliases left for the lock-free second pass (`Coherence::deferred`).
    AliasesDeferred = 18,
    /// Entries in the VM's alias table now.
    AliasEntries = 19,
    /// Shares this VM accepted (`HYP_ACCEPT`).
    SharesReceived = 20,
    /// Tracked pages this VM is charged for in the reverse map (its quota
    /// is `vm::RMAP_QUOTA`).
    TrackedPages = 21,
    /// Offers this VM has out (`HYP_SHARE`).
    Offers = 22,
    /// Undefined-instruction exceptions injected into it (traps the
    /// hypervisor does not emulate).
    UndefInjected = 23,
    /// Hypercalls and PSCI calls it made that were refused.
    CallsRefused = 24,
    /// Instructions the hypervisor executed at EL2 (Hyp mode) for this
    /// VM's exits, from the exception entry to the `ERET` back (the PMU's
    /// instructions-retired event counting EL2 only; 0 where the machine
    /// has no such counter). Deterministic under QEMU's `-icount`.
    El2Instructions = 25,
    /// Exits for a physical interrupt (a timer, a kick, the maintenance
    /// interrupt); `Exits` counts the synchronous ones.
    IrqExits = 26,
    /// Times a vCPU went to sleep in WFI (or `CPU_SUSPEND`) with nothing
    /// to take.
    Sleeps = 27,
    /// Lazy loads of its VFP and Advanced SIMD state (ARMv7: a vCPU's
    /// first VFP access after it was put on a CPU; 0 on AArch64, where
    /// FP/SIMD is saved and loaded with every exit).
    FpLoads = 28,
    /// Exits for an HVC or a trapped SMC: hypercalls and PSCI calls.
    CallExits = 29,
    /// Exits for a trapped WFI or WFE.
    WfxExits = 30,
    /// Exits for an access to an emulated device (the PL011, the virtual
    /// GIC's distributor and redistributors).
    MmioExits = 31,
    /// Exits for a trapped instruction that is not one of the above: system
    /// registers (ID registers, SGIs, cache maintenance by set/way), and
    /// what is UNDEFINED for the guest.
    TrapExits = 32,
}

impl Stat {
    /// Every counter, in index order.
    pub const ALL: [Stat; 33] = [
        Stat::Faults,
        Stat::PagesMapped,
        Stat::BlocksMapped,
        Stat::TablesAllocated,
        Stat::TablesFreed,
        Stat::Collapses,
        Stat::Splits,
        Stat::TlbiIpa,
        Stat::TlbiRange,
        Stat::TlbiVmid,
        Stat::GracePeriods,
        Stat::PermFaults,
        Stat::Exits,
        Stat::ExternalAborts,
        Stat::CoherencyFaults,
        Stat::AliasesAdjusted,
        Stat::AliasesSkipped,
        Stat::AliasRetries,
        Stat::AliasesDeferred,
        Stat::AliasEntries,
        Stat::SharesReceived,
        Stat::TrackedPages,
        Stat::Offers,
        Stat::UndefInjected,
        Stat::CallsRefused,
        Stat::El2Instructions,
        Stat::IrqExits,
        Stat::Sleeps,
        Stat::FpLoads,
        Stat::CallExits,
        Stat::WfxExits,
        Stat::MmioExits,
        Stat::TrapExits,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Faults => "stage-2 faults",
            Stat::PagesMapped => "pages mapped",
            Stat::BlocksMapped => "2M blocks mapped",
            Stat::TablesAllocated => "tables allocated",
            Stat::TablesFreed => "tables freed",
            Stat::Collapses => "collapses",
            Stat::Splits => "splits",
            Stat::TlbiIpa => "TLBI by IPA",
            Stat::TlbiRange => "TLBI by range",
            Stat::TlbiVmid => "TLBI whole VMID",
            Stat::GracePeriods => "grace periods",
            Stat::PermFaults => "permission faults",
            Stat::Exits => "guest exits",
            Stat::ExternalAborts => "external aborts",
            Stat::CoherencyFaults => "coherency faults",
            Stat::AliasesAdjusted => "aliases adjusted",
            Stat::AliasesSkipped => "aliases skipped",
            Stat::AliasRetries => "alias retries",
            Stat::AliasesDeferred => "aliases deferred",
            Stat::AliasEntries => "alias entries",
            Stat::SharesReceived => "shares received",
            Stat::TrackedPages => "tracked pages",
            Stat::Offers => "offers out",
            Stat::UndefInjected => "undefs injected",
            Stat::CallsRefused => "calls refused",
            Stat::El2Instructions => "EL2 instructions",
            Stat::IrqExits => "IRQ exits",
            Stat::Sleeps => "WFI sleeps",
            Stat::FpLoads => "FP state loads",
            Stat::CallExits => "HVC/SMC exits",
            Stat::WfxExits => "WFI/WFE exits",
            Stat::MmioExits => "MMIO exits",
            Stat::TrapExits => "other trap exits",
        }
    }
}

/// A decoded, validated hypercall.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Call {
    /// `HYP_VERSION`.
    Version,
    /// `HYP_REPORT`: a test result.
    Report {
        /// Passed.
        pass: bool,
        /// Test number.
        test: u64,
        /// The failure code (the raw status).
        code: u64,
    },
    /// `HYP_STAT`.
    Stat(Stat),
    /// `HYP_UNMAP`.
    Unmap {
        /// Start.
        ipa: u64,
        /// Bytes.
        size: u64,
    },
    /// `HYP_REMAP`.
    Remap {
        /// The page.
        ipa: u64,
        /// Fill pattern of the new frame.
        pattern: u64,
    },
    /// `HYP_PROTECT`.
    Protect {
        /// Start.
        ipa: u64,
        /// Bytes.
        size: u64,
        /// Bit 0 R, 1 W, 2 X.
        perms: u64,
    },
    /// `HYP_SET_POLICY`: 0 pages, 1 blocks.
    SetPolicy(u64),
    /// `HYP_COLLAPSE`: the table under a 2 MiB (level 2) or 1 GiB (level 1)
    /// range becomes a block.
    Collapse {
        /// Start of the range.
        ipa: u64,
        /// Level of the block: 2 or 1.
        level: u8,
    },
    /// `HYP_SPLIT`: the block at an IPA becomes a table of the next level.
    Split {
        /// Start of the block.
        ipa: u64,
        /// Level of the block: 2 or 1.
        level: u8,
    },
    /// `HYP_DIRTY_COUNT`: writable pages in a range (dirty logging).
    DirtyCount {
        /// Start.
        ipa: u64,
        /// Bytes.
        size: u64,
    },
    /// `HYP_ALIAS`: the page at `dst` becomes another mapping of the
    /// page at `src` (same VM).
    Alias {
        /// The page whose frame is aliased.
        src: u64,
        /// The page that will map it too.
        dst: u64,
    },
    /// `HYP_SHARE`: offers the caller's page at `src` to VM `vm`.
    Share {
        /// The caller's page.
        src: u64,
        /// The receiving VM's id (exists, not the caller).
        vm: u64,
    },
    /// `HYP_ACCEPT`: maps an offer made to the caller at one of its pages.
    Accept {
        /// The offer's handle.
        handle: Handle,
        /// The caller's page that will map it.
        dst: u64,
    },
    /// `HYP_REVOKE`: the caller withdraws an offer it made.
    Revoke(Handle),
    /// `HYP_RELINQUISH`: the caller drops its mapping of an offer.
    Relinquish(Handle),
    /// `HYP_OFFERED`: the `n`-th offer made to the caller.
    Offered(u64),
    /// `HYP_YIELD`: the caller gives its CPU to another vCPU, if one
    /// waits (a paravirtual hint, as a spinning vCPU's `WFE` would be if
    /// every CPU trapped it).
    Yield,
}

/// Why a validated call failed; changes nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallError {
    /// It names nothing the caller may use (an offer that does not exist
    /// or is not the caller's, a share accepted already, ...).
    Invalid(&'static str),
    /// A bounded table is full (alias table, offers).
    NoMemory(&'static str),
    /// The VM's memory operation was refused.
    Vm(crate::vm::Error),
}

impl CallError {
    /// The value for `x0`.
    pub fn code(self) -> u64 {
        match self {
            CallError::Invalid(_) => SmcccError::InvalidParameter.code(),
            CallError::NoMemory(_) => SmcccError::NoMemory.code(),
            CallError::Vm(e) if e.is_resource_exhausted() => SmcccError::NoMemory.code(),
            CallError::Vm(_) => SmcccError::InvalidParameter.code(),
        }
    }
}

impl From<crate::vm::Error> for CallError {
    fn from(e: crate::vm::Error) -> Self {
        CallError::Vm(e)
    }
}

impl From<mmu::Error> for CallError {
    fn from(e: mmu::Error) -> Self {
        CallError::Vm(e.into())
    }
}

impl core::fmt::Display for CallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CallError::Invalid(why) | CallError::NoMemory(why) => f.write_str(why),
            CallError::Vm(e) => write!(f, "{e}"),
        }
    }
}

pub use crate::vm::share::Handle;

/// The VM making a hypercall, as far as validation needs it.
pub struct Caller<'a> {
    /// Its id.
    pub id: u64,
    /// Its RAM: (IPA base, size).
    pub ram: (u64, u64),
    /// The RAM of VM `id`, if that VM exists (for `HYP_SHARE`'s target).
    pub vm_ram: &'a dyn Fn(u64) -> Option<(u64, u64)>,
}

const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;

/// `x1` = IPA, `x2` = level (0 or 2 mean 2 MiB, 1 means 1 GiB): the block
/// must be aligned and lie in RAM.
fn block_arg(a: [u64; 6], ram: (u64, u64)) -> Result<(u64, u8), SmcccError> {
    let (level, size) = match a[1] {
        0 | 2 => (2, BLOCK),
        1 => (1, 1 << 30),
        _ => return Err(SmcccError::InvalidParameter),
    };
    ram_range(a[0], size, ram)?;
    if a[0].is_multiple_of(size) {
        Ok((a[0], level))
    } else {
        Err(SmcccError::InvalidParameter)
    }
}

/// Checks `[ipa, ipa + size)` is page aligned, non-empty and in RAM.
fn ram_range(ipa: u64, size: u64, ram: (u64, u64)) -> Result<(), SmcccError> {
    let (base, len) = ram;
    let aligned = ipa.is_multiple_of(PAGE) && size.is_multiple_of(PAGE) && size != 0;
    let inside = ipa >= base && size <= len && ipa - base <= len - size;
    if aligned && inside {
        Ok(())
    } else {
        Err(SmcccError::InvalidParameter)
    }
}

/// Decodes the vendor hypercall `fid` with arguments `a` (`x1..x6`) made
/// by `caller`.
pub fn decode(fid: u32, a: [u64; 6], caller: &Caller<'_>) -> Result<Call, SmcccError> {
    let ram = caller.ram;
    match fid.wrapping_sub(HYP_BASE) {
        0x00 => Ok(Call::Version),
        0x01 => Ok(Call::Report { pass: a[0] == 0, test: a[1], code: a[0] }),
        0x02 => Stat::ALL
            .get(usize::try_from(a[0]).unwrap_or(usize::MAX))
            .copied()
            .map(Call::Stat)
            .ok_or(SmcccError::InvalidParameter),
        0x03 => ram_range(a[0], a[1], ram).map(|_| Call::Unmap { ipa: a[0], size: a[1] }),
        0x04 => ram_range(a[0], PAGE, ram).map(|_| Call::Remap { ipa: a[0], pattern: a[1] }),
        0x05 => {
            ram_range(a[0], a[1], ram)?;
            if a[2] & !7 != 0 || a[2] & 1 == 0 && a[2] != 0 {
                // Unknown bits, or write/execute without read.
                return Err(SmcccError::InvalidParameter);
            }
            Ok(Call::Protect { ipa: a[0], size: a[1], perms: a[2] })
        }
        0x06 if crate::vm::Policy::from_abi(a[0]).is_some() => Ok(Call::SetPolicy(a[0])),
        0x06 => Err(SmcccError::InvalidParameter),
        0x07 => block_arg(a, ram).map(|(ipa, level)| Call::Collapse { ipa, level }),
        0x08 => block_arg(a, ram).map(|(ipa, level)| Call::Split { ipa, level }),
        0x09 => {
            ram_range(a[0], PAGE, ram)?;
            ram_range(a[1], PAGE, ram)?;
            if a[0] == a[1] {
                return Err(SmcccError::InvalidParameter);
            }
            Ok(Call::Alias { src: a[0], dst: a[1] })
        }
        0x0a => {
            ram_range(a[0], PAGE, ram)?;
            // x3 must be zero: the receiver, not the owner, names the IPA
            // the page is mapped at (an owner naming one is refused).
            if a[1] == caller.id || a[2] != 0 || (caller.vm_ram)(a[1]).is_none() {
                return Err(SmcccError::InvalidParameter);
            }
            Ok(Call::Share { src: a[0], vm: a[1] })
        }
        0x0b => ram_range(a[0], a[1], ram).map(|_| Call::DirtyCount { ipa: a[0], size: a[1] }),
        0x0c => {
            let handle = Handle::from_reg(a[0]).ok_or(SmcccError::InvalidParameter)?;
            ram_range(a[1], PAGE, ram)?;
            Ok(Call::Accept { handle, dst: a[1] })
        }
        0x0d => Handle::from_reg(a[0]).map(Call::Revoke).ok_or(SmcccError::InvalidParameter),
        0x0e => Handle::from_reg(a[0]).map(Call::Relinquish).ok_or(SmcccError::InvalidParameter),
        0x0f => Ok(Call::Offered(a[0])),
        0x10 => Ok(Call::Yield),
        _ => Err(SmcccError::NotSupported),
    }
}

/// The SMC64 form of a call to this hypervisor's service, for
/// [`decode`]. An SMC32 call (`0x8600_0000 | n`, what an ARM32 guest
/// issues) names the same function as `0xC600_0000 | n`; its arguments
/// are the low 32 bits of the registers (SMCCC: the upper halves of an
/// AArch64 caller's registers are ignored for SMC32). Other ids are
/// returned unchanged.
pub fn smc64_form(fid: u32, a: [u64; 6]) -> (u32, [u64; 6]) {
    if fid & 0xffff_0000 == HYP_BASE32 {
        (fid | SMC64_BIT, a.map(|v| v & 0xffff_ffff))
    } else {
        (fid, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: (u64, u64) = (0x4000_0000, 128 << 20);

    /// VMs 1 and 2 have `RAM`; VM 3 has 2 MiB at the same base.
    fn vm_ram(id: u64) -> Option<(u64, u64)> {
        match id {
            1 | 2 => Some(RAM),
            3 => Some((0x4000_0000, 2 << 20)),
            _ => None,
        }
    }

    fn decode_as(id: u64, ram: (u64, u64), fid: u32, a: [u64; 6]) -> Result<Call, SmcccError> {
        decode(fid, a, &Caller { id, ram, vm_ram: &vm_ram })
    }

    fn call(n: u32, a: [u64; 6]) -> Result<Call, SmcccError> {
        decode_as(1, RAM, HYP_BASE + n, a)
    }

    #[test]
    fn good_calls() {
        assert_eq!(call(0, [0; 6]), Ok(Call::Version));
        assert_eq!(call(1, [0, 7, 0, 0, 0, 0]), Ok(Call::Report { pass: true, test: 7, code: 0 }));
        assert_eq!(call(2, [13, 0, 0, 0, 0, 0]), Ok(Call::Stat(Stat::ExternalAborts)));
        assert_eq!(
            call(3, [0x4010_0000, 0x2000, 0, 0, 0, 0]),
            Ok(Call::Unmap { ipa: 0x4010_0000, size: 0x2000 })
        );
        // The last page of RAM.
        let last = 0x4000_0000 + (128 << 20) - 4096;
        assert_eq!(call(4, [last, 9, 0, 0, 0, 0]), Ok(Call::Remap { ipa: last, pattern: 9 }));
        assert_eq!(
            call(5, [0x4000_0000, 4096, 0b101, 0, 0, 0]),
            Ok(Call::Protect { ipa: 0x4000_0000, size: 4096, perms: 5 })
        );
        assert_eq!(call(6, [1, 0, 0, 0, 0, 0]), Ok(Call::SetPolicy(1)));
        assert_eq!(
            call(7, [0x4020_0000, 0, 0, 0, 0, 0]),
            Ok(Call::Collapse { ipa: 0x4020_0000, level: 2 })
        );
        assert_eq!(
            call(8, [0x4020_0000, 2, 0, 0, 0, 0]),
            Ok(Call::Split { ipa: 0x4020_0000, level: 2 })
        );
        // 1 GiB: aligned, and inside RAM (128 MiB here: never).
        assert_eq!(call(7, [0x4000_0000, 1, 0, 0, 0, 0]), Err(SmcccError::InvalidParameter));
        assert_eq!(
            decode_as(1, (0x4000_0000, 2 << 30), HYP_BASE + 7, [0x8000_0000, 1, 0, 0, 0, 0]),
            Ok(Call::Collapse { ipa: 0x8000_0000, level: 1 })
        );
        assert_eq!(call(8, [0x4020_0000, 3, 0, 0, 0, 0]), Err(SmcccError::InvalidParameter));
        assert_eq!(
            call(0x0b, [0x4020_0000, 0x20_0000, 0, 0, 0, 0]),
            Ok(Call::DirtyCount { ipa: 0x4020_0000, size: 0x20_0000 })
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        let bad = SmcccError::InvalidParameter;
        // Unaligned, empty, outside RAM, wrapping, past the end.
        assert_eq!(call(3, [0x4000_0001, 4096, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(3, [0x4000_0000, 100, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(3, [0x4000_0000, 0, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(3, [0x3fff_f000, 4096, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(3, [0xffff_ffff_ffff_f000, 0x2000, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(3, [0x4000_0000, (128 << 20) + 4096, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(4, [0x4000_0000 + (128 << 20), 0, 0, 0, 0, 0]), Err(bad));
        // Unknown permission bits; write without read.
        assert_eq!(call(5, [0x4000_0000, 4096, 8, 0, 0, 0]), Err(bad));
        assert_eq!(call(5, [0x4000_0000, 4096, 2, 0, 0, 0]), Err(bad));
        assert_eq!(call(2, [Stat::ALL.len() as u64, 0, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(2, [u64::MAX, 0, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(6, [3, 0, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(0x0b, [0x4000_0001, 4096, 0, 0, 0, 0]), Err(bad));
        // Collapse/split: 2 MiB aligned, whole block in RAM.
        assert_eq!(call(7, [0x4020_1000, 0, 0, 0, 0, 0]), Err(bad));
        assert_eq!(call(8, [0x4000_0000 + (128 << 20), 0, 0, 0, 0, 0]), Err(bad));
        // The first function past the last one (HYP_YIELD, 0x10).
        assert_eq!(call(0x10, [0; 6]), Ok(Call::Yield));
        assert_eq!(call(0x11, [0; 6]), Err(SmcccError::NotSupported));
        assert_eq!(decode_as(1, RAM, 0xC600_1000, [0; 6]), Err(SmcccError::NotSupported));
        assert_eq!(SmcccError::InvalidParameter.code(), (-3i64) as u64);
        assert_eq!(SmcccError::NoMemory.code(), (-4i64) as u64);
    }

    #[test]
    fn alias_and_share() {
        let (a, b) = (0x4100_0000, 0x4110_0000);
        assert_eq!(call(9, [a, b, 0, 0, 0, 0]), Ok(Call::Alias { src: a, dst: b }));
        let last = 0x4000_0000 + (128 << 20) - 4096;
        assert_eq!(call(9, [last, a, 0, 0, 0, 0]), Ok(Call::Alias { src: last, dst: a }));
        assert_eq!(call(0x0a, [a, 2, 0, 0, 0, 0]), Ok(Call::Share { src: a, vm: 2 }));
        // VM 2 offers to VM 1.
        assert_eq!(
            decode_as(2, RAM, HYP_BASE + 0x0a, [a, 1, 0, 0, 0, 0]),
            Ok(Call::Share { src: a, vm: 1 })
        );
        let h = Handle(0x0020_0001);
        assert_eq!(
            call(0x0c, [u64::from(h.0), b, 0, 0, 0, 0]),
            Ok(Call::Accept { handle: h, dst: b })
        );
        assert_eq!(call(0x0d, [u64::from(h.0), 0, 0, 0, 0, 0]), Ok(Call::Revoke(h)));
        assert_eq!(call(0x0e, [u64::from(h.0), 0, 0, 0, 0, 0]), Ok(Call::Relinquish(h)));
        assert_eq!(call(0x0f, [3, 0, 0, 0, 0, 0]), Ok(Call::Offered(3)));
    }

    #[test]
    fn bad_alias_and_share_arguments_are_refused() {
        let bad = Err(SmcccError::InvalidParameter);
        let (a, b) = (0x4100_0000u64, 0x4110_0000u64);
        let end = 0x4000_0000 + (128 << 20);
        // The same page twice; unaligned; outside RAM; past the end; wrapping.
        assert_eq!(call(9, [a, a, 0, 0, 0, 0]), bad);
        assert_eq!(call(9, [a + 8, b, 0, 0, 0, 0]), bad);
        assert_eq!(call(9, [a, b + 0x800, 0, 0, 0, 0]), bad);
        assert_eq!(call(9, [0x3fff_f000, b, 0, 0, 0, 0]), bad);
        assert_eq!(call(9, [a, end, 0, 0, 0, 0]), bad);
        assert_eq!(call(9, [!0xfff_u64, b, 0, 0, 0, 0]), bad);
        // Share: with itself, with a VM that does not exist (0, 4, huge),
        // a source outside the caller's RAM, unaligned; and an owner naming
        // the IPA in the other VM (the old, consentless form).
        assert_eq!(call(0x0a, [a, 1, 0, 0, 0, 0]), bad);
        for vm in [0, 4, u64::MAX] {
            assert_eq!(call(0x0a, [a, vm, 0, 0, 0, 0]), bad);
        }
        assert_eq!(call(0x0a, [end, 2, 0, 0, 0, 0]), bad);
        assert_eq!(call(0x0a, [a + 4, 2, 0, 0, 0, 0]), bad);
        assert_eq!(call(0x0a, [a, 2, b, 0, 0, 0]), bad, "the receiver names the IPA");
        // Accept: a value that cannot be a handle; a page outside the
        // caller's RAM or unaligned.
        assert_eq!(call(0x0c, [1 << 28, b, 0, 0, 0, 0]), bad);
        assert_eq!(call(0x0c, [u64::MAX, b, 0, 0, 0, 0]), bad);
        assert_eq!(call(0x0c, [0x0020_0001, end, 0, 0, 0, 0]), bad);
        assert_eq!(call(0x0c, [0x0020_0001, b + 4, 0, 0, 0, 0]), bad);
        assert_eq!(call(0x0d, [u64::MAX, 0, 0, 0, 0, 0]), bad);
        assert_eq!(call(0x0e, [1 << 40, 0, 0, 0, 0, 0]), bad);
    }

    #[test]
    fn smc32_calls_name_the_same_functions_with_32_bit_arguments() {
        let a = [0x1_4000_1000, 0x2000, 7, 0, 0, u64::MAX];
        let (fid, b) = smc64_form(HYP_BASE32 + 3, a);
        assert_eq!(fid, HYP_BASE + 3);
        assert_eq!(b, [0x4000_1000, 0x2000, 7, 0, 0, 0xffff_ffff]);
        // SMC64 ids and other services are left alone.
        assert_eq!(smc64_form(HYP_BASE + 3, a), (HYP_BASE + 3, a));
        assert_eq!(smc64_form(0x8400_0008, a), (0x8400_0008, a));
        // An SMC32 unmap decodes like the SMC64 one with the narrowed range.
        let (fid, b) = smc64_form(HYP_BASE32 + 3, [0x1_4010_0000, 0x2000, 0, 0, 0, 0]);
        assert_eq!(decode_as(1, RAM, fid, b), Ok(Call::Unmap { ipa: 0x4010_0000, size: 0x2000 }));
    }
}
