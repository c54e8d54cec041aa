//! `labloop export CAMPAIGN --store URL --out DIR [--format parquet|csv]`: a campaign's data as the
//! two tables `labloop_export` builds (`experiments`, `cycles`; its docs list the columns), or an
//! imported dataset as JSON (`--dataset`).

use anyhow::{Context, Result, bail};
use labloop_export::{Format, campaign_tables};
use std::path::PathBuf;

/// What the command line asked for.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// The campaign's id (`labloop status` lists them).
    #[arg(required_unless_present = "dataset")]
    campaign: Option<String>,
    /// Store URL.
    #[arg(long)]
    store: String,
    /// Folder to write `experiments.<ext>` and `cycles.<ext>` into (created if needed).
    #[arg(long, required_unless_present = "dataset")]
    out: Option<PathBuf>,
    /// Or an imported dataset (`labloop import`), printed as JSON on stdout in the shape of
    /// `labloop import --check --json` (each cell with its file, hash, format and reader).
    #[arg(long, conflicts_with_all = ["campaign", "out"])]
    dataset: Option<String>,
    /// With `--dataset`: include each cycle's discharge curve.
    #[arg(long, requires = "dataset")]
    curves: bool,
    /// `parquet` or `csv`.
    #[arg(long, default_value = "parquet")]
    format: String,
}

/// Writes the campaign's two tables.
pub fn export(args: &ExportArgs) -> Result<()> {
    if let Some(dataset) = &args.dataset {
        let json = crate::commands::runtime()?.block_on(labloop_export::dataset_json(
            &args.store,
            dataset,
            args.curves,
        ))?;
        println!("{json}");
        return Ok(());
    }
    let (Some(campaign), Some(out)) = (&args.campaign, &args.out) else {
        bail!("give a campaign and --out, or --dataset");
    };
    let Some(format) = Format::parse(&args.format) else {
        bail!("--format {}: expected parquet or csv", args.format);
    };
    let (experiments, cycles) =
        crate::commands::runtime()?.block_on(campaign_tables(&args.store, campaign))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ext = format.extension();
    let (n_experiments, n_cycles) = (experiments.rows, cycles.rows);
    experiments.write(&out.join(format!("experiments.{ext}")), format)?;
    cycles.write(&out.join(format!("cycles.{ext}")), format)?;
    eprintln!(
        "{campaign}: {n_experiments} experiments and {n_cycles} cycle records written to {}",
        out.display()
    );
    Ok(())
}
