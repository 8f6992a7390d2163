//! Aliases and shares: one frame mapped at several IPAs, in one VM
//! (`HYP_ALIAS`) or, with both VMs' consent, in two (`HYP_SHARE` offers a
//! page to a named VM, which `HYP_ACCEPT`s it at an IPA of its own), kept
//! coherent by `mmu::make_coherent` on the fault that maps an alias.
//!
//! An alias entry holds its frame in the reverse map from the call that
//! makes it until the entry goes (unmap, remap, relinquish, revoke, reset);
//! an offer holds its frame until it is revoked or its owner resets. The
//! alias is mapped lazily, on the guest's first access to it.

use core::sync::atomic::{fence, Ordering};

use mmu::{Attrs, ErrorKind, Ipa, PhysAddr};
use spin::MutexGuard;

use super::share::{AliasEntry, Handle, Origin, Sharing};
use super::{Error, Vm, VmStats, BLOCK, HUGE, PAGE};
use crate::hypercall::CallError;
use crate::machine::Machine;

impl<M: Machine> Vm<M> {
    /// After a translation fault: if `ipa` is an alias, maps its frame
    /// there (a 4 KiB page) and makes the frame's mappings coherent.
    /// `None` if it is not an alias.
    pub fn fault_alias(&self, ipa: u64) -> Option<Result<(), Error>> {
        if self.alias_count.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let page = ipa & !(PAGE - 1);
        let t = self.sharing.lock();
        let pa = PhysAddr(t.aliases.get(page)?.pa);
        Some(self.map_alias(&t, page, pa).map(|_| ()))
    }

