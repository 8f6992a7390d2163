//! The hypervisor's console: the PL011, `print!`, the VMs' output on it
//! (`conmux::Output`: whose line is whose), its input, and the `log`
//! backend (level, CPU number and a timestamp from the generic timer).

use spin::Mutex;

use crate::conmux::Output;
use crate::uart::Pl011;

/// The UART, and whose line it printed last.
struct Console {
    uart: Pl011,
    out: Output,
}

static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

/// Uses the PL011 at `base` for the console.
pub fn init(base: u64) {
    // SAFETY: `base` comes from the DTB's PL011 node and is mapped as
    // device memory by the boot map; from now on only this module drives
    // it.
    let uart = unsafe { Pl011::new(base as usize) };
    uart.enable();
    *CONSOLE.lock() = Some(Console { uart, out: Output::new() });
    log::set_logger(&LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
}

/// Prints to the console (whole calls are not interleaved between CPUs):
/// the hypervisor's own text, which starts below an unfinished VM line.
pub fn print(args: core::fmt::Arguments<'_>) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        c.out.hyp(&mut c.uart, args);
    }
}

/// Prints a piece of VM `vm`'s console line (`Machine::print_guest`).
pub fn print_guest(vm: usize, text: &[u8], end: bool) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        c.out.guest(&mut c.uart, vm, text, end);
    }
}

/// A byte typed on the console, if one is waiting (never waits).
pub fn try_getc() -> Option<u8> {
    CONSOLE.lock().as_ref()?.uart.try_getc()
}

/// Prints even if the console lock is held (panics).
pub fn print_raw(base: u64, args: core::fmt::Arguments<'_>) {
    // SAFETY: used only on the way down (panic), where interleaving with
    // another holder of the lock is the lesser evil.
    let mut uart = unsafe { Pl011::new(base as usize) };
    let _ = core::fmt::Write::write_fmt(&mut uart, args);
}

/// `print!` for the hypervisor console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// `println!` for the hypervisor console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Seconds and microseconds since boot, from the generic timer's
/// physical count and frequency.
pub fn timestamp() -> (u64, u64) {
    let (cnt, frq) = crate::cpu::counter();
    let frq = frq.max(1);
    (cnt / frq, (cnt % frq) * 1_000_000 / frq)
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        let (s, us) = timestamp();
        let cpu = crate::cpu::cpu_index();
        print(format_args!("[{s:4}.{us:06}] cpu{cpu} {:5} {}\n", r.level(), r.args()));
    }

    fn flush(&self) {}
}
