//! Hyp-mode exception vectors (`HVBAR`), guest entry and guest exit.
//!
//! `guest_enter(regs)` pushes the host's callee-saved registers and `regs`
//! on the Hyp stack, loads the guest's banked registers (every PL1 mode's
//! SP, LR and SPSR, FIQ's r8-r12), `ELR_hyp` and `SPSR_hyp` from `regs`,
//! then its r0-r12, and ERETs. Hyp mode has no LR of its own: its R14 is
//! `LR_usr`, so that one is loaded and saved as plain `lr` (the banked
//! `MSR`/`MRS` forms may not name a register of the current mode). The Hyp stack pointer is banked, so an
//! exception from the guest finds the stack exactly as `guest_enter` left
//! it: the vector saves the guest's registers back into `regs`, pops the
//! host's registers and returns from `guest_enter` with the kind of exit
//! as its value. Exceptions taken in Hyp mode itself (undefined
//! instruction, SVC/HVC, aborts) are hypervisor bugs: they save a frame
//! and call `hyp_exception`, which panics with the Hyp registers.

use core::arch::global_asm;
use core::mem::offset_of;

/// The guest's core registers, saved on every exit. Its VFP and Advanced
/// SIMD registers are not among them: the hypervisor does not use them,
/// so they stay on the CPU across exits and are switched lazily with the
/// vCPU (`GuestSysRegs`, the `fp` module).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    /// r0 to r12 (r8-r12 as User/SVC/ABT/UND/IRQ modes see them).
    pub r: [u32; 13],
    /// SP and LR of User and System modes.
    pub usr: [u32; 2],
    /// SP, LR and SPSR of Supervisor mode.
    pub svc: [u32; 3],
    /// SP, LR and SPSR of Abort mode.
    pub abt: [u32; 3],
    /// SP, LR and SPSR of Undefined mode.
    pub und: [u32; 3],
    /// SP, LR and SPSR of IRQ mode.
    pub irq: [u32; 3],
    /// FIQ mode's r8-r12, SP, LR and SPSR.
    pub fiq: [u32; 8],
    /// Where the guest resumes (`ELR_hyp`).
    pub pc: u32,
    /// CPSR to resume with (`SPSR_hyp`).
    pub cpsr: u32,
}

/// Offsets the assembly below relies on.
const BANKED: usize = offset_of!(GuestRegs, usr);
const PC: usize = offset_of!(GuestRegs, pc);
const _: () = {
    assert!(BANKED == 13 * 4);
    assert!(offset_of!(GuestRegs, svc) == BANKED + 8);
    assert!(offset_of!(GuestRegs, fiq) == BANKED + 8 + 4 * 12);
    assert!(PC == offset_of!(GuestRegs, fiq) + 32);
    assert!(offset_of!(GuestRegs, cpsr) == PC + 4);
};

unsafe extern "C" {
    /// Runs the guest described by `regs` until it exits.
    ///
    /// # Safety
    ///
    /// `regs` stays valid until the call returns; the guest's PL1 state
    /// and stage 2 (`VTTBR`, `HCR`...) are set up for it. Returns the exit
    /// code for [`Exit::from_code`](crate::cpu::Exit::from_code).
    pub fn guest_enter(regs: *mut GuestRegs) -> usize;
}

