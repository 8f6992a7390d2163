//! Loom model of the grace-period machinery (`mmu::rcu`): an updater
//! unpublishes an object, waits for a grace period with
//! `get_state`/`poll_state`, and frees it, while readers on other CPUs
//! (brought online at their start, so possibly during the grace period)
//! read the published object inside read-side sections.
//!
//! The property checked: **no reader ever reads a freed object**. Each
//! object's data is a `loom::cell::UnsafeCell`: readers read it (`with`),
//! the free writes it (`with_mut`), so loom fails the model if the free
//! does not happen after a read that could see the object, in any
//! execution it explores (weak memory included, within loom's model of
//! it); a plain flag checked inside the section catches a free that comes
//! first in the run.
//!
//! Loom treats SeqCst loads and stores as AcqRel, so it cannot see the
//! store → load order `Rcu::online`/`exit_extended` get from SeqCst (the
//! state store, then the load of `started`); under `cfg(loom)` that one
//! place adds a SeqCst fence, which loom models (see
//! `Rcu::leave_quiescent`). Everything else is the code as built.
//!
//! Bounds: preemption bound 3 (`loom_common::builder`); the updater polls
//! at most `POLLS` times, yielding in between, and frees only if a poll
//! said the grace period had elapsed. Counters assert that the interesting
//! executions (a reader saw the old object and it was freed anyway; freed
//! while a CPU sat in a guest) were explored (`LOOM_COVERAGE=1` and
//! `--nocapture` print them).
#![cfg(loom)]

mod loom_common;

use std::sync::atomic::{AtomicBool as StdBool, AtomicUsize as StdUsize, Ordering as StdOrdering};
use std::sync::Arc;

use loom::cell::UnsafeCell;
use loom::sync::atomic::Ordering;
use loom::thread;
use loom_common::{builder, cpu, start_cpu};
use mmu::Entry as AtomicU64;
use mmu::Rcu;

const POLLS: usize = 3;
const FREED: u64 = 0xdead;

struct Obj {
    data: UnsafeCell<u64>,
    /// Oracle, in the order loom runs things.
    freed: StdBool,
}

struct Shared {
    rcu: Rcu,
    /// The published pointer: an index into `objs`.
    slot: AtomicU64,
    objs: [Obj; 2],
    /// Set by CPU 2 while it is in its extended quiescent state (oracle).
    cpu2_in_guest: StdBool,
}

// SAFETY: `Obj::data` is only accessed through loom's checked `with` and
// `with_mut`: a data race is a model failure, not UB that goes unseen.
unsafe impl Sync for Shared {}

impl Shared {
    fn new() -> Self {
        let obj = |v| Obj { data: UnsafeCell::new(v), freed: StdBool::new(false) };
        Self {
            // SAFETY: each loom thread has its own CPU number (`cpu`).
            rcu: unsafe { Rcu::with_cpus(cpu, 0) },
            slot: AtomicU64::new(0),
            objs: [obj(100), obj(101)],
            cpu2_in_guest: StdBool::new(false),
        }
    }

    /// One read-side section: dereference the published object. Returns
    /// its index.
    fn read(&self) -> usize {
        let g = self.rcu.read_lock();
        let i = g.dereference(&self.slot) as usize;
        let o = &self.objs[i];
        // SAFETY: a read of the object's data; loom checks it against the
        // free's write.
        let v = o.data.with(|p| unsafe { *p });
        assert_ne!(v, FREED, "reader read freed object {i}");
        assert_eq!(v, 100 + i as u64);
        assert!(!o.freed.load(StdOrdering::SeqCst), "object {i} freed inside a reader's section");
        drop(g);
        i
    }

    /// The updater, as CPU 0: unpublishes object 0, then frees it after a
    /// grace period (if one elapses within `POLLS` polls). Returns, if it
    /// freed it, whether CPU 2 was in its guest at that moment.
    fn update(&self) -> Option<bool> {
        start_cpu(&self.rcu, 0);
        self.slot.store(1, Ordering::Release);
        let cookie = self.rcu.get_state();
        let mut freed = None;
        for _ in 0..POLLS {
            if self.rcu.poll_state(cookie) {
                // SAFETY: loom checks this write against every read.
                self.objs[0].data.with_mut(|p| unsafe { *p = FREED });
                self.objs[0].freed.store(true, StdOrdering::SeqCst);
                freed = Some(self.cpu2_in_guest.load(StdOrdering::SeqCst));
                break;
            }
            thread::yield_now();
        }
        self.rcu.offline();
        freed
    }
}

