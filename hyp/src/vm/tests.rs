//! The VM logic on the host (`crate::testing::HostMachine`): power and
//! reset, PSCI without self-deadlock, the share protocol and its consent,
//! frame lifetimes, reverse-map quotas, and bounded memory for large
//! guest-driven operations.

extern crate std;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use mmu::Ipa;

use super::share::{Handle, ALIAS_ENTRIES, OFFERS};
use super::*;
use crate::calls::{self, Outcome};
use crate::hypercall::{CallError, HYP_BASE};
use crate::machine::EntryArg;
use crate::platform::Coherency;
use crate::psci;
use crate::testing::{boot_vms, heap_allocated, HostMachine, FRAMES_BASE, POISON};

const MB: u64 = 1 << 20;
/// Test pages above the image, inside the smallest RAM the tests give a
/// VM that uses them (16 MiB).
const A: u64 = RAM_BASE + 0x40_0000;
const B: u64 = RAM_BASE + 0x60_0000;

type V = &'static Vm<HostMachine>;

fn machine() -> &'static HostMachine {
    HostMachine::new(512 * MB, 1024)
}

/// Runs `f` on another thread; a deadlock fails the test instead of
/// hanging it.
fn within_5s<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("{what}: deadlocked"))
}

fn psci(vcpu: &'static Vcpu<HostMachine>, fid: u32, a: [u64; 3]) -> psci::Outcome {
    psci::guest_call(vcpu, fid, a)
}

fn hvc(vm: V, n: u32, a: [u64; 6]) -> Outcome {
    calls::dispatch(vm.vcpus()[0], HYP_BASE + n, a)
}

fn x0(o: Outcome) -> u64 {
    match o {
        Outcome::Return { x0, .. } => x0,
        Outcome::Yield => 0,
        Outcome::Stop => panic!("the call stopped the vCPU"),
        Outcome::WaitForInterrupt { .. } => panic!("the call made the vCPU wait"),
    }
}

/// The frame guest page `ipa` maps (faulting it in as the guest would).
fn frame(vm: V, ipa: u64) -> u64 {
    if vm.s2.translate(Ipa(ipa)).is_none() {
        vm.fault_alias(ipa).unwrap_or_else(|| vm.populate(ipa)).expect("fault");
    }
    vm.s2.translate(Ipa(ipa)).expect("mapped").pa.get()
}

/// Writes `v` at guest page `ipa` of `vm`, as its guest would.
fn poke(m: &HostMachine, vm: V, ipa: u64, v: u64) {
    m.write_u64(frame(vm, ipa), v);
}

fn peek(m: &HostMachine, vm: V, ipa: u64) -> u64 {
    m.read_u64(frame(vm, ipa))
}

// ---- power and reset -------------------------------------------------------

#[test]
fn a_vm_being_reset_is_not_a_stopped_vm() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 1, 2, 16 * MB, Coherency::Nc);
    let vm = vms[0];
    let v0 = guests.next_runnable().unwrap();
    assert_eq!(psci(v0, psci::CPU_ON_64, [1, IMAGE_IPA, 7]), psci::Outcome::Return(psci::SUCCESS));
    let v1 = guests.next_runnable().unwrap();
    assert_eq!(
        *v1.regs.lock(),
        crate::testing::HostRegs { entry: IMAGE_IPA, arg: EntryArg::Context(7) }
    );
    poke(m, vm, A, 0x1234);
    // vCPU 0 asks for a reset; vCPU 1 is still on.
    assert_eq!(psci(v0, psci::SYSTEM_RESET, [0; 3]), psci::Outcome::Stop);
    assert_eq!(vm.power(), VmPower::Resetting);
    v0.stop();
    assert!(!guests.all_stopped(), "vCPU 1 still on, the reset not done");
    // vCPU 1 notices at its next exit and stops: the last one resets.
    assert!(!vm.is_running());
    v1.stop();
    assert_eq!(vm.power(), VmPower::Running);
    assert!(!guests.all_stopped(), "reset: vCPU 0 runs again");
    assert_eq!(peek(m, vm, A), 0, "fresh memory after the reset");
    let v0 = guests.next_runnable().unwrap();
    assert_eq!((v0.index, v0.power()), (0, VcpuPower::On));
    assert_eq!(psci(v0, psci::SYSTEM_OFF, [0; 3]), psci::Outcome::Stop);
    v0.stop();
    assert!(guests.all_stopped());
}

/// The race CI hit: a CPU deciding whether every VM has stopped while
/// another resets one. With the VM's state in one atomic the reset is never
/// mistaken for a stop; run many rounds with the checker spinning.
#[test]
fn all_stopped_is_never_true_during_a_reset() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 1, 1, 4 * MB, Coherency::Nc);
    let vm = vms[0];
    let done: &'static AtomicBool =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(AtomicBool::new(false)));
    let checker = std::thread::spawn(move || {
        let mut checks = 0u64;
        while !done.load(Ordering::SeqCst) {
            assert!(!guests.all_stopped(), "all_stopped during a reset (check {checks})");
            checks += 1;
        }
        checks
    });
    for _ in 0..300 {
        let v0 = guests.next_runnable().expect("vCPU 0 queued");
        vm.request_reset();
        v0.stop();
    }
    done.store(true, Ordering::SeqCst);
    assert!(checker.join().unwrap() > 0);
    assert_eq!(vm.stat(Stat::Faults), 0);
    assert!(vm.is_running());
}

#[test]
fn system_off_wins_over_a_pending_reset_and_reset_needs_running() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 1, 1, 4 * MB, Coherency::Nc);
    let vm = vms[0];
    vm.request_reset();
    vm.power_off();
    let v0 = guests.next_runnable().unwrap();
    v0.stop();
    assert_eq!(vm.power(), VmPower::Off, "no reset after SYSTEM_OFF");
    vm.request_reset();
    assert_eq!(vm.power(), VmPower::Off, "an off VM is not reset");
    assert!(guests.all_stopped());
}

/// The first page of `vm`'s RAM, where its DTB is, read as the guest
/// would (little-endian words in guest memory: the blob's bytes in
/// order).
fn booted_dtb(m: &HostMachine, vm: V) -> Vec<u8> {
    (0..4096 / 8).flat_map(|i| peek(m, vm, RAM_BASE + 8 * i).to_le_bytes()).collect()
}

/// The DTB a VM is booted with, read back from its RAM as the guest
/// would: it describes the `Boot`'s GIC (here the host tests' default,
/// a GICv3 with one redistributor per vCPU), before and after a reset.
#[test]
fn the_booted_dtb_describes_the_vms_gic() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 1, 2, 4 * MB, Coherency::Nc);
    let vm = vms[0];
    let check = |what: &str| {
        let bytes = booted_dtb(m, vm);
        let fdt = fdt::Fdt::new(&bytes).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let intc = fdt.find_node("/intc@8000000").unwrap_or_else(|| panic!("{what}: no GIC"));
        assert_eq!(intc.compatible().unwrap().first(), "arm,gic-v3", "{what}");
        let regs: Vec<_> =
            intc.reg().unwrap().map(|r| (r.starting_address as u64, r.size.unwrap())).collect();
        assert_eq!(regs, [(0x0800_0000, 0x1_0000), (0x080A_0000, 0x4_0000)], "{what}");
    };
    check("boot");
    let v0 = guests.next_runnable().unwrap();
    assert_eq!(psci(v0, psci::SYSTEM_RESET, [0; 3]), psci::Outcome::Stop);
    v0.stop();
    assert_eq!(vm.power(), VmPower::Running);
    check("after a reset");
}

/// A bundle's VM: its initramfs at the top of its RAM, named in the DTB's
/// `/chosen`, and its command line exactly as given (no `vm=N`); the same
/// again after a reset.
#[test]
fn an_initrd_is_placed_high_and_named_in_the_dtb() {
    static INITRD: [u8; 10_000] = [0x1d; 10_000];
    let m = machine();
    let (guests, vms) = crate::testing::boot_vms_with(m, 1, 1, 4 * MB, Coherency::Nc, |b| Boot {
        initrd: Some(&INITRD),
        exact_cmdline: true,
        bootargs: "console=ttyAMA0".into(),
        ..b
    });
    let vm = vms[0];
    let check = |what: &str| {
        let bytes = booted_dtb(m, vm);
        let fdt = fdt::Fdt::new(&bytes).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let chosen = fdt.find_node("/chosen").unwrap();
        let u64_of = |name: &str| {
            let v = chosen.property(name).unwrap_or_else(|| panic!("{what}: no {name}")).value;
            u64::from_be_bytes(v.try_into().unwrap())
        };
        let (start, end) = (u64_of("linux,initrd-start"), u64_of("linux,initrd-end"));
        // Page-aligned, as high as it fits in the 4 MiB of RAM.
        assert_eq!(start, (RAM_BASE + 4 * MB - 10_000) & !0xfff, "{what}");
        assert_eq!(end - start, 10_000, "{what}");
        assert_eq!(peek(m, vm, start), 0x1d1d_1d1d_1d1d_1d1d, "{what}");
        assert_eq!(peek(m, vm, end - 8), 0x1d1d_1d1d_1d1d_1d1d, "{what}");
        let args = chosen.property("bootargs").unwrap().as_str().unwrap();
        assert_eq!(args, "console=ttyAMA0", "{what}");
    };
    check("boot");
    let v0 = guests.next_runnable().unwrap();
    assert_eq!(psci(v0, psci::SYSTEM_RESET, [0; 3]), psci::Outcome::Stop);
    v0.stop();
    check("after a reset");
}

