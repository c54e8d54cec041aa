//! `labloop bench optimize`: replays campaigns against a ground truth for many seeds and prints how
//! each strategy fares. The replay itself is `labloop_optimize::bench`; this file reads the truth and
//! wires the simulator in.

use anyhow::{Context, Result, bail};
use labloop_core::ChargeProtocol;
use labloop_engine::optimizer_settings;
use labloop_optimize::BayesGapSettings;
use labloop_optimize::bench::{
    Problem, Replay, ReplaySettings, Strategy, Summary, replay, summarize,
};
use labloop_predict::{EarlyData, LinearModel, Predictor};
use labloop_sim::{SimCell, expected_life};
use std::path::Path;

/// What the command line asked for.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Workflow file whose search space and optimizer (kernel, restarts, acquisition, exploration)
    /// labloop's strategy uses (default: `workflows/fast-charge-clo.yaml` as built in).
    #[arg(long)]
    pub space: Option<std::path::PathBuf>,
    /// `sim`, or a CSV truth table (one of `--truth` and `--suite`).
    #[arg(long, required_unless_present = "suite", conflicts_with = "suite")]
    pub truth: Option<String>,
    /// Replay over a suite of ground truths instead: `all`, `development`, `validation`, a family
    /// (`clo-table`, `simulator`, `gp-prior`, `test-function`, `formulation`), or `list`.
    #[arg(long)]
    pub suite: Option<String>,
    /// The published CLO table for the suite's `clo-table` landscape (skipped with a note when the
    /// default path does not exist).
    #[arg(
        long,
        default_value = "../shared/data/clo/clo_estimated_cycle_lives.csv"
    )]
    pub clo_table: std::path::PathBuf,
    /// Column of the truth table holding the true mean (default: the last).
    #[arg(long)]
    pub truth_column: Option<String>,
    /// Observation noise σ for a truth table (the CLO campaign used 164 cycles).
    #[arg(long, default_value_t = 164.0)]
    pub noise_sd: f64,
    /// Cells per round.
    #[arg(long, default_value_t = 48)]
    pub batch: usize,
    /// Rounds per campaign (with `--suite`, on every landscape).
    #[arg(long, default_value_t = 4)]
    pub rounds: u32,
    /// Seeds (campaigns) per strategy.
    #[arg(long, default_value_t = 50)]
    pub seeds: u64,
    /// Strategies to run (labloop, clo-reference, random); default all.
    #[arg(long = "strategy")]
    pub strategies: Vec<String>,
    /// Option overrides of labloop's strategy, `key=value` (see `labloop bench optimize --suite
    /// list`), to compare alternatives without editing a workflow.
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// One JSON object per strategy (per landscape with `--suite`) instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The strategies asked for (`--strategy`), all of them by default.
    pub(crate) fn strategies(&self) -> Result<Vec<Strategy>> {
        if self.strategies.is_empty() {
            return Ok(Strategy::ALL.to_vec());
        }
        self.strategies
            .iter()
            .map(|s| {
                Strategy::parse(s).with_context(|| {
                    format!("unknown strategy `{s}`: expected labloop, clo-reference or random")
                })
            })
            .collect()
    }
}

/// Where observations come from.
enum Truth {
    /// A table of true means; observations add Gaussian noise.
    Table { noise_sd: f64 },
    /// The simulator: each observation is the early prediction of a freshly simulated cell.
    Simulator {
        model: Box<LinearModel>,
        cycles: u32,
        discharge_c_rate: f64,
    },
}

/// Reads a truth table: header row, parameter columns named like the space's (`cc1`, `cc2`, ...), the
/// truth in `column` (default: the last). Returns the truth of each candidate.
pub(crate) fn read_table(
    path: &Path,
    column: Option<&str>,
    names: &[String],
    free: &[Vec<f64>],
) -> Result<Vec<f64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .with_context(|| format!("{}: empty file", path.display()))?;
    let header: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let params: Vec<usize> = names
        .iter()
        .map(|n| {
            find(n).with_context(|| {
                format!(
                    "{}:1: no column `{n}` (the space's parameters are {})",
                    path.display(),
                    names.join(", ")
                )
            })
        })
        .collect::<Result<_>>()?;
    let value_col = match column {
        Some(c) => {
            find(c).with_context(|| format!("{}:1: no truth column `{c}`", path.display()))?
        }
        None => header.len() - 1,
    };
    let mut rows: Vec<(Vec<f64>, f64)> = Vec::new();
    for (n, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let number = |col: usize| -> Result<f64> {
            let field = fields.get(col).copied().unwrap_or("");
            field.parse().with_context(|| {
                format!(
                    "{}:{}:{}: `{field}` is not a number",
                    path.display(),
                    n + 1,
                    col + 1
                )
            })
        };
        rows.push((
            params.iter().map(|&c| number(c)).collect::<Result<_>>()?,
            number(value_col)?,
        ));
    }
    free.iter()
        .map(|x| {
            rows.iter()
                .find(|(p, _)| p.iter().zip(x).all(|(a, b)| (a - b).abs() < 1e-3))
                .map(|(_, v)| *v)
                .with_context(|| format!("{}: no row for candidate {x:?}", path.display()))
        })
        .collect()
}