#[derive(Default)]
struct Coverage {
    executions: StdUsize,
    freed: StdUsize,
    /// A reader saw object 0 and object 0 was freed in the same execution.
    old_read_then_freed: StdUsize,
    /// Object 0 was freed while CPU 2 sat in its extended quiescent state.
    freed_during_guest: StdUsize,
}

impl Coverage {
    fn report(&self, model: &str) {
        let n = |c: &StdUsize| c.load(StdOrdering::Relaxed);
        loom_common::report(
            model,
            &[
                ("executions", n(&self.executions)),
                ("freed", n(&self.freed)),
                ("old_read_then_freed", n(&self.old_read_then_freed)),
                ("freed_during_guest", n(&self.freed_during_guest)),
            ],
        );
    }
}

/// Two readers on CPUs 1 and 2 (CPU 1 reads twice, reporting a quiescent
/// state after each section) and the updater on CPU 0.
#[test]
fn readers_never_see_a_freed_object() {
    let cov: &'static Coverage = Box::leak(Box::default());
    builder(3).check(move || {
        let s = Arc::new(Shared::new());
        let readers: Vec<_> = [(1, 2), (2, 1)]
            .into_iter()
            .map(|(cpu, sections)| {
                let s = s.clone();
                thread::spawn(move || {
                    start_cpu(&s.rcu, cpu);
                    let mut saw_old = false;
                    for _ in 0..sections {
                        saw_old |= s.read() == 0;
                        assert!(s.rcu.quiescent());
                    }
                    s.rcu.offline();
                    saw_old
                })
            })
            .collect();
        let freed = s.update().is_some();
        let saw_old = readers.into_iter().fold(false, |a, r| a | r.join().unwrap());
        cov.executions.fetch_add(1, StdOrdering::Relaxed);
        if freed {
            cov.freed.fetch_add(1, StdOrdering::Relaxed);
            if saw_old {
                cov.old_read_then_freed.fetch_add(1, StdOrdering::Relaxed);
            }
        }
    });
    cov.report("rcu/readers");
    assert!(cov.freed.load(StdOrdering::Relaxed) > 0, "no execution freed the object");
    assert!(cov.old_read_then_freed.load(StdOrdering::Relaxed) > 0, "no reader saw it first");
}

/// CPU 1 reads, enters an extended quiescent state (a guest) and comes
/// back to read again; CPU 2 starts in a guest and comes back to read. The
/// updater must not wait for CPUs in guests, and a CPU coming back must not
/// see the object it freed.
#[test]
fn extended_quiescent_states() {
    let cov: &'static Coverage = Box::leak(Box::default());
    builder(3).check(move || {
        let s = Arc::new(Shared::new());
        let s1 = s.clone();
        let cpu1 = thread::spawn(move || {
            start_cpu(&s1.rcu, 1);
            let saw_old = s1.read() == 0;
            s1.rcu.enter_extended();
            s1.rcu.exit_extended();
            s1.read();
            s1.rcu.offline();
            saw_old
        });
        let s2 = s.clone();
        let cpu2 = thread::spawn(move || {
            start_cpu(&s2.rcu, 2);
            s2.rcu.enter_extended();
            s2.cpu2_in_guest.store(true, StdOrdering::SeqCst);
            thread::yield_now();
            s2.cpu2_in_guest.store(false, StdOrdering::SeqCst);
            s2.rcu.exit_extended();
            s2.read();
            s2.rcu.offline();
        });
        let freed = s.update();
        let saw_old = cpu1.join().unwrap();
        cpu2.join().unwrap();
        cov.executions.fetch_add(1, StdOrdering::Relaxed);
        if let Some(in_guest) = freed {
            cov.freed.fetch_add(1, StdOrdering::Relaxed);
            if saw_old {
                cov.old_read_then_freed.fetch_add(1, StdOrdering::Relaxed);
            }
            if in_guest {
                cov.freed_during_guest.fetch_add(1, StdOrdering::Relaxed);
            }
        }
    });
    cov.report("rcu/extended");
    assert!(cov.freed.load(StdOrdering::Relaxed) > 0, "no execution freed the object");
    assert!(cov.old_read_then_freed.load(StdOrdering::Relaxed) > 0, "no reader saw it first");
    assert!(
        cov.freed_during_guest.load(StdOrdering::Relaxed) > 0,
        "a CPU in a guest always held the grace period back"
    );
}
