//! PSCI: the hypervisor's calls to the firmware, and the PSCI 1.1 the
//! hypervisor offers its guests ([`guest_call`], portable and tested on
//! the host).

use crate::machine::{EntryArg, Machine};
use crate::vm::{CpuOnError, Vcpu, VcpuPower};

/// `PSCI_VERSION`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_SUSPEND` (SMC32).
pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
/// `CPU_SUSPEND` (SMC64).
pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
/// `CPU_OFF`.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC64).
pub const CPU_ON_64: u32 = 0xC400_0003;
/// `CPU_ON` (SMC32).
pub const CPU_ON_32: u32 = 0x8400_0003;
/// `AFFINITY_INFO` (SMC64).
pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
/// `AFFINITY_INFO` (SMC32).
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
/// `MIGRATE` (SMC32).
pub const MIGRATE_32: u32 = 0x8400_0005;
/// `MIGRATE` (SMC64).
pub const MIGRATE_64: u32 = 0xC400_0005;
/// `MIGRATE_INFO_TYPE`.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// `MIGRATE_INFO_UP_CPU` (SMC32).
pub const MIGRATE_INFO_UP_CPU_32: u32 = 0x8400_0007;
/// `MIGRATE_INFO_UP_CPU` (SMC64).
pub const MIGRATE_INFO_UP_CPU_64: u32 = 0xC400_0007;
/// `SYSTEM_OFF`.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET`.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES`.
pub const FEATURES: u32 = 0x8400_000A;
/// `CPU_FREEZE`.
pub const CPU_FREEZE: u32 = 0x8400_000B;
/// `CPU_DEFAULT_SUSPEND` (SMC32).
pub const CPU_DEFAULT_SUSPEND_32: u32 = 0x8400_000C;
/// `CPU_DEFAULT_SUSPEND` (SMC64).
pub const CPU_DEFAULT_SUSPEND_64: u32 = 0xC400_000C;
/// `NODE_HW_STATE` (SMC32).
pub const NODE_HW_STATE_32: u32 = 0x8400_000D;
/// `NODE_HW_STATE` (SMC64).
pub const NODE_HW_STATE_64: u32 = 0xC400_000D;
/// `SYSTEM_SUSPEND` (SMC32).
pub const SYSTEM_SUSPEND_32: u32 = 0x8400_000E;
/// `SYSTEM_SUSPEND` (SMC64).
pub const SYSTEM_SUSPEND_64: u32 = 0xC400_000E;
/// `PSCI_SET_SUSPEND_MODE`.
pub const SET_SUSPEND_MODE: u32 = 0x8400_000F;
/// `PSCI_STAT_RESIDENCY` (SMC32).
pub const STAT_RESIDENCY_32: u32 = 0x8400_0010;
/// `PSCI_STAT_RESIDENCY` (SMC64).
pub const STAT_RESIDENCY_64: u32 = 0xC400_0010;
/// `PSCI_STAT_COUNT` (SMC32).
pub const STAT_COUNT_32: u32 = 0x8400_0011;
/// `PSCI_STAT_COUNT` (SMC64).
pub const STAT_COUNT_64: u32 = 0xC400_0011;
/// `SYSTEM_RESET2` (SMC32).
pub const SYSTEM_RESET2_32: u32 = 0x8400_0012;
/// `SYSTEM_RESET2` (SMC64).
pub const SYSTEM_RESET2_64: u32 = 0xC400_0012;
/// `MEM_PROTECT`.
pub const MEM_PROTECT: u32 = 0x8400_0013;
/// `MEM_PROTECT_CHECK_RANGE` (SMC32).
pub const MEM_PROTECT_CHECK_RANGE_32: u32 = 0x8400_0014;
/// `MEM_PROTECT_CHECK_RANGE` (SMC64).
pub const MEM_PROTECT_CHECK_RANGE_64: u32 = 0xC400_0014;

/// What `PSCI_VERSION` answers guests: 1.1 (major in bits 31:16, minor
/// in bits 15:0).
pub const GUEST_VERSION: i64 = 0x0001_0001;

