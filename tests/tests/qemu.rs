//! Boots the hypervisor under `qemu-system-aarch64` with each guest test
//! image and judges the serial log (see `harness::Run::problems`): exit
//! status 0, no timeout, `vmN: test T PASS` lines from the hypervisor's
//! `HYP_REPORT` log, no `FAIL`, no `PANIC`, and the final
//! `all VMs stopped: powering off`.
//!
//! The first test to run builds everything with `scripts/build.sh` (once
//! per test binary); a missing QEMU fails every test with a clear message
//! (`scripts/setup.sh` installs it). At most two QEMU instances run at
//! once (`HARNESS_QEMU_JOBS`), whatever `--test-threads` says.
//!
//! The fault-path figures are not a test: `cargo run -p harness --bin
//! fault-bench` (see `src/bin/fault-bench.rs`).

use std::time::Duration;

use harness::{
    check_alias_two_vms, check_hostile, check_psci, prepare, switch_input, Qemu, Run, NEEDS_EL2,
};

/// The CPU model with every feature QEMU emulates.
const MAX: &str = "max";
/// A plain ARMv8.0 CPU (no FEAT_TLBIRANGE, no VHE, 40-bit PA).
const A57: &str = "cortex-a57";

/// Builds (once) and runs `qemu`, `HARNESS_REPEAT` times (see
/// `harness::repeat`).
fn boot(qemu: Qemu) -> Run {
    prepare();
    qemu.run_repeated()
}

/// Runs guest image `name` (as initrd) on `cpu` with `smp` CPUs and
/// bootargs `append`, and asserts that it passed.
fn guest(name: &str, cpu: &str, smp: u32, append: &str) -> Run {
    let run = boot(Qemu::new().cpu(cpu).smp(smp).guest(name).append(append));
    run.assert_ok();
    run
}

// --- the built-in demo guest (no initrd) ----------------------------------

#[test]
fn demo_max_smp1() {
    boot(Qemu::new().cpu(MAX).smp(1)).assert_ok();
}

#[test]
fn demo_a57_smp4() {
    boot(Qemu::new().cpu(A57).smp(4)).assert_ok();
}

// --- one guest image each, -cpu max -smp 1 ----------------------------------

#[test]
fn faults_max() {
    guest("faults", MAX, 1, "");
}

#[test]
fn blocks_max() {
    // The guest selects the blocks policy itself (HYP_SET_POLICY).
    guest("blocks", MAX, 1, "");
}

#[test]
fn unmap_max() {
    guest("unmap", MAX, 1, "");
}

#[test]
fn remap_max() {
    guest("remap", MAX, 1, "");
}

#[test]
fn protect_max() {
    guest("protect", MAX, 1, "");
}

#[test]
fn outside_max() {
    guest("outside", MAX, 1, "");
}

// --- a subset on a plain ARMv8.0 CPU ----------------------------------------

#[test]
fn faults_a57() {
    guest("faults", A57, 1, "");
}

#[test]
fn blocks_a57() {
    guest("blocks", A57, 1, "");
}

#[test]
fn protect_a57() {
    guest("protect", A57, 1, "");
}

// --- SMP: one VM with four vCPUs on four CPUs -------------------------------

#[test]
fn smp_max_vcpus4() {
    guest("smp", MAX, 4, "vcpus=4");
}

#[test]
fn smp_a57_vcpus4() {
    guest("smp", A57, 4, "vcpus=4");
}

/// Collapse (in place and copying) while two vCPUs write the region.
#[test]
fn collapse_max_smp4() {
    guest("collapse", MAX, 4, "vcpus=3");
}

#[test]
fn collapse_one_cpu() {
    guest("collapse", MAX, 1, "vcpus=3");
}

#[test]
fn collapse_a57_single_lock() {
    guest("collapse", A57, 4, "vcpus=3 lock=single");
}

/// A 1 GiB block split into 2 MiB blocks and collapsed back in place
/// (guest RAM 2 GiB, so the host needs a free aligned gigabyte).
#[test]
fn huge_one_gib_collapse() {
    boot(Qemu::new().cpu(MAX).smp(2).mem("4G").guest("huge").append("mem=2G")).assert_ok();
}

/// The hypervisor's own policy: collapse each 2 MiB once fully faulted in.
#[test]
fn faults_auto_collapse() {
    guest("faults", MAX, 2, "collapse=1");
}

/// Dirty logging on a block: one split, exactly the written pages.
#[test]
fn dirty_max() {
    guest("dirty", MAX, 1, "");
}

