//! Trapped system-register accesses (`ESR_EL2.EC` 0x18, an `MSR`/`MRS` the
//! EL2 configuration traps): the ID registers read through
//! [`crate::idregs`], the debug registers emulated per vCPU; every other
//! trapped register is UNDEFINED for the guest, as it would be on a CPU
//! without the feature (the ID registers say so).
//!
//! The debug registers (`MDCR_EL2.TDA`, `TDOSA`, `TDRA` trap them all) are
//! kept per vCPU ([`Debug`]) and loaded into the hardware when the vCPU
//! runs, so breakpoints and watchpoints work for each guest and none sees
//! another's: a write goes to the vCPU's copy and, the vCPU being the one
//! on this CPU, to the hardware too. The OS lock is per vCPU as well: while
//! a guest holds it, its debug exceptions are off in the hardware's
//! `MDSCR_EL1`.

use core::arch::asm;

use aarch64_cpu::registers::{MDSCR_EL1, OSLAR_EL1};
use arch::fields::aarch64::{DBGCLAIM_EL1, MDCCINT_EL1, OSLSR_EL1};
use arch::{read_sysreg, write_sysreg};

use super::features::features;
use super::GuestRegs;
use crate::idregs::{self, GuestCaps, SysregAccess as Access, Tid1};

/// Breakpoints and watchpoints the architecture allows at most.
const DBG_MAX: usize = 16;

/// `MDSCR_EL1` bits a guest may set: software step, the EL0 DCC trap,
/// kernel and monitor debug enables.
const MDSCR_WRITABLE: u64 = MDSCR_EL1::SS::SET.value
    | MDSCR_EL1::TDCC::SET.value
    | MDSCR_EL1::KDE::SET.value
    | MDSCR_EL1::MDE::SET.value;
/// `MDSCR_EL1` bits that enable debug exceptions: off under the OS lock.
const MDSCR_DEBUG_ENABLES: u64 =
    MDSCR_EL1::SS::SET.value | MDSCR_EL1::KDE::SET.value | MDSCR_EL1::MDE::SET.value;
/// `MDCCINT_EL1` bits a guest may set: the DCC interrupt enables.
const MDCCINT_WRITABLE: u64 = MDCCINT_EL1::TX::SET.value | MDCCINT_EL1::RX::SET.value;
/// `DBGCLAIMSET_EL1`/`DBGCLAIMCLR_EL1`: the claim tags (all eight
/// implemented).
const CLAIM_TAGS: u64 = DBGCLAIM_EL1::CLAIM::SET.value;

/// A vCPU's debug registers.
#[derive(Clone, Copy, Debug)]
pub struct Debug {
    bvr: [u64; DBG_MAX],
    bcr: [u64; DBG_MAX],
    wvr: [u64; DBG_MAX],
    wcr: [u64; DBG_MAX],
    mdscr: u64,
    /// The OS lock, set after reset (as on a cold reset).
    oslk: bool,
    mdccint: u64,
    claim: u64,
}

impl Default for Debug {
    fn default() -> Self {
        Self {
            bvr: [0; DBG_MAX],
            bcr: [0; DBG_MAX],
            wvr: [0; DBG_MAX],
            wcr: [0; DBG_MAX],
            mdscr: 0,
            oslk: true,
            mdccint: 0,
            claim: 0,
        }
    }
}

