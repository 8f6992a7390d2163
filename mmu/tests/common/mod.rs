//! Shared set-up for the integration tests: address spaces in every
//! format and lock mode, a plain reference model, and a checker that
//! translates through the independent `refwalk` walker.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;

use mmu::testing::{HostMemory, RecordingTlb};
use mmu::{
    Arch, Attrs, Exec, Features, Geometry, Ipa, LockMode, MemType, Rcu, Shareability, Stage2, Vmid,
};

pub const PAGE: u64 = 4096;
pub const MB2: u64 = 1 << 21;
pub const GB1: u64 = 1 << 30;

/// Host memory, TLB recorder and RCU domain for one test.
pub struct Env {
    pub mem: HostMemory,
    pub tlb: RecordingTlb,
    pub rcu: Rcu,
}

std::thread_local!(static CPU: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });

/// The calling thread's CPU number in an [`Env::smp`] domain.
pub fn thread_cpu() -> usize {
    CPU.with(|c| c.get())
}

impl Env {
    /// For tests whose threads take turns (one runs, the others wait for
    /// it): their RCU domain has one CPU. Threads that run at the same
    /// time need [`Env::smp`].
    pub fn new(pages: usize) -> Self {
        Self::with_tlb(pages, RecordingTlb::new())
    }
    /// An environment whose RCU domain has `cpus` CPUs, one per thread:
    /// the calling thread is CPU 0, others run through [`Env::as_cpu`].
    pub fn smp(pages: usize) -> Self {
        Self {
            mem: HostMemory::new(pages),
            tlb: RecordingTlb::new(),
            // SAFETY: each thread has its own CPU number (`CPU`, set by
            // `as_cpu`; the calling thread is CPU 0).
            rcu: unsafe { Rcu::with_cpus(thread_cpu, 1) },
        }
    }
    /// Runs `f` on this thread as CPU `cpu` (1..): online while it runs,
    /// offline after, as a hardware CPU started and stopped with PSCI.
    pub fn as_cpu<R>(&self, cpu: usize, f: impl FnOnce() -> R) -> R {
        CPU.with(|c| c.set(cpu));
        self.rcu.online(cpu);
        let r = f();
        self.rcu.offline();
        r
    }
    /// [`Env::new`] with a given TLB recorder.
    pub fn with_tlb(pages: usize, tlb: RecordingTlb) -> Self {
        // SAFETY: the threads of a test using `Env::new` take turns (see
        // there).
        Self { mem: HostMemory::new(pages), tlb, rcu: unsafe { Rcu::new() } }
    }
    pub fn stage2(&self, geo: Geometry, mode: LockMode) -> Stage2<'_, &HostMemory, &RecordingTlb> {
        Stage2::new(geo, Vmid(7), mode, &self.mem, &self.tlb, &self.rcu).expect("stage2")
    }
}

/// The regimes every format-generic test runs on.
pub fn geometries() -> Vec<(&'static str, Geometry)> {
    let f = Features::default();
    vec![
        ("a64-40bit-concat2", Geometry::aarch64(40, 48, f).unwrap()),
        ("a64-48bit-4level", Geometry::aarch64(48, 48, Features { xnx: true, ..f }).unwrap()),
        ("a64-32bit-l2-concat4", Geometry::aarch64(32, 40, Features { fwb: true, ..f }).unwrap()),
        ("v7-40bit", Geometry::armv7(40).unwrap()),
        ("v7-30bit-l2", Geometry::armv7(30).unwrap()),
    ]
}

pub const MODES: [LockMode; 2] = [LockMode::Split, LockMode::Single];

/// What the reference walker says an IPA translates to.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Seen {
    Unmapped,
    Mapped { pa: u64, attrs: Attrs },
    AccessFlagFault,
}

pub fn regime(s2: &Stage2<'_, &HostMemory, &RecordingTlb>) -> refwalk::Regime {
    let g = s2.geometry();
    match g.arch() {
        Arch::Aarch64 => {
            let f = g.features();
            refwalk::regime_aarch64(s2.vtcr(), s2.vttbr(), f.fwb, f.xnx)
                .expect("VTCR_EL2/VTTBR_EL2 decode")
        }
        Arch::Armv7 => {
            refwalk::regime_armv7(s2.vtcr() as u32, s2.vttbr()).expect("VTCR/VTTBR decode")
        }
    }
}

