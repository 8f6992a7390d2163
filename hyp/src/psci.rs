//! PSCI: the hypervisor's calls to the firmware, and the PSCI 1.1 the
//! hypervisor offers its guests ([`guest_call`], portable and tested on
//! the host).

use crate::machine::{EntryArg, Machine};
use crate::vm::{CpuOnError, Vcpu, VcpuPower};

/// `PSCI_VERSION`.
pub const VERSION: u32 = 0x8400_0000;
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
/// `MIGRATE_INFO_TYPE`.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
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
/// PSCI `ON_PENDING`.
pub const ON_PENDING: i64 = -5;
/// PSCI `INTERNAL_FAILURE`.
pub const INTERNAL_FAILURE: i64 = -6;
/// PSCI `INVALID_ADDRESS`.
pub const INVALID_ADDRESS: i64 = -9;

/// `MIGRATE_INFO_TYPE`: no trusted OS that needs migrating.
const NO_TRUSTED_OS: i64 = 2;

/// Whether `fid` is a PSCI function the hypervisor implements for guests.
pub fn guest_supports(fid: u32) -> bool {
    matches!(
        fid,
        VERSION
            | CPU_OFF
            | CPU_ON_64
            | CPU_ON_32
            | AFFINITY_INFO_64
            | AFFINITY_INFO_32
            | MIGRATE_INFO_TYPE
            | SYSTEM_OFF
            | SYSTEM_RESET
            | FEATURES
    )
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
    /// The calling vCPU stops (`CPU_OFF`, `SYSTEM_OFF`, `SYSTEM_RESET`):
    /// the call does not return.
    Stop,
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
        VERSION => 0x1_0001,
        FEATURES => {
            if guest_supports(a[0] as u32) {
                SUCCESS
            } else {
                NOT_SUPPORTED
            }
        }
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
        _ => NOT_SUPPORTED,
    })
}

#[cfg(test)]
mod tests {
    use super::TARGET_CPU;

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
