//! `labloop predict train|eval|run`: lifetime models from the command line. Cells are `Qdlin` arrays
//! (`DIR/cellN.csv`, as in the Severson et al. data) and lives one cycle life per line.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use labloop_engine::training::{CellSource, Lives};
use labloop_predict::life::EndOfLife;
use labloop_predict::procedure::Procedure;
use labloop_predict::train::{LabelledCell, evaluate, score};
use labloop_predict::{
    Backend, CapacitySource, FeatureSet, ModelFile, Predictor, capacity, report, severson, shift,
};
use std::path::PathBuf;
use std::time::Instant;

/// The `predict` subcommands.
#[derive(Subcommand)]
pub enum PredictCommand {
    /// Train a model on cells with known lives and write the model file.
    Train(TrainArgs),
    /// Score a model on cells with known lives: RMSE (cycles), MAPE and σ coverage.
    Eval(EvalArgs),
    /// Predict the cycle life (with σ) of every cellN.csv in a folder.
    Run(RunArgs),
    /// Adapt a model to a new batch from a few of its cells whose lives are known: the batch's
    /// offset and a recalibrated σ, recorded in the new model file.
    Adapt(AdaptArgs),
    /// Write the early-cycle features labloop computes (the ones a plugin's model is given) of
    /// cells with known lives as CSV, one row per cell: to train a model of one's own on them.
    Features(FeaturesArgs),
}

/// `labloop predict features`.
#[derive(Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    data: LabelledArgs,
    /// Where to write the CSV (`cell`, each feature, `cycle_life`).
    #[arg(long)]
    out: PathBuf,
    /// Early window in cycles (20 to 100).
    #[arg(long, default_value_t = 100)]
    window: u32,
}

/// `labloop predict adapt`.
#[derive(Args)]
pub struct AdaptArgs {
    /// A model file, or a built-in model's name.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    data: LabelledArgs,
    /// Where to write the adapted model (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Backend for neural models: cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    backend: Backend,
}

/// Cells and their lives: Qdlin arrays and a lives file, or a campaign's cells that reached end of
/// life in a store.
#[derive(Args)]
pub struct LabelledArgs {
    /// Folder of cellN.csv Qdlin arrays (1000 voltages × cycles 2..100).
    #[arg(long, requires = "lives")]
    cells: Option<PathBuf>,
    /// One cycle life per line; line N belongs to cellN.csv. With `--dataset`: `observed` (each
    /// cell's first cycle below `--eol`) or a CSV of `cell,life` lines.
    #[arg(long)]
    lives: Option<PathBuf>,
    /// The cycler's per-cycle discharge capacities (Ah): one row per cell used (after `--exclude`),
    /// in cell order, column k = cycle k, NaN where not measured (the layout of Severson et al.'s
    /// `capacity_per_cycle_*.csv`). Without them a cycle's capacity is read off the array at 2.0 V,
    /// which misses the constant-voltage tail; train and evaluate a model the same way.
    #[arg(long, requires = "cells")]
    capacities: Option<PathBuf>,
    /// Or a store: the cells of `--campaign` whose end of life was observed (a `cycle_to_eol` step),
    /// with their early cycle records, or the cells of an imported `--dataset`.
    #[arg(long, conflicts_with = "cells")]
    store: Option<String>,
    /// The campaign whose cells to use (with `--store`).
    #[arg(long, requires = "store", conflicts_with = "dataset")]
    campaign: Option<String>,
    /// A dataset imported with `labloop import` (with `--store` and `--lives`).
    #[arg(long, requires_all = ["store", "lives"])]
    dataset: Option<String>,
    /// With `--dataset --lives observed`: what ends a life, a fraction of each cell's initial
    /// capacity (`0.8`) or a capacity in Ah (`0.88Ah`).
    #[arg(long, default_value = "0.8")]
    eol: String,
    /// Leave a cell out, by name (e.g. `--exclude cell22`, the primary test set's known outlier; an
    /// experiment id with `--store`).
    #[arg(long)]
    exclude: Vec<String>,
}