#[test]
fn dirty_a57_smp2() {
    guest("dirty", A57, 2, "");
}

/// PSCI SYSTEM_RESET restarts the VM with fresh memory.
#[test]
fn reset_max_smp2() {
    guest("reset", MAX, 2, "");
}

/// More vCPUs than CPUs: waiting vCPUs yield (WFI is trapped).
#[test]
fn smp_four_vcpus_on_one_cpu() {
    guest("smp", MAX, 1, "vcpus=4");
}

// --- isolation: two VMs ------------------------------------------------------

#[test]
fn isolation_two_vms_smp4() {
    let run = boot(Qemu::new().cpu(MAX).smp(4).guest("isolation").append("vms=2"));
    run.assert_ok_vms(2);
}

#[test]
fn isolation_two_vms_smp1() {
    // One CPU: the two VMs share it (or run one after the other).
    let run = boot(Qemu::new().cpu(MAX).smp(1).guest("isolation").append("vms=2"));
    run.assert_ok_vms(2);
}

// --- aliases and shared pages (HYP_ALIAS, HYP_SHARE) --------------------------

/// Runs the `alias` image in two VMs (VM 1 shares pages with VM 2, resets,
/// and shares one more) and checks what the hypervisor counted: each VM had
/// coherency faults that adjusted mappings, both took part in the shares,
/// VM 2 found VM 1's pages intact after VM 1's reset, nothing failed.
fn alias_two_vms(cpu: &str, smp: u32, append: &str) -> Run {
    let run = boot(Qemu::new().cpu(cpu).smp(smp).guest("alias").append(append));
    check_alias_two_vms(&run, append);
    run
}

#[test]
fn alias_two_vms_smp2() {
    alias_two_vms(MAX, 2, "vms=2");
}

#[test]
fn alias_two_vms_smp2_single_lock() {
    alias_two_vms(MAX, 2, "vms=2 lock=single");
}

#[test]
fn alias_two_vms_smp1() {
    // One CPU: VM 2 waits for VM 1's share with WFI (a yield).
    alias_two_vms(MAX, 1, "vms=2");
}

#[test]
fn alias_two_vms_smp1_single_lock() {
    alias_two_vms(A57, 1, "vms=2 lock=single");
}

/// Two vCPUs per VM fault in aliases of one page at once, round after round.
#[test]
fn alias_two_vms_vcpus2_smp2() {
    alias_two_vms(MAX, 2, "vms=2 vcpus=2");
}

#[test]
fn alias_two_vms_vcpus2_smp2_single_lock_ro() {
    alias_two_vms(A57, 2, "vms=2 vcpus=2 lock=single coherency=ro");
}

#[test]
fn alias_read_only_policy() {
    let run = alias_two_vms(MAX, 2, "vms=2 coherency=ro");
    // Writes through aliases fault under `ro` (the guest checks how many).
    let perm = run.counter("permission faults").unwrap_or_default();
    assert!(perm.len() == 2 && perm.iter().all(|&v| v >= 2), "permission faults {perm:?}\n{run}");
}

/// One VM (no share), two vCPUs; the image ends with SYSTEM_RESET, after
/// which its alias table must be empty.
#[test]
fn alias_one_vm_reset_a57() {
    let run = guest("alias", A57, 2, "vcpus=2");
    run.assert_contains("[vm1] TEST alias/reset_drops_aliases PASS");
    let adjusted = run.counter("aliases adjusted").unwrap_or_default();
    assert!(adjusted.len() == 1 && adjusted[0] >= 2, "aliases adjusted {adjusted:?}\n{run}");
    assert_eq!(run.counter("alias entries"), Some(vec![0]), "{run}");
}

// --- refusal at EL1 ------------------------------------------------------------

#[test]
fn refuses_el1() {
    // Without virtualization=on QEMU enters the image at EL1; the
    // hypervisor says why it stops, and QEMU never exits by itself: the
    // harness kills it once the message is there (or at the timeout).
    let run = boot(
        Qemu::new().cpu(MAX).without_el2().stop_when(NEEDS_EL2).timeout(Duration::from_secs(20)),
    );
    run.assert_contains(NEEDS_EL2);
    run.assert_lacks("PASS");
    run.assert_lacks("PANIC");
    eprintln!("{}", run.summary());
}

// --- hostile guests: isolation of registers, calls, memory --------------------

