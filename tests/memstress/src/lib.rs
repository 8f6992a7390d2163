//! `memstress`: a memory workload for the Linux guests of the hypervisor
//! (issue 15), and for any Linux machine.
//!
//! `T` threads (default: the number of CPUs) share `B` bytes of memory
//! (default: 75 % of `MemAvailable` in `/proc/meminfo`). Each pass maps one
//! anonymous region per thread with `mmap`, untouched; every thread fills
//! its own region, word by word (so it touches every page), with a pattern
//! that depends on the word's address, the pass and the thread
//! ([`pattern`]); once all have filled, every region is checked as 64-bit
//! words (every byte of it) by another thread than the one that wrote it
//! (thread `t` checks the region of thread `t + 1 mod T`, so the data must
//! be right as another CPU sees it too); then the regions are unmapped
//! (`munmap`: the memory returns to the kernel, which may give its frames
//! to the next pass in another order). `P` passes (default 2).
//!
//! The program prints a line per pass and ends with
//! `memstress: ok passes=P threads=T bytes=B errors=0`, or with
//! `memstress: FAIL passes=P threads=T bytes=B errors=N` after a
//! `memstress: bad word ...` line for each of the first few bad words (its
//! address, what was expected, what was read, what a second read gave);
//! it exits with status 0, 1 (data errors, or memory it could not map) or
//! 2 (invalid usage). The whole logic is in this library, host-tested; the
//! binary (`src/main.rs`) only calls [`main_with`].
//!
//! Linux only (it calls `mmap` and `munmap` of the C library the standard
//! library links). Built as a static binary for the guests by
//! `scripts/linux.sh --memstress` (`aarch64-unknown-linux-musl`,
//! `armv7-unknown-linux-gnueabihf` with a static glibc).

use std::{
    fmt,
    io::{self, Write},
    sync::Mutex,
    thread,
    time::Instant,
};

/// The page size the regions are a multiple of.
pub const PAGE: u64 = 4096;

/// How many bad words are reported in detail (all are counted).
pub const MAX_REPORTED: usize = 8;

/// The share of `MemAvailable` used when no size is given.
pub const DEFAULT_PERCENT: u32 = 75;

/// Passes when `-p` is not given.
pub const DEFAULT_PASSES: u32 = 2;

/// The usage text (`-h`).
pub const USAGE: &str = "\
usage: memstress [-t THREADS] [-p PASSES] [-m SIZE|PERCENT%]
Fills SIZE bytes (default 75% of MemAvailable) with a pattern that depends
on address, pass and thread, from THREADS threads (default: the number of
CPUs), checks every byte (each region by another thread than its writer),
unmaps it, PASSES times (default 2). SIZE: bytes with an optional K, M or
G suffix. Ends with `memstress: ok ... errors=0` (exit 0) or
`memstress: FAIL ...` (exit 1); exit 2 on invalid usage.";

/// How much memory to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// This many bytes.
    Bytes(u64),
    /// This percentage of `MemAvailable`.
    Percent(u32),
}

/// The command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `-t`: threads; `None`: one per CPU.
    pub threads: Option<usize>,
    /// `-p`: passes.
    pub passes: u32,
    /// `-m`: the memory.
    pub size: Size,
}

impl Default for Options {
    fn default() -> Self {
        Options { threads: None, passes: DEFAULT_PASSES, size: Size::Percent(DEFAULT_PERCENT) }
    }
}

/// What the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run with these options.
    Run(Options),
    /// Print the usage.
    Help,
}

/// Parses the arguments after the program name: `-t N`, `-p N`, `-m SIZE`
/// (also written `-tN`), `-h`.
pub fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<Command, String> {
    let mut o = Options::default();
    let mut it = args.iter().map(AsRef::as_ref);
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match arg.get(..2) {
            Some(f @ ("-t" | "-p" | "-m")) => (f, &arg[2..]),
            _ => return Err(format!("unknown argument {arg:?}")),
        };
        let value = if inline.is_empty() {
            it.next().ok_or_else(|| format!("{flag} needs a value"))?
        } else {
            inline
        };
        let count = || match value.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("{flag} {value:?}: expected a number >= 1")),
        };
        match flag {
            "-t" => o.threads = Some(count()? as usize),
            "-p" => o.passes = count()?,
            _ => o.size = parse_size(value).ok_or_else(|| format!("-m {value:?}: bad size"))?,
        }
    }
    Ok(Command::Run(o))
}

