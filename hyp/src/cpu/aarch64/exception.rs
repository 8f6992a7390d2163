//! EL2 exception vectors, guest entry and guest exit.
//!
//! `guest_enter(regs, host)` saves the host's callee-saved registers and
//! stack pointer in `host` (reached again through `TPIDR_EL2`), loads the
//! guest's registers from `regs` and ERETs. An exception from the guest
//! (a lower EL) saves the guest's registers back into `regs`, restores the
//! host context and returns from `guest_enter` with the kind of exception
//! as its value (from AArch64 and from AArch32 lower ELs alike).
//! Exceptions taken at EL2 itself are hypervisor bugs: they
//! save a frame and call `el2_exception`, which panics with the EL2
//! registers.

use core::arch::global_asm;

/// The guest's general-purpose and FP/SIMD state, saved on exit.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug)]
pub struct GuestRegs {
    /// x0 to x30.
    pub x: [u64; 31],
    /// `SP_EL1`.
    pub sp_el1: u64,
    /// Where the guest resumes (`ELR_EL2`).
    pub pc: u64,
    /// PSTATE to resume with (`SPSR_EL2`).
    pub pstate: u64,
    /// FPCR and FPSR.
    pub fpcr: u64,
    /// FPSR.
    pub fpsr: u64,
    /// V0 to V31.
    pub v: [u128; 32],
}

impl GuestRegs {
    /// Zeroed registers.
    pub const fn new() -> Self {
        Self { x: [0; 31], sp_el1: 0, pc: 0, pstate: 0, fpcr: 0, fpsr: 0, v: [0; 32] }
    }
}

/// Host context saved across a guest run. `TPIDR_EL2` points at it.
#[repr(C)]
#[derive(Debug)]
pub struct HostContext {
    /// The guest registers being run (offset 0, used by the vectors).
    pub guest: *mut GuestRegs,
    /// Host SP (offset 8).
    pub sp: u64,
    /// x19 to x30 (offset 16).
    pub callee: [u64; 12],
}

impl HostContext {
    /// An empty context.
    pub const fn new() -> Self {
        Self { guest: core::ptr::null_mut(), sp: 0, callee: [0; 12] }
    }
}

unsafe extern "C" {
    /// Runs the guest described by `regs` until it exits.
    ///
    /// # Safety
    ///
    /// `regs` and `host` stay valid until the call returns; EL1 state and
    /// stage 2 (`VTTBR_EL2`, `HCR_EL2`...) are set up for this guest.
    /// Returns the exit code for [`Exit::from_code`](crate::cpu::Exit::from_code).
    pub fn guest_enter(regs: *mut GuestRegs, host: *mut HostContext) -> usize;
}

