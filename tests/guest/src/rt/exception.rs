//! Synchronous external abort probes, the "expected UNDEFINED instruction"
//! window, and the per-CPU state the exception vectors record them in.
//!
//! The vectors themselves are per architecture (`arch::exception`): every
//! exception saves the interrupted registers and calls the architecture's
//! handler. A data abort taken from the kernel mode (EL1, or a PL1 mode on
//! ARM32) whose status is "synchronous external abort" is expected: the
//! handler records the faulting address and syndrome in a per-CPU slot
//! (read with [`sea_take`]), steps over the faulting instruction and
//! returns, so [`probe_read`] and [`probe_write`] tell whether an access
//! aborted. An UNDEFINED instruction inside [`catch_undefined`] is skipped
//! the same way. Any other exception prints the syndrome, the faulting
//! address and the return address, reports a failure and powers the VM off
//! (`test::fatal`).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::abi::MAX_CPUS;
use crate::rt::arch;
use crate::rt::smp::cpu_index;

/// A synchronous external abort seen by the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sea {
    /// The faulting address (FAR_EL1; DFAR on ARM32), or `None` when the
    /// syndrome says it is not valid (AArch64 ESR.FnV).
    pub far: Option<u64>,
    /// The syndrome: ESR_EL1 on AArch64, DFSR on ARM32.
    pub syndrome: u64,
}

/// Per-CPU trap state, written by the handler on the same CPU.
struct CpuTrap {
    sea_seen: AtomicBool,
    sea_far: AtomicU64,
    sea_far_valid: AtomicBool,
    sea_syndrome: AtomicU64,
    sea_count: AtomicU64,
    /// An UNDEFINED instruction is expected and skipped.
    undef_probe: AtomicBool,
    undef_seen: AtomicBool,
    /// Set while reporting a fatal exception: a second one halts.
    in_fatal: AtomicBool,
}

impl CpuTrap {
    const fn new() -> Self {
        CpuTrap {
            sea_seen: AtomicBool::new(false),
            sea_far: AtomicU64::new(0),
            sea_far_valid: AtomicBool::new(false),
            sea_syndrome: AtomicU64::new(0),
            sea_count: AtomicU64::new(0),
            undef_probe: AtomicBool::new(false),
            undef_seen: AtomicBool::new(false),
            in_fatal: AtomicBool::new(false),
        }
    }
}

static TRAP: [CpuTrap; MAX_CPUS] = [const { CpuTrap::new() }; MAX_CPUS];

fn this_cpu() -> &'static CpuTrap {
    &TRAP[cpu_index() % MAX_CPUS]
}

/// Takes (and clears) this CPU's "SEA seen" flag.
pub fn sea_take() -> Option<Sea> {
    let t = this_cpu();
    if !t.sea_seen.swap(false, Ordering::SeqCst) {
        return None;
    }
    let syndrome = t.sea_syndrome.load(Ordering::SeqCst);
    let far = t.sea_far.load(Ordering::SeqCst);
    Some(Sea { far: t.sea_far_valid.load(Ordering::SeqCst).then_some(far), syndrome })
}

/// Synchronous external aborts handled on this CPU since boot.
pub fn sea_count() -> u64 {
    this_cpu().sea_count.load(Ordering::SeqCst)
}

/// The probed address as a pointer-sized VA; panics (a reported failure)
/// if the runtime's stage-1 map does not reach it (ARM32: 4 GiB).
fn probe_va(addr: u64) -> usize {
    match usize::try_from(addr) {
        Ok(va) if addr < arch::boot::VA_END => va,
        _ => {
            panic!("probe of {addr:#x}: beyond the stage-1 map (ends at {:#x})", arch::boot::VA_END)
        }
    }
}

/// Reads the 64-bit word at `addr` with one load instruction; `Err` with
/// the abort if it took a synchronous external abort (the hypervisor's
/// answer for an IPA with neither RAM nor a device).
///
/// # Safety
///
/// `addr` must be 8-byte aligned and mapped by the runtime's stage-1 map
/// (IPA below 8 GiB on AArch64, 4 GiB on ARM32; beyond it this panics);
/// reading it must have no side effect that breaks Rust code (e.g. no
/// device register with read side effects).
pub unsafe fn probe_read(addr: u64) -> Result<u64, Sea> {
    let va = probe_va(addr);
    sea_take();
    // SAFETY: the caller guarantees the address is aligned, mapped at stage
    // 1 and harmless to read; a synchronous external abort is handled by the
    // vectors, which skip the load (which then yields 0).
    let v = unsafe { arch::access::probe_load64(va) };
    match sea_take() {
        Some(sea) => Err(sea),
        None => Ok(v),
    }
}

/// Writes `value` to the 64-bit word at `addr` with one store instruction;
/// `Err` with the abort if it took a synchronous external abort.
///
/// # Safety
///
/// As [`probe_read`], and the write must not change memory Rust code uses.
pub unsafe fn probe_write(addr: u64, value: u64) -> Result<(), Sea> {
    let va = probe_va(addr);
    sea_take();
    // SAFETY: the caller guarantees the address is aligned, mapped at stage
    // 1 and not used by Rust code; an abort is handled by the vectors, which
    // skip the store.
    unsafe { arch::access::probe_store64(va, value) };
    match sea_take() {
        Some(sea) => Err(sea),
        None => Ok(()),
    }
}

/// Runs `f` with UNDEFINED instructions skipped instead of fatal; returns
/// `f`'s result and whether one was skipped. Used to probe for `HVC`
/// conduits (`HVC` is UNDEFINED when nothing at EL2 / in Hyp mode or in the
/// emulator handles it) and for system registers the hypervisor keeps
/// from guests.
pub fn catch_undefined<R>(f: impl FnOnce() -> R) -> (R, bool) {
    let t = this_cpu();
    t.undef_seen.store(false, Ordering::SeqCst);
    t.undef_probe.store(true, Ordering::SeqCst);
    let r = f();
    t.undef_probe.store(false, Ordering::SeqCst);
    (r, t.undef_seen.swap(false, Ordering::SeqCst))
}

/// For the vectors: records a synchronous external abort on a data access
/// of this CPU (the handler then skips the instruction).
pub(super) fn record_sea(far: Option<u64>, syndrome: u64) {
    let t = this_cpu();
    t.sea_far.store(far.unwrap_or(0), Ordering::SeqCst);
    t.sea_far_valid.store(far.is_some(), Ordering::SeqCst);
    t.sea_syndrome.store(syndrome, Ordering::SeqCst);
    t.sea_seen.store(true, Ordering::SeqCst);
    t.sea_count.fetch_add(1, Ordering::SeqCst);
}

/// For the vectors: whether an UNDEFINED instruction is expected now
/// (inside [`catch_undefined`]); if so it is recorded and the handler
/// skips it.
pub(super) fn take_undefined() -> bool {
    let t = this_cpu();
    if !t.undef_probe.load(Ordering::SeqCst) {
        return false;
    }
    t.undef_seen.store(true, Ordering::SeqCst);
    true
}

/// Marks this CPU as reporting a fatal error; false if it already was (a
/// fault while reporting one).
pub(crate) fn enter_fatal() -> bool {
    !this_cpu().in_fatal.swap(true, Ordering::SeqCst)
}