/// An initramfs that does not fit above the image is refused, not
/// written over it.
#[test]
fn an_initrd_that_does_not_fit_is_refused() {
    static BIG: [u8; 5 << 20] = [0; 5 << 20];
    let m = machine();
    let rmap = Box::leak(Box::new(mmu::Rmap::with_quota(crate::vm::RMAP_QUOTA)));
    let guests: &'static Guests<HostMachine> =
        Box::leak(Box::new(Guests::new(m, Coherency::Nc, rmap)));
    let spec = VmSpec {
        id: 1,
        geo: crate::testing::geometry(),
        vcpus: 1,
        ram_size: 4 * MB,
        policy: Policy::Pages,
        lock: LockMode::Split,
        gic: None,
        gicv: None,
        flash: false,
    };
    let vm = guests.create(&[spec]).unwrap()[0];
    static IMAGE: [u8; 64] = [0x5a; 64];
    let boot = Boot {
        segments: alloc::vec![(IMAGE_IPA, &IMAGE[..], 64)],
        entry: IMAGE_IPA,
        vcpus: 1,
        bootargs: String::new(),
        exact_cmdline: true,
        initrd: Some(&BIG),
        gic: crate::fdt_writer::GuestGic::None,
    };
    assert!(matches!(vm.boot(boot), Err(Error::BadSpec(_))));
}

/// A firmware VM's initramfs (a bundle's `vmN/initrd` beside its
/// `firmware` and `kernel`) goes at the top of the lower half of its RAM,
/// out of the way of firmware that relocates itself to the top (U-Boot),
/// and is named in the DTB for the firmware to hand on.
#[test]
fn a_firmware_vms_initrd_is_below_the_firmwares_part_of_ram() {
    static FIRMWARE: [u8; 64] = [0x42; 64];
    static INITRD: [u8; 10_000] = [0x1d; 10_000];
    let m = machine();
    let rmap = Box::leak(Box::new(mmu::Rmap::with_quota(crate::vm::RMAP_QUOTA)));
    let guests: &'static Guests<HostMachine> =
        Box::leak(Box::new(Guests::new(m, Coherency::Nc, rmap)));
    let spec = VmSpec {
        id: 1,
        geo: crate::testing::geometry(),
        vcpus: 1,
        ram_size: 8 * MB,
        policy: Policy::Pages,
        lock: LockMode::Split,
        gic: None,
        gicv: None,
        flash: true,
    };
    let vm = guests.create(&[spec]).unwrap()[0];
    let boot = Boot {
        segments: alloc::vec![(layout::FLASH_BASE, &FIRMWARE[..], 64)],
        entry: layout::FLASH_BASE,
        vcpus: 1,
        bootargs: "console=ttyAMA0".into(),
        exact_cmdline: true,
        initrd: Some(&INITRD),
        gic: crate::fdt_writer::GuestGic::None,
    };
    vm.boot(boot).unwrap();
    let bytes = booted_dtb(m, vm);
    let fdt = fdt::Fdt::new(&bytes).unwrap();
    let chosen = fdt.find_node("/chosen").unwrap();
    let start = chosen.property("linux,initrd-start").unwrap().value;
    let start = u64::from_be_bytes(start.try_into().unwrap());
    assert_eq!(start, (RAM_BASE + 4 * MB - 10_000) & !0xfff);
    assert_eq!(peek(m, vm, start), 0x1d1d_1d1d_1d1d_1d1d);
}

/// A firmware VM (a bundle's `vmN/firmware`): the image at the start of
/// its flash at IPA 0, where vCPU 0 starts with the DTB (still at the RAM
/// base) in its first register; the rest of the flash reads as erased,
/// page by page on demand, read-only; the same after a reset, which frees
/// the firmware's pages and reloads them (the erased frame stays: see
/// `reading_all_of_the_flash_allocates_no_frames`). A VM without flash
/// has none.
#[test]
fn firmware_runs_from_erased_read_only_flash_at_ipa_0() {
    static FIRMWARE: [u8; 5000] = [0x42; 5000];
    let m = machine();
    let rmap = Box::leak(Box::new(mmu::Rmap::with_quota(crate::vm::RMAP_QUOTA)));
    let guests: &'static Guests<HostMachine> =
        Box::leak(Box::new(Guests::new(m, Coherency::Nc, rmap)));
    let spec = |id, flash| VmSpec {
        id,
        geo: crate::testing::geometry(),
        vcpus: 1,
        ram_size: 4 * MB,
        policy: Policy::Blocks,
        lock: LockMode::Split,
        gic: None,
        gicv: None,
        flash,
    };
    let vms = guests.create(&[spec(1, true), spec(2, false)]).unwrap();
    let (vm, plain) = (vms[0], vms[1]);
    let before = m.frames_in_use();
    let boot = || Boot {
        segments: alloc::vec![(layout::FLASH_BASE, &FIRMWARE[..], 5000)],
        entry: layout::FLASH_BASE,
        vcpus: 1,
        bootargs: String::new(),
        exact_cmdline: true,
        initrd: None,
        gic: crate::fdt_writer::GuestGic::None,
    };
    vm.boot(boot()).unwrap();
    let v0 = guests.next_runnable().unwrap();
    assert_eq!(
        *v0.regs.lock(),
        crate::testing::HostRegs { entry: 0, arg: EntryArg::Dtb(RAM_BASE) }
    );
    let erased = u64::MAX;
    let check = |what: &str| {
        // The image, then erased flash to the end of its last page.
        assert_eq!(peek(m, vm, 0), 0x4242_4242_4242_4242, "{what}");
        assert_eq!(peek(m, vm, 4992), 0x4242_4242_4242_4242, "{what}");
        assert_eq!(peek(m, vm, 5000), erased, "{what}");
        assert_eq!(peek(m, vm, 8184), erased, "{what}");
        // Mapped read-only and executable.
        let t = vm.s2.translate(Ipa(0)).unwrap();
        assert!(t.attrs.read && !t.attrs.write && t.attrs.exec != mmu::Exec::Never, "{what}");
        // The DTB at the RAM base, as ever.
        assert!(fdt::Fdt::new(&booted_dtb(m, vm)).is_ok(), "{what}");
        // The second bank (where U-Boot looks for its environment):
        // nothing until the guest reads it, then an erased page, only
        // one (the blocks policy is RAM's), read-only.
        let env = layout::FLASH_BANK_SIZE;
        assert!(vm.s2.translate(Ipa(env)).is_none(), "{what}");
        assert!(vm.in_flash(env, PAGE) && !vm.in_ram(env, PAGE));
        vm.populate_flash(env + 0x10).unwrap();
        let t = vm.s2.translate(Ipa(env)).unwrap();
        assert_eq!((t.level, t.attrs.write), (3, false), "{what}");
        assert_eq!(m.read_u64(t.pa.get() + 4088), erased, "{what}");
        assert!(vm.s2.translate(Ipa(env + PAGE)).is_none(), "{what}");
        // A second fault on the same page (a racing vCPU) is fine.
        vm.populate_flash(env).unwrap();
    };
    check("boot");
    // The flash ends at 128 MiB, below the GIC.
    let end = layout::FLASH_SIZE;
    assert!(vm.in_flash(end - PAGE, PAGE) && !vm.in_flash(end, PAGE));
    assert!(matches!(vm.populate_flash(end), Err(Error::OutsideRam { .. })));
    // A reset frees what the flash held and loads the image again.
    assert_eq!(psci(v0, psci::SYSTEM_RESET, [0; 3]), psci::Outcome::Stop);
    v0.stop();
    assert_eq!(vm.power(), VmPower::Running);
    check("after a reset");
    // Unmapped, everything the VM had goes back: no frame leaked.
    vm.power_off();
    vm.forget_everything(&mut vm.sharing.lock()).unwrap();
    assert_eq!(m.frames_in_use(), before);
    // A VM without flash: IPA 0 is nothing.
    assert!(!plain.in_flash(0, PAGE));
    assert!(matches!(plain.populate_flash(0), Err(Error::OutsideRam { .. })));
    assert!(matches!(plain.load(0, &FIRMWARE, 5000), Err(Error::OutsideRam { .. })));
}

