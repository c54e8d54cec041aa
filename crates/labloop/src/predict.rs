//! `labloop predict train|eval|run`: lifetime models from the command line. Cells are `Qdlin` arrays
//! (`DIR/cellN.csv`, as in the Severson et al. data) and lives one cycle life per line.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use labloop_predict::train::{
    DISCHARGE_FEATURES, FULL_FEATURES, LabelledCell, Metrics, TrainOptions, VARIANCE_FEATURES,
    evaluate, fit_elastic_net, score,
};
use labloop_predict::{
    Backend, Compute, DQ_CURVE_FEATURES, FeatureSet, ModelFile, NeuralOptions, Prediction,
    Predictor, fit_neural, severson, shift,
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

/// Provenance wording for capacities read off the arrays at 2.0 V.
const CAPACITIES_AT_2V: &str = "capacities at 2.0 V";
/// Provenance wording for the cycler's capacities given with `--capacities`.
const CYCLER_CAPACITIES: &str = "cycler capacities";
/// Provenance wording for cells from a store (their capacities are the cycler's, per record).
const FROM_STORE: &str = "observed ends of life";

impl LabelledArgs {
    /// Where the cells came from, for a model's provenance.
    fn describe(&self) -> String {
        let source = match (&self.store, &self.campaign, &self.cells, &self.lives) {
            (Some(store), None, _, Some(lives)) if self.dataset.is_some() => format!(
                "dataset {} in {} ({CYCLER_CAPACITIES}, lives {})",
                self.dataset.as_deref().unwrap_or_default(),
                labloop_store::redact(store),
                if lives.as_os_str() == "observed" {
                    format!("observed, end of life {}", self.eol)
                } else {
                    lives.display().to_string()
                }
            ),
            (Some(store), Some(campaign), _, _) => format!(
                "campaign {campaign} in {} ({FROM_STORE})",
                labloop_store::redact(store)
            ),
            (_, _, Some(cells), Some(lives)) => {
                let capacities = self.capacities.as_ref().map_or_else(
                    || CAPACITIES_AT_2V.to_owned(),
                    |c| format!("{CYCLER_CAPACITIES} {}", c.display()),
                );
                format!(
                    "{} (lives {}, {capacities})",
                    cells.display(),
                    lives.display()
                )
            }
            _ => "?".to_owned(),
        };
        if self.exclude.is_empty() {
            source
        } else {
            format!("{source}, without {}", self.exclude.join(", "))
        }
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
    let cells = labelled(&args.data, args.window)?;
    let mut names: Vec<&'static str> = Vec::new();
    for (_, cell) in &cells {
        for (name, _) in cell.features.iter() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut text = format!("cell,{},cycle_life\n", names.join(","));
    for (cell_name, cell) in &cells {
        let values: std::collections::HashMap<&str, f64> = cell.features.iter().collect();
        let row: Vec<String> = names
            .iter()
            .map(|n| {
                values
                    .get(n)
                    .filter(|v| v.is_finite())
                    .map_or(String::new(), |v| format!("{v}"))
            })
            .collect();
        text.push_str(&format!(
            "{cell_name},{},{}\n",
            row.join(","),
            cell.cycle_life
        ));
    }
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "{} cells, {} features ({}) written to {}",
        cells.len(),
        names.len(),
        args.data.describe(),
        args.out.display()
    );
    Ok(())
}

fn labelled(data: &LabelledArgs, window: u32) -> Result<Vec<(String, LabelledCell)>> {
    let cells = match (&data.store, &data.campaign, &data.cells, &data.lives) {
        (Some(store), None, None, Some(lives)) if data.dataset.is_some() => from_dataset(
            store,
            data.dataset.as_deref().unwrap_or_default(),
            lives,
            &data.eol,
            window,
        )?,
        (Some(store), Some(campaign), _, _) => from_store(store, campaign, window)?,
        (_, _, Some(cells), Some(lives)) => {
            // Exclusions are applied while loading: capacity rows follow the cells used.
            return Ok(severson::ArraySet {
                cells,
                lives,
                capacities: data.capacities.as_deref(),
                exclude: &data.exclude,
            }
            .load(window)?);
        }
        _ => bail!(
            "give --cells and --lives, --store and --campaign, or --store, --dataset and --lives"
        ),
    };
    for name in &data.exclude {
        if !cells.iter().any(|(n, _)| n == name) {
            bail!(
                "--exclude {name}: no such cell in {} ({} cells)",
                data.describe(),
                cells.len()
            );
        }
    }
    Ok(cells
        .into_iter()
        .filter(|(name, _)| !data.exclude.contains(name))
        .collect())
}

/// A campaign's cells with an observed (not censored) end of life, named by experiment id, with
/// the features of their early window (`labloop_engine::training`).
fn from_store(url: &str, campaign: &str, window: u32) -> Result<Vec<(String, LabelledCell)>> {
    crate::commands::runtime()?.block_on(async {
        let store = labloop_store::Store::open(url).await?;
        let set = labloop_engine::training::campaign_cells(&store, campaign, window).await?;
        store.close().await;
        report_left_out(&set.left_out, campaign);
        if set.cells.is_empty() {
            bail!(
                "campaign {campaign} has no cell with an observed end of life (a cycle_to_eol step \
                 records them)"
            );
        }
        Ok(set.cells)
    })
}

fn report_left_out(left_out: &[(usize, &str)], source: &str) {
    for (n, why) in left_out {
        if *n > 0 {
            eprintln!("left out {n} cells of {source} {why}");
        }
    }
}

/// An imported dataset's cells with their lives (`observed` from their own fade, or a `cell,life`
/// CSV) and the features of their first `window` cycles.
fn from_dataset(
    url: &str,
    dataset: &str,
    lives: &std::path::Path,
    eol: &str,
    window: u32,
) -> Result<Vec<(String, LabelledCell)>> {
    use labloop_engine::training::Lives;
    use labloop_predict::life::EndOfLife;
    let lives = if lives.as_os_str() == "observed" {
        Lives::Observed(match eol.strip_suffix("Ah") {
            Some(ah) => EndOfLife::Capacity(ah.trim().parse().context("--eol 0.88Ah")?),
            None => EndOfLife::Fraction(eol.parse().context("--eol: a fraction (0.8) or 0.88Ah")?),
        })
    } else {
        let text = std::fs::read_to_string(lives)
            .with_context(|| format!("reading {}", lives.display()))?;
        let mut map = std::collections::HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let Some((cell, life)) = line.split_once(',') else {
                continue;
            };
            match life.trim().parse::<f64>() {
                Ok(l) if l > 0.0 => {
                    map.insert(cell.trim().to_owned(), l);
                }
                _ if n == 0 => {} // a header
                _ => bail!(
                    "{}:{}: `{}` is not a cycle life",
                    lives.display(),
                    n + 1,
                    life.trim()
                ),
            }
        }
        Lives::Given(map)
    };
    crate::commands::runtime()?.block_on(async {
        let store = labloop_store::Store::open(url).await?;
        let set = labloop_engine::training::dataset_cells(&store, dataset, &lives, window).await?;
        store.close().await;
        let Some(set) = set else {
            bail!("no dataset {dataset} in {}", labloop_store::redact(url));
        };
        report_left_out(&set.left_out, dataset);
        if set.cells.is_empty() {
            bail!("dataset {dataset} has no cell to train on");
        }
        Ok(set.cells)
    })
}

/// How a model is trained, by the name `predict train --model` takes.
#[derive(Clone, Copy)]
struct Procedure<'a> {
    /// variance, discharge, full, neural or neural-curve.
    model: &'a str,
    window: u32,
    backend: Backend,
    seed: u64,
}

