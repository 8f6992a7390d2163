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

pub mod board;
pub mod bundle;
pub mod calls;
pub mod conmux;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod el2;
pub mod fdt_writer;
#[cfg(target_os = "none")]
mod gic;
pub mod hostirq;
pub mod hypercall;
pub mod idregs;
pub mod image;
#[cfg(target_os = "none")]
mod irq;
pub mod layout;
pub mod machine;
#[cfg(target_os = "none")]
mod mm;
pub mod platform;
pub mod psci;
pub mod ratelimit;
pub mod syndrome;
#[cfg(test)]
mod testing;
#[cfg(target_os = "none")]
mod trap;
#[cfg(target_os = "none")]
mod uart;
pub mod vgic;
pub mod vm;
pub mod vuart;

/// A vCPU's time slice when others wait for its CPU (milliseconds).
pub const SLICE_MS: u64 = 10;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hyp runs at EL2 on bare metal: build it with scripts/build.sh");
}

#[cfg(target_os = "none")]
mod hyp_main {
    use alloc::vec::Vec;

    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

    use mmu::Rcu;

    use crate::board;
    use crate::cpu::{self, cpu_index, Exit};
    use crate::el2::El2;
    use crate::fdt_writer::{GuestArch, GuestGic};
    use crate::layout::{FLASH_BANK_SIZE, FLASH_BASE};
    use crate::mm::{self, TablePool};
    use crate::platform::Board;
    use crate::platform::{self, Config, Platform};
    use crate::psci::{self, Conduit};
    use crate::trap::{self, Action, Vcpu};
    use crate::vgic;
    use crate::vm::{self, Guests, Policy, IMAGE_IPA, RAM_BASE};
    use crate::{bundle, console, gic, image, irq, println};

    /// The demo guest built into the image (empty without one).
    static DEMO_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo-guest.bin"));

    /// How the firmware is called: 0 SMC, 1 HVC, 2 not at all (no PSCI).
    static CONDUIT: AtomicU8 = AtomicU8::new(0);
    static PL011_BASE: core::sync::atomic::AtomicU64 =
        core::sync::atomic::AtomicU64::new(board::BUILT_FOR.uart);
    static FINISHED: AtomicBool = AtomicBool::new(false);
    /// When console input is next looked at (generic-timer count).
    static NEXT_INPUT_POLL: AtomicU64 = AtomicU64::new(0);
    /// How often console input is looked at: 2000 times a second (a
    /// PL011's 32-byte FIFO holds 2.7 ms of input at 115200 baud).
    const INPUT_POLLS_PER_SECOND: u64 = 2000;
    /// The longest an idle CPU sleeps: it polls the console's input and
    /// frees what waited for a grace period when it wakes.
    const IDLE_TICK_MS: u64 = 5;
    /// The hypervisor's RCU domain: CPUs by `MPIDR_EL1.Aff0`; the boot CPU
    /// is online from the start, the others from `secondary_main`.
    // SAFETY: `cpu_index` is `MPIDR` Aff0, below 8 on the machines this
    // runs on and distinct per CPU; the hypervisor runs with interrupts
    // masked and never migrates, so each CPU's number is its own.
    static RCU: Rcu = unsafe { Rcu::with_cpus(cpu_index, 1) };
    static VTCR: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    /// The VMs' reverse map (tens of KiB: not for a stack).
    static RMAP: mmu::Rmap = mmu::Rmap::with_quota(vm::RMAP_QUOTA);
    /// The VMs, set once by the boot CPU before the others start.
    /// The stage-2 table pool, the machine under the VMs and the VMs: made
    /// once at boot, alive for ever.
    static POOL: spin::Once<TablePool> = spin::Once::new();
    static MACHINE: spin::Once<El2> = spin::Once::new();
    static GUESTS: spin::Once<Guests<El2>> = spin::Once::new();

