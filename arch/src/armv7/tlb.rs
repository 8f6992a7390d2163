//! Stage-2 TLB maintenance in Hyp mode, implementing `mmu`'s policy.
//!
//! The ARMv7 virtualization extensions cannot invalidate stage-2 entries
//! by IPA (`TLBIIPAS2IS` is Armv8 AArch32 only). `TLBIALLIS` executed in
//! Hyp mode invalidates every stage 1 and stage 2 entry of the VMID in
//! `VTTBR`, on every CPU of the Inner Shareable domain, so each operation
//! runs with the guest's VTTBR loaded and the saved value restored
//! afterwards. This type says so through
//! [`has_ipa_invalidation`](TlbMaintenance::has_ipa_invalidation), and
//! `mmu`'s batches then ask for whole-VMID invalidation only.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use mmu::{Ipa, Level, TlbMaintenance, Vmid};

use super::barrier::{dsb_ish, dsb_ishst, isb};
use crate::{read_cp15_64, write_cp15_64};

/// TLB maintenance for one guest's stage 2.
#[derive(Debug, Default)]
pub struct Stage2Tlb {
    vttbr: AtomicU64,
}

impl Stage2Tlb {
    /// Maintenance for a guest whose stage 2 is not created yet: [`bind`]
    /// it to the VTTBR value once it is.
    ///
    /// [`bind`]: Stage2Tlb::bind
    pub const fn new() -> Self {
        Self { vttbr: AtomicU64::new(0) }
    }

    /// Sets the guest's `VTTBR` value (root and VMID).
    pub fn bind(&self, vttbr: u64) {
        self.vttbr.store(vttbr, Ordering::Release);
    }

    /// The VTTBR value this maintenance runs with.
    pub fn vttbr(&self) -> u64 {
        self.vttbr.load(Ordering::Acquire)
    }

    /// `TLBIALLIS` with this guest's VTTBR loaded.
    fn invalidate_all_of_vmid(&self) {
        let vttbr = self.vttbr();
        debug_assert_ne!(vttbr, 0, "Stage2Tlb used before bind");
        let saved = read_cp15_64!("p15, 6, {}, {}, c2");
        let switch = saved != vttbr;
        if switch {
            // SAFETY: the hypervisor runs with interrupts masked, so no
            // guest runs on this CPU until VTTBR is restored below.
            unsafe { write_cp15_64!("p15, 6, {}, {}, c2", vttbr) };
            isb();
        }
        // SAFETY: TLB invalidation only drops cached translations; the
        // register operand is ignored.
        unsafe {
            asm!("mcr p15, 0, {}, c8, c3, 0", in(reg) 0u32, options(nostack, preserves_flags))
        };
        if switch {
            // The invalidation is issued under the guest's VMID before the
            // VTTBR write that follows it in program order.
            // SAFETY: restores the value read above.
            unsafe { write_cp15_64!("p15, 6, {}, {}, c2", saved) };
            isb();
        }
    }
}

impl TlbMaintenance for Stage2Tlb {
    fn has_ipa_invalidation(&self) -> bool {
        false
    }

    fn has_range_invalidation(&self) -> bool {
        false
    }

    fn sync_tables(&self) {
        dsb_ishst();
    }

    fn invalidate_ipa(&self, vmid: Vmid, _ipa: Ipa, _level: Option<Level>, _last_level: bool) {
        // Not asked for (no IPA invalidation): the whole VMID is the
        // correct superset.
        self.invalidate_vmid(vmid);
    }

    fn invalidate_ipa_range(&self, vmid: Vmid, _ipa: Ipa, _pages: u64, _level: Option<Level>) {
        self.invalidate_vmid(vmid);
    }

    fn invalidate_stage1(&self, vmid: Vmid) {
        dsb_ish();
        self.invalidate_vmid(vmid);
    }

    fn invalidate_vmid(&self, vmid: Vmid) {
        debug_assert_eq!(u64::from(vmid.0), (self.vttbr() >> 48) & 0xff);
        self.invalidate_all_of_vmid();
    }

    fn complete(&self) {
        dsb_ish();
        isb();
    }
}
