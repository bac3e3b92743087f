//! Results as tables: printed, written to Markdown, and saved as JSON beside it.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::machine::Machine;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub cells: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    /// How to reproduce, and what is being compared.
    pub notes: Vec<String>,
    pub header: Vec<String>,
    pub rows: Vec<Row>,
    /// Target checks: (description, met).
    pub targets: Vec<(String, bool)>,
    /// Raw measurements for machines to read.
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub command: String,
    pub sections: Vec<Section>,
}

impl Section {
    pub fn markdown(&self) -> String {
        let mut s = format!("## {}\n\n", self.title);
        for n in &self.notes {
            let _ = writeln!(s, "{n}\n");
        }
        let _ = writeln!(s, "| {} |", self.header.join(" | "));
        let _ = writeln!(s, "|{}", self.header.iter().map(|_| " --- |").collect::<String>());
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.cells.join(" | "));
        }
        if !self.targets.is_empty() {
            s.push('\n');
            for (t, ok) in &self.targets {
                let _ = writeln!(s, "- {} {t}", if *ok { "met:" } else { "**missed:**" });
            }
        }
        s.push('\n');
        s
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::from("# Benchmarks\n\n");
        let _ = writeln!(
            s,
            "Measured by `{}` on {} ({} cores, {:.0} GiB RAM, Linux {}), {}, commit `{}`, built with \
             {}. Every ratio compares figures taken in this same run.\n",
            self.command, m.cpu, m.cores, m.memory_gib, m.kernel, m.date, m.commit, m.built_for_cpu
        );
        for sec in &self.sections {
            s.push_str(&sec.markdown());
        }
        s
    }

    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, self.markdown())?;
        std::fs::write(out.with_extension("json"), serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

pub fn f1(x: f64) -> String {
    format!("{x:.1}")
}

pub fn f2(x: f64) -> String {
    format!("{x:.2}")
}
