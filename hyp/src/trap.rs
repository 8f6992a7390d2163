//! What to do when a guest exits: the EL2 glue between an exit's syndrome
//! and the portable handlers (SMCCC calls in `calls`, stage-2 faults and
//! the emulated PL011 here, on the VM's methods).

use mmu::PAGE_SIZE;

use crate::vm::Error;

use crate::calls::{self, Outcome};
use crate::cpu::{self, ec, Syndrome, VcpuRegs};
use crate::el2::El2;
use crate::syndrome::{Fault, Wfx};
use crate::vm::{self, VmStats, UART_IPA};

/// A vCPU of the hypervisor.
pub type Vcpu = vm::Vcpu<El2>;

/// What the run loop does next with the vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Enter the guest again.
    Resume,
    /// Let another vCPU run (WFE, the end of a time slice); this one
    /// stays runnable.
    Yield,
    /// Wait for an interrupt (WFI, PSCI `CPU_SUSPEND`): the vCPU sleeps
    /// until one is pending for it or its timer fires.
    Wait,
    /// The vCPU is off (PSCI CPU_OFF, SYSTEM_OFF, a fatal fault).
    Stop,
}

/// Handles a synchronous exit of `vcpu`, whose saved state is `st`.
pub fn handle_sync(vcpu: &'static Vcpu, st: &mut VcpuRegs) -> Action {
    let vm = vcpu.vm;
    VmStats::bump(&vm.stats.exits);
    let syn = cpu::syndrome();
    match syn.ec() {
        cpu::EC_HVC => {
            VmStats::bump(&vm.stats.call_exits);
            call(vcpu, st, syn)
        }
        cpu::EC_SMC => {
            VmStats::bump(&vm.stats.call_exits);
            // A trapped SMC returns to the SMC itself: skip it, then treat it
            // as the same call an HVC would be.
            st.regs.skip(syn.insn_len());
            call(vcpu, st, syn)
        }
        ec::WFX => {
            VmStats::bump(&vm.stats.wfx_exits);
            match syn.wfx() {
                Wfx::Wfi | Wfx::Wfe => {
                    // The guest waits: what it printed of a line shows.
                    vm.vcpu_waits(vcpu.index);
                    st.regs.skip(syn.insn_len());
                    // WFE: another vCPU may hold what it waits for.
                    if syn.wfx() == Wfx::Wfe {
                        Action::Yield
                    } else {
                        Action::Wait
                    }
                }
                // WFIT and WFET (FEAT_WFxT), which the ID registers do not
                // advertise (the hypervisor would not honour their timeout):
                // UNDEFINED, as on a CPU without them.
                Wfx::Wfit | Wfx::Wfet => {
                    VmStats::bump(&vm.stats.undef);
                    cpu::inject_undef(&mut st.regs);
                    Action::Resume
                }
            }
        }
        ec::IABT_LOW | ec::DABT_LOW => abort(vcpu, st, syn),
        // A VFP access trapped to load the vCPU's VFP state lazily (ARMv7):
        // the instruction runs again on its own registers.
        ec::SIMD_FP if cpu::fp_trap(syn.iss(), st) => {
            VmStats::bump(&vm.stats.fp_loads);
            Action::Resume
        }
        // Everything else is a trapped instruction: a GICv3 SGI register
        // write, emulated (system registers the hypervisor keeps per vCPU,
        // the ID registers), or UNDEFINED for the guest, as on a CPU
        // without what it used.
        other => {
            VmStats::bump(&vm.stats.trap_exits);
            if let Some(value) = cpu::trapped_sgi(other, syn.iss(), &st.regs) {
                let kick = vm.vgic.lock().send_sgi1r(vcpu.index, value);
                crate::irq::kick(vm, kick);
                st.regs.skip(syn.insn_len());
            } else if cpu::emulate_trap(other, syn.iss(), st) {
                st.regs.skip(syn.insn_len());
            } else {
                VmStats::bump(&vm.stats.undef);
                cpu::inject_undef(&mut st.regs);
            }
            Action::Resume
        }
    }
}

