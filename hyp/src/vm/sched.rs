//! Which vCPU runs where: the run queue's other half. A vCPU that is on
//! is queued (ready), running on one CPU, or blocked (in WFI, or PSCI
//! `CPU_SUSPEND`) until an interrupt is pending for it or its timer's
//! deadline passes.
//!
//! Waking and blocking race (a CPU injects an interrupt into a vCPU
//! while the CPU that ran it decides to block it). Both sides publish
//! first and look second (the waker makes the interrupt pending, then
//! reads the run state; the blocker marks the vCPU blocked, then looks for
//! pending interrupts), with sequentially consistent accesses, so at least
//! one of them sees the other; whoever moves the vCPU from blocked to
//! queued with a compare-and-swap queues it, and only one can.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::{Guests, Vcpu};
use crate::machine::Machine;

/// Ready, on the run queue (or about to be put there).
const QUEUED: u8 = 0;
/// Running on the CPU in `Sched::cpu`.
const RUNNING: u8 = 1;
/// Waiting for an interrupt or its deadline.
const BLOCKED: u8 = 2;

/// A vCPU's scheduling state.
pub struct Sched {
    state: AtomicU8,
    /// The CPU running it (meaningful while running).
    cpu: AtomicU8,
    /// While blocked: when its timer fires, in counter ticks (`u64::MAX`:
    /// never).
    wake_at: AtomicU64,
    /// Times it blocked (which sleep a lost-wake-up check saw).
    sleeps: AtomicU32,
    /// The sleep [`Guests::wake_lost`] last saw blocked with an interrupt
    /// pending (`u32::MAX`: none).
    suspect: AtomicU32,
}

impl Sched {
    /// Queued, never run.
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(QUEUED),
            cpu: AtomicU8::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            sleeps: AtomicU32::new(0),
            suspect: AtomicU32::new(u32::MAX),
        }
    }
}

impl Default for Sched {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Machine> Vcpu<M> {
    /// The vCPU goes on the run queue.
    pub(super) fn queued(&self) {
        self.sched.state.store(QUEUED, Ordering::SeqCst);
    }

    /// CPU `cpu` takes the vCPU off the run queue to run it.
    pub fn running_on(&self, cpu: usize) {
        self.sched.cpu.store(cpu as u8, Ordering::Relaxed);
        self.sched.state.store(RUNNING, Ordering::SeqCst);
    }

    /// The vCPU has something new to take (an interrupt made pending for
    /// it, its VM stopping): queued if it was blocked, its CPU interrupted
    /// if it runs on another one.
    pub fn wake(&'static self) {
        let m = self.vm.machine();
        match self.sched.state.load(Ordering::SeqCst) {
            BLOCKED
                if self
                    .sched
                    .state
                    .compare_exchange(BLOCKED, QUEUED, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok() =>
            {
                self.vm.guests.requeue(self);
            }
            RUNNING => {
                let cpu = self.sched.cpu.load(Ordering::Relaxed) as usize;
                if cpu != m.cpu() {
                    m.kick_cpu(cpu);
                }
            }
            _ => {}
        }
    }

    /// The CPU that ran the vCPU (and has let go of its registers) puts it
    /// to sleep until an interrupt is pending for it or, if `wake_at` is
    /// not `u64::MAX`, until the counter reaches `wake_at`. Queued again
    /// at once if either already holds, or its VM is no longer running.
    pub fn block(&'static self, wake_at: u64) {
        self.sched.sleeps.fetch_add(1, Ordering::Relaxed);
        self.sched.wake_at.store(wake_at, Ordering::Relaxed);
        self.sched.state.store(BLOCKED, Ordering::SeqCst);
        self.vm.guests.earliest.fetch_min(wake_at, Ordering::SeqCst);
        let now = self.vm.machine().now().0;
        let go =
            wake_at <= now || !self.vm.is_running() || self.vm.vgic.lock().has_pending(self.index);
        if go
            && self
                .sched
                .state
                .compare_exchange(BLOCKED, QUEUED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.vm.guests.requeue(self);
        }
    }

    /// Whether the vCPU waits (for the run loop's counters and tests).
    pub fn is_blocked(&self) -> bool {
        self.sched.state.load(Ordering::SeqCst) == BLOCKED
    }
}

impl<M: Machine> Guests<M> {
    /// Queues every blocked vCPU whose deadline is at or before `now`;
    /// returns the earliest deadline of those still blocked (`u64::MAX`:
    /// none). Cheap when nothing is due: one load.
    pub fn wake_expired(&self, now: u64) -> u64 {
        let earliest = self.earliest.load(Ordering::SeqCst);
        if earliest > now {
            return earliest;
        }
        // Recomputed from scratch: set to "none" first, so a vCPU that
        // blocks meanwhile lowers it again.
        self.earliest.store(u64::MAX, Ordering::SeqCst);
        let mut next = u64::MAX;
        for vm in self.vms() {
            for &vcpu in vm.vcpus() {
                if vcpu.sched.state.load(Ordering::SeqCst) != BLOCKED {
                    continue;
                }
                let at = vcpu.sched.wake_at.load(Ordering::Relaxed);
                if at <= now {
                    vcpu.wake();
                } else {
                    next = next.min(at);
                }
            }
        }
        self.earliest.fetch_min(next, Ordering::SeqCst);
        self.earliest.load(Ordering::SeqCst)
    }

