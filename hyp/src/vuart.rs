//! The PL011 each VM finds at [`crate::vm::UART_IPA`]: a model of the
//! PrimeCell UART's registers (Arm PL011 TRM r1p5, DDI 0183), portable and
//! tested on the host. The VM ([`Vm::uart_read`](crate::vm::Vm::uart_read),
//! [`Vm::uart_write`](crate::vm::Vm::uart_write)) hands it the guest's
//! loads and stores that `trap` decoded, and the console input the bytes
//! typed for the VM ([`Pl011::push_rx`]); a byte the guest transmits comes
//! back from [`Pl011::write`] for the VM's console line.
//!
//! # Registers
//!
//! * `UARTDR` (0x000): a read takes the oldest byte of the receive FIFO
//!   (0 when it is empty); bit 11 (OE) is set on the first read after an
//!   overrun. A write transmits its low byte at once.
//! * `UARTRSR`/`UARTECR` (0x004): OE after an overrun; any write clears it.
//! * `UARTFR` (0x018): RXFE and RXFF from the receive FIFO; TXFE set, TXFF
//!   and BUSY clear, always: bytes go out as they are written, so the
//!   transmitter is never full nor busy. CTS, DSR, DCD and RI read 0.
//! * `UARTILPR`, `UARTIBRD`, `UARTFBRD`, `UARTLCR_H`, `UARTCR`, `UARTIFLS`,
//!   `UARTDMACR`: stored (the bits that exist) and read back. Only FEN and
//!   RXIFLSEL change what the model does (below): the line has no speed,
//!   no format, no loopback and no DMA. `UARTCR` resets to 0x300 (TXE,
//!   RXE), `UARTIFLS` to 0x12 (both levels half way), the others to 0. A
//!   disabled UART (UARTEN, TXE or RXE clear) still transmits and receives,
//!   as QEMU's PL011 does: the guests of this project never set it up.
//! * `UARTIMSC` (0x038), `UARTRIS` (0x03c), `UARTMIS` (0x040) =
//!   RIS & IMSC, `UARTICR` (0x044, write 1 to clear).
//! * The peripheral and PrimeCell identification registers (0xfe0 to
//!   0xffc): a PL011 r1p5, as QEMU's.
//!
//! Every register is 32 bits wide at an offset that is a multiple of 4. A
//! load or store of 1, 2 or 4 bytes at such an offset reaches the
//! register's low bits (a narrow write writes the register with its upper
//! bits zero); an offset that is not a multiple of 4, any other size, an
//! offset with no register, a write to a read-only register and a read of
//! `UARTICR` read as 0 and are ignored when written.
//!
//! # Receive FIFO and interrupts
//!
//! The receive FIFO holds [`FIFO_DEPTH`] (32) bytes whether or not FEN is
//! set (a real PL011 with FEN clear has a one-byte holding register): a
//! byte received when it is full is lost and recorded as an overrun. The
//! interrupt status (`UARTRIS`) follows the PL011's events:
//!
//! * RXRIS: with FEN set, set by a received byte that leaves the FIFO at
//!   or above the trigger level RXIFLSEL chooses (1/8, 1/4, 1/2, 3/4 or 7/8
//!   of 32 bytes: 4, 8, 16, 24 or 28; a reserved value counts as 1/2);
//!   with FEN clear, by every received byte (the PL011's character mode).
//!   Cleared by a read that leaves the FIFO below the level, or by ICR.
//! * RTRIS, the receive timeout: a PL011 raises it once data has sat in
//!   the FIFO for 32 bit periods. The model has no time: RTRIS is set
//!   whenever a received byte or a read leaves the FIFO non-empty and
//!   below the trigger level, so that a lone character is delivered at
//!   once (Linux's driver relies on the timeout for that). Cleared when the
//!   FIFO empties, or by ICR until the next byte or read that leaves data
//!   below the level.
//! * TXRIS: the PL011 raises it when the transmit FIFO drains to the
//!   trigger level (a transition, not the level). The model's FIFO drains
//!   as soon as a byte is written, so every write of `UARTDR` sets TXRIS;
//!   ICR clears it until the next write. It is clear at reset: Linux primes
//!   the transmitter by writing, and a TX interrupt that ICR could not
//!   clear would storm.
//! * OERIS: set, with `UARTRSR`'s OE, by a byte received while the FIFO
//!   is full; cleared by ICR.
//! * The modem (RI, CTS, DCD, DSR) and error (FE, PE, BE) interrupts never
//!   happen.
//!
//! The interrupt output (`UARTINTR`, SPI 1 = INTID 33 on QEMU `virt`) is
//! `MIS != 0`: [`Pl011::irq_level`].

