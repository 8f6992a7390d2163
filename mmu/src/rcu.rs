//! Read-copy-update for the hypervisor's lockless table walkers.
//!
//! **Placeholder implementation, final API.** This version detects a grace
//! period by observing a moment when no reader at all is inside a read-side
//! section (one global reader count). It is correct but can be starved by
//! back-to-back readers and does not scale; the per-CPU version with
//! quiescent states at guest entry and idle replaces the internals, not the
//! API (issue 4).
//!
//! Ordering (the C++ model's rules for SeqCst fences): a reader
//! increments the count with a SeqCst read-modify-write, then reads table
//! entries that lead to tables with SeqCst loads ([`load_entry`]; as cheap
//! as Acquire on AArch64, ARMv7 and x86). An updater detaches a table,
//! then executes a SeqCst fence X before loading the count. If the
//! reader's increment precedes X in the single total order S, the
//! updater's load sees it (or a later value) and waits. Otherwise X
//! precedes the reader's SeqCst entry loads in S, so they observe the
//! detach (stored before X): the reader never reaches the old table. The
//! reader's Release decrement orders all its reads before the updater's
//! Acquire load of zero, which precedes the free.

use crate::sync::{fence, AtomicU64, AtomicUsize, Ordering};

/// An RCU domain shared by every address space of the hypervisor.
pub struct Rcu {
    readers: AtomicUsize,
    completed: AtomicU64,
}

/// Proof of being inside a read-side section: table memory reached under
/// it stays valid until it drops. Guards nest.
#[must_use = "dropping the guard ends the read-side section"]
pub struct RcuReadGuard<'r> {
    rcu: &'r Rcu,
    /// A nested guard borrows its parent, which keeps the section open.
    nested: bool,
}

/// Reads a table entry inside a read-side section. SeqCst, for the
/// ordering argument above; it compiles to the same instruction as an
/// Acquire load on the architectures we run on.
#[inline]
pub fn load_entry(slot: &AtomicU64) -> u64 {
    slot.load(Ordering::SeqCst)
}

/// A grace-period cookie from [`Rcu::get_state`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct GpCookie(pub(crate) u64);

impl Rcu {
    /// A new domain with no readers.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self { readers: AtomicUsize::new(0), completed: AtomicU64::new(0) }
    }

    /// A new domain with no readers (loom model).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self { readers: AtomicUsize::new(0), completed: AtomicU64::new(0) }
    }

    /// Enters a read-side section (Linux's `rcu_read_lock()`).
    #[inline]
    pub fn read_lock(&self) -> RcuReadGuard<'_> {
        // SeqCst: in the total order with the updater's fence (see above).
        self.readers.fetch_add(1, Ordering::SeqCst);
        RcuReadGuard { rcu: self, nested: false }
    }

    /// A cookie that [`Rcu::poll_state`] accepts once every reader that
    /// might have seen state from before this call has finished (Linux's
    /// `get_state_synchronize_rcu()`). Take it after unpublishing.
    pub fn get_state(&self) -> GpCookie {
        fence(Ordering::SeqCst);
        GpCookie(self.completed.load(Ordering::Acquire) + 1)
    }

    /// Whether the grace period named by `cookie` has elapsed; tries to end
    /// one if not (Linux's `poll_state_synchronize_rcu()`).
    pub fn poll_state(&self, cookie: GpCookie) -> bool {
        let seen = self.completed.load(Ordering::Acquire);
        if seen >= cookie.0 {
            return true;
        }
        fence(Ordering::SeqCst);
        if self.readers.load(Ordering::Acquire) == 0 {
            // Every cookie up to seen + 1 was taken before `seen` was read,
            // so before this moment with no readers.
            self.completed.fetch_max(seen + 1, Ordering::AcqRel);
            return seen + 1 >= cookie.0;
        }
        false
    }

    /// Waits for a grace period (Linux's `synchronize_rcu()`). Must not be
    /// called inside a read-side section: it would wait for itself.
    pub fn synchronize(&self) {
        let cookie = self.get_state();
        while !self.poll_state(cookie) {
            crate::sync::spin_hint();
        }
    }

    /// Grace periods completed so far.
    pub fn grace_periods(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }
}

#[cfg(not(loom))]
impl Default for Rcu {
    fn default() -> Self {
        Self::new()
    }
}

impl<'r> RcuReadGuard<'r> {
    /// A nested read-side section. It borrows this one, which stays open
    /// at least as long, so nesting costs nothing.
    pub fn nest<'g>(&'g self) -> RcuReadGuard<'g> {
        RcuReadGuard { rcu: self.rcu, nested: true }
    }
}

impl Drop for RcuReadGuard<'_> {
    fn drop(&mut self) {
        if !self.nested {
            // Release: our table reads happen before a freer sees zero.
            self.rcu.readers.fetch_sub(1, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn grace_period_waits_for_readers() {
        let rcu = Rcu::new();
        let r = rcu.read_lock();
        let c = rcu.get_state();
        assert!(!rcu.poll_state(c), "a reader from before the cookie is still inside");
        let nested = r.nest();
        drop(nested);
        assert!(!rcu.poll_state(c), "the outer section is still open");
        drop(r);
        assert!(rcu.poll_state(c));
        assert_eq!(rcu.grace_periods(), 1);
        // Later cookies need a later grace period.
        let c2 = rcu.get_state();
        assert!(c2 > c);
        rcu.synchronize();
        assert!(rcu.poll_state(c2));
    }
}
