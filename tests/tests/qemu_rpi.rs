//! The Raspberry Pi images on QEMU's `raspi4b` and `raspi3b` boards: each
//! boots from the `kernel8.img` `scripts/build.sh --board` wrote, at EL2
//! as the firmware would start it, without a DTB (QEMU passes none), so
//! the hypervisor recognises the board from its build, prints its banner
//! and memory map, releases the other three CPUs through the spin table,
//! runs its built-in demo guest through the stage-2 fault path and
//! reports the result on the board's PL011. The Pis have no PSCI: the
//! hypervisor halts after its counters, and the run stops there.
//!
//! The Pi 4 image also runs the `irq` guest on the GIC-400, with one vCPU
//! and (bootargs from Debian's Pi 4 DTB) with two.
//!
//! The Pi 2 image (ARMv7 Hyp mode) is checked without running it: QEMU's
//! `raspi2b` starts kernels in SVC mode.

use std::time::Duration;

use harness::{
    linux_bundle, linux_pi4_dtb, linux_prompt, out_dir, prepare, Arch, Qemu, Run, LINUX_INIT_LINE,
};

const HALTED: &str = "no PSCI on this machine: halted";

fn boot_pi(machine: &str, board: &str) -> Run {
    prepare();
    let kernel = out_dir().join(board).join("kernel8.img");
    let run = Qemu::raspi(machine, kernel).stop_when(HALTED).timeout(Duration::from_secs(60)).run();
    for text in [
        "s2hyp: stage-2 MMU hypervisor, AArch64 EL2",
        "RAM  0x0000000000-0x003c000000",
        "kept 0x0000080000-",
        "cpu1 up",
        "cpu2 up",
        "cpu3 up",
        "[vm1] TEST demo/touch PASS",
        "[vm1] TEST demo/faults PASS",
        "[vm1] DONE demo PASS",
        "all VMs stopped",
        HALTED,
    ] {
        run.assert_contains(text);
    }
    run.assert_lacks("FAIL");
    run.assert_lacks("PANIC");
    assert!(run.stopped_early, "the run did not reach {HALTED:?}\n{run}");
    run
}

#[test]
fn rpi4_on_qemu_raspi4b() {
    let run = boot_pi("raspi4b", "rpi4");
    run.assert_contains("board: Raspberry Pi 4 Model B (BCM2711) (built in: no DTB)");
}

#[test]
fn rpi3_on_qemu_raspi3b() {
    let run = boot_pi("raspi3b", "rpi3");
    run.assert_contains("board: Raspberry Pi 3 Model B (BCM2837) (built in: no DTB)");
}