use tock_registers::LocalRegisterCopy;

use fields::{CR, FR, IFLS, INT, LCR_H, RSR};

/// The PL011's register fields (PL011 TRM, "Register descriptions").
#[allow(missing_docs, non_camel_case_types)]
pub mod fields {
    use tock_registers::register_bitfields;

    register_bitfields! {u32,
        /// `UARTDR` as read: the byte and its receive errors.
        pub DR [
            /// The received byte.
            DATA OFFSET(0) NUMBITS(8) [],
            /// Framing error.
            FE OFFSET(8) NUMBITS(1) [],
            /// Parity error.
            PE OFFSET(9) NUMBITS(1) [],
            /// Break.
            BE OFFSET(10) NUMBITS(1) [],
            /// Overrun: a byte was lost because the FIFO was full.
            OE OFFSET(11) NUMBITS(1) []
        ],
        /// `UARTRSR`: receive errors since `UARTECR` was last written.
        pub RSR [
            FE OFFSET(0) NUMBITS(1) [],
            PE OFFSET(1) NUMBITS(1) [],
            BE OFFSET(2) NUMBITS(1) [],
            OE OFFSET(3) NUMBITS(1) []
        ],
        /// `UARTFR`: flags.
        pub FR [
            /// Clear to send.
            CTS OFFSET(0) NUMBITS(1) [],
            /// Data set ready.
            DSR OFFSET(1) NUMBITS(1) [],
            /// Data carrier detect.
            DCD OFFSET(2) NUMBITS(1) [],
            /// The UART is transmitting.
            BUSY OFFSET(3) NUMBITS(1) [],
            /// The receive FIFO is empty.
            RXFE OFFSET(4) NUMBITS(1) [],
            /// The transmit FIFO is full.
            TXFF OFFSET(5) NUMBITS(1) [],
            /// The receive FIFO is full.
            RXFF OFFSET(6) NUMBITS(1) [],
            /// The transmit FIFO is empty.
            TXFE OFFSET(7) NUMBITS(1) [],
            /// Ring indicator.
            RI OFFSET(8) NUMBITS(1) []
        ],
        /// `UARTLCR_H`: line control.
        pub LCR_H [
            /// Send break.
            BRK OFFSET(0) NUMBITS(1) [],
            /// Parity enable.
            PEN OFFSET(1) NUMBITS(1) [],
            /// Even parity.
            EPS OFFSET(2) NUMBITS(1) [],
            /// Two stop bits.
            STP2 OFFSET(3) NUMBITS(1) [],
            /// FIFOs enabled.
            FEN OFFSET(4) NUMBITS(1) [],
            /// Word length: 5 to 8 bits.
            WLEN OFFSET(5) NUMBITS(2) [],
            /// Stick parity.
            SPS OFFSET(7) NUMBITS(1) []
        ],
        /// `UARTCR`: control.
        pub CR [
            /// UART enable.
            UARTEN OFFSET(0) NUMBITS(1) [],
            /// SIR enable.
            SIREN OFFSET(1) NUMBITS(1) [],
            /// SIR low-power mode.
            SIRLP OFFSET(2) NUMBITS(1) [],
            /// Loopback.
            LBE OFFSET(7) NUMBITS(1) [],
            /// Transmit enable.
            TXE OFFSET(8) NUMBITS(1) [],
            /// Receive enable.
            RXE OFFSET(9) NUMBITS(1) [],
            /// Data transmit ready.
            DTR OFFSET(10) NUMBITS(1) [],
            /// Request to send.
            RTS OFFSET(11) NUMBITS(1) [],
            OUT1 OFFSET(12) NUMBITS(1) [],
            OUT2 OFFSET(13) NUMBITS(1) [],
            /// RTS hardware flow control.
            RTSEN OFFSET(14) NUMBITS(1) [],
            /// CTS hardware flow control.
            CTSEN OFFSET(15) NUMBITS(1) []
        ],
        /// `UARTIFLS`: interrupt FIFO level select.
        pub IFLS [
            /// Transmit trigger level.
            TXIFLSEL OFFSET(0) NUMBITS(3) [],
            /// Receive trigger level: eighths of the FIFO.
            RXIFLSEL OFFSET(3) NUMBITS(3) [
                OneEighth = 0,
                OneQuarter = 1,
                Half = 2,
                ThreeQuarters = 3,
                SevenEighths = 4
            ]
        ],
        /// `UARTIMSC`, `UARTRIS`, `UARTMIS`, `UARTICR`: one bit per
        /// interrupt.
        pub INT [
            /// Ring indicator (modem).
            RI OFFSET(0) NUMBITS(1) [],
            /// Clear to send (modem).
            CTS OFFSET(1) NUMBITS(1) [],
            /// Data carrier detect (modem).
            DCD OFFSET(2) NUMBITS(1) [],
            /// Data set ready (modem).
            DSR OFFSET(3) NUMBITS(1) [],
            /// Receive: the FIFO reached its trigger level.
            RX OFFSET(4) NUMBITS(1) [],
            /// Transmit: the FIFO drained to its trigger level.
            TX OFFSET(5) NUMBITS(1) [],
            /// Receive timeout: data sits in the FIFO below the level.
            RT OFFSET(6) NUMBITS(1) [],
            /// Framing error.
            FE OFFSET(7) NUMBITS(1) [],
            /// Parity error.
            PE OFFSET(8) NUMBITS(1) [],
            /// Break.
            BE OFFSET(9) NUMBITS(1) [],
            /// Overrun.
            OE OFFSET(10) NUMBITS(1) []
        ]
    }
}

