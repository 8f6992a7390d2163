//! What the guest learns from its DTB (`x0` at entry; ARM32: `r2`): RAM, vCPUs, PSCI
//! method, bootargs. Read once by the primary before `main`.
//!
//! Without a usable DTB (none passed, or not in RAM) RAM is the contract's
//! default, `0x4000_0000 + 128 MiB`, and there is one vCPU with MPIDR Aff0
//! = index for every index.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::abi::{DEFAULT_RAM_SIZE, MAX_CPUS, RAM_BASE};
use crate::fdt::Fdt;

static DTB: AtomicU64 = AtomicU64::new(0);
static DTB_SIZE: AtomicU64 = AtomicU64::new(0);
static RAM_START: AtomicU64 = AtomicU64::new(RAM_BASE);
static RAM_SIZE: AtomicU64 = AtomicU64::new(DEFAULT_RAM_SIZE);
static RAM_FROM_DTB: AtomicBool = AtomicBool::new(false);
static NCPUS: AtomicUsize = AtomicUsize::new(0);
static MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

/// Normal memory the runtime maps (1-4 GiB): where a DTB may be read.
const NORMAL_START: u64 = 1 << 30;
const NORMAL_END: u64 = 4 << 30;

/// The DTB at `addr`, if there is a valid one in mapped RAM.
pub fn fdt_at(addr: u64) -> Option<Fdt<'static>> {
    if addr < NORMAL_START || !addr.is_multiple_of(8) || addr > NORMAL_END - 64 {
        return None;
    }
    // SAFETY: the header lies in the runtime's Normal identity mapping of
    // 1-4 GiB, which is guest RAM (or aborts, which the caller's contract
    // rules out: the DTB is in RAM) and nothing writes it.
    let header = unsafe { core::slice::from_raw_parts(addr as usize as *const u8, 8) };
    let size = Fdt::header_total_size(header)?;
    if size < 40 || size as u64 > NORMAL_END - addr || isize::try_from(size).is_err() {
        return None;
    }
    // SAFETY: as above, for the whole blob, which stays untouched for the
    // life of the image.
    let blob = unsafe { core::slice::from_raw_parts(addr as usize as *const u8, size) };
    Fdt::new(blob)
}

/// Reads the DTB at `dtb`. Primary vCPU, before `main`.
pub(crate) fn init(dtb: u64) {
    DTB.store(dtb, Ordering::Relaxed);
    let Some(fdt) = fdt_at(dtb) else { return };
    DTB_SIZE.store(fdt.total_size() as u64, Ordering::Relaxed);
    if let Some((base, size)) = fdt.memory() {
        if size != 0 {
            RAM_START.store(base, Ordering::Relaxed);
            RAM_SIZE.store(size, Ordering::Relaxed);
            RAM_FROM_DTB.store(true, Ordering::Relaxed);
        }
    }
    let mut mpidrs = [u64::MAX; MAX_CPUS];
    let n = fdt.cpus(&mut mpidrs);
    for (slot, v) in MPIDR.iter().zip(mpidrs) {
        slot.store(v, Ordering::Relaxed);
    }
    NCPUS.store(n, Ordering::Relaxed);
}

/// The DTB IPA passed at entry (`x0`; ARM32: `r2`, see `aarch32::boot_dtb`).
pub fn dtb() -> u64 {
    DTB.load(Ordering::Relaxed)
}

/// The DTB, if valid.
pub fn fdt() -> Option<Fdt<'static>> {
    fdt_at(dtb())
}

/// Guest RAM start (IPA).
pub fn ram_start() -> u64 {
    RAM_START.load(Ordering::Relaxed)
}

/// Guest RAM size.
pub fn ram_size() -> u64 {
    RAM_SIZE.load(Ordering::Relaxed)
}

/// One past the last RAM IPA.
pub fn ram_end() -> u64 {
    ram_start() + ram_size()
}

/// Whether RAM came from the DTB's memory node (else the default).
pub fn ram_from_dtb() -> bool {
    RAM_FROM_DTB.load(Ordering::Relaxed)
}

/// The number of `/cpus/cpu@N` nodes in the DTB (0 without a DTB).
pub fn dtb_cpus() -> usize {
    NCPUS.load(Ordering::Relaxed)
}

/// vCPUs to use: the DTB's count (at most [`MAX_CPUS`]), else `default`.
pub fn cpus_or(default: usize) -> usize {
    match dtb_cpus() {
        0 => default.min(MAX_CPUS),
        n => n.min(MAX_CPUS),
    }
}

/// The MPIDR affinity of vCPU `cpu` for PSCI `CPU_ON`: the DTB's `reg`,
/// else `cpu` (Aff0).
pub fn cpu_mpidr(cpu: usize) -> u64 {
    match MPIDR.get(cpu).map(|m| m.load(Ordering::Relaxed)) {
        Some(m) if m != u64::MAX => m,
        _ => cpu as u64,
    }
}

/// `/chosen/bootargs`, if any.
pub fn bootargs() -> Option<&'static str> {
    fdt()?.bootargs()
}

/// The value of the last `key=value` word of the bootargs with this key
/// (the hypervisor appends its own words, such as `vm=N`, after the
/// configuration's).
pub fn bootarg(key: &str) -> Option<&'static str> {
    bootargs()?.split_whitespace().rev().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// This VM's id under the hypervisor (`vm=N`, which it appends to the
/// bootargs; `HYP_SHARE` names VMs by it), if given.
pub fn vm_id() -> Option<u64> {
    bootarg("vm")?.parse().ok()
}

/// The DTB's extent `[dtb, dtb + totalsize)` (empty without a valid DTB).
pub fn dtb_range() -> (u64, u64) {
    let d = dtb();
    (d, d + DTB_SIZE.load(Ordering::Relaxed))
}

/// One past the last byte of the test memory that starts at
/// [`TEST_REGION`](crate::abi::TEST_REGION): the end of RAM, or the DTB if
/// it lies in between (QEMU `-kernel` puts it at RAM + 128 MiB; the
/// hypervisor at the start of RAM).
pub fn test_memory_end() -> u64 {
    let (dtb_lo, dtb_hi) = dtb_range();
    let end = ram_end();
    if dtb_hi > dtb_lo && dtb_lo >= crate::abi::TEST_REGION && dtb_lo < end {
        dtb_lo
    } else {
        end
    }
}
