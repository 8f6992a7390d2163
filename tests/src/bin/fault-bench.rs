//! Fault-path figures: boots the `bench` guest image under the hypervisor
//! with the `pages` and `blocks` policies on 1 and 4 CPUs (one vCPU per
//! CPU, `mem=512M` so that the guest touches its full 256 MiB) and prints
//! what the guest measured for its touch (its `BENCH key=value ...` line:
//! time and `HYP_STAT` counters) and figures derived from it: nanoseconds
//! and guest exits per 4 KiB page, TLB invalidations, stage-2 table pages
//! per GiB touched.
//!
//! Every configuration runs a second time with `premap=1` added to the
//! bootargs (the hypervisor then maps all guest RAM before the guest
//! starts; the guest's own `faults` check fails there, as it expects
//! faults, and is not held against the run) and the table prints the time
//! ratio on demand / premapped for the same touch. `--compare ARGS` adds
//! `ARGS` instead; `--no-compare` skips the second runs.
//!
//! Not part of `cargo test` (timings on an emulator are noisy and the
//! figures have no pass mark). Run it with
//!
//! ```sh
//! cargo run -p harness --bin fault-bench --release [-- --cpu cortex-a57]
//! cargo run -p harness --bin fault-bench --release -- --arch arm [--cpu cortex-a7]
//! ```
//!
//! `--arch arm` runs the ARM32 build (ARMv7 Hyp mode, `qemu-system-arm`,
//! default `-cpu cortex-a15`) on 1 and 2 CPUs: QEMU's 32-bit `virt` board
//! takes up to 8, but the figures are compared with the AArch64 ones on
//! the same two settings.
//!
//! `--icount` instead boots each policy on one CPU under QEMU's `-icount`
//! (precise instruction counting, so the PMU's instructions-retired event
//! counts, deterministically) and prints the instructions the hypervisor
//! executes at EL2 (Hyp mode) per stage-2 fault, from the exception entry
//! to the `ERET` back (`HYP_STAT` 25 over the touch's exits).
//!
//! Exit status: 0 when every boot ran cleanly (see `harness::Run::problems`;
//! for the comparison runs: exit 0 and a `BENCH` line), 1 otherwise, 2 on
//! bad usage.

use std::{collections::BTreeMap, process::ExitCode, time::Duration};

use harness::{prepare, Arch, Qemu, Run};

const GIB: f64 = (1u64 << 30) as f64;
const PAGE: f64 = 4096.0;

fn usage() -> &'static str {
    "usage: fault-bench [--compare BOOTARGS | --no-compare | --icount] [--arch aarch64|arm] [--cpu MODEL] [--mem SIZE]\n\
     Boots the bench guest with policy pages/blocks on 1 and 4 CPUs and\n\
     prints the fault-path figures. Each configuration runs again with\n\
     BOOTARGS (default: premap=1) added, for the time ratio. --mem is the\n\
     guest RAM (default 512M). --icount: EL2 instructions per fault, one\n\
     CPU, under -icount."
}

