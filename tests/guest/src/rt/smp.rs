//! Secondary vCPUs, CPU indices, and the barrier and join used to
//! synchronise them.
//!
//! Waiting loops use `wfe` and releases `dsb ish; sev`, so a waiting vCPU
//! sleeps (or, if the hypervisor traps WFE, yields) instead of spinning.

use core::arch::asm;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::abi::MAX_CPUS;
use crate::rt::{platform, psci};

/// This vCPU's index (0 = the primary), from `TPIDR_EL1` (ARM32:
/// `TPIDRPRW`), set at entry.
#[inline]
pub fn cpu_index() -> usize {
    super::arch::sysreg::cpu_index()
}

/// `MPIDR_EL1` (ARM32: `MPIDR`) of this vCPU.
pub fn mpidr() -> u64 {
    super::arch::sysreg::mpidr()
}

/// Wakes vCPUs waiting in [`wait_until`]: call after the store they wait
/// for.
#[inline]
pub fn notify() {
    // SAFETY: barriers and an event; no memory is accessed.
    unsafe { asm!("dsb ish", "sev", options(nostack, preserves_flags)) };
}

/// Waits until `cond` holds; the writer must [`notify`]. Under the
/// hypervisor the wait is its `HYP_YIELD` call, so a waiting vCPU gives
/// its CPU to the others even when there are more vCPUs than CPUs (QEMU's
/// TCG never traps `wfe`, and `wfi` really waits for an interrupt); on
/// bare QEMU it is `wfe`.
#[inline]
pub fn wait_until(mut cond: impl FnMut() -> bool) {
    let yield_to_hyp = super::hvc::hyp_present();
    while !cond() {
        if yield_to_hyp {
            super::hvc::hyp_yield();
        } else {
            // SAFETY: `wfe` only waits for an event (a `sev`, or a
            // spurious one).
            unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
        }
    }
}

/// Gives the CPU to another vCPU for a while (`HYP_YIELD`; only under
/// the hypervisor).
pub fn yield_now() {
    super::hvc::hyp_yield();
}

/// [`wait_until`] for at most about `us` microseconds of the generic
/// timer's counter; whether `cond` came to hold. For waiting on another
/// VM, which may never get there.
pub fn wait_until_for(mut cond: impl FnMut() -> bool, us: u64) -> bool {
    let ticks = super::timer::frequency() / 1_000_000 * us;
    let t0 = super::timer::counter();
    let mut done = cond();
    wait_until(|| {
        done = done || cond();
        done || super::timer::counter().wrapping_sub(t0) >= ticks
    });
    done
}

/// A reusable barrier for `n` vCPUs (sense counting by generation).
#[derive(Debug)]
pub struct Barrier {
    count: AtomicUsize,
    generation: AtomicUsize,
}

impl Barrier {
    /// A barrier nobody waits at yet.
    pub const fn new() -> Self {
        Barrier { count: AtomicUsize::new(0), generation: AtomicUsize::new(0) }
    }

    /// Waits until `n` vCPUs (this one included) have called `wait(n)`.
    /// Every caller must pass the same `n`.
    pub fn wait(&self, n: usize) {
        let gen = self.generation.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == n {
            self.count.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::AcqRel);
            notify();
        } else {
            wait_until(|| self.generation.load(Ordering::Acquire) != gen);
        }
    }
}

impl Default for Barrier {
    fn default() -> Self {
        Self::new()
    }
}

/// The function secondaries run, as a pointer (null = none).
static SECONDARY_FN: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
/// Secondaries that have entered Rust since the last start.
static ONLINE: AtomicUsize = AtomicUsize::new(0);
/// Secondaries whose function returned since the last start.
static DONE: AtomicUsize = AtomicUsize::new(0);
/// Secondaries started by the last `start_secondaries`.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Why [`start_secondaries`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// More vCPUs than the runtime supports ([`MAX_CPUS`]).
    TooMany(usize),
    /// PSCI `CPU_ON` of vCPU `cpu` returned `code`.
    CpuOn {
        /// The CPU index.
        cpu: usize,
        /// The PSCI result.
        code: i64,
    },
}

/// Starts vCPUs `1..n` with PSCI `CPU_ON` at the runtime's secondary entry
/// (target MPIDR from the DTB's `/cpus`, else Aff0 = index; context id =
/// CPU index). Each sets up its stack, vectors and MMU (shared tables),
/// runs `f(cpu_index)` and then `CPU_OFF`. Returns once all of them run
/// Rust code; [`join_secondaries`] waits for their `f` to return.
pub fn start_secondaries(n: usize, f: fn(usize)) -> Result<(), StartError> {
    start_secondaries_as(crate::abi::psci::CPU_ON, n, f)
}

/// [`start_secondaries`] with `CPU_ON` issued as function id `cpu_on_fid`
/// (see [`psci::cpu_on_as`]).
pub fn start_secondaries_as(cpu_on_fid: u64, n: usize, f: fn(usize)) -> Result<(), StartError> {
    if n > MAX_CPUS {
        return Err(StartError::TooMany(n));
    }
    SECONDARY_FN.store(f as *mut (), Ordering::Release);
    ONLINE.store(0, Ordering::Release);
    DONE.store(0, Ordering::Release);
    STARTED.store(0, Ordering::Release);
    let entry = super::boot::__rt_secondary_entry as *const () as usize as u64;
    for cpu in 1..n {
        // SAFETY: the runtime's secondary entry starts a vCPU from reset
        // state; the context id is its CPU index (< MAX_CPUS).
        let code =
            unsafe { psci::cpu_on_as(cpu_on_fid, platform::cpu_mpidr(cpu), entry, cpu as u64) };
        if code != 0 {
            return Err(StartError::CpuOn { cpu, code });
        }
        STARTED.fetch_add(1, Ordering::AcqRel);
    }
    let started = STARTED.load(Ordering::Acquire);
    wait_until(|| ONLINE.load(Ordering::Acquire) == started);
    Ok(())
}

/// Waits until the function of every secondary started by the last
/// [`start_secondaries`] has returned.
pub fn join_secondaries() {
    let started = STARTED.load(Ordering::Acquire);
    wait_until(|| DONE.load(Ordering::Acquire) >= started);
}

/// Rust entry of a secondary vCPU (from `boot`).
pub(crate) fn secondary_main(cpu: usize) -> ! {
    ONLINE.fetch_add(1, Ordering::AcqRel);
    notify();
    let p = SECONDARY_FN.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: SECONDARY_FN only ever holds a `fn(usize)` stored by
        // `start_secondaries`.
        let f: fn(usize) = unsafe { core::mem::transmute::<*mut (), fn(usize)>(p) };
        f(cpu);
    }
    DONE.fetch_add(1, Ordering::AcqRel);
    notify();
    psci::cpu_off()
}