/// Translates `ipa` with the reference walker, reading the tables through
/// the host memory (which panics if the walk touches a freed page).
pub fn ref_translate(env: &Env, s2: &Stage2<'_, &HostMemory, &RecordingTlb>, ipa: u64) -> Seen {
    let r = regime(s2);
    match refwalk::translate(&r, &|pa| env.mem.read_phys(pa), ipa) {
        Err(refwalk::Fault::Translation { .. }) => Seen::Unmapped,
        Err(refwalk::Fault::AccessFlag { .. }) => Seen::AccessFlagFault,
        Err(f) => panic!("unexpected fault {f:?} at {ipa:#x}"),
        Ok(t) => {
            let exec = match (t.exec_el1, t.exec_el0) {
                (true, true) => Exec::All,
                (false, false) => Exec::Never,
                (true, false) => Exec::El1Only,
                (false, true) => Exec::El0Only,
            };
            let mem = match t.mem {
                refwalk::MemType::DeviceNGnRnE => MemType::DeviceNGnRnE,
                refwalk::MemType::DeviceNGnRE => MemType::DeviceNGnRE,
                refwalk::MemType::NormalForceWb => MemType::NormalWb,
                refwalk::MemType::Normal {
                    outer: refwalk::Cache::WriteBack,
                    inner: refwalk::Cache::WriteBack,
                } => MemType::NormalWb,
                refwalk::MemType::Normal {
                    outer: refwalk::Cache::NonCacheable,
                    inner: refwalk::Cache::NonCacheable,
                } => MemType::NormalNc,
                other => panic!("mmu never encodes {other:?}"),
            };
            let sh = match t.sh {
                0b11 => Shareability::Inner,
                0b10 => Shareability::Outer,
                0b00 => Shareability::Non,
                s => panic!("reserved SH {s:#b}"),
            };
            let attrs = Attrs {
                read: t.read,
                write: t.write,
                exec,
                mem,
                sh,
                af: t.af,
                contiguous: t.contiguous,
                sw: t.sw,
            };
            Seen::Mapped { pa: t.pa, attrs }
        }
    }
}

/// What the model says: attributes as the hardware will report them.
pub fn expected(geo: &Geometry, m: Option<&(u64, Attrs)>, off: u64) -> Seen {
    match m {
        None => Seen::Unmapped,
        Some((_, a)) if !a.af => Seen::AccessFlagFault,
        Some((pa, a)) => {
            let mut a = *a;
            // ARMv7 fetches only from readable memory.
            if geo.arch() == Arch::Armv7 && !a.read {
                a.exec = Exec::Never;
            }
            Seen::Mapped { pa: pa + off, attrs: a }
        }
    }
}

/// A plain model: IPA page to (PA, attributes).
pub type Model = BTreeMap<u64, (u64, Attrs)>;

/// Checks every page in `ipas` against the model, through the reference
/// walker and through `Stage2::translate`.
pub fn check_pages(
    env: &Env,
    s2: &Stage2<'_, &HostMemory, &RecordingTlb>,
    model: &Model,
    ipas: impl IntoIterator<Item = u64>,
) {
    let geo = *s2.geometry();
    for ipa in ipas {
        let want = expected(&geo, model.get(&ipa), 0);
        let got = ref_translate(env, s2, ipa + 0x10);
        let want_off = match want {
            Seen::Mapped { pa, attrs } => Seen::Mapped { pa: pa + 0x10, attrs },
            w => w,
        };
        assert_eq!(got, want_off, "reference walk of IPA {ipa:#x}");
        let own = s2.translate(Ipa(ipa));
        match model.get(&ipa) {
            None => assert_eq!(own, None, "translate({ipa:#x})"),
            Some((pa, a)) => {
                let t = own.unwrap_or_else(|| panic!("translate({ipa:#x}) is None"));
                assert_eq!((t.pa.get(), t.attrs), (*pa, *a), "translate({ipa:#x})");
            }
        }
    }
}

/// Every allocated table page of the first `pool` pages and its 512
/// entries: to show an operation changed no table memory at all.
pub fn snapshot(env: &Env, pool: usize) -> BTreeMap<u64, Vec<u64>> {
    let mut snap = BTreeMap::new();
    for i in 0..pool as u64 {
        let pa = mmu::testing::HostMemory::BASE + i * PAGE;
        if env.mem.is_allocated(mmu::PhysAddr(pa)) {
            let entries = (0..512).map(|e| env.mem.read_phys(pa + e * 8)).collect();
            snap.insert(pa, entries);
        }
    }
    snap
}