/// A firmware VM of `ram_size` bytes of RAM (flash at IPA 0), created
/// but not booted; and what booting it loads: [`FIRMWARE`] at the start
/// of its flash.
fn firmware_vm(m: &'static HostMachine) -> (&'static Guests<HostMachine>, V) {
    let rmap = Box::leak(Box::new(mmu::Rmap::with_quota(crate::vm::RMAP_QUOTA)));
    let guests: &'static Guests<HostMachine> =
        Box::leak(Box::new(Guests::new(m, Coherency::Nc, rmap)));
    let spec = VmSpec {
        id: 1,
        geo: crate::testing::geometry(),
        vcpus: 1,
        ram_size: 4 * MB,
        policy: Policy::Blocks,
        lock: LockMode::Split,
        gic: None,
        gicv: None,
        flash: true,
    };
    (guests, guests.create(&[spec]).unwrap()[0])
}

/// The firmware [`firmware_vm`] boots: two pages and a bit.
static FIRMWARE: [u8; 9000] = [0x42; 9000];
/// Pages [`FIRMWARE`] covers.
const FIRMWARE_PAGES: u64 = 3;

fn firmware_boot() -> Boot {
    Boot {
        segments: alloc::vec![(layout::FLASH_BASE, &FIRMWARE[..], FIRMWARE.len() as u64)],
        entry: layout::FLASH_BASE,
        vcpus: 1,
        bootargs: String::new(),
        exact_cmdline: true,
        initrd: None,
        gic: crate::fdt_writer::GuestGic::None,
    }
}

/// Faults in every page of `vm`'s flash, as a guest reading all of it
/// would, from two CPUs at once (the second racing the first for each
/// page); returns the frames the flash maps, each with the number of its
/// pages that map it.
fn touch_all_flash(m: &'static HostMachine, vm: V) -> std::collections::BTreeMap<u64, u64> {
    let pages = layout::FLASH_SIZE / PAGE;
    let racer = std::thread::spawn(move || {
        m.as_cpu(1, || {
            for p in (0..pages).rev() {
                vm.populate_flash(layout::FLASH_BASE + p * PAGE + 8).unwrap();
            }
        })
    });
    for p in 0..pages {
        vm.populate_flash(layout::FLASH_BASE + p * PAGE).unwrap();
    }
    racer.join().unwrap();
    let mut frames = std::collections::BTreeMap::new();
    for p in 0..pages {
        let t = vm.s2.translate(Ipa(layout::FLASH_BASE + p * PAGE)).expect("flash mapped");
        assert_eq!((t.level, t.attrs.write), (3, false), "page {p}: a read-only page");
        assert_ne!(t.attrs.exec, mmu::Exec::Never, "page {p}: executable");
        *frames.entry(t.pa.get()).or_insert(0) += 1;
    }
    frames
}

/// The hostile-guest rule for the flash: a guest that reads all of its
/// 128 MiB of flash costs the hypervisor stage-2 tables (at most a
/// level-3 table per 2 MiB) and no frame. Every erased page maps the
/// VM's one erased frame (allocated with the VM), which reads `0xff`; the
/// firmware's pages are its own. Resets and the final unmap never free
/// the erased frame (the test machine fails a double free at once) and
/// free everything else the flash held.
#[test]
fn reading_all_of_the_flash_allocates_no_frames() {
    let m = machine();
    let at_start = m.frames_in_use();
    let (guests, vm) = firmware_vm(m);
    // The erased frame, and nothing else, comes with the VM.
    assert_eq!(m.frames_in_use(), at_start + 1);
    let erased = vm.erased.unwrap();
    assert!(vm.is_erased_page(erased));
    vm.boot(firmware_boot()).unwrap();
    let booted = m.frames_in_use();
    let tables = m.tables().live();
    let check = |what: &str| {
        let frames = touch_all_flash(m, vm);
        assert_eq!(m.frames_in_use(), booted, "{what}: no frame for the erased pages");
        let new_tables = m.tables().live() - tables;
        assert!(new_tables <= 64 + 2, "{what}: {new_tables} table pages for the flash");
        // The firmware's pages, each its own frame, then one frame for
        // every other page.
        let pages = layout::FLASH_SIZE / PAGE;
        assert_eq!(frames.get(&erased.get()), Some(&(pages - FIRMWARE_PAGES)), "{what}");
        assert_eq!(frames.len() as u64, FIRMWARE_PAGES + 1, "{what}");
        for p in 0..FIRMWARE_PAGES {
            assert_ne!(frame(vm, p * PAGE), erased.get(), "{what}: firmware page {p}");
        }
        // The image, erased flash after it in its last page, and erased
        // flash everywhere else, to the last word.
        assert_eq!(peek(m, vm, 0), 0x4242_4242_4242_4242, "{what}");
        assert_eq!(peek(m, vm, 8992), 0x4242_4242_4242_4242, "{what}");
        assert_eq!(peek(m, vm, 9000), u64::MAX, "{what}");
        for w in 0..PAGE / 8 {
            assert_eq!(m.read_u64(erased.get() + 8 * w), u64::MAX, "{what}: word {w}");
        }
        assert_eq!(peek(m, vm, layout::FLASH_SIZE - 8), u64::MAX, "{what}");
        assert!(vm.stat(Stat::PagesMapped) >= pages, "{what}");
    };
    check("boot");
    // A reset unmaps the flash (32768 mappings of the erased frame) and
    // loads the firmware again: the same frames in use, the erased frame
    // neither freed nor poisoned.
    let v0 = guests.next_runnable().unwrap();
    assert_eq!(psci(v0, psci::SYSTEM_RESET, [0; 3]), psci::Outcome::Stop);
    v0.stop();
    assert_eq!(vm.power(), VmPower::Running);
    assert_eq!(m.frames_in_use(), booted, "the reset freed what it reloaded, no more");
    check("after a reset");
    // Off, and everything unmapped: all that is left is the erased frame,
    // which lives as long as the VM does (for ever: VMs are never
    // removed).
    let v0 = guests.next_runnable().unwrap();
    assert_eq!(psci(v0, psci::SYSTEM_OFF, [0; 3]), psci::Outcome::Stop);
    v0.stop();
    assert!(guests.all_stopped());
    vm.forget_everything(&mut vm.sharing.lock()).unwrap();
    vm.s2.rcu_barrier();
    assert_eq!(m.frames_in_use(), at_start + 1);
    assert!(m.tables().live() <= tables, "the flash's tables freed");
    assert_eq!(m.read_u64(erased.get()), u64::MAX);
}

/// Loading the firmware over flash pages the guest had faulted in (the
/// erased frame mapped there) writes it to fresh frames, never to the
/// erased frame the other pages share.
#[test]
fn the_firmware_is_never_written_into_the_erased_frame() {
    let m = machine();
    let (_guests, vm) = firmware_vm(m);
    let erased = vm.erased.unwrap();
    for p in 0..FIRMWARE_PAGES + 1 {
        vm.populate_flash(p * PAGE).unwrap();
        assert_eq!(frame(vm, p * PAGE), erased.get());
    }
    vm.boot(firmware_boot()).unwrap();
    for p in 0..FIRMWARE_PAGES {
        assert_ne!(frame(vm, p * PAGE), erased.get(), "firmware page {p}");
        let t = vm.s2.translate(Ipa(p * PAGE)).unwrap();
        assert!(!t.attrs.write, "firmware page {p}: read-only");
    }
    assert_eq!(peek(m, vm, 0), 0x4242_4242_4242_4242);
    assert_eq!(frame(vm, FIRMWARE_PAGES * PAGE), erased.get(), "the page after it");
    for w in 0..PAGE / 8 {
        assert_eq!(m.read_u64(erased.get() + 8 * w), u64::MAX, "word {w}");
    }
}

