//! `irq`: the virtual GIC and the virtual timer.
//!
//! Checks: the distributor (and on GICv3 each vCPU's redistributor)
//! identifies itself; the virtual timer, re-armed by compare value,
//! interrupts at 100 Hz for 300 ms with the count within 15 % (at least 2
//! ticks) of what the elapsed time allows; `WFI` sleeps until the timer fires 20 ms later and no sooner;
//! with 2 or more vCPUs, 200 rounds of SGI ping-pong between vCPU 0 and
//! vCPU 1 (whether they share a CPU or not); the PL011's SPI is raised
//! by its transmit interrupt and lowered by `UARTICR`; no interrupt
//! arrives that was not asked for; the host GIC's other pages (QEMU `virt`'s GICv2 GICH and
//! the ITS) are not reachable.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("irq: a guest image; it runs under the hypervisor");
}

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

    use guest::abi::pl011;
    use guest::println;
    use guest::rt::console::{uart_read, uart_write};
    use guest::rt::exception::probe_read;
    use guest::rt::gic::{self, Version, GICD, GICR, UART_SPI, VTIMER_PPI};
    use guest::rt::smp::{self, cpu_index};
    use guest::rt::{check_eq, platform, start_secondaries, test_result_with, timer};

    guest::guest_main!("irq", 0, main);

    const PING: u32 = 1;
    const PONG: u32 = 2;
    const ROUNDS: u32 = 200;

    static TICKS: AtomicU32 = AtomicU32::new(0);
    static PERIOD: AtomicU64 = AtomicU64::new(0);
    /// The periodic tick's current deadline (virtual counter).
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static ONESHOT: AtomicBool = AtomicBool::new(false);
    static PINGS: AtomicU32 = AtomicU32::new(0);
    static PONGS: AtomicU32 = AtomicU32::new(0);
    static UNEXPECTED: AtomicU32 = AtomicU32::new(0);
    static PONG_READY: AtomicBool = AtomicBool::new(false);
    static DONE: AtomicBool = AtomicBool::new(false);
    static UART_IRQS: AtomicU32 = AtomicU32::new(0);
    /// UARTMIS as the PL011's handler found it, OR-ed.
    static UART_MIS: AtomicU32 = AtomicU32::new(0);

    fn handler(id: u32) {
        match id {
            VTIMER_PPI => {
                TICKS.fetch_add(1, Ordering::SeqCst);
                if ONESHOT.load(Ordering::SeqCst) {
                    gic::vtimer_stop();
                } else {
                    let next = NEXT.fetch_add(PERIOD.load(Ordering::SeqCst), Ordering::SeqCst);
                    gic::vtimer_at(next + PERIOD.load(Ordering::SeqCst));
                }
            }
            // vCPU 1 answers each ping; vCPU 0 counts the answers.
            PING if cpu_index() == 1 => {
                PINGS.fetch_add(1, Ordering::SeqCst);
                gic::send_sgi(PONG, 1 << 0);
            }
            PONG if cpu_index() == 0 => {
                PONGS.fetch_add(1, Ordering::SeqCst);
            }
            // The PL011: what is pending is cleared (UARTICR), which
            // lowers the SPI before the end of the interrupt.
            UART_SPI => {
                UART_IRQS.fetch_add(1, Ordering::SeqCst);
                let mis = uart_read(pl011::MIS);
                UART_MIS.fetch_or(mis, Ordering::SeqCst);
                uart_write(pl011::ICR, mis);
            }
            _ => {
                UNEXPECTED.fetch_add(1, Ordering::SeqCst);
                println!("irq: unexpected INTID {id} on vCPU {}", cpu_index());
            }
        }
    }

    fn identity() {
        let v = gic::version();
        println!("irq: GIC {v:?}");
        let (pidr2, expect) = match v {
            Version::V3 => (gic::read32(GICD + 0xFFE8), 3),
            Version::V2 => (gic::read32(GICD + 0xFE8), 2),
        };
        let mut ok = (pidr2 >> 4) & 0xf == expect;
        let typer = gic::read32(GICD + 4);
        ok &= typer & 0x1f >= 1;
        if v == Version::V3 {
            for c in 0..platform::cpus_or(1) {
                let t = gic::read32(GICR + c as u64 * 0x2_0000 + 0xC);
                ok &= t == c as u32;
            }
            #[cfg(target_arch = "aarch64")]
            {
                ok &= gic::sre() & 1 == 1;
            }
        }
        test_result_with(1, "gic_identity", ok, format_args!("PIDR2 {pidr2:#x} TYPER {typer:#x}"));
    }

    fn timer_rate() {
        let f = timer::frequency();
        let period = f / 100;
        PERIOD.store(period, Ordering::SeqCst);
        ONESHOT.store(false, Ordering::SeqCst);
        TICKS.store(0, Ordering::SeqCst);
        gic::enable(VTIMER_PPI);
        let t0 = timer::counter();
        let v0 = gic::vcounter();
        NEXT.store(v0 + period, Ordering::SeqCst);
        gic::vtimer_at(v0 + period);
        gic::wait_irqs_until(|| timer::counter() - t0 >= f * 3 / 10);
        gic::vtimer_stop();
        let elapsed = timer::counter() - t0;
        let got = u64::from(TICKS.load(Ordering::SeqCst));
        let want = elapsed / period;
        let slack = (want * 15 / 100).max(2);
        test_result_with(
            2,
            "timer_100hz",
            got + slack >= want && got <= want + 1,
            format_args!("{got} ticks in {} ms, {want} expected", elapsed * 1000 / f),
        );
    }

    fn wfi_wake() {
        let f = timer::frequency();
        ONESHOT.store(true, Ordering::SeqCst);
        TICKS.store(0, Ordering::SeqCst);
        let t0 = timer::counter();
        gic::vtimer_in(f / 50);
        let mut wakeups = 0;
        gic::wait_irqs_until(|| {
            let done = TICKS.load(Ordering::SeqCst) != 0 || wakeups >= 1000;
            wakeups += u32::from(!done);
            done
        });
        let waited = (timer::counter() - t0) * 1000 / f;
        test_result_with(
            3,
            "wfi_woken_by_timer",
            TICKS.load(Ordering::SeqCst) == 1 && (20..1000).contains(&waited) && wakeups <= 3,
            format_args!("{waited} ms, {wakeups} wake-up(s)"),
        );
    }

    fn pong_side(_cpu: usize) {
        gic::init_cpu();
        gic::enable(PING);
        PONG_READY.store(true, Ordering::SeqCst);
        smp::notify();
        gic::wait_irqs_until(|| DONE.load(Ordering::SeqCst));
    }

    fn ping_pong() {
        if platform::cpus_or(1) < 2 {
            return;
        }
        gic::enable(PONG);
        start_secondaries(2, pong_side).expect("vCPU 1 starts");
        smp::wait_until(|| PONG_READY.load(Ordering::SeqCst));
        let t0 = timer::counter();
        for i in 0..ROUNDS {
            gic::send_sgi(PING, 1 << 1);
            gic::wait_irqs_until(|| PONGS.load(Ordering::SeqCst) > i);
        }
        DONE.store(true, Ordering::SeqCst);
        // Wake vCPU 1 from its WFI.
        gic::send_sgi(PING, 1 << 1);
        smp::join_secondaries();
        let us = timer::ticks_to_ns(timer::counter() - t0) / 1000;
        let (pings, pongs) = (PINGS.load(Ordering::SeqCst), PONGS.load(Ordering::SeqCst));
        test_result_with(
            4,
            "sgi_ping_pong",
            pongs == ROUNDS && pings >= ROUNDS,
            format_args!("{pings} pings, {pongs} pongs, {} us a round", us / u64::from(ROUNDS)),
        );
    }

    /// The PL011's SPI: its transmit interrupt unmasked, one byte written
    /// raises it (TXRIS), the handler clears it (UARTICR) and it stays
    /// low; masked again, more output raises nothing.
    fn uart_spi() {
        gic::enable(UART_SPI);
        uart_write(pl011::ICR, 0x7ff);
        uart_write(pl011::IMSC, pl011::INT_TX);
        uart_write(pl011::DR, u32::from(b'*'));
        gic::wait_irqs_until(|| UART_IRQS.load(Ordering::SeqCst) != 0);
        gic::irqs_on();
        let raised = UART_IRQS.load(Ordering::SeqCst);
        let cleared = uart_read(pl011::MIS) == 0 && uart_read(pl011::RIS) & pl011::INT_TX == 0;
        uart_write(pl011::IMSC, 0);
        println!();
        let after = UART_IRQS.load(Ordering::SeqCst);
        gic::irqs_off();
        gic::disable(UART_SPI);
        test_result_with(
            7,
            "uart_spi_raised_and_cleared",
            raised == 1
                && cleared
                && after == 1
                && UART_MIS.load(Ordering::SeqCst) == pl011::INT_TX,
            format_args!(
                "{raised} interrupt(s), then {after}; MIS seen {:#x}, cleared {cleared}",
                UART_MIS.load(Ordering::SeqCst)
            ),
        );
    }

    fn host_gic_hidden() {
        // QEMU virt: GICv2 GICH at 0x0803_0000, GICV at 0x0804_0000, the
        // ITS at 0x0808_0000: nothing there for a guest.
        let mut ok = true;
        for a in [0x0803_0000u64, 0x0808_0000] {
            // SAFETY: device memory in the guest's map; reads only.
            ok &= unsafe { probe_read(a) }.is_err();
        }
        test_result_with(6, "host_gic_unreachable", ok, format_args!(""));
    }

    fn main(_dtb: u64) {
        gic::set_handler(handler);
        gic::init_cpu();
        identity();
        timer_rate();
        wfi_wake();
        ping_pong();
        uart_spi();
        check_eq(5, "no_unexpected_irq", UNEXPECTED.load(Ordering::SeqCst), 0);
        host_gic_hidden();
    }
}
