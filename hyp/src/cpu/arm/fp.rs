//! The guests' VFP and Advanced SIMD state, switched lazily.
//!
//! The hypervisor itself never touches the VFP: `armv7a-none-eabi` is a
//! soft-float target without NEON, and `scripts/build.sh` checks that
//! `out/arm/hyp.elf` holds no VFP or Advanced SIMD instruction outside
//! the three routines below. So the registers on a CPU are always those of
//! the last vCPU that used them there, and they only need switching when
//! another vCPU wants them:
//!
//! - a vCPU is loaded with `HCPTR.TCP10`/`TCP11`/`TASE` set, so its first
//!   VFP or Advanced SIMD instruction (a `VMRS`/`VMSR` included) traps to
//!   Hyp mode ([`super::fp_trap`]): its D0-D31, FPSCR and FPEXC (with
//!   FPINST/FPINST2 when FPEXC.EX says they hold state) are loaded, the
//!   traps cleared, and the instruction runs again, now on its own
//!   registers;
//! - when the vCPU leaves the CPU, if it loaded them, they are saved back
//!   and the traps set again.
//!
//! A vCPU that never uses the VFP costs nothing; one that does pays one
//! trap and a save per time on the CPU, not per exit. What the guest
//! itself controls stays as on hardware: its `CPACR` (cp10, cp11, ASEDIS,
//! D32DIS) is loaded with its other PL1 registers and its FPEXC with its
//! VFP state, so an access `CPACR` forbids is UNDEFINED at PL1 without
//! reaching Hyp mode (that check comes before the Hyp trap), and one with
//! `FPEXC.EN` clear traps once, gets the vCPU's FPEXC loaded, and is then
//! UNDEFINED at PL1 (the `FPEXC.EN` check comes after the Hyp trap).
//!
//! Hyp mode needs `HCPTR.TCP10`/`TCP11` clear to reach the VFP at all
//! (set, its own accesses are UNDEFINED), and `FPEXC.EN` set for
//! everything but FPEXC and the ID registers; the routines set EN while
//! they move the registers and leave the guest's FPEXC last.

use core::arch::global_asm;
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use arch::armv7::regs;
use arch::fields::armv7::{FPEXC, HCPTR, MVFR0};

use super::{HCPTR_GUEST, HCPTR_GUEST_FP};

/// A vCPU's VFP and Advanced SIMD registers while they are not on a CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FpRegs {
    /// D0 to D31 (D16-D31 only where the VFP has 32 registers; Q0-Q15
    /// are their pairs).
    d: [u64; 32],
    /// FPSCR.
    fpscr: u32,
    /// FPEXC, the guest's (its EN bit included).
    fpexc: u32,
    /// FPINST, meaningful while the saved FPEXC.EX is set.
    fpinst: u32,
    /// FPINST2, meaningful while the saved FPEXC.EX and FP2V are set.
    fpinst2: u32,
}

/// Offsets the assembly below relies on.
const FPSCR: usize = offset_of!(FpRegs, fpscr);
const FPEXC_OFF: usize = offset_of!(FpRegs, fpexc);
const FPINST: usize = offset_of!(FpRegs, fpinst);
const FPINST2: usize = offset_of!(FpRegs, fpinst2);
const _: () = {
    assert!(FPSCR == 32 * 8);
    assert!(FPEXC_OFF == FPSCR + 4 && FPINST == FPSCR + 8 && FPINST2 == FPSCR + 12);
};

unsafe extern "C" {
    /// Saves the live VFP state into `regs` (D16-D31 if `d32`); leaves
    /// FPEXC with EN set and EX clear.
    fn hyp_fp_save(regs: *mut FpRegs, d32: u32);
    /// Loads `regs` into the VFP (D16-D31 if `d32`), FPEXC last.
    fn hyp_fp_load(regs: *const FpRegs, d32: u32);
    /// Reads FPSID, MVFR0 and MVFR1 into `out`.
    fn hyp_fp_ids(out: *mut [u32; 3]);
}

