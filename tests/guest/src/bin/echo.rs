//! `echo`: the emulated PL011 as an interactive console. Prints a prompt
//! with no newline (`echo> `), reads a line by polling UARTFR.RXFE and
//! UARTDR, echoing each character, and checks the registers a driver uses
//! on the way. The harness types the line (`tests/qemu.rs`,
//! `echo_input_*`): `hello vm<N>` and a carriage return, N being this VM's
//! id (`vm=N` in the bootargs), so that with two VMs each checks it got
//! its own line.
//!
//! Checks: 1 `reset_state` (UARTFR: TXFE and RXFE set, TXFF and BUSY
//! clear; UARTCR 0x300, UARTIFLS 0x12, UARTIMSC 0; the identification
//! registers of a PL011), 2 `config_readback` (IBRD, FBRD, LCR_H with FEN,
//! IFLS with the receive level at 1/8 = 4 bytes, CR read back), 3
//! `tx_interrupt` (after a transmission RIS and MIS show TX; UARTICR clears
//! it and it stays clear), 4 `rx_idle` (with RX and RT unmasked and no
//! input yet, neither is pending and MIS is 0), 5 `rx_pending` (once the
//! first byte arrived, MIS shows RX or RT, within RIS & IMSC),
//! 6 `rx_level` (with 4 bytes or more waiting, RX is raised), 7 `line`
//! (the line read is `hello vm<N>`), 8 `rx_cleared` (the FIFO read empty:
//! RXFE set, RX and RT clear, MIS 0), 9 `dr_empty` (UARTDR reads 0 from
//! an empty FIFO). Every wait for input gives up after 30 s (a FAIL,
//! not a hang).
//!
//! The waits yield the CPU (`HYP_YIELD`: see `smp::wait_until`), so two
//! VMs on one CPU both get to run.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("echo: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use guest::abi::pl011::*;
    use guest::rt::console::{putb, try_getb, uart_read, uart_write};
    use guest::rt::smp::wait_until_for;
    use guest::rt::{check_eq, platform, test_result_with};
    use guest::{print, println};

    guest::guest_main!("echo", 1900, main);

    /// How long the guest waits for input before it fails (µs).
    const INPUT_WAIT_US: u64 = 30_000_000;
    /// The longest line kept.
    const LINE: usize = 32;
    /// The receive trigger level set (RXIFLSEL 1/8: 4 bytes of 32).
    const RX_LEVEL_1_8: u32 = 0 << 3;
    /// The transmit trigger level set (TXIFLSEL 1/2).
    const TX_LEVEL_1_2: u32 = 2;

    fn rx_waiting() -> bool {
        uart_read(FR) & FR_RXFE == 0
    }

    fn main(_dtb: u64) {
        let vm = platform::vm_id().unwrap_or(1);

        // 1: out of reset (the runtime has only printed).
        let fr = uart_read(FR);
        let (cr, ifls, imsc) = (uart_read(CR), uart_read(IFLS), uart_read(IMSC));
        let mut ids = [0u32; 8];
        for (i, id) in ids.iter_mut().enumerate() {
            *id = uart_read(ID + 4 * i);
        }
        let fr_ok = fr & (FR_TXFE | FR_RXFE) == FR_TXFE | FR_RXFE && fr & (FR_TXFF | FR_BUSY) == 0;
        test_result_with(
            1,
            "reset_state",
            fr_ok && cr == CR_RESET && ifls == IFLS_RESET && imsc == 0 && ids == IDS,
            format_args!("FR {fr:#x}, CR {cr:#x}, IFLS {ifls:#x}, IMSC {imsc:#x}, IDs {ids:x?}"),
        );

        // 2: the configuration a driver writes reads back.
        uart_write(IBRD, 13);
        uart_write(FBRD, 1);
        uart_write(LCR_H, LCR_H_WLEN8 | LCR_H_FEN);
        uart_write(IFLS, RX_LEVEL_1_8 | TX_LEVEL_1_2);
        uart_write(CR, CR_RESET | 1);
        let got =
            [uart_read(IBRD), uart_read(FBRD), uart_read(LCR_H), uart_read(IFLS), uart_read(CR)];
        let want = [13, 1, LCR_H_WLEN8 | LCR_H_FEN, RX_LEVEL_1_8 | TX_LEVEL_1_2, CR_RESET | 1];
        check_eq(2, "config_readback", got, want);

        // 3: TX is raised when a byte drains, cleared by ICR, and stays
        // clear while nothing is sent.
        uart_write(IMSC, INT_TX);
        println!("echo: transmit interrupt");
        let (ris1, mis1) = (uart_read(RIS), uart_read(MIS));
        uart_write(ICR, INT_TX);
        let (ris2, mis2, ris3) = (uart_read(RIS), uart_read(MIS), uart_read(RIS));
        test_result_with(
            3,
            "tx_interrupt",
            ris1 & INT_TX != 0
                && mis1 == INT_TX
                && ris2 & INT_TX == 0
                && mis2 == 0
                && ris3 & INT_TX == 0,
            format_args!(
                "after a byte RIS {ris1:#x} MIS {mis1:#x}; after ICR RIS {ris2:#x} MIS {mis2:#x}, then RIS {ris3:#x}"
            ),
        );

        // 4: receive interrupts unmasked, nothing typed yet.
        uart_write(IMSC, INT_RX | INT_RT);
        let (ris, mis) = (uart_read(RIS), uart_read(MIS));
        test_result_with(
            4,
            "rx_idle",
            ris & (INT_RX | INT_RT) == 0 && mis == 0 && !rx_waiting(),
            format_args!("RIS {ris:#x}, MIS {mis:#x}"),
        );

        // The prompt, with no newline: it must show before anything is
        // typed (the harness waits for it). Checks 5 and 6 are taken on the
        // way and reported after the line, which stays the prompt's.
        print!("echo> ");
        let arrived = wait_until_for(rx_waiting, INPUT_WAIT_US);

        // 5: the first byte is pending as RX or RT, and MIS says so. More
        // bytes may arrive between the reads, which only adds to RIS: MIS
        // is read first, then it must be within RIS & IMSC.
        let (mis5, ris5, imsc5) = (uart_read(MIS), uart_read(RIS), uart_read(IMSC));
        let pending =
            arrived && mis5 & (INT_RX | INT_RT) != 0 && mis5 & !imsc5 == 0 && ris5 & mis5 == mis5;

        // 6: the line's bytes come together; with 4 waiting, RX is raised.
        let at_level = wait_until_for(|| uart_read(RIS) & INT_RX != 0, INPUT_WAIT_US);
        let mis6 = uart_read(MIS);

        // 7: read and echo the line, up to a carriage return or newline.
        let mut line = [0u8; LINE];
        let mut len = 0;
        let mut ended = false;
        while !ended && wait_until_for(rx_waiting, INPUT_WAIT_US) {
            let Some(b) = try_getb() else { continue };
            if b == b'\r' || b == b'\n' {
                ended = true;
            } else if len < LINE {
                putb(b);
                line[len] = b;
                len += 1;
            }
        }
        println!();
        test_result_with(
            5,
            "rx_pending",
            pending,
            format_args!("input {arrived}, RIS {ris5:#x}, MIS {mis5:#x}, IMSC {imsc5:#x}"),
        );
        test_result_with(
            6,
            "rx_level",
            at_level && mis6 & INT_RX != 0,
            format_args!("RX seen {at_level}, MIS {mis6:#x}"),
        );
        let mut want = *b"hello vm?";
        want[8] = b'0' + (vm % 10) as u8;
        let got = &line[..len];
        test_result_with(
            7,
            "line",
            ended && got == want,
            format_args!(
                "got {:?}{}, want {:?}",
                core::str::from_utf8(got).unwrap_or("<not UTF-8>"),
                if ended { "" } else { " (no end of line)" },
                core::str::from_utf8(&want).unwrap_or("")
            ),
        );

        // 8: all read: nothing pending.
        let (fr, ris, mis) = (uart_read(FR), uart_read(RIS), uart_read(MIS));
        test_result_with(
            8,
            "rx_cleared",
            fr & FR_RXFE != 0 && ris & (INT_RX | INT_RT) == 0 && mis == 0,
            format_args!("FR {fr:#x}, RIS {ris:#x}, MIS {mis:#x}"),
        );

        // 9: UARTDR of an empty FIFO.
        let (dr, fr) = (uart_read(DR), uart_read(FR));
        test_result_with(
            9,
            "dr_empty",
            dr == 0 && fr & FR_RXFE != 0,
            format_args!("DR {dr:#x}, FR {fr:#x}"),
        );
        uart_write(IMSC, 0);
    }
}
