//! `hello`: a smoke test of the guest runtime itself, which also runs
//! without the hypervisor.
//!
//! Checks: running at EL1 (ARM32: in SVC mode, PL1); MMU and caches on;
//! `.data` loaded and `.bss` zeroed; SP inside this vCPU's stack; atomics
//! on Normal memory; the generic timer; a read of `OUTSIDE_IPA`
//! (`0x1_0000_0000`; ARM32: `0xF000_0000`, as 32-bit VAs end at 4 GiB) and
//! of the first IPA past RAM take a synchronous external abort that the
//! vectors catch (QEMU's answer for unassigned addresses too); with PSCI,
//! every vCPU of the DTB starts on its own stack and joins.
//!
//! Plain QEMU, no PSCI (`-device loader`): prints and halts in `wfi`.
//! Plain QEMU with `-kernel hello.bin` (ARM32: `-kernel` with the ELF;
//! QEMU's own PSCI over HVC): the secondaries start too and the VM powers
//! off at the end. Under the hypervisor it reports its checks like the
//! other images.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    println!("hello: a guest image; it runs under the hypervisor (aarch64-unknown-none, armv7a-none-eabi)");
}

#[cfg(target_os = "none")]
mod image {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use guest::abi::OUTSIDE_IPA;
    use guest::println;
    use guest::rt::{boot, exception, hvc, platform, psci, smp, test_result, timer, Barrier};

    guest::guest_main!("hello", 0, main);

    /// In `.data`: must read as initialised.
    static DATA: AtomicU64 = AtomicU64::new(0x1234_5678_9abc_def0);
    /// In `.bss`: must read as zero.
    static BSS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    static STACK_OK: AtomicUsize = AtomicUsize::new(0);
    static BARRIER: Barrier = Barrier::new();
    static NCPUS: AtomicUsize = AtomicUsize::new(1);

    /// The exception level (AArch64 `CurrentEL`).
    #[cfg(target_arch = "aarch64")]
    fn current_el() -> u64 {
        let v: u64;
        // SAFETY: reading CurrentEL has no side effects.
        unsafe { asm!("mrs {}, CurrentEL", out(reg) v, options(nomem, nostack)) };
        let el = (v >> 2) & 3;
        println!("hello: CurrentEL = {el}");
        el
    }

    /// The exception level (ARM32: 1 for the PL1 SVC mode the images run
    /// in, from `CPSR.M`).
    #[cfg(target_arch = "arm")]
    fn current_el() -> u64 {
        let cpsr: u32;
        // SAFETY: reading CPSR has no side effects.
        unsafe { asm!("mrs {}, cpsr", out(reg) cpsr, options(nomem, nostack)) };
        let mode = cpsr & guest::aarch32::MODE_MASK;
        println!("hello: CPSR = {cpsr:#x}, mode {mode:#x}");
        u64::from(mode == guest::aarch32::MODE_SVC)
    }

    /// `SCTLR_EL1`.
    #[cfg(target_arch = "aarch64")]
    fn sysreg_sctlr() -> u64 {
        let v: u64;
        // SAFETY: reading SCTLR_EL1 has no side effects.
        unsafe { asm!("mrs {}, sctlr_el1", out(reg) v, options(nomem, nostack)) };
        v
    }

    /// `SCTLR` (M, C and I are the same bits as in `SCTLR_EL1`).
    #[cfg(target_arch = "arm")]
    fn sysreg_sctlr() -> u64 {
        let v: u32;
        // SAFETY: reading SCTLR has no side effects.
        unsafe { asm!("mrc p15, 0, {}, c1, c0, 0", out(reg) v, options(nomem, nostack)) };
        u64::from(v)
    }

    /// Register names for the console lines.
    #[cfg(target_arch = "aarch64")]
    const NAMES: (&str, &str) = ("SCTLR_EL1", "CNTFRQ_EL0");
    #[cfg(target_arch = "arm")]
    const NAMES: (&str, &str) = ("SCTLR", "CNTFRQ");

    /// True if a local of this frame lies in this vCPU's stack.
    fn on_own_stack() -> bool {
        let local = 0u64;
        let sp = core::ptr::addr_of!(local) as u64;
        let (lo, hi) = boot::stack_bounds(smp::cpu_index());
        lo <= sp && sp < hi
    }

    fn secondary(cpu: usize) {
        if on_own_stack() {
            STACK_OK.fetch_add(1, Ordering::SeqCst);
        }
        COUNTER.fetch_add(1, Ordering::SeqCst);
        println!(
            "hello: cpu {cpu} up, MPIDR {:#x}, {} {:#x}",
            smp::mpidr(),
            NAMES.0,
            sysreg_sctlr()
        );
        BARRIER.wait(NCPUS.load(Ordering::SeqCst));
    }

    fn main(_dtb: u64) {
        test_result(1, "el1", current_el() == 1);

        let sctlr = sysreg_sctlr();
        println!("hello: {} = {sctlr:#x}", NAMES.0);
        test_result(2, "mmu_caches_on", sctlr & 0x1005 == 0x1005);

        let data_ok = DATA.load(Ordering::SeqCst) == 0x1234_5678_9abc_def0;
        let bss_ok = BSS.iter().all(|w| w.load(Ordering::SeqCst) == 0);
        test_result(3, "data_bss", data_ok && bss_ok);

        test_result(4, "stack", on_own_stack());

        let a = AtomicU64::new(5);
        let cas = a.compare_exchange(5, 7, Ordering::SeqCst, Ordering::SeqCst);
        let add = DATA.fetch_add(1, Ordering::SeqCst);
        test_result(5, "atomics", cas == Ok(5) && add == 0x1234_5678_9abc_def0);

        let (f, t0) = (timer::frequency(), timer::counter());
        let t1 = timer::counter();
        println!("hello: {} = {f} Hz", NAMES.1);
        test_result(6, "timer", f != 0 && t1 >= t0);

        // SAFETY: OUTSIDE_IPA is in the runtime's stage-1 map (Device 4-8
        // GiB on AArch64, Normal on ARM32) and has neither RAM nor a
        // device: the read aborts or returns nothing harmful.
        let r = unsafe { exception::probe_read(OUTSIDE_IPA) };
        println!("hello: read {OUTSIDE_IPA:#x}: {r:x?}");
        test_result(
            7,
            "sea_outside",
            matches!(r, Err(s) if s.far.is_none_or(|f| f == OUTSIDE_IPA)),
        );

        let end = platform::ram_end();
        // SAFETY: the first IPA past RAM is mapped Normal or Device by the
        // runtime (below 4 GiB) and is not memory Rust uses.
        let r = unsafe { exception::probe_read(end) };
        println!("hello: read RAM end {end:#x}: {r:x?}");
        test_result(8, "sea_ram_end", matches!(r, Err(s) if s.far.is_none_or(|f| f == end)));

        if hvc::psci_present() {
            let n = platform::cpus_or(1);
            NCPUS.store(n, Ordering::SeqCst);
            println!("hello: PSCI {:#x}; starting {} secondary vCPU(s)", psci::version(), n - 1);
            let started = smp::start_secondaries(n, secondary);
            println!("hello: start_secondaries: {started:?}");
            BARRIER.wait(n);
            smp::join_secondaries();
            let all = COUNTER.load(Ordering::SeqCst) == n - 1;
            let stacks = STACK_OK.load(Ordering::SeqCst) == n - 1;
            test_result(9, "smp", started.is_ok() && all && stacks);
        } else {
            println!("hello: no PSCI: secondaries not started");
        }
    }
}
