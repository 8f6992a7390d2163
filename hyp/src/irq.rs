//! Interrupts around a vCPU's run at EL2: the virtual interface filled
//! before each entry and folded back after each exit, the guest's timer
//! lines sampled into its virtual GIC, the physical interrupts EL2 takes
//! (its own timer for time slices and wake-ups, the guests' timers, the
//! kick SGI, the maintenance interrupt), and the vCPU's timers turned into
//! a wake-up deadline when it goes to sleep.
//!
//! A guest timer's physical PPI is level-sensitive and stays asserted
//! until the guest's handler reprograms or masks its timer. So from the
//! moment the hypervisor takes it until the guest has dealt with the
//! virtual interrupt it becomes (pending or active in the virtual GIC),
//! the PPI is disabled at the host GIC on that CPU; it is enabled again
//! once the virtual interrupt is neither, with the line sampled afresh at
//! every exit (the maintenance interrupt on deactivation makes that
//! prompt).

use core::sync::atomic::{AtomicU32, Ordering};

use crate::cpu::{self, GicCpu, VcpuRegs, MAX_CPUS, MAX_LRS};
use crate::el2::El2;
use crate::gic::{self, HYP_TIMER_PPI, PTIMER_PPI, VTIMER_PPI};
use crate::hostirq::StuckPriority;
use crate::trap::{Action, Vcpu};
use crate::vgic::Kick;
use crate::vm::Vm;

/// Per CPU: the guest timer PPIs disabled at the host GIC (bit per INTID).
static MASKED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Disables (or enables) physical PPI `intid` on this CPU, if that
/// changes anything.
fn set_masked(intid: u32, masked: bool) {
    let m = &MASKED[cpu::cpu_index() % MAX_CPUS];
    let bit = 1 << intid;
    let was = m.load(Ordering::Relaxed);
    if (was & bit != 0) != masked {
        m.store(was ^ bit, Ordering::Relaxed);
        gic::set_private_enabled(intid, !masked);
    }
}

/// Samples the loaded vCPU's timer outputs into its virtual GIC and masks
/// their PPIs while the virtual interrupts are pending or active.
fn sync_timers(vcpu: &'static Vcpu) {
    let (vl, pl) = cpu::timer_levels();
    let v = vcpu.index;
    let (vmask, pmask) = {
        let mut g = vcpu.vm.vgic.lock();
        // This vCPU is on this CPU: nobody to kick.
        g.set_level(v, VTIMER_PPI, vl);
        g.set_level(v, PTIMER_PPI, pl);
        (g.is_pending_or_active(v, VTIMER_PPI), g.is_pending_or_active(v, PTIMER_PPI))
    };
    set_masked(VTIMER_PPI, vmask);
    set_masked(PTIMER_PPI, pmask);
}

/// Before entering the guest: its timers sampled, its list registers
/// filled, and the EL2 timer armed for the end of its slice or the
/// earliest sleeper's deadline.
pub fn enter(vcpu: &'static Vcpu, st: &mut VcpuRegs, slice_end: u64) {
    sync_timers(vcpu);
    let n = GicCpu::lrs();
    let mut lrs = [None; MAX_LRS];
    let overflow = vcpu.vm.vgic.lock().flush(vcpu.index, &mut lrs[..n]);
    st.gic.write_lrs(&lrs[..n], overflow);
    // Without a GIC nothing would take the EL2 timer's interrupt.
    if GicCpu::present() {
        cpu::hyp_timer_arm(slice_end.min(vcpu.vm.guests.earliest_deadline()));
    }
}

/// After the guest exited: what its list registers hold now, folded back.
pub fn exit(vcpu: &'static Vcpu, st: &mut VcpuRegs) {
    let n = GicCpu::lrs();
    let mut now = [None; MAX_LRS];
    st.gic.read_lrs(&mut now[..n]);
    vcpu.vm.vgic.lock().sync(vcpu.index, &st.gic.written[..n], &now[..n]);
}

