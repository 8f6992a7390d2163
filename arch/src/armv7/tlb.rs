//! Stage-2 TLB maintenance in Hyp mode, implementing `mmu`'s policy.
//!
//! The ARMv7 virtualization extensions cannot invalidate stage-2 entries
//! by IPA (`TLBIIPAS2IS` is Armv8 AArch32 only). `TLBIALLIS` executed in
//! Hyp mode invalidates every stage 1 and stage 2 entry of the VMID in
//! `VTTBR`, on every CPU of the Inner Shareable domain, so each operation
//! runs with the guest's VTTBR (from `mmu`'s [`TlbScope`]) loaded and the
//! saved value restored afterwards; one `Stage2Tlb` serves every guest. This type says so through
//! [`has_ipa_invalidation`](TlbMaintenance::has_ipa_invalidation), and
//! `mmu`'s batches then ask for whole-VMID invalidation only.

use core::arch::asm;

use mmu::{Ipa, Level, TlbMaintenance, TlbScope};

use super::barrier::{dsb_ish, dsb_ishst, isb};
use crate::{read_cp15_64, write_cp15_64};

/// Stage-2 TLB maintenance in Hyp mode.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stage2Tlb;

impl Stage2Tlb {
    /// The maintenance (it has no state).
    pub const fn new() -> Self {
        Self
    }

    /// `TLBIALLIS` with the guest's VTTBR loaded.
    fn invalidate_all_of_vmid(&self, scope: TlbScope) {
        let vttbr = scope.vttbr;
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

    fn invalidate_ipa(&self, scope: TlbScope, _: Ipa, _: Option<Level>, _: bool) {
        // Not asked for (no IPA invalidation): the whole VMID is the
        // correct superset.
        self.invalidate_vmid(scope);
    }

    fn invalidate_ipa_range(&self, scope: TlbScope, _: Ipa, _: u64, _: Option<Level>) {
        self.invalidate_vmid(scope);
    }

    fn invalidate_stage1(&self, scope: TlbScope) {
        dsb_ish();
        self.invalidate_vmid(scope);
    }

    fn invalidate_vmid(&self, scope: TlbScope) {
        self.invalidate_all_of_vmid(scope);
    }

    fn complete(&self) {
        dsb_ish();
        isb();
    }
}