    /// Blocked vCPUs that have an interrupt to take: a lost wake-up, a
    /// bug. For the idle loop's occasional check: a vCPU seen so twice in
    /// the same sleep is reported and woken (seen once may be the moment
    /// between a waker's interrupt and the blocker's own look, after
    /// which the blocker queues it itself).
    pub fn wake_lost(&self) -> usize {
        let mut lost = 0;
        for vm in self.vms() {
            for &vcpu in vm.vcpus() {
                if !(vcpu.is_blocked() && vm.vgic.lock().has_pending(vcpu.index)) {
                    continue;
                }
                let sleep = vcpu.sched.sleeps.load(Ordering::Relaxed);
                if vcpu.sched.suspect.swap(sleep, Ordering::Relaxed) == sleep {
                    lost += 1;
                    vm.machine().print(format_args!(
                        "hyp: BUG: vm{} vCPU {} blocked with an interrupt pending\n",
                        vm.id, vcpu.index
                    ));
                    vcpu.wake();
                }
            }
        }
        lost
    }

    /// The earliest deadline of a blocked vCPU (`u64::MAX`: none).
    pub fn earliest_deadline(&self) -> u64 {
        self.earliest.load(Ordering::Relaxed)
    }

    /// CPU `cpu` (the caller's) found nothing to run and is about to wait
    /// for an interrupt. Returns whether it may: not if a vCPU was queued
    /// meanwhile. The idler publishes its bit and then looks at the run
    /// queue; a waker queues and then looks at the bits ([`Self::kick_idle`]),
    /// each with a full barrier in between, so at least one sees the
    /// other: the idler does not sleep, or it is kicked (and a kick
    /// that arrives before its WFI stays pending and ends the WFI).
    pub fn idle_enter(&self, cpu: usize) -> bool {
        self.idle.fetch_or(1 << cpu, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.queued() > 0 {
            self.idle_exit(cpu);
            return false;
        }
        true
    }

    /// CPU `cpu` stopped waiting.
    pub fn idle_exit(&self, cpu: usize) {
        self.idle.fetch_and(!(1 << cpu), Ordering::SeqCst);
    }

    /// For vCPU `vcpu` just queued: kicks one idle CPU other than this one
    /// (this one looks at the queue itself before it idles), the one that
    /// ran `vcpu` last if it is idle (its state and TLB entries are warm
    /// there), claiming its bit so that the next vCPU queued wakes another.
    pub(super) fn kick_idle(&self, vcpu: &Vcpu<M>) {
        fence(Ordering::SeqCst);
        let me = self.m.cpu();
        let last = u32::from(vcpu.sched.cpu.load(Ordering::Relaxed));
        let mut idle = self.idle.load(Ordering::SeqCst);
        loop {
            let others = idle & !(1 << me);
            if others == 0 {
                return;
            }
            let cpu = if others & (1 << last) != 0 { last } else { others.trailing_zeros() };
            match self.idle.compare_exchange(
                idle,
                idle & !(1 << cpu),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return self.m.kick_cpu(cpu as usize),
                Err(now) => idle = now,
            }
        }
    }
}
