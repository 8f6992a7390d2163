//! Host-side harness: boots the hypervisor (`out/hyp.bin`) and the guest
//! test images (`out/guest-<name>.bin`) under `qemu-system-aarch64`, or
//! their ARM32 builds (`out/arm/`) under `qemu-system-arm` ([`Arch`]), and
//! judges the serial log.
//!
//! * [`build_images`] runs `scripts/build.sh` once per process and caches
//!   the outcome, so every test of a test binary can call it.
//! * [`require_qemu`] checks that QEMU is installed (`scripts/setup.sh`
//!   installs it) and fails with a clear message otherwise.
//! * [`Qemu`] describes one boot (CPU model, CPUs, memory, kernel, initrd,
//!   bootargs, timeout) and [`Qemu::run`] runs it, capturing the serial
//!   console (QEMU's stdout with `-nographic`) with a timeout; on timeout
//!   the whole QEMU process group is killed.
//! * [`Run`] is the outcome, with checks ([`Run::assert_ok`] and friends)
//!   that print the whole log when they fail.
//! * [`Qemu::input_after`] types on the serial console during a run (QEMU's
//!   stdin, which `-nographic` makes the console); [`switch_input`] is the
//!   hypervisor's escape that gives the input to another VM.
//! * [`linux_bundle`] runs `scripts/linux.sh` (once per process and
//!   configuration) and returns the bundle that boots Debian's Linux under
//!   the hypervisor (`tests/linux.rs`); [`linux_bundle_with`] adds the
//!   memory workload (`tests/memstress`) or a VM running a guest test image
//!   ([`LinuxExtras`]).
//!
//! At most [`max_parallel`] QEMU instances run at once in a process (a
//! global semaphore), whatever `--test-threads` says: QEMU's TCG is CPU
//! hungry and a slow boot must not run into its timeout because others
//! hog the host.
//!
//! The scenarios are in `tests/qemu.rs`; the fault-path figures in
//! `src/bin/fault-bench.rs`. [`cpio`] writes and reads the cpio archives
//! of Linux guests (their initramfs and the hypervisor's bundle), also as
//! the `mkcpio` tool (`src/bin/mkcpio.rs`). The independent reference walker used by
//! `mmu`'s tests lives in `tests/refwalk`.

pub mod cpio;

use std::{
    collections::HashMap,
    fmt,
    io::{Read, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

/// The architecture a boot runs: which images, which QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// AArch64: the hypervisor at EL2, `out/`, `qemu-system-aarch64`.
    Aarch64,
    /// ARMv7-A: the hypervisor in Hyp mode, `out/arm/`, `qemu-system-arm`.
    Arm,
}

impl Arch {
    /// The name the scripts take (`--arch aarch64|arm`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Arm => "arm",
        }
    }

    /// The QEMU binary for this architecture.
    pub fn qemu_bin(self) -> &'static str {
        match self {
            Arch::Aarch64 => "qemu-system-aarch64",
            Arch::Arm => "qemu-system-arm",
        }
    }

    /// Where `scripts/build.sh` writes this architecture's images.
    pub fn out_dir(self) -> PathBuf {
        match self {
            Arch::Aarch64 => out_dir(),
            Arch::Arm => out_dir().join("arm"),
        }
    }

    /// The hypervisor image (`hyp.bin`) for this architecture.
    pub fn hyp_bin(self) -> PathBuf {
        self.out_dir().join("hyp.bin")
    }

    /// Guest image `guest-<name>.bin` built for this architecture.
    pub fn guest_bin(self, name: &str) -> PathBuf {
        self.out_dir().join(format!("guest-{name}.bin"))
    }
}

/// Default timeout of one boot.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The line the hypervisor prints once every VM has stopped, just before
/// PSCI `SYSTEM_OFF`.
pub const POWER_OFF_LINE: &str = "all VMs stopped: powering off";

/// What the hypervisor prints when it is entered at EL1.
pub const NEEDS_EL2: &str = "the hypervisor needs EL2";

/// What the ARM32 hypervisor prints when it is entered outside Hyp mode.
pub const NEEDS_HYP: &str = "the hypervisor needs Hyp mode";

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the harness crate lives in <repo>/tests")
        .to_path_buf()
}

/// `out/`, where `scripts/build.sh` writes the images.
pub fn out_dir() -> PathBuf {
    repo_root().join("out")
}

/// `out/hyp.bin`, the hypervisor as a flat arm64 image.
pub fn hyp_bin() -> PathBuf {
    Arch::Aarch64.hyp_bin()
}

/// `out/guest-<name>.bin`, an AArch64 guest test image.
pub fn guest_bin(name: &str) -> PathBuf {
    Arch::Aarch64.guest_bin(name)
}

/// Runs `scripts/build.sh` (release) once per process and returns its
/// outcome; later calls return the cached outcome. The error holds the
/// script's whole output.
pub fn build_images() -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let script = repo_root().join("scripts/build.sh");
            let started = Instant::now();
            let out = Command::new(&script)
                .current_dir(repo_root())
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                eprintln!(
                    "harness: scripts/build.sh ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            } else {
                Err(format!("scripts/build.sh failed ({}); its output:\n{text}", out.status))
            }
        })
        .clone()
}

/// Checks that both QEMU binaries ([`Arch::qemu_bin`]) can be run and
/// returns the AArch64 one's version line.
pub fn require_qemu() -> Result<String, String> {
    static VERSION: OnceLock<Result<String, String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let mut first = None;
            for bin in [Arch::Aarch64.qemu_bin(), Arch::Arm.qemu_bin()] {
                let missing = |why: String| {
                    format!(
                        "{bin} is not usable ({why}). Install QEMU >= 9 with \
                         scripts/setup.sh (as root), or e.g. \
                         `apt-get install qemu-system-arm`."
                    )
                };
                let out = Command::new(bin)
                    .arg("--version")
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| missing(e.to_string()))?;
                if !out.status.success() {
                    return Err(missing(format!("`{bin} --version`: {}", out.status)));
                }
                let text = String::from_utf8_lossy(&out.stdout);
                first.get_or_insert_with(|| text.lines().next().unwrap_or("").to_string());
            }
            Ok(first.unwrap_or_default())
        })
        .clone()
}

