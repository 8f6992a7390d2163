//! The SMCCC calls a guest makes with `HVC #0` (or a trapped `SMC #0`):
//! SMCCC's own, PSCI, and the hypervisor's service (`hypercall`).
//! Portable: the trap glue hands it the registers, and the host tests fuzz
//! it with thousands of random and boundary calls.

use crate::hypercall::{self, Call, CallError, Caller, SmcccError};
use crate::machine::Machine;
use crate::psci;
use crate::vm::{Policy, Vcpu, VmStats, RAM_BASE};

/// `SMCCC_VERSION`: 1.1.
const SMCCC_1_1: u64 = 0x1_0001;

/// What the guest gets back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Resume after the call with `x0` (and `x1`, `x2` when given).
    Return {
        /// The result.
        x0: u64,
        /// Extra results.
        more: Option<[u64; 2]>,
    },
    /// The calling vCPU stops: the call does not return.
    Stop,
    /// Resume with `x0` = 0, after letting another vCPU run.
    Yield,
    /// Set `x0`, then treat the vCPU as a trapped `WFI` is treated: it
    /// waits for an interrupt (PSCI `CPU_SUSPEND` in a standby state).
    WaitForInterrupt {
        /// What the call returns once the vCPU is woken.
        x0: u64,
    },
}

impl Outcome {
    fn ret(x0: u64) -> Self {
        Outcome::Return { x0, more: None }
    }
}

/// The execution state a call was made from (SMCCC's calling conventions
/// depend on it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallerState {
    /// AArch64: SMC32 and SMC64 function ids.
    Aarch64,
    /// AArch32: SMC32 function ids only. SMCCC defines no SMC64 call from
    /// AArch32, whose registers are 32 bits: an SMC64 id is an unknown
    /// function (`NOT_SUPPORTED`, as Arm's firmware and KVM answer it), and
    /// `PSCI_FEATURES` says `NOT_SUPPORTED` of an SMC64 PSCI function.
    Aarch32,
}

/// Dispatches the call `fid` (the guest's `x0`, 32 bits) with arguments
/// `a` (`x1..x6`) made by `vcpu` from AArch64.
pub fn dispatch<M: Machine>(vcpu: &'static Vcpu<M>, fid: u32, a: [u64; 6]) -> Outcome {
    dispatch_from(vcpu, CallerState::Aarch64, fid, a)
}

/// Dispatches the call `fid` with arguments `a` made by `vcpu` from
/// execution state `state` (the exit's syndrome says which: `HVC32`,
/// `SMC32` or `HVC64`, `SMC64`).
pub fn dispatch_from<M: Machine>(
    vcpu: &'static Vcpu<M>,
    state: CallerState,
    fid: u32,
    a: [u64; 6],
) -> Outcome {
    if state == CallerState::Aarch32 {
        if fid & hypercall::SMC64_BIT != 0 {
            refused(vcpu, format_args!("SMC64 call {fid:#x} from AArch32 not supported"));
            return Outcome::ret(SmcccError::NotSupported.code());
        }
        if fid == psci::FEATURES && (a[0] as u32) & hypercall::SMC64_BIT != 0 {
            return Outcome::ret(psci::NOT_SUPPORTED as u64);
        }
    }
    let vm = vcpu.vm;
    let (fid, a) = hypercall::smc64_form(fid, a);
    match fid {
        hypercall::SMCCC_VERSION => Outcome::ret(SMCCC_1_1),
        hypercall::SMCCC_ARCH_FEATURES => Outcome::ret(arch_features(a[0] as u32)),
        0x8400_0000..=0x8400_001f | 0xc400_0000..=0xc400_001f => {
            match psci::guest_call(vcpu, fid, [a[0], a[1], a[2]]) {
                psci::Outcome::Return(r) => {
                    if r < 0 && fid != psci::FEATURES {
                        refused(vcpu, format_args!("PSCI {fid:#x} refused: {r}"));
                    }
                    Outcome::ret(r as u64)
                }
                psci::Outcome::Stop => Outcome::Stop,
                psci::Outcome::Standby => Outcome::WaitForInterrupt { x0: psci::SUCCESS as u64 },
            }
        }
        0xc600_0000..=0xc600_ffff => {
            let guests = vm.guests;
            let vm_ram = |id: u64| guests.vm(id).map(|v| (RAM_BASE, v.ram_size));
            let caller = Caller { id: vm.id as u64, ram: (RAM_BASE, vm.ram_size), vm_ram: &vm_ram };
            match hypercall::decode(fid, a, &caller) {
                Ok(c) => match hyp_call(vcpu, c) {
                    Ok(o) => o,
                    Err(e) => {
                        refused(vcpu, format_args!("hypercall {c:?} refused: {e}"));
                        Outcome::ret(e.code())
                    }
                },
                Err(e) => {
                    refused(vcpu, format_args!("hypercall {fid:#x} refused: {e:?}"));
                    Outcome::ret(e.code())
                }
            }
        }
        _ => {
            refused(vcpu, format_args!("call {fid:#x} not supported"));
            Outcome::ret(SmcccError::NotSupported.code())
        }
    }
}

