//! ARM32 entry points, the exception-mode stacks and the LPAE stage-1
//! identity map.
//!
//! `_start` (first byte of the image, section `.text.boot`, placed first
//! by `linker.ld`) is ARM code: the contract enters it in SVC mode, ARM
//! state, MMU and caches off, with the Linux ARM boot registers (`r0` = 0,
//! `r1` = `0xffff_ffff`, `r2` = DTB IPA). QEMU starting the ELF directly
//! (the smoke test) passes no DTB register; the DTB is then looked for at
//! the start of RAM ([`aarch32::boot_dtb`]).
//!
//! Each vCPU sets `VBAR`, turns on the MMU (LPAE: `TTBCR.EAE`, a 4-entry
//! level-1 table of 1 GiB blocks, see [`aarch32::identity_l1`]) and the
//! caches before any Rust code runs (the atomics' `ldrex`/`strex` need
//! Normal memory), then takes its stacks: the SVC stack from
//! `rt::boot::STACKS`, and one stack each for Abort, Undefined, IRQ and FIQ
//! mode, where the vectors run. As on AArch64, nothing is written to
//! memory with the MMU off: the table is a read-only static and `.bss` is
//! zeroed once the caches are on.

use core::arch::global_asm;
use core::cell::UnsafeCell;

use crate::aarch32::{self, MODE_ABT, MODE_FIQ, MODE_IRQ, MODE_SVC, MODE_UND};
use crate::abi::{MAX_CPUS, RAM_BASE};
use crate::rt::boot::{primary_main, STACKS, STACK_SIZE};
use crate::rt::smp::secondary_main;

/// Where the runtime runs, for the banner.
pub(crate) const RUNS_AT: &str = "PL1 (SVC mode)";

/// End of the runtime's stage-1 identity map: all of the 32-bit VA space.
pub(crate) const VA_END: u64 = 1 << 32;

/// Stack size of each exception mode per vCPU: room for the saved
/// registers and the Rust handler, including a fatal report's formatting.
pub const MODE_STACK_SIZE: usize = 8 * 1024;

/// The modes with their own stack, in the order `__rt_set_stacks` takes
/// them; SVC mode uses the vCPU's main stack.
const MODES: [u32; 4] = [MODE_ABT, MODE_UND, MODE_IRQ, MODE_FIQ];

/// The exception-mode stacks of every vCPU, in `.bss` (zeroed, hence
/// faulted in, before `main`).
#[repr(C, align(16))]
struct ModeStacks(UnsafeCell<[[[u8; MODE_STACK_SIZE]; MODES.len()]; MAX_CPUS]>);

// SAFETY: only the entry code (which sets each mode's SP to its own slot)
// and the vectors running on those stacks touch them; Rust never creates
// references into them.
unsafe impl Sync for ModeStacks {}

static MODE_STACKS: ModeStacks =
    ModeStacks(UnsafeCell::new([[[0; MODE_STACK_SIZE]; MODES.len()]; MAX_CPUS]));

// `movw` takes 16-bit immediates.
const _: () = assert!(STACK_SIZE <= 0xffff && MODE_STACK_SIZE * MODES.len() <= 0xffff);

/// The level-1 table (4 entries: T0SZ = 0 needs 32-byte alignment).
#[repr(C, align(32))]
struct L1Table([u64; aarch32::L1_ENTRIES]);

/// The stage-1 table, shared by every vCPU (read-only: `.rodata`).
static L1: L1Table = L1Table(aarch32::identity_l1());

