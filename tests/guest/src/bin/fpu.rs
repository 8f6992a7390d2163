//! `fpu`: each vCPU's FP/SIMD registers are its own. Run with `vcpus=2`
//! on one CPU (the vCPUs take turns on it), and with `vms=2 vcpus=2` on
//! two (four vCPUs take turns on two CPUs and move between them).
//!
//! Every vCPU, for 200 rounds (`ROUNDS`), fills every FP/SIMD register
//! (AArch64: V0-V31, FPCR, FPSR; ARM32: D0-D31, or D0-D15 on a VFP with 16,
//! and FPSCR) with a pattern of its own (its VM and index, the round and
//! the register in it; the control registers' writable fields too), then
//! yields its CPU with `HYP_YIELD` once, then twice in a row, storing all
//! the registers before the first yield and after each batch. Loading,
//! yielding and storing are one `asm!` block, so nothing but the
//! hypervisor runs between them (the AArch64 runtime's own Rust code uses
//! the SIMD registers). A hypervisor that does not switch the state shows
//! the other vCPU's values; one that switches it lazily (ARM32) is caught
//! where a save or load is missing or wrong. Then, 4 times (`SLEEPS`), the
//! same with `WFI` waiting for the virtual timer (IRQs masked at the vCPU)
//! instead of yielding.
//!
//! ARM32 first checks, on every vCPU, what the guest itself controls: a
//! VFP instruction is UNDEFINED while `CPACR` grants no access to CP10 and
//! CP11 (each vCPU's `CPACR` is its own, the primary's being enabled
//! already when the secondaries check theirs), and with access granted
//! but `FPEXC.EN` clear only `FPEXC` (and the ID registers) can be reached:
//! a data instruction is UNDEFINED, also as the vCPU's first VFP access
//! after a yield (which under the hypervisor traps to load its state, then
//! is UNDEFINED in the guest). Then it sets `FPEXC.EN`.
//!
//! Checks: 1 `vcpus` (at least 2), 2 `start`, 3 `undef_without_cpacr`
//! (ARM32), 4 `undef_without_en` (ARM32), 5 `id_registers` (ARM32: MVFR0
//! says 32 registers exactly when D16-D31 can be reached, MVFR1 Advanced
//! SIMD exactly when an Advanced SIMD instruction runs; AArch64:
//! `ID_AA64PFR0_EL1` says FP and AdvSIMD), 6 `registers_loaded` (what was
//! written reads back before any yield), 7 `registers_kept` (every
//! register after every yield, every round, every vCPU), 8 `wfi_kept`,
//! 9 `fp_loads` (ARM32: the hypervisor loaded the state lazily, at least
//! once per round and vCPU; AArch64: never, it saves FP/SIMD on every
//! exit).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "fpu: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)"
    );
}

#[cfg(target_os = "none")]
mod image {
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

    use guest::abi::{counter, hyp::HYP_YIELD, MAX_CPUS};
    use guest::println;
    use guest::rt::gic::{self, VTIMER_PPI};
    use guest::rt::{hvc, platform, smp, stat, test_result_with, timer, Barrier};

    guest::guest_main!("fpu", 2000, main);

    /// Rounds of fill, yields and checks per vCPU.
    const ROUNDS: u32 = 200;
    /// Rounds with `WFI` instead of the yields.
    const SLEEPS: u32 = 4;
    /// Register snapshots per round: before any yield, after one, after two
    /// more.
    const SNAPS: usize = 3;
    /// Mismatches printed per vCPU at most.
    const SHOWN: u32 = 8;

    static NCPUS: AtomicUsize = AtomicUsize::new(1);
    static BARRIER: Barrier = Barrier::new();

