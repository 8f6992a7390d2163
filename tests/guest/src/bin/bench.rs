//! `bench`: the fault-path benchmark.
//!
//! Touches up to 256 MiB from `0x4100_0000` with one write per 4 KiB page
//! and prints the time (`CNTVCT_EL0` ticks at `CNTFRQ_EL0`) and the
//! `HYP_STAT` counters for the touch. The fault policy is left to the
//! bootargs (`policy=pages|blocks`). With several vCPUs (`vcpus=N`) the
//! range is split into 2 MiB-aligned contiguous chunks, one per vCPU, all
//! started together at a barrier. Use `mem=` of at least 272 MiB for the
//! full 256 MiB (less RAM shrinks the range, which is printed).
//!
//! Result line: `BENCH pages=... vcpus=... ns=... ns_per_page=...
//! faults=... pages_mapped=... blocks_mapped=... tables=... exits=...
//! tlbi_ipa=... tlbi_range=... tlbi_vmid=... el2_insns=...` (EL2
//! instructions for the touch's exits: `HYP_STAT` 25).
//!
//! Checks: 1 `data` (one word per page reads back), 2 `faults` (between 1
//! and one per page); 3 `start` is reported (as failed) only if a
//! secondary vCPU does not start.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("bench: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use guest::abi::{counter, BLOCK_SIZE, MAX_CPUS, PAGE_SIZE, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern, Mismatch};
    use guest::rt::{check_mem, platform, smp, test_result_with, timer, Barrier, Stats};

    guest::guest_main!("bench", 1000, main);

    const MAX_SIZE: u64 = 256 << 20;
    const SEED: u64 = 0xbe4c_0000_0000_000a;

    static NCPUS: AtomicUsize = AtomicUsize::new(1);
    static CHUNK: AtomicU64 = AtomicU64::new(0);
    static BARRIER: Barrier = Barrier::new();
    /// Counter values at each vCPU's start and end of its chunk.
    static START: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
    static END: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

    /// Every vCPU's part (0 = the primary): its chunk, between two barriers.
    fn work(cpu: usize) {
        let n = NCPUS.load(Ordering::SeqCst);
        let chunk = CHUNK.load(Ordering::SeqCst);
        let start = TEST_REGION + cpu as u64 * chunk;
        BARRIER.wait(n);
        START[cpu].store(timer::counter(), Ordering::SeqCst);
        let mut a = start;
        while a < start + chunk {
            mem::write64(a, pattern(SEED, a));
            a += PAGE_SIZE;
        }
        END[cpu].store(timer::counter(), Ordering::SeqCst);
        BARRIER.wait(n);
    }

    fn main(_dtb: u64) {
        let n = platform::cpus_or(1);
        NCPUS.store(n, Ordering::SeqCst);
        let avail = platform::test_memory_end().saturating_sub(TEST_REGION);
        let unit = BLOCK_SIZE * n as u64;
        let size = MAX_SIZE.min(avail) / unit * unit;
        let chunk = size / n as u64;
        CHUNK.store(chunk, Ordering::SeqCst);
        let pages = size / PAGE_SIZE;
        println!(
            "bench: touching {} MiB ({pages} pages) at {TEST_REGION:#x} with {n} vCPU(s), \
             {} MiB each{}",
            size >> 20,
            chunk >> 20,
            if size < MAX_SIZE { " (too little RAM for 256 MiB: use mem=512M)" } else { "" }
        );
        println!("bench: bootargs \"{}\"", platform::bootargs().unwrap_or(""));

        let started = if n > 1 { smp::start_secondaries(n, work) } else { Ok(()) };
        if let Err(e) = started {
            test_result_with(3, "start", false, format_args!("{e:?}"));
            return;
        }
        let s0 = Stats::read();
        work(0);
        let s1 = Stats::read();
        smp::join_secondaries();
        let t0 = START.iter().take(n).map(|t| t.load(Ordering::SeqCst)).min().unwrap_or(0);
        let t1 = END.iter().take(n).map(|t| t.load(Ordering::SeqCst)).max().unwrap_or(0);

        let mut data: Result<(), Mismatch> = Ok(());
        let mut a = TEST_REGION;
        while a < TEST_REGION + size {
            let got = mem::read64(a);
            let want = pattern(SEED, a);
            if got != want {
                data = data.and(Err(Mismatch { addr: a, got, want }));
            }
            a += PAGE_SIZE;
        }
        check_mem(1, "data", data);
        let d = s1.delta(&s0);
        let faults = d.get(counter::FAULTS);
        // With premap=1 the hypervisor mapped all RAM before the start:
        // the touch must not fault at all.
        let premapped =
            platform::bootargs().is_some_and(|b| b.split_whitespace().any(|w| w == "premap=1"));
        let expected = if premapped { 0..=0 } else { 1..=pages };
        test_result_with(
            2,
            "faults",
            expected.contains(&faults),
            format_args!("{faults} faults for {pages} pages (premap: {premapped})"),
        );

        let ns = timer::ticks_to_ns(t1 - t0);
        println!(
            "BENCH pages={pages} vcpus={n} ns={ns} ns_per_page={} faults={faults} \
             pages_mapped={} blocks_mapped={} tables={} exits={} tlbi_ipa={} tlbi_range={} \
             tlbi_vmid={} el2_insns={}",
            ns / pages.max(1),
            d.get(counter::PAGES_MAPPED),
            d.get(counter::BLOCKS_MAPPED),
            d.get(counter::TABLES_ALLOCATED),
            d.get(counter::GUEST_EXITS),
            d.get(counter::TLBI_IPA),
            d.get(counter::TLBI_RANGE),
            d.get(counter::TLBI_VMID),
            d.get(counter::EL2_INSTRUCTIONS),
        );
        for cpu in 0..n {
            let ticks = END[cpu].load(Ordering::SeqCst) - START[cpu].load(Ordering::SeqCst);
            let ns = timer::ticks_to_ns(ticks);
            let cpages = chunk / PAGE_SIZE;
            println!(
                "bench: vCPU {cpu}: {cpages} pages in {ns} ns ({} ns/page)",
                ns / cpages.max(1)
            );
        }
        println!("bench: CNTFRQ_EL0 = {} Hz, {} ticks for the touch", timer::frequency(), t1 - t0);
        d.print("bench: counters for the touch");
    }
}
