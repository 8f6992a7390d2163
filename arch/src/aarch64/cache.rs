//! Cache maintenance by address.

use core::arch::asm;

use super::barrier::{dsb_ish, isb};

/// Smallest data-cache line in bytes (`CTR_EL0.DminLine`).
#[inline]
pub fn dcache_line() -> usize {
    let ctr = crate::read_sysreg!("ctr_el0");
    // Words of 4 bytes.
    4 << crate::fields::aarch64::CTR_EL0::DminLine.read(ctr)
}

/// Zeroes `[start, start + len)` (cache-line aligned, a multiple of the
/// line), with `DC ZVA` where EL2 may use it: one instruction per zeroing
/// block (`DCZID_EL0`, 64 bytes on most cores) instead of eight stores.
///
/// # Safety
///
/// The range is normal memory the caller owns and may overwrite.
pub unsafe fn zero(start: usize, len: usize) {
    use crate::fields::aarch64::DCZID_EL0;
    let dczid = crate::read_sysreg!("dczid_el0");
    // Words of 4 bytes.
    let block = 4usize << DCZID_EL0::BS.read(dczid);
    let usable = !DCZID_EL0::DZP.is_set(dczid);
    if !usable || !start.is_multiple_of(block) || !len.is_multiple_of(block) {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, len) };
        return;
    }
    let mut p = start;
    while p < start + len {
        // SAFETY: zeroes one block of the caller's memory (the contract),
        // aligned to the block size.
        unsafe { asm!("dc zva, {}", in(reg) p, options(nostack, preserves_flags)) };
        p += block;
    }
}

/// Cleans and invalidates `[start, start + len)` to the point of
/// coherency (`DC CIVAC`), then `DSB ISH`: memory holds what the cache
/// held, for an observer that does not use the cache (a guest running
/// with its MMU off, or with non-cacheable attributes).
pub fn clean_inval_poc(start: usize, len: usize) {
    let line = dcache_line();
    let mut p = start & !(line - 1);
    while p < start + len {
        // SAFETY: DC CIVAC on a mapped address only moves data between the
        // cache and memory; it does not change what memory holds.
        unsafe { asm!("dc civac, {}", in(reg) p, options(nostack, preserves_flags)) };
        p += line;
    }
    dsb_ish();
}

/// Invalidates every instruction cache in the Inner Shareable domain to the
/// point of unification (`IC IALLUIS`), after new code was written.
pub fn icache_inval_all() {
    dsb_ish();
    // SAFETY: invalidating instruction caches only drops cached copies.
    unsafe { asm!("ic ialluis", options(nostack, preserves_flags)) };
    dsb_ish();
    isb();
}

/// [`mmu::CacheMaintenance`] for the hypervisor: data-cache maintenance by
/// physical address through [`clean_inval_poc`].
///
/// Requires the EL2 stage-1 map to be the identity over every page it is
/// given (PA == VA), as the hypervisor's boot map is for RAM: `DC CIVAC`
/// takes a virtual address.
#[derive(Clone, Copy, Debug, Default)]
pub struct PocByPa;

impl mmu::CacheMaintenance for PocByPa {
    fn clean_inval_poc(&self, pa: mmu::PhysAddr, len: u64) {
        // Ends with DSB ISH: complete before the caller goes on.
        clean_inval_poc(pa.get() as usize, len as usize);
    }
}