    /// Per vCPU: the results of its checks (3, 4, 5 ARM32 only).
    struct Results {
        undef_without_cpacr: AtomicBool,
        undef_without_en: AtomicBool,
        id_registers: AtomicBool,
        /// Mismatches before any yield (the fill itself).
        loaded: AtomicU32,
        /// Mismatches after yields.
        kept: AtomicU32,
        /// Mismatches after `WFI`.
        slept: AtomicU32,
        /// Rounds done.
        rounds: AtomicU32,
    }

    static RESULTS: [Results; MAX_CPUS] = [const {
        Results {
            undef_without_cpacr: AtomicBool::new(false),
            undef_without_en: AtomicBool::new(false),
            id_registers: AtomicBool::new(false),
            loaded: AtomicU32::new(0),
            kept: AtomicU32::new(0),
            slept: AtomicU32::new(0),
            rounds: AtomicU32::new(0),
        }
    }; MAX_CPUS];

    /// Who a pattern belongs to: VM and vCPU (below 128 with at most 8
    /// VMs of 8 vCPUs).
    fn owner(cpu: usize) -> usize {
        platform::vm_id().unwrap_or(1) as usize * MAX_CPUS + cpu
    }

    /// A value unique to its owner ([`owner`]), the round and the register
    /// word `k`, with the owner in its top byte (`0x80 + owner`: `0x88` is
    /// vm1's vCPU 0) for the eye.
    fn pattern(owner: usize, round: u32, k: usize) -> u64 {
        let mut x =
            (owner as u64) << 48 ^ u64::from(round) << 16 ^ k as u64 ^ 0x6a09_e667_f3bc_c908;
        x ^= x >> 31;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 29;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 32;
        (x & 0x00ff_ffff_ffff_ffff) | (0x80 + owner as u64) << 56
    }

    /// Every FP/SIMD register of the vCPU as the assembly stores them.
    #[repr(C, align(16))]
    #[derive(Clone, Copy)]
    pub struct FpState {
        /// The data registers as 64-bit words: AArch64 V0-V31 (low half
        /// first), ARM32 D0-D31.
        w: [u64; arch::WORDS],
        /// AArch64: FPCR, FPSR; ARM32: FPSCR, 0.
        ctl: [u64; 2],
    }

    impl FpState {
        const ZERO: Self = Self { w: [0; arch::WORDS], ctl: [0; 2] };

        /// The pattern of `owner` in `round`.
        fn mine(owner: usize, round: u32) -> Self {
            let mut s = Self::ZERO;
            for (k, w) in s.w.iter_mut().enumerate() {
                *w = pattern(owner, round, k);
            }
            s.ctl = arch::control_pattern(owner as u64, u64::from(round));
            s
        }
    }

    /// Counts (and prints the first few of) the words of `got` that differ
    /// from `want` among the first `words` data words and under `ctl_mask`.
    fn differences(
        cpu: usize,
        what: &str,
        want: &FpState,
        got: &FpState,
        words: usize,
        ctl_mask: [u64; 2],
        shown: &mut u32,
    ) -> u32 {
        let mut n = 0;
        let data = want.w[..words].iter().zip(&got.w[..words]).map(|(w, g)| (*w, *g, u64::MAX));
        let ctl = want.ctl.iter().zip(&got.ctl).zip(ctl_mask).map(|((w, g), m)| (*w, *g, m));
        for (k, (w, g, m)) in data.chain(ctl).enumerate() {
            if w & m != g & m {
                n += 1;
                if *shown < SHOWN {
                    *shown += 1;
                    let name = arch::word_name(k);
                    println!(
                        "fpu: vCPU {cpu} {what}: {name} holds {:#018x}, want {:#018x}",
                        g & m,
                        w & m
                    );
                }
            }
        }
        n
    }

