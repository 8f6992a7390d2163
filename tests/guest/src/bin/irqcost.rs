//! `irqcost`: what interrupts cost the hypervisor, in instructions it
//! executes at EL2 (`HYP_STAT` `EL2_INSTRUCTIONS`: the PMU, exact under
//! QEMU's `-icount`; 0 elsewhere) and in exits. Run on one vCPU; prints
//! one `irqcost:` line per figure (see `docs/PERFORMANCE.md`):
//!
//! - a trapped SGI that delivers nothing (sent to this vCPU with the SGI
//!   disabled): the `ICC_SGI1R_EL1` trap (GICv3) or `GICD_SGIR` write
//!   (GICv2), handled and returned from;
//! - an SGI to itself, enabled: the same, plus the interrupt's injection
//!   into a list register and its fold-back after the guest took it;
//! - a virtual-timer tick at 1 kHz while the guest spins: the physical
//!   timer interrupt's exit and the maintenance exit at its deactivation;
//! - an idle guest ticking at 100 Hz, and a busy one (spinning, no
//!   timer): exits per second.
//!
//! Checks only that each measurement ran (and every sent SGI arrived).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("irqcost: a guest image; it runs under the hypervisor");
}

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use guest::abi::counter;
    use guest::println;
    use guest::rt::gic::{self, VTIMER_PPI};
    use guest::rt::{stat, test_result_with, timer};

    guest::guest_main!("irqcost", 0, main);

    const N: u64 = 1000;
    static SGIS: AtomicU32 = AtomicU32::new(0);
    static TICKS: AtomicU32 = AtomicU32::new(0);
    static PERIOD: AtomicU64 = AtomicU64::new(0);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PERIODIC: AtomicU32 = AtomicU32::new(1);

    fn handler(id: u32) {
        match id {
            VTIMER_PPI => {
                TICKS.fetch_add(1, Ordering::SeqCst);
                if PERIODIC.load(Ordering::SeqCst) == 1 {
                    let p = PERIOD.load(Ordering::SeqCst);
                    let next = NEXT.fetch_add(p, Ordering::SeqCst) + p;
                    gic::vtimer_at(next);
                } else {
                    gic::vtimer_stop();
                }
            }
            _ => {
                SGIS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// (EL2 instructions, sync exits, IRQ exits) now.
    fn sample() -> (u64, u64, u64) {
        (stat(counter::EL2_INSTRUCTIONS), stat(counter::GUEST_EXITS), stat(counter::IRQ_EXITS))
    }

    fn report(what: &str, n: u64, before: (u64, u64, u64), stat_calls: u64) {
        let after = sample();
        // Each HYP_STAT call above is an exit of its own: leave it out.
        let exits = after.1 - before.1 - stat_calls;
        println!(
            "irqcost: {what}: {} EL2 instructions, {}.{:02} sync exits, {}.{:02} IRQ exits each ({n} rounds)",
            (after.0 - before.0) / n,
            exits / n,
            exits * 100 / n % 100,
            (after.2 - before.2) / n,
            (after.2 - before.2) * 100 / n % 100,
        );
    }

    fn main(_dtb: u64) {
        gic::set_handler(handler);
        gic::init_cpu();
        // 1. A trapped SGI that delivers nothing (SGI 5 disabled).
        let s = sample();
        for _ in 0..N {
            gic::send_sgi(5, 1);
        }
        report("trapped SGI, not delivered", N, s, 3);
        // The pending SGI 5 is dropped before the next step.
        gic::disable(5);
        // 2. An SGI to itself, enabled, taken at once.
        gic::enable(6);
        gic::irqs_on();
        let s = sample();
        for _ in 0..N {
            gic::send_sgi(6, 1);
        }
        report("SGI to itself, injected and taken", N, s, 3);
        gic::irqs_off();
        let sgis = u64::from(SGIS.load(Ordering::SeqCst));
        test_result_with(1, "sgis_arrive", sgis == N, format_args!("{sgis} of {N}"));
        // 3. A 1 kHz virtual timer while spinning for 200 ms.
        let f = timer::frequency();
        gic::enable(VTIMER_PPI);
        PERIOD.store(f / 1000, Ordering::SeqCst);
        let v0 = gic::vcounter();
        NEXT.store(v0 + f / 1000, Ordering::SeqCst);
        TICKS.store(0, Ordering::SeqCst);
        let s = sample();
        gic::vtimer_at(v0 + f / 1000);
        gic::irqs_on();
        let t0 = timer::counter();
        while timer::counter() - t0 < f / 5 {}
        gic::irqs_off();
        gic::vtimer_stop();
        let ticks = u64::from(TICKS.load(Ordering::SeqCst)).max(1);
        report("1 kHz timer tick while spinning", ticks, s, 3);
        test_result_with(2, "ticks", ticks >= 100, format_args!("{ticks} ticks in 200 ms"));
        // 4. Exits per second: idle at 100 Hz (WFI between ticks), then
        //    busy with no timer.
        PERIOD.store(f / 100, Ordering::SeqCst);
        let v0 = gic::vcounter();
        NEXT.store(v0 + f / 100, Ordering::SeqCst);
        let s = sample();
        gic::vtimer_at(v0 + f / 100);
        gic::irqs_on();
        let t0 = timer::counter();
        while timer::counter() - t0 < f {
            gic::wfi();
        }
        gic::irqs_off();
        gic::vtimer_stop();
        let e = sample();
        println!(
            "irqcost: idle at 100 Hz: {} sync exits, {} IRQ exits in 1 s, {} sleeps",
            e.1 - s.1 - 3,
            e.2 - s.2,
            stat(counter::SLEEPS)
        );
        let s = sample();
        let t0 = timer::counter();
        while timer::counter() - t0 < f {}
        let e = sample();
        println!(
            "irqcost: busy, no timer: {} sync exits, {} IRQ exits in 1 s",
            e.1 - s.1 - 3,
            e.2 - s.2
        );
    }
}
