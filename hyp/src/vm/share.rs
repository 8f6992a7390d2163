//! Bookkeeping for aliases and shares (`docs/HYPERVISOR.md`, "Aliases
//! and shares"): a VM's alias table (IPAs that are to map another page's
//! frame) and its offers (pages it offers to share with a named VM). Pure
//! data structures, tested on the host; `vm` keeps them under each VM's
//! sharing lock and does the mapping.
//!
//! Sharing takes the consent of both VMs, in the shape of Arm FF-A's
//! memory share: the owner *offers* a page of its own to one named VM and
//! gets a [`Handle`]; only that VM's *accept* of the handle at an IPA of
//! its choosing makes an alias of the page there; the owner may *revoke*
//! the offer (the receiver's alias goes with it), the receiver may
//! *relinquish* its alias (the offer stays).
//!
//! Each entry and each offer holds its frame in the reverse map
//! (`mmu::Rmap::hold`), so the frame lives until the last of them and of
//! its mappings is gone.

/// Entries of one VM's alias table (`HYP_ALIAS`, and the shares it
/// accepted): more fail with NO_MEMORY until an entry goes.
pub const ALIAS_ENTRIES: usize = 16;
/// Offers one VM may have out at once (`HYP_SHARE`).
pub const OFFERS: usize = 16;

/// Names an offer: the owner's VM id, the offer's slot and a generation, so
/// that a revoked handle never names a later offer in the same slot.
/// Positive as a 32-bit signed value (bits 31..28 are zero), so ARM32
/// guests get it whole in `r0`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Handle(pub u32);

impl Handle {
    const GEN_BITS: u32 = 16;
    const SLOT_BITS: u32 = 4;

    fn new(owner: usize, slot: usize, generation: u16) -> Self {
        debug_assert!(owner < 256 && slot < 1 << Self::SLOT_BITS);
        Self(
            ((owner as u32) << (Self::GEN_BITS + Self::SLOT_BITS))
                | ((slot as u32) << Self::GEN_BITS)
                | u32::from(generation),
        )
    }

    /// Reads a handle from a guest register: `None` if the value cannot be
    /// a handle at all.
    pub fn from_reg(v: u64) -> Option<Self> {
        (v >> 28 == 0).then_some(Self(v as u32))
    }

    /// The id of the VM that made the offer.
    pub fn owner(self) -> usize {
        (self.0 >> (Self::GEN_BITS + Self::SLOT_BITS)) as usize
    }

    fn slot(self) -> usize {
        ((self.0 >> Self::GEN_BITS) & ((1 << Self::SLOT_BITS) - 1)) as usize
    }
}

const _: () = assert!(OFFERS <= 1 << Handle::SLOT_BITS);

/// Why an alias entry exists.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// `HYP_ALIAS`: another page of the same VM.
    Alias,
    /// `HYP_ACCEPT` of this offer.
    Share(Handle),
}

/// One alias: the page at `ipa` is to map frame `pa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AliasEntry {
    /// The alias's IPA (a page).
    pub ipa: u64,
    /// The frame it maps.
    pub pa: u64,
    /// Why.
    pub origin: Origin,
}

/// The table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// One VM's aliases: at most [`ALIAS_ENTRIES`], one per IPA.
#[derive(Debug)]
pub struct AliasTable {
    slots: [Option<AliasEntry>; ALIAS_ENTRIES],
}

impl Default for AliasTable {
    fn default() -> Self {
        Self::new()
    }
}