/// Parses `-m`'s value: `N%` (1 to 100), or a byte count with an
/// optional `K`, `M` or `G` suffix (binary multiples, either case), at
/// least one page.
pub fn parse_size(s: &str) -> Option<Size> {
    if let Some(p) = s.strip_suffix('%') {
        return match p.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Size::Percent(n))
            }
            _ => None,
        };
    }
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.parse::<u64>().ok()?.checked_mul(1 << shift)?;
    (n >= PAGE).then_some(Size::Bytes(n))
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut words = line.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// `MemAvailable` of this machine, in bytes.
pub fn read_mem_available() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    mem_available(&text).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "no MemAvailable in /proc/meminfo")
    })
}

/// Each thread's share of `total` bytes: a whole number of pages, at least
/// one.
pub fn share(total: u64, threads: usize) -> u64 {
    (total / threads.max(1) as u64 / PAGE).max(1) * PAGE
}

/// The value the word at virtual address `addr` holds in pass `pass` of
/// thread `thread`'s region: a bijection of the address (an odd multiplier)
/// mixed with a seed of the pass and the thread, so that no two words of a
/// region hold the same value, and a word left from another pass or
/// thread, or read through a wrong mapping, does not match.
#[inline]
pub fn pattern(addr: u64, pass: u32, thread: u32) -> u64 {
    let seed = (u64::from(pass) << 32 | u64::from(thread))
        .wrapping_add(0x5bd1_e995_0000_0001)
        .wrapping_mul(0xd6e8_feb8_6659_fd93);
    addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed ^ (seed >> 29)
}

// The C library's `mmap` and `munmap` (linked by the standard library).
// `off` is a C `long` (`off_t` where it matters: 0 here anyway).
extern "C" {
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: isize) -> *mut u8;
    fn munmap(addr: *mut u8, len: usize) -> i32;
}

// The values Linux has on x86-64, AArch64 and ARM alike.
const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const MAP_PRIVATE: i32 = 0x02;
const MAP_ANONYMOUS: i32 = 0x20;

/// A private anonymous mapping of `len` bytes, unmapped on drop. Its pages
/// are not touched by mapping it: the first write to each faults it in.
pub struct Region {
    ptr: *mut u64,
    len: usize,
}

