//! AArch32 encodings the ARM32 runtime (`rt`, `armv7a-none-eabi`) relies
//! on: processor modes, system register values for its stage-1 map (LPAE),
//! fault status decoding and the boot registers. Plain constants and
//! `const fn`s, so they are unit-tested on the host.

/// CPSR.M: Supervisor mode, where the images run.
pub const MODE_SVC: u32 = 0x13;
/// CPSR.M: Abort mode (data and prefetch aborts).
pub const MODE_ABT: u32 = 0x17;
/// CPSR.M: Undefined mode (UNDEFINED instructions).
pub const MODE_UND: u32 = 0x1b;
/// CPSR.M: IRQ mode.
pub const MODE_IRQ: u32 = 0x12;
/// CPSR.M: FIQ mode.
pub const MODE_FIQ: u32 = 0x11;
/// CPSR.M: User mode (PL0).
pub const MODE_USR: u32 = 0x10;
/// CPSR.M mask.
pub const MODE_MASK: u32 = 0x1f;
/// CPSR.T: Thumb state.
pub const CPSR_T: u32 = 1 << 5;

/// SCTLR bits the runtime sets: M (stage-1 MMU), C (data cache), I
/// (instruction cache).
pub const SCTLR_SET: u32 = (1 << 0) | (1 << 2) | (1 << 12);
/// SCTLR bits the runtime clears: A (alignment faults; the code is built
/// for strict alignment anyway), V (high vectors: use VBAR), WXN and UWXN
/// (writable memory would be execute-never: the image is RAM), EE (big
/// endian exceptions), TE (Thumb exceptions: the vectors are ARM code).
pub const SCTLR_CLEAR: u32 = (1 << 1) | (1 << 13) | (1 << 19) | (1 << 20) | (1 << 25) | (1 << 30);

/// TTBCR: EAE (the LPAE long-descriptor format), T0SZ = 0 (TTBR0 maps all
/// 4 GiB, walks start at level 1 with 4 entries), IRGN0 = ORGN0 = write-back
/// write-allocate, SH0 inner shareable; TTBR1 walks disabled (EPD1).
pub const TTBCR: u32 = (1 << 31) | (1 << 23) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8);

/// MAIR0: attr 0 = Device (0x04), attr 1 = Normal inner/outer write-back
/// read/write-allocate (0xff). MAIR1 (attrs 4-7) is 0.
pub const MAIR0: u32 = 0xff04;

const DESC_BLOCK: u64 = 0b01;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const XN: u64 = 1 << 54;

/// Entries of the level-1 table when T0SZ = 0: one 1 GiB block each.
pub const L1_ENTRIES: usize = 4;

/// The level-1 table of the ARM32 runtime's identity map, 1 GiB blocks:
/// 0-1 GiB (the PL011 and the other devices) Device, execute-never; 1-4 GiB
/// (guest RAM from `0x4000_0000`) Normal write-back inner shareable. The
/// AArch64 runtime maps 4-8 GiB too, which 32-bit VAs cannot reach.
pub const fn identity_l1() -> [u64; L1_ENTRIES] {
    let mut t = [0u64; L1_ENTRIES];
    let mut i = 0;
    while i < L1_ENTRIES {
        let pa = (i as u64) << 30;
        t[i] = if i == 0 {
            pa | DESC_BLOCK | ATTR_DEVICE | AF | PXN | XN
        } else {
            pa | DESC_BLOCK | ATTR_NORMAL | SH_INNER | AF
        };
        i += 1;
    }
    t
}

/// DFSR/IFSR.LPAE: the long-descriptor status format (TTBCR.EAE = 1).
pub const FSR_LPAE: u32 = 1 << 9;
/// DFSR.WnR: the abort was on a write.
pub const FSR_WNR: u32 = 1 << 11;
/// Long-descriptor fault status: synchronous external abort, not on a
/// translation table walk.
pub const STATUS_LPAE_SEA: u32 = 0x10;
/// Short-descriptor fault status: synchronous external abort, not on a
/// translation table walk.
pub const STATUS_SHORT_SEA: u32 = 0x08;

/// The fault status of a DFSR or IFSR value: bits \[5:0\] in the
/// long-descriptor format, FS\[4\] (bit 10) : FS\[3:0\] in the
/// short-descriptor one.
pub const fn fault_status(fsr: u32) -> u32 {
    if fsr & FSR_LPAE != 0 {
        fsr & 0x3f
    } else {
        ((fsr >> 6) & 0x10) | (fsr & 0xf)
    }
}

