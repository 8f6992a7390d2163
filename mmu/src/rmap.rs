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
//! - `unmap` forgets each removed mapping when it hands the leaf back to
//!   its caller ([`Stage2::unmap_with`](crate::Stage2::unmap_with)), and
//!   dropping a [`Stage2`](crate::Stage2) forgets all of its own;
//! - collapsing in place and splitting keep every page at its IPA, so they
//!   change nothing here; copying collapse would move a tracked page away
//!   from its aliases and refuses a range that holds one.
//!
//! Besides its mappings, a tracked page has *holds*: references its user
//! keeps for mappings to come (an alias the guest has not touched yet, an
//! offer to share the page). A page is tracked only while it needs to be:
//! once at most one mapping and no hold is left, it is an ordinary page
//! again, so the map never fills with pages that no longer alias anything.
//! Who gets the page back is decided under the map's lock, exactly once:
//! the unmap or the [`Rmap::unhold`] that leaves it with no mapping and no
//! hold.
//!
//! Bounded: [`RMAP_PAGES`] tracked pages of [`RMAP_MAPPINGS`] mappings
//! each, inline, so it allocates nothing; and each address space may be
//! charged for at most a quota of them ([`Rmap::with_quota`]: the space
//! whose mapping a page had when it became tracked pays), so that one
//! space cannot take all the room. Untracked pages cost `map` and `unmap`
//! one relaxed load.
//!
//! Locking: one spin lock, a leaf. It is taken under page-table locks (by
//! `map`), and nothing takes a page-table lock while holding it:
//! `make_coherent` copies a page's mappings out and lets go before it
//! visits them.

