//! The same scenarios as `qemu.rs`, for ARM32: the hypervisor in ARMv7
//! Hyp mode (`out/arm/hyp.bin`) on `qemu-system-arm -M
//! virt,virtualization=on`, with the guest test images built for ARMv7
//! (`out/arm/guest-<name>.bin`, run in SVC mode), on a Cortex-A15 and a
//! Cortex-A7, with `-smp 1` and `-smp 2`.
//!
//! Left out, because ARMv7 cannot have them: the FEAT_TLBIRANGE variants
//! (ARMv7 has no stage-2 invalidation by IPA at all: every invalidation
//! is the whole VMID, which `arm_tlb_whole_vmid_only` checks from the
//! counters).

use std::time::Duration;

use harness::{
    check_alias_two_vms, check_hostile, check_psci, prepare, switch_input, Qemu, Run, NEEDS_HYP,
};

const A15: &str = "cortex-a15";
const A7: &str = "cortex-a7";

/// Builds (once) and runs `qemu`, `HARNESS_REPEAT` times (see
/// `harness::repeat`).
fn boot(qemu: Qemu) -> Run {
    prepare();
    qemu.run_repeated()
}

/// Runs ARM32 guest image `name` (as initrd) on `cpu` with `smp` CPUs and
/// bootargs `append`, and asserts that it passed.
fn guest(name: &str, cpu: &str, smp: u32, append: &str) -> Run {
    let run = boot(Qemu::arm().cpu(cpu).smp(smp).guest(name).append(append));
    run.assert_ok();
    run
}

// --- the built-in demo guest -------------------------------------------------

#[test]
fn arm_demo_a15_smp1() {
    boot(Qemu::arm().cpu(A15).smp(1)).assert_ok();
}

#[test]
fn arm_demo_a7_smp2() {
    boot(Qemu::arm().cpu(A7).smp(2)).assert_ok();
}

// --- the stage-2 fault path, -smp 1 and -smp 2 -------------------------------

#[test]
fn arm_faults_a15_smp1() {
    guest("faults", A15, 1, "");
}

#[test]
fn arm_faults_a7_smp2() {
    guest("faults", A7, 2, "");
}

#[test]
fn arm_blocks_a15_smp1() {
    guest("blocks", A15, 1, "");
}

#[test]
fn arm_blocks_a7_smp2() {
    guest("blocks", A7, 2, "");
}

#[test]
fn arm_unmap_a15_smp1() {
    guest("unmap", A15, 1, "");
}

#[test]
fn arm_unmap_a7_smp2() {
    guest("unmap", A7, 2, "");
}

/// Remap with the stale-TLB check.
#[test]
fn arm_remap_a15_smp1() {
    guest("remap", A15, 1, "");
}

#[test]
fn arm_remap_a7_smp2() {
    guest("remap", A7, 2, "");
}

#[test]
fn arm_protect_a15_smp1() {
    guest("protect", A15, 1, "");
}

#[test]
fn arm_protect_a7_smp2() {
    guest("protect", A7, 2, "");
}

#[test]
fn arm_outside_a15_smp1() {
    guest("outside", A15, 1, "");
}

#[test]
fn arm_dirty_a15_smp2() {
    guest("dirty", A15, 2, "");
}

#[test]
fn arm_reset_a7_smp2() {
    guest("reset", A7, 2, "");
}

// --- SMP --------------------------------------------------------------------

#[test]
fn arm_smp_vcpus2_smp2() {
    guest("smp", A15, 2, "vcpus=2");
}

#[test]
fn arm_smp_four_vcpus_on_one_cpu() {
    guest("smp", A7, 1, "vcpus=4");
}

/// Collapse (in place and copying) while two vCPUs write the region.
#[test]
fn arm_collapse_a15_smp2() {
    guest("collapse", A15, 2, "vcpus=3");
}

#[test]
fn arm_collapse_a7_smp1_single_lock() {
    guest("collapse", A7, 1, "vcpus=3 lock=single");
}

/// 1 GiB blocks: split and collapse of a level-1 block. QEMU puts the
/// last GiB of `-m 4G` above 4 GiB, out of the Hyp-mode map; the other
/// 3 GiB hold the guest's 2 GiB.
#[test]
fn arm_huge_one_gib_collapse() {
    let run = boot(Qemu::arm().cpu(A15).smp(2).mem("4G").guest("huge").append("mem=2G"));
    run.assert_ok();
    run.assert_contains("RAM above 4 GiB left unused");
}