/// Two VMs take turns on one CPU; each writes every EL1/EL0 register it can
/// reach and checks, after each of the other's turns, that it still holds
/// its own values (timers, PAuth keys, debug, PMU, ...), and that what the
/// ID registers advertise is what is accessible.
#[test]
fn sysregs_two_vms_max() {
    let run = boot(Qemu::new().cpu(MAX).smp(1).guest("sysregs").append("vms=2"));
    check_sysregs_ids(&run, 3);
}

#[test]
fn sysregs_two_vms_a57() {
    boot(Qemu::new().cpu(A57).smp(1).guest("sysregs").append("vms=2")).assert_ok_vms(2);
}

/// VM 1 attacks (probes outside RAM, HVC #1, PSCI CPU_ON of itself and of
/// a spinning vCPU, a consentless share, a reverse-map flood, thousands of
/// random calls, stale-data scans, a second vCPU hammering unmap, remap,
/// collapse, split and protect under the first, a PL011 access across the
/// page end); VM 2 checks it was not harmed.
#[test]
fn hostile_max_smp2_vcpus2() {
    check_hostile(&boot(
        Qemu::new().cpu(MAX).smp(2).guest("hostile").append("vms=2 vcpus=2 mem=64M"),
    ));
}

/// The same on one CPU: the VMs take turns.
#[test]
fn hostile_a57_smp1() {
    check_hostile(&boot(Qemu::new().cpu(A57).smp(1).guest("hostile").append("vms=2 mem=64M")));
}

/// A large VM (768 MiB in 2 MiB blocks) unmaps all of it in one call and
/// then resets: no heap in proportion to its memory.
#[test]
fn hostile_big_unmap_and_reset() {
    let run = boot(Qemu::new().cpu(A57).smp(2).mem("2G").guest("hostile").append("vms=2 mem=768M"));
    check_hostile(&run);
    run.assert_contains("hostile/big_unmap PASS");
    run.assert_contains("hostile/reset_fresh PASS");
}

// --- interrupts, timers and scheduling (the virtual GIC) ----------------------

/// The `irq` image: GIC identity, the virtual timer at 100 Hz, WFI woken
/// by the timer, SGI ping-pong between two vCPUs, nothing unexpected, the
/// host GIC out of reach. `gic`: the machine's GIC version.
fn irq(gic: u32, cpu: &str, smp: u32, vcpus: u32) {
    let run =
        boot(Qemu::new().gic(gic).cpu(cpu).smp(smp).guest("irq").append(&format!("vcpus={vcpus}")));
    run.assert_ok();
    run.assert_contains(&format!("irq: GIC V{gic}"));
    if vcpus > 1 {
        run.assert_contains("irq/sgi_ping_pong PASS");
    }
}

#[test]
fn irq_gicv3_max_smp2() {
    irq(3, MAX, 2, 2);
}

#[test]
fn irq_gicv3_two_vcpus_one_cpu() {
    irq(3, MAX, 1, 2);
}

#[test]
fn irq_gicv3_a57_smp4() {
    irq(3, A57, 4, 4);
}

#[test]
fn irq_gicv2_max_smp2() {
    irq(2, MAX, 2, 2);
}

/// Two VMs on one CPU: VM 1 spins for 1.5 s and never yields, VM 2 sleeps
/// on its timer 50 times and still finishes in time (time slices).
#[test]
fn sched_spinner_and_sleeper_share_a_cpu() {
    let run = boot(Qemu::new().smp(1).guest("sched").append("vms=2"));
    run.assert_ok_vms(2);
    run.assert_contains("sched/sleeper_finishes_beside_spinner PASS");
}

// --- the PL011 as an interactive console ----------------------------------------

/// The `echo` image: its prompt shows although it has no newline, the line
/// the harness types reaches the guest's UARTDR, is echoed on the
/// prompt's line, and the PL011's flags and interrupt registers behave.
#[test]
fn echo_input_max() {
    let run =
        boot(Qemu::new().cpu(MAX).smp(1).guest("echo").input_after("[vm1] echo> ", "hello vm1\r"));
    run.assert_ok();
    run.assert_contains("[vm1] echo> hello vm1\n");
    run.assert_contains("[vm1] TEST echo/line PASS");
}

/// Two VMs on one CPU: input goes to vm1 first; Ctrl-A 2 gives it to vm2,
/// which gets its own line.
#[test]
fn echo_input_two_vms() {
    let run = boot(
        Qemu::new()
            .cpu(MAX)
            .smp(1)
            .guest("echo")
            .append("vms=2")
            .input_after("[vm1] echo> ", "hello vm1\r")
            .input_after("[vm2] echo> ", &format!("{}hello vm2\r", switch_input(2))),
    );
    run.assert_ok_vms(2);
    run.assert_contains("[input: vm2]");
    run.assert_contains("[vm1] TEST echo/line PASS");
    run.assert_contains("[vm2] TEST echo/line PASS");
}

