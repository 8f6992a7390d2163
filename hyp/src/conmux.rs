//! One console for the hypervisor and every VM: whose output goes where on
//! it ([`Output`]) and whose input comes from it ([`Input`]). Portable and
//! tested on the host; the console (`console` at EL2, the host machine of
//! the tests) holds one `Output` with its UART, the VMs one `Input`
//! (`vm::Guests`).
//!
//! # Output
//!
//! VM output is printed by lines prefixed with `[vmN] `, as before, but a
//! line may also be printed in pieces: the VM's console flushes an
//! unfinished line when the guest waits for input (`vm::Vm::console_flush`),
//! so a prompt shows. The next piece of the same VM continues the line if
//! nothing else was printed since; otherwise the piece starts a line of
//! its own with the prefix again, and whoever interrupts an unfinished
//! line (another VM, the hypervisor) first ends it with a newline. So
//! every line on the console has one author.
//!
//! # Input and the escape
//!
//! What is typed on the console goes to one VM at a time, vm1 at boot.
//! Ctrl-A (0x01) starts a command, as in QEMU's and `screen`'s consoles:
//!
//! * Ctrl-A then a digit `1`-`9`: input goes to that VM from now on; the
//!   hypervisor prints `[input: vmN]` (or `[input: no vmN, still vmM]`).
//! * Ctrl-A Ctrl-A: one Ctrl-A for the VM.
//! * Ctrl-A `?` or `h`: a one-line reminder of this.
//! * Ctrl-A then anything else: both bytes are dropped.
//!
//! QEMU `-nographic` (`scripts/run.sh`) uses Ctrl-A itself and passes one
//! Ctrl-A on for two typed: type Ctrl-A Ctrl-A 2 there to switch to vm2
//! (and four Ctrl-A for one to reach the guest).

use core::fmt::{self, Write};

/// Where console bytes go: the UART, or a buffer in tests. A newline is
/// `\n`; a sink for a terminal turns it into what the terminal wants.
pub trait Sink {
    /// Writes `bytes` as they are.
    fn put(&mut self, bytes: &[u8]);
}

/// Who the console's last, unfinished line belongs to (see the module
/// documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// A VM's line printed in part: nothing else was printed since.
    open: Option<usize>,
    /// The last byte printed was not a newline.
    mid_line: bool,
}

impl Sink for alloc::vec::Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A [`Sink`] as `fmt::Write` that remembers the last byte written.
struct Tracking<'a, S: Sink> {
    sink: &'a mut S,
    last: Option<u8>,
}

impl<S: Sink> Write for Tracking<'_, S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(&b) = s.as_bytes().last() {
            self.sink.put(s.as_bytes());
            self.last = Some(b);
        }
        Ok(())
    }
}

impl Output {
    /// Nothing printed yet.
    pub const fn new() -> Self {
        Self { open: None, mid_line: false }
    }

    /// The hypervisor's own text: it ends an unfinished VM line first, so
    /// that it starts on a line of its own.
    pub fn hyp(&mut self, sink: &mut impl Sink, args: fmt::Arguments<'_>) {
        if self.open.take().is_some() {
            sink.put(b"\n");
            self.mid_line = false;
        }
        let mut w = Tracking { sink, last: None };
        let _ = w.write_fmt(args);
        if let Some(b) = w.last {
            self.mid_line = b != b'\n';
        }
    }

    /// A piece of VM `vm`'s line: `text` (no newline in it), and the end of
    /// the line if `end`. Continues the VM's unfinished line if it is the
    /// last thing printed; otherwise starts a line with `[vmN] `.
    pub fn guest(&mut self, sink: &mut impl Sink, vm: usize, text: &[u8], end: bool) {
        if text.is_empty() && !end {
            return;
        }
        if self.open != Some(vm) {
            if self.mid_line {
                sink.put(b"\n");
            }
            let mut w = Tracking { sink: &mut *sink, last: None };
            let _ = write!(w, "[vm{vm}] ");
        }
        sink.put(text);
        if end {
            sink.put(b"\n");
            self.open = None;
            self.mid_line = false;
        } else {
            self.open = Some(vm);
            self.mid_line = true;
        }
    }
}

