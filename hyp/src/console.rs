//! The hypervisor's console: the PL011, `print!`, and the `log` backend
//! (level, CPU number and a timestamp from the generic timer).

use core::fmt::Write;

use spin::Mutex;

use crate::uart::Pl011;

static UART: Mutex<Option<Pl011>> = Mutex::new(None);

/// Uses the PL011 at `base` for the console.
pub fn init(base: u64) {
    // SAFETY: `base` comes from the DTB's PL011 node and is mapped as
    // device memory by the boot map; from now on only this module drives
    // it.
    let uart = unsafe { Pl011::new(base as usize) };
    uart.enable();
    *UART.lock() = Some(uart);
    log::set_logger(&LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
}

/// Prints to the console (whole calls are not interleaved between CPUs).
pub fn print(args: core::fmt::Arguments<'_>) {
    if let Some(uart) = UART.lock().as_mut() {
        let _ = uart.write_fmt(args);
    }
}

/// Prints even if the console lock is held (panics).
pub fn print_raw(base: u64, args: core::fmt::Arguments<'_>) {
    // SAFETY: used only on the way down (panic), where interleaving with
    // another holder of the lock is the lesser evil.
    let mut uart = unsafe { Pl011::new(base as usize) };
    let _ = uart.write_fmt(args);
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