/// The CLO example workflow, built in: the suite's protocol grid and labloop's default strategy
/// when no `--space` is given.
const CLO_WORKFLOW: &str = include_str!("../../../workflows/fast-charge-clo.yaml");

/// A charge-protocol workflow's candidates: the protocols, labloop's inputs (all C-rates), the
/// free C-rates (the reference's inputs) and their column names.
pub(crate) struct ProtocolGrid {
    pub workflow: labloop_workflow::Workflow,
    pub protocols: Vec<ChargeProtocol>,
    pub inputs: Vec<Vec<f64>>,
    pub free: Vec<Vec<f64>>,
    pub names: Vec<String>,
}

impl ProtocolGrid {
    /// From `--space`, or the built-in CLO workflow.
    pub fn load(space: Option<&Path>) -> Result<Self> {
        let loaded = match space {
            Some(path) => labloop_workflow::load(path),
            None => {
                match labloop_workflow::parse(CLO_WORKFLOW, "fast-charge-clo.yaml (built in)") {
                    (Some(wf), problems) if problems.is_empty() => Ok(wf),
                    (_, problems) => Err(problems),
                }
            }
        };
        let workflow = loaded.map_err(|problems| {
            anyhow::anyhow!(
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        let space = workflow.protocol_space().ok_or_else(|| {
            anyhow::anyhow!("bench optimize replays charge-protocol campaigns only")
        })?;
        let protocols: Vec<ChargeProtocol> = space.enumerate();
        let inputs: Vec<Vec<f64>> = protocols.iter().map(ChargeProtocol::c_rates).collect();
        let free: Vec<Vec<f64>> = inputs
            .iter()
            .map(|x| x[..space.grids.len()].to_vec())
            .collect();
        let names: Vec<String> = (1..=space.grids.len()).map(|i| format!("cc{i}")).collect();
        Ok(Self {
            workflow,
            protocols,
            inputs,
            free,
            names,
        })
    }

    /// labloop's replay settings as a campaign of this workflow would run, with `overrides`
    /// applied; each seed sets its own seed, each landscape its own shape.
    pub fn template(
        &self,
        batch: usize,
        rounds: u32,
        overrides: &[String],
    ) -> Result<ReplaySettings> {
        let workflow = &self.workflow;
        let mut template = ReplaySettings {
            batch,
            rounds,
            seed: 0,
            fit: optimizer_settings::fit_options(workflow, &self.inputs),
            acquisition: optimizer_settings::acquisition(workflow),
            exploration: workflow.optimizer.exploration,
            reference: BayesGapSettings::default(),
            recommendation_sigmas: labloop_optimize::RECOMMENDATION_SIGMAS,
            knowledge_gradient_sigmas: labloop_optimize::KNOWLEDGE_GRADIENT_SIGMAS,
            design_spread: labloop_optimize::DESIGN_SPREAD,
            recommendation_trend_share: labloop_optimize::RECOMMENDATION_TREND_SHARE,
        };
        for o in overrides {
            template
                .apply(o)
                .map_err(|e| anyhow::anyhow!("--set {o}: {e}"))?;
        }
        Ok(template)
    }
}

pub fn optimize(args: &BenchArgs) -> Result<()> {
    if let Some(suite) = &args.suite {
        return crate::suite::suite(args, suite);
    }
    let grid = ProtocolGrid::load(args.space.as_deref())?;
    let ProtocolGrid {
        workflow,
        protocols,
        inputs,
        free,
        names,
    } = &grid;
    let truth_arg = args.truth.as_deref().unwrap_or("sim");
    let (truth_values, truth) = if truth_arg == "sim" {
        let cycle = workflow
            .cycle_step()
            .context("the workflow has no cycle step")?;
        let model = labloop_engine::resolve_model(
            &workflow
                .predict_step()
                .context("the workflow has no predict step")?
                .model,
        )?;
        (
            protocols.iter().map(expected_life).collect::<Vec<f64>>(),
            Truth::Simulator {
                model: Box::new(model),
                cycles: cycle.cycles,
                discharge_c_rate: cycle.discharge_c_rate,
            },
        )
    } else {
        (
            read_table(
                Path::new(truth_arg),
                args.truth_column.as_deref(),
                names,
                free,
            )?,
            Truth::Table {
                noise_sd: args.noise_sd,
            },
        )
    };
    let strategies = args.strategies()?;
    if args.batch == 0 || args.rounds == 0 || args.seeds == 0 {
        bail!("--batch, --rounds and --seeds must be at least 1");
    }
    let problem = Problem {
        inputs,
        reference_inputs: free,
        truth: &truth_values,
    };
    let template = grid.template(args.batch, args.rounds, &args.overrides)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut summaries: Vec<Summary> = Vec::new();
    for &strategy in &strategies {
        let seeds: Vec<u64> = (1..=args.seeds).collect();
        let replays: Vec<Replay> = std::thread::scope(|scope| {
            let handles: Vec<_> = seeds
                .chunks(seeds.len().div_ceil(threads))
                .map(|chunk| {
                    let (problem, truth, template) = (&problem, &truth, &template);
                    scope.spawn(move || -> Result<Vec<Replay>> {
                        chunk
                            .iter()
                            .map(|&seed| {
                                one_replay(strategy, problem, truth, protocols, template, seed)
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("replay thread"))
                .collect::<Result<Vec<Vec<Replay>>>>()
        })?
        .into_iter()
        .flatten()
        .collect();
        summaries.push(summarize(
            strategy,
            &replays,
            &truth_values,
            args.batch,
            0.03,
        ));
    }
    print(args, truth_arg, &summaries, &truth_values);
    Ok(())
}

/// One seed's campaign: the `template` settings with this seed.
fn one_replay(
    strategy: Strategy,
    problem: &Problem<'_>,
    truth: &Truth,
    protocols: &[ChargeProtocol],
    template: &ReplaySettings,
    seed: u64,
) -> Result<Replay> {
    let mut settings = template.clone();
    settings.seed = seed;
    settings.fit.seed = seed;
    // The same observation stream for every strategy under one seed.
    let mut rng = labloop_optimize::suite::observation_stream(seed);
    let mut observe = |i: usize| -> (f64, f64) {
        match truth {
            Truth::Table { noise_sd } => labloop_optimize::suite::noisy_observation(
                problem.truth[i],
                *noise_sd,
                0.0,
                &mut rng,
            ),
            Truth::Simulator {
                model,
                cycles,
                discharge_c_rate,
            } => {
                let cell = SimCell::new(&protocols[i], *discharge_c_rate, &mut rng);
                let window = model.window.min(*cycles);
                let records: Vec<_> = (1..=window).map(|c| cell.record(c, &mut rng)).collect();
                let prediction = EarlyData::from_records(&records, window)
                    .ok()
                    .and_then(|data| model.predict(&[data.features()]).ok())
                    .map(|p| p[0]);
                match prediction {
                    Some(p) => (p.cycle_life, p.sigma * p.sigma),
                    // A cell the model cannot read counts as a very uncertain observation.
                    None => (cell.life, 1e12),
                }
            }
        }
    };
    Ok(replay(strategy, problem, &settings, &mut observe)?)
}

fn print(args: &BenchArgs, truth_name: &str, summaries: &[Summary], truth: &[f64]) {
    if args.json {
        for s in summaries {
            println!("{}", serde_json::to_string(s).expect("summaries serialise"));
        }
        return;
    }
    let best = truth.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!(
        "truth: {} ({} candidates, best {best:.0}); batch {}, {} rounds, {} seeds; target: within 3 % of the best ({:.0})",
        truth_name,
        truth.len(),
        args.batch,
        args.rounds,
        args.seeds,
        best * 0.97
    );
    let fmt = |v: Option<f64>| {
        v.map_or(format!(">{}", args.batch * args.rounds as usize), |c| {
            format!("{c:.0}")
        })
    };
    println!(
        "{:<14} {:>14} {:>16} {:>8}  {:<40} {:>7} {:>10} {:>11}",
        "strategy",
        "cells to 3 %",
        "IQR",
        "reached",
        "mean true value of recommendation/round",
        "± s.e.",
        "regret",
        "suggest ms"
    );
    for s in summaries {
        let per_round = s
            .mean_true_value_per_round
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<14} {:>14} {:>16} {:>8}  {:<40} {:>7.1} {:>10.0} {:>11.1}",
            s.strategy.name(),
            fmt(s.median_cells_to_target),
            format!(
                "{}–{}",
                fmt(s.cells_to_target_iqr.0),
                fmt(s.cells_to_target_iqr.1)
            ),
            format!("{}/{}", s.reached_target, s.seeds),
            per_round,
            s.standard_error_per_round
                .last()
                .copied()
                .unwrap_or(f64::NAN),
            s.mean_simple_regret_per_round
                .last()
                .copied()
                .unwrap_or(f64::NAN),
            s.median_suggest_ms
        );
    }
    println!(
        "(± s.e.: standard error over seeds of the last round's mean; means closer than ~2 s.e. are not told apart)"
    );
    println!("\nshare of seeds whose recommendation is within 3 % after each round:");
    for s in summaries {
        let shares: Vec<String> = s
            .reached_per_round
            .iter()
            .map(|f| format!("{:>4.0} %", 100.0 * f))
            .collect();
        println!("{:<14} {}", s.strategy.name(), shares.join(" "));
    }
}
