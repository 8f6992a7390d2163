//! Test results: console lines, `HYP_REPORT`, the summary and power-off.
//!
//! Check `n` of an image is reported as test number `test_base + n`
//! (`guest_main!`), with the console line `TEST <image>/<check> PASS` or
//! `TEST <image>/<check> FAIL`, followed by ` (test <number>)` and
//! possibly `: <details>`. When `main`
//! returns, [`finish`] reports the image as a whole as test number
//! `test_base` (pass = at least one check ran and none failed), prints
//! `DONE <image> PASS|FAIL (<p> passed, <f> failed)` and powers off.
//! A panic or an unexpected exception reports `test_base + 99` and
//! `test_base` as failed and powers off.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::println;
use crate::rt::mem::Mismatch;
use crate::rt::{arch, exception, hvc, image, platform, psci, smp, Image};

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

/// Test number of "the image died" (panic, unexpected exception).
pub const FATAL_CHECK: u64 = 99;

/// Prints the banner. Primary, before `main`.
pub(crate) fn start(image: &Image) {
    let (hyp, psci) = (hvc::hyp_version_at_boot(), hvc::psci_version_at_boot());
    println!(
        "guest {}: {} up on cpu 0 (MPIDR {:#x}), DTB {:#x}, RAM {:#x}-{:#x} ({}), {} vCPU(s) in DTB",
        image.name,
        arch::boot::RUNS_AT,
        smp::mpidr(),
        platform::dtb(),
        platform::ram_start(),
        platform::ram_end(),
        if platform::ram_from_dtb() { "DTB" } else { "default" },
        platform::dtb_cpus(),
    );
    match (hvc::hyp_present(), hvc::psci_present()) {
        (true, _) => println!(
            "guest {}: hypervisor {hyp:#x}, PSCI {}.{}",
            image.name,
            psci >> 16,
            psci & 0xffff
        ),
        (false, true) => println!(
            "guest {}: no hypervisor calls (HYP_VERSION: {hyp:#x}), PSCI {}.{}",
            image.name,
            psci >> 16,
            psci & 0xffff
        ),
        (false, false) => {
            println!(
                "guest {}: no hypervisor calls and no PSCI (plain {})",
                image.name,
                arch::boot::RUNS_AT
            )
        }
    }
    if let Some(args) = platform::bootargs() {
        println!("guest {}: bootargs \"{args}\"", image.name);
    }
}

/// Reports check `check` of this image: prints `TEST <image>/<name> PASS`
/// or `FAIL` and calls `HYP_REPORT(test_base + check, !ok)`. Returns `ok`.
pub fn test_result(check: u64, name: &str, ok: bool) -> bool {
    report(check, name, ok, None)
}

/// [`test_result`] with details appended to the console line:
/// `TEST <image>/<name> PASS (test N): <detail>`.
pub fn test_result_with(check: u64, name: &str, ok: bool, detail: fmt::Arguments<'_>) -> bool {
    report(check, name, ok, Some(detail))
}

/// Check that `got == want`; both are printed on the line.
pub fn check_eq<T: PartialEq + fmt::Debug>(check: u64, name: &str, got: T, want: T) -> bool {
    let ok = got == want;
    report(check, name, ok, Some(format_args!("got {got:?}, want {want:?}")))
}

/// Check that a memory verification found no mismatch (the first one is
/// printed otherwise).
pub fn check_mem(check: u64, name: &str, r: Result<(), Mismatch>) -> bool {
    match r {
        Ok(()) => report(check, name, true, None),
        Err(m) => report(
            check,
            name,
            false,
            Some(format_args!("word {:#x} holds {:#x}, want {:#x}", m.addr, m.got, m.want)),
        ),
    }
}

fn report(check: u64, name: &str, ok: bool, detail: Option<fmt::Arguments<'_>>) -> bool {
    let img = image();
    let number = img.test_base + check;
    let verdict = if ok { "PASS" } else { "FAIL" };
    match detail {
        Some(d) => println!("TEST {}/{name} {verdict} (test {number}): {d}", img.name),
        None => println!("TEST {}/{name} {verdict} (test {number})", img.name),
    }
    if ok {
        PASSED.fetch_add(1, Ordering::SeqCst);
    } else {
        FAILED.fetch_add(1, Ordering::SeqCst);
    }
    hvc::hyp_report(number, u64::from(!ok));
    ok
}

/// Checks passed and failed so far.
pub fn counts() -> (u32, u32) {
    (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst))
}

/// Reports the image as a whole (test number `test_base`), prints the
/// summary and powers the VM off.
pub fn finish() -> ! {
    let img = image();
    let (p, f) = counts();
    let ok = p > 0 && f == 0;
    let verdict = if ok { "PASS" } else { "FAIL" };
    println!("DONE {} {verdict} ({p} passed, {f} failed) (test {})", img.name, img.test_base);
    hvc::hyp_report(img.test_base, u64::from(!ok));
    exit()
}

/// PSCI `SYSTEM_OFF`.
pub fn exit() -> ! {
    psci::system_off()
}

/// Reports a fatal error (panic, unexpected exception) and powers off.
pub(crate) fn fatal(args: fmt::Arguments<'_>) -> ! {
    let cpu = smp::cpu_index();
    if !exception::enter_fatal() {
        println!("FATAL (again) on cpu {cpu}: {args}");
        psci::halt()
    }
    let img = image();
    println!("FATAL on cpu {cpu}: {args}");
    println!("TEST {}/fatal FAIL (test {})", img.name, img.test_base + FATAL_CHECK);
    hvc::hyp_report(img.test_base + FATAL_CHECK, 1);
    let (p, f) = counts();
    println!("DONE {} FAIL ({p} passed, {} failed) (test {})", img.name, f + 1, img.test_base);
    hvc::hyp_report(img.test_base, 1);
    psci::system_off()
}
