//! What acknowledging an interrupt at the host GIC yields, and what ends
//! it again. Portable (host-tested); `gic` reads and writes the registers.
//!
//! A GICv2's `GICC_IAR` holds more than the interrupt's ID: for an SGI,
//! bits 12 to 10 (CPUID) name the CPU that sent it, so an SGI from CPU 2
//! reads 0x800 | INTID. The `GICC_EOIR` write that ends it must carry the
//! value read, CPUID included (GICv2 architecture specification,
//! `GICC_IAR` and `GICC_EOIR`). Taking that whole value for the INTID
//! mistakes it for a special one (1020 and up) and leaves the SGI
//! active: the CPU interface's running priority then stays at the SGI's
//! and every interrupt of that priority or lower, all of the
//! hypervisor's, is held back on that CPU for good.
//!
//! A GICv3's `ICC_IAR1_EL1` holds the INTID alone.
//!
//! An interrupt left active shows in the CPU interface's running
//! priority (`GICC_RPR`, `ICC_RPR_EL1`): the priority of the
//! highest-priority active interrupt, [`IDLE_PRIORITY`] when none is. An
//! idle CPU has ended everything it acknowledged, so the idle loop checks
//! that before each wait ([`StuckPriority`]).

use core::sync::atomic::{AtomicBool, Ordering};

/// The first special INTID (1020 to 1023): no interrupt to take.
pub const SPECIAL_FIRST: u32 = 1020;

/// The running priority of a CPU interface with no active interrupt
/// (GICv2 and GICv3 architecture specifications, `GICC_RPR` and
/// `ICC_RPR_EL1`: the idle priority, 0xff whatever the number of priority
/// bits implemented).
pub const IDLE_PRIORITY: u8 = 0xff;

/// Per CPU, whether an idle CPU's running priority was found raised
/// already: a bug (an interrupt acknowledged and never ended), reported
/// once per CPU.
pub struct StuckPriority<const N: usize> {
    reported: [AtomicBool; N],
}

impl<const N: usize> StuckPriority<N> {
    /// None reported yet.
    pub const fn new() -> Self {
        Self { reported: [const { AtomicBool::new(false) }; N] }
    }

    /// CPU `cpu`, with nothing to handle, read running priority `rpr`:
    /// whether that is to be reported now (not idle, first time on this
    /// CPU).
    pub fn check(&self, cpu: usize, rpr: u8) -> bool {
        rpr != IDLE_PRIORITY
            && self.reported.get(cpu).is_some_and(|r| !r.swap(true, Ordering::Relaxed))
    }
}

impl<const N: usize> Default for StuckPriority<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// An interrupt acknowledged at the host GIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    /// The interrupt's ID.
    pub intid: u32,
    /// The value that ends it (`GICC_EOIR` or `ICC_EOIR1_EL1`): what
    /// the acknowledge register read.
    pub eoi: u32,
}

impl Acked {
    /// From a GICv2 `GICC_IAR` value: INTID in bits 9 to 0, for an SGI
    /// the sending CPU in bits 12 to 10. `None` for a special INTID.
    pub const fn from_v2_iar(iar: u32) -> Option<Self> {
        let intid = iar & 0x3ff;
        if intid >= SPECIAL_FIRST {
            None
        } else {
            Some(Self { intid, eoi: iar & 0x1fff })
        }
    }

    /// From a GICv3 `ICC_IAR1_EL1` value: INTID in bits 23 to 0. `None`
    /// for a special INTID.
    pub const fn from_v3_iar(iar: u32) -> Option<Self> {
        let intid = iar & 0xff_ffff;
        if intid >= SPECIAL_FIRST && intid < 1024 {
            None
        } else {
            Some(Self { intid, eoi: intid })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_sgi_from_another_cpu_keeps_its_source_for_the_eoi() {
        for src in 0..8 {
            let iar = src << 10;
            assert_eq!(
                Acked::from_v2_iar(iar),
                Some(Acked { intid: 0, eoi: iar }),
                "SGI 0 from CPU {src}"
            );
        }
        assert_eq!(Acked::from_v2_iar(0xc05), Some(Acked { intid: 5, eoi: 0xc05 }));
    }

    #[test]
    fn v2_ppis_and_spis_are_their_intid() {
        for intid in [16, 25, 26, 27, 30, 32, 153, 1019] {
            assert_eq!(Acked::from_v2_iar(intid), Some(Acked { intid, eoi: intid }));
        }
    }

    #[test]
    fn v2_special_intids_are_nothing_to_take() {
        for iar in [1020, 1021, 1022, 1023, 0x7ff, 0x1fff] {
            assert_eq!(Acked::from_v2_iar(iar), None, "{iar:#x}");
        }
    }

    #[test]
    fn stuck_priority_reported_once_per_cpu() {
        let s = StuckPriority::<2>::new();
        assert!(!s.check(0, IDLE_PRIORITY), "idle");
        assert!(s.check(0, 0xa0), "raised: reported");
        assert!(!s.check(0, 0xa0), "not twice");
        assert!(!s.check(0, 0), "not twice, whatever the priority");
        assert!(!s.check(1, IDLE_PRIORITY));
        assert!(s.check(1, 0), "another CPU's first");
        assert!(!s.check(2, 0x80), "a CPU out of range is not reported");
    }

    #[test]
    fn v3_intid_alone() {
        assert_eq!(Acked::from_v3_iar(0), Some(Acked { intid: 0, eoi: 0 }));
        assert_eq!(Acked::from_v3_iar(27), Some(Acked { intid: 27, eoi: 27 }));
        assert_eq!(Acked::from_v3_iar(8192), Some(Acked { intid: 8192, eoi: 8192 }));
        for iar in 1020..1024 {
            assert_eq!(Acked::from_v3_iar(iar), None);
        }
    }
}
