//! Volatile accessors for test memory: guest RAM from
//! [`crate::abi::TEST_REGION`] (above the image and its
//! `.bss`) to the end of RAM, minus the DTB. Rust code never uses that
//! memory, so these accessors are safe; every call checks its range and
//! panics (a reported failure) outside it. Volatile, so that every access
//! really reaches memory: a read after `HYP_UNMAP` or `HYP_REMAP` must see
//! what the hypervisor mapped, not a value the compiler remembered.

use crate::abi::{PAGE_SIZE, TEST_REGION};
use crate::rt::{arch, platform};

/// Panics unless `[addr, addr + len)` is 8-byte aligned test memory that
/// the runtime's stage-1 map reaches (on ARM32, RAM above 4 GiB is not).
pub fn check_range(addr: u64, len: u64) {
    let end = addr.checked_add(len);
    let (dtb_lo, dtb_hi) = platform::dtb_range();
    let ok = addr.is_multiple_of(8)
        && len.is_multiple_of(8)
        && addr >= TEST_REGION
        && end.is_some_and(|e| e <= platform::ram_end() && e <= arch::boot::VA_END)
        && end.is_some_and(|e| e <= dtb_lo || addr >= dtb_hi);
    assert!(
        ok,
        "test memory access {addr:#x}+{len:#x} outside [{TEST_REGION:#x}, {:#x}) or on the DTB",
        platform::ram_end()
    );
}

/// The word at `addr`, an address [`check_range`] accepted (so below
/// `VA_END`, which fits in a pointer).
#[inline]
fn word(addr: u64) -> *mut u64 {
    addr as usize as *mut u64
}

/// Writes the word at `addr`.
#[inline]
pub fn write64(addr: u64, value: u64) {
    check_range(addr, 8);
    // SAFETY: checked: aligned test memory, mapped Normal, unused by Rust.
    unsafe { word(addr).write_volatile(value) }
}

/// Reads the word at `addr`.
#[inline]
pub fn read64(addr: u64) -> u64 {
    check_range(addr, 8);
    // SAFETY: checked: aligned test memory, mapped Normal, unused by Rust.
    unsafe { word(addr).read_volatile() }
}

/// Writes `f(a)` to every word `a` of `[addr, addr + len)`, in order.
pub fn fill(addr: u64, len: u64, f: impl Fn(u64) -> u64) {
    check_range(addr, len);
    let mut a = addr;
    while a < addr + len {
        // SAFETY: checked above for the whole range.
        unsafe { word(a).write_volatile(f(a)) };
        a += 8;
    }
}

/// A word that did not hold what was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Its address.
    pub addr: u64,
    /// What it held.
    pub got: u64,
    /// What it should have held.
    pub want: u64,
}

/// Checks that every word `a` of `[addr, addr + len)` holds `f(a)`; the
/// first mismatch otherwise.
pub fn verify(addr: u64, len: u64, f: impl Fn(u64) -> u64) -> Result<(), Mismatch> {
    check_range(addr, len);
    let mut a = addr;
    while a < addr + len {
        // SAFETY: checked above for the whole range.
        let got = unsafe { word(a).read_volatile() };
        let want = f(a);
        if got != want {
            return Err(Mismatch { addr: a, got, want });
        }
        a += 8;
    }
    Ok(())
}

/// Checks that `[addr, addr + len)` reads as zero.
pub fn verify_zero(addr: u64, len: u64) -> Result<(), Mismatch> {
    verify(addr, len, |_| 0)
}

/// A 64-bit pattern unique to (`seed`, word address `a`), never zero
/// (splitmix64 finaliser).
#[inline]
pub fn pattern(seed: u64, a: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    if z == 0 {
        1
    } else {
        z
    }
}

/// Number of pages in `len` bytes.
pub const fn pages(len: u64) -> u64 {
    len / PAGE_SIZE
}
