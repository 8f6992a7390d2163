//! Demand paging of a VM's RAM: loading images, populating on faults
//! (pages, 2 MiB or 1 GiB blocks by policy), premapping, unmap and remap,
//! collapse and split.
//!
//! Nothing here allocates in proportion to guest memory: the flash maps
//! one erased frame wherever the firmware is not, unmap and reset
//! free each frame as `mmu` hands it back (`Stage2::unmap_with`, a bounded
//! gather), premap asks `mmu` for the next hole instead of looking at
//! every page, and collapse decisions are `mmu`'s (`collapse_check`).

use core::sync::atomic::{fence, Ordering};

use mmu::{Attrs, CollapseKind, ErrorKind, Granularity, Ipa, Leaf, PhysAddr};

use super::share::Sharing;
use super::{Error, Policy, Vm, VmStats, BLOCK, HUGE, PAGE, RAM_BASE};
use crate::layout::{FLASH_BASE, FLASH_ERASED};
use crate::machine::Machine;

impl<M: Machine> Vm<M> {
    /// Places `data` at `ipa` in guest RAM, followed by zeros up to
    /// `mem_size` bytes, mapping fresh pages where nothing is mapped yet
    /// (or using the page already there), with the cache maintenance code
    /// needs. In the VM's flash the same, but the fresh pages read as
    /// erased (`0xff`) around `data` and are mapped read-only; a flash page
    /// `data` does not reach maps the erased page ([`Vm::erased`]), and one
    /// it does is never written in the erased page, but in a fresh frame
    /// that replaces it.
    pub fn load(&self, ipa: u64, data: &[u8], mem_size: u64) -> Result<(), Error> {
        let m = self.machine();
        let end = ipa + mem_size.max(data.len() as u64);
        let (start, size) = (ipa & !(PAGE - 1), end.next_multiple_of(PAGE) - (ipa & !(PAGE - 1)));
        let flash = self.in_flash(start, size);
        if !flash && !self.in_ram(start, size) {
            return Err(Error::OutsideRam { ipa: start, size });
        }
        let prot = if flash { self.flash_prot } else { self.ram };
        let mut page = ipa & !(PAGE - 1);
        while page < end {
            // The part of `data` that falls in this page.
            let lo = page.max(ipa);
            let hi = (page + PAGE).min(ipa + data.len() as u64);
            if flash && lo >= hi {
                self.populate_flash(page)?;
                page += PAGE;
                continue;
            }
            let pa = match self.s2.translate(Ipa(page)) {
                Some(t) if !self.is_erased_page(t.pa) => t.pa,
                mapped => {
                    if mapped.is_some() {
                        // The erased page: out of the way first (never
                        // aliased, so a plain unmap; it is not freed).
                        self.s2.unmap(Ipa(page), PAGE)?;
                    }
                    let pa = m.alloc_frames(1).ok_or(Error::NoFrames { frames: 1 })?;
                    if flash {
                        m.fill_page(pa, FLASH_ERASED);
                    }
                    if let Err(e) = self.s2.map_page_prot(Ipa(page), pa, prot) {
                        m.free_frames(pa, 1);
                        return Err(e.into());
                    }
                    VmStats::bump(&self.stats.pages);
                    pa
                }
            };
            if lo < hi {
                let bytes = &data[(lo - ipa) as usize..(hi - ipa) as usize];
                m.write_phys(PhysAddr(pa.get() + (lo - page)), bytes);
            }
            m.clean_inval_poc(pa, PAGE);
            page += PAGE;
        }
        m.icache_inval_all();
        Ok(())
    }

    /// Maps all of guest RAM now, as faults would (for comparing demand
    /// paging against memory mapped in advance): each hole `mmu` finds is
    /// populated from its start, a block where one fits.
    pub fn premap(&self) -> Result<(), Error> {
        let end = RAM_BASE + self.ram_size;
        let mut from = RAM_BASE;
        while let Some((hole, size)) = self.s2.next_hole(Ipa(from), end - from) {
            let h = hole.get();
            let block_fits = self.policy() != Policy::Pages && h % BLOCK == 0 && size >= BLOCK;
            if block_fits {
                self.populate(h)?;
            } else {
                self.map_fresh_page(h)?;
            }
            from = h;
        }
        Ok(())
    }

