//! Boots Debian's unmodified Linux under the hypervisor (issue 15): the
//! bundle of `scripts/linux.sh` (an arm64 `Image` or an ARM `zImage` with
//! LPAE, a busybox initramfs, the command line and the VM's vCPUs and
//! RAM) as the hypervisor's initrd, on `qemu-system-aarch64` and
//! `qemu-system-arm`.
//!
//! Each boot waits for the guests' `/init` line (`harness::LINUX_INIT_LINE`)
//! and their shell prompt, then types commands on the console: the number
//! of processors in `/proc/cpuinfo` must be the VM's vCPUs, shell
//! arithmetic must answer (`hello-42`), and `poweroff -f` must power the
//! VM off through PSCI, after which the hypervisor powers QEMU off.
//!
//! The first test to run builds the hypervisor (`scripts/build.sh`) and
//! the bundles (`scripts/linux.sh`, which fetches Debian's kernel and
//! busybox once into a cache outside the repository). Linux under QEMU's
//! TCG takes some 10 to 30 seconds to reach its shell, more with four vCPUs
//! on a busy host, hence the long timeout.
//!
//! `linux_bundles_are_well_formed` needs no QEMU: it reads the bundles back
//! and checks their layout against the contract in `harness::cpio`.

use std::{process::Command, time::Duration};

use harness::{
    cpio::{self, KernelKind},
    linux_bundle, linux_prompt, prepare, switch_input, Arch, Qemu, Run, LINUX_INIT_LINE,
    POWER_OFF_LINE,
};

/// How long one Linux boot, its commands and its power-off may take.
const LINUX_TIMEOUT: Duration = Duration::from_secs(300);

/// Each VM's RAM.
const GUEST_MEM: &str = "512M";

/// The machine's RAM (`-m`), as `scripts/run.sh --linux` gives it.
const QEMU_MEM: &str = "2G";

/// Counts the processors the guest kernel lists; its answer is a line of
/// its own holding the number.
const COUNT_CPUS: &str = "grep -c ^proc /proc/cpuinfo";

/// Shell arithmetic; the answer is `hello-42`.
const HELLO: &str = "echo hello-$((6*7))";

/// A command line to type: `command` and Enter. Lines stay under 32 bytes:
/// the harness types a whole line at once and the hypervisor's PL011
/// model holds 32 received bytes, dropping what arrives while it is full
/// (docs/HYPERVISOR.md, "Console").
fn line(command: &str) -> String {
    assert!(command.len() < 32, "{command:?} is too long to type at once");
    format!("{command}\r")
}

/// The lines VM `vm` printed (the hypervisor's `[vmN] ` prefix removed),
/// trailing spaces trimmed.
fn vm_lines(run: &Run, vm: u32) -> Vec<&str> {
    let prefix = format!("[vm{vm}] ");
    run.log.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).map(str::trim_end).collect()
}

/// Panics (printing the whole run) unless VM `vm` printed the line `text`.
#[track_caller]
fn assert_vm_line(run: &Run, vm: u32, text: &str) {
    if !vm_lines(run, vm).contains(&text) {
        panic!("vm{vm} printed no line {text:?}\n{run}");
    }
}

/// Judges a Linux run of `vms` VMs of `vcpus` vCPUs each: QEMU exited by
/// itself with status 0 after the hypervisor's power-off line; every VM
/// reached `/init` with `vcpus` CPUs; no kernel panic or oops, no
/// hypervisor panic or bug report.
#[track_caller]
fn assert_linux_ok(run: &Run, vms: u32, vcpus: u32) {
    let mut problems = Vec::new();
    if run.timed_out {
        problems.push(format!("timed out after {:?}", run.timeout));
    } else if !run.status.is_some_and(|s| s.success()) {
        problems.push(format!("QEMU's status is {:?}, not 0", run.status));
    }
    if !run.log.contains(POWER_OFF_LINE) {
        problems.push(format!("no `{POWER_OFF_LINE}` line"));
    }
    for vm in 1..=vms {
        let init = format!("{LINUX_INIT_LINE}, {vcpus} CPUs (vm{vm},");
        if !vm_lines(run, vm).iter().any(|l| l.starts_with(&init)) {
            problems.push(format!("vm{vm}: no `{init} ...` line"));
        }
    }
    for l in run.log.lines() {
        if ["Kernel panic", "Internal error: Oops", "PANIC", "panicked", "hyp: BUG:"]
            .iter()
            .any(|bad| l.contains(bad))
        {
            problems.push(format!("log line: {l}"));
        }
    }
    problems.extend(exit_causes_add_up(run, vms));
    if !problems.is_empty() {
        panic!("the Linux run failed:\n  - {}\n{run}", problems.join("\n  - "));
    }
    eprintln!("{}", run.summary());
}