#[test]
fn arm_faults_auto_collapse_smp2() {
    guest("faults", A15, 2, "collapse=1");
}

// --- two VMs -----------------------------------------------------------------

#[test]
fn arm_isolation_two_vms_smp2() {
    boot(Qemu::arm().cpu(A15).smp(2).guest("isolation").append("vms=2")).assert_ok_vms(2);
}

#[test]
fn arm_isolation_two_vms_smp1() {
    boot(Qemu::arm().cpu(A7).smp(1).guest("isolation").append("vms=2")).assert_ok_vms(2);
}

// --- adjust_pte: aliases and shared pages ----------------------------------------

fn alias_two_vms(cpu: &str, smp: u32, append: &str) -> Run {
    let run = boot(Qemu::arm().cpu(cpu).smp(smp).guest("alias").append(append));
    check_alias_two_vms(&run, append);
    run
}

#[test]
fn arm_alias_two_vms_smp1() {
    alias_two_vms(A15, 1, "vms=2");
}

#[test]
fn arm_alias_two_vms_smp2_single_lock() {
    alias_two_vms(A7, 2, "vms=2 lock=single");
}

#[test]
fn arm_alias_two_vms_vcpus2_smp2() {
    alias_two_vms(A15, 2, "vms=2 vcpus=2");
}

#[test]
fn arm_alias_read_only_policy_smp2() {
    let run = alias_two_vms(A7, 2, "vms=2 coherency=ro");
    let perm = run.counter("permission faults").unwrap_or_default();
    assert!(perm.len() == 2 && perm.iter().all(|&v| v >= 2), "permission faults {perm:?}\n{run}");
}

// --- TLB maintenance without per-IPA invalidation ------------------------------

/// ARMv7 cannot invalidate stage 2 by IPA: every invalidation the remap
/// and unmap tests caused was of the whole VMID, and there were some.
#[test]
fn arm_tlb_whole_vmid_only() {
    let run = guest("remap", A15, 1, "");
    let by_ipa = run.counter("TLBI by IPA").unwrap_or_else(|| panic!("no TLBI by IPA row\n{run}"));
    let whole =
        run.counter("TLBI whole VMID").unwrap_or_else(|| panic!("no whole-VMID row\n{run}"));
    assert_eq!(by_ipa, [0], "{run}");
    assert!(whole[0] > 0, "no whole-VMID invalidation\n{run}");
}

// --- entry checks ------------------------------------------------------------

/// Without `virtualization=on` QEMU enters the kernel in SVC mode: the
/// hypervisor says why it cannot run and stops.
#[test]
fn arm_refuses_svc_mode() {
    let run = boot(Qemu::arm().without_el2().stop_when(NEEDS_HYP).timeout(Duration::from_secs(20)));
    run.assert_contains(NEEDS_HYP);
    run.assert_contains("entered in SVC mode");
    run.assert_lacks("PASS");
    run.assert_lacks("PANIC");
}

// --- hostile guests -------------------------------------------------------------

/// Two VMs take turns on one CPU and check no PL1/PL0 register (timers,
/// CSSELR, PMU, debug) carries the other's values.
#[test]
fn arm_sysregs_two_vms_a15() {
    boot(Qemu::arm().cpu(A15).smp(1).guest("sysregs").append("vms=2")).assert_ok_vms(2);
}

#[test]
fn arm_sysregs_two_vms_a7() {
    boot(Qemu::arm().cpu(A7).smp(1).guest("sysregs").append("vms=2")).assert_ok_vms(2);
}

/// The `hostile` image (see `qemu.rs`) on ARMv7: VM 1 attacks, VM 2
/// checks it was not harmed.
#[test]
fn arm_hostile_a15_smp2_vcpus2() {
    check_hostile(&boot(
        Qemu::arm().cpu(A15).smp(2).guest("hostile").append("vms=2 vcpus=2 mem=64M"),
    ));
}

/// A large ARM32 VM unmaps 700 MiB of blocks in one call, then resets.
#[test]
fn arm_hostile_big_unmap_and_reset_a7() {
    let run = boot(Qemu::arm().cpu(A7).smp(2).mem("2G").guest("hostile").append("vms=2 mem=768M"));
    check_hostile(&run);
    run.assert_contains("hostile/big_unmap PASS");
    run.assert_contains("hostile/reset_fresh PASS");
}

// --- interrupts, timers and scheduling (virtual GICv2) ------------------------

