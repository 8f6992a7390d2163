//! A text dump of an address space's tables, like Linux's ptdump: one
//! line per run of leaves that map a contiguous output range with the same
//! attributes, and a count of table pages per level.

use core::fmt::{self, Write};

use crate::desc::{Attrs, Exec, MemType, Shareability};
use crate::geometry::Level;
use crate::memory::TableMemory;
use crate::stage2::Stage2;
use crate::tlb::TlbMaintenance;
use crate::walk::{Cursor, Step, Visit, Visitor, WalkError};

struct Run {
    start: u64,
    end: u64,
    pa: u64,
    level: Level,
    attrs: Attrs,
}

struct Dumper<'o> {
    out: &'o mut dyn Write,
    run: Option<Run>,
    tables: [usize; 4],
    result: fmt::Result,
}

impl Dumper<'_> {
    fn emit(&mut self) {
        if let Some(r) = self.run.take() {
            let a = &r.attrs;
            let size = match r.level {
                1 => "1G",
                2 => "2M",
                _ => "4K",
            };
            let mem = match a.mem {
                MemType::DeviceNGnRnE => "Device-nGnRnE",
                MemType::DeviceNGnRE => "Device-nGnRE",
                MemType::NormalNc => "Normal-NC",
                MemType::NormalWb => "Normal-WB",
            };
            let sh = match a.sh {
                Shareability::Non => "NSH",
                Shareability::Outer => "OSH",
                Shareability::Inner => "ISH",
            };
            let x = match a.exec {
                Exec::All => "x",
                Exec::Never => "-",
                Exec::El1Only => "1",
                Exec::El0Only => "0",
            };
            let n = (r.end - r.start) >> crate::geometry::level_shift(r.level);
            self.result = self.result.and_then(|_| {
                writeln!(
                    self.out,
                    "{:#014x}-{:#014x} -> {:#014x} {size} x{n:<6} {}{}{} {mem} {sh}{}{}",
                    r.start,
                    r.end,
                    r.pa,
                    if a.read { "r" } else { "-" },
                    if a.write { "w" } else { "-" },
                    x,
                    if a.af { "" } else { " !AF" },
                    if a.sw != 0 { " sw" } else { "" },
                )
            });
        }
    }
}

impl<M: TableMemory, T: TlbMaintenance> Visitor<M, T> for Dumper<'_> {
    fn pre(&mut self, cx: &mut Cursor<'_, '_, M, T>, v: &Visit) -> Result<Step, WalkError> {
        if v.old.is_table(v.level) {
            self.tables[usize::from(v.level) + 1] += 1;
            return Ok(Step::Descend);
        }
        if !v.old.is_leaf(v.level) {
            self.emit();
            return Ok(Step::Next);
        }
        let attrs = v.old.attrs(&cx.s2.geo);
        let pa = v.old.addr().get();
        if let Some(r) = &mut self.run {
            if r.level == v.level
                && r.attrs == attrs
                && r.end == v.base
                && r.pa + (r.end - r.start) == pa
            {
                r.end = v.base + v.size();
                return Ok(Step::Next);
            }
        }
        self.emit();
        self.run = Some(Run { start: v.base, end: v.base + v.size(), pa, level: v.level, attrs });
        Ok(Step::Next)
    }
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<'_, M, T> {
    /// Writes a dump of the tables to `out`.
    pub fn dump(&self, out: &mut dyn Write) -> fmt::Result {
        let g = self.geo;
        writeln!(
            out,
            "stage 2: VMID {} {:?}, {}-bit IPA, start level {}, root {} ({} table{}), {:?} locks",
            self.vmid.0,
            g.arch(),
            g.ipa_bits(),
            g.start_level(),
            self.root,
            g.root_tables(),
            if g.root_tables() > 1 { "s" } else { "" },
            self.mode,
        )?;
        let mut d = Dumper { out, run: None, tables: [0; 4], result: Ok(()) };
        let mut batch = self.tlb_batch();
        // A read-only walk: it never writes, so it cannot fail.
        let _ = self.walk_range(0, g.ipa_limit(), &mut d, &mut batch);
        d.emit();
        d.result?;
        let t = d.tables;
        writeln!(
            out,
            "tables: root {} + level 1: {}, level 2: {}, level 3: {}",
            g.root_tables(),
            t[1],
            t[2],
            t[3]
        )
    }
}
