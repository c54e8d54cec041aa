//! Replaying campaigns against a known ground truth, to compare strategies: how many cells each needs
//! before its recommendation is within a few per cent of the true best, and how good its
//! recommendation is after each round. Pure: observations come from a caller's closure.

use crate::OptimizeError;
use crate::batch::{Acquisition, BatchRequest, suggest_batch};
use crate::bayesgap::{BayesGapSettings, bayesgap_batch, bayesgap_recommend};
use crate::gp::{FitOptions, GaussianProcess, Observation};
use crate::kernel::KernelKind;
use crate::rank::{rank_by, recommendation_fit};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use serde::Serialize;
use std::time::Instant;

/// A strategy to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// labloop: GP with fitted hyperparameters, batches by [`ReplaySettings::acquisition`] (a
    /// workflow's default: the knowledge gradient), recommendation by the posterior's two-σ lower bound
    /// ([`crate::rank`]).
    Labloop,
    /// The published closed-loop algorithm (BayesGap, Attia et al. 2020).
    CloReference,
    /// Uniformly random batches; recommendation as labloop's ([`crate::rank`]).
    Random,
}

impl Strategy {
    /// All strategies, in report order.
    pub const ALL: [Strategy; 3] = [Strategy::Labloop, Strategy::CloReference, Strategy::Random];

    /// The strategy's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Labloop => "labloop",
            Self::CloReference => "clo-reference",
            Self::Random => "random",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A discrete problem with its ground truth.
#[derive(Clone, Copy, Debug)]
pub struct Problem<'a> {
    /// Each candidate's inputs as labloop's surrogate sees them.
    pub inputs: &'a [Vec<f64>],
    /// Each candidate's inputs as the reference sees them (the paper's raw free C-rates).
    pub reference_inputs: &'a [Vec<f64>],
    /// True mean objective of each candidate (larger is better).
    pub truth: &'a [f64],
}

/// How to replay.
#[derive(Clone, Debug)]
pub struct ReplaySettings {
    /// Cells per round.
    pub batch: usize,
    /// Rounds.
    pub rounds: u32,
    /// Seed of the strategy's own randomness.
    pub seed: u64,
    /// labloop's surrogate.
    pub fit: FitOptions,
    /// labloop's batch acquisition.
    pub acquisition: Acquisition,
    /// UCB weight κ on the posterior standard deviation (used by [`Acquisition::Ucb`] only).
    pub exploration: f64,
    /// The reference's settings.
    pub reference: BayesGapSettings,
    /// labloop's recommendation: the best `mean − k sd` ([`crate::rank_by`]); campaigns use
    /// [`crate::RECOMMENDATION_SIGMAS`].
    pub recommendation_sigmas: f64,
    /// The value the knowledge gradient raises: the best `mean − k sd`; campaigns use
    /// [`crate::KNOWLEDGE_GRADIENT_SIGMAS`].
    pub knowledge_gradient_sigmas: f64,
    /// The first batch's design spread; campaigns use [`crate::DESIGN_SPREAD`].
    pub design_spread: f64,
    /// The linear trend's share in the recommendation's surrogate ([`crate::recommendation_fit`]);
    /// campaigns use [`crate::RECOMMENDATION_TREND_SHARE`].
    pub recommendation_trend_share: f64,
}

