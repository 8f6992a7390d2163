//! Read-copy-update for the hypervisor's lockless table walkers, made for
//! EL2: quiescent-state-based, with extended quiescent states.
//!
//! A CPU is in one of three states: **offline** (not started, or stopped),
//! **online** (running hypervisor code, possibly inside read-side
//! sections), or **extended quiescent** (running a guest, or idle: it holds
//! no hypervisor pointers at all). A grace period `g` ends when every CPU
//! is offline, extended quiescent, or has reported a quiescent state (a
//! moment outside any read-side section) after `g` started. Guest entry
//! and idle are therefore free grace-period progress; an online CPU reports
//! explicitly ([`Rcu::quiescent`]), which the table operations do when
//! they finish, and which the hypervisor does between guest exits.
//!
//! Read-side sections cost nothing shared: the CPU's own nesting count.
//!
//! # Ordering (C++ memory model, as Rust uses it)
//!
//! Updater: unpublishes a table (a Release store of the entry), then takes
//! a cookie ([`Rcu::get_state`]), which issues a SeqCst fence X and reads
//! `started` (SeqCst). The grace period the cookie names is started by a
//! SeqCst read-modify-write of `started` that follows X in the single total
//! order S.
//!
//! - A reader whose section ended before its quiescent report: the report
//!   is a Release store of `qs`, the detector reads it with Acquire, so all
//!   the reader's loads happen before the detector decides, hence before the
//!   free.
//! - A reader that starts after reporting for grace period `g`: its report
//!   read `started = g` with a SeqCst load, which follows the start of `g`
//!   and so X in S; its entry loads are SeqCst ([`RcuReadGuard::dereference`]) and follow
//!   in S too. An SC load that follows, in S, an SC fence sequenced after a
//!   store observes that store: the reader sees the unpublished entry, not
//!   the old table.
//! - A CPU leaving an extended quiescent state stores `online` (SeqCst)
//!   then loads `started` (SeqCst). If the detector, which loads the state
//!   (SeqCst) after loading `started = g`, saw the CPU quiescent, the CPU's
//!   store comes later in S, so its load of `started` and its entry loads
//!   follow the start of `g`, hence X: it sees the unpublished entry.
//!   Otherwise the detector saw it online and waits for its report.
//! - Entering an extended quiescent state is a Release store, read by the
//!   detector with SeqCst: the CPU's earlier loads happen before the free.

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::sync::{fence, lock, AtomicU64, AtomicU8, AtomicUsize, Mutex, Ordering};

/// CPUs an RCU domain tracks.
pub const MAX_CPUS: usize = 16;

const OFFLINE: u8 = 0;
const ONLINE: u8 = 1;
const EXTENDED: u8 = 2;

/// One CPU's RCU state.
struct CpuState {
    state: AtomicU8,
    /// The grace period this CPU last reported a quiescent state in.
    qs: AtomicU64,
    /// Read-side nesting; written by this CPU only.
    nesting: AtomicUsize,
}

impl CpuState {
    #[cfg(not(loom))]
    const fn new(state: u8) -> Self {
        Self { state: AtomicU8::new(state), qs: AtomicU64::new(0), nesting: AtomicUsize::new(0) }
    }
    #[cfg(loom)]
    fn new(state: u8) -> Self {
        Self { state: AtomicU8::new(state), qs: AtomicU64::new(0), nesting: AtomicUsize::new(0) }
    }
}

/// A callback queued with [`Rcu::call_rcu`], embedded in the object it
/// frees (Linux's `struct rcu_head`).
pub struct RcuHead {
    next: Option<NonNull<RcuHead>>,
    func: Option<unsafe fn(NonNull<RcuHead>)>,
    cookie: u64,
}

impl RcuHead {
    /// An unqueued head.
    pub const fn new() -> Self {
        Self { next: None, func: None, cookie: 0 }
    }
}

impl Default for RcuHead {
    fn default() -> Self {
        Self::new()
    }
}

