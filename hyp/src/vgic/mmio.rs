//! The guest's view of the distributor (GICv2 and GICv3) and of the
//! redistributors (GICv3): register reads and writes that trapped as
//! stage-2 faults, on the state in [`Vgic`].
//!
//! Registers the model does not have read as zero and ignore writes
//! (RAZ/WI), as reserved GIC registers do; so do the GICv3 distributor's
//! registers for INTIDs 0 to 31 (affinity routing is always on), LPIs,
//! the non-secure access controls and GICv2's SGI pending registers.

use super::{Irq, Kick, Version, Vgic, NR_IRQS};

pub use crate::layout::{GICC_BASE, GICC_SIZE, GICD_BASE, GICR_BASE, GICR_STRIDE};

/// The distributor's size for `version`.
pub const fn gicd_size(version: Version) -> u64 {
    match version {
        Version::V2 => crate::layout::GICV2_GICD_SIZE,
        Version::V3 => crate::layout::GICV3_GICD_SIZE,
    }
}

/// `IIDR`s: Arm as implementer (0x43B), GIC-400 and GIC-600 style.
const GICD_IIDR_V2: u32 = 0x0200_143B;
const GICD_IIDR_V3: u32 = 0x0300_043B;
/// `PIDR2` with `ArchRev` 2 or 3.
const PIDR2_V2: u32 = 0x2B;
const PIDR2_V3: u32 = 0x3B;

/// Which page an access hit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Frame {
    /// The distributor.
    Dist,
    /// vCPU `i`'s redistributor (GICv3).
    Redist(usize),
}

impl Vgic {
    /// The emulated page `ipa` lies in and its offset there, if any.
    pub fn frame(&self, ipa: u64) -> Option<(Frame, u64)> {
        if !self.present {
            return None;
        }
        let d = ipa.wrapping_sub(GICD_BASE);
        if d < gicd_size(self.version) {
            return Some((Frame::Dist, d));
        }
        let r = ipa.wrapping_sub(GICR_BASE);
        if self.version == Version::V3 && r < GICR_STRIDE * self.vcpus as u64 {
            return Some((Frame::Redist((r / GICR_STRIDE) as usize), r % GICR_STRIDE));
        }
        None
    }

    /// A read of `size` bytes (1, 2, 4 or 8) at `ipa` by vCPU `v`.
    pub fn mmio_read(&self, v: usize, ipa: u64, size: u64) -> u64 {
        let Some((frame, off)) = self.frame(ipa) else { return 0 };
        let word = |o: u64| u64::from(self.read32(v, frame, o));
        match size {
            8 => word(off) | word(off + 4) << 32,
            4 => word(off & !3),
            1 | 2 => (word(off & !3) >> ((off & 3) * 8)) & ((1 << (size * 8)) - 1),
            _ => 0,
        }
    }

    /// A write of `size` bytes at `ipa` by vCPU `v`; returns the vCPUs
    /// that now have an interrupt to take.
    pub fn mmio_write(&mut self, v: usize, ipa: u64, size: u64, value: u64) -> Kick {
        let Some((frame, off)) = self.frame(ipa) else { return Kick::NONE };
        match size {
            8 => {
                self.write32(v, frame, off, value as u32, 0xf);
                self.write32(v, frame, off + 4, (value >> 32) as u32, 0xf);
            }
            4 => self.write32(v, frame, off & !3, value as u32, 0xf),
            1 | 2 => {
                let shift = (off & 3) * 8;
                let lanes = if size == 1 { 1 } else { 3 } << (off & 3);
                self.write32(v, frame, off & !3, (value << shift) as u32, lanes);
            }
            _ => {}
        }
        // Rare: whoever may now take an interrupt is kicked.
        let mut k = Kick::NONE;
        for t in 0..self.vcpus {
            if self.has_pending(t) {
                k.add(t);
            }
        }
        k
    }

    /// The 32 INTIDs of bit register `off` from `base` (one bit each),
    /// if the frame holds them: the distributor holds SPIs (and under
    /// GICv2 the private ones of the accessing vCPU), a redistributor its
    /// vCPU's private ones.
    fn bit_irqs(&self, frame: Frame, off: u64, base: u64) -> Option<u32> {
        let first = ((off - base) * 8) as u32;
        self.holds(frame, first).then_some(first)
    }

    /// Same for byte-per-INTID registers.
    fn byte_irqs(&self, frame: Frame, off: u64, base: u64) -> Option<u32> {
        let first = (off - base) as u32;
        self.holds(frame, first).then_some(first)
    }

    /// Whether the frame holds the registers of INTID `first` (and those
    /// after it in the same register): the distributor its SPIs (GICv2:
    /// and the accessing vCPU's private ones), a redistributor its vCPU's
    /// private ones.
    fn holds(&self, frame: Frame, first: u32) -> bool {
        match frame {
            Frame::Dist => first < NR_IRQS && (first >= 32 || self.version == Version::V2),
            Frame::Redist(_) => first < 32,
        }
    }

