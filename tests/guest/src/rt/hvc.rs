//! Hypercalls (SMCCC 1.1 through `HVC #0`) and the typed wrappers of the
//! hypervisor's calls (`docs/HYPERVISOR.md`, "Hypercalls").
//!
//! At boot the runtime probes `HYP_VERSION` and `PSCI_VERSION` with
//! UNDEFINED instructions caught (`detect`): without the hypervisor (plain
//! QEMU at EL1, or in SVC mode for ARM32) `HVC` is UNDEFINED for
//! everything but QEMU's own PSCI. When the hypervisor is absent the typed
//! wrappers return [`SMCCC_NOT_SUPPORTED`] without trapping, so an image
//! still runs to its end and reports its checks as failed.
//!
//! ARM32 guests issue the same calls in their SMC32 form with 32-bit
//! registers (see [`hvc`]); the wrappers keep their 64-bit signatures so
//! that the images' source is shared.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::abi::{counter, hyp, psci, SMCCC_NOT_SUPPORTED};
use crate::rt::arch;
use crate::rt::exception::catch_undefined;

/// Issues `HVC #0` with function id `fid` and arguments `a1..a5`; returns
/// the result registers 0-3.
///
/// AArch64: `x0` = `fid`, `x1..x5` = arguments, returns `x0..x3`
/// (`x4..x17` are treated as clobbered).
///
/// ARM32: `r0` = the SMC32 form of `fid` ([`crate::abi::smc32`]),
/// `r1..r5` = arguments, each of which must fit in 32 bits (else this
/// panics: a truncated address could name other memory); returns `r0`
/// sign-extended (so `as i64` reads SMCCC errors) and `r1..r3`
/// zero-extended.
///
/// # Safety
///
/// The call may change guest memory behind Rust's back (`HYP_UNMAP`,
/// `HYP_REMAP`...) or stop the vCPU: the caller must make sure no memory
/// Rust code uses is affected and that the function id is meant.
#[inline(always)]
pub unsafe fn hvc(fid: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> (u64, u64, u64, u64) {
    // SAFETY: forwarded from the caller.
    unsafe { arch::hvc::hvc(fid, a1, a2, a3, a4, a5) }
}

static HYP_PRESENT: AtomicBool = AtomicBool::new(false);
static HYP_VERSION_SEEN: AtomicU64 = AtomicU64::new(0);
static PSCI_PRESENT: AtomicBool = AtomicBool::new(false);
static PSCI_VERSION_SEEN: AtomicU64 = AtomicU64::new(0);

/// Probes for the hypervisor (`HYP_VERSION`) and PSCI (`PSCI_VERSION`).
/// Called once by the primary vCPU before `main`.
pub(crate) fn detect() {
    // SAFETY: HYP_VERSION has no side effects; an UNDEFINED `hvc` is
    // skipped by the vectors (catch_undefined) and leaves register 0 as the
    // id it was issued with (negative either way).
    let ((v, ..), undef) = catch_undefined(|| unsafe { hvc(hyp::HYP_VERSION, 0, 0, 0, 0, 0) });
    let present = !undef && (v as i64) >= 0 && v != arch::hvc::call_id(hyp::HYP_VERSION);
    HYP_VERSION_SEEN.store(if undef { u64::MAX } else { v }, Ordering::SeqCst);
    HYP_PRESENT.store(present, Ordering::SeqCst);
    // SAFETY: as above, PSCI_VERSION has no side effects.
    let ((v, ..), undef) = catch_undefined(|| unsafe { hvc(psci::VERSION, 0, 0, 0, 0, 0) });
    let present = !undef && (v as i64) >= 0 && v != arch::hvc::call_id(psci::VERSION);
    PSCI_VERSION_SEEN.store(if undef { u64::MAX } else { v }, Ordering::SeqCst);
    PSCI_PRESENT.store(present, Ordering::SeqCst);
}

/// Whether the hypervisor answered `HYP_VERSION` at boot.
pub fn hyp_present() -> bool {
    HYP_PRESENT.load(Ordering::Relaxed)
}

/// Whether PSCI answered `PSCI_VERSION` at boot.
pub fn psci_present() -> bool {
    PSCI_PRESENT.load(Ordering::Relaxed)
}

/// Raw `x0` of the boot-time `HYP_VERSION` probe (`u64::MAX`: UNDEFINED).
pub fn hyp_version_at_boot() -> u64 {
    HYP_VERSION_SEEN.load(Ordering::Relaxed)
}

/// Raw `x0` of the boot-time `PSCI_VERSION` probe (`u64::MAX`: UNDEFINED).
pub fn psci_version_at_boot() -> u64 {
    PSCI_VERSION_SEEN.load(Ordering::Relaxed)
}

/// A hypervisor call returning the raw `x0`, or NOT_SUPPORTED without
/// trapping when the hypervisor is absent.
///
/// # Safety
///
/// As [`hvc`].
unsafe fn hyp_call(fid: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    if !hyp_present() {
        return SMCCC_NOT_SUPPORTED;
    }
    // SAFETY: forwarded from the caller.
    unsafe { hvc(fid, a1, a2, a3, 0, 0).0 as i64 }
}

/// `HYP_VERSION`: `0x0001_0000`, or negative.
pub fn hyp_version() -> i64 {
    // SAFETY: no side effects.
    unsafe { hyp_call(hyp::HYP_VERSION, 0, 0, 0) }
}

/// `HYP_YIELD`: lets another vCPU run on this CPU, if one waits.
pub fn hyp_yield() {
    // SAFETY: only schedules.
    unsafe { hyp_call(hyp::HYP_YIELD, 0, 0, 0) };
}

/// `HYP_REPORT`: `code` 0 = pass, else fail; `test` = test number.
pub fn hyp_report(test: u64, code: u64) -> i64 {
    // SAFETY: only logs on the hypervisor side.
    unsafe { hyp_call(hyp::HYP_REPORT, code, test, 0) }
}

/// `HYP_STAT`: the value of counter `index` ([`counter`]), or negative.
/// ARM32: the counter's low 32 bits (sign-extended like every result).
pub fn hyp_stat(index: u64) -> i64 {
    // SAFETY: reads a counter.
    unsafe { hyp_call(hyp::HYP_STAT, index, 0, 0) }
}

/// [`hyp_stat`] as `u64`, with 0 for an error (printing code compares
/// deltas; a missing hypervisor fails the checks anyway).
pub fn stat(index: u64) -> u64 {
    u64::try_from(hyp_stat(index)).unwrap_or(0)
}

/// A snapshot of every `HYP_STAT` counter (one hypercall each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats(pub [u64; counter::COUNT]);

impl Default for Stats {
    /// Every counter 0.
    fn default() -> Self {
        Stats([0; counter::COUNT])
    }
}

impl Stats {
    /// Reads all counters.
    pub fn read() -> Self {
        let mut s = [0; counter::COUNT];
        for (i, v) in s.iter_mut().enumerate() {
            *v = stat(i as u64);
        }
        Stats(s)
    }

    /// Counter `index`.
    pub fn get(&self, index: u64) -> u64 {
        self.0[index as usize]
    }

    /// `self - earlier`, counter by counter (wrapping).
    pub fn delta(&self, earlier: &Stats) -> Stats {
        let mut d = [0; counter::COUNT];
        for (i, v) in d.iter_mut().enumerate() {
            *v = self.0[i].wrapping_sub(earlier.0[i]);
        }
        Stats(d)
    }

    /// Prints the counters, `name=value`, on one line after `title`.
    pub fn print(&self, title: &str) {
        crate::println!("{title}:{self}");
    }
}

impl core::fmt::Display for Stats {
    /// ` name=value` for every counter.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (name, v) in counter::NAMES.iter().zip(self.0) {
            write!(f, " {name}={v}")?;
        }
        Ok(())
    }
}