    fn conduit() -> Option<Conduit> {
        match CONDUIT.load(Ordering::Relaxed) {
            0 => Some(Conduit::Smc),
            1 => Some(Conduit::Hvc),
            _ => None,
        }
    }

    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }

    /// The primary CPU, from `boot.rs`, with the MMU and caches on.
    #[unsafe(no_mangle)]
    extern "C" fn primary_main(dtb: usize) -> ! {
        mm::init_heap();
        // SAFETY: the boot loader passes the DTB's address in x0; the boot
        // map covers RAM, and the header says how long the blob is.
        let built_for = board::BUILT_FOR;
        // SAFETY: the boot loader passes the DTB's address in x0 (r2); the
        // boot map covers RAM, and the header says how long the blob is.
        let (plat, source) = match unsafe { Platform::from_addr(dtb as u64) } {
            Ok(p) => (p, "from the DTB"),
            // A Pi image may be started without a DTB (QEMU raspi boards
            // without -dtb): its own description stands in.
            Err(e) if built_for.board != Board::QemuVirt => {
                console::print_raw(
                    built_for.uart,
                    format_args!(
                        "hyp: no usable device tree at {dtb:#x} ({e}): built-in description\n"
                    ),
                );
                (built_for.platform(), "built in: no DTB")
            }
            Err(e) => {
                console::print_raw(built_for.uart, format_args!("hyp: bad device tree: {e}\n"));
                halt();
            }
        };
        let uart = plat.uart.map_or(built_for.uart, |r| r.base);
        PL011_BASE.store(uart, Ordering::Relaxed);
        console::init(uart);
        match plat.psci.map(|p| p.method) {
            Some(platform::PsciMethod::Smc) => CONDUIT.store(0, Ordering::Relaxed),
            Some(platform::PsciMethod::Hvc) => CONDUIT.store(1, Ordering::Relaxed),
            None => CONDUIT.store(2, Ordering::Relaxed),
        }
        let (s, us) = console::timestamp();
        println!("\ns2hyp: stage-2 MMU hypervisor, {} (boot at {s}.{us:06} s)", cpu::NAME);
        let named = board::spec(plat.board());
        let board_name = named.unwrap_or(built_for).name;
        let how = if named.is_some() { source } else { "not named by the DTB: this build's board" };
        match &plat.model {
            Some(m) => log::info!("board: {board_name} ({how}), model \"{m}\""),
            None => log::info!("board: {board_name} ({how})"),
        }
        log::info!("CPU MIDR {:#x}, {} CPUs", cpu::midr(), plat.cpus.len());

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
        for r in plat.excluded_regions(image).iter().filter(|r| r.region.size > 0) {
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
        let plans = plan_vms(image, &cfg, plat)?;
        log::info!(
            "{} VM(s) from {}, {:?} policy, {:?} locks, premap {}, coherency {:?}",
            plans.len(),
            match (plat.initrd.is_some(), bundle::is_bundle(image)) {
                (true, true) => "a bundle",
                (true, false) => "an initrd image",
                _ => "the built-in demo",
            },
            cfg.policy,
            cfg.lock,
            cfg.premap,
            cfg.coherency
        );
        // Guest RAM is filled on demand from one frame pool, so the VMs may
        // promise more than there is; say so, since a guest that then
        // touches all of its RAM gets an abort rather than memory.
        let promised: u64 = plans.iter().map(|p| p.mem).sum();
        if promised > total {
            log::warn!(
                "overcommitted: {} MiB of guest RAM for {} VM(s), {} MiB free",
                promised >> 20,
                plans.len(),
                total >> 20
            );
        }

        let pool =
            TablePool::new(mm::TABLE_POOL_PAGES).ok_or("no memory for the stage-2 table pool")?;
        let pool: &'static TablePool = POOL.call_once(|| pool);
        let geo = cpu::stage2_geometry().map_err(|e| format!("geometry: {e}"))?;
        VTCR.store(geo.vtcr(), Ordering::Relaxed);
        cpu::el2_init(geo.vtcr());
        match &plat.gic {
            Some(g) => {
                gic::init(g, plat.cpus.len()).map_err(|e| format!("GIC: {e}"))?;
                let v = gic::version().ok_or("GIC: not set up")?;
                if v == vgic::Version::V2 && gic::v2_virt().is_none() {
                    return Err(
                        "GICv2 without the virtualization extensions (no GICH, GICV)".into()
                    );
                }
                log::info!("host GIC: {v:?}");
            }
            // The Raspberry Pi 2 and 3: their interrupt controllers are
            // not GICs.
            None => log::warn!(
                "no GIC: guests get no interrupt controller, no timer interrupts, no time slices"
            ),
        }

        let policy =
            if cfg.policy == platform::Policy::Blocks { Policy::Blocks } else { Policy::Pages };
        let lock = if cfg.lock == platform::LockKind::Single {
            mmu::LockMode::Single
        } else {
            mmu::LockMode::Split
        };
        let machine: &'static El2 = MACHINE.call_once(|| El2::new(pool, &RCU));
        let guests: &'static Guests<El2> =
            GUESTS.call_once(|| Guests::new(machine, cfg.coherency, &RMAP));
        // The guests' GIC is the host's version (GICv2 for ARM32 guests):
        // what their DTB describes and what the virtual GIC emulates.
        let guest_gic =
            |vcpus: usize| GuestGic::for_host(plat.gic.as_ref(), GuestArch::native(), vcpus as u32);
        let vgic_version = match guest_gic(1) {
            GuestGic::V3 { .. } => Some(vgic::Version::V3),
            GuestGic::V2 => Some(vgic::Version::V2),
            GuestGic::None => None,
        };
        if let Some(v) = vgic_version {
            log::info!("guests get a virtual {v:?}");
        }
        let specs: Vec<vm::VmSpec> = plans
            .iter()
            .enumerate()
            .map(|(i, plan)| vm::VmSpec {
                id: i + 1,
                geo,
                vcpus: plan.vcpus,
                ram_size: plan.mem,
                policy,
                lock,
                gic: vgic_version,
                gicv: gic::v2_virt().map(|v| v.gicv),
                flash: plan.image.kind == image::ImageKind::Firmware,
            })
            .collect();
        let vms = guests.create(&specs).map_err(|e| format!("creating the VMs: {e}"))?;
        for (vm, plan) in vms.iter().zip(plans) {
            let id = vm.id;
            vm.set_auto_collapse(cfg.collapse);
            if cfg.premap {
                // Before the image, so the blocks policy can use blocks.
                vm.premap().map_err(|e| format!("vm{id}: premap: {e}"))?;
            }
            if let Some(k) = &plan.payload {
                log::info!(
                    "vm{id}: {:?} kernel loaded at {:#x} for the firmware to boot",
                    k.kind,
                    k.entry
                );
            }
            log::info!(
                "vm{id}: {:?} image, entry {:#x}, {} vCPU(s), {} MiB, initrd {} KiB, VMID {}, VTTBR {:#x}",
                plan.image.kind,
                plan.image.entry,
                plan.vcpus,
                plan.mem >> 20,
                plan.initrd.map_or(0, <[u8]>::len) >> 10,
                id,
                vm.s2.vttbr()
            );
            // The firmware's kernel, if any, is loaded but not entered.
            let segments =
                plan.image.segments.iter().chain(plan.payload.iter().flat_map(|k| &k.segments));
            let boot = vm::Boot {
                segments: segments.map(|s| (s.ipa, s.data, s.mem_size)).collect(),
                entry: plan.image.entry,
                vcpus: plan.vcpus as u32,
                bootargs: plan.cmdline,
                exact_cmdline: plan.exact_cmdline,
                initrd: plan.initrd,
                gic: guest_gic(plan.vcpus),
            };
            vm.boot(boot).map_err(|e| format!("vm{id}: loading the guest: {e}"))?;
        }

        start_secondaries(plat);
        Ok(())
    }

    /// What one VM runs.
    struct VmPlan {
        vcpus: usize,
        mem: u64,
        /// What the VM starts in: its kernel, or its firmware.
        image: image::GuestImage<'static>,
        /// A firmware VM's kernel: loaded in RAM, for the firmware to boot.
        payload: Option<image::GuestImage<'static>>,
        initrd: Option<&'static [u8]>,
        cmdline: alloc::string::String,
        /// The command line is the bundle's, passed as it is.
        exact_cmdline: bool,
    }

    /// The VMs to run: those of a bundle (`crate::bundle`), or `cfg.vms`
    /// VMs of the one image, with the hypervisor's bootargs.
    fn plan_vms(
        image: &'static [u8],
        cfg: &Config,
        plat: &Platform,
    ) -> Result<Vec<VmPlan>, alloc::string::String> {
        use alloc::format;
        // The DTB takes the RAM below the image address; images go above.
        let parse = |bytes: &'static [u8], mem: u64| {
            image::parse(bytes, IMAGE_IPA, IMAGE_IPA, RAM_BASE + mem)
                .map_err(|e| format!("guest image: {e}"))
        };
        if !bundle::is_bundle(image) {
            let img = parse(image, cfg.mem)?;
            let cmdline = plat.bootargs.clone().unwrap_or_default();
            return Ok((0..cfg.vms)
                .map(|_| VmPlan {
                    vcpus: cfg.vcpus,
                    mem: cfg.mem,
                    image: img.clone(),
                    payload: None,
                    initrd: None,
                    cmdline: cmdline.clone(),
                    exact_cmdline: false,
                })
                .collect());
        }
        let vms = bundle::parse(image).map_err(|e| format!("{e}"))?;
        if vms.is_empty() {
            return Err("bundle: no VM in it".into());
        }
        vms.into_iter()
            .enumerate()
            .map(|(i, b)| {
                let mem = b.mem.unwrap_or(cfg.mem);
                let vm_err = |e| format!("vm{}: {e}", i + 1);
                let kernel = match b.kernel {
                    [] => None,
                    k => Some(parse(k, mem).map_err(vm_err)?),
                };
                let (image, payload) = match b.firmware {
                    Some(fw) => {
                        let fw = image::parse_firmware(fw, FLASH_BASE, FLASH_BANK_SIZE)
                            .map_err(|e| vm_err(format!("firmware: {e}")))?;
                        (fw, kernel)
                    }
                    // The bundle's parser saw to it: no firmware, a kernel.
                    None => (kernel.ok_or_else(|| vm_err("no kernel".into()))?, None),
                };
                Ok(VmPlan {
                    vcpus: b.vcpus.unwrap_or(cfg.vcpus),
                    mem,
                    image,
                    payload,
                    initrd: b.initrd,
                    cmdline: b.cmdline,
                    exact_cmdline: true,
                })
            })
            .collect()
    }

    /// Starts the other CPUs: PSCI `CPU_ON` to `secondary_entry` with the
    /// CPU's index, or a release through the firmware's spin table (the
    /// Pi 2's mailboxes) to `secondary_entry_spin`, which finds its index
    /// in MPIDR.
    fn start_secondaries(plat: &Platform) {
        let me = cpu::mpidr();
        for (i, c) in plat.cpus.iter().enumerate().take(cpu::MAX_CPUS) {
            if c.mpidr == me {
                continue;
            }
            let release = c.enable_method.as_ref().and_then(|m| board::release_address(m, c.mpidr));
            match (release, &c.enable_method, conduit()) {
                (Some(addr), _, _) => cpu::release_from_spin_table(addr),
                (None, Some(platform::EnableMethod::Psci) | None, Some(conduit)) => {
                    let entry = cpu::secondary_entry();
                    let r = cpu::firmware_call(conduit, cpu::PSCI_CPU_ON, c.mpidr, entry, i as u64);
                    if r != psci::SUCCESS {
                        log::warn!("CPU_ON of MPIDR {:#x} failed: {r}", c.mpidr);
                    }
                }
                (None, method, _) => {
                    log::warn!(
                        "CPU MPIDR {:#x} left off: no way to start it ({method:?})",
                        c.mpidr
                    );
                }
            }
        }
    }

    /// A secondary CPU, from `boot.rs`.
    #[unsafe(no_mangle)]
    extern "C" fn secondary_main(index: usize) -> ! {
        cpu::el2_init(VTCR.load(Ordering::Relaxed));
        gic::init_cpu();
        RCU.online(cpu_index());
        log::info!("cpu{} up (index {index})", cpu_index());
        run_loop()
    }

    /// Runs vCPUs from the run queue until every VM has stopped.
    fn run_loop() -> ! {
        let Some(guests) = GUESTS.get() else {
            // The boot failed before any VM existed.
            halt()
        };
        let mut last: Option<*const Vcpu> = None;
        let mut last_check = 0u64;
        loop {
            match guests.next_runnable() {
                Some(vcpu) => run_vcpu(vcpu, &mut last),
                None => {
                    // Idle: wake whoever's timer is due, free what waited
                    // for a grace period, then hold no pointers (an
                    // extended quiescent state).
                    let (now, freq) = cpu::counter();
                    guests.wake_expired(now);
                    if now.wrapping_sub(last_check) > freq {
                        last_check = now;
                        guests.wake_lost();
                    }
                    poll_input(guests);
                    guests.reclaim();
                    if FINISHED.load(Ordering::SeqCst) {
                        halt();
                    }
                    if guests.all_stopped() && !FINISHED.swap(true, Ordering::SeqCst) {
                        guests.print_summary();
                        println!("all VMs stopped: powering off");
                        power_off();
                    }
                    idle(guests, now, freq);
                }
            }
        }
    }

    /// Nothing to run: waits for an interrupt (a vCPU queued, a sleeper's
    /// deadline) in an extended quiescent state, waking at least every
    /// [`IDLE_TICK_MS`] for the console's input and grace periods. Spins
    /// without a GIC, where nothing would end the wait.
    fn idle(guests: &Guests<El2>, now: u64, freq: u64) {
        let me = cpu_index();
        RCU.enter_extended();
        if !cpu::GicCpu::present() {
            core::hint::spin_loop();
        } else if guests.idle_enter(me) {
            let tick = now + freq / 1000 * IDLE_TICK_MS;
            irq::idle_wait(guests.earliest_deadline().min(tick));
            guests.idle_exit(me);
        }
        RCU.exit_extended();
    }

    /// Runs one vCPU until it yields, waits or stops. Its registers are
    /// held throughout (see the lock order in `vm`); they are let go
    /// before it is queued again, blocked or marked off.
    fn run_vcpu(vcpu: &'static Vcpu, last: &mut Option<*const Vcpu>) {
        let vm = vcpu.vm;
        vcpu.running_on(cpu_index());
        let mut st = vcpu.regs.lock();
        if !vm.is_running() {
            drop(st);
            vcpu.stop();
            return;
        }
        let other_ran = *last != Some(vcpu as *const Vcpu);
        cpu::load_vcpu(vm.s2.vttbr(), vcpu.index, other_ran);
        *last = Some(vcpu as *const Vcpu);
        cpu::set_cntvoff(vm.cntvoff);
        st.sys.restore();
        st.gic.load();
        let (now, freq) = cpu::counter();
        let mut slice_end = now + freq / 1000 * crate::SLICE_MS;
        // EL2 instructions so far: each exit's round trip (the exception
        // entry, its handling, the ERET back) is what the counter advanced
        // by from one guest entry to the next.
        let mut mark = cpu::el2_instructions();
        let action = loop {
            irq::enter(vcpu, &mut st, slice_end);
            // Running the guest is an extended quiescent state.
            RCU.enter_extended();
            let exit = cpu::run_guest(&mut st.regs);
            RCU.exit_extended();
            irq::exit(vcpu, &mut st);
            let mut a = match exit {
                Exit::Sync => trap::handle_sync(vcpu, &mut st),
                Exit::Irq | Exit::Fiq => {
                    vm::VmStats::bump(&vm.stats.irq_exits);
                    irq::handle(vcpu, &mut slice_end)
                }
                Exit::SError => {
                    vm.warn(format_args!("SError (syndrome {:#x}): VM stopped", cpu::syndrome().0));
                    vm.power_off();
                    Action::Stop
                }
            };
            if a == Action::Wait && irq::has_pending(vcpu) {
                // WFI with an interrupt to take: a no-op.
                a = Action::Resume;
            }
            poll_input(vm.guests);
            if let (Some(before), Some(now)) = (mark, cpu::el2_instructions()) {
                let spent = u64::from(now.wrapping_sub(before));
                vm.stats.el2_instructions.fetch_add(spent, Ordering::Relaxed);
                mark = Some(now);
            }
            if a != Action::Resume || !vm.is_running() {
                break a;
            }
        };
        let wake_at = irq::put(vcpu, &mut st);
        drop(st);
        match action {
            _ if !vm.is_running() => vcpu.stop(),
            Action::Yield | Action::Resume => vm.guests.requeue(vcpu),
            Action::Wait => {
                vm::VmStats::bump(&vm.stats.sleeps);
                vcpu.block(wake_at)
            }
            Action::Stop => vcpu.stop(),
        }
    }

    /// Moves what was typed on the console to the VMs
    /// (`Guests::poll_input`: the owner's PL011, or the escape), from the
    /// run loop after each guest exit and when idle, at most
    /// [`INPUT_POLLS_PER_SECOND`] times a second. Polled, not interrupt
    /// driven: the hypervisor runs with interrupts masked. The VM's PL011
    /// reports its interrupt output to `Vm::uart_irq_changed`.
    fn poll_input(guests: &Guests<El2>) {
        let (now, frq) = cpu::counter();
        if now < NEXT_INPUT_POLL.load(Ordering::Relaxed) {
            return;
        }
        NEXT_INPUT_POLL.store(now + frq / INPUT_POLLS_PER_SECOND, Ordering::Relaxed);
        guests.poll_input(console::try_getc);
    }

    fn power_off() -> ! {
        match conduit() {
            Some(c) => {
                cpu::firmware_call(c, psci::SYSTEM_OFF, 0, 0, 0);
            }
            None => println!("no PSCI on this machine: halted"),
        }
        halt()
    }

    fn halt() -> ! {
        loop {
            cpu::wait_for_event();
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let base = PL011_BASE.load(Ordering::Relaxed);
        console::print_raw(
            base,
            format_args!("\nPANIC on cpu{}: {info}\n  {}\n", cpu_index(), cpu::ExceptionState,),
        );
        power_off()
    }
}
