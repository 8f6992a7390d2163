//! List register encodings: GICv3's `ICH_LR<n>_EL2` (64 bits) and
//! GICv2's `GICH_LR<n>` (32 bits). Only software interrupts (`HW` clear)
//! are written; an empty list register is zero.

use tock_registers::LocalRegisterCopy;

use super::LrEntry;
pub use fields::{GICH_LR, ICH_LR};

#[allow(missing_docs)]
mod fields {
    use tock_registers::register_bitfields;

    register_bitfields! [u64,
        /// `ICH_LR<n>_EL2`.
        pub ICH_LR [
            /// The virtual INTID.
            VINTID OFFSET(0) NUMBITS(32) [],
            /// With `HW` clear: a maintenance interrupt on deactivation.
            EOI OFFSET(41) NUMBITS(1) [],
            /// The priority.
            PRIORITY OFFSET(48) NUMBITS(8) [],
            /// Group 1.
            GROUP OFFSET(60) NUMBITS(1) [],
            /// Linked to a physical interrupt.
            HW OFFSET(61) NUMBITS(1) [],
            /// Bit 0 pending, bit 1 active.
            STATE OFFSET(62) NUMBITS(2) []
        ]
    ];

    register_bitfields! [u32,
        /// `GICH_LR<n>`.
        pub GICH_LR [
            /// The virtual INTID.
            VIRTUALID OFFSET(0) NUMBITS(10) [],
            /// With `HW` clear, an SGI's source CPU.
            CPUID OFFSET(10) NUMBITS(3) [],
            /// With `HW` clear: a maintenance interrupt on deactivation.
            EOI OFFSET(19) NUMBITS(1) [],
            /// The priority's top five bits.
            PRIORITY OFFSET(23) NUMBITS(5) [],
            /// Bit 0 pending, bit 1 active.
            STATE OFFSET(28) NUMBITS(2) [],
            /// Group 1.
            GRP1 OFFSET(30) NUMBITS(1) [],
            /// Linked to a physical interrupt.
            HW OFFSET(31) NUMBITS(1) []
        ]
    ];
}

fn state(e: &LrEntry) -> u8 {
    u8::from(e.pending) | u8::from(e.active) << 1
}

/// `ICH_LR<n>_EL2` for `e` (0: empty).
pub fn encode_v3(e: Option<&LrEntry>) -> u64 {
    let Some(e) = e else { return 0 };
    use ICH_LR as L;
    (L::VINTID.val(u64::from(e.intid))
        + L::EOI.val(u64::from(e.eoi))
        + L::PRIORITY.val(u64::from(e.priority))
        + L::GROUP.val(u64::from(e.group1))
        + L::STATE.val(u64::from(state(e))))
    .value
}

/// What `ICH_LR<n>_EL2` holds (`None`: nothing pending or active).
pub fn decode_v3(lr: u64) -> Option<LrEntry> {
    use ICH_LR as L;
    let r = LocalRegisterCopy::<u64, L::Register>::new(lr);
    let st = r.read(L::STATE);
    (st != 0).then(|| LrEntry {
        intid: r.read(L::VINTID) as u32,
        pending: st & 1 != 0,
        active: st & 2 != 0,
        group1: r.is_set(L::GROUP),
        priority: r.read(L::PRIORITY) as u8,
        eoi: r.is_set(L::EOI),
        source: 0,
    })
}

/// `GICH_LR<n>` for `e` (0: empty).
pub fn encode_v2(e: Option<&LrEntry>) -> u32 {
    let Some(e) = e else { return 0 };
    use GICH_LR as L;
    (L::VIRTUALID.val(e.intid)
        + L::CPUID.val(u32::from(e.source))
        + L::EOI.val(u32::from(e.eoi))
        + L::PRIORITY.val(u32::from(e.priority >> 3))
        + L::GRP1.val(u32::from(e.group1))
        + L::STATE.val(u32::from(state(e))))
    .value
}

/// What `GICH_LR<n>` holds (`None`: nothing pending or active).
pub fn decode_v2(lr: u32) -> Option<LrEntry> {
    use GICH_LR as L;
    let r = LocalRegisterCopy::<u32, L::Register>::new(lr);
    let st = r.read(L::STATE);
    (st != 0).then(|| LrEntry {
        intid: r.read(L::VIRTUALID),
        pending: st & 1 != 0,
        active: st & 2 != 0,
        group1: r.is_set(L::GRP1),
        priority: (r.read(L::PRIORITY) << 3) as u8,
        eoi: r.is_set(L::EOI),
        source: r.read(L::CPUID) as u8,
    })
}
