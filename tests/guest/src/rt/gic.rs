//! A small driver for the guest's interrupt controller, and the timer
//! interrupt: GICv3 through the system registers (AArch64 guests whose
//! `ID_AA64PFR0_EL1.GIC` says so) or GICv2 through its memory-mapped CPU
//! interface (ARM32, and AArch64 on a GICv2), at QEMU `virt`'s addresses
//! (which the hypervisor's guests have too). The IRQ vector calls
//! [`handle_irq`], which acknowledges each interrupt, calls the handler
//! set with [`set_handler`] and ends it.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::rt::smp::cpu_index;

/// The distributor.
pub const GICD: u64 = 0x0800_0000;
/// The GICv2 CPU interface.
pub const GICC: u64 = 0x0801_0000;
/// The GICv3 redistributors (0x2_0000 apart).
pub const GICR: u64 = 0x080A_0000;
/// The EL1 virtual timer's PPI.
pub const VTIMER_PPI: u32 = 27;
/// The EL1 physical timer's PPI.
pub const PTIMER_PPI: u32 = 30;
/// The PL011's SPI.
pub const UART_SPI: u32 = 33;

/// The interrupt controller's architecture.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Version {
    /// GICv2.
    V2,
    /// GICv3.
    V3,
}

/// The GIC this guest has (read once: the ID register read traps).
pub fn version() -> Version {
    static SEEN: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
    match SEEN.load(Ordering::Relaxed) {
        2 => return Version::V2,
        3 => return Version::V3,
        _ => {}
    }
    let v = probe_version();
    SEEN.store(if v == Version::V3 { 3 } else { 2 }, Ordering::Relaxed);
    v
}

fn probe_version() -> Version {
    #[cfg(target_arch = "aarch64")]
    {
        let pfr0: u64;
        // SAFETY: reading an ID register has no side effects.
        unsafe {
            core::arch::asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack))
        };
        if (pfr0 >> 24) & 0xf != 0 {
            return Version::V3;
        }
    }
    Version::V2
}

/// A 32-bit device register read (for checks of the GIC's registers).
pub fn read32(addr: u64) -> u32 {
    crate::rt::arch::access::mmio_read32(addr as usize)
}

fn write32(addr: u64, v: u32) {
    crate::rt::arch::access::mmio_write32(addr as usize, v)
}

fn gicr_sgi(cpu: usize) -> u64 {
    GICR + cpu as u64 * 0x2_0000 + 0x1_0000
}

static HANDLER: AtomicUsize = AtomicUsize::new(0);
static DIST_UP: AtomicBool = AtomicBool::new(false);

/// Sets the function IRQs are handed to (with their INTID).
pub fn set_handler(f: fn(u32)) {
    HANDLER.store(f as usize, Ordering::SeqCst);
}

#[cfg(target_arch = "aarch64")]
mod icc {
    macro_rules! rd {
        ($r:literal) => {{
            let v: u64;
            // SAFETY: a GIC CPU interface register read; the ones read here
            // have no side effects beyond the GIC's (acknowledge).
            unsafe { core::arch::asm!(concat!("mrs {}, ", $r), out(reg) v, options(nomem, nostack)) };
            v
        }};
    }
    macro_rules! wr {
        ($r:literal, $v:expr) => {{
            // SAFETY: a GIC CPU interface register write.
            unsafe {
                core::arch::asm!(concat!("msr ", $r, ", {}"), "isb", in(reg) $v as u64, options(nomem, nostack))
            };
        }};
    }
    pub fn iar() -> u32 {
        rd!("s3_0_c12_c12_0") as u32
    }
    pub fn eoi(id: u32) {
        wr!("s3_0_c12_c12_1", id);
    }
    pub fn init() {
        wr!("s3_0_c12_c12_5", 0b111u64); // ICC_SRE_EL1
        wr!("s3_0_c4_c6_0", 0xffu64); // ICC_PMR_EL1
        wr!("s3_0_c12_c12_7", 1u64); // ICC_IGRPEN1_EL1
    }
    pub fn sgi1r(v: u64) {
        wr!("s3_0_c12_c11_5", v);
    }
    pub fn sre() -> u64 {
        rd!("s3_0_c12_c12_5")
    }
}