/// The `irqcost` image (the figures of `docs/PERFORMANCE.md` under
/// `-icount`) runs and every SGI it sends arrives.
#[test]
fn irqcost_runs() {
    let run = boot(Qemu::new().smp(1).guest("irqcost"));
    run.assert_ok();
    run.assert_contains("irqcost: 1 kHz timer tick");
}

/// Two VMs of two vCPUs each play SGI ping-pong at the same time on two
/// CPUs: every SGI stays in its VM (each counts exactly its own pongs and
/// no interrupt it did not ask for).
#[test]
fn irq_two_vms_keep_their_sgis() {
    let run = boot(Qemu::new().smp(2).guest("irq").append("vms=2 vcpus=2"));
    run.assert_ok_vms(2);
    for vm in [1, 2] {
        run.assert_contains(&format!("[vm{vm}] TEST irq/sgi_ping_pong PASS"));
        run.assert_contains(&format!("[vm{vm}] TEST irq/no_unexpected_irq PASS"));
    }
}
// --- PSCI 1.1 from a guest ------------------------------------------------------

/// The `psci` image with two vCPUs: every PSCI function the hypervisor
/// offers and every refusal it documents, from the guest (with the SMC64
/// and the SMC32 ids); `CPU_SUSPEND` woken by the virtual timer, no
/// sooner; a warm `SYSTEM_RESET2` with each id, after each of which the
/// VM starts afresh; `SYSTEM_OFF` at the end.
#[test]
fn psci_all_functions_max_smp2() {
    check_psci(&boot(Qemu::new().cpu(MAX).smp(2).guest("psci").append("vcpus=2")), 2, &[]);
}

// --- ID registers with a GICv2 ---------------------------------------------------

/// Judges a `sysregs` run on `-cpu max` with a GIC of `version`: both VMs
/// passed, and each checked every ID register field (`GIC` as the version
/// says) and the instructions of the hidden features.
fn check_sysregs_ids(run: &Run, version: u32) {
    run.assert_ok_vms(2);
    let gic = match version {
        3 => "\"arm,gic-v3\", distributor ArchRev 3",
        _ => "\"arm,cortex-a15-gic\", distributor ArchRev 2",
    };
    for vm in [1, 2] {
        for check in ["id_fields", "hidden_instructions_undefined"] {
            run.assert_contains(&format!("[vm{vm}] TEST sysregs/{check} PASS"));
        }
        run.assert_contains(&format!("[vm{vm}] sysregs: GIC {gic}"));
    }
}

/// `sysregs` on `-cpu max` with a GICv2: the ID registers say there are no
/// GIC system registers (`ID_AA64PFR0_EL1.GIC` 0) and `ICC_PMR_EL1` is
/// UNDEFINED, every other field as with a GICv3.
#[test]
fn sysregs_two_vms_max_gicv2() {
    let run = boot(Qemu::new().gic(2).cpu(MAX).smp(1).guest("sysregs").append("vms=2"));
    check_sysregs_ids(&run, 2);
}

// --- FP/SIMD state ----------------------------------------------------------------

/// The `fpu` image on `smp` CPUs with bootargs `append` (`vms` VMs): each
/// vCPU's V0-V31, FPCR and FPSR survive every yield and WFI (saved with
/// every exit, so never loaded lazily).
fn fpu(cpu: &str, smp: u32, append: &str, vms: usize) -> Run {
    let run = boot(Qemu::new().cpu(cpu).smp(smp).guest("fpu").append(append));
    run.assert_ok_vms(vms);
    for check in ["id_registers", "registers_loaded", "registers_kept", "wfi_kept", "fp_loads"] {
        let line = format!("TEST fpu/{check} PASS");
        assert_eq!(run.log.matches(&line).count(), vms, "{line} once per VM\n{run}");
    }
    assert_eq!(run.counter("FP state loads"), Some(vec![0; vms]), "{run}");
    run
}

/// Two vCPUs take turns on one CPU.
#[test]
fn fpu_two_vcpus_one_cpu_max() {
    fpu(MAX, 1, "vcpus=2", 1);
}

/// Two VMs of two vCPUs on two CPUs: the vCPUs take turns and move
/// between the CPUs.
#[test]
fn fpu_smp2_a57() {
    fpu(A57, 2, "vms=2 vcpus=2", 2);
}
