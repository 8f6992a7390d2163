//! The virtual GIC of a VM: the interrupt state a GIC's distributor and
//! redistributors hold for the guest, kept in software, and the choice of
//! what goes into a vCPU's list registers. Portable and host-tested; the
//! EL2 code moves [`LrEntry`]s in and out of the hardware's list
//! registers (`ICH_LR<n>_EL2` for GICv3, `GICH_LR<n>` for GICv2, encoded
//! by [`lr`]), and the guest's register accesses to the distributor and
//! redistributor pages arrive here from stage-2 faults ([`mmio`]).
//!
//! A VM gets [`SPIS`] shared peripheral interrupts (INTIDs 32 to 63) and
//! per vCPU the 16 SGIs and 16 PPIs. Every interrupt has its enable,
//! pending, active, group, priority and trigger state as the GIC
//! architecture defines them; a level-sensitive interrupt is pending while
//! its line ([`Vgic::set_level`]) is high or while software made it
//! pending. GICv3 guests see affinity routing (ARE set, one security
//! state); GICv2 guests see target lists and SGI source CPUs.
//!
//! The state lives under the VM's lock and is never held across a guest's
//! run: a vCPU's list registers are filled before it enters the guest
//! ([`Vgic::flush`]) and folded back when it exits ([`Vgic::sync`]).
//! Whatever makes an interrupt deliverable to a vCPU returns that vCPU in
//! a [`Kick`] set so the caller can wake it or interrupt the CPU it runs
//! on.

pub mod lr;
pub mod mmio;

#[cfg(test)]
mod tests;

/// Shared peripheral interrupts a VM has: INTIDs 32 to 32 + SPIS - 1.
pub const SPIS: usize = 32;
/// INTIDs a VM has (SGIs, PPIs, SPIs).
pub const NR_IRQS: u32 = 32 + SPIS as u32;
/// vCPUs a virtual GIC serves (GICv2's target lists have eight bits).
pub const MAX_VCPUS: usize = 8;
/// The EL1 virtual timer's PPI.
pub const VTIMER_PPI: u32 = 27;
/// The EL1 physical timer's PPI.
pub const PTIMER_PPI: u32 = 30;
/// The PL011's SPI (SPI 1).
pub const UART_SPI: u32 = 33;

/// The GIC architecture a guest sees.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Version {
    /// GICv2: memory-mapped CPU interface, target lists.
    V2,
    /// GICv3: system-register CPU interface, redistributors, affinity
    /// routing.
    V3,
}

/// A set of vCPUs (bit `i`: vCPU `i`) that have something new to take:
/// the caller wakes each one that waits, or interrupts the CPU running it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Kick(pub u8);

impl Kick {
    /// No vCPU.
    pub const NONE: Kick = Kick(0);

    fn add(&mut self, v: usize) {
        self.0 |= 1 << v;
    }

    /// The vCPUs in the set.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_VCPUS).filter(move |i| self.0 & (1 << i) != 0)
    }
}

/// One interrupt's state.
#[derive(Clone, Copy, Default, Debug)]
struct Irq {
    enabled: bool,
    /// Made pending by an edge, an SGI or a write to `ISPENDR`.
    latch: bool,
    /// The line of a level-sensitive interrupt.
    level: bool,
    active: bool,
    /// Edge-triggered (SGIs always).
    edge: bool,
    group1: bool,
    priority: u8,
    /// SPIs: GICv3 the vCPU `IROUTER` names (Aff0), GICv2 the
    /// `ITARGETSR` byte.
    target: u8,
    /// In a list register of vCPU `owner` since the last flush.
    in_lr: bool,
    owner: u8,
    /// Made pending again while in a list register.
    repend: bool,
}

impl Irq {
    fn pending(&self) -> bool {
        self.latch || (self.level && !self.edge)
    }
}