/// `HYP_UNMAP`: unmaps `[ipa, ipa + size)`; the next access faults in a
/// zeroed page. Returns 0 or a negative SMCCC error.
///
/// # Safety
///
/// The range must not hold memory Rust code uses (its contents are lost).
pub unsafe fn hyp_unmap(ipa: u64, size: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hyp_call(hyp::HYP_UNMAP, ipa, size, 0) }
}

/// `HYP_REMAP`: maps a fresh frame filled with `pattern` at the page `ipa`:
/// every 64-bit word then holds [`remap_fill`]`(pattern)`. On ARM32 the
/// pattern travels in one 32-bit register, so it must be below 2^32.
///
/// # Safety
///
/// As [`hyp_unmap`].
pub unsafe fn hyp_remap(ipa: u64, pattern: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hyp_call(hyp::HYP_REMAP, ipa, pattern, 0) }
}

/// The 64-bit word a page remapped with `pattern` holds, for a pattern
/// chosen as if it were 64-bit: `pattern` on AArch64; on ARM32, where the
/// call passes 32 bits that the hypervisor zero-extends, its low 32 bits.
/// Images write `const P: u64 = remap_fill(0x...)` and pass and compare
/// `P` alike on both architectures.
pub const fn remap_fill(pattern: u64) -> u64 {
    pattern & arch::hvc::REGISTER_MASK
}

