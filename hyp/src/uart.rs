//! PL011 UART driver: the hypervisor's console, transmitting and receiving
//! without interrupts (tock-registers).

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields![u32,
    /// Data register.
    DR [
        /// The byte received or to send.
        DATA OFFSET(0) NUMBITS(8) [],
        /// Break: the byte is not data.
        BE OFFSET(10) NUMBITS(1) []
    ],
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// Busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Line control register.
    LCR_H [
        /// FIFOs enabled.
        FEN OFFSET(4) NUMBITS(1) []
    ],
    /// Control register.
    CR [
        /// UART enabled.
        UARTEN OFFSET(0) NUMBITS(1) [],
        /// Transmitter enabled.
        TXE OFFSET(8) NUMBITS(1) [],
        /// Receiver enabled.
        RXE OFFSET(9) NUMBITS(1) []
    ]
];

register_structs! {
    /// PL011 registers used here.
    Registers {
        (0x00 => dr: ReadWrite<u32, DR::Register>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x2c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
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

    /// Makes sure the UART, its transmitter and receiver and its FIFOs are
    /// enabled (the boot firmware has set the baud rate). The FIFOs let
    /// input wait for the hypervisor to poll it; turning them on follows
    /// the PL011 TRM: wait for the transmitter, disable the UART, change
    /// `UARTLCR_H`, enable it again.
    pub fn enable(&self) {
        let r = self.regs();
        if !r.lcr_h.is_set(LCR_H::FEN) {
            while r.fr.is_set(FR::BUSY) {
                core::hint::spin_loop();
            }
            r.cr.modify(CR::UARTEN::CLEAR);
            r.lcr_h.modify(LCR_H::FEN::SET);
        }
        let on = CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET;
        if !r.cr.matches_all(on) {
            r.cr.modify(on);
        }
    }

    /// Sends one byte, waiting for room in the FIFO.
    pub fn putc(&self, b: u8) {
        while self.regs().fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs().dr.write(DR::DATA.val(u32::from(b)));
    }

    /// Sends a string, turning `\n` into `\r\n`.
    pub fn puts(&self, s: &str) {
        self.put_bytes(s.as_bytes());
    }

    /// Sends bytes, turning `\n` into `\r\n`.
    pub fn put_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.putc(b'\r');
            }
            self.putc(b);
        }
    }

    /// A received byte, if one is waiting (never waits). A break reads as
    /// nothing.
    pub fn try_getc(&self) -> Option<u8> {
        let r = self.regs();
        while !r.fr.is_set(FR::RXFE) {
            let dr = r.dr.extract();
            if !dr.is_set(DR::BE) {
                return Some(dr.read(DR::DATA) as u8);
            }
        }
        None
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.puts(s);
        Ok(())
    }
}

impl crate::conmux::Sink for Pl011 {
    fn put(&mut self, bytes: &[u8]) {
        self.put_bytes(bytes);
    }
}