    /// Rounds of fill, yield (or sleep) and check; records the mismatches.
    fn rounds(cpu: usize, count: u32, sleep: bool) {
        let r = &RESULTS[cpu];
        let words = arch::data_words();
        let mut shown = 0;
        let owner = owner(cpu);
        for round in 0..count {
            // The WFI rounds use other patterns than the yield rounds.
            let round_id = if sleep { ROUNDS + round } else { round };
            let src = FpState::mine(owner, round_id);
            let mut snaps = [FpState::ZERO; SNAPS];
            if sleep {
                gic::vtimer_in(timer::frequency() / 1000);
            }
            arch::fill_yield_store(&src, &mut snaps, sleep);
            if sleep {
                gic::vtimer_stop();
            }
            let loaded = differences(
                cpu,
                "as written",
                &src,
                &snaps[0],
                words,
                arch::CTL_WRITABLE,
                &mut shown,
            );
            r.loaded.fetch_add(loaded, Ordering::SeqCst);
            let what = if sleep { "after WFI" } else { "after a yield" };
            let mut later = 0;
            for s in &snaps[1..] {
                later += differences(cpu, what, &snaps[0], s, words, [u64::MAX; 2], &mut shown);
            }
            if sleep {
                r.slept.fetch_add(later, Ordering::SeqCst);
            } else {
                r.kept.fetch_add(later, Ordering::SeqCst);
                r.rounds.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// What every vCPU runs; `cpu` 0 is the primary.
    fn work(cpu: usize) {
        let n = NCPUS.load(Ordering::SeqCst);
        if cpu != 0 {
            // The primary did this before starting the others.
            enable_checked(cpu);
        }
        gic::init_cpu();
        gic::enable(VTIMER_PPI);
        BARRIER.wait(n);
        rounds(cpu, ROUNDS, false);
        BARRIER.wait(n);
        rounds(cpu, SLEEPS, true);
        BARRIER.wait(n);
    }

    /// The vCPU's own enabling of FP/SIMD with its checks (ARM32), and the
    /// ID registers' check.
    fn enable_checked(cpu: usize) {
        let r = &RESULTS[cpu];
        let (cpacr_ok, en_ok) = arch::enable(cpu);
        r.undef_without_cpacr.store(cpacr_ok, Ordering::SeqCst);
        r.undef_without_en.store(en_ok, Ordering::SeqCst);
        r.id_registers.store(arch::id_registers_match(cpu), Ordering::SeqCst);
    }

    fn main(_dtb: u64) {
        let n = platform::cpus_or(2);
        NCPUS.store(n, Ordering::SeqCst);
        test_result_with(1, "vcpus", n >= 2, format_args!("{n} vCPUs (run with vcpus=2)"));
        if !hvc::hyp_present() {
            test_result_with(2, "start", false, format_args!("needs the hypervisor (HYP_YIELD)"));
            return;
        }
        let loads_before = stat(counter::FP_LOADS);
        enable_checked(0);
        let started = smp::start_secondaries(n, work);
        test_result_with(2, "start", started.is_ok(), format_args!("{started:?}"));
        if started.is_err() {
            return;
        }
        work(0);
        smp::join_secondaries();
        let loads = stat(counter::FP_LOADS) - loads_before;

        let all = |f: &dyn Fn(&Results) -> bool| RESULTS[..n].iter().all(f);
        let sum = |f: &dyn Fn(&Results) -> u32| RESULTS[..n].iter().map(f).sum::<u32>();
        if arch::GUEST_CONTROLS_ACCESS {
            test_result_with(
                3,
                "undef_without_cpacr",
                all(&|r| r.undef_without_cpacr.load(Ordering::SeqCst)),
                format_args!("every vCPU: VMRS, VMOV UNDEFINED with CPACR cp10/cp11 0"),
            );
            test_result_with(
                4,
                "undef_without_en",
                all(&|r| r.undef_without_en.load(Ordering::SeqCst)),
                format_args!(
                    "every vCPU: FPEXC readable with EN clear, VMOV and FPSCR UNDEFINED (also \
                     first after a yield)"
                ),
            );
        }
        test_result_with(
            5,
            "id_registers",
            all(&|r| r.id_registers.load(Ordering::SeqCst)),
            format_args!("the ID registers say what works, on every vCPU"),
        );
        let rounds = sum(&|r| r.rounds.load(Ordering::SeqCst));
        test_result_with(
            6,
            "registers_loaded",
            sum(&|r| r.loaded.load(Ordering::SeqCst)) == 0,
            format_args!(
                "{} words differ from what was written",
                sum(&|r| r.loaded.load(Ordering::SeqCst))
            ),
        );
        let kept = sum(&|r| r.kept.load(Ordering::SeqCst));
        test_result_with(
            7,
            "registers_kept",
            kept == 0 && rounds == ROUNDS * n as u32,
            format_args!(
                "{kept} words changed across {} yields on {n} vCPUs ({rounds} rounds)",
                rounds * 3
            ),
        );
        let slept = sum(&|r| r.slept.load(Ordering::SeqCst));
        test_result_with(
            8,
            "wfi_kept",
            slept == 0,
            format_args!("{slept} words changed across {} WFIs", SLEEPS * n as u32 * 3),
        );
        let (ok, want) = if arch::LAZY {
            (loads >= u64::from(ROUNDS) * n as u64, "at least one per round and vCPU")
        } else {
            (loads == 0, "none: FP/SIMD is switched with every exit")
        };
        test_result_with(9, "fp_loads", ok, format_args!("{loads} lazy loads ({want})"));
    }

    #[cfg(target_arch = "aarch64")]
    mod arch {
        //! AArch64: V0-V31, FPCR, FPSR; the runtime's boot code has enabled
        //! FP/SIMD (`CPACR_EL1.FPEN`).

        use super::{FpState, HYP_YIELD, SNAPS};

        /// 64-bit words of data registers: V0-V31.
        pub const WORDS: usize = 64;
        /// The guest has no FP/SIMD control of its own to check here.
        pub const GUEST_CONTROLS_ACCESS: bool = false;
        /// The hypervisor saves FP/SIMD on every exit: no lazy loads.
        pub const LAZY: bool = false;
        /// FPCR: AHP, DN, FZ, RMode; FPSR: QC, IDC, IXC..IOC.
        pub const CTL_WRITABLE: [u64; 2] = [0x07c0_0000, 0x0800_009f];

        pub fn data_words() -> usize {
            WORDS
        }

        pub fn control_pattern(owner: u64, round: u64) -> [u64; 2] {
            let fpcr = (owner & 1) << 26
                | ((round >> 1) & 1) << 25
                | ((round >> 2) & 1) << 24
                | (round & 3) << 22;
            let fpsr = (round & 1) << 27 | ((round ^ (owner * 7)) & 0x1f) | ((round >> 3) & 1) << 7;
            [fpcr, fpsr]
        }

        pub fn word_name(k: usize) -> Name {
            Name(k)
        }

        /// Word `.0` of an [`FpState`]: a V register's half, FPCR or FPSR.
        pub struct Name(usize);

        impl core::fmt::Display for Name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.0 {
                    k @ 0..64 => write!(f, "V{}[{}]", k / 2, ["63:0", "127:64"][k % 2]),
                    64 => f.write_str("FPCR"),
                    _ => f.write_str("FPSR"),
                }
            }
        }

        /// Nothing to enable (the boot code did); nothing to check.
        pub fn enable(_cpu: usize) -> (bool, bool) {
            (true, true)
        }

        /// `ID_AA64PFR0_EL1` says FP and AdvSIMD are there (they are used).
        pub fn id_registers_match(cpu: usize) -> bool {
            let pfr0: u64;
            // SAFETY: reading an ID register has no side effects.
            unsafe {
                core::arch::asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack))
            };
            let (fp, simd) = ((pfr0 >> 16) & 0xf, (pfr0 >> 20) & 0xf);
            if cpu == 0 {
                guest::println!("fpu: ID_AA64PFR0_EL1 {pfr0:#x}: FP {fp:#x}, AdvSIMD {simd:#x}");
            }
            fp != 0xf && simd != 0xf
        }

