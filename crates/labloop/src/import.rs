//! `labloop import FILE... --store URL --dataset NAME [--format F] [--check [--json]]`: vendor
//! cycler files into a store's datasets (`labloop export --dataset` gives them back in the shape
//! `--check --json` prints).

use anyhow::{Context, Result, bail};
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
                println!("{}", file.to_json(args.curves));
            } else {
                print!("{}", file.summary_text());
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