struct Callbacks {
    head: Option<NonNull<RcuHead>>,
    tail: Option<NonNull<RcuHead>>,
    len: u64,
}

// SAFETY: the list only holds pointers to heads that `call_rcu`'s caller
// guarantees stay valid and unaliased until their callback runs; the list
// is only touched under its mutex.
unsafe impl Send for Callbacks {}

/// Counters of an RCU domain.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RcuStats {
    /// Grace periods completed.
    pub grace_periods: u64,
    /// Callbacks queued so far.
    pub callbacks_queued: u64,
    /// Callbacks run so far.
    pub callbacks_run: u64,
    /// Most callbacks waiting at once.
    pub max_backlog: u64,
}

/// An RCU domain shared by every address space of the hypervisor.
pub struct Rcu {
    cpu_id: fn() -> usize,
    cpus: [CpuState; MAX_CPUS],
    started: AtomicU64,
    completed: AtomicU64,
    callbacks: Mutex<Callbacks>,
    queued: AtomicU64,
    run: AtomicU64,
    max_backlog: AtomicU64,
}

/// Proof of being inside a read-side section: table memory reached under
/// it stays valid until it drops. Guards nest.
///
/// A guard belongs to the CPU that took it: the section is counted in that
/// CPU's nesting count, and only that CPU's quiescent reports wait for it.
/// So a guard is neither `Send` (dropped on another CPU it would end that
/// CPU's section, not its own, and a grace period could then free a table
/// the first CPU still reads) nor `Sync` (another CPU would read tables
/// under a section that is not its own). Every table guard of
/// [`pgtable`](crate::pgtable) holds one and inherits both.
///
/// ```compile_fail,E0277
/// fn on_another_cpu<T: Send>(_: T) {}
/// // SAFETY: one thread uses the domain.
/// let rcu = unsafe { mmu::Rcu::new() };
/// on_another_cpu(rcu.read_lock());
/// ```
///
/// ```compile_fail,E0277
/// fn shared_with_another_cpu<T: Sync>(_: &T) {}
/// // SAFETY: one thread uses the domain.
/// let rcu = unsafe { mmu::Rcu::new() };
/// shared_with_another_cpu(&rcu.read_lock());
/// ```
#[must_use = "dropping the guard ends the read-side section"]
pub struct RcuReadGuard<'r> {
    rcu: &'r Rcu,
    cpu: usize,
    /// Neither `Send` nor `Sync`: the section is this CPU's.
    _this_cpu: PhantomData<*const ()>,
}

/// A grace-period cookie from [`Rcu::get_state`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct GpCookie(pub(crate) u64);

/// Reads a table entry inside a read-side section. SeqCst, for the
/// ordering argument above; it compiles to the same instruction as an
/// Acquire load on AArch64 and x86 (`LDAR`, `MOV`) and to `LDREXD`-based
/// code on ARMv7 either way.
#[inline]
pub(crate) fn load_entry(slot: &AtomicU64) -> u64 {
    slot.load(Ordering::SeqCst)
}

fn cpu_zero() -> usize {
    0
}

impl Rcu {
    /// A domain for one CPU (CPU 0, online): tests and tools.
    ///
    /// # Safety
    ///
    /// As [`Rcu::with_cpus`] with a `cpu_id` that always says 0: one thread
    /// of execution at a time uses the domain (and its address spaces).
    /// Two threads reading tables at once would share CPU 0's nesting
    /// count, which is not updated atomically, and a grace period could end
    /// under one of them.
    #[cfg(not(loom))]
    pub const unsafe fn new() -> Self {
        // SAFETY: the caller's promise is `with_cpus`' for `cpu_zero`.
        unsafe { Self::with_cpus(cpu_zero, 1) }
    }

