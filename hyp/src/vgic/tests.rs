//! The virtual GIC's state machine, its registers and its list registers.

use super::lr::{decode_v2, decode_v3, encode_v2, encode_v3};
use super::mmio::{GICD_BASE, GICR_BASE, GICR_STRIDE};
use super::*;

fn sgi_base(v: usize) -> u64 {
    GICR_BASE + v as u64 * GICR_STRIDE + 0x1_0000
}

/// A GICv3 with the distributor's groups on and `intid` enabled in
/// group 1 for every vCPU.
fn v3_with(vcpus: usize, intids: &[u32]) -> Vgic {
    let mut g = Vgic::new(Version::V3, vcpus);
    g.mmio_write(0, GICD_BASE, 4, 0b11);
    for v in 0..vcpus {
        g.mmio_write(v, sgi_base(v) + 0x80, 4, u64::MAX);
    }
    g.mmio_write(0, GICD_BASE + 0x84, 4, u64::MAX);
    for &i in intids {
        if i < 32 {
            for v in 0..vcpus {
                g.mmio_write(v, sgi_base(v) + 0x100, 4, 1 << i);
            }
        } else {
            g.mmio_write(0, GICD_BASE + 0x100 + u64::from(i / 32) * 4, 4, 1 << (i % 32));
        }
    }
    g
}

fn lrs<const N: usize>() -> [Option<LrEntry>; N] {
    [None; N]
}

#[test]
fn level_ppi_is_delivered_acked_and_resampled() {
    let mut g = v3_with(1, &[VTIMER_PPI]);
    assert!(!g.has_pending(0));
    assert_eq!(g.set_level(0, VTIMER_PPI, true), Kick(1));
    assert!(g.has_pending(0));
    let mut w = lrs::<4>();
    assert!(!g.flush(0, &mut w));
    let e = w[0].expect("the timer in an LR");
    assert_eq!(
        (e.intid, e.pending, e.active, e.eoi, e.group1),
        (VTIMER_PPI, true, false, true, true)
    );
    // The guest acknowledges it: active, no longer pending in the LR.
    let now = [Some(LrEntry { pending: false, active: true, ..e }), None, None, None];
    g.sync(0, &w, &now);
    assert!(g.is_pending_or_active(0, VTIMER_PPI));
    // Its handler lowers the line and deactivates it.
    g.set_level(0, VTIMER_PPI, false);
    g.flush(0, &mut w);
    assert!(w[0].is_some_and(|e| e.active && !e.pending));
    g.sync(0, &w, &lrs::<4>());
    assert!(!g.is_pending_or_active(0, VTIMER_PPI));
    assert!(!g.has_pending(0));
}

#[test]
fn disabled_or_group_off_is_not_delivered() {
    let mut g = Vgic::new(Version::V3, 1);
    g.set_level(0, VTIMER_PPI, true);
    assert!(!g.has_pending(0), "not enabled");
    g.mmio_write(0, sgi_base(0) + 0x100, 4, 1 << VTIMER_PPI);
    assert!(!g.has_pending(0), "group 0 with the distributor's groups off");
    g.mmio_write(0, GICD_BASE, 4, 1);
    assert!(g.has_pending(0));
    // Reads back: enabled, pending (the line), group 0.
    assert_eq!(g.mmio_read(0, sgi_base(0) + 0x100, 4), 1 << VTIMER_PPI);
    assert_eq!(g.mmio_read(0, sgi_base(0) + 0x200, 4), 1 << VTIMER_PPI);
    assert_eq!(g.mmio_read(0, sgi_base(0) + 0x80, 4), 0);
}