/// An SMCCC call (HVC or trapped SMC): the immediate must be 0 (SMCCC
/// reserves the others); then PSCI or a hypercall.
fn call(vcpu: &'static Vcpu, st: &mut VcpuRegs, syn: Syndrome) -> Action {
    let r = &st.regs;
    if syn.imm16() != 0 {
        VmStats::bump(&vcpu.vm.stats.refused);
        vcpu.vm.warn(format_args!("HVC/SMC #{:#x}: not supported", syn.imm16()));
        st.regs.set_gpr(0, hypercall_not_supported());
        return Action::Resume;
    }
    let args = [r.gpr(1), r.gpr(2), r.gpr(3), r.gpr(4), r.gpr(5), r.gpr(6)];
    let state = match syn.ec() {
        ec::HVC32 | ec::SMC32 => calls::CallerState::Aarch32,
        _ => calls::CallerState::Aarch64,
    };
    match calls::dispatch_from(vcpu, state, r.gpr(0) as u32, args) {
        Outcome::Return { x0, more } => {
            st.regs.set_gpr(0, x0);
            if let Some([x1, x2]) = more {
                st.regs.set_gpr(1, x1);
                st.regs.set_gpr(2, x2);
            }
            Action::Resume
        }
        Outcome::Stop => Action::Stop,
        Outcome::Yield => {
            st.regs.set_gpr(0, 0);
            Action::Yield
        }
        // CPU_SUSPEND: as a trapped WFI (the HVC or SMC is already
        // skipped): the vCPU waits for an interrupt.
        Outcome::WaitForInterrupt { x0 } => {
            st.regs.set_gpr(0, x0);
            Action::Wait
        }
    }
}

fn hypercall_not_supported() -> u64 {
    crate::hypercall::SmcccError::NotSupported.code()
}

/// An address's offset in its 4 KiB page.
const PAGE_OFFSET: u64 = PAGE_SIZE - 1;

/// A stage-2 data or instruction abort.
fn abort(vcpu: &'static Vcpu, st: &mut VcpuRegs, syn: Syndrome) -> Action {
    let vm = vcpu.vm;
    let data = syn.ec() == ec::DABT_LOW;
    let far = cpu::fault_va(syn.ec());
    // HPFAR gives the IPA's page, the VA its offset.
    let ipa = cpu::fault_ipa_page() | (far & PAGE_OFFSET);
    let page = ipa & !PAGE_OFFSET;
    let write = data && syn.write();
    match syn.fault() {
        // Translation fault, levels 0 to 3.
        Fault::Translation if vm.in_ram(page, PAGE_SIZE) => {
            VmStats::bump(&vm.stats.faults);
            // An alias maps its frame; anything else gets fresh memory.
            match vm.fault_alias(ipa).unwrap_or_else(|| vm.populate(ipa)) {
                Ok(()) => {
                    vm.maybe_collapse(ipa);
                    Action::Resume
                }
                Err(e) => fault_failed(vcpu, st, ipa, far, data, write, e),
            }
        }
        // The firmware's flash (firmware VMs only): erased pages on demand.
        Fault::Translation if vm.in_flash(page, PAGE_SIZE) => {
            VmStats::bump(&vm.stats.faults);
            match vm.populate_flash(ipa) {
                Ok(()) => Action::Resume,
                Err(e) => fault_failed(vcpu, st, ipa, far, data, write, e),
            }
        }
        // A write to the flash, which is read-only: ignored, as a device
        // access.
        Fault::Permission if write && vm.in_flash(page, PAGE_SIZE) => {
            VmStats::bump(&vm.stats.mmio_exits);
            flash_write(vcpu, st, syn, ipa)
        }
        Fault::Translation if page == UART_IPA && data => {
            VmStats::bump(&vm.stats.mmio_exits);
            uart(vcpu, st, syn, ipa)
        }
        Fault::Translation if data && vm.vgic.lock().frame(ipa).is_some() => {
            VmStats::bump(&vm.stats.mmio_exits);
            gic_mmio(vcpu, st, syn, ipa)
        }
        // Permission fault on a write: dirty logging.
        Fault::Permission if write && vm.in_ram(page, PAGE_SIZE) => match vm.write_fault(ipa) {
            Ok(()) => Action::Resume,
            Err(e) => fault_failed(vcpu, st, ipa, far, data, write, e),
        },
        _ => external_abort(vcpu, st, data, write, far),
    }
}