    /// A domain where `cpu_id()` says which CPU runs (0..[`MAX_CPUS`]) and
    /// CPUs `0..online` start online; the others come with [`Rcu::online`].
    ///
    /// # Safety
    ///
    /// The domain counts read-side sections per CPU, without atomic
    /// read-modify-writes, so `cpu_id` must name CPUs truthfully:
    ///
    /// - it returns a number below [`MAX_CPUS`] (else the calls panic);
    /// - two threads of execution that use the domain at the same time get
    ///   different numbers;
    /// - a thread's number does not change while it is inside a read-side
    ///   section, or online (between [`Rcu::online`] or
    ///   [`Rcu::exit_extended`] and [`Rcu::enter_extended`] or
    ///   [`Rcu::offline`]): it does not migrate to another CPU, and no
    ///   interrupt handler on the same CPU uses the domain meanwhile.
    ///
    /// At EL2 with interrupts masked, a CPU's `MPIDR` affinity is such a
    /// number; on a host, a thread-local number given to one thread each.
    #[cfg(not(loom))]
    pub const unsafe fn with_cpus(cpu_id: fn() -> usize, online: usize) -> Self {
        let mut cpus = [const { CpuState::new(OFFLINE) }; MAX_CPUS];
        let mut i = 0;
        while i < online && i < MAX_CPUS {
            cpus[i] = CpuState::new(ONLINE);
            i += 1;
        }
        Self {
            cpu_id,
            cpus,
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            callbacks: Mutex::new(Callbacks { head: None, tail: None, len: 0 }),
            queued: AtomicU64::new(0),
            run: AtomicU64::new(0),
            max_backlog: AtomicU64::new(0),
        }
    }

    /// A domain for one CPU (loom model).
    ///
    /// # Safety
    ///
    /// As the non-loom `new`.
    #[cfg(loom)]
    pub unsafe fn new() -> Self {
        // SAFETY: the caller's promise.
        unsafe { Self::with_cpus(cpu_zero, 1) }
    }

    /// See the non-loom `with_cpus`.
    ///
    /// # Safety
    ///
    /// As the non-loom `with_cpus`.
    #[cfg(loom)]
    pub unsafe fn with_cpus(cpu_id: fn() -> usize, online: usize) -> Self {
        Self {
            cpu_id,
            cpus: core::array::from_fn(|i| {
                CpuState::new(if i < online { ONLINE } else { OFFLINE })
            }),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            callbacks: Mutex::new(Callbacks { head: None, tail: None, len: 0 }),
            queued: AtomicU64::new(0),
            run: AtomicU64::new(0),
            max_backlog: AtomicU64::new(0),
        }
    }

    #[inline]
    fn me(&self) -> usize {
        let cpu = (self.cpu_id)();
        assert!(cpu < MAX_CPUS, "CPU {cpu} outside the RCU domain");
        cpu
    }