/// `HYP_PROTECT`: sets the stage-2 permissions of `[ipa, ipa + size)` to
/// `perms` ([`crate::abi::PERM_R`] | ...). A write to a read-only page
/// faults to the hypervisor, which counts it and makes the page writable.
pub fn hyp_protect(ipa: u64, size: u64, perms: u64) -> i64 {
    // SAFETY: permissions only; the hypervisor resolves the write faults
    // (dirty logging), so memory contents are unchanged.
    unsafe { hyp_call(hyp::HYP_PROTECT, ipa, size, perms) }
}

/// `HYP_SET_POLICY`: [`crate::abi::POLICY_PAGES`] or
/// [`crate::abi::POLICY_BLOCKS`].
pub fn hyp_set_policy(policy: u64) -> i64 {
    // SAFETY: affects later demand faults only.
    unsafe { hyp_call(hyp::HYP_SET_POLICY, policy, 0, 0) }
}

/// `HYP_DIRTY_COUNT`: pages of `[ipa, ipa + size)` mapped writable, that
/// is, written since a `HYP_PROTECT` to read-only.
pub fn hyp_dirty_count(ipa: u64, size: u64) -> i64 {
    // SAFETY: a query; nothing changes.
    unsafe { hyp_call(hyp::HYP_DIRTY_COUNT, ipa, size, 0) }
}

/// `HYP_COLLAPSE` of the 2 MiB-aligned `ipa` (raw result).
///
/// # Safety
///
/// As [`hyp_unmap`] for the 2 MiB range (the call is not specified yet).
pub unsafe fn hyp_collapse(ipa: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hyp_call(hyp::HYP_COLLAPSE, ipa, 0, 0) }
}

/// `HYP_SPLIT` of the 2 MiB-aligned `ipa` (raw result).
///
/// # Safety
///
/// As [`hyp_collapse`].
pub unsafe fn hyp_split(ipa: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hyp_call(hyp::HYP_SPLIT, ipa, 0, 0) }
}

/// `HYP_ALIAS`: from its next access on, the page `dst` maps the frame of
/// the page `src` (which is faulted in first if need be); what `dst`
/// mapped is dropped. Returns 0 or a negative error
/// ([`crate::abi::HYP_NO_MEMORY`] when the alias table is full).
///
/// # Safety
///
/// Neither page may hold memory Rust code uses (`dst`'s contents are
/// lost, and writes through one page show through the other).
pub unsafe fn hyp_alias(src: u64, dst: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hyp_call(hyp::HYP_ALIAS, src, dst, 0) }
}

/// `HYP_SHARE`: offers the page `src` to VM `vm`. Returns the offer's
/// handle (non-negative), or a negative error. Nothing is mapped in `vm`
/// until it accepts ([`hyp_accept`]).
///
/// # Safety
///
/// As [`hyp_alias`] for `src` (another VM may write it from now on).
pub unsafe fn hyp_share(src: u64, vm: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hyp_call(hyp::HYP_SHARE, src, vm, 0) }
}

/// `HYP_ACCEPT`: from its next access on, the page `dst` maps the page
/// offered to this VM under `handle`; what `dst` mapped is dropped.
/// Returns 0 or a negative error.
///
/// # Safety
///
/// `dst` may not hold memory Rust code uses (its contents are lost, and
/// the other VM's writes show through it).
pub unsafe fn hyp_accept(handle: u64, dst: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hyp_call(hyp::HYP_ACCEPT, handle, dst, 0) }
}

/// `HYP_REVOKE`: withdraws this VM's offer `handle` (the receiver's page
/// goes with it). Returns 0 or a negative error.
pub fn hyp_revoke(handle: u64) -> i64 {
    // SAFETY: changes only what another VM maps.
    unsafe { hyp_call(hyp::HYP_REVOKE, handle, 0, 0) }
}

/// `HYP_RELINQUISH`: this VM drops its page of the offer `handle`.
/// Returns 0 or a negative error.
///
/// # Safety
///
/// The page that mapped the offer may not hold memory Rust code uses (it
/// is unmapped: fresh memory on its next access).
pub unsafe fn hyp_relinquish(handle: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { hyp_call(hyp::HYP_RELINQUISH, handle, 0, 0) }
}

/// An offer made to this VM, as `HYP_OFFERED` reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Offered {
    /// Its handle.
    pub handle: u64,
    /// The VM that made it.
    pub owner: u64,
    /// Whether this VM has accepted it.
    pub accepted: bool,
}

/// `HYP_OFFERED`: the `n`-th offer made to this VM (by owner, then in the
/// order the owner made them), or `None`.
pub fn hyp_offered(n: u64) -> Option<Offered> {
    if !hyp_present() {
        return None;
    }
    // SAFETY: reads the hypervisor's offer tables.
    let (h, owner, accepted, _) = unsafe { hvc(hyp::HYP_OFFERED, n, 0, 0, 0, 0) };
    ((h as i64) >= 0).then_some(Offered { handle: h, owner, accepted: accepted != 0 })
}
