//! PL011 UART driver (transmit side), with tock-registers.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields![u32,
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ]
];

register_structs! {
    /// PL011 registers used here.
    Registers {
        (0x00 => dr: WriteOnly<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x30 => cr: ReadWrite<u32>),
        (0x34 => @END),
    }
}

/// A PL011 at a fixed (identity-mapped) address.
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// The PL011 at `base`.
    ///
    /// # Safety
    ///
    /// `base` is the address of a PL011, mapped as device memory (or the
    /// MMU is off), and nothing else drives it concurrently.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    fn regs(&self) -> &Registers {
        // SAFETY: `new`'s contract: `base` points at the PL011's registers.
        unsafe { &*(self.base as *const Registers) }
    }

    /// Makes sure the UART and its transmitter are enabled (the boot
    /// firmware has set the baud rate).
    pub fn enable(&self) {
        let cr = self.regs().cr.get();
        // UARTEN (bit 0) and TXE (bit 8).
        self.regs().cr.set(cr | 1 | 1 << 8);
    }

    /// Sends one byte, waiting for room in the FIFO.
    pub fn putc(&self, b: u8) {
        while self.regs().fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs().dr.set(u32::from(b));
    }

    /// Sends a string, turning `\n` into `\r\n`.
    pub fn puts(&self, s: &str) {
        for b in s.bytes() {
            if b == b'\n' {
                self.putc(b'\r');
            }
            self.putc(b);
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.puts(s);
        Ok(())
    }
}
