//! The reverse map: for a physical page, the (address space, IPA) pairs
//! that map it. Linux finds a file page's mappings through
//! `mapping->i_mmap`; here a hypervisor marks the pages it lets a guest
//! alias or share as *tracked*, and the stage-2 operations keep their
//! mappings recorded:
//!
//! - `map` records every tracked page inside the mapped range (before the
//!   entries are written; a recorded mapping that is not there yet is
//!   harmless, because [`make_coherent`](crate::make_coherent) checks each
//!   alias still maps the page under its lock);
//! - `unmap` forgets them after the entries are gone, and dropping a
//!   [`Stage2`](crate::Stage2) forgets all of its own;
//! - collapsing in place and splitting keep every page at its IPA, so they
//!   change nothing here; copying collapse would move a tracked page away
//!   from its aliases and refuses a range that holds one.
//!
//! Bounded: [`RMAP_PAGES`] tracked pages of [`RMAP_MAPPINGS`] mappings
//! each, inline, so it allocates nothing. Untracked pages cost `map` and
//! `unmap` one relaxed load.
//!
//! Locking: one spin lock, a leaf. It is taken under page-table locks (by
//! `map` and `unmap`), and nothing takes a page-table lock while holding
//! it: `make_coherent` copies a page's mappings out and lets go before it
//! visits them.

use crate::addr::{Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::error::Error;
use crate::sync::{lock, AtomicUsize, Mutex, Ordering};

/// Pages a reverse map can track.
pub const RMAP_PAGES: usize = 64;
/// Mappings recorded per tracked page.
pub const RMAP_MAPPINGS: usize = 8;

/// One mapping of a tracked page: an IPA of the address space with
/// `vmid`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Mapping {
    /// The address space (its VMID, unique among the spaces sharing one
    /// reverse map).
    pub vmid: Vmid,
    /// The page's IPA there.
    pub ipa: Ipa,
}

const NO_MAPPING: Mapping = Mapping { vmid: Vmid(0), ipa: Ipa(0) };

/// A copy of a page's mappings.
#[derive(Clone, Copy, Debug)]
pub struct Mappings {
    items: [Mapping; RMAP_MAPPINGS],
    len: usize,
}

impl core::ops::Deref for Mappings {
    type Target = [Mapping];
    fn deref(&self) -> &[Mapping] {
        &self.items[..self.len]
    }
}

#[derive(Clone, Copy)]
struct Tracked {
    pa: PhysAddr,
    maps: Mappings,
}

const EMPTY: Mappings = Mappings { items: [NO_MAPPING; RMAP_MAPPINGS], len: 0 };

/// Slots keep their index while the page is tracked (a `map` that fails
/// undoes what it recorded by index).
struct Table {
    pages: [Option<Tracked>; RMAP_PAGES],
}

impl Table {
    fn find(&self, pa: PhysAddr) -> Option<usize> {
        self.pages.iter().position(|t| t.is_some_and(|t| t.pa == pa))
    }

    /// Slots of the tracked pages in `[pa, pa + size)`.
    fn in_range(&self, pa: u64, size: u64) -> impl Iterator<Item = usize> + '_ {
        (0..RMAP_PAGES)
            .filter(move |&i| self.pages[i].is_some_and(|t| t.pa.get().wrapping_sub(pa) < size))
    }

    fn maps(&mut self, i: usize) -> &mut Mappings {
        // Callers pass slots `find`/`in_range` returned under the same lock.
        &mut self.pages[i].as_mut().expect("slot of a tracked page").maps
    }
}

/// Which slots a `note_map` added a mapping to (one bit per slot).
#[derive(Clone, Copy, Default, Debug)]
#[must_use]
pub(crate) struct Noted(u64);

const _: () = assert!(RMAP_PAGES <= 64, "Noted has one bit per slot");

/// The reverse map shared by the address spaces whose pages may alias
/// (see the module documentation).
pub struct Rmap {
    table: Mutex<Table>,
    /// Tracked pages: lets `map`/`unmap` skip the lock when there are none.
    tracked: AtomicUsize,
}