impl ReplaySettings {
    /// Applies one `key=value` override of labloop's strategy: `acquisition` (thompson, ucb,
    /// log_ei, knowledge_gradient, portfolio), `kernel` (matern52, rbf), `restarts`,
    /// `exploration`, `recommendation_sigmas`, `knowledge_gradient_sigmas`, `design_spread`, and
    /// the fit's priors `length_prior`, `signal_prior`, `noise_prior` (each `centre,spread` of the
    /// log), `signal_excess_floor` (a number, or `off`), `trend_share` (both surrogates'),
    /// `recommendation_trend_share` (the recommendation's only) and `input_warping` (`on` or
    /// `off`).
    pub fn apply(&mut self, assignment: &str) -> Result<(), String> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| "expected key=value".to_string())?;
        let number = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("`{value}` is not a number"))
        };
        // A prior is `centre,spread` of the log hyperparameter.
        let pair = || -> Result<(f64, f64), String> {
            let (c, s) = value
                .split_once(',')
                .ok_or_else(|| format!("`{value}`: expected centre,spread"))?;
            let parse = |t: &str| {
                t.parse::<f64>()
                    .map_err(|_| format!("`{t}` is not a number"))
            };
            Ok((parse(c)?, parse(s)?))
        };
        match key {
            "acquisition" => {
                self.acquisition = Acquisition::ALL
                    .into_iter()
                    .find(|a| a.name() == value)
                    .ok_or_else(|| format!("unknown acquisition `{value}`"))?
            }
            "kernel" => {
                self.fit.kernel = match value {
                    "matern52" => KernelKind::Matern52,
                    "rbf" => KernelKind::Rbf,
                    _ => return Err(format!("unknown kernel `{value}`")),
                }
            }
            "restarts" => self.fit.restarts = number()? as usize,
            "recommendation_sigmas" => self.recommendation_sigmas = number()?,
            "knowledge_gradient_sigmas" => self.knowledge_gradient_sigmas = number()?,
            "length_prior" => self.fit.prior.log_length = pair()?,
            "signal_prior" => self.fit.prior.log_signal = pair()?,
            "noise_prior" => self.fit.prior.log_noise = pair()?,
            "signal_excess_floor" => {
                self.fit.prior.signal_excess_floor = match value {
                    "off" => None,
                    _ => Some(number()?),
                }
            }
            "trend_share" => {
                self.fit.prior.trend_share = number()?;
                self.recommendation_trend_share = self.fit.prior.trend_share;
            }
            "recommendation_trend_share" => self.recommendation_trend_share = number()?,
            "input_warping" => {
                self.fit.prior.input_warping = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("input_warping: `{value}` is not on or off")),
                }
            }
            "exploration" => self.exploration = number()?,
            "design_spread" => self.design_spread = number()?,
            _ => return Err(format!("unknown option `{key}`")),
        }
        Ok(())
    }
}

/// One replayed campaign.
#[derive(Clone, Debug, Serialize)]
pub struct Replay {
    /// Recommended candidate after each round.
    pub recommended: Vec<usize>,
    /// Its true value after each round.
    pub true_value: Vec<f64>,
    /// Seconds spent choosing each round's batch.
    pub suggest_seconds: Vec<f64>,
}

