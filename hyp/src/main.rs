//! The EL2 hypervisor: boot, platform, VMs, trap handling and the stage-2
//! fault path built on `mmu`. See `docs/HYPERVISOR.md`.
//!
//! On the bare-metal target this is the hypervisor image. On the host it
//! builds the portable parts (configuration, hypercall decoding, device
//! tree parsing and building) so that their unit tests run with
//! `cargo test`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod alias;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod exception;
pub mod fdt_writer;
pub mod hypercall;
pub mod image;
#[cfg(target_os = "none")]
mod mm;
#[cfg(target_os = "none")]
mod percpu;
pub mod platform;
pub mod psci;
#[cfg(target_os = "none")]
mod trap;
#[cfg(target_os = "none")]
mod uart;
#[cfg(target_os = "none")]
mod vm;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hyp runs at EL2 on bare metal: build it with scripts/build.sh");
}

#[cfg(target_os = "none")]
mod hyp_main {
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

    use arch::read_sysreg;
    use mmu::{Features, Geometry, Rcu};

    use crate::exception::{guest_enter, Exit};
    use crate::mm::{self, TablePool};
    use crate::percpu::{cpu_index, host_context};
    use crate::platform::{self, Config, Platform};
    use crate::psci::{self, Conduit};
    use crate::trap::{self, Action};
    use crate::vm::{self, Policy, Vcpu, VcpuStatus, Vm, IMAGE_IPA, RAM_BASE, RUNQ, VMS};
    use crate::{boot, console, image, println};

    /// The demo guest built into the image (empty without one).
    static DEMO_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo-guest.bin"));

    /// HCR_EL2 while guests run: stage 2 (VM), set/way as clean+inval
    /// (SWIO), physical interrupts to EL2 (FMO, IMO, AMO), broadcast TLB
    /// and cache maintenance Inner Shareable (FB, BSU=IS), WFI, WFE and SMC
    /// trapped (TWI, TWE: a waiting vCPU yields its CPU; TSC), EL1 is
    /// AArch64 (RW), pointer authentication
    /// keys and instructions not trapped (APK, API).
    const HCR_GUEST: u64 = (1 << 0)
        | (1 << 1)
        | (1 << 3)
        | (1 << 4)
        | (1 << 5)
        | (1 << 9)
        | (1 << 10)
        | (1 << 13)
        | (1 << 14)
        | (1 << 19)
        | (1 << 31)
        | (1 << 40)
        | (1 << 41);

