//! A vCPU's GICv3 virtual CPU interface: the list registers
//! (`ICH_LR<n>_EL2`), the interface's control (`ICH_HCR_EL2`), the
//! guest's view of its own CPU interface (`ICH_VMCR_EL2`: priority mask,
//! binary points, group enables) and its active priorities
//! (`ICH_AP0R<n>_EL2`, `ICH_AP1R<n>_EL2`), switched with the vCPU.

use arch::{read_sysreg, write_sysreg};

use crate::vgic::{lr, LrEntry};

/// List registers the architecture allows.
const MAX_LRS: usize = 16;

/// `ICH_HCR_EL2.En`: the virtual CPU interface on.
const HCR_EN: u64 = 1 << 0;
/// `ICH_HCR_EL2.UIE`: a maintenance interrupt when at most one list
/// register holds an interrupt (more are waiting).
const HCR_UIE: u64 = 1 << 1;
/// `ICC_SRE_EL1` as the guest sees it: system registers (SRE), IRQ and
/// FIQ bypass disabled (DIB, DFB).
const GUEST_SRE: u64 = 0b111;

/// The list registers and active-priority registers this CPU has
/// (`ICH_VTR_EL2.ListRegs` + 1, and 2^(`PREbits` + 1 - 5)).
fn shape() -> (usize, usize) {
    let vtr = read_sysreg!("s3_4_c12_c11_1");
    let lrs = ((vtr & 0x1f) as usize + 1).min(MAX_LRS);
    let pre_bits = ((vtr >> 26) & 7) as u32 + 1;
    (lrs, 1 << pre_bits.saturating_sub(5).min(2))
}

macro_rules! lr_op {
    ($n:expr, $op:ident $(, $v:expr)?) => {
        match $n {
            0 => $op!("s3_4_c12_c12_0" $(, $v)?), 1 => $op!("s3_4_c12_c12_1" $(, $v)?),
            2 => $op!("s3_4_c12_c12_2" $(, $v)?), 3 => $op!("s3_4_c12_c12_3" $(, $v)?),
            4 => $op!("s3_4_c12_c12_4" $(, $v)?), 5 => $op!("s3_4_c12_c12_5" $(, $v)?),
            6 => $op!("s3_4_c12_c12_6" $(, $v)?), 7 => $op!("s3_4_c12_c12_7" $(, $v)?),
            8 => $op!("s3_4_c12_c13_0" $(, $v)?), 9 => $op!("s3_4_c12_c13_1" $(, $v)?),
            10 => $op!("s3_4_c12_c13_2" $(, $v)?), 11 => $op!("s3_4_c12_c13_3" $(, $v)?),
            12 => $op!("s3_4_c12_c13_4" $(, $v)?), 13 => $op!("s3_4_c12_c13_5" $(, $v)?),
            14 => $op!("s3_4_c12_c13_6" $(, $v)?), _ => $op!("s3_4_c12_c13_7" $(, $v)?),
        }
    };
}

macro_rules! apr_op {
    ($g:literal, $n:expr, $op:ident $(, $v:expr)?) => {
        match ($g, $n) {
            (0, 0) => $op!("s3_4_c12_c8_0" $(, $v)?), (0, 1) => $op!("s3_4_c12_c8_1" $(, $v)?),
            (0, 2) => $op!("s3_4_c12_c8_2" $(, $v)?), (0, _) => $op!("s3_4_c12_c8_3" $(, $v)?),
            (_, 0) => $op!("s3_4_c12_c9_0" $(, $v)?), (_, 1) => $op!("s3_4_c12_c9_1" $(, $v)?),
            (_, 2) => $op!("s3_4_c12_c9_2" $(, $v)?), (_, _) => $op!("s3_4_c12_c9_3" $(, $v)?),
        }
    };
}

/// Writes a system register; the caller's `unsafe` block covers it.
macro_rules! wr {
    ($n:literal, $v:expr) => {
        write_sysreg!($n, $v)
    };
}

macro_rules! rd {
    ($n:literal) => {
        read_sysreg!($n)
    };
}

/// A vCPU's GICv3 virtual CPU interface while it is off the CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct IchCpu {
    vmcr: u64,
    ap0r: [u64; 4],
    ap1r: [u64; 4],
}

impl IchCpu {
    /// List registers on this CPU.
    pub fn lrs() -> usize {
        shape().0
    }

    /// Puts the vCPU's interface on the CPU (its list registers are
    /// written before each entry).
    pub fn load(&self) {
        let (_, aprs) = shape();
        // SAFETY: the virtual CPU interface belongs to the vCPU about to
        // run on this CPU; nothing else uses it.
        unsafe {
            wr!("s3_4_c12_c11_7", self.vmcr);
            for n in 0..aprs {
                apr_op!(0, n, wr, self.ap0r[n]);
                apr_op!(1, n, wr, self.ap1r[n]);
            }
            wr!("s3_0_c12_c12_5", GUEST_SRE);
            wr!("s3_4_c12_c11_0", HCR_EN);
        }
    }

    /// Takes it off: saves what the guest set, empties the list registers
    /// (already folded back by the caller) and turns the interface off.
    pub fn put(&mut self) {
        let (lrs, aprs) = shape();
        self.vmcr = rd!("s3_4_c12_c11_7");
        for n in 0..aprs {
            self.ap0r[n] = apr_op!(0, n, rd);
            self.ap1r[n] = apr_op!(1, n, rd);
        }
        // SAFETY: as in `load`.
        unsafe {
            for n in 0..lrs {
                lr_op!(n, wr, 0);
            }
            wr!("s3_4_c12_c11_0", 0);
        }
    }

    /// Writes `entries` (as many as the CPU has list registers) to the
    /// list registers, with an underflow maintenance interrupt if
    /// `overflow`.
    pub fn write_lrs(entries: &[Option<LrEntry>], overflow: bool) {
        for (n, e) in entries.iter().enumerate().take(MAX_LRS) {
            // SAFETY: as in `load`.
            unsafe { lr_op!(n, wr, lr::encode_v3(e.as_ref())) };
        }
        // SAFETY: as in `load`.
        unsafe { wr!("s3_4_c12_c11_0", if overflow { HCR_EN | HCR_UIE } else { HCR_EN }) };
    }

    /// Reads back the list registers `written` says were filled into
    /// `out`; empties the ones the guest is done with (ending their
    /// maintenance condition) and stops asking for underflow interrupts.
    pub fn read_lrs(written: &[Option<LrEntry>], out: &mut [Option<LrEntry>]) {
        for (n, (w, o)) in written.iter().zip(out.iter_mut()).enumerate().take(MAX_LRS) {
            *o = None;
            if w.is_some() {
                *o = lr::decode_v3(lr_op!(n, rd));
                if o.is_none() {
                    // SAFETY: as in `load`.
                    unsafe { lr_op!(n, wr, 0) };
                }
            }
        }
        // SAFETY: as in `load`.
        unsafe { wr!("s3_4_c12_c11_0", HCR_EN) };
    }
}
