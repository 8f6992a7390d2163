//! AArch32 cache maintenance by virtual address to the point of coherency.
//!
//! Hyp mode's stage-1 map is an identity map of the low 4 GiB, so a
//! physical address below 4 GiB is also the address these operations take.

use core::arch::asm;

use super::barrier::{dsb_ish, isb};

/// The smallest data cache line (`CTR.DminLine`, in words), in bytes.
#[inline]
pub fn dcache_line() -> usize {
    let ctr = crate::read_cp15!("p15, 0, {}, c0, c0, 1");
    // Words of 4 bytes.
    4 << crate::fields::armv7::CTR::DminLine.read(ctr)
}

/// Zeroes `[start, start + len)` (32-byte aligned, a multiple of 32
/// bytes) with four-register stores: 16 bytes per store instruction.
///
/// # Safety
///
/// The range is normal memory the caller owns and may overwrite.
pub unsafe fn zero(start: usize, len: usize) {
    if !start.is_multiple_of(32) || !len.is_multiple_of(32) {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, len) };
        return;
    }
    // SAFETY: writes zeros to exactly `[start, start + len)` (the
    // contract), 32 bytes at a time; the registers named are inputs
    // only, the pointer register is marked clobbered.
    unsafe {
        asm!(
            "2:",
            "stmia {p}!, {{r2, r3, r4, r5}}",
            "stmia {p}!, {{r2, r3, r4, r5}}",
            "cmp {p}, {end}",
            "blo 2b",
            p = inout(reg) start => _,
            end = in(reg) start + len,
            in("r2") 0u32, in("r3") 0u32, in("r4") 0u32, in("r5") 0u32,
            options(nostack)
        )
    };
}

/// Cleans and invalidates `[start, start + len)` to the PoC (`DCCIMVAC`
/// per line), then waits for completion.
pub fn clean_inval_poc(start: usize, len: usize) {
    let line = dcache_line();
    let mut p = start & !(line - 1);
    while p < start.saturating_add(len) {
        // SAFETY: cache maintenance by address on mapped memory has no
        // architectural effect on its contents.
        unsafe { asm!("mcr p15, 0, {}, c7, c14, 1", in(reg) p, options(nostack, preserves_flags)) };
        p += line;
    }
    dsb_ish();
}

/// Invalidates all instruction caches, Inner Shareable (`ICIALLUIS`), and
/// the branch predictors (`BPIALLIS`), after new code was written.
pub fn icache_inval_all() {
    dsb_ish();
    // SAFETY: invalidating instruction caches and branch predictors only
    // drops cached copies; the register operand is ignored.
    unsafe {
        asm!(
            "mcr p15, 0, {0}, c7, c1, 0",
            "mcr p15, 0, {0}, c7, c1, 6",
            in(reg) 0u32,
            options(nostack, preserves_flags)
        )
    };
    dsb_ish();
    isb();
}

/// `mmu`'s cache maintenance, by physical address (identity mapped).
#[derive(Clone, Copy, Debug, Default)]
pub struct PocByPa;

impl mmu::CacheMaintenance for PocByPa {
    fn clean_inval_poc(&self, pa: mmu::PhysAddr, len: u64) {
        let start = usize::try_from(pa.get()).expect("page above the Hyp-mode map");
        clean_inval_poc(start, len as usize);
    }
}