// SAFETY: a `Region` owns its mapping exclusively, as a `Box<[u64]>` owns
// its memory; it is written only through `&mut self` and read through
// `&self`, so it may move to and be shared between threads like one.
unsafe impl Send for Region {}
// SAFETY: as above: `&Region` only reads.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes (a positive multiple of [`PAGE`]).
    pub fn new(len: u64) -> io::Result<Region> {
        let len =
            usize::try_from(len)
                .ok()
                .filter(|&l| l > 0 && (l as u64).is_multiple_of(PAGE))
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad region length"))?;
        // SAFETY: a new private anonymous mapping at an address the kernel
        // chooses: no existing memory is affected.
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p as isize == -1 || p.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Region { ptr: p.cast(), len })
    }

    /// The virtual address of the first byte.
    pub fn addr(&self) -> u64 {
        self.ptr as usize as u64
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Always false (a region has at least one page); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of 64-bit words.
    pub fn words(&self) -> usize {
        self.len / 8
    }

    /// Writes `value` to word `i` (volatile: the store happens).
    pub fn write(&mut self, i: usize, value: u64) {
        assert!(i < self.words(), "word {i} outside the region");
        // SAFETY: `i` is inside the mapping, which is readable, writable,
        // aligned (page-aligned base) and exclusively ours (`&mut self`).
        unsafe { self.ptr.add(i).write_volatile(value) }
    }

    /// Reads word `i` (volatile: the load happens, every time).
    pub fn read(&self, i: usize) -> u64 {
        assert!(i < self.words(), "word {i} outside the region");
        // SAFETY: `i` is inside the mapping, readable and aligned; nobody
        // writes it while `&self` is held.
        unsafe { self.ptr.add(i).read_volatile() }
    }

    /// Fills the region with [`pattern`] of `pass` and `thread`, word by
    /// word (touching every page).
    pub fn fill(&mut self, pass: u32, thread: u32) {
        let base = self.addr();
        for i in 0..self.words() {
            self.write(i, pattern(base + 8 * i as u64, pass, thread));
        }
    }

    /// Checks every word against [`pattern`] of `pass` and `thread`:
    /// returns the number of bad words and the first [`MAX_REPORTED`] of
    /// them.
    pub fn verify(&self, pass: u32, thread: u32) -> (u64, Vec<BadWord>) {
        let base = self.addr();
        let (mut count, mut bad) = (0u64, Vec::new());
        for i in 0..self.words() {
            let addr = base + 8 * i as u64;
            let expected = pattern(addr, pass, thread);
            let actual = self.read(i);
            if actual != expected {
                count += 1;
                if bad.len() < MAX_REPORTED {
                    let reread = self.read(i);
                    bad.push(BadWord { addr, expected, actual, reread, pass, owner: thread });
                }
            }
        }
        (count, bad)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing refers to it any more.
        let r = unsafe { munmap(self.ptr.cast(), self.len) };
        assert_eq!(r, 0, "munmap: {}", io::Error::last_os_error());
    }
}

/// A word that did not hold its pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadWord {
    /// Its virtual address.
    pub addr: u64,
    /// The pattern.
    pub expected: u64,
    /// What the check read.
    pub actual: u64,
    /// What a second read right after gave (equal to `actual` unless the
    /// word changed meanwhile).
    pub reread: u64,
    /// The pass.
    pub pass: u32,
    /// The thread whose region it is.
    pub owner: u32,
}

impl fmt::Display for BadWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad word at {:#x} (pass {}, thread {}'s region): expected {:#018x}, read {:#018x} \
             (xor {:#018x}), read again {:#018x}",
            self.addr,
            self.pass,
            self.owner,
            self.expected,
            self.actual,
            self.actual ^ self.expected,
            self.reread
        )
    }
}

/// The outcome of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Passes done.
    pub passes: u32,
    /// Threads.
    pub threads: usize,
    /// Bytes used in each pass.
    pub bytes: u64,
    /// Bad words found, over all passes.
    pub errors: u64,
    /// The first [`MAX_REPORTED`] bad words.
    pub bad: Vec<BadWord>,
}

impl Summary {
    /// The final line: `memstress: ok passes=P threads=T bytes=B errors=0`
    /// or `memstress: FAIL ... errors=N`.
    pub fn line(&self) -> String {
        format!(
            "memstress: {} passes={} threads={} bytes={} errors={}",
            if self.errors == 0 { "ok" } else { "FAIL" },
            self.passes,
            self.threads,
            self.bytes,
            self.errors
        )
    }
}

