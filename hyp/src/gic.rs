//! The host's GIC, which the hypervisor drives itself (through the
//! `arm-gic` crate): the distributor and, on GICv3, each CPU's
//! redistributor, set up at boot; the physical interrupts EL2 takes while
//! guests run (its own timer, the guests' timers, the virtual interface's
//! maintenance interrupt, the kick SGI) enabled on every CPU; and the
//! acknowledge, end and send operations the run loop needs.
//!
//! Every host interrupt is group 1 (group 0 on a GICv2 without security
//! extensions, as `arm-gic` sets it up); end of interrupt both drops the
//! priority and deactivates, with the value the acknowledge read (on a
//! GICv2, an SGI's source CPU included: see `crate::hostirq`). Guests
//! never see these registers: the distributor and redistributors they see
//! are emulated (`crate::vgic`) and their CPU interface is the virtual
//! one.

use arm_gic::{IntId, InterruptGroup};
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::{Mutex, Once};

use crate::hostirq::Acked;
use crate::platform;
use crate::vgic::Version;

/// The SGI that makes a CPU leave its guest and look at its vCPU again.
pub const KICK_SGI: u32 = 0;
/// The virtual interface's maintenance interrupt.
pub const MAINTENANCE_PPI: u32 = 25;
/// The EL2 physical timer (`CNTHP`): time slices and wake-ups.
pub const HYP_TIMER_PPI: u32 = 26;
/// The guests' EL1 virtual and physical timers.
pub use crate::vgic::{PTIMER_PPI, VTIMER_PPI};

