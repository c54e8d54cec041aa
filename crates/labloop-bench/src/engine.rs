//! `labloop bench engine`: the engine's own cost per experiment step. A campaign of robot-built,
//! formed, cycled and predicted cells runs on simulated instruments whose clock is effectively
//! instant (10¹² simulated seconds per second), with random suggestions (no model fitting), so what
//! is left is the engine: step events written before each step acts, channel and robot locks,
//! idempotency-keyed instrument commands, every cycle record stored before the next is asked for.

use anyhow::{Context, Result};
use labloop_engine::{CampaignRunner, resolve_model};
use labloop_store::Store;
use std::sync::Arc;
use std::time::Instant;

/// What the command line asked for.
#[derive(clap::Args)]
pub struct EngineBenchArgs {
    /// Experiments per round (one channel each).
    #[arg(long, default_value_t = 48)]
    pub batch: u32,
    /// Rounds.
    #[arg(long, default_value_t = 4)]
    pub rounds: u32,
    /// Early cycles per experiment (the `cycle` step).
    #[arg(long, default_value_t = 100)]
    pub cycles: u32,
    /// Store URL (default: a fresh SQLite file in a temporary folder). A PostgreSQL URL measures that
    /// backend; the campaign `engine-bench-<pid>` is left in it.
    #[arg(long)]
    pub store: Option<String>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The workflow the bench runs: five steps per experiment.
fn workflow_text(args: &EngineBenchArgs, name: &str) -> String {
    format!(
        r#"campaign:
  name: {name}
  seed: 7
  objective: {{name: cycle_life, direction: maximize}}
  search_space:
    formulation:
      components:
        - {{name: EC, min: 0.1, max: 0.5}}
        - {{name: EMC, min: 0.5, max: 0.9}}
      candidates: {candidates}
optimizer:
  kind: random
  batch_size: {batch}
stopping:
  max_rounds: {rounds}
instruments:
  - name: cycler1
    channels: {batch}
    driver: sim
    clock_acceleration: 1e12
  - name: robot1
    kind: cell_builder
    driver: sim
    channels: 4
    clock_acceleration: 1e12
experiment:
  steps:
    - build_cell: {{robot: robot1}}
      resources: [robot1]
    - rest: {{duration: 6h}}
    - formation: {{cycles: 1, c_rate: 0.1}}
    - cycle:
        cycles: {cycles}
        discharge_c_rate: 1.0
        protocol: {{c_rates: [3.0], finish: {{c_rate: 1.0, cv_voltage_v: 3.6}}}}
    - predict: {{model: severson-variance}}
"#,
        batch = args.batch,
        rounds = args.rounds,
        cycles = args.cycles,
        candidates = (args.batch * args.rounds * 4).max(100),
    )
}

/// Runs the bench and prints its figures.
pub fn engine(args: &EngineBenchArgs) -> Result<()> {
    let name = format!("engine-bench-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let url = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/store.sqlite", dir.display()));
    let text = workflow_text(args, &name);
    let workflow = labloop_workflow::parse(&text, "engine-bench.yaml")
        .0
        .context("the bench workflow is valid")?;
    let steps_per_experiment = workflow.experiment.steps.len() as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (instruments, _) = rt.block_on(async {
        labloop_engine::instruments::build(&workflow, &url, &Default::default())
    })?;
    let model = resolve_model("severson-variance")?;
    let (result, elapsed) = rt.block_on(async {
        let store = Store::connect(&url).await?;
        let runner = CampaignRunner::new(
            workflow.clone(),
            text,
            store.clone(),
            instruments,
            Arc::new(model),
        );
        let start = Instant::now();
        let result = runner.run().await?;
        let elapsed = start.elapsed().as_secs_f64();
        store.close().await;
        anyhow::Ok((result, elapsed))
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    let experiments = result.cells as u64;
    let steps = experiments * steps_per_experiment;
    let figures = serde_json::json!({
        "store": labloop_store::redact(&url).split("://").next().unwrap_or(""),
        "experiments": experiments,
        "steps": steps,
        "cycle_records": result.records,
        "wall_s": elapsed,
        "steps_per_s": steps as f64 / elapsed,
        "ms_per_step": 1e3 * elapsed / steps as f64,
        "records_per_s": result.records as f64 / elapsed,
        "experiments_in_parallel": args.batch,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!(
            "engine bench ({} store, instant simulated clock, random suggestions): {} experiments × {} steps = {} steps and {} cycle records in {:.2} s",
            figures["store"].as_str().unwrap_or(""),
            experiments,
            steps_per_experiment,
            steps,
            result.records,
            elapsed
        );
        println!(
            "  {:.0} steps/s ({:.2} ms of wall time per step, {} experiments in parallel); {:.0} cycle records stored/s",
            figures["steps_per_s"].as_f64().unwrap_or(0.0),
            figures["ms_per_step"].as_f64().unwrap_or(0.0),
            args.batch,
            figures["records_per_s"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