/// Builds the images and checks QEMU, panicking with the reason if either
/// fails: the common start of every scenario.
pub fn prepare() {
    if let Err(e) = require_qemu() {
        panic!("{e}");
    }
    if let Err(e) = build_images() {
        panic!("{e}");
    }
    for arch in [Arch::Aarch64, Arch::Arm] {
        let hyp = arch.hyp_bin();
        assert!(hyp.is_file(), "{} is missing although scripts/build.sh succeeded", hyp.display());
    }
}

/// What the Linux guests' `/init` (written by `scripts/linux.sh`) prints
/// once the kernel has started it: `s2hyp-linux: /init reached, N CPUs
/// (vmV, Linux RELEASE MACHINE)`, N counted in `/proc/cpuinfo`.
pub const LINUX_INIT_LINE: &str = "s2hyp-linux: /init reached";

/// The start of the shell prompt of Linux VM `vm` (`s2hyp-vm1:~# `, the
/// working directory after the colon), as the guests' `/init` sets it.
pub fn linux_prompt(vm: u32) -> String {
    format!("s2hyp-vm{vm}:")
}

/// The Raspberry Pi 4's device tree that `scripts/linux.sh` keeps beside
/// the arm64 kernel it fetched (call [`linux_bundle`] for
/// [`Arch::Aarch64`] first, which fills the cache).
pub fn linux_pi4_dtb() -> PathBuf {
    let root = match (std::env::var_os("S2HYP_LINUX_CACHE"), std::env::var_os("XDG_CACHE_HOME")) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(cache)) => PathBuf::from(cache).join("s2hyp/linux"),
        (None, None) => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/s2hyp/linux")
        }
    };
    root.join("aarch64/bcm2711-rpi-4-b.dtb")
}