    fn gather(&self, v: usize, first: u32, f: impl Fn(&Irq) -> bool) -> u32 {
        (0..32).filter(|&b| self.irq(v, first + b).is_some_and(&f)).fold(0, |a, b| a | 1 << b)
    }

    fn read32(&self, v: usize, frame: Frame, off: u64) -> u32 {
        let v = match frame {
            Frame::Redist(r) => r,
            Frame::Dist => v,
        };
        let v3 = self.version == Version::V3;
        match (frame, off) {
            (Frame::Dist, 0x0) => self.ctlr | if v3 { 1 << 4 | 1 << 6 } else { 0 },
            // ITLinesNumber; GICv2 CPUNumber; GICv3 IDbits (10 bits).
            (Frame::Dist, 0x4) => {
                let lines = NR_IRQS / 32 - 1;
                if v3 {
                    lines | 9 << 19
                } else {
                    lines | ((self.vcpus as u32 - 1) << 5)
                }
            }
            (Frame::Dist, 0x8) => {
                if v3 {
                    GICD_IIDR_V3
                } else {
                    GICD_IIDR_V2
                }
            }
            (Frame::Dist, 0xFE8) if !v3 => PIDR2_V2,
            (Frame::Dist, 0xFFE8) if v3 => PIDR2_V3,
            (Frame::Dist, o @ 0x6000..0x8000) if v3 => {
                let intid = ((o - 0x6000) / 8) as u32;
                match (self.irq(v, intid), o & 4) {
                    (Some(irq), 0) if intid >= 32 => u32::from(irq.target) & 0xff,
                    _ => 0,
                }
            }
            (Frame::Redist(_), 0x4) => GICD_IIDR_V3,
            // GICR_TYPER: Processor_Number, Last; then the affinity.
            (Frame::Redist(r), 0x8) => {
                (r as u32) << 8 | if r + 1 == self.vcpus { 1 << 4 } else { 0 }
            }
            (Frame::Redist(r), 0xC) => r as u32,
            (Frame::Redist(r), 0x14) if self.cpus[r].asleep => 0b110,
            (Frame::Redist(_), 0x14) => 0,
            (Frame::Redist(_), 0xFFE8) => PIDR2_V3,
            (Frame::Redist(_), o) if o >= 0x1_0000 => self.irq_reg_read(v, frame, o - 0x1_0000),
            (Frame::Dist, o) => self.irq_reg_read(v, frame, o),
            _ => 0,
        }
    }

    /// The per-INTID registers, at their distributor offsets (the
    /// redistributor's `SGI_base` frame has the same layout).
    fn irq_reg_read(&self, v: usize, frame: Frame, off: u64) -> u32 {
        let bits = |base: u64, f: fn(&Irq) -> bool| {
            self.bit_irqs(frame, off, base).map_or(0, |first| self.gather(v, first, f))
        };
        match off {
            0x080..0x100 => bits(0x080, |i| i.group1),
            0x100..0x200 => bits(0x100 + (off & 0x80), |i| i.enabled),
            0x200..0x300 => bits(0x200 + (off & 0x80), Irq::pending),
            0x300..0x400 => bits(0x300 + (off & 0x80), |i| i.active),
            0x400..0x800 => self.bytes_read(v, frame, off, 0x400, |i| i.priority),
            // GICv2 ITARGETSR: the private ones read as the reader.
            0x800..0x820 if self.version == Version::V2 => u32::from_ne_bytes([1u8 << v; 4]),
            0x820..0xC00 if self.version == Version::V2 => {
                self.bytes_read(v, frame, off, 0x800, |i| i.target)
            }
            0xC00..0xD00 => {
                // Two bits per INTID, 16 per register: bit 1 of each is
                // edge-triggered.
                let first = (((off - 0xC00) / 4) * 16) as u32;
                if !self.holds(frame, first) {
                    return 0;
                }
                (0..16)
                    .filter(|&k| self.irq(v, first + k).is_some_and(|i| i.edge))
                    .fold(0, |a, k| a | 2 << (2 * k))
            }
            _ => 0,
        }
    }

    fn bytes_read(&self, v: usize, frame: Frame, off: u64, base: u64, f: fn(&Irq) -> u8) -> u32 {
        let Some(first) = self.byte_irqs(frame, off & !3, base) else { return 0 };
        let mut b = [0u8; 4];
        for (k, byte) in b.iter_mut().enumerate() {
            if let Some(irq) = self.irq(v, first + k as u32) {
                *byte = f(irq);
            }
        }
        u32::from_le_bytes(b)
    }