    /// Populates guest RAM at `ipa` after a translation fault: a zeroed
    /// 2 MiB (or 1 GiB) block under the block policies where the block lies
    /// in RAM and holds no alias, otherwise a zeroed page. A racing vCPU
    /// that mapped it first wins.
    pub fn populate(&self, ipa: u64) -> Result<(), Error> {
        if !self.in_ram(ipa & !(PAGE - 1), PAGE) {
            return Err(Error::OutsideRam { ipa: ipa & !(PAGE - 1), size: PAGE });
        }
        let m = self.machine();
        let policy = self.policy();
        for (size, gran, wanted) in [
            (HUGE, Granularity::Largest, policy == Policy::Huge),
            (BLOCK, Granularity::Max2M, policy != Policy::Pages),
        ] {
            let base = ipa & !(size - 1);
            if !wanted || !self.in_ram(base, size) {
                continue;
            }
            let frames = (size / PAGE) as usize;
            let Some(pa) = m.alloc_frames(frames) else { continue };
            m.clean_inval_poc(pa, size);
            match self.map_block(base, pa, size, gran) {
                Ok(()) => {
                    VmStats::bump(&self.stats.blocks);
                    return Ok(());
                }
                // Pages already there, a racing block, or an alias in the
                // range: fall back.
                Err(_) => m.free_frames(pa, frames),
            }
        }
        let page = ipa & !(PAGE - 1);
        if self.map_fresh_page(page)? {
            // A HYP_ALIAS/ACCEPT making `page` an alias may have unmapped it
            // just before this mapped it: one of the two sees the other (the
            // entry count is stored before that unmap, and read here after
            // the map, both with SeqCst fences between).
            fence(Ordering::SeqCst);
            if self.alias_count.load(Ordering::SeqCst) != 0 {
                self.unshadow(page);
            }
        }
        Ok(())
    }