/// Runs a script that writes a bundle (`command`: `scripts/linux.sh` or
/// `scripts/uboot.sh` with its options) with `--out out`, from the
/// repository's root; `out` when it succeeded and wrote it, else the
/// script's output.
fn run_bundle_script(mut command: Command, out: PathBuf) -> Result<PathBuf, String> {
    let script = PathBuf::from(command.get_program());
    let name = script.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let started = Instant::now();
    let output = command
        .arg("--out")
        .arg(&out)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if output.status.success() && out.is_file() {
        eprintln!(
            "harness: scripts/{name} ok ({:.1} s): {}",
            started.elapsed().as_secs_f64(),
            out.display()
        );
        Ok(out)
    } else {
        Err(format!(
            "scripts/{name} failed ({}); its output:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Runs `scripts/linux.sh` for `vms` Linux VMs of `vcpus` vCPUs and `mem`
/// RAM each (`512M`) on `arch`, and returns the bundle it wrote,
/// `out/linux/<arch>/bundle-<vms>x<vcpus>-<mem>.cpio`: the hypervisor's
/// initrd. The first call for an architecture may fetch Debian's kernel
/// and busybox (see the script). Each combination is built once per
/// process; the calls are serialised. Panics with the script's output if
/// it fails.
pub fn linux_bundle(arch: Arch, vcpus: u32, mem: &str, vms: u32) -> PathBuf {
    linux_bundle_with(arch, vcpus, mem, vms, &LinuxExtras::default())
}

/// What a Linux bundle may hold beyond its Linux VMs
/// ([`linux_bundle_with`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LinuxExtras {
    /// `/bin/memstress` in the initramfs (`scripts/linux.sh --memstress`:
    /// the memory workload of `tests/memstress`, built for the guests).
    pub memstress: bool,
    /// VM 1 runs a guest test image and the Linux VMs are VMs 2 and up.
    pub test_vm: Option<TestVm>,
}

/// A VM running a guest test image before the Linux VMs of a bundle
/// (`scripts/linux.sh --test-vm`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TestVm {
    /// The image's name: `hostile` for `out/guest-hostile.bin`
    /// (`out/arm/` on ARM32).
    pub image: String,
    /// Its config, e.g. `vcpus=2 mem=64M` (`--test-vm-config`).
    pub config: String,
    /// Its command line after `vm=1`, e.g. `start=input`
    /// (`--test-vm-args`); may be empty.
    pub args: String,
}

impl LinuxExtras {
    /// The part of the bundle's file name that tells these extras apart:
    /// empty, `-memstress`, `-hostile-vcpus2-mem64M`...
    fn file_suffix(&self) -> String {
        let mut s = String::new();
        if self.memstress {
            s.push_str("-memstress");
        }
        if let Some(vm) = &self.test_vm {
            s.push('-');
            s.push_str(&vm.image);
            for word in vm.config.split_whitespace().chain(vm.args.split_whitespace()) {
                s.push('-');
                s.push_str(&word.replace('=', ""));
            }
        }
        s
    }
}

/// [`linux_bundle`] with `extras`; the bundle is
/// `out/linux/<arch>/bundle-<vms>x<vcpus>-<mem><suffix>.cpio`, the suffix
/// naming the extras. The test image must have been built
/// ([`prepare`]).
pub fn linux_bundle_with(
    arch: Arch,
    vcpus: u32,
    mem: &str,
    vms: u32,
    extras: &LinuxExtras,
) -> PathBuf {
    type Key = (Arch, u32, String, u32, LinuxExtras);
    static BUNDLES: OnceLock<Mutex<HashMap<Key, Result<PathBuf, String>>>> = OnceLock::new();
    let mut bundles =
        BUNDLES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let key = (arch, vcpus, mem.to_string(), vms, extras.clone());
    let result = bundles.entry(key).or_insert_with(|| {
        let out = out_dir()
            .join("linux")
            .join(arch.name())
            .join(format!("bundle-{vms}x{vcpus}-{mem}{}.cpio", extras.file_suffix()));
        let mut command = Command::new(repo_root().join("scripts/linux.sh"));
        if extras.memstress {
            command.arg("--memstress");
        }
        if let Some(vm) = &extras.test_vm {
            command.args(["--test-vm", &vm.image, "--test-vm-config", &vm.config]);
            command.args(["--test-vm-args", &vm.args]);
        }
        command
            .args(["--arch", arch.name(), "--vcpus", &vcpus.to_string(), "--mem", mem])
            .args(["--vms", &vms.to_string()]);
        run_bundle_script(command, out)
    });
    match result {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// How many QEMU instances may run at once in this process:
/// `HARNESS_QEMU_JOBS` if set (>= 1), else 2.
pub fn max_parallel() -> usize {
    std::env::var("HARNESS_QEMU_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n >= 1)
        .unwrap_or(2)
}

/// A counting semaphore limiting concurrent QEMU instances.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

static SLOTS: Slots = Slots { used: Mutex::new(0), freed: Condvar::new() };

/// A held QEMU slot; released on drop.
struct Slot;

impl Slot {
    fn acquire() -> Slot {
        let max = max_parallel();
        // A test that panicked while holding the lock cannot have left the
        // counter inconsistent (it only holds it to add or subtract).
        let mut used = SLOTS.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= max {
            used = SLOTS.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = SLOTS.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        SLOTS.freed.notify_one();
    }
}

/// One QEMU boot of the hypervisor on the `virt` machine.
#[derive(Clone, Debug)]
pub struct Qemu {
    cpu: String,
    arch: Arch,
    /// `None`: QEMU `virt` with the settings below; `Some(m)`: a board
    /// model (`raspi4b`...) with its fixed CPUs and memory.
    board: Option<String>,
    smp: u32,
    mem: String,
    virtualization: bool,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    append: String,
    timeout: Duration,
    stop_when: Option<String>,
    extra: Vec<String>,
    /// `gic-version` of `virt` (AArch64 default 3; ARM32: QEMU's, 2).
    gic: Option<u32>,
    /// Console input: (marker, text), in order ([`Qemu::input_after`]).
    inputs: Vec<(String, String)>,
}

impl Default for Qemu {
    fn default() -> Self {
        Self::new()
    }
}

impl Qemu {
    /// `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu
    /// max -smp 1 -m 1G -kernel out/hyp.bin`, no initrd (the demo guest),
    /// no bootargs, [`DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        Qemu {
            arch: Arch::Aarch64,
            board: None,
            cpu: "max".into(),
            smp: 1,
            mem: "1G".into(),
            virtualization: true,
            kernel: hyp_bin(),
            initrd: None,
            append: String::new(),
            timeout: DEFAULT_TIMEOUT,
            stop_when: None,
            extra: Vec::new(),
            gic: None,
            inputs: Vec::new(),
        }
    }

    /// As [`Qemu::new`] for ARM32: `qemu-system-arm -M virt,virtualization=on
    /// -cpu cortex-a15 -kernel out/arm/hyp.bin` (the hypervisor in Hyp
    /// mode; guest images from `out/arm/`).
    pub fn arm() -> Self {
        Qemu {
            arch: Arch::Arm,
            cpu: "cortex-a15".into(),
            kernel: Arch::Arm.hyp_bin(),
            ..Self::new()
        }
    }

    /// A Raspberry Pi: QEMU `-M <machine>` (`raspi4b`, `raspi3b`) with
    /// `kernel`, an image `scripts/build.sh --board` wrote. The board
    /// brings its own CPUs and memory; QEMU passes no DTB, so the
    /// hypervisor runs on its built-in description of the board. There is
    /// no PSCI to power off with: see [`Qemu::stop_when`].
    pub fn raspi(machine: &str, kernel: impl Into<PathBuf>) -> Self {
        Qemu { board: Some(machine.into()), kernel: kernel.into(), ..Self::new() }
    }

    /// The architecture this boot runs.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The CPU model (`-cpu`), e.g. `max` or `cortex-a57`.
    pub fn cpu(mut self, cpu: &str) -> Self {
        self.cpu = cpu.into();
        self
    }

    /// The GIC of the `virt` machine (`gic-version=2` or `3`).
    pub fn gic(mut self, version: u32) -> Self {
        self.gic = Some(version);
        self
    }

    /// The number of host CPUs (`-smp`).
    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }

    /// The machine's RAM (`-m`), e.g. `1G`.
    pub fn mem(mut self, mem: &str) -> Self {
        self.mem = mem.into();
        self
    }

    /// Boots without `virtualization=on`: QEMU then enters the kernel at
    /// EL1.
    pub fn without_el2(mut self) -> Self {
        self.virtualization = false;
        self
    }

    /// The kernel image (`-kernel`); default `out/hyp.bin`.
    pub fn kernel(mut self, path: impl Into<PathBuf>) -> Self {
        self.kernel = path.into();
        self
    }

    /// The guest image `guest-<name>.bin` of this boot's architecture as
    /// initrd.
    pub fn guest(self, name: &str) -> Self {
        let image = self.arch.guest_bin(name);
        self.initrd(image)
    }

    /// An initrd (`-initrd`): the guest image the hypervisor runs.
    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Self {
        self.initrd = Some(path.into());
        self
    }

    /// The hypervisor's bootargs (`-append`), e.g. `vms=2 vcpus=4`.
    pub fn append(mut self, bootargs: &str) -> Self {
        self.append = bootargs.into();
        self
    }

    /// How long the boot may take before QEMU is killed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Kills QEMU as soon as the serial log contains `text` (for boots
    /// that never end by themselves); [`Run::stopped_early`] says so.
    pub fn stop_when(mut self, text: &str) -> Self {
        self.stop_when = Some(text.into());
        self
    }

    /// Types `text` on the serial console (writes it to QEMU's stdin) once
    /// `marker` appears in the serial log. Repeatable: the texts are sent in
    /// the order given, each after the previous one; a marker given again
    /// waits for its next appearance (the second input after `"echo> "`
    /// waits for the second `echo> `), see [`inputs_due`]. A run with
    /// inputs gets a pipe as stdin, one without `/dev/null` as before.
    ///
    /// The text goes through QEMU's `-nographic` console multiplexer, whose
    /// escape is Ctrl-A (0x01): Ctrl-A Ctrl-A reaches the guest side as one
    /// Ctrl-A (so [`switch_input`] doubles it) and a lone Ctrl-A followed
    /// by `x` would end QEMU.
    pub fn input_after(mut self, marker: &str, text: &str) -> Self {
        self.inputs.push((marker.into(), text.into()));
        self
    }

    /// Extra QEMU arguments, e.g. `-s -S`.
    pub fn extra_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    /// QEMU's arguments.
    pub fn args(&self) -> Vec<String> {
        if let Some(board) = &self.board {
            let mut args: Vec<String> = ["-M", board, "-nographic", "-no-reboot", "-nic", "none"]
                .into_iter()
                .map(String::from)
                .collect();
            args.extend(["-kernel".into(), self.kernel.display().to_string()]);
            args.extend(self.extra.iter().cloned());
            return args;
        }
        let mut machine = String::from("virt");
        if self.virtualization {
            machine.push_str(",virtualization=on");
        }
        match (self.gic, self.arch) {
            (Some(v), _) => machine.push_str(&format!(",gic-version={v}")),
            // ARMv7 CPUs have a GICv2, QEMU's default.
            (None, Arch::Aarch64) => machine.push_str(",gic-version=3"),
            (None, Arch::Arm) => {}
        }
        let mut args: Vec<String> = vec![
            "-M".into(),
            machine,
            "-cpu".into(),
            self.cpu.clone(),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            self.mem.clone(),
            "-nographic".into(),
            "-no-reboot".into(),
            // No default NIC: it needs a boot ROM (efi-virtio.rom) that a
            // minimal QEMU install lacks, and nothing here uses it.
            "-nic".into(),
            "none".into(),
            "-kernel".into(),
            self.kernel.display().to_string(),
        ];
        if let Some(initrd) = &self.initrd {
            args.push("-initrd".into());
            args.push(initrd.display().to_string());
        }
        if !self.append.is_empty() {
            args.push("-append".into());
            args.push(self.append.clone());
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The command line, quoted for a shell (for logs and reproduction).
    pub fn command_line(&self) -> String {
        std::iter::once(self.arch.qemu_bin().to_string())
            .chain(self.args().iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs QEMU (once a slot is free, see [`max_parallel`]) until it
    /// exits, the timeout expires or the [`stop_when`](Self::stop_when)
    /// text appears, and returns the outcome. Panics only if QEMU cannot
    /// be started.
    pub fn run(&self) -> Run {
        if let Some(initrd) = &self.initrd {
            assert!(
                initrd.is_file(),
                "guest image {} does not exist (does the guest package have that bin? \
                 scripts/build.sh writes out/guest-<bin>.bin)",
                initrd.display()
            );
        }
        let _slot = Slot::acquire();
        let command = self.command_line();
        let started = Instant::now();
        let mut child = Command::new(self.arch.qemu_bin())
            .args(self.args())
            .current_dir(repo_root())
            .stdin(if self.inputs.is_empty() { Stdio::null() } else { Stdio::piped() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills everything.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        let pid = child.id();
        let mut stdin = child.stdin.take();
        let mut sent = 0;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            reader(child.stdout.take().expect("piped stdout"), stdout.clone()),
            reader(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];

        let deadline = started + self.timeout;
        let mut timed_out = false;
        let mut stopped_early = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(e) => panic!("waiting for QEMU (pid {pid}): {e}"),
            }
            if let Some(text) = &self.stop_when {
                let log = stdout.lock().unwrap_or_else(|e| e.into_inner());
                if String::from_utf8_lossy(&log).contains(text.as_str()) {
                    stopped_early = true;
                }
            }
            if let (Some(pipe), true) = (&mut stdin, sent < self.inputs.len()) {
                let log = {
                    let b = stdout.lock().unwrap_or_else(|e| e.into_inner());
                    String::from_utf8_lossy(&b).replace('\r', "")
                };
                for (marker, text) in &self.inputs[sent..inputs_due(&log, &self.inputs, sent)] {
                    // QEMU may be gone already: its exit status tells.
                    let _ = pipe.write_all(text.as_bytes()).and_then(|()| pipe.flush());
                    eprintln!("harness: after {marker:?}, typed {text:?}");
                    sent += 1;
                }
            }
            if !stopped_early && Instant::now() >= deadline {
                timed_out = true;
            }
            if stopped_early || timed_out {
                kill_group(pid);
                // Reap it; its status (killed) is not QEMU's own.
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        drop(stdin);
        for r in readers {
            let _ = r.join();
        }
        if sent < self.inputs.len() {
            eprintln!(
                "harness: {} of {} console inputs never sent (marker {:?} not seen)",
                self.inputs.len() - sent,
                self.inputs.len(),
                self.inputs[sent].0
            );
        }
        let elapsed = started.elapsed();
        let text = |buf: &Arc<Mutex<Vec<u8>>>| {
            let b = buf.lock().unwrap_or_else(|e| e.into_inner());
            String::from_utf8_lossy(&b).replace('\r', "")
        };
        Run {
            command,
            log: text(&stdout),
            stderr: text(&stderr),
            status,
            timed_out,
            stopped_early,
            timeout: self.timeout,
            elapsed,
        }
    }
}

/// How many of `inputs` ([`Qemu::input_after`]'s (marker, text) pairs) may
/// have been sent once the serial log is `log`, given that the first
/// `sent` were: the next one is due when its marker appears in the log one
/// more time than it was used by the inputs before it, and so on. So
/// distinct markers may appear in any order, and a repeated one counts
/// its appearances.
pub fn inputs_due(log: &str, inputs: &[(String, String)], sent: usize) -> usize {
    let mut due = sent;
    while let Some((marker, _)) = inputs.get(due) {
        let earlier = inputs[..due].iter().filter(|(m, _)| m == marker).count();
        if log.matches(marker.as_str()).count() <= earlier {
            break;
        }
        due += 1;
    }
    due
}

/// What to type on the serial console so that the hypervisor gives the
/// console input to VM `vm` (1 to 9): its escape Ctrl-A then the digit
/// (`docs/HYPERVISOR.md`), with the Ctrl-A doubled because QEMU's
/// `-nographic` multiplexer takes a single one as its own escape.
pub fn switch_input(vm: u32) -> String {
    assert!((1..=9).contains(&vm), "the escape names vm1 to vm9");
    format!("\x01\x01{vm}")
}

/// How many times [`Qemu::run_repeated`] boots a scenario:
/// `HARNESS_REPEAT` if set (>= 1), else 1. For hunting flakes: with
/// `HARNESS_REPEAT=50`, every scenario must pass 50 times in a row.
pub fn repeat() -> usize {
    std::env::var("HARNESS_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n >= 1)
        .unwrap_or(1)
}

impl Qemu {
    /// [`Qemu::run`] [`repeat`] times: every run but the last must show
    /// no [`Run::problems`] (else this panics with that run's log, and
    /// says which repetition it was); the last is returned for the
    /// scenario's own checks. A boot that waits for a text
    /// ([`Qemu::stop_when`]) runs once.
    pub fn run_repeated(&self) -> Run {
        let n = if self.stop_when.is_some() { 1 } else { repeat() };
        for i in 1..n {
            let run = self.run();
            let p = run.problems();
            if !p.is_empty() {
                panic!("repetition {i} of {n} failed:\n  - {}\n{run}", p.join("\n  - "));
            }
        }
        let run = self.run();
        if n > 1 {
            eprintln!("harness: {n} runs of `{}`", run.command);
        }
        run
    }
}

/// Copies everything from `from` into `into` on a thread.
fn reader(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    into.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n])
                }
            }
        }
    })
}

/// SIGKILLs process group `pgid` (`kill -KILL -- -PGID`; the harness has
/// no libc binding and QEMU is the group's leader).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Quotes `s` for a POSIX shell if it needs it.
fn shell_quote(s: &str) -> String {
    let plain =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=,./:+@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A test result the hypervisor logged for a `HYP_REPORT`:
/// `vm<vm>: test <test> PASS` or `... FAIL (code ...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Report {
    /// The VM's id as the hypervisor prints it.
    pub vm: u32,
    /// The test number.
    pub test: u64,
    /// PASS.
    pub pass: bool,
}

/// One row of the hypervisor's counter table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The counter's name, e.g. `pages mapped`.
    pub name: String,
    /// Its value for each VM, in the table's column order.
    pub values: Vec<u64>,
}

/// The outcome of one QEMU run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The QEMU command line.
    pub command: String,
    /// The serial console (QEMU's stdout), `\r` removed.
    pub log: String,
    /// QEMU's stderr.
    pub stderr: String,
    /// QEMU's exit status; `None` when the harness killed it.
    pub status: Option<ExitStatus>,
    /// QEMU was killed because the timeout expired.
    pub timed_out: bool,
    /// QEMU was killed because the awaited text appeared.
    pub stopped_early: bool,
    /// The timeout the run had.
    pub timeout: Duration,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Run {
    /// Every `HYP_REPORT` line of the log, in order.
    pub fn reports(&self) -> Vec<Report> {
        self.log.lines().filter_map(parse_report).collect()
    }

    /// Ids of the VMs that reported at least one PASS, sorted.
    pub fn passing_vms(&self) -> Vec<u32> {
        let mut vms: Vec<u32> = self.reports().iter().filter(|r| r.pass).map(|r| r.vm).collect();
        vms.sort_unstable();
        vms.dedup();
        vms
    }

    /// Ids of the VMs whose guest printed its final summary
    /// `[vmN] DONE <image> PASS (...)` (the guest runtime's last line
    /// before `SYSTEM_OFF`), sorted.
    pub fn done_vms(&self) -> Vec<u32> {
        let mut vms: Vec<u32> = self
            .log
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("[vm")?;
                let (id, rest) = rest.split_once("] DONE ")?;
                let verdict = rest.split_whitespace().nth(1)?;
                (verdict == "PASS").then(|| id.parse().ok())?
            })
            .collect();
        vms.sort_unstable();
        vms.dedup();
        vms
    }

    /// Log lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<&str> {
        self.log.lines().filter(|l| l.contains(needle)).collect()
    }

    /// The hypervisor's counter table (after `stage-2 counters:`, printed
    /// at power-off): one entry per counter, its name and one value per
    /// VM, in the order printed. Empty when there is no table.
    pub fn counters(&self) -> Vec<Counter> {
        let mut lines = self.log.lines().skip_while(|l| !l.contains("stage-2 counters:"));
        if lines.next().is_none() {
            return Vec::new();
        }
        // Header: "counter vm1 vm2 ...".
        let Some(header) = lines.next() else {
            return Vec::new();
        };
        let vms = header.split_whitespace().skip(1).count();
        let mut out = Vec::new();
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            if vms == 0 || !line.starts_with(' ') || words.len() <= vms {
                break;
            }
            let (name, values) = words.split_at(words.len() - vms);
            let Ok(values) = values.iter().map(|v| v.parse()).collect::<Result<Vec<u64>, _>>()
            else {
                break;
            };
            out.push(Counter { name: name.join(" "), values });
        }
        out
    }

    /// The values of the counter whose name is `name`.
    pub fn counter(&self, name: &str) -> Option<Vec<u64>> {
        self.counters().into_iter().find(|c| c.name == name).map(|c| c.values)
    }

    /// QEMU exited by itself with status 0.
    pub fn exited_ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// What is wrong with a run that should have passed: exit status 0,
    /// no timeout, at least one PASS, every VM that reported printed its
    /// guest's `DONE <image> PASS` summary, no FAIL, no PANIC (nor a Rust
    /// `panicked`, nor the hypervisor's `hyp: BUG:` report of a lost
    /// wake-up), and the power-off line. Empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.timed_out {
            p.push(format!("timed out after {:?}", self.timeout));
        } else if self.stopped_early {
            p.push("stopped by the harness".to_string());
        } else if !self.exited_ok() {
            p.push(match self.status {
                Some(s) => format!("QEMU exited with {s}"),
                None => "QEMU did not exit".to_string(),
            });
        }
        let reports = self.reports();
        if !reports.iter().any(|r| r.pass) {
            p.push("no `vmN: test T PASS` line".to_string());
        }
        let done = self.done_vms();
        let mut vms: Vec<u32> = reports.iter().map(|r| r.vm).collect();
        vms.sort_unstable();
        vms.dedup();
        for vm in vms {
            if !done.contains(&vm) {
                p.push(format!(
                    "vm{vm}: no guest summary `[vm{vm}] DONE <image> PASS` (did the guest finish?)"
                ));
            }
        }
        for line in self.log.lines() {
            if line.contains("FAIL")
                || line.contains("PANIC")
                || line.contains("panicked")
                || line.contains("hyp: BUG:")
            {
                p.push(format!("log line: {line}"));
            }
        }
        if !self.log.contains(POWER_OFF_LINE) {
            p.push(format!("no `{POWER_OFF_LINE}` line"));
        }
        p
    }

    /// Panics (printing the whole run) unless [`problems`](Self::problems)
    /// is empty.
    #[track_caller]
    pub fn assert_ok(&self) {
        let p = self.problems();
        if !p.is_empty() {
            panic!("the run failed:\n  - {}\n{self}", p.join("\n  - "));
        }
        eprintln!("{}", self.summary());
    }

    /// [`assert_ok`](Self::assert_ok), and at least `n` distinct VMs
    /// reported a PASS.
    #[track_caller]
    pub fn assert_ok_vms(&self, n: usize) {
        self.assert_ok();
        let vms = self.passing_vms();
        if vms.len() < n {
            panic!("expected PASS reports from {n} VMs, got them from {vms:?}\n{self}");
        }
    }

    /// Panics (printing the whole run) unless the log contains `text`.
    #[track_caller]
    pub fn assert_contains(&self, text: &str) {
        if !self.log.contains(text) {
            panic!("the log does not contain {text:?}\n{self}");
        }
    }

    /// Panics (printing the whole run) if the log contains `text`.
    #[track_caller]
    pub fn assert_lacks(&self, text: &str) {
        if let Some(line) = self.log.lines().find(|l| l.contains(text)) {
            panic!("the log contains {text:?}: {line}\n{self}");
        }
    }

    /// One line: the outcome, the number of PASS reports, the wall time.
    pub fn summary(&self) -> String {
        let reports = self.reports();
        let passes = reports.iter().filter(|r| r.pass).count();
        let outcome = if self.timed_out {
            "timeout".to_string()
        } else if self.stopped_early {
            "stopped".to_string()
        } else {
            match self.status.and_then(|s| s.code()) {
                Some(c) => format!("exit {c}"),
                None => "killed".to_string(),
            }
        };
        format!(
            "{outcome}, {passes} PASS / {} FAIL reports from VMs {:?}, {:.1} s: {}",
            reports.len() - passes,
            self.passing_vms(),
            self.elapsed.as_secs_f64(),
            self.command
        )
    }
}

