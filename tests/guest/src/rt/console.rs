//! The PL011 console at `0x0900_0000` and the `print!`/`println!` macros.
//!
//! Printing touches two registers, each with a single 32-bit `ldr`/`str`
//! (no writeback, no pair or multiple loads, so the hypervisor can emulate
//! the access from the syndrome): bytes are written to UARTDR (offset 0)
//! after polling UARTFR (offset 0x18) until TXFF (bit 5) is clear. Nothing
//! initialises the UART (the hypervisor's needs nothing; QEMU's transmits
//! from reset). Images that look at the rest of the PL011 use
//! [`uart_read`], [`uart_write`] and [`try_getb`] (the same single
//! accesses). Each `print!` or `println!`
//! holds a spinlock so that vCPUs do not interleave characters within a
//! line; a nested print on the same vCPU (an exception while printing)
//! goes through without it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::abi::{pl011, UART_BASE};
use crate::rt::arch::access::{mmio_read32, mmio_write32};
use crate::rt::smp::{cpu_index, notify, wait_until};

const UARTDR: usize = UART_BASE as usize + pl011::DR;
const UARTFR: usize = UART_BASE as usize + pl011::FR;

/// Owner of the console lock: a CPU index, or `FREE`.
static OWNER: AtomicUsize = AtomicUsize::new(FREE);
const FREE: usize = usize::MAX;

/// Writes one byte to the UART, waiting while its FIFO is full.
pub fn putb(b: u8) {
    while mmio_read32(UARTFR) & pl011::FR_TXFF != 0 {
        core::hint::spin_loop();
    }
    mmio_write32(UARTDR, u32::from(b));
}

/// Reads the PL011 register at offset `off` ([`pl011`]'s offsets) with one
/// 32-bit load.
pub fn uart_read(off: usize) -> u32 {
    mmio_read32(UART_BASE as usize + off)
}

/// Writes the PL011 register at offset `off` with one 32-bit store.
pub fn uart_write(off: usize, v: u32) {
    mmio_write32(UART_BASE as usize + off, v)
}

/// A received byte, if one waits (UARTFR.RXFE clear); never waits.
pub fn try_getb() -> Option<u8> {
    if mmio_read32(UARTFR) & pl011::FR_RXFE != 0 {
        return None;
    }
    Some(mmio_read32(UARTDR) as u8)
}

/// The UART as a `fmt::Write` sink (no locking).
pub struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(putb);
        Ok(())
    }
}

/// Prints `args` (and a newline if `newline`) under the console lock.
/// Used by the macros.
pub fn print_locked(args: fmt::Arguments<'_>, newline: bool) {
    let me = cpu_index();
    let nested = OWNER.load(Ordering::Relaxed) == me;
    if !nested {
        while OWNER.compare_exchange(FREE, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            wait_until(|| OWNER.load(Ordering::Relaxed) == FREE);
        }
    }
    let _ = Uart.write_fmt(args);
    if newline {
        putb(b'\n');
    }
    if !nested {
        OWNER.store(FREE, Ordering::Release);
        notify();
    }
}

/// Prints to the guest console (the PL011), like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::rt::console::print_locked(format_args!($($arg)*), false)
    };
}

/// Prints a line to the guest console (the PL011), like `std::println!`.
/// The whole line is written under the console lock.
#[macro_export]
macro_rules! println {
    () => {
        $crate::rt::console::print_locked(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::rt::console::print_locked(format_args!($($arg)*), true)
    };
}
