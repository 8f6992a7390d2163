//! ARMv7-A with the virtualization extensions, in Hyp mode (PL2).
//!
//! System registers are CP15 registers: 32-bit ones are read with `MRC`
//! and written with `MCR`, 64-bit ones (`VTTBR`, `HTTBR`, `CNTPCT`...) with
//! `MRRC`/`MCRR`. The macros take the encoding as the assembler spells it
//! (`"p15, 4, {}, c5, c2, 0"` for HSR) so that every access reads like the
//! Arm ARM's register tables.

pub use crate::barrier;
pub mod cache;
pub mod regs;
pub mod tlb;

/// Reads a 32-bit CP15 register: `read_cp15!("p15, 4, {}, c5, c2, 0")`.
#[macro_export]
macro_rules! read_cp15 {
    ($enc:literal) => {{
        let v: u32;
        // SAFETY: reading a system register has no side effects on memory.
        unsafe { core::arch::asm!(concat!("mrc ", $enc), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// Writes a 32-bit CP15 register: `write_cp15!("p15, 4, {}, c1, c1, 0", v)`.
///
/// # Safety
///
/// The caller knows what the write does to the CPU's state.
#[macro_export]
macro_rules! write_cp15 {
    ($enc:literal, $v:expr) => {{
        let v: u32 = $v;
        core::arch::asm!(concat!("mcr ", $enc), in(reg) v, options(nostack))
    }};
}

/// Reads a 64-bit CP15 register: `read_cp15_64!("p15, 6, {}, {}, c2")`
/// (low word first).
#[macro_export]
macro_rules! read_cp15_64 {
    ($enc:literal) => {{
        let (lo, hi): (u32, u32);
        // SAFETY: reading a system register has no side effects on memory.
        unsafe {
            core::arch::asm!(concat!("mrrc ", $enc), out(reg) lo, out(reg) hi,
                options(nomem, nostack))
        };
        u64::from(lo) | (u64::from(hi) << 32)
    }};
}

/// Writes a 64-bit CP15 register: `write_cp15_64!("p15, 6, {}, {}, c2", v)`.
///
/// # Safety
///
/// The caller knows what the write does to the CPU's state.
#[macro_export]
macro_rules! write_cp15_64 {
    ($enc:literal, $v:expr) => {{
        let v: u64 = $v;
        core::arch::asm!(concat!("mcrr ", $enc), in(reg) v as u32, in(reg) (v >> 32) as u32,
            options(nostack))
    }};
}