impl fmt::Display for Run {
    /// The command, the outcome and the whole log (and stderr, if any).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "---- {}", self.summary())?;
        writeln!(f, "---- serial log ({} lines):", self.log.lines().count())?;
        for line in self.log.lines() {
            writeln!(f, "| {line}")?;
        }
        if !self.stderr.trim().is_empty() {
            writeln!(f, "---- QEMU stderr:")?;
            for line in self.stderr.lines() {
                writeln!(f, "! {line}")?;
            }
        }
        write!(f, "---- end of log")
    }
}

/// Parses `vm<N>: test <T> PASS` / `vm<N>: test <T> FAIL ...` anywhere in
/// `line`.
pub fn parse_report(line: &str) -> Option<Report> {
    let mut rest = line;
    while let Some(i) = rest.find("vm") {
        rest = &rest[i + 2..];
        if let Some(r) = parse_report_at(rest) {
            return Some(r);
        }
    }
    None
}

/// Parses `<N>: test <T> PASS|FAIL` at the start of `s`.
fn parse_report_at(s: &str) -> Option<Report> {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let n = digits(s);
    let vm = s.get(..n)?.parse().ok()?;
    let s = s[n..].strip_prefix(": test ")?;
    let n = digits(s);
    let test = s.get(..n)?.parse().ok()?;
    let s = s[n..].strip_prefix(' ')?;
    let pass = if s.starts_with("PASS") {
        true
    } else if s.starts_with("FAIL") {
        false
    } else {
        return None;
    };
    Some(Report { vm, test, pass })
}

