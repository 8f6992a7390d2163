//! Entry from the boot loader, for the primary CPU and for secondaries
//! started with PSCI `CPU_ON`.
//!
//! The image starts with the arm64 Linux image header, so QEMU `-kernel`,
//! U-Boot `booti` and the Raspberry Pi firmware load it the same way and
//! pass the DTB address in `x0`. Before any Rust runs: the exception level
//! is settled (EL3 drops to EL2; EL1 is refused on the console), BSS is
//! cleared, the CPU gets its stack, and the EL2 stage-1 MMU and caches are
//! on with the board's static identity map of the first 4 GiB
//! (`HYP_BOOT_L1`, 2 MiB blocks from [`crate::board`]), because Rust code
//! may use exclusives, which need Normal memory.

use core::arch::global_asm;

use super::super::STACK_SIZE;

// MAIR_EL2: Attr0 = 0x04 (Device-nGnRE), Attr1 = 0xff (Normal WB RW-alloc).
// TCR_EL2: T0SZ = 32 (4 GiB), IRGN0/ORGN0 = WB-WA, SH0 = Inner, TG0 = 4K,
// PS from ID_AA64MMFR0_EL1.PARange, RES1 bits 31 and 23.
// SCTLR_EL2: RES1 (0x30c50830) | M | C | SA | I.
global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       primary_entry
    .long   0
    .quad   __text_offset           // from the linker script
    .quad   __image_size            // image_size, BSS included
    .quad   0x2                     // flags: little endian, 4 KiB pages
    .quad   0
    .quad   0
    .quad   0
    .ascii  "ARM\x64"
    .long   0

    .section .text.boot, "ax"
primary_entry:
    mov     x19, x0                 // DTB
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    cmp     x1, #2
    b.eq    1f
    cmp     x1, #3
    b.eq    from_el3
    // EL1 (or EL0): no hypervisor possible. Tell the console and stop.
    adrp    x1, BOOT_STACKS
    add     x1, x1, #{stack_size}
    mov     sp, x1
    mov     x0, x19
    bl      refuse_el1
2:  wfe
    b       2b

from_el3:
    // Non-secure, EL2 is AArch64 and HVC is enabled; return to EL2h.
    mov     x1, #((1 << 0) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 10))
    msr     scr_el3, x1
    mov     x1, #0x3c9
    msr     spsr_el3, x1
    adr     x1, 1f
    msr     elr_el3, x1
    eret

1:  // EL2. Clear BSS (the stacks are in it).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    stp     xzr, xzr, [x1], #16
    b       3b
4:  mov     x20, #0                 // CPU index 0
    bl      el2_setup
    mov     x0, x19
    bl      primary_main
5:  wfe
    b       5b

    // PSCI CPU_ON entry: x0 = context id = CPU index.
    .global secondary_entry
secondary_entry:
    mov     x20, x0
    bl      el2_setup
    mov     x0, x20
    bl      secondary_main
6:  wfe
    b       6b

    // Released from the firmware's spin table (x0 = 0): the CPU index is
    // MPIDR_EL1.Aff0.
    .global secondary_entry_spin
secondary_entry_spin:
    mrs     x20, mpidr_el1
    and     x20, x20, #0xff
    bl      el2_setup
    mov     x0, x20
    bl      secondary_main
7:  wfe
    b       7b

    // Stack for CPU x20, vectors, MMU and caches on. Clobbers x0-x3.
el2_setup:
    adrp    x1, BOOT_STACKS
    add     x1, x1, :lo12:BOOT_STACKS
    mov     x2, #{stack_size}
    madd    x1, x20, x2, x1
    add     sp, x1, x2
    adrp    x1, el2_vectors
    add     x1, x1, :lo12:el2_vectors
    msr     vbar_el2, x1
    ldr     x1, =0x0000000000ff04
    msr     mair_el2, x1
    mrs     x1, id_aa64mmfr0_el1
    and     x1, x1, #0x7
    cmp     x1, #5
    mov     x2, #5
    csel    x1, x1, x2, ls          // PARange above 48 bits: use 48
    lsl     x1, x1, #16
    ldr     x2, =((1 << 31) | (1 << 23) | (3 << 12) | (1 << 10) | (1 << 8) | 32)
    orr     x1, x1, x2
    msr     tcr_el2, x1
    adrp    x1, HYP_BOOT_L1
    add     x1, x1, :lo12:HYP_BOOT_L1
    msr     ttbr0_el2, x1
    // FP/SIMD not trapped (CPTR_EL2 RES1 bits, TFP = 0).
    ldr     x1, =0x33ff
    msr     cptr_el2, x1
    isb
    tlbi    alle2
    dsb     ish
    isb
    ldr     x1, =(0x30c50830 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12))
    msr     sctlr_el2, x1
    isb
    ret
"#,
    stack_size = const STACK_SIZE,
);
