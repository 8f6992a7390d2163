//! PSCI: the hypervisor's calls to the firmware, and the PSCI the
//! hypervisor offers its guests.

/// `PSCI_VERSION`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_OFF`.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC64).
pub const CPU_ON_64: u32 = 0xC400_0003;
/// `CPU_ON` (SMC32).
pub const CPU_ON_32: u32 = 0x8400_0003;
/// `SYSTEM_OFF`.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET`.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES`.
pub const FEATURES: u32 = 0x8400_000A;

/// PSCI `SUCCESS`.
pub const SUCCESS: i64 = 0;
/// PSCI `NOT_SUPPORTED`.
pub const NOT_SUPPORTED: i64 = -1;
/// PSCI `INVALID_PARAMETERS`.
pub const INVALID_PARAMETERS: i64 = -2;
/// PSCI `ALREADY_ON`.
pub const ALREADY_ON: i64 = -4;

/// Whether `fid` is a PSCI function the hypervisor implements for guests.
pub fn guest_supports(fid: u32) -> bool {
    matches!(fid, VERSION | CPU_OFF | CPU_ON_64 | CPU_ON_32 | SYSTEM_OFF | SYSTEM_RESET | FEATURES)
}

/// How the firmware is called.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Conduit {
    /// `SMC #0`.
    Smc,
    /// `HVC #0` (only below a higher hypervisor).
    Hvc,
}
