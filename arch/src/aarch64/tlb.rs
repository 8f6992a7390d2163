//! Stage-2 TLB maintenance at EL2, implementing `mmu`'s policy.
//!
//! TLBI by IPA and `VMALLS12E1IS` act on the VMID in `VTTBR_EL2`, so each
//! operation runs with the guest's VTTBR (from `mmu`'s [`TlbScope`])
//! loaded and the previous value restored afterwards (both followed by an
//! ISB). The whole VTTBR is loaded, not just the VMID, so that a
//! speculative walk never uses a bogus table base. One `Stage2Tlb` serves
//! every guest.

use core::arch::asm;

use mmu::{Ipa, Level, TlbMaintenance, TlbScope};

use super::barrier::{dsb_ish, dsb_ishst, isb};
use crate::tlbi::{self, RangeOp, RANGE_PAGES_LIMIT};
use crate::{read_sysreg, write_sysreg};

/// Stage-2 TLB maintenance, with what this CPU's TLBI can do.
#[derive(Clone, Copy, Debug)]
pub struct Stage2Tlb {
    /// FEAT_TLBIRANGE: `TLBI RIPAS2E1IS`.
    range: bool,
    /// FEAT_TTL: the level hint of `TLBI IPAS2E1IS` is honoured (without
    /// it, those bits must be zero).
    ttl: bool,
}

impl Stage2Tlb {
    /// Maintenance with the TLBI features this CPU has.
    pub fn new() -> Self {
        use crate::fields::aarch64::{ID_AA64ISAR0_EL1 as ISAR0, ID_AA64MMFR2_EL1 as MMFR2};
        let isar0 = ISAR0::TLB.read(read_sysreg!("id_aa64isar0_el1"));
        let mmfr2 = MMFR2::TTL.read(read_sysreg!("id_aa64mmfr2_el1"));
        Self {
            range: isar0 >= ISAR0::TLB::Value::Range as u64,
            ttl: mmfr2 >= MMFR2::TTL::Value::Ttl as u64,
        }
    }

    /// The level hint to give `IPAS2E1IS`: none without FEAT_TTL.
    fn hint(&self, level: Option<Level>) -> Option<Level> {
        level.filter(|_| self.ttl)
    }

    /// Runs `f` with the guest's VTTBR loaded.
    fn with_vmid(&self, scope: TlbScope, f: impl FnOnce()) {
        let vttbr = scope.vttbr;
        let saved = read_sysreg!("vttbr_el2");
        let switch = saved != vttbr;
        if switch {
            // SAFETY: the hypervisor runs at EL2 with interrupts masked, so
            // no guest runs on this CPU until VTTBR is restored below.
            unsafe { write_sysreg!("vttbr_el2", vttbr) };
            isb();
        }
        f();
        if switch {
            // SAFETY: restores the value read above.
            unsafe { write_sysreg!("vttbr_el2", saved) };
            isb();
        }
    }
}

/// `TLBI IPAS2E1IS` or, for the last level only, `IPAS2LE1IS`, with an
/// operand from [`tlbi::ipas2`].
fn tlbi_ipa(operand: u64, last_level: bool) {
    // SAFETY: TLB invalidation only drops cached translations.
    unsafe {
        if last_level {
            asm!("tlbi ipas2le1is, {}", in(reg) operand, options(nostack, preserves_flags));
        } else {
            asm!("tlbi ipas2e1is, {}", in(reg) operand, options(nostack, preserves_flags));
        }
    }
}

/// `TLBI RIPAS2E1IS` with an operand from [`tlbi::ripas2`].
fn tlbi_ipa_range(operand: u64) {
    // SAFETY: TLB invalidation only drops cached translations.
    unsafe {
        asm!(
            ".arch_extension tlb-rmi",
            "tlbi ripas2e1is, {}",
            in(reg) operand,
            options(nostack, preserves_flags)
        )
    };
}

impl Default for Stage2Tlb {
    fn default() -> Self {
        Self::new()
    }
}

impl TlbMaintenance for Stage2Tlb {
    fn has_ipa_invalidation(&self) -> bool {
        true
    }

    fn has_range_invalidation(&self) -> bool {
        self.range
    }

    fn sync_tables(&self) {
        dsb_ishst();
    }

    fn invalidate_ipa(&self, scope: TlbScope, ipa: Ipa, level: Option<Level>, last_level: bool) {
        let operand = tlbi::ipas2(ipa.get(), self.hint(level));
        self.with_vmid(scope, || tlbi_ipa(operand, last_level));
    }

    fn invalidate_ipa_range(&self, scope: TlbScope, ipa: Ipa, pages: u64, level: Option<Level>) {
        if !self.range || pages >= RANGE_PAGES_LIMIT {
            self.invalidate_vmid(scope);
            return;
        }
        // The range form's TTL field comes with FEAT_TLBIRANGE itself; the
        // odd page's (IPAS2E1IS) needs FEAT_TTL.
        let page_hint = self.hint(level);
        self.with_vmid(scope, || {
            for op in tlbi::range_ops(ipa.get(), pages, level, page_hint) {
                match op {
                    RangeOp::Page(x) => tlbi_ipa(x, false),
                    RangeOp::Range(x) => tlbi_ipa_range(x),
                }
            }
        });
    }

    fn invalidate_stage1(&self, scope: TlbScope) {
        // The IPA invalidations complete before the stage-1 one starts.
        dsb_ish();
        // SAFETY: TLB invalidation only drops cached translations.
        self.with_vmid(scope, || unsafe {
            asm!("tlbi vmalle1is", options(nostack, preserves_flags))
        });
    }

    fn invalidate_vmid(&self, scope: TlbScope) {
        // SAFETY: TLB invalidation only drops cached translations.
        self.with_vmid(scope, || unsafe {
            asm!("tlbi vmalls12e1is", options(nostack, preserves_flags))
        });
    }

    fn complete(&self) {
        dsb_ish();
        isb();
    }
}
