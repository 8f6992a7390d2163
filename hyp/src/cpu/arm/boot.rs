//! Entry from the boot loader in ARMv7 Hyp mode, for the primary CPU and
//! for secondaries started with PSCI `CPU_ON`.
//!
//! The image starts like an ARM Linux zImage (magic `0x016f2818` at byte
//! 0x24, start and end addresses after it), so QEMU `-kernel`, U-Boot
//! `bootz` and the Raspberry Pi firmware load it the same way and pass the
//! DTB address in `r2` (`r0` = 0, `r1` = machine type). The image is
//! linked where the board's loader puts a raw ARM kernel (QEMU virt: RAM
//! base + 0x1_0000; the Raspberry Pi 2 firmware: 0x8000) and must run
//! there.
//!
//! Before any Rust runs: the CPU mode is checked (anything but Hyp mode is
//! refused on the console: without the virtualization extensions' PL2
//! there is no stage 2), interrupts are masked, BSS is cleared, the CPU
//! gets its stack and `HVBAR`, and the Hyp-mode stage-1 MMU (LPAE long
//! descriptors, `HTTBR`/`HTCR`/`HMAIR0`) and caches are on with the
//! board's static identity map of the 4 GiB VA space (`HYP_BOOT_L1`,
//! 2 MiB blocks from [`crate::board`]), because Rust code uses exclusives,
//! which need Normal memory.

use core::arch::global_asm;

use super::super::STACK_SIZE;

// HMAIR0: Attr0 = 0x04 (Device-nGnRE), Attr1 = 0xff (Normal WB RW-alloc).
// HTCR: bits 31 and 23 should be one, SH0 = Inner, ORGN0/IRGN0 = WB-WA,
// T0SZ = 0 (4 GiB).
// HSCTLR: M, C, I on; A (alignment checks), EE (big-endian exceptions)
// and TE (Thumb exceptions) off; the other bits as reset.
global_asm!(
    r#"
    .arch_extension virt
    .section .text.head, "ax"
    .arm
    .global _start
_start:
    b       primary_entry
    .rept   8
    nop
    .endr
    .word   0x016f2818              // zImage magic
    .word   __image_start           // load address
    .word   __data_end              // end of the loaded file

    .section .text.boot, "ax"
primary_entry:
    mov     r4, r2                  // DTB
    mrs     r0, cpsr
    and     r0, r0, #0x1f
    cmp     r0, #0x1a               // Hyp mode
    beq     1f
    // Not Hyp mode: no hypervisor possible. Tell the console and stop.
    cpsid   aif
    ldr     sp, =BOOT_STACKS + {stack_size}
    mov     r0, r4
    bl      refuse_not_hyp
2:  wfe
    b       2b

1:  cpsid   aif
    // Clear BSS (the stacks are in it).
    ldr     r0, =__bss_start
    ldr     r1, =__bss_end
    mov     r2, #0
    mov     r3, #0
3:  cmp     r0, r1
    strdlo  r2, r3, [r0], #8
    blo     3b
    mov     r5, #0                  // CPU index 0
    bl      hyp_setup
    mov     r0, r4
    bl      primary_main
4:  wfe
    b       4b

    // PSCI CPU_ON entry, in Hyp mode: r0 = context id = CPU index.
    .global secondary_entry
secondary_entry:
    cpsid   aif
    mov     r5, r0
    bl      hyp_setup
    mov     r0, r5
    bl      secondary_main
5:  wfe
    b       5b

    // Released from a spin table: the CPU index is MPIDR.Aff0.
    .global secondary_entry_spin
secondary_entry_spin:
    cpsid   aif
    mrc     p15, 0, r5, c0, c0, 5
    and     r5, r5, #0xff
    bl      hyp_setup
    mov     r0, r5
    bl      secondary_main
6:  wfe
    b       6b

    // Stack for CPU r5, vectors, MMU and caches on. Clobbers r0-r3.
hyp_setup:
    ldr     r0, =BOOT_STACKS
    ldr     r1, ={stack_size}
    mla     r0, r5, r1, r0
    add     sp, r0, r1
    ldr     r0, =hyp_vectors
    mcr     p15, 4, r0, c12, c0, 0  // HVBAR
    ldr     r0, =0x0000ff04
    mcr     p15, 4, r0, c10, c2, 0  // HMAIR0
    ldr     r0, =((1 << 31) | (1 << 23) | (3 << 12) | (1 << 10) | (1 << 8))
    mcr     p15, 4, r0, c2, c0, 2   // HTCR
    ldr     r0, =HYP_BOOT_L1
    mov     r1, #0
    mcrr    p15, 4, r0, r1, c2      // HTTBR
    isb
    mcr     p15, 4, r0, c8, c7, 0   // TLBIALLH
    dsb     ish
    isb
    mrc     p15, 4, r0, c1, c0, 0   // HSCTLR
    ldr     r1, =((1 << 30) | (1 << 25) | (1 << 1))
    bic     r0, r0, r1
    ldr     r1, =((1 << 12) | (1 << 2) | (1 << 0))
    orr     r0, r0, r1
    mcr     p15, 4, r0, c1, c0, 0
    isb
    bx      lr
"#,
    stack_size = const STACK_SIZE,
);