/// Runs `passes` passes of `threads` threads over `bytes` bytes (split in
/// equal shares of whole pages), printing a line per pass to `out`.
/// `MemAvailable` is shown after each pass when `meminfo` gives it. Fails
/// only when a region cannot be mapped or `out` cannot be written.
pub fn run(
    passes: u32,
    threads: usize,
    bytes: u64,
    meminfo: &dyn Fn() -> Option<u64>,
    out: &mut dyn Write,
) -> io::Result<Summary> {
    let threads = threads.max(1);
    let each = share(bytes, threads);
    let mut sum = Summary { threads, bytes: each * threads as u64, ..Summary::default() };
    for pass in 1..=passes {
        let mut regions =
            (0..threads).map(|_| Region::new(each)).collect::<io::Result<Vec<_>>>()?;
        let start = Instant::now();
        thread::scope(|s| {
            for (t, r) in regions.iter_mut().enumerate() {
                s.spawn(move || r.fill(pass, t as u32));
            }
        });
        let filled = start.elapsed();
        let found = Mutex::new((0u64, Vec::new()));
        thread::scope(|s| {
            for t in 0..threads {
                // Thread t checks its neighbour's region.
                let (owner, region, found) =
                    ((t + 1) % threads, &regions[(t + 1) % threads], &found);
                s.spawn(move || {
                    let (n, bad) = region.verify(pass, owner as u32);
                    let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                    f.0 += n;
                    f.1.extend(bad);
                });
            }
        });
        let checked = start.elapsed() - filled;
        drop(regions);
        let (n, mut bad) = found.into_inner().unwrap_or_else(|e| e.into_inner());
        bad.sort_by_key(|b| b.addr);
        for b in &bad {
            if sum.bad.len() < MAX_REPORTED {
                writeln!(out, "memstress: {b}")?;
                sum.bad.push(*b);
            }
        }
        sum.errors += n;
        sum.passes = pass;
        let avail = meminfo().map_or(String::new(), |a| format!(", MemAvailable {} MiB", a >> 20));
        writeln!(
            out,
            "memstress: pass {pass}/{passes}: {} MiB filled in {:.1} s, checked in {:.1} s, \
             errors={n}{avail}",
            sum.bytes >> 20,
            filled.as_secs_f64(),
            checked.as_secs_f64()
        )?;
        out.flush()?;
    }
    Ok(sum)
}