    /// Maps the alias `page` → `pa` (its entry in `t`, whose lock the
    /// caller holds) and, under the lock of the level-3 table it was mapped
    /// in, makes the frame's mappings coherent: false if it was mapped so
    /// already.
    fn map_alias(&self, t: &Sharing, page: u64, pa: PhysAddr) -> Result<bool, Error> {
        match self.s2.translate(Ipa(page)) {
            Some(tr) if tr.level == 3 && tr.pa == pa => return Ok(false),
            // A fresh page a racing fault mapped before the alias existed.
            Some(_) => self.unmap_frames(t, page, PAGE)?,
            None => {}
        }
        let coherence = {
            let rcu = self.rcu().read_lock();
            let mut pte = match self.s2.map_page_locked(&rcu, Ipa(page), pa, &Attrs::RAM) {
                Ok(pte) => pte,
                // A racing populate: it takes its page out again
                // (`unshadow`) and the guest faults once more.
                Err(e) if e.kind() == ErrorKind::AlreadyMapped => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            VmStats::bump(&self.stats.pages);
            self.make_coherent(&mut pte, page)
        };
        if let Some(c) = coherence {
            self.finish_coherence(page, c);
        }
        Ok(true)
    }

    /// Makes the page at `src` a tracked 4 KiB mapping with one more hold
    /// on its frame, and returns the frame: faults it in first if it is
    /// not mapped (as the guest's access would: an alias not mapped yet
    /// maps its frame), splits the block around it if it is in one. `t` is
    /// this VM's sharing state, locked.
    fn hold_source(&self, t: &Sharing, src: u64) -> Result<PhysAddr, Error> {
        // Each round makes progress unless a racing collapse or fault undid
        // it; the bound only stops a livelock.
        for _ in 0..8 {
            match self.s2.translate(Ipa(src)) {
                None => match t.aliases.get(src) {
                    Some(e) => {
                        self.map_alias(t, src, PhysAddr(e.pa))?;
                    }
                    None => {
                        self.map_fresh_page(src)?;
                    }
                },
                Some(tr) if tr.level == 3 => match self.s2.hold_page(Ipa(src)) {
                    Ok(pa) => return Ok(pa),
                    // Collapsed or unmapped meanwhile: look again.
                    Err(e) if e.kind() == ErrorKind::NotMapped => {}
                    Err(e) => return Err(e.into()),
                },
                Some(tr) => {
                    let size = if tr.level == 2 { BLOCK } else { HUGE };
                    match self.s2.split(Ipa(src & !(size - 1)), tr.level) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotABlock => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(Error::Contended("the source page kept changing"))
    }

    /// Records `e` in this VM's alias table (`t`, locked by the caller) and
    /// unmaps what `e.ipa` mapped: its next access faults and maps `e.pa`.
    /// The caller took a hold on `e.pa` for the entry; on error it is
    /// dropped and nothing else changes.
    fn add_alias(&self, t: &mut Sharing, e: AliasEntry) -> Result<(), CallError> {
        let old = match t.aliases.insert(e) {
            Ok(old) => old,
            Err(_) => {
                self.drop_hold(e.pa);
                return Err(CallError::NoMemory("alias table full"));
            }
        };
        // Published before the unmap: see `populate`.
        self.alias_count.store(t.aliases.len(), Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Err(err) = self.unmap_frames(t, e.ipa, PAGE) {
            // Nothing was unmapped: put the table back as it was.
            match old {
                Some(o) => {
                    let _ = t.aliases.insert(o);
                }
                None => {
                    let _ = t.aliases.take_one(|x| x.ipa == e.ipa);
                }
            }
            self.alias_count.store(t.aliases.len(), Ordering::SeqCst);
            self.drop_hold(e.pa);
            return Err(err.into());
        }
        if let Some(o) = old {
            self.drop_hold(o.pa);
        }
        Ok(())
    }

    /// `HYP_ALIAS`: the page at `dst` becomes another mapping of the frame
    /// at `src` (mapped now if it is not), from `dst`'s next access on.
    pub fn alias(&self, src: u64, dst: u64) -> Result<(), CallError> {
        let mut t = self.sharing.lock();
        if !t.aliases.can_insert(dst) {
            return Err(CallError::NoMemory("alias table full"));
        }
        let pa = self.hold_source(&t, src)?;
        self.add_alias(&mut t, AliasEntry { ipa: dst, pa: pa.get(), origin: Origin::Alias })
    }

    /// `HYP_SHARE`: offers the page at `src` to VM `to`; returns the
    /// offer's handle. Nothing is mapped in `to` until it accepts.
    pub fn offer(&self, src: u64, to: &Vm<M>) -> Result<Handle, CallError> {
        if core::ptr::eq(self, to) {
            return Err(CallError::Invalid("a VM cannot share with itself"));
        }
        let mut t = self.sharing.lock();
        if !t.offers.has_room() {
            return Err(CallError::NoMemory("offers full"));
        }
        let pa = self.hold_source(&t, src)?;
        t.offers.insert(src, pa.get(), to.id).map_err(|_| {
            self.drop_hold(pa.get());
            CallError::NoMemory("offers full")
        })
    }

    /// This VM's sharing state and `other`'s, locked in VM id order.
    fn lock_pair<'a>(
        &'a self,
        other: &'a Vm<M>,
    ) -> (MutexGuard<'a, Sharing>, MutexGuard<'a, Sharing>) {
        if self.id < other.id {
            let mine = self.sharing.lock();
            (mine, other.sharing.lock())
        } else {
            let theirs = other.sharing.lock();
            (self.sharing.lock(), theirs)
        }
    }

    /// `HYP_ACCEPT`: the page at `dst` becomes an alias of the page offered
    /// to this VM under `handle`, from `dst`'s next access on. An offer is
    /// accepted at one IPA at a time.
    pub fn accept(&self, handle: Handle, dst: u64) -> Result<(), CallError> {
        let owner =
            self.guests.vm(handle.owner() as u64).ok_or(CallError::Invalid("no such offer"))?;
        if core::ptr::eq(owner, self) {
            return Err(CallError::Invalid("no such offer"));
        }
        // Both held until the entry is in: a revoke meanwhile finds it.
        let (mut mine, theirs) = self.lock_pair(owner);
        let offer = theirs.offers.get(handle).ok_or(CallError::Invalid("no such offer"))?;
        if offer.to != self.id {
            return Err(CallError::Invalid("offered to another VM"));
        }
        if mine.aliases.has_share(handle) {
            return Err(CallError::Invalid("accepted already"));
        }
        if !mine.aliases.can_insert(dst) {
            return Err(CallError::NoMemory("alias table full"));
        }
        self.guests.rmap.hold(PhysAddr(offer.pa))?;
        let e = AliasEntry { ipa: dst, pa: offer.pa, origin: Origin::Share(handle) };
        self.add_alias(&mut mine, e)?;
        VmStats::bump(&self.stats.shares_in);
        Ok(())
    }

    /// Drops this VM's aliases from `handle` (`t` locked by the caller):
    /// their IPAs are unmapped and their holds dropped. How many went.
    fn drop_share(&self, t: &mut Sharing, handle: Handle) -> usize {
        let mut n = 0;
        while let Some(e) = t.aliases.take_one(|e| e.origin == Origin::Share(handle)) {
            // A page mapping (aliases are never inside blocks): nothing to
            // split, so this cannot run out of memory.
            if let Err(err) = self.unmap_frames(t, e.ipa, PAGE) {
                self.warn(format_args!("unmapping shared page {:#x}: {err}", e.ipa));
            }
            self.drop_hold(e.pa);
            n += 1;
        }
        self.alias_count.store(t.aliases.len(), Ordering::SeqCst);
        n
    }

    /// `HYP_REVOKE`: withdraws this VM's offer `handle`; the receiver's
    /// alias of it, if it accepted, is unmapped and dropped.
    pub fn revoke(&self, handle: Handle) -> Result<(), CallError> {
        if handle.owner() != self.id {
            return Err(CallError::Invalid("not this VM's offer"));
        }
        let to =
            self.sharing.lock().offers.get(handle).ok_or(CallError::Invalid("no such offer"))?.to;
        let target = self.guests.vm(to as u64).ok_or(CallError::Invalid("no such offer"))?;
        let (mut mine, mut theirs) = self.lock_pair(target);
        // Looked up again under both locks: a racing revoke took it first.
        let offer = mine.offers.remove(handle).ok_or(CallError::Invalid("no such offer"))?;
        target.drop_share(&mut theirs, handle);
        self.drop_hold(offer.pa);
        Ok(())
    }

    /// `HYP_RELINQUISH`: this VM drops its alias of the offer `handle` (the
    /// offer stays, and may be accepted again).
    pub fn relinquish(&self, handle: Handle) -> Result<(), CallError> {
        let mut t = self.sharing.lock();
        if self.drop_share(&mut t, handle) == 0 {
            return Err(CallError::Invalid("not accepted"));
        }
        Ok(())
    }

    /// `HYP_OFFERED`: the `n`-th offer made to this VM (by owner id, then
    /// slot), with its owner and whether this VM has accepted it.
    pub fn offered(&self, n: usize) -> Option<(Handle, usize, bool)> {
        let mut seen = 0;
        for owner in self.guests.vms() {
            if core::ptr::eq(*owner, self) {
                continue;
            }
            // One sharing lock at a time.
            let found = {
                let t = owner.sharing.lock();
                let mut offers = t.offers.to_vm(self.id);
                let k = n - seen;
                let hit = offers.nth(k).map(|o| o.handle);
                if hit.is_none() {
                    seen += t.offers.to_vm(self.id).count();
                }
                hit
            };
            if let Some(h) = found {
                let accepted = self.sharing.lock().aliases.has_share(h);
                return Some((h, owner.id, accepted));
            }
        }
        None
    }
}
