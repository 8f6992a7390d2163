//! Operands of the AArch64 stage-2 TLB invalidations (`TLBI IPAS2E1IS`,
//! `IPAS2LE1IS`, `RIPAS2E1IS`), apart from the instructions so that their
//! encodings are tested on the host.
//!
//! Both carry a *translation table level* hint (TTL): the level of the
//! leaf the TLB may hold for the addresses, with which a CPU can skip
//! entries of other levels. A wrong hint lets a CPU keep the entry it was
//! asked to drop, so `None` (any level) is the only safe value when the
//! leaves' level is not known, such as under a removed table entry.

use mmu::{Level, PAGE_SHIFT, PAGE_SIZE};

use operand::{IPAS2, RIPAS2};

/// The operands' fields (Arm ARM, DDI 0487: `TLBI IPAS2E1IS`,
/// `TLBI RIPAS2E1IS`, register `Xt`).
#[allow(missing_docs, non_camel_case_types)]
mod operand {
    use tock_registers::register_bitfields;

    register_bitfields! {u64,
        /// `Xt` of `TLBI IPAS2E1IS` and `TLBI IPAS2LE1IS`.
        pub IPAS2 [
            /// `IPA[47:12]` in bits [35:0].
            IPA OFFSET(0) NUMBITS(36) [],
            /// `TTL[1:0]` [45:44]: the leaf's level (with `TTL_TG` not zero).
            TTL_LEVEL OFFSET(44) NUMBITS(2) [],
            /// `TTL[3:2]` [47:46]: the granule of the hint; 0b00 (with the
            /// level 0b00): no hint.
            TTL_TG OFFSET(46) NUMBITS(2) [
                NoHint = 0b00,
                Granule4K = 0b01,
                Granule16K = 0b10,
                Granule64K = 0b11
            ]
        ],
        /// `Xt` of `TLBI RIPAS2E1IS`.
        pub RIPAS2 [
            /// `BaseADDR` [36:0]: `IPA[48:12]` of the range's start.
            BaseADDR OFFSET(0) NUMBITS(37) [],
            /// `TTL` [38:37]: the leaves' level, 1 to 3, or 0: any level.
            TTL OFFSET(37) NUMBITS(2) [],
            /// `NUM` [43:39]: with `SCALE`, the range is
            /// `(NUM + 1) << (5 * SCALE + 1)` pages.
            NUM OFFSET(39) NUMBITS(5) [],
            /// `SCALE` [45:44].
            SCALE OFFSET(44) NUMBITS(2) [],
            /// `TG` [47:46]: the translation granule.
            TG OFFSET(46) NUMBITS(2) [
                Granule4K = 0b01,
                Granule16K = 0b10,
                Granule64K = 0b11
            ]
        ]
    }
}

/// `TG`, the translation granule of the hint: 4 KiB.
#[cfg(test)]
const TG_4K: u64 = RIPAS2::TG::Value::Granule4K as u64;

/// `IPA[47:12]` in `Xt[35:0]`.
#[cfg(test)]
const IPA_MASK: u64 = IPAS2::IPA.mask;

/// `BaseADDR` (`IPA[48:12]`) in `Xt[36:0]` of a range operation.
#[cfg(test)]
const BASE_MASK: u64 = RIPAS2::BaseADDR.mask;

/// Page counts [`range_ops`] covers: below 2^21. The odd page goes alone
/// and `SCALE` 0 to 3 take bits 1-5, 6-10, 11-15 and 16-20 of the count.
pub const RANGE_PAGES_LIMIT: u64 = 1 << 21;

/// The operand of `TLBI IPAS2E1IS` / `IPAS2LE1IS` for the 4 KiB page at
/// `ipa`, with the leaf's level as a hint when the CPU has FEAT_TTL
/// (`ttl` is `None` otherwise, or when the level is not known).
///
/// `Xt[47:44]` is the TTL field: `TG` (`0b01`, 4 KiB) in `[47:46]` and the
/// level in `[45:44]`. Level 0 cannot hold a 4 KiB-granule leaf without
/// FEAT_LPA2, and its encoding is reserved there, so it gives no hint.
pub fn ipas2(ipa: u64, ttl: Option<Level>) -> u64 {
    let hint = match ttl {
        Some(level @ 1..=3) => IPAS2::TTL_TG::Granule4K + IPAS2::TTL_LEVEL.val(level.into()),
        _ => IPAS2::TTL_TG::NoHint,
    };
    (hint + IPAS2::IPA.val(ipa >> PAGE_SHIFT)).value
}