        /// Loads every register from `src`, stores them all into
        /// `snaps[0]`, then yields (`HYP_YIELD`; `WFI` if `sleep`) once and
        /// stores them into `snaps[1]`, twice and stores them into
        /// `snaps[2]`.
        pub fn fill_yield_store(src: &FpState, snaps: &mut [FpState; SNAPS], sleep: bool) {
            // SAFETY: reads `src` and writes `snaps` (528 bytes each, 16-
            // byte aligned) and nothing else; every SIMD register is
            // declared clobbered (v0-v7 and v16-v31 by the C ABI, v8-v15
            // here), as are x0-x17; `hvc #0` is the HYP_YIELD call, which
            // changes nothing but x0 (and the scheduling), `wfi` waits.
            unsafe {
                core::arch::asm!(
                    "ldp q0, q1, [x9, #0]",
                    "ldp q2, q3, [x9, #32]",
                    "ldp q4, q5, [x9, #64]",
                    "ldp q6, q7, [x9, #96]",
                    "ldp q8, q9, [x9, #128]",
                    "ldp q10, q11, [x9, #160]",
                    "ldp q12, q13, [x9, #192]",
                    "ldp q14, q15, [x9, #224]",
                    "ldp q16, q17, [x9, #256]",
                    "ldp q18, q19, [x9, #288]",
                    "ldp q20, q21, [x9, #320]",
                    "ldp q22, q23, [x9, #352]",
                    "ldp q24, q25, [x9, #384]",
                    "ldp q26, q27, [x9, #416]",
                    "ldp q28, q29, [x9, #448]",
                    "ldp q30, q31, [x9, #480]",
                    "add x16, x9, #512",
                    "ldp x11, x12, [x16]",
                    "msr fpcr, x11",
                    "msr fpsr, x12",
                    "mov x13, #0",
                    // A snapshot, then x13 more yields (or sleeps).
                    "2:",
                    "stp q0, q1, [x10, #0]",
                    "stp q2, q3, [x10, #32]",
                    "stp q4, q5, [x10, #64]",
                    "stp q6, q7, [x10, #96]",
                    "stp q8, q9, [x10, #128]",
                    "stp q10, q11, [x10, #160]",
                    "stp q12, q13, [x10, #192]",
                    "stp q14, q15, [x10, #224]",
                    "stp q16, q17, [x10, #256]",
                    "stp q18, q19, [x10, #288]",
                    "stp q20, q21, [x10, #320]",
                    "stp q22, q23, [x10, #352]",
                    "stp q24, q25, [x10, #384]",
                    "stp q26, q27, [x10, #416]",
                    "stp q28, q29, [x10, #448]",
                    "stp q30, q31, [x10, #480]",
                    "mrs x11, fpcr",
                    "mrs x12, fpsr",
                    "add x16, x10, #512",
                    "stp x11, x12, [x16]",
                    "add x10, x10, #528",
                    "cmp x13, #{last}",
                    "b.eq 4f",
                    "add x13, x13, #1",
                    "mov x14, x13",
                    "3:",
                    "cbnz x15, 5f",
                    "movz x0, #{yield_lo}",
                    "movk x0, #{yield_hi}, lsl #16",
                    "hvc #0",
                    "b 6f",
                    "5:",
                    "wfi",
                    "6:",
                    "subs x14, x14, #1",
                    "b.ne 3b",
                    "b 2b",
                    "4:",
                    last = const SNAPS - 1,
                    yield_lo = const HYP_YIELD & 0xffff,
                    yield_hi = const (HYP_YIELD >> 16) & 0xffff,
                    inout("x9") src as *const FpState => _,
                    inout("x10") snaps.as_mut_ptr() => _,
                    inout("x15") u64::from(sleep) => _,
                    out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                    out("v12") _, out("v13") _, out("v14") _, out("v15") _,
                    clobber_abi("C"),
                    options(nostack),
                )
            };
        }
    }

    #[cfg(target_arch = "arm")]
    mod arch {
        //! ARM32: D0-D31 (D0-D15 where the VFP has 16), FPSCR; the vCPU
        //! enables CP10 and CP11 in its CPACR and sets FPEXC.EN itself.
        //!
        //! The runtime is soft-float (`armv7a-none-eabi`): its Rust code
        //! never touches a VFP register, so the assembly below declares
        //! none clobbered (it could not: the target has no VFP registers
        //! to name).

        use core::arch::asm;
        use core::sync::atomic::{AtomicBool, Ordering};

        use guest::abi::smc32;
        use guest::println;
        use guest::rt::exception::catch_undefined;
        use guest::rt::smp::yield_now;

        use super::{FpState, HYP_YIELD, SNAPS};

        /// 64-bit words of data registers: D0-D31.
        pub const WORDS: usize = 32;
        /// The guest's CPACR and FPEXC decide what it may reach.
        pub const GUEST_CONTROLS_ACCESS: bool = true;
        /// The hypervisor loads VFP state lazily.
        pub const LAZY: bool = true;
        /// FPSCR: NZCV, QC, AHP, DN, FZ, RMode, IDC, IXC..IOC (Len and
        /// Stride stay 0, the trap enables are not implemented).
        pub const CTL_WRITABLE: [u64; 2] = [0xffc0_009f, 0];
        /// `CPACR`: CP10 and CP11 full access.
        const CPACR_CP10_CP11: u32 = 0b1111 << 20;
        /// `FPEXC.EN`.
        const FPEXC_EN: u32 = 1 << 30;

        /// Whether D16-D31 exist (MVFR0 says 32 registers).
        static D32: AtomicBool = AtomicBool::new(false);

        pub fn data_words() -> usize {
            if D32.load(Ordering::Relaxed) {
                32
            } else {
                16
            }
        }

        pub fn control_pattern(owner: u64, round: u64) -> [u64; 2] {
            let fpscr = ((owner + round) & 0xf) << 28
                | (round & 1) << 27
                | (owner & 1) << 26
                | ((round >> 1) & 1) << 25
                | ((round >> 2) & 1) << 24
                | (round & 3) << 22
                | ((round ^ (owner * 7)) & 0x1f)
                | ((round >> 3) & 1) << 7;
            [fpscr, 0]
        }

        pub fn word_name(k: usize) -> Name {
            Name(k)
        }

        /// Word `.0` of an [`FpState`]: a D register or FPSCR.
        pub struct Name(usize);

        impl core::fmt::Display for Name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.0 {
                    k @ 0..32 => write!(f, "D{k}"),
                    32 => f.write_str("FPSCR"),
                    _ => f.write_str("(pad)"),
                }
            }
        }

        fn set_cpacr(v: u32) {
            // SAFETY: the vCPU's own coprocessor access control; the ISB
            // makes the change visible to what follows.
            unsafe { asm!("mcr p15, 0, {}, c1, c0, 2", "isb", in(reg) v, options(nomem, nostack)) };
        }

        fn cpacr() -> u32 {
            let v: u32;
            // SAFETY: reading CPACR has no side effects.
            unsafe { asm!("mrc p15, 0, {}, c1, c0, 2", out(reg) v, options(nomem, nostack)) };
            v
        }

        fn fpexc() -> u32 {
            let v: u32;
            // SAFETY: reading FPEXC has no side effects (UNDEFINED without
            // CP10 access: callers catch that).
            unsafe { asm!(".fpu vfpv3", "vmrs {}, fpexc", out(reg) v, options(nomem, nostack)) };
            v
        }

        fn set_fpexc(v: u32) {
            // SAFETY: the vCPU's own VFP enable.
            unsafe { asm!(".fpu vfpv3", "vmsr fpexc, {}", in(reg) v, options(nomem, nostack)) };
        }

        fn fpscr() -> u32 {
            let v: u32;
            // SAFETY: reading FPSCR has no side effects (UNDEFINED while
            // FPEXC.EN is clear: callers catch that).
            unsafe { asm!(".fpu vfpv3", "vmrs {}, fpscr", out(reg) v, options(nomem, nostack)) };
            v
        }

        /// A VFP data instruction (`VMOV` to D0).
        fn vmov_d0() {
            // SAFETY: writes D0, which Rust code does not use.
            unsafe {
                asm!(".fpu vfpv3", "vmov d0, {0}, {0}", in(reg) 0x1234_5678u32, options(nomem, nostack))
            };
        }

        /// Checks what the guest controls and enables the VFP for this
        /// vCPU: (UNDEFINED without CPACR access, UNDEFINED with FPEXC.EN
        /// clear).
        pub fn enable(cpu: usize) -> (bool, bool) {
            // No access: every VFP instruction is UNDEFINED, FPEXC too.
            let was = cpacr();
            set_cpacr(was & !CPACR_CP10_CP11);
            let (_, u_fpexc) = catch_undefined(fpexc);
            let (_, u_vmov) = catch_undefined(vmov_d0);
            let no_cpacr = u_fpexc && u_vmov && was & CPACR_CP10_CP11 == 0;
            if !no_cpacr {
                println!(
                    "fpu: vCPU {cpu}: CPACR {was:#x} at entry; without CP10/CP11 access: FPEXC \
                     {}, VMOV {}",
                    if u_fpexc { "UNDEFINED" } else { "readable" },
                    if u_vmov { "UNDEFINED" } else { "ran" }
                );
            }
            // Access, EN clear: FPEXC is readable, data instructions and
            // FPSCR are not; also as the first access after a yield (which
            // under the hypervisor traps first, to load the vCPU's state).
            set_cpacr(was | CPACR_CP10_CP11);
            let (exc, u_read) = catch_undefined(fpexc);
            let (_, u_vmov) = catch_undefined(vmov_d0);
            let (_, u_fpscr) = catch_undefined(fpscr);
            yield_now();
            let (_, u_after_yield) = catch_undefined(vmov_d0);
            let no_en = !u_read && exc & FPEXC_EN == 0 && u_vmov && u_fpscr && u_after_yield;
            if !no_en {
                println!(
                    "fpu: vCPU {cpu}: with FPEXC.EN clear: FPEXC {} ({exc:#x}), VMOV {}, FPSCR \
                     {}, VMOV after a yield {}",
                    if u_read { "UNDEFINED" } else { "readable" },
                    if u_vmov { "UNDEFINED" } else { "ran" },
                    if u_fpscr { "UNDEFINED" } else { "readable" },
                    if u_after_yield { "UNDEFINED" } else { "ran" },
                );
            }
            set_fpexc(exc | FPEXC_EN);
            (no_cpacr, no_en)
        }

        /// FPSID, MVFR0, MVFR1.
        fn ids() -> [u32; 3] {
            let (sid, m0, m1): (u32, u32, u32);
            // SAFETY: reading the VFP ID registers has no side effects.
            unsafe {
                asm!(".fpu vfpv3", "vmrs {}, fpsid", "vmrs {}, mvfr0", "vmrs {}, mvfr1",
                    out(reg) sid, out(reg) m0, out(reg) m1, options(nomem, nostack))
            };
            [sid, m0, m1]
        }

        /// MVFR0 and MVFR1 say what works: D16-D31 exactly when MVFR0 says
        /// 32 registers, Advanced SIMD integer instructions exactly when
        /// MVFR1 says so. Records whether D16-D31 are there.
        pub fn id_registers_match(cpu: usize) -> bool {
            let (ids, undef) = catch_undefined(ids);
            let [fpsid, mvfr0, mvfr1] = ids;
            let says_d32 = mvfr0 & 0xf == 2;
            let says_simd = (mvfr1 >> 12) & 0xf != 0;
            // SAFETY: writes D16 (UNDEFINED without it: caught), which Rust
            // code does not use.
            let (_, no_d16) = catch_undefined(|| unsafe {
                asm!(".fpu vfpv3", "vmov d16, {0}, {0}", in(reg) 0u32, options(nomem, nostack))
            });
            // SAFETY: writes Q0 (D0, D1), which Rust code does not use.
            let (_, no_simd) = catch_undefined(|| unsafe {
                asm!(".fpu neon", "vadd.i32 q0, q0, q0", options(nomem, nostack))
            });
            if cpu == 0 {
                println!(
                    "fpu: FPSID {fpsid:#x}, MVFR0 {mvfr0:#x}, MVFR1 {mvfr1:#x}: D16-D31 {}, \
                     Advanced SIMD {}",
                    if no_d16 { "UNDEFINED" } else { "there" },
                    if no_simd { "UNDEFINED" } else { "there" }
                );
            }
            let (has_d32, has_simd) = (!no_d16, !no_simd);
            D32.store(says_d32 && has_d32, Ordering::Relaxed);
            !undef && says_d32 == has_d32 && says_simd == has_simd
        }

        /// Loads every register from `src`, stores them all into
        /// `snaps[0]`, then yields (`HYP_YIELD`; `WFI` if `sleep`) once and
        /// stores them into `snaps[1]`, twice and stores them into
        /// `snaps[2]`.
        pub fn fill_yield_store(src: &FpState, snaps: &mut [FpState; SNAPS], sleep: bool) {
            let d32 = u32::from(D32.load(Ordering::Relaxed));
            // SAFETY: reads `src` and writes `snaps` (272 bytes each) and
            // nothing else; the VFP registers it overwrites are used by
            // nothing else (soft-float); `hvc #0` is the HYP_YIELD call,
            // which changes nothing but r0 (r0-r3 declared clobbered) and
            // the scheduling, `wfi` waits.
            unsafe {
                asm!(
                    ".fpu neon-vfpv4",
                    ".arch_extension virt",
                    "vldmia r4, {{d0-d15}}",
                    "cmp r8, #0",
                    "addne r0, r4, #128",
                    "vldmiane r0, {{d16-d31}}",
                    "ldr r0, [r4, #256]",
                    "vmsr fpscr, r0",
                    "mov r10, #0",
                    // A snapshot, then r10 more yields (or sleeps).
                    "2:",
                    "vstmia r5, {{d0-d15}}",
                    "cmp r8, #0",
                    "addne r0, r5, #128",
                    "vstmiane r0, {{d16-d31}}",
                    "vmrs r0, fpscr",
                    "str r0, [r5, #256]",
                    "add r5, r5, #272",
                    "cmp r10, #{last}",
                    "beq 4f",
                    "add r10, r10, #1",
                    "mov r12, r10",
                    "3:",
                    "cmp lr, #0",
                    "bne 5f",
                    "movw r0, #{yield_lo}",
                    "movt r0, #{yield_hi}",
                    "hvc #0",
                    "b 6f",
                    "5:",
                    "wfi",
                    "6:",
                    "subs r12, r12, #1",
                    "bne 3b",
                    "b 2b",
                    "4:",
                    last = const SNAPS - 1,
                    yield_lo = const smc32(HYP_YIELD) & 0xffff,
                    yield_hi = const smc32(HYP_YIELD) >> 16,
                    in("r4") src as *const FpState,
                    inout("r5") snaps.as_mut_ptr() => _,
                    in("r8") d32,
                    out("r10") _,
                    out("r12") _,
                    inout("lr") u32::from(sleep) => _,
                    out("r0") _,
                    out("r1") _,
                    out("r2") _,
                    out("r3") _,
                    options(nostack),
                )
            };
        }
    }
}
