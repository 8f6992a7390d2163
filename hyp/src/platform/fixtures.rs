//! What the platform module's unit tests share: the device tree blobs of
//! `hyp/tests/fixtures` and small helpers.

use super::{NamedRegion, Region};

pub(super) const GICV3_SMP4: &[u8] = include_bytes!("../../tests/fixtures/virt-gicv3-smp4.dtb");
pub(super) const A57_SMP1: &[u8] = include_bytes!("../../tests/fixtures/virt-a57-smp1.dtb");
pub(super) const GICV2_SMP2: &[u8] = include_bytes!("../../tests/fixtures/virt-gicv2-smp2.dtb");
pub(super) const RPI4_LIKE: &[u8] = include_bytes!("../../tests/fixtures/rpi4-like.dtb");
pub(super) const MIB: u64 = 1 << 20;

pub(super) fn named(name: &str, base: u64, size: u64) -> NamedRegion {
    NamedRegion::new(name, Region::new(base, size))
}

/// A tiny xorshift, so that the mutation test is deterministic.
pub(super) fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