/// Every synchronous exit has one cause in the power-off counters: the
/// exits by cause (calls, WFI/WFE, MMIO, other traps) and the faults
/// (stage-2 translation and permission faults, aborts injected, lazy FP
/// loads) add up to the guest exits of each VM, and a Linux boot makes
/// calls (PSCI), waits and touches its devices.
fn exit_causes_add_up(run: &Run, vms: u32) -> Vec<String> {
    let get = |name: &str| run.counter(name).unwrap_or_default();
    let exits = get("guest exits");
    let causes = [
        "HVC/SMC exits",
        "WFI/WFE exits",
        "MMIO exits",
        "other trap exits",
        "stage-2 faults",
        "permission faults",
        "external aborts",
        "FP state loads",
    ]
    .map(|name| (name, get(name)));
    let mut problems = Vec::new();
    if exits.len() != vms as usize || causes.iter().any(|(_, v)| v.len() != exits.len()) {
        return vec![format!("no counters for {vms} VMs at power-off")];
    }
    for (i, &total) in exits.iter().enumerate() {
        let sum: u64 = causes.iter().map(|(_, v)| v[i]).sum();
        if sum != total {
            problems.push(format!("vm{}: exits by cause add up to {sum}, not {total}", i + 1));
        }
        for (name, v) in &causes[..3] {
            if v[i] == 0 {
                problems.push(format!("vm{}: no {name}", i + 1));
            }
        }
    }
    problems
}

/// Boots one Linux VM with `vcpus` vCPUs on `qemu` (its CPU model and
/// architecture; `-smp` is set to `vcpus`), types the commands at its
/// prompt and judges the run.
fn linux_one_vm(qemu: Qemu, vcpus: u32) {
    prepare();
    let bundle = linux_bundle(qemu.arch(), vcpus, GUEST_MEM, 1);
    let prompt = linux_prompt(1);
    let run = qemu
        .smp(vcpus)
        .mem(QEMU_MEM)
        .initrd(bundle)
        .timeout(LINUX_TIMEOUT)
        .input_after(&prompt, &line(COUNT_CPUS))
        .input_after(&prompt, &line(HELLO))
        .input_after(&prompt, &line("poweroff -f"))
        .run();
    assert_linux_ok(&run, 1, vcpus);
    assert_vm_line(&run, 1, &vcpus.to_string());
    assert_vm_line(&run, 1, "hello-42");
}

// --- AArch64: Debian's arm64 Image --------------------------------------------

#[test]
fn linux_max_1_vcpu() {
    linux_one_vm(Qemu::new().cpu("max"), 1);
}

#[test]
fn linux_max_4_vcpus() {
    linux_one_vm(Qemu::new().cpu("max"), 4);
}

#[test]
fn linux_a57_1_vcpu() {
    linux_one_vm(Qemu::new().cpu("cortex-a57"), 1);
}

/// Two Linux VMs of one vCPU each: each answers on its own console
/// (Ctrl-A 2 and Ctrl-A 1 switch the input), each powers itself off.
#[test]
fn linux_max_two_vms() {
    prepare();
    let bundle = linux_bundle(Arch::Aarch64, 1, GUEST_MEM, 2);
    let (vm1, vm2) = (linux_prompt(1), linux_prompt(2));
    let run = Qemu::new()
        .cpu("max")
        .smp(2)
        .mem(QEMU_MEM)
        .initrd(bundle)
        .timeout(LINUX_TIMEOUT)
        .input_after(&vm1, &line(HELLO))
        .input_after(&vm2, &format!("{}{}", switch_input(2), line("echo hello-$((6*8))")))
        .input_after(
            &vm2,
            &format!("{}{}{}", line("poweroff -f"), switch_input(1), line("poweroff -f")),
        )
        .run();
    assert_linux_ok(&run, 2, 1);
    assert_vm_line(&run, 1, "hello-42");
    assert_vm_line(&run, 2, "hello-48");
    run.assert_contains("[input: vm2]");
    run.assert_contains("[input: vm1]");
}

// --- ARM32: Debian's armmp-lpae zImage in ARMv7 Hyp mode -----------------------

#[test]
fn linux_arm_a15_1_vcpu() {
    linux_one_vm(Qemu::arm().cpu("cortex-a15"), 1);
}

#[test]
fn linux_arm_a15_4_vcpus() {
    linux_one_vm(Qemu::arm().cpu("cortex-a15"), 4);
}

// --- reboot: PSCI SYSTEM_RESET restarts the VM --------------------------------