global_asm!(
    r#"
    .arm
    .fpu    vfpv3
    .section .text.hyp_fp, "ax"

    // r0 = regs, r1 = D16-D31 exist. The registers need FPEXC.EN; a
    // pending exception (EX, and then FPINST, FP2V and FPINST2) is saved
    // and cleared before they are touched.
    .global hyp_fp_save
hyp_fp_save:
    vmrs    r2, fpexc
    orr     r3, r2, #{en}
    vmsr    fpexc, r3
    vmrs    r12, fpscr
    str     r2, [r0, #{fpexc}]
    str     r12, [r0, #{fpscr}]
    tst     r2, #{ex}
    beq     1f
    vmrs    r12, fpinst
    str     r12, [r0, #{fpinst}]
    tst     r2, #{fp2v}
    vmrsne  r12, fpinst2
    strne   r12, [r0, #{fpinst2}]
    bic     r3, r3, #{ex}
    vmsr    fpexc, r3
1:  vstmia  r0!, {{d0-d15}}
    cmp     r1, #0
    vstmiane r0, {{d16-d31}}
    bx      lr

    // r0 = regs, r1 = D16-D31 exist. EN set (EX clear) while the
    // registers are written; the saved FPEXC, which may have EN clear,
    // goes last.
    .global hyp_fp_load
hyp_fp_load:
    mov     r2, #{en}
    vmsr    fpexc, r2
    add     r3, r0, #128
    vldmia  r0, {{d0-d15}}
    cmp     r1, #0
    vldmiane r3, {{d16-d31}}
    ldr     r2, [r0, #{fpscr}]
    vmsr    fpscr, r2
    ldr     r2, [r0, #{fpexc}]
    tst     r2, #{ex}
    beq     1f
    ldr     r3, [r0, #{fpinst}]
    vmsr    fpinst, r3
    tst     r2, #{fp2v}
    ldrne   r3, [r0, #{fpinst2}]
    vmsrne  fpinst2, r3
1:  vmsr    fpexc, r2
    bx      lr

    // r0 = out: FPSID, MVFR0, MVFR1 (readable whatever FPEXC.EN says).
    .global hyp_fp_ids
hyp_fp_ids:
    vmrs    r1, fpsid
    vmrs    r2, mvfr0
    vmrs    r3, mvfr1
    stm     r0, {{r1-r3}}
    bx      lr
"#,
    en = const FPEXC::EN::SET.value,
    ex = const FPEXC::EX::SET.value,
    fp2v = const FPEXC::FP2V::SET.value,
    fpscr = const FPSCR,
    fpexc = const FPEXC_OFF,
    fpinst = const FPINST,
    fpinst2 = const FPINST2,
);

/// Whether the CPUs have a VFP guests can be given.
static PRESENT: AtomicBool = AtomicBool::new(false);
/// Whether it has 32 double-word registers (else 16).
static D32: AtomicBool = AtomicBool::new(false);
/// The host's FPSID, MVFR0 and MVFR1.
static IDS: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];

/// Whether guests get VFP (and Advanced SIMD where the CPU has it).
pub fn present() -> bool {
    PRESENT.load(Ordering::Relaxed)
}

/// The host's FPSID, MVFR0 and MVFR1 (zero without a VFP).
pub fn host_ids() -> [u32; 3] {
    IDS.each_ref().map(|v| v.load(Ordering::Relaxed))
}

/// Looks for the VFP on this CPU and reads its ID registers: CP10 and
/// CP11 exist where their `HCPTR` trap bits can be cleared (they read as
/// one otherwise). Leaves the guests' traps set. Every CPU finds the same.
pub(super) fn probe() {
    let fp_traps = (HCPTR::TCP10::SET + HCPTR::TCP11::SET).value;
    // SAFETY: Hyp mode's own coprocessor traps, with no guest running;
    // they are set again below.
    unsafe { regs::set_hcptr(HCPTR_GUEST_FP) };
    arch::barrier::isb();
    let present = regs::hcptr() & fp_traps == 0;
    let mut ids = [0u32; 3];
    if present {
        // SAFETY: CP10 is reachable from Hyp mode (its trap is clear);
        // reading the ID registers needs nothing else and changes nothing.
        unsafe { hyp_fp_ids(&mut ids) };
    }
    // SAFETY: as above.
    unsafe { regs::set_hcptr(HCPTR_GUEST) };
    arch::barrier::isb();
    let d32 = MVFR0::SIMDReg.read_as_enum(ids[1]) == Some(MVFR0::SIMDReg::Value::D32);
    for (slot, v) in IDS.iter().zip(ids) {
        slot.store(v, Ordering::Relaxed);
    }
    D32.store(d32, Ordering::Relaxed);
    PRESENT.store(present, Ordering::Relaxed);
    if super::cpu_index() == 0 {
        if present {
            let [fpsid, mvfr0, mvfr1] = ids;
            log::info!(
                "VFP: FPSID {fpsid:#x}, MVFR0 {mvfr0:#x}, MVFR1 {mvfr1:#x}: guests get it, {} \
                 registers, switched lazily",
                if d32 { "D0-D31" } else { "D0-D15" }
            );
        } else {
            log::info!("no VFP: VFP and Advanced SIMD instructions are UNDEFINED for guests");
        }
    }
}

fn d32() -> u32 {
    u32::from(D32.load(Ordering::Relaxed))
}

impl FpRegs {
    /// Puts these registers on this CPU and lets the guest reach them
    /// (`HCPTR` without the VFP and Advanced SIMD traps).
    pub fn load(&self) {
        // SAFETY: the VFP traps are cleared for Hyp mode's accesses and
        // the guest's alike; the caller made this vCPU the VFP's owner on
        // this CPU, so the registers overwritten are nobody's.
        unsafe { regs::set_hcptr(HCPTR_GUEST_FP) };
        arch::barrier::isb();
        // SAFETY: CP10/CP11 reachable (above); `self` is a valid FpRegs.
        unsafe { hyp_fp_load(self, d32()) };
    }

    /// Takes the registers off this CPU into `self` and traps the VFP
    /// again for the next vCPU.
    pub fn save(&mut self) {
        // SAFETY: called only while the registers are live (`HCPTR` lets
        // Hyp mode reach them); `self` is a valid FpRegs.
        unsafe { hyp_fp_save(self, d32()) };
        // SAFETY: the next guest's first VFP access traps again.
        unsafe { regs::set_hcptr(HCPTR_GUEST) };
        arch::barrier::isb();
    }
}