/// Stores to the flash (`Vm::flash_store`, what the trap handler asks on
/// a write permission fault there): one the syndrome describes is
/// dropped and stepped over, with warnings the VM's limiter holds to a
/// burst however many the guest makes; a cache maintenance instruction
/// is stepped over silently; a store without a valid syndrome, or a
/// stage-1 walk's descriptor update, takes an external abort.
#[test]
fn flash_stores_are_dropped_rate_limited_or_aborted() {
    use crate::syndrome::Syndrome;
    let m = machine();
    let (_guests, vm) = firmware_vm(m);
    // STR w1, [x0], permission fault at level 3: ISV, SAS word, SRT 1, WnR.
    let store = Syndrome(0x9381_004f);
    m.take_output();
    for i in 0..10_000 {
        assert_eq!(vm.flash_store(store, 0x400_0000 + 4 * i), FlashStore::Skip);
    }
    let out = m.take_output();
    let lines = out.matches("write to the flash").count();
    assert!((1..=8).contains(&lines), "{lines} warnings for 10000 stores:\n{out}");
    // A second later one more, saying how many were left out.
    m.advance_ms(1000);
    assert_eq!(vm.flash_store(store, 0x400_0000), FlashStore::Skip);
    let out = m.take_output();
    assert!(out.contains("warnings about this VM suppressed"), "{out}");
    // DC IVAC: CM, WnR, no ISV. Skipped without a word.
    m.advance_ms(10_000);
    assert_eq!(vm.flash_store(Syndrome(0x9200_014f), 0x1000), FlashStore::Skip);
    assert_eq!(m.take_output(), "");
    // STP: no ISV. A stage-1 walk: S1PTW.
    assert_eq!(vm.flash_store(Syndrome(0x9200_004f), 0x1000), FlashStore::Abort);
    assert_eq!(vm.flash_store(Syndrome(0x9200_00cf), 0x1000), FlashStore::Abort);
    assert_eq!(m.take_output(), "");
}

// ---- PSCI: no self-deadlock, no waiting for a running vCPU ------------------

#[test]
fn cpu_on_of_a_running_vcpu_or_itself_answers_already_on() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 1, 2, 4 * MB, Coherency::Nc);
    let v0 = guests.next_runnable().unwrap();
    // The run loop holds the running vCPU's registers across the call:
    // CPU_ON of itself must not wait for them.
    let held = v0.regs.lock();
    let r = within_5s("CPU_ON of the caller", move || psci(v0, psci::CPU_ON_64, [0, IMAGE_IPA, 0]));
    assert_eq!(r, psci::Outcome::Return(psci::ALREADY_ON));
    drop(held);
    assert_eq!(psci(v0, psci::CPU_ON_32, [1, IMAGE_IPA, 0]), psci::Outcome::Return(psci::SUCCESS));
    let v1 = guests.next_runnable().unwrap();
    // vCPU 1 runs on another CPU (its registers held there).
    let _running = v1.regs.lock();
    let r =
        within_5s("CPU_ON of a running vCPU", move || psci(v0, psci::CPU_ON_64, [1, IMAGE_IPA, 0]));
    assert_eq!(r, psci::Outcome::Return(psci::ALREADY_ON));
    assert_eq!(psci(v0, psci::AFFINITY_INFO_64, [1, 0, 0]), psci::Outcome::Return(0));
    assert_eq!(vms[0].vcpus()[1].power(), VcpuPower::On);
}

#[test]
fn bad_psci_arguments_are_refused_and_change_nothing() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 1, 2, 4 * MB, Coherency::Nc);
    let v0 = guests.next_runnable().unwrap();
    let end = RAM_BASE + 4 * MB;
    for (fid, a, want) in [
        (psci::CPU_ON_64, [2, IMAGE_IPA, 0], psci::INVALID_PARAMETERS),
        (psci::CPU_ON_64, [1 << 8, IMAGE_IPA, 0], psci::INVALID_PARAMETERS),
        (psci::CPU_ON_64, [u64::MAX, IMAGE_IPA, 0], psci::INVALID_PARAMETERS),
        (psci::CPU_ON_64, [1, end, 0], psci::INVALID_ADDRESS),
        (psci::CPU_ON_64, [1, 0, 0], psci::INVALID_ADDRESS),
        (psci::CPU_ON_64, [1, u64::MAX, 0], psci::INVALID_ADDRESS),
        // SMC32: the upper halves are ignored, so this names vCPU 1 at an
        // entry point 4 GiB below: outside RAM.
        (psci::CPU_ON_32, [1, IMAGE_IPA | (1 << 32), 0], psci::SUCCESS),
        (psci::AFFINITY_INFO_64, [1, 1, 0], psci::INVALID_PARAMETERS),
        (psci::AFFINITY_INFO_64, [9, 0, 0], psci::INVALID_PARAMETERS),
        (psci::FEATURES, [0xC600_0000, 0, 0], psci::NOT_SUPPORTED),
        // An SMC32 call: only the low half of the argument counts.
        (psci::FEATURES, [u64::from(psci::CPU_ON_64) | (1 << 32), 0, 0], psci::SUCCESS),
        (psci::FEATURES, [u64::from(psci::AFFINITY_INFO_32), 0, 0], psci::SUCCESS),
        (0x8400_001f, [0; 3], psci::NOT_SUPPORTED),
    ] {
        assert_eq!(psci(v0, fid, a), psci::Outcome::Return(want), "{fid:#x} {a:x?}");
    }
    assert_eq!(vms[0].vcpus()[1].power(), VcpuPower::On, "only the good CPU_ON started it");
    assert_eq!(guests.queued(), 1);
}

// ---- sharing takes consent ----------------------------------------------

#[test]
fn a_share_maps_nothing_until_the_receiver_accepts() {
    let m = machine();
    let (_, vms) = boot_vms(m, 2, 1, 64 * MB, Coherency::Nc);
    let (one, two) = (vms[0], vms[1]);
    poke(m, two, B, 0x2222);
    poke(m, one, A, 0x1111);
    // The old, consentless form (VM 1 naming VM 2's page) is refused.
    let r = x0(hvc(one, 0x0a, [A, 2, B, 0, 0, 0]));
    assert_eq!(r, CallError::Invalid("").code());
    let h = x0(hvc(one, 0x0a, [A, 2, 0, 0, 0, 0]));
    assert!((h as i64) > 0, "a handle: {h:#x}");
    assert_eq!(peek(m, two, B), 0x2222, "offered, not accepted: VM 2's page is its own");
    assert_eq!(one.stat(Stat::Offers), 1);
    // Nobody but VM 2 may accept; VM 2 may not revoke.
    assert_eq!(one.accept(Handle(h as u32), A), Err(CallError::Invalid("no such offer")));
    assert_eq!(two.revoke(Handle(h as u32)), Err(CallError::Invalid("not this VM's offer")));
    // VM 2 finds the offer and accepts it at B.
    let Outcome::Return { x0: found, more } = hvc(two, 0x0f, [0, 0, 0, 0, 0, 0]) else { panic!() };
    assert_eq!((found, more), (h, Some([1, 0])));
    assert_eq!(x0(hvc(two, 0x0f, [1, 0, 0, 0, 0, 0])) as i64, -3, "only one offer");
    assert_eq!(x0(hvc(two, 0x0c, [h, B, 0, 0, 0, 0])), 0);
    assert_eq!(x0(hvc(two, 0x0c, [h, B + 0x1000, 0, 0, 0, 0])) as i64, -3, "accepted already");
    assert_eq!(peek(m, two, B), 0x1111, "VM 2 sees VM 1's page");
    assert_eq!(frame(one, A), frame(two, B));
    assert_eq!(two.stat(Stat::SharesReceived), 1);
    // The owner revokes: VM 2's alias goes; its next access is fresh.
    assert_eq!(x0(hvc(one, 0x0d, [h, 0, 0, 0, 0, 0])), 0);
    assert!(two.s2.translate(Ipa(B)).is_none());
    assert_eq!(peek(m, two, B), 0);
    assert_eq!(peek(m, one, A), 0x1111, "the owner keeps its page");
    assert_eq!(x0(hvc(two, 0x0c, [h, B, 0, 0, 0, 0])) as i64, -3, "a revoked handle is dead");
    assert_eq!((one.stat(Stat::Offers), two.stat(Stat::AliasEntries)), (0, 0));
}

#[test]
fn offers_name_their_receiver_and_relinquish_keeps_the_offer() {
    let m = machine();
    let (_, vms) = boot_vms(m, 3, 1, 16 * MB, Coherency::Nc);
    let (one, two, three) = (vms[0], vms[1], vms[2]);
    poke(m, one, A, 0xabcd);
    let h = one.offer(A, two).unwrap();
    assert_eq!(three.accept(h, B), Err(CallError::Invalid("offered to another VM")));
    assert_eq!(three.offered(0), None);
    two.accept(h, B).unwrap();
    assert_eq!(peek(m, two, B), 0xabcd);
    two.relinquish(h).unwrap();
    assert_eq!(two.relinquish(h), Err(CallError::Invalid("not accepted")));
    assert!(two.s2.translate(Ipa(B)).is_none());
    assert_eq!(two.offered(0).map(|o| o.2), Some(false), "the offer stays");
    two.accept(h, B + 0x2000).unwrap();
    assert_eq!(peek(m, two, B + 0x2000), 0xabcd);
    assert_eq!(two.offered(0).map(|o| (o.1, o.2)), Some((1, true)));
}