/// Sets up this vCPU's part (and, on the first call, the distributor):
/// every interrupt group 1 (GICv3) or group 0 (GICv2), priorities let
/// through, the CPU interface on. IRQs stay masked in `PSTATE`/`CPSR`.
pub fn init_cpu() {
    let cpu = cpu_index();
    match version() {
        Version::V3 => {
            if !DIST_UP.swap(true, Ordering::SeqCst) {
                write32(GICD, 0b11 | 1 << 4); // groups on, ARE
                for n in 1..2 {
                    write32(GICD + 0x80 + 4 * n, u32::MAX);
                }
            }
            let rd = GICR + cpu as u64 * 0x2_0000;
            write32(rd + 0x14, 0); // GICR_WAKER: awake
            write32(gicr_sgi(cpu) + 0x80, u32::MAX);
            #[cfg(target_arch = "aarch64")]
            icc::init();
        }
        Version::V2 => {
            if !DIST_UP.swap(true, Ordering::SeqCst) {
                write32(GICD, 1);
            }
            write32(GICC + 0x4, 0xff); // GICC_PMR
            write32(GICC, 1); // GICC_CTLR
        }
    }
}

/// `ICC_SRE_EL1` (GICv3, AArch64): what the guest sees of it.
#[cfg(target_arch = "aarch64")]
pub fn sre() -> u64 {
    icc::sre()
}

/// Enables `intid` (a PPI or SGI of this vCPU, or an SPI routed to it).
pub fn enable(intid: u32) {
    let cpu = cpu_index();
    let bit = 1 << (intid % 32);
    match (version(), intid) {
        (Version::V3, 0..32) => write32(gicr_sgi(cpu) + 0x100, bit),
        (Version::V3, _) => {
            write32(GICD + 0x6000 + 8 * u64::from(intid), cpu as u32);
            write32(GICD + 0x100 + 4 * u64::from(intid / 32), bit);
        }
        (Version::V2, _) => {
            if intid >= 32 {
                let t = GICD + 0x800 + u64::from(intid & !3);
                let shift = (intid % 4) * 8;
                let v = read32(t) & !(0xff << shift) | (1 << cpu) << shift;
                write32(t, v);
            }
            write32(GICD + 0x100 + 4 * u64::from(intid / 32), bit);
        }
    }
}

/// Disables `intid`.
pub fn disable(intid: u32) {
    let cpu = cpu_index();
    let bit = 1 << (intid % 32);
    match (version(), intid) {
        (Version::V3, 0..32) => write32(gicr_sgi(cpu) + 0x180, bit),
        _ => write32(GICD + 0x180 + 4 * u64::from(intid / 32), bit),
    }
}

/// Sends SGI `intid` to the vCPUs in `targets` (bit per vCPU index).
pub fn send_sgi(intid: u32, targets: u8) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Version::V3 => icc::sgi1r(u64::from(intid) << 24 | u64::from(targets)),
        _ => write32(GICD + 0xF00, u32::from(targets) << 16 | intid),
    }
}

/// Acknowledges, hands over and ends every pending interrupt (from the
/// IRQ vector).
pub fn handle_irq() {
    loop {
        let iar = match version() {
            #[cfg(target_arch = "aarch64")]
            Version::V3 => icc::iar(),
            _ => read32(GICC + 0xC),
        };
        let id = iar & 0x3ff;
        if id >= 1020 {
            return;
        }
        let h = HANDLER.load(Ordering::SeqCst);
        if h != 0 {
            // SAFETY: only `set_handler` stores here, a `fn(u32)`.
            let f: fn(u32) = unsafe { core::mem::transmute::<usize, fn(u32)>(h) };
            f(id);
        }
        match version() {
            #[cfg(target_arch = "aarch64")]
            Version::V3 => icc::eoi(iar),
            _ => write32(GICC + 0x10, iar),
        }
    }
}