/// Writes hardware debug register `kind` (4 BVR, 5 BCR, 6 WVR, 7 WCR)
/// number `n`: the register is in the instruction, hence the match.
fn write_dbg(kind: u32, n: usize, v: u64) {
    macro_rules! regs {
        ($($n:literal),*) => {
            match (kind, n) {
                $(
                    // SAFETY: the vCPU's own debug state, loaded while it is
                    // the one on this CPU; EL2 runs with debug exceptions
                    // masked, so nothing fires here.
                    (4, $n) => unsafe {
                        asm!(concat!("msr dbgbvr", $n, "_el1, {}"), in(reg) v, options(nostack))
                    },
                    // SAFETY: as above.
                    (5, $n) => unsafe {
                        asm!(concat!("msr dbgbcr", $n, "_el1, {}"), in(reg) v, options(nostack))
                    },
                    // SAFETY: as above.
                    (6, $n) => unsafe {
                        asm!(concat!("msr dbgwvr", $n, "_el1, {}"), in(reg) v, options(nostack))
                    },
                    // SAFETY: as above.
                    (7, $n) => unsafe {
                        asm!(concat!("msr dbgwcr", $n, "_el1, {}"), in(reg) v, options(nostack))
                    },
                )*
                _ => {}
            }
        };
    }
    regs!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

impl Debug {
    /// The `MDSCR_EL1` the hardware gets: the guest's, without its debug
    /// exceptions while it holds the OS lock.
    fn hw_mdscr(&self) -> u64 {
        if self.oslk {
            self.mdscr & !MDSCR_DEBUG_ENABLES
        } else {
            self.mdscr
        }
    }

    /// Loads them into the hardware (the vCPU is about to run here).
    pub fn restore(&self) {
        let f = features();
        for n in 0..f.brps.min(DBG_MAX) {
            write_dbg(4, n, self.bvr[n]);
            write_dbg(5, n, self.bcr[n]);
        }
        for n in 0..f.wrps.min(DBG_MAX) {
            write_dbg(6, n, self.wvr[n]);
            write_dbg(7, n, self.wcr[n]);
        }
        // SAFETY: as in `write_dbg`.
        unsafe { write_sysreg!("mdscr_el1", self.hw_mdscr()) };
    }
}

/// Reads the host's ID register `op0` 3, `op1` 0, `CRn` 0, `CRm`, `op2`:
/// the register is in the instruction, hence the match.
fn host_id(crm: u32, op2: u32) -> u64 {
    macro_rules! ids {
        ($(($m:literal, $o:literal)),*) => {
            match (crm, op2) {
                $( ($m, $o) => {
                    let v: u64;
                    // SAFETY: reading an ID register has no side effects.
                    unsafe {
                        asm!(concat!("mrs {}, s3_0_c0_c", $m, "_", $o), out(reg) v,
                             options(nomem, nostack))
                    };
                    v
                } )*
                _ => 0,
            }
        };
    }
    ids!(
        (4, 0),
        (4, 1),
        (4, 2),
        (4, 4),
        (4, 5),
        (4, 7),
        (5, 0),
        (5, 1),
        (5, 4),
        (5, 5),
        (6, 0),
        (6, 1),
        (6, 2),
        (6, 3),
        (7, 0),
        (7, 1),
        (7, 2),
        (7, 3),
        (7, 4)
    )
}

/// Emulates a trapped `MSR`/`MRS` of the vCPU whose registers are `regs`
/// and debug state `dbg`. False: the access is UNDEFINED for the guest
/// (the caller injects the exception).
pub fn emulate(iss: u64, regs: &mut GuestRegs, dbg: &mut Debug) -> bool {
    let a = Access::decode(iss);
    let v = regs.gpr(a.rt);
    let caps = GuestCaps {
        pauth: features().pauth,
        gicv3: crate::gic::version() == Some(crate::vgic::Version::V3),
    };
    let f = features();
    let value: Option<u64> = match (a.enc, a.read) {
        // The ID registers (HCR_EL2.TID3): read-only.
        ((3, 0, 0, crm @ 1..=7, op2), true) => {
            Some(idregs::aarch64(crm, op2, host_id(crm, op2), caps))
        }
        // The group HCR_EL2.TID1 traps: REVIDR_EL1 and AIDR_EL1 as the
        // host's, SMIDR_EL1 UNDEFINED (no SME for guests).
        ((3, 0 | 1, 0, 0, _), true) => match idregs::aarch64_tid1(a.enc) {
            Some(Tid1::Revidr) => Some(read_sysreg!("revidr_el1")),
            Some(Tid1::Aidr) => Some(read_sysreg!("aidr_el1")),
            None => return false,
        },
        // DBGBVR<n>, DBGBCR<n>, DBGWVR<n>, DBGWCR<n>.
        ((2, 0, 0, n, kind @ 4..=7), read) => {
            let n = n as usize;
            let (count, regs_of) = match kind {
                4 => (f.brps, &mut dbg.bvr),
                5 => (f.brps, &mut dbg.bcr),
                6 => (f.wrps, &mut dbg.wvr),
                _ => (f.wrps, &mut dbg.wcr),
            };
            if n >= count.min(DBG_MAX) {
                return false;
            }
            if read {
                Some(regs_of[n])
            } else {
                regs_of[n] = v;
                write_dbg(kind, n, v);
                None
            }
        }
        // MDSCR_EL1.
        ((2, 0, 0, 2, 2), true) => Some(dbg.mdscr),
        ((2, 0, 0, 2, 2), false) => {
            dbg.mdscr = v & MDSCR_WRITABLE;
            // SAFETY: as in `write_dbg`.
            unsafe { write_sysreg!("mdscr_el1", dbg.hw_mdscr()) };
            None
        }
        // MDCCINT_EL1: kept, with no effect (no DCC for guests).
        ((2, 0, 0, 2, 0), true) => Some(dbg.mdccint),
        ((2, 0, 0, 2, 0), false) => {
            dbg.mdccint = v & MDCCINT_WRITABLE;
            None
        }
        // OSLAR_EL1 (write) and OSLSR_EL1 (read: OSLM = 0b10, the OS lock
        // implemented; OSLK).
        ((2, 0, 1, 0, 4), false) => {
            dbg.oslk = OSLAR_EL1::OSLK.is_set(v);
            // SAFETY: as in `write_dbg`.
            unsafe { write_sysreg!("mdscr_el1", dbg.hw_mdscr()) };
            None
        }
        ((2, 0, 1, 1, 4), true) => {
            Some((OSLSR_EL1::OSLM1::SET + OSLSR_EL1::OSLK.val(dbg.oslk.into())).value)
        }
        // DBGCLAIMSET_EL1 (reads the implemented tags), DBGCLAIMCLR_EL1
        // (reads the tags set).
        ((2, 0, 7, 8, 6), true) => Some(CLAIM_TAGS),
        ((2, 0, 7, 8, 6), false) => {
            dbg.claim |= v & CLAIM_TAGS;
            None
        }
        ((2, 0, 7, 9, 6), true) => Some(dbg.claim),
        ((2, 0, 7, 9, 6), false) => {
            dbg.claim &= !(v & CLAIM_TAGS);
            None
        }
        // MDRAR_EL1, OSDLR_EL1, DBGPRCR_EL1, DBGAUTHSTATUS_EL1, MDCCSR_EL0,
        // DBGDTR_EL0, DBGDTRRX/TX_EL0: no memory-mapped debug, no double
        // lock, no powerdown control, no DCC: RAZ/WI.
        ((2, 0, 1, 0, 0), _)
        | ((2, 0, 1, 3, 4), _)
        | ((2, 0, 1, 4, 4), _)
        | ((2, 0, 7, 14, 6), _)
        | ((2, 3, 0, 1, 0), _)
        | ((2, 3, 0, 4, 0), _)
        | ((2, 3, 0, 5, 0), _) => a.read.then_some(0),
        _ => return false,
    };
    if let Some(value) = value {
        regs.set_gpr(a.rt, value);
    }
    true
}
