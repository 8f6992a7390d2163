//! Single-instruction memory accesses: PL011 registers (a plain `ldr`/`str`
//! with no writeback, so that a trapping hypervisor can emulate it from
//! the syndrome) and the abort probes (one instruction, which the vectors
//! skip when it takes a synchronous external abort).

use core::arch::asm;

/// Reads the 32-bit device register at `addr`.
pub(crate) fn mmio_read32(addr: usize) -> u32 {
    let v: u32;
    // SAFETY: callers pass a PL011 register, in the runtime's Device
    // mapping; a read changes nothing Rust uses (reading UARTDR takes a
    // byte from the UART's receive FIFO).
    unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) };
    v
}

/// Writes the 32-bit device register at `addr`.
pub(crate) fn mmio_write32(addr: usize, v: u32) {
    // SAFETY: as `mmio_read32`; a write changes only the UART (writing
    // UARTDR transmits a byte).
    unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)) };
}

/// Loads the 64-bit word at `addr` with one `ldr`; 0 if the vectors skipped
/// it.
///
/// # Safety
///
/// As `exception::probe_read`.
pub(crate) unsafe fn probe_load64(addr: usize) -> u64 {
    let mut v: u64 = 0;
    // SAFETY: forwarded from the caller; an aborted `ldr` is skipped and
    // leaves `v` as it was.
    unsafe { asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) v, options(nostack)) };
    v
}

/// Stores `value` to the 64-bit word at `addr` with one `str`.
///
/// # Safety
///
/// As `exception::probe_write`.
pub(crate) unsafe fn probe_store64(addr: usize, value: u64) {
    // SAFETY: forwarded from the caller; an aborted `str` is skipped.
    unsafe { asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) };
}
