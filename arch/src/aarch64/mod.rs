//! AArch64 at EL2.

pub use crate::barrier;
pub mod cache;
pub mod tlb;

/// Reads a system register by name.
#[macro_export]
macro_rules! read_sysreg {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading a system register has no side effects on memory.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// Writes a system register by name.
///
/// # Safety
///
/// The caller knows what the write does to the CPU's state.
#[macro_export]
macro_rules! write_sysreg {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) v, options(nostack))
    }};
}