impl Procedure<'_> {
    /// Fits the model on `cells`; `trained_on` is its provenance.
    fn fit(&self, cells: &[LabelledCell], trained_on: &str) -> Result<ModelFile> {
        let linear = |name: &str, features: &[&str]| -> Result<ModelFile> {
            let options = TrainOptions::severson(
                &format!("severson-{name}"),
                features,
                self.window,
                trained_on,
            );
            let fitted = fit_elastic_net(cells, &options).with_context(|| {
                if name == "full" {
                    "the full model needs charge time, temperature and internal resistance, which \
                     Qdlin arrays do not carry"
                        .to_owned()
                } else {
                    format!("training {name}")
                }
            })?;
            Ok(ModelFile::Linear(fitted))
        };
        let neural = |features: Vec<&str>| -> Result<ModelFile> {
            let compute = Compute::select(self.backend).map_err(anyhow::Error::msg)?;
            let mut options = NeuralOptions::new(self.model, &features, self.window, trained_on);
            options.seed = self.seed;
            Ok(ModelFile::Neural(fit_neural(cells, &options, &compute)?))
        };
        match self.model {
            "variance" => linear("variance", &VARIANCE_FEATURES),
            "discharge" => linear("discharge", &DISCHARGE_FEATURES),
            "full" => linear("full", &FULL_FEATURES),
            "neural" => neural(DISCHARGE_FEATURES.to_vec()),
            "neural-curve" => neural(
                DISCHARGE_FEATURES
                    .iter()
                    .chain(DQ_CURVE_FEATURES.iter())
                    .copied()
                    .collect(),
            ),
            other => bail!(
                "unknown model `{other}`: expected variance, discharge, full, neural or neural-curve"
            ),
        }
    }

    /// [`Self::fit`] as the by-batch split calls it.
    fn fitter(
        &self,
    ) -> impl Fn(&[LabelledCell]) -> Result<ModelFile, labloop_predict::PredictError> + '_ {
        move |cells| {
            self.fit(cells, "by-batch split")
                .map_err(|e| labloop_predict::PredictError::Training(format!("{e:#}")))
        }
    }
}

