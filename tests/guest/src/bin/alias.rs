//! `alias`: one frame at several IPAs (`HYP_ALIAS`), and across VMs
//! (`HYP_SHARE` and `HYP_ACCEPT`, run with `vms=2`), kept coherent by the hypervisor's
//! policy (`coherency=nc`, the default: every mapping of the frame
//! Normal Non-cacheable; `coherency=ro`: every mapping read-only, a write
//! making its own mapping the one writable mapping).
//!
//! Under the block policy, so that the source page first lies in a 2 MiB
//! block the hypervisor must split. With `vms=2`, VM 1 first offers two
//! pages to VM 2 (X and Q), which waits for the offers (polling
//! `HYP_OFFERED`, with WFI: a yield), accepts them as Y and YQ, reads VM
//! 1's data through Y and writes a reply that VM 1 waits for. Then
//! each VM on its own:
//!
//! * A (a written page in a block) aliased at B (same block): B reads A's
//!   data; the first access to B was a coherency fault that adjusted both
//!   mappings; writes through B show through A (and under `ro` each write
//!   through another mapping than the last writer's faults once);
//! * a third alias C in an untouched 2 MiB range: all three agree, and no
//!   block is mapped over C's range;
//! * bad arguments are refused and change nothing; the alias table holds
//!   16 entries, the 17th is NO_MEMORY and changes nothing;
//! * unmapping aliases drops them; unmapping the source leaves the frame
//!   to its other mappings (not freed: fresh pages do not get it); remapping
//!   an alias gives it a frame of its own;
//! * with two vCPUs or more (`vcpus=2`): rounds in which vCPUs 0 and 1
//!   fault in two fresh aliases of one page (in different level-3 tables)
//!   at once, each writing its word and reading the other's through its
//!   own alias; vCPU 0 unmaps and re-aliases both between rounds;
//! * PSCI `SYSTEM_RESET` with aliases in place (with `vms=2`, VM 1 only,
//!   once VM 2 says it is done): after it the alias table is empty and the
//!   former aliases are fresh pages. With `vms=2`, VM 1 then faults in
//!   8 MiB of fresh pages (which would get any frame its reset freed) and
//!   offers a third page (Z, accepted as Y2); VM 2, which waited for it, finds Y and
//!   YQ still holding what VM 1 wrote before its reset (YQ was never mapped
//!   in VM 2 until now: only its alias entry kept the frame) and Y2 VM 1's
//!   new data.
//!
//! Checks: 1 `setup`, 2 `alias`, 3 `split`, 4 `b_sees_a`, 5
//! `coherency_fault`, 6 `adjusted`, 7 `b_write_shows_in_a`, 8
//! `write_faults`, 9 `neighbours`, 10 `third_alias`, 11 `all_agree`, 12
//! `no_block_over_alias`, 13 `bad_args`, 14 `table_full`, 15
//! `unmap_drops_aliases`, 16 `source_unmapped`, 17 `remap_alias`; with
//! `vms=2`, VM 1: 20 `share`, 21 `reply`; VM 2: 20 `share_seen`, 21
//! `exchange`, 22 `cross_vm_coherency`, 23 `vm1_reset_seen`, 24
//! `kept_across_reset`; VM 1 before its reset, 25 `vm2_done`; with two
//! vCPUs, 30 `smp_start`, 31 `smp_data`, 32 `smp_faults`; after the reset,
//! 40 `reset_drops_aliases`, and with `vms=2` 41 `refill`, 42
//! `share_after_reset`.
//!
//! ARM32: the same checks; `bad_args` names the IPA outside RAM as
//! `OUTSIDE_IPA` = `0xF000_0000` (hypercall arguments are 32-bit) and
//! `remap_alias` fills with a 32-bit pattern (`rt::remap_fill`).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("alias: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::{fence, AtomicU64, Ordering};

    use guest::abi::SMCCC_INVALID_PARAMETER as EINVAL;
    use guest::abi::{counter, ALIAS_ENTRIES, HYP_NO_MEMORY, OUTSIDE_IPA, PAGE_SIZE};
    use guest::abi::{BLOCK_SIZE, POLICY_BLOCKS, POLICY_PAGES, TEST_REGION};
    use guest::println;
    use guest::rt::mem::{self, pattern};
    use guest::rt::{check_eq, check_mem, hyp_accept, hyp_alias, hyp_offered, hyp_revoke};
    use guest::rt::{hyp_remap, platform, psci, remap_fill, smp, stat, test_result_with};
    use guest::rt::{hyp_set_policy, hyp_share, hyp_unmap};
    use guest::rt::{Barrier, Stats};

    guest::guest_main!("alias", 1500, main);

    /// A (the source) and its neighbour, B in the same 2 MiB block.
    const A: u64 = TEST_REGION;
    const B: u64 = TEST_REGION + 0x8_0000;
    /// C, in a 2 MiB range nothing touched.
    const C: u64 = TEST_REGION + 2 * BLOCK_SIZE + 0x3000;
    /// Sources and aliases of the table-full check.
    const SRCS: u64 = TEST_REGION + 4 * BLOCK_SIZE;
    const DSTS: u64 = TEST_REGION + 6 * BLOCK_SIZE;
    /// VM 1's shared pages, and where VM 2 sees them: X (Y) for the
    /// exchange, Q (YQ) only read after VM 1's reset, Z (Y2) shared after it.
    const X: u64 = TEST_REGION + 8 * BLOCK_SIZE;
    const Y: u64 = TEST_REGION + 9 * BLOCK_SIZE + 0x5000;
    const Q: u64 = X + PAGE_SIZE;
    const YQ: u64 = TEST_REGION + 9 * BLOCK_SIZE + 0x9000;
    const Z: u64 = TEST_REGION + 14 * BLOCK_SIZE;
    const Y2: u64 = TEST_REGION + 14 * BLOCK_SIZE + 0x2000;
    /// In the exchange page: VM 2's reply from half the page up to the two
    /// last words, "replied" in the last, "done with its checks" before it.
    const HALF: u64 = PAGE_SIZE / 2;
    const REPLY_LEN: u64 = HALF - 16;
    const REPLIED: u64 = PAGE_SIZE - 8;
    const DONE: u64 = PAGE_SIZE - 16;
    /// What VM 1 faults in after its reset.
    const REFILL: u64 = TEST_REGION + 16 * BLOCK_SIZE;
    const REFILL_SIZE: u64 = 8 << 20;
    /// Fresh pages touched after the source is unmapped.
    const FRESH: u64 = TEST_REGION + 10 * BLOCK_SIZE;
    const FRESH_PAGES: u64 = 64;
    /// The two-vCPU rounds: the source, and each vCPU's alias (2 MiB apart:
    /// different level-3 tables, so different locks unless `lock=single`).
    const SMP_SRC: u64 = TEST_REGION + 11 * BLOCK_SIZE;
    const SMP_DST: [u64; 2] =
        [TEST_REGION + 12 * BLOCK_SIZE, TEST_REGION + 13 * BLOCK_SIZE + 0x7000];
    const ROUNDS: u64 = 32;
    static BARRIER: Barrier = Barrier::new();
    /// Words a vCPU read wrong through its alias.
    static SMP_ERRORS: AtomicU64 = AtomicU64::new(0);
    /// HYP_ALIAS/HYP_UNMAP calls that failed.
    static SMP_CALL_ERRORS: AtomicU64 = AtomicU64::new(0);
    /// How long a VM waits for the other (µs of the virtual counter).
    const WAIT_US: u64 = 20_000_000;

    const SEED_A: u64 = 0xa11a_0000_0000_0001;
    const SEED_N: u64 = 0xa11a_0000_0000_0002;
    const SEED_B: u64 = 0xa11a_0000_0000_0003;
    const SEED_3: u64 = 0xa11a_0000_0000_0004;
    const SEED_C: u64 = 0xa11a_0000_0000_0005;
    const SEED_S: u64 = 0xa11a_0000_0000_0006;
    const SEED_D: u64 = 0xa11a_0000_0000_0007;
    const SEED_5: u64 = 0xa11a_0000_0000_0008;
    const SEED_X: u64 = 0x5aa5_0000_0000_0001;
    const SEED_R: u64 = 0x5aa5_0000_0000_0002;
    const SEED_Q: u64 = 0x5aa5_0000_0000_0003;
    const SEED_Z: u64 = 0x5aa5_0000_0000_0004;
    const SEED_F: u64 = 0x5aa5_0000_0000_0005;
    /// The `HYP_REMAP` fill (ARM32: the low 32 bits, `remap_fill`).
    const REMAPPED: u64 = remap_fill(0x4e3a_11a5_4e3a_11a5);

    /// Page contents that depend on the offset in the page only, so that
    /// every alias of the page expects the same words.
    fn fill(page: u64, seed: u64) {
        mem::fill(page, PAGE_SIZE, |a| pattern(seed, a - page));
    }

    fn verify(page: u64, seed: u64) -> Result<(), mem::Mismatch> {
        mem::verify(page, PAGE_SIZE, |a| pattern(seed, a - page))
    }

    fn main(_dtb: u64) {
        let id = platform::vm_id().unwrap_or(0);
        let vms: u64 = platform::bootarg("vms").and_then(|v| v.parse().ok()).unwrap_or(1);
        if platform::bootarg("resets").is_some() {
            after_reset(id, vms);
            return;
        }
        let ro = platform::bootarg("coherency") == Some("ro");
        println!("alias: VM {id} of {vms}, coherency {}", if ro { "ro" } else { "nc" });
        let ok = hyp_set_policy(POLICY_BLOCKS) == 0 && id != 0;
        test_result_with(1, "setup", ok, format_args!("block policy, vm={id} in the bootargs"));
        if vms >= 2 {
            match id {
                1 => share_from_vm1(),
                2 => share_into_vm2(),
                _ => println!("alias: VM {id} takes no part in the share"),
            }
        } else {
            println!("alias: one VM: HYP_SHARE is only checked with vms=2");
        }
        one_vm(id, vms, ro);
        if platform::cpus_or(1) >= 2 {
            two_vcpus();
        } else {
            println!("alias: one vCPU: the concurrent rounds need vcpus=2");
        }
        Stats::read().print("alias: counters");
        match (vms, id) {
            (1, _) => {}
            (_, 1) => {
                // Not before VM 2 is done: our reset ends with a share that
                // its own checks of its alias table must not see.
                let done = smp::wait_until_for(|| mem::read64(X + DONE) != 0, WAIT_US);
                test_result_with(25, "vm2_done", done, format_args!("VM 2 done: {done}"));
            }
            (_, 2) => {
                mem::write64(Y + DONE, 1);
                vm1_reset();
                return;
            }
            _ => return,
        }
        println!("alias: SYSTEM_RESET with {} aliases in place", stat(counter::ALIAS_ENTRIES));
        psci::system_reset();
    }

    /// VM 2, done with its own checks: waits for VM 1's reset and its
    /// offer after it (its offers before the reset went with it; the ones
    /// VM 2 accepted stay), accepts it at Y2, then checks what VM 1's pages
    /// held before the reset is still there.
    fn vm1_reset() {
        let offer = wait_for_offer(0, false);
        // SAFETY: test memory, which Rust code never uses.
        let r = offer.map_or(-1, |o| unsafe { hyp_accept(o.handle, Y2) });
        let seen = r == 0 && stat(counter::SHARES_RECEIVED) >= 3;
        test_result_with(23, "vm1_reset_seen", seen, format_args!("third offer {offer:x?}: {r}"));
        let kept = mem::verify(Y, HALF, |a| pattern(SEED_X, a - Y))
            .and(mem::verify(Y + HALF, REPLY_LEN, |a| pattern(SEED_R, a - Y)))
            .and(verify(YQ, SEED_Q));
        let new = verify(Y2, SEED_Z);
        test_result_with(
            24,
            "kept_across_reset",
            seen && kept.is_ok() && new.is_ok(),
            format_args!("Y and YQ {kept:x?}; Y2 {new:x?}"),
        );
    }

    /// Second boot (VM 1 of two, or the one VM): the reset dropped every
    /// alias; the pages that were aliases (C; the two-vCPU rounds' if there
    /// were any) are fresh memory now. With two VMs, fresh pages, then a
    /// share that tells VM 2 the reset is over.
    fn after_reset(id: u64, vms: u64) {
        let entries = stat(counter::ALIAS_ENTRIES);
        let mut fresh = mem::verify_zero(C, PAGE_SIZE);
        if platform::cpus_or(1) >= 2 {
            for dst in SMP_DST {
                fresh = fresh.and(mem::verify_zero(dst, PAGE_SIZE));
            }
        }
        // Writing C must not show anywhere else (it is no alias any more).
        fill(C, SEED_D);
        let alone = mem::verify_zero(A, PAGE_SIZE).and(mem::verify_zero(B, PAGE_SIZE));
        test_result_with(
            40,
            "reset_drops_aliases",
            entries == 0 && fresh.is_ok() && alone.is_ok(),
            format_args!("{entries} entries; former aliases {fresh:x?}; A, B {alone:x?}"),
        );
        if vms < 2 || id != 1 {
            return;
        }
        // Single pages: each takes a freed frame, if there is one.
        hyp_set_policy(POLICY_PAGES);
        mem::fill(REFILL, REFILL_SIZE, |a| pattern(SEED_F, a));
        check_mem(41, "refill", mem::verify(REFILL, REFILL_SIZE, |a| pattern(SEED_F, a)));
        fill(Z, SEED_Z);
        // SAFETY: test memory.
        let h = unsafe { hyp_share(Z, 2) };
        test_result_with(42, "share_after_reset", h >= 0, format_args!("handle {h:#x}"));
    }

    /// Waits until the `n`-th offer made to this VM exists with the given
    /// `accepted` state.
    fn wait_for_offer(n: u64, accepted: bool) -> Option<guest::rt::Offered> {
        let mut found = None;
        smp::wait_until_for(
            || {
                found = hyp_offered(n).filter(|o| o.accepted == accepted);
                found.is_some()
            },
            WAIT_US,
        );
        found
    }

    /// (Re)makes both vCPUs' aliases of the source: vCPU 0, between rounds.
    fn realias() {
        for dst in SMP_DST {
            // SAFETY: test memory, which Rust code never uses.
            let r = unsafe { hyp_unmap(dst, PAGE_SIZE) | hyp_alias(SMP_SRC, dst) };
            if r != 0 {
                SMP_CALL_ERRORS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// One vCPU's part of the rounds. The first access to its alias in a
    /// round faults, at the same time as the other vCPU's.
    fn round_worker(cpu: usize) {
        let mine = SMP_DST[cpu];
        let other = 1 - cpu as u64;
        for round in 0..ROUNDS {
            BARRIER.wait(2); // aliases made
            mem::write64(mine + 8 * cpu as u64, (round << 8) | cpu as u64);
            BARRIER.wait(2); // both written
            if mem::read64(mine + 8 * other) != (round << 8) | other {
                SMP_ERRORS.fetch_add(1, Ordering::SeqCst);
            }
            BARRIER.wait(2); // both read
            if cpu == 0 && round + 1 < ROUNDS {
                realias();
            }
        }
    }

    fn two_vcpus() {
        fill(SMP_SRC, SEED_S);
        realias();
        let s0 = Stats::read();
        let started = smp::start_secondaries(2, round_worker);
        test_result_with(30, "smp_start", started.is_ok(), format_args!("{started:?}"));
        if started.is_err() {
            return;
        }
        round_worker(0);
        smp::join_secondaries();
        let d = Stats::read().delta(&s0);
        let (bad, calls) =
            (SMP_ERRORS.load(Ordering::SeqCst), SMP_CALL_ERRORS.load(Ordering::SeqCst));
        test_result_with(
            31,
            "smp_data",
            bad == 0 && calls == 0,
            format_args!("{bad} words read wrong, {calls} calls failed, {ROUNDS} rounds"),
        );
        let faults = d.get(counter::COHERENCY_FAULTS);
        test_result_with(
            32,
            "smp_faults",
            faults >= 2 * ROUNDS,
            format_args!(
                "{faults} coherency faults (want >= {}), adjusted {}, skipped {}, retries {}, \
                 deferred {}",
                2 * ROUNDS,
                d.get(counter::ALIASES_ADJUSTED),
                d.get(counter::ALIASES_SKIPPED),
                d.get(counter::ALIAS_RETRIES),
                d.get(counter::ALIASES_DEFERRED)
            ),
        );
    }

    /// VM 1: writes X and Q, offers them to VM 2 (which accepts them as Y
    /// and YQ), waits for VM 2's reply in X's second half.
    fn share_from_vm1() {
        mem::fill(X, HALF, |a| pattern(SEED_X, a - X));
        fill(Q, SEED_Q);
        // SAFETY: test memory, which Rust code never uses.
        let h = unsafe { [hyp_share(X, 2), hyp_share(Q, 2)] };
        test_result_with(
            20,
            "share",
            h.iter().all(|&h| h >= 0) && h[0] != h[1],
            format_args!("handles {h:x?}"),
        );
        let replied = smp::wait_until_for(|| mem::read64(X + REPLIED) != 0, WAIT_US);
        fence(Ordering::Acquire);
        let reply = mem::verify(X + HALF, REPLY_LEN, |a| pattern(SEED_R, a - X));
        test_result_with(
            21,
            "reply",
            replied && reply.is_ok(),
            format_args!("VM 2 replied: {replied}; reply {reply:x?}"),
        );
    }

    /// VM 2: waits for VM 1's offers, accepts them (X at Y, Q at YQ),
    /// reads VM 1's data through Y, replies. Both accepts come before our
    /// own checks, which count the entries of our alias table.
    fn share_into_vm2() {
        let offers = [wait_for_offer(0, false), wait_for_offer(1, false)];
        let from_vm1 = offers.iter().all(|o| o.is_some_and(|o| o.owner == 1));
        let r = match offers {
            // SAFETY: test memory, which Rust code never uses.
            [Some(x), Some(q)] => unsafe { [hyp_accept(x.handle, Y), hyp_accept(q.handle, YQ)] },
            _ => [-1, -1],
        };
        let seen = from_vm1 && r == [0, 0] && stat(counter::SHARES_RECEIVED) == 2;
        test_result_with(20, "share_seen", seen, format_args!("offers {offers:x?}: {r:?}"));
        if !seen {
            return;
        }
        let s0 = Stats::read();
        let data = mem::verify(Y, HALF, |a| pattern(SEED_X, a - Y));
        let s1 = Stats::read();
        mem::fill(Y + HALF, REPLY_LEN, |a| pattern(SEED_R, a - Y));
        fence(Ordering::Release);
        mem::write64(Y + REPLIED, 1);
        check_mem(21, "exchange", data);
        let d = s1.delta(&s0);
        let (faults, adjusted) =
            (d.get(counter::COHERENCY_FAULTS), d.get(counter::ALIASES_ADJUSTED));
        // VM 1's X and our Y: both rewritten by our first access.
        test_result_with(
            22,
            "cross_vm_coherency",
            faults >= 1 && adjusted >= 2,
            format_args!("coherency faults {faults}, adjusted {adjusted}"),
        );
    }

    /// The checks each VM runs on its own pages.
    fn one_vm(id: u64, vms: u64, ro: bool) {
        fill(A, SEED_A);
        fill(A + PAGE_SIZE, SEED_N);
        let e0 = stat(counter::ALIAS_ENTRIES);
        let s0 = Stats::read();
        // SAFETY: test memory, which Rust code never uses.
        let r = unsafe { hyp_alias(A, B) };
        let s1 = Stats::read();
        test_result_with(
            2,
            "alias",
            r == 0 && s1.get(counter::ALIAS_ENTRIES) == e0 + 1,
            format_args!("HYP_ALIAS = {r}, entries {e0} -> {}", s1.get(counter::ALIAS_ENTRIES)),
        );
        let splits = s1.delta(&s0).get(counter::SPLITS);
        test_result_with(3, "split", splits >= 1, format_args!("{splits} splits"));

        let b = verify(B, SEED_A);
        let s2 = Stats::read();
        check_mem(4, "b_sees_a", b);
        let d = s2.delta(&s1);
        let (faults, adjusted) =
            (d.get(counter::COHERENCY_FAULTS), d.get(counter::ALIASES_ADJUSTED));
        test_result_with(
            5,
            "coherency_fault",
            faults >= 1,
            format_args!("{faults} coherency faults"),
        );
        // A's mapping and B's own.
        test_result_with(6, "adjusted", adjusted >= 2, format_args!("{adjusted} adjusted"));

        fill(B, SEED_B);
        check_mem(7, "b_write_shows_in_a", verify(A, SEED_B));
        // Under `ro`, a write through another mapping than the last
        // writer's faults: B was (its fill above), so A's write faults and
        // makes B read-only again, and B's faults.
        let p0 = stat(counter::PERMISSION_FAULTS);
        mem::write64(A, 0xa);
        mem::write64(B + 8, 0xb);
        let p1 = stat(counter::PERMISSION_FAULTS);
        let seen = (mem::read64(B), mem::read64(A + 8));
        let want = if ro { 2 } else { 0 };
        test_result_with(
            8,
            "write_faults",
            p1 - p0 == want && seen == (0xa, 0xb),
            format_args!("{} permission faults (want {want}), values {seen:x?}", p1 - p0),
        );
        let n = verify(A + PAGE_SIZE, SEED_N).and(mem::verify_zero(B + PAGE_SIZE, PAGE_SIZE));
        check_mem(9, "neighbours", n);

        fill(A, SEED_3);
        let blocks0 = stat(counter::BLOCKS_MAPPED);
        // SAFETY: test memory.
        let r = unsafe { hyp_alias(A, C) };
        check_eq(10, "third_alias", r, 0);
        let c = verify(C, SEED_3);
        fill(C, SEED_C);
        let all = c.and(verify(A, SEED_C)).and(verify(B, SEED_C));
        check_mem(11, "all_agree", all);
        let next = mem::verify_zero(C + PAGE_SIZE, PAGE_SIZE);
        let blocks = stat(counter::BLOCKS_MAPPED) - blocks0;
        test_result_with(
            12,
            "no_block_over_alias",
            blocks == 0 && next.is_ok(),
            format_args!("{blocks} blocks mapped around C; next page {next:x?}"),
        );

        bad_args(id, vms);
        table_full();

        // SAFETY: test memory.
        let r = unsafe { hyp_unmap(A, PAGE_SIZE) };
        let kept = verify(B, SEED_C).and(verify(C, SEED_C));
        let a = mem::verify_zero(A, PAGE_SIZE);
        // Were the frame freed, the next single pages faulted in would
        // likely get it: they would be zeroed and filled under B and C.
        hyp_set_policy(POLICY_PAGES);
        let mut fresh = Ok(());
        for i in 0..FRESH_PAGES {
            let page = FRESH + i * PAGE_SIZE;
            fresh = fresh.and(mem::verify_zero(page, PAGE_SIZE));
            fill(page, SEED_D);
        }
        let still = verify(B, SEED_C).and(verify(C, SEED_C));
        fill(B, SEED_5);
        let mut after = verify(C, SEED_5);
        for i in 0..FRESH_PAGES {
            after = after.and(verify(FRESH + i * PAGE_SIZE, SEED_D));
        }
        test_result_with(
            16,
            "source_unmapped",
            r == 0 && kept.is_ok() && a.is_ok() && fresh.is_ok() && still.is_ok() && after.is_ok(),
            format_args!(
                "HYP_UNMAP = {r}; B, C kept {kept:x?}; A fresh {a:x?}; fresh pages {fresh:x?}; \
                 B, C after them {still:x?}; B -> C, fresh pages intact {after:x?}"
            ),
        );

        let e1 = stat(counter::ALIAS_ENTRIES);
        // SAFETY: test memory.
        let r = unsafe { hyp_remap(B, REMAPPED) };
        let b = mem::verify(B, PAGE_SIZE, |_| REMAPPED);
        let c = verify(C, SEED_5);
        let e2 = stat(counter::ALIAS_ENTRIES);
        test_result_with(
            17,
            "remap_alias",
            r == 0 && b.is_ok() && c.is_ok() && e2 + 1 == e1,
            format_args!("HYP_REMAP = {r}, B {b:x?}, C {c:x?}, entries {e1} -> {e2}"),
        );
    }

    /// `HYP_SHARE` with `x3` set: the form in which an owner named the IPA
    /// its page would appear at in the other VM.
    ///
    /// # Safety
    ///
    /// As [`hyp_share`].
    unsafe fn share_naming_ipa(src: u64, vm: u64, dst: u64) -> i64 {
        // SAFETY: forwarded from the caller.
        unsafe { guest::rt::hvc::hvc(guest::abi::hyp::HYP_SHARE, src, vm, dst, 0, 0).0 as i64 }
    }

    /// Refused calls return INVALID_PARAMETER and change nothing.
    fn bad_args(id: u64, vms: u64) {
        let end = platform::ram_end();
        let other = if id == 1 && vms >= 2 { 2 } else { 1 };
        let e0 = stat(counter::ALIAS_ENTRIES);
        // SAFETY: every call is invalid; were one accepted, every page it
        // names is test memory or outside RAM.
        let calls = unsafe {
            [
                ("alias same page", hyp_alias(A, A)),
                ("alias unaligned", hyp_alias(A + 8, B)),
                ("alias past RAM", hyp_alias(A, end)),
                ("alias outside RAM", hyp_alias(OUTSIDE_IPA, B)),
                ("share with itself", hyp_share(A, id)),
                ("share with VM 0", hyp_share(A, 0)),
                ("share with VM 9", hyp_share(A, 9)),
                ("share past RAM", hyp_share(end, other)),
                ("share unaligned", hyp_share(A + 0x800, other)),
                // The owner naming the IPA in the other VM: the old form,
                // without the receiver's consent.
                ("share into the other VM", share_naming_ipa(A, other, B)),
                ("accept no offer", hyp_accept(0x0fff_0000, B)),
                ("accept past RAM", hyp_accept(0x0010_0001, end)),
                ("revoke no offer", hyp_revoke(0x0fff_0000)),
            ]
        };
        let mut ok = true;
        for (what, r) in calls {
            // VM 1 of one has no VM 2: `other` is itself, refused as well.
            if r != EINVAL {
                println!("alias: {what}: {r}, want {EINVAL}");
                ok = false;
            }
        }
        let same = verify(B, SEED_C).and(verify(C, SEED_C));
        let e1 = stat(counter::ALIAS_ENTRIES);
        test_result_with(
            13,
            "bad_args",
            ok && same.is_ok() && e1 == e0,
            format_args!("pages {same:x?}, entries {e0} -> {e1}"),
        );
    }

    /// Fills the alias table; the next alias is refused and changes
    /// nothing; unmapping the aliases drops them.
    fn table_full() {
        let e0 = stat(counter::ALIAS_ENTRIES);
        let room = ALIAS_ENTRIES.saturating_sub(e0);
        for i in 0..=room {
            fill(SRCS + i * PAGE_SIZE, SEED_S ^ i);
        }
        let refused_dst = DSTS + room * PAGE_SIZE;
        fill(refused_dst, SEED_D);
        let mut made = 0;
        for i in 0..room {
            // SAFETY: test memory.
            if unsafe { hyp_alias(SRCS + i * PAGE_SIZE, DSTS + i * PAGE_SIZE) } == 0 {
                made += 1;
            }
        }
        // SAFETY: test memory.
        let r = unsafe { hyp_alias(SRCS + room * PAGE_SIZE, refused_dst) };
        let full = stat(counter::ALIAS_ENTRIES);
        let kept = verify(refused_dst, SEED_D);
        let first = verify(DSTS, SEED_S);
        let li = room.saturating_sub(1);
        let last = verify(DSTS + li * PAGE_SIZE, SEED_S ^ li);
        test_result_with(
            14,
            "table_full",
            made == room
                && r == HYP_NO_MEMORY
                && full == ALIAS_ENTRIES
                && kept.is_ok()
                && first.is_ok()
                && last.is_ok(),
            format_args!(
                "{made} of {room} made, then {r} (want {HYP_NO_MEMORY}), {full} entries; \
                 refused page {kept:x?}; aliases {first:x?} {last:x?}"
            ),
        );

        // SAFETY: test memory.
        let r1 = unsafe { hyp_unmap(DSTS, BLOCK_SIZE) };
        let e1 = stat(counter::ALIAS_ENTRIES);
        let fresh = mem::verify_zero(DSTS, PAGE_SIZE);
        let src = verify(SRCS, SEED_S);
        // SAFETY: test memory.
        let r2 = unsafe { hyp_unmap(SRCS, BLOCK_SIZE) };
        test_result_with(
            15,
            "unmap_drops_aliases",
            r1 == 0 && r2 == 0 && e1 == e0 && fresh.is_ok() && src.is_ok(),
            format_args!(
                "HYP_UNMAP = {r1}, {r2}; entries {e1} (want {e0}); alias now {fresh:x?}; \
                 source {src:x?}"
            ),
        );
    }
}
