//! Where the virtual GIC sits in every guest's IPA space, and which
//! interrupts the guest's devices use: a fixed contract with guests
//! (`docs/HYPERVISOR.md`, "Guest device tree"), shared by the guest
//! device tree ([`crate::fdt_writer::guest_dtb`]) and the code that
//! emulates the GIC. The same addresses as QEMU `virt`'s, so that a guest
//! built for that machine finds its interrupt controller where it expects.

/// IPA of a firmware VM's flash (`vmN/firmware` of a bundle): QEMU
/// `virt`'s two NOR flash banks, where firmware linked at 0 (U-Boot's
/// `qemu_arm` and `qemu_arm64` builds) runs from. The firmware's bytes
/// are in the first bank; everything else reads as erased (`0xff`).
pub const FLASH_BASE: u64 = 0;
/// Size of one flash bank (64 MiB): the most firmware a VM may have.
pub const FLASH_BANK_SIZE: u64 = 0x400_0000;
/// Size of the whole flash region: two banks, up to the GIC.
pub const FLASH_SIZE: u64 = 2 * FLASH_BANK_SIZE;
/// What erased flash reads as, as a 64-bit fill pattern.
pub const FLASH_ERASED: u64 = u64::MAX;

/// IPA of the distributor (GICD), for either GIC version.
pub const GICD_BASE: u64 = 0x0800_0000;
/// Size of a GICv3 distributor (one 64 KiB frame).
pub const GICV3_GICD_SIZE: u64 = 0x1_0000;
/// IPA of the first GICv3 redistributor (vCPU 0's); vCPU `i`'s is at
/// `GICR_BASE + i * GICR_STRIDE`, one region for all of them.
pub const GICR_BASE: u64 = 0x080A_0000;
/// Size of one vCPU's GICv3 redistributor: its `RD_base` and `SGI_base`
/// frames, 64 KiB each (no `VLPI_base`: GICv4 is not offered).
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Size of a GICv2 distributor (one 4 KiB page).
pub const GICV2_GICD_SIZE: u64 = 0x1000;
/// IPA of the GICv2 CPU interface (GICC).
pub const GICC_BASE: u64 = 0x0801_0000;
/// Size of the GICv2 CPU interface: two 4 KiB pages (`GICC_DIR` is in
/// the second).
pub const GICC_SIZE: u64 = 0x2000;

/// The redistributor region for `vcpus` vCPUs: `(base, size)`.
pub const fn gicr_region(vcpus: u32) -> (u64, u64) {
    (GICR_BASE, GICR_STRIDE * vcpus as u64)
}

/// Most CPU interfaces a GICv2 has (its SGI and PPI CPU masks are 8 bits).
pub const GICV2_MAX_CPUS: u32 = 8;

/// The architected timer's PPIs, as the GIC device tree binding numbers
/// PPIs (INTID - 16), in the order the timer binding lists them.
pub mod timer_ppi {
    /// Secure EL1 physical timer (INTID 29).
    pub const SECURE_PHYS: u32 = 13;
    /// Non-secure EL1 physical timer (INTID 30).
    pub const NONSECURE_PHYS: u32 = 14;
    /// Virtual timer (INTID 27).
    pub const VIRT: u32 = 11;
    /// EL2 (Hyp) physical timer (INTID 26).
    pub const HYP: u32 = 10;
    /// The four, in the binding's order.
    pub const ALL: [u32; 4] = [SECURE_PHYS, NONSECURE_PHYS, VIRT, HYP];
}

/// The emulated PL011's SPI, as the GIC binding numbers SPIs (INTID - 32):
/// SPI 1 is INTID 33.
pub const UART_SPI: u32 = 1;

/// First INTID of the PPIs.
pub const PPI_INTID_BASE: u32 = 16;
/// First INTID of the SPIs.
pub const SPI_INTID_BASE: u32 = 32;

// Every VM's redistributors fit below the PL011, and a GICv2 can serve
// every vCPU a VM may have.
const _: () = {
    let (base, size) = gicr_region(crate::platform::Config::MAX_VCPUS as u32);
    assert!(base + size <= crate::vm::UART_IPA);
    assert!(crate::platform::Config::MAX_VCPUS as u32 <= GICV2_MAX_CPUS);
    assert!(GICC_BASE + GICC_SIZE <= GICR_BASE);
    assert!(GICD_BASE + GICV3_GICD_SIZE <= GICR_BASE);
    // The flash ends where the devices start.
    assert!(FLASH_BASE + FLASH_SIZE <= GICD_BASE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_numbers_are_the_architected_intids() {
        let intids = timer_ppi::ALL.map(|p| p + PPI_INTID_BASE);
        assert_eq!(intids, [29, 30, 27, 26]);
        assert_eq!(UART_SPI + SPI_INTID_BASE, 33);
    }

    #[test]
    fn redistributor_regions() {
        assert_eq!(gicr_region(1), (0x080A_0000, 0x2_0000));
        assert_eq!(gicr_region(4), (0x080A_0000, 0x8_0000));
        // Eight vCPUs end at 0x081A_0000, far below the PL011.
        let (base, size) = gicr_region(8);
        assert_eq!(base + size, 0x081A_0000);
    }
}
