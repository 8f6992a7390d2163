//! `sched`: preemption. Run as several VMs (`vms=2`) on fewer CPUs than
//! vCPUs. Odd VMs spin for 4 s without ever giving their CPU up (no
//! `WFI`, no calls); even VMs meanwhile take 50 virtual-timer interrupts,
//! 10 ms apart, sleeping in `WFI` between them, and must be done before
//! 3.5 s have passed since the VM was created (its virtual counter): they
//! only can if the hypervisor's time slices take the CPU away from the
//! spinner, which would otherwise hold it for 4 s first (the margin is
//! for a loaded host: 50 ticks take about 0.6 s alone, up to 1.7 s seen
//! on a busy 2-core machine). Each spinner
//! prints how many loop iterations it managed: with `vms=3` two spinners
//! share the CPU with the sleeper (the figure for fairness).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("sched: a guest image; it runs under the hypervisor");
}

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::{AtomicU32, Ordering};

    use guest::println;
    use guest::rt::gic::{self, VTIMER_PPI};
    use guest::rt::{platform, test_result_with, timer};

    guest::guest_main!("sched", 0, main);

    static TICKS: AtomicU32 = AtomicU32::new(0);

    fn handler(id: u32) {
        if id == VTIMER_PPI {
            TICKS.fetch_add(1, Ordering::SeqCst);
            gic::vtimer_stop();
        }
    }

    fn spin(ms: u64) -> u64 {
        let f = timer::frequency();
        let t0 = timer::counter();
        let mut n = 0u64;
        while timer::counter() - t0 < f / 1000 * ms {
            n += 1;
        }
        n
    }

    fn main(_dtb: u64) {
        let vm = platform::vm_id().unwrap_or(1);
        if vm % 2 == 1 {
            let n = spin(4000);
            println!("sched: vm{vm} spun {n} iterations in 4000 ms");
            test_result_with(1, "spinner_done", n > 0, format_args!("{n} iterations"));
            return;
        }
        gic::set_handler(handler);
        gic::init_cpu();
        gic::enable(VTIMER_PPI);
        let f = timer::frequency();
        let t0 = timer::counter();
        for i in 0..50 {
            gic::vtimer_in(f / 100);
            gic::wait_irqs_until(|| TICKS.load(Ordering::SeqCst) > i);
        }
        let ms = (timer::counter() - t0) * 1000 / f;
        let since_creation = gic::vcounter() * 1000 / f;
        test_result_with(
            2,
            "sleeper_finishes_beside_spinner",
            TICKS.load(Ordering::SeqCst) == 50 && since_creation < 3500,
            format_args!("50 ticks of 10 ms in {ms} ms, done {since_creation} ms after creation"),
        );
    }
}