    /// Enters a read-side section (Linux's `rcu_read_lock()`): the CPU's
    /// nesting count, nothing shared.
    #[inline]
    pub fn read_lock(&self) -> RcuReadGuard<'_> {
        self.enter(self.me())
    }

    /// A read-side section on `cpu`, which runs this code.
    #[inline]
    fn enter(&self, cpu: usize) -> RcuReadGuard<'_> {
        let c = &self.cpus[cpu];
        debug_assert_ne!(
            c.state.load(Ordering::Relaxed),
            OFFLINE,
            "read_lock on offline CPU {cpu}"
        );
        c.nesting.store(c.nesting.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        RcuReadGuard { rcu: self, cpu, _this_cpu: PhantomData }
    }

    /// Whether the calling CPU is inside a read-side section.
    pub fn in_read_section(&self) -> bool {
        self.cpus[self.me()].nesting.load(Ordering::Relaxed) != 0
    }

    /// The calling CPU reports a quiescent state, if it is outside every
    /// read-side section (otherwise this does nothing). Returns whether it
    /// reported.
    pub fn quiescent(&self) -> bool {
        let c = &self.cpus[self.me()];
        if c.nesting.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let g = self.started.load(Ordering::SeqCst);
        c.qs.store(g, Ordering::Release);
        true
    }

    /// The calling CPU comes online (a secondary CPU starting); `cpu` is
    /// its number, which `cpu_id` must return on it.
    pub fn online(&self, cpu: usize) {
        assert_eq!(cpu, self.me(), "CPU {} cannot bring CPU {cpu} online", self.me());
        self.leave_quiescent(&self.cpus[cpu]);
    }

    /// The calling CPU goes offline (PSCI CPU_OFF); it must be outside
    /// every read-side section.
    pub fn offline(&self) {
        let c = &self.cpus[self.me()];
        assert_eq!(c.nesting.load(Ordering::Relaxed), 0, "offline inside a read-side section");
        c.state.store(OFFLINE, Ordering::Release);
    }

    /// The calling CPU enters an extended quiescent state: it is about to
    /// run a guest or go idle, and holds no hypervisor pointers.
    pub fn enter_extended(&self) {
        let c = &self.cpus[self.me()];
        // Checked always: a section left open here would no longer hold
        // grace periods back.
        assert_eq!(c.nesting.load(Ordering::Relaxed), 0, "guest entry inside a read-side section");
        c.state.store(EXTENDED, Ordering::Release);
    }

    /// The calling CPU leaves its extended quiescent state (back in the
    /// hypervisor after a guest exit, or out of idle).
    pub fn exit_extended(&self) {
        self.leave_quiescent(&self.cpus[self.me()]);
    }

    fn leave_quiescent(&self, c: &CpuState) {
        c.state.store(ONLINE, Ordering::SeqCst);
        // Loom only: loom treats SeqCst loads and stores as AcqRel (its
        // README, "Unsupported features"), so it lets the load below miss a
        // grace period that started while the detector missed this store,
        // which SeqCst forbids (as STLR then LDAR does on AArch64). A SeqCst
        // fence, which loom does model, restores that store → load order
        // for the models (`mmu/tests/loom_rcu.rs`); it pairs with
        // `get_state`'s fence as the SeqCst accesses do in the argument
        // above.
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        // See the module documentation: orders the CPU's next entry loads
        // after any grace period a detector saw it quiescent in.
        let g = self.started.load(Ordering::SeqCst);
        c.qs.store(g, Ordering::Release);
    }

    /// A cookie that [`Rcu::poll_state`] accepts once every reader that
    /// might have seen state from before this call has finished (Linux's
    /// `get_state_synchronize_rcu()`). Take it after unpublishing.
    pub fn get_state(&self) -> GpCookie {
        fence(Ordering::SeqCst);
        let s = self.started.load(Ordering::SeqCst);
        let c = self.completed.load(Ordering::Acquire);
        // A grace period already under way may have passed CPUs before the
        // unpublication: only the next one counts.
        GpCookie(if s > c { s + 1 } else { c + 1 })
    }

    /// Whether the grace period named by `cookie` has elapsed; reports the
    /// caller's quiescent state and drives grace periods if not (Linux's
    /// `poll_state_synchronize_rcu()`).
    pub fn poll_state(&self, cookie: GpCookie) -> bool {
        if self.completed.load(Ordering::Acquire) >= cookie.0 {
            return true;
        }
        self.quiescent();
        self.advance(cookie.0);
        self.completed.load(Ordering::Acquire) >= cookie.0
    }

    /// Starts and ends grace periods until `target` has completed or a CPU
    /// holds the current one back.
    fn advance(&self, target: u64) {
        loop {
            let c = self.completed.load(Ordering::Acquire);
            if c >= target {
                return;
            }
            let s = self.started.load(Ordering::SeqCst);
            if s == c {
                // None under way: start the next one.
                let _ = self.started.compare_exchange(c, c + 1, Ordering::SeqCst, Ordering::SeqCst);
                // The caller is outside its read sections (or reports
                // nothing): count it for the new grace period at once.
                self.quiescent();
                continue;
            }
            for cpu in &self.cpus {
                let st = cpu.state.load(Ordering::SeqCst);
                if st == ONLINE && cpu.qs.load(Ordering::Acquire) < s {
                    return;
                }
            }
            if self
                .completed
                .compare_exchange(s - 1, s, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // Someone else ended it; look again.
                continue;
            }
        }
    }

    /// Waits for a grace period (Linux's `synchronize_rcu()`). Must not be
    /// called inside a read-side section: it would wait for itself.
    pub fn synchronize(&self) {
        assert!(!self.in_read_section(), "synchronize inside a read-side section");
        let cookie = self.get_state();
        while !self.poll_state(cookie) {
            crate::sync::spin_hint();
        }
    }

    /// Queues `f(head)` to run after a grace period (Linux's `call_rcu()`).
    /// Callbacks run from [`Rcu::process_callbacks`], never inside a
    /// read-side section of the CPU that runs them.
    ///
    /// # Safety
    ///
    /// `head` stays valid, and is not queued again, until `f` has run; `f`
    /// may free the object that holds it.
    pub unsafe fn call_rcu(&self, head: NonNull<RcuHead>, f: unsafe fn(NonNull<RcuHead>)) {
        let cookie = self.get_state();
        // SAFETY: the caller hands `head` over until `f` runs.
        unsafe {
            let h = &mut *head.as_ptr();
            h.next = None;
            h.func = Some(f);
            h.cookie = cookie.0;
        }
        let mut cbs = lock(&self.callbacks);
        match cbs.tail {
            // SAFETY: the tail is a queued head, valid until its callback runs.
            Some(t) => unsafe { (*t.as_ptr()).next = Some(head) },
            None => cbs.head = Some(head),
        }
        cbs.tail = Some(head);
        cbs.len += 1;
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.max_backlog.fetch_max(cbs.len, Ordering::Relaxed);
    }

    /// Runs the callbacks whose grace period has elapsed; returns how many.
    /// Does nothing inside a read-side section of the calling CPU.
    pub fn process_callbacks(&self) -> usize {
        if self.in_read_section() {
            return 0;
        }
        let mut n = 0;
        loop {
            let ready = {
                let mut cbs = lock(&self.callbacks);
                let Some(h) = cbs.head else { break };
                // SAFETY: queued heads are valid until their callback runs.
                let cookie = unsafe { (*h.as_ptr()).cookie };
                if !self.poll_state(GpCookie(cookie)) {
                    break;
                }
                // SAFETY: as above.
                cbs.head = unsafe { (*h.as_ptr()).next };
                if cbs.head.is_none() {
                    cbs.tail = None;
                }
                cbs.len -= 1;
                h
            };
            // SAFETY: the head is off the list; `call_rcu`'s caller made
            // `func` safe to run on it once, after the grace period.
            unsafe {
                if let Some(f) = (*ready.as_ptr()).func.take() {
                    f(ready);
                }
            }
            self.run.fetch_add(1, Ordering::Relaxed);
            n += 1;
        }
        n
    }

    /// Grace periods completed so far.
    pub fn grace_periods(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// The counters.
    pub fn stats(&self) -> RcuStats {
        RcuStats {
            grace_periods: self.grace_periods(),
            callbacks_queued: self.queued.load(Ordering::Relaxed),
            callbacks_run: self.run.load(Ordering::Relaxed),
            max_backlog: self.max_backlog.load(Ordering::Relaxed),
        }
    }
}

