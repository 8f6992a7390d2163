//! AArch64 entry points and the stage-1 identity map.
//!
//! The image header: `_start` (first byte of the image, section
//! `.text.boot`, placed first by `linker.ld`) is an arm64 Linux image
//! header whose first word branches over it. The guest contract only needs
//! "the first instruction is the entry"; the header also lets QEMU `-kernel`
//! load an image at `0x4020_0000` with its built-in PSCI for smoke tests
//! without the hypervisor (`text_offset = 0x20_0000`, `image_size` includes
//! `.bss`).
//!
//! Nothing is written to memory with the MMU off: the stage-1 tables are a
//! read-only static and `.bss` is zeroed once the caches are on, so no cache
//! maintenance is needed for data written before the MMU is enabled.

use core::arch::global_asm;

use crate::abi::MAX_CPUS;
use crate::rt::boot::{primary_main, STACKS, STACK_SIZE};
use crate::rt::smp::secondary_main;

/// Where the runtime runs, for the banner.
pub(crate) const RUNS_AT: &str = "EL1";

/// End of the runtime's stage-1 identity map (8 GiB): the VAs it reaches.
pub(crate) const VA_END: u64 = 8 << 30;

/// One translation table (4 KiB granule, 512 entries).
#[repr(C, align(4096))]
pub(crate) struct Table([u64; 512]);

const DESC_BLOCK: u64 = 0b01;
const ATTR_DEVICE: u64 = 0 << 2; // MAIR attr 0: Device-nGnRE
const ATTR_NORMAL: u64 = 1 << 2; // MAIR attr 1: Normal WB RW-allocate
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

/// `MAIR_EL1`: attr 0 = Device-nGnRE (0x04), attr 1 = Normal inner/outer
/// write-back read/write-allocate (0xff).
const MAIR: u64 = 0xff04;

/// `TCR_EL1` without IPS (filled from `ID_AA64MMFR0_EL1.PARange` at boot):
/// T0SZ = 25 (39-bit VA, walks start at level 1), IRGN0 = ORGN0 = WB WA,
/// SH0 inner shareable, TG0 4 KiB; TTBR1 walks disabled (EPD1, TG1 4 KiB).
const TCR: u64 =
    25 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (25 << 16) | (1 << 23) | (0b10 << 30);

/// `SCTLR_EL1` with the MMU and caches on: the RES1 bits of Armv8.0
/// (EOS, EIS, SPAN, TSCXT, nTLSMD, LSMAOE: 0x30d0_0800) | M | C | I;
/// alignment checks, WXN and big endian off.
const SCTLR: u64 = 0x30d0_0800 | (1 << 0) | (1 << 2) | (1 << 12);

/// The level-1 table of the identity map: 1 GiB blocks. 0-1 GiB (the
/// PL011 and the other devices) Device-nGnRE; 1-4 GiB (guest RAM from
/// `0x4000_0000`, up to 3 GiB) Normal WB inner shareable; 4-8 GiB
/// Device-nGnRE (holds [`OUTSIDE_IPA`](crate::abi::OUTSIDE_IPA)). The rest
/// is unmapped (a stage-1 translation fault, reported as an unexpected
/// exception).
const fn l1_table() -> Table {
    let mut t = [0u64; 512];
    let mut i = 0;
    while i < 8 {
        let pa = (i as u64) << 30;
        t[i] = if i >= 1 && i <= 3 {
            pa | DESC_BLOCK | ATTR_NORMAL | SH_INNER | AF | UXN
        } else {
            pa | DESC_BLOCK | ATTR_DEVICE | AF | PXN | UXN
        };
        i += 1;
    }
    Table(t)
}

/// The stage-1 tables, shared by every vCPU (read-only: `.rodata`).
static L1: Table = l1_table();

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
    .type _start, %function
_start:
    b       1f                      // code0: branch over the header
    .long   0                       // code1
    .quad   0x200000                // text_offset
    .quad   __image_size            // image_size, .bss included
    .quad   0xa                     // flags: LE, 4 KiB pages, anywhere
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5
1:  msr     daifset, #0xf
    mov     x19, x0                 // DTB IPA
    mov     x20, xzr                // CPU index 0
    bl      __rt_el1_setup
    // Zero .bss (stacks included) with the caches on.
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
2:  cmp     x0, x1
    b.hs    3f
    stp     xzr, xzr, [x0], #16
    b       2b
3:  bl      __rt_set_stack
    mov     x0, x19
    bl      {primary}
4:  wfi
    b       4b
    .size _start, . - _start

    .section .text.rt_entry, "ax"
    // PSCI CPU_ON entry: x0 = context id = CPU index.
    .global __rt_secondary_entry
    .type __rt_secondary_entry, %function
__rt_secondary_entry:
    msr     daifset, #0xf
    mov     x20, x0
    cmp     x20, #{max_cpus}
    b.hs    2f
    bl      __rt_el1_setup
    bl      __rt_set_stack
    mov     x0, x20
    bl      {secondary}
2:  wfi
    b       2b
    .size __rt_secondary_entry, . - __rt_secondary_entry

    // SP = top of stack x20, TPIDR_EL1 = x20 (the CPU index).
    .type __rt_set_stack, %function
__rt_set_stack:
    adrp    x0, {stacks}
    add     x0, x0, :lo12:{stacks}
    add     x1, x20, #1
    mov     x2, #{stack_size}
    madd    x0, x1, x2, x0
    mov     sp, x0
    msr     tpidr_el1, x20
    ret
    .size __rt_set_stack, . - __rt_set_stack

    // FP/SIMD on, vectors, MMU and caches on. Clobbers x0-x2 only.
    .type __rt_el1_setup, %function
__rt_el1_setup:
    mov     x0, #(3 << 20)          // CPACR_EL1.FPEN: no FP/SIMD traps
    msr     cpacr_el1, x0
    adrp    x0, __rt_vectors
    add     x0, x0, :lo12:__rt_vectors
    msr     vbar_el1, x0
    ldr     x0, ={mair}
    msr     mair_el1, x0
    mrs     x1, id_aa64mmfr0_el1    // IPS = min(PARange, 48 bits)
    and     x1, x1, #0xf
    cmp     x1, #5
    mov     x2, #5
    csel    x1, x2, x1, hi
    ldr     x0, ={tcr}
    orr     x0, x0, x1, lsl #32
    msr     tcr_el1, x0
    adrp    x0, {l1}
    add     x0, x0, :lo12:{l1}
    msr     ttbr0_el1, x0
    isb
    tlbi    vmalle1
    ic      iallu
    dsb     nsh
    isb
    ldr     x0, ={sctlr}
    msr     sctlr_el1, x0
    isb
    ret
    .size __rt_el1_setup, . - __rt_el1_setup
"#,
    primary = sym rt_primary_entry,
    secondary = sym rt_secondary_entry,
    stacks = sym STACKS,
    l1 = sym L1,
    max_cpus = const MAX_CPUS,
    stack_size = const STACK_SIZE,
    mair = const MAIR,
    tcr = const TCR,
    sctlr = const SCTLR,
);

/// Rust entry of the primary vCPU: MMU, caches, stack and vectors are up.
extern "C" fn rt_primary_entry(dtb: u64) -> ! {
    primary_main(dtb)
}

/// Rust entry of a secondary vCPU.
extern "C" fn rt_secondary_entry(cpu: u64) -> ! {
    secondary_main(cpu as usize)
}