/// The program: parses `args` (without the program name), runs, prints to
/// `out` (errors too) and returns the exit status (0 ok, 1 data errors or
/// failure, 2 invalid usage).
pub fn main_with<S: AsRef<str>>(args: &[S], out: &mut dyn Write) -> i32 {
    let o = match parse_args(args) {
        Ok(Command::Run(o)) => o,
        Ok(Command::Help) => {
            let _ = writeln!(out, "{USAGE}");
            return 0;
        }
        Err(e) => {
            let _ = writeln!(out, "memstress: {e}\n{USAGE}");
            return 2;
        }
    };
    let threads =
        o.threads.unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
    let (bytes, what) = match o.size {
        Size::Bytes(b) => (b, String::new()),
        Size::Percent(p) => match read_mem_available() {
            Ok(avail) => {
                (avail / 100 * u64::from(p), format!(" ({p}% of MemAvailable {} MiB)", avail >> 20))
            }
            Err(e) => {
                let _ = writeln!(out, "memstress: FAIL reading MemAvailable: {e}");
                return 1;
            }
        },
    };
    let _ = writeln!(
        out,
        "memstress: {threads} threads, {} passes, {} MiB{what}",
        o.passes,
        (share(bytes, threads) * threads as u64) >> 20
    );
    match run(o.passes, threads, bytes, &|| read_mem_available().ok(), out) {
        Ok(sum) => {
            let _ = writeln!(out, "{}", sum.line());
            i32::from(sum.errors != 0)
        }
        Err(e) => {
            let _ = writeln!(out, "memstress: FAIL {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_command_line() {
        let run = |a: &[&str]| parse_args(a);
        assert_eq!(run(&[]), Ok(Command::Run(Options::default())));
        assert_eq!(
            run(&["-t", "4", "-p3", "-m", "75%"]),
            Ok(Command::Run(Options { threads: Some(4), passes: 3, size: Size::Percent(75) }))
        );
        assert_eq!(
            run(&["-m64M"]),
            Ok(Command::Run(Options { size: Size::Bytes(64 << 20), ..Options::default() }))
        );
        assert_eq!(run(&["-p", "1", "-h"]), Ok(Command::Help));
        for bad in
            [&["-t"][..], &["-t", "0"], &["-p", "x"], &["-m", "0%"], &["-m", "101%"], &["-x"]]
        {
            assert!(run(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size("1g"), Some(Size::Bytes(1 << 30)));
        assert_eq!(parse_size("4096"), Some(Size::Bytes(4096)));
        assert_eq!(parse_size("100"), None, "less than a page");
        assert_eq!(parse_size("+5%"), None);
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("99999999999G"), None);
    }

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:         507000 kB\nMemFree:          480000 kB\n\
                    MemAvailable:     470016 kB\nBuffers: 0 kB\n";
        assert_eq!(mem_available(text), Some(470016 * 1024));
        assert_eq!(mem_available("MemFree: 1 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: x kB\n"), None);
        assert!(read_mem_available().is_ok_and(|a| a > 0));
    }

    #[test]
    fn shares_are_whole_pages() {
        assert_eq!(share(10 * PAGE + 5, 3), 3 * PAGE);
        assert_eq!(share(1, 4), PAGE);
        assert_eq!(share(8 << 20, 0), 8 << 20);
    }

    #[test]
    fn the_pattern_tells_addresses_passes_and_threads_apart() {
        let base = 0x7f00_0000_0000u64;
        let mut seen: Vec<u64> = (0..4096).map(|i| pattern(base + 8 * i, 1, 0)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4096, "a region's words differ");
        for i in 0..4096u64 {
            let a = base + 8 * i;
            assert_ne!(pattern(a, 1, 0), pattern(a, 2, 0), "pass");
            assert_ne!(pattern(a, 1, 0), pattern(a, 1, 1), "thread");
            assert_ne!(pattern(a, 1, 0), 0);
        }
    }

    #[test]
    fn a_region_fills_and_verifies() {
        let mut r = Region::new(16 * PAGE).unwrap();
        assert_eq!(r.addr() % PAGE, 0);
        assert_eq!(r.words(), 16 * 512);
        assert_eq!(r.read(5), 0, "fresh anonymous memory is zero");
        r.fill(3, 1);
        assert_eq!(r.verify(3, 1), (0, vec![]));
        // The wrong pass or thread is all bad.
        assert_eq!(r.verify(4, 1).0, r.words() as u64);
        assert_eq!(r.verify(3, 2).0, r.words() as u64);
    }

    #[test]
    fn a_corrupted_byte_is_found_and_reported() {
        let mut r = Region::new(4 * PAGE).unwrap();
        r.fill(1, 0);
        // Flip one bit of word 700, and every bit of word 2000's high byte.
        let (i, j) = (700, 2000);
        let (a, b) = (r.read(i), r.read(j));
        r.write(i, a ^ (1 << 43));
        r.write(j, b ^ (0xff << 56));
        let (n, bad) = r.verify(1, 0);
        assert_eq!(n, 2);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].addr, r.addr() + 8 * i as u64);
        assert_eq!(bad[0].actual ^ bad[0].expected, 1 << 43);
        assert_eq!(bad[0].reread, bad[0].actual);
        assert_eq!(bad[1].addr, r.addr() + 8 * j as u64);
        let text = bad[0].to_string();
        assert!(text.contains("xor 0x0000080000000000"), "{text}");
        // Many bad words: all counted, a few reported.
        let (n, bad) = r.verify(2, 0);
        assert_eq!((n, bad.len()), (r.words() as u64, MAX_REPORTED));
    }

    #[test]
    fn runs_passes_over_threads() {
        let mut out = Vec::new();
        let sum = run(3, 3, 3 << 20, &|| Some(100 << 20), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(sum.line(), "memstress: ok passes=3 threads=3 bytes=3145728 errors=0");
        assert_eq!(
            text.lines().filter(|l| l.contains("errors=0, MemAvailable 100 MiB")).count(),
            3
        );
        assert!(text.contains("pass 3/3"), "{text}");
        let failed = Summary { errors: 2, ..sum };
        assert!(failed.line().starts_with("memstress: FAIL passes=3"), "{}", failed.line());
    }

    #[test]
    fn the_program_exits_with_its_status() {
        let mut out = Vec::new();
        assert_eq!(main_with(&["-t", "2", "-p", "1", "-m", "1M"], &mut out), 0);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("memstress: ok passes=1 threads=2 bytes=1048576 errors=0\n"),
            "{text}"
        );
        let mut out = Vec::new();
        assert_eq!(main_with(&["-t", "-1"], &mut out), 2);
        assert!(String::from_utf8(out).unwrap().contains("usage: memstress"));
        assert_eq!(main_with(&["-h"], &mut Vec::new()), 0);
    }
}