impl AliasTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self { slots: [None; ALIAS_ENTRIES] }
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry at `ipa`, if `ipa` is an alias.
    pub fn get(&self, ipa: u64) -> Option<AliasEntry> {
        self.slots.iter().flatten().find(|e| e.ipa == ipa).copied()
    }

    /// Whether an alias lies in `[base, base + size)`.
    pub fn any_in(&self, base: u64, size: u64) -> bool {
        self.slots.iter().flatten().any(|e| e.ipa.wrapping_sub(base) < size)
    }

    /// Whether an entry comes from `handle`.
    pub fn has_share(&self, handle: Handle) -> bool {
        self.slots.iter().flatten().any(|e| e.origin == Origin::Share(handle))
    }

    /// Whether [`insert`](Self::insert) at `ipa` would succeed: `ipa` has
    /// an entry (to replace) or there is a free slot.
    pub fn can_insert(&self, ipa: u64) -> bool {
        self.get(ipa).is_some() || self.slots.iter().any(Option::is_none)
    }

    /// Makes `ipa` an alias of `pa`, replacing its entry if it has one;
    /// returns the replaced entry. `Full` changes nothing.
    pub fn insert(&mut self, e: AliasEntry) -> Result<Option<AliasEntry>, Full> {
        if let Some(old) = self.slots.iter_mut().flatten().find(|x| x.ipa == e.ipa) {
            return Ok(Some(core::mem::replace(old, e)));
        }
        let free = self.slots.iter_mut().find(|s| s.is_none()).ok_or(Full)?;
        *free = Some(e);
        Ok(None)
    }

    /// Removes and returns one entry that `pick` selects, if any (callers
    /// loop: each removal is followed by work under the same lock).
    pub fn take_one(&mut self, pick: impl Fn(&AliasEntry) -> bool) -> Option<AliasEntry> {
        let slot = self.slots.iter_mut().find(|s| s.as_ref().is_some_and(&pick))?;
        slot.take()
    }

    /// Removes and returns one entry in `[base, base + size)`, if any.
    pub fn take_in(&mut self, base: u64, size: u64) -> Option<AliasEntry> {
        self.take_one(|e| e.ipa.wrapping_sub(base) < size)
    }
}

/// A page offered to another VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Its handle.
    pub handle: Handle,
    /// The offered page's IPA in the owner.
    pub ipa: u64,
    /// Its frame.
    pub pa: u64,
    /// The VM it is offered to.
    pub to: usize,
}

/// One VM's offers, at most [`OFFERS`].
#[derive(Debug)]
pub struct Offers {
    owner: usize,
    slots: [Option<Offer>; OFFERS],
    generations: [u16; OFFERS],
}

impl Offers {
    /// No offers yet, for VM `owner`.
    pub const fn new(owner: usize) -> Self {
        Self { owner, slots: [None; OFFERS], generations: [0; OFFERS] }
    }

    /// Offers out now.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether another offer fits.
    pub fn has_room(&self) -> bool {
        self.slots.iter().any(Option::is_none)
    }

    /// Records an offer of the page at `ipa` (frame `pa`) to VM `to`;
    /// returns its handle. `Full` changes nothing.
    pub fn insert(&mut self, ipa: u64, pa: u64, to: usize) -> Result<Handle, Full> {
        let slot = self.slots.iter().position(Option::is_none).ok_or(Full)?;
        let g = &mut self.generations[slot];
        *g = g.wrapping_add(1);
        let handle = Handle::new(self.owner, slot, *g);
        self.slots[slot] = Some(Offer { handle, ipa, pa, to });
        Ok(handle)
    }

    /// The live offer `handle` names, if any.
    pub fn get(&self, handle: Handle) -> Option<Offer> {
        if handle.owner() != self.owner {
            return None;
        }
        self.slots.get(handle.slot()).copied().flatten().filter(|o| o.handle == handle)
    }

    /// Removes the offer `handle` names and returns it.
    pub fn remove(&mut self, handle: Handle) -> Option<Offer> {
        let o = self.get(handle)?;
        self.slots[handle.slot()] = None;
        Some(o)
    }

    /// Removes and returns one offer, if any (a reset drops them all).
    pub fn take_any(&mut self) -> Option<Offer> {
        self.slots.iter_mut().find(|s| s.is_some())?.take()
    }

    /// The offers made to VM `to`, in slot order.
    pub fn to_vm(&self, to: usize) -> impl Iterator<Item = Offer> + '_ {
        self.slots.iter().flatten().filter(move |o| o.to == to).copied()
    }
}

/// What a VM's sharing lock protects.
#[derive(Debug)]
pub struct Sharing {
    /// Its aliases (own, and shares it accepted).
    pub aliases: AliasTable,
    /// Pages it offers.
    pub offers: Offers,
}