    /// Populates the VM's flash at `ipa` after a translation fault: the
    /// VM's erased page ([`Vm::erased`], all `0xff`), mapped read-only
    /// and executable (the firmware's own pages are mapped when it is
    /// loaded). Allocates no frame, only the stage-2 tables that the page
    /// needs (at most a level-3 table per 2 MiB of flash, 64 in all). A
    /// racing vCPU that mapped it first wins.
    pub fn populate_flash(&self, ipa: u64) -> Result<(), Error> {
        let page = ipa & !(PAGE - 1);
        let Some(erased) = self.erased.filter(|_| self.in_flash(page, PAGE)) else {
            return Err(Error::OutsideRam { ipa: page, size: PAGE });
        };
        match self.s2.map_page_prot(Ipa(page), erased, self.flash_prot) {
            Ok(()) => {
                VmStats::bump(&self.stats.pages);
                Ok(())
            }
            // Another vCPU faulted on the same page first.
            Err(e) if e.kind() == ErrorKind::AlreadyMapped => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Maps a fresh block unless an alias lies in its range: under the
    /// sharing lock, so that no alias entry appears between the check and
    /// the map (an alias under a block would never fault). `Aliased` when
    /// refused.
    fn map_block(&self, ipa: u64, pa: PhysAddr, size: u64, gran: Granularity) -> Result<(), Error> {
        let t = self.sharing.lock();
        if t.aliases.any_in(ipa, size) {
            return Err(Error::Aliased { ipa });
        }
        Ok(self.s2.map(Ipa(ipa), pa, size, &Attrs::RAM, gran)?)
    }

    /// Maps a fresh zeroed frame at `page`; false when a racing vCPU had
    /// mapped the page first.
    pub(super) fn map_fresh_page(&self, page: u64) -> Result<bool, Error> {
        let m = self.machine();
        let pa = m.alloc_frames(1).ok_or(Error::NoFrames { frames: 1 })?;
        m.clean_inval_poc(pa, PAGE);
        match self.s2.map_page_prot(Ipa(page), pa, self.ram) {
            Ok(()) => {
                VmStats::bump(&self.stats.pages);
                Ok(true)
            }
            Err(e) => {
                m.free_frames(pa, 1);
                // Another vCPU faulted on the same page first.
                if e.kind() == ErrorKind::AlreadyMapped {
                    Ok(false)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// `populate` mapped a fresh page at `page` while it became an alias:
    /// takes the fresh page out again, so the next access maps the alias.
    fn unshadow(&self, page: u64) {
        let t = self.sharing.lock();
        let Some(e) = t.aliases.get(page) else { return };
        let shadowed = self.s2.translate(Ipa(page)).is_some_and(|tr| tr.pa.get() != e.pa);
        if shadowed {
            if let Err(err) = self.unmap_frames(&t, page, PAGE) {
                self.warn(format_args!("alias at {page:#x} stays shadowed: {err}"));
            }
        }
    }

    /// Frees what an unmap handed back, if it is this VM's to free: not
    /// a tracked frame something else still maps or holds (`owned`
    /// false), nor the erased flash page, which every erased page of the
    /// flash maps and which lives as long as the VM ([`Vm::erased`]).
    pub(super) fn put_leaf(&self, leaf: Leaf) {
        if self.is_erased_page(leaf.pa) {
            // Only ever mapped as a page, in the flash.
            debug_assert_eq!(leaf.level, 3, "the erased page in a block");
            return;
        }
        if leaf.owned {
            self.machine().free_frames(leaf.pa, (leaf.size() / PAGE) as usize);
        }
    }

    /// Drops a hold an alias entry or an offer had on `pa`, and frees the
    /// frame if that was its last reference.
    pub(super) fn drop_hold(&self, pa: u64) {
        if self.guests.rmap.unhold(PhysAddr(pa)) {
            self.machine().free_frames(PhysAddr(pa), 1);
        }
    }

    /// Unmaps `[ipa, ipa + size)` and frees the frames it mapped as `mmu`
    /// hands them back: an untracked one at once, a tracked one (aliased
    /// or shared) only once nothing maps or holds it. `_held` is this VM's
    /// sharing state, locked: no page here becomes an alias or tracked
    /// meanwhile.
    pub(super) fn unmap_frames(&self, _held: &Sharing, ipa: u64, size: u64) -> Result<(), Error> {
        Ok(self.s2.unmap_with(Ipa(ipa), size, &mut |leaf| self.put_leaf(leaf))?)
    }

    /// `HYP_UNMAP`: unmaps `[ipa, ipa + size)`, frees the frames it mapped
    /// and forgets the aliases in the range.
    pub fn unmap(&self, ipa: u64, size: u64) -> Result<(), Error> {
        self.unmap_locked(&mut self.sharing.lock(), ipa, size)
    }

    /// [`Vm::unmap`] with the sharing state `t` locked by the caller.
    pub(super) fn unmap_locked(&self, t: &mut Sharing, ipa: u64, size: u64) -> Result<(), Error> {
        self.unmap_frames(t, ipa, size)?;
        while let Some(e) = t.aliases.take_in(ipa, size) {
            self.drop_hold(e.pa);
        }
        self.alias_count.store(t.aliases.len(), Ordering::SeqCst);
        Ok(())
    }

    /// For a reset: all of guest RAM (and flash) unmapped and freed, every
    /// alias entry and offer dropped.
    pub(super) fn forget_everything(&self, t: &mut Sharing) -> Result<(), Error> {
        self.unmap_locked(t, RAM_BASE, self.ram_size)?;
        if self.flash_size > 0 {
            // Its pages are never aliased nor shared: the firmware's are
            // plain frames, freed; the others map the erased page, which
            // stays (`put_leaf`).
            self.unmap_frames(t, FLASH_BASE, self.flash_size)?;
        }
        while let Some(o) = t.offers.take_any() {
            self.drop_hold(o.pa);
        }
        Ok(())
    }

    /// `HYP_REMAP`: replaces the page at `ipa` by a fresh frame filled with
    /// `pattern` (an alias there is forgotten).
    pub fn remap(&self, ipa: u64, pattern: u64) -> Result<(), Error> {
        let m = self.machine();
        let pa = m.alloc_frames(1).ok_or(Error::NoFrames { frames: 1 })?;
        m.fill_page(pa, pattern);
        m.clean_inval_poc(pa, PAGE);
        let mut t = self.sharing.lock();
        let r = self
            .unmap_locked(&mut t, ipa, PAGE)
            .and_then(|()| Ok(self.s2.map_page_prot(Ipa(ipa), pa, self.ram)?));
        if r.is_err() {
            m.free_frames(pa, 1);
        }
        r
    }

    /// `HYP_COLLAPSE`: collapses the 2 MiB range at `ipa` into one block:
    /// in place when its pages are one contiguous, aligned run; otherwise
    /// by copying them into a fresh 2 MiB block (the pages are
    /// write-protected while they are copied, so no guest write is lost)
    /// and freeing them after. A 1 GiB range (`level` 1) collapses in
    /// place only. A 2 MiB range holding an alias, or a page that is
    /// aliased, stays as it is (`Aliased`): its coherency is kept per
    /// page.
    pub fn collapse(&self, ipa: u64, level: u8) -> Result<(), Error> {
        // No page in the range becomes tracked or an alias meanwhile.
        let t = self.sharing.lock();
        if level == 2 && (t.aliases.any_in(ipa, BLOCK) || self.s2.any_tracked(Ipa(ipa), BLOCK)) {
            return Err(Error::Aliased { ipa });
        }
        if self.s2.collapse_check(Ipa(ipa), level)? == CollapseKind::InPlace {
            self.s2.collapse(Ipa(ipa), level)?;
            return Ok(());
        }
        let m = self.machine();
        let block = m.alloc_frames(512).ok_or(Error::NoFrames { frames: 512 })?;
        let copy = |src: PhysAddr, dst: PhysAddr| {
            // `src` is mapped read-only to the guest while this runs, `dst`
            // is not mapped yet.
            m.copy_page(src, dst);
            m.clean_inval_poc(dst, PAGE);
        };
        match self.s2.collapse_copy(Ipa(ipa), block, &copy) {
            Ok(done) => {
                // The guest may run code from the new block.
                m.icache_inval_all();
                // Unmapped and invalidated; never tracked (collapse_copy
                // refuses tracked pages): the old pages can go.
                for pa in done.old_pages {
                    m.free_frames(pa, 1);
                }
                Ok(())
            }
            Err(e) => {
                m.free_frames(block, 512);
                Err(e.into())
            }
        }
    }

    /// `HYP_SPLIT`: splits the block at `ipa` (2 MiB at level 2, 1 GiB at
    /// level 1) into a table of the next level.
    pub fn split(&self, ipa: u64, level: u8) -> Result<(), Error> {
        Ok(self.s2.split(Ipa(ipa), level)?)
    }

    /// With automatic collapse on, collapses the 2 MiB range of `ipa` once
    /// `mmu` says it can become a block (all of its pages mapped alike).
    pub fn maybe_collapse(&self, ipa: u64) {
        if !self.auto_collapse.load(Ordering::Relaxed) {
            return;
        }
        let block = ipa & !(BLOCK - 1);
        if !self.in_ram(block, BLOCK) || self.s2.collapse_check(Ipa(block), 2).is_err() {
            return;
        }
        if let Err(e) = self.collapse(block, 2) {
            self.warn(format_args!("collapse of {block:#x}: {e}"));
        }
    }
}