#[test]
fn frames_live_until_their_last_reference_and_no_longer() {
    let m = machine();
    let (_, vms) = boot_vms(m, 2, 1, 16 * MB, Coherency::Nc);
    let (one, two) = (vms[0], vms[1]);
    let base = m.frames_in_use();
    poke(m, one, A, 0x77);
    let pa = frame(one, A);
    let h = one.offer(A, two).unwrap();
    two.accept(h, B).unwrap();
    assert_eq!(peek(m, two, B), 0x77);
    // The owner unmaps its page: VM 2's mapping and the offer keep it.
    one.unmap(A, 0x1000).unwrap();
    assert_eq!(peek(m, two, B), 0x77);
    assert_ne!(m.read_u64(pa), POISON);
    // VM 2 relinquishes: only the offer holds it now, still not freed.
    two.relinquish(h).unwrap();
    assert_eq!(m.read_u64(pa), 0x77);
    // The owner revokes: the last reference, the frame is freed.
    one.revoke(h).unwrap();
    assert_eq!(m.read_u64(pa), POISON, "freed (and poisoned) exactly now");
    assert_eq!(guests_tracked(one), 0);
    // Every frame used came back (pages touched since `base` were freed).
    one.unmap(RAM_BASE + 4 * MB, 12 * MB).unwrap();
    two.unmap(RAM_BASE + 4 * MB, 12 * MB).unwrap();
    assert_eq!(m.frames_in_use(), base);
}

fn guests_tracked(vm: V) -> usize {
    vm.guests.rmap.tracked()
}

#[test]
fn a_reset_drops_offers_but_accepted_shares_stay_with_the_receiver() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 2, 1, 16 * MB, Coherency::Nc);
    let (one, two) = (vms[0], vms[1]);
    poke(m, one, A, 0x42);
    let kept = one.offer(A, two).unwrap();
    let dropped = one.offer(A + 0x1000, two).unwrap();
    two.accept(kept, B).unwrap();
    // VM 1 resets.
    let v = guests.next_runnable().filter(|v| v.vm.id == 1).unwrap();
    one.request_reset();
    v.stop();
    assert!(one.is_running());
    assert_eq!(peek(m, one, A), 0, "VM 1's RAM is fresh");
    assert_eq!(peek(m, two, B), 0x42, "VM 2 keeps what it accepted");
    assert_eq!(two.accept(dropped, B + 0x1000), Err(CallError::Invalid("no such offer")));
    assert_eq!(one.revoke(kept), Err(CallError::Invalid("no such offer")));
    assert_eq!(one.stat(Stat::Offers), 0);
}

// ---- the reverse map is bounded per VM --------------------------------------

#[test]
fn one_vm_cannot_fill_the_reverse_map() {
    let m = machine();
    let (_, vms) = boot_vms(m, 2, 1, 64 * MB, Coherency::Nc);
    let (one, two) = (vms[0], vms[1]);
    // The old attack: one alias entry at a time, each on a new source page.
    for i in 0..300u64 {
        let src = A + i * 0x1000;
        one.alias(src, B).unwrap();
        one.unmap(B, 0x1000).unwrap();
    }
    assert_eq!(one.stat(Stat::TrackedPages), 0, "pages with one mapping are not tracked");
    // Its whole quota: alias entries and offers.
    for i in 0..ALIAS_ENTRIES as u64 {
        one.alias(A + i * 0x1000, B + i * 0x1000).unwrap();
    }
    for i in 0..OFFERS as u64 {
        one.offer(A + (100 + i) * 0x1000, two).unwrap();
    }
    assert_eq!(one.stat(Stat::TrackedPages), RMAP_QUOTA as u64);
    assert!(matches!(one.offer(A + 0x80_0000, two), Err(CallError::NoMemory(_))));
    assert!(matches!(one.alias(A + 0x80_0000, B + 0x80_0000), Err(CallError::NoMemory(_))));
    // VM 2 still has all of its room.
    two.alias(A, B).unwrap();
    assert_eq!(two.stat(Stat::TrackedPages), 1);
}

// ---- bounded memory for guest-driven operations --------------------------

/// A guest with 768 MiB of RAM in 2 MiB blocks unmaps all of it, then resets:
/// the hypervisor allocates nothing in proportion (the old unmap collected
/// one heap entry per 4 KiB page: 3 MiB here, then panicked on the EL2
/// heap), and every frame comes back.
#[test]
fn unmapping_or_resetting_a_large_vm_allocates_no_heap_per_page() {
    let m = HostMachine::new(1024 * MB, 2048);
    let (guests, vms) = boot_vms(m, 1, 1, 768 * MB, Coherency::Nc);
    let vm = vms[0];
    vm.set_policy(Policy::Blocks);
    let base = m.frames_in_use();
    for ipa in (RAM_BASE + 32 * MB..RAM_BASE + 768 * MB).step_by(2 * MB as usize) {
        vm.populate(ipa).unwrap();
    }
    assert!(vm.stat(Stat::BlocksMapped) >= 368);
    let before = heap_allocated();
    vm.unmap(RAM_BASE + 32 * MB, 736 * MB).unwrap();
    let unmap_heap = heap_allocated() - before;
    assert!(unmap_heap < 16 << 10, "unmap allocated {unmap_heap} bytes of heap");
    assert_eq!(m.frames_in_use(), base, "every block freed");
    // Again, then a reset instead of the unmap.
    for ipa in (RAM_BASE + 32 * MB..RAM_BASE + 768 * MB).step_by(2 * MB as usize) {
        vm.populate(ipa).unwrap();
    }
    let v0 = guests.next_runnable().unwrap();
    vm.request_reset();
    let before = heap_allocated();
    v0.stop();
    let reset_heap = heap_allocated() - before;
    // The reset rebuilds the guest's DTB and bootargs: a few KiB.
    assert!(reset_heap < 64 << 10, "reset allocated {reset_heap} bytes of heap");
    assert!(vm.is_running());
    assert_eq!(m.frames_in_use(), base, "only the image and DTB pages again");
}

// ---- fuzzing the calls ----------------------------------------------------

fn boundary(ram: u64) -> Vec<u64> {
    let end = RAM_BASE + ram;
    alloc::vec![
        0,
        1,
        0xfff,
        0x1000,
        RAM_BASE - 0x1000,
        RAM_BASE,
        RAM_BASE + 1,
        A,
        B,
        end - 0x1000,
        end,
        end + 0x1000,
        u32::MAX as u64,
        1 << 32,
        (1 << 40) - 0x1000,
        1 << 48,
        i64::MAX as u64,
        u64::MAX - 0xfff,
        u64::MAX,
    ]
}

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Thousands of random and boundary calls from two VMs: the hypervisor
/// never panics, every refused call is an SMCCC error and changes nothing
/// the other VM can see, and all frames come back at the end.
#[test]
fn random_and_boundary_calls_never_hurt_the_hypervisor_or_another_vm() {
    let ram = 32 * MB;
    let m = machine();
    let (guests, vms) = boot_vms(m, 2, 2, ram, Coherency::Ro);
    let (one, two) = (vms[0], vms[1]);
    let v0 = guests.next_runnable().unwrap();
    let _ = guests.next_runnable().unwrap();
    // VM 2's page holds data VM 1 must never reach.
    poke(m, two, A, 0x5ec2e7);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let values = boundary(ram);
    let stop_calls = [psci::CPU_OFF, psci::SYSTEM_OFF, psci::SYSTEM_RESET, psci::SYSTEM_RESET2_32];
    for i in 0..20_000 {
        let pick = |rng: &mut Rng| -> u64 {
            match rng.next() % 4 {
                0 => rng.next(),
                1 => values[(rng.next() % values.len() as u64) as usize],
                // Inside VM 1's test region, page aligned or not.
                2 => (A + (rng.next() % (8 * MB))) & !0xfff,
                _ => A + (rng.next() % (8 * MB)),
            }
        };
        let fid = match rng.next() % 6 {
            0 => rng.next() as u32,
            1 => 0x8400_0000 | (rng.next() as u32 % 0x20),
            2 => 0xc400_0000 | (rng.next() as u32 % 0x20),
            3 => 0x8600_0000 | (rng.next() as u32 % 0x12),
            _ => HYP_BASE | (rng.next() as u32 % 0x12),
        };
        if stop_calls.contains(&(fid & !(1 << 30))) {
            continue;
        }
        let a = [pick(&mut rng), pick(&mut rng), pick(&mut rng), pick(&mut rng), 0, 0];
        // Unmapping or remapping the image would only hurt VM 1 itself;
        // the harness does that in its own guests. Here: the hypervisor.
        match calls::dispatch(v0, fid, a) {
            Outcome::Return { .. } | Outcome::Yield => {}
            // CPU_SUSPEND: a standby that returns SUCCESS.
            Outcome::WaitForInterrupt { x0: 0 } => {}
            o => panic!("call {i}: {fid:#x} {a:x?}: {o:?}"),
        }
        assert_eq!(peek(m, two, A), 0x5ec2e7, "call {i}: {fid:#x} {a:x?} reached VM 2");
    }
    assert!(one.stat(Stat::CallsRefused) > 1000);
    all_frames_come_back(m, guests, &[one, two]);
}