/// A store to the VM's flash: dropped and stepped over, or an external
/// abort, as [`vm::Vm::flash_store`] decides.
fn flash_write(vcpu: &'static Vcpu, st: &mut VcpuRegs, syn: Syndrome, ipa: u64) -> Action {
    match vcpu.vm.flash_store(syn, ipa) {
        vm::FlashStore::Skip => {
            st.regs.skip(syn.insn_len());
            Action::Resume
        }
        vm::FlashStore::Abort => external_abort(vcpu, st, true, true, cpu::fault_va(syn.ec())),
    }
}

/// A fault in RAM the hypervisor could not resolve (no memory left, no
/// room in a bounded table): the guest gets an external abort, as a bus
/// error on real hardware, and the hypervisor goes on.
fn fault_failed(
    vcpu: &'static Vcpu,
    st: &mut VcpuRegs,
    ipa: u64,
    far: u64,
    data: bool,
    write: bool,
    e: Error,
) -> Action {
    vcpu.vm.warn(format_args!("cannot resolve the fault at IPA {ipa:#x} ({e}): external abort"));
    external_abort(vcpu, st, data, write, far)
}

/// Injects a synchronous external abort.
fn external_abort(
    vcpu: &'static Vcpu,
    st: &mut VcpuRegs,
    data: bool,
    write: bool,
    far: u64,
) -> Action {
    cpu::inject_external_abort(&mut st.regs, data, write, far);
    VmStats::bump(&vcpu.vm.stats.sea);
    Action::Resume
}

/// An access to the emulated distributor or redistributors.
fn gic_mmio(vcpu: &'static Vcpu, st: &mut VcpuRegs, syn: Syndrome, ipa: u64) -> Action {
    let write = syn.write();
    let far = cpu::fault_va(syn.ec());
    let Some(access) = syn.access() else {
        return external_abort(vcpu, st, true, write, far);
    };
    if !ipa.is_multiple_of(access.size) {
        return external_abort(vcpu, st, true, write, far);
    }
    let vm = vcpu.vm;
    if write {
        let v = st.regs.gpr(access.reg);
        let kick = vm.vgic.lock().mmio_write(vcpu.index, ipa, access.size, v);
        crate::irq::kick(vm, kick);
    } else {
        let v = vm.vgic.lock().mmio_read(vcpu.index, ipa, access.size);
        st.regs.set_gpr(access.reg, v);
    }
    st.regs.skip(syn.insn_len());
    Action::Resume
}

/// The emulated PL011 (`vuart`, through the VM): the access is the one
/// the syndrome describes; a load leaves the register's value in the
/// target register as the load would (sign-extended for `LDRSB`/`LDRSH`).
/// An access the syndrome does not describe, or that does not lie in the
/// page, gets an external abort.
fn uart(vcpu: &'static Vcpu, st: &mut VcpuRegs, syn: Syndrome, ipa: u64) -> Action {
    let write = syn.write();
    let far = cpu::fault_va(syn.ec());
    // ISV: the syndrome holds the access size (SAS: 1, 2, 4 or 8 bytes)
    // and register (SRT).
    let Some(access) = syn.access() else {
        return external_abort(vcpu, st, true, write, far);
    };
    // The access must end in the page.
    let (size, srt) = (access.size, access.reg);
    let off = ipa & PAGE_OFFSET;
    if off + size > PAGE_SIZE {
        return external_abort(vcpu, st, true, write, far);
    }
    if write {
        vcpu.vm.uart_write(vcpu.index, off, size, st.regs.gpr(srt));
    } else {
        let v = vcpu.vm.uart_read(vcpu.index, off, size);
        st.regs.set_gpr(srt, syn.loaded(u64::from(v), size));
    }
    st.regs.skip(syn.insn_len());
    Action::Resume
}