/// Whether a DFSR or IFSR value reports a synchronous external abort (the
/// hypervisor's answer for an IPA with neither RAM nor a device), in
/// either format: LPAE once the runtime's MMU is on, short-descriptor
/// before.
pub const fn is_sync_external_abort(fsr: u32) -> bool {
    let status = fault_status(fsr);
    if fsr & FSR_LPAE != 0 {
        status == STATUS_LPAE_SEA
    } else {
        status == STATUS_SHORT_SEA
    }
}

/// r1 at entry under the Linux ARM boot protocol, which the hypervisor
/// follows: "no machine type, a DTB is passed in r2".
pub const BOOT_R1_DTB: u32 = 0xffff_ffff;

/// The DTB IPA from the boot registers: r2 when r1 says it holds one (the
/// contract), else `ram_base`, where the hypervisor also puts it and QEMU
/// does when it starts an ELF directly (registers left at reset, zero).
/// The runtime validates the blob before using it.
pub const fn boot_dtb(r1: u32, r2: u32, ram_base: u64) -> u64 {
    if r1 == BOOT_R1_DTB {
        r2 as u64
    } else {
        ram_base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_map_attributes() {
        let t = identity_l1();
        // Device, execute-never, access flag, at PA 0.
        assert_eq!(t[0], 0x0060_0000_0000_0401);
        for (i, &d) in t.iter().enumerate().skip(1) {
            assert_eq!(d & 0b11, DESC_BLOCK);
            assert_eq!(d & 0xff_c000_0000, (i as u64) << 30, "output address");
            assert_eq!((d >> 2) & 0b111, 1, "MAIR attr 1: Normal");
            assert_eq!((d >> 8) & 0b11, 0b11, "inner shareable");
            assert_ne!(d & AF, 0);
            assert_eq!(d & (PXN | XN), 0, "RAM is executable");
            assert_eq!((d >> 6) & 0b11, 0, "AP: read/write at PL1");
        }
        // MAIR0 attr 1 is Normal WB, attr 0 Device.
        assert_eq!(MAIR0 & 0xff, 0x04);
        assert_eq!((MAIR0 >> 8) & 0xff, 0xff);
    }

    #[test]
    fn ttbcr_and_sctlr() {
        assert_eq!(TTBCR & 0x7, 0, "T0SZ = 0: 4 GiB through TTBR0");
        assert_ne!(TTBCR & (1 << 31), 0, "EAE");
        assert_eq!(SCTLR_SET & SCTLR_CLEAR, 0);
        assert_eq!(SCTLR_SET, 0x1005);
        assert_ne!(SCTLR_CLEAR & (1 << 1), 0, "alignment checks off");
        assert_ne!(SCTLR_CLEAR & (1 << 13), 0, "VBAR vectors");
    }

    #[test]
    fn fault_status_formats() {
        // LPAE: status 0x10, WnR and LPAE bits set (a write to nothing).
        let dfsr = FSR_LPAE | FSR_WNR | STATUS_LPAE_SEA;
        assert_eq!(fault_status(dfsr), 0x10);
        assert!(is_sync_external_abort(dfsr));
        assert!(is_sync_external_abort(FSR_LPAE | 0x10));
        // LPAE translation fault, level 1 (0x05) and permission (0x0f).
        assert!(!is_sync_external_abort(FSR_LPAE | 0x05));
        assert!(!is_sync_external_abort(FSR_LPAE | 0x0f));
        // Short-descriptor: FS = 0b01000 is the SEA; 0b10110 (FS[4] in bit
        // 10) is an asynchronous external abort.
        assert!(is_sync_external_abort(0x008));
        assert_eq!(fault_status(0x406), 0x16);
        assert!(!is_sync_external_abort(0x406));
        // 0x10 in the short format is not a SEA (FS[4] is bit 10).
        assert!(!is_sync_external_abort(0x010));
    }

    #[test]
    fn boot_registers() {
        assert_eq!(boot_dtb(BOOT_R1_DTB, 0x4000_0000, 0x4000_0000), 0x4000_0000);
        assert_eq!(boot_dtb(BOOT_R1_DTB, 0x4800_0000, 0x4000_0000), 0x4800_0000);
        // QEMU starting an ELF directly: r1 = r2 = 0.
        assert_eq!(boot_dtb(0, 0, 0x4000_0000), 0x4000_0000);
    }
}