fn train(args: &TrainArgs) -> Result<()> {
    let named = labelled(&args.data, args.window)?;
    let cells: Vec<LabelledCell> = named.iter().map(|(_, c)| c.clone()).collect();
    let trained_on = format!(
        "{} cells from {}, cycles 2-{}",
        cells.len(),
        args.data.describe(),
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
    if let Some(table) = &args.batches {
        let batched = severson::with_batches(named, table)?;
        let directions = shift::measure_batch_sigma(&mut model, &batched, &procedure.fitter())?;
        print_directions(&args.model, &directions);
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

/// A model file or a built-in model, with the backend for neural ones. `array_capacities` says,
/// for cells read from arrays, whether the cycler's capacities were given (see
/// [`warn_on_capacity_mismatch`]); `None` for cells from a store.
fn load(
    model: &str,
    backend: Backend,
    array_capacities: Option<bool>,
) -> Result<Box<dyn Predictor>> {
    let file = ModelFile::resolve(model)?;
    if let Some(capacities_given) = array_capacities {
        warn_on_capacity_mismatch(model, &file, capacities_given);
    }
    Ok(match file {
        ModelFile::Linear(m) => Box::new(m),
        ModelFile::Neural(m) => {
            let compute = Compute::select(backend).map_err(anyhow::Error::msg)?;
            if let Some(why) = &compute.fallback {
                eprintln!("computing on the CPU: {why}");
            }
            Box::new(OnDevice { model: m, compute })
        }
    })
}

/// A neural model bound to the device the user chose.
struct OnDevice {
    model: labloop_predict::NeuralModel,
    compute: Compute,
}

impl Predictor for OnDevice {
    fn name(&self) -> &str {
        &self.model.name
    }

    fn window(&self) -> u32 {
        self.model.window
    }

    fn predict(
        &self,
        cells: &[FeatureSet],
    ) -> Result<Vec<Prediction>, labloop_predict::PredictError> {
        self.model.predict_on(cells, &self.compute)
    }

    fn trust(&self) -> Option<&labloop_predict::Trust> {
        self.model.trust.as_ref()
    }

    fn model_file(&self) -> Option<ModelFile> {
        Some(ModelFile::Neural(self.model.clone()))
    }
}

/// Published primary-test RMSE (Severson et al. 2019, Table 1): without the outlier cell when the
/// evaluation leaves cells out (`--exclude cell22`), else with it.
fn published_rmse(model: &str, outlier_left_out: bool) -> Option<f64> {
    match (model, outlier_left_out) {
        ("severson-variance", _) => Some(138.0),
        ("severson-discharge", true) => Some(86.0),
        ("severson-discharge", false) => Some(91.0),
        ("severson-full", true) => Some(100.0),
        ("severson-full", false) => Some(118.0),
        // The best published figure on this split we know of (Nature Machine Intelligence 2025).
        ("severson-neural" | "neural", true) => Some(63.0),
        _ => None,
    }
}

/// A model whose capacity features were trained on one kind of capacity (the cycler's, or read off
/// the arrays at 2.0 V) but is fed the other is biased (~14 mAh on the Severson cells): say so.
fn warn_on_capacity_mismatch(model: &str, file: &ModelFile, capacities_given: bool) {
    let (features, trained_on) = match file {
        ModelFile::Linear(m) => (&m.features, &m.trained_on),
        ModelFile::Neural(m) => (&m.features, &m.trained_on),
    };
    if let Some(note) = capacity_mismatch(model, features, trained_on, capacities_given) {
        eprintln!("{note}");
    }
}

/// The note [`warn_on_capacity_mismatch`] prints, if any: a model with capacity features (`qd_…`)
/// trained on one kind of capacity (its provenance `trained_on` says which) but fed the other.
fn capacity_mismatch(
    model: &str,
    features: &[String],
    trained_on: &str,
    capacities_given: bool,
) -> Option<String> {
    if !features.iter().any(|f| f.starts_with("qd_")) {
        return None;
    }
    let on_cycler = trained_on.contains(CYCLER_CAPACITIES) || trained_on.contains(FROM_STORE);
    let at_2v = trained_on.contains(CAPACITIES_AT_2V);
    if !((on_cycler && !capacities_given) || (at_2v && capacities_given)) {
        return None;
    }
    let (kind, fix) = if capacities_given {
        (
            "the cycler's",
            "leave out --capacities, or retrain with them",
        )
    } else {
        (
            "read off the arrays at 2.0 V",
            "give the cycler's with --capacities, or retrain without",
        )
    };
    Some(format!(
        "note: {model} reads discharge capacities and was trained on {trained_on}, but these \
         cells' capacities are {kind}: its predictions are biased; {fix}"
    ))
}

fn eval(args: &EvalArgs) -> Result<()> {
    if args.split.is_some() {
        return eval_by_batch(args);
    }
    let name = args.model.as_deref().context("give --model")?;
    let arrays = args.data.cells.is_some();
    let model = load(
        name,
        args.backend,
        arrays.then_some(args.data.capacities.is_some()),
    )?;
    let cells = labelled(&args.data, model.window())?;
    let labelled: Vec<LabelledCell> = cells.iter().map(|(_, c)| c.clone()).collect();
    let features: Vec<FeatureSet> = labelled.iter().map(|c| c.features.clone()).collect();
    let predictions = model.predict(&features)?;
    warn_out_of_domain(model.as_ref(), &cells_named(&cells), &predictions);
    let m = score(&labelled, &predictions);
    let published = published_rmse(model.name(), !args.data.exclude.is_empty());
    if args.json {
        let per_cell: Vec<serde_json::Value> = cells
            .iter()
            .zip(&predictions)
            .map(|((name, cell), p)| {
                let mut row = prediction_json(model.as_ref(), name, &cell.features, p);
                row["observed"] = serde_json::json!(cell.cycle_life);
                row
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": model.name(),
                "cells": m.cells,
                "rmse_cycles": m.rmse_cycles,
                "mape_percent": m.mape_percent,
                "within_1_sigma": m.within_1_sigma,
                "within_2_sigma": m.within_2_sigma,
                "published_rmse_cycles": published,
                "predictions": per_cell,
            }))?
        );
    } else {
        print_table(model.name(), &m, published);
    }
    Ok(())
}

/// One cell's prediction as `--json` prints it; an out-of-domain cell carries its domain check
/// (`domain`: the Mahalanobis distance and its limit, each feature outside its range and by how
/// many training σ).
fn prediction_json(
    model: &dyn Predictor,
    cell: &str,
    features: &FeatureSet,
    p: &Prediction,
) -> serde_json::Value {
    let mut row = serde_json::json!({
        "cell": cell,
        "cycle_life": p.cycle_life,
        "sigma": p.sigma,
        "log10_life": p.log10_life,
        "sigma_log10": p.sigma_log10,
        "out_of_domain": p.out_of_domain,
    });
    if let (true, Some(trust)) = (p.out_of_domain, model.trust()) {
        row["domain"] = serde_json::json!(trust.domain.check(features));
    }
    row
}

fn print_table(name: &str, m: &Metrics, published: Option<f64>) {
    println!(
        "{:<20} {:>5} {:>12} {:>8} {:>8} {:>8} {:>14}",
        "model", "cells", "RMSE cycles", "MAPE %", "in ±1σ", "in ±2σ", "paper RMSE"
    );
    println!(
        "{:<20} {:>5} {:>12.0} {:>8.1} {:>7.0}% {:>7.0}% {:>14}",
        name,
        m.cells,
        m.rmse_cycles,
        m.mape_percent,
        100.0 * m.within_1_sigma,
        100.0 * m.within_2_sigma,
        published.map_or("-".to_owned(), |r| format!("{r:.0}"))
    );
}

fn predict(args: &RunArgs) -> Result<()> {
    let model = load(&args.model, args.backend, Some(args.capacities.is_some()))?;
    let cells = severson::load_unlabelled(
        &args.cells,
        model.window(),
        args.capacities.as_deref(),
        &args.exclude,
    )?;
    let features: Vec<FeatureSet> = cells.iter().map(|(_, f)| f.clone()).collect();
    let predictions = model.predict(&features)?;
    warn_out_of_domain(model.as_ref(), &cells, &predictions);
    if args.json {
        let rows: Vec<serde_json::Value> = cells
            .iter()
            .zip(&predictions)
            .map(|((name, features), p)| prediction_json(model.as_ref(), name, features, p))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": model.name(),
                "predictions": rows,
            }))?
        );
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