use crate::addr::{Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::error::Error;
use crate::sync::{lock, AtomicUsize, Mutex, Ordering};

/// Pages a reverse map can track.
#[cfg(not(loom))]
pub const RMAP_PAGES: usize = 256;
/// Pages a reverse map can track (loom models: small enough for the stack
/// of a loom thread, which the map is built on).
#[cfg(loom)]
pub const RMAP_PAGES: usize = 16;
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

const EMPTY: Mappings = Mappings { items: [NO_MAPPING; RMAP_MAPPINGS], len: 0 };

#[derive(Clone, Copy)]
struct Tracked {
    pa: PhysAddr,
    /// The space charged for it (see [`Rmap::with_quota`]).
    owner: Vmid,
    /// References other than mappings (see the module documentation).
    holds: u32,
    maps: Mappings,
}

impl Tracked {
    /// Whether one more hold fits: every mapping recorded (with `adding`,
    /// unless it is recorded already or is no mapping) and every hold, plus
    /// this one, within [`RMAP_MAPPINGS`].
    fn has_room_for_hold(&self, adding: &Mapping) -> bool {
        let extra = usize::from(*adding != NO_MAPPING && !self.maps.contains(adding));
        self.maps.len + extra + (self.holds as usize) < RMAP_MAPPINGS
    }
}

/// A slot of the open-addressed table. `Gone` marks a slot whose page was
/// untracked: lookups probe past it, new pages may take it.
#[derive(Clone, Copy)]
enum Slot {
    Empty,
    Gone,
    Used(Tracked),
}

/// Tracked pages by frame number, open addressing with linear probing.
/// Removal leaves `Gone` behind rather than moving entries, so that a probe
/// never skips a page tracked after a removed one.
struct Table {
    slots: [Slot; RMAP_PAGES],
}

const _: () = assert!(RMAP_PAGES.is_power_of_two());

/// Where the probe for `pa` starts.
fn home(pa: PhysAddr) -> usize {
    // Fibonacci hashing of the frame number.
    ((pa.get() >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % RMAP_PAGES
}

impl Table {
    fn find(&self, pa: PhysAddr) -> Option<usize> {
        let h = home(pa);
        for k in 0..RMAP_PAGES {
            let i = (h + k) % RMAP_PAGES;
            match &self.slots[i] {
                Slot::Empty => return None,
                Slot::Used(t) if t.pa == pa => return Some(i),
                _ => {}
            }
        }
        None
    }

    /// A free slot for `pa` (not tracked yet).
    fn free_slot(&self, pa: PhysAddr) -> Option<usize> {
        let h = home(pa);
        (0..RMAP_PAGES)
            .map(|k| (h + k) % RMAP_PAGES)
            .find(|&i| !matches!(self.slots[i], Slot::Used(_)))
    }

    fn tracked(&mut self, i: usize) -> &mut Tracked {
        match &mut self.slots[i] {
            Slot::Used(t) => t,
            // Callers pass slots `find`/`in_range` returned under the
            // same lock.
            _ => unreachable!("slot {i} of a tracked page is empty"),
        }
    }

    /// `TooManyMappings` unless every tracked page in `[pa, pa + size)`
    /// can record its mapping at the matching IPA of `ipa..` by `vmid`.
    fn check_room(&self, vmid: Vmid, ipa: Ipa, pa: PhysAddr, size: u64) -> Result<(), Error> {
        for i in self.in_range(pa.get(), size) {
            if let Slot::Used(tr) = &self.slots[i] {
                let m = Mapping { vmid, ipa: Ipa(ipa.get() + (tr.pa.get() - pa.get())) };
                if tr.maps.len == RMAP_MAPPINGS && !tr.maps.contains(&m) {
                    return Err(Error::TooManyMappings { pa: tr.pa });
                }
            }
        }
        Ok(())
    }

    /// Slots of the tracked pages in `[pa, pa + size)`.
    fn in_range(&self, pa: u64, size: u64) -> impl Iterator<Item = usize> + '_ {
        let one = (size == PAGE_SIZE).then(|| self.find(PhysAddr(pa))).flatten();
        let scan = (size != PAGE_SIZE).then_some(0..RMAP_PAGES).into_iter().flatten();
        one.into_iter().chain(scan.filter(
            move |&i| matches!(&self.slots[i], Slot::Used(t) if t.pa.get().wrapping_sub(pa) < size),
        ))
    }

    fn charged_to(&self, vmid: Vmid) -> usize {
        self.slots.iter().filter(|s| matches!(s, Slot::Used(t) if t.owner == vmid)).count()
    }

    /// Untracks slot `i` if what is left of it no longer needs tracking:
    /// no hold and at most one mapping. Returns whether the page's user
    /// gets it back now (no mapping at all).
    fn settle(&mut self, i: usize, tracked: &AtomicUsize) -> bool {
        let t = self.tracked(i);
        if t.holds != 0 || t.maps.len > 1 {
            return false;
        }
        let free = t.maps.len == 0;
        self.slots[i] = Slot::Gone;
        tracked.fetch_sub(1, Ordering::Relaxed);
        free
    }
}

/// The reverse map shared by the address spaces whose pages may alias
/// (see the module documentation).
pub struct Rmap {
    table: Mutex<Table>,
    /// Tracked pages: lets `map`/`unmap` skip the lock when there are none.
    tracked: AtomicUsize,
    /// Pages one address space may be charged for.
    quota: usize,
}

impl Rmap {
    /// An empty reverse map with no per-space quota.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self::with_quota(RMAP_PAGES)
    }

    /// An empty reverse map in which each address space may be charged for
    /// at most `per_space` tracked pages (the ones that became tracked with
    /// a mapping of that space as their first): with `n` spaces and
    /// `n * per_space <= RMAP_PAGES`, no space can take another's room.
    #[cfg(not(loom))]
    pub const fn with_quota(per_space: usize) -> Self {
        Self {
            table: Mutex::new(Table { slots: [Slot::Empty; RMAP_PAGES] }),
            tracked: AtomicUsize::new(0),
            quota: per_space,
        }
    }

    /// An empty reverse map (loom model).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_quota(RMAP_PAGES)
    }

    /// See the non-loom `with_quota`.
    #[cfg(loom)]
    pub fn with_quota(per_space: usize) -> Self {
        Self {
            table: Mutex::new(Table { slots: [Slot::Empty; RMAP_PAGES] }),
            tracked: AtomicUsize::new(0),
            quota: per_space,
        }
    }

    /// Pages tracked now.
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// Tracked pages `vmid` is charged for.
    pub fn charged_to(&self, vmid: Vmid) -> usize {
        if self.tracked() == 0 {
            return 0;
        }
        lock(&self.table).charged_to(vmid)
    }

    /// Whether `pa` (a page address) is tracked.
    pub fn is_tracked(&self, pa: PhysAddr) -> bool {
        self.tracked() != 0 && lock(&self.table).find(pa).is_some()
    }

    /// Whether a page of `[pa, pa + size)` is tracked.
    pub fn any_tracked_in(&self, pa: PhysAddr, size: u64) -> bool {
        self.tracked() != 0 && lock(&self.table).in_range(pa.get(), size).next().is_some()
    }

    /// The recorded mappings of `pa` (empty when it is not tracked).
    pub fn mappings(&self, pa: PhysAddr) -> Mappings {
        let mut t = lock(&self.table);
        t.find(pa).map_or(EMPTY, |i| t.tracked(i).maps)
    }

    /// The holds on `pa` (0 when it is not tracked).
    pub fn holds(&self, pa: PhysAddr) -> u32 {
        let mut t = lock(&self.table);
        t.find(pa).map_or(0, |i| t.tracked(i).holds)
    }

    /// Starts tracking page `pa`, with `first` as its one mapping so far
    /// (the mapping that exists before tracking starts, which `map` did not
    /// record), charged to `first.vmid`; with `hold`, one hold is added in
    /// the same step, so the page cannot stop being tracked in between.
    /// Tracking a tracked page records `first` (and the hold) too.
    ///
    /// Errors, with nothing changed: `Unaligned`; `ReverseMapFull` when
    /// [`RMAP_PAGES`] pages are tracked, `QuotaExceeded` when `first.vmid`
    /// has its quota, `TooManyMappings` when the page has
    /// [`RMAP_MAPPINGS`] mappings.
    pub(crate) fn track(&self, pa: PhysAddr, first: Mapping, hold: bool) -> Result<(), Error> {
        Error::check_aligned(pa.get(), PAGE_SIZE)?;
        let mut t = lock(&self.table);
        let i = match t.find(pa) {
            Some(i) => {
                let e = t.tracked(i);
                if hold && !e.has_room_for_hold(&first) {
                    return Err(Error::TooManyMappings { pa });
                }
                add(&mut e.maps, first).map_err(|()| Error::TooManyMappings { pa })?;
                i
            }
            None => {
                if t.charged_to(first.vmid) >= self.quota {
                    return Err(Error::QuotaExceeded { vmid: first.vmid });
                }
                let i = t.free_slot(pa).ok_or(Error::ReverseMapFull { pa })?;
                let mut maps = EMPTY;
                // An empty list has room.
                let _ = add(&mut maps, first);
                t.slots[i] = Slot::Used(Tracked { pa, owner: first.vmid, holds: 0, maps });
                self.tracked.fetch_add(1, Ordering::Relaxed);
                i
            }
        };
        if hold {
            t.tracked(i).holds += 1;
        }
        Ok(())
    }

    /// Adds a hold on `pa`, a tracked page (`NotTracked` if it is not).
    /// A hold stands for a mapping to come, so it needs room for one more
    /// recorded mapping beside those there and those the other holds stand
    /// for (`TooManyMappings` otherwise): a mapping a hold stood for can
    /// always be recorded.
    pub fn hold(&self, pa: PhysAddr) -> Result<(), Error> {
        let mut t = lock(&self.table);
        let i = t.find(pa).ok_or(Error::NotTracked { pa })?;
        let e = t.tracked(i);
        if !e.has_room_for_hold(&NO_MAPPING) {
            return Err(Error::TooManyMappings { pa });
        }
        e.holds += 1;
        Ok(())
    }

    /// The lowest IPA in `[from, end)` at which `vmid` maps a tracked page
    /// (as recorded), if any: lets a caller visit the aliased pages of a
    /// range without looking at every page of it.
    pub fn next_mapped(&self, vmid: Vmid, from: Ipa, end: Ipa) -> Option<Ipa> {
        if self.tracked() == 0 {
            return None;
        }
        let t = lock(&self.table);
        t.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Used(tr) => Some(tr.maps),
                _ => None,
            })
            .flat_map(|maps| maps.items.into_iter().take(maps.len))
            .filter(|m| m.vmid == vmid && m.ipa >= from && m.ipa < end)
            .map(|m| m.ipa)
            .min()
    }

    /// Drops a hold on `pa`. True exactly when the caller gets the page
    /// back: nothing maps it and nothing else holds it (it is no longer
    /// tracked then). A page left with one mapping and no hold is no
    /// longer tracked either, but stays with that mapping. Dropping a hold
    /// that does not exist is a bookkeeping bug: ignored (false).
    pub fn unhold(&self, pa: PhysAddr) -> bool {
        let mut t = lock(&self.table);
        let Some(i) = t.find(pa) else { return false };
        let e = t.tracked(i);
        if e.holds == 0 {
            return false;
        }
        e.holds -= 1;
        t.settle(i, &self.tracked)
    }

    /// Stops tracking `pa` if nothing maps or holds it any more. True
    /// exactly once per tracking: the caller that gets it owns the page
    /// again (e.g. may free it); false while it is mapped or held, or when
    /// it is not tracked.
    pub fn release(&self, pa: PhysAddr) -> bool {
        let mut t = lock(&self.table);
        let Some(i) = t.find(pa) else { return false };
        let e = t.tracked(i);
        if e.maps.len != 0 || e.holds != 0 {
            return false;
        }
        t.settle(i, &self.tracked)
    }

    /// Whether any of `pages` is tracked.
    pub(crate) fn any_tracked(&self, pages: &[PhysAddr]) -> bool {
        if self.tracked() == 0 {
            return false;
        }
        let t = lock(&self.table);
        pages.iter().any(|&pa| t.find(pa).is_some())
    }

    /// Checks that `vmid` mapping `[pa, pa + size)` at `ipa` could be
    /// recorded: `TooManyMappings` if a tracked page in the range has no
    /// room left for it. For prepare passes: nothing is recorded.
    pub(crate) fn check_room(
        &self,
        vmid: Vmid,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
    ) -> Result<(), Error> {
        if self.tracked() == 0 {
            return Ok(());
        }
        let t = lock(&self.table);
        t.check_room(vmid, ipa, pa, size)
    }

    /// Records that `vmid` maps `[pa, pa + size)` at `ipa`: every tracked
    /// page in the range gains the mapping (one it has already is not
    /// recorded twice). All or nothing: `TooManyMappings`, with nothing
    /// recorded, when a page has no room.
    pub(crate) fn note_map(
        &self,
        vmid: Vmid,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
    ) -> Result<(), Error> {
        if self.tracked() == 0 {
            return Ok(());
        }
        let mut t = lock(&self.table);
        t.check_room(vmid, ipa, pa, size)?;
        // A page (the fault path) is one probe; a block looks at every slot.
        let slots = match size {
            PAGE_SIZE => t.find(pa).map_or(0..0, |i| i..i + 1),
            _ => 0..RMAP_PAGES,
        };
        for i in slots {
            if let Slot::Used(tr) = &mut t.slots[i] {
                let off = tr.pa.get().wrapping_sub(pa.get());
                if off < size {
                    // Room was checked above.
                    let _ = add(&mut tr.maps, Mapping { vmid, ipa: Ipa(ipa.get() + off) });
                }
            }
        }
        Ok(())
    }

    /// Forgets the mappings `vmid` had in `[ipa, ipa + size)` (teardown:
    /// nobody is told about the pages).
    pub(crate) fn note_unmap(&self, vmid: Vmid, ipa: Ipa, size: u64) {
        if self.tracked() == 0 {
            return;
        }
        let mut t = lock(&self.table);
        for slot in t.slots.iter_mut() {
            if let Slot::Used(tr) = slot {
                remove_if(&mut tr.maps, |m| {
                    m.vmid == vmid && m.ipa.get().wrapping_sub(ipa.get()) < size
                });
            }
        }
    }

    /// `vmid` no longer maps page `pa` at `ipa` (an unmap removed the
    /// entry and invalidated it). True when the caller owns the page now:
    /// it is not tracked, or this was its last reference. A tracked page
    /// left with one mapping and no hold is untracked (false: it stays
    /// with that mapping).
    pub(crate) fn forget_page(&self, vmid: Vmid, ipa: Ipa, pa: PhysAddr) -> bool {
        if self.tracked() == 0 {
            return true;
        }
        let mut t = lock(&self.table);
        let Some(i) = t.find(pa) else { return true };
        remove_if(&mut t.tracked(i).maps, |m| m == Mapping { vmid, ipa });
        t.settle(i, &self.tracked)
    }
}