impl LabelledArgs {
    /// The cells these arguments name.
    fn source(&self) -> Result<CellSource> {
        Ok(
            match (&self.store, &self.campaign, &self.cells, &self.lives) {
                (Some(store), None, None, Some(lives)) if self.dataset.is_some() => {
                    let (lives, lives_described) = if lives.as_os_str() == "observed" {
                        let end = EndOfLife::parse(&self.eol).map_err(|e| anyhow!("--eol {e}"))?;
                        (
                            Lives::Observed(end),
                            format!("observed, end of life {}", self.eol),
                        )
                    } else {
                        (Lives::read_csv(lives)?, lives.display().to_string())
                    };
                    CellSource::Dataset {
                        store: store.clone(),
                        dataset: self.dataset.clone().unwrap_or_default(),
                        lives,
                        lives_described,
                    }
                }
                (Some(store), Some(campaign), _, _) => CellSource::Campaign {
                    store: store.clone(),
                    campaign: campaign.clone(),
                },
                (_, _, Some(cells), Some(lives)) => CellSource::Arrays {
                    cells: cells.clone(),
                    lives: lives.clone(),
                    capacities: self.capacities.clone(),
                },
                _ => bail!(
                    "give --cells and --lives, --store and --campaign, or --store, --dataset and --lives"
                ),
            },
        )
    }
}

/// `labloop predict train`.
#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: LabelledArgs,
    /// variance, discharge, full (elastic nets of Severson et al.), neural (a perceptron ensemble
    /// on the discharge features) or neural-curve (the same plus the coarsened ΔQ(V) curve).
    #[arg(long)]
    model: String,
    /// Where to write the model (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Early window in cycles (20 to 100).
    #[arg(long, default_value_t = 100)]
    window: u32,
    /// Backend for neural training: cpu, gpu or auto.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
    /// Seed of the neural model's initialisation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The cells' batches: a CSV with a header naming `cell` and `batch_date` (or `batch`)
    /// columns, like the Severson data's `train_cells.csv`. With two batches or more the model's
    /// batch σ is measured by training on each batch's complement and scoring it; without, it is
    /// labloop's default.
    #[arg(long)]
    batches: Option<PathBuf>,
}

/// `labloop predict eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// A model file, or a built-in model's name. With `--split by-batch`: the models to train,
    /// comma-separated (variance, discharge, neural, ...; default variance,discharge,neural).
    #[arg(long, required_unless_present = "split")]
    model: Option<String>,
    #[command(flatten)]
    data: LabelledArgs,
    /// `by-batch`: train on every batch but one and score that one, for each batch, then adapt
    /// to 1, 2, 5 and 10 of its cells and score the rest. The cells come from `--severson DIR`,
    /// or from `--cells`/`--lives` (or `--store`) with `--batches`.
    #[arg(long, value_parser = ["by-batch"])]
    split: Option<String>,
    /// The cells' batches (see `predict train --batches`).
    #[arg(long)]
    batches: Option<PathBuf>,
    /// With `--split by-batch`: every cell of the Severson data in DIR (training and primary
    /// test sets, batches from their `*_cells.csv`); the discharge model reads the cycler's
    /// capacities, the others the arrays at 2.0 V, as the built-in models were trained.
    #[arg(long, requires = "split")]
    severson: Option<PathBuf>,
    /// Backend for neural models: cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// Print JSON: the scores and each cell's prediction with σ.
    #[arg(long)]
    json: bool,
}

/// `labloop predict run`.
#[derive(Args)]
pub struct RunArgs {
    /// A model file, or a built-in model's name.
    #[arg(long)]
    model: String,
    /// Folder of cellN.csv Qdlin arrays.
    #[arg(long)]
    cells: PathBuf,
    /// The cycler's per-cycle discharge capacities, one row per cell used (as for `eval`).
    #[arg(long)]
    capacities: Option<PathBuf>,
    /// Leave a cell out, by name.
    #[arg(long)]
    exclude: Vec<String>,
    /// Backend for neural models: cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs one `predict` subcommand.
pub fn run(command: &PredictCommand) -> Result<()> {
    match command {
        PredictCommand::Train(args) => train(args),
        PredictCommand::Eval(args) => eval(args),
        PredictCommand::Run(args) => predict(args),
        PredictCommand::Adapt(args) => adapt(args),
        PredictCommand::Features(args) => features(args),
    }
}

/// Writes the cells' features as CSV. A feature a cell lacks is an empty field.
fn features(args: &FeaturesArgs) -> Result<()> {
    let source = args.data.source()?;
    let cells = labelled(&args.data, &source, args.window)?;
    let (text, names) = labloop_predict::train::features_csv(&cells);
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "{} cells, {} features ({}) written to {}",
        cells.len(),
        names.len(),
        source.describe(&args.data.exclude),
        args.out.display()
    );
    Ok(())
}