/// One vCPU's private interrupts.
#[derive(Clone, Copy, Debug)]
struct Private {
    irqs: [Irq; 32],
    /// GICv2: the CPUs each SGI is pending from (bit per source).
    sgi_sources: [u8; 16],
    /// GICv3 `GICR_WAKER.ProcessorSleep`.
    asleep: bool,
}

impl Private {
    fn new() -> Self {
        let mut irqs = [Irq::default(); 32];
        for irq in irqs.iter_mut().take(16) {
            irq.edge = true;
        }
        Self { irqs, sgi_sources: [0; 16], asleep: true }
    }
}

/// What a list register holds: written by [`Vgic::flush`], read back
/// after the guest ran and handed to [`Vgic::sync`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LrEntry {
    /// The virtual INTID.
    pub intid: u32,
    /// Pending.
    pub pending: bool,
    /// Active.
    pub active: bool,
    /// Group 1 (else group 0).
    pub group1: bool,
    /// Priority.
    pub priority: u8,
    /// Ask for a maintenance interrupt when the guest deactivates it (a
    /// level-sensitive interrupt, whose line is then sampled again).
    pub eoi: bool,
    /// GICv2 SGIs: the source CPU.
    pub source: u8,
}

/// A VM's virtual GIC (see the module documentation).
#[derive(Debug)]
pub struct Vgic {
    /// False on a host without a GIC: no frames, nothing delivered.
    present: bool,
    version: Version,
    vcpus: usize,
    /// `GICD_CTLR`'s group enables (bit 0 group 0, bit 1 group 1).
    ctlr: u32,
    spis: [Irq; SPIS],
    cpus: [Private; MAX_VCPUS],
}

impl Vgic {
    /// A GIC of `version` for `vcpus` vCPUs (at most [`MAX_VCPUS`]), in
    /// its reset state.
    pub fn new(version: Version, vcpus: usize) -> Self {
        Self {
            present: true,
            version,
            vcpus: vcpus.clamp(1, MAX_VCPUS),
            ctlr: 0,
            spis: [Irq::default(); SPIS],
            cpus: [Private::new(); MAX_VCPUS],
        }
    }

    /// No interrupt controller, for a host without a GIC: its pages are
    /// not there (an access aborts) and no interrupt is ever pending.
    pub fn absent(vcpus: usize) -> Self {
        Self { present: false, ..Self::new(Version::V2, vcpus) }
    }

    /// Whether the guest has one.
    pub fn is_present(&self) -> bool {
        self.present
    }

    /// Back to the reset state (a VM reset).
    pub fn reset(&mut self) {
        *self = Self { present: self.present, ..Self::new(self.version, self.vcpus) };
    }

    /// The architecture the guest sees.
    pub fn version(&self) -> Version {
        self.version
    }

    /// vCPUs served.
    pub fn vcpus(&self) -> usize {
        self.vcpus
    }

    fn irq(&self, v: usize, intid: u32) -> Option<&Irq> {
        match intid {
            0..32 => self.cpus.get(v).map(|c| &c.irqs[intid as usize]),
            _ => self.spis.get((intid - 32) as usize),
        }
    }

    fn irq_mut(&mut self, v: usize, intid: u32) -> Option<&mut Irq> {
        match intid {
            0..32 => self.cpus.get_mut(v).map(|c| &mut c.irqs[intid as usize]),
            _ => self.spis.get_mut((intid - 32) as usize),
        }
    }

    /// The vCPU an SPI goes to, if any.
    fn spi_target(&self, irq: &Irq) -> Option<usize> {
        let v = match self.version {
            Version::V3 => irq.target as usize,
            Version::V2 => irq.target.trailing_zeros() as usize,
        };
        (v < self.vcpus).then_some(v)
    }

    fn group_enabled(&self, irq: &Irq) -> bool {
        self.present && self.ctlr & (1 << u32::from(irq.group1)) != 0
    }