global_asm!(
    r#"
    .section .text.boot, "ax"
    .arm
    .global _start
    .type _start, %function
_start:
    cpsid   aif
    mov     r4, r1                  @ boot registers: r1 says whether
    mov     r5, r2                  @ r2 holds the DTB IPA
    mov     r10, #0                 @ CPU index 0
    bl      __rt_pl1_setup
    @ Zero .bss (stacks included) with the caches on.
    movw    r0, #:lower16:__bss_start
    movt    r0, #:upper16:__bss_start
    movw    r1, #:lower16:__bss_end
    movt    r1, #:upper16:__bss_end
    mov     r2, #0
    mov     r3, #0
1:  cmp     r0, r1
    strdlo  r2, r3, [r0], #8
    blo     1b
    bl      __rt_set_stacks
    mov     r0, r4
    mov     r1, r5
    bl      {primary}
2:  wfi
    b       2b
    .size _start, . - _start

    .section .text.rt_entry, "ax"
    .arm
    @ PSCI CPU_ON entry: r0 = context id = CPU index.
    .global __rt_secondary_entry
    .type __rt_secondary_entry, %function
__rt_secondary_entry:
    cpsid   aif
    mov     r10, r0
    cmp     r10, #{max_cpus}
    bhs     2f
    bl      __rt_pl1_setup
    bl      __rt_set_stacks
    mov     r0, r10
    bl      {secondary}
2:  wfi
    b       2b
    .size __rt_secondary_entry, . - __rt_secondary_entry

    @ The stacks of CPU r10: SP of ABT, UND, IRQ and FIQ mode, then of SVC
    @ mode (where it returns); TPIDRPRW = r10. Clobbers r0-r2.
    .type __rt_set_stacks, %function
__rt_set_stacks:
    movw    r0, #:lower16:{mode_stacks}
    movt    r0, #:upper16:{mode_stacks}
    movw    r1, #{cpu_mode_stacks}
    mla     r0, r10, r1, r0
    movw    r1, #{mode_stack_size}
    add     r0, r0, r1
    cps     #{abt}
    mov     sp, r0
    add     r0, r0, r1
    cps     #{und}
    mov     sp, r0
    add     r0, r0, r1
    cps     #{irq}
    mov     sp, r0
    add     r0, r0, r1
    cps     #{fiq}
    mov     sp, r0
    cps     #{svc}
    movw    r0, #:lower16:{stacks}
    movt    r0, #:upper16:{stacks}
    add     r1, r10, #1
    movw    r2, #{stack_size}
    mla     r0, r1, r2, r0
    mov     sp, r0
    mcr     p15, 0, r10, c13, c0, 4
    bx      lr
    .size __rt_set_stacks, . - __rt_set_stacks

    @ Vectors, MMU and caches on. Clobbers r0-r1 only.
    .type __rt_pl1_setup, %function
__rt_pl1_setup:
    movw    r0, #:lower16:__rt_vectors
    movt    r0, #:upper16:__rt_vectors
    mcr     p15, 0, r0, c12, c0, 0  @ VBAR
    movw    r0, #{mair0_lo}
    movt    r0, #{mair0_hi}
    mcr     p15, 0, r0, c10, c2, 0  @ MAIR0
    mov     r0, #0
    mcr     p15, 0, r0, c10, c2, 1  @ MAIR1
    movw    r0, #{ttbcr_lo}
    movt    r0, #{ttbcr_hi}
    mcr     p15, 0, r0, c2, c0, 2   @ TTBCR
    movw    r0, #:lower16:{l1}
    movt    r0, #:upper16:{l1}
    mov     r1, #0
    mcrr    p15, 0, r0, r1, c2      @ TTBR0, 64-bit (ASID 0)
    isb
    mov     r0, #0
    mcr     p15, 0, r0, c8, c7, 0   @ TLBIALL
    mcr     p15, 0, r0, c7, c5, 0   @ ICIALLU
    mcr     p15, 0, r0, c7, c5, 6   @ BPIALL
    dsb     nsh
    isb
    mrc     p15, 0, r0, c1, c0, 0   @ SCTLR
    movw    r1, #{sctlr_clear_lo}
    movt    r1, #{sctlr_clear_hi}
    bic     r0, r0, r1
    movw    r1, #{sctlr_set_lo}
    movt    r1, #{sctlr_set_hi}
    orr     r0, r0, r1
    mcr     p15, 0, r0, c1, c0, 0
    isb
    bx      lr
    .size __rt_pl1_setup, . - __rt_pl1_setup
"#,
    primary = sym rt_primary_entry,
    secondary = sym rt_secondary_entry,
    stacks = sym STACKS,
    mode_stacks = sym MODE_STACKS,
    l1 = sym L1,
    max_cpus = const MAX_CPUS,
    stack_size = const STACK_SIZE,
    mode_stack_size = const MODE_STACK_SIZE,
    cpu_mode_stacks = const MODE_STACK_SIZE * MODES.len(),
    abt = const MODES[0],
    und = const MODES[1],
    irq = const MODES[2],
    fiq = const MODES[3],
    svc = const MODE_SVC,
    mair0_lo = const aarch32::MAIR0 & 0xffff,
    mair0_hi = const aarch32::MAIR0 >> 16,
    ttbcr_lo = const aarch32::TTBCR & 0xffff,
    ttbcr_hi = const aarch32::TTBCR >> 16,
    sctlr_clear_lo = const aarch32::SCTLR_CLEAR & 0xffff,
    sctlr_clear_hi = const aarch32::SCTLR_CLEAR >> 16,
    sctlr_set_lo = const aarch32::SCTLR_SET & 0xffff,
    sctlr_set_hi = const aarch32::SCTLR_SET >> 16,
);

/// Rust entry of the primary vCPU: MMU, caches, stacks and vectors are up.
/// `r1` and `r2` are the boot registers.
extern "C" fn rt_primary_entry(r1: u32, r2: u32) -> ! {
    primary_main(aarch32::boot_dtb(r1, r2, RAM_BASE))
}

/// Rust entry of a secondary vCPU.
extern "C" fn rt_secondary_entry(cpu: u32) -> ! {
    secondary_main(cpu as usize)
}
