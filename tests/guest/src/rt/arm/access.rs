//! Single-instruction memory accesses: PL011 registers (a plain 32-bit
//! `ldr`/`str` with no writeback, so that the hypervisor can emulate it
//! from the syndrome) and the abort probes (one `ldrd`/`strd`, which the
//! vectors skip when it takes a synchronous external abort).

use core::arch::asm;

/// Reads the 32-bit device register at `addr`.
pub(crate) fn mmio_read32(addr: usize) -> u32 {
    let v: u32;
    // SAFETY: callers pass a PL011 register, in the runtime's Device
    // mapping; a read changes nothing Rust uses (reading UARTDR takes a
    // byte from the UART's receive FIFO).
    unsafe { asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) };
    v
}

/// Writes the 32-bit device register at `addr`.
pub(crate) fn mmio_write32(addr: usize, v: u32) {
    // SAFETY: as `mmio_read32`; a write changes only the UART (writing
    // UARTDR transmits a byte).
    unsafe { asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)) };
}

/// Loads the 64-bit word at `addr` with one `ldrd`; 0 if the vectors
/// skipped it.
///
/// # Safety
///
/// As `exception::probe_read`.
pub(crate) unsafe fn probe_load64(addr: usize) -> u64 {
    let (mut lo, mut hi) = (0u32, 0u32);
    // SAFETY: forwarded from the caller; an aborted `ldrd` is skipped and
    // leaves both registers as they were. `ldrd` needs an even/odd pair.
    unsafe {
        asm!(
            "ldrd r2, r3, [{a}]",
            a = in(reg) addr,
            inout("r2") lo,
            inout("r3") hi,
            options(nostack),
        );
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Stores `value` to the 64-bit word at `addr` with one `strd`.
///
/// # Safety
///
/// As `exception::probe_write`.
pub(crate) unsafe fn probe_store64(addr: usize, value: u64) {
    // SAFETY: forwarded from the caller; an aborted `strd` is skipped.
    unsafe {
        asm!(
            "strd r2, r3, [{a}]",
            a = in(reg) addr,
            in("r2") value as u32,
            in("r3") (value >> 32) as u32,
            options(nostack),
        );
    }
}
