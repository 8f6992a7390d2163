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