    static CONDUIT: AtomicU8 = AtomicU8::new(0);
    static PL011_BASE: core::sync::atomic::AtomicU64 =
        core::sync::atomic::AtomicU64::new(0x0900_0000);
    static FINISHED: AtomicBool = AtomicBool::new(false);
    /// The hypervisor's RCU domain: CPUs by `MPIDR_EL1.Aff0`; the boot CPU
    /// is online from the start, the others from `secondary_main`.
    static RCU: Rcu = Rcu::with_cpus(cpu_index, 1);
    static VTCR: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    fn conduit() -> Conduit {
        if CONDUIT.load(Ordering::Relaxed) == 1 {
            Conduit::Hvc
        } else {
            Conduit::Smc
        }
    }

    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
        fn secondary_entry();
    }

    /// Entered at EL1: say why nothing happens (the MMU is off, so the
    /// PL011 at QEMU virt's address is reachable as device memory).
    #[unsafe(no_mangle)]
    extern "C" fn refuse_el1(_dtb: u64) {
        console::print_raw(
            0x0900_0000,
            format_args!(
                "\nhyp: entered at EL1: the hypervisor needs EL2 \
                 (QEMU: -M virt,virtualization=on). Stopping.\n"
            ),
        );
    }

    /// The primary CPU, from `boot.rs`, with the MMU and caches on.
    #[unsafe(no_mangle)]
    extern "C" fn primary_main(dtb: u64) -> ! {
        mm::init_heap();
        // SAFETY: the boot loader passes the DTB's address in x0; the boot
        // map covers RAM, and the header says how long the blob is.
        let plat = match unsafe { Platform::from_addr(dtb) } {
            Ok(p) => p,
            Err(e) => {
                console::print_raw(0x0900_0000, format_args!("hyp: bad device tree: {e}\n"));
                halt();
            }
        };
        let uart = plat.uart.map_or(0x0900_0000, |r| r.base);
        PL011_BASE.store(uart, Ordering::Relaxed);
        console::init(uart);
        if plat.psci.map(|p| p.method) == Some(platform::PsciMethod::Hvc) {
            CONDUIT.store(1, Ordering::Relaxed);
        }
        let (s, us) = console::timestamp();
        println!("\ns2hyp: stage-2 MMU hypervisor, AArch64 EL2 (boot at {s}.{us:06} s)");
        log::info!("CPU MIDR {:#x}, {} CPUs in the DTB", read_sysreg!("midr_el1"), plat.cpus.len());

        if let Err(e) = run(&plat) {
            log::error!("boot failed: {e}");
            power_off();
        }
        run_loop()
    }

    /// Sets up memory and the VMs, starts the other CPUs.
    fn run(plat: &Platform) -> Result<(), alloc::string::String> {
        use alloc::format;
        // Linker symbols: only their addresses are used.
        let img_start = core::ptr::addr_of!(__image_start) as u64;
        let img_end = core::ptr::addr_of!(__image_end) as u64;
        let image = platform::Region { base: img_start, size: img_end - img_start };
        for r in &plat.memory {
            log::info!("RAM  {:#012x}-{:#012x} ({} MiB)", r.base, r.base + r.size, r.size >> 20);
        }
        for r in plat.excluded_regions(image) {
            let (b, n) = (r.region.base, r.region.size);
            log::info!("kept {:#012x}-{:#012x} {}", b, b + n, r.name);
        }
        // Only what the EL2 map reaches: the boot map's first 4 GiB.
        const EL2_MAPPED: u64 = 4 << 30;
        let mut free = plat.free_memory(image);
        let above: u64 =
            free.iter().map(|r| (r.base + r.size).saturating_sub(r.base.max(EL2_MAPPED))).sum();
        free.retain_mut(|r| {
            r.size = r.size.min(EL2_MAPPED.saturating_sub(r.base));
            r.size > 0
        });
        if above > 0 {
            log::warn!("{} MiB of RAM above 4 GiB left unused (not in the EL2 map)", above >> 20);
        }
        // What guests and tables will get must never include the hypervisor,
        // the DTB, the initrd or reserved memory.
        let excluded = plat.excluded_regions(image);
        for r in &free {
            platform::ensure_disjoint(*r, &excluded).map_err(|e| format!("memory map: {e}"))?;
        }
        let total =
            mm::add_frames(&free.iter().map(|r| (r.base, r.base + r.size)).collect::<Vec<_>>());
        log::info!("{} MiB free for guests and stage-2 tables", total >> 20);

        let cfg =
            Config::parse(plat.bootargs.as_deref().unwrap_or("")).map_err(|e| format!("{e}"))?;
        let image: &'static [u8] = match plat.initrd {
            // SAFETY: the initrd range comes from the DTB, lies in RAM
            // (identity mapped) and is excluded from the frame allocator.
            Some(r) => unsafe { core::slice::from_raw_parts(r.base as *const u8, r.size as usize) },
            None if !DEMO_GUEST.is_empty() => DEMO_GUEST,
            None => return Err("no guest: neither an initrd nor a built-in demo guest".into()),
        };
        log::info!(
            "guest image {} KiB ({}), {} VM(s) x {} vCPU(s), {} MiB RAM each, {:?} policy, {:?} locks, premap {}, coherency {:?}",
            image.len() >> 10,
            if plat.initrd.is_some() { "initrd" } else { "built-in demo" },
            cfg.vms,
            cfg.vcpus,
            cfg.mem >> 20,
            cfg.policy,
            cfg.lock,
            cfg.premap,
            cfg.coherency
        );

        // The DTB takes the RAM below the image address; images go above.
        let guest = image::parse(image, IMAGE_IPA, IMAGE_IPA, RAM_BASE + cfg.mem)
            .map_err(|e| format!("guest image: {e}"))?;
        log::info!(
            "guest image: {}, entry {:#x}, {} segment(s)",
            if guest.elf { "ELF" } else { "raw" },
            guest.entry,
            guest.segments.len()
        );
        let pool: &'static TablePool = Box::leak(Box::new(
            TablePool::new(mm::TABLE_POOL_PAGES).ok_or("no memory for the stage-2 table pool")?,
        ));
        let parange = read_sysreg!("id_aa64mmfr0_el1") & 0xf;
        let pa_bits = [32, 36, 40, 42, 44, 48, 48][parange.min(6) as usize];
        let features = Features {
            tlbi_range: (read_sysreg!("id_aa64isar0_el1") >> 56) & 0xf >= 2,
            ..Features::default()
        };
        let geo = Geometry::aarch64(40, pa_bits, features).map_err(|e| format!("geometry: {e}"))?;
        VTCR.store(geo.vtcr(), Ordering::Relaxed);
        cpu_el2_init();

        let policy =
            if cfg.policy == platform::Policy::Blocks { Policy::Blocks } else { Policy::Pages };
        let lock = if cfg.lock == platform::LockKind::Single {
            mmu::LockMode::Single
        } else {
            mmu::LockMode::Split
        };
        vm::set_coherency(cfg.coherency);
        for id in 1..=cfg.vms {
            let spec = vm::VmSpec { id, geo, vcpus: cfg.vcpus, ram_size: cfg.mem, policy, lock };
            let vm = Vm::create(&spec, pool, &RCU).map_err(|e| format!("vm{id}: {e}"))?;
            vm.set_auto_collapse(cfg.collapse);
            if cfg.premap {
                // Before the image, so the blocks policy can use blocks.
                vm.premap().map_err(|e| format!("vm{id}: premap: {e}"))?;
            }
            let boot = vm::Boot {
                segments: guest.segments.iter().map(|s| (s.ipa, s.data, s.mem_size)).collect(),
                entry: guest.entry,
                vcpus: cfg.vcpus as u32,
                bootargs: plat.bootargs.clone().unwrap_or_default(),
            };
            log::info!("vm{id}: VMID {}, VTTBR {:#x}", id, vm.s2.vttbr());
            VMS.lock().push(vm);
            vm.boot(boot).map_err(|e| format!("vm{id}: loading the guest: {e}"))?;
        }

        // The other CPUs enter at `secondary_entry` with their index.
        let me = read_sysreg!("mpidr_el1") & 0xff_00ff_ffff;
        for (i, cpu) in plat.cpus.iter().enumerate().take(boot::MAX_CPUS) {
            if cpu.mpidr == me {
                continue;
            }
            let r = psci::call(
                conduit(),
                psci::CPU_ON_64,
                cpu.mpidr,
                secondary_entry as *const () as u64,
                i as u64,
            );
            if r != psci::SUCCESS {
                log::warn!("CPU_ON of MPIDR {:#x} failed: {r}", cpu.mpidr);
            }
        }
        Ok(())
    }

    /// EL2 state each CPU needs before it runs guests.
    fn cpu_el2_init() {
        // SAFETY: configuration of this CPU's EL2 for guests; no guest runs.
        unsafe {
            arch::write_sysreg!("vtcr_el2", VTCR.load(Ordering::Relaxed));
            arch::write_sysreg!("hcr_el2", HCR_GUEST);
            // EL1 may use the physical counter and timer.
            arch::write_sysreg!("cnthctl_el2", 0b11);
            arch::write_sysreg!("cntvoff_el2", 0);
            arch::write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
        }
        arch::aarch64::barrier::isb();
    }

    /// A secondary CPU, from `boot.rs`.
    #[unsafe(no_mangle)]
    extern "C" fn secondary_main(index: u64) -> ! {
        cpu_el2_init();
        RCU.online(cpu_index());
        log::info!("cpu{} up (index {index})", cpu_index());
        run_loop()
    }

    /// Runs vCPUs from the run queue until every VM has stopped.
    fn run_loop() -> ! {
        let mut last: Option<*const Vcpu> = None;
        loop {
            let next = RUNQ.lock().pop_front();
            match next {
                Some(vcpu) => {
                    run_vcpu(vcpu, &mut last);
                }
                None => {
                    // Idle: free what waited for a grace period, then hold
                    // no pointers (an extended quiescent state).
                    for vm in VMS.lock().iter() {
                        vm.s2.reclaim();
                    }
                    RCU.enter_extended();
                    core::hint::spin_loop();
                    RCU.exit_extended();
                    if FINISHED.load(Ordering::SeqCst) {
                        halt();
                    }
                    if all_stopped() && !FINISHED.swap(true, Ordering::SeqCst) {
                        vm::print_summary();
                        println!("all VMs stopped: powering off");
                        power_off();
                    }
                    core::hint::spin_loop();
                }
            }
        }
    }

    fn all_stopped() -> bool {
        let vms = VMS.lock();
        !vms.is_empty()
            && vms.iter().all(|vm| {
                // A VM being reset has no vCPU running but is not done.
                !vm.reset_pending.load(Ordering::SeqCst)
                    && (vm.off.load(Ordering::SeqCst) || vm.running.load(Ordering::SeqCst) == 0)
            })
    }

    /// Runs one vCPU until it yields or stops.
    fn run_vcpu(vcpu: &'static Vcpu, last: &mut Option<*const Vcpu>) {
        let vm = vcpu.vm;
        let mut st = vcpu.state.lock();
        if st.status != VcpuStatus::Runnable || vm.off.load(Ordering::SeqCst) {
            st.status = VcpuStatus::Off;
            drop(st);
            stopped(vm);
            return;
        }
        // SAFETY: switching this CPU's stage 2 and EL1 context to the vCPU;
        // no guest runs on this CPU meanwhile.
        unsafe {
            arch::write_sysreg!("vttbr_el2", vm.s2.vttbr());
            arch::write_sysreg!("vmpidr_el2", 0x8000_0000 | vcpu.index as u64);
        }
        arch::aarch64::barrier::isb();
        if *last != Some(vcpu as *const Vcpu) {
            // Another vCPU ran here: its stage-1 entries (same VMID, maybe
            // the same ASIDs) must not serve this one.
            // SAFETY: TLB invalidation only drops cached translations.
            unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
            *last = Some(vcpu as *const Vcpu);
        }
        st.el1.restore();
        let action = loop {
            // Running the guest is an extended quiescent state.
            RCU.enter_extended();
            // SAFETY: the registers and host context outlive the call; EL2
            // state for this VM is loaded above.
            let exit = Exit::from_code(unsafe { guest_enter(&mut st.regs, host_context()) });
            RCU.exit_extended();
            let a = match exit {
                Exit::Sync => trap::handle_sync(vcpu, &mut st),
                Exit::Irq | Exit::Fiq => Action::Yield,
                Exit::SError => {
                    log::error!(
                        "vm{}: SError (ESR {:#x}): VM stopped",
                        vm.id,
                        read_sysreg!("esr_el2")
                    );
                    vm.off.store(true, Ordering::SeqCst);
                    Action::Stop
                }
            };
            if a != Action::Resume || vm.off.load(Ordering::SeqCst) {
                break if vm.off.load(Ordering::SeqCst) { Action::Stop } else { a };
            }
        };
        st.el1.save();
        match action {
            Action::Yield => {
                drop(st);
                RUNQ.lock().push_back(vcpu);
            }
            _ => {
                st.status = VcpuStatus::Off;
                drop(st);
                stopped(vm);
            }
        }
    }

    /// A vCPU of `vm` stopped; the last one to stop carries out a pending
    /// reset.
    fn stopped(vm: &'static Vm) {
        let last = vm.running.fetch_sub(1, Ordering::SeqCst) == 1;
        if last && vm.reset_pending.load(Ordering::SeqCst) {
            if let Err(e) = vm.reset() {
                log::error!("vm{}: reset failed: {e}: VM stopped", vm.id);
                vm.reset_pending.store(false, Ordering::SeqCst);
            }
        }
    }

    fn power_off() -> ! {
        psci::call(conduit(), psci::SYSTEM_OFF, 0, 0, 0);
        halt()
    }

    fn halt() -> ! {
        loop {
            // SAFETY: waits for an event; no memory effects.
            unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
        }
    }

    /// An exception taken at EL2: a hypervisor bug.
    #[unsafe(no_mangle)]
    extern "C" fn el2_exception(kind: u64, frame: *const u64) -> ! {
        // SAFETY: the vector saved 31 registers at `frame`.
        let x = unsafe { core::slice::from_raw_parts(frame, 31) };
        panic!("EL2 exception (vector {kind}), x0={:#x} x1={:#x} x30={:#x}", x[0], x[1], x[30]);
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let base = PL011_BASE.load(Ordering::Relaxed);
        console::print_raw(
            base,
            format_args!(
                "\nPANIC on cpu{}: {info}\n  ESR_EL2 {:#x} FAR_EL2 {:#x} ELR_EL2 {:#x} SPSR_EL2 {:#x} HPFAR_EL2 {:#x}\n",
                cpu_index(),
                read_sysreg!("esr_el2"),
                read_sysreg!("far_el2"),
                read_sysreg!("elr_el2"),
                read_sysreg!("spsr_el2"),
                read_sysreg!("hpfar_el2"),
            ),
        );
        power_off()
    }
}