/// PSCI `SUCCESS`.
pub const SUCCESS: i64 = 0;
/// PSCI `NOT_SUPPORTED`.
pub const NOT_SUPPORTED: i64 = -1;
/// PSCI `INVALID_PARAMETERS`.
pub const INVALID_PARAMETERS: i64 = -2;
/// PSCI `ALREADY_ON`.
pub const ALREADY_ON: i64 = -4;
/// PSCI `ON_PENDING`.
pub const ON_PENDING: i64 = -5;
/// PSCI `INTERNAL_FAILURE`.
pub const INTERNAL_FAILURE: i64 = -6;
/// PSCI `INVALID_ADDRESS`.
pub const INVALID_ADDRESS: i64 = -9;

/// `MIGRATE_INFO_TYPE`: no trusted OS that needs migrating.
const NO_TRUSTED_OS: i64 = 2;

/// `SYSTEM_RESET2`'s one architectural reset type, `SYSTEM_WARM_RESET`.
pub const SYSTEM_WARM_RESET: u32 = 0;
/// `SYSTEM_RESET2` `reset_type` bit 31: a vendor-specific reset type
/// (clear: an architectural one).
pub const RESET_TYPE_VENDOR: u32 = 1 << 31;

/// The PSCI functions the hypervisor implements for guests, each with
/// what `PSCI_FEATURES` answers for it: 0, or the function's feature flags.
///
/// `CPU_SUSPEND`'s flags are 0: bit 1 clear, `power_state` is in the
/// original format (not the extended StateID one); bit 0 clear, no
/// OS-initiated mode (platform-coordinated only).
const GUEST_FUNCTIONS: [(u32, i64); 14] = [
    (VERSION, 0),
    (CPU_SUSPEND_32, 0),
    (CPU_SUSPEND_64, 0),
    (CPU_OFF, 0),
    (CPU_ON_32, 0),
    (CPU_ON_64, 0),
    (AFFINITY_INFO_32, 0),
    (AFFINITY_INFO_64, 0),
    (MIGRATE_INFO_TYPE, 0),
    (SYSTEM_OFF, 0),
    (SYSTEM_RESET, 0),
    (FEATURES, 0),
    (SYSTEM_RESET2_32, 0),
    (SYSTEM_RESET2_64, 0),
];

/// What `PSCI_FEATURES` answers a guest asking about function `fid`:
/// [`GUEST_FUNCTIONS`]' entry for a PSCI function the hypervisor
/// implements, `SUCCESS` for `SMCCC_VERSION` (SMCCC makes it
/// discoverable this way), `NOT_SUPPORTED` for anything else (every other
/// PSCI 1.1 function included).
pub fn guest_features(fid: u32) -> i64 {
    if fid == crate::hypercall::SMCCC_VERSION {
        return SUCCESS;
    }
    GUEST_FUNCTIONS.iter().find(|&&(f, _)| f == fid).map_or(NOT_SUPPORTED, |&(_, flags)| flags)
}

/// How the firmware is called.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Conduit {
    /// `SMC #0`.
    Smc,
    /// `HVC #0` (only below a higher hypervisor).
    Hvc,
}

/// What a guest's PSCI call comes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// The call returns this in `x0`.
    Return(i64),
    /// The calling vCPU stops (`CPU_OFF`, `SYSTEM_OFF`, `SYSTEM_RESET`,
    /// `SYSTEM_RESET2`): the call does not return.
    Stop,
    /// The calling vCPU enters a standby state (`CPU_SUSPEND`): it waits
    /// for an interrupt exactly as a trapped `WFI` makes it wait, and the
    /// call then returns `SUCCESS`.
    Standby,
}

/// The `target_cpu` argument of `CPU_ON` and `AFFINITY_INFO`: an affinity
/// in `MPIDR_EL1`'s layout (Arm ARM, DDI 0487; PSCI, DEN 0022).
#[allow(missing_docs, non_camel_case_types)]
mod target_cpu {
    use tock_registers::register_bitfields;

    register_bitfields! {u64,
        /// `target_cpu`: `MPIDR_EL1`'s affinity fields (the rest zero).
        pub TARGET_CPU [
            /// `Aff0` [7:0]: affinity level 0 (a vCPU's index here).
            Aff0 OFFSET(0) NUMBITS(8) [],
            /// `Aff1` [15:8]: affinity level 1.
            Aff1 OFFSET(8) NUMBITS(8) [],
            /// `Aff2` [23:16]: affinity level 2.
            Aff2 OFFSET(16) NUMBITS(8) [],
            /// `Aff3` [39:32]: affinity level 3.
            Aff3 OFFSET(32) NUMBITS(8) []
        ]
    }
}
use target_cpu::TARGET_CPU;

