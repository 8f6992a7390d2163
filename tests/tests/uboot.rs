//! Boots Debian's U-Boot for QEMU `virt` (`u-boot-qemu`: `qemu_arm64`
//! and `qemu_arm`, unmodified) as a VM's firmware under the hypervisor
//! (issue 15), on `qemu-system-aarch64` and `qemu-system-arm`: the bundle
//! of `scripts/uboot.sh`, whose `vm1/firmware` the hypervisor places in
//! the VM's flash at IPA 0, where U-Boot is linked and runs from; the
//! rest of the flash reads as erased (U-Boot looks for its environment
//! in the second bank) and the DTB is at the start of RAM, where U-Boot's
//! `qemu-arm` board takes it from.
//!
//! Each boot stops U-Boot's autoboot with a key, then types at its prompt
//! (`=> `): `version`, `bdinfo` (the VM's RAM as the DTB describes it),
//! `md` of the erased flash, of U-Boot's own first instruction in flash
//! and of the DTB's magic at the RAM base, `crc32` of the whole second
//! flash bank (64 MiB read, all erased), and `poweroff`, which is PSCI
//! `SYSTEM_OFF`: the VM stops, the hypervisor prints its power-off line
//! and QEMU exits with status 0.
//!
//! Two more boots have U-Boot start the Linux kernel the bundle put in
//! RAM (`scripts/uboot.sh --linux`): `booti` (AArch64) or `bootz` (ARM32)
//! with the hypervisor's DTB, to Linux's busybox shell and `poweroff -f`.
//!
//! The first test to run builds the hypervisor (`scripts/build.sh`) and
//! the bundles (`scripts/uboot.sh`, which fetches `u-boot-qemu` once into
//! a cache outside the repository; with `--linux` it runs
//! `scripts/linux.sh`, which fetches Debian's kernel and busybox).

use std::time::Duration;

use harness::{
    cpio, linux_prompt, prepare, uboot_bundle, Arch, Qemu, Run, LINUX_INIT_LINE, POWER_OFF_LINE,
    UBOOT_AUTOBOOT, UBOOT_PROMPT,
};

/// How long one boot to the prompt, the commands and the power-off may
/// take (U-Boot reaches its prompt in a few seconds under QEMU's TCG).
const UBOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The VM's RAM as `scripts/uboot.sh` configures it: 256 MiB.
const GUEST_RAM: u64 = 256 << 20;

/// Lines that fail a run: the hypervisor's panic and bug reports, a
/// fault it could not resolve, and U-Boot's exception reports (AArch64,
/// then ARM).
const UBOOT_BAD: [&str; 7] = [
    "PANIC",
    "panicked",
    "hyp: BUG:",
    "cannot resolve the fault",
    "\"Synchronous Abort\"",
    "data abort",
    "undefined instruction",
];

/// A command line to type: `command` and Enter. Lines stay under 32 bytes:
/// the harness types a whole line at once and the hypervisor's PL011
/// model holds 32 received bytes (docs/HYPERVISOR.md, "Console").
fn line(command: &str) -> String {
    assert!(command.len() < 32, "{command:?} is too long to type at once");
    format!("{command}\r")
}

/// The lines VM 1 printed (the hypervisor's `[vm1] ` prefix removed),
/// trailing spaces trimmed.
fn vm_lines(run: &Run) -> Vec<&str> {
    run.log.lines().filter_map(|l| l.strip_prefix("[vm1] ")).map(str::trim_end).collect()
}

/// What VM 1 printed after the prompt line at which `command` was typed,
/// up to the next prompt: the command's answer.
#[track_caller]
fn answer<'a>(run: &'a Run, command: &str) -> Vec<&'a str> {
    let lines = vm_lines(run);
    let typed = format!("{UBOOT_PROMPT}{command}");
    let Some(at) = lines.iter().position(|l| *l == typed) else {
        panic!("no prompt line {typed:?} (was it typed and echoed?)\n{run}");
    };
    lines[at + 1..].iter().take_while(|l| !l.starts_with(UBOOT_PROMPT)).copied().collect()
}

/// The value of a `bdinfo` line `name = value`, as a number.
#[track_caller]
fn bdinfo_value(run: &Run, bdinfo: &[&str], name: &str) -> u64 {
    let value = bdinfo
        .iter()
        .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix('='))
        .unwrap_or_else(|| panic!("bdinfo printed no {name:?} line: {bdinfo:?}\n{run}"));
    let hex = value.split_whitespace().next().unwrap_or("");
    u64::from_str_radix(hex.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("bdinfo {name}: {value:?}: {e}\n{run}"))
}