/// Says on stderr which cells lie outside the model's training domain, by which features and how
/// far, and what σ they were given; or that the model cannot tell (a file without a domain).
fn warn_out_of_domain(
    model: &dyn Predictor,
    cells: &[(String, FeatureSet)],
    predictions: &[Prediction],
) {
    if model.trust().is_none() {
        eprintln!(
            "warning: {} records no training domain (an old model file): it cannot tell an \
             extrapolation; retrain it with `labloop predict train`",
            model.name()
        );
        return;
    }
    let mut flagged = 0;
    for ((name, features), p) in cells.iter().zip(predictions) {
        if let Some(why) = labloop_predict::out_of_domain_reason(model, features, p) {
            flagged += 1;
            eprintln!(
                "warning: {name} is outside {}'s training domain ({why}): predicted {:.0} ± {:.0} \
                 cycles, σ widened for the extrapolation",
                model.name(),
                p.cycle_life,
                p.sigma
            );
        }
    }
    if flagged > 0 {
        eprintln!(
            "warning: {flagged} of {} cells are out of {}'s domain",
            cells.len(),
            model.name()
        );
    }
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
                (None, Some(table)) => severson::with_batches(labelled(&args.data, 100)?, table)?,
                (None, None) => bail!(
                    "--split by-batch needs the cells' batches: --severson DIR, or --batches FILE \
                     with --cells and --lives (or --store)"
                ),
            });
        }
        let cells = slot.as_deref().unwrap_or_default();
        let held_out = shift::hold_out_each_batch(cells, &procedure.fitter())?;
        let directions = shift::directions(&held_out)?;
        let curve = shift::adaptation_curve(&held_out, &[0, 1, 2, 5, 10], 20, 7)?;
        if !args.json {
            print_directions(model, &directions);
            print_curve(&curve);
        }
        report.push(serde_json::json!({
            "model": model, "cells": cells.len(), "directions": directions,
            "batch_sigma_log10": shift::batch_sigma(&directions), "adaptation": curve,
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

fn print_directions(model: &str, directions: &[shift::Direction]) {
    println!(
        "{:<12} {:<12} {:>6} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8}",
        "model", "scored on", "train", "cells", "RMSE", "MAPE %", "in ±1σ", "in ±2σ", "offset"
    );
    for d in directions {
        let m = &d.metrics;
        println!(
            "{:<12} {:<12} {:>6} {:>6} {:>7.0} {:>7.1} {:>6.0}% {:>7.0}% {:>+8.3}   {:.0} % out of domain",
            model,
            d.scored_on,
            d.trained_cells,
            m.cells,
            m.rmse_cycles,
            m.mape_percent,
            100.0 * m.within_1_sigma,
            100.0 * m.within_2_sigma,
            d.bias_log10,
            100.0 * d.out_of_domain
        );
    }
    println!(
        "batch σ (root mean square of the offsets): {:.3} log10 cycles",
        shift::batch_sigma(directions)
    );
}

fn print_curve(curve: &[shift::CurvePoint]) {
    println!("adapted to k labelled cells of the held-out batch (mean over batches and 20 draws):");
    for p in curve {
        println!(
            "  k = {:>2}: RMSE {:>5.0} cycles, in ±1σ {:>3.0} %, in ±2σ {:>3.0} %",
            p.labelled,
            p.rmse_cycles,
            100.0 * p.within_1_sigma,
            100.0 * p.within_2_sigma
        );
    }
}

/// `predict adapt`: the model adapted to the labelled cells, written with its provenance.
fn adapt(args: &AdaptArgs) -> Result<()> {
    let mut file = ModelFile::resolve(&args.model)?;
    let cells: Vec<LabelledCell> = labelled(&args.data, file.window())?
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    let before = score(&cells, &shift::predict_cells(&file, &cells)?);
    let adapted_on = format!("{} cells from {}", cells.len(), args.data.describe());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each provenance `describe` writes is recognised: arrays with and without the cycler's
    /// capacities, and cells from a store (whose capacities are the cycler's).
    #[test]
    fn a_capacity_mismatch_is_told_for_every_provenance() {
        let qd = ["qd_2".to_owned(), "variance".to_owned()];
        let args = |capacities: Option<&str>, store: bool| LabelledArgs {
            cells: (!store).then(|| PathBuf::from("cells")),
            lives: (!store).then(|| PathBuf::from("lives.txt")),
            capacities: capacities.map(PathBuf::from),
            store: store.then(|| "sqlite:///x.sqlite".to_owned()),
            campaign: store.then(|| "clo".to_owned()),
            dataset: None,
            eol: "0.8".to_owned(),
            exclude: Vec::new(),
        };
        let cases = [
            (args(Some("caps.csv"), false), false, true),
            (args(Some("caps.csv"), false), true, false),
            (args(None, false), true, true),
            (args(None, false), false, false),
            (args(None, true), false, true),
            (args(None, true), true, false),
        ];
        for (trained, fed_cycler_capacities, warned) in cases {
            let trained_on = trained.describe();
            let note = capacity_mismatch("m", &qd, &trained_on, fed_cycler_capacities);
            assert_eq!(
                note.is_some(),
                warned,
                "{trained_on}, fed cycler: {fed_cycler_capacities}"
            );
        }
        // Without capacity features there is nothing to warn about.
        let plain = ["variance".to_owned()];
        assert!(capacity_mismatch("m", &plain, &args(None, true).describe(), false).is_none());
    }
}
