//! Boots Debian's unmodified Linux under the hypervisor (issue 15): the
//! bundle of `scripts/linux.sh` (an arm64 `Image` or an ARM `zImage` with
//! LPAE, a busybox initramfs, the command line and the VM's vCPUs and
//! RAM) as the hypervisor's initrd, on `qemu-system-aarch64` and
//! `qemu-system-arm`.
//!
//! Each boot waits for the guests' `/init` line (`harness::LINUX_INIT_LINE`)
//! and their shell prompt, then types commands on the console: the number
//! of processors in `/proc/cpuinfo` must be the VM's vCPUs, shell
//! arithmetic must answer (`hello-42`), `sleep 1` must end (the timer
//! ticks), and `poweroff -f` must power the VM off through PSCI, after
//! which the hypervisor powers QEMU off.
//!
//! The first test to run builds the hypervisor (`scripts/build.sh`) and
//! the bundles (`scripts/linux.sh`, which fetches Debian's kernel and
//! busybox once into a cache outside the repository). Linux under QEMU's
//! TCG takes some 10 to 30 seconds to reach its shell, more with four vCPUs
//! on a busy host, hence the long timeout.
//!
//! The `memstress_*` tests run a memory workload in Linux (`tests/memstress`,
//! put into the initramfs by `scripts/linux.sh --memstress`): one thread
//! per vCPU fills most of the guest's RAM with a pattern of address, pass
//! and thread, has another thread check every byte, unmaps it, and does
//! it again. They run it with each of the hypervisor's population policies,
//! with automatic collapse, and beside a VM running the `hostile` test
//! image; they require zero data errors, the hypervisor's power-off and
//! the stage-2 counters that show the memory went the way asked (the
//! counter table is printed to the test's output).
//!
//! `linux_bundles_are_well_formed` needs no QEMU: it reads the bundles back
//! and checks their layout against the contract in `harness::cpio`.

use std::{process::Command, time::Duration};

use harness::{
    cpio::{self, KernelKind},
    linux_bundle, linux_bundle_with, linux_prompt, prepare, switch_input, Arch, LinuxExtras, Qemu,
    Run, TestVm, LINUX_INIT_LINE, POWER_OFF_LINE,
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

/// A second's sleep, which only the timer's interrupt ends; the answer is
/// `slept`.
const SLEEP: &str = "sleep 1 && echo slept";

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
    assert_linux_vms_ok(run, &(1..=vms).collect::<Vec<_>>(), vcpus);
}