/// `CPU_SUSPEND`'s `power_state` in PSCI's original format (DEN 0022,
/// "power_state parameter"), the one `PSCI_FEATURES` advertises.
#[allow(missing_docs, non_camel_case_types)]
mod power_state {
    use tock_registers::register_bitfields;

    register_bitfields! {u32,
        /// `power_state`, original format. Every bit not named here is
        /// reserved and must be zero.
        pub POWER_STATE [
            /// `StateID` [15:0]: the implementation's name for the state.
            StateId OFFSET(0) NUMBITS(16) [],
            /// `StateType` [16]: standby or retention (0), powerdown (1).
            StateType OFFSET(16) NUMBITS(1) [],
            /// `PowerLevel` [25:24]: the highest affinity level the
            /// state applies to (0: the core alone).
            PowerLevel OFFSET(24) NUMBITS(2) []
        ]
    }
}
use power_state::POWER_STATE;

/// The bits of an original-format `power_state` that have a meaning.
const POWER_STATE_DEFINED: u32 = POWER_STATE::StateId::SET.value
    | POWER_STATE::StateType::SET.value
    | POWER_STATE::PowerLevel::SET.value;

/// Checks a `CPU_SUSPEND` request of `vcpu`: `power_state` (32 bits, the
/// register's upper half ignored as for any 32-bit PSCI parameter) and,
/// for a powerdown request, its entry point.
///
/// Every valid state is entered as a standby state: the vCPU waits for an
/// interrupt as `WFI` does and the call returns `SUCCESS`. A powerdown
/// request (`StateType` 1) is accepted and served the same way: PSCI lets
/// an implementation enter a shallower state than the one asked for, and
/// a caller of a powerdown state must handle the call returning (a
/// wake-up event may be pending already); its registers and memory are
/// all still there. Its `entry_point_address` must nevertheless lie in
/// RAM, as it must for `CPU_ON` (`INVALID_ADDRESS` otherwise), since a
/// firmware that did power the core down would resume there. Any
/// `PowerLevel` is accepted: in platform-coordinated mode a request at a
/// higher level is the caller's vote, and while other vCPUs are on only
/// the caller's own level may be entered, which is all a standby touches.
/// Reserved bits set: `INVALID_PARAMETERS`.
fn suspend<M: Machine>(vcpu: &Vcpu<M>, power_state: u64, entry: u64) -> Outcome {
    let state = power_state as u32;
    if state & !POWER_STATE_DEFINED != 0 {
        return Outcome::Return(INVALID_PARAMETERS);
    }
    if POWER_STATE::StateType.is_set(state) && !vcpu.vm.in_ram(entry & !3, 4) {
        return Outcome::Return(INVALID_ADDRESS);
    }
    Outcome::Standby
}

/// `SYSTEM_RESET2` with `reset_type` (32 bits): the architectural
/// `SYSTEM_WARM_RESET` resets the VM as `SYSTEM_RESET` does (a VM's reset
/// keeps nothing of its RAM either way: PSCI leaves what a warm reset
/// preserves to the platform). Other architectural types are reserved
/// (`INVALID_PARAMETERS`); the hypervisor defines no vendor-specific
/// types (`NOT_SUPPORTED`). `cookie` only has a meaning for vendor types.
fn reset2<M: Machine>(vcpu: &Vcpu<M>, reset_type: u64) -> Outcome {
    let reset_type = reset_type as u32;
    if reset_type & RESET_TYPE_VENDOR != 0 {
        Outcome::Return(NOT_SUPPORTED)
    } else if reset_type != SYSTEM_WARM_RESET {
        Outcome::Return(INVALID_PARAMETERS)
    } else {
        let vm = vcpu.vm;
        vm.machine().print(format_args!("vm{}: SYSTEM_RESET2 (warm)\n", vm.id));
        vm.request_reset();
        Outcome::Stop
    }
}

