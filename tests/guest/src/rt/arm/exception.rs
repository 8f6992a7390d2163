//! The ARM32 exception vectors (`VBAR`, `SCTLR.V` = 0).
//!
//! Each of the eight vectors branches to a stub that turns the exception
//! link register into the address of the instruction concerned (data abort:
//! `LR - 8`; the others `LR - 4`), saves `r0-r12` and it, then the SPSR and
//! the vector number, as a [`TrapFrame`] on the mode's stack (per vCPU, set
//! at boot; an `svc` uses the SVC stack) and calls `rt_exception`. On return
//! it restores the SPSR and registers and resumes at the frame's `pc`
//! (`ldm ... {..., pc}^` also restores CPSR from SPSR).
//!
//! A data abort from a PL1 mode in ARM state whose DFSR reports a
//! synchronous external abort (long-descriptor status 0x10 once the MMU is
//! on, short-descriptor 0b01000 before) is recorded
//! (`exception::record_sea`, with DFAR) and the aborted instruction
//! skipped; so is an UNDEFINED instruction inside
//! `exception::catch_undefined`. Anything else prints the status and
//! address registers of the abort (DFSR/DFAR, IFSR/IFAR), the instruction's
//! address and SPSR, reports a failure and powers the VM off
//! (`test::fatal`).

use core::arch::{asm, global_asm};

use crate::aarch32::{fault_status, is_sync_external_abort, CPSR_T, MODE_MASK, MODE_USR};
use crate::rt::exception::{record_sea, take_undefined};
use crate::rt::smp::cpu_index;

/// The registers saved on exception entry (64 bytes, see the vectors).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct TrapFrame {
    /// SPSR of the exception mode: the interrupted CPSR.
    pub spsr: u32,
    /// The vector: its offset from `VBAR` / 4 ([`VECTOR_NAMES`]).
    pub kind: u32,
    /// `r0-r12` of the interrupted code (written and restored by the
    /// vectors' assembly; the handler does not read them).
    #[allow(dead_code)]
    pub r: [u32; 13],
    /// The instruction concerned (aborted, undefined, `svc`; for IRQ and
    /// FIQ the next one): where the vectors return to.
    pub pc: u32,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 64);

/// Vector numbers (offset / 4).
const VEC_UNDEF: u32 = 1;
const VEC_PABT: u32 = 3;
const VEC_DABT: u32 = 4;
const VEC_IRQ: u32 = 6;

const VECTOR_NAMES: [&str; 8] = [
    "reset",
    "undefined instruction",
    "supervisor call",
    "prefetch abort",
    "data abort",
    "hyp trap",
    "IRQ",
    "FIQ",
];

fn dfsr() -> u32 {
    let v: u32;
    // SAFETY: reading DFSR has no side effects.
    unsafe { asm!("mrc p15, 0, {}, c5, c0, 0", out(reg) v, options(nomem, nostack)) };
    v
}

fn dfar() -> u32 {
    let v: u32;
    // SAFETY: reading DFAR has no side effects.
    unsafe { asm!("mrc p15, 0, {}, c6, c0, 0", out(reg) v, options(nomem, nostack)) };
    v
}

fn ifsr() -> u32 {
    let v: u32;
    // SAFETY: reading IFSR has no side effects.
    unsafe { asm!("mrc p15, 0, {}, c5, c0, 1", out(reg) v, options(nomem, nostack)) };
    v
}

fn ifar() -> u32 {
    let v: u32;
    // SAFETY: reading IFAR has no side effects.
    unsafe { asm!("mrc p15, 0, {}, c6, c0, 2", out(reg) v, options(nomem, nostack)) };
    v
}

/// Called by the vectors with the saved frame.
extern "C" fn rt_exception(frame: &mut TrapFrame) {
    // The skipped instruction is 4 bytes: ARM state, from a PL1 mode (the
    // runtime never runs in User mode or Thumb state).
    let skippable = frame.spsr & CPSR_T == 0 && frame.spsr & MODE_MASK != MODE_USR;
    let name = VECTOR_NAMES[(frame.kind & 7) as usize];
    let cpu = cpu_index();
    match frame.kind {
        VEC_DABT => {
            let (fsr, far) = (dfsr(), dfar());
            if skippable && is_sync_external_abort(fsr) {
                record_sea(Some(u64::from(far)), u64::from(fsr));
                frame.pc += 4;
                return;
            }
            fault(name, cpu, frame, ("DFSR", fsr), ("DFAR", far))
        }
        VEC_PABT => fault(name, cpu, frame, ("IFSR", ifsr()), ("IFAR", ifar())),
        VEC_UNDEF if skippable && take_undefined() => frame.pc += 4,
        VEC_IRQ => crate::rt::gic::handle_irq(),
        _ => crate::rt::test::fatal(format_args!(
            "unexpected exception {name} on cpu {cpu}: PC={:#x} SPSR={:#x}",
            frame.pc, frame.spsr
        )),
    }
}

/// The fatal report of an abort: status and address registers.
fn fault(name: &str, cpu: usize, frame: &TrapFrame, fsr: (&str, u32), far: (&str, u32)) -> ! {
    crate::rt::test::fatal(format_args!(
        "unexpected exception {name} on cpu {cpu}: {}={:#x} (status {:#x}) PC={:#x} {}={:#x} \
         SPSR={:#x}",
        fsr.0,
        fsr.1,
        fault_status(fsr.1),
        frame.pc,
        far.0,
        far.1,
        frame.spsr
    ))
}

global_asm!(
    r#"
    .macro RT_VECTOR name, kind, lr_offset
\name:
    sub     lr, lr, #\lr_offset
    push    {{r0-r12, lr}}
    mov     r1, #\kind
    b       __rt_exc_common
    .endm

    .section .text.rt_vectors, "ax"
    .arm
    .balign 32
    .global __rt_vectors
__rt_vectors:
    b       __rt_vec_reset
    b       __rt_vec_undef
    b       __rt_vec_svc
    b       __rt_vec_pabt
    b       __rt_vec_dabt
    b       __rt_vec_hyp
    b       __rt_vec_irq
    b       __rt_vec_fiq

    RT_VECTOR __rt_vec_reset, 0, 0
    RT_VECTOR __rt_vec_undef, 1, 4
    RT_VECTOR __rt_vec_svc, 2, 4
    RT_VECTOR __rt_vec_pabt, 3, 4
    RT_VECTOR __rt_vec_dabt, 4, 8
    RT_VECTOR __rt_vec_hyp, 5, 0
    RT_VECTOR __rt_vec_irq, 6, 4
    RT_VECTOR __rt_vec_fiq, 7, 4

    @ r0-r12 and the adjusted lr are pushed, r1 = the vector number.
__rt_exc_common:
    mrs     r0, spsr
    push    {{r0, r1}}              @ frame: spsr, kind, r0-r12, pc
    mov     r0, sp
    mov     r4, sp                  @ callee-saved: the frame
    bic     sp, sp, #7              @ AAPCS: 8-byte aligned calls
    bl      {handler}
    mov     sp, r4
    pop     {{r0, r1}}
    msr     spsr_cxsf, r0
    ldm     sp!, {{r0-r12, pc}}^
"#,
    handler = sym rt_exception,
);