/// Debian's arm64 Linux as a guest of the Pi 4 image on QEMU's `raspi4b`
/// (its GIC-400, the BCM2711's four Cortex-A72s), started as the Pi's
/// firmware would start a kernel with a device tree: QEMU passes Debian's
/// `bcm2711-rpi-4-b.dtb` with the bundle as its initrd and the
/// hypervisor's bootargs, so the hypervisor finds its board, RAM and
/// bundle in the DTB. Linux gets four vCPUs on the four CPUs, reaches its
/// shell, answers typed commands, and powers off through PSCI (the
/// hypervisor's, since the Pi has no firmware PSCI it halts after that).
#[test]
fn linux_on_rpi4_raspi4b() {
    prepare();
    let bundle = linux_bundle(Arch::Aarch64, 4, "512M", 1);
    let dtb = linux_pi4_dtb();
    let kernel = out_dir().join("rpi4/kernel8.img");
    let prompt = linux_prompt(1);
    let run = Qemu::raspi("raspi4b", kernel)
        .extra_args(["-dtb".into(), dtb.display().to_string(), "-initrd".into()])
        .extra_args([bundle.display().to_string()])
        .stop_when(HALTED)
        .timeout(Duration::from_secs(300))
        .input_after(&prompt, "grep -c ^proc /proc/cpuinfo\r")
        .input_after(&prompt, "echo hello-$((6*7))\r")
        .input_after(&prompt, "poweroff -f\r")
        .run();
    for text in [
        "board: Raspberry Pi 4 Model B (BCM2711) (from the DTB)",
        "host GIC: V2",
        "cpu3 up",
        &format!("[vm1] {LINUX_INIT_LINE}, 4 CPUs (vm1,"),
        "[vm1] 4\n",
        "[vm1] hello-42",
        "all VMs stopped",
        HALTED,
    ] {
        run.assert_contains(text);
    }
    for bad in ["Kernel panic", "Internal error: Oops", "PANIC", "hyp: BUG:"] {
        run.assert_lacks(bad);
    }
    assert!(run.stopped_early, "the run did not reach {HALTED:?}\n{run}");
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The Pi 2 image: a zImage-style header with the firmware's load address
/// 0x8000, a size that fits below the peripherals, the entry a branch to
/// code that checks for Hyp mode (`mrs` of CPSR, compare with 0x1a) and,
/// in Hyp mode, sets `HVBAR` and turns on the Hyp-mode MMU (`HTTBR` with
/// `MCRR p15, 4`).
#[test]
fn rpi2_image_is_a_hyp_mode_kernel7() {
    prepare();
    let img = std::fs::read(out_dir().join("rpi2/kernel7.img")).expect("out/rpi2/kernel7.img");
    assert!(img.len() > 0x1000 && img.len() < 4 << 20, "size {}", img.len());
    assert_eq!(le32(&img, 0x24), 0x016f_2818, "zImage magic");
    assert_eq!(le32(&img, 0x28), 0x8000, "load address");
    assert_eq!(le32(&img, 0x2c) - 0x8000, img.len() as u32, "end address");
    let b = le32(&img, 0);
    assert_eq!(b >> 24, 0xea, "first word {b:#x} is not a B");
    let target = (((b & 0x00ff_ffff) << 8) as i32 >> 6) + 8;
    let entry = &img[target as usize..];
    let words: Vec<u32> = entry.chunks(4).take(64).map(|w| le32(w, 0)).collect();
    // MRS Rd, CPSR: 0xe10f_0000 | Rd << 12.
    assert!(words.iter().any(|&w| w & 0xffff_0fff == 0xe10f_0000), "no MRS of CPSR at the entry");
    // CMP Rn, #0x1a (Hyp mode).
    assert!(words.iter().any(|&w| w & 0xfff0_ffff == 0xe350_001a), "no compare with Hyp mode");
    // MCR p15, 4, Rt, c12, c0, 0 (HVBAR) and MCRR p15, 4, Rt, Rt2, c2 (HTTBR).
    let all: Vec<u32> = img.chunks(4).map(|w| le32(w, 0)).collect();
    assert!(all.iter().any(|&w| w & 0xffff_0fff == 0xee8c_0f10), "no HVBAR write");
    assert!(
        all.iter().any(|&w| w & 0xfff0_0fff == 0xec40_0f42),
        "no HTTBR write (MCRR p15, 4, c2)"
    );
}

/// The Pi 4's GIC-400 (a GICv2 with the virtualization extensions, which
/// QEMU's `raspi4b` models: `GICH` and `GICV` included) under the `irq`
/// guest, built into `out/rpi4-irq/kernel8.img`: the GIC's identity, the
/// virtual timer at 100 Hz, WFI woken by it, the PL011's SPI, nothing
/// unexpected, the host GIC's other pages out of reach. One vCPU (no bootargs without a DTB),
/// so no SGI ping-pong: two in the next test.
#[test]
fn rpi4_gic400_irq_on_qemu_raspi4b() {
    prepare();
    let kernel = out_dir().join("rpi4-irq").join("kernel8.img");
    let run =
        Qemu::raspi("raspi4b", kernel).stop_when(HALTED).timeout(Duration::from_secs(60)).run();
    assert_irq_passed(&run, &[]);
}

/// The `irq` guest's checks passed on the Pi 4's GIC-400 (with `more`
/// lines), nothing failed or panicked, no `hyp: BUG:` report.
#[track_caller]
fn assert_irq_passed(run: &Run, more: &[&str]) {
    for text in [
        "host GIC: V2",
        "irq: GIC V2",
        "irq/gic_identity PASS",
        "irq/timer_100hz PASS",
        "irq/wfi_woken_by_timer PASS",
        "irq/uart_spi_raised_and_cleared PASS",
        "irq/no_unexpected_irq PASS",
        "irq/host_gic_unreachable PASS",
        "[vm1] DONE irq PASS",
        HALTED,
    ]
    .iter()
    .chain(more)
    {
        run.assert_contains(text);
    }
    for bad in ["FAIL", "PANIC", "hyp: BUG:"] {
        run.assert_lacks(bad);
    }
}

/// The `irq` guest with two vCPUs on the Pi 4's GIC-400, started with
/// Debian's `bcm2711-rpi-4-b.dtb` so that bootargs (`vcpus=2`) reach the
/// hypervisor: the vCPUs send each other SGIs, and the hypervisor kicks
/// CPUs with its own SGI from CPUs other than 0. Each must be ended with
/// its source CPU (`hyp/src/hostirq.rs`); one left active keeps its CPU's
/// running priority raised, which the idle loop reports as `hyp: BUG:`
/// (the guest's own checks would pass with one healthy CPU).
#[test]
fn rpi4_gic400_irq_two_vcpus_on_qemu_raspi4b() {
    prepare();
    let dtb = linux_pi4_dtb();
    if !dtb.is_file() {
        // `scripts/linux.sh` fetches it with Debian's kernel: the same
        // bundle as `linux_on_rpi4_raspi4b`'s, built once per process.
        linux_bundle(Arch::Aarch64, 4, "512M", 1);
    }
    let kernel = out_dir().join("rpi4-irq").join("kernel8.img");
    let run = Qemu::raspi("raspi4b", kernel)
        .extra_args(["-dtb".into(), dtb.display().to_string()])
        .extra_args(["-append", "vcpus=2"])
        .stop_when(HALTED)
        .timeout(Duration::from_secs(60))
        .run();
    assert_irq_passed(
        &run,
        &[
            "board: Raspberry Pi 4 Model B (BCM2711) (from the DTB)",
            "2 vCPU(s)",
            "irq/sgi_ping_pong PASS",
        ],
    );
    assert!(run.stopped_early, "the run did not reach {HALTED:?}\n{run}");
}