/// What `SMCCC_ARCH_FEATURES` answers for the Arm architecture call `fid`
/// (a 32-bit id: the register's upper half is ignored). `SMCCC_VERSION`
/// and `SMCCC_ARCH_FEATURES` are implemented (0). The Spectre and SSBD
/// workarounds (`SMCCC_ARCH_WORKAROUND_1/2/3`) are `NOT_SUPPORTED`: the
/// hypervisor implements none of them (it would have to forward them to
/// the firmware and knows nothing of the host CPU's errata), and that
/// answer tells a guest only that the mitigation is not available this
/// way, never that it is not needed. `SMCCC_ARCH_SOC_ID` and everything
/// else: `NOT_SUPPORTED`.
pub fn arch_features(fid: u32) -> u64 {
    match fid {
        hypercall::SMCCC_VERSION | hypercall::SMCCC_ARCH_FEATURES => 0,
        // Named for the reader: the same answer as any unknown id.
        hypercall::SMCCC_ARCH_WORKAROUND_1
        | hypercall::SMCCC_ARCH_WORKAROUND_2
        | hypercall::SMCCC_ARCH_WORKAROUND_3
        | hypercall::SMCCC_ARCH_SOC_ID => SmcccError::NotSupported.code(),
        _ => SmcccError::NotSupported.code(),
    }
}

/// Counts a refused call and warns about it, rate-limited per VM.
fn refused<M: Machine>(vcpu: &Vcpu<M>, what: core::fmt::Arguments<'_>) {
    VmStats::bump(&vcpu.vm.stats.refused);
    vcpu.vm.warn(what);
}

/// Carries out a validated hypercall.
fn hyp_call<M: Machine>(vcpu: &'static Vcpu<M>, c: Call) -> Result<Outcome, CallError> {
    let vm = vcpu.vm;
    let done =
        |r: Result<(), crate::vm::Error>| r.map(|()| Outcome::ret(0)).map_err(CallError::from);
    match c {
        Call::Version => Ok(Outcome::ret(0x0001_0000)),
        Call::Yield => Ok(Outcome::Yield),
        Call::Report { pass, test, code } => {
            let m = vm.machine();
            if pass {
                m.print(format_args!("vm{}: test {test} PASS\n", vm.id));
            } else {
                m.print(format_args!("vm{}: test {test} FAIL (code {code:#x})\n", vm.id));
            }
            Ok(Outcome::ret(0))
        }
        Call::Stat(s) => Ok(Outcome::ret(vm.stat(s))),
        Call::Unmap { ipa, size } => done(vm.unmap(ipa, size)),
        Call::Remap { ipa, pattern } => done(vm.remap(ipa, pattern)),
        Call::Protect { ipa, size, perms } => done(vm.protect(ipa, size, perms)),
        Call::SetPolicy(p) => {
            // Checked by `decode`.
            vm.set_policy(Policy::from_abi(p).unwrap_or(Policy::Pages));
            Ok(Outcome::ret(0))
        }
        Call::DirtyCount { ipa, size } => Ok(Outcome::ret(vm.dirty_count(ipa, size)?)),
        Call::Collapse { ipa, level } => done(vm.collapse(ipa, level)),
        Call::Split { ipa, level } => done(vm.split(ipa, level)),
        Call::Alias { src, dst } => vm.alias(src, dst).map(|()| Outcome::ret(0)),
        Call::Share { src, vm: to } => {
            // Checked by `decode`; VMs are never removed.
            let to = vm.guests.vm(to).ok_or(CallError::Invalid("no such VM"))?;
            vm.offer(src, to).map(|h| Outcome::ret(u64::from(h.0)))
        }
        Call::Accept { handle, dst } => vm.accept(handle, dst).map(|()| Outcome::ret(0)),
        Call::Revoke(h) => vm.revoke(h).map(|()| Outcome::ret(0)),
        Call::Relinquish(h) => vm.relinquish(h).map(|()| Outcome::ret(0)),
        Call::Offered(n) => {
            // A guest polls this: "no such offer" is an answer, not a
            // refusal to warn about.
            let found = usize::try_from(n).ok().and_then(|n| vm.offered(n));
            let Some((h, owner, accepted)) = found else {
                return Ok(Outcome::ret(SmcccError::InvalidParameter.code()));
            };
            Ok(Outcome::Return {
                x0: u64::from(h.0),
                more: Some([owner as u64, u64::from(accepted)]),
            })
        }
    }
}
