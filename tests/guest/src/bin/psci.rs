//! `psci`: every PSCI 1.1 function the hypervisor offers a guest, and
//! every refusal it documents (`docs/HYPERVISOR.md`, "Guest contract"),
//! called from a guest and each answer checked. Run with `vcpus=2`.
//!
//! Function ids: an AArch64 guest calls each function in its SMC64 form
//! and, where PSCI also defines one, in its SMC32 form; an ARM32 guest in
//! the SMC32 form only (the one it may use).
//!
//! First boot: `PSCI_VERSION`; `PSCI_FEATURES` of every implemented
//! function (0: no feature flags, `CPU_SUSPEND` included), of
//! `SMCCC_VERSION` (0) and of the unimplemented ones and junk
//! (`NOT_SUPPORTED`), and the unimplemented functions called
//! (`NOT_SUPPORTED`); `SMCCC_VERSION` and `SMCCC_ARCH_FEATURES`;
//! `AFFINITY_INFO` of an off and an on vCPU and at levels above 0;
//! `CPU_ON` of vCPU 1 with entry points outside RAM (`INVALID_ADDRESS`,
//! and it stays off), of MPIDRs that name no vCPU (`INVALID_PARAMETERS`),
//! of the caller (`ALREADY_ON`); vCPU 1 started, checks what it sees
//! (its index and MPIDR, both vCPUs on, `CPU_ON` of either `ALREADY_ON`),
//! `CPU_ON` of it while it runs (`ALREADY_ON`), its `CPU_OFF` (off again
//! for `AFFINITY_INFO`); `MIGRATE_INFO_TYPE` (2); `CPU_SUSPEND` of
//! standby and powerdown states with the virtual timer armed and IRQs
//! masked (returns `SUCCESS` no sooner than the timer fires, whose
//! interrupt is then pending); `CPU_SUSPEND` with reserved bits or a
//! powerdown entry point outside RAM (refused at once); `SYSTEM_RESET2`
//! with reserved and vendor types (`INVALID_PARAMETERS`,
//! `NOT_SUPPORTED`); then `SYSTEM_RESET2` `SYSTEM_WARM_RESET`.
//!
//! After each reset (`resets=N` in the bootargs): the memory written
//! before it reads as zero, vCPU 1 is off, and `CPU_ON` starts it again
//! (AArch64: with the other form of `CPU_ON`); AArch64 resets once more
//! with `SYSTEM_RESET2`'s SMC32 form; the last boot ends with
//! `SYSTEM_OFF`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("psci: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use core::fmt::Write as _;
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

    use guest::abi::{psci, smc32, smccc, IMAGE_BASE, PAGE_SIZE, RAM_BASE, SMCCC_64, TEST_REGION};
    use guest::println;
    use guest::rt::gic::{self, VTIMER_PPI};
    use guest::rt::hvc::hvc;
    use guest::rt::mem::{self, pattern};
    use guest::rt::smp::{self, cpu_index};
    use guest::rt::{check_eq, platform, test_result_with, timer};

    guest::guest_main!("psci", 2000, main);

    /// The PSCI functions the hypervisor implements (SMC64 form where
    /// there are two).
    const IMPLEMENTED: [u64; 10] = [
        psci::VERSION,
        psci::CPU_SUSPEND,
        psci::CPU_OFF,
        psci::CPU_ON,
        psci::AFFINITY_INFO,
        psci::MIGRATE_INFO_TYPE,
        psci::SYSTEM_OFF,
        psci::SYSTEM_RESET,
        psci::FEATURES,
        psci::SYSTEM_RESET2,
    ];

    /// The PSCI 1.1 functions it does not implement.
    const UNIMPLEMENTED: [u64; 11] = [
        psci::MIGRATE,
        psci::MIGRATE_INFO_UP_CPU,
        psci::CPU_FREEZE,
        psci::CPU_DEFAULT_SUSPEND,
        psci::NODE_HW_STATE,
        psci::SYSTEM_SUSPEND,
        psci::SET_SUSPEND_MODE,
        psci::STAT_RESIDENCY,
        psci::STAT_COUNT,
        psci::MEM_PROTECT,
        psci::MEM_PROTECT_CHECK_RANGE,
    ];

    /// Ids `PSCI_FEATURES` must not list: the ends of PSCI's ranges that
    /// no function uses, other SMCCC services' ids, and junk.
    const NOT_PSCI: [u64; 7] = [
        0x8400_001F,
        0xC400_0015,
        smccc::ARCH_FEATURES,
        smccc::ARCH_WORKAROUND_1,
        0xC600_0000, // HYP_VERSION
        0x1234_5678,
        0xFFFF_FFFF,
    ];

    /// The virtual timer's delay for the `CPU_SUSPEND` checks: 20 ms.
    fn suspend_ticks() -> u64 {
        timer::frequency() / 50
    }

    /// The ids this guest may issue for `id` (an SMC64 id where PSCI has
    /// both forms): AArch64 the SMC64 one then the SMC32 one, ARM32 the
    /// SMC32 one; an id with one form, that one.
    fn forms(id: u64) -> impl Iterator<Item = u64> + Clone {
        let narrow = u64::from(smc32(id));
        let wide = (cfg!(target_arch = "aarch64") && narrow != id).then_some(id);
        wide.into_iter().chain(core::iter::once(narrow))
    }

    /// The `n`-th of [`forms`] (wrapping round).
    fn form(id: u64, n: usize) -> u64 {
        let count = forms(id).count();
        forms(id).nth(n % count).unwrap_or(id)
    }

    /// A PSCI or SMCCC call that must leave this VM's memory and vCPUs as
    /// they are (a query, or a call the hypervisor must refuse); `x0`.
    fn query(fid: u64, a1: u64, a2: u64, a3: u64) -> i64 {
        // SAFETY: every caller passes a query or a call the contract
        // refuses: nothing of this vCPU's memory changes, and no vCPU
        // starts (the only entry point in RAM passed is the parking loop,
        // should the hypervisor wrongly start a vCPU there).
        unsafe { hvc(fid, a1, a2, a3, 0, 0).0 as i64 }
    }

    /// Up to this many mismatches are printed per check.
    const SHOWN: u32 = 8;

    /// Counts the answers of a check that differ from what was wanted,
    /// printing the first few.
    struct Tally {
        name: &'static str,
        calls: u32,
        wrong: u32,
    }

    impl Tally {
        fn new(name: &'static str) -> Self {
            Tally { name, calls: 0, wrong: 0 }
        }

        /// One answer: `got` for `what` (printed when wrong), `want` wanted.
        fn expect(&mut self, what: core::fmt::Arguments<'_>, got: i64, want: i64) {
            self.calls += 1;
            if got != want {
                if self.wrong < SHOWN {
                    println!("psci: {}: {what}: got {got}, want {want}", self.name);
                }
                self.wrong += 1;
            }
        }

        /// Reports the check.
        fn report(self, check: u64) -> bool {
            test_result_with(
                check,
                self.name,
                self.wrong == 0 && self.calls > 0,
                format_args!("{} answers, {} wrong", self.calls, self.wrong),
            )
        }
    }

    // --- vCPU 1 -------------------------------------------------------------

    /// What vCPU 1 saw, for vCPU 0 to check.
    static SECONDARY_INDEX: AtomicU64 = AtomicU64::new(u64::MAX);
    static SECONDARY_MPIDR: AtomicU64 = AtomicU64::new(u64::MAX);
    /// Its own answers that were wrong.
    static SECONDARY_WRONG: AtomicU32 = AtomicU32::new(u32::MAX);
    /// It has checked what it sees and waits for `RELEASE`.
    static READY: AtomicBool = AtomicBool::new(false);
    /// vCPU 0 has checked it running: it may return (and `CPU_OFF`).
    static RELEASE: AtomicBool = AtomicBool::new(false);

    /// vCPU 1, started with `CPU_ON`: records its index (the context id
    /// the runtime passes) and MPIDR, checks that both vCPUs are on and
    /// that `CPU_ON` of either is `ALREADY_ON`, waits to be released, and
    /// returns (the runtime then calls `CPU_OFF`).
    fn secondary(cpu: usize) {
        SECONDARY_INDEX.store(cpu as u64, Ordering::SeqCst);
        SECONDARY_MPIDR.store(smp::mpidr(), Ordering::SeqCst);
        let mut t = Tally::new("secondary_view");
        for target in [0, 1] {
            let mpidr = platform::cpu_mpidr(target);
            for fid in forms(psci::AFFINITY_INFO) {
                let got = query(fid, mpidr, 0, 0);
                let want = psci::AFFINITY_ON;
                t.expect(format_args!("AFFINITY_INFO {fid:#x} of vCPU {target}"), got, want);
            }
            for fid in forms(psci::CPU_ON) {
                let got = query(fid, mpidr, parking_entry(), 0);
                let want = psci::ALREADY_ON;
                t.expect(format_args!("CPU_ON {fid:#x} of vCPU {target}"), got, want);
            }
        }
        SECONDARY_WRONG.store(t.wrong + u32::from(t.calls == 0), Ordering::SeqCst);
        READY.store(true, Ordering::SeqCst);
        smp::notify();
        smp::wait_until(|| RELEASE.load(Ordering::SeqCst));
    }

    // --- the timer ----------------------------------------------------------

    static FIRED: AtomicU32 = AtomicU32::new(0);
    static UNEXPECTED: AtomicU32 = AtomicU32::new(0);

    fn handler(id: u32) {
        if id == VTIMER_PPI && cpu_index() == 0 {
            gic::vtimer_stop();
            FIRED.fetch_add(1, Ordering::SeqCst);
        } else {
            UNEXPECTED.fetch_add(1, Ordering::SeqCst);
            println!("psci: unexpected INTID {id} on vCPU {}", cpu_index());
        }
    }

    /// Unmasks IRQs until the timer's interrupt has been taken (at most
    /// about 100 ms), masks them again; how many times it fired.
    fn take_timer_interrupt() -> u32 {
        let limit = timer::frequency() / 10;
        let t0 = gic::vcounter();
        gic::irqs_on();
        while FIRED.load(Ordering::SeqCst) == 0 && gic::vcounter() - t0 < limit {
            core::hint::spin_loop();
        }
        gic::irqs_off();
        gic::vtimer_stop();
        FIRED.swap(0, Ordering::SeqCst)
    }

    // --- boot 0 -------------------------------------------------------------

    fn version_and_features() {
        check_eq(1, "version", query(psci::VERSION, 0, 0, 0), psci::VERSION_1_1);

        let mut t = Tally::new("features_implemented");
        for &f in &IMPLEMENTED {
            for fid in forms(f) {
                let got = query(psci::FEATURES, fid, 0, 0);
                t.expect(format_args!("PSCI_FEATURES({fid:#x})"), got, 0);
            }
        }
        let got = query(psci::FEATURES, smccc::VERSION, 0, 0);
        t.expect(format_args!("PSCI_FEATURES(SMCCC_VERSION)"), got, 0);
        t.report(2);

        let mut t = Tally::new("features_not_supported");
        for &f in UNIMPLEMENTED.iter().chain(&NOT_PSCI) {
            for fid in forms(f) {
                let got = query(psci::FEATURES, fid, 0, 0);
                t.expect(format_args!("PSCI_FEATURES({fid:#x})"), got, psci::NOT_SUPPORTED);
            }
        }
        t.report(3);

        // Called anyway: refused, whatever the arguments.
        let mut t = Tally::new("unimplemented_refused");
        for &f in &UNIMPLEMENTED {
            for fid in forms(f) {
                for a in [[0, 0, 0], [1, parking_entry(), 0]] {
                    let got = query(fid, a[0], a[1], a[2]);
                    t.expect(format_args!("{fid:#x}({a:x?})"), got, psci::NOT_SUPPORTED);
                }
            }
        }
        t.report(4);
    }

    fn smccc() {
        check_eq(5, "smccc_version", query(smccc::VERSION, 0, 0, 0), smccc::VERSION_1_1);
        let mut t = Tally::new("smccc_arch_features");
        for (fid, want) in [
            (smccc::VERSION, 0),
            (smccc::ARCH_FEATURES, 0),
            (smccc::ARCH_WORKAROUND_1, psci::NOT_SUPPORTED),
            (smccc::ARCH_WORKAROUND_2, psci::NOT_SUPPORTED),
            (smccc::ARCH_WORKAROUND_3, psci::NOT_SUPPORTED),
            (smccc::ARCH_SOC_ID, psci::NOT_SUPPORTED),
            (psci::VERSION, psci::NOT_SUPPORTED),
            (0x8000_FFFF, psci::NOT_SUPPORTED),
        ] {
            let got = query(smccc::ARCH_FEATURES, fid, 0, 0);
            t.expect(format_args!("SMCCC_ARCH_FEATURES({fid:#x})"), got, want);
        }
        t.report(6);
    }

    /// `AFFINITY_INFO` of `target` at level 0 with every form.
    fn affinity(t: &mut Tally, target: usize, want: i64) {
        for fid in forms(psci::AFFINITY_INFO) {
            let got = query(fid, platform::cpu_mpidr(target), 0, 0);
            t.expect(format_args!("AFFINITY_INFO {fid:#x} of vCPU {target}"), got, want);
        }
    }

    /// Whether `fid` is an SMC64 id (64-bit arguments).
    fn smc64(fid: u64) -> bool {
        fid & SMCCC_64 != 0
    }

    /// MPIDRs that name no vCPU of a 2-vCPU VM, for function `fid`: with
    /// an SMC64 id also some above 32 bits (an SMC32 id would see their
    /// low halves only, which may name a vCPU).
    fn bad_mpidrs(fid: u64) -> impl Iterator<Item = u64> {
        [2, 0xff, 0x100, 0x101, 0x1_0000, 0xff_0000, 1 << 31, 1 << 32, 0xff_0000_0000]
            .into_iter()
            .filter(move |&m| smc64(fid) || m >> 32 == 0)
    }

    /// Entry points outside the VM's RAM, for function `fid` (as
    /// [`bad_mpidrs`]: one above 4 GiB for an SMC64 id).
    fn bad_entries(fid: u64) -> impl Iterator<Item = u64> {
        let end = platform::ram_end();
        [0, 0x0900_0000, RAM_BASE - 4, end, 0xFFFF_FFFC, IMAGE_BASE | 1 << 32]
            .into_iter()
            .filter(move |&e| smc64(fid) || e >> 32 == 0)
    }

    /// An entry point for calls that must not start a vCPU (`CPU_ON` of
    /// one that is on, a powerdown `CPU_SUSPEND` served as a standby): a
    /// `wfi` loop, so that a vCPU wrongly started there stays parked.
    fn parking_entry() -> u64 {
        guest::rt::psci::halt as *const () as usize as u64
    }

    /// Before vCPU 1 is started: AFFINITY_INFO, and the CPU_ON refusals.
    fn refusals_while_off() {
        let mut t = Tally::new("affinity_info_off");
        affinity(&mut t, 0, psci::AFFINITY_ON);
        affinity(&mut t, 1, psci::AFFINITY_OFF);
        for fid in forms(psci::AFFINITY_INFO) {
            for level in 1..=3 {
                let got = query(fid, platform::cpu_mpidr(0), level, 0);
                let want = psci::INVALID_PARAMETERS;
                t.expect(format_args!("AFFINITY_INFO {fid:#x} level {level}"), got, want);
            }
            for mpidr in bad_mpidrs(fid) {
                let got = query(fid, mpidr, 0, 0);
                let want = psci::INVALID_PARAMETERS;
                t.expect(format_args!("AFFINITY_INFO {fid:#x} of {mpidr:#x}"), got, want);
            }
        }
        t.report(7);

        let mut t = Tally::new("cpu_on_invalid_address");
        for fid in forms(psci::CPU_ON) {
            for entry in bad_entries(fid) {
                let got = query(fid, platform::cpu_mpidr(1), entry, 1);
                let want = psci::INVALID_ADDRESS;
                t.expect(format_args!("CPU_ON {fid:#x} at {entry:#x}"), got, want);
            }
        }
        // Nothing started.
        affinity(&mut t, 1, psci::AFFINITY_OFF);
        t.report(8);

        let mut t = Tally::new("cpu_on_invalid_mpidr");
        for fid in forms(psci::CPU_ON) {
            for mpidr in bad_mpidrs(fid) {
                let got = query(fid, mpidr, parking_entry(), 0);
                let want = psci::INVALID_PARAMETERS;
                t.expect(format_args!("CPU_ON {fid:#x} of {mpidr:#x}"), got, want);
            }
        }
        affinity(&mut t, 1, psci::AFFINITY_OFF);
        t.report(9);

        let mut t = Tally::new("cpu_on_self_already_on");
        for fid in forms(psci::CPU_ON) {
            let got = query(fid, platform::cpu_mpidr(0), parking_entry(), 0);
            t.expect(format_args!("CPU_ON {fid:#x} of vCPU 0"), got, psci::ALREADY_ON);
        }
        t.report(10);
    }

    /// Waits (yielding) until `AFFINITY_INFO` says vCPU 1 is off, at most
    /// about a second; whether it did.
    fn wait_until_off() -> bool {
        smp::wait_until_for(
            || query(psci::AFFINITY_INFO, platform::cpu_mpidr(1), 0, 0) == psci::AFFINITY_OFF,
            1_000_000,
        )
    }

    /// vCPU 1 started with `CPU_ON` issued as `cpu_on_fid`: it runs, sees
    /// the right things, is `ALREADY_ON` while it runs, and `CPU_OFF`
    /// turns it off. Reported as checks `first..first + 3`; `names` their
    /// names.
    fn secondary_round(cpu_on_fid: u64, first: u64, names: [&'static str; 4]) {
        READY.store(false, Ordering::SeqCst);
        RELEASE.store(false, Ordering::SeqCst);
        SECONDARY_WRONG.store(u32::MAX, Ordering::SeqCst);
        let started = smp::start_secondaries_as(cpu_on_fid, 2, secondary);
        smp::wait_until_for(|| READY.load(Ordering::SeqCst), 5_000_000);
        let (index, mpidr) =
            (SECONDARY_INDEX.load(Ordering::SeqCst), SECONDARY_MPIDR.load(Ordering::SeqCst));
        // MPIDR's affinity fields (ARM32: bit 31 is the format bit).
        let aff0 = mpidr & 0xff;
        test_result_with(
            first,
            names[0],
            started.is_ok() && index == 1 && aff0 == platform::cpu_mpidr(1) & 0xff,
            format_args!(
                "CPU_ON {cpu_on_fid:#x}: {started:?}, vCPU 1 runs as index {index}, MPIDR {mpidr:#x}"
            ),
        );
        match SECONDARY_WRONG.load(Ordering::SeqCst) {
            u32::MAX => test_result_with(
                first + 1,
                names[1],
                false,
                format_args!("vCPU 1 never got to its checks"),
            ),
            wrong => test_result_with(
                first + 1,
                names[1],
                wrong == 0,
                format_args!("{wrong} of its answers wrong"),
            ),
        };
        let mut t = Tally::new(names[2]);
        affinity(&mut t, 0, psci::AFFINITY_ON);
        affinity(&mut t, 1, psci::AFFINITY_ON);
        for fid in forms(psci::CPU_ON) {
            let got = query(fid, platform::cpu_mpidr(1), parking_entry(), 0);
            t.expect(format_args!("CPU_ON {fid:#x} of running vCPU 1"), got, psci::ALREADY_ON);
        }
        t.report(first + 2);
        RELEASE.store(true, Ordering::SeqCst);
        smp::notify();
        if started.is_ok() {
            smp::join_secondaries();
        }
        let off = wait_until_off();
        let mut t = Tally::new(names[3]);
        t.expect(format_args!("vCPU 1 off within a second"), i64::from(off), 1);
        affinity(&mut t, 1, psci::AFFINITY_OFF);
        affinity(&mut t, 0, psci::AFFINITY_ON);
        t.report(first + 3);
    }

    fn migrate_info_type() {
        check_eq(15, "migrate_info_type", query(psci::MIGRATE_INFO_TYPE, 0, 0, 0), 2);
    }

    /// `CPU_SUSPEND` of standby and powerdown states with the virtual timer
    /// armed 20 ms ahead and IRQs masked: `SUCCESS`, no sooner than the
    /// timer fires, whose interrupt is then pending.
    fn cpu_suspend_standby() {
        let ticks = suspend_ticks();
        let f = timer::frequency().max(1);
        let mut ok = true;
        let mut line = Line::new();
        let states = [
            (0, 0),
            (1 << psci::POWER_STATE_LEVEL_SHIFT | 0x1234, 0),
            (psci::POWER_STATE_POWERDOWN, parking_entry()),
        ];
        for fid in forms(psci::CPU_SUSPEND) {
            for (state, entry) in states {
                FIRED.store(0, Ordering::SeqCst);
                let t0 = gic::vcounter();
                gic::vtimer_in(ticks);
                // SAFETY: a standby (or a powerdown served as one, which
                // returns like a standby): this vCPU waits for the timer
                // and goes on; `entry`, never used, would park it.
                let r = unsafe { hvc(fid, state, entry, 0, 0, 0).0 as i64 };
                let elapsed = gic::vcounter() - t0;
                let fired = take_timer_interrupt();
                let this = r == psci::SUCCESS && elapsed >= ticks && elapsed < f && fired == 1;
                ok &= this;
                let _ = write!(
                    line,
                    " {fid:#x}/{state:#x}: {r} after {} us{}{};",
                    elapsed * 1_000_000 / f,
                    if fired == 1 { "" } else { ", timer interrupt not pending" },
                    if this { "" } else { " WRONG" },
                );
            }
        }
        test_result_with(
            16,
            "cpu_suspend_standby",
            ok,
            format_args!("timer {} us:{}", ticks * 1_000_000 / f, line.as_str()),
        );
    }

    /// `CPU_SUSPEND` with reserved bits set or a powerdown entry point
    /// outside RAM: refused at once. The timer is armed all the same, so
    /// that a wrongly accepted request returns (`SUCCESS`) rather than
    /// sleeping for ever.
    fn cpu_suspend_refused() {
        let mut t = Tally::new("cpu_suspend_refused");
        FIRED.store(0, Ordering::SeqCst);
        gic::vtimer_in(suspend_ticks());
        for fid in forms(psci::CPU_SUSPEND) {
            for bit in [17, 20, 23, 26, 30, 31] {
                let state = 1u64 << bit;
                let got = query(fid, state, parking_entry(), 0);
                let want = psci::INVALID_PARAMETERS;
                t.expect(format_args!("CPU_SUSPEND {fid:#x}({state:#x})"), got, want);
            }
            for entry in bad_entries(fid) {
                let got = query(fid, psci::POWER_STATE_POWERDOWN, entry, 0);
                let want = psci::INVALID_ADDRESS;
                t.expect(format_args!("CPU_SUSPEND {fid:#x} powerdown at {entry:#x}"), got, want);
            }
        }
        // Let the safety timer fire and take its interrupt.
        let limit = suspend_ticks() * 10;
        let t0 = gic::vcounter();
        gic::irqs_on();
        while FIRED.load(Ordering::SeqCst) == 0 && gic::vcounter() - t0 < limit {
            core::hint::spin_loop();
        }
        gic::irqs_off();
        gic::vtimer_stop();
        FIRED.store(0, Ordering::SeqCst);
        t.report(17);
    }

    fn system_reset2_refused() {
        let mut t = Tally::new("system_reset2_refused");
        for fid in forms(psci::SYSTEM_RESET2) {
            for (ty, want) in [
                (1, psci::INVALID_PARAMETERS),
                (0x7fff_ffff, psci::INVALID_PARAMETERS),
                (psci::RESET_TYPE_VENDOR, psci::NOT_SUPPORTED),
                (psci::RESET_TYPE_VENDOR | 1, psci::NOT_SUPPORTED),
                (0xffff_ffff, psci::NOT_SUPPORTED),
            ] {
                let got = query(fid, ty, 0, 0);
                t.expect(format_args!("SYSTEM_RESET2 {fid:#x} type {ty:#x}"), got, want);
            }
        }
        t.report(18);
    }

    /// `HVC #0` with `r0..r3` as given: the runtime's conduit issues the
    /// SMC32 form of every id, this one issues SMC64 ids too.
    #[cfg(target_arch = "arm")]
    fn raw_hvc(r0: u32, r1: u32, r2: u32, r3: u32) -> i64 {
        let r: u32;
        // SAFETY: `hvc #0` traps to Hyp mode; every caller passes a call
        // the hypervisor must refuse (or, refused or not, one that changes
        // no memory and starts no vCPU anywhere but the parking entry).
        unsafe {
            core::arch::asm!(
                ".arch_extension virt",
                "hvc #0",
                inlateout("r0") r0 => r,
                inlateout("r1") r1 => _,
                inlateout("r2") r2 => _,
                inlateout("r3") r3 => _,
                lateout("r12") _,
                options(nostack),
            );
        }
        r as i32 as i64
    }

    /// ARM32: SMCCC has no SMC64 calls from AArch32. `PSCI_FEATURES`
    /// says the SMC64 PSCI functions are `NOT_SUPPORTED`, and SMC64 ids
    /// are unknown functions (`NOT_SUPPORTED`), where their SMC32 forms
    /// would answer otherwise (each call below has a different answer
    /// when it is carried out).
    #[cfg(target_arch = "arm")]
    fn smc64_refused() {
        let mut t = Tally::new("smc64_refused");
        let wide = |id: u64| id as u32 | SMCCC_64 as u32;
        for &f in &IMPLEMENTED {
            if f & SMCCC_64 != 0 {
                let got = raw_hvc(psci::FEATURES as u32, f as u32, 0, 0);
                t.expect(format_args!("PSCI_FEATURES({f:#x})"), got, psci::NOT_SUPPORTED);
            }
        }
        let parking = parking_entry() as u32;
        for (fid, a, narrow) in [
            (psci::AFFINITY_INFO, [1, 0, 0], psci::AFFINITY_OFF),
            (psci::CPU_ON, [1, parking, 0], psci::SUCCESS),
            (psci::CPU_SUSPEND, [1 << 30, 0, 0], psci::INVALID_PARAMETERS),
            (psci::SYSTEM_RESET2, [1, 0, 0], psci::INVALID_PARAMETERS),
            (guest::abi::hyp::HYP_VERSION, [0, 0, 0], guest::abi::hyp::VERSION_1_0 as i64),
        ] {
            let got = raw_hvc(wide(fid), a[0], a[1], a[2]);
            t.expect(
                format_args!("{:#x} (its SMC32 form answers {narrow})", wide(fid)),
                got,
                psci::NOT_SUPPORTED,
            );
        }
        // Nothing started.
        affinity(&mut t, 1, psci::AFFINITY_OFF);
        t.report(40);
    }

    // --- the resets ---------------------------------------------------------

    /// Marks the page the next boot checks for zeros.
    const SEED: u64 = 0x5053_4349_0000_0001;

    /// `SYSTEM_RESET2` `SYSTEM_WARM_RESET` with the `n`-th form.
    fn warm_reset(n: usize) -> ! {
        let fid = form(psci::SYSTEM_RESET2, n);
        mem::fill(TEST_REGION, PAGE_SIZE, |a| pattern(SEED, a));
        println!("psci: SYSTEM_RESET2 {fid:#x} (warm reset)");
        // SAFETY: the VM restarts from its image; nothing after this runs.
        let r = unsafe { hvc(fid, psci::SYSTEM_WARM_RESET, 0, 0, 0, 0).0 as i64 };
        test_result_with(
            98,
            "system_reset2_returned",
            false,
            format_args!("{fid:#x} returned {r}"),
        );
        guest::rt::finish()
    }

    /// After reset `n` (from 1): the names of its checks.
    const AFTER_RESET: [[&str; 6]; 2] = [
        [
            "reset2_warm",
            "cpu_on_after_reset",
            "secondary_view_after_reset",
            "cpu_on_running_after_reset",
            "cpu_off_after_reset",
            "no_unexpected_irq_after_reset",
        ],
        [
            "reset2_warm_smc32",
            "cpu_on_after_second_reset",
            "secondary_view_after_second_reset",
            "cpu_on_running_after_second_reset",
            "cpu_off_after_second_reset",
            "no_unexpected_irq_after_second_reset",
        ],
    ];

    /// Boot `n` >= 1, after the `n`-th `SYSTEM_RESET2`.
    fn after_reset(n: usize) {
        let names = AFTER_RESET[(n - 1).min(1)];
        let first = 20 + 10 * (n as u64 - 1);
        let fresh = mem::verify_zero(TEST_REGION, PAGE_SIZE);
        let mut t = Tally::new(names[0]);
        affinity(&mut t, 1, psci::AFFINITY_OFF);
        affinity(&mut t, 0, psci::AFFINITY_ON);
        test_result_with(
            first,
            names[0],
            t.wrong == 0 && fresh.is_ok(),
            format_args!(
                "resets={n}, the page written before it: {fresh:x?}, {} AFFINITY_INFO wrong",
                t.wrong
            ),
        );
        secondary_round(form(psci::CPU_ON, n), first + 1, [names[1], names[2], names[3], names[4]]);
        check_eq(first + 5, names[5], UNEXPECTED.load(Ordering::SeqCst), 0);
    }

    fn main(_dtb: u64) {
        let resets: usize = platform::bootarg("resets").and_then(|n| n.parse().ok()).unwrap_or(0);
        let vcpus = platform::cpus_or(1);
        gic::set_handler(handler);
        gic::init_cpu();
        gic::enable(VTIMER_PPI);
        let wanted = forms(psci::SYSTEM_RESET2).count();
        if vcpus < 2 {
            test_result_with(97, "vcpus", false, format_args!("{vcpus} vCPU(s): run with vcpus=2"));
            return;
        }
        if resets > 0 {
            after_reset(resets);
            if resets < wanted {
                warm_reset(resets);
            }
            return;
        }
        version_and_features();
        smccc();
        refusals_while_off();
        secondary_round(
            form(psci::CPU_ON, 0),
            11,
            ["cpu_on_secondary", "secondary_view", "cpu_on_running_already_on", "cpu_off"],
        );
        migrate_info_type();
        cpu_suspend_standby();
        cpu_suspend_refused();
        system_reset2_refused();
        check_eq(19, "no_unexpected_irq", UNEXPECTED.load(Ordering::SeqCst), 0);
        #[cfg(target_arch = "arm")]
        smc64_refused();
        warm_reset(0);
    }

    /// A line of text built without a heap (cut at its capacity).
    struct Line {
        buf: [u8; 512],
        len: usize,
    }

    impl Line {
        fn new() -> Self {
            Line { buf: [0; 512], len: 0 }
        }

        fn as_str(&self) -> &str {
            core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
        }
    }

    impl core::fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
}
