//! How an imported file is shown before it is stored (`labloop import --check`): a per-cycle
//! table for people, or JSON.

use crate::ImportedFile;
use std::fmt::Write;

impl ImportedFile {
    /// The `labloop import --check --json` object of the file: its provenance and its cells'
    /// cycles, each cycle's discharge curve only with `curves`.
    pub fn to_json(&self, curves: bool) -> serde_json::Value {
        let mut file = self.clone();
        if !curves {
            for cell in &mut file.cells {
                for cycle in &mut cell.cycles {
                    cycle.discharge_curve = None;
                }
            }
        }
        serde_json::to_value(&file).expect("summaries are finite numbers")
    }

    /// The file's provenance and each cell's per-cycle summary as a table (milliampere-hours for
    /// cells that never reach 0.1 Ah).
    pub fn summary_text(&self) -> String {
        let file = self;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} (reader {}), {} bytes, sha256 {}",
            file.file,
            file.format,
            file.reader_version,
            file.bytes,
            &file.sha256[..12]
        );
        for cell in &file.cells {
            let _ = writeln!(
                out,
                "  cell {}: {} rows, {} cycles",
                cell.name,
                cell.points,
                cell.cycles.len()
            );
            // Coin cells hold milliampere-hours: print those where a cell never reaches 0.1 Ah.
            let largest = cell
                .cycles
                .iter()
                .map(|c| c.charge_capacity_ah.max(c.discharge_capacity_ah))
                .fold(0.0, f64::max);
            let (scale, prefix) = if largest < 0.1 { (1e3, "m") } else { (1.0, "") };
            let _ = writeln!(
                out,
                "  {:>6} {:>6} {:>8} {:>11} {:>11} {:>11} {:>11} {:>7} {:>7}",
                "cycle",
                "source",
                "points",
                format!("charge {prefix}Ah"),
                format!("disch. {prefix}Ah"),
                format!("charge {prefix}Wh"),
                format!("disch. {prefix}Wh"),
                "V min",
                "V max"
            );
            for c in &cell.cycles {
                let _ = writeln!(
                    out,
                    "  {:>6} {:>6} {:>8} {:>11.6} {:>11.6} {:>11.6} {:>11.6} {:>7.3} {:>7.3}",
                    c.cycle,
                    c.source_cycle.map_or("-".into(), |s| s.to_string()),
                    c.points,
                    c.charge_capacity_ah * scale,
                    c.discharge_capacity_ah * scale,
                    c.charge_energy_wh * scale,
                    c.discharge_energy_wh * scale,
                    c.voltage_min_v,
                    c.voltage_max_v
                );
            }
        }
        out
    }
}