impl Sharing {
    /// Nothing aliased or offered, for VM `id`.
    pub const fn new(id: usize) -> Self {
        Self { aliases: AliasTable::new(), offers: Offers::new(id) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 0x8000_3000;
    const Q: u64 = 0x8000_7000;

    fn alias(ipa: u64, pa: u64) -> AliasEntry {
        AliasEntry { ipa, pa, origin: Origin::Alias }
    }

    #[test]
    fn table_insert_replace_remove() {
        let mut t = AliasTable::new();
        assert!(t.is_empty());
        assert_eq!(t.insert(alias(0x4100_0000, P)), Ok(None));
        assert_eq!(t.insert(alias(0x4110_0000, P)), Ok(None));
        assert_eq!(t.get(0x4100_0000).map(|e| e.pa), Some(P));
        assert_eq!(t.get(0x4100_1000), None);
        // Replacing returns the old entry and takes no new slot.
        assert_eq!(t.insert(alias(0x4100_0000, Q)), Ok(Some(alias(0x4100_0000, P))));
        assert_eq!(t.len(), 2);
        assert!(t.any_in(0x4100_0000, 0x20_0000));
        assert!(!t.any_in(0x4120_0000, 0x20_0000));
        assert!(!t.any_in(0x4100_1000, 0xf_f000), "the end is exclusive");
        assert!(t.any_in(0x4100_1000, 0xf_f000 + 0x1000));
        let mut gone = [t.take_in(0x4000_0000, 0x1000_0000), t.take_in(0x4000_0000, 0x1000_0000)]
            .map(|e| e.unwrap().pa);
        gone.sort_unstable();
        assert_eq!(gone, [P, Q]);
        assert!(t.is_empty());
        assert_eq!(t.take_in(0, u64::MAX), None);
    }

    #[test]
    fn full_table_refuses_new_ipas_only() {
        let mut t = AliasTable::new();
        for i in 0..ALIAS_ENTRIES as u64 {
            assert!(t.can_insert(i << 12));
            assert_eq!(t.insert(alias(i << 12, P)), Ok(None));
        }
        let new = (ALIAS_ENTRIES as u64) << 12;
        assert!(!t.can_insert(new));
        assert_eq!(t.insert(alias(new, P)), Err(Full));
        assert_eq!(t.get(new), None, "a refused insert changes nothing");
        // An IPA that has an entry can still be re-aliased.
        assert!(t.can_insert(0));
        assert_eq!(t.insert(alias(0, Q)).map(|o| o.map(|e| e.pa)), Ok(Some(P)));
        assert_eq!(t.len(), ALIAS_ENTRIES);
        // Ranges near the top of the address space do not wrap.
        assert!(!t.any_in(!0xfff_u64, 0x1000));
    }

    #[test]
    fn handles_name_one_offer_of_one_owner() {
        let mut o = Offers::new(3);
        let h = o.insert(0x4100_0000, P, 2).unwrap();
        assert_eq!(h.owner(), 3);
        assert_eq!(Handle::from_reg(u64::from(h.0)), Some(h));
        assert!((h.0 as i32) > 0, "positive in an ARM32 r0");
        assert_eq!(o.get(h).map(|x| (x.pa, x.to)), Some((P, 2)));
        // Another owner's table does not know it.
        assert_eq!(Offers::new(4).get(h), None);
        // Revoked, then the slot is reused: the old handle is dead.
        assert_eq!(o.remove(h).map(|x| x.handle), Some(h));
        let h2 = o.insert(0x4100_0000, Q, 2).unwrap();
        assert_ne!(h, h2);
        assert_eq!(o.get(h), None);
        assert_eq!(o.remove(h), None);
        assert_eq!(o.get(h2).map(|x| x.pa), Some(Q));
        // Values that cannot be handles at all.
        assert_eq!(Handle::from_reg(u64::MAX), None);
        assert_eq!(Handle::from_reg(1 << 28), None);
    }

    #[test]
    fn offers_are_bounded_and_listed_per_receiver() {
        let mut o = Offers::new(1);
        for i in 0..OFFERS as u64 {
            assert!(o.has_room());
            o.insert(i << 12, P + (i << 12), 2 + (i as usize % 2)).unwrap();
        }
        assert!(!o.has_room());
        assert_eq!(o.insert(0, P, 2), Err(Full));
        assert_eq!(o.to_vm(2).count(), OFFERS / 2);
        assert_eq!(o.to_vm(9).count(), 0);
        let mut n = 0;
        while o.take_any().is_some() {
            n += 1;
        }
        assert_eq!((n, o.is_empty()), (OFFERS, true));
    }

    #[test]
    fn shares_are_found_by_handle() {
        let mut o = Offers::new(1);
        let h = o.insert(0x4100_0000, P, 2).unwrap();
        let mut t = AliasTable::new();
        assert!(!t.has_share(h));
        t.insert(AliasEntry { ipa: 0x4200_0000, pa: P, origin: Origin::Share(h) }).unwrap();
        t.insert(alias(0x4300_0000, P)).unwrap();
        assert!(t.has_share(h));
        let e = t.take_one(|e| e.origin == Origin::Share(h)).unwrap();
        assert_eq!(e.ipa, 0x4200_0000);
        assert!(!t.has_share(h));
        assert_eq!(t.len(), 1);
    }
}