    /// A write of the byte lanes `lanes` (bit per byte) of `value` to the
    /// 32-bit register at `off`.
    fn write32(&mut self, v: usize, frame: Frame, off: u64, value: u32, lanes: u32) {
        let v = match frame {
            Frame::Redist(r) => r,
            Frame::Dist => v,
        };
        let v3 = self.version == Version::V3;
        match (frame, off) {
            (Frame::Dist, 0x0) => self.ctlr = value & 0b11,
            (Frame::Dist, 0xF00) if !v3 => {
                // GICD_SGIR: TargetListFilter, CPUTargetList, SGIINTID.
                let intid = value & 0xf;
                let targets = match (value >> 24) & 3 {
                    0 => (value >> 16) as u8,
                    1 => !(1u8 << v),
                    2 => 1 << v,
                    _ => 0,
                };
                self.send_sgi(v, targets, intid);
            }
            (Frame::Dist, o @ 0x6000..0x8000) if v3 => {
                let intid = ((o - 0x6000) / 8) as u32;
                if intid >= 32 && o & 4 == 0 {
                    if let Some(irq) = self.irq_mut(v, intid) {
                        // Aff0 only (the vCPUs' affinities are 0.0.0.i);
                        // IRM (any vCPU) picks vCPU 0.
                        irq.target = if value & (1 << 31) != 0 { 0 } else { value as u8 };
                    }
                }
            }
            (Frame::Redist(r), 0x14) => self.cpus[r].asleep = value & 0b10 != 0,
            (Frame::Redist(_), o) if o >= 0x1_0000 => {
                self.irq_reg_write(v, frame, o - 0x1_0000, value, lanes)
            }
            (Frame::Dist, o) => self.irq_reg_write(v, frame, o, value, lanes),
            _ => {}
        }
    }

    fn irq_reg_write(&mut self, v: usize, frame: Frame, off: u64, value: u32, lanes: u32) {
        let bits = |s: &mut Self, base: u64, f: fn(&mut Irq, bool)| {
            if let Some(first) = s.bit_irqs(frame, off, base) {
                for b in 0..32 {
                    if let Some(irq) = s.irq_mut(v, first + b) {
                        f(irq, value & (1 << b) != 0);
                    }
                }
            }
        };
        let sgi_v2 = self.version == Version::V2;
        match off {
            0x080..0x100 => bits(self, 0x080, |i, b| i.group1 = b),
            0x100..0x180 => bits(self, 0x100, |i, b| i.enabled |= b),
            0x180..0x200 => bits(self, 0x180, |i, b| i.enabled &= !b),
            0x200..0x280 => {
                // GICv2 SGIs are made pending through GICD_SGIR only.
                let first = self.bit_irqs(frame, off, 0x200);
                bits(self, 0x200, |i, b| {
                    if b && i.in_lr {
                        i.repend = true;
                    }
                    i.latch |= b;
                });
                if sgi_v2 && first == Some(0) {
                    for k in 0..16 {
                        let sources = self.cpus[v].sgi_sources[k];
                        self.cpus[v].irqs[k].latch = sources != 0;
                    }
                }
            }
            0x280..0x300 => {
                bits(self, 0x280, |i, b| i.latch &= !b);
                if sgi_v2 && self.bit_irqs(frame, off, 0x280) == Some(0) {
                    for k in 0..16 {
                        if value & (1 << k) != 0 {
                            self.cpus[v].sgi_sources[k] = 0;
                        }
                    }
                }
            }
            0x300..0x380 => bits(self, 0x300, |i, b| i.active |= b),
            0x380..0x400 => bits(self, 0x380, |i, b| i.active &= !b),
            0x400..0x800 => self.bytes_write(v, frame, off, 0x400, value, lanes, |i, b| {
                i.priority = b;
            }),
            0x800..0xC00 if sgi_v2 && off >= 0x820 => {
                self.bytes_write(v, frame, off, 0x800, value, lanes, |i, b| i.target = b)
            }
            0xC00..0xD00 => {
                // Two bits per INTID, 16 per register; SGIs stay edge.
                let first = (((off - 0xC00) / 4) * 16) as u32;
                if self.holds(frame, first) && first >= 16 {
                    for k in 0..16 {
                        if let Some(irq) = self.irq_mut(v, first + k) {
                            irq.edge = value & (2 << (2 * k)) != 0;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn bytes_write(
        &mut self,
        v: usize,
        frame: Frame,
        off: u64,
        base: u64,
        value: u32,
        lanes: u32,
        f: fn(&mut Irq, u8),
    ) {
        let Some(first) = self.byte_irqs(frame, off & !3, base) else { return };
        for (k, byte) in value.to_le_bytes().into_iter().enumerate() {
            if lanes & (1 << k) != 0 {
                if let Some(irq) = self.irq_mut(v, first + k as u32) {
                    f(irq, byte);
                }
            }
        }
    }
}
