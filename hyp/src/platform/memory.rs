//! The memory map: what is free in RAM once the hypervisor image, the DTB,
//! the initrd and reserved memory are taken out ([`free_ranges`]), and
//! whether a region avoids all of those ([`ensure_disjoint`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{NamedRegion, Region};

/// The granule [`free_ranges`] aligns to.
pub const PAGE_SIZE: u64 = 4096;

/// A region that overlaps an excluded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlapError {
    /// The name of the excluded region hit ("initrd", "DTB", ...).
    pub name: String,
    /// The excluded region.
    pub excluded: Region,
    /// The region that was checked.
    pub region: Region,
    /// The bytes they share.
    pub overlap: Region,
}

impl fmt::Display for OverlapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} overlaps the {} at {} (shared: {})",
            self.region, self.name, self.excluded, self.overlap
        )
    }
}

/// Checks that `region` shares no byte with any of `excluded`; the error
/// names the overlapped excluded region at the lowest address (the first
/// listed, if several overlap at the same address).
pub fn ensure_disjoint(region: Region, excluded: &[NamedRegion]) -> Result<(), OverlapError> {
    let mut first: Option<OverlapError> = None;
    for e in excluded {
        if let Some(overlap) = region.intersection(&e.region) {
            if first.as_ref().is_none_or(|f| overlap.base < f.overlap.base) {
                first = Some(OverlapError {
                    name: e.name.clone(),
                    excluded: e.region,
                    region,
                    overlap,
                });
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// RAM minus the excluded regions: sorted, non-overlapping, non-adjacent
/// ranges whose bases and sizes are multiples of [`PAGE_SIZE`]. RAM is
/// shrunk to whole pages, excluded regions grown to whole pages; RAM
/// regions may overlap or be unsorted.
pub fn free_ranges(ram: &[Region], excluded: &[NamedRegion]) -> Vec<Region> {
    let ram = merge(ram.iter().filter_map(|r| {
        let start = align_up(r.base)?;
        let end = r.end() & !(PAGE_SIZE - 1);
        (start < end).then_some((start, end))
    }));
    let holes = merge(excluded.iter().filter(|e| !e.region.is_empty()).map(|e| {
        let start = e.region.base & !(PAGE_SIZE - 1);
        let end = align_up(e.region.end()).unwrap_or(u64::MAX);
        (start, end)
    }));

    let mut out = Vec::new();
    for (start, end) in ram {
        let mut cursor = start;
        for &(hole_start, hole_end) in &holes {
            if hole_end <= cursor || hole_start >= end {
                continue;
            }
            if hole_start > cursor {
                out.push(Region::new(cursor, hole_start - cursor));
            }
            cursor = cursor.max(hole_end);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            out.push(Region::new(cursor, end - cursor));
        }
    }
    out
}

fn align_up(v: u64) -> Option<u64> {
    Some(v.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1))
}

/// Sorts `[start, end)` pairs and merges overlapping or touching ones.
fn merge(ranges: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = ranges.collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (start, end) in v {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fixtures::{named, rng};

    #[test]
    fn free_ranges_examples() {
        let ram = [Region::new(0x4000_0000, 0x4000_0000)];
        let excluded = [
            named("hypervisor image", 0x4020_0000, 0x12_3456),
            named("DTB", 0x4820_0000, 0x10_0000),
            named("initrd", 0x4800_0000, 0x1000),
        ];
        assert_eq!(
            free_ranges(&ram, &excluded),
            [
                Region::new(0x4000_0000, 0x20_0000),
                Region::new(0x4032_4000, 0x4800_0000 - 0x4032_4000),
                Region::new(0x4800_1000, 0x4820_0000 - 0x4800_1000),
                Region::new(0x4830_0000, 0x8000_0000 - 0x4830_0000),
            ]
        );
        // Unaligned RAM shrinks, unaligned holes grow; unsorted, overlapping inputs.
        let ram = [Region::new(0x2_0800, 0x1_0000), Region::new(0x1_0000, 0x1_0001)];
        let excluded = [named("b", 0x2_5001, 1), named("a", 0x1_0fff, 2), named("c", 0x1_1000, 0)];
        assert_eq!(
            free_ranges(&ram, &excluded),
            [
                Region::new(0x1_2000, 0x2_0000 - 0x1_2000),
                Region::new(0x2_1000, 0x2_5000 - 0x2_1000),
                Region::new(0x2_6000, 0x3_0000 - 0x2_6000)
            ]
        );
        // Exclusions covering everything, or past the ends.
        assert_eq!(free_ranges(&ram, &[named("all", 0, u64::MAX)]), []);
        assert_eq!(free_ranges(&[Region::new(0x1000, 0x800)], &[]), []);
        assert_eq!(
            free_ranges(&[Region::new(u64::MAX - 0x1fff, 0x2000)], &[]),
            [Region::new(u64::MAX - 0x1fff, 0x1000)]
        );
        assert_eq!(free_ranges(&[], &excluded), []);
    }

    #[test]
    fn free_ranges_match_a_page_bitmap() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            let pages = 64u64;
            let mut region = |max_len: u64| {
                let base = rng(&mut state) % (pages * PAGE_SIZE);
                let size = rng(&mut state) % (max_len * PAGE_SIZE);
                Region::new(base, size)
            };
            let ram: Vec<_> = (0..3).map(|_| region(32)).collect();
            let excluded: Vec<_> = (0..4).map(|_| NamedRegion::new("x", region(8))).collect();
            let mut free = vec![false; 128];
            for r in &ram {
                for (p, slot) in free.iter_mut().enumerate() {
                    let (s, e) = (p as u64 * PAGE_SIZE, (p as u64 + 1) * PAGE_SIZE);
                    if s >= r.base && e <= r.end() {
                        *slot = true;
                    }
                }
            }
            for x in &excluded {
                for (p, slot) in free.iter_mut().enumerate() {
                    let page = Region::new(p as u64 * PAGE_SIZE, PAGE_SIZE);
                    if page.overlaps(&x.region) {
                        *slot = false;
                    }
                }
            }
            let got = free_ranges(&ram, &excluded);
            let mut bitmap = vec![false; 128];
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.base % PAGE_SIZE, 0);
                assert_eq!(r.size % PAGE_SIZE, 0);
                assert!(r.size > 0);
                if i > 0 {
                    assert!(got[i - 1].end() < r.base, "sorted, disjoint, not adjacent: {got:?}");
                }
                for p in r.base / PAGE_SIZE..r.end() / PAGE_SIZE {
                    bitmap[p as usize] = true;
                }
                assert!(ensure_disjoint(*r, &excluded).is_ok());
            }
            assert_eq!(bitmap, free, "ram {ram:?} excluded {excluded:?}");
        }
    }

    #[test]
    fn overlap_errors_name_the_region() {
        let excluded = [
            named("hypervisor image", 0x4020_0000, 0x20_0000),
            named("initrd", 0x4800_0000, 0x1000),
        ];
        assert_eq!(ensure_disjoint(Region::new(0x4400_0000, 0x400_0000), &excluded), Ok(()));
        assert_eq!(ensure_disjoint(Region::new(0x4800_1000, 0x1000), &excluded), Ok(()));
        let err = ensure_disjoint(Region::new(0x47f0_0000, 0x20_0000), &excluded).unwrap_err();
        assert_eq!(
            err,
            OverlapError {
                name: "initrd".into(),
                excluded: Region::new(0x4800_0000, 0x1000),
                region: Region::new(0x47f0_0000, 0x20_0000),
                overlap: Region::new(0x4800_0000, 0x1000),
            }
        );
        assert_eq!(
            err.to_string(),
            "[0x47f00000, 0x48100000) overlaps the initrd at [0x48000000, 0x48001000) \
             (shared: [0x48000000, 0x48001000))"
        );
        let err = ensure_disjoint(Region::new(0, u64::MAX), &excluded).unwrap_err();
        assert_eq!(err.name, "hypervisor image");
        let reversed = [excluded[1].clone(), excluded[0].clone()];
        let err = ensure_disjoint(Region::new(0, u64::MAX), &reversed).unwrap_err();
        assert_eq!(err.name, "hypervisor image", "lowest address, not list order");
    }
}