impl Rmap {
    /// An empty reverse map.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            table: Mutex::new(Table { pages: [None; RMAP_PAGES] }),
            tracked: AtomicUsize::new(0),
        }
    }

    /// An empty reverse map (loom model).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            table: Mutex::new(Table { pages: [None; RMAP_PAGES] }),
            tracked: AtomicUsize::new(0),
        }
    }

    /// Pages tracked now.
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// Whether `pa` (a page address) is tracked.
    pub fn is_tracked(&self, pa: PhysAddr) -> bool {
        self.tracked() != 0 && lock(&self.table).find(pa).is_some()
    }

    /// The recorded mappings of `pa` (empty when it is not tracked).
    pub fn mappings(&self, pa: PhysAddr) -> Mappings {
        let t = lock(&self.table);
        t.find(pa).and_then(|i| t.pages[i]).map_or(EMPTY, |tr| tr.maps)
    }

    /// Starts tracking page `pa`, with `first` as its one mapping so far
    /// (the mapping that exists before tracking starts, which `map` did not
    /// record). Tracking a tracked page records `first` too.
    ///
    /// Errors: `Unaligned`; `OutOfMemory` when [`RMAP_PAGES`] pages are
    /// tracked, or the page has [`RMAP_MAPPINGS`] mappings.
    pub(crate) fn track(&self, pa: PhysAddr, first: Mapping) -> Result<(), Error> {
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(Error::Unaligned);
        }
        let mut t = lock(&self.table);
        let i = match t.find(pa) {
            Some(i) => i,
            None => {
                let i = t.pages.iter().position(Option::is_none).ok_or(Error::OutOfMemory)?;
                t.pages[i] = Some(Tracked { pa, maps: EMPTY });
                self.tracked.fetch_add(1, Ordering::Relaxed);
                i
            }
        };
        add(t.maps(i), first).map(|_| ())
    }

    /// Stops tracking `pa` if nothing maps it any more. True exactly once
    /// per tracking: the caller that gets it owns the page again (e.g. may
    /// free it); false while it is mapped, or when it is not tracked.
    pub fn release(&self, pa: PhysAddr) -> bool {
        let mut t = lock(&self.table);
        let Some(i) = t.find(pa) else { return false };
        if t.maps(i).len != 0 {
            return false;
        }
        t.pages[i] = None;
        self.tracked.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Whether any of `pages` is tracked.
    pub(crate) fn any_tracked(&self, pages: &[PhysAddr]) -> bool {
        if self.tracked() == 0 {
            return false;
        }
        let t = lock(&self.table);
        pages.iter().any(|&pa| t.find(pa).is_some())
    }

    /// Records that `vmid` maps `[pa, pa + size)` at `ipa`: every tracked
    /// page in the range gains a mapping. All or nothing: `OutOfMemory`
    /// (nothing recorded) when a page has no room. The result says what to
    /// [`forget`](Rmap::forget) if the mapping then fails.
    pub(crate) fn note_map(
        &self,
        vmid: Vmid,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
    ) -> Result<Noted, Error> {
        if self.tracked() == 0 {
            return Ok(Noted(0));
        }
        let mut t = lock(&self.table);
        let at = |tr: &Tracked| Mapping { vmid, ipa: Ipa(ipa.get() + (tr.pa.get() - pa.get())) };
        let mut slots = 0u64;
        for i in t.in_range(pa.get(), size) {
            let tr = t.pages[i].as_ref().expect("in_range yields tracked slots");
            if tr.maps.len == RMAP_MAPPINGS && !tr.maps.contains(&at(tr)) {
                return Err(Error::OutOfMemory);
            }
            slots |= 1 << i;
        }
        let mut added = 0u64;
        for i in (0..RMAP_PAGES).filter(|i| slots & (1 << i) != 0) {
            let m = at(t.pages[i].as_ref().expect("tracked slot"));
            // Room was checked above.
            if add(t.maps(i), m) == Ok(true) {
                added |= 1 << i;
            }
        }
        Ok(Noted(added))
    }

    /// Undoes a [`note_map`](Rmap::note_map) whose mapping failed: removes
    /// exactly the mappings it added. (A slot cannot change page meanwhile:
    /// a page with a mapping is never released.)
    pub(crate) fn forget(&self, noted: Noted, vmid: Vmid, ipa: Ipa, pa: PhysAddr) {
        if noted.0 == 0 {
            return;
        }
        let mut t = lock(&self.table);
        for i in (0..RMAP_PAGES).filter(|i| noted.0 & (1 << i) != 0) {
            let off = t.pages[i].as_ref().expect("noted slot").pa.get() - pa.get();
            let m = Mapping { vmid, ipa: Ipa(ipa.get() + off) };
            remove_if(t.maps(i), |x| x == m);
        }
    }

    /// Forgets the mappings `vmid` had in `[ipa, ipa + size)`.
    pub(crate) fn note_unmap(&self, vmid: Vmid, ipa: Ipa, size: u64) {
        if self.tracked() == 0 {
            return;
        }
        let mut t = lock(&self.table);
        for tr in t.pages.iter_mut().flatten() {
            remove_if(&mut tr.maps, |m| {
                m.vmid == vmid && m.ipa.get().wrapping_sub(ipa.get()) < size
            });
        }
    }
}

