//! The EL1 exception vectors.
//!
//! Every vector saves the full register state (x0-x30, ELR, SPSR, FPSR,
//! FPCR, q0-q31) in a [`TrapFrame`] on the current stack and calls
//! `rt_exception`. A data abort taken from EL1 whose DFSC is "synchronous
//! external abort" (0x10) is recorded (`exception::record_sea`, with
//! FAR_EL1 unless ESR.FnV) and ELR_EL1 stepped over the faulting
//! instruction; so is an UNDEFINED instruction (EC 0) inside
//! `exception::catch_undefined`. Any other exception prints ESR_EL1,
//! ELR_EL1 and FAR_EL1, reports a failure and powers the VM off
//! (`test::fatal`).

use core::arch::{asm, global_asm};

use crate::rt::exception::{record_sea, take_undefined};
use crate::rt::smp::cpu_index;

/// The registers saved on exception entry (800 bytes, see the vectors).
/// The vectors' assembly writes and restores every field; the handler
/// reads and adjusts ELR and SPSR only.
#[repr(C)]
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) struct TrapFrame {
    /// x0-x30.
    pub x: [u64; 31],
    _pad: u64,
    /// ELR_EL1: where the exception returns to.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// FPSR.
    pub fpsr: u64,
    /// FPCR.
    pub fpcr: u64,
    /// q0-q31.
    pub q: [u128; 32],
}

const FRAME_SIZE: usize = 800;
const _: () = assert!(core::mem::size_of::<TrapFrame>() == FRAME_SIZE);

/// ESR_EL1.EC: data abort taken without a change of exception level.
const EC_DABT_CUR: u64 = 0x25;
/// ESR_EL1.EC: unknown reason (an UNDEFINED instruction).
const EC_UNKNOWN: u64 = 0x00;
/// ESR_EL1.EC: SVE (0x19) or SME (0x1D) access trapped by this EL1's own
/// CPACR_EL1: for a probe, as good as UNDEFINED.
const EC_SVE: u64 = 0x19;
const EC_SME: u64 = 0x1d;
/// DFSC: synchronous external abort, not on a translation table walk.
const DFSC_SEA: u64 = 0x10;
/// ESR_EL1.ISS.FnV: FAR_EL1 is not valid.
const ESR_FNV: u64 = 1 << 10;

const KIND_NAMES: [&str; 16] = [
    "EL1t sync",
    "EL1t IRQ",
    "EL1t FIQ",
    "EL1t SError",
    "EL1h sync",
    "EL1h IRQ",
    "EL1h FIQ",
    "EL1h SError",
    "EL0/64 sync",
    "EL0/64 IRQ",
    "EL0/64 FIQ",
    "EL0/64 SError",
    "EL0/32 sync",
    "EL0/32 IRQ",
    "EL0/32 FIQ",
    "EL0/32 SError",
];

/// Called by the vectors with the saved frame and the vector index (0-15).
extern "C" fn rt_exception(frame: &mut TrapFrame, kind: u64) {
    let esr: u64;
    let far: u64;
    // SAFETY: reading the syndrome registers has no side effects.
    unsafe {
        asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack, preserves_flags));
        asm!("mrs {}, far_el1", out(reg) far, options(nomem, nostack, preserves_flags));
    }
    let ec = esr >> 26;
    // An IRQ from EL1 (SP_EL1) or EL1 with SP_EL0.
    if kind == 5 || kind == 1 {
        crate::rt::gic::handle_irq();
        return;
    }
    if kind == 4 {
        if ec == EC_DABT_CUR && esr & 0x3f == DFSC_SEA {
            record_sea((esr & ESR_FNV == 0).then_some(far), esr);
            frame.elr += 4;
            return;
        }
        if matches!(ec, EC_UNKNOWN | EC_SVE | EC_SME) && take_undefined() {
            frame.elr += 4;
            return;
        }
    }
    let name = KIND_NAMES[(kind & 15) as usize];
    crate::rt::test::fatal(format_args!(
        "unexpected exception {name} on cpu {}: ESR_EL1={esr:#x} (EC {ec:#x}, ISS {:#x}) \
         ELR_EL1={:#x} FAR_EL1={far:#x} SPSR_EL1={:#x}",
        cpu_index(),
        esr & 0x1ff_ffff,
        frame.elr,
        frame.spsr
    ))
}

global_asm!(
    r#"
    .macro RT_VECTOR kind
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       __rt_exc_save
    .endm

    .section .text.rt_vectors, "ax"
    .balign 0x800
    .global __rt_vectors
__rt_vectors:
    RT_VECTOR 0
    RT_VECTOR 1
    RT_VECTOR 2
    RT_VECTOR 3
    RT_VECTOR 4
    RT_VECTOR 5
    RT_VECTOR 6
    RT_VECTOR 7
    RT_VECTOR 8
    RT_VECTOR 9
    RT_VECTOR 10
    RT_VECTOR 11
    RT_VECTOR 12
    RT_VECTOR 13
    RT_VECTOR 14
    RT_VECTOR 15

    .balign 0x80
__rt_exc_save:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    mrs     x1, elr_el1
    mrs     x2, spsr_el1
    stp     x1, x2, [sp, #256]
    mrs     x1, fpsr
    mrs     x2, fpcr
    stp     x1, x2, [sp, #272]
    add     x3, sp, #288
    stp     q0, q1, [x3, #0]
    stp     q2, q3, [x3, #32]
    stp     q4, q5, [x3, #64]
    stp     q6, q7, [x3, #96]
    stp     q8, q9, [x3, #128]
    stp     q10, q11, [x3, #160]
    stp     q12, q13, [x3, #192]
    stp     q14, q15, [x3, #224]
    stp     q16, q17, [x3, #256]
    stp     q18, q19, [x3, #288]
    stp     q20, q21, [x3, #320]
    stp     q22, q23, [x3, #352]
    stp     q24, q25, [x3, #384]
    stp     q26, q27, [x3, #416]
    stp     q28, q29, [x3, #448]
    stp     q30, q31, [x3, #480]
    mov     x1, x0
    mov     x0, sp
    bl      {handler}
    add     x3, sp, #288
    ldp     q0, q1, [x3, #0]
    ldp     q2, q3, [x3, #32]
    ldp     q4, q5, [x3, #64]
    ldp     q6, q7, [x3, #96]
    ldp     q8, q9, [x3, #128]
    ldp     q10, q11, [x3, #160]
    ldp     q12, q13, [x3, #192]
    ldp     q14, q15, [x3, #224]
    ldp     q16, q17, [x3, #256]
    ldp     q18, q19, [x3, #288]
    ldp     q20, q21, [x3, #320]
    ldp     q22, q23, [x3, #352]
    ldp     q24, q25, [x3, #384]
    ldp     q26, q27, [x3, #416]
    ldp     q28, q29, [x3, #448]
    ldp     q30, q31, [x3, #480]
    ldp     x1, x2, [sp, #272]
    msr     fpsr, x1
    msr     fpcr, x2
    ldp     x1, x2, [sp, #256]
    msr     elr_el1, x1
    msr     spsr_el1, x2
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    add     sp, sp, #{frame}
    eret
"#,
    frame = const FRAME_SIZE,
    handler = sym rt_exception,
);