/// A physical IRQ exit: takes every interrupt signalled to this CPU.
/// Yields at the end of the slice if another vCPU waits for a CPU; else
/// starts a new slice.
pub fn handle(vcpu: &'static Vcpu, slice_end: &mut u64) -> Action {
    let mut tick = false;
    // Bounded: a level interrupt that stays asserted cannot hold the CPU.
    for _ in 0..32 {
        let Some(irq) = gic::ack() else { break };
        match irq.intid {
            HYP_TIMER_PPI => {
                cpu::hyp_timer_stop();
                tick = true;
            }
            // Until the guest has handled it (see the module doc).
            id @ (VTIMER_PPI | PTIMER_PPI) => set_masked(id, true),
            // The kick SGI and the maintenance interrupt only make the
            // vCPU exit: its list registers were folded back already.
            _ => {}
        }
        gic::end(irq);
    }
    if tick {
        let (now, freq) = cpu::counter();
        vcpu.vm.guests.wake_expired(now);
        if now >= *slice_end {
            if vcpu.vm.guests.queued() > 0 {
                return Action::Yield;
            }
            *slice_end = now + freq / 1000 * crate::SLICE_MS;
        }
    }
    Action::Resume
}

/// A CPU with nothing to run: sleeps in WFI until an interrupt arrives
/// (the kick of a vCPU queued for it, its EL2 timer at `until`), then
/// takes what arrived. No vCPU is loaded: its timers are stopped. First
/// checks that nothing is left active at the host GIC.
pub fn idle_wait(until: u64) {
    check_idle_priority();
    cpu::hyp_timer_arm(until);
    cpu::wait_for_interrupt();
    for _ in 0..32 {
        let Some(irq) = gic::ack() else { break };
        gic::end(irq);
    }
    cpu::hyp_timer_stop();
}

/// Per CPU: its raised running priority reported already.
static STUCK_PRIORITY: StuckPriority<MAX_CPUS> = StuckPriority::new();

/// An idle CPU has ended every interrupt it acknowledged, so its GIC CPU
/// interface's running priority is the idle one. Anything else is an
/// interrupt acknowledged and never ended, which holds back every
/// interrupt of its priority or lower on this CPU for good (a bug, see
/// `crate::hostirq`): reported once per CPU. One register read.
fn check_idle_priority() {
    let Some(rpr) = gic::running_priority() else { return };
    let me = cpu::cpu_index();
    if STUCK_PRIORITY.check(me, rpr) {
        crate::println!(
            "hyp: BUG: cpu{me}: GIC running priority {rpr:#04x} with nothing to handle \
             (an interrupt acknowledged and never ended)"
        );
    }
}

/// Whether the loaded vCPU has an interrupt to take (WFI completes).
pub fn has_pending(vcpu: &'static Vcpu) -> bool {
    sync_timers(vcpu);
    vcpu.vm.vgic.lock().has_pending(vcpu.index)
}

/// Takes the vCPU off the CPU: its virtual interface and timers saved
/// (its timers stopped), the EL2 timer stopped. Returns when its timers
/// would wake it (`u64::MAX`: never).
pub fn put(vcpu: &'static Vcpu, st: &mut VcpuRegs) -> u64 {
    sync_timers(vcpu);
    let want = {
        let g = vcpu.vm.vgic.lock();
        (g.would_deliver(vcpu.index, VTIMER_PPI), g.would_deliver(vcpu.index, PTIMER_PPI))
    };
    st.gic.put();
    st.sys.save();
    cpu::hyp_timer_stop();
    // The next vCPU's timers start stopped; its entry masks what it needs.
    set_masked(VTIMER_PPI, false);
    set_masked(PTIMER_PPI, false);
    st.sys.timer_deadline(vcpu.vm.cntvoff, want)
}

/// Wakes, or interrupts the CPUs of, the vCPUs of `vm` in `kick`.
pub fn kick(vm: &'static Vm<El2>, kick: Kick) {
    for v in kick.iter() {
        if let Some(&vcpu) = vm.vcpus().get(v) {
            vcpu.wake();
        }
    }
}
