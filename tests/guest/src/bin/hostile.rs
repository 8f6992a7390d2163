//! `hostile`: a guest that tries to harm the hypervisor and the other VM,
//! and a victim that checks it was not harmed. Run with `vms=2`: VM 1
//! attacks, VM 2 is the victim (and the writer of the stale-data check).
//!
//! VM 1, in order:
//!
//! 1. `outside_probes`: reads and writes of IPAs that are neither RAM nor a
//!    device each get a synchronous external abort, the hypervisor survives.
//! 2. `hvc_immediate`: `HVC #1` is not a hypercall (NOT_SUPPORTED), an
//!    unknown `HYP_SET_POLICY` value is refused.
//! 3. `psci_self`: `CPU_ON` of itself is `ALREADY_ON` (it used to hang the
//!    CPU), of a bad entry point `INVALID_ADDRESS`, of a bad MPIDR
//!    `INVALID_PARAMETERS`; `AFFINITY_INFO` says it is on. With two vCPUs,
//!    `CPU_ON` of vCPU 1 while it spins without exits is `ALREADY_ON`, at
//!    once.
//! 4. `no_share_without_consent`: the consentless `HYP_SHARE` (naming a page
//!    of VM 2's) is refused; VM 1 then offers a page for real, which VM 2
//!    sees as the sign that the attempt is over.
//! 5. `rmap_flood`: for a few seconds, aliases a new page and unmaps the
//!    alias again and again (each once filled the shared reverse map for
//!    good); meanwhile VM 2 aliases a page of its own in every round and
//!    must never be refused (`rmap_room`).
//! 6. `fuzz`: thousands of random and boundary hypercalls and PSCI calls
//!    (all but those that stop the vCPU) with addresses in a region of its
//!    own, in RAM, outside it, unaligned, huge: every one returns, the
//!    refused ones as errors. An interrupt is kept pending throughout, so
//!    that a `CPU_SUSPEND` it makes (a standby, which waits for one)
//!    returns at once.
//! 7. `fresh_is_zero`: while VM 2 fills 16 MiB with its marker and unmaps
//!    it, round after round, VM 1 unmaps and faults in 16 MiB of its own,
//!    collapses (by copying) a 2 MiB range, and checks every fresh page
//!    reads as zero (no frame reaches it with another's data).
//! 8. `hammer` (two vCPUs): vCPU 1 unmaps, remaps, collapses, splits and
//!    write-protects pages that vCPU 0 writes and reads at the same time:
//!    vCPU 0 only ever reads its own value, zero or the remap pattern.
//! 9. `straddle` (AArch64): an unaligned load through a Normal alias of the
//!    PL011 that crosses its page's end is aborted, not emulated.
//! 10. `big_unmap` (with at least 512 MiB of RAM): 2 MiB blocks over all
//!     of RAM above the test region, one `HYP_UNMAP` of all of it (which
//!     once exhausted the hypervisor's heap), fresh memory after it, then
//!     `SYSTEM_RESET` of the large VM; after the reset `reset_fresh`.
//!
//! VM 2: 20 `victim_intact` (a page of its own, which VM 1's consentless
//! share named, and 4 MiB of data keep their contents to the end), 21
//! `rmap_room`, 22 `offer_seen` (VM 1's real offer, accepted: VM 1's data
//! visible), 23 `stale_writer`.
//!
//! With `start=input` in its bootargs, VM 1 waits for a byte on its
//! console before it starts (giving its CPU away meanwhile): a harness
//! running another guest as VM 2, such as Linux and its memory workload
//! (`tests/linux.rs`), starts the attack while that guest is busy.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("hostile: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::{AtomicU64, Ordering};

    use guest::abi::{counter, OUTSIDE_IPA, TEST_REGION, UART_BASE};
    use guest::abi::{hyp, psci as ids, BLOCK_SIZE, PAGE_SIZE, POLICY_BLOCKS, POLICY_PAGES};
    use guest::println;
    use guest::rt::exception::{probe_read, probe_write};
    use guest::rt::gic;
    use guest::rt::mem::{self, pattern};
    use guest::rt::smp::{self, yield_now};
    use guest::rt::{hvc, hyp_accept, hyp_alias, hyp_collapse, hyp_offered, hyp_protect};
    use guest::rt::{hyp_relinquish, hyp_remap, hyp_set_policy, hyp_share, hyp_split, hyp_unmap};
    use guest::rt::{platform, psci, stat, test_result_with, timer};

    guest::guest_main!("hostile", 1800, main);

    /// VM 2's page that VM 1's consentless share names, and VM 2's data.
    const VICTIM_PAGE: u64 = TEST_REGION + 0x2000;
    const VICTIM_DATA: u64 = TEST_REGION + BLOCK_SIZE;
    const VICTIM_LEN: u64 = 4 << 20;
    /// Where VM 2 accepts VM 1's offer.
    const ACCEPT_AT: u64 = TEST_REGION + 0x5000;
    /// VM 1's offered page.
    const OFFERED: u64 = TEST_REGION + 0x7000;
    /// The flood's alias, and its sources.
    const FLOOD_DST: u64 = TEST_REGION + 0x9000;
    const FLOOD_SRC: u64 = TEST_REGION + 4 * BLOCK_SIZE;
    /// VM 2's own alias pair during the flood.
    const ROOM_SRC: u64 = TEST_REGION + 0xa000;
    const ROOM_DST: u64 = TEST_REGION + 0xb000;
    /// The fuzz's region.
    const FUZZ: u64 = TEST_REGION + 8 * BLOCK_SIZE;
    const FUZZ_LEN: u64 = 4 * BLOCK_SIZE;
    /// The fresh-memory check's region (both VMs, each its own).
    const FRESH: u64 = TEST_REGION + 12 * BLOCK_SIZE;
    const FRESH_LEN: u64 = 16 << 20;
    /// The hammer's region: two 2 MiB ranges.
    const HAMMER: u64 = TEST_REGION + 20 * BLOCK_SIZE;
    /// The big unmap starts here.
    const BIG: u64 = TEST_REGION + 24 * BLOCK_SIZE;

    const SEED_VICTIM: u64 = 0x71c7_1e00_0000_0000;
    const SEED_OFFER: u64 = 0x0ffe_4000_0000_0000;
    /// VM 2's marker in the stale-data rounds: never zero.
    const MARKER: u64 = 0x57a1_e000_0000_0001;
    const REMAP_PAT: u64 = guest::rt::remap_fill(0x4a11_4a11_4a11_4a11);
    /// How long the flood and the stale-data rounds last (µs).
    const FLOOD_US: u64 = 2_000_000;
    const STALE_ROUNDS: u64 = 4;
    /// How long VM 2 waits for VM 1 at most.
    const WAIT_US: u64 = 30_000_000;

    fn main(_dtb: u64) {
        let id = platform::vm_id().unwrap_or(0);
        if platform::bootarg("resets").is_some() {
            return after_reset();
        }
        if platform::bootarg("start") == Some("input") {
            println!("hostile: waiting for a byte on the console");
            smp::wait_until(|| guest::rt::console::try_getb().is_some());
            println!("hostile: starting");
        }
        match id {
            1 => attacker(),
            2 => victim(),
            _ => println!("hostile: VM {id} watches"),
        }
    }

    // ---- VM 1 ---------------------------------------------------------------

    fn attacker() {
        outside_probes();
        hvc_immediate();
        psci_self();
        consent();
        flood();
        fuzz();
        fresh_is_zero();
        if platform::cpus_or(1) >= 2 {
            hammer();
        }
        straddle();
        if platform::ram_size() >= 512 << 20 {
            big_unmap();
        }
    }

    /// IPAs that are neither RAM nor a device.
    fn outside_probes() {
        let end = platform::ram_end();
        let ipas = [
            0,
            0x1000,
            // Where QEMU's GICv2 GICH is on the host: nothing in a guest
            // (its virtual GIC's pages start at 0x0800_0000).
            0x0803_0000,
            UART_BASE + PAGE_SIZE,
            0x3fff_f000,
            end,
            end + PAGE_SIZE,
            OUTSIDE_IPA,
        ];
        let before = stat(counter::ABORTS_INJECTED);
        let mut aborted = 0;
        for ipa in ipas {
            // SAFETY: no RAM, no device: nothing to harm.
            if unsafe { probe_read(ipa) }.is_err() {
                aborted += 1;
            }
            // SAFETY: as above.
            if unsafe { probe_write(ipa, 0xbad) }.is_err() {
                aborted += 1;
            }
        }
        let counted = stat(counter::ABORTS_INJECTED) - before;
        test_result_with(
            1,
            "outside_probes",
            aborted == 2 * ipas.len() as u64 && counted == aborted,
            format_args!("{aborted} aborts of {}, {counted} counted", 2 * ipas.len()),
        );
    }

    fn hvc_immediate() {
        let r = arch::hvc_imm1(hyp::HYP_VERSION);
        let policy = hyp_set_policy(3);
        test_result_with(
            2,
            "hvc_immediate",
            r == guest::abi::SMCCC_NOT_SUPPORTED && policy == guest::abi::SMCCC_INVALID_PARAMETER,
            format_args!("HVC #1 HYP_VERSION = {r}; HYP_SET_POLICY(3) = {policy}"),
        );
    }

    static SPIN: AtomicU64 = AtomicU64::new(0);

    /// Spins without exits until told to stop.
    fn spinner(_cpu: usize) {
        SPIN.store(1, Ordering::SeqCst);
        while SPIN.load(Ordering::SeqCst) == 1 {
            core::hint::spin_loop();
        }
    }

    fn psci_self() {
        let me = smp::mpidr() & 0xff_ffff;
        let entry = guest::abi::IMAGE_BASE;
        // SAFETY: refused (the caller is on); were it not, the entry is the
        // image's, which starts any vCPU.
        let self_on = unsafe { psci::cpu_on(me, entry, 0) };
        // SAFETY: refused: no RAM at 0x10.
        let bad_entry = unsafe { psci::cpu_on(me, 0x10, 0) };
        // SAFETY: refused: no such vCPU.
        let bad_mpidr = unsafe { psci::cpu_on(0x100, entry, 0) };
        // SAFETY: AFFINITY_INFO has no side effects.
        let info = unsafe { hvc::hvc(ids::AFFINITY_INFO, me, 0, 0, 0, 0).0 as i64 };
        let mut ok = self_on == ids::ALREADY_ON
            && bad_entry == ids::INVALID_ADDRESS
            && bad_mpidr == ids::INVALID_PARAMETERS
            && info == 0;
        let mut running = i64::MIN;
        if platform::cpus_or(1) >= 2 {
            // vCPU 1 spins without a single exit while vCPU 0 asks to
            // start it again: answered at once, not after vCPU 1 stops.
            let started = smp::start_secondaries(2, spinner);
            smp::wait_until(|| SPIN.load(Ordering::SeqCst) == 1);
            let t0 = timer::counter();
            // SAFETY: refused (vCPU 1 is on).
            running = unsafe { psci::cpu_on(platform::cpu_mpidr(1), entry, 0) };
            let ticks = timer::counter() - t0;
            SPIN.store(2, Ordering::SeqCst);
            smp::join_secondaries();
            ok &= started.is_ok() && running == ids::ALREADY_ON && ticks < timer::frequency();
        }
        test_result_with(
            3,
            "psci_self",
            ok,
            format_args!(
                "CPU_ON self {self_on}, bad entry {bad_entry}, bad MPIDR {bad_mpidr}, \
                 AFFINITY_INFO {info}, running vCPU {running}"
            ),
        );
    }

    /// The consentless share of VM 1's page into VM 2's `VICTIM_PAGE`, then
    /// a real offer.
    fn consent() {
        mem::fill(OFFERED, PAGE_SIZE, |a| pattern(SEED_OFFER, a - OFFERED));
        // SAFETY: were it accepted, VM 2's page would map VM 1's: harm to
        // VM 2 is what the check is after; nothing of VM 1's Rust memory.
        let r = unsafe { hvc::hvc(hyp::HYP_SHARE, OFFERED, 2, VICTIM_PAGE, 0, 0).0 as i64 };
        // SAFETY: test memory.
        let h = unsafe { hyp_share(OFFERED, 2) };
        test_result_with(
            4,
            "no_share_without_consent",
            r == guest::abi::SMCCC_INVALID_PARAMETER && h >= 0,
            format_args!("consentless HYP_SHARE {r}; offer {h:#x}"),
        );
    }

    /// Aliases a new source page at `FLOOD_DST` and unmaps it, again and
    /// again for `FLOOD_US`, yielding between rounds.
    fn flood() {
        let (t0, ticks) = (timer::counter(), timer::frequency() / 1_000_000 * FLOOD_US);
        let (mut rounds, mut failed) = (0u64, 0u64);
        while timer::counter() - t0 < ticks {
            let src = FLOOD_SRC + (rounds % 512) * PAGE_SIZE;
            // SAFETY: test memory.
            let r = unsafe { hyp_alias(src, FLOOD_DST) | hyp_unmap(FLOOD_DST, PAGE_SIZE) };
            failed += u64::from(r != 0);
            rounds += 1;
            yield_now();
        }
        // Only the offered page stays tracked (its offer holds it).
        let (tracked, offers) = (stat(counter::TRACKED_PAGES), stat(counter::OFFERS));
        test_result_with(
            5,
            "rmap_flood",
            failed == 0 && tracked <= offers && rounds > 16,
            format_args!(
                "{rounds} rounds, {failed} refused, {tracked} pages tracked after ({offers} offers)"
            ),
        );
    }

    /// A small deterministic generator (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn fuzz() {
        let (start, end) = (platform::ram_start(), platform::ram_end());
        let values = [
            0,
            1,
            0xfff,
            PAGE_SIZE,
            start - PAGE_SIZE,
            end,
            end + PAGE_SIZE,
            FUZZ,
            FUZZ + 8,
            FUZZ + FUZZ_LEN - PAGE_SIZE,
            FUZZ + FUZZ_LEN,
            u64::from(u32::MAX),
            arch::BIG_VALUE,
            arch::MAX_VALUE,
        ];
        // An address in RAM but outside the fuzz region would let the fuzz
        // unmap this guest's own code: moved out of RAM.
        let tame = |v: u64| {
            let v = v & arch::MAX_VALUE;
            let in_ram = (start..end).contains(&v);
            if in_ram && !(FUZZ..FUZZ + FUZZ_LEN).contains(&v) {
                v | arch::BIG_VALUE
            } else {
                v
            }
        };
        let mut rng = Rng(0x5eed_f022 ^ timer::counter());
        let before = stat(counter::CALLS_REFUSED);
        let stop =
            [ids::CPU_OFF, ids::SYSTEM_OFF, ids::SYSTEM_RESET, ids::SYSTEM_RESET2 & !(1 << 30)];
        // PSCI CPU_SUSPEND with a valid power state waits for an interrupt
        // as WFI does: keep one pending (the virtual timer's, fired at
        // once, IRQs masked), so that such a call returns at once.
        gic::init_cpu();
        gic::enable(gic::VTIMER_PPI);
        gic::vtimer_in(0);
        let mut calls = 0;
        for _ in 0..5000 {
            let pick = |rng: &mut Rng| -> u64 {
                tame(match rng.next() % 4 {
                    0 => rng.next(),
                    1 => values[(rng.next() % values.len() as u64) as usize],
                    2 => (FUZZ + (rng.next() % FUZZ_LEN)) & !(PAGE_SIZE - 1),
                    _ => FUZZ + (rng.next() % FUZZ_LEN),
                })
            };
            let fid = match rng.next() % 5 {
                0 => rng.next() & 0xffff_ffff,
                1 => 0x8400_0000 | (rng.next() % 0x20),
                2 => 0xc400_0000 | (rng.next() % 0x20),
                _ => hyp::HYP_VERSION | (rng.next() % 0x12),
            };
            // Calls that stop this vCPU, start another at a random address
            // (harm to itself, not to others), or report test results.
            let base = fid & !(1 << 30);
            let refused_here = [ids::CPU_ON, hyp::HYP_REPORT].map(|f| f & !(1 << 30));
            if stop.contains(&base) || refused_here.contains(&base) {
                continue;
            }
            let a = [pick(&mut rng), pick(&mut rng), pick(&mut rng), pick(&mut rng)];
            // SAFETY: every address argument is in the fuzz region (which
            // nothing else uses), outside RAM, or not an address at all.
            let _ = unsafe { hvc::hvc(fid, a[0], a[1], a[2], a[3], 0) };
            calls += 1;
        }
        gic::vtimer_stop();
        gic::disable(gic::VTIMER_PPI);
        let refused = stat(counter::CALLS_REFUSED) - before;
        test_result_with(
            6,
            "fuzz",
            refused > calls / 4,
            format_args!("{calls} calls, {refused} refused, the VM runs on"),
        );
        // Whatever the fuzz left: permissions back, its region unmapped.
        hyp_protect(FUZZ, FUZZ_LEN, 0b111);
        // SAFETY: the fuzz region.
        unsafe { hyp_unmap(FUZZ, FUZZ_LEN) };
    }

    /// Fresh memory reads as zero, round after round, while VM 2 fills and
    /// frees its own.
    fn fresh_is_zero() {
        hyp_set_policy(POLICY_PAGES);
        let mut bad = None;
        for round in 0..STALE_ROUNDS {
            // SAFETY: test memory.
            unsafe { hyp_unmap(FRESH, FRESH_LEN) };
            yield_now();
            if let Err(m) = mem::verify_zero(FRESH, FRESH_LEN) {
                bad = bad.or(Some((round, m)));
            }
            // Scattered pages, then a collapse by copying: the new block
            // holds exactly the pages' data.
            let block = FRESH + (round % 8) * BLOCK_SIZE;
            mem::fill(block, BLOCK_SIZE, |a| pattern(round, a));
            // SAFETY: test memory.
            let c = unsafe { hyp_collapse(block) };
            if c != 0 || mem::verify(block, BLOCK_SIZE, |a| pattern(round, a)).is_err() {
                bad = bad.or(Some((round, mem::Mismatch { addr: block, got: c as u64, want: 0 })));
            }
        }
        test_result_with(7, "fresh_is_zero", bad.is_none(), format_args!("{bad:x?}"));
    }

    /// Rounds of writes and reads vCPU 0 makes under the hammer.
    const HAMMER_ROUNDS: u64 = 500;
    static HAMMER_DONE: AtomicU64 = AtomicU64::new(0);
    static HAMMER_BAD: AtomicU64 = AtomicU64::new(0);
    static HAMMER_CALLS: AtomicU64 = AtomicU64::new(0);

    /// vCPU 1: stage-2 changes under vCPU 0's feet, until vCPU 0 is done.
    fn hammer_ops(_cpu: usize) {
        let mut i = 0u64;
        while HAMMER_DONE.load(Ordering::SeqCst) == 0 {
            let page = HAMMER + (i % 8) * PAGE_SIZE;
            let high = HAMMER + BLOCK_SIZE;
            // SAFETY: the hammer's region, which only vCPU 0 uses besides.
            let r = unsafe {
                match i % 6 {
                    0 => hyp_unmap(page, PAGE_SIZE),
                    1 => hyp_remap(page, REMAP_PAT),
                    2 => hyp_collapse(high),
                    3 => hyp_split(high),
                    4 => hyp_protect(HAMMER, 2 * BLOCK_SIZE, 0b001),
                    _ => hyp_protect(HAMMER, 2 * BLOCK_SIZE, 0b111),
                }
            };
            // A collapse of a range that is not all pages, or a split of one
            // that is not a block, is refused: that is fine.
            HAMMER_CALLS.fetch_add(u64::from(r == 0), Ordering::Relaxed);
            i += 1;
        }
    }

    fn hammer() {
        hyp_set_policy(POLICY_BLOCKS);
        let started = smp::start_secondaries(2, hammer_ops);
        let mut rounds = 0u64;
        while rounds < HAMMER_ROUNDS && started.is_ok() {
            for k in 0..16u64 {
                let a = HAMMER + (k % 8) * PAGE_SIZE + (k / 8) * BLOCK_SIZE + 8 * (rounds % 64);
                let mine = (rounds << 8) | k | 0x1000_0000;
                mem::write64(a, mine);
                let got = mem::read64(a);
                if got != mine && got != 0 && got != REMAP_PAT {
                    HAMMER_BAD.fetch_add(1, Ordering::Relaxed);
                }
            }
            rounds += 1;
        }
        HAMMER_DONE.store(1, Ordering::SeqCst);
        smp::join_secondaries();
        hyp_protect(HAMMER, 2 * BLOCK_SIZE, 0b111);
        let (bad, calls) =
            (HAMMER_BAD.load(Ordering::Relaxed), HAMMER_CALLS.load(Ordering::Relaxed));
        test_result_with(
            8,
            "hammer",
            started.is_ok() && bad == 0 && rounds == HAMMER_ROUNDS && calls > 0,
            format_args!("{rounds} rounds, {bad} bad reads, {calls} calls done meanwhile"),
        );
    }

    fn straddle() {
        let Some(aborted) = arch::straddle_uart() else { return };
        test_result_with(
            9,
            "straddle",
            aborted,
            format_args!("an 8-byte load at PL011 + 0xffc aborted: {aborted}"),
        );
    }

    fn big_unmap() {
        hyp_set_policy(POLICY_BLOCKS);
        let end = platform::ram_end() & !(BLOCK_SIZE - 1);
        let mut blocks = 0;
        let mut a = BIG;
        while a < end {
            mem::write64(a, a);
            blocks += 1;
            a += BLOCK_SIZE;
        }
        let mapped = stat(counter::BLOCKS_MAPPED);
        // SAFETY: test memory.
        let r = unsafe { hyp_unmap(BIG, end - BIG) };
        let zero =
            mem::verify_zero(BIG, PAGE_SIZE).and(mem::verify_zero(end - PAGE_SIZE, PAGE_SIZE));
        test_result_with(
            10,
            "big_unmap",
            r == 0 && zero.is_ok() && mapped >= blocks,
            format_args!(
                "{blocks} blocks written ({mapped} mapped), HYP_UNMAP {r}, fresh {zero:x?}"
            ),
        );
        // Again, then the reset frees them all.
        let mut a = BIG;
        while a < end {
            mem::write64(a, !a);
            a += BLOCK_SIZE;
        }
        psci::system_reset();
    }

    /// VM 1 after the big reset: its RAM is fresh.
    fn after_reset() {
        let end = platform::ram_end() & !(BLOCK_SIZE - 1);
        let mut bad = None;
        let mut a = BIG;
        while a < end {
            if mem::read64(a) != 0 {
                bad = Some(a);
            }
            a += 64 * BLOCK_SIZE;
        }
        test_result_with(11, "reset_fresh", bad.is_none(), format_args!("non-zero at {bad:x?}"));
    }

    // ---- VM 2 ---------------------------------------------------------------

    fn victim() {
        mem::fill(VICTIM_PAGE, PAGE_SIZE, |a| pattern(SEED_VICTIM, a));
        mem::fill(VICTIM_DATA, VICTIM_LEN, |a| pattern(SEED_VICTIM, a));
        // VM 1's consentless share is over once its real offer is there.
        let mut offer = None;
        let seen = smp::wait_until_for(
            || {
                offer = hyp_offered(0);
                offer.is_some()
            },
            WAIT_US,
        );
        let mut visible = Err(mem::Mismatch { addr: 0, got: 0, want: 0 });
        if let Some(o) = offer {
            // SAFETY: test memory.
            let r = unsafe { hyp_accept(o.handle, ACCEPT_AT) };
            if r == 0 {
                visible = mem::verify(ACCEPT_AT, PAGE_SIZE, |a| pattern(SEED_OFFER, a - ACCEPT_AT));
            }
            // SAFETY: test memory.
            unsafe { hyp_relinquish(o.handle) };
        }
        test_result_with(
            22,
            "offer_seen",
            seen && visible.is_ok(),
            format_args!("{offer:x?}: {visible:x?}"),
        );
        room();
        stale_writer();
        // To the end of VM 1's attacks (it stops first, or within the wait).
        let victim = mem::verify(VICTIM_PAGE, PAGE_SIZE, |a| pattern(SEED_VICTIM, a))
            .and(mem::verify(VICTIM_DATA, VICTIM_LEN, |a| pattern(SEED_VICTIM, a)));
        test_result_with(20, "victim_intact", victim.is_ok(), format_args!("{victim:x?}"));
    }

    /// Aliases a page of its own, round after round, while VM 1 floods.
    fn room() {
        mem::fill(ROOM_SRC, PAGE_SIZE, |a| pattern(7, a - ROOM_SRC));
        let (t0, ticks) = (timer::counter(), timer::frequency() / 1_000_000 * FLOOD_US);
        let (mut rounds, mut refused) = (0u64, 0u64);
        while timer::counter() - t0 < ticks {
            // SAFETY: test memory.
            let r = unsafe { hyp_alias(ROOM_SRC, ROOM_DST) };
            refused += u64::from(r != 0);
            if r == 0 && mem::verify(ROOM_DST, PAGE_SIZE, |a| pattern(7, a - ROOM_DST)).is_err() {
                refused += 1;
            }
            // SAFETY: test memory.
            unsafe { hyp_unmap(ROOM_DST, PAGE_SIZE) };
            rounds += 1;
            yield_now();
        }
        test_result_with(
            21,
            "rmap_room",
            refused == 0 && rounds > 0,
            format_args!("{rounds} rounds, {refused} refused"),
        );
    }

    /// Fills 16 MiB with the marker and frees it, round after round.
    fn stale_writer() {
        hyp_set_policy(POLICY_PAGES);
        let mut ok = true;
        for _ in 0..STALE_ROUNDS {
            mem::fill(FRESH, FRESH_LEN, |a| MARKER ^ a);
            // SAFETY: test memory.
            ok &= unsafe { hyp_unmap(FRESH, FRESH_LEN) } == 0;
            yield_now();
        }
        test_result_with(23, "stale_writer", ok, format_args!("{STALE_ROUNDS} rounds"));
    }

    #[cfg(target_arch = "aarch64")]
    mod arch {
        use core::arch::asm;
        use core::cell::UnsafeCell;

        use guest::abi::UART_BASE;
        use guest::rt::exception::sea_take;

        /// A 64-bit value no RAM reaches.
        pub const BIG_VALUE: u64 = 1 << 40;
        /// Arguments are 64-bit.
        pub const MAX_VALUE: u64 = u64::MAX;

        /// `HVC #1` with `x0` = `fid`; returns `x0`.
        pub fn hvc_imm1(fid: u64) -> i64 {
            let r: u64;
            // SAFETY: a call the hypervisor refuses (or, were it taken as
            // `HVC #0`, `HYP_VERSION`, which changes nothing).
            unsafe {
                asm!("hvc #1", inlateout("x0") fid => r, lateout("x1") _, lateout("x2") _,
                     lateout("x3") _, options(nostack))
            };
            r as i64
        }

        #[repr(C, align(4096))]
        struct Table(UnsafeCell<[u64; 512]>);
        // SAFETY: written by vCPU 0 alone, before any other vCPU uses it.
        unsafe impl Sync for Table {}
        static ALIAS_L1: Table = Table(UnsafeCell::new([0; 512]));

        /// VA of the Normal alias of the first gigabyte.
        const ALIAS_VA: u64 = 8 << 30;

        /// Loads 8 bytes from PL011 + 0xffc through a Normal (so unaligned
        /// accesses are allowed) alias of the device window: the access
        /// crosses the page's end. Whether it was aborted.
        pub fn straddle_uart() -> Option<bool> {
            let ttbr0: u64;
            // SAFETY: reading TTBR0_EL1 has no side effects.
            unsafe { asm!("mrs {}, ttbr0_el1", out(reg) ttbr0, options(nomem, nostack)) };
            let table = ALIAS_L1.0.get();
            // SAFETY: the runtime's level-1 table (identity mapped, read
            // only here) and ours (written only here, vCPU 0).
            unsafe {
                let current = (ttbr0 & 0xffff_ffff_f000) as usize as *const u64;
                for i in 0..8 {
                    (*table)[i] = current.add(i).read();
                }
                // PA 0, Normal WB (MAIR attr 1), inner shareable, AF, never
                // executable.
                (*table)[8] = 0b01 | (1 << 2) | (0b11 << 8) | (1 << 10) | (3 << 53);
            }
            let load = ALIAS_VA + UART_BASE + 0xffc;
            sea_take();
            // SAFETY: switches to a copy of the runtime's map with one more
            // block, loads through it once and switches back; the vectors
            // skip the load if it aborts.
            unsafe {
                asm!(
                    "dsb ishst",
                    "msr ttbr0_el1, {new}",
                    "isb",
                    "tlbi vmalle1",
                    "dsb nsh",
                    "isb",
                    "ldr {tmp}, [{load}]",
                    "msr ttbr0_el1, {old}",
                    "isb",
                    "tlbi vmalle1",
                    "dsb nsh",
                    "isb",
                    new = in(reg) table as usize as u64,
                    old = in(reg) ttbr0,
                    load = in(reg) load,
                    tmp = out(reg) _,
                    options(nostack)
                )
            };
            Some(sea_take().is_some())
        }
    }

    #[cfg(target_arch = "arm")]
    mod arch {
        use core::arch::asm;

        /// The largest 32-bit value.
        pub const BIG_VALUE: u64 = 0xffff_f000;
        /// ARM32 arguments are 32-bit.
        pub const MAX_VALUE: u64 = 0xffff_ffff;

        /// `HVC #1` with `r0` = the SMC32 form of `fid`; returns `r0`.
        pub fn hvc_imm1(fid: u64) -> i64 {
            let r: u32;
            // SAFETY: a call the hypervisor refuses (or, were it taken as
            // `HVC #0`, `HYP_VERSION`, which changes nothing).
            unsafe {
                asm!(".arch_extension virt", "hvc #1",
                     inlateout("r0") guest::abi::smc32(fid) => r, lateout("r1") _,
                     lateout("r2") _, lateout("r3") _, options(nostack))
            };
            i64::from(r as i32)
        }

        /// Not on ARM32: its stage-1 map has no room for a Normal alias of
        /// the device window.
        pub fn straddle_uart() -> Option<bool> {
            None
        }
    }
}