/// The `irq` image on ARMv7 with its GICv2 (see `qemu.rs`).
#[test]
fn arm_irq_gicv2_a15_smp2() {
    let run = boot(Qemu::arm().cpu(A15).smp(2).guest("irq").append("vcpus=2"));
    run.assert_ok();
    run.assert_contains("irq/sgi_ping_pong PASS");
}

#[test]
fn arm_irq_two_vcpus_one_cpu() {
    let run = boot(Qemu::arm().cpu(A15).smp(1).guest("irq").append("vcpus=2"));
    run.assert_ok();
    run.assert_contains("irq/sgi_ping_pong PASS");
}

/// A spinning VM and a sleeping one share a CPU (see `qemu.rs`).
#[test]
fn arm_sched_spinner_and_sleeper_share_a_cpu() {
    let run = boot(Qemu::arm().cpu(A15).smp(1).guest("sched").append("vms=2"));
    run.assert_ok_vms(2);
    run.assert_contains("sched/sleeper_finishes_beside_spinner PASS");
}

// --- the PL011 as an interactive console ----------------------------------------

/// The `echo` image (see `qemu.rs`) on ARMv7: a prompt without a newline
/// shows, the typed line reaches the guest and is echoed.
#[test]
fn echo_input_arm() {
    let run =
        boot(Qemu::arm().cpu(A15).smp(1).guest("echo").input_after("[vm1] echo> ", "hello vm1\r"));
    run.assert_ok();
    run.assert_contains("[vm1] echo> hello vm1\n");
}

/// Two ARM32 VMs on two CPUs: Ctrl-A 2 switches the input to vm2.
#[test]
fn echo_input_two_vms_arm() {
    let run = boot(
        Qemu::arm()
            .cpu(A7)
            .smp(2)
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

/// The `irqcost` image on ARMv7 (see `qemu.rs`).
#[test]
fn arm_irqcost_runs() {
    let run = boot(Qemu::arm().cpu(A15).smp(1).guest("irqcost"));
    run.assert_ok();
    run.assert_contains("irqcost: 1 kHz timer tick");
}

// --- PSCI 1.1 from a guest ------------------------------------------------------

/// The `psci` image on ARMv7 (see `qemu.rs`), with the SMC32 ids: every
/// PSCI function, every refusal, `CPU_SUSPEND` woken by the virtual timer,
/// one warm `SYSTEM_RESET2`; and the SMC64 ids, which an AArch32 caller
/// does not have, refused.
#[test]
fn arm_psci_all_functions_a15_smp2() {
    let run = boot(Qemu::arm().cpu(A15).smp(2).guest("psci").append("vcpus=2"));
    check_psci(&run, 1, &["smc64_refused"]);
}

// --- VFP and Advanced SIMD ------------------------------------------------------

/// The `fpu` image on `smp` CPUs with bootargs `append` (`vms` VMs): each
/// vCPU's D0-D31 and FPSCR survive every yield and WFI (the VFP state
/// switched lazily, the loads counted), its CPACR and FPEXC.EN decide what
/// is UNDEFINED, and MVFR0/MVFR1 say what works.
fn arm_fpu(cpu: &str, smp: u32, append: &str, vms: usize) -> Run {
    let run = boot(Qemu::arm().cpu(cpu).smp(smp).guest("fpu").append(append));
    run.assert_ok_vms(vms);
    for check in [
        "undef_without_cpacr",
        "undef_without_en",
        "id_registers",
        "registers_loaded",
        "registers_kept",
        "wfi_kept",
        "fp_loads",
    ] {
        let line = format!("TEST fpu/{check} PASS");
        assert_eq!(run.log.matches(&line).count(), vms, "{line} once per VM\n{run}");
    }
    run.assert_contains("guests get it, D0-D31 registers, switched lazily");
    let loads = run.counter("FP state loads").unwrap_or_else(|| panic!("no FP loads row\n{run}"));
    // Two vCPUs, 200 rounds each, two loads a round at least.
    assert!(
        loads.len() == vms && loads.iter().all(|&n| n >= 800),
        "FP state loads {loads:?}\n{run}"
    );
    run
}

/// Two vCPUs take turns on one CPU.
#[test]
fn arm_fpu_two_vcpus_one_cpu_a15() {
    arm_fpu(A15, 1, "vcpus=2", 1);
}

/// Two VMs of two vCPUs on two CPUs: the vCPUs take turns and move
/// between the CPUs, and the VMs' patterns differ.
#[test]
fn arm_fpu_smp2_a7() {
    arm_fpu(A7, 2, "vms=2 vcpus=2", 2);
}