/// `reboot -f` (PSCI `SYSTEM_RESET`) restarts the VM from its bundle: the
/// kernel boots again, with every vCPU, to a fresh shell (a file written
/// in the first boot's tmpfs is gone), which then powers off.
fn linux_reboot(qemu: Qemu, vcpus: u32) {
    prepare();
    let bundle = linux_bundle(qemu.arch(), vcpus, GUEST_MEM, 1);
    let prompt = linux_prompt(1);
    let run = qemu
        .smp(vcpus)
        .mem(QEMU_MEM)
        .initrd(bundle)
        .timeout(LINUX_TIMEOUT)
        .input_after(&prompt, &line("echo boot1 >/tmp/b"))
        .input_after(&prompt, &line("reboot -f"))
        .input_after(&prompt, &line("cat /tmp/b || echo gone"))
        .input_after(&prompt, &line(COUNT_CPUS))
        .input_after(&prompt, &line("poweroff -f"))
        .run();
    assert_linux_ok(&run, 1, vcpus);
    let init = format!("{LINUX_INIT_LINE}, {vcpus} CPUs (vm1,");
    let boots = vm_lines(&run, 1).iter().filter(|l| l.starts_with(&init)).count();
    assert_eq!(boots, 2, "two boots to /init with {vcpus} CPUs\n{run}");
    assert_vm_line(&run, 1, "gone");
    assert_vm_line(&run, 1, &vcpus.to_string());
}

#[test]
fn linux_reboot_max_2_vcpus() {
    linux_reboot(Qemu::new().cpu("max"), 2);
}

#[test]
fn linux_reboot_arm_a15_2_vcpus() {
    linux_reboot(Qemu::arm().cpu("cortex-a15"), 2);
}

// --- the bundles themselves (no QEMU) -----------------------------------------

/// `scripts/linux.sh` writes bundles that follow the contract: for each VM
/// the kernel of its architecture, a gzip'd initramfs with busybox and
/// `/init`, the command line naming the VM, the config with its vCPUs and
/// RAM.
#[test]
fn linux_bundles_are_well_formed() {
    for (arch, kind, elf_machine) in
        [(Arch::Aarch64, KernelKind::Arm64Image, 0xb7u16), (Arch::Arm, KernelKind::ZImage, 0x28)]
    {
        let bundle = linux_bundle(arch, 2, "256M", 2);
        let bytes = std::fs::read(&bundle).unwrap();
        let entries = cpio::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", bundle.display()));
        let vms = cpio::check_bundle(&entries).unwrap();
        assert_eq!(vms.len(), 2);
        for vm in &vms {
            let n = vm.vm;
            assert_eq!(KernelKind::of(&vm.kernel), kind, "vm{n} kernel");
            assert_eq!(
                vm.cmdline.as_deref(),
                Some(format!("console=ttyAMA0 earlycon s2hyp.vm={n}").as_str())
            );
            assert_eq!(vm.config.as_deref(), Some("vcpus=2 mem=256M"));
            let initrd = vm.initrd.as_ref().expect("an initrd");
            assert!(initrd.starts_with(&[0x1f, 0x8b]), "vm{n}: the initrd is not gzip'd");
        }
        assert_eq!(vms[0].kernel, vms[1].kernel);
        assert_eq!(vms[0].initrd, vms[1].initrd);

        // The initramfs, through the system's gzip.
        let gz = std::env::temp_dir().join(format!("linux-test-{}.gz", std::process::id()));
        std::fs::write(&gz, vms[0].initrd.as_ref().unwrap()).unwrap();
        let out = Command::new("gzip").arg("-dc").arg(&gz).output().expect("gzip runs");
        std::fs::remove_file(&gz).unwrap();
        assert!(out.status.success(), "gzip -dc: {}", String::from_utf8_lossy(&out.stderr));
        let files = cpio::parse(&out.stdout).unwrap();
        let find = |name: &str| {
            files.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name}: {files:?}"))
        };
        let init = find("init");
        assert!(init.is_file() && init.mode & 0o111 == 0o111, "{init:?}");
        let text = String::from_utf8_lossy(&init.data);
        assert!(text.starts_with("#!/bin/sh\n") && text.contains(LINUX_INIT_LINE), "{text}");
        let busybox = find("bin/busybox");
        assert!(busybox.is_file() && busybox.mode & 0o111 == 0o111, "{busybox:?}");
        assert!(busybox.data.starts_with(b"\x7fELF"), "bin/busybox is not ELF");
        assert_eq!(u16::from_le_bytes([busybox.data[18], busybox.data[19]]), elf_machine);
        let sh = find("bin/sh");
        assert!(sh.is_symlink() && sh.data == b"busybox", "{sh:?}");
        for dir in ["dev", "proc", "sys", "tmp", "root"] {
            assert!(find(dir).is_dir(), "{dir}");
        }
    }
}