global_asm!(
    r#"
    .arch_extension virt
    .arm
    .section .text
    .global guest_enter
guest_enter:
    push    {{r0, r1, r4-r12, lr}}  // r0 = regs, found again on exit
    add     r1, r0, #{banked}
    ldm     r1!, {{r2, lr}}         // Hyp mode's LR is LR_usr
    msr     sp_usr, r2
    ldm     r1!, {{r2, r3, r4}}
    msr     sp_svc, r2
    msr     lr_svc, r3
    msr     spsr_svc, r4
    ldm     r1!, {{r2, r3, r4}}
    msr     sp_abt, r2
    msr     lr_abt, r3
    msr     spsr_abt, r4
    ldm     r1!, {{r2, r3, r4}}
    msr     sp_und, r2
    msr     lr_und, r3
    msr     spsr_und, r4
    ldm     r1!, {{r2, r3, r4}}
    msr     sp_irq, r2
    msr     lr_irq, r3
    msr     spsr_irq, r4
    ldm     r1!, {{r2-r9}}
    msr     r8_fiq, r2
    msr     r9_fiq, r3
    msr     r10_fiq, r4
    msr     r11_fiq, r5
    msr     r12_fiq, r6
    msr     sp_fiq, r7
    msr     lr_fiq, r8
    msr     spsr_fiq, r9
    ldm     r1, {{r2, r3}}
    msr     elr_hyp, r2
    msr     spsr_cxsf, r3
    ldm     r0, {{r0-r12}}
    eret

    // From the guest: its r0/r1 go to the stack, the exit code to r1.
    .macro guest_exit code
    push    {{r0, r1}}
    mov     r1, #\code
    b       guest_exit_save
    .endm

guest_exit_save:
    ldr     r0, [sp, #8]            // regs, pushed by guest_enter
    add     r0, r0, #8
    stm     r0, {{r2-r12}}
    sub     r0, r0, #8
    pop     {{r2, r3}}
    stm     r0, {{r2, r3}}
    mov     r12, r1
    add     r1, r0, #{banked}
    mrs     r2, sp_usr
    stm     r1!, {{r2, lr}}         // LR_usr, untouched since the exit
    mrs     r2, sp_svc
    mrs     r3, lr_svc
    mrs     r4, spsr_svc
    stm     r1!, {{r2, r3, r4}}
    mrs     r2, sp_abt
    mrs     r3, lr_abt
    mrs     r4, spsr_abt
    stm     r1!, {{r2, r3, r4}}
    mrs     r2, sp_und
    mrs     r3, lr_und
    mrs     r4, spsr_und
    stm     r1!, {{r2, r3, r4}}
    mrs     r2, sp_irq
    mrs     r3, lr_irq
    mrs     r4, spsr_irq
    stm     r1!, {{r2, r3, r4}}
    mrs     r2, r8_fiq
    mrs     r3, r9_fiq
    mrs     r4, r10_fiq
    mrs     r5, r11_fiq
    mrs     r6, r12_fiq
    mrs     r7, sp_fiq
    mrs     r8, lr_fiq
    mrs     r9, spsr_fiq
    stm     r1!, {{r2-r9}}
    mrs     r2, elr_hyp
    mrs     r3, spsr
    stm     r1, {{r2, r3}}
    mov     r0, r12
    add     sp, sp, #8              // regs and its pad
    pop     {{r4-r12, pc}}

    // An exception in Hyp mode: r0-r12 and the return address on the
    // stack, then Rust.
    .macro hyp_trap kind
    push    {{r0-r12, lr}}
    mov     r0, #\kind
    mov     r1, sp
    bl      hyp_exception
1:  wfe
    b       1b
    .endm

hyp_undef:
    hyp_trap 1
hyp_call:
    hyp_trap 2
hyp_pabt:
    hyp_trap 3
hyp_dabt:
    hyp_trap 4
hyp_reset:
    hyp_trap 0
guest_trap:
    guest_exit 0
guest_irq:
    guest_exit 1
guest_fiq:
    guest_exit 2

    .balign 32
    .global hyp_vectors
hyp_vectors:
    b       hyp_reset               // 0x00 (not used)
    b       hyp_undef               // 0x04 undefined instruction in Hyp mode
    b       hyp_call                // 0x08 SVC or HVC in Hyp mode
    b       hyp_pabt                // 0x0c prefetch abort in Hyp mode
    b       hyp_dabt                // 0x10 data abort in Hyp mode
    b       guest_trap              // 0x14 Hyp trap: every exit from a guest
    b       guest_irq               // 0x18 IRQ (masked in Hyp mode)
    b       guest_fiq               // 0x1c FIQ (masked in Hyp mode)
"#,
    banked = const BANKED,
);