/// Lets `vms` go of everything, as resets do: every frame must come back
/// and no page stay tracked.
fn all_frames_come_back(m: &HostMachine, guests: &Guests<HostMachine>, vms: &[&Vm<HostMachine>]) {
    for vm in vms {
        let mut t = vm.sharing.lock();
        vm.forget_everything(&mut t).unwrap();
    }
    assert_eq!(m.frames_in_use(), 0, "no frame leaked or freed twice");
    assert_eq!(guests.rmap.tracked(), 0);
}

/// Refused calls are logged at a bounded rate per VM, with a count of what
/// was left out.
#[test]
fn a_flood_of_refused_calls_prints_a_bounded_number_of_lines() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 1, 1, 4 * MB, Coherency::Nc);
    let v0 = guests.next_runnable().unwrap();
    m.take_output();
    for _ in 0..10_000 {
        let _ = calls::dispatch(v0, HYP_BASE + 3, [1, 1, 0, 0, 0, 0]);
    }
    m.advance_ms(1000);
    let _ = calls::dispatch(v0, HYP_BASE + 3, [1, 1, 0, 0, 0, 0]);
    let out = m.take_output();
    let lines = out.lines().count();
    assert!(lines <= 10, "{lines} lines:\n{out}");
    assert!(out.contains("warnings about this VM suppressed"), "{out}");
    assert_eq!(vms[0].stat(Stat::CallsRefused), 10_001);
}

/// Everything a VM maps comes from its own frames or from shares it
/// accepted: a second VM's pages never show up in the first's tables.
#[test]
fn no_vm_maps_another_vms_frame_without_a_share() {
    let m = machine();
    let (_, vms) = boot_vms(m, 2, 1, 16 * MB, Coherency::Nc);
    let (one, two) = (vms[0], vms[1]);
    for i in 0..64 {
        poke(m, one, A + i * 0x1000, i);
        poke(m, two, A + i * 0x1000, i);
        one.alias(A + i * 0x1000, B + i * 0x1000).unwrap_or(());
    }
    let frames_of = |vm: V| -> Vec<u64> {
        (0..16 * MB / 0x1000)
            .filter_map(|p| vm.s2.translate(Ipa(RAM_BASE + p * 0x1000)).map(|t| t.pa.get()))
            .collect()
    };
    let (f1, f2) = (frames_of(one), frames_of(two));
    assert!(f1.iter().all(|p| !f2.contains(p)), "a frame mapped in both VMs");
    assert!(f1.iter().chain(&f2).all(|&p| p >= FRAMES_BASE));
}

/// Two CPUs drive two VMs' sharing at once, each VM acting on the other
/// (offer, accept, alias, relinquish, revoke, unmap, remap, collapse): the
/// lock order holds (no deadlock within the time limit), and once both are
/// done and everything is let go, every frame is back.
#[test]
fn two_cpus_sharing_both_ways_neither_deadlock_nor_leak() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 2, 1, 32 * MB, Coherency::Nc);
    let work = move |cpu: usize, me: V, other: V| {
        m.as_cpu(cpu, || {
            let mut rng = Rng(0x1234_5678 + cpu as u64);
            for _ in 0..3000 {
                let page = |rng: &mut Rng| A + (rng.next() % 64) * 0x1000;
                match rng.next() % 9 {
                    0 | 1 => {
                        let _ = me.offer(page(&mut rng), other);
                    }
                    2 | 3 => {
                        if let Some((h, _, false)) = me.offered((rng.next() % 4) as usize) {
                            let _ = me.accept(h, page(&mut rng));
                        }
                    }
                    4 => {
                        let _ = me.alias(page(&mut rng), page(&mut rng));
                    }
                    5 => {
                        if let Some((h, _, true)) = me.offered((rng.next() % 4) as usize) {
                            let _ = me.relinquish(h);
                        }
                    }
                    6 => {
                        // Revoke one of its own offers, whatever its number.
                        let h = me.sharing.lock().offers.to_vm(other.id).next().map(|o| o.handle);
                        if let Some(h) = h {
                            let _ = me.revoke(h);
                        }
                    }
                    7 => {
                        let _ = me.unmap(page(&mut rng), 0x1000);
                    }
                    _ => {
                        let _ = me.remap(page(&mut rng), rng.next());
                    }
                }
            }
        })
    };
    let (one, two) = (vms[0], vms[1]);
    let a = std::thread::spawn(move || work(1, one, two));
    let b = std::thread::spawn(move || work(2, two, one));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let ok = a.join().is_ok() && b.join().is_ok();
        let _ = tx.send(ok);
    });
    let ok =
        rx.recv_timeout(Duration::from_secs(60)).expect("deadlock: the workers never finished");
    assert!(ok, "a worker panicked");
    all_frames_come_back(m, guests, &[one, two]);
}

/// Two CPUs run the run loop's rule (a vCPU of a VM that is not running
/// stops; else it runs) while the VM resets itself again and again: vCPU 0
/// after a reset must only be seen once the VM runs again, or a CPU would
/// stop it mid-reset (and reset it a second time, or power off). Every
/// reset must restart the VM, and the loop end only when it powers off.
#[test]
fn resets_survive_cpus_racing_for_the_run_queue() {
    use core::sync::atomic::AtomicU64;
    const RESETS: u64 = 300;
    let m = machine();
    let (guests, vms) = boot_vms(m, 1, 1, 4 * MB, Coherency::Nc);
    let vm = vms[0];
    let turns: &'static AtomicU64 =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(AtomicU64::new(0)));
    let cpu = move |n: usize| {
        m.as_cpu(n, || {
            while !guests.all_stopped() {
                let Some(v) = guests.next_runnable() else {
                    core::hint::spin_loop();
                    continue;
                };
                let regs = v.regs.lock();
                if !v.vm.is_running() {
                    drop(regs);
                    v.stop();
                    continue;
                }
                drop(regs);
                // The guest's turn: a reset, until the last, then off.
                if turns.fetch_add(1, Ordering::SeqCst) < RESETS {
                    v.vm.request_reset();
                } else {
                    v.vm.power_off();
                }
                v.stop();
            }
        })
    };
    let (a, b) = (std::thread::spawn(move || cpu(1)), std::thread::spawn(move || cpu(2)));
    let joined = within_5s("the run loops", move || a.join().is_ok() && b.join().is_ok());
    assert!(joined, "a run loop panicked");
    assert_eq!(vm.power(), VmPower::Off);
    assert_eq!(vm.resets(), RESETS, "every reset restarted the VM once");
    assert_eq!(turns.load(Ordering::SeqCst), RESETS + 1, "vCPU 0 ran once after each reset");
}

// ---- scheduling: blocking in WFI and waking --------------------------------

/// A vCPU that blocks with nothing pending stays off the run queue until
/// an SGI is made pending for it; then exactly one requeue happens.
#[test]
fn blocked_vcpu_wakes_on_sgi_only() {
    let m = HostMachine::new(16 << 20, 64);
    let (guests, vms) = boot_vms(m, 1, 2, 4 << 20, Coherency::Nc);
    let vm = vms[0];
    let v0 = guests.next_runnable().expect("vCPU 0 queued");
    v0.running_on(0);
    // The guest enables SGI 3 and turns the distributor's group 0 on.
    {
        let mut g = vm.vgic.lock();
        g.mmio_write(0, crate::vgic::mmio::GICD_BASE, 4, 1);
        let sgi_base = crate::vgic::mmio::GICR_BASE + 0x1_0000;
        g.mmio_write(0, sgi_base + 0x100, 4, 1 << 3);
    }
    v0.block(u64::MAX);
    assert!(v0.is_blocked());
    assert!(guests.next_runnable().is_none(), "nothing pending: it sleeps");
    // A disabled SGI does not wake it.
    let k = vm.vgic.lock().send_sgi(1, 1, 4);
    assert_eq!(k, crate::vgic::Kick::NONE);
    // An enabled one does, once.
    let k = vm.vgic.lock().send_sgi(1, 1, 3);
    for v in k.iter() {
        vm.vcpus()[v].wake();
        vm.vcpus()[v].wake();
    }
    assert!(!v0.is_blocked());
    assert!(core::ptr::eq(guests.next_runnable().expect("woken"), v0));
    assert!(guests.next_runnable().is_none(), "queued once");
}