/// The vCPU of `vcpu`'s VM that MPIDR value `mpidr` names: affinity
/// level 0 is the index, the higher levels (and every other bit) are zero.
fn target<M: Machine>(vcpu: &Vcpu<M>, mpidr: u64) -> Option<&'static Vcpu<M>> {
    let index = TARGET_CPU::Aff0.read(mpidr);
    if TARGET_CPU::Aff0.val(index).value != mpidr {
        return None;
    }
    vcpu.vm.vcpus().get(index as usize).copied()
}

/// A guest's PSCI call `fid` with arguments `a` (`x1..x3`), made by
/// `vcpu`. Never waits for another vCPU: a running vCPU's state is never
/// touched (`CPU_ON` of it is `ALREADY_ON`, of the caller too).
pub fn guest_call<M: Machine>(vcpu: &'static Vcpu<M>, fid: u32, a: [u64; 3]) -> Outcome {
    let vm = vcpu.vm;
    let smc32 = fid & (1 << 30) == 0;
    // SMC32 arguments are the registers' low halves.
    let a = if smc32 { a.map(|v| v & 0xffff_ffff) } else { a };
    Outcome::Return(match fid {
        VERSION => GUEST_VERSION,
        // The argument is a 32-bit function id.
        FEATURES => guest_features(a[0] as u32),
        CPU_SUSPEND_32 | CPU_SUSPEND_64 => return suspend(vcpu, a[0], a[1]),
        CPU_ON_64 | CPU_ON_32 => {
            let (entry, context) = (a[1], EntryArg::Context(a[2]));
            match target(vcpu, a[0]) {
                None => INVALID_PARAMETERS,
                Some(_) if !vm.in_ram(entry & !3, 4) => INVALID_ADDRESS,
                Some(t) => match vm.start_vcpu(t.index, entry, context) {
                    Ok(()) => SUCCESS,
                    Err(CpuOnError::AlreadyOn) => ALREADY_ON,
                    Err(CpuOnError::OnPending) => ON_PENDING,
                    Err(CpuOnError::NotRunning) => INTERNAL_FAILURE,
                },
            }
        }
        AFFINITY_INFO_64 | AFFINITY_INFO_32 => match (target(vcpu, a[0]), a[1]) {
            (Some(t), 0) => match t.power() {
                VcpuPower::On => 0,
                VcpuPower::Off => 1,
                VcpuPower::OnPending => 2,
            },
            _ => INVALID_PARAMETERS,
        },
        MIGRATE_INFO_TYPE => NO_TRUSTED_OS,
        CPU_OFF => return Outcome::Stop,
        SYSTEM_OFF => {
            vm.machine().print(format_args!("vm{}: SYSTEM_OFF\n", vm.id));
            vm.power_off();
            return Outcome::Stop;
        }
        SYSTEM_RESET => {
            vm.machine().print(format_args!("vm{}: SYSTEM_RESET\n", vm.id));
            vm.request_reset();
            return Outcome::Stop;
        }
        SYSTEM_RESET2_32 | SYSTEM_RESET2_64 => return reset2(vcpu, a[0]),
        // MIGRATE and MIGRATE_INFO_UP_CPU (meaningless with no trusted OS),
        // CPU_FREEZE, CPU_DEFAULT_SUSPEND, NODE_HW_STATE, SYSTEM_SUSPEND,
        // PSCI_SET_SUSPEND_MODE, PSCI_STAT_*, MEM_PROTECT*, and ids PSCI
        // does not define.
        _ => NOT_SUPPORTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls;
    use crate::hypercall::{self, Stat};
    use crate::platform::Coherency;
    use crate::testing::{boot_vms, HostMachine};
    use crate::vm::{VmPower, IMAGE_IPA, RAM_BASE};

    const MB: u64 = 1 << 20;

    /// One VM of `vcpus` vCPUs and 4 MiB of RAM; its vCPU 0, running.
    fn running_vcpu0(vcpus: usize) -> &'static Vcpu<HostMachine> {
        let m = HostMachine::new(64 * MB, 256);
        let (guests, _) = boot_vms(m, 1, vcpus, 4 * MB, Coherency::Nc);
        guests.next_runnable().expect("vCPU 0 queued")
    }

    fn ret(r: i64) -> Outcome {
        Outcome::Return(r)
    }

    /// Every id in PSCI's two ranges (SMCCC gives it 0x00..=0x1f of each).
    fn all_psci_ids() -> impl Iterator<Item = u32> {
        (0x8400_0000..=0x8400_001f).chain(0xc400_0000..=0xc400_001f)
    }

    #[test]
    fn version_is_1_1() {
        let v0 = running_vcpu0(1);
        assert_eq!(guest_call(v0, VERSION, [0; 3]), ret(0x0001_0001));
        // Bits [31:16] major, [15:0] minor.
        assert_eq!((GUEST_VERSION >> 16, GUEST_VERSION & 0xffff), (1, 1));
    }

    #[test]
    fn features_lists_exactly_what_exists() {
        let v0 = running_vcpu0(2);
        let implemented = [
            VERSION,
            CPU_SUSPEND_32,
            CPU_SUSPEND_64,
            CPU_OFF,
            CPU_ON_32,
            CPU_ON_64,
            AFFINITY_INFO_32,
            AFFINITY_INFO_64,
            MIGRATE_INFO_TYPE,
            SYSTEM_OFF,
            SYSTEM_RESET,
            FEATURES,
            SYSTEM_RESET2_32,
            SYSTEM_RESET2_64,
        ];
        for fid in all_psci_ids() {
            let want = if implemented.contains(&fid) { SUCCESS } else { NOT_SUPPORTED };
            let a = [u64::from(fid), 0, 0];
            assert_eq!(guest_call(v0, FEATURES, a), ret(want), "PSCI_FEATURES({fid:#x})");
        }
        // CPU_SUSPEND: original power_state format, no OS-initiated mode.
        assert_eq!(guest_features(CPU_SUSPEND_32), 0);
        assert_eq!(guest_features(CPU_SUSPEND_64), 0);
        // SMCCC_VERSION is discovered through PSCI_FEATURES; other SMCCC
        // calls, the hypervisor's service and junk are not PSCI's to list.
        for (fid, want) in [
            (hypercall::SMCCC_VERSION, SUCCESS),
            (hypercall::SMCCC_ARCH_FEATURES, NOT_SUPPORTED),
            (hypercall::SMCCC_ARCH_WORKAROUND_1, NOT_SUPPORTED),
            (hypercall::HYP_BASE, NOT_SUPPORTED),
            (0, NOT_SUPPORTED),
            (u32::MAX, NOT_SUPPORTED),
        ] {
            assert_eq!(guest_call(v0, FEATURES, [u64::from(fid), 0, 0]), ret(want), "{fid:#x}");
        }
        // The function id is 32 bits (an SMC32 call): the upper half of the
        // register is ignored.
        let a = [u64::from(SYSTEM_RESET2_64) | (0xdead << 32), 0, 0];
        assert_eq!(guest_call(v0, FEATURES, a), ret(SUCCESS));
        // PSCI_FEATURES itself exists in the SMC32 convention only.
        assert_eq!(
            guest_call(v0, FEATURES | (1 << 30), [u64::from(VERSION), 0, 0]),
            ret(NOT_SUPPORTED)
        );
    }

    /// What PSCI_FEATURES calls absent is absent: calling it answers
    /// NOT_SUPPORTED and changes nothing.
    #[test]
    fn every_function_features_calls_absent_is_not_supported() {
        let v0 = running_vcpu0(2);
        let absent: alloc::vec::Vec<u32> =
            all_psci_ids().filter(|&f| guest_features(f) == NOT_SUPPORTED).collect();
        // PSCI 1.1's optional functions the hypervisor leaves out, by name.
        for fid in [
            MIGRATE_32,
            MIGRATE_64,
            MIGRATE_INFO_UP_CPU_32,
            MIGRATE_INFO_UP_CPU_64,
            CPU_FREEZE,
            CPU_DEFAULT_SUSPEND_32,
            CPU_DEFAULT_SUSPEND_64,
            NODE_HW_STATE_32,
            NODE_HW_STATE_64,
            SYSTEM_SUSPEND_32,
            SYSTEM_SUSPEND_64,
            SET_SUSPEND_MODE,
            STAT_RESIDENCY_32,
            STAT_RESIDENCY_64,
            STAT_COUNT_32,
            STAT_COUNT_64,
            MEM_PROTECT,
            MEM_PROTECT_CHECK_RANGE_32,
            MEM_PROTECT_CHECK_RANGE_64,
        ] {
            assert!(absent.contains(&fid), "{fid:#x} is listed");
        }
        assert_eq!(absent.len(), 64 - 14);
        for fid in absent {
            for a in [[0; 3], [1, IMAGE_IPA, 0], [u64::MAX; 3]] {
                assert_eq!(guest_call(v0, fid, a), ret(NOT_SUPPORTED), "{fid:#x} {a:x?}");
            }
        }
        assert_eq!(v0.vm.power(), VmPower::Running);
        assert_eq!(v0.vm.vcpus()[1].power(), VcpuPower::Off);
    }

    #[test]
    fn migrate_info_type_says_no_trusted_os() {
        let v0 = running_vcpu0(1);
        assert_eq!(guest_call(v0, MIGRATE_INFO_TYPE, [0; 3]), ret(2));
        assert_eq!(guest_call(v0, MIGRATE_INFO_UP_CPU_64, [0; 3]), ret(NOT_SUPPORTED));
        assert_eq!(guest_call(v0, MIGRATE_64, [0; 3]), ret(NOT_SUPPORTED));
    }

    #[test]
    fn affinity_info_takes_level_0_and_a_vcpu_index_only() {
        let v0 = running_vcpu0(2);
        for fid in [AFFINITY_INFO_32, AFFINITY_INFO_64] {
            assert_eq!(guest_call(v0, fid, [0, 0, 0]), ret(0), "vCPU 0 is on");
            assert_eq!(guest_call(v0, fid, [1, 0, 0]), ret(1), "vCPU 1 is off");
            for level in [1, 2, 3, 4] {
                assert_eq!(guest_call(v0, fid, [0, level, 0]), ret(INVALID_PARAMETERS));
            }
            // No vCPU 2; affinity levels 1..3 and other bits are all zero.
            for mpidr in [2, 0x100, 0x1_0000, 0xff_0000, 1 << 31] {
                assert_eq!(guest_call(v0, fid, [mpidr, 0, 0]), ret(INVALID_PARAMETERS));
            }
        }
        // SMC32: the upper halves are ignored; SMC64: they count.
        assert_eq!(guest_call(v0, AFFINITY_INFO_32, [1 << 32, 1 << 32, 0]), ret(0));
        assert_eq!(guest_call(v0, AFFINITY_INFO_64, [1 << 32, 0, 0]), ret(INVALID_PARAMETERS));
        assert_eq!(guest_call(v0, AFFINITY_INFO_64, [0, 1 << 32, 0]), ret(INVALID_PARAMETERS));
    }

    #[test]
    fn cpu_suspend_is_a_standby_for_every_valid_power_state() {
        let v0 = running_vcpu0(2);
        let end = RAM_BASE + 4 * MB;
        // StateID anything, PowerLevel 0..3, standby (bit 16 clear): the
        // entry point is not used.
        let powerdown = 1 << 16;
        for fid in [CPU_SUSPEND_32, CPU_SUSPEND_64] {
            for state in [0, 0xffff, 0x0100_0000, 0x0300_1234] {
                assert_eq!(guest_call(v0, fid, [state, 0, 0]), Outcome::Standby, "{state:#x}");
                assert_eq!(guest_call(v0, fid, [state, end, 0]), Outcome::Standby, "{state:#x}");
                // A powerdown request is served as a standby too, if its
                // entry point is one CPU_ON would take.
                let pd = state | powerdown;
                assert_eq!(guest_call(v0, fid, [pd, IMAGE_IPA, 7]), Outcome::Standby, "{pd:#x}");
                assert_eq!(guest_call(v0, fid, [pd, IMAGE_IPA | 1, 7]), Outcome::Standby);
                for bad in [0, RAM_BASE - 4, end, u64::from(u32::MAX) - 3] {
                    let r = guest_call(v0, fid, [pd, bad, 0]);
                    assert_eq!(r, ret(INVALID_ADDRESS), "{pd:#x} at {bad:#x}");
                }
            }
            // Each reserved bit ([23:17], [31:26]) on its own.
            for bit in (17..=23).chain(26..=31) {
                let state = 1u64 << bit;
                let r = guest_call(v0, fid, [state, IMAGE_IPA, 0]);
                assert_eq!(r, ret(INVALID_PARAMETERS), "bit {bit}");
            }
        }
        assert_eq!(POWER_STATE_DEFINED, 0x0301_ffff);
        // power_state is 32 bits in either convention; the entry point is
        // 64 bits in SMC64 (outside RAM here) and cut to 32 in SMC32.
        let pd = (1 << 32) | powerdown;
        assert_eq!(guest_call(v0, CPU_SUSPEND_64, [pd, IMAGE_IPA, 0]), Outcome::Standby);
        let far = IMAGE_IPA | (1 << 32);
        assert_eq!(guest_call(v0, CPU_SUSPEND_64, [powerdown, far, 0]), ret(INVALID_ADDRESS));
        assert_eq!(guest_call(v0, CPU_SUSPEND_32, [powerdown, far, 0]), Outcome::Standby);
        // Nothing changed: the caller is on, nothing else started.
        assert_eq!(v0.power(), VcpuPower::On);
        assert_eq!(v0.vm.vcpus()[1].power(), VcpuPower::Off);
        assert_eq!(v0.vm.power(), VmPower::Running);
    }

    /// Through the SMCCC dispatcher: a standby is a wait for an interrupt
    /// with x0 = SUCCESS, not a refused call.
    #[test]
    fn cpu_suspend_waits_for_an_interrupt_then_returns_success() {
        let v0 = running_vcpu0(1);
        for fid in [CPU_SUSPEND_32, CPU_SUSPEND_64] {
            let o = calls::dispatch(v0, fid, [0, 0, 0, 0, 0, 0]);
            assert_eq!(o, calls::Outcome::WaitForInterrupt { x0: 0 });
        }
        assert_eq!(v0.vm.stat(Stat::CallsRefused), 0);
        let o = calls::dispatch(v0, CPU_SUSPEND_64, [1 << 17, 0, 0, 0, 0, 0]);
        assert_eq!(o, calls::Outcome::Return { x0: INVALID_PARAMETERS as u64, more: None });
        assert_eq!(v0.vm.stat(Stat::CallsRefused), 1);
    }

    #[test]
    fn system_reset2_warm_resets_the_vm_and_refuses_other_types() {
        for fid in [SYSTEM_RESET2_32, SYSTEM_RESET2_64] {
            let v0 = running_vcpu0(1);
            let vm = v0.vm;
            // Reserved architectural types; vendor types (none defined).
            for (t, want) in [
                (1, INVALID_PARAMETERS),
                (0x7fff_ffff, INVALID_PARAMETERS),
                (0x8000_0000, NOT_SUPPORTED),
                (0x8000_0001, NOT_SUPPORTED),
                (0xffff_ffff, NOT_SUPPORTED),
            ] {
                assert_eq!(guest_call(v0, fid, [t, 0, 0]), ret(want), "{fid:#x} type {t:#x}");
            }
            assert_eq!(vm.power(), VmPower::Running, "a refused reset changes nothing");
            // reset_type is 32 bits: SYSTEM_WARM_RESET with junk above it
            // and any cookie.
            vm.machine().take_output();
            assert_eq!(guest_call(v0, fid, [1 << 32, 0x5a5a, 0]), Outcome::Stop);
            assert!(vm.machine().take_output().contains("SYSTEM_RESET2"));
            assert_eq!(vm.power(), VmPower::Resetting);
            // As SYSTEM_RESET: the last vCPU to stop resets it, vCPU 0
            // runs again.
            v0.stop();
            assert_eq!(vm.power(), VmPower::Running);
            assert_eq!(vm.vcpus()[0].power(), VcpuPower::On);
            assert_eq!(vm.guests.next_runnable().map(|v| v.index), Some(0));
        }
    }

    #[test]
    fn smccc_arch_features_answers_for_the_arm_architecture_calls() {
        let v0 = running_vcpu0(1);
        let arch = |fid: u64| match calls::dispatch(
            v0,
            hypercall::SMCCC_ARCH_FEATURES,
            [fid, 0, 0, 0, 0, 0],
        ) {
            calls::Outcome::Return { x0, more: None } => x0 as i64,
            o => panic!("{o:?}"),
        };
        assert_eq!(arch(u64::from(hypercall::SMCCC_VERSION)), 0);
        assert_eq!(arch(u64::from(hypercall::SMCCC_ARCH_FEATURES)), 0);
        for fid in [
            hypercall::SMCCC_ARCH_WORKAROUND_1,
            hypercall::SMCCC_ARCH_WORKAROUND_2,
            hypercall::SMCCC_ARCH_WORKAROUND_3,
            hypercall::SMCCC_ARCH_SOC_ID,
            VERSION,
            hypercall::HYP_BASE,
            0,
        ] {
            assert_eq!(arch(u64::from(fid)), -1, "{fid:#x}");
        }
        // A 32-bit function id.
        assert_eq!(arch(u64::from(hypercall::SMCCC_VERSION) | (1 << 32)), 0);
        let o = calls::dispatch(v0, hypercall::SMCCC_VERSION, [0; 6]);
        assert_eq!(o, calls::Outcome::Return { x0: 0x1_0001, more: None });
    }

    /// SMCCC has no SMC64 calls from AArch32: an SMC64 id from there is an
    /// unknown function whatever it names, changes nothing, and
    /// `PSCI_FEATURES` does not list the SMC64 PSCI functions; the SMC32
    /// ones work as from AArch64.
    #[test]
    fn aarch32_callers_have_smc32_ids_only() {
        use calls::CallerState::{Aarch32, Aarch64};
        let v0 = running_vcpu0(2);
        let call = |state, fid: u32, a0: u64, a1: u64| match calls::dispatch_from(
            v0,
            state,
            fid,
            [a0, a1, 0, 0, 0, 0],
        ) {
            calls::Outcome::Return { x0, .. } => x0 as i64,
            o => panic!("{fid:#x}: {o:?}"),
        };
        for fid in all_psci_ids().filter(|f| f & (1 << 30) != 0) {
            let features = call(Aarch32, FEATURES, u64::from(fid), 0);
            assert_eq!(features, NOT_SUPPORTED, "PSCI_FEATURES({fid:#x}) from AArch32");
            // Arguments each of which the call would act on or answer
            // otherwise: vCPU 1, an entry in RAM, a reserved power state.
            for a0 in [1, 1 << 17] {
                assert_eq!(call(Aarch32, fid, a0, IMAGE_IPA), NOT_SUPPORTED, "{fid:#x}({a0:#x})");
            }
        }
        for fid in [hypercall::HYP_BASE, hypercall::HYP_BASE + 2] {
            assert_eq!(call(Aarch32, fid, 0, 0), NOT_SUPPORTED, "{fid:#x}");
        }
        assert_eq!(v0.vm.vcpus()[1].power(), VcpuPower::Off, "nothing started");
        assert_eq!(v0.vm.power(), VmPower::Running);
        // The SMC32 forms, and SMCCC's own calls, answer as from AArch64.
        for (fid, a0) in [
            (CPU_ON_32, 9),
            (AFFINITY_INFO_32, 1),
            (SYSTEM_RESET2_32, 1),
            (MIGRATE_INFO_TYPE, 0),
            (FEATURES, u64::from(CPU_ON_32)),
            (FEATURES, u64::from(hypercall::SMCCC_VERSION)),
            (hypercall::SMCCC_VERSION, 0),
            (hypercall::SMCCC_ARCH_FEATURES, u64::from(hypercall::SMCCC_VERSION)),
            (hypercall::HYP_BASE32, 0),
        ] {
            let want = call(Aarch64, fid, a0, IMAGE_IPA);
            assert_eq!(call(Aarch32, fid, a0, IMAGE_IPA), want, "{fid:#x}({a0:#x})");
        }
        // From AArch64 the SMC64 ids work.
        assert_eq!(call(Aarch64, FEATURES, u64::from(CPU_ON_64), 0), SUCCESS);
        assert_eq!(call(Aarch64, AFFINITY_INFO_64, 1, 0), 1);
        assert_eq!(call(Aarch64, hypercall::HYP_BASE, 0, 0), 0x1_0000);
    }

    #[test]
    fn target_cpu_is_an_mpidr_affinity() {
        // Aff3 1, Aff2 2, Aff1 3, Aff0 4, hand-encoded.
        let mpidr = 0x01_0002_0304;
        assert_eq!(TARGET_CPU::Aff0.read(mpidr), 4);
        assert_eq!(TARGET_CPU::Aff1.read(mpidr), 3);
        assert_eq!(TARGET_CPU::Aff2.read(mpidr), 2);
        assert_eq!(TARGET_CPU::Aff3.read(mpidr), 1);
        assert_eq!(TARGET_CPU::Aff0.val(0x1ff).value, 0xff);
    }
}