fn main() -> ExitCode {
    let mut compare: Option<String> = Some("premap=1".into());
    let mut cpu: Option<String> = None;
    let mut arch = Arch::Aarch64;
    let mut mem = "512M".to_string();
    let mut icount = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed = match a.as_str() {
            "--compare" => value("--compare").map(|v| compare = Some(v)),
            "--no-compare" => {
                compare = None;
                Ok(())
            }
            "--cpu" => value("--cpu").map(|v| cpu = Some(v)),
            "--arch" => value("--arch").and_then(|v| {
                arch = match v.as_str() {
                    "aarch64" => Arch::Aarch64,
                    "arm" => Arch::Arm,
                    _ => return Err(format!("--arch {v:?}: expected aarch64 or arm")),
                };
                Ok(())
            }),
            "--mem" => value("--mem").map(|v| mem = v),
            "--icount" => {
                icount = true;
                Ok(())
            }
            "-h" | "--help" => {
                println!("{}", usage());
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(msg) = parsed {
            eprintln!("fault-bench: {msg}\n{}", usage());
            return ExitCode::from(2);
        }
    }

    let cpu =
        cpu.unwrap_or_else(|| (if arch == Arch::Arm { "cortex-a15" } else { "max" }).to_string());
    let cpus: &[u32] = if arch == Arch::Arm { &[1, 2] } else { &[1, 4] };
    prepare();
    if icount {
        return instructions_per_fault(arch, &cpu, &mem);
    }
    let mut ok = true;
    let mut rows = Vec::new();
    for policy in ["pages", "blocks"] {
        for &smp in cpus {
            let bootargs = format!("policy={policy} vcpus={smp} mem={mem}");
            let run = bench(arch, &cpu, smp, &bootargs);
            ok &= report(&bootargs, &run, true);
            let mut row = Row::new(policy, smp, &run);
            if let Some(extra) = &compare {
                let args = format!("{bootargs} {extra}");
                let other = bench(arch, &cpu, smp, &args);
                ok &= report(&args, &other, false);
                row.compared_ns = bench_line(&other).get("ns").copied();
            }
            rows.push(row);
        }
    }

    println!("\n==== summary ({}, -cpu {cpu}, guest mem={mem})", arch.qemu_bin());
    println!(
        "{:<7} {:>3} {:>7} {:>8} {:>9} {:>7} {:>11} {:>6} {:>10} {:>7}",
        "policy",
        "smp",
        "pages",
        "ns/page",
        "exits/pg",
        "TLBIs",
        "tables/GiB",
        "wall s",
        "pre ns/pg",
        "ratio"
    );
    for r in &rows {
        let b = &r.bench;
        let get = |k: &str| b.get(k).copied();
        let pages = get("pages").filter(|&p| p > 0);
        let per_page = |v: Option<u64>| pages.zip(v).map(|(p, v)| v as f64 / p as f64);
        let tlbis =
            ["tlbi_ipa", "tlbi_range", "tlbi_vmid"].iter().map(|k| get(k)).sum::<Option<u64>>();
        let tables_per_gib =
            pages.zip(get("tables")).map(|(p, t)| t as f64 / (p as f64 * PAGE / GIB));
        let ratio =
            get("ns").zip(r.compared_ns.filter(|&c| c > 0)).map(|(a, c)| a as f64 / c as f64);
        println!(
            "{:<7} {:>3} {:>7} {:>8} {:>9} {:>7} {:>11} {:>6.2} {:>10} {:>7}",
            r.policy,
            r.smp,
            num(pages),
            fmt(per_page(get("ns")), 0),
            fmt(per_page(get("exits")), 3),
            num(tlbis),
            fmt(tables_per_gib, 1),
            r.wall.as_secs_f64(),
            fmt(per_page(r.compared_ns), 0),
            fmt(ratio, 2),
        );
    }
    println!(
        "(per page: of the guest's touch, from its BENCH line; wall s: the whole QEMU run; \
         ratio: touch time on demand / {})",
        compare.as_deref().map_or("n/a (--no-compare)".to_string(), |c| format!("with {c:?}"))
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("fault-bench: some runs failed (see above)");
        ExitCode::FAILURE
    }
}

/// `--icount`: the EL2 instructions per stage-2 fault, for each policy.
fn instructions_per_fault(arch: Arch, cpu: &str, mem: &str) -> ExitCode {
    let mut ok = true;
    let mut rows = Vec::new();
    for policy in ["pages", "blocks"] {
        let bootargs = format!("policy={policy} vcpus=1 mem={mem}");
        let qemu = if arch == Arch::Arm { Qemu::arm() } else { Qemu::new() };
        let run = qemu
            .cpu(cpu)
            .smp(1)
            .guest("bench")
            .append(&bootargs)
            .extra_args(["-icount", "shift=0,align=off,sleep=off"])
            .timeout(Duration::from_secs(600))
            .run();
        ok &= report(&format!("{bootargs} (-icount)"), &run, true);
        let b = bench_line(&run);
        rows.push((
            policy,
            b.get("faults").copied(),
            b.get("exits").copied(),
            b.get("el2_insns").copied(),
        ));
    }
    println!(
        "\n==== EL2 instructions per stage-2 fault ({}, -cpu {cpu}, -icount, guest mem={mem})",
        arch.qemu_bin()
    );
    println!(
        "{:<7} {:>8} {:>8} {:>12} {:>11}",
        "policy", "faults", "exits", "EL2 insns", "insns/fault"
    );
    for (policy, faults, exits, insns) in rows {
        let per = exits.zip(insns).filter(|&(e, _)| e > 0).map(|(e, i)| i as f64 / e as f64);
        println!(
            "{:<7} {:>8} {:>8} {:>12} {:>11}",
            policy,
            num(faults),
            num(exits),
            num(insns),
            fmt(per, 0)
        );
    }
    println!("(exits of the guest's touch, nearly all stage-2 faults; the count includes the exception entry, the handling and the ERET)");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn bench(arch: Arch, cpu: &str, smp: u32, bootargs: &str) -> Run {
    let qemu = if arch == Arch::Arm { Qemu::arm() } else { Qemu::new() };
    qemu.cpu(cpu).smp(smp).guest("bench").append(bootargs).timeout(Duration::from_secs(300)).run()
}

/// The key=value pairs of the guest's `BENCH ...` line (empty if none).
fn bench_line(run: &Run) -> BTreeMap<String, u64> {
    run.log
        .lines()
        .find_map(|l| l.split_once("] BENCH ").map(|(_, rest)| rest))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Prints one run's guest output and counters; false if it failed. A
/// `strict` run must pass as a test does; otherwise exit 0 and a `BENCH`
/// line are enough.
fn report(title: &str, run: &Run, strict: bool) -> bool {
    println!("\n==== {title}: {}", run.summary());
    for line in run.log.lines().filter(|l| l.starts_with("[vm")) {
        println!("  {line}");
    }
    let problems = if strict {
        run.problems()
    } else {
        let mut p = Vec::new();
        if !run.exited_ok() {
            p.push("QEMU did not exit with status 0".to_string());
        }
        if bench_line(run).is_empty() {
            p.push("no BENCH line".to_string());
        }
        p
    };
    if problems.is_empty() {
        true
    } else {
        println!("  FAILED:\n    - {}\n{run}", problems.join("\n    - "));
        false
    }
}

/// One configuration's figures.
struct Row {
    policy: &'static str,
    smp: u32,
    wall: Duration,
    bench: BTreeMap<String, u64>,
    compared_ns: Option<u64>,
}

impl Row {
    fn new(policy: &'static str, smp: u32, run: &Run) -> Row {
        Row { policy, smp, wall: run.elapsed, bench: bench_line(run), compared_ns: None }
    }
}

fn num(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("?".into(), |v| format!("{v:.digits$}"))
}