/// Blocking with an interrupt already pending, or a deadline already
/// past, does not sleep; a running vCPU is kicked on its CPU instead.
#[test]
fn block_with_pending_or_due_is_a_no_op_and_running_ones_are_kicked() {
    let m = HostMachine::new(16 << 20, 64);
    let (guests, vms) = boot_vms(m, 1, 1, 4 << 20, Coherency::Nc);
    let vm = vms[0];
    let v0 = guests.next_runnable().expect("vCPU 0 queued");
    v0.running_on(0);
    v0.block(0);
    assert!(!v0.is_blocked(), "deadline already past");
    assert!(core::ptr::eq(guests.next_runnable().unwrap(), v0));
    v0.running_on(0);
    {
        let mut g = vm.vgic.lock();
        g.mmio_write(0, crate::vgic::mmio::GICD_BASE, 4, 1);
        g.mmio_write(0, crate::vgic::mmio::GICR_BASE + 0x1_0100, 4, 1 << 27);
        g.set_level(0, crate::vgic::VTIMER_PPI, true);
    }
    v0.block(u64::MAX);
    assert!(!v0.is_blocked(), "timer interrupt pending");
    assert!(core::ptr::eq(guests.next_runnable().unwrap(), v0));
    // Running on CPU 3 (this thread is CPU 0): a wake kicks CPU 3.
    v0.running_on(3);
    v0.wake();
    assert_eq!(*m.kicks.lock().unwrap(), [3]);
    // Expired deadlines are found by `wake_expired`.
    vm.vgic.lock().set_level(0, crate::vgic::VTIMER_PPI, false);
    v0.block(500);
    assert!(v0.is_blocked());
    assert_eq!(guests.wake_expired(499), 500);
    assert!(v0.is_blocked());
    assert_eq!(guests.wake_expired(500), u64::MAX);
    assert!(!v0.is_blocked());
}

/// An idle CPU is kicked when a vCPU is queued, once per idle period,
/// and one that finds a vCPU queued does not sleep; the CPU that queues
/// never kicks itself.
#[test]
fn queueing_a_vcpu_kicks_one_idle_cpu() {
    let m = HostMachine::new(16 << 20, 64);
    // Two VMs: their boot vCPUs are queued.
    let (guests, _) = boot_vms(m, 2, 1, 4 << 20, Coherency::Nc);
    assert!(!guests.idle_enter(2), "vCPUs are queued: CPU 2 must not sleep");
    let v0 = guests.next_runnable().expect("vm1's vCPU queued");
    let v1 = guests.next_runnable().expect("vm2's vCPU queued");
    v0.running_on(0);
    v1.running_on(0);
    // CPUs 0 (this thread), 2 and 5 idle.
    for cpu in [0, 2, 5] {
        assert!(guests.idle_enter(cpu), "nothing queued: CPU {cpu} may sleep");
    }
    guests.requeue(v0);
    assert_eq!(*m.kicks.lock().unwrap(), [2], "the first idle CPU but this one");
    guests.requeue(v1);
    assert_eq!(*m.kicks.lock().unwrap(), [2, 5], "the next vCPU wakes another CPU");
    let v = guests.next_runnable().unwrap();
    guests.requeue(v);
    assert_eq!(m.kicks.lock().unwrap().len(), 2, "no idle CPU left to kick");
    // The CPU that ran a vCPU last is preferred when it is idle.
    while let Some(v) = guests.next_runnable() {
        v.running_on(0);
    }
    assert!(guests.idle_enter(2) && guests.idle_enter(5));
    v0.running_on(5);
    guests.requeue(v0);
    assert_eq!(m.kicks.lock().unwrap()[2..], [5], "vm1's vCPU ran on CPU 5 last");
    guests.idle_exit(0);
    guests.idle_exit(2);
    guests.idle_exit(5);
}

/// Powering a VM off wakes its blocked vCPUs, so they can stop.
#[test]
fn power_off_wakes_blocked_vcpus() {
    let m = HostMachine::new(16 << 20, 64);
    let (guests, vms) = boot_vms(m, 1, 1, 4 << 20, Coherency::Nc);
    let v0 = guests.next_runnable().expect("queued");
    v0.running_on(0);
    v0.block(u64::MAX);
    assert!(guests.next_runnable().is_none());
    vms[0].power_off();
    assert!(guests.next_runnable().is_some(), "woken to stop");
}

/// A VM powered off has stopped only once its last vCPU has (the
/// hypervisor prints the counters and powers the machine off then, so a
/// vCPU still finishing an exit elsewhere must be done with it).
#[test]
fn a_vm_powered_off_stops_with_its_last_vcpu() {
    let m = HostMachine::new(16 << 20, 64);
    let (guests, vms) = boot_vms(m, 1, 1, 4 << 20, Coherency::Nc);
    let v0 = guests.next_runnable().expect("queued");
    v0.running_on(0);
    vms[0].power_off();
    assert!(!vms[0].has_stopped(), "vCPU 0 is still on its CPU");
    assert!(!guests.all_stopped());
    v0.stop();
    assert!(vms[0].has_stopped());
    assert!(guests.all_stopped());
}

// ---- the emulated PL011 and the console --------------------------------------

use crate::vuart::reg as uart_reg;

/// Writes `s` to the VM's UARTDR as the guest runtime does: a UARTFR read
/// before each byte.
fn guest_prints(vm: V, s: &str) {
    for b in s.bytes() {
        vm.uart_read(0, uart_reg::FR, 4);
        vm.uart_write(0, uart_reg::DR, 4, u64::from(b));
    }
}

/// A guest's lines are printed whole and prefixed; a prompt without a
/// newline shows once the guest polls UARTFR or reads UARTDR, and the
/// line goes on after it.
#[test]
fn a_prompt_shows_when_the_guest_waits_for_input() {
    let m = machine();
    let (_, vms) = boot_vms(m, 1, 1, 4 * MB, Coherency::Nc);
    let vm = vms[0];
    m.take_output();
    guest_prints(vm, "hello\r\n");
    assert_eq!(m.take_output(), "[vm1] hello\n");
    guest_prints(vm, "echo> ");
    assert_eq!(m.take_output(), "", "transmitting alone prints nothing before the newline");
    // Polling: a second UARTFR read with nothing written between.
    vm.uart_read(0, uart_reg::FR, 4);
    vm.uart_read(0, uart_reg::FR, 4);
    assert_eq!(m.take_output(), "[vm1] echo> ");
    guest_prints(vm, "h");
    vm.uart_read(0, uart_reg::DR, 1);
    assert_eq!(m.take_output(), "h", "the same line goes on");
    guest_prints(vm, "i\n");
    assert_eq!(m.take_output(), "i\n");
    guest_prints(vm, "waiting");
    vm.vcpu_waits(0);
    vm.vcpu_waits(0);
    m.print(format_args!("hyp\n"));
    guest_prints(vm, "!\n");
    assert_eq!(m.take_output(), "[vm1] waiting\nhyp\n[vm1] !\n");
}

/// A guest that never sends a newline is printed in pieces of 1024 bytes,
/// none lost.
#[test]
fn a_very_long_line_is_printed_in_pieces() {
    let m = machine();
    let (_, vms) = boot_vms(m, 1, 1, 4 * MB, Coherency::Nc);
    m.take_output();
    for _ in 0..2500 {
        vms[0].uart_write(0, uart_reg::DR, 1, u64::from(b'x'));
    }
    let out = m.take_output();
    assert_eq!(out, alloc::format!("[vm1] {}", "x".repeat(2048)));
    vms[0].console_flush();
    assert_eq!(m.take_output(), "x".repeat(452));
}

