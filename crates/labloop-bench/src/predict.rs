//! `labloop bench predict`: the lifetime predictor's speed. Featurizing (Qdlin arrays already in
//! memory → features), predicting (features → life and σ) in batches, and training, per model and
//! per backend (the CPU; the GPU too when built with `gpu` and an adapter initialises), with the
//! GPU/CPU ratio.

use anyhow::{Context, Result};
use labloop_predict::train::DISCHARGE_FEATURES;
use labloop_predict::{
    Backend, Compute, FeatureSet, LinearModel, NeuralModel, NeuralOptions, builtin_model,
    fit_neural, severson,
};
use std::path::PathBuf;
use std::time::Instant;

/// What the command line asked for.
#[derive(clap::Args)]
pub struct PredictBenchArgs {
    /// The `severson` data folder (train/, test1/, cycle_lives/).
    #[arg(long, default_value = "../shared/data/severson")]
    pub data: PathBuf,
    /// Cells per prediction batch (the test cells repeated).
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark and prints its figures.
pub fn predict(args: &PredictBenchArgs) -> Result<()> {
    let arrays = read_arrays(&args.data.join("test1"))?;
    let started = Instant::now();
    let mut features = Vec::with_capacity(arrays.len());
    for rows in &arrays {
        features.push(severson::early_data_from_qdlin(rows, 100, None)?.features());
    }
    let featurize_cells_per_s = arrays.len() as f64 / started.elapsed().as_secs_f64();
    let batch: Vec<FeatureSet> = features.iter().cycle().take(args.batch).cloned().collect();

    let train = severson::load_split(&args.data, "train", 100)?;
    let mut rows = Vec::new();
    let mut line = |model: &str, backend: &str, train_s: Option<f64>, per_s: f64| {
        rows.push(serde_json::json!({
            "model": model, "backend": backend, "train_s": train_s, "predict_cells_per_s": per_s,
        }));
    };
    for name in ["severson-variance", "severson-discharge"] {
        let model: LinearModel = builtin_model(name).context("built-in model")?;
        line(
            name,
            "cpu",
            None,
            throughput(|| model_predict(&model, &batch)),
        );
    }
    let mut neural_rates = Vec::new();
    for backend in [Backend::Cpu, Backend::Gpu] {
        let Ok(compute) = Compute::select(backend) else {
            continue;
        };
        let options = NeuralOptions::new("neural", &DISCHARGE_FEATURES, 100, "bench");
        let started = Instant::now();
        let model: NeuralModel = fit_neural(&train, &options, &compute)?;
        let train_s = started.elapsed().as_secs_f64();
        let tag = format!("{backend:?}").to_lowercase();
        let rate = throughput(|| {
            model
                .predict_on(&batch, &compute)
                .map(|p| p.len())
                .unwrap_or(0)
        });
        neural_rates.push(rate);
        line("neural", &tag, Some(train_s), rate);
    }
    let gpu_over_cpu = (neural_rates.len() == 2).then(|| neural_rates[1] / neural_rates[0]);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "featurize_cells_per_s": featurize_cells_per_s,
                "batch": args.batch,
                "models": rows,
                "neural_gpu_over_cpu": gpu_over_cpu,
            }))?
        );
        return Ok(());
    }
    println!("featurize (Qdlin 1000×99 in memory → features): {featurize_cells_per_s:.0} cells/s");
    println!("predict, batches of {} cells:", args.batch);
    println!(
        "{:<20} {:<5} {:>10} {:>16}",
        "model", "on", "train s", "cells/s"
    );
    for r in &rows {
        println!(
            "{:<20} {:<5} {:>10} {:>16.0}",
            r["model"].as_str().unwrap_or(""),
            r["backend"].as_str().unwrap_or(""),
            r["train_s"]
                .as_f64()
                .map_or("-".to_owned(), |t| format!("{t:.2}")),
            r["predict_cells_per_s"].as_f64().unwrap_or(0.0)
        );
    }
    match gpu_over_cpu {
        Some(ratio) => println!("neural GPU / CPU prediction throughput: {ratio:.2}x"),
        None => println!("neural on the GPU: no adapter (or built without the `gpu` feature)"),
    }
    Ok(())
}

fn model_predict(model: &LinearModel, batch: &[FeatureSet]) -> usize {
    use labloop_predict::Predictor;
    model.predict(batch).map(|p| p.len()).unwrap_or(0)
}

/// Cells per second of `predict_batch` (which returns how many cells it predicted), repeated for at
/// least half a second after one warm-up call.
fn throughput(mut predict_batch: impl FnMut() -> usize) -> f64 {
    predict_batch();
    let started = Instant::now();
    let mut cells = 0;
    while started.elapsed().as_secs_f64() < 0.5 {
        cells += predict_batch();
    }
    cells as f64 / started.elapsed().as_secs_f64()
}

/// Every cellN.csv of a folder as rows of numbers, read before the clock starts.
fn read_arrays(dir: &std::path::Path) -> Result<Vec<Vec<Vec<f64>>>> {
    let mut arrays = Vec::new();
    for n in 1.. {
        let path = dir.join(format!("cell{n}.csv"));
        if !path.exists() {
            break;
        }
        arrays.push(severson::read_numbers_rows(&path)?);
    }
    anyhow::ensure!(!arrays.is_empty(), "no cellN.csv in {}", dir.display());
    Ok(arrays)
}