/// Judges a run of the `alias` guest image with `vms=2` and bootargs
/// `append` (shared by the AArch64 and ARM32 scenarios): both VMs passed;
/// each cross-VM check passed exactly once; both VMs took coherency
/// faults and adjusted aliases; VM 2 received three shares and holds the
/// alias entries the guest keeps (two more with two vCPUs, whose SMP data
/// check then passed in both VMs).
pub fn check_alias_two_vms(run: &Run, append: &str) {
    let vcpus: u64 = append
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vcpus="))
        .map_or(1, |v| v.parse().expect("vcpus=N"));
    run.assert_ok_vms(2);
    for check in [
        "[vm1] TEST alias/share PASS",
        "[vm1] TEST alias/reply PASS",
        "[vm2] TEST alias/exchange PASS",
        "[vm1] TEST alias/reset_drops_aliases PASS",
        "[vm1] TEST alias/share_after_reset PASS",
        "[vm2] TEST alias/kept_across_reset PASS",
    ] {
        let n = run.lines_with(check).len();
        assert_eq!(n, 1, "{n} `{check}` lines, want 1\n{run}");
    }
    let counter = |name: &str| {
        run.counter(name).unwrap_or_else(|| panic!("no `{name}` row in the counters\n{run}"))
    };
    for name in ["coherency faults", "aliases adjusted"] {
        let values = counter(name);
        assert!(
            values.len() == 2 && values.iter().all(|&v| v > 0),
            "`{name}` is {values:?}, want > 0 for both VMs\n{run}"
        );
    }
    // VM 2 received three shares; VM 1 none. VM 1's reset dropped its
    // aliases; VM 2's guest dropped its own but C (and with two vCPUs the
    // last round's two), and kept Y, YQ and Y2.
    assert_eq!(counter("shares received"), [0, 3], "{run}");
    let rounds = if vcpus >= 2 { 2 } else { 0 };
    assert_eq!(counter("alias entries"), [0, 4 + rounds], "{run}");
    if vcpus >= 2 {
        let n = run.lines_with("alias/smp_data PASS").len();
        assert_eq!(n, 2, "{n} `alias/smp_data PASS` lines, want 2\n{run}");
    }
}