/// The operand of `TLBI RIPAS2E1IS` for `(num + 1) << (5 * scale + 1)`
/// pages from `ipa`: `TG` `[47:46]`, `SCALE` `[45:44]`, `NUM` `[43:39]`,
/// `TTL` `[38:37]` (the leaves' level 1 to 3, or 0: any level),
/// `BaseADDR` `[36:0]`.
pub fn ripas2(ipa: u64, scale: u64, num: u64, ttl: Option<Level>) -> u64 {
    debug_assert!(scale <= 3 && num <= 31);
    let level = match ttl {
        Some(level @ 1..=3) => u64::from(level),
        _ => 0,
    };
    let op = RIPAS2::TG::Granule4K
        + RIPAS2::SCALE.val(scale)
        + RIPAS2::NUM.val(num)
        + RIPAS2::TTL.val(level)
        + RIPAS2::BaseADDR.val(ipa >> PAGE_SHIFT);
    op.value
}

/// One instruction of a range invalidation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RangeOp {
    /// `TLBI IPAS2E1IS` with this operand (one page).
    Page(u64),
    /// `TLBI RIPAS2E1IS` with this operand.
    Range(u64),
}

/// The instructions that invalidate `pages` 4 KiB pages from `ipa` with
/// FEAT_TLBIRANGE, in the order they are issued: an odd page alone, then
/// runs of `(NUM + 1) << (5 * SCALE + 1)` pages with growing `SCALE`, as
/// the encoding allows. `pages` must be below [`RANGE_PAGES_LIMIT`].
/// `ttl` is the range operations' hint, `page_ttl` the single page's
/// (which needs FEAT_TTL, where the range form's needs only
/// FEAT_TLBIRANGE).
pub fn range_ops(
    ipa: u64,
    pages: u64,
    ttl: Option<Level>,
    page_ttl: Option<Level>,
) -> impl Iterator<Item = RangeOp> {
    debug_assert!(pages < RANGE_PAGES_LIMIT);
    let (mut ipa, mut pages, mut scale) = (ipa, pages, 0u64);
    core::iter::from_fn(move || loop {
        if pages == 0 || scale > 3 {
            return None;
        }
        if pages % 2 == 1 {
            let op = RangeOp::Page(ipas2(ipa, page_ttl));
            ipa += PAGE_SIZE;
            pages -= 1;
            return Some(op);
        }
        let num = (pages >> (5 * scale + 1)) & RIPAS2::NUM.mask;
        let this_scale = scale;
        scale += 1;
        if num > 0 {
            let done = num << (5 * this_scale + 1);
            let op = RangeOp::Range(ripas2(ipa, this_scale, num - 1, ttl));
            ipa += done * PAGE_SIZE;
            pages -= done;
            return Some(op);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn operands_are_what_the_hand_encoding_gave() {
        // The encodings before the fields had names.
        let old_ipas2 = |ipa: u64, ttl: Option<Level>| {
            let hint = match ttl {
                Some(level @ 1..=3) => (0b01 << 46) | (u64::from(level) << 44),
                _ => 0,
            };
            hint | ((ipa >> 12) & ((1 << 36) - 1))
        };
        let old_ripas2 = |ipa: u64, scale: u64, num: u64, ttl: Option<Level>| {
            let level = ttl.filter(|l| (1..=3).contains(l)).map_or(0, u64::from);
            (0b01 << 46)
                | (scale << 44)
                | (num << 39)
                | (level << 37)
                | ((ipa >> 12) & ((1 << 37) - 1))
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ttl = [None, Some(0), Some(1), Some(2), Some(3)][(x % 5) as usize];
            assert_eq!(ipas2(x, ttl), old_ipas2(x, ttl), "{x:#x} {ttl:?}");
            let (scale, num) = ((x >> 3) % 4, (x >> 5) % 32);
            assert_eq!(ripas2(x, scale, num, ttl), old_ripas2(x, scale, num, ttl), "{x:#x}");
        }
    }

    #[test]
    fn ipas2_operand_encodes_the_page_and_the_leaf_level() {
        // IPA 0x1_2345_6000 is page 0x12_3456.
        assert_eq!(ipas2(0x1_2345_6000, None), 0x12_3456);
        assert_eq!(ipas2(0x1_2345_6fff, None), 0x12_3456, "the offset is dropped");
        // TTL = 0b01 (4 KiB) : level, in [47:44].
        assert_eq!(ipas2(0x1_2345_6000, Some(3)), 0x12_3456 | (0b0111 << 44));
        assert_eq!(ipas2(0x4000_0000, Some(2)), 0x4_0000 | (0b0110 << 44));
        assert_eq!(ipas2(0x4000_0000, Some(1)), 0x4_0000 | (0b0101 << 44));
        // Level 0 holds no 4 KiB-granule leaf without LPA2: no hint.
        assert_eq!(ipas2(0x4000_0000, Some(0)), 0x4_0000);
        // A 48-bit IPA fills the field; higher bits cannot leak into TTL.
        assert_eq!(ipas2(0xffff_ffff_f000, None), IPA_MASK);
        assert_eq!(ipas2(u64::MAX, None) >> 36, 0);
    }

    #[test]
    fn ripas2_operand_fields() {
        let op = ripas2(0x4000_0000, 2, 5, Some(3));
        assert_eq!(op >> 46 & 0b11, TG_4K);
        assert_eq!(op >> 44 & 0b11, 2, "SCALE");
        assert_eq!(op >> 39 & 0x1f, 5, "NUM");
        assert_eq!(op >> 37 & 0b11, 3, "TTL");
        assert_eq!(op & BASE_MASK, 0x4_0000);
        assert_eq!(ripas2(0x4000_0000, 0, 0, None) >> 37 & 0b11, 0, "any level");
        assert_eq!(ripas2(0x4000_0000, 0, 0, Some(0)) >> 37 & 0b11, 0, "level 0: any level");
    }

    /// Decodes `ops` into the pages they cover, in order.
    fn covered(ops: impl Iterator<Item = RangeOp>) -> Vec<u64> {
        let mut pages = Vec::new();
        for op in ops {
            match op {
                RangeOp::Page(x) => pages.push((x & IPA_MASK) << 12),
                RangeOp::Range(x) => {
                    let (scale, num) = (x >> 44 & 3, x >> 39 & 0x1f);
                    let n = (num + 1) << (5 * scale + 1);
                    let base = (x & BASE_MASK) << 12;
                    pages.extend((0..n).map(|i| base + i * 4096));
                }
            }
        }
        pages
    }

    #[test]
    fn range_ops_cover_exactly_the_pages() {
        for pages in [1, 2, 3, 63, 64, 65, 512, 513, 1000, 4096 + 7, 262_143, RANGE_PAGES_LIMIT - 1]
        {
            let base = 0x8000_0000;
            let want: Vec<u64> = (0..pages).map(|i| base + i * 4096).collect();
            let mut got = covered(range_ops(base, pages, Some(3), None));
            got.sort_unstable();
            assert_eq!(got, want, "{pages} pages");
        }
        // 512 pages (one 2 MiB table's leaves): one instruction.
        let ops: Vec<_> = range_ops(0x4000_0000, 512, Some(3), None).collect();
        assert_eq!(ops, [RangeOp::Range(ripas2(0x4000_0000, 1, 7, Some(3)))]);
        // 3 pages: the odd one alone (with its own hint), then a pair.
        let ops: Vec<_> = range_ops(0x4000_0000, 3, Some(3), Some(3)).collect();
        assert_eq!(
            ops,
            [
                RangeOp::Page(ipas2(0x4000_0000, Some(3))),
                RangeOp::Range(ripas2(0x4000_1000, 0, 0, Some(3)))
            ]
        );
    }
}