/// Console input goes to vm1, then to vm2 after Ctrl-A 2 (with a note);
/// Ctrl-A Ctrl-A is a Ctrl-A for the VM; each VM's guest reads its own
/// bytes from UARTDR.
#[test]
fn console_input_goes_to_the_vm_that_owns_it() {
    let m = machine();
    let (guests, vms) = boot_vms(m, 2, 1, 4 * MB, Coherency::Nc);
    let (one, two) = (vms[0], vms[1]);
    m.take_output();
    let feed = |bytes: &[u8]| {
        let mut it = bytes.iter().copied();
        guests.poll_input(|| it.next());
    };
    assert_eq!(guests.input_owner(), 1);
    feed(b"ab");
    feed(b"\x012c\x01\x01\x011d");
    assert_eq!(guests.input_owner(), 1);
    assert_eq!(m.take_output(), "[input: vm2]\n[input: vm1]\n");
    let drain = |vm: V| -> Vec<u8> {
        let mut got = Vec::new();
        while vm.uart_read(0, uart_reg::FR, 4) & 0x10 == 0 {
            got.push(vm.uart_read(0, uart_reg::DR, 4) as u8);
        }
        got
    };
    assert_eq!(drain(one), b"abd");
    assert_eq!(drain(two), b"c\x01");
    // No vm3: input stays.
    feed(b"\x013e");
    assert_eq!(m.take_output(), "[input: no vm3, still vm1]\n");
    assert_eq!(drain(one), b"e");
    // One call moves at most INPUT_BATCH bytes; the rest waits.
    let mut left = 100;
    guests.poll_input(|| {
        left -= 1;
        Some(b'z')
    });
    assert_eq!((one.uart_read(0, uart_reg::FR, 4) & 0x40, left), (0x40, 100 - INPUT_BATCH));
}

/// Input for a VM whose receive FIFO is full waits behind it, up to
/// [`INPUT_HOLD`] bytes, and reaches the guest in order as it reads (a
/// pasted line is not cut to the FIFO's 32 bytes); past that it is lost
/// there (an overrun), and it never stops input from reaching another VM.
#[test]
fn a_full_vm_does_not_hold_up_the_console() {
    use crate::vm::INPUT_HOLD;
    let m = machine();
    let (guests, vms) = boot_vms(m, 2, 1, 4 * MB, Coherency::Nc);
    // 40 bytes: 32 in the FIFO, 8 held; all arrive, in order.
    let line: Vec<u8> = (0..40u8).map(|i| b'0' + i % 10).collect();
    let mut it = line.iter().copied();
    guests.poll_input(|| it.next());
    let got: Vec<u8> = (0..40).map(|_| vms[0].uart_read(0, uart_reg::DR, 4) as u8).collect();
    assert_eq!(got, line);
    assert_eq!(vms[0].uart_read(0, uart_reg::RSR_ECR, 4), 0, "no overrun");
    // Far more than the FIFO and the hold: lost past them, and vm2 still
    // gets its input.
    let flood = 32 + INPUT_HOLD + 8;
    let mut input = core::iter::repeat_n(b'q', flood).chain(*b"\x012ok").peekable();
    while input.peek().is_some() {
        guests.poll_input(|| input.next());
    }
    assert_eq!(vms[0].uart_read(0, uart_reg::RSR_ECR, 4), 1 << 3, "OE");
    assert_eq!(vms[0].uart_read(0, uart_reg::RIS, 4) & (1 << 10), 1 << 10, "OERIS");
    assert_eq!(vms[1].uart_read(0, uart_reg::DR, 4), u32::from(b'o'));
    assert_eq!(vms[1].uart_read(0, uart_reg::DR, 4), u32::from(b'k'));
}

/// The interrupt output follows UARTMIS through input, reads, IMSC and
/// ICR, and a reset of the VM resets the PL011.
#[test]
fn the_uart_interrupt_output_follows_mis_and_resets_with_the_vm() {
    const RX: u64 = 1 << 4;
    const TX: u64 = 1 << 5;
    const RT: u64 = 1 << 6;
    let m = machine();
    let (guests, vms) = boot_vms(m, 1, 1, 4 * MB, Coherency::Nc);
    let vm = vms[0];
    assert!(!vm.uart_irq_level());
    assert!(vm.uart_input(b'x'));
    assert!(!vm.uart_irq_level(), "masked");
    vm.uart_write(0, uart_reg::IMSC, 4, RX);
    assert!(vm.uart_irq_level(), "unmasking raises it");
    vm.uart_read(0, uart_reg::DR, 4);
    assert!(!vm.uart_irq_level(), "reading the byte lowers it");
    vm.uart_write(0, uart_reg::IMSC, 4, RX | TX);
    vm.uart_write(0, uart_reg::DR, 4, u64::from(b'\n'));
    assert!(vm.uart_irq_level(), "the transmitter drained");
    vm.uart_write(0, uart_reg::ICR, 4, TX);
    assert!(!vm.uart_irq_level());
    // FIFOs on: one byte is below the level, a receive timeout.
    vm.uart_write(0, uart_reg::LCR_H, 4, 0x70);
    vm.uart_input(b'y');
    assert!(!vm.uart_irq_level(), "RT masked");
    vm.uart_write(0, uart_reg::IMSC, 4, RX | TX | RT);
    assert!(vm.uart_irq_level());
    // SYSTEM_RESET: the PL011 is as out of reset, its line low.
    let v0 = guests.next_runnable().unwrap();
    vm.request_reset();
    v0.stop();
    assert_eq!(vm.resets(), 1);
    assert!(!vm.uart_irq_level());
    assert_eq!(vm.uart_read(0, uart_reg::LCR_H, 4), 0);
    assert_eq!(vm.uart_read(0, uart_reg::IMSC, 4), 0);
    assert_eq!(vm.uart_read(0, uart_reg::FR, 4), 0x90, "FIFO empty");
}

/// Two VMs' unfinished lines never share a console line.
#[test]
fn two_vms_prompts_each_get_their_own_line() {
    let m = machine();
    let (_, vms) = boot_vms(m, 2, 1, 4 * MB, Coherency::Nc);
    m.take_output();
    for vm in vms {
        guest_prints(vm, "echo> ");
        vm.uart_read(0, uart_reg::DR, 4);
    }
    guest_prints(vms[0], "one\n");
    guest_prints(vms[1], "two\n");
    assert_eq!(m.take_output(), "[vm1] echo> \n[vm2] echo> \n[vm1] one\n[vm2] two\n");
}

/// Only the vCPU that wrote the unfinished line makes it print by waiting:
/// another vCPU waiting (for the guest's console lock, say) or polling
/// does not cut a line being printed.
#[test]
fn another_vcpu_waiting_does_not_cut_a_line() {
    let m = machine();
    let (_, vms) = boot_vms(m, 1, 2, 4 * MB, Coherency::Nc);
    let vm = vms[0];
    m.take_output();
    vm.uart_write(0, uart_reg::DR, 4, u64::from(b'a'));
    vm.vcpu_waits(1);
    for _ in 0..3 {
        vm.uart_read(1, uart_reg::FR, 4);
    }
    vm.uart_read(1, uart_reg::DR, 4);
    assert_eq!(m.take_output(), "");
    // vCPU 0 reads UARTFR once (before its next byte): not yet.
    vm.uart_read(0, uart_reg::FR, 4);
    assert_eq!(m.take_output(), "");
    vm.vcpu_waits(0);
    assert_eq!(m.take_output(), "[vm1] a");
    // vCPU 1 writes the next byte: now it is the one whose wait counts.
    vm.uart_write(1, uart_reg::DR, 4, u64::from(b'b'));
    vm.vcpu_waits(0);
    assert_eq!(m.take_output(), "");
    vm.uart_read(1, uart_reg::FR, 4);
    vm.uart_read(1, uart_reg::FR, 4);
    assert_eq!(m.take_output(), "b");
}

/// The idle loop's check for lost wake-ups: a blocked vCPU with an
/// interrupt pending is a bug only if it is still so at the next check in
/// the same sleep (once may be the moment before the blocker's own look).
#[test]
fn a_lost_wake_up_is_reported_on_the_second_sighting() {
    let m = HostMachine::new(16 << 20, 64);
    let (guests, vms) = boot_vms(m, 1, 1, 4 << 20, Coherency::Nc);
    let vm = vms[0];
    let v0 = guests.next_runnable().expect("queued");
    v0.running_on(0);
    {
        let mut g = vm.vgic.lock();
        g.mmio_write(0, crate::vgic::mmio::GICD_BASE, 4, 1);
        g.mmio_write(0, crate::vgic::mmio::GICR_BASE + 0x1_0100, 4, 1 << 3);
    }
    v0.block(u64::MAX);
    // Made pending behind the scheduler's back (no wake): a lost wake-up.
    let _ = vm.vgic.lock().send_sgi(0, 1, 3);
    assert_eq!(guests.wake_lost(), 0, "first sighting");
    assert!(v0.is_blocked());
    assert_eq!(guests.wake_lost(), 1, "second sighting, same sleep");
    assert!(!v0.is_blocked());
    assert!(m.take_output().contains("hyp: BUG: vm1 vCPU 0 blocked with an interrupt pending"));
    assert!(core::ptr::eq(guests.next_runnable().unwrap(), v0));
}