/// Judges a run of the `hostile` image (`vms=2`: VM 1 attacks, VM 2 is
/// the victim): both VMs passed every check they ran, the hypervisor
/// stayed up and powered off, and the warnings the attacker's refused
/// calls caused stayed few (rate-limited per VM) although it made
/// thousands.
pub fn check_hostile(run: &Run) {
    run.assert_ok_vms(2);
    for check in ["hostile/fuzz PASS", "hostile/victim_intact PASS", "hostile/rmap_room PASS"] {
        run.assert_contains(check);
    }
    // The hypervisor prints at most a burst of 8 warnings per VM, then 4 a
    // second (and the counter table is one line).
    let warnings =
        run.log.lines().filter(|l| l.starts_with("vm1: ") && !l.contains(": test ")).count();
    let allowed = 8 + 4 * (run.elapsed.as_secs() as usize + 1) + 4;
    let refused = run.counter("calls refused").unwrap_or_default();
    assert!(
        refused.first().is_some_and(|&n| n > 1000) && warnings <= allowed,
        "{warnings} warning lines (at most {allowed}) for {refused:?} refused calls\n{run}"
    );
}

/// The checks of the `psci` image's first boot, each of which a run must
/// pass.
const PSCI_FIRST_BOOT: [&str; 19] = [
    "version",
    "features_implemented",
    "features_not_supported",
    "unimplemented_refused",
    "smccc_version",
    "smccc_arch_features",
    "affinity_info_off",
    "cpu_on_invalid_address",
    "cpu_on_invalid_mpidr",
    "cpu_on_self_already_on",
    "cpu_on_secondary",
    "secondary_view",
    "cpu_on_running_already_on",
    "cpu_off",
    "migrate_info_type",
    "cpu_suspend_standby",
    "cpu_suspend_refused",
    "system_reset2_refused",
    "no_unexpected_irq",
];