/// Register offsets in the PL011's 4 KiB page.
pub mod reg {
    /// `UARTDR`: data.
    pub const DR: u64 = 0x000;
    /// `UARTRSR` (read) / `UARTECR` (write): receive status, error clear.
    pub const RSR_ECR: u64 = 0x004;
    /// `UARTFR`: flags (read only).
    pub const FR: u64 = 0x018;
    /// `UARTILPR`: IrDA low-power counter.
    pub const ILPR: u64 = 0x020;
    /// `UARTIBRD`: integer baud rate divisor.
    pub const IBRD: u64 = 0x024;
    /// `UARTFBRD`: fractional baud rate divisor.
    pub const FBRD: u64 = 0x028;
    /// `UARTLCR_H`: line control.
    pub const LCR_H: u64 = 0x02c;
    /// `UARTCR`: control.
    pub const CR: u64 = 0x030;
    /// `UARTIFLS`: interrupt FIFO level select.
    pub const IFLS: u64 = 0x034;
    /// `UARTIMSC`: interrupt mask set/clear.
    pub const IMSC: u64 = 0x038;
    /// `UARTRIS`: raw interrupt status (read only).
    pub const RIS: u64 = 0x03c;
    /// `UARTMIS`: masked interrupt status (read only).
    pub const MIS: u64 = 0x040;
    /// `UARTICR`: interrupt clear (write only).
    pub const ICR: u64 = 0x044;
    /// `UARTDMACR`: DMA control.
    pub const DMACR: u64 = 0x048;
    /// `UARTPeriphID0`, the first identification register; they run to
    /// `UARTPCellID3` at 0xffc.
    pub const ID: u64 = 0xfe0;
}

/// Bytes the receive FIFO holds.
pub const FIFO_DEPTH: usize = 32;

/// `UARTCR` at reset: TXE, RXE.
pub const CR_RESET: u32 = 0x300;
/// `UARTIFLS` at reset: both trigger levels half way.
pub const IFLS_RESET: u32 = 0x12;

/// Every interrupt bit of `UARTIMSC`, `UARTRIS` and `UARTICR`.
const INT_ALL: u32 = 0x7ff;

