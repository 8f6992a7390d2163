//! A vCPU's GICv2 virtual CPU interface, through the hypervisor's control
//! interface `GICH` (memory-mapped, banked per CPU): the list registers
//! (`GICH_LR<n>`), the control register (`GICH_HCR`), the guest's view of
//! its CPU interface (`GICH_VMCR`) and its active priorities
//! (`GICH_APR`). The guest reaches the virtual CPU interface itself
//! (`GICV`) at its GICC address, mapped in its stage 2.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::vgic::{lr, LrEntry};

/// List registers GICv2 allows.
pub const MAX_LRS: usize = 64;

const HCR: usize = 0x00;
const VTR: usize = 0x04;
const VMCR: usize = 0x08;
const APR: usize = 0xF0;
const LR0: usize = 0x100;
/// `GICH_HCR.En`, `GICH_HCR.UIE`.
const HCR_EN: u32 = 1;
const HCR_UIE: u32 = 2;

/// `GICH`'s address (identity mapped), set once at boot.
static BASE: AtomicUsize = AtomicUsize::new(0);

/// Where `GICH` is.
pub fn set_base(pa: u64) {
    BASE.store(pa as usize, Ordering::Relaxed);
}

fn reg(off: usize) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) + off) as *mut u32
}

fn read(off: usize) -> u32 {
    // SAFETY: GICH is device memory in the EL2 map, banked for this CPU;
    // `set_base` ran before any vCPU.
    unsafe { reg(off).read_volatile() }
}

fn write(off: usize, v: u32) {
    // SAFETY: as in `read`.
    unsafe { reg(off).write_volatile(v) }
}

/// A vCPU's GICv2 interface while it is off the CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct GichCpu {
    vmcr: u32,
    apr: u32,
}

impl GichCpu {
    /// List registers on this CPU (`GICH_VTR.ListRegs` + 1).
    pub fn lrs() -> usize {
        ((read(VTR) & 0x3f) as usize + 1).min(MAX_LRS)
    }

    /// Puts the vCPU's interface on the CPU.
    pub fn load(&self) {
        write(VMCR, self.vmcr);
        write(APR, self.apr);
        write(HCR, HCR_EN);
    }

    /// Takes it off: saves what the guest set, empties the list registers
    /// and turns the interface off.
    pub fn put(&mut self) {
        self.vmcr = read(VMCR);
        self.apr = read(APR);
        for n in 0..Self::lrs() {
            write(LR0 + 4 * n, 0);
        }
        write(HCR, 0);
    }

    /// Writes `entries` to the list registers.
    pub fn write_lrs(entries: &[Option<LrEntry>], overflow: bool) {
        for (n, e) in entries.iter().enumerate() {
            write(LR0 + 4 * n, lr::encode_v2(e.as_ref()));
        }
        write(HCR, if overflow { HCR_EN | HCR_UIE } else { HCR_EN });
    }

    /// Reads back the list registers `written` says were filled; empties
    /// the ones the guest is done with (which ends their maintenance
    /// condition) and stops asking for underflow interrupts.
    pub fn read_lrs(written: &[Option<LrEntry>], out: &mut [Option<LrEntry>]) {
        for (n, (w, o)) in written.iter().zip(out.iter_mut()).enumerate() {
            *o = None;
            if w.is_some() {
                *o = lr::decode_v2(read(LR0 + 4 * n));
                if o.is_none() {
                    write(LR0 + 4 * n, 0);
                }
            }
        }
        write(HCR, HCR_EN);
    }
}