/// Judges a run of the `psci` image (one VM, `vcpus=2`) that warm-resets
/// `resets` times with `SYSTEM_RESET2` (AArch64: 2, once with each
/// function id; ARM32: 1): it passed, every check of the first boot,
/// those of the boots after each reset and the `extra` ones (of one
/// architecture) are there and passed, and the hypervisor logged each
/// warm reset.
pub fn check_psci(run: &Run, resets: usize, extra: &[&str]) {
    run.assert_ok();
    let after: [&[&str]; 2] = [
        &["reset2_warm", "cpu_on_after_reset", "secondary_view_after_reset", "cpu_off_after_reset"],
        &["reset2_warm_smc32", "cpu_on_after_second_reset", "cpu_off_after_second_reset"],
    ];
    let checks = after.iter().take(resets).flat_map(|a| a.iter());
    for check in PSCI_FIRST_BOOT.iter().chain(checks).chain(extra) {
        run.assert_contains(&format!("[vm1] TEST psci/{check} PASS"));
    }
    let n = run.lines_with("vm1: SYSTEM_RESET2 (warm)").len();
    assert_eq!(n, resets, "{n} warm resets logged, want {resets}\n{run}");
}

/// U-Boot's prompt (`scripts/uboot.sh`'s guests), which it prints before
/// it reads each command line.
pub const UBOOT_PROMPT: &str = "=> ";

/// What U-Boot prints while it counts down to its boot command: a key
/// typed then stops it at its prompt.
pub const UBOOT_AUTOBOOT: &str = "Hit any key to stop autoboot";