impl Default for Rmap {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds `m` to `maps` unless it is there; whether it was added. `Err`
/// when the list is full.
fn add(maps: &mut Mappings, m: Mapping) -> Result<bool, ()> {
    if maps.contains(&m) {
        return Ok(false);
    }
    if maps.len == RMAP_MAPPINGS {
        return Err(());
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const A: Vmid = Vmid(1);
    const B: Vmid = Vmid(2);
    const P: PhysAddr = PhysAddr(0x8000_3000);

    fn m(vmid: Vmid, ipa: u64) -> Mapping {
        Mapping { vmid, ipa: Ipa(ipa) }
    }

    #[test]
    fn map_and_unmap_keep_tracked_pages_recorded() {
        let r = Rmap::new();
        r.note_map(A, Ipa(0x1000_0000), PhysAddr(0x8000_0000), 0x20_0000).unwrap();
        assert!(r.mappings(P).is_empty(), "untracked pages are not recorded");
        r.track(P, m(A, 0x4000_0000), false).unwrap();
        // A 2 MiB block covering P records P's IPA inside it.
        r.note_map(B, Ipa(0x1000_0000), PhysAddr(0x8000_0000), 0x20_0000).unwrap();
        r.note_map(A, Ipa(0x5000_0000), P, PAGE_SIZE).unwrap();
        // Recording it again adds nothing.
        r.note_map(A, Ipa(0x5000_0000), P, PAGE_SIZE).unwrap();
        let got: std::vec::Vec<_> = r.mappings(P).iter().copied().collect();
        assert_eq!(got, [m(A, 0x4000_0000), m(B, 0x1000_3000), m(A, 0x5000_0000)]);
        assert!(!r.release(P), "still mapped");
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
            r.track(PhysAddr(i * PAGE_SIZE), m(A, i * PAGE_SIZE), false).unwrap();
        }
        let far = PhysAddr(1 << 30);
        assert_eq!(r.track(far, NO_MAPPING, false), Err(Error::ReverseMapFull { pa: far }));
        assert_eq!(
            r.track(PhysAddr(1), NO_MAPPING, false),
            Err(Error::Unaligned { value: 1, align: PAGE_SIZE })
        );
        for k in 1..RMAP_MAPPINGS as u64 {
            r.note_map(B, Ipa(k << 30), PhysAddr(0), PAGE_SIZE).unwrap();
        }
        // Page 0 is full: a range covering pages 0 and 1 records nothing.
        assert!(matches!(
            r.note_map(B, Ipa(0x40 << 30), PhysAddr(0), 2 * PAGE_SIZE),
            Err(Error::TooManyMappings { pa: PhysAddr(0) })
        ));
        assert_eq!(r.mappings(PhysAddr(PAGE_SIZE)).len(), 1);
        // Recording a mapping that is there needs no room.
        r.note_map(B, Ipa(1 << 30), PhysAddr(0), PAGE_SIZE).unwrap();
        assert_eq!(r.mappings(PhysAddr(0)).len(), RMAP_MAPPINGS);
    }

    #[test]
    fn each_space_has_its_quota() {
        let r = Rmap::with_quota(4);
        for i in 0..4u64 {
            r.track(PhysAddr(i << 12), m(A, i << 12), false).unwrap();
        }
        assert_eq!(
            r.track(PhysAddr(9 << 12), m(A, 0), true),
            Err(Error::QuotaExceeded { vmid: A })
        );
        assert_eq!((r.charged_to(A), r.holds(PhysAddr(9 << 12))), (4, 0), "nothing changed");
        // B still has all of its room, and tracking A's page again (with
        // B's mapping recorded) costs A nothing more.
        r.track(PhysAddr(9 << 12), m(B, 0), true).unwrap();
        r.track(PhysAddr(0), m(B, 0x7000), false).unwrap();
        assert_eq!((r.charged_to(A), r.charged_to(B)), (4, 1));
        // A page A no longer needs frees A's room: A's mapping goes, B's
        // is left alone, and the page is an ordinary page of B's again.
        assert!(!r.forget_page(A, Ipa(0), PhysAddr(0)), "still mapped by B");
        assert_eq!(r.charged_to(A), 3);
        r.track(PhysAddr(10 << 12), m(A, 0), false).unwrap();
    }

    #[test]
    fn holds_keep_pages_tracked_and_the_last_reference_owns_them() {
        let r = Rmap::new();
        r.track(P, m(A, 0x1000), true).unwrap();
        r.hold(P).unwrap();
        assert_eq!(r.hold(PhysAddr(0x9000)), Err(Error::NotTracked { pa: PhysAddr(0x9000) }));
        assert_eq!(r.holds(P), 2);
        // The one mapping goes: held, so still tracked, nobody owns it.
        assert!(!r.forget_page(A, Ipa(0x1000), P));
        assert!(!r.release(P), "held");
        assert!(!r.unhold(P));
        assert!(r.unhold(P), "last hold, no mapping: the caller owns it");
        assert_eq!(r.tracked(), 0);
        assert!(!r.unhold(P), "a hold that does not exist is ignored");
    }

    #[test]
    fn holds_reserve_room_for_their_mappings() {
        let r = Rmap::new();
        r.track(P, m(A, 0x1000), true).unwrap();
        for _ in 2..RMAP_MAPPINGS {
            r.hold(P).unwrap();
        }
        // One mapping and seven holds: the eight records are spoken for.
        assert_eq!(r.hold(P), Err(Error::TooManyMappings { pa: P }));
        assert_eq!(r.track(P, m(B, 0x2000), true), Err(Error::TooManyMappings { pa: P }));
        assert_eq!(r.holds(P), RMAP_MAPPINGS as u32 - 1, "refusals change nothing");
        // Every hold's mapping can be recorded.
        for k in 1..RMAP_MAPPINGS as u64 {
            r.note_map(B, Ipa(k << 20), P, PAGE_SIZE).unwrap();
        }
        assert_eq!(r.mappings(P).len(), RMAP_MAPPINGS);
        assert_eq!(r.next_mapped(B, Ipa(2 << 20), Ipa(5 << 20)), Some(Ipa(2 << 20)));
        assert_eq!(r.next_mapped(B, Ipa((2 << 20) + 1), Ipa(5 << 20)), Some(Ipa(3 << 20)));
        assert_eq!(r.next_mapped(B, Ipa(8 << 20), Ipa(u64::MAX)), None);
        assert_eq!(r.next_mapped(A, Ipa(0), Ipa(0x1000)), None, "the end is exclusive");
        assert_eq!(r.next_mapped(A, Ipa(0), Ipa(0x1001)), Some(Ipa(0x1000)));
    }

    #[test]
    fn a_page_left_with_one_mapping_is_no_longer_tracked() {
        let r = Rmap::new();
        r.track(P, m(A, 0x1000), true).unwrap();
        r.note_map(B, Ipa(0x2000), P, PAGE_SIZE).unwrap();
        // The hold goes: two mappings left, still an alias.
        assert!(!r.unhold(P));
        assert!(r.is_tracked(P));
        // One of them goes: the other keeps the page as an ordinary one.
        assert!(!r.forget_page(B, Ipa(0x2000), P));
        assert!(!r.is_tracked(P));
        assert_eq!(r.tracked(), 0);
        // The last mapping's unmap owns it (untracked pages always are).
        assert!(r.forget_page(A, Ipa(0x1000), P));
    }

    #[test]
    fn slots_are_found_past_untracked_neighbours() {
        let r = Rmap::new();
        // Pages whose probes collide: many more than fit one home slot.
        let pages: std::vec::Vec<PhysAddr> =
            (0..RMAP_PAGES as u64).map(|i| PhysAddr(i << 12)).collect();
        for (i, &p) in pages.iter().enumerate() {
            r.track(p, m(A, (i as u64) << 12), false).unwrap();
        }
        // Untrack every other page, then all the rest must still be found
        // and new pages must fit in the freed slots.
        for &p in pages.iter().step_by(2) {
            r.note_unmap(A, Ipa(p.get()), PAGE_SIZE);
            assert!(r.release(p));
        }
        for &p in pages.iter().skip(1).step_by(2) {
            assert!(r.is_tracked(p), "{p:?}");
        }
        for i in 0..RMAP_PAGES as u64 / 2 {
            r.track(PhysAddr((1 << 30) + (i << 12)), m(B, 0), false).unwrap();
        }
        assert_eq!(r.tracked(), RMAP_PAGES);
    }
}
