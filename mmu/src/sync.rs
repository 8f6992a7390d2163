//! Every atomic and lock the tables use comes from here, so that the loom
//! models (`--cfg loom`) can swap in loom's checked versions in one place.

#[cfg(not(loom))]
pub use core::sync::atomic::{fence, AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// A page-table lock (Linux's `spinlock_t ptl`). It guards no data of its
/// own: holding it is what allows writing the entries of the tables it
/// covers (see `docs/ARCHITECTURE.md`).
pub type PtLock = Mutex<()>;
/// Held [`PtLock`].
pub type PtLockGuard<'a> = MutexGuard<'a, ()>;

/// A spin mutex around data (loom's mutex in models).
#[cfg(not(loom))]
pub type Mutex<T> = spin::Mutex<T>;
/// Held [`Mutex`].
#[cfg(not(loom))]
pub type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
/// A mutex around data (loom model).
#[cfg(loom)]
pub type Mutex<T> = loom::sync::Mutex<T>;
/// Held [`Mutex`] (loom model).
#[cfg(loom)]
pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

/// Takes a lock.
#[inline]
pub fn lock<T>(l: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(loom))]
    {
        l.lock()
    }
    #[cfg(loom)]
    {
        l.lock().unwrap()
    }
}

/// Takes a lock if it is free.
#[inline]
pub fn try_lock<T>(l: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    #[cfg(not(loom))]
    {
        l.try_lock()
    }
    #[cfg(loom)]
    {
        l.try_lock().ok()
    }
}

/// A new, unlocked page-table lock.
#[cfg(not(loom))]
pub const fn new_lock() -> PtLock {
    spin::Mutex::new(())
}
/// A new, unlocked page-table lock (loom model).
#[cfg(loom)]
pub fn new_lock() -> PtLock {
    loom::sync::Mutex::new(())
}

/// Spin-loop hint while waiting.
#[inline]
pub fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