/// The cells `data` names with the features of their first `window` cycles; says on stderr how
/// many were left out and why.
fn labelled(
    data: &LabelledArgs,
    source: &CellSource,
    window: u32,
) -> Result<Vec<(String, LabelledCell)>> {
    let set = crate::commands::runtime()?.block_on(source.load(window, &data.exclude))?;
    for (n, why) in &set.left_out {
        if *n > 0 {
            eprintln!(
                "left out {n} cells of {} {why}",
                source.describe(&data.exclude)
            );
        }
    }
    Ok(set.cells)
}

fn train(args: &TrainArgs) -> Result<()> {
    let source = args.data.source()?;
    let named = labelled(&args.data, &source, args.window)?;
    let cells: Vec<LabelledCell> = named.iter().map(|(_, c)| c.clone()).collect();
    let trained_on = format!(
        "{} cells from {}, cycles 2-{}",
        cells.len(),
        source.describe(&args.data.exclude),
        args.window
    );
    let procedure = Procedure {
        model: &args.model,
        window: args.window,
        backend: args.backend,
        seed: args.seed,
    };
    let started = Instant::now();
    let mut model = procedure.fit(&cells, &trained_on)?;
    *model.capacities_mut() = Some(source.capacity_source());
    if let Some(table) = &args.batches {
        let batched = severson::with_batches(named, table)?;
        let directions = shift::measure_batch_sigma(&mut model, &batched, &procedure.fitter())?;
        print!("{}", report::directions_table(&args.model, &directions));
    }
    let seconds = started.elapsed().as_secs_f64();
    std::fs::write(&args.out, model.to_json() + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    let predictor = model.into_predictor();
    let m = evaluate(predictor.as_ref(), &cells)?;
    eprintln!(
        "wrote {} in {seconds:.1} s: {} on its {} training cells RMSE {:.0} cycles, MAPE {:.1} %",
        args.out.display(),
        predictor.name(),
        m.cells,
        m.rmse_cycles,
        m.mape_percent
    );
    Ok(())
}

/// A model file or a built-in model, with the backend for neural ones, to be fed cells whose
/// capacities are `fed`: a model trained on the other kind is biased, and the note says so.
fn load(model: &str, backend: Backend, fed: CapacitySource) -> Result<Box<dyn Predictor>> {
    let (predictor, fallback) = ModelFile::resolve(model)?.into_predictor_on(backend)?;
    if let Some(note) = capacity::mismatch(model, predictor.capacities_trained_on(), fed) {
        let fix = match fed {
            CapacitySource::Cycler => "leave out --capacities, or retrain with them",
            CapacitySource::Curve => "give the cycler's with --capacities, or retrain without",
        };
        eprintln!("note: {note}; {fix}");
    }
    if let Some(why) = fallback {
        eprintln!("computing on the CPU: {why}");
    }
    Ok(predictor)
}

fn eval(args: &EvalArgs) -> Result<()> {
    if args.split.is_some() {
        return eval_by_batch(args);
    }
    let name = args.model.as_deref().context("give --model")?;
    let source = args.data.source()?;
    let model = load(name, args.backend, source.capacity_source())?;
    let cells = labelled(&args.data, &source, model.window())?;
    let labelled: Vec<LabelledCell> = cells.iter().map(|(_, c)| c.clone()).collect();
    let features: Vec<FeatureSet> = labelled.iter().map(|c| c.features.clone()).collect();
    let predictions = model.predict(&features)?;
    for warning in report::domain_warnings(model.as_ref(), &cells_named(&cells), &predictions) {
        eprintln!("{warning}");
    }
    let m = score(&labelled, &predictions);
    let published = severson::published_rmse(model.name(), !args.data.exclude.is_empty());
    if args.json {
        let json = report::scores_json(model.as_ref(), &cells, &predictions, &m, published);
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", report::metrics_table(model.name(), &m, published));
    }
    Ok(())
}

fn predict(args: &RunArgs) -> Result<()> {
    let fed = if args.capacities.is_some() {
        CapacitySource::Cycler
    } else {
        CapacitySource::Curve
    };
    let model = load(&args.model, args.backend, fed)?;
    let cells = severson::load_unlabelled(
        &args.cells,
        model.window(),
        args.capacities.as_deref(),
        &args.exclude,
    )?;
    let features: Vec<FeatureSet> = cells.iter().map(|(_, f)| f.clone()).collect();
    let predictions = model.predict(&features)?;
    for warning in report::domain_warnings(model.as_ref(), &cells, &predictions) {
        eprintln!("{warning}");
    }
    if args.json {
        let json = report::predictions_json(model.as_ref(), &cells, &predictions);
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("{:<10} {:>12} {:>8}", "cell", "cycle life", "σ");
        for ((name, _), p) in cells.iter().zip(&predictions) {
            println!("{name:<10} {:>12.0} {:>8.0}", p.cycle_life, p.sigma);
        }
    }
    Ok(())
}

/// `(name, features)` of named labelled cells.
fn cells_named(cells: &[(String, LabelledCell)]) -> Vec<(String, FeatureSet)> {
    cells
        .iter()
        .map(|(n, c)| (n.clone(), c.features.clone()))
        .collect()
}

/// `predict eval --split by-batch`: for each model, both (all) directions and the adaptation curve.
fn eval_by_batch(args: &EvalArgs) -> Result<()> {
    let models = args
        .model
        .as_deref()
        .unwrap_or("variance,discharge,neural")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>();
    // Each set of cells is read once: with the cycler's capacities (for the discharge model of
    // the Severson data) or as given.
    let mut loaded: [Option<Vec<shift::BatchCell>>; 2] = [None, None];
    let mut report = Vec::new();
    for model in &models {
        let procedure = Procedure {
            model,
            window: 100,
            backend: args.backend,
            seed: 1,
        };
        let cycler_capacities = args.severson.is_some() && model == "discharge";
        let slot = &mut loaded[usize::from(cycler_capacities)];
        if slot.is_none() {
            *slot = Some(match (&args.severson, &args.batches) {
                (Some(dir), _) => severson::load_batches(dir, cycler_capacities, 100)?,
                (None, Some(table)) => {
                    severson::with_batches(labelled(&args.data, &args.data.source()?, 100)?, table)?
                }
                (None, None) => bail!(
                    "--split by-batch needs the cells' batches: --severson DIR, or --batches FILE \
                     with --cells and --lives (or --store)"
                ),
            });
        }
        let cells = slot.as_deref().unwrap_or_default();
        let shift = shift::shift_report(model, cells, &procedure.fitter())?;
        if !args.json {
            print!("{}", report::directions_table(model, &shift.directions));
            print!("{}", report::curve_text(&shift.adaptation));
        }
        report.push(shift);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// `predict adapt`: the model adapted to the labelled cells, written with its provenance.
fn adapt(args: &AdaptArgs) -> Result<()> {
    let mut file = ModelFile::resolve(&args.model)?;
    let source = args.data.source()?;
    let cells: Vec<LabelledCell> = labelled(&args.data, &source, file.window())?
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    let before = score(&cells, &shift::predict_cells(&file, &cells)?);
    let adapted_on = format!(
        "{} cells from {}",
        cells.len(),
        source.describe(&args.data.exclude)
    );
    let a = shift::adapt(&mut file, &cells, &adapted_on)?;
    std::fs::write(&args.out, file.to_json() + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    let after = score(&cells, &shift::predict_cells(&file, &cells)?);
    eprintln!(
        "wrote {}: batch offset {:+.3} ± {:.3} log10 cycles (×{:.2}), σ ×{:.2}; on its {} cells \
         RMSE {:.0} → {:.0} cycles",
        args.out.display(),
        a.offset_log10,
        a.offset_sigma_log10,
        10f64.powf(a.offset_log10),
        a.sigma_scale,
        cells.len(),
        before.rmse_cycles,
        after.rmse_cycles
    );
    Ok(())
}
