//! What to do when a guest exits: HVC/SMC (PSCI, hypercalls), WFI, and
//! stage-2 aborts (demand paging, the emulated PL011, dirty logging,
//! external aborts).

use core::sync::atomic::Ordering;

use arch::read_sysreg;
use mmu::Error;

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

const EC_WFX: u64 = 0x01;
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_IABT_LOW: u64 = 0x20;
const EC_DABT_LOW: u64 = 0x24;

/// Handles a synchronous exit of `vcpu`, whose saved state is `st`.
pub fn handle_sync(vcpu: &'static Vcpu, st: &mut VcpuState) -> Action {
    let vm = vcpu.vm;
    VmStats::bump(&vm.stats.exits);
    let esr = read_sysreg!("esr_el2");
    match (esr >> 26) & 0x3f {
        EC_HVC64 => call(vcpu, st),
        EC_SMC64 => {
            // A trapped SMC returns to the SMC itself: skip it, then treat it
            // as the same call an HVC would be.
            st.regs.pc += 4;
            call(vcpu, st)
        }
        EC_WFX => {
            st.regs.pc += 4;
            Action::Yield
        }
        ec @ (EC_IABT_LOW | EC_DABT_LOW) => abort(vcpu, st, esr, ec),
        ec => {
            log::error!(
                "vm{} vcpu{}: unhandled exit EC {ec:#x} ESR {esr:#x} at PC {:#x}: VM stopped",
                vm.id,
                vcpu.index,
                st.regs.pc
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
    let fid = st.regs.x[0] as u32;
    let a = [st.regs.x[1], st.regs.x[2], st.regs.x[3], st.regs.x[4], st.regs.x[5], st.regs.x[6]];
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
    st.regs.x[0] = ret;
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
            if psci::guest_supports(st.regs.x[1] as u32) {
                psci::SUCCESS
            } else {
                psci::NOT_SUPPORTED
            }
        }
        psci::CPU_ON_64 | psci::CPU_ON_32 => {
            let target = st.regs.x[1];
            let index = (target & 0xff) as usize;
            if target & !0xff != 0 || index >= vm.vcpus().len() {
                psci::INVALID_PARAMETERS
            } else if vm.start_vcpu(index, st.regs.x[2], st.regs.x[3]) {
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
    st.regs.x[0] = ret as u64;
    Action::Resume
}

/// A stage-2 data or instruction abort.
fn abort(vcpu: &'static Vcpu, st: &mut VcpuState, esr: u64, ec: u64) -> Action {
    let vm = vcpu.vm;
    let iss = esr & 0x1ff_ffff;
    let fsc = iss & 0x3f;
    let far = read_sysreg!("far_el2");
    // HPFAR_EL2.FIPA [43:4] holds IPA[51:12]; FAR gives the page offset.
    let ipa = ((read_sysreg!("hpfar_el2") & 0x0fff_ffff_fff0) << 8) | (far & 0xfff);
    let write = ec == EC_DABT_LOW && iss & (1 << 6) != 0;
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
        0x04..=0x07 if ipa & !0xfff == UART_IPA && ec == EC_DABT_LOW => uart(vcpu, st, iss, ipa),
        // Permission fault on a write: dirty logging.
        0x0c..=0x0f if write && vm.in_ram(ipa & !0xfff, 0x1000) => match vm.write_fault(ipa) {
            Ok(()) => Action::Resume,
            Err(e) => {
                log::error!("vm{}: write fault at IPA {ipa:#x}: {e}: VM stopped", vm.id);
                stop_vm(vcpu, st)
            }
        },
        _ => {
            inject_sea(st, ec, iss, far);
            VmStats::bump(&vm.stats.sea);
            Action::Resume
        }
    }
}

/// The emulated PL011: UARTDR writes go to the console, UARTFR reads say
/// "ready", the identification registers read as a PL011's.
fn uart(vcpu: &'static Vcpu, st: &mut VcpuState, iss: u64, ipa: u64) -> Action {
    if iss & (1 << 24) == 0 {
        // No syndrome (a load/store pair, say): cannot emulate.
        inject_sea(st, EC_DABT_LOW, iss, read_sysreg!("far_el2"));
        VmStats::bump(&vcpu.vm.stats.sea);
        return Action::Resume;
    }
    let srt = ((iss >> 16) & 0x1f) as usize;
    let write = iss & (1 << 6) != 0;
    let off = ipa & 0xfff;
    if write {
        let v = if srt == 31 { 0 } else { st.regs.x[srt] };
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
        if srt != 31 {
            st.regs.x[srt] = v;
        }
    }
    st.regs.pc += 4;
    Action::Resume
}

/// Injects a synchronous external abort into the guest's EL1, as the
/// architecture would take it: ESR/FAR/ELR/SPSR_EL1 set, PC at the right
/// vector, EL1h with interrupts masked.
fn inject_sea(st: &mut VcpuState, ec: u64, iss: u64, far: u64) {
    let from_el1 = st.regs.pstate & 0xc == 0x4;
    let offset = match (from_el1, st.regs.pstate & 1) {
        (false, _) => 0x400, // lower EL, AArch64
        (true, 1) => 0x200,  // current EL, SP_ELx
        (true, _) => 0x000,  // current EL, SP_EL0
    };
    // Data or instruction abort, same or lower EL; IL; DFSC/IFSC = 0x10.
    let new_ec = match (ec == EC_DABT_LOW, from_el1) {
        (true, true) => 0x25,
        (true, false) => 0x24,
        (false, true) => 0x21,
        (false, false) => 0x20,
    };
    let wnr = if ec == EC_DABT_LOW { iss & (1 << 6) } else { 0 };
    let esr = (new_ec << 26) | (1 << 25) | wnr | 0x10;
    let vbar = read_sysreg!("vbar_el1");
    // SAFETY: the guest's EL1 registers are live on this CPU while its
    // vCPU is handled; writing them is what taking the exception does.
    unsafe {
        arch::write_sysreg!("esr_el1", esr);
        arch::write_sysreg!("far_el1", far);
        arch::write_sysreg!("elr_el1", st.regs.pc);
        arch::write_sysreg!("spsr_el1", st.regs.pstate);
    }
    st.regs.pc = vbar + offset;
    st.regs.pstate = 0x3c5;
}