enum Driver {
    #[cfg(target_arch = "aarch64")]
    V3(arm_gic::gicv3::GicV3<'static>),
    V2(arm_gic::gicv2::GicV2<'static>),
}

// SAFETY: the driver holds pointers to the GIC's MMIO registers, which
// any CPU may use; the mutex serialises the users.
unsafe impl Send for Driver {}

static GIC: Once<Mutex<Driver>> = Once::new();

/// What the GICv2 virtualization extensions offer: the hypervisor's
/// control interface (`GICH`) and the virtual CPU interface (`GICV`).
#[derive(Clone, Copy, Debug)]
pub struct V2Virt {
    /// `GICH`'s physical address.
    pub gich: u64,
    /// `GICV`'s physical address.
    pub gicv: u64,
}

static V2_VIRT: Once<Option<V2Virt>> = Once::new();
/// A GICv2 distributor's address.
static V2_GICD: AtomicUsize = AtomicUsize::new(0);
/// A GICv2 CPU interface's address.
static V2_GICC: AtomicUsize = AtomicUsize::new(0);

/// The host GIC's architecture, once [`init`] ran.
pub fn version() -> Option<Version> {
    GIC.get().map(|g| match &*g.lock() {
        #[cfg(target_arch = "aarch64")]
        Driver::V3(_) => Version::V3,
        Driver::V2(_) => Version::V2,
    })
}

/// The GICv2 virtualization interface, if the host GIC is a GICv2 that
/// has one.
pub fn v2_virt() -> Option<V2Virt> {
    V2_VIRT.get().copied().flatten()
}

/// Sets up the distributor (and redistributors) on the boot CPU, for
/// `cpus` CPUs, then this CPU's interface as [`init_cpu`] does.
pub fn init(gic: &platform::Gic, #[allow(unused)] cpus: usize) -> Result<(), &'static str> {
    let driver = match gic {
        #[cfg(target_arch = "aarch64")]
        platform::Gic::V3 { distributor, redistributors } => {
            let gicr = redistributors.first().ok_or("GICv3 without redistributors")?;
            use core::ptr::NonNull;
            let gicd = NonNull::new(distributor.base as usize as *mut _).ok_or("GICD at 0")?;
            let gicr = NonNull::new(gicr.base as usize as *mut _).ok_or("GICR at 0")?;
            // SAFETY: the addresses come from the DTB, are mapped as device
            // memory by the EL2 map and used by this driver only.
            let mut d = unsafe {
                arm_gic::gicv3::GicV3::new(safe_mmio::UniqueMmioPointer::new(gicd), gicr, cpus)
            }
            .map_err(|_| "GICv3 redistributors not recognised")?;
            d.setup(crate::cpu::cpu_index());
            Driver::V3(d)
        }
        #[cfg(not(target_arch = "aarch64"))]
        platform::Gic::V3 { .. } => return Err("GICv3 on ARMv7 is not supported"),
        platform::Gic::V2 { distributor, cpu_interface, hyp_interface, vcpu_interface } => {
            V2_VIRT.call_once(|| match (hyp_interface, vcpu_interface) {
                (Some(h), Some(v)) => Some(V2Virt { gich: h.base, gicv: v.base }),
                _ => None,
            });
            V2_GICD.store(distributor.base as usize, Ordering::Relaxed);
            V2_GICC.store(cpu_interface.base as usize, Ordering::Relaxed);
            // SAFETY: as above.
            let mut d = unsafe {
                arm_gic::gicv2::GicV2::new(
                    distributor.base as usize as *mut _,
                    cpu_interface.base as usize as *mut _,
                )
            };
            d.setup();
            Driver::V2(d)
        }
    };
    let v2 = matches!(driver, Driver::V2(_));
    #[cfg(target_arch = "aarch64")]
    IS_V3.store(!v2, Ordering::Relaxed);
    crate::cpu::set_gic_iface(if v2 { Version::V2 } else { Version::V3 });
    if let Some(virt) = v2_virt() {
        crate::cpu::set_gich_base(virt.gich);
    }
    GIC.call_once(|| Mutex::new(driver));
    init_cpu();
    Ok(())
}

/// This CPU's part: its redistributor awake (GICv3), its CPU interface on
/// with every priority let through, and the interrupts EL2 takes enabled.
pub fn init_cpu() {
    let Some(gic) = GIC.get() else { return };
    let mut g = gic.lock();
    match &mut *g {
        #[cfg(target_arch = "aarch64")]
        Driver::V3(d) => {
            use arm_gic::gicv3::GicCpuInterface as C;
            d.init_cpu(crate::cpu::cpu_index());
            C::set_priority_mask(0xff);
            C::enable_group1(true);
        }
        // The CPU interface and the private interrupts are banked.
        Driver::V2(d) => d.setup(),
    }
    drop(g);
    for intid in [KICK_SGI, MAINTENANCE_PPI, HYP_TIMER_PPI, VTIMER_PPI, PTIMER_PPI] {
        set_private_enabled(intid, true);
    }
}

fn intid_of(intid: u32) -> IntId {
    match intid {
        0..16 => IntId::sgi(intid),
        16..32 => IntId::ppi(intid - 16),
        _ => IntId::spi(intid - 32),
    }
}

/// Enables or disables private interrupt `intid` (an SGI or PPI) on this
/// CPU.
pub fn set_private_enabled(intid: u32, on: bool) {
    let Some(gic) = GIC.get() else { return };
    let id = intid_of(intid);
    match &mut *gic.lock() {
        #[cfg(target_arch = "aarch64")]
        Driver::V3(d) => {
            let _ = d.enable_interrupt(id, Some(crate::cpu::cpu_index()), on);
        }
        Driver::V2(d) => {
            let _ = d.enable_interrupt(id, on);
        }
    }
}

/// The highest-priority interrupt signalled to this CPU, acknowledged
/// (`None`: none, a special INTID). To be ended with [`end`].
pub fn ack() -> Option<Acked> {
    let gic = GIC.get()?;
    #[cfg(target_arch = "aarch64")]
    if IS_V3.load(Ordering::Relaxed) {
        use arm_gic::gicv3::GicCpuInterface as C;
        return C::get_and_acknowledge_interrupt(InterruptGroup::Group1)
            .and_then(|id| Acked::from_v3_iar(id.into()));
    }
    match &mut *gic.lock() {
        // The whole `GICC_IAR`: an SGI's source CPU is part of it.
        Driver::V2(d) => d
            .get_and_acknowledge_interrupt(InterruptGroup::Group0)
            .and_then(|iar| Acked::from_v2_iar(iar.into())),
        #[cfg(target_arch = "aarch64")]
        Driver::V3(_) => None,
    }
}

/// The host GIC is a GICv3 (set by [`init`]): its CPU interface is the
/// system registers, used without the driver's lock.
#[cfg(target_arch = "aarch64")]
static IS_V3: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Ends interrupt `irq`, which [`ack`] returned (priority drop and
/// deactivation).
pub fn end(irq: Acked) {
    let Some(gic) = GIC.get() else { return };
    #[cfg(target_arch = "aarch64")]
    if IS_V3.load(Ordering::Relaxed) {
        let id = intid_of(irq.intid);
        arm_gic::gicv3::GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
        return;
    }
    // `GICC_EOIR` written here rather than with `GicV2::end_interrupt`,
    // whose `IntId` cannot carry an SGI's source CPU, which the write must
    // repeat (`crate::hostirq`).
    #[allow(irrefutable_let_patterns)]
    if let Driver::V2(_) = &mut *gic.lock() {
        let eoir = (V2_GICC.load(Ordering::Relaxed) + 0x10) as *mut u32;
        // SAFETY: GICC_EOIR of the host's CPU interface (banked per CPU),
        // in the EL2 map; the lock serialises the driver's users.
        unsafe { eoir.write_volatile(irq.eoi) };
    }
}

/// This CPU interface's running priority: the priority of the
/// highest-priority interrupt acknowledged and not yet ended on this CPU,
/// [`IDLE_PRIORITY`](crate::hostirq::IDLE_PRIORITY) with none (`None`: no
/// GIC). One register read (`GICC_RPR` or `ICC_RPR_EL1`), no side effects.
pub fn running_priority() -> Option<u8> {
    GIC.get()?;
    #[cfg(target_arch = "aarch64")]
    if IS_V3.load(Ordering::Relaxed) {
        return Some(crate::cpu::gic_running_priority());
    }
    // `GicV2` has no accessor for `GICC_RPR`; it is read-only and reading
    // it changes nothing, so the driver's lock is not needed either.
    let offset = core::mem::offset_of!(arm_gic::gicv2::registers::Gicc, rpr);
    let rpr = (V2_GICC.load(Ordering::Relaxed) + offset) as *const u32;
    // SAFETY: GICC_RPR of the host's CPU interface (banked per CPU), in the
    // EL2 map since `init`, which ran (`GIC` is set); a read-only register
    // without side effects.
    Some(unsafe { rpr.read_volatile() } as u8)
}

/// Sends the kick SGI to CPU `cpu` (its `MPIDR` Aff0).
pub fn kick(cpu: usize) {
    let Some(gic) = GIC.get() else { return };
    let id = IntId::sgi(KICK_SGI);
    match &mut *gic.lock() {
        #[cfg(target_arch = "aarch64")]
        Driver::V3(_) => {
            use arm_gic::gicv3::{GicCpuInterface as C, SgiTarget, SgiTargetGroup};
            let target =
                SgiTarget::List { affinity3: 0, affinity2: 0, affinity1: 0, target_list: 1 << cpu };
            let _ = C::send_sgi(id, target, SgiTargetGroup::CurrentGroup1);
        }
        // `GICD_SGIR` written here rather than with `GicV2::send_sgi`,
        // which sets NSATT (forward only if group 1): the host's
        // interrupts are group 0 on a GICv2 without security extensions.
        Driver::V2(_) => {
            let sgir = (V2_GICD.load(Ordering::Relaxed) + 0xF00) as *mut u32;
            // SAFETY: GICD_SGIR of the host's distributor, in the EL2 map;
            // the lock serialises the driver's users.
            unsafe { sgir.write_volatile(1 << (16 + cpu) | KICK_SGI) };
            let _ = id;
        }
    }
}
