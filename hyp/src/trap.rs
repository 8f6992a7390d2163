//! What to do when a guest exits: HVC/SMC (PSCI, hypercalls), WFI, and
//! stage-2 aborts (demand paging, the emulated PL011, dirty logging,
//! external aborts).

use core::sync::atomic::Ordering;

use mmu::Error;

use crate::cpu::{self, ec, EntryArg, Syndrome};
use crate::hypercall::{self, Call, Caller, SmcccError};
use crate::psci;
use crate::vm::{self, Policy, Vcpu, VcpuState, VcpuStatus, VmStats, RAM_BASE, UART_IPA};

/// What the run loop does next with the vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Enter the guest again.
    Resume,
    /// Let another vCPU run (WFI); this one stays runnable.
    Yield,
    /// The vCPU is off (PSCI CPU_OFF, SYSTEM_OFF, a fatal fault).
    Stop,
}

/// Handles a synchronous exit of `vcpu`, whose saved state is `st`.
pub fn handle_sync(vcpu: &'static Vcpu, st: &mut VcpuState) -> Action {
    let vm = vcpu.vm;
    VmStats::bump(&vm.stats.exits);
    let syn = cpu::syndrome();
    match syn.ec() {
        cpu::EC_HVC => call(vcpu, st),
        cpu::EC_SMC => {
            // A trapped SMC returns to the SMC itself: skip it, then treat it
            // as the same call an HVC would be.
            st.regs.skip(syn.insn_len());
            call(vcpu, st)
        }
        ec::WFX => {
            st.regs.skip(syn.insn_len());
            Action::Yield
        }
        ec::IABT_LOW | ec::DABT_LOW => abort(vcpu, st, syn),
        other => {
            log::error!(
                "vm{} vcpu{}: unhandled exit EC {other:#x} syndrome {:#x} at PC {:#x}: VM stopped",
                vm.id,
                vcpu.index,
                syn.0,
                st.regs.pc()
            );
            stop_vm(vcpu, st)
        }
    }
}

/// Stops the whole VM.
fn stop_vm(vcpu: &'static Vcpu, st: &mut VcpuState) -> Action {
    vcpu.vm.off.store(true, Ordering::SeqCst);
    st.status = VcpuStatus::Off;
    Action::Stop
}

/// An SMCCC call (HVC or trapped SMC): PSCI or a hypercall.
fn call(vcpu: &'static Vcpu, st: &mut VcpuState) -> Action {
    let vm = vcpu.vm;
    let r = &st.regs;
    let (fid, a) = hypercall::smc64_form(
        r.gpr(0) as u32,
        [r.gpr(1), r.gpr(2), r.gpr(3), r.gpr(4), r.gpr(5), r.gpr(6)],
    );
    let ret: u64 = match fid {
        hypercall::SMCCC_VERSION => 0x1_0001,
        hypercall::SMCCC_ARCH_FEATURES => SmcccError::NotSupported.code(),
        0x8400_0000..=0x8400_001f | 0xc400_0000..=0xc400_001f => return guest_psci(vcpu, st, fid),
        0xc600_0000..=0xc600_ffff => {
            let vm_ram = |id: u64| vm::find(id).map(|v| (RAM_BASE, v.ram_size));
            let caller = Caller { id: vm.id as u64, ram: (RAM_BASE, vm.ram_size), vm_ram: &vm_ram };
            match hypercall::decode(fid, a, &caller) {
                Ok(c) => hyp_call(vcpu, c),
                Err(e) => e.code(),
            }
        }
        _ => SmcccError::NotSupported.code(),
    };
    st.regs.set_gpr(0, ret);
    Action::Resume
}

/// Carries out a validated hypercall; returns `x0`.
fn hyp_call(vcpu: &'static Vcpu, c: Call) -> u64 {
    let vm = vcpu.vm;
    let done = |r: Result<(), Error>| match r {
        Ok(()) => 0,
        Err(e) => {
            let aliasing = matches!(c, Call::Alias { .. } | Call::Share { .. });
            if aliasing && e == Error::OutOfMemory {
                // mmu's wording ("table memory") would mislead here.
                log::warn!(
                    "vm{}: hypercall {c:?} failed: alias table, reverse map or frames full",
                    vm.id
                );
            } else {
                log::warn!("vm{}: hypercall {c:?} failed: {e}", vm.id);
            }
            match e {
                // A bounded table (alias table, reverse map) or memory ran out.
                Error::OutOfMemory => SmcccError::NoMemory.code(),
                _ => SmcccError::InvalidParameter.code(),
            }
        }
    };
    match c {
        Call::Version => 0x0001_0000,
        Call::Report { pass, test, code } => {
            if pass {
                crate::println!("vm{}: test {test} PASS", vm.id);
            } else {
                crate::println!("vm{}: test {test} FAIL (code {code:#x})", vm.id);
            }
            0
        }
        Call::Stat(s) => vm.stat(s),
        Call::Unmap { ipa, size } => done(vm.unmap(ipa, size)),
        Call::Remap { ipa, pattern } => done(vm.remap(ipa, pattern)),
        Call::Protect { ipa, size, perms } => done(vm.protect(ipa, size, perms)),
        Call::SetPolicy(p) => {
            vm.set_policy(match p {
                2 => Policy::Huge,
                1 => Policy::Blocks,
                _ => Policy::Pages,
            });
            0
        }
        Call::DirtyCount { ipa, size } => vm.dirty_count(ipa, size),
        Call::Collapse { ipa, level } => done(vm.collapse(ipa, level)),
        Call::Split { ipa, level } => done(vm.split(ipa, level)),
        Call::Alias { src, dst } => done(vm.alias(src, dst)),
        Call::Share { src, vm: target, dst } => match vm::find(target) {
            Some(t) => done(vm.share(src, t, dst)),
            // Checked by `decode`; VMs are never removed.
            None => SmcccError::InvalidParameter.code(),
        },
    }
}