/// Replays one campaign: each round the strategy picks a batch, `observe(candidate)` returns an
/// observation `(value, noise variance)` for each pick, and the strategy recommends a candidate.
pub fn replay(
    strategy: Strategy,
    problem: &Problem<'_>,
    settings: &ReplaySettings,
    observe: &mut dyn FnMut(usize) -> (f64, f64),
) -> Result<Replay, OptimizeError> {
    let mut labloop_obs: Vec<Observation> = Vec::new();
    let mut reference_obs: Vec<Observation> = Vec::new();
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut out = Replay {
        recommended: Vec::new(),
        true_value: Vec::new(),
        suggest_seconds: Vec::new(),
    };
    for round in 0..settings.rounds {
        let started = Instant::now();
        let fit = FitOptions {
            seed: settings.seed.wrapping_add(u64::from(round)),
            ..settings.fit.clone()
        };
        let picks: Vec<usize> = match strategy {
            Strategy::Labloop => {
                let request = BatchRequest {
                    candidates: problem.inputs,
                    observations: &labloop_obs,
                    pending: &[],
                    batch_size: settings.batch,
                    acquisition: settings.acquisition,
                    exploration: settings.exploration,
                    fit: fit.clone(),
                    knowledge_gradient_sigmas: settings.knowledge_gradient_sigmas,
                    design_spread: settings.design_spread,
                };
                suggest_batch(&request)?.picks
            }
            Strategy::CloReference => bayesgap_batch(
                problem.reference_inputs,
                &reference_obs,
                settings.batch,
                round,
                &settings.reference,
            ),
            Strategy::Random => sample(
                &mut rng,
                problem.inputs.len(),
                settings.batch.min(problem.inputs.len()),
            )
            .into_vec(),
        };
        out.suggest_seconds.push(started.elapsed().as_secs_f64());
        for &i in &picks {
            let (y, noise_var) = observe(i);
            labloop_obs.push(Observation {
                x: problem.inputs[i].clone(),
                y,
                noise_var,
            });
            reference_obs.push(Observation {
                x: problem.reference_inputs[i].clone(),
                y,
                noise_var,
            });
        }
        let best = match strategy {
            Strategy::CloReference => bayesgap_recommend(
                problem.reference_inputs,
                &reference_obs,
                round,
                &settings.reference,
            ),
            Strategy::Labloop | Strategy::Random => {
                let fit = recommendation_fit(&fit, settings.recommendation_trend_share);
                rank_by(
                    &GaussianProcess::fit(&labloop_obs, &fit)?,
                    problem.inputs,
                    settings.recommendation_sigmas,
                )[0]
                .index
            }
        };
        out.recommended.push(best);
        out.true_value.push(problem.truth[best]);
    }
    Ok(out)
}

/// A strategy's results over many seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The strategy.
    pub strategy: Strategy,
    /// Seeds replayed.
    pub seeds: usize,
    /// Median cells until the recommendation is within the tolerance of the true best; `None` when
    /// fewer than half the seeds got there within the budget.
    pub median_cells_to_target: Option<f64>,
    /// Quartiles of the same (`None` where not reached).
    pub cells_to_target_iqr: (Option<f64>, Option<f64>),
    /// Seeds that reached the target within the budget.
    pub reached_target: usize,
    /// Fraction of seeds whose recommendation is within the tolerance after each round.
    pub reached_per_round: Vec<f64>,
    /// Mean true value of the recommendation after each round.
    pub mean_true_value_per_round: Vec<f64>,
    /// Standard error of that mean after each round (the seeds' standard deviation over √seeds):
    /// two strategies whose means differ by less than about twice this are not told apart.
    pub standard_error_per_round: Vec<f64>,
    /// Mean simple regret (true best − true value of the recommendation) after each round.
    pub mean_simple_regret_per_round: Vec<f64>,
    /// Median time to choose a batch, milliseconds.
    pub median_suggest_ms: f64,
}