#[test]
fn sgi_between_vcpus_kicks_the_target_only() {
    let mut g = v3_with(4, &[1]);
    assert_eq!(g.send_sgi(0, 0b0110, 1), Kick(0b0110));
    assert!(!g.has_pending(0));
    assert!(g.has_pending(1) && g.has_pending(2) && !g.has_pending(3));
    // A second SGI while the first sits in vCPU 1's LR is not lost.
    let mut w = lrs::<4>();
    g.flush(1, &mut w);
    assert_eq!(g.send_sgi(2, 0b0010, 1), Kick(0b0010));
    let acked = [Some(LrEntry { pending: false, active: true, ..w[0].unwrap() }), None, None, None];
    g.sync(1, &w, &acked);
    g.flush(1, &mut w);
    let e = w[0].unwrap();
    assert!(e.pending && e.active, "the second SGI is pending behind the first");
}

#[test]
fn v2_sgis_carry_their_source() {
    let mut g = Vgic::new(Version::V2, 3);
    g.mmio_write(0, GICD_BASE, 4, 1);
    for v in 0..3 {
        g.mmio_write(v, GICD_BASE + 0x100, 4, 1 << 5);
    }
    // vCPU 0 and vCPU 2 both send SGI 5 to vCPU 1 through GICD_SGIR.
    g.mmio_write(0, GICD_BASE + 0xF00, 4, 0b010 << 16 | 5);
    g.mmio_write(2, GICD_BASE + 0xF00, 4, 0b010 << 16 | 5);
    let mut w = lrs::<4>();
    g.flush(1, &mut w);
    assert_eq!((w[0].unwrap().intid, w[0].unwrap().source), (5, 0));
    g.sync(1, &w, &lrs::<4>());
    g.flush(1, &mut w);
    assert_eq!(w[0].unwrap().source, 2, "then the other source");
    g.sync(1, &w, &lrs::<4>());
    assert!(!g.has_pending(1));
    // "All but me" from vCPU 1.
    g.mmio_write(1, GICD_BASE + 0xF00, 4, 1 << 24 | 5);
    assert!(g.has_pending(0) && !g.has_pending(1) && g.has_pending(2));
}

#[test]
fn spis_follow_routing_and_stay_with_their_taker() {
    let mut g = v3_with(2, &[UART_SPI]);
    // IROUTER of INTID 33 -> vCPU 1.
    g.mmio_write(0, GICD_BASE + 0x6000 + 8 * 33, 8, 1);
    assert_eq!(g.mmio_read(0, GICD_BASE + 0x6000 + 8 * 33, 8), 1);
    assert_eq!(g.set_level(0, UART_SPI, true), Kick(0b10));
    assert!(!g.has_pending(0) && g.has_pending(1));
    let mut w = lrs::<2>();
    g.flush(1, &mut w);
    // Rerouted while vCPU 1 has it in an LR: vCPU 0 does not get it too.
    g.mmio_write(0, GICD_BASE + 0x6000 + 8 * 33, 8, 0);
    let mut w0 = lrs::<2>();
    g.flush(0, &mut w0);
    assert!(w0.iter().all(Option::is_none));
}

#[test]
fn overflow_asks_for_underflow_and_active_ones_come_first() {
    let mut g = v3_with(1, &[1, 2, 3]);
    for (i, p) in [(1u32, 0x80u8), (2, 0x40), (3, 0x20)] {
        g.mmio_write(0, sgi_base(0) + 0x400 + u64::from(i), 1, u64::from(p));
        g.send_sgi(0, 1, i);
    }
    let mut w = lrs::<2>();
    assert!(g.flush(0, &mut w), "three pending, two LRs");
    assert_eq!(w.map(|e| e.unwrap().intid), [3, 2], "by priority");
    // SGI 2 taken (active), then the others.
    let now = [w[0], Some(LrEntry { pending: false, active: true, ..w[1].unwrap() })];
    g.sync(0, &w, &now);
    assert!(g.flush(0, &mut w));
    assert_eq!(w.map(|e| e.unwrap().intid), [2, 3], "the active one first");
}