/// [`assert_linux_ok`] for the Linux VMs `vms` (by id) of a run whose
/// other VMs run something else.
#[track_caller]
fn assert_linux_vms_ok(run: &Run, vms: &[u32], vcpus: u32) {
    let mut problems = Vec::new();
    if run.timed_out {
        problems.push(format!("timed out after {:?}", run.timeout));
    } else if !run.status.is_some_and(|s| s.success()) {
        problems.push(format!("QEMU's status is {:?}, not 0", run.status));
    }
    if !run.log.contains(POWER_OFF_LINE) {
        problems.push(format!("no `{POWER_OFF_LINE}` line"));
    }
    for &vm in vms {
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
/// loads) add up to the guest exits of each Linux VM in `vms` (by id),
/// and a Linux boot makes calls (PSCI), waits and touches its devices.
fn exit_causes_add_up(run: &Run, vms: &[u32]) -> Vec<String> {
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
    for &vm in vms {
        let i = vm as usize - 1;
        if i >= exits.len() || causes.iter().any(|(_, v)| v.len() != exits.len()) {
            problems.push(format!("vm{vm}: no counters at power-off"));
            continue;
        }
        let sum: u64 = causes.iter().map(|(_, v)| v[i]).sum();
        if sum != exits[i] {
            problems.push(format!("vm{vm}: exits by cause add up to {sum}, not {}", exits[i]));
        }
        for (name, v) in &causes[..3] {
            if v[i] == 0 {
                problems.push(format!("vm{vm}: no {name}"));
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
        .input_after(&prompt, &line(SLEEP))
        .input_after(&prompt, &line("poweroff -f"))
        .run();
    assert_linux_ok(&run, 1, vcpus);
    assert_vm_line(&run, 1, &vcpus.to_string());
    assert_vm_line(&run, 1, "hello-42");
    assert_vm_line(&run, 1, "slept");
}

/// Passes of the memory workload (more beside `hostile`, so that the
/// workload outlasts the attack).
const PASSES: u32 = 4;
const PASSES_BESIDE_HOSTILE: u32 = 8;

/// How long a boot with the memory workload may take.
const MEMSTRESS_TIMEOUT: Duration = Duration::from_secs(420);

/// The least memory the workload must have used: half the VM's RAM (it
/// takes 75 % of `MemAvailable`).
const MEMSTRESS_MIN_BYTES: u64 = 256 << 20;

/// The `hostile` image's VM beside Linux: two vCPUs, 64 MiB (too little for
/// its 768 MiB `big_unmap`, which it then skips).
const HOSTILE_CONFIG: &str = "vcpus=2 mem=64M";

/// A boot of one Linux VM of `vcpus` vCPUs running the memory workload.
struct Memstress {
    /// The machine (CPU model, architecture); `-smp` is set to `smp`.
    qemu: Qemu,
    /// Host CPUs.
    smp: u32,
    /// The Linux VM's vCPUs (and the workload's threads).
    vcpus: u32,
    /// The hypervisor's bootargs.
    append: &'static str,
    /// VM 1 runs the `hostile` image (attacking VM 2, this Linux), started
    /// (`start=input`) by a key typed on its console right after the
    /// workload's command.
    hostile: bool,
}

impl Memstress {
    /// The Linux VM's id.
    fn vm(&self) -> u32 {
        if self.hostile {
            2
        } else {
            1
        }
    }

    /// Boots, types `memstress -p PASSES` at the Linux VM's prompt and
    /// `poweroff -f` at the next one, and judges the run: Linux came up and
    /// powered off ([`assert_linux_vms_ok`]), the workload ended with
    /// `memstress: ok passes=PASSES threads=VCPUS bytes=B errors=0` with B
    /// at least [`MEMSTRESS_MIN_BYTES`] and reported no bad word, and the
    /// counter table is there (printed). Returns the run and B.
    fn run(self) -> (Run, u64) {
        prepare();
        let test_vm = self.hostile.then(|| TestVm {
            image: "hostile".into(),
            config: HOSTILE_CONFIG.into(),
            args: "start=input".into(),
        });
        let extras = LinuxExtras { memstress: true, test_vm };
        let bundle = linux_bundle_with(self.qemu.arch(), self.vcpus, GUEST_MEM, 1, &extras);
        let vm = self.vm();
        let prompt = linux_prompt(vm);
        let passes = if self.hostile { PASSES_BESIDE_HOSTILE } else { PASSES };
        let command = line(&format!("memstress -p {passes}"));
        // With `hostile` first, the console input goes to Linux explicitly,
        // and then one key to `hostile`, which starts its attack.
        let (start, stop) = if self.hostile {
            let start = format!("{}{command}{}go", switch_input(vm), switch_input(1));
            (start, format!("{}{}", switch_input(vm), line("poweroff -f")))
        } else {
            (command, line("poweroff -f"))
        };
        let run = self
            .qemu
            .smp(self.smp)
            .mem(QEMU_MEM)
            .initrd(bundle)
            .append(self.append)
            .timeout(MEMSTRESS_TIMEOUT)
            .input_after(&prompt, &start)
            .input_after(&prompt, &stop)
            .run();
        assert_linux_vms_ok(&run, &[vm], self.vcpus);
        let lines = vm_lines(&run, vm);
        for l in &lines {
            if l.starts_with("memstress: bad word") || l.starts_with("memstress: FAIL") {
                panic!("vm{vm}: the memory workload found bad data: {l}\n{run}");
            }
        }
        let ok = format!("memstress: ok passes={passes} threads={} bytes=", self.vcpus);
        let bytes = lines
            .iter()
            .find_map(|l| l.strip_prefix(ok.as_str())?.strip_suffix(" errors=0")?.parse().ok())
            .unwrap_or_else(|| panic!("vm{vm} printed no `{ok}B errors=0` line\n{run}"));
        assert!(
            bytes >= MEMSTRESS_MIN_BYTES,
            "the workload used {bytes} bytes, less than {MEMSTRESS_MIN_BYTES}\n{run}"
        );
        for l in lines.iter().filter(|l| l.starts_with("memstress:")) {
            eprintln!("vm{vm}: {l}");
        }
        if std::env::var_os("MEMSTRESS_SHOW_LOG").is_some() {
            eprintln!("{run}");
        }
        let counters = run.counters();
        assert!(!counters.is_empty(), "no counter table\n{run}");
        eprintln!("counters (vm{vm} is Linux, {bytes} bytes a pass):");
        for c in &counters {
            eprintln!("  {:<22} {:?}", c.name, c.values);
        }
        (run, bytes)
    }
}

/// The value of counter `name` for VM `vm` (from 1); panics if missing.
#[track_caller]
fn counter(run: &Run, name: &str, vm: u32) -> u64 {
    let values = run.counter(name).unwrap_or_else(|| panic!("no `{name}` counter\n{run}"));
    *values.get(vm as usize - 1).unwrap_or_else(|| panic!("no vm{vm} in `{name}`\n{run}"))
}

/// The memory the workload touched was mapped at stage 2: `mapped` units
/// of `unit` bytes (those of stage-2 faults and those the hypervisor mapped
/// when it loaded the kernel and the initramfs) cover at least `bytes`,
/// and the faults, exits and interrupt exits are there.
#[track_caller]
fn assert_mapped(run: &Run, vm: u32, mapped: &str, unit: u64, bytes: u64) {
    let (n, faults) = (counter(run, mapped, vm), counter(run, "stage-2 faults", vm));
    assert!(n * unit >= bytes, "`{mapped}` is {n}: {} bytes, less than {bytes}\n{run}", n * unit);
    assert!(faults > 0, "no stage-2 faults\n{run}");
    assert!(counter(run, "guest exits", vm) >= faults, "fewer exits than faults\n{run}");
    assert!(counter(run, "IRQ exits", vm) > 0, "no IRQ exits\n{run}");
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

#[test]
fn linux_a57_4_vcpus() {
    linux_one_vm(Qemu::new().cpu("cortex-a57"), 4);
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

/// The memory workload with 4 KiB pages mapped on demand (`policy=pages`),
/// two vCPUs: every page it touched was mapped by a fault, nothing as a
/// block.
#[test]
fn memstress_max_2_vcpus_pages() {
    let (run, bytes) = Memstress {
        qemu: Qemu::new().cpu("max"),
        smp: 2,
        vcpus: 2,
        append: "policy=pages",
        hostile: false,
    }
    .run();
    assert_mapped(&run, 1, "pages mapped", 4096, bytes);
    assert_eq!(counter(&run, "2M blocks mapped", 1), 0, "{run}");
}

/// The memory workload with 2 MiB blocks (`policy=blocks`), four vCPUs
/// on four CPUs.
#[test]
fn memstress_max_4_vcpus_blocks() {
    let (run, bytes) = Memstress {
        qemu: Qemu::new().cpu("max"),
        smp: 4,
        vcpus: 4,
        append: "policy=blocks",
        hostile: false,
    }
    .run();
    assert_mapped(&run, 1, "2M blocks mapped", 2 << 20, bytes);
}

/// The memory workload with automatic collapse (`collapse=1`): pages are
/// mapped on demand and each 2 MiB range whose 512 pages are all mapped
/// becomes a block (in place or by copying them while they are
/// write-protected), its level-3 table freed after an RCU grace period;
/// the data must survive it.
#[test]
fn memstress_max_2_vcpus_collapse() {
    let (run, bytes) = Memstress {
        qemu: Qemu::new().cpu("max"),
        smp: 2,
        vcpus: 2,
        append: "collapse=1",
        hostile: false,
    }
    .run();
    assert_mapped(&run, 1, "pages mapped", 4096, bytes);
    for name in ["collapses", "tables freed", "grace periods"] {
        assert!(counter(&run, name, 1) > 0, "`{name}` is 0\n{run}");
    }
}

/// The memory workload in VM 2 while VM 1 runs the `hostile` image (probes,
/// thousands of random hypercalls naming VM 2's pages, a reverse-map
/// flood, unmap/remap/collapse/split hammering of its own memory): the
/// attacker passes every check it runs alone, Linux's data stays intact.
#[test]
fn memstress_max_beside_hostile() {
    let (run, bytes) =
        Memstress { qemu: Qemu::new().cpu("max"), smp: 2, vcpus: 2, append: "", hostile: true }
            .run();
    assert_mapped(&run, 2, "pages mapped", 4096, bytes);
    assert!(run.done_vms().contains(&1), "vm1: no `DONE hostile PASS`\n{run}");
    let reports = run.reports();
    let failed: Vec<_> = reports.iter().filter(|r| r.vm == 1 && !r.pass).collect();
    assert!(failed.is_empty(), "vm1 failed {failed:?}\n{run}");
    for check in ["outside_probes", "fuzz", "fresh_is_zero", "hammer"]
        .map(|c| format!("[vm1] TEST hostile/{c} PASS"))
    {
        run.assert_contains(&check);
    }
    assert!(counter(&run, "calls refused", 1) > 1000, "the fuzz made few calls\n{run}");
    // The attack ran while the workload did: their spans in the log
    // overlap (the key that starts it is typed right after the workload's
    // command, before Linux has started the program).
    let at = |text: &str| {
        run.log
            .lines()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no {text:?}\n{run}"))
    };
    let (began, ended) = (at("[vm2] memstress: 2 threads"), at("[vm2] memstress: ok"));
    let (attack, done) = (at("[vm1] hostile: starting"), at("[vm1] DONE hostile"));
    assert!(
        attack < ended && began < done,
        "the attack (log lines {attack}..{done}) did not overlap the workload ({began}..{ended})\n{run}"
    );
    eprintln!("the attack ran in log lines {attack}..{done}, the workload in {began}..{ended}");
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

/// The memory workload on ARM32 (a static glibc build), two vCPUs, 4 KiB
/// pages with automatic collapse.
#[test]
fn memstress_arm_a15_2_vcpus_collapse() {
    let (run, bytes) = Memstress {
        qemu: Qemu::arm().cpu("cortex-a15"),
        smp: 2,
        vcpus: 2,
        append: "collapse=1",
        hostile: false,
    }
    .run();
    assert_mapped(&run, 1, "pages mapped", 4096, bytes);
    assert!(counter(&run, "collapses", 1) > 0, "no collapse\n{run}");
}

/// The memory workload on ARM32 with 2 MiB blocks (`policy=blocks`).
#[test]
fn memstress_arm_a15_2_vcpus_blocks() {
    let (run, bytes) = Memstress {
        qemu: Qemu::arm().cpu("cortex-a15"),
        smp: 2,
        vcpus: 2,
        append: "policy=blocks",
        hostile: false,
    }
    .run();
    assert_mapped(&run, 1, "2M blocks mapped", 2 << 20, bytes);
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