/// Summarises replays; the target is `(1 − tolerance) × best` (e.g. 0.03 for "within 3 %").
pub fn summarize(
    strategy: Strategy,
    replays: &[Replay],
    truth: &[f64],
    batch: usize,
    tolerance: f64,
) -> Summary {
    let best = truth.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let target = best - tolerance * best.abs();
    let mut cells: Vec<f64> = replays
        .iter()
        .map(|r| {
            r.true_value
                .iter()
                .position(|v| *v >= target)
                .map_or(f64::INFINITY, |round| ((round + 1) * batch) as f64)
        })
        .collect();
    cells.sort_by(f64::total_cmp);
    // Linear interpolation between order statistics; a miss (∞) makes a quantile past it unknown.
    let quantile = |q: f64| -> Option<f64> {
        let pos = (cells.len() - 1) as f64 * q;
        let (lo, hi) = (cells[pos.floor() as usize], cells[pos.ceil() as usize]);
        let v = if hi == lo {
            lo
        } else {
            lo + (hi - lo) * (pos - pos.floor())
        };
        v.is_finite().then_some(v)
    };
    let rounds = replays
        .iter()
        .map(|r| r.true_value.len())
        .min()
        .unwrap_or(0);
    let mean_per_round: Vec<f64> = (0..rounds)
        .map(|k| replays.iter().map(|r| r.true_value[k]).sum::<f64>() / replays.len() as f64)
        .collect();
    let mut latencies: Vec<f64> = replays
        .iter()
        .flat_map(|r| r.suggest_seconds.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    Summary {
        strategy,
        seeds: replays.len(),
        median_cells_to_target: quantile(0.5),
        cells_to_target_iqr: (quantile(0.25), quantile(0.75)),
        reached_target: cells.iter().filter(|c| c.is_finite()).count(),
        reached_per_round: (0..rounds)
            .map(|k| {
                replays.iter().filter(|r| r.true_value[k] >= target).count() as f64
                    / replays.len() as f64
            })
            .collect(),
        standard_error_per_round: (0..rounds)
            .map(|k| {
                let n = replays.len() as f64;
                let mean = mean_per_round[k];
                let var = replays
                    .iter()
                    .map(|r| (r.true_value[k] - mean).powi(2))
                    .sum::<f64>()
                    / (n - 1.0).max(1.0);
                (var / n).sqrt()
            })
            .collect(),
        mean_simple_regret_per_round: mean_per_round.iter().map(|v| best - v).collect(),
        mean_true_value_per_round: mean_per_round,
        median_suggest_ms: latencies.get(latencies.len() / 2).map_or(0.0, |s| s * 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HyperPrior;
    use crate::{
        DESIGN_SPREAD, KNOWLEDGE_GRADIENT_SIGMAS, RECOMMENDATION_SIGMAS, RECOMMENDATION_TREND_SHARE,
    };
    use rand_distr::{Distribution, Normal};

    #[test]
    fn every_strategy_improves_on_a_noisy_bowl() {
        let inputs: Vec<Vec<f64>> = (0..15)
            .flat_map(|i| (0..15).map(move |j| vec![i as f64 * 0.3, j as f64 * 0.3]))
            .collect();
        let truth: Vec<f64> = inputs
            .iter()
            .map(|x| 1000.0 - 60.0 * ((x[0] - 2.4).powi(2) + (x[1] - 1.5).powi(2)))
            .collect();
        let problem = Problem {
            inputs: &inputs,
            reference_inputs: &inputs,
            truth: &truth,
        };
        let settings = ReplaySettings {
            batch: 12,
            rounds: 3,
            seed: 5,
            fit: FitOptions {
                kernel: KernelKind::Matern52,
                bounds: crate::bounds_of(&inputs),
                restarts: 2,
                seed: 5,
                prior: HyperPrior::default(),
            },
            acquisition: Acquisition::Thompson,
            exploration: 0.0,
            reference: BayesGapSettings {
                prior_mean: 800.0,
                ..BayesGapSettings::default()
            },
            recommendation_sigmas: RECOMMENDATION_SIGMAS,
            knowledge_gradient_sigmas: KNOWLEDGE_GRADIENT_SIGMAS,
            design_spread: DESIGN_SPREAD,
            recommendation_trend_share: RECOMMENDATION_TREND_SHARE,
        };
        let with_kg = ReplaySettings {
            acquisition: Acquisition::KnowledgeGradient,
            ..settings.clone()
        };
        let runs = Strategy::ALL
            .into_iter()
            .map(|s| (s, &settings))
            .chain([(Strategy::Labloop, &with_kg)]);
        for (strategy, settings) in runs {
            let mut rng = StdRng::seed_from_u64(9);
            let noise = Normal::new(0.0, 40.0).unwrap();
            let mut observe = |i: usize| (truth[i] + noise.sample(&mut rng), 1600.0);
            let r = replay(strategy, &problem, settings, &mut observe).unwrap();
            assert_eq!(r.true_value.len(), 3);
            let s = summarize(strategy, std::slice::from_ref(&r), &truth, 12, 0.05);
            assert!(r.true_value[2] > 900.0, "{strategy:?}: {:?}", r.true_value);
            assert_eq!(s.mean_simple_regret_per_round.len(), 3);
        }
    }

    #[test]
    fn overrides_set_the_named_option_and_refuse_unknown_ones() {
        let mut s = ReplaySettings {
            batch: 8,
            rounds: 2,
            seed: 1,
            fit: FitOptions {
                kernel: KernelKind::Matern52,
                bounds: vec![(0.0, 1.0)],
                restarts: 3,
                seed: 1,
                prior: HyperPrior::default(),
            },
            acquisition: Acquisition::KnowledgeGradient,
            exploration: 2.0,
            reference: BayesGapSettings::default(),
            recommendation_sigmas: RECOMMENDATION_SIGMAS,
            knowledge_gradient_sigmas: KNOWLEDGE_GRADIENT_SIGMAS,
            design_spread: DESIGN_SPREAD,
            recommendation_trend_share: RECOMMENDATION_TREND_SHARE,
        };
        for o in [
            "acquisition=portfolio",
            "kernel=rbf",
            "recommendation_sigmas=1",
            "knowledge_gradient_sigmas=2",
            "length_prior=-1,0.5",
        ] {
            s.apply(o).unwrap();
        }
        assert_eq!(s.acquisition, Acquisition::Portfolio);
        assert_eq!(s.fit.kernel, KernelKind::Rbf);
        assert_eq!(s.recommendation_sigmas, 1.0);
        assert_eq!(s.knowledge_gradient_sigmas, 2.0);
        assert_eq!(s.fit.prior.log_length, (-1.0, 0.5));
        // A trend in both surrogates, then the recommendation's alone.
        s.apply("trend_share=0.25").unwrap();
        assert_eq!(
            (s.fit.prior.trend_share, s.recommendation_trend_share),
            (0.25, 0.25)
        );
        s.apply("recommendation_trend_share=0.5").unwrap();
        assert_eq!(
            (s.fit.prior.trend_share, s.recommendation_trend_share),
            (0.25, 0.5)
        );
        assert_eq!(
            s.apply("colour=red").unwrap_err(),
            "unknown option `colour`"
        );
        assert_eq!(
            s.apply("length_prior=1").unwrap_err(),
            "`1`: expected centre,spread"
        );
        assert!(s.apply("acquisition").is_err());
    }

    #[test]
    fn summary_counts_cells_to_target_and_censors_misses() {
        let truth = vec![100.0, 90.0, 50.0];
        let replay = |values: &[f64]| Replay {
            recommended: vec![0; values.len()],
            true_value: values.to_vec(),
            suggest_seconds: vec![0.001; values.len()],
        };
        let runs = vec![
            replay(&[50.0, 100.0]),
            replay(&[100.0, 100.0]),
            replay(&[50.0, 90.0]),
        ];
        let s = summarize(Strategy::Random, &runs, &truth, 10, 0.03);
        assert_eq!(s.reached_target, 2);
        assert_eq!(s.median_cells_to_target, Some(20.0));
        assert_eq!(s.cells_to_target_iqr, (Some(15.0), None));
        assert_eq!(s.mean_true_value_per_round, vec![200.0 / 3.0, 290.0 / 3.0]);
        assert_eq!(s.reached_per_round, vec![1.0 / 3.0, 2.0 / 3.0]);
        // Sample sd of (50, 100, 50) is 28.87, over √3: 16.67; of (100, 100, 90): 5.77 / √3 = 3.33.
        let se = &s.standard_error_per_round;
        assert!(
            (se[0] - 50.0 / 3.0).abs() < 1e-9 && (se[1] - 10.0 / 3.0).abs() < 1e-9,
            "{se:?}"
        );
        assert!((s.median_suggest_ms - 1.0).abs() < 1e-9);
    }
}