impl RcuReadGuard<'_> {
    /// A nested read-side section. It borrows this one, which stays open
    /// at least as long.
    #[inline]
    pub fn nest(&self) -> RcuReadGuard<'_> {
        // This CPU's, as this guard's: no need to ask which CPU runs.
        self.rcu.enter(self.cpu)
    }

    /// Linux's `rcu_dereference`: reads a published word (a table entry, or
    /// any pointer an updater publishes and later frees after a grace
    /// period) inside this section, ordered as the grace-period argument
    /// of the module documentation needs.
    #[inline]
    pub fn dereference(&self, slot: &crate::memory::Entry) -> u64 {
        load_entry(slot)
    }
}

impl Drop for RcuReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let c = &self.rcu.cpus[self.cpu];
        c.nesting.store(c.nesting.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize as StdUsize;

    std::thread_local!(static CPU: Cell<usize> = const { Cell::new(0) });
    fn cpu() -> usize {
        CPU.with(|c| c.get())
    }

    #[test]
    fn grace_period_waits_for_readers_on_this_cpu() {
        // SAFETY: this test's thread is the domain's one CPU.
        let rcu = unsafe { Rcu::new() };
        let r = rcu.read_lock();
        let c = rcu.get_state();
        assert!(!rcu.poll_state(c), "a reader from before the cookie is still inside");
        let nested = r.nest();
        drop(nested);
        assert!(!rcu.poll_state(c), "the outer section is still open");
        drop(r);
        assert!(rcu.poll_state(c));
        assert!(rcu.grace_periods() >= 1);
        let c2 = rcu.get_state();
        assert!(c2 > c);
        rcu.synchronize();
        assert!(rcu.poll_state(c2));
    }

    #[test]
    fn other_cpus_hold_grace_periods_until_quiescent() {
        // SAFETY: each thread sets its own CPU number (`CPU`) first.
        let rcu = unsafe { Rcu::with_cpus(cpu, 2) };
        CPU.with(|c| c.set(0));
        let cookie = rcu.get_state();
        assert!(!rcu.poll_state(cookie), "CPU 1 is online and has not reported");
        // CPU 1 reports from its own thread.
        std::thread::scope(|s| {
            s.spawn(|| {
                CPU.with(|c| c.set(1));
                assert!(rcu.quiescent());
            });
        });
        assert!(rcu.poll_state(cookie));
    }

    #[test]
    fn guests_and_idle_are_extended_quiescent_states() {
        // SAFETY: each thread sets its own CPU number (`CPU`) first.
        let rcu = unsafe { Rcu::with_cpus(cpu, 3) };
        CPU.with(|c| c.set(0));
        std::thread::scope(|s| {
            s.spawn(|| {
                CPU.with(|c| c.set(1));
                rcu.enter_extended();
            });
            s.spawn(|| {
                CPU.with(|c| c.set(2));
                rcu.offline();
            });
        });
        rcu.synchronize();
        assert!(rcu.grace_periods() >= 1);
        // Back from the guest: it counts again.
        std::thread::scope(|s| {
            s.spawn(|| {
                CPU.with(|c| c.set(1));
                rcu.exit_extended();
            });
        });
        let cookie = rcu.get_state();
        assert!(!rcu.poll_state(cookie), "CPU 1 is back online, not yet quiescent");
    }

    static RAN: StdUsize = StdUsize::new(0);
    unsafe fn bump(_: NonNull<RcuHead>) {
        RAN.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
    }

    #[test]
    fn callbacks_run_after_the_grace_period_never_inside_a_section() {
        // SAFETY: this test's thread is the domain's one CPU.
        let rcu = unsafe { Rcu::new() };
        let mut heads = [RcuHead::new(), RcuHead::new(), RcuHead::new()];
        let g = rcu.read_lock();
        for h in &mut heads {
            // SAFETY: the heads outlive the callbacks, run below.
            unsafe { rcu.call_rcu(NonNull::from(h), bump) };
        }
        assert_eq!(rcu.process_callbacks(), 0, "not inside a read-side section");
        drop(g);
        assert_eq!(rcu.process_callbacks(), 3);
        assert_eq!(RAN.load(core::sync::atomic::Ordering::SeqCst), 3);
        let st = rcu.stats();
        assert_eq!((st.callbacks_queued, st.callbacks_run, st.max_backlog), (3, 3, 3));
    }
}