/// The words `md.l ADDR N` printed on its line for `addr`.
#[track_caller]
fn md_words(run: &Run, command: &str, addr: u64) -> Vec<u32> {
    let out = answer(run, command);
    let prefix = format!("{addr:08x}: ");
    let Some(words) = out.iter().find_map(|l| l.strip_prefix(prefix.as_str())) else {
        panic!("`{command}` printed no line for {addr:#x}: {out:?}\n{run}");
    };
    // The words, then two spaces and the bytes as text.
    words
        .split("  ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|w| u32::from_str_radix(w, 16).unwrap_or_else(|e| panic!("{w:?}: {e}\n{run}")))
        .collect()
}

/// Boots U-Boot on `qemu` (its CPU model and architecture), types the
/// commands at its prompt and judges the run: QEMU exited by itself with
/// status 0 after the hypervisor's power-off line, U-Boot answered each
/// command, no hypervisor panic, bug report or abort injected into the
/// guest.
fn uboot(qemu: Qemu) {
    prepare();
    let arch = qemu.arch();
    let bundle = uboot_bundle(arch, false);
    // Erased flash (the second bank, where U-Boot keeps its environment),
    // U-Boot's own first instruction (in flash at 0) and the DTB's magic
    // at the start of RAM.
    let (erased, start, dtb) = ("md.l 0x4000000 4", "md.l 0 1", "md.l 0x40000000 1");
    // All of the second bank: 16384 erased pages, each faulted in to the
    // VM's one erased frame.
    let bank = "crc32 4000000 4000000";
    let commands = ["version", "bdinfo", erased, start, dtb, bank, "poweroff"];
    let mut qemu =
        qemu.mem("1G").initrd(bundle).timeout(UBOOT_TIMEOUT).input_after(UBOOT_AUTOBOOT, " ");
    for c in commands {
        qemu = qemu.input_after(UBOOT_PROMPT, &line(c));
    }
    let run = qemu.run();

    let mut problems = Vec::new();
    if run.timed_out {
        problems.push(format!("timed out after {:?}", run.timeout));
    } else if !run.exited_ok() {
        problems.push(format!("QEMU's status is {:?}, not 0", run.status));
    }
    let off = run.log.find(POWER_OFF_LINE);
    let typed_off = run.log.find(&format!("{UBOOT_PROMPT}poweroff"));
    if !matches!((typed_off, off), (Some(t), Some(o)) if t < o) {
        problems.push(format!("no `{POWER_OFF_LINE}` line after `poweroff` was typed"));
    }
    for l in run.log.lines() {
        if UBOOT_BAD.iter().any(|bad| l.contains(bad)) {
            problems.push(format!("log line: {l}"));
        }
    }
    if !problems.is_empty() {
        panic!("the U-Boot run failed:\n  - {}\n{run}", problems.join("\n  - "));
    }
    // No external abort was injected: the counter table says so too.
    assert_eq!(run.counter("external aborts"), Some(vec![0]), "{run}");

    let version = answer(&run, "version");
    assert!(version.iter().any(|l| l.starts_with("U-Boot 2023.01")), "version: {version:?}\n{run}");
    let bdinfo = answer(&run, "bdinfo");
    assert_eq!(bdinfo_value(&run, &bdinfo, "-> start"), 0x4000_0000, "{run}");
    assert_eq!(bdinfo_value(&run, &bdinfo, "-> size"), GUEST_RAM, "{run}");
    assert_eq!(md_words(&run, erased, 0x400_0000), [u32::MAX; 4], "{run}");
    let firmware = first_word_of_firmware(arch);
    assert_eq!(md_words(&run, start, 0), [firmware], "{run}");
    // The FDT header's magic 0xd00dfeed, big-endian in memory, read as a
    // little-endian word.
    assert_eq!(md_words(&run, dtb, 0x4000_0000), [0xedfe_0dd0], "{run}");
    // The CRC-32 of 64 MiB of 0xff (zlib's `crc32`), and a page mapped
    // for each page read.
    let crc = answer(&run, bank);
    assert!(crc.iter().any(|l| l.ends_with("==> e709dfcc")), "{bank}: {crc:?}\n{run}");
    let pages = run.counter("pages mapped").unwrap_or_default();
    assert!(pages.first().is_some_and(|&p| p >= 16384), "pages mapped: {pages:?}\n{run}");
    eprintln!("{}", run.summary());
}

/// The first word of the bundle's firmware (what `md.l 0 1` must show).
fn first_word_of_firmware(arch: Arch) -> u32 {
    let bytes = std::fs::read(uboot_bundle(arch, false)).unwrap();
    let entries = cpio::parse(&bytes).unwrap();
    let vms = cpio::check_bundle(&entries).unwrap();
    let fw = vms[0].firmware.as_ref().expect("vm1/firmware");
    u32::from_le_bytes(fw[..4].try_into().unwrap())
}

#[test]
fn uboot_aarch64_max() {
    uboot(Qemu::new().cpu("max"));
}

#[test]
fn uboot_arm_a15() {
    uboot(Qemu::arm().cpu("cortex-a15"));
}

/// U-Boot boots the Linux kernel the bundle placed in the VM's RAM
/// (`scripts/uboot.sh --linux`: Debian's kernel at `0x4020_0000`, its
/// initramfs and command line named in the hypervisor's DTB at the RAM
/// base, which U-Boot hands on): `booti` with that DTB, Linux reaches its
/// shell, and `poweroff -f` there ends the VM and QEMU.
#[test]
fn uboot_booti_linux_aarch64() {
    uboot_linux(Qemu::new().cpu("max"), "booti");
}

/// As [`uboot_booti_linux_aarch64`] on ARM32: `bootz` of Debian's
/// armmp-lpae `zImage`.
#[test]
fn uboot_bootz_linux_arm_a15() {
    uboot_linux(Qemu::arm().cpu("cortex-a15"), "bootz");
}

/// Boots the bundle's Linux from U-Boot's prompt with `boot` (`booti` or
/// `bootz`) and judges the run.
fn uboot_linux(qemu: Qemu, boot: &str) {
    prepare();
    let bundle = uboot_bundle(qemu.arch(), true);
    let run = qemu
        .mem("2G")
        .initrd(bundle)
        .timeout(Duration::from_secs(300))
        .input_after(UBOOT_AUTOBOOT, " ")
        .input_after(UBOOT_PROMPT, &line(&format!("{boot} 40200000 - 40000000")))
        .input_after(&linux_prompt(1), &line("poweroff -f"))
        .run();
    let lines = vm_lines(&run);
    assert!(
        lines.iter().any(|l| l.starts_with("## Flattened Device Tree blob at 40000000")),
        "{run}"
    );
    assert!(lines.iter().any(|l| l.starts_with(LINUX_INIT_LINE)), "{run}");
    assert!(run.exited_ok() && run.log.contains(POWER_OFF_LINE), "{run}");
    for l in run.log.lines() {
        assert!(!UBOOT_BAD.iter().any(|bad| l.contains(bad)), "log line {l:?}\n{run}");
        assert!(!l.contains("Kernel panic"), "log line {l:?}\n{run}");
    }
    eprintln!("{}", run.summary());
}

/// `scripts/uboot.sh` writes bundles that follow the contract: one VM
/// whose firmware is U-Boot for the architecture's QEMU `virt` (it starts
/// with a branch of that instruction set), no kernel, its vCPUs and RAM.
#[test]
fn uboot_bundles_are_well_formed() {
    for (arch, branch_mask, branch) in
        [(Arch::Aarch64, 0xfc00_0000u32, 0x1400_0000u32), (Arch::Arm, 0xff00_0000, 0xea00_0000)]
    {
        let bytes = std::fs::read(uboot_bundle(arch, false)).unwrap();
        let vms = cpio::check_bundle(&cpio::parse(&bytes).unwrap()).unwrap();
        assert_eq!(vms.len(), 1);
        let fw = vms[0].firmware.as_ref().expect("vm1/firmware");
        let first = u32::from_le_bytes(fw[..4].try_into().unwrap());
        assert_eq!(first & branch_mask, branch, "{arch:?}: {first:#x}");
        assert!(vms[0].kernel.is_empty(), "{arch:?}: a kernel");
        assert_eq!(vms[0].config.as_deref(), Some("vcpus=1 mem=256M"));
    }
}