#[test]
fn distributor_and_redistributor_identify_themselves() {
    let g = Vgic::new(Version::V3, 2);
    assert_eq!(g.mmio_read(0, GICD_BASE + 0xFFE8, 4), 0x3B);
    assert_eq!(g.mmio_read(0, GICD_BASE + 0x4, 4) & 0x1f, 1);
    // GICR_TYPER of vCPU 1: Processor_Number 1, Last, affinity 0.0.0.1.
    let typer = g.mmio_read(0, GICR_BASE + GICR_STRIDE + 0x8, 8);
    assert_eq!(typer, 1 << 32 | 1 << 8 | 1 << 4);
    assert_eq!(g.mmio_read(0, GICR_BASE + 0x8, 8) & (1 << 4), 0, "vCPU 0 is not last");
    assert_eq!(g.frame(GICR_BASE + 2 * GICR_STRIDE), None, "no third redistributor");
    let v2 = Vgic::new(Version::V2, 4);
    assert_eq!(v2.mmio_read(0, GICD_BASE + 0xFE8, 4), 0x2B);
    assert_eq!(v2.mmio_read(0, GICD_BASE + 0x4, 4), 1 | 3 << 5);
    assert_eq!(v2.mmio_read(2, GICD_BASE + 0x800, 1), 0b100, "ITARGETSR0 is the reader");
}

#[test]
fn priorities_by_byte_and_word_and_configs() {
    let mut g = Vgic::new(Version::V3, 1);
    g.mmio_write(0, GICD_BASE + 0x420, 4, 0x1122_3344);
    assert_eq!(g.mmio_read(0, GICD_BASE + 0x421, 1), 0x33);
    g.mmio_write(0, GICD_BASE + 0x422, 1, 0xaa);
    assert_eq!(g.mmio_read(0, GICD_BASE + 0x420, 4), 0x11aa_3344);
    // The distributor has no private INTIDs under affinity routing.
    g.mmio_write(0, GICD_BASE + 0x400, 4, u64::MAX);
    assert_eq!(g.mmio_read(0, GICD_BASE + 0x400, 4), 0);
    // SGIs are edge, always; a PPI and an SPI may be made edge.
    assert_eq!(g.mmio_read(0, sgi_base(0) + 0xC00, 4), 0xAAAA_AAAA);
    g.mmio_write(0, sgi_base(0) + 0xC00, 4, 0);
    assert_eq!(g.mmio_read(0, sgi_base(0) + 0xC00, 4), 0xAAAA_AAAA);
    g.mmio_write(0, GICD_BASE + 0xC08, 4, 0b10);
    assert_eq!(g.mmio_read(0, GICD_BASE + 0xC08, 4), 0b10);
}

#[test]
fn list_registers_round_trip() {
    let e = LrEntry {
        intid: 27,
        pending: true,
        active: true,
        group1: true,
        priority: 0xa0,
        eoi: true,
        source: 0,
    };
    assert_eq!(decode_v3(encode_v3(Some(&e))), Some(e));
    assert_eq!(encode_v3(Some(&e)) >> 62, 0b11);
    let s = LrEntry { intid: 3, source: 5, eoi: false, ..e };
    assert_eq!(decode_v2(encode_v2(Some(&s))), Some(s));
    assert_eq!(encode_v3(None), 0);
    assert_eq!(decode_v2(0), None);
}

#[test]
fn an_absent_gic_has_no_frames_and_delivers_nothing() {
    let mut g = Vgic::absent(2);
    assert!(!g.is_present());
    assert_eq!(g.frame(GICD_BASE), None);
    assert_eq!(g.mmio_write(0, GICD_BASE, 4, 0b11), Kick::NONE);
    g.set_level(0, VTIMER_PPI, true);
    assert_eq!(g.send_sgi(0, 0b10, 1), Kick::NONE);
    assert!(!g.has_pending(0) && !g.has_pending(1));
    let mut w = [None; 4];
    assert!(!g.flush(0, &mut w));
    assert!(w.iter().all(Option::is_none));
    g.reset();
    assert!(!g.is_present());
}
