//! `labloop import FILE... --store URL --dataset NAME [--format F] [--check [--json]]` and
//! `labloop export --dataset NAME --json`: vendor cycler files into a store's datasets, and back
//! out in the same JSON shape.

use anyhow::{Context, Result, bail};
use labloop_import::ImportedFile;
use labloop_store::{ImportOutcome, Store};
use std::path::PathBuf;
use std::process::ExitCode;

/// What the command line asked for.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// Vendor files (Arbin CSV/XLSX, Maccor text, BioLogic .mpt/.mpr, Neware .nda/.ndax/CSV,
    /// Novonix CSV, Battery Archive / BEEP CSV, batterydata, BDF, or any table with time,
    /// voltage and current columns).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Store URL (created if new).
    #[arg(long, required_unless_present = "check")]
    store: Option<String>,
    /// The dataset the cells join (created if new).
    #[arg(long, required_unless_present = "check")]
    dataset: Option<String>,
    /// The files' format (`auto`: by content, never by extension); an unknown name is answered
    /// with the list.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Print each cell's per-cycle summary without writing anything.
    #[arg(long)]
    check: bool,
    /// With `--check`: JSON on stdout, one object per file (one line each when several).
    #[arg(long, requires = "check")]
    json: bool,
    /// With `--check --json`: include each cycle's discharge curve.
    #[arg(long, requires = "json")]
    curves: bool,
}

/// Reads every file first (a file refused is named with where and why; the others go on), then
/// imports or prints. Fails when any file was refused.
pub fn run(args: &ImportArgs) -> Result<ExitCode> {
    let format = (args.format != "auto").then_some(args.format.as_str());
    if let Some(name) = format
        && labloop_import::reader(name).is_none()
    {
        bail!(
            "--format {name}: labloop reads {}",
            labloop_import::readers()
                .iter()
                .map(|r| r.format())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut refused = 0;
    let mut read = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                refused += 1;
                continue;
            }
        };
        match labloop_import::import(&bytes, &name, format) {
            Ok(file) => read.push(file),
            Err(e) => {
                eprintln!("{e}");
                refused += 1;
            }
        }
    }
    if args.check {
        for file in &read {
            if args.json {
                println!("{}", check_json(file, args.curves));
            } else {
                print_check(file);
            }
        }
    } else {
        let (url, dataset) = (
            args.store.as_deref().expect("clap requires --store"),
            args.dataset.as_deref().expect("clap requires --dataset"),
        );
        crate::commands::runtime()?.block_on(async {
            let store = Store::connect(url).await?;
            for file in &read {
                let cycles: usize = file.cells.iter().map(|c| c.cycles.len()).sum();
                match store
                    .import_file(dataset, file)
                    .await
                    .with_context(|| format!("importing {}", file.file))?
                {
                    ImportOutcome::Added { cells } => println!(
                        "{}: {} ({} reader {}) → dataset {dataset}: {cycles} cycles",
                        file.file,
                        cells.join(", "),
                        file.format,
                        file.reader_version
                    ),
                    ImportOutcome::AlreadyImported => println!(
                        "{}: already in dataset {dataset} (same SHA-256 {}), nothing added",
                        file.file,
                        &file.sha256[..12]
                    ),
                }
            }
            anyhow::Ok(())
        })?;
    }
    Ok(if refused > 0 {
        eprintln!("{refused} of {} files refused", args.files.len());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The `--check --json` object of a file: its provenance and its cells' cycles.
fn check_json(file: &ImportedFile, curves: bool) -> serde_json::Value {
    let mut file = file.clone();
    if !curves {
        for cell in &mut file.cells {
            for cycle in &mut cell.cycles {
                cycle.discharge_curve = None;
            }
        }
    }
    serde_json::to_value(&file).expect("summaries are finite numbers")
}

fn print_check(file: &ImportedFile) {
    println!(
        "{}: {} (reader {}), {} bytes, sha256 {}",
        file.file,
        file.format,
        file.reader_version,
        file.bytes,
        &file.sha256[..12]
    );
    for cell in &file.cells {
        println!(
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
        println!(
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
            println!(
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
}

/// `labloop export --dataset NAME --store URL --json`: the dataset's cells in the `--check
/// --json` shape (with each cell's file, hash, format and reader version), so an import's
/// numbers can be compared with what the store gives back.
pub fn export_dataset(url: &str, dataset: &str, curves: bool) -> Result<()> {
    crate::commands::runtime()?.block_on(async {
        let store = Store::open(url).await?;
        let Some(cells) = store.dataset(dataset).await? else {
            let known = store.dataset_names().await?;
            bail!(
                "no dataset {dataset} in {} (datasets: {})",
                labloop_store::redact(url),
                known
            );
        };
        let cells: Vec<serde_json::Value> = cells
            .into_iter()
            .map(|mut c| {
                if !curves {
                    for cycle in &mut c.cycles {
                        cycle.discharge_curve = None;
                    }
                }
                serde_json::json!({
                    "name": c.name,
                    "file": c.file_name,
                    "sha256": c.sha256,
                    "format": c.format,
                    "reader_version": c.reader_version,
                    "points": c.points,
                    "cycles": c.cycles,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "dataset": dataset, "cells": cells })
        );
        Ok(())
    })
}