// Offsets in GuestRegs: x at 0, sp_el1 248, pc 256, pstate 264, fpcr 272,
// fpsr 280, v at 288 (16-aligned).
global_asm!(
    r#"
    .macro save_fp base
    mrs     x2, fpcr
    mrs     x3, fpsr
    stp     x2, x3, [\base, #272]
    add     x2, \base, #288
    stp     q0, q1, [x2], #32
    stp     q2, q3, [x2], #32
    stp     q4, q5, [x2], #32
    stp     q6, q7, [x2], #32
    stp     q8, q9, [x2], #32
    stp     q10, q11, [x2], #32
    stp     q12, q13, [x2], #32
    stp     q14, q15, [x2], #32
    stp     q16, q17, [x2], #32
    stp     q18, q19, [x2], #32
    stp     q20, q21, [x2], #32
    stp     q22, q23, [x2], #32
    stp     q24, q25, [x2], #32
    stp     q26, q27, [x2], #32
    stp     q28, q29, [x2], #32
    stp     q30, q31, [x2], #32
    .endm

    .macro load_fp base
    ldp     x2, x3, [\base, #272]
    msr     fpcr, x2
    msr     fpsr, x3
    add     x2, \base, #288
    ldp     q0, q1, [x2], #32
    ldp     q2, q3, [x2], #32
    ldp     q4, q5, [x2], #32
    ldp     q6, q7, [x2], #32
    ldp     q8, q9, [x2], #32
    ldp     q10, q11, [x2], #32
    ldp     q12, q13, [x2], #32
    ldp     q14, q15, [x2], #32
    ldp     q16, q17, [x2], #32
    ldp     q18, q19, [x2], #32
    ldp     q20, q21, [x2], #32
    ldp     q22, q23, [x2], #32
    ldp     q24, q25, [x2], #32
    ldp     q26, q27, [x2], #32
    ldp     q28, q29, [x2], #32
    ldp     q30, q31, [x2], #32
    .endm

    .section .text
    .global guest_enter
guest_enter:
    stp     x19, x20, [x1, #16]
    stp     x21, x22, [x1, #32]
    stp     x23, x24, [x1, #48]
    stp     x25, x26, [x1, #64]
    stp     x27, x28, [x1, #80]
    stp     x29, x30, [x1, #96]
    mov     x2, sp
    str     x2, [x1, #8]
    str     x0, [x1, #0]
    msr     tpidr_el2, x1
    load_fp x0
    ldr     x2, [x0, #248]
    msr     sp_el1, x2
    ldr     x2, [x0, #256]
    msr     elr_el2, x2
    ldr     x2, [x0, #264]
    msr     spsr_el2, x2
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret
    dsb     nsh
    isb

    // From a lower EL: the guest's x0/x1 go to the stack (SP_EL2 is the
    // host stack guest_enter left), the exit code to x1; the rest is saved
    // by guest_exit_save (a vector slot holds 32 instructions).
    .macro guest_exit code
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\code
    b       guest_exit_save
    .endm

guest_exit_save:
    mrs     x0, tpidr_el2
    ldr     x0, [x0]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x2, sp_el1
    str     x2, [x0, #248]
    mrs     x2, elr_el2
    str     x2, [x0, #256]
    mrs     x2, spsr_el2
    str     x2, [x0, #264]
    save_fp x0
    mov     x0, x1

guest_exit_common:
    mrs     x1, tpidr_el2
    ldr     x2, [x1, #8]
    mov     sp, x2
    ldp     x19, x20, [x1, #16]
    ldp     x21, x22, [x1, #32]
    ldp     x23, x24, [x1, #48]
    ldp     x25, x26, [x1, #64]
    ldp     x27, x28, [x1, #80]
    ldp     x29, x30, [x1, #96]
    ret

    // An exception at EL2: a frame of x0-x30 on the stack, then Rust.
    .macro el2_trap kind
    sub     sp, sp, #256
    stp     x0, x1, [sp, #0]
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
    mov     x0, #\kind
    mov     x1, sp
    bl      el2_exception
1:  wfe
    b       1b
    .endm

    .balign 2048
    .global el2_vectors
el2_vectors:
    .balign 0x80
    el2_trap 0      // current EL, SP_EL0: sync
    .balign 0x80
    el2_trap 1
    .balign 0x80
    el2_trap 2
    .balign 0x80
    el2_trap 3
    .balign 0x80
    el2_trap 4      // current EL, SP_ELx: sync
    .balign 0x80
    el2_trap 5
    .balign 0x80
    el2_trap 6
    .balign 0x80
    el2_trap 7
    .balign 0x80
    guest_exit 0    // lower EL, AArch64: sync
    .balign 0x80
    guest_exit 1    // IRQ
    .balign 0x80
    guest_exit 2    // FIQ
    .balign 0x80
    guest_exit 3    // SError
    // From a lower EL in AArch32 (a guest's EL0 may run AArch32 code on a
    // CPU that has it, whatever the ID registers tell it): the same exits,
    // its r0-r14 being x0-x14.
    .balign 0x80
    guest_exit 0    // lower EL, AArch32: sync
    .balign 0x80
    guest_exit 1
    .balign 0x80
    guest_exit 2
    .balign 0x80
    guest_exit 3
"#
);