impl Default for Rmap {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds `m` to `maps` unless it is there; whether it was added.
fn add(maps: &mut Mappings, m: Mapping) -> Result<bool, Error> {
    if maps.contains(&m) {
        return Ok(false);
    }
    if maps.len == RMAP_MAPPINGS {
        return Err(Error::OutOfMemory);
    }
    maps.items[maps.len] = m;
    maps.len += 1;
    Ok(true)
}

/// Removes the mappings `drop` selects (order is not kept).
fn remove_if(maps: &mut Mappings, drop: impl Fn(Mapping) -> bool) {
    let mut k = 0;
    while k < maps.len {
        if drop(maps.items[k]) {
            maps.len -= 1;
            maps.items[k] = maps.items[maps.len];
        } else {
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Vmid = Vmid(1);
    const B: Vmid = Vmid(2);
    const P: PhysAddr = PhysAddr(0x8000_3000);

    #[test]
    fn map_and_unmap_keep_tracked_pages_recorded() {
        let r = Rmap::new();
        let _ = r.note_map(A, Ipa(0x1000_0000), PhysAddr(0x8000_0000), 0x20_0000).unwrap();
        assert!(r.mappings(P).is_empty(), "untracked pages are not recorded");
        r.track(P, Mapping { vmid: A, ipa: Ipa(0x4000_0000) }).unwrap();
        // A 2 MiB block covering P records P's IPA inside it.
        let _ = r.note_map(B, Ipa(0x1000_0000), PhysAddr(0x8000_0000), 0x20_0000).unwrap();
        let noted = r.note_map(A, Ipa(0x5000_0000), P, PAGE_SIZE).unwrap();
        // Recording it again adds nothing, so undoing that second note
        // leaves the first in place.
        let again = r.note_map(A, Ipa(0x5000_0000), P, PAGE_SIZE).unwrap();
        r.forget(again, A, Ipa(0x5000_0000), P);
        let got: std::vec::Vec<_> = r.mappings(P).iter().copied().collect();
        assert_eq!(
            got,
            [
                Mapping { vmid: A, ipa: Ipa(0x4000_0000) },
                Mapping { vmid: B, ipa: Ipa(0x1000_3000) },
                Mapping { vmid: A, ipa: Ipa(0x5000_0000) },
            ]
        );
        assert!(!r.release(P), "still mapped");
        r.forget(noted, A, Ipa(0x5000_0000), P);
        assert_eq!(r.mappings(P).len(), 2, "a failed map undoes what it recorded");
        let _ = r.note_map(A, Ipa(0x5000_0000), P, PAGE_SIZE).unwrap();
        r.note_unmap(A, Ipa(0x4000_0000), 0x1000_0000);
        r.note_unmap(B, Ipa(0x1000_0000), PAGE_SIZE * 3);
        assert_eq!(r.mappings(P).len(), 2, "other spaces and ranges are untouched");
        r.note_unmap(B, Ipa(0x1000_0000), 0x20_0000);
        assert!(!r.release(P));
        r.note_unmap(A, Ipa(0x5000_0000), PAGE_SIZE);
        assert!(r.release(P));
        assert!(!r.release(P), "released once");
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn full_tables_refuse_and_change_nothing() {
        let r = Rmap::new();
        for i in 0..RMAP_PAGES as u64 {
            r.track(PhysAddr(i * PAGE_SIZE), Mapping { vmid: A, ipa: Ipa(i * PAGE_SIZE) }).unwrap();
        }
        assert_eq!(r.track(PhysAddr(1 << 30), NO_MAPPING), Err(Error::OutOfMemory));
        assert_eq!(r.track(PhysAddr(1), NO_MAPPING), Err(Error::Unaligned));
        for k in 1..RMAP_MAPPINGS as u64 {
            let _ = r.note_map(B, Ipa(k << 30), PhysAddr(0), PAGE_SIZE).unwrap();
        }
        // Page 0 is full: a range covering pages 0 and 1 records nothing.
        assert!(matches!(
            r.note_map(B, Ipa(0x40 << 30), PhysAddr(0), 2 * PAGE_SIZE),
            Err(Error::OutOfMemory)
        ));
        assert_eq!(r.mappings(PhysAddr(PAGE_SIZE)).len(), 1);
        // Recording a mapping that is there needs no room.
        let _ = r.note_map(B, Ipa(1 << 30), PhysAddr(0), PAGE_SIZE).unwrap();
        assert_eq!(r.mappings(PhysAddr(0)).len(), RMAP_MAPPINGS);
    }
}