    /// Whether `irq` may be signalled to vCPU `v` (ignoring priorities).
    fn deliverable(&self, v: usize, intid: u32, irq: &Irq) -> bool {
        if intid >= 32 {
            if self.spi_target(irq) != Some(v) || (irq.in_lr && irq.owner as usize != v) {
                return false;
            }
            if irq.active && irq.owner as usize != v {
                return false;
            }
        }
        irq.pending() && irq.enabled && !irq.active && self.group_enabled(irq)
    }

    /// After `intid`'s state changed: the vCPU to kick, if it may now be
    /// signalled (or is in a list register that is now stale).
    fn kick_for(&self, v: usize, intid: u32) -> Kick {
        let mut k = Kick::NONE;
        let Some(irq) = self.irq(v, intid) else { return k };
        let target = if intid < 32 { Some(v) } else { self.spi_target(irq) };
        if let Some(t) = target {
            if irq.in_lr || self.deliverable(t, intid, irq) {
                k.add(if irq.in_lr { irq.owner as usize } else { t });
            }
        }
        k
    }

    /// Sets the line of level-sensitive interrupt `intid` (a PPI of vCPU
    /// `v`, or an SPI, `v` then ignored).
    pub fn set_level(&mut self, v: usize, intid: u32, level: bool) -> Kick {
        let Some(irq) = self.irq_mut(v, intid) else { return Kick::NONE };
        if irq.level == level {
            return Kick::NONE;
        }
        irq.level = level;
        if level && irq.in_lr {
            irq.repend = true;
        }
        if level {
            self.kick_for(v, intid)
        } else {
            Kick::NONE
        }
    }

    /// Whether `intid` of vCPU `v` is pending or active (its line need
    /// not be watched meanwhile).
    pub fn is_pending_or_active(&self, v: usize, intid: u32) -> bool {
        self.irq(v, intid).is_some_and(|i| i.pending() || i.active)
    }

    /// Makes edge interrupt `intid` pending (for vCPU `v` if private),
    /// from source vCPU `source` for a GICv2 SGI.
    fn make_pending(&mut self, v: usize, intid: u32, source: usize) -> Kick {
        if intid < 16 && self.version == Version::V2 {
            if let Some(c) = self.cpus.get_mut(v) {
                c.sgi_sources[intid as usize] |= 1 << source;
            }
        }
        let Some(irq) = self.irq_mut(v, intid) else { return Kick::NONE };
        irq.latch = true;
        if irq.in_lr {
            irq.repend = true;
        }
        self.kick_for(v, intid)
    }

    /// vCPU `src` sends SGI `intid` to the vCPUs in `targets`.
    pub fn send_sgi(&mut self, src: usize, targets: u8, intid: u32) -> Kick {
        let mut k = Kick::NONE;
        if intid >= 16 {
            return k;
        }
        let vcpus = self.vcpus;
        for t in Kick(targets).iter().filter(|&t| t < vcpus) {
            k.0 |= self.make_pending(t, intid, src).0;
        }
        k
    }

    /// A GICv3 guest's write of `value` to `ICC_SGI1R_EL1` (or
    /// `ICC_ASGI1R_EL1`, `ICC_SGI0R_EL1`) from vCPU `src`: the SGI goes to
    /// every other vCPU (IRM), or to those of the target list whose
    /// affinity is 0.0.0.n (the only affinities the vCPUs have).
    pub fn send_sgi1r(&mut self, src: usize, value: u64) -> Kick {
        let intid = ((value >> 24) & 0xf) as u32;
        let all_but_me = value & (1 << 40) != 0;
        let aff_rest = (value >> 16) & 0xff | (value >> 32) & 0xff | (value >> 48) & 0xff;
        let range_selector = (value >> 44) & 0xf;
        let targets = if all_but_me {
            !(1u8 << src)
        } else if aff_rest == 0 && range_selector == 0 {
            (value & 0xff) as u8
        } else {
            0
        };
        self.send_sgi(src, targets, intid)
    }