/// Runs `scripts/uboot.sh` for `arch` and returns the bundle it wrote,
/// `out/uboot/<arch>/bundle.cpio` (with `linux`,
/// `bundle-linux.cpio`: U-Boot and the Linux kernel and initramfs of
/// `scripts/linux.sh` in RAM for it to boot): one VM of one vCPU and
/// 256 MiB whose firmware is Debian's U-Boot for QEMU `virt`, the
/// hypervisor's initrd. The first call may fetch `u-boot-qemu` (see the
/// script). Each bundle is built once per process; the calls are
/// serialised. Panics with the script's output if it fails.
pub fn uboot_bundle(arch: Arch, linux: bool) -> PathBuf {
    type Key = (Arch, bool);
    static BUNDLES: OnceLock<Mutex<HashMap<Key, Result<PathBuf, String>>>> = OnceLock::new();
    let mut bundles =
        BUNDLES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let result = bundles.entry((arch, linux)).or_insert_with(|| {
        let name = if linux { "bundle-linux.cpio" } else { "bundle.cpio" };
        let out = out_dir().join("uboot").join(arch.name()).join(name);
        let mut command = Command::new(repo_root().join("scripts/uboot.sh"));
        command.args(["--arch", arch.name()]);
        if linux {
            command.arg("--linux");
        }
        run_bundle_script(command, out)
    });
    match result {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reports() {
        assert_eq!(
            parse_report("vm1: test 201 PASS"),
            Some(Report { vm: 1, test: 201, pass: true })
        );
        assert_eq!(
            parse_report("[vm2] x vm2: test 7 FAIL (code 0x3)"),
            Some(Report { vm: 2, test: 7, pass: false })
        );
        assert_eq!(parse_report("[vm1] TEST faults/read PASS"), None);
        assert_eq!(parse_report("vm1: test PASS"), None);
        assert_eq!(parse_report("vm: test 1 PASS"), None);
    }

    #[test]
    fn builds_the_command_line() {
        let q = Qemu::new()
            .cpu("cortex-a57")
            .smp(4)
            .kernel("out/hyp.bin")
            .initrd("out/guest-smp.bin")
            .append("vcpus=4 mem=64M");
        assert_eq!(
            q.command_line(),
            "qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu cortex-a57 \
             -smp 4 -m 1G -nographic -no-reboot -nic none -kernel out/hyp.bin \
             -initrd out/guest-smp.bin -append 'vcpus=4 mem=64M'"
        );
        let el1 = Qemu::new().without_el2().kernel("k");
        assert!(el1.command_line().contains("-M virt,gic-version=3 "));
    }

    #[test]
    fn judges_a_log() {
        let ok = |log: &str| Run {
            command: String::new(),
            log: log.into(),
            stderr: String::new(),
            status: None,
            timed_out: false,
            stopped_early: false,
            timeout: DEFAULT_TIMEOUT,
            elapsed: Duration::ZERO,
        };
        // Killed (no status): a problem even with a good log.
        let r = ok("vm1: test 1 PASS\n[vm1] DONE demo PASS (1 passed, 0 failed) (test 100)\n\
                    vm2: test 1 PASS\nall VMs stopped: powering off\n");
        assert_eq!(r.passing_vms(), vec![1, 2]);
        assert_eq!(r.done_vms(), vec![1]);
        assert_eq!(
            r.problems(),
            vec![
                "QEMU did not exit".to_string(),
                "vm2: no guest summary `[vm2] DONE <image> PASS` (did the guest finish?)"
                    .to_string()
            ]
        );
        let r = ok("vm1: test 1 PASS\nvm1: test 2 FAIL (code 0x1)\nPANIC on cpu0: x\n");
        let p = r.problems();
        assert!(p.iter().any(|l| l.contains("test 2 FAIL")), "{p:?}");
        assert!(p.iter().any(|l| l.contains("PANIC on cpu0")), "{p:?}");
        assert!(p.iter().any(|l| l.contains(POWER_OFF_LINE)), "{p:?}");
    }

    #[test]
    fn parses_the_counter_table() {
        let run = Run {
            command: String::new(),
            log: "x\nstage-2 counters:\n  counter                       vm1        vm2\n  \
                  stage-2 faults                 12          3\n  TLBI by IPA                     \
                  0          1\nall VMs stopped: powering off\n"
                .into(),
            stderr: String::new(),
            status: None,
            timed_out: false,
            stopped_early: false,
            timeout: DEFAULT_TIMEOUT,
            elapsed: Duration::ZERO,
        };
        assert_eq!(
            run.counters(),
            vec![
                Counter { name: "stage-2 faults".into(), values: vec![12, 3] },
                Counter { name: "TLBI by IPA".into(), values: vec![0, 1] },
            ]
        );
        assert_eq!(run.counter("TLBI by IPA"), Some(vec![0, 1]));
    }

    #[test]
    fn inputs_wait_for_their_markers() {
        let inputs: Vec<(String, String)> = [("a> ", "1"), ("b> ", "2"), ("a> ", "3")]
            .iter()
            .map(|(m, t)| (m.to_string(), t.to_string()))
            .collect();
        assert_eq!(inputs_due("", &inputs, 0), 0);
        assert_eq!(inputs_due("boot\nb> ", &inputs, 0), 0, "in order: a> first");
        assert_eq!(inputs_due("b> a> ", &inputs, 0), 2, "distinct markers in any order");
        assert_eq!(inputs_due("b> a> ", &inputs, 2), 2, "the second a> is not there yet");
        assert_eq!(inputs_due("b> a> 1\na> ", &inputs, 2), 3);
        assert_eq!(inputs_due("a> a> b> ", &inputs, 1), 3);
        assert_eq!(inputs_due("anything", &[], 0), 0);
    }

    #[test]
    fn the_input_switch_is_doubled_for_qemu() {
        assert_eq!(switch_input(2), "\x01\x012");
        assert_eq!(Qemu::new().input_after("x", "y").inputs, [("x".into(), "y".into())]);
        // Inputs do not show on the command line.
        assert_eq!(Qemu::new().input_after("x", "y").args(), Qemu::new().args());
    }

    #[test]
    fn names_bundles_by_their_extras() {
        assert_eq!(LinuxExtras::default().file_suffix(), "");
        let e = LinuxExtras {
            memstress: true,
            test_vm: Some(TestVm {
                image: "hostile".into(),
                config: "vcpus=2 mem=64M".into(),
                args: "start=input".into(),
            }),
        };
        assert_eq!(e.file_suffix(), "-memstress-hostile-vcpus2-mem64M-startinput");
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("a=b,c"), "a=b,c");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