/// PSCI for guests.
fn guest_psci(vcpu: &'static Vcpu, st: &mut VcpuState, fid: u32) -> Action {
    let vm = vcpu.vm;
    let ret: i64 = match fid {
        psci::VERSION => 0x1_0001,
        psci::FEATURES => {
            if psci::guest_supports(st.regs.gpr(1) as u32) {
                psci::SUCCESS
            } else {
                psci::NOT_SUPPORTED
            }
        }
        psci::CPU_ON_64 | psci::CPU_ON_32 => {
            let target = st.regs.gpr(1);
            let index = (target & 0xff) as usize;
            let (entry, context) = (st.regs.gpr(2), EntryArg::Context(st.regs.gpr(3)));
            if target & !0xff != 0 || index >= vm.vcpus().len() {
                psci::INVALID_PARAMETERS
            } else if vm.start_vcpu(index, entry, context) {
                psci::SUCCESS
            } else {
                psci::ALREADY_ON
            }
        }
        psci::CPU_OFF => {
            st.status = VcpuStatus::Off;
            return Action::Stop;
        }
        psci::SYSTEM_OFF => {
            crate::println!("vm{}: SYSTEM_OFF", vm.id);
            return stop_vm(vcpu, st);
        }
        psci::SYSTEM_RESET => {
            crate::println!("vm{}: SYSTEM_RESET", vm.id);
            // The last vCPU to stop restarts the VM (see the run loop).
            vm.reset_pending.store(true, Ordering::SeqCst);
            return stop_vm(vcpu, st);
        }
        _ => psci::NOT_SUPPORTED,
    };
    st.regs.set_gpr(0, ret as u64);
    Action::Resume
}

/// A stage-2 data or instruction abort.
fn abort(vcpu: &'static Vcpu, st: &mut VcpuState, syn: Syndrome) -> Action {
    let vm = vcpu.vm;
    let (iss, data) = (syn.iss(), syn.ec() == ec::DABT_LOW);
    let fsc = iss & 0x3f;
    let far = cpu::fault_va(syn.ec());
    // HPFAR gives the IPA's page, the VA its offset.
    let ipa = cpu::fault_ipa_page() | (far & 0xfff);
    let write = data && iss & (1 << 6) != 0;
    match fsc {
        // Translation fault, levels 0 to 3.
        0x04..=0x07 if vm.in_ram(ipa & !0xfff, 0x1000) => {
            VmStats::bump(&vm.stats.faults);
            // An alias (HYP_ALIAS, HYP_SHARE) maps its frame; anything else
            // gets fresh memory.
            match vm.fault_alias(ipa).unwrap_or_else(|| vm.populate(ipa)) {
                Ok(()) => {
                    vm.maybe_collapse(ipa);
                    Action::Resume
                }
                Err(e) => {
                    log::error!("vm{}: cannot populate IPA {ipa:#x}: {e}: VM stopped", vm.id);
                    stop_vm(vcpu, st)
                }
            }
        }
        0x04..=0x07 if ipa & !0xfff == UART_IPA && data => uart(vcpu, st, syn, ipa),
        // Permission fault on a write: dirty logging.
        0x0c..=0x0f if write && vm.in_ram(ipa & !0xfff, 0x1000) => match vm.write_fault(ipa) {
            Ok(()) => Action::Resume,
            Err(e) => {
                log::error!("vm{}: write fault at IPA {ipa:#x}: {e}: VM stopped", vm.id);
                stop_vm(vcpu, st)
            }
        },
        _ => {
            cpu::inject_external_abort(&mut st.regs, data, write, far);
            VmStats::bump(&vm.stats.sea);
            Action::Resume
        }
    }
}

/// The emulated PL011: UARTDR writes go to the console, UARTFR reads say
/// "ready", the identification registers read as a PL011's.
fn uart(vcpu: &'static Vcpu, st: &mut VcpuState, syn: Syndrome, ipa: u64) -> Action {
    let iss = syn.iss();
    let write = iss & (1 << 6) != 0;
    if iss & (1 << 24) == 0 {
        // No syndrome (a load/store pair, say): cannot emulate.
        cpu::inject_external_abort(&mut st.regs, true, write, cpu::fault_va(syn.ec()));
        VmStats::bump(&vcpu.vm.stats.sea);
        return Action::Resume;
    }
    // SRT [20:16] (AArch64; [19:16] on ARMv7, bit 20 is zero there).
    let srt = ((iss >> 16) & 0x1f) as usize;
    let off = ipa & 0xfff;
    if write {
        let v = st.regs.gpr(srt);
        if off == 0 {
            vcpu.vm.console_byte(v as u8);
        }
    } else {
        let v = match off {
            0x18 => 0x90,  // TXFE | RXFE
            0x30 => 0x301, // UARTEN | TXE | RXE
            0xfe0 => 0x11,
            0xfe4 => 0x10,
            0xfe8 => 0x14,
            0xff0 => 0x0d,
            0xff4 => 0xf0,
            0xff8 => 0x05,
            0xffc => 0xb1,
            _ => 0,
        };
        st.regs.set_gpr(srt, v);
    }
    st.regs.skip(syn.insn_len());
    Action::Resume
}