    /// Whether `intid` of vCPU `v` would be signalled when pending (it is
    /// enabled and its group is on): a timer nobody listens to wakes no
    /// one.
    pub fn would_deliver(&self, v: usize, intid: u32) -> bool {
        self.irq(v, intid).is_some_and(|i| i.enabled && self.group_enabled(i))
    }

    /// Whether vCPU `v` has an interrupt to take (what wakes it from WFI).
    pub fn has_pending(&self, v: usize) -> bool {
        (0..NR_IRQS).any(|i| self.irq(v, i).is_some_and(|irq| self.deliverable(v, i, irq)))
    }

    /// Fills `lrs` (as many as the CPU has) with what vCPU `v` should
    /// see: first the interrupts it has active (so it can deactivate
    /// them), then the pending ones by priority. Returns whether some
    /// pending interrupt did not fit (the caller then asks for an
    /// underflow maintenance interrupt).
    pub fn flush(&mut self, v: usize, lrs: &mut [Option<LrEntry>]) -> bool {
        lrs.iter_mut().for_each(|l| *l = None);
        if v >= self.vcpus {
            return false;
        }
        // (key, intid): active ones first, then by priority, then INTID.
        let mut cand: [(u16, u32); NR_IRQS as usize] = [(u16::MAX, 0); NR_IRQS as usize];
        let mut n = 0;
        for intid in 0..NR_IRQS {
            let Some(irq) = self.irq(v, intid) else { continue };
            let mine_active = irq.active && (intid < 32 || irq.owner as usize == v);
            if mine_active || self.deliverable(v, intid, irq) {
                let key = if irq.active { 0 } else { 1 + u16::from(irq.priority) };
                cand[n] = (key, intid);
                n += 1;
            }
        }
        let cand = &mut cand[..n];
        cand.sort_unstable();
        let mut overflow = false;
        for (slot, &(_, intid)) in cand.iter().enumerate() {
            if slot >= lrs.len() {
                overflow = true;
                break;
            }
            let Some(&irq) = self.irq(v, intid) else { continue };
            let sources = if intid < 16 { self.cpus[v].sgi_sources[intid as usize] } else { 0 };
            let source = if self.version == Version::V2 && sources != 0 {
                sources.trailing_zeros() as u8
            } else {
                0
            };
            lrs[slot] = Some(LrEntry {
                intid,
                pending: irq.pending() && irq.enabled && self.group_enabled(&irq),
                active: irq.active,
                group1: irq.group1,
                priority: irq.priority,
                eoi: !irq.edge,
                source,
            });
            if let Some(irq) = self.irq_mut(v, intid) {
                irq.in_lr = true;
                irq.owner = v as u8;
                irq.repend = false;
            }
        }
        overflow
    }

    /// Folds back vCPU `v`'s list registers: `written` as
    /// [`flush`](Self::flush) filled them, `now` as the hardware holds
    /// them after the guest ran (the same INTIDs, states updated).
    pub fn sync(&mut self, v: usize, written: &[Option<LrEntry>], now: &[Option<LrEntry>]) {
        let version = self.version;
        for (w, n) in written.iter().zip(now) {
            let Some(w) = w else { continue };
            let (pending, active) = n.map_or((false, false), |n| (n.pending, n.active));
            let intid = w.intid;
            let consumed = w.pending && !pending;
            if consumed && version == Version::V2 && intid < 16 {
                if let Some(c) = self.cpus.get_mut(v) {
                    c.sgi_sources[intid as usize] &= !(1 << w.source);
                }
            }
            let more_sources = intid < 16
                && version == Version::V2
                && self.cpus.get(v).is_some_and(|c| c.sgi_sources[intid as usize] != 0);
            let Some(irq) = self.irq_mut(v, intid) else { continue };
            if consumed {
                irq.latch = irq.repend || more_sources;
            }
            irq.active = active;
            irq.in_lr = false;
            irq.repend = false;
            if !active && intid >= 32 {
                irq.owner = 0;
            }
        }
    }
}