/// Unmasks IRQs at this vCPU (`PSTATE.I`, `CPSR.I`).
pub fn irqs_on() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the vectors handle IRQs.
    unsafe {
        core::arch::asm!("msr daifclr, #2", options(nomem, nostack))
    };
    #[cfg(target_arch = "arm")]
    // SAFETY: the vectors handle IRQs.
    unsafe {
        core::arch::asm!("cpsie i", options(nomem, nostack))
    };
}

/// Masks IRQs at this vCPU.
pub fn irqs_off() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: masking only.
    unsafe {
        core::arch::asm!("msr daifset, #2", options(nomem, nostack))
    };
    #[cfg(target_arch = "arm")]
    // SAFETY: masking only.
    unsafe {
        core::arch::asm!("cpsid i", options(nomem, nostack))
    };
}

/// Takes interrupts until `cond` holds: checks it with IRQs masked and
/// only then waits (`WFI` completes on a pending interrupt even while
/// masked), unmasking to take what woke it. Checking with IRQs on and then
/// waiting would sleep for ever when the awaited interrupt arrives between
/// the two. Returns with IRQs masked.
pub fn wait_irqs_until(mut cond: impl FnMut() -> bool) {
    irqs_off();
    while !cond() {
        wfi();
        irqs_on();
        irqs_off();
    }
}

/// Waits for an interrupt (`wfi`).
pub fn wfi() {
    // SAFETY: waits; no memory effects.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
}

/// Arms the virtual timer to fire `ticks` counter ticks from now.
pub fn vtimer_in(ticks: u64) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the guest's own timer.
    unsafe {
        core::arch::asm!("msr cntv_tval_el0, {}", "msr cntv_ctl_el0, {}", "isb",
            in(reg) ticks, in(reg) 1u64, options(nomem, nostack))
    };
    #[cfg(target_arch = "arm")]
    // SAFETY: the guest's own timer (CNTV_TVAL, CNTV_CTL).
    unsafe {
        core::arch::asm!("mcr p15, 0, {}, c14, c3, 0", "mcr p15, 0, {}, c14, c3, 1", "isb",
            in(reg) ticks as u32, in(reg) 1u32, options(nomem, nostack))
    };
}

/// The virtual counter (`CNTVCT`): under the hypervisor, ticks since the
/// VM was created.
pub fn vcounter() -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        let v: u64;
        // SAFETY: reading the virtual counter has no side effects.
        unsafe {
            core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack))
        };
        v
    }
    #[cfg(target_arch = "arm")]
    {
        let (lo, hi): (u32, u32);
        // SAFETY: as above (CNTVCT).
        unsafe {
            core::arch::asm!("isb", "mrrc p15, 1, {}, {}, c14", out(reg) lo, out(reg) hi, options(nomem, nostack))
        };
        u64::from(hi) << 32 | u64::from(lo)
    }
}

/// Arms the virtual timer to fire when the virtual counter reaches `at`
/// (a periodic tick that does not drift with the handler's latency).
pub fn vtimer_at(at: u64) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the guest's own timer.
    unsafe {
        core::arch::asm!("msr cntv_cval_el0, {}", "msr cntv_ctl_el0, {}", "isb",
            in(reg) at, in(reg) 1u64, options(nomem, nostack))
    };
    #[cfg(target_arch = "arm")]
    // SAFETY: the guest's own timer (CNTV_CVAL, CNTV_CTL).
    unsafe {
        core::arch::asm!("mcrr p15, 3, {}, {}, c14", "mcr p15, 0, {}, c14, c3, 1", "isb",
            in(reg) at as u32, in(reg) (at >> 32) as u32, in(reg) 1u32, options(nomem, nostack))
    };
}

/// Masks the virtual timer's output (as a handler does before the next
/// [`vtimer_in`]).
pub fn vtimer_stop() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the guest's own timer.
    unsafe {
        core::arch::asm!("msr cntv_ctl_el0, {}", "isb", in(reg) 2u64, options(nomem, nostack))
    };
    #[cfg(target_arch = "arm")]
    // SAFETY: the guest's own timer.
    unsafe {
        core::arch::asm!("mcr p15, 0, {}, c14, c3, 1", "isb", in(reg) 2u32, options(nomem, nostack))
    };
}