/// `UARTPeriphID0..3`, `UARTPCellID0..3`: a PL011 r1p5, as QEMU's.
const ID: [u32; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// One VM's PL011 (see the module documentation).
#[derive(Clone, Debug)]
pub struct Pl011 {
    /// The receive FIFO, a ring: `rx_len` bytes from `rx_head`.
    rx: [u8; FIFO_DEPTH],
    rx_head: usize,
    rx_len: usize,
    /// A byte was lost since the last read of `UARTDR`: the next read
    /// says so (OE).
    overrun: bool,
    rsr: LocalRegisterCopy<u32, RSR::Register>,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: LocalRegisterCopy<u32, LCR_H::Register>,
    cr: LocalRegisterCopy<u32, CR::Register>,
    ifls: LocalRegisterCopy<u32, IFLS::Register>,
    imsc: LocalRegisterCopy<u32, INT::Register>,
    ris: LocalRegisterCopy<u32, INT::Register>,
    dmacr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// A PL011 out of reset: FIFO empty, no interrupt, `UARTCR` 0x300,
    /// `UARTIFLS` 0x12.
    pub const fn new() -> Self {
        Self {
            rx: [0; FIFO_DEPTH],
            rx_head: 0,
            rx_len: 0,
            overrun: false,
            rsr: LocalRegisterCopy::new(0),
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: LocalRegisterCopy::new(0),
            cr: LocalRegisterCopy::new(CR_RESET),
            ifls: LocalRegisterCopy::new(IFLS_RESET),
            imsc: LocalRegisterCopy::new(0),
            ris: LocalRegisterCopy::new(0),
            dmacr: 0,
        }
    }

    /// Bytes waiting in the receive FIFO.
    pub fn rx_len(&self) -> usize {
        self.rx_len
    }

    /// Whether the receive FIFO takes another byte.
    pub fn rx_room(&self) -> bool {
        self.rx_len < FIFO_DEPTH
    }

    /// The interrupt output: some unmasked interrupt is pending
    /// (`UARTMIS != 0`). What the interrupt controller samples.
    pub fn irq_level(&self) -> bool {
        self.mis() != 0
    }

    /// A byte arrives on the line: into the receive FIFO, with the
    /// interrupts that follows. `false` if the FIFO was full: the byte is
    /// lost, an overrun is recorded (`UARTRSR.OE`, OERIS, OE in the next
    /// `UARTDR` read).
    pub fn push_rx(&mut self, b: u8) -> bool {
        if self.rx_len == FIFO_DEPTH {
            self.overrun = true;
            self.rsr.modify(RSR::OE::SET);
            self.ris.modify(INT::OE::SET);
            return false;
        }
        self.rx[(self.rx_head + self.rx_len) % FIFO_DEPTH] = b;
        self.rx_len += 1;
        if self.rx_len >= self.rx_level() {
            self.ris.modify(INT::RX::SET);
        }
        self.data_sits();
        true
    }

    /// The guest reads `size` bytes at `off` (see the module documentation
    /// for what is accepted); a read of `UARTDR` takes a byte from the FIFO.
    pub fn read(&mut self, off: u64, size: u64) -> u32 {
        if !Self::accepted(off, size) {
            return 0;
        }
        let v = match off {
            reg::DR => self.pop_rx(),
            reg::RSR_ECR => self.rsr.get(),
            reg::FR => self.fr(),
            reg::ILPR => self.ilpr,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h.get(),
            reg::CR => self.cr.get(),
            reg::IFLS => self.ifls.get(),
            reg::IMSC => self.imsc.get(),
            reg::RIS => self.ris.get(),
            reg::MIS => self.mis(),
            reg::DMACR => self.dmacr,
            reg::ID..=0xffc => ID[((off - reg::ID) / 4) as usize],
            _ => 0,
        };
        v & Self::size_mask(size)
    }

    /// The guest writes `value`'s low `size` bytes at `off` (see the module
    /// documentation for what is accepted). Returns the byte to transmit
    /// when it wrote `UARTDR`.
    pub fn write(&mut self, off: u64, size: u64, value: u32) -> Option<u8> {
        if !Self::accepted(off, size) {
            return None;
        }
        let v = value & Self::size_mask(size);
        match off {
            reg::DR => {
                // Out at once: the transmit FIFO drains through its trigger
                // level.
                self.ris.modify(INT::TX::SET);
                return Some(v as u8);
            }
            reg::RSR_ECR => self.rsr.set(0),
            reg::ILPR => self.ilpr = v & 0xff,
            reg::IBRD => self.ibrd = v & 0xffff,
            reg::FBRD => self.fbrd = v & 0x3f,
            reg::LCR_H => self.lcr_h.set(v & 0xff),
            reg::CR => self.cr.set(v & 0xff87),
            reg::IFLS => self.ifls.set(v & 0x3f),
            reg::IMSC => self.imsc.set(v & INT_ALL),
            reg::ICR => self.ris.set(self.ris.get() & !v),
            reg::DMACR => self.dmacr = v & 0x7,
            _ => {}
        }
        None
    }

    /// An access the model answers: 1, 2 or 4 bytes at a multiple of 4 in
    /// the page.
    fn accepted(off: u64, size: u64) -> bool {
        matches!(size, 1 | 2 | 4) && off.is_multiple_of(4) && off < 0x1000
    }

    /// The bits an access of `size` bytes reaches.
    fn size_mask(size: u64) -> u32 {
        match size {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        }
    }

    /// `UARTMIS`.
    fn mis(&self) -> u32 {
        self.ris.get() & self.imsc.get()
    }

    /// `UARTFR`: the receive FIFO's state; the transmitter is always empty
    /// and idle.
    fn fr(&self) -> u32 {
        let mut fr = LocalRegisterCopy::<u32, FR::Register>::new(0);
        fr.modify(FR::TXFE::SET);
        if self.rx_len == 0 {
            fr.modify(FR::RXFE::SET);
        }
        if self.rx_len == FIFO_DEPTH {
            fr.modify(FR::RXFF::SET);
        }
        fr.get()
    }

    /// Bytes in the FIFO that raise RXRIS: the trigger level with FEN set,
    /// one byte without.
    pub fn rx_level(&self) -> usize {
        if !self.lcr_h.is_set(LCR_H::FEN) {
            return 1;
        }
        use IFLS::RXIFLSEL::Value as Level;
        match self.ifls.read_as_enum(IFLS::RXIFLSEL) {
            Some(Level::OneEighth) => FIFO_DEPTH / 8,
            Some(Level::OneQuarter) => FIFO_DEPTH / 4,
            Some(Level::ThreeQuarters) => FIFO_DEPTH * 3 / 4,
            Some(Level::SevenEighths) => FIFO_DEPTH * 7 / 8,
            Some(Level::Half) | None => FIFO_DEPTH / 2,
        }
    }

    /// The receive timeout, without time: data below the trigger level
    /// raises RTRIS at once; an empty FIFO clears it.
    fn data_sits(&mut self) {
        if self.rx_len == 0 {
            self.ris.modify(INT::RT::CLEAR);
        } else if self.rx_len < self.rx_level() {
            self.ris.modify(INT::RT::SET);
        }
    }

    /// A read of `UARTDR`: the oldest byte (with OE after an overrun), or 0
    /// from an empty FIFO.
    fn pop_rx(&mut self) -> u32 {
        if self.rx_len == 0 {
            return 0;
        }
        let b = self.rx[self.rx_head];
        self.rx_head = (self.rx_head + 1) % FIFO_DEPTH;
        self.rx_len -= 1;
        let mut dr = LocalRegisterCopy::<u32, fields::DR::Register>::new(0);
        dr.write(fields::DR::DATA.val(u32::from(b)));
        if core::mem::take(&mut self.overrun) {
            dr.modify(fields::DR::OE::SET);
        }
        if self.rx_len < self.rx_level() {
            self.ris.modify(INT::RX::CLEAR);
        }
        self.data_sits();
        dr.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RXRIS: u32 = 1 << 4;
    const TXRIS: u32 = 1 << 5;
    const RTRIS: u32 = 1 << 6;
    const OERIS: u32 = 1 << 10;
    const RXFE: u32 = 1 << 4;
    const TXFF: u32 = 1 << 5;
    const RXFF: u32 = 1 << 6;
    const TXFE: u32 = 1 << 7;
    const BUSY: u32 = 1 << 3;
    const FEN: u32 = 1 << 4;

    fn rd(u: &mut Pl011, off: u64) -> u32 {
        u.read(off, 4)
    }

    fn wr(u: &mut Pl011, off: u64, v: u32) -> Option<u8> {
        u.write(off, 4, v)
    }

    /// A PL011 with FIFOs on (8-bit words) and the receive level at
    /// `rxiflsel`.
    fn with_fifo(rxiflsel: u32) -> Pl011 {
        let mut u = Pl011::new();
        wr(&mut u, reg::LCR_H, 0x70);
        wr(&mut u, reg::IFLS, rxiflsel << 3 | 0x2);
        u
    }

    #[test]
    fn reset_values() {
        let mut u = Pl011::new();
        assert_eq!(rd(&mut u, reg::CR), 0x300);
        assert_eq!(rd(&mut u, reg::IFLS), 0x12);
        assert_eq!(rd(&mut u, reg::FR), RXFE | TXFE);
        for off in [
            reg::DR,
            reg::RSR_ECR,
            reg::ILPR,
            reg::IBRD,
            reg::FBRD,
            reg::LCR_H,
            reg::IMSC,
            reg::RIS,
            reg::MIS,
            reg::ICR,
            reg::DMACR,
        ] {
            assert_eq!(rd(&mut u, off), 0, "offset {off:#x}");
        }
        assert!(!u.irq_level());
        assert_eq!(u.rx_len(), 0);
    }

    #[test]
    fn identification_registers_read_as_a_pl011() {
        let mut u = Pl011::new();
        let ids: Vec<u32> = (0..8).map(|i| rd(&mut u, 0xfe0 + 4 * i)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        // Read only.
        wr(&mut u, 0xfe0, 0xff);
        assert_eq!(rd(&mut u, 0xfe0), 0x11);
    }

    #[test]
    fn configuration_registers_keep_the_bits_they_have() {
        let mut u = Pl011::new();
        for (off, written, kept) in [
            (reg::ILPR, 0xffff_ffff, 0xff),
            (reg::IBRD, 0xffff_ffff, 0xffff),
            (reg::FBRD, 0xffff_ffff, 0x3f),
            (reg::LCR_H, 0xffff_ffff, 0xff),
            (reg::CR, 0xffff_ffff, 0xff87),
            (reg::IFLS, 0xffff_ffff, 0x3f),
            (reg::IMSC, 0xffff_ffff, 0x7ff),
            (reg::DMACR, 0xffff_ffff, 0x7),
        ] {
            assert_eq!(wr(&mut u, off, written), None);
            assert_eq!(rd(&mut u, off), kept, "offset {off:#x}");
            wr(&mut u, off, 0);
            assert_eq!(rd(&mut u, off), 0, "offset {off:#x}");
        }
        wr(&mut u, reg::IBRD, 13);
        wr(&mut u, reg::FBRD, 1);
        wr(&mut u, reg::CR, 0x301);
        assert_eq!((rd(&mut u, reg::IBRD), rd(&mut u, reg::FBRD)), (13, 1));
        assert_eq!(rd(&mut u, reg::CR), 0x301);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut u = Pl011::new();
        for off in [reg::FR, reg::RIS, reg::MIS] {
            let before = rd(&mut u, off);
            wr(&mut u, off, 0xffff_ffff);
            assert_eq!(rd(&mut u, off), before, "offset {off:#x}");
        }
        assert_eq!(rd(&mut u, reg::IMSC), 0);
    }

    #[test]
    fn transmit_returns_the_byte_and_never_fills() {
        let mut u = Pl011::new();
        assert_eq!(wr(&mut u, reg::DR, 0x141), Some(0x41));
        assert_eq!(u.write(reg::DR, 1, u32::from(b'z')), Some(b'z'));
        assert_eq!(u.write(reg::DR, 2, 0x0a), Some(b'\n'));
        let fr = rd(&mut u, reg::FR);
        assert_eq!(fr & (TXFF | BUSY), 0);
        assert_eq!(fr & TXFE, TXFE);
        // Sent even with the UART disabled (as QEMU's PL011).
        wr(&mut u, reg::CR, 0);
        assert_eq!(wr(&mut u, reg::DR, u32::from(b'x')), Some(b'x'));
    }

    #[test]
    fn received_bytes_come_out_in_order_with_the_flags() {
        let mut u = Pl011::new();
        for b in b"hi!" {
            assert!(u.push_rx(*b));
        }
        assert_eq!(rd(&mut u, reg::FR) & (RXFE | RXFF), 0);
        assert_eq!(rd(&mut u, reg::DR), u32::from(b'h'));
        assert_eq!(u.read(reg::DR, 1), u32::from(b'i'));
        assert_eq!(u.read(reg::DR, 2), u32::from(b'!'));
        assert_eq!(rd(&mut u, reg::FR) & RXFE, RXFE);
        // Empty: 0, and nothing changes.
        assert_eq!(rd(&mut u, reg::DR), 0);
        assert_eq!(u.rx_len(), 0);
    }

    #[test]
    fn the_fifo_wraps_around() {
        let mut u = Pl011::new();
        let mut next = 0u8;
        let mut expect = 0u8;
        for _ in 0..10 {
            for _ in 0..20 {
                assert!(u.push_rx(next));
                next = next.wrapping_add(1);
            }
            for _ in 0..20 {
                assert_eq!(rd(&mut u, reg::DR), u32::from(expect));
                expect = expect.wrapping_add(1);
            }
        }
    }

    #[test]
    fn a_full_fifo_overruns() {
        let mut u = Pl011::new();
        wr(&mut u, reg::IMSC, OERIS);
        for i in 0..FIFO_DEPTH {
            assert!(u.push_rx(i as u8));
        }
        assert_eq!(rd(&mut u, reg::FR) & RXFF, RXFF);
        assert!(!u.irq_level());
        assert!(!u.push_rx(0xee), "the 33rd byte is lost");
        assert_eq!(u.rx_len(), FIFO_DEPTH);
        assert_eq!(rd(&mut u, reg::RSR_ECR), 1 << 3);
        assert_eq!(rd(&mut u, reg::RIS) & OERIS, OERIS);
        assert!(u.irq_level());
        // The next read says so, once; the bytes kept are intact.
        assert_eq!(rd(&mut u, reg::DR), 1 << 11);
        assert_eq!(rd(&mut u, reg::DR), 1);
        assert_eq!(rd(&mut u, reg::FR) & RXFF, 0);
        // RSR's OE stays until UARTECR is written; OERIS until UARTICR.
        assert_eq!(rd(&mut u, reg::RSR_ECR), 1 << 3);
        wr(&mut u, reg::RSR_ECR, 0);
        assert_eq!(rd(&mut u, reg::RSR_ECR), 0);
        wr(&mut u, reg::ICR, OERIS);
        assert!(!u.irq_level());
        for i in 2..FIFO_DEPTH {
            assert_eq!(rd(&mut u, reg::DR), i as u32);
        }
    }

    #[test]
    fn without_fifos_every_byte_raises_rx() {
        // FEN clear (reset): the level is one byte; no timeout interrupt.
        let mut u = Pl011::new();
        assert_eq!(u.rx_level(), 1);
        u.push_rx(b'a');
        assert_eq!(rd(&mut u, reg::RIS) & (RXRIS | RTRIS), RXRIS);
        u.push_rx(b'b');
        rd(&mut u, reg::DR);
        assert_eq!(rd(&mut u, reg::RIS) & RXRIS, RXRIS, "a byte is still there");
        rd(&mut u, reg::DR);
        assert_eq!(rd(&mut u, reg::RIS) & (RXRIS | RTRIS), 0);
    }

    #[test]
    fn trigger_levels() {
        for (sel, level) in [(0, 4), (1, 8), (2, 16), (3, 24), (4, 28), (5, 16), (7, 16)] {
            let u = with_fifo(sel);
            assert_eq!(u.rx_level(), level, "RXIFLSEL {sel}");
        }
        let mut u = with_fifo(0);
        wr(&mut u, reg::LCR_H, 0x60);
        assert_eq!(u.rx_level(), 1, "FEN clear");
        assert_eq!(rd(&mut u, reg::LCR_H) & FEN, 0);
    }

    #[test]
    fn rx_at_the_level_timeout_below_it() {
        // Level 4 bytes (1/8).
        let mut u = with_fifo(0);
        wr(&mut u, reg::IMSC, RXRIS | RTRIS);
        u.push_rx(b'1');
        assert_eq!(rd(&mut u, reg::RIS) & (RXRIS | RTRIS), RTRIS, "one byte sits");
        assert_eq!(rd(&mut u, reg::MIS), RTRIS);
        assert!(u.irq_level());
        for b in b"234" {
            u.push_rx(*b);
        }
        assert_eq!(rd(&mut u, reg::RIS) & RXRIS, RXRIS, "four bytes reach the level");
        u.push_rx(b'5');
        // Reading down below the level clears RX; data left below it keeps
        // the timeout up.
        rd(&mut u, reg::DR);
        assert_eq!(rd(&mut u, reg::RIS) & RXRIS, RXRIS, "still 4 bytes");
        rd(&mut u, reg::DR);
        assert_eq!(rd(&mut u, reg::RIS) & (RXRIS | RTRIS), RTRIS);
        rd(&mut u, reg::DR);
        rd(&mut u, reg::DR);
        assert_eq!(rd(&mut u, reg::RIS) & RTRIS, RTRIS);
        rd(&mut u, reg::DR);
        assert_eq!(rd(&mut u, reg::FR) & RXFE, RXFE);
        assert_eq!(rd(&mut u, reg::RIS), 0, "an empty FIFO clears both");
        assert!(!u.irq_level());
    }

    #[test]
    fn icr_clears_rx_and_timeout_until_the_next_event() {
        let mut u = with_fifo(0);
        wr(&mut u, reg::IMSC, RXRIS | RTRIS);
        for b in b"abcde" {
            u.push_rx(*b);
        }
        assert_eq!(rd(&mut u, reg::RIS) & (RXRIS | RTRIS), RXRIS | RTRIS);
        wr(&mut u, reg::ICR, RXRIS | RTRIS);
        assert_eq!(rd(&mut u, reg::RIS), 0);
        assert!(!u.irq_level(), "cleared although five bytes sit at the level");
        // The next byte above the level raises RX again.
        u.push_rx(b'f');
        assert_eq!(rd(&mut u, reg::RIS), RXRIS);
        wr(&mut u, reg::ICR, RXRIS);
        // A read leaving data below the level raises the timeout.
        rd(&mut u, reg::DR);
        rd(&mut u, reg::DR);
        assert_eq!(rd(&mut u, reg::RIS), 0, "4 left: at the level, nothing new");
        rd(&mut u, reg::DR);
        assert_eq!(rd(&mut u, reg::RIS), RTRIS);
    }

    #[test]
    fn tx_interrupt_on_each_drain_cleared_by_icr() {
        let mut u = Pl011::new();
        assert_eq!(rd(&mut u, reg::RIS) & TXRIS, 0, "not at reset");
        wr(&mut u, reg::IMSC, TXRIS);
        assert!(!u.irq_level());
        wr(&mut u, reg::DR, u32::from(b'a'));
        assert_eq!(rd(&mut u, reg::RIS), TXRIS);
        assert_eq!(rd(&mut u, reg::MIS), TXRIS);
        assert!(u.irq_level());
        // Cleared, it stays clear: the FIFO stays empty, nothing drains.
        wr(&mut u, reg::ICR, TXRIS);
        for _ in 0..3 {
            assert_eq!(rd(&mut u, reg::RIS), 0);
            assert_eq!(rd(&mut u, reg::FR) & TXFE, TXFE);
        }
        assert!(!u.irq_level());
        wr(&mut u, reg::DR, u32::from(b'b'));
        assert!(u.irq_level());
        // Masked: raw status only.
        wr(&mut u, reg::IMSC, 0);
        assert_eq!((rd(&mut u, reg::RIS), rd(&mut u, reg::MIS)), (TXRIS, 0));
        assert!(!u.irq_level());
    }

    #[test]
    fn icr_clears_only_the_bits_written() {
        let mut u = Pl011::new();
        wr(&mut u, reg::IMSC, 0x7ff);
        wr(&mut u, reg::DR, 0);
        u.push_rx(1);
        assert_eq!(rd(&mut u, reg::RIS), TXRIS | RXRIS);
        wr(&mut u, reg::ICR, RXRIS);
        assert_eq!(rd(&mut u, reg::RIS), TXRIS);
        wr(&mut u, reg::ICR, 0x7ff);
        assert_eq!(rd(&mut u, reg::RIS), 0);
        assert_eq!(rd(&mut u, reg::ICR), 0, "write only");
    }

    #[test]
    fn narrow_and_odd_accesses() {
        let mut u = Pl011::new();
        // A byte or halfword at a register reaches its low bits.
        assert_eq!(u.read(reg::CR, 1), 0x00);
        assert_eq!(u.read(reg::CR, 2), 0x300);
        assert_eq!(u.read(reg::FR, 1), RXFE | TXFE);
        u.write(reg::IBRD, 1, 0x1234);
        assert_eq!(rd(&mut u, reg::IBRD), 0x34);
        u.write(reg::IBRD, 2, 0xff_1234);
        assert_eq!(rd(&mut u, reg::IBRD), 0x1234);
        // Not at a register's start, an 8-byte access, beyond the page:
        // read 0, written to no effect.
        u.push_rx(b'q');
        for (off, size) in [(reg::FR + 1, 1), (reg::CR + 2, 2), (reg::DR, 8), (reg::DR + 1, 1)] {
            assert_eq!(u.read(off, size), 0, "{off:#x}/{size}");
            assert_eq!(u.write(off, size, 0xffff_ffff), None);
        }
        assert_eq!(u.read(0x1000, 4), 0);
        assert_eq!(u.rx_len(), 1, "no access above popped the FIFO");
        assert_eq!(rd(&mut u, reg::IBRD), 0x1234);
        assert_eq!(rd(&mut u, reg::CR), 0x300);
        // Offsets with no register.
        for off in [0x8, 0xc, 0x10, 0x14, 0x1c, 0x4c, 0x100, 0xfdc] {
            assert_eq!(rd(&mut u, off), 0, "{off:#x}");
            assert_eq!(wr(&mut u, off, 0xffff_ffff), None);
        }
        assert_eq!(rd(&mut u, reg::DR), u32::from(b'q'));
    }
}