/// Ctrl-A: starts an input command.
pub const ESCAPE: u8 = 0x01;

/// What one byte of console input does ([`Input::feed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// `byte` is for VM `vm`'s UART.
    Deliver {
        /// The VM (its id).
        vm: usize,
        /// The byte.
        byte: u8,
    },
    /// Input goes to VM `vm` from now on.
    Switched(usize),
    /// A digit named a VM that does not exist: input stays with `owner`.
    NoSuchVm {
        /// The VM the digit named.
        asked: usize,
        /// The VM input still goes to.
        owner: usize,
    },
    /// Ctrl-A `?` or `h`: the reminder should be printed.
    Help(usize),
    /// Nothing to do: the escape itself, or an unknown command.
    Nothing,
}

/// Which VM console input goes to, and the escape state (see the module
/// documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    owner: usize,
    escaped: bool,
}

impl Default for Input {
    fn default() -> Self {
        Self::new()
    }
}

impl Input {
    /// Input to vm1, no command started.
    pub const fn new() -> Self {
        Self { owner: 1, escaped: false }
    }

    /// The VM input goes to.
    pub fn owner(&self) -> usize {
        self.owner
    }

    /// One byte typed, with `vms` VMs (ids 1 to `vms`).
    pub fn feed(&mut self, b: u8, vms: usize) -> Routed {
        if !core::mem::take(&mut self.escaped) {
            if b == ESCAPE {
                self.escaped = true;
                return Routed::Nothing;
            }
            return Routed::Deliver { vm: self.owner, byte: b };
        }
        match b {
            ESCAPE => Routed::Deliver { vm: self.owner, byte: ESCAPE },
            b'1'..=b'9' => {
                let asked = usize::from(b - b'0');
                if asked <= vms {
                    self.owner = asked;
                    Routed::Switched(asked)
                } else {
                    Routed::NoSuchVm { asked, owner: self.owner }
                }
            }
            b'?' | b'h' => Routed::Help(self.owner),
            _ => Routed::Nothing,
        }
    }

    /// The note the hypervisor prints for `r`, if any.
    pub fn note(r: Routed) -> Option<impl fmt::Display> {
        struct Note(Routed);
        impl fmt::Display for Note {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    Routed::Switched(vm) => write!(f, "[input: vm{vm}]"),
                    Routed::NoSuchVm { asked, owner } => {
                        write!(f, "[input: no vm{asked}, still vm{owner}]")
                    }
                    Routed::Help(owner) => write!(
                        f,
                        "[input: vm{owner}; Ctrl-A 1-9 selects a VM, Ctrl-A Ctrl-A sends Ctrl-A]"
                    ),
                    Routed::Deliver { .. } | Routed::Nothing => Ok(()),
                }
            }
        }
        match r {
            Routed::Deliver { .. } | Routed::Nothing => None,
            r => Some(Note(r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn text(v: &[u8]) -> String {
        String::from_utf8(v.to_vec()).unwrap()
    }

    #[test]
    fn whole_lines_are_prefixed() {
        let (mut o, mut s) = (Output::new(), Vec::new());
        o.guest(&mut s, 1, b"hello", true);
        o.guest(&mut s, 2, b"world", true);
        o.guest(&mut s, 1, b"", true);
        assert_eq!(text(&s), "[vm1] hello\n[vm2] world\n[vm1] \n");
    }

    #[test]
    fn a_line_in_pieces_continues_while_nothing_interrupts() {
        let (mut o, mut s) = (Output::new(), Vec::new());
        o.guest(&mut s, 1, b"echo> ", false);
        o.guest(&mut s, 1, b"", false);
        o.guest(&mut s, 1, b"h", false);
        o.guest(&mut s, 1, b"i", true);
        assert_eq!(text(&s), "[vm1] echo> hi\n");
    }

    #[test]
    fn an_interrupted_line_is_ended_and_resumed_with_its_prefix() {
        let (mut o, mut s) = (Output::new(), Vec::new());
        o.guest(&mut s, 1, b"echo> ", false);
        o.guest(&mut s, 2, b"echo> ", false);
        o.hyp(&mut s, format_args!("[input: vm{}]\n", 2));
        o.guest(&mut s, 2, b"typed", true);
        o.guest(&mut s, 1, b"more", true);
        assert_eq!(text(&s), "[vm1] echo> \n[vm2] echo> \n[input: vm2]\n[vm2] typed\n[vm1] more\n");
    }

    #[test]
    fn hypervisor_pieces_stay_together_and_guests_start_below_them() {
        let (mut o, mut s) = (Output::new(), Vec::new());
        o.hyp(&mut s, format_args!("counter"));
        o.hyp(&mut s, format_args!(" {}", 12));
        o.guest(&mut s, 1, b"x", true);
        o.hyp(&mut s, format_args!("done\n"));
        o.hyp(&mut s, format_args!(""));
        o.guest(&mut s, 1, b"y", false);
        assert_eq!(text(&s), "counter 12\n[vm1] x\ndone\n[vm1] y");
    }

    #[test]
    fn input_goes_to_vm1_until_switched() {
        let mut i = Input::new();
        assert_eq!(i.feed(b'a', 2), Routed::Deliver { vm: 1, byte: b'a' });
        assert_eq!(i.feed(ESCAPE, 2), Routed::Nothing);
        assert_eq!(i.feed(b'2', 2), Routed::Switched(2));
        assert_eq!(i.owner(), 2);
        assert_eq!(i.feed(b'2', 2), Routed::Deliver { vm: 2, byte: b'2' });
        assert_eq!(i.feed(b'\r', 2), Routed::Deliver { vm: 2, byte: b'\r' });
        assert_eq!(i.feed(ESCAPE, 2), Routed::Nothing);
        assert_eq!(i.feed(b'1', 2), Routed::Switched(1));
        assert_eq!(i.feed(b'z', 2), Routed::Deliver { vm: 1, byte: b'z' });
    }

    #[test]
    fn escape_commands() {
        let mut i = Input::new();
        // Ctrl-A Ctrl-A: one Ctrl-A for the VM, then back to plain input.
        assert_eq!(i.feed(ESCAPE, 1), Routed::Nothing);
        assert_eq!(i.feed(ESCAPE, 1), Routed::Deliver { vm: 1, byte: ESCAPE });
        assert_eq!(i.feed(b'2', 1), Routed::Deliver { vm: 1, byte: b'2' });
        // A VM that does not exist, 0, and unknown commands change nothing.
        for (cmd, r) in [
            (b'3', Routed::NoSuchVm { asked: 3, owner: 1 }),
            (b'0', Routed::Nothing),
            (b'x', Routed::Nothing),
            (b'?', Routed::Help(1)),
            (b'h', Routed::Help(1)),
        ] {
            assert_eq!(i.feed(ESCAPE, 2), Routed::Nothing);
            assert_eq!(i.feed(cmd, 2), r, "Ctrl-A {}", cmd as char);
            assert_eq!(i.owner(), 1);
            assert_eq!(i.feed(b'k', 2), Routed::Deliver { vm: 1, byte: b'k' });
        }
        assert_eq!(i.feed(ESCAPE, 9), Routed::Nothing);
        assert_eq!(i.feed(b'9', 9), Routed::Switched(9));
    }

    #[test]
    fn notes() {
        let note = |r| Input::note(r).map(|n| alloc::format!("{n}"));
        assert_eq!(note(Routed::Switched(2)).as_deref(), Some("[input: vm2]"));
        assert_eq!(
            note(Routed::NoSuchVm { asked: 5, owner: 1 }).as_deref(),
            Some("[input: no vm5, still vm1]")
        );
        assert!(note(Routed::Help(1)).unwrap().contains("Ctrl-A 1-9"));
        assert_eq!(note(Routed::Nothing), None);
        assert_eq!(note(Routed::Deliver { vm: 1, byte: 0 }), None);
    }
}
